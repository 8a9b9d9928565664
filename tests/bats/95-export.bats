#!/usr/bin/env bats
# memray-fold --format: pprof profiles read by go tool pprof, speedscope
# files checked against speedscope's published schema, and the option's
# mistakes.

load helper

SCHEMA=$BATS_TEST_DIRNAME/../fixtures/speedscope/file-format-schema.json

setup_file() {
	cd "$BATS_FILE_TMPDIR"
	"$BIN/memray-record" -q -o demo.bin "$FIX/demo" > /dev/null
	cat > app.py <<'PY'
def build(n):
    return [bytearray(1000) for _ in range(n)]


def keep():
    return build(300)


def hostile():
    return bytearray(424242)


hostile.__code__ = hostile.__code__.replace(co_name='a"b<c\\d\ne')
try:
    hostile.__code__ = hostile.__code__.replace(co_qualname='a"b<c\\d\ne')
except TypeError:
    pass
kept = keep()
h = hostile()
PY
	"$BIN/memray-record" -q -o app.bin /usr/bin/python3 app.py
}

setup() {
	cd "$BATS_FILE_TMPDIR"
	# go wants a writable cache and home
	export HOME=$BATS_FILE_TMPDIR/home GOCACHE=$BATS_FILE_TMPDIR/gocache GOTOOLCHAIN=local
	mkdir -p "$HOME"
}

go_pprof() {
	command -v go > /dev/null || skip "go is not installed (Debian golang-go)"
	go tool pprof "$@"
}

# collapsed_sum FILE OPTIONS...: the sum of memray-fold's collapsed values
collapsed_sum() {
	local f=$1; shift
	memray-fold "$@" "$f" | grep -v '^#' | awk '{ s += $NF } END { print s + 0 }'
}

# raw_sum COLUMN: the sum of one value column of `go tool pprof -raw`'s
# samples (1 = the first sample type), read from stdin
raw_sum() {
	awk -v c="$1" '/^Samples:/ { on = 1; getline; next } /^Locations/ { on = 0 }
		on && /:/ { sub(/:.*/, ""); split($0, v, " "); s += v[c] } END { print s + 0 }'
}

@test "--format=collapsed is the default output, byte for byte" {
	memray-fold demo.bin > default.txt
	memray-fold --format=collapsed demo.bin > collapsed.txt
	memray-fold --format collapsed -m count demo.bin > count.txt
	cmp default.txt collapsed.txt
	memray-fold -m count demo.bin | cmp - count.txt
}

@test "pprof of a C program: gzip, functions with file:line, totals equal the collapsed ones" {
	memray-fold --format=pprof demo.bin > peak.pb.gz
	gzip -t peak.pb.gz
	go_pprof -raw peak.pb.gz > raw.txt 2>&1 || { cat raw.txt; false; }
	cat raw.txt
	grep -q '^peak_objects/count peak_space/bytes\[dflt\]$' raw.txt
	grep -Eq ' grow_table demo.c:13( |$)' raw.txt
	grep -Eq ' fill_cache demo.c:24( |$)' raw.txt
	grep -Eq ' main demo.c:37( |$)' raw.txt
	# the executable is a mapping with its build-id
	grep -Eq '^ *[0-9]+: 0x[0-9a-f]+/0x[0-9a-f]+/0x0 .*/fixtures/demo [0-9a-f]{40}' raw.txt
	[ "$(raw_sum 2 < raw.txt)" = "$(collapsed_sum demo.bin)" ]
	# go tool pprof -top: the default sample type is the bytes, in full
	total=$(collapsed_sum demo.bin)
	run go_pprof -top -nodefraction=0 -unit=B peak.pb.gz
	assert_success
	assert_line --regexp "^Type: peak_space$"
	assert_line --regexp "^Showing nodes accounting for ${total}B, 100% of ${total}B total$"
	assert_line --regexp " grow_table$"
}

@test "pprof --metric=count: counts are the default sample type and add up" {
	memray-fold --format=pprof -m count demo.bin > count.pb.gz
	total=$(collapsed_sum demo.bin -m count)
	[ "$total" -gt 10000 ]
	run go_pprof -top -nodefraction=0 count.pb.gz
	assert_success
	assert_line "Type: alloc_objects"
	assert_line --regexp "^Showing nodes accounting for $total, 100% of $total total$"
	go_pprof -raw count.pb.gz > raw.txt 2>&1
	grep -q '^alloc_objects/count\[dflt\] alloc_space/bytes$' raw.txt
	[ "$(raw_sum 1 < raw.txt)" = "$total" ]
	[ "$(raw_sum 2 < raw.txt)" = "$(collapsed_sum demo.bin -m total)" ]
}

@test "pprof of a Python script: Python functions with file and line, the hostile name intact" {
	memray-fold --format=pprof -m total app.bin > app.pb.gz
	go_pprof -raw app.pb.gz > raw.txt 2>&1 || { cat raw.txt; false; }
	cat raw.txt
	grep -Eq " build .*/app.py:2( |$)" raw.txt
	grep -Eq " keep .*/app.py:6( |$)" raw.txt
	grep -Eq " <module> .*/app.py:18( |$)" raw.txt
	[ "$(raw_sum 2 < raw.txt)" = "$(collapsed_sum app.bin -m total)" ]
	run go_pprof -top -nodefraction=0 -unit=B app.pb.gz
	assert_success
	total=$(collapsed_sum app.bin -m total)
	assert_line --regexp "^Showing nodes accounting for ${total}B, 100% of ${total}B total$"
	# the name with a quote, a '<', a backslash and a newline, as it is
	go_pprof -traces app.pb.gz > traces.txt
	grep -qF 'a"b<c\d' traces.txt
	# samples are leaf first: build is listed before keep before <module>
	go_pprof -traces app.pb.gz | awk '/ build$/ { b = NR } / keep$/ && b { k = NR } / <module>$/ && k { ok = 1; exit }
		/^-+\+-+$/ { b = k = 0 } END { exit !ok }'
}

@test "hybrid stacks: native frames have a mapping and an address; a sample per collapsed line" {
	memray-record -q --native -o n.bin /usr/bin/python3 app.py
	memray-fold --format=pprof -m total n.bin > n.pb.gz
	go_pprof -raw n.pb.gz > raw.txt 2>&1 || { cat raw.txt; false; }
	grep -Eq '^ +[0-9]+: 0x[0-9a-f]+ M=[1-9][0-9]* ' raw.txt
	grep -Eq " build .*/app.py:2( |$)" raw.txt
	[ "$(raw_sum 2 < raw.txt)" = "$(collapsed_sum n.bin -m total)" ]
	# one sample per collapsed line, with its value, whatever the frames
	for opt in --native --by-thread --all-frames --python-only; do
		memray-fold -m total $opt n.bin | grep -v '^#' | awk '{ print $NF }' | sort -n > want
		memray-fold -m total $opt --format=pprof n.bin > o.pb.gz
		go_pprof -raw o.pb.gz 2> /dev/null | awk '/^Samples:/ { on = 1; getline; next } /^Locations/ { on = 0 }
			on && /:/ { sub(/:.*/, ""); split($0, v, " "); print v[2] }' | sort -n > got
		diff want got || { echo "pprof $opt"; false; }
		memray-fold -m total $opt --format=speedscope n.bin |
			python3 -c 'import json, sys; [print(w) for w in json.load(sys.stdin)["profiles"][0]["weights"]]' |
			sort -n > got
		diff want got || { echo "speedscope $opt"; false; }
	done
}

@test "pprof is not written to a terminal" {
	run script -qec "memray-fold --format=pprof demo.bin" /dev/null
	assert_failure 2
	assert_output --partial "memray-fold: "
	assert_output --partial "terminal"
	# a file or a pipe is fine
	run bash -c "memray-fold --format=pprof demo.bin | gzip -dc | wc -c"
	assert_success
	[ "$output" -gt 100 ]
}

@test "speedscope: valid against the published schema, weights add up" {
	memray-fold --format=speedscope demo.bin > demo.speedscope.json
	python3 - "$SCHEMA" demo.speedscope.json <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
jsonschema.validate(doc, schema)
p = doc["profiles"][0]
assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
assert doc["exporter"].startswith("memray-c "), doc["exporter"]
assert p["type"] == "sampled" and p["unit"] == "bytes", p
assert p["name"].endswith("/fixtures/demo"), p["name"]
assert len(p["samples"]) == len(p["weights"])
assert p["startValue"] == 0 and p["endValue"] == sum(p["weights"])
frames = doc["shared"]["frames"]
names = [[frames[i]["name"] for i in s] for s in p["samples"]]
assert any(n[-2:] == ["main", "grow_table"] for n in names), names
f = [f for f in frames if f["name"] == "grow_table"]
assert {x.get("file") for x in f} == {"demo.c"} and {x.get("line") for x in f} == {13, 14}, f
print(sum(p["weights"]))
PY
	[ "$(python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["profiles"][0]["weights"]))' demo.speedscope.json)" = \
	  "$(collapsed_sum demo.bin)" ]
	memray-fold --format=speedscope -m count demo.bin > count.json
	run python3 -c 'import json,sys; p = json.load(open(sys.argv[1]))["profiles"][0]; print(p["unit"], sum(p["weights"]))' count.json
	assert_output "none $(collapsed_sum demo.bin -m count)"
}

@test "speedscope of a Python script: frames with file and line, untrusted names escaped" {
	memray-fold --format=speedscope -m total app.bin > app.json
	! grep -q '<' app.json || false
	python3 - "$SCHEMA" app.json "$(collapsed_sum app.bin -m total)" <<'PY'
import json, sys, jsonschema
doc = json.load(open(sys.argv[2]))
jsonschema.validate(doc, json.load(open(sys.argv[1])))
p = doc["profiles"][0]
assert sum(p["weights"]) == int(sys.argv[3]), (sum(p["weights"]), sys.argv[3])
frames = doc["shared"]["frames"]
hostile = [f for f in frames if f["name"] == 'a"b<c\\d\ne']
assert len(hostile) == 1 and hostile[0]["file"].endswith("/app.py") and hostile[0]["line"] == 10, frames
build = [f for f in frames if f["name"] == "build"]
assert build and build[0]["line"] == 2, build
# root first: <module> before keep before build (before <listcomp> on 3.11)
stacks = [[frames[i]["name"] for i in s] for s in p["samples"]]
assert any(s[:3] == ["<module>", "keep", "build"] for s in stacks), stacks
PY
}

@test "--format: an unknown format is a usage error naming it" {
	run memray-fold --format=svg demo.bin
	assert_failure 2
	assert_output --partial "unknown format 'svg'"
	run memray-fold --format demo.bin
	assert_failure 2
}
