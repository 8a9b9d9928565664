# objects.py - object churn: many small dicts, lists and tuples created and
# dropped in a loop, with a small working set kept alive so that the
# allocator sees both short-lived and longer-lived objects.
#
# usage: python3 objects.py [ITERATIONS]     (default 1500000)
import sys

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_500_000


def main(n):
    keep = [None] * 1024
    total = 0
    for i in range(n):
        d = {"id": i, "name": "x", "tags": [i, i + 1, i + 2]}
        t = (i, d, [d["id"]] * 3)
        s = str(i)
        keep[i & 1023] = (t, s)
        total += len(t[2]) + len(s)
    return total


if __name__ == "__main__":
    main(N)
