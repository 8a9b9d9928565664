#!/bin/sh
# The Python tests on the CPythons Debian 12 lacks (3.13, 3.14, 3.15, and
# numpy built for them), in a Debian sid chroot built here once and reused.
#
#   tests/sid.sh build        make build/sid (debootstrap, minbase), if needed
#   tests/sid.sh run          build if needed, then copy the tree in, build it
#                             with sid's compiler and run the Python tests on
#                             sid's interpreters; TAP on stdout
#   tests/sid.sh bench        bench/python.sh on each of sid's interpreters
#                             (MEMRAY_SID_PYTHONS: some of them)
#   tests/sid.sh shell        a shell in the chroot, /proc mounted
#
# sid's C library is newer than this machine's, so its interpreters run only
# inside the chroot, with /proc mounted (the tracker and the tools read
# /proc/self/maps). The mirror is the one this machine's apt uses (or
# $MEMRAY_SID_MIRROR); it serves a dated snapshot, so apt inside is told not
# to check the Release file's Valid-Until. When the chroot cannot be made
# (not root, no debootstrap, no network), `run` says so in one TAP line
# marked skip, and `build` exits 77.
set -u
cd "$(dirname "$0")/.."
TOP=$(pwd)
ROOT=${MEMRAY_SID:-$TOP/build/sid}
READY=$ROOT/.memray-c-ready
PYS="/usr/bin/python3.13 /usr/bin/python3.14 /usr/bin/python3.15"
# What the Python tests need inside: the interpreters and numpy, headers
# for the C extension fixtures, the build's libraries, bats, the tools
# the tests call, and Debian's build tools and venv for the wheel.
PKGS="python3.13 python3.14 python3.15 python3-numpy python3-pytest
libpython3.13-dev libpython3.14-dev libpython3.15-dev
gcc g++ make libc6-dev libunwind-dev libarchive-dev libdw-dev libelf-dev zlib1g-dev libzstd-dev
bats bats-support bats-assert binutils gdb procps util-linux gzip zstd xz-utils git bc time valgrind
python3-setuptools python3-wheel python3-pip python3.13-venv python3.14-venv python3.15-venv unzip"

say() { echo "sid: $*" >&2; }

mirror() {
	if [ -n "${MEMRAY_SID_MIRROR:-}" ]; then
		echo "$MEMRAY_SID_MIRROR"
		return
	fi
	# The first Debian archive this machine's apt reads (deb822 or one-line).
	{
		cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
			awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }'
		grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			sed 's/\[[^]]*\]//' | awk '{ print $2 }'
	} | grep -v -- '-security' | grep '/debian/*$' | head -1
}

cannot() {
	say "$1"
	return 77
}

build() {
	want=$(echo $PKGS)
	if [ -f "$READY" ]; then
		[ "$(cat "$READY")" = "$want" ] && return 0
		# the list changed since the chroot was made: add what is new
		in_root sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $want" \
			>> "$ROOT.log" 2>&1 || { cannot "apt-get install in the chroot failed (log: $ROOT.log)"; return; }
		echo "$want" > "$READY"
		return 0
	fi
	[ "$(id -u)" -eq 0 ] || { cannot "building the chroot needs root"; return; }
	command -v debootstrap > /dev/null ||
		{ cannot "debootstrap is missing (Debian: debootstrap)"; return; }
	m=$(mirror)
	[ -n "$m" ] || { cannot "no Debian mirror in /etc/apt (set MEMRAY_SID_MIRROR)"; return; }
	unmount_all || { cannot "something is still mounted under $ROOT"; return; }
	rm -rf "$ROOT"
	mkdir -p "$ROOT"
	say "debootstrap sid into $ROOT (once; about 1.3 GB with the packages)"
	debootstrap --variant=minbase sid "$ROOT" "$m" > "$ROOT.log" 2>&1 ||
		{ tail -5 "$ROOT.log" >&2; cannot "debootstrap failed (log: $ROOT.log)"; return; }
	echo 'Acquire::Check-Valid-Until "false";' > "$ROOT/etc/apt/apt.conf.d/99memray-c"
	echo 'APT::Install-Recommends "false";' >> "$ROOT/etc/apt/apt.conf.d/99memray-c"
	cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2> /dev/null
	if ! in_root sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $want" \
		>> "$ROOT.log" 2>&1; then
		tail -5 "$ROOT.log" >&2
		cannot "apt-get install in the chroot failed (log: $ROOT.log)"
		return
	fi
	echo "$want" > "$READY"
}

# unmount_all: nothing of the host stays mounted under the chroot (a run
# that was killed can leave /proc there), so that removing it is safe.
unmount_all() {
	for m in $(awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
		umount "$m" 2> /dev/null || umount -l "$m" 2> /dev/null
	done
	! awk -v r="$ROOT/" 'index($2, r) == 1 { found = 1 } END { exit !found }' /proc/mounts
}

# in_root CMD...: runs CMD in the chroot with /proc mounted for its length.
in_root() {
	mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc" || return 1
	chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
		HOME=/root LANG=C.UTF-8 TERM=dumb "$@"
	rc=$?
	umount "$ROOT/proc" 2> /dev/null
	return $rc
}

# The tests that run on sid's interpreters: every Python test on all three
# (MEMRAY_PYTHONS), then those written for one Python and tagged py3 (the
# pytest plugin, attaching, multiprocessing) on 3.14 and 3.15 too
# (MEMRAY_PY3; sid's python3 is 3.13).
SID_ALL="tests/bats/60-python.bats tests/bats/61-python-versions.bats tests/bats/97-package.bats"
SID_ONE="tests/bats/93-pytest.bats tests/bats/89-attach.bats tests/bats/55-follow-fork.bats"
# MEMRAY_SID_TESTS, when set: only those files, on the three (for work on them).
if [ -n "${MEMRAY_SID_TESTS:-}" ]; then
	SID_ALL=$MEMRAY_SID_TESTS
	SID_ONE=
fi

# sync: the tree as git sees it (tracked and new files) into /src of the
# chroot, fresh each time.
sync() {
	rm -rf "$ROOT/src"
	mkdir -p "$ROOT/src"
	git ls-files -co --exclude-standard -z | xargs -0 tar cf - | tar xf - -C "$ROOT/src"
}

run() {
	build
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "1..1"
		echo "ok 1 sid's CPython 3.13, 3.14 and 3.15 # skip the sid chroot could not be made (tests/sid.sh build says why)"
		return 0
	fi
	sync || return 1
	in_root sh -c '
		cd /src || exit 1
		make -j2 all fixtures > /tmp/build.log 2>&1 || { tail -20 /tmp/build.log >&2; exit 1; }
		export MEMRAY_BUILD=/src/build MEMRAY_PYTHONS="'"$PYS"'"
		bats --tap '"$SID_ALL"' | sed "s/^\(not ok\|ok\) [0-9]* /\1 - sid: /"
		for py in '"${SID_ONE:+/usr/bin/python3.14 /usr/bin/python3.15}"'; do
			MEMRAY_PY3=$py bats --tap --filter-tags py3 '"$SID_ONE"' |
				sed "s,^\(not ok\|ok\) [0-9]* ,\1 - sid $py: ,"
		done
	'
}

# bench: bench/python.sh on each of sid's interpreters (MEMRAY_SID_PYTHONS:
# some of them, e.g. /usr/bin/python3.14), with the BENCH_* settings it
# reads (BENCH_ROUNDS default 3) passed in. With BENCH_RESULTS set, each
# result is appended to that file with its key prefixed by
# "sid.pythonX.Y." (bench/summary.sh reads them).
bench() {
	build || return
	sync || return 1
	pys=${MEMRAY_SID_PYTHONS:-$PYS}
	set --
	for v in BENCH_PY_SCALE BENCH_CG_SCALE BENCH_PY_WORKLOADS BENCH_PY_MODES \
		BENCH_CALLGRIND BENCH_STARTUP_REPS BENCH_COMPILE_PKGS BENCH_CG_COMPILE_PKGS; do
		eval "val=\${$v:-}"
		[ -n "$val" ] && set -- "$@" "$v=$val"
	done
	rm -rf "$ROOT/tmp/bench-results" && mkdir -p "$ROOT/tmp/bench-results" || return 1
	in_root env "$@" BENCH_ROUNDS="${BENCH_ROUNDS:-3}" sh -c '
		cd /src && make -j2 all > /tmp/build.log 2>&1 || { tail -20 /tmp/build.log >&2; exit 1; }
		for py in '"$pys"'; do
			BENCH_RESULTS=/tmp/bench-results/${py##*/} PYTHON=$py bench/python.sh build || exit 1
		done
	' || return 1
	[ -n "${BENCH_RESULTS:-}" ] || return 0
	for f in "$ROOT"/tmp/bench-results/*; do
		[ -f "$f" ] || continue
		sed "s/^/sid.${f##*/}./" "$f" >> "$BENCH_RESULTS" || return 1
	done
}

case "${1:-}" in
build) build ;;
run) run ;;
bench) bench ;;
shell) build && in_root /bin/bash ;;
*) echo "usage: tests/sid.sh build|run|bench|shell" >&2; exit 2 ;;
esac
