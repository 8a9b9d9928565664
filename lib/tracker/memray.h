/*
 * memray.h - the in-process API of libmemray-tracker.so.
 *
 * A program, or a test runner (the pytest plugin and memray_c.Tracker in
 * python/memray_c/), records a part of its own run into a file of its
 * own: memray_start begins a complete memray stream (memray-stream(5)) in
 * PATH, memray_stop ends it, and memray_stats gives the exact numbers of
 * that window while it runs and after it ended, without reading the file:
 *
 *   peak         the highest live bytes of blocks allocated in the window
 *   live         the bytes of those blocks not freed (yet, or at its end)
 *   allocations  how many blocks were allocated in it
 *   allocated    their bytes
 *
 * Blocks allocated before the window and freed in it change nothing. The
 * sizes are the requested ones, as the readers (memray-stat, memray-fold)
 * count them, so the file read afterwards gives the same numbers.
 *
 * The tracker must be in the process: preloaded (LD_PRELOAD, or a run of
 * memray-record that is not recording), or loaded with dlopen, in which
 * case memray_start points the allocator entries of every loaded object's
 * global offset table at the tracker and memray_stop puts them back. Only
 * one window at a time, and not while memray-record records the process.
 * All three functions are thread-safe; from C, link nothing and look them
 * up with dlsym, or link with -lmemray-tracker.
 */
#ifndef MEMRAY_H
#define MEMRAY_H

#include <stdint.h>

#define MEMRAY_NATIVE 1    /* native stacks too (default: only for non-Python) */
#define MEMRAY_NO_NATIVE 2 /* no native stacks */
#define MEMRAY_FOLLOW_FORK 4 /* memray_start_ex: forked children record into
			      * the same file, each as a process of its own
			      * (exec'd images are not followed) */
#define MEMRAY_PYTHON_ALLOCATORS 8 /* memray_start_ex in a Python program:
				    * every object allocation recorded, the
				    * interpreter's object allocators wrapped
				    * for the window (as tracemalloc does); the
				    * caller holds the GIL in memray_start_ex
				    * and memray_stop */

struct memray_stats {
	uint64_t peak, live, allocations, allocated;
};

/* Starts recording into path (created or truncated, never through a
 * symbolic link). Returns 0, or -1 with errno: EBUSY when the process is
 * recorded already, or open(2)'s error. */
int memray_start(const char *path, int flags);
/* memray_start with the options of memray-record: memory records every
 * interval_ms milliseconds (0: the default, 10), and with sample_bytes
 * not 0 one heap allocation in about every sample_bytes bytes recorded
 * (--sample-bytes; seed not 0 gives the same samples in every run, as
 * --seed). The window's numbers count only the recorded allocations (with
 * sampling, the samples at their own sizes).
 * Returns 0, or -1 with errno: EBUSY, EINVAL for an option out of range
 * or an unknown flag, ENOSYS for MEMRAY_PYTHON_ALLOCATORS outside Python,
 * or open(2)'s error; the file is created or truncated only when none of
 * the others. */
int memray_start_ex(const char *path, int flags, long interval_ms,
		    unsigned long long sample_bytes, unsigned long long seed);
/* 1 when the tracker was preloaded (the program's allocator calls reach
 * it directly), 0 when it was loaded with dlopen (memray_start then
 * patches the global offset tables of the loaded objects). */
int memray_preloaded(void);
/* Ends the recording started by memray_start: the stream's trailer, the
 * file closed. Returns 0, or -1 with errno: EINVAL when none runs, EIO
 * when the file could not be written completely. */
int memray_stop(void);
/* The window's numbers, now or as it ended. Returns 0, or -1 (EINVAL)
 * before the first memray_start. */
int memray_stats(struct memray_stats *s);

#endif
