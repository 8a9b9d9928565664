/*
 * stream.h - the memray stream: constants, writer and reader.
 *
 * The byte-level specification is man/memray-stream.5; this header is its
 * C mirror. A stream is a sequence of chunks, each at most MR_CHUNK_MAX
 * bytes (PIPE_BUF, so a write of one chunk is atomic on a pipe) and tagged
 * with the pid that wrote it. The payloads of one pid's chunks, joined,
 * form that process's record stream: a HEADER record, then any records,
 * then a TRAILER. Records may span chunks.
 */
#ifndef MEMRAY_STREAM_H
#define MEMRAY_STREAM_H

#include <stddef.h>
#include <stdint.h>

#define MR_MAGIC "MRYC"
#define MR_MAGIC_LEN 4
#define MR_FORMAT_VERSION 3
#define MR_AGE_WINDOW 16384/* a FREE may name one of this many latest allocations */
#define MR_AGE_BITS 16
#define MR_AGE_SLOTS (1u << MR_AGE_BITS) /* the writer's table of their addresses */
#define MR_FREED_WINDOW 16 /* an address may name one of this many latest released ones */
#define MR_FREED_SLOTS 64  /* the writer's table of them */
#define MR_STR_RECENT 64   /* a string may begin as one of this many latest ones */
#define MR_STR_HEAD 64     /* and with this many of its first bytes at most */
#define MR_CHUNK_HEADER 12
#define MR_CHUNK_MAX 4096
#define MR_PAYLOAD_MAX (MR_CHUNK_MAX - MR_CHUNK_HEADER)
#define MR_JOIN_MAX 16 /* a chunk of k * MR_PAYLOAD_MAX bytes, k <= this,
			* counts as k chunks (memray-record joins them) */
#define MR_STRING_MAX (1u << 20) /* longest string a reader accepts */
#define MR_BUILD_ID_MAX 64
#define MR_SEGMENTS_MAX 64
#define MR_SAMPLE_MAX (1ull << 30) /* largest mean sampling gap, bytes */

/* Version 3: where an allocation of this size would put the block after
 * its own, as glibc's malloc lays blocks out on 64-bit systems (a 16-byte
 * multiple with 8 bytes of header, at least 32): the address register
 * after an ALLOC, so that blocks carved one after another cost a byte. */
static inline uint64_t mr_span(uint64_t size)
{
	uint64_t s = (size + 23) & ~(uint64_t)15;
	return s < 32 ? 32 : s;
}

/* Record tags: the first byte of every record. */
enum mr_tag {
	MR_TAG_HEADER = 0x01,
	MR_TAG_STRING = 0x02,
	MR_TAG_PYFRAME = 0x03,
	MR_TAG_NODE_NATIVE = 0x04,
	MR_TAG_NODE_PYTHON = 0x05,
	MR_TAG_THREAD = 0x06,
	MR_TAG_THREAD_NAME = 0x07,
	MR_TAG_THREAD_SWITCH = 0x08,
	MR_TAG_MODULE_LOAD = 0x09,
	MR_TAG_MODULE_UNLOAD = 0x0a,
	MR_TAG_MEMORY = 0x0b,
	MR_TAG_TRAILER = 0x0c,
	MR_TAG_EXEC = 0x0d,
	MR_TAG_SIGNAL = 0x0e,
	/* Version 3's compact forms; a reader hands them on as STRING,
	 * NODE_PYTHON (with its frame) and FREE. */
	MR_TAG_STRING_PREFIX = 0x0f,   /* a string that begins as an earlier one */
	MR_TAG_PYNODE_NEW = 0x10,      /* NODE_PYTHON and its new frame in one */
	MR_TAG_PYNODE_NEXT = 0x11,     /* NODE_PYTHON under the node just before */
	MR_TAG_PYNODE_NEXT_NEW = 0x12, /* both */
	MR_TAG_FREE_NEAR = 0x13,       /* to 0x1f: a free() by its age, the
					* age's change in the tag */
	MR_TAG_FREE_NEAR_END = 0x20,
	MR_TAG_ALLOC = 0x20, /* | allocator */
	MR_TAG_FREE = 0x40,  /* | allocator */
	MR_TAG_MOVE = 0x60,  /* | allocator */
	/* Version 2's compact forms; a reader hands them on as ALLOC and FREE. */
	MR_TAG_ALLOC_SAME = 0x80, /* | allocator: the last stack again */
	MR_TAG_FREE_AGED = 0xa0,  /* | allocator: the block by its age */
	MR_TAG_FREE_AGAIN = 0xc0, /* | allocator: the same age as last time */
	MR_TAG_MOVE_AGED = 0xe0,  /* | allocator: the old block by its age,
				   * the last stack again */
};

/* The function that made an event. */
enum mr_allocator {
	MR_MALLOC = 1,
	MR_CALLOC,
	MR_REALLOC,
	MR_REALLOCARRAY,
	MR_POSIX_MEMALIGN,
	MR_ALIGNED_ALLOC,
	MR_MEMALIGN,
	MR_VALLOC,
	MR_PVALLOC,
	MR_MMAP,
	MR_MREMAP,
	MR_FREE,
	MR_MUNMAP,
	MR_ALLOCATOR_END
};

/* Header flags: what was recorded. */
enum {
	MR_F_NATIVE = 1 << 0,         /* native stacks (instruction pointers) */
	MR_F_PYTHON = 1 << 1,         /* Python stacks */
	MR_F_PYMALLOC = 1 << 2,       /* pymalloc hid small Python objects */
	MR_F_PYTHON_ALLOCS = 1 << 3,  /* every Python object allocation traced */
	MR_F_FOLLOW_FORK = 1 << 4,    /* children record into the same stream */
	MR_F_ATTACHED = 1 << 5,       /* started in a running program: earlier
				       * blocks are not in the stream */
	MR_F_SAMPLED = 1 << 6,        /* heap allocations sampled by bytes: the
				       * header carries the mean gap (see
				       * lib/sample.h) */
	MR_F_PYINFO = 1 << 7,         /* the program is a Python: the header
				       * carries its version and, when its
				       * frames were not read, why */
};

const char *mr_allocator_name(int allocator);
const char *mr_tag_name(int tag);

/* ---- writer ------------------------------------------------------------ */

/* Called with a whole chunk (header and payload); returns 0 or -1. */
typedef int (*mr_sink)(void *ctx, const uint8_t *chunk, size_t len);

/*
 * Encodes records into chunks. Not thread-safe: the tracker holds its lock
 * around every call. Never allocates: the chunk lives inside the struct.
 * Ids (strings, frames, nodes, threads, modules) are handed out in order
 * from 1; 0 means "none".
 */
struct mr_writer {
	uint8_t *chunk; /* own_chunk, unless the user put it elsewhere */
	size_t len; /* bytes used in chunk, header included */
	mr_sink sink;
	void *ctx;
	int failed; /* the sink failed once: everything after is dropped */
	uint32_t pid;
	uint16_t seq;
	uint64_t last_addr, last_ip;
	uint32_t next_string, next_frame, next_node, next_thread, next_module;
	uint32_t cur_thread;
	/* the chunk being flushed ends where a copy of the stream must not
	 * go on from: in the middle of a record, or after the stream's end
	 * or an exec (the tracker's sink tells its rescue area) */
	int mid;
	uint64_t last_time_us;
	uint64_t n_records, n_allocs, n_frees, bytes_allocated;
	/* The compact forms: the stack of the last ALLOC or MOVE, the age of
	 * the last FREE by age, the addresses of the latest MR_AGE_WINDOW
	 * allocations by number (n_allocs), and a direct-mapped table from
	 * an address's hash to the number of its latest allocation. */
	uint32_t last_stack, last_age;
	uint64_t ring[MR_AGE_WINDOW];
	uint32_t age_slot[MR_AGE_SLOTS];
	/* Version 3: the number of addresses released so far (FREE records,
	 * MOVE's old address) and a direct-mapped table of the latest ones
	 * with their numbers; a frame written only with the node that comes
	 * next (pend_frame its id, 0 for none); the latest strings' first
	 * bytes (str_len[i] of them), string id next_string - 1 - i in slot
	 * (next_string - 1 - i) % MR_STR_RECENT; and what MEMORY records are
	 * encoded against. */
	uint64_t n_released;
	uint64_t freed_addr[MR_FREED_SLOTS], freed_no[MR_FREED_SLOTS];
	uint32_t pend_frame, pend_function, pend_file, pend_line;
	uint8_t str_head[MR_STR_RECENT][MR_STR_HEAD];
	uint8_t str_len[MR_STR_RECENT];
	uint64_t interval_us, page_size;
	/* version 3's allocation register: where the next allocation is
	 * expected (mr_span after the last one); the last heap written */
	uint64_t alloc_addr, last_heap;
	uint8_t own_chunk[MR_CHUNK_MAX];
};

/* The rescue area: memory the tracker of the process memray-record
 * started shares with it (a memfd, MEMRAY_RESCUE), holding a copy of the
 * chunks not yet written and of the open chunk. At each release of the
 * stream's lock, and before a chunk that ends between records goes to
 * the pipe, the tracker copies in what was added since, up to the last
 * whole record, with the counts so far. A program that ends without exit
 * (Go calls exit_group itself) or is killed leaves them there, and
 * memray-record sends them on with the stream's end.
 *
 * The process may end at any instruction, so the area is always whole as
 * last committed: its state (lengths, counts) is kept twice (st), and a
 * commit writes the other one, then switches cur to it. A commit never
 * changes a byte the current state names: the open chunk is copied into
 * one of two buffers (a new chunk into the other one), bytes are only
 * added past the ends the current state names (the word holding the
 * chunk's end is written again with the same bytes), and a batch let go
 * (written) is first dropped from the state before it is overwritten.
 * busy says the area is not whole: from a write that gave the pipe
 * records the area does not have (sink.c's rescue_behind), or from a
 * fresh start, until the next commit. (A copy, not the writer's own
 * buffers: a child made without the fork handlers shares the area, and
 * must never touch the stream its parent writes.) */
#define MR_RESCUE_MAGIC 0x3555435345524d52ull /* "MRRESCU5" */
#define MR_RESCUE_BATCH (64 * 1024)
struct mr_rescue_state {
	uint32_t batch_len; /* whole chunks gathered and not yet written */
	uint32_t chunk_len; /* the open chunk up to its last whole record, header included */
	uint16_t seq;       /* the open chunk's sequence number */
	uint16_t which;     /* and the buffer (chunk[]) that holds it */
	uint32_t batch_gen; /* the tracker's count of batches written, when copied */
	uint64_t n_records, n_allocs, n_frees, bytes_allocated, time_us;
	/* where the events in the rings go on from (rings 0: the rings hold
	 * none of this state's): the number of the first one not written,
	 * and the writer's registers they are encoded against */
	uint64_t next_event, last_addr;
	uint32_t last_age, cur_thread, rings, next_node;
	uint64_t alloc_addr;
};

/* An event a thread numbered and put in its ring without the tracker's
 * lock (lib/tracker/order.c), until the lock's holder writes the rings
 * out in the numbers' order. kind: MR_OREC_*; a void one holds a number
 * and no event. */
enum { MR_OREC_VOID, MR_OREC_ALLOC, MR_OREC_FREE };
struct mr_orec {
	uint64_t seq;
	uint64_t addr, size, heap;
	uint32_t stack, thread;
	uint8_t kind, allocator;
};
#define MR_ORING 256 /* events a ring holds */
struct mr_oring {
	/* the thread's own: where it puts its next event (index tail %
	 * MR_ORING; every event below tail is whole); head as it last read it */
	uint32_t tail, head_seen;
	uint8_t pad0[56];
	/* the lock holder's: the next event whose slot may be written again
	 * (moved on only once the area has what came before); tail as it
	 * last read it; the next event to write; whether it is on the list of
	 * rings to give slots back */
	uint32_t head, seen, taken, listed;
	uint8_t pad1[48];
	struct mr_orec e[MR_ORING];
};
/* Rings in the rescue area: the first threads' (more threads use rings of
 * their own memory, which a program ending without exit loses). */
#define MR_RESCUE_RINGS 32
struct mr_rescue {
	uint64_t magic;
	uint32_t pid;       /* whose records these are; 0: none */
	uint32_t busy;      /* not whole (see above) */
	uint32_t ended;     /* the stream's end was written */
	uint32_t cur;       /* st[cur & 1] is the state committed last */
	struct mr_rescue_state st[2];
	uint8_t batch[MR_RESCUE_BATCH];
	uint8_t chunk[2][MR_CHUNK_MAX];
	struct mr_oring ring[MR_RESCUE_RINGS];
};

struct mr_segment {
	uint64_t vaddr; /* relative to the module's load base */
	uint64_t size;
	uint32_t prot;  /* PF_R | PF_W | PF_X as in the ELF program header */
};

struct mr_header_info {
	const char *tool_version;
	uint32_t pid, ppid;
	uint64_t start_us;   /* microseconds since the epoch */
	uint64_t page_size;
	uint64_t flags;      /* MR_F_* */
	uint64_t interval_us;
	int argc;
	char *const *argv;
	const char *exe;
	uint64_t sample_bytes; /* with MR_F_SAMPLED: the mean gap in bytes */
	const char *python_version; /* with MR_F_PYINFO: "3.14.10" */
	const char *python_problem; /* with MR_F_PYINFO: why Python stacks
				     * are missing, or a note; "" if none */
};

void mr_writer_init(struct mr_writer *w, uint32_t pid, mr_sink sink, void *ctx);
int mr_w_flush(struct mr_writer *w);
void mr_w_header(struct mr_writer *w, const struct mr_header_info *h);
uint32_t mr_w_string(struct mr_writer *w, const char *s, size_t n);
uint32_t mr_w_pyframe(struct mr_writer *w, uint32_t function, uint32_t file,
		      uint32_t line);
uint32_t mr_w_node_native(struct mr_writer *w, uint32_t parent, uint64_t ip);
uint32_t mr_w_node_python(struct mr_writer *w, uint32_t parent, uint32_t frame);
uint32_t mr_w_thread(struct mr_writer *w, uint64_t tid, const char *name);
void mr_w_thread_name(struct mr_writer *w, uint32_t thread, const char *name);
void mr_w_switch(struct mr_writer *w, uint32_t thread);
uint32_t mr_w_module_load(struct mr_writer *w, uint32_t path, uint64_t base,
			  const uint8_t *build_id, size_t build_id_len,
			  const struct mr_segment *segs, size_t nsegs);
void mr_w_module_unload(struct mr_writer *w, uint32_t module);
void mr_w_memory(struct mr_writer *w, uint64_t time_us, uint64_t rss, uint64_t heap);
/* Writes out the frame mr_w_pyframe left pending: any other call does, but
 * mr_w_node_python with that frame writes the two as one record. */
void mr_w_pend_out(struct mr_writer *w);
void mr_w_alloc(struct mr_writer *w, int allocator, uint64_t addr, uint64_t size,
		uint32_t stack);
void mr_w_free(struct mr_writer *w, int allocator, uint64_t addr, uint64_t len);
void mr_w_move(struct mr_writer *w, int allocator, uint64_t old_addr,
	       uint64_t old_len, uint64_t addr, uint64_t size, uint32_t stack);
void mr_w_trailer(struct mr_writer *w, uint64_t time_us);
/* The process is about to exec: the counts so far, like a trailer. If a
 * HEADER follows, it starts the new program image of the same pid; any
 * other record means the exec failed and this image goes on. */
/* The process is ending by signal sig, whose default action it is to end
 * it: written just before the TRAILER. */
void mr_w_signal(struct mr_writer *w, int sig);
void mr_w_exec(struct mr_writer *w, uint64_t time_us);

/* ---- reader ------------------------------------------------------------ */

struct mr_input;

struct mr_header {
	uint64_t version;
	char *tool_version;
	uint32_t pid, ppid;
	uint64_t start_us, page_size, flags, interval_us;
	uint32_t argc;
	char **argv;
	char *exe;
	uint64_t sample_bytes; /* with MR_F_SAMPLED, else 0 */
	char *python_version, *python_problem; /* with MR_F_PYINFO, else NULL */
};

struct mr_node {
	uint32_t parent;
	uint8_t python; /* 0: value is an instruction pointer; 1: a pyframe id */
	uint64_t value;
};

struct mr_pyframe {
	uint32_t function, file, line;
};

struct mr_thread {
	uint64_t tid;
	char *name;
};

struct mr_module {
	uint32_t path;
	uint64_t base;
	uint8_t build_id[MR_BUILD_ID_MAX];
	uint32_t build_id_len;
	uint32_t nsegs;
	struct mr_segment segs[MR_SEGMENTS_MAX];
	int loaded;
};

struct mr_trailer {
	uint64_t time_us, n_records, n_allocs, n_frees, bytes_allocated;
};

/* Everything known about one process of the stream; its tables grow as
 * records arrive and stay valid until mr_reader_free. */
struct mr_proc {
	uint32_t pid;
	int has_header, has_trailer;
	int exec_pending; /* an EXEC record was the last one read */
	int end_signal; /* the signal a SIGNAL record says it ended by, or 0 */
	/* its records stop where a new stream of the same pid began (chunk 0
	 * again, without this one's end): an exec the tracker did not see */
	int superseded;
	struct mr_header header;
	struct mr_trailer trailer;
	/* Tables indexed by id; index 0 is unused ("none"). */
	char **strings; size_t nstrings, strings_cap;
	struct mr_pyframe *frames; size_t nframes, frames_cap;
	struct mr_node *nodes; size_t nnodes, nodes_cap;
	struct mr_thread *threads; size_t nthreads, threads_cap;
	struct mr_module *modules; size_t nmodules, modules_cap;
	uint32_t cur_thread;
	uint64_t last_addr, last_ip, last_time_us;
	uint64_t n_records, n_allocs, n_frees, bytes_allocated;
	/* version 2's compact events: the last ALLOC or MOVE's stack, the
	 * last FREE_AGED's age, the addresses of the latest MR_AGE_WINDOW
	 * allocations by number (n_allocs), made at the first allocation */
	uint32_t last_stack, last_age;
	uint64_t *ring;
	/* version 3: the latest MR_FREED_WINDOW released addresses, by their
	 * number modulo the window (n_released of them so far) */
	uint64_t released[MR_FREED_WINDOW];
	uint64_t n_released;
	/* version 3's allocation register and the last MEMORY's heap */
	uint64_t last_alloc_addr, last_heap;
	/* reassembly of this pid's payload */
	uint8_t *buf; size_t buf_start, buf_end, buf_cap;
	uint64_t consumed; /* payload bytes decoded so far */
	struct mr_span { uint64_t pos, file_off, len; } *spans;
	size_t nspans, spans_cap;
	uint16_t next_seq;
};

/* One decoded record. Pointers inside stay valid until the next call.
 * Fields its tag does not use have unspecified values. */
struct mr_record {
	int tag;        /* the raw tag byte */
	int allocator;  /* for ALLOC, FREE and MOVE */
	uint64_t pos;   /* where it starts in its process's payload: see
	                 * mr_record_offset */
	struct mr_proc *proc;
	uint32_t thread; /* for events: the thread they belong to */
	uint32_t id;     /* STRING, PYFRAME, NODE_*, THREAD*, MODULE_*: the id */
	uint64_t addr, size, old_addr, old_size; /* events; size is length */
	uint32_t stack;
	uint64_t time_us, rss, heap; /* MEMORY; time_us also TRAILER and EXEC */
	uint32_t frame; /* NODE_PYTHON: the frame id it defined too (version
			 * 3's PYNODE_NEW forms), else 0 */
};

struct mr_reader {
	struct mr_input *in;
	struct mr_proc **procs; size_t nprocs;
	struct mr_proc *cur;
	uint64_t offset; /* bytes read from the input */
	int eof;
	uint64_t cut; /* 1 + where a chunk cut short by the end of the input began, or 0 */
	char err[512];
	char warn[512]; /* set at a clean end when a child of a followed
			 * program left no trailer */
};

void mr_reader_init(struct mr_reader *r, struct mr_input *in);
void mr_reader_free(struct mr_reader *r);
/* Returns 1 with a record, 0 at a clean end of the stream, -1 on damage
 * with r->err saying what and where ("truncated at byte N: ..."). Records
 * before the damage have all been returned. */
int mr_next(struct mr_reader *r, struct mr_record *rec);

const char *mr_string(const struct mr_proc *p, uint32_t id);
/* The input byte offset where rec starts; valid until the next mr_next. */
uint64_t mr_record_offset(const struct mr_record *rec);

#endif
