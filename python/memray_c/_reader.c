/*
 * _reader.c - memray_c._reader: a memray stream read from Python through
 * the tools' own lib/ reader (lib/stream.h, lib/input.h), with lib/replay
 * for the high-water mark, the leaks and the timeline and lib/symbolize for
 * native frames. memray_c/reader.py is the API built on it.
 *
 * Limited API only (Py_LIMITED_API 0x03090000): one abi3 build serves
 * CPython 3.9 on. Never exits the process: the lib/ functions called here
 * exit only when memory runs out (xrealloc), as the tools do.
 *
 * Objects:
 *   Stream  one pass over an input. Iterating it yields AllocationRecords
 *           (and, when asked, memory snapshots); drain() reads the rest
 *           into its replay. Owns the lib/ reader, whose tables (strings,
 *           frames, stacks, threads) records point into: a record keeps
 *           its Stream alive.
 *   AllocationRecord  one allocation event (alloc, free, realloc), or one
 *           site of the replay (kind "peak" or "leak"): plain C fields read
 *           by member descriptors; stacks computed only when asked, and
 *           cached by the Stream per (process, stack).
 */
#define Py_LIMITED_API 0x03090000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collapse.h"
#include "input.h"
#include "replay.h"
#include "stream.h"
#include "symbolize.h"
#include "util.h"

/* ---- module state ------------------------------------------------------- */

/* The module is loaded once per process (abi3 single-phase init): its
 * types and constants live in statics. */
static PyObject *StreamType, *RecordType, *ReaderError;
static PyObject *kind_names[6];               /* by enum kind */
static PyObject *allocator_names[MR_ALLOCATOR_END];

enum kind { K_ALLOC, K_FREE, K_REALLOC, K_PEAK, K_LEAK, K_END };
static const char *const kind_text[K_END] = { "alloc", "free", "realloc", "peak", "leak" };

enum want { WANT_ALLOCS = 1, WANT_MEMORY = 2 };
enum stack_mode { MODE_PYTHON, MODE_NATIVE, MODE_HYBRID };

typedef struct {
	PyObject_HEAD
	struct mr_input *in;
	struct mr_reader rd;
	struct replay *replay;  /* NULL unless asked for */
	struct symbolizer *sym; /* made when a native frame is first asked for */
	PyObject *name;         /* the input's name, for messages */
	PyObject *stacks;       /* {(proc, stack, mode): tuple of frames} */
	PyObject *snapshot;     /* called (pid, time_us, rss, heap) for a snapshot */
	int want;               /* enum want */
	long pid;               /* only this process's events, or -1 */
	int done;               /* the end was reached (cleanly or not) */
	int busy;               /* drain() runs without the GIL */
	uint64_t nrecords;      /* records read, of every kind */
} Stream;

typedef struct {
	PyObject_HEAD
	Stream *stream; /* owns proc's tables */
	struct mr_proc *proc;
	uint32_t stack, thread; /* thread: the stream's thread index, 0 none */
	unsigned char kind, allocator;
	unsigned long long address, size, old_address, old_size, time_us, n_allocations;
} Record;

static int check_usable(Stream *s);

/* ---- text --------------------------------------------------------------- */

/* Stream text is bytes: decoded as UTF-8, any other byte kept as a lone
 * surrogate (as os.fsdecode does), so nothing fails and nothing is lost. */
static PyObject *text(const char *s, size_t n)
{
	return PyUnicode_DecodeUTF8(s ? s : "", s ? (Py_ssize_t)n : 0, "surrogateescape");
}

static PyObject *ctext(const char *s)
{
	return text(s, s ? strlen(s) : 0);
}

/* Raises ReaderError("NAME: message") with .offset the byte the message
 * names (0 if none). */
static void raise_damage(PyObject *name, const char *msg)
{
	unsigned long long offset = 0;
	const char *at = strstr(msg, " at byte ");
	if (at)
		offset = strtoull(at + 9, NULL, 10);
	PyObject *m = PyUnicode_FromFormat("%U: %s", name, msg);
	if (!m)
		return;
	PyObject *e = PyObject_CallFunctionObjArgs(ReaderError, m, NULL);
	Py_DECREF(m);
	if (!e)
		return;
	PyObject *o = PyLong_FromUnsignedLongLong(offset);
	if (o && PyObject_SetAttrString(e, "offset", o) == 0)
		PyErr_SetObject(ReaderError, e);
	Py_XDECREF(o);
	Py_DECREF(e);
}

/* ---- records -------------------------------------------------------------- */

/* Records freed are kept for the next ones: a loop over records frees
 * one as it gets the next, and the allocator's round trip would be half
 * of what a record costs. The GIL guards the list. */
#define FREE_RECORDS 64
static Record *free_records[FREE_RECORDS];
static int nfree_records;

static Record *record_new(Stream *s, struct mr_proc *p, uint32_t stack, uint32_t thread, int kind)
{
	Record *r = nfree_records ? free_records[--nfree_records] : PyObject_Malloc(sizeof(Record));
	if (!r)
		return (Record *)PyErr_NoMemory();
	PyObject_Init((PyObject *)r, (PyTypeObject *)RecordType);
	Py_INCREF(s);
	r->stream = s;
	r->proc = p;
	r->stack = stack;
	r->thread = thread;
	r->kind = (unsigned char)kind;
	r->allocator = 0;
	r->address = r->size = r->old_address = r->old_size = 0;
	r->time_us = p->last_time_us;
	r->n_allocations = 1;
	return r;
}

static PyObject *record_of_event(Stream *s, const struct mr_record *rec)
{
	int k = (rec->tag & 0xe0) == MR_TAG_ALLOC ? K_ALLOC
		: (rec->tag & 0xe0) == MR_TAG_FREE ? K_FREE : K_REALLOC;
	Record *r = record_new(s, rec->proc, k == K_FREE ? 0 : rec->stack, rec->thread, k);
	if (!r)
		return NULL;
	r->allocator = (unsigned char)rec->allocator;
	r->address = rec->addr;
	r->size = rec->size;
	r->old_address = rec->old_addr;
	r->old_size = rec->old_size;
	return (PyObject *)r;
}

static void record_dealloc(PyObject *self)
{
	Record *r = (Record *)self;
	PyTypeObject *t = Py_TYPE(self);
	Py_DECREF(r->stream);
	if (nfree_records < FREE_RECORDS)
		free_records[nfree_records++] = r;
	else
		PyObject_Free(self);
	Py_DECREF(t);
}

static PyObject *record_kind(PyObject *self, void *closure)
{
	PyObject *k = kind_names[((Record *)self)->kind];
	Py_INCREF(k);
	return k;
}

static PyObject *record_allocator(PyObject *self, void *closure)
{
	int a = ((Record *)self)->allocator;
	PyObject *o = a > 0 && a < MR_ALLOCATOR_END ? allocator_names[a] : Py_None;
	Py_INCREF(o);
	return o;
}

/* pid and tid are the process's and the thread's, which never change */
static PyObject *record_pid(PyObject *self, void *closure)
{
	return PyLong_FromUnsignedLong(((Record *)self)->proc->pid);
}

static unsigned long long record_tid_of(const Record *r)
{
	return r->thread && r->thread < r->proc->nthreads ? r->proc->threads[r->thread].tid : 0;
}

static PyObject *record_tid(PyObject *self, void *closure)
{
	return PyLong_FromUnsignedLongLong(record_tid_of((Record *)self));
}

static PyObject *record_thread_name(PyObject *self, void *closure)
{
	Record *r = (Record *)self;
	/* the reader's tables may be growing in another thread (drain) */
	if (check_usable(r->stream) < 0)
		return NULL;
	if (!r->thread || r->thread >= r->proc->nthreads || !r->proc->threads[r->thread].name)
		Py_RETURN_NONE;
	return ctext(r->proc->threads[r->thread].name);
}

/* ---- stacks --------------------------------------------------------------- */

struct frames {
	PyObject *list;
	int mode;
	int failed;
};

static const char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

static void add_frame(void *ctx, const struct frame_info *f)
{
	struct frames *c = ctx;
	if (c->failed || f->kind == FRAME_LABEL)
		return;
	if ((f->kind == FRAME_PYTHON) != (c->mode == MODE_PYTHON) && c->mode != MODE_HYBRID)
		return;
	PyObject *fn = text(f->name, f->name_len), *file;
	if (f->kind == FRAME_NATIVE && !f->file_len)
		file = ctext(f->module[0] ? base_name(f->module) : "");
	else
		file = text(f->file, f->file_len);
	PyObject *t = fn && file ? Py_BuildValue("(OOI)", fn, file, (unsigned)f->line) : NULL;
	Py_XDECREF(fn);
	Py_XDECREF(file);
	if (!t || PyList_Append(c->list, t) < 0)
		c->failed = 1;
	Py_XDECREF(t);
}

/* The frames of the record's stack, innermost first, as a tuple of
 * (function, file, line); cached by the stream. */
static PyObject *stack_of(Record *r, int mode)
{
	Stream *s = r->stream;
	if (check_usable(s) < 0)
		return NULL;
	if (!r->stack)
		return PyTuple_New(0);
	PyObject *key = Py_BuildValue("(nIi)", (Py_ssize_t)(uintptr_t)r->proc, r->stack, mode);
	if (!key)
		return NULL;
	PyObject *hit = PyDict_GetItem(s->stacks, key); /* borrowed */
	if (hit) {
		Py_DECREF(key);
		Py_INCREF(hit);
		return hit;
	}
	if (mode != MODE_PYTHON && !s->sym)
		s->sym = sym_new();
	struct collapse_opts o = { METRIC_TOTAL, mode == MODE_PYTHON ? FRAMES_PYTHON : FRAMES_NATIVE,
				   0, 0, mode == MODE_NATIVE };
	struct site site;
	memset(&site, 0, sizeof(site));
	site.proc = r->proc;
	site.stack = r->stack;
	struct frames c = { PyList_New(0), mode, 0 };
	if (!c.list) {
		Py_DECREF(key);
		return NULL;
	}
	collapse_visit(NULL, s->sym, &o, &site, add_frame, &c);
	PyObject *out = NULL;
	if (!c.failed && PyList_Reverse(c.list) == 0)
		out = PyList_AsTuple(c.list);
	Py_DECREF(c.list);
	if (out && PyDict_SetItem(s->stacks, key, out) < 0)
		Py_CLEAR(out);
	Py_DECREF(key);
	return out;
}

static PyObject *record_stack(PyObject *self, PyObject *unused)
{
	return stack_of((Record *)self, MODE_PYTHON);
}

static PyObject *record_native_stack(PyObject *self, PyObject *unused)
{
	return stack_of((Record *)self, MODE_NATIVE);
}

static PyObject *record_hybrid_stack(PyObject *self, PyObject *unused)
{
	return stack_of((Record *)self, MODE_HYBRID);
}

/* memray's stack_trace(max_stacks=None): a list, the innermost frames
 * up to max_stacks. */
static PyObject *trace(PyObject *self, PyObject *args, PyObject *kw, int mode)
{
	static char *names[] = { "max_stacks", NULL };
	PyObject *max = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", names, &max))
		return NULL;
	PyObject *t = stack_of((Record *)self, mode);
	if (!t)
		return NULL;
	Py_ssize_t n = PyTuple_Size(t);
	if (max != Py_None) {
		Py_ssize_t k = PyLong_AsSsize_t(max);
		if (k == -1 && PyErr_Occurred()) {
			Py_DECREF(t);
			return NULL;
		}
		if (k >= 0 && k < n)
			n = k;
	}
	PyObject *out = PyTuple_GetSlice(t, 0, n), *list = NULL;
	if (out)
		list = PySequence_List(out);
	Py_XDECREF(out);
	Py_DECREF(t);
	return list;
}

static PyObject *record_stack_trace(PyObject *self, PyObject *args, PyObject *kw)
{
	return trace(self, args, kw, MODE_PYTHON);
}

static PyObject *record_native_stack_trace(PyObject *self, PyObject *args, PyObject *kw)
{
	return trace(self, args, kw, MODE_NATIVE);
}

static PyObject *record_hybrid_stack_trace(PyObject *self, PyObject *args, PyObject *kw)
{
	return trace(self, args, kw, MODE_HYBRID);
}

static PyObject *record_repr(PyObject *self)
{
	Record *r = (Record *)self;
	char buf[256];
	const char *a = r->allocator ? mr_allocator_name(r->allocator) : NULL;
	if (r->kind >= K_PEAK)
		snprintf(buf, sizeof(buf), "<AllocationRecord %s pid=%u tid=%llu size=%llu "
			 "n_allocations=%llu stack_id=%u>", kind_text[r->kind], r->proc->pid, record_tid_of(r),
			 r->size, r->n_allocations, r->stack);
	else
		snprintf(buf, sizeof(buf), "<AllocationRecord %s %s pid=%u tid=%llu address=0x%llx "
			 "size=%llu stack_id=%u>", kind_text[r->kind], a ? a : "?", r->proc->pid, record_tid_of(r),
			 r->address, r->size, r->stack);
	return PyUnicode_FromString(buf);
}

/* Records compare by value (a site's kind, place, bytes and count; an
 * event's fields), so that two reads of one file give equal lists. */
static PyObject *record_richcompare(PyObject *a, PyObject *b, int op)
{
	if ((op != Py_EQ && op != Py_NE) || !PyObject_TypeCheck(b, (PyTypeObject *)RecordType))
		Py_RETURN_NOTIMPLEMENTED;
	Record *x = (Record *)a, *y = (Record *)b;
	int eq = x->kind == y->kind && x->allocator == y->allocator &&
		 x->proc->pid == y->proc->pid && record_tid_of(x) == record_tid_of(y) &&
		 x->stack == y->stack && x->address == y->address &&
		 x->size == y->size && x->old_address == y->old_address &&
		 x->old_size == y->old_size && x->n_allocations == y->n_allocations &&
		 x->time_us == y->time_us;
	if (op == Py_NE)
		eq = !eq;
	return PyBool_FromLong(eq);
}

static Py_hash_t record_hash(PyObject *self)
{
	const Record *r = (const Record *)self;
	uint64_t h = r->address * 0x9e3779b97f4a7c15ull ^ r->size * 0xc2b2ae3d27d4eb4full ^
		     ((uint64_t)r->stack << 20 | (uint64_t)r->kind << 8 | r->allocator) ^
		     (uint64_t)r->proc->pid << 40 ^ r->old_address ^ r->n_allocations;
	Py_hash_t v = (Py_hash_t)(h ^ (h >> 29));
	return v == -1 ? -2 : v;
}

#define RO READONLY
static PyMemberDef record_members[] = {
	{ "address", T_ULONGLONG, offsetof(Record, address), RO,
	  "the block's address (a realloc: the new one); 0 for a site" },
	{ "size", T_ULONGLONG, offsetof(Record, size), RO,
	  "bytes allocated (a munmap: bytes unmapped; a free: 0); a site's bytes" },
	{ "old_address", T_ULONGLONG, offsetof(Record, old_address), RO,
	  "a realloc's old address" },
	{ "old_size", T_ULONGLONG, offsetof(Record, old_size), RO,
	  "an mremap's old length (0 when the stream does not say)" },
	{ "stack_id", T_UINT, offsetof(Record, stack), RO,
	  "the stack's id in its process's stack table, 0 if none" },
	{ "time_us", T_ULONGLONG, offsetof(Record, time_us), RO,
	  "microseconds from the process's start to its last memory record" },
	{ "n_allocations", T_ULONGLONG, offsetof(Record, n_allocations), RO,
	  "1 for an event; a site's allocations (estimates when sampled)" },
	{ NULL, 0, 0, 0, NULL },
};

static PyGetSetDef record_getset[] = {
	{ "kind", record_kind, NULL, "'alloc', 'free', 'realloc'; a site's 'peak' or 'leak'", NULL },
	{ "allocator", record_allocator, NULL, "the function: 'malloc', 'free', 'mmap', ...", NULL },
	{ "pid", record_pid, NULL, "the process that made it", NULL },
	{ "tid", record_tid, NULL, "the thread's id (the kernel's), 0 if none", NULL },
	{ "thread_name", record_thread_name, NULL, "the thread's name as last known, or None", NULL },
	{ NULL, NULL, NULL, NULL, NULL },
};

static PyMethodDef record_methods[] = {
	{ "stack", record_stack, METH_NOARGS,
	  "stack() -> the Python frames, innermost first, as (function, file, line)" },
	{ "native_stack", record_native_stack, METH_NOARGS,
	  "native_stack() -> the native frames, innermost first, symbolised: (function, "
	  "file or module, line), line 0 when unknown" },
	{ "hybrid_stack", record_hybrid_stack, METH_NOARGS,
	  "hybrid_stack() -> the Python and native frames merged, innermost first, "
	  "CPython's own evaluation frames left out" },
	{ "stack_trace", (PyCFunction)(void (*)(void))record_stack_trace,
	  METH_VARARGS | METH_KEYWORDS,
	  "stack_trace(max_stacks=None) -> list: stack() as memray gives it" },
	{ "native_stack_trace", (PyCFunction)(void (*)(void))record_native_stack_trace,
	  METH_VARARGS | METH_KEYWORDS,
	  "native_stack_trace(max_stacks=None) -> list: native_stack() as memray gives it" },
	{ "hybrid_stack_trace", (PyCFunction)(void (*)(void))record_hybrid_stack_trace,
	  METH_VARARGS | METH_KEYWORDS,
	  "hybrid_stack_trace(max_stacks=None) -> list: hybrid_stack() as memray gives it" },
	{ NULL, NULL, 0, NULL },
};

/* Records are made by the reader only (3.9 has no
 * Py_TPFLAGS_DISALLOW_INSTANTIATION). */
static PyObject *record_new_refused(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	PyErr_SetString(PyExc_TypeError, "AllocationRecord objects are made by memray_c.read");
	return NULL;
}

static PyType_Slot record_slots[] = {
	{ Py_tp_new, record_new_refused },
	{ Py_tp_dealloc, record_dealloc },
	{ Py_tp_repr, record_repr },
	{ Py_tp_richcompare, record_richcompare },
	{ Py_tp_hash, record_hash },
	{ Py_tp_members, record_members },
	{ Py_tp_getset, record_getset },
	{ Py_tp_methods, record_methods },
	{ Py_tp_doc, "One allocation event of a memray stream, or one allocation site "
		     "(high-water mark, leaks)." },
	{ 0, NULL },
};

static PyType_Spec record_spec = {
	"memray_c._reader.AllocationRecord", sizeof(Record), 0, Py_TPFLAGS_DEFAULT, record_slots,
};

/* ---- the stream ------------------------------------------------------------ */

static int stream_init(PyObject *self, PyObject *args, PyObject *kw)
{
	Stream *s = (Stream *)self;
	static char *names[] = { "path", "replay", "snapshot", NULL };
	PyObject *path, *snapshot = Py_None;
	int replay = 0;
	if (s->in || s->name) {
		PyErr_SetString(PyExc_RuntimeError, "Stream is already open (or failed to)");
		return -1;
	}
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|pO", names, PyUnicode_FSConverter, &path,
					 &replay, &snapshot))
		return -1;
	const char *p = PyBytes_AsString(path);
	char err[600];
	s->name = strcmp(p, "-") == 0 ? PyUnicode_FromString("<stdin>") : PyUnicode_DecodeFSDefault(p);
	s->stacks = PyDict_New();
	if (!s->name || !s->stacks) {
		Py_DECREF(path);
		return -1;
	}
	Py_INCREF(snapshot);
	s->snapshot = snapshot;
	s->want = WANT_ALLOCS;
	s->pid = -1;
	int e = 0;
	Py_BEGIN_ALLOW_THREADS
	s->in = mr_input_open(p, err, sizeof(err));
	e = errno;
	Py_END_ALLOW_THREADS
	if (!s->in) {
		/* OSError(errno, ...) is FileNotFoundError, PermissionError, ... */
		PyObject *x = e ? PyObject_CallFunction(PyExc_OSError, "isO", e, strerror(e), s->name)
				: PyObject_CallFunction(PyExc_OSError, "s", err);
		if (x) {
			PyErr_SetObject((PyObject *)Py_TYPE(x), x);
			Py_DECREF(x);
		}
		Py_DECREF(path);
		return -1;
	}
	Py_DECREF(path);
	mr_reader_init(&s->rd, s->in);
	if (replay) {
		s->replay = PyMem_Malloc(sizeof(*s->replay));
		if (!s->replay) {
			PyErr_NoMemory();
			return -1;
		}
		replay_init(s->replay, 1);
	}
	/* the first process's header: what is not a stream fails here */
	struct mr_record rec;
	int rc;
	do {
		Py_BEGIN_ALLOW_THREADS
		rc = mr_next(&s->rd, &rec);
		Py_END_ALLOW_THREADS
		if (rc == 1) {
			s->nrecords++;
			if (s->replay)
				replay_record(s->replay, &rec);
		}
	} while (rc == 1 && rec.tag != MR_TAG_HEADER);
	if (rc != 1) {
		s->done = 1;
		raise_damage(s->name, rc < 0 ? s->rd.err : "empty: no memray stream in it");
		return -1;
	}
	return 0;
}

static void stream_dealloc(PyObject *self)
{
	Stream *s = (Stream *)self;
	PyTypeObject *t = Py_TYPE(self);
	if (s->replay) {
		replay_free(s->replay);
		PyMem_Free(s->replay);
	}
	sym_free(s->sym);
	if (s->in) {
		mr_input_close(s->in);
		mr_reader_free(&s->rd);
	}
	Py_XDECREF(s->name);
	Py_XDECREF(s->stacks);
	Py_XDECREF(s->snapshot);
	PyObject_Free(self);
	Py_DECREF(t);
}

static int check_usable(Stream *s)
{
	if (!s->in) {
		PyErr_SetString(PyExc_ValueError, "Stream is not open");
		return -1;
	}
	if (s->busy) {
		PyErr_SetString(PyExc_RuntimeError, "Stream is being read by another thread");
		return -1;
	}
	return 0;
}

/* At the end: a warning if the lib reader has one to give (a child that
 * left no trailer). Returns NULL (the end), with an exception if the
 * warning was made one. */
static PyObject *at_end(Stream *s, int rc)
{
	if (rc < 0) {
		raise_damage(s->name, s->rd.err);
		return NULL;
	}
	if (!s->done && s->rd.warn[0]) {
		PyObject *m = PyUnicode_FromFormat("%U: %s", s->name, s->rd.warn);
		if (m) {
			PyObject *u = PyUnicode_AsUTF8String(m);
			if (u)
				PyErr_WarnEx(PyExc_RuntimeWarning, PyBytes_AsString(u), 1);
			Py_XDECREF(u);
			Py_DECREF(m);
		}
	}
	s->done = 1;
	return NULL;
}

static PyObject *stream_next(PyObject *self)
{
	Stream *s = (Stream *)self;
	struct mr_record rec;
	if (check_usable(s) < 0)
		return NULL;
	for (;;) {
		int rc = mr_next(&s->rd, &rec);
		if (rc != 1)
			return at_end(s, rc);
		s->nrecords++;
		if (s->replay)
			replay_record(s->replay, &rec);
		if (rec.tag & 0xe0) {
			if ((s->want & WANT_ALLOCS) && (s->pid < 0 || rec.proc->pid == (uint32_t)s->pid))
				return record_of_event(s, &rec);
		} else if (rec.tag == MR_TAG_MEMORY && (s->want & WANT_MEMORY) &&
			   (s->pid < 0 || rec.proc->pid == (uint32_t)s->pid)) {
			return PyObject_CallFunction(s->snapshot, "IKKK", rec.proc->pid,
						     (unsigned long long)rec.time_us,
						     (unsigned long long)rec.rss,
						     (unsigned long long)rec.heap);
		}
		if ((s->nrecords & 0xfffff) == 0 && PyErr_CheckSignals() < 0)
			return NULL;
	}
}

static PyObject *stream_select(PyObject *self, PyObject *args)
{
	Stream *s = (Stream *)self;
	int want;
	long pid;
	if (!PyArg_ParseTuple(args, "il", &want, &pid))
		return NULL;
	s->want = want;
	s->pid = pid;
	Py_RETURN_NONE;
}

/* drain() -> None or the damage message: reads the rest of the stream
 * into the replay, without the GIL. */
static PyObject *stream_drain(PyObject *self, PyObject *unused)
{
	Stream *s = (Stream *)self;
	struct mr_record rec;
	int rc = 1;
	if (check_usable(s) < 0)
		return NULL;
	if (s->done) {
		if (s->rd.err[0])
			return PyUnicode_FromFormat("%U: %s", s->name, s->rd.err);
		Py_RETURN_NONE;
	}
	s->busy = 1;
	while (rc == 1) {
		Py_BEGIN_ALLOW_THREADS
		for (int n = 0; n < (1 << 20) && (rc = mr_next(&s->rd, &rec)) == 1; n++) {
			s->nrecords++;
			if (s->replay)
				replay_record(s->replay, &rec);
		}
		Py_END_ALLOW_THREADS
		if (rc == 1 && PyErr_CheckSignals() < 0) {
			s->busy = 0;
			return NULL;
		}
	}
	s->busy = 0;
	if (rc < 0) {
		s->done = 1;
		return PyUnicode_FromFormat("%U: %s", s->name, s->rd.err);
	}
	if (at_end(s, 0) == NULL && PyErr_Occurred())
		return NULL;
	Py_RETURN_NONE;
}

static int dict_set(PyObject *d, const char *key, PyObject *v)
{
	if (!v)
		return -1;
	int rc = PyDict_SetItemString(d, key, v);
	Py_DECREF(v);
	return rc;
}

#define U64(v) PyLong_FromUnsignedLongLong((unsigned long long)(v))

static PyObject *proc_dict(const struct mr_proc *p)
{
	const struct mr_header *h = &p->header;
	PyObject *d = PyDict_New(), *argv = PyList_New(0), *threads = PyList_New(0);
	if (!d || !argv || !threads)
		goto fail;
	for (uint32_t i = 0; i < h->argc; i++) {
		PyObject *a = ctext(h->argv[i]);
		if (!a || PyList_Append(argv, a) < 0) {
			Py_XDECREF(a);
			goto fail;
		}
		Py_DECREF(a);
	}
	for (size_t i = 1; i < p->nthreads; i++) {
		PyObject *t = Py_BuildValue("(KN)", (unsigned long long)p->threads[i].tid,
					    ctext(p->threads[i].name));
		if (!t || PyList_Append(threads, t) < 0) {
			Py_XDECREF(t);
			goto fail;
		}
		Py_DECREF(t);
	}
	/* dict_set consumes its value, set or not */
	int bad = dict_set(d, "argv", argv);
	argv = NULL;
	bad = bad || dict_set(d, "threads", threads);
	threads = NULL;
	if (bad || dict_set(d, "pid", U64(p->pid)) || dict_set(d, "ppid", U64(h->ppid)) ||
	    dict_set(d, "format_version", U64(h->version)) ||
	    dict_set(d, "tool_version", ctext(h->tool_version)) ||
	    dict_set(d, "start_us", U64(h->start_us)) || dict_set(d, "page_size", U64(h->page_size)) ||
	    dict_set(d, "flags", U64(h->flags)) || dict_set(d, "interval_us", U64(h->interval_us)) ||
	    dict_set(d, "exe", ctext(h->exe)) || dict_set(d, "sample_bytes", U64(h->sample_bytes)) ||
	    dict_set(d, "python_version", h->python_version ? ctext(h->python_version)
							     : (Py_INCREF(Py_None), Py_None)) ||
	    dict_set(d, "python_problem", h->python_problem ? ctext(h->python_problem)
							     : (Py_INCREF(Py_None), Py_None)) ||
	    dict_set(d, "has_header", PyBool_FromLong(p->has_header)) ||
	    dict_set(d, "complete", PyBool_FromLong(p->has_trailer)) ||
	    dict_set(d, "end_signal", p->end_signal ? PyLong_FromLong(p->end_signal)
						     : (Py_INCREF(Py_None), Py_None)) ||
	    dict_set(d, "allocations", U64(p->n_allocs)) || dict_set(d, "frees", U64(p->n_frees)) ||
	    dict_set(d, "bytes_allocated", U64(p->bytes_allocated)) ||
	    dict_set(d, "end_us", U64(p->has_trailer ? p->trailer.time_us : p->last_time_us)))
		goto fail;
	return d;
fail:
	Py_XDECREF(d);
	Py_XDECREF(argv);
	Py_XDECREF(threads);
	return NULL;
}

/* processes() -> [dict]: every process image known so far, in order of
 * appearance. */
static PyObject *stream_processes(PyObject *self, PyObject *unused)
{
	Stream *s = (Stream *)self;
	if (check_usable(s) < 0)
		return NULL;
	PyObject *out = PyList_New(0);
	for (size_t i = 0; out && i < s->rd.nprocs; i++) {
		if (!s->rd.procs[i]->has_header)
			continue;
		PyObject *d = proc_dict(s->rd.procs[i]);
		if (!d || PyList_Append(out, d) < 0)
			Py_CLEAR(out);
		Py_XDECREF(d);
	}
	return out;
}

static struct replay *replay_of(Stream *s)
{
	if (check_usable(s) < 0)
		return NULL;
	if (!s->replay)
		PyErr_SetString(PyExc_ValueError, "this Stream keeps no replay");
	return s->replay;
}

/* summary() -> dict: the replay's numbers so far. */
static PyObject *stream_summary(PyObject *self, PyObject *unused)
{
	Stream *s = (Stream *)self;
	struct replay *r = replay_of(s);
	if (!r)
		return NULL;
	PyObject *d = PyDict_New(), *tl = PyList_New(0), *alloc = PyDict_New(), *peaks = PyDict_New();
	if (!d || !tl || !alloc || !peaks)
		goto fail;
	for (size_t i = 0; i < r->ntimeline; i++) {
		PyObject *t = Py_BuildValue("(KKK)", (unsigned long long)r->timeline[i].time_us,
					    (unsigned long long)r->timeline[i].rss,
					    (unsigned long long)r->timeline[i].heap);
		if (!t || PyList_Append(tl, t) < 0) {
			Py_XDECREF(t);
			goto fail;
		}
		Py_DECREF(t);
	}
	for (int a = 1; a < MR_ALLOCATOR_END; a++) {
		if (!r->alloc_count[a])
			continue;
		PyObject *t = Py_BuildValue("(KK)", (unsigned long long)r->alloc_count[a],
					    (unsigned long long)r->alloc_bytes[a]);
		if (!t || PyDict_SetItem(alloc, allocator_names[a], t) < 0) {
			Py_XDECREF(t);
			goto fail;
		}
		Py_DECREF(t);
	}
	size_t *idx = PyMem_Malloc((r->nprocs + 1) * sizeof(*idx));
	uint64_t *peak = PyMem_Malloc((r->nprocs + 1) * sizeof(*peak));
	if (!idx || !peak) {
		PyMem_Free(idx);
		PyMem_Free(peak);
		PyErr_NoMemory();
		goto fail;
	}
	size_t np = replay_processes(r, idx, peak);
	int bad = 0;
	for (size_t k = 0; k < np && !bad; k++) {
		PyObject *pid = U64(r->procs[idx[k]].proc->pid), *v = U64(peak[idx[k]]);
		bad = !pid || !v || PyDict_SetItem(peaks, pid, v) < 0;
		Py_XDECREF(pid);
		Py_XDECREF(v);
	}
	PyMem_Free(idx);
	PyMem_Free(peak);
	if (bad)
		goto fail;
	char note[512];
	const char *py = replay_python_note(r, note, sizeof(note), NULL);
	if (dict_set(d, "peak", U64(r->peak)) || dict_set(d, "peak_time_us", U64(r->peak_time_us)) ||
	    dict_set(d, "peak_rss", U64(r->peak_rss)) || dict_set(d, "allocations", U64(r->n_allocs)) ||
	    dict_set(d, "frees", U64(r->n_frees)) ||
	    dict_set(d, "bytes_allocated", U64(r->bytes_allocated)) ||
	    dict_set(d, "leaked_bytes", U64(r->live + r->gone)) || dict_set(d, "duration_us", U64(r->duration_us)) ||
	    dict_set(d, "sampled", U64(r->sample_bytes)) ||
	    dict_set(d, "python_note", py ? ctext(py) : (Py_INCREF(Py_None), Py_None)) ||
	    dict_set(d, "records", U64(s->nrecords)))
		goto fail;
	/* dict_set consumes its value, set or not */
	int failed = dict_set(d, "timeline", tl);
	tl = NULL;
	failed = failed || dict_set(d, "allocators", alloc);
	alloc = NULL;
	failed = failed || dict_set(d, "process_peaks", peaks);
	peaks = NULL;
	if (failed)
		goto fail;
	return d;
fail:
	Py_XDECREF(d);
	Py_XDECREF(tl);
	Py_XDECREF(alloc);
	Py_XDECREF(peaks);
	return NULL;
}

/* sites(kind, merge_threads) -> [AllocationRecord]: the replay's sites
 * with bytes at the peak (kind "peak") or at the end ("leak"), by
 * (process, stack, thread), or by (process, stack) when merged. */
static PyObject *stream_sites(PyObject *self, PyObject *args)
{
	Stream *s = (Stream *)self;
	const char *which;
	int merge;
	if (!PyArg_ParseTuple(args, "sp", &which, &merge))
		return NULL;
	struct replay *r = replay_of(s);
	if (!r)
		return NULL;
	int kind = strcmp(which, "peak") == 0 ? K_PEAK : K_LEAK;
	enum metric m = kind == K_PEAK ? METRIC_PEAK : METRIC_LEAKED;
	PyObject *out = PyList_New(0), *index = PyDict_New();
	if (!out || !index)
		goto fail;
	for (size_t i = 0; i < r->nsites; i++) {
		const struct site *site = &r->sites[i];
		uint64_t v = site_value(r, site, m), n = site_count(r, site, m);
		if (!v && !n)
			continue;
		if (merge) {
			PyObject *key = Py_BuildValue("(nI)", (Py_ssize_t)(uintptr_t)site->proc, site->stack);
			if (!key)
				goto fail;
			PyObject *at = PyDict_GetItem(index, key);
			if (at) {
				Record *rec = (Record *)PyList_GetItem(out, PyLong_AsSsize_t(at));
				rec->size += v;
				rec->n_allocations += n;
				Py_DECREF(key);
				continue;
			}
			PyObject *pos = PyLong_FromSsize_t(PyList_Size(out));
			int bad = !pos || PyDict_SetItem(index, key, pos) < 0;
			Py_XDECREF(pos);
			Py_DECREF(key);
			if (bad)
				goto fail;
		}
		Record *rec = record_new(s, site->proc, site->stack, merge ? 0 : site->thread, kind);
		if (!rec)
			goto fail;
		rec->size = v;
		rec->n_allocations = n;
		rec->time_us = kind == K_PEAK ? r->peak_time_us : r->duration_us;
		int bad = PyList_Append(out, (PyObject *)rec) < 0;
		Py_DECREF(rec);
		if (bad)
			goto fail;
	}
	Py_DECREF(index);
	return out;
fail:
	Py_XDECREF(out);
	Py_XDECREF(index);
	return NULL;
}

static PyObject *stream_offset(PyObject *self, void *closure)
{
	return U64(((Stream *)self)->rd.offset);
}

static PyObject *stream_name(PyObject *self, void *closure)
{
	PyObject *n = ((Stream *)self)->name;
	if (!n)
		return PyUnicode_FromString("");
	Py_INCREF(n);
	return n;
}

static PyObject *stream_done(PyObject *self, void *closure)
{
	return PyBool_FromLong(((Stream *)self)->done);
}

static PyObject *stream_nrecords(PyObject *self, void *closure)
{
	return U64(((Stream *)self)->nrecords);
}

static PyMethodDef stream_methods[] = {
	{ "select", stream_select, METH_VARARGS,
	  "select(want, pid): what iterating yields: want 1 events, 2 memory snapshots, "
	  "3 both; pid -1 every process" },
	{ "drain", stream_drain, METH_NOARGS,
	  "drain() -> None, or the damage message: reads the rest of the stream" },
	{ "processes", stream_processes, METH_NOARGS,
	  "processes() -> [dict]: the process images read so far" },
	{ "summary", stream_summary, METH_NOARGS, "summary() -> dict: the replay's numbers" },
	{ "sites", stream_sites, METH_VARARGS,
	  "sites('peak' | 'leak', merge_threads) -> [AllocationRecord]" },
	{ NULL, NULL, 0, NULL },
};

static PyGetSetDef stream_getset[] = {
	{ "offset", stream_offset, NULL, "bytes of the input read so far", NULL },
	{ "name", stream_name, NULL, "the input's name in messages", NULL },
	{ "done", stream_done, NULL, "whether the end was reached", NULL },
	{ "records_read", stream_nrecords, NULL, "records of every kind read so far", NULL },
	{ NULL, NULL, NULL, NULL, NULL },
};

static PyType_Slot stream_slots[] = {
	{ Py_tp_init, stream_init },
	{ Py_tp_new, PyType_GenericNew },
	{ Py_tp_dealloc, stream_dealloc },
	{ Py_tp_iter, PyObject_SelfIter },
	{ Py_tp_iternext, stream_next },
	{ Py_tp_methods, stream_methods },
	{ Py_tp_getset, stream_getset },
	{ Py_tp_doc, "Stream(path, replay=False, snapshot=None): one pass over a memray stream "
		     "('-' is standard input), plain or compressed." },
	{ 0, NULL },
};

static PyType_Spec stream_spec = {
	"memray_c._reader.Stream", sizeof(Stream), 0, Py_TPFLAGS_DEFAULT, stream_slots,
};

/* ---- the module -------------------------------------------------------------- */

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "memray_c._reader",
	"memray-c's lib/ stream reader for Python: see memray_c.reader.", -1, NULL,
	NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__reader(void)
{
	progname = "memray_c";
	PyObject *m = PyModule_Create(&module);
	if (!m)
		return NULL;
	StreamType = PyType_FromSpec(&stream_spec);
	RecordType = PyType_FromSpec(&record_spec);
	ReaderError = PyErr_NewExceptionWithDoc(
		"memray_c.ReaderError",
		"A memray stream is damaged (truncated or corrupt) or is not one: the message "
		"is memray-c's reader's, naming the byte; .offset is that byte.",
		PyExc_ValueError, NULL);
	if (!StreamType || !RecordType || !ReaderError)
		goto fail;
	for (int k = 0; k < K_END; k++)
		if (!(kind_names[k] = PyUnicode_InternFromString(kind_text[k])))
			goto fail;
	for (int a = 1; a < MR_ALLOCATOR_END; a++)
		if (!(allocator_names[a] = PyUnicode_InternFromString(mr_allocator_name(a))))
			goto fail;
	Py_INCREF(StreamType);
	Py_INCREF(RecordType);
	Py_INCREF(ReaderError);
	if (PyModule_AddObject(m, "Stream", StreamType) < 0 ||
	    PyModule_AddObject(m, "AllocationRecord", RecordType) < 0 ||
	    PyModule_AddObject(m, "ReaderError", ReaderError) < 0 ||
	    PyModule_AddIntConstant(m, "WANT_ALLOCS", WANT_ALLOCS) < 0 ||
	    PyModule_AddIntConstant(m, "WANT_MEMORY", WANT_MEMORY) < 0)
		goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
