/*
 * crc32c.c - CRC-32C for store records (see crc32c.h).
 *
 * Two implementations of one function. The table path is slicing-by-8: eight
 * 256-entry tables let the loop fold eight input bytes per step with eight
 * independent lookups. The hardware path feeds eight bytes at a time to the
 * SSE4.2 crc32 instruction, which implements exactly this polynomial. The
 * tables are built once, before main(), by a constructor that also picks the
 * path; after that everything here is read-only and thread-safe.
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

static uint32_t crc32c_table[8][256];
static bool crc32c_use_hw;

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
