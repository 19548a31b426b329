/*
 * smtp_client_bdat.h - the stored body as a BDAT chunk carries it (RFC
 * 3030): DATA wire form without its dot-stuffing.
 *
 * A body is stored dot-stuffed (DESIGN.md rule 5): a '.' that opens a line
 * (at the start of the body or right after CRLF) was doubled on the way in,
 * also in BINARYMIME bodies received by BDAT (proto/smtp_data.h), where the
 * only line end that counts is CRLF. BDAT carries the bytes as they are, so
 * the forwarder drops exactly one '.' at each such place. Rather than
 * copying the body, it is handed out as runs: stretches of the stored bytes
 * between two stuffed dots, sent verbatim from the record buffer (a body
 * without a line that starts with '.' is one run). Pure: no allocation, no
 * system call; the stored bytes are never written.
 */
#ifndef RINGMX_SMTP_CLIENT_BDAT_H
#define RINGMX_SMTP_CLIENT_BDAT_H

#include "../common/base.h"

/* What the unstuffed body comes to: its size in bytes, and how many runs of
 * stored bytes it is sent as (1 + the stuffed dots; 0 for an empty body). */
struct smtp_bdat_size {
	uint64_t bytes;
	uint64_t runs;
};

struct smtp_bdat_size smtp_bdat_measure(struct span stored);

/* The next run of stored bytes to send from stored offset at (at <= len):
 * [*start, return value), where *start is at, or at + 1 when at is a stuffed
 * dot, and the run ends before the next stuffed dot or at the end. An
 * empty run (*start == return value == len) means the body is all sent. */
size_t smtp_bdat_run(struct span stored, size_t at, size_t *start);

/* Writes the unstuffed body into dst (cap at least smtp_bdat_measure's
 * bytes, asserted); returns the bytes written. */
size_t smtp_bdat_copy(struct span stored, uint8_t *dst, size_t cap);

#endif
