#!/usr/bin/env bats
# memray-record as a user runs it: output rules, exit status, processes.

load helper

@test "the stream goes to stdout when it is a pipe, and the program's stdout to stderr" {
	run bash -c "set -o pipefail; memray-record '$FIX/allocs' stdout 2>err.txt | memray-stat --dump > d.txt"
	assert_success
	grep -q "^program output$" err.txt
	head -1 d.txt | grep -q " header version=3 "
	tail -1 d.txt | grep -q " trailer "
}

@test "with -o FILE the program's stdout is left alone" {
	run memray-record -q -o out.bin "$FIX/allocs" stdout
	assert_success
	assert_output "program output"
	dump out.bin | tail -1 | grep -q " trailer "
}

@test "-o - writes the stream to stdout" {
	memray-record -o - "$FIX/allocs" none > s.bin
	dump s.bin | head -1 | grep -q " header "
}

@test "on a terminal without -o the stream goes to memray-PROGRAM.PID.bin and says so" {
	command -v script || skip "script(1) is missing"
	run script -qec "memray-record '$FIX/allocs' none" /dev/null
	assert_success
	assert_output --regexp "memray-record: wrote memray-allocs\.[0-9]+\.bin"
	f=$(ls memray-allocs.*.bin)
	pid=${f#memray-allocs.}; pid=${pid%.bin}
	dump "$f" | head -1 | grep -q " pid=$pid "
}

@test "an existing output file is not overwritten without -f, and is with -f" {
	echo precious > out.bin
	run memray-record -o out.bin "$FIX/allocs" none
	assert_failure 2
	assert_output --partial "'out.bin' already exists (use -f to overwrite it)"
	[ "$(cat out.bin)" = precious ]
	run memray-record -q -f -o out.bin "$FIX/allocs" none
	assert_success
	dump out.bin | head -1 | grep -q " header "
}

@test "a planted symbolic link is never followed, even with -f" {
	ln -s target.bin link.bin
	run memray-record -o link.bin "$FIX/allocs" none
	assert_failure 2
	assert_output --partial "'link.bin' is a symbolic link; not following it"
	run memray-record -f -o link.bin "$FIX/allocs" none
	assert_failure 2
	[ ! -e target.bin ]
}

@test "-f refuses a file another user made in a sticky directory, and overwrites the user's own (issue 19)" {
	[ "$(id -u)" -eq 0 ] || skip "needs root to give a file to another user"
	mkdir -m 1777 shared
	echo theirs > shared/x.bin
	chown 65534 shared/x.bin
	run memray-record -f -o shared/x.bin "$FIX/allocs" none
	assert_failure 2
	assert_output "memray-record: 'shared/x.bin' belongs to another user (uid 65534); not overwriting it"
	[ "$(cat shared/x.bin)" = theirs ]
	echo mine > shared/y.bin
	memray-record -q -f -o shared/y.bin "$FIX/allocs" none
	memray-stat shared/y.bin > /dev/null
	# a FIFO of another user's is written to
	mkfifo shared/p
	chown 65534 shared/p
	cat shared/p > p.bin &
	memray-record -q -f -o shared/p "$FIX/allocs" none
	wait
	memray-stat p.bin > /dev/null
}

@test "-z writes a zstd stream, --compress=gzip a gzip one; memray-stat reads both by content" {
	memray-record -q -z -o z.bin "$FIX/demo" > /dev/null
	[ "$(head -c 4 z.bin | od -An -tx1 | tr -d ' ')" = 28b52ffd ]
	run memray-stat z.bin
	assert_success
	assert_output --partial "allocations:"
	# zstd(1) gives the stream back, checksum checked
	zstd -q -t z.bin
	zstd -q -dc z.bin | memray-stat --dump > unz.txt
	memray-stat --dump z.bin > z.txt
	cmp unz.txt z.txt
	memray-record -q -o plain.bin "$FIX/demo" > /dev/null
	[ "$(stat -c %s z.bin)" -lt "$(stat -c %s plain.bin)" ]
	memray-record -q --compress=gzip -o g.bin "$FIX/demo" > /dev/null
	[ "$(head -c 2 g.bin | od -An -tx1 | tr -d ' ')" = 1f8b ]
	gzip -t g.bin
	memray-stat g.bin | grep -q "allocations:"
	memray-record -q --compress=zstd -f -o z.bin "$FIX/demo" > /dev/null
	[ "$(head -c 4 z.bin | od -An -tx1 | tr -d ' ')" = 28b52ffd ]
	run memray-record --compress=lz4 -o l.bin "$FIX/demo"
	assert_failure 2
	assert_output --partial "invalid --compress 'lz4': expected zstd or gzip"
	[ ! -e l.bin ]
}

@test "-z: a churn of blocks freed in the order they were made costs a few hundredths of a byte per event" {
	memray-record -q -z -o churn.bin "$FIX/allocs" churn 1
	memray-record -q -o plain.bin "$FIX/allocs" churn 1
	events=$(memray-stat --json churn.bin | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["allocations"] + d["frees"])')
	[ "$events" -ge 2000000 ]
	z=$(stat -c %s churn.bin); raw=$(stat -c %s plain.bin)
	echo "events $events raw $raw z $z"
	# the stream itself: under 3 bytes per event; compressed: under 0.05
	[ $((raw * 10 / events)) -lt 30 ]
	[ $((z * 1000 / events)) -lt 50 ]
}

@test "a program whose main thread leaves by pthread_exit ends when its last thread does, as without recording (issue 19)" {
	# the tracker's sampler thread kept such a process alive forever,
	# with every signal sent to it held back
	for opt in "" --follow-fork; do
		rm -f pe.bin
		start=$(date +%s%N)
		run timeout -k 5 20 memray-record $opt -q -o pe.bin "$FIX/pexit" 600
		assert_success
		ms=$(( ($(date +%s%N) - start) / 1000000 ))
		echo "$opt: ${ms} ms"
		# not before the other thread is done, and not much after
		[ "$ms" -ge 600 ]
		[ "$ms" -lt 5000 ]
		assert_line --partial "worker 0x"
		run memray-stat pe.bin
		assert_success
		memray-stat --dump pe.bin > pe.txt
		grep -q ' alloc malloc .* size=2424 .* thread=1$' pe.txt
		grep -q ' alloc malloc .* size=4242 .* thread=2$' pe.txt
		grep -q ' trailer ' pe.txt
	done
}

@test "exit status is the program's own, 128+N when signal N killed it" {
	run memray-record -q -o a.bin "$FIX/allocs" status 3
	assert_failure 3
	run memray-record -q -f -o a.bin "$FIX/allocs" signal 15
	assert_failure 143
	run memray-record -f -o a.bin "$FIX/allocs" signal 6
	assert_failure 134
	assert_output --partial "ended by signal 6 (SIGABRT); the stream is complete and says so"
}

@test "started with SIGCHLD ignored: the program's end and exit status are seen at once, and the program gets SIGCHLD ignored as it was given" {
	# (a SIGCHLD ignored reaps children unseen: memray-record takes it
	# back to the default for itself only)
	run timeout 20 python3 -c '
import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.execvp(sys.argv[1], sys.argv[1:])' memray-record -f -o a.bin python3 -c '
import signal, sys
print(signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN)
sys.exit(3)'
	assert_failure 3
	assert_line True
	refute_output --partial "still running"
	memray-stat a.bin > /dev/null
	# and as usual without
	run memray-record -q -f -o a.bin python3 -c 'import signal; print(signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL)'
	assert_success
	assert_output True
}

@test "a signal memray-record was started with ignored (nohup) does not end the recording: the program, given it ignored too, is recorded to its end" {
	python3 -c '
import os, signal, sys
signal.signal(signal.SIGHUP, signal.SIG_IGN)
os.execvp(sys.argv[1], sys.argv[1:])' memray-record -f -o h.bin python3 -c '
import signal, time
time.sleep(3)
print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN, "done")' > h.out 2> h.err &
	local rec=$!
	sleep 0.5
	kill -HUP $rec
	wait $rec
	cat h.out h.err
	grep -qx "True done" h.out
	! grep -q "still running" h.err || false
	run memray-stat h.bin
	assert_success
}

@test "standard output given non-blocking (a pipe its reader set O_NONBLOCK on) gets the whole stream" {
	python3 -c '
import fcntl, os, subprocess, sys, time
r, w = os.pipe()
fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
p = subprocess.Popen(sys.argv[1:], stdout=w, stderr=open("nb.err", "w"))
os.close(w)
time.sleep(0.5)  # the pipe fills meanwhile
with open("nb.bin", "wb") as out:
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        out.write(b)
        time.sleep(0.001)
sys.exit(p.wait())' memray-record -q python3 -c 'for i in range(100000): bytearray(600)'
	[ ! -s nb.err ]
	[ "$(stat -c %s nb.bin)" -gt 200000 ]
	run memray-stat nb.bin
	assert_success
	n=$(sed -n 's/^allocations: *//p' <<< "$output")
	[ "$n" -ge 100000 ]
}

@test "a low limit of open files (ulimit -n 16 and 64, hard too): the program is recorded" {
	for n in 16 64; do
		run bash -c 'ulimit -n "$1" && memray-record -q -f -o l.bin "$2" chain' _ "$n" "$FIX/allocs"
		assert_success
		refute_output --partial "did not load the tracker"
		run memray-fold l.bin
		assert_success
		assert_output --partial "chain_c (allocs.c:"
	done
}

# std_seen: which of the program's descriptors 0, 1, 2 are open, into std.txt
std_seen='s=; for f in 0 1 2; do if [ -e /proc/$$/fd/$f ]; then s="$s$f "; fi; done; echo "$s" > std.txt'

@test "descriptors 0, 1, 2 closed when memray-record starts: the program gets them closed, nothing of memray-record's is made under them" {
	# stdout closed and the stream meant for it: said, nothing run
	run bash -c 'memray-record sh -c ": > ran" 2>&1 1>&-'
	assert_failure 2
	assert_output "memray-record: standard output is closed: there is nowhere to write the stream (give -o FILE)"
	[ ! -e ran ]
	# with -o FILE: the program sees what it sees without memray-record
	sh -c "$std_seen" 0<&- 1>&-
	[ "$(cat std.txt)" = "2 " ]
	memray-record -q -f -o a.bin sh -c "$std_seen" 0<&- 1>&-
	[ "$(cat std.txt)" = "2 " ]
	sh -c "$std_seen" 2>&-
	[ "$(cat std.txt)" = "0 1 " ]
	memray-record -q -f -o a.bin sh -c "$std_seen" 2>&-
	[ "$(cat std.txt)" = "0 1 " ]
	run memray-stat a.bin
	assert_success
	# the stream to stdout, stderr closed: the program's stdout (which
	# goes to memray-record's stderr) is closed too
	memray-record -q sh -c "$std_seen" 2>&- > b.bin
	[ "$(cat std.txt)" = "0 " ]
	run memray-stat b.bin
	assert_success
	# --idle runs the program as it was given too
	memray-record --idle sh -c "$std_seen" 1>&-
	[ "$(cat std.txt)" = "0 2 " ]
}

@test "a program that does not load the tracker after all (a script run by a static interpreter) never writes into the stream" {
	printf '#include <unistd.h>\nint main(void) { write(1, "HELLO\\n", 6); write(2, "", 0); return 0; }\n' > sp.c
	cc -static -o sp sp.c 2> /dev/null || skip "no static libc"
	printf '#!%s\n' "$PWD/sp" > scr
	chmod +x scr
	run bash -c 'memray-record -f -o s.bin ./scr 2>&1 1>&-'
	assert_output --partial "did not load the tracker"
	! grep -q HELLO s.bin || false
	# and one known not to: its standard output is its own, no stream
	run bash -c 'memray-record ./sp | od -c'
	assert_output --partial "H   E   L   L   O"
}

# ended_by SIG: memray-record of a sleeping program, ended from outside
# by SIG: the stream is complete and says which signal ended it.
ended_by() {
	local sig=$1 num
	num=$(kill -l "$sig")
	# (signals' default actions: a run under nohup would ignore SIGHUP)
	env --default-signal memray-record -f -o s.bin "$FIX/allocs" sleep 5 > /dev/null 2> err.txt &
	local rec=$! child="" i
	for i in $(seq 50); do
		child=$(pgrep -P $rec) && [ -n "$child" ] && break
		sleep 0.1
	done
	sleep 0.3
	kill -"$sig" "$child"
	local st=0
	wait $rec || st=$?
	[ "$st" = $((128 + num)) ] || { echo "$sig: exit $st"; cat err.txt; return 1; }
	grep -q "ended by signal $num (SIG$sig); the stream is complete" err.txt || { cat err.txt; return 1; }
	memray-stat s.bin > stat.txt || { echo "$sig: memray-stat exits $?"; return 1; }
	grep -q "^ended by: *signal $num (SIG$sig)$" stat.txt || { cat stat.txt; return 1; }
	[ "$(memray-stat --json s.bin | python3 -c 'import json,sys; print(json.load(sys.stdin)["end_signal"])')" = "$num" ] ||
		{ echo "$sig: end_signal"; return 1; }
	# what the program allocated before the signal is there
	memray-stat --dump s.bin > dump.txt || return 1
	grep -q " alloc valloc .*size=984" dump.txt || { echo "$sig: no valloc"; return 1; }
	tail -2 dump.txt | head -1 | grep -q " memory " || { echo "$sig: no last memory record"; return 1; }
	grep -q " signal signal=$num name=SIG$sig$" dump.txt
}

@test "a program ended by SIGTERM, SIGHUP, SIGUSR1 or SIGALRM from outside leaves a complete stream that says so" {
	for sig in TERM HUP USR1 ALRM; do
		ended_by $sig || return 1
	done
}

@test "SIGTERM while four threads allocate without a pause: 20 complete streams, whatever the tracker was doing" {
	for i in $(seq 20); do
		memray-record -q -f -o c.bin "$FIX/allocs" churn-forever > out.txt &
		rec=$!
		for k in $(seq 100); do grep -q ready out.txt && break; sleep 0.05; done
		sleep 0.1
		kill -TERM $rec # passed on to the program
		st=0
		wait $rec || st=$?
		[ "$st" = 143 ] || { echo "run $i: exit $st"; return 1; }
		memray-stat c.bin > stat.txt || { echo "run $i: memray-stat exits $?"; return 1; }
		grep -q "^ended by: *signal 15 (SIGTERM)$" stat.txt
	done
}

slow_reader_run() {
	rm -f err.txt pid st.txt s.bin
	{ memray-record -q "$FIX/allocs" churn-forever 2> err.txt & echo $! > pid; st=0; wait $! || st=$?; echo "exit $st" > st.txt; } |
		{ sleep 1.2; cat > s.bin; } &
	local pipeline=$! k
	for k in $(seq 100); do grep -q ready err.txt 2> /dev/null && break; sleep 0.05; done
	sleep 0.2 # the pipes fill
	kill -TERM "$(cat pid)"
	wait $pipeline
	grep -qx "exit 143" st.txt || { cat st.txt; return 1; }
	memray-stat s.bin > stat.txt || return 1
	grep -q "^ended by: *signal 15 (SIGTERM)$" stat.txt
}

@test "SIGTERM while the reader is slow (the pipe full for a second): the stream is still complete" {
	# (whichever thread the signal lands on: the one blocked writing, in
	# about one run in two)
	for i in 1 2 3 4 5; do
		slow_reader_run || { echo "run $i"; return 1; }
	done
}

@test "a reader that stops reading does not keep SIGTERM from ending the program" {
	mkfifo stall
	exec 7<> stall # opened, never read
	memray-record -q -o - "$FIX/allocs" churn-forever >&7 2> /dev/null &
	rec=$!
	child=""
	for i in $(seq 50); do
		child=$(pgrep -P $rec) && [ -n "$child" ] && break
		sleep 0.1
	done
	sleep 1 # the pipes fill up: the tracker blocks in a write
	kill -TERM "$child"
	gone=0
	for i in $(seq 100); do
		kill -0 "$child" 2> /dev/null && ! grep -q zombie "/proc/$child/status" 2> /dev/null || { gone=1; break; }
		sleep 0.05
	done
	kill -KILL "$child" $rec 2> /dev/null || true
	exec 7>&-
	[ "$gone" = 1 ] || { echo "the program outlived SIGTERM by 5 s"; false; }
}

@test "sigset, bsd_signal and sysv_signal: the program's actions stand as without recording" {
	for how in sigset bsd sysv; do
		st=0
		"$FIX/allocs" sigother $how > plain.out || st=$?
		rst=0
		memray-record -q -f -o o.bin "$FIX/allocs" sigother $how > rec.out || rst=$?
		[ "$st" = "$rst" ] || { echo "$how: exit $st plain, $rst recorded"; cat rec.out; return 1; }
		[ "$st" = 143 ]
		diff <(grep -v '^0x' plain.out) <(grep -v '^0x' rec.out)
		grep -q "reported: handler" rec.out
	done
}

@test "a program that raises a signal on itself: complete stream, same status; its signal actions look as without recording" {
	st=0
	"$FIX/allocs" sigview 15 > plain.out || st=$?
	[ "$st" = 143 ]
	run memray-record -f -o v.bin "$FIX/allocs" sigview 15
	assert_failure 143
	st=0
	memray-record -q -f -o v.bin "$FIX/allocs" sigview 15 > rec.out || st=$?
	[ "$st" = 143 ]
	diff <(grep -v '^0x' plain.out) <(grep -v '^0x' rec.out)
	grep -q "^15 default flags=0$" rec.out
	grep -q "usr1 handled 1" rec.out
	run memray-stat v.bin
	assert_success
	assert_line "ended by:        signal 15 (SIGTERM)"
	# a signal the program ignores or handles does not end the stream
	run memray-stat --dump v.bin
	assert_success
	[ "$(echo "$output" | grep -c ' signal signal=')" = 1 ]
}

@test "a missing command exits 127 and a non-executable one 126, with a message" {
	run -127 memray-record -o a.bin no-such-command-here
	assert_failure 127
	assert_output "memray-record: no-such-command-here: command not found"
	[ ! -e a.bin ]
	echo 'echo hi' > noexec.sh
	run memray-record -o a.bin ./noexec.sh
	assert_failure 126
	assert_output --partial "cannot run './noexec.sh': Permission denied"
	run memray-record -o a.bin "$BATS_TEST_TMPDIR"
	assert_failure 126
}

@test "usage errors exit 2: no program, bad --interval, unknown option" {
	run memray-record
	assert_failure 2
	assert_output --partial "no program to run"
	run memray-record --interval 0 true
	assert_failure 2
	assert_output --partial "invalid --interval '0'"
	run memray-record --interval 5x true
	assert_failure 2
	run memray-record --bogus true
	assert_failure 2
	assert_output --partial "usage: memray-record"
}

@test "-- ends memray-record's options; options after PROGRAM belong to it" {
	run memray-record -q -o a.bin -- "$FIX/allocs" status 4
	assert_failure 4
	run memray-record -q -o b.bin "$FIX/allocs" -q
	assert_failure 2
	assert_output --partial "unknown case '-q'"
}

@test "a script runs through its interpreter and is recorded" {
	printf '#!/bin/sh\nexec "%s" chain\n' "$FIX/allocs" > run.sh
	chmod +x run.sh
	memray-record -q -o s.bin ./run.sh > /dev/null
	[ "$(events valloc s.bin 984 | wc -l)" = 1 ]
}

@test "a static program still runs, with a warning that nothing can be recorded" {
	printf 'int main(void){return 5;}\n' > st.c
	cc -static -o st st.c 2>/dev/null || skip "no static libc"
	run memray-record -o st.bin ./st
	assert_failure 5
	assert_output --partial "'./st' is statically linked: it will run, but nothing can be recorded"
	[ ! -e st.bin ]
}

@test "a setuid program run by another user still runs, with a warning" {
	[ "$(id -u)" = 0 ] || skip "needs root to make a setuid file"
	command -v setpriv || skip "setpriv is missing"
	d=$(mktemp -d /tmp/memray-suid.XXXXXX)
	chmod 755 "$d"
	cp "$FIX/allocs" "$d/allocs"
	chmod 4755 "$d/allocs"
	cp -r "$MEMRAY_BUILD/bin" "$MEMRAY_BUILD/lib" "$d/"
	run setpriv --reuid=65534 --regid=65534 --clear-groups "$d/bin/memray-record" -o "$d/x.bin" "$d/allocs" status 7
	rm -rf "$d"
	assert_failure 7
	assert_output --partial "is setuid or setgid: it will run, but nothing can be recorded"
}

@test "the program sees the user's environment: LD_PRELOAD restored, no MEMRAY_ variables" {
	run env -u LD_PRELOAD memray-record -q -o e.bin "$FIX/allocs" env LD_PRELOAD
	assert_output "(unset)"
	# (a sanitizer build of memray-record cannot run with a preload of its own)
	if ! ldd "$BIN/memray-record" | grep -q libasan; then
		run env LD_PRELOAD="$FIX/libdlopened.so" memray-record -q -f -o e.bin "$FIX/allocs" env LD_PRELOAD
		assert_output "$FIX/libdlopened.so"
	fi
	run memray-record -q -f -o e.bin "$FIX/allocs" env MEMRAY_FD
	assert_output "(unset)"
}

@test "a program with no allocations, and one that calls _exit, give complete streams" {
	memray-record -q -o none.bin "$FIX/allocs" none
	run memray-stat none.bin
	assert_success
	memray-record -q -o exit.bin "$FIX/allocs" exit-now > /dev/null
	run memray-stat exit.bin
	assert_success
	[ "$(events valloc exit.bin 984 | wc -l)" = 1 ]
	dump exit.bin | tail -1 | grep -q " trailer "
}

@test "SIGKILL in the middle: the stream holds everything up to the kill, the signal and its end" {
	memray-record -o k.bin "$FIX/allocs" sleep 5 > /dev/null 2> err.txt &
	rec=$!
	for i in $(seq 50); do
		child=$(pgrep -P $rec) && [ -n "$child" ] && break
		sleep 0.1
	done
	sleep 0.5
	kill -9 "$child"
	st=0
	wait $rec || st=$?
	[ "$st" = 137 ]
	grep -q "ended by signal 9 (SIGKILL); the stream is complete and says so" err.txt
	run memray-stat --dump k.bin
	assert_success
	assert_output --partial " alloc valloc "
	assert_output --partial "size=984"
	assert_output --partial " signal signal=9 name=SIGKILL"
}

@test "SIGKILL while four threads allocate without a pause: 20 complete streams, whatever the tracker was doing" {
	# the tracker's threads hold its lock most of the time: the rescue
	# area must be whole as last committed at any instruction
	for i in $(seq 20); do
		rm -f k.bin out.txt err.txt
		memray-record -o k.bin "$FIX/allocs" churn-forever > out.txt 2> err.txt &
		rec=$!
		for k in $(seq 100); do grep -q ready out.txt && break; sleep 0.05; done
		sleep 0.$((i % 3 + 1))
		child=$(pgrep -P $rec)
		kill -KILL "$child"
		st=0
		wait $rec || st=$?
		[ "$st" = 137 ] || { echo "run $i: exit $st"; cat err.txt; return 1; }
		grep -q "ended by signal 9 (SIGKILL); the stream is complete and says so" err.txt ||
			{ echo "run $i:"; cat err.txt; return 1; }
		memray-stat k.bin > stat.txt || { echo "run $i: memray-stat exits $?"; return 1; }
		grep -q "^ended by: *signal 9 (SIGKILL)$" stat.txt
	done
}

@test "children made by fork are not recorded and write nothing into the stream" {
	memray-record -q -o f.bin "$FIX/allocs" fork > /dev/null
	[ "$(dump f.bin | awk '{print $2}' | sort -u | wc -l)" = 1 ]
	[ "$(events valloc f.bin 984 | wc -l)" = 1 ]
	[ "$(events valloc f.bin 987 | wc -l)" = 0 ]
	run memray-stat f.bin
	assert_success
}

@test "exec'd programs are not recorded and do not inherit the stream's descriptor" {
	"$FIX/allocs" exec "$FIX/allocs" fds | head -n -1 > plain.txt
	memray-record -q -o x.bin "$FIX/allocs" exec "$FIX/allocs" fds | head -n -1 > recorded.txt
	diff plain.txt recorded.txt
	[ "$(dump x.bin | grep -c ' header ')" = 1 ]
	[ "$(events valloc x.bin 984 | wc -l)" = 1 ]
}

@test "the tracker is found installed as well as in the build tree" {
	make -s -C "$BATS_TEST_DIRNAME/../.." BUILD="$MEMRAY_BUILD" install DESTDIR="$BATS_TEST_TMPDIR/root" PREFIX=/opt/m > /dev/null
	[ -x root/opt/m/bin/memray-record ]
	[ -f root/opt/m/lib/memray-c/libmemray-tracker.so ]
	[ -f root/opt/m/share/man/man1/memray-record.1 ]
	[ -f root/opt/m/share/man/man5/memray-stream.5 ]
	root/opt/m/bin/memray-record -q -o i.bin "$FIX/allocs" chain > /dev/null
	[ "$(events valloc i.bin 984 | wc -l)" = 1 ]
}

@test "an exec in the recorded process goes on recording in the new image; a failed exec changes nothing" {
	memray-record -q -o e.bin "$FIX/allocs" exec-self > /dev/null
	run memray-stat e.bin
	assert_success
	[ "$(dump e.bin | grep -c ' header ')" = 2 ]
	[ "$(dump e.bin | grep -c ' exec ')" = 2 ]
	[ "$(dump e.bin | grep -c ' trailer ')" = 1 ]
	# the failed exec's EXEC record is followed by the first image's own valloc
	[ "$(events valloc e.bin 984 | wc -l)" = 2 ]
	dump e.bin | awk '$3 == "header"' | tail -1 | grep -q 'argv=".*allocs" "chain"'
	[ "$(dump e.bin | awk '{print $2}' | sort -u | wc -l)" = 1 ]
}

@test "a program that closes every descriptor and reuses the numbers never gets tracker bytes in its files, and is recorded to its end" {
	run memray-record -q -o c.bin "$FIX/allocs" close-all "$BATS_TEST_TMPDIR/mine.txt"
	assert_success
	[ "$(cat mine.txt)" = mine ]
	# the tracker opened the pipe again through memray-record's end
	run memray-stat c.bin
	assert_success
	assert_line --regexp "^allocations: +200[0-9]{3}$"
	# the standard descriptors closed too, and files of its own on them
	run memray-record -q -o c0.bin "$FIX/allocs" close-all "$BATS_TEST_TMPDIR/mine0.txt" 0
	assert_success
	[ "$(cat mine0.txt)" = mine ]
	run memray-stat c0.bin
	assert_success
	assert_line --regexp "^allocations: +200[0-9]{3}$"
	# started with them closed: the memory records still read the RSS
	memray-record -q -o s0.bin "$FIX/allocs" churn 1 <&- >&- 2>&-
	run memray-stat s0.bin
	assert_success
	refute_line --regexp "^peak RSS: +0 "
	# with no descriptor left to open it again under (it takes every
	# number up to a limit of 256), the recording stops there, said so
	run bash -c 'ulimit -n 256 && exec memray-record -o d.bin "$0" close-all "$1"' "$FIX/allocs" "$BATS_TEST_TMPDIR/mine2.txt"
	assert_success
	[ "$(cat mine2.txt)" = mine ]
	assert_line --partial "stopped before it ended"
	run memray-stat --dump d.bin
	assert_failure 2
	assert_output --partial " header "
	assert_output --partial "no trailer"
}

@test "the program's first open() gets the same descriptor number as without recording" {
	"$FIX/allocs" first-fd | tail -1 > plain.txt
	memray-record -q -o n.bin --native "$FIX/allocs" first-fd | tail -1 > native.txt
	memray-record -q -o p.bin --no-native "$FIX/allocs" first-fd | tail -1 > python.txt
	diff plain.txt native.txt
	diff plain.txt python.txt
}

@test "-o FILE keeps the user's umask, and nothing else is written anywhere" {
	mkdir run tmp
	cd run
	(umask 027 && TMPDIR="$BATS_TEST_TMPDIR/tmp" memray-record -q -o out.bin "$FIX/allocs" chain > /dev/null)
	[ "$(stat -c %a out.bin)" = 640 ]
	(umask 022 && TMPDIR="$BATS_TEST_TMPDIR/tmp" memray-record -q -o out2.bin --follow-fork "$FIX/allocs" forkmany 3 > /dev/null)
	[ "$(stat -c %a out2.bin)" = 644 ]
	[ "$(ls -A | tr '\n' ' ')" = "out.bin out2.bin " ]
	[ -z "$(ls -A ../tmp)" ]
}

@test "--program-output FILE takes the program's stdout and stderr, never through a symlink" {
	memray-record --program-output prog.log -o p.bin /usr/bin/python3 -c 'import sys; print("to out"); print("to err", file=sys.stderr)' > term.txt 2> err.txt
	[ "$(cat prog.log)" = "to out
to err" ]
	[ ! -s term.txt ]
	grep -q "wrote p.bin" err.txt
	! grep -q "to " err.txt || false
	# with the stream on stdout, still nothing of the program's there
	memray-record -q --program-output prog2.log /usr/bin/python3 -c 'print("hello")' > s.bin
	[ "$(cat prog2.log)" = hello ]
	memray-stat s.bin > /dev/null
	ln -s "$BATS_TEST_TMPDIR/elsewhere" link.log
	run memray-record --program-output link.log /bin/true
	assert_failure 2
	assert_output "memray-record: 'link.log' is a symbolic link; not following it"
	[ ! -e elsewhere ]
}

@test "--program-output naming the stream's own file is refused before anything runs, by any path to it" {
	run memray-record -o same.bin --program-output same.bin /usr/bin/python3 -c 'open("ran", "w")'
	assert_failure 2
	assert_output "memray-record: --program-output 'same.bin' is the file the stream is written to (-o)"
	[ ! -e ran ]
	# checked before anything is opened: no -o file made
	[ ! -e same.bin ]
	# another name of it, and standard output sent to it
	echo kept > same.bin
	ln same.bin hard.bin
	run memray-record -f -o same.bin --program-output ./hard.bin /bin/true
	assert_failure 2
	assert_output --partial "is the file the stream is written to (-o)"
	# and a file given with -f is not emptied for nothing
	[ "$(cat same.bin)" = kept ]
	run bash -c 'memray-record --program-output out.bin /bin/true > out.bin'
	assert_failure 2
	assert_output "memray-record: --program-output 'out.bin' is the file the stream is written to (standard output)"
	# a file written before is kept whole until then: an existing program
	# output is emptied only once accepted
	echo before > prog.log
	memray-record -q -f -o same.bin --program-output prog.log /usr/bin/python3 -c 'print("after")'
	[ "$(cat prog.log)" = after ]
	memray-stat same.bin > /dev/null
}

@test "unshare -U and -r, and nsenter into a user namespace, work under memray-record, with and without --follow-fork" {
	unshare -U true 2> /dev/null || skip "user namespaces are not allowed here"
	for follow in "" --follow-fork; do
		run timeout -k 5 30 memray-record -q -f -o u.bin $follow unshare -U "$FIX/allocs" alloc malloc
		assert_success
		memray-stat u.bin | grep -q "allocs alloc malloc"
		run timeout -k 5 30 memray-record -q -f -o r.bin $follow unshare -r sh -c 'id -u; "$0" alloc calloc' "$FIX/allocs"
		assert_success
		assert_line "0"
		run memray-stat r.bin
		assert_success
	done
	# the program recorded in its user namespace, with --follow-fork
	dump r.bin | awk '$3 == "alloc" && $4 == "calloc" && / size=984 /' | grep -q .
	# in a forked child too (its parent's sampler did not come along)
	for follow in "" --follow-fork; do
		run timeout -k 5 30 memray-record -q -f -o fu.bin $follow "$FIX/allocs" fork-unshare
		assert_success
	done
	unshare -U sleep 10 &
	ns=$!
	sleep 0.3
	run timeout -k 5 30 memray-record -q -o n.bin nsenter -U -t "$(pgrep -n -P $ns || echo $ns)" --preserve-credentials "$FIX/allocs" alloc malloc
	kill $ns || true
	assert_success
	memray-stat n.bin | grep -q "allocs alloc malloc"
}

@test "a child made by _Fork that allocates never touches its parent's rescue area: the parent killed, its stream is its own" {
	for i in 1 2 3; do
		run memray-record -f -o rk.bin "$FIX/allocs" rawfork-kill
		assert_failure 137
		assert_output --partial "memray-record wrote the"
		run memray-stat rk.bin
		assert_success
		assert_line --regexp "^allocations: +400$"
	done
}

@test "a child made by _Fork (past the fork handlers) that allocates never touches its parent's stream" {
	for i in 1 2 3; do
		run timeout -k 5 30 memray-record -q -f -o rf.bin "$FIX/allocs" rawfork
		assert_success
		run memray-stat rf.bin
		assert_success
		assert_line --regexp "^allocations: +4[0-9]{2}$"
	done
}

