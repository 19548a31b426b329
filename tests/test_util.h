/*
 * test_util.h - helpers that several unit tests share: a growable byte
 * buffer and two small deterministic generators (so a failing random case
 * reproduces). Header-only, like test.h; allocation failures stop the test.
 */
#ifndef RINGMX_TEST_UTIL_H
#define RINGMX_TEST_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

/* ---- growable bytes ---- */

struct test_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

static inline void test_buf_put(struct test_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		b->data = realloc(b->data, cap);
		REQUIRE(b->data != NULL);
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static inline void test_buf_str(struct test_buf *b, const char *s)
{
	test_buf_put(b, s, strlen(s));
}

static inline bool test_buf_eq(const struct test_buf *a, const struct test_buf *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Drops the first n bytes. */
static inline void test_buf_drop_front(struct test_buf *b, size_t n)
{
	REQUIRE(n <= b->len);
	if (n == 0)
		return;
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

static inline void test_buf_free(struct test_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* ---- deterministic generators (the caller owns the state) ---- */

/* xorshift64 (13, 7, 17). */
static inline uint64_t test_xorshift64(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

/* xorshift64* (12, 25, 27, then the multiplier). */
static inline uint64_t test_xorshift64star(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545f4914f6cdd1dull;
}

#endif
