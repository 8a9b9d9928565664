#!/usr/bin/env bats
# memray-stat: the report, JSON, timeline, budgets.

load helper

setup_file() {
	cd "$BATS_FILE_TMPDIR"
	"$BIN/memray-record" -q -o demo.bin "$FIX/demo" > /dev/null
}

@test "the report: command, peak and when, allocator mix, size histogram, top sites" {
	run memray-stat "$BATS_FILE_TMPDIR/demo.bin"
	assert_success
	assert_line --regexp "^command: +.*/fixtures/demo$"
	assert_line --regexp "^peak heap: +[0-9]+ \([0-9.]+ MiB\) at [0-9.]+ s$"
	assert_line --regexp "^  realloc +10000 +381.5 MiB$"
	assert_line --regexp "^  calloc +256 +1.0 MiB$"
	assert_line --regexp "^    1.0 MiB - 2.0 MiB +1 #$"
	assert_line "top 5 sites by bytes allocated:"
	assert_line --regexp "^ +381.5 MiB +10000 allocations  grow_table \(demo.c:13\)$"
	assert_line --regexp "^ +1.0 MiB +1 allocations  leak \(demo.c:31\)$"
	run memray-stat -n 1 "$BATS_FILE_TMPDIR/demo.bin"
	assert_line "top 1 sites by allocations:"
	[ "$(echo "$output" | grep -c ' allocations  ')" = 3 ]
}

@test "--json is valid JSON with the values of the report" {
	memray-stat --json "$BATS_FILE_TMPDIR/demo.bin" > s.json
	python3 -m json.tool s.json > /dev/null
	run python3 -c '
import json, sys
d = json.load(open("s.json"))
assert d["allocations"] == 20258, d["allocations"]
assert d["leaked_bytes"] >= 1048576, d["leaked_bytes"]
assert d["allocators"]["realloc"]["count"] == 10000
assert d["top_by_bytes"][0]["stack"][-1] == "grow_table (demo.c:13)", d["top_by_bytes"][0]
assert d["peak_bytes"] >= 1000000
assert sum(h["count"] for h in d["histogram"]) == d["allocations"]
print("ok")'
	assert_output ok
}

@test "--json escapes hostile names" {
	printf 'def f():\n    return bytearray(30000000)\nf.__code__ = f.__code__.replace(co_name="</script>\\"x\\n")\ntry:\n    f.__code__ = f.__code__.replace(co_qualname="</script>\\"x\\n")\nexcept TypeError:\n    pass\nk = f()\n' > h.py
	memray-record -q -o h.bin /usr/bin/python3 h.py
	memray-stat --json h.bin > h.json
	! grep -q '</script>' h.json || false
	# the name as it was: a newline, not memray-fold's escape of it
	run python3 -c 'import json; d = json.load(open("h.json")); print(repr([f for s in d["top_by_bytes"] for f in s["stack"] if "script" in f][0]))'
	assert_output --regexp "^'</script>\"x\\\\n \(/.*h.py:2\)'$"
	# and a backslash, a semicolon and a tab in a file's name
	mkdir -p 'a\b;c	d'
	printf 'x = bytearray(20000000)\n' > 'a\b;c	d/s.py'
	memray-record -q -f -o s.bin /usr/bin/python3 'a\b;c	d/s.py'
	memray-stat --json s.bin > s.json
	run python3 -c 'import json; d = json.load(open("s.json")); print(repr(d["top_by_bytes"][0]["stack"][-1]))'
	assert_output --regexp "^'<module> \(/.*/a\\\\\\\\b;c\\\\td/s.py:1\)'$"
}

@test "--timeline prints CSV: ms, rss, heap" {
	memray-record -q --interval 20 -o t.bin "$FIX/allocs" sleep 1 > /dev/null
	run memray-stat --timeline t.bin
	assert_line --index 0 "ms,rss,heap"
	[ "${#lines[@]}" -ge 20 ]
	echo "$output" | sed 1d | awk -F, 'NF != 3 || $2 <= 0 { exit 1 }'
}

@test "budgets: --max-peak, --max-leaked, --max-allocations exit 1 naming each one exceeded" {
	f=$BATS_FILE_TMPDIR/demo.bin
	run memray-stat --max-peak 1G --max-leaked 2MiB --max-allocations 100000 "$f"
	assert_success
	run memray-stat --max-peak 1M --max-leaked 1.5KiB --max-allocations 100 "$f"
	assert_failure 1
	assert_line --regexp "^memray-stat: peak heap 2.3 MiB is over the budget of --max-peak 1.0 MiB$"
	assert_line --regexp "^memray-stat: 1.0 MiB still live at the end is over the budget of --max-leaked 1.5 KiB$"
	assert_line "memray-stat: 20258 allocations are over the budget of --max-allocations 100"
	run memray-stat --max-peak 12QB "$f"
	assert_failure 2
	assert_output --partial "invalid --max-peak '12QB'"
	run memray-stat --json --dump "$f"
	assert_failure 2
}

@test "--pid selects a process" {
	f=$BATS_FILE_TMPDIR/demo.bin
	pid=$(memray-stat --dump "$f" | head -1 | awk '{print $2}')
	run memray-stat --json --pid "$pid" "$f"
	assert_success
	assert_output --partial "\"pid\":$pid"
	run memray-stat --pid 1 "$f"
	assert_failure 2
	assert_output "memray-stat: no process 1 in the input"
}

@test "a progress bar on stderr for inputs over 64 MiB, only when stderr is a terminal" {
	command -v script || skip "script(1) is missing"
	memray-record -q -o big.bin "$FIX/allocs" churn 14
	[ "$(stat -c %s big.bin)" -gt $((64 << 20)) ]
	for tool in memray-fold memray-stat memray-leaks; do
		script -qec "$tool big.bin > /dev/null" /dev/null | tr '\r' '\n' > tty.txt
		grep -q "^$tool: big.bin \[#*\.*\]  *[0-9]*%" tty.txt
		# it ends by clearing its line
		tail -c 4 tty.txt | od -c | grep -q '033   \[   K'
	done
	# percentages rise
	grep -o '[0-9]*%$' tty.txt | tr -d % > pcts.txt
	[ "$(wc -l < pcts.txt)" -ge 5 ]
	sort -n -c pcts.txt
	# not a terminal: nothing on stderr
	memray-fold big.bin 2> err.txt > /dev/null
	[ ! -s err.txt ]
	# a small input: no bar even on a terminal
	memray-record -q -o small.bin "$FIX/allocs" chain > /dev/null
	run script -qec "memray-fold small.bin > /dev/null" /dev/null
	assert_output ""
}

@test "--json: the sites by count carry their bytes, as the sites by bytes give them" {
	memray-record -q -o s.bin "$FIX/allocs" alloc malloc > /dev/null
	memray-stat --json -n 50 s.bin | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
by_bytes = {tuple(s["stack"]): s for s in d["top_by_bytes"]}
assert d["top_by_count"], d
for s in d["top_by_count"]:
    b = by_bytes[tuple(s["stack"])]
    assert s["bytes"] == b["bytes"] and s["count"] == b["count"], (s, b)
assert any(s["bytes"] == 984 and s["count"] == 1 for s in d["top_by_count"]), d["top_by_count"]
'
}

@test "--dump: --pid prints that process's records only, a missing one is an error; --top and the budgets are refused" {
	memray-record -q -f --follow-fork -o ff.bin "$FIX/allocs" forkmany 3 > /dev/null
	pids=$(memray-stat --dump ff.bin | awk '$3 == "header" { print $2 }')
	[ "$(echo "$pids" | wc -l)" = 4 ]
	child=$(echo "$pids" | sed -n 2p)
	memray-stat --dump --pid "$child" ff.bin > one.txt
	[ "$(awk '{ print $2 }' one.txt | sort -u)" = "$child" ]
	[ "$(grep -c ' header ' one.txt)" = 1 ]
	run memray-stat --dump --pid 1 ff.bin
	assert_failure 2
	assert_output "memray-stat: no process 1 in the input"
	for o in "-n 3" "--max-peak 1" "--max-leaked 1" "--max-allocations 1"; do
		run memray-stat --dump $o ff.bin
		assert_failure 2
		assert_output "memray-stat: --top and the --max-* budgets are the report's: --dump prints every record"
	done
}

@test "--max-allocations takes digits only: a sign, blanks or a count past 2^64 are refused" {
	for v in ' -1' '-1' '+5' ' 5' 99999999999999999999 ''; do
		run memray-stat --max-allocations "$v" "$BATS_FILE_TMPDIR/demo.bin"
		assert_failure 2
		assert_output --partial "invalid --max-allocations '$v'"
	done
	run memray-stat --max-allocations 18446744073709551615 "$BATS_FILE_TMPDIR/demo.bin"
	assert_success
}

@test "the report's command line: a newline or an escape in an argument is shown escaped, never as a line or on the terminal" {
	memray-record -q -f -o nl.bin /usr/bin/python3 -c pass $'x\npeak heap:       0 (0 B) at 0.000 s\e[31m\\'
	run memray-stat nl.bin
	assert_success
	assert_line 'command:         /usr/bin/python3 -c pass x\npeak heap:       0 (0 B) at 0.000 s\x1b[31m\\'
	[ "$(grep -c '^peak heap' <<< "$output")" = 1 ]
	! grep -q $'\e' <<< "$output" || false
	# a C1 control in UTF-8 (U+009B, a CSI to some terminals) too
	memray-record -q -f -o c1.bin /usr/bin/python3 -c pass $'a\xc2\x9b31mb'
	run memray-stat c1.bin
	assert_line 'command:         /usr/bin/python3 -c pass a\xc2\x9b31mb'
	# JSON has the argument as it was
	memray-stat --json nl.bin > nl.json
	run python3 -c 'import json; print(repr(json.load(open("nl.json"))["command"]))'
	assert_output "'/usr/bin/python3 -c pass x\\npeak heap:       0 (0 B) at 0.000 s\\x1b[31m\\\\'"
}
