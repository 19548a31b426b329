/*
 * smtp_reply.c - the reply catalogue and its bounded writer.
 *
 * Every byte the server says to a client comes from reply_table: the session
 * picks a row, this file formats it into the caller's struct smtp_out. Texts
 * follow Postfix's where Postfix has one, so operators and client logs see
 * familiar wording; enhanced codes follow RFC 3463 (354 and the greeting
 * lines carry none, RFC 2034 section 3).
 *
 * Invariants: a line is written whole or not at all; no line exceeds
 * SMTP_REPLY_LINE_MAX_BYTES (asserted); detail text is a validated token.
 */
#include "smtp_reply.h"

#include <string.h>

enum {
	ROW_COUNTS = 1u << 0, /* counts against the error budget */
};

/* A reply is CODE SP [ENHANCED SP] BEFORE [DETAIL] AFTER; lengths are taken
 * from the literals at compile time. */
struct reply_row {
	uint16_t code;
	uint8_t flags;
	bool has_detail;
	uint8_t enhanced_len;
	uint8_t before_len;
	uint8_t after_len;
	const char *enhanced; /* "" for none */
	const char *before;
	const char *after;
};

#define LIT_LEN(lit) ((uint8_t)(sizeof(lit) - 1))
#define ROW(id, code, flags, enh, text)                                              \
	[id] = { code, flags, false, LIT_LEN(enh), LIT_LEN(text), 0, enh, text, "" }
/* A row with a detail (hostname, queue id, number) between two texts. */
#define ROWD(id, code, flags, enh, before, after)                                    \
	[id] = { code, flags, true, LIT_LEN(enh), LIT_LEN(before), LIT_LEN(after), enh, before, after }

static const struct reply_row reply_table[SMTP_REPLY_COUNT] = {
	ROWD(SMTP_R_BANNER, 220, 0, "", "", " ESMTP ringmx"),
	ROWD(SMTP_R_HELO, 250, 0, "", "", ""),
	ROW(SMTP_R_EHLO_PIPELINING, 250, 0, "", "PIPELINING"),
	ROWD(SMTP_R_EHLO_SIZE, 250, 0, "", "SIZE ", ""),
	ROW(SMTP_R_EHLO_8BITMIME, 250, 0, "", "8BITMIME"),
	ROW(SMTP_R_EHLO_ENHANCEDSTATUSCODES, 250, 0, "", "ENHANCEDSTATUSCODES"),
	ROW(SMTP_R_EHLO_SMTPUTF8, 250, 0, "", "SMTPUTF8"),
	ROW(SMTP_R_EHLO_CHUNKING, 250, 0, "", "CHUNKING"),
	ROW(SMTP_R_EHLO_BINARYMIME, 250, 0, "", "BINARYMIME"),
	ROW(SMTP_R_EHLO_STARTTLS, 250, 0, "", "STARTTLS"),
	ROW(SMTP_R_EHLO_AUTH, 250, 0, "", "AUTH PLAIN LOGIN"),

	ROW(SMTP_R_OK, 250, 0, "2.0.0", "Ok"),
	ROW(SMTP_R_MAIL_OK, 250, 0, "2.1.0", "Ok"),
	ROW(SMTP_R_RCPT_OK, 250, 0, "2.1.5", "Ok"),
	ROWD(SMTP_R_BDAT_OK, 250, 0, "2.0.0", "", " octets received"),
	ROWD(SMTP_R_QUEUED, 250, 0, "2.0.0", "Ok: queued as ", ""),
	ROW(SMTP_R_DATA_GO, 354, 0, "", "End data with <CR><LF>.<CR><LF>"),
	ROW(SMTP_R_QUIT, 221, 0, "2.0.0", "Bye"),
	ROW(SMTP_R_VRFY, 252, 0, "2.5.2", "Cannot VRFY user; try RCPT to attempt delivery"),
	ROW(SMTP_R_HELP, 214, 0, "2.0.0",
	    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP"),

	ROW(SMTP_R_STARTTLS_GO, 220, 0, "2.0.0", "Ready to start TLS"),
	ROW(SMTP_R_AUTH_OK, 235, 0, "2.7.0", "Authentication successful"),
	ROWD(SMTP_R_AUTH_CHALLENGE, 334, 0, "", "", ""),

	ROWD(SMTP_R_TIMEOUT, 421, 0, "4.4.2", "", " Error: timeout exceeded"),
	ROWD(SMTP_R_SHUTDOWN, 421, 0, "4.3.2", "", " Service shutting down"),
	ROWD(SMTP_R_TOO_MANY_CONNECTIONS, 421, 0, "4.3.2", "", " Error: too many connections"),
	ROWD(SMTP_R_TOO_MANY_ERRORS, 421, 0, "4.7.0", "", " Error: too many errors"),
	ROWD(SMTP_R_OVERLOADED, 421, 0, "4.3.2", "", " Service temporarily overloaded, try again later"),
	ROWD(SMTP_R_CLIENT_CONNECTIONS, 421, 0, "4.7.0", "",
	     " Error: too many connections from your address"),
	ROWD(SMTP_R_CLIENT_RATE, 421, 0, "4.7.0", "",
	     " Error: too many connections from your address, try again later"),
	ROW(SMTP_R_SYNC, 554, 0, "5.5.0", "Protocol synchronization error"),
	ROW(SMTP_R_PROTOCOL_ERROR, 521, 0, "5.5.1", "Protocol error"),
	ROWD(SMTP_R_AUTH_TOO_MANY_FAILURES, 421, 0, "4.7.0", "",
	     " Error: too many failed authentication attempts"),

	ROW(SMTP_R_UNKNOWN_COMMAND, 500, ROW_COUNTS, "5.5.2", "Error: command not recognized"),
	ROW(SMTP_R_BAD_CHARACTERS, 500, ROW_COUNTS, "5.5.2", "Error: bad characters in command"),
	ROW(SMTP_R_LINE_TOO_LONG, 500, ROW_COUNTS, "5.5.2", "Line too long"),
	ROW(SMTP_R_NOT_IMPLEMENTED, 502, ROW_COUNTS, "5.5.1", "Error: command not implemented"),
	ROW(SMTP_R_NEED_HELO, 503, ROW_COUNTS, "5.5.1", "Error: send HELO/EHLO first"),
	ROW(SMTP_R_NESTED_MAIL, 503, ROW_COUNTS, "5.5.1", "Error: nested MAIL command"),
	ROW(SMTP_R_NEED_MAIL, 503, ROW_COUNTS, "5.5.1", "Error: need MAIL command"),
	ROW(SMTP_R_NEED_RCPT, 503, ROW_COUNTS, "5.5.1", "Error: need RCPT command"),
	ROW(SMTP_R_RCPT_AFTER_BDAT, 503, ROW_COUNTS, "5.5.1", "Error: RCPT after BDAT"),
	ROW(SMTP_R_DATA_AFTER_BDAT, 503, ROW_COUNTS, "5.5.1", "Error: DATA in a BDAT transaction"),
	ROW(SMTP_R_BINARYMIME_NEEDS_BDAT, 503, ROW_COUNTS, "5.5.1",
	    "Error: BODY=BINARYMIME requires BDAT"),
	ROW(SMTP_R_TXN_IN_PROGRESS, 503, ROW_COUNTS, "5.5.1", "Error: MAIL transaction in progress"),
	ROW(SMTP_R_TLS_ACTIVE, 554, ROW_COUNTS, "5.5.1", "Error: TLS already active"),
	ROW(SMTP_R_AUTH_ALREADY, 503, ROW_COUNTS, "5.5.1", "Error: already authenticated"),
	ROW(SMTP_R_SYNTAX_STARTTLS, 501, ROW_COUNTS, "5.5.4", "Syntax: STARTTLS"),
	ROW(SMTP_R_SYNTAX_AUTH, 501, ROW_COUNTS, "5.5.4", "Syntax: AUTH mechanism [initial-response]"),
	ROW(SMTP_R_SYNTAX_HELO, 501, ROW_COUNTS, "5.5.4", "Syntax: HELO hostname"),
	ROW(SMTP_R_SYNTAX_EHLO, 501, ROW_COUNTS, "5.5.4", "Syntax: EHLO hostname"),
	ROW(SMTP_R_SYNTAX_MAIL, 501, ROW_COUNTS, "5.5.4", "Syntax: MAIL FROM:<address>"),
	ROW(SMTP_R_SYNTAX_RCPT, 501, ROW_COUNTS, "5.5.4", "Syntax: RCPT TO:<address>"),
	ROW(SMTP_R_SYNTAX_DATA, 501, ROW_COUNTS, "5.5.4", "Syntax: DATA"),
	ROW(SMTP_R_SYNTAX_BDAT, 501, ROW_COUNTS, "5.5.4", "Syntax: BDAT count [LAST]"),
	ROW(SMTP_R_SYNTAX_VRFY, 501, ROW_COUNTS, "5.5.4", "Syntax: VRFY address"),
	ROW(SMTP_R_BAD_PARAMETER, 501, ROW_COUNTS, "5.5.4", "Bad parameter syntax"),
	ROW(SMTP_R_BAD_SENDER, 501, ROW_COUNTS, "5.1.7", "Bad sender address syntax"),
	ROW(SMTP_R_BAD_RECIPIENT, 501, ROW_COUNTS, "5.1.3", "Bad recipient address syntax"),
	ROW(SMTP_R_UNKNOWN_PARAMETER, 555, ROW_COUNTS, "5.5.4", "Unsupported option"),
	ROW(SMTP_R_NEEDS_SMTPUTF8, 553, ROW_COUNTS, "5.6.7",
	    "Must declare SMTPUTF8 to send unicode address"),

	ROW(SMTP_R_AUTH_REQUIRED, 530, ROW_COUNTS, "5.7.0", "Authentication required"),
	ROW(SMTP_R_AUTH_FAILED, 535, ROW_COUNTS, "5.7.8", "Error: authentication failed"),
	ROW(SMTP_R_AUTH_NEEDS_TLS, 538, ROW_COUNTS, "5.7.11",
	    "Encryption required for requested authentication mechanism"),
	ROW(SMTP_R_AUTH_TEMPFAIL, 454, 0, "4.7.0", "Temporary authentication failure"),

	ROW(SMTP_R_PREGREET_REJECT, 550, ROW_COUNTS, "5.5.1",
	    "Protocol error: talked before the greeting"),
	ROW(SMTP_R_RELAY_DENIED, 554, ROW_COUNTS, "5.7.1", "Relay access denied"),
	ROW(SMTP_R_UNKNOWN_USER, 550, ROW_COUNTS, "5.1.1", "Recipient address rejected: User unknown"),
	ROW(SMTP_R_TOO_MANY_RECIPIENTS, 452, 0, "4.5.3", "Too many recipients"),
	ROW(SMTP_R_SIZE_EXCEEDED, 552, 0, "5.3.4", "Message size exceeds fixed limit"),
	ROW(SMTP_R_MAIL_LOOP, 554, 0, "5.4.6", "Too many Received headers (mail loop)"),
	ROW(SMTP_R_BARE_LF, 550, 0, "5.5.2", "Bare <LF> received"),
	ROW(SMTP_R_BARE_CR, 550, 0, "5.5.2", "Bare <CR> received"),

	ROW(SMTP_R_STORAGE_FULL, 452, 0, "4.3.1", "Insufficient system storage"),
	ROW(SMTP_R_MESSAGE_RATE, 451, 0, "4.7.1", "Error: too many messages from your address, try again later"),
	ROW(SMTP_R_RESOURCES, 451, 0, "4.3.1", "Insufficient system resources"),
	ROW(SMTP_R_QUEUE_WRITE_ERROR, 451, 0, "4.3.0", "Error: queue file write error"),
};

#undef ROW
#undef ROWD
#undef LIT_LEN

static const struct reply_row *row_of(enum smtp_reply_id id)
{
	RMX_ASSERT((unsigned)id < SMTP_REPLY_COUNT);
	const struct reply_row *r = &reply_table[id];
	RMX_ASSERT(r->code >= 200 && r->code <= 599 && r->before != NULL && r->after != NULL);
	return r;
}

static bool detail_is_token(struct span d)
{
	for (size_t i = 0; i < d.len; i++) {
		if (d.ptr[i] <= 0x20 || d.ptr[i] >= 0x7f)
			return false;
	}
	return true;
}

static void put_bytes(uint8_t *dst, size_t *at, const void *src, size_t n)
{
	memcpy(dst + *at, src, n);
	*at += n;
}

size_t smtp_reply_put(struct smtp_out *out, enum smtp_reply_id id, struct span detail, bool more)
{
	const struct reply_row *r = row_of(id);
	RMX_ASSERT(out != NULL && out->buf != NULL && out->len <= out->cap);
	RMX_ASSERT(detail.len <= SMTP_DOMAIN_MAX_BYTES && detail_is_token(detail));

	RMX_ASSERT(r->has_detail || detail.len == 0);
	const size_t enh_len = r->enhanced_len;
	const size_t need = 4 + (enh_len ? enh_len + 1 : 0) + r->before_len + detail.len +
			    r->after_len + 2;
	RMX_ASSERT(need <= SMTP_REPLY_LINE_MAX_BYTES);
	if (out->cap - out->len < need)
		return 0;

	uint8_t *dst = out->buf + out->len;
	size_t at = 0;
	char code[4] = { (char)('0' + r->code / 100), (char)('0' + r->code / 10 % 10),
			 (char)('0' + r->code % 10), more ? '-' : ' ' };
	put_bytes(dst, &at, code, sizeof(code));
	if (enh_len) {
		put_bytes(dst, &at, r->enhanced, enh_len);
		put_bytes(dst, &at, " ", 1);
	}
	put_bytes(dst, &at, r->before, r->before_len);
	if (detail.len)
		put_bytes(dst, &at, detail.ptr, detail.len);
	put_bytes(dst, &at, r->after, r->after_len);
	put_bytes(dst, &at, "\r\n", 2);
	RMX_ASSERT(at == need);
	out->len += at;
	return at;
}

unsigned smtp_reply_code(enum smtp_reply_id id)
{
	return row_of(id)->code;
}

bool smtp_reply_counts_as_error(enum smtp_reply_id id)
{
	return (row_of(id)->flags & ROW_COUNTS) != 0;
}

size_t smtp_reply_too_many_connections(struct span hostname, struct smtp_out *out)
{
	return smtp_reply_refuse_connection(hostname, SMTP_REFUSE_SERVER_FULL, out);
}

size_t smtp_reply_refuse_connection(struct span hostname, enum smtp_refusal why,
				    struct smtp_out *out)
{
	static const enum smtp_reply_id ids[SMTP_REFUSE_COUNT] = {
		[SMTP_REFUSE_SERVER_FULL] = SMTP_R_TOO_MANY_CONNECTIONS,
		[SMTP_REFUSE_OVERLOAD] = SMTP_R_OVERLOADED,
		[SMTP_REFUSE_CLIENT_CONNECTIONS] = SMTP_R_CLIENT_CONNECTIONS,
		[SMTP_REFUSE_CLIENT_RATE] = SMTP_R_CLIENT_RATE,
	};
	RMX_ASSERT((unsigned)why < SMTP_REFUSE_COUNT);
	return smtp_reply_put(out, ids[why], hostname, false);
}
