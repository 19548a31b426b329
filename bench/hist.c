/*
 * hist.c - the bench's latency histogram (see hist.h for the layout).
 *
 * Sits at the end of the bench's measurement path: each event loop records
 * transaction and acknowledgement latencies into its own histograms, and the
 * main thread merges them for the report. Invariants: count equals the sum
 * of the buckets; min_ns <= every recorded value <= max_ns.
 */
#include "hist.h"

#include <string.h>

_Static_assert(HIST_BUCKET_COUNT == 256 + 29 * 128, "buckets from 1 ns to 2^37 ns");

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min_ns = UINT64_MAX;
}

size_t hist_bucket_index(uint64_t value_ns)
{
	if (value_ns < HIST_EXACT_LIMIT_NS)
		return (size_t)value_ns;
	unsigned msb = 63u - (unsigned)__builtin_clzll(value_ns);
	if (msb >= HIST_TOP_BIT)
		return HIST_BUCKET_COUNT - 1;
	unsigned shift = msb - HIST_SUB_BITS;
	/* (value >> shift) is in [128, 256): the top 8 bits of the value. */
	size_t sub = (size_t)(value_ns >> shift) - HIST_SUB_COUNT;
	size_t index = HIST_EXACT_LIMIT_NS + (size_t)(msb - HIST_SUB_BITS - 1) * HIST_SUB_COUNT + sub;
	RMX_ASSERT(index < HIST_BUCKET_COUNT);
	return index;
}

uint64_t hist_bucket_lowest_ns(size_t index)
{
	RMX_ASSERT(index < HIST_BUCKET_COUNT);
	if (index < HIST_EXACT_LIMIT_NS)
		return index;
	size_t rel = index - HIST_EXACT_LIMIT_NS;
	unsigned msb = (unsigned)(rel / HIST_SUB_COUNT) + HIST_SUB_BITS + 1;
	uint64_t sub = rel % HIST_SUB_COUNT;
	return (HIST_SUB_COUNT + sub) << (msb - HIST_SUB_BITS);
}

uint64_t hist_bucket_highest_ns(size_t index)
{
	RMX_ASSERT(index < HIST_BUCKET_COUNT);
	if (index < HIST_EXACT_LIMIT_NS)
		return index;
	if (index == HIST_BUCKET_COUNT - 1)
		return UINT64_MAX;
	return hist_bucket_lowest_ns(index + 1) - 1;
}

void hist_record(struct hist *h, uint64_t value_ns)
{
	h->buckets[hist_bucket_index(value_ns)]++;
	h->count++;
	h->sum_ns = (h->sum_ns > UINT64_MAX - value_ns) ? UINT64_MAX : h->sum_ns + value_ns;
	if (value_ns < h->min_ns)
		h->min_ns = value_ns;
	if (value_ns > h->max_ns)
		h->max_ns = value_ns;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	for (size_t i = 0; i < HIST_BUCKET_COUNT; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	dst->sum_ns = (dst->sum_ns > UINT64_MAX - src->sum_ns) ? UINT64_MAX
							       : dst->sum_ns + src->sum_ns;
	if (src->min_ns < dst->min_ns)
		dst->min_ns = src->min_ns;
	if (src->max_ns > dst->max_ns)
		dst->max_ns = src->max_ns;
}

uint64_t hist_percentile_ns(const struct hist *h, double percentile)
{
	if (h->count == 0)
		return 0;
	RMX_ASSERT(percentile > 0.0 && percentile <= 100.0);
	/* The rank of the value wanted, 1-based: ceil(p/100 * count). */
	double exact = percentile / 100.0 * (double)h->count;
	uint64_t rank = (uint64_t)exact;
	if ((double)rank < exact)
		rank++;
	if (rank == 0)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	uint64_t seen = 0;
	for (size_t i = 0; i < HIST_BUCKET_COUNT; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t v = hist_bucket_highest_ns(i);
			return RMX_MAX(RMX_MIN(v, h->max_ns), h->min_ns);
		}
	}
	RMX_ASSERT(0 && "bucket counts sum to count");
	return h->max_ns;
}

double hist_mean_ns(const struct hist *h)
{
	return h->count ? (double)h->sum_ns / (double)h->count : 0.0;
}
