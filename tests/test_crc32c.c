/*
 * test_crc32c.c - CRC-32C against published check values (the CRC catalogue's
 * "123456789" and RFC 3720 appendix B.4), and the SSE4.2 path against the
 * table path on random data at random lengths, alignments and split points.
 */
#include "../storage/crc32c.h"
#include "test.h"
#include "test_util.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void)
{
	return test_xorshift64(&rng_state);
}

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void check_vectors(crc_fn fn)
{
	uint8_t buf[32];

	CHECK_EQ_U(fn(0, "123456789", 9), 0xE3069283u);
	CHECK_EQ_U(fn(0, "", 0), 0u);
	CHECK_EQ_U(fn(0x12345678u, "", 0), 0x12345678u);

	memset(buf, 0, sizeof(buf));
	CHECK_EQ_U(fn(0, buf, sizeof(buf)), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	CHECK_EQ_U(fn(0, buf, sizeof(buf)), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	CHECK_EQ_U(fn(0, buf, sizeof(buf)), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	CHECK_EQ_U(fn(0, buf, sizeof(buf)), 0x113FDB5Cu);

	/* Continuation: any split gives the CRC of the whole. */
	for (size_t cut = 0; cut <= 9; cut++) {
		uint32_t c = fn(0, "123456789", cut);
		c = fn(c, "123456789" + cut, 9 - cut);
		CHECK_EQ_U(c, 0xE3069283u);
	}
}

static void check_random_against_each_other(void)
{
	enum { AREA_BYTES = 70000 };
	uint8_t *area = malloc(AREA_BYTES);
	REQUIRE(area != NULL);
	for (size_t i = 0; i < AREA_BYTES; i++)
		area[i] = (uint8_t)rng_next();

	unsigned mismatches = 0, split_mismatches = 0;
	for (int round = 0; round < 3000; round++) {
		size_t start = rng_next() % 64;
		size_t len = (round < 200) ? (size_t)round : rng_next() % (AREA_BYTES - 64);
		uint32_t seed = (round & 1) ? (uint32_t)rng_next() : 0;
		uint32_t sw = crc32c_sw(seed, area + start, len);
		uint32_t hw = crc32c_hw(seed, area + start, len);
		if (sw != hw)
			mismatches++;
		size_t cut = len ? rng_next() % (len + 1) : 0;
		uint32_t part = crc32c(seed, area + start, cut);
		part = crc32c(part, area + start + cut, len - cut);
		if (part != sw)
			split_mismatches++;
	}
	CHECK_EQ_U(mismatches, 0);
	CHECK_EQ_U(split_mismatches, 0);

	/* A single flipped bit always changes the CRC. */
	uint32_t base = crc32c(0, area, 4096);
	unsigned unchanged = 0;
	for (int bit = 0; bit < 4096 * 8; bit += 97) {
		area[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		if (crc32c(0, area, 4096) == base)
			unchanged++;
		area[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	CHECK_EQ_U(unchanged, 0);
	free(area);
}

int main(void)
{
	check_vectors(crc32c_sw);
	check_vectors(crc32c);
	if (crc32c_hw_available()) {
		check_vectors(crc32c_hw);
		check_random_against_each_other();
	} else {
		fprintf(stderr, "test_crc32c: no SSE4.2 on this CPU; table path only\n");
	}
	return test_main_end("crc32c");
}
