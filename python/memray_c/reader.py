"""Reading memray-c recordings from Python.

    r = memray_c.read("run.bin")              # or memray_c.FileReader(...)
    r.metadata.command_line, r.metadata.pid   # the first process's header
    for rec in r.records():                   # every allocation event, streamed
        rec.kind, rec.allocator, rec.address, rec.size, rec.tid, rec.thread_name
        rec.stack()                           # ((function, file, line), ...)
    hw = r.high_watermark()                   # the sites live at the peak
    hw.bytes, hw.time_us, hw[0].stack()
    r.leaks(), r.timeline(), r.summary()

A recording holds every process of the run (memray-record --follow-fork)
and every thread: records carry their pid and thread; `processes` and
`threads` list what has been read so far, all of it after a full pass.
Any input the tools read is read here: plain or compressed (gzip, zstd,
xz, ...), "-" for standard input.

Built on memray-c's own lib/ reader, as a C extension (memray_c._reader)
rather than ctypes over a shared library: a ctypes call costs about a
microsecond, more than memray-fold spends on a whole event, so a loop over
millions of records would be dominated by it; the extension decodes with
exactly the code the tools use (lib/stream_read.c, lib/input.c,
lib/replay.c, lib/symbolize.c), so Python sees the same records, the same
damage messages and the same peaks and leaks as memray-fold and
memray-stat. It uses only CPython's limited API, so one wheel serves
CPython 3.9 on.

Streaming: records are decoded as they are asked for, and an
AllocationRecord holds only numbers; its frames are computed when asked
(and cached per stack). Memory is bounded by the stream's tables
(strings, frames, stacks, threads) and, for the summaries, by the live
allocations: never by the stream's length.

Damage: iterating a truncated or corrupt stream yields every record
before the damage, then raises ReaderError, whose message is the
reader's ("PATH: truncated at byte N: ...", "corrupt at byte N: ...")
and whose .offset is N. A missing file raises OSError, a file that is
not a stream ReaderError, both when it is opened.
"""

import os
import warnings
from collections import namedtuple

from . import _reader
from ._reader import AllocationRecord, ReaderError

__all__ = ["read", "FileReader", "ReaderError", "AllocationRecord", "MemorySnapshot",
           "Metadata", "Process", "Thread", "Sites", "Summary"]

# header flags (lib/stream.h)
_F_NATIVE, _F_PYTHON, _F_PYMALLOC, _F_PYTHON_ALLOCS = 1, 2, 4, 8
_F_FOLLOW_FORK, _F_ATTACHED, _F_SAMPLED = 16, 32, 64


# (collections.namedtuple rather than typing.NamedTuple: importing typing
# would cost more than reading a small file)


class MemorySnapshot(namedtuple("MemorySnapshot", "pid time_us rss heap")):
    """A memory record: the process's RSS and live heap bytes, time_us
    microseconds after its recording started."""
    __slots__ = ()

    @property
    def time(self):
        """Milliseconds from the start (memray's MemorySnapshot.time)."""
        return self.time_us // 1000


TimePoint = namedtuple("TimePoint", "time_us rss heap")
TimePoint.__doc__ = """A point of the timeline: the live heap of every process together
(heap) and the RSS a memory record gave at time_us."""

Thread = namedtuple("Thread", "pid tid name")
Thread.__doc__ = "A thread of a process: its kernel id and its name as last known."


class Metadata(namedtuple("Metadata", "pid ppid argv exe start_us tool_version format_version "
                          "page_size interval_us flags sample_bytes python_version "
                          "python_problem")):
    """A process image's header: what memray-record wrote when it started
    (argv a tuple of str, python_version and python_problem None unless
    the program is a Python)."""
    __slots__ = ()

    @property
    def command_line(self):
        return " ".join(self.argv)

    @property
    def start_time(self):
        import datetime
        return datetime.datetime.fromtimestamp(self.start_us / 1e6)

    @property
    def native_stacks(self):
        return bool(self.flags & _F_NATIVE)

    has_native_traces = native_stacks  # memray's name

    @property
    def python_stacks(self):
        return bool(self.flags & _F_PYTHON)

    @property
    def follow_fork(self):
        return bool(self.flags & _F_FOLLOW_FORK)

    @property
    def trace_python_allocators(self):
        return bool(self.flags & _F_PYTHON_ALLOCS)

    @property
    def pymalloc(self):
        """Whether pymalloc hid small Python objects from the recording."""
        return bool(self.flags & _F_PYMALLOC)

    @property
    def attached(self):
        return bool(self.flags & _F_ATTACHED)

    @property
    def sampled(self):
        return bool(self.flags & _F_SAMPLED)


class Process(namedtuple("Process", "metadata complete end_signal allocations frees "
                         "bytes_allocated end_us threads")):
    """A process image of the stream (a process after exec is another),
    as far as it has been read: its Metadata, whether its trailer was
    read (complete), the signal it ended by or None, its counts so far, the
    time of its last record (end_us) and its threads (Thread tuples)."""
    __slots__ = ()

    @property
    def pid(self):
        return self.metadata.pid

    @property
    def ppid(self):
        return self.metadata.ppid


Summary = namedtuple("Summary", "peak peak_time_us peak_rss allocations frees bytes_allocated "
                     "leaked_bytes duration_us sampled allocators python_note timeline "
                     "process_peaks")
Summary.__doc__ = """The numbers of a whole stream, as memray-stat gives them: sampled is
the mean sampling gap in bytes (0 if not sampled), allocators
{name: (count, bytes)}, timeline TimePoint tuples, process_peaks
{pid: the highest peak of its images}."""


class Sites(list):
    """AllocationRecords of kind "peak" or "leak", largest first: each a
    stack's (and with merge_threads=False a thread's) bytes and
    allocations. .bytes is their sum (the peak, or the bytes leaked),
    .time_us when that was (the peak's time, or the end)."""

    def __init__(self, sites, bytes, time_us):
        super().__init__(sites)
        self.bytes = bytes
        self.time_us = time_us


def _metadata(d):
    return Metadata(d["pid"], d["ppid"], tuple(d["argv"]), d["exe"], d["start_us"],
                    d["tool_version"], d["format_version"], d["page_size"], d["interval_us"],
                    d["flags"], d["sample_bytes"], d["python_version"], d["python_problem"])


class FileReader:
    """A memray-c recording read from path ("-": standard input).

    Opening reads the first process's header: a missing file raises
    OSError, one that is not a memray stream ReaderError. Each records()
    or events() call is a new pass over the file (standard input: one
    pass in all). The summaries (high_watermark, leaks, timeline,
    summary) come from one replay of the whole stream, made once; with
    strict=False a damaged stream's summaries warn (RuntimeWarning) and
    cover what came before the damage, instead of raising ReaderError.
    """

    def __init__(self, path, *, strict=True):
        self.path = os.fspath(path)
        self.strict = strict
        self._stdin = self.path == "-"
        # the pass the first records() call continues; standard input's
        # only one, which also keeps the replay
        self._first = _reader.Stream(self.path, self._stdin, MemorySnapshot)
        self._latest = self._first
        self._replayed = None  # (stream, damage message or None)
        self.metadata = _metadata(self._first.processes()[0])

    # -- passes -------------------------------------------------------------

    def _stream(self, want, pid):
        if self._first is not None:
            s, self._first = self._first, None
        elif self._stdin:
            raise ValueError("standard input can be read once: records(), events() and "
                             "get_memory_snapshots() cannot follow each other")
        else:
            s = _reader.Stream(self.path, False, MemorySnapshot)
        s.select(want, -1 if pid is None else int(pid))
        self._latest = s
        return s

    def records(self, pid=None):
        """Every allocation event (kind "alloc", "free", "realloc"), of
        every process or of process pid, in stream order: an iterator of
        AllocationRecord. Raises ReaderError at damage."""
        return self._stream(_reader.WANT_ALLOCS, pid)

    get_allocation_records = records  # memray's name

    def events(self, pid=None):
        """records() and the memory snapshots (MemorySnapshot), in order."""
        return self._stream(_reader.WANT_ALLOCS | _reader.WANT_MEMORY, pid)

    def get_memory_snapshots(self, pid=None):
        """Every memory record, in order: an iterator of MemorySnapshot."""
        return self._stream(_reader.WANT_MEMORY, pid)

    memory_snapshots = get_memory_snapshots

    # -- what was read --------------------------------------------------------

    def _known(self):
        s = self._latest
        if self._replayed and self._replayed[0].offset >= s.offset:
            s = self._replayed[0]
        return s

    @property
    def processes(self):
        """The process images read so far (all after a full pass), in order
        of appearance: Process tuples."""
        out = []
        for d in self._known().processes():
            threads = tuple(Thread(d["pid"], tid, name) for tid, name in d["threads"])
            out.append(Process(_metadata(d), d["complete"], d["end_signal"], d["allocations"],
                               d["frees"], d["bytes_allocated"], d["end_us"], threads))
        return out

    @property
    def threads(self):
        """The threads read so far, of every process: Thread tuples."""
        return [t for p in self.processes for t in p.threads]

    # -- summaries ------------------------------------------------------------

    def _replay(self):
        if self._replayed is None:
            if self._stdin:
                s = self._latest
                if self._first is not None:
                    self._first = None
            else:
                s = _reader.Stream(self.path, True, MemorySnapshot)
            self._replayed = (s, s.drain())
        s, damage = self._replayed
        if damage:
            if self.strict:
                raise _damage(damage)
            warnings.warn(damage, RuntimeWarning, stacklevel=3)
        return s

    def summary(self):
        """The whole stream's numbers: a Summary."""
        d = self._replay().summary()
        return Summary(d["peak"], d["peak_time_us"], d["peak_rss"], d["allocations"], d["frees"],
                       d["bytes_allocated"], d["leaked_bytes"], d["duration_us"], d["sampled"],
                       d["allocators"], d["python_note"],
                       tuple(TimePoint(*t) for t in d["timeline"]), d["process_peaks"])

    def high_watermark(self, merge_threads=True):
        """The allocation sites live at the high-water mark of the heap (of
        all processes together), largest first: Sites of AllocationRecord
        (kind "peak"), by stack, or by stack and thread."""
        s = self._replay()
        d = s.summary()
        return Sites(_largest(s.sites("peak", merge_threads)), d["peak"], d["peak_time_us"])

    def leaks(self, merge_threads=True):
        """The allocation sites still live at the end, largest first: Sites
        of AllocationRecord (kind "leak")."""
        s = self._replay()
        d = s.summary()
        return Sites(_largest(s.sites("leak", merge_threads)), d["leaked_bytes"], d["duration_us"])

    def get_high_watermark_allocation_records(self, merge_threads=True):
        return iter(self.high_watermark(merge_threads))

    def get_leaked_allocation_records(self, merge_threads=True):
        return iter(self.leaks(merge_threads))

    def timeline(self):
        """RSS and live heap over time, at most 1000 points (as memray-fold
        and memray-flame show it): TimePoint tuples."""
        return list(self.summary().timeline)

    def close(self):
        self._first = self._latest = self._replayed = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<memray_c.FileReader {self.path!r} pid={self.metadata.pid}>"


def _largest(sites):
    sites.sort(key=lambda s: (-s.size, s.pid, s.stack_id, s.tid))
    return sites


def _damage(message):
    import re
    e = ReaderError(message)
    m = re.search(r" at byte (\d+)", message)
    e.offset = int(m.group(1)) if m else 0
    return e


def read(path, **options):
    """memray_c.FileReader(path, **options)."""
    return FileReader(path, **options)
