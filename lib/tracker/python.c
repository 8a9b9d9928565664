/*
 * python.c - reading CPython's frames from inside the process (see
 * python.h). Only reads: nothing here calls into the interpreter except
 * PyCode_Addr2Line (pure computation on the code object) and, for a
 * non-ASCII name while the thread holds the GIL, PyUnicode_AsUTF8AndSize.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../stream.h"
#include "python.h"
#include "tracker.h"

/* Where things are, per minor version (x86-64 and aarch64 share them). */
struct layout {
	int minor;
	int f_is_entry; /* 3.11: the frame's is_entry flag, else -1 */
	/* thread state -> current frame: *(tstate + tstate_frame), and for
	 * 3.11/3.12 through the cframe: *(*(tstate + tstate_frame) + cframe_current) */
	int tstate_frame, cframe_current;
	int f_back, f_code, f_instr, f_owner; /* f_owner -1: none */
	int co_filename, co_name, co_qualname, co_firstlineno;
	int co_code_adaptive, co_firsttraceable; /* 3.11+, else -1 */
	int instr_is_next; /* 3.13's instr_ptr is the current instruction */
	int ascii_data; /* sizeof(PyASCIIObject): where compact ASCII text starts */
};

static const struct layout layouts[] = {
	{ 9, -1, 24, -1, 24, 32, 104, -1, 104, 112, 112, 40, -1, -1, 0, 48 },
	{ 10, -1, 24, -1, 24, 32, 96, -1, 104, 112, 112, 40, -1, -1, 0, 48 },
	{ 11, 68, 56, 8, 48, 32, 56, 69, 112, 120, 128, 72, 184, 168, 0, 48 },
	{ 12, -1, 56, 0, 8, 0, 56, 70, 112, 120, 128, 68, 192, 176, 0, 40 },
	{ 13, -1, 72, -1, 8, 0, 56, 70, 112, 120, 128, 68, 200, 184, 1, 40 },
};

enum { OWNED_BY_GENERATOR = 1, OWNED_BY_CSTACK = 3 };

static const struct layout *L;
static char version[32];
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

static void follow_thread_names(void);

int python_start(void)
{
	const char *(*get_version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "Py_GetVersion");
	if (!get_version)
		return 0;
	const char *v = get_version();
	int major = 0, minor = 0;
	if (!v || sscanf(v, "%d.%d", &major, &minor) != 2 || major != 3)
		return 0;
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++)
		if (layouts[i].minor == minor)
			L = &layouts[i];
	if (!L)
		return 0;
	size_t n = strcspn(v, " ");
	snprintf(version, sizeof(version), "%.*s", (int)(n < 31 ? n : 31), v);
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
		return 0;
	}
	return 1;
}

/* ---- thread names -------------------------------------------------------
 * Python's threading.Thread.name is not the OS thread's name. Once
 * `threading` is fully imported, at a safe point (a pending call, run by
 * the main thread between bytecodes), Thread's name setter and
 * _set_ident (called first thing in a new thread, returned from before
 * its target runs, so no extra frame is ever on a thread's stack) are wrapped to report names to the tracker through a
 * builtin function. The sampler thread schedules that pending call at
 * every tick until it has been done. */

typedef void PyObject;
static struct {
	PyObject *(*module_dict)(PyObject *);
	PyObject *(*unicode)(const char *);
	PyObject *(*get_module)(PyObject *);
	PyObject *(*dict_new)(void);
	int (*dict_set)(PyObject *, const char *, PyObject *);
	PyObject *(*dict_get)(PyObject *, const char *);
	PyObject *(*builtins)(void);
	PyObject *(*run)(const char *, int, PyObject *, PyObject *, void *);
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

static const char patch_source[] =
	"def patch(threading, report):\n"
	"    T = threading.Thread\n"
	"    prop = T.__dict__.get('name')\n"
	"    if not isinstance(prop, property) or prop.fset is None:\n"
	"        return\n"
	"    fset = prop.fset\n"
	"    def name(self, value):\n"
	"        fset(self, value)\n"
	"        report(-1 if self._ident is None else self._ident, self._name)\n"
	"    T.name = property(prop.fget, name, prop.fdel, prop.__doc__)\n"
	"    set_ident = T._set_ident\n"
	"    def _set_ident(self):\n"
	"        set_ident(self)\n"
	"        report(0, self._name)\n"
	"    T._set_ident = _set_ident\n"
	"    for t in list(threading._active.values()):\n"
	"        report(t._ident, t._name)\n";

static PyObject *report_name(PyObject *self, PyObject *args)
{
	(void)self;
	unsigned long long ident;
	const char *name;
	if (napi.parse(args, "Ks", &ident, &name)) {
		if (ident != ~0ull)
			tracker_thread_renamed((unsigned long)ident, name);
	} else {
		napi.clear();
	}
	return napi.none("");
}

static struct {
	const char *name;
	void *meth;
	int flags;
	const char *doc;
} report_def = { "memray_thread_name", (void *)report_name, 1 /* METH_VARARGS */, NULL };

static int patched, pending;

static void patch_threading(PyObject *threading)
{
	PyObject *g = napi.dict_new();
	if (!g)
		return;
	napi.dict_set(g, "__builtins__", napi.builtins());
	PyObject *r = napi.run(patch_source, 257 /* Py_file_input */, g, g, NULL);
	if (r) {
		napi.decref(r);
		PyObject *fn = napi.dict_get(g, "patch"); /* borrowed */
		PyObject *report = napi.cfunction(&report_def, NULL, NULL);
		if (fn && report) {
			PyObject *res = napi.call(fn, threading, report, NULL);
			if (res)
				napi.decref(res);
		}
		if (report)
			napi.decref(report);
	}
	napi.decref(g);
}

/* Runs in the main thread where the interpreter runs pending calls, a
 * point where Python code may run. Patches `threading` if it has finished
 * importing (its last global, _main_thread, exists), else does nothing and
 * waits to be scheduled again. Never raises into the program. */
static int pending_patch(void *arg)
{
	(void)arg;
	int guard = tracker_guard;
	tracker_guard = 1;
	PyObject *type, *value, *tb;
	napi.fetch(&type, &value, &tb);
	PyObject *name = napi.unicode("threading");
	PyObject *mod = name ? napi.get_module(name) : NULL;
	if (mod) {
		PyObject *dict = napi.module_dict(mod); /* borrowed */
		if (dict && napi.dict_get(dict, "_main_thread")) {
			patched = 1;
			patch_threading(mod);
		}
		napi.decref(mod);
	}
	if (name)
		napi.decref(name);
	napi.clear();
	napi.restore(type, value, tb);
	pending = 0;
	tracker_guard = guard;
	return 0;
}

void python_poll(void)
{
	if (patched || pending || !napi.add_pending || !python_ready())
		return;
	pending = 1;
	if (napi.add_pending(pending_patch, NULL) != 0)
		pending = 0;
}

static void follow_thread_names(void)
{
#define F(field, name) napi.field = (__typeof__(napi.field))dlsym(RTLD_DEFAULT, name)
	F(module_dict, "PyModule_GetDict");
	F(unicode, "PyUnicode_FromString");
	F(get_module, "PyImport_GetModule");
	F(dict_new, "PyDict_New");
	F(dict_set, "PyDict_SetItemString");
	F(dict_get, "PyDict_GetItemString");
	F(builtins, "PyEval_GetBuiltins");
	F(run, "PyRun_StringFlags");
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

int python_walk(struct pyent *out, int max)
{
	const void *ts = api.this_thread_state();
	if (!ts)
		return 0;
	const void *f = AT(ts, L->tstate_frame, const void *);
	if (L->cframe_current >= 0)
		f = f ? AT(f, L->cframe_current, const void *) : NULL;
	int n = 0;
	for (; f && n < max; f = AT(f, L->f_back, const void *)) {
		if (L->f_owner >= 0 && AT(f, L->f_owner, char) == OWNED_BY_CSTACK) {
			/* 3.12+: the shim frame under each run of the evaluation loop */
			if (n)
				out[n - 1].entry = 1;
			continue;
		}
		const void *code = AT(f, L->f_code, const void *);
		if (!code || AT(code, 8, const void *) != api.code_type)
			continue;
		int64_t lasti = frame_lasti(f, code);
		if (lasti < 0)
			continue;
		uint8_t entry = L->minor <= 10 ? 1 : L->f_is_entry >= 0 ? AT(f, L->f_is_entry, uint8_t) != 0 : 0;
		out[n++] = (struct pyent){ f, code, lasti, 0, entry };
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
	if (api.as_utf8 && api.gil_check && api.gil_check()) {
		ssize_t n = 0;
		const char *t = api.as_utf8((void *)s, &n);
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

uint32_t python_frame_id(struct mr_writer *w, const struct pyent *e)
{
	const void *code = e->code;
	const void *name = AT(code, L->co_qualname, const void *);
	const void *file = AT(code, L->co_filename, const void *);
	int firstlineno = AT(code, L->co_firstlineno, int);
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
