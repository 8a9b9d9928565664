# calls.py - call-heavy with few allocations: recursive fib(25), repeated.
# The arguments and results are small ints, which CPython caches, so
# almost nothing is allocated: this measures what a profiler costs on
# Python calls alone.
#
# usage: python3 calls.py [REPEAT [N]]     (default: 40 times fib(25))
import sys

REPEAT = int(sys.argv[1]) if len(sys.argv) > 1 else 40
N = int(sys.argv[2]) if len(sys.argv) > 2 else 25


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


if __name__ == "__main__":
    for _ in range(REPEAT):
        fib(N)
