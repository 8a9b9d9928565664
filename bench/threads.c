/*
 * threads.c - the same allocation work split over NTHREADS threads that run
 * at once: each thread churns its own ring of 256 blocks of 16 to 1039
 * bytes (malloc and free, two call paths) for its share of the events.
 * With 1, 2 and 8 threads the total work is the same, so a recorder's
 * overhead ratio should not grow with the thread count unless threads wait
 * for each other inside it.
 * usage: threads NTHREADS [MILLIONS_OF_EVENTS]   (default 4 M events in all;
 *        decimals allowed)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define RING 256
#define MAX_THREADS 64

struct worker {
	pthread_t thread;
	unsigned long allocs;      /* allocations this thread makes */
	unsigned long long seed;
	unsigned long sink;        /* keeps the blocks' use from being optimized out */
};

static pthread_barrier_t start_line;

__attribute__((noinline)) static void *churn_one(void **slot, size_t size)
{
	free(*slot);
	*slot = malloc(size);
	if (*slot == NULL) {
		fprintf(stderr, "threads: out of memory\n");
		exit(1);
	}
	((char *)*slot)[0] = 1;
	return *slot;
}

__attribute__((noinline)) static void *path_a(void **slot, size_t size) { return churn_one(slot, size); }
__attribute__((noinline)) static void *path_b(void **slot, size_t size) { return path_a(slot, size); }

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	void *ring[RING] = { 0 };
	unsigned long long r = w->seed;
	pthread_barrier_wait(&start_line);
	for (unsigned long i = 0; i < w->allocs; i++) {
		r ^= r << 13;
		r ^= r >> 7;
		r ^= r << 17;
		size_t size = 16 + (size_t)(r % 1024);
		void *p = (r >> 16) & 1 ? path_a(&ring[i % RING], size) : path_b(&ring[i % RING], size);
		w->sink += (unsigned long)p & 0xff;
	}
	for (int k = 0; k < RING; k++)
		free(ring[k]);
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	double millions = argc > 2 ? strtod(argv[2], NULL) : 4.0;
	if (n < 1 || n > MAX_THREADS || !(millions > 0)) {
		fprintf(stderr, "usage: threads NTHREADS(1-%d) [MILLIONS_OF_EVENTS]\n", MAX_THREADS);
		return 2;
	}
	static struct worker workers[MAX_THREADS];
	unsigned long allocs = (unsigned long)(millions * 1e6) / 2;
	pthread_barrier_init(&start_line, NULL, (unsigned)n);
	for (int t = 0; t < n; t++) {
		workers[t].allocs = allocs / (unsigned long)n + (t < (int)(allocs % (unsigned long)n));
		workers[t].seed = 0x9e3779b97f4a7c15ull ^ (unsigned long long)(t + 1) * 0x100000001b3ull;
		if (pthread_create(&workers[t].thread, NULL, worker_run, &workers[t]) != 0) {
			fprintf(stderr, "threads: cannot create thread %d\n", t);
			return 1;
		}
	}
	unsigned long sink = 0;
	for (int t = 0; t < n; t++) {
		pthread_join(workers[t].thread, NULL);
		sink += workers[t].sink;
	}
	printf("%lu\n", sink);
	return 0;
}
