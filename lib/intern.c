/*
 * intern.c - see intern.h.
 */
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "util.h"

static uint64_t hash_bytes(const unsigned char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 0x100000001b3ull;
	return h;
}

static void grow_index(struct intern *t)
{
	size_t cap = t->index_cap ? t->index_cap * 2 : 256;
	uint32_t *ix = xrealloc(NULL, cap * sizeof(*ix));
	memset(ix, 0xff, cap * sizeof(*ix));
	for (size_t i = 0; i < t->n; i++) {
		size_t j = t->v[i].hash & (cap - 1);
		while (ix[j] != UINT32_MAX)
			j = (j + 1) & (cap - 1);
		ix[j] = (uint32_t)i;
	}
	free(t->index);
	t->index = ix;
	t->index_cap = cap;
}

uint32_t intern(struct intern *t, const void *key, size_t len)
{
	if ((t->n + 1) * 2 > t->index_cap)
		grow_index(t);
	uint64_t h = hash_bytes(key, len);
	size_t j = h & (t->index_cap - 1);
	for (; t->index[j] != UINT32_MAX; j = (j + 1) & (t->index_cap - 1)) {
		const struct intern_entry *e = &t->v[t->index[j]];
		if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
			return t->index[j] + 1;
	}
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 256;
		t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
	}
	char *copy = xrealloc(NULL, len + 1);
	memcpy(copy, key, len);
	copy[len] = 0;
	t->v[t->n] = (struct intern_entry){ copy, len, h };
	t->index[j] = (uint32_t)t->n;
	return (uint32_t)++t->n;
}

const char *intern_key(const struct intern *t, uint32_t id, size_t *len)
{
	if (len)
		*len = t->v[id - 1].len;
	return t->v[id - 1].key;
}

void intern_free(struct intern *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].key);
	free(t->v);
	free(t->index);
	memset(t, 0, sizeof(*t));
}
