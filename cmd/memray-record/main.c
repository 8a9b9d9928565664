/*
 * memray-record - run a program with the tracker preloaded and deliver
 * its event stream to stdout or a file.
 *
 * The tracker writes chunks into a pipe; this process relays them to the
 * output (compressing with -z), so the program never writes to the output
 * itself and never sees it go away.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "../../lib/stream.h"
#include "../../lib/util.h"
#include "record.h"

static const char usage_text[] =
	"usage: memray-record [-fqz] [-o FILE] [--native | --no-native] [--interval MS]\n"
	"                     [--sample-bytes N [--seed SEED]]\n"
	"                     [--trace-python-allocators] [--follow-fork]\n"
	"                     [--program-output FILE] [--] PROGRAM [ARGS...]\n"
	"       memray-record [-fqz] [-o FILE] [--native | --no-native] [--interval MS]\n"
	"                     [--sample-bytes N [--seed SEED]] -p PID [--duration SECONDS]\n"
	"       memray-record --idle [--] PROGRAM [ARGS...]\n"
	"\n"
	"Runs PROGRAM with the memray tracker preloaded, or attaches to the running\n"
	"process PID, and writes its allocation event stream (memray-stream(5)) to\n"
	"FILE, to stdout when stdout is not a terminal, or else to\n"
	"memray-PROGRAM.PID.bin.\n"
	"\n"
	"  -o, --output FILE   write the stream to FILE ('-' for stdout)\n"
	"  -f, --force         overwrite FILE if it exists\n"
	"  -z                  compress the stream with zstd\n"
	"      --compress[=zstd|gzip]\n"
	"                      compress the stream with zstd (the default) or gzip\n"
	"      --native        record native stacks (default unless PROGRAM is Python)\n"
	"      --no-native     do not record native stacks\n"
	"      --interval MS   milliseconds between memory records (default 10)\n"
	"      --sample-bytes N\n"
	"                      record a sample of the heap allocations: one in about\n"
	"                      every N bytes allocated (e.g. 512K), each standing for\n"
	"                      the allocations it represents; the filters then report\n"
	"                      estimates\n"
	"      --seed SEED     with --sample-bytes, the same samples in every run of\n"
	"                      the same program (SEED a positive integer)\n"
	"      --trace-python-allocators\n"
	"                      record every Python object allocation (runs the\n"
	"                      program with PYTHONMALLOC=malloc)\n"
	"      --follow-fork   record the processes PROGRAM starts too (fork, vfork,\n"
	"                      posix_spawn, exec), all into the one stream\n"
	"      --program-output FILE\n"
	"                      the program's standard output and error go to FILE\n"
	"                      (created or truncated), off the terminal\n"
	"  -p, --pid PID       attach to the running process PID (with gdb), record\n"
	"                      until SECONDS have passed or Ctrl-C, then detach and\n"
	"                      leave it running as before\n"
	"      --duration SECONDS\n"
	"                      with --pid, how long to record (default: until Ctrl-C)\n"
	"      --idle          run PROGRAM with the tracker loaded but recording\n"
	"                      nothing, for its in-process API (memray.h)\n"
	"  -q, --quiet         no messages but errors\n"
	"  -h, --help          show this help\n"
	"      --version       show the version\n";

static void usage(int status)
{
	usage_exit(usage_text, status);
}

struct opts {
	const char *output;
	int force, compress, quiet;
	const char *native; /* "auto", "1" or "0" */
	int python_allocators;
	long interval_ms;
	int follow_fork;
	const char *program_output;
	long pid;
	double duration;
	int idle;
	uint64_t sample_bytes, seed;
};

/* ---- finding things ----------------------------------------------------- */

/* The tracker next to this binary: <dir>/../lib/memray-c/, which is both
 * the build tree's layout and the installed one. */
int find_tracker(char *out, size_t n)
{
	const char *env = getenv("MEMRAY_TRACKER");
	if (env && env[0]) {
		snprintf(out, n, "%s", env);
		return access(out, R_OK);
	}
	char self[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (k <= 0)
		return -1;
	self[k] = 0;
	snprintf(out, n, "%s/../lib/memray-c/libmemray-tracker.so", dirname(self));
	char *real = realpath(out, NULL);
	if (!real)
		return -1;
	snprintf(out, n, "%s", real);
	free(real);
	return 0;
}

/* Resolves PROGRAM as execvp would. Returns 0, or the exit status that
 * reports the failure (127 not found, 126 not executable). */
static int find_program(const char *prog, char *out, size_t n)
{
	struct stat st;
	if (strchr(prog, '/')) {
		snprintf(out, n, "%s", prog);
		if (stat(out, &st) < 0) {
			warnmsg("cannot run '%s': %s", prog, strerror(errno));
			return errno == ENOENT || errno == ENOTDIR ? 127 : 126;
		}
		if (S_ISDIR(st.st_mode) || access(out, X_OK) < 0) {
			warnmsg("cannot run '%s': %s", prog,
				S_ISDIR(st.st_mode) ? "Is a directory" : strerror(errno));
			return 126;
		}
		return 0;
	}
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	int denied = 0;
	while (*path) {
		const char *end = strchr(path, ':');
		size_t len = end ? (size_t)(end - path) : strlen(path);
		snprintf(out, n, "%.*s%s%s", (int)len, path, len ? "/" : "", prog);
		if (stat(out, &st) == 0 && !S_ISDIR(st.st_mode)) {
			if (access(out, X_OK) == 0)
				return 0;
			denied = 1;
		}
		path += len + (end ? 1 : 0);
	}
	if (denied) {
		warnmsg("cannot run '%s': Permission denied", prog);
		return 126;
	}
	warnmsg("%s: command not found", prog);
	return 127;
}

/* Why the tracker cannot be preloaded into path, or NULL if it can. */
static const char *unrecordable(const char *path)
{
	struct stat st;
	if (stat(path, &st) == 0 && geteuid() != 0 &&
	    (((st.st_mode & S_ISUID) && st.st_uid != geteuid()) ||
	     ((st.st_mode & S_ISGID) && st.st_gid != getegid())))
		return "is setuid or setgid";
	return elf_linkage(path) == ELF_STATIC ? "is statically linked" : NULL;
}

int elf_linkage(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ELF_OTHER;
	unsigned char buf[4096];
	ssize_t k = read(fd, buf, sizeof(buf));
	close(fd);
	if (k < (ssize_t)sizeof(Elf64_Ehdr) || memcmp(buf, ELFMAG, SELFMAG) != 0)
		return ELF_OTHER; /* a script: its interpreter is what runs */
	if (buf[EI_CLASS] != ELFCLASS64)
		return ELF_32BIT;
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)buf;
	if (eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > (uint64_t)k)
		return ELF_OTHER;
	for (int i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, buf + eh->e_phoff + (size_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type == PT_INTERP || ph.p_type == PT_DYNAMIC)
			return ELF_DYNAMIC;
	}
	return ELF_STATIC;
}

/* ---- output ------------------------------------------------------------- */

static void out_write(struct out *o, const void *data, size_t n)
{
	const char *p = data;
	while (n > 0 && !o->cut) {
		ssize_t k = write(o->fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* an output given non-blocking (a pipe its reader set
			 * O_NONBLOCK on): waited for, as a blocking one is */
			struct pollfd pf = { o->fd, POLLOUT, 0 };
			if (poll(&pf, 1, -1) >= 0 || errno == EINTR)
				continue;
		}
		if (k <= 0) {
			o->cut = 1;
			o->err = k < 0 ? errno : EIO;
			return;
		}
		p += k;
		n -= (size_t)k;
		o->bytes_out += (unsigned long long)k;
	}
}

void out_start(struct out *o)
{
	if (o->compress == COMPRESS_GZIP &&
	    deflateInit2(&o->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		die(EXIT_USAGE, "cannot start zlib");
	if (o->compress == COMPRESS_ZSTD) {
		/* level 6: it finds the repeats of a churn across chunk
		 * headers, as zstd's default (3) does, and a twelfth more of
		 * a Python program's (objects.py with every object recorded:
		 * 3.01 MB at level 3, 2.76 MB here), at a cost the program
		 * hardly sees (bench/churn_varied.c, 2 M events: 0.215 s at
		 * level 3, 0.223 s here, 0.213 s uncompressed) */
		o->zc = ZSTD_createCCtx();
		if (!o->zc || ZSTD_isError(ZSTD_CCtx_setParameter(o->zc, ZSTD_c_compressionLevel, 6)) ||
		    ZSTD_isError(ZSTD_CCtx_setParameter(o->zc, ZSTD_c_checksumFlag, 1)))
			die(EXIT_USAGE, "cannot start zstd");
	}
}

/* Whether the compressor should write out what it holds now: every 256
 * KiB of stream, or a second after it last did. A compressor holds up to
 * a block (zstd's is 128 KiB) that a file cut short, by a killed
 * memray-record or a full disk, would lose with it; flushed, a reader
 * gets everything up to the last flush (memray-stream(5)). */
static int flush_due(struct out *o, size_t n)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	long long now = (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
	o->unflushed += n;
	if (o->unflushed < 256 * 1024 && now - o->flushed_ms < 1000)
		return 0;
	o->unflushed = 0;
	o->flushed_ms = now;
	return 1;
}

static void out_zstd(struct out *o, const void *data, size_t n, int finish)
{
	unsigned char buf[65536];
	ZSTD_inBuffer in = { data, n, 0 };
	ZSTD_EndDirective how = finish ? ZSTD_e_end : flush_due(o, n) ? ZSTD_e_flush : ZSTD_e_continue;
	for (;;) {
		ZSTD_outBuffer zo = { buf, sizeof(buf), 0 };
		size_t left = ZSTD_compressStream2(o->zc, &zo, &in, how);
		if (ZSTD_isError(left)) {
			/* cannot happen with valid arguments; keep what is written */
			if (!o->cut) {
				o->cut = 1;
				o->err = EIO;
			}
			return;
		}
		out_write(o, buf, zo.pos);
		if (how != ZSTD_e_continue ? left == 0 : in.pos == in.size && zo.pos < zo.size)
			return;
	}
}

void out_data(struct out *o, const void *data, size_t n, int finish)
{
	if (o->compress == COMPRESS_ZSTD) {
		out_zstd(o, data, n, finish);
		return;
	}
	if (o->compress != COMPRESS_GZIP) {
		out_write(o, data, n);
		return;
	}
	unsigned char buf[65536];
	o->z.next_in = (unsigned char *)data;
	o->z.avail_in = (uInt)n;
	int how = finish ? Z_FINISH : flush_due(o, n) ? Z_SYNC_FLUSH : Z_NO_FLUSH;
	do {
		o->z.next_out = buf;
		o->z.avail_out = sizeof(buf);
		deflate(&o->z, how);
		out_write(o, buf, sizeof(buf) - o->z.avail_out);
	} while (o->z.avail_out == 0);
}

/* Ends the compressor, after the last out_data. */
static void out_end(struct out *o)
{
	if (o->compress == COMPRESS_GZIP)
		deflateEnd(&o->z);
	if (o->compress == COMPRESS_ZSTD)
		ZSTD_freeCCtx(o->zc);
	o->zc = NULL;
	o->compress = COMPRESS_NONE;
}

void out_stream(struct out *o, const void *data, size_t n)
{
	static struct rechunk rc;
	o->rc = &rc;
	rechunk_feed(&rc, data, n, o);
	rechunk_flush(&rc, o);
}

void out_finish(struct out *o)
{
	if (o->rc)
		rechunk_end(o->rc, o);
	if (o->compress) {
		out_data(o, NULL, 0, 1);
		out_end(o);
	}
	if (o->fd >= 0 && !o->to_stdout && close(o->fd) < 0 && !o->err)
		o->err = errno;
	o->fd = -1;
}

void watch_bytes(struct watch *w, const uint8_t *p, size_t n)
{
	while (n) {
		if (w->left == 0) {
			size_t k = MR_CHUNK_HEADER - w->have < n ? MR_CHUNK_HEADER - w->have : n;
			memcpy(w->head + w->have, p, k);
			w->have += k, p += k, n -= k;
			if (w->have < MR_CHUNK_HEADER)
				return;
			w->have = 0;
			uint32_t pid = (uint32_t)w->head[4] | (uint32_t)w->head[5] << 8 |
				       (uint32_t)w->head[6] << 16 | (uint32_t)w->head[7] << 24;
			w->left = (size_t)(w->head[8] | w->head[9] << 8);
			w->mine = pid == w->pid;
			if (w->mine) {
				w->last_len = 0;
				uint16_t seq = (uint16_t)(w->head[10] | w->head[11] << 8);
				size_t units = w->left <= MR_PAYLOAD_MAX ? 1 : w->left / MR_PAYLOAD_MAX;
				w->next_seq = (uint16_t)(seq + units);
			}
			continue;
		}
		size_t k = w->left < n ? w->left : n;
		if (w->mine) {
			size_t room = sizeof(w->last) - w->last_len;
			memcpy(w->last + w->last_len, p, k < room ? k : room);
			w->last_len += k < room ? k : room;
		}
		w->left -= k, p += k, n -= k;
	}
}

/* Whether the program's last chunk is its trailer: the tag, then five
 * varints and nothing else. */
int watch_trailer(const struct watch *w)
{
	if (w->last_len < 6 || w->last[0] != MR_TAG_TRAILER)
		return 0;
	size_t i = 1;
	for (int v = 0; v < 5; v++) {
		int len = 0;
		while (i < w->last_len && (w->last[i] & 0x80) && len < 10)
			i++, len++;
		if (i >= w->last_len || len >= 10)
			return 0;
		i++;
	}
	return i == w->last_len;
}

int open_output(const char *path, int force)
{
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
		die(EXIT_USAGE, "'%s' is a symbolic link; not following it", path);
	/* with -f, truncated only once it is known to be ours (see below) */
	int flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (force ? 0 : O_EXCL);
	int fd = open(path, flags, 0644);
	if (fd < 0) {
		if (errno == EEXIST)
			die(EXIT_USAGE, "'%s' already exists (use -f to overwrite it)", path);
		if (errno == ELOOP)
			die(EXIT_USAGE, "'%s' is a symbolic link; not following it", path);
		die(EXIT_USAGE, "cannot create '%s': %s", path, strerror(errno));
	}
	/* -f over a file another user made (in /tmp, say) would write where
	 * they read: only a device or a FIFO of theirs is written to */
	if (force && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		if (st.st_uid != geteuid())
			die(EXIT_USAGE, "'%s' belongs to another user (uid %u); not overwriting it",
			    path, (unsigned)st.st_uid);
		if (ftruncate(fd, 0) < 0)
			die(EXIT_USAGE, "cannot truncate '%s': %s", path, strerror(errno));
	}
	return fd;
}

/* ---- running ------------------------------------------------------------ */

static pid_t child;
/* A pidfd of child (Linux 5.3+), readable once it has ended; -1: none. */
static int child_pidfd = -1;

/* The rescue area shared with the program's tracker (struct mr_rescue):
 * a memfd, its number here passed as MEMRAY_RESCUE. */
static int rescue_fd = -1;
static struct mr_rescue *rescue;

static void rescue_create(int quiet)
{
	int fd = (int)syscall(SYS_memfd_create, "memray-rescue", MFD_CLOEXEC);
	void *m = MAP_FAILED;
	if (fd >= 0 && ftruncate(fd, (off_t)sizeof(struct mr_rescue)) == 0)
		m = mmap(NULL, sizeof(struct mr_rescue), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		/* (ulimit -f below its size: EFBIG) */
		if (!quiet)
			warnmsg("no rescue area (%s): the last events of a program killed outright "
				"would be lost", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	rescue = m;
	rescue->magic = MR_RESCUE_MAGIC;
	rescue_fd = fd;
}

static volatile sig_atomic_t child_reaped;
/* Descriptors 0, 1 and 2 that were closed when memray-record started:
 * /dev/null stands in them for its own time, so that no pipe or memfd of
 * its own is made under them (and written to as standard output); the
 * program gets them closed, as they were given. */
static int std_closed[3];

static void hold_std(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		int n = open("/dev/null", fd ? O_WRONLY : O_RDONLY);
		if (n < 0) /* (no /dev: a descriptor nothing can be written to) */
			n = open("/", O_PATH);
		if (n == fd)
			std_closed[fd] = 1;
		else if (n >= 0)
			close(n);
	}
}

/* In the program, before exec: the ones given closed, closed again (but
 * where the program's own are put: keep[fd]). */
static void give_back_std(const int keep[3])
{
	for (int fd = 0; fd < 3; fd++)
		if (std_closed[fd] && !keep[fd])
			close(fd);
}

/* The stream to standard output, which must be there. */
static void stdout_open(void)
{
	if (std_closed[1])
		die(EXIT_USAGE, "standard output is closed: there is nowhere to write the stream "
		    "(give -o FILE)");
}
/* SIGCHLD as memray-record was started with: given back to the program.
 * memray-record itself needs it at its default, or a SIGCHLD ignored by
 * whoever started it would reap the program (and gdb, attaching) unseen:
 * its status lost, and its end never found. */
static struct sigaction chld_given;
/* SIGXFSZ likewise: memray-record ignores it, so that a limit of file
 * size (ulimit -f) cuts the output with EFBIG, said as a full disk is,
 * where the signal killed it and left the program running alone. */
static struct sigaction xfsz_given;
static volatile sig_atomic_t forwarded; /* the last signal passed on */
/* Signals memray-record was started with ignored (nohup's SIGHUP, the
 * SIGINT of a job a script put in the background), by bit: passed on all
 * the same (the program, which got them ignored too, may have chosen to
 * take them), but the recording is not ended by them; it goes on while
 * the program does. */
static volatile sig_atomic_t given_ignored;

/* A signal for memray-record goes to the program, which ends by it (or
 * not) and so ends the recording. One the terminal sent (Ctrl-C, Ctrl-\,
 * a hangup) went to the program too, and is not sent twice; nor is a
 * SIGINT or SIGQUIT from a process of the program's own process group
 * (timeout(1) and shells signal the whole group): a second SIGINT would
 * interrupt the program's handling of the first. */
static void forward(int sig, siginfo_t *info, void *ctx)
{
	(void)ctx;
	if (info && info->si_code == SI_KERNEL)
		return;
	if ((sig == SIGINT || sig == SIGQUIT) && info &&
	    (info->si_code == SI_USER || info->si_code == SI_QUEUE) && info->si_pid > 0 &&
	    getpgid(info->si_pid) == getpgrp())
		return;
	if (child > 0 && !child_reaped) {
		kill(child, sig);
		if (!((unsigned)given_ignored & 1u << sig))
			forwarded = sig;
	}
}

/* The tracker first in LD_PRELOAD, the user's value kept in
 * MEMRAY_LD_PRELOAD for the tracker to give back. */
static void preload_tracker(const char *tracker)
{
	const char *pre = getenv("LD_PRELOAD");
	if (pre && pre[0]) {
		setenv("MEMRAY_LD_PRELOAD", pre, 1);
		size_t n = strlen(tracker) + strlen(pre) + 2;
		char *both = xrealloc(NULL, n);
		snprintf(both, n, "%s:%s", tracker, pre);
		setenv("LD_PRELOAD", both, 1);
	} else {
		unsetenv("MEMRAY_LD_PRELOAD");
		setenv("LD_PRELOAD", tracker, 1);
	}
}

static void child_env(const char *tracker, int fd, int read_end, const struct opts *o)
{
	char buf[64];
	preload_tracker(tracker);
	snprintf(buf, sizeof(buf), "%d", fd);
	setenv("MEMRAY_FD", buf, 1);
	/* where a process that lost its descriptor opens the pipe again: this
	 * process's read end, open as long as anything is recorded */
	snprintf(buf, sizeof(buf), "%d:%d", (int)getppid(), read_end);
	setenv("MEMRAY_RECORDER", buf, 1);
	if (rescue_fd >= 0) {
		snprintf(buf, sizeof(buf), "%d", rescue_fd);
		setenv("MEMRAY_RESCUE", buf, 1);
	} else {
		unsetenv("MEMRAY_RESCUE");
	}
	snprintf(buf, sizeof(buf), "%d", (int)getpid());
	setenv("MEMRAY_PID", buf, 1);
	setenv("MEMRAY_NATIVE", o->native, 1);
	/* pymalloc hides small objects inside its arenas; with the system
	 * allocator every object is a malloc the tracker sees. */
	if (o->python_allocators)
		setenv("PYTHONMALLOC", "malloc", 1);
	snprintf(buf, sizeof(buf), "%ld", o->interval_ms * 1000);
	setenv("MEMRAY_INTERVAL_US", buf, 1);
	if (o->follow_fork)
		setenv("MEMRAY_FOLLOW", "1", 1);
	else
		unsetenv("MEMRAY_FOLLOW");
	unsetenv("MEMRAY_SAMPLE_BYTES");
	unsetenv("MEMRAY_SEED");
	if (o->sample_bytes) {
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)o->sample_bytes);
		setenv("MEMRAY_SAMPLE_BYTES", buf, 1);
	}
	if (o->seed) {
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)o->seed);
		setenv("MEMRAY_SEED", buf, 1);
	}
}

/* The program's exit status as a shell gives it; a program ended by a
 * signal is reported, with whether its stream is complete (the tracker
 * ends it with the signal for those it can catch: not SIGKILL). */
static int exit_status(int ws, const char *prog, int quiet, int complete)
{
	if (WIFEXITED(ws))
		return WEXITSTATUS(ws);
	if (WIFSIGNALED(ws)) {
		int sig = WTERMSIG(ws);
		if (quiet)
			;
		else if (complete)
			warnmsg("%s ended by signal %d (SIG%s); the stream is complete and says so",
				prog, sig, mr_signal_name(sig));
		else
			warnmsg("%s was killed by signal %d (SIG%s); the stream holds what was "
				"flushed before", prog, sig, mr_signal_name(sig));
		return 128 + sig;
	}
	return 1;
}

/* The tracker into tracker and PROGRAM's path into path (both PATH_MAX
 * bytes), or dies; 0, or the exit status of a program that cannot run.
 * *why says why nothing can be recorded in it, if so. */
static int locate(const char *prog, char *tracker, char *path, const char **why)
{
	if (find_tracker(tracker, PATH_MAX) < 0)
		die(EXIT_USAGE, "cannot find libmemray-tracker.so (set MEMRAY_TRACKER or "
		    "install memray-c with make install)");
	int rc = find_program(prog, path, PATH_MAX);
	*why = rc ? NULL : unrecordable(path);
	return rc;
}

/* memray-record --idle: PROGRAM runs in place of memray-record with the
 * tracker preloaded and recording nothing; the program records windows of
 * its own run through memray.h. The tracker puts LD_PRELOAD back as the
 * user gave it before PROGRAM's main runs. */
static int idle(const struct opts *o, char **prog_argv, int nargs)
{
	if (nargs < 1) {
		warnmsg("no program to run");
		usage(EXIT_USAGE);
	}
	if (o->output || o->compress || o->follow_fork || o->program_output ||
	    o->python_allocators || o->duration > 0)
		die(EXIT_USAGE, "--idle records nothing by itself: no %s", o->output ? "-o" :
		    o->compress ? "-z" : o->follow_fork ? "--follow-fork" : o->program_output ?
		    "--program-output" : o->python_allocators ? "--trace-python-allocators" :
		    "--duration");
	char tracker[PATH_MAX], path[PATH_MAX];
	const char *why;
	int rc = locate(prog_argv[0], tracker, path, &why);
	if (rc)
		return rc;
	if (why)
		warnmsg("'%s' %s: it will run, but the tracker cannot be loaded", prog_argv[0], why);
	preload_tracker(tracker);
	unsetenv("MEMRAY_FD");
	unsetenv("MEMRAY_RECORDER");
	unsetenv("MEMRAY_RESCUE");
	setenv("MEMRAY_IDLE", "1", 1);
	static const int none[3];
	give_back_std(none);
	/* (the signals as memray-record was given them, as for a program
	 * it records) */
	sigaction(SIGCHLD, &chld_given, NULL);
	sigaction(SIGXFSZ, &xfsz_given, NULL);
	execv(path, prog_argv);
	int e = errno;
	warnmsg("cannot run '%s': %s", prog_argv[0], strerror(e));
	return e == ENOENT ? 127 : 126;
}

/* memray-record --pid: the output chosen as for a program, then
 * attach.c does the rest. */
static int attach(const struct opts *o, int nargs)
{
	if (nargs > 0)
		die(EXIT_USAGE, "--pid records a running process: no PROGRAM to run");
	if (o->follow_fork || o->program_output || o->python_allocators)
		die(EXIT_USAGE, "--pid cannot be used with %s", o->follow_fork ? "--follow-fork"
		    : o->program_output ? "--program-output" : "--trace-python-allocators "
		    "(it must be set when Python starts)");
	struct attach_opts a = { o->pid, o->duration, o->native, o->interval_ms, o->quiet, o->force,
				 o->sample_bytes, o->seed };
	struct out out = { .fd = -1 };
	static char name[PATH_MAX];
	if (o->output && strcmp(o->output, "-") != 0) {
		out.name = o->output;
	} else if (o->output || !isatty(STDOUT_FILENO)) {
		stdout_open();
		out.to_stdout = 1;
		out.fd = STDOUT_FILENO;
		out.name = "standard output";
	} else {
		char comm[64] = "process", path[64];
		snprintf(path, sizeof(path), "/proc/%ld/comm", o->pid);
		FILE *f = fopen(path, "re");
		if (f) {
			if (fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n/")] = 0;
			fclose(f);
		}
		snprintf(name, sizeof(name), "memray-%s.%ld.bin", comm, o->pid);
		out.name = name;
	}
	out.compress = o->compress; /* started once the file is open */
	return attach_main(&a, &out);
}

/* ---- recording a program ------------------------------------------------- */

/* A program being recorded: where its stream goes, and the pipes between
 * it and this process. */
struct run {
	const struct opts *o;
	char **argv;          /* PROGRAM and its arguments */
	const char *why;      /* why nothing can be recorded in PROGRAM; NULL: it can */
	char tracker[PATH_MAX], path[PATH_MAX];
	struct out out;
	int to_stdout;        /* the stream goes to stdout */
	int default_name;     /* to memray-PROGRAM.PID.bin, once the pid is known */
	int created;          /* out.name was created here */
	char name[PATH_MAX];
	int prog_out;         /* --program-output's file; -1: none */
	int data[2];          /* the stream, from the tracker */
	int errp[2];          /* errno of a failed exec, from the child */
	int ws;               /* the program's wait status, once reaped */
	int lingering;        /* processes it started still held the stream */
	int gave_up;          /* the signal the recording ended by, the program running */
	char rescued[192];     /* what rescue_tail sent on, if anything */
	const char *rescue_said; /* why it could not */
	int go[2];            /* the child waits on it for the default name */
	struct watch watch;
};

/* Where the stream goes: -o FILE (opened now, unless nothing can be
 * recorded), stdout, or a default name once the program's pid is known. */
static void choose_output(struct run *r)
{
	const struct opts *o = r->o;
	if (o->output && strcmp(o->output, "-") != 0) {
		if (!r->why)
			r->out.fd = open_output(o->output, o->force);
		r->created = r->out.fd >= 0;
		r->out.name = o->output;
	} else if (o->output || !isatty(STDOUT_FILENO)) {
		if (!r->why)
			stdout_open();
		r->to_stdout = 1;
		r->out.fd = STDOUT_FILENO;
		r->out.name = "standard output";
	} else {
		r->default_name = !r->why;
	}
}

/* The program's own output, opened here so that a mistake is reported
 * before anything runs; never through a symbolic link. */
static void open_program_output(struct run *r)
{
	const char *file = r->o->program_output;
	r->prog_out = -1;
	if (!file)
		return;
	r->prog_out = open(file, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (r->prog_out < 0 && errno == ELOOP)
		die(EXIT_USAGE, "'%s' is a symbolic link; not following it", file);
	if (r->prog_out < 0)
		die(EXIT_USAGE, "cannot create '%s': %s", file, strerror(errno));
	struct stat ps;
	if (fstat(r->prog_out, &ps) == 0 && S_ISREG(ps.st_mode) && ftruncate(r->prog_out, 0) < 0)
		die(EXIT_USAGE, "cannot truncate '%s': %s", file, strerror(errno));
}

/* The path a file has or would have: its directory's real path and its
 * name, into buf; NULL when the directory cannot be resolved. */
static char *canonical(const char *path, char *buf, size_t n)
{
	char dir[PATH_MAX], real[PATH_MAX];
	const char *slash = strrchr(path, '/');
	const char *name = slash ? slash + 1 : path;
	if (slash)
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path) ? (int)(slash - path) : 1, path);
	else
		snprintf(dir, sizeof(dir), ".");
	if (!realpath(dir, real))
		return NULL;
	snprintf(buf, n, "%s/%s", real, name);
	return buf;
}

/* --program-output must not be the stream's own file (-o, or standard
 * output sent there): the program's output would be written over the
 * recording. Checked before either is opened, so that a file given with
 * -f is not emptied for nothing; by inode when both exist, by directory
 * and name when neither does. */
static void program_output_check(const struct opts *o)
{
	const char *po = o->program_output;
	if (!po)
		return;
	int to_file = o->output && strcmp(o->output, "-") != 0;
	struct stat a, b;
	int have_po = stat(po, &a) == 0;
	int same;
	if (to_file) {
		int have_out = stat(o->output, &b) == 0;
		char x[PATH_MAX + 256], y[PATH_MAX + 256];
		same = have_po && have_out ? a.st_dev == b.st_dev && a.st_ino == b.st_ino
		     : !have_po && !have_out && canonical(po, x, sizeof(x)) &&
		       canonical(o->output, y, sizeof(y)) && strcmp(x, y) == 0;
	} else if (o->output || !isatty(STDOUT_FILENO)) {
		same = have_po && fstat(STDOUT_FILENO, &b) == 0 && S_ISREG(b.st_mode) &&
		       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
	} else {
		return; /* a default name, made of the program's pid */
	}
	if (same)
		die(EXIT_USAGE, "--program-output '%s' is the file the stream is written to (%s)", po,
		    to_file ? "-o" : "standard output");
}

/* In the child: the program, with the tracker preloaded to write into the
 * data pipe; an exec that fails sends its errno up errp. */
__attribute__((noreturn)) static void exec_program(struct run *r)
{
	int read_end = r->data[0];
	close(r->data[0]);
	close(r->errp[0]);
	close(r->go[1]);
	int keep[3] = { 0, 0, 0 };
	if (r->prog_out >= 0) {
		dup2(r->prog_out, STDOUT_FILENO);
		dup2(r->prog_out, STDERR_FILENO);
		keep[1] = keep[2] = 1;
	} else if (r->to_stdout && !r->why) {
		/* (stderr given closed: the program's stdout is closed too) */
		if (std_closed[2])
			close(STDOUT_FILENO);
		else
			dup2(STDERR_FILENO, STDOUT_FILENO);
		keep[1] = 1;
	}
	give_back_std(keep);
	if (!r->why) {
		/* (without close-on-exec; never under 0, 1 or 2, which the
		 * program would write to before the tracker moves it, or
		 * without it when the tracker is not loaded after all) */
		int fd = fcntl(r->data[1], F_DUPFD, 3);
		child_env(r->tracker, fd, read_end, r->o);
	}
	char ok;
	if (r->default_name && read(r->go[0], &ok, 1) != 1)
		_exit(127);
	sigaction(SIGCHLD, &chld_given, NULL);
	sigaction(SIGXFSZ, &xfsz_given, NULL);
	execv(r->path, r->argv);
	int e = errno;
	if (write(r->errp[1], &e, sizeof(e)) < 0)
		_exit(127);
	_exit(127);
}

/* Forks the program (child) with its pipes; this process passes the
 * signals that would end it on to the program (forward). */
static void start_program(struct run *r)
{
	rescue_create(r->o->quiet);
	if (pipe2(r->data, O_CLOEXEC) < 0 || pipe2(r->errp, O_CLOEXEC) < 0 ||
	    pipe2(r->go, O_CLOEXEC) < 0)
		die(EXIT_USAGE, "cannot create a pipe: %s", strerror(errno));
	fcntl(r->data[0], F_SETPIPE_SZ, 1 << 20);

	child = fork();
	if (child < 0)
		die(EXIT_USAGE, "cannot fork: %s", strerror(errno));
	if (child == 0)
		exec_program(r);
#ifdef SYS_pidfd_open
	child_pidfd = (int)syscall(SYS_pidfd_open, child, 0); /* (close-on-exec) */
#endif
	close(r->data[1]);
	close(r->errp[1]);
	close(r->go[0]);
	if (r->prog_out >= 0)
		close(r->prog_out);
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = forward;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	/* (which were given ignored, all of them before forward can run) */
	int sigs[] = { SIGINT, SIGQUIT, SIGTERM, SIGHUP };
	unsigned ignored = 0;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct sigaction given;
		if (sigaction(sigs[i], NULL, &given) == 0 && given.sa_handler == SIG_IGN)
			ignored |= 1u << sigs[i];
	}
	given_ignored = (sig_atomic_t)ignored;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

/* The default output, memray-PROGRAM.PID.bin, now that the pid is known;
 * then the child may exec. */
static void open_default_output(struct run *r)
{
	if (r->default_name) {
		char *base = basename(r->argv[0]);
		snprintf(r->name, sizeof(r->name), "memray-%s.%d.bin", base, (int)child);
		r->out.fd = open_output(r->name, r->o->force);
		r->created = 1;
		r->out.name = r->name;
		if (write(r->go[1], "g", 1) != 1)
			die(EXIT_USAGE, "cannot start '%s'", r->argv[0]);
	}
	close(r->go[1]);
}

/* Whether the program could not be run: its exit status as a shell's
 * (126 or 127, said why), or -1 when it runs. */
static int exec_failed(struct run *r)
{
	int e = 0;
	if (read(r->errp[0], &e, sizeof(e)) == (ssize_t)sizeof(e)) {
		waitpid(child, NULL, 0);
		if (r->created)
			unlink(r->out.name);
		warnmsg("cannot run '%s': %s", r->argv[0], strerror(e));
		return e == ENOENT ? 127 : 126;
	}
	close(r->errp[0]);
	return -1;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* How long processes the program started may go on writing the stream
 * after the program itself has ended. */
#define LINGER_S 1.0
/* How long the program has to end after a signal passed on to it, before
 * memray-record ends by it all the same. */
#define SIGNAL_GRACE_S 2.0

/* Whether the program has ended: reaped then, its wait status in r->ws. */
static int program_ended(struct run *r)
{
	if (child_reaped)
		return 1;
	pid_t k = waitpid(child, &r->ws, WNOHANG);
	if (k == child) {
		child_reaped = 1;
		return 1;
	}
	return 0;
}

/* Waits up to ms milliseconds, or until the program ends if that is
 * sooner: the data pipe's end mostly comes just before the program can be
 * reaped (a process closes its descriptors before it is a zombie), and a
 * plain nap there held every recording back by its length. */
static void nap_unless_ended(int ms)
{
	if (child_pidfd >= 0) {
		struct pollfd pf = { child_pidfd, POLLIN, 0 };
		poll(&pf, 1, ms);
		return;
	}
	struct timespec t = { 0, (long)ms * 1000000 };
	nanosleep(&t, NULL);
}

/* The rescue's writer: whole chunks on to the output, as if they had
 * come through the pipe. */
static int rescue_sink(void *ctx, const uint8_t *chunk, size_t len)
{
	struct run *r = ctx;
	r->out.bytes_in += len;
	watch_bytes(&r->watch, chunk, len);
	out_stream(&r->out, chunk, len);
	return 0;
}

static int by_seq(const void *x, const void *y)
{
	const struct mr_orec *a = *(const struct mr_orec *const *)x, *b = *(const struct mr_orec *const *)y;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* The events the program's threads had numbered and left in the area's
 * rings (lib/tracker/order.c): written after the rest, in their numbers'
 * order from the state's next_event, against the writer's registers as
 * the state has them, up to the first number no ring holds. A ring's
 * events below its tail are whole, but for the oldest slot, which its
 * thread may have been writing again (unless the ring was full). Returns how many were written. */
static size_t rescue_rings(struct mr_writer *w, const struct mr_rescue *a,
			   const struct mr_rescue_state *st)
{
	static const struct mr_orec *ev[MR_RESCUE_RINGS * MR_ORING];
	size_t n = 0;
	if (!st->rings)
		return 0;
	for (int i = 0; i < MR_RESCUE_RINGS; i++) {
		const struct mr_oring *r = &a->ring[i];
		/* (a full ring's thread was writing no slot) */
		uint32_t tail = r->tail, k = tail - r->head >= MR_ORING ? MR_ORING
					   : tail < MR_ORING - 1   ? tail
								   : MR_ORING - 1;
		for (uint32_t j = tail - k; j != tail; j++) {
			const struct mr_orec *e = &r->e[j % MR_ORING];
			if (e->seq >= st->next_event)
				ev[n++] = e;
		}
	}
	qsort(ev, n, sizeof(ev[0]), by_seq);
	w->last_addr = st->last_addr;
	w->alloc_addr = st->alloc_addr;
	w->next_node = st->next_node;
	w->last_age = st->last_age;
	w->cur_thread = st->cur_thread;
	w->last_stack = UINT32_MAX; /* (the first allocation names its stack) */
	size_t written = 0;
	uint64_t next = st->next_event;
	for (size_t i = 0; i < n && ev[i]->seq == next; i++, next++) {
		const struct mr_orec *e = ev[i];
		if (e->kind != MR_OREC_ALLOC && e->kind != MR_OREC_FREE)
			continue;
		mr_w_switch(w, e->thread);
		if (e->kind == MR_OREC_ALLOC)
			mr_w_alloc(w, e->allocator, e->addr, e->size, e->stack);
		else
			mr_w_free(w, e->allocator, e->addr, e->size);
		written++;
	}
	return written;
}

/* The program has ended without its stream's end (a raw exit_group, as Go
 * does, or a signal no stand-in could catch, such as SIGKILL): what its
 * tracker held in the rescue area and had not sent goes on to the output,
 * then a SIGNAL record if a signal ended it, then the trailer. Chunks the
 * pipe already brought are known by their sequence numbers and skipped.
 * Nothing is made up when the tracker was in the middle of a record. */
static void rescue_tail(struct run *r)
{
	struct mr_rescue *a = rescue;
	if (!a || !child_reaped || !r->out.bytes_in || watch_trailer(&r->watch) ||
	    a->pid != (uint32_t)child || a->ended)
		return;
	if (a->busy) {
		r->rescue_said = "the program ended while its tracker was writing: its last records are lost";
		return;
	}
	if (r->watch.have || r->watch.left) {
		/* a write cut short by the end: nothing can follow a part of
		 * a chunk */
		r->rescue_said = "the program ended in the middle of a write: the stream stops there";
		return;
	}
	const struct mr_rescue_state *st = &a->st[a->cur & 1];
	uint16_t next = r->watch.next_seq;
	size_t off = 0, sent = 0;
	while (off + MR_CHUNK_HEADER <= st->batch_len && off + MR_CHUNK_HEADER <= sizeof(a->batch)) {
		const uint8_t *c = a->batch + off;
		uint32_t pid = (uint32_t)c[4] | (uint32_t)c[5] << 8 | (uint32_t)c[6] << 16 |
			       (uint32_t)c[7] << 24;
		size_t len = (size_t)(c[8] | c[9] << 8);
		uint16_t seq = (uint16_t)(c[10] | c[11] << 8);
		if (memcmp(c, MR_MAGIC, MR_MAGIC_LEN) != 0 || pid != a->pid || !len ||
		    len > MR_PAYLOAD_MAX || off + MR_CHUNK_HEADER + len > st->batch_len)
			break;
		if ((uint16_t)(seq - next) < 0x8000) { /* not through the pipe yet */
			rescue_sink(r, c, MR_CHUNK_HEADER + len);
			sent += MR_CHUNK_HEADER + len;
			next = (uint16_t)(seq + 1);
		}
		off += MR_CHUNK_HEADER + len;
	}
	static struct mr_writer w;
	mr_writer_init(&w, a->pid, rescue_sink, r);
	w.seq = next;
	if (st->seq == next && st->chunk_len > MR_CHUNK_HEADER && st->chunk_len <= MR_CHUNK_MAX) {
		memcpy(w.chunk + MR_CHUNK_HEADER, a->chunk[st->which & 1] + MR_CHUNK_HEADER,
		       st->chunk_len - MR_CHUNK_HEADER);
		w.len = st->chunk_len;
		sent += st->chunk_len;
	}
	w.n_records = st->n_records;
	w.n_allocs = st->n_allocs;
	w.n_frees = st->n_frees;
	w.bytes_allocated = st->bytes_allocated;
	size_t events = rescue_rings(&w, a, st);
	if (WIFSIGNALED(r->ws))
		mr_w_signal(&w, WTERMSIG(r->ws));
	mr_w_trailer(&w, st->time_us);
	if (sent && events)
		snprintf(r->rescued, sizeof(r->rescued), "the %zu bytes of records its tracker had not"
			 " sent, the %zu events its threads had not written, and the stream's end",
			 sent, events);
	else if (events)
		snprintf(r->rescued, sizeof(r->rescued), "the %zu events its threads had not written,"
			 " and the stream's end", events);
	else if (sent)
		snprintf(r->rescued, sizeof(r->rescued), "the %zu bytes of records its tracker had not"
			 " sent, and the stream's end", sent);
	else
		snprintf(r->rescued, sizeof(r->rescued), "the stream's end");
}

/* Relays the stream from the data pipe to the output until the last
 * writer closes it; or, once the program has ended, for LINGER_S more at
 * most: processes it left running (a job put in the background, a
 * daemon) would otherwise keep memray-record, and the program's zombie,
 * waiting for them. Their writes after that find the pipe closed, which
 * only stops their recording. */
static void relay(struct run *r)
{
	struct out *out = &r->out;
	if (r->o->compress && out->fd >= 0) {
		out->compress = r->o->compress;
		out_start(out);
	}
	if (out->fd < 0)
		out->cut = 1;
	static char buf[1 << 16];
	r->watch.pid = (uint32_t)child;
	double checked = now_s(), until = 0, signalled = 0;
	for (;;) {
		struct pollfd pf = { r->data[0], POLLIN, 0 };
		double now = now_s();
		if (!until && now - checked >= 0.1) {
			checked = now;
			if (program_ended(r))
				until = now + LINGER_S;
		}
		if (!until && forwarded && !signalled)
			signalled = now;
		if (!until && signalled && now - signalled >= SIGNAL_GRACE_S) {
			/* it ignores the signal, or takes its time: the recording
			 * ends by the signal all the same, the program left running */
			r->gave_up = forwarded;
			break;
		}
		if (until && now >= until) {
			/* what is in the pipe now, then no more (a writer
			 * that keeps it full gets half a second) */
			if (poll(&pf, 1, 0) <= 0 || now >= until + 0.5) {
				r->lingering = 1;
				break;
			}
		} else if (poll(&pf, 1, until ? (int)((until - now) * 1000) + 1 : 100) <= 0) {
			continue; /* (a signal, EINTR: the times are looked at again) */
		}
		ssize_t k = read(r->data[0], buf, sizeof(buf));
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k == 0 && !until && !program_ended(r)) {
			/* every writer let go, but the program runs on: one that
			 * closed its descriptors opens the pipe again through this
			 * process's end when it next writes */
			nap_unless_ended(10);
			continue;
		}
		if (k <= 0)
			break;
		out->bytes_in += (unsigned long long)k;
		watch_bytes(&r->watch, (const uint8_t *)buf, (size_t)k);
		out_stream(out, buf, (size_t)k);
	}
	if (!r->gave_up) {
		while (!child_reaped && waitpid(child, &r->ws, 0) < 0 && errno == EINTR)
			;
		child_reaped = 1;
		rescue_tail(r);
	}
	if (out->rc)
		rechunk_end(out->rc, out);
	if (out->compress) {
		out_data(out, NULL, 0, 1);
		out_end(out);
	}
}

/* Says how the recording went, the program having ended with wait
 * status ws; memray-record's exit status (the program's). */
static int report(struct run *r, int ws)
{
	struct out *out = &r->out;
	const char *why = r->why, *prog = r->argv[0];
	/* A program that exited by itself ends its stream with a trailer;
	 * without one, it closed the stream's descriptor (a daemon closing
	 * everything) or exec'd a program that cannot load the tracker. */
	int closed_early = !why && !out->err && out->bytes_in > 0 && WIFEXITED(ws) &&
			   !watch_trailer(&r->watch);
	int status = exit_status(ws, prog, r->o->quiet, !why && watch_trailer(&r->watch));
	if (out->fd >= 0 && !r->to_stdout && close(out->fd) < 0 && !out->err)
		out->err = errno;
	if (r->rescued[0] && !r->o->quiet)
		warnmsg("'%s' ended %s, not by exit: memray-record wrote %s",
			prog, WIFSIGNALED(ws) ? "by a signal the tracker cannot catch" :
			"without the C library's exit (through the exit_group system call, as Go"
			" programs do)", r->rescued);
	if (r->rescue_said)
		warnmsg("'%s': %s", prog, r->rescue_said);
	if (out->err) {
		if (out->err == EPIPE)
			warnmsg("the stream was cut: %s went away", out->name);
		else
			warnmsg("the stream in %s is incomplete: %s", out->name, strerror(out->err));
	} else if (r->lingering) {
		warnmsg("'%s' has ended, but processes it started still hold the stream: %s"
			" ends here, %.0f s later, without what they write from now on", prog,
			out->name, LINGER_S);
	} else if (closed_early) {
		warnmsg("the recording of '%s' stopped before it ended (it closed the stream's"
			" descriptor, or exec'd a program that cannot load the tracker):"
			" %s has no trailer", prog, out->name);
	} else if (!why && out->bytes_in == 0) {
		warnmsg("nothing was recorded: '%s' did not load the tracker", prog);
	} else if (!why && !r->o->quiet && !r->to_stdout) {
		char h[16];
		warnmsg("wrote %s (%s)", out->name, human_size(h, out->bytes_out));
	}
	return status;
}

/* Runs PROGRAM (prog_argv) recorded; its exit status. */
static int record(const struct opts *o, char **prog_argv)
{
	static struct run run;
	struct run *r = &run;
	r->o = o;
	r->argv = prog_argv;
	r->out.fd = -1;
	int rc = locate(prog_argv[0], r->tracker, r->path, &r->why);
	if (rc)
		return rc;
	if (r->why)
		warnmsg("'%s' %s: it will run, but nothing can be recorded", prog_argv[0], r->why);
	program_output_check(o);
	choose_output(r);
	open_program_output(r);
	start_program(r);
	open_default_output(r);
	rc = exec_failed(r);
	if (rc >= 0)
		return rc;
	relay(r);
	close(r->data[0]);
	if (r->gave_up) {
		struct out *out = &r->out;
		if (out->fd >= 0 && !r->to_stdout)
			close(out->fd);
		warnmsg("'%s' is still running %.0f s after SIG%s was passed on to it: the"
			" recording ends here, and %s holds what came before", r->argv[0],
			SIGNAL_GRACE_S, mr_signal_name(r->gave_up), out->name);
		return 128 + r->gave_up;
	}
	while (!child_reaped && waitpid(child, &r->ws, 0) < 0 && errno == EINTR)
		;
	child_reaped = 1;
	return report(r, r->ws);
}

/* ---- options -------------------------------------------------------------- */

/* Reads the options into o (exits for --help and --version); optind is
 * left at PROGRAM. */
static void parse_options(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ "compress", optional_argument, NULL, 'z' },
		{ "native", no_argument, NULL, 'N' },
		{ "no-native", no_argument, NULL, 'n' },
		{ "interval", required_argument, NULL, 'i' },
		{ "trace-python-allocators", no_argument, NULL, 'P' },
		{ "follow-fork", no_argument, NULL, 'F' },
		{ "program-output", required_argument, NULL, 'O' },
		{ "pid", required_argument, NULL, 'p' },
		{ "duration", required_argument, NULL, 'D' },
		{ "idle", no_argument, NULL, 'I' },
		{ "sample-bytes", required_argument, NULL, 'S' },
		{ "seed", required_argument, NULL, 's' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct opts){ NULL, 0, 0, 0, "auto", 0, 10, 0, NULL, -1, 0, 0, 0, 0 };
	int c;
	char *end;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:o:fzqhp:", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': o->output = optarg; break;
		case 'f': o->force = 1; break;
		case 'z':
			if (!optarg || strcmp(optarg, "zstd") == 0)
				o->compress = COMPRESS_ZSTD;
			else if (strcmp(optarg, "gzip") == 0)
				o->compress = COMPRESS_GZIP;
			else
				die(EXIT_USAGE, "invalid --compress '%s': expected zstd or gzip", optarg);
			break;
		case 'N': o->native = "1"; break;
		case 'n': o->native = "0"; break;
		case 'q': o->quiet = 1; break;
		case 'P': o->python_allocators = 1; break;
		case 'F': o->follow_fork = 1; break;
		case 'O': o->program_output = optarg; break;
		case 'p': o->pid = pid_arg("--pid", optarg); break;
		case 'I': o->idle = 1; break;
		case 'D':
			o->duration = strtod(optarg, &end);
			if (*end || end == optarg || !(o->duration > 0) || o->duration > 1e7)
				die(EXIT_USAGE, "invalid --duration '%s': expected seconds, more than 0 and at most 1e7 (about 115 days)",
				    optarg);
			break;
		case 'i':
			o->interval_ms = strtol(optarg, &end, 10);
			if (*end || end == optarg || o->interval_ms < 1 || o->interval_ms > 3600000)
				die(EXIT_USAGE, "invalid --interval '%s': expected milliseconds "
				    "from 1 to 3600000", optarg);
			break;
		case 'S':
			if (parse_size(optarg, &o->sample_bytes) < 0 || o->sample_bytes < 1 ||
			    o->sample_bytes > MR_SAMPLE_MAX)
				die(EXIT_USAGE, "invalid --sample-bytes '%s': expected a size from 1 "
				    "byte to 1GiB, like 512K", optarg);
			break;
		case 's':
			errno = 0;
			o->seed = strtoull(optarg, &end, 10);
			if (*end || end == optarg || errno || o->seed == 0 || optarg[0] == '-')
				die(EXIT_USAGE, "invalid --seed '%s': expected a positive integer",
				    optarg);
			break;
		case 'h': usage(EXIT_OK); break;
		case 'V': version_exit();
		default: bad_option(c, argv[optind - 1]); usage(EXIT_USAGE);
		}
	}
}

int main(int argc, char **argv)
{
	progname = "memray-record";
	hold_std();
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigaction(SIGCHLD, &dfl, &chld_given);
	struct sigaction ign = { .sa_handler = SIG_IGN };
	sigaction(SIGXFSZ, &ign, &xfsz_given);
	struct opts o;
	parse_options(argc, argv, &o);
	if (o.pid >= 0 && o.idle)
		die(EXIT_USAGE, "--idle runs a program: it cannot be used with --pid");
	if (o.seed && !o.sample_bytes)
		die(EXIT_USAGE, "--seed goes with --sample-bytes");
	if (o.idle && o.sample_bytes)
		die(EXIT_USAGE, "--idle records nothing: --sample-bytes cannot be used with it");
	if (o.pid >= 0)
		return attach(&o, argc - optind);
	if (o.idle)
		return idle(&o, argv + optind, argc - optind);
	if (o.duration > 0)
		die(EXIT_USAGE, "--duration goes with --pid (a program run by memray-record is "
		    "recorded until it ends)");
	if (optind >= argc) {
		warnmsg("no program to run");
		usage(EXIT_USAGE);
	}
	return record(&o, argv + optind);
}
