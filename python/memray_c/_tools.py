"""Where memray_c finds memray-c's tools and tracker, and the console
scripts that run them.

A wheel carries them inside the package, in _tools/bin and
_tools/lib/memray-c (memray-record finds the tracker at ../lib/memray-c
from itself). Run from a checkout (PYTHONPATH=python), the package has
none: the tools are taken from PATH, else from the checkout's build/."""

import os
import shutil
import sys

TOOLS = ("memray-record", "memray-fold", "memray-stat", "memray-leaks",
         "memray-flame", "memray-tree", "memray-live", "memray-diff")

_HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED = os.path.join(_HERE, "_tools")
_CHECKOUT_BUILD = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "build")


def bundled():
    """Whether this installation carries its own tools (a wheel's)."""
    return os.access(os.path.join(BUNDLED, "bin", "memray-record"), os.X_OK)


def tool_path(name):
    """The path of tool name (memray-record, memray-fold, ...), or None."""
    if name not in TOOLS:
        raise ValueError(f"no memray-c tool {name!r}")
    candidates = [os.path.join(BUNDLED, "bin", name)]
    found = shutil.which(name)
    if found:
        candidates.append(found)
    candidates.append(os.path.join(_CHECKOUT_BUILD, "bin", name))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def tracker_path():
    """The path of libmemray-tracker.so: MEMRAY_TRACKER, the wheel's own,
    or the one next to the memray-record that tool_path finds."""
    env = os.environ.get("MEMRAY_TRACKER")
    if env:
        return env if os.path.isfile(env) else None
    record = tool_path("memray-record")
    if record:
        path = os.path.join(os.path.dirname(os.path.realpath(record)), "..", "lib",
                            "memray-c", "libmemray-tracker.so")
        if os.path.isfile(path):
            return os.path.realpath(path)
    return None


def loaded_tracker():
    """The path of the libmemray-tracker.so mapped into this process
    (preloaded by memray-record, or loaded before), or None."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) == 6 and fields[5].rstrip("\n").endswith("/libmemray-tracker.so"):
                    return fields[5].rstrip("\n")
    except OSError:
        pass
    return None


def flame_page(rec, page, fold_options=(), flame_options=()):
    """memray-fold | memray-flame: the flame page of recording rec written
    to page (whole or not at all). Returns the tools' messages (stderr
    lines); raises RuntimeError with them when either fails."""
    import subprocess
    import tempfile
    fold, flame = tool_path("memray-fold"), tool_path("memray-flame")
    if not fold or not flame:
        raise RuntimeError("memray-fold or memray-flame not found (install the memray-c "
                           "wheel, or put memray-c's tools in PATH)")
    tmp = page + ".tmp"
    with open(tmp, "wb") as out, tempfile.TemporaryFile() as err1, \
            tempfile.TemporaryFile() as err2:
        p1 = subprocess.Popen([fold, *fold_options, "--", rec], stdout=subprocess.PIPE,
                              stderr=err1)
        p2 = subprocess.Popen([flame, *flame_options], stdin=p1.stdout, stdout=out, stderr=err2)
        p1.stdout.close()
        r2, r1 = p2.wait(), p1.wait()
        messages = []
        for f in (err1, err2):
            f.seek(0)
            messages.extend(f.read().decode("utf-8", "replace").splitlines())
    messages = [m for m in messages if m.strip()]
    if r1 or r2:
        os.unlink(tmp)
        raise RuntimeError("the flame graph could not be made: " +
                           ("; ".join(messages) or f"exit status {r1 or r2}"))
    os.replace(tmp, page)
    return messages


def run_tool(name, args):
    """Replaces this process with tool name run on args."""
    path = tool_path(name)
    if not path:
        sys.stderr.write(f"{name}: not found: this memray_c carries no tools and there is "
                         f"no {name} in PATH (install the memray-c wheel, or build "
                         "memray-c with make)\n")
        sys.exit(127)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(path, [name] + list(args))


def _script(name):
    def main():
        run_tool(name, sys.argv[1:])
    main.__name__ = name.replace("-", "_")
    main.__doc__ = f"The console script {name}: runs the {name} this package carries."
    return main


memray_record = _script("memray-record")
memray_fold = _script("memray-fold")
memray_stat = _script("memray-stat")
memray_leaks = _script("memray-leaks")
memray_flame = _script("memray-flame")
memray_tree = _script("memray-tree")
memray_live = _script("memray-live")
memray_diff = _script("memray-diff")
