/*
 * test_live.c - the live set of lib/live.c: mapped ranges cut by partial
 * munmaps, and heap blocks allocated, freed, moved and miscounted, the
 * way memray-stat replays events into it.
 */
#include <stdlib.h>
#include <string.h>

#include "../../lib/live.h"
#include "../../lib/stream.h"
#include "unit.h"

#define P 4096ull
#define A 0x7f0000000000ull /* the first mapping of each scenario */
#define B 0x7f1000000000ull /* the final 10-page mapping, well away */

/* ---- mappings ------------------------------------------------------------ */

/* The peak after a scenario ends with a fresh 10-page mapping. */
static uint64_t end_with_ten_pages(struct live *l)
{
	live_alloc(l, MR_MMAP, B, 10 * P);
	uint64_t peak = l->peak;
	live_free_all(l);
	return peak;
}

static void test_partial_munmap(void)
{
	struct live l;

	/* Map 2P, unmap the first page: 1P left. */
	live_init(&l);
	live_alloc(&l, MR_MMAP, A, 2 * P);
	live_free(&l, MR_MUNMAP, A, P);
	CHECK_EQ_U64(l.bytes, P);
	CHECK_EQ_U64(end_with_ten_pages(&l), 11 * P);

	/* Map 4P, unmap the first and the last page: 2P left. */
	live_init(&l);
	live_alloc(&l, MR_MMAP, A, 4 * P);
	live_free(&l, MR_MUNMAP, A, P);
	live_free(&l, MR_MUNMAP, A + 3 * P, P);
	CHECK_EQ_U64(l.bytes, 2 * P);
	CHECK_EQ_U64(end_with_ten_pages(&l), 12 * P);

	/* Map 8P, unmap the middle page: 7P left in two pieces. */
	live_init(&l);
	live_alloc(&l, MR_MMAP, A, 8 * P);
	live_free(&l, MR_MUNMAP, A + 4 * P, P);
	CHECK_EQ_U64(l.bytes, 7 * P);
	CHECK_EQ_U64(l.nranges, 2);
	CHECK_EQ_U64(end_with_ten_pages(&l), 17 * P);

	/* Map 5P, unmap pages 1 and 3: 3P left in three pieces. */
	live_init(&l);
	live_alloc(&l, MR_MMAP, A, 5 * P);
	live_free(&l, MR_MUNMAP, A + 1 * P, P);
	live_free(&l, MR_MUNMAP, A + 3 * P, P);
	CHECK_EQ_U64(l.bytes, 3 * P);
	CHECK_EQ_U64(l.nranges, 3);
	CHECK_EQ_U64(end_with_ten_pages(&l), 13 * P);

	/* Two adjacent 4P maps freed by one 8P munmap. */
	live_init(&l);
	live_alloc(&l, MR_MMAP, A, 4 * P);
	live_alloc(&l, MR_MMAP, A + 4 * P, 4 * P);
	live_free(&l, MR_MUNMAP, A, 8 * P);
	CHECK_EQ_U64(l.bytes, 0);
	CHECK_EQ_U64(l.nranges, 0);
	CHECK_EQ_U64(end_with_ten_pages(&l), 10 * P);

	/* One munmap across the end of one mapping and the start of the
	 * next, with a gap between them. */
	live_init(&l);
	live_alloc(&l, MR_MMAP, A, 4 * P);
	live_alloc(&l, MR_MMAP, A + 6 * P, 4 * P);
	live_free(&l, MR_MUNMAP, A + 2 * P, 6 * P);
	CHECK_EQ_U64(l.bytes, 4 * P);
	CHECK_EQ_U64(end_with_ten_pages(&l), 14 * P);
}

static void test_mapping_edges(void)
{
	struct live l;

	/* munmap of what was never mapped, and of nothing. */
	live_init(&l);
	live_alloc(&l, MR_MMAP, A, 2 * P);
	live_free(&l, MR_MUNMAP, B, 4 * P);
	live_free(&l, MR_MUNMAP, A, 0);
	CHECK_EQ_U64(l.bytes, 2 * P);
	CHECK_EQ_U64(l.unknown_frees, 0); /* mappings are not heap blocks */
	/* An empty mapping is nothing. */
	live_alloc(&l, MR_MMAP, B, 0);
	CHECK_EQ_U64(l.bytes, 2 * P);
	CHECK_EQ_U64(l.nranges, 1);
	/* MAP_FIXED over part of a mapping replaces, it does not add. */
	live_alloc(&l, MR_MMAP, A + P, 3 * P);
	CHECK_EQ_U64(l.bytes, 4 * P);
	CHECK_EQ_U64(l.peak, 4 * P);
	/* Unmapping everything at once, larger than what is mapped. */
	live_free(&l, MR_MUNMAP, A - P, 16 * P);
	CHECK_EQ_U64(l.bytes, 0);
	CHECK_EQ_U64(l.peak, 4 * P);
	live_free_all(&l);

	/* mremap as memray-stat replays a MOVE: cut the old, add the new. */
	live_init(&l);
	live_alloc(&l, MR_MMAP, A, 4 * P);
	live_free(&l, MR_MREMAP, A, 4 * P);
	live_alloc(&l, MR_MREMAP, B, 8 * P);
	CHECK_EQ_U64(l.bytes, 8 * P);
	CHECK_EQ_U64(l.peak, 8 * P);
	/* Grown in place. */
	live_free(&l, MR_MREMAP, B, 8 * P);
	live_alloc(&l, MR_MREMAP, B, 9 * P);
	CHECK_EQ_U64(l.bytes, 9 * P);
	CHECK_EQ_U64(l.peak, 9 * P);
	/* Shrunk in place. */
	live_free(&l, MR_MREMAP, B, 9 * P);
	live_alloc(&l, MR_MREMAP, B, 2 * P);
	CHECK_EQ_U64(l.bytes, 2 * P);
	CHECK_EQ_U64(l.peak, 9 * P);
	live_free_all(&l);

	/* Many pieces: map 200 pages, unmap every other one, then the rest
	 * with one call. Grows the range table past its first size. */
	live_init(&l);
	live_alloc(&l, MR_MMAP, A, 200 * P);
	for (uint64_t i = 0; i < 200; i += 2)
		live_free(&l, MR_MUNMAP, A + i * P, P);
	CHECK_EQ_U64(l.bytes, 100 * P);
	CHECK_EQ_U64(l.nranges, 100);
	int sorted = 1;
	for (size_t i = 1; i < l.nranges; i++)
		sorted &= l.ranges[i - 1].end <= l.ranges[i].start;
	CHECK(sorted);
	live_free(&l, MR_MUNMAP, A, 200 * P);
	CHECK_EQ_U64(l.bytes, 0);
	CHECK_EQ_U64(l.nranges, 0);
	CHECK_EQ_U64(l.peak, 200 * P);
	live_free_all(&l);
}

/* ---- heap blocks ------------------------------------------------------------ */

static void test_heap_blocks(void)
{
	struct live l;
	live_init(&l);
	CHECK_EQ_U64(l.bytes, 0);
	CHECK_EQ_U64(l.peak, 0);
	CHECK_EQ_U64(live_block_size(&l, 0x1000), 0);

	live_alloc(&l, MR_MALLOC, 0x1000, 100);
	live_alloc(&l, MR_CALLOC, 0x2000, 200);
	CHECK_EQ_U64(l.bytes, 300);
	CHECK_EQ_U64(live_block_size(&l, 0x1000), 100);
	CHECK_EQ_U64(live_block_size(&l, 0x2000), 200);
	live_free(&l, MR_FREE, 0x1000, 0);
	CHECK_EQ_U64(l.bytes, 200);
	CHECK_EQ_U64(l.peak, 300);
	CHECK_EQ_U64(live_block_size(&l, 0x1000), 0);

	/* realloc that moves: a free of the old block, an alloc of the new. */
	live_free(&l, MR_REALLOC, 0x2000, 0);
	live_alloc(&l, MR_REALLOC, 0x3000, 500);
	CHECK_EQ_U64(l.bytes, 500);
	CHECK_EQ_U64(l.peak, 500);
	CHECK_EQ_U64(live_block_size(&l, 0x2000), 0);
	CHECK_EQ_U64(live_block_size(&l, 0x3000), 500);
	/* realloc in place, shrinking. */
	live_free(&l, MR_REALLOC, 0x3000, 0);
	live_alloc(&l, MR_REALLOC, 0x3000, 50);
	CHECK_EQ_U64(l.bytes, 50);
	CHECK_EQ_U64(l.peak, 500);
	CHECK_EQ_U64(live_block_size(&l, 0x3000), 50);
	CHECK_EQ_U64(l.count, 1);

	/* An address allocated again while live: counted, and the new size
	 * replaces the old rather than adding to it. */
	live_alloc(&l, MR_MALLOC, 0x3000, 70);
	CHECK_EQ_U64(l.double_allocs, 1);
	CHECK_EQ_U64(l.bytes, 70);
	CHECK_EQ_U64(live_block_size(&l, 0x3000), 70);
	CHECK_EQ_U64(l.count, 1);

	/* Frees of addresses that are not live: counted, nothing else. */
	live_free(&l, MR_FREE, 0xdead0, 0);
	CHECK_EQ_U64(l.unknown_frees, 1);
	CHECK_EQ_U64(l.bytes, 70);
	live_free(&l, MR_FREE, 0x3000, 0);
	live_free(&l, MR_FREE, 0x3000, 0); /* a double free */
	CHECK_EQ_U64(l.unknown_frees, 2);
	CHECK_EQ_U64(l.bytes, 0);
	CHECK_EQ_U64(l.count, 0);

	/* A failed allocation (NULL) is nothing; zero-sized blocks are live. */
	live_alloc(&l, MR_MALLOC, 0, 100);
	CHECK_EQ_U64(l.bytes, 0);
	CHECK_EQ_U64(l.count, 0);
	live_alloc(&l, MR_MALLOC, 0x4000, 0);
	CHECK_EQ_U64(l.count, 1);
	live_free(&l, MR_FREE, 0x4000, 0);
	CHECK_EQ_U64(l.unknown_frees, 2);
	CHECK_EQ_U64(l.peak, 500);

	/* Heap and mappings add up to one live count. */
	live_alloc(&l, MR_MALLOC, 0x5000, 1000);
	live_alloc(&l, MR_MMAP, A, 2 * P);
	CHECK_EQ_U64(l.bytes, 1000 + 2 * P);
	live_free(&l, MR_MUNMAP, A, P);
	live_free(&l, MR_FREE, 0x5000, 0);
	CHECK_EQ_U64(l.bytes, P);
	CHECK_EQ_U64(l.peak, 1000 + 2 * P);
	live_free_all(&l);
}

/* Random allocations and frees against a plain array: exercises the
 * table's growth and its deletion without tombstones. */
static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void test_heap_against_model(void)
{
	enum { SLOTS = 20000, STEPS = 400000 };
	uint64_t *size = calloc(SLOTS, sizeof(*size)); /* 0: not live */
	uint8_t *live_now = calloc(SLOTS, 1);
	if (!size || !live_now)
		abort();
	struct live l;
	live_init(&l);
	uint64_t bytes = 0, peak = 0, wrong = 0;
	for (int step = 0; step < STEPS; step++) {
		uint64_t r = rng();
		size_t i = (size_t)(r % SLOTS);
		/* Dense, 16-aligned addresses: neighbours in the hash table. */
		uint64_t addr = 0x555555550000ull + 16 * (uint64_t)i;
		if (live_now[i]) {
			live_free(&l, MR_FREE, addr, 0);
			bytes -= size[i];
			live_now[i] = 0;
		} else {
			size[i] = (r >> 32) % 4096;
			live_alloc(&l, MR_MALLOC, addr, size[i]);
			bytes += size[i];
			live_now[i] = 1;
			if (bytes > peak)
				peak = bytes;
		}
		if (l.bytes != bytes)
			wrong++;
	}
	CHECK_EQ_U64(wrong, 0);
	CHECK_EQ_U64(l.peak, peak);
	CHECK_EQ_U64(l.double_allocs, 0);
	CHECK_EQ_U64(l.unknown_frees, 0);
	size_t count = 0;
	wrong = 0;
	for (size_t i = 0; i < SLOTS; i++) {
		uint64_t addr = 0x555555550000ull + 16 * (uint64_t)i;
		count += live_now[i];
		if (live_now[i] && live_block_size(&l, addr) != size[i])
			wrong++;
		if (!live_now[i] && live_block_size(&l, addr) != 0)
			wrong++;
	}
	CHECK_EQ_U64(wrong, 0);
	CHECK_EQ_U64(l.count, count);
	/* Free everything: the table ends empty. */
	for (size_t i = 0; i < SLOTS; i++)
		if (live_now[i])
			live_free(&l, MR_FREE, 0x555555550000ull + 16 * (uint64_t)i, 0);
	CHECK_EQ_U64(l.bytes, 0);
	CHECK_EQ_U64(l.count, 0);
	CHECK_EQ_U64(l.unknown_frees, 0);
	live_free_all(&l);
	free(size);
	free(live_now);
}

int main(void)
{
	test_partial_munmap();
	test_mapping_edges();
	test_heap_blocks();
	test_heap_against_model();
	return unit_done();
}
