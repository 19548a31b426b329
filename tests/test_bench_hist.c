/*
 * test_bench_hist.c - the bench's log-linear latency histogram.
 *
 * Checks bucket geometry (contiguous, monotonic, exact below 256 ns, at most
 * 1/128 relative width above), percentiles against sorted samples within
 * that precision, merging, and the out-of-range bucket.
 */
#include "../bench/hist.h"
#include "test.h"

#include <string.h>

static struct hist h1, h2, h3;

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_geometry(void)
{
	for (uint64_t v = 0; v < 256; v++) {
		CHECK_EQ_U(hist_bucket_index(v), v);
		CHECK_EQ_U(hist_bucket_highest_ns(v), v);
	}
	bool contiguous = true, tight = true, inside = true;
	for (size_t i = 1; i + 1 < HIST_BUCKET_COUNT; i++) {
		uint64_t lo = hist_bucket_lowest_ns(i), hi = hist_bucket_highest_ns(i);
		if (lo != hist_bucket_highest_ns(i - 1) + 1)
			contiguous = false;
		if (i >= 128 && (double)(hi - lo + 1) > (double)lo / 128.0 + 1e-9)
			tight = false;
		if (hist_bucket_index(lo) != i || hist_bucket_index(hi) != i)
			inside = false;
	}
	CHECK(contiguous);
	CHECK(tight);
	CHECK(inside);
	/* 100 s is inside the tracked range; the last bucket (from 255 * 2^29 ns)
	 * also takes everything from 2^37 ns up. */
	CHECK(hist_bucket_index(100ull * 1000 * 1000 * 1000) < HIST_BUCKET_COUNT - 1);
	CHECK_EQ_U(hist_bucket_index(1ull << 37), HIST_BUCKET_COUNT - 1);
	CHECK_EQ_U(hist_bucket_index(UINT64_MAX), HIST_BUCKET_COUNT - 1);
	CHECK_EQ_U(hist_bucket_lowest_ns(HIST_BUCKET_COUNT - 1), 255ull << 29);
}

static void test_percentiles(void)
{
	enum { N = 20000 };
	static uint64_t values[N];
	uint64_t x = 88172645463325252ull;
	hist_init(&h1);
	CHECK_EQ_U(hist_percentile_ns(&h1, 50), 0);
	for (unsigned i = 0; i < N; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		/* log-uniform from 1 us to about 60 s */
		unsigned shift = (unsigned)(x % 26);
		values[i] = 1000 + ((x >> 8) & ((1ull << (shift + 10)) - 1));
		hist_record(&h1, values[i]);
	}
	qsort(values, N, sizeof(values[0]), cmp_u64);
	CHECK_EQ_U(h1.count, N);
	CHECK_EQ_U(h1.min_ns, values[0]);
	CHECK_EQ_U(h1.max_ns, values[N - 1]);
	const double ps[] = { 1, 10, 50, 90, 99, 99.9, 100 };
	for (size_t k = 0; k < RMX_ARRAY_LEN(ps); k++) {
		size_t rank = (size_t)(ps[k] / 100.0 * N + 0.999999);
		uint64_t want = values[rank - 1];
		uint64_t got = hist_percentile_ns(&h1, ps[k]);
		/* Never below the true value, at most one bucket (0.8%) above. */
		CHECK(got >= want);
		CHECK((double)got <= (double)want * (1.0 + 1.0 / 128.0) + 1.0);
	}
	CHECK_EQ_U(hist_percentile_ns(&h1, 100), values[N - 1]);
}

static void test_merge_and_edges(void)
{
	hist_init(&h2);
	hist_init(&h3);
	hist_record(&h2, 5);
	hist_record(&h2, 1000000);
	hist_record(&h3, 3);
	hist_record(&h3, UINT64_MAX); /* beyond the range: last bucket, exact max */
	hist_merge(&h2, &h3);
	CHECK_EQ_U(h2.count, 4);
	CHECK_EQ_U(h2.min_ns, 3);
	CHECK_EQ_U(h2.max_ns, UINT64_MAX);
	CHECK_EQ_U(h2.sum_ns, UINT64_MAX); /* saturated */
	CHECK_EQ_U(hist_percentile_ns(&h2, 25), 3);
	CHECK_EQ_U(hist_percentile_ns(&h2, 50), 5);
	CHECK_EQ_U(hist_percentile_ns(&h2, 100), UINT64_MAX);
	uint64_t p75 = hist_percentile_ns(&h2, 75);
	CHECK(p75 >= 1000000 && p75 <= 1000000 + 1000000 / 128);
	hist_init(&h3);
	hist_record(&h3, 42);
	CHECK_EQ_U(hist_percentile_ns(&h3, 0.001), 42);
	CHECK_EQ_U(hist_percentile_ns(&h3, 99.999), 42);
	CHECK(hist_mean_ns(&h3) == 42.0);
}

int main(void)
{
	test_geometry();
	test_percentiles();
	test_merge_and_edges();
	return test_main_end("test_bench_hist");
}
