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

/* Writes "# key: value" metadata lines, then the collapsed stacks sorted
 * by text. Returns the number of stack lines. */
size_t collapse_write(FILE *out, struct replay *r, struct symbolizer *sym,
		      const struct collapse_opts *o);

/* Appends s escaped as described above to f. */
void collapse_escape(FILE *f, const char *s, size_t n);

#endif
