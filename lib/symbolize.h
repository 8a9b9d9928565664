/*
 * symbolize.h - native frames named offline from a stream's module
 * records, with elfutils' libdw: function, file:line, inlined frames.
 * Each module file is opened once; a file whose build-id differs from the
 * recorded one is reported once and gives raw addresses, never wrong
 * names.
 */
#ifndef MEMRAY_SYMBOLIZE_H
#define MEMRAY_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

#include "stream.h"

struct symbolizer;

struct symbolizer *sym_new(void);
void sym_free(struct symbolizer *s);

/* The frames of return address ip in process p, root first, as
 * "function (file:line)", "function (libfoo.so)" or "0xADDR (libfoo.so)",
 * joined by '\n' (several when functions were inlined). The text stays
 * valid until sym_free. *module receives the module's path ("" if none). */
const char *sym_frames(struct symbolizer *s, const struct mr_proc *p, uint64_t ip,
		       const char **module);

/* Says that the native frame at return address ip of process p will be
 * symbolized: its module's debug information is read ahead by a thread
 * of the symbolizer's own while the caller goes on reading the stream. */
void sym_prefetch(struct symbolizer *s, const struct mr_proc *p, uint64_t ip);

/* The module of process p whose executable segment holds return address
 * ip (one loaded now first, then one since unloaded), or NULL. */
const struct mr_module *sym_module_of(const struct mr_proc *p, uint64_t ip);

#endif
