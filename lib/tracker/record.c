/*
 * record.c - the events: an allocation, a release, a move (realloc,
 * mremap), each captured, then written in the order it happened: put in
 * the thread's ring (order.c) when its stack needs nothing new, else
 * under the lock; with the heap's size kept up to date for the sampler's
 * memory records.
 *
 * Owns: live_heap, tracker_pymem.
 * Calls: stack.c (capture, intern), threads.c (thread_current),
 * sample.c (sample_put, sample_take), api.c's window (win_*), order.c
 * (order_put), the writer (mr_w_alloc, mr_w_free, mr_w_move, under the
 * lock).
 */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "internal.h"

union hot_word live_heap_line __attribute__((aligned(64)));

__thread const struct pymem *tracker_pymem __attribute__((tls_model("initial-exec")));

static size_t usable(void *p)
{
	return real.malloc_usable_size ? real.malloc_usable_size(p) : 0;
}

void tracker_alloc(int allocator, void *p, size_t size)
{
	struct capture c;
	tracker_guard = 1;
	capture(&c);
	/* the block's size in the heap, asked before the lock (the block is
	 * this thread's until it returns); a sample's is its estimate */
	size_t n = allocator == MR_MMAP || tracker_pymem ? size : usable(p);
	/* a stack the thread has its node of: no lock (order.c) */
	uint32_t node;
	if (order_ok() && intern_kept(&c, &node) &&
	    order_put(OREC_ALLOC, allocator, (uintptr_t)p, size, node, n)) {
		tracker_guard = 0;
		return;
	}
	lock_stream();
	uint64_t est = 0;
	/* a sample is kept before it is written: one that cannot be kept
	 * is not written, or its release would be missed */
	if (same_stream() && (allocator == MR_MMAP || !tracker_sampling() ||
			      (est = sample_put((uintptr_t)p, size)) != 0)) {
		thread_current();
		mr_w_alloc(&writer, allocator, (uintptr_t)p, size, intern(&c));
		live_heap += est ? est : n;
		if (window_on)
			win_add((uintptr_t)p, size);
	}
	unlock();
	tracker_guard = 0;
}

void tracker_free(int allocator, void *p, size_t len)
{
	tracker_guard = 1;
	int sampling = tracker_sampling() && allocator != MR_MUNMAP;
	/* (a Python allocator's block is not malloc's to measure: its size
	 * is the window's, below) */
	size_t n = allocator == MR_MUNMAP ? len : sampling || tracker_pymem ? 0 : usable(p);
	if (!sampling && order_ok() && order_put(OREC_FREE, allocator, (uintptr_t)p, len, 0, n)) {
		tracker_guard = 0;
		return;
	}
	lock_stream();
	uint64_t est = 0;
	/* when sampling, only a block that was sampled (another one may
	 * share its filter counter) */
	if (ACTIVE() && (!sampling || sample_take((uintptr_t)p, &est))) {
		thread_current();
		mr_w_free(&writer, allocator, (uintptr_t)p, len);
		if (window_on) {
			if (allocator == MR_MUNMAP) {
				win_unmap((uintptr_t)p, len);
			} else {
				/* a Python allocator's block: its size is known
				 * from the window (it is wrapped only in one) */
				uint64_t size = win_take((uintptr_t)p);
				if (tracker_pymem && !sampling)
					n = size;
			}
		}
		heap_sub(sampling ? est : n);
	}
	unlock();
	tracker_guard = 0;
}

static void *realloc_call(int allocator, void *old, size_t nmemb, size_t size)
{
	return allocator == MR_REALLOC ? real.realloc(old, size)
				       : real.reallocarray(old, nmemb, size);
}

/* realloc when sampling: recorded when the old block was a sample
 * (freed, or moved if the new one is one too) or the new one is. */
static void *sampled_realloc(int allocator, void *old, size_t nmemb, size_t size, size_t total)
{
	int old_maybe = old && !tracker_skip_free(old);
	int new_sampled = total && tracker_take(total);
	if (!old_maybe && !new_sampled)
		return realloc_call(allocator, old, nmemb, size);
	struct capture c;
	tracker_guard = 1;
	if (new_sampled)
		capture(&c);
	else
		thread_fresh();
	lock_stream();
	/* under the lock, so that no other thread is handed `old` before
	 * its release is written */
	void *p = realloc_call(allocator, old, nmemb, size);
	uint64_t est = 0;
	int old_sampled = old_maybe && (p || total == 0) && sample_take((uintptr_t)old, &est);
	new_sampled = new_sampled && p;
	if (same_stream() && (old_sampled || new_sampled)) {
		uint64_t est_new = new_sampled ? sample_put((uintptr_t)p, total) : 0;
		new_sampled = est_new != 0; /* kept before it is written */
		thread_current();
		heap_sub(est);
		live_heap += est_new;
		uint32_t stack = new_sampled ? intern(&c) : 0;
		if (old_sampled && new_sampled)
			mr_w_move(&writer, allocator, (uintptr_t)old, 0, (uintptr_t)p, total, stack);
		else if (old_sampled)
			mr_w_free(&writer, allocator, (uintptr_t)old, 0);
		else if (new_sampled)
			mr_w_alloc(&writer, allocator, (uintptr_t)p, total, stack);
		if (window_on) {
			if (old_sampled)
				win_take((uintptr_t)old);
			if (new_sampled)
				win_add((uintptr_t)p, total);
		}
	}
	unlock();
	tracker_guard = 0;
	return p;
}

/* realloc of a Python allocator (hooks.c's wrapper, with tracker_pymem
 * set): the release of old is written first, then the allocator is
 * called, outside the lock, then the new block is written. Not under the
 * lock as tracker_realloc does it: the call may take the Python
 * allocator's own locks (tracemalloc's, when it runs beneath), and a
 * thread holding one of those may be allocating into the hooks, waiting
 * for the tracker's. Writing the release first keeps the order true: no
 * other thread can be handed old before it is written. When the
 * allocator fails, old stays live though its release was written (only
 * out of memory). */
void *tracker_pymem_realloc(void *old, size_t size)
{
	const struct pymem *py = tracker_pymem;
	if (old && !tracker_skip_free(old))
		tracker_free(MR_FREE, old, 0);
	int take = tracker_take(size);
	tracker_guard = 1;
	void *p = py->realloc(py->ctx, old, size);
	tracker_guard = 0;
	if (p && take)
		tracker_alloc(MR_REALLOC, p, size);
	return p;
}

void *tracker_realloc(int allocator, void *old, size_t nmemb, size_t size)
{
	struct capture c;
	size_t total;
	int overflow = __builtin_mul_overflow(nmemb, size, &total);
	if (tracker_sampling() && !overflow)
		return sampled_realloc(allocator, old, nmemb, size, total);
	tracker_guard = 1;
	capture(&c);
	size_t old_n = old ? usable(old) : 0;
	lock_stream();
	void *p = realloc_call(allocator, old, nmemb, size);
	if (same_stream() && !overflow) {
		thread_current();
		if (p && old) {
			mr_w_move(&writer, allocator, (uintptr_t)old, 0, (uintptr_t)p, total, intern(&c));
			heap_sub(old_n);
			live_heap += usable(p);
		} else if (p) {
			mr_w_alloc(&writer, allocator, (uintptr_t)p, total, intern(&c));
			live_heap += usable(p);
		} else if (old && total == 0) {
			mr_w_free(&writer, allocator, (uintptr_t)old, 0); /* realloc(p, 0) frees */
			heap_sub(old_n);
		}
		if (window_on) {
			if (old && (p || total == 0))
				win_take((uintptr_t)old);
			if (p)
				win_add((uintptr_t)p, total);
		}
	}
	unlock();
	tracker_guard = 0;
	return p;
}

void *tracker_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	struct capture c;
	tracker_guard = 1;
	capture(&c);
	lock_stream();
	void *p = real.mremap(old, old_len, new_len, flags, new_addr);
	if (same_stream() && p != MAP_FAILED) {
		thread_current();
		mr_w_move(&writer, MR_MREMAP, (uintptr_t)old, old_len, (uintptr_t)p, new_len,
			  intern(&c));
		heap_sub(old_len);
		live_heap += new_len;
		if (window_on) {
			win_unmap((uintptr_t)old, old_len);
			win_add((uintptr_t)p, new_len);
		}
	}
	unlock();
	tracker_guard = 0;
	return p;
}
