/*
 * memray-flame - collapsed stacks (or a memray stream) in, one
 * self-contained interactive HTML flame graph out.
 *
 * The stacks are merged into a call tree here, pruned to what a page can
 * show, and written into the page as compact JSON: a table of distinct
 * frame names, then the tree in preorder as (name, depth, rest) triples,
 * where rest is the part of a frame's value not in the children it shows
 * (its own value plus pruned children). What memray-fold says of each
 * stack follows, by written node: its value by thread ("parts"), its live
 * bytes over time ("live"), and the text of the Python lines ("source").
 * The page (flame.html, built in) adds the rest up into totals, draws,
 * zooms and searches, and builds the tree again for a thread, a time
 * range, hidden frames or inverted stacks.
 */
#define _GNU_SOURCE /* memmem */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/collapse.h"
#include "../../lib/folded.h"
#include "../../lib/ingest.h"
#include "../../lib/input.h"
#include "../../lib/util.h"
#include "flame_page.h" /* generated from flame.html: flame_page[] */

static const char usage_text[] =
	"usage: memray-flame [--title TEXT] [--subtitle TEXT] [--countname NAME]\n"
	"                    [--min-width PERCENT] [--max-frames N] [--inverted]\n"
	"                    [--no-source] [FILE...]\n"
	"\n"
	"Reads collapsed stacks (from memray-fold, memray-leaks or any other tool)\n"
	"or memray streams, and writes one self-contained interactive HTML flame\n"
	"graph on standard output. Lines with two counts, before and after (from\n"
	"memray-diff), make a differential graph: widths are the later counts, red\n"
	"where a frame grew, blue where it shrank.\n"
	"\n"
	"  -t, --title TEXT        the page's title (default: Memory flame graph)\n"
	"  -s, --subtitle TEXT     a line under the title\n"
	"  -c, --countname NAME    what the numbers count (default: bytes, or\n"
	"                          allocations for memray-fold -m count)\n"
	"  -w, --min-width PERCENT leave out frames under PERCENT of the total\n"
	"                          (default 0: only the --max-frames budget prunes)\n"
	"  -n, --max-frames N      at most N frames in the page, the smallest left out\n"
	"                          (1 to 50000000, default 200000)\n"
	"  -i, --inverted          open inverted: the allocating functions are the\n"
	"                          roots, their callers above them\n"
	"      --no-source         leave the text of Python source lines out of the page\n"
	"  -h, --help              show this help\n"
	"      --version           show the version\n";

static void usage(int status)
{
	usage_exit(usage_text, status);
}

static uint64_t hash_bytes(const char *s, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

/* ---- frame names, interned ------------------------------------------------ */

static struct {
	char **text;
	uint32_t *len;
	size_t n, cap;
	uint32_t *index; /* open addressing, UINT32_MAX empty */
	size_t icap;
} names;

static uint32_t intern(const char *s, size_t n)
{
	if ((names.n + 1) * 2 > names.icap) {
		size_t cap = names.icap ? names.icap * 2 : 4096;
		uint32_t *ix = xrealloc(NULL, cap * sizeof(*ix));
		memset(ix, 0xff, cap * sizeof(*ix));
		for (size_t i = 0; i < names.n; i++) {
			size_t j = hash_bytes(names.text[i], names.len[i], 0xcbf29ce484222325ull) & (cap - 1);
			while (ix[j] != UINT32_MAX)
				j = (j + 1) & (cap - 1);
			ix[j] = (uint32_t)i;
		}
		free(names.index);
		names.index = ix;
		names.icap = cap;
	}
	size_t j = hash_bytes(s, n, 0xcbf29ce484222325ull) & (names.icap - 1);
	for (; names.index[j] != UINT32_MAX; j = (j + 1) & (names.icap - 1)) {
		uint32_t k = names.index[j];
		if (names.len[k] == n && memcmp(names.text[k], s, n) == 0)
			return k;
	}
	if (names.n == names.cap) {
		names.cap = names.cap ? names.cap * 2 : 4096;
		names.text = xrealloc(names.text, names.cap * sizeof(*names.text));
		names.len = xrealloc(names.len, names.cap * sizeof(*names.len));
	}
	char *t = xrealloc(NULL, n + 1);
	memcpy(t, s, n);
	t[n] = 0;
	names.text[names.n] = t;
	names.len[names.n] = (uint32_t)n;
	names.index[j] = (uint32_t)names.n;
	return (uint32_t)names.n++;
}

/* ---- the call tree ---------------------------------------------------------- */

/* Node 0 is the root. Children are found through one hash table keyed by
 * (parent, name), and listed through first_child/next_sibling. */
struct node {
	uint32_t name, parent, first_child, next_sibling;
	uint64_t total;  /* the node's value: itself and everything under it */
	uint64_t count;  /* allocations behind total, when the input says */
	int keep;
	uint32_t out;    /* kept nodes: the index in the page's preorder (root 0) */
	uint64_t live;   /* the bytes its stacks held at some timeline point, when
			  * the input says (memray-fold --temporal), added up */
};

static struct node *nodes;
static size_t nnodes, nodes_cap;
static uint32_t *child_index;
static size_t child_cap;
static int have_counts = -1; /* -1 unknown yet, then 1 only if every stack had one */
/* Differential input (memray-diff, difffolded.pl): widths are the later
 * run's values; the count column carries the earlier run's. 1 while every
 * stack so far was a two-count line, 0 after a one-count line or a stream;
 * -1 before the first. */
static int diff_mode = -1;
static const char *diff_file;

static size_t child_slot(uint32_t parent, uint32_t name, size_t cap)
{
	uint64_t h = (uint64_t)parent << 32 | name; /* splitmix64's finaliser */
	h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
	h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
	return (size_t)(h ^ (h >> 31)) & (cap - 1);
}

static uint32_t child_of(uint32_t parent, uint32_t name)
{
	if ((nnodes + 1) * 2 > child_cap) {
		size_t cap = child_cap ? child_cap * 2 : 4096;
		uint32_t *ix = xrealloc(NULL, cap * sizeof(*ix));
		memset(ix, 0xff, cap * sizeof(*ix));
		for (size_t i = 1; i < nnodes; i++) {
			size_t j = child_slot(nodes[i].parent, nodes[i].name, cap);
			while (ix[j] != UINT32_MAX)
				j = (j + 1) & (cap - 1);
			ix[j] = (uint32_t)i;
		}
		free(child_index);
		child_index = ix;
		child_cap = cap;
	}
	size_t j = child_slot(parent, name, child_cap);
	for (; child_index[j] != UINT32_MAX; j = (j + 1) & (child_cap - 1)) {
		const struct node *c = &nodes[child_index[j]];
		if (c->parent == parent && c->name == name)
			return child_index[j];
	}
	if (nnodes == nodes_cap) {
		nodes_cap *= 2;
		nodes = xrealloc(nodes, nodes_cap * sizeof(*nodes));
	}
	uint32_t id = (uint32_t)nnodes++;
	nodes[id] = (struct node){ name, parent, 0, nodes[parent].first_child, 0, 0, 0, 0, 0 };
	nodes[parent].first_child = id;
	child_index[j] = id;
	return id;
}

/* The previous stack's text and nodes: sorted input (memray-fold's) shares
 * long prefixes from line to line, and those frames need no lookup. */
static struct {
	char *text;
	size_t len, cap;
	uint32_t *path; /* path[i]: the node of frame i */
	size_t npath, path_cap;
} prev;

/* Adds a stack; live is the bytes it held at timeline points, added up
 * (0 if unknown). Returns its leaf node, or 0 if it adds nothing. */
static uint32_t add_stack_counted(const char *text, size_t len, uint64_t value, uint64_t count,
				  int counted, uint64_t live)
{
	/* a differential stack that vanished still counts in its callers'
	 * earlier values, in frames of width 0, which are never drawn; a
	 * stack of no value at the peak may have some at other times */
	if (!value && !(diff_mode == 1 && count) && !live)
		return 0;
	if (have_counts != 0)
		have_counts = counted;
	if (nodes[0].total + value < nodes[0].total)
		die(EXIT_USAGE, "the values add up to more than 2^64: not a profile memray-flame can draw");
	nodes[0].total += value;
	nodes[0].count += count;
	size_t common = 0, lim = len < prev.len ? len : prev.len;
	while (common < lim && text[common] == prev.text[common])
		common++;
	uint32_t at = 0;
	size_t depth = 0;
	const char *s = text, *e = text + len;
	while (s <= e) {
		const char *semi = memchr(s, ';', (size_t)(e - s));
		size_t n = semi ? (size_t)(semi - s) : (size_t)(e - s);
		size_t end = (size_t)(s - text) + n; /* where this frame ends */
		if (depth < prev.npath && end <= common &&
		    (end == prev.len || prev.text[end] == ';'))
			at = prev.path[depth]; /* the same frame as last time */
		else
			at = child_of(at, intern(s, n));
		nodes[at].total += value;
		nodes[at].count += count;
		nodes[at].live += live;
		if (depth == prev.path_cap) {
			prev.path_cap = prev.path_cap ? prev.path_cap * 2 : 256;
			prev.path = xrealloc(prev.path, prev.path_cap * sizeof(*prev.path));
		}
		prev.path[depth++] = at;
		if (!semi)
			break;
		s = semi + 1;
	}
	prev.npath = depth;
	if (len + 1 > prev.cap) {
		prev.cap = len + 1 > 2 * prev.cap ? len + 1 : 2 * prev.cap;
		prev.text = xrealloc(prev.text, prev.cap);
	}
	memcpy(prev.text, text, len);
	prev.len = len;
	return at;
}

static void mixed(void)
{
	die(EXIT_USAGE, "%s: differential stacks (two counts) mixed with plain ones",
	    diff_file ? diff_file : "the input");
}

/* ---- what memray-fold says of each stack ----------------------------------- */

/* The "# stack.*" lines before a stack line (memray-fold(1), Metadata):
 * its allocation count, its value by thread, its live bytes over time. */
static struct {
	int has_count, has_parts, has_live;
	uint64_t count;
	struct collapsed_part *parts;
	size_t nparts, cap;
	struct collapsed_change *changes; /* its live bytes over time */
	size_t nchanges, ccap;
	uint64_t live; /* the bytes the changes add, added up */
	int disordered; /* this input's lines were reordered: ignored */
	long malformed; /* this input's "# stack." and "# thread=" lines not understood */
	const char *input;
} pend;

/* A stack's live bytes over time, at its leaf. */
struct live_change {
	uint32_t node, thread;
	uint64_t ms;
	int64_t bytes, count;
};
static struct live_change *lives;
static size_t nlives, lives_cap;
static int have_live; /* some input had them */

/* A stack's value in one thread, at its leaf; the thread's id in the
 * page's table. */
struct leaf_part {
	uint32_t node, thread;
	uint64_t value, count;
};
static struct leaf_part *leaf_parts;
static size_t nleaf_parts, leaf_parts_cap;
static int have_threads = -1; /* as have_counts */

/* The threads ("# thread=" lines), numbered through all inputs. */
static struct {
	char **label;
	uint32_t *id;
	size_t n;
	uint32_t base; /* the current input's ids are offset by this */
	uint32_t max;  /* the highest id so far */
} threads;

static void pend_clear(void)
{
	pend.has_count = pend.has_parts = pend.has_live = 0;
	pend.nparts = pend.nchanges = 0;
	pend.live = 0;
}

static void disordered(void)
{
	if (!pend.disordered)
		warnmsg("warning: %s: its '# stack.' lines are not each before their stack (was it "
			"sorted?): allocation counts and threads left out", pend.input);
	pend.disordered = 1;
	pend_clear();
}

/* "ID:VALUE:COUNT ..." into pend.parts; 0 if malformed. */
static int parse_parts(const char *v)
{
	pend.nparts = 0;
	while (*v) {
		char *e;
		unsigned long long id = strtoull(v, &e, 10), val, cnt;
		if (*e != ':')
			return 0;
		val = strtoull(e + 1, &e, 10);
		if (*e != ':')
			return 0;
		cnt = strtoull(e + 1, &e, 10);
		if ((*e && *e != ' ') || id == 0 || id > UINT32_MAX - threads.base)
			return 0;
		if (pend.nparts == pend.cap) {
			pend.cap = pend.cap ? 2 * pend.cap : 8;
			pend.parts = xrealloc(pend.parts, pend.cap * sizeof(*pend.parts));
		}
		pend.parts[pend.nparts++] = (struct collapsed_part){ threads.base + (uint32_t)id, val, cnt };
		v = *e ? e + 1 : e;
	}
	return 1;
}

/* "MS:THREAD:BYTES:COUNT ..." into pend.changes; 0 if malformed. */
static int parse_changes(const char *v)
{
	pend.nchanges = 0;
	pend.live = 0;
	while (*v) {
		char *e;
		struct collapsed_change c;
		c.ms = strtoull(v, &e, 10);
		if (*e != ':')
			return 0;
		unsigned long long id = strtoull(e + 1, &e, 10);
		if (*e != ':' || id > UINT32_MAX - threads.base)
			return 0;
		c.thread = threads.base + (uint32_t)id;
		c.bytes = strtoll(e + 1, &e, 10);
		if (*e != ':')
			return 0;
		c.count = strtoll(e + 1, &e, 10);
		if (*e && *e != ' ')
			return 0;
		if (pend.nchanges == pend.ccap) {
			pend.ccap = pend.ccap ? 2 * pend.ccap : 16;
			pend.changes = xrealloc(pend.changes, pend.ccap * sizeof(*pend.changes));
		}
		pend.changes[pend.nchanges++] = c;
		if (c.bytes > 0)
			pend.live += (uint64_t)c.bytes;
		v = *e ? e + 1 : e;
	}
	return 1;
}

/* A "# stack.KEY=VALUE" line. */
static void stack_meta(const char *key, const char *value)
{
	if (pend.disordered)
		return;
	/* a second line of a key before a stack: lines were reordered */
	int *has = strcmp(key, "count") == 0 ? &pend.has_count :
		   strcmp(key, "threads") == 0 ? &pend.has_parts :
		   strcmp(key, "live") == 0 ? &pend.has_live : NULL;
	if (!has)
		return;
	if (*has) {
		disordered();
		return;
	}
	if (has == &pend.has_count) {
		pend.count = strtoull(value, NULL, 10);
		pend.has_count = 1;
	} else if (has == &pend.has_parts) {
		pend.has_parts = parse_parts(value);
		pend.malformed += !pend.has_parts;
	} else {
		pend.has_live = parse_changes(value);
		pend.malformed += !pend.has_live;
	}
}

/* A "# thread="ID LABEL"" line. */
static void thread_meta(const char *value)
{
	char *e;
	unsigned long id = strtoul(value, &e, 10);
	if (*e != ' ' || id == 0 || id > UINT32_MAX - threads.base) {
		pend.malformed++;
		return;
	}
	threads.label = xrealloc(threads.label, (threads.n + 1) * sizeof(*threads.label));
	threads.id = xrealloc(threads.id, (threads.n + 1) * sizeof(*threads.id));
	threads.label[threads.n] = strdup(e + 1);
	if (!threads.label[threads.n])
		die(EXIT_USAGE, "out of memory");
	threads.id[threads.n++] = threads.base + (uint32_t)id;
	if (threads.base + id > threads.max)
		threads.max = threads.base + (uint32_t)id;
}

/* A stack line: what was said of it goes with it. */
static void add_stack(void *ctx, const char *text, size_t len, uint64_t value)
{
	if (diff_mode == 1)
		mixed();
	diff_mode = 0;
	uint32_t leaf = add_stack_counted(text, len, value, pend.count, pend.has_count,
					  pend.has_live ? pend.live : 0);
	for (size_t i = 0; leaf && pend.has_live && i < pend.nchanges; i++) {
		if (nlives == lives_cap) {
			lives_cap = lives_cap ? 2 * lives_cap : 1024;
			lives = xrealloc(lives, lives_cap * sizeof(*lives));
		}
		const struct collapsed_change *c = &pend.changes[i];
		lives[nlives++] = (struct live_change){ leaf, c->thread, c->ms, c->bytes, c->count };
		have_live = 1;
	}
	if (leaf && value) {
		if (have_threads != 0)
			have_threads = pend.has_parts;
		for (size_t i = 0; pend.has_parts && i < pend.nparts; i++) {
			if (nleaf_parts == leaf_parts_cap) {
				leaf_parts_cap = leaf_parts_cap ? 2 * leaf_parts_cap : 1024;
				leaf_parts = xrealloc(leaf_parts, leaf_parts_cap * sizeof(*leaf_parts));
			}
			const struct collapsed_part *p = &pend.parts[i];
			leaf_parts[nleaf_parts++] = (struct leaf_part){ leaf, p->thread, p->value, p->count };
		}
	}
	pend_clear();
}

static void add_stack2(void *ctx, const char *text, size_t len, uint64_t before, uint64_t after)
{
	if (diff_mode == 0)
		mixed();
	diff_mode = 1;
	add_stack_counted(text, len, after, before, 1, 0);
	pend_clear();
}

/* ---- source lines ---------------------------------------------------------- */

/* "# source="PLACE<TAB>TEXT"" lines, PLACE as a frame shows it
 * ("file.py:12"), sorted by place for lookups once read. */
static struct {
	char **place, **text;
	size_t n;
	int sorted;
	int wanted; /* 0 with --no-source */
} sources = { NULL, NULL, 0, 0, 1 };

static void source_meta(const char *value)
{
	const char *tab = strchr(value, '\t');
	if (!sources.wanted || !tab || tab == value)
		return;
	sources.place = xrealloc(sources.place, (sources.n + 1) * sizeof(char *));
	sources.text = xrealloc(sources.text, (sources.n + 1) * sizeof(char *));
	sources.place[sources.n] = strndup(value, (size_t)(tab - value));
	sources.text[sources.n] = strdup(tab + 1);
	if (!sources.place[sources.n] || !sources.text[sources.n])
		die(EXIT_USAGE, "out of memory");
	sources.n++;
	sources.sorted = 0;
}

static int by_place(const void *a, const void *b)
{
	return strcmp(sources.place[*(const size_t *)a], sources.place[*(const size_t *)b]);
}

/* The source text of a frame "function (PLACE)", or NULL. */
static const char *source_of(const char *frame, size_t n)
{
	static size_t *order;
	if (!sources.n || n < 4 || frame[n - 1] != ')')
		return NULL;
	if (!sources.sorted) {
		order = xrealloc(order, sources.n * sizeof(*order));
		for (size_t i = 0; i < sources.n; i++)
			order[i] = i;
		qsort(order, sources.n, sizeof(*order), by_place);
		sources.sorted = 1;
	}
	const char *open = NULL;
	for (size_t i = n - 1; i-- > 1;)
		if (frame[i] == '(' && frame[i - 1] == ' ') {
			open = frame + i + 1;
			break;
		}
	if (!open)
		return NULL;
	size_t plen = (size_t)(frame + n - 1 - open), lo = 0, hi = sources.n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *p = sources.place[order[mid]];
		int c = strncmp(p, open, plen);
		if (c == 0 && p[plen])
			c = 1;
		if (c == 0)
			return sources.text[order[mid]];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- metadata ------------------------------------------------------------- */

static struct {
	char **key, **value;
	size_t n;
} meta;

static const char *meta_get(const char *key)
{
	for (size_t i = meta.n; i-- > 0;)
		if (strcmp(meta.key[i], key) == 0)
			return meta.value[i];
	return NULL;
}

static void add_meta(void *ctx, const char *key, const char *value)
{
	/* the "# memray-fold 0.1.0" line names its writer: not shown */
	if (!*value && strncmp(key, "memray-", 7) == 0)
		return;
	if (strncmp(key, "stack.", 6) == 0) {
		stack_meta(key + 6, value);
		return;
	}
	if (strcmp(key, "thread") == 0) {
		thread_meta(value);
		return;
	}
	if (strcmp(key, "source") == 0) {
		source_meta(value);
		return;
	}
	if (strcmp(key, "metric") == 0) {
		const char *was = meta_get("metric");
		if (was && strcmp(was, value) != 0)
			warnmsg("inputs of different metrics (%s, %s) are added together", was, value);
	}
	meta.key = xrealloc(meta.key, (meta.n + 1) * sizeof(char *));
	meta.value = xrealloc(meta.value, (meta.n + 1) * sizeof(char *));
	meta.key[meta.n] = strdup(key);
	meta.value[meta.n] = strdup(value);
	if (!meta.key[meta.n] || !meta.value[meta.n])
		die(EXIT_USAGE, "out of memory");
	meta.n++;
}

/* ---- inputs --------------------------------------------------------------- */

/* Collapsed stacks, with what memray-fold says of them. */
static int read_folded(struct mr_input *in)
{
	pend_clear();
	pend.disordered = 0;
	pend.malformed = 0;
	pend.input = mr_input_name(in);
	threads.base = threads.max;
	struct folded_sink sink = { add_stack, add_meta, NULL, add_stack2 };
	char *name = strdup(pend.input); /* for after folded_read_input closes in */
	int rc = folded_read_input(in, &sink);
	if (pend.malformed)
		warnmsg("warning: %s: %ld '# stack.' or '# thread=' line%s not understood, left out",
			name ? name : "input", pend.malformed, pend.malformed == 1 ? "" : "s");
	free(name);
	pend_clear();
	return rc;
}

/* A memray stream is folded as memray-fold does by default (at the
 * peak, with counts, threads and source lines) and read back. */
static int read_stream(struct mr_input *in)
{
	struct replay r;
	struct symbolizer *sym = sym_new();
	struct ingest g = { NULL, 0, 0, sym };
	char *name = strdup(mr_input_name(in));
	if (!name)
		die(EXIT_USAGE, "out of memory");
	replay_init(&r, 1); /* by thread, for the values by thread */
	struct collapse_extra x = { 1, sources.wanted, collapse_temporal_start(&r) };
	int status = ingest_input(&g, &r, in, -1); /* closes in */
	if (status == EXIT_REFUSED) {
		sym_free(sym);
		collapse_temporal_free(x.temporal);
		replay_free(&r);
		ingest_free(&g);
		free(name);
		return status;
	}
	struct collapse_opts o = { METRIC_PEAK, FRAMES_AUTO, 0, 0, 0 };
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	if (!m)
		die(EXIT_USAGE, "out of memory");
	collapse_write_extra(m, &r, sym, &o, &x);
	fclose(m);
	sym_free(sym);
	collapse_temporal_free(x.temporal);
	replay_free(&r);
	ingest_free(&g);
	struct mr_input *mi = mr_input_open_memory(text, len, name);
	if (!mi)
		die(EXIT_USAGE, "out of memory");
	int rc = read_folded(mi);
	free(text);
	free(name);
	return status ? status : rc == EXIT_REFUSED ? EXIT_OK : rc;
}

static int read_one(const char *path)
{
	char err[600];
	struct mr_input *in = mr_input_open(path, err, sizeof(err));
	if (!in) {
		warnmsg("%s", err);
		return EXIT_REFUSED;
	}
	diff_file = mr_input_name(in);
	if (mr_input_is_stream(in)) {
		if (diff_mode == 1)
			mixed();
		diff_mode = 0;
		return read_stream(in);
	}
	int rc = read_folded(in);
	diff_file = NULL;
	return rc;
}

/* ---- pruning -------------------------------------------------------------- */

/* The k-th largest of v[0..n) (k < n), by quickselect; v is reordered. */
static uint64_t kth_largest(uint64_t *v, size_t n, size_t k)
{
	size_t lo = 0, hi = n - 1;
	uint64_t seed = 0x2545f4914f6cdd1dull;
	while (lo < hi) {
		seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
		uint64_t pivot = v[lo + seed % (hi - lo + 1)];
		/* three-way partition: > pivot, == pivot, < pivot */
		size_t lt = lo, i = lo, gt = hi;
		while (i <= gt) {
			if (v[i] > pivot) {
				uint64_t t = v[i]; v[i] = v[lt]; v[lt] = t;
				lt++, i++;
			} else if (v[i] < pivot) {
				uint64_t t = v[i]; v[i] = v[gt]; v[gt] = t;
				if (gt-- == 0)
					break;
			} else {
				i++;
			}
		}
		if (k < lt)
			hi = lt - 1;
		else if (k > gt)
			lo = gt + 1;
		else
			return pivot;
	}
	return v[k];
}

/* What pruning weighs a node by: its value, and the bytes it held at
 * other times, so that what a time range shows is there too. */
static uint64_t weight(size_t i)
{
	return nodes[i].total + nodes[i].live;
}

/* Marks the nodes to write: those of at least min_width percent of the
 * total (by weight), and at most max_frames of them, the largest; among
 * frames of the same weight at the cut, the shallowest (a node is never
 * heavier than its parent and is deeper, so the kept set is a tree).
 * Returns how many frames were left out. */
static size_t prune(double min_width, size_t max_frames)
{
	double need = ceil((double)nodes[0].total * min_width / 100.0);
	uint64_t floor_ = need >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)need;
	if (floor_ < 1)
		floor_ = 1;
	size_t n = 0;
	for (size_t i = 1; i < nnodes; i++)
		n += weight(i) >= floor_;
	for (size_t i = 0; i < nnodes; i++)
		nodes[i].keep = i == 0 || weight(i) >= floor_;
	if (n > max_frames) {
		uint64_t *v = xrealloc(NULL, n * sizeof(*v));
		size_t k = 0;
		for (size_t i = 1; i < nnodes; i++)
			if (nodes[i].keep)
				v[k++] = weight(i);
		uint64_t cut = kth_largest(v, n, max_frames - 1); /* the last value kept */
		free(v);
		/* above the cut: kept; at it: as many as the budget allows,
		 * shallowest first (parents precede children in node order) */
		size_t room = max_frames, max_depth = 0, nties = 0;
		uint32_t *depth = xrealloc(NULL, nnodes * sizeof(*depth));
		depth[0] = 0;
		for (size_t i = 1; i < nnodes; i++) {
			depth[i] = depth[nodes[i].parent] + 1;
			nodes[i].keep = nodes[i].keep && weight(i) > cut;
			room -= nodes[i].keep;
			if (weight(i) == cut) {
				nties++;
				if (depth[i] > max_depth)
					max_depth = depth[i];
			}
		}
		/* the ties by depth (a counting sort, stable) */
		size_t *start = xrealloc(NULL, (max_depth + 2) * sizeof(*start));
		uint32_t *ties = xrealloc(NULL, (nties ? nties : 1) * sizeof(*ties));
		memset(start, 0, (max_depth + 2) * sizeof(*start));
		for (size_t i = 1; i < nnodes; i++)
			if (weight(i) == cut)
				start[depth[i] + 1]++;
		for (size_t d = 1; d <= max_depth + 1; d++)
			start[d] += start[d - 1];
		for (size_t i = 1; i < nnodes; i++)
			if (weight(i) == cut)
				ties[start[depth[i]]++] = (uint32_t)i;
		for (size_t t = 0; t < nties && room; t++)
			if (nodes[nodes[ties[t]].parent].keep) {
				nodes[ties[t]].keep = 1;
				room--;
			}
		free(ties);
		free(start);
		free(depth);
	}
	size_t dropped = 0;
	for (size_t i = 1; i < nnodes; i++)
		dropped += !nodes[i].keep && weight(i); /* 0: a vanished differential stack */
	return dropped;
}

/* ---- output --------------------------------------------------------------- */

/* A module name of CPython's own: libpython3.X.so..., or the interpreter
 * executable python3 or python3.X. */
static int is_cpython_module(const char *m, size_t n)
{
	if (n >= 9 && memcmp(m, "libpython", 9) == 0)
		return 1;
	if (n < 6 || memcmp(m, "python", 6) != 0)
		return 0;
	for (size_t i = 6; i < n; i++)
		if (!((m[i] >= '0' && m[i] <= '9') || m[i] == '.'))
			return 0;
	return 1;
}

/* runpy, which runs "python -m" modules: CPython's machinery, not the
 * program's (memray hides it too). */
static int is_runpy(const char *file, size_t n)
{
	return (n >= 8 && memcmp(file + n - 8, "runpy.py", 8) == 0 &&
		(n == 8 || file[n - 9] == '/')) ||
	       (n == 14 && memcmp(file, "<frozen runpy>", 14) == 0);
}

/* What kind of code a frame is, by its text: 1 Python (a "(file.py:N)" or
 * "(<frozen ...>:N)" location), 3 the import system (importlib's
 * bootstrap, as memray-fold --hide-import-system knows it), 2 CPython's
 * own code (_Py* and Py* symbols, code in libpython or the python3.X
 * executable, runpy), 4 a label in brackets where no frame was recorded
 * ("[Python start-up]", "[unknown]"), 0 other native code. */
static int frame_kind(const char *s, size_t n)
{
	if (n > 2 && s[0] == '[' && s[n - 1] == ']' && !memchr(s, '(', n))
		return 4;
	const char *open = NULL;
	for (size_t i = n; i-- > 0;)
		if (s[i] == '(') {
			open = s + i;
			break;
		}
	if (open && n > 2 && s[n - 1] == ')') {
		const char *loc = open + 1, *end = s + n - 1, *colon = NULL;
		for (const char *p = end; p-- > loc;)
			if (*p == ':') {
				colon = p;
				break;
			}
		int line = colon && colon + 1 < end;
		for (const char *p = colon ? colon + 1 : end; p < end; p++)
			if (*p < '0' || *p > '9')
				line = 0;
		if (line) {
			size_t flen = (size_t)(colon - loc);
			if (collapse_is_import_system(loc, flen))
				return 3;
			if (is_runpy(loc, flen))
				return 2;
			if (*loc == '<' || (flen > 3 && memcmp(colon - 3, ".py", 3) == 0) ||
			    (flen > 4 && memcmp(colon - 4, ".pyx", 4) == 0))
				return 1;
		} else if (is_cpython_module(loc, (size_t)(end - loc))) {
			return 2;
		}
	}
	if ((n > 3 && memcmp(s, "_Py", 3) == 0) ||
	    (n > 3 && s[0] == 'P' && s[1] == 'y' && s[2] >= 'A' && s[2] <= 'Z'))
		return 2;
	return 0;
}

static int by_name(const void *a, const void *b)
{
	const struct node *x = &nodes[*(const uint32_t *)a], *y = &nodes[*(const uint32_t *)b];
	uint32_t lx = names.len[x->name], ly = names.len[y->name];
	int c = memcmp(names.text[x->name], names.text[y->name], lx < ly ? lx : ly);
	return c ? c : (lx > ly) - (lx < ly);
}

struct writer {
	FILE *f;
	uint32_t *name_out; /* name id -> index in the page's table, +1 */
	uint32_t nout;
	int first;
	uint32_t written; /* nodes written so far */
};

/* Writes the kept subtree under id in preorder, children by name. An
 * explicit stack: call trees can be thousands deep. */
static void write_nodes(struct writer *w, int counts)
{
	struct frame { uint32_t id, depth; } *stack = NULL;
	size_t sp = 0, scap = 0;
	uint32_t *kids = NULL;
	size_t kcap = 0;
#define PUSH_FRAME(i, d) do { \
	if (sp == scap) { \
		scap = scap ? scap * 2 : 1024; \
		stack = xrealloc(stack, scap * sizeof(*stack)); \
	} \
	stack[sp++] = (struct frame){ (i), (d) }; \
} while (0)
	PUSH_FRAME(0, 0);
	while (sp) {
		struct frame fr = stack[--sp];
		const struct node *nd = &nodes[fr.id];
		uint64_t rest = nd->total, rest_count = nd->count;
		size_t nk = 0;
		for (uint32_t c = nd->first_child; c; c = nodes[c].next_sibling) {
			if (!nodes[c].keep)
				continue;
			if (nk == kcap) {
				kcap = kcap ? kcap * 2 : 64;
				kids = xrealloc(kids, kcap * sizeof(*kids));
			}
			kids[nk++] = c;
			rest -= nodes[c].total;
			rest_count -= nodes[c].count;
		}
		nodes[fr.id].out = w->written++;
		if (fr.id) {
			uint32_t out = w->name_out[nd->name];
			fprintf(w->f, "%s%u,%u,%" PRIu64, w->first ? "" : ",", out - 1, fr.depth, rest);
			if (counts)
				fprintf(w->f, ",%" PRIu64, rest_count);
			w->first = 0;
		} else {
			fprintf(w->f, "\"root\":[%" PRIu64, rest);
			if (counts)
				fprintf(w->f, ",%" PRIu64, rest_count);
			fputs("],\n\"nodes\":[", w->f);
			w->first = 1;
		}
		if (nk > 1)
			qsort(kids, nk, sizeof(*kids), by_name);
		/* pushed last first, so they come out in name order */
		for (size_t i = nk; i-- > 0;)
			PUSH_FRAME(kids[i], fr.depth + 1);
	}
#undef PUSH_FRAME
	fputs("]", w->f);
	free(stack);
	free(kids);
}

static int by_out_thread(const void *a, const void *b)
{
	const struct leaf_part *x = a, *y = b;
	if (x->node != y->node)
		return (x->node > y->node) - (x->node < y->node);
	return (x->thread > y->thread) - (x->thread < y->thread);
}

/* Where node n is in the page: its index among the written nodes, or
 * its nearest written ancestor's when it was left out. */
static uint32_t written_node(uint32_t n)
{
	while (!nodes[n].keep)
		n = nodes[n].parent;
	return nodes[n].out;
}

/* The threads' table, and each written node's own value by thread:
 * "parts" as (node, thread, value, count) quadruples, node its index in
 * "nodes" from 1 (0 the root). A stack's value goes to its deepest
 * written frame, as its value does in the nodes' rest. */
static void write_threads(FILE *f)
{
	fputs(",\n\"threads\":[", f);
	for (size_t i = 0; i < threads.n; i++) {
		fprintf(f, "%s[%u,", i ? "," : "", threads.id[i]);
		json_string(f, threads.label[i], strlen(threads.label[i]));
		fputc(']', f);
	}
	for (size_t i = 0; i < nleaf_parts; i++)
		leaf_parts[i].node = written_node(leaf_parts[i].node);
	if (nleaf_parts)
		qsort(leaf_parts, nleaf_parts, sizeof(*leaf_parts), by_out_thread);
	fputs("],\n\"parts\":[", f);
	for (size_t i = 0, j; i < nleaf_parts; i = j) {
		uint64_t v = 0, c = 0;
		for (j = i; j < nleaf_parts && leaf_parts[j].node == leaf_parts[i].node &&
			    leaf_parts[j].thread == leaf_parts[i].thread; j++)
			v += leaf_parts[j].value, c += leaf_parts[j].count;
		fprintf(f, "%s%u,%u,%" PRIu64 ",%" PRIu64, i ? "," : "", leaf_parts[i].node,
			leaf_parts[i].thread, v, c);
	}
	fputc(']', f);
}

static int by_node_thread_ms(const void *a, const void *b)
{
	const struct live_change *x = a, *y = b;
	if (x->node != y->node)
		return (x->node > y->node) - (x->node < y->node);
	if (x->thread != y->thread)
		return (x->thread > y->thread) - (x->thread < y->thread);
	return (x->ms > y->ms) - (x->ms < y->ms);
}

/* "live": for each written node and thread, the changes of the live
 * bytes and allocations of the stacks whose deepest written frame it is,
 * at the timeline's points: node, thread, the number of changes, then
 * (ms, bytes, count) for each, in time order. */
static void write_live(FILE *f)
{
	for (size_t i = 0; i < nlives; i++)
		lives[i].node = written_node(lives[i].node);
	if (nlives)
		qsort(lives, nlives, sizeof(*lives), by_node_thread_ms);
	fputs(",\n\"live\":[", f);
	int first = 1;
	for (size_t i = 0, j; i < nlives; i = j) {
		for (j = i; j < nlives && lives[j].node == lives[i].node &&
			    lives[j].thread == lives[i].thread; j++)
			;
		/* the group compacted in place, the same moment's changes added up */
		size_t n = 0;
		for (size_t k = i; k < j; k++) {
			if (n && lives[i + n - 1].ms == lives[k].ms) {
				lives[i + n - 1].bytes += lives[k].bytes;
				lives[i + n - 1].count += lives[k].count;
			} else {
				lives[i + n++] = lives[k];
			}
		}
		fprintf(f, "%s%u,%u,%zu", first ? "" : ",", lives[i].node, lives[i].thread, n);
		for (size_t k = i; k < i + n; k++)
			fprintf(f, ",%" PRIu64 ",%" PRId64 ",%" PRId64, lives[k].ms, lives[k].bytes,
				lives[k].count);
		first = 0;
	}
	fputc(']', f);
}

/* "source": [name index, text] for each written frame whose line's text
 * came with the input. */
static void write_sources(FILE *f, const struct writer *w)
{
	fputs(",\n\"source\":[", f);
	int first = 1;
	for (size_t i = 0; i < names.n && sources.n; i++) {
		if (!w->name_out[i])
			continue;
		const char *t = source_of(names.text[i], names.len[i]);
		if (!t)
			continue;
		fprintf(f, "%s[%u,", first ? "" : ",", w->name_out[i] - 1);
		json_string(f, t, strlen(t));
		fputc(']', f);
		first = 0;
	}
	fputc(']', f);
}

static void write_data(FILE *f, const char *countname, int inverted, size_t pruned,
		       uint64_t pruned_value)
{
	struct writer w = { f, xrealloc(NULL, (names.n + 1) * sizeof(uint32_t)), 0, 1, 0 };
	memset(w.name_out, 0, (names.n + 1) * sizeof(uint32_t));
	/* the page's name table: kept frames' names only, in first use order */
	fputs("{\"version\":1,\n\"names\":[", f);
	for (size_t i = 1; i < nnodes; i++) {
		uint32_t nm = nodes[i].name;
		if (!nodes[i].keep || w.name_out[nm])
			continue;
		w.name_out[nm] = ++w.nout;
		if (w.nout > 1)
			fputc(',', f);
		json_string(f, names.text[nm], names.len[nm]);
	}
	fputs("],\n\"kinds\":\"", f);
	for (size_t i = 1; i < nnodes; i++) {
		uint32_t nm = nodes[i].name;
		if (nodes[i].keep && w.name_out[nm] && !(w.name_out[nm] & 0x80000000u)) {
			fputc('0' + frame_kind(names.text[nm], names.len[nm]), f);
			w.name_out[nm] |= 0x80000000u; /* written */
		}
	}
	for (size_t i = 0; i < names.n; i++)
		w.name_out[i] &= 0x7fffffffu;
	fputs("\",\n\"countname\":", f);
	json_string(f, countname, strlen(countname));
	fprintf(f, ",\n\"inverted\":%s,\n\"pruned\":%zu,\n\"prunedValue\":%" PRIu64 ",\n",
		inverted ? "true" : "false", pruned, pruned_value);
	fputs("\"meta\":[", f);
	for (size_t i = 0; i < meta.n; i++) {
		fputs(i ? ",[" : "[", f);
		json_string(f, meta.key[i], strlen(meta.key[i]));
		fputc(',', f);
		json_string(f, meta.value[i], strlen(meta.value[i]));
		fputc(']', f);
	}
	int counts = have_counts == 1;
	fprintf(f, "],\n\"counts\":%s,\n\"diff\":%s,\n", counts ? "true" : "false",
		diff_mode == 1 ? "true" : "false");
	write_nodes(&w, counts);
	if (have_threads == 1)
		write_threads(f);
	if (have_live)
		write_live(f);
	write_sources(f, &w);
	fputs("}\n", f);
	free(w.name_out);
}

/* HTML text: & < > " ' become entities. */
static void html_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&#39;", f); break;
		default: putc(*s, f);
		}
	}
}

/* The page with its {{TITLE}}, {{SUBTITLE}} and {{DATA}} filled in. */
static void write_page(FILE *f, const char *title, const char *subtitle, const char *countname,
		       int inverted, size_t pruned, uint64_t pruned_value)
{
	const char *p = flame_page;
	for (;;) {
		const char *mark = strstr(p, "{{");
		if (!mark) {
			fputs(p, f);
			break;
		}
		fwrite(p, 1, (size_t)(mark - p), f);
		if (strncmp(mark, "{{TITLE}}", 9) == 0) {
			html_text(f, title);
			p = mark + 9;
		} else if (strncmp(mark, "{{SUBTITLE}}", 12) == 0) {
			html_text(f, subtitle);
			p = mark + 12;
		} else if (strncmp(mark, "{{DATA}}", 8) == 0) {
			write_data(f, countname, inverted, pruned, pruned_value);
			p = mark + 8;
		} else {
			fputs("{{", f);
			p = mark + 2;
		}
	}
}

int main(int argc, char **argv)
{
	progname = "memray-flame";
	enum { VERSION = 256, NO_SOURCE };
	static const struct option longopts[] = {
		{ "title", required_argument, NULL, 't' },
		{ "subtitle", required_argument, NULL, 's' },
		{ "countname", required_argument, NULL, 'c' },
		{ "min-width", required_argument, NULL, 'w' },
		{ "max-frames", required_argument, NULL, 'n' },
		{ "inverted", no_argument, NULL, 'i' },
		{ "no-source", no_argument, NULL, NO_SOURCE },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, VERSION },
		{ NULL, 0, NULL, 0 },
	};
	const char *title = "Memory flame graph", *subtitle = "", *countname = NULL;
	double min_width = 0;
	long max_frames = 200000;
	int inverted = 0, c;
	char *end;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":t:s:c:w:n:ih", longopts, NULL)) != -1) {
		switch (c) {
		case 't': title = optarg; break;
		case 's': subtitle = optarg; break;
		case 'c':
			if (!*optarg)
				die(EXIT_USAGE, "invalid --countname '': it needs a name");
			countname = optarg;
			break;
		case 'w':
			min_width = strtod(optarg, &end);
			if (*end || end == optarg || !(min_width >= 0 && min_width <= 100))
				die(EXIT_USAGE, "invalid --min-width '%s': expected a percent, 0 to 100",
				    optarg);
			break;
		case 'n':
			max_frames = strtol(optarg, &end, 10);
			if (*end || end == optarg || max_frames < 1 || max_frames > 50000000)
				die(EXIT_USAGE, "invalid --max-frames '%s': expected 1 to 50000000",
				    optarg);
			break;
		case 'i': inverted = 1; break;
		case NO_SOURCE: sources.wanted = 0; break;
		case 'h': usage(EXIT_OK); break;
		case VERSION: version_exit();
		default: bad_option(c, argv[optind - 1]); usage(EXIT_USAGE);
		}
	}
	nodes_cap = 4096;
	nodes = xrealloc(NULL, nodes_cap * sizeof(*nodes));
	nodes[0] = (struct node){ 0, 0, 0, 0, 0, 0, 1, 0, 0 };
	nnodes = 1;
	int status = EXIT_OK, refused = 0, inputs = 0;
	for (int i = optind; i < argc || (i == optind && optind == argc); i++) {
		int st = read_one(optind == argc ? "-" : argv[i]);
		refused += st == EXIT_REFUSED;
		inputs++;
		if (st != EXIT_OK)
			status = EXIT_USAGE;
	}
	/* the readable inputs are still read when some are not */
	if (refused == inputs) /* no page for input that is neither stacks nor a stream */
		return EXIT_USAGE;
	if (!countname) {
		const char *m = meta_get("metric");
		countname = m && strcmp(m, "count") == 0 ? "allocations" : "bytes";
	}
	size_t pruned = prune(min_width, (size_t)max_frames);
	uint64_t pruned_value = 0;
	for (size_t i = 1; i < nnodes; i++)
		if (!nodes[i].keep && nodes[nodes[i].parent].keep)
			pruned_value += nodes[i].total;
	if (pruned)
		warnmsg("%zu frames too small to show left out (%.3g%% of the total;"
			" see --min-width and --max-frames)", pruned,
			nodes[0].total ? 100.0 * (double)pruned_value / (double)nodes[0].total : 0.0);
	write_page(stdout, title, subtitle, countname, inverted, pruned, pruned_value);
	if (close_stdout() < 0)
		status = EXIT_USAGE;
	return status;
}
