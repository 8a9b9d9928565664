#!/usr/bin/env bats
# bats file_tags=py3
# The pytest plugin (python/pytest_memray_c.py) on a small test suite.

load helper

SUITE=$BATS_TEST_DIRNAME/../fixtures/pytest
PLUGIN=$BATS_TEST_DIRNAME/../../python

setup() {
	$PY3 -c 'import pytest' 2> /dev/null || skip "pytest is missing (Debian: python3-pytest)"
	cd "$BATS_TEST_TMPDIR"
	cp "$SUITE"/test_budget.py "$SUITE"/bad_size.py .
}

# pytest with the plugin from the checkout
run_pytest() {
	PYTHONPATH=$PLUGIN $PY3 -m pytest -p pytest_memray_c -p no:cacheprovider "$@"
}

@test "without --memray the plugin does nothing: limits not enforced, no tracker, no table" {
	EXPECT_TRACKER=0 run run_pytest test_budget.py
	echo "$output"
	assert_success
	assert_output --partial "6 passed"
	refute_output --partial "memray"
}

@test "--memray: a test over its limit fails naming the limit, the peak and its top site; a leak fails limit_leaks" {
	EXPECT_TRACKER=1 run run_pytest --memray test_budget.py
	echo "$output"
	[ "$status" -eq 1 ]
	assert_output --partial "2 failed, 4 passed"
	# (pytest 8 on adds " - " and the start of the message)
	assert_line --regexp "^FAILED test_budget.py::test_over_limit( - .*)?$"
	assert_line --regexp "^FAILED test_budget.py::test_leaks( - .*)?$"
	assert_line --regexp "^Test was limited to 1.9 MiB \(2000000 bytes\) by limit_memory\('2 MB'\) but allocated at its peak 4.8 MiB \(500[0-9]{4} bytes\)$"
	assert_line "      make_big ($BATS_TEST_TMPDIR/test_budget.py:11)"
	assert_line "      test_over_limit ($BATS_TEST_TMPDIR/test_budget.py:26)"
	assert_line --regexp "^Test was limited to 976.6 KiB \(1000000 bytes\) by limit_leaks\('1 MB'\) but leaked \(allocated and not freed\) 2.9 MiB \(300[0-9]{4} bytes\)$"
	assert_line "      leak ($BATS_TEST_TMPDIR/test_budget.py:15)"
	# the summary: the heaviest test first
	assert_line --regexp "^=+ memray-c: the tests with the highest peak =+$"
	line=$(echo "$output" | grep -A1 '^ *peak  *leaked  *allocations  test$' | tail -1)
	[[ "$line" == *"4.8 MiB"*"test_budget.py::test_over_limit" ]]
	# no recording is left behind without --memray-bin-path
	[ -z "$(ls -d /tmp/memray-pytest-* 2> /dev/null | xargs -r -n1 find 2> /dev/null | grep test_budget || true)" ]
}

@test "--memray-bin-path keeps one recording per test; their numbers are the messages' numbers" {
	EXPECT_TRACKER=1 run run_pytest --memray --memray-bin-path recs --most-allocations 2 test_budget.py
	[ "$status" -eq 1 ]
	[ "$(ls recs/*.bin | wc -l)" -eq 6 ]
	ls recs
	rec=recs/test_budget.py-test_over_limit.bin
	peak=$(echo "$output" | sed -n 's/.*but allocated at its peak .* (\([0-9]*\) bytes)$/\1/p')
	memray-stat --json "$rec" | $PY3 -c "import json, sys; d = json.load(sys.stdin); assert d['peak_bytes'] == $peak, d['peak_bytes']"
	leaked=$(echo "$output" | sed -n 's/.*but leaked (allocated and not freed) .* (\([0-9]*\) bytes)$/\1/p')
	memray-stat --json recs/test_budget.py-test_leaks.bin | $PY3 -c "import json, sys; d = json.load(sys.stdin); assert d['leaked_bytes'] == $leaked, d['leaked_bytes']"
	memray-fold "$rec" | grep -q "make_big ($BATS_TEST_TMPDIR/test_budget.py:11) $(PY=$PY3 pysz 5000001)$"
	assert_output --partial "recording: $BATS_TEST_TMPDIR/recs/test_budget.py-test_over_limit.bin"
	# --most-allocations 2: two rows
	[ "$(echo "$output" | sed -n '/the tests with the highest peak/,/short test summary/p' | grep -c 'test_budget.py::')" -eq 2 ]
}

@test "a tracker that is already loaded (LD_PRELOAD) is used as it is, without running pytest again" {
	tracker=$(realpath "$MEMRAY_BUILD/lib/memray-c/libmemray-tracker.so")
	LD_PRELOAD=$tracker EXPECT_PRELOAD=$tracker EXPECT_TRACKER=1 run run_pytest --memray test_budget.py
	echo "$output"
	assert_output --partial "2 failed, 4 passed"
}

@test "an unreadable limit is reported; a missing tracker is a usage error" {
	run run_pytest --memray bad_size.py
	[ "$status" -ne 0 ]
	assert_output --partial "invalid size 'lots'"
	PATH=/usr/bin:/bin MEMRAY_TRACKER=/nonexistent run run_pytest --memray test_budget.py
	[ "$status" -eq 4 ]
	assert_output --partial "cannot find libmemray-tracker.so"
}

@test "make install puts the plugin where pytest finds it by itself" {
	make -C "$BATS_TEST_DIRNAME/../.." BUILD="$MEMRAY_BUILD" DESTDIR="$BATS_TEST_TMPDIR/stage" install > /dev/null
	site=$(find "$BATS_TEST_TMPDIR/stage" -name pytest_memray_c.py -printf '%h\n')
	[ -f "$site/memray_c_pytest-0.1.0.dist-info/entry_points.txt" ]
	grep -q '^INSTALLED_TRACKER = "/usr/local/lib/memray-c/libmemray-tracker.so"$' "$site/pytest_memray_c.py"
	PATH="$BATS_TEST_TMPDIR/stage/usr/local/bin:$PATH" PYTHONPATH="$site" EXPECT_TRACKER=1 \
		run $PY3 -m pytest -p no:cacheprovider --memray test_budget.py
	echo "$output"
	assert_output --partial "2 failed, 4 passed"
}
