/*
 * test_bench_load.c - what the bench sends: sizes, distributions, bodies.
 *
 * Byte counts with suffixes and their refusals, size distributions (weights
 * must sum to 100, picks follow the weights), header blocks of fixed length
 * that differ per message, and body fills of the exact size whose lines are
 * CRLF-terminated, at most 80 characters and never start with '.'.
 */
#include "../bench/load.h"
#include "test.h"

#include <string.h>

static void test_sizes(void)
{
	uint64_t v = 0;
	CHECK(parse_size_bytes("1k", MESSAGE_SIZE_MAX_BYTES, &v) == 0 && v == 1024);
	CHECK(parse_size_bytes("32K", MESSAGE_SIZE_MAX_BYTES, &v) == 0 && v == 32768);
	CHECK(parse_size_bytes("2m", MESSAGE_SIZE_MAX_BYTES, &v) == 0 && v == 2097152);
	CHECK(parse_size_bytes("777", MESSAGE_SIZE_MAX_BYTES, &v) == 0 && v == 777);
	CHECK(parse_size_bytes("0", MESSAGE_SIZE_MAX_BYTES, &v) != 0);
	CHECK(parse_size_bytes("", MESSAGE_SIZE_MAX_BYTES, &v) != 0);
	CHECK(parse_size_bytes("k", MESSAGE_SIZE_MAX_BYTES, &v) != 0);
	CHECK(parse_size_bytes("1kb", MESSAGE_SIZE_MAX_BYTES, &v) != 0);
	CHECK(parse_size_bytes("-1", MESSAGE_SIZE_MAX_BYTES, &v) != 0);
	CHECK(parse_size_bytes("65m", MESSAGE_SIZE_MAX_BYTES, &v) != 0);
	CHECK(parse_size_bytes("99999999999999999999999k", MESSAGE_SIZE_MAX_BYTES, &v) != 0);
	CHECK(parse_unsigned("18446744073709551615", 0, UINT64_MAX, &v) == 0 &&
	      v == UINT64_MAX);
	CHECK(parse_unsigned("18446744073709551616", 0, UINT64_MAX, &v) != 0);
	CHECK(parse_unsigned("5", 6, 10, &v) != 0);
	CHECK(parse_unsigned("5x", 0, 10, &v) != 0);
}

static void test_distributions(void)
{
	struct size_dist d;
	char err[200];
	CHECK(size_dist_parse(&d, "32k", err, sizeof(err)) == 0);
	CHECK_EQ_U(d.count, 1);
	CHECK_EQ_U(d.size_bytes[0], 32768);
	CHECK(size_dist_parse(&d, "1k:60,10k:30,100k:10", err, sizeof(err)) == 0);
	CHECK_EQ_U(d.count, 3);
	CHECK_EQ_U(d.size_bytes[2], 102400);
	CHECK_EQ_U(d.cumulative_pct[0], 60);
	CHECK_EQ_U(d.cumulative_pct[2], 100);
	unsigned hits[3] = { 0, 0, 0 };
	uint64_t rng = 12345;
	for (unsigned i = 0; i < 100000; i++)
		hits[size_dist_pick(&d, bench_random(&rng))]++;
	CHECK(hits[0] > 59000 && hits[0] < 61000);
	CHECK(hits[1] > 29000 && hits[1] < 31000);
	CHECK(hits[2] > 9500 && hits[2] < 10500);
	CHECK(size_dist_parse(&d, "1k:60,10k:30", err, sizeof(err)) != 0);
	CHECK(strstr(err, "90%") != NULL);
	CHECK(size_dist_parse(&d, "1k:60,10k:50", err, sizeof(err)) != 0);
	CHECK(size_dist_parse(&d, "1k:0,10k:100", err, sizeof(err)) != 0);
	CHECK(size_dist_parse(&d, "1k:60,10k", err, sizeof(err)) != 0);
	CHECK(size_dist_parse(&d, "x:100", err, sizeof(err)) != 0);
	CHECK(size_dist_parse(&d, "1q", err, sizeof(err)) != 0);
	char many[256] = "";
	for (unsigned i = 0; i < SIZE_CLASSES_MAX + 1; i++)
		strcat(many, i ? ",1k:1" : "1k:1");
	CHECK(size_dist_parse(&d, many, err, sizeof(err)) != 0);
}

static void test_headers_and_bodies(void)
{
	char a[MESSAGE_HEADER_MAX_BYTES], b[MESSAGE_HEADER_MAX_BYTES];
	size_t na = message_header_format(a, sizeof(a), "f@x.example", "t@y.example", 0, 0);
	size_t nb = message_header_format(b, sizeof(b), "f@x.example", "t@y.example", 63,
					  999999999999ull);
	CHECK(na > 0);
	CHECK_EQ_U(na, nb);
	CHECK(memcmp(a, b, na) != 0);
	CHECK(strstr(b, "Subject: ringmx-bench 063-999999999999\r\n") != NULL);
	CHECK(na >= 4 && memcmp(a + na - 4, "\r\n\r\n", 4) == 0);
	CHECK_EQ_U(message_header_format(a, 20, "f@x.example", "t@y.example", 0, 0), 0);

	const uint64_t sizes[] = { 1, 100, 200, 1024, 1025, 10240, 102400, 1000003 };
	for (size_t k = 0; k < RMX_ARRAY_LEN(sizes); k++) {
		size_t fill_bytes = 0;
		uint8_t *fill = body_fill_make(sizes[k], na, &fill_bytes);
		REQUIRE(fill != NULL);
		if (sizes[k] > na + 3)
			CHECK_EQ_U(na + fill_bytes, sizes[k]);
		else
			CHECK_EQ_U(fill_bytes, 3);
		bool lines_ok = true;
		size_t start = 0;
		for (size_t i = 0; i < fill_bytes; i++) {
			if (fill[i] == '\r' || fill[i] == '\n') {
				if (fill[i] == '\r' && (i + 1 >= fill_bytes || fill[i + 1] != '\n'))
					lines_ok = false;
				if (fill[i] == '\n') {
					size_t text = i - 1 - start;
					if (text == 0 || text > BODY_LINE_TEXT_BYTES + 2 ||
					    fill[start] == '.')
						lines_ok = false;
					start = i + 1;
				}
			}
		}
		CHECK(lines_ok);
		CHECK(start == fill_bytes); /* ends with CRLF */
		free(fill);
	}
}

int main(void)
{
	test_sizes();
	test_distributions();
	test_headers_and_bodies();
	return test_main_end("test_bench_load");
}
