/*
 * order.c - the order of events without a lock per event: an allocation
 * or a release whose stack needs nothing of the stream's (no new node, no
 * new thread) takes a number from one counter, puts the event in its
 * thread's ring, and goes on; the lock's holder writes the rings out in
 * the counter's order.
 *
 * Why the counter's order is an order in which the events happened: a
 * release takes its number before the block is given back (the hook runs
 * before free), an allocation after it was handed out (after malloc
 * returned). A block freed by one thread and handed to another passes
 * through the allocator's own synchronisation, so the release's number
 * was taken before the allocation's: both are changes of one word, whose
 * changes have one order that agrees with what happened before what.
 * Numbers are handed out without gaps, and the writer writes number n
 * only after n - 1: what the stream holds at any moment is all the events
 * up to some number, never one without an event that came before it.
 *
 * The lock still carries everything else (new stack nodes, threads,
 * moves, sampling, the API's window, the memory records, the end). Taking
 * it closes the counter (its low bit), then waits for the numbers handed
 * out before to reach the rings and writes them: the holder writes into
 * the stream as before, after every numbered event and before any later
 * one. A thread that finds the counter closed (its number taken then is
 * void: it puts a void event in its ring) takes the lock as before. The
 * one exception: the thread of the only ring leaves the counter open,
 * and only writes its ring out (order_alone, internal.h).
 *
 * Rings are used as soon as a thread has one, a thread alone too: it
 * then takes the lock once a batch, not twice an event, and the rescue
 * area's commit is made once a batch (bench/churn, one thread: 13% less
 * wall time). They are not used while sampling or the API's window is on
 * (order_on says whether they may be). Until they first are (order_used),
 * no event is numbered, so the lock's holder has nothing to close or
 * write out, and the rescue area's state need not say where the rings go
 * on from. A thread that read order_on set by the holder before it lets
 * go may number an event meanwhile: that event happens while the lock is
 * held, after everything written before, and its block is its thread's
 * alone until the event is in its ring.
 * A ring is written out when it holds ORDER_BATCH events and its thread
 * finds the lock free, when it is full, and whenever the lock is taken
 * (the sampler thread takes it at each interval). The first threads'
 * rings are in the rescue area: a program that ends without exit (Go's
 * exit_group) or is killed leaves them there with the area's state, which
 * says the number the stream goes on from, and memray-record writes them
 * in order after the rest.
 *
 * Between taking its number and putting the event in its ring a thread
 * cannot be stopped by anything of the tracker's: `holding` is set, so a
 * signal that would end the process waits (as it does for the lock), and
 * tracker_guard keeps a signal handler's allocations out.
 *
 * Owns: order_word, the rings and their table, drain_next.
 * Calls: the writer (mr_w_alloc, mr_w_free, mr_w_switch, under the lock).
 */
#define _GNU_SOURCE
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

union hot_word order_word_line __attribute__((aligned(64)));
/* the lock's holder's, written at every write-out, in a line apart from
 * order_on, which every thread reads at every event */
uint64_t drain_next __attribute__((aligned(64)));
int order_on __attribute__((aligned(64)));
struct mr_oring *order_alone;
int order_used;

/* The rings in use by threads of this process; changed under the lock.
 * shared[k]: rings[k] is in the rescue area. */
#define MAX_RINGS 1024
static struct mr_oring *rings[MAX_RINGS];
static unsigned char shared[MAX_RINGS];
static int nrings;
static int last_ring;            /* the ring written from last */
static struct mr_oring *spare;   /* a private ring of a thread that ended */
static unsigned char area_used[MR_RESCUE_RINGS];

/* Whether ring r's next event is number n. */
static inline int ring_has(struct mr_oring *r, uint64_t n)
{
	if (r->taken == r->seen) {
		r->seen = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
		if (r->taken == r->seen)
			return 0;
	}
	return r->e[r->taken % ORING].seq == n;
}

/* Rings written from since the lock was taken: their slots are given
 * back (head) once the rescue area has what was written (unlock). */
#define DIRTY_MAX 64
static struct mr_oring *dirty[DIRTY_MAX];
int order_dirty;

static inline void mark_dirty(struct mr_oring *r)
{
	if (r->listed)
		return;
	r->listed = 1;
	if (order_dirty < DIRTY_MAX)
		dirty[order_dirty] = r;
	order_dirty++; /* past DIRTY_MAX: every ring (order_give_back) */
}

/* Locked, after the rescue area's commit: the slots written out are the
 * threads' again. (Before, a thread dying in the middle of a write-out
 * could have had a slot taken again whose event the area had not yet,
 * and memray-record's rescue would have stopped there.) */
void order_give_back(void)
{
	if (order_dirty <= DIRTY_MAX) {
		for (int i = 0; i < order_dirty; i++) {
			__atomic_store_n(&dirty[i]->head, dirty[i]->taken, __ATOMIC_RELEASE);
			dirty[i]->listed = 0;
		}
	} else {
		for (int k = 0; k < nrings; k++) {
			__atomic_store_n(&rings[k]->head, rings[k]->taken, __ATOMIC_RELEASE);
			rings[k]->listed = 0;
		}
	}
	order_dirty = 0;
}

static inline void emit(const struct mr_orec *e)
{
	if (e->kind == OREC_VOID)
		return;
	if (writer.cur_thread != e->thread)
		mr_w_switch(&writer, e->thread);
	if (e->kind == OREC_ALLOC) {
		mr_w_alloc(&writer, e->allocator, e->addr, e->size, e->stack);
		live_heap += e->heap;
	} else {
		mr_w_free(&writer, e->allocator, e->addr, e->size);
		heap_sub(e->heap);
	}
}

/* Writes the events numbered from drain_next up to upto (not included),
 * or fewer: it stops at a number no ring holds yet. A ring's events in a
 * row are written in one go, and its head moves once. (The writer's sink
 * commits to the rescue area only between records written outside this,
 * so drain_next is set at the end.) Locked. */
static void drain(uint64_t upto)
{
	uint64_t n = drain_next;
	int k = last_ring;
	/* a child made past the fork handlers shares the area's rings with
	 * its parent: it must never take from them (see order_ok) */
	int area = rmp->area != NULL;
	while (n < upto) {
		if (k >= nrings || (shared[k] && !area) || !ring_has(rings[k], n)) {
			/* another thread's turn: the ring whose next event is n */
			for (k = 0; k < nrings; k++)
				if ((!shared[k] || area) && ring_has(rings[k], n))
					break;
			if (k == nrings) {
				k = 0;
				break;
			}
		}
		struct mr_oring *r = rings[k];
		uint32_t h = r->taken, t = r->seen;
		do {
			emit(&r->e[h % ORING]);
			h++;
			n++;
			if (h == t)
				t = r->seen = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
		} while (h != t && n < upto && r->e[h % ORING].seq == n);
		r->taken = h;
		mark_dirty(r);
	}
	drain_next = n;
	last_ring = k;
}

/* The lock was just taken and the counter closed at upto: every event
 * numbered before is written. The numbers handed out last may not be in
 * their rings yet: their threads are past the counter and put them there
 * without waiting for anything. */
void order_close_wait(uint64_t upto)
{
	for (unsigned spins = 0; drain(upto), drain_next < upto; spins++) {
		if (spins < 1000) {
			__builtin_ia32_pause();
			continue;
		}
		/* a child made past the fork handlers (a raw clone): the
		 * threads that held those numbers are not in it */
		if (getpid() != my_pid) {
			drain_next = upto;
			break;
		}
		/* its thread was preempted there: a sleep, not a yield, which
		 * would leave it no processor if this thread's priority is a
		 * real-time one above its own */
		struct timespec nap = { 0, 20000 };
		nanosleep(&nap, NULL);
	}
}

/* Writes what the rings hold, up to the numbers handed out by now (not
 * for ever, while other threads go on). Locked. */
void order_drain_locked(void)
{
	drain(__atomic_load_n(&order_word, __ATOMIC_ACQUIRE) >> 1);
}

/* A thread's ring holds a batch and the lock is free: it writes the rings
 * out, unless another thread took the lock first. */
void order_drain_try(void)
{
	if (!lock_try())
		return;
	__atomic_store_n(&lock_owner, &holding, __ATOMIC_RELAXED);
	holding = 1;
	order_drain_locked();
	unlock();
}

/* The calling thread's ring is full: it waits for the lock and writes the
 * rings out. 0 if that made no room (an event numbered before is still on
 * its way): the event goes the locked way. */
int order_make_room(struct mr_oring *r)
{
	lock_stream_open();
	order_drain_locked();
	unlock();
	r->head_seen = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
	return r->tail - r->head_seen < ORING;
}

/* Whether rings may be used: a thread has one, and neither sampling nor
 * the API's window is on (they need the lock at every event). One word,
 * read twice an event (order_ok). A thread alone uses a ring of its own
 * memory only when there is no rescue area: one that ends without exit
 * or is killed would lose what its ring holds, where under the lock
 * each event goes to the area (when there are several, that is the
 * price of the 33rd thread on). Locked, after any of them changed. */
void order_gate(void)
{
	order_alone = nrings == 1 ? rings[0] : NULL;
	int alone_ok = nrings > 1 || (nrings == 1 && (shared[0] || !rmp->area));
	__atomic_store_n(&order_on, alone_ok && !tracker_sampling() && !window_on,
			 __ATOMIC_RELAXED);
}

static void ring_reset(struct mr_oring *r)
{
	r->head = r->tail = r->seen = r->head_seen = r->taken = r->listed = 0;
}

/* The calling thread gets a ring, if it has none and is not ending: one
 * of the rescue area's while there are some left, else one of its own.
 * Locked, and no event is numbered while the table changes: the counter
 * is closed (the caller has no ring, so it is not order_alone's thread),
 * or no thread has a ring yet. */
void order_ring_attach(void)
{
	if (ts.ring || ts.exiting || nrings == MAX_RINGS)
		return;
	struct mr_rescue *a = rmp->area;
	struct mr_oring *r = NULL;
	int in_area = 0;
	for (int i = 0; a && i < MR_RESCUE_RINGS; i++)
		if (!area_used[i]) {
			area_used[i] = 1;
			r = &a->ring[i];
			in_area = 1;
			break;
		}
	if (!r && spare) {
		r = spare;
		memcpy(&spare, r->e, sizeof(spare)); /* (the next spare) */
	}
	if (!r && !(r = raw_map(sizeof(*r))))
		return;
	ring_reset(r);
	rings[nrings] = r;
	shared[nrings] = (unsigned char)in_area;
	nrings++;
	ts.ring = r;
	ts.ring_shared = in_area;
	order_used = 1; /* (the area's next state says where the rings go on from) */
	order_gate();
}

/* The calling thread ends: its ring, written out, goes back. Locked: no
 * event is numbered meanwhile (the counter is closed, or the ring is the
 * only one, order_alone). */
void order_ring_detach(void)
{
	struct mr_oring *r = ts.ring;
	if (!r)
		return;
	ts.ring = NULL;
	order_give_back(); /* (the ring leaves the table) */
	for (int k = 0; k < nrings; k++)
		if (rings[k] == r) {
			nrings--;
			rings[k] = rings[nrings];
			shared[k] = shared[nrings];
			break;
		}
	order_gate();
	last_ring = 0;
	struct mr_rescue *a = rmp->area;
	if (ts.ring_shared) {
		if (a && r >= a->ring && r < a->ring + MR_RESCUE_RINGS)
			area_used[r - a->ring] = 0;
	} else {
		memcpy(r->e, &spare, sizeof(spare));
		spare = r;
	}
	ts.ring_shared = 0;
}

/* A forked child: only the calling thread is left, and every ring was
 * written out under the fork's lock. The counter opens where it is; the
 * child's thread gets a ring again when it next records (the area's are
 * its parent's). */
void order_forked(void)
{
	__atomic_store_n(&order_word, order_word & ~(uint64_t)1, __ATOMIC_RELAXED);
	drain_next = order_word >> 1; /* (the parent's threads' numbers: void here) */
	nrings = 0;
	last_ring = 0;
	order_dirty = 0;
	memset(area_used, 0, sizeof(area_used));
	order_gate();
	spare = NULL; /* (the parent's threads' rings stay mapped, unused) */
	ts.ring = NULL;
	ts.ring_shared = 0;
}
