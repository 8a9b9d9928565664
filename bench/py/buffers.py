# buffers.py - large buffers: bytearrays of 100 KB to 10 MB allocated,
# touched and freed, a few of them alive at a time.  The sizes are
# log-uniform and the same in every run (fixed seed).
#
# usage: python3 buffers.py [COUNT]     (default 1500)
import random
import sys

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1500


def main(n):
    rng = random.Random(12345)   # the same sizes in every run
    live = []
    total = 0
    for i in range(n):
        size = int(100_000 * (100 ** rng.random()))   # 100 KB .. 10 MB, log-uniform
        b = bytearray(size)
        b[0] = b[-1] = 1
        b[size // 2] = 2
        live.append(b)
        if len(live) > 4:
            live.pop(rng.randrange(len(live)))
        total += size
    return total


if __name__ == "__main__":
    main(N)
