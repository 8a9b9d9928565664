"""The pytest plugin as an installed memray_c gives it: `pytest --memray`
loads it by itself through the wheel's pytest11 entry point (no -p),
enforces the limits, and records with the tracker this memray_c finds
(in a wheel, its own)."""

import importlib.metadata
import os
import subprocess
import sys

import pytest

import memray_c
from memray_c import _tools

SUITE = '''
import os

import pytest

kept = []


def test_tracker_in_process():
    # the libmemray-tracker.so mapped into this process, for the caller
    with open("/proc/self/maps") as maps:
        paths = {line.split(None, 5)[5].strip() for line in maps
                 if line.rstrip().endswith("/libmemray-tracker.so")}
    with open(os.environ["TRACKER_SEEN"], "w") as out:
        out.write("\\n".join(sorted(paths)))


@pytest.mark.limit_memory("1 MB")
def test_over_limit():
    b = bytearray(3_000_000)
    del b


@pytest.mark.limit_memory("10 MB")
def test_under_limit():
    b = bytearray(1_000_000)
    del b


@pytest.mark.limit_leaks("1 MB")
def test_leaks():
    kept.append(bytearray(2_000_000))


@pytest.mark.limit_memory("100 MB")
def test_grows():
    b = bytearray(int(os.environ["GROW_BYTES"]))
    del b
'''


def entry_point_installed():
    """Whether an installed distribution declares memray_c.pytest_plugin
    as a pytest11 entry point (it does in the wheel; a checkout on
    PYTHONPATH has none)."""
    eps = importlib.metadata.entry_points()
    group = eps.select(group="pytest11") if hasattr(eps, "select") else eps.get("pytest11", [])
    return any(ep.value == "memray_c.pytest_plugin" for ep in group)


def run_pytest(tmp_path, *args, grow=1_000_000):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS", "LD_PRELOAD")
           and not k.startswith("MEMRAY_")}
    env["TRACKER_SEEN"] = str(tmp_path / "tracker-seen")
    env["GROW_BYTES"] = str(grow)
    return subprocess.run([sys.executable, "-m", "pytest", "-rA", *args, "test_suite.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def suite(tmp_path):
    if not entry_point_installed():
        pytest.skip("memray_c is not installed (no pytest11 entry point): the wheel's test")
    (tmp_path / "test_suite.py").write_text(SUITE)
    return tmp_path


def test_entry_point_loads_the_plugin_and_limits_hold(suite, monkeypatch):
    r = run_pytest(suite, "--memray")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "FAILED test_suite.py::test_over_limit" in out, out
    assert "FAILED test_suite.py::test_leaks" in out, out
    assert "PASSED test_suite.py::test_under_limit" in out, out
    assert "PASSED test_suite.py::test_tracker_in_process" in out, out
    assert "Test was limited to 1.0 MiB (1048576 bytes) by limit_memory('1 MB'" in out, out
    assert "memray-c: the tests with the highest peak" in out, out
    # the tracker in the tests' process is the one this memray_c finds
    # (MEMRAY_TRACKER left out): in a wheel, the one inside the package
    monkeypatch.delenv("MEMRAY_TRACKER", raising=False)
    seen = (suite / "tracker-seen").read_text().split("\n")
    assert len(seen) == 1, seen
    assert os.path.realpath(seen[0]) == os.path.realpath(_tools.tracker_path()), seen
    if _tools.bundled():
        package = os.path.dirname(os.path.realpath(memray_c.__file__))
        assert os.path.realpath(seen[0]).startswith(package + os.sep), (seen, package)


def test_without_memray_nothing_is_recorded(suite):
    r = run_pytest(suite)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert (suite / "tracker-seen").read_text() == ""
    # loaded (pytest names the distribution), doing nothing
    assert "plugins: " in out and "memray-c-" in out, out
    assert "the tests with the highest peak" not in out, out


def test_fail_on_increase_across_runs(suite):
    r = run_pytest(suite, "--memray", "--fail-on-increase", "-k", "grows", grow=1_000_000)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_pytest(suite, "--memray", "--fail-on-increase", "-k", "grows", grow=2_000_000)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Test previously used 976.6 KiB (10000" in out, out
    assert "but now uses 1.9 MiB (20000" in out, out
