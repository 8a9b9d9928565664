/*
 * stream_read.c - decoding a stream (see stream.h and memray-stream(5)).
 *
 * Trusts no byte: every length, count and id is checked before use, and
 * nothing is allocated on a length's say-so before the bytes it claims
 * have arrived. Chunks are demultiplexed by pid into per-process buffers;
 * a record is decoded only once all its bytes are buffered, then
 * committed, so a record cut by the end of the input leaves the tables as
 * they were after the record before it.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "input.h"
#include "stream.h"
#include "varint.h"
#include "util.h"

#define MAX_PROCS 65536
#define MAX_ARGC 65536

static const char *const tag_names[] = {
	[MR_TAG_HEADER] = "header", [MR_TAG_STRING] = "string",
	[MR_TAG_PYFRAME] = "pyframe", [MR_TAG_NODE_NATIVE] = "node",
	[MR_TAG_NODE_PYTHON] = "pynode", [MR_TAG_THREAD] = "thread",
	[MR_TAG_THREAD_NAME] = "thread_name", [MR_TAG_THREAD_SWITCH] = "switch",
	[MR_TAG_MODULE_LOAD] = "module", [MR_TAG_MODULE_UNLOAD] = "unload",
	[MR_TAG_MEMORY] = "memory", [MR_TAG_TRAILER] = "trailer",
	[MR_TAG_EXEC] = "exec", [MR_TAG_SIGNAL] = "signal",
	[MR_TAG_STRING_PREFIX] = "string", [MR_TAG_PYNODE_NEW] = "pynode",
	[MR_TAG_PYNODE_NEXT] = "pynode", [MR_TAG_PYNODE_NEXT_NEW] = "pynode",
};

const char *mr_tag_name(int tag)
{
	switch (tag & 0xe0) {
	case MR_TAG_ALLOC: case MR_TAG_ALLOC_SAME: return "alloc";
	case MR_TAG_FREE: case MR_TAG_FREE_AGED: case MR_TAG_FREE_AGAIN: return "free";
	case MR_TAG_MOVE: case MR_TAG_MOVE_AGED: return "move";
	}
	if (tag >= MR_TAG_FREE_NEAR && tag < MR_TAG_FREE_NEAR_END)
		return "free";
	if (tag > 0 && tag <= MR_TAG_PYNODE_NEXT_NEW)
		return tag_names[tag];
	return NULL;
}

const char *mr_string(const struct mr_proc *p, uint32_t id)
{
	if (id == 0 || id >= p->nstrings)
		return "";
	return p->strings[id];
}

void mr_reader_init(struct mr_reader *r, struct mr_input *in)
{
	memset(r, 0, sizeof(*r));
	r->in = in;
}

static void proc_free(struct mr_proc *p)
{
	for (size_t i = 0; i < p->nstrings; i++)
		free(p->strings[i]);
	free(p->strings);
	for (size_t i = 1; i < p->nthreads; i++)
		free(p->threads[i].name);
	free(p->threads);
	free(p->frames);
	free(p->nodes);
	free(p->modules);
	for (uint32_t i = 0; i < p->header.argc; i++)
		free(p->header.argv[i]);
	free(p->header.argv);
	free(p->header.tool_version);
	free(p->header.exe);
	free(p->header.python_version);
	free(p->header.python_problem);
	free(p->buf);
	free(p->spans);
	free(p->ring);
	free(p);
}

void mr_reader_free(struct mr_reader *r)
{
	for (size_t i = 0; i < r->nprocs; i++)
		proc_free(r->procs[i]);
	free(r->procs);
	r->procs = NULL;
	r->nprocs = 0;
}

static int fail(struct mr_reader *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* Grows *arr (element size sz) so index `need` is valid. */
static void grow(void **arr, size_t *cap, size_t need, size_t sz)
{
	if (need < *cap)
		return;
	size_t n = *cap ? *cap : 16;
	while (n <= need)
		n *= 2;
	*arr = xrealloc(*arr, n * sz);
	memset((char *)*arr + *cap * sz, 0, (n - *cap) * sz);
	*cap = n;
}

/* The input offset of payload position pos of process p. */
static uint64_t file_offset(const struct mr_proc *p, uint64_t pos)
{
	for (size_t i = 0; i < p->nspans; i++) {
		const struct mr_span *s = &p->spans[i];
		if (pos >= s->pos && pos < s->pos + s->len)
			return s->file_off + (pos - s->pos);
	}
	if (p->nspans) {
		const struct mr_span *s = &p->spans[p->nspans - 1];
		return s->file_off + s->len;
	}
	return 0;
}

uint64_t mr_record_offset(const struct mr_record *rec)
{
	return file_offset(rec->proc, rec->pos);
}

/* ---- decoding one record ---------------------------------------------- */

struct cur {
	const uint8_t *p, *e;
	int st; /* 1 fine, 0 needs more bytes, -1 malformed */
	const char *why;
};

static inline __attribute__((always_inline)) uint64_t get_u(struct cur *c)
{
	uint64_t v = 0;
	if (c->st != 1)
		return 0;
	int n = varint_get(c->p, c->e, &v);
	if (n <= 0) {
		c->st = n;
		c->why = "malformed varint";
		return 0;
	}
	c->p += n;
	return v;
}

/* Version 3's k-th latest released address (1 the latest), or 0 with
 * c marked corrupt. */
static uint64_t released_addr(const struct mr_proc *p, struct cur *c, uint64_t k)
{
	if (p->header.version < 3) {
		if (c->st == 1) {
			c->st = -1;
			c->why = "malformed address";
		}
		return 0;
	}
	if (k == 0 || k > MR_FREED_WINDOW || k > p->n_released) {
		if (c->st == 1) {
			c->st = -1;
			c->why = "released address out of bounds";
		}
		return 0;
	}
	return p->released[(p->n_released - k) % MR_FREED_WINDOW];
}

static inline __attribute__((always_inline)) uint64_t get_addr(const struct mr_proc *p,
							       struct cur *c, uint64_t *reg)
{
	uint64_t u = get_u(c);
	if ((u & 1) == 0)
		*reg += (uint64_t)zigzag_decode(u >> 1) * 16;
	else if ((u & 3) == 1)
		*reg += (uint64_t)zigzag_decode(u >> 2);
	else if (u == 3)
		*reg = get_u(c);
	else
		*reg = released_addr(p, c, u >> 2);
	return *reg;
}

static const uint8_t *get_bytes(struct cur *c, uint64_t n, uint64_t limit)
{
	if (c->st != 1)
		return NULL;
	if (n > limit) {
		c->st = -1;
		c->why = "length out of bounds";
		return NULL;
	}
	if ((uint64_t)(c->e - c->p) < n) {
		c->st = 0;
		return NULL;
	}
	const uint8_t *s = c->p;
	c->p += n;
	return s;
}

static char *dup_bytes(const uint8_t *s, size_t n)
{
	char *d = xrealloc(NULL, n + 1);
	memcpy(d, s, n);
	d[n] = 0;
	return d;
}

/* A string field: pointer and length into the buffer. */
static const uint8_t *get_str(struct cur *c, uint64_t *len)
{
	*len = get_u(c);
	return get_bytes(c, *len, MR_STRING_MAX);
}

static int bad(struct cur *c, const char *why)
{
	if (c->st == 1) {
		c->st = -1;
		c->why = why;
	}
	return 0;
}

static int check_id(struct cur *c, uint64_t id, size_t n, const char *what)
{
	if (id >= n)
		return bad(c, what);
	return 1;
}

#define PUSH(arr, n, cap, elem) do { \
	grow((void **)&(arr), &(cap), (n), sizeof(*(arr))); \
	(arr)[(n)++] = (elem); \
} while (0)

static void add_string(struct mr_proc *p, const uint8_t *s, uint64_t n)
{
	char *d = dup_bytes(s, n);
	PUSH(p->strings, p->nstrings, p->strings_cap, d);
}

static int decode_header(struct mr_proc *p, struct cur *c)
{
	struct mr_header h;
	memset(&h, 0, sizeof(h));
	uint64_t len;
	h.version = get_u(c);
	if (c->st == 1 && (h.version < 1 || h.version > MR_FORMAT_VERSION)) {
		c->st = -1;
		c->why = "unsupported format version";
		return 0;
	}
	const uint8_t *tv = get_str(c, &len);
	uint64_t tvlen = len;
	h.pid = (uint32_t)get_u(c);
	h.ppid = (uint32_t)get_u(c);
	h.start_us = get_u(c);
	h.page_size = get_u(c);
	h.flags = get_u(c);
	h.interval_us = get_u(c);
	uint64_t argc = get_u(c);
	if (c->st == 1 && argc > MAX_ARGC)
		return bad(c, "argument count out of bounds");
	const struct cur mark = *c;
	for (uint64_t i = 0; i < argc && c->st == 1; i++)
		get_str(c, &len);
	const uint8_t *exe = get_str(c, &len);
	uint64_t exelen = len;
	if (h.flags & MR_F_SAMPLED) {
		h.sample_bytes = get_u(c);
		if (c->st == 1 && (h.sample_bytes == 0 || h.sample_bytes > MR_SAMPLE_MAX))
			return bad(c, "sampling interval out of bounds");
	}
	const uint8_t *pyv = NULL, *pyp = NULL;
	uint64_t pyvlen = 0, pyplen = 0;
	if (h.flags & MR_F_PYINFO) {
		pyv = get_str(c, &pyvlen);
		pyp = get_str(c, &pyplen);
	}
	if (c->st != 1)
		return 0;
	/* Complete: commit. */
	h.tool_version = dup_bytes(tv, tvlen);
	h.exe = dup_bytes(exe, exelen);
	if (h.flags & MR_F_PYINFO) {
		h.python_version = dup_bytes(pyv, pyvlen);
		h.python_problem = dup_bytes(pyp, pyplen);
	}
	h.argc = (uint32_t)argc;
	h.argv = xrealloc(NULL, (argc + 1) * sizeof(char *));
	struct cur a = mark;
	for (uint64_t i = 0; i < argc; i++) {
		const uint8_t *s = get_str(&a, &len);
		h.argv[i] = dup_bytes(s, len);
	}
	h.argv[argc] = NULL;
	p->header = h;
	p->has_header = 1;
	return 1;
}

/* The registers events update, copied while a record is decoded and
 * stored only when it is whole (see commit). */
struct regs {
	uint64_t addr, alloc; /* the address and allocation registers */
	uint32_t stack, age;
};

/* The address of the block made age allocations ago (1 = the latest). */
static uint64_t aged_addr(const struct mr_proc *p, struct cur *c, uint64_t age)
{
	if (age == 0 || age > MR_AGE_WINDOW || age > p->n_allocs) {
		bad(c, "free by age out of bounds");
		return 0;
	}
	return p->ring[(p->n_allocs - age + 1) & (MR_AGE_WINDOW - 1)];
}

/* A stack field: the node id, or in version 3 how far back from the
 * latest node it is (0: the latest). */
static uint32_t get_stack(const struct mr_proc *p, struct cur *c)
{
	uint64_t v = get_u(c);
	size_t n = p->nnodes ? p->nnodes : 1;
	check_id(c, v, n, "stack id out of bounds");
	return (uint32_t)(p->header.version >= 3 ? n - 1 - v : v);
}

/* A FREE of the block made age allocations ago, which becomes the age
 * register: FREE_AGED, FREE_AGAIN and version 3's FREE_NEAR. */
static void free_by_age(const struct mr_proc *p, struct cur *c, struct mr_record *rec,
			struct regs *g, int a, uint64_t age)
{
	rec->addr = g->addr = aged_addr(p, c, age);
	g->age = (uint32_t)age;
	rec->tag = MR_TAG_FREE | a;
}

/* An event (its allocator in the tag's low bits), in any of its forms;
 * it is handed on as an ALLOC, FREE or MOVE. 0, or -1 with *why. */
static int decode_event(struct mr_proc *p, struct cur *c, struct mr_record *rec, int tag,
			struct regs *g, const char **why)
{
	int a = tag & 0x1f, kind = tag & 0xe0;
	if (kind >= MR_TAG_ALLOC_SAME && p->header.version < 2) {
		*why = "unknown record tag";
		return -1;
	}
	if (a < 1 || a >= MR_ALLOCATOR_END) {
		*why = "unknown allocator";
		return -1;
	}
	if (a == MR_MUNMAP && (kind == MR_TAG_FREE_AGED || kind == MR_TAG_FREE_AGAIN)) {
		*why = "munmap freed by age";
		return -1;
	}
	if (a == MR_MREMAP && kind == MR_TAG_MOVE_AGED) {
		*why = "mremap moved by age";
		return -1;
	}
	rec->allocator = a;
	switch (kind) {
	case MR_TAG_ALLOC:
	case MR_TAG_ALLOC_SAME:
		rec->addr = get_addr(p, c, p->header.version >= 3 ? &g->alloc : &g->addr);
		rec->size = get_u(c);
		rec->stack = g->stack = kind == MR_TAG_ALLOC ? get_stack(p, c) : g->stack;
		rec->tag = MR_TAG_ALLOC | a;
		if (p->header.version >= 3)
			g->addr = g->alloc = rec->addr + mr_span(rec->size);
		break;
	case MR_TAG_FREE:
		rec->addr = get_addr(p, c, &g->addr);
		if (a == MR_MUNMAP)
			rec->size = get_u(c);
		break;
	case MR_TAG_FREE_AGED:
	case MR_TAG_FREE_AGAIN: {
		uint64_t age = g->age;
		if (kind == MR_TAG_FREE_AGED)
			age += (uint64_t)zigzag_decode(get_u(c));
		if (c->st == 1)
			free_by_age(p, c, rec, g, a, age);
		break;
	}
	case MR_TAG_MOVE:
		rec->old_addr = get_addr(p, c, &g->addr);
		if (a == MR_MREMAP)
			rec->old_size = get_u(c);
		rec->addr = get_addr(p, c, &g->addr);
		rec->size = get_u(c);
		rec->stack = g->stack = get_stack(p, c);
		break;
	case MR_TAG_MOVE_AGED: {
		uint64_t age = get_u(c);
		if (c->st != 1)
			break;
		rec->old_addr = g->addr = aged_addr(p, c, age);
		rec->addr = get_addr(p, c, &g->addr);
		rec->size = get_u(c);
		rec->stack = g->stack;
		rec->tag = MR_TAG_MOVE | a;
		break;
	}
	}
	/* no block or mapping is larger than an address space (2^57 bytes,
	 * x86-64's with five levels of page tables): a size past it is a
	 * damaged value, said where it is rather than counted */
	if (rec->size > (uint64_t)1 << 57 || rec->old_size > (uint64_t)1 << 57) {
		*why = "a size larger than any address space";
		return -1;
	}
	return 0;
}

/* A STRING: the next string id (id 0 is the empty string); or version
 * 3's STRING_PREFIX, the first bytes of an earlier one (back strings
 * before it) and the rest. */
static void decode_string(struct mr_proc *p, struct cur *c, struct mr_record *rec, int tag)
{
	uint64_t len, back = 0, keep = 0;
	const char *from = "";
	size_t next = p->nstrings ? p->nstrings : 1;
	if (tag == MR_TAG_STRING_PREFIX) {
		back = get_u(c);
		keep = get_u(c);
		/* (bounded, so that a record makes no string much longer
		 * than itself) */
		if (c->st == 1 && (back == 0 || back >= next || back > MR_STR_RECENT ||
				   keep > MR_STR_HEAD))
			bad(c, "string prefix out of bounds");
		if (c->st == 1) {
			from = p->strings[next - back];
			if (keep > strnlen(from, MR_STR_HEAD))
				bad(c, "string prefix out of bounds");
		}
	}
	const uint8_t *s = get_str(c, &len);
	if (c->st == 1 && keep + len > MR_STRING_MAX)
		bad(c, "string too long");
	if (c->st == 1) {
		if (p->nstrings == 0)
			add_string(p, (const uint8_t *)"", 0);
		char *d = xrealloc(NULL, keep + len + 1);
		memcpy(d, from, keep);
		memcpy(d + keep, s, len);
		d[keep + len] = 0;
		PUSH(p->strings, p->nstrings, p->strings_cap, d);
		rec->id = (uint32_t)(p->nstrings - 1);
		rec->tag = MR_TAG_STRING;
	}
}

/* A PYFRAME's fields: function and file strings, a line. */
static struct mr_pyframe get_pyframe(struct mr_proc *p, struct cur *c)
{
	struct mr_pyframe f;
	uint64_t v;
	size_t ns = p->nstrings ? p->nstrings : 1;
	v = get_u(c); check_id(c, v, ns, "function string id out of bounds");
	f.function = (uint32_t)v;
	v = get_u(c); check_id(c, v, ns, "file string id out of bounds");
	f.file = (uint32_t)v;
	v = get_u(c);
	if (c->st == 1 && v > UINT32_MAX)
		bad(c, "line number out of bounds");
	f.line = (uint32_t)v;
	return f;
}

static uint32_t add_pyframe(struct mr_proc *p, struct mr_pyframe f)
{
	if (p->nframes == 0)
		PUSH(p->frames, p->nframes, p->frames_cap, f);
	PUSH(p->frames, p->nframes, p->frames_cap, f);
	return (uint32_t)(p->nframes - 1);
}

/* A PYFRAME: the next Python frame id. */
static void decode_pyframe(struct mr_proc *p, struct cur *c, struct mr_record *rec)
{
	struct mr_pyframe f = get_pyframe(p, c);
	if (c->st == 1)
		rec->id = add_pyframe(p, f);
}

/* A stack trie NODE: its parent, as a distance back, and a native
 * address (a delta from the previous one) or a Python frame id. Version
 * 3's forms leave out a parent that is the node just before (distance 1)
 * and give a new frame's fields in place of its id. */
static void decode_node(struct mr_proc *p, struct cur *c, struct mr_record *rec, int tag)
{
	uint64_t v = 1;
	struct mr_node n = { 0, tag != MR_TAG_NODE_NATIVE, 0 };
	size_t next = p->nnodes ? p->nnodes : 1;
	if (tag != MR_TAG_PYNODE_NEXT && tag != MR_TAG_PYNODE_NEXT_NEW)
		v = get_u(c);
	if (c->st == 1 && (v == 0 || v > next))
		bad(c, "parent node out of bounds");
	n.parent = (uint32_t)(next - v);
	if (tag == MR_TAG_PYNODE_NEW || tag == MR_TAG_PYNODE_NEXT_NEW) {
		struct mr_pyframe f = get_pyframe(p, c);
		if (c->st != 1)
			return;
		n.value = rec->frame = add_pyframe(p, f);
		rec->tag = MR_TAG_NODE_PYTHON;
	} else if (tag == MR_TAG_NODE_NATIVE) {
		n.value = p->last_ip + (uint64_t)zigzag_decode(get_u(c));
	} else {
		v = get_u(c);
		check_id(c, v, p->nframes ? p->nframes : 1,
			 "python frame id out of bounds");
		n.value = v;
		rec->tag = MR_TAG_NODE_PYTHON;
	}
	if (c->st == 1) {
		if (p->nnodes == 0) {
			struct mr_node root = { 0, 0, 0 };
			PUSH(p->nodes, p->nnodes, p->nodes_cap, root);
		}
		if (!n.python)
			p->last_ip = n.value;
		PUSH(p->nodes, p->nnodes, p->nodes_cap, n);
		rec->id = (uint32_t)(p->nnodes - 1);
	}
}

/* A THREAD: a new thread, which becomes the current one. */
static void decode_thread(struct mr_proc *p, struct cur *c, struct mr_record *rec)
{
	struct mr_thread t;
	uint64_t len;
	t.tid = get_u(c);
	const uint8_t *s = get_str(c, &len);
	if (c->st == 1) {
		if (p->nthreads == 0) {
			struct mr_thread none = { 0, NULL };
			PUSH(p->threads, p->nthreads, p->threads_cap, none);
		}
		t.name = dup_bytes(s, len);
		PUSH(p->threads, p->nthreads, p->threads_cap, t);
		rec->id = (uint32_t)(p->nthreads - 1);
		p->cur_thread = rec->id;
		rec->thread = rec->id;
	}
}

/* A thread id, which must name a thread (c says when it does not). */
static uint64_t get_thread(struct mr_proc *p, struct cur *c)
{
	uint64_t v = get_u(c);
	check_id(c, v, p->nthreads, "thread id out of bounds");
	if (c->st == 1 && v == 0)
		bad(c, "thread id out of bounds");
	return v;
}

/* A THREAD_NAME: a thread's new name. */
static void decode_thread_name(struct mr_proc *p, struct cur *c, struct mr_record *rec)
{
	uint64_t len, v = get_thread(p, c);
	const uint8_t *s = get_str(c, &len);
	if (c->st == 1) {
		free(p->threads[v].name);
		p->threads[v].name = dup_bytes(s, len);
		rec->id = (uint32_t)v;
	}
}

/* A THREAD_SWITCH: the thread the next events are of. */
static void decode_thread_switch(struct mr_proc *p, struct cur *c, struct mr_record *rec)
{
	uint64_t v = get_thread(p, c);
	if (c->st == 1) {
		p->cur_thread = (uint32_t)v;
		rec->id = rec->thread = (uint32_t)v;
	}
}

/* A MODULE_LOAD: path string, base, build id, segments. */
static void decode_module_load(struct mr_proc *p, struct cur *c, struct mr_record *rec)
{
	struct mr_module m;
	uint64_t len, v;
	memset(&m, 0, sizeof(m));
	v = get_u(c);
	check_id(c, v, p->nstrings ? p->nstrings : 1, "path string id out of bounds");
	m.path = (uint32_t)v;
	m.base = get_u(c);
	len = get_u(c);
	const uint8_t *s = get_bytes(c, len, MR_BUILD_ID_MAX);
	if (c->st == 1) {
		memcpy(m.build_id, s, len);
		m.build_id_len = (uint32_t)len;
	}
	v = get_u(c);
	if (c->st == 1 && v > MR_SEGMENTS_MAX)
		bad(c, "segment count out of bounds");
	m.nsegs = (uint32_t)v;
	for (uint32_t i = 0; i < m.nsegs && c->st == 1; i++) {
		m.segs[i].vaddr = get_u(c);
		m.segs[i].size = get_u(c);
		m.segs[i].prot = (uint32_t)get_u(c);
	}
	if (c->st == 1) {
		m.loaded = 1;
		if (p->nmodules == 0) {
			struct mr_module none;
			memset(&none, 0, sizeof(none));
			PUSH(p->modules, p->nmodules, p->modules_cap, none);
		}
		PUSH(p->modules, p->nmodules, p->modules_cap, m);
		rec->id = (uint32_t)(p->nmodules - 1);
	}
}

/* A MODULE_UNLOAD of a loaded module. */
static void decode_module_unload(struct mr_proc *p, struct cur *c, struct mr_record *rec)
{
	uint64_t v = get_u(c);
	check_id(c, v, p->nmodules, "module id out of bounds");
	if (c->st == 1 && (v == 0 || !p->modules[v].loaded))
		bad(c, "unload of a module that is not loaded");
	if (c->st == 1) {
		p->modules[v].loaded = 0;
		rec->id = (uint32_t)v;
	}
}

/* A MEMORY record: time (a delta), RSS, heap. */
static void decode_memory(struct mr_proc *p, struct cur *c, struct mr_record *rec)
{
	uint64_t v = get_u(c);
	if (p->header.version >= 3) {
		/* version 3: the time's difference from the interval; the
		 * RSS in pages (low bit 0) or bytes (1) */
		rec->time_us = p->last_time_us + p->header.interval_us + (uint64_t)zigzag_decode(v);
		uint64_t r = get_u(c);
		rec->rss = r & 1 ? r >> 1 : (r >> 1) * p->header.page_size;
		rec->heap = p->last_heap + (uint64_t)zigzag_decode(get_u(c));
	} else {
		rec->time_us = p->last_time_us + v;
		rec->rss = get_u(c);
		rec->heap = get_u(c);
	}
	if (c->st == 1) {
		p->last_time_us = rec->time_us;
		p->last_heap = rec->heap;
	}
}

/* A SIGNAL that ended the process. */
static void decode_signal(struct mr_proc *p, struct cur *c, struct mr_record *rec)
{
	uint64_t v = get_u(c);
	if (c->st == 1 && (v == 0 || v > 64))
		bad(c, "signal number out of range");
	if (c->st == 1) {
		p->end_signal = (int)v;
		rec->id = (uint32_t)v;
	}
}

/* A TRAILER or an EXEC: the counts, which must agree with the records
 * read. 0, or -1 with *why. */
static int decode_end(struct mr_proc *p, struct cur *c, struct mr_record *rec, int tag,
		      const char **why)
{
	struct mr_trailer t;
	t.time_us = get_u(c);
	t.n_records = get_u(c);
	t.n_allocs = get_u(c);
	t.n_frees = get_u(c);
	t.bytes_allocated = get_u(c);
	if (c->st == 1) {
		if (t.n_records != p->n_records || t.n_allocs != p->n_allocs ||
		    t.n_frees != p->n_frees) {
			*why = "the trailer's counts disagree with the records read";
			return -1;
		}
		p->trailer = t;
		rec->time_us = t.time_us;
		if (tag == MR_TAG_TRAILER)
			p->has_trailer = 1;
		else
			p->exec_pending = 1;
	}
	return 0;
}

/* Decodes the fields of a record of this tag, as far as c holds them
 * (c->st says how far it got). 0, or -1 with *why. */
static int decode_fields(struct mr_proc *p, struct cur *c, struct mr_record *rec, int tag,
			 struct regs *g, const char **why)
{
	if (tag & 0xe0)
		return decode_event(p, c, rec, tag, g, why);
	if (tag >= MR_TAG_STRING_PREFIX && p->header.version < 3) {
		*why = "unknown record tag";
		return -1;
	}
	if (tag >= MR_TAG_FREE_NEAR) {
		/* a free() by an age near the last one (-6 to -1, 1 to 7) */
		int d = tag - MR_TAG_FREE_NEAR;
		rec->allocator = MR_FREE;
		free_by_age(p, c, rec, g, MR_FREE,
			    g->age + (uint64_t)(int64_t)(d < 6 ? d - 6 : d - 5));
		return 0;
	}
	switch (tag) {
	case MR_TAG_HEADER:
		if (p->has_header) {
			*why = "a second header record";
			return -1;
		}
		decode_header(p, c);
		break;
	case MR_TAG_STRING:
	case MR_TAG_STRING_PREFIX:
		decode_string(p, c, rec, tag);
		break;
	case MR_TAG_PYFRAME:
		decode_pyframe(p, c, rec);
		break;
	case MR_TAG_NODE_NATIVE:
	case MR_TAG_NODE_PYTHON:
	case MR_TAG_PYNODE_NEW:
	case MR_TAG_PYNODE_NEXT:
	case MR_TAG_PYNODE_NEXT_NEW:
		decode_node(p, c, rec, tag);
		break;
	case MR_TAG_THREAD:
		decode_thread(p, c, rec);
		break;
	case MR_TAG_THREAD_NAME:
		decode_thread_name(p, c, rec);
		break;
	case MR_TAG_THREAD_SWITCH:
		decode_thread_switch(p, c, rec);
		break;
	case MR_TAG_MODULE_LOAD:
		decode_module_load(p, c, rec);
		break;
	case MR_TAG_MODULE_UNLOAD:
		decode_module_unload(p, c, rec);
		break;
	case MR_TAG_MEMORY:
		decode_memory(p, c, rec);
		break;
	case MR_TAG_SIGNAL:
		decode_signal(p, c, rec);
		break;
	case MR_TAG_TRAILER:
	case MR_TAG_EXEC:
		return decode_end(p, c, rec, tag, why);
	default:
		*why = "unknown record tag";
		return -1;
	}
	return 0;
}

/* Whether a record with this tag may come now: 1 yes; 2 it is the header
 * of a new program image (after an EXEC); -1 no, *why says why. */
static int may_come(struct mr_proc *p, int tag, const char **why)
{
	if (p->has_trailer) {
		*why = "data after the trailer";
		return -1;
	}
	if (p->exec_pending && tag == MR_TAG_HEADER)
		return 2; /* a new program image: the caller moves the bytes */
	p->exec_pending = 0;
	if (!p->has_header && tag != MR_TAG_HEADER) {
		*why = "the stream does not start with a header record";
		return -1;
	}
	return 1;
}

/* Allocation number n_allocs (just counted) made the block at addr: kept
 * for FREE_AGED, FREE_AGAIN and MOVE_AGED. The ring is made by decode at
 * the process's first event (the fast path waits for it). */
static inline void ring_note(struct mr_proc *p, uint64_t addr)
{
	p->ring[p->n_allocs & (MR_AGE_WINDOW - 1)] = addr;
}

/* A FREE's address, or a MOVE's old one, for version 3's address form. */
static inline void release_note(struct mr_proc *p, uint64_t addr)
{
	p->released[p->n_released++ % MR_FREED_WINDOW] = addr;
}

/* A record decoded whole: its bytes consumed, counted and its registers
 * kept. rec->tag is the plain tag of a compact event. */
static void commit(struct mr_proc *p, const struct cur *c, const struct mr_record *rec,
		   const struct regs *g)
{
	size_t used = (size_t)(c->p - (p->buf + p->buf_start));
	p->buf_start += used;
	p->consumed += used;
	p->last_addr = g->addr;
	p->last_alloc_addr = g->alloc;
	p->last_stack = g->stack;
	p->last_age = g->age;
	if (rec->tag != MR_TAG_TRAILER)
		p->n_records++;
	switch (rec->tag & 0xe0) {
	case MR_TAG_ALLOC:
		p->n_allocs++;
		p->bytes_allocated += rec->size;
		ring_note(p, rec->addr);
		break;
	case MR_TAG_FREE:
		p->n_frees++;
		release_note(p, rec->addr);
		break;
	case MR_TAG_MOVE:
		p->n_allocs++;
		p->n_frees++;
		p->bytes_allocated += rec->size;
		ring_note(p, rec->addr);
		release_note(p, rec->old_addr);
		break;
	}
}

/* Decodes the record at the front of p's buffer into rec. Returns 1 done,
 * 0 incomplete, -1 corrupt (*why says why), 2 the header of a new program
 * image. */
static int decode(struct mr_reader *r, struct mr_proc *p, struct mr_record *rec,
		  const char **why)
{
	if (p->buf_start == p->buf_end)
		return 0; /* nothing buffered (and perhaps no buffer at all) */
	struct cur c = { p->buf + p->buf_start, p->buf + p->buf_end, 1, NULL };
	int tag = *c.p++;
	struct regs g = { p->last_addr, p->last_alloc_addr, p->last_stack, p->last_age };

	/* field by field: a memset of the whole record costs more than the
	 * decoding of most records */
	rec->allocator = 0;
	rec->id = rec->stack = 0;
	rec->addr = rec->size = rec->old_addr = rec->old_size = 0;
	rec->time_us = rec->rss = rec->heap = 0;
	rec->tag = tag;
	rec->frame = 0;
	rec->proc = p;
	rec->thread = p->cur_thread;
	rec->pos = p->consumed;

	int k = may_come(p, tag, why);
	if (k != 1)
		return k;
	if (((tag & 0xe0) || tag >= MR_TAG_FREE_NEAR) && !p->ring)
		p->ring = xrealloc(NULL, MR_AGE_WINDOW * sizeof(*p->ring));
	if (decode_fields(p, &c, rec, tag, &g, why) < 0)
		return -1;
	if (c.st != 1) {
		*why = c.why;
		return c.st;
	}
	commit(p, &c, rec, &g);
	(void)r;
	return 1;
}

/* ---- the hot path ------------------------------------------------------ */

/* Most records are ALLOC and FREE events of a few bytes. When at least
 * FAST_ROOM bytes are buffered, no field can run past the buffer, so they
 * are decoded here without per-byte bounds checks. Anything unusual (a
 * malformed varint, an id out of bounds, a MOVE or a munmap) returns
 * 0 and goes the general way, which reports it properly. */
#define FAST_ROOM 48 /* tag + four varints of at most ten bytes */

static inline __attribute__((always_inline)) const uint8_t *
fast_addr(const struct mr_proc *p, const uint8_t *q, uint64_t *reg)
{
	uint64_t u;
	q = varint_get_unchecked(q, &u);
	if (!q)
		return NULL;
	if ((u & 1) == 0) {
		*reg += (uint64_t)zigzag_decode(u >> 1) * 16;
	} else if ((u & 3) == 1) {
		*reg += (uint64_t)zigzag_decode(u >> 2);
	} else if (u == 3) {
		q = varint_get_unchecked(q, reg);
	} else {
		uint64_t k = u >> 2; /* version 3: a released address */
		if (p->header.version < 3 || k > MR_FREED_WINDOW || k > p->n_released)
			return NULL;
		*reg = p->released[(p->n_released - k) % MR_FREED_WINDOW];
	}
	return q;
}

static inline __attribute__((always_inline)) int
decode_fast(struct mr_proc *p, struct mr_record *rec)
{
	const uint8_t *start = p->buf + p->buf_start, *q = start + 1;
	int tag = start[0], a = tag & 0x1f, kind = tag & 0xe0;
	uint64_t addr = p->last_addr, size = 0, stack = p->last_stack, age = p->last_age;
	const int v3 = p->header.version >= 3;
	if (kind == 0) {
		if (tag < MR_TAG_FREE_NEAR || !v3)
			return 0;
		int d = tag - MR_TAG_FREE_NEAR;
		age += (uint64_t)(int64_t)(d < 6 ? d - 6 : d - 5);
		a = MR_FREE;
		kind = MR_TAG_FREE_AGAIN; /* its age known, the rest is FREE_AGAIN's */
	}
	if (a < 1 || a >= MR_ALLOCATOR_END || !p->ring)
		return 0;
	switch (kind) {
	case MR_TAG_ALLOC:
	case MR_TAG_ALLOC_SAME: {
		/* version 3's allocations: against the allocation register
		 * (one local, not a pointer to one of two, which kept both
		 * in memory: 9 instructions an event) */
		uint64_t r = v3 ? p->last_alloc_addr : addr;
		if ((kind == MR_TAG_ALLOC_SAME && p->header.version < 2) ||
		    !(q = fast_addr(p, q, &r)) || !(q = varint_get_unchecked(q, &size)))
			return 0;
		if (kind == MR_TAG_ALLOC) {
			if (!(q = varint_get_unchecked(q, &stack)) || stack >= p->nnodes)
				return 0;
			if (v3)
				stack = p->nnodes - 1 - stack;
		}
		addr = r;
		break;
	}
	case MR_TAG_FREE:
		if (a == MR_MUNMAP || !(q = fast_addr(p, q, &addr)))
			return 0;
		break;
	case MR_TAG_FREE_AGED: {
		uint64_t d;
		if (!(q = varint_get_unchecked(q, &d)))
			return 0;
		age += (uint64_t)zigzag_decode(d);
	}
		/* fall through */
	case MR_TAG_FREE_AGAIN:
		if (p->header.version < 2 || a == MR_MUNMAP || age == 0 ||
		    age > MR_AGE_WINDOW || age > p->n_allocs)
			return 0;
		addr = p->ring[(p->n_allocs - age + 1) & (MR_AGE_WINDOW - 1)];
		break;
	default:
		return 0;
	}
	uint64_t reg = addr;
	if (kind == MR_TAG_ALLOC || kind == MR_TAG_ALLOC_SAME) {
		p->n_allocs++;
		p->bytes_allocated += size;
		ring_note(p, addr);
		rec->tag = MR_TAG_ALLOC | a;
		if (v3)
			reg = p->last_alloc_addr = addr + mr_span(size);
	} else {
		p->n_frees++;
		release_note(p, addr);
		rec->tag = MR_TAG_FREE | a;
	}
	rec->allocator = a;
	rec->pos = p->consumed;
	rec->proc = p;
	rec->thread = p->cur_thread;
	rec->addr = addr;
	rec->size = size;
	rec->stack = rec->tag & MR_TAG_ALLOC ? (uint32_t)stack : 0;
	/* the fields ALLOC and FREE do not use are left as they were */
	size_t used = (size_t)(q - start);
	p->buf_start += used;
	p->consumed += used;
	p->last_addr = reg;
	p->last_stack = (uint32_t)stack;
	p->last_age = (uint32_t)age;
	p->n_records++;
	return 1;
}

/* ---- chunks ------------------------------------------------------------ */

static struct mr_proc *proc_for(struct mr_reader *r, uint32_t pid)
{
	for (size_t i = r->nprocs; i-- > 0;)
		if (r->procs[i]->pid == pid)
			return r->procs[i];
	if (r->nprocs >= MAX_PROCS)
		return NULL;
	struct mr_proc *p = xrealloc(NULL, sizeof(*p));
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	r->procs = xrealloc(r->procs, (r->nprocs + 1) * sizeof(*r->procs));
	r->procs[r->nprocs++] = p;
	return p;
}

static void proc_append(struct mr_proc *p, const uint8_t *data, size_t n,
			uint64_t file_off)
{
	/* Drop consumed bytes and spans before growing. */
	if (p->buf_start > 0) {
		memmove(p->buf, p->buf + p->buf_start, p->buf_end - p->buf_start);
		p->buf_end -= p->buf_start;
		p->buf_start = 0;
	}
	size_t keep = 0;
	for (size_t i = 0; i < p->nspans; i++)
		if (p->spans[i].pos + p->spans[i].len > p->consumed)
			p->spans[keep++] = p->spans[i];
	p->nspans = keep;
	if (p->buf_end + n > p->buf_cap) {
		size_t cap = p->buf_cap ? p->buf_cap : 8192;
		while (cap < p->buf_end + n)
			cap *= 2;
		p->buf = xrealloc(p->buf, cap);
		p->buf_cap = cap;
	}
	memcpy(p->buf + p->buf_end, data, n);
	uint64_t pos = p->consumed + (p->buf_end - p->buf_start);
	p->buf_end += n;
	if (p->nspans == p->spans_cap) {
		p->spans_cap = p->spans_cap ? p->spans_cap * 2 : 8;
		p->spans = xrealloc(p->spans, p->spans_cap * sizeof(*p->spans));
	}
	p->spans[p->nspans++] = (struct mr_span){ pos, file_off, n };
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Reads exactly n bytes; returns the count read (short only at the end). */
static ssize_t read_full(struct mr_reader *r, uint8_t *buf, size_t n)
{
	ssize_t k = mr_input_read(r->in, buf, n);
	if (k < 0)
		return -1;
	r->offset += (uint64_t)k;
	return k;
}

/* At the end of the input: everything complete, or say what is missing. */
/* The process p exec'd: its remaining bytes start the new image, a
 * process of its own with the same pid. */
static struct mr_proc *new_image(struct mr_reader *r, struct mr_proc *p)
{
	struct mr_proc *q = xrealloc(NULL, sizeof(*q));
	memset(q, 0, sizeof(*q));
	q->pid = p->pid;
	q->next_seq = p->next_seq;
	q->buf = p->buf; q->buf_start = p->buf_start; q->buf_end = p->buf_end;
	q->buf_cap = p->buf_cap; q->consumed = p->consumed;
	q->spans = p->spans; q->nspans = p->nspans; q->spans_cap = p->spans_cap;
	p->buf = NULL; p->buf_start = p->buf_end = p->buf_cap = 0;
	p->spans = NULL; p->nspans = p->spans_cap = 0;
	p->exec_pending = 0;
	p->has_trailer = 1; /* this image is complete */
	r->procs = xrealloc(r->procs, (r->nprocs + 1) * sizeof(*r->procs));
	r->procs[r->nprocs++] = q;
	return q;
}

static int at_end(struct mr_reader *r)
{
	if (r->nprocs == 0)
		return fail(r, "empty input: no stream was recorded");
	for (size_t i = 0; i < r->nprocs; i++) {
		struct mr_proc *p = r->procs[i];
		if (p->superseded)
			continue;
		/* a child's stream stopping inside a record is that child's end
		 * (SIGKILL: it wrote whole chunks, records run across them);
		 * said below, when the first process ended properly */
		if (p->buf_end > p->buf_start && p->pid == r->procs[0]->pid)
			return fail(r, "truncated at byte %" PRIu64 ": pid %u's last record is incomplete",
				    file_offset(p, p->consumed), p->pid);
		if (!p->has_trailer && p->exec_pending && p->pid == r->procs[0]->pid)
			return fail(r, "truncated at byte %" PRIu64 ": pid %u exec'd a program that"
				    " was not recorded here (statically linked, setuid, or recorded by a"
				    " memray-record of its own?)", r->offset, p->pid);
		if (!p->has_trailer && p->pid == r->procs[0]->pid)
			return fail(r, "truncated at byte %" PRIu64 ": no trailer for pid %u"
				    " (the program was killed or the stream was cut)",
				    r->offset, p->pid);
	}
	/* A chunk cut short is a stream cut short, whoever's it was. */
	if (r->cut)
		return fail(r, "truncated at byte %" PRIu64 ": the last chunk (at byte %" PRIu64
			    ") is incomplete", r->offset, r->cut - 1);
	/* The first process ended properly, so the stream is whole: a child
	 * without a trailer was killed (a pool's workers are terminated), or
	 * exec'd a program that cannot load the tracker. */
	for (size_t i = 0; i < r->nprocs; i++) {
		const struct mr_proc *p = r->procs[i];
		if (!p->has_trailer && !p->superseded && !r->warn[0])
			snprintf(r->warn, sizeof(r->warn), p->exec_pending
				 ? "pid %u exec'd a program that was not recorded here (statically linked,"
				   " setuid, or recorded by a memray-record of its own?)"
				 : p->buf_end > p->buf_start
				 ? "pid %u ended inside a record, without a trailer (killed by SIGKILL, or"
				   " left by the exit_group system call as Go programs do?)"
				 : "pid %u has no trailer (killed, left by exit_group, or still running when"
				   " the recording ended?)", p->pid);
	}
	return 0;
}

/* Reads one chunk into its process's buffer. 1 read, 0 end, -1 damage.
 * A chunk cut short by the end of the input still delivers its bytes, so
 * the records it completes are read; the end is reported after them. */
static int read_chunk(struct mr_reader *r)
{
	uint8_t h[MR_CHUNK_HEADER], payload[MR_PAYLOAD_MAX];
	uint64_t start = r->offset;
	if (r->eof)
		return 0;
	ssize_t k = read_full(r, h, sizeof(h));
	if (k < 0)
		return fail(r, "read error at byte %" PRIu64 ": %s", r->offset,
			    mr_input_error(r->in));
	if (k == 0)
		return 0;
	size_t m = (size_t)k < MR_MAGIC_LEN ? (size_t)k : MR_MAGIC_LEN;
	if (memcmp(h, MR_MAGIC, m) != 0) {
		if (start == 0)
			return fail(r, "not a memray stream (bad magic at byte 0)");
		return fail(r, "corrupt at byte %" PRIu64 ": bad chunk magic", start);
	}
	if ((size_t)k < sizeof(h)) {
		r->eof = 1;
		r->cut = start + 1;
		if (start == 0)
			return fail(r, "truncated at byte 0: incomplete chunk header");
		return 0;
	}
	uint32_t pid = (uint32_t)get_le(h + 4, 4);
	size_t len = (size_t)get_le(h + 8, 2);
	uint16_t seq = (uint16_t)get_le(h + 10, 2);
	/* a joined chunk: a whole number of full chunks, counted as that many */
	size_t units = len <= MR_PAYLOAD_MAX ? 1 : len / MR_PAYLOAD_MAX;
	if (len == 0 || (len > MR_PAYLOAD_MAX && (len % MR_PAYLOAD_MAX || units > MR_JOIN_MAX)))
		return fail(r, "corrupt at byte %" PRIu64 ": chunk length %zu out of bounds",
			    start, len);
	struct mr_proc *p = proc_for(r, pid);
	if (!p)
		return fail(r, "corrupt at byte %" PRIu64 ": too many processes", start);
	if (seq == 0 && p->next_seq != 0) {
		/* the pid was used again by a new process (a followed program's
		 * children, pid namespaces): a process of its own. Without the
		 * earlier stream's end, the same process exec'd a program in a
		 * way the tracker did not see (a raw system call) and the new
		 * image started over: the earlier stream stops here, said once,
		 * and no other process is touched. */
		if (!(p->has_trailer && !p->exec_pending && p->buf_end == p->buf_start)) {
			p->superseded = 1;
			p->buf_start = p->buf_end;
			if (!r->warn[0])
				snprintf(r->warn, sizeof(r->warn), "pid %u's records stop at byte %"
					 PRIu64 ", where a new stream of the same pid begins (an exec"
					 " the tracker did not see?)", pid, start);
		}
		if (r->nprocs >= MAX_PROCS)
			return fail(r, "corrupt at byte %" PRIu64 ": too many processes", start);
		struct mr_proc *q = xrealloc(NULL, sizeof(*q));
		memset(q, 0, sizeof(*q));
		q->pid = pid;
		r->procs = xrealloc(r->procs, (r->nprocs + 1) * sizeof(*r->procs));
		r->procs[r->nprocs++] = q;
		p = q;
	}
	if (seq != p->next_seq)
		return fail(r, "corrupt at byte %" PRIu64 ": chunk %u of pid %u follows chunk %u"
			    " (chunks were lost)", start, seq, pid, (uint16_t)(p->next_seq - 1));
	p->next_seq = (uint16_t)(p->next_seq + units);
	for (size_t got = 0; got < len;) {
		size_t want = len - got < MR_PAYLOAD_MAX ? len - got : MR_PAYLOAD_MAX;
		k = read_full(r, payload, want);
		if (k < 0)
			return fail(r, "read error at byte %" PRIu64 ": %s", r->offset,
				    mr_input_error(r->in));
		if (k > 0)
			proc_append(p, payload, (size_t)k, start + MR_CHUNK_HEADER + got);
		got += (size_t)k;
		if ((size_t)k < want) {
			r->eof = 1;
			r->cut = start + 1;
			break;
		}
	}
	r->cur = p;
	return 1;
}

int mr_next(struct mr_reader *r, struct mr_record *rec)
{
	if (r->err[0])
		return -1;
	for (;;) {
		struct mr_proc *p = r->cur;
		if (p && p->buf_end - p->buf_start >= FAST_ROOM && p->has_header &&
		    !p->has_trailer && !p->exec_pending && decode_fast(p, rec))
			return 1;
		if (r->cur) {
			const char *why = NULL;
			int rc = decode(r, r->cur, rec, &why);
			if (rc == 2) {
				r->cur = new_image(r, r->cur);
				continue;
			}
			if (rc == 1)
				return 1;
			if (rc < 0)
				return fail(r, "corrupt at byte %" PRIu64 ": %s",
					    file_offset(r->cur, r->cur->consumed), why);
		}
		int rc = read_chunk(r);
		if (rc < 0)
			return -1;
		if (rc == 0)
			return at_end(r) < 0 ? -1 : 0;
	}
}
