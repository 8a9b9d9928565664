/*
 * by_function.h - the table of functions of memray's summary and table
 * reporters: for each function (its name and file, without line numbers,
 * as the frames of memray-fold show it), what it allocated itself and
 * what was allocated under it, in bytes of one metric and in allocations.
 *
 * "Own" is what stacks whose leaf is the function hold; "total" is what
 * every stack the function is in holds, counted once per stack however
 * often the function recurs in it.
 */
#ifndef MEMRAY_BY_FUNCTION_H
#define MEMRAY_BY_FUNCTION_H

#include <stdint.h>

#include "intern.h"
#include "replay.h"
#include "symbolize.h"

struct fn_row {
	const char *function, *file; /* unescaped; file "" for a label such as
				      * [unknown]; valid while the table is */
	uint64_t own_bytes, total_bytes, own_count, total_count;
	uint64_t site;               /* the last site counted into the totals */
};

struct fn_table {
	struct fn_row *v;
	size_t n;
	uint64_t bytes, count; /* the metric over every site: 100% */
	struct intern keys;    /* function '\0' file: row id + 1 */
};

enum fn_column { FN_TOTAL, FN_OWN, FN_TOTAL_COUNT, FN_OWN_COUNT };

/* The table of r's sites for metric m (a metric in bytes: not
 * METRIC_COUNT), frames as memray-fold shows them by default; rows in
 * order of first sight. Dies if memory runs out. */
void fn_table_build(struct fn_table *t, struct replay *r, struct symbolizer *sym, enum metric m);
/* Sorts the rows by column c, largest first; ties by own bytes (total
 * bytes when c is an own column), then by function and file. After it the
 * table is only read. */
void fn_table_sort(struct fn_table *t, enum fn_column c);
void fn_table_free(struct fn_table *t);
/* The column named name ("total", "own", "total-count", "own-count"):
 * 0, or -1 if there is none of that name. */
int fn_column_parse(const char *name, enum fn_column *c);
const char *fn_column_name(enum fn_column c);

#endif
