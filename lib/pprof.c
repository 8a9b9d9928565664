/*
 * pprof.c - see pprof.h. The protobuf is encoded by hand: varints and
 * length-delimited submessages, built in memory, then gzipped with zlib.
 * Field numbers are those of profile.proto.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "intern.h"
#include "pprof.h"
#include "util.h"

/* ---- protobuf encoding --------------------------------------------------- */

struct pb {
	uint8_t *p;
	size_t len, cap;
};

enum { WIRE_VARINT = 0, WIRE_LEN = 2 };

static void pb_put(struct pb *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = xrealloc(b->p, b->cap);
	}
	if (n)
		memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void pb_varint(struct pb *b, uint64_t v)
{
	uint8_t buf[10];
	size_t n = 0;
	do {
		buf[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	pb_put(b, buf, n);
}

static void pb_key(struct pb *b, unsigned field, unsigned wire)
{
	pb_varint(b, (uint64_t)field << 3 | wire);
}

/* A scalar field; proto3 leaves out the default, 0. */
static void pb_uint(struct pb *b, unsigned field, uint64_t v)
{
	if (!v)
		return;
	pb_key(b, field, WIRE_VARINT);
	pb_varint(b, v);
}

static void pb_bytes(struct pb *b, unsigned field, const void *d, size_t n)
{
	pb_key(b, field, WIRE_LEN);
	pb_varint(b, n);
	pb_put(b, d, n);
}

/* Appends message m as field of b, and empties m for the next one. */
static void pb_msg(struct pb *b, unsigned field, struct pb *m)
{
	pb_bytes(b, field, m->p, m->len);
	m->len = 0;
}

/* A packed repeated scalar field. */
static void pb_packed(struct pb *b, unsigned field, const uint64_t *v, size_t n)
{
	struct pb m = { NULL, 0, 0 };
	for (size_t i = 0; i < n; i++)
		pb_varint(&m, v[i]);
	pb_msg(b, field, &m);
	free(m.p);
}

/* ---- the profile's tables ------------------------------------------------- */

struct line {
	uint64_t function, line;
};

struct location {
	uint64_t mapping, address;
	size_t first_line, nlines; /* in lines, leaf first */
};

struct mapping {
	const struct mr_proc *proc;
	const struct mr_module *module;
};

struct profile {
	enum metric metric;
	struct intern strings;   /* string_table: index = id - 1 */
	struct intern functions; /* key: name, system_name, filename (string indices) */
	struct intern locations; /* key: see frame() */
	struct location *locs;
	size_t locs_cap;
	struct line *lines;
	size_t nlines, lines_cap;
	struct intern mappings;  /* key: a struct mapping */
	struct intern stacks;    /* key: location ids, leaf first */
	uint64_t (*values)[2];   /* per stack: count, bytes */
	size_t values_cap;
	/* the stack being visited, root first, and the frames of the native
	 * return address being visited, outermost first (at most 64: any
	 * further inlined ones are left out) */
	uint64_t *cur;
	size_t ncur, cur_cap;
	struct line group[64];
	size_t ngroup;
};

static uint64_t str_index(struct profile *pp, const char *s, size_t n)
{
	return intern(&pp->strings, s, n) - 1;
}

/* A native function's system name is its name as the symbolizer gives
 * it (a linkage name, which pprof demangles); a Python function has none,
 * or pprof would take its name for C++ and cut "<module>" out. */
static uint64_t function_id(struct profile *pp, const struct frame_info *f)
{
	uint64_t key[3];
	key[0] = str_index(pp, f->name, f->name_len);
	key[1] = f->kind == FRAME_NATIVE ? key[0] : 0;
	key[2] = str_index(pp, f->file, f->file_len);
	return intern(&pp->functions, key, sizeof(key));
}

static uint64_t mapping_id(struct profile *pp, const struct mr_proc *p, uint64_t ip)
{
	struct mapping m;
	memset(&m, 0, sizeof(m));
	m.proc = p;
	m.module = sym_module_of(p, ip);
	return m.module ? intern(&pp->mappings, &m, sizeof(m)) : 0;
}

/* The id of the location with key, made from lines (n of them, leaf
 * first) when new, in the mapping of process p that holds ip, if any. */
static uint64_t location_id(struct profile *pp, const void *key, size_t key_len,
			    const struct line *lines, size_t n, const struct mr_proc *p, uint64_t ip)
{
	size_t before = pp->locations.n;
	uint32_t id = intern(&pp->locations, key, key_len);
	if (pp->locations.n == before)
		return id;
	if (pp->locations.n > pp->locs_cap) {
		pp->locs_cap = pp->locations.n * 2;
		pp->locs = xrealloc(pp->locs, pp->locs_cap * sizeof(*pp->locs));
	}
	if (pp->nlines + n > pp->lines_cap) {
		pp->lines_cap = (pp->nlines + n) * 2;
		pp->lines = xrealloc(pp->lines, pp->lines_cap * sizeof(*pp->lines));
	}
	memcpy(pp->lines + pp->nlines, lines, n * sizeof(*lines));
	/* the call instruction, as the symbolizer names it */
	uint64_t mapping = ip ? mapping_id(pp, p, ip) : 0, address = ip ? ip - 1 : 0;
	pp->locs[id - 1] = (struct location){ mapping, address, pp->nlines, n };
	pp->nlines += n;
	return id;
}

static void push_location(struct profile *pp, uint64_t id)
{
	if (pp->ncur == pp->cur_cap) {
		pp->cur_cap = pp->cur_cap ? pp->cur_cap * 2 : 256;
		pp->cur = xrealloc(pp->cur, pp->cur_cap * sizeof(*pp->cur));
	}
	pp->cur[pp->ncur++] = id;
}

/* A frame_visitor: the location of each frame onto pp->cur. A Python
 * frame or a label is keyed by its function and line. A native return
 * address, once all its frames are seen, by its module and those frames:
 * what a collapsed line shows of it, so that the samples are the
 * collapsed lines; the address is the first one seen that shows them. */
static void frame(void *ctx, const struct frame_info *f)
{
	struct profile *pp = ctx;
	uint64_t fn = function_id(pp, f);
	if (f->kind != FRAME_NATIVE) {
		uint64_t key[3] = { f->kind, fn, f->line };
		struct line l = { fn, f->line };
		push_location(pp, location_id(pp, key, sizeof(key), &l, 1, NULL, 0));
		return;
	}
	enum { GROUP_MAX = sizeof(pp->group) / sizeof(pp->group[0]) };
	if (pp->ngroup < GROUP_MAX)
		pp->group[pp->ngroup++] = (struct line){ fn, f->line };
	if (f->depth + 1 < f->nframes)
		return;
	uint64_t key[2 + 2 * GROUP_MAX];
	struct line lines[GROUP_MAX];
	key[0] = FRAME_NATIVE;
	key[1] = str_index(pp, f->module, strlen(f->module));
	for (size_t i = 0; i < pp->ngroup; i++) {
		key[2 + 2 * i] = pp->group[i].function;
		key[3 + 2 * i] = pp->group[i].line;
		lines[i] = pp->group[pp->ngroup - 1 - i]; /* leaf first */
	}
	push_location(pp, location_id(pp, key, (2 + 2 * pp->ngroup) * sizeof(*key), lines,
				      pp->ngroup, f->proc, f->ip));
	pp->ngroup = 0;
}

static void add_sites(struct profile *pp, struct replay *r, struct symbolizer *sym,
		      const struct collapse_opts *o)
{
	for (size_t i = 0; i < r->nsites; i++) {
		const struct site *s = &r->sites[i];
		uint64_t v = site_value(r, s, o->metric);
		if (!v)
			continue;
		pp->ncur = pp->ngroup = 0;
		collapse_visit(r, sym, o, s, frame, pp);
		/* pprof lists a stack leaf first */
		for (size_t a = 0, b = pp->ncur; a + 1 < b; a++, b--) {
			uint64_t t = pp->cur[a];
			pp->cur[a] = pp->cur[b - 1];
			pp->cur[b - 1] = t;
		}
		size_t before = pp->stacks.n;
		uint32_t id = intern(&pp->stacks, pp->cur, pp->ncur * sizeof(*pp->cur));
		if (pp->stacks.n != before) {
			if (pp->stacks.n > pp->values_cap) {
				pp->values_cap = pp->stacks.n * 2;
				pp->values = xrealloc(pp->values, pp->values_cap * sizeof(*pp->values));
			}
			pp->values[id - 1][0] = pp->values[id - 1][1] = 0;
		}
		if (o->metric == METRIC_COUNT) {
			pp->values[id - 1][0] += v;
			pp->values[id - 1][1] += site_value(r, s, METRIC_TOTAL);
		} else {
			pp->values[id - 1][0] += site_count(r, s, o->metric);
			pp->values[id - 1][1] += v;
		}
	}
}

/* ---- the Profile message -------------------------------------------------- */

static void put_mapping(struct pb *out, struct profile *pp, uint32_t id, struct pb *m)
{
	struct mapping mp;
	memcpy(&mp, intern_key(&pp->mappings, id, NULL), sizeof(mp));
	const struct mr_module *mod = mp.module;
	uint64_t page = mp.proc->header.page_size ? mp.proc->header.page_size : 4096;
	uint64_t lo = UINT64_MAX, hi = 0;
	for (uint32_t k = 0; k < mod->nsegs; k++) {
		if (mod->segs[k].vaddr < lo)
			lo = mod->segs[k].vaddr;
		if (mod->segs[k].vaddr + mod->segs[k].size > hi)
			hi = mod->segs[k].vaddr + mod->segs[k].size;
	}
	char hex[2 * MR_BUILD_ID_MAX + 1];
	hex_string(hex, mod->build_id, mod->build_id_len);
	const char *path = mr_string(mp.proc, mod->path);
	pb_uint(m, 1, id);
	/* the whole image, from its first segment, which starts the file:
	 * offset 0 */
	pb_uint(m, 2, mod->base + (lo / page) * page);
	pb_uint(m, 3, mod->base + (hi + page - 1) / page * page);
	pb_uint(m, 5, str_index(pp, path, strlen(path)));
	pb_uint(m, 6, str_index(pp, hex, strlen(hex)));
	/* already symbolized: pprof is not to look for the files */
	for (unsigned f = 7; f <= 10; f++)
		pb_uint(m, f, 1);
	pb_msg(out, 3, m);
}

static void put_location(struct pb *out, struct profile *pp, uint32_t id, struct pb *m,
			 struct pb *l)
{
	const struct location *loc = &pp->locs[id - 1];
	pb_uint(m, 1, id);
	pb_uint(m, 2, loc->mapping);
	pb_uint(m, 3, loc->address);
	for (size_t k = 0; k < loc->nlines; k++) {
		pb_uint(l, 1, pp->lines[loc->first_line + k].function);
		pb_uint(l, 2, pp->lines[loc->first_line + k].line);
		pb_msg(m, 4, l);
	}
	pb_msg(out, 4, m);
}

static void put_function(struct pb *out, struct profile *pp, uint32_t id, struct pb *m)
{
	uint64_t key[3];
	memcpy(key, intern_key(&pp->functions, id, NULL), sizeof(key));
	pb_uint(m, 1, id);
	pb_uint(m, 2, key[0]);
	pb_uint(m, 3, key[1]);
	pb_uint(m, 4, key[2]);
	pb_msg(out, 5, m);
}

static void put_value_type(struct pb *out, unsigned field, struct profile *pp, const char *type,
			   const char *unit, struct pb *m)
{
	pb_uint(m, 1, str_index(pp, type, strlen(type)));
	pb_uint(m, 2, str_index(pp, unit, strlen(unit)));
	pb_msg(out, field, m);
}

/* One comment per process: its command line. */
static void put_comments(struct pb *out, struct profile *pp, struct replay *r)
{
	size_t *idx = xrealloc(NULL, (r->nprocs ? r->nprocs : 1) * sizeof(*idx));
	size_t np = replay_processes(r, idx, NULL);
	for (size_t k = 0; k < np; k++) {
		const struct mr_proc *p = r->procs[idx[k]].proc;
		char *t = NULL;
		size_t len = 0;
		FILE *m = open_memstream(&t, &len);
		fprintf(m, "pid %u:", p->pid);
		for (uint32_t i = 0; i < p->header.argc; i++)
			fprintf(m, " %s", p->header.argv[i]);
		fclose(m);
		pb_uint(out, 13, str_index(pp, t, len));
		free(t);
	}
	if (r->sample_bytes) {
		char t[160];
		int n = snprintf(t, sizeof(t), "sampled: one sample per %" PRIu64 " bytes allocated "
				 "on average; every value is an estimate", r->sample_bytes);
		pb_uint(out, 13, str_index(pp, t, (size_t)n));
	}
	if (np)
		pb_uint(out, 9, r->procs[idx[0]].proc->header.start_us * 1000);
	free(idx);
}

static void encode(struct pb *out, struct profile *pp, struct replay *r)
{
	struct pb m = { NULL, 0, 0 }, l = { NULL, 0, 0 };
	const char *metric = pp->metric == METRIC_COUNT ? "alloc" : metric_name(pp->metric);
	char objects[32], space[32];
	snprintf(objects, sizeof(objects), "%s_objects", metric);
	snprintf(space, sizeof(space), "%s_space", metric);
	put_value_type(out, 1, pp, objects, "count", &m);
	put_value_type(out, 1, pp, space, "bytes", &m);
	for (uint32_t id = 1; id <= pp->stacks.n; id++) {
		size_t len;
		const char *key = intern_key(&pp->stacks, id, &len);
		uint64_t *locs = xrealloc(NULL, len ? len : 1);
		memcpy(locs, key, len);
		pb_packed(&m, 1, locs, len / sizeof(*locs));
		pb_packed(&m, 2, pp->values[id - 1], 2);
		pb_msg(out, 2, &m);
		free(locs);
	}
	for (uint32_t id = 1; id <= pp->mappings.n; id++)
		put_mapping(out, pp, id, &m);
	for (uint32_t id = 1; id <= pp->locations.n; id++)
		put_location(out, pp, id, &m, &l);
	for (uint32_t id = 1; id <= pp->functions.n; id++)
		put_function(out, pp, id, &m);
	put_comments(out, pp, r);
	pb_uint(out, 10, r->duration_us * 1000);
	if (r->sample_bytes) { /* sampled by bytes: the mean gap as the period */
		put_value_type(out, 11, pp, "space", "bytes", &m);
		pb_uint(out, 12, r->sample_bytes);
	}
	/* the metric's own value is the one shown by default */
	const char *dflt = pp->metric == METRIC_COUNT ? objects : space;
	pb_uint(out, 14, str_index(pp, dflt, strlen(dflt)));
	/* last, so that every string above is in it */
	for (uint32_t id = 1; id <= pp->strings.n; id++) {
		size_t len;
		const char *s = intern_key(&pp->strings, id, &len);
		pb_bytes(out, 6, s, len);
	}
	free(m.p);
	free(l.p);
}

/* ---- gzip ------------------------------------------------------------------ */

static void gzip_write(FILE *out, const uint8_t *data, size_t n)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	/* 16 + 15: a gzip header and trailer around a full window */
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		die(EXIT_USAGE, "cannot start zlib");
	z.next_in = (Bytef *)(uintptr_t)data;
	int ret;
	do {
		uint8_t buf[65536];
		size_t chunk = n > 1u << 30 ? 1u << 30 : n;
		z.avail_in = (uInt)chunk;
		n -= chunk;
		do {
			z.next_out = buf;
			z.avail_out = sizeof(buf);
			ret = deflate(&z, n ? Z_NO_FLUSH : Z_FINISH);
			fwrite(buf, 1, sizeof(buf) - z.avail_out, out);
		} while (z.avail_out == 0);
	} while (n);
	deflateEnd(&z);
	(void)ret;
}

size_t pprof_write(FILE *out, struct replay *r, struct symbolizer *sym,
		   const struct collapse_opts *o)
{
	struct profile pp;
	memset(&pp, 0, sizeof(pp));
	pp.metric = o->metric;
	str_index(&pp, "", 0); /* string_table[0] */
	add_sites(&pp, r, sym, o);
	struct pb body = { NULL, 0, 0 };
	encode(&body, &pp, r);
	gzip_write(out, body.p, body.len);
	size_t n = pp.stacks.n;
	free(body.p);
	intern_free(&pp.strings);
	intern_free(&pp.functions);
	intern_free(&pp.locations);
	intern_free(&pp.mappings);
	intern_free(&pp.stacks);
	free(pp.locs);
	free(pp.lines);
	free(pp.values);
	free(pp.cur);
	return n;
}
