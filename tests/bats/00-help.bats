#!/usr/bin/env bats
# Every tool answers --help and --version, and its man page documents
# exactly the options its --help lists.

load helper

TOOLS="memray-record memray-stat memray-fold memray-leaks memray-tree memray-flame memray-live memray-diff"
MAN=$BATS_TEST_DIRNAME/../../man

render() { mandoc -T ascii "$1" | col -bx; }

options() { grep -o -- '--[a-z][a-z-]*' | sort -u; }

@test "every tool answers --help on stdout with exit 0 and --version" {
	for t in $TOOLS; do
		run $t --help
		assert_success
		assert_line --index 0 --partial "usage: $t"
		run $t --version
		assert_success
		assert_output --regexp "^$t [0-9]+\.[0-9]+\.[0-9]+$"
	done
}

@test "--help and --version into a full disk: a message and exit 2, for every tool" {
	for t in $TOOLS; do
		for o in --help --version; do
			run bash -c "$t $o > /dev/full"
			[ "$status" = 2 ] || { echo "$t $o: exit $status"; false; }
			assert_output "$t: error writing to standard output: No space left on device"
		done
	done
}

@test "every tool has a man page that renders without errors" {
	for t in $TOOLS; do
		[ -f "$MAN/$t.1" ]
		mandoc -T lint -W error "$MAN/$t.1"
	done
	[ -f "$MAN/memray-stream.5" ]
	mandoc -T lint -W error "$MAN/memray-stream.5"
}

@test "the man page's options are exactly the --help options" {
	for t in $TOOLS; do
		diff <($t --help | options) <(render "$MAN/$t.1" | sed -n '/^OPTIONS\|^DESCRIPTION/,/^[A-Z][A-Z ]*$/p' | options) ||
			{ echo "$t: --help and man page differ"; false; }
	done
}

@test "the man page's SYNOPSIS matches the usage line" {
	for t in $TOOLS; do
		help=$($t --help | sed -n '/^usage:/,/^$/p' | tr -s ' \n' ' ' | sed 's/^usage: //; s/ *$//')
		syn=$(render "$MAN/$t.1" | sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' | sed '1d;$d' | tr -s ' \n' ' ' | sed 's/^ *//; s/ *$//')
		[ "$help" = "$syn" ] || { echo "help: $help"; echo "man:  $syn"; false; }
	done
}
