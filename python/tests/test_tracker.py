"""memray_c.Tracker, start and stop: exact windows, complete files, and
what nesting, threads, exceptions and forks do."""

import os
import subprocess
import sys
import threading

import pytest

import memray_c
from memray_c import _tools


def stat(path):
    """memray-stat's summary of path as a dict of its first words."""
    out = subprocess.run([_tools.tool_path("memray-stat"), path], check=True,
                         capture_output=True, text=True).stdout
    lines = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        lines[key.strip()] = value.split()[0] if value.split() else ""
    return lines


def pymalloc_room():
    """Leaves pymalloc an arena with free pools, so that the few small
    objects a window makes do not map a new arena of its own (1 MiB from
    3.10 on), which the window would count: an arena filled with small
    objects, all freed but one, is kept."""
    objs = [object() for _ in range(100_000)]
    return objs[-1:]


def test_window_exact_and_file_complete(tmp_path):
    out = tmp_path / "w.bin"
    room = pymalloc_room()
    with memray_c.Tracker(out) as t:
        assert t.active
        a = bytearray(5_000_000)
        b = bytearray(1_000_000)
        mid = t.stats
        del a
    s = t.stats
    assert not t.active
    extra = 32 if sys.version_info >= (3, 15) else 0
    assert mid.live >= 6_000_002 + 2 * extra
    assert s.peak == 6_000_002 + 2 * extra, s
    assert s.live == 1_000_001 + extra, s
    assert s.allocations == 2 and s.allocated == s.peak
    st = stat(str(out))
    assert int(st["peak heap"]) == s.peak
    assert int(st["live at end"]) == s.live
    del b, room


def test_start_stop_functions(tmp_path):
    t = memray_c.start(tmp_path / "f.bin")
    keep = bytearray(2_000_000)
    s = memray_c.stop()
    assert s == t.stats and s.live >= 2_000_000
    with pytest.raises(RuntimeError, match="no memray_c.Tracker is active"):
        memray_c.stop()
    del keep


def test_second_tracker_refused_first_unharmed(tmp_path):
    with memray_c.Tracker(tmp_path / "outer.bin") as outer:
        x = bytearray(1_500_000)
        with pytest.raises(RuntimeError, match="active already .*outer.bin"):
            with memray_c.Tracker(tmp_path / "inner.bin"):
                pass
        # nesting the same one is refused as well
        with pytest.raises(RuntimeError):
            outer.start()
        assert outer.active
    assert not (tmp_path / "inner.bin").exists()
    assert outer.stats.live >= 1_500_000
    assert stat(str(tmp_path / "outer.bin"))["allocations"]
    # a Tracker records once
    with pytest.raises(RuntimeError, match="records once"):
        outer.start()
    del x


def test_exception_inside_ends_the_window(tmp_path):
    out = tmp_path / "e.bin"
    t = memray_c.Tracker(out)
    with pytest.raises(ZeroDivisionError):
        with t:
            keep = bytearray(1_000_000)  # noqa: F841
            1 / 0
    assert not t.active
    # the file is complete: memray-stat exits 0 without a warning
    r = subprocess.run([_tools.tool_path("memray-stat"), str(out)], capture_output=True, text=True)
    assert r.returncode == 0 and "truncated" not in r.stderr, r.stderr
    # and a new Tracker may start
    with memray_c.Tracker(tmp_path / "after.bin"):
        pass


def test_threads_started_inside_are_recorded(tmp_path):
    out = tmp_path / "t.bin"
    held = []

    def work():
        held.append(bytearray(3_000_000))

    with memray_c.Tracker(out) as t:
        th = [threading.Thread(target=work, name=f"grower-{i}") for i in range(2)]
        for x in th:
            x.start()
        for x in th:
            x.join()
    assert t.stats.live >= 6_000_000
    folded = subprocess.run([_tools.tool_path("memray-fold"), "--by-thread", str(out)],
                            check=True, capture_output=True, text=True).stdout
    assert "work (" in folded


def test_existing_file_refused_unless_overwrite(tmp_path):
    out = tmp_path / "x.bin"
    out.write_text("keep me")
    with pytest.raises(FileExistsError):
        memray_c.Tracker(out).start()
    assert out.read_text() == "keep me"
    with memray_c.Tracker(out, overwrite=True):
        pass
    assert out.read_bytes()[:4] == b"MRYC"


def test_bad_options(tmp_path):
    with pytest.raises(ValueError):
        memray_c.Tracker(tmp_path / "o.bin", memory_interval_ms=0)
    with pytest.raises(ValueError):
        memray_c.Tracker(tmp_path / "o.bin", sample_bytes=-1)
    with pytest.raises(OSError):
        memray_c.Tracker(tmp_path / "no-such-dir" / "o.bin").start()


def test_python_allocators_under_pymalloc(tmp_path):
    """Small objects are recorded one by one, with their Python stacks,
    and only inside the window; the file says every allocation was
    traced."""
    out = tmp_path / "p.bin"
    before = [object() for _ in range(1000)]

    def make_small():
        return [(i, str(i)) for i in range(30000)]

    with memray_c.Tracker(out, trace_python_allocators=True) as t:
        small = make_small()
        del before[:500]  # freed in the window, allocated before: nothing
    assert t.stats.allocations >= 30000, t.stats
    assert t.stats.live >= 30000 * 16, t.stats
    folded = subprocess.run([_tools.tool_path("memray-fold"), "--metric=count", str(out)],
                            check=True, capture_output=True, text=True).stdout
    counts = [int(line.rsplit(" ", 1)[1]) for line in folded.splitlines()
              if line and not line.startswith("#") and "make_small" in line]
    assert sum(counts) >= 30000, folded[:2000]
    header = subprocess.run([_tools.tool_path("memray-stat"), "--dump", str(out)],
                            check=True, capture_output=True, text=True).stdout.splitlines()[0]
    flags = header.split(" flags=")[1].split()[0].split(",")
    assert "python-allocators" in flags and "pymalloc" not in flags, header
    # after the window the interpreter runs on as before
    more = [object() for _ in range(10000)]
    del small, more


def run_child(code, tmp_path, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=e,
                          capture_output=True, text=True, timeout=120)


def test_python_allocators_with_malloc(tmp_path):
    r = run_child("""
import memray_c
with memray_c.Tracker("p.bin", trace_python_allocators=True) as t:
    objs = [object() for _ in range(20000)]
print(t.stats.allocations)
""", tmp_path, {"PYTHONMALLOC": "malloc"})
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) >= 20000


def test_native_sampling_and_follow_fork(tmp_path):
    r = run_child("""
import os, memray_c
with memray_c.Tracker("n.bin", native_traces=True, follow_fork=True) as t:
    pid = os.fork()
    if pid == 0:
        b = bytearray(2_000_000)
        os._exit(0)
    os.waitpid(pid, 0)
    a = bytearray(1_000_000)
print("ok", os.getpid())
with memray_c.Tracker("s.bin", sample_bytes=65536, seed=7) as s:
    keep = [bytearray(1000) for _ in range(5000)]
print(s.stats.allocations)
""", tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    parent = lines[1]
    stat_out = subprocess.run([_tools.tool_path("memray-stat"), "n.bin"], cwd=tmp_path,
                              capture_output=True, text=True)
    assert stat_out.returncode == 0, stat_out.stderr
    # two processes in the one file
    dump = subprocess.run([_tools.tool_path("memray-stat"), "--json", "n.bin"], cwd=tmp_path,
                          capture_output=True, text=True).stdout
    assert parent in dump
    assert dump.count('"pid"') >= 2
    # sampled: far fewer than 5000 allocations recorded
    assert 0 < int(lines[2]) < 2500


def test_preloaded_under_memray_record_idle(tmp_path):
    record = _tools.tool_path("memray-record")
    r = subprocess.run([record, "--idle", "--", sys.executable, "-c", """
import memray_c
with memray_c.Tracker("i.bin") as t:
    b = bytearray(4_000_000)
print(t.preloaded, t.stats.peak >= 4_000_000)
"""], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True"]


def test_refused_while_memray_record_records(tmp_path):
    record = _tools.tool_path("memray-record")
    r = subprocess.run([record, "-q", "-o", "rec.bin", "--", sys.executable, "-c", """
import memray_c
try:
    memray_c.Tracker("w.bin").start()
except RuntimeError as e:
    print("refused:", e)
"""], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "refused: memray_c.Tracker: this process is recorded already" in r.stdout


def test_second_tracker_from_another_thread_refused(tmp_path):
    errors = []

    def other():
        try:
            memray_c.Tracker(tmp_path / "other.bin").start()
        except RuntimeError as e:
            errors.append(str(e))

    with memray_c.Tracker(tmp_path / "main.bin"):
        th = threading.Thread(target=other)
        th.start()
        th.join()
    assert len(errors) == 1 and "active already" in errors[0]
    assert not (tmp_path / "other.bin").exists()


def test_python_allocators_with_threads_and_sampling(tmp_path):
    def churn(n):
        for _ in range(n):
            d = {i: str(i) for i in range(50)}
            d.clear()

    with memray_c.Tracker(tmp_path / "th.bin", trace_python_allocators=True) as t:
        th = [threading.Thread(target=churn, args=(2000,)) for _ in range(4)]
        for x in th:
            x.start()
        for x in th:
            x.join()
    assert t.stats.allocations >= 4 * 2000 * 50, t.stats
    r = subprocess.run([_tools.tool_path("memray-stat"), str(tmp_path / "th.bin")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with memray_c.Tracker(tmp_path / "ps.bin", trace_python_allocators=True,
                          sample_bytes=4096, seed=3) as s:
        keep = [str(i) * 3 for i in range(100000)]
    assert 0 < s.stats.allocations < 50000, s.stats
    r = subprocess.run([_tools.tool_path("memray-stat"), str(tmp_path / "ps.bin")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    del keep


def test_fork_without_follow_gives_the_child_its_own(tmp_path):
    r = run_child("""
import os, memray_c
with memray_c.Tracker("parent.bin") as t:
    a = bytearray(1_000_000)
    pid = os.fork()
    if pid == 0:
        # the parent's window is not the child's: none is active here
        assert not t.active
        with memray_c.Tracker("child.bin") as c:
            b = bytearray(2_000_000)
        print("child", c.stats.peak >= 2_000_000, flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
print("parent", t.stats.peak >= 1_000_000)
""", tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["child", "True", "parent", "True"], r.stdout + r.stderr
    big = {}
    for f in ("parent.bin", "child.bin"):
        s = subprocess.run([_tools.tool_path("memray-stat"), f], cwd=tmp_path,
                           capture_output=True, text=True)
        assert s.returncode == 0 and "warning" not in s.stderr, (f, s.stderr)
        dump = subprocess.run([_tools.tool_path("memray-stat"), "--dump", f], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout
        big[f] = [line for line in dump.splitlines() if " alloc " in line and
                  2_000_000 <= int(line.split(" size=")[1].split()[0]) < 2_100_000]
    # the child's block is in the child's file, not in the parent's (whose
    # window also holds what Python allocates to warn about a fork in a
    # process with threads, on 3.12+)
    assert len(big["child.bin"]) == 1 and big["parent.bin"] == [], big


def test_window_holds_only_the_code_s_own_allocations(tmp_path):
    # an empty window records nothing of the Tracker's own
    r = run_child("""
import memray_c
with memray_c.Tracker("empty.bin") as t:
    pass
print(t.stats.allocations, t.stats.peak)
""", tmp_path, {"PYTHONMALLOC": "malloc"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "0"], r.stdout


def test_sampled_window_counts_moved_blocks(tmp_path):
    """With every allocation sampled (sample_bytes=1) the window's numbers
    are the unsampled ones, reallocs included."""
    code = """
import memray_c, sys
def grow():
    b = bytearray(100000)
    for _ in range(50):
        b += bytes(100000)   # realloc, often moving the block
    return b
with memray_c.Tracker(sys.argv[1], sample_bytes=int(sys.argv[2]), seed=5) as t:
    keep = grow()
print(t.stats.peak, t.stats.live)
"""
    got = {}
    for gap in ("0", "1"):
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path / f"g{gap}.bin"), gap],
                           env=dict(os.environ, PYTHONMALLOC="malloc"),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        got[gap] = r.stdout.split()
    assert got["0"] == got["1"], got
    assert int(got["0"][1]) >= 5_100_000


def test_python_allocators_sampled_under_debug_hooks(tmp_path):
    """trace_python_allocators with sampling, under -X dev (debug hooks
    wrapped): large reallocs do not loop back into the Python allocator,
    and the estimate of what a list's growth allocated is near the truth."""
    code = """
import memray_c, sys
with memray_c.Tracker(sys.argv[1], trace_python_allocators=True, sample_bytes=int(sys.argv[2]),
                      seed=9) as t:
    xs = []
    for i in range(300000):
        xs.append(i)
print("ok")
"""
    for gap in ("0", str(1 << 20)):
        r = subprocess.run([sys.executable, "-X", "dev", "-c", code,
                            str(tmp_path / f"d{gap}.bin"), gap],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and r.stdout.split() == ["ok"], r.stderr[-2000:]
    full = memray_c.read(str(tmp_path / "d0.bin")).summary()
    est = memray_c.read(str(tmp_path / f"d{1 << 20}.bin")).summary()
    reallocs = full.allocators.get("realloc", (0, 0))[1]
    est_reallocs = est.allocators.get("realloc", (0, 0))[1]
    assert reallocs > 0
    # sampled at 1 MiB: within a factor of two of the truth (it was ten
    # times over when reallocs looped back)
    assert reallocs / 2 <= est_reallocs <= reallocs * 2, (reallocs, est_reallocs)


def test_tracemalloc_started_or_stopped_inside_a_window(tmp_path):
    code = """
import memray_c, tracemalloc, sys
d = sys.argv[1]
# the count of a window that nothing came before
with memray_c.Tracker(d + "/control.bin", trace_python_allocators=True) as t0:
    e = [str(i) * 2 for i in range(20000)]
del e
# tracemalloc beneath the window's wrappers, stopped inside it
tracemalloc.start()
t = memray_c.Tracker(d + "/a.bin", trace_python_allocators=True).start()
a = [str(i) for i in range(1000)]
tracemalloc.stop()
b = [str(i) for i in range(1000)]
t.stop()
print("after a", len([str(i) for i in range(1000)]))
# tracemalloc above them, started inside a window, stopped after it
t = memray_c.Tracker(d + "/b.bin", trace_python_allocators=True).start()
tracemalloc.start()
c = [str(i) for i in range(1000)]
t.stop()
tracemalloc.stop()
# and a third window sees every object again, once
with memray_c.Tracker(d + "/c.bin", trace_python_allocators=True) as t3:
    e = [str(i) * 2 for i in range(20000)]
print("third", t3.stats.allocations, t0.stats.allocations)
"""
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.split()
    assert out[:3] == ["after", "a", "1000"], out
    third, control = int(out[4]), int(out[5])
    # each object recorded once (not twice, through two wrappers)
    assert control >= 20000 and abs(third - control) <= control // 20, (third, control)
    for f in ("a.bin", "b.bin", "c.bin"):
        s = subprocess.run([_tools.tool_path("memray-stat"), str(tmp_path / f)],
                           capture_output=True, text=True)
        assert s.returncode == 0, (f, s.stderr)


def test_python_allocators_heap_in_memory_records(tmp_path):
    out = tmp_path / "h.bin"
    import time
    with memray_c.Tracker(out, trace_python_allocators=True, memory_interval_ms=1):
        objs = [str(i) * 3 for i in range(200000)]
        time.sleep(0.05)
    heaps = [s.heap for s in memray_c.read(str(out)).get_memory_snapshots()]
    assert max(heaps) >= 5_000_000, heaps[-5:]
    del objs


def test_bad_options_leave_the_file_alone(tmp_path):
    out = tmp_path / "keep.bin"
    out.write_text("precious")
    # (refused by name before anything is opened: ValueError)
    with pytest.raises(ValueError, match="sample_bytes"):
        memray_c.Tracker(out, sample_bytes=1 << 62, overwrite=True).start()
    assert out.read_text() == "precious"


def test_sample_bytes_and_seed_out_of_range_are_refused_by_name(tmp_path):
    # ctypes would wrap them: 2**64 + 4096 sampled every 4096 bytes
    for kwargs, name in (({"sample_bytes": 2**64 + 4096}, "sample_bytes"),
                         ({"sample_bytes": 2**30 + 1}, "sample_bytes"),
                         ({"sample_bytes": -1}, "sample_bytes"),
                         ({"seed": 2**64}, "seed"),
                         ({"seed": -1}, "seed")):
        with pytest.raises(ValueError, match=name):
            memray_c.Tracker(str(tmp_path / "t.bin"), **kwargs)
    memray_c.Tracker(str(tmp_path / "t.bin"), sample_bytes=2**30, seed=2**64 - 1)


def test_a_wrong_memray_tracker_is_named():
    r = subprocess.run([sys.executable, "-c", "import memray_c; memray_c.Tracker('n.bin').start()"],
                       env=dict(os.environ, MEMRAY_TRACKER="/nonexistent/libmemray-tracker.so"),
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "MEMRAY_TRACKER names '/nonexistent/libmemray-tracker.so', which is not a file" \
        in r.stderr
