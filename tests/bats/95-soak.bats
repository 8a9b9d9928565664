#!/usr/bin/env bats
# Real programs run the same recorded and not (tests/soak.sh; make soak
# runs its full version).

load helper

@test "CPython's test_json, compileall, gcc -O2, sqlite3 and git run the same under memray-record --follow-fork" {
	run "$BATS_TEST_DIRNAME/../soak.sh" quick "$MEMRAY_BUILD"
	echo "$output"
	assert_success
	refute_output --partial "not ok"
}
