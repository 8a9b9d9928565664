#!/bin/bash
# sample.sh - memray-record --sample-bytes: what it costs and how close its
# estimates come to the full recording's.
#
# usage: bench/sample.sh [BUILD_DIR]      (default: build)
#
# Environment:
#   BENCH_ROUNDS   rounds of (plain, full, sampled) runs (default 5)
#   SAMPLE_BYTES   the mean gap (default 512K)
#   PYTHON         the interpreter (default /usr/bin/python3, by its real path)
#
# Workloads:
#   churn        bench/churn.c with 40 million malloc/free events over a 64-block
#                window: nothing but allocator calls, the worst case for any
#                interposer (the plain run spends about 6 ns per event)
#   heap         tests/fixtures/sampling.c: a 100 MB peak from small blocks,
#                pages, 1 MiB blocks and a realloc'd buffer, then 2 million
#                malloc/free pairs
#   objects      bench/py/objects.py (pymalloc hides most objects)
#   objects-all  the same with --trace-python-allocators: every object a malloc
#   buffers      bench/py/buffers.py: bytearrays of 100 KB to 10 MB
#   startup      /bin/true: what starting a recording costs, once per run
#
# Runs are interleaved (plain, full, sampled, plain, ...) so that drift in
# machine load hits every column alike; the tables report medians. Then
# the last round's full and sampled recordings are compared: the peak, and
# the five heaviest sites by bytes allocated and at the peak, each with its
# relative error and the error to expect from sampling (one standard
# deviation is about sqrt(N/X) for X bytes of allocations smaller than N).
# The script exits 0 whether or not the targets are met.

set -u

BUILD=${1:-build}
ROUNDS=${BENCH_ROUNDS:-5}
GAP=${SAMPLE_BYTES:-512K}
PYTHON=$(readlink -f "${PYTHON:-/usr/bin/python3}")

die() { echo "sample.sh: $*" >&2; exit 1; }
case $ROUNDS in ''|*[!0-9]*|0) die "BENCH_ROUNDS must be a positive integer" ;; esac

here=$(cd "$(dirname "$0")" && pwd) || die "cannot find the bench directory"
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "no build directory '${1:-build}' (run make first)"
RECORD=$BUILD/bin/memray-record
STAT=$BUILD/bin/memray-stat
FOLD=$BUILD/bin/memray-fold
for t in "$RECORD" "$STAT" "$FOLD"; do [ -x "$t" ] || die "$t missing (run make first)"; done
[ -x "$PYTHON" ] || die "no Python at $PYTHON"

mkdir -p "$BUILD/bench" || die "cannot create $BUILD/bench"
cc -O2 -g -o "$BUILD/bench/churn" "$here/churn.c" || die "compiling churn.c failed"
cc -O2 -g -pthread -o "$BUILD/bench/sampling" "$here/../tests/fixtures/sampling.c" ||
	die "compiling sampling.c failed"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sample-bench.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_timed FILE CMD...: runs CMD, appends its wall time in ns to FILE
run_timed() {
	local file=$1; shift
	local start end
	start=$(date +%s%N)
	"$@" > "$tmp/out" 2> "$tmp/err" || {
		echo "sample.sh: run failed: $*" >&2
		sed 's/^/  | /' "$tmp/err" >&2
		exit 1
	}
	end=$(date +%s%N)
	echo $((end - start)) >> "$file"
}

median() {
	sort -n "$1" | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# sites FILE METRIC: "value<TAB>leaf frame" per leaf frame, heaviest first
sites() {
	"$FOLD" -m "$2" "$1" | grep -v '^#' |
		awk '{ v = $NF; $NF = ""; n = split($0, f, ";"); sub(/ $/, "", f[n]); s[f[n]] += v }
		     END { for (k in s) printf "%.0f\t%s\n", s[k], k }' | sort -t "$(printf '\t')" -k1,1nr
}

json_num() { # FILE KEY
	"$PYTHON" -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"
}

gap_bytes=$(awk -v g="$GAP" 'BEGIN {
	m = 1; if (g ~ /[Kk]$/) m = 1024; else if (g ~ /M$/) m = 1048576; else if (g ~ /G$/) m = 1073741824
	sub(/[KkMG]$/, "", g); print g * m }')

# compare NAME FULL SAMPLED: the accuracy tables
compare() {
	local name=$1 full=$2 sampled=$3
	"$STAT" --json "$full" > "$tmp/f.json" && "$STAT" --json "$sampled" > "$tmp/s.json" ||
		die "memray-stat failed on the $name recordings"
	local fp sp
	fp=$(json_num "$tmp/f.json" peak_bytes)
	sp=$(json_num "$tmp/s.json" peak_bytes)
	awk -v n="$name" -v e="$fp" -v a="$sp" -v g="$gap_bytes" 'BEGIN {
		d = e ? (a - e) / e : 0
		printf "  %-12s peak: full %.1f MiB, sampled %.1f MiB: %+.1f%% (1 sd about %.1f%%)\n",
			n, e / 1048576, a / 1048576, 100 * d, e ? 100 * sqrt(g / e) : 0 }'
	local metric
	for metric in total peak; do
		sites "$full" "$metric" | head -5 > "$tmp/top"
		sites "$sampled" "$metric" > "$tmp/all"
		echo "    top 5 sites by $metric:"
		while IFS="$(printf '\t')" read -r e site; do
			a=$(awk -F '\t' -v s="$site" '$2 == s { print $1 }' "$tmp/all")
			awk -v e="$e" -v a="${a:-0}" -v s="$site" -v g="$gap_bytes" 'BEGIN {
				d = e ? (a - e) / e : 0
				sd = e ? 100 * sqrt(g / e) : 0
				printf "      %12.0f  %12.0f  %+6.1f%%  (sd %4.1f%%)%s  %.50s\n", e, a, 100 * d, sd,
					(d <= 0.1 && d >= -0.1 ? "      " : "  >10%"), s }'
		done < "$tmp/top"
	done
}

declare -A CMD
CMD[churn]="$BUILD/bench/churn 40"
CMD[heap]="$BUILD/bench/sampling heap"
CMD[objects]="$PYTHON $here/py/objects.py"
CMD[objects-all]="$PYTHON $here/py/objects.py"
CMD[buffers]="$PYTHON $here/py/buffers.py"
CMD[startup]="/bin/true"
WORKLOADS="churn heap objects objects-all buffers startup"

echo "sample: --sample-bytes $GAP ($gap_bytes bytes), $ROUNDS rounds of plain, full and sampled"
for w in $WORKLOADS; do
	extra=()
	env=()
	[ "$w" = objects-all ] && extra=(--trace-python-allocators) && env=(PYTHONMALLOC=malloc)
	for r in $(seq 1 "$ROUNDS"); do
		# shellcheck disable=SC2086
		run_timed "$tmp/$w.plain" env "${env[@]}" ${CMD[$w]}
		# shellcheck disable=SC2086
		run_timed "$tmp/$w.full" "$RECORD" -q -f -o "$tmp/$w.full.bin" "${extra[@]}" ${CMD[$w]}
		# shellcheck disable=SC2086
		run_timed "$tmp/$w.sampled" "$RECORD" -q -f -o "$tmp/$w.sampled.bin" "${extra[@]}" \
			--sample-bytes "$GAP" ${CMD[$w]}
	done
	printf '  %-12s done\n' "$w"
done

echo
printf '%-12s %9s %9s %9s %9s %9s %12s %12s %11s %11s\n' workload "plain s" "full s" \
	"sampled s" "x full" "x sampled" "full bytes" "sampl bytes" "full B/s" "sampl B/s"
for w in $WORKLOADS; do
	p=$(median "$tmp/$w.plain"); f=$(median "$tmp/$w.full"); s=$(median "$tmp/$w.sampled")
	fs=$(stat -c %s "$tmp/$w.full.bin"); ss=$(stat -c %s "$tmp/$w.sampled.bin")
	awk -v w="$w" -v p="$p" -v f="$f" -v s="$s" -v fs="$fs" -v ss="$ss" 'BEGIN {
		printf "%-12s %9.3f %9.3f %9.3f %9.2f %9.3f %12.0f %12.0f %11.0f %11.0f\n", w, p / 1e9, f / 1e9,
			s / 1e9, f / p, s / p, fs, ss, fs / (f / 1e9), ss / (s / 1e9) }'
done
echo "(x: median time over plain's; B/s: stream bytes written per second of the recorded run;"
echo " startup: what starting memray-record and the tracker costs, in every run above)"

echo
echo "accuracy (last round's recordings):"
for w in $WORKLOADS; do
	[ "$w" = startup ] && continue
	compare "$w" "$tmp/$w.full.bin" "$tmp/$w.sampled.bin"
done

echo
for w in $WORKLOADS; do
	[ "$w" = startup ] && continue
	p=$(median "$tmp/$w.plain"); s=$(median "$tmp/$w.sampled")
	awk -v w="$w" -v p="$p" -v s="$s" 'BEGIN {
		o = (s - p) / p
		printf "verdict: %-12s sampled overhead %+.1f%%: target (<= 5%%) %s\n", w, 100 * o,
			(o <= 0.05 ? "MET" : "MISSED") }'
done
exit 0
