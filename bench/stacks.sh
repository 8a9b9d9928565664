#!/bin/bash
# stacks.sh - the readers on a recording of a great many distinct stacks
# (issue 19: memray-stat took 42 s and 1.9 GB on a million, memray-fold
# 0.56 s): wall time and peak memory of memray-stat, memray-stat --json and
# memray-fold on one synthetic recording (bench/gen_stream.c).
#
# usage: bench/stacks.sh [BUILD_DIR]      (default: build)
#
# Environment:
#   BENCH_STACKS   distinct stacks (default 1000000)
#
# Target: memray-stat within 2x memray-fold's time and memory. Exits 0
# whether or not it is met; non-zero only when something fails.

set -eu

BUILD=${1:-build}
N=${BENCH_STACKS:-1000000}
DIR=$BUILD/bench/stacks
mkdir -p "$DIR"
cc -O2 -Ilib bench/gen_stream.c "$BUILD/libmemray.a" -o "$DIR/gen_stream" -lzstd -lz -larchive
"$DIR/gen_stream" "$N" > "$DIR/stacks.bin"
echo "# $N distinct stacks: $(stat -c %s "$DIR/stacks.bin") bytes"
for tool in "memray-stat" "memray-stat --json" "memray-fold"; do
	/usr/bin/time -f "%e %M" -o "$DIR/time.txt" "$BUILD"/bin/$tool "$DIR/stacks.bin" > /dev/null 2>&1
	read -r secs kb < "$DIR/time.txt"
	printf '%-20s %8.2f s %10d KB\n' "$tool" "$secs" "$kb"
done
