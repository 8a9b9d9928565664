/*
 * python.h - Python stacks without libpython at link time or headers at
 * run time.
 *
 * At an allocation the tracker walks the calling thread's own interpreter
 * frames, reading them as out-of-process profilers do (per-version
 * offsets: from 3.13 on those the interpreter publishes in _PyRuntime,
 * with a table for the rest, checked by the tests on every CPython
 * 3.9-3.15), so no frame object is
 * created and nothing runs per Python call. A frame is (code object,
 * instruction offset); its line and names are looked up once per
 * distinct pair and written as a PYFRAME record.
 */
#ifndef MEMRAY_PYTHON_H
#define MEMRAY_PYTHON_H

#include <stdint.h>

struct mr_writer;

/* One interpreter frame as read from memory. */
struct pyent {
	const void *frame, *code;
	int64_t lasti;
	/* the frame's code and instruction words as read (python_walk_from
	 * compares these) */
	uintptr_t code_word, instr_word;
	uint32_t node; /* in the per-thread cache: the trie node of the prefix */
	uint8_t entry; /* the root-most frame of one run of the evaluation loop */
	uint8_t flag;  /* 3.11: the frame's is_entry byte as read (0 elsewhere) */
	uint16_t run;  /* hybrid stacks: the level of this frame's run's entry frame */
	/* of an entry frame on 3.12+: the marker frame that run of the loop
	 * keeps on its C stack, so inside its native frame; else NULL */
	const void *shim;
};

enum { PY_NONE, PY_READ, PY_UNREAD };
/* Finds the C-API of the interpreter in this process, if any. Returns
 * PY_READ when the program is a CPython whose frames can be read,
 * PY_UNREAD when it is a Python whose frames cannot be read
 * (python_problem says why), else PY_NONE. Call once, from the
 * constructor. */
int python_start(void);
/* Why frames are not read (after PY_UNREAD), or a note on how they are
 * read when that is not the plain way (after PY_READ); "" if none. */
const char *python_problem(void);
/* Whether the interpreter is running now (cheap after the first yes). */
int python_ready(void);
/* Why an allocation has no Python frame (see python_why_none). */
enum py_none {
	PY_NONE_STARTUP = 1, /* the interpreter starting: before Py_Initialize
			      * is done, or the main thread before it runs
			      * Python code (compiling the script) */
	PY_NONE_SHUTDOWN,    /* the interpreter finalizing, or finalized */
	PY_NONE_THREAD_START, /* a thread with a Python thread state before
			       * it runs Python code */
	PY_NONE_NO_STATE,    /* a thread without a Python thread state: a C
			      * library's own, or one being made or ended */
	PY_NONE_BETWEEN,     /* a thread that ran Python code, with no Python
			      * frame now (the main thread compiling the
			      * script after site's imports; C code between
			      * Python calls) */
	PY_NONE_END
};
/* For a thread with no Python frame now: why, given whether it has run
 * Python code before; 0 when the program is not a CPython read here. */
int python_why_none(int seen_frames);
/* The calling thread's frames, root first, into out (at most max: the
 * innermost); returns how many, with *cut 1 when frames it would keep
 * were left at the root. Outside the lock. */
int python_walk(struct pyent *out, int max, int *cut);
/* The same, knowing the stack walked last (prev, root first, n frames):
 * returns how many of prev, from the root, are still the calling thread's
 * frames, exactly, with the frames above them in top (innermost first,
 * at most max, their count in *ntop); -1 when that cannot be had cheaply
 * (the caller walks with python_walk). Pure Python stacks only: entry
 * and shim are not set. */
int python_walk_from(const struct pyent *prev, int n, struct pyent *top, int max, int *ntop);
/* The same with entry and shim set as python_walk sets them, and compared
 * for the levels kept: for hybrid stacks. */
int python_walk_marks_from(const struct pyent *prev, int n, struct pyent *top, int max,
			   int *ntop);
/* The PYFRAME id of e, writing its strings and frame record if new.
 * Under the tracker's lock. */
uint32_t python_frame_id(struct mr_writer *w, const struct pyent *e);
/* What python_frame_id takes a code object to be besides its address:
 * its name, file and first line (another code object may come to the
 * address of a freed one). Read from the code object, which a frame of
 * the calling thread runs; no lock. */
struct pycode_id {
	const void *name, *file;
	int firstlineno;
};
void python_code_id(const void *code, struct pycode_id *id);
/* Until done, asks the interpreter to run the code that makes
 * threading.Thread report its names. From the sampler thread. */
void python_poll(void);
/* pthread_create was called from caller: if it is the main interpreter
 * starting a threading.Thread, by a thread that holds its GIL, returns 1
 * with the Thread's name in name (fewer than cap bytes), having reported
 * the main thread's name at the first such start; else 0. No Python code
 * runs; with may_patch, threading is to be wrapped soon (see python.c). */
int python_thread_starting(const void *caller, char *name, size_t cap, int may_patch);
/* The code of the interpreter's evaluation function, where hybrid stacks
 * put Python frames; 0 if unknown. */
int python_eval_range(uintptr_t *lo, uintptr_t *hi);
/* Whether each run of the evaluation loop leaves a marker frame on its
 * C stack (3.12+: pyent.shim). */
int python_marks_runs(void);
/* The load address of the executable or library that holds the
 * interpreter, or NULL. */
const void *python_image(void);
/* Forgets which frames and strings the stream has (a forked child starts
 * a stream of its own). */
void python_forget(void);
/* "3.12.1" or "" */
const char *python_version(void);

#endif
