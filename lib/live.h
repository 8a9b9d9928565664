/*
 * live.h - the live set of a process, replayed from its events: heap
 * blocks by address, and mapped byte ranges (which munmap can cut in
 * pieces). Keeps the live byte count and its high-water mark.
 */
#ifndef MEMRAY_LIVE_H
#define MEMRAY_LIVE_H

#include <stddef.h>
#include <stdint.h>

struct live_block {
	uint64_t addr, size; /* addr 0: empty slot */
	uint32_t stack;
	uint32_t count; /* the allocations it stands for: 1, or a sample's weight */
};

struct live_range {
	uint64_t start, end;
	uint32_t stack;
};

/* Told of every release: `bytes` of an allocation made at `stack` are no
 * longer live; `count` is the number of allocations that ended with it
 * (the block's count when nothing of it is left, 0 for a piece of a
 * mapping that has more). */
typedef void (*live_release_fn)(void *ctx, uint32_t stack, uint64_t addr, uint64_t bytes,
				uint32_t count);

struct live {
	struct live_block *blocks;
	size_t cap, count;
	struct live_range *ranges;
	size_t nranges, ranges_cap;
	uint64_t bytes, peak;
	uint64_t double_allocs; /* an address allocated again while live */
	uint64_t unknown_frees; /* frees of addresses not live */
	live_release_fn on_release; /* optional */
	void *ctx;
};

void live_init(struct live *l);
void live_free_all(struct live *l);
/* Records an allocation by `allocator` (enum mr_allocator). */
void live_alloc(struct live *l, int allocator, uint64_t addr, uint64_t size);
/* The same, remembering the stack that made it and the number of
 * allocations it stands for (1 unless sampled; mappings are always 1). */
void live_alloc_at(struct live *l, int allocator, uint64_t addr, uint64_t size,
		   uint32_t count, uint32_t stack);
/* Releases everything still live (telling on_release), keeping the peak. */
void live_release_all(struct live *l);
/* Records a release; len is used by munmap and mremap only. */
void live_free(struct live *l, int allocator, uint64_t addr, uint64_t len);
/* Removes the live heap block at addr into *out without telling
 * on_release (the caller accounts for it); 0 if no block is live there. */
int live_take(struct live *l, uint64_t addr, struct live_block *out);
/* The size of the live heap block at addr, or 0 if none. */
uint64_t live_block_size(const struct live *l, uint64_t addr);

#endif
