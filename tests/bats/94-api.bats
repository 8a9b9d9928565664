#!/usr/bin/env bats
# The tracker's in-process API (lib/tracker/memray.h).

load helper

API=$BATS_TEST_DIRNAME/../fixtures/py/api_window.py

@test "memray_start/stop/stats in a program that loads the tracker with dlopen: exact windows, complete streams" {
	tracker=$MEMRAY_BUILD/lib/memray-c/libmemray-tracker.so
	run /usr/bin/python3 "$API" "$tracker" one.bin two.bin
	echo "$output"
	assert_success
	# 5,000,001 and 1,000,001 bytes; the first freed: peak both, one live
	assert_line "during 6000002 1000001 2 6000002"
	# the second window frees a block of the first: nothing of its own
	assert_line "second 0 0 0 0"
	assert_line "done"
	run memray-stat one.bin
	assert_success
	refute_output --partial warning
	assert_line --regexp "^peak heap: +6000002 "
	assert_line --regexp "^live at end: +1000001 "
	memray-fold one.bin | grep -q "work ($API:21) 5000001$"
	memray-fold -m leaked one.bin | grep -q "work ($API:22) 1000001$"
	memray-stat two.bin > /dev/null
}

@test "the header documents the three functions and is installed" {
	h=$BATS_TEST_DIRNAME/../../lib/tracker/memray.h
	for f in memray_start memray_stop memray_stats; do
		grep -q "^int $f(" "$h"
		nm -D "$MEMRAY_BUILD/lib/memray-c/libmemray-tracker.so" | grep -q " T $f$"
	done
	# it compiles on its own
	printf '#include "%s"\nint main(void) { struct memray_stats s; (void)s; return 0; }\n' "$h" > h.c
	cc -std=c99 -Wall -Werror -c h.c
}
