/*
 * replay.c - see replay.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "sample.h"
#include "util.h"

void replay_init(struct replay *r, int by_thread)
{
	memset(r, 0, sizeof(*r));
	memset(r->site_cache, 0xff, sizeof(r->site_cache));
	r->by_thread = by_thread;
	r->stride = 1;
	r->releasing_thread = -1;
}

void replay_free(struct replay *r)
{
	for (size_t i = 0; i < r->nprocs; i++) {
		live_free_all(&r->procs[i].live);
		free(r->procs[i].last_alloc);
	}
	free(r->procs);
	free(r->sites);
	free(r->index);
	free(r->damage);
	memset(r, 0, sizeof(*r));
}

static const char *const metric_names[] = { "peak", "total", "count", "leaked", "temporary" };

const char *metric_unavailable(const struct replay *r, enum metric m)
{
	if (r->sample_bytes && m == METRIC_TEMPORARY)
		return "temporary allocations cannot be told in a sampled stream (recorded with "
		       "--sample-bytes): most of a thread's allocations are not in it";
	return NULL;
}

int metric_parse(const char *name, enum metric *m)
{
	for (int i = 0; i < 5; i++)
		if (strcmp(name, metric_names[i]) == 0) {
			*m = (enum metric)i;
			return 0;
		}
	return -1;
}

enum metric metric_arg(const char *name)
{
	enum metric m;
	if (metric_parse(name, &m) < 0)
		die(EXIT_USAGE, "unknown metric '%s': expected peak, total, count, leaked or "
		    "temporary", name);
	return m;
}

const char *metric_name(enum metric m)
{
	return metric_names[m];
}

uint64_t site_value(const struct replay *r, const struct site *s, enum metric m)
{
	switch (m) {
	case METRIC_PEAK:
		return (uint64_t)(s->snap_epoch == r->high_epoch ? s->snap_bytes : s->cur_bytes);
	case METRIC_TOTAL: return s->total_bytes;
	case METRIC_COUNT: return s->total_count;
	case METRIC_LEAKED: return (uint64_t)(s->cur_bytes + s->gone_bytes);
	case METRIC_TEMPORARY: return s->temp_bytes;
	}
	return 0;
}

uint64_t site_count(const struct replay *r, const struct site *s, enum metric m)
{
	switch (m) {
	case METRIC_PEAK:
		return (uint64_t)(s->snap_epoch == r->high_epoch ? s->snap_count : s->cur_count);
	case METRIC_TOTAL:
	case METRIC_COUNT: return s->total_count;
	case METRIC_LEAKED: return (uint64_t)(s->cur_count + s->gone_count);
	case METRIC_TEMPORARY: return s->temp_count;
	}
	return 0;
}

/* ---- sites -------------------------------------------------------------- */

static uint64_t site_hash(const struct mr_proc *p, uint32_t stack, uint32_t thread)
{
	uint64_t h = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
	h ^= ((uint64_t)stack << 20 | thread) * 0xc2b2ae3d27d4eb4full;
	return h ^ (h >> 31);
}

static uint32_t site_lookup(struct replay *r, struct mr_proc *p, uint32_t stack, uint32_t thread);

/* Sites by a small direct-mapped cache in front of the hash table: a
 * program allocates from few stacks at a time. */
static uint32_t site_for(struct replay *r, struct mr_proc *p, uint32_t stack, uint32_t thread)
{
	if (!r->by_thread)
		thread = 0;
	uint32_t k = (stack ^ thread * 31) & (SITE_CACHE - 1);
	uint32_t ix = r->site_cache[k];
	if (ix < r->nsites) {
		const struct site *s = &r->sites[ix];
		if (s->stack == stack && s->proc == p && s->thread == thread)
			return ix;
	}
	ix = site_lookup(r, p, stack, thread);
	r->site_cache[k] = ix;
	return ix;
}

static uint32_t site_lookup(struct replay *r, struct mr_proc *p, uint32_t stack, uint32_t thread)
{
	if ((r->nsites + 1) * 2 > r->index_cap) {
		size_t cap = r->index_cap ? r->index_cap * 2 : 1024;
		uint32_t *ix = xrealloc(NULL, cap * sizeof(*ix));
		memset(ix, 0xff, cap * sizeof(*ix));
		for (size_t i = 0; i < r->nsites; i++) {
			struct site *s = &r->sites[i];
			size_t j = site_hash(s->proc, s->stack, s->thread) & (cap - 1);
			while (ix[j] != UINT32_MAX)
				j = (j + 1) & (cap - 1);
			ix[j] = (uint32_t)i;
		}
		free(r->index);
		r->index = ix;
		r->index_cap = cap;
	}
	size_t j = site_hash(p, stack, thread) & (r->index_cap - 1);
	while (r->index[j] != UINT32_MAX) {
		struct site *s = &r->sites[r->index[j]];
		if (s->proc == p && s->stack == stack && s->thread == thread)
			return r->index[j];
		j = (j + 1) & (r->index_cap - 1);
	}
	if (r->nsites == r->sites_cap) {
		r->sites_cap = r->sites_cap ? r->sites_cap * 2 : 1024;
		r->sites = xrealloc(r->sites, r->sites_cap * sizeof(*r->sites));
	}
	struct site *s = &r->sites[r->nsites];
	memset(s, 0, sizeof(*s));
	s->proc = p;
	s->stack = stack;
	s->thread = thread;
	r->index[j] = (uint32_t)r->nsites;
	return (uint32_t)r->nsites++;
}

/* Before a site's live bytes change: keep their value at the latest high. */
static void touch(struct replay *r, struct site *s)
{
	if (s->snap_epoch != r->high_epoch) {
		s->snap_bytes = s->cur_bytes;
		s->snap_count = s->cur_count;
		s->snap_epoch = r->high_epoch;
	}
}

static void on_release(void *ctx, uint32_t site, uint64_t addr, uint64_t bytes, uint32_t count)
{
	struct replay *r = ctx;
	struct site *s = &r->sites[site];
	touch(r, s);
	s->cur_bytes -= (int64_t)bytes;
	s->cur_count -= count;
	r->live -= bytes;
	if (r->ending) {
		s->gone_bytes += (int64_t)bytes;
		s->gone_count += count;
		r->gone += bytes;
	}
	if (r->cur)
		r->cur->bytes -= bytes;
	int t = r->releasing_thread;
	if (t >= 0 && r->cur && (size_t)t < r->cur->nthreads && r->cur->last_alloc[t] == addr) {
		s->temp_bytes += bytes;
		s->temp_count += count;
	}
}

static void allocated(struct replay *r, const struct mr_record *rec)
{
	struct replay_proc *rp = r->cur;
	uint64_t bytes = rec->size, count = 1;
	uint64_t gap = rec->proc->header.sample_bytes;
	if (gap && mr_sampled_allocator(rec->allocator)) {
		/* a sample: what it stands for, rounded without bias, the
		 * same way at every reading (keyed by where it is) */
		double w = mr_sample_weight(rec->size, gap);
		uint64_t key = rec->pos * 0x9e3779b97f4a7c15ull ^ rec->addr ^ (uint64_t)rec->proc->pid << 40;
		count = mr_round_by(w, key);
		bytes = mr_round_by(w * (double)rec->size, ~key);
		if (count > UINT32_MAX)
			count = UINT32_MAX;
	}
	uint32_t ix = site_for(r, rec->proc, rec->stack, rec->thread);
	struct site *s = &r->sites[ix];
	touch(r, s);
	/* An address allocated again while live: live_alloc_at releases the
	 * old block first (through on_release). */
	live_alloc_at(&rp->live, rec->allocator, rec->addr, bytes, (uint32_t)count, ix);
	s = &r->sites[ix];
	s->cur_bytes += (int64_t)bytes;
	s->cur_count += (int64_t)count;
	s->total_bytes += bytes;
	s->total_count += count;
	r->live += bytes;
	rp->bytes += bytes;
	if (rp->bytes > rp->peak)
		rp->peak = rp->bytes;
	r->n_allocs += count;
	r->bytes_allocated += bytes;
	r->alloc_count[rec->allocator] += count;
	r->alloc_bytes[rec->allocator] += bytes;
	r->histogram[rec->size ? 64 - __builtin_clzll(rec->size) : 0] += count;
	if (rec->thread < rp->nthreads)
		rp->last_alloc[rec->thread] = rec->addr;
	if (r->live > r->peak) {
		r->peak = r->live;
		r->high_epoch = ++r->epoch;
		r->peak_time_us = r->now_us;
	}
}

/* A FREE or MOVE record's release: counted as one free, or in a sampled
 * stream as the frees the released sample stands for. */
static void released(struct replay *r, const struct mr_record *rec, uint64_t addr,
		     uint64_t len, int temporary_possible)
{
	r->releasing_thread = temporary_possible ? (int)rec->thread : -1;
	int sampled = rec->proc->header.sample_bytes != 0;
	if (rec->allocator == MR_MMAP || rec->allocator == MR_MREMAP ||
	    rec->allocator == MR_MUNMAP) {
		live_free(&r->cur->live, rec->allocator, addr, len);
		r->n_frees++;
	} else {
		/* the common case, without the callback's indirect call */
		struct live_block b;
		if (live_take(&r->cur->live, addr, &b)) {
			on_release(r, b.stack, b.addr, b.size, b.count);
			r->n_frees += sampled ? b.count : 1;
		} else if (!sampled) {
			r->n_frees++;
		}
	}
	r->releasing_thread = -1;
	if (r->cur && rec->thread < r->cur->nthreads && r->cur->last_alloc[rec->thread] == addr)
		r->cur->last_alloc[rec->thread] = 0;
}

static struct replay_proc *proc_of(struct replay *r, struct mr_proc *p)
{
	if (r->cur && r->cur->proc == p)
		return r->cur;
	for (size_t i = r->nprocs; i-- > 0;)
		if (r->procs[i].proc == p)
			return &r->procs[i];
	/* A new process, or a new image of one after exec: the old image's
	 * memory is gone. */
	for (size_t i = 0; i < r->nprocs; i++)
		if (r->procs[i].proc->pid == p->pid && r->procs[i].live.on_release) {
			r->cur = &r->procs[i];
			live_release_all(&r->procs[i].live);
		}
	r->procs = xrealloc(r->procs, (r->nprocs + 1) * sizeof(*r->procs));
	struct replay_proc *rp = &r->procs[r->nprocs++];
	memset(rp, 0, sizeof(*rp));
	rp->proc = p;
	live_init(&rp->live);
	rp->live.on_release = on_release;
	rp->live.ctx = r;
	if (p->header.sample_bytes > r->sample_bytes)
		r->sample_bytes = p->header.sample_bytes;
	return rp;
}

/* A record's time (from its own program image's start) on the time line
 * of the first image replayed: the images of --follow-fork's processes,
 * and those after an exec, each count from their own start, which their
 * headers give in wall-clock microseconds. */
static uint64_t common_time(struct replay *r, const struct mr_proc *p, uint64_t time_us)
{
	uint64_t start = p->header.start_us;
	if (!r->base_start_us)
		r->base_start_us = start;
	return start > r->base_start_us ? time_us + (start - r->base_start_us) : time_us;
}

static void add_timepoint(struct replay *r, uint64_t time_us, uint64_t rss)
{
	/* The timeline's times are told in milliseconds: a point in the
	 * millisecond of the last one kept (such as the memory record that
	 * ends a stream, just after the sampler's) replaces it, the later
	 * heap winning, so that no two points tell of the same moment. */
	struct timepoint *last = r->ntimeline ? &r->timeline[r->ntimeline - 1] : NULL;
	if (last && timeline_ms(last->time_us) == timeline_ms(time_us)) {
		*last = (struct timepoint){ time_us, rss, r->live };
		if (r->on_timepoint)
			r->on_timepoint(r->timepoint_ctx, r);
		return;
	}
	if (r->skipped + 1 < r->stride) {
		r->skipped++;
		return;
	}
	r->skipped = 0;
	if (r->ntimeline == TIMELINE_MAX) {
		/* full: keep every other point, and from now on every other one */
		for (size_t i = 0; i < TIMELINE_MAX / 2; i++)
			r->timeline[i] = r->timeline[2 * i + 1];
		r->ntimeline = TIMELINE_MAX / 2;
		r->stride *= 2;
	}
	r->timeline[r->ntimeline++] = (struct timepoint){ time_us, rss, r->live };
	if (r->on_timepoint)
		r->on_timepoint(r->timepoint_ctx, r);
}

void replay_record(struct replay *r, const struct mr_record *rec)
{
	struct mr_proc *p = rec->proc;
	r->cur = proc_of(r, p);
	struct replay_proc *rp = r->cur;
	/* by the record's own thread id: the reader may be decoding ahead in
	 * another thread, so p's tables are not looked at here */
	if (rec->thread >= rp->nthreads) {
		size_t n = (size_t)rec->thread + 1;
		rp->last_alloc = xrealloc(rp->last_alloc, n * sizeof(uint64_t));
		memset(rp->last_alloc + rp->nthreads, 0, (n - rp->nthreads) * sizeof(uint64_t));
		rp->nthreads = n;
	}
	switch (rec->tag & 0xe0) {
	case MR_TAG_ALLOC:
		allocated(r, rec);
		return;
	case MR_TAG_FREE:
		released(r, rec, rec->addr, rec->size, 1);
		return;
	case MR_TAG_MOVE:
		released(r, rec, rec->old_addr, rec->old_size, 0);
		allocated(r, rec);
		return;
	}
	if (rec->tag == MR_TAG_MEMORY) {
		uint64_t t = common_time(r, p, rec->time_us);
		/* the processes' records in stream order, which is a real
		 * order: a time a little behind the last (another process's
		 * clock read a moment earlier) is taken as the last */
		if (r->ntimeline && t < r->timeline[r->ntimeline - 1].time_us)
			t = r->timeline[r->ntimeline - 1].time_us;
		r->now_us = t;
		if (rec->rss > r->peak_rss)
			r->peak_rss = rec->rss;
		if (t > r->duration_us)
			r->duration_us = t;
		add_timepoint(r, t, rec->rss);
	} else if (rec->tag == MR_TAG_TRAILER || rec->tag == MR_TAG_EXEC) {
		uint64_t t = common_time(r, p, rec->time_us);
		if (t > r->duration_us)
			r->duration_us = t;
		if (rec->tag == MR_TAG_TRAILER) {
			/* the process has ended: its memory is given back, and
			 * what it never freed is leaked (gone); an exec's image
			 * gives its memory back when the next one starts */
			r->ending = 1;
			live_release_all(&rp->live);
			r->ending = 0;
		}
	}
}

/* ---- processes ----------------------------------------------------------- */

static const struct replay *sort_r;

static int by_pid_then_index(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	uint32_t px = sort_r->procs[x].proc->pid, py = sort_r->procs[y].proc->pid;
	if (px != py)
		return px < py ? -1 : 1;
	return (x > y) - (x < y);
}

static int by_index(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return (x > y) - (x < y);
}

size_t replay_processes(const struct replay *r, size_t *idx, uint64_t *peak)
{
	size_t n = r->nprocs, k = 0;
	if (!n)
		return 0;
	size_t *v = xrealloc(NULL, n * sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = i;
	sort_r = r;
	qsort(v, n, sizeof(*v), by_pid_then_index);
	uint64_t high = 0;
	for (size_t i = 0; i < n; i++) {
		if (r->procs[v[i]].peak > high)
			high = r->procs[v[i]].peak;
		if (i + 1 == n || r->procs[v[i + 1]].proc->pid != r->procs[v[i]].proc->pid) {
			v[k] = v[i]; /* the pid's last image, its images' highest peak */
			if (peak)
				peak[v[i]] = high;
			k++;
			high = 0;
		}
	}
	qsort(v, k, sizeof(*v), by_index);
	memcpy(idx, v, k * sizeof(*v));
	free(v);
	return k;
}

const char *replay_python_note(const struct replay *r, char *buf, size_t n,
			       const char **version)
{
	const char *note = NULL;
	if (version)
		*version = NULL;
	for (size_t i = 0; i < r->nprocs; i++) {
		const struct mr_header *h = &r->procs[i].proc->header;
		if (!(h->flags & MR_F_PYINFO) || !h->python_version)
			continue;
		if (version && !*version)
			*version = h->python_version;
		if (note || !h->python_problem || !h->python_problem[0])
			continue;
		snprintf(buf, n, "%s: %s%s", h->python_version,
			 h->flags & MR_F_PYTHON ? "" : "Python stacks not recorded, native stacks only: ",
			 h->python_problem);
		note = buf;
	}
	return note;
}
