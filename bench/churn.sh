#!/bin/bash
# churn.sh - compare the overhead of memray-record with heaptrack's on the
# bench/churn.c workload.
#
# usage: bench/churn.sh [BUILD_DIR]      (default: build)
#
# Environment:
#   BENCH_ROUNDS    rounds of (plain, memray-record, heaptrack) runs (default 5)
#   BENCH_EVENTS_M  workload size in millions of malloc/free events (default 4)
#
# Runs are interleaved (plain, memray, heaptrack, plain, ...) so that drift
# in machine load hits every column alike; the table reports medians.
# The script exits 0 whether or not the overhead target is met, and non-zero
# only when something fails (build error, a run that crashes, bad output).

set -u

BUILD=${1:-build}
ROUNDS=${BENCH_ROUNDS:-5}
EVENTS_M=${BENCH_EVENTS_M:-4}
HEAPTRACK=/usr/bin/heaptrack
GZIP=/usr/bin/gzip
ZSTD=/usr/bin/zstd

die() { echo "churn.sh: $*" >&2; exit 1; }

case $ROUNDS in ''|*[!0-9]*|0) die "BENCH_ROUNDS must be a positive integer" ;; esac
case $EVENTS_M in ''|*[!0-9]*|0) die "BENCH_EVENTS_M must be a positive integer" ;; esac

here=$(cd "$(dirname "$0")" && pwd) || die "cannot find the bench directory"
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "no build directory '${1:-build}' (run make first)"
RECORD=$BUILD/bin/memray-record
STAT=$BUILD/bin/memray-stat
[ -x "$RECORD" ] || die "$RECORD missing (run make first)"
[ -x "$STAT" ] || die "$STAT missing (run make first)"

t0=$(date +%s%N)
case $t0 in *[!0-9]*) die "date +%s%N is not supported here" ;; esac

have_heaptrack=1
if [ ! -x "$HEAPTRACK" ]; then
	have_heaptrack=0
	echo "churn.sh: $HEAPTRACK not found (Debian package 'heaptrack');" \
	     "skipping the heaptrack column" >&2
fi

# --- build the workload ---------------------------------------------------
CHURN=$BUILD/bench/churn
mkdir -p "$BUILD/bench" || die "cannot create $BUILD/bench"
cc -O2 -g -o "$CHURN" "$here/churn.c" || die "compiling churn.c failed"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/churn-bench.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ----------------------------------------------------------------
# run_timed NAME CMD...: run CMD, append its wall time in ns to $tmp/NAME.times
run_timed() {
	local name=$1; shift
	local start end rc
	start=$(date +%s%N)
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
	rc=$?
	end=$(date +%s%N)
	if [ $rc -ne 0 ]; then
		echo "churn.sh: $name run failed (exit status $rc): $*" >&2
		sed 's/^/  | /' "$tmp/$name.err" >&2
		exit 1
	fi
	echo $((end - start)) >>"$tmp/$name.times"
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

# --- runs -------------------------------------------------------------------
echo "churn: $EVENTS_M M events, $ROUNDS rounds (plain, memray-record$([ $have_heaptrack = 1 ] && echo ', heaptrack') interleaved)"
MFILE=$tmp/churn.memray
HDIR=$tmp/heaptrack
for r in $(seq 1 "$ROUNDS"); do
	printf '  round %d/%d ...' "$r" "$ROUNDS"
	run_timed plain "$CHURN" "$EVENTS_M"
	run_timed memray "$RECORD" -q -f -o "$MFILE" "$CHURN" "$EVENTS_M"
	[ -s "$MFILE" ] || die "memray-record wrote no output"
	if [ $have_heaptrack = 1 ]; then
		rm -rf "$HDIR"; mkdir "$HDIR"
		# heaptrack appends .zst or .gz to the name given with -o
		run_timed heaptrack "$HEAPTRACK" -o "$HDIR/churn" "$CHURN" "$EVENTS_M"
	fi
	printf ' plain %s s, memray %s s%s\n' \
		"$(tail -n1 "$tmp/plain.times" | awk '{ printf "%.3f", $1 / 1e9 }')" \
		"$(tail -n1 "$tmp/memray.times" | awk '{ printf "%.3f", $1 / 1e9 }')" \
		"$([ $have_heaptrack = 1 ] && tail -n1 "$tmp/heaptrack.times" | awk '{ printf ", heaptrack %.3f s", $1 / 1e9 }')"
done

# --- sizes and event counts (from the last round's files) ---------------------
"$STAT" "$MFILE" >"$tmp/stat.out" 2>"$tmp/stat.err" || {
	sed 's/^/  | /' "$tmp/stat.err" >&2; die "memray-stat failed on the recording"; }
allocs=$(awk '$1 == "allocations:" { print $2 }' "$tmp/stat.out")
frees=$(awk '$1 == "frees:" { print $2 }' "$tmp/stat.out")
case "$allocs$frees" in ''|*[!0-9]*) die "cannot read allocations/frees from memray-stat output" ;; esac
events=$((allocs + frees))
msize=$(fsize "$MFILE")

hsize=
if [ $have_heaptrack = 1 ]; then
	hfile=$(ls "$HDIR"/churn* 2>/dev/null | head -n1)
	[ -n "$hfile" ] && [ -s "$hfile" ] || die "heaptrack wrote no output"
	hsize=$(fsize "$hfile")
	hname=$(basename "$hfile")
	hname=${hname#churn}
fi

mgz=; mzst=
[ -x "$GZIP" ] && mgz=$("$GZIP" -c "$MFILE" | wc -c | tr -d ' ')
[ -x "$ZSTD" ] && mzst=$("$ZSTD" -q -c "$MFILE" | wc -c | tr -d ' ')

# --- table --------------------------------------------------------------------
p_med=$(median "$tmp/plain.times")
m_med=$(median "$tmp/memray.times")
h_med=
[ $have_heaptrack = 1 ] && h_med=$(median "$tmp/heaptrack.times")

echo
echo "events recorded by memray-record: $events ($allocs allocations + $frees frees)"
echo
printf '%-14s %9s %13s %8s %9s %8s %11s %8s\n' \
	tool "median s" "range s" "x plain" overhead "ovh/ht" "file bytes" "B/event"
# overhead = (t - plain) / plain; ovh/ht = that overhead / heaptrack's overhead
row() { # name median_ns file_size per_event range
	awk -v n="$1" -v t="$2" -v p="$p_med" -v h="$h_med" -v sz="$3" -v be="$4" -v rng="$5" 'BEGIN {
		ov = (t - p) / p
		rel = "-"
		if (n != "plain" && h != "" && h > p) rel = sprintf("%.2f", ov / ((h - p) / p))
		printf "%-14s %9.3f %13s %8.2f %9s %8s %11s %8s\n", n, t / 1e9, rng, t / p,
			(n == "plain" ? "-" : sprintf("%+.0f%%", ov * 100)), rel,
			(sz == "" ? "-" : sz), (be == "" ? "-" : be)
	}'
}
row plain "$p_med" "" "" "$(spread "$tmp/plain.times")"
row memray-record "$m_med" "$msize" \
	"$(awk -v s="$msize" -v e="$events" 'BEGIN { printf "%.3f", s / e }')" \
	"$(spread "$tmp/memray.times")"
if [ $have_heaptrack = 1 ]; then
	row heaptrack "$h_med" "$hsize" \
		"$(awk -v s="$hsize" -v e="$events" 'BEGIN { printf "%.3f", s / e }')" \
		"$(spread "$tmp/heaptrack.times")"
else
	echo "heaptrack      (not installed: skipped)"
fi
echo
echo "file sizes:"
echo "  memray-record (raw):      $msize bytes"
[ -n "$mgz" ] && echo "  memray-record | gzip -c:  $mgz bytes" \
	"($(awk -v s="$mgz" -v e="$events" 'BEGIN { printf "%.3f", s / e }') B/event)"
[ -n "$mzst" ] && echo "  memray-record | zstd -c:  $mzst bytes" \
	"($(awk -v s="$mzst" -v e="$events" 'BEGIN { printf "%.3f", s / e }') B/event)"
[ -n "$hsize" ] && echo "  heaptrack (${hname:-raw}, as written):  $hsize bytes" \
	"($(awk -v s="$hsize" -v e="$events" 'BEGIN { printf "%.3f", s / e }') B/event)"

# --- verdict ------------------------------------------------------------------
echo
if [ $have_heaptrack = 1 ]; then
	awk -v p="$p_med" -v m="$m_med" -v h="$h_med" 'BEGIN {
		mo = (m - p) / p; ho = (h - p) / p
		if (ho <= 0) {
			printf "verdict: heaptrack showed no overhead over plain (%+.0f%%); ratio undefined, target not judged\n", ho * 100
			exit
		}
		r = mo / ho
		printf "verdict: memray-record overhead is %.2f of heaptrack'\''s (%+.0f%% vs %+.0f%%): target (<= 0.50) %s\n",
			r, mo * 100, ho * 100, (r <= 0.5 ? "MET" : "MISSED")
	}'
else
	echo "verdict: heaptrack not installed; overhead target not judged"
fi
exit 0
