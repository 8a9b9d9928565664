#!/bin/bash
# flame.sh - memray-flame on big inputs: its time, peak RSS and page size on
# 10k, 100k and 1M distinct stacks (bench/gen_stacks.py, sorted as
# memray-fold writes them), and how long headless Chromium takes to draw
# the 100k and 1M pages.
#
# usage: bench/flame.sh [BUILD_DIR]      (default: build)
#
# Targets: the 100k page under 10 MB and drawn in under 2 s; the 1M page
# still works (pruned). Exits non-zero only when something fails.

set -u
BUILD=${1:-build}
die() { echo "flame.sh: $*" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd) || die "cannot find the bench directory"
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "no build directory (run make first)"
FLAME=$BUILD/bin/memray-flame
[ -x "$FLAME" ] || die "$FLAME missing (run make first)"
GNU_TIME=/usr/bin/time
[ -x "$GNU_TIME" ] || die "$GNU_TIME missing (Debian package 'time')"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/flame-bench.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT

printf '%-10s %12s %10s %10s %12s %10s\n' stacks "input MB" "flame s" "RSS MB" "page MB" "pruned"
for n in 10000 100000 1000000; do
	python3 "$here/gen_stacks.py" $n | LC_ALL=C sort > "$tmp/s$n.folded" || die "gen_stacks.py failed"
	"$GNU_TIME" -f '%e %M' -o "$tmp/time" "$FLAME" "$tmp/s$n.folded" > "$tmp/s$n.html" 2> "$tmp/err" ||
		die "memray-flame failed on $n stacks: $(cat "$tmp/err")"
	read -r secs kb < "$tmp/time"
	pruned=$(sed -n 's/.*: \([0-9]*\) frames too small.*/\1/p' "$tmp/err")
	printf '%-10s %12.1f %10s %10.0f %12.2f %10s\n' $n \
		"$(echo "$(stat -c %s "$tmp/s$n.folded") / 1048576" | bc -l)" "$secs" \
		"$(echo "$kb / 1024" | bc -l)" "$(echo "$(stat -c %s "$tmp/s$n.html") / 1048576" | bc -l)" "${pruned:-0}"
done

if [ -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
	for n in 100000 1000000; do
		echo "Chromium, $n stacks:"
		python3 "$here/../tests/browser/flame_check.py" load "$tmp/s$n.html" 2 | grep -E "drawn|not ok" ||
			die "the $n-stack page did not load"
	done
else
	echo "flame.sh: no Chromium (make deps installs it); page load times skipped" >&2
fi
