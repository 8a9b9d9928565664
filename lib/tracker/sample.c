/*
 * sample.c - sampling (memray-record --sample-bytes) and the hooks' fast
 * path (tracker.h says how the hooks read it).
 *
 * Owns: the sampling state (tracker_sample_*, tracker_filter, the table
 * of live sampled blocks, each thread's countdown and generator),
 * tracker_active's writer set_active.
 * Calls: blocks.c (btab_*), lib/sample.h (mr_sample_weight), heap_sub.
 */
#define _GNU_SOURCE
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../sample.h"
#include "internal.h"

/* ---- sampling (memray-record --sample-bytes) --------------------------------
 * Each thread counts down the bytes to its next sampled byte, the gap
 * drawn from an exponential distribution of mean tracker_sample_bytes
 * (see lib/sample.h): an allocation that reaches it is recorded, any
 * other costs a subtraction. The live sampled blocks are kept by address,
 * with a filter of counters by address hash in front that every free
 * reads without the lock: a free that finds its counter at 0 was not
 * sampled. A sampled block's counter went up under the lock before its
 * malloc returned, so the thread that frees it sees it. */

#define FILTER_SLOTS (1u << 16)
uint64_t tracker_sample_bytes;
int64_t tracker_sample_floor = INT64_MAX;
static struct {
	uint64_t mask;
	uint16_t slot[1];
} filter_maybe = { 0, { 1 } }; /* every release goes the slow way */
struct sample_filter *tracker_filter = (struct sample_filter *)&filter_maybe;
static struct sample_filter *filter; /* FILTER_SLOTS counters, once sampling */
__thread int64_t tracker_sample_left __attribute__((tls_model("initial-exec")));
static __thread uint64_t sample_rng __attribute__((tls_model("initial-exec")));
uint64_t sample_seed;      /* --seed; 0: from the clock */
static unsigned sample_threads;   /* threads that drew a first gap */
static struct btab sampled;       /* live sampled blocks, with their estimated bytes */
static uint32_t sample_gen;       /* counts the sampled recordings */
static __thread uint32_t thread_sample_gen __attribute__((tls_model("initial-exec")));

static uint64_t splitmix(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The bytes to the next sampled byte: an exponential draw, at least 1. */
static int64_t sample_gap(void)
{
	if (!sample_rng) {
		/* the thread's first: its own sequence, the same in every run
		 * with a seed (threads numbered by their first allocation) */
		uint64_t k = __atomic_add_fetch(&sample_threads, 1, __ATOMIC_RELAXED);
		uint64_t s = sample_seed;
		if (!s) {
			struct timespec t;
			clock_gettime(CLOCK_MONOTONIC, &t);
			s = (uint64_t)t.tv_nsec ^ (uint64_t)t.tv_sec << 32 ^ (uint64_t)getpid() << 16 ^
			    (uintptr_t)&sample_rng;
		}
		uint64_t st = s ^ k * 0xd1b54a32d192ed03ull;
		sample_rng = splitmix(&st) | 1;
	}
	double u = (double)((splitmix(&sample_rng) >> 11) + 1) * 0x1p-53; /* (0, 1] */
	double g = -log(u) * (double)tracker_sample_bytes;
	return g >= 0x1p62 ? (int64_t)1 << 62 : (int64_t)g + 1;
}

/* The countdown reached the allocation of size bytes: whether it is
 * sampled. Kept out of tracker_take_slow, whose way when not sampling
 * then needs no stack frame. */
static __attribute__((noinline)) int sample_slow(size_t size)
{
	int guard = tracker_guard;
	tracker_guard = 1;
	int hit = 1;
	uint32_t gen = __atomic_load_n(&sample_gen, __ATOMIC_RELAXED);
	if (thread_sample_gen != gen) {
		/* the thread's first allocation in this recording (whatever an
		 * earlier one left): a sequence and a gap of its own, counted
		 * from the start of this allocation */
		thread_sample_gen = gen;
		sample_rng = 0;
		tracker_sample_left = sample_gap() - (int64_t)size;
		hit = tracker_sample_left <= 0;
	}
	if (hit) /* the next gap counts from the end of this allocation */
		tracker_sample_left = sample_gap();
	tracker_guard = guard;
	return hit;
}

/* The hooks' fast path for what runs now: while a sampled recording runs,
 * the countdown and the filter; else every call the slow way (which
 * leaves the countdowns alone). */
void set_active(int on)
{
	int fast = on && tracker_sampling() && filter;
	__atomic_store_n(&tracker_filter, fast ? filter : (struct sample_filter *)&filter_maybe,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&tracker_sample_floor, fast ? 0 : INT64_MAX, __ATOMIC_RELEASE);
	__atomic_store_n(&tracker_active, on, __ATOMIC_RELEASE);
}

/* Sampling for the stream about to start (gap 0: every allocation); its
 * fast path opens with set_active(1). */
void sample_setup(uint64_t gap, uint64_t seed)
{
	set_active(0);
	lock_stream();
	if (gap && !filter)
		filter = raw_map(sizeof(*filter) + FILTER_SLOTS * sizeof(uint16_t));
	if (!filter)
		gap = 0;
	else
		memset(filter->slot, 0, FILTER_SLOTS * sizeof(uint16_t));
	if (filter) {
		filter->mask = FILTER_SLOTS - 1;
		/* the bootstrap allocator's blocks take the slow way too, which
		 * keeps them from the real free */
		size_t used = __atomic_load_n(&boot_used, __ATOMIC_RELAXED);
		for (size_t at = 0; at + 16 <= used && at + 16 <= BOOT_SIZE;) {
			size_t size = *(size_t *)(boot_buf + at);
			filter->slot[sample_slot(filter, (uintptr_t)(boot_buf + at + 16))] = 1;
			at += ((size + 15) & ~(size_t)15) + 16;
		}
	}
	btab_clear(&sampled);
	sample_seed = seed;
	sample_threads = 0;
	__atomic_add_fetch(&sample_gen, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&tracker_sample_bytes, gap, __ATOMIC_RELAXED);
	order_gate();
	unlock();
}

int tracker_take_slow(size_t size)
{
	if (size > (size_t)PTRDIFF_MAX)
		return 0; /* fails; the countdown untouched */
	if (!tracker_sampling()) {
		tracker_sample_left = 0;
		return 1;
	}
	return sample_slow(size);
}

/* A sampled block: kept, counted in its filter slot; its estimated bytes.
 * Locked. */
uint64_t sample_put(uintptr_t a, uint64_t size)
{
	uint64_t est = (uint64_t)(mr_sample_weight(size, tracker_sample_bytes) * (double)size + 0.5);
	uint64_t replaced;
	if (!btab_put(&sampled, a, est, &replaced))
		return 0;
	uint16_t *f = &filter->slot[sample_slot(filter, a)];
	if (!replaced && *f != UINT16_MAX) /* a full counter stays full */
		__atomic_store_n(f, *f + 1, __ATOMIC_RELAXED);
	heap_sub(replaced);
	return est;
}

/* Takes a sampled block out into *est; 0 if a was not sampled. Locked. */
int sample_take(uintptr_t a, uint64_t *est)
{
	if (!btab_take(&sampled, a, est))
		return 0;
	uint16_t *f = &filter->slot[sample_slot(filter, a)];
	if (*f != UINT16_MAX)
		__atomic_store_n(f, *f - 1, __ATOMIC_RELAXED);
	return 1;
}
