/*
 * by_function.c - see by_function.h.
 */
#include <stdlib.h>
#include <string.h>

#include "by_function.h"
#include "collapse.h"
#include "util.h"

/* The frames of the site being visited: their rows. */
struct visit {
	struct fn_table *t;
	uint32_t *rows;
	size_t n, cap;
};

/* The file part of a frame: a Python frame's file, a native frame's source
 * file or else the module its text names, nothing for a label. */
static void frame_file(const struct frame_info *f, const char **file, size_t *len)
{
	*file = f->file;
	*len = f->file_len;
	if (f->kind == FRAME_NATIVE && !f->file_len && f->text_len > f->name_len + 3) {
		*file = f->text + f->name_len + 2; /* "name (module)" */
		*len = f->text_len - f->name_len - 3;
	}
}

/* The row of function name in file, added if new. */
static uint32_t row_of(struct fn_table *t, const char *name, size_t name_len, const char *file,
		       size_t file_len)
{
	char stack_key[512], *key = stack_key;
	size_t len = name_len + 1 + file_len;
	if (len > sizeof(stack_key))
		key = xrealloc(NULL, len);
	memcpy(key, name, name_len);
	key[name_len] = 0;
	memcpy(key + name_len + 1, file, file_len);
	uint32_t id = intern(&t->keys, key, len);
	if (key != stack_key)
		free(key);
	if (id > t->n) {
		t->v = xrealloc(t->v, id * sizeof(*t->v));
		const char *k = intern_key(&t->keys, id, NULL);
		t->v[id - 1] = (struct fn_row){ .function = k, .file = k + strlen(k) + 1 };
		t->n = id;
	}
	return id - 1;
}

static void visit_frame(void *ctx, const struct frame_info *f)
{
	struct visit *c = ctx;
	const char *file;
	size_t file_len;
	frame_file(f, &file, &file_len);
	size_t name_len = f->kind == FRAME_LABEL ? f->text_len : f->name_len;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->rows = xrealloc(c->rows, c->cap * sizeof(*c->rows));
	}
	c->rows[c->n++] = row_of(c->t, f->kind == FRAME_LABEL ? f->text : f->name, name_len, file,
				 file_len);
}

/* Counts value bytes in count allocations of site number k into the
 * rows of its frames: all of it into the leaf's own, once into each
 * distinct function's total. */
static void count_site(struct fn_table *t, const struct visit *c, uint64_t k, uint64_t value,
		       uint64_t count)
{
	if (!c->n)
		return;
	struct fn_row *leaf = &t->v[c->rows[c->n - 1]];
	leaf->own_bytes += value;
	leaf->own_count += count;
	for (size_t i = 0; i < c->n; i++) {
		struct fn_row *row = &t->v[c->rows[i]];
		if (row->site == k)
			continue;
		row->site = k;
		row->total_bytes += value;
		row->total_count += count;
	}
}

void fn_table_build(struct fn_table *t, struct replay *r, struct symbolizer *sym, enum metric m)
{
	memset(t, 0, sizeof(*t));
	struct collapse_opts o = { m, FRAMES_AUTO, 0, 0, 0 };
	struct visit c = { t, NULL, 0, 0 };
	for (size_t i = 0; i < r->nsites; i++) {
		const struct site *s = &r->sites[i];
		uint64_t value = site_value(r, s, m), count = site_count(r, s, m);
		if (!value && !count)
			continue;
		c.n = 0;
		collapse_visit(r, sym, &o, s, visit_frame, &c);
		count_site(t, &c, i + 1, value, count);
		t->bytes += value;
		t->count += count;
	}
	free(c.rows);
}

/* ---- order -------------------------------------------------------------------- */

static enum fn_column sort_column;

static uint64_t column(const struct fn_row *r, enum fn_column c)
{
	switch (c) {
	case FN_OWN: return r->own_bytes;
	case FN_TOTAL_COUNT: return r->total_count;
	case FN_OWN_COUNT: return r->own_count;
	default: return r->total_bytes;
	}
}

static int by_column(const void *a, const void *b)
{
	const struct fn_row *x = a, *y = b;
	enum fn_column tie = sort_column == FN_OWN || sort_column == FN_OWN_COUNT ? FN_TOTAL : FN_OWN;
	uint64_t p = column(x, sort_column), q = column(y, sort_column);
	if (p == q) {
		p = column(x, tie);
		q = column(y, tie);
	}
	if (p != q)
		return (p < q) - (p > q);
	int k = strcmp(x->function, y->function);
	return k ? k : strcmp(x->file, y->file);
}

void fn_table_sort(struct fn_table *t, enum fn_column c)
{
	sort_column = c;
	if (t->n)
		qsort(t->v, t->n, sizeof(*t->v), by_column);
}

void fn_table_free(struct fn_table *t)
{
	free(t->v);
	intern_free(&t->keys);
	memset(t, 0, sizeof(*t));
}

static const char *const column_names[] = { "total", "own", "total-count", "own-count" };

int fn_column_parse(const char *name, enum fn_column *c)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(name, column_names[i]) == 0) {
			*c = (enum fn_column)i;
			return 0;
		}
	return -1;
}

const char *fn_column_name(enum fn_column c)
{
	return column_names[c];
}
