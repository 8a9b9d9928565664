#!/usr/bin/env bats
# The stream's order of events is one that really happened.

load helper

# replay FILE: checks that no address is allocated twice without a free
# between, and prints the live addresses of 3000-3999 byte blocks at the end.
replay() {
	memray-stat --dump "$1" | awk '
	function addr(f) { sub(/^[a-z_]+=/, "", f); return f }
	$3 == "header" { delete live }
	$3 == "alloc" && $4 != "mmap" {
		a = addr($5); if (a in live) { print "allocated twice: " a " at byte " $1; bad = 1 }
		live[a] = addr($6) + 0 }
	$3 == "free" && $4 != "munmap" { delete live[addr($5)] }
	$3 == "move" && $4 != "mremap" {
		delete live[addr($5)]; a = addr($6)
		if (a in live) { print "allocated twice: " a " at byte " $1; bad = 1 }
		live[a] = addr($7) + 0 }
	END {
		for (a in live) if (live[a] >= 3000 && live[a] < 4000) print a
		exit bad }'
}

@test "8 threads trading blocks: the replay never allocates a live address and ends with the program's live set" {
	memray-record -q -o pp.bin "$FIX/pingpong" > expected.raw
	sort expected.raw > expected.txt
	replay pp.bin | sort > replayed.txt
	[ "$(wc -l < expected.txt)" -gt 50 ]
	diff expected.txt replayed.txt
	run memray-stat pp.bin
	assert_success
	[ "$(dump pp.bin | awk '$3 == "thread"' | wc -l)" -ge 9 ]
}

@test "a signal handler that maps memory while the tracker is busy neither deadlocks nor corrupts the stream" {
	run timeout 60 memray-record -q -o sig.bin "$FIX/sigalloc"
	assert_success
	handled=$output
	[ "$handled" -gt 100 ]
	run memray-stat sig.bin
	assert_success
	replay sig.bin > /dev/null
	maps=$(dump sig.bin | awk '$4 == "mmap" && $6 == "size=4096"' | wc -l)
	[ "$maps" -le "$handled" ]
	[ "$maps" -gt 0 ]
}
