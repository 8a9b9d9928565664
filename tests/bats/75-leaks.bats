#!/usr/bin/env bats
# memray-leaks: what is still live at the end, by stack.

load helper

@test "churn plus one 2048-byte block never freed: exactly one leak of 2048" {
	memray-record -q -o l.bin "$FIX/peaks" leak
	run bash -c "memray-leaks l.bin | grep -v '^#'"
	assert_output --regexp "main \(peaks.c:[0-9]+\) 2048$"
	[ "${#lines[@]}" = 1 ]
	run memray-leaks --report l.bin
	assert_success
	assert_line "2048 bytes (2.0 KiB) leaked in 1 allocations from 1 sites"
	assert_line "2048 bytes (2.0 KiB) in 1 allocation at:"
	assert_line --regexp "^    main \(peaks.c:[0-9]+\)$"
}

@test "no leaks: empty output, --fail passes" {
	memray-record -q -o n.bin "$FIX/peaks" two-rounds
	run memray-leaks --fail n.bin
	assert_success
	refute_line --regexp '^[^#]'
	assert_line '# metric="leaked"'
}

@test "--fail exits 1 naming the leaked bytes; suppressions in leak:PATTERN form remove them" {
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	run memray-leaks --fail d.bin
	assert_failure 1
	assert_output --partial "memray-leaks: 1052672 bytes leaked in 2 allocations"
	printf '# stdio buffers\nleak:_IO_file_doallocate\n\nleak:^leak$\n' > supp.txt
	run memray-leaks --fail --suppressions supp.txt d.bin
	assert_success
	assert_output --partial "suppressed 4096 bytes in 1 allocations by leak:_IO_file_doallocate"
	assert_output --partial "suppressed 1048576 bytes in 1 allocations by leak:^leak$"
	# an anchored pattern does not match a longer name; a file name matches
	printf 'leak:^lea$\n' > supp2.txt
	run bash -c "memray-leaks -s supp2.txt d.bin 2>/dev/null | grep -c ' 1048576$'"
	assert_output 1
	printf 'leak:demo.c\n' > supp3.txt
	run --separate-stderr memray-leaks -s supp3.txt d.bin
	assert_success
	refute_line --regexp '^[^#]'
	run memray-leaks -s no-such-file d.bin
	assert_failure 2
	assert_output --partial "cannot open 'no-such-file'"
}

@test "a Python leak, with the pymalloc warning unless every object was traced" {
	# os._exit: no interpreter shutdown freeing everything, as in a server
	printf 'import os\ncache = []\ndef remember():\n    cache.append(bytearray(606060))\nremember()\nos._exit(0)\n' > leak.py
	memray-record -q -o p.bin /usr/bin/python3 leak.py
	run memray-leaks p.bin
	assert_output --partial "warning: pymalloc was active"
	assert_line --regexp '^<module> \(/[^;]*/leak.py:5\);remember \(/[^;]*/leak.py:4\) 606061$'
	memray-record -q -o t.bin --trace-python-allocators /usr/bin/python3 leak.py
	run bash -c "memray-leaks t.bin 2>&1 >/dev/null"
	assert_success
	refute_output --partial "pymalloc"
}

@test "--report -n limits the sites; bad options exit 2" {
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	run memray-leaks --report -n 1 d.bin
	assert_line "... and 1 more sites"
	run memray-leaks -n 0 d.bin
	assert_failure 2
	run memray-leaks --bogus d.bin
	assert_failure 2
}

@test "a suppressions file that cannot be read (a directory) is an error, exit 2" {
	memray-record -q -o l.bin "$FIX/peaks" leak
	mkdir sd
	run memray-leaks -s sd l.bin
	assert_failure 2
	assert_output "memray-leaks: cannot read 'sd': Is a directory"
}

@test "suppression patterns: only '*' is a wildcard; brackets, '?' and backslashes are themselves (a label is no class of characters)" {
	memray-record -q -f -o lk.bin /usr/bin/python3 -c 'import os
keep = [bytearray(1000000) for _ in range(3)]
os._exit(0)'
	total=$(memray-leaks lk.bin 2> /dev/null | grep -v '^#' | awk '{ n += $NF } END { print n }')
	start=$(memray-leaks lk.bin 2> /dev/null | grep '^\[Python start-up\]' | awk '{ n += $NF } END { print n + 0 }')
	[ "$start" -gt 0 ]
	[ "$total" -gt $((start + 3000000)) ]
	printf 'leak:[Python start-up]\n' > s.supp
	run bash -c 'memray-leaks --fail -s s.supp lk.bin 2>&1 > /dev/null'
	assert_failure 1
	assert_line --regexp "^memray-leaks: suppressed $start bytes in [0-9]+ allocations by leak:\[Python start-up\]$"
	assert_line --partial "bytes leaked in"
	left=$(memray-leaks -s s.supp lk.bin 2> /dev/null | grep -v '^#' | awk '{ n += $NF } END { print n }')
	[ "$left" = $((total - start)) ]
	# '?' is no wildcard: nothing matches '<modul?>'
	printf 'leak:<modul?>\n' > q.supp
	left=$(memray-leaks -s q.supp lk.bin 2> /dev/null | grep -v '^#' | awk '{ n += $NF } END { print n }')
	[ "$left" = "$total" ]
	# '*' is
	printf 'leak:<modul*>\n' > star.supp
	left=$(memray-leaks -s star.supp lk.bin 2> /dev/null | grep -v '^#' | awk '{ n += $NF } END { print n }')
	[ "$left" -lt $((total - 3000000)) ]
}
