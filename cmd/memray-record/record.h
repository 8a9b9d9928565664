/*
 * record.h - what memray-record's two modes share: running a program
 * (main.c) and attaching to a running one (attach.c).
 */
#ifndef MEMRAY_RECORD_H
#define MEMRAY_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>
#include <zstd.h>

#include "../../lib/stream.h"

/* Where the stream goes. */
struct out {
	int fd;
	const char *name; /* for messages */
	int compress;  /* COMPRESS_*: how the stream is written */
	z_stream z;    /* gzip */
	ZSTD_CCtx *zc; /* zstd */
	struct rechunk *rc; /* set by out_stream */
	int cut;       /* the output went away or filled: drain, keep nothing */
	int err;
	int created;   /* a file this run created (removed if nothing is recorded) */
	int to_stdout;
	unsigned long long bytes_in, bytes_out;
	/* compressed: what came in since the compressor last flushed, and
	 * when that was (CLOCK_MONOTONIC, ms) */
	unsigned long long unflushed;
	long long flushed_ms;
};

enum { COMPRESS_NONE, COMPRESS_ZSTD, COMPRESS_GZIP };

/* Joins each process's runs of full chunks (rechunk.c). */
#define RECHUNK_MAX MR_JOIN_MAX /* chunks joined at most: 16 * 4084 < 65536 */
struct rechunk {
	uint8_t cur[MR_CHUNK_MAX]; /* the chunk coming in */
	size_t have, need;
	uint8_t big[MR_CHUNK_HEADER + RECHUNK_MAX * MR_PAYLOAD_MAX];
	uint32_t pid;
	uint16_t seq;
	unsigned k; /* full chunks in big */
	int passthrough;
};
void rechunk_feed(struct rechunk *c, const uint8_t *p, size_t n, struct out *o);
void rechunk_flush(struct rechunk *c, struct out *o);
void rechunk_end(struct rechunk *c, struct out *o);
/* The tracker's bytes, as read: joined by o->rc, then written. */
void out_stream(struct out *o, const void *data, size_t n);
/* Starts o->compress's compressor, or dies with status 2. */
void out_start(struct out *o);
/* Writes n bytes of stream (compressing with -z); finish ends the
 * compressed stream. */
void out_data(struct out *o, const void *data, size_t n, int finish);
/* Ends the compression and closes a file (errors into o->err). */
void out_finish(struct out *o);
/* Creates path for the stream (never through a symbolic link; an
 * existing file only with force), or dies with status 2. */
int open_output(const char *path, int force);
/* What kind of program the file at path is (anything unreadable or not
 * a 64-bit ELF file, a script say, is ELF_OTHER). */
enum { ELF_OTHER, ELF_DYNAMIC, ELF_STATIC, ELF_32BIT };
int elf_linkage(const char *path);
/* The tracker library's path; 0, or -1 if it cannot be found. */
int find_tracker(char *out, size_t n);

/* Follows the chunks going by to see whether the recorded program's own
 * stream (its pid's chunks) ends with its trailer: the writer puts the
 * trailer alone in the last chunk. */
struct watch {
	uint32_t pid;
	uint8_t head[MR_CHUNK_HEADER];
	size_t have, left;  /* header bytes gathered; payload bytes to come */
	int mine;           /* the chunk going by is the program's */
	uint8_t last[4096]; /* the program's latest chunk */
	size_t last_len;
	uint16_t next_seq;  /* the program's next chunk's sequence number */
};
void watch_bytes(struct watch *w, const uint8_t *p, size_t n);
int watch_trailer(const struct watch *w);

/* memray-record --pid */
struct attach_opts {
	long pid;
	double duration; /* seconds; 0: until a signal */
	const char *native; /* "auto", "1" or "0" */
	long interval_ms;
	int quiet, force;
	unsigned long long sample_bytes, seed; /* --sample-bytes, --seed; 0: none */
};
int attach_main(const struct attach_opts *a, struct out *out);

#endif
