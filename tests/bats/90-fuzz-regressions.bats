#!/usr/bin/env bats
# Inputs kept from fuzzing (tests/fuzz/regressions): every reader takes
# them without crashing: exit 0, or 2 with a message.

load helper

survives() { # tool args... file
	run "$@"
	[ "$status" -eq 0 ] || [ "$status" -eq 2 ] || { echo "$*: exit $status"; return 1; }
	[ "$status" -eq 0 ] || [ -n "$output" ]
}

@test "streams kept from fuzzing are read without a crash by every filter" {
	for f in "$BATS_TEST_DIRNAME"/../fuzz/regressions/stream/*; do
		[ -f "$f" ] || continue
		for tool in memray-stat memray-fold memray-leaks memray-tree memray-flame; do
			survives $tool "$f"
		done
		survives memray-stat --dump "$f"
		survives memray-stat --json "$f"
	done
}

@test "collapsed stacks kept from fuzzing are read without a crash" {
	for f in "$BATS_TEST_DIRNAME"/../fuzz/regressions/folded/*; do
		[ -f "$f" ] || continue
		survives memray-tree "$f"
		survives memray-flame "$f"
	done
}
