/*
 * load.h - what the bench sends: message sizes, bodies, option numbers.
 *
 * A size distribution ("32k" or "1k:60,10k:30,100k:10", weights in percent)
 * picks each message's size class; a body template per class holds the lines
 * every message of that size shares, generated once; a short fixed-width
 * header block (Subject and Message-ID carry a per-message counter) makes
 * each message unique. Lines are 78 characters plus CRLF and never start with
 * '.', so no dot-stuffing is needed. Pure helpers: no I/O.
 */
#ifndef RINGMX_BENCH_LOAD_H
#define RINGMX_BENCH_LOAD_H

#include "../common/base.h"

#define SIZE_CLASSES_MAX 16
#define BODY_LINE_TEXT_BYTES 78
#define MESSAGE_SIZE_MAX_BYTES (64ull << 20)  /* one bench message, at most */
#define MESSAGE_HEADER_MAX_BYTES 1024

struct size_dist {
	unsigned count;
	uint64_t size_bytes[SIZE_CLASSES_MAX];
	unsigned weight_pct[SIZE_CLASSES_MAX];
	unsigned cumulative_pct[SIZE_CLASSES_MAX]; /* running sum; last is 100 */
};

/* Parses a byte count: digits with an optional k/K (1024) or m/M (1024^2)
 * suffix. Returns 0, or -1 for anything else, zero, or past max_bytes. */
int parse_size_bytes(const char *text, uint64_t max_bytes, uint64_t *out_bytes) RMX_MUST_CHECK;

/* Parses a plain unsigned decimal in [min, max]. Returns 0 or -1. */
int parse_unsigned(const char *text, uint64_t min, uint64_t max, uint64_t *out) RMX_MUST_CHECK;

/* Parses "SIZE" (weight 100) or "SIZE:PCT,SIZE:PCT,..." with weights that
 * sum to 100. On failure returns -1 and writes a reason into err. */
int size_dist_parse(struct size_dist *d, const char *text, char *err, size_t err_cap) RMX_MUST_CHECK;

/* The class for a uniform random number (any uint32_t). */
unsigned size_dist_pick(const struct size_dist *d, uint32_t random);

/* Writes the per-message header block (From, To, Subject, Message-ID and the
 * empty line) for message seq of event loop thread_index into buf; its length
 * depends only on from and to, never on the numbers. Returns the length, or
 * 0 if it does not fit in cap. */
size_t message_header_format(char *buf, size_t cap, const char *from, const char *to,
			     unsigned thread_index, uint64_t seq);

/* Allocates the shared part of a size_bytes message whose header block is
 * header_bytes long: lines of 78 characters plus CRLF, the last one taking
 * the remainder (1 to 80 characters), at least one line. Returns a malloc'd buffer (caller frees) and its length
 * in *fill_bytes, or NULL when out of memory. */
uint8_t *body_fill_make(uint64_t size_bytes, size_t header_bytes, size_t *fill_bytes);

/* xorshift64*: a small per-thread generator (never seed with 0). */
static inline uint32_t bench_random(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

#endif
