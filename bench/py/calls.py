# calls.py - call-heavy with few allocations: recursive fib, pure function
# calls on small ints (cached objects, so almost nothing is allocated).
import sys

N = int(sys.argv[1]) if len(sys.argv) > 1 else 25


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


if __name__ == "__main__":
    for _ in range(3):
        fib(N)
