#!/usr/bin/env bats
# The program never notices the recorder: a reader that goes away, a full
# disk, descriptors closed under it, crashes, fork while threads allocate.

load helper

ALLOCATE='import sys
[bytearray(100) for _ in range(300000)]
open(sys.argv[1], "w").write("done")
print("end")'

@test "the reader goes away (| head -c 100): the program runs to its end and the cut is reported" {
	run bash -c "memray-record /usr/bin/python3 -c '$ALLOCATE' '$BATS_TEST_TMPDIR/done.txt' | head -c 100 > /dev/null; echo status \${PIPESTATUS[0]}"
	assert_line "status 0"
	assert_line "end"
	assert_line "memray-record: the stream was cut: standard output went away"
	[ "$(cat done.txt)" = done ]
}

@test "a full disk (-o /dev/full): the program runs on and the stream is reported incomplete" {
	run memray-record -f -o /dev/full /usr/bin/python3 -c "$ALLOCATE" "$BATS_TEST_TMPDIR/done.txt"
	assert_success
	assert_line "end"
	assert_line "memray-record: the stream in /dev/full is incomplete: No space left on device"
	[ "$(cat done.txt)" = done ]
}

@test "a limit of file size (ulimit -f): the stream is cut and said so, the program runs to its end, and gets SIGXFSZ as it was given" {
	# 8 KiB: the rescue area (a memfd of about 460 KiB) cannot be made
	# either, and that is said
	run bash -c "ulimit -f 8; memray-record -o big.bin /usr/bin/python3 -c '$ALLOCATE' '$BATS_TEST_TMPDIR/done.txt'; echo status \$?"
	assert_line "status 0"
	assert_line "end"
	assert_line "memray-record: the stream in big.bin is incomplete: File too large"
	assert_line --partial "memray-record: no rescue area (File too large)"
	[ "$(cat done.txt)" = done ]
	[ "$(stat -c %s big.bin)" = $((8 * 1024)) ]
	# what fitted is there
	run memray-stat big.bin
	assert_failure 2
	assert_line --partial "big.bin: truncated at byte"
	n=$(memray-stat big.bin 2> /dev/null | awk '$1 == "allocations:" { print $2 }')
	[ -n "$n" ]
	[ "$n" -gt 10 ]
	# the program's own file past the limit: SIGXFSZ kills it as without
	# memray-record (dd: Python ignores SIGXFSZ itself)
	run bash -c "ulimit -f 1000; memray-record -q -o small.bin /bin/dd if=/dev/zero of=own.txt bs=1M count=2 2> /dev/null; echo status \$?"
	assert_line "status 153"
	[ "$(stat -c %s own.txt)" = $((1000 * 1024)) ]
	run memray-stat small.bin
	assert_success
	# and a program given SIGXFSZ ignored gets EFBIG, not the signal
	run bash -c "trap '' XFSZ; ulimit -f 1000; memray-record -q -f -o small.bin /bin/dd if=/dev/zero of=own.txt bs=1M count=2 2>&1; echo status \$?"
	assert_line --partial "File too large"
	assert_line "status 1"
}

@test "--idle gives the program SIGXFSZ and SIGCHLD as memray-record was given them" {
	# (bit 25 of SigIgn is SIGXFSZ, bit 17 SIGCHLD)
	ign() { awk '$1 == "SigIgn:" { print $2 }' "$1"; }
	memray-record --idle /bin/cat /proc/self/status > plain.txt
	# (bash's trap does not ignore SIGCHLD itself: Python does)
	python3 -c 'import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
os.execvp(sys.argv[1], sys.argv[1:])' memray-record --idle /bin/cat /proc/self/status > ignored.txt
	python3 -c "import sys; m = int(sys.argv[1], 16); sys.exit(m >> 24 & 1 or m >> 16 & 1)" "$(ign plain.txt)"
	python3 -c "import sys; m = int(sys.argv[1], 16); sys.exit(not (m >> 24 & 1 and m >> 16 & 1))" "$(ign ignored.txt)"
	run bash -c "ulimit -f 100; memray-record --idle /bin/dd if=/dev/zero of=own.txt bs=1M count=1 2> /dev/null; echo status \$?"
	assert_line "status 153"
}

@test "memray-record killed while it compresses: the file holds what came up to a second before (zstd and gzip flushed every second or 256 KiB)" {
	printf 'import time\nkeep = []\nfor i in range(60):\n    keep.append([bytearray(1000) for _ in range(100)])\n    time.sleep(0.05)\n' > slow.py
	for z in -z --compress=gzip; do
		rm -f k.z
		memray-record -q $z -o k.z /usr/bin/python3 slow.py &
		p=$!
		sleep 2
		kill -9 $p
		wait $p || true
		pkill -f slow.py || true
		run memray-stat k.z
		assert_failure 2
		assert_line --regexp "^memray-stat: k.z: read error at byte [0-9]+: the (zstd|gzip) data ends early"
		n=$(memray-stat k.z 2> /dev/null | awk '$1 == "allocations:" { print $2 }')
		[ -n "$n" ]
		[ "$n" -gt 1000 ] || { echo "$z: $n allocations"; false; }
	done
}

@test "close_range(3, ~0U, 0), then files of its own: none gets tracker bytes, and the recording goes on to the end" {
	run memray-record -o c.bin "$FIX/allocs" close-range "$BATS_TEST_TMPDIR/mine.txt"
	assert_success
	[ "$(cat mine.txt)" = mine ]
	refute_output --partial "stopped before it ended"
	run memray-stat c.bin
	assert_success
	assert_line --regexp "^allocations: +200[0-9]{2}$"
	# a program that ends normally gets no such message
	run memray-record -o ok.bin "$FIX/allocs" chain
	assert_success
	refute_output --partial "stopped before it ended"
}

@test "SIGSEGV and abort: the program's own exit status, and a complete stream that names the signal" {
	ulimit -c 0
	run memray-record -o s.bin "$FIX/allocs" segv
	assert_failure 139
	assert_line --partial "ended by signal 11 (SIGSEGV); the stream is complete and says so"
	assert_line --partial "ended by a signal the tracker cannot catch, not by exit: memray-record wrote"
	run memray-stat --dump s.bin
	assert_success
	assert_output --partial " alloc valloc "
	assert_output --partial " signal signal=11 name=SIGSEGV"
	assert_output --partial " trailer "
	run memray-record -o a.bin /usr/bin/python3 -c 'import os; b = bytearray(5000000); os.abort()'
	assert_failure 134
	run memray-stat a.bin
	assert_success
	assert_line --regexp "^ended by: +signal 6 \(SIGABRT\)$"
	# the bytearray allocated just before the abort, which no flush had sent
	memray-stat --dump a.bin | grep -q " size=5000001 "
	# and unrecorded, the same statuses
	run "$FIX/allocs" segv
	assert_failure 139
}

@test "fork from the main thread while four threads allocate: no deadlock, with and without --follow-fork" {
	run timeout 60 memray-record -q -o f.bin "$FIX/allocs" forkthreads 30
	assert_success
	assert_output "forked"
	run memray-stat f.bin
	assert_success
	run timeout 60 memray-record -q -o ff.bin --follow-fork "$FIX/allocs" forkthreads 30
	assert_success
	run memray-stat ff.bin
	assert_success
	[ "$(grep -c "forkthreads 30\$" <<< "$output")" -eq 32 ]
	[ "$(events malloc ff.bin 777 | wc -l)" -eq 30 ]
}

@test "threads that just allocated when the process leaves by exit_group: every allocation is in the stream, those their rings held too" {
	# (no memory record in the meantime: the sampler would write the rings)
	run timeout -k 5 60 memray-record --interval 100000 -o eg.bin "$FIX/allocs" exit-group-threads
	assert_success
	assert_output --partial "through the exit_group system call"
	assert_output --partial "events its threads had not written, and the stream's end"
	run memray-stat eg.bin
	assert_success
	[ "$(sizes_seen malloc eg.bin 5000 5400)" -eq 160 ]
	python3 "$BATS_TEST_DIRNAME/../stream_spec.py" eg.bin > /dev/null
}

@test "a Go program with cgo, which leaves by the exit_group system call, leaves a complete stream, said so" {
	command -v go > /dev/null || skip "no go here (Debian: golang-go)"
	cp -r "$BATS_TEST_DIRNAME/../fixtures/cgoalloc" .
	(cd cgoalloc && GOCACHE="$BATS_TEST_TMPDIR/gocache" GOPATH="$BATS_TEST_TMPDIR/gopath" GOFLAGS=-mod=mod GOPROXY=off go build -o cgoalloc .)
	run timeout -k 5 60 memray-record -o g.bin ./cgoalloc/cgoalloc
	assert_success
	assert_line "1500"
	assert_line --partial "ended without the C library's exit (through the exit_group system call, as Go programs do), not by exit: memray-record wrote the"
	refute_output --partial "stopped before it ended"
	run memray-stat g.bin
	assert_success
	# every one of its 1500 C allocations, the last ones included
	[ "$(sizes_seen malloc g.bin 7000 8500)" -eq 1500 ]
	python3 "$BATS_TEST_DIRNAME/../stream_spec.py" g.bin > /dev/null
}
