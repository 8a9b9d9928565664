"""memray_c - memray-c from Python: record, read, and the notebook magic.

    with memray_c.Tracker("out.bin") as t:     # record a part of the run
        work()
    t.stats.peak                               # its exact peak and live bytes

    for rec in memray_c.read("out.bin").records():   # read any recording
        ...

    %load_ext memray_c                         # in IPython / Jupyter
    %%memray_c_flamegraph                      # a cell's flame graph inline

    python3 -m memray_c run script.py          # memray-record python3 script.py
    pytest --memray                            # the pytest plugin

The tools themselves (memray-record, memray-fold, memray-flame, ...)
come with the wheel as console scripts.
"""

__version__ = "0.1.0"

from ._tracker import Stats, Tracker, python_allocator, start, stop  # noqa: E402

__all__ = ["Tracker", "Stats", "start", "stop", "python_allocator", "read", "FileReader",
           "ReaderError", "AllocationRecord", "MemorySnapshot", "Metadata",
           "load_ipython_extension"]


def __getattr__(name):
    # the reader (a C extension) and the notebook magic load when used
    if name in ("read", "FileReader", "ReaderError", "AllocationRecord", "MemorySnapshot",
                "Metadata"):
        from . import reader
        return getattr(reader, name)
    raise AttributeError(f"module 'memray_c' has no attribute {name!r}")


def load_ipython_extension(ipython):
    """%load_ext memray_c: registers the %%memray_c_flamegraph cell magic."""
    from . import notebook
    notebook.load_ipython_extension(ipython)
