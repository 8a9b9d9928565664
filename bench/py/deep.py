# deep.py - many small buffers allocated deep in the stack: a recursive
# chain 40 calls deep (42 frames with <module> and main), then a loop at
# the bottom that makes and drops 600-byte bytearrays.  Each bytearray's
# buffer is a malloc (above pymalloc's 512-byte limit) and its free, all
# from the same 42-frame stack: what a tracker pays per allocation for a
# deep stack that does not change.
#
# usage: python3 deep.py [COUNT [DEPTH]]     (default 2400000 buffers, depth 40)
import sys

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2_400_000
DEPTH = int(sys.argv[2]) if len(sys.argv) > 2 else 40


def descend(depth, n):
    if depth > 1:
        return descend(depth - 1, n)
    total = 0
    for _ in range(n):
        b = bytearray(600)
        total += len(b)
    return total


def main(n):
    return descend(DEPTH, n)


if __name__ == "__main__":
    main(N)
