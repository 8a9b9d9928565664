#!/bin/bash
# streams.sh - how many bytes the stream takes per event on every bench
# workload, raw and with memray-record -z, next to heaptrack's file.
#
# usage: bench/streams.sh [BUILD_DIR]      (default: build)
#
# Environment:
#   BENCH_EVENTS_M      millions of events of the C churn (default 4)
#   BENCH_VARIED_M      millions of events of the varied churn (default 2;
#                       decimals allowed)
#   BENCH_PY_SCALE      size of the Python workloads in percent of their
#                       defaults (default 100; 25 for a quick run)
#   BENCH_COMPILE_PKGS  the stdlib packages compileall compiles (default:
#                       json email http xml asyncio unittest logging)
#   PYTHON              the interpreter (default /usr/bin/python3, by its
#                       real path)
#   BENCH_RESULTS       a file to append "KEY VALUE" results to, for
#                       bench/summary.sh (default: none)
#
# Workloads: churn (bench/churn.c: malloc/free over a 64-block window, a
# few sizes), varied (bench/churn_varied.c: 16 to 4111 bytes, a ring of
# 1024 live blocks, calloc and malloc mixed), and the Python workloads
# objects, buffers, deep (bench/py/) and compileall, each in memray-record's
# default mode, and objects-pa: objects.py (a fifth as long) with
# --trace-python-allocators, which records every object the loop makes
# (default mode, under pymalloc, records little more than start-up);
# heaptrack records it with PYTHONMALLOC=malloc, to see the same objects.  Each is recorded once by memray-record, once by
# memray-record -z and once by heaptrack (its file as written: zstd or gzip
# compressed by heaptrack itself).  Events are allocations + frees as
# memray-stat counts them in the raw recording; all three files are divided
# by that same count.
#
# Targets (issue 18): raw <= 4 bytes/event; -z <= 2x heaptrack's file.
# The script exits 0 whether or not they are met, non-zero only when
# something fails.

set -u

EVENTS_M=${BENCH_EVENTS_M:-4}
VARIED_M=${BENCH_VARIED_M:-2}
SCALE=${BENCH_PY_SCALE:-100}
COMPILE_PKGS=${BENCH_COMPILE_PKGS:-json email http xml asyncio unittest logging}
HEAPTRACK=/usr/bin/heaptrack
T_RAW=4
T_Z_HT=2

here=$(cd "$(dirname "$0")" && pwd) || { echo "streams.sh: cannot find the bench directory" >&2; exit 1; }
BENCH_NAME=streams.sh  # read by lib.sh
. "$here/lib.sh"

positive_int BENCH_EVENTS_M "$EVENTS_M"
positive_num BENCH_VARIED_M "$VARIED_M"
positive_int BENCH_PY_SCALE "$SCALE"
BUILD=$(cd "${1:-build}" 2>/dev/null && pwd) || die "no build directory '${1:-build}' (run make first)"
RECORD=$BUILD/bin/memray-record
STAT=$BUILD/bin/memray-stat
for b in "$RECORD" "$STAT"; do [ -x "$b" ] || die "$b missing (run make first)"; done
real_python
py_stdlib=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])') ||
	die "$PY: cannot find its standard library"

have_heaptrack=1
if [ ! -x "$HEAPTRACK" ]; then
	have_heaptrack=0
	echo "streams.sh: $HEAPTRACK not found (Debian package 'heaptrack'); skipping its column" >&2
fi

mkdir -p "$BUILD/bench" || die "cannot create $BUILD/bench"
cc -O2 -g -o "$BUILD/bench/churn" "$here/churn.c" || die "compiling churn.c failed"
cc -O2 -g -o "$BUILD/bench/churn_varied" "$here/churn_varied.c" || die "compiling churn_varied.c failed"
bench_tmp

n_objects=$((1500000 * SCALE / 100)); [ $n_objects -ge 1 ] || n_objects=1
n_objects_pa=$((300000 * SCALE / 100)); [ $n_objects_pa -ge 1 ] || n_objects_pa=1
n_buffers=$((1500 * SCALE / 100)); [ $n_buffers -ge 1 ] || n_buffers=1
n_deep=$((2400000 * SCALE / 100)); [ $n_deep -ge 1 ] || n_deep=1

# wl_cmd WORKLOAD: set CMD, the workload's command line, and DESC
wl_cmd() {
	case $1 in
	churn) CMD=("$BUILD/bench/churn" "$EVENTS_M"); DESC="churn $EVENTS_M" ;;
	varied) CMD=("$BUILD/bench/churn_varied" "$VARIED_M"); DESC="churn_varied $VARIED_M" ;;
	objects) CMD=("$PY" "$here/py/objects.py" "$n_objects"); DESC="objects.py $n_objects" ;;
	objects-pa) CMD=("$PY" "$here/py/objects.py" "$n_objects_pa")
		DESC="objects.py $n_objects_pa, Python allocators" ;;
	buffers) CMD=("$PY" "$here/py/buffers.py" "$n_buffers"); DESC="buffers.py $n_buffers" ;;
	deep) CMD=("$PY" "$here/py/deep.py" "$n_deep"); DESC="deep.py $n_deep" ;;
	compileall) CMD=("$PY" -m compileall -q -f "$tmp/src"); DESC="compileall ($COMPILE_PKGS)" ;;
	esac
}

# prepare WORKLOAD: a fresh copy of the packages for compileall
prepare() {
	[ "$1" = compileall ] || return 0
	{ rm -rf "$tmp/src" && mkdir "$tmp/src"; } || die "cannot create $tmp/src"
	local p
	for p in $COMPILE_PKGS; do
		cp -R "$py_stdlib/$p" "$tmp/src/" || die "cannot copy $py_stdlib/$p"
	done
	find "$tmp/src" -name __pycache__ -prune -exec rm -rf {} + || die "cannot clean $tmp/src"
}

# run_ok CMD...: run CMD, its output to files; a failing run ends the script
run_ok() {
	"$@" >"$tmp/run.out" 2>"$tmp/run.err" || {
		local rc=$?
		echo "streams.sh: run failed (exit status $rc): $*" >&2
		sed 's/^/  | /' "$tmp/run.err" >&2
		exit 1
	}
}

echo "streams: bytes per event (allocations + frees counted by memray-stat), $PY"
printf '%-11s %-34s %9s %8s %8s %8s %9s %8s\n' workload command events raw "-z" heaptrack "-z / ht" "raw <= $T_RAW"
for w in churn varied objects objects-pa buffers deep compileall; do
	wl_cmd "$w"
	# objects-pa: every object allocation (--trace-python-allocators),
	# where default mode sees little more than start-up under pymalloc
	opts=()
	[ "$w" = objects-pa ] && opts=(--trace-python-allocators)
	prepare "$w"
	run_ok "$RECORD" "${opts[@]}" -q -f -o "$tmp/raw.bin" "${CMD[@]}"
	prepare "$w"
	run_ok "$RECORD" "${opts[@]}" -z -q -f -o "$tmp/z.bin" "${CMD[@]}"
	stat_events "$tmp/raw.bin"
	raw=$(fsize "$tmp/raw.bin"); z=$(fsize "$tmp/z.bin")
	ht=
	if [ $have_heaptrack = 1 ]; then
		prepare "$w"
		rm -rf "$tmp/ht" && mkdir "$tmp/ht" || die "cannot create $tmp/ht"
		# heaptrack sees Python's objects only through malloc
		if [ "$w" = objects-pa ]; then
			run_ok env PYTHONMALLOC=malloc "$HEAPTRACK" -o "$tmp/ht/$w" "${CMD[@]}"
		else
			run_ok "$HEAPTRACK" -o "$tmp/ht/$w" "${CMD[@]}"
		fi
		ht=$(fsize "$(heaptrack_file "$tmp/ht")")
	fi
	rm -rf "$tmp/raw.bin" "$tmp/z.bin" "$tmp/ht"
	bpe_raw=$(ratio "$raw" "$EVENTS" %.3f)
	bpe_z=$(ratio "$z" "$EVENTS" %.3f)
	bpe_ht=; zht=
	[ -n "$ht" ] && bpe_ht=$(ratio "$ht" "$EVENTS" %.3f) && zht=$(ratio "$z" "$ht")
	printf '%-11s %-34s %9d %8s %8s %8s %9s %8s\n' "$w" "$DESC" "$EVENTS" "$bpe_raw" "$bpe_z" \
		"${bpe_ht:--}" "${zht:--}" "$(awk -v x="$bpe_raw" -v l="$T_RAW" 'BEGIN { print (x <= l ? "MET" : "MISSED") }')"
	bench_result "size.$w.events" "$EVENTS"
	bench_result "size.$w.raw" "$bpe_raw"
	bench_result "size.$w.z" "$bpe_z"
	[ -n "$bpe_ht" ] && bench_result "size.$w.heaptrack" "$bpe_ht"
done
echo "(bytes per event of each file; -z / ht: memray-record -z's file over heaptrack's, target <= $T_Z_HT)"
[ $have_heaptrack = 1 ] || echo "(heaptrack not installed: its column and the -z target are not judged)"
exit 0
