/*
 * memray-tree - collapsed stacks (or a stream) in, an indented tree of the
 * heaviest paths out.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/collapse.h"
#include "../../lib/folded.h"
#include "../../lib/ingest.h"
#include "../../lib/input.h"
#include "../../lib/util.h"

static const char usage_text[] =
	"usage: memray-tree [--depth N] [--min-percent P] [--biggest N] [--ascii]\n"
	"                   [--pid PID] [FILE...]\n"
	"\n"
	"Reads collapsed stacks (from memray-fold or any other tool) or memray\n"
	"streams, and prints the heaviest call paths as an indented tree with the\n"
	"bytes and percent of the total at each node.\n"
	"\n"
	"  -d, --depth N         at most N levels below the root (default: all, up\n"
	"                        to 1000, with a warning when deeper ones are cut)\n"
	"  -m, --min-percent P   hide nodes under P percent of the total (default 1)\n"
	"  -b, --biggest N       at most N children per node, heaviest first (default 10)\n"
	"  -a, --ascii           plain ASCII lines, no colour (the default when stdout\n"
	"                        is not a terminal)\n"
	"  -p, --pid PID         only the process PID of a stream\n"
	"  -h, --help            show this help\n"
	"      --version         show the version\n";

static void usage(int status)
{
	usage_exit(usage_text, status);
}

/* ---- the tree: nodes by (parent, frame text) ----------------------------- */

struct node {
	char *name;
	uint32_t parent, first_child, next_sibling;
	uint64_t value;
};
static struct node *nodes; /* 0 is the root */
static size_t nnodes, nodes_cap;
static uint32_t *index_;
static size_t index_cap;
static char metric[32] = "";
static char *damaged; /* the first input's damage ("# damaged=" or a stream's) */
static int sampled; /* the values are estimates from a sampled stream */

static uint64_t hash(uint32_t parent, const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ parent * 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h;
}

static uint32_t child(uint32_t parent, const char *s, size_t n)
{
	if ((nnodes + 1) * 2 > index_cap) {
		size_t cap = index_cap ? index_cap * 2 : 4096;
		uint32_t *ix = xrealloc(NULL, cap * sizeof(*ix));
		memset(ix, 0xff, cap * sizeof(*ix));
		for (size_t i = 1; i < nnodes; i++) {
			size_t j = hash(nodes[i].parent, nodes[i].name, strlen(nodes[i].name)) & (cap - 1);
			while (ix[j] != UINT32_MAX)
				j = (j + 1) & (cap - 1);
			ix[j] = (uint32_t)i;
		}
		free(index_);
		index_ = ix;
		index_cap = cap;
	}
	size_t j = hash(parent, s, n) & (index_cap - 1);
	while (index_[j] != UINT32_MAX) {
		struct node *c = &nodes[index_[j]];
		if (c->parent == parent && strlen(c->name) == n && memcmp(c->name, s, n) == 0)
			return index_[j];
		j = (j + 1) & (index_cap - 1);
	}
	if (nnodes == nodes_cap) {
		nodes_cap *= 2;
		nodes = xrealloc(nodes, nodes_cap * sizeof(*nodes));
	}
	uint32_t id = (uint32_t)nnodes++;
	nodes[id] = (struct node){ strndup(s, n), parent, 0, nodes[parent].first_child, 0 };
	nodes[parent].first_child = id;
	index_[j] = id;
	return id;
}

static const char *reading; /* the input being read, for messages */

static void add_stack(void *ctx, const char *s, size_t n, uint64_t value)
{
	(void)ctx;
	uint32_t at = 0;
	/* (every node's value is at most the root's) */
	if (__builtin_add_overflow(nodes[0].value, value, &nodes[0].value))
		die(EXIT_USAGE, "%s: the values add up to more than 2^64: not a profile "
		    "memray-tree can draw", reading);
	for (size_t i = 0; i < n;) {
		const char *semi = memchr(s + i, ';', n - i);
		size_t len = semi ? (size_t)(semi - (s + i)) : n - i;
		at = child(at, s + i, len);
		nodes[at].value += value;
		i += len + 1;
	}
}

/* a differential line (memray-diff): the tree of the later run */
static void add_stack2(void *ctx, const char *s, size_t n, uint64_t before, uint64_t after)
{
	(void)before;
	add_stack(ctx, s, n, after);
}

static void add_meta(void *ctx, const char *key, const char *value)
{
	(void)ctx;
	if (strcmp(key, "metric") == 0) {
		static int said;
		if (metric[0] && strcmp(metric, value) != 0 && !said++)
			warnmsg("inputs of different metrics (%s, %s) are added together", metric,
				value);
		snprintf(metric, sizeof(metric), "%s", value);
	}
	else if (strcmp(key, "sampled") == 0)
		sampled = 1;
	else if (strcmp(key, "damaged") == 0 && !damaged)
		damaged = strdup(value);
}

/* ---- printing ------------------------------------------------------------ */

struct style {
	const char *tee, *last, *bar, *blank, *on, *off;
};

static long max_depth = -1, biggest = 10;
static double min_percent = 1.0;

static int by_value(const void *a, const void *b)
{
	uint64_t x = nodes[*(const uint32_t *)a].value, y = nodes[*(const uint32_t *)b].value;
	return (x < y) - (x > y);
}

/* The children of id to draw, heaviest first: *n of them, in a new array. */
static uint32_t *kids_of(uint32_t id, size_t *n)
{
	size_t k = 0;
	for (uint32_t c = nodes[id].first_child; c; c = nodes[c].next_sibling)
		k++;
	uint32_t *kids = xrealloc(NULL, (k ? k : 1) * sizeof(*kids));
	k = 0;
	for (uint32_t c = nodes[id].first_child; c; c = nodes[c].next_sibling)
		if (100.0 * (double)nodes[c].value >= min_percent * (double)nodes[0].value)
			kids[k++] = c;
	qsort(kids, k, sizeof(*kids), by_value);
	*n = (long)k > biggest ? (size_t)biggest : k;
	return kids;
}

static void print_line(uint32_t id, const char *prefix, int last, const struct style *st)
{
	char h[24];
	double pct = nodes[0].value ? 100.0 * (double)nodes[id].value / (double)nodes[0].value : 0;
	/* counts of allocations (memray-fold -m count) as they are, bytes
	 * for people */
	if (strcmp(metric, "count") == 0)
		snprintf(h, sizeof(h), "%" PRIu64, nodes[id].value);
	else
		human_size(h, nodes[id].value);
	printf("%s%s%s%s%s (%.1f%%) %s\n", prefix, id == 0 ? "" : last ? st->last : st->tee, st->on,
	       h, st->off, pct, nodes[id].name);
}

/* Without --depth, a tree is drawn this deep at most: each line repeats
 * the lines above it in its prefix, so a chain of a hundred thousand
 * frames would be gigabytes of text. */
#define DRAW_DEPTH 1000

/* Draws the tree, depth first, with a stack of its own (a chain of frames
 * can be deeper than the C stack) and one prefix buffer. Returns whether
 * frames deeper than it may draw were left out. */
static int print_tree(const struct style *st)
{
	struct level {
		uint32_t *kids;
		size_t n, i, plen; /* children, the next one, the prefix's length */
	} *lv = NULL;
	size_t nlv = 0, cap = 0, pcap = 64, blen = strlen(st->bar);
	char *prefix = xrealloc(NULL, pcap);
	prefix[0] = 0;
	long limit = max_depth >= 0 ? max_depth : DRAW_DEPTH;
	int cut = 0;
	print_line(0, "", 1, st);
	uint32_t id = 0;
	int last = 1;
	for (;;) {
		/* id was just drawn: its children below it, unless too deep */
		if ((long)nlv < limit) {
			if (nlv == cap) {
				cap = cap ? cap * 2 : 64;
				lv = xrealloc(lv, cap * sizeof(*lv));
			}
			size_t plen = strlen(prefix);
			if (plen + blen + 1 > pcap) {
				pcap = 2 * (plen + blen + 1);
				prefix = xrealloc(prefix, pcap);
			}
			if (id != 0)
				strcpy(prefix + plen, last ? st->blank : st->bar);
			lv[nlv] = (struct level){ NULL, 0, 0, strlen(prefix) };
			lv[nlv].kids = kids_of(id, &lv[nlv].n);
			nlv++;
		} else if (max_depth < 0 && nodes[id].first_child) {
			cut = 1;
		}
		/* the next node to draw: the next child at the deepest level
		 * that has one */
		while (nlv && lv[nlv - 1].i == lv[nlv - 1].n) {
			free(lv[--nlv].kids);
			if (nlv)
				prefix[lv[nlv - 1].plen] = 0;
		}
		if (!nlv)
			break;
		struct level *l = &lv[nlv - 1];
		prefix[l->plen] = 0;
		id = l->kids[l->i++];
		last = l->i == l->n;
		print_line(id, prefix, last, st);
	}
	free(lv);
	free(prefix);
	return cut;
}

static int read_one(const char *path, struct replay *r, struct ingest *g, int *streams,
		    long pid)
{
	char err[600];
	struct mr_input *in = mr_input_open(path, err, sizeof(err));
	if (!in) {
		warnmsg("%s", err);
		return EXIT_REFUSED;
	}
	reading = mr_input_name(in);
	if (mr_input_is_stream(in)) {
		(*streams)++;
		return ingest_input(g, r, in, pid);
	}
	if (pid >= 0)
		die(EXIT_USAGE, "%s: --pid needs a memray stream, not collapsed stacks",
		    mr_input_name(in));
	struct folded_sink sink = { add_stack, add_meta, NULL, add_stack2 };
	return folded_read_input(in, &sink);
}

int main(int argc, char **argv)
{
	progname = "memray-tree";
	static const struct option longopts[] = {
		{ "depth", required_argument, NULL, 'd' },
		{ "min-percent", required_argument, NULL, 'm' },
		{ "biggest", required_argument, NULL, 'b' },
		{ "ascii", no_argument, NULL, 'a' },
		{ "pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ascii = !isatty(STDOUT_FILENO), c;
	long pid = -1;
	char *end;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:m:b:ap:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			max_depth = strtol(optarg, &end, 10);
			if (*end || end == optarg || max_depth < 0)
				die(EXIT_USAGE, "invalid --depth '%s'", optarg);
			break;
		case 'm':
			min_percent = strtod(optarg, &end);
			if (*end || end == optarg || !(min_percent >= 0 && min_percent <= 100))
				die(EXIT_USAGE, "invalid --min-percent '%s': expected 0 to 100", optarg);
			break;
		case 'b':
			biggest = strtol(optarg, &end, 10);
			if (*end || end == optarg || biggest < 1)
				die(EXIT_USAGE, "invalid --biggest '%s'", optarg);
			break;
		case 'a': ascii = 1; break;
		case 'p': pid = pid_arg("--pid", optarg); break;
		case 'h': usage(EXIT_OK); break;
		case 'V': version_exit();
		default: bad_option(c, argv[optind - 1]); usage(EXIT_USAGE);
		}
	}
	nodes_cap = 1024;
	nodes = xrealloc(NULL, nodes_cap * sizeof(*nodes));
	nodes[0] = (struct node){ NULL, 0, 0, 0, 0 };
	nnodes = 1;
	struct replay r;
	struct ingest g = { NULL, 0, 0, NULL };
	replay_init(&r, 0);
	int status = EXIT_OK, streams = 0, refused = 0, inputs = 0;
	for (int i = optind; i < argc || (i == optind && optind == argc); i++) {
		int st = read_one(optind == argc ? "-" : argv[i], &r, &g, &streams, pid);
		refused += st == EXIT_REFUSED;
		inputs++;
		if (st != EXIT_OK)
			status = EXIT_USAGE;
	}
	/* the readable inputs are still read when some are not; no tree of
	 * input that is neither stacks nor a stream */
	if (refused == inputs) {
		status = EXIT_REFUSED;
		goto out;
	}
	if (pid >= 0 && r.nprocs == 0 && status == EXIT_OK)
		die(EXIT_USAGE, "no process %ld in the input", pid);
	if (streams) {
		/* streams are folded with the default metric, as memray-fold does */
		struct collapse_opts o = { METRIC_PEAK, FRAMES_AUTO, 0, 0, 0 };
		struct symbolizer *sym = sym_new();
		struct collapsed *v;
		size_t n = collapse_lines(&r, sym, &o, &v);
		reading = "the streams";
		for (size_t i = 0; i < n; i++)
			add_stack(NULL, v[i].text, v[i].len, v[i].value);
		collapse_lines_free(v, n);
		sym_free(sym);
		add_meta(NULL, "metric", "peak");
		sampled |= r.sample_bytes != 0;
		if (r.damage)
			add_meta(NULL, "damaged", r.damage);
	}
	static const struct style plain = { "|-- ", "`-- ", "|   ", "    ", "", "" };
	static const struct style boxes = { "├── ", "└── ", "│   ", "    ", "\033[1;33m", "\033[0m" };
	struct style st = ascii ? plain : boxes;
	if (!ascii && getenv("NO_COLOR"))
		st.on = st.off = "";
	char root[64];
	snprintf(root, sizeof(root), "total%s%s%s", metric[0] ? " " : "", metric,
		 sampled ? ", estimated from samples" : "");
	nodes[0].name = root;
	if (print_tree(&st))
		warnmsg("stacks deeper than %d frames are drawn to that depth only "
			"(--depth N draws N)", DRAW_DEPTH);
	if (damaged)
		printf("damaged: %s (nothing after it is in the tree)\n", damaged);
	free(damaged);
	nodes[0].name = NULL;
out:
	for (size_t i = 0; i < nnodes; i++)
		free(nodes[i].name);
	free(nodes);
	free(index_);
	replay_free(&r);
	ingest_free(&g);
	if (status == EXIT_REFUSED)
		return EXIT_USAGE;
	if (close_stdout() < 0)
		status = EXIT_USAGE;
	return status;
}
