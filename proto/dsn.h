/*
 * dsn.h - the builder of delivery status notifications (RFC 3464 inside an
 * RFC 6522 multipart/report; RFC 6533 for internationalised mail).
 *
 * When a recipient is refused for good (5xx) or its retries run out, the
 * forwarder builds a bounce from <> to the original reverse path with
 * dsn_build() and stores it as a new message. The builder is pure: no
 * syscalls, no clock (the caller passes now_unix), no allocation; it writes
 * into the caller's buffer and reads only the caller's spans.
 *
 * The message has three parts: a human explanation (text/plain, US-ASCII),
 * the machine-readable report (message/delivery-status, or
 * message/global-delivery-status when an address is not ASCII or the
 * original used SMTPUTF8), and the original's header section
 * (text/rfc822-headers, or message/global-headers in the global case),
 * bounded to DSN_HEADERS_MAX_BYTES, with its control bytes but HT replaced
 * (and, in the global case, bytes that are not UTF-8). Text that came from
 * a client or an upstream is made safe before it is written: printable,
 * bounded, one line.
 */
#ifndef RINGMX_DSN_H
#define RINGMX_DSN_H

#include "../common/base.h"
#include "../common/bounds.h"

/* RFC 5322 2.1.1: at most 998 octets per line, CRLF excluded (this bound
 * holds for the wire form, a stuffing dot included). */
#define DSN_LINE_MAX_BYTES 998
/* Where generated text and folded fields wrap when they can. */
#define DSN_FOLD_WIDTH_BYTES 78
/* The original's header section returned in part 3, CRLFs included. */
#define DSN_HEADERS_MAX_BYTES 65536
/* An upstream diagnostic once made safe (longer ones end in "..."). */
#define DSN_DIAGNOSTIC_MAX_BYTES 1024
/* An address once made safe (escapes may lengthen it). */
#define DSN_ADDRESS_MAX_BYTES 512
/* Host names (ours, the upstream's). */
#define DSN_HOST_MAX_BYTES SMTP_DOMAIN_MAX_BYTES
/* Queue ids and Message-ID tokens. */
#define DSN_TOKEN_MAX_BYTES 64
/* RFC 2046 5.1.1: a boundary is 1 to 70 characters. */
#define DSN_BOUNDARY_MAX_BYTES 70

_Static_assert(DSN_ADDRESS_MAX_BYTES + 32 < DSN_LINE_MAX_BYTES,
	       "a Final-Recipient line with the longest address fits one line");
_Static_assert(DSN_HOST_MAX_BYTES + 32 < DSN_LINE_MAX_BYTES,
	       "a Reporting-MTA or Remote-MTA line fits one line");
_Static_assert(DSN_ADDRESS_MAX_BYTES >= SMTP_PATH_MAX_BYTES, "a legal path is never cut");
_Static_assert(DSN_HEADERS_MAX_BYTES >= 2 * (DSN_LINE_MAX_BYTES + 2),
	       "the returned headers hold at least a few lines");

enum dsn_action { DSN_ACTION_FAILED, DSN_ACTION_DELAYED };

struct dsn_recipient {
	struct span address;    /* the forward path as received, e.g. "User@example.org" */
	enum dsn_action action;
	struct span status;     /* "5.1.1"; empty or malformed: 5.0.0 (failed), 4.0.0 (delayed) */
	struct span remote_mta; /* "relay.example.net", or empty */
	struct span diagnostic; /* the upstream's reply, e.g. "550 5.1.1 No such user"; or empty */
	int64_t last_attempt_unix; /* <= 0: never attempted (no Last-Attempt-Date) */
};

struct dsn_input {
	struct span reporting_mta; /* our hostname (never empty) */
	struct span queue_id;      /* the original message's id */
	int64_t arrival_unix;      /* when we accepted the original */
	int64_t now_unix;
	struct span to;            /* the original reverse path (never empty: no bounce to <>) */
	const struct dsn_recipient *recipients;
	uint32_t recipient_count;  /* at least one */
	struct span original;      /* the original in DATA wire form (CRLF, dot-stuffed),
				      starting with our Received: header */
	bool smtputf8;             /* the original used SMTPUTF8 (RFC 6531) */
	struct span message_id_token; /* unique token: the DSN's Message-ID local part
					 (never empty; letters, digits, '-', '_') */
};

/*
 * Writes the DSN in DATA wire form (CRLF lines of at most DSN_LINE_MAX_BYTES,
 * dot-stuffed, ending with CRLF, without the final ".CRLF") to buf[0..cap).
 * Returns its length. When that is more than cap, nothing usable was written
 * (and nothing at or past buf + cap): size the buffer with a dry call
 * (buf NULL, cap 0) and call again. The same input always gives the same
 * bytes. Reads only the caller's spans; any thread.
 */
size_t dsn_build(const struct dsn_input *in, uint8_t *buf, size_t cap);

/* What the forwarder must ask of the upstream to send a built DSN. */
enum {
	DSN_NEEDS_8BITMIME = 1u << 0, /* MAIL FROM:<> BODY=8BITMIME */
	DSN_NEEDS_SMTPUTF8 = 1u << 1, /* MAIL FROM:<> SMTPUTF8 */
};

/*
 * The DSN_NEEDS_* bits for message[0..len), a DSN that dsn_build() made
 * from in: SMTPUTF8 when the reverse path (the DSN's RCPT TO and To:) is not
 * ASCII; 8BITMIME when the message holds any byte above 0x7f.
 */
unsigned dsn_transport_needs(const struct dsn_input *in, const uint8_t *message, size_t len);

#endif
