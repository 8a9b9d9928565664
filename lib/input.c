/*
 * input.c - libarchive-backed input (see input.h).
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "input.h"
#include "stream.h"

struct mr_input {
	struct archive *a;
	int fd;
	/* live reading (mr_input_open_live) */
	int follow;
	void (*unlock)(void *), (*lock)(void *);
	void *ctx;
	unsigned char *lbuf;
	int started; /* the raw entry header has been read */
	int done;
	unsigned char peeked[64];
	size_t npeeked, peek_at;
	char name[512];
	char err[512];
};

struct mr_input *mr_input_open(const char *path, char *err, size_t errlen)
{
	struct mr_input *in = calloc(1, sizeof(*in));
	if (!in) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (strcmp(path, "-") == 0) {
		in->fd = 0;
		snprintf(in->name, sizeof(in->name), "<stdin>");
	} else {
		in->fd = open(path, O_RDONLY | O_CLOEXEC);
		snprintf(in->name, sizeof(in->name), "%s", path);
		if (in->fd < 0) {
			snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
			free(in);
			return NULL;
		}
		struct stat st;
		if (fstat(in->fd, &st) == 0 && S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "cannot read '%s': it is a directory", path);
			close(in->fd);
			free(in);
			return NULL;
		}
	}
	in->a = archive_read_new();
	archive_read_support_filter_all(in->a);
	archive_read_support_format_raw(in->a);
	if (archive_read_open_fd(in->a, in->fd, 64 * 1024) != ARCHIVE_OK) {
		/* An empty input fails here; it reads as zero bytes. */
		in->done = 1;
	}
	return in;
}

struct mr_input *mr_input_open_memory(const void *data, size_t n, const char *name)
{
	struct mr_input *in = calloc(1, sizeof(*in));
	if (!in)
		return NULL;
	in->fd = -1;
	snprintf(in->name, sizeof(in->name), "%s", name);
	in->a = archive_read_new();
	archive_read_support_filter_all(in->a);
	archive_read_support_format_raw(in->a);
	if (archive_read_open_memory(in->a, data, n) != ARCHIVE_OK)
		in->done = 1;
	return in;
}

#define LIVE_BUF (64 * 1024)

/* libarchive's read callback for live input: the caller's lock is let go
 * while read(2) waits, and at the end of a followed file it waits for
 * more as tail -f does. */
static la_ssize_t live_read(struct archive *a, void *client, const void **buf)
{
	struct mr_input *in = client;
	for (;;) {
		in->unlock(in->ctx);
		ssize_t k = read(in->fd, in->lbuf, LIVE_BUF);
		int e = errno;
		if (k == 0 && in->follow) {
			struct timespec t = { 0, 50 * 1000 * 1000 };
			nanosleep(&t, NULL);
		}
		in->lock(in->ctx);
		if (k > 0) {
			*buf = in->lbuf;
			return k;
		}
		if (k < 0 && e == EINTR)
			continue;
		if (k < 0) {
			archive_set_error(a, e, "%s", strerror(e));
			return -1;
		}
		if (!in->follow)
			return 0;
	}
}

struct mr_input *mr_input_open_live(int fd, const char *name, int follow,
				    void (*unlock)(void *), void (*lock)(void *), void *ctx)
{
	struct mr_input *in = calloc(1, sizeof(*in));
	unsigned char *b = malloc(LIVE_BUF);
	if (!in || !b) {
		free(in);
		free(b);
		return NULL;
	}
	in->fd = fd;
	in->follow = follow;
	in->unlock = unlock;
	in->lock = lock;
	in->ctx = ctx;
	in->lbuf = b;
	snprintf(in->name, sizeof(in->name), "%s", name);
	in->a = archive_read_new();
	archive_read_support_filter_all(in->a);
	archive_read_support_format_raw(in->a);
	if (archive_read_open(in->a, in, NULL, live_read, NULL) != ARCHIVE_OK)
		in->done = 1;
	return in;
}

static ssize_t read_raw(struct mr_input *in, void *buf, size_t n);

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

static ssize_t read_raw(struct mr_input *in, void *buf, size_t n)
{
	if (in->done)
		return 0;
	if (!in->started) {
		struct archive_entry *e;
		int rc = archive_read_next_header(in->a, &e);
		in->started = 1;
		if (rc == ARCHIVE_EOF) {
			in->done = 1;
			return 0;
		}
		if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
			snprintf(in->err, sizeof(in->err), "%s",
				 archive_error_string(in->a) ? archive_error_string(in->a)
							     : "unreadable input");
			return -1;
		}
	}
	size_t got = 0;
	while (got < n) {
		la_ssize_t k = archive_read_data(in->a, (char *)buf + got, n - got);
		if (k == 0) {
			in->done = 1;
			break;
		}
		if (k < 0) {
			snprintf(in->err, sizeof(in->err), "%s",
				 archive_error_string(in->a) ? archive_error_string(in->a)
							     : "read error");
			return got ? (ssize_t)got : -1;
		}
		got += (size_t)k;
	}
	return (ssize_t)got;
}

const char *mr_input_error(const struct mr_input *in) { return in->err; }
const char *mr_input_name(const struct mr_input *in) { return in->name; }

void mr_input_progress(const struct mr_input *in, uint64_t *done, uint64_t *total)
{
	struct stat st;
	*total = in->fd >= 0 && fstat(in->fd, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	la_int64_t n = archive_filter_bytes(in->a, -1);
	*done = n > 0 ? (uint64_t)n : 0;
}

void mr_input_close(struct mr_input *in)
{
	if (!in)
		return;
	archive_read_free(in->a);
	if (in->fd > 0)
		close(in->fd);
	free(in->lbuf);
	free(in);
}
