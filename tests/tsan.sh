#!/bin/bash
# tsan.sh BUILD - the tracker's threading cases under ThreadSanitizer.
#
# BUILD holds a ThreadSanitizer build of the tracker (make tsan) and the
# threaded fixture programs built with -fsanitize=thread too: the
# sanitizer's runtime must come up before the tracker, so it is the
# program's own. Each case is recorded with halt_on_error: a data race in
# the tracker makes the program exit 66. The stream must read.
#
# Left out: fork while other threads allocate (forkthreads). The
# sanitizer's fork takes its allocator's locks before the tracker's
# prepare handler takes the tracker's lock, which a thread inside the
# sanitizer's malloc may hold: a deadlock of the sanitizer build only
# (glibc's own fork takes malloc's locks after the handlers).
set -u
B=$(cd "$1" && pwd) || exit 2
export MEMRAY_TRACKER=$B/lib/memray-c/libmemray-tracker.so
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 die_after_fork=0"
n=0 failed=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tsan.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
case_() { # what, memray-record options and program...
	local what=$1
	shift
	n=$((n + 1))
	timeout 120 "$B/bin/memray-record" -q -o "$tmp/$n.bin" "$@" > "$tmp/$n.out" 2>&1
	local st=$?
	if [ $st -ne 0 ]; then
		failed=$((failed + 1))
		echo "not ok $n - $what: exit $st"
		grep -A12 "WARNING: ThreadSanitizer" "$tmp/$n.out" | sed 's/^/# /' | head -30
	elif ! "$B/bin/memray-stat" "$tmp/$n.bin" > /dev/null 2> "$tmp/$n.err"; then
		failed=$((failed + 1))
		echo "not ok $n - $what: the stream does not read: $(cat "$tmp/$n.err")"
	else
		echo "ok $n - $what"
	fi
}
F=$B/fixtures
case_ "threads allocating, named by prctl and pthread_setname_np" "$F/allocs" thread
case_ "a thread renamed by another" "$F/allocs" rename-other
case_ "8 threads trading blocks" "$F/pingpong"
case_ "8 threads trading blocks, native stacks off" --no-native "$F/pingpong"
case_ "a signal handler that maps memory while the tracker is busy" "$F/sigalloc"
case_ "50 children forked at once, followed" --follow-fork "$F/allocs" forkmany 50
case_ "8 threads trading blocks, followed" --follow-fork "$F/pingpong"
echo "1..$n"
[ $failed -eq 0 ]
