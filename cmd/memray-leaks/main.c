/*
 * memray-leaks - allocations never freed, grouped by stack: collapsed
 * stacks by default (for memray-flame or flamegraph.pl), a report with
 * --report, a CI check with --fail.
 */
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/collapse.h"
#include "../../lib/ingest.h"
#include "../../lib/util.h"

static const char usage_text[] =
	"usage: memray-leaks [--report] [-n N] [--suppressions FILE] [--fail] [--pid PID]\n"
	"                    [--native | --python-only] [FILE...]\n"
	"\n"
	"Reads memray streams and writes the bytes still live at the end of each\n"
	"stream, grouped by stack, as collapsed stacks (or a report).\n"
	"\n"
	"  -r, --report              a text report of the top sites with their stacks\n"
	"  -n, --top N               sites in the report (default 10)\n"
	"  -s, --suppressions FILE   leaks matching FILE's leak:PATTERN lines are ignored\n"
	"      --fail                exit 1 when any leak remains\n"
	"  -p, --pid PID             only the process PID\n"
	"      --native              native frames too (hybrid stacks for Python)\n"
	"      --python-only         Python frames only\n"
	"  -h, --help                show this help\n"
	"      --version             show the version\n";

static void usage(int status)
{
	usage_exit(usage_text, status);
}

/* ---- suppressions: LeakSanitizer's "leak:PATTERN" lines -----------------
 * A pattern matches a frame's function, file or module ('*' is any text;
 * it matches anywhere unless anchored with '^' or '$'); a leak whose stack
 * has a matching frame is suppressed. */

struct suppression {
	char *glob;
	uint64_t bytes, count; /* what it suppressed */
	char *pattern;
};
static struct suppression *sups;
static size_t nsups;

static void load_suppressions(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die(EXIT_USAGE, "cannot open '%s': %m", path);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
			line[--n] = 0;
		char *s = line;
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s || *s == '#')
			continue;
		if (strncmp(s, "leak:", 5) != 0) {
			warnmsg("%s:%d: not a leak:PATTERN line: ignored", path, lineno);
			continue;
		}
		char *p = s + 5;
		size_t len = strlen(p);
		if (!len)
			die(EXIT_USAGE, "%s:%d: empty pattern", path, lineno);
		int head = p[0] == '^', tail = p[len - 1] == '$';
		/* an fnmatch pattern where only '*' is special, as in
		 * LeakSanitizer's: '?', '[', ']' and '\\' stand for themselves
		 * (a label such as [Python start-up] was a class of
		 * characters, and matched every frame) */
		char *g = malloc(2 * len + 3);
		if (!g)
			die(EXIT_USAGE, "out of memory");
		size_t k = 0;
		if (!head)
			g[k++] = '*';
		for (size_t i = (size_t)head; i < len - (size_t)tail; i++) {
			if (strchr("?[]\\", p[i]))
				g[k++] = '\\';
			g[k++] = p[i];
		}
		if (!tail)
			g[k++] = '*';
		g[k] = 0;
		sups = realloc(sups, (nsups + 1) * sizeof(*sups));
		if (!sups)
			die(EXIT_USAGE, "out of memory");
		sups[nsups++] = (struct suppression){ g, 0, 0, strdup(p) };
	}
	/* (a directory opens, and fails at the first read: EISDIR) */
	if (ferror(f))
		die(EXIT_USAGE, "cannot read '%s': %m", path);
	free(line);
	fclose(f);
}

/* The suppression matching a stack's frames, or NULL. A frame is
 * "function (where)", where is "file:line" or a module. */
static struct suppression *suppressed(const char *text, size_t len)
{
	if (!nsups)
		return NULL;
	char *copy = strndup(text, len);
	struct suppression *hit = NULL;
	for (char *save = NULL, *f = strtok_r(copy, ";", &save); f && !hit;
	     f = strtok_r(NULL, ";", &save)) {
		char *paren = strrchr(f, '(');
		char *where = paren ? paren + 1 : f;
		if (paren && paren > f)
			paren[-1] = 0;
		char *close = strrchr(where, ')');
		if (close)
			*close = 0;
		char *colon = strrchr(where, ':');
		if (colon && colon[1] >= '0' && colon[1] <= '9')
			*colon = 0;
		for (size_t i = 0; i < nsups && !hit; i++)
			if (fnmatch(sups[i].glob, f, 0) == 0 || fnmatch(sups[i].glob, where, 0) == 0)
				hit = &sups[i];
	}
	free(copy);
	return hit;
}

/* ---- output ------------------------------------------------------------- */

static int by_bytes(const void *a, const void *b)
{
	const struct collapsed *x = *(const struct collapsed *const *)a;
	const struct collapsed *y = *(const struct collapsed *const *)b;
	return (x->value < y->value) - (x->value > y->value);
}

static void report(struct collapsed **v, size_t n, size_t top, uint64_t bytes, uint64_t count)
{
	char h[16];
	printf("%" PRIu64 " bytes (%s) leaked in %" PRIu64 " allocations from %zu sites\n", bytes,
	       human_size(h, bytes), count, n);
	if (n > 1)
		qsort(v, n, sizeof(*v), by_bytes);
	for (size_t i = 0; i < n && i < top; i++) {
		printf("\n%" PRIu64 " bytes (%s) in %" PRIu64 " allocation%s at:\n", v[i]->value,
		       human_size(h, v[i]->value), v[i]->count, v[i]->count == 1 ? "" : "s");
		/* frames leaf first, as debuggers print them */
		const char *s = v[i]->text, *end = s + v[i]->len;
		const char *frames[4096];
		size_t k = 0;
		while (s < end && k < 4096) {
			frames[k++] = s;
			const char *semi = memchr(s, ';', (size_t)(end - s));
			s = semi ? semi + 1 : end;
		}
		for (size_t j = k; j-- > 0;) {
			const char *e = j + 1 < k ? frames[j + 1] - 1 : end;
			printf("    %.*s\n", (int)(e - frames[j]), frames[j]);
		}
	}
	if (n > top)
		printf("\n... and %zu more sites\n", n - top);
}

int main(int argc, char **argv)
{
	progname = "memray-leaks";
	enum { FAIL = 256, NATIVE, PYTHON_ONLY, VERSION };
	static const struct option longopts[] = {
		{ "report", no_argument, NULL, 'r' },
		{ "top", required_argument, NULL, 'n' },
		{ "suppressions", required_argument, NULL, 's' },
		{ "fail", no_argument, NULL, FAIL },
		{ "pid", required_argument, NULL, 'p' },
		{ "native", no_argument, NULL, NATIVE },
		{ "python-only", no_argument, NULL, PYTHON_ONLY },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct collapse_opts o = { METRIC_LEAKED, FRAMES_AUTO, 0, 0, 0 };
	int do_report = 0, fail = 0, c;
	long pid = -1, top = 10;
	char *end;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":rn:s:p:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'r': do_report = 1; break;
		case 'n':
			top = strtol(optarg, &end, 10);
			if (*end || end == optarg || top < 1)
				die(EXIT_USAGE, "invalid --top '%s'", optarg);
			break;
		case 's': load_suppressions(optarg); break;
		case FAIL: fail = 1; break;
		case 'p':
			pid = pid_arg("--pid", optarg);
			break;
		case NATIVE: o.frames = FRAMES_NATIVE; break;
		case PYTHON_ONLY: o.frames = FRAMES_PYTHON; break;
		case 'h': usage(EXIT_OK); break;
		case VERSION: version_exit();
		default: bad_option(c, argv[optind - 1]); usage(EXIT_USAGE);
		}
	}
	struct replay r;
	struct ingest g = { NULL, 0, 0, NULL }; /* (no prefetch: only leaks are named) */
	replay_init(&r, 0);
	int status = EXIT_OK;
	status = ingest_files(&g, &r, argv + optind, argc - optind, pid);
	if (status == EXIT_REFUSED) { /* nothing written for input that is not a stream */
		replay_free(&r);
		ingest_free(&g);
		for (size_t i = 0; i < nsups; i++) {
			free(sups[i].glob);
			free(sups[i].pattern);
		}
		return EXIT_USAGE;
	}
	if (g.saw_pymalloc)
		warnmsg("warning: pymalloc was active, so most Python objects were not seen one "
			"by one: leaks of small objects are incomplete (record with "
			"--trace-python-allocators)");

	if (r.sample_bytes)
		warnmsg("warning: the stream is sampled (--sample-bytes): leaked bytes are estimates, "
			"and a leak of fewer bytes than the sampling gap is likely not seen");
	struct symbolizer *sym = sym_new();
	struct collapsed *v;
	size_t n = collapse_lines(&r, sym, &o, &v), kept = 0;
	struct collapsed **left = malloc((n ? n : 1) * sizeof(*left));
	uint64_t bytes = 0, count = 0;
	for (size_t i = 0; i < n; i++) {
		struct suppression *s = suppressed(v[i].text, v[i].len);
		if (s) {
			s->bytes += v[i].value;
			s->count += v[i].count;
			continue;
		}
		left[kept++] = &v[i];
		bytes += v[i].value;
		count += v[i].count;
	}
	if (do_report) {
		if (r.damage)
			printf("damaged: %s (blocks freed after it show as leaked)\n", r.damage);
		if (r.sample_bytes)
			printf("estimated from a sampled stream (one sample per %" PRIu64
			       " bytes allocated on average):\n", r.sample_bytes);
		report(left, kept, (size_t)top, bytes, count);
	} else {
		collapse_meta(stdout, &r, &o);
		for (size_t i = 0; i < kept; i++) {
			fwrite(left[i]->text, 1, left[i]->len, stdout);
			printf(" %" PRIu64 "\n", left[i]->value);
		}
	}
	for (size_t i = 0; i < nsups; i++)
		if (sups[i].count)
			warnmsg("suppressed %" PRIu64 " bytes in %" PRIu64 " allocations by leak:%s",
				sups[i].bytes, sups[i].count, sups[i].pattern);
	if (fail && kept && status == EXIT_OK) {
		warnmsg("%" PRIu64 " bytes leaked in %" PRIu64 " allocations", bytes, count);
		status = EXIT_CHECK;
	}
	free(left);
	collapse_lines_free(v, n);
	sym_free(sym);
	replay_free(&r);
	ingest_free(&g);
	for (size_t i = 0; i < nsups; i++) {
		free(sups[i].glob);
		free(sups[i].pattern);
	}
	free(sups);
	if (close_stdout() < 0)
		status = EXIT_USAGE;
	return status;
}
