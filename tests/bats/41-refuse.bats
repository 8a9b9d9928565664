#!/usr/bin/env bats
# Input that is not what a tool reads (a script, a missing file, an empty
# file) is refused: exit 2, a message naming it, nothing on stdout.

load helper

setup() {
	cd "$BATS_TEST_TMPDIR"
	printf 'import sys\nprint(sys.argv)\n' > app.py
	: > empty.bin
}

# refused TOOL FILE WHY: TOOL FILE exits 2, says WHY naming FILE on
# stderr, and writes nothing on stdout.
refused() {
	local out err st=0
	"$1" "$2" > out.txt 2> err.txt || st=$?
	[ "$st" -eq 2 ] || { echo "$1 $2: exit $st"; return 1; }
	[ ! -s out.txt ] || { echo "$1 $2 wrote $(wc -c < out.txt) bytes:"; head -5 out.txt; return 1; }
	grep -q "^$1: .*$2.*$3" err.txt || { echo "$1 $2:"; cat err.txt; return 1; }
}

@test "the stream readers refuse a script, a missing file and an empty file before writing anything" {
	for t in memray-stat memray-fold memray-leaks; do
		refused $t app.py "not a memray stream"
		refused $t /nonexistent.bin "No such file"
		refused $t empty.bin "empty"
	done
	# the same through a pipe
	run bash -c 'memray-fold < app.py'
	assert_failure 2
	assert_output --partial "not a memray stream"
}

@test "memray-flame and memray-tree refuse input that is neither collapsed stacks nor a stream" {
	for t in memray-flame memray-tree; do
		refused $t app.py "not collapsed stacks nor a memray stream (2 lines"
		refused $t /nonexistent.bin "No such file"
		refused $t empty.bin "empty"
	done
	run memray-diff app.py app.py
	assert_failure 2
	assert_output --partial "app.py: not collapsed stacks"
}

@test "a few bad lines among good ones stay a warning; a readable input beside a missing one is still read" {
	printf 'main;work 100\nnot a stack\nmain;rest 50\n' > mixed.folded
	run --separate-stderr memray-flame mixed.folded
	assert_success
	[[ "$output" == *"<html"* ]]
	[[ "$stderr" == *"mixed.folded: 1 malformed lines skipped"* ]]
	run --separate-stderr memray-tree --ascii mixed.folded
	assert_success
	assert_line --partial "150"
	memray-record -q -o a.bin "$FIX/allocs" alloc malloc > /dev/null
	run --separate-stderr memray-stat /nonexistent.bin a.bin
	assert_failure 2
	assert_line --partial "allocations:"
	[[ "$stderr" == *"cannot open '/nonexistent.bin'"* ]]
}

@test "memray-live refuses a file that is not a stream at once, instead of following it for ever" {
	st=0
	timeout 10 memray-live --batch app.py > out.txt 2> err.txt || st=$?
	[ "$st" = 2 ] || { echo "exit $st"; cat err.txt; false; }
	[ ! -s out.txt ]
	grep -q "^memray-live: app.py: not a memray stream" err.txt
	# a stream is still read, plain or compressed
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	run timeout 10 memray-live --batch d.bin
	assert_success
	assert_line "the program has ended"
	gzip -c d.bin > d.bin.gz
	run bash -c 'timeout 10 memray-live --batch < d.bin.gz'
	assert_success
	assert_line "the program has ended"
}

@test "endless or exploding input (/dev/zero, a gzip bomb) is refused in bounded memory; an over-long line is skipped with a warning (issue 19)" {
	head -c 1000000000 /dev/zero | gzip -1 > bomb.gz
	for t in memray-tree memray-flame; do
		for f in /dev/zero bomb.gz; do
			run --separate-stderr bash -c "$(vlimit 400000) timeout -k 5 60 $t $f"
			[ "$status" -eq 2 ] || { echo "$t $f: $status $stderr"; false; }
			[ -z "$output" ]
			[[ "$stderr" == "$t: $f: not collapsed stacks nor a memray stream (no line of the form 'frame;frame;... VALUE' in its first 64 MiB)" ]]
		done
	done
	printf 'a;b 5\n' > good.folded
	run --separate-stderr bash -c "$(vlimit 400000) timeout -k 5 60 memray-diff /dev/zero good.folded"
	[ "$status" -eq 2 ]
	[[ "$stderr" == *"/dev/zero: not collapsed stacks nor a memray stream"* ]]
	# a 40 MiB line among good ones: the others are read
	python3 -c "import sys; sys.stdout.write('a;b 5\n' + 'x' * (40 << 20) + ' 3\nc;d 7\n')" > long.folded
	run --separate-stderr bash -c "$(vlimit 400000) memray-tree -a long.folded"
	assert_success
	[ "$stderr" = "memray-tree: long.folded: 1 line over 16 MiB skipped" ]
	[ "${lines[0]}" = "12 B (100.0%) total" ]
}

@test "a directory is refused by every reader, saying so; memray-live reads /dev/null to its end instead of following it (issue 19)" {
	mkdir adir
	for t in memray-stat memray-fold memray-leaks memray-flame memray-tree memray-live; do
		refused $t adir "it is a directory"
		refused $t /dev/null "empty"
	done
	printf 'a;b 5\n' > good.folded
	run memray-diff adir good.folded
	assert_failure 2
	assert_output "memray-diff: cannot read 'adir': it is a directory"
	run timeout -k 5 20 memray-live -b /dev/null
	assert_failure 2
	assert_output --partial "memray-live: /dev/null: empty input: no stream was recorded"
}
