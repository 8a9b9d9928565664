/*
 * fuzz_folded.c - libFuzzer target: any bytes as collapsed stacks, parsed
 * as every filter parses them, each frame escaped for the collapsed format
 * and for JSON in HTML as memray-flame does, and each stack's paths
 * normalised as memray-diff does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/collapse.h"
#include "../../lib/folded.h"
#include "../../lib/frame_norm.h"
#include "../../lib/input.h"
#include "../../lib/util.h"

static FILE *out;
static struct frame_norm norm;

static void on_stack(void *ctx, const char *frames, size_t len, uint64_t value)
{
	const char *s = frames, *e = frames + len;
	while (s <= e) {
		const char *semi = memchr(s, ';', (size_t)(e - s));
		size_t n = semi ? (size_t)(semi - s) : (size_t)(e - s);
		collapse_escape(out, s, n);
		json_string(out, s, n);
		if (!semi)
			break;
		s = semi + 1;
	}
	fprintf(out, " %llu\n", (unsigned long long)value);
	size_t n;
	frame_norm_learn(&norm, frames, len);
	char *t = frame_norm_stack(&norm, frames, len, &n);
	fwrite(t, 1, n, out);
	free(t);
}

static void on_meta(void *ctx, const char *key, const char *value)
{
	json_string(out, key, strlen(key));
	json_string(out, value, strlen(value));
}

static void on_stack2(void *ctx, const char *frames, size_t len, uint64_t before, uint64_t after)
{
	on_stack(ctx, frames, len, before ^ after);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	progname = "fuzz_folded";
	if (!out && !(out = fopen("/dev/null", "w")))
		return 0;
	struct mr_input *in = mr_input_open_memory(data, size, "fuzz");
	if (!in)
		return 0;
	/* every other input read as possibly differential */
	struct folded_sink sink = { on_stack, on_meta, NULL, size & 1 ? on_stack2 : NULL };
	/* explicit roots or the automatic one, lines or not, by the size */
	char *dirs[] = { "/a", "b/", "/" };
	frame_norm_init(&norm, dirs, size & 2 ? 3 : 0, (size & 4) != 0);
	folded_read(in, &sink, NULL);
	frame_norm_free(&norm);
	mr_input_close(in);
	return 0;
}
