/*
 * unit.h - the unit tests' checks: header-only, no registration.
 *
 * A failed check prints file:line and what it saw, counts the failure and
 * lets the test go on. main() ends with `return unit_done();`, which
 * prints "N checks, M failed" and returns the exit status (1 if any
 * check failed). KNOWN_BUG() reports a bug that is known and not yet
 * fixed: it is printed but not counted as a failure.
 */
#ifndef MEMRAY_UNIT_H
#define MEMRAY_UNIT_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static unsigned unit_checks, unit_failed;

static inline int unit_check(int ok, const char *file, int line, const char *what)
{
	unit_checks++;
	if (!ok) {
		unit_failed++;
		printf("%s:%d: check failed: %s\n", file, line, what);
	}
	return ok;
}

static inline int unit_check_u64(uint64_t a, uint64_t b, const char *file, int line,
				 const char *sa, const char *sb)
{
	unit_checks++;
	if (a != b) {
		unit_failed++;
		printf("%s:%d: check failed: %s == %s: %" PRIu64 " (0x%" PRIx64 ") != %"
		       PRIu64 " (0x%" PRIx64 ")\n", file, line, sa, sb, a, a, b, b);
	}
	return a == b;
}

static inline int unit_check_str(const char *a, const char *b, const char *file,
				 int line, const char *sa, const char *sb)
{
	int ok = a && b && strcmp(a, b) == 0;
	unit_checks++;
	if (!ok) {
		unit_failed++;
		printf("%s:%d: check failed: %s == %s: \"%s\" != \"%s\"\n", file, line, sa,
		       sb, a ? a : "(null)", b ? b : "(null)");
	}
	return ok;
}

/* Each returns whether the check passed, so a test can stop early. */
#define CHECK(cond) unit_check(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_EQ_U64(a, b) \
	unit_check_u64((uint64_t)(a), (uint64_t)(b), __FILE__, __LINE__, #a, #b)
#define CHECK_EQ_STR(a, b) unit_check_str((a), (b), __FILE__, __LINE__, #a, #b)

#define KNOWN_BUG(...) do { \
	printf("KNOWN BUG: %s:%d: ", __FILE__, __LINE__); \
	printf(__VA_ARGS__); \
	putchar('\n'); \
} while (0)

static inline int unit_done(void)
{
	printf("%u checks, %u failed\n", unit_checks, unit_failed);
	return unit_failed ? 1 : 0;
}

#endif
