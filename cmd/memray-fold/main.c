/*
 * memray-fold - a stream in, collapsed stacks out, one metric at a time.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/collapse.h"
#include "../../lib/ingest.h"
#include "../../lib/replay.h"
#include "../../lib/symbolize.h"
#include "../../lib/util.h"

static const char usage_text[] =
	"usage: memray-fold [--metric METRIC] [--native | --python-only] [--by-thread]\n"
	"                   [--hide-import-system] [--all-frames] [--pid PID] [FILE...]\n"
	"\n"
	"Reads memray streams from the FILEs (standard input when there is none or\n"
	"FILE is '-'), plain or compressed, and writes collapsed stacks: one line\n"
	"per stack, frames root first joined by ';', a space and an integer.\n"
	"\n"
	"  -m, --metric METRIC     peak (default): bytes live at the high-water mark;\n"
	"                          total: bytes allocated; count: allocations;\n"
	"                          leaked: bytes live at the end; temporary: bytes\n"
	"                          freed before the thread's next allocation\n"
	"      --native            native frames too (hybrid stacks for Python)\n"
	"      --python-only       Python frames only\n"
	"      --by-thread         a root frame per thread\n"
	"      --hide-import-system  hide Python's import machinery frames\n"
	"      --all-frames        keep CPython's own native frames in hybrid stacks\n"
	"  -p, --pid PID           only the process PID\n"
	"  -h, --help              show this help\n"
	"      --version           show the version\n";

static void usage(int status)
{
	usage_exit(usage_text, status);
}

int main(int argc, char **argv)
{
	progname = "memray-fold";
	enum { NATIVE = 256, PYTHON_ONLY, BY_THREAD, HIDE_IMPORT, ALL_FRAMES, VERSION };
	static const struct option longopts[] = {
		{ "metric", required_argument, NULL, 'm' },
		{ "native", no_argument, NULL, NATIVE },
		{ "python-only", no_argument, NULL, PYTHON_ONLY },
		{ "by-thread", no_argument, NULL, BY_THREAD },
		{ "hide-import-system", no_argument, NULL, HIDE_IMPORT },
		{ "all-frames", no_argument, NULL, ALL_FRAMES },
		{ "pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct collapse_opts o = { METRIC_PEAK, FRAMES_AUTO, 0, 0, 0 };
	long pid = -1;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":m:p:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (metric_parse(optarg, &o.metric) < 0)
				die(EXIT_USAGE, "unknown metric '%s': expected peak, total, count, "
				    "leaked or temporary", optarg);
			break;
		case NATIVE: o.frames = FRAMES_NATIVE; break;
		case PYTHON_ONLY: o.frames = FRAMES_PYTHON; break;
		case BY_THREAD: o.by_thread = 1; break;
		case HIDE_IMPORT: o.hide_import_system = 1; break;
		case ALL_FRAMES: o.all_frames = 1; break;
		case 'p':
			pid = pid_arg("--pid", optarg);
			break;
		case 'h': usage(EXIT_OK); break;
		case VERSION: printf("memray-fold %s\n", MEMRAY_VERSION); return EXIT_OK;
		default: bad_option(c, argv[optind - 1]); usage(EXIT_USAGE);
		}
	}
	struct replay r;
	struct ingest g = { NULL, 0, 0 };
	replay_init(&r, o.by_thread);
	int status = EXIT_OK;
	status = ingest_files(&g, &r, argv + optind, argc - optind, pid);
	const char *why = metric_unavailable(&r, o.metric);
	if (why)
		die(EXIT_USAGE, "%s", why);
	struct symbolizer *sym = sym_new();
	collapse_write(stdout, &r, sym, &o);
	sym_free(sym);
	replay_free(&r);
	ingest_free(&g);
	if (close_stdout() < 0)
		status = EXIT_USAGE;
	return status;
}
