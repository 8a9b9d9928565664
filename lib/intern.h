/*
 * intern.h - byte strings interned to dense ids 1, 2, 3... in the order
 * they were first seen: the string, function, location and stack tables
 * of the export formats.
 */
#ifndef MEMRAY_INTERN_H
#define MEMRAY_INTERN_H

#include <stddef.h>
#include <stdint.h>

struct intern {
	struct intern_entry {
		char *key;     /* a copy of the key, NUL-terminated */
		size_t len;
		uint64_t hash;
	} *v;                  /* v[id - 1] */
	size_t n, cap;
	uint32_t *index;       /* open addressing: id - 1, or UINT32_MAX if free */
	size_t index_cap;      /* a power of two, at least twice n */
};

#define INTERN_INIT { NULL, 0, 0, NULL, 0 }

/* The id of key (len bytes, any content), which is added if new: ids
 * count from 1. Dies (exit status 2) when memory runs out. */
uint32_t intern(struct intern *t, const void *key, size_t len);
/* The key of id (1 to t->n), NUL-terminated; its length in *len if not NULL. */
const char *intern_key(const struct intern *t, uint32_t id, size_t *len);
void intern_free(struct intern *t);

#endif
