/*
 * crc32c.h - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of every store record.
 *
 * crc32c() picks the SSE4.2 instruction path when the CPU has it and a
 * slicing-by-8 table path otherwise; both are exported so tests can hold
 * them against each other. Pure; any thread.
 */
#ifndef RINGMX_CRC32C_H
#define RINGMX_CRC32C_H

#include "../common/base.h"

/*
 * Continues a CRC: pass 0 for the first piece, then the previous result.
 * crc32c(crc32c(0, a, n), b, m) equals the CRC of a followed by b.
 * The check value of "123456789" is 0xE3069283.
 */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

/* The table implementation (any CPU). Same contract as crc32c(). */
uint32_t crc32c_sw(uint32_t crc, const void *data, size_t len);

/* The SSE4.2 implementation. Call only when crc32c_hw_available(). */
uint32_t crc32c_hw(uint32_t crc, const void *data, size_t len);

/* True when this CPU has the SSE4.2 crc32 instruction. */
bool crc32c_hw_available(void);

#endif
