#!/usr/bin/env bats
# Native stacks, threads, modules and memory records.

load helper

alloc_stack() { # FILE ALLOCATOR SIZE: the stack id of that event
	dump "$1" | awk -v a="$2" -v s="size=$3" '$3 == "alloc" && $4 == a && $6 == s' | field stack
}

@test "a native chain main -> a -> b -> c -> valloc is recorded with those return addresses" {
	memray-record -q -o c.bin "$FIX/allocs" chain > /dev/null
	s=$(alloc_stack c.bin valloc 984)
	run bash -c "$(declare -f symbolize stack_ips); symbolize c.bin \$(stack_ips c.bin $s) | head -4"
	assert_output "chain_c allocs
chain_b allocs
chain_a allocs
main allocs"
}

# kept_apart MODE SHARED STACK1 TOTAL1 STACK2 TOTAL2: the allocs fixture's
# MODE allocates from two stacks in turn, each ending in the frames STACK1
# or STACK2 (a pattern, ';'-separated), with a frame SHARED in both: each
# stack's total is its own, and there are just those two
kept_apart() {
	memray-record -q -o k.bin "$FIX/allocs" "$1" > /dev/null
	memray-fold -m total k.bin > k.folded
	grep -E ";$3 [^;]* $4$" k.folded
	grep -E ";$5 [^;]* $6$" k.folded
	[ "$(grep -c "$2" k.folded)" = 2 ]
}

@test "two call paths taken in turn into one allocating function keep their own stacks" {
	# (a thread keeps its last stacks: one is taken only if it is the same
	# whole, not only at its innermost frame)
	kept_apart paths paths_leaf "path_one [^;]*;paths_leaf" 1001000 "path_two [^;]*;paths_leaf" 1002000
}

@test "two allocating functions called in turn from one call site keep their own stacks" {
	# (the same callers, at the same return addresses: the stacks differ
	# in their innermost frame only)
	kept_apart leaves one_site "one_site [^;]*;leaf_x" 1003000 "one_site [^;]*;leaf_y" 1004000
}

@test "native stacks are on for native programs and off with --no-native" {
	memray-record -q -o on.bin "$FIX/allocs" chain > /dev/null
	dump on.bin | head -1 | grep -q "flags=native"
	s=$(alloc_stack on.bin valloc 984)
	[ -n "$s" ]
	[ "$s" != 0 ]
	memray-record -q --no-native -o off.bin "$FIX/allocs" chain > /dev/null
	dump off.bin | head -1 | grep -q "flags=none"
	[ "$(alloc_stack off.bin valloc 984)" = 0 ]
	! dump off.bin | grep -q " node " || false
}

@test "a repeated stack is interned once" {
	memray-record -q -o demo.bin "$FIX/demo" > /dev/null
	nodes=$(dump demo.bin | grep -c " node ")
	allocs=$(dump demo.bin | grep -c " alloc ")
	[ "$allocs" -gt 10000 ]
	[ "$nodes" -lt 200 ]
}

@test "a pthread's allocations carry its thread, whose name follows prctl and pthread_setname_np" {
	memray-record -q -o t.bin "$FIX/allocs" thread > /dev/null
	main_tid=$(dump t.bin | head -1 | field pid)
	run bash -c "memray-stat --dump t.bin | awk '\$3 == \"thread\" || \$3 == \"thread_name\"' | cut -d' ' -f3-"
	assert_line --regexp '^thread id=1 tid='"$main_tid"' name="allocs"$'
	assert_line --regexp '^thread id=2 tid=[0-9]+ name="worker-one"$'
	assert_line 'thread_name id=2 name="worker-two"'
	t1=$(dump t.bin | awk '$3 == "alloc" && $4 == "valloc" && $6 == "size=984"' | field thread)
	t2=$(dump t.bin | awk '$3 == "alloc" && $4 == "valloc" && $6 == "size=985"' | field thread)
	[ "$t1" = 2 ]
	[ "$t2" = 2 ]
	tid=$(dump t.bin | awk '$3 == "thread" && $4 == "id=2"' | field tid)
	[ "$tid" != "$main_tid" ]
	# libunwind's own cache, unmapped when the thread exits, is not the program's
	! dump t.bin | grep -q " munmap " || false
}

@test "a thread renamed by another thread gets a thread_name record" {
	memray-record -q -o o.bin "$FIX/allocs" rename-other > /dev/null
	dump o.bin | grep -E ' thread(_name)? id=2 .*name="renamed-outside"'
	[ "$(dump o.bin | awk '$4 == "valloc" && $6 == "size=986"' | field thread)" = 2 ]
}

@test "a library loaded with dlopen: the allocation's return address falls in its recorded map entry" {
	memray-record -q -o d.bin "$FIX/allocs" dlopen "$FIX/libdlopened.so" > /dev/null
	s=$(alloc_stack d.bin valloc 984)
	leaf=$(stack_ips d.bin "$s" | head -1)
	line=$(dump d.bin | grep ' module .*libdlopened.so"')
	base=$(echo "$line" | field base)
	segs=$(echo "$line" | field segments)
	found=0
	for seg in ${segs//,/ }; do
		v=${seg%%+*}; rest=${seg#*+}; len=${rest%%:*}; perm=${rest#*:}
		[[ $perm == *x ]] || continue
		(( leaf >= base + v && leaf < base + v + len )) && found=1
	done
	[ "$found" = 1 ]
	# the module record comes before the event, and is unloaded by dlclose
	mod_off=$(echo "$line" | cut -d' ' -f1)
	ev_off=$(dump d.bin | awk '$4 == "valloc" && $6 == "size=984"' | cut -d' ' -f1)
	[ "$mod_off" -lt "$ev_off" ]
	id=$(echo "$line" | field id)
	dump d.bin | grep -q " unload id=$id$"
	run bash -c "$(declare -f symbolize stack_ips); symbolize d.bin $leaf"
	assert_output "dlopened_alloc libdlopened.so"
}

# MEMRAY_UNWIND=check: each stack unwound by the tracker's own unwinder
# and by libunwind; at its end each process says "N stacks unwound, D
# differed from libunwind's, L left to libunwind"
unwind_line() { # FILE: the check's numbers, "N D L", of each process
	grep -a "memray-c: unwind check:" "$1" | awk '{ print $4, $7, $11 }'
}

@test "the tracker's own unwinder finds libunwind's stacks: C, C++, threads, dlopen, fork, gcc; a signal handler's are left to libunwind" {
	export MEMRAY_UNWIND=check
	memray-record -q -f -o a.bin "$FIX/allocs" chain > /dev/null 2> chain.err
	memray-record -q -f -o a.bin "$FIX/allocs" thread > /dev/null 2> thread.err
	memray-record -q -f -o a.bin "$FIX/allocs" dlopen "$FIX/libdlopened.so" > /dev/null 2> dlopen.err
	# deeper than the 256 frames a stack keeps: cut where libunwind cuts it
	memray-record -q -f -o a.bin "$FIX/allocs" deep 400 > /dev/null 2> deep.err
	memray-record -q -f --follow-fork -o a.bin "$FIX/allocs" forkthreads > /dev/null 2> fork.err
	memray-record -q -f -o a.bin "$FIX/cxx_new" > /dev/null 2> cxx.err
	memray-record -q -f -o a.bin "$FIX/demo" > /dev/null 2> demo.err
	memray-record -q -f --follow-fork -o a.bin gcc -O2 -c "$BATS_TEST_DIRNAME/../fixtures/allocs.c" -o allocs.o 2> gcc.err
	for f in chain thread dlopen deep fork cxx demo gcc; do
		unwind_line $f.err > $f.n
		echo "$f: $(cat $f.n | tr '\n' ' ')"
		[ -s $f.n ]
		awk '$1 < 1 || $2 != 0 || $3 != 0 { exit 1 }' $f.n
	done
	[ "$(wc -l < fork.n)" -ge 2 ] # the children said it too
	[ "$(wc -l < gcc.n)" -ge 3 ]  # gcc, cc1, as
	awk '{ n += $1 } END { exit !(n > 10000) }' gcc.n
	# a signal frame: what it is not sure of goes to libunwind, still the same
	memray-record -q -f -o s.bin "$FIX/sigalloc" > /dev/null 2> sig.err
	unwind_line sig.err > sig.n
	cat sig.n
	awk '$1 < 1000 || $2 != 0 || $3 < 1 { exit 1 }' sig.n
}

@test "native stacks deeper than 256 frames: the innermost kept under a [stack cut] label, said once by the readers; shallower ones whole" {
	for unwind in "" libunwind; do
		MEMRAY_UNWIND=$unwind memray-record -q -f -o deep.bin "$FIX/allocs" deep 400 > /dev/null
		memray-fold deep.bin > deep.folded 2> deep.err
		[ "$(grep -c "stacks deeper than the tracker keeps" deep.err)" = 1 ]
		# the deepest stacks: the label, then deep() frames only
		grep '^\[stack cut: deeper than 256 native frames\];deep (allocs.c:105);deep (allocs.c:105);' deep.folded > cut.txt
		[ -s cut.txt ]
		awk -F';' 'NF > 257 { exit 1 }' cut.txt
		! grep -q '_start\|main (allocs' cut.txt || false
		# the shallower ones (the allocations on the way back) whole
		grep -v '^#' deep.folded | grep -v '^\[stack cut' | grep -q '^_start (allocs);__libc_start_main'
		run memray-stat deep.bin
		assert_success
		assert_output --partial "stacks deeper than the tracker keeps"
	done
	memray-record -q -f -o shallow.bin "$FIX/allocs" deep 200 > /dev/null
	run memray-fold shallow.bin
	assert_success
	refute_output --partial "stack cut"
}

@test "MEMRAY_UNWIND=libunwind records the stacks the tracker's own unwinder does" {
	memray-record -q -f -o own.bin "$FIX/demo" > /dev/null
	MEMRAY_UNWIND=libunwind memray-record -q -f -o lib.bin "$FIX/demo" > /dev/null
	memray-fold -m total --no-source own.bin > own.folded
	memray-fold -m total --no-source lib.bin > lib.folded
	[ "$(grep -vc '^#' own.folded)" -gt 3 ]
	diff <(grep -v '^# \(pid\|duration_ms\|peak_rss\|timeline\|thread\)=' own.folded) \
	     <(grep -v '^# \(pid\|duration_ms\|peak_rss\|timeline\|thread\)=' lib.folded)
}

@test "modules carry build-ids that match the files" {
	memray-record -q -o b.bin "$FIX/allocs" none
	id=$(dump b.bin | grep " module .*fixtures/allocs\"" | field build_id)
	[ -n "$id" ]
	readelf -n "$FIX/allocs" | grep -qx " *Build ID: $id"
}

@test "memory records: RSS above 0, heap at least 984, times increasing about an interval apart" {
	memray-record -q --interval 20 -o s.bin "$FIX/allocs" sleep 1 > /dev/null
	run bash -c "memray-stat --dump s.bin | awk '\$3 == \"memory\"'"
	n=${#lines[@]}
	[ "$n" -ge 20 ]
	[ "$n" -le 70 ]
	echo "$output" | awk '{ split($4, t, "="); split($5, r, "="); split($6, h, "=")
		if (r[2] <= 0) exit 1
		if (NR > 1 && t[2] <= last) exit 2
		last = t[2]; if (h[2] >= 984) big = 1 }
		END { exit big ? 0 : 3 }'
	dump s.bin | head -1 | grep -q "interval_us=20000"
}

@test "no frame of the tracker's own in the stacks: its pthread_create is not the program's" {
	memray-record -q -f -o pp.bin "$FIX/pingpong" > /dev/null 2>&1
	memray-fold pp.bin > pp.folded
	grep -q 'main (pingpong.c:[0-9]*);allocate_stack' pp.folded
	! grep -q 'hooks.c\|libmemray-tracker' pp.folded || false
	memray-fold --format speedscope pp.bin > pp.json
	! grep -q 'hooks.c' pp.json || false
}
