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

void mr_w_header(struct mr_writer *w, const struct mr_header_info *h)
{
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

uint32_t mr_w_string(struct mr_writer *w, const char *s, size_t n)
{
	uint8_t tag = MR_TAG_STRING;
	append(w, &tag, 1);
	put_str(w, s, n);
	w->n_records++;
	return w->next_string++;
}

uint32_t mr_w_pyframe(struct mr_writer *w, uint32_t function, uint32_t file,
		      uint32_t line)
{
	struct rec r;
	rec_init(w, &r, MR_TAG_PYFRAME);
	rec_u(&r, function);
	rec_u(&r, file);
	rec_u(&r, line);
	rec_end(w, &r);
	return w->next_frame++;
}

uint32_t mr_w_node_native(struct mr_writer *w, uint32_t parent, uint64_t ip)
{
	struct rec r;
	rec_init(w, &r, MR_TAG_NODE_NATIVE);
	rec_u(&r, w->next_node - parent);
	rec_u(&r, zigzag_encode((int64_t)(ip - w->last_ip)));
	w->last_ip = ip;
	rec_end(w, &r);
	return w->next_node++;
}

uint32_t mr_w_node_python(struct mr_writer *w, uint32_t parent, uint32_t frame)
{
	struct rec r;
	rec_init(w, &r, MR_TAG_NODE_PYTHON);
	rec_u(&r, w->next_node - parent);
	rec_u(&r, frame);
	rec_end(w, &r);
	return w->next_node++;
}

uint32_t mr_w_thread(struct mr_writer *w, uint64_t tid, const char *name)
{
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
	struct rec r;
	rec_init(w, &r, MR_TAG_MODULE_UNLOAD);
	rec_u(&r, module);
	rec_end(w, &r);
}

void mr_w_memory(struct mr_writer *w, uint64_t time_us, uint64_t rss, uint64_t heap)
{
	struct rec r;
	rec_init(w, &r, MR_TAG_MEMORY);
	rec_u(&r, time_us - w->last_time_us);
	rec_u(&r, rss);
	rec_u(&r, heap);
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
	return (size_t)(((addr >> 4) * 0x9e3779b97f4a7c15ull) >> (64 - 15)) & (MR_AGE_SLOTS - 2);
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
 * repeats when blocks are freed in the order they were made. */
static inline uint32_t age_of(const struct mr_writer *w, uint64_t addr)
{
	const uint32_t *t = &w->age_slot[age_slot(addr)];
	uint32_t n = (uint32_t)w->n_allocs, y = n - t[0] > n - t[1];
	uint32_t age = age_try(w, addr, t[y]);
	return age ? age : age_try(w, addr, t[!y]);
}

void mr_w_alloc(struct mr_writer *w, int allocator, uint64_t addr, uint64_t size,
		uint32_t stack)
{
	struct rec r;
	int same = stack == w->last_stack;
	rec_init(w, &r, (same ? MR_TAG_ALLOC_SAME : MR_TAG_ALLOC) | allocator);
	rec_addr(&r, &w->last_addr, addr);
	rec_u(&r, size);
	if (!same)
		rec_u(&r, stack);
	rec_end(w, &r);
	w->last_stack = stack;
	w->n_allocs++;
	w->bytes_allocated += size;
	age_note(w, addr);
}

void mr_w_free(struct mr_writer *w, int allocator, uint64_t addr, uint64_t len)
{
	struct rec r;
	uint32_t age = allocator == MR_MUNMAP ? 0 : age_of(w, addr);
	if (age && age == w->last_age) {
		rec_init(w, &r, MR_TAG_FREE_AGAIN | allocator);
		w->last_addr = addr;
	} else if (age) {
		rec_init(w, &r, MR_TAG_FREE_AGED | allocator);
		rec_u(&r, zigzag_encode((int64_t)age - (int64_t)w->last_age));
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
}

void mr_w_move(struct mr_writer *w, int allocator, uint64_t old_addr,
	       uint64_t old_len, uint64_t addr, uint64_t size, uint32_t stack)
{
	struct rec r;
	/* a block grown where it was made (realloc), by its age: the age
	 * register stays the frees' */
	uint32_t age = allocator == MR_MREMAP || stack != w->last_stack ? 0 : age_of(w, old_addr);
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
		rec_u(&r, stack);
	}
	rec_end(w, &r);
	w->last_stack = stack;
	w->n_allocs++;
	w->n_frees++;
	w->bytes_allocated += size;
	age_note(w, addr);
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
	/* alone in the process's last chunk, where memray-record looks for it */
	mr_w_flush(w);
	put_counts(w, MR_TAG_TRAILER, time_us);
	flush_mid(w);
}

void mr_w_signal(struct mr_writer *w, int sig)
{
	struct rec r;
	rec_local(&r); r.b[0] = (uint8_t)MR_TAG_SIGNAL;
	r.n = 1;
	rec_u(&r, (uint64_t)sig);
	append(w, r.b, r.n);
	w->n_records++;
}

void mr_w_exec(struct mr_writer *w, uint64_t time_us)
{
	put_counts(w, MR_TAG_EXEC, time_us);
	w->n_records++;
	flush_mid(w);
}
