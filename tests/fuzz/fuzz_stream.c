/*
 * fuzz_stream.c - libFuzzer target: any bytes as a memray stream, read
 * record by record, replayed (live set, sites, peak) and folded into
 * collapsed stacks as memray-fold does. Nothing may crash, leak or read
 * out of bounds, whatever the bytes claim.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../lib/collapse.h"
#include "../../lib/input.h"
#include "../../lib/replay.h"
#include "../../lib/stream.h"
#include "../../lib/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	progname = "fuzz_stream";
	struct mr_input *in = mr_input_open_memory(data, size, "fuzz");
	if (!in)
		return 0;
	struct mr_reader rd;
	struct mr_record rec;
	struct replay r;
	mr_reader_init(&rd, in);
	replay_init(&r, size & 1); /* by thread or not, by the input's length */
	while (mr_next(&rd, &rec) == 1)
		replay_record(&r, &rec);
	static const enum metric metrics[] = { METRIC_PEAK, METRIC_TOTAL, METRIC_LEAKED };
	struct collapse_opts o = { metrics[size % 3], (enum frames_mode)(size % 3), (int)(size & 1), 1, 0 };
	/* Symbolizing would open the real files the seeds name (libc and its
	 * debug info, 40 ms each): not what is fuzzed here. Their addresses
	 * are folded raw. */
	for (size_t i = 0; i < rd.nprocs; i++)
		for (size_t k = 0; k < rd.procs[i]->nmodules; k++)
			rd.procs[i]->modules[k].path = 0;
	FILE *out = fopen("/dev/null", "w");
	if (out) {
		struct symbolizer *sym = sym_new();
		collapse_write(out, &r, sym, &o);
		sym_free(sym);
		fclose(out);
	}
	replay_free(&r);
	mr_reader_free(&rd);
	mr_input_close(in);
	return 0;
}
