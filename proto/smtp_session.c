/*
 * smtp_session.c - the ESMTP server state machine (RFC 5321 with PIPELINING
 * RFC 2920, SIZE 1870, 8BITMIME 6152, ENHANCEDSTATUSCODES 2034, SMTPUTF8
 * 6531, CHUNKING and BINARYMIME 3030, STARTTLS 3207; submission RFC 6409
 * and 8314).
 *
 * Sits between core/smtp_conn (which owns the socket, the receive buffers and the
 * clock) and the record builder behind struct smtp_txn_ops. core/ feeds the
 * bytes it received; the session lexes command lines in place
 * (smtp_lex.c), parses arguments (smtp_cmd.c), asks the policy about
 * recipients (policy.c), frames bodies (smtp_data.c) and answers from the
 * reply catalogue (smtp_reply.c). It never reads a clock, never allocates,
 * never makes a syscall.
 *
 * Invariants:
 *  - one reply per command, in command order; the reply buffer always has
 *    OUT_RESERVE_BYTES free before a command is processed (else FLUSH);
 *  - bytes after a group-ending command in the same feed call are a
 *    synchronization error (RFC 2920 section 3.1), answered before the
 *    command runs, so text that follows DATA is never taken as body;
 *  - BDAT chunk bytes are never parsed as commands, whatever the state;
 *  - ops->reset is called whenever a transaction that ops->mail opened ends
 *    without reaching SMTP_FEED_MESSAGE; the caller owns a committed one.
 */
#include "smtp_session.h"

#include <errno.h>
#include <string.h>

#include "policy.h"
#include "smtp_received.h"
#include "smtp_reply.h"

_Static_assert(sizeof(struct smtp_session) < 1024, "an idle connection costs its session");

/* Largest reply sequence one command can produce (EHLO: about 200 bytes;
 * an error plus 421: about 130), with room to spare. */
#define OUT_RESERVE_BYTES 1024
_Static_assert(SMTP_REPLY_BUFFER_BYTES >= 2 * OUT_RESERVE_BYTES, "reserve fits the buffer");

enum session_phase {
	PH_PAUSE,  /* greet_pause: "220-" sent, the final greeting not yet */
	PH_INIT,   /* no HELO/EHLO yet */
	PH_READY,  /* greeted, no transaction */
	PH_MAIL,   /* MAIL accepted */
	PH_RCPT,   /* at least one RCPT accepted (DATA runs in this phase) */
	PH_BDAT,   /* the first BDAT chunk of the transaction has started */
	PH_COMMIT, /* message complete, waiting for smtp_session_committed */
	PH_TLS,    /* STARTTLS accepted, waiting for smtp_session_tls_started */
	PH_AUTH,   /* AUTH credentials ready or being checked */
	PH_CLOSED,
};

enum input_mode {
	IN_LINES,   /* command lines */
	IN_DISCARD, /* the rest of an over-long line, up to its LF */
	IN_DATA,    /* DATA body, up to <CRLF>.<CRLF> */
	IN_CHUNK,   /* BDAT chunk bytes */
	IN_SASL,    /* an AUTH response line after a 334 */
};

enum {
	F_GREETED = 1u << 0,
	F_ESMTP = 1u << 1,      /* EHLO: PIPELINING and the extensions are on */
	F_UTF8 = 1u << 2,       /* MAIL ... SMTPUTF8 in this transaction */
	F_CHUNK_LAST = 1u << 3, /* the current chunk is BDAT ... LAST */
	F_CHUNK_SKIP = 1u << 4, /* the current chunk was refused: drop its bytes */
	F_AUTHED = 1u << 5,     /* AUTH succeeded in this session */
	F_AUTH_HELD = 1u << 6,  /* the caller's AUTH buffer is lent to s->sasl */
	F_DELAY = 1u << 7,      /* the last reply went past the soft error limit */
};

/* Private bits of s->screen, above the public SMTP_SCREEN_* ones. */
enum {
	SCREEN_ENFORCE = 1u << 6,    /* greet_action enforce applies: RCPT gets 550 */
	SCREEN_FIRST_SEEN = 1u << 7, /* the first command line has been judged */
};

/* What went wrong inside a body, reported when the body ends. */
enum body_error { BE_NONE, BE_SIZE, BE_LOOP, BE_APPEND };

static const enum smtp_reply_id body_error_reply[] = {
	[BE_SIZE] = SMTP_R_SIZE_EXCEEDED,
	[BE_LOOP] = SMTP_R_MAIL_LOOP,
	[BE_APPEND] = SMTP_R_RESOURCES,
};

/* What a processing step asks the feed loop to do. */
enum step { STEP_GO, STEP_MORE, STEP_MESSAGE, STEP_CLOSE, STEP_STARTTLS, STEP_AUTH };

static const struct span no_detail = { (const uint8_t *)"", 0 };

/* ---- replies ---------------------------------------------------------- */

static struct span hostname_of(const struct smtp_session *s)
{
	return s->cfg->hostname;
}

/* Replies inside feed: the reserve guarantees room, so failing is a bug. */
static void reply_detail(struct smtp_out *out, enum smtp_reply_id id, struct span detail,
			 bool more)
{
	size_t n = smtp_reply_put(out, id, detail, more);
	RMX_ASSERT(n != 0);
}

static void reply(struct smtp_out *out, enum smtp_reply_id id)
{
	reply_detail(out, id, no_detail, false);
}

/* ---- transaction bookkeeping --------------------------------------------- */

static bool txn_open(const struct smtp_session *s)
{
	return s->phase == PH_MAIL || s->phase == PH_RCPT || s->phase == PH_BDAT;
}

/* Forgets the transaction (after success or abandonment). */
static void txn_clear(struct smtp_session *s)
{
	s->recipients = 0;
	s->message_bytes = 0;
	s->chunk_remaining_bytes = 0;
	s->chunk_bytes = 0;
	smtp_received_counter_init(&s->received);
	s->body_type = SMTP_BODY_7BIT;
	s->body_error = BE_NONE;
	s->flags &= (uint8_t)~(F_UTF8 | F_CHUNK_LAST | F_CHUNK_SKIP);
	s->input = IN_LINES;
	s->phase = (s->flags & F_GREETED) ? PH_READY : PH_INIT;
}

/* Abandons the open transaction, if any: the record builder drops it. */
static void txn_abandon(struct smtp_session *s)
{
	if (txn_open(s))
		s->ops->reset(s->ops_ctx);
	txn_clear(s);
}

/* Ends the AUTH exchange, if any: the decoded bytes are wiped and the
 * buffer goes back to the caller. */
static void auth_release(struct smtp_session *s)
{
	if (!(s->flags & F_AUTH_HELD))
		return;
	sasl_wipe(&s->sasl);
	memset(&s->auth_creds, 0, sizeof(s->auth_creds));
	s->flags &= (uint8_t)~F_AUTH_HELD;
	s->auth_ops->buffer_release(s->auth_ctx);
}

static enum step close_session(struct smtp_session *s)
{
	auth_release(s);
	txn_abandon(s);
	s->phase = PH_CLOSED;
	return STEP_CLOSE;
}

/* Counts one error against the session, after its reply: past the soft
 * limit the reply waits, the hard_error_limit-th gets 421 and closes
 * (Postfix smtpd_soft_error_limit, smtpd_hard_error_limit). */
static enum step count_error(struct smtp_session *s, struct smtp_out *out)
{
	if (s->bad_commands < UINT16_MAX)
		s->bad_commands++;
	if (s->bad_commands < s->cfg->hard_error_limit) {
		if (s->bad_commands > s->cfg->soft_error_limit)
			s->flags |= F_DELAY;
		return STEP_GO;
	}
	reply_detail(out, SMTP_R_TOO_MANY_ERRORS, hostname_of(s), false);
	return close_session(s);
}

/* Replies with an error, and counts it when its row says so. */
static enum step reply_error(struct smtp_session *s, struct smtp_out *out, enum smtp_reply_id id)
{
	reply(out, id);
	if (!smtp_reply_counts_as_error(id))
		return STEP_GO;
	return count_error(s, out);
}

/* The record builder's errno, as a reply. */
static enum smtp_reply_id resource_reply(int rc)
{
	RMX_ASSERT(rc < 0);
	if (rc == -ENOSPC || rc == -ENOMEM)
		return SMTP_R_STORAGE_FULL;
	if (rc == -ENOBUFS)
		return SMTP_R_RESOURCES;
	if (rc == -EBUSY)
		return SMTP_R_MESSAGE_RATE;
	return SMTP_R_QUEUE_WRITE_ERROR;
}

/* ---- bodies ----------------------------------------------------------- */

/* The sink of smtp_data_scan: enforces the size and loop limits, then hands
 * the bytes to the record builder. After the first error nothing more is
 * stored; the body is still read to its end. */
static void body_sink(void *ctx, const uint8_t *p, size_t n)
{
	struct smtp_session *s = ctx;
	if (s->body_error != BE_NONE)
		return;
	s->message_bytes += n;
	if (s->message_bytes > s->cfg->max_message_size_bytes) {
		s->body_error = BE_SIZE;
		return;
	}
	if (smtp_received_counting(&s->received)) {
		smtp_received_count(&s->received, p, n);
		if (s->received.count > SMTP_RECEIVED_HEADERS_MAX) {
			s->body_error = BE_LOOP;
			return;
		}
	}
	if (s->ops->data_append(s->ops_ctx, p, n) < 0)
		s->body_error = BE_APPEND;
}

static void body_start(struct smtp_session *s, enum smtp_data_kind kind)
{
	s->message_bytes = 0;
	smtp_received_counter_init(&s->received);
	s->body_error = BE_NONE;
	smtp_data_init(&s->scan, kind);
}

/* The body ended: either the message goes to the store, or the deferred
 * error is reported and the transaction dropped. */
static enum step body_complete(struct smtp_session *s, struct smtp_out *out)
{
	s->input = IN_LINES;
	if (s->body_error != BE_NONE) {
		RMX_ASSERT(s->body_error < RMX_ARRAY_LEN(body_error_reply));
		reply(out, body_error_reply[s->body_error]);
		txn_abandon(s);
		return STEP_GO;
	}
	s->phase = PH_COMMIT;
	return STEP_MESSAGE;
}

/* A bare CR or LF under the reject policy: 550 and close, nothing stored. */
static enum step reject_bare(struct smtp_session *s, struct smtp_out *out, unsigned bare)
{
	reply(out, (bare & SMTP_DATA_BARE_LF) ? SMTP_R_BARE_LF : SMTP_R_BARE_CR);
	return close_session(s);
}

static bool stop_on_bare(const struct smtp_session *s)
{
	return !s->cfg->bare_newline_normalize;
}

/* ---- commands --------------------------------------------------------- */

static enum step sync_error(struct smtp_session *s, struct smtp_out *out)
{
	reply(out, SMTP_R_SYNC);
	return close_session(s);
}

/* HELO/EHLO names go into Received: and logs: only plain token bytes. */
static bool helo_token_ok(struct span name)
{
	if (name.len == 0 || name.len > SMTP_DOMAIN_MAX_BYTES)
		return false;
	for (size_t i = 0; i < name.len; i++) {
		uint8_t c = name.ptr[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '-' || c == '.' || c == '_' || c == ':' || c == '[' || c == ']';
		if (!ok)
			return false;
	}
	return true;
}

/* Decimal text of v into buf (no NUL); returns the span. */
static struct span format_u64(uint64_t v, char buf[24])
{
	char *end = buf + 24;
	char *at = end;
	do {
		*--at = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return span_make(at, (size_t)(end - at));
}

/* STARTTLS is offered on a clear-text smtp or submission session whose
 * listener has certificates. */
static bool starttls_offered(const struct smtp_session *s)
{
	return s->cfg->tls_offered && s->tls == NULL &&
	       s->cfg->listener_mode != SMTP_LISTENER_SMTPS;
}

/* AUTH exists on submission and smtps listeners with a user table and an
 * AUTH side (smtp_session_set_auth). */
static bool auth_enabled(const struct smtp_session *s)
{
	return s->cfg->auth_offered && s->cfg->listener_mode != SMTP_LISTENER_SMTP &&
	       s->auth_ops != NULL;
}

/* It is offered only under TLS (RFC 8314 section 3.3: no plaintext
 * passwords), and only until it succeeds. */
static bool auth_offered(const struct smtp_session *s)
{
	return auth_enabled(s) && s->tls != NULL && !(s->flags & F_AUTHED);
}

/* Submission and smtps accept mail from authenticated users only. */
static bool auth_required(const struct smtp_session *s)
{
	return s->cfg->listener_mode != SMTP_LISTENER_SMTP && !(s->flags & F_AUTHED);
}

static enum step greet(struct smtp_session *s, const struct smtp_line *line, struct smtp_out *out,
		       bool esmtp)
{
	struct span name;
	if (smtp_parse_helo(line->arg, &name) != SMTP_PARSE_OK || !helo_token_ok(name))
		return reply_error(s, out, esmtp ? SMTP_R_SYNTAX_EHLO : SMTP_R_SYNTAX_HELO);

	/* RFC 5321 4.1.4: a new EHLO/HELO resets the transaction. */
	txn_abandon(s);
	memcpy(s->helo, name.ptr, name.len);
	s->helo[name.len] = '\0';
	s->helo_len = (uint8_t)name.len;
	s->flags |= F_GREETED;
	if (esmtp)
		s->flags |= F_ESMTP;
	else
		s->flags &= (uint8_t)~F_ESMTP;
	s->phase = PH_READY;

	if (!esmtp) {
		reply_detail(out, SMTP_R_HELO, hostname_of(s), false);
		return STEP_GO;
	}
	char size_text[24];
	reply_detail(out, SMTP_R_HELO, hostname_of(s), true);
	reply_detail(out, SMTP_R_EHLO_PIPELINING, no_detail, true);
	reply_detail(out, SMTP_R_EHLO_SIZE, format_u64(s->cfg->max_message_size_bytes, size_text),
		     true);
	enum smtp_reply_id keywords[8];
	size_t count = 0;
	keywords[count++] = SMTP_R_EHLO_8BITMIME;
	keywords[count++] = SMTP_R_EHLO_ENHANCEDSTATUSCODES;
	keywords[count++] = SMTP_R_EHLO_SMTPUTF8;
	keywords[count++] = SMTP_R_EHLO_CHUNKING;
	keywords[count++] = SMTP_R_EHLO_BINARYMIME;
	if (starttls_offered(s))
		keywords[count++] = SMTP_R_EHLO_STARTTLS;
	if (auth_offered(s))
		keywords[count++] = SMTP_R_EHLO_AUTH;
	RMX_ASSERT(count <= RMX_ARRAY_LEN(keywords));
	for (size_t i = 0; i < count; i++)
		reply_detail(out, keywords[i], no_detail, i + 1 < count);
	return STEP_GO;
}

static enum step cmd_ehlo(struct smtp_session *s, const struct smtp_line *line, size_t after,
			  struct smtp_out *out)
{
	(void)after;
	return greet(s, line, out, true);
}

static enum step cmd_helo(struct smtp_session *s, const struct smtp_line *line, size_t after,
			  struct smtp_out *out)
{
	(void)after;
	return greet(s, line, out, false);
}

static enum step cmd_mail(struct smtp_session *s, const struct smtp_line *line, size_t after,
			  struct smtp_out *out)
{
	(void)after;
	if (!(s->flags & F_GREETED))
		return reply_error(s, out, SMTP_R_NEED_HELO);
	if (s->phase != PH_READY)
		return reply_error(s, out, SMTP_R_NESTED_MAIL);
	if (auth_required(s))
		return reply_error(s, out, SMTP_R_AUTH_REQUIRED);

	struct span rest, params_text;
	if (!smtp_strip_keyword(line->arg, "FROM:", &rest))
		return reply_error(s, out, SMTP_R_SYNTAX_MAIL);
	/* Parse the path accepting UTF-8, then decide once the parameters
	 * say whether SMTPUTF8 was declared. */
	struct smtp_path path;
	enum smtp_parse_result r = smtp_parse_path(rest, true, true, &path, &params_text);
	if (r == SMTP_PARSE_NEEDS_UTF8)
		return reply_error(s, out, SMTP_R_NEEDS_SMTPUTF8);
	if (r != SMTP_PARSE_OK)
		return reply_error(s, out, SMTP_R_BAD_SENDER);

	struct smtp_mail_params params;
	r = smtp_parse_mail_params(params_text, &params);
	if (r == SMTP_PARSE_UNKNOWN_PARAM)
		return reply_error(s, out, SMTP_R_UNKNOWN_PARAMETER);
	if (r == SMTP_PARSE_SIZE_OVERFLOW)
		return reply_error(s, out, SMTP_R_SIZE_EXCEEDED);
	if (r != SMTP_PARSE_OK)
		return reply_error(s, out, SMTP_R_BAD_PARAMETER);
	if (params.size_given && params.size_bytes > s->cfg->max_message_size_bytes)
		return reply_error(s, out, SMTP_R_SIZE_EXCEEDED);
	if (path.non_ascii && !params.smtputf8)
		return reply_error(s, out, SMTP_R_NEEDS_SMTPUTF8);

	struct smtp_mail_info info = {
		.reverse_path = path.null_path ? no_detail : path.address,
		.params = &params,
	};
	int rc = s->ops->mail(s->ops_ctx, &info);
	if (rc < 0) {
		/* Whatever the builder began is dropped. */
		s->ops->reset(s->ops_ctx);
		return reply_error(s, out, resource_reply(rc));
	}
	s->phase = PH_MAIL;
	s->body_type = (uint8_t)params.body;
	if (params.smtputf8)
		s->flags |= F_UTF8;
	reply(out, SMTP_R_MAIL_OK);
	return STEP_GO;
}

_Static_assert(SMTP_RECIPIENT_OVERSHOOT_MAX < UINT16_MAX, "rcpt_overshoot holds the allowance");

/*
 * A RCPT past max_recipients. RFC 5321 4.5.3.1.8 and 4.5.3.1.10: the reply
 * is 452, and a client with more recipients sends the rest in later
 * transactions, so a pipelining client may overshoot by a batch. The 452 itself costs the client
 * nothing, though: past SMTP_RECIPIENT_OVERSHOOT_MAX of them in the session
 * each further one counts as an error, so the session ends with 421 within
 * hard_error_limit more. Per session, not per transaction: MAIL or
 * RSET does not renew the allowance.
 */
static enum step recipient_overshoot(struct smtp_session *s, struct smtp_out *out)
{
	reply(out, SMTP_R_TOO_MANY_RECIPIENTS);
	if (s->rcpt_overshoot < SMTP_RECIPIENT_OVERSHOOT_MAX) {
		s->rcpt_overshoot++;
		return STEP_GO;
	}
	return count_error(s, out);
}

static enum step cmd_rcpt(struct smtp_session *s, const struct smtp_line *line, size_t after,
			  struct smtp_out *out)
{
	(void)after;
	if (s->phase == PH_BDAT)
		return reply_error(s, out, SMTP_R_RCPT_AFTER_BDAT);
	if (s->phase != PH_MAIL && s->phase != PH_RCPT)
		return reply_error(s, out, SMTP_R_NEED_MAIL);

	struct span rest, params_text;
	if (!smtp_strip_keyword(line->arg, "TO:", &rest))
		return reply_error(s, out, SMTP_R_SYNTAX_RCPT);
	struct smtp_path path;
	enum smtp_parse_result r =
		smtp_parse_path(rest, false, (s->flags & F_UTF8) != 0, &path, &params_text);
	if (r == SMTP_PARSE_NEEDS_UTF8)
		return reply_error(s, out, SMTP_R_NEEDS_SMTPUTF8);
	if (r != SMTP_PARSE_OK || path.null_path)
		return reply_error(s, out, SMTP_R_BAD_RECIPIENT);
	r = smtp_parse_rcpt_params(params_text);
	if (r == SMTP_PARSE_UNKNOWN_PARAM)
		return reply_error(s, out, SMTP_R_UNKNOWN_PARAMETER);
	if (r != SMTP_PARSE_OK)
		return reply_error(s, out, SMTP_R_BAD_PARAMETER);

	if (s->screen & SCREEN_ENFORCE)
		return reply_error(s, out, SMTP_R_PREGREET_REJECT);
	if (s->recipients >= s->cfg->max_recipients)
		return recipient_overshoot(s, out);
	/* An authenticated user submits: any domain goes, through the
	 * upstream (RFC 6409). */
	enum policy_verdict verdict =
		(s->flags & F_AUTHED) ? POLICY_ACCEPT
				      : policy_check_rcpt(s->cfg->policy, path.local, path.domain,
							  path.route_chars, path.address_literal);
	switch (verdict) {
	case POLICY_ACCEPT:
		break;
	case POLICY_RELAY_DENIED:
		return reply_error(s, out, SMTP_R_RELAY_DENIED);
	case POLICY_UNKNOWN_USER:
		return reply_error(s, out, SMTP_R_UNKNOWN_USER);
	default:
		/* Fail closed on a verdict this code does not know. */
		return reply_error(s, out, SMTP_R_RELAY_DENIED);
	}

	int rc = s->ops->rcpt(s->ops_ctx, path.address);
	if (rc < 0)
		return reply_error(s, out, resource_reply(rc));
	s->recipients++;
	s->phase = PH_RCPT;
	reply(out, SMTP_R_RCPT_OK);
	return STEP_GO;
}

/* Opens the body of the transaction; on failure the transaction is gone. */
static bool data_begin(struct smtp_session *s, struct smtp_out *out)
{
	int rc = s->ops->data_begin(s->ops_ctx);
	if (rc == 0)
		return true;
	reply(out, rc == -ENOBUFS ? SMTP_R_RESOURCES : SMTP_R_QUEUE_WRITE_ERROR);
	txn_abandon(s);
	return false;
}

static enum step cmd_data(struct smtp_session *s, const struct smtp_line *line, size_t after,
			  struct smtp_out *out)
{
	(void)after;
	if (line->arg.len != 0)
		return reply_error(s, out, SMTP_R_SYNTAX_DATA);
	if (s->phase == PH_BDAT)
		return reply_error(s, out, SMTP_R_DATA_AFTER_BDAT);
	if (s->phase == PH_MAIL)
		return reply_error(s, out, SMTP_R_NEED_RCPT);
	if (s->phase != PH_RCPT)
		return reply_error(s, out, SMTP_R_NEED_MAIL);
	if (s->body_type == SMTP_BODY_BINARYMIME)
		return reply_error(s, out, SMTP_R_BINARYMIME_NEEDS_BDAT);
	if (!data_begin(s, out))
		return STEP_GO;
	body_start(s, SMTP_DATA_DOT);
	s->input = IN_DATA;
	reply(out, SMTP_R_DATA_GO);
	return STEP_GO;
}

/*
 * The current BDAT chunk has been read whole; after is how many input bytes
 * follow it in this feed call. Replies for the chunk, or completes the
 * message on LAST.
 */
static enum step chunk_complete(struct smtp_session *s, size_t after, struct smtp_out *out)
{
	RMX_ASSERT(s->chunk_remaining_bytes == 0);
	s->input = IN_LINES;
	/* Without PIPELINING (HELO) every command ends a group; BDAT's own
	 * chunk is part of the command, so the check comes after it. */
	if (!(s->flags & F_ESMTP) && after != 0)
		return sync_error(s, out);
	if (s->flags & F_CHUNK_SKIP) {
		s->flags &= (uint8_t)~F_CHUNK_SKIP;
		return STEP_GO;
	}
	if (s->flags & F_CHUNK_LAST) {
		unsigned bare = smtp_data_finish(&s->scan, stop_on_bare(s), body_sink, s);
		if (bare != 0 && stop_on_bare(s))
			return reject_bare(s, out, bare);
		return body_complete(s, out);
	}
	if (s->body_error != BE_NONE)
		return body_complete(s, out);
	char n_text[24];
	reply_detail(out, SMTP_R_BDAT_OK, format_u64(s->chunk_bytes, n_text), false);
	return STEP_GO;
}

/* Expects the chunk of a BDAT command: size bytes that are data whatever
 * they look like; skip: the command was refused, drop them. */
static void chunk_expect(struct smtp_session *s, uint64_t size, bool last, bool skip)
{
	s->chunk_bytes = size;
	s->chunk_remaining_bytes = size;
	s->input = IN_CHUNK;
	s->flags &= (uint8_t)~(F_CHUNK_LAST | F_CHUNK_SKIP);
	if (last)
		s->flags |= F_CHUNK_LAST;
	if (skip)
		s->flags |= F_CHUNK_SKIP;
}

/*
 * Body bytes the message may still take. message_bytes counts the stored
 * form, which is never shorter than what the client sent (stuffing and
 * line-end repair only add bytes), so a chunk larger than this would fail
 * the size check in body_sink by its end anyway. Outside a transaction
 * message_bytes is 0: a refused BDAT's chunk is bounded the same way.
 */
static uint64_t message_room_bytes(const struct smtp_session *s)
{
	const uint64_t max = s->cfg->max_message_size_bytes;
	return s->message_bytes < max ? max - s->message_bytes : 0;
}

static enum step cmd_bdat(struct smtp_session *s, const struct smtp_line *line, size_t after,
			  struct smtp_out *out)
{
	uint64_t size = 0;
	bool last = false;
	if (smtp_parse_bdat(line->arg, &size, &last) != SMTP_PARSE_OK) {
		/* Without a size the chunk cannot be told from commands: any
		 * guess would parse message text as commands. Stop here. */
		reply(out, SMTP_R_SYNTAX_BDAT);
		return close_session(s);
	}

	/* A chunk that carries the message past max_message_size is refused
	 * before any of it is read: 552 and close, because what follows this
	 * line is that chunk (up to 2^63 bytes), and dropping it would mean
	 * reading all of it. RFC 1870/3030 bound the message, not a chunk:
	 * the chunks so far count, and BDAT 0 LAST always fits. */
	if (size > message_room_bytes(s)) {
		reply(out, SMTP_R_SIZE_EXCEEDED);
		return close_session(s);
	}

	/* A refused BDAT still owns its chunk (RFC 3030 section 2): it is
	 * read and dropped. */
	bool skip = false;
	if (s->phase == PH_MAIL || (s->phase != PH_RCPT && s->phase != PH_BDAT)) {
		skip = true;
		enum smtp_reply_id refuse =
			s->phase == PH_MAIL ? SMTP_R_NEED_RCPT : SMTP_R_NEED_MAIL;
		if (reply_error(s, out, refuse) == STEP_CLOSE)
			return STEP_CLOSE;
	} else if (s->phase == PH_RCPT) {
		/* The first chunk opens the body. */
		if (data_begin(s, out)) {
			body_start(s, s->body_type == SMTP_BODY_BINARYMIME ? SMTP_DATA_BDAT_BINARY
									    : SMTP_DATA_BDAT_TEXT);
			s->phase = PH_BDAT;
		} else {
			skip = true;
		}
	}
	chunk_expect(s, size, last, skip);
	if (size == 0)
		return chunk_complete(s, after, out);
	return STEP_GO;
}

/* A command that moves no mail (NOOP, RSET, VRFY, HELP), after its reply:
 * past junk_command_limit in the session each one counts as an error
 * (Postfix smtpd_junk_command_limit), so a flood of them ends. */
static enum step count_junk(struct smtp_session *s, struct smtp_out *out)
{
	if (s->junk_commands < UINT16_MAX)
		s->junk_commands++;
	if (s->junk_commands <= s->cfg->junk_command_limit)
		return STEP_GO;
	return count_error(s, out);
}

static enum step cmd_rset(struct smtp_session *s, const struct smtp_line *line, size_t after,
			  struct smtp_out *out)
{
	(void)line;
	(void)after;
	txn_abandon(s);
	reply(out, SMTP_R_OK);
	return count_junk(s, out);
}

static enum step cmd_noop(struct smtp_session *s, const struct smtp_line *line, size_t after,
			  struct smtp_out *out)
{
	(void)line;
	(void)after;
	reply(out, SMTP_R_OK);
	return count_junk(s, out);
}

static enum step cmd_quit(struct smtp_session *s, const struct smtp_line *line, size_t after,
			  struct smtp_out *out)
{
	(void)line;
	(void)after;
	reply(out, SMTP_R_QUIT);
	return close_session(s);
}

static enum step cmd_vrfy(struct smtp_session *s, const struct smtp_line *line, size_t after,
			  struct smtp_out *out)
{
	(void)after;
	if (line->arg.len == 0)
		return reply_error(s, out, SMTP_R_SYNTAX_VRFY);
	reply(out, SMTP_R_VRFY);
	return count_junk(s, out);
}

static enum step cmd_help(struct smtp_session *s, const struct smtp_line *line, size_t after,
			  struct smtp_out *out)
{
	(void)line;
	(void)after;
	reply(out, SMTP_R_HELP);
	return count_junk(s, out);
}

/*
 * STARTTLS (RFC 3207). Accepted once, without argument, outside a
 * transaction, on a greeted clear-text session whose listener offers it.
 * Whatever the client sent after the line is never read as a command: the
 * caller discards it (after is ignored here on purpose, so pipelined
 * plaintext is dropped rather than answered).
 */
static enum step cmd_starttls(struct smtp_session *s, const struct smtp_line *line, size_t after,
			      struct smtp_out *out)
{
	(void)after;
	if (s->tls != NULL)
		return reply_error(s, out, SMTP_R_TLS_ACTIVE);
	if (!starttls_offered(s))
		return reply_error(s, out, SMTP_R_NOT_IMPLEMENTED);
	if (line->arg.len != 0)
		return reply_error(s, out, SMTP_R_SYNTAX_STARTTLS);
	if (!(s->flags & F_GREETED))
		return reply_error(s, out, SMTP_R_NEED_HELO);
	if (txn_open(s))
		return reply_error(s, out, SMTP_R_TXN_IN_PROGRESS);
	reply(out, SMTP_R_STARTTLS_GO);
	s->phase = PH_TLS;
	return STEP_STARTTLS;
}

/* A reply line the SASL module made (CRLF included); the reserve
 * guarantees room. */
static void reply_raw(struct smtp_out *out, struct span line)
{
	RMX_ASSERT(line.len >= 6 && line.len <= SMTP_REPLY_LINE_MAX_BYTES);
	RMX_ASSERT(out->cap - out->len >= line.len);
	memcpy(out->buf + out->len, line.ptr, line.len);
	out->len += line.len;
}

/* One step of the SASL exchange, as the session's next move. */
static enum step auth_step(struct smtp_session *s, const struct sasl_result *res,
			   struct smtp_out *out)
{
	switch (res->status) {
	case SASL_CHALLENGE:
		reply_raw(out, res->reply);
		s->input = IN_SASL;
		return STEP_GO;
	case SASL_DONE:
		s->auth_creds = res->creds;
		s->auth_mech = (uint8_t)res->mech;
		s->input = IN_LINES;
		s->phase = PH_AUTH;
		return STEP_AUTH;
	case SASL_FAILED:
		break;
	}
	reply_raw(out, res->reply);
	auth_release(s);
	s->input = IN_LINES;
	if (s->auth_ops->failed(s->auth_ctx, res->mech, res->error) == -EPERM) {
		reply_detail(out, SMTP_R_AUTH_TOO_MANY_FAILURES, hostname_of(s), false);
		return close_session(s);
	}
	return count_error(s, out);
}

/*
 * AUTH mechanism [initial-response] (RFC 4954), on submission and smtps
 * listeners with a user table, under TLS, once per session, outside a
 * transaction. The exchange itself is proto/sasl's; the password check is
 * the caller's (SMTP_FEED_AUTH).
 */
static enum step cmd_auth(struct smtp_session *s, const struct smtp_line *line, size_t after,
			  struct smtp_out *out)
{
	(void)after;
	if (!auth_enabled(s))
		return reply_error(s, out, SMTP_R_NOT_IMPLEMENTED);
	if (s->tls == NULL)
		return reply_error(s, out, SMTP_R_AUTH_NEEDS_TLS);
	if (!(s->flags & F_GREETED))
		return reply_error(s, out, SMTP_R_NEED_HELO);
	if (s->flags & F_AUTHED)
		return reply_error(s, out, SMTP_R_AUTH_ALREADY);
	if (txn_open(s))
		return reply_error(s, out, SMTP_R_TXN_IN_PROGRESS);

	struct span mech = line->arg, initial = { line->arg.ptr + line->arg.len, 0 };
	const uint8_t *sp = memchr(line->arg.ptr, ' ', line->arg.len);
	if (sp != NULL) {
		mech.len = (size_t)(sp - line->arg.ptr);
		initial = span_make(sp + 1, line->arg.len - mech.len - 1);
	}
	if (mech.len == 0 || (sp != NULL && initial.len == 0))
		return reply_error(s, out, SMTP_R_SYNTAX_AUTH);

	uint8_t *buf = NULL;
	size_t cap = 0;
	int rc = s->auth_ops->buffer(s->auth_ctx, &buf, &cap);
	if (rc == -EPERM) {
		reply_detail(out, SMTP_R_AUTH_TOO_MANY_FAILURES, hostname_of(s), false);
		return close_session(s);
	}
	if (rc != 0) {
		reply(out, SMTP_R_AUTH_TEMPFAIL);
		return STEP_GO;
	}
	RMX_ASSERT(buf != NULL && cap > 0);
	s->flags |= F_AUTH_HELD;
	sasl_init(&s->sasl, buf, cap);
	struct sasl_result res = sasl_start(&s->sasl, mech, sp != NULL, initial);
	return auth_step(s, &res, out);
}

/* EXPN, TURN, ETRN. */
static enum step cmd_not_implemented(struct smtp_session *s, const struct smtp_line *line,
				     size_t after, struct smtp_out *out)
{
	(void)line;
	(void)after;
	return reply_error(s, out, SMTP_R_NOT_IMPLEMENTED);
}

static enum step cmd_unknown(struct smtp_session *s, const struct smtp_line *line, size_t after,
			     struct smtp_out *out)
{
	(void)line;
	(void)after;
	return reply_error(s, out, SMTP_R_UNKNOWN_COMMAND);
}

enum {
	CMD_GROUP_END = 1u << 0, /* RFC 2920 3.1: must be last in a pipelined group */
};

struct command_row {
	uint8_t flags;
	enum step (*run)(struct smtp_session *s, const struct smtp_line *line, size_t after,
			 struct smtp_out *out);
};

/* AUTH (RFC 4954 4) ends a group, so that nothing pipelined behind it is
 * taken as a SASL response. STARTTLS does not: what follows it in the same
 * read is discarded unanswered (cmd_starttls), not refused, so a client
 * that pipelines cannot inject cleartext commands into the TLS session
 * (CVE-2011-0411) and gets no reply to them either. */
static const struct command_row command_table[SMTP_VERB_COUNT] = {
	[SMTP_VERB_UNKNOWN] = { 0, cmd_unknown },
	[SMTP_VERB_HELO] = { CMD_GROUP_END, cmd_helo },
	[SMTP_VERB_EHLO] = { CMD_GROUP_END, cmd_ehlo },
	[SMTP_VERB_MAIL] = { 0, cmd_mail },
	[SMTP_VERB_RCPT] = { 0, cmd_rcpt },
	[SMTP_VERB_DATA] = { CMD_GROUP_END, cmd_data },
	[SMTP_VERB_BDAT] = { 0, cmd_bdat },
	[SMTP_VERB_RSET] = { 0, cmd_rset },
	[SMTP_VERB_NOOP] = { CMD_GROUP_END, cmd_noop },
	[SMTP_VERB_QUIT] = { CMD_GROUP_END, cmd_quit },
	[SMTP_VERB_VRFY] = { CMD_GROUP_END, cmd_vrfy },
	[SMTP_VERB_HELP] = { CMD_GROUP_END, cmd_help },
	[SMTP_VERB_EXPN] = { CMD_GROUP_END, cmd_not_implemented },
	[SMTP_VERB_TURN] = { CMD_GROUP_END, cmd_not_implemented },
	[SMTP_VERB_ETRN] = { CMD_GROUP_END, cmd_not_implemented },
	[SMTP_VERB_STARTTLS] = { 0, cmd_starttls },
	[SMTP_VERB_AUTH] = { CMD_GROUP_END, cmd_auth },
};

/* Tells the caller's optional observer (metrics) about a command and the
 * code of the reply written for it since out->len was `before` (0 when the
 * reply comes later, as for a BDAT chunk). */
static void observe_reply(struct smtp_session *s, bool command, enum smtp_verb verb,
			  const struct smtp_out *out, size_t before)
{
	if (s->ops->observe == NULL)
		return;
	unsigned code = 0;
	if (out->len >= before + 3) {
		const uint8_t *r = out->buf + before;
		if (r[0] >= '2' && r[0] <= '5' && r[1] >= '0' && r[1] <= '9' && r[2] >= '0' &&
		    r[2] <= '9')
			code = (unsigned)(r[0] - '0') * 100 + (unsigned)(r[1] - '0') * 10 +
			       (unsigned)(r[2] - '0');
	}
	s->ops->observe(s->ops_ctx, command, verb, code);
}

/* Whether a verb_text is one of the words (upper case) without regard to
 * case. */
static bool verb_is(struct span verb, const char *word)
{
	size_t len = strlen(word);
	if (verb.len != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = verb.ptr[i];
		if (c >= 'a' && c <= 'z')
			c = (uint8_t)(c - ('a' - 'A'));
		if (c != (uint8_t)word[i])
			return false;
	}
	return true;
}

/*
 * Screening of a client's first command line (postscreen's "non-SMTP
 * command" test, in the session): an HTTP request sent to port 25 is closed
 * with 521. (Its "bare newline" test is the bare_newline = reject policy,
 * whose 550 also closes; a first line ended so is counted as screened.)
 */
static bool first_command_is_http(const struct smtp_line *line)
{
	static const char *const http_verbs[] = { "GET", "POST", "CONNECT", "HEAD", "PUT" };
	if (line->verb != SMTP_VERB_UNKNOWN)
		return false;
	for (size_t i = 0; i < RMX_ARRAY_LEN(http_verbs); i++)
		if (verb_is(line->verb_text, http_verbs[i]))
			return true;
	return false;
}

/* One complete command line; after is the number of input bytes that follow
 * it in this feed call. */
static enum step run_command(struct smtp_session *s, const struct smtp_line *line, size_t after,
			     struct smtp_out *out)
{
	const bool first = !(s->screen & SCREEN_FIRST_SEEN);
	s->screen |= SCREEN_FIRST_SEEN;
	const unsigned bare = line->flags & (SMTP_LINE_BARE_CR | SMTP_LINE_BARE_LF);
	if (bare != 0 && stop_on_bare(s)) {
		if (first && (bare & SMTP_LINE_BARE_LF))
			s->screen |= SMTP_SCREEN_BARE_LF;
		return reject_bare(s, out,
				   (bare & SMTP_LINE_BARE_LF) ? SMTP_DATA_BARE_LF : SMTP_DATA_BARE_CR);
	}
	if (first && first_command_is_http(line)) {
		s->screen |= SMTP_SCREEN_HTTP;
		reply(out, SMTP_R_PROTOCOL_ERROR);
		return close_session(s);
	}

	RMX_ASSERT((unsigned)line->verb < SMTP_VERB_COUNT);
	const struct command_row *row = &command_table[line->verb];
	RMX_ASSERT(row->run != NULL);
	bool group_end = (row->flags & CMD_GROUP_END) ||
			 (!(s->flags & F_ESMTP) && line->verb != SMTP_VERB_BDAT &&
			  line->verb != SMTP_VERB_STARTTLS);
	if (group_end && after != 0)
		return sync_error(s, out);

	/* A lone LF ended this line under the normalize policy; a CR inside
	 * it, like any other control byte, makes it unreadable. */
	if (line->flags & (SMTP_LINE_CTL | SMTP_LINE_BARE_CR))
		return reply_error(s, out, SMTP_R_BAD_CHARACTERS);
	return row->run(s, line, after, out);
}

/* ---- input modes ------------------------------------------------------ */

static enum step feed_lines(struct smtp_session *s, const uint8_t *p, size_t n,
			    struct smtp_out *out, size_t *used)
{
	struct smtp_line line;
	/* p starts with the partial line of the last MORE, if any: s->lex
	 * resumes after what was scanned of it then. */
	enum smtp_lex_status ls =
		smtp_lex_line_resume(&s->lex, p, n, s->cfg->max_command_line_bytes, true, &line);
	if (ls == SMTP_LEX_INCOMPLETE) {
		*used = 0;
		return STEP_MORE;
	}
	RMX_ASSERT(line.consumed > 0 && line.consumed <= n);
	*used = line.consumed;
	if (ls == SMTP_LEX_TOO_LONG) {
		s->input = IN_DISCARD;
		return reply_error(s, out, SMTP_R_LINE_TOO_LONG);
	}
	size_t before = out->len;
	enum step st = run_command(s, &line, n - line.consumed, out);
	observe_reply(s, true, line.verb, out, before);
	return st;
}

/* A response line of the AUTH exchange. Like AUTH itself it ends a
 * pipelined group: the client must wait for our answer. */
static enum step feed_sasl(struct smtp_session *s, const uint8_t *p, size_t n,
			   struct smtp_out *out, size_t *used)
{
	struct smtp_line line;
	enum smtp_lex_status ls = smtp_lex_line_resume(&s->lex, p, n,
						       SASL_RESPONSE_LINE_MAX_BYTES + 2, true, &line);
	if (ls == SMTP_LEX_INCOMPLETE) {
		*used = 0;
		return STEP_MORE;
	}
	RMX_ASSERT(line.consumed > 0 && line.consumed <= n);
	*used = line.consumed;
	if (ls == SMTP_LEX_TOO_LONG) {
		struct sasl_result res = sasl_feed_too_long(&s->sasl);
		enum step st = auth_step(s, &res, out);
		if (st != STEP_CLOSE)
			s->input = IN_DISCARD;
		return st;
	}
	const unsigned bare = line.flags & (SMTP_LINE_BARE_CR | SMTP_LINE_BARE_LF);
	if (bare != 0 && stop_on_bare(s))
		return reject_bare(s, out,
				   (bare & SMTP_LINE_BARE_LF) ? SMTP_DATA_BARE_LF : SMTP_DATA_BARE_CR);
	if (n - line.consumed != 0)
		return sync_error(s, out);
	struct sasl_result res = sasl_feed(&s->sasl, line.text);
	return auth_step(s, &res, out);
}

static enum step feed_discard(struct smtp_session *s, const uint8_t *p, size_t n, size_t *used)
{
	const uint8_t *lf = memchr(p, '\n', n);
	if (lf == NULL) {
		*used = n;
		return STEP_GO;
	}
	*used = (size_t)(lf - p) + 1;
	s->input = IN_LINES;
	return STEP_GO;
}

static enum step feed_data(struct smtp_session *s, const uint8_t *p, size_t n,
			   struct smtp_out *out, size_t *used)
{
	struct smtp_data_result r = smtp_data_scan(&s->scan, p, n, stop_on_bare(s), body_sink, s);
	*used = r.consumed;
	if (r.stopped)
		return reject_bare(s, out, r.bare);
	if (!r.end) {
		RMX_ASSERT(r.consumed == n);
		return STEP_GO;
	}
	return body_complete(s, out);
}

static enum step feed_chunk(struct smtp_session *s, const uint8_t *p, size_t n,
			    struct smtp_out *out, size_t *used)
{
	RMX_ASSERT(s->chunk_remaining_bytes > 0);
	size_t take = (size_t)RMX_MIN((uint64_t)n, s->chunk_remaining_bytes);
	if (!(s->flags & F_CHUNK_SKIP)) {
		struct smtp_data_result r =
			smtp_data_scan(&s->scan, p, take, stop_on_bare(s), body_sink, s);
		if (r.stopped) {
			*used = r.consumed;
			return reject_bare(s, out, r.bare);
		}
		RMX_ASSERT(r.consumed == take && !r.end);
	}
	*used = take;
	s->chunk_remaining_bytes -= take;
	if (s->chunk_remaining_bytes != 0)
		return STEP_GO;
	return chunk_complete(s, n - take, out);
}

/* ---- the interface ---------------------------------------------------- */

static bool peer_ip_ok(const struct smtp_peer *peer)
{
	size_t len = strnlen(peer->ip, sizeof(peer->ip));
	if (len == 0 || len == sizeof(peer->ip))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = peer->ip[i];
		bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
			  c == '.' || c == ':';
		if (!ok)
			return false;
	}
	return true;
}

/* What both starts share: checks, then a fresh session in PH_INIT. */
static void session_begin(struct smtp_session *s, const struct smtp_session_config *cfg,
			  const struct smtp_peer *peer, const struct smtp_txn_ops *ops,
			  void *ops_ctx, struct smtp_out *out)
{
	RMX_ASSERT(s != NULL && cfg != NULL && peer != NULL && ops != NULL && out != NULL);
	RMX_ASSERT(cfg->hostname.len > 0 && helo_token_ok(cfg->hostname));
	RMX_ASSERT(cfg->max_command_line_bytes >= SMTP_COMMAND_LINE_MIN_BYTES &&
		   cfg->max_command_line_bytes <= SMTP_COMMAND_LINE_MAX_BYTES);
	RMX_ASSERT(cfg->max_message_size_bytes <= SMTP_MESSAGE_SIZE_MAX_BYTES);
	RMX_ASSERT(cfg->policy != NULL);
	RMX_ASSERT(cfg->soft_error_limit >= 1 && cfg->soft_error_limit <= cfg->hard_error_limit &&
		   cfg->hard_error_limit <= SMTP_ERROR_LIMIT_MAX);
	RMX_ASSERT(cfg->junk_command_limit >= 1 && cfg->junk_command_limit <= SMTP_ERROR_LIMIT_MAX);
	RMX_ASSERT(cfg->greet_action <= SMTP_GREET_DROP);
	RMX_ASSERT(ops->mail && ops->rcpt && ops->data_begin && ops->data_append && ops->reset);
	RMX_ASSERT(peer_ip_ok(peer));
	RMX_ASSERT(out->cap >= SMTP_REPLY_BUFFER_BYTES && out->len <= out->cap);

	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	s->ops = ops;
	s->ops_ctx = ops_ctx;
	s->peer = *peer;
	txn_clear(s);
}

void smtp_session_start(struct smtp_session *s, const struct smtp_session_config *cfg,
			const struct smtp_peer *peer, const struct smtp_txn_ops *ops,
			void *ops_ctx, struct smtp_out *out)
{
	session_begin(s, cfg, peer, ops, ops_ctx, out);
	reply_detail(out, SMTP_R_BANNER, cfg->hostname, false);
}

void smtp_session_start_paused(struct smtp_session *s, const struct smtp_session_config *cfg,
			       const struct smtp_peer *peer, const struct smtp_txn_ops *ops,
			       void *ops_ctx, struct smtp_out *out)
{
	session_begin(s, cfg, peer, ops, ops_ctx, out);
	reply_detail(out, SMTP_R_BANNER, cfg->hostname, true);
	s->phase = PH_PAUSE;
}

void smtp_session_greet_final(struct smtp_session *s, struct smtp_out *out)
{
	if (s->phase != PH_PAUSE)
		return; /* dropped meanwhile */
	RMX_ASSERT(out->cap - out->len >= OUT_RESERVE_BYTES);
	reply_detail(out, SMTP_R_BANNER, hostname_of(s), false);
	s->phase = PH_INIT;
}

unsigned smtp_session_screen(const struct smtp_session *s)
{
	return s->screen & (SMTP_SCREEN_PREGREET | SMTP_SCREEN_BARE_LF | SMTP_SCREEN_HTTP);
}

struct smtp_feed_result smtp_session_feed(struct smtp_session *s, const uint8_t *p, size_t n,
					  struct smtp_out *out)
{
	RMX_ASSERT(s != NULL && out != NULL && (p != NULL || n == 0));
	RMX_ASSERT(out->cap >= SMTP_REPLY_BUFFER_BYTES && out->len <= out->cap);
	struct smtp_feed_result res = { SMTP_FEED_MORE, 0 };
	if (s->phase == PH_COMMIT) {
		res.status = SMTP_FEED_MESSAGE;
		return res;
	}
	if (s->phase == PH_CLOSED) {
		res.status = SMTP_FEED_CLOSE;
		return res;
	}
	if (s->phase == PH_TLS) {
		res.status = SMTP_FEED_STARTTLS;
		return res;
	}
	if (s->phase == PH_PAUSE) {
		/* Talking before the final greeting: the bytes wait for it
		 * (the caller keeps them), the client is judged now. */
		if (n != 0 && !(s->screen & SMTP_SCREEN_PREGREET)) {
			s->screen |= SMTP_SCREEN_PREGREET;
			if (s->cfg->greet_action == SMTP_GREET_ENFORCE)
				s->screen |= SCREEN_ENFORCE;
			if (s->cfg->greet_action == SMTP_GREET_DROP) {
				reply(out, SMTP_R_PROTOCOL_ERROR);
				close_session(s);
				res.status = SMTP_FEED_CLOSE;
			}
		}
		return res;
	}
	if (s->phase == PH_AUTH) {
		res.status = SMTP_FEED_AUTH;
		return res;
	}

	size_t pos = 0;
	while (pos < n) {
		if (out->cap - out->len < OUT_RESERVE_BYTES) {
			res.status = SMTP_FEED_FLUSH;
			break;
		}
		size_t used = 0;
		enum step st = STEP_GO;
		switch ((enum input_mode)s->input) {
		case IN_LINES:
			st = feed_lines(s, p + pos, n - pos, out, &used);
			break;
		case IN_DISCARD:
			st = feed_discard(s, p + pos, n - pos, &used);
			break;
		case IN_DATA:
			st = feed_data(s, p + pos, n - pos, out, &used);
			break;
		case IN_CHUNK:
			st = feed_chunk(s, p + pos, n - pos, out, &used);
			break;
		case IN_SASL:
			st = feed_sasl(s, p + pos, n - pos, out, &used);
			break;
		default:
			RMX_ASSERT(!"input mode");
		}
		RMX_ASSERT(used <= n - pos);
		pos += used;
		if (st == STEP_MORE)
			break;
		if (st == STEP_MESSAGE) {
			res.status = SMTP_FEED_MESSAGE;
			break;
		}
		if (st == STEP_CLOSE) {
			res.status = SMTP_FEED_CLOSE;
			break;
		}
		if (st == STEP_STARTTLS) {
			res.status = SMTP_FEED_STARTTLS;
			break;
		}
		if (st == STEP_AUTH) {
			res.status = SMTP_FEED_AUTH;
			break;
		}
		if (s->flags & F_DELAY) {
			/* This reply must wait: nothing after it is read
			 * before it has been sent. */
			res.status = SMTP_FEED_FLUSH;
			break;
		}
	}
	res.consumed = pos;
	return res;
}

void smtp_session_committed(struct smtp_session *s, int result, struct span queue_id,
			    struct smtp_out *out)
{
	RMX_ASSERT(s->phase == PH_COMMIT);
	size_t before = out->len;
	if (result == 0) {
		reply_detail(out, SMTP_R_QUEUED, queue_id, false);
	} else {
		/* A store that filled up says so (452 4.3.1, RFC 3463: mail
		 * system full); any other failure is a write error. */
		reply(out, result == -ENOSPC ? SMTP_R_STORAGE_FULL : SMTP_R_QUEUE_WRITE_ERROR);
		s->ops->reset(s->ops_ctx);
	}
	observe_reply(s, false, SMTP_VERB_DATA, out, before);
	txn_clear(s);
}

/* A closing 421: written if it fits (the connection ends either way). The
 * record of a message waiting for durability belongs to the caller. */
static void close_with(struct smtp_session *s, enum smtp_reply_id id, struct smtp_out *out)
{
	if (s->phase != PH_CLOSED) {
		/* Best effort: without room the caller closes without it. */
		size_t written = smtp_reply_put(out, id, hostname_of(s), false);
		(void)written;
	}
	auth_release(s);
	if (s->phase != PH_COMMIT)
		txn_abandon(s);
	s->phase = PH_CLOSED;
}

/* ---- AUTH ----------------------------------------------------------------- */

void smtp_session_set_auth(struct smtp_session *s, const struct smtp_auth_ops *ops, void *ctx)
{
	RMX_ASSERT(ops != NULL && ops->buffer && ops->buffer_release && ops->failed);
	RMX_ASSERT(!(s->flags & (F_AUTHED | F_AUTH_HELD)));
	s->auth_ops = ops;
	s->auth_ctx = ctx;
}

void smtp_session_auth_credentials(const struct smtp_session *s, struct smtp_auth_request *req)
{
	RMX_ASSERT(s->phase == PH_AUTH && (s->flags & F_AUTH_HELD));
	const struct sasl_creds *c = &s->auth_creds;
	req->mech = (enum sasl_mech)s->auth_mech;
	req->user = c->authcid;
	req->password = c->password;
}

void smtp_session_auth_queued(struct smtp_session *s, int rc, struct smtp_out *out)
{
	RMX_ASSERT(s->phase == PH_AUTH && (s->flags & F_AUTH_HELD));
	const struct sasl_creds *c = &s->auth_creds;
	/* The name being checked, kept for the session's logs; a longer one
	 * than any user can have is checked (and fails) all the same. */
	s->auth_user_len = 0;
	if (c->authcid.len <= AUTH_USER_NAME_MAX_BYTES) {
		memcpy(s->auth_user, c->authcid.ptr, c->authcid.len);
		s->auth_user_len = (uint8_t)c->authcid.len;
	}
	s->auth_user[s->auth_user_len] = '\0';
	auth_release(s);
	if (rc == 0)
		return;
	s->auth_user_len = 0;
	s->auth_user[0] = '\0';
	reply(out, SMTP_R_AUTH_TEMPFAIL);
	txn_clear(s);
}

void smtp_session_auth_result(struct smtp_session *s, enum smtp_auth_outcome outcome,
			      struct smtp_out *out)
{
	RMX_ASSERT(s->phase == PH_AUTH && !(s->flags & F_AUTH_HELD));
	RMX_ASSERT(out->cap - out->len >= OUT_RESERVE_BYTES);
	txn_clear(s);
	switch (outcome) {
	case SMTP_AUTH_OK:
		s->flags |= F_AUTHED;
		reply(out, SMTP_R_AUTH_OK);
		return;
	case SMTP_AUTH_TEMPFAIL:
		reply(out, SMTP_R_AUTH_TEMPFAIL);
		break;
	case SMTP_AUTH_FAILED:
		if (reply_error(s, out, SMTP_R_AUTH_FAILED) == STEP_CLOSE)
			s->phase = PH_CLOSED;
		break;
	case SMTP_AUTH_FAILED_LAST:
		reply(out, SMTP_R_AUTH_FAILED);
		reply_detail(out, SMTP_R_AUTH_TOO_MANY_FAILURES, hostname_of(s), false);
		close_session(s);
		break;
	default:
		RMX_ASSERT(!"auth outcome");
	}
	s->auth_user_len = 0;
	s->auth_user[0] = '\0';
}

struct span smtp_session_auth_user(const struct smtp_session *s)
{
	if (!(s->flags & F_AUTHED) && s->phase != PH_AUTH)
		return span_make("", 0);
	return span_make(s->auth_user, s->auth_user_len);
}

/* The TLS facts go into Received: as written: token bytes only. */
static bool tls_text_ok(const char *text, size_t cap)
{
	size_t len = strnlen(text, cap);
	if (len == 0 || len == cap)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (text[i] <= 0x20 || text[i] >= 0x7f || text[i] == '(' || text[i] == ')')
			return false;
	}
	return true;
}

void smtp_session_tls_started(struct smtp_session *s, const struct smtp_tls_info *info)
{
	RMX_ASSERT(info != NULL && s->tls == NULL);
	RMX_ASSERT(tls_text_ok(info->version, sizeof(info->version)) &&
		   tls_text_ok(info->cipher, sizeof(info->cipher)));
	RMX_ASSERT(s->phase == PH_TLS ||
		   (s->cfg->listener_mode == SMTP_LISTENER_SMTPS && s->phase == PH_INIT &&
		    !(s->flags & F_GREETED)));
	/* RFC 3207 4.2: discard all knowledge obtained from the client in
	 * clear text. The error counts stay: they are ours, not the client's. */
	s->flags = 0;
	s->helo_len = 0;
	s->helo[0] = '\0';
	memset(&s->lex, 0, sizeof(s->lex));
	s->tls = info;
	txn_clear(s);
	RMX_ASSERT(s->phase == PH_INIT);
}

bool smtp_session_tls_active(const struct smtp_session *s)
{
	return s->tls != NULL;
}

bool smtp_session_take_delay(struct smtp_session *s)
{
	bool due = (s->flags & F_DELAY) != 0;
	s->flags &= (uint8_t)~F_DELAY;
	return due;
}

const struct smtp_tls_info *smtp_session_tls(const struct smtp_session *s)
{
	return s->tls;
}

void smtp_session_timeout(struct smtp_session *s, struct smtp_out *out)
{
	close_with(s, SMTP_R_TIMEOUT, out);
}

void smtp_session_shutdown(struct smtp_session *s, struct smtp_out *out)
{
	close_with(s, SMTP_R_SHUTDOWN, out);
}

enum smtp_timeout_kind smtp_session_timeout_kind(const struct smtp_session *s)
{
	if (s->input == IN_DATA || s->input == IN_CHUNK)
		return SMTP_TIMEOUT_DATA;
	if (txn_open(s) || s->phase == PH_COMMIT)
		return SMTP_TIMEOUT_COMMAND;
	return SMTP_TIMEOUT_IDLE;
}

bool smtp_session_closed(const struct smtp_session *s)
{
	return s->phase == PH_CLOSED;
}

bool smtp_session_in_transaction(const struct smtp_session *s)
{
	return txn_open(s) || s->phase == PH_COMMIT;
}

struct span smtp_session_helo(const struct smtp_session *s)
{
	return span_make(s->helo, s->helo_len);
}

/* ---- Received: -------------------------------------------------------- */

const char *smtp_session_protocol(const struct smtp_session *s)
{
	if (!(s->flags & F_ESMTP))
		return "SMTP";
	/* [utf8][tls][auth] */
	static const char *const names[2][2][2] = {
		{ { "ESMTP", "ESMTPA" }, { "ESMTPS", "ESMTPSA" } },
		{ { "UTF8SMTP", "UTF8SMTPA" }, { "UTF8SMTPS", "UTF8SMTPSA" } },
	};
	return names[(s->flags & F_UTF8) != 0][s->tls != NULL][(s->flags & F_AUTHED) != 0];
}

size_t smtp_session_received(const struct smtp_session *s, struct span queue_id,
			     int64_t now_unix, char *buf, size_t cap)
{
	RMX_ASSERT(s != NULL && buf != NULL);
	RMX_ASSERT(s->helo_len > 0 && peer_ip_ok(&s->peer));
	RMX_ASSERT(queue_id.len > 0 && queue_id.len <= 64 && helo_token_ok(queue_id));
	struct smtp_received_facts f = {
		.helo = span_make(s->helo, s->helo_len),
		.client_ip = s->peer.ip,
		.client_ipv6 = s->peer.ipv6,
		.hostname = hostname_of(s),
		.protocol = smtp_session_protocol(s),
		.tls_version = s->tls != NULL ? s->tls->version : NULL,
		.tls_cipher = s->tls != NULL ? s->tls->cipher : NULL,
		.queue_id = queue_id,
		.now_unix = now_unix,
	};
	return smtp_received_write(&f, buf, cap);
}
