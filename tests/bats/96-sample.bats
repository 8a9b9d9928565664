#!/usr/bin/env bats
# memray-record --sample-bytes: Poisson sampling by bytes, and the
# estimates every filter makes from a sampled stream.
#
# The tolerances: with a mean gap of N bytes, an estimate of X bytes made
# of allocations much smaller than N has a relative standard deviation of
# about sqrt(N / X) (measured here over 32 seeds on fixtures/sampling.c:
# 3.2% for its 38 MB site at N = 32 KiB). The sites below are sized so that
# 10% is three standard deviations at N = 32 KiB; the seed makes each run
# the same.

load helper

SAMPLING_PY=$BATS_TEST_DIRNAME/../fixtures/py/sampling.py

# sites FILE METRIC: "leaf-frame value" per leaf frame (values added up)
sites() {
	memray-fold -m "$2" "$1" | grep -v '^#' |
		awk '{ v = $NF; $NF = ""; n = split($0, f, ";"); s[f[n]] += v }
		     END { for (k in s) printf "%s\t%.0f\n", k, s[k] }' | sort
}

# value_of SITES_FILE PATTERN: the value of the one site matching PATTERN
value_of() {
	grep -F -- "$2" "$1" | cut -f2
}

# within PERCENT EXPECTED ACTUAL
within() {
	awk -v p="$1" -v e="$2" -v a="$3" 'BEGIN {
		d = (a - e) / e; if (d < 0) d = -d
		printf "expected %d, estimated %d: %.1f%% off\n", e, a, 100 * d
		exit !(d <= p / 100) }'
}

# compare FULL SAMPLED METRIC PATTERN...: each site within 10%
compare() {
	local full=$1 sampled=$2 metric=$3; shift 3
	sites "$full" "$metric" > full.sites
	sites "$sampled" "$metric" > sampled.sites
	local pat e a
	for pat in "$@"; do
		e=$(value_of full.sites "$pat")
		a=$(value_of sampled.sites "$pat")
		echo "$metric $pat: $e vs $a"
		[ -n "$e" ]
		[ -n "$a" ]
		within 10 "$e" "$a"
	done
}

@test "a C program: peak, totals, counts and leaks estimated within 10% of the full recording, from a stream 100 times smaller" {
	memray-record -q -o full.bin "$FIX/sampling"
	memray-record -q -o sampled.bin --sample-bytes 32K --seed 1 "$FIX/sampling"
	compare full.bin sampled.bin peak "small_blocks (sampling.c" "medium_blocks (sampling.c" \
		"large_blocks (sampling.c" "grown_buffer (sampling.c" "mapped (sampling.c"
	compare full.bin sampled.bin total "small_blocks (sampling.c" "medium_blocks (sampling.c" \
		"churn (sampling.c"
	compare full.bin sampled.bin count "small_blocks (sampling.c" "churn (sampling.c"
	compare full.bin sampled.bin leaked "leaked (sampling.c"
	# the whole-run figures too
	memray-stat --json full.bin > full.json
	memray-stat --json sampled.bin > sampled.json
	for key in peak_bytes bytes_allocated allocations; do
		e=$(python3 -c "import json; print(json.load(open('full.json'))['$key'])")
		a=$(python3 -c "import json; print(json.load(open('sampled.json'))['$key'])")
		echo "$key"
		within 10 "$e" "$a"
	done
	# mappings are never sampled: exactly 16 MiB at the peak
	sites sampled.bin peak | grep -F "mapped (sampling.c" | cut -f2 | grep -qx 16777216
	# most events are left out of the stream
	full_size=$(stat -c %s full.bin)
	sampled_size=$(stat -c %s sampled.bin)
	echo "sizes: $full_size $sampled_size"
	[ $((sampled_size * 100)) -lt "$full_size" ]
}

@test "at a gap of 512 KiB: the sites whose size allows it within 10% (the busy site's 512 MB total, one large buffer's peak, the mappings)" {
	# sqrt(512 KiB / 512 MB) = 3.2%: 10% is three standard deviations;
	# an 8 MB block is sampled with probability 1 - e^-16
	memray-record -q -o full.bin "$FIX/sampling"
	memray-record -q -o sampled.bin --sample-bytes 512K --seed 11 "$FIX/sampling"
	compare full.bin sampled.bin total "churn (sampling.c"
	compare full.bin sampled.bin peak "grown_buffer (sampling.c" "mapped (sampling.c"
}

@test "a Python program: its lines' peak estimated within 10%" {
	memray-record -q -o full.bin /usr/bin/python3 "$SAMPLING_PY"
	memray-record -q -o sampled.bin --sample-bytes 32K --seed 5 /usr/bin/python3 "$SAMPLING_PY"
	compare full.bin sampled.bin peak "sampling.py:5)" "sampling.py:9)"
	compare full.bin sampled.bin total "sampling.py:14)"
}

@test "four threads: each one's blocks sampled, the estimate within 10%" {
	memray-record -q -o full.bin "$FIX/sampling" threads
	memray-record -q -o sampled.bin --sample-bytes 32K --seed 2 "$FIX/sampling" threads
	compare full.bin sampled.bin total "thread_blocks (sampling.c"
}

@test "the same seed gives the same samples; another seed other ones" {
	for s in 7 7 8; do
		memray-record -q -o "s$s-$RANDOM.bin" --sample-bytes 64K --seed "$s" "$FIX/sampling"
	done
	a=( s7-*.bin )
	[ "${#a[@]}" -eq 2 ]
	memray-stat --dump "${a[0]}" | awk '$3 == "alloc" { print $4, $6, $7 }' > one
	memray-stat --dump "${a[1]}" | awk '$3 == "alloc" { print $4, $6, $7 }' > two
	memray-stat --dump s8-*.bin > s8.dump
	awk '$3 == "alloc" { print $4, $6, $7 }' s8.dump > three
	[ "$(wc -l < one)" -gt 100 ]
	[ "$(wc -l < three)" -gt 100 ]
	cmp one two
	! cmp -s one three || false
}

@test "the header says sampled, with the mean gap; without --sample-bytes it does not" {
	memray-record -q -o s.bin --sample-bytes 512K "$FIX/sampling" threads
	memray-stat --dump s.bin | grep -m1 ' header ' > h
	grep -q 'flags=native,sampled ' h
	grep -q ' sample_bytes=524288 ' h
	memray-record -q -o f.bin "$FIX/sampling" threads
	! memray-stat --dump f.bin | grep -m1 ' header ' | grep -q 'sampled' || false
}

@test "every filter says the values are estimates" {
	memray-record -q -o s.bin --sample-bytes 64K --seed 3 "$FIX/sampling"
	run memray-stat s.bin
	assert_success
	assert_line --index 1 --regexp '^sampled: +one sample per 64\.0 KiB allocated on average: every figure below but peak RSS is an estimate$'
	# sqrt(65536 / about 107 MB) and sqrt(65536 / about 710 MB)
	assert_line --index 2 --regexp '^sampling error:  one standard deviation is at most 2\.[3-6]% of the peak heap and (0\.9|1\.0)% of the bytes allocated$'
	assert_line "top 5 sites of temporary allocations: not known in a sampled stream"
	memray-stat --json s.bin | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["sampled"] is True and d["sample_bytes"] == 65536, d
assert abs(d["peak_error_max"] - (65536 / d["peak_bytes"]) ** 0.5) < 1e-4, d
assert abs(d["bytes_allocated_error_max"] - (65536 / d["bytes_allocated"]) ** 0.5) < 1e-4, d
assert d["top_temporary"] is None'
	memray-stat --json "$(memray-record -q -o f.bin "$FIX/sampling" threads; echo f.bin)" |
		python3 -c 'import json, sys; assert json.load(sys.stdin)["sampled"] is False'
	memray-fold s.bin > s.folded
	grep -qx '# sampled=65536' s.folded
	memray-tree s.folded | head -1 | grep -q 'total peak, estimated from samples$'
	memray-tree s.bin | head -1 | grep -q 'total peak, estimated from samples$'
	memray-flame s.folded > s.html
	grep -q '\["sampled","65536"\]' s.html
	grep -q 'every size and count is an estimate' s.html
	run memray-leaks s.bin --report
	assert_success
	assert_line --partial "warning: the stream is sampled (--sample-bytes): leaked bytes are estimates"
	assert_line "estimated from a sampled stream (one sample per 65536 bytes allocated on average):"
	run memray-diff --report f.bin s.bin
	assert_line --regexp '^after: .*s\.bin  \(sampled: estimates\)$'
	memray-diff s.bin s.bin | grep -qx '# sampled=65536'
	memray-live --batch s.bin | grep '^end ' | grep -q '(sampled: estimates)$'
	run memray-stat --max-peak 1K s.bin
	[ "$status" -eq 1 ]
	assert_line --regexp 'peak heap .* \(estimated from a sampled stream\) is over the budget'
}

@test "temporary allocations cannot be had from a sampled stream: a clear error" {
	memray-record -q -o s.bin --sample-bytes 64K "$FIX/sampling" threads
	run memray-fold -m temporary s.bin
	[ "$status" -eq 2 ]
	assert_output --partial "memray-fold: temporary allocations cannot be told in a sampled stream"
	run memray-diff -m temporary s.bin s.bin
	[ "$status" -eq 2 ]
	assert_output --partial "memray-diff: s.bin: temporary allocations cannot be told"
}

@test "the program runs as it would: its output, exit status and the realloc'd data unchanged" {
	run memray-record -q -o s.bin --sample-bytes 4K --seed 9 "$FIX/sampling"
	echo "$output"
	assert_success
	plain=$("$FIX/sampling")
	[ "$output" = "$plain" ]
	[[ "$output" == "checksum "* ]]
	run memray-record -q -o py.bin --sample-bytes 1 /usr/bin/python3 -c 'import sys; sys.exit(3)'
	[ "$status" -eq 3 ]
}

@test "a sampled block's realloc and free are in the stream; the rest's are not" {
	# every byte sampled (a gap of 1): every block is in, like a full recording
	memray-record -q -o one.bin --sample-bytes 1 --seed 4 "$FIX/sampling" threads
	memray-record -q -o full.bin "$FIX/sampling" threads
	a=$(memray-stat --dump one.bin | awk '$3 == "alloc"' | wc -l)
	f=$(memray-stat --dump one.bin | awk '$3 == "free"' | wc -l)
	fa=$(memray-stat --dump full.bin | awk '$3 == "alloc"' | wc -l)
	echo "$a $f $fa"
	[ "$a" -ge $((fa - 10)) ]
	[ "$f" -ge $((a - 50)) ]
	# a large gap: few blocks, and a free for each freed one only
	memray-record -q -o few.bin --sample-bytes 1M --seed 4 "$FIX/sampling"
	memray-stat --dump few.bin > few.dump
	a=$(awk '$3 == "alloc" && $4 != "mmap"' few.dump | wc -l)
	f=$(awk '$3 == "free" && $4 == "free"' few.dump | wc -l)
	echo "$a $f"
	[ "$a" -gt 100 ]
	[ "$a" -lt 2000 ]
	[ "$f" -le "$a" ]
	# the grown buffer's samples move with it
	awk '$3 == "move" && $4 == "realloc"' few.dump | grep -q .
	# nothing freed that was not allocated in the stream
	run memray-leaks few.bin --report
	assert_success
}

@test "exec and followed children keep sampling" {
	memray-record -q -o s.bin --follow-fork --sample-bytes 32K --seed 6 "$FIX/sampling" fork
	memray-stat --dump s.bin | grep ' header ' > h
	[ "$(wc -l < h)" -eq 2 ]
	[ "$(grep -c 'sampled' h)" -eq 2 ]
	memray-record -q -o f.bin --follow-fork "$FIX/sampling" fork
	compare f.bin s.bin peak "small_blocks (sampling.c"
	memray-record -q -o e.bin --sample-bytes 64K /bin/sh -c "exec $FIX/sampling threads"
	memray-stat --dump e.bin | grep ' header ' | tail -1 | grep -q 'sample_bytes=65536'
}

@test "attached with --sample-bytes: the stream says attached and sampled" {
	command -v gdb > /dev/null || skip "gdb is missing"
	/usr/bin/python3 "$BATS_TEST_DIRNAME/../fixtures/py/attach_loop.py" stop > target.out 2>&1 3>&- &
	TPID=$!
	for _ in $(seq 200); do grep -q '^ready' target.out && break; sleep 0.05; done
	run memray-record -p "$TPID" --duration 1 --sample-bytes 64K --seed 3 -o rec.bin
	touch stop
	wait "$TPID"
	assert_success
	memray-stat --dump rec.bin | grep -m1 ' header ' | grep -q 'flags=python,pymalloc,attached,sampled .*sample_bytes=65536'
	# 100 kB buffers every millisecond or so: some of them sampled
	memray-fold -m total rec.bin | grep -q 'grow (.*attach_loop.py:10)'
}

@test "bad --sample-bytes and --seed values: a clear message, exit status 2" {
	for bad in 0 abc -5 2G 1.5.5; do
		run memray-record --sample-bytes "$bad" true
		[ "$status" -eq 2 ]
		assert_output --partial "invalid --sample-bytes '$bad': expected a size from 1 byte to 1GiB"
	done
	for bad in 0 -1 x 99999999999999999999999; do
		run memray-record --sample-bytes 1K --seed "$bad" true
		[ "$status" -eq 2 ]
		assert_output --partial "invalid --seed '$bad': expected a positive integer"
	done
	run memray-record --seed 3 true
	[ "$status" -eq 2 ]
	assert_output --partial "--seed goes with --sample-bytes"
	run memray-record --idle --sample-bytes 1K true
	[ "$status" -eq 2 ]
	assert_output --partial "--idle records nothing"
}

@test "pprof and speedscope exports of a sampled stream say so, with the same estimates" {
	memray-record -q -o s.bin --sample-bytes 64K --seed 3 "$FIX/sampling" threads
	total=$(memray-fold -m total s.bin | grep -v '^#' | awk '{ s += $NF } END { printf "%.0f", s }')
	memray-fold -m total --format=speedscope s.bin | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["name"].endswith(" (sampled: estimates, one sample per 65536 bytes)"), d["name"]
assert d["profiles"][0]["name"] == d["name"]
assert sum(d["profiles"][0]["weights"]) == int(sys.argv[1]), sys.argv[1]' "$total"
	command -v go > /dev/null || skip "go is not installed (Debian golang-go)"
	export HOME=$BATS_TEST_TMPDIR GOCACHE=$BATS_TEST_TMPDIR/gocache GOTOOLCHAIN=local
	memray-fold -m total --format=pprof s.bin > s.pb.gz
	go tool pprof -comments s.pb.gz > comments
	grep -qx 'sampled: one sample per 65536 bytes allocated on average; every value is an estimate' comments
	go tool pprof -raw s.pb.gz | grep -q '^PeriodType: space bytes$'
}

@test "a failed allocation of an enormous size leaves the sampling as it was" {
	memray-record -q -o full.bin "$FIX/sampling" huge
	memray-record -q -o s.bin --sample-bytes 4K --seed 3 "$FIX/sampling" huge
	compare full.bin s.bin total "main (sampling.c"
}

@test "frees in a sampled stream: the released samples', not the blocks an exec leaves" {
	memray-record -q -o s.bin --sample-bytes 4K --seed 3 "$FIX/sampling" exec
	run memray-stat s.bin
	assert_line --regexp '^allocations: +[0-9]{4,}$'
	assert_line --regexp '^frees: +0$'
	memray-record -q -o t.bin --sample-bytes 4K --seed 3 "$FIX/sampling" threads
	memray-stat --json t.bin | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert abs(d["frees"] - d["allocations"]) <= 0.01 * d["allocations"], d'
}

@test "attached again after a full recording: no thread's first allocation is forced into the sample" {
	command -v gdb > /dev/null || skip "gdb is missing"
	"$FIX/sampling" loop stop > target.out 2>&1 3>&- &
	TPID=$!
	for _ in $(seq 200); do grep -q '^ready' target.out && break; sleep 0.05; done
	memray-record -q -p "$TPID" --duration 1 --sample-bytes 1M -o one.bin
	memray-record -q -p "$TPID" --duration 1 -o full.bin
	memray-record -q -p "$TPID" --duration 1 --sample-bytes 1M -o two.bin
	touch stop
	wait "$TPID"
	# 8 threads, 16 bytes each a millisecond: about 128 KB a second, so
	# a gap of 1 MiB samples one such block every 8 s or so
	memray-stat two.bin > /dev/null
	n=$(memray-stat --dump two.bin | awk '$3 == "alloc" && $6 == "size=16"' | wc -l)
	full=$(memray-stat --dump full.bin | awk '$3 == "alloc" && $6 == "size=16"' | wc -l)
	echo "16-byte samples: $n (full recording: $full blocks)"
	[ "$full" -gt 1000 ]
	[ "$n" -lt 4 ]
}
