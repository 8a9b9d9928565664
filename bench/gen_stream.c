/*
 * gen_stream.c - a synthetic recording of many distinct Python stacks,
 * written with the tracker's own writer: N allocations, each from a stack
 * of its own (random paths of depth 8 to 27 through 20,000 frames, the
 * shallow levels shared), half of them freed. For the readers' bench on a
 * program with a great many call sites.
 *
 * usage: gen_stream N > FILE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

static int out(void *ctx, const uint8_t *c, size_t n)
{
	(void)ctx;
	return fwrite(c, 1, n, stdout) == n ? 0 : -1;
}

static struct mr_writer w;

/* Nodes interned by (parent, frame), as the tracker's trie does. */
#define HB (1u << 25)
static uint64_t *hk;
static uint32_t *hv;

static uint32_t node_of(uint32_t parent, uint32_t frame)
{
	uint64_t key = (uint64_t)parent << 32 | frame;
	uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 39;
	for (;; h = (h + 1) & (HB - 1)) {
		if (hv[h] && hk[h] == key)
			return hv[h];
		if (!hv[h]) {
			hk[h] = key;
			return hv[h] = mr_w_node_python(&w, parent, frame);
		}
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_stream N > FILE\n");
		return 2;
	}
	long n = atol(argv[1]);
	hk = calloc(HB, sizeof(*hk));
	hv = calloc(HB, sizeof(*hv));
	if (!hk || !hv)
		return 1;
	mr_writer_init(&w, 4242, out, NULL);
	char *av[] = { "python3", "big.py" };
	struct mr_header_info h = { .tool_version = "0.1.0", .pid = 4242, .ppid = 1,
				    .start_us = 1700000000000000ull, .page_size = 4096,
				    .interval_us = 10000, .argc = 2, .argv = av,
				    .exe = "/usr/bin/python3" };
	mr_w_header(&w, &h);
	mr_w_switch(&w, mr_w_thread(&w, 4242, "main"));
	enum { NF = 20000 };
	static uint32_t frames[NF];
	uint32_t files[97];
	char buf[64];
	for (int i = 0; i < 97; i++) {
		int k = snprintf(buf, sizeof(buf), "pkg/mod_%d.py", i);
		files[i] = mr_w_string(&w, buf, (size_t)k);
	}
	for (int i = 0; i < NF; i++) {
		int k = snprintf(buf, sizeof(buf), "fn_%d", i % 3000);
		frames[i] = mr_w_pyframe(&w, mr_w_string(&w, buf, (size_t)k), files[i % 97],
					 10 + (uint32_t)(i % 400));
	}
	srand(1);
	uint64_t addr = 0x10000000;
	for (long i = 0; i < n; i++) {
		int depth = 8 + rand() % 20;
		uint32_t node = 0;
		for (int d = 0; d < depth; d++)
			node = node_of(node, frames[d < 6 ? rand() % 4 : d < 12 ? rand() % 200 : rand() % NF]);
		mr_w_alloc(&w, MR_MALLOC, addr, 16 + (uint64_t)(rand() % 4000), node);
		if (i % 2)
			mr_w_free(&w, MR_FREE, addr - 4096, 0);
		addr += 4096;
		if (i % 10000 == 0)
			mr_w_memory(&w, (uint64_t)i, 1 << 20, addr);
	}
	mr_w_trailer(&w, (uint64_t)n + 1);
	return fflush(stdout) == 0 ? 0 : 1;
}
