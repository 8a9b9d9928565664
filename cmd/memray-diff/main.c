/*
 * memray-diff - two runs in (collapsed stacks or streams), the difference
 * out: differential collapsed stacks ("frames before after", the form
 * flamegraph.pl's difffolded.pl writes and memray-flame draws), or with
 * --report the stacks that grew and shrank most.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/collapse.h"
#include "../../lib/folded.h"
#include "../../lib/frame_norm.h"
#include "../../lib/ingest.h"
#include "../../lib/input.h"
#include "../../lib/util.h"

static const char usage_text[] =
	"usage: memray-diff [--metric METRIC] [--strip-prefix DIR]... [--ignore-lines]\n"
	"                   [--report] [--top N] BEFORE AFTER\n"
	"\n"
	"Compares two runs, each given as collapsed stacks (from memray-fold or any\n"
	"other tool) or as a memray stream, and writes differential collapsed\n"
	"stacks: one line per stack of either run, 'frames before after'. Paths in\n"
	"frames are compared relative to each run's root: by default the directory\n"
	"that holds all its files outside the Python library directories, which are\n"
	"themselves stripped up to site-packages/, dist-packages/ or lib/pythonX.Y/.\n"
	"\n"
	"  -m, --metric METRIC   how streams are folded: peak (default), total,\n"
	"                        count, leaked or temporary\n"
	"  -s, --strip-prefix DIR\n"
	"                        strip DIR from the paths under it, in both runs,\n"
	"                        instead of each run's own root (repeatable: the\n"
	"                        longest DIR a path is under is stripped)\n"
	"  -i, --ignore-lines    compare frames without their line numbers\n"
	"  -r, --report          a report instead: the totals, then the stacks that\n"
	"                        grew and shrank most\n"
	"  -n, --top N           stacks in each part of the report (default 10)\n"
	"  -h, --help            show this help\n"
	"      --version         show the version\n";

static void usage(int status)
{
	usage_exit(usage_text, status);
}

static char **prefixes; /* the --strip-prefix DIRs */

/* ---- stacks of both runs, by text -------------------------------------------- */

struct entry {
	char *text;
	size_t len;
	uint64_t v[2];
};
static struct entry *entries;
static size_t nentries, entries_cap;
static uint32_t *table;
static size_t table_cap;
static int side; /* 0 before, 1 after: which run is being read */
static char metric[2][32];
static uint64_t sampled[2]; /* a side's sampling gap: its values are estimates */

/* s's n bytes as a string of their own */
static char *text_copy(const char *s, size_t n)
{
	char *t = xrealloc(NULL, n + 1);
	memcpy(t, s, n);
	t[n] = 0;
	return t;
}

static uint64_t hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

static void grow_table(void)
{
	size_t cap = table_cap ? table_cap * 2 : 4096;
	uint32_t *t = xrealloc(NULL, cap * sizeof(*t));
	memset(t, 0xff, cap * sizeof(*t));
	for (size_t i = 0; i < nentries; i++) {
		size_t j = hash(entries[i].text, entries[i].len) & (cap - 1);
		while (t[j] != UINT32_MAX)
			j = (j + 1) & (cap - 1);
		t[j] = (uint32_t)i;
	}
	free(table);
	table = t;
	table_cap = cap;
}

static void add(void *ctx, const char *s, size_t n, uint64_t value)
{
	(void)ctx;
	if ((nentries + 1) * 2 > table_cap)
		grow_table();
	size_t j = hash(s, n) & (table_cap - 1);
	while (table[j] != UINT32_MAX) {
		struct entry *e = &entries[table[j]];
		if (e->len == n && memcmp(e->text, s, n) == 0) {
			e->v[side] += value;
			return;
		}
		j = (j + 1) & (table_cap - 1);
	}
	if (nentries == entries_cap) {
		entries_cap = entries_cap ? entries_cap * 2 : 1024;
		entries = xrealloc(entries, entries_cap * sizeof(*entries));
	}
	entries[nentries] = (struct entry){ text_copy(s, n), n, { 0, 0 } };
	entries[nentries].v[side] = value;
	table[j] = (uint32_t)nentries++;
}

/* ---- reading a run ---------------------------------------------------------- */

/* One run's stacks as read, before their frames are normalised. */
static struct collapsed *raw;
static size_t nraw, raw_cap;

static void keep(void *ctx, const char *s, size_t n, uint64_t value)
{
	(void)ctx;
	if (nraw == raw_cap) {
		raw_cap = raw_cap ? raw_cap * 2 : 1024;
		raw = xrealloc(raw, raw_cap * sizeof(*raw));
	}
	raw[nraw++] = (struct collapsed){ .text = text_copy(s, n), .len = n, .value = value };
}

/* a differential file as an input: its own side of each line */
static void keep2(void *ctx, const char *s, size_t n, uint64_t before, uint64_t after)
{
	keep(ctx, s, n, side ? after : before);
}

static void meta(void *ctx, const char *key, const char *value)
{
	(void)ctx;
	if (strcmp(key, "metric") == 0)
		snprintf(metric[side], sizeof(metric[side]), "%s", value);
	else if (strcmp(key, "sampled") == 0)
		sampled[side] = strtoull(value, NULL, 10) ? strtoull(value, NULL, 10) : 1;
}

/* Reads path's stacks into raw; returns 0, 2 after damage, or EXIT_REFUSED. */
static int read_run(const char *path, const struct collapse_opts *o)
{
	char err[600];
	struct mr_input *in = mr_input_open(path, err, sizeof(err));
	if (!in) {
		warnmsg("%s", err);
		return EXIT_REFUSED;
	}
	if (!mr_input_is_stream(in)) {
		struct folded_sink sink = { keep, meta, NULL, keep2 };
		return folded_read_input(in, &sink);
	}
	struct replay r;
	struct ingest g = { NULL, 0, 0, NULL };
	replay_init(&r, 0);
	int status = ingest_input(&g, &r, in, -1);
	sampled[side] = r.sample_bytes;
	const char *why = metric_unavailable(&r, o->metric);
	if (why)
		die(EXIT_USAGE, "%s: %s", path, why);
	struct symbolizer *sym = sym_new();
	nraw = collapse_lines(&r, sym, o, &raw);
	raw_cap = nraw;
	sym_free(sym);
	replay_free(&r);
	ingest_free(&g);
	snprintf(metric[side], sizeof(metric[side]), "%s", metric_name(o->metric));
	return status;
}

/* The stacks read into raw, normalised (paths relative to the run's root,
 * lines dropped if asked), added to the side being read; the root used
 * into root[side]. */
static char *root[2];

static void add_run(char *const *dirs, size_t ndirs, int ignore_lines)
{
	struct frame_norm nm;
	frame_norm_init(&nm, dirs, ndirs, ignore_lines);
	for (size_t i = 0; i < nraw; i++)
		frame_norm_learn(&nm, raw[i].text, raw[i].len);
	for (size_t i = 0; i < nraw; i++) {
		size_t len;
		char *t = frame_norm_stack(&nm, raw[i].text, raw[i].len, &len);
		add(NULL, t, len, raw[i].value);
		free(t);
	}
	size_t len;
	const char *r = frame_norm_root(&nm, &len);
	root[side] = xrealloc(NULL, len + 1);
	memcpy(root[side], r, len);
	root[side][len] = 0;
	frame_norm_free(&nm);
	collapse_lines_free(raw, nraw);
	raw = NULL;
	nraw = raw_cap = 0;
}

/* ---- output ------------------------------------------------------------------- */

static int by_text(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	return strcmp(x->text, y->text);
}

static int64_t delta(const struct entry *e)
{
	return (int64_t)(e->v[1] - e->v[0]);
}

static int by_growth(const void *a, const void *b)
{
	int64_t x = delta(*(struct entry *const *)a), y = delta(*(struct entry *const *)b);
	return (x < y) - (x > y);
}

static int by_shrink(const void *a, const void *b)
{
	return -by_growth(a, b);
}

static int bytes_metric(const char *m)
{
	return strcmp(m, "count") != 0;
}

#define AMOUNT 32 /* room for human_size's 16 bytes or a 20-digit number */

static void amount(char *buf, uint64_t v, int bytes)
{
	if (bytes)
		human_size(buf, v);
	else
		snprintf(buf, AMOUNT, "%" PRIu64, v);
}

/* The stack for people: the leaf, then up to three callers. */
static void where(const struct entry *e)
{
	const char *s = e->text;
	size_t n = e->len, shown = 0;
	while (n > 0 && shown < 4) {
		const char *semi = NULL;
		for (size_t i = n; i-- > 0;)
			if (s[i] == ';') {
				semi = s + i;
				break;
			}
		size_t start = semi ? (size_t)(semi - s) + 1 : 0;
		printf("%s%.*s", shown ? " <- " : "", (int)(n - start), s + start);
		shown++;
		n = semi ? (size_t)(semi - s) : 0;
	}
	if (n > 0)
		fputs(" <- ...", stdout);
	putchar('\n');
}

static void report_part(const char *title, struct entry **v, size_t n, size_t top, int sign,
			int bytes)
{
	printf("\n%s:\n", title);
	size_t shown = 0;
	for (size_t i = 0; i < n && shown < top; i++) {
		int64_t d = delta(v[i]);
		if (sign > 0 ? d <= 0 : d >= 0)
			break;
		char a[AMOUNT], b[AMOUNT], c[AMOUNT];
		amount(a, (uint64_t)(d < 0 ? -d : d), bytes);
		amount(b, v[i]->v[0], bytes);
		amount(c, v[i]->v[1], bytes);
		if (bytes)
			printf("  %c%-10s (%s -> %s, %+" PRId64 ")  ", d < 0 ? '-' : '+', a, b, c, d);
		else
			printf("  %c%-10s (%s -> %s)  ", d < 0 ? '-' : '+', a, b, c);
		where(v[i]);
		shown++;
	}
	if (!shown)
		puts("  (none)");
}

/* The roots the paths were made relative to, if any. */
static void print_roots(char *const *strip, size_t nstrip)
{
	if (nstrip) {
		fputs("root:    --strip-prefix ", stdout);
		for (size_t i = 0; i < nstrip; i++) {
			size_t n = strlen(strip[i]);
			while (n > 1 && strip[i][n - 1] == '/')
				n--;
			printf("%s%.*s", i ? ", " : "", (int)n, strip[i]);
		}
		putchar('\n');
	} else if (root[0][0] || root[1][0]) {
		printf("root:    %s (before), %s (after)\n", root[0][0] ? root[0] : "none",
		       root[1][0] ? root[1] : "none");
	}
}

static void report(const char *before, const char *after, size_t top, char *const *strip,
		   size_t nstrip, int ignore_lines)
{
	int bytes = bytes_metric(metric[1][0] ? metric[1] : metric[0]);
	uint64_t t0 = 0, t1 = 0;
	size_t grew = 0, shrank = 0, added = 0, gone = 0;
	struct entry **v = xrealloc(NULL, (nentries ? nentries : 1) * sizeof(*v));
	for (size_t i = 0; i < nentries; i++) {
		v[i] = &entries[i];
		t0 += entries[i].v[0];
		t1 += entries[i].v[1];
		grew += entries[i].v[1] > entries[i].v[0];
		shrank += entries[i].v[1] < entries[i].v[0];
		added += entries[i].v[0] == 0 && entries[i].v[1] > 0;
		gone += entries[i].v[0] > 0 && entries[i].v[1] == 0;
	}
	char a[AMOUNT], b[AMOUNT], c[AMOUNT];
	amount(a, t0, bytes);
	amount(b, t1, bytes);
	amount(c, t1 > t0 ? t1 - t0 : t0 - t1, bytes);
	printf("metric:  %s\n", metric[1][0] ? metric[1] : metric[0][0] ? metric[0] : "(unknown)");
	printf("before:  %s  %s%s\n", a, before, sampled[0] ? "  (sampled: estimates)" : "");
	printf("after:   %s  %s%s\n", b, after, sampled[1] ? "  (sampled: estimates)" : "");
	print_roots(strip, nstrip);
	if (ignore_lines)
		puts("lines:   ignored");
	printf("change:  %c%s", t1 >= t0 ? '+' : '-', c);
	if (t0)
		printf(" (%+.1f%%)", 100.0 * ((double)t1 - (double)t0) / (double)t0);
	printf("\nstacks:  %zu grew (%zu new), %zu shrank (%zu gone), %zu unchanged\n", grew, added,
	       shrank, gone, nentries - grew - shrank);
	qsort(v, nentries, sizeof(*v), by_growth);
	report_part("grew most", v, nentries, top, 1, bytes);
	qsort(v, nentries, sizeof(*v), by_shrink);
	report_part("shrank most", v, nentries, top, -1, bytes);
	free(v);
}

int main(int argc, char **argv)
{
	progname = "memray-diff";
	static const struct option longopts[] = {
		{ "metric", required_argument, NULL, 'm' },
		{ "strip-prefix", required_argument, NULL, 's' },
		{ "ignore-lines", no_argument, NULL, 'i' },
		{ "report", no_argument, NULL, 'r' },
		{ "top", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct collapse_opts o = { METRIC_PEAK, FRAMES_AUTO, 0, 0, 0 };
	int do_report = 0, ignore_lines = 0, c;
	prefixes = xrealloc(NULL, (size_t)argc * sizeof(*prefixes));
	size_t nstrip = 0;
	long top = 10;
	char *end;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":m:s:irn:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			o.metric = metric_arg(optarg);
			break;
		case 's':
			if (!optarg[0])
				die(EXIT_USAGE, "invalid --strip-prefix '': expected a directory");
			prefixes[nstrip++] = optarg;
			break;
		case 'i': ignore_lines = 1; break;
		case 'r': do_report = 1; break;
		case 'n':
			top = strtol(optarg, &end, 10);
			if (*end || end == optarg || top < 1)
				die(EXIT_USAGE, "invalid --top '%s': expected a number from 1", optarg);
			break;
		case 'h': usage(EXIT_OK); break;
		case 'V': version_exit();
		default: bad_option(c, argv[optind - 1]); usage(EXIT_USAGE);
		}
	}
	if (argc - optind != 2) {
		warnmsg(argc - optind < 2 ? "two runs are needed: BEFORE and AFTER"
					  : "too many inputs: only BEFORE and AFTER");
		usage(EXIT_USAGE);
	}
	if (strcmp(argv[optind], "-") == 0 && strcmp(argv[optind + 1], "-") == 0)
		die(EXIT_USAGE, "only one of BEFORE and AFTER can be standard input");
	int status = EXIT_OK, refused = 0;
	for (side = 0; side < 2; side++) {
		int st = read_run(argv[optind + side], &o);
		add_run(prefixes, nstrip, ignore_lines);
		refused |= st == EXIT_REFUSED;
		if (st != EXIT_OK)
			status = EXIT_USAGE;
	}
	if (refused) /* nothing written when a run is not a run at all */
		return EXIT_USAGE;
	if (metric[0][0] && metric[1][0] && strcmp(metric[0], metric[1]) != 0)
		warnmsg("the runs measure different things: %s in %s, %s in %s", metric[0],
			argv[optind], metric[1], argv[optind + 1]);
	if (do_report) {
		report(argv[optind], argv[optind + 1], (size_t)top, prefixes, nstrip, ignore_lines);
	} else {
		qsort(entries, nentries, sizeof(*entries), by_text);
		const char *m = metric[1][0] ? metric[1] : metric[0];
		if (m[0])
			printf("# metric=\"%s\"\n", m);
		if (sampled[0] || sampled[1])
			printf("# sampled=%" PRIu64 "\n", sampled[1] > sampled[0] ? sampled[1] : sampled[0]);
		printf("# diff=\"before after\"\n");
		for (size_t i = 0; i < nentries; i++)
			printf("%s %" PRIu64 " %" PRIu64 "\n", entries[i].text, entries[i].v[0],
			       entries[i].v[1]);
	}
	for (size_t i = 0; i < nentries; i++)
		free(entries[i].text);
	free(entries);
	free(table);
	free(prefixes);
	free(root[0]);
	free(root[1]);
	if (fflush(stdout) != 0)
		die(EXIT_USAGE, "cannot write the output");
	return status;
}
