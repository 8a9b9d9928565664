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

/* Each site's live bytes and allocations at the points the replay's
 * timeline keeps, as collapse_temporal_start collects them. */
struct collapse_temporal;

/* What collapse_write_extra adds, each on "# " lines that collapsed-stack
 * tools ignore (see memray-fold(1), COLLAPSED STACKS). */
struct collapse_extra {
	int annotate; /* before each stack, its allocation count and, when
		       * more than one thread allocated, its value by thread;
		       * the replay must then be by thread */
	int sources;  /* the source text of the Python frames' lines */
	/* when not NULL, before each stack its live bytes over time, and
	 * stacks with none at the metric's moment but some at a timeline
	 * point are written too, with the value 0 (needs annotate) */
	struct collapse_temporal *temporal;
};

/* Starts collecting what collapse_extra.temporal needs from r, which
 * must not have replayed anything yet; memory grows with the sites and
 * the timeline's points (at most TIMELINE_MAX), never with the length
 * of the stream. */
struct collapse_temporal *collapse_temporal_start(struct replay *r);
void collapse_temporal_free(struct collapse_temporal *t);

/* A stack's value in one thread: thread is the id in the "# thread="
 * table, value and count the metric's. */
struct collapsed_part {
	uint32_t thread;
	uint64_t value, count;
};

/* One distinct rendered stack: escaped frames joined by ';'. */
struct collapsed {
	char *text;
	size_t len;
	uint64_t value, count; /* the metric, and the allocations behind it */
	/* every site's totals, whatever the metric: bytes allocated, and the
	 * allocations behind them (of sites with bytes); temporary bytes and
	 * allocations (memray-stat's three lists from one pass) */
	uint64_t bytes, bytes_count, temp_bytes, temp_count;
	struct collapsed_part *parts; /* with annotate: by thread, else NULL */
	size_t nparts;
	/* with temporal: the changes of its live bytes and count, at the
	 * timeline's points (ms from the start), by thread, else NULL */
	struct collapsed_change { uint64_t ms; uint32_t thread; int64_t bytes, count; } *changes;
	size_t nchanges;
};

/* The distinct stacks with a non-zero value, sorted by text; free with
 * collapse_lines_free. */
size_t collapse_lines(struct replay *r, struct symbolizer *sym, const struct collapse_opts *o,
		      struct collapsed **out);
void collapse_lines_free(struct collapsed *v, size_t n);
/* Frees what lines v[from..n) hold (not v itself). */
void collapse_lines_free_from(struct collapsed *v, size_t from, size_t n);
/* One site's stack as a collapsed line without its value (malloc'd, *len
 * bytes), or NULL if out of memory. */
char *collapse_site(struct replay *r, struct symbolizer *sym, const struct collapse_opts *o,
		    const struct site *site, size_t *len);
/* "# key: value" metadata lines. */
void collapse_meta(FILE *out, struct replay *r, const struct collapse_opts *o);
/* Metadata, then the stacks. Returns the number of stack lines. */
size_t collapse_write(FILE *out, struct replay *r, struct symbolizer *sym,
		      const struct collapse_opts *o);
/* collapse_write with what x asks for too. */
size_t collapse_write_extra(FILE *out, struct replay *r, struct symbolizer *sym,
			    const struct collapse_opts *o, const struct collapse_extra *x);

/* One frame of a site's stack as collapse_visit hands it over: the parts
 * of what a collapsed line shows, unescaped. Pointers are valid during
 * the call only. */
struct frame_info {
	enum frame_kind {
		FRAME_PYTHON,
		FRAME_NATIVE,
		FRAME_LABEL, /* a thread's root frame, or "[unknown]": text only */
	} kind;
	const char *text; size_t text_len; /* the frame as a collapsed line shows it */
	const char *name; size_t name_len; /* function, symbol or 0xADDR; a label's text */
	const char *file; size_t file_len; /* the source file, "" when unknown (native
	                                    * frames: the base name debug info gives) */
	uint32_t line;                     /* 0 when unknown */
	const struct mr_proc *proc;
	/* native frames: the return address, its module's path ("" if none),
	 * and this frame's place among the frames of ip (several when
	 * functions were inlined there): depth 0 is the outermost, visited
	 * first, depth nframes - 1 the innermost. */
	uint64_t ip;
	const char *module;
	unsigned depth, nframes;
};

typedef void frame_visitor(void *ctx, const struct frame_info *f);

/* Calls visit for each frame of site's stack, root first: the frames,
 * and only those, that a collapsed line of the site shows with options o. */
void collapse_visit(struct replay *r, struct symbolizer *sym, const struct collapse_opts *o,
		    const struct site *site, frame_visitor *visit, void *ctx);

/* Whether a Python frame's file (n bytes) is the import system's:
 * importlib's bootstrap, frozen or not. */
int collapse_is_import_system(const char *file, size_t n);

/* Appends s escaped as described above to f. */
void collapse_escape(FILE *f, const char *s, size_t n);
/* A metadata line # key="TEXT", TEXT escaped as put_quoted does. */
void collapse_meta_str(FILE *out, const char *key, const char *s, size_t n);

#endif
