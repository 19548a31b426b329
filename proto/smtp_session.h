/*
 * smtp_session.h - the pure ESMTP server state machine (STYLE.md 6).
 *
 * Inputs: bytes the client sent (a span into the caller's receive buffer),
 * and events (record durable, timer fired, shutdown). Outputs: reply bytes
 * appended to a caller-owned struct smtp_out, a status telling the caller
 * what to do next, and calls through struct smtp_txn_ops that hand the
 * envelope and the body to whoever builds the record. No syscalls, no clock
 * reads, no allocation: the caller owns every buffer. One session is used by
 * one thread.
 *
 * Zero copy: command lines are parsed in place. smtp_session_feed() returns
 * how many bytes it consumed; unconsumed bytes are either a partial command
 * line (status MORE, at most max_command_line bytes; during an AUTH exchange a
 * response line, at most SASL_RESPONSE_LINE_MAX_BYTES + 2) or input that must wait
 * (status MESSAGE or FLUSH). The caller keeps them and presents them again,
 * unchanged and first, followed by newer input, on the next call: the
 * session remembers how far it has scanned a partial line and scans only
 * what is new, so a line costs its length however finely it is cut. In
 * DATA and BDAT, the session consumes everything up to the end of the body
 * (unless it asks for a FLUSH) and passes body bytes to ops->data_append
 * (DATA wire form: CRLF lines, dot-stuffed, without the final ".CRLF"; BDAT
 * chunks are dot-stuffed on the way in).
 *
 * Pipelining (RFC 2920) is judged per call: bytes that follow a
 * group-ending command (EHLO, HELO, DATA, NOOP, QUIT, ...; every command
 * after HELO) in the same call are a synchronization error (554, CLOSE). So
 * the caller presents what it has received, kept bytes first, in one call,
 * and never holds back or splits input on purpose.
 */
#ifndef RINGMX_SMTP_SESSION_H
#define RINGMX_SMTP_SESSION_H

#include "../common/base.h"
#include "../common/bounds.h"
#include "sasl.h"
#include "smtp_cmd.h"
#include "smtp_data.h"
#include "smtp_lex.h"
#include "smtp_received.h"

struct smtp_policy;

/* What a listener is for (listen = ADDR:PORT [smtp|submission|smtps]). */
enum smtp_listener_mode {
	SMTP_LISTENER_SMTP,       /* MX duty: STARTTLS offered when certificates are loaded,
				     AUTH never */
	SMTP_LISTENER_SUBMISSION, /* RFC 6409: STARTTLS offered, AUTH only after TLS, MAIL
				     only after AUTH */
	SMTP_LISTENER_SMTPS,      /* RFC 8314: TLS from the first byte, MAIL only after AUTH */
};

/* Settings a session reads; owned by the caller's config snapshot, which
 * outlives every session started with it. */
struct smtp_session_config {
	struct span hostname;            /* banner, EHLO, Received: */
	uint64_t max_message_size_bytes;
	uint32_t max_recipients;
	uint32_t max_command_line_bytes; /* SMTP_COMMAND_LINE_MIN..MAX */
	bool bare_newline_normalize;     /* false: reject bare CR/LF */
	const struct smtp_policy *policy;
	uint8_t listener_mode;           /* enum smtp_listener_mode */
	bool tls_offered;                /* certificates loaded: STARTTLS may be offered */
	bool auth_offered;               /* a user table is loaded: AUTH may be offered
					    (submission and smtps listeners only) */
	/* The error budget (Postfix smtpd_soft_error_limit, _hard_error_limit,
	 * _junk_command_limit). Errors are the replies the catalogue counts;
	 * past soft_error_limit each one's reply waits (smtp_session_take_delay),
	 * the hard_error_limit-th closes with 421 4.7.0; past
	 * junk_command_limit NOOP, RSET, VRFY and HELP each count as an error.
	 * 1 <= soft <= hard <= SMTP_ERROR_LIMIT_MAX; junk 1..SMTP_ERROR_LIMIT_MAX. */
	uint16_t soft_error_limit;
	uint16_t hard_error_limit;
	uint16_t junk_command_limit;
	uint8_t greet_action;            /* enum smtp_greet_action: what a client that
					    talks before the final greeting gets */
};

/* greet_action (postscreen's postscreen_greet_action). */
enum smtp_greet_action {
	SMTP_GREET_IGNORE,  /* noted only */
	SMTP_GREET_ENFORCE, /* every RCPT of the session gets 550 5.5.1 */
	SMTP_GREET_DROP,    /* 521 5.5.1 and close */
};

/* What screening found out about a client (bits; smtp_session_screen). */
enum {
	SMTP_SCREEN_PREGREET = 1u << 0, /* talked before the final greeting */
	SMTP_SCREEN_BARE_LF = 1u << 1,  /* first command ended in a bare LF */
	SMTP_SCREEN_HTTP = 1u << 2,     /* first command an HTTP verb (GET, POST, ...) */
};

/* The TLS session under a connection, as core/ reports it once the
 * handshake is done; for Received: and logs. Token text only. */
struct smtp_tls_info {
	char version[16]; /* "TLSv1.3" */
	char cipher[64];  /* "TLS_AES_256_GCM_SHA384" */
};

/* The client as core/ saw it on accept. */
struct smtp_peer {
	char ip[48];  /* textual address, no brackets; "::1", "127.0.0.1" */
	bool ipv6;
};

/* Reply bytes; the session appends, the caller sends and resets len. */
struct smtp_out {
	uint8_t *buf;
	size_t len;
	size_t cap; /* at least SMTP_REPLY_BUFFER_BYTES */
};

struct smtp_mail_info {
	struct span reverse_path; /* empty for <> */
	const struct smtp_mail_params *params;
};

/*
 * The record builder on the other side. Each returns 0 or a negative errno
 * that the session maps to a reply:
 *   mail:       -ENOSPC store full or overloaded (452 4.3.1), -EIO store failed
 *               (451 4.3.0), -ENOMEM (452 4.3.1), -EBUSY this client's message
 *               rate is spent (451 4.7.1)
 *   rcpt:       -ENOMEM (452 4.3.1)
 *   data_begin: -ENOBUFS in-flight data bound reached (451 4.3.1), -EIO (451 4.3.0)
 *   data_append:-ENOMEM; the session reads on to the end, then 451 4.3.1
 *   reset:      the transaction is abandoned (RSET, error, close); no result
 */
struct smtp_txn_ops {
	int (*mail)(void *ctx, const struct smtp_mail_info *m);
	int (*rcpt)(void *ctx, struct span forward_path);
	int (*data_begin)(void *ctx);
	int (*data_append)(void *ctx, const uint8_t *p, size_t n);
	void (*reset)(void *ctx);
	/* Optional (NULL: none), for metrics: called after each command with
	 * command = true and the code of its reply (0 when the reply comes
	 * later), and with command = false for the reply to the end of a
	 * message (verb DATA). */
	void (*observe)(void *ctx, bool command, enum smtp_verb verb, unsigned reply_code);
};

/*
 * The AUTH side (smtp_session_set_auth; without it AUTH is never offered).
 * buffer lends the session a buffer for one exchange's decoded bytes (at
 * least SASL_DECODED_MAX_BYTES would fit any line; smaller ones fail long
 * responses with 500 5.5.6): 0, -ENOBUFS (454 4.7.0), or -EPERM: this client
 * has failed too often (421 4.7.0, close). buffer_release takes it back,
 * wiped. failed reports an exchange that failed in the session itself
 * (malformed, cancelled, ...: no check was made); -EPERM from it means that
 * failure reached the limit (421, close). The check itself is
 * SMTP_FEED_AUTH's.
 */
struct smtp_auth_ops {
	int (*buffer)(void *ctx, uint8_t **buf, size_t *cap_bytes);
	void (*buffer_release)(void *ctx);
	int (*failed)(void *ctx, enum sasl_mech mech, enum sasl_error error);
};

enum smtp_feed_status {
	SMTP_FEED_MORE,    /* wants more input; unconsumed bytes are a partial line
			      (or, before the final greeting of a paused session,
			      input that waits for it) */
	SMTP_FEED_MESSAGE, /* a message is complete: make it durable, then call
			      smtp_session_committed(); hold unconsumed input until then */
	SMTP_FEED_FLUSH,   /* reply buffer nearly full, or the error budget says the
			      reply must wait (smtp_session_take_delay): send it,
			      then feed the rest */
	SMTP_FEED_CLOSE,   /* send what is in out, then close the connection */
	SMTP_FEED_AUTH,    /* an AUTH exchange produced credentials: take them with
			      smtp_session_auth_credentials(), queue their check
			      (never on this thread), then smtp_session_auth_queued();
			      hold unconsumed input until smtp_session_auth_result() */
	SMTP_FEED_STARTTLS, /* out holds "220 2.0.0 Ready to start TLS"; consumed ends
			       after the STARTTLS line. Discard every unconsumed
			       byte and the rest of that read (RFC 3207 section 6),
			       send out in clear, then run the server handshake and
			       never read cleartext again: smtp_session_tls_started()
			       when it completes; close without a reply if it fails */
};

struct smtp_feed_result {
	enum smtp_feed_status status;
	size_t consumed;
};

/* Which deadline applies now (the caller owns the clock and the values). */
enum smtp_timeout_kind { SMTP_TIMEOUT_IDLE, SMTP_TIMEOUT_COMMAND, SMTP_TIMEOUT_DATA };

struct smtp_session {
	/* Private to smtp_session.c; public only so that callers can embed it.
	 * Keep it small: an idle connection costs this and little else
	 * (asserted below 1 KiB in smtp_session.c). */
	const struct smtp_session_config *cfg;
	const struct smtp_txn_ops *ops;
	void *ops_ctx;
	const struct smtp_auth_ops *auth_ops; /* NULL: AUTH is not offered */
	void *auth_ctx;
	uint64_t message_bytes;        /* body bytes stored (or counted) so far */
	uint64_t chunk_remaining_bytes; /* BDAT chunk bytes still to arrive */
	uint64_t chunk_bytes;          /* size of the current BDAT chunk */
	uint32_t recipients;           /* accepted in this transaction */
	uint16_t bad_commands;         /* against the error budget */
	uint16_t junk_commands;        /* NOOP, RSET, VRFY, HELP so far */
	uint16_t rcpt_overshoot;       /* 452s past max_recipients in this session */
	uint8_t phase;                 /* enum session_phase */
	uint8_t input;                 /* enum input_mode */
	uint8_t flags;                 /* SESSION_F_* */
	uint8_t body_type;             /* enum smtp_body_type of this transaction */
	uint8_t body_error;            /* deferred reply for the end of the body */
	uint8_t screen;                /* SMTP_SCREEN_* found; private bits above */
	struct smtp_received_counter received; /* Received: lines seen in this message */
	struct smtp_data_scanner scan;    /* end-of-data DFA / BDAT stuffing state */
	struct smtp_lex_scan lex;         /* how far the carried partial command
					     line has been scanned */
	struct smtp_peer peer;
	const struct smtp_tls_info *tls; /* caller-owned; NULL in clear text */
	struct sasl sasl;                /* the AUTH exchange in progress, if any */
	struct sasl_creds auth_creds;    /* its result (spans into the lent buffer) */
	uint8_t auth_mech;               /* enum sasl_mech of that exchange */
	uint8_t auth_user_len;
	char auth_user[AUTH_USER_NAME_MAX_BYTES + 1]; /* once authenticated; during a
							 check, the name being checked */
	uint8_t helo_len;
	char helo[SMTP_DOMAIN_MAX_BYTES + 1]; /* validated HELO/EHLO name */
};

/* Starts a session: writes the 220 banner to out. */
void smtp_session_start(struct smtp_session *s, const struct smtp_session_config *cfg,
			const struct smtp_peer *peer, const struct smtp_txn_ops *ops,
			void *ops_ctx, struct smtp_out *out);

/*
 * Starts a screened session (greet_pause): writes only "220-" and the
 * banner text; until smtp_session_greet_final() feed consumes nothing
 * (status MORE: the caller keeps the bytes) but judges the client a
 * pre-greeter by greet_action: drop writes 521 5.5.1 and returns CLOSE.
 */
void smtp_session_start_paused(struct smtp_session *s, const struct smtp_session_config *cfg,
			       const struct smtp_peer *peer, const struct smtp_txn_ops *ops,
			       void *ops_ctx, struct smtp_out *out);

/* The pause is over: writes the final "220 " line; the caller then feeds
 * what it kept. */
void smtp_session_greet_final(struct smtp_session *s, struct smtp_out *out);

/* SMTP_SCREEN_* found so far (for logs, metrics and the verdict cache). */
unsigned smtp_session_screen(const struct smtp_session *s);

/* Feeds client input. See the file comment for what consumed means. */
struct smtp_feed_result smtp_session_feed(struct smtp_session *s, const uint8_t *p, size_t n,
					  struct smtp_out *out);

/* The message that feed reported as complete is durable (result 0, queue id
 * text in queue_id: "250 2.0.0 Ok: queued as ...") or failed (-ENOSPC, the
 * store is full: 452 4.3.1; another negative errno: 451 4.3.0). The session
 * is ready for input again. */
void smtp_session_committed(struct smtp_session *s, int result, struct span queue_id,
			    struct smtp_out *out);

/*
 * The TLS handshake under the session completed (after SMTP_FEED_STARTTLS,
 * or on an smtps listener right after smtp_session_start). Everything the
 * session knew from the clear-text part is forgotten (RFC 3207 section
 * 4.2): the client must send EHLO again, which no longer offers STARTTLS.
 * info is the caller's and must outlive the session. Writes nothing.
 */
void smtp_session_tls_started(struct smtp_session *s, const struct smtp_tls_info *info);

/* Gives the session its AUTH side, right after it starts (AUTH is offered
 * where the config and the listener allow it and ops are set). */
void smtp_session_set_auth(struct smtp_session *s, const struct smtp_auth_ops *ops, void *ctx);

/* The credentials of the exchange that returned SMTP_FEED_AUTH, valid until
 * smtp_session_auth_queued(). */
struct smtp_auth_request {
	enum sasl_mech mech;
	struct span user;     /* authcid */
	struct span password;
};
void smtp_session_auth_credentials(const struct smtp_session *s, struct smtp_auth_request *req);

/* The check was queued (rc 0: its result comes later) or could not be
 * (rc < 0: 454 4.7.0 is written, the session goes on). Either way the
 * decoded credentials are wiped and the buffer handed back. */
void smtp_session_auth_queued(struct smtp_session *s, int rc, struct smtp_out *out);

enum smtp_auth_outcome {
	SMTP_AUTH_OK,          /* 235 2.7.0 */
	SMTP_AUTH_FAILED,      /* 535 5.7.8 */
	SMTP_AUTH_TEMPFAIL,    /* 454 4.7.0 */
	SMTP_AUTH_FAILED_LAST, /* 535 5.7.8, then 421 4.7.0: this client has failed too
				  often (auth_fail_limit); the caller closes */
};

/* The answer to a queued check: writes the reply; the session takes input
 * again (after SMTP_AUTH_FAILED_LAST, feed returns SMTP_FEED_CLOSE). */
void smtp_session_auth_result(struct smtp_session *s, enum smtp_auth_outcome outcome,
			      struct smtp_out *out);

/* The authenticated user (empty when none), as the client gave it; while a
 * check runs, the name being checked. */
struct span smtp_session_auth_user(const struct smtp_session *s);

/* True once TLS protects the session. */
bool smtp_session_tls_active(const struct smtp_session *s);

/* True once after a reply that went past the soft error limit: the caller
 * holds that reply (and reads nothing) for its error sleep time before it
 * sends it; feed returned SMTP_FEED_FLUSH right after it. */
bool smtp_session_take_delay(struct smtp_session *s);

/* The TLS facts given to smtp_session_tls_started, or NULL in clear text. */
const struct smtp_tls_info *smtp_session_tls(const struct smtp_session *s);

/* The deadline fired: writes 421 4.4.2 and the caller closes. */
void smtp_session_timeout(struct smtp_session *s, struct smtp_out *out);

/* The server is stopping: writes 421 4.3.2 and the caller closes. */
void smtp_session_shutdown(struct smtp_session *s, struct smtp_out *out);

enum smtp_timeout_kind smtp_session_timeout_kind(const struct smtp_session *s);

/* True once the session has ended (its last reply written; the caller
 * closes after sending it). */
bool smtp_session_closed(const struct smtp_session *s);

/* True between MAIL and the end of the transaction (graceful shutdown waits). */
bool smtp_session_in_transaction(const struct smtp_session *s);

/*
 * Writes the Received: header (RFC 5321 4.4, with ESMTP / ESMTPS / UTF8SMTP
 * per RFC 3848 and 6531) for the message just completed, built only from
 * validated tokens: HELO, the client IP literal, our hostname, the queue id,
 * and now_unix formatted as an RFC 5322 date in UTC. Folded, CRLF-terminated.
 * Returns its length, or 0 if cap is too small (cap >=
 * SMTP_RECEIVED_HEADER_MAX_BYTES always suffices).
 */
size_t smtp_session_received(const struct smtp_session *s, struct span queue_id,
			     int64_t now_unix, char *buf, size_t cap);

/* The protocol of the current transaction for Received: and the record
 * (RFC 3848, 6531): "SMTP" (HELO), "ESMTP" (EHLO), "UTF8SMTP" (EHLO + MAIL
 * ... SMTPUTF8), each with "S" under TLS and "A" once authenticated
 * ("ESMTPSA", "UTF8SMTPS"). */
const char *smtp_session_protocol(const struct smtp_session *s);

/* The validated HELO/EHLO name (empty before the greeting); points into s. */
struct span smtp_session_helo(const struct smtp_session *s);

/* Writes a reply that core/ needs outside any session (421 4.3.2 too many
 * connections). Returns bytes written, 0 if out is full. */
size_t smtp_reply_too_many_connections(struct span hostname, struct smtp_out *out);

/* Why a connection is refused before its session starts. */
enum smtp_refusal {
	SMTP_REFUSE_SERVER_FULL,        /* 421 4.3.2: max_connections */
	SMTP_REFUSE_OVERLOAD,           /* 421 4.3.2: the hard overload watermark */
	SMTP_REFUSE_CLIENT_CONNECTIONS, /* 421 4.7.0: max_connections_per_ip */
	SMTP_REFUSE_CLIENT_RATE,        /* 421 4.7.0: max_connection_rate_per_ip */
	SMTP_REFUSE_COUNT
};

/* The reply for a refused connection. Returns bytes written, 0 if out is
 * full. */
size_t smtp_reply_refuse_connection(struct span hostname, enum smtp_refusal why,
				    struct smtp_out *out);

#endif
