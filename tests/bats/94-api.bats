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

@test "the header documents the functions and is installed" {
	h=$BATS_TEST_DIRNAME/../../lib/tracker/memray.h
	for f in memray_start memray_start_ex memray_stop memray_stats memray_preloaded; do
		grep -q "^int $f(" "$h"
		nm -D "$MEMRAY_BUILD/lib/memray-c/libmemray-tracker.so" | grep -q " T $f$"
	done
	# it compiles on its own
	printf '#include "%s"\nint main(void) { struct memray_stats s; (void)s; return 0; }\n' "$h" > h.c
	cc -std=c99 -Wall -Werror -c h.c
}

@test "memray-record --idle: the tracker loaded, nothing recorded until the program asks; its environment as given" {
	tracker=$(realpath "$MEMRAY_BUILD/lib/memray-c/libmemray-tracker.so")
	LD_PRELOAD= run memray-record --idle /usr/bin/python3 -c '
import os, sys
assert "libmemray-tracker.so" in open("/proc/self/maps").read()
assert os.environ.get("LD_PRELOAD", "") == "", os.environ.get("LD_PRELOAD")
assert "MEMRAY_IDLE" not in os.environ
print("idle ok")
'
	echo "$output"
	assert_success
	assert_output "idle ok"
	# the exit status is the program's; no file is written
	run memray-record --idle /bin/sh -c 'exit 7'
	[ "$status" -eq 7 ]
	[ -z "$(ls)" ]
	# the API works in it, with the hooks preloaded
	run memray-record --idle /usr/bin/python3 "$API" "$tracker" one.bin two.bin
	assert_success
	assert_line "during 6000002 1000001 2 6000002"
	# a user's LD_PRELOAD is kept for the program and given back to it
	# (a sanitizer build of memray-record would refuse a preload before its runtime)
	run env ASAN_OPTIONS=verify_asan_link_order=0 LD_PRELOAD=libm.so.6 memray-record --idle /usr/bin/python3 -c 'import os; print(os.environ["LD_PRELOAD"])'
	assert_output "libm.so.6"
	run memray-record --idle -o x.bin /bin/true
	[ "$status" -eq 2 ]
	assert_output --partial "--idle records nothing by itself: no -o"
	run memray-record --idle --pid 1
	[ "$status" -eq 2 ]
}
