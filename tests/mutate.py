#!/usr/bin/env python3
"""mutate.py BUILD SEEDS_DIR ROUNDS - the mutation fuzz of the readers.

Each seed recording in SEEDS_DIR (*.bin) is damaged ROUNDS times, each
time in one random way (bytes flipped, set to 0 or 0xff, a range cut out,
repeated or moved, the file truncated, a chunk header's fields changed,
the whole gzip- or zstd-compressed and then damaged), and every reader
mode reads the result. Each must end by itself within 20 s, with exit
status 0 (what it read was still a stream) or 2 (damage, said on stderr,
naming the file), never by a signal or a sanitizer's report; a folded
output is then read by the collapsed-stack tools the same way.

Prints "ok N - ..." / "not ok N - ..." per mode and a count; exits 1 if any
read broke a rule, keeping the input in SEEDS_DIR/broken/. Deterministic
for a seed (MUTATE_SEED, default 1).
"""
import gzip
import os
import random
import shutil
import subprocess
import sys


def mutate(data, rng):
    b = bytearray(data)
    how = rng.randrange(9)
    if not b:
        return bytes(b), "empty"
    if how == 0:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b), "bits flipped"
    if how == 1:
        i = rng.randrange(len(b))
        b[i:i + rng.randint(1, 16)] = bytes([rng.choice((0, 0xff))]) * len(b[i:i + 16])
        return bytes(b)[:len(data)], "bytes set"
    if how == 2:
        i = rng.randrange(len(b))
        del b[i:i + rng.randint(1, 4096)]
        return bytes(b), "range cut out"
    if how == 3:
        i = rng.randrange(len(b))
        k = rng.randint(1, 4096)
        b[i:i] = b[i:i + k]
        return bytes(b), "range repeated"
    if how == 4:
        return bytes(b[:rng.randrange(len(b))]), "truncated"
    if how == 5:
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        k = rng.randint(1, 4096)
        piece = b[i:i + k]
        del b[i:i + k]
        b[j:j] = piece
        return bytes(b), "range moved"
    if how == 6:
        # a chunk header's pid, length or sequence number changed
        starts = [i for i in range(0, len(b) - 12) if b[i:i + 4] == b"MRYC"]
        if starts:
            i = rng.choice(starts) + rng.choice((4, 8, 10))
            b[i] = rng.randrange(256)
        return bytes(b), "chunk header changed"
    if how == 7:
        z = bytearray(gzip.compress(bytes(b)))
        z[rng.randrange(10, max(11, len(z)))] ^= 0xff
        return bytes(z), "gzip, damaged"
    big = bytes(b) * rng.randint(2, 3)
    return big, "stream repeated"


def main():
    build, seeds, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(int(os.environ.get("MUTATE_SEED", "1")))
    bin_ = os.path.join(build, "bin")
    modes = [
        ["memray-stat"], ["memray-stat", "--json"], ["memray-stat", "--dump"],
        ["memray-stat", "--by-function"], ["memray-fold"], ["memray-fold", "-m", "peak"],
        ["memray-fold", "-m", "leaked", "--temporal"], ["memray-fold", "--format", "pprof"],
        ["memray-fold", "--format", "speedscope"], ["memray-leaks"],
    ]
    folded_tools = [["memray-flame"], ["memray-tree"]]
    broken = os.path.join(seeds, "broken")
    files = sorted(f for f in os.listdir(seeds) if f.endswith(".bin"))
    n = bad = reads = 0
    work = os.path.join(seeds, "mutant.bin")
    folded = os.path.join(seeds, "mutant.txt")
    for f in files:
        data = open(os.path.join(seeds, f), "rb").read()
        for r in range(rounds):
            mutant, how = mutate(data, rng)
            open(work, "wb").write(mutant)
            for mode in modes + folded_tools:
                on_folded = mode in folded_tools
                if on_folded and not os.path.exists(folded):
                    continue
                cmd = [os.path.join(bin_, mode[0])] + mode[1:] + [folded if on_folded else work]
                out = open(folded, "wb") if mode == ["memray-fold"] else subprocess.DEVNULL
                try:
                    p = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, timeout=20)
                    rc, err = p.returncode, p.stderr.decode(errors="replace")
                except subprocess.TimeoutExpired:
                    rc, err = "timeout", ""
                if out is not subprocess.DEVNULL:
                    out.close()
                reads += 1
                name = os.path.basename(cmd[-1])
                why = None
                if rc not in (0, 2):
                    why = "exit status %s" % rc
                elif "Sanitizer" in err or "runtime error" in err:
                    why = "sanitizer report"
                elif rc == 2 and name not in err:
                    why = "the message does not name the file: " + err.strip()[:200]
                if why:
                    bad += 1
                    os.makedirs(broken, exist_ok=True)
                    keep = os.path.join(broken, "%s-%d-%s" % (f, r, name))
                    shutil.copy(cmd[-1], keep)
                    n += 1
                    print("not ok %d - %s on %s (%s): %s; kept as %s" % (n, " ".join(mode), f, how, why, keep))
            if os.path.exists(folded):
                os.unlink(folded)
    n += 1
    print("%s %d - %d mutated recordings read %d times by %d reader modes" %
          ("not ok" if bad else "ok", n, len(files) * rounds, reads, len(modes) + len(folded_tools)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
