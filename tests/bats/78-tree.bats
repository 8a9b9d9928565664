#!/usr/bin/env bats
# memray-tree: collapsed stacks or a stream to an indented tree.

load helper

@test "collapsed stacks from any tool become a tree with bytes and percent per node" {
	printf '# metric: total\nmain;a;b 600\nmain;a;c 300\nmain;d 100\nnot a stack line\n' > in.folded
	run memray-tree in.folded
	assert_success
	assert_output "memray-tree: in.folded: 1 malformed lines skipped
1000 B (100.0%) total total
\`-- 1000 B (100.0%) main
    |-- 900 B (90.0%) a
    |   |-- 600 B (60.0%) b
    |   \`-- 300 B (30.0%) c
    \`-- 100 B (10.0%) d"
}

@test "--depth, --min-percent, --biggest" {
	printf 'main;a;b 600\nmain;a;c 300\nmain;d 100\n' > in.folded
	run memray-tree --depth 1 in.folded
	assert_output "1000 B (100.0%) total
\`-- 1000 B (100.0%) main"
	run memray-tree --min-percent 20 in.folded
	refute_output --partial " d"
	assert_line --partial "300 B (30.0%) c"
	run memray-tree --biggest 1 in.folded
	refute_output --partial " c"
	refute_output --partial " d"
	assert_line --partial "600 B (60.0%) b"
}

@test "a stream goes straight in, folded at the peak" {
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	run memray-tree d.bin
	assert_success
	assert_line --index 0 --regexp '^[0-9.]+ (KiB|MiB) \(100.0%\) total peak$'
	assert_line --partial "fill_cache (demo.c:"
	cat d.bin | memray-tree --ascii - > piped.txt
	diff <(memray-tree d.bin) piped.txt
}

@test "box drawing and colour on a terminal, never with --ascii or NO_COLOR" {
	command -v script || skip "script(1) is missing"
	printf 'main;a 10\nmain;b 5\n' > in.folded
	script -qec "memray-tree in.folded" /dev/null > tty.txt
	grep -q '└── ' tty.txt
	grep -q $'\033\[1;33m' tty.txt
	script -qec "memray-tree --ascii in.folded" /dev/null > ascii.txt
	! grep -q '└── ' ascii.txt || false
	grep -q '`-- ' ascii.txt
	NO_COLOR=1 script -qec "memray-tree in.folded" /dev/null > nocolor.txt
	grep -q '└── ' nocolor.txt
	! grep -q $'\033' nocolor.txt || false
}

@test "--pid picks one process of a stream; it needs a stream and a pid that is there" {
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	memray-record -q -o c.bin "$FIX/allocs" chain > /dev/null
	cat c.bin d.bin > both.bin
	dpid=$(dump d.bin | head -1 | field pid)
	cpid=$(dump c.bin | head -1 | field pid)
	# chain ended before the demo began: its memory is given back, and
	# the peak is the demo's
	run memray-tree --min-percent 0 both.bin
	assert_line --partial "fill_cache (demo.c:"
	refute_line --partial "chain_"
	run memray-tree --min-percent 0 --pid "$dpid" both.bin
	assert_success
	assert_line --partial "fill_cache (demo.c:"
	refute_line --partial "chain_"
	run memray-tree --min-percent 0 -p "$cpid" both.bin
	assert_success
	refute_line --partial "fill_cache"
	assert_line --partial "chain_"
	run memray-tree --pid 1 both.bin
	assert_failure 2
	assert_output "memray-tree: no process 1 in the input"
	printf 'main;a 10\n' > in.folded
	run memray-tree --pid "$dpid" in.folded
	assert_failure 2
	assert_output "memray-tree: in.folded: --pid needs a memray stream, not collapsed stacks"
}

@test "bad options and unreadable input exit 2" {
	run memray-tree --depth x in.folded
	assert_failure 2
	run memray-tree --min-percent 200 x
	assert_failure 2
	run memray-tree no-such.folded
	assert_failure 2
	assert_output --partial "cannot open 'no-such.folded'"
}

@test "a stack 100,000 frames deep: drawn 1000 levels deep with a warning, without recursion; --depth 20000 draws that many (issue 19)" {
	python3 -c "print(';'.join('f%d' % i for i in range(100000)), 5)" > deep.folded
	run --separate-stderr timeout -k 5 60 memray-tree -a deep.folded
	assert_success
	[ "$stderr" = "memray-tree: stacks deeper than 1000 frames are drawn to that depth only (--depth N draws N)" ]
	[ "${#lines[@]}" -eq 1001 ]
	[[ "${lines[1000]}" == *"f999" ]]
	# 20,000 levels crashed on the recursion's stack before; in 256 MB now
	run bash -c "set -o pipefail; $(vlimit 262144) timeout -k 5 60 memray-tree -a --depth 20000 deep.folded | tail -1"
	assert_success
	[[ "$output" == *"5 B (100.0%) f19999" ]]
}

@test "counts (memray-fold -m count) are shown as counts; values past 2^64 and NaN are refused; inputs of different metrics are said" {
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	n=$(memray-stat d.bin | awk '$1 == "allocations:" { print $2 }')
	[ -n "$n" ]
	memray-fold -m count d.bin > count.folded
	run memray-tree count.folded
	assert_success
	assert_line --index 0 "$n (100.0%) total count"
	printf 'a;b 9999999999999999999\na;c 9999999999999999999\n' > big.folded
	run memray-tree big.folded
	assert_failure 2
	assert_output "memray-tree: big.folded: the values add up to more than 2^64: not a profile memray-tree can draw"
	for v in nan NaN inf -0.5 101; do
		run memray-tree -m "$v" d.bin
		assert_failure 2
		assert_output "memray-tree: invalid --min-percent '$v': expected 0 to 100"
	done
	memray-fold d.bin > peak.folded
	run memray-tree count.folded peak.folded
	assert_success
	assert_line --index 0 "memray-tree: inputs of different metrics (count, peak) are added together"
	run memray-tree count.folded d.bin
	assert_success
	assert_line --index 0 "memray-tree: inputs of different metrics (count, peak) are added together"
}
