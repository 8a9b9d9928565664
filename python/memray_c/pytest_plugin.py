"""memray_c.pytest_plugin - memory limits for tests, recorded by memray-c.

    pytest --memray [--memray-bin-path DIR] [--native] [--stacks N]
           [--most-allocations N] [--hide-memray-summary]
           [--fail-on-increase] [--trace-python-allocators]

With --memray every test function's call is recorded into a memray stream
of its own by libmemray-tracker.so's in-process API (memray_c.Tracker),
and two markers set limits, as pytest-memray's markers do:

    @pytest.mark.limit_memory("24 MB")  the peak of the memory allocated
                                        during the test (blocks allocated
                                        before it and freed in it do not
                                        count) must stay under 24 MiB
    @pytest.mark.limit_leaks("1 KB", filter_fn=None)
                                        no location may leak 1 KiB or more:
                                        a location is a distinct stack (as
                                        memray-fold prints it), its leak
                                        the bytes allocated there during
                                        the test and not freed at its end

Sizes are read as pytest-memray reads them: a number (a leading + and a
fraction allowed), optional spaces, and B, KB, MB, GB, TB or PB in any
case, each a power of 1024 ("2 MB" is 2 MiB, 2097152 bytes). The forms
this plugin read before are still read and mean the same as before: K, M,
G, T, KiB, MiB, GiB, TiB (powers of 1024), a number alone (bytes), and
spaces around it; only KB, MB, GB and TB changed, from powers of 1000 to
pytest-memray's 1024. A test fails when it reaches its limit (at or over
it, as with pytest-memray), with a message naming the limit, what was
measured, and the allocation sites with their Python stacks (from
memray-fold on the test's recording). Every limit marker of a test
counts, those of its class and module too. A size that cannot be read
stops pytest before any test runs, naming the test and the string.

filter_fn(stack), limit_leaks' keyword argument, is called for each
location over the limit; the location counts only when it returns true.
stack.frames are StackFrame(function, filename, lineno) objects, innermost
first, as pytest-memray gives them (a native frame's filename is its
source file or module, lineno 0 when unknown). As in pytest-memray,
limit_memory takes no filter_fn and limit_leaks takes it by name only.
pytest-memray's current_thread_only is refused: memray-c counts every
thread.

The options, named and meant as pytest-memray's:

    --native              record native stacks too, so that the messages'
                          stacks are hybrid (C frames, then Python's);
                          slower. --memray-native is the same.
    --stacks N            show the N innermost frames of each stack in the
                          messages (pytest-memray shows 1 by default; here
                          the stack down to the test function is shown, at
                          most 12 frames, when N is not given)
    --most-allocations N  the summary table at the end lists the N tests
                          with the highest peaks (default 5, 0 for all)
    --hide-memray-summary no summary table
    --fail-on-increase    a limit_memory test fails when its peak is higher
                          than in its last successful run. Every run with
                          --memray keeps the peak of each limit_memory test
                          that passes in pytest's cache (memray_c/peak/ID,
                          forgotten with --cache-clear), with or without
                          this option; a failing run keeps the old one.
                          pytest's cache must be enabled.

pytest.ini (or any pytest configuration file) may set them too, by
pytest-memray's names: memray, native, stacks, most_allocations,
hide_memray_summary, trace_python_allocators and fail-on-increase; the
command line wins.

Python's small-object allocator (pymalloc) hides objects under 512 bytes
inside its arenas. As pytest-memray does, a limit_leaks test is recorded
with the Python allocators traced, so that it sees every object: the
tracker wraps the interpreter's object allocators for that test's
window, as tracemalloc does (object-heavy code runs several times
slower there). --trace-python-allocators traces them for every test:
pytest runs with PYTHONMALLOC=malloc when the plugin starts it again
under memray-record, and otherwise the allocators are wrapped for each
test.

--memray-bin-path DIR keeps each test's recording (TEST-ID.bin) for
memray-stat, memray-fold, memray-flame and the others; without it the
recordings are removed.

The tracker must be in the process: when it is not, pytest runs itself
again under `memray-record --idle`, which preloads the tracker recording
nothing until a test starts; the tests see the environment as it was.
pytest run by a program (pytest.main()) is not started again, since the
program would be: it is a usage error, and the program is run under
`memray-record --idle PROGRAM` instead. A process recorded already (by
memray-record, or a memray_c.Tracker) cannot record its tests: a test with
a limit then fails, saying why, and the others are warned of. The
tracker and the tools are the ones memray_c._tools finds: MEMRAY_TRACKER,
the wheel's own, or those of memray-record in PATH (or the checkout's
build/).

Without --memray the plugin does nothing at all. Installed with the
memray-c wheel, pytest loads it by itself (its pytest11 entry point);
from a checkout, load it with `PYTHONPATH=python pytest -p
memray_c.pytest_plugin`.
"""

import argparse
import contextlib
import ctypes
import dataclasses
import functools
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from . import _tools, _tracker

REEXEC_MARK = "MEMRAY_PYTEST_REEXEC"

# pytest-memray's sizes (its utils.parse_memory_string): from the start of
# the string, a number with an optional + and fraction, optional white
# space, then B, KB, MB, GB, TB or PB in any case, each a power of 1024;
# the value may be fractional, and a test fails at or over it. Its match
# is a prefix: it ignores text after the unit ("2 MB of it"), which is
# refused here as a likely mistake. The plugin's older forms (K..T,
# KiB..TiB, a bare number of bytes, surrounding spaces) do not clash with
# those and are kept; its KB..TB of 1000 were pytest-memray's 1024.
_UNITS = {
    "": 1, "B": 1,
    "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "PB": 1 << 50,
    "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
    "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
}
_SIZE = re.compile(r"\s*\+?([0-9]*\.[0-9]+|[0-9]+)\s*([A-Za-z]*)\s*")


def parse_size(text):
    """The limit in whole bytes that "2 MB", "1.5gb", "512K" or 1048576
    means: a test reaching it fails. A fractional limit is rounded up,
    which changes no verdict (sizes are whole bytes). ValueError names
    the string and the forms read."""
    m = _SIZE.fullmatch(str(text)) if isinstance(text, (str, int)) else None
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(
            f"invalid size {text!r}: expected a number and a unit: B, KB, MB, GB, TB, PB "
            "(powers of 1024, any case), K, M, G, T, KiB, MiB, GiB, TiB (also powers of "
            "1024), or a number of bytes")
    return math.ceil(float(m.group(1)) * _UNITS[m.group(2).upper()])


@dataclasses.dataclass(frozen=True)
class StackFrame:
    """One frame of a leaking location, as pytest-memray's StackFrame."""
    function: str
    filename: str
    lineno: int


@dataclasses.dataclass(frozen=True)
class Stack:
    """A leaking location's stack given to filter_fn: frames innermost first."""
    frames: tuple


_ESCAPE = re.compile(rb"\\(\\|n|t|x[0-9a-fA-F]{2})")
_FRAME = re.compile(r"(.*) \((.*?)(?::([0-9]+))?\)")


def _unescape(text):
    """A collapsed frame's text as it was before memray-fold escaped it
    (memray-fold(1), Escapes)."""
    def byte(m):
        e = m.group(1)
        return {b"\\": b"\\", b"n": b"\n", b"t": b"\t"}.get(e) or bytes([int(e[1:], 16)])
    return _ESCAPE.sub(byte, text.encode()).decode("utf-8", "replace")


def _stack_frame(text):
    """A StackFrame from a collapsed frame: "function (file.py:12)",
    "symbol (file.c:42)", "symbol (libfoo.so)" (line 0), or "[unknown]"."""
    m = _FRAME.fullmatch(text)
    if not m:
        return StackFrame(_unescape(text), "???", 0)
    return StackFrame(_unescape(m.group(1)), _unescape(m.group(2)), int(m.group(3) or 0))


def human(n):
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    v, i = float(n), 0
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{int(v)} B" if i == 0 else f"{v:.1f} {units[i]}"


def _frames_text(frames, test_function, most=None):
    """A stack's lines for a message: innermost frame first, down to the
    test function when it is on the stack (its qualified name, from
    CPython 3.11, ends in it), at most `most` frames (12 when None)."""
    most = most or 12
    for i in range(len(frames) - 1, -1, -1):
        name = frames[i].split(" (", 1)[0]
        if name == test_function or name.endswith("." + test_function):
            frames = frames[i:]
            break
    lines = [f"      {f}" for f in reversed(frames[-most:])]
    if len(frames) > most:
        lines.append(f"      ... {len(frames) - most} more")
    return lines


def _positive(text):
    """--stacks' type: a number of frames, 1 or more."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of frames, not {text!r}")
    return n


def _count(text):
    """--most-allocations' type: a number of tests, 0 for all."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number of tests (0 for all), not {text!r}")
    return n


# The settings a configuration file may give too, by pytest-memray's
# names: option dest -> (ini name, type of the option's value, default).
_INI = {
    "memray": ("memray", bool, False),
    "native": ("native", bool, False),
    "stacks": ("stacks", _positive, None),
    "most_allocations": ("most_allocations", _count, 5),
    "hide_memray_summary": ("hide_memray_summary", bool, False),
    "trace_python_allocators": ("trace_python_allocators", bool, False),
    "fail_on_increase": ("fail-on-increase", bool, False),
}


def setting(config, dest):
    """The value of option dest: the command line's, else the
    configuration file's, else the default. UsageError names a value of
    the file that cannot be read."""
    value = config.getoption(dest)
    if value is not None:
        return value
    ini, kind, default = _INI[dest]
    raw = config.getini(ini)
    if kind is bool or raw in ("", None):
        return bool(raw) if kind is bool else default
    try:
        return kind(raw)
    except argparse.ArgumentTypeError as e:
        raise pytest.UsageError(f"{ini} = {raw} in {config.inipath}: {e}") from None


def pytest_addoption(parser):
    group = parser.getgroup("memray-c", "memory limits recorded by memray-c")
    group.addoption("--memray", action="store_true", default=None,
                    help="record every test with memray-c and enforce the limit_memory "
                         "and limit_leaks markers")
    group.addoption("--memray-bin-path", metavar="DIR", default=None,
                    help="keep each test's recording in DIR (TEST-ID.bin)")
    group.addoption("--native", "--memray-native", dest="native", action="store_true",
                    default=None,
                    help="record native stacks too, and show their frames in the "
                         "messages (slower)")
    group.addoption("--stacks", metavar="N", type=_positive, default=None,
                    help="show the N innermost frames of each stack in the messages "
                         "(default: down to the test function, at most 12)")
    group.addoption("--most-allocations", metavar="N", type=_count, default=None,
                    help="tests listed in the summary table (default 5, 0 for all)")
    group.addoption("--hide-memray-summary", action="store_true", default=None,
                    help="leave the summary table out")
    group.addoption("--fail-on-increase", action="store_true", default=None,
                    help="fail a limit_memory test whose peak is higher than in its last "
                         "successful run (kept in pytest's cache)")
    group.addoption("--trace-python-allocators", action="store_true", default=None,
                    help="record every Python object in every test (limit_leaks tests "
                         "always are): pytest runs with PYTHONMALLOC=malloc when the plugin "
                         "starts it again, else the allocators are wrapped (slower)")
    for dest, (ini, kind, _) in _INI.items():
        parser.addini(ini, f"as --{dest.replace('_', '-')}",
                      type="bool" if kind is bool else None)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "limit_memory(size): fail the test when the peak of the memory it "
                   "allocates reaches size (\"24 MB\": MiB; with --memray)")
    config.addinivalue_line(
        "markers", "limit_leaks(size, *, filter_fn=None): fail the test when a location "
                   "(a stack) leaks size or more of what the test allocates (with --memray)")
    if not setting(config, "memray"):
        return
    if setting(config, "fail_on_increase") and getattr(config, "cache", None) is None:
        raise pytest.UsageError(
            "--fail-on-increase: the baselines are kept in pytest's cache, which is "
            "disabled here (-p no:cacheprovider)")
    tracker = _tools.tracker_path()
    if not tracker:
        raise pytest.UsageError(
            "--memray: cannot find libmemray-tracker.so (install the memray-c wheel, set "
            "MEMRAY_TRACKER, or put memray-record in PATH)")
    if not _tools.loaded_tracker():
        if os.environ.get(REEXEC_MARK):
            raise pytest.UsageError(
                f"--memray: {tracker} was preloaded but is not in the process "
                "(a setuid interpreter, or LD_PRELOAD cleared?)")
        _run_again(config, tracker)
    pymalloc = sys.flags.ignore_environment or \
        not os.environ.get("PYTHONMALLOC", "").startswith("malloc")
    _restore_environment(os.environ.pop(REEXEC_MARK, ""))
    config.pluginmanager.register(MemrayPlugin(config, pymalloc), "memray-c")


def _tool(tracker, name):
    """Tool name next to the tracker (the wheel's, or a build's), else
    the one memray_c._tools finds."""
    near = os.path.join(os.path.dirname(tracker), "..", "..", "bin", name)
    if os.access(near, os.X_OK):
        return os.path.realpath(near)
    return _tools.tool_path(name)


def _command_line():
    """The command line this Python was started with, interpreter
    options included: sys.orig_argv (CPython 3.10 on), else the kernel's
    copy of it (3.9)."""
    argv = getattr(sys, "orig_argv", None)
    if argv:
        return list(argv)
    with open("/proc/self/cmdline", "rb") as f:
        return [os.fsdecode(a) for a in f.read().split(b"\0")[:-1]]


def _started_as_pytest():
    """Whether this process is pytest as a command (the pytest script,
    python -m pytest): what running it again runs pytest and nothing
    else. pytest.main() called from a program is not: running the
    program again would do all it did before pytest twice, and read a
    standard input it has read."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name in ("pytest", "pytest.__main__", "py.test"):
        return True
    # the scripts pip and Debian install: pytest, py.test, pytest-3, ...
    name = os.path.basename(sys.argv[0] if sys.argv else "")
    return re.fullmatch(r"(pytest|py\.test)(-?[0-9][0-9.]*)?", name) is not None


def _run_again(config, tracker):
    """Replaces this process with pytest run again under memray-record
    --idle, with what the plugin added to the environment listed in
    REEXEC_MARK: "t" MEMRAY_TRACKER, "m" PYTHONMALLOC. Returns only by
    raising UsageError."""
    if not _started_as_pytest():
        raise pytest.UsageError(
            "--memray: the tracker is not in this process, and pytest runs inside "
            "another program (pytest.main()), which cannot be started again: run "
            "the program as `memray-record --idle PROGRAM ...`, or pytest as a "
            "command (pytest --memray, python -m pytest --memray)")
    record = _tool(tracker, "memray-record")
    if not record:
        raise pytest.UsageError("--memray: cannot find memray-record (put it in PATH)")
    env = dict(os.environ)
    mark = "r" + ("" if env.get("MEMRAY_TRACKER") else "t")
    env["MEMRAY_TRACKER"] = tracker
    if setting(config, "trace_python_allocators") and "PYTHONMALLOC" not in env:
        mark += "m"
        env["PYTHONMALLOC"] = "malloc"
    env[REEXEC_MARK] = mark
    argv = [record, "--idle", "--", sys.executable] + _command_line()[1:]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(record, argv, env)


def _restore_environment(mark):
    """Removes what _run_again added to the environment, so that the tests
    see it as it was."""
    if "t" in mark:
        os.environ.pop("MEMRAY_TRACKER", None)
    if "m" in mark:
        os.environ.pop("PYTHONMALLOC", None)


def _shown(arg):
    """A marker argument as a message shows it: a function by its name."""
    return (getattr(arg, "__qualname__", None) or repr(arg)) if callable(arg) else repr(arg)


class _Limit:
    """One limit marker of a test, read: name (limit_memory or limit_leaks),
    text (its size as written), size (bytes; the test fails at or over it),
    filter_fn (limit_leaks' or None). Takes what pytest-memray's markers
    take, with its meaning; ValueError says what it cannot take."""

    def __init__(self, nodeid, marker):
        self.name = marker.name
        self.text = marker.args[0] if marker.args else None
        where = f"{nodeid}: @pytest.mark.{self.name}({', '.join(map(_shown, marker.args))})"
        if not marker.args:
            raise ValueError(f"{where}: needs a size, as in {self.name}(\"24 MB\")")
        if len(marker.args) > 1:
            raise ValueError(f"{where}: takes one size" + (
                "; filter_fn is given by name, as in limit_leaks(\"1 MB\", filter_fn=...)"
                if self.name == "limit_leaks" else ", as in limit_memory(\"24 MB\")"))
        try:
            self.size = parse_size(self.text)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        kwargs = dict(marker.kwargs)
        if kwargs.pop("current_thread_only", False):
            raise ValueError(f"{where}: current_thread_only is not supported "
                             "(memray-c counts every thread)")
        if self.name == "limit_memory" and "filter_fn" in kwargs:
            raise ValueError(f"{where}: limit_memory takes no filter_fn (as in pytest-memray): "
                             "filter_fn chooses the leaking locations that count, in "
                             "limit_leaks(\"1 MB\", filter_fn=...)")
        self.filter_fn = kwargs.pop("filter_fn", None)
        if self.filter_fn is not None and not callable(self.filter_fn):
            raise ValueError(f"{where}: filter_fn must be callable, not {self.filter_fn!r}")
        if kwargs:
            raise ValueError(f"{where}: unknown argument {', '.join(kwargs)}")

    def __str__(self):
        return f"{self.name}({self.text!r})"


def _baseline_key(nodeid):
    """The key of a test's peak in pytest's cache (--fail-on-increase)."""
    return "memray_c/peak/" + nodeid


class MemrayPlugin:
    def __init__(self, config, pymalloc):
        self.config = config
        # memray_c._tracker's library, its functions looked up now (a
        # lookup inside a test's window would be recorded). Not its
        # Tracker: what that keeps for itself (its state, the Stats read
        # before memray_stop) would be recorded in every test's window.
        self.lib, _ = _tracker._load()
        self.native = setting(config, "native")
        self.stacks = setting(config, "stacks")
        self.fail_on_increase = setting(config, "fail_on_increase")
        self.most_allocations = setting(config, "most_allocations")
        self.hide_summary = setting(config, "hide_memray_summary")
        self.cache = getattr(config, "cache", None)
        self.pymalloc = pymalloc
        self.trace_all = setting(config, "trace_python_allocators")
        bin_path = config.getoption("memray_bin_path")
        self.keep = bin_path is not None
        if self.keep:
            os.makedirs(bin_path, exist_ok=True)
            self.dir = os.path.abspath(bin_path)
        else:
            self.dir = tempfile.mkdtemp(prefix="memray-pytest-")
        self.fold = _tool(_tools.loaded_tracker(), "memray-fold")
        self.limits = {}  # nodeid -> [_Limit]
        self.results = {}  # nodeid -> (Stats, path)
        self.failures = {}  # nodeid -> message
        self.peaks = {}  # nodeid -> peak, a baseline if the test passes

    def _path(self, nodeid):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", nodeid).strip("-")[:200] or "test"
        return os.path.join(self.dir, name + ".bin")

    def pytest_collection_modifyitems(self, items):
        """Reads every test's limit markers, its class's and module's too;
        any that cannot be read stop pytest with one line each."""
        errors = []
        for item in items:
            limits = []
            for name in ("limit_memory", "limit_leaks"):
                for marker in item.iter_markers(name):
                    try:
                        limits.append(_Limit(item.nodeid, marker))
                    except ValueError as e:
                        errors.append(str(e))
            self.limits[item.nodeid] = limits
        if errors:
            raise pytest.UsageError("\n".join(errors))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_pyfunc_call(self, pyfuncitem):
        """Records the test function's call alone, as pytest-memray does."""
        original = pyfuncitem.obj

        @functools.wraps(original)
        def recorded(*args, **kwargs):
            with self._recording(pyfuncitem):
                return original(*args, **kwargs)
        pyfuncitem.obj = recorded
        try:
            yield
        finally:
            pyfuncitem.obj = original

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        """Records the whole call of a test that does not call
        pytest_pyfunc_call (unittest's, doctests, other plugins' items)."""
        if isinstance(item, pytest.Function) and type(item).runtest is pytest.Function.runtest:
            yield
            return
        with self._recording(item):
            yield

    @contextlib.contextmanager
    def _recording(self, item):
        path = self._path(item.nodeid)
        flags = _tracker._NATIVE if self.native else 0
        # every object seen where leaks are limited (or everywhere, asked)
        if self.pymalloc and (self.trace_all or any(
                limit.name == "limit_leaks" for limit in self.limits.get(item.nodeid, []))):
            flags |= _tracker._PYTHON_ALLOCATORS
        started = self.lib.memray_start_ex(os.fsencode(path), flags, 10, 0, 0) == 0
        if not started:
            err = ctypes.get_errno()
            why = (f"not recorded: {os.strerror(err)} (is the process recorded "
                   "already, by memray-record or a memray_c.Tracker?)")
            # a limit that cannot be checked fails its test, as
            # pytest-memray's does; a test without one is only warned of
            limits = self.limits.get(item.nodeid, [])
            if limits:
                pytest.fail(f"memray-c: {', '.join(str(m) for m in limits)} cannot be "
                            f"checked: {why}", pytrace=False)
            item.warn(pytest.PytestWarning(f"memray-c: {why}"))
        try:
            yield
        finally:
            if started:
                written = self.lib.memray_stop() == 0
                s = _tracker._Stats()
                self.lib.memray_stats(ctypes.byref(s))
                stats = _tracker.Stats(s.peak, s.live, s.allocations, s.allocated)
                self.results[item.nodeid] = (stats, path)
                if not written:
                    item.warn(pytest.PytestWarning(
                        f"memray-c: {path}: the recording could not be written completely"))
                self._check(item, stats, path)

    def _check(self, item, s, path):
        limits = self.limits.get(item.nodeid, [])
        test_function = getattr(item, "originalname", item.name)
        problems = []
        for limit in limits:
            if limit.name == "limit_memory" and s.peak >= limit.size:
                problems.append(
                    f"Test was limited to {human(limit.size)} ({limit.size} bytes) by {limit} "
                    f"but allocated at its peak {human(s.peak)} ({s.peak} bytes)\n" +
                    self._sites(path, "peak", s.peak, test_function))
            elif limit.name == "limit_leaks":
                problems.extend(self._check_leaks(item, limit, path, test_function))
        if any(limit.name == "limit_memory" for limit in limits):
            problems.extend(self._check_increase(item, s, path, test_function))
        if problems:
            if self.keep:
                problems.append(f"recording: {path}")
            else:
                problems.append("keep the recording with --memray-bin-path DIR")
            self.failures[item.nodeid] = "\n".join(problems)

    def _check_increase(self, item, s, path, test_function):
        """A message (in a list) when --fail-on-increase is on and the
        peak is over the one of the test's last successful run. The peak
        becomes the baseline if the test passes (pytest_runtest_makereport)."""
        if self.cache is None:
            return []
        self.peaks[item.nodeid] = s.peak
        before = self.cache.get(_baseline_key(item.nodeid), None)
        if not self.fail_on_increase or not isinstance(before, int) or s.peak <= before:
            return []
        return [f"Test previously used {human(before)} ({before} bytes) at its peak, in its "
                f"last successful run, but now uses {human(s.peak)} ({s.peak} bytes) "
                "(--fail-on-increase)\n" + self._sites(path, "peak", s.peak, test_function)]

    def _check_leaks(self, item, limit, path, test_function):
        """A message (in a list) when a location of the recording leaked
        limit.size or more and limit.filter_fn, if any, keeps it."""
        stacks, error = self._fold(path, "leaked")
        if error:
            return [f"{limit}: cannot read the leaks: {error}"]
        over = []
        for value, stack in stacks:
            if value < limit.size:
                continue
            frames = stack.split(";")
            if limit.filter_fn is None or limit.filter_fn(
                    Stack(tuple(_stack_frame(f) for f in reversed(frames)))):
                over.append((value, frames))
        if not over:
            return []
        n = len(over)
        lines = [f"Test was allowed to leak {human(limit.size)} ({limit.size} bytes) per "
                 f"location by {limit} but {n} location{'s' if n > 1 else ''} leaked more:"]
        for value, frames in over[:10]:
            lines.append(f"  {human(value)} ({value} bytes) leaked at:")
            lines.extend(_frames_text(frames, test_function, self.stacks))
        if n > 10:
            lines.append(f"  ... {n - 10} more locations")
        return ["\n".join(lines)]

    def _fold(self, path, metric):
        """The recording's stacks as (value, collapsed stack) with a value
        over 0, the largest first, and None; or [] and what went wrong."""
        if not self.fold:
            return [], "memray-fold not found"
        argv = [self.fold, "--metric", metric] + (["--native"] if self.native else []) + [path]
        # the tool runs without the tracker (or any preload) this process has
        env = {k: v for k, v in os.environ.items()
               if k != "LD_PRELOAD" and not k.startswith("MEMRAY_")}
        try:
            run = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        except OSError as e:
            return [], f"memray-fold failed: {e}"
        if run.returncode != 0:
            return [], f"memray-fold failed: {run.stderr.strip()}"
        stacks = []
        for line in run.stdout.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            stack, value = line.rsplit(" ", 1)
            if value.isdigit() and int(value) > 0:
                stacks.append((int(value), stack))
        stacks.sort(key=lambda x: -x[0])
        return stacks, None

    def _sites(self, path, metric, total, test_function, top=5):
        """The sites holding most of total, innermost frame first, down to
        the test function (pytest's own frames below it left out), as many
        frames as --stacks says; sites under 1% of total are left out."""
        stacks, error = self._fold(path, metric)
        if error:
            return f"  (no allocation sites: {error})"
        sites = [(value, stack) for value, stack in stacks if value * 100 >= total]
        if not sites:
            return "  (no allocation site holds 1% of it or more)"
        lines = ["top allocation sites:"]
        for value, stack in sites[:top]:
            lines.append(f"  {human(value)} ({value} bytes) at:")
            lines.extend(_frames_text(stack.split(";"), test_function, self.stacks))
        return "\n".join(lines)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if call.when != "call":
            return
        if item.nodeid in self.failures and report.passed:
            report.outcome = "failed"
            report.longrepr = self.failures[item.nodeid]
        peak = self.peaks.pop(item.nodeid, None)
        if peak is not None and report.passed:
            self.cache.set(_baseline_key(item.nodeid), peak)

    def pytest_terminal_summary(self, terminalreporter):
        if self.hide_summary or not self.results:
            return
        n = self.most_allocations or len(self.results)
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
