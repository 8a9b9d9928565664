#!/usr/bin/env bats
# memray-flame on the command line: what goes into the page. What the page
# does in a browser is tested in 85-flame-browser.bats.

load helper

FLAME_DATA="python3 $BATS_TEST_DIRNAME/../flame_data.py"

# The page must never load anything: no src/href to a network address,
# no @import or url() to one.
self_contained() {
	! grep -Eiq '(src|href)=["'"'"']?(https?:)?//|@import|url\((["'"'"']?)(https?:)?//' "$1" || false
}

@test "collapsed stacks in, one self-contained page out whose data gives them back" {
	printf '# metric: peak\nmain;a;b 600\nmain;a;c 300\nmain;d 100\nmain;a 50\n' > in.folded
	run memray-flame in.folded
	assert_success
	echo "$output" > page.html
	assert_line --index 0 "<!DOCTYPE html>"
	self_contained page.html
	grep -q "Content-Security-Policy\" content=\"default-src 'none'" page.html
	run $FLAME_DATA page.html
	assert_output "main;a 50
main;a;b 600
main;a;c 300
main;d 100"
	run $FLAME_DATA page.html --meta
	assert_output "metric: peak"
	# names are shared: each distinct frame once
	run $FLAME_DATA page.html --json names
	assert_output '["main", "a", "b", "c", "d"]'
}

@test "a stream goes straight in, folded like memray-fold does, with allocation counts" {
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	memray-fold d.bin | memray-flame > via-fold.html
	memray-flame d.bin > direct.html
	diff <($FLAME_DATA via-fold.html) <($FLAME_DATA direct.html)
	run $FLAME_DATA direct.html
	assert_line --partial "fill_cache (demo.c:"
	[ "$($FLAME_DATA direct.html --json counts)" = true ]
	[ "$($FLAME_DATA via-fold.html --json counts)" = true ]
	# counts and live bytes over time travel through the pipe: the same
	# page either way (a stream has the stacks of no value at the peak
	# too, for time ranges, as memray-fold --temporal writes them)
	memray-fold --temporal d.bin | memray-flame > via-temporal.html
	for k in nodes live; do
		a=$($FLAME_DATA via-temporal.html --json $k)
		b=$($FLAME_DATA direct.html --json $k)
		[ -n "$b" ]
		[ "$a" = "$b" ]
	done
	[ "$b" != "[]" ]
	run $FLAME_DATA direct.html --meta
	assert_line --regexp "^command: .*/demo$"
	assert_line --regexp "^timeline: ms,rss,heap [0-9]+,"
	# compressed input too
	gzip -c d.bin | memray-flame > gz.html
	diff <($FLAME_DATA direct.html) <($FLAME_DATA gz.html)
}

@test "frames are classed as Python, native, CPython internal or import system" {
	memray-record -q --native -o h.bin /usr/bin/python3 "$BATS_TEST_DIRNAME/../fixtures/py/hybrid.py"
	memray-fold --all-frames -m total h.bin | memray-flame > h.html
	run $FLAME_DATA h.html --kinds
	assert_line --regexp "^python	make \(.*hybrid.py:4\)$"
	assert_line --regexp "^cpython	_?Py"
	assert_line --regexp "^cpython	0x[0-9a-f]+ \(python3[.0-9]*\)$"
	assert_line --regexp "^native	deflate.* \(libz\.so"
	printf '_find_and_load (<frozen importlib._bootstrap>:1176);_call_with_frames_removed (<frozen importlib._bootstrap>:241);<module> (app.py:1) 5\n' | memray-flame > imp.html
	run $FLAME_DATA imp.html --kinds
	assert_output "import	_find_and_load (<frozen importlib._bootstrap>:1176)
import	_call_with_frames_removed (<frozen importlib._bootstrap>:241)
python	<module> (app.py:1)"
}

@test "input from other tools: heaptrack_print -F and perf-style collapsed stacks" {
	command -v heaptrack > /dev/null || skip "heaptrack is not installed"
	heaptrack -o ht "$FIX/demo" > /dev/null 2>&1
	heaptrack_print -F ht.folded ht.zst > /dev/null
	memray-flame --countname allocations ht.folded > ht.html 2> err.txt
	[ ! -s err.txt ]
	run $FLAME_DATA ht.html
	assert_line --partial "fill_cache"
	[ "$($FLAME_DATA ht.html --json countname)" = '"allocations"' ]
	printf 'swapper;start_kernel;rest_init 10\nbash;main;execute_command 3\n' | memray-flame -c samples > perf.html
	run $FLAME_DATA perf.html
	assert_output "bash;main;execute_command 3
swapper;start_kernel;rest_init 10"
}

@test "malformed lines are counted on stderr and never fatal" {
	printf 'main;a 10\nno count here\nmain;b 1.5\nmain;c 5\n#not metadata\n' > in.folded
	run memray-flame in.folded
	assert_success
	assert_line "memray-flame: in.folded: 2 malformed lines skipped"
	memray-flame in.folded > page.html 2> /dev/null
	run $FLAME_DATA page.html
	assert_output "main;a 10
main;c 5"
}

@test "hostile names and titles stay text: no markup, no early </script>, invalid UTF-8 shown as \\xNN" {
	printf 'main;</script><script>alert(1)</script> 10\nmain;"onmouseover=alert(2) x 5\nmain;bad\xff\xfebytes 3\nmain;tab\there 2\n' > evil.folded
	memray-flame --title '<b>T&"</b>' --subtitle "<img src=x onerror=alert(3)>" evil.folded > evil.html
	# the only </script> closing tags are the page's own two
	[ "$(grep -o '</script>' evil.html | wc -l)" -eq 2 ]
	! grep -q '<script>alert' evil.html || false
	! grep -q '<img' evil.html || false
	grep -q '<title>&lt;b&gt;T&amp;&quot;&lt;/b&gt;</title>' evil.html
	grep -q '&lt;img src=x onerror=alert(3)&gt;' evil.html
	# the data is valid JSON and gives the names back as they were
	run $FLAME_DATA evil.html
	assert_success
	assert_line 'main;</script><script>alert(1)</script> 10'
	assert_line 'main;"onmouseover=alert(2) x 5'
	assert_line 'main;bad\xff\xfebytes 3'
	assert_line "main;tab	here 2"
	# and the file is valid UTF-8 throughout
	iconv -f UTF-8 -t UTF-8 evil.html > /dev/null
}

@test "--min-width and --max-frames prune small frames, keep their bytes in the callers, and say so" {
	{ for i in $(seq 1 200); do echo "main;small_$i 1"; done; echo "main;big 800"; } > many.folded
	memray-flame many.folded > all.html
	[ "$($FLAME_DATA all.html --json pruned)" -eq 0 ]
	run memray-flame --min-width 1 many.folded
	assert_success
	assert_line "memray-flame: 200 frames too small to show left out (20% of the total; see --min-width and --max-frames)"
	memray-flame --min-width 1 many.folded > pruned.html 2> /dev/null
	[ "$($FLAME_DATA pruned.html --json pruned)" -eq 200 ]
	[ "$($FLAME_DATA pruned.html --json prunedValue)" -eq 200 ]
	run $FLAME_DATA pruned.html
	assert_output "main 200
main;big 800"
	memray-flame --max-frames 2 many.folded > budget.html 2> /dev/null
	[ "$($FLAME_DATA budget.html --json pruned)" -eq 200 ]
	memray-flame --max-frames 1 many.folded > one.html 2> /dev/null
	run $FLAME_DATA one.html
	assert_output "main 1000"
	# frames of equal value at the cut: the budget is used, shallowest first
	{ for p in 1 2 3; do for i in $(seq 1 100); do echo "main;p$p;leaf_$i 1"; done; done; } > flat.folded
	memray-flame --max-frames 250 flat.folded > flat.html 2> /dev/null
	[ "$($FLAME_DATA flat.html --json pruned)" -eq $((304 - 250)) ]
	# --min-width is a floor: 1% of 150 keeps 2, never 1
	printf 'a 148\nb 1\nc 1\n' > mw.folded
	memray-flame -w 1 mw.folded > mw.html 2> /dev/null
	run $FLAME_DATA mw.html
	assert_output " 2
a 148"
}

@test "inputs of different metrics are merged with a warning; values past 2^64 are refused" {
	printf '# metric: count\nmain;a 10\n' > c.folded
	printf '# metric: peak\nmain;a 10\n' > p.folded
	run memray-flame c.folded p.folded
	assert_success
	assert_line "memray-flame: inputs of different metrics (count, peak) are added together"
	printf 'a 9999999999999999999\nb 9999999999999999999\n' > big.folded
	run memray-flame big.folded
	assert_failure 2
	assert_line --partial "add up to more than 2^64"
}

@test "--title, --subtitle, --countname, --inverted reach the page" {
	printf 'main;a 10\n' > in.folded
	memray-flame --title "My run" --subtitle "after the fix" -c samples --inverted in.folded > p.html
	grep -q '<title>My run</title>' p.html
	grep -q '<p id="subtitle">after the fix</p>' p.html
	[ "$($FLAME_DATA p.html --json countname)" = '"samples"' ]
	[ "$($FLAME_DATA p.html --json inverted)" = true ]
	printf '# metric: count\nmain;a 10\n' | memray-flame > c.html
	[ "$($FLAME_DATA c.html --json countname)" = '"allocations"' ]
}

@test "bad options and unreadable input exit 2" {
	run memray-flame --min-width x
	assert_failure 2
	assert_output --partial "invalid --min-width 'x'"
	run memray-flame --max-frames 0
	assert_failure 2
	run memray-flame --countname ''
	assert_failure 2
	run memray-flame --bogus
	assert_failure 2
	run memray-flame no-such.folded
	assert_failure 2
	assert_output --partial "cannot open 'no-such.folded'"
	# a damaged stream: the page is still written from what was read
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	head -c 20000 d.bin > cut.bin
	run memray-flame cut.bin
	assert_failure 2
	assert_line --partial "truncated at byte"
	assert_line --index 1 "<!DOCTYPE html>"
}

@test "what memray-fold says of each stack reaches the page: counts, threads, source lines; sorted input is noticed" {
	memray-record -q -o t.bin /usr/bin/python3 "$BATS_TEST_DIRNAME/../fixtures/py/threads.py"
	memray-fold -m total t.bin > t.folded
	memray-flame t.folded > t.html
	[ "$($FLAME_DATA t.html --json counts)" = true ]
	# the threads as memray-fold names them, each one's values adding up to the total
	$FLAME_DATA t.html --json threads | python3 -c '
import json, sys
t = json.load(sys.stdin)
assert len(t) == 3 and all("(thread " in label for _, label in t), t'
	total=$(grep -v '^#' t.folded | awk '{ s += $NF } END { print s }')
	[ "$($FLAME_DATA t.html --json parts | python3 -c 'import json, sys; p = json.load(sys.stdin); print(sum(p[2::4]))')" = "$total" ]
	grep -q 't.start()' t.html
	# sorted, the annotations are no longer before their stacks
	sort t.folded | memray-flame > s.html 2> err.txt
	grep -q "memray-flame: warning: <stdin>: its '# stack.' lines are not each before their stack (was it sorted?)" err.txt
	[ "$(wc -l < err.txt)" = 1 ]
	[ "$($FLAME_DATA s.html --json counts)" = false ]
	diff <($FLAME_DATA t.html) <($FLAME_DATA s.html)
	# lines it does not understand are said and left out, the stacks kept
	printf '# thread="x"\n# stack.count=5\n# stack.threads="1:5:5 2:x"\n# stack.live="1:1:5:1 bad"\na;b 5\n' > bad.folded
	run memray-flame bad.folded
	assert_success
	assert_line "memray-flame: warning: bad.folded: 3 '# stack.' or '# thread=' lines not understood, left out"
	memray-flame bad.folded > bad.html 2> /dev/null
	[ "$($FLAME_DATA bad.html)" = "a;b 5" ]
	[ "$($FLAME_DATA bad.html --json counts)" = true ]
}
