#!/usr/bin/env bats
# memray-diff: two runs in, the difference out; memray-flame draws it.

load helper

BUFS=$BATS_TEST_DIRNAME/../fixtures/py/buffers.py
# frames read relative to the directory of the run's own files
SITE="make.<locals>.<listcomp> (buffers.py:8)"

# two recordings of the script, the second with one buffer more
record_runs() {
	PYTHONHASHSEED=0 memray-record -q -o before.bin /usr/bin/python3 "$BUFS" 3 > /dev/null
	PYTHONHASHSEED=0 memray-record -q -o after.bin /usr/bin/python3 "$BUFS" 4 > /dev/null
}

# the two counts of the line whose stack ends with SITE
counts_of_site() {
	grep -F "$SITE " "$1" | awk '{ print $(NF - 1), $NF }'
}

@test "two recordings: the site that allocates one more buffer grows by exactly its size" {
	record_runs
	run memray-diff before.bin after.bin
	assert_success
	echo "$output" > d.folded
	assert_line --index 0 '# metric="peak"'
	assert_line --index 1 '# diff="before after"'
	[ "$(grep -cF "$SITE " d.folded)" -eq 1 ]
	read -r b a <<< "$(counts_of_site d.folded)"
	[ "$b" -eq 3000003 ]
	[ "$a" -eq 4000004 ]
	# every line: a stack and two integers, sorted by stack
	grep -v '^#' d.folded | grep -Evq ' [0-9]+ [0-9]+$' && false
	grep -v '^#' d.folded | awk '{ $NF = ""; $(NF - 1) = ""; print }' | LC_ALL=C sort -c
}

@test "--report: totals, and that site among the growers with its exact growth" {
	record_runs
	run memray-diff --report before.bin after.bin
	assert_success
	assert_line --index 0 "metric:  peak"
	assert_line --regexp "^before: +[0-9.]+ [KMG]iB +before.bin$"
	assert_line --regexp "^after: +[0-9.]+ [KMG]iB +after.bin$"
	assert_line --regexp "^  \+976.6 KiB +\(2.9 MiB -> 3.8 MiB, \+1000001\)  make.<locals>.<listcomp> \(buffers.py:8\) <- make \(buffers.py:8\) <- <module> \(buffers.py:11\)$"
	assert_line "grew most:"
	assert_line "shrank most:"
	# with --top 1 only the biggest change of each kind
	run memray-diff -r -n 1 before.bin after.bin
	assert_success
	n=$(echo "$output" | grep -c '^  [+-]')
	[ "$n" -ge 1 ]
	[ "$n" -le 2 ]
}

@test "collapsed stacks in, from any tool; the metric of streams is chosen with -m" {
	printf 'a;b 10\na;c 5\n' > one.folded
	printf 'a;b 12\na;d 7\n' > two.folded
	run memray-diff one.folded two.folded
	assert_success
	assert_output "# diff=\"before after\"
a;b 10 12
a;c 5 0
a;d 0 7"
	record_runs
	memray-diff -m count before.bin after.bin > counts.folded
	head -1 counts.folded | grep -qx '# metric="count"'
	read -r b a <<< "$(counts_of_site counts.folded)"
	[ "$b" -eq 3 ]
	[ "$a" -eq 4 ]
	# a stream against collapsed stacks of the other run
	memray-fold before.bin > before.folded
	memray-diff before.folded after.bin > mixed.folded
	read -r b a <<< "$(counts_of_site mixed.folded)"
	[ "$b" -eq 3000003 ]
	[ "$a" -eq 4000004 ]
	# different metrics are reported
	run memray-diff counts.folded after.bin
	assert_output --partial "the runs measure different things"
}

@test "memray-tree and memray-flame read the differential stacks" {
	printf 'a;b 10 12\na;c 5 0\n' > d.folded
	run memray-tree d.folded
	assert_success
	assert_line --partial "12 B (100.0%) a"
	memray-flame d.folded > d.html
	grep -q '"diff":true' d.html
	# a differential line among plain ones is refused
	printf 'a;b 10\na;c 5 7\n' > bad.folded
	run memray-flame bad.folded
	[ "$status" -eq 2 ]
	assert_output --partial "differential stacks (two counts) mixed with plain ones"
}

@test "browser: the differential flame graph: widths, colours, the grown site's tooltip" {
	[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || skip "Chromium is not installed (make deps installs it)"
	record_runs
	memray-diff before.bin after.bin | memray-flame --title "3 -> 4 buffers" > d.html
	python3 "$BATS_TEST_DIRNAME/../browser/flame_check.py" diff d.html "$SITE" 1000001
}

@test "mistakes: one input, three, both on stdin, a missing file, bad options" {
	run memray-diff a.folded
	[ "$status" -eq 2 ]
	assert_output --partial "two runs are needed: BEFORE and AFTER"
	run memray-diff a b c
	[ "$status" -eq 2 ]
	assert_output --partial "too many inputs"
	run memray-diff - -
	[ "$status" -eq 2 ]
	assert_output --partial "only one of BEFORE and AFTER can be standard input"
	printf 'a 1\n' > one.folded
	run memray-diff one.folded missing.folded
	[ "$status" -eq 2 ]
	assert_output --partial "missing.folded"
	run memray-diff -m nope one.folded one.folded
	[ "$status" -eq 2 ]
	assert_output --partial "unknown metric 'nope'"
	run memray-diff -n 0 one.folded one.folded
	[ "$status" -eq 2 ]
	run memray-diff --bogus one.folded one.folded
	[ "$status" -eq 2 ]
}

# ---- runs from different checkouts --------------------------------------------

PROJ=$BATS_TEST_DIRNAME/../fixtures/py/checkout

# the project copied to a/proj and b/checkout2/proj (c/proj: its lines
# moved by blank lines added at the top of each module), each recorded
record_checkouts() {
	mkdir -p a b/checkout2 c
	cp -r "$PROJ" a/proj
	cp -r "$PROJ" b/checkout2/proj
	cp -r "$PROJ" c/proj
	for f in app.py store.py codec/text.py; do
		{ printf '\n\n\n'; cat "$PROJ/$f"; } > "c/proj/$f"
	done
	for d in a/proj b/checkout2/proj c/proj; do
		PYTHONHASHSEED=0 memray-record -q -o "${d%%/*}.bin" /usr/bin/python3 "$d/app.py" > /dev/null
	done
}

# project_lines FILE: the differential lines of stacks through app.py
project_lines() {
	grep -F 'app.py' "$1" | grep -v '^#'
}

# all_unchanged FILE: at least N lines of the project, each the same in both runs
all_unchanged() {
	project_lines "$1" > p.txt
	[ "$(wc -l < p.txt)" -ge "$2" ] || { cat "$1"; return 1; }
	awk '$(NF - 1) != $NF || $NF == 0 { print "changed: " $0; bad = 1 } END { exit bad }' p.txt
}

@test "the same code in two checkouts compares unchanged: paths relative to each run's root" {
	record_checkouts
	memray-diff a.bin b.bin > ab.folded
	all_unchanged ab.folded 4
	# the frames read relative to the root, in the collapsed form
	grep -qF '<module> (app.py:17);main (app.py:13);Store.put (store.py:6) 300003 300003' ab.folded
	grep -qF '<module> (app.py:17);main (app.py:13);encode (codec/text.py:2) 600006 600006' ab.folded
	! grep -q "$PWD" ab.folded || false
	run memray-diff --report a.bin b.bin
	assert_success
	assert_line "root:    $PWD/a/proj (before), $PWD/b/checkout2/proj (after)"
	# near everything unchanged: nothing of the project new or gone (a
	# pymalloc arena may open at another place when paths differ in length)
	assert_line --regexp '^stacks:  [0-9]+ grew \([0-2] new\), [0-9]+ shrank \([0-2] gone\), [0-9]+ unchanged$'
	! echo "$output" | grep -q 'app.py' || false
	# collapsed stacks in, from memray-fold: the same
	memray-fold a.bin > a.folded
	memray-fold b.bin > b.folded
	memray-diff a.folded b.folded > ab2.folded
	diff <(project_lines ab.folded) <(project_lines ab2.folded)
	memray-diff a.folded b.bin > ab3.folded
	diff <(project_lines ab.folded) <(project_lines ab3.folded)
	# and memray-flame draws it
	memray-flame ab.folded | grep -q '"diff":true'
}

@test "--strip-prefix DIR: explicit roots, for both runs, instead of the common prefix" {
	record_checkouts
	memray-diff --strip-prefix "$PWD/a" --strip-prefix "$PWD/b/checkout2/" a.bin b.bin > ab.folded
	all_unchanged ab.folded 4
	grep -qF '<module> (proj/app.py:17);main (proj/app.py:13);Store.put (proj/store.py:6) 300003 300003' ab.folded
	run memray-diff -r --strip-prefix "$PWD/a" --strip-prefix "$PWD/b/checkout2/" a.bin b.bin
	assert_line "root:    --strip-prefix $PWD/a, $PWD/b/checkout2"
	# a root that matches neither run: the paths stay whole, and nearly
	# everything is new or gone (what memray-diff did before roots)
	memray-diff --strip-prefix /nonexistent a.bin b.bin > whole.folded
	grep -qF "Store.put ($PWD/a/proj/store.py:6) 300003 0" whole.folded
	grep -qF "Store.put ($PWD/b/checkout2/proj/store.py:6) 0 300003" whole.folded
	run memray-diff --strip-prefix '' a.bin b.bin
	assert_failure 2
	assert_output --partial "invalid --strip-prefix '': expected a directory"
}

@test "--ignore-lines: code whose lines moved still matches; without it, it does not" {
	record_checkouts
	memray-diff a.bin c.bin > ac.folded
	project_lines ac.folded > p.txt
	grep -qF 'Store.put (store.py:9) 0 300003' p.txt
	grep -qF 'Store.put (store.py:6) 300003 0' p.txt
	memray-diff --ignore-lines a.bin c.bin > ac.folded
	all_unchanged ac.folded 4
	grep -qF '<module> (app.py);main (app.py);Store.put (store.py) 300003 300003' ac.folded
	# lines are gone from every frame, the interpreter's own too
	grep -v '^#' ac.folded | awk '{ $NF = ""; $(NF - 1) = ""; print }' | grep -q ':[0-9]' && false
	run memray-diff --report --ignore-lines a.bin c.bin
	assert_line "lines:   ignored"
	assert_line --regexp '^stacks:  [0-9]+ grew \([0-2] new\), [0-9]+ shrank \([0-2] gone\), [0-9]+ unchanged$'
}

@test "library paths match across interpreter locations; frames' own text is parsed, not guessed" {
	{
		echo '<module> (/home/alice/proj/app.py:3);loads (/usr/lib/python3.11/json/__init__.py:346);decode (/usr/lib/python3.11/json/decoder.py:337) 100'
		echo '<module> (/home/alice/proj/app.py:3);get (/usr/lib/python3/dist-packages/requests/api.py:73) 7'
		echo 'main (/home/alice/proj (copy)/tool.py:1);std::function<void (int)> (libfoo.so) 5'
		echo '[unknown] 2'
		echo 'f (<frozen importlib._bootstrap>:1178);g (file.c:42) 1'
	} > alice.folded
	# the root is what the run's own paths share: /home/alice/, /ci/build/
	{
		echo '<module> (/ci/build/proj/app.py:3);loads (/opt/py/lib/python3.12/json/__init__.py:346);decode (/opt/py/lib/python3.12/json/decoder.py:337) 100'
		echo '<module> (/ci/build/proj/app.py:3);get (/ci/venv/lib/python3.12/site-packages/requests/api.py:73) 7'
		echo 'main (/ci/build/proj (copy)/tool.py:1);std::function<void (int)> (libfoo.so) 5'
		echo '[unknown] 2'
		echo 'f (<frozen importlib._bootstrap>:1179);g (file.c:43) 1'
	} > ci.folded
	run memray-diff alice.folded ci.folded
	assert_success
	assert_output '# diff="before after"
<module> (proj/app.py:3);get (requests/api.py:73) 7 7
<module> (proj/app.py:3);loads (json/__init__.py:346);decode (json/decoder.py:337) 100 100
[unknown] 2 2
f (<frozen importlib._bootstrap>:1178);g (file.c:42) 1 0
f (<frozen importlib._bootstrap>:1179);g (file.c:43) 0 1
main (proj (copy)/tool.py:1);std::function<void (int)> (libfoo.so) 5 5'
	run memray-diff --ignore-lines alice.folded ci.folded
	assert_line 'f (<frozen importlib._bootstrap>);g (file.c) 1 1'
	assert_line '<module> (proj/app.py);loads (json/__init__.py);decode (json/decoder.py) 100 100'
}
