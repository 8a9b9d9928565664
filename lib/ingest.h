/*
 * ingest.h - feeding inputs to a replay: the reading loop every filter
 * shares. Readers are kept until ingest_free, since the replay's sites
 * point into their tables.
 */
#ifndef MEMRAY_INGEST_H
#define MEMRAY_INGEST_H

#include "replay.h"
#include "stream.h"

struct ingest {
	struct mr_reader **readers;
	size_t n;
	int saw_pymalloc; /* a Python process ran with pymalloc hiding objects */
	/* when set, each native frame read is passed to sym_prefetch */
	struct symbolizer *prefetch;
};

/* Replays path ("-" is stdin), only process pid if pid >= 0. Returns 0,
 * or 2 after reporting the damage on stderr (what came before it has been
 * replayed), or EXIT_REFUSED when nothing in it could be read (a missing
 * file, not a stream, an empty one). */
int ingest_file(struct ingest *g, struct replay *r, const char *path, long pid);
/* The same for an input already open; it is closed. */
struct mr_input;
int ingest_input(struct ingest *g, struct replay *r, struct mr_input *in, long pid);
/* Replays the n files (standard input when n is 0), only process pid if
 * pid >= 0, going on after a damaged one. Returns 0, 2 if any input was
 * damaged or unreadable, or EXIT_REFUSED if none held anything readable;
 * exits 2 when the input has no process pid. */
int ingest_files(struct ingest *g, struct replay *r, char *const *files, int n, long pid);
void ingest_free(struct ingest *g);

#endif
