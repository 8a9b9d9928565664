# Shared set-up for every bats file: tool paths, fixtures, a temp dir.
bats_require_minimum_version 1.5.0
load /usr/lib/bats/bats-support/load.bash
load /usr/lib/bats/bats-assert/load.bash

: "${MEMRAY_BUILD:=$BATS_TEST_DIRNAME/../../build}"
BIN=$MEMRAY_BUILD/bin
FIX=$MEMRAY_BUILD/fixtures
export LC_ALL=C PATH="$BIN:$PATH"
# each test's own symbol cache (memray-fold(1)): a test reads frames named
# by its own readings only
export MEMRAY_SYMBOL_CACHE="${BATS_TEST_TMPDIR:-${BATS_FILE_TMPDIR:-/tmp}}/symbols"

setup() {
	cd "$BATS_TEST_TMPDIR"
}

# dump FILE: the stream's records as text (memray-stat --dump).
dump() {
	memray-stat --dump "$@"
}

# events ALLOCATOR FILE [SIZE]: the dump lines of allocation events by
# ALLOCATOR (of SIZE bytes when given).
events() {
	memray-stat --dump "$2" | awk -v a="$1" -v s="size=$3" \
		'($3 == "alloc" || $3 == "move") && $4 == a && (s == "size=" || $6 == s || $8 == s)'
}

# sizes_seen ALLOCATOR FILE LO HI: how many different sizes from LO up to
# HI (not included) allocation events by ALLOCATOR have.
sizes_seen() {
	events "$1" "$2" | field size | awk -v lo="$3" -v hi="$4" '$1 >= lo && $1 < hi' | sort -u | wc -l
}

# field NAME: from a dump line on stdin, the value of NAME=...
field() {
	sed -n "s/.* $1=\([^ ]*\).*/\1/p"
}

# stack_ips FILE STACK: the instruction pointers of stack node STACK,
# leaf first, one per line.
stack_ips() {
	memray-stat --dump "$1" | awk -v s="$2" '
		$3 == "node" { split($4, a, "="); split($5, b, "="); split($6, c, "=")
			parent[a[2]] = b[2]; ip[a[2]] = c[2] }
		END { while (s != 0 && s != "") { print ip[s]; s = parent[s] } }'
}

# symbolize FILE IP...: "function module" for each return address, using
# the stream's module records and addr2line on the module's file.
symbolize() {
	local f=$1; shift
	local mods
	mods=$(memray-stat --dump "$f" | awk '$3 == "module" {
		for (i = 4; i <= NF; i++) { split($i, kv, "="); m[kv[1]] = kv[2] }
		print m["base"], $6 }')
	local ip
	for ip in "$@"; do
		echo "$mods" | while read -r base path; do
			path=${path#\"}; path=${path%\"}
			[ -f "$path" ] || continue
			off=$(( ip - base - 1 ))
			[ "$off" -ge 0 ] || continue
			fn=$(addr2line -f -e "$path" "$(printf '0x%x' "$off")" 2>/dev/null | head -1)
			if [ -n "$fn" ] && [ "$fn" != "??" ]; then
				echo "$fn $(basename "$path")"
				break
			fi
		done
	done
}

# pystack FILE STACK: the Python frames of stack node STACK, root first,
# one "function file:line" per line (file reduced to its base name).
pystack() {
	memray-stat --dump "$1" | awk -v s="$2" '
		function val(f) { sub(/^[a-z_]+=/, "", f); return f }
		$3 == "string" { id = val($4); str = substr($0, index($0, "\"") + 1); sub(/"$/, "", str); S[id] = str }
		$3 == "pyframe" { id = val($4); FN[id] = S[val($5)]; n = split(S[val($6)], p, "/"); FL[id] = p[n]; LN[id] = val($7) }
		$3 == "pynode" { id = val($4); P[id] = val($5); F[id] = val($6) }
		$3 == "node" { id = val($4); P[id] = val($5); F[id] = "" }
		END {
			n = 0
			while (s != 0 && s != "") { if (F[s] != "") out[n++] = FN[F[s]] " " FL[F[s]] ":" LN[F[s]]; s = P[s] }
			for (i = n - 1; i >= 0; i--) print out[i]
		}'
}

# pystack_of FILE AWKCOND: the Python stack of the first event matching AWKCOND
pystack_of() {
	local s
	s=$(memray-stat --dump "$1" | awk "$2" | head -1 | sed -n 's/.* stack=\([0-9]*\).*/\1/p')
	[ -n "$s" ] && pystack "$1" "$s"
}

PYDIR=$BATS_TEST_DIRNAME/../fixtures/py

# PY3: the Python of the tests written for one Python (the system's, or
# $MEMRAY_PY3: tests/sid.sh runs them again on sid's 3.14 and 3.15; such
# tests carry the bats tag py3).
PY3=${MEMRAY_PY3:-/usr/bin/python3}

# pythons: Debian's /usr/bin/python3 and every CPython 3.9-3.13 under
# pyenv, by real path; the missing minor versions are reported on fd 3.
# $MEMRAY_PYTHONS, when set, is the list instead (tests/sid.sh).
pythons() {
	if [ -n "${MEMRAY_PYTHONS-}" ]; then
		printf '%s\n' $MEMRAY_PYTHONS
		return
	fi
	echo /usr/bin/python3
	local m p
	for m in 9 10 11 12 13; do
		p=$(ls -d /root/.pyenv/versions/3.$m.*/bin/python3 2>/dev/null | grep -v -- '-dev\|t/bin' | tail -1)
		if [ -n "$p" ]; then
			echo "$p"
		else
			echo "# CPython 3.$m is not installed: skipped" >&3
		fi
	done
}

# list_pythons: says on fd 3 which CPythons the file's tests run on.
list_pythons() {
	local PY all=""
	for PY in $(pythons); do
		all="$all $PY ($("$PY" -c 'import platform; print(platform.python_version())'))"
	done
	echo "# $(basename "$BATS_TEST_FILENAME"): CPythons:$all" >&3
}

# on_every_python COMMAND...: runs COMMAND with $PY set to each Python;
# fails at the first check that fails, naming the Python. (COMMAND runs
# as a statement of its own: run as `COMMAND || ...`, a function would
# have bash's errexit off inside it, and a failed check that is not its
# last command would be passed over.)
on_every_python() {
	local PY
	for PY in $(pythons); do
		echo "with $PY"
		"$@"
	done
}

# pysz N: the size of the allocation bytearray(N - 1) makes on $PY (or
# /usr/bin/python3): N, but N + 32 from CPython 3.15 on, whose bytearray
# keeps its bytes in a bytes object (32 bytes of header).
pysz() {
	local py=${PY:-/usr/bin/python3}
	if [ "${_pysz_py-}" != "$py" ]; then
		_pysz_py=$py
		_pysz_extra=$("$py" -c 'import sys; print(32 if sys.version_info >= (3, 15) else 0)')
	fi
	echo $(( $1 + _pysz_extra ))
}

# expect_pystack FILE SIZE EXPECTED: the Python stack of the allocation
# bytearray(SIZE - 1) made is EXPECTED (lines "function file:line", root
# first).
expect_pystack() {
	local got sz
	sz=$(pysz "$2")
	got=$(pystack_of "$1" "(\$3 == \"alloc\" || \$3 == \"move\") && (\$6 == \"size=$sz\" || \$7 == \"size=$sz\")")
	[ "$got" = "$3" ] || { printf 'size %s with %s:\n--- got\n%s\n--- expected\n%s\n' "$2" "$PY" "$got" "$3"; return 1; }
}

# vlimit KB: "ulimit -v KB;", the prefix that bounds a command's memory, or
# nothing under AddressSanitizer (its shadow memory alone takes terabytes of
# address space)
vlimit() {
	ldd "$BIN/memray-tree" 2> /dev/null | grep -q libasan || echo "ulimit -v $1;"
}
