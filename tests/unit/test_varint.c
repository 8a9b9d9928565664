/*
 * test_varint.c - the varint and zigzag codec of lib/varint.h at its
 * extremes: round-trips, exact lengths, truncated and malformed input.
 */
#include <stdint.h>
#include <string.h>

#include "../../lib/varint.h"
#include "unit.h"

/* The encoded length of v, from first principles: one byte per started
 * group of seven bits. */
static size_t expected_len(uint64_t v)
{
	size_t n = 1;
	while (v >>= 7)
		n++;
	return n;
}

static void check_unsigned(uint64_t v)
{
	uint8_t buf[VARINT_MAX + 4];
	memset(buf, 0xaa, sizeof(buf));
	size_t n = varint_put(buf, v);
	CHECK_EQ_U64(n, expected_len(v));
	CHECK_EQ_U64(buf[n], 0xaa); /* nothing written past the end */
	for (size_t i = 0; i + 1 < n; i++)
		CHECK(buf[i] & 0x80);
	CHECK(!(buf[n - 1] & 0x80));

	uint64_t out = ~v;
	CHECK_EQ_U64(varint_get(buf, buf + n, &out), n);
	CHECK_EQ_U64(out, v);
	/* Extra bytes after the varint are not consumed. */
	out = ~v;
	CHECK_EQ_U64(varint_get(buf, buf + sizeof(buf), &out), n);
	CHECK_EQ_U64(out, v);
	/* The unchecked decoder agrees, given room to read. */
	out = ~v;
	CHECK(varint_get_unchecked(buf, &out) == buf + n);
	CHECK_EQ_U64(out, v);
	/* Every strict prefix is "needs more bytes", and out is untouched. */
	for (size_t k = 0; k < n; k++) {
		out = 12345;
		CHECK_EQ_U64(varint_get(buf, buf + k, &out), 0);
		CHECK_EQ_U64(out, 12345);
	}
}

static void check_signed(int64_t v)
{
	uint64_t z = zigzag_encode(v);
	CHECK_EQ_U64(zigzag_decode(z), v);
	uint8_t buf[VARINT_MAX];
	uint64_t out = 0;
	size_t n = varint_put(buf, z);
	CHECK_EQ_U64(varint_get(buf, buf + n, &out), n);
	CHECK_EQ_U64(zigzag_decode(out), v);
}

static void test_unsigned_round_trips(void)
{
	static const uint64_t values[] = {
		0, 1, 2, 63, 64, 127, 128, 129, 255, 256, 16383, 16384,
		(1ull << 21) - 1, 1ull << 21, (1ull << 32) - 1, 1ull << 32,
		(1ull << 56) - 1, 1ull << 56, (1ull << 63) - 1, 1ull << 63,
		(1ull << 63) + 1, UINT64_MAX - 1, UINT64_MAX,
	};
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		check_unsigned(values[i]);
	for (int b = 0; b < 64; b++) {
		check_unsigned(1ull << b);
		check_unsigned((1ull << b) - 1);
	}
}

static void test_exact_lengths(void)
{
	uint8_t buf[VARINT_MAX];
	CHECK_EQ_U64(varint_put(buf, 0), 1);
	CHECK_EQ_U64(buf[0], 0);
	CHECK_EQ_U64(varint_put(buf, 1), 1);
	CHECK_EQ_U64(varint_put(buf, 127), 1);
	CHECK_EQ_U64(buf[0], 0x7f);
	CHECK_EQ_U64(varint_put(buf, 128), 2);
	CHECK_EQ_U64(buf[0], 0x80);
	CHECK_EQ_U64(buf[1], 0x01);
	CHECK_EQ_U64(varint_put(buf, 1ull << 63), 10);
	CHECK_EQ_U64(buf[9], 0x01);
	CHECK_EQ_U64(varint_put(buf, UINT64_MAX), 10);
	for (int i = 0; i < 9; i++)
		CHECK_EQ_U64(buf[i], 0xff);
	CHECK_EQ_U64(buf[9], 0x01);
}

static void test_zigzag(void)
{
	/* The mapping itself: 0, -1, 1, -2, 2, ... */
	CHECK_EQ_U64(zigzag_encode(0), 0);
	CHECK_EQ_U64(zigzag_encode(-1), 1);
	CHECK_EQ_U64(zigzag_encode(1), 2);
	CHECK_EQ_U64(zigzag_encode(-2), 3);
	CHECK_EQ_U64(zigzag_encode(INT64_MAX), UINT64_MAX - 1);
	CHECK_EQ_U64(zigzag_encode(INT64_MIN), UINT64_MAX);

	static const int64_t values[] = {
		0, 1, -1, 2, -2, 63, -64, 64, -65, 127, -128, 128, -129,
		4096, -4096, -16, -4095, (int64_t)1 << 40, -((int64_t)1 << 40),
		INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1,
	};
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		check_signed(values[i]);
	/* Small magnitudes stay short, negative or not. */
	uint8_t buf[VARINT_MAX];
	CHECK_EQ_U64(varint_put(buf, zigzag_encode(-64)), 1);
	CHECK_EQ_U64(varint_put(buf, zigzag_encode(63)), 1);
	CHECK_EQ_U64(varint_put(buf, zigzag_encode(-65)), 2);
	CHECK_EQ_U64(varint_put(buf, zigzag_encode(INT64_MIN)), 10);
}

/* Deltas as the writer forms them: (int64_t)(b - a) over wrapping
 * uint64_t, including going down and across the sign boundary. */
static void test_deltas(void)
{
	static const uint64_t addrs[] = {
		0, 1, 0x7f0000001000, 0x7effffffff01, 0x55550000000f, 0x10,
		1ull << 63, (1ull << 63) - 1, UINT64_MAX, 0, UINT64_MAX - 15, 3,
	};
	size_t n = sizeof(addrs) / sizeof(addrs[0]);
	uint64_t reg = 0;
	for (size_t i = 0; i < n; i++) {
		int64_t d = (int64_t)(addrs[i] - reg);
		uint8_t buf[VARINT_MAX];
		uint64_t u = 0;
		size_t len = varint_put(buf, zigzag_encode(d));
		CHECK_EQ_U64(varint_get(buf, buf + len, &u), len);
		reg += (uint64_t)zigzag_decode(u);
		CHECK_EQ_U64(reg, addrs[i]);
	}
}

static void test_malformed(void)
{
	uint64_t out = 777;
	/* Eleven bytes, every one with the continuation bit. */
	uint8_t eleven[11];
	memset(eleven, 0x80, sizeof(eleven));
	eleven[10] = 0x00;
	CHECK_EQ_U64(varint_get(eleven, eleven + sizeof(eleven), &out), (uint64_t)-1);
	/* Ten continuation bytes and nothing else: malformed, not truncated,
	 * since no valid varint is that long. */
	CHECK_EQ_U64(varint_get(eleven, eleven + 10, &out), (uint64_t)-1);
	memset(eleven, 0xff, sizeof(eleven));
	CHECK_EQ_U64(varint_get(eleven, eleven + sizeof(eleven), &out), (uint64_t)-1);
	CHECK_EQ_U64(out, 777);

	/* A tenth byte carrying bits beyond 64. */
	uint8_t over[10];
	memset(over, 0xff, 9);
	over[9] = 0x02;
	CHECK_EQ_U64(varint_get(over, over + 10, &out), (uint64_t)-1);
	over[9] = 0x7f;
	CHECK_EQ_U64(varint_get(over, over + 10, &out), (uint64_t)-1);
	CHECK(varint_get_unchecked(over, &out) == NULL);
	over[9] = 0x01; /* exactly UINT64_MAX: fine */
	CHECK_EQ_U64(varint_get(over, over + 10, &out), 10);
	CHECK_EQ_U64(out, UINT64_MAX);
	CHECK(varint_get_unchecked(over, &out) == over + 10);
	memset(eleven, 0x80, sizeof(eleven));
	CHECK(varint_get_unchecked(eleven, &out) == NULL);

	/* Overlong but within ten bytes (0 as 0x80 0x00) decodes: LEB128
	 * does not require the shortest form. */
	uint8_t padded[2] = { 0x80, 0x00 };
	CHECK_EQ_U64(varint_get(padded, padded + 2, &out), 2);
	CHECK_EQ_U64(out, 0);

	/* Empty and truncated input. */
	CHECK_EQ_U64(varint_get(padded, padded, &out), 0);
	CHECK_EQ_U64(varint_get(padded, padded + 1, &out), 0);
	CHECK_EQ_U64(varint_get(over, over + 9, &out), 0);
}

int main(void)
{
	test_unsigned_round_trips();
	test_exact_lengths();
	test_zigzag();
	test_deltas();
	test_malformed();
	return unit_done();
}
