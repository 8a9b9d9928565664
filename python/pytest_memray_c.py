"""pytest_memray_c - memory limits for tests, recorded by memray-c.

    pytest --memray [--memray-bin-path DIR] [--memray-native] [--most-allocations N]

With --memray every test's call is recorded into a memray stream of its own
by libmemray-tracker.so's in-process API (memray.h), and two markers set
limits:

    @pytest.mark.limit_memory("24 MB")  the peak of the memory allocated
                                        during the test (blocks allocated
                                        before it and freed in it do not count)
    @pytest.mark.limit_leaks("1 MB")    the memory allocated during the test
                                        and not freed at its end

Sizes are read as the other memray-c tools read them: a number with K, M,
G, T, KiB, MiB, GiB or TiB (powers of 1024), KB, MB, GB or TB (powers of
1000), or B or nothing for bytes. A test over its limit fails with a
message naming the limit, what was measured, and the top allocation sites
with their Python stacks (from memray-fold on the test's recording). At the
end a table lists the tests with the highest peaks. --memray-bin-path DIR
keeps each test's recording (TEST-ID.bin) for memray-stat, memray-fold,
memray-flame and the others; without it the recordings are removed.

The tracker must be in the process: when it is not, pytest runs itself
again under `memray-record --idle`, which preloads the tracker recording
nothing until a test starts; the tests see the environment as it was. The
tracker is found through MEMRAY_TRACKER, the path `make install` wrote
here, or memray-record in PATH; memray-record next to the tracker, or in
PATH.

Without --memray the plugin does nothing at all. Load it with
`-p pytest_memray_c` (PYTHONPATH=python from a checkout); after
`make install` pytest loads it by itself.
"""

import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

# `make install` writes the installed tracker's path here.
INSTALLED_TRACKER = "@TRACKER@"

REEXEC_MARK = "MEMRAY_PYTEST_REEXEC"

_UNITS = {
    "": 1, "B": 1,
    "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
    "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
    "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
}


def parse_size(text):
    """Bytes in a size for people: "24 MB", "1.5GiB", "512K", "1048576"."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(
            f"invalid size {text!r}: expected a number and one of K, M, G, T, "
            "KiB, MiB, GiB, TiB (powers of 1024), KB, MB, GB, TB (of 1000) or B")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def human(n):
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    v, i = float(n), 0
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{int(v)} B" if i == 0 else f"{v:.1f} {units[i]}"


class _Stats(ctypes.Structure):
    _fields_ = [("peak", ctypes.c_uint64), ("live", ctypes.c_uint64),
                ("allocations", ctypes.c_uint64), ("allocated", ctypes.c_uint64)]


def find_tracker():
    candidates = [os.environ.get("MEMRAY_TRACKER", "")]
    if not INSTALLED_TRACKER.startswith("@"):
        candidates.append(INSTALLED_TRACKER)
    record = shutil.which("memray-record")
    if record:
        bindir = os.path.dirname(os.path.realpath(record))
        candidates.append(os.path.join(bindir, "..", "lib", "memray-c", "libmemray-tracker.so"))
    for c in candidates:
        if c and os.path.isfile(c):
            return os.path.realpath(c)
    return None


def find_record(tracker):
    near = os.path.join(os.path.dirname(tracker), "..", "..", "bin", "memray-record")
    if os.access(near, os.X_OK):
        return os.path.realpath(near)
    return shutil.which("memray-record")


def tracker_loaded():
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return any("libmemray-tracker.so" in line for line in f)
    except OSError:
        return False


def pytest_addoption(parser):
    group = parser.getgroup("memray-c", "memory limits recorded by memray-c")
    group.addoption("--memray", action="store_true", default=False,
                    help="record every test with memray-c and enforce the limit_memory "
                         "and limit_leaks markers")
    group.addoption("--memray-bin-path", metavar="DIR", default=None,
                    help="keep each test's recording in DIR (TEST-ID.bin)")
    group.addoption("--memray-native", action="store_true", default=False,
                    help="record native stacks too")
    group.addoption("--most-allocations", metavar="N", type=int, default=5,
                    help="tests listed in the summary table (default 5, 0 for none)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "limit_memory(size): fail the test when the peak of the memory it "
                   "allocates exceeds size (with --memray)")
    config.addinivalue_line(
        "markers", "limit_leaks(size): fail the test when the memory it allocates and "
                   "does not free exceeds size (with --memray)")
    if not config.getoption("memray"):
        return
    tracker = find_tracker()
    if not tracker:
        raise pytest.UsageError(
            "--memray: cannot find libmemray-tracker.so (set MEMRAY_TRACKER, or put "
            "memray-record in PATH, or make install memray-c)")
    if not tracker_loaded():
        if os.environ.get(REEXEC_MARK):
            raise pytest.UsageError(
                f"--memray: {tracker} was preloaded but is not in the process "
                "(a setuid interpreter, or LD_PRELOAD cleared?)")
        record = find_record(tracker)
        if not record:
            raise pytest.UsageError("--memray: cannot find memray-record (put it in PATH)")
        env = dict(os.environ)
        # "2": MEMRAY_TRACKER is ours, and goes again
        env[REEXEC_MARK] = "1" if env.get("MEMRAY_TRACKER") else "2"
        env["MEMRAY_TRACKER"] = tracker
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(record, [record, "--idle", "--", sys.executable] + list(sys.orig_argv[1:]), env)
    if os.environ.pop(REEXEC_MARK, None) == "2":
        os.environ.pop("MEMRAY_TRACKER", None)
    config.pluginmanager.register(MemrayPlugin(config, tracker), "memray-c")


class MemrayPlugin:
    def __init__(self, config, tracker):
        self.config = config
        self.lib = ctypes.CDLL(tracker, use_errno=True)
        self.lib.memray_start.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self.lib.memray_stats.argtypes = [ctypes.POINTER(_Stats)]
        self.native = config.getoption("memray_native")
        bin_path = config.getoption("memray_bin_path")
        self.keep = bin_path is not None
        if self.keep:
            os.makedirs(bin_path, exist_ok=True)
            self.dir = os.path.abspath(bin_path)
        else:
            self.dir = tempfile.mkdtemp(prefix="memray-pytest-")
        bindir = os.path.join(os.path.dirname(tracker), "..", "..", "bin")
        fold = os.path.join(bindir, "memray-fold")
        self.fold = fold if os.access(fold, os.X_OK) else shutil.which("memray-fold")
        self.results = {}  # nodeid -> (stats, path)
        self.failures = {}  # nodeid -> message

    def _path(self, nodeid):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", nodeid).strip("-")[:200] or "test"
        return os.path.join(self.dir, name + ".bin")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        path = self._path(item.nodeid)
        flags = 1 if self.native else 0
        started = self.lib.memray_start(path.encode(), flags) == 0
        if not started:
            err = ctypes.get_errno()
            item.warn(pytest.PytestWarning(
                f"memray-c: not recorded: {os.strerror(err)} (is the process recorded "
                "already, by memray-record?)"))
        try:
            yield
        finally:
            if started:
                self.lib.memray_stop()
                s = _Stats()
                self.lib.memray_stats(ctypes.byref(s))
                self.results[item.nodeid] = (s, path)
                self._check(item, s, path)

    def _check(self, item, s, path):
        problems = []
        for name, value, what, metric in (
                ("limit_memory", s.peak, "allocated at its peak", "peak"),
                ("limit_leaks", s.live, "leaked (allocated and not freed)", "leaked")):
            marker = item.get_closest_marker(name)
            if marker is None:
                continue
            if not marker.args:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{name} needs a size")
            limit = parse_size(marker.args[0])
            if value > limit:
                problems.append(
                    f"Test was limited to {human(limit)} ({limit} bytes) by {name}({marker.args[0]!r}) "
                    f"but {what} {human(value)} ({value} bytes)\n" +
                    self._sites(path, metric, value, getattr(item, "originalname", item.name)))
        if problems:
            if self.keep:
                problems.append(f"recording: {path}")
            else:
                problems.append("keep the recording with --memray-bin-path DIR")
            self.failures[item.nodeid] = "\n".join(problems)

    def _sites(self, path, metric, total, test_function, top=5):
        """The sites holding most of total, innermost frame first, down to
        the test function (pytest's own frames below it left out); sites
        under 1% of total are left out too."""
        if not self.fold:
            return "  (memray-fold not found: no allocation sites)"
        try:
            out = subprocess.run([self.fold, "--metric", metric, path], capture_output=True,
                                 text=True, check=False).stdout
        except OSError as e:
            return f"  (memray-fold failed: {e})"
        sites = []
        for line in out.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            stack, value = line.rsplit(" ", 1)
            if value.isdigit() and int(value) > 0 and int(value) * 100 >= total:
                sites.append((int(value), stack))
        sites.sort(key=lambda x: -x[0])
        if not sites:
            return "  (no allocation site holds 1% of it or more)"
        lines = ["top allocation sites:"]
        for value, stack in sites[:top]:
            frames = stack.split(";")
            # from the test function up, if it is on the stack
            for i in range(len(frames) - 1, -1, -1):
                if frames[i].split(" (", 1)[0] == test_function:
                    frames = frames[i:]
                    break
            lines.append(f"  {human(value)} ({value} bytes) at:")
            for f in reversed(frames[-12:]):
                lines.append(f"      {f}")
            if len(frames) > 12:
                lines.append(f"      ... {len(frames) - 12} more")
        return "\n".join(lines)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if call.when == "call" and item.nodeid in self.failures and report.passed:
            report.outcome = "failed"
            report.longrepr = self.failures[item.nodeid]

    def pytest_terminal_summary(self, terminalreporter):
        n = self.config.getoption("most_allocations")
        if n <= 0 or not self.results:
            return
        tr = terminalreporter
        tr.write_sep("=", "memray-c: the tests with the highest peak")
        rows = sorted(self.results.items(), key=lambda kv: -kv[1][0].peak)[:n]
        tr.write_line(f"{'peak':>12} {'leaked':>12} {'allocations':>12}  test")
        for nodeid, (s, _) in rows:
            tr.write_line(f"{human(s.peak):>12} {human(s.live):>12} {s.allocations:>12}  {nodeid}")
        if self.keep:
            tr.write_line(f"recordings in {self.dir}")

    def pytest_unconfigure(self, config):
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
