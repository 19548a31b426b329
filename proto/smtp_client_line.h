/*
 * smtp_client_line.h - writing the ESMTP client's command lines: a bounded
 * line builder over the caller's buffer, whole lines appended to a
 * struct smtp_out, the XFORWARD lines (Postfix XFORWARD_README, values in
 * xtext, RFC 1891 section 5), and whether a stored address may be put on a
 * command line at all.
 *
 * Part of the client (proto/smtp_client.c is its one user). Pure: no
 * system call, no allocation; the caller owns every buffer. Overrunning a
 * line's or out's capacity is a bug of ours and asserts, so callers size
 * lines from SMTP_CLIENT_COMMAND_MAX_BYTES and check out with
 * smtp_client_out_fits first.
 */
#ifndef RINGMX_SMTP_CLIENT_LINE_H
#define RINGMX_SMTP_CLIENT_LINE_H

#include "../common/base.h"
#include "../common/bounds.h"
#include "smtp_client.h"

/* A line being built in p[0..cap); len bytes written so far. */
struct smtp_client_line {
	char *p;
	size_t len;
	size_t cap;
};

/* Append n bytes (an empty span may have no pointer), a C string, or v in
 * decimal; the room must be there. */
void smtp_client_line_put(struct smtp_client_line *lb, const void *p, size_t n);
void smtp_client_line_str(struct smtp_client_line *lb, const char *s);
void smtp_client_line_u64(struct smtp_client_line *lb, uint64_t v);

/* Whether n more bytes fit out; appending them (they must fit). */
bool smtp_client_out_fits(const struct smtp_out *out, size_t n);
void smtp_client_out_put(struct smtp_out *out, const void *p, size_t n);

/* Appends "verb[ arg]\r\n" to out whole (the line is shorter than
 * SMTP_CLIENT_COMMAND_MAX_BYTES); false, and nothing written, when out
 * lacks room for it (unsent commands fill out only when the upstream
 * answers ahead). */
RMX_MUST_CHECK bool smtp_client_out_command(struct smtp_out *out, const char *verb,
					    struct span arg);

/*
 * Packs the attributes of xf that attrs (SMTP_XFORWARD_* bits, in the order
 * of smtp_xforward_attrs) offers greedily into XFORWARD lines, each shorter
 * than SMTP_CLIENT_COMMAND_MAX_BYTES with its CRLF; an empty value, or one
 * too long once encoded, is sent as [UNAVAILABLE]. Returns how many lines
 * there are; when lb is given, writes line number want (CRLF included)
 * into it.
 */
uint32_t smtp_client_xforward_pack(const struct smtp_client_xforward *xf, uint8_t attrs,
				   uint32_t want, struct smtp_client_line *lb);

/* A path we can put between <> on a command line: at most
 * SMTP_PATH_MAX_BYTES, no controls, no angle brackets, no DEL, non-ASCII
 * only when smtputf8. */
bool smtp_client_path_sendable(struct span p, bool smtputf8);

#endif
