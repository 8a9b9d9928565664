#!/usr/bin/env bats
# memray-record --follow-fork: every process the program starts, in one
# stream, each under its own pid.

load helper

PY=$BATS_TEST_DIRNAME/../fixtures/py

# each line "pid bytes" of $1: process pid allocated exactly bytes at once
each_pid_has() {
	local pid size
	dump "$2" > dump.txt
	while read -r pid size; do
		awk -v p="$pid" '$2 == p && $3 == "alloc"' dump.txt | grep -q " size=$size " ||
			{ echo "pid $pid: no allocation of $size bytes"; return 1; }
	done < "$1"
}

@test "50 children forked at once: each one's own allocation, exactly, under its pid" {
	memray-record -q -o f.bin --follow-fork "$FIX/allocs" forkmany 50 > pids.txt
	[ "$(wc -l < pids.txt)" -eq 50 ]
	each_pid_has pids.txt f.bin
	[ "$(dump f.bin | awk '{ print $2 }' | sort -u | wc -l)" -eq 51 ]
	run memray-stat f.bin
	assert_success
	assert_line "processes:"
	[ "$(grep -c "allocs forkmany 50\$" <<< "$output")" -eq 52 ] # command line and 51 processes
	# the parent's own stream has none of the children's blocks
	parent=$(dump f.bin | head -1 | field pid)
	! memray-fold -m total --pid "$parent" f.bin | grep -q " 1000[0-4][0-9]\$" || false
	# JSON lists them too
	memray-stat --json f.bin | python3 -c 'import json, sys; d = json.load(sys.stdin); assert len(d["processes"]) == 51, d["processes"]'
}

@test "without --follow-fork the children are not recorded" {
	memray-record -q -o f.bin "$FIX/allocs" forkmany 5 > pids.txt
	[ "$(dump f.bin | awk '{ print $2 }' | sort -u | wc -l)" -eq 1 ]
}

# bats test_tags=py3
@test "multiprocessing pools with fork, spawn and forkserver: each worker's buffers under its pid" {
	for method in fork spawn forkserver; do
		memray-record -q -o "mp-$method.bin" --follow-fork $PY3 "$PY/multiproc.py" $method > "mp-$method.txt"
		[ "$(wc -l < "mp-$method.txt")" -eq 4 ]
		each_pid_has "mp-$method.txt" "mp-$method.bin" || { echo "method $method"; false; }
		run memray-stat "mp-$method.bin"
		assert_success
	done
}

# bats test_tags=py3
@test "subprocess (which closes every descriptor), a shell pipeline and make -j2 are followed" {
	cat > sub.py <<-PYEOF
	import subprocess, sys
	out = subprocess.run(["$FIX/allocs", "chain"], capture_output=True).stdout
	subprocess.run(["sh", "-c", "$FIX/allocs chain | cat > /dev/null"])
	PYEOF
	memray-record -q -o s.bin --follow-fork $PY3 sub.py
	run memray-stat s.bin
	assert_success
	[ "$(grep -c "^ *[0-9]* *[0-9]* .* $FIX/allocs chain\$" <<< "$output")" -eq 2 ]
	assert_line --regexp " (/usr/bin/)?cat$"
	# (the whole run: the children end before the peak, their memory given back)
	memray-fold -m total s.bin | grep -q "chain_c (allocs.c:"
	printf 'all: a b\na:\n\t%s chain > /dev/null\nb:\n\t%s chain > /dev/null\n' "$FIX/allocs" "$FIX/allocs" > Makefile
	memray-record -q -o m.bin --follow-fork make -s -j2
	run memray-stat m.bin
	assert_success
	[ "$(grep -c " $FIX/allocs chain\$" <<< "$output")" -eq 2 ]
}

@test "a child that execs a static program (ldconfig) is a warning, not a damaged stream" {
	[ -x /sbin/ldconfig ] || skip "no /sbin/ldconfig"
	file -L /sbin/ldconfig 2> /dev/null | grep -q "static" || skip "ldconfig is not static here"
	run memray-record -q -o l.bin --follow-fork bash -c '/sbin/ldconfig -p > /dev/null; echo done'
	assert_success
	assert_output "done"
	run memray-stat l.bin
	assert_success
	assert_line --regexp "exec'd a program that was not recorded here \\(statically linked"
}

@test "a signal handler that maps memory while the tracker is busy, under --follow-fork" {
	run timeout 60 memray-record -q -o s.bin --follow-fork "$FIX/sigalloc"
	assert_success
	run memray-stat s.bin
	assert_success
}

@test "CPython's test_main_thread_after_fork_from_nonmain_thread passes under --follow-fork (its child's last thread leaves by pthread_exit)" {
	python3 -c 'import test.test_threading' 2> /dev/null || skip "CPython's test suite is missing (Debian: libpython3.11-testsuite)"
	run timeout -k 5 60 memray-record -q --follow-fork -o t.bin /usr/bin/python3 -m test test_threading \
		-m test_main_thread_after_fork_from_nonmain_thread
	assert_success
	assert_output --partial "Tests result: SUCCESS"
	run memray-stat t.bin
	assert_success
	[ "$(memray-stat --json t.bin | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["processes"]))')" -ge 2 ]
}

@test "a child that closes every descriptor (a loop of close, close_range) and execs keeps its records, and so does everyone else" {
	for how in loop range; do
		run timeout -k 5 30 memray-record -q -o c-$how.bin --follow-fork "$FIX/allocs" closeexec $how "$FIX/allocs" alloc calloc
		assert_success
		run memray-stat c-$how.bin
		assert_success
		refute_output --partial "corrupt"
		dump c-$how.bin > d.txt
		# the child's valloc before the closing and after it, its EXEC,
		# the new image's calloc and trailer; the parent's valloc after
		child=$(awk '$3 == "alloc" && $4 == "valloc" && / size=989 / { print $2 }' d.txt)
		[ -n "$child" ]
		awk -v p="$child" '$2 == p && $3 == "alloc" && $4 == "valloc" && / size=990 /' d.txt | grep -q .
		[ "$(awk -v p="$child" '$2 == p && $3 == "exec"' d.txt | wc -l)" -eq 1 ]
		[ "$(awk -v p="$child" '$2 == p && $3 == "header"' d.txt | wc -l)" -eq 2 ]
		awk -v p="$child" '$2 == p && $3 == "alloc" && $4 == "calloc"' d.txt | grep -q .
		[ "$(awk '$3 == "trailer"' d.txt | wc -l)" -eq 2 ]
		awk -v p="$child" '$2 != p && $3 == "alloc" && $4 == "valloc" && / size=984 /' d.txt | grep -q .
		# the independent reader agrees the stream is whole
		python3 "$BATS_TEST_DIRNAME/../stream_spec.py" c-$how.bin > /dev/null
	done
}

# bats test_tags=py3
@test "Python's subprocess with preexec_fn: each child's allocation in its preexec function is kept, the stream whole" {
	cat > pre.py <<-PYEOF
	import subprocess
	def pre():
	    x = bytearray(77777)
	for i in range(5):
	    subprocess.run(["$FIX/allocs", "alloc", "malloc"], preexec_fn=pre, stdout=subprocess.DEVNULL, check=True)
	print("done")
	PYEOF
	run timeout -k 5 60 memray-record -q -o p.bin --follow-fork $PY3 pre.py
	assert_success
	assert_output "done"
	run memray-stat p.bin
	assert_success
	[ "$(grep -c " $FIX/allocs alloc malloc\$" <<< "$output")" -eq 5 ]
	# the bytearray's buffer (77778 bytes, or a little more on some Pythons), once in each child
	[ "$(dump p.bin | awk '$3 == "alloc" || $3 == "move"' | field size | awk '$1 >= 77777 && $1 < 78000' | wc -l)" -eq 5 ]
	[ "$(dump p.bin | awk '$3 == "trailer"' | wc -l)" -eq 6 ]
}

# bats test_tags=py3
@test "children whose environment was replaced (subprocess env=, posix_spawn, execle) are followed" {
	cat > env.py <<-PYEOF
	import os, subprocess
	p = "$FIX/allocs"
	subprocess.run([p, "alloc", "malloc"], env={"PATH": "/usr/bin"}, stdout=subprocess.DEVNULL, check=True)
	subprocess.run([p, "alloc", "calloc"], env={}, close_fds=False, stdout=subprocess.DEVNULL, check=True)
	pid = os.posix_spawn(p, [p, "alloc", "realloc"], {"A": "b"})
	os.waitpid(pid, 0)
	if os.fork() == 0:
	    os.execle(p, p, "alloc", "memalign", {"B": "c"})
	os.wait()
	PYEOF
	run timeout -k 5 60 memray-record -q -o e.bin --follow-fork $PY3 env.py
	assert_success
	run memray-stat e.bin
	assert_success
	for a in malloc calloc realloc memalign; do
		assert_line --regexp " $FIX/allocs alloc $a\$"
	done
}

@test "a child that execs by the system call itself (as Go does) starts its stream over: said once, everyone else's records kept" {
	run timeout -k 5 30 memray-record -q -o r.bin --follow-fork "$FIX/allocs" rawexec "$FIX/allocs" alloc calloc
	assert_success
	run memray-stat r.bin
	assert_success
	child=$(dump r.bin | awk '$3 == "alloc" && $4 == "calloc" { print $2 }')
	[ -n "$child" ]
	[ "$(grep -c "records stop at byte" <<< "$stderr$output")" -le 1 ]
	memray-stat r.bin 2>&1 >/dev/null | grep -q "pid $child's records stop at byte [0-9]*, where a new stream of the same pid begins"
	# the parent's records after its child's exec, and its trailer
	dump r.bin | awk -v p="$child" '$2 != p && $3 == "alloc" && $4 == "valloc" && / size=984 /' | grep -q .
	[ "$(dump r.bin | awk -v p="$child" '$2 != p && $3 == "trailer"' | wc -l)" -eq 1 ]
	python3 "$BATS_TEST_DIRNAME/../stream_spec.py" r.bin > /dev/null
}

@test "the stream's descriptor is kept above the soft limit of open files, where no child looks (CPython's test_pass_fds_redirected)" {
	[ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge 1088 ] || skip "the hard limit of open files is too low to go above 1024"
	ulimit -Sn 1024
	# the descriptors below the limit, as the program sees them, are those it has without recording
	"$FIX/allocs" fds | awk '$1 < 1024' > plain.txt
	memray-record -q -o n.bin "$FIX/allocs" fds | awk '$1 < 1024' > rec.txt
	memray-record -q -o f.bin --follow-fork "$FIX/allocs" fds | awk '$1 < 1024' > follow.txt
	diff plain.txt rec.txt
	diff plain.txt follow.txt
	python3 -c 'import test.test_subprocess' 2> /dev/null || skip "CPython's test suite is missing (Debian: libpython3.11-testsuite)"
	run timeout -k 5 120 memray-record -q --follow-fork -o t.bin /usr/bin/python3 -m test test_subprocess \
		-m test_pass_fds_redirected -m test_pass_fds -m test_close_fds
	assert_success
	assert_output --partial "Tests result: SUCCESS"
	run memray-stat t.bin
	assert_success
	assert_line --regexp "subprocessdata/fd_status.py"
}

@test "memray-record ends when its program ends, though a job it put in the background still holds the stream" {
	start=$(date +%s)
	run timeout -k 5 25 memray-record --follow-fork -o d.bin sh -c '"$0" sleep 20 > /dev/null 2>&1 & echo main-done' "$FIX/allocs"
	assert_success
	assert_line "main-done"
	assert_output --partial "'sh' has ended, but processes it started still hold the stream: d.bin ends here, 1 s later"
	[ $(( $(date +%s) - start )) -lt 10 ]
	pkill -f "$FIX/allocs sleep 20" || true
	run memray-stat d.bin
	assert_success
	assert_output --partial "has no trailer (killed, left by exit_group, or still running when the recording ended?)"
	# the background job's own allocation, before the end
	dump d.bin | awk '$3 == "alloc" && $4 == "valloc" && / size=984 /' | grep -q .
}

@test "a signal sent to memray-record goes to the program, and memray-record then ends with it" {
	# sh ends by TERM and HUP; the child it was waiting for, left
	# running, does not keep memray-record
	for sig in TERM HUP; do
		memray-record -q --follow-fork -o "s-$sig.bin" sh -c '"$0" sleep 20 > /dev/null; echo not-reached' "$FIX/allocs" > "out-$sig.txt" 2>&1 &
		rec=$!
		sleep 0.5
		kill -$sig $rec
		start=$(date +%s)
		status=0
		wait $rec || status=$?
		[ $(( $(date +%s) - start )) -lt 8 ] || { echo "SIG$sig: took too long"; false; }
		[ "$status" -eq $(( 128 + $(kill -l $sig) )) ] || { echo "SIG$sig: status $status"; false; }
		pkill -f "$FIX/allocs sleep 20" || true
		! grep -q not-reached "out-$sig.txt" || false
		memray-stat "s-$sig.bin" > /dev/null
	done
	# Python ends by SIGINT (KeyboardInterrupt), its stream complete: sent
	# from another process group (from this one, which the program is in,
	# the signal would be taken as sent to both, as timeout(1) does)
	memray-record -q -o py.bin $PY3 -c 'import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); time.sleep(20)' > py.txt 2>&1 &
	rec=$!
	sleep 1
	setsid kill -INT $rec
	status=0
	wait $rec || status=$?
	[ "$status" -eq 130 ]
	grep -q KeyboardInterrupt py.txt
	memray-stat py.bin | grep -q "SIGINT"
	# a program that ignores it: memray-record, started in the background
	# here, was given SIGINT ignored too (as sh was), and records on to
	# the program's end
	memray-record -o ign.bin sh -c '"$0" sleep 3' "$FIX/allocs" > ign.txt 2>&1 &
	rec=$!
	sleep 0.5
	setsid kill -INT $rec
	wait $rec
	cat ign.txt
	! grep -q "still running" ign.txt || false
	memray-stat ign.bin > /dev/null
	# one it was not given ignored, that the program ignores, ends the
	# recording 2 s later, the program left running
	memray-record -o ign2.bin sh -c 'trap "" TERM; "$0" sleep 20' "$FIX/allocs" > ign2.txt 2>&1 &
	rec=$!
	sleep 0.5
	kill -TERM $rec
	status=0
	wait $rec || status=$?
	[ "$status" -eq 143 ]
	grep -q "'sh' is still running 2 s after SIGTERM was passed on to it: the recording ends here" ign2.txt
	pkill -f "$FIX/allocs sleep 20" || true
}

@test "a child killed with SIGKILL while it allocates: the stream is read whole, with a warning naming it" {
	run timeout -k 5 30 memray-record -q -o k.bin --follow-fork sh -c '"$0" churn 1000 & p=$!; sleep 0.5; kill -9 $p; wait; "$0" alloc malloc' "$FIX/allocs"
	assert_success
	run memray-stat k.bin
	assert_success
	assert_output --regexp "pid [0-9]+ (ended inside a record, without a trailer \(killed by SIGKILL|has no trailer \(killed)"
	# everything after it is there: the last program's allocation and every trailer but the killed one's
	dump k.bin | awk '$3 == "alloc" && $4 == "malloc" && / size=984 /' | grep -q .
}

# bats test_tags=py3
@test "a multiprocessing pool's workers, ended by SIGTERM as the pool closes, leave complete streams" {
	cat > pool.py <<-PYEOF
	import multiprocessing as mp
	def work(n):
	    return len(bytearray(n * 1000))
	if __name__ == "__main__":
	    with mp.Pool(4) as p:
	        print(sum(p.map(work, range(200))))
	PYEOF
	for i in 1 2 3; do
		run timeout -k 5 60 memray-record -q -f -o pool.bin --follow-fork $PY3 pool.py
		assert_success
		assert_output "19900000"
		run memray-stat pool.bin
		assert_success
		refute_output --partial "truncated"
		refute_output --partial "no trailer"
	done
}

@test "a memray-record run inside a followed program records its own program; the outer stream says it gave that one up" {
	# (an AddressSanitizer build of memray-record cannot run with the
	# outer tracker preloaded before its runtime)
	ldd "$BIN/memray-record" 2> /dev/null | grep -q libasan && skip "memray-record is built with AddressSanitizer"
	run timeout -k 5 30 memray-record --follow-fork -o outer.bin sh -c 'memray-record -o inner.bin "$0" alloc calloc; echo inner=$?' "$FIX/allocs"
	assert_success
	assert_line "inner=0"
	assert_line --regexp "^memray-record: pid [0-9]+ runs a memray-record of its own: what it records is not in this stream$"
	refute_output --partial "not loaded"
	# the inner stream holds its program, complete
	run memray-stat inner.bin
	assert_success
	assert_line --regexp "^command: .*allocs alloc calloc$"
	dump inner.bin | awk '$3 == "alloc" && $4 == "calloc" && / size=984 /' | grep -q .
	# the outer one holds the shell and the inner memray-record, and says where it stopped
	run memray-stat outer.bin
	assert_success
	assert_output --partial "exec'd a program that was not recorded here (statically linked, setuid, or recorded by a memray-record of its own?)"
	! dump outer.bin | awk '$3 == "alloc" && $4 == "calloc" && / size=984 /' | grep -q . || false
}

@test "memray-fold --temporal on many processes: one time line, from the first process's start, never going back" {
	run timeout -k 5 60 memray-record -q -o tl.bin --follow-fork sh -c '"$0" sleep 1; "$0" churn 1' "$FIX/allocs"
	assert_success
	memray-fold --temporal tl.bin 2> /dev/null | sed -n 's/^# timeline="ms,rss,heap //p' | tr ' ' '\n' | cut -d, -f1 > ms.txt
	[ "$(wc -l < ms.txt)" -gt 20 ]
	sort -n -c ms.txt
	# the churn, started after a second's sleep, ends after it on this line
	[ "$(tail -1 ms.txt)" -ge 1000 ]
	run memray-stat tl.bin
	assert_success
	[ "$(sed -n 's/^duration: *\([0-9]*\)\..*/\1/p' <<< "$output")" -ge 1 ]
}

@test "children run one after another: the merged peak is one child's at a time, not their sum; what they never freed is still leaked" {
	memray-record -q -f --follow-fork -o seq.bin /usr/bin/python3 -c 'import subprocess, sys
for i in range(3):
    subprocess.run([sys.executable, "-c", "import os; x = bytearray(10_000_000); os._exit(0)"])'
	peak=$(memray-stat --json seq.bin | python3 -c 'import json, sys; print(json.load(sys.stdin)["peak_bytes"])')
	leaked=$(memray-stat --json seq.bin | python3 -c 'import json, sys; print(json.load(sys.stdin)["leaked_bytes"])')
	# each child: 10 MB and its start-up; three at once would be 30 MB more
	[ "$peak" -gt 10000000 ]
	[ "$peak" -lt 25000000 ] || { echo "peak $peak"; false; }
	[ "$leaked" -gt 30000000 ]
	# every child's 10 MB at its line, as leaked
	n=$(memray-leaks seq.bin 2> /dev/null | grep -v '^#' | grep '(<string>:1)' | awk '{ s += $NF } END { print s + 0 }')
	[ "$n" -ge 30000000 ] || { echo "leaked at the line: $n"; false; }
	# the peak's stacks: one child's bytearray, not three
	n=$(memray-fold seq.bin | grep -v '^#' | awk '$NF >= 10000000' | awk '{ s += $NF } END { print s + 0 }')
	[ "$n" -lt 20000000 ] || { echo "peak stacks $n"; false; }
}
