/*
 * smtp_conn.c - the SMTP connections of one worker: accept, receive, feed
 * the pure session, send its replies, lingering close, deadlines, the carry
 * buffer and back-pressure (DESIGN.md rules 3 and 7).
 *
 * Receive buffers come from the provided buffer ring and go back to it as
 * soon as the session has consumed them; a partial command line, or input
 * that must wait, is carried per connection. At most one send is in flight
 * per connection; the replies produced by one read go out in one send.
 * Every receive, send, shutdown and close goes through the connection's
 * transport (transport.h). The slab is one calloc'd array: untouched slots
 * cost no resident memory; generations increase on every release, so
 * (slot, gen) names one owner.
 */
#include "smtp_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "../proto/smtp_reply.h"
#include "front.h"
#include "log.h"
#include "metrics.h"
#include "smtp_conn_auth.h"
#include "smtp_conn_proxy.h"
#include "tls.h"
#include "worker.h"

static void conn_pump_input(struct smtp_conns *sc, struct conn *c, size_t bytes_in);
static void conn_screen_record(struct smtp_conns *sc, struct conn *c, bool paused);
static void reject_connection(struct smtp_conns *sc, int fd, enum smtp_refusal why);
static bool conn_tls_start(struct smtp_conns *sc, struct conn *c, const uint8_t *clear,
			   size_t clear_len);

/* ---- the slab and the carry buffer ------------------------------------------ */

int conn_slab_init(struct conn_slab *s, uint32_t cap)
{
	memset(s, 0, sizeof(*s));
	s->conns = calloc(cap, sizeof(*s->conns));
	if (!s->conns)
		return -ENOMEM;
	s->cap = cap;
	s->free_head = CONN_NONE;
	return 0;
}

void conn_slab_free(struct conn_slab *s)
{
	free(s->conns);
	memset(s, 0, sizeof(*s));
}

struct conn *conn_alloc(struct conn_slab *s)
{
	struct conn *c;
	if (s->free_head != CONN_NONE) {
		c = &s->conns[s->free_head];
		s->free_head = c->next;
	} else if (s->high_water < s->cap) {
		c = &s->conns[s->high_water++];
	} else {
		return NULL;
	}
	RMX_ASSERT(!(c->flags & CONN_USED));
	uint32_t gen = c->gen;
	memset(c, 0, sizeof(*c));
	c->gen = (gen + 1) & 0xffffffu;
	c->flags = CONN_USED;
	c->tp.fd = -1;
	c->next = CONN_NONE;
	c->rearm_next = CONN_NONE;
	c->cfg_snapshot = -1;
	c->client.slot = CLIENT_REF_NONE;
	s->used++;
	return c;
}

void conn_release(struct conn_slab *s, struct conn *c)
{
	RMX_ASSERT((c->flags & CONN_USED) && s->used > 0);
	RMX_ASSERT(!(c->flags & (CONN_RECV_ARMED | CONN_SEND_INFLIGHT | CONN_WAIT_COMMIT)));
	free(c->carry);
	free(c->out.buf);
	free(c->http);
	free(c->proxy);
	c->proxy = NULL;
	c->carry = NULL;
	c->out.buf = NULL;
	c->http = NULL;
	c->flags = 0;
	c->next = s->free_head;
	s->free_head = conn_index(s, c);
	s->used--;
}

int conn_carry_append(struct conn *c, const uint8_t *p, size_t n)
{
	if (n == 0)
		return 0;
	if ((size_t)c->carry_len + n > CARRY_HARD_MAX_BYTES)
		return -ENOBUFS;
	if (c->carry_len + n > c->carry_cap) {
		size_t cap = c->carry_cap ? c->carry_cap : 4096;
		while (cap < c->carry_len + n)
			cap *= 2;
		void *q = realloc(c->carry, cap);
		if (!q)
			return -ENOMEM;
		c->carry = q;
		c->carry_cap = (uint32_t)cap;
	}
	memcpy(c->carry + c->carry_len, p, n);
	c->carry_len += (uint32_t)n;
	return 0;
}

void conn_carry_consume(struct conn *c, size_t n)
{
	RMX_ASSERT(n <= c->carry_len);
	if (n == c->carry_len) {
		free(c->carry);
		c->carry = NULL;
		c->carry_len = c->carry_cap = 0;
		return;
	}
	memmove(c->carry, c->carry + n, c->carry_len - n);
	c->carry_len -= (uint32_t)n;
}

/* ---- deadlines: the arithmetic ------------------------------------------------ */

uint64_t smtp_deadline_timeout_ms(const struct config *cfg, enum smtp_timeout_kind kind)
{
	switch (kind) {
	case SMTP_TIMEOUT_DATA:
		return (uint64_t)cfg->data_timeout_s * 1000u;
	case SMTP_TIMEOUT_COMMAND:
		return (uint64_t)cfg->command_timeout_s * 1000u;
	default:
		return (uint64_t)cfg->idle_timeout_s * 1000u;
	}
}

enum smtp_timeout_kind smtp_deadline_kind(enum smtp_timeout_kind session_kind, bool body_open,
					  bool waits_for_store)
{
	if (session_kind == SMTP_TIMEOUT_COMMAND && body_open && !waits_for_store)
		return SMTP_TIMEOUT_DATA;
	return session_kind;
}

struct smtp_deadline smtp_deadline_fresh(const struct config *cfg, enum smtp_timeout_kind kind,
					 uint32_t commands, uint64_t now_ms)
{
	struct smtp_deadline d = {
		.at_ms = now_ms + smtp_deadline_timeout_ms(cfg, kind),
		.commands = commands,
		.kind = (uint8_t)kind,
	};
	return d;
}

bool smtp_deadline_restarts(const struct smtp_deadline *d, bool armed,
			    enum smtp_timeout_kind kind, uint32_t commands)
{
	return !armed || kind != d->kind || (kind != SMTP_TIMEOUT_DATA && commands != d->commands);
}

uint64_t smtp_deadline_after_body(const struct smtp_deadline *d, const struct config *cfg,
				  uint64_t now_ms, uint64_t body_bytes)
{
	RMX_ASSERT(cfg->min_data_rate_bytes_per_s > 0); /* config_load refuses 0 */
	uint64_t cap_ms = now_ms + (uint64_t)cfg->data_timeout_s * 1000u;
	uint64_t more_ms = body_bytes * 1000u / cfg->min_data_rate_bytes_per_s;
	return RMX_MIN(d->at_ms + more_ms, cap_ms);
}

/* ---- deadlines: the timers ------------------------------------------------------ */

static enum smtp_timeout_kind conn_timeout_kind(const struct conn *c)
{
	return smtp_deadline_kind(smtp_session_timeout_kind(&c->session),
				  c->txn.active && c->txn.body.len > 0,
				  (c->flags & (CONN_WAIT_COMMIT | CONN_WAIT_RESERVE)) != 0);
}

static void conn_set_deadline(struct smtp_conns *sc, struct conn *c, uint64_t at_ms)
{
	uint64_t now_ms = sc->clock->now_ms;
	c->deadline.at_ms = at_ms;
	timer_arm(&sc->wheel, &c->timer, at_ms > now_ms ? at_ms - now_ms : 0);
}

void smtp_conn_arm_deadline(struct smtp_conns *sc, struct conn *c)
{
	c->deadline = smtp_deadline_fresh(sc->cfg, conn_timeout_kind(c), c->txn.commands,
					  sc->clock->now_ms);
	if (sc->overload != OVERLOAD_NORMAL) /* stress: half the time to wait */
		c->deadline.at_ms -= (c->deadline.at_ms - sc->clock->now_ms) / 2;
	conn_set_deadline(sc, c, c->deadline.at_ms);
}

/* After input: the deadline moves only with progress (smtp_deadline_*). */
static void conn_deadline_progress(struct smtp_conns *sc, struct conn *c, size_t body_bytes)
{
	if (c->flags & (CONN_GREET_PAUSE | CONN_ERROR_DELAY))
		return; /* the timer ends the pause first */
	enum smtp_timeout_kind kind = conn_timeout_kind(c);
	if (smtp_deadline_restarts(&c->deadline, c->timer.armed, kind, c->txn.commands)) {
		smtp_conn_arm_deadline(sc, c);
		return;
	}
	if (kind != SMTP_TIMEOUT_DATA || body_bytes == 0)
		return;
	uint64_t at_ms = smtp_deadline_after_body(&c->deadline, sc->cfg, sc->clock->now_ms, body_bytes);
	if (at_ms != c->deadline.at_ms)
		conn_set_deadline(sc, c, at_ms);
}

/* ---- receive and send ------------------------------------------------------------ */

static uint64_t conn_ud(struct smtp_conns *sc, const struct conn *c, enum ring_op op)
{
	return ring_ud(op, c->gen, conn_index(&sc->slab, c));
}

/*
 * Arms a receive into the buffer ring: multishot while the session keeps up
 * with its input, single-shot (one buffer per completion) while input is
 * carried, so a client far ahead of us cannot pour its whole socket buffer
 * into the carry in one wake-up.
 */
void smtp_conn_arm_recv(struct smtp_conns *sc, struct conn *c)
{
	RMX_ASSERT(!(c->flags & CONN_RECV_ARMED));
	bool multishot = c->carry_len == 0 && !(c->flags & CONN_WAITING);
	c->tp.ops->arm_recv(&sc->env, &c->tp, multishot, conn_ud(sc, c, RING_OP_RECV));
	c->flags |= CONN_RECV_ARMED;
}

/*
 * Keeps the receive side in step with the carry buffer: a client that sends
 * far ahead of our replies is paused (its multishot recv cancelled, so TCP
 * pushes back) once CARRY_SOFT_MAX_BYTES wait, and resumed at half that.
 */
static void conn_recv_update(struct smtp_conns *sc, struct conn *c)
{
	if (c->flags & (CONN_CLOSING | CONN_EOF | CONN_REARM))
		return;
	bool paused = c->flags & CONN_RECV_PAUSED;
	bool too_full = c->carry_len > (paused ? CARRY_SOFT_MAX_BYTES / 2 : CARRY_SOFT_MAX_BYTES);
	if (too_full) {
		if ((c->flags & CONN_RECV_ARMED) && !paused)
			c->tp.ops->cancel_recv(&sc->env, &c->tp, conn_ud(sc, c, RING_OP_RECV));
		c->flags |= CONN_RECV_PAUSED;
		return;
	}
	c->flags &= ~CONN_RECV_PAUSED;
	if (!(c->flags & CONN_RECV_ARMED))
		smtp_conn_arm_recv(sc, c);
}

/* Sends what the session wrote, if nothing is in flight. */
static void conn_flush(struct smtp_conns *sc, struct conn *c)
{
	if (c->flags & (CONN_SEND_INFLIGHT | CONN_ERROR_DELAY))
		return;
	size_t n = c->out.len;
	if (c->flags & CONN_STARTTLS_WAIT) {
		/* Replies before the 220 go out in clear first; then the 220
		 * becomes the TLS transport's clear prefix (transport.h). */
		if (c->starttls_clear) {
			n = c->starttls_clear;
		} else {
			c->flags &= ~CONN_STARTTLS_WAIT;
			bool ok = conn_tls_start(sc, c, c->out.buf, c->out.len);
			c->out.len = 0;
			if (!ok)
				return;
			n = 0;
		}
	}
	if (c->flags & CONN_TLS_HANDSHAKE)
		n = 0; /* replies wait for the handshake (smtps: the banner) */
	if (n == 0 && !c->tp.ops->send_pending(&c->tp))
		return; /* TLS: a handshake flight goes out with n = 0 */
	/* The last reply (221, 421) rides with the FIN that conn_linger sends. */
	c->tp.final_send = (c->flags & CONN_CLOSE_AFTER_SEND) && n == c->out.len && n > 0;
	c->tp.ops->send(&sc->env, &c->tp, c->out.buf, n, conn_ud(sc, c, RING_OP_SEND));
	c->send_bytes = (uint32_t)n;
	c->flags |= CONN_SEND_INFLIGHT;
}

bool smtp_conn_out_ready(struct smtp_conns *sc, struct conn *c)
{
	if (c->out.buf)
		return true;
	c->out.buf = sc->reply_pool_count ? sc->reply_pool[--sc->reply_pool_count]
					  : malloc(SMTP_REPLY_BUFFER_BYTES);
	if (!c->out.buf)
		return false;
	c->out.len = 0;
	c->out.cap = SMTP_REPLY_BUFFER_BYTES;
	return true;
}

/* Takes the reply buffer back when nothing waits in it: an idle session
 * holds none (50,000 idle connections cost their slots, not 200 MiB of
 * buffers). HTTP responses have buffers of their own size: freed. */
static void conn_out_put(struct smtp_conns *sc, struct conn *c)
{
	if (!c->out.buf || c->out.len || (c->flags & CONN_SEND_INFLIGHT))
		return;
	if (c->out.cap == SMTP_REPLY_BUFFER_BYTES && !(c->flags & CONN_HTTP) &&
	    sc->reply_pool_count < REPLY_BUFFER_POOL_MAX)
		sc->reply_pool[sc->reply_pool_count++] = c->out.buf;
	else
		free(c->out.buf);
	c->out.buf = NULL;
	c->out.cap = 0;
}

/* ---- connection life --------------------------------------------------------------- */

void smtp_conns_publish_held(struct smtp_conns *sc)
{
	unsigned mask = 1u << sc->cfg->snapshot;
	for (uint32_t k = 0; k < CONFIG_SNAPSHOTS_MAX; k++)
		if (sc->cfg_users[k])
			mask |= 1u << k;
	if (atomic_load_explicit(&sc->w->cfg_held_mask, memory_order_relaxed) != mask)
		atomic_store_explicit(&sc->w->cfg_held_mask, mask, memory_order_release);
}

static void conn_cfg_release(struct smtp_conns *sc, struct conn *c)
{
	if (c->cfg_snapshot < 0)
		return;
	RMX_ASSERT(sc->cfg_users[c->cfg_snapshot] > 0);
	if (--sc->cfg_users[c->cfg_snapshot] == 0 && (uint32_t)c->cfg_snapshot != sc->cfg->snapshot)
		smtp_conns_publish_held(sc);
	c->cfg_snapshot = -1;
}

/* event=connection_close: who, how long, how much. */
static void log_connection_close(struct smtp_conns *sc, const struct conn *c)
{
	struct log_msg m;
	if (!log_begin(&m, (c->flags & CONN_PROBE) ? LOG_DEBUG : LOG_INFO, "connection_close"))
		return;
	log_add_u64(&m, "worker", sc->w->id);
	log_add_str(&m, "client", c->peer.ip);
	log_add_span(&m, "helo", smtp_session_helo(&c->session));
	log_add_u64(&m, "duration_ms", sc->clock->now_ms - (uint64_t)c->opened_ms);
	log_add_u64(&m, "commands", c->txn.commands);
	log_add_u64(&m, "messages", c->messages);
	log_add_u64(&m, "bytes_in", c->bytes_in);
	log_add_u64(&m, "bytes_out", c->bytes_out);
	log_end(&m);
}

void smtp_conn_release_if_done(struct smtp_conns *sc, struct conn *c)
{
	if (!(c->flags & CONN_CLOSING))
		return;
	if (c->flags & (CONN_RECV_ARMED | CONN_SEND_INFLIGHT | CONN_WAIT_COMMIT))
		return;
	if (c->flags & (CONN_WAIT_RESERVE | CONN_REARM))
		return; /* on a worker list: released when taken off it */
	timer_cancel(&sc->wheel, &c->timer);
	if (c->txn.active || c->txn.body.data || c->txn.env.data)
		txn_reset(&c->txn);
	smtp_conn_auth_release(sc, c);
	if (c->cfg_snapshot >= 0 && !(c->flags & (CONN_HTTP | CONN_SCREEN_DONE)))
		conn_screen_record(sc, c, false);
	if (sc->front != NULL)
		client_table_disconnect(sc->front->clients, &c->client);
	if (c->tp.fd >= 0)
		c->tp.ops->close(&c->tp);
	if (c->cfg_snapshot >= 0)
		log_connection_close(sc, c);
	conn_cfg_release(sc, c);
	c->out.len = 0; /* never to be sent now */
	conn_out_put(sc, c);
	bool http = c->flags & CONN_HTTP;
	conn_release(&sc->slab, c);
	if (http) {
		/* Metrics clients count neither as SMTP connections nor in the limit. */
		RMX_ASSERT(sc->http_open > 0);
		sc->http_open--;
		return;
	}
	metrics_dec(&sc->w->metrics->connections_active);
	unsigned prev = atomic_fetch_sub_explicit(sc->w->connections, 1, memory_order_relaxed);
	RMX_ASSERT(prev > 0);
}

void smtp_conn_close(struct smtp_conns *sc, struct conn *c)
{
	if (c->flags & CONN_CLOSING)
		return;
	c->flags |= CONN_CLOSING;
	c->flags &= ~(CONN_CLOSE_AFTER_SEND | CONN_LINGER | CONN_WAIT_FLUSH);
	timer_cancel(&sc->wheel, &c->timer);
	/* Wakes the multishot recv, or a send waiting for room, with a final
	 * completion. After the client's FIN with neither in flight, nothing
	 * waits and nothing is left unread: close alone does the same (the
	 * usual end of a session, after QUIT and the lingering close), one
	 * system call fewer per connection. */
	bool idle = (c->flags & CONN_EOF) && !(c->flags & (CONN_RECV_ARMED | CONN_SEND_INFLIGHT));
	if (!idle) {
		int rc = c->tp.ops->shutdown(&c->tp, TRANSPORT_SHUTDOWN_BOTH);
		if (rc != 0 && rc != -ENOTCONN)
			log_debug("event=shutdown_failed errno=%s", log_errno_name(rc));
	}
	smtp_conn_release_if_done(sc, c);
}

/* The final reply has gone out: send FIN, read and drop what still comes,
 * then close. The client reads our last reply instead of a reset. */
static void conn_linger(struct smtp_conns *sc, struct conn *c)
{
	c->flags &= ~CONN_CLOSE_AFTER_SEND;
	c->flags |= CONN_LINGER;
	if (c->tp.ops->shutdown(&c->tp, TRANSPORT_SHUTDOWN_WRITE) != 0) {
		smtp_conn_close(sc, c);
		return;
	}
	if (!(c->flags & CONN_RECV_ARMED) || (c->flags & CONN_EOF)) {
		smtp_conn_close(sc, c);
		return;
	}
	timer_arm(&sc->wheel, &c->timer, LINGER_MS);
}

void smtp_conn_after(struct smtp_conns *sc, struct conn *c)
{
	if (c->flags & CONN_CLOSING)
		return;
	conn_flush(sc, c);
	if ((c->flags & CONN_CLOSE_AFTER_SEND) && !(c->flags & CONN_SEND_INFLIGHT)) {
		conn_linger(sc, c);
		return;
	}
	if ((c->flags & CONN_EOF) && !(c->flags & (CONN_WAITING | CONN_SEND_INFLIGHT)))
		smtp_conn_close(sc, c);
}

/* ---- feeding the session ---------------------------------------------------------- */

/* The session accepted STARTTLS: its 220 is the last line in out. What
 * came before it goes out in clear, then the transport turns TLS
 * (conn_flush); nothing the client sends meanwhile is read. */
static void conn_starttls_accepted(struct conn *c)
{
	RMX_ASSERT(c->out.len >= 2 && c->out.buf[c->out.len - 1] == '\n');
	size_t start = c->out.len - 2;
	while (start > 0 && c->out.buf[start - 1] != '\n')
		start--;
	c->starttls_clear = (uint32_t)start;
	c->flags |= CONN_STARTTLS_WAIT;
}

/*
 * Feeds p[0..n) to the session until it wants more, pauses or closes.
 * Returns the bytes consumed; the rest must be carried.
 */
static size_t conn_feed(struct smtp_conns *sc, struct conn *c, const uint8_t *p, size_t n)
{
	size_t used = 0;
	while (used < n) {
		struct smtp_feed_result r = smtp_session_feed(&c->session, p + used, n - used, &c->out);
		RMX_ASSERT(r.consumed <= n - used);
		used += r.consumed;
		switch (r.status) {
		case SMTP_FEED_MORE:
			return used;
		case SMTP_FEED_MESSAGE:
			c->msg_done_ns = sc->clock->now_ns;
			sc->hooks.message_done(sc->hooks.message_ctx, c);
			if (c->flags & CONN_WAITING)
				return used;
			break; /* refused at once (451/452): the session goes on */
		case SMTP_FEED_FLUSH:
			c->flags |= CONN_WAIT_FLUSH;
			if (smtp_session_take_delay(&c->session) && sc->cfg->error_sleep_s > 0) {
				/* Past the soft error limit: this reply waits
				 * error_sleep_time (a timer; nothing else waits). */
				c->flags |= CONN_ERROR_DELAY;
				timer_arm(&sc->wheel, &c->timer, (uint64_t)sc->cfg->error_sleep_s * 1000u);
			}
			return used;
		case SMTP_FEED_CLOSE:
			c->flags |= CONN_CLOSE_AFTER_SEND;
			return n;
		case SMTP_FEED_STARTTLS:
			conn_starttls_accepted(c);
			return n; /* RFC 3207 section 6: the rest of this read is dropped */
		case SMTP_FEED_AUTH:
			smtp_conn_auth_submit(sc, c);
			if (c->flags & CONN_WAIT_AUTH)
				return used;
			break; /* 454 at once: the session goes on */
		}
	}
	return used;
}

/* Feeds carried input while the session is not waiting; bytes_in arrived
 * just now (they move the data deadline). */
static void conn_pump_input(struct smtp_conns *sc, struct conn *c, size_t bytes_in)
{
	while (c->carry_len && !(c->flags & (CONN_WAITING | CONN_CLOSE_AFTER_SEND | CONN_CLOSING))) {
		if (!smtp_conn_out_ready(sc, c)) {
			smtp_conn_close(sc, c);
			return;
		}
		uint32_t before = c->carry_len;
		size_t used = conn_feed(sc, c, c->carry, c->carry_len);
		conn_carry_consume(c, used);
		if (used == 0 || c->carry_len == before)
			break; /* a partial line: wait for more input */
	}
	if (!(c->flags & CONN_CLOSING)) {
		conn_deadline_progress(sc, c, bytes_in);
		conn_recv_update(sc, c);
	}
	smtp_conn_after(sc, c);
}

void smtp_conn_pump(struct smtp_conns *sc, struct conn *c)
{
	conn_pump_input(sc, c, 0);
}

static void conn_input(struct smtp_conns *sc, struct conn *c, const uint8_t *p, size_t n)
{
	if (c->flags & (CONN_CLOSING | CONN_LINGER | CONN_CLOSE_AFTER_SEND))
		return; /* after the last reply, input is dropped */
	if (c->flags & CONN_HTTP) {
		sc->hooks.http_input(sc->hooks.http_ctx, c, p, n);
		return;
	}
	if (c->carry_len || (c->flags & CONN_WAITING)) {
		if (conn_carry_append(c, p, n) != 0) {
			log_warn("event=input_overflow worker=%u client=%s", sc->w->id, c->peer.ip);
			metrics_inc(&sc->w->metrics->connections_overflow_closed);
			smtp_conn_close(sc, c);
			return;
		}
		conn_pump_input(sc, c, n);
		return;
	}
	if (!smtp_conn_out_ready(sc, c)) {
		smtp_conn_close(sc, c);
		return;
	}
	size_t used = conn_feed(sc, c, p, n);
	if (used < n && !(c->flags & CONN_CLOSE_AFTER_SEND) &&
	    conn_carry_append(c, p + used, n - used) != 0) {
		smtp_conn_close(sc, c);
		return;
	}
	if (!(c->flags & CONN_CLOSING)) {
		conn_deadline_progress(sc, c, n);
		conn_recv_update(sc, c);
	}
	smtp_conn_after(sc, c);
}

/* ---- TLS: STARTTLS and smtps ------------------------------------------------------ */

/* The handshake failed, timed out or could not start: logged, counted,
 * closed without a reply. */
static void conn_tls_failed(struct smtp_conns *sc, struct conn *c, const char *reason)
{
	struct log_msg m;
	if (log_begin(&m, LOG_INFO, "tls_failed")) {
		log_add_u64(&m, "worker", sc->w->id);
		log_add_str(&m, "client", c->peer.ip);
		log_add_str(&m, "reason", reason);
		log_end(&m);
	}
	metrics_count_tls(sc->w->metrics, METRICS_TLS_FAILED, NULL);
	c->flags &= ~(CONN_TLS_HANDSHAKE | CONN_STARTTLS_WAIT);
	c->out.len = 0;
	smtp_conn_close(sc, c);
}

/* Puts c on TLS (clear goes out first, in clear) under the handshake
 * deadline. False when it could not (c is closing). */
static bool conn_tls_start(struct smtp_conns *sc, struct conn *c, const uint8_t *clear,
			   size_t clear_len)
{
	struct tls_ctx *ctx = sc->cfg->tls;
	if (!ctx || transport_tls_attach(&c->tp, ctx, clear, clear_len, NULL) != 0) {
		conn_tls_failed(sc, c, ctx ? "out_of_memory" : "no_certificate");
		return false;
	}
	c->flags |= CONN_TLS_HANDSHAKE;
	uint64_t timeout_ms = (uint64_t)sc->cfg->tls_handshake_timeout_s * 1000u;
	c->deadline.at_ms = sc->clock->now_ms + timeout_ms;
	timer_arm(&sc->wheel, &c->timer, timeout_ms);
	return true;
}

/* The handshake completed: the session starts over under TLS (smtps: its
 * banner, written at accept, goes out now). */
static void conn_tls_established(struct smtp_conns *sc, struct conn *c)
{
	c->flags &= ~CONN_TLS_HANDSHAKE;
	struct transport_tls_facts f;
	transport_tls_describe(&c->tp, &f);
	/* Token text for Received: (never empty: the session asserts it). */
	snprintf(c->tls_info.version, sizeof(c->tls_info.version), "%s",
		 f.version[0] ? f.version : "unknown");
	snprintf(c->tls_info.cipher, sizeof(c->tls_info.cipher), "%s",
		 f.cipher[0] ? f.cipher : "unknown");
	struct log_msg m;
	if (log_begin(&m, LOG_INFO, "tls_established")) {
		log_add_u64(&m, "worker", sc->w->id);
		log_add_str(&m, "client", c->peer.ip);
		log_add_str(&m, "version", f.version);
		log_add_str(&m, "cipher", f.cipher);
		log_add_str(&m, "sni", f.sni);
		log_end(&m);
	}
	metrics_count_tls(sc->w->metrics, f.resumed ? METRICS_TLS_RESUMED : METRICS_TLS_FULL,
			  f.version);
	smtp_session_tls_started(&c->session, &c->tls_info);
	smtp_conn_arm_deadline(sc, c);
}

/* After TLS input: the handshake's outcome, or a session that broke. */
static void conn_tls_check(struct smtp_conns *sc, struct conn *c)
{
	enum transport_tls_status st = transport_tls_status(&c->tp);
	if (st == TRANSPORT_TLS_FAILED) {
		if (c->flags & CONN_TLS_HANDSHAKE)
			conn_tls_failed(sc, c, transport_tls_failure(&c->tp));
		else
			smtp_conn_close(sc, c); /* close_notify or a bad record: no more input */
		return;
	}
	if (st == TRANSPORT_TLS_ESTABLISHED && (c->flags & CONN_TLS_HANDSHAKE))
		conn_tls_established(sc, c);
}

/* ---- admission and the start of the session ------------------------------------- */

/* The 16-byte IPv6 form of the client's address (IPv4 mapped), for the
 * CIDR lists. */
static bool peer_addr16(const struct smtp_peer *peer, uint8_t out[16])
{
	if (peer->ipv6)
		return inet_pton(AF_INET6, peer->ip, out) == 1;
	memset(out, 0, 10);
	out[10] = out[11] = 0xff;
	return inet_pton(AF_INET, peer->ip, out + 12) == 1;
}

/* The limits of a client: the configured ones, none for limits_exempt. */
static struct client_limits conn_client_limits(const struct config *cfg,
					       const struct smtp_peer *peer)
{
	uint8_t addr[16];
	if (peer_addr16(peer, addr) && cidr_list_contains(&cfg->limits_exempt, addr))
		return client_limits_none;
	return (struct client_limits){
		.connections_max = cfg->max_connections_per_ip,
		.connection_rate_max = cfg->max_connection_rate_per_ip,
		.message_rate_max = cfg->max_message_rate_per_ip,
	};
}

/*
 * Counts the connection against its client's limits (core/client_table,
 * shared by all workers): over max_connections_per_ip or
 * max_connection_rate_per_ip it gets 421 4.7.0 at once, nothing of it is
 * read, and its slot is released (false). Addresses in limits_exempt are
 * tracked (screening verdicts) but never refused. *screen is the client's
 * cached screening verdict.
 */
static bool conn_admit(struct smtp_conns *sc, struct conn *c, enum screen_verdict *screen)
{
	*screen = SCREEN_VERDICT_NONE;
	const struct config *cfg = sc->cfg;
	struct client_key key;
	if (sc->front == NULL || !client_key_of_ip(c->peer.ip, cfg->ipv6_prefix_bits, &key))
		return true;
	struct client_limits lim = conn_client_limits(cfg, &c->peer);
	struct client_admission adm;
	enum client_admit v =
		client_table_connect(sc->front->clients, &key, &lim, sc->clock->now_ms, &adm);
	*screen = adm.screen;
	if (v == CLIENT_ADMIT) {
		c->client = adm.ref;
		return true;
	}
	if (v == CLIENT_ADMIT_UNTRACKED)
		return true;
	bool rate = v == CLIENT_REFUSE_CONNECTION_RATE;
	metrics_inc(&sc->w->metrics->connections_rejected[METRICS_CONN_REJECT_PER_IP]);
	log_info("event=connection_refused worker=%u client=%s reason=%s connections=%u "
		 "connection_rate=%u", sc->w->id, c->peer.ip,
		 rate ? "connection_rate_per_ip" : "connections_per_ip", adm.connections,
		 adm.connection_rate);
	enum smtp_refusal why = rate ? SMTP_REFUSE_CLIENT_RATE : SMTP_REFUSE_CLIENT_CONNECTIONS;
	if (c->flags & CONN_RECV_ARMED) {
		/* After a PROXY header its receive is live: the 421 goes out on
		 * the connection, which then closes as after any last reply. */
		RMX_ASSERT(c->out.buf && c->out.cap - c->out.len >= sc->reject_reply_len[why]);
		memcpy(c->out.buf + c->out.len, sc->reject_reply[why], sc->reject_reply_len[why]);
		c->out.len += sc->reject_reply_len[why];
		c->flags |= CONN_CLOSE_AFTER_SEND;
		smtp_conn_after(sc, c);
		return false;
	}
	int fd = c->tp.fd;
	c->tp.fd = -1; /* the refusal's send owns it now */
	c->flags |= CONN_CLOSING;
	smtp_conn_release_if_done(sc, c);
	reject_connection(sc, fd, why);
	return false;
}

/* The record builder asks at each MAIL (txn_budget.mail_gate): over
 * max_message_rate_per_ip the client gets 451 4.7.1. */
static int conn_mail_gate(void *ctx, struct txn *t)
{
	struct smtp_conns *sc = ctx;
	struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, txn));
	if (overload_refuses_mail((enum overload_state)sc->overload))
		return -ENOSPC; /* 452 4.3.1: try later, the node is under stress */
	if (sc->front == NULL || c->client.slot == CLIENT_REF_NONE)
		return 0;
	const struct config *cfg = sc->cfg;
	struct client_limits lim = conn_client_limits(cfg, &c->peer);
	uint32_t rate = 0;
	if (client_table_mail(sc->front->clients, &c->client, &lim, sc->clock->now_ms, &rate) ==
	    CLIENT_MAIL_OK)
		return 0;
	log_info("event=mail_refused worker=%u client=%s reason=message_rate_per_ip rate=%u",
		 sc->w->id, c->peer.ip, rate);
	return -EBUSY;
}

/* The screening verdict of a client whose greeting pause ended, or whose
 * session ended having been judged: cached for every worker (a client that
 * passed is not paused again within screen_cache_ttl), counted, logged. */
static void conn_screen_record(struct smtp_conns *sc, struct conn *c, bool paused)
{
	unsigned found = smtp_session_screen(&c->session);
	if (!paused && found == 0)
		return;
	struct metrics_worker *m = sc->w->metrics;
	if (found == 0) {
		metrics_inc(&m->screen_verdicts[METRICS_SCREEN_PASS]);
	} else {
		if (found & SMTP_SCREEN_PREGREET)
			metrics_inc(&m->screen_verdicts[METRICS_SCREEN_PREGREET]);
		if (found & SMTP_SCREEN_HTTP)
			metrics_inc(&m->screen_verdicts[METRICS_SCREEN_HTTP]);
		if (found & SMTP_SCREEN_BARE_LF)
			metrics_inc(&m->screen_verdicts[METRICS_SCREEN_BARE_LF]);
		log_info("event=screen_failed worker=%u client=%s pregreet=%s http=%s bare_lf=%s",
			 sc->w->id, c->peer.ip, (found & SMTP_SCREEN_PREGREET) ? "yes" : "no",
			 (found & SMTP_SCREEN_HTTP) ? "yes" : "no",
			 (found & SMTP_SCREEN_BARE_LF) ? "yes" : "no");
	}
	if (sc->front == NULL)
		return;
	uint64_t expires_ms = sc->clock->now_ms + (uint64_t)sc->cfg->screen_cache_ttl_s * 1000u;
	client_table_screen_set(sc->front->clients, &c->client,
				found == 0 ? SCREEN_VERDICT_PASS : SCREEN_VERDICT_FAIL, expires_ms);
}

/*
 * Starts the session of an admitted connection. On an smtp listener with
 * greet_pause, a client without a cached pass gets "220-" only; the final
 * greeting comes when the pause ends (on_timer), and what the client sends
 * meanwhile judges it (proto/smtp_session). smtps waits for its handshake.
 */
static void conn_begin(struct smtp_conns *sc, struct conn *c, enum screen_verdict screen)
{
	const struct config *cfg = sc->cfg;
	c->cfg_snapshot = (int32_t)cfg->snapshot;
	sc->cfg_users[cfg->snapshot]++;
	struct log_msg lm;
	if (log_begin(&lm, (c->flags & CONN_PROBE) ? LOG_DEBUG : LOG_INFO, "connection_open")) {
		log_add_u64(&lm, "worker", sc->w->id);
		log_add_str(&lm, "client", c->peer.ip);
		log_end(&lm);
	}
	bool stress = sc->overload != OVERLOAD_NORMAL;
	const struct smtp_session_config *scfg =
		stress ? &cfg->session_stress[c->listener_mode] : &cfg->session_mode[c->listener_mode];
	bool pause = cfg->greet_pause_s > 0 && c->listener_mode == SMTP_LISTENER_SMTP &&
		     screen != SCREEN_VERDICT_PASS;
	if (pause)
		smtp_session_start_paused(&c->session, scfg, &c->peer, &txn_ops, &c->txn, &c->out);
	else
		smtp_session_start(&c->session, scfg, &c->peer, &txn_ops, &c->txn, &c->out);
	smtp_conn_auth_attach(sc, c);
	if (!(c->flags & CONN_RECV_ARMED)) /* armed already for a PROXY header */
		smtp_conn_arm_recv(sc, c);
	if (c->listener_mode == SMTP_LISTENER_SMTPS) {
		/* RFC 8314: TLS from the first byte; the banner waits for it. */
		if (!conn_tls_start(sc, c, NULL, 0))
			return;
	} else if (pause) {
		c->flags |= CONN_GREET_PAUSE;
		uint64_t pause_ms = (uint64_t)cfg->greet_pause_s * 1000u;
		timer_arm(&sc->wheel, &c->timer, stress ? pause_ms / 2 : pause_ms);
	} else {
		smtp_conn_arm_deadline(sc, c);
	}
	conn_flush(sc, c);
}

/* The greeting pause is over: the final 220, the verdict, then whatever the
 * client sent meanwhile is read. */
static void conn_greet_final(struct smtp_conns *sc, struct conn *c)
{
	c->flags &= ~CONN_GREET_PAUSE;
	if (!smtp_conn_out_ready(sc, c)) {
		smtp_conn_close(sc, c);
		return;
	}
	smtp_session_greet_final(&c->session, &c->out);
	conn_screen_record(sc, c, true);
	c->flags |= CONN_SCREEN_DONE;
	smtp_conn_arm_deadline(sc, c);
	smtp_conn_pump(sc, c);
}

/* ---- accept ----------------------------------------------------------------------- */

static void arm_accept(struct smtp_conns *sc, uint32_t i)
{
	struct io_uring_sqe *sqe = ring_sqe(sc->env.ring);
	io_uring_prep_multishot_accept(sqe, sc->w->listen_fds[i], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_ACCEPT, 0, i));
}

/* The client's address; false when it is already gone (reset before we
 * looked) or not an IP socket. */
static bool peer_from_fd(int fd, struct smtp_peer *peer)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	memset(peer, 0, sizeof(*peer));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return false;
	const char *p = NULL;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		p = inet_ntop(AF_INET, &a->sin_addr, peer->ip, sizeof(peer->ip));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
			p = inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], peer->ip, sizeof(peer->ip));
		} else {
			p = inet_ntop(AF_INET6, &a->sin6_addr, peer->ip, sizeof(peer->ip));
			peer->ipv6 = true;
		}
	}
	return p != NULL;
}

/* A refused connection gets its 421 reply; its completion closes it. */
static void reject_connection(struct smtp_conns *sc, int fd, enum smtp_refusal why)
{
	struct transport t;
	transport_plain_attach(&t, fd);
	t.ops->send(&sc->env, &t, sc->reject_reply[why], sc->reject_reply_len[why],
		    ring_ud(RING_OP_REJECT_SEND, 0, (uint32_t)fd));
}

void smtp_conn_on_reject_sent(struct smtp_conns *sc, const struct io_uring_cqe *cqe)
{
	(void)sc;
	struct transport t;
	transport_plain_attach(&t, (int)ring_ud_slot(cqe->user_data));
	t.ops->close(&t);
}

/* Out of descriptors or memory: the connection waits in the backlog.
 * Re-armed after a tick, not at once (that would spin), and logged at most
 * once a second. */
static void accept_failed(struct smtp_conns *sc, uint32_t i, const struct io_uring_cqe *cqe)
{
	uint64_t now_ms = sc->clock->now_ms;
	if (!(cqe->flags & IORING_CQE_F_MORE) && sc->listening) {
		sc->accept_rearm_mask |= 1u << i;
		sc->accept_rearm_at_ms = now_ms + TIMER_TICK_MS;
	}
	sc->accept_errors++;
	metrics_inc(&sc->w->metrics->accept_errors);
	if (now_ms >= sc->accept_error_logged_ms + 1000) {
		log_warn("event=accept_failed worker=%u error=%s count=%llu", sc->w->id,
			 log_errno_name(cqe->res), (unsigned long long)sc->accept_errors);
		sc->accept_error_logged_ms = now_ms;
		sc->accept_errors = 0;
	}
}

void smtp_conn_on_accept(struct smtp_conns *sc, const struct io_uring_cqe *cqe)
{
	uint32_t i = ring_ud_slot(cqe->user_data);
	if (cqe->res < 0) {
		if (cqe->res != -ECANCELED)
			accept_failed(sc, i, cqe);
		return;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE) && sc->listening)
		arm_accept(sc, i);
	int fd = cqe->res;
	struct metrics_worker *m = sc->w->metrics;
	unsigned open = atomic_fetch_add_explicit(sc->w->connections, 1, memory_order_relaxed);
	struct conn *c = NULL;
	if (overload_refuses_connect((enum overload_state)sc->overload) && !sc->draining) {
		atomic_fetch_sub_explicit(sc->w->connections, 1, memory_order_relaxed);
		metrics_inc(&m->connections_rejected[METRICS_CONN_REJECT_OVERLOAD]);
		reject_connection(sc, fd, SMTP_REFUSE_OVERLOAD);
		return;
	}
	if (open < sc->cfg->max_connections && !sc->draining)
		c = conn_alloc(&sc->slab);
	if (!c) {
		atomic_fetch_sub_explicit(sc->w->connections, 1, memory_order_relaxed);
		metrics_inc(&m->connections_rejected[sc->draining ? METRICS_CONN_REJECT_SHUTDOWN
								  : METRICS_CONN_REJECT_LIMIT]);
		reject_connection(sc, fd, SMTP_REFUSE_SERVER_FULL);
		return;
	}
	transport_plain_attach(&c->tp, fd);
	c->opened_ms = (int64_t)sc->clock->now_ms;
	metrics_inc(&m->connections_accepted);
	metrics_inc(&m->connections_active); /* released: decremented */
	/* TCP_NODELAY comes from the listener (listener.h). */
	txn_init(&c->txn, sc->budget);
	if (!peer_from_fd(fd, &c->peer) || !smtp_conn_out_ready(sc, c)) {
		c->flags |= CONN_CLOSING;
		smtp_conn_release_if_done(sc, c);
		return;
	}
	c->listener_mode = sc->cfg->listen[i].mode;
	if (smtp_conn_proxy_accept(sc, c, i))
		return; /* its PROXY header first, or refused */
	smtp_conn_start(sc, c, false);
}

void smtp_conn_start(struct smtp_conns *sc, struct conn *c, bool probe)
{
	enum screen_verdict screen = SCREEN_VERDICT_PASS; /* a probe: no pause */
	if (probe)
		c->flags |= CONN_PROBE | CONN_SCREEN_DONE;
	else if (!conn_admit(sc, c, &screen))
		return;
	conn_begin(sc, c, screen);
}

struct conn *smtp_conns_alloc_http(struct smtp_conns *sc, int fd)
{
	/* The slab holds HTTP_CONNECTIONS_MAX slots beyond max_connections, and
	 * SMTP never takes more than max_connections of it: so an HTTP client
	 * within its pool always finds a slot, and never takes an SMTP one. */
	struct conn *c = sc->http_open < HTTP_CONNECTIONS_MAX ? conn_alloc(&sc->slab) : NULL;
	if (!c)
		return NULL;
	sc->http_open++;
	transport_plain_attach(&c->tp, fd);
	c->flags |= CONN_HTTP;
	txn_init(&c->txn, sc->budget);
	return c;
}

/* ---- completions ------------------------------------------------------------------ */

/* The receive ran out of buffers: re-armed after this batch has returned
 * its buffers, so no spinning. */
static void conn_rearm_later(struct smtp_conns *sc, struct conn *c)
{
	metrics_inc(&sc->w->metrics->buffer_ring_enobufs);
	if (c->flags & CONN_REARM)
		return;
	c->flags |= CONN_REARM;
	c->rearm_next = sc->rearm_head;
	sc->rearm_head = conn_index(&sc->slab, c);
}

void smtp_conn_received(struct smtp_conns *sc, struct conn *c, const uint8_t *p, size_t n)
{
	const uint8_t *plain = NULL;
	size_t plain_len = 0;
	/* After STARTTLS and before our 220 has gone, the client has
	 * nothing to send: what it sends is never read. */
	if (!(c->flags & CONN_STARTTLS_WAIT))
		plain_len = c->tp.ops->input(&c->tp, p, n, &plain);
	if (c->tp.ops == &transport_tls && !(c->flags & CONN_CLOSING))
		conn_tls_check(sc, c);
	if (plain_len > 0)
		conn_input(sc, c, plain, plain_len);
	else if (!(c->flags & CONN_CLOSING))
		smtp_conn_after(sc, c); /* a handshake flight, a banner */
}

void smtp_conn_on_recv(struct smtp_conns *sc, const struct io_uring_cqe *cqe)
{
	struct conn *c = conn_lookup(&sc->slab, ring_ud_slot(cqe->user_data),
				     ring_ud_gen(cqe->user_data));
	struct buf_ring *bufs = sc->bufs;
	bool has_buf = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
	uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	if (!c) {
		if (has_buf)
			buf_ring_return(bufs, bid);
		return;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->flags &= ~CONN_RECV_ARMED;
	if (cqe->res > 0) {
		RMX_ASSERT(has_buf);
		c->bytes_in += (uint64_t)cqe->res;
		if (c->flags & CONN_PROXY_WAIT)
			smtp_conn_proxy_input(sc, c, buf_ring_addr(bufs, bid), (size_t)cqe->res);
		else
			smtp_conn_received(sc, c, buf_ring_addr(bufs, bid), (size_t)cqe->res);
		buf_ring_return(bufs, bid);
		if (!(c->flags & CONN_USED))
			return; /* released while handling the input */
	} else if (has_buf) {
		buf_ring_return(bufs, bid);
	}
	if (c->flags & CONN_RECV_ARMED)
		return;
	if (c->flags & CONN_CLOSING) {
		smtp_conn_release_if_done(sc, c); /* the final completion we waited for */
		return;
	}
	if (cqe->res == -ENOBUFS) {
		conn_rearm_later(sc, c);
		return;
	}
	if (cqe->res > 0 || (cqe->res == -ECANCELED && (c->flags & CONN_RECV_PAUSED))) {
		/* The kernel ended the multishot, or we paused it: re-arm when wanted. */
		conn_recv_update(sc, c);
		return;
	}
	/* End of input (0) or an error. */
	c->flags |= CONN_EOF;
	if (c->flags & CONN_LINGER || cqe->res < 0) {
		smtp_conn_close(sc, c);
		return;
	}
	/* Replies still owed (to input before the FIN) go out first; a message
	 * being made durable gets its answer; then the connection closes. */
	smtp_conn_after(sc, c);
}

void smtp_conn_on_send(struct smtp_conns *sc, const struct io_uring_cqe *cqe)
{
	struct conn *c = conn_lookup(&sc->slab, ring_ud_slot(cqe->user_data),
				     ring_ud_gen(cqe->user_data));
	RMX_ASSERT(c != NULL); /* a connection is never released with a send in flight */
	RMX_ASSERT(c->flags & CONN_SEND_INFLIGHT);
	int64_t res = c->tp.ops->send_done(&sc->env, &c->tp, cqe->res, cqe->user_data);
	if (res == -EINPROGRESS)
		return; /* the transport sends the rest of its bytes first */
	c->flags &= ~CONN_SEND_INFLIGHT;
	if (res < 0) {
		if (c->flags & CONN_CLOSING)
			smtp_conn_release_if_done(sc, c);
		else
			smtp_conn_close(sc, c);
		return;
	}
	size_t sent = (size_t)res;
	RMX_ASSERT(sent <= c->send_bytes && c->send_bytes <= c->out.len);
	c->bytes_out += sent;
	if (sent) /* a TLS handshake flight carries none of out (which may be NULL) */
		memmove(c->out.buf, c->out.buf + sent, c->out.len - sent);
	c->out.len -= sent;
	if (c->flags & CONN_STARTTLS_WAIT)
		c->starttls_clear -= (uint32_t)RMX_MIN(sent, (size_t)c->starttls_clear);
	if (c->flags & CONN_CLOSING) {
		smtp_conn_release_if_done(sc, c);
		return;
	}
	if (c->out.len == 0 && (c->flags & CONN_WAIT_FLUSH)) {
		c->flags &= ~CONN_WAIT_FLUSH;
		smtp_conn_pump(sc, c);
	} else {
		smtp_conn_after(sc, c);
	}
	/* Everything sent and the session waits for the client: the buffer
	 * goes back to the pool until the next reply. */
	if ((c->flags & CONN_USED) && !(c->flags & (CONN_CLOSING | CONN_HTTP)))
		conn_out_put(sc, c);
}

static void on_timer(void *ctx, struct timer_node *n)
{
	struct smtp_conns *sc = ctx;
	struct conn *c = (struct conn *)((char *)n - offsetof(struct conn, timer));
	if (c->flags & CONN_PROXY_WAIT) {
		smtp_conn_proxy_timeout(sc, c);
		return;
	}
	if (c->flags & (CONN_LINGER | CONN_HTTP)) {
		smtp_conn_close(sc, c);
		return;
	}
	if (c->flags & CONN_GREET_PAUSE) {
		conn_greet_final(sc, c);
		return;
	}
	if (c->flags & CONN_ERROR_DELAY) {
		/* The held reply goes out now; the client's time starts after it. */
		c->flags &= ~CONN_ERROR_DELAY;
		smtp_conn_arm_deadline(sc, c);
		smtp_conn_after(sc, c);
		return;
	}
	if (c->flags & (CONN_TLS_HANDSHAKE | CONN_STARTTLS_WAIT)) {
		conn_tls_failed(sc, c, "timeout"); /* no reply: there is no channel for one */
		return;
	}
	if (c->flags & (CONN_WAIT_COMMIT | CONN_WAIT_RESERVE | CONN_WAIT_AUTH)) {
		smtp_conn_arm_deadline(sc, c); /* we are the slow side, not the client */
		return;
	}
	if (c->flags & CONN_SEND_INFLIGHT) {
		smtp_conn_close(sc, c); /* the client stopped reading our replies */
		return;
	}
	if (!smtp_conn_out_ready(sc, c)) {
		smtp_conn_close(sc, c);
		return;
	}
	smtp_session_timeout(&c->session, &c->out);
	metrics_inc(&sc->w->metrics->smtp_timeouts);
	c->flags |= CONN_CLOSE_AFTER_SEND;
	conn_carry_consume(c, c->carry_len);
	smtp_conn_after(sc, c);
}

/* ---- the worker's turns ---------------------------------------------------------- */

void smtp_conns_set_overload(struct smtp_conns *sc, enum overload_state state)
{
	sc->overload = (uint8_t)state;
}

void smtp_conns_tick(struct smtp_conns *sc)
{
	timer_wheel_advance(&sc->wheel, sc->clock->now_ms, on_timer, sc);
}

void smtp_conns_rearm(struct smtp_conns *sc)
{
	while (sc->rearm_head != CONN_NONE) {
		struct conn *c = &sc->slab.conns[sc->rearm_head];
		sc->rearm_head = c->rearm_next;
		c->rearm_next = CONN_NONE;
		if (!(c->flags & CONN_REARM))
			continue;
		c->flags &= ~CONN_REARM;
		if (c->flags & CONN_CLOSING)
			smtp_conn_release_if_done(sc, c);
		else
			conn_recv_update(sc, c);
	}
	if (sc->accept_rearm_mask && sc->clock->now_ms >= sc->accept_rearm_at_ms) {
		for (uint32_t i = 0; i < sc->w->listen_count; i++)
			if ((sc->accept_rearm_mask & (1u << i)) && sc->listening)
				arm_accept(sc, i);
		sc->accept_rearm_mask = 0;
	}
}

void smtp_conns_drain(struct smtp_conns *sc, bool late)
{
	for (uint32_t i = 0; i < sc->slab.high_water; i++) {
		struct conn *c = &sc->slab.conns[i];
		if (!(c->flags & CONN_USED))
			continue;
		if (c->flags & (CONN_CLOSING | CONN_LINGER | CONN_CLOSE_AFTER_SEND | CONN_HTTP))
			continue; /* a metrics client closes by itself or by its deadline */
		if (c->flags & (CONN_WAIT_COMMIT | CONN_WAIT_RESERVE))
			continue; /* its 250 is on the way */
		if (!late && smtp_session_in_transaction(&c->session))
			continue;
		if (late && (c->flags & CONN_SEND_INFLIGHT))
			continue;
		if (c->flags & (CONN_TLS_HANDSHAKE | CONN_STARTTLS_WAIT | CONN_PROXY_WAIT)) {
			smtp_conn_close(sc, c); /* no channel (or no session) for a 421 yet */
			continue;
		}
		if (!smtp_conn_out_ready(sc, c)) {
			smtp_conn_close(sc, c);
			continue;
		}
		smtp_session_shutdown(&c->session, &c->out);
		c->flags |= CONN_CLOSE_AFTER_SEND;
		c->flags &= ~CONN_WAIT_FLUSH;
		conn_carry_consume(c, c->carry_len);
		smtp_conn_after(sc, c);
	}
}

void smtp_conns_listen(struct smtp_conns *sc)
{
	sc->listening = true;
	for (uint32_t i = 0; i < sc->w->listen_count; i++)
		arm_accept(sc, i);
}

void smtp_conns_stop_listening(struct smtp_conns *sc)
{
	sc->draining = true;
	sc->listening = false;
	for (uint32_t i = 0; i < sc->w->listen_count; i++) {
		struct io_uring_sqe *sqe = ring_sqe(sc->env.ring);
		io_uring_prep_cancel64(sqe, ring_ud(RING_OP_ACCEPT, 0, i), 0);
		io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_CANCEL, 0, 0));
		/* The pending accept keeps its own reference until cancelled. */
		close(sc->w->listen_fds[i]);
		sc->w->listen_fds[i] = -1;
	}
}

/* The expiry gauge of the snapshot's certificates, by position. */
static void conns_publish_cert_expiry(struct smtp_conns *sc)
{
	_Static_assert(TLS_CERT_PAIRS_MAX <= METRICS_TLS_CERTS_MAX, "a gauge per certificate");
	const struct tls_ctx *tls = sc->cfg->tls;
	uint32_t count = tls ? tls_ctx_cert_count(tls) : 0;
	for (uint32_t i = 0; i < METRICS_TLS_CERTS_MAX; i++) {
		int64_t at = i < count ? tls_ctx_cert_not_after(tls, i) : 0;
		metrics_set(&sc->w->metrics->tls_cert_expiry[i], at > 0 ? (uint64_t)at : 0);
	}
}

void smtp_conns_set_config(struct smtp_conns *sc, const struct config *cfg)
{
	sc->cfg = cfg;
	smtp_conns_publish_held(sc);
	conns_publish_cert_expiry(sc);
}

int smtp_conns_init(struct smtp_conns *sc, struct worker *w, const struct config *cfg,
		    const struct loop_clock *clock, struct transport_env env,
		    struct buf_ring *bufs, struct txn_budget *budget,
		    const struct smtp_conn_hooks *hooks)
{
	memset(sc, 0, sizeof(*sc));
	sc->w = w;
	sc->cfg = cfg;
	sc->clock = clock;
	sc->env = env;
	sc->bufs = bufs;
	sc->budget = budget;
	sc->front = w->front;
	budget->mail_gate = conn_mail_gate;
	budget->mail_gate_ctx = sc;
	sc->hooks = *hooks;
	sc->rearm_head = CONN_NONE;
	timer_wheel_init(&sc->wheel, clock->now_ms);
	for (unsigned why = 0; why < SMTP_REFUSE_COUNT; why++) {
		struct smtp_out out = { sc->reject_reply[why], 0, sizeof(sc->reject_reply[why]) };
		sc->reject_reply_len[why] = smtp_reply_refuse_connection(
			cfg->session.hostname, (enum smtp_refusal)why, &out);
		RMX_ASSERT(sc->reject_reply_len[why] > 0);
	}
	conns_publish_cert_expiry(sc);
	return conn_slab_init(&sc->slab, cfg->max_connections + HTTP_CONNECTIONS_MAX);
}

void smtp_conns_free(struct smtp_conns *sc)
{
	conn_slab_free(&sc->slab);
	while (sc->reply_pool_count)
		free(sc->reply_pool[--sc->reply_pool_count]);
}
