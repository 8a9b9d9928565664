#!/bin/bash
# summary.sh - one table of issue 18's measures: memray-c's value,
# heaptrack's, memray's, the target and whether it is met.
#
# usage: bench/summary.sh [BUILD_DIR]      (default: build)
#
# The measures come from the other bench scripts, which append "KEY VALUE"
# lines to $BENCH_RESULTS (default BUILD_DIR/bench/results.txt; make bench
# empties it first and runs this script last).  Whatever is missing from
# that file is measured here first, by running the script that measures it:
#   py.*       bench/python.sh, workloads objects calls compileall deep shallow and
#              modes memray native heaptrack unless BENCH_PY_WORKLOADS and
#              BENCH_PY_MODES say otherwise
#   size.*     bench/streams.sh
#   threads.*  bench/threads.sh
#   fold.*     bench/fold.sh with BENCH_FOLD_WORKLOAD=varied
#   sid.python3.14.py.*  bench/python.sh on CPython 3.14, which Debian 12
#              lacks, in the Debian sid chroot the tests build and reuse
#              (tests/sid.sh bench; modes memray native). BENCH_SID=0
#              leaves it out; BENCH_SID_PYTHON names another of sid's
#              interpreters (default /usr/bin/python3.14)
# Their size knobs (BENCH_ROUNDS, BENCH_PY_SCALE, BENCH_CG_SCALE,
# BENCH_EVENTS_M, BENCH_VARIED_M, BENCH_THREADS_M, BENCH_THREADS_PY, ...)
# pass through; a quick run of everything, in a few minutes:
#   BENCH_ROUNDS=3 BENCH_PY_SCALE=25 BENCH_CG_SCALE=5 BENCH_EVENTS_M=2 \
#   BENCH_THREADS_M=2 BENCH_THREADS_PY=400000 bench/summary.sh build
#
# memray (Bloomberg's) is not run by these scripts: its column says "not
# installed" when no memray command is on PATH, "not measured" otherwise.
# The script exits 0 whether or not the targets are met, non-zero only when
# something fails.

set -u

here=$(cd "$(dirname "$0")" && pwd) || { echo "summary.sh: cannot find the bench directory" >&2; exit 1; }
BENCH_NAME=summary.sh  # read by lib.sh
. "$here/lib.sh"

BUILD=$(cd "${1:-build}" 2>/dev/null && pwd) || die "no build directory '${1:-build}' (run make first)"
export BENCH_RESULTS=${BENCH_RESULTS:-$BUILD/bench/results.txt}
mkdir -p "$(dirname "$BENCH_RESULTS")" || die "cannot create $(dirname "$BENCH_RESULTS")"
touch "$BENCH_RESULTS" || die "cannot write $BENCH_RESULTS"

# has_key PREFIX: some result's key starts with PREFIX
has_key() { grep -q "^$1" "$BENCH_RESULTS"; }

if ! has_key 'py\.deep\.'; then
	echo "== summary.sh: running bench/python.sh =="
	BENCH_PY_WORKLOADS=${BENCH_PY_WORKLOADS:-objects calls compileall deep shallow} \
	BENCH_PY_MODES=${BENCH_PY_MODES:-memray native heaptrack} \
		"$here/python.sh" "$BUILD" || die "bench/python.sh failed"
fi
# 3.14, which Debian 12 lacks: bench/python.sh in the sid chroot that the
# tests build (tests/sid.sh), unless BENCH_SID=0
SID_PY=${BENCH_SID_PYTHON:-/usr/bin/python3.14}
SID_KEY=sid.${SID_PY##*/}
if [ "${BENCH_SID:-1}" != 0 ] && ! has_key "$SID_KEY\\.py\\.deep\\."; then
	echo "== summary.sh: running bench/python.sh on sid's $SID_PY (tests/sid.sh bench) =="
	MEMRAY_SID_PYTHONS=$SID_PY \
	BENCH_PY_WORKLOADS=${BENCH_PY_WORKLOADS:-objects calls compileall deep shallow} \
	BENCH_PY_MODES=${BENCH_PY_MODES:-memray native} \
		"$here/../tests/sid.sh" bench ||
		echo "summary.sh: sid's $SID_PY could not be benched (tests/sid.sh says why); its rows are not measured" >&2
fi
if ! has_key 'size\.'; then
	echo "== summary.sh: running bench/streams.sh =="
	"$here/streams.sh" "$BUILD" || die "bench/streams.sh failed"
fi
if ! has_key 'threads\.'; then
	echo "== summary.sh: running bench/threads.sh =="
	"$here/threads.sh" "$BUILD" || die "bench/threads.sh failed"
fi
if ! has_key 'fold\.varied\.'; then
	echo "== summary.sh: running bench/fold.sh on the varied churn =="
	BENCH_FOLD_WORKLOAD=varied BENCH_EVENTS_M=${BENCH_VARIED_M:-2} \
		"$here/fold.sh" "$BUILD" || die "bench/fold.sh failed"
fi

# R[KEY]: the last value recorded for KEY
declare -A R
while read -r k v; do
	[ -n "$k" ] && R[$k]=$v
done <"$BENCH_RESULTS"
get() { echo "${R[$1]:-}"; }

if command -v memray >/dev/null; then MEMRAY="not measured"; else MEMRAY="not installed"; fi

# row MEASURE VALUE HEAPTRACK TARGET: one line; TARGET is "<= X", ">= X" or
# "-"; the verdict is MET or MISSED for VALUE against it, "-" without a
# target, "not measured" without a value
row() {
	local what=$1 val=$2 ht=$3 target=$4 verdict=-
	if [ -z "$val" ]; then
		val="not measured"
		[ "$target" = - ] || verdict="not measured"
	elif [ "$target" != - ]; then
		verdict=$(awk -v v="$val" -v t="$target" 'BEGIN {
			split(t, a, " "); ok = (a[1] == "<=") ? v + 0 <= a[2] + 0 : v + 0 >= a[2] + 0
			print (ok ? "MET" : "MISSED") }')
	fi
	printf '%-50s %-20s %-22s %-14s %-9s %s\n' "$what" "$val" "${ht:--}" "$MEMRAY" "$target" "$verdict"
}
# ratio_of A B: A / B when both are known
ratio_of() { [ -n "$1" ] && [ -n "$2" ] && ratio "$1" "$2"; }
# triple P: "x / y / z" of the values P1, P2, P8, or nothing
triple() {
	[ -n "$(get "${1}1")" ] || return 0
	echo "$(get "${1}1") / $(get "${1}2") / $(get "${1}8")"
}

echo
echo "== issue 18: summary =="
echo "results: $BENCH_RESULTS; Python sizes ${R[py.scale]:-?} of the defaults"
echo
printf '%-50s %-20s %-22s %-14s %-9s %s\n' measure memray-c heaptrack memray target verdict
printf '%-50s %-20s %-22s %-14s %-9s %s\n' ------- -------- --------- ------ ------ -------
row "deep: wall x plain (default mode)" "$(get py.deep.memray.wall)" "$(get py.deep.heaptrack.wall)" "<= 1.5"
row "deep: instructions x plain (default mode)" "$(get py.deep.memray.ir)" "" "<= 1.4"
row "deep: wall x plain (--native)" "$(get py.deep.native.wall)" "$(get py.deep.heaptrack.wall)" "<= 4"
row "deep: instructions x plain (--native)" "$(get py.deep.native.ir)" "" "-"
row "shallow (3 frames): wall x plain (default mode)" "$(get py.shallow.memray.wall)" "$(get py.shallow.heaptrack.wall)" "-"
row "shallow: instructions x plain (default mode)" "$(get py.shallow.memray.ir)" "" "-"
row "objects: wall x plain (default mode)" "$(get py.objects.memray.wall)" "$(get py.objects.heaptrack.wall)" "<= 1.15"
row "objects: instructions x plain (default mode)" "$(get py.objects.memray.ir)" "" "<= 1.15"
row "calls: wall x plain (default mode)" "$(get py.calls.memray.wall)" "$(get py.calls.heaptrack.wall)" "-"
row "calls: instructions x plain (default mode)" "$(get py.calls.memray.ir)" "" "<= 1.02"
row "compileall: wall x plain (default mode)" "$(get py.compileall.memray.wall)" "$(get py.compileall.heaptrack.wall)" "<= 1.1"
row "compileall: instructions x plain (default mode)" "$(get py.compileall.memray.ir)" "" "<= 1.1"
# the same on 3.14 (heaptrack is not in the chroot)
S=$SID_KEY.py
V=${SID_PY##*/python}
row "$V deep: wall x plain (default mode)" "$(get $S.deep.memray.wall)" "" "<= 1.5"
row "$V deep: instructions x plain (default mode)" "$(get $S.deep.memray.ir)" "" "<= 1.4"
row "$V deep: wall x plain (--native)" "$(get $S.deep.native.wall)" "" "<= 4"
row "$V deep: instructions x plain (--native)" "$(get $S.deep.native.ir)" "" "-"
row "$V shallow: wall x plain (default mode)" "$(get $S.shallow.memray.wall)" "" "-"
row "$V shallow: instructions x plain (default mode)" "$(get $S.shallow.memray.ir)" "" "-"
row "$V objects: wall x plain (default mode)" "$(get $S.objects.memray.wall)" "" "<= 1.15"
row "$V objects: instructions x plain (default mode)" "$(get $S.objects.memray.ir)" "" "<= 1.15"
row "$V calls: instructions x plain (default mode)" "$(get $S.calls.memray.ir)" "" "<= 1.02"
row "$V compileall: wall x plain (default mode)" "$(get $S.compileall.memray.wall)" "" "<= 1.1"
row "$V compileall: instructions x plain (default mode)" "$(get $S.compileall.memray.ir)" "" "<= 1.1"
for w in churn varied objects objects-pa buffers deep compileall; do
	ht=$(get "size.$w.heaptrack")
	row "stream $w: bytes/event, raw" "$(get "size.$w.raw")" "$ht" "<= 4"
	zt=-
	[ -n "$ht" ] && zt="<= $(awk -v h="$ht" 'BEGIN { printf "%.3f", 2 * h }')"
	row "stream $w: bytes/event, -z" "$(get "size.$w.z")" "$ht" "$zt"
done
for lang in c py; do
	row "threads $lang: wall x plain at 1/2/8 threads" "$(triple "threads.$lang.memray.wall.")" \
		"$(triple "threads.$lang.heaptrack.wall.")" "-"
	row "threads $lang: wall ratio 8 threads / 1 thread" \
		"$(ratio_of "$(get "threads.$lang.memray.wall.8")" "$(get "threads.$lang.memray.wall.1")")" \
		"$(ratio_of "$(get "threads.$lang.heaptrack.wall.8")" "$(get "threads.$lang.heaptrack.wall.1")")" "<= 1.5"
	row "threads $lang: instr x plain at 1/2/8 threads" "$(triple "threads.$lang.memray.ir.")" "" "-"
	row "threads $lang: instr ratio 8 threads / 1 thread" \
		"$(ratio_of "$(get "threads.$lang.memray.ir.8")" "$(get "threads.$lang.memray.ir.1")")" "" "<= 1.5"
done
row "fold varied: heaptrack_print / memray-fold wall" "$(get fold.varied.wall)" "1 (reference)" ">= 3"
row "fold varied: heaptrack_print / memray-fold instr" "$(get fold.varied.ir)" "1 (reference)" ">= 3"
row "fold varied, symbol cache empty: wall" "$(get fold.varied.cold_wall)" "1 (reference)" ">= 3"
row "fold varied, symbol cache empty: instr" "$(get fold.varied.cold_ir)" "1 (reference)" ">= 3"
echo
echo "notes:"
echo "  x plain: the recorder's median wall time (interleaved rounds) or callgrind instructions (one run,"
echo "    every process summed, memray-record's own included) over the plain run's"
for w in objects calls compileall deep shallow; do
	[ -n "$(get "py.$w.cgsize")" ] && echo "  callgrind size, $w: $(get "py.$w.cgsize" | tr '_' ' ')"
done
echo "  heaptrack: $HEAPTRACK_CG_NOTE"
echo "  stream -z target: at most 2x heaptrack's bytes/event (the target column shows that bound)"
echo "  stream sizes: each file over the events (allocations + frees) memray-stat counts in the raw recording;"
echo "    heaptrack's file is as heaptrack writes it (compressed)"
echo "  threads 8/1: the 8-thread ratio over the 1-thread ratio; the verdict judges memray-c's"
echo "  memray: $MEMRAY; these scripts do not run it"
exit 0
