/*
 * stream_write.c - encoding records into chunks (see stream.h).
 *
 * Used inside the tracker, so it never allocates and never calls anything
 * that could allocate: records are built in a small stack buffer and
 * copied into the chunk, which is handed to the sink when full.
 */
#include <string.h>

#include "stream.h"
#include "varint.h"

static const char *const allocator_names[MR_ALLOCATOR_END] = {
	[MR_MALLOC] = "malloc", [MR_CALLOC] = "calloc", [MR_REALLOC] = "realloc",
	[MR_REALLOCARRAY] = "reallocarray", [MR_POSIX_MEMALIGN] = "posix_memalign",
	[MR_ALIGNED_ALLOC] = "aligned_alloc", [MR_MEMALIGN] = "memalign",
	[MR_VALLOC] = "valloc", [MR_PVALLOC] = "pvalloc", [MR_MMAP] = "mmap",
	[MR_MREMAP] = "mremap", [MR_FREE] = "free", [MR_MUNMAP] = "munmap",
};

const char *mr_allocator_name(int a)
{
	if (a <= 0 || a >= MR_ALLOCATOR_END)
		return NULL;
	return allocator_names[a];
}

void mr_writer_init(struct mr_writer *w, uint32_t pid, mr_sink sink, void *ctx)
{
	memset(w, 0, sizeof(*w));
	w->chunk = w->own_chunk;
	w->pid = pid;
	w->sink = sink;
	w->ctx = ctx;
	w->len = MR_CHUNK_HEADER;
	w->next_string = w->next_frame = w->next_node = 1;
	w->next_thread = w->next_module = 1;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int mr_w_flush(struct mr_writer *w)
{
	if (w->len == MR_CHUNK_HEADER)
		return w->failed ? -1 : 0;
	memcpy(w->chunk, MR_MAGIC, MR_MAGIC_LEN);
	put_le(w->chunk + 4, w->pid, 4);
	put_le(w->chunk + 8, w->len - MR_CHUNK_HEADER, 2);
	put_le(w->chunk + 10, w->seq, 2);
	if (!w->failed && w->sink(w->ctx, w->chunk, w->len) < 0)
		w->failed = 1;
	w->seq++;
	w->len = MR_CHUNK_HEADER;
	return w->failed ? -1 : 0;
}

/* A flush inside a record (or right after the stream's end or an exec):
 * the sink is told (mid), since its chunk is no point to go on from. */
static void flush_mid(struct mr_writer *w)
{
	w->mid = 1;
	mr_w_flush(w);
	w->mid = 0;
}

static void append(struct mr_writer *w, const void *data, size_t n)
{
	const uint8_t *p = data;
	while (n > 0) {
		size_t room = MR_CHUNK_MAX - w->len;
		size_t k = n < room ? n : room;
		memcpy(w->chunk + w->len, p, k);
		w->len += k;
		p += k;
		n -= k;
		if (w->len == MR_CHUNK_MAX)
			flush_mid(w);
	}
}

/* A record under construction: tag and fixed fields, no strings. It is
 * encoded straight into the chunk when the chunk has room for any such
 * record, else into `local` and copied across the chunk boundary. */
#define REC_MAX 96
struct rec {
	uint8_t *b;
	size_t n;
	uint8_t local[REC_MAX];
};

static void rec_local(struct rec *r)
{
	r->b = r->local;
	r->n = 0;
}

static inline __attribute__((always_inline)) void rec_init(struct mr_writer *w, struct rec *r, int tag)
{
	r->b = MR_CHUNK_MAX - w->len >= REC_MAX ? w->chunk + w->len : r->local;
	r->b[0] = (uint8_t)tag;
	r->n = 1;
}

static inline __attribute__((always_inline)) void rec_u(struct rec *r, uint64_t v)
{
	r->n += varint_put(r->b + r->n, v);
}

/* Addresses are written as a difference from a register (the previous
 * address written). The low bits of the varint say how:
 *   ...0   the difference divided by 16, zigzagged, shifted left by 1
 *   ..01   the difference, zigzagged, shifted left by 2 (below 2^62)
 *   0b11   exactly 3: the absolute address follows as a second varint */
static inline __attribute__((always_inline)) void rec_addr(struct rec *r, uint64_t *reg,
						     uint64_t addr)
{
	int64_t d = (int64_t)(addr - *reg);
	uint64_t z = zigzag_encode(d);
	if ((d & 15) == 0) {
		rec_u(r, zigzag_encode(d >> 4) << 1); /* exact: d is a multiple of 16 */
	} else if (z < (1ull << 62)) {
		rec_u(r, z << 2 | 1);
	} else {
		rec_u(r, 3);
		rec_u(r, addr);
	}
	*reg = addr;
}

static inline __attribute__((always_inline)) void rec_end(struct mr_writer *w, struct rec *r)
{
	if (r->b == r->local) {
		append(w, r->b, r->n);
	} else {
		w->len += r->n;
		if (w->len == MR_CHUNK_MAX)
			flush_mid(w); /* (before the record is counted) */
	}
	w->n_records++;
}

/* A string field: its length, then its bytes (which may span chunks). */
static void put_str(struct mr_writer *w, const char *s, size_t n)
{
	uint8_t len[VARINT_MAX];
	append(w, len, varint_put(len, n));
	append(w, s, n);
}

static void put_cstr(struct mr_writer *w, const char *s)
{
	put_str(w, s ? s : "", s ? strlen(s) : 0);
}

/* Version 3 writes a PYFRAME only when the next record is not the node
 * that uses it, which then defines both (PYNODE_NEW): every other record
 * first writes out a frame left pending. */
static void pend_out_slow(struct mr_writer *w);
static inline __attribute__((always_inline)) void pend_out(struct mr_writer *w)
{
	if (__builtin_expect(w->pend_frame != 0, 0))
		pend_out_slow(w);
}

void mr_w_header(struct mr_writer *w, const struct mr_header_info *h)
{
	pend_out(w);
	w->interval_us = h->interval_us;
	w->page_size = h->page_size;
	struct rec r;
	rec_local(&r); r.b[0] = (uint8_t)MR_TAG_HEADER;
	r.n = 1;
	rec_u(&r, MR_FORMAT_VERSION);
	append(w, r.b, r.n);
	put_cstr(w, h->tool_version);
	r.n = 0;
	rec_u(&r, h->pid);
	rec_u(&r, h->ppid);
	rec_u(&r, h->start_us);
	rec_u(&r, h->page_size);
	rec_u(&r, h->flags);
	rec_u(&r, h->interval_us);
	rec_u(&r, (uint64_t)h->argc);
	append(w, r.b, r.n);
	for (int i = 0; i < h->argc; i++)
		put_cstr(w, h->argv[i]);
	put_cstr(w, h->exe);
	if (h->flags & MR_F_SAMPLED) {
		r.n = 0;
		rec_u(&r, h->sample_bytes);
		append(w, r.b, r.n);
	}
	if (h->flags & MR_F_PYINFO) {
		put_cstr(w, h->python_version);
		put_cstr(w, h->python_problem);
	}
	w->n_records++;
}

/* A string that begins as one of the latest MR_STR_RECENT strings (a
 * file in the same directory, a method of the same class) is written as
 * that string's first bytes and the rest (STRING_PREFIX), when that is
 * shorter by a byte or more. The first bytes kept of each string stop
 * before any NUL, which a prefix never holds. */
uint32_t mr_w_string(struct mr_writer *w, const char *s, size_t n)
{
	pend_out(w);
	uint32_t have = w->next_string - 1 < MR_STR_RECENT ? w->next_string - 1 : MR_STR_RECENT;
	size_t best = 0, back = 0;
	for (uint32_t b = 1; b <= have; b++) {
		uint32_t slot = (w->next_string - b) % MR_STR_RECENT;
		size_t k = 0, hl = w->str_len[slot];
		const uint8_t *h = w->str_head[slot];
		while (k < hl && k < n && h[k] == (uint8_t)s[k])
			k++;
		if (k > best) {
			best = k;
			back = b;
		}
	}
	struct rec r;
	rec_local(&r);
	if (best >= 3) {
		r.b[0] = (uint8_t)MR_TAG_STRING_PREFIX;
		r.n = 1;
		rec_u(&r, back);
		rec_u(&r, best);
		append(w, r.b, r.n);
		put_str(w, s + best, n - best);
	} else {
		r.b[0] = (uint8_t)MR_TAG_STRING;
		append(w, r.b, 1);
		put_str(w, s, n);
	}
	uint32_t slot = w->next_string % MR_STR_RECENT;
	size_t hl = n < MR_STR_HEAD ? n : MR_STR_HEAD;
	const char *nul = memchr(s, 0, hl);
	if (nul)
		hl = (size_t)(nul - s);
	memcpy(w->str_head[slot], s, hl);
	w->str_len[slot] = (uint8_t)hl;
	w->n_records++;
	return w->next_string++;
}

void mr_w_pend_out(struct mr_writer *w)
{
	pend_out(w);
}

static void pend_out_slow(struct mr_writer *w)
{
	struct rec r;
	rec_init(w, &r, MR_TAG_PYFRAME);
	rec_u(&r, w->pend_function);
	rec_u(&r, w->pend_file);
	rec_u(&r, w->pend_line);
	w->pend_frame = 0;
	rec_end(w, &r);
}

uint32_t mr_w_pyframe(struct mr_writer *w, uint32_t function, uint32_t file,
		      uint32_t line)
{
	pend_out(w);
	w->pend_frame = w->next_frame;
	w->pend_function = function;
	w->pend_file = file;
	w->pend_line = line;
	return w->next_frame++;
}

uint32_t mr_w_node_native(struct mr_writer *w, uint32_t parent, uint64_t ip)
{
	pend_out(w);
	struct rec r;
	rec_init(w, &r, MR_TAG_NODE_NATIVE);
	rec_u(&r, w->next_node - parent);
	rec_u(&r, zigzag_encode((int64_t)(ip - w->last_ip)));
	w->last_ip = ip;
	rec_end(w, &r);
	return w->next_node++;
}

/* Version 3's forms: the node's frame defined with it when it is the one
 * pending (PYNODE_NEW), its parent left out when it is the node just
 * before (PYNODE_NEXT), or both (PYNODE_NEXT_NEW). */
uint32_t mr_w_node_python(struct mr_writer *w, uint32_t parent, uint32_t frame)
{
	int with_frame = w->pend_frame && frame == w->pend_frame;
	if (!with_frame)
		pend_out(w);
	int next = parent == w->next_node - 1;
	struct rec r;
	rec_init(w, &r, with_frame ? (next ? MR_TAG_PYNODE_NEXT_NEW : MR_TAG_PYNODE_NEW)
				   : (next ? MR_TAG_PYNODE_NEXT : MR_TAG_NODE_PYTHON));
	if (!next)
		rec_u(&r, w->next_node - parent);
	if (with_frame) {
		rec_u(&r, w->pend_function);
		rec_u(&r, w->pend_file);
		rec_u(&r, w->pend_line);
		w->pend_frame = 0;
	} else {
		rec_u(&r, frame);
	}
	rec_end(w, &r);
	return w->next_node++;
}

uint32_t mr_w_thread(struct mr_writer *w, uint64_t tid, const char *name)
{
	pend_out(w);
	struct rec r;
	rec_local(&r); r.b[0] = (uint8_t)MR_TAG_THREAD;
	r.n = 1;
	rec_u(&r, tid);
	append(w, r.b, r.n);
	put_cstr(w, name);
	w->n_records++;
	w->cur_thread = w->next_thread;
	return w->next_thread++;
}

void mr_w_thread_name(struct mr_writer *w, uint32_t thread, const char *name)
{
	pend_out(w);
	struct rec r;
	rec_local(&r); r.b[0] = (uint8_t)MR_TAG_THREAD_NAME;
	r.n = 1;
	rec_u(&r, thread);
	append(w, r.b, r.n);
	put_cstr(w, name);
	w->n_records++;
}

void mr_w_switch(struct mr_writer *w, uint32_t thread)
{
	if (thread == w->cur_thread)
		return;
	pend_out(w);
	struct rec r;
	rec_init(w, &r, MR_TAG_THREAD_SWITCH);
	rec_u(&r, thread);
	rec_end(w, &r);
	w->cur_thread = thread;
}

uint32_t mr_w_module_load(struct mr_writer *w, uint32_t path, uint64_t base,
			  const uint8_t *build_id, size_t build_id_len,
			  const struct mr_segment *segs, size_t nsegs)
{
	pend_out(w);
	struct rec r;
	if (build_id_len > MR_BUILD_ID_MAX)
		build_id_len = 0;
	if (nsegs > MR_SEGMENTS_MAX)
		nsegs = MR_SEGMENTS_MAX;
	rec_local(&r); r.b[0] = (uint8_t)MR_TAG_MODULE_LOAD;
	r.n = 1;
	rec_u(&r, path);
	rec_u(&r, base);
	rec_u(&r, build_id_len);
	append(w, r.b, r.n);
	append(w, build_id, build_id_len);
	r.n = 0;
	rec_u(&r, nsegs);
	append(w, r.b, r.n);
	for (size_t i = 0; i < nsegs; i++) {
		r.n = 0;
		rec_u(&r, segs[i].vaddr);
		rec_u(&r, segs[i].size);
		rec_u(&r, segs[i].prot);
		append(w, r.b, r.n);
	}
	w->n_records++;
	return w->next_module++;
}

void mr_w_module_unload(struct mr_writer *w, uint32_t module)
{
	pend_out(w);
	struct rec r;
	rec_init(w, &r, MR_TAG_MODULE_UNLOAD);
	rec_u(&r, module);
	rec_end(w, &r);
}

/* Version 3: the time as its difference from the interval, the RSS in
 * pages when it is a whole number of them (it always is: the kernel
 * counts pages), low bit 0; else in bytes, low bit 1 (2^63 - 1 at most);
 * the heap as its change since the last one. */
void mr_w_memory(struct mr_writer *w, uint64_t time_us, uint64_t rss, uint64_t heap)
{
	pend_out(w);
	struct rec r;
	rec_init(w, &r, MR_TAG_MEMORY);
	rec_u(&r, zigzag_encode((int64_t)(time_us - w->last_time_us - w->interval_us)));
	if (w->page_size && rss % w->page_size == 0 && rss / w->page_size < 1ull << 63)
		rec_u(&r, rss / w->page_size << 1);
	else
		rec_u(&r, (rss < 1ull << 63 ? rss : (1ull << 63) - 1) << 1 | 1);
	rec_u(&r, zigzag_encode((int64_t)(heap - w->last_heap)));
	w->last_heap = heap;
	w->last_time_us = time_us;
	rec_end(w, &r);
}

/* ---- events ------------------------------------------------------------
 * Version 2 makes the common events short and alike, so that they cost few
 * bytes and repeat for a compressor: an ALLOC from the same stack as the
 * last one leaves its stack out (ALLOC_SAME), and a FREE of one of the
 * latest MR_AGE_WINDOW allocations names it by its age (FREE_AGED), or by
 * nothing at all when the age is the last one's again (FREE_AGAIN): a
 * program that frees its blocks in the order it made them repeats one
 * age. The addresses of those allocations are kept in a ring indexed by
 * the allocation's number, and an address finds its number through a
 * direct-mapped table; the ring, not the table, is the proof, so a table
 * slot taken over by another address only costs the long form. A realloc
 * from the last stack names its old block by age too (MOVE_AGED): it is
 * mostly the block made just before. */

/* Two slots (one cache line) per hash: a slot taken by a younger block
 * keeps the other one's. */
static inline size_t age_slot(uint64_t addr)
{
	return (size_t)(((addr >> 4) * 0x9e3779b97f4a7c15ull) >> (64 - MR_AGE_BITS)) & (MR_AGE_SLOTS - 2);
}

/* Allocation number n_allocs (just counted) made the block at addr: it
 * replaces the older of the two slots. */
static inline void age_note(struct mr_writer *w, uint64_t addr)
{
	uint32_t n = (uint32_t)w->n_allocs, *t = &w->age_slot[age_slot(addr)];
	w->ring[w->n_allocs & (MR_AGE_WINDOW - 1)] = addr;
	t[n - t[0] < n - t[1]] = n;
}

/* The age (1 = the latest allocation) of the block at addr, if it is one
 * of the latest MR_AGE_WINDOW allocations; else 0. */
static inline uint32_t age_try(const struct mr_writer *w, uint64_t addr, uint32_t slot)
{
	uint32_t age = (uint32_t)w->n_allocs - slot + 1;
	if (age == 0 || age > MR_AGE_WINDOW || age > w->n_allocs)
		return 0;
	if (w->ring[(w->n_allocs - age + 1) & (MR_AGE_WINDOW - 1)] != addr)
		return 0;
	return age;
}

/* The younger slot first: an address made again within the window is in
 * the ring twice, and its latest allocation is the live one, whose age
 * repeats when blocks are freed in the order they were made. The block
 * is being released: the slot that found it forgets it, as older than
 * any, so that the next allocation there takes it and not the other
 * slot, which may hold a block that lives long (a slot is a cache line's
 * half, and most blocks die young: without this, one in twenty frees of
 * Python objects missed blocks still in the window). */
static inline uint32_t age_take(struct mr_writer *w, uint64_t addr)
{
	uint32_t *t = &w->age_slot[age_slot(addr)];
	uint32_t n = (uint32_t)w->n_allocs, y = n - t[0] > n - t[1];
	uint32_t age = age_try(w, addr, t[y]);
	if (!age && (age = age_try(w, addr, t[!y])) != 0)
		y = !y;
	if (age)
		t[y] = n - 0x80000000u;
	return age;
}

/* Version 3: the addresses released lately, by number, so that an
 * allocation given a block just freed names it in a byte: the k-th latest
 * released address (1 the latest). The table only finds candidates: a
 * slot keeps an address with the number of its latest release, and that
 * release is among the latest MR_FREED_WINDOW, which the reader keeps
 * exactly, when k is at most the window. */
static inline size_t freed_slot(uint64_t addr)
{
	return (size_t)(addr >> 4) & (MR_FREED_SLOTS - 1);
}

static inline void released(struct mr_writer *w, uint64_t addr)
{
	size_t h = freed_slot(addr);
	w->freed_addr[h] = addr;
	w->freed_no[h] = ++w->n_released;
}

static inline uint64_t released_k(const struct mr_writer *w, uint64_t addr)
{
	size_t h = freed_slot(addr);
	uint64_t k = w->n_released - w->freed_no[h] + 1;
	return w->freed_addr[h] == addr && w->freed_no[h] && k <= MR_FREED_WINDOW ? k : 0;
}

/* An allocation's address is written against the allocation register,
 * where the block after the last allocation would be carved (mr_span),
 * which is then also the address register: a FREE's address moves the
 * address register only, and blocks carved one after another cost a byte
 * however many frees come between them. */
void mr_w_alloc(struct mr_writer *w, int allocator, uint64_t addr, uint64_t size,
		uint32_t stack)
{
	struct rec r;
	int same = stack == w->last_stack;
	uint64_t k = released_k(w, addr);
	rec_init(w, &r, (same ? MR_TAG_ALLOC_SAME : MR_TAG_ALLOC) | allocator);
	if (k)
		rec_u(&r, k << 2 | 3);
	else
		rec_addr(&r, &w->alloc_addr, addr);
	w->last_addr = w->alloc_addr = addr + mr_span(size);
	rec_u(&r, size);
	if (!same)
		rec_u(&r, w->next_node - 1 - stack); /* back from the latest node */
	rec_end(w, &r);
	w->last_stack = stack;
	w->n_allocs++;
	w->bytes_allocated += size;
	age_note(w, addr);
}

void mr_w_free(struct mr_writer *w, int allocator, uint64_t addr, uint64_t len)
{
	struct rec r;
	uint32_t age = allocator == MR_MUNMAP ? 0 : age_take(w, addr);
	int64_t d = (int64_t)age - (int64_t)w->last_age;
	if (age && age == w->last_age) {
		rec_init(w, &r, MR_TAG_FREE_AGAIN | allocator);
		w->last_addr = addr;
	} else if (age && allocator == MR_FREE && d >= -6 && d <= 7) {
		/* version 3: free() by an age near the last one, in the tag */
		rec_init(w, &r, MR_TAG_FREE_NEAR + (int)(d < 0 ? d + 6 : d + 5));
		w->last_addr = addr;
		w->last_age = age;
	} else if (age) {
		rec_init(w, &r, MR_TAG_FREE_AGED | allocator);
		rec_u(&r, zigzag_encode(d));
		w->last_addr = addr;
		w->last_age = age;
	} else {
		rec_init(w, &r, MR_TAG_FREE | allocator);
		rec_addr(&r, &w->last_addr, addr);
		if (allocator == MR_MUNMAP)
			rec_u(&r, len);
	}
	rec_end(w, &r);
	w->n_frees++;
	released(w, addr);
}

void mr_w_move(struct mr_writer *w, int allocator, uint64_t old_addr,
	       uint64_t old_len, uint64_t addr, uint64_t size, uint32_t stack)
{
	struct rec r;
	/* a block grown where it was made (realloc), by its age: the age
	 * register stays the frees' */
	uint32_t age = allocator == MR_MREMAP || stack != w->last_stack ? 0 : age_take(w, old_addr);
	if (age) {
		rec_init(w, &r, MR_TAG_MOVE_AGED | allocator);
		rec_u(&r, age);
		w->last_addr = old_addr;
		rec_addr(&r, &w->last_addr, addr);
		rec_u(&r, size);
	} else {
		rec_init(w, &r, MR_TAG_MOVE | allocator);
		rec_addr(&r, &w->last_addr, old_addr);
		if (allocator == MR_MREMAP)
			rec_u(&r, old_len);
		rec_addr(&r, &w->last_addr, addr);
		rec_u(&r, size);
		rec_u(&r, w->next_node - 1 - stack); /* back from the latest node */
	}
	rec_end(w, &r);
	w->last_stack = stack;
	w->n_allocs++;
	w->n_frees++;
	w->bytes_allocated += size;
	age_note(w, addr);
	released(w, old_addr);
}

static void put_counts(struct mr_writer *w, int tag, uint64_t time_us)
{
	struct rec r;
	rec_local(&r); r.b[0] = (uint8_t)tag;
	r.n = 1;
	rec_u(&r, time_us);
	rec_u(&r, w->n_records);
	rec_u(&r, w->n_allocs);
	rec_u(&r, w->n_frees);
	rec_u(&r, w->bytes_allocated);
	append(w, r.b, r.n);
}

void mr_w_trailer(struct mr_writer *w, uint64_t time_us)
{
	pend_out(w);
	/* alone in the process's last chunk, where memray-record looks for it */
	mr_w_flush(w);
	put_counts(w, MR_TAG_TRAILER, time_us);
	flush_mid(w);
}

void mr_w_signal(struct mr_writer *w, int sig)
{
	pend_out(w);
	struct rec r;
	rec_local(&r); r.b[0] = (uint8_t)MR_TAG_SIGNAL;
	r.n = 1;
	rec_u(&r, (uint64_t)sig);
	append(w, r.b, r.n);
	w->n_records++;
}

void mr_w_exec(struct mr_writer *w, uint64_t time_us)
{
	pend_out(w);
	put_counts(w, MR_TAG_EXEC, time_us);
	w->n_records++;
	flush_mid(w);
}
