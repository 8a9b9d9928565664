#!/bin/bash
# reader.sh - how fast memray_c.read(...).records() goes through a large
# recording, next to memray-fold on the same file.
#
# usage: bench/reader.sh [BUILD_DIR]      (default: build)
#
# Environment:
#   BENCH_ROUNDS    interleaved rounds (default 5)
#   BENCH_EVENTS_M  millions of malloc/free events of the timed recording
#                   (default 4); callgrind runs on one of 1 M
#   PYTHON          the interpreter (default /usr/bin/python3, by real path)
#
# Steps:
#   1. build the reader extension against BUILD's tree (setup.py build_ext
#      into BUILD/bench/reader-py), and bench/churn.c as churn.sh does;
#   2. record `churn N` with memray-record;
#   3. time `memray-fold FILE > /dev/null` and a Python loop that only
#      counts records, `for r in memray_c.read(F).records(): n += 1`,
#      interleaved, and the same loop over itertools.repeat (the cost of
#      the Python loop alone, which no reader can go under); medians, and
#      the ratio reader / memray-fold;
#   4. with valgrind, the instructions of one run of each on a 1 M file.
#
# Target: reader <= 2x memray-fold. The script exits 0 whether or not the
# target is met, non-zero only when something fails.

set -u

BUILD=${1:-build}
ROUNDS=${BENCH_ROUNDS:-5}
EVENTS_M=${BENCH_EVENTS_M:-4}
PYTHON=$(readlink -f "${PYTHON:-/usr/bin/python3}")

die() { echo "reader.sh: $*" >&2; exit 1; }

case $ROUNDS in ''|*[!0-9]*|0) die "BENCH_ROUNDS must be a positive integer" ;; esac
case $EVENTS_M in ''|*[!0-9]*|0) die "BENCH_EVENTS_M must be a positive integer" ;; esac
here=$(cd "$(dirname "$0")" && pwd) || die "cannot find the bench directory"
root=$(dirname "$here")
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "no build directory '${1:-build}' (run make first)"
RECORD=$BUILD/bin/memray-record
FOLD=$BUILD/bin/memray-fold
for b in "$RECORD" "$FOLD"; do
	[ -x "$b" ] || die "$b missing (run make first)"
done
[ -x "$PYTHON" ] || die "no Python at $PYTHON"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reader-bench.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the extension and the workload ---------------------------------------
pkg=$BUILD/bench/reader-py
mkdir -p "$pkg" || die "cannot create $pkg"
(cd "$root" && "$PYTHON" setup.py -q build_ext --build-lib "$pkg" --build-temp "$BUILD/bench/reader-tmp" \
	> "$tmp/build.log" 2>&1) || { cat "$tmp/build.log" >&2; die "building the extension failed"; }
cp "$root"/python/memray_c/*.py "$pkg/memray_c/" || die "cannot copy the package"
CHURN=$BUILD/bench/churn
cc -O2 -g -o "$CHURN" "$here/churn.c" || die "compiling churn.c failed"

# the counting loop in a function (its names are fast locals), and the
# same at module level (each name a dict lookup and store: Python's own
# cost, which more than doubles the loop's)
count_py='import memray_c, sys
def count(path):
    n = 0
    for r in memray_c.read(path).records():
        n += 1
    return n
print(count(sys.argv[1]))'
count_mod_py='import memray_c, sys
n = 0
for r in memray_c.read(sys.argv[1]).records(): n += 1
print(n)'
loop_py='import itertools, sys
def count(k):
    n = 0
    for r in itertools.repeat(None, k):
        n += 1
    return n
print(count(int(sys.argv[1])))'

MFILE=$tmp/churn$EVENTS_M.bin
"$RECORD" -q -f -o "$MFILE" "$CHURN" "$EVENTS_M" > /dev/null || die "memray-record failed"
records=$(PYTHONPATH=$pkg "$PYTHON" -c "$count_py" "$MFILE") || die "the reader failed"
echo "reader: churn $EVENTS_M: $records records ($(wc -c < "$MFILE") bytes), $ROUNDS rounds, $PYTHON"

# run_timed NAME CMD...: appends CMD's wall time in ns to $tmp/NAME.times
run_timed() {
	local name=$1 start end
	shift
	start=$(date +%s%N)
	"$@" > /dev/null 2> "$tmp/$name.err" || { cat "$tmp/$name.err" >&2; die "$name failed: $*"; }
	end=$(date +%s%N)
	echo $((end - start)) >> "$tmp/$name.times"
}

median() {
	sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2];
		else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

for r in $(seq 1 "$ROUNDS"); do
	run_timed fold "$FOLD" "$MFILE"
	run_timed reader env PYTHONPATH="$pkg" "$PYTHON" -c "$count_py" "$MFILE"
	run_timed readermod env PYTHONPATH="$pkg" "$PYTHON" -c "$count_mod_py" "$MFILE"
	run_timed loop "$PYTHON" -c "$loop_py" "$records"
	printf '  round %d/%d: memray-fold %.3f s, reader %.3f s (at module level %.3f s), bare loop %.3f s\n' "$r" "$ROUNDS" \
		"$(tail -n1 "$tmp/fold.times" | awk '{ print $1 / 1e9 }')" \
		"$(tail -n1 "$tmp/reader.times" | awk '{ print $1 / 1e9 }')" \
		"$(tail -n1 "$tmp/readermod.times" | awk '{ print $1 / 1e9 }')" \
		"$(tail -n1 "$tmp/loop.times" | awk '{ print $1 / 1e9 }')"
done
f=$(median "$tmp/fold.times")
p=$(median "$tmp/reader.times")
pm=$(median "$tmp/readermod.times")
l=$(median "$tmp/loop.times")
awk -v f="$f" -v p="$p" -v pm="$pm" -v l="$l" -v n="$records" 'BEGIN {
	printf "medians: memray-fold %.3f s, reader %.3f s (%.0f ns/record; at module level %.3f s), the bare Python loop %.3f s\n",
		f / 1e9, p / 1e9, p / n, pm / 1e9, l / 1e9
	printf "ratio reader / memray-fold: %.2f (at module level %.2f; the bare loop alone: %.2f)\n", p / f, pm / f, l / f }'

# --- instructions ------------------------------------------------------------
if command -v valgrind > /dev/null; then
	SMALL=$tmp/churn1.bin
	"$RECORD" -q -f -o "$SMALL" "$CHURN" 1 > /dev/null || die "memray-record failed"
	n1=$(PYTHONPATH=$pkg "$PYTHON" -c "$count_py" "$SMALL")
	ir() { # ir NAME CMD...: the instructions of CMD and its children
		valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$tmp/cg.$1.%p" \
			"${@:2}" > /dev/null 2> "$tmp/cg.$1.err" || { cat "$tmp/cg.$1.err" >&2; die "valgrind $1 failed"; }
		grep -h '^summary:' "$tmp"/cg."$1".* | awk '{ s += $2 } END { print s }'
	}
	fi=$(ir fold "$FOLD" "$SMALL")
	pi=$(ir reader env PYTHONPATH="$pkg" "$PYTHON" -c "$count_py" "$SMALL")
	pmi=$(ir readermod env PYTHONPATH="$pkg" "$PYTHON" -c "$count_mod_py" "$SMALL")
	li=$(ir loop "$PYTHON" -c "$loop_py" "$n1")
	awk -v f="$fi" -v p="$pi" -v pm="$pmi" -v l="$li" -v n="$n1" 'BEGIN {
		printf "callgrind, churn 1 (%d records): memray-fold %.0f M, reader %.0f M (at module level %.0f M), bare loop %.0f M instructions\n",
			n, f / 1e6, p / 1e6, pm / 1e6, l / 1e6
		printf "instructions reader / memray-fold: %.2f (at module level %.2f)\n", p / f, pm / f }'
else
	echo "valgrind not installed: instruction counts skipped"
fi

awk -v f="$f" -v p="$p" 'BEGIN {
	printf "verdict: reader / memray-fold %.2f: target (<= 2) %s\n", p / f, (p <= 2 * f ? "MET" : "MISSED") }'
exit 0
