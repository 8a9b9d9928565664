#!/usr/bin/env bats
# memray-stat --by-function: each function's own and total bytes and
# allocations, as memray's summary and table reporters give them; checked
# against sums made apart from memray-fold's collapsed stacks.

load helper

setup_file() {
	cd "$BATS_FILE_TMPDIR"
	"$BIN/memray-record" -q -o demo.bin "$FIX/demo" > /dev/null
	PYTHONHASHSEED=0 "$BIN/memray-record" -q -o rec.bin /usr/bin/python3 \
		"$BATS_TEST_DIRNAME/../fixtures/py/recursion.py" 30 > /dev/null
}

# sums FOLDED: from collapsed stacks, each function (a frame without its
# line number) with its own value (as the leaf) and its total (the stacks
# it is in, once per stack however often it recurs): "own total function"
sums() {
	grep -v '^#' "$1" | awk '{
		v = $NF; sub(/ [0-9]+$/, "")
		n = split($0, f, ";")
		delete seen
		for (i = 1; i <= n; i++) {
			k = f[i]; sub(/:[0-9]+\)$/, ")", k)
			if (i == n) own[k] += v
			if (!(k in seen)) { seen[k] = 1; total[k] += v }
		}
	} END { for (k in total) print own[k] + 0, total[k], k }' | LC_ALL=C sort -k3
}

# table_sums JSON BYTES|COUNT: the same three columns from memray-stat's table
table_sums() {
	/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
w = sys.argv[2]
for r in d["functions"]:
    k = r["function"] + (" (" + r["file"] + ")" if r["file"] else "")
    print(r["own_" + w], r["total_" + w], k)
' "$1" "$2" | LC_ALL=C sort -k3
}

# same_as_fold STREAM METRIC: bytes (and with total, counts) of every
# function agree with memray-fold's stacks of that metric
same_as_fold() {
	memray-fold -m "$2" "$1" > f.folded
	memray-stat --by-function --json -m "$2" "$1" > t.json
	diff <(sums f.folded) <(table_sums t.json bytes) || { echo "bytes, $2: $1"; return 1; }
	[ "$2" = total ] || return 0
	memray-fold -m count "$1" > c.folded
	diff <(sums c.folded) <(table_sums t.json count) || { echo "counts: $1"; return 1; }
}

@test "a Python program: own and total per function agree with memray-fold, recursion counted once" {
	f=$BATS_FILE_TMPDIR/rec.bin
	for m in peak total leaked; do
		same_as_fold "$f" $m
	done
	memray-stat --by-function --json "$f" > t.json
	# down() recurses 31 deep over one bytearray of 666,667 bytes: its
	# total is that once, not 31 times; the bytearray is its own
	run /usr/bin/python3 -c '
import json
d = json.load(open("t.json"))
[r] = [r for r in d["functions"] if r["function"] == "down"]
assert r["file"].endswith("/recursion.py"), r
assert r["own_bytes"] == 666667 and r["total_bytes"] == 666667, r
assert r["own_count"] == 1 and r["total_count"] == 1, r
assert d["metric"] == "peak" and d["sort"] == "total", d
assert d["bytes"] == sum(r["own_bytes"] for r in d["functions"]), d["bytes"]
assert all(r["total_bytes"] >= r["own_bytes"] for r in d["functions"])
print("ok")'
	assert_output ok
}

@test "a C program: the table of demo.c, and its numbers" {
	f=$BATS_FILE_TMPDIR/demo.bin
	for m in peak total leaked; do
		same_as_fold "$f" $m
	done
	run memray-stat --by-function -m leaked "$f"
	assert_success
	assert_line --index 0 --regexp "^functions by total bytes, leaked: 1\.0 MiB in [0-9]+ allocations, [0-9]+ functions$"
	assert_line --index 1 --regexp "^ +total +% +own +% +allocations +own allocs +function$"
	assert_line --regexp "^ +1\.0 MiB +[0-9.]+% +1\.0 MiB +[0-9.]+% +1 +1  leak \(demo\.c\)$"
	assert_line --regexp "^ +1\.0 MiB +[0-9.]+% +0 B +0\.00% +[0-9]+ +0  main \(demo\.c\)$"
	# grow_table: 10,000 reallocs of 8 to 80,000 bytes and 10,000 mallocs
	# of 100 + i % 50 bytes, 8 * 50,005,000 + 1,245,000 bytes
	run memray-stat --by-function -m total "$f"
	assert_line --regexp "^ +382\.7 MiB +99\.[0-9]+% +382\.7 MiB +99\.[0-9]+% +20000 +20000  grow_table \(demo\.c\)$"
	memray-stat --by-function --json -m total "$f" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
[g] = [r for r in d["functions"] if r["function"] == "grow_table"]
assert g["file"] == "demo.c" and g["own_bytes"] == g["total_bytes"] == 401285000, g
[m] = [r for r in d["functions"] if r["function"] == "main"]
assert m["own_bytes"] == 0 and m["total_count"] == d["count"] == 20258, (m, d["count"])'
}

@test "--sort by each column, --top N rows" {
	f=$BATS_FILE_TMPDIR/rec.bin
	for s in total own total-count own-count; do
		memray-stat --by-function --json -m total --sort $s "$f" > t.json
		/usr/bin/python3 -c '
import json, sys
d = json.load(open("t.json"))
key = {"total": "total_bytes", "own": "own_bytes", "total-count": "total_count",
       "own-count": "own_count"}[sys.argv[1]]
v = [r[key] for r in d["functions"]]
assert d["sort"] == sys.argv[1] and len(v) > 10, d
assert v == sorted(v, reverse=True), (sys.argv[1], v)
' $s
	done
	run memray-stat --by-function --sort own-count -n 3 "$f"
	assert_success
	assert_line --index 0 --regexp "^functions by own allocations, peak: .* [0-9]+ functions \(3 shown\)$"
	[ "${#lines[@]}" -eq 5 ]
	memray-stat --by-function --json --top 2 "$f" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
assert len(d["functions"]) == 2 and d["n_functions"] > 2, d'
}

@test "--json is valid JSON and escapes a hostile function name; the text shows it escaped" {
	printf 'def f():\n    return bytearray(30000000)\nf.__code__ = f.__code__.replace(co_name="</script>\\"x\\n")\ntry:\n    f.__code__ = f.__code__.replace(co_qualname="</script>\\"x\\n")\nexcept TypeError:\n    pass\nk = f()\n' > h.py
	memray-record -q -o h.bin /usr/bin/python3 h.py
	memray-stat --by-function --json h.bin > h.json
	/usr/bin/python3 -m json.tool h.json > /dev/null
	! grep -q '</script>' h.json || false
	run /usr/bin/python3 -c '
import json
d = json.load(open("h.json"))
[r] = [r for r in d["functions"] if "script" in r["function"]]
print(repr(r["function"]), r["own_bytes"])'
	assert_output "'</script>\"x\\n' 30000001"
	run memray-stat --by-function h.bin
	assert_line --regexp '^ +28\.6 MiB +[0-9.]+% +28\.6 MiB +[0-9.]+% +1 +1  </script>"x\\n \(/.*h\.py\)$'
}

@test "mistakes: --metric and --sort without --by-function, unknown columns and metrics, --dump" {
	f=$BATS_FILE_TMPDIR/demo.bin
	run memray-stat --metric total "$f"
	assert_failure 2
	assert_output "memray-stat: --metric and --sort apply to --by-function only"
	run memray-stat --sort own "$f"
	assert_failure 2
	run memray-stat --by-function --sort bytes "$f"
	assert_failure 2
	assert_output --partial "invalid --sort 'bytes': expected total, own, total-count or own-count"
	run memray-stat --by-function -m count "$f"
	assert_failure 2
	assert_output --partial "--by-function counts allocations in columns of their own"
	run memray-stat --by-function -m nope "$f"
	assert_failure 2
	assert_output --partial "unknown metric 'nope'"
	run memray-stat --by-function --dump "$f"
	assert_failure 2
	assert_output --partial "--by-function excludes --dump and --timeline"
	# a truncated stream: the table of what was read, and exit status 2
	head -c 30000 "$f" > cut.bin
	run memray-stat --by-function cut.bin
	assert_failure 2
	assert_line --regexp '^ +[0-9.]+ KiB +100\.00% .*  main \(demo\.c\)$'
	assert_line --regexp "^memray-stat: cut.bin: truncated at byte [0-9]+: "
	# a sampled stream has no temporary allocations to show
	memray-record -q -o s.bin --sample-bytes 64K "$FIX/sampling" threads
	run memray-stat --by-function -m temporary s.bin
	assert_failure 2
	assert_output --partial "temporary allocations cannot be told"
	[ -z "$(memray-stat --by-function -m temporary s.bin 2> /dev/null)" ]
}
