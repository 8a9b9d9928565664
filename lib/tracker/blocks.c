/*
 * blocks.c - tables of blocks by address.
 *
 * Owns: nothing but each table it is given.
 * Calls: raw_map and real.munmap for their memory.
 */
#include <string.h>

#include "internal.h"

/* ---- tables of blocks by address ------------------------------------------
 * Open addressing, linear probing, deletion by backward shift; all under
 * the lock. Two are kept: the blocks of the in-process API's window, and
 * the live sampled blocks (memray-record --sample-bytes). */

static size_t btab_slot(const struct btab *t, uintptr_t a)
{
	uint64_t h = (uint64_t)a * 0x9e3779b97f4a7c15ull;
	return (size_t)(h ^ (h >> 32)) & (t->cap - 1);
}

void btab_clear(struct btab *t)
{
	if (t->v)
		memset(t->v, 0, t->cap * sizeof(*t->v));
	t->n = 0;
}

/* Puts a block in (replacing one at the same address, whose size goes to
 * *replaced, else 0 does); 0 when memory runs out and the block is not
 * kept. */
int btab_put(struct btab *t, uintptr_t a, uint64_t size, uint64_t *replaced)
{
	*replaced = 0;
	if ((t->n + 1) * 4 > t->cap * 3) {
		size_t cap = t->cap ? t->cap * 2 : 1 << 14;
		struct wblock *v = raw_map(cap * sizeof(*v));
		if (!v && t->n + 1 >= t->cap)
			return 0;
		if (!v)
			goto put; /* fuller than planned, still room */
		struct btab old = *t;
		t->v = v;
		t->cap = cap;
		for (size_t i = 0; i < old.cap; i++)
			if (old.v[i].addr) {
				size_t j = btab_slot(t, old.v[i].addr);
				while (t->v[j].addr)
					j = (j + 1) & (t->cap - 1);
				t->v[j] = old.v[i];
			}
		if (old.v)
			real.munmap(old.v, old.cap * sizeof(*old.v));
	}
put:;
	size_t j = btab_slot(t, a);
	while (t->v[j].addr && t->v[j].addr != a)
		j = (j + 1) & (t->cap - 1);
	if (!t->v[j].addr)
		t->n++;
	else
		*replaced = t->v[j].size;
	t->v[j] = (struct wblock){ a, size };
	return 1;
}

/* Takes the block at a out into *size; 0 if it is not in. */
int btab_take(struct btab *t, uintptr_t a, uint64_t *size)
{
	if (!t->cap || !a)
		return 0;
	size_t j = btab_slot(t, a);
	while (t->v[j].addr && t->v[j].addr != a)
		j = (j + 1) & (t->cap - 1);
	if (!t->v[j].addr)
		return 0;
	*size = t->v[j].size;
	t->n--;
	/* backward shift: the following entries move up to keep every probe
	 * sequence unbroken */
	size_t hole = j;
	for (size_t k = (j + 1) & (t->cap - 1); t->v[k].addr; k = (k + 1) & (t->cap - 1)) {
		size_t home = btab_slot(t, t->v[k].addr);
		/* k's entry may fill the hole if its home is not in (hole, k] */
		if ((k > hole && (home <= hole || home > k)) || (k < hole && home <= hole && home > k)) {
			t->v[hole] = t->v[k];
			hole = k;
		}
	}
	t->v[hole].addr = 0;
	return 1;
}
