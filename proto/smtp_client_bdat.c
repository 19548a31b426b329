/*
 * smtp_client_bdat.c - runs of a stored, dot-stuffed body that make up its
 * unstuffed form, for BDAT (RFC 3030 section 2: a chunk is sent as it is,
 * with no dot-stuffing).
 *
 * A stuffed dot is a '.' at offset 0 or right after the two bytes CR LF.
 * Storing only ever adds a dot there (proto/smtp_data.c: DATA input arrives
 * stuffed, BDAT text and binary input is stuffed on the way in), so removing
 * the first '.' at each such place gives back the bytes the client meant:
 * what a DATA receiver's unstuffing (RFC 5321 4.5.2) would give. The search
 * is memmem for "\r\n.", so a body without such lines is one scan.
 */
#include "smtp_client_bdat.h"

#include <string.h>

static bool stuffed_dot_at(struct span stored, size_t at)
{
	if (at >= stored.len || stored.ptr[at] != '.')
		return false;
	return at == 0 || (at >= 2 && stored.ptr[at - 2] == '\r' && stored.ptr[at - 1] == '\n');
}

/* Offset of the first stuffed dot after from, or len. */
static size_t next_stuffed_dot(struct span stored, size_t from)
{
	/* Its CRLF may begin at from - 1 (the dot at from + 1); a hit there or
	 * later puts the dot past from. */
	size_t search = from > 0 ? from - 1 : 0;
	if (search >= stored.len)
		return stored.len;
	const uint8_t *hit = memmem(stored.ptr + search, stored.len - search, "\r\n.", 3);
	return hit == NULL ? stored.len : (size_t)(hit - stored.ptr) + 2;
}

size_t smtp_bdat_run(struct span stored, size_t at, size_t *start)
{
	RMX_ASSERT(at <= stored.len);
	if (stuffed_dot_at(stored, at))
		at++;
	*start = at;
	if (at == stored.len)
		return at;
	return next_stuffed_dot(stored, at);
}

struct smtp_bdat_size smtp_bdat_measure(struct span stored)
{
	struct smtp_bdat_size z = { 0, 0 };
	size_t at = 0;
	for (;;) {
		size_t start;
		size_t end = smtp_bdat_run(stored, at, &start);
		if (start == end && end == stored.len)
			return z;
		z.bytes += end - start;
		z.runs++;
		at = end;
	}
}

size_t smtp_bdat_copy(struct span stored, uint8_t *dst, size_t cap)
{
	size_t n = 0;
	size_t at = 0;
	for (;;) {
		size_t start;
		size_t end = smtp_bdat_run(stored, at, &start);
		if (start == end && end == stored.len)
			return n;
		RMX_ASSERT(end - start <= cap - n);
		memcpy(dst + n, stored.ptr + start, end - start);
		n += end - start;
		at = end;
	}
}
