#!/usr/bin/env python3
"""gen_stacks.py N [SEED] - N distinct collapsed stacks, like a big program's.

Stacks are random paths from a root through a call graph of Python and
native functions (depth 8 to 40, a few thousand distinct functions), each
distinct, with heavy-tailed values. Deterministic for a seed. Used by
make bench and by the big-input browser test.
"""
import random
import sys


def main():
    n = int(sys.argv[1])
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    py = [f"fn_{i} (pkg/mod_{i % 97}.py:{10 + i % 400})" for i in range(3000)]
    native = [f"native_{i} (libfoo_{i % 13}.so)" for i in range(1000)]
    seen = set()
    out = sys.stdout
    while len(seen) < n:
        depth = rng.randint(8, 40)
        frames = ["<module> (app.py:1)"]
        for d in range(depth):
            pool = native if d > depth - 4 and rng.random() < 0.5 else py
            # a skewed choice: shallow frames come from a few functions
            k = int(len(pool) * rng.random() ** (4 if d < 6 else 1))
            frames.append(pool[k])
        s = ";".join(frames)
        if s in seen:
            continue
        seen.add(s)
        out.write(f"{s} {int(rng.paretovariate(1.2) * 1000)}\n")


main()
