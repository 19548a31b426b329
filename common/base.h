/*
 * base.h - the few primitives every ringmx module shares.
 *
 * Assertions that stay on in release builds (a broken invariant aborts with
 * file:line; it never limps on), byte spans into caller-owned buffers, and
 * small helpers. Includes only the C library: proto/ and storage/ may use it.
 */
#ifndef RINGMX_BASE_H
#define RINGMX_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define RMX_LIKELY(x) __builtin_expect(!!(x), 1)
#define RMX_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RMX_MUST_CHECK __attribute__((warn_unused_result))
#define RMX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define RMX_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RMX_MAX(a, b) ((a) > (b) ? (a) : (b))
#define RMX_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))

/* A bug: print where, then abort. Never compiled out. */
__attribute__((noreturn, cold)) static inline void
rmx_assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "ringmx: assertion failed: %s (%s:%d)\n", expr, file, line);
	abort();
}

#define RMX_ASSERT(cond)                                                     \
	do {                                                                 \
		if (RMX_UNLIKELY(!(cond)))                                   \
			rmx_assert_fail(#cond, __FILE__, __LINE__);          \
	} while (0)

/* A read-only view of bytes owned by someone else. Never freed through. */
struct span {
	const uint8_t *ptr;
	size_t len;
};

static inline struct span span_make(const void *p, size_t n)
{
	struct span s = { (const uint8_t *)p, n };
	return s;
}

#endif
