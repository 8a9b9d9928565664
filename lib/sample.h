/*
 * sample.h - what a sampled allocation stands for.
 *
 * With memray-record --sample-bytes N the tracker samples heap allocations
 * by bytes, as tcmalloc and jemalloc do: each thread draws the gap to its
 * next sampled byte from an exponential distribution of mean N, so an
 * allocation of s bytes is sampled with probability 1 - e^(-s/N) whatever
 * came before it. A sampled allocation therefore stands for 1 / (1 -
 * e^(-s/N)) allocations of its size; counting it that many times makes
 * every sum over allocations (bytes, counts, per stack, at any moment) an
 * unbiased estimate of the full recording's. Mappings (mmap, mremap,
 * munmap) are never sampled: they weigh 1.
 */
#ifndef MEMRAY_SAMPLE_H
#define MEMRAY_SAMPLE_H

#include <math.h>
#include <stdint.h>

#include "stream.h"

/* The number of allocations a sampled one of `size` bytes stands for. */
static inline double mr_sample_weight(uint64_t size, uint64_t mean_gap)
{
	if (!mean_gap)
		return 1.0;
	if (!size)
		return 0.0; /* never sampled */
	return -1.0 / expm1(-(double)size / (double)mean_gap);
}

/* Whether an event of `allocator` in a sampled stream is a sample. */
static inline int mr_sampled_allocator(int allocator)
{
	return allocator != MR_MMAP && allocator != MR_MREMAP && allocator != MR_MUNMAP;
}

/* x rounded down or up to an integer, up with probability frac(x), by the
 * bits of `key`: the sum of many such roundings stays unbiased, and the
 * same key gives the same integer every time. */
static inline uint64_t mr_round_by(double x, uint64_t key)
{
	uint64_t whole = (uint64_t)x;
	double frac = x - (double)whole;
	key ^= key >> 31;
	key *= 0x7fb5d329728ea185ull;
	key ^= key >> 27;
	key *= 0x81dadef4bc2dd44dull;
	key ^= key >> 33;
	return whole + ((double)(key >> 11) * 0x1p-53 < frac);
}

#endif
