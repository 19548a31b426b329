/*
 * smtp_received.h - the Received: trace header (RFC 5321 4.4): writing the
 * one ringmx prepends to each message, and counting the ones a message
 * already carries, for loop detection (RFC 5321 6.3).
 *
 * Used by proto/smtp_session: the counter runs over the body as it is
 * stored, the writer once the message is complete. Pure: no syscalls, no
 * clock (the caller passes the time), no allocation.
 */
#ifndef RINGMX_SMTP_RECEIVED_H
#define RINGMX_SMTP_RECEIVED_H

#include "../common/base.h"
#include "../common/bounds.h"

/* What our Received: header says; every text is validated by the caller
 * (token bytes only: nothing here can fold or break the header). */
struct smtp_received_facts {
	struct span helo;       /* the client's HELO/EHLO name */
	const char *client_ip;  /* textual address, no brackets */
	bool client_ipv6;
	struct span hostname;   /* ours */
	const char *protocol;   /* "SMTP", "ESMTP", "ESMTPSA", "UTF8SMTP"... (RFC 3848, 6531) */
	const char *tls_version; /* NULL in clear text; else with tls_cipher, as a comment */
	const char *tls_cipher;
	struct span queue_id;
	int64_t now_unix;
};

/*
 * Writes the header into buf: folded, CRLF-terminated, the date in RFC
 * 5322 form in UTC. Returns its length, or 0 if cap is too small or now_unix
 * outside what a date can say (cap >= SMTP_RECEIVED_HEADER_MAX_BYTES always
 * suffices for validated facts).
 */
size_t smtp_received_write(const struct smtp_received_facts *f, char *buf, size_t cap);

/* Counts "Received:" header lines (any case) at the start of a message, in
 * pieces of any split, until the header section ends at its first empty
 * line. Embedded in the session; zeroed (by init) for each message. */
struct smtp_received_counter {
	uint16_t count; /* saturates at UINT16_MAX */
	uint8_t state;  /* position in the header section */
};

void smtp_received_counter_init(struct smtp_received_counter *rc);

/* Counts what p[0..n) adds; once the header section has ended, reads
 * nothing more. */
void smtp_received_count(struct smtp_received_counter *rc, const uint8_t *p, size_t n);

/* True while the header section has not ended (more bytes may count). */
bool smtp_received_counting(const struct smtp_received_counter *rc);

#endif
