/*
 * smtp_client.c - the ESMTP client state machine that core/forward drives to
 * hand stored messages to an upstream relay (RFC 5321, PIPELINING RFC 2920,
 * SIZE 1870, 8BITMIME 6152, ENHANCEDSTATUSCODES 2034/3463, SMTPUTF8 6531,
 * CHUNKING and BINARYMIME 3030, Postfix XFORWARD, STARTTLS 3207).
 *
 * Upstream bytes come in through smtp_client_feed() in whatever pieces the
 * socket delivered; proto/smtp_client_reply assembles them into checked
 * reply lines and results, within fixed memory. A complete reply goes to
 * the handler of the state that expects it. Commands go out into the
 * caller's struct smtp_out, their lines written by proto/smtp_client_line
 * (the line builder, XFORWARD and its xtext, which addresses may be sent);
 * the message body never passes through here.
 *
 * Invariants:
 *  - a transaction is the command sequence XFORWARD* MAIL RCPT+ DATA (or
 *    BDAT LAST), indexed 0..cmd_count-1; cmd_replied <= cmd_written <=
 *    cmd_count, and replies are matched to commands strictly in order (RFC
 *    2920 section 3.1; RFC 3030 section 4.2 lets BDAT be pipelined);
 *  - by BDAT, the body follows its command at once; MESSAGE_DONE waits for
 *    both the BDAT reply and the caller's body_sent, so the caller never
 *    lets go of a body still being sent;
 *  - a recipient's result is final once it holds a non-2xx code, or once the
 *    message is done; a connection that closes or fails mid-message gives
 *    every recipient without a final result a 4xx, never a 5xx;
 *  - bytes that start a reply while none is expected are never taken as the
 *    answer to a later command;
 *  - a reply that starts in the feed call which wrote the command it would
 *    answer is ahead of that command (the caller sends out only after feed
 *    returns): the connection fails with a 4xx, as it does when a command
 *    the upstream's replies call for finds no room in out. Nothing an
 *    upstream sends reaches an assertion;
 *  - the input is consumed whole on every call, and the outcome does not
 *    depend on how it was split, as long as no reply begins in the call
 *    that wrote its command.
 */
#include "smtp_client.h"

#include <string.h>

#include "smtp_client_line.h"

_Static_assert(sizeof(struct smtp_client) < 2048, "a forwarder connection stays small");
_Static_assert(SMTP_CLIENT_OUT_MIN_BYTES >= 512, "every command line fits the minimum");
_Static_assert(SMTP_REPLY_BUFFER_BYTES >= 2 * SMTP_CLIENT_OUT_MIN_BYTES,
	       "a reply-sized out buffer carries several commands per round");

/* A command line, CRLF included, is shorter than this (RFC 5321 4.5.3.1.4). */
/* "MAIL FROM:<" path "> SIZE=" 20 digits " BODY=BINARYMIME SMTPUTF8\r\n" */
_Static_assert(11 + SMTP_PATH_MAX_BYTES + 7 + 20 + 16 + 9 + 2 < SMTP_CLIENT_COMMAND_MAX_BYTES,
	       "the longest MAIL command fits one line");
_Static_assert(SMTP_CLIENT_OUT_MIN_BYTES >= SMTP_CLIENT_COMMAND_MAX_BYTES, "a command fits out");

enum client_state {
	ST_GREETING,     /* waiting for 220 */
	ST_EHLO,         /* EHLO sent */
	ST_HELO,         /* HELO sent after EHLO was refused */
	ST_STARTTLS,     /* STARTTLS sent */
	ST_TLS_WAIT,     /* 220 to STARTTLS: the caller runs the handshake */
	ST_READY,        /* idle, no transaction */
	ST_TRANSACTION,  /* XFORWARD/MAIL/RCPT/DATA replies outstanding */
	ST_SEND_BODY,    /* 354 seen: the caller sends the body */
	ST_DOT,          /* body and "." sent: waiting for the final reply */
	ST_DOT_DISCARD,  /* 354 with no recipient: a lone "." sent, reply ignored */
	ST_BDAT_HELD,    /* the BDAT reply is in, the caller still sends the body */
	ST_DONE,         /* results final; RSET or QUIT next */
	ST_RSET,         /* RSET sent */
	ST_QUIT,         /* QUIT sent */
	ST_CLOSED,
	ST_FAILED,
};

enum {
	CF_UNEXPECTED = 1u << 2, /* the reply being read began while none was expected */
	CF_ABORT = 1u << 3,      /* XFORWARD or MAIL refused: read the rest, send nothing */
	CF_PIPELINED = 1u << 4,  /* this transaction pipelines (RFC 2920) */
	CF_UNSENT = 1u << 5,     /* EHLO, HELO or a lone "." written in this feed call */
	CF_AHEAD = 1u << 6,      /* the reply being read began before its command was sent */
	CF_TXN_ENDED = 1u << 7,  /* the final reply after the body's dot: no transaction open upstream */
	CF_CHUNKING = 1u << 8,   /* BDAT allowed (smtp_client_set_chunking) */
	CF_BDAT = 1u << 9,       /* this transaction ends with BDAT LAST, not DATA */
	CF_BODY_DUE = 1u << 10,  /* BDAT written; the caller has not called body_sent yet */
	CF_BODY_NOW = 1u << 11,  /* BDAT written in this call: report SEND_BODY */
};

#define AHEAD_TEXT "upstream replied before the command was sent"
#define OUT_FULL_TEXT "upstream replied ahead: output buffer full"
#define TLS_NOT_OFFERED_TEXT "TLS is required, but upstream did not offer STARTTLS"
#define TLS_REFUSED_TEXT "TLS is required, but upstream refused STARTTLS"

/* ---- the transaction's commands --------------------------------------------------- */

enum cmd_kind { CMD_XFORWARD, CMD_MAIL, CMD_RCPT, CMD_DATA, CMD_BDAT };

static enum cmd_kind cmd_kind(const struct smtp_client *c, uint32_t i)
{
	RMX_ASSERT(i < c->cmd_count);
	if (i < c->xforward_commands)
		return CMD_XFORWARD;
	if (i == c->xforward_commands)
		return CMD_MAIL;
	if (i + 1 < c->cmd_count)
		return CMD_RCPT;
	return (c->flags & CF_BDAT) ? CMD_BDAT : CMD_DATA;
}

/* Recipients refused before sending (an address we cannot put on the wire)
 * already hold a code; the RCPT cursors step over them. */
static uint32_t rcpt_skip_refused(const struct smtp_client *c, uint32_t i)
{
	while (i < c->msg->recipient_count && c->rcpt_results[i].code != 0)
		i++;
	return i;
}

/* Builds command number i of the transaction into cmd; returns its length. */
static size_t cmd_build(struct smtp_client *c, uint32_t i, char *cmd, size_t cap)
{
	const struct smtp_client_message *m = c->msg;
	struct smtp_client_line lb = { cmd, 0, cap };
	switch (cmd_kind(c, i)) {
	case CMD_XFORWARD:
		(void)smtp_client_xforward_pack(m->xforward, c->upstream.xforward_attrs, i, &lb);
		break;
	case CMD_MAIL:
		smtp_client_line_str(&lb, "MAIL FROM:<");
		smtp_client_line_put(&lb, m->reverse_path.ptr, m->reverse_path.len);
		smtp_client_line_str(&lb, ">");
		if (c->upstream.caps & SMTP_CAP_SIZE) {
			smtp_client_line_str(&lb, " SIZE=");
			smtp_client_line_u64(&lb, (c->flags & CF_BDAT) ? m->bdat_bytes : m->body_bytes);
		}
		if (m->body_type == SMTP_BODY_8BITMIME)
			smtp_client_line_str(&lb, " BODY=8BITMIME");
		else if (m->body_type == SMTP_BODY_BINARYMIME)
			smtp_client_line_str(&lb, " BODY=BINARYMIME");
		if (m->smtputf8)
			smtp_client_line_str(&lb, " SMTPUTF8");
		smtp_client_line_str(&lb, "\r\n");
		break;
	case CMD_RCPT: {
		uint32_t r = c->rcpt_write_next;
		RMX_ASSERT(r < m->recipient_count);
		smtp_client_line_str(&lb, "RCPT TO:<");
		smtp_client_line_put(&lb, m->recipients[r].ptr, m->recipients[r].len);
		smtp_client_line_str(&lb, ">\r\n");
		break;
	}
	case CMD_DATA:
		smtp_client_line_str(&lb, "DATA\r\n");
		break;
	case CMD_BDAT:
		/* The whole body in one chunk: one command and one reply. */
		smtp_client_line_str(&lb, "BDAT ");
		smtp_client_line_u64(&lb, m->bdat_bytes);
		smtp_client_line_str(&lb, " LAST\r\n");
		break;
	}
	RMX_ASSERT(lb.len > 2 && lb.len < SMTP_CLIENT_COMMAND_MAX_BYTES);
	return lb.len;
}

/* Appends command cmd_written if it fits; false when out is too full. */
RMX_MUST_CHECK static bool cmd_write_next(struct smtp_client *c, struct smtp_out *out)
{
	char cmd[SMTP_CLIENT_COMMAND_MAX_BYTES];
	RMX_ASSERT(c->cmd_written < c->cmd_count);
	size_t n = cmd_build(c, c->cmd_written, cmd, sizeof(cmd));
	if (!smtp_client_out_fits(out, n))
		return false;
	smtp_client_out_put(out, cmd, n);
	enum cmd_kind kind = cmd_kind(c, c->cmd_written);
	if (kind == CMD_RCPT)
		c->rcpt_write_next = rcpt_skip_refused(c, c->rcpt_write_next + 1);
	else if (kind == CMD_BDAT)
		c->flags |= CF_BODY_DUE | CF_BODY_NOW;
	c->cmd_written++;
	return true;
}

/* Pipelined: writes commands until all are out or out is full. A round that
 * finds out too full for even one command writes nothing; the caller sends
 * out and calls feed with n = 0, and the round runs again. */
static void cmd_write_round(struct smtp_client *c, struct smtp_out *out)
{
	while (c->cmd_written < c->cmd_count && cmd_write_next(c, out)) {
	}
}

/* ---- outcomes --------------------------------------------------------------------- */

static bool message_open(const struct smtp_client *c)
{
	return c->msg != NULL;
}

/* The connection ends mid-message: every recipient without a final result
 * (none yet, or a 2xx RCPT still waiting for the end of data) gets r. */
static void message_interrupted(struct smtp_client *c, const struct smtp_client_result *r)
{
	if (!message_open(c))
		return;
	if (c->state == ST_BDAT_HELD) {
		/* The BDAT reply made every result final; only the body's
		 * send was still to be confirmed. */
		c->msg = NULL;
		c->rcpt_results = NULL;
		return;
	}
	for (uint32_t i = 0; i < c->msg->recipient_count; i++) {
		struct smtp_client_result *rr = &c->rcpt_results[i];
		if (rr->code == 0 || rr->code / 100 == 2)
			*rr = *r;
	}
	if (!(c->flags & CF_ABORT))
		c->message_result = *r;
	c->msg = NULL;
	c->rcpt_results = NULL;
}

static enum smtp_client_status client_closed(struct smtp_client *c,
					     const struct smtp_client_result *r)
{
	c->conn_result = *r;
	message_interrupted(c, r);
	c->state = ST_CLOSED;
	return SMTP_CLIENT_CLOSED;
}

static enum smtp_client_status client_failed_with(struct smtp_client *c,
						  const struct smtp_client_result *r)
{
	c->conn_result = *r;
	message_interrupted(c, r);
	c->state = ST_FAILED;
	return SMTP_CLIENT_FAILED;
}

static enum smtp_client_status client_failed(struct smtp_client *c, const char *text)
{
	struct smtp_client_result r;
	smtp_client_result_set(&r, 451, "4.4.0", text);
	return client_failed_with(c, &r);
}

static enum smtp_client_status protocol_error(struct smtp_client *c)
{
	return client_failed(c, "unexpected reply code from upstream");
}

/* RFC 5321 4.5.3.1.x bounds commands, not how many pile up unsent: a
 * command that does not fit means the upstream answered commands the caller
 * has not managed to send. 4.5.0: a protocol violation, retried later. */
static enum smtp_client_status out_full(struct smtp_client *c)
{
	struct smtp_client_result r;
	smtp_client_result_set(&r, 451, "4.5.0", OUT_FULL_TEXT);
	return client_failed_with(c, &r);
}

static enum smtp_client_status message_done(struct smtp_client *c)
{
	c->msg = NULL;
	c->rcpt_results = NULL;
	c->state = ST_DONE;
	return SMTP_CLIENT_MESSAGE_DONE;
}

/* Every recipient not yet refused gets r (MAIL or XFORWARD refused, or a
 * capability the upstream lacks); later replies of the transaction are read
 * but change nothing. */
static void message_abort(struct smtp_client *c, const struct smtp_client_result *r)
{
	for (uint32_t i = 0; i < c->msg->recipient_count; i++) {
		if (c->rcpt_results[i].code == 0)
			c->rcpt_results[i] = *r;
	}
	c->message_result = *r;
	c->flags |= CF_ABORT;
}

/* ---- replies per state ---------------------------------------------------------- */

static enum smtp_client_status status_of(const struct smtp_client *c)
{
	switch ((enum client_state)c->state) {
	case ST_READY:
		return SMTP_CLIENT_READY;
	case ST_SEND_BODY:
		return SMTP_CLIENT_SEND_BODY;
	case ST_TLS_WAIT:
		return SMTP_CLIENT_START_TLS;
	case ST_DONE:
		return SMTP_CLIENT_MESSAGE_DONE;
	case ST_CLOSED:
		return SMTP_CLIENT_CLOSED;
	case ST_FAILED:
		return SMTP_CLIENT_FAILED;
	default:
		return SMTP_CLIENT_WANT_INPUT;
	}
}

/* True when a reply that starts now answers a command we sent. */
static bool reply_expected(const struct smtp_client *c)
{
	switch ((enum client_state)c->state) {
	case ST_GREETING:
	case ST_EHLO:
	case ST_HELO:
	case ST_STARTTLS:
	case ST_DOT:
	case ST_DOT_DISCARD:
	case ST_RSET:
	case ST_QUIT:
		return true;
	case ST_TRANSACTION:
		return c->cmd_replied < c->cmd_written;
	default:
		return false;
	}
}

/* True when a reply that starts now (one is expected) would answer a
 * command written during this feed call, which the caller cannot have sent
 * yet. */
static bool reply_ahead(const struct smtp_client *c)
{
	if (c->flags & CF_UNSENT)
		return true;
	return c->state == ST_TRANSACTION && c->cmd_replied >= c->cmd_unsent_first;
}

static enum smtp_client_status on_greeting(struct smtp_client *c, const struct smtp_client_result *r,
					   struct smtp_out *out)
{
	if (r->code == 220) {
		if (!smtp_client_out_command(out, "EHLO", c->helo_name))
			return out_full(c);
		c->flags |= CF_UNSENT;
		c->state = ST_EHLO;
		return SMTP_CLIENT_WANT_INPUT;
	}
	if (r->code == 554)
		return client_closed(c, r);
	if (r->code / 100 >= 4)
		return client_failed_with(c, r);
	return client_failed(c, "unexpected greeting from upstream");
}

/* 4.7.4: security features not supported (RFC 3463). Retried later. */
static enum smtp_client_status tls_missing(struct smtp_client *c, const char *text)
{
	struct smtp_client_result r;
	smtp_client_result_set(&r, 451, "4.7.4", text);
	return client_failed_with(c, &r);
}

/* EHLO or HELO accepted: STARTTLS first when wanted, else READY. */
static enum smtp_client_status on_hello_accepted(struct smtp_client *c, struct smtp_out *out)
{
	bool offered = c->state == ST_EHLO && (c->upstream.caps & SMTP_CAP_STARTTLS);
	if (c->tls_active || c->tls_mode == SMTP_CLIENT_TLS_NONE ||
	    (!offered && c->tls_mode == SMTP_CLIENT_TLS_OPPORTUNISTIC)) {
		c->state = ST_READY;
		return SMTP_CLIENT_READY;
	}
	if (!offered)
		return tls_missing(c, TLS_NOT_OFFERED_TEXT);
	if (!smtp_client_out_command(out, "STARTTLS", span_make(NULL, 0)))
		return out_full(c);
	c->flags |= CF_UNSENT;
	c->state = ST_STARTTLS;
	return SMTP_CLIENT_WANT_INPUT;
}

static enum smtp_client_status on_hello(struct smtp_client *c, const struct smtp_client_result *r,
					struct smtp_out *out)
{
	if (r->code / 100 == 2)
		return on_hello_accepted(c, out);
	memset(&c->upstream, 0, sizeof(c->upstream));
	if (c->state == ST_EHLO && r->code / 100 == 5) {
		if (!smtp_client_out_command(out, "HELO", c->helo_name))
			return out_full(c);
		c->flags |= CF_UNSENT;
		c->state = ST_HELO;
		return SMTP_CLIENT_WANT_INPUT;
	}
	if (r->code / 100 >= 4)
		return client_failed_with(c, r);
	return protocol_error(c);
}

/* The reply to STARTTLS. 220: nothing more is read in clear. Refused:
 * opportunistic goes on in clear (RFC 3207 4: the client decides), required
 * gives up with a 4xx (the upstream's own when it sent one). */
static enum smtp_client_status on_starttls(struct smtp_client *c, const struct smtp_client_result *r)
{
	if (r->code == 220) {
		c->state = ST_TLS_WAIT;
		return SMTP_CLIENT_START_TLS;
	}
	if (r->code / 100 < 4)
		return protocol_error(c);
	if (c->tls_mode == SMTP_CLIENT_TLS_REQUIRED) {
		if (r->code / 100 == 4)
			return client_failed_with(c, r);
		return tls_missing(c, TLS_REFUSED_TEXT);
	}
	c->state = ST_READY;
	return SMTP_CLIENT_READY;
}

/* The reply that ends the message (after the final dot, or to BDAT LAST)
 * is every accepted recipient's outcome and the message's, unless the
 * transaction was abandoned or no recipient was accepted (then the
 * refusals stand). */
static void final_reply_to_accepted(struct smtp_client *c, const struct smtp_client_result *r)
{
	if ((c->flags & CF_ABORT) || c->rcpt_accepted == 0)
		return;
	for (uint32_t i = 0; i < c->msg->recipient_count; i++) {
		if (c->rcpt_results[i].code / 100 == 2)
			c->rcpt_results[i] = *r;
	}
	c->message_result = *r;
}
/* The reply to DATA. */
static enum smtp_client_status on_data(struct smtp_client *c, const struct smtp_client_result *r,
				       struct smtp_out *out)
{
	if (r->code == 354) {
		if (c->rcpt_accepted == 0) {
			/* RFC 2920 3.1: DATA went out with the batch but no
			 * recipient was accepted; end the empty body. */
			if (!smtp_client_out_fits(out, 3))
				return out_full(c);
			smtp_client_out_put(out, ".\r\n", 3);
			c->flags |= CF_UNSENT;
			c->state = ST_DOT_DISCARD;
			return SMTP_CLIENT_WANT_INPUT;
		}
		if (c->flags & CF_ABORT) {
			/* Recipients are open upstream for a transaction we gave
			 * up: only dropping the connection cancels it. */
			return client_failed(c, "upstream accepted data for an abandoned transaction");
		}
		c->state = ST_SEND_BODY;
		return SMTP_CLIENT_SEND_BODY;
	}
	if (r->code / 100 < 4)
		return protocol_error(c);
	final_reply_to_accepted(c, r);
	return message_done(c);
}

/*
 * The reply to BDAT LAST: the end of the message, as the reply after the
 * final dot is. RFC 3030 section 2: the upstream reads the chunk even when
 * MAIL or every RCPT was refused and answers it with an error; the results
 * those refusals gave stand. A 2xx ends the transaction; after an error
 * RSET follows (what the upstream holds after a failed chunk is not
 * said). The body may still be going out: then MESSAGE_DONE waits for
 * body_sent.
 */
static enum smtp_client_status on_bdat(struct smtp_client *c, const struct smtp_client_result *r)
{
	uint8_t cls = (uint8_t)(r->code / 100);
	if (cls == 3)
		return protocol_error(c);
	final_reply_to_accepted(c, r);
	if (cls == 2)
		c->flags |= CF_TXN_ENDED;
	if (c->flags & CF_BODY_DUE) {
		c->state = ST_BDAT_HELD;
		return SMTP_CLIENT_WANT_INPUT;
	}
	return message_done(c);
}

/* Called after each transaction reply: the next step when nothing else
 * is outstanding. */
static enum smtp_client_status transaction_next(struct smtp_client *c, struct smtp_out *out)
{
	if (c->cmd_replied < c->cmd_written)
		return SMTP_CLIENT_WANT_INPUT;
	if (c->flags & CF_ABORT)
		return message_done(c);
	if (c->flags & CF_PIPELINED) {
		/* The next round goes out when the caller says the last was sent. */
		RMX_ASSERT(c->cmd_written < c->cmd_count);
		return SMTP_CLIENT_WANT_INPUT;
	}
	RMX_ASSERT(c->cmd_written < c->cmd_count);
	enum cmd_kind next = cmd_kind(c, c->cmd_written);
	if ((next == CMD_DATA || next == CMD_BDAT) && c->rcpt_accepted == 0)
		return message_done(c); /* no DATA or BDAT without a recipient */
	if (!cmd_write_next(c, out))
		return out_full(c);
	return SMTP_CLIENT_WANT_INPUT;
}

static enum smtp_client_status on_transaction(struct smtp_client *c,
					      const struct smtp_client_result *r,
					      struct smtp_out *out)
{
	RMX_ASSERT(c->cmd_replied < c->cmd_written);
	enum cmd_kind kind = cmd_kind(c, c->cmd_replied);
	c->cmd_replied++;
	uint8_t cls = (uint8_t)(r->code / 100);
	switch (kind) {
	case CMD_XFORWARD:
		if (c->flags & CF_ABORT)
			break;
		if (r->code != 250) {
			struct smtp_client_result f = *r;
			if (cls < 4)
				smtp_client_result_set(&f, 451, "4.5.0", "unexpected XFORWARD reply from upstream");
			message_abort(c, &f);
		}
		break;
	case CMD_MAIL:
		if (c->flags & CF_ABORT)
			break;
		if (cls == 3)
			return protocol_error(c);
		if (cls != 2)
			message_abort(c, r);
		break;
	case CMD_RCPT: {
		if (cls == 2)
			c->rcpt_accepted++; /* counted even when aborting: see on_data */
		if (c->flags & CF_ABORT)
			break; /* every result is final already */
		uint32_t i = c->rcpt_reply_next;
		RMX_ASSERT(i < c->msg->recipient_count && c->rcpt_results[i].code == 0);
		c->rcpt_reply_next = rcpt_skip_refused(c, i + 1);
		if (cls == 3)
			return protocol_error(c);
		c->rcpt_results[i] = *r;
		if (cls != 2)
			c->message_result = *r; /* the outcome if no recipient is accepted */
		break;
	}
	case CMD_DATA:
		return on_data(c, r, out);
	case CMD_BDAT:
		return on_bdat(c, r);
	}
	return transaction_next(c, out);
}

static enum smtp_client_status on_final(struct smtp_client *c, const struct smtp_client_result *r)
{
	if (r->code / 100 == 3)
		return protocol_error(c);
	for (uint32_t i = 0; i < c->msg->recipient_count; i++) {
		if (c->rcpt_results[i].code / 100 == 2)
			c->rcpt_results[i] = *r;
	}
	c->message_result = *r;
	/* RFC 5321 4.1.1.4: the reply to the end of the mail data ends the
	 * transaction whatever its code; the upstream holds no sender or
	 * recipients, so the next MAIL needs no RSET before it. */
	c->flags |= CF_TXN_ENDED;
	return message_done(c);
}

static enum smtp_client_status on_rset(struct smtp_client *c, const struct smtp_client_result *r)
{
	if (r->code / 100 == 2) {
		c->state = ST_READY;
		return SMTP_CLIENT_READY;
	}
	if (r->code / 100 >= 4)
		return client_failed_with(c, r);
	return protocol_error(c);
}

/* A complete reply: hand it to whoever waits for it. */
static enum smtp_client_status reply_dispatch(struct smtp_client *c, struct smtp_out *out)
{
	const struct smtp_client_result *r = &c->reply;
	c->replies++;
	if (c->flags & CF_UNEXPECTED) {
		c->flags &= (uint16_t)~CF_UNEXPECTED;
		if (r->code == 421)
			return client_closed(c, r);
		return client_failed(c, "unexpected reply from upstream");
	}
	if (c->flags & CF_AHEAD) {
		c->flags &= (uint16_t)~CF_AHEAD;
		if (r->code == 421)
			return client_closed(c, r); /* the upstream may close at any time */
		struct smtp_client_result f;
		smtp_client_result_set(&f, 451, "4.5.0", AHEAD_TEXT);
		return client_failed_with(c, &f);
	}
	if (c->state == ST_QUIT) {
		c->state = ST_CLOSED;
		return SMTP_CLIENT_CLOSED;
	}
	if (r->code == 421)
		return client_closed(c, r);
	switch ((enum client_state)c->state) {
	case ST_GREETING:
		return on_greeting(c, r, out);
	case ST_EHLO:
	case ST_HELO:
		return on_hello(c, r, out);
	case ST_STARTTLS:
		return on_starttls(c, r);
	case ST_TRANSACTION:
		return on_transaction(c, r, out);
	case ST_DOT:
		return on_final(c, r);
	case ST_DOT_DISCARD:
		return message_done(c);
	case ST_RSET:
		return on_rset(c, r);
	default:
		RMX_ASSERT(!"a reply reached a state that expects none");
		return SMTP_CLIENT_FAILED;
	}
}

static enum smtp_client_status malformed(struct smtp_client *c)
{
	return client_failed(c, "malformed reply from upstream");
}

/*
 * A whole reply line is in: folds it into the reply (or, in an EHLO reply,
 * into the capabilities), and dispatches the reply after its last line.
 * Returns the new status.
 */
static enum smtp_client_status line_got(struct smtp_client *c,
					const struct smtp_client_reply_line *line,
					struct smtp_out *out)
{
	if (!line->first && c->state == ST_EHLO && !(c->flags & (CF_UNEXPECTED | CF_AHEAD)))
		smtp_client_caps_add_line(&c->upstream, line->text, line->text_len);
	else
		smtp_client_result_add_line(&c->reply, line);
	if (!line->last) {
		if (line->lines_over_max)
			return malformed(c);
		return status_of(c);
	}
	return reply_dispatch(c, out);
}

static bool client_live(const struct smtp_client *c)
{
	return c->state != ST_CLOSED && c->state != ST_FAILED;
}

/* The status a public call returns: SEND_BODY once, from the call that
 * wrote BDAT (the caller sends the body behind that command), unless the
 * message ended or the connection failed in the same call. */
static enum smtp_client_status status_reported(struct smtp_client *c)
{
	bool body_now = (c->flags & CF_BODY_NOW) != 0;
	c->flags &= (uint16_t)~CF_BODY_NOW;
	enum smtp_client_status st = status_of(c);
	if (body_now && st == SMTP_CLIENT_WANT_INPUT)
		return SMTP_CLIENT_SEND_BODY;
	return st;
}

/* ---- the interface ----------------------------------------------------------------------- */

void smtp_client_init(struct smtp_client *c, struct span helo_name)
{
	RMX_ASSERT(helo_name.len > 0 && helo_name.len <= SMTP_DOMAIN_MAX_BYTES);
	for (size_t i = 0; i < helo_name.len; i++)
		RMX_ASSERT(helo_name.ptr[i] > 0x20 && helo_name.ptr[i] < 0x7f);
	memset(c, 0, sizeof(*c));
	smtp_client_reply_reader_init(&c->reader);
	c->helo_name = helo_name;
	c->state = ST_GREETING;
}

enum smtp_client_status smtp_client_feed(struct smtp_client *c, const uint8_t *p, size_t n,
					 struct smtp_out *out)
{
	RMX_ASSERT(n == 0 || p != NULL);
	RMX_ASSERT(out->len <= out->cap && out->cap >= SMTP_CLIENT_OUT_MIN_BYTES);
	/* Whatever was written before this call may have been sent. */
	c->flags &= (uint16_t)~CF_UNSENT;
	c->cmd_unsent_first = c->cmd_written;
	/* Past the 220 to STARTTLS nothing is read in clear (RFC 3207 5). */
	for (size_t at = 0; at < n && client_live(c) && c->state != ST_TLS_WAIT;) {
		struct smtp_client_reply_line line;
		switch (smtp_client_reply_read(&c->reader, p, n, &at, &line)) {
		case SMTP_CLIENT_REPLY_MORE:
			break;
		case SMTP_CLIENT_REPLY_BEGIN:
			if (!reply_expected(c))
				c->flags |= CF_UNEXPECTED;
			else if (reply_ahead(c))
				c->flags |= CF_AHEAD;
			smtp_client_result_clear(&c->reply);
			break;
		case SMTP_CLIENT_REPLY_LINE:
			(void)line_got(c, &line, out);
			break;
		case SMTP_CLIENT_REPLY_MALFORMED:
			return malformed(c);
		}
	}
	if (c->state == ST_TRANSACTION && n == 0 && (c->flags & CF_PIPELINED) &&
	    !(c->flags & CF_ABORT) && c->cmd_written < c->cmd_count)
		cmd_write_round(c, out);
	return status_reported(c);
}

/* Refuses the whole message before anything is sent. */
static enum smtp_client_status message_refused(struct smtp_client *c, uint16_t code,
					       const char *status, const char *text)
{
	struct smtp_client_result r;
	smtp_client_result_set(&r, code, status, text);
	message_abort(c, &r);
	c->msg = NULL;
	c->rcpt_results = NULL;
	c->flags &= (uint16_t)~CF_ABORT;
	/* Nothing went out: the upstream is still idle. */
	c->state = ST_READY;
	return SMTP_CLIENT_MESSAGE_DONE;
}

enum smtp_client_status smtp_client_start_message(struct smtp_client *c,
						  const struct smtp_client_message *m,
						  struct smtp_client_result *rcpt_results,
						  struct smtp_out *out)
{
	RMX_ASSERT(c->state == ST_READY);
	RMX_ASSERT(m != NULL && rcpt_results != NULL);
	RMX_ASSERT(m->recipient_count >= 1 && m->recipient_count <= SMTP_RECIPIENTS_MAX);
	RMX_ASSERT(out->len <= out->cap && out->cap >= SMTP_CLIENT_OUT_MIN_BYTES);
	c->msg = m;
	c->rcpt_results = rcpt_results;
	c->flags &= (uint16_t)~(CF_ABORT | CF_PIPELINED | CF_TXN_ENDED | CF_BDAT | CF_BODY_DUE |
				CF_BODY_NOW);
	c->cmd_written = 0;
	c->cmd_replied = 0;
	c->rcpt_accepted = 0;
	smtp_client_result_clear(&c->message_result);
	for (uint32_t i = 0; i < m->recipient_count; i++)
		smtp_client_result_clear(&rcpt_results[i]);

	if (m->smtputf8 && !(c->upstream.caps & SMTP_CAP_SMTPUTF8))
		return message_refused(c, 553, "5.6.7", "upstream does not support SMTPUTF8");
	bool chunking = smtp_client_chunking_offered(c);
	if (m->body_type == SMTP_BODY_BINARYMIME) {
		if (!(c->flags & CF_CHUNKING))
			return message_refused(c, 554, "5.6.3",
					       "binary content cannot be relayed: chunking to upstream is off");
		if (!chunking || !(c->upstream.caps & SMTP_CAP_BINARYMIME))
			return message_refused(c, 554, "5.6.3",
					       "binary content cannot be relayed: upstream does not offer "
					       "BINARYMIME and CHUNKING");
	}
	if (m->body_type == SMTP_BODY_8BITMIME && !(c->upstream.caps & SMTP_CAP_8BITMIME))
		return message_refused(c, 554, "5.6.3", "upstream does not support 8BITMIME");
	if ((c->upstream.caps & SMTP_CAP_SIZE) && c->upstream.size_max > 0 &&
	    m->body_bytes > c->upstream.size_max)
		return message_refused(c, 552, "5.3.4", "message too big for upstream");
	if (!smtp_client_path_sendable(m->reverse_path, m->smtputf8))
		return message_refused(c, 553, "5.1.7", "stored sender address cannot be relayed");

	uint32_t sendable = 0;
	for (uint32_t i = 0; i < m->recipient_count; i++) {
		if (smtp_client_path_sendable(m->recipients[i], m->smtputf8) && m->recipients[i].len > 0)
			sendable++;
		else
			smtp_client_result_set(&rcpt_results[i], 553, "5.1.3",
				   "stored recipient address cannot be relayed");
	}
	if (sendable == 0) /* each recipient holds its 553 already */
		return message_refused(c, 553, "5.1.3", "stored recipient address cannot be relayed");
	c->rcpt_write_next = rcpt_skip_refused(c, 0);
	c->rcpt_reply_next = c->rcpt_write_next;
	c->xforward_commands = 0;
	if ((c->upstream.caps & SMTP_CAP_XFORWARD) && m->xforward != NULL)
		c->xforward_commands =
			(uint8_t)smtp_client_xforward_pack(m->xforward, c->upstream.xforward_attrs, 0, NULL);
	c->cmd_count = c->xforward_commands + 1 + sendable + 1;
	if (chunking && (m->body_type == SMTP_BODY_BINARYMIME || !m->data_preferred))
		c->flags |= CF_BDAT;
	c->state = ST_TRANSACTION;
	if (c->upstream.caps & SMTP_CAP_PIPELINING) {
		c->flags |= CF_PIPELINED;
		cmd_write_round(c, out);
	} else if (!cmd_write_next(c, out)) {
		return out_full(c); /* every recipient gets its 4xx */
	}
	return status_reported(c);
}

enum smtp_client_status smtp_client_body_sent(struct smtp_client *c, struct smtp_out *out)
{
	if (!client_live(c))
		return status_of(c); /* a 421 or garbage arrived while the body went out */
	if (c->flags & CF_BDAT) {
		RMX_ASSERT(c->flags & CF_BODY_DUE);
		c->flags &= (uint16_t)~CF_BODY_DUE;
		if (c->state == ST_BDAT_HELD)
			return message_done(c);
		RMX_ASSERT(c->state == ST_TRANSACTION);
		return SMTP_CLIENT_WANT_INPUT;
	}
	RMX_ASSERT(c->state == ST_SEND_BODY);
	if (!smtp_client_out_fits(out, 3))
		return out_full(c);
	smtp_client_out_put(out, ".\r\n", 3);
	c->state = ST_DOT;
	return SMTP_CLIENT_WANT_INPUT;
}

const struct smtp_client_result *smtp_client_message_result(const struct smtp_client *c)
{
	return &c->message_result;
}

enum smtp_client_status smtp_client_rset(struct smtp_client *c, struct smtp_out *out)
{
	RMX_ASSERT(c->state == ST_DONE || c->state == ST_READY);
	if (!smtp_client_out_command(out, "RSET", span_make(NULL, 0)))
		return out_full(c);
	c->state = ST_RSET;
	return SMTP_CLIENT_WANT_INPUT;
}

enum smtp_client_status smtp_client_next(struct smtp_client *c, struct smtp_out *out)
{
	RMX_ASSERT(c->state == ST_DONE || c->state == ST_READY);
	if (c->state == ST_READY || (c->flags & CF_TXN_ENDED)) {
		c->state = ST_READY;
		return SMTP_CLIENT_READY;
	}
	return smtp_client_rset(c, out);
}

enum smtp_client_status smtp_client_quit(struct smtp_client *c, struct smtp_out *out)
{
	RMX_ASSERT(c->state == ST_DONE || c->state == ST_READY);
	if (!smtp_client_out_command(out, "QUIT", span_make(NULL, 0)))
		return out_full(c);
	c->state = ST_QUIT;
	return SMTP_CLIENT_WANT_INPUT;
}

const struct smtp_client_result *smtp_client_conn_result(const struct smtp_client *c)
{
	return &c->conn_result;
}

enum smtp_client_status smtp_client_connection_lost(struct smtp_client *c, const char *why)
{
	RMX_ASSERT(why != NULL && why[0] != '\0');
	if (!client_live(c))
		return status_of(c);
	if (c->state == ST_QUIT) {
		c->state = ST_CLOSED;
		return SMTP_CLIENT_CLOSED;
	}
	struct smtp_client_result r;
	smtp_client_result_set(&r, 451, "4.4.2", why);
	return client_failed_with(c, &r);
}

void smtp_client_set_chunking(struct smtp_client *c, bool enabled)
{
	RMX_ASSERT(c->state == ST_GREETING && c->replies == 0);
	if (enabled)
		c->flags |= CF_CHUNKING;
	else
		c->flags &= (uint16_t)~CF_CHUNKING;
}

bool smtp_client_chunking_offered(const struct smtp_client *c)
{
	return (c->flags & CF_CHUNKING) && (c->upstream.caps & SMTP_CAP_CHUNKING);
}

bool smtp_client_body_by_bdat(const struct smtp_client *c)
{
	return c->msg != NULL && (c->flags & CF_BDAT);
}

void smtp_client_set_tls(struct smtp_client *c, enum smtp_client_tls mode)
{
	RMX_ASSERT(c->state == ST_GREETING && c->replies == 0);
	RMX_ASSERT(mode <= SMTP_CLIENT_TLS_REQUIRED);
	c->tls_mode = (uint8_t)mode;
}

enum smtp_client_status smtp_client_tls_started(struct smtp_client *c, struct smtp_out *out)
{
	RMX_ASSERT(c->state == ST_TLS_WAIT);
	RMX_ASSERT(out->len <= out->cap && out->cap >= SMTP_CLIENT_OUT_MIN_BYTES);
	c->tls_active = true;
	memset(&c->upstream, 0, sizeof(c->upstream));
	smtp_client_reply_reader_init(&c->reader);
	smtp_client_result_clear(&c->reply);
	if (!smtp_client_out_command(out, "EHLO", c->helo_name))
		return out_full(c);
	c->state = ST_EHLO;
	return SMTP_CLIENT_WANT_INPUT;
}

enum smtp_client_status smtp_client_tls_failed(struct smtp_client *c, const char *why)
{
	RMX_ASSERT(why != NULL && why[0] != '\0');
	RMX_ASSERT(c->state == ST_TLS_WAIT);
	struct smtp_client_result r;
	smtp_client_result_set(&r, 451, "4.7.5", why);
	return client_failed_with(c, &r);
}

bool smtp_client_tls_active(const struct smtp_client *c)
{
	return c->tls_active;
}

uint32_t smtp_client_replies(const struct smtp_client *c)
{
	return c->replies;
}

uint32_t smtp_client_caps(const struct smtp_client *c)
{
	return c->upstream.caps;
}

