/*
 * test_frame_norm.c - lib/frame_norm.c: where a frame's place is, which
 * directories are a Python library's, and stacks normalised against the
 * automatic root, explicit roots and without lines.
 */
#include <stdlib.h>
#include <string.h>

#include "../../lib/frame_norm.h"
#include "unit.h"

/* frame's place and path, as "place|path", or "none" */
static char *place_of(const char *frame)
{
	static char buf[256];
	size_t place, place_len, path_len;
	if (!frame_place(frame, strlen(frame), &place, &place_len, &path_len))
		return "none";
	snprintf(buf, sizeof(buf), "%.*s|%.*s", (int)place_len, frame + place, (int)path_len,
		 frame + place);
	return buf;
}

static void test_place(void)
{
	CHECK_EQ_STR(place_of("f (/a/x.py:12)"), "/a/x.py:12|/a/x.py");
	CHECK_EQ_STR(place_of("f (/a (copy)/x.py:3)"), "/a (copy)/x.py:3|/a (copy)/x.py");
	CHECK_EQ_STR(place_of("std::function<void (int)>::_M_invoke (libfoo.so)"),
		     "libfoo.so|libfoo.so");
	CHECK_EQ_STR(place_of("g (<frozen importlib._bootstrap>:1178)"),
		     "<frozen importlib._bootstrap>:1178|<frozen importlib._bootstrap>");
	CHECK_EQ_STR(place_of("worker (thread 123)"), "thread 123|thread 123");
	CHECK_EQ_STR(place_of("h (:12)"), ":12|:12"); /* no path before the line */
	CHECK_EQ_STR(place_of("[unknown]"), "none");
	CHECK_EQ_STR(place_of("foo(int)"), "none"); /* no space before '(' */
	CHECK_EQ_STR(place_of("(x)"), "none");
	CHECK_EQ_STR(place_of("f (a))"), "none"); /* unbalanced */
	CHECK_EQ_STR(place_of("0x7f00"), "none");
}

static size_t lib_len(const char *path)
{
	return library_dir_len(path, strlen(path));
}

static void test_library(void)
{
	CHECK_EQ_U64(lib_len("/usr/lib/python3.11/json/decoder.py"), 20);
	CHECK_EQ_U64(lib_len("/opt/py/lib64/python3.13t/json/decoder.py"), 26);
	CHECK_EQ_U64(lib_len("/usr/lib/python3/dist-packages/requests/api.py"), 31);
	CHECK_EQ_U64(lib_len("/v/lib/python3.12/site-packages/numpy/core/x.py"), 32);
	CHECK_EQ_U64(lib_len("/home/a/proj/app.py"), 0);
	CHECK_EQ_U64(lib_len("/home/a/lib/pythonic/app.py"), 0);
	CHECK_EQ_U64(lib_len("/home/a/my-site-packages/app.py"), 0);
	CHECK_EQ_U64(lib_len("site-packages/x.py"), 0); /* a directory, not a prefix */
}

/* stack normalised by n, in a static buffer */
static const char *norm(const struct frame_norm *n, const char *stack)
{
	static char buf[512];
	size_t len;
	char *t = frame_norm_stack(n, stack, strlen(stack), &len);
	snprintf(buf, sizeof(buf), "%s", t);
	CHECK_EQ_U64(len, strlen(t));
	free(t);
	return buf;
}

static void test_root(void)
{
	struct frame_norm n;
	const char *a = "<module> (/w/a/proj/app.py:3);put (/w/a/proj/db/store.py:6)";
	const char *b = "decode (/usr/lib/python3.11/json/decoder.py:337);g (file.c:42)";
	frame_norm_init(&n, NULL, 0, 0);
	size_t len;
	CHECK_EQ_STR(frame_norm_root(&n, &len), "");
	frame_norm_learn(&n, a, strlen(a));
	frame_norm_learn(&n, b, strlen(b)); /* the library path is not the run's own */
	frame_norm_root(&n, &len);
	CHECK_EQ_U64(len, 9);
	CHECK(memcmp(frame_norm_root(&n, &len), "/w/a/proj", 9) == 0);
	CHECK_EQ_STR(norm(&n, a), "<module> (app.py:3);put (db/store.py:6)");
	CHECK_EQ_STR(norm(&n, b), "decode (json/decoder.py:337);g (file.c:42)");
	CHECK_EQ_STR(norm(&n, "x (/elsewhere/y.py:1);[unknown]"), "x (/elsewhere/y.py:1);[unknown]");
	/* a path elsewhere narrows the root to "/", which is not stripped */
	frame_norm_learn(&n, "x (/elsewhere/y.py:1)", 21);
	CHECK_EQ_STR(frame_norm_root(&n, &len), "");
	CHECK_EQ_STR(norm(&n, a), a);
	frame_norm_free(&n);
}

static void test_explicit(void)
{
	struct frame_norm n;
	char *dirs[] = { "/w", "/w/a/", "/x;y" };
	frame_norm_init(&n, dirs, 3, 1);
	const char *a = "<module> (/w/a/proj/app.py:3);f (/w/b/c.py:9);h (/x\\x3by/z.py:1)";
	frame_norm_learn(&n, a, strlen(a)); /* no automatic root with explicit ones */
	size_t len;
	CHECK_EQ_STR(frame_norm_root(&n, &len), "");
	CHECK_EQ_STR(norm(&n, a), "<module> (proj/app.py);f (b/c.py);h (z.py)");
	CHECK_EQ_STR(norm(&n, "g (<frozen site>:12);f (/wa/x.py:1);z (thread 7)"),
		     "g (<frozen site>);f (/wa/x.py);z (thread 7)");
	frame_norm_free(&n);
}

int main(void)
{
	test_place();
	test_library();
	test_root();
	test_explicit();
	return unit_done();
}
