/*
 * frame_norm.c - see frame_norm.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collapse.h"
#include "frame_norm.h"
#include "util.h"

/* ---- a frame's parts ------------------------------------------------------- */

int frame_place(const char *s, size_t n, size_t *place, size_t *place_len, size_t *path_len)
{
	if (n < 4 || s[n - 1] != ')')
		return 0;
	size_t open = n - 1;
	int depth = 0;
	for (;;) {
		depth += s[open] == ')';
		depth -= s[open] == '(';
		if (depth == 0 || open == 0)
			break;
		open--;
	}
	if (depth != 0 || open < 2 || s[open - 1] != ' ')
		return 0;
	*place = open + 1;
	*place_len = n - 1 - *place;
	const char *p = s + *place, *colon = p + *place_len;
	while (colon > p && colon[-1] >= '0' && colon[-1] <= '9')
		colon--;
	if (colon < p + *place_len && colon - 1 > p && colon[-1] == ':')
		*path_len = (size_t)(colon - 1 - p);
	else
		*path_len = *place_len;
	return 1;
}

/* The end of the last "/NAME/" in path (n bytes), or 0. */
static size_t after_last_dir(const char *path, size_t n, const char *name)
{
	size_t k = strlen(name), end = 0;
	for (size_t i = 0; i + k + 2 <= n; i++)
		if (path[i] == '/' && memcmp(path + i + 1, name, k) == 0 && path[i + 1 + k] == '/')
			end = i + k + 2;
	return end;
}

/* The end of the last "/lib/pythonX.Y/" or "/lib64/pythonX.Y/" in path
 * (any suffix of letters after the version, as in python3.13t), or 0. */
static size_t after_stdlib_dir(const char *path, size_t n)
{
	size_t end = 0;
	for (size_t i = 0; i + 12 <= n; i++) {
		size_t j;
		if (memcmp(path + i, "/lib/python", 11) == 0)
			j = i + 11;
		else if (i + 13 <= n && memcmp(path + i, "/lib64/python", 13) == 0)
			j = i + 13;
		else
			continue;
		size_t digits = 0;
		while (j < n && ((path[j] >= '0' && path[j] <= '9') || path[j] == '.'))
			digits += path[j++] != '.';
		while (j < n && path[j] >= 'a' && path[j] <= 'z')
			j++;
		if (digits && j < n && path[j] == '/')
			end = j + 1;
	}
	return end;
}

size_t library_dir_len(const char *path, size_t n)
{
	size_t a = after_last_dir(path, n, "site-packages");
	size_t b = after_last_dir(path, n, "dist-packages");
	if (a || b)
		return a > b ? a : b;
	return after_stdlib_dir(path, n);
}

/* ---- the roots ---------------------------------------------------------------- */

void frame_norm_init(struct frame_norm *n, char *const *dirs, size_t ndirs, int ignore_lines)
{
	memset(n, 0, sizeof(*n));
	n->ignore_lines = ignore_lines;
	n->strip = xrealloc(NULL, (ndirs ? ndirs : 1) * sizeof(*n->strip));
	for (size_t i = 0; i < ndirs; i++) {
		char *t = NULL;
		size_t len = 0;
		FILE *m = open_memstream(&t, &len);
		if (!m)
			die(EXIT_USAGE, "out of memory");
		collapse_escape(m, dirs[i], strlen(dirs[i]));
		fclose(m);
		if (len == 0 || t[len - 1] != '/') {
			t = xrealloc(t, len + 2);
			t[len] = '/';
			t[len + 1] = 0;
		}
		n->strip[n->nstrip++] = t;
	}
}

void frame_norm_free(struct frame_norm *n)
{
	for (size_t i = 0; i < n->nstrip; i++)
		free(n->strip[i]);
	free(n->strip);
	free(n->root);
	memset(n, 0, sizeof(*n));
}

/* Narrows the automatic root to a directory that also holds path. */
static void learn_path(struct frame_norm *n, const char *path, size_t len)
{
	size_t dir = len;
	while (dir > 0 && path[dir - 1] != '/')
		dir--;
	if (!n->root) {
		n->root = xrealloc(NULL, dir + 1);
		memcpy(n->root, path, dir);
		n->root[dir] = 0;
		n->root_len = dir;
		return;
	}
	size_t k = 0;
	while (k < n->root_len && k < dir && n->root[k] == path[k])
		k++;
	while (k > 0 && n->root[k - 1] != '/')
		k--;
	n->root_len = k;
	n->root[k] = 0;
}

void frame_norm_learn(struct frame_norm *n, const char *stack, size_t len)
{
	if (n->nstrip)
		return;
	const char *s = stack, *e = stack + len;
	while (s < e) {
		const char *semi = memchr(s, ';', (size_t)(e - s));
		size_t flen = semi ? (size_t)(semi - s) : (size_t)(e - s);
		size_t place, place_len, path_len;
		if (frame_place(s, flen, &place, &place_len, &path_len) && path_len &&
		    s[place] == '/' && !library_dir_len(s + place, path_len))
			learn_path(n, s + place, path_len);
		s += flen + 1;
	}
}

const char *frame_norm_root(const struct frame_norm *n, size_t *len)
{
	if (n->nstrip || !n->root || n->root_len <= 1) {
		*len = 0;
		return "";
	}
	*len = n->root_len - 1;
	return n->root;
}

/* ---- normalising ---------------------------------------------------------------- */

/* How many leading bytes of path (n bytes) go: its library directory, its
 * longest explicit root, or the automatic root. */
static size_t strip_len(const struct frame_norm *nm, const char *path, size_t n)
{
	size_t k = library_dir_len(path, n);
	if (k)
		return k;
	for (size_t i = 0; i < nm->nstrip; i++) {
		size_t d = strlen(nm->strip[i]);
		if (d < n && d > k && memcmp(path, nm->strip[i], d) == 0)
			k = d;
	}
	if (!nm->nstrip && nm->root && nm->root_len > 1 && nm->root_len < n &&
	    memcmp(path, nm->root, nm->root_len) == 0)
		k = nm->root_len;
	return k;
}

/* Appends frame s (n bytes), normalised, at out; returns the bytes written
 * (never more than n). */
static size_t norm_frame(const struct frame_norm *nm, const char *s, size_t n, char *out)
{
	size_t place, place_len, path_len;
	if (!frame_place(s, n, &place, &place_len, &path_len)) {
		memcpy(out, s, n);
		return n;
	}
	size_t o = 0, cut = strip_len(nm, s + place, path_len);
	memcpy(out, s, place);
	o += place;
	memcpy(out + o, s + place + cut, path_len - cut);
	o += path_len - cut;
	if (!nm->ignore_lines) {
		memcpy(out + o, s + place + path_len, place_len - path_len);
		o += place_len - path_len;
	}
	out[o++] = ')';
	return o;
}

char *frame_norm_stack(const struct frame_norm *n, const char *stack, size_t len,
		       size_t *out_len)
{
	char *out = xrealloc(NULL, len + 1);
	size_t o = 0;
	const char *s = stack, *e = stack + len;
	while (s < e) {
		const char *semi = memchr(s, ';', (size_t)(e - s));
		size_t flen = semi ? (size_t)(semi - s) : (size_t)(e - s);
		if (s != stack)
			out[o++] = ';';
		o += norm_frame(n, s, flen, out + o);
		s += flen + 1;
	}
	out[o] = 0;
	*out_len = o;
	return out;
}
