/*
 * crc32c.c - CRC-32C for store records (see crc32c.h).
 *
 * Two implementations of one function. The table path is slicing-by-8: eight
 * 256-entry tables let the loop fold eight input bytes per step with eight
 * independent lookups. The hardware path feeds eight bytes at a time to the
 * SSE4.2 crc32 instruction, which implements exactly this polynomial. That
 * instruction has a latency of three cycles but accepts one per cycle, so
 * long inputs run as three interleaved lanes of CRC32C_LANE_BYTES each; the
 * lane states are then joined with the CRC's linearity: the state after
 * A then B is shift(state after A, |B|) xor (state of B alone from zero),
 * where shift, the effect of |B| zero bytes, is a fixed GF(2)-linear map
 * applied with four byte-indexed tables. All tables are built once, before
 * main(), by a constructor that also picks the path; after that everything
 * here is read-only and thread-safe.
 *
 * Both paths use the conventional pre- and post-inversion, so a CRC can be
 * continued across pieces by passing the previous result back in.
 */
#include "crc32c.h"

#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define CRC32C_POLY_REFLECTED 0x82F63B78u
#define CRC32C_LANE_BYTES 256 /* a power of two; three lanes per step */
_Static_assert((CRC32C_LANE_BYTES & (CRC32C_LANE_BYTES - 1)) == 0 && CRC32C_LANE_BYTES % 8 == 0,
	       "lane length");

static uint32_t crc32c_table[8][256];
/* crc32c_shift_lane[k][b]: raw state b << 8k advanced over one lane of zeros. */
static uint32_t crc32c_shift_lane[4][256];
static bool crc32c_use_hw;

/* A GF(2)-linear map on 32-bit CRC states, as the images of the 32 bits. */
struct crc32c_op {
	uint32_t image[32];
};

static uint32_t op_apply(const struct crc32c_op *op, uint32_t v)
{
	uint32_t r = 0;
	for (int i = 0; v != 0; i++, v >>= 1)
		if (v & 1)
			r ^= op->image[i];
	return r;
}

/* out = a after a (a applied twice). */
static void op_square(const struct crc32c_op *a, struct crc32c_op *out)
{
	for (int i = 0; i < 32; i++)
		out->image[i] = op_apply(a, a->image[i]);
}

static void build_lane_shift(void)
{
	struct crc32c_op op, sq;
	/* One zero byte: the table step with a zero input byte. */
	for (int i = 0; i < 32; i++) {
		uint32_t c = 1u << i;
		op.image[i] = crc32c_table[0][c & 0xff] ^ (c >> 8);
	}
	for (uint32_t n = 1; n < CRC32C_LANE_BYTES; n *= 2) {
		op_square(&op, &sq);
		op = sq;
	}
	for (int k = 0; k < 4; k++)
		for (uint32_t b = 0; b < 256; b++)
			crc32c_shift_lane[k][b] = op_apply(&op, b << (8 * k));
}

static inline uint32_t shift_lane(uint32_t c)
{
	return crc32c_shift_lane[0][c & 0xff] ^ crc32c_shift_lane[1][(c >> 8) & 0xff] ^
	       crc32c_shift_lane[2][(c >> 16) & 0xff] ^ crc32c_shift_lane[3][c >> 24];
}

__attribute__((constructor)) static void crc32c_init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
		crc32c_table[0][n] = c;
	}
	/* table[k][n]: the CRC of byte n followed by k zero bytes. */
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = crc32c_table[0][n];
		for (int k = 1; k < 8; k++) {
			c = crc32c_table[0][c & 0xff] ^ (c >> 8);
			crc32c_table[k][n] = c;
		}
	}
	build_lane_shift();
#if defined(__x86_64__)
	__builtin_cpu_init();
	crc32c_use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static inline uint64_t load_le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

uint32_t crc32c_sw(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t c = ~crc;

	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		c = crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t v = load_le64(p) ^ c;
		c = crc32c_table[7][v & 0xff] ^
		    crc32c_table[6][(v >> 8) & 0xff] ^
		    crc32c_table[5][(v >> 16) & 0xff] ^
		    crc32c_table[4][(v >> 24) & 0xff] ^
		    crc32c_table[3][(v >> 32) & 0xff] ^
		    crc32c_table[2][(v >> 40) & 0xff] ^
		    crc32c_table[1][(v >> 48) & 0xff] ^
		    crc32c_table[0][v >> 56];
		p += 8;
		len -= 8;
	}
	while (len > 0) {
		c = crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
		len--;
	}
	return ~c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_hw(uint32_t crc, const void *data,
						       size_t len)
{
	const uint8_t *p = data;
	uint64_t c = (uint32_t)~crc;

	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		len--;
	}
	while (len >= 3 * CRC32C_LANE_BYTES) {
		uint64_t c1 = 0, c2 = 0;
		for (size_t i = 0; i < CRC32C_LANE_BYTES; i += 8) {
			uint64_t v0, v1, v2;
			memcpy(&v0, p + i, 8);
			memcpy(&v1, p + CRC32C_LANE_BYTES + i, 8);
			memcpy(&v2, p + 2 * CRC32C_LANE_BYTES + i, 8);
			c = _mm_crc32_u64(c, v0);
			c1 = _mm_crc32_u64(c1, v1);
			c2 = _mm_crc32_u64(c2, v2);
		}
		c = shift_lane((uint32_t)c) ^ (uint32_t)c1;
		c = shift_lane((uint32_t)c) ^ (uint32_t)c2;
		p += 3 * CRC32C_LANE_BYTES;
		len -= 3 * CRC32C_LANE_BYTES;
	}
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, sizeof(v));
		c = _mm_crc32_u64(c, v);
		p += 8;
		len -= 8;
	}
	while (len > 0) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		len--;
	}
	return ~(uint32_t)c;
}

bool crc32c_hw_available(void)
{
	return crc32c_use_hw;
}
#else
uint32_t crc32c_hw(uint32_t crc, const void *data, size_t len)
{
	(void)crc;
	(void)data;
	(void)len;
	RMX_ASSERT(!"crc32c_hw called without SSE4.2");
}

bool crc32c_hw_available(void)
{
	return false;
}
#endif

uint32_t crc32c(uint32_t crc, const void *data, size_t len)
{
	if (RMX_LIKELY(crc32c_use_hw))
		return crc32c_hw(crc, data, len);
	return crc32c_sw(crc, data, len);
}
