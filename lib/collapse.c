/*
 * collapse.c - see collapse.h.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "collapse.h"
#include "util.h"

void collapse_escape(FILE *f, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	for (size_t i = 0; i < n;) {
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

static void lines_add(struct lines *L, char *text, size_t len, uint64_t value, uint64_t count)
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
			free(text);
			return;
		}
		j = (j + 1) & (L->index_cap - 1);
	}
	if (L->n == L->cap) {
		L->cap = L->cap ? L->cap * 2 : 1024;
		L->v = xrealloc(L->v, L->cap * sizeof(*L->v));
	}
	L->v[L->n] = (struct collapsed){ text, len, value, count };
	L->index[j] = (uint32_t)L->n++;
}

static int by_text(const void *a, const void *b)
{
	const struct collapsed *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->text, y->text, n);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* ---- rendering a stack ---------------------------------------------------- */

static int is_import_system(const char *file)
{
	return strncmp(file, "<frozen importlib", 17) == 0 || strstr(file, "importlib/_bootstrap") != NULL;
}

/* CPython's own native code: libpython, or the interpreter executable. */
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
 * "name (file:line)", "name (module)", "0xADDR (module)" or "0xADDR". The
 * last " (" starts the place: symbols are linkage names, without one. */
static void split_native(struct frame_info *f, const char *s, size_t n)
{
	f->text = f->name = s;
	f->text_len = f->name_len = n;
	f->file = "";
	f->file_len = 0;
	f->line = 0;
	if (n < 4 || s[n - 1] != ')')
		return;
	size_t open = n - 1;
	while (open > 0 && !(s[open] == '(' && s[open - 1] == ' '))
		open--;
	if (open == 0)
		return;
	f->name_len = open - 1;
	const char *where = s + open + 1, *end = s + n - 1;
	const char *colon = end;
	while (colon > where && colon[-1] >= '0' && colon[-1] <= '9')
		colon--;
	if (colon == end || colon - 1 <= where || colon[-1] != ':')
		return; /* a module's name */
	f->file = where;
	f->file_len = (size_t)(colon - 1 - where);
	f->line = (uint32_t)strtoul(colon, NULL, 10);
}

void collapse_visit(struct replay *r, struct symbolizer *sym, const struct collapse_opts *o,
		    const struct site *site, frame_visitor *visit, void *ctx)
{
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
			if (o->hide_import_system && is_import_system(file))
				continue;
			const char *fn = mr_string(p, pf->function);
			FILE *m = open_memstream(&t, &len);
			fprintf(m, "%s (%s:%u)", fn, file, pf->line);
			fclose(m);
			struct frame_info f = { .kind = FRAME_PYTHON, .text = t, .text_len = len,
						.name = fn, .name_len = strlen(fn), .file = file,
						.file_len = strlen(file), .line = pf->line, .proc = p,
						.module = "" };
			visit(ctx, &f);
			free(t);
			shown++;
			continue;
		}
		if (!native)
			continue;
		const char *module;
		const char *text = sym_frames(sym, p, node->value, &module);
		if (hybrid && !o->all_frames && is_cpython_module(p, module))
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

struct render {
	FILE *f;
	int first;
};

static void render_frame(void *ctx, const struct frame_info *fi)
{
	struct render *c = ctx;
	frame(c->f, &c->first, fi->text, fi->text_len);
}

static void render(FILE *f, struct replay *r, struct symbolizer *sym, const struct site *site,
		   const struct collapse_opts *o)
{
	struct render c = { f, 1 };
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
	fprintf(out, "# peak=%" PRIu64 "\n", r->peak);
	fprintf(out, "# peak_ms=%" PRIu64 "\n", r->peak_time_us / 1000);
	fprintf(out, "# peak_rss=%" PRIu64 "\n", r->peak_rss);
	fprintf(out, "# allocations=%" PRIu64 "\n", r->n_allocs);
	fprintf(out, "# bytes_allocated=%" PRIu64 "\n", r->bytes_allocated);
	fprintf(out, "# duration_ms=%" PRIu64 "\n", r->duration_us / 1000);
	if (r->ntimeline) {
		fputs("# timeline=\"ms,rss,heap", out);
		for (size_t i = 0; i < r->ntimeline; i++)
			fprintf(out, " %" PRIu64 ",%" PRIu64 ",%" PRIu64, r->timeline[i].time_us / 1000,
				r->timeline[i].rss, r->timeline[i].heap);
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
	render(m, r, sym, site, o);
	fclose(m);
	return text;
}

size_t collapse_lines(struct replay *r, struct symbolizer *sym, const struct collapse_opts *o,
		      struct collapsed **out)
{
	struct lines L;
	memset(&L, 0, sizeof(L));
	for (size_t i = 0; i < r->nsites; i++) {
		const struct site *s = &r->sites[i];
		uint64_t v = site_value(r, s, o->metric);
		if (!v)
			continue;
		char *text = NULL;
		size_t len = 0;
		FILE *m = open_memstream(&text, &len);
		render(m, r, sym, s, o);
		fclose(m);
		lines_add(&L, text, len, v, site_count(r, s, o->metric));
	}
	if (L.n)
		qsort(L.v, L.n, sizeof(*L.v), by_text);
	free(L.index);
	*out = L.v;
	return L.n;
}

void collapse_lines_free(struct collapsed *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].text);
	free(v);
}

size_t collapse_write(FILE *out, struct replay *r, struct symbolizer *sym,
		      const struct collapse_opts *o)
{
	struct collapsed *v;
	size_t n = collapse_lines(r, sym, o, &v);
	collapse_meta(out, r, o);
	for (size_t i = 0; i < n; i++) {
		fwrite(v[i].text, 1, v[i].len, out);
		fprintf(out, " %" PRIu64 "\n", v[i].value);
	}
	collapse_lines_free(v, n);
	return n;
}
