/*
 * collapse.h - replayed sites written as collapsed stacks: one line per
 * distinct stack, frames root first joined by ';', a space, an integer.
 *
 * Frame text is escaped so a line always parses: a backslash, a ';', a
 * control byte or a byte that is not part of valid UTF-8 is written as
 * \\, \x3b, \n (newline), \t (tab) or \xNN.
 */
#ifndef MEMRAY_COLLAPSE_H
#define MEMRAY_COLLAPSE_H

#include <stdio.h>

#include "replay.h"
#include "symbolize.h"

enum frames_mode { FRAMES_AUTO, FRAMES_NATIVE, FRAMES_PYTHON };

struct collapse_opts {
	enum metric metric;
	enum frames_mode frames;
	int by_thread;
	int hide_import_system;
	int all_frames; /* keep CPython's own native frames in hybrid stacks */
};

/* One distinct rendered stack: escaped frames joined by ';'. */
struct collapsed {
	char *text;
	size_t len;
	uint64_t value, count; /* the metric, and the allocations behind it */
};

/* The distinct stacks with a non-zero value, sorted by text; free with
 * collapse_lines_free. */
size_t collapse_lines(struct replay *r, struct symbolizer *sym, const struct collapse_opts *o,
		      struct collapsed **out);
void collapse_lines_free(struct collapsed *v, size_t n);
/* One site's stack as a collapsed line without its value (malloc'd, *len
 * bytes), or NULL if out of memory. */
char *collapse_site(struct replay *r, struct symbolizer *sym, const struct collapse_opts *o,
		    const struct site *site, size_t *len);
/* "# key: value" metadata lines. */
void collapse_meta(FILE *out, struct replay *r, const struct collapse_opts *o);
/* Metadata, then the stacks. Returns the number of stack lines. */
size_t collapse_write(FILE *out, struct replay *r, struct symbolizer *sym,
		      const struct collapse_opts *o);

/* Appends s escaped as described above to f. */
void collapse_escape(FILE *f, const char *s, size_t n);

#endif
