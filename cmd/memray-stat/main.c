/*
 * memray-stat - the numbers a person wants first from a stream: totals,
 * peak, allocator mix, sizes, top sites; as text or JSON; CI budgets.
 * With --dump, every record as one line of text.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/by_function.h"
#include "../../lib/collapse.h"
#include "../../lib/dump.h"
#include "../../lib/ingest.h"
#include "../../lib/input.h"
#include "../../lib/util.h"

static const char usage_text[] =
	"usage: memray-stat [--dump | --json | --timeline] [-n N] [--pid PID]\n"
	"                   [--by-function [--metric METRIC] [--sort COLUMN]]\n"
	"                   [--max-peak SIZE] [--max-leaked SIZE] [--max-allocations N]\n"
	"                   [FILE...]\n"
	"\n"
	"Reads memray streams (memray-stream(5)) from the FILEs, or standard input\n"
	"when there is none or FILE is '-', plain or compressed, and prints the\n"
	"command, duration, peak heap and when it happened, peak RSS, allocations,\n"
	"frees, bytes allocated and still live at the end, the allocator mix, a\n"
	"histogram of sizes and the top sites.\n"
	"\n"
	"  -d, --dump                print every record as one line of text\n"
	"  -j, --json                print the numbers as one JSON object\n"
	"  -t, --timeline            print the memory timeline as CSV: ms,rss,heap\n"
	"  -f, --by-function         print the table of functions instead of the\n"
	"                            report: own and total bytes and allocations\n"
	"  -m, --metric METRIC       the bytes of the table: peak (default), total,\n"
	"                            leaked or temporary\n"
	"  -s, --sort COLUMN         the table's order: total (default), own,\n"
	"                            total-count or own-count\n"
	"  -n, --top N               sites in each top list (default 5); rows of the\n"
	"                            table (default all)\n"
	"  -p, --pid PID             only the process PID\n"
	"      --max-peak SIZE       exit 1 if the peak heap is above SIZE\n"
	"      --max-leaked SIZE     exit 1 if more than SIZE is live at the end\n"
	"      --max-allocations N   exit 1 if there were more than N allocations\n"
	"  -h, --help                show this help\n"
	"      --version             show the version\n";

static void usage(int status)
{
	usage_exit(usage_text, status);
}

/* Reads one input for --dump (pid's records only, when pid >= 0, counted
 * in *seen); returns 0, or 2 after reporting damage. */
static int dump_one(const char *path, long pid, unsigned long *seen)
{
	char err[600];
	struct mr_input *in = mr_input_open(path, err, sizeof(err));
	if (!in) {
		warnmsg("%s", err);
		return EXIT_USAGE;
	}
	struct mr_reader r;
	struct mr_record rec;
	int rc;
	mr_reader_init(&r, in);
	while ((rc = mr_next(&r, &rec)) == 1) {
		if (pid >= 0 && rec.proc->pid != (uint32_t)pid)
			continue;
		(*seen)++;
		mr_dump_record(stdout, &rec);
	}
	if (rc < 0)
		warnmsg("%s: %s", mr_input_name(in), r.err);
	else if (r.warn[0])
		warnmsg("%s: %s", mr_input_name(in), r.warn);
	mr_reader_free(&r);
	mr_input_close(in);
	return rc < 0 ? EXIT_USAGE : EXIT_OK;
}

/* ---- the report --------------------------------------------------------- */

struct top {
	struct collapsed *v;
	size_t n;
};

static int by_value(const void *a, const void *b)
{
	const struct collapsed *x = a, *y = b;
	if (x->value != y->value)
		return (x->value < y->value) - (x->value > y->value);
	return (x->count < y->count) - (x->count > y->count);
}

/* The three top lists: the distinct stacks rendered once (every site
 * with allocations), ranked three ways; each list keeps its first `top`
 * entries, which point into all. */
struct tops {
	struct top bytes, count, temp;
	struct collapsed *all;
	size_t n;
};

static struct top rank(const struct tops *t, enum metric m, size_t top)
{
	struct top r = { xrealloc(NULL, (t->n ? t->n : 1) * sizeof(*r.v)), 0 };
	for (size_t i = 0; i < t->n; i++) {
		struct collapsed c = t->all[i];
		if (m == METRIC_TOTAL)
			c.value = c.bytes, c.count = c.bytes_count;
		else if (m == METRIC_TEMPORARY)
			c.value = c.temp_bytes, c.count = c.temp_count;
		if (c.value)
			r.v[r.n++] = c;
	}
	if (r.n)
		qsort(r.v, r.n, sizeof(*r.v), by_value);
	if (r.n > top)
		r.n = top;
	return r;
}

static void top_lists(struct replay *r, struct symbolizer *sym, size_t top, struct tops *t)
{
	struct collapse_opts o = { METRIC_COUNT, FRAMES_AUTO, 0, 0, 0 };
	t->n = collapse_lines(r, sym, &o, &t->all);
	t->bytes = rank(t, METRIC_TOTAL, top);
	t->count = rank(t, METRIC_COUNT, top);
	t->temp = rank(t, METRIC_TEMPORARY, top);
}

static void tops_free(struct tops *t)
{
	free(t->bytes.v);
	free(t->count.v);
	free(t->temp.v);
	collapse_lines_free(t->all, t->n);
}

/* The leaf-most frame of a collapsed stack. */
static const char *leaf(const struct collapsed *c, size_t *len)
{
	const char *s = c->text, *e = s + c->len, *p = e;
	while (p > s && p[-1] != ';')
		p--;
	*len = (size_t)(e - p);
	return p;
}

/* The last image of process pid (after any exec), its index in r->procs. */
static size_t last_image(const struct replay *r, uint32_t pid)
{
	size_t k = 0;
	for (size_t i = 0; i < r->nprocs; i++)
		if (r->procs[i].proc->pid == pid)
			k = i;
	return k;
}

/* The command line of r->procs[k], at most n bytes. */
/* The command line of process k, its arguments joined by spaces; for
 * text (escape), with backslashes, newlines, tabs and other control bytes
 * escaped as frames are (\\, \n, \t, \xNN): an argument cannot make
 * lines of the report, nor reach the terminal as an escape sequence. */
static const char *command_of(const struct replay *r, size_t k, char *buf, size_t n, int escape)
{
	const struct mr_proc *p = r->procs[k].proc;
	size_t o = 0;
	buf[0] = 0;
	for (uint32_t i = 0; i < p->header.argc && o + 9 < n; i++) {
		if (i)
			buf[o++] = ' ';
		for (const unsigned char *c = (const unsigned char *)p->header.argv[i];
		     *c && o + 9 < n; c++) {
			if (!escape)
				buf[o++] = (char)*c;
			else if (*c == '\\')
				o += (size_t)snprintf(buf + o, n - o, "\\\\");
			else if (*c == '\n')
				o += (size_t)snprintf(buf + o, n - o, "\\n");
			else if (*c == '\t')
				o += (size_t)snprintf(buf + o, n - o, "\\t");
			else if (*c < 0x20 || *c == 0x7f)
				o += (size_t)snprintf(buf + o, n - o, "\\x%02x", *c);
			else if (*c == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f) {
				/* a C1 control in UTF-8 (U+009B is a CSI to some
				 * terminals) */
				o += (size_t)snprintf(buf + o, n - o, "\\xc2\\x%02x", c[1]);
				c++;
			}
			else
				buf[o++] = (char)*c;
		}
		buf[o] = 0;
	}
	return buf;
}

/* The program memray-record ran: the first process, as it ended. */
static const char *command(struct replay *r, char *buf, size_t n, int escape)
{
	buf[0] = 0;
	if (!r->nprocs)
		return buf;
	return command_of(r, last_image(r, r->procs[0].proc->pid), buf, n, escape);
}

/* Distinct processes: calls f(k, peak) for each pid's last image with the
 * highest peak of its images; returns how many there are. */
static size_t each_process(struct replay *r, void (*f)(struct replay *, size_t, uint64_t))
{
	size_t *idx = xrealloc(NULL, (r->nprocs ? r->nprocs : 1) * sizeof(*idx));
	uint64_t *peak = xrealloc(NULL, (r->nprocs ? r->nprocs : 1) * sizeof(*peak));
	size_t n = replay_processes(r, idx, peak);
	for (size_t i = 0; f && i < n; i++)
		f(r, idx[i], peak[idx[i]]);
	free(idx);
	free(peak);
	return n;
}

static void print_process(struct replay *r, size_t k, uint64_t peak)
{
	char h[16], cmd[4096];
	const struct mr_proc *p = r->procs[k].proc;
	printf("  %8u %8u  %10s  %s", p->pid, p->header.ppid, human_size(h, peak),
	       command_of(r, k, cmd, sizeof(cmd), 1));
	if (p->end_signal)
		printf("  (ended by SIG%s)", mr_signal_name(p->end_signal));
	putchar('\n');
}

/* The signal the first process's last image says it ended by, or 0. */
static int end_signal(struct replay *r)
{
	return r->nprocs ? r->procs[last_image(r, r->procs[0].proc->pid)].proc->end_signal : 0;
}

static int json_first;

static void json_process(struct replay *r, size_t k, uint64_t peak)
{
	char cmd[4096];
	const struct mr_proc *p = r->procs[k].proc;
	printf("%s{\"pid\":%u,\"ppid\":%u,\"peak\":%" PRIu64, json_first ? "" : ",",
	       p->pid, p->header.ppid, peak);
	if (p->end_signal)
		printf(",\"end_signal\":%d", p->end_signal);
	else
		printf(",\"end_signal\":null");
	printf(",\"command\":");
	command_of(r, k, cmd, sizeof(cmd), 0);
	json_string(stdout, cmd, strlen(cmd));
	putchar('}');
	json_first = 0;
}

static void print_top(const char *title, const struct top *t, size_t top, int count_first)
{
	char h[16];
	if (!t->n)
		return;
	printf("\n%s:\n", title);
	for (size_t i = 0; i < t->n && i < top; i++) {
		size_t len;
		const char *f = leaf(&t->v[i], &len);
		if (count_first)
			printf("  %10" PRIu64 " allocations  ", t->v[i].count);
		else
			printf("  %10s  %8" PRIu64 " allocations  ", human_size(h, t->v[i].value),
			       t->v[i].count);
		printf("%.*s\n", (int)len, f);
	}
}

/* A bound on the standard deviation of a sampled stream's estimate of x
 * bytes, as a fraction of x: an allocation of s bytes adds s^2(1-p)/p to
 * the variance, with p = 1 - e^(-s/N), which is at most s N; so the
 * variance of x bytes is at most N x. */
static double sampling_error(const struct replay *r, uint64_t x)
{
	return x ? sqrt((double)r->sample_bytes / (double)x) : 0.0;
}

static void print_text(struct replay *r, struct symbolizer *sym, size_t top)
{
	char h[16], cmd[4096];
	printf("command:         %s\n", command(r, cmd, sizeof(cmd), 1));
	if (r->damage)
		printf("damaged:         %s (nothing after it is counted)\n", r->damage);
	char py[512];
	if (replay_python_note(r, py, sizeof(py), NULL))
		printf("python:          %s\n", py);
	if (r->sample_bytes)
		printf("sampled:         one sample per %s allocated on average: every figure "
		       "below but peak RSS is an estimate\n", human_size(h, r->sample_bytes));
	if (r->sample_bytes)
		printf("sampling error:  one standard deviation is at most %.1f%% of the peak heap "
		       "and %.1f%% of the bytes allocated\n", 100 * sampling_error(r, r->peak),
		       100 * sampling_error(r, r->bytes_allocated));
	printf("allocations:     %" PRIu64 "\n", r->n_allocs);
	printf("frees:           %" PRIu64 "\n", r->n_frees);
	printf("bytes allocated: %" PRIu64 " (%s)\n", r->bytes_allocated, human_size(h, r->bytes_allocated));
	printf("peak heap:       %" PRIu64 " (%s) at %.3f s\n", r->peak, human_size(h, r->peak),
	       (double)r->peak_time_us / 1e6);
	printf("peak RSS:        %" PRIu64 " (%s)\n", r->peak_rss, human_size(h, r->peak_rss));
	/* (blocks never freed: of the processes that ended, and of those
	 * the stream ends with) */
	printf("live at end:     %" PRIu64 " (%s)\n", r->live + r->gone,
	       human_size(h, r->live + r->gone));
	printf("duration:        %.3f s\n", (double)r->duration_us / 1e6);
	int sig = end_signal(r);
	if (sig)
		printf("ended by:        signal %d (SIG%s)\n", sig, mr_signal_name(sig));
	if (each_process(r, NULL) > 1) {
		printf("\nprocesses:\n       pid     ppid        peak  command\n");
		each_process(r, print_process);
	}
	printf("\nallocators:\n");
	for (int a = 1; a < MR_ALLOCATOR_END; a++)
		if (r->alloc_count[a])
			printf("  %-15s %10" PRIu64 "  %10s\n", mr_allocator_name(a), r->alloc_count[a],
			       human_size(h, r->alloc_bytes[a]));
	uint64_t most = 0;
	int lo = 65, hi = -1;
	for (int k = 0; k < 65; k++)
		if (r->histogram[k]) {
			most = r->histogram[k] > most ? r->histogram[k] : most;
			lo = k < lo ? k : lo;
			hi = k;
		}
	if (hi >= 0) {
		printf("\nsizes:\n");
		for (int k = lo; k <= hi; k++) {
			char a[16], b[16];
			if (k == 0)
				snprintf(a, sizeof(a), "0 B");
			else
				human_size(a, 1ull << (k - 1));
			human_size(b, k >= 64 ? ~0ull : (1ull << k) - 1);
			int bar = (int)((r->histogram[k] * 40 + most - 1) / most);
			printf("  %9s - %-9s %10" PRIu64 " %.*s\n", a, k ? b : "0 B", r->histogram[k],
			       r->histogram[k] ? bar : 0,
			       "########################################");
		}
	}
	struct tops t;
	top_lists(r, sym, top, &t);
	struct top by_bytes = t.bytes, by_count = t.count, temp = t.temp;
	char title[64];
	snprintf(title, sizeof(title), "top %zu sites by bytes allocated", top);
	print_top(title, &by_bytes, top, 0);
	snprintf(title, sizeof(title), "top %zu sites by allocations", top);
	print_top(title, &by_count, top, 1);
	snprintf(title, sizeof(title), "top %zu sites of temporary allocations", top);
	if (r->sample_bytes)
		printf("\n%s: not known in a sampled stream\n", title);
	else
		print_top(title, &temp, top, 0);
	tops_free(&t);
}

static void json_str(const char *s, size_t n)
{
	json_string(stdout, s, n);
}

/* A frame of a collapsed line as it was named: its escapes (\\, \n,
 * \t, \xNN: memray-fold(1)) undone, for JSON, which escapes as it
 * must. */
static void json_frame(const char *s, size_t n)
{
	char *b = xrealloc(NULL, n + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n) {
			char c = s[i + 1];
			if (c == '\\' || c == 'n' || c == 't') {
				b[k++] = c == 'n' ? '\n' : c == 't' ? '\t' : '\\';
				i++;
				continue;
			}
			unsigned v;
			if (c == 'x' && i + 3 < n && sscanf(s + i + 2, "%2x", &v) == 1 &&
			    isxdigit((unsigned char)s[i + 2]) && isxdigit((unsigned char)s[i + 3])) {
				b[k++] = (char)v;
				i += 3;
				continue;
			}
		}
		b[k++] = s[i];
	}
	json_string(stdout, b, k);
	free(b);
}

/* Sites as JSON. The sites by count carry counts as their values: their
 * bytes are those of the same stack by bytes (bytes, when given). */
/* With bytes set, the bytes shown are those allocated, not the metric. */
static void json_sites(const char *key, const struct top *t, size_t top, int bytes)
{
	printf(",\"%s\":[", key);
	for (size_t i = 0; i < t->n && i < top; i++) {
		uint64_t b = bytes ? t->v[i].bytes : t->v[i].value;
		printf("%s{\"bytes\":%" PRIu64 ",\"count\":%" PRIu64 ",\"stack\":[", i ? "," : "",
		       b, t->v[i].count);
		const char *s = t->v[i].text, *e = s + t->v[i].len;
		int first = 1;
		while (s < e) {
			const char *semi = memchr(s, ';', (size_t)(e - s));
			size_t len = semi ? (size_t)(semi - s) : (size_t)(e - s);
			if (!first)
				putchar(',');
			first = 0;
			json_frame(s, len);
			s += len + 1;
		}
		printf("]}");
	}
	putchar(']');
}

static void print_json(struct replay *r, struct symbolizer *sym, size_t top)
{
	char cmd[4096];
	command(r, cmd, sizeof(cmd), 0);
	printf("{\"command\":");
	json_str(cmd, strlen(cmd));
	printf(",\"pid\":%u", r->nprocs ? r->procs[0].proc->pid : 0);
	printf(",\"processes\":[");
	json_first = 1;
	each_process(r, json_process);
	putchar(']');
	printf(",\"duration_ms\":%" PRIu64, r->duration_us / 1000);
	/* the first damage read, after which nothing is counted; null:
	 * every input was whole */
	printf(",\"damaged\":");
	if (r->damage)
		json_string(stdout, r->damage, strlen(r->damage));
	else
		fputs("null", stdout);
	/* the signal the program ended by, null when it ended by itself */
	if (end_signal(r))
		printf(",\"end_signal\":%d", end_signal(r));
	else
		printf(",\"end_signal\":null");
	/* the interpreter (of the first image that is a CPython), whether
	 * its stacks were recorded, and why not or how they were read (null:
	 * nothing to say); null throughout when no image is a CPython */
	const struct mr_header *py = NULL;
	for (size_t i = 0; i < r->nprocs && !py; i++) {
		const struct mr_header *h = &r->procs[i].proc->header;
		if (h->flags & MR_F_PYINFO && h->python_version)
			py = h;
	}
	printf(",\"python_version\":");
	if (py)
		json_string(stdout, py->python_version, strlen(py->python_version));
	else
		fputs("null", stdout);
	printf(",\"python_stacks\":%s", !py ? "null" : py->flags & MR_F_PYTHON ? "true" : "false");
	printf(",\"python_problem\":");
	if (py && py->python_problem && py->python_problem[0])
		json_string(stdout, py->python_problem, strlen(py->python_problem));
	else
		fputs("null", stdout);
	/* sampled: every value but peak_rss is an estimate */
	if (r->sample_bytes)
		printf(",\"sampled\":true,\"sample_bytes\":%" PRIu64 ",\"peak_error_max\":%.4f"
		       ",\"bytes_allocated_error_max\":%.4f", r->sample_bytes,
		       sampling_error(r, r->peak), sampling_error(r, r->bytes_allocated));
	else
		printf(",\"sampled\":false");
	printf(",\"peak_bytes\":%" PRIu64 ",\"peak_ms\":%" PRIu64, r->peak, r->peak_time_us / 1000);
	printf(",\"peak_rss\":%" PRIu64, r->peak_rss);
	printf(",\"allocations\":%" PRIu64 ",\"frees\":%" PRIu64, r->n_allocs, r->n_frees);
	printf(",\"bytes_allocated\":%" PRIu64 ",\"leaked_bytes\":%" PRIu64, r->bytes_allocated, r->live + r->gone);
	printf(",\"allocators\":{");
	int first = 1;
	for (int a = 1; a < MR_ALLOCATOR_END; a++)
		if (r->alloc_count[a]) {
			printf("%s\"%s\":{\"count\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", first ? "" : ",",
			       mr_allocator_name(a), r->alloc_count[a], r->alloc_bytes[a]);
			first = 0;
		}
	printf("},\"histogram\":[");
	first = 1;
	for (int k = 0; k < 65; k++)
		if (r->histogram[k]) {
			printf("%s{\"min\":%" PRIu64 ",\"max\":%" PRIu64 ",\"count\":%" PRIu64 "}",
			       first ? "" : ",", (uint64_t)(k ? 1ull << (k - 1) : 0),
			       (uint64_t)(k == 0 ? 0 : k >= 64 ? ~0ull : (1ull << k) - 1), r->histogram[k]);
			first = 0;
		}
	putchar(']');
	struct tops t;
	top_lists(r, sym, top, &t);
	struct top by_bytes = t.bytes, by_count = t.count, temp = t.temp;
	json_sites("top_by_bytes", &by_bytes, top, 0);
	json_sites("top_by_count", &by_count, top, 1);
	if (r->sample_bytes)
		printf(",\"top_temporary\":null");
	else
		json_sites("top_temporary", &temp, top, 0);
	tops_free(&t);
	printf("}\n");
}

/* ---- the table of functions --------------------------------------------- */

static const char *const column_title[] = { "total bytes", "own bytes", "total allocations",
					    "own allocations" };

static double percent(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static void table_text(const struct fn_table *t, enum metric m, enum fn_column c, size_t rows,
		       int sampled)
{
	char a[16], b[16];
	printf("functions by %s, %s: %s in %" PRIu64 " allocations, %zu functions",
	       column_title[c], metric_name(m), human_size(a, t->bytes), t->count, t->n);
	if (rows < t->n)
		printf(" (%zu shown)", rows);
	printf("%s\n\n%10s %7s %10s %7s %11s %10s  %s\n",
	       sampled ? " (estimated from a sampled stream)" : "", "total", "%", "own", "%",
	       "allocations", "own allocs", "function");
	for (size_t i = 0; i < rows; i++) {
		const struct fn_row *f = &t->v[i];
		printf("%10s %6.2f%% %10s %6.2f%% %11" PRIu64 " %10" PRIu64 "  ",
		       human_size(a, f->total_bytes), percent(f->total_bytes, t->bytes),
		       human_size(b, f->own_bytes), percent(f->own_bytes, t->bytes), f->total_count,
		       f->own_count);
		collapse_escape(stdout, f->function, strlen(f->function));
		if (f->file[0]) {
			fputs(" (", stdout);
			collapse_escape(stdout, f->file, strlen(f->file));
			putchar(')');
		}
		putchar('\n');
	}
}

static void table_json(const struct fn_table *t, enum metric m, enum fn_column c, size_t rows,
		       int sampled)
{
	printf("{\"metric\":\"%s\",\"sort\":\"%s\",\"sampled\":%s,\"bytes\":%" PRIu64
	       ",\"count\":%" PRIu64 ",\"n_functions\":%zu,\"functions\":[", metric_name(m),
	       fn_column_name(c), sampled ? "true" : "false", t->bytes, t->count, t->n);
	for (size_t i = 0; i < rows; i++) {
		const struct fn_row *f = &t->v[i];
		printf("%s{\"function\":", i ? "," : "");
		json_str(f->function, strlen(f->function));
		printf(",\"file\":");
		json_str(f->file, strlen(f->file));
		printf(",\"total_bytes\":%" PRIu64 ",\"total_percent\":%.2f,\"own_bytes\":%" PRIu64
		       ",\"own_percent\":%.2f,\"total_count\":%" PRIu64 ",\"own_count\":%" PRIu64
		       "}", f->total_bytes, percent(f->total_bytes, t->bytes), f->own_bytes,
		       percent(f->own_bytes, t->bytes), f->total_count, f->own_count);
	}
	printf("]}\n");
}

/* The table of functions of r, rows of them (0: all); 2 if the metric
 * cannot be had from r, after saying so. */
static int by_function(struct replay *r, struct symbolizer *sym, enum metric m, enum fn_column c,
		       size_t rows, int json)
{
	const char *why = metric_unavailable(r, m);
	if (why) {
		warnmsg("%s", why);
		return EXIT_USAGE;
	}
	struct fn_table t;
	fn_table_build(&t, r, sym, m);
	fn_table_sort(&t, c);
	if (!rows || rows > t.n)
		rows = t.n;
	if (json)
		table_json(&t, m, c, rows, r->sample_bytes != 0);
	else
		table_text(&t, m, c, rows, r->sample_bytes != 0);
	fn_table_free(&t);
	return EXIT_OK;
}

static uint64_t size_arg(const char *opt, const char *s)
{
	uint64_t v;
	if (parse_size(s, &v) < 0)
		die(EXIT_USAGE, "invalid %s '%s': expected a size such as 500M, 1.5GiB or 4096",
		    opt, s);
	return v;
}

int main(int argc, char **argv)
{
	progname = "memray-stat";
	enum { MAX_PEAK = 256, MAX_LEAKED, MAX_ALLOCS, VERSION };
	static const struct option longopts[] = {
		{ "dump", no_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeline", no_argument, NULL, 't' },
		{ "by-function", no_argument, NULL, 'f' },
		{ "metric", required_argument, NULL, 'm' },
		{ "sort", required_argument, NULL, 's' },
		{ "top", required_argument, NULL, 'n' },
		{ "pid", required_argument, NULL, 'p' },
		{ "max-peak", required_argument, NULL, MAX_PEAK },
		{ "max-leaked", required_argument, NULL, MAX_LEAKED },
		{ "max-allocations", required_argument, NULL, MAX_ALLOCS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, VERSION },
		{ NULL, 0, NULL, 0 },
	};
	int dump = 0, json = 0, timeline = 0, functions = 0, table_opts = 0, top_given = 0, c;
	enum metric metric = METRIC_PEAK;
	enum fn_column sort = FN_TOTAL;
	long top = 5, pid = -1;
	uint64_t max_peak = 0, max_leaked = 0, max_allocs = 0;
	int has_peak = 0, has_leaked = 0, has_allocs = 0;
	char *end;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":djtfm:s:n:p:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': dump = 1; break;
		case 'j': json = 1; break;
		case 't': timeline = 1; break;
		case 'f': functions = 1; break;
		case 'm':
			metric = metric_arg(optarg);
			if (metric == METRIC_COUNT)
				die(EXIT_USAGE, "--by-function counts allocations in columns of their "
					"own: --metric is peak, total, leaked or temporary");
			table_opts = 1;
			break;
		case 's':
			if (fn_column_parse(optarg, &sort) < 0)
				die(EXIT_USAGE, "invalid --sort '%s': expected total, own, total-count "
					"or own-count", optarg);
			table_opts = 1;
			break;
		case 'n':
			top = strtol(optarg, &end, 10);
			if (*end || end == optarg || top < 1)
				die(EXIT_USAGE, "invalid --top '%s'", optarg);
			top_given = 1;
			break;
		case 'p':
			pid = pid_arg("--pid", optarg);
			break;
		case MAX_PEAK: max_peak = size_arg("--max-peak", optarg); has_peak = 1; break;
		case MAX_LEAKED: max_leaked = size_arg("--max-leaked", optarg); has_leaked = 1; break;
		case MAX_ALLOCS:
			errno = 0;
			max_allocs = strtoull(optarg, &end, 10);
			/* (strtoull takes blanks and a sign before the digits,
			 * and gives its largest value past it) */
			if (*end || end == optarg || !isdigit((unsigned char)optarg[0]) || errno == ERANGE)
				die(EXIT_USAGE, "invalid --max-allocations '%s': expected a count, 0 to %llu",
				    optarg, (unsigned long long)UINT64_MAX);
			has_allocs = 1;
			break;
		case 'h': usage(EXIT_OK); break;
		case VERSION: version_exit();
		default: bad_option(c, argv[optind - 1]); usage(EXIT_USAGE);
		}
	}
	if (dump + json + timeline > 1)
		die(EXIT_USAGE, "--dump, --json and --timeline exclude each other");
	if (functions && (dump || timeline))
		die(EXIT_USAGE, "--by-function excludes --dump and --timeline");
	if (table_opts && !functions)
		die(EXIT_USAGE, "--metric and --sort apply to --by-function only");
	int status = EXIT_OK;
	if (dump) {
		if (top_given || has_peak || has_leaked || has_allocs)
			die(EXIT_USAGE, "--top and the --max-* budgets are the report's: --dump "
				"prints every record");
		unsigned long seen = 0;
		if (optind == argc)
			status = dump_one("-", pid, &seen);
		for (int i = optind; i < argc; i++)
			if (dump_one(argv[i], pid, &seen) != EXIT_OK)
				status = EXIT_USAGE;
		if (close_stdout() < 0)
			status = EXIT_USAGE;
		if (pid >= 0 && !seen && status == EXIT_OK) {
			warnmsg("no process %ld in the input", pid);
			status = EXIT_USAGE;
		}
		return status;
	}
	struct replay r;
	/* (no prefetch: only the top stacks are named) */
	struct ingest g = { NULL, 0, 0, NULL };
	replay_init(&r, 0);
	status = ingest_files(&g, &r, argv + optind, argc - optind, pid);
	if (status == EXIT_REFUSED) { /* no report of an input that is not a stream */
		replay_free(&r);
		ingest_free(&g);
		return EXIT_USAGE;
	}
	struct symbolizer *sym = sym_new();
	if (functions) {
		if (by_function(&r, sym, metric, sort, top_given ? (size_t)top : 0, json) != EXIT_OK)
			status = EXIT_USAGE;
	} else if (timeline) {
		printf("ms,rss,heap\n");
		for (size_t i = 0; i < r.ntimeline; i++)
			printf("%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n",
			       timeline_ms(r.timeline[i].time_us), r.timeline[i].rss,
			       r.timeline[i].heap);
	} else if (json) {
		print_json(&r, sym, (size_t)top);
	} else {
		print_text(&r, sym, (size_t)top);
	}
	char h[16], l[16];
	const char *est = r.sample_bytes ? " (estimated from a sampled stream)" : "";
	if (has_peak && r.peak > max_peak) {
		warnmsg("peak heap %s%s is over the budget of --max-peak %s", human_size(h, r.peak),
			est, human_size(l, max_peak));
		status = status ? status : EXIT_CHECK;
	}
	if (has_leaked && r.live + r.gone > max_leaked) {
		warnmsg("%s still live at the end%s is over the budget of --max-leaked %s",
			human_size(h, r.live + r.gone), est, human_size(l, max_leaked));
		status = status ? status : EXIT_CHECK;
	}
	if (has_allocs && r.n_allocs > max_allocs) {
		warnmsg("%" PRIu64 " allocations%s are over the budget of --max-allocations %" PRIu64,
			r.n_allocs, est, max_allocs);
		status = status ? status : EXIT_CHECK;
	}
	sym_free(sym);
	replay_free(&r);
	ingest_free(&g);
	if (close_stdout() < 0)
		status = EXIT_USAGE;
	return status;
}
