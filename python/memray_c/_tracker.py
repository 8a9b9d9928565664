"""memray_c.Tracker: a part of this process's run recorded into a file,
through libmemray-tracker.so's in-process API (lib/tracker/memray.h).

The tracker is found in the process when memray-record preloaded it
(`memray-record --idle python3 app.py`, or LD_PRELOAD), else loaded with
dlopen from the one this package carries. What differs when it was not
preloaded (Tracker.preloaded is False):

  - The program's calls reach the tracker only through its libraries'
    global offset tables, which memray_start points at the tracker for
    every object loaded then (and for those loaded later by dlopen) and
    memray_stop puts back. Calls that do not go through a GOT are missed:
    a library that resolved malloc with dlsym and kept the pointer, a
    statically linked allocator, or a call bound inside libc itself.
  - Blocks allocated before the window and freed in it are not counted
    (as when preloaded: the window counts only its own blocks).

Either way the peak and live bytes of the window (Tracker.stats) are
exact: the tracker keeps the window's blocks by address and counts them
as the readers count the file afterwards. With sample_bytes they count
the sampled blocks only, at their own sizes (the readers' estimates
scale them up).
"""

import atexit
import collections
import ctypes
import errno
import os
import sys
import threading

from . import _tools

Stats = collections.namedtuple("Stats", "peak live allocations allocated")
Stats.__doc__ = """The numbers of a Tracker's window: peak (the highest live
bytes of blocks allocated in it), live (of those, the bytes not freed),
allocations (how many blocks were allocated) and allocated (their
bytes). Blocks allocated before the window and freed in it count for
nothing. Sizes are the requested ones."""

_NATIVE, _NO_NATIVE, _FOLLOW_FORK, _PYTHON_ALLOCATORS = 1, 2, 4, 8


class _Stats(ctypes.Structure):
    _fields_ = [("peak", ctypes.c_uint64), ("live", ctypes.c_uint64),
                ("allocations", ctypes.c_uint64), ("allocated", ctypes.c_uint64)]


class _Allocator(ctypes.Structure):  # PyMemAllocatorEx
    _fields_ = [("ctx", ctypes.c_void_p), ("malloc", ctypes.c_void_p),
                ("calloc", ctypes.c_void_p), ("realloc", ctypes.c_void_p),
                ("free", ctypes.c_void_p)]


# made once: reading the numbers inside a window allocates little in it
_stats_buf = _Stats()
_stats_ref = ctypes.byref(_stats_buf)

_lock = threading.Lock()
_lib = None
_preloaded = None
_active = None  # the Tracker whose window runs in this process


def _load():
    """The tracker library, loaded once; and whether it was preloaded."""
    global _lib, _preloaded
    if _lib is not None:
        return _lib, _preloaded
    path = _tools.loaded_tracker() or _tools.tracker_path()
    if not path and os.environ.get("MEMRAY_TRACKER"):
        raise RuntimeError(
            f"memray_c: MEMRAY_TRACKER names {os.environ['MEMRAY_TRACKER']!r}, which is "
            "not a file (unset it to use the wheel's tracker)")
    if not path:
        raise RuntimeError(
            "memray_c: cannot find libmemray-tracker.so (install the memray-c wheel, "
            "put memray-record in PATH, or set MEMRAY_TRACKER)")
    # PyDLL: the calls keep the GIL, so no Python thread runs while the
    # tracker sets up or ends a window.
    lib = ctypes.PyDLL(path, use_errno=True)
    lib.memray_start_ex.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_long,
                                    ctypes.c_ulonglong, ctypes.c_ulonglong]
    lib.memray_start_ex.restype = ctypes.c_int
    lib.memray_stop.argtypes = []
    lib.memray_stop.restype = ctypes.c_int
    lib.memray_stats.argtypes = [ctypes.POINTER(_Stats)]
    lib.memray_stats.restype = ctypes.c_int
    lib.memray_preloaded.argtypes = []
    lib.memray_preloaded.restype = ctypes.c_int
    _preloaded = bool(lib.memray_preloaded())
    _lib = lib
    return _lib, _preloaded


def python_allocator():
    """What serves this interpreter's object allocations: "malloc"
    (PYTHONMALLOC=malloc: every object is a malloc block the tracker
    sees), "pymalloc" (small objects live inside pymalloc's arenas), or
    "other" (a debug or custom allocator)."""
    get = ctypes.pythonapi.PyMem_GetAllocator
    get.argtypes = [ctypes.c_int, ctypes.POINTER(_Allocator)]
    get.restype = None
    raw, obj = _Allocator(), _Allocator()
    get(0, ctypes.byref(raw))  # PYMEM_DOMAIN_RAW
    get(2, ctypes.byref(obj))  # PYMEM_DOMAIN_OBJ
    if obj.malloc == raw.malloc:
        return "malloc"
    pymalloc = getattr(ctypes.pythonapi, "_PyObject_Malloc", None)
    if pymalloc is not None and ctypes.cast(pymalloc, ctypes.c_void_p).value == obj.malloc:
        return "pymalloc"
    # a stripped build has no _PyObject_Malloc symbol: the object domain
    # differs from the raw one, which is pymalloc unless debug hooks run
    return "pymalloc" if os.environ.get("PYTHONMALLOC", "") in ("", "pymalloc") else "other"


class Tracker:
    """Records the allocations of this process made while it is active
    into file_name, a memray stream that memray-stat, memray-fold,
    memray-flame, memray_c.read and the other readers read:

        with memray_c.Tracker("out.bin") as t:
            work()
        print(t.stats.peak)

    native_traces   record native stacks too (None: memray-c's default,
                    Python stacks only for a Python program)
    follow_fork     processes forked inside the window go on recording
                    into the same file, each as a process of its own
                    (programs they exec are not followed: use
                    memray-record --follow-fork for those)
    trace_python_allocators
                    record every Python object allocation: under pymalloc
                    (the default allocator), the interpreter's object
                    allocators are wrapped for the window, as tracemalloc
                    does, and the arenas pymalloc maps in it are not
                    recorded beside the objects they hold; an interpreter
                    started with PYTHONMALLOC=malloc needs no wrapping.
                    Object-heavy code runs several times slower.
    sample_bytes    record one heap allocation in about every sample_bytes
                    bytes allocated (memray-record --sample-bytes: 1 byte to
                    1 GiB; 0, every allocation); seed (below 2**64) makes
                    the samples repeatable; ValueError names either when
                    it is out of range
    memory_interval_ms
                    milliseconds between the memory records of the file
    overwrite       replace file_name if it exists (else FileExistsError,
                    as memray's Tracker refuses)

    One Tracker runs at a time in a process: starting a second one while
    one is active (nested, or from another thread) raises RuntimeError,
    and so does starting one while memray-record records the process.
    Threads started inside the window are recorded, and so are threads
    that run already. An exception raised inside the with block ends the
    window (the file complete) and goes on. A Tracker records once.
    """

    def __init__(self, file_name, *, native_traces=None, follow_fork=False,
                 trace_python_allocators=False, sample_bytes=0, seed=0,
                 memory_interval_ms=10, overwrite=False):
        self.file_name = os.fspath(file_name)
        self.native_traces = native_traces
        self.follow_fork = bool(follow_fork)
        self.trace_python_allocators = bool(trace_python_allocators)
        # memray-record's bounds: a gap of 1 byte to 1 GiB (0: every
        # allocation), a seed below 2**64 (beyond, ctypes would wrap it)
        if not 0 <= int(sample_bytes) <= 1 << 30:
            raise ValueError(f"sample_bytes {sample_bytes}: expected 0 (no sampling) or a "
                             "size from 1 byte to 1 GiB")
        if not 0 <= int(seed) < 1 << 64:
            raise ValueError(f"seed {seed}: expected 0 to 2**64 - 1")
        if not 0 < int(memory_interval_ms) <= 3600 * 1000:
            raise ValueError("memory_interval_ms must be between 1 and 3600000")
        self.sample_bytes = int(sample_bytes)
        self.seed = int(seed)
        self.memory_interval_ms = int(memory_interval_ms)
        self.overwrite = bool(overwrite)
        self.preloaded = None
        self._state = "new"
        self._pid = None
        self._final = None

    @property
    def active(self):
        """Whether the window runs now."""
        return self._state == "active" and _active is self

    def start(self):
        """Begins the window. Raises RuntimeError when a Tracker runs
        already, or the process is recorded by memray-record; OSError
        when the file cannot be written."""
        global _active
        with _lock:
            if self._state != "new":
                raise RuntimeError(f"this Tracker ({self.file_name}) has run already: "
                                   "a Tracker records once; make a new one")
            if _active is not None:
                raise RuntimeError(
                    f"a memray_c.Tracker is active already (writing {_active.file_name}): "
                    "only one runs at a time in a process")
            if not self.overwrite and os.path.lexists(self.file_name):
                raise FileExistsError(errno.EEXIST, "output file exists already (pass "
                                      "overwrite=True to replace it)", self.file_name)
            lib, self.preloaded = _load()
            flags = 0
            if self.native_traces is not None:
                flags |= _NATIVE if self.native_traces else _NO_NATIVE
            if self.follow_fork:
                flags |= _FOLLOW_FORK
            if self.trace_python_allocators and python_allocator() != "malloc":
                flags |= _PYTHON_ALLOCATORS
            path = os.fsencode(self.file_name)
            # set before the window opens: nothing of the Tracker's own is
            # allocated in it, so its numbers are the code's alone
            self._pid = os.getpid()
            self._state = "active"
            _active = self
            rc = lib.memray_start_ex(path, flags, self.memory_interval_ms, self.sample_bytes,
                                     self.seed)
            if rc != 0:
                self._pid, self._state, _active = None, "new", None
                err = ctypes.get_errno() or errno.EIO
                if err == errno.EBUSY:
                    raise RuntimeError(
                        "memray_c.Tracker: this process is recorded already (by "
                        "memray-record, or an attached recording): the tracker records "
                        "one stream at a time; run it under `memray-record --idle` to "
                        "record windows")
                raise OSError(err, os.strerror(err), self.file_name)
        return self

    def stop(self):
        """Ends the window: the file is complete when it returns. Returns
        the window's Stats. Raises OSError when the file could not be
        written completely (a full disk)."""
        global _active
        # acquire and release, not `with`, whose bound method would be
        # allocated inside the window
        _lock.acquire()
        try:
            if self._state != "active":
                raise RuntimeError(f"this Tracker ({self.file_name}) is not active")
            rc = _lib.memray_stop()
        finally:
            _lock.release()
        with _lock:
            self._final = self._read_stats()
            self._state = "stopped"
            if _active is self:
                _active = None
            if rc != 0:
                raise OSError(errno.EIO, "the recording could not be written completely",
                              self.file_name)
            return self._final

    @property
    def stats(self):
        """The window's Stats: as they are now while it runs, as it ended
        after."""
        if self._state == "new":
            raise RuntimeError("the Tracker has not started")
        if self._state == "stopped":
            return self._final
        return self._read_stats()

    def _read_stats(self):
        s = _stats_buf
        if _lib.memray_stats(_stats_ref) != 0:
            raise RuntimeError("memray_stats failed")
        return Stats(s.peak, s.live, s.allocations, s.allocated)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.active:
            self.stop()
        return False

    def __repr__(self):
        return f"<memray_c.Tracker {self.file_name!r} {self._state}>"


def start(file_name, **options):
    """Starts a Tracker (the options are Tracker's) and returns it."""
    return Tracker(file_name, **options).start()


def stop():
    """Stops the active Tracker and returns its Stats."""
    t = _active
    if t is None:
        raise RuntimeError("no memray_c.Tracker is active in this process")
    return t.stop()


def _warm_up():
    """CPython 3.9 and 3.10 allocate a function's frame object at its
    first call and keep it for the next ones: the calls that end a window
    are made once here, so that their frames are not allocated inside the
    first window."""
    t = Tracker.__new__(Tracker)
    t._state, t.file_name = "stopped", ""
    t.__exit__(None, None, None)
    try:
        t.stop()
    except RuntimeError:
        pass


if sys.version_info < (3, 11):
    _warm_up()


def _after_fork_in_child():
    """A window not followed into a forked child was given up there by the
    tracker (the parent's file is the parent's): the child has none."""
    global _active
    t = _active
    if t is not None and not t.follow_fork:
        t._state = "stopped"
        t._final = Stats(0, 0, 0, 0)
        _active = None


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _at_exit():
    t = _active
    if t is not None and t._state == "active":
        try:
            t.stop()
        except Exception:
            pass
