/*
 * symcache.c - see symcache.h.
 *
 * A cache file, dir/<build-id in hex>, is text with counted fields:
 *
 *	memray-c symbol cache 1 VERSION\n
 *	id HEX\n
 *	module LEN\n BYTES\n
 *	debug SIZE SECONDS NANOSECONDS INODE CSECONDS CNANOSECONDS LEN\n BYTES\n
 *	ADDR LEN\n BYTES\n			(an entry, as many as there are)
 *
 * VERSION is memray-c's own: another version may name frames otherwise.
 * debug is the file the entries were named from (the module file itself
 * when its DWARF is its own), by its path and by its size, modification
 * time, inode and change time when it was found (a file replaced by
 * another of the same size and time, as cp -p or rsync -t do, is another
 * inode or another change time). An entry is a module address
 * (hex) and its frames as sym_frames gives them.
 *
 * The cache is kept from growing without end as debuginfod's client keeps
 * its own: a file is touched when a reading uses it (at most once a day),
 * and once a day (the mtime of dir/.cleaned says when it was last done)
 * the first reading removes the cache files neither written nor touched
 * for UNUSED_DAYS days, and a killed writer's temporary files a day old.
 * Nothing else in the directory is touched: only regular files named as
 * the cache names them, that begin as its files do.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stream.h"
#include "symcache.h"
#include "util.h"

/* what every cache file begins with, of any version; then this one's */
#define CACHE_KIND "memray-c symbol cache "
#define CACHE_MAGIC CACHE_KIND "1 " MEMRAY_VERSION
#define FILE_MAX (64u << 20)   /* a bigger file is not read */
#define TEXT_MAX (64u << 10)   /* an entry's text, at most */
#define ENTRIES_MAX (1u << 20) /* entries kept for a module, at most */
#define DAY (24 * 60 * 60)
#define UNUSED_DAYS 7          /* a cache file not used for as long is removed */

struct kept {
	uint64_t addr;
	char *text; /* NULL: an empty slot */
};

struct symcache {
	char *dir, *module;
	uint8_t id[MR_BUILD_ID_MAX];
	uint32_t id_len;
	char *debug_path; /* what the entries are named from */
	uint64_t debug_st[6]; /* as it was found: size, mtime (s, ns), inode, ctime (s, ns) */
	struct kept *tab;
	size_t cap, count;
	int fresh; /* put added entries: write the file anew */
};

const char *symcache_dir(void)
{
	static char dir[4096];
	static int done;
	if (done)
		return dir[0] ? dir : NULL;
	done = 1;
	const char *env = getenv("MEMRAY_SYMBOL_CACHE");
	int n = -1;
	if (env) {
		if (*env && strcmp(env, "off") != 0)
			n = snprintf(dir, sizeof(dir), "%s", env);
	} else if (getenv("XDG_CACHE_HOME") && getenv("XDG_CACHE_HOME")[0] == '/') {
		n = snprintf(dir, sizeof(dir), "%s/memray-c/symbols", getenv("XDG_CACHE_HOME"));
	} else if (getenv("HOME") && getenv("HOME")[0] == '/') {
		n = snprintf(dir, sizeof(dir), "%s/.cache/memray-c/symbols", getenv("HOME"));
	}
	if (n <= 0 || (size_t)n >= sizeof(dir))
		dir[0] = 0;
	return dir[0] ? dir : NULL;
}

struct symcache *symcache_new(const char *dir, const uint8_t *id, uint32_t id_len,
			      const char *module, const char *debug_path, const struct stat *st)
{
	struct symcache *c = xrealloc(NULL, sizeof(*c));
	memset(c, 0, sizeof(*c));
	c->dir = xstrdup(dir);
	c->module = xstrdup(module);
	c->id_len = id_len > MR_BUILD_ID_MAX ? MR_BUILD_ID_MAX : id_len;
	memcpy(c->id, id, c->id_len);
	c->debug_path = xstrdup(debug_path);
	c->debug_st[0] = (uint64_t)st->st_size;
	c->debug_st[1] = (uint64_t)st->st_mtim.tv_sec;
	c->debug_st[2] = (uint64_t)st->st_mtim.tv_nsec;
	c->debug_st[3] = (uint64_t)st->st_ino;
	c->debug_st[4] = (uint64_t)st->st_ctim.tv_sec;
	c->debug_st[5] = (uint64_t)st->st_ctim.tv_nsec;
	return c;
}

size_t symcache_count(const struct symcache *c)
{
	return c ? c->count : 0;
}

static size_t slot_of(uint64_t addr, size_t cap)
{
	uint64_t h = addr * 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 24) & (cap - 1);
}

static void clear(struct symcache *c)
{
	for (size_t i = 0; i < c->cap; i++)
		free(c->tab[i].text);
	free(c->tab);
	c->tab = NULL;
	c->cap = c->count = 0;
}

/* Adds addr's text (taken, not copied) unless addr is kept already. */
static void add(struct symcache *c, uint64_t addr, char *text)
{
	if ((c->count + 1) * 2 > c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		struct kept *t = xrealloc(NULL, cap * sizeof(*t));
		memset(t, 0, cap * sizeof(*t));
		for (size_t i = 0; i < c->cap; i++)
			if (c->tab[i].text) {
				size_t j = slot_of(c->tab[i].addr, cap);
				while (t[j].text)
					j = (j + 1) & (cap - 1);
				t[j] = c->tab[i];
			}
		free(c->tab);
		c->tab = t;
		c->cap = cap;
	}
	size_t j = slot_of(addr, c->cap);
	while (c->tab[j].text) {
		if (c->tab[j].addr == addr) {
			free(text);
			return;
		}
		j = (j + 1) & (c->cap - 1);
	}
	c->tab[j] = (struct kept){ addr, text };
	c->count++;
}

const char *symcache_get(const struct symcache *c, uint64_t addr)
{
	if (!c || !c->count)
		return NULL;
	size_t j = slot_of(addr, c->cap);
	while (c->tab[j].text) {
		if (c->tab[j].addr == addr)
			return c->tab[j].text;
		j = (j + 1) & (c->cap - 1);
	}
	return NULL;
}

/* ---- reading --------------------------------------------------------------- */

struct cursor {
	const char *p, *end;
	const char *why;
};

/* The next line, without its '\n', in *line (NUL-free); 0, or -1 at the
 * end or at a line that is not one. */
static int next_line(struct cursor *k, char *line, size_t cap)
{
	const char *nl = memchr(k->p, '\n', (size_t)(k->end - k->p));
	if (!nl) {
		k->why = k->p == k->end ? "it ends too soon" : "its last line is cut";
		return -1;
	}
	size_t n = (size_t)(nl - k->p);
	if (n >= cap || memchr(k->p, 0, n)) {
		k->why = "a line is too long or holds a NUL byte";
		return -1;
	}
	memcpy(line, k->p, n);
	line[n] = 0;
	k->p = nl + 1;
	return 0;
}

/* Unsigned decimal (base 10) or hex (base 16) numbers of a line, all of
 * it, separated by one space each. */
static int numbers(const char *s, int base, uint64_t *v, int n)
{
	for (int i = 0; i < n; i++) {
		if (!(base == 16 ? (s[0] >= '0' && s[0] <= '9') || (s[0] >= 'a' && s[0] <= 'f')
				 : s[0] >= '0' && s[0] <= '9'))
			return -1;
		char *e;
		errno = 0;
		unsigned long long x = strtoull(s, &e, base);
		if (errno || e - s > 20)
			return -1;
		v[i] = x;
		if (i + 1 < n && *e != ' ')
			return -1;
		s = e + (i + 1 < n);
	}
	return *s ? -1 : 0;
}

/* len bytes and a '\n' after them: a copy with a NUL added. */
static char *counted(struct cursor *k, uint64_t len)
{
	if (len > TEXT_MAX || (uint64_t)(k->end - k->p) < len + 1 || k->p[len] != '\n' ||
	    memchr(k->p, 0, (size_t)len)) {
		k->why = "a counted field does not fit its count";
		return NULL;
	}
	char *s = xrealloc(NULL, (size_t)len + 1);
	memcpy(s, k->p, (size_t)len);
	s[len] = 0;
	k->p += len + 1;
	return s;
}

/* A "KEY NUMBERS... LEN\n" line and the field it counts. */
static char *keyed(struct cursor *k, const char *key, uint64_t *v, int n)
{
	char line[256];
	size_t kl = strlen(key);
	if (next_line(k, line, sizeof(line)) < 0)
		return NULL;
	if (strncmp(line, key, kl) != 0 || line[kl] != ' ' || numbers(line + kl + 1, 10, v, n) < 0) {
		k->why = "a header line is not what it should be";
		return NULL;
	}
	return counted(k, v[n - 1]);
}

int symcache_parse(struct symcache *c, const char *buf, size_t len, const char **why)
{
	struct cursor k = { buf, buf + len, NULL };
	char line[256], want[2 * MR_BUILD_ID_MAX + 8];
	uint64_t v[7];
	char *module = NULL, *debug = NULL;
	clear(c);
	if (next_line(&k, line, sizeof(line)) < 0)
		goto bad;
	if (strncmp(line, CACHE_KIND, sizeof(CACHE_KIND) - 1) != 0) {
		k.why = "it is not a memray-c symbol cache";
		goto bad;
	}
	if (strcmp(line, CACHE_MAGIC) != 0) {
		*why = NULL; /* another version's: not read, not malformed */
		return 1;
	}
	memcpy(want, "id ", 3);
	hex_string(want + 3, c->id, c->id_len);
	if (next_line(&k, line, sizeof(line)) < 0)
		goto bad;
	if (strcmp(line, want) != 0) {
		k.why = "it is another module's (its id line is not its name)";
		goto bad;
	}
	if (!(module = keyed(&k, "module", v, 1)) || !(debug = keyed(&k, "debug", v, 7)))
		goto bad;
	/* named from another file than the one this reading finds, or from
	 * that file before it changed; or another name for the module (a
	 * copy, a link), which a frame without a symbol shows: not these */
	int other = strcmp(module, c->module) != 0 || strcmp(debug, c->debug_path) != 0 ||
		    memcmp(v, c->debug_st, sizeof(c->debug_st)) != 0;
	free(module);
	free(debug);
	module = debug = NULL;
	if (other) {
		*why = NULL;
		return 1;
	}
	while (k.p < k.end) {
		if (next_line(&k, line, sizeof(line)) < 0)
			goto bad;
		char *sp = strchr(line, ' ');
		if (!sp) {
			k.why = "an entry's line is not an address and a length";
			goto bad;
		}
		*sp = 0;
		uint64_t n;
		if (numbers(line, 16, &v[0], 1) < 0 || numbers(sp + 1, 10, &n, 1) < 0) {
			k.why = "an entry's line is not an address and a length";
			goto bad;
		}
		char *text = counted(&k, n);
		if (!text)
			goto bad;
		if (c->count >= ENTRIES_MAX) {
			free(text);
			k.why = "it holds too many entries";
			goto bad;
		}
		add(c, v[0], text);
	}
	return 0;
bad:
	free(module);
	free(debug);
	clear(c);
	*why = k.why;
	return -1;
}

/* ---- cleaning ------------------------------------------------------------- */

/* A cache file's name: a build-id in hex. */
static int cache_name(const char *s)
{
	size_t n = strspn(s, "0123456789abcdef");
	return n > 0 && n % 2 == 0 && n <= 2 * MR_BUILD_ID_MAX && !s[n];
}

/* A temporary file's, as save() makes them: .HEX.XXXXXX */
static int temp_name(const char *s)
{
	if (s[0] != '.')
		return 0;
	size_t n = strspn(s + 1, "0123456789abcdef");
	return n > 0 && n % 2 == 0 && s[1 + n] == '.' && strlen(s + 2 + n) == 6;
}

/* Whether the file is one of the cache's by what it holds: a cache file
 * of any version, or nothing yet for a killed writer's (temp: save()
 * renames a cache file into place whole). */
static int ours(int dfd, const char *name, const struct stat *fs, int temp)
{
	if (fs->st_size == 0)
		return temp;
	char head[sizeof(CACHE_KIND) - 1];
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int yes = read(fd, head, sizeof(head)) == (ssize_t)sizeof(head) &&
		  memcmp(head, CACHE_KIND, sizeof(head)) == 0;
	close(fd);
	return yes;
}

int symcache_clean(const char *dir, time_t now)
{
	char stamp[4200];
	snprintf(stamp, sizeof(stamp), "%s/.cleaned", dir);
	struct stat st;
	if (stat(stamp, &st) == 0 && st.st_mtime <= now && now - st.st_mtime < DAY)
		return 0;
	/* the stamp first: another reader at the same time leaves it be */
	int fd = open(stamp, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
		      0644);
	if (fd < 0)
		return 0; /* (no directory yet, or not ours to write) */
	int stamped = futimens(fd, NULL) == 0;
	close(fd);
	DIR *d = stamped ? opendir(dir) : NULL;
	if (!d)
		return 0;
	int removed = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int cache = cache_name(e->d_name), temp = !cache && temp_name(e->d_name);
		if (!cache && !temp)
			continue;
		struct stat fs;
		if (fstatat(dirfd(d), e->d_name, &fs, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(fs.st_mode) || fs.st_mtime > now)
			continue;
		if (now - fs.st_mtime >= (cache ? UNUSED_DAYS * DAY : DAY) &&
		    ours(dirfd(d), e->d_name, &fs, temp) && unlinkat(dirfd(d), e->d_name, 0) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}

/* ---- reading --------------------------------------------------------------- */

struct symcache *symcache_load(const char *dir, const uint8_t *id, uint32_t id_len,
			       const char *module, const char *debug_path, const struct stat *st)
{
	/* once a process (the prefetch thread loads too) */
	static int cleaned;
	if (!__atomic_exchange_n(&cleaned, 1, __ATOMIC_ACQ_REL))
		symcache_clean(dir, time(NULL));
	struct symcache *c = symcache_new(dir, id, id_len, module, debug_path, st);
	char hex[2 * MR_BUILD_ID_MAX + 1], path[4200];
	hex_string(hex, c->id, c->id_len);
	snprintf(path, sizeof(path), "%s/%s", dir, hex);
	/* (O_NONBLOCK: a FIFO there is refused, not waited on) */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return c;
	struct stat fs;
	const char *why = NULL;
	char *buf = NULL;
	if (fstat(fd, &fs) != 0 || !S_ISREG(fs.st_mode)) {
		why = "it is not a regular file";
	} else if ((uint64_t)fs.st_size > FILE_MAX) {
		why = "it is too big";
	} else {
		size_t n = (size_t)fs.st_size, got = 0;
		buf = xrealloc(NULL, n);
		while (got < n) {
			ssize_t r = read(fd, buf + got, n - got);
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		if (got != n)
			why = "it cannot be read";
		else if (symcache_parse(c, buf, n, &why) == 0)
			why = NULL;
		/* used: touched, once a day at most (see symcache_clean) */
		if (!why && c->count && fs.st_mtime <= time(NULL) - DAY)
			futimens(fd, NULL);
	}
	free(buf);
	close(fd);
	if (why) {
		/* removed, so that it is said once */
		int gone = unlink(path) == 0;
		warnmsg("warning: symbol cache %s: %s; %s", path, why, gone ? "removed" : "not used");
	}
	return c;
}

void symcache_put(struct symcache *c, uint64_t addr, const char *text, const char *debug_path)
{
	/* (only what was named from the file found when c was made) */
	if (!c || !debug_path || strcmp(debug_path, c->debug_path) != 0 || strlen(text) > TEXT_MAX)
		return;
	if (c->count >= ENTRIES_MAX || symcache_get(c, addr))
		return;
	add(c, addr, xstrdup(text));
	c->fresh = 1;
}

/* ---- writing --------------------------------------------------------------- */

static int make_dirs(const char *dir)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s", dir);
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s)
			continue;
		char was = *s;
		*s = 0;
		if (mkdir(p, 0700) != 0 && errno != EEXIST)
			return -1;
		if (!was)
			return 0;
		*s = was;
	}
}

/* The file written to a new file of its own (mkstemp: never one that is
 * there, a link or another writer's), then renamed over the old one: a
 * reader at the same time sees one or the other, whole. */
static void save(const struct symcache *c)
{
	if (make_dirs(c->dir) != 0)
		return;
	char hex[2 * MR_BUILD_ID_MAX + 1], path[4200], tmp[4300];
	hex_string(hex, c->id, c->id_len);
	snprintf(path, sizeof(path), "%s/%s", c->dir, hex);
	snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", c->dir, hex);
	int fd = mkstemp(tmp);
	if (fd < 0)
		return;
	fchmod(fd, 0644);
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		return;
	}
	fprintf(f, "%s\nid %s\nmodule %zu\n%s\ndebug", CACHE_MAGIC, hex, strlen(c->module),
		c->module);
	for (int i = 0; i < 6; i++)
		fprintf(f, " %" PRIu64, c->debug_st[i]);
	fprintf(f, " %zu\n%s\n", strlen(c->debug_path), c->debug_path);
	for (size_t i = 0; i < c->cap; i++)
		if (c->tab[i].text)
			fprintf(f, "%" PRIx64 " %zu\n%s\n", c->tab[i].addr, strlen(c->tab[i].text),
				c->tab[i].text);
	int bad = ferror(f);
	if (fclose(f) != 0 || bad || rename(tmp, path) != 0)
		unlink(tmp);
}

void symcache_close(struct symcache *c)
{
	if (!c)
		return;
	if (c->fresh)
		save(c);
	clear(c);
	free(c->debug_path);
	free(c->dir);
	free(c->module);
	free(c);
}
