/*
 * speedscope.c - see speedscope.h. Every text from the stream goes
 * through json_string.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "speedscope.h"
#include "util.h"

struct file {
	struct intern frames; /* key: name NUL file NUL line (4 bytes) */
	struct intern stacks; /* key: frame ids, root first */
	uint64_t *weights;    /* per stack */
	size_t weights_cap;
	uint32_t *cur;        /* the stack being visited */
	size_t ncur, cur_cap;
};

/* A frame_visitor: each frame's id onto f->cur. A native frame without
 * a source file names its module as its file. */
static void frame(void *ctx, const struct frame_info *fi)
{
	struct file *f = ctx;
	const char *file = fi->file;
	size_t file_len = fi->file_len;
	if (!file_len && fi->kind == FRAME_NATIVE) {
		file = fi->module;
		file_len = strlen(file);
	}
	size_t len = fi->name_len + 1 + file_len + 1 + 4;
	char *key = xrealloc(NULL, len);
	memcpy(key, fi->name, fi->name_len);
	key[fi->name_len] = 0;
	memcpy(key + fi->name_len + 1, file, file_len);
	key[fi->name_len + 1 + file_len] = 0;
	memcpy(key + len - 4, &fi->line, 4);
	if (f->ncur == f->cur_cap) {
		f->cur_cap = f->cur_cap ? f->cur_cap * 2 : 256;
		f->cur = xrealloc(f->cur, f->cur_cap * sizeof(*f->cur));
	}
	f->cur[f->ncur++] = intern(&f->frames, key, len);
	free(key);
}

static void put_frame(FILE *out, const struct file *f, uint32_t id)
{
	size_t len;
	const char *key = intern_key(&f->frames, id, &len);
	const char *file = key + strlen(key) + 1;
	uint32_t line;
	memcpy(&line, key + len - 4, 4);
	fputs(id > 1 ? ",\n{\"name\":" : "\n{\"name\":", out);
	json_string(out, key, strlen(key));
	if (*file) {
		fputs(",\"file\":", out);
		json_string(out, file, strlen(file));
	}
	if (line)
		fprintf(out, ",\"line\":%" PRIu32, line);
	fputc('}', out);
}

static const struct file *sort_file;

/* Stacks in the order of their frame ids, so that stacks sharing a
 * prefix are neighbours in speedscope's time-ordered view. */
static int by_frames(const void *a, const void *b)
{
	size_t la, lb;
	const char *ka = intern_key(&sort_file->stacks, *(const uint32_t *)a, &la);
	const char *kb = intern_key(&sort_file->stacks, *(const uint32_t *)b, &lb);
	for (size_t i = 0; i < la && i < lb; i += 4) {
		uint32_t x, y;
		memcpy(&x, ka + i, 4);
		memcpy(&y, kb + i, 4);
		if (x != y)
			return x < y ? -1 : 1;
	}
	return (la > lb) - (la < lb);
}

/* The first process's command line, as the profile's name (saying when
 * the values are estimates). */
static void put_command(FILE *out, struct replay *r)
{
	char *t = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&t, &len);
	size_t *idx = xrealloc(NULL, (r->nprocs ? r->nprocs : 1) * sizeof(*idx));
	if (replay_processes(r, idx, NULL)) {
		const struct mr_proc *p = r->procs[idx[0]].proc;
		for (uint32_t i = 0; i < p->header.argc; i++)
			fprintf(m, "%s%s", i ? " " : "", p->header.argv[i]);
	}
	if (r->sample_bytes)
		fprintf(m, " (sampled: estimates, one sample per %" PRIu64 " bytes)", r->sample_bytes);
	fclose(m);
	json_string(out, t, len);
	free(t);
	free(idx);
}

static void put_file(FILE *out, struct file *f, struct replay *r, enum metric metric)
{
	uint32_t *order = xrealloc(NULL, (f->stacks.n ? f->stacks.n : 1) * sizeof(*order));
	uint64_t total = 0;
	for (uint32_t id = 1; id <= f->stacks.n; id++) {
		order[id - 1] = id;
		total += f->weights[id - 1];
	}
	sort_file = f;
	qsort(order, f->stacks.n, sizeof(*order), by_frames);
	fputs("{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\n", out);
	fprintf(out, "\"exporter\":\"memray-c %s\",\"name\":", MEMRAY_VERSION);
	put_command(out, r);
	fputs(",\"activeProfileIndex\":0,\n\"shared\":{\"frames\":[", out);
	for (uint32_t id = 1; id <= f->frames.n; id++)
		put_frame(out, f, id);
	fputs("]},\n\"profiles\":[{\"type\":\"sampled\",\"name\":", out);
	put_command(out, r);
	fprintf(out, ",\"unit\":\"%s\",\"startValue\":0,\"endValue\":%" PRIu64 ",\n\"samples\":[",
		metric == METRIC_COUNT ? "none" : "bytes", total);
	for (size_t i = 0; i < f->stacks.n; i++) {
		size_t len;
		const char *key = intern_key(&f->stacks, order[i], &len);
		fputs(i ? ",\n[" : "\n[", out);
		for (size_t k = 0; k < len; k += 4) {
			uint32_t id;
			memcpy(&id, key + k, 4);
			fprintf(out, "%s%" PRIu32, k ? "," : "", id - 1);
		}
		fputc(']', out);
	}
	fputs("],\n\"weights\":[", out);
	for (size_t i = 0; i < f->stacks.n; i++)
		fprintf(out, "%s%" PRIu64, i ? "," : "", f->weights[order[i] - 1]);
	fputs("]}]}\n", out);
	free(order);
}

size_t speedscope_write(FILE *out, struct replay *r, struct symbolizer *sym,
			const struct collapse_opts *o)
{
	struct file f;
	memset(&f, 0, sizeof(f));
	for (size_t i = 0; i < r->nsites; i++) {
		const struct site *s = &r->sites[i];
		uint64_t v = site_value(r, s, o->metric);
		if (!v)
			continue;
		f.ncur = 0;
		collapse_visit(r, sym, o, s, frame, &f);
		size_t before = f.stacks.n;
		uint32_t id = intern(&f.stacks, f.cur, f.ncur * sizeof(*f.cur));
		if (f.stacks.n != before) {
			if (f.stacks.n > f.weights_cap) {
				f.weights_cap = f.stacks.n * 2;
				f.weights = xrealloc(f.weights, f.weights_cap * sizeof(*f.weights));
			}
			f.weights[id - 1] = 0;
		}
		f.weights[id - 1] += v;
	}
	put_file(out, &f, r, o->metric);
	size_t n = f.stacks.n;
	intern_free(&f.frames);
	intern_free(&f.stacks);
	free(f.weights);
	free(f.cur);
	return n;
}
