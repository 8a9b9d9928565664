# Shared set-up for every bats file: tool paths, fixtures, a temp dir.
bats_require_minimum_version 1.5.0
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

# events ALLOCATOR FILE [SIZE]: the dump lines of allocation events by
# ALLOCATOR (of SIZE bytes when given).
events() {
	memray-stat --dump "$2" | awk -v a="$1" -v s="size=$3" \
		'($3 == "alloc" || $3 == "move") && $4 == a && (s == "size=" || $6 == s || $8 == s)'
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
