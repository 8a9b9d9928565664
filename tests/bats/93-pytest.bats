#!/usr/bin/env bats
# bats file_tags=py3
# The pytest plugin (python/memray_c/pytest_plugin.py) on a small test suite.

load helper

SUITE=$BATS_TEST_DIRNAME/../fixtures/pytest
PLUGIN=$BATS_TEST_DIRNAME/../../python

setup() {
	$PY3 -c 'import pytest' 2> /dev/null || skip "pytest is missing (Debian: python3-pytest)"
	cd "$BATS_TEST_TMPDIR"
	cp "$SUITE"/*.py .
}

# pytest with the plugin from the checkout
run_pytest() {
	PYTHONPATH=$PLUGIN $PY3 -m pytest -p memray_c.pytest_plugin -p no:cacheprovider "$@"
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
	assert_line --regexp "^Test was limited to 2.0 MiB \(2097152 bytes\) by limit_memory\('2 MB'\) but allocated at its peak 4.8 MiB \(500[0-9]{4} bytes\)$"
	assert_line "      make_big ($BATS_TEST_TMPDIR/test_budget.py:11)"
	assert_line "      test_over_limit ($BATS_TEST_TMPDIR/test_budget.py:26)"
	assert_line "Test was allowed to leak 1.0 MiB (1048576 bytes) per location by limit_leaks('1 MB') but 1 location leaked more:"
	assert_line --regexp "^  2.9 MiB \(300[0-9]{4} bytes\) leaked at:$"
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
	leaked=$(echo "$output" | sed -n 's/^  .* (\([0-9]*\) bytes) leaked at:$/\1/p')
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

@test "a limit the plugin cannot read stops pytest before any test runs, naming each test and its string" {
	run run_pytest --memray bad_size.py
	echo "$output"
	[ "$status" -eq 4 ]
	refute_output --partial "passed"
	assert_line "ERROR: bad_size.py::test_bad_size: @pytest.mark.limit_memory('lots'): invalid size 'lots': expected a number and a unit: B, KB, MB, GB, TB, PB (powers of 1024, any case), K, M, G, T, KiB, MiB, GiB, TiB (also powers of 1024), or a number of bytes"
	assert_line --partial "bad_size.py::test_negative: @pytest.mark.limit_leaks('-1 MB'): invalid size '-1 MB': "
	assert_line --partial "bad_size.py::test_trailing_text: @pytest.mark.limit_memory('2 MB of it'): invalid size '2 MB of it': "
	assert_line --partial "bad_size.py::test_bad_unit: @pytest.mark.limit_memory('100 NB'): invalid size '100 NB': "
	assert_line "bad_size.py::test_no_size: @pytest.mark.limit_memory(): needs a size, as in limit_memory(\"24 MB\")"
	assert_line "bad_size.py::test_current_thread_only: @pytest.mark.limit_memory('1 MB'): current_thread_only is not supported (memray-c counts every thread)"
	assert_line "bad_size.py::test_bad_filter: @pytest.mark.limit_leaks('1 MB'): filter_fn must be callable, not 'not callable'"
	# pytest-memray's limit_memory takes no filter_fn, and its limit_leaks
	# takes filter_fn by name only
	assert_line "bad_size.py::test_filter_on_limit_memory: @pytest.mark.limit_memory('1 MB'): limit_memory takes no filter_fn (as in pytest-memray): filter_fn chooses the leaking locations that count, in limit_leaks(\"1 MB\", filter_fn=...)"
	assert_line "bad_size.py::test_positional_filter: @pytest.mark.limit_leaks('1 MB', <lambda>): takes one size; filter_fn is given by name, as in limit_leaks(\"1 MB\", filter_fn=...)"
	refute_output --partial test_unmarked
	# without --memray the markers are not read at all
	run run_pytest bad_size.py
	assert_success
	assert_output --partial "10 passed"
}

@test "a missing tracker is a usage error" {
	PATH=/usr/bin:/bin MEMRAY_TRACKER=/nonexistent run run_pytest --memray test_budget.py
	[ "$status" -eq 4 ]
	assert_output --partial "cannot find libmemray-tracker.so"
}

@test "limit_memory reads sizes as pytest-memray does: 2 MB is 2 MiB in any case and spacing; a test at or over it fails" {
	EXPECT_TRACKER=1 run run_pytest --memray -rA test_units.py
	echo "$output"
	[ "$status" -eq 1 ]
	# 19 forms: each passes 2,050,000 bytes and fails 2.5 MiB
	assert_output --partial "20 failed, 20 passed"
	[ "$(echo "$output" | grep -c '^PASSED test_units.py::test_just_under\[')" -eq 19 ]
	[ "$(echo "$output" | grep -c '^FAILED test_units.py::test_over\[')" -eq 19 ]
	assert_line "PASSED test_units.py::test_one_and_a_half_mib"
	assert_line --regexp "^FAILED test_units.py::test_every_marker_counts( - .*)?$"
	assert_line --regexp "^Test was limited to 2.0 MiB \(2097152 bytes\) by limit_memory\('2mB'\) but allocated at its peak 2.5 MiB \(26214[0-9]{2} bytes\)$"
	assert_line --regexp "^Test was limited to 1.0 MiB \(1048576 bytes\) by limit_memory\('1 MB'\) but allocated at its peak 1.5 MiB \(15728[0-9]{2} bytes\)$"
	refute_output --partial "by limit_memory('2 MB') but allocated at its peak 1.5 MiB"
}

@test "limit_leaks limits each location: two under it pass together, one over it fails naming it, a filter_fn drops stacks" {
	EXPECT_TRACKER=1 run run_pytest --memray -rA test_leaks.py
	echo "$output"
	[ "$status" -eq 1 ]
	assert_output --partial "4 failed, 2 passed"
	assert_line "PASSED test_leaks.py::test_two_locations_under_the_limit"
	assert_line "PASSED test_leaks.py::test_filtered"
	assert_line --regexp "^FAILED test_leaks.py::test_one_location_over_the_limit( - .*)?$"
	assert_line --regexp "^FAILED test_leaks.py::test_one_location_many_blocks( - .*)?$"
	assert_line --regexp "^FAILED test_leaks.py::test_filter_keeps_others( - .*)?$"
	# the failing location, innermost frame first, down to the test
	over=$(echo "$output" | sed -n '/^_* test_one_location_over_the_limit _*$/,/^_* test_one_location_many_blocks _*$/p')
	echo "$over" | grep -qx "Test was allowed to leak 1.0 MiB (1048576 bytes) per location by limit_leaks('1 MB') but 1 location leaked more:"
	echo "$over" | grep -qx "  1.1 MiB (1200[0-9][0-9][0-9] bytes) leaked at:"
	echo "$over" | grep -A2 -x "  1.1 MiB (1200[0-9][0-9][0-9] bytes) leaked at:" | tail -2 > got
	printf '      %s\n' "leak_there ($BATS_TEST_TMPDIR/test_leaks.py:14)" \
		"test_one_location_over_the_limit ($BATS_TEST_TMPDIR/test_leaks.py:27)" | diff -u - got
	# the location under the limit is not named
	! echo "$over" | grep -q "leak_here" || false
	# many blocks from one location add up
	many=$(echo "$output" | sed -n '/^_* test_one_location_many_blocks _*$/,/^_* test_filter_keeps_others _*$/p')
	echo "$many" | grep -qx "  1.1 MiB (1200[0-9][0-9][0-9] bytes) leaked at:"
	echo "$many" | grep -qx "      leak_here ($BATS_TEST_TMPDIR/test_leaks.py:10)"
	# a method's stack ends at the method (Class.method from 3.11), not in pytest
	method=$(echo "$output" | sed -n '/^_* TestInAClass.test_method _*$/,/^keep the recording/p')
	echo "$method" | tail -3 | head -1 | grep -qx "      leak_there ($BATS_TEST_TMPDIR/test_leaks.py:14)"
	echo "$method" | tail -2 | head -1 | grep -Eqx "      (TestInAClass\.)?test_method \($BATS_TEST_TMPDIR/test_leaks.py:59\)"
}

@test "limit_leaks sees small objects one by one under pymalloc (its tests trace the Python allocators), and so does --trace-python-allocators for every test" {
	EXPECT_TRACKER=1 run run_pytest --memray -rA test_small_leaks.py test_budget.py
	echo "$output"
	refute_output --partial "pymalloc"
	assert_line --regexp "^FAILED test_small_leaks.py::test_small_objects( - .*)?$"
	assert_line "Test was allowed to leak 50.0 KiB (51200 bytes) per location by limit_leaks('50 KB') but 1 location leaked more:"
	assert_line "      test_small_objects ($BATS_TEST_TMPDIR/test_small_leaks.py:12)"
	# the recording of a limit_leaks test says every object was traced;
	# another test's does not
	EXPECT_TRACKER=1 run run_pytest --memray --memray-bin-path bins -k "small_objects or environment" test_small_leaks.py test_budget.py
	memray-stat --dump bins/*test_small_objects*.bin | head -1 | grep -q ' flags=python,python-allocators '
	memray-stat --dump bins/*test_environment*.bin | head -1 | grep -q ' flags=python,pymalloc '
	EXPECT_TRACKER=1 run run_pytest --memray --trace-python-allocators -rA test_small_leaks.py test_budget.py
	echo "$output"
	assert_line --regexp "^FAILED test_small_leaks.py::test_small_objects( - .*)?$"
	# the tests see PYTHONMALLOC as it was
	assert_line "PASSED test_budget.py::test_environment"
	# the tracker preloaded by hand under pymalloc: the allocators are
	# wrapped for every test
	tracker=$(realpath "$MEMRAY_BUILD/lib/memray-c/libmemray-tracker.so")
	LD_PRELOAD=$tracker EXPECT_TRACKER=1 run run_pytest --memray --trace-python-allocators --memray-bin-path bins2 -rA test_small_leaks.py test_budget.py
	echo "$output"
	assert_line --regexp "^FAILED test_small_leaks.py::test_small_objects( - .*)?$"
	memray-stat --dump bins2/*test_environment*.bin | head -1 | grep -q ' flags=python,python-allocators '
	PYTHONMALLOC=malloc EXPECT_PYTHONMALLOC=malloc EXPECT_TRACKER=1 run run_pytest --memray -rA test_leaks.py test_budget.py
	assert_line "PASSED test_budget.py::test_environment"
}

@test "--stacks N shows the N innermost frames of each site and location; without it the stack down to the test" {
	EXPECT_TRACKER=1 run run_pytest --memray -k deep test_stacks.py
	echo "$output"
	[ "$status" -eq 1 ]
	assert_output --partial "2 failed"
	# deep() six times, then the test
	site=$(echo "$output" | sed -n '/^_* test_deep _*$/,/^keep the recording/p')
	[ "$(echo "$site" | grep -c "^      deep ($BATS_TEST_TMPDIR/test_stacks.py:1[34])$")" -eq 6 ]
	echo "$site" | grep -qx "      test_deep ($BATS_TEST_TMPDIR/test_stacks.py:19)"
	EXPECT_TRACKER=1 run run_pytest --memray --stacks 2 -k deep test_stacks.py
	echo "$output"
	[ "$status" -eq 1 ]
	for t in test_deep test_deep_leak; do
		got=$(echo "$output" | sed -n "/^_* $t _*\$/,/^keep the recording/p" | grep -A3 '^  .* bytes) \(at\|leaked at\):$' | tail -3)
		printf '      %s\n' "deep ($BATS_TEST_TMPDIR/test_stacks.py:13)" "deep ($BATS_TEST_TMPDIR/test_stacks.py:14)" \
			"... 5 more" | diff -u - <(echo "$got")
	done
	# --stacks=1 as pytest-memray spells it
	EXPECT_TRACKER=1 run run_pytest --memray --stacks=1 -k 'test_deep and not leak' test_stacks.py
	assert_line "      deep ($BATS_TEST_TMPDIR/test_stacks.py:13)"
	assert_line "      ... 6 more"
}

@test "--stacks and --most-allocations refuse what is not a count" {
	for bad in 0 -1 two; do
		run run_pytest --memray --stacks "$bad" test_budget.py
		echo "$output"
		[ "$status" -eq 4 ]
		assert_output --partial "argument --stacks: expected a positive number of frames, not '$bad'"
	done
	run run_pytest --memray --most-allocations -1 test_budget.py
	[ "$status" -eq 4 ]
	assert_output --partial "argument --most-allocations: expected a number of tests (0 for all), not '-1'"
}

@test "--native records native stacks: C code's frames are in the messages; --memray-native is the same" {
	EXPECT_TRACKER=1 run run_pytest --memray -k test_native test_stacks.py
	echo "$output"
	[ "$status" -eq 1 ]
	refute_output --regexp "ffi_call \(libffi"
	assert_line "      native_alloc ($BATS_TEST_TMPDIR/test_stacks.py:35)"
	for opt in --native --memray-native; do
		EXPECT_TRACKER=1 run run_pytest --memray $opt -k test_native test_stacks.py
		echo "$output"
		[ "$status" -eq 1 ]
		assert_line --regexp "^      ffi_call \(libffi\.so[.0-9]*\)$"
		# the native frames come first, then the Python ones down to the test
		echo "$output" | grep -A20 '^  2.9 MiB (3000000 bytes) at:$' | grep -v '^      0x' > got
		grep -B1 -x "      native_alloc ($BATS_TEST_TMPDIR/test_stacks.py:35)" got | head -1 | grep -q '(_ctypes\|(libffi'
		grep -A1 -x "      native_alloc ($BATS_TEST_TMPDIR/test_stacks.py:35)" got | tail -1 | grep -qx "      test_native ($BATS_TEST_TMPDIR/test_stacks.py:41)"
	done
}

@test "--most-allocations 0 lists every test, as in pytest-memray; --hide-memray-summary leaves the table out" {
	EXPECT_TRACKER=1 run run_pytest --memray --most-allocations 0 test_budget.py
	echo "$output"
	[ "$(echo "$output" | sed -n '/the tests with the highest peak/,/short test summary/p' | grep -c 'test_budget.py::')" -eq 6 ]
	EXPECT_TRACKER=1 run run_pytest --memray --hide-memray-summary --memray-bin-path recs test_budget.py
	echo "$output"
	[ "$status" -eq 1 ]
	assert_output --partial "2 failed, 4 passed"
	refute_output --partial "the tests with the highest peak"
	refute_output --partial "recordings in"
	# the limits are enforced as before
	assert_line --regexp "^FAILED test_budget.py::test_over_limit( - .*)?$"
}

# pytest with the plugin from the checkout and pytest's cache in the
# test's directory
run_pytest_cached() {
	PYTHONPATH=$PLUGIN $PY3 -m pytest -p memray_c.pytest_plugin "$@"
}

@test "--fail-on-increase fails a limit_memory test whose peak grew since its last successful run, naming both" {
	# the first run keeps the baseline, with or without --fail-on-increase
	GROW_BYTES=1000000 EXPECT_TRACKER=1 run run_pytest_cached --memray --fail-on-increase -rA test_increase.py
	echo "$output"
	assert_success
	assert_output --partial "2 passed"
	[ -d .pytest_cache ]
	# more than the baseline: fails, naming both peaks and the top site
	GROW_BYTES=2000000 EXPECT_TRACKER=1 run run_pytest_cached --memray --fail-on-increase -rA test_increase.py
	echo "$output"
	[ "$status" -eq 1 ]
	assert_line --regexp "^FAILED test_increase.py::test_grows( - .*)?$"
	assert_line "PASSED test_increase.py::test_unlimited"
	assert_line --regexp "^Test previously used 976.6 KiB \(10000[0-9]{2} bytes\) at its peak, in its last successful run, but now uses 1.9 MiB \(20000[0-9]{2} bytes\) \(--fail-on-increase\)$"
	assert_line "      test_grows ($BATS_TEST_TMPDIR/test_increase.py:11)"
	# a failed run does not move the baseline
	GROW_BYTES=2000000 EXPECT_TRACKER=1 run run_pytest_cached --memray --fail-on-increase test_increase.py
	[ "$status" -eq 1 ]
	assert_output --regexp "Test previously used 976.6 KiB \(10000[0-9]{2} bytes\)"
	# without --fail-on-increase the test passes, and its peak is the new baseline
	GROW_BYTES=2000000 EXPECT_TRACKER=1 run run_pytest_cached --memray test_increase.py
	assert_success
	# less is fine, and lowers the baseline; the same again is fine
	GROW_BYTES=1500000 EXPECT_TRACKER=1 run run_pytest_cached --memray --fail-on-increase test_increase.py
	assert_success
	GROW_BYTES=1500000 EXPECT_TRACKER=1 run run_pytest_cached --memray --fail-on-increase test_increase.py
	assert_success
	GROW_BYTES=1600000 EXPECT_TRACKER=1 run run_pytest_cached --memray --fail-on-increase test_increase.py
	[ "$status" -eq 1 ]
	assert_output --regexp "Test previously used 1.4 MiB \(15000[0-9]{2} bytes\) at its peak, in its last successful run, but now uses 1.5 MiB \(16000[0-9]{2} bytes\)"
	# --cache-clear forgets the baselines
	GROW_BYTES=1600000 EXPECT_TRACKER=1 run run_pytest_cached --memray --fail-on-increase --cache-clear test_increase.py
	assert_success
}

@test "--fail-on-increase needs pytest's cache" {
	GROW_BYTES=1000 run run_pytest --memray --fail-on-increase test_increase.py
	echo "$output"
	[ "$status" -eq 4 ]
	assert_output --partial "--fail-on-increase: the baselines are kept in pytest's cache, which is disabled here (-p no:cacheprovider)"
}

@test "pytest.ini sets what the options set, as pytest-memray's ini names do: memray, stacks, native, hide_memray_summary" {
	printf '[pytest]\nmemray = true\nstacks = 1\nnative = true\nhide_memray_summary = true\n' > pytest.ini
	EXPECT_TRACKER=1 run run_pytest -k 'test_deep or test_native' test_stacks.py
	echo "$output"
	[ "$status" -eq 1 ]
	assert_output --partial "3 failed"
	assert_line "      deep ($BATS_TEST_TMPDIR/test_stacks.py:13)"
	assert_line "      ... 6 more"
	assert_line --regexp "^      \.\.\. [0-9]+ more$"
	refute_output --partial "the tests with the highest peak"
	# the command line wins over the file
	EXPECT_TRACKER=1 run run_pytest --stacks 3 -k 'test_deep and not leak' test_stacks.py
	assert_line "      ... 4 more"
	# a value the plugin cannot read is refused as on the command line
	printf '[pytest]\nmemray = true\nmost_allocations = all\n' > pytest.ini
	run run_pytest test_stacks.py
	[ "$status" -eq 4 ]
	assert_output --partial "most_allocations = all in $BATS_TEST_TMPDIR/pytest.ini: expected a number of tests (0 for all), not 'all'"
}

@test "pytest.main() inside a program, without the tracker: a usage error, and the program is not started again (it ran twice, and read its standard input again)" {
	cat > once.py <<'PY'
import sys
import pytest
open("log.txt", "a").write("ran %s\n" % sys.stdin.read().strip())
sys.exit(pytest.main(["-p", "memray_c.pytest_plugin", "-p", "no:cacheprovider", "--memray", "-q", "test_budget.py"]))
PY
	run bash -c "echo input | PYTHONPATH=$PLUGIN $PY3 once.py"
	echo "$output"
	[ "$status" -eq 4 ]
	assert_output --partial "--memray: the tracker is not in this process, and pytest runs inside another program (pytest.main())"
	[ "$(cat log.txt)" = "ran input" ]
	# under memray-record --idle, as the message says, it runs
	run bash -c "echo input | EXPECT_TRACKER=1 PYTHONPATH=$PLUGIN memray-record --idle $PY3 once.py"
	echo "$output"
	[ "$status" -eq 1 ]
	assert_output --partial "2 failed, 4 passed"
	[ "$(wc -l < log.txt)" = 2 ]
}

@test "a process recorded already (pytest --memray under memray-record): a test with a limit fails, since it cannot be checked; the others are warned of" {
	PYTHONPATH=$PLUGIN EXPECT_TRACKER=1 run memray-record -q -f -o whole.bin $PY3 -m pytest -p memray_c.pytest_plugin -p no:cacheprovider --memray test_budget.py
	echo "$output"
	[ "$status" -eq 1 ]
	assert_line --regexp "^FAILED test_budget.py::test_over_limit( - .*)?$"
	assert_output --partial "cannot be checked: not recorded: Device or resource busy"
	assert_output --partial "memray-c: not recorded: Device or resource busy"
}

@test "pytest as Debian installs it (pytest-3) is pytest as a command: run again under the tracker" {
	command -v pytest-3 > /dev/null || skip "no pytest-3 here"
	PYTHONPATH=$PLUGIN EXPECT_TRACKER=1 run pytest-3 -p memray_c.pytest_plugin -p no:cacheprovider --memray test_budget.py
	echo "$output"
	[ "$status" -eq 1 ]
	assert_output --partial "2 failed, 4 passed"
	refute_output --partial "pytest runs inside another program"
}
