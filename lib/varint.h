/*
 * varint.h - the one variable-length integer codec of the stream.
 *
 * Unsigned integers are LEB128: seven bits per byte, least significant
 * group first, the high bit set on every byte but the last; a 64-bit value
 * takes 1 to 10 bytes. Signed integers are zigzag-mapped first
 * (0, -1, 1, -2, ... become 0, 1, 2, 3, ...) so small magnitudes stay short.
 * Everything here is header-only and allocation-free: the tracker uses it
 * on its hot path.
 */
#ifndef MEMRAY_VARINT_H
#define MEMRAY_VARINT_H

#include <stddef.h>
#include <stdint.h>

#define VARINT_MAX 10 /* bytes a uint64_t can take */

static inline uint64_t zigzag_encode(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t zigzag_decode(uint64_t u)
{
	return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

/* Writes v at p (which must have VARINT_MAX bytes of room); returns the
 * number of bytes written. */
static inline size_t varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Reads one varint from [p, end). Returns the number of bytes consumed,
 * 0 if the input ends inside the varint, or -1 if it is malformed (more
 * than ten bytes, or a tenth byte with bits beyond 64). */
static inline int varint_get(const uint8_t *p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	for (int i = 0; i < VARINT_MAX; i++) {
		if (p + i >= end)
			return 0;
		uint8_t b = p[i];
		if (i == VARINT_MAX - 1 && b > 1)
			return -1;
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*out = v;
			return i + 1;
		}
	}
	return -1;
}

/* The same for a caller that knows VARINT_MAX bytes are readable at p:
 * no bounds checks. Returns the byte after the varint, or NULL if it is
 * malformed. */
static inline __attribute__((always_inline)) const uint8_t *
varint_get_unchecked(const uint8_t *p, uint64_t *out)
{
	uint64_t v = p[0];
	if (v < 0x80) {
		*out = v;
		return p + 1;
	}
	v &= 0x7f;
	for (int i = 1; i < VARINT_MAX; i++) {
		uint8_t b = p[i];
		if (i == VARINT_MAX - 1 && b > 1)
			return NULL;
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*out = v;
			return p + i + 1;
		}
	}
	return NULL;
}

#endif
