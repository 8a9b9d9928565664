#!/bin/sh
# same-recording.sh - records a set of deterministic runs with ASLR off and
# writes each one's masked dump (bench/mask-dump.py says what is masked)
# into OUTDIR, so that the recordings of two builds of the tracker can be
# compared: `diff -r before/ after/`.
#
# usage: bench/same-recording.sh OUTDIR [BUILD]
set -e
out=$1
B=$(cd "${2:-build}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
FIX=$B/fixtures
PYFIX=$here/../tests/fixtures/py
PY=/usr/bin/python3
export PYTHONHASHSEED=0 # set iteration order, the same in every run
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

rec() { # name, memray-record options and command
	name=$1
	shift
	setarch -R "$B/bin/memray-record" -q -f -o "$work/$name.bin" "$@" >/dev/null 2>&1 || true
	"$B/bin/memray-stat" --dump "$work/$name.bin" 2>&1 | "$here/mask-dump.py" >"$out/$name.txt"
	"$B/bin/memray-stat" --dump "$work/$name.bin" 2>&1 | "$here/mask-dump.py" --raw-addr >"$out/$name.raw.txt"
}

rec c-thread "$FIX/allocs" thread
rec c-chain "$FIX/allocs" chain
rec c-realloc "$FIX/allocs" realloc-move
rec c-mremap "$FIX/allocs" mremap
rec c-munmap "$FIX/allocs" munmap-partial
rec c-dlopen "$FIX/allocs" dlopen "$FIX/libdlopened.so"
rec c-cxx "$FIX/cxx_new"
rec c-fork "$FIX/allocs" fork
rec c-follow-fork --follow-fork "$FIX/allocs" fork
rec c-exec-self "$FIX/allocs" exec-self
rec c-sample --sample-bytes 32K --seed 1 "$FIX/sampling"
rec py-chain "$PY" "$PYFIX/chain.py"
rec py-buffers "$PY" "$PYFIX/buffers.py" 20
rec py-native --native "$PY" "$PYFIX/hybrid.py"
rec py-native-chain --native "$PY" "$PYFIX/chain.py"
rec py-sample --sample-bytes 32K --seed 5 "$PY" "$PYFIX/sampling.py"
rec py-pyalloc --trace-python-allocators "$PY" "$PYFIX/chain.py"
