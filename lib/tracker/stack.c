/*
 * stack.c - the stack of an allocation: capturing it (native frames with
 * unwind.c's unwinder or libunwind, Python frames read from the
 * interpreter, or both merged into a hybrid stack where the evaluation
 * loop ran them) and interning it in the stack trie, whose new nodes are
 * written to the stream.
 *
 * An event (record.c) calls capture() outside the lock, then intern()
 * under it. Each thread caches its previous stack with the trie node of
 * each prefix, so a new stack only interns the frames below the point
 * where it differs.
 *
 * Owns: the stack trie, the threads' stack caches (struct tcache, struct
 * pystate), the evaluation loop's known parts, the fork gate around
 * the unwinders, MEMRAY_UNWIND=check's comparison, which stacks are
 * recorded (native_stacks, python_stacks) and the code ranges skipped in
 * stacks (this library's, libunwind's).
 * Calls: unwind.c (fast_backtrace), libunwind, python.c (python_walk, python_frame_id, ...), the
 * writer (mr_w_node_*, under the lock).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "internal.h"
#include "python.h"

/* The stack cache of a thread: its previous stack, root first, with the
 * trie node of each prefix. */
/* A thread's last native stacks, each with the trie node of every prefix
 * (ids), so that a stack it had lately needs no lookup in the trie, which
 * is done under the stream's lock: the last TC_WAYS stacks interned
 * (replaced in turn), for a thread that allocates from a few places. */
#define TC_WAYS 4
struct tway {
	int depth;
	int cut;   /* the stack was cut (CUT_NATIVE): its root is the label */
	uintptr_t ips[MAX_FRAMES];
	uint32_t ids[MAX_FRAMES];
};
struct tcache {
	unsigned next; /* the way replaced next */
	struct tway w[TC_WAYS];
};

/* Per-thread Python stacks: the frames just walked and the previous stack
 * with its trie nodes, in memory of their own (a thread's C stack may be
 * small, and static TLS should stay small). */
#define MAX_PY_FRAMES 2048
#define MAX_TOP 64 /* frames new since the last stack, read the quick way */
/* The nodes a thread interned lately, each by its parent and its frame
 * as python_frame_id knows a frame (code object, instruction, and the
 * code object's name, file and first line): a stack whose new frames are
 * all here needs no lookup in the trie, so no lock. A loop allocating on
 * a few lines (objects.py --trace-python-allocators: 85% of allocations
 * took the lock) changes its innermost frame at each one, which the
 * stack kept last (prev) does not cover. */
#define PY_MEMO 256
struct pymemo {
	const void *code, *name, *file;
	int64_t lasti;
	uint32_t parent, node; /* node 0: an empty slot */
	int firstlineno;
};
#define HC_MAX (MAX_PY_FRAMES + MAX_FRAMES)
struct pystate {
	int seen; /* the thread has run Python code */
	int depth;
	/* whether prev (as interned), cur (as walked) and the last hybrid
	 * stack interned were cut (c->cut): the levels kept from the root
	 * of a stack are its innermost, under a label. A level's frame,
	 * unchanged, has the same callers, so a stack that shares a level
	 * with another is cut as it is. */
	int prev_cut, cur_cut, hcut;   /* (CUT_PY or 0) */
	int curn; /* hybrid stacks: frames of cur that are the last walk's */
	struct pyent prev[MAX_PY_FRAMES];
	struct pyent cur[MAX_PY_FRAMES];
	struct pyent top[MAX_TOP];
	/* hybrid stacks (--native on Python): native frames with the Python
	 * frames in place of the evaluation loop's; ip 0 marks a Python item */
	int hdepth;
	uint32_t hnode[MAX_PY_FRAMES + MAX_FRAMES]; /* the trie node of each prefix */
	/* merged stacks as a native ip, or (ip 0) the index of a Python frame
	 * in cur: the one being merged and the last one interned (hc[hlast],
	 * hdepth items), in turns, each root first from hstart to the end of
	 * its array (merged from the leaf, so written from the end). stable:
	 * levels of cur unchanged since that one was interned. */
	struct hcur {
		uintptr_t ip;
		intptr_t py;
	} hc[2][HC_MAX];
	int hstart[2];
	int hlast, stable;
	/* what the last stack interned was merged from, besides cur's
	 * levels: its native frames (root first), its count of Python
	 * levels, the count of the loop's parts known then, and whether
	 * Python frames were left over (put at the root) */
	uintptr_t hips[MAX_FRAMES];
	int hipn, hpyn, hparts, hleft;
	struct pymemo memo[PY_MEMO];
};
static uintptr_t eval_lo, eval_hi; /* the interpreter's evaluation loop */
static uint32_t cut_node(int cut);
/* the Python items of hybrid stacks, levels 0 to MAX_PY_FRAMES - 1 in
 * order: a run of levels is copied from here whole */
static struct hcur py_items[MAX_PY_FRAMES];
static __thread struct pystate *pyts __attribute__((tls_model("initial-exec")));
int python_stacks; /* the program is CPython and frames are walked */
#define PY_NODE (1ull << 63) /* a trie key holding a PYFRAME id */

int native_stacks;
static uintptr_t self_lo, self_hi; /* our own code, skipped in stacks */
char self_path[4096];

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

/* Each level's run (pyent.run) from level `from` on: the nearest entry
 * frame at or below it (the root when none), as hybrid() merges them. */
static void set_runs(struct pyent *v, int from, int n)
{
	for (int k = from; k < n; k++)
		v[k].run = (uint16_t)(v[k].entry || k == 0 ? k : v[k - 1].run);
}

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
		if (!(pyts = raw_map(sizeof(struct pystate))))
			return;
	}
	struct pystate *s = pyts;
	/* what changed since the thread's last stack, when that can be had:
	 * hybrid stacks compare with cur, the last walk, entry marks and all;
	 * pure ones with prev, the last stack interned */
	int ntop = 0;
	int same = native_stacks ? python_walk_marks_from(s->cur, s->curn, s->top, MAX_TOP, &ntop)
				 : python_walk_from(s->prev, s->depth, s->top, MAX_TOP, &ntop);
	/* (a stack grown past what cur holds is walked whole, and cut there) */
	if (same >= 0 && same + ntop <= MAX_PY_FRAMES) {
		for (int k = 0; k < ntop; k++)
			s->cur[same + k] = s->top[ntop - 1 - k];
		/* cut as the levels kept are (same 0: the walk reached the
		 * root); pure Python stacks need it only when no level is
		 * kept (intern_python, memo_python), and it is 0 then */
		if (native_stacks) {
			set_runs(s->cur, same, same + ntop);
			s->cur_cut = same && s->cur_cut;
			c->cut = s->cur_cut; /* (CUT_PY is 1) */
		}
		c->pysame = same;
		if (same < s->stable)
			s->stable = same;
		c->pyn = s->curn = same + ntop;
		if (c->pyn)
			s->seen = 1;
		return;
	}
	s->stable = 0;
	c->pyn = s->curn = python_walk(s->cur, MAX_PY_FRAMES, &s->cur_cut);
	c->cut = s->cur_cut; /* (CUT_PY is 1) */
	if (native_stacks)
		set_runs(s->cur, 0, c->pyn);
	if (c->pyn)
		s->seen = 1;
	else if (!native_stacks)
		c->why = python_why_none(s->seen);
	while (s->cur_cut == s->prev_cut && c->pysame < c->pyn && c->pysame < s->depth &&
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
/* Places Python levels g down to k (their items lie in py_items in order)
 * below the n items e ends with, leaf first; *unstable: where the level
 * s->stable went, if among them. */
static inline int place_levels(const struct pystate *s, struct hcur *e, int n, int g, int k,
			       int *unstable)
{
	if (s->stable <= g && s->stable >= k)
		*unstable = n + (g - s->stable);
	n += g - k + 1;
	memcpy(e - n, &py_items[k], (size_t)(g - k + 1) * sizeof(*e));
	return n;
}

static void hybrid(struct capture *c)
{
	struct pystate *s = pyts;
	/* written leaf first from the end: e[-n] is the nth item from the leaf */
	struct hcur *e = s->hc[!s->hlast] + HC_MAX;
	int n, g; /* g: the leaf-most Python frame not yet placed */
	int unstable = -1; /* where the first level of cur changed since goes */
	for (int again = 1;; again = 0) {
		/* (a part learned while this merge runs makes the count
		 * older than the merge: never a match it should not be) */
		c->hparts = __atomic_load_n(&eval_nparts, __ATOMIC_ACQUIRE);
		n = 0, g = c->pyn - 1;
		for (int i = c->n - 1; i >= 0; i--) {
			uintptr_t ip = c->ips[i];
			if (g >= 0 && in_eval(ip)) {
				/* this run of the loop: frames g down to the
				 * nearest entry frame (or the root) */
				int k = s->cur[g].run;
				n = place_levels(s, e, n, g, k, &unstable);
				g = k - 1;
			} else {
				e[-++n] = (struct hcur){ ip, 0 };
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
	c->hleft = g >= 0;
	if (g >= 0)
		n = place_levels(s, e, n, g, 0, &unstable);
	const struct hcur *h = e - n;
	s->hstart[!s->hlast] = HC_MAX - n;
	c->hn = n;
	/* the same items as in the stack interned last: the same native ips,
	 * the same levels of cur, unchanged since (before `unstable`: Python
	 * items keep cur's order) */
	const struct hcur *last = s->hc[s->hlast] + s->hstart[s->hlast];
	int k = 0, lim = c->cut != s->hcut ? 0 : n < s->hdepth ? n : s->hdepth;
	if (unstable >= 0 && n - 1 - unstable < lim)
		lim = n - 1 - unstable;
	/* eight items at a time while they are equal (libc's vector compare:
	 * about a third of the instructions of the item loop) */
	while (k + 8 <= lim && memcmp(&last[k], &h[k], 8 * sizeof(*h)) == 0)
		k += 8;
	while (k < lim && last[k].ip == h[k].ip && last[k].py == h[k].py)
		k++;
	c->hsame = k;
}

static __attribute__((noinline)) uint32_t intern_hybrid(const struct capture *c)
{
	struct pystate *s = pyts;
	if (c->hsame < 0) /* the last stack again, unmerged (unchanged) */
		return s->hnode[s->hdepth - 1];
	uint32_t parent = c->hsame ? s->hnode[c->hsame - 1] : cut_node(c->cut);
	s->hcut = c->cut;
	const struct hcur *hc = s->hc[!s->hlast] + s->hstart[!s->hlast];
	for (int i = c->hsame; i < c->hn; i++) {
		const struct hcur *h = &hc[i];
		parent = trie_node(parent, h->ip ? h->ip
					      : PY_NODE | python_frame_id(&writer, &s->cur[h->py]));
		s->hnode[i] = parent;
	}
	s->hdepth = c->hn;
	s->hlast = !s->hlast;
	s->stable = c->pyn;
	memcpy(s->hips, c->ips, (size_t)c->n * sizeof(c->ips[0]));
	s->hipn = c->n;
	s->hpyn = c->pyn;
	s->hparts = c->hparts;
	s->hleft = c->hleft;
	return parent;
}

/* Forgets what the calling thread cached for an earlier stream. */
void thread_fresh(void)
{
	uint32_t gen = __atomic_load_n(&stream_gen, __ATOMIC_RELAXED);
	if (ts.gen == gen)
		return;
	ts.gen = gen;
	ts.index = 0;
	if (ts.cache)
		for (int w = 0; w < TC_WAYS; w++)
			ts.cache->w[w].depth = 0;
	if (pyts) {
		pyts->depth = 0;
		pyts->curn = pyts->stable = 0;
		pyts->hdepth = 0;
		memset(pyts->memo, 0, sizeof(pyts->memo));
	}
}

/* A fork must not happen while a thread is inside libunwind: the child
 * would inherit its internal locks held, and deadlock at its first
 * unwind. Unwinding threads count themselves in; the fork's prepare
 * handler closes the gate and waits for the count to reach 0. Each thread
 * counts itself in a slot of its own (a cache line), so that threads
 * unwinding at once write no memory in common: one count for all of them
 * moved between processors twice at every allocation. The threads past
 * GATE_SLOTS share the count. */
#define GATE_SLOTS 256
static struct gate_slot {
	int busy, taken;
	char pad[56];
} gate_slots[GATE_SLOTS] __attribute__((aligned(64)));
static int fork_gate;
static unsigned unwinding;
static unsigned long checked, differed, declined; /* MEMRAY_UNWIND=check */

/* The calling thread's slot, taken at its first unwind: index + 1, or -1
 * (none left, or the thread is ending). */
static int gate_claim(void)
{
	if (ts.exiting)
		return -1;
	for (int i = 0; i < GATE_SLOTS; i++) {
		int free_slot = 0;
		if (!__atomic_load_n(&gate_slots[i].taken, __ATOMIC_RELAXED) &&
		    __atomic_compare_exchange_n(&gate_slots[i].taken, &free_slot, 1, 0,
						__ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			return i + 1;
	}
	return -1;
}

/* gate_enter's other ways: the thread's first unwind, the gate closed,
 * no slot to be had. */
static __attribute__((noinline)) void gate_enter_slow(void)
{
	if (!ts.gate)
		ts.gate = gate_claim();
	if (ts.gate > 0) {
		int *busy = &gate_slots[ts.gate - 1].busy;
		for (;;) {
			/* (an exchange: the gate is read after the slot is
			 * seen busy; gate_close writes the gate, then reads
			 * the slots) */
			__atomic_exchange_n(busy, 1, __ATOMIC_SEQ_CST);
			if (!__atomic_load_n(&fork_gate, __ATOMIC_SEQ_CST))
				return;
			__atomic_store_n(busy, 0, __ATOMIC_RELEASE);
			while (__atomic_load_n(&fork_gate, __ATOMIC_ACQUIRE))
				sched_yield();
		}
	}
	for (;;) {
		while (__atomic_load_n(&fork_gate, __ATOMIC_ACQUIRE))
			sched_yield();
		__atomic_add_fetch(&unwinding, 1, __ATOMIC_SEQ_CST);
		if (!__atomic_load_n(&fork_gate, __ATOMIC_SEQ_CST))
			break;
		__atomic_sub_fetch(&unwinding, 1, __ATOMIC_ACQ_REL);
	}
}

static inline __attribute__((always_inline)) void gate_enter(void)
{
	int g = ts.gate;
	if (__builtin_expect(g > 0, 1)) {
		int *busy = &gate_slots[g - 1].busy;
		__atomic_exchange_n(busy, 1, __ATOMIC_SEQ_CST);
		if (__builtin_expect(!__atomic_load_n(&fork_gate, __ATOMIC_SEQ_CST), 1))
			return;
		__atomic_store_n(busy, 0, __ATOMIC_RELEASE);
	}
	gate_enter_slow();
}

static inline __attribute__((always_inline)) void gate_leave(void)
{
	int g = ts.gate;
	if (__builtin_expect(g > 0, 1))
		__atomic_store_n(&gate_slots[g - 1].busy, 0, __ATOMIC_RELEASE);
	else
		__atomic_sub_fetch(&unwinding, 1, __ATOMIC_ACQ_REL);
}

/* The calling thread ends: its slot is another's to take. */
static void gate_thread_exit(void)
{
	if (ts.gate > 0)
		__atomic_store_n(&gate_slots[ts.gate - 1].taken, 0, __ATOMIC_RELEASE);
	ts.gate = -1;
}

static inline int is_self(const void *ip)
{
	return (uintptr_t)ip >= self_lo && (uintptr_t)ip < self_hi;
}

/* MEMRAY_UNWIND=check: the stack both ways, from the first frame that is
 * not ours. */
static void unwind_compare(void **fast, int n, int max)
{
	void *slow[MAX_FRAMES + 1];
	int m = backtrace_ips(slow, max), i = 0, j = 0;
	while (i < n && is_self(fast[i]))
		i++;
	while (j < m && is_self(slow[j]))
		j++;
	__atomic_add_fetch(&checked, 1, __ATOMIC_RELAXED);
	if (n - i == m - j && memcmp(fast + i, slow + j, (size_t)(n - i) * sizeof(void *)) == 0)
		return;
	if (__atomic_add_fetch(&differed, 1, __ATOMIC_RELAXED) > 1)
		return;
	char msg[1024];
	int k = snprintf(msg, sizeof(msg), "memray-c: unwind check: the first stack that differs:\n  own:");
	for (int a = i; a < n && a < i + 12 && k < 900; a++)
		k += snprintf(msg + k, sizeof(msg) - (size_t)k, " %p", fast[a]);
	k += snprintf(msg + k, sizeof(msg) - (size_t)k, "%s\n  libunwind:", n - i > 12 ? " ..." : "");
	for (int b = j; b < m && b < j + 12 && k < 1000; b++)
		k += snprintf(msg + k, sizeof(msg) - (size_t)k, " %p", slow[b]);
	if (k < (int)sizeof(msg) - 1)
		msg[k++] = '\n';
	(void)!write(2, msg, (size_t)k < sizeof(msg) ? (size_t)k : sizeof(msg) - 1);
}

void unwind_report(void)
{
	if (unwind_mode != UNWIND_CHECK || !native_stacks)
		return;
	char msg[256];
	int k = snprintf(msg, sizeof(msg),
			 "memray-c: unwind check: %lu stacks unwound, %lu differed from libunwind's, %lu left to libunwind\n",
			 checked, differed, declined);
	(void)!write(2, msg, (size_t)k < sizeof(msg) ? (size_t)k : sizeof(msg) - 1);
}

/* The tracker's own unwinder first; libunwind for what it declines. */
static int gated_backtrace(void **ips, int max)
{
	gate_enter();
	int n = unwind_mode != UNWIND_LIBUNWIND ? fast_backtrace(ips, max) : -1;
	if (n < 0) {
		if (unwind_mode == UNWIND_CHECK)
			__atomic_add_fetch(&declined, 1, __ATOMIC_RELAXED);
		n = backtrace_ips(ips, max);
	} else if (unwind_mode == UNWIND_CHECK) {
		unwind_compare(ips, n, max);
	}
	gate_leave();
	return n;
}

/* Whether c's hybrid stack is the one interned last, without merging it
 * again: a merge reads only the native frames, cur's levels (code,
 * instruction and entry marks, with each level's run), and which native
 * frames are the loop's, and gives the same stack when each is as it was
 * then. cur's levels are (stable: none changed since, and as many); the
 * native frames are compared; the loop's parts only grow, so their count
 * tells. A merge that left Python frames over may learn a part next time,
 * and is done again. Then c->hsame < 0 tells intern_hybrid. */
static inline int hybrid_unchanged(struct capture *c, void *const *leaf_first, int n)
{
	const struct pystate *s = pyts;
	if (!s->hdepth || s->hleft || s->hcut != c->cut || s->stable != c->pyn || s->hpyn != c->pyn ||
	    s->hipn != n || s->hparts != __atomic_load_n(&eval_nparts, __ATOMIC_ACQUIRE))
		return 0;
	/* leaf first, where they differ; hips is root first */
	for (int i = 0; i < n; i++)
		if (s->hips[n - 1 - i] != (uintptr_t)leaf_first[i])
			return 0;
	c->n = n; /* (its ips are not read again: intern_hybrid takes s's) */
	c->hn = s->hdepth;
	c->hsame = -1;
	return 1;
}

/* The native frames of a capture, and the hybrid stack when it has
 * Python frames too: apart from capture, whose Python-only way stays
 * short. */
static __attribute__((noinline)) void capture_native(struct capture *c)
{
	/* one more than is kept, to know when the stack is deeper: it is
	 * then cut, its innermost frames kept */
	void *raw[MAX_FRAMES + 1];
	int n = gated_backtrace(raw, MAX_FRAMES + 1);
	if (n > MAX_FRAMES) {
		n = MAX_FRAMES;
		c->cut = CUT_NATIVE;
	}
	int skip = 0;
	while (skip < n && is_self(raw[skip]))
		skip++;
	/* a stack unchanged is compared as unwound (leaf first, where
	 * stacks differ) with the kept ones (root first), not copied: its
	 * frames are not read again, the kept nodes stand for them */
	void *const *leaf = raw + skip;
	int m = n - skip;
	if (c->pyn && hybrid_unchanged(c, leaf, m))
		return;
	struct tcache *k = NULL;
	if (!c->pyn) {
		if (!ts.cache && !ts.exiting)
			ts.cache = raw_map(sizeof(struct tcache));
		k = ts.cache;
		for (int w = 0; k && m && w < TC_WAYS; w++) {
			const struct tway *y = &k->w[w];
			if (y->depth != m || y->cut != c->cut)
				continue;
			int i = 0;
			while (i < m && y->ips[m - 1 - i] == (uintptr_t)leaf[i])
				i++;
			if (i == m) { /* a stack kept whole */
				c->n = c->same = m;
				c->way = w;
				return;
			}
		}
	}
	for (int i = m - 1; i >= 0; i--)
		c->ips[c->n++] = (uintptr_t)leaf[i];
	if (c->pyn) {
		hybrid(c);
		return;
	}
	if (!k)
		return;
	/* else the longest prefix a kept stack shares */
	for (int w = 0; w < TC_WAYS; w++) {
		const struct tway *y = &k->w[w];
		int i = 0;
		if (y->cut != c->cut)
			continue;
		while (i < m && i < y->depth && y->ips[i] == c->ips[i])
			i++;
		if (i > c->same) {
			c->same = i;
			c->way = w;
		}
	}
}

/* Unwinds the calling thread, outside the lock. */
void capture(struct capture *c)
{
	thread_fresh();
	c->n = c->same = c->hn = c->hsame = c->cut = 0;
	capture_python(c);
	if (native_stacks)
		capture_native(c);
}

static inline struct pymemo *memo_slot(struct pystate *s, uint32_t parent, const struct pyent *e)
{
	uint64_t h = ((uint64_t)(uintptr_t)e->code ^ (uint64_t)parent << 32 ^ (uint64_t)e->lasti) *
		     0x9e3779b97f4a7c15ull;
	return &s->memo[h >> 56 & (PY_MEMO - 1)];
}

/* Interns a capture's Python frames and returns its leaf node. Locked. */
static __attribute__((noinline)) uint32_t intern_python(const struct capture *c)
{
	struct pystate *s = pyts;
	uint32_t parent = c->pysame ? s->prev[c->pysame - 1].node : cut_node(c->cut);
	if (!c->pysame)
		s->prev_cut = c->cut;
	for (int i = c->pysame; i < c->pyn; i++) {
		const struct pyent *e = &s->cur[i];
		uint32_t frame = python_frame_id(&writer, e);
		uint32_t node = trie_node(parent, PY_NODE | frame);
		if (frame && node && node != parent) { /* (parent: the trie is full) */
			struct pymemo *m = memo_slot(s, parent, e);
			struct pycode_id id;
			python_code_id(e->code, &id);
			*m = (struct pymemo){ e->code, id.name, id.file, e->lasti, parent, node,
					      id.firstlineno };
		}
		parent = node;
		s->prev[i] = *e;
		s->prev[i].node = parent;
	}
	s->depth = c->pyn;
	return parent;
}

/* The leaf node of a capture's Python frames when every frame new since
 * the last stack is in the thread's memo under the node below it, as
 * intern_python would find it; else 0. On a miss the levels found are
 * kept as the thread's stack, cut where the miss is (depth), so that it
 * is whole as it stands if the event is then not written (the stream
 * stopped meanwhile: intern_python, which would set it again, does not
 * run). */
static __attribute__((noinline)) int memo_python(const struct capture *c, uint32_t *node)
{
	struct pystate *s = pyts;
	if (!c->pysame) {
		/* a cut stack's label is made under the lock */
		if (c->cut) {
			s->depth = 0;
			return 0;
		}
		s->prev_cut = 0;
	}
	uint32_t parent = c->pysame ? s->prev[c->pysame - 1].node : 0;
	int i;
	for (i = c->pysame; i < c->pyn; i++) {
		const struct pyent *e = &s->cur[i];
		const struct pymemo *m = memo_slot(s, parent, e);
		if (m->code != e->code || m->lasti != e->lasti || m->parent != parent || !m->node)
			goto miss;
		struct pycode_id id;
		python_code_id(e->code, &id);
		if (m->name != id.name || m->file != id.file || m->firstlineno != id.firstlineno)
			goto miss;
		parent = m->node;
		s->prev[i] = *e;
		s->prev[i].node = parent;
	}
	s->depth = c->pyn;
	*node = parent;
	return 1;
miss:
	s->depth = i;
	return 0;
}

/* Labels: frames that are no code, each a PYFRAME of no file and line 0
 * (memray-stream(5)), made once a stream at the trie's root.
 * - Python stacks without native ones: an allocation made with no Python
 *   frame gets a frame that says why (enum py_none), in place of no stack
 *   at all; with native stacks its C frames say more.
 * - A stack cut (c->cut) hangs under one that says so (LABEL_CUT + cut - 1). */
enum { LABEL_CUT = PY_NONE_END, LABEL_END = PY_NONE_END + CUT_NATIVE };
static const char *const label_text[LABEL_END] = {
	[PY_NONE_STARTUP] = "[Python start-up]",
	[PY_NONE_SHUTDOWN] = "[Python shutdown]",
	[PY_NONE_THREAD_START] = "[thread start-up]",
	[PY_NONE_NO_STATE] = "[outside Python]",
	[PY_NONE_BETWEEN] = "[no Python frame]",
	[LABEL_CUT + CUT_PY - 1] = "[stack cut: deeper than 2048 Python frames]",
	[LABEL_CUT + CUT_NATIVE - 1] = "[stack cut: deeper than 256 native frames]",
};
static uint32_t label_nodes[LABEL_END], label_gen;

/* Label k's node; 0 (the trie's root) for none. Locked. */
static __attribute__((noinline)) uint32_t label_node(int k)
{
	if (k <= 0 || k >= LABEL_END)
		return 0;
	if (label_gen != stream_gen) {
		memset(label_nodes, 0, sizeof(label_nodes));
		label_gen = stream_gen;
	}
	if (!label_nodes[k]) {
		const char *t = label_text[k];
		uint32_t frame = mr_w_pyframe(&writer, mr_w_string(&writer, t, strlen(t)), 0, 0);
		label_nodes[k] = trie_node(0, PY_NODE | frame);
	}
	return label_nodes[k];
}

/* The root a stack's frames hang under: its cut's label, or the trie's
 * root for a whole one. Locked. */
static uint32_t cut_node(int cut)
{
	return cut ? label_node(LABEL_CUT + cut - 1) : 0;
}

/* A native stack's nodes, from the first frame not in the thread's
 * cache. Locked. */
static __attribute__((noinline)) uint32_t intern_native(const struct capture *c)
{
	struct tcache *k = ts.cache; /* c->same > 0 only with a cache */
	if (c->same && c->same == c->n)
		return k->w[c->way].ids[c->n - 1]; /* a stack kept whole */
	const struct tway *from = k && c->same ? &k->w[c->way] : NULL;
	uint32_t parent = c->same ? from->ids[c->same - 1] : cut_node(c->cut);
	/* kept in place of the way replaced next, with the prefix it shares */
	struct tway *to = k ? &k->w[k->next++ % TC_WAYS] : NULL;
	if (to && from && to != from) {
		memcpy(to->ips, from->ips, (size_t)c->same * sizeof(to->ips[0]));
		memcpy(to->ids, from->ids, (size_t)c->same * sizeof(to->ids[0]));
	}
	for (int i = c->same; i < c->n; i++) {
		parent = trie_node(parent, c->ips[i]);
		if (to) {
			to->ips[i] = c->ips[i];
			to->ids[i] = parent;
		}
	}
	if (to) {
		to->depth = c->n;
		to->cut = c->cut;
	}
	return parent;
}

/* The capture's leaf node when the thread has it already (a stack it had
 * lately, whole): no lookup in the trie, so no lock. */
int intern_kept(const struct capture *c, uint32_t *node)
{
	if (c->hn) {
		if (c->hsame >= 0)
			return 0;
		*node = pyts->hnode[pyts->hdepth - 1];
		return 1;
	}
	if (c->n) {
		if (c->same != c->n)
			return 0;
		*node = ts.cache->w[c->way].ids[c->n - 1];
		return 1;
	}
	if (c->pyn && c->pysame == c->pyn) {
		pyts->depth = c->pyn;
		*node = pyts->prev[c->pyn - 1].node;
		return 1;
	}
	return c->pyn && memo_python(c, node);
}

uint32_t intern(const struct capture *c)
{
	if (c->hn)
		return intern_hybrid(c);
	if (c->n)
		return intern_native(c);
	if (c->pyn && c->pysame == c->pyn) {
		/* no frame new since the last stack: its node, as
		 * intern_python gives it */
		pyts->depth = c->pyn;
		return pyts->prev[c->pyn - 1].node;
	}
	return c->pyn ? intern_python(c) : label_node(c->why);
}

/* The calling thread is past its key destructor: its caches go, and
 * nothing more is mapped for it. */
void stack_thread_exit(void)
{
	ts.exiting = 1;
	gate_thread_exit();
	unwind_thread_exit();
	if (ts.cache) {
		real.munmap(ts.cache, sizeof(*ts.cache));
		ts.cache = NULL;
	}
	if (pyts) {
		real.munmap(pyts, sizeof(*pyts));
		pyts = NULL;
	}
}

/* Dropped, not cleared: in a forked child, clearing would copy every page
 * of the parent's tables. */
void trie_forget(void)
{
	if (trie)
		real.munmap(trie, trie_cap * sizeof(*trie));
	trie = NULL;
	trie_cap = trie_count = 0;
}

/* Before a fork: no thread inside libunwind until gate_open (see
 * gated_backtrace). */
void gate_close(void)
{
	__atomic_store_n(&fork_gate, 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < GATE_SLOTS; i++)
		while (__atomic_load_n(&gate_slots[i].busy, __ATOMIC_SEQ_CST))
			sched_yield();
	while (__atomic_load_n(&unwinding, __ATOMIC_SEQ_CST))
		sched_yield();
}

void gate_open(void)
{
	__atomic_store_n(&fork_gate, 0, __ATOMIC_RELEASE);
}

/* In the child of a fork: the only thread, inside libunwind or learning
 * nowhere. */
void gate_forked(void)
{
	__atomic_store_n(&fork_gate, 0, __ATOMIC_RELEASE);
	unwinding = 0;
	/* the other threads' slots: theirs no more */
	for (int i = 0; i < GATE_SLOTS; i++) {
		gate_slots[i].busy = 0;
		gate_slots[i].taken = i == ts.gate - 1;
	}
	eval_busy = 0;
	checked = differed = declined = 0; /* the child counts its own */
}

/* ---- the unwinder ------------------------------------------------------- */

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

void find_self(void)
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
 * that addresses are readable). Unwinding once here, its pipe2 call
 * moves the pipe out of the program's way (hooks.c); where that call is
 * not ours (a tracker loaded late), the low descriptor numbers are held
 * by placeholders meanwhile: the pipe is kept out of the numbers the
 * program expects its own open() calls to get. */
int unwind_started;
__thread int hiding_pipes __attribute__((tls_model("initial-exec")));

void unwinder_start(void)
{
	int held[64], n = 0;
	unwind_started = 1;
	unwind_setup();
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
	hiding_pipes = 1; /* (libunwind starts when its policy is set) */
#ifdef MEMRAY_TSAN
	/* libunwind's per-thread cache is freed by a key destructor that runs
	 * after the sanitizer has let go of the exiting thread */
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_GLOBAL);
#else
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
#endif
	backtrace_ips(ips, 8);
	hiding_pipes = 0;
	while (n > 0)
		close(held[--n]);
}

/* Which stacks are recorded (native: 1, 0, or -1 for the default: native
 * stacks unless the program is a Python whose frames are read), and the
 * header's flags. py: what python_start found. */
void stack_options(int py, int native, uint64_t flags)
{
	native_stacks = native >= 0 ? native : py != PY_READ;
	python_stacks = py == PY_READ;
	if (python_stacks && native_stacks) {
		for (int i = 0; i < MAX_PY_FRAMES; i++)
			py_items[i] = (struct hcur){ 0, i };
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
