/*
 * test_got.c - lib/tracker/got.c on this very process: the real malloc
 * is found past the executable's PLT stub; patching sends the program's
 * calls (through the PLT) and glibc's own (through its GOT) to a hook;
 * restoring puts back exactly what was there, with the same page
 * protections; a second patch works after a restore.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/tracker/got.h"
#include "unit.h"

static void *(*real_malloc)(size_t);
static void (*real_free)(void *);
static volatile size_t malloc_calls, free_calls;

static void *hook_malloc(size_t n)
{
	malloc_calls++;
	return real_malloc(n);
}

static void hook_free(void *p)
{
	free_calls++;
	real_free(p);
}

static const struct got_hook hooks[] = {
	{ "malloc", (void *)hook_malloc },
	{ "free", (void *)hook_free },
};

/* What this program's code sees as malloc's address (through the GOT in
 * a position-independent executable). */
__attribute__((noinline)) static void *malloc_address(void)
{
	void *(*volatile f)(size_t) = malloc;
	return (void *)f;
}

/* The mappings of files (the objects' pages; got.c's own tables are
 * anonymous), with their protections. */
static void maps(char *out, size_t n)
{
	static char buf[1 << 16];
	int fd = open("/proc/self/maps", O_RDONLY);
	size_t have = 0, o = 0;
	ssize_t k;
	while (have < sizeof(buf) - 1 && (k = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0)
		have += (size_t)k;
	close(fd);
	buf[have] = 0;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
		if (strchr(line, '/') && o + strlen(line) + 2 < n)
			o += (size_t)sprintf(out + o, "%s\n", line);
	out[o] = 0;
}

int main(void)
{
#if defined(__SANITIZE_ADDRESS__)
	/* the sanitizer's allocator owns malloc here; nothing to learn */
	printf("skipped under AddressSanitizer\n");
	return 0;
#endif
	real_malloc = (void *(*)(size_t))got_lookup("malloc", NULL);
	real_free = (void (*)(void *))got_lookup("free", NULL);
	CHECK(real_malloc != NULL);
	CHECK(real_free != NULL);
	/* the definition in libc, as RTLD_NEXT from the executable finds it */
	CHECK(real_malloc == dlsym(RTLD_NEXT, "malloc"));
	CHECK(got_lookup("memray_no_such_function", NULL) == NULL);
	Dl_info di;
	CHECK(dladdr((void *)real_malloc, &di) && strstr(di.dli_fname, "libc.so"));

	static char before[1 << 16], after[1 << 16];
	void *addr_before = malloc_address();
	maps(before, sizeof(before));

	int n = got_patch(hooks, 2, NULL);
	CHECK(n >= 3); /* this program's malloc and free, glibc's own */
	CHECK(malloc_address() == (void *)hook_malloc);
	malloc_calls = free_calls = 0;
	void *p = malloc(100);
	free(p);
	CHECK_EQ_U64(malloc_calls, 1);
	CHECK_EQ_U64(free_calls, 1);
	/* strdup allocates inside glibc */
	char *s = strdup("glibc calls malloc through its GOT");
	CHECK_EQ_U64(malloc_calls, 2);
	free(s);
	/* a second patch changes nothing */
	CHECK_EQ_U64(got_patch(hooks, 2, NULL), 0);

	CHECK_EQ_U64(got_restore(), n);
	CHECK(malloc_address() == addr_before);
	maps(after, sizeof(after));
	CHECK(strcmp(before, after) == 0);
	malloc_calls = free_calls = 0;
	p = malloc(10);
	s = strdup("x");
	free(s);
	free(p);
	CHECK_EQ_U64(malloc_calls, 0);
	CHECK_EQ_U64(free_calls, 0);
	CHECK_EQ_U64(got_restore(), 0);

	/* and again */
	CHECK_EQ_U64(got_patch(hooks, 2, NULL), n);
	p = malloc(1);
	CHECK_EQ_U64(malloc_calls, 1);
	free(p);
	CHECK_EQ_U64(got_restore(), n);
	CHECK(malloc_address() == addr_before);
	return unit_done();
}
