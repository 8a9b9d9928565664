/*
 * memray-fold - a stream in, collapsed stacks out, one metric at a time;
 * or the same stacks as a pprof profile or a speedscope file.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/collapse.h"
#include "../../lib/ingest.h"
#include "../../lib/pprof.h"
#include "../../lib/replay.h"
#include "../../lib/speedscope.h"
#include "../../lib/symbolize.h"
#include "../../lib/util.h"

static const char usage_text[] =
	"usage: memray-fold [--metric METRIC] [--format FORMAT] [--native | --python-only]\n"
	"                   [--by-thread] [--hide-import-system] [--all-frames]\n"
	"                   [--no-source] [--temporal] [--pid PID] [FILE...]\n"
	"\n"
	"Reads memray streams from the FILEs (standard input when there is none or\n"
	"FILE is '-'), plain or compressed, and writes collapsed stacks: one line\n"
	"per stack, frames root first joined by ';', a space and an integer; or\n"
	"the same stacks as a pprof profile or a speedscope file.\n"
	"\n"
	"  -m, --metric METRIC     peak (default): bytes live at the high-water mark;\n"
	"                          total: bytes allocated; count: allocations;\n"
	"                          leaked: bytes live at the end; temporary: bytes\n"
	"                          freed before the thread's next allocation\n"
	"      --format FORMAT     collapsed (default): collapsed stacks;\n"
	"                          pprof: a gzipped pprof profile (binary: to a file\n"
	"                          or a pipe, never a terminal), for go tool pprof;\n"
	"                          speedscope: speedscope's JSON file format\n"
	"      --native            native frames too (hybrid stacks for Python)\n"
	"      --python-only       Python frames only\n"
	"      --by-thread         a root frame per thread\n"
	"      --hide-import-system  hide Python's import machinery frames\n"
	"      --all-frames        keep CPython's own native frames in hybrid stacks\n"
	"      --no-source         leave the text of Python source lines out\n"
	"      --temporal          each stack's live bytes over time too, for\n"
	"                          memray-flame's time ranges\n"
	"  -p, --pid PID           only the process PID\n"
	"  -h, --help              show this help\n"
	"      --version           show the version\n";

static void usage(int status)
{
	usage_exit(usage_text, status);
}

enum format { FORMAT_COLLAPSED, FORMAT_PPROF, FORMAT_SPEEDSCOPE };

static enum format format_arg(const char *s)
{
	static const char *const names[] = { "collapsed", "pprof", "speedscope" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return (enum format)i;
	die(EXIT_USAGE, "unknown format '%s': expected collapsed, pprof or speedscope", s);
}

int main(int argc, char **argv)
{
	progname = "memray-fold";
	enum { NATIVE = 256, PYTHON_ONLY, BY_THREAD, HIDE_IMPORT, ALL_FRAMES, VERSION, FORMAT,
	       NO_SOURCE, TEMPORAL };
	static const struct option longopts[] = {
		{ "metric", required_argument, NULL, 'm' },
		{ "format", required_argument, NULL, FORMAT },
		{ "native", no_argument, NULL, NATIVE },
		{ "python-only", no_argument, NULL, PYTHON_ONLY },
		{ "by-thread", no_argument, NULL, BY_THREAD },
		{ "hide-import-system", no_argument, NULL, HIDE_IMPORT },
		{ "all-frames", no_argument, NULL, ALL_FRAMES },
		{ "no-source", no_argument, NULL, NO_SOURCE },
		{ "temporal", no_argument, NULL, TEMPORAL },
		{ "pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct collapse_opts o = { METRIC_PEAK, FRAMES_AUTO, 0, 0, 0 };
	struct collapse_extra x = { 0, 1, NULL };
	int temporal = 0;
	enum format format = FORMAT_COLLAPSED;
	long pid = -1;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":m:p:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			o.metric = metric_arg(optarg);
			break;
		case FORMAT: format = format_arg(optarg); break;
		case NATIVE: o.frames = FRAMES_NATIVE; break;
		case PYTHON_ONLY: o.frames = FRAMES_PYTHON; break;
		case BY_THREAD: o.by_thread = 1; break;
		case HIDE_IMPORT: o.hide_import_system = 1; break;
		case ALL_FRAMES: o.all_frames = 1; break;
		case NO_SOURCE: x.sources = 0; break;
		case TEMPORAL: temporal = 1; break;
		case 'p':
			pid = pid_arg("--pid", optarg);
			break;
		case 'h': usage(EXIT_OK); break;
		case VERSION: version_exit();
		default: bad_option(c, argv[optind - 1]); usage(EXIT_USAGE);
		}
	}
	if (temporal && format != FORMAT_COLLAPSED)
		die(EXIT_USAGE, "--temporal is for collapsed stacks: pprof and speedscope files "
		    "have no place for it");
	if (format == FORMAT_PPROF && isatty(STDOUT_FILENO))
		die(EXIT_USAGE, "a pprof profile is binary: not writing it to a terminal "
		    "(redirect it to a file or a pipe)");
	/* collapsed stacks carry their counts and values by thread */
	x.annotate = format == FORMAT_COLLAPSED;
	x.sources = x.sources && format == FORMAT_COLLAPSED;
	struct replay r;
	struct symbolizer *sym = sym_new();
	struct ingest g = { NULL, 0, 0, sym };
	replay_init(&r, o.by_thread || x.annotate);
	if (temporal)
		x.temporal = collapse_temporal_start(&r);
	int status = EXIT_OK;
	status = ingest_files(&g, &r, argv + optind, argc - optind, pid);
	if (status == EXIT_REFUSED) { /* nothing written for input that is not a stream */
		sym_free(sym);
		collapse_temporal_free(x.temporal);
		replay_free(&r);
		ingest_free(&g);
		return EXIT_USAGE;
	}
	const char *why = metric_unavailable(&r, o.metric);
	if (why)
		die(EXIT_USAGE, "%s", why);
	/* frames asked for that the recording does not have: said, and the
	 * stacks written as they are */
	uint64_t have = 0;
	for (size_t i = 0; i < r.nprocs; i++)
		have |= r.procs[i].proc->header.flags;
	if (o.frames == FRAMES_NATIVE && r.nprocs && !(have & MR_F_NATIVE))
		warnmsg("--native: the recording has no native frames (memray-record records "
			"them for Python with --native): its stacks are written as they are");
	if (o.frames == FRAMES_PYTHON && r.nprocs && !(have & MR_F_PYTHON))
		warnmsg("--python-only: the recording has no Python frames (the program is "
			"not a CPython read by the tracker): its stacks are [unknown]");
	if (format == FORMAT_PPROF)
		pprof_write(stdout, &r, sym, &o);
	else if (format == FORMAT_SPEEDSCOPE)
		speedscope_write(stdout, &r, sym, &o);
	else
		collapse_write_extra(stdout, &r, sym, &o, &x);
	sym_free(sym);
	collapse_temporal_free(x.temporal);
	replay_free(&r);
	ingest_free(&g);
	if (close_stdout() < 0)
		status = EXIT_USAGE;
	return status;
}
