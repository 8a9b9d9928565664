"""Builds the memray_c wheel: the Makefile's tools and tracker go inside
the package (memray_c/_tools/bin and memray_c/_tools/lib/memray-c, the
layout in which memray-record finds the tracker next to itself), and the
reader is a C extension over the same lib/ sources the tools use.

The extension uses CPython's limited API (3.9 on), so one wheel serves
every CPython 3.9 to 3.15. The metadata is in pyproject.toml."""

import os
import shutil
import subprocess

from setuptools import Distribution, Extension, setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(ROOT, "build", "py"), exist_ok=True)
TOOLS = ["memray-record", "memray-fold", "memray-stat", "memray-leaks",
         "memray-flame", "memray-tree", "memray-live", "memray-diff"]
# the lib/ sources the reader needs: lib/stream_read.c and what it calls
# (stream_write.c for the allocator names), lib/replay.c and lib/collapse.c's
# collapse_visit with what they call
LIB = ["stream_read", "stream_write", "input", "util", "replay", "live", "symbolize", "symcache",
       "intern", "collapse", "frame_norm"]


class BuildWithTools(build_py):
    """build_py, then `make all` and the tools and tracker copied in."""

    def run(self):
        super().run()
        build = os.environ.get("MEMRAY_WHEEL_BUILD", os.path.join(ROOT, "build"))
        subprocess.check_call(["make", "-C", ROOT, "BUILD=" + build, "all"])
        dest = os.path.join(self.build_lib, "memray_c", "_tools")
        os.makedirs(os.path.join(dest, "bin"), exist_ok=True)
        os.makedirs(os.path.join(dest, "lib", "memray-c"), exist_ok=True)
        for tool in TOOLS:
            shutil.copy2(os.path.join(build, "bin", tool), os.path.join(dest, "bin", tool))
        shutil.copy2(os.path.join(build, "lib", "memray-c", "libmemray-tracker.so"),
                     os.path.join(dest, "lib", "memray-c", "libmemray-tracker.so"))


ext_modules = []
if os.path.exists(os.path.join(ROOT, "python", "memray_c", "_reader.c")):
    ext_modules.append(Extension(
        "memray_c._reader",
        sources=["python/memray_c/_reader.c"] + ["lib/%s.c" % f for f in LIB],
        include_dirs=["lib"],
        define_macros=[("Py_LIMITED_API", "0x03090000")],
        # -flto as the tools are built: mr_next's callers inline across files
        extra_compile_args=["-std=gnu11", "-fvisibility=hidden", "-O2", "-flto=auto"],
        extra_link_args=["-flto=auto"],
        libraries=["archive", "z", "dw", "elf", "m"],
        py_limited_api=True,
    ))

class BinaryDistribution(Distribution):
    """The wheel carries programs built for this platform."""

    def has_ext_modules(self):
        return True


setup(
    cmdclass={"build_py": BuildWithTools},
    distclass=BinaryDistribution,
    ext_modules=ext_modules,
    # setuptools' own build tree apart from the Makefile's build/lib
    # build_ext "force": the extension is built afresh every time, since
    # setuptools keeps a built one whose sources are older than it even
    # when the list of sources has changed
    options={"build": {"build_base": "build/py"},
             "build_ext": {"force": True},
             "bdist_wheel": {"py_limited_api": "cp39"},
             "egg_info": {"egg_base": "build/py"}},
)
