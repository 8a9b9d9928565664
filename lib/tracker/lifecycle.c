/*
 * lifecycle.c - a recording's life in its process: the constructor that
 * starts it when memray-record preloaded the tracker, the fork handlers
 * (a followed child starts a stream of its own), the end by a signal, and
 * the end at exit.
 *
 * Owns: tracker_active and tracker_guard, the stream's start (my_pid,
 * start_mono, header_flags, stream_gen), the fork handlers.
 * Calls: every other part's setup: sink.c (adopt_fd, reopen_from_parent),
 * stack.c (find_self, unwinder_start, stack_options, the fork gate),
 * sample.c, modules.c, threads.c, sampler.c, python.c, signals.c, got.c
 * (got_forked).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../sample.h"
#include "../util.h"
#include "got.h"
#include "internal.h"
#include "python.h"

int tracker_active;
__thread int tracker_guard __attribute__((tls_model("initial-exec")));

struct timespec start_mono;
pid_t my_pid;
uint64_t header_flags;
static int saved_argc;
static char **saved_argv;
uint32_t stream_gen;
/* A signal is ending the stream: no new record is begun. */
static int signal_ending;

/* ---- fork ---------------------------------------------------------------- */

static int prepare_locked;

void at_prepare(void)
{
	prepare_locked = !tracker_guard;
	if (!prepare_locked)
		return;
	/* no thread inside libunwind (see gated_backtrace) */
	gate_close();
	lock_stream();
}

void at_parent(void)
{
	gate_open();
	if (prepare_locked)
		unlock();
}

static void child_restart(void);

/* The child of a fork: with --follow-fork a process of its own in the
 * stream; otherwise it goes inert and lets go of the stream. */
void at_child(void)
{
	rescue_forget(); /* the parent's, shared: never written here */
	sampler_forked();
	gate_forked();
	lock_word = 0;
	lock_owner = NULL;
	holding = 0;
	order_forked();
	deferred_sig = 0; /* the parent's: its own signal, not this child's */
	got_forked();
	/* followed, unless forked from inside the tracker (a signal handler
	 * that interrupted it: prepare did not take the lock, and the state is
	 * half-written) */
	if (follow && ACTIVE() && out_fd >= 0 && prepare_locked) {
		child_restart();
		return;
	}
	set_active(0);
	if (out_fd >= 0)
		close(out_fd);
	out_fd = -1;
	/* an API window is the parent's: the child may start its own */
	api_on = 0;
	__atomic_store_n(&window_on, 0, __ATOMIC_RELAXED);
	order_gate();
	hooks_python_allocators_forget(); /* its wrappers record nothing more */
	/* attached: the child keeps the patched entries, which now pass
	 * every call straight through */
	if (ctl_fd >= 0)
		close(ctl_fd);
	ctl_fd = -1;
	attach_busy = 0;
}

/* ---- start --------------------------------------------------------------- */

/* Restores the environment memray-record changed, so the program and
 * anything it runs see the environment the user gave. */
static void restore_env(void)
{
	if (follow) {
		/* children find the tracker through the environment */
		unsetenv("MEMRAY_PID");
		unsetenv("MEMRAY_SEQ");
		unsetenv("MEMRAY_RESCUE"); /* the first process's alone */
		return;
	}
	const char *saved = getenv("MEMRAY_LD_PRELOAD");
	if (saved && saved[0])
		setenv("LD_PRELOAD", saved, 1);
	else
		unsetenv("LD_PRELOAD");
	unsetenv("MEMRAY_LD_PRELOAD");
	unsetenv("MEMRAY_FD");
	unsetenv("MEMRAY_RECORDER");
	unsetenv("MEMRAY_RESCUE");
	unsetenv("MEMRAY_NATIVE");
	unsetenv("MEMRAY_INTERVAL_US");
	unsetenv("MEMRAY_SAMPLE_BYTES");
	unsetenv("MEMRAY_SEED");
	unsetenv("MEMRAY_PID");
	unsetenv("MEMRAY_SEQ");
}

/* Says once, on stderr, that the program is a Python whose frames cannot
 * be read (or how they are read when that is not the plain way). Only the
 * process memray-record started says it, not its forked children. */
static void python_say(int py)
{
	static int said;
	const char *why = python_problem();
	if (said || py == PY_NONE || !why[0])
		return;
	said = 1;
	char exe[512], msg[1024];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[k > 0 ? k : 0] = 0;
	int n = snprintf(msg, sizeof(msg), py == PY_READ ? "memray-record: CPython %s (%s): %s\n"
			 : "memray-record: CPython %s (%s): %s; Python stacks are not recorded, native stacks only\n",
			 python_version(), exe, why);
	if (n > 0)
		(void)!write(2, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
}

__attribute__((constructor(101))) static void tracker_start(int argc, char **argv, char **envp)
{
	(void)envp;
	tracker_guard = 1;
#ifdef MEMRAY_TSAN
	hooks_thread_ready();
#endif
	tracker_resolve();
	saved_argc = argc;
	saved_argv = argv;
	const char *fd = getenv("MEMRAY_FD");
	if (!fd) {
		/* memray-record --idle: loaded for the API (memray.h) only */
		if (getenv("MEMRAY_IDLE")) {
			restore_env();
			unsetenv("MEMRAY_IDLE");
		}
		tracker_guard = 0;
		return;
	}
	const char *native = getenv("MEMRAY_NATIVE");
	const char *interval = getenv("MEMRAY_INTERVAL_US");
	const char *gap = getenv("MEMRAY_SAMPLE_BYTES");
	const char *seed = getenv("MEMRAY_SEED");
	uint64_t gap_n = gap ? strtoull(gap, NULL, 10) : 0;
	uint64_t seed_n = seed ? strtoull(seed, NULL, 10) : 0;
	const char *pid = getenv("MEMRAY_PID");
	const char *seq = getenv("MEMRAY_SEQ");
	/* Only the process memray-record started (or that process after an
	 * exec) records, unless children are followed too. */
	const char *fol = getenv("MEMRAY_FOLLOW");
	follow = fol && strcmp(fol, "1") == 0;
	int continuing = pid && atol(pid) == (long)getpid();
	recorder_from_env();
	out_fd = continuing || follow ? adopt_fd(fd) : -1;
	if (out_fd < 0 && follow && !continuing)
		out_fd = reopen_from_parent(fd);
	if (continuing && out_fd >= 0)
		rescue_open(getenv("MEMRAY_RESCUE"));
	if (native)
		snprintf(native_env, sizeof(native_env), "%s", native);
	int is_python = python_start();
	if (interval && atoll(interval) > 0)
		interval_us = (uint64_t)atoll(interval);
	stack_options(is_python, native && strcmp(native, "auto") != 0 ? native[0] == '1' : -1,
		      follow ? MR_F_FOLLOW_FORK : 0);
	if (continuing && out_fd >= 0)
		python_say(is_python);
	restore_env();
	if (out_fd < 0) {
		tracker_guard = 0;
		return;
	}
	my_pid = getpid();
	find_self();
	if (native_stacks)
		unwinder_start();
	pthread_key_create(&thread_key, thread_gone);
	sample_setup(gap_n <= MR_SAMPLE_MAX ? gap_n : MR_SAMPLE_MAX, seed_n);
	stream_start(continuing && seq ? (uint16_t)atol(seq) : 0);
	pthread_atfork(at_prepare, at_parent, at_child);
	signals_start();
	sampler_start();
	tracker_guard = 0;
}

/* This process's stream from its header on: the modules, the current
 * thread, a memory record. seq is the first chunk's number (an exec'd
 * image goes on from its predecessor's). */
void stream_start(uint16_t seq)
{
	clock_gettime(CLOCK_MONOTONIC, &start_mono);
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	char exe[4096];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[k > 0 ? k : 0] = 0;
	struct mr_header_info h = {
		.tool_version = MEMRAY_VERSION,
		.pid = (uint32_t)my_pid,
		.ppid = (uint32_t)getppid(),
		.start_us = (uint64_t)wall.tv_sec * 1000000u + (uint64_t)wall.tv_nsec / 1000,
		.page_size = (uint64_t)sysconf(_SC_PAGESIZE),
		.flags = header_flags | (tracker_sampling() ? MR_F_SAMPLED : 0),
		.interval_us = interval_us,
		.argc = saved_argc,
		.argv = saved_argv,
		.exe = exe,
		.sample_bytes = tracker_sample_bytes,
		.python_version = python_version(),
		.python_problem = python_problem(),
	};
	mr_writer_init(&writer, (uint32_t)my_pid, sink, NULL);
	writer.seq = seq;
	rescue_attach();
	__atomic_store_n(&stream_gen, stream_gen + 1, __ATOMIC_RELAXED);
	mr_w_header(&writer, &h);
	set_active(1);
	modules_sync(1);
	lock_stream();
	thread_current();
	memory_record();
	flush_all();
	unlock();
}

/* Forgets everything an earlier stream had (its stack nodes, frames,
 * strings, threads, modules); each thread forgets its cached stack when
 * it next records (stream_gen). */
void stream_reset(void)
{
	sink_discard(); /* a forked child's: the parent's, which the parent writes */
	trie_forget();
	live_heap = 0; /* the parent's blocks are not this stream's */
	python_forget();
	threads_forget();
	modules_forget();
}

/* In a child of fork, with --follow-fork: forget everything the parent's
 * stream had (its stack nodes, frames, strings, threads, modules) and
 * start this process's own, with a sampler thread of its own. */
static void child_restart(void)
{
	int guard = tracker_guard;
	tracker_guard = 1;
	my_pid = getpid();
	stream_reset();
	/* the parent's samples are not this stream's; a sequence of its own */
	sample_setup(tracker_sample_bytes,
		     sample_seed ? sample_seed ^ (uint64_t)my_pid * 0x9e3779b97f4a7c15ull : 0);
	stream_start(0);
	sampler_start();
	tracker_guard = guard;
}

/* ---- the end ------------------------------------------------------------- */

/* Ends this process's stream: a last memory record and the trailer,
 * sent. Locked; 0, or -1 if the write failed. */
int stream_end(void)
{
	memory_record();
	mr_w_trailer(&writer, now_us());
	int rc = batch_write();
	if (rmp->area)
		rmp->area->ended = 1;
	return rc;
}

int tracker_signal_end(int sig)
{
	if (getpid() != my_pid ||
	    (!ACTIVE() && __atomic_load_n(&signal_ending, __ATOMIC_ACQUIRE) != 1))
		return 0;
	/* the interrupted code of this very thread holds the lock, in the
	 * middle of a record: the signal waits until it lets go (a write it
	 * is blocked in ends with EINTR, see batch_write) */
	if (holding || __atomic_load_n(&lock_owner, __ATOMIC_RELAXED) == &holding) {
		deferred_sig = sig;
		return 1;
	}
	/* no thread begins a record now; one being written is waited for,
	 * 2 s at most (its write may be blocked) */
	int expected = 0;
	__atomic_compare_exchange_n(&signal_ending, &expected, 1, 0, __ATOMIC_ACQ_REL,
				    __ATOMIC_ACQUIRE);
	set_active(0);
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += 2;
	int guard = tracker_guard;
	tracker_guard = 1;
	if (lock_timed(&until) != 0) {
		tracker_guard = guard;
		return 0;
	}
	if (__atomic_load_n(&signal_ending, __ATOMIC_ACQUIRE) == 1 && getpid() == my_pid) {
		mr_w_signal(&writer, sig);
		stream_end();
		__atomic_store_n(&signal_ending, 2, __ATOMIC_RELEASE);
	}
	lock_release();
	tracker_guard = guard;
	return 0;
}

void tracker_finish(void)
{
	if (!ACTIVE())
		return;
	int guard = tracker_guard;
	tracker_guard = 1;
	lock_stream();
	if (ACTIVE() && getpid() == my_pid) {
		stream_end();
		set_active(0);
		unwind_report();
	}
	unlock();
	tracker_guard = guard;
}

__attribute__((destructor(101))) static void tracker_stop(void)
{
	tracker_finish();
}
