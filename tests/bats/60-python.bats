#!/usr/bin/env bats
# Python stacks on every CPython 3.9-3.13 on the machine.

load helper

setup_file() {
	list_pythons
}

chain() {
	memray-record -q -f -o c.bin "$PY" "$PYDIR/chain.py" &&
	expect_pystack c.bin 1048577 "<module> chain.py:13
alloc_func1 chain.py:10
alloc_func2 chain.py:6
alloc_func3 chain.py:2" &&
	dump c.bin | head -1 | grep -q "flags=python,pymalloc " &&
	dump c.bin | head -1 | grep -qv "native"
}

@test "a three-deep call chain allocating 1 MiB: function, file and line of every frame, root first" {
	on_every_python chain
}

threads() {
	memray-record -q -f -o t.bin "$PY" "$PYDIR/threads.py" || return 1
	local one two
	one=$(pystack_of t.bin "\$6 == \"size=$(pysz 111112)\"" | tail -1)
	two=$(pystack_of t.bin "\$6 == \"size=$(pysz 222223)\"" | tail -1)
	[ "$one" = "worker_one threads.py:5" ] && [ "$two" = "worker_two threads.py:9" ] ||
		{ echo "leaves: $one / $two"; return 1; }
	local t1 t2
	t1=$(dump t.bin | awk "\$3 == \"alloc\" && \$6 == \"size=$(pysz 111112)\"" | field thread)
	t2=$(dump t.bin | awk "\$3 == \"alloc\" && \$6 == \"size=$(pysz 222223)\"" | field thread)
	[ -n "$t1" ] && [ -n "$t2" ] && [ "$t1" != 1 ] && [ "$t2" != 1 ] && [ "$t1" != "$t2" ] ||
		{ echo "threads $t1 $t2"; return 1; }
	# the thread's own stack starts in threading's bootstrap, not in the main thread's frames
	pystack_of t.bin "\$6 == \"size=$(pysz 111112)\"" | head -1 | grep -Eq "^(Thread\.)?_bootstrap threading.py:"
}

@test "two threads allocating at different lines: each event carries its thread and its own stack" {
	on_every_python threads
}

tasks() {
	memray-record -q -f -o a.bin "$PY" "$PYDIR/tasks.py" || return 1
	local a b
	a=$(dump a.bin | awk "\$6 == \"size=$(pysz 123452)\" && \$3 == \"alloc\"" | wc -l)
	b=$(dump a.bin | awk "\$6 == \"size=$(pysz 123453)\" && \$3 == \"alloc\"" | wc -l)
	[ "$a" = 3 ] && [ "$b" = 3 ] || { echo "counts $a $b"; return 1; }
	pystack_of a.bin "\$6 == \"size=$(pysz 123452)\"" | tail -1 | grep -qx "task_a tasks.py:9" &&
	pystack_of a.bin "\$6 == \"size=$(pysz 123453)\"" | tail -1 | grep -qx "task_b tasks.py:14" &&
	! pystack_of a.bin "\$6 == \"size=$(pysz 123452)\"" | grep -q task_b &&
	! pystack_of a.bin "\$6 == \"size=$(pysz 123453)\"" | grep -q task_a &&
	pystack_of a.bin "\$6 == \"size=$(pysz 123452)\"" | head -1 | grep -qx "<module> tasks.py:22"
}

@test "asyncio: two interleaving tasks each show their own coroutine at the right line" {
	on_every_python tasks
}

exceptions() {
	memray-record -q -f -o e.bin "$PY" "$PYDIR/exceptions.py" &&
	expect_pystack e.bin 333334 "<module> exceptions.py:21
catcher exceptions.py:18"
}

@test "an exception unwinding several frames, then an allocation in the catching frame" {
	on_every_python exceptions
}

generator() {
	memray-record -q -f -o g.bin "$PY" "$PYDIR/generator.py" &&
	expect_pystack g.bin 444442 "<module> generator.py:13
consume generator.py:8
numbers generator.py:3" &&
	expect_pystack g.bin 444444 "<module> generator.py:13
consume generator.py:8
numbers generator.py:3"
}

@test "a generator suspended and resumed: its frame sits under the consumer's loop line" {
	on_every_python generator
}

callback() {
	memray-record -q -f -o k.bin "$PY" "$PYDIR/callback.py" &&
	expect_pystack k.bin 555556 "<module> callback.py:10
key callback.py:2" &&
	expect_pystack k.bin 555557 "<module> callback.py:11
via_map callback.py:7"
}

@test "C code calling back into Python: sorted(key=...) and map" {
	on_every_python callback
}

recursion() {
	memray-record -q -f -o r.bin "$PY" "$PYDIR/recursion.py" 990 || return 1
	local s n
	s=$(pystack_of r.bin "\$6 == \"size=$(pysz 666667)\"")
	n=$(echo "$s" | grep -c "^down recursion.py:")
	[ "$n" = 991 ] || { echo "$n down frames"; return 1; }
	[ "$(echo "$s" | head -1)" = "<module> recursion.py:10" ] &&
	[ "$(echo "$s" | tail -1)" = "down recursion.py:6" ] &&
	[ "$(echo "$s" | sed -n 3p)" = "down recursion.py:7" ]
}

@test "deep recursion: 990 levels give 991 frames with the right lines" {
	on_every_python recursion
}

# Stacks deeper than the 2048 Python frames kept: the innermost kept
# under a label, exactly from 2049 frames on, said once by the readers.
cut_stacks() {
	cat > cut.py <<'PY'
import sys
sys.setrecursionlimit(10000)
def down(n, size):
    if n == 0:
        return bytearray(size)
    return down(n - 1, size)
keep = [down(2046, 111110), down(2047, 222221), down(2999, 333332), down(10, 444443)]
PY
	memray-record -q -f -o cut.bin "$PY" cut.py || return 1
	local s label="[stack cut: deeper than 2048 Python frames] :0"
	s=$(pystack_of cut.bin "\$6 == \"size=$(pysz 111111)\"")
	[ "$(echo "$s" | wc -l)" = 2048 ] || { echo "2048 frames: $(echo "$s" | wc -l)"; return 1; }
	[ "$(echo "$s" | head -1)" = "<module> cut.py:7" ] || { echo "2048 frames: $(echo "$s" | head -1)"; return 1; }
	for sz in 222222 333333; do
		s=$(pystack_of cut.bin "\$6 == \"size=$(pysz $sz)\"")
		[ "$(echo "$s" | wc -l)" = 2049 ] || { echo "$sz: $(echo "$s" | wc -l) lines"; return 1; }
		[ "$(echo "$s" | head -1)" = "$label" ] || { echo "$sz: $(echo "$s" | head -1)"; return 1; }
		[ "$(echo "$s" | sed -n 2p)" = "down cut.py:6" ] || { echo "$sz: $(echo "$s" | sed -n 2p)"; return 1; }
		[ "$(echo "$s" | tail -1)" = "down cut.py:5" ] || { echo "$sz: $(echo "$s" | tail -1)"; return 1; }
	done
	s=$(pystack_of cut.bin "\$6 == \"size=$(pysz 444444)\"")
	[ "$(echo "$s" | head -1)" = "<module> cut.py:7" ] || { echo "after: $(echo "$s" | head -1)"; return 1; }
	memray-fold cut.bin > cut.folded 2> cut.err || return 1
	[ "$(grep -c "stacks deeper than the tracker keeps" cut.err)" = 1 ] || { cat cut.err; return 1; }
	[ "$(grep -c '^\[stack cut: deeper than 2048 Python frames\];down ([^;]*cut.py:6);' cut.folded)" -ge 1 ] || return 1
	# with native frames too, the label is the root of the merged stack
	# (3.9 and 3.10 run the evaluation loop in C frames for each call:
	# their native stack is cut first, at 256 frames)
	memray-record -q -f --native -o cutn.bin "$PY" cut.py || return 1
	memray-fold -m total cutn.bin > cutn.folded 2> cutn.err || return 1
	grep -q "stacks deeper than the tracker keeps" cutn.err || { cat cutn.err; return 1; }
	grep -Eq '^\[stack cut: deeper than (2048 Python|256 native) frames\];' cutn.folded || return 1
	# (a native stack cut keeps every Python frame, put at the root)
	! grep '^\[stack cut: deeper than 2048 Python' cutn.folded | grep -q 'cut.py:7)' ||
		{ echo "--native: a stack cut has its Python root"; return 1; }
	grep -v '^\[stack cut' cutn.folded | grep -q 'cut.py:7);' || { echo "--native: no whole stack"; return 1; }
}

@test "Python stacks deeper than 2048 frames: the innermost 2048 under a [stack cut] label, from 2049 frames on exactly, and the readers say so" {
	on_every_python cut_stacks
}

modules() {
	cd "$PYDIR" &&
	memray-record -q -f -o "$BATS_TEST_TMPDIR/m.bin" "$PY" -m modmain &&
	cd "$BATS_TEST_TMPDIR" &&
	local s
	s=$(pystack_of m.bin "\$6 == \"size=$(pysz 777778)\"")
	echo "$s" | head -1 | grep -Eq "_run_module_as_main (runpy.py|<frozen runpy>):" &&
	echo "$s" | tail -2 | tr '\n' '|' | grep -qx "<module> modmain.py:6|main modmain.py:2|" ||
		{ echo "-m: $s"; return 1; }
	memray-record -q -f -o c.bin "$PY" -c 'def f():
    return bytearray(888888)
f()' &&
	expect_pystack c.bin 888889 "<module> <string>:3
f <string>:2"
}

@test "python3 -m module and python3 -c" {
	on_every_python modules
}

@test "a repeated stack costs a few bytes: 10000 allocations at one line" {
	cat > loop.py <<'PY'
keep = []
for i in range(10000):
    keep.append(bytearray(1000))
PY
	memray-record -q -o l.bin /usr/bin/python3 loop.py
	n=$(dump l.bin | awk "\$3 == \"alloc\" && \$6 == \"size=$(pysz 1001)\"" | wc -l)
	[ "$n" = 10000 ]
	# the stack is interned once: every event names the same node
	[ "$(dump l.bin | awk "\$3 == \"alloc\" && \$6 == \"size=$(pysz 1001)\"" | field stack | sort -u | wc -l)" = 1 ]
}

@test "numpy.ones(10**7) shows 80 MB at that line" {
	/usr/bin/python3 -c "import numpy" 2>/dev/null || skip "python3-numpy is not installed"
	memray-record -q -o n.bin /usr/bin/python3 "$PYDIR/numpy_ones.py"
	s=$(pystack_of n.bin '$3 == "alloc" && $6 == "size=80000000"')
	[ "$(echo "$s" | head -1)" = "<module> numpy_ones.py:3" ]
	echo "$s" | tail -1 | grep -q "^ones numeric.py:"
}

small_objects() {
	printf 'def make():\n    return [object() for i in range(5000)]\nkeep = make()\n' > small.py
	memray-record -q -f -o p.bin "$PY" small.py &&
	memray-record -q -f -o t.bin --trace-python-allocators "$PY" small.py || return 1
	dump p.bin | head -1 | grep -q "flags=python,pymalloc " || return 1
	dump t.bin | head -1 | grep -q "flags=python,python-allocators " || return 1
	# with the system allocator each of the 5000 objects is an event at that line
	local n
	n=$(memray-stat --dump t.bin | awk '$3 == "alloc" && $6 == "size=16"' | wc -l)
	[ "$n" -ge 5000 ] || { echo "$n objects of 16 bytes"; return 1; }
	pystack_of t.bin '$3 == "alloc" && $6 == "size=16"' >/dev/null
	local line
	line=$(memray-stat --dump t.bin | awk '$3 == "alloc" && $6 == "size=16"' | field stack | sort | uniq -c | sort -rn | head -1 | awk '{print $2}')
	pystack t.bin "$line" | grep -Eq "^(make\.<locals>\.)?<listcomp> small.py:2$|^make small.py:2$" ||
		{ pystack t.bin "$line"; return 1; }
}

@test "--trace-python-allocators shows every object; without it the stream says pymalloc hid them" {
	on_every_python small_objects
}

names() {
	memray-record -q -f -o n.bin "$PY" "$PYDIR/names.py" || return 1
	run_names=$(dump n.bin | awk '$3 == "thread" || $3 == "thread_name"' | cut -d' ' -f3- | tr '\n' '|')
	echo "$run_names" | grep -q 'thread_name id=1 name="MainThread"' &&
	echo "$run_names" | grep -q 'thread id=2 tid=[0-9]* name="worker-A"|thread_name id=2 name="renamed-inside"|thread_name id=2 name="renamed-outside"' ||
		{ echo "$run_names"; return 1; }
	# each allocation comes after the name it was made under
	dump n.bin | awk -v s1="$(pysz 101011)" -v s2="$(pysz 101012)" -v s3="$(pysz 101013)" '
		$3 == "thread" && $4 == "id=2" { name = $6 }
		$3 == "thread_name" && $4 == "id=2" { name = $5 }
		$3 == "alloc" && $6 == "size=" s1 { a = name }
		$3 == "alloc" && $6 == "size=" s2 { b = name }
		$3 == "alloc" && $6 == "size=" s3 { c = name }
		END { exit !(a == "name=\"worker-A\"" && b == "name=\"renamed-inside\"" &&
			c == "name=\"renamed-outside\"") }'
}

@test "thread names follow threading.Thread.name: at start, renamed inside, renamed from outside" {
	on_every_python names
}

# thread_start_names MODE NAME...: 50 recordings of thread_start.py MODE,
# each piped into memray-stat --dump as a user would; in every one the
# main thread is MainThread and each NAME is the name of its thread before
# the thread's first allocation.
thread_start_names() {
	local mode=$1 i
	shift
	for i in $(seq 50); do
		memray-record -q -o - "$PY" "$PYDIR/thread_start.py" "$mode" | memray-stat --dump > d.txt
		local ps="${PIPESTATUS[*]}"
		[ "$ps" = "0 0" ] || { echo "run $i: exit $ps"; return 1; }
		awk -v want="$*" '
			function setname(id, n) { gsub(/^name="|"$/, "", n); name[id] = n }
			$3 == "thread" { split($4, a, "="); setname(a[2], $6) }
			$3 == "thread_name" { split($4, a, "="); setname(a[2], $5) }
			$3 == "alloc" { for (i = 4; i <= NF; i++) if ($i ~ /^thread=/) {
				t = substr($i, 8); if (!(t in first)) first[t] = name[t] } }
			END {
				if (name[1] != "MainThread") { print "main thread: " name[1]; bad = 1 }
				n = split(want, w, " ")
				for (k = 1; k <= n; k++) {
					hit = 0
					for (t in first) if (first[t] == w[k]) hit = 1
					if (!hit) { print w[k] " was not the name at a first allocation"; bad = 1 }
				}
				exit bad }' d.txt || { echo "run $i with $PY"; awk '$3 == "thread" || $3 == "thread_name"' d.txt; return 1; }
	done
	memray-record -q -f -o t.bin "$PY" "$PYDIR/thread_start.py" "$mode" &&
	memray-fold --by-thread -m total t.bin > t.folded || return 1
	for i in "$@" MainThread; do
		grep -q "^$i (thread [0-9]*);" t.folded || { echo "--by-thread lacks $i"; return 1; }
	done
}

@test "a thread started at once, with no pause, is named from its first allocation: 50 runs on every Python" {
	on_every_python thread_start_names once only-worker
}

@test "four threads started at once keep their names: 50 runs on every Python" {
	on_every_python thread_start_names growers grower-0 grower-1 grower-2 grower-3
}

ctrl_c() {
	local st=0
	timeout -s INT 1.5 memray-record -f -o int.bin "$PY" "$PYDIR/server.py" > out.txt 2> err.txt || st=$?
	# timeout's own status when it had to send the signal
	[ "$st" = 124 ] || { echo "exit $st"; cat err.txt; return 1; }
	grep -q KeyboardInterrupt err.txt &&
	grep -q "ended by signal 2 (SIGINT); the stream is complete" err.txt || { cat err.txt; return 1; }
	memray-stat int.bin > stat.txt || { echo "memray-stat exits $?"; return 1; }
	grep -q "^ended by: *signal 2 (SIGINT)$" stat.txt || { cat stat.txt; return 1; }
	memray-fold int.bin | grep -q "server.py:" || return 1
	local term=0
	timeout -s TERM 1 memray-record -q -f -o term.bin "$PY" "$PYDIR/server.py" > /dev/null 2>&1 || term=$?
	[ "$term" = 124 ] && memray-stat term.bin | grep -q "^ended by: *signal 15 (SIGTERM)$"
}

@test "Ctrl-C on a server (timeout -s INT 1.5 memray-record ...): a complete stream that says SIGINT ended it, on every Python; SIGTERM too" {
	on_every_python ctrl_c
}

pool_workers() {
	local i
	for i in 1 2 3 4 5; do
		memray-record -q --follow-fork -f -o pool.bin "$PY" "$PYDIR/pool.py" > out.txt || return 1
		grep -q '^4950000$' out.txt || return 1
		memray-stat --max-peak 1G pool.bin > stat.txt 2> err.txt || {
			echo "run $i: exit $?"; cat err.txt
			mkdir -p "$MEMRAY_BUILD/test-output" && cp pool.bin "$MEMRAY_BUILD/test-output/pool-failed.bin"
			return 1
		}
		[ ! -s err.txt ] || { cat err.txt; return 1; }
	done
	memray-record -q --follow-fork -f -o busy.bin "$PY" "$PYDIR/pool.py" busy > out.txt || return 1
	grep -q '^terminated$' out.txt &&
	memray-stat busy.bin > stat.txt || { echo "busy: memray-stat exits $?"; return 1; }
	[ "$(grep -c '(ended by SIGTERM)$' stat.txt)" = 2 ] || { cat stat.txt; return 1; }
	# what each worker allocated in its task is there, up to the signal
	memray-fold -m leaked busy.bin | grep -q "busy (.*pool.py:14) [0-9]*$" ||
		{ memray-fold -m leaked busy.bin | grep busy; return 1; }
}

@test "multiprocessing.Pool's workers, ended by SIGTERM from their pool, leave complete streams: memray-stat exits 0" {
	on_every_python pool_workers
}

no_frame_labels() {
	memray-record -q -f -o l.bin "$PY" "$PYDIR/thread_start.py" once || return 1
	memray-fold -m total l.bin > l.folded
	grep -q '^\[Python start-up\] [0-9]*$' l.folded &&
	grep -q '^\[Python shutdown\] [0-9]*$' l.folded || { grep '^\[' l.folded; return 1; }
	! grep -q '\[unknown\]' l.folded || { grep '\[unknown\]' l.folded; return 1; }
	# 3.11+ gives a new thread its frame stack before its first frame
	if "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
		grep -q '^\[thread start-up\] [0-9]*$' l.folded || { grep '^\[' l.folded; return 1; }
	fi
	# with native stacks the same events have their C frames
	memray-record -q -f --native -o n.bin "$PY" "$PYDIR/thread_start.py" once &&
	! memray-fold -m total n.bin | grep -q '^\[[A-Za-z -]*\] ' || false
}

@test "allocations with no Python frame say why: [Python start-up], [Python shutdown], [thread start-up]; none is [unknown]" {
	on_every_python no_frame_labels
}

subinterp_threads() {
	memray-record -q -f -o s.bin "$PY" "$PYDIR/subinterp_threads.py" > out.txt || return 1
	grep -q '^ok$' out.txt || return 1
	local i
	for i in 0 1 2; do
		dump s.bin | grep -q "thread id=[0-9]* tid=[0-9]* name=\"main-worker-$i\"" ||
			{ dump s.bin | awk '$3 == "thread" || $3 == "thread_name"'; return 1; }
	done
}

@test "a sub-interpreter, then C code starting a thread with the GIL released: no crash, and the main interpreter's threads keep their names" {
	on_every_python subinterp_threads
}

interrupted_starts() {
	local out
	local st=0
	out=$(memray-record -q -f -o i.bin "$PY" "$PYDIR/interrupt_start.py" 150 2> err.txt) ||
		{ st=$?; echo "exit $st: $out"; tail -5 err.txt; return 1; }
	echo "$out" | grep -Eq '^raised ([1-9][0-9]*) caught \1$' || { echo "$out"; return 1; }
}

@test "exceptions that signal handlers raise while threads start all reach the program" {
	on_every_python interrupted_starts
}

same_output() {
	local plain=0 recorded=0
	"$PY" "$PYDIR/same_output.py" > plain.out 2> plain.err || plain=$?
	memray-record -q -f -o s.bin "$PY" "$PYDIR/same_output.py" > rec.out 2> rec.err || recorded=$?
	[ "$plain" = "$recorded" ]
	[ "$plain" = 1 ]
	cmp plain.out rec.out
	cmp plain.err rec.err
}

@test "the program's output, exceptions and exit status are the same with and without recording" {
	on_every_python same_output
}

stdlib_jobs() {
	local d=$BATS_TEST_TMPDIR/job
	rm -rf "$d"; mkdir -p "$d"
	printf 'import unittest\nclass T(unittest.TestCase):\n    def test_ok(self):\n        self.assertEqual(sum([1, 2]), 3)\n    def test_fail(self):\n        self.assertEqual(1, 2)\n' > "$d/test_small.py"
	printf '{"b": [1, 2, {"c": null}], "a": "\\u00e9"}\n' > "$d/in.json"
	local st1=0 st2=0
	(cd "$d" && "$PY" -m unittest test_small) > u1.out 2>&1 || st1=$?
	(cd "$d" && memray-record -q -f -o "$BATS_TEST_TMPDIR/u.bin" "$PY" -m unittest test_small) > u2.out 2>&1 || st2=$?
	[ "$st1" = 1 ] && [ "$st2" = 1 ] || { echo "unittest: $st1 $st2"; return 1; }
	diff <(sed 's/[0-9.]*s$//' u1.out) <(sed 's/[0-9.]*s$//' u2.out) || return 1
	"$PY" -m json.tool --sort-keys "$d/in.json" > j1.out &&
	memray-record -q -f -o j.bin "$PY" -m json.tool --sort-keys "$d/in.json" > j2.out &&
	cmp j1.out j2.out || return 1
	cp -r "$PYDIR" "$d/pkg1" && cp -r "$PYDIR" "$d/pkg2"
	"$PY" -m compileall -q "$d/pkg1" > c1.out 2>&1 &&
	memray-record -q -f -o c.bin "$PY" -m compileall -q "$d/pkg2" > c2.out 2>&1 &&
	cmp c1.out c2.out &&
	[ "$(ls "$d/pkg1/__pycache__" | wc -l)" = "$(ls "$d/pkg2/__pycache__" | wc -l)" ] &&
	memray-stat c.bin > /dev/null
}

@test "stdlib jobs behave the same under recording: unittest, json.tool, compileall" {
	on_every_python stdlib_jobs
}

profiled() {
	local want
	want=$("$PY" "$PYDIR/profiled.py") &&
	[ "$want" = "setprofile saw 1 call
cProfile saw 1 function" ] &&
	[ "$(memray-record -q -f -o p.bin "$PY" "$PYDIR/profiled.py")" = "$want" ] &&
	# frames are read from the interpreter, so the program's own profiler
	# takes nothing away from the recorded stacks
	expect_pystack p.bin 1000000 "<module> profiled.py:18
target profiled.py:14"
}

@test "a program that installs its own profiler works as without recording, and stacks stay complete" {
	on_every_python profiled
}

rawthreads() {
	memray-record -q -f -o r.bin "$PY" "$PYDIR/rawthreads.py" &&
	expect_pystack r.bin 121213 "raw rawthreads.py:11" &&
	expect_pystack r.bin 131314 "from_c rawthreads.py:23" || return 1
	local t1 t2
	t1=$(dump r.bin | awk "\$3 == \"alloc\" && \$6 == \"size=$(pysz 121213)\"" | field thread)
	t2=$(dump r.bin | awk "\$3 == \"alloc\" && \$6 == \"size=$(pysz 131314)\"" | field thread)
	[ -n "$t1" ]
	[ -n "$t2" ]
	[ "$t1" != 1 ]
	[ "$t2" != 1 ]
	[ "$t1" != "$t2" ]
}

@test "raw _thread threads and a thread started from C (pthread_create through ctypes) carry their own threads and stacks" {
	on_every_python rawthreads
}

# malloc_chains FILE: for each distinct stack of a malloc in FILE, its
# frames leaf first, one line per stack, separated by "|": "py NAME
# FILE:LINE" or "native 0xIP"
malloc_chains() {
	memray-stat --dump "$1" | awk '
		function val(f) { sub(/^[a-z_]+=/, "", f); return f }
		$3 == "string" { id = val($4); str = substr($0, index($0, "\"") + 1); sub(/"$/, "", str); S[id] = str }
		$3 == "pyframe" { id = val($4); n = split(S[val($6)], p, "/"); FR[id] = S[val($5)] " " p[n] ":" val($7) }
		$3 == "pynode" { id = val($4); P[id] = val($5); K[id] = "py " FR[val($6)] }
		$3 == "node" { id = val($4); P[id] = val($5); K[id] = "native " val($6) }
		$3 == "alloc" && $4 == "malloc" { for (i = 5; i <= NF; i++) if ($i ~ /^stack=/) W[val($i)] = 1 }
		END {
			for (s in W) {
				line = ""
				for (t = s; t != 0 && t != ""; t = P[t])
					line = line (line == "" ? "" : "|") K[t]
				print line
			}
		}'
}

hybrid() {
	memray-record -q -f --native -o h.bin "$PY" "$PYDIR/hybrid.py" || return 1
	dump h.bin | head -1 | grep -q "flags=native,python," || return 1
	# the allocation deflateInit2_ makes for zlib.compressobj() at make():4:
	# the first Python frame from the leaf is make's, the leaf is in libz
	local chain frames=""
	while read -r chain; do
		echo "$chain" | tr '|' '\n' | grep -m1 "^py " | grep -qx "py make hybrid.py:4" || continue
		chain=$(echo "$chain" | tr '|' '\n')
		if symbolize h.bin "$(echo "$chain" | head -1 | sed 's/^native //')" | grep -q libz.so; then
			frames=$chain
			break
		fi
	done < <(malloc_chains h.bin)
	[ -n "$frames" ] || { echo "no allocation under make()"; return 1; }
	# the program's start stays at the root, under every Python frame
	# (on stripped interpreters too, whose loop no symbol covers)
	local lines
	lines=$(memray-fold h.bin | grep 'hybrid.py:4)') || { echo "no folded line for make()"; return 1; }
	if echo "$lines" | grep -v '^\(_start\|__libc_start_[a-z_]*\) ('; then
		echo "these do not start at the program's start (with $PY)"
		return 1
	fi
	# Python frames in order, root first, with native frames below make()
	[ "$(echo "$frames" | grep '^py ' | tac | tr '\n' '|')" = "py <module> hybrid.py:9|py outer hybrid.py:7|py make hybrid.py:4|" ] ||
		{ echo "$frames"; return 1; }
	local leaf
	leaf=$(echo "$frames" | head -1)
	[ "${leaf%% *}" = native ] || { echo "leaf: $leaf"; return 1; }
	symbolize h.bin "${leaf#native }" | grep -q "libz.so" ||
		{ echo "leaf $(symbolize h.bin "${leaf#native }")"; return 1; }
	# and the zlib module's native frame at least in between (3.14 calls it
	# straight from the loop)
	# (named only where the module's binary has a symbol table: not in
	# Debian's interpreters, which build zlib in and are stripped)
	[ "$(echo "$frames" | sed '/^py make/q' | grep -c '^native')" -ge 2 ] || { echo "$frames"; return 1; }
	local zbin
	zbin=$("$PY" -c 'import sys, zlib; print(getattr(zlib, "__file__", None) or sys.executable)')
	if readelf -S "$(readlink -f "$zbin")" | grep -q ' \.symtab'; then
		symbolize h.bin $(echo "$frames" | sed '/^py make/q' | grep '^native' | sed 's/^native //') |
			grep -q "^zlib_compressobj"
	fi
}

@test "--native on Python: hybrid stacks with Python frames where the evaluation loop ran" {
	on_every_python hybrid
}

cache_traps() {
	memray-record -q -f --follow-fork -o c.bin "$PY" "$PYDIR/cache_traps.py" 200 > out.txt || return 1
	grep -qx done out.txt || return 1
	memray-stat --dump c.bin > c.dump || return 1
	# bytearray(n) allocates n + 1 bytes (n + 33 from 3.15 on)
	python3 "$PYDIR/cache_traps_check.py" c.dump $(( $(pysz 77702) - 77701 )) "$PYDIR/cache_traps.py"
}

@test "the stack cache is exact: a frame reused by another call, a caller that moved on, a generator resumed from two callers, a frame put between unchanged ones, a code object where a freed one was, threads, a forked child" {
	on_every_python cache_traps
}

grow_deep() {
	local extra=$(( $(pysz 100001) - 100000 ))
	for nat in "" --native; do
		memray-record -q -f $nat -o g.bin "$PY" "$PYDIR/grow_deep.py" || return 1
		memray-fold -m total g.bin | python3 "$PYDIR/grow_deep_check.py" "$extra" || return 1
	done
}

@test "a stack that grows a level at a time past the 2048 frames kept is cut there, never written past them" {
	on_every_python grow_deep
}

# the same with hybrid stacks (--native), whose cache also keeps where
# each run of the evaluation loop begins
cache_traps_native() {
	memray-record -q -f --native --follow-fork -o c.bin "$PY" "$PYDIR/cache_traps.py" 200 > out.txt || return 1
	grep -qx done out.txt || return 1
	memray-stat --dump c.bin > c.dump || return 1
	python3 "$PYDIR/cache_traps_check.py" c.dump $(( $(pysz 77702) - 77701 )) "$PYDIR/cache_traps.py" --native
}

@test "--native: the hybrid stack cache is exact, also for a function entered from C where it was entered from Python" {
	on_every_python cache_traps_native
}

# the tracker's own unwinder against libunwind on every stack of a
# --native run (MEMRAY_UNWIND=check unwinds both ways; each process says
# how many stacks it unwound and how many differed)
unwind_check() {
	MEMRAY_UNWIND=check memray-record -q -f --native --follow-fork -o u.bin "$PY" \
		"$PYDIR/cache_traps.py" 200 > out.txt 2> err.txt || return 1
	grep -qx done out.txt || return 1
	grep "unwind check" err.txt | tee lines.txt
	[ "$(wc -l < lines.txt)" -ge 2 ] || return 1 # the program and its forked child
	! grep -v " 0 differed from libunwind's" lines.txt || return 1
	awk '{ n += $4 } END { exit !(n > 1000) }' lines.txt
}

@test "--native: the tracker's own unwinder finds libunwind's stacks, every one, on every CPython" {
	on_every_python unwind_check
}
