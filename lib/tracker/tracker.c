/*
 * tracker.c - the recording side of libmemray-tracker.so.
 *
 * One writer (struct mr_writer) behind one mutex carries every record of
 * the process, so the stream's order of events is an order in which they
 * happened. Chunks go to the descriptor memray-record passed in
 * MEMRAY_FD, a pipe to memray-record itself. Native stacks are unwound
 * with libunwind outside the lock; the lock covers interning them in the
 * stack trie and encoding the event.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "../sample.h"
#include "../stream.h"
#include "../util.h"
#include "got.h"
#include "memray.h"
#include "python.h"
#include "tracker.h"

#define MAX_FRAMES 256
#define TICK_MAX_US 50000 /* flush at least this often */

struct real_fns real;
int tracker_active;
__thread int tracker_guard __attribute__((tls_model("initial-exec")));

/* Per-thread state. The stack cache holds the thread's previous stack,
 * root first, with the trie node of each prefix: a new stack only interns
 * the frames below the point where it differs. It lives in memory of its
 * own, so that the static TLS stays small: a library dlopen'ed into a
 * running program (memray-record --pid) gets its static TLS from the few
 * hundred bytes glibc keeps spare. */
struct tcache {
	int depth;
	uintptr_t ips[MAX_FRAMES];
	uint32_t ids[MAX_FRAMES];
};
struct tstate {
	uint32_t gen;   /* the stream the rest belongs to (see stream_gen) */
	uint32_t index; /* thread id in the stream; 0 until registered */
	struct tcache *cache; /* NULL: none (yet, or the thread is exiting) */
	int exiting;    /* past its key destructor: nothing more is mapped */
};
static __thread struct tstate ts __attribute__((tls_model("initial-exec")));

/* Per-thread Python stacks: the frames just walked and the previous stack
 * with its trie nodes, in memory of their own (a thread's C stack may be
 * small, and static TLS should stay small). */
#define MAX_PY_FRAMES 2048
struct pystate {
	int seen; /* the thread has run Python code */
	int depth;
	struct pyent prev[MAX_PY_FRAMES];
	struct pyent cur[MAX_PY_FRAMES];
	/* hybrid stacks (--native on Python): native frames with the Python
	 * frames in place of the evaluation loop's; ip 0 marks a Python item */
	int hdepth;
	struct hitem {
		uintptr_t ip;
		struct pyent py;
	} hprev[MAX_PY_FRAMES + MAX_FRAMES], hcur[MAX_PY_FRAMES + MAX_FRAMES];
};
static uintptr_t eval_lo, eval_hi; /* the interpreter's evaluation loop */
static __thread struct pystate *pyts __attribute__((tls_model("initial-exec")));
static int python_stacks; /* the program is CPython and frames are walked */
#define PY_NODE (1ull << 63) /* a trie key holding a PYFRAME id */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Whether this thread holds the lock, from just after taking it to just
 * after letting it go; with the lock's owner field (set inside
 * pthread_mutex_lock, cleared inside pthread_mutex_unlock), a signal
 * handler in this thread knows it must not wait for the lock. */
static __thread int holding __attribute__((tls_model("initial-exec")));
/* A signal that was to end the process while this thread held the lock,
 * raised again to this thread once it lets go (tracker_signal_end): only
 * this thread is sure to have it unblocked. */
static __thread int deferred_sig __attribute__((tls_model("initial-exec")));
/* A signal is ending the stream: no new record is begun. */
static int signal_ending;

static inline __attribute__((always_inline)) void lock_stream(void)
{
	pthread_mutex_lock(&lock);
	holding = 1;
}

static __attribute__((noinline, cold)) void raise_deferred(void)
{
	int sig = deferred_sig;
	deferred_sig = 0;
	syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
}

static inline __attribute__((always_inline)) void unlock(void)
{
	pthread_mutex_unlock(&lock);
	holding = 0;
	if (__builtin_expect(deferred_sig != 0, 0))
		raise_deferred();
}
static struct mr_writer writer;
static int out_fd = -1;
static int native_stacks;
static uint64_t interval_us = 10000;
static struct timespec start_mono;
static pid_t my_pid;
static uint64_t header_flags;
static int saved_argc;
static char **saved_argv;
static void sampler_start(void);
static void stream_start(uint16_t seq);
static void set_active(int on);
static uint64_t live_heap;
static uintptr_t self_lo, self_hi; /* our own code, skipped in stacks */
static pthread_key_t thread_key;
static pthread_t sampler;
static dev_t out_dev;
static ino_t out_ino;
/* Attached to a running program (memray-record --pid): the hooks are
 * reached through patched GOT entries, and ctl_fd's hang-up ends the
 * recording. */
static int attached;
static int api_on; /* recording through the in-process API (memray.h) */
static int ctl_fd = -1;
/* Counts the streams this process has started (a forked child's, a new
 * attach): a thread's cached stack and index belong to one of them. */
static uint32_t stream_gen;

static uint64_t now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)(t.tv_sec - start_mono.tv_sec) * 1000000u +
	       (uint64_t)((t.tv_nsec - start_mono.tv_nsec) / 1000);
}

/* ---- bootstrap allocator ------------------------------------------------
 * dlsym may calloc before `real` is known; those few blocks come from
 * here and are never given back. Each block is preceded by its size. */

_Alignas(16) char boot_buf[BOOT_SIZE];
static size_t boot_used;

NO_TSAN void *boot_alloc(size_t size)
{
	size_t need = ((size + 15) & ~(size_t)15) + 16;
	size_t at = __atomic_fetch_add(&boot_used, need, __ATOMIC_RELAXED);
	if (at + need > sizeof(boot_buf) || need < size)
		return NULL;
	*(size_t *)(boot_buf + at) = size;
	return boot_buf + at + 16;
}


NO_TSAN size_t boot_size(const void *p)
{
	return *(const size_t *)((const char *)p - 16);
}

/* ---- finding the real functions ---------------------------------------- */

__attribute__((noreturn)) static void raw_exit(int status)
{
	syscall(SYS_exit_group, status);
	for (;;)
		;
}

NO_TSAN int tracker_resolve(void)
{
	static int state; /* 0 not yet, 1 in progress, 2 done */
	if (state == 2)
		return 1;
	if (state == 1)
		return 0;
	state = 1;
#define R(name) real.name = (__typeof__(real.name))dlsym(RTLD_NEXT, #name)
	R(calloc);
	R(malloc);
	R(free);
	R(realloc);
	R(reallocarray);
	R(posix_memalign);
	R(aligned_alloc);
	R(memalign);
	R(valloc);
	R(pvalloc);
	R(mmap);
	R(mmap64);
	R(munmap);
	R(mremap);
	R(malloc_usable_size);
	R(dlopen);
	R(dlclose);
	R(pthread_create);
	R(pthread_setname_np);
	R(prctl);
	R(execve);
	R(execvpe);
	R(_exit);
	R(_Exit);
#undef R
	if (!real._exit)
		real._exit = raw_exit;
	if (!real._Exit)
		real._Exit = raw_exit;
	state = 2;
	return 1;
}

/* ---- the sink ----------------------------------------------------------- */

/* Chunks are gathered into one write of up to BATCH bytes: one system
 * call and one wake-up of memray-record per 64 KiB, not per chunk; with
 * --follow-fork each chunk is written at once. */
static int follow; /* MEMRAY_FOLLOW: children are recorded too */
#define BATCH (64 * 1024)
static uint8_t batch[BATCH];
static size_t batch_len;

/* Writes the batch. SIGPIPE is blocked around the write so that a reader
 * that went away never kills the program; a failure stops recording. */
static int batch_write(void)
{
	if (batch_len == 0 || out_fd < 0)
		return 0;
	/* a child made without the fork handlers (_Fork, a raw clone) would
	 * write under its parent's pid and sequence numbers */
	if (follow && getpid() != my_pid) {
		set_active(0);
		out_fd = -1;
		batch_len = 0;
		return -1;
	}
	/* A program that closed every descriptor may since have opened a file
	 * of its own under our number: never write into it. */
	struct stat st;
	if (fstat(out_fd, &st) < 0 || st.st_dev != out_dev || st.st_ino != out_ino) {
		set_active(0);
		out_fd = -1;
		batch_len = 0;
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
	while (done < batch_len) {
		k = write(out_fd, batch + done, batch_len - done);
		if (k > 0)
			done += (size_t)k;
		/* cut short (EINTR, or part written) by a signal that is to
		 * end the process and waits for this: the stream is given up,
		 * its reader does not read */
		if (deferred_sig && done < batch_len) {
			k = -1;
			break;
		}
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
	if (short_write) {
		set_active(0);
		return -1;
	}
	return 0;
}

/* The writer's sink: called with the lock held, one whole chunk. */
static int sink(void *ctx, const uint8_t *chunk, size_t len)
{
	(void)ctx;
	if (batch_len + len > BATCH && batch_write() < 0)
		return -1;
	memcpy(batch + batch_len, chunk, len);
	batch_len += len;
	/* Processes sharing the pipe: each write one whole chunk of at most
	 * PIPE_BUF bytes, which the kernel never mixes with another's. */
	if (follow)
		return batch_write();
	return 0;
}

/* Sends everything encoded so far. Locked. */
static void flush_all(void)
{
	mr_w_flush(&writer);
	batch_write();
}

/* The return addresses of the calling thread, innermost first. */
#ifdef MEMRAY_TSAN
/* Step by step: unw_backtrace's fast path keeps a per-thread cache whose
 * key destructor runs after the sanitizer has let go of an exiting
 * thread. */
static int backtrace_ips(void **ips, int max)
{
	unw_context_t uc;
	unw_cursor_t c;
	int n = 0;
	if (unw_getcontext(&uc) < 0 || unw_init_local(&c, &uc) < 0)
		return 0;
	while (n < max && unw_step(&c) > 0) {
		unw_word_t ip;
		if (unw_get_reg(&c, UNW_REG_IP, &ip) < 0)
			break;
		ips[n++] = (void *)ip;
	}
	return n;
}
#else
static inline int backtrace_ips(void **ips, int max)
{
	return unw_backtrace(ips, max);
}
#endif

/* ---- the stack trie ----------------------------------------------------
 * Open addressing over (parent, ip) -> node id, in memory mapped directly
 * so the tracker's own tables never touch the program's heap. */

struct trie_slot {
	uintptr_t ip;
	uint32_t parent, id;
};
static struct trie_slot *trie;
static size_t trie_cap, trie_count;

static void *raw_map(size_t n)
{
	void *p = real.mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static size_t trie_hash(uint32_t parent, uintptr_t ip)
{
	uint64_t h = (uint64_t)ip * 0x9e3779b97f4a7c15ull ^ (uint64_t)parent * 0xc2b2ae3d27d4eb4full;
	return (size_t)(h ^ (h >> 29));
}

static int trie_grow(void)
{
	size_t cap = trie_cap ? trie_cap * 2 : 1 << 14;
	struct trie_slot *t = raw_map(cap * sizeof(*t));
	if (!t)
		return -1;
	for (size_t i = 0; i < trie_cap; i++) {
		if (!trie[i].id)
			continue;
		size_t j = trie_hash(trie[i].parent, trie[i].ip) & (cap - 1);
		while (t[j].id)
			j = (j + 1) & (cap - 1);
		t[j] = trie[i];
	}
	if (trie)
		real.munmap(trie, trie_cap * sizeof(*trie));
	trie = t;
	trie_cap = cap;
	return 0;
}

/* The node for (parent, ip), written to the stream if new. Locked. */
static uint32_t trie_node(uint32_t parent, uintptr_t ip)
{
	if (trie_count * 2 >= trie_cap && trie_grow() < 0)
		return parent;
	size_t j = trie_hash(parent, ip) & (trie_cap - 1);
	while (trie[j].id) {
		if (trie[j].ip == ip && trie[j].parent == parent)
			return trie[j].id;
		j = (j + 1) & (trie_cap - 1);
	}
	trie[j].ip = ip;
	trie[j].parent = parent;
	trie[j].id = ip & PY_NODE ? mr_w_node_python(&writer, parent, (uint32_t)ip)
				  : mr_w_node_native(&writer, parent, ip);
	trie_count++;
	return trie[j].id;
}

/* A captured stack, before interning. */
struct capture {
	int n;         /* frames, root first */
	int same;      /* leading frames equal to the thread's cached stack */
	uintptr_t ips[MAX_FRAMES];
	int pyn, pysame; /* the same for Python frames, in pyts->cur */
	int hn, hsame;   /* the same for a hybrid stack, in pyts->hcur */
	int why;         /* Python stacks only, none found: enum py_none */
};

static void capture_python(struct capture *c)
{
	c->pyn = c->pysame = c->why = 0;
	if (!python_stacks)
		return;
	if (!python_ready()) {
		if (!native_stacks)
			c->why = python_why_none(0);
		return;
	}
	if (!pyts) {
		if (ts.exiting)
			return;
		void *p = real.mmap(NULL, sizeof(struct pystate), PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return;
		pyts = p;
	}
	struct pystate *s = pyts;
	c->pyn = python_walk(s->cur, MAX_PY_FRAMES);
	if (c->pyn)
		s->seen = 1;
	else if (!native_stacks)
		c->why = python_why_none(s->seen);
	while (c->pysame < c->pyn && c->pysame < s->depth &&
	       s->prev[c->pysame].frame == s->cur[c->pysame].frame &&
	       s->prev[c->pysame].code == s->cur[c->pysame].code &&
	       s->prev[c->pysame].lasti == s->cur[c->pysame].lasti)
		c->pysame++;
}


/* ---- where the evaluation loop runs -------------------------------------
 * A hybrid stack puts each run of Python frames where the native stack
 * shows the C frame of the evaluation loop that ran them, so the tracker
 * must know which return addresses are the loop's. The exported
 * _PyEval_EvalFrameDefault and its symbol size give that on most builds
 * (eval_lo, eval_hi). Debian's interpreters are built with the function's
 * hot and cold parts apart and are stripped: there the symbol covers a
 * stub of about 1 KB and the loop runs in a part no symbol names, so no
 * address matches and the Python frames would all fall to the root.
 *
 * What each run of the loop does have, from 3.12 on, is its entry marker:
 * an _PyInterpreterFrame that is a local variable of that C frame, linked
 * into the thread's frame chain (python_walk keeps its address as
 * pyent.shim). When a stack has fewer native frames in known loop code
 * than marked runs, the thread unwinds itself again with stack pointers,
 * takes the native frame whose stack space [its SP, its caller's SP) holds
 * a marker, and keeps the bounds of that frame's function from .eh_frame
 * (unw_get_proc_info_by_ip) as one more part of the loop. Only parts in
 * the interpreter's own image are kept, a part is learned once, and the
 * slow walks are bounded per process. This reads only what CPython itself
 * lays out, needs no symbols, and costs nothing once the parts are known;
 * the alternatives need what a stripped build lacks (symbol tables) or
 * what memray-c does by design without (a hook on every Python call, to
 * see the return addresses when a frame is entered). Before 3.12 a run has
 * no marker on the C stack, and only the symbol's range is used. */
#define MAX_EVAL_PARTS 8
static struct { uintptr_t lo, hi; } eval_parts[MAX_EVAL_PARTS];
static int eval_nparts;   /* published after its part is written */
static int eval_learn = 32; /* learning walks left in this process */
static const void *eval_image;
static int eval_busy; /* a thread is learning (a flag, so a forked child can clear it) */

static int in_eval(uintptr_t ip)
{
	if (ip > eval_lo && ip <= eval_hi)
		return 1;
	int n = __atomic_load_n(&eval_nparts, __ATOMIC_ACQUIRE);
	for (int i = 0; i < n; i++)
		if (ip > eval_parts[i].lo && ip <= eval_parts[i].hi)
			return 1;
	return 0;
}

static void gate_enter(void);
static void gate_leave(void);

/* Learns the parts of the loop that hold the markers of c's Python runs
 * (see above). Outside the tracker's lock. */
static void learn_eval(const struct capture *c)
{
	if (__atomic_load_n(&eval_learn, __ATOMIC_RELAXED) <= 0 ||
	    __atomic_exchange_n(&eval_busy, 1, __ATOMIC_ACQUIRE))
		return;
	if (__atomic_sub_fetch(&eval_learn, 1, __ATOMIC_RELAXED) < 0 || eval_nparts >= MAX_EVAL_PARTS)
		goto out;
	uintptr_t ip[MAX_FRAMES + 1], sp[MAX_FRAMES + 1];
	int n = 0;
	unw_context_t uc;
	unw_cursor_t cur;
	gate_enter();
	if (unw_getcontext(&uc) == 0 && unw_init_local(&cur, &uc) == 0) {
		while (n <= MAX_FRAMES && unw_step(&cur) > 0) {
			unw_word_t i, p;
			if (unw_get_reg(&cur, UNW_REG_IP, &i) < 0 || unw_get_reg(&cur, UNW_REG_SP, &p) < 0)
				break;
			ip[n] = i;
			sp[n++] = p;
		}
	}
	for (int e = 0; e < c->pyn; e++) {
		uintptr_t m = (uintptr_t)pyts->cur[e].shim;
		for (int k = 0; m && k + 1 < n; k++) {
			if (m < sp[k] || m >= sp[k + 1])
				continue;
			unw_proc_info_t pi;
			Dl_info di;
			if (!in_eval(ip[k]) && eval_nparts < MAX_EVAL_PARTS &&
			    unw_get_proc_info_by_ip(unw_local_addr_space, ip[k] - 1, &pi, NULL) == 0 &&
			    pi.start_ip < ip[k] && ip[k] <= pi.end_ip &&
			    dladdr((void *)ip[k], &di) && di.dli_fbase == eval_image) {
				eval_parts[eval_nparts].lo = pi.start_ip;
				eval_parts[eval_nparts].hi = pi.end_ip;
				__atomic_store_n(&eval_nparts, eval_nparts + 1, __ATOMIC_RELEASE);
			}
			break;
		}
	}
	gate_leave();
out:
	__atomic_store_n(&eval_busy, 0, __ATOMIC_RELEASE);
}

/* Merges the native and Python stacks of c into pyts->hcur: walking from
 * the leaf, each native frame in the evaluation loop is replaced by the
 * Python frames that run of the loop executes (down to its entry frame).
 * Python frames left over (a native stack cut short, or loop code not yet
 * known: then learned, and the merge done again) go at the root. */
static void hybrid(struct capture *c)
{
	struct pystate *s = pyts;
	struct hitem *h = s->hcur;
	int n, g; /* g: the leaf-most Python frame not yet placed */
	for (int again = 1;; again = 0) {
		n = 0, g = c->pyn - 1;
		for (int i = c->n - 1; i >= 0; i--) {
			uintptr_t ip = c->ips[i];
			if (g >= 0 && in_eval(ip)) {
				do
					h[n++] = (struct hitem){ 0, s->cur[g] };
				while (!s->cur[g--].entry && g >= 0);
			} else {
				h[n++] = (struct hitem){ ip, { 0 } };
			}
		}
		if (g < 0 || !again || !eval_image ||
		    __atomic_load_n(&eval_learn, __ATOMIC_RELAXED) <= 0)
			break;
		int parts = __atomic_load_n(&eval_nparts, __ATOMIC_ACQUIRE);
		learn_eval(c);
		if (__atomic_load_n(&eval_nparts, __ATOMIC_ACQUIRE) == parts)
			break;
	}
	while (g >= 0)
		h[n++] = (struct hitem){ 0, s->cur[g--] };
	for (int i = 0, j = n - 1; i < j; i++, j--) {
		struct hitem t = h[i];
		h[i] = h[j];
		h[j] = t;
	}
	c->hn = n;
	while (c->hsame < n && c->hsame < s->hdepth) {
		const struct hitem *a = &s->hprev[c->hsame], *b = &h[c->hsame];
		if (a->ip != b->ip || (!a->ip && (a->py.frame != b->py.frame ||
			a->py.code != b->py.code || a->py.lasti != b->py.lasti)))
			break;
		c->hsame++;
	}
}

static uint32_t intern_hybrid(const struct capture *c)
{
	struct pystate *s = pyts;
	uint32_t parent = c->hsame ? s->hprev[c->hsame - 1].py.node : 0;
	for (int i = c->hsame; i < c->hn; i++) {
		const struct hitem *h = &s->hcur[i];
		uint64_t key = h->ip ? h->ip : PY_NODE | python_frame_id(&writer, &h->py);
		parent = trie_node(parent, key);
		s->hprev[i] = *h;
		s->hprev[i].py.node = parent;
	}
	s->hdepth = c->hn;
	return parent;
}

/* Forgets what the calling thread cached for an earlier stream. */
static void thread_fresh(void)
{
	uint32_t gen = __atomic_load_n(&stream_gen, __ATOMIC_RELAXED);
	if (ts.gen == gen)
		return;
	ts.gen = gen;
	ts.index = 0;
	if (ts.cache)
		ts.cache->depth = 0;
	if (pyts) {
		pyts->depth = 0;
		pyts->hdepth = 0;
	}
}

/* Whether a capture made before taking the lock is of the stream now
 * being written. Locked. */
static int same_stream(void)
{
	return ACTIVE() && ts.gen == stream_gen;
}

/* A fork must not happen while a thread is inside libunwind: the child
 * would inherit its internal locks held, and deadlock at its first
 * unwind. Unwinding threads count themselves in; the fork's prepare
 * handler closes the gate and waits for the count to reach 0. */
static int fork_gate;
static unsigned unwinding;

static void gate_enter(void)
{
	for (;;) {
		while (__atomic_load_n(&fork_gate, __ATOMIC_ACQUIRE))
			sched_yield();
		__atomic_add_fetch(&unwinding, 1, __ATOMIC_ACQ_REL);
		if (!__atomic_load_n(&fork_gate, __ATOMIC_ACQUIRE))
			break;
		__atomic_sub_fetch(&unwinding, 1, __ATOMIC_ACQ_REL);
	}
}

static void gate_leave(void)
{
	__atomic_sub_fetch(&unwinding, 1, __ATOMIC_ACQ_REL);
}

static int gated_backtrace(void **ips, int max)
{
	gate_enter();
	int n = backtrace_ips(ips, max);
	gate_leave();
	return n;
}

/* Unwinds the calling thread, outside the lock. */
static void capture(struct capture *c)
{
	void *raw[MAX_FRAMES];
	thread_fresh();
	c->n = c->same = c->hn = c->hsame = 0;
	capture_python(c);
	if (!native_stacks)
		return;
	int n = gated_backtrace(raw, MAX_FRAMES);
	int skip = 0;
	while (skip < n && (uintptr_t)raw[skip] >= self_lo && (uintptr_t)raw[skip] < self_hi)
		skip++;
	for (int i = n - 1; i >= skip; i--)
		c->ips[c->n++] = (uintptr_t)raw[i];
	if (c->pyn) {
		hybrid(c);
		return;
	}
	if (!ts.cache && !ts.exiting) {
		void *p = real.mmap(NULL, sizeof(struct tcache), PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ts.cache = p == MAP_FAILED ? NULL : p;
	}
	struct tcache *k = ts.cache;
	while (k && c->same < c->n && c->same < k->depth && k->ips[c->same] == c->ips[c->same])
		c->same++;
}

/* Interns the capture and returns its leaf node. Locked. */
static uint32_t intern_python(const struct capture *c)
{
	struct pystate *s = pyts;
	uint32_t parent = c->pysame ? s->prev[c->pysame - 1].node : 0;
	for (int i = c->pysame; i < c->pyn; i++) {
		uint32_t frame = python_frame_id(&writer, &s->cur[i]);
		parent = trie_node(parent, PY_NODE | frame);
		s->prev[i] = s->cur[i];
		s->prev[i].node = parent;
	}
	s->depth = c->pyn;
	return parent;
}

/* Python stacks without native ones: an allocation made with no Python
 * frame gets a frame that says why (enum py_none), in place of no stack
 * at all; with native stacks its C frames say more. Locked. */
static const char *const why_text[PY_NONE_END] = {
	[PY_NONE_STARTUP] = "[Python start-up]",
	[PY_NONE_SHUTDOWN] = "[Python shutdown]",
	[PY_NONE_THREAD_START] = "[thread start-up]",
	[PY_NONE_NO_STATE] = "[outside Python]",
	[PY_NONE_BETWEEN] = "[no Python frame]",
};
static uint32_t why_nodes[PY_NONE_END], why_gen;

static uint32_t why_node(int why)
{
	if (why <= 0 || why >= PY_NONE_END)
		return 0;
	if (why_gen != stream_gen) {
		memset(why_nodes, 0, sizeof(why_nodes));
		why_gen = stream_gen;
	}
	if (!why_nodes[why]) {
		const char *t = why_text[why];
		uint32_t frame = mr_w_pyframe(&writer, mr_w_string(&writer, t, strlen(t)), 0, 0);
		why_nodes[why] = trie_node(0, PY_NODE | frame);
	}
	return why_nodes[why];
}

static uint32_t intern(const struct capture *c)
{
	if (c->hn)
		return intern_hybrid(c);
	if (c->n == 0)
		return c->pyn ? intern_python(c) : why_node(c->why);
	struct tcache *k = ts.cache; /* c->same > 0 only with a cache */
	uint32_t parent = c->same ? k->ids[c->same - 1] : 0;
	for (int i = c->same; i < c->n; i++) {
		parent = trie_node(parent, c->ips[i]);
		if (k) {
			k->ips[i] = c->ips[i];
			k->ids[i] = parent;
		}
	}
	if (k)
		k->depth = c->n;
	return parent;
}

/* ---- threads ------------------------------------------------------------ */

struct thread_entry {
	pthread_t self;
	uint32_t index;
	uint64_t name_hash; /* of the name last recorded: a name set again
			     * (the OS name and Python's, on 3.14) is not
			     * recorded twice */
};
static struct thread_entry *threads;
static size_t nthreads, threads_cap;

static void thread_gone(void *arg)
{
	uint32_t index = (uint32_t)(uintptr_t)arg;
	ts.exiting = 1;
	if (ts.cache) {
		real.munmap(ts.cache, sizeof(*ts.cache));
		ts.cache = NULL;
	}
	if (pyts) {
		real.munmap(pyts, sizeof(*pyts));
		pyts = NULL;
	}
	lock_stream();
	for (size_t i = 0; i < nthreads; i++)
		if (threads[i].index == index) {
			threads[i] = threads[--nthreads];
			break;
		}
	unlock();
}

static uint64_t name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

/* Makes the calling thread the stream's current thread, announcing it
 * first if it is new. Locked. */
static void thread_announce(const char *given)
{
	thread_fresh();
	if (!ts.index) {
		char name[17] = "";
		syscall(SYS_prctl, PR_GET_NAME, name, 0, 0, 0);
		const char *as = given ? given : name;
		ts.index = mr_w_thread(&writer, (uint64_t)syscall(SYS_gettid), as);
		if (nthreads == threads_cap) {
			size_t cap = threads_cap ? threads_cap * 2 : 64;
			struct thread_entry *t = raw_map(cap * sizeof(*t));
			if (t) {
				if (threads) {
					memcpy(t, threads, nthreads * sizeof(*t));
					real.munmap(threads, threads_cap * sizeof(*t));
				}
				threads = t;
				threads_cap = cap;
			}
		}
		if (nthreads < threads_cap) {
			threads[nthreads++] = (struct thread_entry){ pthread_self(), ts.index, name_hash(as) };
			pthread_setspecific(thread_key, (void *)(uintptr_t)ts.index);
		}
	}
	mr_w_switch(&writer, ts.index);
}

static void thread_current(void)
{
	thread_announce(NULL);
}

/* Records a new name of a thread (0: the calling one), unless it is the
 * name the thread already has. */
void tracker_thread_renamed(unsigned long thread, const char *name)
{
	int guard = tracker_guard;
	tracker_guard = 1;
	lock_stream();
	if (ACTIVE()) {
		int self = thread == 0 || thread == (unsigned long)pthread_self();
		if (self && !ts.index) {
			thread_announce(name);
		} else {
			struct thread_entry *e = NULL;
			for (size_t i = 0; i < nthreads; i++)
				if (self ? threads[i].index == ts.index
					 : (unsigned long)threads[i].self == thread)
					e = &threads[i];
			uint64_t h = name_hash(name);
			if (e && e->name_hash != h) {
				e->name_hash = h;
				mr_w_thread_name(&writer, e->index, name);
			} else if (!e && self) {
				mr_w_thread_name(&writer, ts.index, name);
			}
		}
	}
	unlock();
	tracker_guard = guard;
}

int tracker_thread_starting(const void *caller, char *name, size_t cap)
{
	/* an attached program, or one recording itself through the API,
	 * keeps its threading module as it is */
	return python_thread_starting(caller, name, cap, !attached && !api_on);
}

/* ---- events ------------------------------------------------------------- */

__thread const void *tracker_pymem __attribute__((tls_model("initial-exec")));

struct pymem_fns { /* hooks.c's struct pymem, as far as realloc */
	void *ctx;
	void *(*malloc)(void *, size_t);
	void *(*calloc)(void *, size_t, size_t);
	void *(*realloc)(void *, void *, size_t);
};

static size_t usable(void *p)
{
	if (tracker_pymem)
		return 0; /* a Python allocator's block: not malloc's to measure */
	return real.malloc_usable_size ? real.malloc_usable_size(p) : 0;
}

static void heap_sub(uint64_t n)
{
	live_heap = live_heap > n ? live_heap - n : 0;
}

/* ---- tables of blocks by address ------------------------------------------
 * Open addressing, linear probing, deletion by backward shift; all under
 * the lock. Two are kept: the blocks of the in-process API's window, and
 * the live sampled blocks (memray-record --sample-bytes). */

struct wblock {
	uintptr_t addr; /* 0: empty */
	uint64_t size;
};
struct btab {
	struct wblock *v;
	size_t cap, n;
};

static size_t btab_slot(const struct btab *t, uintptr_t a)
{
	uint64_t h = (uint64_t)a * 0x9e3779b97f4a7c15ull;
	return (size_t)(h ^ (h >> 32)) & (t->cap - 1);
}

static void btab_clear(struct btab *t)
{
	if (t->v)
		memset(t->v, 0, t->cap * sizeof(*t->v));
	t->n = 0;
}

/* Puts a block in (replacing one at the same address, whose size goes to
 * *replaced, else 0 does); 0 when memory runs out and the block is not
 * kept. */
static int btab_put(struct btab *t, uintptr_t a, uint64_t size, uint64_t *replaced)
{
	*replaced = 0;
	if ((t->n + 1) * 4 > t->cap * 3) {
		size_t cap = t->cap ? t->cap * 2 : 1 << 14;
		struct wblock *v = raw_map(cap * sizeof(*v));
		if (!v && t->n + 1 >= t->cap)
			return 0;
		if (!v)
			goto put; /* fuller than planned, still room */
		struct btab old = *t;
		t->v = v;
		t->cap = cap;
		for (size_t i = 0; i < old.cap; i++)
			if (old.v[i].addr) {
				size_t j = btab_slot(t, old.v[i].addr);
				while (t->v[j].addr)
					j = (j + 1) & (t->cap - 1);
				t->v[j] = old.v[i];
			}
		if (old.v)
			real.munmap(old.v, old.cap * sizeof(*old.v));
	}
put:;
	size_t j = btab_slot(t, a);
	while (t->v[j].addr && t->v[j].addr != a)
		j = (j + 1) & (t->cap - 1);
	if (!t->v[j].addr)
		t->n++;
	else
		*replaced = t->v[j].size;
	t->v[j] = (struct wblock){ a, size };
	return 1;
}

/* Takes the block at a out into *size; 0 if it is not in. */
static int btab_take(struct btab *t, uintptr_t a, uint64_t *size)
{
	if (!t->cap || !a)
		return 0;
	size_t j = btab_slot(t, a);
	while (t->v[j].addr && t->v[j].addr != a)
		j = (j + 1) & (t->cap - 1);
	if (!t->v[j].addr)
		return 0;
	*size = t->v[j].size;
	t->n--;
	/* backward shift: the following entries move up to keep every probe
	 * sequence unbroken */
	size_t hole = j;
	for (size_t k = (j + 1) & (t->cap - 1); t->v[k].addr; k = (k + 1) & (t->cap - 1)) {
		size_t home = btab_slot(t, t->v[k].addr);
		/* k's entry may fill the hole if its home is not in (hole, k] */
		if ((k > hole && (home <= hole || home > k)) || (k < hole && home <= hole && home > k)) {
			t->v[hole] = t->v[k];
			hole = k;
		}
	}
	t->v[hole].addr = 0;
	return 1;
}

/* ---- the window of the in-process API (memray.h) -------------------------
 * While a recording started by memray_start runs, the blocks allocated
 * since are kept by address, so that memray_stats gives exact live and
 * peak bytes of what was allocated in the window: the release of an older
 * block changes nothing. Sizes are the requested ones, as the readers
 * count them. All under the lock. */

static struct btab win;
static int window_on;
static uint64_t win_live, win_peak, win_allocs, win_bytes;

static void win_add(uintptr_t a, uint64_t size)
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

static void win_take(uintptr_t a)
{
	uint64_t size;
	if (btab_take(&win, a, &size))
		win_live -= size;
}

/* munmap of [a, a + len): a mapping of the window starting at a loses its
 * first len bytes (the whole of it, usually). */
static void win_unmap(uintptr_t a, uint64_t len)
{
	uint64_t size;
	if (btab_take(&win, a, &size)) {
		win_live -= size;
		uint64_t replaced;
		if (size > len && btab_put(&win, a + len, size - len, &replaced))
			win_live += size - len - replaced;
	}
}

/* ---- sampling (memray-record --sample-bytes) --------------------------------
 * Each thread counts down the bytes to its next sampled byte, the gap
 * drawn from an exponential distribution of mean tracker_sample_bytes
 * (see lib/sample.h): an allocation that reaches it is recorded, any
 * other costs a subtraction. The live sampled blocks are kept by address,
 * with a filter of counters by address hash in front that every free
 * reads without the lock: a free that finds its counter at 0 was not
 * sampled. A sampled block's counter went up under the lock before its
 * malloc returned, so the thread that frees it sees it. */

#define FILTER_SLOTS (1u << 16)
uint64_t tracker_sample_bytes;
int64_t tracker_sample_floor = INT64_MAX;
static struct {
	uint64_t mask;
	uint16_t slot[1];
} filter_maybe = { 0, { 1 } }; /* every release goes the slow way */
struct sample_filter *tracker_filter = (struct sample_filter *)&filter_maybe;
static struct sample_filter *filter; /* FILTER_SLOTS counters, once sampling */
__thread int64_t tracker_sample_left __attribute__((tls_model("initial-exec")));
static __thread uint64_t sample_rng __attribute__((tls_model("initial-exec")));
static uint64_t sample_seed;      /* --seed; 0: from the clock */
static unsigned sample_threads;   /* threads that drew a first gap */
static struct btab sampled;       /* live sampled blocks, with their estimated bytes */
static uint32_t sample_gen;       /* counts the sampled recordings */
static __thread uint32_t thread_sample_gen __attribute__((tls_model("initial-exec")));

static uint64_t splitmix(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The bytes to the next sampled byte: an exponential draw, at least 1. */
static int64_t sample_gap(void)
{
	if (!sample_rng) {
		/* the thread's first: its own sequence, the same in every run
		 * with a seed (threads numbered by their first allocation) */
		uint64_t k = __atomic_add_fetch(&sample_threads, 1, __ATOMIC_RELAXED);
		uint64_t s = sample_seed;
		if (!s) {
			struct timespec t;
			clock_gettime(CLOCK_MONOTONIC, &t);
			s = (uint64_t)t.tv_nsec ^ (uint64_t)t.tv_sec << 32 ^ (uint64_t)getpid() << 16 ^
			    (uintptr_t)&sample_rng;
		}
		uint64_t st = s ^ k * 0xd1b54a32d192ed03ull;
		sample_rng = splitmix(&st) | 1;
	}
	double u = (double)((splitmix(&sample_rng) >> 11) + 1) * 0x1p-53; /* (0, 1] */
	double g = -log(u) * (double)tracker_sample_bytes;
	return g >= 0x1p62 ? (int64_t)1 << 62 : (int64_t)g + 1;
}

/* The countdown reached the allocation of size bytes: whether it is
 * sampled. */
static int sample_slow(size_t size)
{
	int guard = tracker_guard;
	tracker_guard = 1;
	int hit = 1;
	uint32_t gen = __atomic_load_n(&sample_gen, __ATOMIC_RELAXED);
	if (thread_sample_gen != gen) {
		/* the thread's first allocation in this recording (whatever an
		 * earlier one left): a sequence and a gap of its own, counted
		 * from the start of this allocation */
		thread_sample_gen = gen;
		sample_rng = 0;
		tracker_sample_left = sample_gap() - (int64_t)size;
		hit = tracker_sample_left <= 0;
	}
	if (hit) /* the next gap counts from the end of this allocation */
		tracker_sample_left = sample_gap();
	tracker_guard = guard;
	return hit;
}

/* The hooks' fast path for what runs now: while a sampled recording runs,
 * the countdown and the filter; else every call the slow way (which
 * leaves the countdowns alone). */
static void set_active(int on)
{
	int fast = on && tracker_sampling() && filter;
	__atomic_store_n(&tracker_filter, fast ? filter : (struct sample_filter *)&filter_maybe,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&tracker_sample_floor, fast ? 0 : INT64_MAX, __ATOMIC_RELEASE);
	__atomic_store_n(&tracker_active, on, __ATOMIC_RELEASE);
}

/* Sampling for the stream about to start (gap 0: every allocation); its
 * fast path opens with set_active(1). */
static void sample_setup(uint64_t gap, uint64_t seed)
{
	set_active(0);
	lock_stream();
	if (gap && !filter)
		filter = raw_map(sizeof(*filter) + FILTER_SLOTS * sizeof(uint16_t));
	if (!filter)
		gap = 0;
	else
		memset(filter->slot, 0, FILTER_SLOTS * sizeof(uint16_t));
	if (filter) {
		filter->mask = FILTER_SLOTS - 1;
		/* the bootstrap allocator's blocks take the slow way too, which
		 * keeps them from the real free */
		size_t used = __atomic_load_n(&boot_used, __ATOMIC_RELAXED);
		for (size_t at = 0; at + 16 <= used && at + 16 <= BOOT_SIZE;) {
			size_t size = *(size_t *)(boot_buf + at);
			filter->slot[sample_slot(filter, (uintptr_t)(boot_buf + at + 16))] = 1;
			at += ((size + 15) & ~(size_t)15) + 16;
		}
	}
	btab_clear(&sampled);
	sample_seed = seed;
	sample_threads = 0;
	__atomic_add_fetch(&sample_gen, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&tracker_sample_bytes, gap, __ATOMIC_RELAXED);
	unlock();
}

int tracker_take_slow(size_t size)
{
	if (size > (size_t)PTRDIFF_MAX)
		return 0; /* fails; the countdown untouched */
	if (!tracker_sampling()) {
		tracker_sample_left = 0;
		return 1;
	}
	return sample_slow(size);
}

/* A sampled block: kept, counted in its filter slot; its estimated bytes.
 * Locked. */
static uint64_t sample_put(uintptr_t a, uint64_t size)
{
	uint64_t est = (uint64_t)(mr_sample_weight(size, tracker_sample_bytes) * (double)size + 0.5);
	uint64_t replaced;
	if (!btab_put(&sampled, a, est, &replaced))
		return 0;
	uint16_t *f = &filter->slot[sample_slot(filter, a)];
	if (!replaced && *f != UINT16_MAX) /* a full counter stays full */
		__atomic_store_n(f, *f + 1, __ATOMIC_RELAXED);
	heap_sub(replaced);
	return est;
}

/* Takes a sampled block out into *est; 0 if a was not sampled. Locked. */
static int sample_take(uintptr_t a, uint64_t *est)
{
	if (!btab_take(&sampled, a, est))
		return 0;
	uint16_t *f = &filter->slot[sample_slot(filter, a)];
	if (*f != UINT16_MAX)
		__atomic_store_n(f, *f - 1, __ATOMIC_RELAXED);
	return 1;
}

void tracker_alloc(int allocator, void *p, size_t size)
{
	struct capture c;
	tracker_guard = 1;
	capture(&c);
	lock_stream();
	uint64_t est = 0;
	/* a sample is kept before it is written: one that cannot be kept
	 * is not written, or its release would be missed */
	if (same_stream() && (allocator == MR_MMAP || !tracker_sampling() ||
			      (est = sample_put((uintptr_t)p, size)) != 0)) {
		thread_current();
		mr_w_alloc(&writer, allocator, (uintptr_t)p, size, intern(&c));
		live_heap += allocator == MR_MMAP ? size : est ? est : usable(p);
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
	size_t n = allocator == MR_MUNMAP ? len : sampling ? 0 : usable(p);
	lock_stream();
	uint64_t est = 0;
	/* when sampling, only a block that was sampled (another one may
	 * share its filter counter) */
	if (ACTIVE() && (!sampling || sample_take((uintptr_t)p, &est))) {
		thread_current();
		mr_w_free(&writer, allocator, (uintptr_t)p, len);
		heap_sub(sampling ? est : n);
		if (window_on) {
			if (allocator == MR_MUNMAP)
				win_unmap((uintptr_t)p, len);
			else
				win_take((uintptr_t)p);
		}
	}
	unlock();
	tracker_guard = 0;
}

static void *realloc_call(int allocator, void *old, size_t nmemb, size_t size)
{
	const struct pymem_fns *py = tracker_pymem;
	if (py)
		return py->realloc(py->ctx, old, size);
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
	}
	unlock();
	tracker_guard = 0;
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

/* ---- modules ------------------------------------------------------------
 * The loaded objects are listed with dl_iterate_phdr outside the lock (it
 * takes the loader's lock, which a thread inside dlopen holds while it
 * allocates), then compared with what the stream already has. */

struct module {
	char *path;
	uintptr_t base;
	uint8_t build_id[MR_BUILD_ID_MAX];
	uint32_t build_id_len, nsegs;
	struct mr_segment segs[MR_SEGMENTS_MAX];
	uint32_t id;  /* in the stream; 0 while not yet written */
	int seen;
};
static struct module *known;
static size_t nknown, known_cap;
static unsigned long long map_adds = (unsigned long long)-1, map_subs;

struct scan {
	struct module *mods;
	size_t n, cap;
};

static void copy_build_id(struct module *m, const struct dl_phdr_info *info, const ElfW(Phdr) *ph)
{
	const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
	const char *end = p + ph->p_memsz;
	while (p + sizeof(ElfW(Nhdr)) <= end) {
		const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
		size_t name = (nh->n_namesz + 3) & ~3u, desc = (nh->n_descsz + 3) & ~3u;
		const char *d = p + sizeof(*nh) + name;
		if (d + desc > end)
			return;
		if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
		    memcmp(p + sizeof(*nh), "GNU", 4) == 0 && nh->n_descsz <= MR_BUILD_ID_MAX) {
			memcpy(m->build_id, d, nh->n_descsz);
			m->build_id_len = nh->n_descsz;
			return;
		}
		p = d + desc;
	}
}

static char *dup_path(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = real.malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

static int scan_one(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct scan *s = arg;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct module *m = real.realloc(s->mods, cap * sizeof(*m));
		if (!m)
			return 1;
		s->mods = m;
		s->cap = cap;
	}
	struct module *m = &s->mods[s->n];
	memset(m, 0, sizeof(*m));
	char exe[4096];
	const char *name = info->dlpi_name;
	if (!name || !name[0]) {
		ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		exe[k > 0 ? k : 0] = 0;
		name = exe;
	}
	m->path = dup_path(name);
	if (!m->path)
		return 1;
	m->base = info->dlpi_addr;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && m->nsegs < MR_SEGMENTS_MAX)
			m->segs[m->nsegs++] = (struct mr_segment){ ph->p_vaddr, ph->p_memsz, ph->p_flags };
		else if (ph->p_type == PT_NOTE && !m->build_id_len)
			copy_build_id(m, info, ph);
	}
	s->n++;
	return 0;
}

static int count_changes(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	unsigned long long *c = arg;
	c[0] = info->dlpi_adds;
	c[1] = info->dlpi_subs;
	return 1;
}

/* Brings the stream's module list up to date. Call with the guard set and
 * the lock not held. */
static int modules_sync(int force)
{
	unsigned long long c[2] = { 0, 0 };
	dl_iterate_phdr(count_changes, c);
	if (!force && c[0] == map_adds && c[1] == map_subs)
		return 0;
	struct scan s = { NULL, 0, 0 };
	dl_iterate_phdr(scan_one, &s);
	lock_stream();
	if (ACTIVE()) {
		map_adds = c[0];
		map_subs = c[1];
		for (size_t i = 0; i < nknown; i++)
			known[i].seen = 0;
		for (size_t i = 0; i < s.n; i++) {
			struct module *m = &s.mods[i];
			size_t j;
			for (j = 0; j < nknown; j++)
				if (known[j].base == m->base && strcmp(known[j].path, m->path) == 0)
					break;
			if (j < nknown) {
				known[j].seen = 1;
				real.free(m->path);
				continue;
			}
			if (nknown == known_cap) {
				size_t cap = known_cap ? known_cap * 2 : 64;
				struct module *k = real.realloc(known, cap * sizeof(*k));
				if (!k) {
					real.free(m->path);
					continue;
				}
				known = k;
				known_cap = cap;
			}
			uint32_t path = mr_w_string(&writer, m->path, strlen(m->path));
			m->id = mr_w_module_load(&writer, path, m->base, m->build_id,
						 m->build_id_len, m->segs, m->nsegs);
			m->seen = 1;
			known[nknown++] = *m;
		}
		for (size_t i = 0; i < nknown;) {
			if (!known[i].seen) {
				mr_w_module_unload(&writer, known[i].id);
				real.free(known[i].path);
				known[i] = known[--nknown];
			} else {
				i++;
			}
		}
	} else {
		for (size_t i = 0; i < s.n; i++)
			real.free(s.mods[i].path);
	}
	unlock();
	real.free(s.mods);
	return 1;
}

void tracker_modules_changed(int closed)
{
	tracker_guard = 1;
	if (closed)
		unw_flush_cache(unw_local_addr_space, 0, 0);
	modules_sync(0);
	tracker_guard = 0;
}

/* ---- the sampler thread ------------------------------------------------- */

static uint64_t read_rss(void)
{
	char buf[128];
	/* Opened for each reading, so no descriptor of ours stays open for the
	 * program to close or find in its way. */
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (k <= 0)
		return 0;
	buf[k] = 0;
	char *p = strchr(buf, ' ');
	return p ? strtoull(p + 1, NULL, 10) * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

static void memory_record(void)
{
	uint64_t rss = read_rss();
	/* attached, the blocks allocated before are unknown, and so is the
	 * heap's size: 0 says so */
	mr_w_memory(&writer, now_us(), rss, attached ? 0 : live_heap);
}

static void attach_end(void);

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
static unsigned sampler_gen;

static void *sampler_main(void *arg)
{
	unsigned gen = (unsigned)(uintptr_t)arg;
	tracker_guard = 1;
	uint64_t tick = interval_us < TICK_MAX_US ? interval_us : TICK_MAX_US;
	uint64_t next_memory = interval_us;
#define MINE() (__atomic_load_n(&sampler_gen, __ATOMIC_ACQUIRE) == gen)
	while (ACTIVE() && MINE()) {
		struct timespec t = { (time_t)(tick / 1000000), (long)(tick % 1000000) * 1000 };
		nanosleep(&t, NULL);
		if (!MINE())
			return NULL;
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
			flush_all();
		}
		unlock();
	}
	if (attached && MINE())
		attach_end();
	return NULL;
#undef MINE
}

/* ---- start, fork and finish --------------------------------------------- */

static int prepare_locked;
static int attach_busy; /* an attached recording has not ended yet */

static void at_prepare(void)
{
	prepare_locked = !tracker_guard;
	if (!prepare_locked)
		return;
	/* no thread inside libunwind (see gated_backtrace) */
	__atomic_store_n(&fork_gate, 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&unwinding, __ATOMIC_ACQUIRE))
		sched_yield();
	lock_stream();
}

static void at_parent(void)
{
	__atomic_store_n(&fork_gate, 0, __ATOMIC_RELEASE);
	if (prepare_locked)
		unlock();
}

static void child_restart(void);

/* The child of a fork: with --follow-fork a process of its own in the
 * stream; otherwise it goes inert and lets go of the stream. */
static void at_child(void)
{
	__atomic_store_n(&fork_gate, 0, __ATOMIC_RELEASE);
	unwinding = 0;
	eval_busy = 0;
	pthread_mutex_init(&lock, NULL);
	holding = 0;
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
	window_on = 0;
	/* attached: the child keeps the patched entries, which now pass
	 * every call straight through */
	if (ctl_fd >= 0)
		close(ctl_fd);
	ctl_fd = -1;
	attach_busy = 0;
}

/* Takes the descriptor memray-record passed, out of the program's way: a
 * high number, close-on-exec, the original number closed. */
/* A pipe's identity as MEMRAY_FD_ID carries it: "dev:ino". */
static void pipe_id(char *buf, size_t n, dev_t dev, ino_t ino)
{
	snprintf(buf, n, "%llu:%llu", (unsigned long long)dev, (unsigned long long)ino);
}

static int adopt(long fd)
{
	struct stat st;
	if (fd < 0 || fstat((int)fd, &st) < 0 || !S_ISFIFO(st.st_mode))
		return -1;
	struct rlimit rl;
	int floor = 100;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 256)
		floor = (int)(rl.rlim_cur > 1024 ? 1024 : rl.rlim_cur) - 64;
	/* Following children, the descriptor must be the very pipe
	 * memray-record made (a program may have closed it and opened another
	 * under its number), and stays open across exec. */
	const char *id = getenv("MEMRAY_FD_ID");
	char want[64];
	pipe_id(want, sizeof(want), st.st_dev, st.st_ino);
	if (follow && id && strcmp(id, want) != 0)
		return -1;
	int high = fcntl((int)fd, follow ? F_DUPFD : F_DUPFD_CLOEXEC, floor);
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

static int adopt_fd(const char *s)
{
	char *end;
	long fd = strtol(s, &end, 10);
	return *end || end == s ? -1 : adopt(fd);
}

/* A child that lost the descriptor (Python's subprocess closes every
 * descriptor but the three standard ones before exec) opens the pipe
 * again through its parent's, which is the one in MEMRAY_FD: it is still
 * open there while the parent waits for the child. What the path names
 * is checked before it is opened (never open something else for writing). */
static int reopen_from_parent(const char *s)
{
	char *end, path[64];
	long fd = strtol(s, &end, 10);
	if (*end || end == s || fd < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/fd/%ld", (int)getppid(), fd);
	const char *id = getenv("MEMRAY_FD_ID");
	struct stat st;
	char what[64];
	if (!id || stat(path, &st) < 0 || !S_ISFIFO(st.st_mode))
		return -1;
	pipe_id(what, sizeof(what), st.st_dev, st.st_ino);
	if (strcmp(what, id) != 0)
		return -1;
	int k = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (k < 0)
		return -1;
	/* writes block as on the inherited descriptor */
	fcntl(k, F_SETFL, fcntl(k, F_GETFL) & ~O_NONBLOCK);
	int high = adopt(k);
	if (high < 0)
		close(k);
	return high;
}

/* Restores the environment memray-record changed, so the program and
 * anything it runs see the environment the user gave. */
static char self_path[4096];
static char native_env[8] = "auto";

static void restore_env(void)
{
	if (follow) {
		/* children find the tracker through the environment */
		unsetenv("MEMRAY_PID");
		unsetenv("MEMRAY_SEQ");
		return;
	}
	const char *saved = getenv("MEMRAY_LD_PRELOAD");
	if (saved && saved[0])
		setenv("LD_PRELOAD", saved, 1);
	else
		unsetenv("LD_PRELOAD");
	unsetenv("MEMRAY_LD_PRELOAD");
	unsetenv("MEMRAY_FD");
	unsetenv("MEMRAY_NATIVE");
	unsetenv("MEMRAY_INTERVAL_US");
	unsetenv("MEMRAY_SAMPLE_BYTES");
	unsetenv("MEMRAY_SEED");
	unsetenv("MEMRAY_PID");
	unsetenv("MEMRAY_SEQ");
}

/* The executable code of the object containing addr, as [*lo, *hi). */
static int text_range(const void *addr, uintptr_t *lo, uintptr_t *hi, char *path, size_t n)
{
	Dl_info di;
	if (!dladdr(addr, &di) || !di.dli_fbase)
		return -1;
	if (path)
		snprintf(path, n, "%s", di.dli_fname);
	const ElfW(Ehdr) *eh = di.dli_fbase;
	const ElfW(Phdr) *ph = (const ElfW(Phdr) *)((const char *)eh + eh->e_phoff);
	*lo = UINTPTR_MAX;
	*hi = 0;
	/* dli_fbase is the ELF header, at the load bias plus the first
	 * segment's vaddr, which is 0 for a shared object. */
	for (int i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X)) {
			uintptr_t a = (uintptr_t)eh + ph[i].p_vaddr;
			if (a < *lo)
				*lo = a;
			if (a + ph[i].p_memsz > *hi)
				*hi = a + ph[i].p_memsz;
		}
	return 0;
}

static uintptr_t unwind_lo, unwind_hi; /* libunwind's code */

static void find_self(void)
{
	text_range((void *)find_self, &self_lo, &self_hi, self_path, sizeof(self_path));
	text_range((void *)unw_backtrace, &unwind_lo, &unwind_hi, NULL, 0);
}

/* libunwind maps and unmaps its caches itself, sometimes outside the
 * tracker (a thread's cache is unmapped when the thread exits): those
 * calls are the tracker's, not the program's. */
int tracker_own_call(const void *caller)
{
	uintptr_t a = (uintptr_t)caller;
	return (a >= unwind_lo && a < unwind_hi) || (a >= self_lo && a < self_hi);
}

/* libunwind opens a pipe of its own the first time it unwinds (to check
 * that addresses are readable). Unwinding once here, with the low
 * descriptor numbers held by placeholders, keeps that pipe out of the
 * numbers the program expects its own open() calls to get. */
static int unwind_started;

static void unwinder_start(void)
{
	int held[64], n = 0;
	unwind_started = 1;
	while (n < 64) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			break;
		if (fd >= 64) {
			close(fd);
			break;
		}
		held[n++] = fd;
	}
	void *ips[8];
#ifdef MEMRAY_TSAN
	/* libunwind's per-thread cache is freed by a key destructor that runs
	 * after the sanitizer has let go of the exiting thread */
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_GLOBAL);
#else
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
#endif
	backtrace_ips(ips, 8);
	while (n > 0)
		close(held[--n]);
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

/* Which stacks are recorded (native: 1, 0, or -1 for the default: native
 * stacks unless the program is a Python whose frames are read), and the
 * header's flags. py: what python_start found. */
static void stack_options(int py, int native, uint64_t flags)
{
	native_stacks = native >= 0 ? native : py != PY_READ;
	python_stacks = py == PY_READ;
	if (python_stacks && native_stacks) {
		int ranged = python_eval_range(&eval_lo, &eval_hi);
		if (python_marks_runs())
			eval_image = python_image(); /* the rest is learned */
		if (!ranged && !eval_image)
			python_stacks = 0; /* no evaluation loop to put Python frames in */
	}
	const char *pymalloc = getenv("PYTHONMALLOC");
	uint64_t py_flags = 0;
	if (py != PY_NONE)
		py_flags = (python_stacks ? MR_F_PYTHON : 0) | MR_F_PYINFO |
			   (pymalloc && strncmp(pymalloc, "malloc", 6) == 0 ? MR_F_PYTHON_ALLOCS : MR_F_PYMALLOC);
	header_flags = (native_stacks ? MR_F_NATIVE : 0) | py_flags | flags;
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
	out_fd = continuing || follow ? adopt_fd(fd) : -1;
	if (out_fd < 0 && follow && !continuing)
		out_fd = reopen_from_parent(fd);
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

/* Starts the sampler thread, with every signal blocked so that none of
 * the program's is delivered to it. */
static void sampler_start(void)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	unsigned gen = __atomic_add_fetch(&sampler_gen, 1, __ATOMIC_ACQ_REL);
	if (pthread_create(&sampler, &attr, sampler_main, (void *)(uintptr_t)gen) == 0)
		pthread_setname_np(sampler, "memray-sampler");
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* This process's stream from its header on: the modules, the current
 * thread, a memory record. seq is the first chunk's number (an exec'd
 * image goes on from its predecessor's). */
static void stream_start(uint16_t seq)
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

/* In a child of fork, with --follow-fork: forget everything the parent's
 * stream had (its stack nodes, frames, strings, threads, modules) and
 * start this process's own, with a sampler thread of its own. */
/* Forgets everything an earlier stream had (its stack nodes, frames,
 * strings, threads, modules); each thread forgets its cached stack when
 * it next records (stream_gen). */
static void stream_reset(void)
{
	batch_len = 0; /* a forked child's: the parent's, which the parent writes */
	/* dropped, not cleared: in a forked child, clearing would copy every
	 * page of the parent's tables */
	if (trie)
		real.munmap(trie, trie_cap * sizeof(*trie));
	trie = NULL;
	trie_cap = trie_count = 0;
	live_heap = 0; /* the parent's blocks are not this stream's */
	python_forget();
	nthreads = 0;
	for (size_t i = 0; i < nknown; i++)
		real.free(known[i].path);
	nknown = 0;
	map_adds = (unsigned long long)-1;
}

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

/* Ends this process's stream: a last memory record and the trailer,
 * sent. Locked; 0, or -1 if the write failed. */
static int stream_end(void)
{
	memory_record();
	mr_w_trailer(&writer, now_us());
	return batch_write();
}

int tracker_signal_end(int sig)
{
	if (getpid() != my_pid ||
	    (!ACTIVE() && __atomic_load_n(&signal_ending, __ATOMIC_ACQUIRE) != 1))
		return 0;
	/* the interrupted code of this very thread holds the lock, in the
	 * middle of a record: the signal waits until it lets go (a write it
	 * is blocked in ends with EINTR, see batch_write) */
	if (holding || __atomic_load_n(&lock.__data.__owner, __ATOMIC_RELAXED) ==
			       (int)syscall(SYS_gettid)) {
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
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 2;
	int guard = tracker_guard;
	tracker_guard = 1;
	if (pthread_mutex_timedlock(&lock, &until) != 0) {
		tracker_guard = guard;
		return 0;
	}
	if (__atomic_load_n(&signal_ending, __ATOMIC_ACQUIRE) == 1 && getpid() == my_pid) {
		mr_w_signal(&writer, sig);
		stream_end();
		__atomic_store_n(&signal_ending, 2, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&lock);
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
	}
	unlock();
	tracker_guard = guard;
}

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

#define EXPORT __attribute__((visibility("default")))

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

static int high_fd(int fd)
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
static void in_process_setup(int native, long interval, uint64_t flags, uint64_t gap,
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
static void attach_end(void)
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
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		e = errno;
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (interval_ms < 0 || interval_ms > 3600 * 1000 || sample_bytes > MR_SAMPLE_MAX ||
	    (flags & ~(MEMRAY_NATIVE | MEMRAY_NO_NATIVE | MEMRAY_FOLLOW_FORK |
		       MEMRAY_PYTHON_ALLOCATORS))) {
		close(fd);
		e = EINVAL;
		goto out;
	}
	in_process_setup(flags & MEMRAY_NATIVE ? 1 : flags & MEMRAY_NO_NATIVE ? 0 : -1,
			 interval_ms * 1000, flags & MEMRAY_FOLLOW_FORK ? MR_F_FOLLOW_FORK : 0,
			 sample_bytes, seed);
	/* forked children go on in the same file (one write per chunk, at
	 * the file's shared offset); exec'd images are not followed */
	follow = !!(flags & MEMRAY_FOLLOW_FORK);
	if (flags & MEMRAY_PYTHON_ALLOCATORS) {
		if (hooks_python_allocators(1) < 0) {
			close(fd);
			e = ENOSYS;
			goto out;
		}
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
	window_on = 1;
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
	window_on = 0;
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

/* ---- exec ---------------------------------------------------------------- */

static char *env_entry(const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 2;
	char *s = real.malloc(n);
	if (s)
		snprintf(s, n, "%s=%s", name, value);
	return s;
}

static void free_env(char **env)
{
	if (!env)
		return;
	for (char **e = env; *e; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) == 0 || strncmp(*e, "MEMRAY_", 7) == 0)
			real.free(*e);
	real.free(env);
}

char **tracker_exec_env(char *const envp[])
{
	if (getpid() != my_pid || out_fd < 0)
		return NULL;
	if (attached || api_on) {
		/* the new image has no tracker: the recording ends here */
		tracker_finish();
		return NULL;
	}
	tracker_guard = 1;
	size_t n = 0;
	const char *user_preload = NULL;
	for (; envp && envp[n]; n++)
		if (strncmp(envp[n], "LD_PRELOAD=", 11) == 0)
			user_preload = envp[n] + 11;
	char **env = real.malloc((n + 14) * sizeof(char *));
	if (!env) {
		tracker_guard = 0;
		return NULL;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(envp[i], "LD_PRELOAD=", 11) != 0 && strncmp(envp[i], "MEMRAY_", 7) != 0)
			env[k++] = envp[i];
	char buf[4096 * 2 + 2], num[32];
	/* following, the environment already names the tracker first */
	size_t self_len = strlen(self_path);
	if (user_preload && strncmp(user_preload, self_path, self_len) == 0 &&
	    (user_preload[self_len] == 0 || user_preload[self_len] == ':')) {
		user_preload += self_len;
		if (*user_preload == ':')
			user_preload++;
	}
	if (user_preload && user_preload[0]) {
		snprintf(buf, sizeof(buf), "%s:%s", self_path, user_preload);
		env[k++] = env_entry("MEMRAY_LD_PRELOAD", user_preload);
	} else {
		snprintf(buf, sizeof(buf), "%s", self_path);
	}
	env[k++] = env_entry("LD_PRELOAD", buf);
	snprintf(num, sizeof(num), "%d", out_fd);
	env[k++] = env_entry("MEMRAY_FD", num);
	snprintf(num, sizeof(num), "%d", (int)my_pid);
	env[k++] = env_entry("MEMRAY_PID", num);
	env[k++] = env_entry("MEMRAY_NATIVE", native_env);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)interval_us);
	env[k++] = env_entry("MEMRAY_INTERVAL_US", num);
	if (tracker_sampling()) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)tracker_sample_bytes);
		env[k++] = env_entry("MEMRAY_SAMPLE_BYTES", num);
		if (sample_seed) {
			snprintf(num, sizeof(num), "%llu", (unsigned long long)sample_seed);
			env[k++] = env_entry("MEMRAY_SEED", num);
		}
	}
	if (follow) {
		env[k++] = env_entry("MEMRAY_FOLLOW", "1");
		pipe_id(buf, sizeof(buf), out_dev, out_ino);
		env[k++] = env_entry("MEMRAY_FD_ID", buf);
	}
	lock_stream();
	int ok = ACTIVE();
	if (ok) {
		mr_w_exec(&writer, now_us());
		batch_write();
		set_active(0);
		snprintf(num, sizeof(num), "%u", (unsigned)writer.seq);
		env[k++] = env_entry("MEMRAY_SEQ", num);
	}
	unlock();
	env[k] = NULL;
	for (size_t i = 0; i < k; i++)
		if (!env[i])
			ok = 0;
	if (!ok || fcntl(out_fd, F_SETFD, 0) < 0) {
		free_env(env);
		tracker_guard = 0;
		return NULL; /* recording stops; the exec goes ahead unchanged */
	}
	tracker_guard = 0;
	return env;
}

void tracker_exec_failed(char **env)
{
	tracker_guard = 1;
	if (!follow)
		fcntl(out_fd, F_SETFD, FD_CLOEXEC);
	free_env(env);
	lock_stream();
	set_active(1); /* the stream goes on: the next record is not a header */
	unlock();
	tracker_guard = 0;
}

__attribute__((destructor(101))) static void tracker_stop(void)
{
	tracker_finish();
}
