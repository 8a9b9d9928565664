#!/usr/bin/env bats
# bats file_tags=py3
# The Python package: the wheel `make wheel` builds, installed offline
# into a fresh virtual environment of every CPython here, and its pytest
# tests (python/tests) run inside each; a staged make install.

load helper

ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)

setup_file() {
	# one wheel for every CPython 3.9+ (the limited API)
	make -s -C "$ROOT" BUILD="$MEMRAY_BUILD" wheel > "$BATS_FILE_TMPDIR/wheel.log" 2>&1 ||
		{ cat "$BATS_FILE_TMPDIR/wheel.log" >&3; return 1; }
	export WHEEL
	WHEEL=$(ls "$MEMRAY_BUILD"/dist/memray_c-*.whl)
	# Debian's pytest (pure Python) for the venvs, which have no network
	# to fetch one: its packages only, by a .pth file
	# (what a run of it imports from there, found by running it once)
	mkdir -p "$BATS_FILE_TMPDIR/pytest-path"
	echo 'def test_nothing(): pass' > "$BATS_FILE_TMPDIR/test_probe.py"
	/usr/bin/python3 - "$BATS_FILE_TMPDIR" <<-'PY' || return 1
		import os, sys, io, contextlib
		import pytest
		d = sys.argv[1]
		with contextlib.redirect_stdout(io.StringIO()):
		    pytest.main(["-q", "-p", "no:cacheprovider", os.path.join(d, "test_probe.py")])
		dist = "/usr/lib/python3/dist-packages/"
		names = set()
		for m in list(sys.modules.values()):
		    f = getattr(m, "__file__", None) or ""
		    if f.startswith(dist):
		        names.add(f[len(dist):].split("/")[0])
		# and what it needs before 3.11 only
		names.update(n for n in ("exceptiongroup", "tomli") if os.path.exists(dist + n))
		for n in names:
		    os.symlink(dist + n, os.path.join(d, "pytest-path", n))
	PY
	return 0
}

# venv_for PY: a fresh venv of PY with the wheel installed (no network,
# no index), echoing its directory.
venv_for() {
	local v="$BATS_TEST_TMPDIR/venv-$(basename "$(dirname "$(dirname "$1")")")-$RANDOM"
	"$1" -m venv "$v" > /dev/null || { echo "venv failed for $1" >&2; return 1; }
	"$v/bin/python" -m pip install -q --no-index --no-deps --disable-pip-version-check \
		"$WHEEL" >&2 || { echo "pip install failed for $1" >&2; return 1; }
	echo "$BATS_FILE_TMPDIR/pytest-path" > "$("$v/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/debian-pytest.pth"
	echo "$v"
}

@test "the wheel is one for every CPython 3.9+ and carries the tools, the tracker, the reader and the entry points" {
	[[ $(basename "$WHEEL") == memray_c-0.1.0-cp39-abi3-linux_*.whl ]]
	run unzip -l "$WHEEL"
	for f in memray_c/_tools/bin/memray-record memray_c/_tools/bin/memray-fold \
		memray_c/_tools/bin/memray-flame memray_c/_tools/lib/memray-c/libmemray-tracker.so \
		memray_c/__init__.py memray_c/pytest_plugin.py; do
		assert_output --partial " $f"
	done
	unzip -p "$WHEEL" 'memray_c-0.1.0.dist-info/entry_points.txt' > ep.txt
	grep -qx 'memray_c = memray_c.pytest_plugin' ep.txt
	grep -qx 'memray-record = memray_c._tools:memray_record' ep.txt
	# nothing outside the package and its metadata
	unzip -Z1 "$WHEEL" | grep -v '^memray_c/\|^memray_c-0.1.0.dist-info/' && return 1
	return 0
}

check_venv() {
	local v
	v=$(venv_for "$PY") || return 1
	cd "$BATS_TEST_TMPDIR"
	# the console scripts run the package's own tools, not PATH's
	PATH="$v/bin:/usr/bin:/bin" "$v/bin/memray-record" --version | grep -q '^memray-record 0.1.0$' || return 1
	rm -f run.bin memray-flamegraph-run.html
	PATH="$v/bin:/usr/bin:/bin" "$v/bin/python" -m memray_c run -q -o run.bin -c 'x = bytearray(3000000)' || return 1
	PATH="$v/bin:/usr/bin:/bin" "$v/bin/memray-fold" run.bin | grep -q '<module> (<string>:1) 30000[0-9][0-9]$' || return 1
	PATH="$v/bin:/usr/bin:/bin" "$v/bin/python" -m memray_c flamegraph run.bin > /dev/null || return 1
	grep -q '<html' memray-flamegraph-run.html || return 1
	# the package's own tests, in the venv
	PATH="$v/bin:/usr/bin:/bin" "$v/bin/python" -m pytest -q -p no:cacheprovider \
		"$ROOT/python/tests" > pytest.log 2>&1 || { cat pytest.log; return 1; }
	tail -1 pytest.log
	grep -q ' passed' pytest.log
}

@test "on every Python: a fresh venv, the wheel installed offline, its console scripts, python -m memray_c, and the package's tests" {
	list_pythons
	on_every_python check_venv
}

@test "make install PREFIX=... DESTDIR=... writes nothing outside them, and says how to install the Python package" {
	make -s -C "$ROOT" BUILD="$MEMRAY_BUILD" all
	stage=$BATS_TEST_TMPDIR/stage
	prefix=/opt/memray-prefix-$$
	touch marker
	sleep 1
	HOME=$BATS_TEST_TMPDIR/home run make -C "$ROOT" BUILD="$MEMRAY_BUILD" PREFIX="$prefix" DESTDIR="$stage" install
	echo "$output"
	assert_success
	assert_output --partial "make wheel && python3 -m pip install"
	[ -x "$stage$prefix/bin/memray-record" ]
	[ -f "$stage$prefix/lib/memray-c/libmemray-tracker.so" ]
	[ -f "$stage$prefix/include/memray.h" ]
	[ -f "$stage$prefix/share/man/man1/memray-record.1" ]
	# everything staged is under DESTDIR/PREFIX, and is the tools, the
	# tracker, the header and the manuals
	[ -z "$(find "$stage" -mindepth 1 -not -path "$stage/opt" -not -path "$stage$prefix" -not -path "$stage$prefix/*")" ]
	run find "$stage$prefix" -type f -not -path '*/bin/memray-*' -not -name libmemray-tracker.so \
		-not -name memray.h -not -path '*/share/man/man[15]/memray*.[15]'
	assert_output ""
	[ ! -e "$prefix" ]
	[ ! -e "$BATS_TEST_TMPDIR/home" ]
	# no Python's site directories (the system's, pyenv's, the user's)
	# nor /usr/local got anything
	local py dirs="/usr/local"
	for py in $(pythons); do
		dirs="$dirs $("$py" -c 'import site, sysconfig; print(sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), site.getusersitepackages())')"
	done
	for d in $dirs; do
		[ -d "$d" ] || continue
		run find "$d" -newer marker -print -quit
		assert_output ""
	done
}

@test "python3 -m pip install . from the tree, offline with Debian's setuptools and wheel (--no-build-isolation)" {
	/usr/bin/python3 -c 'import setuptools, wheel' 2> /dev/null ||
		skip "Debian's python3-setuptools and python3-wheel are missing"
	/usr/bin/python3 -m venv --system-site-packages v
	MEMRAY_WHEEL_BUILD=$MEMRAY_BUILD run v/bin/python -m pip install -q --no-index --no-deps \
		--no-build-isolation --disable-pip-version-check "$ROOT"
	echo "$output"
	assert_success
	run v/bin/python -c 'import memray_c, memray_c._tools as t; print(t.bundled(), t.tool_path("memray-fold").startswith(memray_c.__path__[0]))'
	assert_output "True True"
	v/bin/python -c 'import memray_c
with memray_c.Tracker("x.bin") as t:
    b = bytearray(2_000_000)
assert t.stats.peak >= 2_000_000, t.stats'
	run v/bin/memray-stat x.bin
	assert_success
}

@test "python -m memray_c run writes memray run's file, memray-SCRIPT.PID.bin, even when standard output is no terminal; -o - still streams" {
	cd "$BATS_TEST_TMPDIR"
	printf 'import sys\nx = bytearray(3000000)\nprint("out of the program")\n' > gt.py
	PYTHONPATH=$ROOT/python /usr/bin/python3 -m memray_c run -q gt.py > log.txt
	[ "$(cat log.txt)" = "out of the program" ]
	f=$(ls memray-gt.py.*.bin)
	[ -n "$f" ]
	memray-fold "$f" | grep -q '<module> ([^)]*gt.py:2) 30000[0-9][0-9]$'
	PYTHONPATH=$ROOT/python /usr/bin/python3 -m memray_c run -q -m json.tool --help > /dev/null
	ls memray-json.tool.*.bin
	PYTHONPATH=$ROOT/python /usr/bin/python3 -m memray_c run -q -c 'pass' > /dev/null
	ls memray-python-c.*.bin
	PYTHONPATH=$ROOT/python /usr/bin/python3 -m memray_c run -q -o - gt.py 2> /dev/null > s.bin
	memray-stat s.bin > /dev/null
	# where -o is said in any of the ways memray-record takes it, the
	# recording goes there only
	rm -f memray-gt.py.*.bin
	for o in -oa.bin --out=b.bin "-qfo c.bin" "--output d.bin" "--outp e.bin"; do
		PYTHONPATH=$ROOT/python /usr/bin/python3 -m memray_c run -q -f $o gt.py > /dev/null
	done
	for f in a b c d e; do memray-stat $f.bin > /dev/null; done
	! ls memray-gt.py.*.bin 2> /dev/null || false
}
