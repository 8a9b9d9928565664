/*
 * frame_norm.h - collapsed stacks made comparable across checkouts and
 * machines: the paths in frames made relative to a root, and on request
 * the line numbers dropped (memray-diff).
 *
 * A frame's text is "NAME (PLACE)": PLACE is "PATH:LINE", "PATH", a
 * module's name or a label, and is the balanced parenthesis at the end of
 * the frame, so that "f (/a (copy)/x.py:3)" and "g<void (int)> (libg.so)"
 * split where they should. Frames are compared as collapse_escape wrote
 * them (';' never inside a frame), and so are the roots.
 *
 * A path is stripped of, in this order:
 *  - its library directory: everything up to the last "site-packages/" or
 *    "dist-packages/" directory, or else up to ".../lib/pythonX.Y/" (the
 *    standard library), wherever the interpreter lives;
 *  - the longest of the explicit roots it is under, when there are any;
 *  - otherwise the automatic root: the deepest directory that holds every
 *    absolute path of the run that is not in a library directory, unless
 *    that is "/".
 */
#ifndef MEMRAY_FRAME_NORM_H
#define MEMRAY_FRAME_NORM_H

#include <stddef.h>

struct frame_norm {
	char **strip;      /* the explicit roots, escaped, each ending in '/' */
	size_t nstrip;
	int ignore_lines;  /* drop ":LINE" from every place */
	char *root;        /* the automatic root, ending in '/'; NULL before a path */
	size_t root_len;
};

/* A normaliser with the explicit roots dirs (none: the automatic root,
 * learned with frame_norm_learn). Dies if memory runs out. */
void frame_norm_init(struct frame_norm *n, char *const *dirs, size_t ndirs, int ignore_lines);
void frame_norm_free(struct frame_norm *n);
/* Takes the absolute paths of one collapsed stack (frames joined by ';')
 * into the automatic root. */
void frame_norm_learn(struct frame_norm *n, const char *stack, size_t len);
/* The automatic root without its final '/', "" if none applies (explicit
 * roots, no absolute path, or only "/"). */
const char *frame_norm_root(const struct frame_norm *n, size_t *len);
/* The stack with every frame normalised: a malloc'd, NUL-terminated
 * string of *out_len bytes. */
char *frame_norm_stack(const struct frame_norm *n, const char *stack, size_t len,
		       size_t *out_len);

/* Where PLACE is in frame s (n bytes): 1 with *place its offset (after
 * the '(') and *path_len the length of its path (PLACE without ":LINE"),
 * *place_len its whole length; 0 for a frame without one. */
int frame_place(const char *s, size_t n, size_t *place, size_t *place_len, size_t *path_len);
/* The length of path's library directory (through its final '/'), or 0. */
size_t library_dir_len(const char *path, size_t n);

#endif
