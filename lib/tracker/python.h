/*
 * python.h - Python stacks without libpython at link time or headers at
 * run time.
 *
 * At an allocation the tracker walks the calling thread's own interpreter
 * frames, reading them as out-of-process profilers do (per-version
 * offsets, found by compiling against each version's internal headers and
 * checked by the tests on every CPython 3.9-3.13), so no frame object is
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
	uint32_t node; /* in the per-thread cache: the trie node of the prefix */
	uint8_t entry; /* the root-most frame of one run of the evaluation loop */
};

/* Finds the C-API of the interpreter in this process, if any. Returns 1
 * when the program is CPython 3.9-3.13. Call once, from the constructor. */
int python_start(void);
/* Whether the interpreter is running now (cheap after the first yes). */
int python_ready(void);
/* The calling thread's frames, root first, into out (at most max);
 * returns how many. Outside the lock. */
int python_walk(struct pyent *out, int max);
/* The PYFRAME id of e, writing its strings and frame record if new.
 * Under the tracker's lock. */
uint32_t python_frame_id(struct mr_writer *w, const struct pyent *e);
/* Until done, asks the interpreter to run the code that makes
 * threading.Thread report its names. From the sampler thread. */
void python_poll(void);
/* The code of the interpreter's evaluation function, where hybrid stacks
 * put Python frames; 0 if unknown. */
int python_eval_range(uintptr_t *lo, uintptr_t *hi);
/* Forgets which frames and strings the stream has (a forked child starts
 * a stream of its own). */
void python_forget(void);
/* "3.12.1" or "" */
const char *python_version(void);

#endif
