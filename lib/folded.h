/*
 * folded.h - reading collapsed stacks ("frame;frame;frame 123"), from
 * memray-fold or any other tool (heaptrack_print -F, stackcollapse-perf,
 * inferno). Lines starting with "# " are metadata; a line that does not
 * end in a space and an integer is counted as malformed and skipped.
 */
#ifndef MEMRAY_FOLDED_H
#define MEMRAY_FOLDED_H

#include <stddef.h>
#include <stdint.h>

struct mr_input;

struct folded_sink {
	/* frames: the stack text (frames joined by ';'), len bytes */
	void (*stack)(void *ctx, const char *frames, size_t len, uint64_t value);
	/* key and value of a "# key: value" line (value may be empty) */
	void (*meta)(void *ctx, const char *key, const char *value);
	void *ctx;
	/* when set, a line ending in two integers ("frames 10 20": before and
	 * after, as memray-diff and flamegraph.pl's difffolded.pl write) comes
	 * here instead of to stack */
	void (*stack2)(void *ctx, const char *frames, size_t len, uint64_t before, uint64_t after);
};

/* What folded_read saw, besides the malformed lines it returns. */
struct folded_stats {
	long lines;    /* stack and metadata lines */
	long too_long; /* lines over FOLDED_LINE_MAX bytes, skipped */
	int gave_up;   /* no stack nor metadata in the first FOLDED_SNIFF bytes:
			* not collapsed stacks, and not read further */
	int no_memory; /* the line buffer could not grow */
};
#define FOLDED_LINE_MAX (16u << 20)
#define FOLDED_SNIFF (64u << 20)

/* Reads every line of in, in memory bounded by FOLDED_LINE_MAX. Returns
 * the number of malformed lines, or -1 on a read error or when memory ran
 * out; what else it saw into *st if not NULL. */
long folded_read(struct mr_input *in, const struct folded_sink *sink, struct folded_stats *st);
/* folded_read, then a message naming the input for a read error or
 * malformed lines, and in closed. Returns 0; 2 on a read error;
 * EXIT_REFUSED when no stack or metadata line is in it (not collapsed
 * stacks at all, or empty), for the caller to exit before writing
 * anything. */
int folded_read_input(struct mr_input *in, const struct folded_sink *sink);

#endif
