#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest.h"
#include "input.h"
#include "symbolize.h"
#include "util.h"

int ingest_file(struct ingest *g, struct replay *r, const char *path, long pid)
{
	char err[600];
	struct mr_input *in = mr_input_open(path, err, sizeof(err));
	if (!in) {
		warnmsg("%s", err);
		return EXIT_REFUSED;
	}
	return ingest_input(g, r, in, pid);
}

/* Whether a stack of the processes read (pid's, when pid >= 0) was cut:
 * deeper than the tracker keeps, it begins with the tracker's label
 * "[stack cut: ...]" (a frame of no file and line 0). */
static int saw_cut(const struct mr_reader *rd, long pid)
{
	for (size_t i = 0; i < rd->nprocs; i++) {
		const struct mr_proc *p = rd->procs[i];
		if (pid >= 0 && p->pid != (uint32_t)pid)
			continue;
		for (size_t f = 0; f < p->nframes; f++) {
			const struct mr_pyframe *pf = &p->frames[f];
			if (!pf->file && !pf->line &&
			    strncmp(mr_string(p, pf->function), "[stack cut", 10) == 0)
				return 1;
		}
	}
	return 0;
}

int ingest_input(struct ingest *g, struct replay *r, struct mr_input *in, long pid)
{
	struct mr_reader *rd = malloc(sizeof(*rd));
	struct mr_reader **v = realloc(g->readers, (g->n + 1) * sizeof(*v));
	if (!rd || !v)
		die(EXIT_USAGE, "out of memory");
	g->readers = v;
	g->readers[g->n++] = rd;
	struct mr_record rec;
	int rc;
	mr_reader_init(rd, in);
	/* A progress line for large inputs, when a person watches stderr. */
	uint64_t done, total, n = 0, seen = 0;
	mr_input_progress(in, &done, &total);
	int progress = total > (64u << 20) && isatty(STDERR_FILENO);
	int shown = -1;
	while ((rc = mr_next(rd, &rec)) == 1) {
		seen++;
		if (progress && (++n & 0xfffff) == 0) {
			mr_input_progress(in, &done, &total);
			int pct = done >= total ? 100 : (int)(done * 100 / total);
			if (pct != shown) {
				char bar[31];
				memset(bar, '#', 30);
				memset(bar + pct * 30 / 100, '.', 30 - (size_t)(pct * 30 / 100));
				bar[30] = 0;
				fprintf(stderr, "\r%s: %s [%s] %3d%%", progname,
					mr_input_name(in), bar, pct);
			}
			shown = pct;
		}
		if (pid >= 0 && rec.proc->pid != (uint32_t)pid)
			continue;
		if (rec.tag == MR_TAG_HEADER && (rec.proc->header.flags & MR_F_PYMALLOC))
			g->saw_pymalloc = 1;
		else if (rec.tag == MR_TAG_NODE_NATIVE && g->prefetch)
			sym_prefetch(g->prefetch, rec.proc, rec.proc->nodes[rec.id].value);
		replay_record(r, &rec);
	}
	if (shown >= 0)
		fputs("\r\033[K", stderr);
	if (rc < 0) {
		warnmsg("%s: %s", mr_input_name(in), rd->err);
		if (!r->damage && asprintf(&r->damage, "%s: %s", mr_input_name(in), rd->err) < 0)
			r->damage = NULL;
	}
	else if (!seen)
		warnmsg("%s: empty: no memray stream in it", mr_input_name(in));
	else if (rd->warn[0])
		warnmsg("%s: %s", mr_input_name(in), rd->warn);
	if (seen && saw_cut(rd, pid))
		warnmsg("%s: stacks deeper than the tracker keeps (2048 Python frames, 256 native"
			" ones) were cut: their outermost frames are not recorded, and a"
			" '[stack cut: ...]' frame stands for them", mr_input_name(in));
	mr_input_close(in);
	rd->in = NULL;
	/* nothing read at all (bad magic, an empty input): not a stream */
	return !seen ? EXIT_REFUSED : rc < 0 ? EXIT_USAGE : EXIT_OK;
}

int ingest_files(struct ingest *g, struct replay *r, char *const *files, int n, long pid)
{
	int status = EXIT_OK, refused = 0;
	if (n == 0)
		status = ingest_file(g, r, "-", pid);
	for (int i = 0; i < n; i++) {
		int st = ingest_file(g, r, files[i], pid);
		refused += st == EXIT_REFUSED;
		if (st != EXIT_OK)
			status = EXIT_USAGE;
	}
	/* as cat and grep do, the readable inputs are still read when some
	 * are not; when none is, there is nothing to report */
	if (status == EXIT_REFUSED || (n > 0 && refused == n))
		return EXIT_REFUSED;
	if (pid >= 0 && r->nprocs == 0 && status == EXIT_OK)
		die(EXIT_USAGE, "no process %ld in the input", pid);
	return status;
}

void ingest_free(struct ingest *g)
{
	for (size_t i = 0; i < g->n; i++) {
		mr_reader_free(g->readers[i]);
		free(g->readers[i]);
	}
	free(g->readers);
	memset(g, 0, sizeof(*g));
}
