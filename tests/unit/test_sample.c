/*
 * test_sample.c - what a sampled allocation stands for (lib/sample.h), and
 * a sampled stream replayed: its header read back, its samples weighed,
 * its mappings counted as they are.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/input.h"
#include "../../lib/replay.h"
#include "../../lib/sample.h"
#include "../../lib/stream.h"
#include "unit.h"

struct membuf {
	uint8_t *p;
	size_t len, cap;
};

static int mem_sink(void *ctx, const uint8_t *chunk, size_t len)
{
	struct membuf *m = ctx;
	if (m->len + len > m->cap) {
		m->cap = (m->len + len) * 2;
		m->p = realloc(m->p, m->cap);
		if (!m->p)
			abort();
	}
	memcpy(m->p + m->len, chunk, len);
	m->len += len;
	return 0;
}

static int near(double a, double b, double tolerance)
{
	return fabs(a - b) <= tolerance;
}

static void weights(void)
{
	CHECK(mr_sample_weight(100, 0) == 1.0);
	CHECK(mr_sample_weight(0, 512) == 0.0);
	/* an allocation as large as the gap is sampled with p = 1 - 1/e */
	CHECK(near(mr_sample_weight(512, 512), 1.0 / (1.0 - exp(-1.0)), 1e-12));
	/* a tiny one stands for about gap / size of its kind (plus 1/2) */
	CHECK(near(mr_sample_weight(1, 524288), 524288.5, 1e-3));
	/* a huge one for itself */
	CHECK(near(mr_sample_weight(1ull << 40, 524288), 1.0, 1e-12));
	CHECK(mr_sampled_allocator(MR_MALLOC) && mr_sampled_allocator(MR_REALLOC) &&
	      mr_sampled_allocator(MR_PVALLOC));
	CHECK(!mr_sampled_allocator(MR_MMAP) && !mr_sampled_allocator(MR_MREMAP) &&
	      !mr_sampled_allocator(MR_MUNMAP));
}

static void rounding(void)
{
	/* integers stay; fractions round up as often as their size */
	CHECK_EQ_U64(mr_round_by(7.0, 123), 7);
	uint64_t sum = 0, odd = 0;
	for (uint64_t k = 0; k < 1000000; k++) {
		uint64_t v = mr_round_by(2.3, k);
		odd += v != 2 && v != 3;
		sum += v;
	}
	CHECK_EQ_U64(odd, 0);
	/* 2.3 million, within 5 standard deviations (sd 458) */
	CHECK(sum > 2300000 - 2300 && sum < 2300000 + 2300);
	CHECK_EQ_U64(mr_round_by(2.5, 99), mr_round_by(2.5, 99));
}

/* A stream of a process that sampled 10000 blocks of 10 bytes with a gap
 * of 1000, freed half of them, and mapped 1 MiB. */
static void replayed(void)
{
	struct membuf out = { 0 };
	struct mr_writer w;
	mr_writer_init(&w, 77, mem_sink, &out);
	char *argv[] = { "prog", NULL };
	struct mr_header_info h = {
		.tool_version = "t", .pid = 77, .page_size = 4096,
		.flags = MR_F_NATIVE | MR_F_SAMPLED, .interval_us = 10000,
		.argc = 1, .argv = argv, .exe = "/prog", .sample_bytes = 1000,
	};
	mr_w_header(&w, &h);
	uint32_t t = mr_w_thread(&w, 1, "main");
	mr_w_switch(&w, t);
	uint32_t node = mr_w_node_native(&w, 0, 0x401000);
	for (uint64_t i = 0; i < 10000; i++)
		mr_w_alloc(&w, MR_MALLOC, 0x100000 + i * 32, 10, node);
	for (uint64_t i = 0; i < 10000; i += 2)
		mr_w_free(&w, MR_FREE, 0x100000 + i * 32, 0);
	mr_w_alloc(&w, MR_MMAP, 0x7f0000000000, 1 << 20, node);
	mr_w_trailer(&w, 5);
	mr_w_flush(&w);

	struct mr_input *in = mr_input_open_memory(out.p, out.len, "sampled");
	struct mr_reader rd;
	mr_reader_init(&rd, in);
	struct replay r;
	replay_init(&r, 0);
	struct mr_record rec;
	int rc;
	while ((rc = mr_next(&rd, &rec)) == 1)
		replay_record(&r, &rec);
	CHECK(rc == 0);
	CHECK_EQ_U64(rd.nprocs, 1);
	CHECK_EQ_U64(rd.procs[0]->header.sample_bytes, 1000);
	CHECK(rd.procs[0]->header.flags & MR_F_SAMPLED);
	CHECK_EQ_U64(r.sample_bytes, 1000);

	/* each block stands for w = 100.50 blocks and 1005.0 bytes */
	double wt = mr_sample_weight(10, 1000);
	double count = 10000 * wt, bytes = 10000 * wt * 10;
	printf("estimated %" PRIu64 " allocations (%.0f), %" PRIu64 " bytes (%.0f)\n",
	       r.n_allocs, count, r.bytes_allocated, bytes);
	/* 1 MiB mapped, counted once */
	CHECK_EQ_U64(r.alloc_count[MR_MMAP], 1);
	CHECK_EQ_U64(r.alloc_bytes[MR_MMAP], 1 << 20);
	/* each count is 100 or 101, by a coin per block: within 5 standard
	 * deviations (sqrt(10000 / 4) = 50 for all, 35 for the half freed) */
	CHECK(near((double)(r.n_allocs - 1), count, 250));
	CHECK(near((double)(r.bytes_allocated - (1 << 20)), bytes, 60));
	/* the peak before the frees; then half the bytes live, and the mapping */
	CHECK(near((double)r.peak, bytes, 60));
	CHECK(near((double)(r.live + r.gone - (1 << 20)), bytes / 2, 60));
	/* after the trailer, the process has ended: its blocks are gone, not live */
	CHECK_EQ_U64(r.live, 0);
	CHECK(near((double)r.n_frees, count / 2, 180));
	CHECK_EQ_U64(r.nsites, 1);
	const struct site *s = &r.sites[0];
	CHECK_EQ_U64(site_value(&r, s, METRIC_TOTAL), r.bytes_allocated);
	CHECK_EQ_U64(site_value(&r, s, METRIC_COUNT), r.n_allocs);
	CHECK_EQ_U64(site_value(&r, s, METRIC_LEAKED), r.gone);
	CHECK_EQ_U64(site_count(&r, s, METRIC_LEAKED), r.n_allocs - r.n_frees);
	CHECK(metric_unavailable(&r, METRIC_TEMPORARY) != NULL);
	CHECK(metric_unavailable(&r, METRIC_PEAK) == NULL);
	replay_free(&r);
	mr_reader_free(&rd);
	mr_input_close(in);
	free(out.p);
}

int main(void)
{
	weights();
	rounding();
	replayed();
	return unit_done();
}
