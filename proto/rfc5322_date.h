/*
 * rfc5322_date.h - the RFC 5322 date-time we write in headers (Received:,
 * a DSN's Date: and Arrival-Date:), in UTC: "Thu, 01 Jan 1970 00:00:00
 * +0000". One formatter for all of them. Pure, no libc time functions (no
 * locale, no time zone file, no static buffer): any thread.
 */
#ifndef RINGMX_RFC5322_DATE_H
#define RINGMX_RFC5322_DATE_H

#include "../common/base.h"

#define RFC5322_DATE_BYTES 31
/* The latest instant with a four-digit year: 9999-12-31T23:59:59Z. */
#define RFC5322_DATE_UNIX_MAX 253402300799ll

/* Writes t (seconds since 1970-01-01T00:00:00Z, clamped to
 * [0, RFC5322_DATE_UNIX_MAX]) as exactly RFC5322_DATE_BYTES bytes, no NUL. */
void rfc5322_date_format(int64_t t, char out[RFC5322_DATE_BYTES]);

#endif
