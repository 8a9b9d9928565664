#!/usr/bin/env bats
# The notebook magic: a real .ipynb run headless by nbconvert in a kernel
# of a venv with the wheel installed (Debian's /usr/bin/python3 with its
# python3-ipykernel and python3-nbconvert, seen through
# --system-site-packages); each %%memray_c_flamegraph cell's output must
# hold the flame page of the cell's own functions.

load helper

ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
PY=/usr/bin/python3

setup_file() {
	"$PY" -c 'import ipykernel, nbconvert, nbformat' 2> /dev/null ||
		skip "ipykernel or nbconvert is missing for $PY (Debian: python3-ipykernel python3-nbconvert)"
	make -s -C "$ROOT" BUILD="$MEMRAY_BUILD" wheel > "$BATS_FILE_TMPDIR/wheel.log" 2>&1 ||
		{ cat "$BATS_FILE_TMPDIR/wheel.log" >&3; return 1; }
	local d=$BATS_FILE_TMPDIR
	# Jupyter's own directories here: no user's kernels, nothing written home
	export HOME=$d/home JUPYTER_CONFIG_DIR=$d/jupyter/config JUPYTER_DATA_DIR=$d/jupyter/data \
		JUPYTER_RUNTIME_DIR=$d/jupyter/runtime JUPYTER_PLATFORM_DIRS=0 PYDEVD_DISABLE_FILE_VALIDATION=1
	mkdir -p "$HOME"
	"$PY" -m venv --system-site-packages "$d/venv" > /dev/null
	"$d/venv/bin/python" -m pip install -q --no-index --no-deps --disable-pip-version-check \
		"$MEMRAY_BUILD"/dist/memray_c-*.whl
	# a kernel spec in the venv (sys.prefix) whose argv is the venv's
	# python: Debian's "python3" spec runs /usr/bin/python3, without the wheel
	"$d/venv/bin/python" -m ipykernel install --sys-prefix --name memray-c-test > /dev/null
	cd "$d"
	write_notebook
	"$d/venv/bin/python" -m nbconvert --to notebook --execute --allow-errors \
		--ExecutePreprocessor.kernel_name=memray-c-test --ExecutePreprocessor.timeout=120 \
		--output out.ipynb nb.ipynb > nbconvert.log 2>&1 ||
		{ cat nbconvert.log >&3; return 1; }
	write_checker
}

# The notebook: each cell tagged with its name, as cell NAME finds it.
write_notebook() {
	"$BATS_FILE_TMPDIR/venv/bin/python" - <<'EOF'
import nbformat
cells = [
    ("setup", "%load_ext memray_c\nimport sys\nprint('kernel:', sys.executable)"),
    ("functions", """\
def make_buffers_deep(n):
    return bytearray(n)

def churn_temporary(n):
    for i in range(n):
        b = bytearray(100000)
        del b

kept = []
def leak_some(n):
    kept.append(bytearray(n))

def make_small(n):
    return [(i, str(i)) for i in range(n)]

def boom():
    big = bytearray(2_500_000)
    raise ValueError('the cell failed on purpose')"""),
    ("default", "%%memray_c_flamegraph\nx = make_buffers_deep(3_000_000)\ndel x\n"
                "y = make_buffers_deep(1_000_000)\nlen(y) + 1"),
    ("native", "%%memray_c_flamegraph --native\nz = make_buffers_deep(4_000_000)"),
    ("leaks", "%%memray_c_flamegraph --leaks\nleak_some(1_500_000)\n"
              "t = make_buffers_deep(5_000_000)\ndel t"),
    ("temporary", "%%memray_c_flamegraph --temporary\nchurn_temporary(50)"),
    ("temporal", "%%memray_c_flamegraph --temporal --split-threads --inverted -o kept/cell.bin\n"
                 "w = make_buffers_deep(2_000_000)"),
    ("exists", "%%memray_c_flamegraph -o kept/cell.bin\nmake_buffers_deep(10)"),
    ("force", "%%memray_c_flamegraph -o kept/cell.bin -f\nv = make_buffers_deep(1_200_000)"),
    ("raises", "%%memray_c_flamegraph\nboom()"),
    ("after", "print('the kernel goes on, y is', len(y))"),
    ("unsupported", "%%memray_c_flamegraph --max-memory-records 5\nmake_buffers_deep(10)"),
    ("threshold", "%%memray_c_flamegraph --temporary-allocation-threshold 1\nmake_buffers_deep(10)"),
    ("bogus", "%%memray_c_flamegraph --bogus\nmake_buffers_deep(10)"),
    ("pymalloc", "%%memray_c_flamegraph --trace-python-allocators\nsmall = make_small(20000)"),
]
nb = nbformat.v4.new_notebook()
nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": [tag]}) for tag, src in cells]
nb.metadata["kernelspec"] = {"name": "memray-c-test", "display_name": "memray-c-test",
                             "language": "python"}
nbformat.write(nb, "nb.ipynb")
EOF
}

# check.py NOTEBOOK TAG [FUNCTION...]: what cell TAG of the executed
# NOTEBOOK shows, one fact a line: its text outputs, its error, and of
# the page in its <iframe srcdoc>: the metric, whether it is inverted or
# has the live bytes over time, the number of native frames, and each
# FUNCTION's bytes (the frames of that function, their subtrees).
write_checker() {
	cat > "$BATS_FILE_TMPDIR/check.py" <<'EOF'
import html.parser, json, re, sys
import nbformat

nb = nbformat.read(sys.argv[1], 4)
cell = [c for c in nb.cells if sys.argv[2] in c.metadata.get("tags", [])][0]

class Srcdoc(html.parser.HTMLParser):
    pages = []
    def handle_starttag(self, tag, attrs):
        if tag == "iframe":
            self.pages.append(dict(attrs).get("srcdoc"))

for o in cell.outputs:
    if o.output_type == "stream":
        for line in o.text.splitlines():
            print(f"{o.name}: {line}")
    elif o.output_type == "error":
        print(f"error: {o.ename}: {o.evalue}")
    elif o.output_type == "execute_result":
        print(f"result: {o.data['text/plain']}")
    elif o.output_type == "display_data":
        print(f"display: {o.data.get('text/plain')}")
        p = Srcdoc()
        p.feed(o.data.get("text/html", ""))
        for page in p.pages:
            m = re.search(r'<script[^>]* id="data"[^>]*>(.*?)</script>', page, re.S)
            d = json.loads(m.group(1))
            meta = dict(d["meta"])
            print("page: yes" if page.startswith("<!DOCTYPE html>") else "page: no")
            print(f"metric: {meta.get('metric')}")
            print(f"inverted: {d['inverted']}")
            print(f"live: {'yes' if d.get('live') else 'no'}")
            print(f"threads: {len(d.get('threads') or [])}")
            print(f"native frames: {d['kinds'].count('0')}")
            stride = 4 if d["counts"] else 3
            raw = d["nodes"]
            nodes = [raw[k:k + stride] for k in range(0, len(raw), stride)]
            for n in nodes:
                if n[1] == 1:
                    print(f"root: {d['names'][n[0]]}")
            # preorder (name, depth, own value, ...): a node's subtree is
            # the nodes after it that are deeper
            for fn in sys.argv[3:]:
                total, i = 0, 0
                while i < len(nodes):
                    if d["names"][nodes[i][0]].startswith(fn + " ("):
                        j = i + 1
                        while j < len(nodes) and nodes[j][1] > nodes[i][1]:
                            j += 1
                        total += sum(n[2] for n in nodes[i:j])
                        i = j
                    else:
                        i += 1
                print(f"bytes {fn}: {total}")
EOF
}

cell() {
	run "$BATS_FILE_TMPDIR/venv/bin/python" "$BATS_FILE_TMPDIR/check.py" \
		"$BATS_FILE_TMPDIR/out.ipynb" "$@"
	echo "$output"
}

@test "the notebook ran in the venv's kernel, and the first cell says once what a tracker loaded with dlopen misses" {
	cell setup
	assert_output "stdout: kernel: $BATS_FILE_TMPDIR/venv/bin/python"
	cell default
	assert_line --partial "stdout: memray_c: the tracker was loaded into this kernel with dlopen"
	run grep -c "loaded into this kernel with dlopen" "$BATS_FILE_TMPDIR/out.ipynb"
	assert_output 1
}

@test "%%memray_c_flamegraph: the cell's page inline, its peak in the cell's function; the files kept in memray-results/; the last value shown" {
	cell default make_buffers_deep
	assert_line "page: yes"
	assert_line "metric: peak"
	assert_line "bytes make_buffers_deep: 3000001"
	assert_line "inverted: False"
	assert_line "result: 1000001"
	refute_line --partial "stderr:"
	assert_line --regexp "^display: <memray-c flame graph $BATS_FILE_TMPDIR/memray-results/memray-flamegraph-[^/]*\.html>$"
	local page
	page=$(echo "$output" | sed -n 's/^display: <memray-c flame graph \(.*\)>$/\1/p')
	[ -f "$page" ]
	[ -f "${page%.html}.bin" ]
	run memray-fold "${page%.html}.bin"
	assert_line --regexp "make_buffers_deep \(.*:2\) 3000001$"
}

@test "--native: hybrid stacks, the same function's peak" {
	cell native make_buffers_deep
	assert_line "page: yes"
	assert_line "bytes make_buffers_deep: 4000001"
	refute_line "native frames: 0"
}

@test "--leaks: what the cell left live, not what it freed" {
	cell leaks leak_some make_buffers_deep
	assert_line "metric: leaked"
	assert_line "bytes leak_some: 1500001"
	assert_line "bytes make_buffers_deep: 0"
}

@test "--temporary: allocations freed before their thread allocated again" {
	cell temporary churn_temporary
	assert_line "metric: temporary"
	assert_line "bytes churn_temporary: 5000050"
}

@test "--temporal --split-threads --inverted -o FILE: the live bytes over time, a root per thread, inverted; the page named after -o" {
	cell temporal make_buffers_deep
	assert_line "page: yes"
	assert_line "live: yes"
	assert_line "inverted: True"
	assert_line "bytes make_buffers_deep: 2000001"
	assert_line --regexp "^root: .* \(thread [0-9]+\)$"
	refute_line --regexp "^root: _run_module_as_main"
	assert_line "display: <memray-c flame graph kept/cell.html>"
}

@test "-o FILE that exists: refused without -f, overwritten with it" {
	cell exists
	assert_line "stderr: UsageError: %%memray_c_flamegraph: kept/cell.bin exists already (-f, --force overwrites it)"
	refute_line --partial "page:"
	cell force make_buffers_deep
	assert_line "bytes make_buffers_deep: 1200001"
	# the files where -o said (the later cell's, forced)
	[ -f "$BATS_FILE_TMPDIR/kept/cell.html" ]
	run memray-fold "$BATS_FILE_TMPDIR/kept/cell.bin"
	assert_line --regexp "make_buffers_deep \(.*:2\) 1200001$"
}

@test "a cell that raises: the page of what it recorded, then the exception; the kernel goes on" {
	cell raises boom
	assert_line "page: yes"
	assert_line "bytes boom: 2500001"
	assert_line "error: ValueError: the cell failed on purpose"
	# the page comes first, the error last
	[[ ${lines[-1]} == "error: ValueError: the cell failed on purpose" ]]
	cell after
	assert_output "stdout: the kernel goes on, y is 1000000"
}

@test "options memray-c cannot honour, and unknown ones, are refused by name; nothing is recorded" {
	cell unsupported
	assert_output --partial "stderr: UsageError: %%memray_c_flamegraph: --max-memory-records is not supported by memray-c"
	cell threshold
	assert_output --partial "stderr: UsageError: %%memray_c_flamegraph: --temporary-allocation-threshold=1 is not supported by memray-c"
	cell bogus
	assert_output "stderr: UsageError: %%memray_c_flamegraph: unrecognized arguments: --bogus"
	# the files of the six cells that wrote there, none of the refused ones
	run ls "$BATS_FILE_TMPDIR/memray-results"
	[ "${#lines[@]}" -eq 12 ]
}

@test "--trace-python-allocators under pymalloc: the cell's small objects are on the page" {
	cell pymalloc make_small
	assert_line "page: yes"
	# 20,000 tuples and strings of a few dozen bytes each
	bytes=$(printf '%s\n' "${lines[@]}" | sed -n 's/^bytes make_small: //p')
	[ "$bytes" -gt 1000000 ]
}

@test "in Chromium, the page works inside the notebook's iframe: drawn, zoom and its fragment, reset, no errors" {
	[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || skip "Chromium is not installed (make deps installs it)"
	"$BATS_FILE_TMPDIR/venv/bin/python" - "$BATS_FILE_TMPDIR/out.ipynb" > host.html <<'EOF'
import sys, nbformat
cell = [c for c in nbformat.read(sys.argv[1], 4).cells if "default" in c.metadata["tags"]][0]
frame = [o.data["text/html"] for o in cell.outputs if o.output_type == "display_data"][0]
print("<!DOCTYPE html><html><body><p>a notebook</p>" + frame + "</body></html>")
EOF
	python3 "$BATS_TEST_DIRNAME/../browser/flame_check.py" srcdoc host.html make_buffers_deep
}
