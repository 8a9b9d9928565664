/*
 * test_stream.c - the stream writer and reader against each other.
 *
 * A script writes one of every record into memory, noting for each record
 * what the reader must return and where the record lies in the file. The
 * bytes are then read back whole, cut at every offset, gzip-compressed and
 * corrupted, through mr_input_open and mr_next as the tools read them.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../../lib/input.h"
#include "../../lib/stream.h"
#include "../../lib/varint.h"
#include "unit.h"

static char tmpdir[] = "/tmp/test_stream.XXXXXX";
static char tmpfile_path[sizeof(tmpdir) + 16];

/* ---- writing into memory ----------------------------------------------- */

struct membuf {
	uint8_t *p;
	size_t len, cap;
};

static void mem_append(struct membuf *m, const void *data, size_t n)
{
	if (m->len + n > m->cap) {
		m->cap = (m->len + n) * 2;
		m->p = realloc(m->p, m->cap);
		if (!m->p)
			abort();
	}
	memcpy(m->p + m->len, data, n);
	m->len += n;
}

static int mem_sink(void *ctx, const uint8_t *chunk, size_t len)
{
	mem_append(ctx, chunk, len);
	return 0;
}

/* What the reader must return for one record, and the file offsets of
 * its first byte and one past its last. */
struct expect {
	int tag, allocator;
	uint32_t id, thread, stack, frame;
	uint64_t addr, size, old_addr, old_size, time_us, rss, heap;
	uint64_t offset, end;
};

struct script {
	struct mr_writer w;
	struct membuf out;
	struct expect *exp;
	size_t n, cap;
	uint32_t thread; /* the current thread, as the reader tracks it */
	uint32_t nthreads;
	uint32_t pend; /* the frame the writer holds back (mr_w_pyframe) */
};

static void script_init(struct script *s, uint32_t pid)
{
	memset(s, 0, sizeof(*s));
	mr_writer_init(&s->w, pid, mem_sink, &s->out);
}

static void script_free(struct script *s)
{
	free(s->out.p);
	free(s->exp);
}

static struct expect *begin(struct script *s, int tag);
static void end(struct script *s);

/* The frame the writer held back, written out as a PYFRAME of its own:
 * before any record but its node's and events, which leave it pending. */
static void pend_out(struct script *s)
{
	if (!s->pend)
		return;
	uint32_t id = s->pend;
	s->pend = 0;
	struct expect *e = begin(s, MR_TAG_PYFRAME);
	e->id = id;
	mr_w_pend_out(&s->w);
	end(s);
}

/* Starts the expectation of the record about to be written. */
static struct expect *begin(struct script *s, int tag)
{
	if (!(tag & 0xe0))
		pend_out(s);
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->exp = realloc(s->exp, s->cap * sizeof(*s->exp));
		if (!s->exp)
			abort();
	}
	struct expect *e = &s->exp[s->n];
	memset(e, 0, sizeof(*e));
	e->tag = tag;
	e->thread = s->thread;
	/* The chunk being filled goes out at out.len, its payload at w.len. */
	e->offset = s->out.len + s->w.len;
	return e;
}

/* Ends the record begun last: its end is where the writer now stands. */
static void end(struct script *s)
{
	struct expect *e = &s->exp[s->n++];
	e->end = s->w.len > MR_CHUNK_HEADER ? s->out.len + s->w.len : s->out.len;
}

static void s_header(struct script *s, const struct mr_header_info *h)
{
	begin(s, MR_TAG_HEADER);
	mr_w_header(&s->w, h);
	end(s);
}

static uint32_t s_string(struct script *s, const char *str, size_t n)
{
	struct expect *e = begin(s, MR_TAG_STRING);
	e->id = mr_w_string(&s->w, str, n);
	end(s);
	return e->id;
}

static uint32_t s_pyframe(struct script *s, uint32_t fn, uint32_t file, uint32_t line)
{
	pend_out(s);
	return s->pend = mr_w_pyframe(&s->w, fn, file, line);
}

static uint32_t s_native(struct script *s, uint32_t parent, uint64_t ip)
{
	struct expect *e = begin(s, MR_TAG_NODE_NATIVE);
	e->id = mr_w_node_native(&s->w, parent, ip);
	end(s);
	return e->id;
}

static uint32_t s_python(struct script *s, uint32_t parent, uint32_t frame)
{
	/* the frame held back, if it is this node's, is written with it */
	uint32_t with = s->pend == frame ? frame : 0;
	s->pend = with ? 0 : s->pend;
	struct expect *e = begin(s, MR_TAG_NODE_PYTHON);
	e->frame = with;
	e->id = mr_w_node_python(&s->w, parent, frame);
	end(s);
	return e->id;
}

static uint32_t s_thread(struct script *s, uint64_t tid, const char *name)
{
	struct expect *e = begin(s, MR_TAG_THREAD);
	e->id = mr_w_thread(&s->w, tid, name);
	e->thread = s->thread = e->id;
	end(s);
	return e->id;
}

static void s_thread_name(struct script *s, uint32_t thread, const char *name)
{
	struct expect *e = begin(s, MR_TAG_THREAD_NAME);
	e->id = thread;
	mr_w_thread_name(&s->w, thread, name);
	end(s);
}

static void s_switch(struct script *s, uint32_t thread)
{
	if (thread == s->thread) { /* the writer elides it */
		size_t before = s->out.len + s->w.len;
		mr_w_switch(&s->w, thread);
		CHECK_EQ_U64(s->out.len + s->w.len, before);
		return;
	}
	struct expect *e = begin(s, MR_TAG_THREAD_SWITCH);
	e->id = e->thread = s->thread = thread;
	mr_w_switch(&s->w, thread);
	end(s);
}

static uint32_t s_module(struct script *s, uint32_t path, uint64_t base,
			 const uint8_t *bid, size_t bidlen,
			 const struct mr_segment *segs, size_t nsegs)
{
	struct expect *e = begin(s, MR_TAG_MODULE_LOAD);
	e->id = mr_w_module_load(&s->w, path, base, bid, bidlen, segs, nsegs);
	end(s);
	return e->id;
}

static void s_unload(struct script *s, uint32_t module)
{
	struct expect *e = begin(s, MR_TAG_MODULE_UNLOAD);
	e->id = module;
	mr_w_module_unload(&s->w, module);
	end(s);
}

static void s_memory(struct script *s, uint64_t t, uint64_t rss, uint64_t heap)
{
	struct expect *e = begin(s, MR_TAG_MEMORY);
	e->time_us = t;
	/* (an RSS of 2^63 or more is not written exactly unless in pages) */
	e->rss = rss % 4096 == 0 || rss < 1ull << 63 ? rss : (1ull << 63) - 1;
	e->heap = heap;
	mr_w_memory(&s->w, t, rss, heap);
	end(s);
}

static void s_alloc(struct script *s, int a, uint64_t addr, uint64_t size, uint32_t stack)
{
	struct expect *e = begin(s, MR_TAG_ALLOC | a);
	e->allocator = a;
	e->addr = addr;
	e->size = size;
	e->stack = stack;
	mr_w_alloc(&s->w, a, addr, size, stack);
	end(s);
}

static void s_free(struct script *s, int a, uint64_t addr, uint64_t len)
{
	struct expect *e = begin(s, MR_TAG_FREE | a);
	e->allocator = a;
	e->addr = addr;
	e->size = a == MR_MUNMAP ? len : 0; /* only munmap carries a length */
	mr_w_free(&s->w, a, addr, len);
	end(s);
}

static void s_move(struct script *s, int a, uint64_t old, uint64_t old_len,
		   uint64_t addr, uint64_t size, uint32_t stack)
{
	struct expect *e = begin(s, MR_TAG_MOVE | a);
	e->allocator = a;
	e->old_addr = old;
	e->old_size = a == MR_MREMAP ? old_len : 0; /* only mremap carries it */
	e->addr = addr;
	e->size = size;
	e->stack = stack;
	mr_w_move(&s->w, a, old, old_len, addr, size, stack);
	end(s);
}

static void s_trailer(struct script *s, uint64_t t)
{
	mr_w_flush(&s->w); /* the writer puts the trailer in a chunk of its own */
	struct expect *e = begin(s, MR_TAG_TRAILER); /* the rest is in proc->trailer */
	e->time_us = t;
	mr_w_trailer(&s->w, t);
	end(s);
}

/* ---- the full stream ---------------------------------------------------- */

#define LONG_LEN 5000 /* longer than a chunk's payload */

static char *const test_argv[] = { "prog", "", "--flag=a b", "\xff\x01 bytes" };
static char long_string[LONG_LEN];
static uint8_t build_id[MR_BUILD_ID_MAX];
static struct mr_segment segs[MR_SEGMENTS_MAX];

static const struct mr_header_info test_header = {
	.tool_version = "memray-c test 9.9",
	.pid = 4242,
	.ppid = 1,
	.start_us = 1700000000123456ull,
	.page_size = 4096,
	.flags = MR_F_NATIVE | MR_F_PYTHON | MR_F_FOLLOW_FORK,
	.interval_us = 10000,
	.argc = 4,
	.argv = test_argv,
	.exe = "/usr/bin/prog",
};

/* The ids the script received, to check the reader's tables against. */
static struct {
	uint32_t s_main, s_empty, s_long, s_libc, s_py, s_py2, s_long2;
	uint32_t f1, f2, f3, f4, f5, f6;
	uint32_t n[9], n9, n10, n11, n12, n13;
	uint32_t t1, t2;
	uint32_t m1, m2, m3;
} ids;

/* A small deterministic generator for the bulk events. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void write_full_stream(struct script *s)
{
	for (size_t i = 0; i < LONG_LEN; i++)
		long_string[i] = (char)(1 + i % 255); /* every byte value but 0 */
	for (size_t i = 0; i < MR_BUILD_ID_MAX; i++)
		build_id[i] = (uint8_t)(0xf0 ^ i);
	for (size_t i = 0; i < MR_SEGMENTS_MAX; i++)
		segs[i] = (struct mr_segment){ i * 0x1000 + 3, (i + 1) * 0x10001, i & 7 };
	segs[MR_SEGMENTS_MAX - 1] = (struct mr_segment){ UINT64_MAX, UINT64_MAX, UINT32_MAX };

	script_init(s, 4242);
	s_header(s, &test_header);
	ids.s_main = s_string(s, "main", 4);
	ids.s_empty = s_string(s, "", 0);
	ids.s_long = s_string(s, long_string, LONG_LEN);
	ids.s_libc = s_string(s, "/lib/x86_64-linux-gnu/libc.so.6", 31);
	ids.s_py = s_string(s, "script.py", 9);

	ids.f1 = s_pyframe(s, ids.s_main, ids.s_py, 42);
	ids.f2 = s_pyframe(s, ids.s_empty, ids.s_py, UINT32_MAX);
	ids.f3 = s_pyframe(s, 0, 0, 0);

	ids.n[1] = s_native(s, 0, 0x401000);
	ids.n[2] = s_native(s, ids.n[1], 0x400ff3); /* ip goes down, unaligned */
	ids.n[3] = s_python(s, ids.n[2], ids.f1);
	ids.n[4] = s_native(s, ids.n[3], 0x7fffdeadbeef);
	ids.n[5] = s_native(s, 0, UINT64_MAX);
	ids.n[6] = s_python(s, ids.n[5], ids.f2);
	ids.n[7] = s_native(s, ids.n[6], 0);
	ids.n[8] = s_native(s, ids.n[1], 0x401000);
	/* version 3's forms: a frame written with its node, under the node
	 * just before or another; a node under the node just before */
	ids.f4 = s_pyframe(s, ids.s_main, ids.s_py, 7);
	ids.n9 = s_python(s, ids.n[8], ids.f4);
	ids.f5 = s_pyframe(s, ids.s_py, ids.s_main, 700000);
	ids.n10 = s_python(s, ids.n[3], ids.f5);
	ids.n11 = s_python(s, ids.n10, ids.f1);
	ids.n12 = s_python(s, ids.n[6], ids.f1);
	/* a frame held back across events, then written with its node */
	ids.f6 = s_pyframe(s, ids.s_main, ids.s_main, 1);
	s_alloc(s, MR_MALLOC, 0x650000000000, 64, ids.n12);
	s_free(s, MR_FREE, 0x650000000000, 0);
	ids.n13 = s_python(s, ids.n12, ids.f6);
	/* strings that begin as earlier ones */
	ids.s_py2 = s_string(s, "script.pyc", 10);
	ids.s_long2 = s_string(s, long_string, LONG_LEN - 1);
	s_string(s, "scr", 3);
	s_string(s, "mainly", 6);

	ids.t1 = s_thread(s, 1001, "main");
	ids.t2 = s_thread(s, UINT64_MAX, NULL);
	s_thread_name(s, ids.t2, "worker-2");
	s_thread_name(s, ids.t1, "");
	s_switch(s, ids.t1);
	s_switch(s, ids.t1); /* already current: no record */

	ids.m1 = s_module(s, ids.s_libc, 0x7f0000000000, build_id, 20, segs, 3);
	ids.m2 = s_module(s, ids.s_py, 0, NULL, 0, NULL, 0);
	ids.m3 = s_module(s, ids.s_main, UINT64_MAX - 4095, build_id, MR_BUILD_ID_MAX,
			  segs, MR_SEGMENTS_MAX);
	s_unload(s, ids.m2);

	s_memory(s, 1000, 4096 * 100, 12345);
	s_memory(s, 1000, 0, 0);                   /* same time */
	s_memory(s, 500, UINT64_MAX, UINT64_MAX);  /* the clock went back */
	s_memory(s, UINT64_MAX, 1, 2);

	/* Every allocator through every event kind, at addresses that are
	 * unaligned and that go down as well as up. */
	static const uint64_t addrs[] = {
		0x7f1234560010, 0x7f1234560000, 0x7f1234560001, 0x55550000000f,
		0x555500000010, 0x7ffff7a00000, 0x1, 0x0, 0x7f1234561000, 0x55550001fff3,
		0x7ffff7800000, 0x10, 0x7f1234560008, 0x7f123455fff7,
	};
	size_t na = sizeof(addrs) / sizeof(addrs[0]), k = 0;
	for (int a = 1; a < MR_ALLOCATOR_END; a++) {
		uint64_t x = addrs[k++ % na], y = addrs[k++ % na], z = addrs[k++ % na];
		s_switch(s, a & 1 ? ids.t1 : ids.t2);
		s_alloc(s, a, x, (uint64_t)a * 977, ids.n[a % 9]);
		s_free(s, a, y, (uint64_t)a * 4096);
		s_move(s, a, z, (uint64_t)a * 8192 + 1, x + 3, (uint64_t)a << 40, ids.n[8 - a % 9]);
	}
	s_alloc(s, MR_MMAP, 0x7f0000200000, 8 * 4096, 0);
	s_free(s, MR_MUNMAP, 0x7f0000201000, 4096);
	s_move(s, MR_MREMAP, 0x7f0000200000, 4096, 0x7f0000400000, 12 * 4096, ids.n[4]);
	s_alloc(s, MR_MALLOC, 0x5555deadbeef, 0, 0);
	/* the largest size a reader takes: no address space holds more */
	s_alloc(s, MR_CALLOC, 0x5555deadbee0, (uint64_t)1 << 57, ids.n[8]);

	/* The compact forms: blocks freed in the order they were made (one
	 * age again and again), at ages that change, an address made twice
	 * inside the window (its latest allocation is the one named), one
	 * that fell out of the window, a MOVE's new address freed by age, a
	 * mapping (munmap always names its address), and stacks repeated. */
	for (int i = 0; i < 40; i++)
		s_alloc(s, MR_MALLOC, 0x600000000000 + 48 * (uint64_t)i, 40, ids.n[i / 10]);
	for (int i = 0; i < 20; i++)
		s_free(s, MR_FREE, 0x600000000000 + 48 * (uint64_t)i, 0);
	for (int i = 39; i >= 20; i -= 3)
		s_free(s, MR_FREE, 0x600000000000 + 48 * (uint64_t)i, 0);
	s_alloc(s, MR_MALLOC, 0x600000000000, 40, 0);
	s_free(s, MR_FREE, 0x600000000000, 0);
	s_move(s, MR_REALLOC, 0x600000000000 + 48 * 21, 0, 0x610000000000, 4000, ids.n[2]);
	/* grown in place and moved, by age, from the same stack */
	s_move(s, MR_REALLOC, 0x610000000000, 0, 0x610000000000, 8000, ids.n[2]);
	s_move(s, MR_REALLOC, 0x610000000000, 0, 0x610000100000, 9000, ids.n[2]);
	s_move(s, MR_REALLOCARRAY, 0x600000000000 + 48 * 23, 0, 0x620000000000, 16, ids.n[2]);
	s_free(s, MR_REALLOC, 0x610000100000, 0);
	s_alloc(s, MR_MMAP, 0x7f0000800000, 4096, ids.n[2]);
	s_free(s, MR_MUNMAP, 0x7f0000800000, 4096);
	s_alloc(s, MR_CALLOC, 0x620000000000, 1, ids.n[3]);
	for (int i = 1; i <= MR_AGE_WINDOW; i++)
		s_alloc(s, MR_MALLOC, 0x630000000000 + 16 * (uint64_t)i, 16, ids.n[3]);
	s_free(s, MR_FREE, 0x620000000000, 0);             /* age window + 1 */
	s_free(s, MR_FREE, 0x630000000000 + 16, 0);        /* age window */
	s_free(s, MR_FREE, 0x630000000000 + 32, 0);        /* age window - 1 */
	for (int i = MR_AGE_WINDOW; i > MR_AGE_WINDOW - 100; i--)
		s_free(s, MR_FREE, 0x630000000000 + 16 * (uint64_t)i, 0);

	/* version 3: blocks made again at addresses just released, by a FREE
	 * (the latest and the one before) and by a MOVE */
	s_alloc(s, MR_MALLOC, 0x640000000000, 100, ids.n[3]);
	s_alloc(s, MR_MALLOC, 0x640000000100, 100, ids.n[3]);
	s_free(s, MR_FREE, 0x640000000000, 0);
	s_free(s, MR_FREE, 0x640000000100, 0);
	s_alloc(s, MR_MALLOC, 0x640000000000, 90, ids.n[3]);
	s_alloc(s, MR_CALLOC, 0x640000000100, 90, ids.n[4]);
	s_move(s, MR_REALLOC, 0x640000000100, 0, 0x640000000200, 300, ids.n[4]);
	s_alloc(s, MR_MALLOC, 0x640000000100, 10, ids.n[4]);

	/* Enough ordinary events to fill a few more chunks. */
	for (int i = 0; i < 1200; i++) {
		uint64_t r = rng();
		uint64_t addr = 0x550000000000 + (r & 0x2affffffffff);
		if (r >> 62 == 0)
			addr &= ~(uint64_t)15;
		if (i % 97 == 0)
			s_switch(s, i & 1 ? ids.t2 : ids.t1);
		if (i % 3 == 2)
			s_free(s, MR_FREE, addr, 0);
		else
			s_alloc(s, MR_MALLOC + (int)(r % 3), addr, (r >> 20) % 100000,
				ids.n[(r >> 40) % 9]);
	}
	s_trailer(s, 123456789);
}

/* ---- reading ------------------------------------------------------------- */

static void write_file(const char *path, const uint8_t *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n) || close(fd) < 0) {
		perror(path);
		exit(2);
	}
}

/* Compares one decoded record with its expectation: with report set,
 * every differing field is a failed check; otherwise only the result. */
static int same_record(const struct mr_record *r, const struct expect *e, int report)
{
	int ok = 1;
#define FIELD(a, b) do { \
	if (report) \
		ok &= CHECK_EQ_U64(a, b); \
	else \
		ok &= (uint64_t)(a) == (uint64_t)(b); \
} while (0)
	FIELD(r->tag, e->tag);
	FIELD(r->allocator, e->allocator);
	FIELD(mr_record_offset(r), e->offset);
	FIELD(r->thread, e->thread);
	FIELD(r->addr, e->addr);
	FIELD(r->size, e->size);
	FIELD(r->stack, e->stack);
	/* the fields a record's tag does not use are unspecified */
	int event = (e->tag & 0xe0) == MR_TAG_ALLOC || (e->tag & 0xe0) == MR_TAG_FREE;
	if (!event) {
		FIELD(r->id, e->id);
		FIELD(r->frame, e->frame);
		FIELD(r->old_addr, e->old_addr);
		FIELD(r->old_size, e->old_size);
		FIELD(r->time_us, e->time_us);
		FIELD(r->rss, e->rss);
		FIELD(r->heap, e->heap);
	}
#undef FIELD
	return ok;
}

struct result {
	int rc;        /* mr_next's last status */
	size_t count;  /* records returned */
	int match;     /* every record returned matched its expectation */
	char err[512];
};

/* Reads path to the end, comparing records with exp in order. If check
 * is given it is called on the reader before it is freed. */
static struct result read_stream(const char *path, const struct expect *exp,
				 size_t nexp, int report,
				 void (*check)(struct mr_reader *r))
{
	struct result res = { 0, 0, 1, "" };
	struct mr_input *in = mr_input_open(path, res.err, sizeof(res.err));
	if (!in) {
		res.rc = -2;
		return res;
	}
	struct mr_reader r;
	struct mr_record rec;
	mr_reader_init(&r, in);
	while ((res.rc = mr_next(&r, &rec)) == 1) {
		if (res.count >= nexp)
			res.match = 0;
		else if (!same_record(&rec, &exp[res.count], report))
			res.match = 0;
		res.count++;
	}
	if (res.rc < 0)
		snprintf(res.err, sizeof(res.err), "%s", r.err);
	if (check)
		check(&r);
	mr_reader_free(&r);
	mr_input_close(in);
	return res;
}

static int starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The byte offset in "<what> at byte N: ...", or UINT64_MAX. */
static uint64_t err_offset(const char *err)
{
	const char *p = strstr(err, " at byte ");
	if (!p)
		return UINT64_MAX;
	return strtoull(p + 9, NULL, 10);
}

/* ---- the whole stream, read back ---------------------------------------- */

static struct script full;

static void check_tables(struct mr_reader *r)
{
	if (!CHECK_EQ_U64(r->nprocs, 1))
		return;
	struct mr_proc *p = r->procs[0];
	CHECK_EQ_U64(p->pid, 4242);
	CHECK(p->has_header);
	CHECK(p->has_trailer);

	const struct mr_header *h = &p->header;
	CHECK_EQ_U64(h->version, MR_FORMAT_VERSION);
	CHECK_EQ_STR(h->tool_version, test_header.tool_version);
	CHECK_EQ_U64(h->pid, test_header.pid);
	CHECK_EQ_U64(h->ppid, test_header.ppid);
	CHECK_EQ_U64(h->start_us, test_header.start_us);
	CHECK_EQ_U64(h->page_size, test_header.page_size);
	CHECK_EQ_U64(h->flags, test_header.flags);
	CHECK_EQ_U64(h->interval_us, test_header.interval_us);
	CHECK_EQ_STR(h->exe, test_header.exe);
	if (CHECK_EQ_U64(h->argc, test_header.argc)) {
		for (int i = 0; i < test_header.argc; i++)
			CHECK_EQ_STR(h->argv[i], test_argv[i]);
		CHECK(h->argv[h->argc] == NULL);
	}

	CHECK_EQ_U64(p->nstrings, 10);
	CHECK_EQ_STR(mr_string(p, ids.s_py2), "script.pyc");
	CHECK_EQ_STR(mr_string(p, ids.s_py2 + 2), "scr");
	CHECK_EQ_STR(mr_string(p, ids.s_py2 + 3), "mainly");
	CHECK_EQ_U64(strlen(mr_string(p, ids.s_long2)), LONG_LEN - 1);
	CHECK(memcmp(mr_string(p, ids.s_long2), long_string, LONG_LEN - 1) == 0);
	CHECK_EQ_STR(mr_string(p, ids.s_main), "main");
	CHECK_EQ_STR(mr_string(p, ids.s_empty), "");
	CHECK_EQ_U64(strlen(mr_string(p, ids.s_long)), LONG_LEN);
	CHECK(memcmp(mr_string(p, ids.s_long), long_string, LONG_LEN) == 0);
	CHECK_EQ_STR(mr_string(p, ids.s_libc), "/lib/x86_64-linux-gnu/libc.so.6");
	CHECK_EQ_STR(mr_string(p, ids.s_py), "script.py");
	CHECK_EQ_STR(mr_string(p, 0), "");
	CHECK_EQ_STR(mr_string(p, 99), "");

	if (CHECK_EQ_U64(p->nframes, 7)) {
		CHECK_EQ_U64(p->frames[ids.f6].line, 1);
		CHECK_EQ_U64(p->frames[ids.f4].function, ids.s_main);
		CHECK_EQ_U64(p->frames[ids.f4].line, 7);
		CHECK_EQ_U64(p->frames[ids.f5].function, ids.s_py);
		CHECK_EQ_U64(p->frames[ids.f5].file, ids.s_main);
		CHECK_EQ_U64(p->frames[ids.f5].line, 700000);
		CHECK_EQ_U64(p->frames[ids.f1].function, ids.s_main);
		CHECK_EQ_U64(p->frames[ids.f1].file, ids.s_py);
		CHECK_EQ_U64(p->frames[ids.f1].line, 42);
		CHECK_EQ_U64(p->frames[ids.f2].function, ids.s_empty);
		CHECK_EQ_U64(p->frames[ids.f2].line, UINT32_MAX);
		CHECK_EQ_U64(p->frames[ids.f3].function, 0);
		CHECK_EQ_U64(p->frames[ids.f3].file, 0);
		CHECK_EQ_U64(p->frames[ids.f3].line, 0);
	}

	static const struct { int parent, python; uint64_t value; } nodes[9] = {
		[1] = { 0, 0, 0x401000 }, [2] = { 1, 0, 0x400ff3 }, [3] = { 2, 1, 1 },
		[4] = { 3, 0, 0x7fffdeadbeef }, [5] = { 0, 0, UINT64_MAX },
		[6] = { 5, 1, 2 }, [7] = { 6, 0, 0 }, [8] = { 1, 0, 0x401000 },
	};
	if (CHECK_EQ_U64(p->nnodes, 14)) {
		for (int i = 1; i < 9; i++) {
			CHECK_EQ_U64(ids.n[i], i);
			CHECK_EQ_U64(p->nodes[i].parent, nodes[i].parent);
			CHECK_EQ_U64(p->nodes[i].python, nodes[i].python);
			CHECK_EQ_U64(p->nodes[i].value, nodes[i].value);
		}
		const struct { uint32_t id, parent, frame; } more[] = {
			{ ids.n9, ids.n[8], ids.f4 }, { ids.n10, ids.n[3], ids.f5 },
			{ ids.n11, ids.n10, ids.f1 }, { ids.n12, ids.n[6], ids.f1 },
			{ ids.n13, ids.n12, ids.f6 },
		};
		for (int i = 0; i < 5; i++) {
			CHECK_EQ_U64(more[i].id, 9 + i);
			CHECK_EQ_U64(p->nodes[more[i].id].parent, more[i].parent);
			CHECK_EQ_U64(p->nodes[more[i].id].python, 1);
			CHECK_EQ_U64(p->nodes[more[i].id].value, more[i].frame);
		}
	}

	if (CHECK_EQ_U64(p->nthreads, 3)) {
		CHECK_EQ_U64(p->threads[ids.t1].tid, 1001);
		CHECK_EQ_STR(p->threads[ids.t1].name, "");
		CHECK_EQ_U64(p->threads[ids.t2].tid, UINT64_MAX);
		CHECK_EQ_STR(p->threads[ids.t2].name, "worker-2");
	}

	if (CHECK_EQ_U64(p->nmodules, 4)) {
		const struct mr_module *m = &p->modules[ids.m1];
		CHECK_EQ_U64(m->path, ids.s_libc);
		CHECK_EQ_U64(m->base, 0x7f0000000000);
		CHECK_EQ_U64(m->build_id_len, 20);
		CHECK(memcmp(m->build_id, build_id, 20) == 0);
		CHECK_EQ_U64(m->nsegs, 3);
		for (int i = 0; i < 3; i++) {
			CHECK_EQ_U64(m->segs[i].vaddr, segs[i].vaddr);
			CHECK_EQ_U64(m->segs[i].size, segs[i].size);
			CHECK_EQ_U64(m->segs[i].prot, segs[i].prot);
		}
		CHECK(m->loaded);
		m = &p->modules[ids.m2];
		CHECK_EQ_U64(m->path, ids.s_py);
		CHECK_EQ_U64(m->base, 0);
		CHECK_EQ_U64(m->build_id_len, 0);
		CHECK_EQ_U64(m->nsegs, 0);
		CHECK(!m->loaded);
		m = &p->modules[ids.m3];
		CHECK_EQ_U64(m->base, UINT64_MAX - 4095);
		CHECK_EQ_U64(m->build_id_len, MR_BUILD_ID_MAX);
		CHECK(memcmp(m->build_id, build_id, MR_BUILD_ID_MAX) == 0);
		CHECK_EQ_U64(m->nsegs, MR_SEGMENTS_MAX);
		int same = 1;
		for (int i = 0; i < MR_SEGMENTS_MAX; i++)
			same &= m->segs[i].vaddr == segs[i].vaddr &&
				m->segs[i].size == segs[i].size &&
				m->segs[i].prot == segs[i].prot;
		CHECK(same);
		CHECK(m->loaded);
	}

	CHECK_EQ_U64(p->trailer.time_us, 123456789);
	CHECK_EQ_U64(p->trailer.n_records, full.w.n_records);
	CHECK_EQ_U64(p->trailer.n_allocs, full.w.n_allocs);
	CHECK_EQ_U64(p->trailer.n_frees, full.w.n_frees);
	CHECK_EQ_U64(p->trailer.bytes_allocated, full.w.bytes_allocated);
	CHECK_EQ_U64(p->n_records + 1, full.n); /* the trailer is not counted */
}

static void test_round_trip(void)
{
	write_file(tmpfile_path, full.out.p, full.out.len);
	struct result res = read_stream(tmpfile_path, full.exp, full.n, 1, check_tables);
	CHECK_EQ_U64(res.rc, 0);
	if (res.rc)
		printf("  error: %s\n", res.err);
	CHECK_EQ_U64(res.count, full.n);
	CHECK(res.match);
	/* The stream really does exercise chunk boundaries. */
	CHECK(full.out.len > 3 * MR_CHUNK_MAX);
	CHECK_EQ_U64(full.w.failed, 0);
}

static void test_gzip(void)
{
	gzFile gz = gzopen(tmpfile_path, "wb");
	CHECK(gz != NULL);
	if (!gz)
		return;
	CHECK_EQ_U64(gzwrite(gz, full.out.p, (unsigned)full.out.len), full.out.len);
	CHECK_EQ_U64(gzclose(gz), Z_OK);
	struct result res = read_stream(tmpfile_path, full.exp, full.n, 1, check_tables);
	CHECK_EQ_U64(res.rc, 0);
	if (res.rc)
		printf("  error: %s\n", res.err);
	CHECK_EQ_U64(res.count, full.n);
	CHECK(res.match);
}

/* Cuts the stream at every offset, inside chunk headers, magics and
 * payloads alike. The reader must return every record that ends before
 * the cut, then fail with "truncated at byte N" (N not past the cut) or,
 * for nothing at all, "empty input". */
static void test_truncation(void)
{
	size_t bad_status = 0, bad_msg = 0, bad_offset = 0, bad_records = 0;
	for (size_t cut = 0; cut < full.out.len; cut++) {
		write_file(tmpfile_path, full.out.p, cut);
		struct result res = read_stream(tmpfile_path, full.exp, full.n, 0, NULL);
		const char *want = cut ? "truncated at byte " : "empty input";
		uint64_t at = cut ? err_offset(res.err) : 0;
		size_t before_cut = 0;
		while (before_cut < full.n && full.exp[before_cut].end <= cut)
			before_cut++;

		if (res.rc != -1 && bad_status++ < 5)
			printf("  cut %zu: status %d, want -1\n", cut, res.rc);
		if (!starts_with(res.err, want) && bad_msg++ < 5)
			printf("  cut %zu: error \"%s\", want \"%s...\"\n", cut, res.err, want);
		if (at > cut && bad_offset++ < 5)
			printf("  cut %zu: error names byte %" PRIu64 "\n", cut, at);
		if ((!res.match || res.count != before_cut) && bad_records++ < 5)
			printf("  cut %zu (\"%s\"): %zu records%s, want %zu\n", cut, res.err,
			       res.count, res.match ? "" : " (some wrong)", before_cut);
	}
	CHECK_EQ_U64(bad_status, 0);
	CHECK_EQ_U64(bad_msg, 0);
	CHECK_EQ_U64(bad_offset, 0);
	CHECK_EQ_U64(bad_records, 0);
}

/* ---- damaged streams ------------------------------------------------------ */

/* Reads bytes from the temp file; checks the error's start and that the
 * records before the damage came back. */
static void expect_error(const uint8_t *p, size_t n, const char *const *prefixes,
			 size_t min_records, const char *what)
{
	write_file(tmpfile_path, p, n);
	struct result res = read_stream(tmpfile_path, full.exp, full.n, 0, NULL);
	int ok = 0;
	for (; *prefixes; prefixes++)
		ok |= starts_with(res.err, *prefixes);
	if (!CHECK_EQ_U64(res.rc, (uint64_t)-1) || !CHECK(ok))
		printf("  %s: status %d, error \"%s\"\n", what, res.rc, res.err);
	CHECK(res.count >= min_records);
}

static void test_corrupt_magic(void)
{
	static const char *const first[] = { "not a memray stream", "corrupt at byte", NULL };
	static const char *const later[] = { "corrupt at byte", NULL };
	uint8_t *copy = malloc(full.out.len);
	if (!copy)
		abort();
	for (size_t i = 0; i < MR_MAGIC_LEN; i++) {
		memcpy(copy, full.out.p, full.out.len);
		copy[i] ^= 0x20;
		expect_error(copy, full.out.len, first, 0, "magic of chunk 0");
	}
	/* The second chunk's magic: every record of the first is returned. */
	size_t records = 0;
	while (full.exp[records].end <= MR_CHUNK_MAX)
		records++;
	for (size_t i = 0; i < MR_MAGIC_LEN; i++) {
		memcpy(copy, full.out.p, full.out.len);
		copy[MR_CHUNK_MAX + i] ^= 0xff;
		expect_error(copy, full.out.len, later, records, "magic of chunk 1");
	}
	/* A chunk dropped from the middle. */
	memcpy(copy, full.out.p, MR_CHUNK_MAX);
	memcpy(copy + MR_CHUNK_MAX, full.out.p + 2 * MR_CHUNK_MAX,
	       full.out.len - 2 * MR_CHUNK_MAX);
	expect_error(copy, full.out.len - MR_CHUNK_MAX, later, records, "chunk lost");
	free(copy);
}

/* Wraps payload in one chunk of pid 7. */
static size_t chunk(uint8_t *out, const uint8_t *payload, size_t n)
{
	memcpy(out, MR_MAGIC, MR_MAGIC_LEN);
	out[4] = 7, out[5] = out[6] = out[7] = 0;
	out[8] = (uint8_t)n, out[9] = (uint8_t)(n >> 8);
	out[10] = out[11] = 0;
	memcpy(out + MR_CHUNK_HEADER, payload, n);
	return MR_CHUNK_HEADER + n;
}

/* A header whose tool_version claims `claim` bytes, followed by a few. */
static void huge_string(uint64_t claim, const char *want)
{
	uint8_t payload[64], file[MR_CHUNK_MAX];
	size_t n = 0;
	payload[n++] = MR_TAG_HEADER;
	n += varint_put(payload + n, MR_FORMAT_VERSION);
	n += varint_put(payload + n, claim);
	memcpy(payload + n, "abcdefgh", 8);
	n += 8;
	const char *const prefixes[] = { want, NULL };
	char what[64];
	snprintf(what, sizeof(what), "string of %" PRIu64 " bytes", claim);
	expect_error(file, chunk(file, payload, n), prefixes, 0, what);
}

static void test_huge_lengths(void)
{
	/* Over the limit: refused at once (an attempt to allocate 2^60
	 * bytes would abort the test in xrealloc). */
	huge_string(1ull << 60, "corrupt at byte 12");
	huge_string(UINT64_MAX, "corrupt at byte 12");
	huge_string((uint64_t)MR_STRING_MAX + 1, "corrupt at byte 12");
	/* Within the limit but not there: the record is incomplete. */
	huge_string(MR_STRING_MAX, "truncated at byte 12");

	/* An argument count past the limit. */
	uint8_t payload[64], file[MR_CHUNK_MAX];
	size_t n = 0;
	payload[n++] = MR_TAG_HEADER;
	n += varint_put(payload + n, MR_FORMAT_VERSION);
	n += varint_put(payload + n, 0);   /* tool_version */
	for (int i = 0; i < 6; i++)
		n += varint_put(payload + n, 1);
	n += varint_put(payload + n, 1ull << 40); /* argc */
	static const char *const corrupt[] = { "corrupt at byte 12", NULL };
	expect_error(file, chunk(file, payload, n), corrupt, 0, "argc of 2^40");
}

static void test_bad_stack_id(void)
{
	static const char *const corrupt[] = { "corrupt at byte", NULL };
	struct script s;
	script_init(&s, 7);
	s_header(&s, &test_header);
	s_alloc(&s, MR_MALLOC, 0x1000, 16, 1); /* no node exists yet */
	s_trailer(&s, 1);
	expect_error(s.out.p, s.out.len, corrupt, 1, "stack 1 with no nodes");
	script_free(&s);

	script_init(&s, 7);
	s_header(&s, &test_header);
	uint32_t n1 = s_native(&s, 0, 0x401000);
	s_alloc(&s, MR_MALLOC, 0x1000, 16, n1);
	size_t good = s.n;
	s_alloc(&s, MR_MALLOC, 0x2000, 16, n1 + 1);
	s_trailer(&s, 1);
	expect_error(s.out.p, s.out.len, corrupt, good, "stack past the last node");
	write_file(tmpfile_path, s.out.p, s.out.len);
	struct result res = read_stream(tmpfile_path, s.exp, s.n, 1, NULL);
	CHECK_EQ_U64(res.count, good);
	CHECK_EQ_U64(err_offset(res.err), s.exp[good].offset);
	script_free(&s);

	/* The same with many records buffered after the bad one, where the
	 * reader takes its unchecked fast path: the same error, same byte. */
	script_init(&s, 7);
	s_header(&s, &test_header);
	n1 = s_native(&s, 0, 0x401000);
	for (int i = 0; i < 100; i++)
		s_alloc(&s, MR_MALLOC, 0x1000 + 64 * (uint64_t)i, 16, n1);
	good = s.n;
	s_alloc(&s, MR_MALLOC, 0x9000, 16, n1 + 1);
	for (int i = 0; i < 100; i++)
		s_free(&s, MR_FREE, 0x1000 + 64 * (uint64_t)i, 0);
	s_trailer(&s, 1);
	write_file(tmpfile_path, s.out.p, s.out.len);
	res = read_stream(tmpfile_path, s.exp, s.n, 1, NULL);
	CHECK_EQ_U64(res.count, good);
	CHECK_EQ_U64(err_offset(res.err), s.exp[good].offset);
	CHECK(strstr(res.err, "stack id out of bounds") != NULL);
	script_free(&s);

	script_init(&s, 7);
	s_header(&s, &test_header);
	n1 = s_native(&s, 0, 0x401000);
	s_move(&s, MR_REALLOC, 0x1000, 0, 0x2000, 32, 1000);
	s_trailer(&s, 1);
	expect_error(s.out.p, s.out.len, corrupt, 2, "move with a stack past the last node");
	script_free(&s);
}


/* A payload's start for the record tests: a HEADER of the version with
 * native stacks and nothing else, then native node 1 (ip 0x10). Returns
 * its length. */
static size_t tiny_header(uint8_t *p, uint64_t version)
{
	size_t n = 0;
	p[n++] = MR_TAG_HEADER;
	n += varint_put(p + n, version);
	n += varint_put(p + n, 0); /* tool_version */
	for (int i = 0; i < 6; i++)
		n += varint_put(p + n, i == 4 ? MR_F_NATIVE : 1);
	n += varint_put(p + n, 0); /* argc */
	n += varint_put(p + n, 0); /* exe */
	p[n++] = MR_TAG_NODE_NATIVE;
	n += varint_put(p + n, 1);
	n += varint_put(p + n, 0x10);
	return n;
}

/* The compact forms cost what memray-stream(5) says: a FREE of the
 * oldest of a ring of blocks is one byte, an ALLOC from the last stack
 * has no stack field. A FREE_AGED whose age is out of bounds, a
 * munmap by age and compact forms in a version 1 image are corrupt. */
static void test_compact_forms(void)
{
	struct script s;
	script_init(&s, 7);
	s_header(&s, &test_header);
	uint32_t n1 = s_native(&s, 0, 0x401000);
	for (int i = 0; i < 64; i++)
		s_alloc(&s, MR_MALLOC, 0x1000 + 4096 * (uint64_t)i, 100, n1);
	uint64_t before = s.out.len + s.w.len;
	for (int i = 0; i < 10000; i++) {
		s_free(&s, MR_FREE, 0x1000 + 4096 * (uint64_t)(i % 64), 0);
		s_alloc(&s, MR_MALLOC, 0x1000 + 4096 * (uint64_t)(i % 64), 100, n1);
	}
	uint64_t bytes = s.out.len + s.w.len - before;
	/* FREE_AGAIN 1 byte; ALLOC_SAME tag, address (a 2-byte difference),
	 * size: 4 bytes; and a chunk header per 4084 bytes of payload */
	CHECK(bytes <= 10000 * 5 + 13 * MR_CHUNK_HEADER);
	if (bytes > 10000 * 5 + 13 * MR_CHUNK_HEADER)
		printf("  10,000 frees and allocations took %" PRIu64 " bytes\n", bytes);
	s_trailer(&s, 1);
	write_file(tmpfile_path, s.out.p, s.out.len);
	struct result res = read_stream(tmpfile_path, s.exp, s.n, 1, NULL);
	CHECK_EQ_U64(res.rc, 0);
	CHECK_EQ_U64(res.count, s.n);
	CHECK(res.match);
	script_free(&s);

	/* hand-made: a header, one node, two allocations, then the event */
	static const struct {
		uint64_t version;
		uint8_t tag;
		int64_t field; /* -1: none */
		const char *want;
	} cases[] = {
		/* the field is zigzag(age - 0) */
		{ 2, MR_TAG_FREE_AGED | MR_FREE, 2, NULL },   /* age 1 */
		{ 2, MR_TAG_FREE_AGED | MR_FREE, 4, NULL },   /* age 2 */
		{ 2, MR_TAG_FREE_AGED | MR_FREE, 6, "free by age out of bounds" }, /* 3 */
		{ 2, MR_TAG_FREE_AGED | MR_FREE, 0, "free by age out of bounds" }, /* 0 */
		{ 2, MR_TAG_FREE_AGED | MR_FREE, 1, "free by age out of bounds" }, /* -1 */
		{ 2, MR_TAG_FREE_AGAIN | MR_FREE, -1, "free by age out of bounds" }, /* 0 */
		{ 2, MR_TAG_FREE_AGED | MR_MUNMAP, 2, "munmap freed by age" },
		{ 2, MR_TAG_ALLOC_SAME | MR_MALLOC, 0x20, NULL },
		{ 2, 0x1f, 0x20, "unknown record tag" },
		{ 2, MR_TAG_MOVE_AGED | MR_REALLOC, 2, NULL },         /* age 2 */
		{ 2, MR_TAG_MOVE_AGED | MR_REALLOC, 3, "free by age out of bounds" },
		{ 2, MR_TAG_MOVE_AGED | MR_MREMAP, 1, "mremap moved by age" },
		{ 1, MR_TAG_FREE_AGED | MR_FREE, 2, "unknown record tag" },
		{ 1, MR_TAG_ALLOC_SAME | MR_MALLOC, 0x20, "unknown record tag" },
		{ 1, MR_TAG_MOVE_AGED | MR_REALLOC, 1, "unknown record tag" },
		/* version 3: free() by an age near the last one, in the tag
		 * (0x13 + 5 + dage for dage 1 to 7); a released address
		 * (k << 2 | 3) when none was released; version 3's tags in a
		 * version 2 image */
		{ 3, MR_TAG_FREE_NEAR + 6, -1, NULL },                         /* age 1 */
		{ 3, MR_TAG_FREE_NEAR + 7, -1, NULL },                         /* age 2 */
		{ 3, MR_TAG_FREE_NEAR + 8, -1, "free by age out of bounds" },  /* 3 */
		{ 3, MR_TAG_FREE_NEAR + 5, -1, "free by age out of bounds" },  /* -1 */
		{ 3, MR_TAG_ALLOC_SAME | MR_MALLOC, 7, "released address out of bounds" },
		{ 2, MR_TAG_ALLOC_SAME | MR_MALLOC, 7, "malformed address" },
		{ 2, MR_TAG_FREE_NEAR + 6, -1, "unknown record tag" },
		{ 2, MR_TAG_PYNODE_NEXT, 1, "unknown record tag" },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		uint8_t payload[128], file[MR_CHUNK_MAX];
		size_t n = 0;
		n += tiny_header(payload + n, cases[k].version);
		for (int i = 0; i < 2; i++) {
			payload[n++] = MR_TAG_ALLOC | MR_MALLOC;
			n += varint_put(payload + n, 0x20); /* +16 */
			n += varint_put(payload + n, 8);
			n += varint_put(payload + n, 1);
		}
		size_t good = n;
		payload[n++] = cases[k].tag;
		if (cases[k].field >= 0)
			n += varint_put(payload + n, (uint64_t)cases[k].field);
		if ((cases[k].tag & 0xe0) == MR_TAG_ALLOC_SAME)
			n += varint_put(payload + n, 8); /* size */
		if ((cases[k].tag & 0xe0) == MR_TAG_MOVE_AGED) {
			n += varint_put(payload + n, 0x20); /* the new address: +16 */
			n += varint_put(payload + n, 64);   /* size */
		}
		if (cases[k].tag == (MR_TAG_FREE_AGED | MR_MUNMAP))
			n += varint_put(payload + n, 4096);
		payload[n++] = MR_TAG_TRAILER;
		for (int i = 0; i < 5; i++)
			n += varint_put(payload + n, 0);
		write_file(tmpfile_path, file, chunk(file, payload, n));
		struct result r = read_stream(tmpfile_path, NULL, 0, 0, NULL);
		if (!cases[k].want) {
			if (!CHECK(r.rc == 0 || strstr(r.err, "trailer")))
				printf("  case %zu: %s\n", k, r.err);
			CHECK_EQ_U64(r.count, 5); /* header, node, 2 allocs, the event */
		} else {
			char at[64];
			snprintf(at, sizeof(at), "corrupt at byte %zu", MR_CHUNK_HEADER + good);
			if (!CHECK(starts_with(r.err, at) && strstr(r.err, cases[k].want)))
				printf("  case %zu: error \"%s\", want \"%s: ...%s\"\n", k, r.err, at,
				       cases[k].want);
			CHECK_EQ_U64(r.count, 4);
		}
	}
}

/* A size no address space holds (past 2^57 bytes) is damage at its
 * record, not a block counted: a damaged varint there had made a 192 PiB
 * peak. 2^57 itself is a size. */
static void test_size_past_any_address_space(void)
{
	const uint64_t sizes[] = { (uint64_t)1 << 57, ((uint64_t)1 << 57) + 1, UINT64_MAX };
	for (size_t k = 0; k < 3; k++) {
		for (int munmap = 0; munmap < 2; munmap++) {
			uint8_t payload[128], file[MR_CHUNK_MAX];
			size_t n = 0;
			n += tiny_header(payload + n, 3);
			size_t good = n;
			if (munmap) {
				payload[n++] = MR_TAG_FREE | MR_MUNMAP;
				n += varint_put(payload + n, 0x20); /* +16 */
				n += varint_put(payload + n, sizes[k]);
			} else {
				payload[n++] = MR_TAG_ALLOC | MR_MALLOC;
				n += varint_put(payload + n, 0x20); /* +16 */
				n += varint_put(payload + n, sizes[k]);
				n += varint_put(payload + n, 1);
			}
			payload[n++] = MR_TAG_TRAILER;
			for (int i = 0; i < 5; i++)
				n += varint_put(payload + n, 0);
			write_file(tmpfile_path, file, chunk(file, payload, n));
			struct result r = read_stream(tmpfile_path, NULL, 0, 0, NULL);
			if (k == 0) {
				CHECK(!strstr(r.err, "address space"));
				CHECK_EQ_U64(r.count, 3); /* header, node, the event */
			} else {
				char at[64];
				snprintf(at, sizeof(at), "corrupt at byte %zu", MR_CHUNK_HEADER + good);
				if (!CHECK(starts_with(r.err, at) &&
					   strstr(r.err, "a size larger than any address space")))
					printf("  size %" PRIu64 ": error \"%s\"\n", sizes[k], r.err);
				CHECK_EQ_U64(r.count, 2);
			}
		}
	}
}

/* Version 3's STRING_PREFIX may name one of the latest 64 strings and keep
 * at most 64 of its first bytes, none of them NUL: a record makes no
 * string much longer than itself (a 6-byte record keeping a megabyte
 * string's every byte, again and again, filled gigabytes). */
static void test_string_prefix_bounds(void)
{
	static const struct {
		uint64_t back, keep;
		const char *want;
	} cases[] = {
		{ 1, 64, NULL }, { 2, 3, NULL }, { 1, 65, "string prefix out of bounds" },
		{ 3, 1, "string prefix out of bounds" }, /* string 0 */
		{ 0, 1, "string prefix out of bounds" },
		{ 1, 1000000, "string prefix out of bounds" },
		{ 2, 5, "string prefix out of bounds" }, /* past its length */
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		uint8_t payload[512], file[MR_CHUNK_MAX];
		size_t n = 0;
		payload[n++] = MR_TAG_HEADER;
		n += varint_put(payload + n, 3);
		n += varint_put(payload + n, 0); /* tool_version */
		for (int i = 0; i < 6; i++)
			n += varint_put(payload + n, 1);
		n += varint_put(payload + n, 0); /* argc */
		n += varint_put(payload + n, 0); /* exe */
		payload[n++] = MR_TAG_STRING; /* string 1: "abc" */
		n += varint_put(payload + n, 3);
		memcpy(payload + n, "abc", 3), n += 3;
		payload[n++] = MR_TAG_STRING; /* string 2: 100 x 'a' */
		n += varint_put(payload + n, 100);
		memset(payload + n, 'a', 100), n += 100;
		size_t good = n;
		payload[n++] = MR_TAG_STRING_PREFIX;
		n += varint_put(payload + n, cases[k].back);
		n += varint_put(payload + n, cases[k].keep);
		n += varint_put(payload + n, 1);
		payload[n++] = 'z';
		payload[n++] = MR_TAG_TRAILER;
		for (int i = 0; i < 5; i++)
			n += varint_put(payload + n, 0);
		write_file(tmpfile_path, file, chunk(file, payload, n));
		char err[256];
		struct mr_input *in = mr_input_open(tmpfile_path, err, sizeof(err));
		if (!CHECK(in != NULL))
			continue;
		struct mr_reader r;
		struct mr_record rec;
		mr_reader_init(&r, in);
		int rc;
		size_t count = 0;
		while ((rc = mr_next(&r, &rec)) == 1)
			count++;
		if (!cases[k].want) {
			CHECK_EQ_U64(count, 4); /* header, two strings, the prefixed one */
			if (CHECK(r.nprocs == 1 && r.procs[0]->nstrings == 4))
				CHECK_EQ_U64(strlen(mr_string(r.procs[0], 3)), cases[k].keep + 1);
		} else {
			char at[64];
			snprintf(at, sizeof(at), "corrupt at byte %zu", MR_CHUNK_HEADER + good);
			if (!CHECK(starts_with(r.err, at) && strstr(r.err, cases[k].want)))
				printf("  prefix case %zu: error \"%s\"\n", k, r.err);
			CHECK_EQ_U64(count, 3);
		}
		mr_reader_free(&r);
		mr_input_close(in);
	}
}

/* Joins runs of full chunks of one pid with consecutive numbers, at most
 * `most` at a time, as memray-record does; returns the new length. */
static size_t join_chunks(const uint8_t *in, size_t n, uint8_t *out, unsigned most)
{
	size_t i = 0, o = 0, head = 0;
	unsigned k = 0;
	uint32_t pid = 0;
	uint16_t seq = 0;
	while (i < n) {
		uint32_t p = (uint32_t)in[i + 4] | (uint32_t)in[i + 5] << 8 |
			     (uint32_t)in[i + 6] << 16 | (uint32_t)in[i + 7] << 24;
		size_t len = in[i + 8] | in[i + 9] << 8;
		uint16_t q = (uint16_t)(in[i + 10] | in[i + 11] << 8);
		int whole = len == MR_PAYLOAD_MAX;
		if (k && (!whole || p != pid || q != (uint16_t)(seq + k) || k == most))
			k = 0;
		if (whole && k) {
			memcpy(out + o, in + i + MR_CHUNK_HEADER, len);
			o += len;
			k++;
			size_t total = (size_t)k * MR_PAYLOAD_MAX;
			out[head + 8] = (uint8_t)total, out[head + 9] = (uint8_t)(total >> 8);
		} else {
			memcpy(out + o, in + i, MR_CHUNK_HEADER + len);
			if (whole) {
				head = o;
				pid = p, seq = q, k = 1;
			}
			o += MR_CHUNK_HEADER + len;
		}
		i += MR_CHUNK_HEADER + len;
	}
	return o;
}

/* Chunks joined as memray-record joins them read as before; a length
 * that is not a whole number of full chunks, or a sequence number that
 * does not count a joined chunk as many, is corrupt. */
static void test_joined_chunks(void)
{
	uint8_t *j = malloc(full.out.len);
	if (!j)
		abort();
	size_t n = join_chunks(full.out.p, full.out.len, j, MR_JOIN_MAX);
	CHECK(n < full.out.len - 2 * MR_CHUNK_HEADER); /* some were joined */
	write_file(tmpfile_path, j, n);
	/* every record as before but its offset */
	char err[256];
	struct mr_input *in = mr_input_open(tmpfile_path, err, sizeof(err));
	CHECK(in != NULL);
	if (in) {
		struct mr_reader r;
		struct mr_record rec;
		mr_reader_init(&r, in);
		size_t count = 0, bad = 0;
		int rc;
		while ((rc = mr_next(&r, &rec)) == 1) {
			struct expect e = full.exp[count < full.n ? count : 0];
			e.offset = mr_record_offset(&rec);
			bad += count >= full.n || !same_record(&rec, &e, 0);
			count++;
		}
		CHECK_EQ_U64(rc, 0);
		CHECK_EQ_U64(count, full.n);
		CHECK_EQ_U64(bad, 0);
		mr_reader_free(&r);
		mr_input_close(in);
	}
	/* two at a time, three at a time: the same */
	for (unsigned most = 2; most <= 3; most++) {
		size_t m = join_chunks(full.out.p, full.out.len, j, most);
		write_file(tmpfile_path, j, m);
		struct result res = read_stream(tmpfile_path, full.exp, full.n, 0, NULL);
		CHECK_EQ_U64(res.rc, 0);
		CHECK_EQ_U64(res.count, full.n);
	}
	/* damage: a joined chunk one byte longer; its number counted as one */
	n = join_chunks(full.out.p, full.out.len, j, MR_JOIN_MAX);
	size_t at = 0;
	while (at < n && (size_t)(j[at + 8] | j[at + 9] << 8) <= MR_PAYLOAD_MAX)
		at += MR_CHUNK_HEADER + (size_t)(j[at + 8] | j[at + 9] << 8);
	CHECK(at < n);
	if (at < n) {
		size_t len = (size_t)(j[at + 8] | j[at + 9] << 8), next = at + MR_CHUNK_HEADER + len;
		j[at + 8]++;
		write_file(tmpfile_path, j, n);
		struct result res = read_stream(tmpfile_path, NULL, 0, 0, NULL);
		CHECK(strstr(res.err, "out of bounds") != NULL);
		CHECK_EQ_U64(err_offset(res.err), at);
		j[at + 8]--;
		if (next < n) {
			uint16_t q = (uint16_t)(j[at + 10] | j[at + 11] << 8);
			q++;
			j[next + 10] = (uint8_t)q, j[next + 11] = (uint8_t)(q >> 8);
			write_file(tmpfile_path, j, n);
			res = read_stream(tmpfile_path, NULL, 0, 0, NULL);
			CHECK(strstr(res.err, "chunks were lost") != NULL);
			CHECK_EQ_U64(err_offset(res.err), next);
		}
	}
	free(j);
}

/* The example in memray-stream(5)'s EXAMPLES, byte for byte: the bytes
 * of its second literal block (the leading pairs of hex digits of each
 * line) are what the writer makes of the records the first one lists. */
static void test_man_example(void)
{
	FILE *f = fopen("man/memray-stream.5", "r");
	if (!CHECK(f != NULL)) {
		printf("  run from the top of the tree: man/memray-stream.5 not found\n");
		return;
	}
	char line[256];
	uint8_t want[512];
	size_t nwant = 0;
	int section = 0, blocks = 0, in_block = 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, ".Sh ", 4))
			section = !strncmp(line, ".Sh EXAMPLES", 12);
		else if (section && !strncmp(line, ".Bd -literal", 12))
			in_block = ++blocks == 2;
		else if (!strncmp(line, ".Ed", 3))
			in_block = 0;
		else if (in_block && strspn(line, " ") < 8) {
			/* (deeper lines carry on a description) */
			const char *p = line;
			unsigned v;
			int used;
			while (sscanf(p, " %2x%n", &v, &used) == 1 && used >= 2 &&
			       (p[used] == ' ' || p[used] == '\n') && nwant < sizeof(want)) {
				/* a pair of hex digits standing alone */
				const char *q = p;
				while (*q == ' ')
					q++;
				if (q + 2 != p + used)
					break;
				want[nwant++] = (uint8_t)v;
				p += used;
			}
		}
	}
	fclose(f);

	struct script s;
	script_init(&s, 4242);
	char *argv[] = { "./demo", NULL };
	struct mr_header_info h = { .tool_version = "0.1.0", .pid = 4242, .ppid = 4241,
				    .start_us = 1700000000000000ull, .page_size = 4096,
				    .flags = MR_F_NATIVE, .interval_us = 10000, .argc = 1,
				    .argv = argv, .exe = "/tmp/demo" };
	mr_w_header(&s.w, &h);
	uint32_t t = mr_w_thread(&s.w, 4242, "demo");
	mr_w_switch(&s.w, t);
	uint32_t n1 = mr_w_node_native(&s.w, 0, 0x555555555123);
	uint32_t n2 = mr_w_node_native(&s.w, n1, 0x555555555180);
	mr_w_alloc(&s.w, MR_MALLOC, 0x5555555592a0, 984, n2);
	mr_w_alloc(&s.w, MR_CALLOC, 0x5555555592b3, 10, n1);
	mr_w_move(&s.w, MR_REALLOC, 0x5555555592a0, 0, 0x55555555a000, 4000, n2);
	mr_w_free(&s.w, MR_FREE, 0x55555555a000, 0);
	mr_w_memory(&s.w, 10100, 1691648, 16);
	mr_w_trailer(&s.w, 10150);
	mr_w_flush(&s.w);
	CHECK_EQ_U64(nwant, 127);
	CHECK_EQ_U64(s.out.len, nwant);
	size_t k = 0;
	while (k < nwant && k < s.out.len && s.out.p[k] == want[k])
		k++;
	if (!CHECK_EQ_U64(k, nwant))
		printf("  the man page's example differs from the writer's at byte %zu\n", k);
	script_free(&s);
}

/* Two processes sharing one stream, their chunks interleaved. */
static void test_two_pids(void)
{
	struct script a, b;
	script_init(&a, 100);
	script_init(&b, 200);
	s_header(&a, &test_header);
	s_header(&b, &test_header);
	for (int i = 0; i < 2000; i++) {
		s_alloc(&a, MR_MALLOC, 0x1000 + 16 * (uint64_t)i, (uint64_t)i, 0);
		s_free(&b, MR_FREE, 0x9000 - 16 * (uint64_t)i, 0);
		if (i % 500 == 0) {
			mr_w_flush(&a.w);
			mr_w_flush(&b.w);
		}
	}
	s_trailer(&a, 5);
	s_trailer(&b, 6);
	/* Interleave chunk by chunk: a0 b0 a1 b1 ... */
	struct membuf both = { 0 };
	size_t ia = 0, ib = 0;
	while (ia < a.out.len || ib < b.out.len) {
		for (struct script *s = &a; s; s = s == &a ? &b : NULL) {
			size_t *i = s == &a ? &ia : &ib;
			if (*i >= s->out.len)
				continue;
			size_t len = MR_CHUNK_HEADER + (s->out.p[*i + 8] | s->out.p[*i + 9] << 8);
			mem_append(&both, s->out.p + *i, len);
			*i += len;
		}
	}
	write_file(tmpfile_path, both.p, both.len);
	char err[256];
	struct mr_input *in = mr_input_open(tmpfile_path, err, sizeof(err));
	struct mr_reader r;
	struct mr_record rec;
	size_t na = 0, nb = 0, wrong = 0;
	int rc;
	mr_reader_init(&r, in);
	while ((rc = mr_next(&r, &rec)) == 1) {
		if (rec.proc->pid == 100) {
			if (na >= a.n || rec.tag != a.exp[na].tag || rec.addr != a.exp[na].addr ||
			    rec.size != a.exp[na].size)
				wrong++;
			na++;
		} else if (rec.proc->pid == 200) {
			if (nb >= b.n || rec.tag != b.exp[nb].tag || rec.addr != b.exp[nb].addr)
				wrong++;
			nb++;
		} else {
			wrong++;
		}
	}
	CHECK_EQ_U64(rc, 0);
	if (rc)
		printf("  error: %s\n", r.err);
	CHECK_EQ_U64(r.nprocs, 2);
	CHECK_EQ_U64(na, a.n);
	CHECK_EQ_U64(nb, b.n);
	CHECK_EQ_U64(wrong, 0);
	mr_reader_free(&r);
	mr_input_close(in);
	free(both.p);
	script_free(&a);
	script_free(&b);
}

/* Address deltas the writer must carry across the whole 64-bit range:
 * unaligned jumps of 2^62 and more, both ways. */
static void test_extreme_addresses(void)
{
	static const uint64_t addrs[] = {
		0x10, 0x4000000000000011, 0x11, 0x8000000000000001, 0x1,
		0xffffffffffffffff, 0x7fffffffffffffff, 0x3, 0xc000000000000005, 0x0,
	};
	size_t n = sizeof(addrs) / sizeof(addrs[0]);
	struct script s;
	script_init(&s, 7);
	s_header(&s, &test_header);
	for (size_t i = 0; i < n; i++)
		s_alloc(&s, MR_MALLOC, addrs[i], 1, 0);
	s_trailer(&s, 1);
	write_file(tmpfile_path, s.out.p, s.out.len);

	char err[256];
	struct mr_input *in = mr_input_open(tmpfile_path, err, sizeof(err));
	struct mr_reader r;
	struct mr_record rec;
	size_t i = 0, wrong = 0;
	int rc;
	mr_reader_init(&r, in);
	while ((rc = mr_next(&r, &rec)) == 1) {
		if (rec.tag != (MR_TAG_ALLOC | MR_MALLOC))
			continue;
		if (i < n && rec.addr != addrs[i])
			wrong++;
		if (i < n)
			CHECK_EQ_U64(rec.addr, addrs[i]);
		i++;
	}
	CHECK_EQ_U64(rc, 0);
	CHECK_EQ_U64(i, n);
	CHECK_EQ_U64(wrong, 0);
	mr_reader_free(&r);
	mr_input_close(in);
	script_free(&s);
}

/* Reads the n bytes at data to the end: the status, and how many
 * processes and records the reader saw. */
static int read_all(const uint8_t *data, size_t n, size_t *nprocs, size_t *nrecords,
		    char *err, size_t errlen, char *warn, size_t warnlen)
{
	struct mr_input *in = mr_input_open_memory(data, n, "mem");
	struct mr_reader r;
	struct mr_record rec;
	int rc;
	mr_reader_init(&r, in);
	*nrecords = 0;
	while ((rc = mr_next(&r, &rec)) == 1)
		++*nrecords;
	*nprocs = r.nprocs;
	snprintf(err, errlen, "%s", r.err);
	snprintf(warn, warnlen, "%s", r.warn);
	mr_reader_free(&r);
	mr_input_close(in);
	return rc;
}

/* A pid used again after its process ended (a followed program's
 * children in a busy system, pid namespaces): two processes, no error. */
static void test_pid_reused(void)
{
	struct script a, b;
	script_init(&a, 7);
	script_init(&b, 7);
	s_header(&a, &test_header);
	s_alloc(&a, MR_MALLOC, 0x1000, 16, 0);
	s_trailer(&a, 1);
	s_header(&b, &test_header);
	s_alloc(&b, MR_MALLOC, 0x2000, 32, 0);
	s_trailer(&b, 2);
	struct membuf both = { 0 };
	mem_append(&both, a.out.p, a.out.len);
	mem_append(&both, b.out.p, b.out.len);
	size_t np, nr;
	char err[512], warn[512];
	int rc = read_all(both.p, both.len, &np, &nr, err, sizeof(err), warn, sizeof(warn));
	CHECK_EQ_U64(rc, 0);
	CHECK_EQ_U64(np, 2);
	CHECK_EQ_U64(nr, a.n + b.n);
	free(both.p);
	script_free(&a);
	script_free(&b);
}

/* The first process ended properly and a child left no trailer (killed):
 * a warning. But a chunk cut short at the end is a cut stream, an error,
 * wherever the cut falls in it, even between two records. */
static void test_child_without_trailer(void)
{
	struct script a, b;
	script_init(&a, 100);
	script_init(&b, 200);
	s_header(&a, &test_header);
	s_header(&b, &test_header);
	for (int i = 0; i < 300; i++)
		s_alloc(&b, MR_MALLOC, 0x1000 + 64 * (uint64_t)i, 16, 0);
	mr_w_flush(&b.w);
	s_trailer(&a, 5);
	struct membuf both = { 0 };
	mem_append(&both, a.out.p, a.out.len);
	mem_append(&both, b.out.p, b.out.len);
	size_t np, nr;
	char err[512], warn[512];
	int rc = read_all(both.p, both.len, &np, &nr, err, sizeof(err), warn, sizeof(warn));
	CHECK_EQ_U64(rc, 0);
	CHECK(strstr(warn, "pid 200 has no trailer") != NULL);
	/* every cut inside b's last chunk */
	size_t last = a.out.len, off = a.out.len;
	while (off < both.len) {
		last = off;
		off += MR_CHUNK_HEADER + (both.p[off + 8] | both.p[off + 9] << 8);
	}
	size_t bad = 0;
	for (size_t cut = last + 1; cut < both.len; cut++) {
		rc = read_all(both.p, cut, &np, &nr, err, sizeof(err), warn, sizeof(warn));
		if (rc != -1 || !strstr(err, "truncated at byte"))
			bad++;
	}
	CHECK_EQ_U64(bad, 0);
	free(both.p);
	script_free(&a);
	script_free(&b);
}

/* A child whose stream stops at a chunk's end inside a record (SIGKILL)
 * while the first process ended properly: a warning, every whole record
 * read; the first process's doing so is still an error. */
static void test_child_killed_inside_record(void)
{
	struct script a, b;
	script_init(&a, 100);
	script_init(&b, 200);
	s_header(&a, &test_header);
	s_header(&b, &test_header);
	mr_w_flush(&b.w);
	size_t whole = b.out.len; /* b's header, in chunks of its own */
	/* allocations until one is split between two chunks */
	for (int i = 0; i < 3000 && b.out.len == whole; i++)
		s_alloc(&b, MR_MALLOC, 0x1000 + 4096 * (uint64_t)i, 100000 + (uint64_t)i, 0);
	CHECK(b.out.len > whole); /* a full chunk went out, ending inside a record */
	s_trailer(&a, 5);
	struct membuf both = { 0 };
	mem_append(&both, a.out.p, a.out.len);
	mem_append(&both, b.out.p, b.out.len);
	size_t np, nr;
	char err[512], warn[512];
	int rc = read_all(both.p, both.len, &np, &nr, err, sizeof(err), warn, sizeof(warn));
	CHECK_EQ_U64(rc, 0);
	CHECK(strstr(warn, "pid 200 ended inside a record") != NULL);
	/* the same with the roles swapped: the first process cut is an error */
	struct membuf swapped = { 0 };
	mem_append(&swapped, b.out.p, b.out.len);
	mem_append(&swapped, a.out.p, a.out.len);
	rc = read_all(swapped.p, swapped.len, &np, &nr, err, sizeof(err), warn, sizeof(warn));
	CHECK_EQ_U64((uint64_t)rc, (uint64_t)-1);
	CHECK(strstr(err, "pid 200's last record is incomplete") != NULL);
	free(both.p);
	free(swapped.p);
	script_free(&a);
	script_free(&b);
}

/* A pid whose stream starts over at chunk 0 without its end (an exec the
 * tracker did not see): the earlier stream stops there, said once, and
 * the new one and every other process are read whole. */
static void test_pid_restarted(void)
{
	struct script a, b, b2;
	script_init(&a, 100);
	script_init(&b, 200);
	script_init(&b2, 200);
	s_header(&a, &test_header);
	s_header(&b, &test_header);
	for (int i = 0; i < 10; i++)
		s_alloc(&b, MR_MALLOC, 0x1000 + 64 * (uint64_t)i, 16, 0);
	mr_w_flush(&b.w);
	s_alloc(&b, MR_MALLOC, 0x9000, 16, 0); /* never written: lost */
	s_header(&b2, &test_header);
	s_alloc(&b2, MR_CALLOC, 0x5000, 32, 0);
	s_trailer(&b2, 5);
	s_trailer(&a, 5);
	struct membuf all = { 0 };
	mem_append(&all, b.out.p, b.out.len);
	mem_append(&all, b2.out.p, b2.out.len);
	mem_append(&all, a.out.p, a.out.len);
	size_t np, nr;
	char err[512], warn[512];
	int rc = read_all(all.p, all.len, &np, &nr, err, sizeof(err), warn, sizeof(warn));
	CHECK_EQ_U64(rc, 0);
	CHECK_EQ_U64(np, 3);
	CHECK(strstr(warn, "pid 200's records stop at byte") != NULL);
	free(all.p);
	script_free(&a);
	script_free(&b);
	script_free(&b2);
}

/* The writer says when a chunk it flushes ends inside a record (mid):
 * memray-record's rescue may go on from a chunk only when it ends between
 * records with every record before its end counted. */
struct flush_log {
	struct script *s;
	size_t n;
	struct { uint64_t end, records; int mid; } at[64];
};

static int log_sink(void *ctx, const uint8_t *chunk, size_t len)
{
	struct flush_log *l = ctx;
	mem_append(&l->s->out, chunk, len);
	if (l->n < sizeof(l->at) / sizeof(l->at[0])) {
		l->at[l->n].end = l->s->out.len;
		l->at[l->n].records = l->s->w.n_records;
		l->at[l->n].mid = l->s->w.mid;
		l->n++;
	}
	return 0;
}

static void test_flush_mid(void)
{
	struct script s;
	struct flush_log l = { &s, 0, { { 0, 0, 0 } } };
	script_init(&s, 77);
	s.w.sink = log_sink;
	s.w.ctx = &l;
	s_header(&s, &test_header);
	uint32_t n1 = s_native(&s, 0, 0x401000);
	mr_w_flush(&s.w); /* between records */
	uint64_t r = 1;
	for (int i = 0; i < 6000; i++) {
		r = r * 6364136223846793005ull + 1442695040888963407ull;
		if (i % 500 == 7)
			s_string(&s, long_string, 100 + (size_t)(r >> 54)); /* spans chunks */
		else
			s_alloc(&s, MR_MALLOC, (r >> 16) & ~(uint64_t)15, (r >> 40) % 5000, n1);
	}
	mr_w_flush(&s.w);
	s_trailer(&s, 9);
	size_t mids = 0, betweens = 0;
	for (size_t i = 0; i < l.n; i++) {
		/* the records that end by the chunk's end, and one that spans it */
		uint64_t ended = 0;
		int spans = 0;
		for (size_t k = 0; k < s.n; k++) {
			ended += s.exp[k].end <= l.at[i].end;
			spans |= s.exp[k].offset < l.at[i].end && s.exp[k].end > l.at[i].end;
		}
		if (l.at[i].mid) {
			mids++;
			continue;
		}
		betweens++;
		CHECK(!spans);
		CHECK_EQ_U64(l.at[i].records, ended);
	}
	if (!CHECK(mids > 5 && betweens >= 2)) /* both kinds were seen */
		printf("  %zu chunks ended inside a record, %zu between records\n", mids, betweens);
	CHECK(l.n > 0 && l.at[l.n - 1].mid); /* the trailer's chunk: nothing goes on from it */
	script_free(&s);
}

/* The FREE records of s by their form, from their first bytes in the
 * file (the reader's tags are the forms' event tags). */
static size_t frees_plain, frees_aged;

static void tally_frees(const struct script *s)
{
	frees_plain = frees_aged = 0;
	for (size_t k = 0; k < s->n; k++) {
		if ((s->exp[k].tag & 0xe0) != MR_TAG_FREE)
			continue;
		uint8_t t = s->out.p[s->exp[k].offset];
		if ((t & 0xe0) == MR_TAG_FREE)
			frees_plain++;
		else if ((t & 0xe0) == MR_TAG_FREE_AGED || (t & 0xe0) == MR_TAG_FREE_AGAIN ||
			 (t >= MR_TAG_FREE_NEAR && t <= 0x1f))
			frees_aged++;
	}
}

/* The writer names a freed block by its age when it is one of the latest
 * MR_AGE_WINDOW allocations, in a table as busy as a Python program's
 * objects keep it (a two-way table cannot promise it for every pattern):
 * each round makes and frees 8 blocks that
 * die young at addresses used again and again, and keeps one of 1000
 * blocks that live a thousand rounds (9000 allocations: in the window).
 * A table slot that forgot nothing would lose long-lived blocks to the
 * short-lived ones' reallocations (one free in twenty of objects.py's). */
static void test_frees_by_age_in_a_busy_table(void)
{
	struct script s;
	script_init(&s, 88);
	s_header(&s, &test_header);
	uint32_t n1 = s_native(&s, 0, 0x401000);
	uint64_t keep[1000] = { 0 }, next = 0x7f0000000000ull, r = 7;
	size_t long_frees = 0;
	for (int round = 0; round < 20000; round++) {
		for (int k = 0; k < 8; k++) {
			r = r * 6364136223846793005ull + 1442695040888963407ull;
			/* 4096 addresses of short-lived blocks, reused */
			uint64_t a = 0x10000000ull + ((r >> 33) & 4095) * 48;
			s_alloc(&s, MR_MALLOC, a, 40, n1);
			s_free(&s, MR_FREE, a, 0);
		}
		uint64_t *slot = &keep[round % 1000];
		if (*slot) {
			s_free(&s, MR_FREE, *slot, 0);
			long_frees++;
		}
		*slot = next;
		next += 64;
		s_alloc(&s, MR_MALLOC, *slot, 56, n1);
	}
	s_trailer(&s, 9);
	write_file(tmpfile_path, s.out.p, s.out.len);
	struct result res = read_stream(tmpfile_path, s.exp, s.n, 1, NULL);
	CHECK(res.rc == 0 && res.match && res.count == s.n);
	tally_frees(&s);
	CHECK_EQ_U64(frees_plain + frees_aged, 20000 * 8 + long_frees);
	if (!CHECK(frees_plain == 0))
		printf("  %zu of %zu frees named by address\n", frees_plain, frees_plain + frees_aged);
	script_free(&s);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(tmpfile_path, sizeof(tmpfile_path), "%s/stream", tmpdir);

	write_full_stream(&full);
	test_round_trip();
	test_gzip();
	test_truncation();
	test_corrupt_magic();
	test_huge_lengths();
	test_bad_stack_id();
	test_compact_forms();
	test_size_past_any_address_space();
	test_string_prefix_bounds();
	test_joined_chunks();
	test_man_example();
	test_two_pids();
	test_pid_reused();
	test_child_without_trailer();
	test_child_killed_inside_record();
	test_pid_restarted();
	test_extreme_addresses();
	test_flush_mid();
	test_frees_by_age_in_a_busy_table();

	script_free(&full);
	unlink(tmpfile_path);
	rmdir(tmpdir);
	return unit_done();
}
