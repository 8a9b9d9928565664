#!/usr/bin/env python3
"""mask-dump.py - the deterministic part of a recording, for comparing two.

usage: memray-stat --dump run.bin | bench/mask-dump.py [--raw-addr]

Two recordings of the same deterministic program (made with ASLR off,
setarch -R) differ in what the clock, the kernel and the tracker's own
build decide. This prints each record of memray-stat --dump with those
masked, so that the recordings of two builds of the tracker can be
compared with diff:

  - byte offsets (chunk boundaries follow the sampler's flushes);
  - pids, ppid and tids: renamed P1, P2... in order of appearance;
  - every time (header start_us, time_us) and the trailer's record count;
  - memory records, dropped whole: the sampler writes one per interval, so
    their number follows the clock (and rss is the kernel's);
  - the tracker's own module: its build id and segments (they are the
    build's), and its frames in stacks, printed as TRACKER;
  - module bases: stack frames are printed as module+offset instead, so
    that a tracker of another size, which shifts what is mapped after it,
    gives the same stacks;
  - block addresses: renamed A1, A2... per process in order of first
    appearance, which keeps which release matches which allocation and
    which address is reused (--raw-addr prints them as recorded).

Everything else (the command line, flags, strings, frames, stack nodes
and their ids, threads and names, every allocation and release with its
allocator, size, stack and thread, the trailer's counts) is compared as
written.
"""
import re
import sys

raw_addr = "--raw-addr" in sys.argv[1:]
pids = {}
mods = {}   # pid -> [(lo, hi, base, path)]
addrs = {}  # pid -> {addr: label}


def pid_name(p):
    return pids.setdefault(p, "P%d" % (len(pids) + 1))


def addr_name(pid, a):
    if raw_addr:
        return a
    t = addrs.setdefault(pid, {})
    return t.setdefault(a, "A%d" % (len(t) + 1))


def frame(pid, ip):
    a = int(ip, 16)
    for lo, hi, base, path in mods.get(pid, ()):
        if lo <= a < hi:
            if "libmemray-tracker" in path:
                return "TRACKER"
            return "%s+0x%x" % (path, a - base)
    return ip


for line in sys.stdin:
    m = re.match(r"(\d+) (\d+) (\S+)(.*)", line.rstrip("\n"))
    if not m:
        print(line, end="")
        continue
    _, pid, kind, rest = m.groups()
    p = pid_name(pid)
    if kind == "memory":
        continue
    if kind == "header":
        rest = re.sub(r" pid=\d+ ppid=\d+ start_us=\d+",
                      lambda _m: " pid=%s ppid=- start_us=-" % p, rest)
    elif kind == "module":
        path = re.search(r'path=\d+ "(.*)" base=', rest).group(1)
        base = int(re.search(r"base=0x([0-9a-f]+)", rest).group(1), 16)
        segs = re.search(r"segments=(\S*)", rest)
        for s in (segs.group(1).split(",") if segs and segs.group(1) else ()):
            off, size = re.match(r"0x([0-9a-f]+)\+0x([0-9a-f]+)", s).groups()
            lo = base + int(off, 16)
            mods.setdefault(pid, []).append((lo, lo + int(size, 16), base, path))
        rest = re.sub(r"base=0x[0-9a-f]+", "base=-", rest)
        if "libmemray-tracker" in path:
            rest = re.sub(r"build_id=\S+", "build_id=-", rest)
            rest = re.sub(r"segments=\S*", "segments=-", rest)
    elif kind == "node":
        rest = re.sub(r"ip=(0x[0-9a-f]+)", lambda n: "ip=" + frame(pid, n.group(1)), rest)
    elif kind == "thread":
        rest = re.sub(r"tid=\d+", "tid=-", rest)
    elif kind in ("trailer", "exec"):
        rest = re.sub(r"time_us=\d+", "time_us=-", rest)
        rest = re.sub(r"records=\d+", "records=-", rest)
    rest = re.sub(r"\b(addr|old)=(0x[0-9a-f]+)",
                  lambda n: "%s=%s" % (n.group(1), addr_name(pid, n.group(2))), rest)
    print(p, kind + rest)
