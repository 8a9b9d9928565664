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
