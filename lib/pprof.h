/*
 * pprof.h - replayed sites as a pprof profile (google/pprof's
 * proto/profile.proto, gzip-compressed), the format of go tool pprof.
 *
 * Two sample types, the allocations (unit "count") and their bytes (unit
 * "bytes"), named after the metric like Go's heap profiles: peak_objects
 * and peak_space for --metric=peak, alloc_objects and alloc_space for
 * count; the metric's own one is the default. A sample per collapsed
 * line, leaf first, with its values. A Python frame is a location per
 * (function, line); a native return address is a location per module and
 * what is shown of it (its functions, inlined ones as further lines),
 * with the first such address seen, in a mapping of its module.
 */
#ifndef MEMRAY_PPROF_H
#define MEMRAY_PPROF_H

#include <stdio.h>

#include "collapse.h"

/* Writes the profile of r's sites, frames as o selects them, to out.
 * Returns the number of samples. */
size_t pprof_write(FILE *out, struct replay *r, struct symbolizer *sym,
		   const struct collapse_opts *o);

#endif
