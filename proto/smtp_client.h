/*
 * smtp_client.h - the pure ESMTP client state machine that forwards stored
 * messages to an upstream relay (DESIGN.md "Forwarding").
 *
 * Inputs: bytes the upstream sent (any split), and requests from core/forward
 * (start a message, the body has been sent, quit). Outputs: command bytes
 * appended to a caller-owned struct smtp_out, a status telling the caller
 * what to do next, and per-recipient results. No syscalls, no clock, no
 * allocation. The body itself never passes through the client: when the
 * upstream is ready for it, the client says SMTP_CLIENT_SEND_BODY and the
 * caller sends the stored body verbatim (it is in DATA wire form already),
 * then calls smtp_client_body_sent(), which appends the final ".\r\n".
 *
 * CHUNKING (RFC 3030), when smtp_client_set_chunking() allows it and the
 * upstream offers it: the message goes as one "BDAT <n> LAST" chunk instead
 * of DATA, pipelined behind MAIL and RCPT when PIPELINING is offered (no
 * 354 round trip). SEND_BODY then comes as soon as that command is written,
 * and the caller sends the body unstuffed (proto/smtp_client_bdat.h: exactly
 * the message's bdat_bytes) right behind it, whatever replies arrive
 * meanwhile; body_sent appends nothing, and MESSAGE_DONE waits for it (the
 * caller's buffer stays in use until then). A BDAT already on the wire when
 * every RCPT (or MAIL) was refused is read and refused by the upstream
 * (RFC 3030 section 2); those results stand and RSET follows. BINARYMIME
 * bodies go only this way, with BODY=BINARYMIME, and only when the upstream
 * offers BINARYMIME and CHUNKING.
 *
 * Robust replies: a malformed, truncated, over-long or NUL-bearing reply is a
 * temporary failure of the connection (SMTP_CLIENT_FAILED with a 4xx), never a
 * crash. A reply nobody asked for is one too (a 421 closes: CLOSED), and so is
 * a reply ahead of its command: one that begins in the feed call which wrote
 * that command, since the caller has not sent it yet ("451 4.5.0 upstream
 * replied before the command was sent"; a relay without PIPELINING that
 * answers a burst of RCPTs in one read). No byte from the upstream reaches an
 * assertion. One client is used by one thread.
 *
 * Driving it (core/forward): send out whenever it is not empty, and after
 * each send completes call smtp_client_feed(c, NULL, 0, out); feed every
 * received chunk; then act on the status: READY -> start_message or quit;
 * SEND_BODY -> send out, the body, then body_sent; MESSAGE_DONE -> read the
 * results, then next, rset or quit; CLOSED / FAILED -> close the socket (if a
 * message was in flight, each of its recipients holds a result already: the
 * interrupted ones a 4xx). EOF, a reset or a timeout go through
 * smtp_client_connection_lost(), which settles the results the same way.
 *
 * STARTTLS (RFC 3207), when smtp_client_set_tls() asked for it: after the
 * EHLO reply offers STARTTLS the client writes STARTTLS; on its 220 it says
 * START_TLS and reads nothing more in clear (the rest of that feed is
 * discarded: text an attacker could have injected ahead of the handshake).
 * The caller sends out, runs the TLS handshake, then calls
 * smtp_client_tls_started(), which forgets what the upstream offered and
 * sends EHLO again; a failed handshake goes to smtp_client_tls_failed().
 * REQUIRED never lets a transaction start in clear: no STARTTLS offered
 * (or HELO only), STARTTLS refused, or the handshake failed is FAILED with
 * a 4xx, so every message waiting for this connection is deferred.
 */
#ifndef RINGMX_SMTP_CLIENT_H
#define RINGMX_SMTP_CLIENT_H

#include "../common/base.h"
#include "../common/bounds.h"
#include "smtp_client_reply.h"
#include "smtp_cmd.h"
#include "smtp_session.h"

/* Free space out must have at each call; no command line is longer. */
#define SMTP_CLIENT_OUT_MIN_BYTES SMTP_COMMAND_LINE_MIN_BYTES

/* What the upstream is told about the original client (Postfix XFORWARD). */
struct smtp_client_xforward {
	struct span name;  /* "[UNAVAILABLE]" when unknown */
	struct span addr;
	struct span helo;
	struct span proto; /* "ESMTP", "SMTP" */
};

/* One message to forward; every span stays valid until MESSAGE_DONE. */
struct smtp_client_message {
	struct span reverse_path;     /* empty for <> */
	const struct span *recipients;
	uint32_t recipient_count;     /* 1..SMTP_RECIPIENTS_MAX */
	uint64_t body_bytes;          /* stored body size, for SIZE= */
	uint64_t bdat_bytes;          /* the body unstuffed (smtp_bdat_measure): BDAT's size,
					 and SIZE= when BDAT is used; set it when
					 smtp_client_chunking_offered says so */
	bool data_preferred;          /* a text body that goes by DATA even when CHUNKING is
					 offered (the caller's choice: many runs to send) */
	enum smtp_body_type body_type;
	bool smtputf8;
	const struct smtp_client_xforward *xforward; /* NULL: none */
};

enum smtp_client_status {
	SMTP_CLIENT_WANT_INPUT, /* send out (if any), then wait for upstream bytes */
	SMTP_CLIENT_START_TLS,  /* send out, then the TLS handshake; then tls_started */
	SMTP_CLIENT_READY,      /* idle after the greeting/EHLO or a message: start one or quit */
	SMTP_CLIENT_SEND_BODY,  /* send out, then the body bytes, then call body_sent */
	SMTP_CLIENT_MESSAGE_DONE, /* results are final: see message_result / rcpt results */
	SMTP_CLIENT_CLOSED,     /* QUIT answered or the upstream said 421: close */
	SMTP_CLIENT_FAILED,     /* the connection is unusable; see conn_result */
};

/* What the client does about STARTTLS. */
enum smtp_client_tls {
	SMTP_CLIENT_TLS_NONE,          /* never: the session stays in clear */
	SMTP_CLIENT_TLS_OPPORTUNISTIC, /* when offered; refused or not offered: clear */
	SMTP_CLIENT_TLS_REQUIRED,      /* always: else the connection FAILS (4xx) */
};

struct smtp_client {
	/* Private to smtp_client.c; public so callers can embed it (asserted
	 * below 2 KiB there). */
	struct span helo_name;
	const struct smtp_client_message *msg;   /* the message in flight, else NULL */
	struct smtp_client_result *rcpt_results; /* caller's array, recipient_count long */
	uint32_t state;               /* enum client_state */
	uint32_t cmd_count;           /* commands of this transaction (XFORWARD..DATA) */
	uint32_t cmd_written;         /* of those, appended to out so far */
	uint32_t cmd_replied;         /* of those, answered so far */
	uint32_t cmd_unsent_first;    /* first command written during this feed call */
	uint32_t rcpt_write_next;     /* recipient index of the next RCPT to write */
	uint32_t rcpt_reply_next;     /* recipient index the next RCPT reply is for */
	uint32_t rcpt_accepted;       /* RCPT replies that were 2xx */
	uint32_t replies;             /* complete replies read (wraps) */
	uint16_t flags;               /* CF_* */
	uint8_t xforward_commands;    /* XFORWARD commands in this transaction */
	uint8_t tls_mode;             /* enum smtp_client_tls */
	bool tls_active;              /* the handshake is done: the session is encrypted */
	struct smtp_client_result reply;          /* the reply being read */
	struct smtp_client_result message_result; /* MAIL/DATA/final-dot outcome */
	struct smtp_client_result conn_result;    /* why the connection failed */
	struct smtp_client_caps upstream;         /* what EHLO offered */
	struct smtp_client_reply_reader reader;   /* the reply line being read */
};

/* Starts a client: nothing is sent until the upstream's 220 greeting arrives. */
void smtp_client_init(struct smtp_client *c, struct span helo_name);

/* Whether messages may go by BDAT when the upstream offers CHUNKING (off
 * after init); call it before the first feed. */
void smtp_client_set_chunking(struct smtp_client *c, bool enabled);

/* In READY: true when a message started now may go by BDAT (chunking is
 * allowed and the upstream offered CHUNKING), so the caller must fill the
 * message's bdat_bytes (and may set data_preferred) first. */
bool smtp_client_chunking_offered(const struct smtp_client *c);

/* True while the message in flight goes by BDAT: after SEND_BODY the caller
 * sends the body unstuffed, not in DATA wire form. */
bool smtp_client_body_by_bdat(const struct smtp_client *c);

/* Sets what the client does about STARTTLS (NONE after init); call it
 * before the first feed. */
void smtp_client_set_tls(struct smtp_client *c, enum smtp_client_tls mode);

/* After START_TLS, once the caller's TLS handshake has completed: the
 * session starts over (RFC 3207 4.2): what EHLO offered is forgotten and
 * EHLO is written again into out. WANT_INPUT, or FAILED when out has no
 * room for it (see the buffer contract). */
enum smtp_client_status smtp_client_tls_started(struct smtp_client *c, struct smtp_out *out);

/* After START_TLS: the handshake failed (why: short printable text). FAILED
 * with conn_result "451 4.7.5 <why>"; nothing was sent in clear. */
enum smtp_client_status smtp_client_tls_failed(struct smtp_client *c, const char *why);

/* True once tls_started ran: everything since went encrypted. */
bool smtp_client_tls_active(const struct smtp_client *c);

/*
 * Feeds upstream bytes; consumes all of them (partial reply lines are kept
 * inside, bounded; after the 220 to STARTTLS the rest is discarded).
 * Appends commands to out. Returns what to do next.
 * Call it with n = 0 (p may be NULL) each time a send of out has completed:
 * a pipelined message with more RCPTs than fit in out is written in rounds,
 * and the next round is appended only then (WANT_INPUT with out->len > 0
 * means "send this too").
 *
 * Buffer contract (for every function here that takes out): out->cap is at
 * least SMTP_CLIENT_OUT_MIN_BYTES and out->len <= out->cap (asserted: the
 * caller's own invariants); every command line is shorter than that (RFC
 * 5321 4.5.3.1.4). out may still hold bytes not yet sent: a pipelined round
 * stops at the first command that does not fit (and may write nothing; the
 * next feed with n = 0 goes on), while any other command that does not fit
 * (EHLO, HELO, a command without PIPELINING, the final dot, RSET, QUIT)
 * fails the connection with "451 4.5.0 upstream replied ahead: output buffer
 * full": unsent commands pile up only when the upstream answers commands the
 * caller could not send yet. A 4 KiB out buffer carries any message, 1000
 * recipients included, in several rounds.
 */
enum smtp_client_status smtp_client_feed(struct smtp_client *c, const uint8_t *p, size_t n,
					 struct smtp_out *out);

/*
 * Starts forwarding m (only in READY). rcpt_results must have
 * m->recipient_count entries. If the upstream lacks a capability the message
 * needs, nothing is sent: returns MESSAGE_DONE at once, every recipient
 * holding message_result (no SMTPUTF8: 553 5.6.7; no 8BITMIME: 554 5.6.3;
 * BINARYMIME without BINARYMIME and CHUNKING offered, or with chunking not
 * allowed: 554 5.6.3, the text says which; over the SIZE the upstream
 * announced: 552 5.3.4). The client then stays READY (RSET is
 * allowed, not needed). A stored address that cannot go on a command line
 * (control bytes, <>, over 256 bytes, non-ASCII without smtputf8) refuses
 * that recipient with 553 5.1.3 (the sender: the message, 553 5.1.7).
 * Otherwise writes [XFORWARD] MAIL, RCPTs and DATA or BDAT (in one write when
 * PIPELINING is offered and out holds them, else in rounds: see feed;
 * without PIPELINING one command per reply) and returns WANT_INPUT
 * (SEND_BODY when the BDAT command went into out); FAILED,
 * every recipient holding the 4xx, when MAIL is due without PIPELINING and
 * out has no room for it.
 */
enum smtp_client_status smtp_client_start_message(struct smtp_client *c,
						  const struct smtp_client_message *m,
						  struct smtp_client_result *rcpt_results,
						  struct smtp_out *out);

/* The caller has sent the body: appends ".\r\n"; returns WANT_INPUT (or
 * CLOSED/FAILED if the upstream gave up while the body went out, or FAILED
 * when out has no room for the dot: see the buffer contract). By BDAT:
 * appends nothing; MESSAGE_DONE when the BDAT reply is in already, else
 * WANT_INPUT. */
enum smtp_client_status smtp_client_body_sent(struct smtp_client *c, struct smtp_out *out);

/* After MESSAGE_DONE: the outcome for the message as a whole (MAIL, DATA or
 * the final reply; when no recipient was accepted, the last RCPT refusal).
 * A recipient's own outcome is in rcpt_results: its RCPT reply when that was
 * not 2xx, else the final reply. */
const struct smtp_client_result *smtp_client_message_result(const struct smtp_client *c);

/* Appends RSET (between messages, after a failed one) or QUIT; only in
 * READY or after MESSAGE_DONE. RSET's 2xx gives READY; QUIT's reply, any
 * reply, gives CLOSED. FAILED at once when out has no room for the command
 * (see the buffer contract); results already final stay as they are. */
enum smtp_client_status smtp_client_rset(struct smtp_client *c, struct smtp_out *out);
enum smtp_client_status smtp_client_quit(struct smtp_client *c, struct smtp_out *out);

/* After MESSAGE_DONE (or in READY): on to the next message with as few
 * round trips as the upstream allows. READY at once when no transaction is
 * open upstream (the final reply after the body's dot ended it, or nothing
 * of the message was sent); otherwise RSET is appended, as smtp_client_rset
 * does (MAIL, DATA or every RCPT refused leaves the transaction open). */
enum smtp_client_status smtp_client_next(struct smtp_client *c, struct smtp_out *out);

/* Why the connection failed or closed: the upstream's own reply when it
 * refused the session (greeting, EHLO/HELO, RSET, 421), else a 4xx made up
 * here (malformed or unexpected reply). When that happens mid-message, the
 * recipients without a final result get it too (always 4xx there). */
const struct smtp_client_result *smtp_client_conn_result(const struct smtp_client *c);

/*
 * The connection ended without the reply we waited for (EOF, reset, the
 * caller's timeout): FAILED with conn_result "451 4.4.2 <why>" (why: short
 * printable text such as "lost connection with upstream"), and a message in
 * flight ends as for a malformed reply: its unfinished recipients get that
 * 4xx. After QUIT this is just CLOSED; when already CLOSED or FAILED,
 * nothing changes.
 */
enum smtp_client_status smtp_client_connection_lost(struct smtp_client *c, const char *why);

uint32_t smtp_client_caps(const struct smtp_client *c);

/* Complete replies read so far (wrapping): a caller's deadline moves when
 * this does, not with every byte, so an upstream that trickles a reply
 * cannot hold the connection past its timeout. */
uint32_t smtp_client_replies(const struct smtp_client *c);

#endif
