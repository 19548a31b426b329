/*
 * hist.h - a log-linear latency histogram in bounded memory (HDR style).
 *
 * Values are nanoseconds. Below 256 ns every value has its own bucket; above,
 * each power-of-two range is split into 128 linear buckets, so a bucket is at
 * most 1/128 (0.8%) of its value wide. Values from 2^37 ns (about 137 s) up
 * land in the last bucket; the exact maximum is kept aside. One histogram is
 * a fixed array (about 32 KiB): no allocation, owned by one thread; threads
 * merge theirs at the end with hist_merge().
 */
#ifndef RINGMX_BENCH_HIST_H
#define RINGMX_BENCH_HIST_H

#include "../common/base.h"

#define HIST_SUB_BITS 7                         /* 128 buckets per octave */
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
#define HIST_EXACT_LIMIT_NS (2u * HIST_SUB_COUNT) /* 256: exact below */
#define HIST_TOP_BIT 37                         /* 2^37 ns ~ 137 s tracked */
#define HIST_BUCKET_COUNT                                                    \
	(HIST_EXACT_LIMIT_NS + (HIST_TOP_BIT - HIST_SUB_BITS - 1) * HIST_SUB_COUNT)

struct hist {
	uint64_t count;
	uint64_t sum_ns;   /* saturates instead of wrapping */
	uint64_t min_ns;   /* UINT64_MAX while empty */
	uint64_t max_ns;
	uint64_t buckets[HIST_BUCKET_COUNT];
};

/* Empties h. */
void hist_init(struct hist *h);

/* Counts one value of value_ns nanoseconds. Never fails: values beyond the
 * tracked range go into the last bucket (max_ns stays exact). */
void hist_record(struct hist *h, uint64_t value_ns);

/* Adds every count of src into dst (src is not changed). */
void hist_merge(struct hist *dst, const struct hist *src);

/* The value at or below which percentile (0..100] of the values lie, as the
 * highest value equivalent to its bucket, clamped to [min_ns, max_ns].
 * 0 for an empty histogram. */
uint64_t hist_percentile_ns(const struct hist *h, double percentile);

/* Arithmetic mean in nanoseconds (0 when empty). */
double hist_mean_ns(const struct hist *h);

/* Bucket index of a value and the highest value that bucket holds; exposed
 * for the unit test's precision checks. */
size_t hist_bucket_index(uint64_t value_ns);
uint64_t hist_bucket_highest_ns(size_t index);
uint64_t hist_bucket_lowest_ns(size_t index);

#endif
