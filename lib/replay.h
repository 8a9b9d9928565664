/*
 * replay.h - one pass over a stream, keeping for every (process, stack,
 * thread) the numbers every metric needs, in memory bounded by the live
 * allocations and the distinct stacks, never by the stream's length.
 *
 * Peak (the high-water mark of live bytes) costs O(1) per event: each new
 * high starts an epoch; a site's live bytes are snapshotted the first time
 * they change after the latest high, so at the end a site's value at the
 * peak is its snapshot if it changed since, else its current value.
 */
#ifndef MEMRAY_REPLAY_H
#define MEMRAY_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "live.h"
#include "stream.h"

enum metric { METRIC_PEAK, METRIC_TOTAL, METRIC_COUNT, METRIC_LEAKED, METRIC_TEMPORARY };

/* One allocation site: a stack of a process (and a thread, by thread). */
struct site {
	struct mr_proc *proc;
	uint32_t stack, thread;
	int64_t cur_bytes, cur_count;     /* live now */
	int64_t gone_bytes, gone_count;   /* live when their process ended:
					   * leaked, but no longer in memory */
	int64_t snap_bytes, snap_count;   /* live at the latest high, if changed since */
	uint64_t snap_epoch;
	uint64_t total_bytes, total_count;
	uint64_t temp_bytes, temp_count;
};

struct replay_proc {
	struct mr_proc *proc;
	struct live live;
	uint64_t *last_alloc; /* per thread: the address of its latest allocation */
	size_t nthreads;
	uint64_t bytes, peak; /* this process image's own live bytes, and their high */
};

struct timepoint {
	uint64_t time_us, rss, heap;
};

#define TIMELINE_MAX 1000

/* The millisecond a timeline point is told at: no two points of the
 * timeline share one. */
static inline uint64_t timeline_ms(uint64_t time_us)
{
	return time_us / 1000;
}

#define SITE_CACHE 256

struct replay {
	int by_thread;
	struct site *sites;
	size_t nsites, sites_cap;
	uint32_t *index; /* open addressing over sites, by (proc, stack, thread) */
	size_t index_cap;
	struct replay_proc *procs;
	size_t nprocs;
	uint64_t live, peak, epoch, high_epoch;
	uint64_t peak_time_us; /* the last memory record's time when the peak was reached */
	uint64_t now_us, duration_us;
	uint64_t base_start_us; /* the first image's start: times count from it */
	uint64_t n_allocs, n_frees, bytes_allocated, peak_rss;
	struct timepoint timeline[TIMELINE_MAX];
	size_t ntimeline, stride, skipped;
	uint64_t alloc_count[MR_ALLOCATOR_END], alloc_bytes[MR_ALLOCATOR_END];
	uint64_t histogram[65]; /* allocations by size: [0] size 0, [k] 2^(k-1) <= size < 2^k */
	int releasing_thread; /* the thread whose free is being replayed, or -1 */
	/* Bytes still live in processes that have ended (their TRAILER): not
	 * in live, whose peak is memory in use at one time, but leaked
	 * (live at end is live + gone). */
	uint64_t gone;
	int ending; /* a process's blocks are being released at its end */
	uint64_t sample_bytes; /* a sampled stream was read (the largest mean gap):
				* every value is an estimate */
	struct replay_proc *cur;
	uint32_t site_cache[SITE_CACHE];
	/* When set, called with timepoint_ctx each time the timeline keeps a
	 * point (the last of timeline; it may have been thinned just before,
	 * or it may have replaced the last point, of the same millisecond). */
	void (*on_timepoint)(void *ctx, struct replay *r);
	void *timepoint_ctx;
	/* the first damage an input read had ("NAME: truncated at byte N:
	 * ..."): what follows it was not replayed; the readers write it
	 * with their output (set by ingest.c); NULL: none */
	char *damage;
};

void replay_init(struct replay *r, int by_thread);
void replay_free(struct replay *r);
/* Feeds one record (every record of the stream, in order). */
void replay_record(struct replay *r, const struct mr_record *rec);
/* The site's value for a metric. */
uint64_t site_value(const struct replay *r, const struct site *s, enum metric m);
/* The number of allocations behind that value. */
uint64_t site_count(const struct replay *r, const struct site *s, enum metric m);
/* The processes of the replay: the index in r->procs of each pid's last
 * image (after any exec), in the order those appear, into idx (room for
 * r->nprocs); with peak (r->nprocs entries), peak[index] is the highest
 * peak of that pid's images. Returns how many. */
size_t replay_processes(const struct replay *r, size_t *idx, uint64_t *peak);
int metric_parse(const char *name, enum metric *m);
/* The metric named by an option's argument, or dies (exit status 2)
 * saying which names there are. */
enum metric metric_arg(const char *name);
/* NULL if the metric can be had from what was replayed, else why not. */
const char *metric_unavailable(const struct replay *r, enum metric m);
const char *metric_name(enum metric m);
/* What a reader must say of the Python stacks of the stream: for the
 * first program image that is a Python whose frames were not read, or
 * were read in a way of note, "VERSION: why" into buf; NULL if there is
 * nothing to say. With version (if not NULL) the version of the first
 * Python image, or NULL. */
const char *replay_python_note(const struct replay *r, char *buf, size_t n,
			       const char **version);

#endif
