/*
 * got.c - GOT patching for a tracker loaded into a running program (see
 * got.h). Everything here uses memory mapped directly, never the
 * program's heap, and takes no lock of the tracker's: got_lock is only
 * ever taken before the loader's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include "got.h"

#if defined(__x86_64__)
#define R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define R_GLOB_DAT R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define R_GLOB_DAT R_AARCH64_GLOB_DAT
#else
#error "GOT patching knows x86-64 and aarch64"
#endif

#define R_TYPE(info) ELF64_R_TYPE(info)
#define R_SYM(info) ELF64_R_SYM(info)

static pthread_mutex_t got_lock = PTHREAD_MUTEX_INITIALIZER;
static int in_pass; /* a pass is running: the tables are being rebuilt */

/* ---- memory of our own ---------------------------------------------------- */

static void *map_grow(void *old, size_t old_n, size_t new_n)
{
	void *p = mmap(NULL, new_n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (old) {
		memcpy(p, old, old_n);
		munmap(old, old_n);
	}
	return p;
}

/* ---- an object's dynamic section ------------------------------------------ */

struct dyn {
	uintptr_t base;
	const ElfW(Sym) *symtab;
	const char *strtab;
	size_t strsz;
	const ElfW(Rela) *jmprel, *rela;
	size_t jmprelsz, relasz;
	const uint32_t *gnu_hash, *sysv_hash;
	const ElfW(Half) *versym;
};

/* The loader rewrites most pointers of a writable dynamic section to
 * addresses; a read-only one keeps them relative to the base. */
static uintptr_t dyn_ptr(uintptr_t base, ElfW(Addr) v)
{
	return v < base ? base + v : v;
}

static int dyn_read(const struct dl_phdr_info *info, struct dyn *d)
{
	memset(d, 0, sizeof(*d));
	d->base = info->dlpi_addr;
	const ElfW(Dyn) *dyn = NULL;
	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
	if (!dyn)
		return -1;
	int pltrel = DT_RELA;
	for (; dyn->d_tag != DT_NULL; dyn++) {
		uintptr_t p = dyn_ptr(d->base, dyn->d_un.d_ptr);
		switch (dyn->d_tag) {
		case DT_SYMTAB: d->symtab = (const ElfW(Sym) *)p; break;
		case DT_STRTAB: d->strtab = (const char *)p; break;
		case DT_STRSZ: d->strsz = dyn->d_un.d_val; break;
		case DT_JMPREL: d->jmprel = (const ElfW(Rela) *)p; break;
		case DT_PLTRELSZ: d->jmprelsz = dyn->d_un.d_val; break;
		case DT_PLTREL: pltrel = (int)dyn->d_un.d_val; break;
		case DT_RELA: d->rela = (const ElfW(Rela) *)p; break;
		case DT_RELASZ: d->relasz = dyn->d_un.d_val; break;
		case DT_GNU_HASH: d->gnu_hash = (const uint32_t *)p; break;
		case DT_HASH: d->sysv_hash = (const uint32_t *)p; break;
		case DT_VERSYM: d->versym = (const ElfW(Half) *)p; break;
		}
	}
	if (pltrel != DT_RELA) /* REL-style PLT relocations: not on these machines */
		d->jmprel = NULL;
	return d->symtab && d->strtab ? 0 : -1;
}

static const char *sym_name(const struct dyn *d, const ElfW(Sym) *s)
{
	return s->st_name < d->strsz ? d->strtab + s->st_name : "";
}

/* Whether symbol i is a definition the loader would bind a call to. */
static int defines(const struct dyn *d, uint32_t i, const char *name)
{
	const ElfW(Sym) *s = &d->symtab[i];
	int type = ELF64_ST_TYPE(s->st_info), bind = ELF64_ST_BIND(s->st_info);
	if (s->st_shndx == SHN_UNDEF || s->st_value == 0 || type != STT_FUNC ||
	    (bind != STB_GLOBAL && bind != STB_WEAK))
		return 0;
	if (d->versym && (d->versym[i] & 0x8000)) /* a hidden, older version */
		return 0;
	return strcmp(sym_name(d, s), name) == 0;
}

/* An executable's canonical PLT entry for name: an undefined symbol with
 * a value, the address every GLOB_DAT reference to name is bound to. */
static int canonical(const struct dyn *d, uint32_t i, const char *name)
{
	const ElfW(Sym) *s = &d->symtab[i];
	return s->st_shndx == SHN_UNDEF && s->st_value != 0 &&
	       ELF64_ST_TYPE(s->st_info) == STT_FUNC && strcmp(sym_name(d, s), name) == 0;
}

static void *dyn_lookup_as(const struct dyn *d, const char *name,
			   int (*match)(const struct dyn *, uint32_t, const char *))
{
	if (d->gnu_hash) {
		const uint32_t *h = d->gnu_hash;
		uint32_t nbuckets = h[0], symoffset = h[1], bloom_size = h[2];
		const uint32_t *buckets = h + 4 + bloom_size * (sizeof(ElfW(Addr)) / 4);
		const uint32_t *chain = buckets + nbuckets;
		uint32_t hash = 5381;
		for (const unsigned char *c = (const unsigned char *)name; *c; c++)
			hash = hash * 33 + *c;
		if (!nbuckets)
			return NULL;
		uint32_t i = buckets[hash % nbuckets];
		if (i < symoffset)
			return NULL;
		for (;; i++) {
			uint32_t h2 = chain[i - symoffset];
			if ((hash | 1) == (h2 | 1) && match(d, i, name))
				return (void *)(d->base + d->symtab[i].st_value);
			if (h2 & 1)
				return NULL;
		}
	}
	if (d->sysv_hash) {
		const uint32_t *h = d->sysv_hash;
		uint32_t nbucket = h[0], nchain = h[1];
		const uint32_t *bucket = h + 2, *chain = bucket + nbucket;
		uint32_t hash = 0;
		for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
			hash = (hash << 4) + *c;
			uint32_t g = hash & 0xf0000000u;
			if (g)
				hash ^= g >> 24;
			hash &= ~g;
		}
		if (!nbucket)
			return NULL;
		for (uint32_t i = bucket[hash % nbucket]; i && i < nchain; i = chain[i])
			if (match(d, i, name))
				return (void *)(d->base + d->symtab[i].st_value);
	}
	return NULL;
}

static void *dyn_lookup(const struct dyn *d, const char *name)
{
	return dyn_lookup_as(d, name, defines);
}

static int contains(const struct dl_phdr_info *info, const void *p)
{
	uintptr_t a = (uintptr_t)p;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && a >= lo && a < lo + ph->p_memsz)
			return 1;
	}
	return 0;
}

/* The loader and the vDSO: never patched, never searched. */
static int system_object(const struct dl_phdr_info *info)
{
	unsigned long ld = getauxval(AT_BASE), vdso = getauxval(AT_SYSINFO_EHDR);
	return (ld && contains(info, (const void *)ld)) ||
	       (vdso && contains(info, (const void *)vdso));
}

/* ---- lookup ------------------------------------------------------------------ */

struct lookup {
	const char *name;
	const void *self;
	void *found;
};

static int lookup_one(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct lookup *l = arg;
	struct dyn d;
	if (contains(info, l->self) || system_object(info) || dyn_read(info, &d) < 0)
		return 0;
	l->found = dyn_lookup(&d, l->name);
	return l->found != NULL;
}

void *got_lookup(const char *name, const void *self)
{
	struct lookup l = { name, self, NULL };
	dl_iterate_phdr(lookup_one, &l);
	return l.found;
}

static int canonical_one(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct lookup *l = arg;
	struct dyn d;
	if (dyn_read(info, &d) == 0)
		l->found = dyn_lookup_as(&d, l->name, canonical);
	return 1; /* the program itself is the first object */
}

static void *canonical_lookup(const char *name)
{
	struct lookup l = { name, NULL, NULL };
	dl_iterate_phdr(canonical_one, &l);
	return l.found;
}

/* ---- the loaded objects, held ------------------------------------------------ */

struct obj {
	uintptr_t base;
	void *handle;
	struct dyn dyn;
	int self;
	uintptr_t lo, hi; /* its loaded segments' span */
};

struct objs {
	struct obj *v;
	size_t n, cap;
	char *names;
	size_t names_len, names_cap;
	size_t *name_at;
};

static int objs_add(struct objs *o, const struct dl_phdr_info *info, int self)
{
	if (o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 128;
		struct obj *v = map_grow(o->v, o->cap * sizeof(*v), cap * sizeof(*v));
		size_t *at = map_grow(o->name_at, o->cap * sizeof(*at), cap * sizeof(*at));
		if (!v || !at)
			return -1;
		o->v = v;
		o->name_at = at;
		o->cap = cap;
	}
	const char *name = info->dlpi_name ? info->dlpi_name : "";
	size_t len = strlen(name) + 1;
	if (o->names_len + len > o->names_cap) {
		size_t cap = o->names_cap ? o->names_cap : 16384;
		while (cap < o->names_len + len)
			cap *= 2;
		char *s = map_grow(o->names, o->names_cap, cap);
		if (!s)
			return -1;
		o->names = s;
		o->names_cap = cap;
	}
	memcpy(o->names + o->names_len, name, len);
	o->name_at[o->n] = o->names_len;
	o->names_len += len;
	o->v[o->n] = (struct obj){ .base = info->dlpi_addr, .self = self };
	o->n++;
	return 0;
}

struct list_ctx {
	struct objs *o;
	const void *self;
	int first, failed;
};

static int list_one(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct list_ctx *c = arg;
	int first = c->first;
	c->first = 0;
	if (system_object(info))
		return 0;
	/* the program itself is the first object and has no name */
	if (!first && (!info->dlpi_name || !info->dlpi_name[0]))
		return 0;
	if (objs_add(c->o, info, c->self && contains(info, c->self)) < 0) {
		c->failed = 1;
		return 1;
	}
	return 0;
}

/* Takes a reference to each object listed: a dlopen in progress has
 * finished relocating it, and it cannot be unloaded until released. The
 * dynamic section is read once the reference is held. */
struct find_ctx {
	uintptr_t base;
	struct dyn *d;
	int found;
	uintptr_t lo, hi;
};

static int find_one(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct find_ctx *f = arg;
	if (info->dlpi_addr != f->base || system_object(info))
		return 0;
	f->found = dyn_read(info, f->d) == 0;
	f->lo = UINTPTR_MAX;
	f->hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && a < f->lo)
			f->lo = a;
		if (ph->p_type == PT_LOAD && a + ph->p_memsz > f->hi)
			f->hi = a + ph->p_memsz;
	}
	return 1;
}

static void objs_hold(struct objs *o)
{
	for (size_t i = 0; i < o->n; i++) {
		struct obj *b = &o->v[i];
		const char *name = o->names + o->name_at[i];
		void *h = dlopen(name[0] ? name : NULL, RTLD_LAZY | RTLD_NOLOAD);
		struct link_map *lm = NULL;
		if (h && (dlinfo(h, RTLD_DI_LINKMAP, &lm) != 0 || !lm || lm->l_addr != b->base)) {
			dlclose(h);
			h = NULL;
		}
		if (!h)
			continue;
		struct find_ctx f = { b->base, &b->dyn, 0, 0, 0 };
		dl_iterate_phdr(find_one, &f);
		if (!f.found) {
			dlclose(h);
			continue;
		}
		b->handle = h;
		b->lo = f.lo;
		b->hi = f.hi;
	}
}

static void objs_release(struct objs *o)
{
	for (size_t i = 0; i < o->n; i++)
		if (o->v[i].handle)
			dlclose(o->v[i].handle);
	if (o->v)
		munmap(o->v, o->cap * sizeof(*o->v));
	if (o->name_at)
		munmap(o->name_at, o->cap * sizeof(*o->name_at));
	if (o->names)
		munmap(o->names, o->names_cap);
}

static int objs_list(struct objs *o, const void *self)
{
	memset(o, 0, sizeof(*o));
	struct list_ctx c = { o, self, 1, 0 };
	dl_iterate_phdr(list_one, &c);
	if (c.failed)
		return -1;
	objs_hold(o);
	return 0;
}

/* ---- page protections, from /proc/self/maps ------------------------------ */

struct region {
	uintptr_t lo, hi;
	int prot;
};

static struct region *regions;
static size_t nregions, regions_cap;

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void regions_read(void)
{
	nregions = 0;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[8192];
	size_t have = 0;
	for (;;) {
		ssize_t k = read(fd, buf + have, sizeof(buf) - have);
		if (k <= 0)
			break;
		have += (size_t)k;
		char *line = buf, *nl;
		while ((nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
			struct region r = { 0, 0, 0 };
			char *p = line;
			int v;
			while ((v = hexval(*p)) >= 0)
				r.lo = r.lo * 16 + (uintptr_t)v, p++;
			if (*p == '-')
				p++;
			while ((v = hexval(*p)) >= 0)
				r.hi = r.hi * 16 + (uintptr_t)v, p++;
			if (*p == ' ' && p + 4 < nl) {
				r.prot = (p[1] == 'r' ? PROT_READ : 0) | (p[2] == 'w' ? PROT_WRITE : 0) |
					 (p[3] == 'x' ? PROT_EXEC : 0);
				if (nregions == regions_cap) {
					size_t cap = regions_cap ? regions_cap * 2 : 1024;
					struct region *g = map_grow(regions, regions_cap * sizeof(*g),
								    cap * sizeof(*g));
					if (!g)
						break;
					regions = g;
					regions_cap = cap;
				}
				regions[nregions++] = r;
			}
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (have == sizeof(buf))
			have = 0; /* a line longer than the buffer: a path, skipped */
	}
	close(fd);
}

/* The protection of the page holding p, or -1 if it is not mapped. */
static int prot_of(uintptr_t p)
{
	size_t lo = 0, hi = nregions;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (p < regions[mid].lo)
			hi = mid;
		else if (p >= regions[mid].hi)
			lo = mid + 1;
		else
			return regions[mid].prot;
	}
	return -1;
}

/* Stores v into the slot, making its page writable for the store. */
static int slot_store(void **slot, void *v)
{
	int prot = prot_of((uintptr_t)slot);
	if (prot < 0 || !(prot & PROT_READ))
		return -1;
	if (prot & PROT_WRITE) {
		__atomic_store_n(slot, v, __ATOMIC_RELEASE);
		return 0;
	}
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	void *page = (void *)((uintptr_t)slot & ~(uintptr_t)(pg - 1));
	if (mprotect(page, pg, prot | PROT_WRITE) < 0)
		return -1;
	__atomic_store_n(slot, v, __ATOMIC_RELEASE);
	mprotect(page, pg, prot);
	return 0;
}

/* ---- the entries changed, by slot address ---------------------------------- */

struct saved {
	void **slot;
	void *old, *hook;
};

static struct saved *saved, *saved_next;
static size_t saved_cap, saved_n, next_cap, next_n;

static size_t slot_hash(void **slot)
{
	uint64_t h = (uint64_t)(uintptr_t)slot * 0x9e3779b97f4a7c15ull;
	return (size_t)(h ^ (h >> 31));
}

static struct saved *saved_find(struct saved *t, size_t cap, void **slot)
{
	if (!cap)
		return NULL;
	for (size_t j = slot_hash(slot) & (cap - 1); t[j].slot; j = (j + 1) & (cap - 1))
		if (t[j].slot == slot)
			return &t[j];
	return NULL;
}

static int next_put(void **slot, void *old, void *hook)
{
	if ((next_n + 1) * 2 > next_cap) {
		size_t cap = next_cap ? next_cap * 2 : 1024;
		struct saved *t = map_grow(NULL, 0, cap * sizeof(*t));
		if (!t)
			return -1;
		for (size_t i = 0; i < next_cap; i++)
			if (saved_next[i].slot) {
				size_t j = slot_hash(saved_next[i].slot) & (cap - 1);
				while (t[j].slot)
					j = (j + 1) & (cap - 1);
				t[j] = saved_next[i];
			}
		if (saved_next)
			munmap(saved_next, next_cap * sizeof(*t));
		saved_next = t;
		next_cap = cap;
	}
	size_t j = slot_hash(slot) & (next_cap - 1);
	while (saved_next[j].slot && saved_next[j].slot != slot)
		j = (j + 1) & (next_cap - 1);
	if (!saved_next[j].slot)
		next_n++;
	saved_next[j] = (struct saved){ slot, old, hook };
	return 0;
}

/* ---- one pass over every relocation of every object ------------------------ */

enum { PATCH, RESTORE };

static const struct got_hook *pass_hook(const struct got_hook *hooks, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (name[0] == hooks[i].name[0] && strcmp(name, hooks[i].name) == 0)
			return &hooks[i];
	return NULL;
}

/* What each hook's entries may hold to be patched: the program's own
 * definition, or the executable's canonical PLT entry. Anything else (an
 * object bound to an allocator of its own, RTLD_DEEPBIND) is left alone. */
static void **expect_real, **expect_canon;

/* An entry not yet bound (lazy binding): it points into its own object's
 * PLT, at the code that calls the resolver. */
static int lazy_stub(const struct obj *b, void *cur)
{
	uintptr_t a = (uintptr_t)cur;
	if (a < b->lo || a + 8 > b->hi || !(prot_of(a) & PROT_READ) || !(prot_of(a) & PROT_EXEC))
		return 0;
	const unsigned char *p = cur;
#if defined(__x86_64__)
	/* push $n, or endbr64 then push $n */
	return p[0] == 0x68 || (p[0] == 0xf3 && p[1] == 0x0f && p[2] == 0x1e && p[3] == 0xfa && p[4] == 0x68);
#else
	/* PLT0: stp x16, x30, [sp, #-16]! */
	uint32_t insn;
	memcpy(&insn, p, 4);
	return insn == 0xa9bf7bf0u;
#endif
}

static int pass_relocs(int mode, const struct obj *b, const ElfW(Rela) *r, size_t bytes,
		       const struct got_hook *hooks, size_t n, int *changed)
{
	size_t count = bytes / sizeof(*r);
	for (size_t i = 0; i < count; i++) {
		unsigned type = (unsigned)R_TYPE(r[i].r_info);
		if (type != R_JUMP_SLOT && type != R_GLOB_DAT)
			continue;
		uint32_t sym = (uint32_t)R_SYM(r[i].r_info);
		if (!sym)
			continue;
		const char *name = sym_name(&b->dyn, &b->dyn.symtab[sym]);
		void **slot = (void **)(b->base + r[i].r_offset);
		if (mode == RESTORE) {
			struct saved *s = saved_find(saved, saved_cap, slot);
			if (s && __atomic_load_n(slot, __ATOMIC_RELAXED) == s->hook &&
			    slot_store(slot, s->old) == 0)
				(*changed)++;
			continue;
		}
		const struct got_hook *h = pass_hook(hooks, n, name);
		if (!h || prot_of((uintptr_t)slot) < 0)
			continue;
		void *cur = __atomic_load_n(slot, __ATOMIC_RELAXED);
		if (cur == h->hook) {
			/* ours from an earlier pass: keep what it held before */
			struct saved *s = saved_find(saved, saved_cap, slot);
			if (s && next_put(slot, s->old, h->hook) < 0)
				return -1;
			continue;
		}
		size_t k = (size_t)(h - hooks);
		if (cur != expect_real[k] && (!expect_canon[k] || cur != expect_canon[k]) &&
		    !(type == R_JUMP_SLOT && lazy_stub(b, cur)))
			continue;
		if (next_put(slot, cur, h->hook) < 0)
			return -1;
		if (slot_store(slot, h->hook) == 0)
			(*changed)++;
	}
	return 0;
}

static int pass(int mode, const struct got_hook *hooks, size_t n, const void *self)
{
	struct objs o;
	int changed = 0, failed = 0;
	if (objs_list(&o, self) < 0) {
		objs_release(&o);
		return -1;
	}
	regions_read();
	if (mode == PATCH) {
		expect_real = map_grow(NULL, 0, (n ? n : 1) * 2 * sizeof(void *));
		if (!expect_real) {
			objs_release(&o);
			return -1;
		}
		expect_canon = expect_real + n;
		for (size_t i = 0; i < n; i++) {
			expect_real[i] = got_lookup(hooks[i].name, self);
			expect_canon[i] = canonical_lookup(hooks[i].name);
		}
	}
	next_n = 0;
	if (saved_next)
		memset(saved_next, 0, next_cap * sizeof(*saved_next));
	for (size_t i = 0; i < o.n && !failed; i++) {
		const struct obj *b = &o.v[i];
		if (!b->handle || b->self)
			continue;
		if (b->dyn.jmprel &&
		    pass_relocs(mode, b, b->dyn.jmprel, b->dyn.jmprelsz, hooks, n, &changed) < 0)
			failed = 1;
		if (!failed && b->dyn.rela &&
		    pass_relocs(mode, b, b->dyn.rela, b->dyn.relasz, hooks, n, &changed) < 0)
			failed = 1;
	}
	if (mode == PATCH && failed) {
		/* out of memory part way: keep every entry the table had, so
		 * that nothing patched is left without its old value */
		for (size_t i = 0; i < saved_cap; i++)
			if (saved[i].slot && !saved_find(saved_next, next_cap, saved[i].slot))
				next_put(saved[i].slot, saved[i].old, saved[i].hook);
	}
	if (mode == PATCH) {
		/* what is patched now, in objects loaded now, replaces the
		 * table: entries of objects since unloaded are forgotten */
		struct saved *t = saved;
		size_t cap = saved_cap;
		saved = saved_next;
		saved_cap = next_cap;
		saved_n = next_n;
		saved_next = t;
		next_cap = cap;
	}
	if (mode == RESTORE) {
		if (saved)
			memset(saved, 0, saved_cap * sizeof(*saved));
		saved_n = 0;
	}
	if (mode == PATCH) {
		munmap(expect_real, (n ? n : 1) * 2 * sizeof(void *));
		expect_real = expect_canon = NULL;
	}
	objs_release(&o);
	return failed ? -1 : changed;
}

int got_patch(const struct got_hook *hooks, size_t n, const void *self)
{
	pthread_mutex_lock(&got_lock);
	in_pass = 1;
	int rc = pass(PATCH, hooks, n, self);
	in_pass = 0;
	pthread_mutex_unlock(&got_lock);
	return rc;
}

int got_restore(void)
{
	pthread_mutex_lock(&got_lock);
	in_pass = 1;
	int rc = saved_n ? pass(RESTORE, NULL, 0, NULL) : 0;
	in_pass = 0;
	pthread_mutex_unlock(&got_lock);
	return rc;
}

void got_forked(void)
{
	pthread_mutex_init(&got_lock, NULL);
	if (in_pass) {
		/* forked in the middle of a pass: what the tables say may be
		 * half of it; the child forgets them (its entries keep
		 * passing calls through) */
		saved = saved_next = NULL;
		saved_cap = saved_n = next_cap = next_n = 0;
		in_pass = 0;
	}
}
