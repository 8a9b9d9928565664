/*
 * memray-live - a stream read as it is written, shown while the program
 * runs: heap, peak and RSS, memory over time, the top allocation sites.
 *
 * A reader thread decodes and replays the stream under one lock, letting
 * go of it whenever it waits for input (mr_input_open_live); the main
 * thread wakes every interval, takes the lock, and draws a snapshot.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/collapse.h"
#include "../../lib/input.h"
#include "../../lib/replay.h"
#include "../../lib/util.h"

static const char usage_text[] =
	"usage: memray-live [--batch] [--interval MS] [-n N] [--by-thread] [FILE]\n"
	"\n"
	"Reads a memray stream as it is written, from standard input or from FILE\n"
	"(followed as it grows, like tail -f, until the program ends), and shows\n"
	"the heap, its peak and the RSS, memory over time and the top allocation\n"
	"sites while the program runs.\n"
	"\n"
	"  -b, --batch           one plain line per interval instead of a screen\n"
	"                        (the default when stdout is not a terminal)\n"
	"  -i, --interval MS     milliseconds between updates (default 1000)\n"
	"  -n, --top N           sites shown (default 10)\n"
	"  -t, --by-thread       sites per thread instead of merged\n"
	"  -h, --help            show this help\n"
	"      --version         show the version\n"
	"\n"
	"Keys on the screen: s switches the sites' order (live bytes, total bytes,\n"
	"allocations), t threads merged or apart, p pauses, q quits.\n";

static void usage(int status)
{
	usage_exit(usage_text, status);
}

/* Whether the first 6 bytes of a file are those of a memray stream, or of
 * a compressed file (gzip, zstd, xz, bzip2, lz4), which may hold one. */
static int stream_start(const unsigned char *b)
{
	static const struct { const char *magic; size_t n; } known[] = {
		{ MR_MAGIC, MR_MAGIC_LEN }, { "\x1f\x8b", 2 }, { "\x28\xb5\x2f\xfd", 4 },
		{ "\xfd" "7zXZ", 5 }, { "BZh", 3 }, { "\x04\x22\x4d\x18", 4 },
	};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (memcmp(b, known[i].magic, known[i].n) == 0)
			return 1;
	return 0;
}

/* ---- the reader thread ---------------------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;

static struct {
	struct mr_input *in;
	struct mr_reader rd;
	struct replay r;
	int done;        /* the stream ended, or was damaged */
	int ended;       /* ... with the program's trailer */
	char err[600];
	uint64_t rss;    /* the latest memory record's */
	uint64_t start_wall_us;
} S;

static void do_unlock(void *ctx) { (void)ctx; pthread_mutex_unlock(&lock); }
static void do_lock(void *ctx) { (void)ctx; pthread_mutex_lock(&lock); }

/* Whether the stream was recorded by attaching (memray-record --pid):
 * its end is the recording's, and the program goes on. Locked. */
static int attached(void)
{
	return S.rd.nprocs > 0 && (S.rd.procs[0]->header.flags & MR_F_ATTACHED);
}

static void *reader_main(void *arg)
{
	(void)arg;
	struct mr_record rec;
	int rc;
	pthread_mutex_lock(&lock);
	while ((rc = mr_next(&S.rd, &rec)) == 1) {
		replay_record(&S.r, &rec);
		if (rec.tag == MR_TAG_MEMORY)
			S.rss = rec.rss;
		/* the first process's trailer ends the program: a followed
		 * file is not waited on past it */
		if (rec.tag == MR_TAG_TRAILER && rec.proc == S.rd.procs[0]) {
			S.ended = 1;
			break;
		}
		if (rec.tag == MR_TAG_TRAILER && S.rd.procs[0]->has_trailer) {
			S.ended = 1;
			break;
		}
	}
	if (rc < 0)
		snprintf(S.err, sizeof(S.err), "%s: %s", mr_input_name(S.in), S.rd.err);
	else if (rc == 0)
		S.ended = S.rd.nprocs > 0;
	S.done = 1;
	pthread_cond_broadcast(&changed);
	pthread_mutex_unlock(&lock);
	return NULL;
}

/* ---- snapshots --------------------------------------------------------------- */

enum order { BY_LIVE, BY_TOTAL, BY_COUNT };
static const char *const order_names[] = { "live bytes", "total bytes", "allocations" };

struct row {
	uint64_t key;
	const struct site *site;
};

static int by_key(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	return (x->key < y->key) - (x->key > y->key);
}

static uint64_t key_of(const struct site *s, enum order o)
{
	switch (o) {
	/* (with what ended processes left: live at end, as before they end) */
	case BY_LIVE: return s->cur_bytes + s->gone_bytes > 0 ? (uint64_t)(s->cur_bytes + s->gone_bytes) : 0;
	case BY_TOTAL: return s->total_bytes;
	case BY_COUNT: return s->total_count;
	}
	return 0;
}

static int by_stack(const void *a, const void *b)
{
	const struct site *x = ((const struct row *)a)->site, *y = ((const struct row *)b)->site;
	if (x->proc != y->proc)
		return (uintptr_t)x->proc < (uintptr_t)y->proc ? -1 : 1;
	return (x->stack > y->stack) - (x->stack < y->stack);
}

/* The top n sites by o, and how many there are; locked. The replay keeps
 * threads apart; merged, a stack's threads are added up. */
static size_t top_sites(enum order o, int by_thread, struct row *rows, size_t n)
{
	size_t k = 0;
	struct row *all = malloc((S.r.nsites ? S.r.nsites : 1) * sizeof(*all));
	if (!all)
		die(EXIT_USAGE, "out of memory");
	for (size_t i = 0; i < S.r.nsites; i++)
		all[k++] = (struct row){ key_of(&S.r.sites[i], o), &S.r.sites[i] };
	if (!by_thread && k > 1) {
		qsort(all, k, sizeof(*all), by_stack);
		size_t m = 0;
		for (size_t i = 0; i < k; i++) {
			if (m && by_stack(&all[m - 1], &all[i]) == 0)
				all[m - 1].key += all[i].key;
			else
				all[m++] = all[i];
		}
		k = m;
	}
	size_t m = 0;
	for (size_t i = 0; i < k; i++)
		if (all[i].key)
			all[m++] = all[i];
	k = m;
	if (k > 1)
		qsort(all, k, sizeof(*all), by_key);
	if (k > n)
		k = n;
	memcpy(rows, all, k * sizeof(*rows));
	free(all);
	return k;
}

/* A site's leaf frame (the last of its collapsed line), unescaped no
 * further: malloc'd. */
static char *leaf(struct symbolizer *sym, const struct site *s, int by_thread)
{
	struct collapse_opts o = { METRIC_PEAK, FRAMES_AUTO, by_thread, 0, 0 };
	size_t len;
	char *t = collapse_site(&S.r, sym, &o, s, &len);
	if (!t)
		return NULL;
	char *semi = strrchr(t, ';');
	char *l = strdup(semi ? semi + 1 : t);
	if (by_thread && semi) {
		/* "thread (thread N);...;leaf": keep the thread in front */
		char *first = strchr(t, ';');
		size_t n = (size_t)(first - t) + 3 + strlen(semi + 1) + 1;
		char *both = malloc(n);
		if (both) {
			snprintf(both, n, "%.*s | %s", (int)(first - t), t, semi + 1);
			free(l);
			l = both;
		}
	}
	free(t);
	return l;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* One plain line: for logs and cron. Locked. */
static void batch_line(struct symbolizer *sym, double t, int final)
{
	char h1[16], h2[16], h3[16], h4[16];
	struct row top[1];
	size_t n = top_sites(BY_LIVE, 0, top, 1);
	char *name = n ? leaf(sym, top[0].site, 0) : NULL;
	printf("%s%.1fs heap %s peak %s rss %s allocations %" PRIu64 " frees %" PRIu64,
	       final ? "end " : "", t, human_size(h1, S.r.live + S.r.gone), human_size(h2, S.r.peak),
	       human_size(h3, S.rss), S.r.n_allocs, S.r.n_frees);
	if (n)
		printf(" top %s %s", human_size(h4, top[0].key), name ? name : "?");
	if (S.r.sample_bytes)
		fputs(" (sampled: estimates)", stdout);
	putchar('\n');
	fflush(stdout);
	free(name);
}

/* ---- the screen ---------------------------------------------------------------- */

static struct termios saved_tty;
static int tty_raw;
static volatile sig_atomic_t quit;

static void on_signal(int sig)
{
	(void)sig;
	quit = 1;
}

static void restore_tty(void)
{
	if (tty_raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
		tty_raw = 0;
	}
	fputs("\033[?25h\033[?1049l", stdout); /* cursor back, main screen */
	fflush(stdout);
}

static void spark(const struct replay *r, int width)
{
	static const char *const bars[] = { " ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" };
	size_t n = r->ntimeline, from = n > (size_t)width ? n - (size_t)width : 0;
	uint64_t top = 1;
	for (size_t i = from; i < n; i++)
		if (r->timeline[i].heap > top)
			top = r->timeline[i].heap;
	for (size_t i = from; i < n; i++)
		fputs(bars[(r->timeline[i].heap * 8 + top - 1) / top], stdout);
	putchar('\n');
}

static void screen(struct symbolizer *sym, double t, enum order o, int by_thread, size_t ntop,
		   int paused)
{
	char h1[16], h2[16], h3[16];
	struct winsize ws = { 0 };
	int cols = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col : 80;
	fputs("\033[H\033[2J", stdout);
	const char *cmd = S.rd.nprocs && S.rd.procs[0]->header.argc ? S.rd.procs[0]->header.argv[0] : "";
	printf("\033[1mmemray-live\033[0m  %s  %.1f s%s%s\n", cmd, t,
	       S.done ? (S.ended ? (attached() ? "  (the recording has ended)" : "  (the program has ended)")
			: "  (the stream stopped)") : "",
	       paused ? "  [paused]" : "");
	printf("heap %s   peak %s   rss %s   allocations %" PRIu64 "%s\n",
	       human_size(h1, S.r.live + S.r.gone), human_size(h2, S.r.peak), human_size(h3, S.rss),
	       S.r.n_allocs, S.r.sample_bytes ? "   (sampled: estimates)" : "");
	spark(&S.r, cols - 1 < 200 ? cols - 1 : 200);
	printf("\n\033[1mtop sites by %s%s\033[0m\n", order_names[o], by_thread ? ", per thread" : "");
	struct row rows[100];
	size_t n = top_sites(o, by_thread, rows, ntop < 100 ? ntop : 100);
	for (size_t i = 0; i < n; i++) {
		char *name = leaf(sym, rows[i].site, by_thread);
		char v[32];
		if (o == BY_COUNT)
			snprintf(v, sizeof(v), "%" PRIu64, rows[i].key);
		else
			human_size(v, rows[i].key);
		printf("%10s  %.*s\n", v, cols > 14 ? cols - 14 : 1, name ? name : "?");
		free(name);
	}
	printf("\n\033[2ms order  t threads  p pause  q quit\033[0m\n");
	fflush(stdout);
}

/* ---- main ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	progname = "memray-live";
	enum { VERSION = 256 };
	static const struct option longopts[] = {
		{ "batch", no_argument, NULL, 'b' },
		{ "interval", required_argument, NULL, 'i' },
		{ "top", required_argument, NULL, 'n' },
		{ "by-thread", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, VERSION },
		{ NULL, 0, NULL, 0 },
	};
	int batch = !isatty(STDOUT_FILENO), by_thread = 0, c;
	long interval_ms = 1000, ntop = 10;
	char *end;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":bi:n:th", longopts, NULL)) != -1) {
		switch (c) {
		case 'b': batch = 1; break;
		case 't': by_thread = 1; break;
		case 'i':
			interval_ms = strtol(optarg, &end, 10);
			if (*end || end == optarg || interval_ms < 10 || interval_ms > 3600000)
				die(EXIT_USAGE, "invalid --interval '%s': expected 10 to 3600000 ms", optarg);
			break;
		case 'n':
			ntop = strtol(optarg, &end, 10);
			if (*end || end == optarg || ntop < 1 || ntop > 100)
				die(EXIT_USAGE, "invalid --top '%s': expected 1 to 100", optarg);
			break;
		case 'h': usage(EXIT_OK); break;
		case VERSION: version_exit();
		default: bad_option(c, argv[optind - 1]); usage(EXIT_USAGE);
		}
	}
	if (argc - optind > 1)
		die(EXIT_USAGE, "one input at a time");
	const char *path = optind < argc ? argv[optind] : "-";
	int fd = 0, follow = 0;
	if (strcmp(path, "-") != 0) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die(EXIT_USAGE, "cannot open '%s': %s", path, strerror(errno));
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
			die(EXIT_USAGE, "cannot read '%s': it is a directory", path);
		/* a file is followed as it grows; a device (/dev/null) or a
		 * socket is read to its end like a pipe */
		follow = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
		/* a file being written may be too short to tell yet; one that
		 * starts with anything but a stream or a compressed file would
		 * be followed for ever */
		unsigned char head[6];
		if (pread(fd, head, sizeof(head), 0) == (ssize_t)sizeof(head) && !stream_start(head))
			die(EXIT_USAGE, "%s: not a memray stream (bad magic at byte 0)", path);
	}
	/* the keys come from the terminal, the stream perhaps from stdin */
	int keys = -1;
	if (!batch) {
		keys = open("/dev/tty", O_RDONLY | O_CLOEXEC);
		if (keys < 0)
			batch = 1;
	}
	/* the lock is held from here on but while waiting: opening the input
	 * already reads (to recognise compression) */
	pthread_mutex_lock(&lock);
	S.in = mr_input_open_live(fd, fd ? path : "<stdin>", follow, do_unlock, do_lock, NULL);
	if (!S.in)
		die(EXIT_USAGE, "out of memory");
	mr_reader_init(&S.rd, S.in);
	replay_init(&S.r, 1);
	pthread_t reader;
	if (pthread_create(&reader, NULL, reader_main, NULL) != 0)
		die(EXIT_USAGE, "cannot start the reader thread");

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	if (!batch) {
		if (tcgetattr(keys, &saved_tty) == 0) {
			struct termios raw = saved_tty;
			raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
			raw.c_cc[VMIN] = 0;
			raw.c_cc[VTIME] = 0;
			tcsetattr(keys, TCSANOW, &raw);
			tty_raw = 1;
		}
		fputs("\033[?1049h\033[?25l", stdout); /* other screen, no cursor */
	}

	struct symbolizer *sym = sym_new();
	double t0 = now_s();
	enum order order = BY_LIVE;
	int paused = 0, status = EXIT_OK;
	for (;;) {
		/* wait for the interval to pass, the stream to end or a key */
		double until = now_s() + (double)interval_ms / 1000;
		int key = 0;
		while (!S.done && !quit && now_s() < until) {
			pthread_mutex_unlock(&lock);
			struct pollfd p = { keys, POLLIN, 0 };
			int ms = (int)((until - now_s()) * 1000);
			if (ms > 100)
				ms = 100; /* check on the stream's end now and then */
			if (ms < 0)
				ms = 0;
			if (poll(&p, keys >= 0 ? 1 : 0, ms) > 0 && (p.revents & POLLIN)) {
				char k;
				if (read(keys, &k, 1) == 1)
					key = k;
			}
			pthread_mutex_lock(&lock);
			if (key)
				break;
		}
		if (key == 'q' || key == 'Q')
			quit = 1;
		else if (key == 's')
			order = (enum order)((order + 1) % 3);
		else if (key == 't')
			by_thread = !by_thread;
		else if (key == 'p')
			paused = !paused;
		if (quit)
			break;
		if (batch) {
			if (!S.done)
				batch_line(sym, now_s() - t0, 0);
		} else if (!paused || key) {
			screen(sym, now_s() - t0, order, by_thread, (size_t)ntop, paused);
		}
		if (S.done)
			break;
	}
	int done = S.done;
	/* no stream at all (an empty input): nothing to show, only the error */
	if (done && batch && S.rd.nprocs > 0) {
		batch_line(sym, now_s() - t0, 1);
		printf("%s\n", S.ended ? (attached() ? "the recording has ended" : "the program has ended")
				: "the stream stopped");
	}
	if (!batch) {
		if (done && !quit) {
			/* the final state stays until a key is pressed */
			screen(sym, now_s() - t0, order, by_thread, (size_t)ntop, 0);
			printf("the %s has ended: press a key\n", attached() ? "recording" : "program");
			fflush(stdout);
			pthread_mutex_unlock(&lock);
			struct pollfd p = { keys, POLLIN, 0 };
			while (!quit && poll(&p, 1, 200) == 0)
				;
			pthread_mutex_lock(&lock);
		}
		restore_tty();
	}
	if (S.err[0]) {
		warnmsg("%s", S.err);
		status = EXIT_USAGE;
	}
	pthread_mutex_unlock(&lock);
	if (done)
		pthread_join(reader, NULL);
	sym_free(sym);
	if (close_stdout() < 0)
		status = EXIT_USAGE;
	/* quitting while the reader waits on input: the process ends with it */
	_exit(status);
}
