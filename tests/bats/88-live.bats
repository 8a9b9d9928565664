#!/usr/bin/env bats
# memray-live: a stream watched while it is written.

load helper

STEPS=$BATS_TEST_DIRNAME/../fixtures/py/steps.py

# the heap values of batch lines, in MiB, one per line
heaps() {
	sed -n 's/^[0-9.]*s heap \([0-9.]*\) MiB .*/\1/p' "$1"
}

@test "--batch on a pipe: the heap's steps in order, then the end" {
	memray-record /usr/bin/python3 "$STEPS" 0.3 2> /dev/null | memray-live --batch --interval 100 > live.txt
	cat live.txt
	heaps live.txt > heaps.txt
	# it grows and never shrinks while the program runs: up to the first
	# line at the highest heap, near 50 MB (lines after it may show the
	# program's shutdown, which frees the buffers before the stream ends,
	# when the machine is slow)
	top=$(sort -n heaps.txt | tail -1)
	awk -v top="$top" 'BEGIN { exit !(top >= 47.7 && top < 56) }'
	awk -v top="$top" '{ print } $1 == top { exit }' heaps.txt > steps.txt
	sort -n -c steps.txt
	# at least four distinct levels seen on the way there
	[ "$(sort -u steps.txt | wc -l)" -ge 4 ]
	grep -q "steps.py:9)" live.txt
	# the end line: the peak holds the five buffers (47.7 MiB) and little else
	peak=$(sed -n 's/^end .* peak \([0-9.]*\) MiB .*/\1/p' live.txt)
	[ -n "$peak" ]
	awk -v p="$peak" 'BEGIN { exit !(p >= 47.7 && p < 56) }'
	[ "$(tail -1 live.txt)" = "the program has ended" ]
}

@test "a file is followed as it grows, until the program ends" {
	memray-record -q -o s.bin /usr/bin/python3 "$STEPS" 0.3 &
	sleep 0.3
	run timeout 30 memray-live -b -i 150 s.bin
	wait
	assert_success
	assert_line "the program has ended"
	[ "$(echo "$output" | heaps /dev/stdin | sort -u | wc -l)" -ge 3 ]
}

@test "the screen in a terminal: the top site, s switches the order, q quits and restores the terminal" {
	command -v tmux > /dev/null || skip "tmux is missing"
	memray-record -q -o s.bin /usr/bin/python3 "$STEPS" 0.2 &
	rec=$!
	sleep 0.3
	tmux -L memray-test-$$ new-session -d -x 150 -y 40 \
		"memray-live -i 100 s.bin; echo exit=\$? > '$BATS_TEST_TMPDIR/exit.txt'; sleep 3"
	# pane FILE PATTERN: captures the pane into FILE until PATTERN shows
	# (at most 10 s), so that a busy machine only makes it slower
	pane() {
		for _ in $(seq 100); do
			tmux -L memray-test-$$ capture-pane -p > "$1"
			grep -q "$2" "$1" && return 0
			sleep 0.1
		done
	}
	pane pane1.txt "steps.py:9)"
	tmux -L memray-test-$$ send-keys s
	pane pane2.txt "top sites by total bytes"
	tmux -L memray-test-$$ send-keys q
	for _ in $(seq 100); do [ -s exit.txt ] && break; sleep 0.1; done
	tmux -L memray-test-$$ capture-pane -p > pane3.txt
	tmux -L memray-test-$$ kill-server 2> /dev/null || true
	kill $rec 2> /dev/null || true
	wait $rec 2> /dev/null || true
	cat pane1.txt
	grep -q "top sites by live bytes" pane1.txt
	grep -q "steps.py:9)" pane1.txt
	grep -q "heap [0-9.]* MiB *peak" pane1.txt
	grep -q "top sites by total bytes" pane2.txt
	[ "$(cat exit.txt)" = "exit=0" ]
	# back on the main screen: none of the view is left
	! grep -q "top sites" pane3.txt || false
}

@test "bad options, a missing file, a damaged stream" {
	run memray-live --interval 1
	assert_failure 2
	assert_output --partial "invalid --interval '1'"
	run memray-live --top 0
	assert_failure 2
	run memray-live a b
	assert_failure 2
	run memray-live no-such.bin
	assert_failure 2
	assert_output --partial "cannot open 'no-such.bin'"
	printf 'not a stream at all' | { run memray-live -b; echo "$status" > st.txt; echo "$output" > out.txt; }
	[ "$(cat st.txt)" = 2 ]
	grep -q "not a memray stream" out.txt
}
