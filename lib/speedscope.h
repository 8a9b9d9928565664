/*
 * speedscope.h - replayed sites as a speedscope file
 * (https://www.speedscope.app/file-format-schema.json): the frames, shared,
 * each with its function name, file and line; one "sampled" profile with
 * a sample per distinct stack (frame indices, root first) weighted with
 * the collapsed output's value, in bytes, or "none" for --metric=count.
 */
#ifndef MEMRAY_SPEEDSCOPE_H
#define MEMRAY_SPEEDSCOPE_H

#include <stdio.h>

#include "collapse.h"

/* Writes the file for r's sites, frames as o selects them, to out.
 * Returns the number of samples. */
size_t speedscope_write(FILE *out, struct replay *r, struct symbolizer *sym,
			const struct collapse_opts *o);

#endif
