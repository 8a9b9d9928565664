"""%%memray_c_flamegraph: a notebook cell's memory flame graph, inline.

    %load_ext memray_c

    %%memray_c_flamegraph [--native] [--leaks | --temporary] [--temporal]
                          [--split-threads] [--inverted] [--follow-fork]
                          [--trace-python-allocators] [-o FILE.bin] [-f]
    code ...

The cell runs in the kernel's own process, on its main thread, inside a
memray_c.Tracker window, as memray's %%memray_flamegraph runs it; then
memray-fold and memray-flame make the page of that recording, and the
page is shown under the cell, whole, inside an <iframe srcdoc=...>: the
notebook carries it, so it shows when the notebook is opened later,
elsewhere, or after it was executed headless (nbconvert --execute).
The recording and the page are kept: in memray-results/ (made in the
working directory) as memray-flamegraph-XXXXXXXX.bin and .html unless
-o says where. A cell that raises still shows the page of what it
recorded, then raises. The value of the cell's last expression is the
magic's, shown as the cell's result.

The options are memray's, as far as memray-c can honour them:

    --native              native (C/C++) frames too: hybrid stacks
    --leaks               bytes still live when the cell ended, instead of
                          the peak
    --temporary, --temporary-allocations,
    --temporary-allocation-threshold=0
                          bytes of allocations freed before their thread
                          allocated again (memray-fold --metric=temporary,
                          memray's threshold 0; memray's --temporary-allocations
                          means threshold 1, which memray-c does not count)
    --temporal            the live bytes over time too: pick a time range
                          on the page's memory chart
    --split-threads       a root frame per thread (--merge-threads, the
                          default, merges them)
    --inverted            open the page inverted
    --follow-fork         processes forked in the cell are recorded too
    --trace-python-allocators
                          every Python object allocation recorded, even
                          under pymalloc (the interpreter's object
                          allocators are wrapped for the cell)
    -o, --output FILE     the recording's path (its directory made if need
                          be); the page is written next to it, .html for .bin
    -f, --force           overwrite them

memray's --max-memory-records and a threshold other than 0 are refused
with a message that says why, as are options memray has not.
"""

import argparse
import ast
import html
import os
import shlex
import sys
import tempfile

from . import _tools, _tracker

_PROG = "%%memray_c_flamegraph"
_told_dlopen = False


class _BadUsage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _BadUsage(f"{self.prog}: {message}")

    def exit(self, status=0, message=None):
        # -h: the help was printed; there is no cell to run
        if message:
            sys.stderr.write(message)
        raise _Help()


class _Help(Exception):
    pass


def _parser():
    p = _Parser(prog=_PROG, add_help=True, allow_abbrev=False,
                description="Runs the cell under memray_c.Tracker and shows its flame graph.")
    p.add_argument("--native", action="store_true",
                   help="native (C/C++) frames too: hybrid stacks")
    p.add_argument("--follow-fork", action="store_true",
                   help="record processes forked in the cell too")
    p.add_argument("--trace-python-allocators", action="store_true",
                   help="record every Python object allocation (the interpreter's "
                        "object allocators are wrapped for the cell)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--leaks", action="store_true",
                      help="bytes still live when the cell ended, instead of the peak")
    what.add_argument("--temporary", "--temporary-allocations", dest="temporary",
                      action="store_true",
                      help="bytes of allocations freed before their thread allocated again")
    what.add_argument("--temporary-allocation-threshold", metavar="N", type=int,
                      help="memray's threshold: memray-c counts N=0 only (as --temporary)")
    p.add_argument("--temporal", action="store_true",
                   help="the live bytes over time too, for time ranges on the page")
    threads = p.add_mutually_exclusive_group()
    threads.add_argument("--split-threads", action="store_true",
                         help="a root frame per thread")
    threads.add_argument("--merge-threads", dest="split_threads", action="store_false",
                         help="threads merged (the default)")
    p.add_argument("--inverted", action="store_true",
                   help="open the page inverted: allocating functions as roots")
    p.add_argument("--max-memory-records", metavar="N", type=int,
                   help="memray's; not honoured: refused")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="the recording's path (default memray-results/memray-flamegraph-*.bin); "
                        "the page goes next to it")
    p.add_argument("-f", "--force", action="store_true",
                   help="overwrite the recording and the page")
    return p


def _options(line):
    """The cell magic's options, checked; _BadUsage names what is wrong."""
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise _BadUsage(f"{_PROG}: cannot read the options: {e}")
    o = _parser().parse_args(words)
    if o.max_memory_records is not None:
        raise _BadUsage(f"{_PROG}: --max-memory-records is not supported by memray-c: "
                        "memray-fold thins the page's memory timeline to at most 1000 "
                        "points by itself")
    if o.temporary_allocation_threshold is not None:
        if o.temporary_allocation_threshold != 0:
            raise _BadUsage(
                f"{_PROG}: --temporary-allocation-threshold="
                f"{o.temporary_allocation_threshold} is not supported by memray-c: it counts "
                "an allocation as temporary only when its thread frees it before allocating "
                "again (threshold 0, --temporary)")
        o.temporary = True
    if o.temporal and o.temporary:
        raise _BadUsage(f"{_PROG}: --temporal cannot be used with temporary allocations "
                        "(as in memray): use --temporal alone or with --leaks")
    if o.force and not o.output:
        raise _BadUsage(f"{_PROG}: --force needs --output (the default files are new)")
    return o


def _paths(o):
    """The recording's and the page's paths: -o's, or new ones in
    memray-results/."""
    if o.output:
        rec = o.output
        page = (rec[:-4] if rec.endswith(".bin") else rec) + ".html"
        for path in (rec, page):
            if os.path.lexists(path) and not o.force:
                raise _BadUsage(f"{_PROG}: {path} exists already (-f, --force overwrites it)")
        if os.path.dirname(rec):
            os.makedirs(os.path.dirname(rec), exist_ok=True)
        return rec, page
    os.makedirs("memray-results", exist_ok=True)
    fd, rec = tempfile.mkstemp(prefix="memray-flamegraph-", suffix=".bin", dir="memray-results")
    os.close(fd)
    return rec, rec[:-4] + ".html"


def _compile(shell, cell):
    """The cell as IPython would run it: its code without its last
    expression, and that expression (or None), compiled under the name
    IPython gives the cell so that frames and tracebacks show its lines."""
    source = shell.transform_cell(cell)
    try:
        name = shell.compile.cache(source, shell.execution_count, raw_code=cell)
    except TypeError:  # IPython before 8
        name = shell.compile.cache(source, shell.execution_count)
    tree = ast.parse(source, filename=name)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    flags = getattr(shell.compile, "flags", 0)
    body = compile(tree, name, "exec", flags=flags, dont_inherit=True)
    return body, compile(last, name, "eval", flags=flags, dont_inherit=True) if last else None


def _tell_dlopen(tracker):
    """Says once in the kernel how a tracker loaded with dlopen records."""
    global _told_dlopen
    if tracker.preloaded or _told_dlopen:
        return
    _told_dlopen = True
    print("memray_c: the tracker was loaded into this kernel with dlopen, not preloaded: "
          "the allocations it sees are the calls that go through the global offset tables "
          "of the libraries in the kernel, so it misses a library that kept malloc's "
          "address from dlsym, a statically linked allocator and calls inside libc itself. "
          "To record everything, start the kernel under `memray-record --idle`.")


def _render(o, rec, page, title):
    """memray-fold | memray-flame: rec's page written to page. Raises
    RuntimeError with the tools' messages when they fail."""
    metric = "leaked" if o.leaks else "temporary" if o.temporary else "peak"
    fold_args = ["--metric=" + metric]
    if o.native:
        fold_args.append("--native")
    if o.split_threads:
        fold_args.append("--by-thread")
    if o.temporal:
        fold_args.append("--temporal")
    subtitle = {"peak": "peak memory: the bytes live when the heap was largest",
                "leaked": "leaks: the bytes still live when the cell ended",
                "temporary": "temporary allocations: freed before their thread "
                             "allocated again"}[metric]
    flame_args = ["--title", title, "--subtitle", subtitle]
    if o.inverted:
        flame_args.append("--inverted")
    messages = _tools.flame_page(rec, page, fold_args, flame_args)
    for w in messages:
        # the cells' own code is in no file (IPython keeps it in
        # linecache): that memray-fold cannot read it says nothing
        if not ("cannot read" in w and "source file" in w):
            sys.stderr.write(w + "\n")


def _show(page, rec, stats):
    """The page inline: an iframe whose srcdoc holds it, escaped as an
    attribute value; text for front ends that show no HTML."""
    from IPython.display import display
    with open(page, encoding="utf-8", errors="replace") as f:
        doc = f.read()
    frame = ('<iframe srcdoc="%s" width="100%%" height="600" style="border: 1px solid #ddd" '
             'title="memray-c flame graph"></iframe>' % html.escape(doc, quote=True))
    text = f"<memray-c flame graph {page}>"
    display({"text/html": frame, "text/plain": text}, raw=True)
    if stats is not None:
        print(f"memray_c: peak {stats.peak:,} bytes, {stats.allocations:,} "
              f"allocation{'' if stats.allocations == 1 else 's'} "
              f"({stats.allocated:,} bytes) in the cell; {stats.live:,} bytes of them still "
              f"live; recording {rec}, page {page}")
    else:
        print(f"memray_c: recording {rec}, page {page}")


def flamegraph_magic(shell, line, cell):
    """%%memray_c_flamegraph LINE: runs CELL under a memray_c.Tracker in
    this process and shows its flame graph; returns the value of the
    cell's last expression. Raises IPython's UsageError for bad options,
    and what the cell raised, after showing the page of what it
    recorded."""
    __tracebackhide__ = True  # IPython shows the cell's frames, not these
    from IPython.core.error import UsageError
    try:
        o = _options(line)
    except _Help:
        return None
    except _BadUsage as e:
        raise UsageError(str(e)) from None
    body, last = _compile(shell, cell)  # a SyntaxError before anything is recorded
    try:
        rec, page = _paths(o)
    except _BadUsage as e:
        raise UsageError(str(e)) from None
    tracker = _tracker.Tracker(rec, native_traces=True if o.native else None,
                               follow_fork=o.follow_fork,
                               trace_python_allocators=o.trace_python_allocators,
                               overwrite=True)
    try:
        tracker.start()
    except BaseException:
        if not o.output:
            os.unlink(rec)
        raise
    _tell_dlopen(tracker)
    ns_globals, ns_locals = shell.user_global_ns, shell.user_ns
    failed = None
    value = None
    try:
        exec(body, ns_globals, ns_locals)
        if last is not None:
            value = eval(last, ns_globals, ns_locals)
    except BaseException as e:
        failed = e
    finally:
        stats = tracker.stop() if tracker.active else None
    try:
        execution_count = shell.execution_count
        _render(o, rec, page, f"{_PROG} {line}".strip() + f" (In [{execution_count}])")
        _show(page, rec, stats)
    except Exception as e:
        if failed is None:
            raise
        sys.stderr.write(f"memray_c: {e}\n")
    if failed is not None:
        raise failed.with_traceback(failed.__traceback__.tb_next)
    return value


def load_ipython_extension(ipython):
    """Registers %%memray_c_flamegraph (memray_c.load_ipython_extension
    calls it on %load_ext memray_c)."""
    def memray_c_flamegraph(line, cell):
        __tracebackhide__ = True
        return flamegraph_magic(ipython, line, cell)
    memray_c_flamegraph.__doc__ = __doc__
    ipython.register_magic_function(memray_c_flamegraph, magic_kind="cell",
                                    magic_name="memray_c_flamegraph")
