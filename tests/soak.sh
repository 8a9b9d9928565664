#!/bin/bash
# soak.sh quick|full [BUILD] - real programs no one here wrote run the same
# with and without memray-record (same output, same exit status), and their
# streams read without error.
#
# quick (in make check): CPython's test_json, compileall of the json
# package, gcc -O2 -c on a generated C file of 300 functions, an sqlite3
# script, git init/add/commit/log/gc on a scratch repository.
# full (make soak): CPython's test_json test_threading test_subprocess
# test_asyncio test_re test_pickle, compileall of a copy of the whole
# stdlib, a C file of 5000 functions, bigger sqlite3 and git runs.
# Both then read damaged recordings with every reader (tests/mutate.py):
# 30 of them quick, 900 full.
#
# Prints "ok N - what" / "not ok N - what" and exits 1 if any failed.
set -u
mode=${1:-quick}
BUILD=$(cd "${2:-$(dirname "$0")/../build}" && pwd) || exit 2
REC=$BUILD/bin/memray-record STAT=$BUILD/bin/memray-stat
tmp=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }

# same NAME FILTER -- COMMAND...: runs COMMAND in $tmp/NAME.plain and
# $tmp/NAME.rec (fresh copies of $tmp/NAME.seed if it exists), the second
# under memray-record --follow-fork; FILTER (a sed script) is applied to
# both outputs before they are compared.
same() {
	local name=$1 filter=$2
	shift 3
	local d
	for d in plain rec; do
		rm -rf "$tmp/$name.$d"
		if [ -d "$tmp/$name.seed" ]; then cp -a "$tmp/$name.seed" "$tmp/$name.$d"; else mkdir "$tmp/$name.$d"; fi
	done
	(cd "$tmp/$name.plain" && "$@") > "$tmp/$name.plain.out" 2>&1
	local s1=$?
	(cd "$tmp/$name.rec" && "$REC" -q -o "$tmp/$name.bin" --follow-fork -- "$@") > "$tmp/$name.rec.out" 2>&1
	local s2=$?
	sed -i "$filter" "$tmp/$name.plain.out" "$tmp/$name.rec.out"
	if [ $s1 != $s2 ]; then
		bad "$name: exit status $s1 plain, $s2 recorded" "$(tail -3 "$tmp/$name.rec.out")"
		return
	fi
	if ! diff -q "$tmp/$name.plain.out" "$tmp/$name.rec.out" > /dev/null; then
		bad "$name: output differs" "$(diff "$tmp/$name.plain.out" "$tmp/$name.rec.out" | head -5)"
		return
	fi
	local st
	if ! st=$("$STAT" "$tmp/$name.bin" 2>&1); then
		bad "$name: the stream does not read" "$(echo "$st" | tail -2)"
		return
	fi
	ok "$name: same output and status ($s1), stream reads: $(echo "$st" | sed -n 's/^allocations: *//p') allocations"
}

# --- CPython's regression tests --------------------------------------------
PY=/usr/bin/python3
if ! $PY -c 'import test.test_json' 2> /dev/null; then
	for p in /root/.pyenv/versions/3.11.*/bin/python3; do [ -x "$p" ] && PY=$p; done
fi
if $PY -c 'import test.test_json' 2> /dev/null; then
	tests="test_json"
	[ "$mode" = full ] && tests="test_json test_threading test_subprocess test_asyncio test_re test_pickle"
	# timings and the random seed vary from run to run: compare the verdicts.
	# The soft limit of open files as most systems set it (1024, the hard
	# one higher): the stream's descriptor then sits above it, where
	# test_subprocess's checks of inherited descriptors do not look (with
	# both limits equal it cannot, and they see it: memray-record(1)).
	hard=$(ulimit -Hn)
	if [ "$hard" = unlimited ] || [ "$hard" -ge 1088 ]; then lim=1024; else lim=$(ulimit -Sn); fi
	same regrtest '/Tests result\|^[0-9]* tests\? OK\|^All [0-9]* tests OK/!d' -- \
		bash -c 'ulimit -Sn "$0" && exec "$@"' "$lim" $PY -m test -j1 $tests
else
	bad "regrtest: no Python with CPython's test package (Debian: libpython3.11-testsuite)"
fi

# --- compileall --------------------------------------------------------------
stdlib=$($PY -c 'import json, os; print(os.path.dirname(os.path.dirname(json.__file__)))')
mkdir -p "$tmp/compileall.seed"
if [ "$mode" = full ]; then
	for d in json email asyncio http xml unittest logging; do cp -r "$stdlib/$d" "$tmp/compileall.seed/"; done
	cp "$stdlib"/*.py "$tmp/compileall.seed/"
else
	cp -r "$stdlib/json" "$tmp/compileall.seed/"
fi
find "$tmp/compileall.seed" -name __pycache__ -prune -exec rm -rf {} +
same compileall 's/x/x/' -- $PY -m compileall -q .
if [ "$(find "$tmp/compileall.plain" -name '*.pyc' | wc -l)" = "$(find "$tmp/compileall.rec" -name '*.pyc' | wc -l)" ]; then
	ok "compileall: as many .pyc files recorded as not"
else
	bad "compileall: a different number of .pyc files"
fi

# --- gcc -O2 -c on a large C file ---------------------------------------------
nf=300
[ "$mode" = full ] && nf=5000
mkdir -p "$tmp/gcc.seed"
awk -v n=$nf 'BEGIN {
	print "#include <string.h>\n#include <stdlib.h>"
	for (i = 0; i < n; i++) {
		printf "struct s%d { int a[%d]; double d; char *p; };\n", i, i % 17 + 1
		printf "int f%d(int x, struct s%d *s) { int t = 0; for (int k = 0; k < %d; k++) t += s->a[k] * x + (int)s->d; if (t %% 3) t = (int)strlen(s->p ? s->p : \"\"); return t + %d; }\n", i, i, i % 17 + 1, i
	}
}' > "$tmp/gcc.seed/big.c"
same gcc 's/x/x/' -- gcc -O2 -c big.c -o big.o
if cmp -s "$tmp/gcc.plain/big.o" "$tmp/gcc.rec/big.o"; then
	ok "gcc: the object file is the same byte for byte"
else
	bad "gcc: the object files differ"
fi

# --- sqlite3 -------------------------------------------------------------------
rows=100000
[ "$mode" = full ] && rows=1000000
if command -v sqlite3 > /dev/null; then
	same sqlite3 's/x/x/' -- sqlite3 db.sqlite "
		CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);
		WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $rows)
		INSERT INTO t SELECT i, printf('name-%d', i % 977), i * 0.5 FROM c;
		CREATE INDEX tn ON t(name);
		SELECT name, count(*), sum(v) FROM t GROUP BY name ORDER BY name LIMIT 5;
		SELECT count(*), max(v) FROM t WHERE name LIKE 'name-9%';"
else
	bad "sqlite3: not installed (Debian package sqlite3)"
fi

# --- git --------------------------------------------------------------------------
files=200
[ "$mode" = full ] && files=3000
export GIT_AUTHOR_NAME=soak GIT_AUTHOR_EMAIL=soak@example.org GIT_COMMITTER_NAME=soak \
	GIT_COMMITTER_EMAIL=soak@example.org GIT_AUTHOR_DATE='2026-01-01T00:00:00Z' \
	GIT_COMMITTER_DATE='2026-01-01T00:00:00Z' GIT_CONFIG_NOSYSTEM=1 HOME=$tmp
cat > "$tmp/git.sh" <<GITEOF
set -e
git init -q -b main .
for i in \$(seq 1 $files); do echo "file \$i \$((i * 7919 % 1000))" > "f\$i.txt"; done
git add .
git commit -q -m first
for i in \$(seq 1 $files 3); do echo change >> "f\$i.txt"; done
git commit -q -am second
git log --stat --format='%H %s' | tail -n 5
git gc -q
git count-objects -v | grep -v size
GITEOF
same git 's/x/x/' -- sh "$tmp/git.sh"

# --- the readers on damaged recordings (tests/mutate.py) --------------------------
rounds=10
[ "$mode" = full ] && rounds=300
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$tmp/mutate"
"$REC" -q -o "$tmp/mutate/native.bin" "$BUILD/fixtures/allocs" chain > /dev/null 2>&1
"$REC" -q -o "$tmp/mutate/python.bin" $PY "$here/fixtures/py/names.py" > /dev/null 2>&1
"$REC" -q -o "$tmp/mutate/follow.bin" --follow-fork "$BUILD/fixtures/allocs" forkmany 3 > /dev/null 2>&1
if out=$(python3 "$here/mutate.py" "$BUILD" "$tmp/mutate" $rounds 2>&1); then
	ok "mutate: $(echo "$out" | tail -1 | sed 's/^ok [0-9]* - //')"
else
	bad "mutate: a reader broke a rule on a damaged recording" "$(echo "$out" | grep '^not ok' | head -5)"
fi

echo "1..$n"
[ $failed = 0 ]
