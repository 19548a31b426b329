/*
 * sasl.h - the server side of SMTP AUTH's exchange (RFC 4954) for the PLAIN
 * (RFC 4616) and LOGIN mechanisms, driven line by line. Sans-IO, no
 * allocation, no clock: the session hands it the AUTH command's mechanism and
 * optional initial response, then each response line the client sends after
 * a 334; it answers with the challenge to send, the credentials to check, or
 * the exact error reply. Checking the password is not done here (core/
 * auth_verify does it off the worker); neither is 535 for a wrong one.
 *
 * Decoded bytes live in a buffer the caller owns and sizes (recommended:
 * SASL_DECODED_MAX_BYTES); the credentials are spans into it, valid until the
 * next sasl_start or sasl_wipe. Any thread; one struct sasl per session.
 */
#ifndef RINGMX_SASL_H
#define RINGMX_SASL_H

#include <sys/types.h>

#include "../common/base.h"
#include "../common/bounds.h"

enum sasl_mech {
	SASL_MECH_PLAIN,
	SASL_MECH_LOGIN,
	SASL_MECH_COUNT
};

/* What one step of the exchange produced. */
enum sasl_status {
	SASL_CHALLENGE, /* send reply (a 334 line), then feed the client's next line */
	SASL_DONE,      /* creds hold the credentials; nothing to send yet */
	SASL_FAILED,    /* send reply; the exchange is over (error says why) */
};

/* Why an exchange failed; each has its own reply (RFC 4954 section 6). */
enum sasl_error {
	SASL_ERR_NONE,
	SASL_ERR_UNKNOWN_MECH, /* 504 5.5.4 Unrecognized authentication type */
	SASL_ERR_BAD_BASE64,   /* 501 5.5.2 Cannot decode response (not base64) */
	SASL_ERR_MALFORMED,    /* 501 5.5.2 decodes, but not a PLAIN/LOGIN message */
	SASL_ERR_CANCELLED,    /* 501 5.7.0 Authentication cancelled (the client sent "*") */
	SASL_ERR_TOO_LONG,     /* 500 5.5.6 Authentication exchange line is too long */
	SASL_ERR_AUTHZID,      /* 535 5.7.8 PLAIN asked to act as another identity */
	SASL_ERR_COUNT
};

/* The credentials of a finished exchange: spans into the caller's buffer.
 * authzid is empty unless the client gave one (then it equals authcid);
 * authcid and password are non-empty and hold no NUL. */
struct sasl_creds {
	struct span authzid;
	struct span authcid;
	struct span password;
};

struct sasl_result {
	enum sasl_status status;
	enum sasl_error error;  /* SASL_FAILED only */
	enum sasl_mech mech;    /* SASL_MECH_COUNT after SASL_ERR_UNKNOWN_MECH */
	struct span reply;      /* CHALLENGE or FAILED: one reply line, CRLF included (static) */
	struct sasl_creds creds; /* DONE only */
};

/* One exchange's state. Private: use the functions below. */
struct sasl {
	uint8_t *buf;
	size_t cap_bytes;
	size_t user_len;  /* LOGIN: decoded user name at buf[0..user_len) */
	uint8_t mech;     /* enum sasl_mech */
	uint8_t step;     /* private */
};

/* Binds s to the caller's buffer buf[0..cap_bytes); idle until sasl_start. */
void sasl_init(struct sasl *s, uint8_t *buf, size_t cap_bytes);

/*
 * Starts an exchange for `AUTH mechanism [initial]`. mechanism is matched
 * without regard to case; has_initial says whether an initial response was
 * given ("=" is an empty one, RFC 4954 section 4). Returns a challenge, the
 * credentials (PLAIN with an initial response), or a failure.
 */
struct sasl_result sasl_start(struct sasl *s, struct span mechanism, bool has_initial,
			      struct span initial);

/*
 * Feeds the client's response line (CRLF removed) after a SASL_CHALLENGE.
 * "*" cancels. A line longer than SASL_RESPONSE_LINE_MAX_BYTES fails with
 * 500 5.5.6 (a caller whose line reader stopped at a bound of its own calls
 * sasl_feed_too_long instead). Asserts that a challenge is outstanding.
 */
struct sasl_result sasl_feed(struct sasl *s, struct span line);

/* For a caller whose line reader stopped at its bound: ends the exchange
 * with 500 5.5.6 without the line's bytes. */
struct sasl_result sasl_feed_too_long(struct sasl *s);

/* True while a challenge waits for the client's line. */
bool sasl_waiting(const struct sasl *s);

/* Ends any exchange and wipes the decoded bytes (password included) with
 * explicit_bzero. Call once the credentials have been handed on. */
void sasl_wipe(struct sasl *s);

/* The mechanism's name as the metric label: "plain", "login". */
const char *sasl_mech_label(enum sasl_mech m);

/* The reply of an error (CRLF included), for callers that end an exchange
 * themselves (a line that arrives too long, say). */
struct span sasl_error_reply(enum sasl_error e);

/*
 * Strict base64 (RFC 4648 section 4, the standard alphabet): length a
 * multiple of 4, padding only at the end and at most two '=', pad bits zero,
 * nothing else (no space, no line break). Decodes in[0..len) into
 * out[0..cap); returns the decoded length, -1 when malformed, -2 when it
 * does not fit. out may be NULL when cap is 0 and len is 0.
 */
ssize_t sasl_base64_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

#endif
