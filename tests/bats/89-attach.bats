#!/usr/bin/env bats
# memray-record --pid: attaching to a program that is already running.

load helper

LOOP=$BATS_TEST_DIRNAME/../fixtures/py/attach_loop.py

# start_target COMMAND...: runs it in the background (output in
# target.out) and waits for its "ready" line; sets TPID.
start_target() {
	"$@" > target.out 2>&1 3>&- &
	TPID=$!
	for _ in $(seq 200); do
		grep -q '^ready' target.out && return 0
		sleep 0.05
	done
	cat target.out
	return 1
}

# finish_target: tells the target to stop and waits for it; sets TSTATUS.
finish_target() {
	touch stop
	TSTATUS=0
	wait "$TPID" || TSTATUS=$?
}

teardown() {
	[ -n "${TPID:-}" ] || return 0
	touch "$BATS_TEST_TMPDIR/stop"
	kill "$TPID" 2> /dev/null || true
}

need_gdb() {
	command -v gdb > /dev/null || skip "gdb is missing"
}

# bats test_tags=py3
@test "a running Python program: its line in memray-fold, with the stack active at attach; it goes on and ends as usual" {
	need_gdb
	start_target $PY3 "$LOOP" stop
	start=$(date +%s.%N)
	run memray-record --pid "$TPID" --duration 2 -o rec.bin
	end=$(date +%s.%N)
	echo "$output"
	assert_success
	assert_output --partial "recording process $TPID (${PY3##*/})"
	assert_output --partial "wrote rec.bin"
	# recorded for the 2 s asked, and did not wait long for gdb
	awk -v a="$start" -v b="$end" 'BEGIN { exit !(b - a >= 2 && b - a < 30) }'
	# the program is still running, then ends with its usual output
	kill -0 "$TPID"
	finish_target
	[ "$TSTATUS" -eq 0 ]
	grep -qx "done 20 True" target.out
	memray-fold rec.bin > rec.folded
	# main and <module> started before the attach: the whole stack is there
	line=$(grep -v '^#' rec.folded | grep "grow ($LOOP:10)")
	echo "$line"
	[[ "$line" == "<module> ($LOOP:28);main ($LOOP:22);grow ($LOOP:10) "* ]]
	# plausible bytes: the peak holds between 1 and 21 of its 100 kB buffers
	bytes=${line##* }
	[ "$bytes" -ge 100000 ]
	[ "$bytes" -le 2200000 ]
	# the stream says it was attached, and is complete
	memray-stat --dump rec.bin | grep -m1 ' header ' | grep -q 'flags=python,pymalloc,attached'
	run memray-stat rec.bin
	assert_success
	refute_output --partial "warning"
}

@test "a running C program: its function in the native stacks; its results unchanged" {
	need_gdb
	start_target "$FIX/allocs" attach-loop stop
	run memray-record -p "$TPID" --duration 2 -o rec.bin
	echo "$output"
	assert_success
	kill -0 "$TPID"
	finish_target
	[ "$TSTATUS" -eq 0 ]
	grep -qx "done ok" target.out
	memray-fold --metric total rec.bin > rec.folded
	line=$(grep -v '^#' rec.folded | grep 'attach_target' | sort -t' ' -k2 -n | tail -1)
	echo "$line"
	[[ "$line" == *"main (allocs.c"*";attach_target (allocs.c:"* ]]
	# 4096 bytes every half millisecond or so, for 2 s: at least 100 of them
	bytes=${line##* }
	[ "$bytes" -ge $((100 * 4096)) ]
	[ $((bytes % 4096)) -eq 0 ]
	memray-stat --dump rec.bin | grep -m1 ' header ' | grep -q 'flags=native,attached'
}

@test "a SIGHUP memray-record was started with ignored (nohup) does not end the recording" {
	need_gdb
	start_target "$FIX/allocs" attach-loop stop
	python3 -c '
import os, signal, sys
signal.signal(signal.SIGHUP, signal.SIG_IGN)
os.execvp(sys.argv[1], sys.argv[1:])' memray-record -p "$TPID" --duration 2 -o hup.bin 2> rec.err 3>&- &
	rec=$!
	for _ in $(seq 300); do grep -q recording rec.err && break; sleep 0.05; done
	kill -HUP "$rec"
	wait "$rec"
	cat rec.err
	! grep -q "stopped recording" rec.err || false
	run memray-stat hup.bin
	assert_success
}

@test "Ctrl-C ends the recording; the program goes on; a second attach works too" {
	need_gdb
	start_target "$FIX/allocs" attach-loop stop
	memray-record -p "$TPID" -o one.bin 2> rec.err 3>&- &
	rec=$!
	for _ in $(seq 300); do grep -q recording rec.err && break; sleep 0.05; done
	sleep 0.5
	kill -INT "$rec"
	status=0
	wait "$rec" || status=$?
	cat rec.err
	[ "$status" -eq 0 ]
	grep -q "stopped recording; process $TPID goes on as before" rec.err
	run memray-stat one.bin
	assert_success
	refute_output --partial warning
	# the tracker stays loaded but idle: attaching again records again
	run memray-record -p "$TPID" --duration 1 -o two.bin
	assert_success
	memray-fold two.bin | grep -q attach_target
	finish_target
	[ "$TSTATUS" -eq 0 ]
	grep -qx "done ok" target.out
}

# bats test_tags=py3
@test "memray-record killed while recording: the program restores itself and ends as usual" {
	need_gdb
	start_target $PY3 "$LOOP" stop
	memray-record -p "$TPID" -o rec.bin 2> rec.err 3>&- &
	rec=$!
	for _ in $(seq 300); do grep -q recording rec.err && break; sleep 0.05; done
	kill -KILL "$rec"
	wait "$rec" || true
	sleep 0.5
	kill -0 "$TPID"
	# a new recording starts: the killed one's was ended by the tracker
	run memray-record -p "$TPID" --duration 1 -o again.bin
	echo "$output"
	assert_success
	finish_target
	[ "$TSTATUS" -eq 0 ]
	grep -qx "done 20 True" target.out
}

@test "the program ends while it is recorded: a complete stream and a note" {
	need_gdb
	start_target "$FIX/allocs" attach-loop stop
	( sleep 1.5; touch stop ) 3>&- &
	run memray-record -p "$TPID" --duration 30 -o rec.bin
	echo "$output"
	assert_success
	assert_output --partial "process $TPID (allocs) ended during the recording"
	wait "$TPID"
	run memray-stat rec.bin
	assert_success
	refute_output --partial warning
}

@test "a process recorded already is refused" {
	need_gdb
	memray-record -q -o first.bin "$FIX/allocs" attach-loop stop > target.out 3>&- &
	TPID=$!
	for _ in $(seq 200); do grep -q '^ready' target.out && break; sleep 0.05; done
	pid=$(sed -n 's/^ready //p' target.out)
	run memray-record -p "$pid" --duration 1 -o second.bin
	echo "$output"
	[ "$status" -eq 2 ]
	assert_output --partial "process $pid (allocs) is being recorded already"
	[ ! -e second.bin ]
	finish_target
	[ "$TSTATUS" -eq 0 ]
	memray-fold first.bin | grep -q attach_target
}

@test "a refused attach leaves nothing in the process, nor in the recording it is refused for" {
	need_gdb
	cat > window.py <<'PY'
import os, sys, time
import memray_c
t = memray_c.start(sys.argv[1], overwrite=True)
print("ready", os.getpid(), flush=True)
for i in range(60):
    b = bytearray(10000)
    time.sleep(0.02)
s = t.stop()
print("stats", s.allocations, s.live, flush=True)
PY
	PYTHONPATH=$BATS_TEST_DIRNAME/../../python /usr/bin/python3 window.py alone.bin > alone.out
	start_target env PYTHONPATH=$BATS_TEST_DIRNAME/../../python /usr/bin/python3 window.py w.bin
	pid=$(sed -n 's/^ready //p' target.out)
	run memray-record -p "$pid" --duration 1 -o second.bin
	echo "$output"
	[ "$status" -eq 2 ]
	assert_output --partial "is being recorded already"
	wait "$TPID"
	TPID=
	grep '^stats' alone.out
	grep '^stats' target.out
	[ "$(grep '^stats' target.out)" = "$(grep '^stats' alone.out)" ]
}

@test "a missing process: exit 2, a clear message, no file" {
	run memray-record --pid 999999999 -o rec.bin
	[ "$status" -eq 2 ]
	assert_output "memray-record: no process with pid 999999999"
	[ ! -e rec.bin ]
	run memray-record --pid 0
	[ "$status" -eq 2 ]
	assert_output --partial "no process with pid 0"
}

@test "a statically linked program is refused: exit 2" {
	start_target "$FIX/static-sleeper"
	run memray-record -p "$TPID" -o rec.bin
	[ "$status" -eq 2 ]
	assert_output --partial "is not dynamically linked"
	[ ! -e rec.bin ]
	kill -0 "$TPID"
}

@test "ptrace not permitted: exit 2, naming kernel.yama.ptrace_scope" {
	command -v setpriv > /dev/null || skip "setpriv is missing"
	[ "$(id -u)" -eq 0 ] || skip "needs root to run memray-record as another user"
	start_target "$FIX/allocs" attach-loop stop
	run setpriv --reuid=65534 --regid=65534 --clear-groups memray-record -p "$TPID" -o /tmp/memray-never-$$.bin
	echo "$output"
	[ "$status" -eq 2 ]
	assert_output --partial "not permitted to attach to process $TPID"
	assert_output --partial "kernel.yama.ptrace_scope"
	[ ! -e /tmp/memray-never-$$.bin ]
	finish_target
	grep -qx "done ok" target.out
}

@test "without gdb: exit 2, saying what to install" {
	start_target "$FIX/allocs" attach-loop stop
	run env PATH="$BIN" memray-record -p "$TPID" -o rec.bin
	[ "$status" -eq 2 ]
	assert_output --partial "attaching needs gdb"
	[ ! -e rec.bin ]
}

@test "--pid and --duration: mistakes are exit 2" {
	run memray-record --pid abc
	[ "$status" -eq 2 ]
	assert_output --partial "invalid --pid 'abc'"
	run memray-record --pid "$$" /bin/true
	[ "$status" -eq 2 ]
	assert_output --partial "no PROGRAM to run"
	run memray-record --pid "$$" --follow-fork
	[ "$status" -eq 2 ]
	assert_output --partial "--pid cannot be used with --follow-fork"
	run memray-record --duration 2 /bin/true
	[ "$status" -eq 2 ]
	assert_output --partial "--duration goes with --pid"
	run memray-record --pid "$$" --duration 0
	[ "$status" -eq 2 ]
	assert_output --partial "invalid --duration '0'"
	run memray-record --pid "$$" --duration x
	[ "$status" -eq 2 ]
}

# bats test_tags=py3
@test "attached, into memray-live: the top site, then 'the recording has ended'" {
	need_gdb
	start_target $PY3 "$LOOP" stop
	memray-record -q -p "$TPID" --duration 1.5 | memray-live --batch --interval 300 > live.txt
	cat live.txt
	grep -q "top .* grow ($LOOP:10)" live.txt
	[ "$(tail -1 live.txt)" = "the recording has ended" ]
	kill -0 "$TPID"
	finish_target
	[ "$TSTATUS" -eq 0 ]
}

# bats test_tags=py3
@test "a program that receives signals all the time (SIGALRM every 5 ms) is attached to, and keeps them" {
	need_gdb
	start_target $PY3 "$BATS_TEST_DIRNAME/../fixtures/py/attach_alarms.py" stop
	run memray-record -p "$TPID" --duration 1 -o rec.bin
	echo "$output"
	assert_success
	memray-fold rec.bin | grep -q "grow ($LOOP:10)"
	finish_target
	[ "$TSTATUS" -eq 0 ]
	grep -qx "done 20 True" target.out
}

@test "a stopped process is refused: attaching would let it run" {
	start_target "$FIX/allocs" attach-loop stop
	kill -STOP "$TPID"
	# (stopped, or about to be: kill returns before the process stops)
	run memray-record -p "$TPID" -o rec.bin
	kill -CONT "$TPID"
	[ "$status" -eq 2 ]
	assert_output --partial "is stopped; attaching would let it run"
	[ ! -e rec.bin ]
}

@test "nothing is left in /tmp, also when memray-record is killed while it records" {
	need_gdb
	ls -d /tmp/memray-attach-* 2> /dev/null | sort > before.txt || true
	start_target "$FIX/allocs" attach-loop stop
	memray-record -p "$TPID" -o rec.bin 2> rec.err 3>&- &
	rec=$!
	for _ in $(seq 300); do grep -q recording rec.err && break; sleep 0.05; done
	kill -KILL "$rec"
	wait "$rec" || true
	ls -d /tmp/memray-attach-* 2> /dev/null | sort > after.txt || true
	diff before.txt after.txt
}

@test "the output going away ends the recording" {
	need_gdb
	start_target "$FIX/allocs" attach-loop stop
	start=$(date +%s)
	memray-record -q -p "$TPID" 2> rec.err | head -c 100 > head.bin
	[ "$(wc -c < head.bin)" -eq 100 ] || { cat rec.err; false; }
	# without --duration: it stopped because its output closed
	[ $(($(date +%s) - start)) -lt 20 ]
	kill -0 "$TPID"
	finish_target
	grep -qx "done ok" target.out
}
