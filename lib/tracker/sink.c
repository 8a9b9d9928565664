/*
 * sink.c - where the stream goes: the one lock every record is written
 * under, the writer, and its sink, which gathers whole chunks into writes
 * to the descriptor memray-record passed (adopted here, out of the
 * program's way).
 *
 * Owns: lock_word, lock_owner, holding, deferred_sig, writer, out_fd (and
 * its identity), follow, the batch.
 * Calls: set_active (sample.c) when a write fails and recording stops.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int lock_word;
int *lock_owner;
__thread int holding __attribute__((tls_model("initial-exec")));

static long futex(int op, int val, const struct timespec *timeout)
{
	return syscall(SYS_futex, &lock_word, op, val, timeout, NULL, 0);
}

/* The lock is held: mark it waited for, and sleep until it is let go
 * (Drepper's "Futexes Are Tricky", its second mutex). The futex calls
 * fail with EAGAIN or EINTR as a matter of course; the program's errno is
 * kept (free() must not change it, as glibc's own lock does not). */
void lock_wait(void)
{
	/* a record takes well under a microsecond: spin a little first, as
	 * glibc's adaptive mutex does, before sleeping */
	for (int i = 0; i < 100; i++) {
		__builtin_ia32_pause();
		if (__atomic_load_n(&lock_word, __ATOMIC_RELAXED) == 0 && lock_try())
			return;
	}
	int e = errno;
	while (__atomic_exchange_n(&lock_word, 2, __ATOMIC_ACQUIRE) != 0)
		futex(FUTEX_WAIT_PRIVATE, 2, NULL);
	errno = e;
}

void lock_wake(void)
{
	int e = errno;
	futex(FUTEX_WAKE_PRIVATE, 1, NULL);
	errno = e;
}

int lock_timed(const struct timespec *deadline)
{
	if (lock_try()) {
		__atomic_store_n(&lock_owner, &holding, __ATOMIC_RELAXED);
		order_close();
		return 0;
	}
	/* then as lock_wait's sleep: marked waited for each time, since others
	 * may sleep too */
	int e = errno, rc = 0;
	while (__atomic_exchange_n(&lock_word, 2, __ATOMIC_ACQUIRE) != 0) {
		struct timespec now, left;
		clock_gettime(CLOCK_MONOTONIC, &now);
		left.tv_sec = deadline->tv_sec - now.tv_sec;
		left.tv_nsec = deadline->tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0) {
			left.tv_nsec += 1000000000L;
			left.tv_sec--;
		}
		if (left.tv_sec < 0) {
			rc = -1;
			break;
		}
		futex(FUTEX_WAIT_PRIVATE, 2, &left);
	}
	errno = e;
	if (rc == 0) {
		__atomic_store_n(&lock_owner, &holding, __ATOMIC_RELAXED);
		order_close();
	}
	return rc;
}

__thread int deferred_sig __attribute__((tls_model("initial-exec")));

__attribute__((noinline, cold)) void raise_deferred(void)
{
	int sig = deferred_sig;
	deferred_sig = 0;
	syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
}

struct mr_writer writer;
int out_fd = -1;
/* memray-record's pid and the number of its end of the pipe
 * (MEMRAY_RECORDER): open for as long as anything is recorded. */
static int recorder_pid = -1, recorder_fd = -1;
dev_t out_dev;
ino_t out_ino;

/* Chunks are gathered into one write of up to BATCH bytes: one system
 * call and one wake-up of memray-record per 64 KiB, not per chunk; with
 * --follow-fork each chunk is written at once. */
int follow; /* MEMRAY_FOLLOW: children are recorded too */
#define BATCH MR_RESCUE_BATCH
static uint8_t batch[BATCH];
size_t batch_len;
uint32_t batch_gen; /* batches let go of (written, or dropped) */
static uint16_t batch_last_seq; /* the sequence number and length of the */
static size_t batch_last_len;   /* batch's last chunk */

/* ---- the rescue area (see struct mr_rescue) ------------------------------ */

static struct rescue_mirror rm_none; /* no area */
struct rescue_mirror *rmp = &rm_none;
static struct mr_rescue *mapped; /* the area, as mapped (see rescue_forget) */

static char rescue_spec[24]; /* MEMRAY_RESCUE, as it was given */

/* MEMRAY_RESCUE's value for an exec'd image, into buf; 0 if none. */
int rescue_env(char *buf, size_t n)
{
	if (!rmp->area)
		return 0;
	snprintf(buf, n, "%s", rescue_spec);
	return 1;
}

/* Maps the rescue area memray-record made (MEMRAY_RESCUE: its descriptor
 * number there), for the process it started: opened through its
 * /proc/PID/fd, so no descriptor stays here. Before stream_start, whose
 * rescue_attach says nothing of it is whole yet. */
void rescue_open(const char *spec)
{
	char *end;
	long fd = spec ? strtol(spec, &end, 10) : -1;
	if (fd < 0 || *end || recorder_pid < 0)
		return;
	/* the mirror's page, zeroed in a child made by fork; where it cannot
	 * be (a kernel before 4.14), no rescue: a child made past the fork
	 * handlers would write into the area, and a stream cut short is
	 * better than a wrong one */
	struct rescue_mirror *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return;
	if (madvise(m, 4096, MADV_WIPEONFORK) != 0) {
		munmap(m, 4096);
		return;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd/%ld", recorder_pid, fd);
	int k = quiet_open(path, O_RDWR | O_NOCTTY);
	if (k < 0) {
		munmap(m, 4096);
		return;
	}
	struct stat st;
	void *p = MAP_FAILED;
	if (fstat(k, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= (off_t)sizeof(struct mr_rescue))
		p = mmap(NULL, sizeof(struct mr_rescue), PROT_READ | PROT_WRITE, MAP_SHARED, k, 0);
	close(k);
	if (p == MAP_FAILED) {
		munmap(m, 4096);
		return;
	}
	struct mr_rescue *a = p;
	if (a->magic != MR_RESCUE_MAGIC) {
		munmap(p, sizeof(*a));
		munmap(m, 4096);
		return;
	}
	a->busy = 1;
	a->pid = (uint32_t)getpid();
	a->ended = 0;
	/* (an exec'd image numbers its events from 0 again) */
	for (int i = 0; i < MR_RESCUE_RINGS; i++)
		a->ring[i].tail = a->ring[i].head = 0;
	m->k = a->cur & 1;
	m->cur = &a->st[m->k];
	m->other = &a->st[!m->k];
	m->chunk = a->chunk[m->cur->which & 1];
	m->batch_gen = batch_gen - 1; /* the first commit copies it all */
	m->area = a;
	mapped = a;
	rmp = m;
	snprintf(rescue_spec, sizeof(rescue_spec), "%ld", fd);
}

/* A fresh writer (after mr_writer_init): nothing of the area is whole
 * until the first commit, which copies it all. */
void rescue_attach(void)
{
	struct rescue_mirror *m = rmp;
	if (!m->area)
		return;
	m->area->busy = 1;
	struct mr_rescue_state *st = m->cur;
	st->chunk_len = 0;
	st->batch_len = 0;
	st->batch_gen = m->batch_gen = batch_gen - 1;
}

/* A forked child lets go of its parent's rescue area at once (its mirror
 * was zeroed by the fork already, but for kernels before 4.14). */
void rescue_forget(void)
{
	rmp->area = NULL;
	if (!mapped)
		return;
	munmap(mapped, sizeof(*mapped));
	mapped = NULL;
}

/* Makes the other state, written in full, the current one. */
static void switch_state(struct rescue_mirror *rm)
{
	struct mr_rescue_state *n = rm->other;
	/* (the process may end at any point: the state before the switch) */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	__atomic_store_n(&rm->area->cur, rm->k ^ 1, __ATOMIC_RELAXED);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	rm->other = rm->cur;
	rm->cur = n;
	rm->k ^= 1;
}

/* rescue_commit's rare part: the batch grew (a chunk was filled) or was
 * let go since the last commit, or the open chunk was written and begun
 * again. No byte the current state names is changed (see struct
 * mr_rescue); the area is whole after it. */
void rescue_commit_slow(struct rescue_mirror *rm)
{
	struct mr_rescue *a = rm->area;
	struct mr_rescue_state *o = rm->cur;
	if (o->batch_gen != batch_gen || o->batch_len > batch_len) {
		/* the batch it names was let go, written: a state without it
		 * first, so that its bytes may be overwritten */
		struct mr_rescue_state *m = rm->other;
		*m = *o;
		m->batch_len = 0;
		m->batch_gen = batch_gen;
		switch_state(rm);
		o = m;
	}
	struct mr_rescue_state *n = rm->other;
	if (batch_len > o->batch_len)
		memcpy(a->batch + o->batch_len, batch + o->batch_len, batch_len - o->batch_len);
	/* a new chunk goes to the other buffer */
	unsigned b = o->which & 1;
	size_t cfrom = o->chunk_len;
	if (o->seq != writer.seq || cfrom < MR_CHUNK_HEADER || cfrom > writer.len) {
		b = !b;
		cfrom = MR_CHUNK_HEADER;
	}
	if (writer.len > cfrom)
		memcpy(a->chunk[b] + cfrom, writer.chunk + cfrom, writer.len - cfrom);
	n->batch_gen = batch_gen;
	n->batch_len = (uint32_t)batch_len;
	n->seq = writer.seq;
	n->which = (uint16_t)b;
	n->chunk_len = (uint32_t)writer.len;
	memcpy(&n->n_records, &writer.n_records, 4 * sizeof(uint64_t));
	n->time_us = writer.last_time_us;
	rescue_regs(n);
	switch_state(rm);
	/* the state no longer named says the same of the batch and the chunk
	 * from now on: a fast commit writes only the length and counts */
	memcpy(o, n, 16);
	rm->chunk = a->chunk[b];
	rm->chunk_len = n->chunk_len;
	rm->batch_len = n->batch_len;
	rm->batch_gen = n->batch_gen;
	rm->seq = n->seq;
	__atomic_store_n(&a->busy, 0, __ATOMIC_RELAXED);
}

/* Writes the batch. SIGPIPE is blocked around the write so that a reader
 * that went away never kills the program; a failure stops recording. */
/* With a signal waiting: whether the stream's pipe takes a chunk without
 * blocking before the deadline (set 2 s ahead at the first call). */
static int wait_writable(struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!deadline->tv_sec && !deadline->tv_nsec) {
		*deadline = now;
		deadline->tv_sec += 2;
	}
	for (;;) {
		long left = (deadline->tv_sec - now.tv_sec) * 1000 +
			    (deadline->tv_nsec - now.tv_nsec) / 1000000;
		if (left <= 0)
			return 0;
		struct pollfd p = { out_fd, POLLOUT, 0 };
		int r = poll(&p, 1, (int)left);
		if (r > 0)
			return !(p.revents & (POLLERR | POLLNVAL)) || (p.revents & POLLOUT);
		if (r == 0 || errno != EINTR)
			return 0;
		clock_gettime(CLOCK_MONOTONIC, &now);
	}
}

/* What the pipe gets must never be ahead of the rescue area, which
 * memray-record goes on from when the process ends suddenly: it sends on
 * the area's chunks the pipe did not bring, then the stream's end with
 * the area's counts. The batch is ahead when its last chunk comes after
 * the area's open one, or is that chunk but longer than the area's copy
 * (a chunk that ended inside a record, or records added since the last
 * copy): the area is then marked not whole until the next copy. */
static void rescue_behind(void)
{
	struct rescue_mirror *m = rmp;
	uint16_t d = (uint16_t)(batch_last_seq - m->seq);
	if (d != 0 ? d < 0x8000 : m->chunk_len != batch_last_len)
		m->area->busy = 1;
}

int batch_write(void)
{
	if (batch_len == 0 || out_fd < 0)
		return 0;
	if (rmp->area)
		rescue_behind();
	/* a child made without the fork handlers (_Fork, a raw clone) would
	 * write under its parent's pid and sequence numbers */
	if (follow && getpid() != my_pid) {
		rescue_forget(); /* its parent's */
		set_active(0);
		out_fd = -1;
		batch_len = 0;
		batch_gen++;
		return -1;
	}
	/* A program that closed every descriptor may since have opened a file
	 * of its own under our number: never write into it, but open the
	 * pipe again under another number (the records go on). */
	if (!fd_is_ours(out_fd) && (out_fd = reopen_pipe(-1)) < 0) {
		set_active(0);
		batch_len = 0;
		batch_gen++;
		if (rmp->area)
			rmp->area->ended = 1; /* the recording stops here, said so */
		return -1;
	}
	sigset_t pipe_set, old, pending;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	sigpending(&pending);
	int was_pending = sigismember(&pending, SIGPIPE);
	size_t done = 0;
	ssize_t k = 0;
	struct timespec deadline = { 0, 0 };
	while (done < batch_len) {
		size_t want = batch_len - done;
		/* A signal that is to end the process waits for this write (it
		 * cut a blocked write short): the rest goes as fast as the
		 * reader takes it, for 2 s at most, in pieces that never block
		 * (a slow reader, the machine busy, gets it all; one that stopped
		 * reading does not keep the signal from ending the program, and
		 * the stream is given up). */
		if (deferred_sig && !wait_writable(&deadline)) {
			k = -1;
			break;
		}
		if (deferred_sig && want > MR_CHUNK_MAX)
			want = MR_CHUNK_MAX;
		k = write(out_fd, batch + done, want);
		if (k > 0)
			done += (size_t)k;
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
	}
	if (k < 0 && errno == EPIPE && !was_pending) {
		struct timespec zero = { 0, 0 };
		sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	int short_write = done < batch_len;
	batch_len = 0;
	batch_gen++;
	if (short_write) {
		set_active(0);
		if (rmp->area)
			rmp->area->ended = 1;
		return -1;
	}
	return 0;
}

/* The writer's sink: called with the lock held, one whole chunk. A chunk
 * that ends between records brings the rescue area up to it first (see
 * rescue_behind). */
int sink(void *ctx, const uint8_t *chunk, size_t len)
{
	(void)ctx;
	if (rmp->area && !writer.mid)
		rescue_commit(rmp);
	if (batch_len + len > BATCH && batch_write() < 0)
		return -1;
	batch_last_seq = (uint16_t)(chunk[10] | chunk[11] << 8);
	batch_last_len = len;
	memcpy(batch + batch_len, chunk, len);
	batch_len += len;
	/* Processes sharing the pipe: each write one whole chunk of at most
	 * PIPE_BUF bytes, which the kernel never mixes with another's. */
	if (follow)
		return batch_write();
	return 0;
}

/* Sends everything encoded so far. Locked. */
void flush_all(void)
{
	mr_w_flush(&writer);
	batch_write();
}

void sink_discard(void)
{
	batch_len = 0;
	batch_gen++;
}

/* ---- the descriptor ----------------------------------------------------- */

/* A pipe's identity as MEMRAY_FD_ID carries it: "dev:ino". */
void pipe_id(char *buf, size_t n, dev_t dev, ino_t ino)
{
	snprintf(buf, n, "%llu:%llu", (unsigned long long)dev, (unsigned long long)ino);
}

/* A copy of fd just above the soft limit of open files, and at least at
 * 1024 (close-on-exec if asked), or -1 when the hard limit does not let
 * the soft one be raised for a moment. The program can never be given that number, and
 * what looks through every descriptor up to the limit (a daemon's close
 * loop, a test that lists the descriptors it inherited) does not see it. */
int fd_above_limit(int fd, int cloexec)
{
	struct rlimit rl;
	/* (not past 65536: the kernel's table of descriptors grows to hold the
	 * highest one) */
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur > 65536)
		return -1;
	/* a low limit (a program that lowered it, then checks the descriptors
	 * it had above it) is left well behind */
	rlim_t at = rl.rlim_cur < 1024 ? 1024 : rl.rlim_cur;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < at + 64)
		return -1;
	struct rlimit up = rl;
	up.rlim_cur = at + 64;
	if (setrlimit(RLIMIT_NOFILE, &up) < 0)
		return -1;
	int high = fcntl(fd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, (int)at);
	setrlimit(RLIMIT_NOFILE, &rl);
	return high;
}

/* Where the tracker's descriptors go below the limit: high, out of the
 * way of the numbers a program is given. */
static int fd_floor(void)
{
	struct rlimit rl;
	int floor = 100;
	/* (past the numbers a program that puts a file of its own under
	 * every number up to 4096 reaches, with a limit that allows it; not so
	 * high that the kernel's table of descriptors grows much) */
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return floor;
	if (rl.rlim_cur > 256)
		floor = (int)(rl.rlim_cur > 16384 ? 16384 : rl.rlim_cur) - 64;
	/* (a limit of 200 or less: halfway, where 100 may be past it) */
	else if (rl.rlim_cur <= 200)
		floor = rl.rlim_cur / 2 > 3 ? (int)rl.rlim_cur / 2 : 3;
	return floor;
}

/* A copy of fd out of the program's way, for any descriptor of the
 * tracker's own: above the soft limit if it can be, else high below it.
 * -1 on failure. */
int fd_out_of_way(int fd, int cloexec)
{
	int high = fd_above_limit(fd, cloexec);
	if (high >= 0)
		return high;
	return fcntl(fd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, fd_floor());
}

/* The stream's descriptor out of the way: kept across exec when following. */
static int move_high(int fd)
{
	return fd_out_of_way(fd, !follow);
}

/* Takes the descriptor memray-record passed, out of the program's way: a
 * high number, close-on-exec, the original number closed. */
int adopt(long fd)
{
	struct stat st;
	if (fd < 0 || fstat((int)fd, &st) < 0 || !S_ISFIFO(st.st_mode))
		return -1;
	/* Following children, the descriptor must be the very pipe
	 * memray-record made (a program may have closed it and opened another
	 * under its number), and stays open across exec. */
	const char *id = getenv("MEMRAY_FD_ID");
	char want[64];
	pipe_id(want, sizeof(want), st.st_dev, st.st_ino);
	if (follow && id && strcmp(id, want) != 0)
		return -1;
	int high = move_high((int)fd);
	if (high < 0)
		return -1;
	close((int)fd);
	out_dev = st.st_dev;
	out_ino = st.st_ino;
	if (follow) {
		char num[32];
		snprintf(num, sizeof(num), "%d", high);
		setenv("MEMRAY_FD", num, 1);
		setenv("MEMRAY_FD_ID", want, 1);
	}
	return high;
}

int adopt_fd(const char *s)
{
	char *end;
	long fd = strtol(s, &end, 10);
	return *end || end == s ? -1 : adopt(fd);
}

/* ---- a lost descriptor, found again ------------------------------------ */

/* Reads MEMRAY_RECORDER (where the pipe can be opened again). */
void recorder_from_env(void)
{
	const char *s = getenv("MEMRAY_RECORDER");
	int pid, fd;
	char tail;
	if (s && sscanf(s, "%d:%d%c", &pid, &fd, &tail) == 2 && pid > 0 && fd >= 0) {
		recorder_pid = pid;
		recorder_fd = fd;
	}
}

/* MEMRAY_RECORDER's value for an exec'd image, into buf; 0 if unknown. */
int recorder_env(char *buf, size_t n)
{
	if (recorder_pid < 0)
		return 0;
	snprintf(buf, n, "%d:%d", recorder_pid, recorder_fd);
	return 1;
}

/* Whether descriptor fd is still the stream's pipe. */
int fd_is_ours(int fd)
{
	struct stat st;
	return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == out_dev && st.st_ino == out_ino;
}

/* Opens /proc/PID/fd/FD for writing if it is the stream's pipe (checked
 * before it is opened: never open something else for writing); the new
 * descriptor, or -1. */
static int open_via(int pid, int fd)
{
	char path[64];
	struct stat st;
	if (pid <= 0 || fd < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fd);
	if (stat(path, &st) < 0 || !S_ISFIFO(st.st_mode) || st.st_dev != out_dev ||
	    st.st_ino != out_ino)
		return -1;
	int k = quiet_open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY);
	if (k < 0)
		return -1;
	/* writes block as on the inherited descriptor */
	fcntl(k, F_SETFL, fcntl(k, F_GETFL) & ~O_NONBLOCK);
	if (!fd_is_ours(k)) {
		close(k);
		return -1;
	}
	return k;
}

/* The stream's pipe opened again, for a process that lost its descriptor
 * (a child closing every descriptor before exec, as Python's subprocess
 * does, or a daemon): through memray-record's end of it, else through the
 * parent's descriptor parent_fd (-1: the number this process had), which
 * a forked child inherited from its parent. Moved out of the program's
 * way as adopt() does; the environment is left alone (this runs under
 * the lock, where nothing may allocate). The new number, or -1. */
int reopen_pipe(int parent_fd)
{
	int k = open_via(recorder_pid, recorder_fd);
	if (k < 0)
		k = open_via((int)getppid(), parent_fd >= 0 ? parent_fd : out_fd);
	if (k < 0)
		return -1;
	int high = move_high(k);
	close(k);
	return high;
}

/* A child started with MEMRAY_FD naming a descriptor it does not have
 * (Python's subprocess closes every descriptor but the three standard
 * ones before exec) opens the pipe named by MEMRAY_FD_ID again. */
int reopen_from_parent(const char *s)
{
	char *end;
	long fd = strtol(s, &end, 10);
	const char *id = getenv("MEMRAY_FD_ID");
	unsigned long long dev, ino;
	char tail;
	if (*end || end == s || fd < 0 || fd > INT32_MAX || !id ||
	    sscanf(id, "%llu:%llu%c", &dev, &ino, &tail) != 2)
		return -1;
	out_dev = (dev_t)dev;
	out_ino = (ino_t)ino;
	int high = reopen_pipe((int)fd);
	if (high >= 0 && follow) {
		char num[32];
		snprintf(num, sizeof(num), "%d", high);
		setenv("MEMRAY_FD", num, 1);
	}
	return high;
}
