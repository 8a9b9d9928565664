/*
 * input.h - reading a stream from a file or stdin, plain or compressed.
 *
 * Compression is recognised by content: gzip and zstd are decoded with
 * zlib and libzstd (a file cut short gives what was written before the
 * cut), the rest (xz, lz4, bzip2, ...) through libarchive's raw format
 * with every filter enabled.
 */
#ifndef MEMRAY_INPUT_H
#define MEMRAY_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mr_input;

/* Opens path ("-" is stdin). Returns NULL with a message in err. */
struct mr_input *mr_input_open(const char *path, char *err, size_t errlen);
/* Reads the n bytes at data (which must stay valid until closed), named
 * name in messages. NULL only when out of memory. */
struct mr_input *mr_input_open_memory(const void *data, size_t n, const char *name);
/* Reads a stream as it is written, from fd (closed by mr_input_close
 * unless it is 0), named name in messages. unlock(ctx) is called before
 * each read(2), which may wait, and lock(ctx) after: the caller holds its
 * lock around mr_input_read and everything reading calls. With follow, the
 * end of the file is waited past, as tail -f does. */
struct mr_input *mr_input_open_live(int fd, const char *name, int follow,
				    void (*unlock)(void *), void (*lock)(void *), void *ctx);
/* Reads up to n bytes; returns the count, 0 at the end, -1 on error with
 * the message in mr_input_error(). */
ssize_t mr_input_read(struct mr_input *in, void *buf, size_t n);
const char *mr_input_error(const struct mr_input *in);
/* Reads up to n (at most 64) bytes that the next reads return again;
 * returns how many there were. */
ssize_t mr_input_peek(struct mr_input *in, void *buf, size_t n);
/* Whether the input starts with a memray stream's magic (else, for the
 * tools that take both, collapsed stacks). */
int mr_input_is_stream(struct mr_input *in);
/* The name to show in messages: the path, or "<stdin>". */
const char *mr_input_name(const struct mr_input *in);
void mr_input_close(struct mr_input *in);
/* How far reading has gone: bytes of the file consumed, and its size (0
 * when not a regular file). */
void mr_input_progress(const struct mr_input *in, uint64_t *done, uint64_t *total);

#endif
