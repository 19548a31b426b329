/*
 * forward_upstream.c - the upstream side of a forwarder slot: one
 * connection to a relay and at most one message on it.
 *
 *   IDLE --connect--> CONNECTING --ok--> SESSION (smtp_client: greeting,
 *   EHLO, READY, message, RSET, READY, ...) --QUIT / failure--> CLOSING --> IDLE
 *
 * The client writes the commands into out; the body goes out verbatim from
 * the record buffer, or, when it fits, copied into out so that it and the
 * final dot make one send (slot_body_coalesce). By BDAT (an upstream that
 * offers CHUNKING, upstream_chunking = yes) the body goes unstuffed: the
 * runs of stored bytes between stuffed dots are sent from the record
 * buffer one after another (no copy, the record untouched: a DSN still
 * quotes it in DATA wire form), or, when it fits, copied unstuffed into
 * out behind the BDAT command. A text body with more than
 * FORWARD_BDAT_DOT_LINES_MAX lines that begin with '.' goes by DATA
 * instead: one send beats many. The socket is reached only through the slot's
 * transport (transport.h), as a client connection's is: replies arrive in
 * the worker's provided buffers and pass through the transport's input
 * before smtp_client reads them. At most one send and one receive are in
 * flight per slot. Every wait for the upstream has the upstream_timeout
 * deadline (forward_tick enforces it); a relay that refuses connections or the
 * session is marked down for FORWARD_UPSTREAM_DOWN_MS and the next one in
 * the list is tried. What the attempt's outcomes become is
 * forward_attempt.c's business.
 *
 * STARTTLS (upstream_tls): when smtp_client says START_TLS, the slot's
 * transport becomes TLS (a wolfSSL client over the same buffers; SNI and,
 * with upstream_ca, the verified name are the upstream's configured NAME)
 * and the handshake runs through the transport's input and sends; once it
 * is done the client sends EHLO again. A failed handshake ends the
 * connection: with upstream_tls = opportunistic and no upstream_ca, the
 * same relay is tried again at once in clear, and for FORWARD_TLS_CLEAR_MS
 * after (Postfix's "may" does the same); otherwise the mail is deferred.
 */
#include "forward_upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "forward_attempt.h"
#include "metrics.h"
#include "tls.h"

/* A text body with more lines that begin with '.' than this goes by DATA:
 * each such line starts another run, another send, and past a few dozen
 * sends cost more than DATA's one send and extra round trip. A BINARYMIME
 * body has no choice. */
#define FORWARD_BDAT_DOT_LINES_MAX 32

/* ---- sending and receiving -------------------------------------------------- */

static void slot_arm_deadline(struct forward *f, struct forward_slot *s)
{
	s->deadline_ms = f->now_ms + (uint64_t)f->env.cfg->upstream_timeout_s * 1000u;
}

static struct transport_env slot_tp_env(const struct forward *f)
{
	return (struct transport_env){ .ring = f->env.ring, .buf_group = f->env.bufs->bgid };
}

static void slot_arm_recv(struct forward *f, struct forward_slot *s)
{
	if (s->recv_inflight || s->state != SLOT_SESSION)
		return;
	struct transport_env env = slot_tp_env(f);
	s->tp.ops->arm_recv(&env, &s->tp, false, slot_ud(RING_OP_FWD_RECV, s));
	s->recv_inflight = true;
	s->recv_rearm = false;
}

/* Sends what is due: the commands in out first, then the body; with
 * neither, what the TLS transport has to send by itself (a handshake
 * flight). Nothing of ours goes out before the handshake is done. */
static void slot_flush(struct forward *f, struct forward_slot *s)
{
	if (s->send_inflight || s->state != SLOT_SESSION)
		return;
	const void *p;
	size_t n;
	if (s->tls_handshaking) {
		if (!s->tp.ops->send_pending(&s->tp))
			return;
		p = NULL;
		n = 0;
		s->body_sending = false;
		s->send_bytes = 0;
	} else if (s->out.len) {
		p = s->out.buf;
		n = s->out.len;
		s->body_sending = false;
		s->send_bytes = (uint32_t)n;
	} else if (s->body_pending) {
		RMX_ASSERT(s->body_sent_bytes < s->view.body.len);
		size_t end = s->view.body.len;
		if (s->body_bdat) {
			size_t start;
			end = smtp_bdat_run(s->view.body, s->body_sent_bytes, &start);
			RMX_ASSERT(start < end); /* slot_body_done said more is due */
			s->body_sent_bytes = start;
			s->body_run_end = end;
		}
		p = s->view.body.ptr + s->body_sent_bytes;
		n = RMX_MIN(end - s->body_sent_bytes, (size_t)(1u << 30));
		s->body_sending = true;
	} else if (s->tp.ops->send_pending(&s->tp)) {
		p = NULL;
		n = 0;
		s->body_sending = false;
		s->send_bytes = 0;
	} else {
		return;
	}
	struct transport_env env = slot_tp_env(f);
	s->tp.ops->send(&env, &s->tp, p, n, slot_ud(RING_OP_FWD_SEND, s));
	s->send_inflight = true;
	slot_arm_deadline(f, s);
}

/* ---- STARTTLS ------------------------------------------------------------------ */

static void slot_tls_count(struct forward *f, struct forward_slot *s,
			   enum metrics_upstream_tls_result result)
{
	if (s->tls_counted)
		return;
	s->tls_counted = true;
	metrics_inc(&f->env.metrics->upstream_tls[result]);
}

/* The handshake failed (why: the transport's token, "peer_closed", ...). */
static void slot_tls_failed(struct forward *f, struct forward_slot *s, const char *why)
{
	const struct config *cfg = f->env.cfg;
	s->tls_handshaking = false;
	slot_tls_count(f, s, METRICS_UPSTREAM_TLS_FAILED);
	bool clear_retry = s->tls_mode == SMTP_CLIENT_TLS_OPPORTUNISTIC && !cfg->upstream_ca[0];
	struct log_msg lm;
	if (log_begin(&lm, LOG_WARN, "upstream_tls_failed")) {
		log_add_u64(&lm, "worker", f->env.worker);
		log_add_str(&lm, "upstream", cfg->upstream[s->upstream].text);
		if (cfg->upstream_name[s->upstream][0])
			log_add_str(&lm, "name", cfg->upstream_name[s->upstream]);
		log_add_str(&lm, "error", why);
		log_add_str(&lm, "next", clear_retry ? "retry_in_clear" : "defer");
		log_end(&lm);
	}
	if (clear_retry) {
		f->upstream_clear_until_ms[s->upstream] = f->now_ms + FORWARD_TLS_CLEAR_MS;
		s->tls_clear_retry = true;
	}
	char text[SMTP_CLIENT_REPLY_TEXT_MAX_BYTES];
	snprintf(text, sizeof(text), "TLS handshake with upstream failed: %s", why);
	forward_upstream_drive(f, s, smtp_client_tls_failed(&s->client, text));
}

static void slot_tls_established(struct forward *f, struct forward_slot *s)
{
	const struct config *cfg = f->env.cfg;
	s->tls_handshaking = false;
	struct transport_tls_facts facts;
	transport_tls_describe(&s->tp, &facts);
	snprintf(s->tls_version, sizeof(s->tls_version), "%s", facts.version);
	snprintf(s->tls_cipher, sizeof(s->tls_cipher), "%s", facts.cipher);
	bool verified = cfg->upstream_ca[0] != '\0';
	slot_tls_count(f, s, verified ? METRICS_UPSTREAM_TLS_VERIFIED
				      : METRICS_UPSTREAM_TLS_UNVERIFIED);
	struct log_msg lm;
	if (log_begin(&lm, LOG_INFO, "upstream_tls")) {
		log_add_u64(&lm, "worker", f->env.worker);
		log_add_str(&lm, "upstream", cfg->upstream[s->upstream].text);
		if (cfg->upstream_name[s->upstream][0])
			log_add_str(&lm, "name", cfg->upstream_name[s->upstream]);
		log_add_str(&lm, "version", s->tls_version);
		log_add_str(&lm, "cipher", s->tls_cipher);
		log_add_str(&lm, "verified", verified ? "yes" : "no");
		log_end(&lm);
	}
	forward_upstream_drive(f, s, smtp_client_tls_started(&s->client, &s->out));
}

/* The 220 to STARTTLS is in and nothing of ours is in flight: the
 * transport becomes TLS and sends the ClientHello. */
static void slot_start_tls(struct forward *f, struct forward_slot *s)
{
	if (s->send_inflight || s->out.len) {
		s->tls_start_pending = true; /* the STARTTLS line's send completes first */
		slot_flush(f, s);
		return;
	}
	s->tls_start_pending = false;
	const char *name = f->env.cfg->upstream_name[s->upstream];
	if (transport_tls_attach(&s->tp, f->tls_client, NULL, 0, name[0] ? name : NULL) != 0) {
		slot_tls_failed(f, s, "out_of_memory");
		return;
	}
	s->tls_handshaking = true;
	slot_flush(f, s);
	slot_arm_recv(f, s);
	slot_arm_deadline(f, s);
}

/* Input arrived while the handshake runs: it went on, finished or failed. */
static void slot_tls_progress(struct forward *f, struct forward_slot *s)
{
	switch (transport_tls_status(&s->tp)) {
	case TRANSPORT_TLS_HANDSHAKE:
		slot_flush(f, s);
		slot_arm_recv(f, s);
		return;
	case TRANSPORT_TLS_FAILED:
		slot_tls_failed(f, s, transport_tls_failure(&s->tp));
		return;
	case TRANSPORT_TLS_ESTABLISHED:
		/* Plaintext that came with the handshake's end was sent before
		 * our EHLO: it answers nothing and is not read. */
		slot_tls_established(f, s);
		return;
	}
}

void forward_upstream_start_message(struct forward *f, struct forward_slot *s)
{
	RMX_ASSERT(s->msg && s->msg_loaded && !s->msg_started && s->client_ready);
	s->client_ready = false;
	s->msg_started = true;
	s->body_sent_bytes = 0;
	s->body_bdat = false;
	f->stats.attempts++;
	if (smtp_client_chunking_offered(&s->client)) {
		/* One scan for lines that begin with '.': BDAT's size. */
		struct smtp_bdat_size z = smtp_bdat_measure(s->view.body);
		s->fm.cm.bdat_bytes = z.bytes;
		s->fm.cm.data_preferred = z.runs > FORWARD_BDAT_DOT_LINES_MAX + 1;
	}
	enum smtp_client_status st =
		smtp_client_start_message(&s->client, &s->fm.cm, s->fm.results, &s->out);
	forward_upstream_drive(f, s, st);
}

/* A body that fits goes into out behind what is queued there: it and the
 * final dot smtp_client_body_sent appends then leave in one send, and reach
 * the relay in one segment, instead of a send for the body and another for
 * the dot. Copying a few KiB costs less than a send and the relay's second
 * read. out keeps the room of a command line free (SMTP_CLIENT_OUT_MIN_BYTES:
 * the client may write one before the send completes). A larger body is
 * sent from the record buffer as it is. */
static bool slot_body_coalesce(struct forward_slot *s)
{
	size_t n = s->body_bdat ? (size_t)s->fm.cm.bdat_bytes : s->view.body.len;
	RMX_ASSERT(s->out.len <= s->out.cap);
	if (n + 3 + SMTP_CLIENT_OUT_MIN_BYTES > s->out.cap - s->out.len)
		return false;
	if (s->body_bdat)
		n = smtp_bdat_copy(s->view.body, s->out.buf + s->out.len, s->out.cap - s->out.len);
	else
		memcpy(s->out.buf + s->out.len, s->view.body.ptr, n);
	s->out.len += n;
	return true;
}

/* Whether every body byte due from body_sent_bytes on has been sent (by
 * BDAT, a stuffed dot left at the end is no byte of the message). */
static bool slot_body_done(const struct forward_slot *s)
{
	if (!s->body_bdat)
		return s->body_sent_bytes == s->view.body.len;
	size_t start;
	size_t end = smtp_bdat_run(s->view.body, s->body_sent_bytes, &start);
	return start == end;
}

/* Acts on what the client says. */
void forward_upstream_drive(struct forward *f, struct forward_slot *s,
			    enum smtp_client_status st)
{
	switch (st) {
	case SMTP_CLIENT_WANT_INPUT:
		slot_flush(f, s);
		slot_arm_recv(f, s);
		slot_arm_deadline(f, s);
		return;
	case SMTP_CLIENT_READY:
		if (s->tls_mode != SMTP_CLIENT_TLS_NONE && !smtp_client_tls_active(&s->client))
			slot_tls_count(f, s, METRICS_UPSTREAM_TLS_NOT_OFFERED);
		s->client_ready = true;
		s->idle_since_ms = f->now_ms;
		s->deadline_ms = 0;
		slot_flush(f, s);
		slot_arm_recv(f, s); /* notices an upstream that closes an idle link */
		if (s->quitting) {
			s->client_ready = false;
			forward_upstream_drive(f, s, smtp_client_quit(&s->client, &s->out));
			return;
		}
		if (s->msg && s->msg_loaded && !s->msg_started)
			forward_upstream_start_message(f, s);
		return;
	case SMTP_CLIENT_SEND_BODY:
		s->body_bdat = smtp_client_body_by_bdat(&s->client);
		s->body_sent_bytes = 0;
		if (slot_body_coalesce(s)) {
			forward_upstream_drive(f, s, smtp_client_body_sent(&s->client, &s->out));
			return;
		}
		s->body_pending = !slot_body_done(s);
		if (!s->body_pending) {
			forward_upstream_drive(f, s, smtp_client_body_sent(&s->client, &s->out));
			return;
		}
		slot_flush(f, s);
		return;
	case SMTP_CLIENT_START_TLS:
		slot_start_tls(f, s);
		return;
	case SMTP_CLIENT_MESSAGE_DONE:
		forward_attempt_results(f, s);
		forward_upstream_drive(f, s, smtp_client_next(&s->client, &s->out));
		return;
	case SMTP_CLIENT_CLOSED:
	case SMTP_CLIENT_FAILED: {
		const struct smtp_client_result *why = smtp_client_conn_result(&s->client);
		/* The client settled every recipient. While body bytes are in
		 * flight from the record buffer, the results wait for the close
		 * (forward_upstream_close reports them once the send is back),
		 * so the buffer outlives the send. */
		if (s->msg && s->msg_started && !s->dsn.active && !(s->send_inflight && s->body_sending))
			forward_attempt_results(f, s);
		if (strcmp(why->status, "4.7.4") == 0) /* required: no STARTTLS, or refused */
			slot_tls_count(f, s, METRICS_UPSTREAM_TLS_NOT_OFFERED);
		struct log_msg lm;
		if (st == SMTP_CLIENT_FAILED && log_begin(&lm, LOG_WARN, "upstream_failed")) {
			log_add_u64(&lm, "worker", f->env.worker);
			log_add_str(&lm, "upstream", f->env.cfg->upstream[s->upstream].text);
			log_add_reply(&lm, why->code, why->status, why->text);
			log_end(&lm);
		}
		slot_flush(f, s); /* a QUIT still queued goes out before the close */
		forward_upstream_close(f, s);
		return;
	}
	}
}

/* ---- connections ------------------------------------------------------------ */

/* The upstream to try next: first in order that is not marked down and not
 * tried by this attempt; then any not tried. -1 when all were tried. */
static int pick_upstream(const struct forward *f, uint32_t tried_mask)
{
	for (int pass = 0; pass < 2; pass++)
		for (uint32_t i = 0; i < f->env.cfg->upstream_count; i++) {
			if (tried_mask & (1u << i))
				continue;
			if (pass == 0 && f->upstream_down_until_ms[i] > f->now_ms)
				continue;
			return (int)i;
		}
	return -1;
}

void forward_upstream_connect(struct forward *f, struct forward_slot *s)
{
	int u = pick_upstream(f, s->tried_mask);
	if (u < 0) {
		s->tried_mask = 0;
		s->state = SLOT_IDLE;
		if (s->msg && s->msg_loaded && !s->dsn.active) {
			log_info("event=forward_deferred worker=%u reason=\"no upstream relay "
				 "reachable\"", f->env.worker);
			forward_attempt_fail_all(f, s, QUEUE_OUTCOME_TEMPFAIL, 451, "4.4.1");
		}
		return;
	}
	const struct listen_addr *a = &f->env.cfg->upstream[u];
	int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error("event=upstream_socket_failed worker=%u errno=%s", f->env.worker, log_errno_name(errno));
		s->tried_mask |= 1u << u;
		forward_upstream_connect(f, s);
		return;
	}
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	transport_plain_attach(&s->tp, fd);
	s->upstream = (uint32_t)u;
	s->tried_mask |= 1u << u;
	s->state = SLOT_CONNECTING;
	s->gen = (s->gen + 1) & 0xffffffu;
	struct io_uring_sqe *sqe = ring_sqe(f->env.ring);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&a->addr, a->addr_len);
	io_uring_sqe_set_data64(sqe, slot_ud(RING_OP_FWD_CONNECT, s));
	s->connect_inflight = true;
	slot_arm_deadline(f, s);
}

void forward_upstream_on_connect(struct forward *f, struct forward_slot *s, int res)
{
	s->connect_inflight = false;
	if (s->state == SLOT_CLOSING) {
		forward_upstream_close(f, s); /* timed out or drained while connecting */
		return;
	}
	RMX_ASSERT(s->state == SLOT_CONNECTING);
	if (res < 0) {
		log_warn("event=upstream_connect_failed worker=%u upstream=%s error=%s",
			 f->env.worker, f->env.cfg->upstream[s->upstream].text, log_errno_name(res));
		f->upstream_down_until_ms[s->upstream] = f->now_ms + FORWARD_UPSTREAM_DOWN_MS;
		f->stats.upstream_up_mask &= ~(1u << s->upstream);
		metrics_set(&f->env.metrics->upstream_up[s->upstream], 0);
		s->tp.ops->close(&s->tp);
		forward_upstream_connect(f, s); /* the next relay in the list */
		return;
	}
	f->upstream_down_until_ms[s->upstream] = 0;
	f->stats.upstream_up_mask |= 1u << s->upstream;
	metrics_set(&f->env.metrics->upstream_up[s->upstream], 1);
	s->state = SLOT_SESSION;
	s->connected_ms = f->now_ms;
	s->quitting = false;
	s->client_ready = false;
	s->out.buf = s->out_buf;
	s->out.len = 0;
	s->out.cap = sizeof(s->out_buf);
	const char *helo = f->env.cfg->upstream_helo;
	smtp_client_init(&s->client, span_make(helo, strlen(helo)));
	smtp_client_set_chunking(&s->client, f->env.cfg->upstream_chunking);
	enum smtp_client_tls mode = (enum smtp_client_tls)f->env.cfg->upstream_tls;
	if (mode == SMTP_CLIENT_TLS_OPPORTUNISTIC &&
	    f->upstream_clear_until_ms[s->upstream] > f->now_ms)
		mode = SMTP_CLIENT_TLS_NONE; /* its handshake failed lately */
	smtp_client_set_tls(&s->client, mode);
	s->tls_mode = (uint8_t)mode;
	s->tls_counted = false;
	s->tls_start_pending = false;
	s->tls_handshaking = false;
	s->tls_clear_retry = false;
	s->tls_version[0] = '\0';
	s->tls_cipher[0] = '\0';
	slot_arm_recv(f, s);
	slot_arm_deadline(f, s);
}

/* Stops the slot's connection; the slot is IDLE once nothing is in flight. */
void forward_upstream_close(struct forward *f, struct forward_slot *s)
{
	if (s->state == SLOT_SESSION || s->state == SLOT_CONNECTING) {
		s->state = SLOT_CLOSING;
		/* Ends the receive in flight; -ENOTCONN (the peer is gone, or
		 * the connect never finished) leaves nothing to stop. */
		int rc = s->tp.ops->shutdown(&s->tp, TRANSPORT_SHUTDOWN_BOTH);
		if (rc != 0 && rc != -ENOTCONN)
			log_debug("event=upstream_shutdown_failed worker=%u errno=%s",
				  f->env.worker, log_errno_name(rc));
	}
	if (s->state != SLOT_CLOSING || s->recv_inflight || s->send_inflight || s->connect_inflight)
		return;
	s->tp.ops->close(&s->tp);
	s->state = SLOT_IDLE;
	s->quitting = false; /* the QUIT was for that connection, not the slot */
	s->recv_rearm = false;
	s->tls_start_pending = false;
	if (s->tls_handshaking) { /* timed out, or drained, mid-handshake */
		s->tls_handshaking = false;
		slot_tls_count(f, s, METRICS_UPSTREAM_TLS_FAILED);
	}
	s->client_ready = false;
	s->deadline_ms = 0;
	s->body_pending = false;
	s->out.len = 0;
	if (s->msg && !s->dsn.active && s->msg_loaded && s->msg_started)
		forward_attempt_connection_lost(f, s, "lost connection with upstream");
	if (s->msg && !s->dsn.active && s->msg_loaded && !s->msg_started) {
		/* The session ended before the message could start (greeting
		 * refused, EHLO failed...): that relay is not serving; the next one
		 * in the list gets the message, and when none is left the attempt
		 * has failed and is retried later. An opportunistic handshake
		 * that failed is no refusal: the same relay again, in clear. */
		if (s->tls_clear_retry && !f->draining) {
			s->tls_clear_retry = false;
			s->tried_mask &= ~(1u << s->upstream);
			forward_upstream_connect(f, s);
			return;
		}
		f->upstream_down_until_ms[s->upstream] = f->now_ms + FORWARD_UPSTREAM_DOWN_MS;
		metrics_set(&f->env.metrics->upstream_up[s->upstream], 0);
		if (!f->draining && pick_upstream(f, s->tried_mask) >= 0) {
			forward_upstream_connect(f, s);
			return;
		}
		const struct smtp_client_result *why = smtp_client_conn_result(&s->client);
		bool temp = why->code >= 400 && why->code < 500;
		s->tried_mask = 0;
		forward_attempt_fail_all(f, s, QUEUE_OUTCOME_TEMPFAIL, temp ? why->code : 451,
					 temp ? why->status : "4.4.2");
	}
}

/* Hands a received buffer's bytes through the transport to the client. */
static void slot_input(struct forward *f, struct forward_slot *s, const uint8_t *p, size_t n)
{
	/* The deadline moves with whole replies (and with our sends), not with
	 * every byte: an upstream that trickles a reply line cannot hold the
	 * slot past upstream_timeout. */
	uint32_t replies = smtp_client_replies(&s->client);
	uint64_t deadline_ms = s->deadline_ms;
	bool sending = s->send_inflight;
	const uint8_t *plain;
	size_t plain_bytes = s->tp.ops->input(&s->tp, p, n, &plain);
	if (s->tls_handshaking) {
		slot_tls_progress(f, s);
		return;
	}
	if (s->tp.ops == &transport_tls && transport_tls_status(&s->tp) == TRANSPORT_TLS_FAILED) {
		char why[SMTP_CLIENT_REPLY_TEXT_MAX_BYTES];
		snprintf(why, sizeof(why), "TLS session with upstream ended: %s",
			 transport_tls_failure(&s->tp));
		forward_attempt_connection_lost(f, s, why);
		forward_upstream_close(f, s);
		return;
	}
	if (plain_bytes == 0) {
		/* A TLS record without data for us (a session ticket): nothing
		 * for the client, whatever state it is in; the deadline stays. */
		slot_flush(f, s);
		slot_arm_recv(f, s);
		s->deadline_ms = deadline_ms;
		return;
	}
	forward_upstream_drive(f, s, smtp_client_feed(&s->client, plain, plain_bytes, &s->out));
	if (smtp_client_replies(&s->client) == replies && s->state == SLOT_SESSION &&
	    deadline_ms != 0 && s->send_inflight == sending)
		s->deadline_ms = deadline_ms;
}

void forward_upstream_on_recv(struct forward *f, struct forward_slot *s,
			      const struct io_uring_cqe *cqe)
{
	s->recv_inflight = false;
	int res = cqe->res;
	struct buf_ring *bufs = f->env.bufs;
	uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	if (s->state != SLOT_SESSION) {
		if (cqe->flags & IORING_CQE_F_BUFFER)
			buf_ring_return(bufs, bid);
		forward_upstream_close(f, s);
		return;
	}
	if (res == -ENOBUFS) {
		s->recv_rearm = true; /* forward_tick asks again once buffers are back */
		metrics_inc(&f->env.metrics->buffer_ring_enobufs);
		return;
	}
	if (res <= 0) {
		if (cqe->flags & IORING_CQE_F_BUFFER)
			buf_ring_return(bufs, bid);
		if (s->tls_handshaking) {
			slot_tls_failed(f, s, res == 0 ? "peer_closed" : "receive_failed");
			return;
		}
		forward_attempt_connection_lost(f, s, res == 0 ? "upstream closed the connection"
							       : "receive from upstream failed");
		forward_upstream_close(f, s);
		return;
	}
	RMX_ASSERT(cqe->flags & IORING_CQE_F_BUFFER); /* bytes come in a provided buffer */
	slot_input(f, s, buf_ring_addr(bufs, bid), (size_t)res);
	buf_ring_return(bufs, bid);
}

void forward_upstream_recv_again(struct forward *f, struct forward_slot *s)
{
	if (s->recv_rearm && s->state == SLOT_SESSION)
		slot_arm_recv(f, s);
}

void forward_upstream_on_send(struct forward *f, struct forward_slot *s, int res)
{
	/* The transport says how much of our bytes went: a TLS send may go
	 * on under the same user_data (a short send's rest). */
	struct transport_env env = slot_tp_env(f);
	int64_t done = s->tp.ops->send_done(&env, &s->tp, res, slot_ud(RING_OP_FWD_SEND, s));
	if (done == -EINPROGRESS)
		return;
	s->send_inflight = false;
	if (s->state != SLOT_SESSION) {
		forward_upstream_close(f, s);
		return;
	}
	/* A send of transport bytes only (a handshake flight) carries none of ours. */
	bool carried = s->body_sending || s->send_bytes > 0;
	if (done < 0 || (done == 0 && carried)) {
		if (s->tls_handshaking) {
			slot_tls_failed(f, s, "send_failed");
			return;
		}
		forward_attempt_connection_lost(f, s, "send to upstream failed");
		forward_upstream_close(f, s);
		return;
	}
	if (s->tls_start_pending) {
		RMX_ASSERT((size_t)done <= s->out.len);
		memmove(s->out.buf, s->out.buf + done, s->out.len - (size_t)done);
		s->out.len -= (size_t)done;
		slot_start_tls(f, s);
		return;
	}
	if (!carried) {
		slot_flush(f, s); /* more of the handshake, or what waited for it */
		return;
	}
	res = (int)done;
	if (s->body_sending) {
		s->body_sent_bytes += (size_t)res;
		RMX_ASSERT(!s->body_bdat || s->body_sent_bytes <= s->body_run_end);
		if (slot_body_done(s)) {
			s->body_pending = false;
			forward_upstream_drive(f, s, smtp_client_body_sent(&s->client, &s->out));
			return;
		}
	} else {
		RMX_ASSERT((size_t)res <= s->send_bytes && s->send_bytes <= s->out.len);
		memmove(s->out.buf, s->out.buf + res, s->out.len - (size_t)res);
		s->out.len -= (size_t)res;
		if (s->out.len == 0 && s->msg_started && !s->body_pending) {
			/* A pipelined message too big for out goes in rounds: the
			 * client appends the next one now that out is empty. */
			forward_upstream_drive(f, s,
					       smtp_client_feed(&s->client, NULL, 0, &s->out));
			return;
		}
	}
	slot_flush(f, s);
}
