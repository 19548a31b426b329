/*
 * smtp_reply.h - the catalogue of every reply the server sends: one row per
 * reply {code, enhanced status code (RFC 2034/3463), text}, and a bounded
 * writer that appends a row, with an optional detail (our hostname, a queue
 * id, a number), to a struct smtp_out. The session never writes reply text
 * ad hoc. Pure; any thread.
 */
#ifndef RINGMX_SMTP_REPLY_H
#define RINGMX_SMTP_REPLY_H

#include "../common/base.h"
#include "smtp_session.h"

enum smtp_reply_id {
	/* Greetings: no enhanced status code. */
	SMTP_R_BANNER,            /* 220 <host> ESMTP ringmx */
	SMTP_R_HELO,              /* 250 <host> (also the first EHLO line) */
	SMTP_R_EHLO_PIPELINING,
	SMTP_R_EHLO_SIZE,         /* SIZE <detail> */
	SMTP_R_EHLO_8BITMIME,
	SMTP_R_EHLO_ENHANCEDSTATUSCODES,
	SMTP_R_EHLO_SMTPUTF8,
	SMTP_R_EHLO_CHUNKING,
	SMTP_R_EHLO_BINARYMIME,
	SMTP_R_EHLO_STARTTLS,
	SMTP_R_EHLO_AUTH,         /* AUTH PLAIN LOGIN */
	/* Success. */
	SMTP_R_OK,                /* 250 2.0.0 */
	SMTP_R_MAIL_OK,           /* 250 2.1.0 */
	SMTP_R_RCPT_OK,           /* 250 2.1.5 */
	SMTP_R_BDAT_OK,           /* 250 2.0.0 <n> octets received */
	SMTP_R_QUEUED,            /* 250 2.0.0 Ok: queued as <id> */
	SMTP_R_DATA_GO,           /* 354 */
	SMTP_R_QUIT,              /* 221 2.0.0 */
	SMTP_R_VRFY,              /* 252 2.5.2 */
	SMTP_R_HELP,              /* 214 2.0.0 */
	SMTP_R_STARTTLS_GO,       /* 220 2.0.0 */
	SMTP_R_AUTH_OK,           /* 235 2.7.0 */
	SMTP_R_AUTH_CHALLENGE,    /* 334 <base64 detail> */
	/* Closing. */
	SMTP_R_TIMEOUT,           /* 421 4.4.2 <host> ... */
	SMTP_R_SHUTDOWN,          /* 421 4.3.2 <host> ... */
	SMTP_R_TOO_MANY_CONNECTIONS, /* 421 4.3.2 <host> ... */
	SMTP_R_TOO_MANY_ERRORS,   /* 421 4.7.0 <host> ... */
	SMTP_R_OVERLOADED,        /* 421 4.3.2 <host> ... */
	SMTP_R_CLIENT_CONNECTIONS, /* 421 4.7.0 <host> ... */
	SMTP_R_CLIENT_RATE,       /* 421 4.7.0 <host> ... */
	SMTP_R_SYNC,              /* 554 5.5.0 */
	SMTP_R_PROTOCOL_ERROR,    /* 521 5.5.1 (screening: pre-greeting, HTTP) */
	SMTP_R_AUTH_TOO_MANY_FAILURES, /* 421 4.7.0 <host> ... */
	/* Command errors. */
	SMTP_R_UNKNOWN_COMMAND,   /* 500 5.5.2 */
	SMTP_R_BAD_CHARACTERS,    /* 500 5.5.2 */
	SMTP_R_LINE_TOO_LONG,     /* 500 5.5.2 */
	SMTP_R_NOT_IMPLEMENTED,   /* 502 5.5.1 */
	SMTP_R_NEED_HELO,         /* 503 5.5.1 */
	SMTP_R_NESTED_MAIL,       /* 503 5.5.1 */
	SMTP_R_NEED_MAIL,         /* 503 5.5.1 */
	SMTP_R_NEED_RCPT,         /* 503 5.5.1 */
	SMTP_R_RCPT_AFTER_BDAT,   /* 503 5.5.1 */
	SMTP_R_DATA_AFTER_BDAT,   /* 503 5.5.1 */
	SMTP_R_BINARYMIME_NEEDS_BDAT, /* 503 5.5.1 */
	SMTP_R_TXN_IN_PROGRESS,   /* 503 5.5.1 */
	SMTP_R_TLS_ACTIVE,        /* 554 5.5.1 */
	SMTP_R_AUTH_ALREADY,      /* 503 5.5.1 */
	SMTP_R_SYNTAX_STARTTLS,   /* 501 5.5.4 */
	SMTP_R_SYNTAX_AUTH,       /* 501 5.5.4 */
	SMTP_R_SYNTAX_HELO,       /* 501 5.5.4 */
	SMTP_R_SYNTAX_EHLO,       /* 501 5.5.4 */
	SMTP_R_SYNTAX_MAIL,       /* 501 5.5.4 */
	SMTP_R_SYNTAX_RCPT,       /* 501 5.5.4 */
	SMTP_R_SYNTAX_DATA,       /* 501 5.5.4 */
	SMTP_R_SYNTAX_BDAT,       /* 501 5.5.4 */
	SMTP_R_SYNTAX_VRFY,       /* 501 5.5.4 */
	SMTP_R_BAD_PARAMETER,     /* 501 5.5.4 */
	SMTP_R_BAD_SENDER,        /* 501 5.1.7 */
	SMTP_R_BAD_RECIPIENT,     /* 501 5.1.3 */
	SMTP_R_UNKNOWN_PARAMETER, /* 555 5.5.4 */
	SMTP_R_NEEDS_SMTPUTF8,    /* 553 5.6.7 */
	/* Authentication (RFC 4954). */
	SMTP_R_AUTH_REQUIRED,     /* 530 5.7.0 */
	SMTP_R_AUTH_FAILED,       /* 535 5.7.8 */
	SMTP_R_AUTH_NEEDS_TLS,    /* 538 5.7.11 */
	SMTP_R_AUTH_TEMPFAIL,     /* 454 4.7.0 */
	/* Policy and limits. */
	SMTP_R_RELAY_DENIED,      /* 554 5.7.1 */
	SMTP_R_PREGREET_REJECT,   /* 550 5.5.1 (greet_action = enforce) */
	SMTP_R_UNKNOWN_USER,      /* 550 5.1.1 */
	SMTP_R_TOO_MANY_RECIPIENTS, /* 452 4.5.3 */
	SMTP_R_SIZE_EXCEEDED,     /* 552 5.3.4 */
	SMTP_R_MAIL_LOOP,         /* 554 5.4.6 */
	SMTP_R_BARE_LF,           /* 550 5.5.2 */
	SMTP_R_BARE_CR,           /* 550 5.5.2 */
	/* Local resources. */
	SMTP_R_STORAGE_FULL,      /* 452 4.3.1 */
	SMTP_R_MESSAGE_RATE,      /* 451 4.7.1 */
	SMTP_R_RESOURCES,         /* 451 4.3.1 */
	SMTP_R_QUEUE_WRITE_ERROR, /* 451 4.3.0 */
	SMTP_REPLY_COUNT
};

/*
 * Appends one reply line "CODE[-| ]ENH TEXT\r\n" for id. Rows that take a
 * detail put it inside their text ("221 <host> ..."); the detail must be
 * printable ASCII without spaces (asserted: only validated tokens go here),
 * and rows without one take an empty detail. more: a continuation line
 * ("250-"). Returns bytes written, or 0 when out has no room for the whole
 * line (nothing is written then).
 */
RMX_MUST_CHECK size_t smtp_reply_put(struct smtp_out *out, enum smtp_reply_id id,
				     struct span detail, bool more);

/* The row's basic code (220, 250, 554 ...). */
unsigned smtp_reply_code(enum smtp_reply_id id);

/* True for replies that count against the error budget: syntax,
 * sequence, unknown command and policy rejections of what the client sent
 * (not local resource trouble, not limits the client cannot know). */
bool smtp_reply_counts_as_error(enum smtp_reply_id id);

#endif
