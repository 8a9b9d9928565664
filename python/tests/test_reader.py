"""memray_c.read / FileReader: the header, processes, threads, every
allocation event with its stacks, the high-water mark, the leaks and the
timeline of real recordings, checked against what memray-fold and
memray-stat say of the same files; damaged input; bounded memory."""

import gzip
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

import memray_c
import memray_c.reader
from memray_c import _tools

LABEL = re.compile(r"^\[.*\]$")


def tool(name):
    path = _tools.tool_path(name)
    assert path, f"{name} not found"
    return path


def record(tmp_path, name, script, *options, program=None):
    """Records `python script` (or program) into tmp_path/name; returns
    (the stream's path, the script's path)."""
    src = tmp_path / (name + ".py")
    src.write_text(textwrap.dedent(script))
    out = tmp_path / name
    cmd = [tool("memray-record"), "-q", "-f", "-o", str(out), *options, "--"]
    cmd += program if program else [sys.executable, str(src)]
    subprocess.run(cmd, check=True, cwd=tmp_path)
    return str(out), str(src)


def stat_json(path):
    out = subprocess.run([tool("memray-stat"), "--json", path], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def fold(path, *options):
    """memray-fold's stacks of path as {stack text: value}, label frames
    ([Python start-up], [unknown], ...) taken out, and its # lines."""
    out = subprocess.run([tool("memray-fold"), *options, path], check=True,
                         capture_output=True, text=True).stdout
    stacks, meta = {}, {}
    for line in out.splitlines():
        if line.startswith("# "):
            key, _, value = line[2:].partition("=")
            meta.setdefault(key, value)
            continue
        text, _, value = line.rpartition(" ")
        frames = tuple(f for f in text.split(";") if not LABEL.match(f))
        stacks[frames] = stacks.get(frames, 0) + int(value)
    return stacks, meta


def py_text(stack):
    """A Python stack (innermost first) as memray-fold's frames, root first."""
    return tuple(f"{fn} ({file}:{line})" for fn, file, line in reversed(stack))


def by_stack(sites, render=lambda s: py_text(s.stack())):
    out = {}
    for s in sites:
        key = render(s)
        out[key] = out.get(key, 0) + s.size
    return {k: v for k, v in out.items() if v}


PY_SCRIPT = """\
import threading

keep = []

def big(n):
    return bytearray(n)

def worker():
    keep.append(big(2_000_000))

def churn():
    for i in range(50):
        b = bytearray(100_000 + i)
        del b

keep.append(big(3_000_000))
tmp = big(5_000_000)
del tmp
t = threading.Thread(target=worker, name="worker-7")
t.start()
t.join()
churn()
final = big(6_000_000)
"""


@pytest.fixture(scope="module")
def pyrun(tmp_path_factory):
    return record(tmp_path_factory.mktemp("py"), "py.bin", PY_SCRIPT)


def test_header_processes_threads(pyrun):
    path, src = pyrun
    r = memray_c.read(path)
    m = r.metadata
    assert m.pid > 0 and m.ppid > 0
    assert m.argv[0] == sys.executable and m.argv[-1] == src
    assert m.command_line == " ".join(m.argv)
    assert m.python_stacks and not m.native_stacks and not m.follow_fork
    assert not m.sampled and m.sample_bytes == 0
    assert m.python_version == "%d.%d.%d" % sys.version_info[:3]
    assert m.tool_version == memray_c.__version__
    assert m.start_time.year >= 2024 and m.start_us > 0
    assert m.has_native_traces is False
    assert [p.pid for p in r.processes] == [m.pid]
    list(r.records())
    names = {t.name for t in r.threads}
    assert {"MainThread", "worker-7"} <= names, names
    assert all(t.pid == m.pid for t in r.threads)
    p = r.processes[0]
    assert p.complete and p.end_signal is None and p.pid == m.pid
    st = stat_json(path)
    assert r.summary().process_peaks == {m.pid: st["processes"][0]["peak"]}


def test_records_match_memray_stat(pyrun):
    path, src = pyrun
    st = stat_json(path)
    allocs = frees = total = 0
    kinds = set()
    for rec in memray_c.read(path).records():
        kinds.add(rec.kind)
        if rec.kind in ("alloc", "realloc"):
            allocs += 1
            total += rec.size
        if rec.kind in ("free", "realloc"):
            frees += 1
    assert (allocs, frees, total) == (st["allocations"], st["frees"], st["bytes_allocated"])
    assert kinds <= {"alloc", "free", "realloc"} and {"alloc", "free"} <= kinds


def test_record_fields_and_stacks(pyrun):
    path, src = pyrun
    r = memray_c.read(path)
    big = [rec for rec in r.records() if rec.kind == "alloc" and rec.size >= 2_000_000]
    assert len(big) == 4, big
    main_pid = r.metadata.pid
    three, five, two, final = big
    assert three.size in (3_000_001, 3_000_033) and three.allocator in ("malloc", "calloc", "mmap")
    assert three.pid == main_pid and three.tid == main_pid and three.thread_name == "MainThread"
    assert three.n_allocations == 1 and three.address and three.stack_id > 0
    s = three.stack()
    assert s[0] == ("big", src, 6) and s[1] == ("<module>", src, 16), s
    assert three.stack_trace() == list(s) and three.stack_trace(1) == [s[0]]
    assert three.hybrid_stack() == s  # recorded without --native
    assert three.native_stack() == ()
    assert five.stack()[1] == ("<module>", src, 17)
    assert two.thread_name == "worker-7" and two.tid != main_pid
    assert two.stack()[:2] == (("big", src, 6), ("worker", src, 9))
    assert "size=" in repr(three) and "alloc" in repr(three)
    with pytest.raises(AttributeError):
        three.size = 1
    # records compare and hash by value: two reads give equal records
    again = [rec for rec in memray_c.read(path).records() if rec.size >= 2_000_000]
    assert again[:4] == big and set(again[:4]) == set(big) and three != five
    # the freeing of the 5 MB block is there, with its address
    frees = [rec for rec in memray_c.read(path).records()
             if rec.kind == "free" and rec.address == five.address]
    assert frees and frees[0].size == 0 and frees[0].stack() == ()


def test_totals_by_stack_match_memray_fold(pyrun):
    path, _ = pyrun
    want, _ = fold(path, "--metric=total")
    got = by_stack(r for r in memray_c.read(path).records() if r.kind != "free")
    assert got == want


def test_high_watermark_and_leaks_match_memray_fold(pyrun):
    path, _ = pyrun
    st = stat_json(path)
    r = memray_c.read(path)
    hw = r.high_watermark()
    assert hw.bytes == st["peak_bytes"] and hw.time_us // 1000 == st["peak_ms"]
    assert sum(s.size for s in hw) == hw.bytes
    want, meta = fold(path)
    assert by_stack(hw) == want
    assert int(meta["peak"]) == hw.bytes
    assert all(s.kind == "peak" and s.n_allocations > 0 for s in hw)
    assert hw == sorted(hw, key=lambda s: -s.size)
    lk = r.leaks()
    assert lk.bytes == st["leaked_bytes"]
    assert by_stack(lk) == fold(path, "--metric=leaked")[0]
    # memray's names; by thread, the worker's block is its own
    assert list(r.get_high_watermark_allocation_records()) == list(hw)
    assert list(r.get_leaked_allocation_records()) == list(lk)
    assert sum(s.size for s in r.leaks(merge_threads=False)) == lk.bytes
    by_thread = r.high_watermark(merge_threads=False)
    assert sum(s.size for s in by_thread) == hw.bytes
    worker = [s for s in by_thread if s.thread_name == "worker-7" and s.size >= 2_000_000]
    assert len(worker) == 1 and worker[0].stack()[1][0] == "worker"
    s = r.summary()
    assert (s.peak, s.allocations, s.frees, s.bytes_allocated, s.leaked_bytes, s.peak_rss) == (
        st["peak_bytes"], st["allocations"], st["frees"], st["bytes_allocated"],
        st["leaked_bytes"], st["peak_rss"])


def test_timeline_and_snapshots(pyrun):
    path, _ = pyrun
    r = memray_c.read(path)
    _, meta = fold(path)
    points = meta["timeline"].strip('"').split()[1:]
    want = [tuple(int(x) for x in p.split(",")) for p in points]
    tl = r.timeline()
    assert [(p.time_us // 1000, p.rss, p.heap) for p in tl] == want
    snaps = list(r.get_memory_snapshots())
    assert len(snaps) >= len(tl) >= 1
    assert [s.time_us for s in snaps] == sorted(s.time_us for s in snaps)
    assert snaps[-1].time_us == tl[-1].time_us and snaps[0].pid == r.metadata.pid
    ev = list(r.events())
    assert [e for e in ev if isinstance(e, memray_c.reader.MemorySnapshot)] == snaps
    assert sum(isinstance(e, memray_c.reader.AllocationRecord) for e in ev) == \
        sum(1 for _ in r.records())


def test_native_stacks_match_memray_fold(tmp_path):
    path, src = record(tmp_path, "native.bin", """\
        def allocate():
            return bytearray(4_000_000)
        x = allocate()
        """, "--native")
    r = memray_c.read(path)
    assert r.metadata.native_stacks and r.metadata.python_stacks
    big = [rec for rec in r.records() if rec.kind == "alloc" and rec.size >= 4_000_000]
    assert len(big) == 1
    rec = big[0]
    native = rec.native_stack()
    assert native and all(isinstance(f, tuple) and len(f) == 3 for f in native)
    assert all(isinstance(fn, str) and isinstance(file, str) and isinstance(line, int)
               for fn, file, line in native)
    hybrid = rec.hybrid_stack()
    assert ("allocate", src, 2) in hybrid and ("<module>", src, 3) in hybrid
    assert hybrid.index(("allocate", src, 2)) < hybrid.index(("<module>", src, 3))
    # the hybrid stack's function names are memray-fold --native's, in order
    # (the stack through allocate(): not the heaviest one on every Python,
    # 3.14's start-up allocates more elsewhere)
    want, _ = fold(path, "--native", "--metric=total")
    mine = [k for k in want if any(f.startswith("allocate (") for f in k)]
    names = [f.rsplit(" (", 1)[0] for f in max(mine, key=want.get)]
    assert names == [fn for fn, _, _ in reversed(hybrid)]
    # the interpreter's own frames are there, named or as addresses in it
    assert any(os.path.basename(m).startswith(("python", "libpython")) for _, m, _ in native)
    assert all(not fn.startswith("0x") or int(fn, 16) for fn, _, _ in native)
    # every stack's total, by the names of its hybrid frames
    names = {}
    for k, v in want.items():
        key = tuple(f.rsplit(" (", 1)[0] for f in k)
        names[key] = names.get(key, 0) + v
    got = by_stack((x for x in r.records() if x.kind != "free"),
                   render=lambda s: tuple(fn for fn, _, _ in reversed(s.hybrid_stack())))
    assert got == names


def test_follow_fork(tmp_path):
    path, src = record(tmp_path, "fork.bin", """\
        import os
        def child_work():
            return bytearray(1_500_000)
        keep = bytearray(1_000_000)
        pid = os.fork()
        if pid == 0:
            x = child_work()
            os._exit(0)
        os.waitpid(pid, 0)
        """, "--follow-fork")
    r = memray_c.read(path)
    assert r.metadata.follow_fork
    recs = list(r.records())
    pids = [p.pid for p in r.processes]
    assert len(pids) == 2 and pids[0] == r.metadata.pid
    child = r.processes[1]
    assert child.ppid == r.metadata.pid
    big = [x for x in recs if x.kind == "alloc" and x.size >= 1_500_000]
    assert len(big) == 1 and big[0].pid == child.pid
    assert big[0].stack()[0] == ("child_work", src, 3)
    st = stat_json(path)
    assert {p["pid"]: p["peak"] for p in st["processes"]} == r.summary().process_peaks
    assert by_stack(r.high_watermark()) == fold(path)[0]
    only_child = list(r.records(pid=child.pid))
    assert only_child and all(x.pid == child.pid for x in only_child)


def test_compressed_and_stdin(tmp_path, pyrun):
    path, _ = pyrun
    plain = [(x.kind, x.address, x.size, x.stack()) for x in memray_c.read(path).records()]
    gz = tmp_path / "py.bin.gz"
    with open(path, "rb") as f, gzip.open(gz, "wb") as g:
        g.write(f.read())
    assert [(x.kind, x.address, x.size, x.stack())
            for x in memray_c.FileReader(str(gz)).records()] == plain
    # memray-record -z (zstd) and --compress=gzip, checked against memray-stat
    for opt, magic in (("-z", b"\x28\xb5\x2f\xfd"), ("--compress=gzip", b"\x1f\x8b")):
        zpath, _ = record(tmp_path, "z.bin", "x = bytearray(2_500_000)\n", opt)
        with open(zpath, "rb") as f:
            assert f.read(len(magic)) == magic
        st = stat_json(zpath)
        r = memray_c.read(zpath)
        assert r.high_watermark().bytes == st["peak_bytes"]
        assert sum(x.size for x in r.records() if x.kind != "free") == st["bytes_allocated"]
    # standard input, "-": one pass gives the records and then the summary
    code = ("import memray_c; r = memray_c.read('-'); n = sum(1 for _ in r.records()); "
            "print(n, r.high_watermark().bytes, r.metadata.pid)")
    with open(path, "rb") as f:
        out = subprocess.run([sys.executable, "-c", code], stdin=f, check=True,
                             capture_output=True, text=True).stdout.split()
    assert int(out[0]) == len(plain) and int(out[1]) == stat_json(path)["peak_bytes"]


def test_missing_and_not_a_stream(tmp_path):
    missing = tmp_path / "missing.bin"
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        memray_c.read(str(missing))
    script = tmp_path / "script.py"
    script.write_text("print('hello')\n")
    with pytest.raises(memray_c.ReaderError, match=r"script\.py.*not a memray stream") as e:
        memray_c.read(str(script))
    assert e.value.offset == 0 and isinstance(e.value, ValueError)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(memray_c.ReaderError, match="empty.bin"):
        memray_c.FileReader(str(empty))


def read_all(path):
    """Everything read from path: the records' (kind, address, size) and
    the ReaderError at the end, if any."""
    got, err = [], None
    r = memray_c.read(path)
    try:
        for x in r.records():
            got.append((x.kind, x.address, x.size, x.stack()))
    except memray_c.ReaderError as e:
        err = e
    return got, err


def test_truncated_yields_what_came_before(tmp_path, pyrun):
    path, _ = pyrun
    data = open(path, "rb").read()
    full, err = read_all(path)
    assert err is None
    cut = tmp_path / "cut.bin"
    for n in (13, 200, 4096, 4097, 4200, len(data) // 3, len(data) // 2, len(data) - 5,
              len(data) - 1):
        cut.write_bytes(data[:n])
        try:
            got, err = read_all(str(cut))
        except memray_c.ReaderError as e:  # cut inside the first header
            assert n < 4096 and "truncated at byte" in str(e)
            continue
        assert err is not None, n
        assert re.search(r"truncated at byte \d+", str(err)), str(err)
        assert str(cut) in str(err)
        assert f"at byte {err.offset}:" in str(err) and err.offset <= n
        assert got == full[:len(got)]
        assert len(got) >= len(full) * (n - 8192) // len(data) - 1
        # the summaries of a damaged stream raise the same, or warn
        with pytest.raises(memray_c.ReaderError, match="truncated at byte"):
            memray_c.read(str(cut)).high_watermark()
        with pytest.warns(RuntimeWarning, match="truncated at byte"):
            hw = memray_c.read(str(cut), strict=False).high_watermark()
        assert hw.bytes >= 0


def test_corrupt_bytes_named(tmp_path, pyrun):
    path, _ = pyrun
    data = bytearray(open(path, "rb").read())
    full, _ = read_all(path)
    bad = tmp_path / "bad.bin"
    # a chunk's magic: the chunk is named (chunks: "MRYC", pid, length,
    # sequence, then length bytes)
    chunks = [0]
    while chunks[-1] + 12 <= len(data):
        chunks.append(chunks[-1] + 12 + int.from_bytes(data[chunks[-1] + 8:chunks[-1] + 10], "little"))
    # (how many depends on the flushes a run happens to make, and
    # memray-record joins runs of full chunks: at least a few)
    assert len(chunks) > 3
    chunk = chunks[len(chunks) // 2]
    flipped = bytearray(data)
    flipped[chunk + 1] ^= 0xFF
    bad.write_bytes(flipped)
    got, err = read_all(str(bad))
    assert err is not None and err.offset == chunk, err
    assert f"corrupt at byte {chunk}: bad chunk magic" in str(err)
    assert got and got == full[:len(got)]
    # anywhere else: never a crash; a ReaderError naming a byte, or a read
    # to the end; what came before the damage always as it was
    import random
    rnd = random.Random(17)
    for _ in range(60):
        flipped = bytearray(data)
        at = rnd.randrange(len(data))
        flipped[at] ^= 1 << rnd.randrange(8)
        bad.write_bytes(flipped)
        try:
            r = memray_c.read(str(bad))
            got = []
            for x in r.records():
                got.append((x.kind, x.address, x.size))
                x.stack()
        except memray_c.ReaderError as e:
            assert re.search(r"(corrupt|truncated) at byte \d+", str(e)) or \
                "not a memray stream" in str(e), str(e)
            assert 0 <= e.offset <= len(data)


def test_large_recording_bounded_memory(tmp_path):
    n = 400_000
    path, _ = record(tmp_path, "large.bin", f"""\
        for i in range({n}):
            b = bytearray(1000 + i % 7)
        """)
    code = textwrap.dedent("""\
        import resource, sys, memray_c
        r = memray_c.read(sys.argv[1])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        n = 0
        for rec in r.records():
            n += 1
            if n % 1000 == 0:
                rec.stack()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(n, after - before)
        """)
    out = subprocess.run([sys.executable, "-c", code, path], check=True,
                         capture_output=True, text=True).stdout.split()
    count, grown_kb = int(out[0]), int(out[1])
    assert count >= 2 * n
    # keeping them would take count * 100 bytes and more
    assert grown_kb * 1024 < count * 100 / 8, (count, grown_kb)


def test_sampled_header(tmp_path):
    path, _ = record(tmp_path, "sampled.bin", "x = [bytearray(10000) for _ in range(300)]\n",
                     "--sample-bytes", "64K", "--seed", "3")
    r = memray_c.read(path)
    assert r.metadata.sampled and r.metadata.sample_bytes == 65536
    st = stat_json(path)
    assert r.high_watermark().bytes == st["peak_bytes"]
    assert r.summary().sampled == 65536


def test_reader_types_are_made_by_the_reader_only():
    with pytest.raises(TypeError):
        memray_c.AllocationRecord()
    from memray_c import _reader
    s = _reader.Stream.__new__(_reader.Stream)
    assert s.name == ""
