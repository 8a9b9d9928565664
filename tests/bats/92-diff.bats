#!/usr/bin/env bats
# memray-diff: two runs in, the difference out; memray-flame draws it.

load helper

BUFS=$BATS_TEST_DIRNAME/../fixtures/py/buffers.py
SITE="make.<locals>.<listcomp> ($BUFS:8)"

# two recordings of the script, the second with one buffer more
record_runs() {
	PYTHONHASHSEED=0 memray-record -q -o before.bin /usr/bin/python3 "$BUFS" 3 > /dev/null
	PYTHONHASHSEED=0 memray-record -q -o after.bin /usr/bin/python3 "$BUFS" 4 > /dev/null
}

# the two counts of the line whose stack ends with SITE
counts_of_site() {
	grep -F "$SITE " "$1" | awk '{ print $(NF - 1), $NF }'
}

@test "two recordings: the site that allocates one more buffer grows by exactly its size" {
	record_runs
	run memray-diff before.bin after.bin
	assert_success
	echo "$output" > d.folded
	assert_line --index 0 '# metric="peak"'
	assert_line --index 1 '# diff="before after"'
	[ "$(grep -cF "$SITE " d.folded)" -eq 1 ]
	read -r b a <<< "$(counts_of_site d.folded)"
	[ "$b" -eq 3000003 ] && [ "$a" -eq 4000004 ]
	# every line: a stack and two integers, sorted by stack
	grep -v '^#' d.folded | grep -Evq ' [0-9]+ [0-9]+$' && false
	grep -v '^#' d.folded | awk '{ $NF = ""; $(NF - 1) = ""; print }' | LC_ALL=C sort -c
}

@test "--report: totals, and that site among the growers with its exact growth" {
	record_runs
	run memray-diff --report before.bin after.bin
	assert_success
	assert_line --index 0 "metric:  peak"
	assert_line --regexp "^before: +[0-9.]+ [KMG]iB +before.bin$"
	assert_line --regexp "^after: +[0-9.]+ [KMG]iB +after.bin$"
	assert_line --regexp "^  \+976.6 KiB +\(2.9 MiB -> 3.8 MiB, \+1000001\)  make.<locals>.<listcomp> \($BUFS:8\) <- make \($BUFS:8\) <- <module> \($BUFS:11\)$"
	assert_line "grew most:"
	assert_line "shrank most:"
	# with --top 1 only the biggest change of each kind
	run memray-diff -r -n 1 before.bin after.bin
	[ "$(echo "$output" | grep -c '^  [+-]')" -le 2 ]
}

@test "collapsed stacks in, from any tool; the metric of streams is chosen with -m" {
	printf 'a;b 10\na;c 5\n' > one.folded
	printf 'a;b 12\na;d 7\n' > two.folded
	run memray-diff one.folded two.folded
	assert_success
	assert_output "# diff=\"before after\"
a;b 10 12
a;c 5 0
a;d 0 7"
	record_runs
	memray-diff -m count before.bin after.bin > counts.folded
	head -1 counts.folded | grep -qx '# metric="count"'
	read -r b a <<< "$(counts_of_site counts.folded)"
	[ "$b" -eq 3 ] && [ "$a" -eq 4 ]
	# a stream against collapsed stacks of the other run
	memray-fold before.bin > before.folded
	memray-diff before.folded after.bin > mixed.folded
	read -r b a <<< "$(counts_of_site mixed.folded)"
	[ "$b" -eq 3000003 ] && [ "$a" -eq 4000004 ]
	# different metrics are reported
	run memray-diff counts.folded after.bin
	assert_output --partial "the runs measure different things"
}

@test "memray-tree and memray-flame read the differential stacks" {
	printf 'a;b 10 12\na;c 5 0\n' > d.folded
	run memray-tree d.folded
	assert_success
	assert_line --partial "12 B (100.0%) a"
	memray-flame d.folded > d.html
	grep -q '"diff":true' d.html
	# a differential line among plain ones is refused
	printf 'a;b 10\na;c 5 7\n' > bad.folded
	run memray-flame bad.folded
	[ "$status" -eq 2 ]
	assert_output --partial "differential stacks (two counts) mixed with plain ones"
}

@test "browser: the differential flame graph: widths, colours, the grown site's tooltip" {
	[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || skip "Chromium is not installed (make deps installs it)"
	record_runs
	memray-diff before.bin after.bin | memray-flame --title "3 -> 4 buffers" > d.html
	python3 "$BATS_TEST_DIRNAME/../browser/flame_check.py" diff d.html "$SITE" 1000001
}

@test "mistakes: one input, three, both on stdin, a missing file, bad options" {
	run memray-diff a.folded
	[ "$status" -eq 2 ]
	assert_output --partial "two runs are needed: BEFORE and AFTER"
	run memray-diff a b c
	[ "$status" -eq 2 ]
	assert_output --partial "too many inputs"
	run memray-diff - -
	[ "$status" -eq 2 ]
	assert_output --partial "only one of BEFORE and AFTER can be standard input"
	printf 'a 1\n' > one.folded
	run memray-diff one.folded missing.folded
	[ "$status" -eq 2 ]
	assert_output --partial "missing.folded"
	run memray-diff -m nope one.folded one.folded
	[ "$status" -eq 2 ]
	assert_output --partial "unknown metric 'nope'"
	run memray-diff -n 0 one.folded one.folded
	[ "$status" -eq 2 ]
	run memray-diff --bogus one.folded one.folded
	[ "$status" -eq 2 ]
}
