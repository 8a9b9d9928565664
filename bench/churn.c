/*
 * churn.c - the benchmark workload: millions of malloc/free pairs over a
 * few call paths, with a small live window so addresses are reused.
 * usage: churn [MILLIONS_OF_EVENTS]
 */
#include <stdio.h>
#include <stdlib.h>

#define WINDOW 64

static void *slots[WINDOW];
static unsigned long sink;

__attribute__((noinline)) static void churn_leaf(unsigned long i, size_t size)
{
	unsigned k = (unsigned)(i % WINDOW);
	free(slots[k]);
	slots[k] = malloc(size);
	sink += (unsigned long)slots[k] & 0xff;
}

__attribute__((noinline)) static void path_a(unsigned long i) { churn_leaf(i, 16 + i % 64); }
__attribute__((noinline)) static void path_b(unsigned long i) { churn_leaf(i, 256 + i % 512); }
__attribute__((noinline)) static void path_c(unsigned long i) { path_a(i); }
__attribute__((noinline)) static void path_d(unsigned long i) { churn_leaf(i, 4096); }

int main(int argc, char **argv)
{
	unsigned long events = (argc > 1 ? strtoul(argv[1], NULL, 10) : 4) * 1000000ul;
	for (unsigned long i = 0; i < events / 2; i++) {
		switch (i % 4) {
		case 0: path_a(i); break;
		case 1: path_b(i); break;
		case 2: path_c(i); break;
		default: path_d(i); break;
		}
	}
	for (int k = 0; k < WINDOW; k++)
		free(slots[k]);
	printf("%lu\n", sink);
	return 0;
}
