#!/bin/bash
# python.sh - the overhead of memray-record on Python workloads, next to
# heaptrack's and tracemalloc's.
#
# usage: bench/python.sh [BUILD_DIR]      (default: build)
#
# Environment:
#   PYTHON              the interpreter (default /usr/bin/python3; it is run
#                       by its resolved path, never through PATH or a shim)
#   BENCH_ROUNDS        rounds per workload (default 5)
#   BENCH_STARTUP_REPS  runs of each mode per round for the start-up
#                       workload, which takes milliseconds (default 5)
#   BENCH_COMPILE_PKGS  stdlib packages that the compileall workload
#                       byte-compiles (default: see COMPILE_PKGS below)
#
# Workloads (bench/py/):
#   objects     objects.py: many small dicts, lists and tuples made and dropped
#   buffers     buffers.py: bytearrays of 100 KB-10 MB made and freed
#   calls       calls.py: recursive fib(25), few allocations
#   compileall  python3 -m compileall -q -f on a fresh copy of some stdlib
#               packages, copied again before every run
#   startup     empty.py: an empty script
#
# Modes, interleaved within each round so that drift in machine load hits
# every column alike: plain; memray-record; memray-record --native;
# memray-record --trace-python-allocators; heaptrack (if installed);
# python3 -X tracemalloc=25.  The tables report medians.
#
# Peak RSS is GNU time's %M (ru_maxrss from wait4).  For a command that
# starts other processes, Linux reports the largest single process of the
# tree, not a sum: under memray-record that is the Python process, as long
# as memray-record itself is smaller, which the script measures and checks.
#
# The script exits 0 whether or not the targets are met, and non-zero only
# when something fails (a run that exits non-zero, a missing recording).

set -u

BUILD=${1:-build}
ROUNDS=${BENCH_ROUNDS:-5}
STARTUP_REPS=${BENCH_STARTUP_REPS:-5}
COMPILE_PKGS=${BENCH_COMPILE_PKGS:-json email http xml asyncio unittest logging multiprocessing concurrent importlib urllib}
HEAPTRACK=/usr/bin/heaptrack
TIME=/usr/bin/time

# Targets (x plain; start-up in ms and MiB over plain).
T_DEFAULT=1.3
T_NATIVE=1.6
T_START_MS=10
T_START_MIB=5

die() { echo "python.sh: $*" >&2; exit 1; }

case $ROUNDS in ''|*[!0-9]*|0) die "BENCH_ROUNDS must be a positive integer" ;; esac
case $STARTUP_REPS in ''|*[!0-9]*|0) die "BENCH_STARTUP_REPS must be a positive integer" ;; esac

here=$(cd "$(dirname "$0")" && pwd) || die "cannot find the bench directory"
PYDIR=$here/py
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "no build directory '${1:-build}' (run make first)"
RECORD=$BUILD/bin/memray-record
STAT=$BUILD/bin/memray-stat
[ -x "$RECORD" ] || die "$RECORD missing (run make first)"
[ -x "$STAT" ] || die "$STAT missing (run make first)"
for f in objects buffers calls empty; do
	[ -f "$PYDIR/$f.py" ] || die "$PYDIR/$f.py missing"
done

t0=$(date +%s%N)
case $t0 in *[!0-9]*) die "date +%s%N is not supported here" ;; esac

# The interpreter, by its real path: memray-record must start Python itself,
# not a shell script such as a pyenv shim found through PATH.
py_arg=${PYTHON:-/usr/bin/python3}
case $py_arg in
*/*) ;;
*) py_arg=$(command -v "$py_arg") || die "PYTHON: '${PYTHON}' not found" ;;
esac
PY=$(readlink -f "$py_arg") || die "cannot resolve '$py_arg'"
[ -x "$PY" ] || die "'$py_arg' is not an executable"
[ "$(head -c 4 "$PY" | od -An -c | tr -d ' ')" = '177ELF' ] ||
	die "'$py_arg' resolves to $PY, which is not an ELF executable (a wrapper script?); set PYTHON to the interpreter itself"
py_version=$("$PY" -c 'import sys; print(sys.version.split()[0])') || die "$PY does not run"
py_stdlib=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])') ||
	die "$PY: cannot find its standard library"

have_heaptrack=1
if [ ! -x "$HEAPTRACK" ]; then
	have_heaptrack=0
	echo "python.sh: $HEAPTRACK not found (Debian package 'heaptrack');" \
	     "skipping the heaptrack column" >&2
fi
have_time=1
if [ ! -x "$TIME" ]; then
	have_time=0
	echo "python.sh: $TIME not found (Debian package 'time');" \
	     "no peak RSS, the start-up RSS target is not judged" >&2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/python-bench.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

MODES="plain memray native pyalloc"
[ $have_heaptrack = 1 ] && MODES="$MODES heaptrack"
MODES="$MODES tracemalloc"

mode_label() {
	case $1 in
	plain) echo "plain" ;;
	memray) echo "memray-record" ;;
	native) echo "  --native" ;;
	pyalloc) echo "  --trace-py-alloc" ;;
	heaptrack) echo "heaptrack" ;;
	tracemalloc) echo "tracemalloc=25" ;;
	esac
}
short_label() {
	case $1 in
	memray) echo "memray" ;;
	tracemalloc) echo "tracemalloc" ;;
	*) echo "$1" ;;
	esac
}
is_memray() { case $1 in memray|native|pyalloc) return 0 ;; esac; return 1; }

# --- workloads ----------------------------------------------------------------
# wl_args WORKLOAD: sets the array ARGS, the interpreter's arguments
wl_args() {
	case $1 in
	objects) ARGS=("$PYDIR/objects.py") ;;
	buffers) ARGS=("$PYDIR/buffers.py") ;;
	calls) ARGS=("$PYDIR/calls.py") ;;
	compileall) ARGS=(-m compileall -q -f "$tmp/src") ;;
	startup) ARGS=("$PYDIR/empty.py") ;;
	esac
}

# prepare WORKLOAD: done before every run, outside the timing
prepare() {
	[ "$1" = compileall ] || return 0
	{ rm -rf "$tmp/src" && mkdir "$tmp/src"; } || die "cannot create $tmp/src"
	local p
	for p in $COMPILE_PKGS; do
		cp -R "$py_stdlib/$p" "$tmp/src/" || die "cannot copy $py_stdlib/$p"
	done
	find "$tmp/src" -name __pycache__ -prune -exec rm -rf {} + ||
		die "cannot clean $tmp/src"
}

# --- helpers ----------------------------------------------------------------
# run_timed KEY CMD...: run CMD under GNU time; append its wall time in ns to
# $tmp/KEY.times and its peak RSS in KiB to $tmp/KEY.rss
run_timed() {
	local key=$1; shift
	local start end rc
	if [ $have_time = 1 ]; then
		start=$(date +%s%N)
		"$TIME" -f '%M' -o "$tmp/rss.out" "$@" >"$tmp/run.out" 2>"$tmp/run.err"
		rc=$?
		end=$(date +%s%N)
	else
		start=$(date +%s%N)
		"$@" >"$tmp/run.out" 2>"$tmp/run.err"
		rc=$?
		end=$(date +%s%N)
	fi
	if [ $rc -ne 0 ]; then
		echo "python.sh: $key run failed (exit status $rc): $*" >&2
		sed 's/^/  | /' "$tmp/run.err" >&2
		[ -s "$tmp/rss.out" ] && sed 's/^/  | /' "$tmp/rss.out" >&2
		exit 1
	fi
	echo $((end - start)) >>"$tmp/$key.times"
	if [ $have_time = 1 ]; then
		local kb
		kb=$(tail -n 1 "$tmp/rss.out")
		case $kb in ''|*[!0-9]*) die "cannot read the peak RSS of: $*" ;; esac
		echo "$kb" >>"$tmp/$key.rss"
	fi
}

# run_mode WORKLOAD MODE: one run of WORKLOAD in MODE
run_mode() {
	local w=$1 m=$2 key=$1.$2 f=$tmp/$1.$2.out
	wl_args "$w"
	prepare "$w"
	case $m in
	plain) run_timed "$key" "$PY" "${ARGS[@]}" ;;
	memray) run_timed "$key" "$RECORD" -q -f -o "$f" "$PY" "${ARGS[@]}" ;;
	native) run_timed "$key" "$RECORD" --native -q -f -o "$f" "$PY" "${ARGS[@]}" ;;
	pyalloc) run_timed "$key" "$RECORD" --trace-python-allocators -q -f -o "$f" "$PY" "${ARGS[@]}" ;;
	heaptrack)
		{ rm -rf "$f" && mkdir "$f"; } || die "cannot create $f"
		# heaptrack appends .zst or .gz to the name given with -o
		run_timed "$key" "$HEAPTRACK" -o "$f/$w" "$PY" "${ARGS[@]}" ;;
	tracemalloc) run_timed "$key" "$PY" -X tracemalloc=25 "${ARGS[@]}" ;;
	esac
	if is_memray "$m"; then
		[ -s "$f" ] || die "$w: memray-record ($m) wrote no output"
	elif [ "$m" = heaptrack ]; then
		[ -n "$(ls "$f" 2>/dev/null)" ] || die "$w: heaptrack wrote no output"
	fi
}

# median FILE: median of the numbers in FILE (mean of the middle two if even)
median() {
	sort -n "$1" | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2];
		      else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# spread FILE DIV FMT: "min-max" of the numbers in FILE divided by DIV
spread() {
	sort -n "$1" | awk -v d="$2" -v f="$3" 'NR == 1 { lo = $1 } { hi = $1 }
		END { printf f "-" f, lo / d, hi / d }'
}

fsize() { wc -c <"$1" | tr -d ' '; }

# stat_file FILE: sets EVENTS (allocations + frees) and SAMPLED_RSS (bytes)
stat_file() {
	"$STAT" "$1" >"$tmp/stat.out" 2>"$tmp/stat.err" || {
		sed 's/^/  | /' "$tmp/stat.err" >&2; die "memray-stat failed on $1"; }
	local a f
	a=$(awk '$1 == "allocations:" { print $2 }' "$tmp/stat.out")
	f=$(awk '$1 == "frees:" { print $2 }' "$tmp/stat.out")
	case "$a$f" in ''|*[!0-9]*) die "cannot read allocations/frees from memray-stat $1" ;; esac
	EVENTS=$((a + f))
	SAMPLED_RSS=$(awk '$1 == "peak" && $2 == "RSS:" { print $3 }' "$tmp/stat.out")
}

secs() { awk -v t="$1" 'BEGIN { printf "%.3f", t / 1e9 }'; }

# --- the recorder's own size --------------------------------------------------
# memray-record on /bin/true: the largest of memray-record and /bin/true with
# the tracker, so an upper bound of memray-record's own peak RSS.
rec_kb=
if [ $have_time = 1 ]; then
	"$TIME" -f '%M' -o "$tmp/rss.out" "$RECORD" -q -f -o "$tmp/true.out" /bin/true \
		>/dev/null 2>"$tmp/run.err" || {
		sed 's/^/  | /' "$tmp/run.err" >&2; die "memray-record /bin/true failed"; }
	rec_kb=$(tail -n 1 "$tmp/rss.out")
	case $rec_kb in ''|*[!0-9]*) die "cannot read the peak RSS of memray-record" ;; esac
fi

# --- runs -------------------------------------------------------------------
labels=
for m in $MODES; do labels="$labels${labels:+, }$(mode_label "$m" | sed 's/^ *//')"; done
echo "python: $py_arg -> $PY (Python $py_version)"
echo "modes, interleaved in each round: $labels"
[ $have_heaptrack = 1 ] || echo "heaptrack: not installed, skipped"
echo "wall time: median of $ROUNDS rounds (start-up: $ROUNDS x $STARTUP_REPS runs) from date +%s%N around each run"
if [ $have_time = 1 ]; then
	echo "peak RSS: median of GNU time %M; for a process tree that is its largest process:"
	echo "  the Python process under memray-record (memray-record's own peak RSS is at most $(awk -v k="$rec_kb" 'BEGIN { printf "%.1f", k / 1024 }') MiB),"
	echo "  the largest of python3, heaptrack_interpret and the shell under heaptrack"
fi

WORKLOADS="objects buffers calls compileall startup"
for w in $WORKLOADS; do
	echo
	case $w in
	objects) echo "== objects: bench/py/objects.py (1.5 M iterations of small dicts, lists, tuples) ==" ;;
	buffers) echo "== buffers: bench/py/buffers.py (1500 bytearrays of 100 KB-10 MB) ==" ;;
	calls) echo "== calls: bench/py/calls.py (40 x recursive fib(25)) ==" ;;
	compileall) echo "== compileall: python3 -m compileall -q -f on a fresh copy of $COMPILE_PKGS ==" ;;
	startup) echo "== startup: bench/py/empty.py (an empty script) ==" ;;
	esac
	reps=1
	[ "$w" = startup ] && reps=$STARTUP_REPS
	for r in $(seq 1 "$ROUNDS"); do
		printf '  round %d/%d:' "$r" "$ROUNDS"
		for _ in $(seq 1 "$reps"); do
			for m in $MODES; do
				run_mode "$w" "$m"
			done
		done
		for m in $MODES; do
			if [ "$w" = startup ]; then
				printf ' %s %s ms' "$(short_label "$m")" \
					"$(tail -n1 "$tmp/$w.$m.times" | awk '{ printf "%.1f", $1 / 1e6 }')"
			else
				printf ' %s %s' "$(short_label "$m")" \
					"$(secs "$(tail -n1 "$tmp/$w.$m.times")")"
			fi
		done
		echo
	done

	# sizes and event counts, from the last round's files
	p_med=$(median "$tmp/$w.plain.times")
	p_rss=
	[ $have_time = 1 ] && p_rss=$(median "$tmp/$w.plain.rss")
	echo
	if [ "$w" = startup ]; then
		printf '  %-18s %9s %15s %8s %8s %9s %11s %9s %10s\n' mode "median ms" "range ms" "+ms" \
			"RSS MiB" "+RSS MiB" "file bytes" events "trk RSS"
	else
		printf '  %-18s %9s %15s %8s %8s %9s %11s %9s\n' mode "median s" "range s" "x plain" \
			"RSS MiB" "+RSS MiB" "file bytes" events
	fi
	for m in $MODES; do
		t=$(median "$tmp/$w.$m.times")
		echo "$t" >"$tmp/$w.$m.med"
		rss=
		[ $have_time = 1 ] && rss=$(median "$tmp/$w.$m.rss") && echo "$rss" >"$tmp/$w.$m.rssmed"
		size=; EVENTS=; SAMPLED_RSS=
		f=$tmp/$w.$m.out
		if is_memray "$m"; then
			size=$(fsize "$f")
			stat_file "$f"
			[ "$w" = startup ] && echo "$SAMPLED_RSS" >"$tmp/$w.$m.sampled"
			rm -f "$f"
		elif [ "$m" = heaptrack ]; then
			hf=$(ls "$f"/* | head -n1)
			size=$(fsize "$hf")
			rm -rf "$f"
		fi
		if [ "$w" = startup ]; then
			awk -v n="$(mode_label "$m")" -v t="$t" -v p="$p_med" -v rng="$(spread "$tmp/$w.$m.times" 1e6 %.1f)" \
			    -v r="$rss" -v pr="$p_rss" -v sz="$size" -v ev="$EVENTS" -v sr="$SAMPLED_RSS" 'BEGIN {
				printf "  %-18s %9.1f %15s %8s %8s %9s %11s %9s %10s\n", n, t / 1e6, rng,
					(n == "plain" ? "-" : sprintf("%+.1f", (t - p) / 1e6)),
					(r == "" ? "-" : sprintf("%.1f", r / 1024)),
					(r == "" || n == "plain" ? "-" : sprintf("%+.1f", (r - pr) / 1024)),
					(sz == "" ? "-" : sz), (ev == "" ? "-" : ev),
					(sr == "" ? "-" : sprintf("%.1f MiB", sr / 1048576))
			}'
		else
			awk -v n="$(mode_label "$m")" -v t="$t" -v p="$p_med" -v rng="$(spread "$tmp/$w.$m.times" 1e9 %.3f)" \
			    -v r="$rss" -v pr="$p_rss" -v sz="$size" -v ev="$EVENTS" 'BEGIN {
				printf "  %-18s %9.3f %15s %8.2f %8s %9s %11s %9s\n", n, t / 1e9, rng, t / p,
					(r == "" ? "-" : sprintf("%.1f", r / 1024)),
					(r == "" || n == "plain" ? "-" : sprintf("%+.1f", (r - pr) / 1024)),
					(sz == "" ? "-" : sz), (ev == "" ? "-" : ev)
			}'
		fi
	done
	if [ "$w" = startup ]; then
		echo "  (trk RSS: the peak RSS that the tracker sampled inside the Python process, from memray-stat)"
	fi
	if [ $have_heaptrack = 1 ] && [ $have_time = 1 ]; then
		echo "  (heaptrack's RSS is its largest process: heaptrack_interpret or its compressor, not python3)"
	fi
done

# --- summary ------------------------------------------------------------------
echo
echo "== summary: median time as x plain (start-up: ms over plain) =="
printf '  %-12s' workload
for m in $MODES; do printf ' %14s' "$(mode_label "$m" | sed 's/^ *--/--/; s/trace-py-alloc/py-alloc/')"; done
echo
for w in $WORKLOADS; do
	printf '  %-12s' "$w"
	p=$(cat "$tmp/$w.plain.med")
	for m in $MODES; do
		awk -v w="$w" -v t="$(cat "$tmp/$w.$m.med")" -v p="$p" 'BEGIN {
			if (w == "startup") printf " %11.1f ms", (t - p) / 1e6
			else printf " %14.2f", t / p }'
	done
	echo
done

# --- verdict ------------------------------------------------------------------
echo
echo "verdict:"
verdict_ratio() { # MODE LIMIT TEXT
	local m=$1 lim=$2 text=$3 w x all=MET list=''
	for w in $WORKLOADS; do
		[ "$w" = startup ] && continue
		x=$(awk -v t="$(cat "$tmp/$w.$m.med")" -v p="$(cat "$tmp/$w.plain.med")" 'BEGIN { printf "%.2f", t / p }')
		list="$list${list:+, }$w $x"
		awk -v x="$x" -v l="$lim" 'BEGIN { exit !(x > l) }' && all=MISSED
	done
	echo "  $text within ${lim}x of plain on every workload: $all ($list)"
}
verdict_ratio memray "$T_DEFAULT" "memray-record (default)"
verdict_ratio native "$T_NATIVE" "memray-record --native "

d_ms=$(awk -v t="$(cat "$tmp/startup.memray.med")" -v p="$(cat "$tmp/startup.plain.med")" \
	'BEGIN { printf "%+.1f", (t - p) / 1e6 }')
ms_ok=$(awk -v d="$d_ms" -v l="$T_START_MS" 'BEGIN { print (d <= l ? "MET" : "MISSED") }')
echo "  start-up, memray-record on an empty script: at most +$T_START_MS ms: $ms_ok ($d_ms ms)"
if [ $have_time = 1 ]; then
	d_mib=$(awk -v r="$(cat "$tmp/startup.memray.rssmed")" -v p="$(cat "$tmp/startup.plain.rssmed")" \
		'BEGIN { printf "%+.1f", (r - p) / 1024 }')
	mib_ok=$(awk -v d="$d_mib" -v l="$T_START_MIB" 'BEGIN { print (d <= l ? "MET" : "MISSED") }')
	echo "  start-up, memray-record on an empty script: at most +$T_START_MIB MiB peak RSS of the Python process: $mib_ok ($d_mib MiB)"
	awk -v d="$d_mib" -v k="$rec_kb" -v p="$(cat "$tmp/startup.memray.rssmed")" 'BEGIN {
		printf "    (GNU time %%M of the memray-record run is %.1f MiB, the Python process; memray-record itself,\n", p / 1024
		printf "     a separate process, adds at most %.1f MiB more: %+.1f MiB for the two together)\n", k / 1024, d + k / 1024 }'
	rec_big=$(awk -v k="$rec_kb" -v p="$(cat "$tmp/startup.plain.rssmed")" 'BEGIN { print (k >= p) }')
	[ "$rec_big" = 1 ] &&
		echo "    warning: memray-record's own RSS bound is not below plain Python's; %M may be memray-record's"
else
	echo "  start-up peak RSS: not judged (no $TIME)"
fi
echo
echo "total time: $(awk -v s="$t0" -v e="$(date +%s%N)" 'BEGIN { printf "%.0f", (e - s) / 1e9 }') s"
exit 0
