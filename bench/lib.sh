# shellcheck shell=bash
# lib.sh - helpers shared by the bench scripts that measure issue 18's
# targets (python.sh, streams.sh, threads.sh, fold.sh, summary.sh).
# Sourced, not run.  The sourcing script sets BENCH_NAME first (for
# messages) and calls bench_tmp to get $tmp, removed on exit.
#
# Results: when BENCH_RESULTS names a file, bench_result appends one
# "KEY VALUE" line to it; bench/summary.sh reads them into its table.

# die MESSAGE: report on stderr and exit 1
die() { echo "${BENCH_NAME:-bench}: $*" >&2; exit 1; }

# bench_tmp: create $tmp, a directory removed when the script exits
bench_tmp() {
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/${BENCH_NAME:-bench}.XXXXXX") || die "mktemp failed"
	trap 'rm -rf "$tmp"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# bench_result KEY VALUE: record a measure for bench/summary.sh
bench_result() {
	[ -n "${BENCH_RESULTS:-}" ] || return 0
	echo "$1 $2" >>"$BENCH_RESULTS" || die "cannot write $BENCH_RESULTS"
}

# positive_int NAME VALUE: die unless VALUE is a positive integer
positive_int() {
	case $2 in ''|*[!0-9]*|0) die "$1 must be a positive integer" ;; esac
}

# positive_num NAME VALUE: die unless VALUE is a positive decimal number
positive_num() {
	awk -v v="$2" 'BEGIN { exit !(v ~ /^([0-9]+\.?[0-9]*|\.[0-9]+)$/ && v + 0 > 0) }' ||
		die "$1 must be a positive number"
}

# real_python: set PY to the interpreter in $PYTHON (default /usr/bin/python3)
# by its resolved path, so that memray-record starts Python itself and not a
# wrapper script such as a pyenv shim
real_python() {
	local arg=${PYTHON:-/usr/bin/python3}
	case $arg in */*) ;; *) arg=$(command -v "$arg") || die "PYTHON: '$PYTHON' not found" ;; esac
	PY=$(readlink -f "$arg") || die "cannot resolve '$arg'"
	[ -x "$PY" ] || die "'$arg' is not an executable"
	[ "$(head -c 4 "$PY" | od -An -c | tr -d ' ')" = '177ELF' ] ||
		die "'$arg' resolves to $PY, which is not an ELF executable (a wrapper script?)"
}

# median FILE: median of the numbers in FILE (mean of the middle two if even)
median() {
	sort -n "$1" | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2];
		      else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B [FMT]: A / B, formatted (default %.2f)
ratio() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { printf f "\n", a / b }'; }

fsize() { wc -c <"$1" | tr -d ' '; }

# run_timed FILE CMD...: run CMD (output to $tmp/run.out and $tmp/run.err),
# append its wall time in ns to FILE; a failing run ends the script
run_timed() {
	local file=$1 start end rc
	shift
	start=$(date +%s%N)
	"$@" >"$tmp/run.out" 2>"$tmp/run.err"
	rc=$?
	end=$(date +%s%N)
	if [ $rc -ne 0 ]; then
		echo "${BENCH_NAME:-bench}: run failed (exit status $rc): $*" >&2
		sed 's/^/  | /' "$tmp/run.err" >&2
		exit 1
	fi
	echo $((end - start)) >>"$file"
}

# have_callgrind: true when valgrind is installed and BENCH_CALLGRIND is not 0
have_callgrind() {
	[ "${BENCH_CALLGRIND:-1}" != 0 ] && command -v valgrind >/dev/null
}

# callgrind_ir TAG CMD...: print the instructions that CMD and every process
# it starts execute (callgrind --trace-children=yes, summed over processes)
callgrind_ir() {
	local tag=$1
	shift
	rm -f "$tmp"/cg."$tag".*
	valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$tmp/cg.$tag.%p" \
		"$@" >"$tmp/cg.out" 2>"$tmp/cg.err" || {
		echo "${BENCH_NAME:-bench}: valgrind failed on: $*" >&2
		grep -v '^==' "$tmp/cg.err" | sed 's/^/  | /' >&2
		exit 1
	}
	grep -h '^summary:' "$tmp"/cg."$tag".* | awk '{ s += $2 } END { printf "%.0f\n", s }'
	rm -f "$tmp"/cg."$tag".*
}

# heaptrack_file DIR: the one file heaptrack wrote into DIR (it appends .zst
# or .gz to the name given with -o)
heaptrack_file() {
	local f
	f=$(ls "$1"/* 2>/dev/null | head -n1)
	[ -n "$f" ] && [ -s "$f" ] || die "heaptrack wrote no output in $1"
	echo "$f"
}

# stat_events FILE: set EVENTS to a recording's allocations + frees
# (memray-stat), no subshell so that die ends the script
stat_events() {
	"$STAT" "$1" >"$tmp/stat.out" 2>"$tmp/stat.err" || {
		sed 's/^/  | /' "$tmp/stat.err" >&2; die "memray-stat failed on $1"; }
	local a f
	a=$(awk '$1 == "allocations:" { print $2 }' "$tmp/stat.out")
	f=$(awk '$1 == "frees:" { print $2 }' "$tmp/stat.out")
	case "$a$f" in ''|*[!0-9]*) die "cannot read allocations/frees from memray-stat $1" ;; esac
	EVENTS=$((a + f))
}

# heaptrack_note: why heaptrack has no instruction counts
HEAPTRACK_CG_NOTE="heaptrack records nothing under valgrind (its preload stays silent: 0 allocations), so it has no instruction count"
