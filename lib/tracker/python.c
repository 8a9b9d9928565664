/*
 * python.c - reading CPython's frames from inside the process (see
 * python.h). Only reads: nothing here calls into the interpreter except
 * PyCode_Addr2Line (pure computation on the code object) and, for a
 * non-ASCII name while the thread holds the GIL, PyUnicode_AsUTF8AndSize.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../stream.h"
#include "python.h"
#include "tracker.h"

/* Where things are, per minor version (x86-64 and aarch64 share them),
 * found by compiling against each version's internal headers. From 3.13
 * on the interpreter publishes most of them itself (_Py_DebugOffsets, see
 * below), and those win; the table keeps what they do not cover
 * (co_firsttraceable, the owner numbers, the tag bits, the meaning of
 * instr_ptr) and all of 3.9-3.12. */
struct layout {
	int minor;
	int f_is_entry; /* 3.11: the frame's is_entry flag, else -1 */
	/* thread state -> current frame: *(tstate + tstate_frame), and for
	 * 3.11/3.12 through the cframe: *(*(tstate + tstate_frame) + cframe_current) */
	int tstate_frame, cframe_current;
	int f_back, f_code, f_instr, f_owner; /* f_owner -1: none */
	int co_filename, co_name, co_qualname, co_firstlineno;
	int co_code_adaptive, co_firsttraceable; /* 3.11+, else -1 */
	int instr_is_next; /* 3.13+: instr_ptr is the current instruction */
	int ascii_data; /* sizeof(PyASCIIObject): where compact ASCII text starts */
	/* 3.12+: a frame owned by this number or above is not Python code but
	 * the marker an entry into the evaluation loop pushes (CSTACK, 3, in
	 * 3.12 and 3.13; INTERPRETER, 3, in 3.14 and 3.15, where CSTACK became
	 * 4); 0: none */
	int owner_shim;
	/* 3.14+: f_executable is a _PyStackRef whose low bits are tags */
	int exec_tagged;
};

static const struct layout layouts[] = {
	{ 9, -1, 24, -1, 24, 32, 104, -1, 104, 112, 112, 40, -1, -1, 0, 48, 0, 0 },
	{ 10, -1, 24, -1, 24, 32, 96, -1, 104, 112, 112, 40, -1, -1, 0, 48, 0, 0 },
	{ 11, 68, 56, 8, 48, 32, 56, 69, 112, 120, 128, 72, 184, 168, 0, 48, 0, 0 },
	{ 12, -1, 56, 0, 8, 0, 56, 70, 112, 120, 128, 68, 192, 176, 0, 40, 3, 0 },
	{ 13, -1, 72, -1, 8, 0, 56, 70, 112, 120, 128, 68, 200, 184, 1, 40, 3, 0 },
	{ 14, -1, 72, -1, 8, 0, 56, 74, 112, 120, 128, 68, 208, 192, 1, 40, 3, 1 },
	{ 15, -1, 72, -1, 8, 0, 56, 74, 112, 120, 128, 68, 208, 192, 1, 40, 3, 1 },
};
#define NEWEST_MINOR 15

enum { OWNED_BY_GENERATOR = 1 };

/* ---- published offsets -------------------------------------------------
 * From 3.13 on, _PyRuntime starts with _Py_DebugOffsets: a cookie, the
 * version (PY_VERSION_HEX), whether the build is free-threaded, then
 * sections of uint64_t offsets, each section starting with the size of
 * its struct. The sections' places move between minor versions (fields
 * are inserted), so where each one starts is known per version; the
 * fields used here follow their section's size in a fixed order. */
struct published {
	int minor;
	/* indices of uint64_t words in _Py_DebugOffsets */
	int ts_current_frame, frame_size, code_size, object_size, unicode_size;
};
static const struct published publisheds[] = {
	{ 13, 23, 28, 34, 44, 67 },
	{ 14, 26, 31, 39, 50, 77 },
	{ 15, 26, 39, 47, 58, 89 },
};

static struct layout cur; /* the layout in use */
static const struct layout *L;
static char version[32];
static char problem[320]; /* why frames are not read, or a note */
static int ready;

static struct {
	int (*is_initialized)(void);
	void *(*this_thread_state)(void);
	int (*addr2line)(const void *code, int addr);
	int (*is_finalizing)(void);
	int (*gil_check)(void);
	const char *(*as_utf8)(void *str, ssize_t *len);
	const void *code_type;
} api;

const char *python_version(void)
{
	return version;
}

const char *python_problem(void)
{
	return problem;
}

static void follow_thread_names(void);

/* Fills l's published fields from the words w of a _Py_DebugOffsets laid
 * out as p says. Returns 0, or -1 when they are not what such a struct
 * holds (a layout other than p's). */
static int read_published(const uint64_t *w, const struct published *p, struct layout *l)
{
	uint64_t fsize = w[p->frame_size], csize = w[p->code_size], usize = w[p->unicode_size];
	const uint64_t *f = w + p->frame_size, *c = w + p->code_size, *u = w + p->unicode_size;
	/* sizes of the structs, and each offset inside its struct */
	if (fsize < 48 || fsize > 512 || csize < 128 || csize > 1024 || usize < 32 || usize > 256 ||
	    w[p->object_size] != 16 || w[p->object_size + 1] != 8 || w[p->ts_current_frame] > 4096)
		return -1;
	for (int i = 1; i <= 5; i++)
		if (f[i] >= fsize || c[i] >= csize)
			return -1;
	if (c[9] >= csize || u[3] > usize)
		return -1;
	/* str_text reads the state and length at these places */
	if (u[1] != 32 || u[2] != 16)
		return -1;
	l->tstate_frame = (int)w[p->ts_current_frame];
	l->f_back = (int)f[1];
	l->f_code = (int)f[2];
	l->f_instr = (int)f[3];
	l->f_owner = (int)f[5];
	l->co_filename = (int)c[1];
	l->co_name = (int)c[2];
	l->co_qualname = (int)c[3];
	l->co_firstlineno = (int)c[5];
	l->co_code_adaptive = (int)c[9];
	l->ascii_data = (int)u[3];
	return 0;
}

/* Names the fields where a (published) and b (the table) differ, into buf. */
static void differences(const struct layout *a, const struct layout *b, char *buf, size_t n)
{
	static const struct {
		const char *name;
		size_t off;
	} fields[] = {
#define D(f, name) { name, offsetof(struct layout, f) }
		D(tstate_frame, "thread_state.current_frame"), D(f_back, "frame.previous"),
		D(f_code, "frame.executable"), D(f_instr, "frame.instr_ptr"), D(f_owner, "frame.owner"),
		D(co_filename, "code.filename"), D(co_name, "code.name"), D(co_qualname, "code.qualname"),
		D(co_firstlineno, "code.firstlineno"), D(co_code_adaptive, "code.co_code_adaptive"),
		D(ascii_data, "unicode.asciiobject_size"),
#undef D
	};
	size_t len = 0;
	buf[0] = 0;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]) && len + 1 < n; i++) {
		int x = *(const int *)((const char *)a + fields[i].off);
		int y = *(const int *)((const char *)b + fields[i].off);
		if (x != y)
			len += (size_t)snprintf(buf + len, n - len, "%s%s %d, table %d",
						len ? "; " : "", fields[i].name, x, y);
	}
}

/* Chooses the layout for CPython 3.minor from the table and the offsets
 * the interpreter publishes. Returns 1 when frames can be read (problem[]
 * may hold a note); else 0 with problem[] saying why not. */
static int choose_layout(int minor)
{
	const struct layout *row = NULL;
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++)
		if (layouts[i].minor == minor)
			row = &layouts[i];
	const char *rt = (const char *)dlsym(RTLD_DEFAULT, "_PyRuntime");
	const uint64_t *w = rt && memcmp(rt, "xdebugpy", 8) == 0 ? (const uint64_t *)rt : NULL;
	if (minor >= 13 && !w) {
		snprintf(problem, sizeof(problem), "its _PyRuntime has no debug offsets");
		return 0;
	}
	if (w && (w[1] >> 24 != 3 || ((w[1] >> 16) & 0xff) != (uint64_t)minor)) {
		snprintf(problem, sizeof(problem), "its debug offsets are for version %#llx, not 3.%d",
			 (unsigned long long)w[1], minor);
		return 0;
	}
	if (w && w[2]) {
		snprintf(problem, sizeof(problem), "a free-threaded build (Py_GIL_DISABLED), whose frames memray-c does not read");
		return 0;
	}
	if (!w) {
		if (!row) {
			snprintf(problem, sizeof(problem), "memray-c reads CPython 3.9 to 3.%d", NEWEST_MINOR);
			return 0;
		}
		cur = *row;
		return 1;
	}
	/* published offsets: this version's places, or for a version newer
	 * than the table the newest places, taken only if they check out */
	const struct published *p = NULL;
	for (size_t i = 0; i < sizeof(publisheds) / sizeof(publisheds[0]); i++)
		if (publisheds[i].minor == minor || (minor > NEWEST_MINOR && publisheds[i].minor == NEWEST_MINOR))
			p = &publisheds[i];
	if (!p) {
		snprintf(problem, sizeof(problem), "memray-c reads CPython 3.9 to 3.%d", NEWEST_MINOR);
		return 0;
	}
	cur = row ? *row : layouts[sizeof(layouts) / sizeof(layouts[0]) - 1];
	struct layout table = cur;
	if (read_published(w, p, &cur) < 0) {
		if (row)
			snprintf(problem, sizeof(problem), "its debug offsets are not laid out as 3.%d's", minor);
		else
			snprintf(problem, sizeof(problem), "newer than memray-c knows (3.9 to 3.%d) and its debug offsets are laid out differently",
				 NEWEST_MINOR);
		return 0;
	}
	if (!row) {
		/* co_firsttraceable is not published: it keeps its place before
		 * co_code_adaptive */
		cur.co_firsttraceable = cur.co_code_adaptive - (table.co_code_adaptive - table.co_firsttraceable);
		cur.minor = minor;
		snprintf(problem, sizeof(problem), "newer than memray-c knows (3.9 to 3.%d): frames are read with its published offsets and 3.%d's rules",
			 NEWEST_MINOR, NEWEST_MINOR);
		return 1;
	}
	char diff[160];
	differences(&cur, &table, diff, sizeof(diff));
	if (diff[0])
		snprintf(problem, sizeof(problem), "its published offsets differ from memray-c's table (%s): the published ones are used", diff);
	return 1;
}

int python_start(void)
{
	const char *(*get_version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "Py_GetVersion");
	if (!get_version)
		return PY_NONE;
	const char *v = get_version();
	int major = 0, minor = 0;
	if (!v || sscanf(v, "%d.%d", &major, &minor) != 2)
		return PY_NONE;
	size_t n = strcspn(v, " ");
	snprintf(version, sizeof(version), "%.*s", (int)(n < 31 ? n : 31), v);
	problem[0] = 0;
	L = NULL;
	if (major != 3) {
		snprintf(problem, sizeof(problem), "memray-c reads CPython 3.9 to 3.%d", NEWEST_MINOR);
		return PY_UNREAD;
	}
	if (!choose_layout(minor))
		return PY_UNREAD;
	L = &cur;
#define F(field, name) api.field = (__typeof__(api.field))dlsym(RTLD_DEFAULT, name)
	F(is_initialized, "Py_IsInitialized");
	F(this_thread_state, "PyGILState_GetThisThreadState");
	F(addr2line, "PyCode_Addr2Line");
	F(is_finalizing, minor >= 13 ? "Py_IsFinalizing" : "_Py_IsFinalizing");
	F(gil_check, "PyGILState_Check");
	F(as_utf8, "PyUnicode_AsUTF8AndSize");
	F(code_type, "PyCode_Type");
#undef F
	follow_thread_names();
	if (!api.is_initialized || !api.this_thread_state || !api.addr2line || !api.code_type) {
		L = NULL;
		snprintf(problem, sizeof(problem), "its C-API lacks a function memray-c needs");
		return PY_UNREAD;
	}
	return PY_READ;
}

/* ---- thread names -------------------------------------------------------
 * Python's threading.Thread.name is not the OS thread's name. Once
 * `threading` is fully imported, Thread's name setter and _set_ident
 * (called first thing in a new thread, returned from before its target
 * runs, so no extra frame is ever on a thread's stack) are wrapped to
 * report names to the tracker through a builtin function, and the names
 * of the threads already running are reported. That is done where
 * Python code may run: in a pending call, run by the main thread between
 * bytecodes, which the sampler thread schedules at every tick until the
 * wrapping is done, and which a thread start schedules too.
 *
 * A thread starts under its name before that, however short the program:
 * when the interpreter starts a thread (pthread_create called from its
 * own image, by a thread holding the main interpreter's GIL), the
 * innermost Python frame is Thread.start's, and its `self` is the Thread;
 * its _name is read there through the C-API, without running any Python
 * code (code run there could take a signal handler's exception, a
 * KeyboardInterrupt, and lose it), and the new thread is announced under
 * it by its start routine (hooks.c). threading._main_thread's name is
 * read the same way at the first thread start. Nothing of threading is
 * changed by that, so it is done in an attached program too. */

typedef void PyObject;
static struct {
	PyObject *(*module_dict)(PyObject *);
	PyObject *(*modules)(void);
	PyObject *(*dict_get)(PyObject *, const char *);
	int (*dict_next)(PyObject *, ssize_t *, PyObject **, PyObject **);
	PyObject *(*mapping_get)(PyObject *, const char *);
	int (*setattr)(PyObject *, const char *, PyObject *);
	int (*isinstance)(PyObject *, PyObject *);
	PyObject *(*instancemethod)(PyObject *);
	PyObject *property_type, *none_object;
	PyObject *(*call)(PyObject *, ...);
	void (*decref)(PyObject *);
	void (*fetch)(PyObject **, PyObject **, PyObject **);
	void (*restore)(PyObject *, PyObject *, PyObject *);
	void (*clear)(void);
	PyObject *(*cfunction)(void *, PyObject *, PyObject *);
	int (*parse)(PyObject *, const char *, ...);
	PyObject *(*none)(const char *, ...);
	int (*add_pending)(int (*)(void *), void *);
} napi;

static int patched, pending;

static void patch_threading(PyObject *threading);

/* threading's _main_thread, and the module in *threading, if threading
 * has finished importing (that is its last global); else NULL. Borrowed
 * references; with the GIL held. sys.modules is read as a dict, without
 * the import machinery, which could wait for a module lock. */
static PyObject *main_thread_of(PyObject **threading)
{
	PyObject *modules = napi.modules();
	*threading = modules ? napi.dict_get(modules, "threading") : NULL;
	PyObject *dict = *threading ? napi.module_dict(*threading) : NULL;
	return dict ? napi.dict_get(dict, "_main_thread") : NULL;
}

/* Patches `threading` if it has finished importing, else does nothing.
 * With the GIL held, where Python code may run. Never raises into the
 * program. */
static void patch_if_imported(void)
{
	if (__atomic_load_n(&patched, __ATOMIC_RELAXED))
		return;
	int guard = tracker_guard;
	tracker_guard = 1;
	PyObject *type, *value, *tb;
	napi.fetch(&type, &value, &tb);
	PyObject *mod;
	if (main_thread_of(&mod)) {
		__atomic_store_n(&patched, 1, __ATOMIC_RELAXED);
		patch_threading(mod);
	}
	napi.clear();
	napi.restore(type, value, tb);
	tracker_guard = guard;
}

/* The pending call: runs in the main thread where the interpreter runs
 * pending calls. */
static int pending_patch(void *arg)
{
	(void)arg;
	patch_if_imported();
	__atomic_store_n(&pending, 0, __ATOMIC_RELAXED);
	return 0;
}

/* Asks the interpreter to run pending_patch, unless it ran or is asked. */
static void schedule_patch(void)
{
	if (__atomic_load_n(&patched, __ATOMIC_RELAXED) ||
	    __atomic_load_n(&pending, __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&pending, 1, __ATOMIC_RELAXED);
	if (napi.add_pending(pending_patch, NULL) != 0)
		__atomic_store_n(&pending, 0, __ATOMIC_RELAXED);
}

/* What reading a starting thread's name takes; all NULL when one is
 * missing. PyFrame_GetVarString is 3.12+; before, f_locals is read. */
static struct {
	void *(*tstate)(void); /* the calling thread's current thread state */
	void *(*interp_of)(void *);
	void *(*main_interp)(void);
	PyObject *(*frame)(void);
	PyObject *(*frame_code)(PyObject *);
	PyObject *(*frame_var)(PyObject *, const char *);
	PyObject *(*getattr)(PyObject *, const char *);
	unsigned long long (*as_ull)(PyObject *);
	void (*incref)(PyObject *);
} tapi;
static int main_named;

static void start_names_resolve(void)
{
#define F(field, name) tapi.field = (__typeof__(tapi.field))dlsym(RTLD_DEFAULT, name)
	F(tstate, "PyThreadState_GetUnchecked");
	if (!tapi.tstate)
		F(tstate, "_PyThreadState_UncheckedGet");
	F(interp_of, "PyThreadState_GetInterpreter");
	F(main_interp, "PyInterpreterState_Main");
	F(frame, "PyEval_GetFrame");
	F(frame_code, "PyFrame_GetCode");
	F(frame_var, "PyFrame_GetVarString");
	F(getattr, "PyObject_GetAttrString");
	F(as_ull, "PyLong_AsUnsignedLongLong");
	F(incref, "Py_IncRef");
#undef F
	if (!tapi.tstate || !tapi.interp_of || !tapi.main_interp || !tapi.frame ||
	    !tapi.frame_code || !tapi.getattr || !tapi.as_ull || !tapi.incref)
		tapi.tstate = NULL;
}

/* obj.attr as UTF-8 into out (fewer than cap bytes); 1 if it is a str. */
static int attr_text(PyObject *obj, const char *attr, char *out, size_t cap)
{
	PyObject *v = tapi.getattr(obj, attr);
	ssize_t len = 0;
	const char *s = v ? api.as_utf8(v, &len) : NULL;
	int ok = s && len >= 0 && (size_t)len < cap && !memchr(s, 0, (size_t)len);
	if (ok)
		memcpy(out, s, (size_t)len + 1);
	if (v)
		napi.decref(v);
	return ok;
}

/* ---- threading's name setters, wrapped -----------------------------------
 * The wrapping is made of C-API calls only, with no Python code run: code
 * run in the pending call would reach the evaluation loop's checks, where
 * a signal handler's exception (a KeyboardInterrupt) could be raised into
 * it and lost. The wrappers themselves run when the program sets a name
 * or a thread starts, inside the program's own call. */

/* Reports thread's _name: for the thread its _ident names (by_ident), else
 * for the calling thread (0). Clears only errors of its own: it runs after
 * threading's own setter succeeded, with no exception set. */
static void report_thread(PyObject *thread, int by_ident)
{
	char name[256];
	unsigned long long ident = 0;
	if (by_ident) {
		PyObject *id = tapi.getattr(thread, "_ident");
		ident = id && id != napi.none_object ? tapi.as_ull(id) : ~0ull;
		if (id)
			napi.decref(id);
		if (ident == ~0ull) { /* None (not started), or not a number */
			napi.clear();
			return;
		}
	}
	if (attr_text(thread, "_name", name, sizeof(name)))
		tracker_thread_renamed((unsigned long)ident, name);
	else
		napi.clear();
}

/* Thread.name's setter: threading's own (orig), then the new name. */
static PyObject *name_setter(PyObject *orig, PyObject *args)
{
	PyObject *thread, *value;
	if (!napi.parse(args, "OO:name", &thread, &value))
		return NULL;
	PyObject *r = napi.call(orig, thread, value, NULL);
	if (r)
		report_thread(thread, 1);
	return r;
}

/* Thread._set_ident, called first thing in a new thread: threading's own
 * (orig), then the thread's name, for the calling thread. */
static PyObject *ident_setter(PyObject *orig, PyObject *args)
{
	PyObject *thread;
	if (!napi.parse(args, "O:_set_ident", &thread))
		return NULL;
	PyObject *r = napi.call(orig, thread, NULL);
	if (r)
		report_thread(thread, 0);
	return r;
}

struct method_def {
	const char *name;
	void *meth;
	int flags;
	const char *doc;
};
static struct method_def name_def = { "name", (void *)name_setter, 1 /* METH_VARARGS */, NULL };
static struct method_def ident_def = { "_set_ident", (void *)ident_setter, 1, NULL };

static void put(PyObject **o)
{
	if (*o)
		napi.decref(*o);
	*o = NULL;
}

/* Wraps threading.Thread's name setter and _set_ident, then reports the
 * threads running now. With the GIL held; its errors are cleared (the
 * caller keeps the program's own exception aside). */
static void patch_threading(PyObject *threading)
{
	PyObject *T = tapi.getattr(threading, "Thread");
	PyObject *dict = T ? tapi.getattr(T, "__dict__") : NULL; /* a mappingproxy */
	PyObject *prop = dict ? napi.mapping_get(dict, "name") : NULL;
	PyObject *fget = NULL, *fset = NULL, *fdel = NULL, *doc = NULL, *wrap = NULL, *repl = NULL;
	if (prop && napi.isinstance(prop, napi.property_type) == 1 &&
	    (fget = tapi.getattr(prop, "fget")) && (fset = tapi.getattr(prop, "fset")) &&
	    (fdel = tapi.getattr(prop, "fdel")) && (doc = tapi.getattr(prop, "__doc__")) &&
	    fset != napi.none_object && (wrap = napi.cfunction(&name_def, fset, NULL)) &&
	    (repl = napi.call(napi.property_type, fget, wrap, fdel, doc, NULL)))
		napi.setattr(T, "name", repl);
	put(&fget), put(&fset), put(&fdel), put(&doc), put(&wrap), put(&repl);
	put(&prop), put(&dict);
	napi.clear();
	PyObject *orig = T ? tapi.getattr(T, "_set_ident") : NULL;
	PyObject *meth = NULL;
	if (orig && (wrap = napi.cfunction(&ident_def, orig, NULL)) &&
	    (meth = napi.instancemethod(wrap)))
		napi.setattr(T, "_set_ident", meth);
	put(&orig), put(&wrap), put(&meth), put(&T);
	napi.clear();
	PyObject *active = tapi.getattr(threading, "_active");
	PyObject *key, *thread;
	ssize_t pos = 0;
	while (active && napi.dict_next(active, &pos, &key, &thread)) {
		tapi.incref(thread);
		report_thread(thread, 1);
		napi.decref(thread);
	}
	put(&active);
	napi.clear();
}

/* The Thread whose start() is the innermost Python frame (a new
 * reference), or NULL. */
static PyObject *starting_thread(PyObject *threading)
{
	PyObject *frame = tapi.frame(); /* borrowed */
	if (!frame)
		return NULL;
	PyObject *T = tapi.getattr(threading, "Thread");
	PyObject *start = T ? tapi.getattr(T, "start") : NULL;
	PyObject *want = start ? tapi.getattr(start, "__code__") : NULL;
	PyObject *code = tapi.frame_code(frame);
	PyObject *self = NULL;
	if (want && code == want) {
		if (tapi.frame_var) {
			self = tapi.frame_var(frame, "self");
		} else {
			PyObject *locals = tapi.getattr(frame, "f_locals");
			self = locals ? napi.dict_get(locals, "self") : NULL; /* borrowed */
			if (self)
				tapi.incref(self);
			if (locals)
				napi.decref(locals);
		}
	}
	PyObject *drop[] = { T, start, want, code };
	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		if (drop[i])
			napi.decref(drop[i]);
	return self;
}

/* Whether the calling thread holds the GIL. PyGILState_Check alone says
 * yes in every thread once a sub-interpreter was made. */
static int holds_gil(void)
{
	if (!tapi.tstate)
		return api.gil_check && api.gil_check();
	void *ts = tapi.tstate();
	return ts && ts == api.this_thread_state();
}

int python_thread_starting(const void *caller, char *name, size_t cap, int may_patch)
{
	if (!napi.add_pending || !tapi.tstate || !api.as_utf8 || !python_ready())
		return 0;
	/* this thread holds the GIL (PyGILState_Check says yes for every
	 * thread once a sub-interpreter was made), of the main interpreter */
	if (!holds_gil() || tapi.interp_of(tapi.tstate()) != tapi.main_interp())
		return 0;
	const void *image = python_image();
	Dl_info di;
	if (!image || !dladdr(caller, &di) || di.dli_fbase != image)
		return 0;
	int guard = tracker_guard, found = 0;
	tracker_guard = 1;
	PyObject *type, *value, *tb;
	napi.fetch(&type, &value, &tb);
	PyObject *threading;
	PyObject *main_thread = main_thread_of(&threading);
	if (main_thread) {
		char main_name[256];
		PyObject *ident = main_named ? NULL : tapi.getattr(main_thread, "_ident");
		unsigned long long id = ident ? tapi.as_ull(ident) : ~0ull;
		if (ident)
			napi.decref(ident);
		if (id != ~0ull && attr_text(main_thread, "_name", main_name, sizeof(main_name))) {
			tracker_thread_renamed((unsigned long)id, main_name);
			main_named = 1;
		}
		PyObject *self = starting_thread(threading);
		if (self) {
			found = attr_text(self, "_name", name, cap);
			napi.decref(self);
		}
	}
	napi.clear();
	napi.restore(type, value, tb);
	tracker_guard = guard;
	/* the name setter is wrapped soon, where Python code may run */
	if (main_thread && may_patch)
		schedule_patch();
	return found;
}

void python_poll(void)
{
	if (napi.add_pending && python_ready())
		schedule_patch();
}

static void follow_thread_names(void)
{
#define F(field, name) napi.field = (__typeof__(napi.field))dlsym(RTLD_DEFAULT, name)
	F(module_dict, "PyModule_GetDict");
	F(modules, "PyImport_GetModuleDict");
	F(dict_get, "PyDict_GetItemString");
	F(dict_next, "PyDict_Next");
	F(mapping_get, "PyMapping_GetItemString");
	F(setattr, "PyObject_SetAttrString");
	F(isinstance, "PyObject_IsInstance");
	F(instancemethod, "PyInstanceMethod_New");
	F(property_type, "PyProperty_Type");
	F(none_object, "_Py_NoneStruct");
	F(call, "PyObject_CallFunctionObjArgs");
	F(decref, "Py_DecRef");
	F(fetch, "PyErr_Fetch");
	F(restore, "PyErr_Restore");
	F(clear, "PyErr_Clear");
	F(cfunction, "PyCFunction_NewEx");
	F(parse, "PyArg_ParseTuple");
	F(none, "Py_BuildValue");
	F(add_pending, "Py_AddPendingCall");
#undef F
	start_names_resolve();
	void **p = (void **)&napi;
	for (size_t i = 0; i < sizeof(napi) / sizeof(void *); i++)
		if (!p[i]) {
			napi.add_pending = NULL; /* no thread names */
			return;
		}
}

int python_eval_range(uintptr_t *lo, uintptr_t *hi)
{
	void *f = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
	Dl_info di;
	const ElfW(Sym) *sym = NULL;
	if (!f || !dladdr1(f, &di, (void **)&sym, RTLD_DL_SYMENT) || !sym || !sym->st_size)
		return 0;
	*lo = (uintptr_t)f;
	*hi = (uintptr_t)f + sym->st_size;
	return 1;
}

int python_marks_runs(void)
{
	return L && L->owner_shim;
}

const void *python_image(void)
{
	Dl_info di;
	if (!api.is_initialized || !dladdr((void *)api.is_initialized, &di))
		return NULL;
	return di.dli_fbase;
}

int python_ready(void)
{
	if (!L)
		return 0;
	if (!ready)
		ready = api.is_initialized();
	return ready && !(api.is_finalizing && api.is_finalizing());
}

#define AT(p, off, type) (*(type *)((const char *)(p) + (off)))

/* The frame's instruction offset in code units, or -1 if the frame has
 * not started (and is not shown, as CPython itself does not). */
static int64_t frame_lasti(const void *f, const void *code)
{
	if (L->minor <= 10) {
		int lasti = AT(f, L->f_instr, int);
		return lasti < 0 ? 0 : lasti;
	}
	const char *start = (const char *)code + L->co_code_adaptive;
	const char *instr = AT(f, L->f_instr, const char *);
	int owner = AT(f, L->f_owner, char);
	if (owner != OWNED_BY_GENERATOR &&
	    instr < start + 2 * (int64_t)AT(code, L->co_firsttraceable, int))
		return -1;
	return (instr - start) / 2;
}

/* The code object of frame f, or NULL when f runs no Python code. */
static const void *frame_code(const void *f)
{
	uintptr_t code = AT(f, L->f_code, uintptr_t);
	if (L->exec_tagged)
		code &= ~(uintptr_t)7; /* the tag bits of a _PyStackRef */
	if (!code || AT(code, 8, const void *) != api.code_type)
		return NULL;
	return (const void *)code;
}

int python_why_none(int seen_frames)
{
	if (!L || !api.is_initialized)
		return 0;
	if (!api.is_initialized())
		return ready ? PY_NONE_SHUTDOWN : PY_NONE_STARTUP;
	if (api.is_finalizing && api.is_finalizing())
		return PY_NONE_SHUTDOWN;
	if (!api.this_thread_state())
		return PY_NONE_NO_STATE;
	if (seen_frames)
		return PY_NONE_BETWEEN;
	return syscall(SYS_gettid) == getpid() ? PY_NONE_STARTUP : PY_NONE_THREAD_START;
}

/* A frame's code and instruction words, as they are read: its
 * f_executable (f_code) and its instruction pointer (3.11+) or f_lasti
 * (3.9, 3.10, an int). */
static inline uintptr_t code_word(const void *f)
{
	return AT(f, L->f_code, uintptr_t);
}

static inline uintptr_t instr_word(const void *f)
{
	return L->minor <= 10 ? (uintptr_t)(unsigned)AT(f, L->f_instr, int)
			      : AT(f, L->f_instr, uintptr_t);
}

/* The calling thread's innermost frame, or NULL. */
static const void *innermost_frame(void)
{
	const void *ts = api.this_thread_state();
	if (!ts)
		return NULL;
	const void *f = AT(ts, L->tstate_frame, const void *);
	if (L->cframe_current >= 0)
		f = f ? AT(f, L->cframe_current, const void *) : NULL;
	return f;
}

/* Whether a frame is one python_walk keeps (Python code, not C's). */
static int walk_keeps(const void *f)
{
	if (L->owner_shim && AT(f, L->f_owner, char) >= L->owner_shim)
		return 0;
	const void *code = frame_code(f);
	return code && frame_lasti(f, code) >= 0;
}

int python_walk(struct pyent *out, int max, int *cut)
{
	const void *f = innermost_frame();
	int n = 0;
	*cut = 0;
	for (; f; f = AT(f, L->f_back, const void *)) {
		if (n == max) {
			/* cut: when a frame it would keep is left */
			for (; f && !*cut; f = AT(f, L->f_back, const void *))
				*cut = walk_keeps(f);
			break;
		}
		char owner = L->owner_shim ? AT(f, L->f_owner, char) : 0;
		if (L->owner_shim && owner >= L->owner_shim) {
			/* 3.12+: owned by C code, not Python code. The one owned
			 * by owner_shim is the marker under each run of the
			 * evaluation loop, a local variable of that run's C frame
			 * (3.14's frames owned by C stacks elsewhere are not). */
			if (n && !out[n - 1].shim) {
				out[n - 1].entry = 1;
				if (owner == L->owner_shim)
					out[n - 1].shim = f;
			}
			continue;
		}
		const void *code = frame_code(f);
		if (!code)
			continue;
		int64_t lasti = frame_lasti(f, code);
		if (lasti < 0)
			continue;
		uint8_t flag = L->f_is_entry >= 0 ? AT(f, L->f_is_entry, uint8_t) : 0;
		uint8_t entry = L->minor <= 10 ? 1 : flag != 0;
		out[n++] = (struct pyent){ f, code, lasti, code_word(f), instr_word(f), 0, entry, flag, 0, NULL };
	}
	if (n)
		out[n - 1].entry = 1;
	/* root first */
	for (int i = 0, j = n - 1; i < j; i++, j--) {
		struct pyent t = out[i];
		out[i] = out[j];
		out[j] = t;
	}
	return n;
}

/* python_walk_from: the walk that reads what changed.
 *
 * What a stack shows of a frame is its code and its instruction: a
 * frame's (function, file, line) follows from its code object and its
 * instruction offset, and python_walk reads nothing else of it. So two
 * walks give the same frames at a level when the frame there has the same
 * code word and instruction word (and the same address, which ties the
 * chain together); the stack is the same up to a level when every level
 * below it is. No frame is trusted for being where one was before: a
 * frame reused at the same address by another call, a caller that moved
 * to another line while its callee was replaced, a generator resumed
 * from elsewhere (its frame the same, its callers not), another thread's
 * stack: each differs in a word compared here, at its own level, and
 * every level below the changed ones is compared. What this saves is the
 * rest of python_walk's work for the unchanged levels (the code object's
 * checks, the instruction offset, the copy and the reversal) and, in the
 * caller, interning them again: the comparison itself reads two words a
 * level (the link and the instruction pointer, which points into the code
 * object from 3.11 on; 3.9 and 3.10 keep an offset, and their code word is
 * read too). A code object freed and another made at its address, with a
 * frame at the same address at the same offset, would pass either way.
 *
 * From the innermost frame down, frames are taken as new (into top) until
 * one is found among the previous top levels with the same address and
 * words; from there down every level must equal prev's, and the chain must
 * end where prev's did. Otherwise (a deeper change, frames python_walk
 * would skip, a stack that grew past what prev held) it gives up and the
 * caller walks it all. */
/* The next frame below f that python_walk would read, or is a shim's. */
static inline __attribute__((always_inline)) const void *below(const void *f, int back,
							       int has_shim, int shim, int owner)
{
	do
		f = AT(f, back, const void *);
	while (has_shim && f && AT(f, owner, char) >= shim);
	return f;
}

/* Whether frame f holds what e read of it: 3.11+'s instruction pointer
 * points into the code object, so it tells the code too; 3.9 and 3.10
 * keep an offset (narrow), and their code word is compared as well. */
static inline __attribute__((always_inline)) int same_words(const void *f, const struct pyent *e,
							    int fc, int fi, int narrow)
{
	return narrow ? !((AT(f, fc, uintptr_t) ^ e->code_word) |
			  ((uintptr_t)(unsigned)AT(f, fi, int) ^ e->instr_word))
		      : AT(f, fi, uintptr_t) == e->instr_word;
}

/* Runs LEVEL() (which steps e down one level) until e is at end: eight
 * levels a turn while there are eight, then one at a time (a loop
 * unrolled by the compiler costs more than two levels to enter). */
#define LEVELS_DOWN_TO(end)                                                              \
	do {                                                                             \
		while (e - (end) >= 8) {                                                 \
			LEVEL(); LEVEL(); LEVEL(); LEVEL();                              \
			LEVEL(); LEVEL(); LEVEL(); LEVEL();                              \
		}                                                                        \
		while (e > (end))                                                        \
			LEVEL();                                                         \
	} while (0)

/* Whether the frames below *f are prev[j - 1] .. prev[0], exactly, and
 * nothing after: the loop every allocation runs through each level,
 * made once per layout (the flags are constants where it is inlined).
 *
 * A level reads the frame prev says is there, not the one the link just
 * read leads to: the link is compared with prev's address, and the
 * frame's words are read at that address, so that each level's loads
 * depend on nothing loaded at the level above. Following the links
 * instead makes one chain of dependent loads down the whole stack, and a
 * 42-frame stack then waits on 42 loads in turn (deep.py: 2.32x plain
 * wall against 1.93x, in the same number of instructions). What is
 * compared is the same: the link read at a level equals prev's frame
 * (or leads to it past frames owned by C, the slow way) before that
 * frame is read.
 *
 * A frame the link leads straight to is not asked whether C owns it
 * (3.12+): prev holds Python frames only, and a frame not owned by
 * Python code now at such an address (its memory given back and used
 * again) would fail the instruction word's comparison, as no such frame
 * points into a code object a Python frame runs: an evaluation loop's
 * entry frame points into the interpreter's trampoline (3.12's
 * trampoline code object, a static array from 3.13 on), and 3.15's base
 * frame, a sentinel in the thread state, runs no code. */
static inline __attribute__((always_inline)) int
same_below(const void **fp, const struct pyent *prev, int j, int back, int fc, int fi,
	   int has_shim, int shim, int owner, int narrow)
{
	const void *f = *fp;
	/* just above the next level (j < 0: prev's root changed, none) */
	const struct pyent *e = prev + (j > 0 ? j : 0);
	/* one level: the frame below is *--e's, at its instruction */
#define LEVEL()                                                                          \
	do {                                                                             \
		e--;                                                                     \
		const void *g_ = e->frame;                                               \
		if (__builtin_expect(AT(f, back, const void *) != g_, 0) &&              \
		    below(f, back, has_shim, shim, owner) != g_)                         \
			return 0; /* (NULL included) */                                  \
		if (!same_words(g_, e, fc, fi, narrow))                                  \
			return 0;                                                        \
		f = g_;                                                                  \
	} while (0)
	LEVELS_DOWN_TO(prev);
#undef LEVEL
	return below(f, back, has_shim, shim, owner) == NULL;
}

/* A frame's own entry mark: 3.9 and 3.10 enter the loop once per frame,
 * 3.11 says in the frame; 3.12+ marks it from below (-1 here). */
static inline __attribute__((always_inline)) int own_entry(const void *f)
{
	if (L->minor <= 10)
		return 1;
	if (L->f_is_entry >= 0)
		return AT(f, L->f_is_entry, uint8_t) != 0;
	return -1;
}

/* The frames above the deepest level of prev that is still where it was,
 * innermost first from f (the thread's innermost frame), into top (at
 * most max): their count, with *fp at the
 * frame of that level and *jp its index in prev (-1: prev's root changed,
 * *fp the new root), or -1 when that cannot be had cheaply. With marks,
 * each new frame's entry mark and marker too, and a frame's own entry
 * mark (3.11) must match for its level to be kept. */
static inline __attribute__((always_inline)) int
walk_top(const void *f, const struct pyent *prev, int n, struct pyent *top, int max,
	 const void **fp, int *jp, int marks)
{
	const int back = L->f_back, shim = L->owner_shim, owner = L->f_owner;
	int m = 0, j = n - 1;
	for (;; f = AT(f, back, const void *)) {
		if (!f)
			return -1;
		if (shim && AT(f, owner, char) >= shim) {
			/* below a new frame: its marks, as python_walk sets them */
			if (marks && m && !top[m - 1].shim) {
				top[m - 1].entry = 1;
				if (AT(f, owner, char) == shim)
					top[m - 1].shim = f;
			}
			continue;
		}
		uintptr_t cw = code_word(f), iw = instr_word(f);
		int own = marks ? own_entry(f) : -1;
		/* among prev's top levels, by address */
		int k = j;
		while (k >= 0 && k > j - 8 && prev[k].frame != f)
			k--;
		if (k >= 0 && prev[k].frame == f && prev[k].code_word == cw &&
		    prev[k].instr_word == iw && (own < 0 || k == 0 || own == prev[k].entry)) {
			j = k;
			break;
		}
		if (k >= 0 && prev[k].frame == f)
			j = k - 1; /* the same frame, moved on: the rest is below */
		const void *code = frame_code(f);
		if (!code)
			return -1;
		int64_t lasti = frame_lasti(f, code);
		if (lasti < 0 || m == max)
			return -1;
		uint8_t flag = L->f_is_entry >= 0 ? AT(f, L->f_is_entry, uint8_t) : 0;
		top[m++] = (struct pyent){ f, code, lasti, cw, iw, 0, own > 0, flag, 0, NULL };
		if (j < 0)
			break; /* prev's root changed: nothing may be below it */
	}
	*fp = f;
	*jp = j;
	return m;
}

int python_walk_from(const struct pyent *prev, int n, struct pyent *top, int max, int *ntop)
{
	if (n <= 0)
		return -1;
	const int back = L->f_back, shim = L->owner_shim, owner = L->f_owner;
	const int fc = L->f_code, fi = L->f_instr;
	const void *f = innermost_frame();
	const struct pyent *t = &prev[n - 1];
	int j = n - 1, m = 0;
	/* the common case, as walk_top would find it at once: the innermost
	 * frame is prev's, unmoved (a frame owned by C is never one of
	 * prev's; walk_top skips it) */
	if (!f || f != t->frame || code_word(f) != t->code_word || instr_word(f) != t->instr_word ||
	    (shim && AT(f, owner, char) >= shim)) {
		m = walk_top(f, prev, n, top, max, &f, &j, 0);
		if (m < 0)
			return -1;
	}
	/* every level below the match, as it was */
	int ok = L->minor <= 10 ? same_below(&f, prev, j, back, fc, fi, 0, 0, 0, 1)
		 : shim	       ? same_below(&f, prev, j, back, fc, fi, 1, shim, owner, 0)
			       : same_below(&f, prev, j, back, fc, fi, 0, 0, 0, 0);
	if (!ok)
		return -1;
	*ntop = m;
	return j + 1;
}

/* python_walk_marks_from: python_walk_from for hybrid stacks, which also
 * need each frame's entry mark and marker (pyent.entry, .shim) as
 * python_walk sets them. Those follow from the frame (3.11's is_entry
 * flag) or from what lies between it and the next frame below (3.12+:
 * frames owned by C, the first of them owned by the loop's marker), so
 * they are compared too, level by level: a frame entered from C where it
 * was entered from Python before differs here. A level's marks are read
 * on the way below it. */

/* The next frame below f that python_walk would read; *passed says
 * whether frames owned by C lay between (the frame above is an entry
 * frame), *first the first of them owned by the loop's marker. */
static inline __attribute__((always_inline)) const void *
below_marks(const void *f, int back, int shim, int owner, int *passed, const void **first)
{
	*passed = 0;
	*first = NULL;
	for (;;) {
		f = AT(f, back, const void *);
		if (!f || !shim)
			return f;
		char o = AT(f, owner, char);
		if (o < shim)
			return f;
		*passed = 1;
		if (o == shim && !*first)
			*first = f;
	}
}

/* Whether the levels j .. 0 of prev are the frames from *fp down, marks
 * included, and nothing below: one loop per layout, as same_below.
 * has_fe, fe: whether frames have an is_entry byte (3.11), and its
 * offset; shim: 3.12+'s owner of marker frames, else 0. */
static inline __attribute__((always_inline)) int
same_marks_below(const void **fp, const struct pyent *prev, int j, int back, int fc, int fi,
		 int has_fe, int fe, int shim, int owner, int narrow)
{
	const void *f = *fp, *g, *first;
	int passed;
	if (j < 0)
		return 1;
	/* level i's marks are read on the way below it, to level i - 1:
	 * e is prev[i] before the step, prev[i - 1] after */
	const struct pyent *e = prev + j;
#define LEVEL()                                                                          \
	do {                                                                             \
		/* the frame prev names, as same_below reads it: the link   \
		 * leads straight to it (nothing owned by C between, as e's  \
		 * marks say; one owned by C there fails same_words, as in   \
		 * same_below), or it is found the slow way */               \
		g = e[-1].frame;                                                         \
		if (__builtin_expect(AT(f, back, const void *) != g ||                   \
				     (shim && (e->entry || e->shim)), 0)) {              \
			if (below_marks(f, back, shim, owner, &passed, &first) != g ||   \
			    (shim && (passed != e->entry || first != e->shim)))          \
				return 0; /* (NULL included) */                          \
		}                                                                        \
		e--;                                                                     \
		if (!same_words(g, e, fc, fi, narrow))                                   \
			return 0;                                                        \
		/* 3.11's is_entry byte, as read: the root's too, whose entry    \
		 * mark is 1 whatever it holds (a stricter test, never a looser  \
		 * one, and one compare a level) */                              \
		if (has_fe && AT(g, fe, uint8_t) != e->flag)                             \
			return 0;                                                        \
		f = g;                                                                   \
	} while (0)
	LEVELS_DOWN_TO(prev);
#undef LEVEL
	/* the root: entry whatever lies below; its marker, if any */
	g = below_marks(f, back, shim, owner, &passed, &first);
	return !g && (!shim || first == prev[0].shim);
}

int python_walk_marks_from(const struct pyent *prev, int n, struct pyent *top, int max, int *ntop)
{
	if (n <= 0)
		return -1;
	const int back = L->f_back, shim = L->owner_shim, owner = L->f_owner;
	const int fc = L->f_code, fi = L->f_instr;
	const void *f = innermost_frame();
	const struct pyent *t = &prev[n - 1];
	int j = n - 1, m = 0, own;
	/* the common case first, as python_walk_from's: the innermost frame
	 * is prev's, unmoved, and its own entry mark (3.11's) as it was, as
	 * walk_top would find it at once */
	if (!f || f != t->frame || code_word(f) != t->code_word || instr_word(f) != t->instr_word ||
	    (shim && AT(f, owner, char) >= shim) ||
	    (n > 1 && (own = own_entry(f)) >= 0 && own != t->entry)) {
		m = walk_top(f, prev, n, top, max, &f, &j, 1);
		if (m < 0)
			return -1;
	}
	/* every level from the match down, marks included */
	int ok = L->minor <= 10 ? same_marks_below(&f, prev, j, back, fc, fi, 0, 0, 0, 0, 1)
		 : shim	       ? same_marks_below(&f, prev, j, back, fc, fi, 0, 0, shim, owner, 0)
		 : L->f_is_entry >= 0
			 ? same_marks_below(&f, prev, j, back, fc, fi, 1, L->f_is_entry, 0, 0, 0)
			 : same_marks_below(&f, prev, j, back, fc, fi, 0, 0, 0, 0, 0);
	if (!ok)
		return -1;
	if (j < 0) {
		/* prev's root changed: the new root, alone at the bottom */
		int passed;
		const void *first;
		if (below_marks(f, back, shim, owner, &passed, &first))
			return -1;
		top[m - 1].shim = shim ? first : NULL;
		top[m - 1].entry = 1;
	}
	*ntop = m;
	return j + 1;
}

/* ---- interning ----------------------------------------------------------
 * (code, lasti) -> frame id. An entry also remembers the code object's
 * name and file objects and first line: a code object freed and another
 * allocated at its address will not match them. */

struct frame_slot {
	const void *code, *name, *file;
	int64_t lasti;
	int firstlineno;
	uint32_t id;
};
static struct frame_slot *frames;
static size_t frames_cap, frames_count;

struct string_slot {
	uint64_t hash;
	uint32_t id;
};
static struct string_slot *strings;
static size_t strings_cap, strings_count;

static void *map_zeroed(size_t n)
{
	void *p = real.mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ n;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return mix(h) | 1; /* never 0: 0 marks an empty slot */
}

/* A str object's text: compact ASCII read in place (safe without the GIL),
 * anything else through the C-API when this thread holds the GIL. */
static const char *str_text(const void *s, size_t *len)
{
	if (!s) {
		*len = 1;
		return "?";
	}
	uint32_t state = AT(s, 32, uint32_t);
	int compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
	if (compact && ascii) {
		*len = (size_t)AT(s, 16, int64_t);
		return (const char *)s + L->ascii_data;
	}
	if (api.as_utf8 && holds_gil() && napi.fetch && napi.clear && napi.restore) {
		ssize_t n = 0;
		PyObject *type, *value, *tb;
		napi.fetch(&type, &value, &tb);
		const char *t = api.as_utf8((void *)s, &n);
		napi.clear(); /* a lone surrogate cannot be encoded */
		napi.restore(type, value, tb);
		if (t) {
			*len = (size_t)n;
			return t;
		}
	}
	*len = 1;
	return "?";
}

static uint32_t string_id(struct mr_writer *w, const void *str)
{
	size_t len;
	const char *s = str_text(str, &len);
	uint64_t h = hash_bytes(s, len);
	if (strings_count * 2 >= strings_cap) {
		size_t cap = strings_cap ? strings_cap * 2 : 4096;
		struct string_slot *t = map_zeroed(cap * sizeof(*t));
		if (!t)
			return 0;
		for (size_t i = 0; i < strings_cap; i++)
			if (strings[i].hash) {
				size_t j = strings[i].hash & (cap - 1);
				while (t[j].hash)
					j = (j + 1) & (cap - 1);
				t[j] = strings[i];
			}
		if (strings)
			real.munmap(strings, strings_cap * sizeof(*strings));
		strings = t;
		strings_cap = cap;
	}
	size_t j = h & (strings_cap - 1);
	while (strings[j].hash) {
		if (strings[j].hash == h)
			return strings[j].id;
		j = (j + 1) & (strings_cap - 1);
	}
	strings[j].hash = h;
	strings[j].id = mr_w_string(w, s, len);
	strings_count++;
	return strings[j].id;
}

static size_t frame_hash(const void *code, int64_t lasti)
{
	return (size_t)mix((uint64_t)(uintptr_t)code * 31 + (uint64_t)lasti);
}

static int frames_grow(void)
{
	size_t cap = frames_cap ? frames_cap * 2 : 4096;
	struct frame_slot *t = map_zeroed(cap * sizeof(*t));
	if (!t)
		return -1;
	for (size_t i = 0; i < frames_cap; i++)
		if (frames[i].id) {
			size_t j = frame_hash(frames[i].code, frames[i].lasti) & (cap - 1);
			while (t[j].id)
				j = (j + 1) & (cap - 1);
			t[j] = frames[i];
		}
	if (frames)
		real.munmap(frames, frames_cap * sizeof(*frames));
	frames = t;
	frames_cap = cap;
	return 0;
}

void python_code_id(const void *code, struct pycode_id *id)
{
	id->name = AT(code, L->co_qualname, const void *);
	id->file = AT(code, L->co_filename, const void *);
	id->firstlineno = AT(code, L->co_firstlineno, int);
}

uint32_t python_frame_id(struct mr_writer *w, const struct pyent *e)
{
	const void *code = e->code;
	struct pycode_id cid;
	python_code_id(code, &cid);
	const void *name = cid.name, *file = cid.file;
	int firstlineno = cid.firstlineno;
	if (frames_count * 2 >= frames_cap && frames_grow() < 0)
		return 0;
	size_t j = frame_hash(code, e->lasti) & (frames_cap - 1);
	while (frames[j].id) {
		struct frame_slot *s = &frames[j];
		if (s->code == code && s->lasti == e->lasti) {
			if (s->name == name && s->file == file && s->firstlineno == firstlineno)
				return s->id;
			break; /* another code object at a freed one's address */
		}
		j = (j + 1) & (frames_cap - 1);
	}
	int64_t addr = e->lasti * (L->minor == 9 ? 1 : 2);
	int line = api.addr2line(code, (int)addr);
	if (line < 0)
		line = firstlineno;
	uint32_t fn = string_id(w, name), fl = string_id(w, file);
	uint32_t id = mr_w_pyframe(w, fn, fl, (uint32_t)line);
	if (!frames[j].id)
		frames_count++;
	frames[j] = (struct frame_slot){ code, name, file, e->lasti, firstlineno, id };
	return id;
}

void python_forget(void)
{
	/* dropped, not cleared, so a forked child copies none of the pages */
	if (frames)
		real.munmap(frames, frames_cap * sizeof(*frames));
	frames = NULL;
	frames_cap = frames_count = 0;
	if (strings)
		real.munmap(strings, strings_cap * sizeof(*strings));
	strings = NULL;
	strings_cap = strings_count = 0;
}
