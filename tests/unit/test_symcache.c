/*
 * test_symcache.c - the symbol cache's file (lib/symcache.c): what is
 * put is read back, only while its debug file is unchanged; every cut
 * and every malformed field of a file is refused, never half read.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/symcache.h"
#include "unit.h"

static const uint8_t id[] = { 0xab, 0x01, 0xfe, 0x42 };

static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = malloc(1 << 20);
	*n = fread(buf, 1, 1 << 20, f);
	fclose(f);
	return buf;
}

static void write_file(const char *path, const char *s, size_t n)
{
	FILE *f = fopen(path, "wb");
	fwrite(s, 1, n, f);
	fclose(f);
}

#define DAYS(n) ((time_t)(n) * 24 * 60 * 60)

/* dir/name, written with s and its mtime at t */
static void aged(const char *dir, const char *name, const char *s, time_t t)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	write_file(path, s, strlen(s));
	struct timespec ts[2] = { { t, 0 }, { t, 0 } };
	utimensat(AT_FDCWD, path, ts, 0);
}

static int there(const char *dir, const char *name)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	struct stat st;
	return lstat(path, &st) == 0;
}

/* symcache_clean: only the cache's own files, by name, kind and what
 * they begin with; cache files a week unused, a killed writer's a day
 * old; once a day, by the stamp */
static void test_clean(const char *top)
{
	char d[300];
	snprintf(d, sizeof(d), "%s/clean", top);
	CHECK(mkdir(d, 0700) == 0);
	time_t now = time(NULL);
	const char *magic = "memray-c symbol cache 1 0.0.1\nid ab01\n";
	aged(d, "ab01", magic, now - DAYS(8));            /* removed */
	aged(d, "ab02", magic, now - DAYS(6));            /* used this week */
	aged(d, "ab03", "hello", now - DAYS(8));          /* not a cache's */
	aged(d, "notes.txt", magic, now - DAYS(30));      /* not its name */
	aged(d, "abc", magic, now - DAYS(30));            /* odd: not a build-id */
	aged(d, "AB06", magic, now - DAYS(30));           /* not as it names them */
	aged(d, ".ab01.Xy12Zq", magic, now - DAYS(2));    /* a killed writer's: removed */
	aged(d, ".ab07.Xy12Zq", "", now - DAYS(2));       /* removed, empty */
	aged(d, ".ab02.Xy12Zq", "", now - 3600);          /* maybe being written */
	aged(d, "ab08", magic, now + DAYS(3));            /* from the future: kept */
	char p[400], q[400];
	snprintf(p, sizeof(p), "%s/ab04", d);
	snprintf(q, sizeof(q), "%s/ab01", d);
	struct timespec old[2] = { { now - DAYS(30), 0 }, { now - DAYS(30), 0 } };
	CHECK(symlink(q, p) == 0);                         /* a link: kept */
	CHECK(utimensat(AT_FDCWD, p, old, AT_SYMLINK_NOFOLLOW) == 0);
	snprintf(p, sizeof(p), "%s/ab05", d);
	CHECK(mkdir(p, 0700) == 0);                        /* a directory: kept */
	CHECK(utimensat(AT_FDCWD, p, old, 0) == 0);
	snprintf(p, sizeof(p), "%s/ab0a", d);
	CHECK(mkfifo(p, 0600) == 0);                       /* a FIFO: kept */
	CHECK(utimensat(AT_FDCWD, p, old, 0) == 0);
	aged(d, "ab0b", "", now - DAYS(30));               /* empty: not a cache's */
	aged(d, ".ab0c.Xy12Zq", "not ours", now - DAYS(2)); /* not a writer's */
	CHECK_EQ_U64(symcache_clean(d, now), 3);
	CHECK(!there(d, "ab01"));
	CHECK(!there(d, ".ab01.Xy12Zq"));
	CHECK(!there(d, ".ab07.Xy12Zq"));
	const char *kept[] = { "ab02", "ab03", "notes.txt", "abc", "AB06", ".ab02.Xy12Zq",
			       "ab08", "ab04", "ab05", "ab0a", "ab0b", ".ab0c.Xy12Zq", ".cleaned" };
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		CHECK(there(d, kept[i]));
	/* not again the same day, though ab02 is now old */
	aged(d, "ab02", magic, now - DAYS(9));
	CHECK_EQ_U64(symcache_clean(d, now + 3600), 0);
	CHECK(there(d, "ab02"));
	/* a day later it is, and the writer's file of an hour before is
	 * then a day old too */
	CHECK_EQ_U64(symcache_clean(d, now + DAYS(1)), 2);
	CHECK(!there(d, "ab02"));
	CHECK(!there(d, ".ab02.Xy12Zq"));
	/* a stamp from the future is no stamp */
	aged(d, ".cleaned", "", now + DAYS(5));
	aged(d, "ab09", magic, now - DAYS(10));
	CHECK_EQ_U64(symcache_clean(d, now), 1);
	CHECK(!there(d, "ab09"));
	/* no directory: nothing, and none made */
	snprintf(p, sizeof(p), "%s/none", top);
	CHECK_EQ_U64(symcache_clean(p, now), 0);
	CHECK(access(p, F_OK) != 0);

	const char *left[] = { "ab03", "notes.txt", "abc", "AB06", "ab08", "ab04", "ab0a", "ab0b",
			       ".ab0c.Xy12Zq", ".cleaned" };
	for (size_t i = 0; i < sizeof(left) / sizeof(left[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", d, left[i]);
		CHECK(unlink(p) == 0);
	}
	snprintf(p, sizeof(p), "%s/ab05", d);
	CHECK(rmdir(p) == 0);
	CHECK(rmdir(d) == 0);
}

int main(void)
{
	char dir[] = "/tmp/test_symcache.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char debug[256], other[256], cache_dir[256], file[300];
	snprintf(debug, sizeof(debug), "%s/lib.debug", dir);
	snprintf(other, sizeof(other), "%s/other.debug", dir);
	snprintf(cache_dir, sizeof(cache_dir), "%s/a/b", dir); /* made on writing */
	snprintf(file, sizeof(file), "%s/ab01fe42", cache_dir);
	write_file(debug, "dwarf", 5);
	write_file(other, "dwarf, another", 14);
	struct stat st, st_other;
	CHECK(stat(debug, &st) == 0 && stat(other, &st_other) == 0);

	/* nothing kept yet */
	struct symcache *c = symcache_load(cache_dir, id, sizeof(id), "libx.so", debug, &st);
	CHECK_EQ_U64(symcache_count(c), 0);
	CHECK(symcache_get(c, 0x10) == NULL);
	/* named from another file than the one found: not kept */
	symcache_put(c, 0x99, "from other", other);
	symcache_put(c, 0x98, "from none", NULL);
	CHECK_EQ_U64(symcache_count(c), 0);
	symcache_put(c, 0x10, "main (a.c:3)", debug);
	symcache_put(c, 0x20, "outer (a.c:9)\ninner (b.h:2)", debug);
	symcache_put(c, 0x10, "not this one", debug); /* the first text stays */
	symcache_put(c, 0xffffffffffffffffull, "f \"x\" (\xc3\xa9.c:1)", debug);
	CHECK_EQ_U64(symcache_count(c), 3);
	CHECK(symcache_get(c, 0x99) == NULL);
	symcache_close(c);

	/* read back, exactly */
	c = symcache_load(cache_dir, id, sizeof(id), "libx.so", debug, &st);
	CHECK_EQ_U64(symcache_count(c), 3);
	CHECK_EQ_STR(symcache_get(c, 0x10), "main (a.c:3)");
	CHECK_EQ_STR(symcache_get(c, 0x20), "outer (a.c:9)\ninner (b.h:2)");
	CHECK_EQ_STR(symcache_get(c, 0xffffffffffffffffull), "f \"x\" (\xc3\xa9.c:1)");
	CHECK(symcache_get(c, 0x30) == NULL);
	symcache_close(c);
	/* a file used is touched, so that cleaning keeps it (once a day at
	 * most: one used yesterday keeps its time) */
	struct timespec old[2] = { { 0, UTIME_OMIT }, { time(NULL) - DAYS(6), 0 } };
	CHECK(utimensat(AT_FDCWD, file, old, 0) == 0);
	c = symcache_load(cache_dir, id, sizeof(id), "libx.so", debug, &st);
	CHECK_EQ_U64(symcache_count(c), 3);
	symcache_close(c);
	struct stat used;
	CHECK(stat(file, &used) == 0 && used.st_mtime > time(NULL) - 60);
	old[1].tv_sec = time(NULL) - 3600;
	CHECK(utimensat(AT_FDCWD, file, old, 0) == 0);
	c = symcache_load(cache_dir, id, sizeof(id), "libx.so", debug, &st);
	symcache_close(c);
	CHECK(stat(file, &used) == 0 && used.st_mtime == old[1].tv_sec);

	/* another module name (another link to the file): not these */
	c = symcache_load(cache_dir, id, sizeof(id), "liby.so", debug, &st);
	CHECK_EQ_U64(symcache_count(c), 0);
	symcache_close(c);
	/* another debug file found this time (a copy of the module without
	 * one beside it, one installed since): not these */
	c = symcache_load(cache_dir, id, sizeof(id), "libx.so", other, &st);
	CHECK_EQ_U64(symcache_count(c), 0);
	symcache_close(c);
	c = symcache_load(cache_dir, id, sizeof(id), "libx.so", debug, &st_other);
	CHECK_EQ_U64(symcache_count(c), 0);
	symcache_close(c);

	/* every cut of the file is refused, and so is every byte changed in
	 * its header's counts */
	size_t n = 0;
	char *buf = slurp(file, &n);
	CHECK(buf != NULL && n > 100);
	const char *why = NULL;
	c = symcache_new(cache_dir, id, sizeof(id), "libx.so", debug, &st);
	CHECK_EQ_U64(symcache_parse(c, buf, n, &why), 0);
	CHECK_EQ_U64(symcache_count(c), 3);
	/* (a cut at the end of an entry, or of the header, leaves a file with
	 * fewer entries: the 3 entries' starts, read as such) */
	size_t refused = 0, fewer = 0;
	for (size_t k = 0; k < n; k++) {
		why = NULL;
		int r = symcache_parse(c, buf, k, &why);
		refused += r == -1 && why != NULL && symcache_count(c) == 0;
		fewer += r == 0 && buf[k - 1] == '\n' && symcache_count(c) == fewer;
	}
	CHECK_EQ_U64(fewer, 3);
	CHECK_EQ_U64(refused + fewer, n);
	/* a length one too big or too small, in each counted field */
	for (char *p = buf; (p = memchr(p, '\n', (size_t)(buf + n - p))) != NULL; p++) {
		char *sp = p;
		while (sp > buf && sp[-1] != ' ' && sp[-1] != '\n')
			sp--;
		if (sp == buf || sp[-1] != ' ' || sp[0] < '1' || sp[0] > '9' || p[-1] == '0' ||
		    p[-1] == '9' || strncmp(sp - 1, " 1 ", 3) == 0)
			continue;
		for (int d = -1; d <= 1; d += 2) {
			p[-1] = (char)(p[-1] + d);
			why = NULL;
			int r = symcache_parse(c, buf, n, &why);
			/* a debug field's size or time changed reads as another
			 * debug file's (1); a count changed is malformed (-1) */
			CHECK(r != 0);
			CHECK_EQ_U64(symcache_count(c), 0);
			p[-1] = (char)(p[-1] - d);
		}
	}
	CHECK_EQ_U64(symcache_parse(c, buf, n, &why), 0);
	/* another module's id, not a cache, another version */
	char *bad = malloc(n + 16);
	memcpy(bad, buf, n);
	char *idl = strstr(bad, "id ab01fe42");
	idl[3] = 'c';
	CHECK_EQ_U64((uint64_t)(int64_t)symcache_parse(c, bad, n, &why), (uint64_t)-1);
	CHECK_EQ_STR(why, "it is another module's (its id line is not its name)");
	memcpy(bad, "xemray", 6);
	CHECK_EQ_U64((uint64_t)(int64_t)symcache_parse(c, bad, n, &why), (uint64_t)-1);
	CHECK_EQ_STR(why, "it is not a memray-c symbol cache");
	memcpy(bad, buf, n);
	char *nl = memchr(bad, '\n', n);
	nl[-1] = 'x'; /* the version */
	CHECK_EQ_U64(symcache_parse(c, bad, n, &why), 1);
	CHECK(why == NULL);
	/* an entry's address that is not hex */
	memcpy(bad, buf, n);
	char *e = strstr(bad, "\n10 12\n");
	CHECK(e != NULL);
	if (e) {
		e[1] = 'g';
		CHECK_EQ_U64((uint64_t)(int64_t)symcache_parse(c, bad, n, &why), (uint64_t)-1);
		CHECK_EQ_STR(why, "an entry's line is not an address and a length");
	}
	free(bad);
	symcache_close(c);

	/* the debug file changed since: the entries are not read */
	struct timespec t[2] = { { 0, UTIME_OMIT }, { 12345, 6789 } };
	CHECK(utimensat(AT_FDCWD, debug, t, 0) == 0);
	struct stat now;
	CHECK(stat(debug, &now) == 0);
	c = symcache_load(cache_dir, id, sizeof(id), "libx.so", debug, &now);
	CHECK_EQ_U64(symcache_count(c), 0);
	symcache_close(c);
	/* a malformed file is removed (said once) */
	write_file(file, "memray-c symbol cache 1 x\n", 5);
	c = symcache_load(cache_dir, id, sizeof(id), "libx.so", debug, &now);
	CHECK_EQ_U64(symcache_count(c), 0);
	symcache_close(c);
	CHECK(access(file, F_OK) != 0);
	/* a FIFO in its place is not waited on */
	CHECK(mkfifo(file, 0600) == 0);
	c = symcache_load(cache_dir, id, sizeof(id), "libx.so", debug, &now);
	CHECK_EQ_U64(symcache_count(c), 0);
	symcache_close(c);

	test_clean(dir);

	free(buf);
	unlink(file);
	unlink(debug);
	unlink(other);
	char sub[300];
	snprintf(sub, sizeof(sub), "%s/a/b", dir);
	rmdir(sub);
	snprintf(sub, sizeof(sub), "%s/a", dir);
	rmdir(sub);
	rmdir(dir);
	return unit_done();
}
