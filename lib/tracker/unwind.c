/*
 * unwind.c - the tracker's own native unwinder for x86-64: the return
 * addresses of the calling thread from the call frame information
 * (.eh_frame) the compiler leaves in every object, each address's rule
 * learned once and kept in a per-thread table.
 *
 * libunwind's unw_backtrace costs about 80 instructions a frame even with
 * its trace cache, and 300 more a call: on a C program ten frames deep
 * that was half of what the tracker spent on an allocation. A frame here
 * is a table lookup and two loads. Only the plain rules are taken: the
 * canonical frame address (CFA) as rsp or rbp plus an offset, the return
 * address at CFA - 8, rbp saved at an offset from the CFA or left alone.
 * Anything else (a signal frame, a CFA or register computed by an
 * expression, an address with no frame information, a stack page that
 * cannot be read) makes fast_backtrace return -1, and the
 * caller asks libunwind for the whole stack, as before. The result is
 * libunwind's: the same addresses, innermost first, ending with the frame
 * whose return address is undefined (_start, clone).
 *
 * Owns: the per-thread rule tables (struct utable), unwind_gen, the
 * MEMRAY_UNWIND setting (unwind_mode).
 * Calls: dl_iterate_phdr (once per address learned), process_vm_readv or
 * msync (once per stack page first reached).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "../varint.h"

int unwind_mode = UNWIND_FAST;
static unsigned unwind_gen; /* bumped when objects are loaded or unloaded */

enum { R_BP = 6, R_SP = 7, R_RA = 16 };

/* What is known of one lookup address: how to find its frame's CFA, and
 * where its caller's rbp and return address are. */
struct urule {
	uintptr_t key;   /* the address looked up, 0: empty slot */
	int32_t cfa_off; /* CFA = (cfa_bp ? rbp : rsp) + cfa_off */
	int16_t bp_off;  /* the caller's rbp at CFA + bp_off; 0: rbp unchanged */
	uint8_t kind;    /* U_* */
	uint8_t cfa_bp;
};
enum { U_FRAME = 1, U_LAST, U_NONE }; /* U_NONE: ask libunwind */

#define UT_SLOTS 4096 /* 1024 sets of 4 */
_Static_assert(sizeof(struct urule) == 16, "four rules a cache line");
/* A walk kept (see fast_backtrace): where it began, each stack word it
 * read that its result depends on and what it read there, and what it
 * gave; n 0: none. bp counts only if bp_used. */
struct uwalk {
	uintptr_t sp, bp;
	int n, max, nread, bp_used;
	/* (up to MAX_FRAMES + 1 frames: capture_native asks for one more
	 * than it keeps, to know a stack it cuts) */
	uintptr_t at[2 * MAX_FRAMES + 4], val[2 * MAX_FRAMES + 4];
	void *ips[MAX_FRAMES + 1];
};
#define UW_WAYS 4 /* walks kept: the last four kept */

struct utable {
	unsigned gen;
	uintptr_t lo, hi; /* stack bytes known to be mapped */
	struct urule slot[UT_SLOTS] __attribute__((aligned(64)));
	unsigned runs; /* runs started (see run_grow) */
	/* walks that found kept ones' words changed since the last one that
	 * did not; walks left before walks are kept again after four (where
	 * the stack changes at every walk, keeping them costs more than it
	 * saves): a pause forgets the walks, and then they are kept afresh */
	unsigned w_missed, w_rest, w_next;
	struct uwalk w[UW_WAYS];
};

static void walks_forget(struct utable *t)
{
	for (int i = 0; i < UW_WAYS; i++)
		t->w[i].n = 0;
}
static __thread struct utable *ut __attribute__((tls_model("initial-exec")));
#define UT_NONE ((struct utable *)1) /* its table could not be mapped */

void unwind_setup(void)
{
	const char *m = getenv("MEMRAY_UNWIND");
	unwind_mode = m && strcmp(m, "libunwind") == 0 ? UNWIND_LIBUNWIND :
		      m && strcmp(m, "check") == 0 ? UNWIND_CHECK : UNWIND_FAST;
}

void unwind_flush(void)
{
	__atomic_add_fetch(&unwind_gen, 1, __ATOMIC_RELEASE);
}

/* The table is let go of before it is unmapped: a signal handler that
 * allocates in between must not walk with it. */
void unwind_thread_exit(void)
{
	struct utable *t = ut;
	ut = NULL;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (t && t != UT_NONE)
		real.munmap(t, sizeof(*t));
}

/* ---- reading the frame information ------------------------------------- */

struct cursor {
	const uint8_t *p, *end;
	int bad;
};

static uint8_t get_u8(struct cursor *c)
{
	if (c->p >= c->end) {
		c->bad = 1;
		return 0;
	}
	return *c->p++;
}

/* ULEB128 is the stream's varint (varint.h); SLEB128 is not zigzag. */
static uint64_t get_uleb(struct cursor *c)
{
	uint64_t v = 0;
	int n = c->bad ? -1 : varint_get(c->p, c->end, &v);
	if (n <= 0) {
		c->bad = 1;
		return 0;
	}
	c->p += n;
	return v;
}

static int64_t get_sleb(struct cursor *c)
{
	int64_t v = 0;
	int shift = 0;
	uint8_t b;
	do {
		b = get_u8(c);
		if (shift > 56) { /* more than a 64-bit value */
			c->bad = 1;
			return 0;
		}
		v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
		shift += 7;
	} while ((b & 0x80) && !c->bad);
	if (shift < 64 && (b & 0x40))
		v = (int64_t)((uint64_t)v | ~(uint64_t)0 << shift);
	return v;
}

static void skip(struct cursor *c, uint64_t n)
{
	if (n > (uint64_t)(c->end - c->p))
		c->bad = 1;
	else
		c->p += n;
}

static uint64_t get_fixed(struct cursor *c, int n)
{
	if (c->end - c->p < n) {
		c->bad = 1;
		return 0;
	}
	uint64_t v = 0;
	memcpy(&v, c->p, (size_t)n); /* little-endian, unsigned */
	c->p += n;
	return v;
}

/* A pointer in the DW_EH_PE encoding enc (absolute, or relative to where
 * it is read); data-relative and indirect ones are not taken. */
static uintptr_t get_ptr(struct cursor *c, uint8_t enc)
{
	const uint8_t *at = c->p;
	uint64_t v;
	if (enc == 0xff) /* DW_EH_PE_omit */
		return 0;
	switch (enc & 0x0f) {
	case 0x00: v = get_fixed(c, 8); break;            /* absptr */
	case 0x01: v = get_uleb(c); break;                /* uleb128 */
	case 0x02: v = get_fixed(c, 2); break;            /* udata2 */
	case 0x03: v = get_fixed(c, 4); break;            /* udata4 */
	case 0x04: v = get_fixed(c, 8); break;            /* udata8 */
	case 0x09: v = (uint64_t)get_sleb(c); break;      /* sleb128 */
	case 0x0a: v = (uint64_t)(int64_t)(int16_t)get_fixed(c, 2); break;
	case 0x0b: v = (uint64_t)(int64_t)(int32_t)get_fixed(c, 4); break; /* sdata4 */
	case 0x0c: v = get_fixed(c, 8); break;            /* sdata8 */
	default: c->bad = 1; return 0;
	}
	switch (enc & 0x70) {
	case 0x00: break;
	case 0x10: v += (uintptr_t)at; break; /* pcrel */
	default: c->bad = 1; return 0;
	}
	if (enc & 0x80) /* indirect */
		c->bad = 1;
	return (uintptr_t)v;
}

/* The row of the CFA program that holds for one address: only what the
 * fast walk uses. A register's rule: R_SAME (unchanged), R_AT (saved at
 * CFA + off), R_OTHER (anything else: another register, an expression,
 * a value), R_UNDEF. */
enum { R_SAME, R_AT, R_OTHER, R_UNDEF };
struct row {
	int cfa_reg, cfa_expr;
	int64_t cfa_off;
	int bp_rule, ra_rule, sp_rule;
	int64_t bp_off, ra_off;
};

static void set_rule(struct row *r, uint64_t reg, int rule, int64_t off)
{
	if (reg == R_BP) {
		r->bp_rule = rule;
		r->bp_off = off;
	} else if (reg == R_RA) {
		r->ra_rule = rule;
		r->ra_off = off;
	} else if (reg == R_SP) {
		r->sp_rule = rule; /* the CFA is the caller's rsp: any other rule is declined */
	}
}

/* Runs CFA instructions from c until the location passes addr; initial is
 * the row the CIE's instructions made (for DW_CFA_restore), NULL while
 * they run. -1: an instruction this reader does not know, or a program
 * cut short. */
static int run_cfa(struct cursor *c, uintptr_t *loc, uintptr_t addr, uint64_t code_align,
		   int64_t data_align, struct row *r, const struct row *initial)
{
	struct row saved[8];
	int nsaved = 0;
	while (c->p < c->end && !c->bad) {
		uint8_t op = get_u8(c), low = op & 0x3f;
		uint64_t reg, delta;
		switch (op >> 6) {
		case 1: /* advance_loc */
			delta = low * code_align;
			goto advance;
		case 2: /* offset */
			set_rule(r, low, R_AT, (int64_t)get_uleb(c) * data_align);
			continue;
		case 3: /* restore */
			reg = low;
			goto restore;
		}
		switch (op) {
		case 0x00: /* nop */
			continue;
		case 0x02: delta = get_fixed(c, 1) * code_align; goto advance;
		case 0x03: delta = get_fixed(c, 2) * code_align; goto advance;
		case 0x04: delta = get_fixed(c, 4) * code_align; goto advance;
		case 0x05: /* offset_extended */
			reg = get_uleb(c);
			set_rule(r, reg, R_AT, (int64_t)get_uleb(c) * data_align);
			continue;
		case 0x06: /* restore_extended */
			reg = get_uleb(c);
			goto restore;
		case 0x07: /* undefined */
			set_rule(r, get_uleb(c), R_UNDEF, 0);
			continue;
		case 0x08: /* same_value */
			set_rule(r, get_uleb(c), R_SAME, 0);
			continue;
		case 0x09: /* register */
			reg = get_uleb(c);
			get_uleb(c);
			set_rule(r, reg, R_OTHER, 0);
			continue;
		case 0x0a: /* remember_state */
			if (nsaved == 8)
				return -1;
			saved[nsaved++] = *r;
			continue;
		case 0x0b: /* restore_state */
			if (nsaved == 0)
				return -1;
			*r = saved[--nsaved];
			continue;
		case 0x0c: /* def_cfa */
			r->cfa_reg = (int)get_uleb(c);
			r->cfa_off = (int64_t)get_uleb(c);
			r->cfa_expr = 0;
			continue;
		case 0x0d: /* def_cfa_register (after an expression it keeps the
			    * earlier offset, as libgcc and libunwind do) */
			r->cfa_reg = (int)get_uleb(c);
			r->cfa_expr = 0;
			continue;
		case 0x0e: /* def_cfa_offset */
			r->cfa_off = (int64_t)get_uleb(c);
			continue;
		case 0x0f: /* def_cfa_expression */
			r->cfa_expr = 1;
			skip(c, get_uleb(c));
			continue;
		case 0x10: /* expression */
		case 0x16: /* val_expression */
			reg = get_uleb(c);
			skip(c, get_uleb(c));
			set_rule(r, reg, R_OTHER, 0);
			continue;
		case 0x11: /* offset_extended_sf */
			reg = get_uleb(c);
			set_rule(r, reg, R_AT, get_sleb(c) * data_align);
			continue;
		case 0x12: /* def_cfa_sf */
			r->cfa_reg = (int)get_uleb(c);
			r->cfa_off = get_sleb(c) * data_align;
			r->cfa_expr = 0;
			continue;
		case 0x13: /* def_cfa_offset_sf */
			r->cfa_off = get_sleb(c) * data_align;
			continue;
		case 0x14: /* val_offset */
		case 0x15: /* val_offset_sf */
			reg = get_uleb(c);
			if (op == 0x14)
				get_uleb(c);
			else
				get_sleb(c);
			set_rule(r, reg, R_OTHER, 0);
			continue;
		case 0x2e: /* GNU_args_size */
			get_uleb(c);
			continue;
		case 0x2f: /* GNU_negative_offset_extended */
			reg = get_uleb(c);
			set_rule(r, reg, R_AT, -(int64_t)get_uleb(c) * data_align);
			continue;
		default: /* set_loc (not in .eh_frame as GCC writes it), and the unknown */
			return -1;
		}
	advance:
		if (*loc + delta > addr)
			return c->bad ? -1 : 0;
		*loc += delta;
		continue;
	restore:
		if (!initial)
			return -1;
		if (reg == R_BP) {
			r->bp_rule = initial->bp_rule;
			r->bp_off = initial->bp_off;
		} else if (reg == R_RA) {
			r->ra_rule = initial->ra_rule;
			r->ra_off = initial->ra_off;
		} else if (reg == R_SP) {
			r->sp_rule = initial->sp_rule;
		}
	}
	return c->bad ? -1 : 0;
}

/* Learns the rule of the frame that holds addr from the object's
 * .eh_frame_hdr h, into *u (left U_NONE when the fast walk cannot take
 * it). */
static void learn_from(uintptr_t addr, const uint8_t *h, struct urule *u)
{
	/* .eh_frame_hdr: version 1, then a table of (start, FDE) sorted by
	 * start, both 4-byte offsets from the header, as the linker makes it */
	if (h[0] != 1 || h[2] != 0x03 || h[3] != 0x3b)
		return;
	struct cursor c = { h + 4, h + 12, 0 };
	get_ptr(&c, h[1]);
	uint32_t count = (uint32_t)get_fixed(&c, 4);
	if (c.bad || count == 0)
		return;
	const int32_t *table = (const int32_t *)c.p;
	uint32_t lo = 0, hi = count;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if ((uintptr_t)(h + table[2 * mid]) <= addr)
			lo = mid;
		else
			hi = mid;
	}
	if ((uintptr_t)(h + table[2 * lo]) > addr)
		return;
	const uint8_t *fde = h + table[2 * lo + 1];

	/* the FDE, then its CIE */
	uint32_t flen;
	memcpy(&flen, fde, 4);
	if (flen == 0 || flen == 0xffffffffu)
		return;
	int32_t cie_id;
	memcpy(&cie_id, fde + 4, 4);
	if (cie_id == 0) /* a CIE, not an FDE */
		return;
	const uint8_t *cie = fde + 4 - cie_id;
	uint32_t clen, id;
	memcpy(&clen, cie, 4);
	memcpy(&id, cie + 4, 4);
	if (clen == 0 || clen == 0xffffffffu || id != 0)
		return;
	struct cursor cc = { cie + 8, cie + 4 + clen, 0 };
	uint8_t version = get_u8(&cc);
	const char *aug = (const char *)cc.p;
	size_t auglen = strnlen(aug, (size_t)(cc.end - cc.p));
	cc.p += auglen + 1;
	if (version != 1 && version != 3)
		return;
	uint64_t code_align = get_uleb(&cc);
	int64_t data_align = get_sleb(&cc);
	uint64_t ra_reg = version == 1 ? get_u8(&cc) : get_uleb(&cc);
	uint8_t fde_enc = 0;
	const uint8_t *insns = NULL;
	if (ra_reg != R_RA)
		return;
	if (aug[0] == 'z') {
		uint64_t n = get_uleb(&cc);
		if (n > (uint64_t)(cc.end - cc.p))
			return;
		insns = cc.p + n;
		for (size_t i = 1; i < auglen && !cc.bad; i++) {
			switch (aug[i]) {
			case 'R':
				fde_enc = get_u8(&cc);
				break;
			case 'L':
				get_u8(&cc);
				break;
			case 'P': {
				uint8_t e = get_u8(&cc);
				get_ptr(&cc, e & 0x7f); /* its size; indirect or not */
				break;
			}
			default: /* 'S' (a signal frame) and the unknown */
				return;
			}
		}
		cc.p = insns;
	} else if (auglen) {
		return;
	}
	if (cc.bad)
		return;

	struct cursor fc = { fde + 8, fde + 4 + flen, 0 };
	uintptr_t start = get_ptr(&fc, fde_enc);
	uintptr_t range = get_ptr(&fc, fde_enc & 0x0f);
	if (fc.bad || addr < start || addr - start >= range)
		return;
	if (aug[0] == 'z')
		skip(&fc, get_uleb(&fc));

	/* the CIE's instructions, then the FDE's up to addr */
	struct row r = { R_SP, 0, 8, R_SAME, R_OTHER, R_SAME, 0, 0 }, initial;
	uintptr_t loc = start;
	if (fc.bad || run_cfa(&cc, &loc, UINTPTR_MAX, code_align, data_align, &r, NULL) < 0)
		return;
	initial = r;
	loc = start;
	if (run_cfa(&fc, &loc, addr, code_align, data_align, &r, &initial) < 0)
		return;
	/* plain rules only: the CFA at rsp or rbp plus 8 bytes to 16 MiB; rbp
	 * unchanged, or saved in a whole word below the CFA; rsp the CFA */
	if (r.cfa_expr || (r.cfa_reg != R_SP && r.cfa_reg != R_BP) || r.cfa_off < 8 ||
	    r.cfa_off >= (1 << 24) || r.sp_rule != R_SAME ||
	    (r.bp_rule != R_SAME && r.bp_rule != R_AT) ||
	    (r.bp_rule == R_AT && (r.bp_off > -8 || r.bp_off < -32768 || r.bp_off % 8)))
		return;
	if (r.ra_rule == R_UNDEF) {
		u->kind = U_LAST;
	} else if (r.ra_rule == R_AT && r.ra_off == -8) {
		u->kind = U_FRAME;
	} else {
		return;
	}
	u->cfa_bp = r.cfa_reg == R_BP;
	u->cfa_off = (int32_t)r.cfa_off;
	u->bp_off = (int16_t)(r.bp_rule == R_AT ? r.bp_off : 0);
}

struct find {
	uintptr_t addr;
	struct urule *u;
};

/* dl_iterate_phdr's callback: the object holding f->addr is read while
 * the loader's lock is held, so that no dlclose unmaps it meanwhile. */
static int find_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct find *f = arg;
	const uint8_t *hdr = NULL;
	int inside = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && f->addr >= a && f->addr < a + ph->p_memsz)
			inside = 1;
		else if (ph->p_type == PT_GNU_EH_FRAME)
			hdr = (const uint8_t *)a;
	}
	if (!inside)
		return 0;
	if (hdr)
		learn_from(f->addr, hdr, f->u);
	return 1;
}

static void learn(uintptr_t addr, struct urule *u)
{
	struct find f = { addr, u };
	u->kind = U_NONE;
	dl_iterate_phdr(find_object, &f);
}

/* ---- the walk ------------------------------------------------------------ */

/* Whether every page of [lo, hi) can be read: one byte of each read with
 * process_vm_readv, which fails on a page that is not mapped or not
 * readable (a guard page). Where that call is refused (a seccomp filter,
 * an old kernel), msync, which knows only whether the pages are mapped. */
static int probe_msync;

static int pages_readable(uintptr_t lo, uintptr_t hi)
{
	int e = errno, ok = 1;
	pid_t pid = getpid();
	while (ok && lo < hi) {
		struct iovec remote[64], local;
		char buf[64];
		uintptr_t from = lo;
		int n = 0;
		for (; n < 64 && lo < hi; n++, lo += 4096)
			remote[n] = (struct iovec){ (void *)lo, 1 };
		local = (struct iovec){ buf, (size_t)n };
		if (!probe_msync) {
			ssize_t r = process_vm_readv(pid, &local, 1, remote, (unsigned long)n, 0);
			if (r == n)
				continue;
			if (r >= 0 || (errno != ENOSYS && errno != EPERM)) {
				ok = 0;
				break;
			}
			probe_msync = 1;
		}
		ok = msync((void *)from, lo - from, MS_ASYNC) == 0;
	}
	errno = e;
	return ok;
}

/* The stack pages this thread has seen readable are one run, [lo, hi),
 * from at or below the stack pointer up: a walk reads only between the
 * stack pointer it starts from and the last frame's CFA, so it needs the
 * run to reach down to the one and up to the other. The run grows by the
 * pages new to it, each probed; a stack far from it (another one: a
 * sigaltstack, a coroutine's), or pages that cannot be read between it
 * and the stack, start a run of their own. So a thread makes a system
 * call only when its stack goes deeper, or a walk higher, than before,
 * or it changes stacks. */
static __attribute__((noinline, cold)) int run_grow(struct utable *t, uintptr_t lo, uintptr_t hi)
{
	if (t->lo < t->hi && hi + (1 << 20) >= t->lo && lo <= t->hi + (1 << 20)) {
		if ((lo >= t->lo || pages_readable(lo, t->lo)) &&
		    (hi <= t->hi || pages_readable(t->hi, hi))) {
			t->lo = lo < t->lo ? lo : t->lo;
			t->hi = hi > t->hi ? hi : t->hi;
			return 1;
		}
	}
	t->lo = t->hi = 0;
	t->runs++;
	walks_forget(t); /* they read pages no longer known readable */
	if (!pages_readable(lo, hi))
		return 0;
	t->lo = lo;
	t->hi = hi;
	return 1;
}

/* The rule of key: the table is 4-way set-associative, a set being one
 * cache line, so that the few dozen addresses of a program's stacks never
 * keep evicting each other. A set is kept in the order of use: the way
 * found goes first, and a key learned pushes out the last. */
static __attribute__((noinline)) const struct urule *rule_miss(struct urule *set, uintptr_t key)
{
	struct urule u;
	int i = 1;
	while (i < 3 && set[i].key != key)
		i++;
	if (set[i].key == key) {
		u = set[i];
	} else {
		learn(key, &u);
		u.key = key;
	}
	memmove(&set[1], &set[0], (size_t)i * sizeof(*set));
	set[0] = u;
	return &set[0];
}

static inline const struct urule *rule_of(struct utable *t, uintptr_t key)
{
	struct urule *set = &t->slot[((key * 0x9E3779B97F4A7C15ull) >> (64 - 12)) & ~(uintptr_t)3];
	if (__builtin_expect(set[0].key == key, 1))
		return &set[0];
	return rule_miss(set, key);
}

/* fast_backtrace's walk from (ip, sp, bp); with keep, the words it reads
 * are kept in w for a later one to compare (see fast_backtrace). */
static inline __attribute__((always_inline)) int walk(struct utable *t, void **ips, int max,
						   uintptr_t ip, uintptr_t sp, uintptr_t bp,
						   struct uwalk *w, const int keep)
{
	if (keep) {
		w->n = 0;
		w->sp = sp;
		w->bp = bp;
		w->max = max;
		w->bp_used = 0;
	}
	int nread = 0, bp_from = -1; /* where bp was read (-1: at the start) */
	uintptr_t odd = 0; /* a word read at an address not a multiple of 8 */
	unsigned runs = t->runs;
	/* This frame is looked up where it is, and not given (unw_backtrace
	 * gives its caller's frame first); the others at their return address
	 * less one, inside the call. */
	int n = 0;
	for (uintptr_t key = ip;; key = ip - 1) {
		const struct urule *u = rule_of(t, key);
		if (u->kind == U_NONE)
			return -1;
		if (key != ip) {
			if (n == max)
				break;
			ips[n++] = (void *)ip;
		}
		if (u->kind == U_LAST)
			break;
		if (keep && u->cfa_bp) {
			/* the rbp this depends on counts (the low bit of an
			 * address read says it does not, yet) */
			if (bp_from < 0)
				w->bp_used = 1;
			else
				w->at[bp_from] &= ~(uintptr_t)1;
		}
		uintptr_t cfa = (u->cfa_bp ? bp : sp) + (uintptr_t)(intptr_t)u->cfa_off;
		if (cfa < sp + 8)
			return -1;
		if (__builtin_expect(cfa > t->hi, 0) &&
		    !run_grow(t, t->lo, (cfa + 4095) & ~(uintptr_t)4095))
			return -1;
		if (u->bp_off) {
			/* at or above sp: bp_off is at most -8 */
			uintptr_t at = cfa + (uintptr_t)(intptr_t)u->bp_off;
			if (at < sp)
				return -1;
			bp = *(const uintptr_t *)at;
			if (keep) {
				odd |= at;
				bp_from = nread;
				w->at[nread] = at | 1;
				w->val[nread++] = bp;
			}
		}
		ip = *(const uintptr_t *)(cfa - 8);
		if (keep) {
			odd |= cfa;
			w->at[nread] = cfa - 8;
			w->val[nread++] = ip;
		}
		sp = cfa;
		if (ip == 0)
			break;
	}
	/* (kept only if every address read was a multiple of 8, as they
	 * are: the low bit marked an rbp that does not count; and all in the
	 * run as it is now) */
	if (keep && n > 0 && t->lo && !(odd & 7) && t->runs == runs) {
		int k = 0;
		for (int i = 0; i < nread; i++)
			if (!(w->at[i] & 1)) {
				w->at[k] = w->at[i];
				w->val[k++] = w->val[i];
			}
		w->nread = k;
		memcpy(w->ips, ips, (size_t)n * sizeof(*ips));
		w->n = n;
	}
	return n;
}

__attribute__((noinline)) int fast_backtrace(void **ips, int max)
{
	struct utable *t = ut;
	if (__builtin_expect(!t, 0)) {
		if (ts.exiting)
			return -1;
		int e = errno;
		void *p = real.mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		errno = e;
		if (p == MAP_FAILED) {
			ut = UT_NONE;
			return -1;
		}
		ut = t = p;
		t->gen = __atomic_load_n(&unwind_gen, __ATOMIC_ACQUIRE);
	}
	if (__builtin_expect(t == UT_NONE, 0))
		return -1;
	unsigned gen = __atomic_load_n(&unwind_gen, __ATOMIC_ACQUIRE);
	if (__builtin_expect(t->gen != gen, 0)) {
		memset(t->slot, 0, sizeof(t->slot));
		t->gen = gen;
		walks_forget(t);
	}
	uintptr_t ip, sp, bp;
	/* rbp first: an output may be given rbp itself when it is not the
	 * frame pointer; the three are read at one row of this function's
	 * frame information (no push or pop between them) */
	__asm__ volatile("mov %%rbp, %2\n\tmov %%rsp, %1\n\tlea 0(%%rip), %0"
			 : "=r"(ip), "=r"(sp), "=r"(bp));
	uintptr_t page = sp & ~(uintptr_t)4095;
	if ((page < t->lo || page >= t->hi) && !run_grow(t, page, page + 4096))
		return -1;
	/* The walk is a function of where it begins (this frame's rip, the
	 * same each time, rsp and rbp), the rules (the same until unwind_gen
	 * moves on, which forgets the walks kept) and the stack words it reads:
	 * when it begins where a kept walk did and each word that one read
	 * still holds what it read, it gives what that one gave. Only the
	 * words that decide it count: every return address, and an rbp
	 * restored only where a frame further out finds its CFA from rbp
	 * (elsewhere rbp is an ordinary register, holding whatever the code
	 * put there, different at each call). (The words were readable then,
	 * in the run, which only grows until it is started again elsewhere,
	 * which forgets the walks too.) The last UW_WAYS walks are kept, for
	 * a program that allocates from a few call paths in turn; each from
	 * the same rsp is compared until its words differ (mostly at once). */
	if (t->w_rest) {
		t->w_rest--;
		return walk(t, ips, max, ip, sp, bp, NULL, 0);
	}
	int tried = 0;
	for (struct uwalk *w = t->w; w < t->w + UW_WAYS; w++) {
		if (w->n <= 0 || w->sp != sp || (w->bp_used && w->bp != bp) || w->max != max)
			continue;
		int i = 0, k = w->nread;
		while (i < k && *(const uintptr_t *)w->at[i] == w->val[i])
			i++;
		if (i == k) {
			t->w_missed = 0;
			memcpy(ips, w->ips, (size_t)w->n * sizeof(*ips));
			return w->n;
		}
		tried = 1;
	}
	if (tried && ++t->w_missed >= 4) {
		t->w_missed = 0;
		t->w_rest = 256;
		walks_forget(t);
		return walk(t, ips, max, ip, sp, bp, NULL, 0);
	}
	/* kept in place of the walk kept longest ago */
	struct uwalk *w = &t->w[t->w_next++ % UW_WAYS];
	return walk(t, ips, max, ip, sp, bp, w, 1);
}
