#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "live.h"
#include "stream.h"

static int is_mapping(int allocator)
{
	return allocator == MR_MMAP || allocator == MR_MREMAP || allocator == MR_MUNMAP;
}

void live_init(struct live *l)
{
	memset(l, 0, sizeof(*l));
}

void live_free_all(struct live *l)
{
	free(l->blocks);
	free(l->ranges);
	live_init(l);
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n, sz);
	if (!p) {
		fputs("out of memory\n", stderr);
		abort();
	}
	return p;
}

static size_t slot_of(uint64_t addr, size_t cap)
{
	uint64_t h = addr * 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 20) & (cap - 1);
}

/* Whether the table must grow before a block is added. It does at a
 * quarter full while it is small (up to LIVE_SMALL slots, 24 MiB): runs
 * of occupied slots stay short, and so does removing a block, which moves
 * the rest of its run back (at half full that took a tenth of
 * memray-fold's instructions on a churn of 1024 live blocks, and more of
 * its time: 70 -> 52 ms for 2 M events). A bigger table grows at half
 * full, where memory matters more, and each probe misses the cache
 * anyway. */
#define LIVE_SMALL (1u << 20)

static int crowded(const struct live *l)
{
	size_t n = l->count + 1;
	return l->cap < LIVE_SMALL ? n * 4 > l->cap : n * 2 > l->cap;
}

static void grow(struct live *l)
{
	size_t cap = l->cap ? l->cap * 2 : 1024;
	struct live_block *b = xcalloc(cap, sizeof(*b));
	for (size_t i = 0; i < l->cap; i++) {
		if (!l->blocks[i].addr)
			continue;
		size_t j = slot_of(l->blocks[i].addr, cap);
		while (b[j].addr)
			j = (j + 1) & (cap - 1);
		b[j] = l->blocks[i];
	}
	free(l->blocks);
	l->blocks = b;
	l->cap = cap;
}

static size_t find(const struct live *l, uint64_t addr)
{
	if (!l->cap)
		return (size_t)-1;
	size_t j = slot_of(addr, l->cap);
	while (l->blocks[j].addr) {
		if (l->blocks[j].addr == addr)
			return j;
		j = (j + 1) & (l->cap - 1);
	}
	return (size_t)-1;
}

uint64_t live_block_size(const struct live *l, uint64_t addr)
{
	size_t j = find(l, addr);
	return j == (size_t)-1 ? 0 : l->blocks[j].size;
}

/* Removes slot j, shifting later entries of its run back (no tombstones). */
static void remove_slot(struct live *l, size_t j)
{
	size_t mask = l->cap - 1, i = j;
	l->blocks[j].addr = 0;
	for (;;) {
		i = (i + 1) & mask;
		if (!l->blocks[i].addr)
			break;
		size_t home = slot_of(l->blocks[i].addr, l->cap);
		/* move i back to j if its home is not in (j, i] cyclically */
		if ((i > j && (home <= j || home > i)) || (i < j && home <= j && home > i)) {
			l->blocks[j] = l->blocks[i];
			l->blocks[i].addr = 0;
			j = i;
		}
	}
	l->count--;
}

static void add_bytes(struct live *l, uint64_t n)
{
	l->bytes += n;
	if (l->bytes > l->peak)
		l->peak = l->bytes;
}

/* ---- mapped ranges, kept sorted and disjoint --------------------------- */

static void released(struct live *l, uint32_t stack, uint64_t addr, uint64_t bytes,
		     uint32_t count)
{
	l->bytes -= bytes;
	if (l->on_release)
		l->on_release(l->ctx, stack, addr, bytes, count);
}

static void ranges_cut(struct live *l, uint64_t start, uint64_t end)
{
	for (size_t i = 0; i < l->nranges;) {
		struct live_range *r = &l->ranges[i];
		if (r->end <= start || r->start >= end) {
			i++;
			continue;
		}
		uint64_t lo = r->start > start ? r->start : start;
		uint64_t hi = r->end < end ? r->end : end;
		released(l, r->stack, lo, hi - lo, lo == r->start && hi == r->end);
		if (r->start < start && r->end > end) { /* a hole in the middle */
			struct live_range right = { end, r->end, r->stack };
			r->end = start;
			if (l->nranges == l->ranges_cap) {
				l->ranges_cap = l->ranges_cap ? l->ranges_cap * 2 : 64;
				l->ranges = realloc(l->ranges, l->ranges_cap * sizeof(*l->ranges));
				if (!l->ranges)
					abort();
			}
			memmove(&l->ranges[i + 2], &l->ranges[i + 1],
				(l->nranges - i - 1) * sizeof(*l->ranges));
			l->ranges[i + 1] = right;
			l->nranges++;
			return;
		}
		if (r->start < start) {
			r->end = start;
			i++;
		} else if (r->end > end) {
			r->start = end;
			i++;
		} else {
			memmove(r, r + 1, (l->nranges - i - 1) * sizeof(*r));
			l->nranges--;
		}
	}
}

static void ranges_add(struct live *l, uint64_t start, uint64_t end, uint32_t stack)
{
	ranges_cut(l, start, end); /* a MAP_FIXED mapping replaces what was there */
	size_t i = 0;
	while (i < l->nranges && l->ranges[i].start < start)
		i++;
	if (l->nranges == l->ranges_cap) {
		l->ranges_cap = l->ranges_cap ? l->ranges_cap * 2 : 64;
		l->ranges = realloc(l->ranges, l->ranges_cap * sizeof(*l->ranges));
		if (!l->ranges)
			abort();
	}
	memmove(&l->ranges[i + 1], &l->ranges[i], (l->nranges - i) * sizeof(*l->ranges));
	l->ranges[i] = (struct live_range){ start, end, stack };
	l->nranges++;
	add_bytes(l, end - start);
}

/* ---- the public calls --------------------------------------------------- */

void live_alloc(struct live *l, int allocator, uint64_t addr, uint64_t size)
{
	live_alloc_at(l, allocator, addr, size, 1, 0);
}

void live_alloc_at(struct live *l, int allocator, uint64_t addr, uint64_t size,
		   uint32_t count, uint32_t stack)
{
	if (is_mapping(allocator)) {
		if (size)
			ranges_add(l, addr, addr + size, stack);
		return;
	}
	if (!addr)
		return;
	if (crowded(l))
		grow(l);
	/* one probe finds the address or the empty slot it goes to */
	size_t j = slot_of(addr, l->cap);
	while (l->blocks[j].addr && l->blocks[j].addr != addr)
		j = (j + 1) & (l->cap - 1);
	if (l->blocks[j].addr) {
		l->double_allocs++;
		released(l, l->blocks[j].stack, addr, l->blocks[j].size, l->blocks[j].count);
		l->blocks[j].size = size;
		l->blocks[j].stack = stack;
		l->blocks[j].count = count;
		add_bytes(l, size);
		return;
	}
	l->blocks[j] = (struct live_block){ addr, size, stack, count };
	l->count++;
	add_bytes(l, size);
}

int live_take(struct live *l, uint64_t addr, struct live_block *out)
{
	size_t j = find(l, addr);
	if (j == (size_t)-1) {
		l->unknown_frees++;
		return 0;
	}
	*out = l->blocks[j];
	remove_slot(l, j);
	l->bytes -= out->size;
	return 1;
}

void live_free(struct live *l, int allocator, uint64_t addr, uint64_t len)
{
	if (is_mapping(allocator)) {
		if (len)
			ranges_cut(l, addr, addr + len);
		return;
	}
	size_t j = find(l, addr);
	if (j == (size_t)-1) {
		l->unknown_frees++;
		return;
	}
	struct live_block b = l->blocks[j];
	remove_slot(l, j);
	released(l, b.stack, b.addr, b.size, b.count);
}

void live_release_all(struct live *l)
{
	for (size_t i = 0; i < l->cap; i++)
		if (l->blocks[i].addr) {
			released(l, l->blocks[i].stack, l->blocks[i].addr, l->blocks[i].size,
				 l->blocks[i].count);
			l->blocks[i].addr = 0;
		}
	l->count = 0;
	for (size_t i = 0; i < l->nranges; i++)
		released(l, l->ranges[i].stack, l->ranges[i].start,
			 l->ranges[i].end - l->ranges[i].start, 1);
	l->nranges = 0;
}
