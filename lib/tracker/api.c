/*
 * api.c - the in-process API (memray.h): a program records itself into a
 * file (memray_start, memray_stop), and reads the exact live and peak
 * bytes of what it allocated since (memray_stats, the window).
 *
 * Owns: api_on, the window and its table of blocks.
 * Calls: attach.c (in_process_setup, high_fd), got.c, hooks.c
 * (hooks_python_allocators), blocks.c, lifecycle.c (stream_reset,
 * stream_start, stream_end), sampler.c (sampler_start).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../sample.h"
#include "got.h"
#include "internal.h"
#include "memray.h"

int api_on;

/* ---- the window of the in-process API (memray.h) -------------------------
 * While a recording started by memray_start runs, the blocks allocated
 * since are kept by address, so that memray_stats gives exact live and
 * peak bytes of what was allocated in the window: the release of an older
 * block changes nothing. Sizes are the requested ones, as the readers
 * count them. All under the lock. */

static struct btab win;
int window_on;
static uint64_t win_live, win_peak, win_allocs, win_bytes;

void win_add(uintptr_t a, uint64_t size)
{
	if (!a)
		return;
	win_allocs++;
	win_bytes += size;
	win_live += size;
	if (win_live > win_peak)
		win_peak = win_live;
	uint64_t replaced;
	if (!btab_put(&win, a, size, &replaced))
		win_live -= size; /* counted, not kept */
	win_live -= replaced;
}

uint64_t win_take(uintptr_t a)
{
	uint64_t size;
	if (!btab_take(&win, a, &size))
		return 0;
	win_live -= size;
	return size;
}

/* munmap of [a, a + len): a mapping of the window starting at a loses its
 * first len bytes (the whole of it, usually). */
void win_unmap(uintptr_t a, uint64_t len)
{
	uint64_t size;
	if (btab_take(&win, a, &size)) {
		win_live -= size;
		uint64_t replaced;
		if (size > len && btab_put(&win, a + len, size - len, &replaced))
			win_live += size - len - replaced;
	}
}

/* ---- the in-process API (memray.h) ------------------------------------------ */

extern __typeof__(malloc) hook_malloc __attribute__((visibility("hidden")));
static int api_patched, api_used, api_pyalloc;

EXPORT int memray_start_ex(const char *path, int flags, long interval_ms,
			   unsigned long long sample_bytes, unsigned long long seed)
{
	int guard = tracker_guard;
	tracker_guard = 1;
	int rc = -1, e = EBUSY;
	if (ACTIVE() || out_fd >= 0 || api_on || __atomic_load_n(&attach_busy, __ATOMIC_ACQUIRE))
		goto out;
	/* everything that can be refused is, before the file is touched */
	e = EINVAL;
	if (interval_ms < 0 || interval_ms > 3600 * 1000 || sample_bytes > MR_SAMPLE_MAX ||
	    (flags & ~(MEMRAY_NATIVE | MEMRAY_NO_NATIVE | MEMRAY_FOLLOW_FORK |
		       MEMRAY_PYTHON_ALLOCATORS)))
		goto out;
	e = ENOSYS;
	if ((flags & MEMRAY_PYTHON_ALLOCATORS) && !hooks_python_allocators_possible())
		goto out;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		e = errno;
		if (fd >= 0)
			close(fd);
		goto out;
	}
	in_process_setup(flags & MEMRAY_NATIVE ? 1 : flags & MEMRAY_NO_NATIVE ? 0 : -1,
			 interval_ms * 1000, flags & MEMRAY_FOLLOW_FORK ? MR_F_FOLLOW_FORK : 0,
			 sample_bytes, seed);
	/* forked children go on in the same file (one write per chunk, at
	 * the file's shared offset); exec'd images are not followed */
	follow = !!(flags & MEMRAY_FOLLOW_FORK);
	if (flags & MEMRAY_PYTHON_ALLOCATORS) {
		hooks_python_allocators(1);
		api_pyalloc = 1;
		header_flags = (header_flags & ~(uint64_t)MR_F_PYMALLOC) | MR_F_PYTHON_ALLOCS;
	}
	out_fd = high_fd(fd);
	out_dev = st.st_dev;
	out_ino = st.st_ino;
	attached = 0;
	api_on = api_used = 1;
	stream_reset();
	lock_stream();
	btab_clear(&win);
	win_live = win_peak = win_allocs = win_bytes = 0;
	__atomic_store_n(&window_on, 1, __ATOMIC_RELAXED);
	order_gate();
	unlock();
	stream_start(0);
	/* loaded with dlopen: the program's calls reach the hooks only
	 * through patched GOT entries */
	if (got_lookup("malloc", NULL) != (void *)hook_malloc) {
		if (got_patch(tracker_hooks, tracker_nhooks, (void *)memray_start) < 0) {
			tracker_guard = guard;
			memray_stop();
			errno = ENOMEM;
			return -1;
		}
		api_patched = 1;
	}
	sampler_start();
	rc = 0;
out:
	tracker_guard = guard;
	if (rc)
		errno = e;
	return rc;
}

EXPORT int memray_preloaded(void)
{
	int guard = tracker_guard;
	tracker_guard = 1;
	int yes = got_lookup("malloc", NULL) == (void *)hook_malloc;
	tracker_guard = guard;
	return yes;
}

EXPORT int memray_start(const char *path, int flags)
{
	return memray_start_ex(path, flags & (MEMRAY_NATIVE | MEMRAY_NO_NATIVE), 0, 0, 0);
}

EXPORT int memray_stop(void)
{
	if (!api_on) {
		errno = EINVAL;
		return -1;
	}
	int guard = tracker_guard;
	tracker_guard = 1;
	if (api_patched)
		got_restore();
	api_patched = 0;
	if (api_pyalloc)
		hooks_python_allocators(0);
	api_pyalloc = 0;
	lock_stream();
	int ok = ACTIVE(); /* not stopped by a failed write */
	if (ok)
		ok = stream_end() == 0;
	set_active(0);
	__atomic_store_n(&window_on, 0, __ATOMIC_RELAXED);
	order_gate();
	if (out_fd >= 0 && close(out_fd) < 0)
		ok = 0;
	out_fd = -1;
	api_on = 0;
	unlock();
	__atomic_add_fetch(&sampler_gen, 1, __ATOMIC_ACQ_REL); /* its sampler leaves */
	tracker_guard = guard;
	if (!ok) {
		errno = EIO;
		return -1;
	}
	return 0;
}

EXPORT int memray_stats(struct memray_stats *s)
{
	if (!api_used) {
		errno = EINVAL;
		return -1;
	}
	int guard = tracker_guard;
	tracker_guard = 1;
	lock_stream();
	*s = (struct memray_stats){ win_peak, win_live, win_allocs, win_bytes };
	unlock();
	tracker_guard = guard;
	return 0;
}
