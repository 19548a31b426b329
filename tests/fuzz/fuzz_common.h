/*
 * fuzz_common.h - what the libFuzzer targets share: a reader that takes
 * the settings and split points a target needs from the front of its input,
 * and a copy of the rest into a buffer of exactly its size, so that reading
 * one byte past the end is an AddressSanitizer report rather than luck.
 *
 * A failed check is a finding: FUZZ_CHECK prints what broke and aborts, and
 * libFuzzer keeps the input that did it.
 */
#ifndef RINGMX_FUZZ_COMMON_H
#define RINGMX_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond,     \
				__FILE__, __LINE__);                                  \
			abort();                                                      \
		}                                                                     \
	} while (0)

/* Bytes taken from the front of the input; past its end, zeros. */
struct fuzz_input {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fuzz_u8(struct fuzz_input *in)
{
	if (in->n == 0)
		return 0;
	uint8_t v = in->p[0];
	in->p++;
	in->n--;
	return v;
}

static inline uint16_t fuzz_u16(struct fuzz_input *in)
{
	uint16_t lo = fuzz_u8(in);
	return (uint16_t)(lo | (uint16_t)fuzz_u8(in) << 8);
}

/* The split points an input begins with: nonzero bytes, up to the first 0
 * (or cap of them); the piece sizes a target cuts the rest into. */
static inline size_t fuzz_splits(struct fuzz_input *in, uint8_t *splits, size_t cap)
{
	size_t n = 0;
	while (n < cap && in->n) {
		uint8_t s = fuzz_u8(in);
		if (s == 0)
			break;
		splits[n++] = s;
	}
	return n;
}

/* A heap copy of p[0..n) with nothing readable after it (n may be 0: a
 * one-byte allocation then, never read). The caller frees. */
static inline uint8_t *fuzz_exact_copy(const uint8_t *p, size_t n)
{
	uint8_t *copy = malloc(n ? n : 1);
	FUZZ_CHECK(copy != NULL);
	if (n)
		memcpy(copy, p, n);
	return copy;
}

/* True when s lies inside [base, base + n). */
static inline bool fuzz_span_within(const uint8_t *s, size_t len, const uint8_t *base, size_t n)
{
	return s >= base && len <= n && (size_t)(s - base) <= n - len;
}

#endif
