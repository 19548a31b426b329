/*
 * smtp_cmd.h - command arguments: paths (RFC 5321 4.1.2), HELO/EHLO domains,
 * MAIL and RCPT parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8,
 * RFC 3030 BODY=BINARYMIME) and BDAT sizes.
 *
 * Every parser takes a span into the caller's buffer and returns spans into
 * it; nothing is copied, nothing allocated. Results are a small enum so the
 * session can map each to its reply. Pure; any thread.
 */
#ifndef RINGMX_SMTP_CMD_H
#define RINGMX_SMTP_CMD_H

#include "../common/base.h"

enum smtp_parse_result {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_SYNTAX,        /* 501 5.5.4 (path: 501 5.1.3 / 5.1.7) */
	SMTP_PARSE_TOO_LONG,      /* local part > 64, domain > 255, path > 256: 501 5.1.3 */
	SMTP_PARSE_NEEDS_UTF8,    /* non-ASCII without SMTPUTF8: 553 5.6.7 */
	SMTP_PARSE_UNKNOWN_PARAM, /* 555 5.5.4 */
	SMTP_PARSE_BAD_VALUE,     /* 501 5.5.4: a known parameter with a bad value */
	SMTP_PARSE_SIZE_OVERFLOW, /* SIZE value does not fit 64 bits: treat as over limit */
};

enum smtp_body_type { SMTP_BODY_7BIT = 0, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };

struct smtp_path {
	struct span address;   /* local@domain as given (no <>, no source route); empty for <> */
	struct span local;     /* local part as given, quotes included */
	struct span domain;    /* domain or address literal as given, trailing dot kept */
	bool null_path;        /* <> */
	bool quoted_local;     /* local part is a quoted string */
	bool route_chars;      /* '%' or '!' anywhere in the local part, or '@' inside quotes */
	bool source_route;     /* an "@a,@b:" prefix was present (ignored) */
	bool address_literal;  /* domain is [...] */
	bool non_ascii;        /* any byte >= 0x80 (only legal with SMTPUTF8) */
};

/*
 * Parses "<path>" at the start of arg (after "FROM:" / "TO:", leading spaces
 * allowed as Postfix does). On OK, *rest is the text after '>' (parameters,
 * leading SP included). allow_null: "<>" is acceptable (MAIL). utf8_allowed:
 * the caller saw SMTPUTF8 on this MAIL, or will check params first; when
 * false, non-ASCII yields SMTP_PARSE_NEEDS_UTF8. The bare "<postmaster>" of
 * RFC 5321 4.5.1 is accepted only for a forward path (allow_null false):
 * address and local are "postmaster" as given, domain is empty.
 */
enum smtp_parse_result smtp_parse_path(struct span arg, bool allow_null, bool utf8_allowed,
				       struct smtp_path *out, struct span *rest);

/* Splits "FROM:" / "TO:" (case-insensitive) off the MAIL / RCPT argument. */
bool smtp_strip_keyword(struct span arg, const char *keyword, struct span *rest);

struct smtp_mail_params {
	uint64_t size_bytes;       /* SIZE=, 0 when absent */
	bool size_given;
	enum smtp_body_type body;
	bool smtputf8;
};

/* Parses MAIL's ESMTP parameters (SP-separated keyword[=value]). Knows SIZE,
 * BODY (7BIT, 8BITMIME, BINARYMIME), SMTPUTF8; anything else is
 * SMTP_PARSE_UNKNOWN_PARAM. Duplicates are SMTP_PARSE_BAD_VALUE. */
enum smtp_parse_result smtp_parse_mail_params(struct span params, struct smtp_mail_params *out);

/* RCPT parameters: none are supported yet (no DSN), so any is UNKNOWN_PARAM. */
enum smtp_parse_result smtp_parse_rcpt_params(struct span params);

/* Validates a HELO/EHLO argument: a domain (letters, digits, '-', '.') or an
 * address literal; trailing text after the first word is ignored, as RFC 5321
 * 4.1.1.1 allows. *name is the validated token (safe for Received:), ASCII,
 * at most SMTP_DOMAIN_MAX_BYTES long (longer: SMTP_PARSE_TOO_LONG). */
enum smtp_parse_result smtp_parse_helo(struct span arg, struct span *name);

/* Parses "BDAT size [LAST]": no leading zeros trouble, no wrap (> 2^63 is
 * SMTP_PARSE_SIZE_OVERFLOW). */
enum smtp_parse_result smtp_parse_bdat(struct span arg, uint64_t *size_bytes, bool *last);

/* ASCII case-insensitive equality of a span and a C string. */
bool span_eq_nocase(struct span a, const char *b);

#endif
