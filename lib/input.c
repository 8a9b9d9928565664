/*
 * input.c - reading a stream or collapsed stacks, plain or compressed
 * (see input.h).
 *
 * The input's first bytes say how it is read:
 *   - a memray stream's magic: as it is, straight from the source;
 *   - gzip's or zstd's: decoded here with zlib and libzstd, so that a
 *     compressed recording cut short (a copy that stopped, a killed
 *     recorder's file) still gives everything before the cut, as a plain
 *     one does: libarchive's filters give nothing of a block they could
 *     not finish, and an input cut within its first block read as empty;
 *   - anything else (xz, bzip2, lz4, ..., collapsed stacks as text):
 *     libarchive's raw format with every filter, fed from the same source.
 *
 * The source is a descriptor (a file, a pipe, stdin), a live descriptor
 * (the caller's lock let go while read(2) waits, the end waited past when
 * following), or memory.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "input.h"
#include "stream.h"

#define SRC_BUF (64 * 1024)
/* bytes the first read gathers before the kind is chosen (gzip's magic
 * is 2, zstd's 4, a stream's MR_MAGIC_LEN) */
#define SNIFF 8

enum kind { K_PLAIN, K_GZIP, K_ZSTD, K_ARCHIVE };

struct mr_input {
	enum kind kind;
	int fd;                         /* -1: memory */
	/* live reading (mr_input_open_live) */
	int live, follow;
	void (*unlock)(void *), (*lock)(void *);
	void *ctx;
	/* the source's bytes not yet taken: sp[0..sn) */
	unsigned char *sbuf;
	const unsigned char *sp;
	size_t sn;
	const unsigned char *mem;       /* memory: what is left to give */
	size_t mem_n;
	int src_eof;
	uint64_t src_bytes;             /* taken from the source so far */
	/* decoders */
	struct archive *a;
	int started;                    /* libarchive's raw entry header was read */
	z_stream z;
	int z_on, z_end;                /* inflate started; at a member's end */
	ZSTD_DStream *zs;
	size_t z_left;                  /* libzstd's last hint: 0 at a frame's end */
	int done;                       /* the end: reads give 0 */
	int failed;                     /* an error: reads give -1 */
	unsigned char peeked[64];
	size_t npeeked, peek_at;
	char name[512];
	char err[512];
};

/* ---- the source ------------------------------------------------------- */

/* Reads more of the source into sbuf, after the sn bytes kept at its
 * start. Returns the count, 0 at the end, -1 with in->err set. */
static ssize_t src_read(struct mr_input *in)
{
	if (in->fd < 0) {
		if (!in->mem_n)
			return 0;
		/* memory: given whole, where it is */
		in->sp = in->mem;
		in->sn = in->mem_n;
		in->mem_n = 0;
		return (ssize_t)in->sn;
	}
	if (in->sn && in->sp != in->sbuf)
		memmove(in->sbuf, in->sp, in->sn);
	in->sp = in->sbuf;
	for (;;) {
		if (in->live)
			in->unlock(in->ctx);
		ssize_t k = read(in->fd, in->sbuf + in->sn, SRC_BUF - in->sn);
		int e = errno;
		if (k == 0 && in->live && in->follow) {
			struct timespec t = { 0, 50 * 1000 * 1000 };
			nanosleep(&t, NULL);
		}
		if (in->live)
			in->lock(in->ctx);
		if (k > 0) {
			in->sn += (size_t)k;
			return k;
		}
		if (k < 0 && e == EINTR)
			continue;
		if (k < 0) {
			snprintf(in->err, sizeof(in->err), "%s", strerror(e));
			return -1;
		}
		if (!(in->live && in->follow))
			return 0;
	}
}

/* Makes sure some of the source is at sp, unless it has ended: 1, 0 at
 * its end, -1 on an error (in->failed set). */
static int src_some(struct mr_input *in)
{
	if (in->sn)
		return 1;
	if (in->src_eof)
		return 0;
	ssize_t k = src_read(in);
	if (k < 0) {
		in->failed = 1;
		return -1;
	}
	if (k == 0)
		in->src_eof = 1;
	return k > 0;
}

static void src_take(struct mr_input *in, size_t n)
{
	in->sp += n;
	in->sn -= n;
	in->src_bytes += n;
}

/* libarchive's read callback: the source's bytes as they come. */
static la_ssize_t archive_feed(struct archive *a, void *client, const void **buf)
{
	struct mr_input *in = client;
	int s = src_some(in);
	if (s < 0) {
		archive_set_error(a, EIO, "%s", in->err);
		return -1;
	}
	if (s == 0)
		return 0;
	size_t n = in->sn;
	*buf = in->sp;
	src_take(in, n);
	return (la_ssize_t)n;
}

/* ---- opening ---------------------------------------------------------- */

static struct mr_input *input_new(int fd, const char *name)
{
	struct mr_input *in = calloc(1, sizeof(*in));
	if (!in)
		return NULL;
	in->fd = fd;
	snprintf(in->name, sizeof(in->name), "%s", name);
	if (fd >= 0 && !(in->sbuf = malloc(SRC_BUF))) {
		free(in);
		return NULL;
	}
	in->sp = in->sbuf;
	return in;
}

static int starts(const struct mr_input *in, const void *magic, size_t n)
{
	return in->sn >= n && memcmp(in->sp, magic, n) == 0;
}

/* Reads the first bytes and chooses how the rest is read. */
static void input_start(struct mr_input *in)
{
	while (in->sn < SNIFF && !in->src_eof) {
		ssize_t k = src_read(in);
		if (k < 0) {
			in->failed = 1;
			return;
		}
		if (k == 0)
			in->src_eof = 1;
	}
	if (in->sn == 0) {
		in->done = 1; /* an empty input reads as zero bytes */
		return;
	}
	if (starts(in, "\x1f\x8b", 2)) {
		in->kind = K_GZIP;
		/* 15 + 32: gzip's header and trailer, checked */
		if (inflateInit2(&in->z, 15 + 32) != Z_OK) {
			snprintf(in->err, sizeof(in->err), "cannot start zlib");
			in->failed = 1;
			return;
		}
		in->z_on = 1;
	} else if (starts(in, "\x28\xb5\x2f\xfd", 4)) {
		in->kind = K_ZSTD;
		in->zs = ZSTD_createDStream();
		if (!in->zs || ZSTD_isError(ZSTD_initDStream(in->zs))) {
			snprintf(in->err, sizeof(in->err), "cannot start zstd");
			in->failed = 1;
			return;
		}
		in->z_left = 1;
	} else if (starts(in, MR_MAGIC, MR_MAGIC_LEN)) {
		in->kind = K_PLAIN;
	} else {
		in->kind = K_ARCHIVE;
		in->a = archive_read_new();
		if (!in->a) {
			snprintf(in->err, sizeof(in->err), "out of memory");
			in->failed = 1;
			return;
		}
		archive_read_support_filter_all(in->a);
		archive_read_support_format_raw(in->a);
		if (archive_read_open(in->a, in, NULL, archive_feed, NULL) != ARCHIVE_OK) {
			snprintf(in->err, sizeof(in->err), "%s",
				 archive_error_string(in->a) ? archive_error_string(in->a)
							     : "unreadable input");
			in->failed = 1;
		}
	}
}

struct mr_input *mr_input_open(const char *path, char *err, size_t errlen)
{
	int fd = 0;
	if (strcmp(path, "-") != 0) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
			return NULL;
		}
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "cannot read '%s': it is a directory", path);
			close(fd);
			return NULL;
		}
	}
	struct mr_input *in = input_new(fd, fd ? path : "<stdin>");
	if (!in) {
		snprintf(err, errlen, "out of memory");
		if (fd > 0)
			close(fd);
		return NULL;
	}
	input_start(in);
	return in;
}

struct mr_input *mr_input_open_memory(const void *data, size_t n, const char *name)
{
	struct mr_input *in = input_new(-1, name);
	if (!in)
		return NULL;
	in->mem = data;
	in->mem_n = n;
	input_start(in);
	return in;
}

struct mr_input *mr_input_open_live(int fd, const char *name, int follow,
				    void (*unlock)(void *), void (*lock)(void *), void *ctx)
{
	struct mr_input *in = input_new(fd, name);
	if (!in)
		return NULL;
	in->live = 1;
	in->follow = follow;
	in->unlock = unlock;
	in->lock = lock;
	in->ctx = ctx;
	input_start(in);
	return in;
}

/* ---- decoding --------------------------------------------------------- */

static ssize_t fail_read(struct mr_input *in, size_t got, const char *fmt, const char *what)
{
	snprintf(in->err, sizeof(in->err), fmt, what);
	in->failed = 1;
	return got ? (ssize_t)got : -1;
}

/* A compressed input that ends within its data: the file was cut short.
 * What was decoded is given; the next read says so. */
static ssize_t cut_short(struct mr_input *in, size_t got, const char *codec)
{
	snprintf(in->err, sizeof(in->err),
		 "the %s data ends early, after %llu bytes of the file (it was cut short)", codec,
		 (unsigned long long)in->src_bytes);
	in->failed = 1;
	return got ? (ssize_t)got : -1;
}

static ssize_t plain_read(struct mr_input *in, unsigned char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		int s = src_some(in);
		if (s < 0)
			return got ? (ssize_t)got : -1;
		if (s == 0) {
			in->done = 1;
			break;
		}
		size_t m = in->sn < n - got ? in->sn : n - got;
		memcpy(buf + got, in->sp, m);
		src_take(in, m);
		got += m;
	}
	return (ssize_t)got;
}

static ssize_t gzip_read(struct mr_input *in, unsigned char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		int s = src_some(in);
		if (s < 0)
			return got ? (ssize_t)got : -1;
		if (s == 0) {
			if (in->z_end) {
				in->done = 1;
				break;
			}
			return cut_short(in, got, "gzip");
		}
		if (in->z_end) {
			/* another member follows (gzip files concatenate), or
			 * something that is not gzip's */
			if (in->sn >= 2 ? memcmp(in->sp, "\x1f\x8b", 2) != 0 : in->sp[0] != 0x1f) {
				snprintf(in->err, sizeof(in->err),
					 "data that is not gzip's after the gzip data, at byte %llu of the file",
					 (unsigned long long)in->src_bytes);
				in->failed = 1;
				return got ? (ssize_t)got : -1;
			}
			if (inflateReset(&in->z) != Z_OK)
				return fail_read(in, got, "%s", "zlib cannot go on");
			in->z_end = 0;
		}
		size_t avail = n - got > UINT_MAX ? UINT_MAX : n - got;
		in->z.next_in = (unsigned char *)in->sp;
		in->z.avail_in = in->sn > UINT_MAX ? UINT_MAX : (unsigned)in->sn;
		in->z.next_out = buf + got;
		in->z.avail_out = (unsigned)avail;
		unsigned in_before = in->z.avail_in;
		int rc = inflate(&in->z, Z_NO_FLUSH);
		src_take(in, in_before - in->z.avail_in);
		got += avail - in->z.avail_out;
		if (rc == Z_STREAM_END)
			in->z_end = 1;
		else if (rc == Z_BUF_ERROR && in->z.avail_in == in_before && in->z.avail_out == avail)
			return fail_read(in, got, "%s", "zlib makes no progress");
		else if (rc != Z_OK && rc != Z_BUF_ERROR)
			return fail_read(in, got, "corrupt gzip data: %s",
					 in->z.msg ? in->z.msg : "inflate failed");
	}
	return (ssize_t)got;
}

static ssize_t zstd_read(struct mr_input *in, unsigned char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		int s = src_some(in);
		if (s < 0)
			return got ? (ssize_t)got : -1;
		ZSTD_inBuffer ib = { in->sp, in->sn, 0 };
		ZSTD_outBuffer ob = { buf + got, n - got, 0 };
		size_t r = ZSTD_decompressStream(in->zs, &ob, &ib);
		if (ZSTD_isError(r))
			return fail_read(in, got, "corrupt zstd data: %s", ZSTD_getErrorName(r));
		src_take(in, ib.pos);
		got += ob.pos;
		if (ib.pos || ob.pos)
			in->z_left = r; /* (with nothing in or out, the next frame's hint) */
		if (s > 0 && ib.pos == 0 && ob.pos == 0)
			return fail_read(in, got, "%s", "zstd makes no progress");
		if (s == 0 && ob.pos == 0) {
			/* the source has ended and nothing more comes out */
			if (in->z_left == 0) {
				in->done = 1;
				break;
			}
			return cut_short(in, got, "zstd");
		}
	}
	return (ssize_t)got;
}

static ssize_t archive_read(struct mr_input *in, unsigned char *buf, size_t n)
{
	if (!in->started) {
		struct archive_entry *e;
		int rc = archive_read_next_header(in->a, &e);
		in->started = 1;
		if (rc == ARCHIVE_EOF) {
			in->done = 1;
			return 0;
		}
		if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
			return fail_read(in, 0, "%s", archive_error_string(in->a) ? archive_error_string(in->a)
							: "unreadable input");
	}
	size_t got = 0;
	while (got < n) {
		la_ssize_t k = archive_read_data(in->a, buf + got, n - got);
		if (k == 0) {
			in->done = 1;
			break;
		}
		if (k < 0)
			return fail_read(in, got, "%s", archive_error_string(in->a) ? archive_error_string(in->a)
							  : "read error");
		got += (size_t)k;
	}
	return (ssize_t)got;
}

static ssize_t read_raw(struct mr_input *in, void *buf, size_t n)
{
	if (in->failed)
		return -1;
	if (in->done || n == 0)
		return 0;
	switch (in->kind) {
	case K_PLAIN: return plain_read(in, buf, n);
	case K_GZIP: return gzip_read(in, buf, n);
	case K_ZSTD: return zstd_read(in, buf, n);
	default: return archive_read(in, buf, n);
	}
}

/* ---- reading ---------------------------------------------------------- */

ssize_t mr_input_read(struct mr_input *in, void *buf, size_t n)
{
	size_t got = 0;
	while (in->peek_at < in->npeeked && got < n)
		((unsigned char *)buf)[got++] = in->peeked[in->peek_at++];
	if (got == n)
		return (ssize_t)got;
	ssize_t k = read_raw(in, (char *)buf + got, n - got);
	if (k < 0)
		return got ? (ssize_t)got : -1;
	return (ssize_t)(got + (size_t)k);
}

ssize_t mr_input_peek(struct mr_input *in, void *buf, size_t n)
{
	if (n > sizeof(in->peeked))
		n = sizeof(in->peeked);
	if (in->npeeked == 0) {
		ssize_t k = read_raw(in, in->peeked, n);
		if (k < 0)
			return -1;
		in->npeeked = (size_t)k;
		in->peek_at = 0;
	}
	size_t m = in->npeeked < n ? in->npeeked : n;
	memcpy(buf, in->peeked, m);
	return (ssize_t)m;
}

int mr_input_is_stream(struct mr_input *in)
{
	char magic[MR_MAGIC_LEN];
	return mr_input_peek(in, magic, sizeof(magic)) == MR_MAGIC_LEN &&
	       memcmp(magic, MR_MAGIC, MR_MAGIC_LEN) == 0;
}

const char *mr_input_error(const struct mr_input *in) { return in->err; }
const char *mr_input_name(const struct mr_input *in) { return in->name; }

void mr_input_progress(const struct mr_input *in, uint64_t *done, uint64_t *total)
{
	struct stat st;
	*total = in->fd >= 0 && fstat(in->fd, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	*done = in->src_bytes;
}

void mr_input_close(struct mr_input *in)
{
	if (!in)
		return;
	if (in->a)
		archive_read_free(in->a);
	if (in->z_on)
		inflateEnd(&in->z);
	ZSTD_freeDStream(in->zs);
	if (in->fd > 0)
		close(in->fd);
	free(in->sbuf);
	free(in);
}
