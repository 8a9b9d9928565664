/*
 * churn_varied.c - the varied churn workload: blocks of 16 to 4111 bytes,
 * a ring of 1024 live blocks freed in turn (each new block replaces the
 * oldest), calloc and malloc mixed, over four call paths.  Where churn.c
 * reuses a few sizes and a 64-block window, this one gives the stream
 * sizes and addresses that do not repeat, the harder case for its
 * delta encoding and for a reader's live table.
 * usage: churn_varied [MILLIONS_OF_EVENTS]     (default 2; decimals allowed)
 * Half the events are allocations and half frees; the sizes are the same in
 * every run (a fixed xorshift seed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 1024

static void *ring[RING];
static unsigned long sink;
static unsigned long long rng_state = 0x9e3779b97f4a7c15ull;

static unsigned long long rng_next(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* churn_replace: free the oldest block in the ring and put a new one of
 * SIZE bytes in its place, from calloc when ZEROED, else malloc. */
__attribute__((noinline)) static void churn_replace(unsigned long i, size_t size, int zeroed)
{
	unsigned k = (unsigned)(i % RING);
	free(ring[k]);
	ring[k] = zeroed ? calloc(1, size) : malloc(size);
	if (ring[k] == NULL) {
		fprintf(stderr, "churn_varied: out of memory\n");
		exit(1);
	}
	((char *)ring[k])[0] = (char)i;
	sink += (unsigned long)ring[k] & 0xff;
}

__attribute__((noinline)) static void path_a(unsigned long i, size_t s, int z) { churn_replace(i, s, z); }
__attribute__((noinline)) static void path_b(unsigned long i, size_t s, int z) { churn_replace(i, s, z); }
__attribute__((noinline)) static void path_c(unsigned long i, size_t s, int z) { path_a(i, s, z); }
__attribute__((noinline)) static void path_d(unsigned long i, size_t s, int z) { path_b(i, s, z); }

int main(int argc, char **argv)
{
	double millions = argc > 1 ? strtod(argv[1], NULL) : 2.0;
	if (!(millions > 0)) {
		fprintf(stderr, "usage: churn_varied [MILLIONS_OF_EVENTS]\n");
		return 2;
	}
	unsigned long allocs = (unsigned long)(millions * 1e6) / 2;
	for (unsigned long i = 0; i < allocs; i++) {
		unsigned long long r = rng_next();
		size_t size = 16 + (size_t)(r % 4096);      /* 16 .. 4111 bytes */
		int zeroed = (r >> 12) % 3 == 0;           /* a third from calloc */
		switch ((r >> 20) & 3) {
		case 0: path_a(i, size, zeroed); break;
		case 1: path_b(i, size, zeroed); break;
		case 2: path_c(i, size, zeroed); break;
		default: path_d(i, size, zeroed); break;
		}
	}
	for (int k = 0; k < RING; k++)
		free(ring[k]);
	printf("%lu\n", sink);
	return 0;
}
