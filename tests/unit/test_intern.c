/*
 * test_intern.c - lib/intern.c: dense ids in order of first sight, keys
 * of any bytes, and the same ids after the table has grown.
 */
#include <stdio.h>
#include <string.h>

#include "../../lib/intern.h"
#include "unit.h"

static void test_ids(void)
{
	struct intern t = INTERN_INIT;
	CHECK_EQ_U64(intern(&t, "", 0), 1);
	CHECK_EQ_U64(intern(&t, "a", 1), 2);
	CHECK_EQ_U64(intern(&t, "a\0b", 3), 3); /* NUL inside a key */
	CHECK_EQ_U64(intern(&t, "a\0c", 3), 4);
	CHECK_EQ_U64(intern(&t, "a", 1), 2);
	CHECK_EQ_U64(intern(&t, "", 0), 1);
	size_t len;
	const char *k = intern_key(&t, 3, &len);
	CHECK_EQ_U64(len, 3);
	CHECK(memcmp(k, "a\0b", 4) == 0); /* with its terminating NUL */
	CHECK_EQ_U64(t.n, 4);
	intern_free(&t);
	CHECK_EQ_U64(t.n, 0);
}

static void test_growth(void)
{
	struct intern t = INTERN_INIT;
	char buf[32];
	for (unsigned i = 0; i < 100000; i++) {
		int n = snprintf(buf, sizeof(buf), "key %u", i);
		if (!CHECK_EQ_U64(intern(&t, buf, (size_t)n), i + 1))
			break;
	}
	for (unsigned i = 0; i < 100000; i += 997) {
		int n = snprintf(buf, sizeof(buf), "key %u", i);
		CHECK_EQ_U64(intern(&t, buf, (size_t)n), i + 1);
		CHECK(strcmp(intern_key(&t, i + 1, NULL), buf) == 0);
	}
	CHECK_EQ_U64(t.n, 100000);
	CHECK(t.index_cap >= 2 * t.n);
	intern_free(&t);
}

int main(void)
{
	test_ids();
	test_growth();
	return unit_done();
}
