#!/bin/bash
# fold.sh - how fast memray-fold replays a large recording, next to
# heaptrack_print, and whether its memory stays flat as recordings grow.
#
# usage: bench/fold.sh [BUILD_DIR]      (default: build)
#
# Environment:
#   BENCH_ROUNDS    rounds of (memray-fold, heaptrack_print) runs (default 3)
#   BENCH_EVENTS_M  size of the main recording in millions of malloc/free
#                   events (default 50, or 20 if under 3 GB are free; with
#                   the varied workload 2).  A second recording twice as
#                   long is made for the RSS comparison.
#   BENCH_FOLD_WORKLOAD  churn (default: bench/churn.c, a few sizes over a
#                   64-block window) or varied (bench/churn_varied.c: 16 to
#                   4111 bytes, a ring of 1024 live blocks, calloc and malloc)
#   BENCH_CALLGRIND 0 to skip the instruction counts (default 1: counted
#                   with valgrind --tool=callgrind when the recording has at
#                   most 4 M events)
#   BENCH_RESULTS   a file to append "KEY VALUE" results to, for
#                   bench/summary.sh (default: none)
#
# Steps:
#   1. build the workload (bench/churn.c or bench/churn_varied.c);
#   2. record `churn N` with memray-record and with heaptrack (if installed);
#   3. time `memray-fold FILE > /dev/null` and `heaptrack_print -f HTFILE >
#      /dev/null`, interleaved, BENCH_ROUNDS rounds; report medians, events/s
#      for memray-fold (events = allocations + frees from memray-stat) and
#      heaptrack_print time / memray-fold time. memray-fold runs twice a
#      round: with its symbol cache (memray-fold(1)) emptied first, as the
#      first reading of a recording of new binaries is, and then with what
#      that run kept, as every later reading is; both are reported, and
#      the targets judged on each;
#   3b. with valgrind, the instructions of one run of each on the same files;
#   4. memray-fold's peak RSS (GNU time's %M) on that recording and on one of
#      `churn 2N`, which must not grow with the recording's length.
#
# Targets: >= 20 M events/s; >= 3x faster than heaptrack_print; RSS ratio
# (2N / N recording) < 1.3.  The script exits 0 whether or not the targets
# are met, and non-zero only when something fails (build error, a run that
# crashes, unreadable output).

set -u

BUILD=${1:-build}
ROUNDS=${BENCH_ROUNDS:-3}
EVENTS_M=${BENCH_EVENTS_M:-}
WORKLOAD=${BENCH_FOLD_WORKLOAD:-churn}
HEAPTRACK=/usr/bin/heaptrack
HEAPTRACK_PRINT=/usr/bin/heaptrack_print
GNU_TIME=/usr/bin/time
MIN_FREE_KB=$((3 * 1024 * 1024))

die() { echo "fold.sh: $*" >&2; exit 1; }

case $ROUNDS in ''|*[!0-9]*|0) die "BENCH_ROUNDS must be a positive integer" ;; esac

case $WORKLOAD in churn|varied) ;; *) die "BENCH_FOLD_WORKLOAD must be churn or varied" ;; esac
[ "$WORKLOAD" = varied ] && [ -z "$EVENTS_M" ] && EVENTS_M=2

here=$(cd "$(dirname "$0")" && pwd) || die "cannot find the bench directory"
# bench_result, have_callgrind, callgrind_ir (fold.sh's own helpers win)
BENCH_NAME=fold.sh  # read by lib.sh
. "$here/lib.sh"
# churn takes whole millions, churn_varied decimals too
if [ "$WORKLOAD" = varied ]; then positive_num BENCH_EVENTS_M "$EVENTS_M"
elif [ -n "$EVENTS_M" ]; then positive_int BENCH_EVENTS_M "$EVENTS_M"; fi
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "no build directory '${1:-build}' (run make first)"
RECORD=$BUILD/bin/memray-record
FOLD=$BUILD/bin/memray-fold
STAT=$BUILD/bin/memray-stat
for b in "$RECORD" "$FOLD" "$STAT"; do
	[ -x "$b" ] || die "$b missing (run make first)"
done

t0=$(date +%s%N)
case $t0 in *[!0-9]*) die "date +%s%N is not supported here" ;; esac

have_heaptrack=1
if [ ! -x "$HEAPTRACK" ] || [ ! -x "$HEAPTRACK_PRINT" ]; then
	have_heaptrack=0
	echo "fold.sh: $HEAPTRACK or $HEAPTRACK_PRINT not found (Debian package" \
	     "'heaptrack'); skipping the heaptrack_print comparison" >&2
fi
have_time=1
if [ ! -x "$GNU_TIME" ]; then
	have_time=0
	echo "fold.sh: $GNU_TIME not found (Debian package 'time');" \
	     "skipping the peak RSS measurements" >&2
fi

# --- build the workload ---------------------------------------------------
if [ "$WORKLOAD" = varied ]; then
	CHURN=$BUILD/bench/churn_varied
	SRC=churn_varied.c
else
	CHURN=$BUILD/bench/churn
	SRC=churn.c
fi
mkdir -p "$BUILD/bench" || die "cannot create $BUILD/bench"
cc -O2 -g -o "$CHURN" "$here/$SRC" || die "compiling $SRC failed"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fold-bench.XXXXXX") || die "mktemp failed"
export MEMRAY_SYMBOL_CACHE=$tmp/symbols
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- size: the recordings take ~4 B/event (memray) plus heaptrack's file -----
free_kb=$(df -Pk "$tmp" | awk 'NR == 2 { print $4 }')
case $free_kb in ''|*[!0-9]*) die "cannot read free space of $tmp from df" ;; esac
if [ -z "$EVENTS_M" ]; then
	EVENTS_M=50
	if [ "$free_kb" -lt "$MIN_FREE_KB" ]; then
		EVENTS_M=20
		echo "fold.sh: only $((free_kb / 1024)) MiB free in $tmp (< 3 GiB);" \
		     "shrinking to $EVENTS_M/$((2 * EVENTS_M)) M events" >&2
	fi
fi
EVENTS2_M=$(awk -v m="$EVENTS_M" 'BEGIN { print 2 * m }')

# --- helpers ----------------------------------------------------------------
# run_timed NAME CMD...: run CMD with stdout to /dev/null, append its wall time
# in ns to $tmp/NAME.times
run_timed() {
	local name=$1; shift
	local start end rc
	start=$(date +%s%N)
	"$@" >/dev/null 2>"$tmp/$name.err"
	rc=$?
	end=$(date +%s%N)
	if [ $rc -ne 0 ]; then
		echo "fold.sh: $name run failed (exit status $rc): $*" >&2
		sed 's/^/  | /' "$tmp/$name.err" >&2
		exit 1
	fi
	echo $((end - start)) >>"$tmp/$name.times"
}

# run_quiet WHAT CMD...: run CMD, die with its stderr if it fails
run_quiet() {
	local what=$1; shift
	"$@" >"$tmp/quiet.out" 2>"$tmp/quiet.err" || {
		local rc=$?
		echo "fold.sh: $what failed (exit status $rc): $*" >&2
		sed 's/^/  | /' "$tmp/quiet.err" >&2
		exit 1
	}
}

# median FILE: median of the numbers in FILE (mean of the middle two if even)
median() {
	sort -n "$1" | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2];
		      else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# spread FILE: "min-max" in seconds
spread() {
	sort -n "$1" | awk 'NR == 1 { lo = $1 } { hi = $1 }
		END { printf "%.3f-%.3f", lo / 1e9, hi / 1e9 }'
}

fsize() { wc -c <"$1" | tr -d ' '; }

# events_of FILE: set ev_allocs and ev_frees to a memray recording's
# allocations and frees, per memray-stat (no subshell, so die exits the script)
events_of() {
	"$STAT" "$1" >"$tmp/stat.out" 2>"$tmp/stat.err" || {
		sed 's/^/  | /' "$tmp/stat.err" >&2; die "memray-stat failed on $1"; }
	ev_allocs=$(awk '$1 == "allocations:" { print $2 }' "$tmp/stat.out")
	ev_frees=$(awk '$1 == "frees:" { print $2 }' "$tmp/stat.out")
	case "$ev_allocs$ev_frees" in ''|*[!0-9]*) die "cannot read allocations/frees from memray-stat output" ;; esac
}

# fold_rss FILE: set rss_kb and rss_wall to memray-fold's peak RSS (KiB) and
# wall time (s) on FILE
fold_rss() {
	"$GNU_TIME" -f '%M %e' -o "$tmp/rss.out" "$FOLD" "$1" >/dev/null 2>"$tmp/rss.err" || {
		local rc=$?
		echo "fold.sh: memray-fold failed under $GNU_TIME (exit status $rc) on $1" >&2
		sed 's/^/  | /' "$tmp/rss.err" >&2
		exit 1
	}
	# the last line: GNU time puts a "Command exited with ..." line first on error
	rss_kb=$(awk 'END { print $1 }' "$tmp/rss.out")
	rss_wall=$(awk 'END { print $2 }' "$tmp/rss.out")
	case $rss_kb in ''|*[!0-9]*) die "cannot read peak RSS from $GNU_TIME" ;; esac
}

# --- recordings ---------------------------------------------------------------
echo "fold: memray-fold replay of $(basename "$CHURN") $EVENTS_M ($EVENTS_M M events), $ROUNDS rounds" \
     "(memray-fold$([ $have_heaptrack = 1 ] && echo ', heaptrack_print') interleaved)"
echo "  free space in $tmp: $((free_kb / 1024)) MiB"
MFILE=$tmp/churn$EVENTS_M.memray
HDIR=$tmp/heaptrack
printf '  recording %s %s with memray-record ...' "$(basename "$CHURN")" "$EVENTS_M"
s=$(date +%s%N)
run_quiet memray-record "$RECORD" -q -f -o "$MFILE" "$CHURN" "$EVENTS_M"
[ -s "$MFILE" ] || die "memray-record wrote no output"
printf ' %.1f s, %s bytes\n' "$(awk -v d=$(( $(date +%s%N) - s )) 'BEGIN { print d / 1e9 }')" "$(fsize "$MFILE")"

hfile=
if [ $have_heaptrack = 1 ]; then
	mkdir "$HDIR" || die "cannot create $HDIR"
	printf '  recording %s %s with heaptrack ...' "$(basename "$CHURN")" "$EVENTS_M"
	s=$(date +%s%N)
	# heaptrack appends .zst or .gz to the name given with -o
	run_quiet heaptrack "$HEAPTRACK" -o "$HDIR/churn" "$CHURN" "$EVENTS_M"
	hfile=$(ls "$HDIR"/churn* 2>/dev/null | head -n1)
	[ -n "$hfile" ] && [ -s "$hfile" ] || die "heaptrack wrote no output"
	printf ' %.1f s, %s bytes (%s)\n' "$(awk -v d=$(( $(date +%s%N) - s )) 'BEGIN { print d / 1e9 }')" \
		"$(fsize "$hfile")" "$(basename "$hfile")"
fi

events_of "$MFILE"
allocs=$ev_allocs; frees=$ev_frees
events=$((allocs + frees))
echo "  events in the memray recording: $events ($allocs allocations + $frees frees)"

# --- timed replays --------------------------------------------------------------
for r in $(seq 1 "$ROUNDS"); do
	printf '  round %d/%d ...' "$r" "$ROUNDS"
	rm -rf "$MEMRAY_SYMBOL_CACHE"
	run_timed cold "$FOLD" "$MFILE"
	run_timed fold "$FOLD" "$MFILE"
	if [ $have_heaptrack = 1 ]; then
		run_timed hprint "$HEAPTRACK_PRINT" -f "$hfile"
	fi
	printf ' memray-fold %s s (cache empty %s s)%s\n' \
		"$(tail -n1 "$tmp/fold.times" | awk '{ printf "%.3f", $1 / 1e9 }')" \
		"$(tail -n1 "$tmp/cold.times" | awk '{ printf "%.3f", $1 / 1e9 }')" \
		"$([ $have_heaptrack = 1 ] && tail -n1 "$tmp/hprint.times" | awk '{ printf ", heaptrack_print %.3f s", $1 / 1e9 }')"
done

# --- instructions on the same files -------------------------------------------------
f_ir=; c_ir=; h_ir=
if have_callgrind && awk -v m="$EVENTS_M" 'BEGIN { exit !(m <= 4) }'; then
	f_ir=$(callgrind_ir fold "$FOLD" "$MFILE")
	rm -rf "$MEMRAY_SYMBOL_CACHE"
	c_ir=$(callgrind_ir cold "$FOLD" "$MFILE")
	[ $have_heaptrack = 1 ] && h_ir=$(callgrind_ir hprint "$HEAPTRACK_PRINT" -f "$hfile")
elif have_callgrind; then
	echo "  (instructions not counted: more than 4 M events would take long under valgrind)"
fi
# heaptrack's file is no longer needed; free the space before the 2N recording
rm -rf "$HDIR"

f_med=$(median "$tmp/fold.times")
c_med=$(median "$tmp/cold.times")
h_med=
[ $have_heaptrack = 1 ] && h_med=$(median "$tmp/hprint.times")

# --- peak RSS on N and on 2N events ----------------------------------------------
rss1=; rss2=; wall2=; events2=
if [ $have_time = 1 ]; then
	fold_rss "$MFILE"
	rss1=$rss_kb
	rm -f "$MFILE"
	MFILE2=$tmp/churn$EVENTS2_M.memray
	printf '  recording %s %s with memray-record ...' "$(basename "$CHURN")" "$EVENTS2_M"
	s=$(date +%s%N)
	run_quiet memray-record "$RECORD" -q -f -o "$MFILE2" "$CHURN" "$EVENTS2_M"
	[ -s "$MFILE2" ] || die "memray-record wrote no output"
	printf ' %.1f s, %s bytes\n' "$(awk -v d=$(( $(date +%s%N) - s )) 'BEGIN { print d / 1e9 }')" "$(fsize "$MFILE2")"
	events_of "$MFILE2"
	events2=$((ev_allocs + ev_frees))
	fold_rss "$MFILE2"
	rss2=$rss_kb; wall2=$rss_wall
	rm -f "$MFILE2"
fi

# --- report ----------------------------------------------------------------------
echo
printf '%-16s %9s %13s %14s\n' tool "median s" "range s" "M events/s"
awk -v t="$f_med" -v e="$events" -v rng="$(spread "$tmp/fold.times")" 'BEGIN {
	printf "%-16s %9.3f %13s %14.1f\n", "memray-fold", t / 1e9, rng, e / (t / 1e9) / 1e6 }'
awk -v t="$c_med" -v e="$events" -v rng="$(spread "$tmp/cold.times")" 'BEGIN {
	printf "%-16s %9.3f %13s %14.1f  (symbol cache empty)\n", "memray-fold", t / 1e9, rng, e / (t / 1e9) / 1e6 }'
if [ $have_heaptrack = 1 ]; then
	awk -v t="$h_med" -v e="$events" -v rng="$(spread "$tmp/hprint.times")" 'BEGIN {
		printf "%-16s %9.3f %13s %14.1f\n", "heaptrack_print", t / 1e9, rng, e / (t / 1e9) / 1e6 }'
	awk -v f="$f_med" -v c="$c_med" -v h="$h_med" 'BEGIN {
		printf "heaptrack_print time / memray-fold time: %.2f (symbol cache empty: %.2f)\n", h / f, h / c }'
	[ -n "$h_ir" ] && awk -v f="$f_ir" -v c="$c_ir" -v h="$h_ir" 'BEGIN {
		printf "callgrind instructions: memray-fold %.0f M (symbol cache empty: %.0f M), heaptrack_print %.0f M: %.2fx (%.2fx)\n", f / 1e6, c / 1e6, h / 1e6, h / f, h / c }'
else
	echo "heaptrack_print  (not installed: skipped)"
fi
echo
if [ $have_time = 1 ]; then
	echo "memray-fold peak RSS (GNU time %M):"
	printf '  %s %-4s (%9d events): %8d KiB\n' "$(basename "$CHURN")" "$EVENTS_M" "$events" "$rss1"
	printf '  %s %-4s (%9d events): %8d KiB  (replay %s s)\n' "$(basename "$CHURN")" "$EVENTS2_M" "$events2" "$rss2" "$wall2"
	awk -v a="$rss1" -v b="$rss2" 'BEGIN { printf "  ratio %sM / %sM: %.2f\n", "'"$EVENTS2_M"'", "'"$EVENTS_M"'", b / a }'
else
	echo "memray-fold peak RSS: $GNU_TIME not installed (Debian package 'time'); skipped"
fi

# --- verdict -----------------------------------------------------------------------
echo
awk -v t="$f_med" -v e="$events" 'BEGIN {
	r = e / (t / 1e9) / 1e6
	printf "verdict: memray-fold replays %.1f M events/s: target (>= 20) %s\n", r, (r >= 20 ? "MET" : "MISSED") }'
bench_result "fold.$WORKLOAD.events" "$events"
bench_result "fold.$WORKLOAD.meps" "$(awk -v t="$f_med" -v e="$events" 'BEGIN { printf "%.1f", e / (t / 1e9) / 1e6 }')"
if [ $have_heaptrack = 1 ]; then
	awk -v f="$f_med" -v h="$h_med" 'BEGIN {
		r = h / f
		printf "verdict: memray-fold is %.2fx faster than heaptrack_print: target (>= 3x) %s\n", r, (r >= 3 ? "MET" : "MISSED") }'
	awk -v f="$c_med" -v h="$h_med" 'BEGIN {
		r = h / f
		printf "verdict: with its symbol cache empty, memray-fold is %.2fx faster than heaptrack_print: target (>= 3x) %s\n", r, (r >= 3 ? "MET" : "MISSED") }'
	bench_result "fold.$WORKLOAD.wall" "$(awk -v f="$f_med" -v h="$h_med" 'BEGIN { printf "%.2f", h / f }')"
	bench_result "fold.$WORKLOAD.cold_wall" "$(awk -v f="$c_med" -v h="$h_med" 'BEGIN { printf "%.2f", h / f }')"
	[ -n "$h_ir" ] && bench_result "fold.$WORKLOAD.ir" "$(awk -v f="$f_ir" -v h="$h_ir" 'BEGIN { printf "%.2f", h / f }')"
	[ -n "$h_ir" ] && bench_result "fold.$WORKLOAD.cold_ir" "$(awk -v f="$c_ir" -v h="$h_ir" 'BEGIN { printf "%.2f", h / f }')"
else
	echo "verdict: heaptrack not installed; speed-up target not judged"
fi
if [ $have_time = 1 ]; then
	awk -v a="$rss1" -v b="$rss2" 'BEGIN {
		r = b / a
		printf "verdict: peak RSS on a recording twice as long is %.2fx: target (< 1.3) %s\n", r, (r < 1.3 ? "MET" : "MISSED") }'
else
	echo "verdict: $GNU_TIME not installed; RSS target not judged"
fi
exit 0
