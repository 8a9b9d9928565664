#!/usr/bin/env bats
# Reading streams: pipes, files, compression, damage.

load helper

setup_file() {
	cd "$BATS_FILE_TMPDIR"
	"$BIN/memray-record" -q -o small.bin "$FIX/allocs" none
	"$BIN/memray-record" -q -o demo.bin "$FIX/demo" > /dev/null
}

@test "the same recording read from a pipe and from a file gives identical dumps" {
	dump "$BATS_FILE_TMPDIR/demo.bin" > file.txt
	cat "$BATS_FILE_TMPDIR/demo.bin" | memray-stat --dump > pipe.txt
	cat "$BATS_FILE_TMPDIR/demo.bin" | memray-stat --dump - > dash.txt
	[ "$(wc -l < file.txt)" -gt 1000 ]
	cmp file.txt pipe.txt
	cmp file.txt dash.txt
}

@test "compressed streams (gzip, zstd, xz, bzip2) read the same as plain, by content" {
	f=$BATS_FILE_TMPDIR/demo.bin
	dump "$f" > plain.txt
	for z in gzip zstd xz bzip2; do
		command -v $z > /dev/null || continue
		$z -c "$f" > demo.$z.data
		dump demo.$z.data > $z.txt
		cmp plain.txt $z.txt
	done
}

@test "a compressed recording cut short gives all that gzip and zstd decode before the cut" {
	f=$BATS_FILE_TMPDIR/demo.bin
	# gzip: memray-record's own; what gzip -d gives of the cut file is the
	# reference
	memray-record -q --compress=gzip -o demo.gz "$FIX/demo" > /dev/null
	zsize=$(stat -c %s demo.gz)
	for part in 1 2 3; do
		cut=$((zsize * part / 4))
		head -c $cut demo.gz > cut.gz
		gzip -dc cut.gz > ref.bin 2> /dev/null || true
		memray-stat --dump ref.bin > want.txt 2> /dev/null || true
		[ "$(wc -l < want.txt)" -gt $((part * 100)) ]
		st=0
		memray-stat --dump cut.gz > got.txt 2> err.txt || st=$?
		[ "$st" = 2 ] || { echo "gzip cut at $cut: exit $st"; cat err.txt; false; }
		grep -q "^memray-stat: cut.gz: " err.txt
		cmp want.txt got.txt || { echo "gzip cut at $cut: $(wc -l < got.txt) lines, gzip -d gives $(wc -l < want.txt)"; false; }
	done
	# zstd: a frame per 8 KiB of the stream, as a recorder that flushes
	# writes it; cut within frame k + 1, the first k frames' bytes are the
	# reference (zstd -d gives nothing of a cut file)
	split -b 8192 -d -a 3 "$f" piece.
	: > demo.zst
	n=0
	for p in piece.*; do
		zstd -q -c "$p" >> demo.zst
		n=$((n + 1))
		echo "$(stat -c %s demo.zst)" >> ends.txt
	done
	[ $n -gt 8 ]
	for k in 2 5 8; do
		from=$(sed -n "${k}p" ends.txt)
		to=$(sed -n "$((k + 1))p" ends.txt)
		head -c $(((from + to) / 2)) demo.zst > cut.zst
		head -c $((k * 8192)) "$f" > ref.bin
		memray-stat --dump ref.bin > want.txt 2> /dev/null || true
		[ "$(wc -l < want.txt)" -gt $((k * 50)) ]
		st=0
		memray-stat --dump cut.zst > got.txt 2> err.txt || st=$?
		[ "$st" = 2 ] || { echo "zstd cut in frame $((k + 1)): exit $st"; cat err.txt; false; }
		grep -q "^memray-stat: cut.zst: " err.txt
		cmp want.txt got.txt || { echo "zstd cut in frame $((k + 1)): $(wc -l < got.txt) lines, want $(wc -l < want.txt)"; false; }
	done
	# cut within the first block: nothing to give, and said so (it had
	# read as an empty input)
	head -c 100 demo.gz > tiny.gz
	run memray-stat tiny.gz
	assert_failure 2
	refute_output --partial "empty input"
	assert_output --partial "tiny.gz"
	head -c 2000 demo.zst > tiny.zst
	run memray-stat tiny.zst
	assert_failure 2
	assert_output --partial "tiny.zst: read error at byte 0: the zstd data ends early"
}

@test "a compressed file damaged or followed by something else says so after what it held" {
	f=$BATS_FILE_TMPDIR/demo.bin
	gzip -c "$f" > demo.gz
	dump "$f" > full.txt
	{ cat demo.gz; echo trailing; } > tail.gz
	run memray-stat --dump tail.gz
	assert_failure 2
	assert_output --partial "tail.gz: read error at byte $(stat -c %s "$f"): data that is not gzip's after the gzip data"
	memray-stat --dump tail.gz 2> /dev/null > got.txt || true
	cmp full.txt got.txt
	# two recordings' gzip members one after the other read as both
	cat demo.gz demo.gz > two.gz
	run memray-stat two.gz
	assert_success
	# a byte changed in the middle of the deflate data
	cp demo.gz bad.gz
	printf '\xff\xff\xff\xff' | dd of=bad.gz bs=1 seek=$(($(stat -c %s demo.gz) / 2)) conv=notrunc 2> /dev/null
	run memray-stat bad.gz
	assert_failure 2
	assert_output --partial "bad.gz"
}

@test "truncation at every byte offset never crashes the reader and always reports where" {
	f=$BATS_FILE_TMPDIR/small.bin
	size=$(stat -c %s "$f")
	[ "$size" -gt 500 ]
	for ((i = 0; i < size; i++)); do
		head -c $i "$f" > cut.bin
		st=0
		memray-stat --dump cut.bin > out.txt 2> err.txt || st=$?
		[ "$st" = 2 ] || { echo "offset $i: exit $st"; cat err.txt; false; }
		if [ $i = 0 ]; then
			grep -q "memray-stat: cut.bin: empty input" err.txt
			continue
		fi
		n=$(sed -n 's/.*truncated at byte \([0-9]*\).*/\1/p' err.txt)
		[ -n "$n" ] && [ "$n" -le "$i" ] || { echo "offset $i: $(cat err.txt)"; false; }
		# every record printed starts before the cut
		awk -v i=$i '$1 >= i { exit 1 }' out.txt
	done
	memray-stat --dump "$f" > /dev/null
}

@test "what was read before the damage is printed before the error" {
	f=$BATS_FILE_TMPDIR/demo.bin
	dump "$f" > full.txt
	head -c 3000 "$f" > cut.bin
	run memray-stat --dump cut.bin
	assert_failure 2
	n=$(memray-stat --dump cut.bin 2>/dev/null | wc -l)
	[ "$n" -gt 20 ]
	diff <(memray-stat --dump cut.bin 2>/dev/null) <(head -n $n full.txt)
}

@test "a corrupted byte is reported as corruption with its offset" {
	f=$BATS_FILE_TMPDIR/small.bin
	cp "$f" bad.bin
	printf 'XXXX' | dd of=bad.bin bs=1 seek=0 conv=notrunc status=none
	run memray-stat --dump bad.bin
	assert_failure 2
	assert_output "memray-stat: bad.bin: not a memray stream (bad magic at byte 0)"
	cp "$f" bad.bin
	printf '\x7f' | dd of=bad.bin bs=1 seek=13 conv=notrunc status=none
	run memray-stat --dump bad.bin
	assert_failure 2
	assert_output --partial "corrupt at byte 12: unsupported format version"
	# an unknown tag where the trailer starts
	cp "$f" bad.bin
	at=$(dump "$f" | awk '$3 == "trailer" { print $1 }')
	printf '\x00' | dd of=bad.bin bs=1 seek=$at conv=notrunc status=none
	run memray-stat --dump bad.bin
	assert_failure 2
	assert_line "memray-stat: bad.bin: corrupt at byte $at: unknown record tag"
	assert_line --partial " memory time_us="
}

@test "unreadable input: a missing file, text, an empty file; the other files are still read" {
	run memray-stat --dump no-such.bin
	assert_failure 2
	assert_output "memray-stat: cannot open 'no-such.bin': No such file or directory"
	echo "hello world, not a stream" > text.bin
	run memray-stat text.bin
	assert_failure 2
	assert_output --partial "memray-stat: text.bin: not a memray stream"
	: > empty.bin
	run memray-stat empty.bin
	assert_failure 2
	assert_output --partial "memray-stat: empty.bin: empty input"
	run memray-stat no-such.bin "$BATS_FILE_TMPDIR/small.bin"
	assert_failure 2
	assert_output --partial "allocations:"
}

@test "memray-stat prints totals that match the dump" {
	f=$BATS_FILE_TMPDIR/demo.bin
	run memray-stat "$f"
	assert_success
	allocs=$(dump "$f" | awk '$3 == "alloc" || $3 == "move"' | wc -l)
	assert_line "allocations:     $allocs"
	# the demo leaks one 1 MiB buffer: live at the end is at least that
	live=$(echo "$output" | awk '/^live at end:/ { print $4 }')
	[ "$live" -ge 1048576 ]
	peak=$(echo "$output" | awk '/^peak heap:/ { print $3 }')
	[ "$peak" -ge "$live" ]
}

@test "usage: --help, --version, unknown options" {
	run memray-stat --help
	assert_success
	assert_line --index 0 --partial "usage: memray-stat [--dump | --json | --timeline]"
	run memray-stat --version
	assert_output --regexp '^memray-stat [0-9]+\.[0-9]+\.[0-9]+$'
	run memray-stat --bogus
	assert_failure 2
	run memray-record --help
	assert_success
	assert_line --index 0 --partial "usage: memray-record"
	run memray-record --version
	assert_output --regexp '^memray-record [0-9]+\.[0-9]+\.[0-9]+$'
}

# spec_vs_c FILE: the numeric records of FILE as tests/stream_spec.py (a
# reader written from memray-stream(5) alone) and memray-stat read them,
# each pid's in its order, must be the same (the pids in number order on
# both sides: a child's pid is lower than its parent's when pids wrap)
spec_vs_c() {
	python3 "$BATS_TEST_DIRNAME/../stream_spec.py" "$1" | sort -s -k1,1n > spec.txt
	memray-stat --dump "$1" | cut -d' ' -f2- |
		grep -E '^[0-9]+ (alloc|free|move|node|pynode|pyframe|switch|memory|trailer|exec|signal) ' |
		sort -s -k1,1n > c.txt
	[ -s c.txt ]
	cmp c.txt spec.txt
}

@test "a reader written from memray-stream(5) alone reads real recordings as memray-stat does" {
	cat > ring.py <<'PY'
import random
random.seed(1)
ring = [None] * 100
for i in range(20000):           # freed in the order made: one age
    ring[i % 100] = bytearray(2000 + i % 7)
pool = {}
for i in range(20000):           # freed at ages that change
    pool[random.randrange(300)] = bytearray(600 + random.randrange(3000))
PY
	memray-record -q -o py.bin python3 ring.py
	spec_vs_c py.bin
	# every compact form is there, and most frees are one byte
	python3 "$BATS_TEST_DIRNAME/../stream_spec.py" --forms py.bin > forms.txt
	cat forms.txt
	for f in ALLOC ALLOC_SAME FREE FREE_AGED FREE_AGAIN FREE_NEAR MOVE_AGED STRING_PREFIX \
		PYNODE_NEW PYNODE_NEXT PYNODE_NEXT_NEW; do
		grep -q "^$f " forms.txt
	done
	again=$(awk '$1 == "FREE_AGAIN" { print $2 }' forms.txt)
	[ "$again" -gt 15000 ]
	# blocks made again where blocks were just freed, named in a byte
	released=$(awk '$1 == "released" { print $2 }' forms.txt)
	[ "$released" -gt 1000 ]
	memray-record -q --native -o native.bin python3 ring.py
	spec_vs_c native.bin
	memray-record -q -o demo.bin "$FIX/demo" > /dev/null
	spec_vs_c demo.bin
	# memray-record joins the tracker's full chunks: 16 at most
	memray-record -q -o churn.bin "$FIX/allocs" churn 1
	spec_vs_c churn.bin
	python3 "$BATS_TEST_DIRNAME/../stream_spec.py" --chunks churn.bin > chunks.txt
	cat chunks.txt
	read -r _ n _ joined _ longest < chunks.txt
	[ "$joined" -gt 10 ]
	[ "$longest" -eq $((16 * 4084)) ]
	[ "$n" -lt 200 ]
	# several processes, and a program image after an exec
	memray-record -q --follow-fork -o fork.bin sh -c \
		'python3 -c "import os; os.fork() or os._exit(0); os.wait()"; exec python3 ring.py'
	spec_vs_c fork.bin
	[ "$(cut -d' ' -f1 spec.txt | sort -u | wc -l)" -ge 3 ]
	grep -q ' exec ' spec.txt
}

# old_version V ALLOCS FREES: the fixture recording of format version V
# (tests/fixtures/streams) is read as it was written: its counts, its
# header, the same records by both readers, and folded stacks.
old_version() {
	gzip -dc "$BATS_TEST_DIRNAME/../fixtures/streams/v$1-python.bin.gz" > v$1.bin
	run memray-stat v$1.bin
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "^allocations: *$2\$"
	echo "$output" | grep -q "^frees: *$3\$"
	memray-stat --dump v$1.bin | head -1 | grep -q " header version=$1 "
	spec_vs_c v$1.bin
	memray-fold v$1.bin > folded.txt
	grep -q '<module>' folded.txt
}

@test "a recording of format version 2 (memray-c before version 3's forms) is read as before" {
	old_version 2 2719 2688
	grep -q 'ring2.py' folded.txt
	python3 "$BATS_TEST_DIRNAME/../stream_spec.py" --forms v2.bin > forms.txt
	grep -q '^FREE_AGED ' forms.txt
	run grep -c '^FREE_NEAR ' forms.txt
	assert_output 0
}

@test "a recording of format version 1 (an earlier memray-c) is read as before" {
	old_version 1 1769 1738
}

@test "a damaged recording says so in what each reader writes, not only on stderr: fold's metadata, stat's report and JSON, tree, leaks, the flame page" {
	f=$BATS_FILE_TMPDIR/demo.bin
	head -c 3000 "$f" > cut.bin
	msg=$(memray-stat cut.bin 2>&1 > /dev/null | sed 's/^memray-stat: //')
	case $msg in "cut.bin: truncated at byte "*) ;; *) echo "$msg"; false ;; esac
	memray-fold cut.bin > cut.folded 2> /dev/null || true
	grep -qxF "# damaged=\"$msg\"" cut.folded
	memray-stat cut.bin > report.txt 2> /dev/null || true
	grep -qxF "damaged:         $msg (nothing after it is counted)" report.txt
	memray-stat --json cut.bin > s.json 2> /dev/null || true
	[ "$(python3 -c 'import json; print(json.load(open("s.json"))["damaged"])')" = "$msg" ]
	memray-stat --json "$f" > whole.json
	[ "$(python3 -c 'import json; print(json.load(open("whole.json"))["damaged"])')" = None ]
	memray-tree cut.bin > tree.txt 2> /dev/null || true
	[ "$(tail -n 1 tree.txt)" = "damaged: $msg (nothing after it is in the tree)" ]
	memray-tree cut.folded > tree2.txt
	[ "$(tail -n 1 tree2.txt)" = "damaged: $msg (nothing after it is in the tree)" ]
	memray-leaks --report cut.bin > leaks.txt 2> /dev/null || true
	[ "$(head -n 1 leaks.txt)" = "damaged: $msg (blocks freed after it show as leaked)" ]
	# the page, from the folded text (a pipeline's status lost) and from
	# the stream
	memray-flame cut.folded > a.html
	memray-flame cut.bin > b.html 2> /dev/null || true
	for h in a.html b.html; do
		python3 - "$h" "$msg" <<'PY'
import json, re, sys
page = open(sys.argv[1]).read()
data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1))
assert ["damaged", sys.argv[2]] in data["meta"], data["meta"]
assert 'id="damaged"' in page
PY
	done
	# nothing of it for a whole recording
	memray-fold "$f" > whole.folded
	! grep -q '^# damaged' whole.folded || false
}
