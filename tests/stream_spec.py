#!/usr/bin/env python3
"""stream_spec.py - a second reader of memray streams, written from
memray-stream(5) alone and sharing no code with lib/stream_read.c.

usage: stream_spec.py [--forms | --chunks] FILE

Prints every record with numeric fields the way `memray-stat --dump` does,
without its first column (the byte offset): events, nodes, Python frames,
thread switches, memory samples, signals, exec and trailer records.  Records
made of strings (header, string, thread, thread_name, module) are decoded
and checked but not printed.  With --forms it prints instead how many
records and bytes each record form took (ALLOC, ALLOC_SAME, FREE_AGED...)
and how many address fields named a released address;
with --chunks, how many chunks there are, how many of them joined, and the
longest payload.
The tests compare its output with memray-stat's: if the page and the C
reader disagree, one of the two is wrong.  Exit status 2 on a malformed
stream, naming the byte.
"""
import sys

TAGS = {1: "header", 2: "string", 3: "pyframe", 4: "node", 5: "pynode", 6: "thread",
        7: "thread_name", 8: "switch", 9: "module", 10: "unload", 11: "memory",
        12: "trailer", 13: "exec", 14: "signal", 15: "STRING_PREFIX", 16: "PYNODE_NEW",
        17: "PYNODE_NEXT", 18: "PYNODE_NEXT_NEW"}
FORMS = {0x20: "ALLOC", 0x40: "FREE", 0x60: "MOVE", 0x80: "ALLOC_SAME",
         0xa0: "FREE_AGED", 0xc0: "FREE_AGAIN", 0xe0: "MOVE_AGED"}
ALLOCATORS = [None, "malloc", "calloc", "realloc", "reallocarray", "posix_memalign",
              "aligned_alloc", "memalign", "valloc", "pvalloc", "mmap", "mremap",
              "free", "munmap"]
WINDOW = 16384
RELEASED = 16  # version 3: the latest released addresses an address may name
RECENT = 64    # version 3: the latest strings a string may begin as
RELEASED_NAMED = [0]  # address fields that named a released address
M64 = (1 << 64) - 1
SIGNALS = {1: "HUP", 2: "INT", 3: "QUIT", 4: "ILL", 5: "TRAP", 6: "ABRT", 7: "BUS",
           8: "FPE", 9: "KILL", 10: "USR1", 11: "SEGV", 12: "USR2", 13: "PIPE",
           14: "ALRM", 15: "TERM", 16: "STKFLT", 17: "CHLD", 18: "CONT", 19: "STOP",
           20: "TSTP", 21: "TTIN", 22: "TTOU", 23: "URG", 24: "XCPU", 25: "XFSZ",
           26: "VTALRM", 27: "PROF", 28: "WINCH", 29: "IO", 30: "PWR", 31: "SYS"}


class Corrupt(Exception):
    pass


class Image:
    """One program image's decoding state (memray-stream(5): IDS, registers)."""

    def __init__(self):
        self.addr = self.ip = 0
        self.stack = self.age = 0
        self.ring = {}
        self.allocs = 0
        self.nodes = self.frames = self.strings = self.threads = self.modules = 0
        self.thread = 0
        self.version = None
        self.time = 0
        self.alloc_addr = 0   # version 3: the allocation register
        self.released = []    # version 3: released addresses, latest last
        self.heap = 0
        self.strs = [b""]     # string values by id
        self.interval = self.page = 0


class Proc:
    def __init__(self, pid):
        self.pid = pid
        self.data = bytearray()
        self.pos = 0
        self.image = Image()
        self.seq = 0
        self.after_exec = False
        self.ended = False
        self.superseded = False  # a later stream of its pid began without its end


def varint(b, i):
    v = shift = 0
    for n in range(10):
        if i >= len(b):
            raise IndexError
        c = b[i]
        i += 1
        if n == 9 and c > 1:
            raise Corrupt("varint too long")
        v |= (c & 0x7f) << shift
        shift += 7
        if not c & 0x80:
            return v, i
    raise Corrupt("varint too long")


def unzigzag(u):
    return (u >> 1) ^ -(u & 1)


def string(b, i):
    n, i = varint(b, i)
    if n > 1 << 20:
        raise Corrupt("string too long")
    if i + n > len(b):
        raise IndexError
    return bytes(b[i:i + n]), i + n


def address(b, i, im, alloc=False):
    """An address field: against the address register, or in version 3
    an ALLOC's against the allocation register; sets that register."""
    reg = im.alloc_addr if alloc and im.version >= 3 else im.addr
    u, i = varint(b, i)
    if u & 1 == 0:
        reg = (reg + unzigzag(u >> 1) * 16) & M64
    elif u & 3 == 1:
        reg = (reg + unzigzag(u >> 2)) & M64
    elif u == 3:
        reg, i = varint(b, i)
    elif im.version >= 3:
        k = u >> 2
        if not 1 <= k <= min(RELEASED, len(im.released)):
            raise Corrupt("released address out of bounds")
        reg = im.released[-k]
        RELEASED_NAMED[0] += 1
    else:
        raise Corrupt("malformed address")
    if alloc and im.version >= 3:
        im.alloc_addr = reg
    else:
        im.addr = reg
    return reg, i


def release(im, addr):
    im.released.append(addr)
    del im.released[:-RELEASED]


def span(size):
    """Version 3: where a block after one of this size would start."""
    return max(32, (size + 23) & ~15 & M64)


def node_id(im, v):
    """A stack field: a node id, or in version 3 the latest node's id
    minus it."""
    if v >= im.nodes + 1:
        raise Corrupt("stack id out of bounds")
    return im.nodes - v if im.version >= 3 else v


def free_by_age(im, name, out):
    """A FREE of the block made im.age allocations ago."""
    if not 1 <= im.age <= min(WINDOW, im.allocs):
        raise Corrupt("free by age out of bounds")
    im.addr = im.ring[(im.allocs - im.age + 1) % WINDOW]
    release(im, im.addr)
    out.append("free %s addr=0x%x thread=%d" % (name, im.addr, im.thread))


def new_frame(b, i, im, out):
    """A Python frame's fields (PYFRAME, PYNODE_NEW*): the next frame id."""
    f, i = varint(b, i)
    fl, i = varint(b, i)
    line, i = varint(b, i)
    if f > im.strings or fl > im.strings or line >= 1 << 32:
        raise Corrupt("bad python frame")
    im.frames += 1
    out.append("pyframe id=%d function=%d file=%d line=%d" % (im.frames, f, fl, line))
    return i


def event(b, i, tag, im, out):
    """One event; returns the next index.  im is changed only by a whole
    record: the caller decodes a copy first (see record)."""
    form, a = tag & 0xe0, tag & 0x1f
    if form >= 0x80 and im.version < 2:
        raise Corrupt("unknown record tag")
    if not 1 <= a <= 13:
        raise Corrupt("unknown allocator")
    name = ALLOCATORS[a]
    if form in (0x20, 0x80):
        addr, i = address(b, i, im, alloc=True)
        size, i = varint(b, i)
        if form == 0x20:
            v, i = varint(b, i)
            im.stack = node_id(im, v)
        im.allocs += 1
        im.ring[im.allocs % WINDOW] = addr
        if im.version >= 3:
            im.addr = im.alloc_addr = (addr + span(size)) & M64
        out.append("alloc %s addr=0x%x size=%d stack=%d thread=%d" % (name, addr, size, im.stack, im.thread))
    elif form == 0x40:
        addr, i = address(b, i, im)
        line = "free %s addr=0x%x" % (name, addr)
        if a == 13:
            n, i = varint(b, i)
            line += " size=%d" % n
        release(im, addr)
        out.append(line + " thread=%d" % im.thread)
    elif form in (0xa0, 0xc0):
        if a == 13:
            raise Corrupt("munmap freed by age")
        if form == 0xa0:
            d, i = varint(b, i)
            im.age += unzigzag(d)
        free_by_age(im, name, out)
    elif form == 0xe0:
        if a == 11:
            raise Corrupt("mremap moved by age")
        age, i = varint(b, i)
        if not 1 <= age <= min(WINDOW, im.allocs):
            raise Corrupt("free by age out of bounds")
        old = im.addr = im.ring[(im.allocs - age + 1) % WINDOW]
        addr, i = address(b, i, im)
        size, i = varint(b, i)
        im.allocs += 1
        im.ring[im.allocs % WINDOW] = addr
        release(im, old)
        out.append("move %s old=0x%x addr=0x%x size=%d stack=%d thread=%d" %
                   (name, old, addr, size, im.stack, im.thread))
    elif form == 0x60:
        old, i = address(b, i, im)
        line = "move %s old=0x%x" % (name, old)
        if a == 11:
            n, i = varint(b, i)
            line += " old_size=%d" % n
        addr, i = address(b, i, im)
        size, i = varint(b, i)
        v, i = varint(b, i)
        im.stack = node_id(im, v)
        im.allocs += 1
        im.ring[im.allocs % WINDOW] = addr
        release(im, old)
        out.append(line + " addr=0x%x size=%d stack=%d thread=%d" % (addr, size, im.stack, im.thread))
    return i


def counts(b, i):
    vals = []
    for _ in range(5):
        v, i = varint(b, i)
        vals.append(v)
    return vals, i


def record(b, i, p, out):
    """Decodes the record at b[i:] into out (a list of lines); returns the
    next index.  Raises IndexError when the record is not all there yet."""
    im = p.image
    tag = b[i]
    i += 1
    if tag & 0xe0:
        if im.version is None:
            raise Corrupt("the stream does not start with a header record")
        return event(b, i, tag, im, out)
    if tag == 1:
        if im.version is not None:
            if not p.after_exec:
                raise Corrupt("a second header record")
            p.image = im = Image()
        ver, i = varint(b, i)
        if ver not in (1, 2, 3):
            raise Corrupt("unsupported format version")
        _, i = string(b, i)
        fields = []
        for _ in range(6):  # pid ppid start_us page_size flags interval_us
            v, i = varint(b, i)
            fields.append(v)
        im.page, im.interval = fields[3], fields[5]
        flags = fields[4]
        argc, i = varint(b, i)
        if argc > 65536:
            raise Corrupt("too many arguments")
        for _ in range(argc + 1):  # argv, exe
            _, i = string(b, i)
        if flags & 0x40:
            _, i = varint(b, i)
        if flags & 0x80:
            _, i = string(b, i)
            _, i = string(b, i)
        im.version = ver
        p.after_exec = False
        return i
    if im.version is None:
        raise Corrupt("the stream does not start with a header record")
    p.after_exec = False
    if tag >= 15 and im.version < 3:
        raise Corrupt("unknown record tag")
    if tag == 2:
        v, i = string(b, i)
        im.strings += 1
        im.strs.append(v)
    elif tag == 15:
        back, i = varint(b, i)
        keep, i = varint(b, i)
        if not 1 <= back <= min(im.strings, RECENT) or keep > 64:
            raise Corrupt("string prefix out of bounds")
        head = im.strs[im.strings + 1 - back][:keep]
        if len(head) < keep or 0 in head:
            raise Corrupt("string prefix out of bounds")
        rest, i = string(b, i)
        if keep + len(rest) > 1 << 20:
            raise Corrupt("string too long")
        im.strings += 1
        im.strs.append(head + rest)
    elif tag == 3:
        i = new_frame(b, i, im, out)
    elif tag in (4, 5, 16, 17, 18):
        ref = 1
        if tag not in (17, 18):  # PYNODE_NEXT*: under the node just before
            ref, i = varint(b, i)
        nid = im.nodes + 1
        if ref < 1 or ref > nid:
            raise Corrupt("bad parent reference")
        parent = nid - ref
        if tag == 4:
            d, i = varint(b, i)
            im.ip = (im.ip + unzigzag(d)) & M64
            out.append("node id=%d parent=%d ip=0x%x" % (nid, parent, im.ip))
        elif tag in (16, 18):  # PYNODE_NEW*: its frame defined with it
            i = new_frame(b, i, im, out)
            out.append("pynode id=%d parent=%d frame=%d" % (nid, parent, im.frames))
        else:
            fr, i = varint(b, i)
            out.append("pynode id=%d parent=%d frame=%d" % (nid, parent, fr))
        im.nodes = nid
    elif 0x13 <= tag <= 0x1f:  # FREE_NEAR: free() by age, dage in the tag
        d = tag - 0x13
        im.age += d - 6 if d < 6 else d - 5
        free_by_age(im, "free", out)
    elif tag == 6:
        _, i = varint(b, i)
        _, i = string(b, i)
        im.threads += 1
        im.thread = im.threads
    elif tag == 7:
        _, i = varint(b, i)
        _, i = string(b, i)
    elif tag == 8:
        t, i = varint(b, i)
        im.thread = t
        out.append("switch thread=%d" % t)
    elif tag == 9:
        _, i = varint(b, i)
        _, i = varint(b, i)
        n, i = varint(b, i)
        if n > 64 or i + n > len(b):
            raise IndexError if i + n > len(b) else Corrupt("build-id too long")
        i += n
        nsegs, i = varint(b, i)
        if nsegs > 64:
            raise Corrupt("too many segments")
        for _ in range(3 * nsegs):
            _, i = varint(b, i)
        im.modules += 1
    elif tag == 10:
        _, i = varint(b, i)
    elif tag == 11:
        dt, i = varint(b, i)
        rss, i = varint(b, i)
        heap, i = varint(b, i)
        if im.version >= 3:  # dt against the interval, rss in pages or bytes, heap's change
            dt = im.interval + unzigzag(dt)
            rss = rss >> 1 if rss & 1 else (rss >> 1) * im.page
            heap = im.heap + unzigzag(heap)
        im.time = (im.time + dt) & M64
        im.heap = heap & M64
        out.append("memory time_us=%d rss=%d heap=%d" % (im.time, rss, im.heap))
    elif tag in (12, 13):
        (t, recs, allocs, frees, nbytes), i = counts(b, i)
        out.append("%s time_us=%d records=%d allocs=%d frees=%d bytes=%d" %
                   (TAGS[tag], t, recs, allocs, frees, nbytes))
        if tag == 13:
            p.after_exec = True
        else:
            p.ended = True
    elif tag == 14:
        s, i = varint(b, i)
        out.append("signal signal=%d name=SIG%s" % (s, SIGNALS.get(s, str(s))))
    else:
        raise Corrupt("unknown record tag")
    return i


def decode(p, forms, tally, w):
    """Decodes pid p's whole record stream."""
    b = p.data
    while p.pos < len(b):
        if p.ended:
            raise Corrupt("data after the trailer")
        out = []
        start = p.pos
        try:
            p.pos = record(b, p.pos, p, out)
        except IndexError:
            if p.superseded:
                return
            raise Corrupt("pid %d's last record is incomplete" % p.pid)
        if forms:
            t = b[start]
            k = FORMS.get(t & 0xe0) if t & 0xe0 else "FREE_NEAR" if t >= 0x13 else TAGS.get(t)
            c = tally.setdefault(k, [0, 0])
            c[0] += 1
            c[1] += p.pos - start
        else:
            for line in out:
                w("%d %s\n" % (p.pid, line))
    if not p.ended and not p.superseded:
        raise Corrupt("pid %d's stream has no trailer" % p.pid)


def main():
    args = sys.argv[1:]
    forms = args[:1] == ["--forms"]
    chunks = args[:1] == ["--chunks"]
    if forms or chunks:
        args = args[1:]
    if len(args) != 1:
        sys.exit("usage: stream_spec.py [--forms | --chunks] FILE")
    nchunks = joined = longest = 0
    data = open(args[0], "rb").read()
    procs = {}
    order = []
    tally = {}
    off = 0
    w = sys.stdout.write
    try:
        # the chunks first: each pid's payloads joined (CHUNKS)
        while off < len(data):
            if data[off:off + 4] != b"MRYC" or off + 12 > len(data):
                raise Corrupt("bad chunk header at byte %d" % off)
            pid = int.from_bytes(data[off + 4:off + 8], "little")
            n = int.from_bytes(data[off + 8:off + 10], "little")
            seq = int.from_bytes(data[off + 10:off + 12], "little")
            units = 1 if n <= 4084 else n // 4084  # a joined chunk counts as many
            if n == 0 or (n > 4084 and (n % 4084 or units > 16)) or off + 12 + n > len(data):
                raise Corrupt("bad chunk length at byte %d" % off)
            p = procs.get(pid)
            if p is None:
                p = procs[pid] = Proc(pid)
                order.append(p)
            if seq == 0 and p.seq != 0:
                # a new record stream of the same pid: after the earlier
                # one's TRAILER a new process; without it, the same process
                # in a new image whose exec was not recorded, and the
                # earlier stream stops where this chunk begins
                p.superseded = True
                p = procs[pid] = Proc(pid)
                order.append(p)
            if seq != p.seq:
                raise Corrupt("chunk %d of pid %d follows chunk %d" % (seq, pid, p.seq - 1))
            p.seq = (p.seq + units) & 0xffff
            nchunks += 1
            joined += units > 1
            longest = max(longest, n)
            p.data += data[off + 12:off + 12 + n]
            off += 12 + n
        # then each pid's records, pid by pid in order of first appearance
        for p in order:
            decode(p, forms or chunks, tally, w)
    except Corrupt as e:
        sys.stdout.flush()
        sys.stderr.write("stream_spec.py: %s: %s\n" % (args[0], e))
        sys.exit(2)
    if chunks:
        w("chunks %d joined %d longest %d\n" % (nchunks, joined, longest))
    elif forms:
        total = sum(c[1] for c in tally.values())
        for k, (n, nb) in sorted(tally.items(), key=lambda kv: -kv[1][1]):
            w("%-12s %9d records %10d bytes %6.2f each %5.1f%%\n" % (k, n, nb, nb / n, 100.0 * nb / total))
        w("released %d addresses named\n" % RELEASED_NAMED[0])


if __name__ == "__main__":
    main()
