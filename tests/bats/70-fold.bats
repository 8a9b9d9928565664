#!/usr/bin/env bats
# memray-fold: collapsed stacks, metrics, frames, metadata.

load helper

# fold_case CASE [OPTIONS...]: records peaks CASE and folds it, keeping
# the stack below main() and the value: "frame;frame value"
fold_case() {
	local c=$1; shift
	memray-record -q -f -o "$c.bin" "$FIX/peaks" "$c" || return 1
	memray-fold "$@" "$c.bin" | grep -v '^#' | sed 's/^.*main (peaks\.c:[0-9]*);\{0,1\}//'
}

peak_of() { memray-fold "$@" | sed -n 's/^# peak=//p'; }

@test "peak: two rounds of 1 KiB alloc+free hold one allocation of 1 KiB" {
	run fold_case two-rounds
	assert_output "two_rounds (peaks.c:20) 1024"
}

@test "peak: 1 KiB alloc+free then 2 KiB gives 2 KiB" {
	run fold_case grow
	assert_output "grow (peaks.c:26) 2048"
}

@test "peak: two live 1 KiB allocations from the same line are one line of 2 KiB" {
	run fold_case same-line
	assert_line "same_line (peaks.c:33) 2048"
}

@test "peak: partial unmaps (P = page size)" {
	P=$(getconf PAGE_SIZE)
	for c in unmap-first:11 unmap-ends:12 unmap-middle:17 unmap-two-holes:13 unmap-adjacent:10; do
		memray-record -q -f -o m.bin "$FIX/peaks" "${c%:*}"
		[ "$(peak_of m.bin)" = $(( ${c#*:} * P )) ] || { echo "$c: $(peak_of m.bin)"; false; }
		# and the lines add up to the peak
		[ "$(memray-fold m.bin | grep -v '^#' | awk '{ s += $NF } END { print s }')" = $(( ${c#*:} * P )) ]
	done
}

@test "peak: a recursion allocating 1 KiB per level shows every level at the deepest point" {
	run fold_case recursion
	[ "${#lines[@]}" = 10 ]
	for ((d = 0; d < 10; d++)); do
		want="$(printf 'recurse (peaks.c:42);%.0s' $(seq $d))recurse (peaks.c:41) 1024"
		assert_line "$want"
	done
}

@test "metrics: total, count, leaked and temporary" {
	memray-record -q -o t.bin "$FIX/peaks" temporary
	src=$BATS_TEST_DIRNAME/../fixtures/peaks.c
	l1=$(grep -n 'free(malloc(100));' "$src" | cut -d: -f1)
	l2=$((l1 + 1)) l3=$((l1 + 2))
	run bash -c "memray-fold --metric=total t.bin | grep -v '^#' | sed 's/.*main (peaks.c:\([0-9]*\))/main:\1/' | sort"
	assert_output "main:$l1 100
main:$l2 200
main:$l3 300"
	run bash -c "memray-fold --metric=count t.bin | grep -v '^#' | awk '{ s += \$NF } END { print s }'"
	assert_output 3
	run bash -c "memray-fold -m temporary t.bin | grep -v '^#' | sed 's/.*main (peaks.c:\([0-9]*\))/main:\1/'"
	assert_output "main:$l1 100
main:$l3 300"
	run bash -c "memray-fold --metric=leaked t.bin | grep -v '^#'"
	assert_output ""
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	run bash -c "memray-fold --metric=leaked d.bin | grep -v '^#'"
	assert_line --regexp "leak \(demo.c:3[0-9]\) 1048576$"
}

@test "every line loads in flamegraph.pl and speedscope: integers, one space, nothing after" {
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	memray-fold d.bin > d.folded
	grep -v '^# ' d.folded | grep -Ev '^.*[^ ] [0-9]+$' && false
	[ "$(grep -vc '^# ' d.folded)" -gt 1 ]
	for m in total count leaked temporary; do
		memray-fold -m $m d.bin | grep -v '^# ' | grep -Ev '^.*[^ ] [0-9]+$' && false
	done
	true
}

@test "metadata lines: command, pid, metric, peak, duration, a timeline of at most 1000 points" {
	memray-record -q --interval 1 -o s.bin "$FIX/allocs" sleep 2 > /dev/null
	run memray-fold -m total s.bin
	assert_line --regexp "^# command=\".*/allocs sleep 2\"$"
	assert_line --regexp "^# pid=[0-9]+$"
	assert_line '# metric="total"'
	assert_line --regexp "^# peak=[0-9]+$"
	assert_line --regexp "^# duration_ms=(19|20|21)[0-9][0-9]$"
	n=$(memray-fold s.bin | sed -n 's/^# timeline="ms,rss,heap \(.*\)"$/\1/p' | wc -w)
	[ "$n" -ge 400 ]
	[ "$n" -le 1000 ]
}

@test "Python stacks: pure Python by default, hybrid with --native, names escaped" {
	cat > hostile.py <<'PY'
def make():
    return bytearray(424242)
make.__code__ = make.__code__.replace(co_name='a;b\nc "q" é')
try:
    make.__code__ = make.__code__.replace(co_qualname='a;b\nc "q" é')
except TypeError:
    pass
make()
PY
	memray-record -q -o h.bin /usr/bin/python3 hostile.py
	run bash -c "memray-fold -m total h.bin | grep ' 424243$'"
	assert_output --regexp '^<module> \(/[^;]*/hostile.py:8\);a\\x3bb\\nc "q" é \(/[^;]*/hostile.py:2\) 424243$'
	memray-record -q --native -o n.bin /usr/bin/python3 hostile.py
	run bash -c "memray-fold -m total n.bin | grep ' 424243$'"
	assert_output --regexp '^.*<module> \(/[^;]*/hostile.py:8\);a\\x3bb\\nc "q" é \(/[^;]*/hostile.py:2\)(;.*)? 424243$'
	# CPython's own frames are hidden unless asked for
	[ "$(memray-fold -m total n.bin | grep ' 424243$' | tr ';' '\n' | wc -l)" -lt \
	  "$(memray-fold -m total --all-frames n.bin | grep ' 424243$' | tr ';' '\n' | wc -l)" ]
	run bash -c "memray-fold -m total --python-only n.bin | grep ' 424243$'"
	assert_output --regexp '^<module> \(/[^;]*/hostile.py:8\);a\\x3bb\\nc "q" é \(/[^;]*/hostile.py:2\) 424243$'
}

@test "--hide-import-system drops the import machinery's frames" {
	mkdir -p pkg && printf 'X = bytearray(515151)\n' > pkg/big.py
	printf 'import sys\nsys.path.insert(0, ".")\nimport pkg.big\n' > imp.py
	memray-record -q -o i.bin /usr/bin/python3 imp.py
	memray-fold -m total i.bin | grep ' 515152$' | grep -q 'importlib'
	run bash -c "memray-fold -m total --hide-import-system i.bin | grep ' 515152$'"
	assert_output --regexp '^<module> \(/[^;]*/imp.py:3\);<module> \(/[^;]*/pkg/big.py:1\) 515152$'
}

@test "--by-thread puts a root frame per thread" {
	memray-record -q -o t.bin "$FIX/allocs" thread > /dev/null
	run bash -c "memray-fold --by-thread -m total t.bin | grep -v '^#' | grep 'chain\|named_thread' | cut -d';' -f1 | sort -u"
	assert_output --regexp '^worker-two \(thread [0-9]+\)$'
}

@test "--pid selects a process; an unknown pid is an error" {
	memray-record -q -o p.bin "$FIX/allocs" chain > /dev/null
	pid=$(dump p.bin | head -1 | field pid)
	run memray-fold --pid "$pid" p.bin
	assert_success
	assert_line "# pid=$pid"
	run memray-fold --pid 1 p.bin
	assert_failure 2
	assert_output "memray-fold: no process 1 in the input"
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	dpid=$(dump d.bin | head -1 | field pid)
	cat p.bin d.bin | memray-fold > both.txt
	run grep '^# \(command\|pid\)=' both.txt
	assert_output "# command=\"$FIX/allocs chain\"
# pid=$pid
# command=\"$FIX/demo\"
# pid=$dpid"
}

@test "compressed input, a cut stream, bad options" {
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	memray-fold d.bin > plain.txt
	for z in gzip zstd xz bzip2; do
		command -v $z > /dev/null || continue
		$z -c d.bin | memray-fold > $z.txt
		cmp plain.txt $z.txt
	done
	head -c 20000 d.bin > cut.bin
	run memray-fold cut.bin
	assert_failure 2
	assert_output --regexp "memray-fold: cut.bin: truncated at byte [0-9]+"
	assert_line --partial '# metric="peak"'
	run memray-fold --metric=bogus d.bin
	assert_failure 2
	assert_output --partial "unknown metric 'bogus'"
}

@test "a changed binary gives a warning and raw addresses, never wrong names" {
	cp "$FIX/allocs" ./prog
	./prog none
	memray-record -q -o c.bin ./prog chain > /dev/null
	memray-fold c.bin | grep -q 'chain_c (allocs.c:'
	# rebuild it differently: another build-id
	cc -O1 -g -o prog "$BATS_TEST_DIRNAME/../fixtures/allocs.c" -ldl -lpthread
	run memray-fold c.bin
	assert_success
	assert_line --partial "memray-fold: warning: $BATS_TEST_TMPDIR/prog has changed since it was recorded"
	! echo "$output" | grep -q "chain_c" || false
	echo "$output" | grep -q "0x[0-9a-f]* (prog)"
}

# debug_split DIR: builds allocs.c into DIR/prog with its DWARF in a file
# of its own, prog.debug, named by the binary's .gnu_debuglink
debug_split() {
	mkdir -p "$1"
	cc -O1 -g -o "$1/prog" "$BATS_TEST_DIRNAME/../fixtures/allocs.c" -ldl -lpthread
	objcopy --only-keep-debug "$1/prog" "$1/prog.debug"
	objcopy --strip-debug --add-gnu-debuglink="$1/prog.debug" "$1/prog"
}

@test "a separate debug file is found by its debuglink name beside the binary and in .debug/, only when its build-id is the binary's, and debuginfod is not loaded unless DEBUGINFOD_URLS asks for it" {
	command -v objcopy > /dev/null || skip "objcopy (binutils) is not installed"
	# no debug information anywhere: libdw would load libdebuginfod (and
	# libcurl) to ask servers no one named
	cc -O1 -o bare "$BATS_TEST_DIRNAME/../fixtures/allocs.c" -ldl -lpthread
	memray-record -q -o bare.bin ./bare chain > /dev/null
	LD_DEBUG=files memray-fold bare.bin > bare.txt 2> ld.txt
	grep -q 'chain_c (bare)' bare.txt
	run grep -c 'file=libdebuginfod' ld.txt
	assert_output 0
	debug_split d
	memray-record -q -o c.bin d/prog chain > /dev/null
	memray-fold c.bin > beside.txt
	grep -q 'chain_c (allocs.c:' beside.txt
	# in .debug/ beside the binary
	mkdir d/.debug
	mv d/prog.debug d/.debug/
	memray-fold c.bin > dotdebug.txt
	cmp beside.txt dotdebug.txt
	# a debug file of another build of the program, under the same name: not used
	debug_split other
	cc -O2 -g -o other/prog "$BATS_TEST_DIRNAME/../fixtures/allocs.c" -ldl -lpthread
	objcopy --only-keep-debug other/prog d/.debug/prog.debug
	run memray-fold c.bin
	assert_success
	! echo "$output" | grep -q 'chain_c (allocs.c:' || false
	echo "$output" | grep -q 'chain_c (prog)'
	# a library recorded by a symbolic link to it: its debug file is found
	# beside the file the link resolves to
	mkdir real lnk
	printf '#include <stdlib.h>\nvoid *x_alloc(size_t n) { return malloc(n); }\n' > real/libx.c
	cc -O1 -g -shared -fPIC -Wl,-soname,libx.so.1 -o real/libx.so.1 real/libx.c
	objcopy --only-keep-debug real/libx.so.1 real/libx.so.1.debug
	objcopy --strip-debug --add-gnu-debuglink=real/libx.so.1.debug real/libx.so.1
	ln -s ../real/libx.so.1 lnk/libx.so.1
	printf '#include <stdio.h>\n#include <stdlib.h>\nvoid *x_alloc(size_t);\nint main(void) { printf("%%p\\n", x_alloc(12345)); return 0; }\n' > xmain.c
	cc -O1 -o xmain xmain.c lnk/libx.so.1 -Wl,-rpath,"$PWD/lnk"
	memray-record -q -o x.bin ./xmain > /dev/null
	memray-stat --dump x.bin | grep -q "module .*lnk/libx.so.1"
	memray-fold x.bin | grep -q 'x_alloc (libx.c:2)'
	# with DEBUGINFOD_URLS set, libdw's own search runs, servers included
	if ls /usr/lib/x86_64-linux-gnu/libdebuginfod.so.1 > /dev/null 2>&1; then
		DEBUGINFOD_URLS=http://127.0.0.1:9 DEBUGINFOD_TIMEOUT=2 LD_DEBUG=files \
			memray-fold bare.bin > /dev/null 2> ld.txt
		grep -q 'file=libdebuginfod' ld.txt
	fi
}

# build_id FILE: FILE's GNU build-id in hex
build_id() {
	readelf -n "$1" | awk '/Build ID:/ { print $3 }'
}

@test "frames named once are kept in the symbol cache by build-id, and read back while the debug file is unchanged" {
	command -v objcopy > /dev/null || skip "objcopy (binutils) is not installed"
	debug_split d
	memray-record -q -o c.bin d/prog chain > /dev/null
	id=$(build_id d/prog)
	[ -n "$id" ]
	cache=$MEMRAY_SYMBOL_CACHE
	memray-fold c.bin > cold.txt
	grep -q 'chain_c (allocs.c:' cold.txt
	# the file names the debug file the frames came from
	[ -f "$cache/$id" ]
	head -1 "$cache/$id" | grep -q '^memray-c symbol cache 1 '
	grep -qx "$PWD/d/prog.debug" "$cache/$id"
	grep -q '^chain_c (allocs.c:' "$cache/$id"
	memray-fold c.bin > warm.txt
	cmp cold.txt warm.txt
	# what is kept is what is shown: a name changed in the cache (same
	# length) is read back, by memray-fold (prefetched) and memray-tree
	sed -i 's/^chain_c (allocs.c:/chain_X (allocs.c:/' "$cache/$id"
	memray-fold c.bin | grep -q 'chain_X (allocs.c:'
	memray-tree -m 0 c.bin | grep -q 'chain_X (allocs.c:'
	! memray-fold c.bin | grep -q 'chain_c' || false
	# the debug file changed (its time): named from the DWARF again, and kept anew
	touch d/prog.debug
	memray-fold c.bin > again.txt
	cmp cold.txt again.txt
	! grep -q '^chain_X' "$cache/$id" || false
	# the debug file moved to .debug/: not the one the frames came from
	sed -i 's/^chain_c (allocs.c:/chain_X (allocs.c:/' "$cache/$id"
	mkdir d/.debug
	mv d/prog.debug d/.debug/
	memray-fold c.bin > moved.txt
	cmp cold.txt moved.txt
	grep -qx "$PWD/d/.debug/prog.debug" "$cache/$id"
	# a copy of the program with no debug file beside it: named as
	# without a cache, though its build-id is the same
	mkdir e
	cp d/prog e/prog
	memray-record -q -o e.bin e/prog chain > /dev/null
	MEMRAY_SYMBOL_CACHE=off memray-fold e.bin > e-cold.txt
	grep -q 'chain_c (prog)' e-cold.txt
	memray-fold e.bin > e-warm.txt
	cmp e-cold.txt e-warm.txt
	# a malformed file: said once, removed, and written anew
	printf 'not a cache\n' > "$cache/$id"
	run memray-fold c.bin
	assert_success
	assert_line "memray-fold: warning: symbol cache $cache/$id: it is not a memray-c symbol cache; removed"
	[ "$(grep -c 'warning: symbol cache' <<< "$output")" -eq 1 ]
	memray-fold c.bin 2> err.txt > fixed.txt
	cmp cold.txt fixed.txt
	[ ! -s err.txt ]
	head -1 "$cache/$id" | grep -q '^memray-c symbol cache 1 '
	# cut in the middle of an entry
	head -c -3 "$cache/$id" > cut && cp cut "$cache/$id"
	run memray-fold c.bin
	assert_success
	assert_line --partial "symbol cache $cache/$id: a counted field does not fit its count; removed"
	# another version of memray-c's file: not read, without a word, and replaced
	sed -i '1s/.*/memray-c symbol cache 1 0.0.0-other/; s/^chain_c (allocs.c:/chain_X (allocs.c:/' "$cache/$id"
	memray-fold c.bin 2> err.txt > other.txt
	cmp cold.txt other.txt
	[ ! -s err.txt ]
	! grep -q '0.0.0-other' "$cache/$id" || false
}

@test "the symbol cache's place: MEMRAY_SYMBOL_CACHE, XDG_CACHE_HOME, ~/.cache, off; a place that cannot be written is done without" {
	cc -O1 -g -o prog "$BATS_TEST_DIRNAME/../fixtures/allocs.c" -ldl -lpthread
	memray-record -q -o c.bin ./prog chain > /dev/null
	id=$(build_id prog)
	memray-fold c.bin > want.txt
	grep -q 'chain_c (allocs.c:' want.txt
	# DWARF in the binary itself: the binary is the debug file named
	grep -qx "$PWD/prog" "$MEMRAY_SYMBOL_CACHE/$id"
	(unset MEMRAY_SYMBOL_CACHE; XDG_CACHE_HOME=$PWD/xdg memray-fold c.bin > xdg.txt)
	cmp want.txt xdg.txt
	[ -f "xdg/memray-c/symbols/$id" ]
	(unset MEMRAY_SYMBOL_CACHE XDG_CACHE_HOME; HOME=$PWD/home memray-fold c.bin > home.txt)
	cmp want.txt home.txt
	[ -f "home/.cache/memray-c/symbols/$id" ]
	for off in off ""; do
		MEMRAY_SYMBOL_CACHE=$off HOME=$PWD/home2 XDG_CACHE_HOME=$PWD/xdg2 memray-fold c.bin > off.txt
		cmp want.txt off.txt
		[ ! -e home2 ]
		[ ! -e xdg2 ]
	done
	touch file
	MEMRAY_SYMBOL_CACHE=$PWD/file/symbols memray-fold c.bin 2> err.txt > ro.txt
	cmp want.txt ro.txt
	[ ! -s err.txt ]
}

@test "the symbol cache is kept small: files a week unused and a killed writer's day-old files go, once a day; a file used is touched" {
	cc -O1 -g -o prog "$BATS_TEST_DIRNAME/../fixtures/allocs.c" -ldl -lpthread
	memray-record -q -o c.bin ./prog chain > /dev/null
	id=$(build_id prog)
	cache=$MEMRAY_SYMBOL_CACHE
	memray-fold c.bin > want.txt
	# (the first reading found no cache to clean; the next one stamps it)
	[ -f "$cache/$id" ]
	[ ! -e "$cache/.cleaned" ]
	memray-fold c.bin > /dev/null
	[ -f "$cache/.cleaned" ]
	# another module's file unused for 8 days, one of 6, a writer's left
	# a day ago, and what is not the cache's own
	head -2 "$cache/$id" > "$cache/ab01"
	cp "$cache/ab01" "$cache/ab02"
	cp "$cache/ab01" "$cache/.ab03.Xy12Zq"
	echo mine > "$cache/ab04"
	echo mine > "$cache/notes"
	: > "$cache/ab05"
	touch -d '8 days ago' "$cache/ab01" "$cache/ab04" "$cache/ab05" "$cache/notes" "$cache/$id"
	touch -d '6 days ago' "$cache/ab02"
	touch -d '25 hours ago' "$cache/.ab03.Xy12Zq"
	# cleaned today already: nothing goes; the file used is touched
	memray-fold c.bin > again.txt
	cmp want.txt again.txt
	[ -f "$cache/ab01" ]
	[ -f "$cache/.ab03.Xy12Zq" ]
	[ -n "$(find "$cache/$id" -mmin -5)" ]
	# a day later: the week-old file and the writer's go
	touch -d '25 hours ago' "$cache/.cleaned"
	memray-stat c.bin > /dev/null
	[ ! -e "$cache/ab01" ]
	[ ! -e "$cache/.ab03.Xy12Zq" ]
	for f in ab02 ab04 ab05 notes "$id"; do
		[ -f "$cache/$f" ] || { echo "$f was removed"; false; }
	done
	[ -n "$(find "$cache/.cleaned" -mmin -5)" ]
	memray-fold c.bin > last.txt
	cmp want.txt last.txt
}

@test "a module whose build-id is longer than a stream's (200 bytes) is named, its debug file looked for by libdw's own search" {
	printf '#include <stdio.h>\n#include <stdlib.h>\nint main(void) { char *p = malloc(1000); printf("%%p\\n", (void *)p); free(p); return 0; }\n' > p.c
	cc -g -o plong p.c -Wl,--build-id=0x$(printf 'ab%.0s' $(seq 100)) || skip "the linker takes no build-id of 100 bytes"
	[ "$(build_id plong | wc -c)" -eq 201 ]
	strip -g plong # no DWARF of its own: a debug file is looked for
	memray-record -q -o long.bin ./plong > /dev/null
	run memray-fold long.bin
	assert_success
	assert_output --partial ';main (plong);'
}

@test "frames of many modules read ahead by the prefetch thread are named as without it" {
	# Python with --native: frames in python3, libc and extension modules
	memray-record -q --native -o n.bin /usr/bin/python3 -c '
import json, zlib, hashlib
b = [json.dumps({"k": i}) for i in range(2000)]
z = [zlib.compress(bytes(1000)) for _ in range(50)]
h = [hashlib.sha256(bytes(100)).hexdigest() for _ in range(50)]
' > /dev/null
	memray-fold n.bin | grep -v '^#' | sed 's/ [0-9]*$//' | tr ';' '\n' | sort -u > fold.txt
	# memray-tree symbolizes after reading, with no prefetch: every node shown
	memray-tree -m 0 -b 1000000 n.bin | sed '1d; s/^[-|` ]*[0-9.]* [KMG]*i*B ([0-9.]*%) //' |
		sort -u > tree.txt
	cmp fold.txt tree.txt
	grep -q '^_PyObject_Malloc (obmalloc.c:\|^PyMem_RawMalloc (\|^__libc_start_call_main (' fold.txt
	[ "$(wc -l < fold.txt)" -gt 100 ]
}

# total_by RULE FILE: the sum of the values of FILE's lines that RULE (a
# Perl regex whose second group is the value) takes as stacks; fails if it
# takes a metadata line.
total_by() {
	perl -ne 'chomp; if (/'"$1"'/) { die "a metadata line read as a stack: $_\n" if /^#/; $t += $2 } END { print $t + 0, "\n" }' "$2"
}

@test "collapsed output reads unchanged by flamegraph.pl's and speedscope's rules: no metadata line is a stack, the totals are the recorded ones" {
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	json=$(memray-stat --json d.bin)
	for run in "peak_bytes memray-fold d.bin" "bytes_allocated memray-fold -m total d.bin" \
		"leaked_bytes memray-leaks d.bin"; do
		set -- $run
		key=$1; shift
		"$@" > out.folded 2> /dev/null
		want=$(echo "$json" | python3 -c "import json, sys; print(json.load(sys.stdin)['$key'])")
		# flamegraph.pl: my ($stack, $samples) = (/^(.*)\s+?(\d+(?:\.\d*)?)$/);
		got=$(total_by '^(.*)\s+?(\d+(?:\.\d*)?)$' out.folded)
		[ "$got" = "$want" ] || { echo "$* under flamegraph.pl's rule: $got, $key $want"; false; }
		# speedscope's import: /^(.*) (\d+)$/
		got=$(total_by '^(.*) (\d+)$' out.folded)
		[ "$got" = "$want" ] || { echo "$* under speedscope's rule: $got, $key $want"; false; }
		grep -q '^# ' out.folded # the metadata is there, for memray-flame
	done
}

@test "flamegraph.pl draws memray-fold's output with the recorded total at the root" {
	command -v flamegraph.pl > /dev/null || skip "flamegraph.pl is not on PATH"
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	memray-fold d.bin | flamegraph.pl --countname bytes > a.svg
	want=$(memray-stat --json d.bin | python3 -c "import json, sys; print(json.load(sys.stdin)['peak_bytes'])")
	got=$(sed -n 's/.*<title>all (\([0-9,]*\) bytes, 100%)<\/title>.*/\1/p' a.svg | tr -d ,)
	[ "$got" = "$want" ] || { echo "root $got, peak $want"; false; }
}

# annotations FILE: checks memray-fold's "# stack.*" lines against the
# stack line each precedes, and prints "thread-label value count" per
# thread, summed over the stacks.
annotations() {
	python3 - "$1" <<'PY'
import re, sys
threads, pending, sums, total, n = {}, {}, {}, 0, 0
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.rstrip("\n")
    m = re.match(r'# thread="(\d+) (.*)"$', line)
    if m:
        threads[m.group(1)] = m.group(2)
        continue
    m = re.match(r'# stack\.(count|threads)=(.*)$', line)
    if m:
        pending[m.group(1)] = m.group(2).strip('"')
        continue
    if line.startswith("# "):
        continue
    value = int(line.rsplit(" ", 1)[1])
    assert "count" in pending, "no count before " + line
    parts = [p.split(":") for p in pending.get("threads", "").split()]
    if parts:
        assert sum(int(p[1]) for p in parts) == value, "threads do not add up: " + line
        assert sum(int(p[2]) for p in parts) == int(pending["count"]), "counts: " + line
    for t, v, c in parts:
        s = sums.setdefault(threads[t], [0, 0])
        s[0] += int(v)
        s[1] += int(c)
    pending = {}
for name, (v, c) in sorted(sums.items()):
    print(name, v, c)
PY
}

@test "each stack line follows its allocation count and, with several threads, its values by thread" {
	memray-record -q -o t.bin /usr/bin/python3 "$BATS_TEST_DIRNAME/../fixtures/py/threads.py"
	memray-fold -m total t.bin > t.folded
	run annotations t.folded
	assert_success
	# each thread's own allocations, as --by-thread's root frames give them
	memray-fold --by-thread -m total t.bin | grep -v '^#' | sed 's/ \([0-9]*\)$/;\1/' |
		awk -F';' '{ s[$1] += $NF } END { for (t in s) print t, s[t] }' | sort > want
	echo "$output" | awk '{ $NF = ""; sub(/ $/, ""); print }' | sort > got
	diff want got
	[ "$(wc -l < got)" = 3 ] # the main thread and its two workers
	# the counts add up to memray-fold -m count's
	want=$(memray-fold -m count t.bin | grep -v '^#' | awk '{ s += $NF } END { print s }')
	got=$(memray-fold -m total t.bin | sed -n 's/^# stack.count=//p' | awk '{ s += $1 } END { print s }')
	[ "$got" = "$want" ]
	# one thread: counts only
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	memray-fold d.bin > d.folded
	! grep -q '^# stack.threads=\|^# thread=' d.folded || false
	[ "$(grep -c '^# stack.count=' d.folded)" = "$(grep -vc '^# ' d.folded)" ]
}

@test "the thread list counts each thread once: at the peak one thread with 300 stacks has none; a thread with nothing live at the peak is listed with --temporal" {
	cat > gone.py <<'PY'
import threading, time
def worker():
    tmp = [bytearray(100000) for _ in range(20)]  # 2 MB, gone when it returns
    time.sleep(0.1)
t = threading.Thread(target=worker, name="early")
t.start()
t.join()
for i in range(300):  # the peak: 30 MB from 300 stacks, the main thread's
    exec("def f%d():\n    return bytearray(100000 + %d)\n" % (i, i))
keep = [globals()["f%d" % i]() for i in range(300)]
time.sleep(0.05)
PY
	memray-record -q -o gone.bin /usr/bin/python3 gone.py
	# at the peak the main thread alone: no list, however many its lines
	memray-fold gone.bin > peak.folded
	[ "$(grep -vc '^#' peak.folded)" -gt 300 ]
	! grep -q '^# thread=' peak.folded || false
	# in all, both
	[ "$(memray-fold -m total gone.bin | grep -c '^# thread=')" = 2 ]
	# over time the worker's 2 MB: both threads, and memray-flame's page
	# gets them for its thread selector
	memray-fold --temporal gone.bin > gone.folded
	grep '^# thread=' gone.folded
	grep -q '^# thread="1 MainThread' gone.folded
	grep -q '^# thread="2 early' gone.folded
	memray-flame gone.folded > gone.html
	grep -q '"threads":\[\[1,"MainThread[^"]*"\],\[2,"early[^"]*"\]\]' gone.html
}

@test "Python frames' source lines are read at fold time; --no-source leaves them out; a changed file is said once" {
	printf 'def make():\n    return bytearray(424242)  # the big one\n\nx = make()\n' > src.py
	memray-record -q -o s.bin /usr/bin/python3 src.py
	run memray-fold s.bin
	assert_success
	assert_line "# source=\"$BATS_TEST_TMPDIR/src.py:2\\treturn bytearray(424242)  # the big one\""
	assert_line "# source=\"$BATS_TEST_TMPDIR/src.py:4\\tx = make()\""
	run memray-fold --no-source s.bin
	assert_success
	! echo "$output" | grep -q 'source=\|bytearray(424242)' || false
	# the stacks are the same either way
	diff <(memray-fold s.bin | grep -v '^#') <(memray-fold --no-source s.bin | grep -v '^#')
	touch src.py
	# (the warning on stderr, apart: written into a pipe with stdout, it
	# lands wherever stdout's buffer was flushed)
	run --separate-stderr memray-fold s.bin
	assert_success
	[ "$stderr" = "memray-fold: warning: 1 source file changed since the recording ($BATS_TEST_TMPDIR/src.py): no source text for its frames" ]
	! echo "$output" | grep -q 'source=.*src.py' || false
	rm src.py
	run --separate-stderr memray-fold s.bin
	[ "$stderr" = "memray-fold: warning: cannot read 1 source file ($BATS_TEST_TMPDIR/src.py: No such file or directory): no source text for its frames" ]
	# a frame that names a device is not read (/dev/zero has no end)
	printf 'def f():\n    return bytearray(100000)\nf.__code__ = f.__code__.replace(co_filename="/dev/zero")\nx = f()\n' > dev.py
	memray-record -q -o dev.bin /usr/bin/python3 dev.py
	run --separate-stderr timeout 10 memray-fold dev.bin
	assert_success
	[ "$stderr" = "memray-fold: warning: cannot read 1 source file (/dev/zero: not a regular file): no source text for its frames" ]
}

@test "a threaded Python recording's annotations and source lines are no stacks to flamegraph.pl and speedscope" {
	memray-record -q -o t.bin /usr/bin/python3 "$BATS_TEST_DIRNAME/../fixtures/py/threads.py"
	memray-fold -m total t.bin > t.folded 2> /dev/null
	grep -q '^# stack.threads=' t.folded
	grep -q '^# source=' t.folded
	want=$(memray-stat --json t.bin | python3 -c "import json, sys; print(json.load(sys.stdin)['bytes_allocated'])")
	[ "$(total_by '^(.*)\s+?(\d+(?:\.\d*)?)$' t.folded)" = "$want" ]
	[ "$(total_by '^(.*) (\d+)$' t.folded)" = "$want" ]
}

# live_check FILE: checks that at every point of FILE's timeline the
# stacks' "# stack.live=" changes up to then add up to the heap there;
# prints how many points and changes it checked.
live_check() {
	python3 - "$1" <<'PY'
import re, sys
points, changes = [], []
for line in open(sys.argv[1], encoding="utf-8"):
    if line.startswith('# timeline="'):
        points = [tuple(map(int, p.split(","))) for p in line.strip()[12:-1].split(" ")[1:]]
    m = re.match(r'# stack\.live="(.*)"$', line)
    if m:
        changes += [tuple(map(int, c.split(":"))) for c in m.group(1).split()]
times = {p[0] for p in points}
assert all(c[0] in times for c in changes), "a change between the timeline's points"
for ms, rss, heap in points:
    live = sum(c[2] for c in changes if c[0] <= ms)
    assert live == heap, f"at {ms} ms the stacks hold {live} bytes, the heap is {heap}"
print(len(points), len(changes))
PY
}

@test "--temporal: each stack's live bytes over time add up to the heap at every point of the timeline, however long" {
	memray-record -q -o w.bin /usr/bin/python3 "$BATS_TEST_DIRNAME/../fixtures/py/workload.py"
	memray-fold --temporal w.bin > w.folded
	run live_check w.folded
	assert_success
	[ "${lines[0]% *}" -gt 20 ]
	# the stacks and their values are memray-fold's without it
	diff <(memray-fold w.bin | grep -v '^#') <(grep -v '^#' w.folded | grep -v ' 0$')
	# a long recording whose stacks change all along: the timeline is
	# thinned, and the changes with it
	cat > churn.py <<'PY'
import time
held, end = [], time.time() + 1.5
while time.time() < end:
    held.append(bytearray(1000 + len(held) % 7 * 5000))
    if len(held) > 40:
        del held[:20]
    time.sleep(0.0005)
PY
	memray-record -q --interval 1 -o s.bin /usr/bin/python3 churn.py
	[ "$(memray-stat --dump s.bin | grep -c ' memory ')" -gt 1000 ]
	memray-fold --temporal s.bin > s.folded
	run live_check s.folded
	assert_success
	[ "${lines[0]% *}" -ge 400 ]
	[ "${lines[0]% *}" -le 1000 ]
	[ "${lines[0]#* }" -gt 400 ]
	# and still only stacks to flamegraph.pl and speedscope
	want=$(memray-stat --json w.bin | python3 -c "import json, sys; print(json.load(sys.stdin)['peak_bytes'])")
	[ "$(total_by '^(.*)\s+?(\d+(?:\.\d*)?)$' w.folded)" = "$want" ]
	[ "$(total_by '^(.*) (\d+)$' w.folded)" = "$want" ]
	run memray-fold --temporal --format speedscope w.bin
	assert_failure 2
	assert_output --partial "--temporal is for collapsed stacks"
}

# same_ms IN OUT EVERY MOVED: OUT is IN, the stream of one process, where
# of every EVERY memory records the MOVED after the first are moved back
# into its millisecond (their time differences rewritten, the records
# after them moving back as much, and the payload cut into chunks again,
# the trailer alone in the last one); prints how many of those moved hold
# a heap other than the record's before them, then how many milliseconds
# have a memory record.
same_ms() {
	memray-stat --dump "$1" > "$2.dump" || return 1
	python3 - "$@" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
every, moved = int(sys.argv[3]), int(sys.argv[4])
# the payload, and the file offset of each of its bytes
payload, at, pos = bytearray(), [], 0
while pos < len(data):
    n = int.from_bytes(data[pos + 8:pos + 10], "little")
    at += range(pos + 12, pos + 12 + n)
    payload += data[pos + 12:pos + 12 + n]
    pos += 12 + n
index = {o: k for k, o in enumerate(at)}
mem, trailer, interval = [], None, None
for line in open(sys.argv[2] + ".dump", encoding="utf-8"):
    f = line.split()
    v = dict(x.split("=", 1) for x in f[3:] if "=" in x)
    if f[2] == "header":
        assert v["version"] == "3", v["version"]
        interval = int(v["interval_us"])
    elif f[2] == "memory":
        mem.append((int(f[0]), int(v["time_us"]), int(v["heap"])))
    elif f[2] == "trailer":
        trailer = index[int(f[0])]
def varint(k):
    u = n = 0
    while True:
        b = payload[k + n]
        u |= (b & 0x7f) << (7 * n)
        n += 1
        if not b & 0x80:
            return u, n
def put(u):
    out = bytearray()
    while True:
        out.append(u & 0x7f | (0x80 if u > 0x7f else 0))
        u >>= 7
        if not u:
            return out
shift = differ = 0
ms, edits = set(), []
for i, (off, t1, h1) in enumerate(mem):
    if not (i and 0 < i % every <= moved):
        ms.add((t1 - shift) // 1000)
        continue
    t0, h0 = mem[i - 1][1:]
    k = index[off] + 1  # the time difference (version 3: from the interval), after the tag
    u, n = varint(k)
    old = interval + ((u >> 1) ^ -(u & 1))
    assert old == t1 - t0, (off, old, t1 - t0)
    new = min(old, (999 - (t0 - shift) % 1000) // 2)
    d = new - interval
    edits.append((k, n, put(2 * d if d >= 0 else -2 * d - 1)))
    shift += old - new
    differ += h0 != h1
for k, n, b in reversed(edits):
    payload[k:k + n] = b
    if trailer > k:
        trailer += len(b) - n
pid = data[4:8]
out, seq = bytearray(), 0
cuts = list(range(0, trailer, 4084)) + [trailer, len(payload)]
for a, b in zip(cuts, cuts[1:]):
    if a < b:
        out += b"MRYC" + pid + (b - a).to_bytes(2, "little") + seq.to_bytes(2, "little") + payload[a:b]
        seq += 1
open(sys.argv[2], "wb").write(out)
print(differ, len(ms))
PY
}

@test "--temporal: memory records in one millisecond are one point of the timeline, the last one's, thinned or not" {
	# The memory record that ends a stream can fall in the millisecond of
	# the tracker's last sample (a loaded machine made it happen): the two
	# points had one time and two heaps, and the changes of both counted
	# at the first. Records are moved into one millisecond here by hand.
	cat > churn.py <<'PY'
import sys, time
held, end = [], time.time() + float(sys.argv[1])
while time.time() < end:
    held.append(bytearray(1000 + len(held) % 7 * 5000))
    if len(held) > 40:
        del held[:20]
    time.sleep(0.0005)
PY
	memray-record -q --interval 1 -o c.bin /usr/bin/python3 churn.py 0.3
	read -r differ nms < <(same_ms c.bin c2.bin 3 1)
	[ "$differ" -gt 20 ]
	[ "$nms" -lt 1000 ]
	memray-fold --temporal c2.bin > c2.folded
	run live_check c2.folded
	assert_success
	[ "${lines[0]% *}" = "$nms" ]
	# one point per millisecond, with the rss of its last memory record
	memray-stat --dump c2.bin | awk '$3 == "memory" { split($4, t, "="); split($5, m, "=")
		ms = int(t[2] / 1000); if (!(ms in rss)) at[n++] = ms; rss[ms] = m[2] }
		END { for (i = 0; i < n; i++) print at[i] "," rss[at[i]] }' > want.txt
	[ "$(wc -l < want.txt)" = "$nms" ]
	diff want.txt <(memray-stat --timeline c2.bin | sed 1d | cut -d, -f1,2)
	[ "$(sed -n 's/^# timeline="ms,rss,heap \(.*\)"$/\1/p' c2.folded | tr ' ' '\n')" = \
	  "$(memray-stat --timeline c2.bin | sed 1d)" ]
	# the same in a long recording, thinned to every other record: of
	# three records in one millisecond, the first and the third can be kept
	memray-record -q --interval 1 -o l.bin /usr/bin/python3 churn.py 1.5
	read -r differ nms < <(same_ms l.bin l2.bin 20 2)
	[ "$differ" -gt 50 ]
	[ "$nms" -gt 1000 ]
	memray-fold --temporal l2.bin > l2.folded
	run live_check l2.folded
	assert_success
	[ "${lines[0]% *}" -ge 500 ]
	[ "${lines[0]% *}" -le 1000 ]
	memray-stat --timeline l2.bin > l2.csv
	[ "$(wc -l < l2.csv)" -gt 1 ]
	[ -z "$(cut -d, -f1 l2.csv | uniq -d)" ]
}

@test "--native on a recording without native frames, --python-only on one without Python frames: said, the stacks written as they are" {
	memray-record -q -f -o p.bin /usr/bin/python3 -c 'x = bytearray(1000000)'
	run memray-fold --native p.bin
	assert_success
	assert_line --index 0 "memray-fold: --native: the recording has no native frames (memray-record records them for Python with --native): its stacks are written as they are"
	memray-fold --native p.bin 2> /dev/null > a.txt
	memray-fold p.bin > b.txt
	cmp a.txt b.txt
	memray-record -q -f -o c.bin "$FIX/demo" > /dev/null
	run memray-fold --python-only c.bin
	assert_success
	assert_line --index 0 "memray-fold: --python-only: the recording has no Python frames (the program is not a CPython read by the tracker): its stacks are [unknown]"
	# both present: nothing said
	memray-record -q -f --native -o n.bin /usr/bin/python3 -c 'x = bytearray(1000000)'
	for o in --native --python-only; do
		run bash -c "memray-fold $o n.bin 2>&1 > /dev/null"
		assert_success
		assert_output ""
	done
}
