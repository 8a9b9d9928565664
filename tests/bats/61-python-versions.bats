#!/usr/bin/env bats
# Which CPython frames memray-c reads, and what it says when it cannot:
# the interpreters' published offsets (3.13+), interpreters too old, and
# fake ones (a copy whose _Py_DebugOffsets or version string is altered by
# tests/fixtures/fake_python.py).

load helper

setup_file() {
	list_pythons
}

FAKE=$BATS_TEST_DIRNAME/../fixtures/fake_python.py

# minor_of PY: 13 for CPython 3.13
minor_of() {
	"$1" -c 'import sys; print(sys.version_info[1])'
}

# pyruntime_file PY: the file (executable or libpython) that holds the
# interpreter's .PyRuntime section
pyruntime_file() {
	local exe lib
	exe=$(readlink -f "$1")
	if readelf -S -W "$exe" 2>/dev/null | grep -q '\.PyRuntime'; then
		echo "$exe"
		return
	fi
	lib=$(ldd "$exe" | awk '/libpython3/ { print $3; exit }')
	[ -n "$lib" ] && readelf -S -W "$lib" | grep -q '\.PyRuntime' && echo "$lib"
}

# make_fake PY DIR CHANGE...: a copy of PY in DIR with CHANGE applied to
# its .PyRuntime file; prints the command prefix that runs it
make_fake() {
	local py=$1 dir=$2; shift 2
	local src home
	src=$(pyruntime_file "$py") || return 1
	[ -n "$src" ] || return 1
	home=$("$py" -c 'import sys; print(sys.prefix)')
	mkdir -p "$dir"
	if [ "$src" = "$(readlink -f "$py")" ]; then
		python3 "$FAKE" "$src" "$dir/python" "$@" && chmod +x "$dir/python" || return 1
		echo "env PYTHONHOME=$home $dir/python"
	else
		cp "$(readlink -f "$py")" "$dir/python" &&
		python3 "$FAKE" "$src" "$dir/$(basename "$src")" "$@" || return 1
		echo "env PYTHONHOME=$home LD_LIBRARY_PATH=$dir $dir/python"
	fi
}

# pyheader BIN: the header of the stream's last program image (the
# Python, where env ran it)
pyheader() {
	dump "$1" | awk '$3 == "header"' | tail -1
}

# newer_pythons: the interpreters of pythons() that publish offsets (3.13+)
newer_pythons() {
	local p
	for p in $(pythons); do
		[ "$(minor_of "$p")" -ge 13 ] && echo "$p"
	done
}

# says_native_only STDERR BIN PYVERSION WHY: the one stderr line, the
# header, memray-stat's text and JSON, and memray-fold's metadata all say
# that Python stacks were not recorded and WHY; the stream has native stacks
says_native_only() {
	local err=$1 bin=$2 ver=$3 why=$4
	[ "$(grep -c 'memray-record: CPython' "$err")" = 1 ] || { cat "$err"; return 1; }
	grep -q "^memray-record: CPython $ver (.*): .*$why.*; Python stacks are not recorded, native stacks only$" "$err" ||
		{ cat "$err"; return 1; }
	pyheader "$bin" | grep -q "flags=native,pymalloc .*python=\"$ver\" python_problem=\".*$why" ||
		{ pyheader "$bin"; return 1; }
	memray-stat "$bin" | grep -q "^python: *$ver: Python stacks not recorded, native stacks only: .*$why" || return 1
	memray-stat --json "$bin" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["python_version"] == sys.argv[1], d["python_version"]
assert d["python_stacks"] is False and sys.argv[2] in d["python_problem"], d["python_problem"]' "$ver" "$why" || return 1
	memray-fold "$bin" | grep -q "^# python=\"$ver: Python stacks not recorded.*$why" || return 1
	memray-fold "$bin" | memray-flame > page.html && grep -q "Python stacks not recorded" page.html || return 1
	[ "$(dump "$bin" | awk '$3 == "node"' | wc -l)" -gt 10 ] || { echo "no native stacks"; return 1; }
	[ "$(dump "$bin" | awk '$3 == "pynode"' | wc -l)" = 0 ]
}

agree() {
	memray-record -q -f -o a.bin "$PY" "$PYDIR/chain.py" 2> a.err || return 1
	# nothing said, and the header has no problem: the table and the
	# published offsets (3.13+) agree
	! grep -q . a.err || { cat a.err; return 1; }
	dump a.bin | head -1 | grep -q 'python_problem="" ' || { dump a.bin | head -1; return 1; }
	memray-stat --json a.bin | python3 -c 'import json, sys; d = json.load(sys.stdin); assert d["python_problem"] is None and d["python_stacks"] is True and d["python_version"]'
}

@test "on every CPython present memray-c's table and the interpreter's published offsets agree, and nothing is said" {
	on_every_python agree
}

@test "a CPython older than 3.9 runs unchanged with native stacks, and every reader says why" {
	local py found=0
	for py in /root/.pyenv/versions/3.8.*/bin/python3.8 /root/.pyenv/versions/3.7.*/bin/python3.7; do
		[ -x "$py" ] || continue
		found=1
		local want ver
		want=$("$py" -c 'print(sum(range(10)))')
		ver=$("$py" -c 'import platform; print(platform.python_version())')
		run --separate-stderr memray-record -f -o old.bin "$py" -c 'print(sum(range(10)))'
		[ "$status" = 0 ]
		[ "$output" = "$want" ]
		echo "$stderr" > old.err
		says_native_only old.err old.bin "$ver" "memray-c reads CPython 3.9 to 3.15"
	done
	[ "$found" = 1 ] || skip "no CPython 3.7 or 3.8 under pyenv"
}

free_threaded() {
	local run
	run=$(make_fake "$PY" "$BATS_TEST_TMPDIR/ft" word=2:1) || { echo "cannot fake $PY"; return 1; }
	local want got ver
	want=$($run -c 'print("same")') || return 1
	ver=$($run -c 'import platform; print(platform.python_version())')
	got=$(memray-record -f -o ft.bin $run "$PYDIR/chain.py" 2> ft.err) || { cat ft.err; return 1; }
	[ "$got" = "$($run "$PYDIR/chain.py")" ] || return 1
	says_native_only ft.err ft.bin "$ver" "a free-threaded build (Py_GIL_DISABLED)"
}

@test "a free-threaded build (its published offsets say so) runs unchanged with native stacks, and every reader says why" {
	local n
	n=$(newer_pythons | wc -l)
	[ "$n" -gt 0 ] || skip "no CPython 3.13 or newer"
	for PY in $(newer_pythons); do
		free_threaded || { echo "failed with $PY"; return 1; }
	done
}

@test "published offsets that differ from the table: the published ones are used, and that is said once" {
	local PY done=0
	for PY in $(newer_pythons); do
		local word
		# code_object.firstlineno's word in each version's _Py_DebugOffsets
		case $(minor_of "$PY") in
		13) word=39 ;; 14) word=44 ;; 15) word=52 ;; *) continue ;;
		esac
		local run
		run=$(make_fake "$PY" "$BATS_TEST_TMPDIR/od$word" "word=$word:72") || return 1
		memray-record -f -o od.bin $run "$PYDIR/chain.py" > /dev/null 2> od.err || { cat od.err; return 1; }
		[ "$(grep -c 'memray-record: CPython' od.err)" = 1 ] &&
		grep -q "its published offsets differ from memray-c's table (code.firstlineno 72, table 68): the published ones are used$" od.err ||
			{ echo "$PY"; cat od.err; return 1; }
		pyheader od.bin | grep -q 'flags=python,pymalloc .*python_problem="its published offsets differ' || return 1
		memray-stat od.bin | grep -q "^python: .*: its published offsets differ" || return 1
		done=1
	done
	[ "$done" = 1 ] || skip "no CPython 3.13 to 3.15"
}

@test "a CPython newer than memray-c knows: read with its published offsets when they are laid out as the newest's, else native stacks and why" {
	local PY tried=0
	for PY in $(newer_pythons); do
		local m ver fake run
		m=$(minor_of "$PY")
		ver=$("$PY" -c 'import platform; print(platform.python_version())')
		fake=3.16.${ver#3.*.}
		run=$(make_fake "$PY" "$BATS_TEST_TMPDIR/nv$m" "version=$fake") || return 1
		memray-record -f -o nv.bin $run "$PYDIR/chain.py" > /dev/null 2> nv.err || { cat nv.err; return 1; }
		if [ "$m" = 15 ]; then
			# laid out as 3.15's: frames are read, and the note says how
			grep -q "^memray-record: CPython $fake (.*): newer than memray-c knows (3.9 to 3.15): frames are read with its published offsets and 3.15's rules$" nv.err ||
				{ cat nv.err; return 1; }
			expect_pystack nv.bin 1048577 "<module> chain.py:13
alloc_func1 chain.py:10
alloc_func2 chain.py:6
alloc_func3 chain.py:2" || return 1
		else
			says_native_only nv.err nv.bin "$fake" "newer than memray-c knows (3.9 to 3.15) and its debug offsets are laid out differently" ||
				return 1
		fi
		tried=1
	done
	[ "$tried" = 1 ] || skip "no CPython 3.13 or newer"
}
