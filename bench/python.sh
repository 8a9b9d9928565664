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
#   BENCH_PY_SCALE      size of the objects, buffers, calls, deep and shallow
#                       workloads in percent of their defaults (default 100;
#                       25 for a quick run)
#   BENCH_PY_WORKLOADS  which workloads (default: all seven, in the order below)
#   BENCH_PY_MODES      which modes (default: all; plain is always run)
#   BENCH_CALLGRIND     0 to skip the instruction counts (default 1: counted
#                       when valgrind is installed)
#   BENCH_CG_SCALE      size of the callgrind runs in percent of the
#                       workloads' defaults (default 10: valgrind is ~50x slower)
#   BENCH_CG_COMPILE_PKGS  the packages compileall compiles under callgrind
#                       (default: json email http)
#   BENCH_RESULTS       a file to append "KEY VALUE" results to, for
#                       bench/summary.sh (default: none)
#
# Workloads (bench/py/):
#   objects     objects.py: many small dicts, lists and tuples made and dropped
#   buffers     buffers.py: bytearrays of 100 KB-10 MB made and freed
#   calls       calls.py: recursive fib(25), few allocations
#   compileall  python3 -m compileall -q -f on a fresh copy of some stdlib
#               packages, copied again before every run
#   deep        deep.py: 2.4 million 600-byte bytearrays made and dropped
#               42 frames deep (a recursive chain 40 deep, then a loop)
#   shallow     deep.py with a chain 1 deep: the same loop 3 frames deep, so
#               that deep over shallow is what the 39 frames more cost
#   startup     empty.py: an empty script
#
# Instructions: after the timed rounds, one run of objects, calls,
# compileall, deep and shallow in the modes plain, memray-record and --native under
# valgrind --tool=callgrind --trace-children=yes (every process counted,
# memray-record's own too), at BENCH_CG_SCALE of the default size; the
# counts are stable from run to run where wall times on a busy machine are
# not.  heaptrack records nothing under valgrind, so it has no count.
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
SCALE=${BENCH_PY_SCALE:-100}
WORKLOADS=${BENCH_PY_WORKLOADS:-objects buffers calls compileall deep shallow startup}
CG_SCALE=${BENCH_CG_SCALE:-10}
CG_COMPILE_PKGS=${BENCH_CG_COMPILE_PKGS:-json email http}
HEAPTRACK=/usr/bin/heaptrack
TIME=/usr/bin/time

# Targets (x plain; start-up in ms and MiB over plain).
T_DEFAULT=1.3
T_NATIVE=1.6
T_START_MS=10
T_START_MIB=5
# Issue 18's targets (x plain, default mode unless said; wall and instructions)
T18_DEEP_WALL=1.5
T18_DEEP_IR=1.4
T18_DEEP_NATIVE=4
T18_OBJECTS=1.15
T18_CALLS_IR=1.02
T18_COMPILEALL=1.1

here=$(cd "$(dirname "$0")" && pwd) || { echo "python.sh: cannot find the bench directory" >&2; exit 1; }
BENCH_NAME=python.sh  # read by lib.sh
. "$here/lib.sh"

case $ROUNDS in ''|*[!0-9]*|0) die "BENCH_ROUNDS must be a positive integer" ;; esac
case $STARTUP_REPS in ''|*[!0-9]*|0) die "BENCH_STARTUP_REPS must be a positive integer" ;; esac
positive_int BENCH_PY_SCALE "$SCALE"
positive_int BENCH_CG_SCALE "$CG_SCALE"
for w in $WORKLOADS; do
	case $w in objects|buffers|calls|compileall|deep|shallow|startup) ;;
	*) die "BENCH_PY_WORKLOADS: unknown workload '$w'" ;; esac
done
[ -n "$WORKLOADS" ] || die "BENCH_PY_WORKLOADS is empty"
has_word() { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }

# sizes: scale PERCENT: set N_OBJECTS, N_BUFFERS, N_CALLS, N_DEEP
scale() {
	N_OBJECTS=$((1500000 * $1 / 100))
	N_BUFFERS=$((1500 * $1 / 100))
	N_CALLS=$((40 * $1 / 100))
	N_DEEP=$((2400000 * $1 / 100))
	[ "$N_OBJECTS" -ge 1 ] || N_OBJECTS=1
	[ "$N_BUFFERS" -ge 1 ] || N_BUFFERS=1
	[ "$N_CALLS" -ge 1 ] || N_CALLS=1
	[ "$N_DEEP" -ge 1 ] || N_DEEP=1
}
scale "$SCALE"
PYDIR=$here/py
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "no build directory '${1:-build}' (run make first)"
RECORD=$BUILD/bin/memray-record
STAT=$BUILD/bin/memray-stat
[ -x "$RECORD" ] || die "$RECORD missing (run make first)"
[ -x "$STAT" ] || die "$STAT missing (run make first)"
for f in objects buffers calls deep empty; do
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
if [ -n "${BENCH_PY_MODES:-}" ]; then
	for m in $BENCH_PY_MODES; do
		case $m in plain|memray|native|pyalloc|heaptrack|tracemalloc) ;;
		*) die "BENCH_PY_MODES: unknown mode '$m' (plain memray native pyalloc heaptrack tracemalloc)" ;; esac
	done
	want=$MODES MODES=plain
	for m in $want; do
		[ "$m" != plain ] && has_word "$m" "$BENCH_PY_MODES" && MODES="$MODES $m"
	done
fi

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
	objects) ARGS=("$PYDIR/objects.py" "$N_OBJECTS") ;;
	buffers) ARGS=("$PYDIR/buffers.py" "$N_BUFFERS") ;;
	calls) ARGS=("$PYDIR/calls.py" "$N_CALLS") ;;
	compileall) ARGS=(-m compileall -q -f "$tmp/src") ;;
	deep) ARGS=("$PYDIR/deep.py" "$N_DEEP") ;;
	shallow) ARGS=("$PYDIR/deep.py" "$N_DEEP" 1) ;;
	startup) ARGS=("$PYDIR/empty.py") ;;
	esac
}

# prepare WORKLOAD [PACKAGES]: done before every run, outside the timing
prepare() {
	[ "$1" = compileall ] || return 0
	{ rm -rf "$tmp/src" && mkdir "$tmp/src"; } || die "cannot create $tmp/src"
	local p
	for p in ${2:-$COMPILE_PKGS}; do
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

echo "sizes: $SCALE% of the defaults (BENCH_PY_SCALE)"
for w in $WORKLOADS; do
	echo
	case $w in
	objects) echo "== objects: bench/py/objects.py ($N_OBJECTS iterations of small dicts, lists, tuples) ==" ;;
	buffers) echo "== buffers: bench/py/buffers.py ($N_BUFFERS bytearrays of 100 KB-10 MB) ==" ;;
	calls) echo "== calls: bench/py/calls.py ($N_CALLS x recursive fib(25)) ==" ;;
	compileall) echo "== compileall: python3 -m compileall -q -f on a fresh copy of $COMPILE_PKGS ==" ;;
	deep) echo "== deep: bench/py/deep.py ($N_DEEP 600-byte bytearrays, 42 frames deep) ==" ;;
	shallow) echo "== shallow: bench/py/deep.py $N_DEEP 1 (the same bytearrays, 3 frames deep) ==" ;;
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

# --- instructions -----------------------------------------------------------------
# One run per mode under callgrind at CG_SCALE% of the default sizes:
# $tmp/W.M.ir holds the count, $tmp/W.cgsize what was run.
CG_MODES=
for m in plain memray native; do has_word "$m" "$MODES" && CG_MODES="$CG_MODES $m"; done
CG_WORKLOADS=
for w in objects calls compileall deep shallow; do has_word "$w" "$WORKLOADS" && CG_WORKLOADS="$CG_WORKLOADS $w"; done
if have_callgrind && [ -n "$CG_WORKLOADS" ]; then
	scale "$CG_SCALE"
	echo
	echo "== instructions: valgrind --tool=callgrind --trace-children=yes, one run per mode, every process summed =="
	for w in $CG_WORKLOADS; do
		case $w in
		objects) echo "objects.py $N_OBJECTS" ;;
		calls) echo "calls.py $N_CALLS (x fib(25))" ;;
		compileall) echo "compileall of $CG_COMPILE_PKGS" ;;
		deep) echo "deep.py $N_DEEP" ;;
		shallow) echo "deep.py $N_DEEP 1" ;;
		esac >"$tmp/$w.cgsize"
		printf '  %-11s (%s):' "$w" "$(cat "$tmp/$w.cgsize")"
		for m in $CG_MODES; do
			wl_args "$w"
			prepare "$w" "$CG_COMPILE_PKGS"
			case $m in
			plain) callgrind_ir "$w" "$PY" "${ARGS[@]}" ;;
			memray) callgrind_ir "$w" "$RECORD" -q -f -o "$tmp/cg.bin" "$PY" "${ARGS[@]}" ;;
			native) callgrind_ir "$w" "$RECORD" --native -q -f -o "$tmp/cg.bin" "$PY" "${ARGS[@]}" ;;
			esac >"$tmp/$w.$m.ir"
			printf ' %s %.0f M' "$(short_label "$m")" "$(awk '{ print $1 / 1e6 }' "$tmp/$w.$m.ir")"
		done
		echo
	done
	rm -f "$tmp/cg.bin"
	[ $have_heaptrack = 1 ] && echo "  ($HEAPTRACK_CG_NOTE)"
	scale "$SCALE"
elif [ -n "$CG_WORKLOADS" ]; then
	echo
	echo "instructions: skipped (valgrind not installed, or BENCH_CALLGRIND=0)"
fi

# x_plain W M: median wall time of W in mode M over plain's
x_plain() { ratio "$(cat "$tmp/$1.$2.med")" "$(cat "$tmp/$1.plain.med")"; }
# ir_plain W M: instructions of W in mode M over plain's, or nothing
ir_plain() { [ -s "$tmp/$1.$2.ir" ] && ratio "$(cat "$tmp/$1.$2.ir")" "$(cat "$tmp/$1.plain.ir")"; }

# --- summary ------------------------------------------------------------------
echo
echo "== summary: median time as x plain (start-up: ms over plain); [instructions x plain] =="
printf '  %-12s' workload
for m in $MODES; do
	l=$(mode_label "$m" | sed 's/^ *--/--/; s/trace-py-alloc/py-alloc/')
	if has_word "$m" "$CG_MODES" && [ "$m" != plain ]; then printf ' %22s' "$l [instr]"; else printf ' %14s' "$l"; fi
done
echo
for w in $WORKLOADS; do
	printf '  %-12s' "$w"
	for m in $MODES; do
		if [ "$w" = startup ]; then
			awk -v t="$(cat "$tmp/$w.$m.med")" -v p="$(cat "$tmp/$w.plain.med")" \
				'BEGIN { printf " %11.1f ms", (t - p) / 1e6 }'
		else
			printf ' %14s' "$(x_plain "$w" "$m")"
		fi
		if has_word "$m" "$CG_MODES" && [ "$m" != plain ]; then
			ir=$(ir_plain "$w" "$m")
			printf ' %7s' "${ir:+[$ir]}"
		fi
	done
	echo
	# results for bench/summary.sh
	[ "$w" = startup ] && continue
	for m in $MODES; do
		[ "$m" = plain ] && continue
		bench_result "py.$w.$m.wall" "$(x_plain "$w" "$m")"
		ir=$(ir_plain "$w" "$m")
		[ -n "$ir" ] && bench_result "py.$w.$m.ir" "$ir"
	done
	[ -s "$tmp/$w.cgsize" ] && bench_result "py.$w.cgsize" "$(tr ' ' '_' <"$tmp/$w.cgsize")"
done
bench_result py.scale "$SCALE%"

# --- verdict ------------------------------------------------------------------
echo
echo "verdict:"
verdict_ratio() { # MODE LIMIT TEXT
	local m=$1 lim=$2 text=$3 w x all=MET list=''
	has_word "$m" "$MODES" || return 0
	for w in $WORKLOADS; do
		[ "$w" = startup ] && continue
		x=$(x_plain "$w" "$m")
		list="$list${list:+, }$w $x"
		awk -v x="$x" -v l="$lim" 'BEGIN { exit !(x > l) }' && all=MISSED
	done
	[ -n "$list" ] && echo "  $text within ${lim}x of plain on every workload: $all ($list)"
}
verdict_ratio memray "$T_DEFAULT" "memray-record (default)"
verdict_ratio native "$T_NATIVE" "memray-record --native "

# verdict18 W M KIND LIMIT: one of issue 18's targets (KIND wall or ir)
verdict18() {
	local w=$1 m=$2 kind=$3 lim=$4 x what
	has_word "$w" "$WORKLOADS" && has_word "$m" "$MODES" || return 0
	if [ "$kind" = wall ]; then x=$(x_plain "$w" "$m"); what="wall time"
	else x=$(ir_plain "$w" "$m"); what="instructions"; fi
	[ -n "$x" ] || { echo "  issue 18: $w, $(mode_label "$m" | sed 's/^ *//'), $what <= ${lim}x plain: not measured"; return 0; }
	awk -v x="$x" -v l="$lim" -v t="issue 18: $w, $(mode_label "$m" | sed 's/^ *//'), $what <= ${lim}x plain" \
		'BEGIN { printf "  %s: %s (%.2fx)\n", t, (x <= l ? "MET" : "MISSED"), x }'
}
verdict18 deep memray wall "$T18_DEEP_WALL"
verdict18 deep memray ir "$T18_DEEP_IR"
verdict18 deep native wall "$T18_DEEP_NATIVE"
verdict18 objects memray wall "$T18_OBJECTS"
verdict18 objects memray ir "$T18_OBJECTS"
verdict18 calls memray ir "$T18_CALLS_IR"
verdict18 compileall memray wall "$T18_COMPILEALL"
verdict18 compileall memray ir "$T18_COMPILEALL"

# What depth costs: deep and shallow are the same loop 42 and 3 frames deep.
# Instructions added per bytearray (one malloc and its free) over plain's,
# from the callgrind runs, and the ratios to plain side by side.
if has_word deep "$WORKLOADS" && has_word shallow "$WORKLOADS"; then
	for m in memray native heaptrack; do
		has_word "$m" "$MODES" || continue
		line="deep (42 frames) against shallow (3 frames), $(mode_label "$m" | sed 's/^ *//'):"
		line="$line wall $(x_plain deep "$m")x against $(x_plain shallow "$m")x plain"
		if [ -s "$tmp/deep.$m.ir" ] && [ -s "$tmp/shallow.$m.ir" ]; then
			scale "$CG_SCALE"
			line="$line; instructions $(ir_plain deep "$m")x against $(ir_plain shallow "$m")x,"
			line="$line $(awk -v d="$(cat "$tmp/deep.$m.ir")" -v dp="$(cat "$tmp/deep.plain.ir")" \
				-v s="$(cat "$tmp/shallow.$m.ir")" -v sp="$(cat "$tmp/shallow.plain.ir")" -v n="$N_DEEP" \
				'BEGIN { printf "%.0f against %.0f added per bytearray", (d - dp) / n, (s - sp) / n }')"
			scale "$SCALE"
		fi
		echo "  $line"
	done
fi

if has_word startup "$WORKLOADS" && has_word memray "$MODES"; then
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
fi
echo
echo "total time: $(awk -v s="$t0" -v e="$(date +%s%N)" 'BEGIN { printf "%.0f", (e - s) / 1e9 }') s"
exit 0
