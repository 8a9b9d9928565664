/*
 * sampler.c - the sampler thread: every interval a memory record (RSS
 * and the live heap), and every TICK_MAX_US the writer flushed;
 * new modules synced, Python threads polled, and, attached, the control
 * FIFO watched for memray-record's hang-up. When the program's own
 * threads have all ended (the last by pthread_exit), it ends the process
 * as the C library would have.
 *
 * Owns: interval_us, the sampler thread and its generation.
 * Calls: modules.c (modules_sync), got.c (got_patch), python.c
 * (python_poll), sink.c (flush_all), attach.c (attach_end).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "got.h"
#include "internal.h"
#include "python.h"

#define TICK_MAX_US 50000 /* flush at least this often */

uint64_t interval_us = 10000;
static pthread_t sampler;

/* Opens path for the tracker's own use (close-on-exec), never under 0, 1
 * or 2: a program that closed one of those may dup2 a file of its own
 * onto that number at any moment (CPython's test_subprocess does, around
 * a child it starts), and the tracker must then neither read from nor
 * close the program's file. A descriptor the kernel gives there is moved
 * up at once; the moment in between is as short as it can be. */
int quiet_open(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd >= 0 && fd < 3) {
		int up = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		close(fd);
		fd = up;
	}
	return fd;
}

/* The /proc files the sampler reads at every tick are kept open (and out
 * of the program's way, as the stream's descriptor is), then read again
 * with pread: no descriptor comes and goes at each tick where a program
 * juggling its own could meet it. Opened again where they went (the
 * program closed them); a forked child's are its parent's, let go. */
static int statm_fd = -1, stat_fd = -1, task_fd = -1, other_fd = -1;
static long other_tid;

static int keep_open(const char *path, int flags)
{
	int fd = quiet_open(path, flags);
	if (fd < 0)
		return -1;
	int high = fd_out_of_way(fd, 1);
	close(fd);
	return high;
}

static void drop(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* A forked child: the kept descriptors name its parent's files. */
void sampler_files_forget(void)
{
	drop(&statm_fd);
	drop(&stat_fd);
	drop(&task_fd);
	drop(&other_fd);
}

/* The start of a kept /proc file, NUL-terminated, in buf; 0 if unreadable. */
static int read_kept(int *fd, const char *path, char *buf, size_t size)
{
	for (int tries = 0; tries < 2; tries++) {
		if (*fd < 0 && (*fd = keep_open(path, O_RDONLY)) < 0)
			return 0;
		ssize_t k = pread(*fd, buf, size - 1, 0);
		if (k > 0) {
			buf[k] = 0;
			return 1;
		}
		drop(fd); /* closed by the program, or another file now: again */
	}
	return 0;
}

static uint64_t read_rss(void)
{
	char buf[128];
	if (!read_kept(&statm_fd, "/proc/self/statm", buf, sizeof(buf)))
		return 0;
	char *p = strchr(buf, ' ');
	return p ? strtoull(p + 1, NULL, 10) * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

void memory_record(void)
{
	uint64_t rss = read_rss();
	/* attached, the blocks allocated before are unknown, and so is the
	 * heap's size: 0 says so */
	mr_w_memory(&writer, now_us(), rss, attached ? 0 : live_heap);
}

/* The state letter of thread tid (R, S, Z...), or 0: its stat file kept
 * open while it is the same thread. */
static char task_state(long tid)
{
	char path[64], buf[512];
	if (tid != other_tid) {
		drop(&other_fd);
		other_tid = tid;
	}
	snprintf(path, sizeof(path), "/proc/self/task/%ld/stat", tid);
	if (!read_kept(&other_fd, path, buf, sizeof(buf)))
		return 0;
	char *p = strrchr(buf, ')'); /* the name may hold anything */
	return p && p[1] == ' ' ? p[2] : 0;
}

/* Whether every thread of the program has ended and this one is all that
 * is left: its last thread left with pthread_exit (the first thread stays
 * a zombie until the process ends). Without the tracker, the C library
 * would then have ended the process with exit(0); this thread keeps it
 * alive, holding back every signal sent to it. Read from /proc without
 * allocating: the task count first, then each task's state. */
static int left_alone(void)
{
	char buf[512];
	if (!read_kept(&stat_fd, "/proc/self/stat", buf, sizeof(buf)))
		return 0;
	/* num_threads: the 20th field, the 18th after the name */
	char *p = strrchr(buf, ')');
	for (int i = 0; p && i < 18; i++)
		p = strchr(p + 1, ' ');
	if (!p || strtol(p + 1, NULL, 10) > 2)
		return 0;
	if (task_fd < 0 && (task_fd = keep_open("/proc/self/task", O_RDONLY | O_DIRECTORY)) < 0)
		return 0;
	if (lseek(task_fd, 0, SEEK_SET) < 0) {
		drop(&task_fd);
		return 0;
	}
	long me = syscall(SYS_gettid), n;
	int others = 0;
	char dents[2048] __attribute__((aligned(8)));
	while (!others && (n = syscall(SYS_getdents64, task_fd, dents, sizeof(dents))) > 0) {
		for (long off = 0; off < n && !others;) {
			struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type;
				 char name[]; } *d = (void *)(dents + off);
			off += d->reclen;
			long tid = strtol(d->name, NULL, 10);
			if (tid <= 0 || tid == me)
				continue;
			char st = task_state(tid);
			others = st != 'Z' && st != 'X' && st != 0;
		}
	}
	if (n < 0)
		drop(&task_fd);
	return !others && n >= 0;
}

/* Attached: whether memray-record has closed the control FIFO (it is
 * done, or it went away). */
static int ctl_hung_up(void)
{
	char b[64];
	ssize_t k = read(ctl_fd, b, sizeof(b));
	return k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR);
}

/* Each sampler belongs to one stream: one started by the API's next
 * recording finds the previous sampler still asleep, which then leaves. */
unsigned sampler_gen;

/* Samplers running (a leaving one counts until it returns). */
static unsigned samplers_alive;

static void *sampler_loop(void *arg);

static void *sampler_main(void *arg)
{
	sampler_loop(arg);
	__atomic_sub_fetch(&samplers_alive, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *sampler_loop(void *arg)
{
	unsigned gen = (unsigned)(uintptr_t)arg;
	tracker_guard = 1;
	uint64_t tick = interval_us < TICK_MAX_US ? interval_us : TICK_MAX_US;
	uint64_t next_memory = interval_us, next_flush = TICK_MAX_US;
#define MINE() (__atomic_load_n(&sampler_gen, __ATOMIC_ACQUIRE) == gen)
	while (ACTIVE() && MINE()) {
		struct timespec t = { (time_t)(tick / 1000000), (long)(tick % 1000000) * 1000 };
		nanosleep(&t, NULL);
		if (!MINE())
			return NULL;
		/* the program is gone but for this thread: it ends as it would
		 * have (the stream's end written by the tracker's destructor) */
		if (left_alone())
			exit(0);
		/* objects loaded since the last tick get their entries patched */
		if (modules_sync(0) && attached)
			got_patch(tracker_hooks, tracker_nhooks, (void *)sampler_main);
		if (attached && ctl_hung_up())
			break;
		/* Python's threading is not changed in a program attached to */
		if (python_stacks && !attached)
			python_poll();
		lock_stream();
		if (ACTIVE() && MINE()) {
			if (now_us() >= next_memory) {
				memory_record();
				next_memory += interval_us;
				if (next_memory < now_us())
					next_memory = now_us() + interval_us;
			}
			/* not at every memory record: a flush writes a chunk
			 * of its own, 12 bytes of header, and at 10 ms that
			 * was 2% of a Python program's stream */
			if (now_us() >= next_flush) {
				flush_all();
				next_flush = now_us() + TICK_MAX_US;
			}
		}
		unlock();
	}
	if (attached && MINE())
		attach_end();
	return NULL;
#undef MINE
}

/* Starts the sampler thread, with every signal blocked so that none of
 * the program's is delivered to it. */
void sampler_start(void)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	unsigned gen = __atomic_add_fetch(&sampler_gen, 1, __ATOMIC_ACQ_REL);
	__atomic_add_fetch(&samplers_alive, 1, __ATOMIC_ACQ_REL);
	if (pthread_create(&sampler, &attr, sampler_main, (void *)(uintptr_t)gen) == 0)
		pthread_setname_np(sampler, "memray-sampler");
	else
		__atomic_sub_fetch(&samplers_alive, 1, __ATOMIC_RELEASE);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* In a forked child: no sampler thread came along. */
void sampler_forked(void)
{
	__atomic_store_n(&samplers_alive, 0, __ATOMIC_RELEASE);
	sampler_files_forget();
}

/* Stops the sampler for a call that needs the process to have one thread
 * (unshare or setns into a user namespace): 1 if one was running, to be
 * started again by sampler_resume. It leaves at its next tick (within
 * 50 ms); the kernel may count it a moment longer, which the caller
 * allows for. */
int sampler_pause(void)
{
	if (!__atomic_load_n(&samplers_alive, __ATOMIC_ACQUIRE))
		return 0;
	__atomic_add_fetch(&sampler_gen, 1, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(&samplers_alive, __ATOMIC_ACQUIRE)) {
		struct timespec t = { 0, 1000000 };
		nanosleep(&t, NULL);
	}
	return 1;
}

void sampler_resume(void)
{
	if (ACTIVE())
		sampler_start();
}

