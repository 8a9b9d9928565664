# threads.py - the same allocation work split over NTHREADS Python threads
# started together: each makes and drops 600-byte bytearrays (a malloc and
# a free each, above pymalloc's limit) and small lists, a few calls deep.
# With 1, 2 and 8 threads the total work is the same; the GIL lets one run
# Python at a time, but their allocations interleave.
#
# usage: python3 threads.py NTHREADS [COUNT]     (default 1 thread, 1200000
#        buffers in all)
import sys
import threading

NTHREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
COUNT = int(sys.argv[2]) if len(sys.argv) > 2 else 1_200_000


def churn(n):
    total = 0
    for i in range(n):
        b = bytearray(600)
        total += len(b) + len([i, i])
    return total


def work(n, start_line):
    start_line.wait()
    churn(n)


def main(nthreads, count):
    start_line = threading.Barrier(nthreads)
    shares = [count // nthreads + (t < count % nthreads) for t in range(nthreads)]
    threads = [threading.Thread(target=work, args=(shares[t], start_line)) for t in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main(NTHREADS, COUNT)
