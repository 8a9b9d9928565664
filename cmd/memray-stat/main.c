/*
 * memray-stat - the numbers a person wants first from a stream; with
 * --dump, every record as one line of text.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/dump.h"
#include "../../lib/input.h"
#include "../../lib/live.h"
#include "../../lib/stream.h"
#include "../../lib/util.h"

static const char usage_text[] =
	"usage: memray-stat [--dump] [FILE...]\n"
	"\n"
	"Reads memray streams (memray-stream(5)) from the FILEs, or standard input\n"
	"when there is none or FILE is '-', plain or compressed, and prints totals:\n"
	"allocations, frees, bytes allocated, peak heap, peak RSS and bytes still\n"
	"live at the end.\n"
	"\n"
	"  -d, --dump      print every record as one line of text\n"
	"  -h, --help      show this help\n"
	"      --version   show the version\n";

/* The whole help on request; only the usage lines after a mistake. */
static void usage(int status)
{
	if (status == EXIT_OK)
		fputs(usage_text, stdout);
	else
		fprintf(stderr, "%.*s", (int)(strstr(usage_text, "\n\n") - usage_text + 1), usage_text);
	exit(status);
}

struct totals {
	uint64_t records, allocs, frees, bytes, peak_rss, duration_us;
	struct live live;
};

static void account(struct totals *t, const struct mr_record *rec)
{
	t->records++;
	switch (rec->tag & 0xe0) {
	case MR_TAG_ALLOC:
		t->allocs++;
		t->bytes += rec->size;
		live_alloc(&t->live, rec->allocator, rec->addr, rec->size);
		return;
	case MR_TAG_FREE:
		t->frees++;
		live_free(&t->live, rec->allocator, rec->addr, rec->size);
		return;
	case MR_TAG_MOVE:
		t->allocs++;
		t->frees++;
		t->bytes += rec->size;
		live_free(&t->live, rec->allocator, rec->old_addr, rec->old_size);
		live_alloc(&t->live, rec->allocator, rec->addr, rec->size);
		return;
	}
	if (rec->tag == MR_TAG_HEADER) {
		/* A new program image (after exec) starts with an empty heap. */
		uint64_t peak = t->live.peak;
		live_free_all(&t->live);
		t->live.peak = peak;
	} else if (rec->tag == MR_TAG_MEMORY) {
		if (rec->rss > t->peak_rss)
			t->peak_rss = rec->rss;
		if (rec->time_us > t->duration_us)
			t->duration_us = rec->time_us;
	} else if (rec->tag == MR_TAG_TRAILER) {
		if (rec->proc->trailer.time_us > t->duration_us)
			t->duration_us = rec->proc->trailer.time_us;
	}
}

static void print_totals(const struct totals *t)
{
	char h[16];
	printf("allocations:     %" PRIu64 "\n", t->allocs);
	printf("frees:           %" PRIu64 "\n", t->frees);
	printf("bytes allocated: %" PRIu64 " (%s)\n", t->bytes, human_size(h, t->bytes));
	printf("peak heap:       %" PRIu64 " (%s)\n", t->live.peak,
	       human_size(h, t->live.peak));
	printf("peak RSS:        %" PRIu64 " (%s)\n", t->peak_rss, human_size(h, t->peak_rss));
	printf("live at end:     %" PRIu64 " (%s)\n", t->live.bytes,
	       human_size(h, t->live.bytes));
	printf("duration:        %.3f s\n", (double)t->duration_us / 1e6);
}

/* Reads one input; returns 0, or 2 after reporting damage. */
static int read_one(const char *path, int dump, struct totals *t)
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
		if (dump)
			mr_dump_record(stdout, &rec);
		else
			account(t, &rec);
	}
	if (rc < 0)
		warnmsg("%s: %s", mr_input_name(in), r.err);
	mr_reader_free(&r);
	mr_input_close(in);
	return rc < 0 ? EXIT_USAGE : EXIT_OK;
}

int main(int argc, char **argv)
{
	progname = "memray-stat";
	static const struct option longopts[] = {
		{ "dump", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int dump = 0, c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":dh", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': dump = 1; break;
		case 'h': usage(EXIT_OK); break;
		case 'V': printf("memray-stat %s\n", MEMRAY_VERSION); return EXIT_OK;
		default: bad_option(c, argv[optind - 1]); usage(EXIT_USAGE);
		}
	}
	struct totals t;
	memset(&t, 0, sizeof(t));
	live_init(&t.live);
	int status = EXIT_OK;
	if (optind == argc)
		status = read_one("-", dump, &t);
	for (int i = optind; i < argc; i++)
		if (read_one(argv[i], dump, &t) != EXIT_OK)
			status = EXIT_USAGE;
	if (!dump)
		print_totals(&t);
	live_free_all(&t.live);
	if (close_stdout() < 0)
		status = EXIT_USAGE;
	return status;
}
