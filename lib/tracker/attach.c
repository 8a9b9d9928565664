/*
 * attach.c - attaching to a running program (memray-record --pid), and
 * the setup that a recording started in a running program shares with
 * the in-process API (api.c).
 *
 * Owns: attached, ctl_fd (the control FIFO), attach_busy.
 * Calls: got.c (got_lookup, got_patch, got_restore), sink.c (adopt),
 * stack.c, sample.c, threads.c and python.c's setup, lifecycle.c
 * (stream_reset, stream_start, stream_end), sampler.c (sampler_start).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "../sample.h"
#include "got.h"
#include "internal.h"
#include "python.h"

int attached;
int ctl_fd = -1;
int attach_busy; /* an attached recording has not ended yet */

/* ---- attaching to a running program ---------------------------------------
 * memray-record --pid has gdb dlopen this library into the program and
 * call memray_attach, from a thread stopped where it holds no allocator
 * lock. The constructor found no MEMRAY_FD and did nothing; here the
 * recording starts: the FIFOs memray-record made in DIR are opened
 * (DIR/data for the stream, DIR/ctl whose hang-up ends it), the header
 * and modules are written, and the allocator entries of every loaded
 * object's GOT are pointed at the hooks. The sampler ends it all in
 * attach_end, leaving the entries as they were; this library stays
 * loaded (a thread may still be inside a hook, and a function pointer
 * taken meanwhile may still point at one), its hooks passing every call
 * through. */

/* The real functions are the program's own definitions, found as the
 * loader would, past this library (dlsym(RTLD_NEXT) from a dlopen'ed
 * object would skip an allocator the program preloaded). */
static void attach_resolve(void)
{
	const void *self = (const void *)attach_resolve;
#define L(name) \
	do { \
		void *f_ = got_lookup(#name, self); \
		if (f_) \
			real.name = (__typeof__(real.name))f_; \
	} while (0)
	L(malloc); L(free); L(calloc); L(realloc); L(reallocarray); L(posix_memalign);
	L(aligned_alloc); L(memalign); L(valloc); L(pvalloc); L(mmap); L(mmap64);
	L(munmap); L(mremap); L(malloc_usable_size); L(pthread_create); L(pthread_setname_np); L(prctl);
	L(execve); L(execvpe); L(_exit); L(_Exit);
#undef L
}

int high_fd(int fd)
{
	int high = fcntl(fd, F_DUPFD_CLOEXEC, 100);
	if (high < 0)
		return fd;
	close(fd);
	return high;
}

/* Sets up a recording in a running program (attached, or through the
 * API): what the constructor does when memray-record preloads the tracker.
 * native: 1, 0, or -1 for the default. */
void in_process_setup(int native, long interval, uint64_t flags, uint64_t gap,
			     uint64_t seed)
{
	static int once, is_python;
	if (!once) {
		once = 1;
		find_self();
		attach_resolve();
		is_python = python_start();
		pthread_key_create(&thread_key, thread_gone);
		pthread_atfork(at_prepare, at_parent, at_child);
	}
	follow = 0;
	stack_options(is_python, native, flags);
	snprintf(native_env, sizeof(native_env), "%s", native < 0 ? "auto" : native ? "1" : "0");
	if (native_stacks && !unwind_started)
		unwinder_start();
	interval_us = interval > 0 ? (uint64_t)interval : 10000;
	my_pid = getpid();
	sample_setup(gap <= MR_SAMPLE_MAX ? gap : MR_SAMPLE_MAX, seed);
}

static int attach_start(const char *dir, int native, long interval, uint64_t gap, uint64_t seed)
{
	if (ACTIVE() || out_fd >= 0 || __atomic_load_n(&attach_busy, __ATOMIC_ACQUIRE))
		return -1; /* recorded already (preloaded, or attached) */
	char path[4096];
	snprintf(path, sizeof(path), "%s/ctl", dir);
	int c = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (c < 0)
		return -2;
	snprintf(path, sizeof(path), "%s/data", dir);
	int d = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (d >= 0)
		fcntl(d, F_SETFL, fcntl(d, F_GETFL) & ~O_NONBLOCK);
	follow = 0;
	int fd = d >= 0 ? adopt(d) : -1;
	if (fd < 0) {
		if (d >= 0)
			close(d);
		close(c);
		return -2;
	}
	in_process_setup(native, interval, MR_F_ATTACHED, gap, seed);
	ctl_fd = high_fd(c);
	out_fd = fd;
	attached = 1;
	stream_reset();
	stream_start(0);
	if (got_patch(tracker_hooks, tracker_nhooks, (void *)attach_start) < 0) {
		attach_end();
		return -3;
	}
	__atomic_store_n(&attach_busy, 1, __ATOMIC_RELEASE);
	sampler_start();
	return 0;
}

/* Called by memray-record through gdb; gap and seed are --sample-bytes
 * and --seed (0: none). Returns 0 when recording, -1 when the program is
 * recorded already, -2 when the FIFOs cannot be opened, -3 when the GOT
 * entries cannot be patched. */
EXPORT int memray_attach(const char *dir, int native, long interval_us_arg,
			 unsigned long long gap, unsigned long long seed)
{
	int guard = tracker_guard;
	tracker_guard = 1;
	int rc = attach_start(dir, native, interval_us_arg, gap, seed);
	tracker_guard = guard;
	return rc;
}

/* Ends an attached recording: the entries first (no new call reaches a
 * hook), then the trailer, then the FIFOs. */
void attach_end(void)
{
	int guard = tracker_guard;
	tracker_guard = 1;
	got_restore();
	lock_stream();
	if (ACTIVE() && getpid() == my_pid)
		stream_end();
	set_active(0);
	if (out_fd >= 0)
		close(out_fd);
	out_fd = -1;
	unlock();
	if (ctl_fd >= 0)
		close(ctl_fd);
	ctl_fd = -1;
	__atomic_store_n(&attach_busy, 0, __ATOMIC_RELEASE);
	tracker_guard = guard;
}
