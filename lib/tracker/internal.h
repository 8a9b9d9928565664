/*
 * internal.h - what the recording parts of libmemray-tracker.so share
 * (tracker.h is what the hooks see).
 *
 * One writer (struct mr_writer) behind one mutex writes every record of
 * the process. Events whose stacks need nothing new are numbered by a
 * counter and wait in their thread's ring until the lock's next holder
 * writes them in that order (order.c); the rest are written under the
 * lock, after every event numbered before. Either way the stream's order
 * of events is an order in which they happened. Chunks go to the
 * descriptor memray-record passed in MEMRAY_FD, a pipe to memray-record
 * itself. Stacks are taken outside the lock; the lock covers interning
 * new ones in the stack trie and encoding the events.
 *
 * The parts, each in a file of its own that says what it owns and what it
 * may call:
 *
 *   boot.c      the bootstrap allocator; finding the real functions
 *   sink.c      the lock, the writer and where its chunks go
 *   stack.c     capturing a stack and interning it in the stack trie:
 *               native, Python and hybrid stacks, the evaluation loop
 *   threads.c   the stream's threads and their names
 *   record.c    the events: an allocation, a release, a move
 *   order.c     events numbered without the lock, in per-thread rings
 *   blocks.c    tables of blocks by address
 *   sample.c    sampling (memray-record --sample-bytes)
 *   modules.c   the loaded objects, as module records
 *   sampler.c   the sampler thread: memory records, flushing, polling
 *   lifecycle.c start (the constructor), fork, signal and finish
 *   attach.c    attaching to a running program (memray-record --pid)
 *   api.c       the in-process API (memray.h) and its window
 *   exec.c      an exec in the recorded process
 *
 * Everything here is hidden (tracker.h's pragma): only memray.h's
 * functions, the hooks and memray_attach leave the library.
 */
#ifndef MEMRAY_TRACKER_INTERNAL_H
#define MEMRAY_TRACKER_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <time.h>

#include "../stream.h"
#include "tracker.h"

#pragma GCC visibility push(hidden)

#define EXPORT __attribute__((visibility("default")))
#define MAX_FRAMES 256

/* ---- the lock and the writer (sink.c) ---------------------------------- */

/* The lock every record is written under: a futex word of the
 * tracker's own (0 free, 1 held, 2 held and waited for), as glibc's
 * normal mutex is, without its type checks and counters (about 10
 * instructions to take and let go where pthread's took 57, at every
 * event). lock_owner: the holder's &holding, set just after the word is
 * taken and cleared just before it is let go. */
extern int lock_word;
extern int *lock_owner;
void lock_wait(void) __attribute__((noinline, cold));
void lock_wake(void) __attribute__((noinline, cold));
/* Takes the lock unless it is still held at deadline (CLOCK_MONOTONIC):
 * 0, or -1 then (a signal handler's wait, tracker_signal_end). */
int lock_timed(const struct timespec *deadline);
/* Whether this thread holds the lock, from just after taking it to just
 * after letting it go; with lock_owner, a signal handler in this thread
 * knows it must not wait for the lock. */
extern __thread int holding __attribute__((tls_model("initial-exec")));
/* A signal that was to end the process while this thread held the lock,
 * raised again to this thread once it lets go (tracker_signal_end): only
 * this thread is sure to have it unblocked. */
extern __thread int deferred_sig __attribute__((tls_model("initial-exec")));
void raise_deferred(void) __attribute__((noinline, cold));

void rescue_open(const char *spec);
int rescue_env(char *buf, size_t n);
void rescue_attach(void);
void rescue_forget(void);

struct rescue_mirror;
void rescue_commit_slow(struct rescue_mirror *m);
extern size_t batch_len;
extern uint32_t batch_gen;
extern struct mr_writer writer;

/* What the tracker knows of its rescue area (area; NULL: none), in its
 * own memory: the current state (cur, whose index is k) and the other
 * one, with what the current one says of the batch and the open chunk.
 * Both states say the same of those between slow commits (see
 * rescue_commit_slow). rmp points to it: in a page of its own that a
 * child made by fork finds zeroed (MADV_WIPEONFORK), so that one made
 * past the fork handlers (_Fork, a raw clone), which would go on
 * recording as its parent, never touches the area its parent shares. */
struct rescue_mirror {
	/* alone in its cache line: a thread whose ring is in the area reads
	 * it at every event, and the lock's holder writes the rest at every
	 * commit */
	struct mr_rescue *area;
	char area_line[56];
	struct mr_rescue_state *cur, *other;
	uint8_t *chunk; /* the open chunk's buffer */
	uint32_t k, chunk_len, batch_len, batch_gen;
	uint16_t seq;
};
extern struct rescue_mirror *rmp;

extern uint64_t drain_next; /* the number of the next event to write */

extern int order_used; /* rings were used (order.c): never cleared */
extern int order_dirty; /* rings written from, whose slots are not given back */
void order_give_back(void);

/* Where the rings' events go on from (see struct mr_rescue_state): only
 * once rings were used (until then the area's rings are empty). */
static inline __attribute__((always_inline)) void rescue_regs(struct mr_rescue_state *n)
{
	n->rings = order_used;
	if (!order_used)
		return;
	n->next_event = drain_next;
	n->last_addr = writer.last_addr;
	n->alloc_addr = writer.alloc_addr;
	n->next_node = writer.next_node; /* (stack fields count back from it) */
	n->last_age = writer.last_age;
	n->cur_thread = writer.cur_thread;
}

/* At each release of the lock: what was added to the open chunk since the
 * last commit (a record or two: a word or two), copied into the rescue
 * area, with the length and counts, up to the last whole record, into
 * the state not in use, which then becomes the current one (see struct
 * mr_rescue). The open chunk only grows until it is written (its sequence
 * number moves on); the batch only grows until it is let go (batch_gen
 * moves on): those go the slow way. */
static inline __attribute__((always_inline)) void rescue_commit(struct rescue_mirror *m)
{
	struct mr_rescue *a = m->area;
	if (__builtin_expect(m->batch_len != batch_len || m->batch_gen != batch_gen ||
			     m->seq != writer.seq || m->chunk_len > writer.len, 0)) {
		rescue_commit_slow(m);
		return;
	}
	/* whole words, from the one the last commit ended in: MR_CHUNK_MAX
	 * is a multiple of 8, so never past either array; mostly 16 bytes
	 * at once (what lies past the record's end is not named) */
	size_t from = m->chunk_len & ~(size_t)7;
	if (__builtin_expect(from + 16 <= MR_CHUNK_MAX && writer.len <= from + 16, 1)) {
		uint8_t w[16];
		__builtin_memcpy(w, writer.chunk + from, 16);
		__builtin_memcpy(m->chunk + from, w, 16);
	} else {
		for (size_t i = from; i < writer.len; i += 8) {
			uint64_t w;
			__builtin_memcpy(&w, writer.chunk + i, 8);
			__builtin_memcpy(m->chunk + i, &w, 8);
		}
	}
	struct mr_rescue_state *n = m->other;
	n->chunk_len = (uint32_t)writer.len;
	__builtin_memcpy(&n->n_records, &writer.n_records, 4 * sizeof(uint64_t));
	n->time_us = writer.last_time_us;
	rescue_regs(n);
	/* (the process may end at any point: the copy before the switch) */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	__atomic_store_n(&a->cur, m->k ^ 1, __ATOMIC_RELAXED);
	m->other = m->cur;
	m->cur = n;
	m->k ^= 1;
	m->chunk_len = (uint32_t)writer.len;
}

/* ---- the order of events (order.c) ------------------------------------ */

/* A thread's ring of events numbered without the lock: struct mr_oring
 * (stream.h), in the rescue area when there is one. */
#define OREC_VOID MR_OREC_VOID
#define OREC_ALLOC MR_OREC_ALLOC
#define OREC_FREE MR_OREC_FREE
#define ORING MR_ORING
/* Per-thread state. The stack cache (stack.c) holds the thread's previous
 * stack; it lives in memory of its own, so that the static TLS stays
 * small: a library dlopen'ed into a running program (memray-record --pid)
 * gets its static TLS from the few hundred bytes glibc keeps spare. */
struct tcache;
struct tstate {
	uint32_t gen;   /* the stream the rest belongs to (see stream_gen) */
	uint32_t index; /* thread id in the stream; 0 until registered */
	struct tcache *cache; /* NULL: none (yet, or the thread is exiting) */
	struct mr_oring *ring; /* its events not yet written (order.c); NULL: none */
	int ring_shared; /* the ring is in the rescue area */
	int gate;        /* its slot at stack.c's fork gate (index + 1; -1: none) */
	int exiting;    /* past its key destructor: nothing more is mapped */
};
extern __thread struct tstate ts __attribute__((tls_model("initial-exec")));

/* A word changed at every event, alone in its cache line: the words
 * every thread reads at every event (order_on, tracker_sample_bytes,
 * rmp->area) went from processor to processor with the counter and the
 * heap's size when they shared lines with them (bench/threads.c, 4 M
 * events, 2 threads: 0.187 -> 0.137 s; 8 threads: 0.191 -> 0.148 s). */
union hot_word {
	uint64_t v;
	char line[64];
};
/* The counter: twice the next number, plus 1 while the lock holder has
 * it closed (numbers taken then are void). */
extern union hot_word order_word_line;
#define order_word (order_word_line.v)
void order_close_wait(uint64_t upto) __attribute__((noinline));
/* The lock was just taken: the counter closes, and every event numbered
 * before is written (order.c); mostly there is none. */
static inline __attribute__((always_inline)) void order_close(void)
{
	uint64_t w = __atomic_fetch_or(&order_word, 1, __ATOMIC_ACQ_REL);
	if (__builtin_expect(w >> 1 != drain_next, 0))
		order_close_wait(w >> 1);
}
/* The only ring, while there is one (else NULL): its thread, taking the
 * lock, leaves the counter open, as no other thread can number an event
 * (a thread without a ring takes the lock to get one). It writes out
 * what its ring holds, and nothing is numbered while it holds the lock:
 * it numbers nothing then, and its signal handlers record nothing
 * (tracker_guard, set where the thread takes the lock: the hooks, and
 * thread_gone; at_prepare is the exception, and an event a handler puts
 * in the ring then is written after at_parent, and never in the child).
 * Changed under the lock. */
extern struct mr_oring *order_alone;
void order_drain_locked(void) __attribute__((noinline));
void order_drain_try(void) __attribute__((noinline));
int order_make_room(struct mr_oring *r) __attribute__((noinline, cold));
/* Events a ring gathers before its thread writes the rings out: the
 * writer's memory then stays with one processor for a while, where an
 * event at a time moved it between processors at every event. */
#define ORDER_BATCH 64
/* Rings may be used (see order_gate). */
extern int order_on;
void order_gate(void);
void order_ring_attach(void);
void order_ring_detach(void);
void order_forked(void);

/* Takes the lock if it is free. */
static inline __attribute__((always_inline)) int lock_try(void)
{
	int free_word = 0;
	return __atomic_compare_exchange_n(&lock_word, &free_word, 1, 0, __ATOMIC_ACQUIRE,
					   __ATOMIC_RELAXED);
}

/* Lets go of the lock, waking a waiter if there is one. */
static inline __attribute__((always_inline)) void lock_release(void)
{
	/* the counter opens (only the holder closes it) */
	if (__atomic_load_n(&order_word, __ATOMIC_RELAXED) & 1)
		__atomic_fetch_and(&order_word, ~(uint64_t)1, __ATOMIC_RELEASE);
	__atomic_store_n(&lock_owner, NULL, __ATOMIC_RELAXED);
	if (__builtin_expect(__atomic_exchange_n(&lock_word, 0, __ATOMIC_RELEASE) != 1, 0))
		lock_wake();
}

/* Takes the lock and leaves the counter open: the holder writes nothing
 * but what the rings hold. */
static inline __attribute__((always_inline)) void lock_stream_open(void)
{
	if (__builtin_expect(!lock_try(), 0))
		lock_wait();
	__atomic_store_n(&lock_owner, &holding, __ATOMIC_RELAXED);
	holding = 1;
}

static inline __attribute__((always_inline)) void lock_stream(void)
{
	if (__builtin_expect(!lock_try(), 0))
		lock_wait();
	__atomic_store_n(&lock_owner, &holding, __ATOMIC_RELAXED);
	holding = 1;
	/* (until rings are used no event is numbered: see order.c) */
	if (order_used) {
		if (order_alone && order_alone == ts.ring) {
			if (__atomic_load_n(&order_word, __ATOMIC_RELAXED) >> 1 != drain_next)
				order_drain_locked(); /* (all in its ring already) */
		} else {
			order_close();
		}
	}
}

static inline __attribute__((always_inline)) void unlock(void)
{
	struct rescue_mirror *m = rmp;
	if (m->area)
		rescue_commit(m);
	if (order_dirty)
		order_give_back();
	lock_release();
	holding = 0;
	if (__builtin_expect(deferred_sig != 0, 0))
		raise_deferred();
}

extern struct mr_writer writer;
extern int out_fd;              /* the stream's descriptor; -1: none */
extern dev_t out_dev;           /* and what it must remain */
extern ino_t out_ino;
extern int follow;              /* MEMRAY_FOLLOW: children are recorded too */
int sink(void *ctx, const uint8_t *chunk, size_t len);
int batch_write(void);
void flush_all(void);
/* Forgets the chunks gathered and not yet written (a forked child's). */
void sink_discard(void);
void pipe_id(char *buf, size_t n, dev_t dev, ino_t ino);
int adopt(long fd);
int adopt_fd(const char *s);
int reopen_from_parent(const char *s);
void recorder_from_env(void);
int recorder_env(char *buf, size_t n);
int fd_is_ours(int fd);
int reopen_pipe(int parent_fd);

/* ---- the process's recording (lifecycle.c) ----------------------------- */

extern pid_t my_pid;            /* the process the stream is of */
extern uint64_t header_flags;
/* Counts the streams this process has started (a forked child's, a new
 * attach): a thread's cached stack and index belong to one of them. */
extern uint32_t stream_gen;
extern struct timespec start_mono;

static inline uint64_t now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)(t.tv_sec - start_mono.tv_sec) * 1000000u +
	       (uint64_t)((t.tv_nsec - start_mono.tv_nsec) / 1000);
}

void at_prepare(void);
void at_parent(void);
void at_child(void);
void stream_start(uint16_t seq);
void stream_reset(void);
int stream_end(void);

/* ---- memory of the tracker's own (boot.c) ------------------------------ */

extern size_t boot_used;

/* Memory mapped directly, so that the tracker's own tables never touch
 * the program's heap. */
static inline void *raw_map(size_t n)
{
	void *p = real.mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* ---- stacks (stack.c) and threads (threads.c) --------------------------- */

/* A captured stack, before interning. */
struct capture {
	int n;         /* frames, root first */
	int same;      /* leading frames equal to one of the thread's kept stacks */
	int way;       /* which one (with same > 0) */
	uintptr_t ips[MAX_FRAMES];
	int pyn, pysame; /* the same for Python frames, in the thread's state */
	int hn, hsame;   /* the same for a hybrid stack (hsame -1: all of it,
			  * not merged again) */
	int hparts, hleft; /* the merge's: see stack.c's pystate */
	int why;         /* Python stacks only, none found: enum py_none */
	int cut;         /* deeper than is kept: CUT_PY or CUT_NATIVE, and
			  * the stack's root is a label that says so (Python
			  * stacks without native ones: known when pysame is
			  * 0, the only time it is read) */
};
enum { CUT_PY = 1, CUT_NATIVE = 2 }; /* (stack.c: CUT_PY is 1) */

extern int native_stacks;
extern int python_stacks;       /* the program is CPython and frames are walked */
extern int unwind_started;
extern char self_path[4096];    /* this library */

/* unwind.c: the tracker's own unwinder (MEMRAY_UNWIND=libunwind leaves
 * every stack to libunwind; =check unwinds both ways and says at the end
 * how often they differed). */
enum { UNWIND_FAST, UNWIND_LIBUNWIND, UNWIND_CHECK };
extern int unwind_mode;
void unwind_setup(void);
/* The return addresses of the calling thread, innermost first, as
 * unw_backtrace gives them; -1 where libunwind must do it. */
int fast_backtrace(void **ips, int max);
void unwind_thread_exit(void);
void unwind_report(void);

/* Unwinds the calling thread, outside the lock. */
void capture(struct capture *c);
/* The capture's leaf node, if the thread has it without the trie: 1. */
int intern_kept(const struct capture *c, uint32_t *node);
/* Interns the capture and returns its leaf node. Locked. */
uint32_t intern(const struct capture *c);
/* Forgets what the calling thread cached for an earlier stream. */
void thread_fresh(void);
/* The calling thread is past its key destructor: its caches are unmapped. */
void stack_thread_exit(void);
/* Drops the stack trie of an earlier stream. */
void trie_forget(void);
void stack_options(int py, int native, uint64_t flags);
void find_self(void);
void unwinder_start(void);
/* Around a fork: no thread may be inside libunwind (see stack.c). */
void gate_close(void);
void gate_open(void);
void gate_forked(void);

/* Whether a capture made before taking the lock is of the stream now
 * being written. Locked. */
static inline int same_stream(void)
{
	return ACTIVE() && ts.gen == __atomic_load_n(&stream_gen, __ATOMIC_RELAXED);
}

extern pthread_key_t thread_key;
void thread_gone(void *arg);
void thread_announce(const char *given);
void threads_forget(void);

/* Makes the calling thread the stream's current thread. Locked. */
static inline void thread_current(void)
{
	/* the common case inline: this thread announced in this stream, and
	 * the last record was its own already */
	if (ts.index && ts.gen == __atomic_load_n(&stream_gen, __ATOMIC_RELAXED) &&
	    writer.cur_thread == ts.index)
		return;
	thread_announce(NULL);
}

/* ---- events (record.c) -------------------------------------------------- */

extern union hot_word live_heap_line; /* the heap's size, as far as it is known */
#define live_heap (live_heap_line.v)

static inline void heap_sub(uint64_t n)
{
	live_heap = live_heap > n ? live_heap - n : 0;
}

/* ---- tables of blocks by address (blocks.c) ---------------------------- */

struct wblock {
	uintptr_t addr; /* 0: empty */
	uint64_t size;
};
struct btab {
	struct wblock *v;
	size_t cap, n;
};
void btab_clear(struct btab *t);
int btab_put(struct btab *t, uintptr_t a, uint64_t size, uint64_t *replaced);
int btab_take(struct btab *t, uintptr_t a, uint64_t *size);

/* ---- sampling (sample.c) ------------------------------------------------ */

extern uint64_t sample_seed;    /* --seed; 0: from the clock */
void set_active(int on);
void sample_setup(uint64_t gap, uint64_t seed);
uint64_t sample_put(uintptr_t a, uint64_t size);
int sample_take(uintptr_t a, uint64_t *est);

/* ---- modules (modules.c) and the sampler thread (sampler.c) ------------ */

int modules_sync(int force);
void modules_forget(void);

extern uint64_t interval_us;
/* Each sampler belongs to one stream (see sampler.c). */
extern unsigned sampler_gen;
void memory_record(void);
void sampler_start(void);
void sampler_forked(void);

/* ---- attaching (attach.c), the API (api.c), exec (exec.c) -------------- */

/* Attached to a running program (memray-record --pid): the hooks are
 * reached through patched GOT entries, and ctl_fd's hang-up ends the
 * recording. */
extern int attached;
extern int ctl_fd;
extern int attach_busy;         /* an attached recording has not ended yet */
int high_fd(int fd);
void in_process_setup(int native, long interval, uint64_t flags, uint64_t gap, uint64_t seed);
void attach_end(void);

extern int api_on;              /* recording through the in-process API (memray.h) */
extern int window_on;
void win_add(uintptr_t a, uint64_t size);
/* The size of a window's block released (0 when it was none). */
uint64_t win_take(uintptr_t a);
void win_unmap(uintptr_t a, uint64_t len);

extern char native_env[8];      /* MEMRAY_NATIVE for an exec'd image */

/* ---- an event without the lock (order.c) ------------------------------- */

/* Whether the event can be put in the calling thread's ring: it has one
 * and is announced in the stream, and nothing asks for the lock's
 * bookkeeping (sampling, the API's window). Read again once numbered. */
static inline int order_ok(void)
{
	/* (a ring in the rescue area only while the area is this process's:
	 * never in a child made past the fork handlers, see rescue_mirror) */
	return __atomic_load_n(&order_on, __ATOMIC_RELAXED) && ts.ring && ts.index &&
	       (!ts.ring_shared || rmp->area);
}

/* Numbers the event and puts it in the calling thread's ring (see
 * order.c): 1, or 0 when it must be written under the lock (the counter
 * is closed, the ring is full, or the stream changed since the event's
 * stack was taken). */
static inline __attribute__((always_inline)) int order_put(int kind, int allocator, uintptr_t addr,
							   uint64_t size, uint32_t stack, uint64_t heap)
{
	struct mr_oring *r = ts.ring;
	if (__builtin_expect(r->tail - r->head_seen >= ORING, 0) && !order_make_room(r))
		return 0;
	holding = 1; /* a signal that ends the process waits (see order.c) */
	/* (one exchange that cannot fail: a number taken while the counter
	 * is closed is still a number, its event a void one) */
	uint64_t w = __atomic_fetch_add(&order_word, 2, __ATOMIC_ACQ_REL);
	/* numbered: what the lock's holder changed before is seen now */
	int ok = !(w & 1) && same_stream() && order_ok();
	struct mr_orec *e = &r->e[r->tail & (ORING - 1)];
	e->seq = w >> 1;
	e->kind = (uint8_t)(ok ? kind : OREC_VOID);
	e->allocator = (uint8_t)allocator;
	e->thread = ts.index;
	e->addr = addr;
	e->size = size;
	e->stack = stack;
	e->heap = heap;
	__atomic_store_n(&r->tail, r->tail + 1, __ATOMIC_RELEASE);
	/* (not before the event is in the ring, for a signal handler) */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	holding = 0;
	if (__builtin_expect(deferred_sig != 0, 0))
		raise_deferred();
	/* written out ORDER_BATCH at a time, by the thread that finds the
	 * lock free (see order.c) */
	if (__builtin_expect(r->tail - r->head_seen >= ORDER_BATCH, 0)) {
		r->head_seen = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
		if (r->tail - r->head_seen >= ORDER_BATCH &&
		    __atomic_load_n(&lock_word, __ATOMIC_RELAXED) == 0)
			order_drain_try();
	}
	return ok;
}

#pragma GCC visibility pop

#endif
