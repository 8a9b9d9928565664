#!/usr/bin/env bats
# memray-flame's pages in real headless Chromium (tests/browser/cdp.py drives
# it over the DevTools protocol): no console errors, no network requests,
# widths, zoom, search, views, hostile names, the timeline, big inputs.

load helper

CHECK="python3 $BATS_TEST_DIRNAME/../browser/flame_check.py"

setup() {
	[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || skip "Chromium is not installed (make deps installs it)"
	cd "$BATS_TEST_TMPDIR"
	printf 'main;alpha;beta 550\nmain;alpha;beta;betamax 50\nmain;alpha;gamma 300\nmain;delta 100\n' > t.folded
	memray-flame t.folded > t.html
}

@test "browser: the test harness itself (tests/browser/selftest.py)" {
	python3 "$BATS_TEST_DIRNAME/../browser/selftest.py"
}

@test "browser: frames are drawn as wide as their bytes" {
	$CHECK widths t.html t.folded
}

@test "browser: clicking a frame zooms to full width; breadcrumbs, reset and the URL fragment" {
	$CHECK zoom t.html
}

@test "browser: / searches, substring and regex, nested matches counted once, Esc clears" {
	$CHECK search t.html
}

@test "browser: flame and icicle; Python, native and CPython colours; hiding internals" {
	{
		echo '_start (app);Py_RunMain (python3.11);_PyEval_EvalFrameDefault (ceval.c:1);run (app.py:3);malloc (libc.so.6) 60'
		echo '_start (app);Py_RunMain (python3.11);_PyEval_EvalFrameDefault (ceval.c:1);_find_and_load (<frozen importlib._bootstrap>:1176);load (mod.py:2);malloc (libc.so.6) 40'
	} > k.folded
	memray-flame k.folded > k.html
	$CHECK views k.html
}

@test "browser: hostile frame names are shown literally and never run" {
	printf 'main;</script><script>alert(1)</script> 10\nmain;"onmouseover=alert(2) x 5\nmain;bad\xff\xfebytes 3\nmain;<img src=x onerror=alert(3)> 4\nmain;line\\nbreak 2\n' > evil.folded
	memray-flame --title '<script>alert(4)</script>' evil.folded > evil.html
	$CHECK hostile evil.html '</script><script>alert(1)</script>' '"onmouseover=alert(2) x' \
		'bad\xff\xfebytes' '<img src=x onerror=alert(3)>' 'line\nbreak'
}

@test "browser: a recording's page shows its stats and memory-over-time chart; a page without a timeline has none" {
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	memray-fold d.bin | memray-flame > demo.html
	$CHECK timeline demo.html yes
	$CHECK timeline t.html no
	# a screenshot of the demo page for people to look at
	mkdir -p "$MEMRAY_BUILD/test-output"
	$CHECK load demo.html 5 "$MEMRAY_BUILD/test-output/flame-demo.png"
}

@test "browser: tooltips give the whole frame, bytes, percents, and allocation counts from a stream" {
	memray-record -q -o d.bin "$FIX/demo" > /dev/null
	memray-flame d.bin > direct.html
	$CHECK tooltip direct.html "fill_cache (demo.c:" counts
	$CHECK tooltip t.html gamma nocounts
}

@test "browser: a 4000-frame stack is drawn as deep as a canvas allows, and zooming shows the rest" {
	python3 -c 'print(";".join("f%d" % i for i in range(4000)), 10)' > deep.folded
	memray-flame deep.folded > deep.html
	$CHECK deep deep.html
}

@test "browser: light and dark themes follow the system setting" {
	$CHECK theme t.html
}

@test "browser: 100,000 distinct stacks render in under 2 s from a page under 10 MB" {
	python3 "$BATS_TEST_DIRNAME/../../bench/gen_stacks.py" 100000 | sort | memray-flame > big.html
	[ "$(stat -c %s big.html)" -lt $((10 << 20)) ]
	$CHECK load big.html 2
}

WORKLOAD="$BATS_TEST_DIRNAME/../fixtures/py/workload.py"

@test "browser: a Python recording opens with its heaviest frame on the first screen, internals hidden until one click" {
	memray-record -q -o w.bin /usr/bin/python3 "$WORKLOAD"
	memray-fold w.bin > w.folded
	memray-flame w.folded > w.html
	# the page as it opens, for people to look at
	mkdir -p "$MEMRAY_BUILD/test-output"
	$CHECK first w.html w.folded "$MEMRAY_BUILD/test-output/flame-python-after.png"
}

@test "browser: the thread selector shows all threads merged, then each thread's own" {
	memray-record -q -o w.bin /usr/bin/python3 "$WORKLOAD"
	memray-fold w.bin | memray-flame > w.html
	memray-fold --by-thread w.bin > by.folded
	$CHECK threads w.html by.folded
	# a stream given directly has them too
	memray-flame w.bin > direct.html
	$CHECK threads direct.html by.folded
}

@test "browser: --inverted roots the graph at the allocating functions, their callers above" {
	memray-flame --inverted t.folded > inv.html
	$CHECK inverted inv.html t.folded
}

@test "browser: through the pipe, tooltips give allocation counts and source lines; --no-source leaves the text out" {
	cat > src.py <<'PY'
def make():
    return bytearray(424242)  # the big one

def hostile():
    return bytearray(333333)  # </script><script>alert(5)</script> & "<b>"

x = make()
y = hostile()
PY
	memray-record -q -o s.bin /usr/bin/python3 src.py
	memray-fold s.bin | memray-flame > s.html
	$CHECK source s.html "make (" "return bytearray(424242)  # the big one"
	$CHECK source s.html "hostile (" 'return bytearray(333333)  # </script><script>alert(5)</script> & "<b>"'
	$CHECK tooltip s.html "make (" counts
	[ "$(grep -o '</script>' s.html | wc -l)" -eq 2 ]
	memray-fold --no-source s.bin | memray-flame > n1.html
	memray-fold s.bin | memray-flame --no-source > n2.html
	memray-flame --no-source s.bin > n3.html
	for f in n1 n2 n3; do
		! grep -q 'the big one\|bytearray(' $f.html || false
		grep -q 'make (' $f.html
	done
	memray-flame s.bin > direct.html
	$CHECK source direct.html "make (" "return bytearray(424242)  # the big one"
}

@test "browser: hovering the memory chart shows the values there" {
	memray-record -q -o w.bin /usr/bin/python3 "$WORKLOAD"
	memray-fold w.bin > w.folded
	memray-flame w.folded > w.html
	$CHECK chart w.html w.folded
}

@test "browser: the table tab lists each function's own and total, sortable by each column" {
	printf 'main;rec;rec;rec 30\nmain;rec;leaf 20\nmain;other 50\n' > tbl.folded
	memray-flame tbl.folded > tbl.html
	$CHECK table tbl.html tbl.folded
}

@test "browser: a time range dragged on the chart shows what was live then (memray-fold --temporal, or a stream)" {
	memray-record -q -o w.bin /usr/bin/python3 "$WORKLOAD"
	memray-stat --dump w.bin > w.dump
	memray-fold --temporal w.bin | memray-flame > wt.html
	$CHECK temporal wt.html w.dump
	memray-flame w.bin > direct.html
	$CHECK temporal direct.html w.dump
	memray-fold w.bin | memray-flame > plain.html
	$CHECK temporal plain.html no
}

@test "browser: allocations made with no Python frame are labelled by why, and the tooltip says what the label stands for" {
	memray-record -q -o t.bin "$PY3" "$PYDIR/thread_start.py" once > /dev/null
	memray-fold -m total t.bin | memray-flame > t.html
	$CHECK note t.html "[Python start-up]" "before any Python code ran"
	$CHECK note t.html "[thread start-up]" "before it ran Python code"
}

