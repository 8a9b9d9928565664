# Shared set-up for every bats file: tool paths, fixtures, a temp dir.
load /usr/lib/bats/bats-support/load.bash
load /usr/lib/bats/bats-assert/load.bash

: "${MEMRAY_BUILD:=$BATS_TEST_DIRNAME/../../build}"
BIN=$MEMRAY_BUILD/bin
FIX=$MEMRAY_BUILD/fixtures
export LC_ALL=C PATH="$BIN:$PATH"

setup() {
	cd "$BATS_TEST_TMPDIR"
}

# dump FILE: the stream's records as text (memray-stat --dump).
dump() {
	memray-stat --dump "$@"
}

# events ALLOCATOR FILE: the dump lines of allocation events by ALLOCATOR.
events() {
	memray-stat --dump "$2" | awk -v a="$1" '($3 == "alloc" || $3 == "move") && $4 == a'
}

# field NAME: from a dump line on stdin, the value of NAME=...
field() {
	sed -n "s/.* $1=\([^ ]*\).*/\1/p"
}
