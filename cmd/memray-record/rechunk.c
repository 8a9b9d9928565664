/*
 * rechunk.c - memray-record's output joins each process's runs of full
 * chunks into long chunks (memray-stream(5): a chunk of k * 4084 payload
 * bytes counts as k chunks).
 *
 * The tracker writes chunks of at most 4096 bytes so that each write to a
 * pipe is atomic. In the file, the header every 4096 bytes cuts the
 * repeats of a steady program's records, and a compressor pays for each
 * cut: a churn recorded with zstd took five times the bytes of its
 * records alone. Joined, the headers come every 64 KiB.
 *
 * Only full chunks of one pid with consecutive sequence numbers are
 * joined, so nothing else changes: a short chunk (a flush, a trailer) is
 * written as it came, a lost chunk still shows as a gap, and bytes that
 * are not a chunk (damage) are passed on untouched from there on, for the
 * reader to report. Nothing waits for more input than the read that
 * brought it: rechunk_flush writes what is gathered after every read.
 */
#include <string.h>

#include "record.h"

static uint32_t le(const uint8_t *p, int n)
{
	uint32_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* Writes the joined chunk, if any. */
static void emit(struct rechunk *c, struct out *o)
{
	if (!c->k)
		return;
	put16(c->big + 8, c->k * MR_PAYLOAD_MAX);
	out_data(o, c->big, MR_CHUNK_HEADER + (size_t)c->k * MR_PAYLOAD_MAX, 0);
	c->k = 0;
}

/* One whole chunk from the input, in c->cur. */
static void chunk_done(struct rechunk *c, struct out *o)
{
	const uint8_t *h = c->cur;
	uint32_t pid = le(h + 4, 4);
	size_t len = le(h + 8, 2);
	uint16_t seq = (uint16_t)le(h + 10, 2);
	if (len != MR_PAYLOAD_MAX) {
		emit(c, o);
		out_data(o, h, MR_CHUNK_HEADER + len, 0);
		return;
	}
	if (c->k && (pid != c->pid || seq != (uint16_t)(c->seq + c->k) || c->k == RECHUNK_MAX))
		emit(c, o);
	if (!c->k) {
		memcpy(c->big, h, MR_CHUNK_HEADER);
		c->pid = pid;
		c->seq = seq;
	}
	memcpy(c->big + MR_CHUNK_HEADER + (size_t)c->k * MR_PAYLOAD_MAX, h + MR_CHUNK_HEADER,
	       MR_PAYLOAD_MAX);
	c->k++;
}

void rechunk_feed(struct rechunk *c, const uint8_t *p, size_t n, struct out *o)
{
	while (n && !c->passthrough) {
		if (c->have < MR_CHUNK_HEADER) {
			size_t k = MR_CHUNK_HEADER - c->have < n ? MR_CHUNK_HEADER - c->have : n;
			memcpy(c->cur + c->have, p, k);
			c->have += k, p += k, n -= k;
			if (c->have < MR_CHUNK_HEADER)
				break;
			size_t len = le(c->cur + 8, 2);
			if (memcmp(c->cur, MR_MAGIC, MR_MAGIC_LEN) != 0 || len == 0 ||
			    len > MR_PAYLOAD_MAX) {
				/* not a chunk the tracker writes: from here on as it is */
				emit(c, o);
				out_data(o, c->cur, c->have, 0);
				c->have = 0;
				c->passthrough = 1;
				break;
			}
			c->need = MR_CHUNK_HEADER + len;
		}
		size_t k = c->need - c->have < n ? c->need - c->have : n;
		memcpy(c->cur + c->have, p, k);
		c->have += k, p += k, n -= k;
		if (c->have == c->need) {
			chunk_done(c, o);
			c->have = 0;
		}
	}
	if (n)
		out_data(o, p, n, 0);
}

void rechunk_flush(struct rechunk *c, struct out *o)
{
	emit(c, o);
}

void rechunk_end(struct rechunk *c, struct out *o)
{
	emit(c, o);
	/* a chunk cut short by the end: its bytes, for the reader to report */
	if (c->have)
		out_data(o, c->cur, c->have, 0);
	c->have = 0;
}
