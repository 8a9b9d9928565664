/*
 * collapse.c - see collapse.h.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collapse.h"
#include "frame_norm.h"
#include "intern.h"
#include "util.h"

void collapse_escape(FILE *f, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	for (size_t i = 0; i < n;) {
		/* a run that needs no escape goes out in one write */
		size_t j = i;
		for (;;) {
			while (j < n && s[j] >= 0x20 && s[j] < 0x7f && s[j] != '\\' && s[j] != ';')
				j++;
			size_t k = j < n && s[j] >= 0x80 ? utf8_len(s + j, n - j) : 0;
			if (!k)
				break;
			j += k;
		}
		if (j > i) {
			fwrite(s + i, 1, j - i, f);
			i = j;
			continue;
		}
		unsigned char c = s[i];
		size_t k = utf8_len(s + i, n - i);
		if (c == '\\')
			fputs("\\\\", f);
		else if (c == ';')
			fputs("\\x3b", f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f || k == 0)
			fprintf(f, "\\x%02x", c);
		else {
			fwrite(s + i, 1, k, f);
			i += k;
			continue;
		}
		i++;
	}
}

/* ---- one line per distinct rendered stack -------------------------------- */

struct lines {
	struct collapsed *v;
	size_t n, cap;
	uint32_t *index;
	size_t index_cap;
};

static uint64_t hash_text(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h;
}

/* Adds value and count to thread's part of l. */
static void part_add(struct collapsed *l, uint32_t thread, uint64_t value, uint64_t count)
{
	for (size_t i = 0; i < l->nparts; i++)
		if (l->parts[i].thread == thread) {
			l->parts[i].value += value;
			l->parts[i].count += count;
			return;
		}
	l->parts = xrealloc(l->parts, (l->nparts + 1) * sizeof(*l->parts));
	l->parts[l->nparts++] = (struct collapsed_part){ thread, value, count };
}

/* Adds a site's value to the line of its text (taking text), and with
 * thread > 0 to that thread's part of it. */
static struct collapsed *lines_add(struct lines *L, char *text, size_t len, uint64_t value,
				   uint64_t count, uint32_t thread)
{
	if ((L->n + 1) * 2 > L->index_cap) {
		size_t cap = L->index_cap ? L->index_cap * 2 : 1024;
		uint32_t *ix = xrealloc(NULL, cap * sizeof(*ix));
		memset(ix, 0xff, cap * sizeof(*ix));
		for (size_t i = 0; i < L->n; i++) {
			size_t j = hash_text(L->v[i].text, L->v[i].len) & (cap - 1);
			while (ix[j] != UINT32_MAX)
				j = (j + 1) & (cap - 1);
			ix[j] = (uint32_t)i;
		}
		free(L->index);
		L->index = ix;
		L->index_cap = cap;
	}
	size_t j = hash_text(text, len) & (L->index_cap - 1);
	while (L->index[j] != UINT32_MAX) {
		struct collapsed *l = &L->v[L->index[j]];
		if (l->len == len && memcmp(l->text, text, len) == 0) {
			l->value += value;
			l->count += count;
			if (thread)
				part_add(l, thread, value, count);
			free(text);
			return l;
		}
		j = (j + 1) & (L->index_cap - 1);
	}
	if (L->n == L->cap) {
		L->cap = L->cap ? L->cap * 2 : 1024;
		L->v = xrealloc(L->v, L->cap * sizeof(*L->v));
	}
	L->v[L->n] = (struct collapsed){ .text = text, .len = len, .value = value, .count = count };
	if (thread)
		part_add(&L->v[L->n], thread, value, count);
	L->index[j] = (uint32_t)L->n;
	return &L->v[L->n++];
}

static int by_text(const void *a, const void *b)
{
	const struct collapsed *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->text, y->text, n);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* ---- rendering a stack ---------------------------------------------------- */

int collapse_is_import_system(const char *file, size_t n)
{
	return (n >= 17 && memcmp(file, "<frozen importlib", 17) == 0) ||
	       memmem(file, n, "importlib/_bootstrap", 20) != NULL;
}

/* CPython's own native code: libpython, or the interpreter executable. */
static int is_tracker_module(const char *module)
{
	const char *b = strrchr(module, '/');
	return strcmp(b ? b + 1 : module, "libmemray-tracker.so") == 0;
}

static int is_cpython_module(const struct mr_proc *p, const char *module)
{
	const char *b = strrchr(module, '/');
	b = b ? b + 1 : module;
	return strncmp(b, "libpython", 9) == 0 || (p->header.exe && strcmp(module, p->header.exe) == 0);
}

static void frame(FILE *f, int *first, const char *s, size_t n)
{
	if (!*first)
		fputc(';', f);
	*first = 0;
	collapse_escape(f, s, n);
}

/* ---- visiting a stack's frames ------------------------------------------- */

static void visit_label(frame_visitor *visit, void *ctx, const struct mr_proc *p, const char *s,
			size_t n)
{
	struct frame_info f = { .kind = FRAME_LABEL, .text = s, .text_len = n, .name = s,
				.name_len = n, .file = "", .proc = p, .module = "" };
	visit(ctx, &f);
}

/* Fills in f's name, file and line from one frame of sym_frames' text:
 * "name (file:line)", "name (module)", "0xADDR (module)" or "0xADDR". */
static void split_native(struct frame_info *f, const char *s, size_t n)
{
	f->text = f->name = s;
	f->text_len = f->name_len = n;
	f->file = "";
	f->file_len = 0;
	f->line = 0;
	size_t place, place_len, path_len;
	if (!frame_place(s, n, &place, &place_len, &path_len))
		return;
	f->name_len = place - 2;
	if (path_len == place_len)
		return; /* a module's name */
	f->file = s + place;
	f->file_len = path_len;
	f->line = (uint32_t)strtoul(s + place + path_len + 1, NULL, 10);
}

void collapse_visit(struct replay *r, struct symbolizer *sym, const struct collapse_opts *o,
		    const struct site *site, frame_visitor *visit, void *ctx)
{
	/* a Python frame's text, made again for every frame of every stack:
	 * one buffer, never freed (a visitor copies what it keeps) */
	static char *pybuf;
	static size_t pybuf_cap;
	const struct mr_proc *p = site->proc;
	int python = (p->header.flags & MR_F_PYTHON) != 0;
	int native = o->frames == FRAMES_NATIVE ||
		     (o->frames == FRAMES_AUTO && (!python || (p->header.flags & MR_F_NATIVE)));
	int hybrid = python && native;
	char *t = NULL;
	size_t len = 0;
	if (o->by_thread) {
		const char *name = site->thread < p->nthreads && p->threads[site->thread].name
					   ? p->threads[site->thread].name : "?";
		FILE *m = open_memstream(&t, &len);
		fprintf(m, "%s (thread %" PRIu64 ")", name,
			site->thread < p->nthreads ? p->threads[site->thread].tid : 0);
		fclose(m);
		visit_label(visit, ctx, p, t, len);
		free(t);
	}
	size_t n = 0;
	for (uint32_t s = site->stack; s && s < p->nnodes; s = p->nodes[s].parent)
		n++;
	uint32_t *path = xrealloc(NULL, (n ? n : 1) * sizeof(*path));
	n = 0;
	for (uint32_t s = site->stack; s && s < p->nnodes; s = p->nodes[s].parent)
		path[n++] = s;
	int shown = 0;
	for (size_t i = n; i-- > 0;) {
		const struct mr_node *node = &p->nodes[path[i]];
		if (node->python) {
			const struct mr_pyframe *pf = &p->frames[node->value];
			const char *file = mr_string(p, pf->file);
			if (o->hide_import_system && collapse_is_import_system(file, strlen(file)))
				continue;
			const char *fn = mr_string(p, pf->function);
			if (!*file && !pf->line && fn[0] == '[') {
				/* the tracker's word for why there was no Python
				 * frame: "[Python start-up]", ... */
				visit_label(visit, ctx, p, fn, strlen(fn));
				shown++;
				continue;
			}
			size_t fn_len = strlen(fn), file_len = strlen(file);
			/* "fn (file:line)" in a buffer kept from frame to frame */
			if (fn_len + file_len + 16 > pybuf_cap) {
				pybuf_cap = (fn_len + file_len + 16) * 2;
				pybuf = xrealloc(pybuf, pybuf_cap);
			}
			/* (snprintf's "%s (%s:%u)", by hand: it is the hot spot) */
			char num[16];
			size_t nl = 0;
			uint32_t line = pf->line;
			do
				num[sizeof(num) - ++nl] = (char)('0' + line % 10);
			while ((line /= 10) && nl < sizeof(num));
			char *q = pybuf;
			memcpy(q, fn, fn_len), q += fn_len;
			*q++ = ' ', *q++ = '(';
			memcpy(q, file, file_len), q += file_len;
			*q++ = ':';
			memcpy(q, num + sizeof(num) - nl, nl), q += nl;
			*q++ = ')';
			*q = 0;
			len = (size_t)(q - pybuf);
			struct frame_info f = { .kind = FRAME_PYTHON, .text = pybuf, .text_len = len,
						.name = fn, .name_len = fn_len, .file = file,
						.file_len = file_len, .line = pf->line, .proc = p,
						.module = "" };
			visit(ctx, &f);
			shown++;
			continue;
		}
		if (!native)
			continue;
		const char *module;
		const char *text = sym_frames(sym, p, node->value, &module);
		if (hybrid && !o->all_frames && is_cpython_module(p, module))
			continue;
		/* the tracker's own frames (its pthread_create, which stays
		 * on the stack of what the new thread's start allocates): not
		 * the program's, as memray-stream(5) says */
		if (is_tracker_module(module))
			continue;
		unsigned count = 1;
		for (const char *c = text; *c; c++)
			count += *c == '\n';
		struct frame_info f = { .kind = FRAME_NATIVE, .proc = p, .ip = node->value,
					.module = module, .nframes = count };
		for (const char *s = text; *s; f.depth++) {
			const char *e = strchr(s, '\n');
			size_t k = e ? (size_t)(e - s) : strlen(s);
			split_native(&f, s, k);
			visit(ctx, &f);
			shown++;
			s += k + (e ? 1 : 0);
		}
	}
	free(path);
	if (!shown)
		visit_label(visit, ctx, p, "[unknown]", 9);
	(void)r;
}

/* ---- one site's collapsed line --------------------------------------------- */

/* The Python lines the written stacks show, each (file, line) once:
 * file points into its process's string table. */
/* The Python lines the stacks show, once each: seen keys them by file
 * (an interned string's address) and line. */
struct sources {
	struct source_line { const char *file; uint32_t line; } *v;
	size_t n, cap;
	struct intern seen;
};

static void sources_add(struct sources *S, const char *file, uint32_t line)
{
	char key[sizeof(file) + sizeof(line)];
	memcpy(key, &file, sizeof(file));
	memcpy(key + sizeof(file), &line, sizeof(line));
	if (intern(&S->seen, key, sizeof(key)) <= S->n)
		return;
	if (S->n == S->cap) {
		S->cap = S->cap ? S->cap * 2 : 256;
		S->v = xrealloc(S->v, S->cap * sizeof(*S->v));
	}
	S->v[S->n++] = (struct source_line){ file, line };
}

struct render {
	FILE *f;
	int first;
	struct sources *sources; /* when not NULL, Python lines are added */
};

static void render_frame(void *ctx, const struct frame_info *fi)
{
	struct render *c = ctx;
	frame(c->f, &c->first, fi->text, fi->text_len);
	if (c->sources && fi->kind == FRAME_PYTHON && fi->line)
		sources_add(c->sources, fi->file, fi->line);
}

static void render(FILE *f, struct replay *r, struct symbolizer *sym, const struct site *site,
		   const struct collapse_opts *o, struct sources *src)
{
	struct render c = { f, 1, src };
	collapse_visit(r, sym, o, site, render_frame, &c);
}

void collapse_meta_str(FILE *out, const char *key, const char *s, size_t n)
{
	fprintf(out, "# %s=", key);
	put_quoted(out, s, n);
	fputc('\n', out);
}

/* Metadata lines are "# key=NUMBER" or "# key="TEXT"": never a space and
 * a number at the end, so that flamegraph.pl, speedscope and inferno,
 * which take any line ending that way as a stack, do not (see
 * memray-fold(1), COLLAPSED STACKS). */
void collapse_meta(FILE *out, struct replay *r, const struct collapse_opts *o)
{
	fprintf(out, "# %s %s\n", progname, MEMRAY_VERSION);
	/* One command and pid per process, in order of appearance; a pid's
	 * last image (after exec) names it. */
	size_t *idx = xrealloc(NULL, (r->nprocs ? r->nprocs : 1) * sizeof(*idx));
	size_t np = replay_processes(r, idx, NULL);
	for (size_t k = 0; k < np; k++) {
		const struct mr_proc *p = r->procs[idx[k]].proc;
		char *cmd = NULL;
		size_t len = 0;
		FILE *m = open_memstream(&cmd, &len);
		if (!m)
			die(EXIT_USAGE, "out of memory");
		for (uint32_t i = 0; i < p->header.argc; i++)
			fprintf(m, "%s%s", i ? " " : "", p->header.argv[i]);
		fclose(m);
		collapse_meta_str(out, "command", cmd, len);
		free(cmd);
		fprintf(out, "# pid=%u\n", p->pid);
	}
	free(idx);
	fprintf(out, "# metric=\"%s\"\n", metric_name(o->metric));
	char py[512];
	if (replay_python_note(r, py, sizeof(py), NULL))
		collapse_meta_str(out, "python", py, strlen(py));
	if (r->sample_bytes) /* every value below is an estimate */
		fprintf(out, "# sampled=%" PRIu64 "\n", r->sample_bytes);
	if (r->damage) /* what came after it is not in what follows */
		collapse_meta_str(out, "damaged", r->damage, strlen(r->damage));
	fprintf(out, "# peak=%" PRIu64 "\n", r->peak);
	fprintf(out, "# peak_ms=%" PRIu64 "\n", r->peak_time_us / 1000);
	fprintf(out, "# peak_rss=%" PRIu64 "\n", r->peak_rss);
	fprintf(out, "# allocations=%" PRIu64 "\n", r->n_allocs);
	fprintf(out, "# bytes_allocated=%" PRIu64 "\n", r->bytes_allocated);
	fprintf(out, "# duration_ms=%" PRIu64 "\n", r->duration_us / 1000);
	if (r->ntimeline) {
		fputs("# timeline=\"ms,rss,heap", out);
		for (size_t i = 0; i < r->ntimeline; i++)
			fprintf(out, " %" PRIu64 ",%" PRIu64 ",%" PRIu64,
				timeline_ms(r->timeline[i].time_us), r->timeline[i].rss,
				r->timeline[i].heap);
		fputs("\"\n", out);
	}
}

char *collapse_site(struct replay *r, struct symbolizer *sym, const struct collapse_opts *o,
		    const struct site *site, size_t *len)
{
	char *text = NULL;
	*len = 0;
	FILE *m = open_memstream(&text, len);
	if (!m)
		return NULL;
	render(m, r, sym, site, o, NULL);
	fclose(m);
	return text;
}

/* ---- live bytes over time ---------------------------------------------------- */

/* A site's live bytes and count at the timeline points where they
 * changed, in time order. */
struct series {
	struct series_point { uint64_t time_us; int64_t bytes, count; } *v;
	uint32_t n, cap;
};

struct collapse_temporal {
	struct series *site; /* by site index */
	size_t nsite;
	size_t stride;       /* the timeline's stride at the last point */
};

/* The timeline thinned: each point of s moves to the first point still
 * kept at or after it, the last one there winning. */
static void series_thin(struct series *s, const struct replay *r)
{
	uint32_t out = 0;
	for (uint32_t k = 0; k < s->n; k++) {
		size_t lo = 0, hi = r->ntimeline - 1;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (r->timeline[mid].time_us < s->v[k].time_us)
				lo = mid + 1;
			else
				hi = mid;
		}
		struct series_point p = s->v[k];
		p.time_us = r->timeline[lo].time_us;
		if (out && s->v[out - 1].time_us == p.time_us)
			s->v[out - 1] = p;
		else
			s->v[out++] = p;
	}
	s->n = out;
}

/* At a timeline point: each site whose live bytes or count changed since
 * its last point gets one. */
static void on_timepoint(void *ctx, struct replay *r)
{
	struct collapse_temporal *t = ctx;
	if (r->stride != t->stride) {
		for (size_t i = 0; i < t->nsite; i++)
			series_thin(&t->site[i], r);
		t->stride = r->stride;
	}
	if (r->nsites > t->nsite) {
		t->site = xrealloc(t->site, r->nsites * sizeof(*t->site));
		memset(t->site + t->nsite, 0, (r->nsites - t->nsite) * sizeof(*t->site));
		t->nsite = r->nsites;
	}
	uint64_t now = r->timeline[r->ntimeline - 1].time_us;
	for (size_t i = 0; i < r->nsites; i++) {
		struct series *s = &t->site[i];
		const struct site *site = &r->sites[i];
		struct series_point p = { now, site->cur_bytes, site->cur_count };
		if (s->n && timeline_ms(s->v[s->n - 1].time_us) == timeline_ms(now)) {
			/* the timeline's last point was replaced by this one, of
			 * the same millisecond: so is the site's point there, which
			 * goes if it no longer changes anything */
			s->v[s->n - 1] = p;
			const struct series_point *q = s->n > 1 ? &s->v[s->n - 2] : NULL;
			if (q ? q->bytes == p.bytes && q->count == p.count : !p.bytes && !p.count)
				s->n--;
			continue;
		}
		int64_t b = s->n ? s->v[s->n - 1].bytes : 0, c = s->n ? s->v[s->n - 1].count : 0;
		if (p.bytes == b && p.count == c)
			continue;
		if (s->n == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 4;
			s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
		}
		s->v[s->n++] = p;
	}
}

struct collapse_temporal *collapse_temporal_start(struct replay *r)
{
	struct collapse_temporal *t = xrealloc(NULL, sizeof(*t));
	memset(t, 0, sizeof(*t));
	t->stride = r->stride;
	r->on_timepoint = on_timepoint;
	r->timepoint_ctx = t;
	return t;
}

void collapse_temporal_free(struct collapse_temporal *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nsite; i++)
		free(t->site[i].v);
	free(t->site);
	free(t);
}

/* Adds site i's changes (thread's) to line l. */
static void changes_add(struct collapsed *l, const struct collapse_temporal *t, size_t i,
			uint32_t thread)
{
	if (i >= t->nsite || !t->site[i].n)
		return;
	const struct series *s = &t->site[i];
	l->changes = xrealloc(l->changes, (l->nchanges + s->n) * sizeof(*l->changes));
	int64_t b = 0, c = 0;
	for (uint32_t k = 0; k < s->n; k++) {
		l->changes[l->nchanges++] = (struct collapsed_change){
			timeline_ms(s->v[k].time_us), thread, s->v[k].bytes - b, s->v[k].count - c
		};
		b = s->v[k].bytes;
		c = s->v[k].count;
	}
}

/* The thread's id in the "# thread=" table: threads are numbered from
 * 1 through the processes of r in order, then each one's own table. */
static uint32_t thread_id(const struct replay *r, const struct site *s)
{
	uint32_t base = 0;
	for (size_t i = 0; i < r->nprocs; i++) {
		if (r->procs[i].proc == s->proc)
			return base + s->thread;
		base += (uint32_t)r->procs[i].proc->nthreads;
	}
	return 0;
}

/* collapse_lines, adding the Python lines shown to src if not NULL. */
static size_t build_lines(struct replay *r, struct symbolizer *sym, const struct collapse_opts *o,
			  const struct collapse_extra *x, struct collapsed **out, struct sources *src)
{
	struct lines L;
	memset(&L, 0, sizeof(L));
	const struct collapse_temporal *tp = x ? x->temporal : NULL;
	int annotate = x && x->annotate;
	/* one stream for every stack's text, rewound for each */
	char *buf = NULL;
	size_t buf_len = 0;
	FILE *m = open_memstream(&buf, &buf_len);
	if (!m)
		die(EXIT_USAGE, "out of memory");
	for (size_t i = 0; i < r->nsites; i++) {
		const struct site *s = &r->sites[i];
		uint64_t v = site_value(r, s, o->metric);
		if (!v && !(tp && i < tp->nsite && tp->site[i].n))
			continue;
		rewind(m);
		render(m, r, sym, s, o, src);
		if (fflush(m) != 0)
			die(EXIT_USAGE, "out of memory");
		size_t len = (size_t)ftell(m);
		char *text = xrealloc(NULL, len + 1);
		memcpy(text, buf, len);
		text[len] = 0;
		uint32_t thread = annotate || tp ? thread_id(r, s) : 0;
		struct collapsed *l = lines_add(&L, text, len, v, site_count(r, s, o->metric),
						annotate ? thread : 0);
		l->bytes += s->total_bytes;
		l->bytes_count += s->total_bytes ? s->total_count : 0;
		l->temp_bytes += s->temp_bytes;
		l->temp_count += s->temp_count;
		if (tp)
			changes_add(l, tp, i, thread);
	}
	fclose(m);
	free(buf);
	if (L.n)
		qsort(L.v, L.n, sizeof(*L.v), by_text);
	free(L.index);
	*out = L.v;
	return L.n;
}

size_t collapse_lines(struct replay *r, struct symbolizer *sym, const struct collapse_opts *o,
		      struct collapsed **out)
{
	return build_lines(r, sym, o, NULL, out, NULL);
}

void collapse_lines_free_from(struct collapsed *v, size_t from, size_t n)
{
	for (size_t i = from; i < n; i++) {
		free(v[i].text);
		free(v[i].parts);
		free(v[i].changes);
	}
}

void collapse_lines_free(struct collapsed *v, size_t n)
{
	collapse_lines_free_from(v, 0, n);
	free(v);
}

/* ---- source lines --------------------------------------------------------- */

static int by_file_line(const void *a, const void *b)
{
	const struct source_line *x = a, *y = b;
	int c = strcmp(x->file, y->file);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* The earliest start of the processes replayed, in microseconds since
 * the epoch (0 if none said). */
static uint64_t first_start_us(const struct replay *r)
{
	uint64_t t = 0;
	for (size_t i = 0; i < r->nprocs; i++) {
		uint64_t s = r->procs[i].proc->header.start_us;
		if (s && (!t || s < t))
			t = s;
	}
	return t;
}

/* Writes "# source="FILE:LINE<TAB>TEXT"" for the lines v[0..n) of one
 * file that it holds, the text trimmed and at most 240 bytes. */
static void write_file_lines(FILE *out, FILE *f, const struct source_line *v, size_t n)
{
	char *buf = NULL, *loc = NULL;
	size_t cap = 0, k = 0;
	uint32_t at = 0;
	ssize_t len;
	while (k < n && (len = getline(&buf, &cap, f)) >= 0) {
		if (++at != v[k].line)
			continue;
		char *t = buf, *e = buf + len;
		while (t < e && (*t == ' ' || *t == '\t'))
			t++;
		while (e > t && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e - t > 240) { /* cut at a character's start */
			e = t + 240;
			while (e > t && ((unsigned char)*e & 0xc0) == 0x80)
				e--;
		}
		size_t ll = 0;
		FILE *m = open_memstream(&loc, &ll);
		if (!m)
			die(EXIT_USAGE, "out of memory");
		/* the place as the frames show it, escaped the same way */
		collapse_escape(m, v[k].file, strlen(v[k].file));
		fprintf(m, ":%u\t%.*s", v[k].line, (int)(e - t), t);
		fclose(m);
		if (e > t)
			collapse_meta_str(out, "source", loc, ll);
		free(loc);
		loc = NULL;
		while (k < n && v[k].line == at)
			k++;
	}
	free(buf);
}

/* The source lines of S, read now from the files: a file that cannot be
 * read, or that changed after the recording started, gives none, and
 * each of those two is said once. Pseudo-files ("<frozen ...>",
 * "<string>") have no text. */
static void write_sources(FILE *out, const struct replay *r, struct sources *S)
{
	if (S->n)
		qsort(S->v, S->n, sizeof(*S->v), by_file_line);
	uint64_t start_us = first_start_us(r);
	size_t unreadable = 0, changed = 0;
	char first_unreadable[300] = "", first_changed[300] = "";
	for (size_t i = 0, j; i < S->n; i = j) {
		for (j = i + 1; j < S->n && strcmp(S->v[j].file, S->v[i].file) == 0; j++)
			;
		const char *path = S->v[i].file;
		if (!*path || *path == '<')
			continue;
		/* a regular file only: never wait on a FIFO nor read a device
		 * that a recorded frame happens to name */
		int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		FILE *f = fd < 0 ? NULL : fdopen(fd, "r");
		struct stat st;
		int bad = !f || fstat(fd, &st) < 0 ? errno : !S_ISREG(st.st_mode) ? -1 : 0;
		if (bad) {
			if (!unreadable++)
				snprintf(first_unreadable, sizeof(first_unreadable), "%s: %s", path,
					 bad < 0 ? "not a regular file" : strerror(bad));
		} else if (start_us && (uint64_t)st.st_mtim.tv_sec * 1000000 +
					       (uint64_t)st.st_mtim.tv_nsec / 1000 > start_us) {
			if (!changed++)
				snprintf(first_changed, sizeof(first_changed), "%s", path);
		} else {
			write_file_lines(out, f, S->v + i, j - i);
		}
		if (f)
			fclose(f);
		else if (fd >= 0)
			close(fd);
	}
	if (unreadable)
		warnmsg("warning: cannot read %zu source file%s (%s): no source text for %s frames",
			unreadable, unreadable == 1 ? "" : "s", first_unreadable,
			unreadable == 1 ? "its" : "their");
	if (changed)
		warnmsg("warning: %zu source file%s changed since the recording (%s%s): no source "
			"text for %s frames", changed, changed == 1 ? "" : "s", first_changed,
			changed == 1 ? "" : ", ...", changed == 1 ? "its" : "their");
	free(S->v);
	intern_free(&S->seen);
}

/* ---- threads -------------------------------------------------------------- */

static int by_thread(const void *a, const void *b)
{
	const struct collapsed_part *x = a, *y = b;
	return (x->thread > y->thread) - (x->thread < y->thread);
}

static void mark_used(uint8_t *used, uint32_t thread, size_t *distinct)
{
	if (!used[thread]) {
		used[thread] = 1;
		++*distinct;
	}
}

/* Writes "# thread="ID LABEL"" for each thread the lines' parts name,
 * or their live bytes over time (a thread with nothing live at the peak
 * may have had blocks live in a time range), sorting each line's parts,
 * when there are two or more; returns whether it did. */
static int write_threads(FILE *out, const struct replay *r, struct collapsed *v, size_t n)
{
	uint32_t max = 0;
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < v[i].nparts; k++)
			if (v[i].parts[k].thread > max)
				max = v[i].parts[k].thread;
		for (size_t k = 0; k < v[i].nchanges; k++)
			if (v[i].changes[k].thread > max)
				max = v[i].changes[k].thread;
	}
	uint8_t *used = xrealloc(NULL, (size_t)max + 1);
	memset(used, 0, (size_t)max + 1);
	size_t distinct = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i].nparts > 1)
			qsort(v[i].parts, v[i].nparts, sizeof(*v[i].parts), by_thread);
		for (size_t k = 0; k < v[i].nparts; k++)
			mark_used(used, v[i].parts[k].thread, &distinct);
		for (size_t k = 0; k < v[i].nchanges; k++)
			mark_used(used, v[i].changes[k].thread, &distinct);
	}
	uint32_t base = 0;
	for (size_t i = 0; distinct > 1 && i < r->nprocs; i++) {
		const struct mr_proc *p = r->procs[i].proc;
		for (uint32_t t = 0; t < p->nthreads && base + t <= max; t++) {
			if (!used[base + t])
				continue;
			const char *name = p->threads[t].name ? p->threads[t].name : "?";
			char *label = NULL;
			size_t len = 0;
			FILE *m = open_memstream(&label, &len);
			if (!m)
				die(EXIT_USAGE, "out of memory");
			fprintf(m, "%u %s (thread %" PRIu64 ")", base + t, name, p->threads[t].tid);
			fclose(m);
			collapse_meta_str(out, "thread", label, len);
			free(label);
		}
		base += (uint32_t)p->nthreads;
	}
	free(used);
	return distinct > 1;
}

static int by_time_thread(const void *a, const void *b)
{
	const struct collapsed_change *x = a, *y = b;
	if (x->ms != y->ms)
		return (x->ms > y->ms) - (x->ms < y->ms);
	return (x->thread > y->thread) - (x->thread < y->thread);
}

/* "# stack.live="MS:THREAD:BYTES:COUNT ..."": l's changes in time
 * order, those of the same moment and thread added up. */
static void write_changes(FILE *out, struct collapsed *l)
{
	if (l->nchanges > 1)
		qsort(l->changes, l->nchanges, sizeof(*l->changes), by_time_thread);
	fputs("# stack.live=\"", out);
	int first = 1;
	for (size_t k = 0, j; k < l->nchanges; k = j) {
		struct collapsed_change c = l->changes[k];
		for (j = k + 1; j < l->nchanges && l->changes[j].ms == c.ms &&
				l->changes[j].thread == c.thread; j++)
			c.bytes += l->changes[j].bytes, c.count += l->changes[j].count;
		if (!c.bytes && !c.count)
			continue;
		fprintf(out, "%s%" PRIu64 ":%u:%" PRId64 ":%" PRId64, first ? "" : " ", c.ms, c.thread,
			c.bytes, c.count);
		first = 0;
	}
	fputs("\"\n", out);
}

/* A stack's "# stack.*" lines: its count, by thread when asked, and its
 * live bytes over time when collected. */
static void write_annotations(FILE *out, struct collapsed *l, int threads)
{
	fprintf(out, "# stack.count=%" PRIu64 "\n", l->count);
	if (threads) {
		fputs("# stack.threads=\"", out);
		for (size_t k = 0; k < l->nparts; k++)
			fprintf(out, "%s%u:%" PRIu64 ":%" PRIu64, k ? " " : "", l->parts[k].thread,
				l->parts[k].value, l->parts[k].count);
		fputs("\"\n", out);
	}
	if (l->nchanges)
		write_changes(out, l);
}

size_t collapse_write_extra(FILE *out, struct replay *r, struct symbolizer *sym,
			    const struct collapse_opts *o, const struct collapse_extra *x)
{
	struct collapsed *v;
	struct sources src;
	memset(&src, 0, sizeof(src));
	size_t n = build_lines(r, sym, o, x, &v, x->sources ? &src : NULL);
	collapse_meta(out, r, o);
	int threads = x->annotate && write_threads(out, r, v, n);
	if (x->sources)
		write_sources(out, r, &src);
	for (size_t i = 0; i < n; i++) {
		if (x->annotate)
			write_annotations(out, &v[i], threads);
		fwrite(v[i].text, 1, v[i].len, out);
		fprintf(out, " %" PRIu64 "\n", v[i].value);
	}
	collapse_lines_free(v, n);
	return n;
}

size_t collapse_write(FILE *out, struct replay *r, struct symbolizer *sym,
		      const struct collapse_opts *o)
{
	static const struct collapse_extra none = { 0, 0, NULL };
	return collapse_write_extra(out, r, sym, o, &none);
}
