#!/bin/bash
# run.sh BUILD FUZZ_BUILD SECONDS - seeds the fuzzers' corpora with real
# recordings (made with BUILD's tools and fixtures) and runs each libFuzzer
# target of FUZZ_BUILD for SECONDS. Exits non-zero if a target crashed; the
# input that did it is left in FUZZ_BUILD/crashes/ (copy it into
# tests/fuzz/regressions/TARGET/ so that make check keeps trying it).
set -eu
BUILD=$1 FZ=$2 SECONDS_EACH=$3
here=$(cd "$(dirname "$0")" && pwd)
bin=$BUILD/bin fix=$BUILD/fixtures
mkdir -p "$FZ/corpus/stream" "$FZ/corpus/folded" "$FZ/crashes"
seed() { # name, then the program to record
	local name=$1; shift
	[ -s "$FZ/corpus/stream/$name.bin" ] ||
		"$bin/memray-record" -q -f -o "$FZ/corpus/stream/$name.bin" "$@" > /dev/null 2>&1 || true
	[ -s "$FZ/corpus/folded/$name.txt" ] ||
		"$bin/memray-fold" "$FZ/corpus/stream/$name.bin" > "$FZ/corpus/folded/$name.txt" 2> /dev/null || true
}
seed demo "$fix/demo"
seed chain "$fix/allocs" chain
seed threads "$fix/allocs" thread
seed mmap "$fix/allocs" munmap-partial
seed python /usr/bin/python3 "$here/../fixtures/py/names.py"
seed hybrid --native /usr/bin/python3 "$here/../fixtures/py/hybrid.py"
cp "$here"/regressions/stream/* "$FZ/corpus/stream/" 2> /dev/null || true
cp "$here"/regressions/folded/* "$FZ/corpus/folded/" 2> /dev/null || true
printf '# metric: peak\nmain;a\\x3bb;c\\n 5\nx;;y 1\n;\n 3\n\xff\xfe;a 7\n' > "$FZ/corpus/folded/hostile.txt"
status=0
for t in stream folded; do
	echo "fuzz_$t: $SECONDS_EACH s"
	"$FZ/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$FZ/crashes/$t-" "$FZ/corpus/$t" 2>&1 |
		grep -E "^#[0-9]+ *DONE|stat::number_of_executed_units|ERROR|SUMMARY|Test unit written" || true
	if ls "$FZ/crashes/$t-"* > /dev/null 2>&1; then
		echo "fuzz_$t: CRASHED; see $FZ/crashes/" >&2
		status=1
	fi
done
exit $status
