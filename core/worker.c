/*
 * worker.c - the event loop of one worker: accept, receive, feed the pure
 * session, send replies, group-commit finished messages, prepare spare
 * segments (and their delivery logs), expire deadlines, serve the metrics
 * endpoint, drive the forwarder (forward.c), drain on shutdown.
 *
 * The loop has liburing examples/proxy.c's shape: submit and wait, reap every
 * completion with io_uring_for_each_cqe, advance once, dispatch on the op in
 * user_data. Receive buffers come from the provided buffer ring and go back
 * to it as soon as the session has consumed them (DESIGN.md rule 3); a
 * partial command line, or input that must wait, is carried per connection.
 * At most one send is in flight per connection; the replies produced by one
 * read go out in one send. Direct system calls are the non-blocking socket
 * chores (setsockopt, getpeername, shutdown, close) and, only when an
 * operator asks, the reading of request files (control.c).
 */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../storage/record.h"
#include "../storage/store.h"
#include "../storage/delivery_log.h"
#include "../storage/queue.h"
#include "conn.h"
#include "control.h"
#include "forward.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "ring.h"
#include "timer.h"
#include "txn.h"


enum spare_step {
	SPARE_IDLE,
	SPARE_OPEN,
	SPARE_FALLOCATE,
	SPARE_ZERO,
	SPARE_DLOG, /* the segment's delivery log, created empty */
	SPARE_SYNC,
	SPARE_DIRSYNC
};

struct worker_loop {
	struct worker *w;
	const struct config *cfg;
	struct io_uring ring;
	struct ring_info ring_info;
	struct buf_ring bufs;
	uint32_t cfg_users[CONFIG_SNAPSHOTS_MAX]; /* open sessions per config snapshot */
	void *reply_pool[REPLY_BUFFER_POOL_MAX]; /* free reply buffers */
	uint32_t reply_pool_count;
	bool log_write_inflight;
	struct log_buffer logbuf;      /* this thread's log lines (log.h) */
	uint32_t bufs_peak;            /* most buffers filled in one batch, this second */
	uint64_t bufs_peak_since_ms;
	struct conn_slab slab;         /* SMTP connections, then HTTP_CONNECTIONS_MAX more */
	uint32_t http_open;            /* metrics-endpoint connections in the slab */
	struct timer_wheel wheel;
	struct txn_budget budget;
	uint64_t now_ms;        /* CLOCK_MONOTONIC, once per loop turn */
	uint64_t now_ns;        /* the same, in nanoseconds (latency metrics) */
	int64_t now_unix_ms;    /* CLOCK_REALTIME, once per loop turn */
	uint64_t wake_value;
	bool listening;
	bool draining;
	uint64_t drain_deadline_ms;

	/* Group commit: one in flight. */
	bool commit_inflight;
	bool commit_sync;
	int commit_write_result;
	uint64_t commit_started_ns;
	uint64_t commit_bytes;

	/* Spare segment preparation. */
	enum spare_step spare_step;
	uint32_t spare_seq;
	int spare_fd;
	uint64_t spare_offset;
	bool spare_direct;             /* the spare is open with O_DIRECT for its zero-fill */
	char spare_path[PATH_MAX];
	uint8_t *zero_chunk;
	char spare_dlog_path[PATH_MAX];

	struct forward *forward;

	/* Connections whose finished message waits for room in the store. */
	uint32_t reserve_head, reserve_tail;
	/* Connections whose recv must be re-armed after -ENOBUFS. */
	uint32_t rearm_head;

	uint32_t accept_rearm_mask;     /* listeners whose accept waits for a re-arm */
	bool accept_rearm_http;         /* the metrics listener's accept, likewise */
	uint64_t accept_rearm_at_ms;
	uint64_t accept_errors;         /* since the last accept_failed log line */
	uint64_t accept_error_logged_ms;

	uint8_t reject_reply[REJECT_REPLY_BYTES];
	size_t reject_reply_len;
};

static void conn_close(struct worker_loop *l, struct conn *c);
static void conn_pump(struct worker_loop *l, struct conn *c);
static void http_input(struct worker_loop *l, struct conn *c, const uint8_t *p, size_t n);

/* ---- time ---------------------------------------------------------------- */

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void loop_clock(struct worker_loop *l)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	l->now_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	l->now_ms = l->now_ns / 1000000u;
	clock_gettime(CLOCK_REALTIME, &ts);
	l->now_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	l->budget.now_ns = l->now_ns;
}

static uint32_t timeout_s(const struct config *cfg, enum smtp_timeout_kind kind)
{
	switch (kind) {
	case SMTP_TIMEOUT_DATA:
		return cfg->data_timeout_s;
	case SMTP_TIMEOUT_COMMAND:
		return cfg->command_timeout_s;
	default:
		return cfg->idle_timeout_s;
	}
}

/* What the session waits for; between BDAT chunks the body is still open,
 * so the data deadline goes on (a chunk's command does not restart it). */
static enum smtp_timeout_kind conn_timeout_kind(const struct conn *c)
{
	enum smtp_timeout_kind kind = smtp_session_timeout_kind(&c->session);
	if (kind == SMTP_TIMEOUT_COMMAND && c->txn.active && c->txn.body.len > 0 &&
	    !(c->flags & (CONN_WAIT_COMMIT | CONN_WAIT_RESERVE)))
		return SMTP_TIMEOUT_DATA;
	return kind;
}

static void conn_set_deadline(struct worker_loop *l, struct conn *c, uint64_t at_ms)
{
	c->deadline_ms = at_ms;
	timer_arm(&l->wheel, &c->timer, at_ms > l->now_ms ? at_ms - l->now_ms : 0);
}

/* A fresh deadline for what the session waits for now: after a reply we
 * owed (the client's time starts again), and at accept. */
static void conn_arm_deadline(struct worker_loop *l, struct conn *c)
{
	enum smtp_timeout_kind kind = conn_timeout_kind(c);
	c->deadline_kind = (uint8_t)kind;
	c->deadline_commands = c->txn.commands;
	conn_set_deadline(l, c, l->now_ms + (uint64_t)timeout_s(l->cfg, kind) * 1000u);
}

/*
 * After input: the deadline moves only with progress (RFC 5321 4.5.3.2: a
 * command must arrive whole within its timeout, counted from when we began
 * to wait for it). A new command, or a change of what the session waits
 * for, starts a fresh deadline; bytes of a line still incomplete do not. In
 * a body, each of the body_bytes received moves the deadline by
 * 1 / min_data_rate seconds, never beyond data_timeout from now, so a
 * trickle cannot hold the connection much past data_timeout.
 */
static void conn_deadline_progress(struct worker_loop *l, struct conn *c, size_t body_bytes)
{
	enum smtp_timeout_kind kind = conn_timeout_kind(c);
	if (!c->timer.armed || kind != c->deadline_kind ||
	    (kind != SMTP_TIMEOUT_DATA && c->txn.commands != c->deadline_commands)) {
		conn_arm_deadline(l, c);
		return;
	}
	if (kind != SMTP_TIMEOUT_DATA || body_bytes == 0)
		return;
	uint64_t cap_ms = l->now_ms + (uint64_t)l->cfg->data_timeout_s * 1000u;
	uint64_t more_ms = (uint64_t)body_bytes * 1000u / l->cfg->min_data_rate_bytes_per_s;
	uint64_t at_ms = RMX_MIN(c->deadline_ms + more_ms, cap_ms);
	if (at_ms != c->deadline_ms)
		conn_set_deadline(l, c, at_ms);
}

/* ---- submission helpers -------------------------------------------------- */

static void arm_accept(struct worker_loop *l, uint32_t i)
{
	struct io_uring_sqe *sqe = ring_sqe(&l->ring);
	io_uring_prep_multishot_accept(sqe, l->w->listen_fds[i], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_ACCEPT, 0, i));
}

/*
 * Arms a receive into the buffer ring: multishot while the session keeps up
 * with its input, single-shot (one buffer per completion) while input is
 * carried, so a client far ahead of us cannot pour its whole socket buffer
 * into the carry in one wake-up.
 */
static void arm_recv(struct worker_loop *l, struct conn *c)
{
	RMX_ASSERT(!(c->flags & CONN_RECV_ARMED));
	struct io_uring_sqe *sqe = ring_sqe(&l->ring);
	if (c->carry_len == 0 && !(c->flags & CONN_WAITING))
		io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	else
		io_uring_prep_recv(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = l->bufs.bgid;
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_RECV, c->gen, conn_index(&l->slab, c)));
	c->flags |= CONN_RECV_ARMED;
}

/*
 * Keeps the receive side in step with the carry buffer: a client that sends
 * far ahead of our replies is paused (its multishot recv cancelled, so TCP
 * pushes back) once CARRY_SOFT_MAX_BYTES wait, and resumed at half that.
 */
static void conn_recv_update(struct worker_loop *l, struct conn *c)
{
	if (c->flags & (CONN_CLOSING | CONN_EOF | CONN_REARM))
		return;
	bool paused = c->flags & CONN_RECV_PAUSED;
	bool too_full = c->carry_len > (paused ? CARRY_SOFT_MAX_BYTES / 2 : CARRY_SOFT_MAX_BYTES);
	if (too_full) {
		if ((c->flags & CONN_RECV_ARMED) && !paused) {
			struct io_uring_sqe *sqe = ring_sqe(&l->ring);
			io_uring_prep_cancel64(sqe, ring_ud(RING_OP_RECV, c->gen, conn_index(&l->slab, c)), 0);
			io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_CANCEL, 0, 0));
		}
		c->flags |= CONN_RECV_PAUSED;
		return;
	}
	c->flags &= ~CONN_RECV_PAUSED;
	if (!(c->flags & CONN_RECV_ARMED))
		arm_recv(l, c);
}

static void arm_http_accept(struct worker_loop *l)
{
	struct io_uring_sqe *sqe = ring_sqe(&l->ring);
	io_uring_prep_multishot_accept(sqe, l->w->metrics_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_HTTP_ACCEPT, 0, 0));
}

static void arm_wake(struct worker_loop *l)
{
	struct io_uring_sqe *sqe = ring_sqe(&l->ring);
	io_uring_prep_read(sqe, l->w->wake_fd, &l->wake_value, sizeof(l->wake_value), 0);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_WAKE, 0, 0));
}

/* Sends what the session wrote, if nothing is in flight. */
static void conn_flush(struct worker_loop *l, struct conn *c)
{
	if ((c->flags & CONN_SEND_INFLIGHT) || c->out.len == 0)
		return;
	struct io_uring_sqe *sqe = ring_sqe(&l->ring);
	io_uring_prep_send(sqe, c->fd, c->out.buf, c->out.len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_SEND, c->gen, conn_index(&l->slab, c)));
	c->send_bytes = (uint32_t)c->out.len;
	c->flags |= CONN_SEND_INFLIGHT;
}

/* Gives the connection a reply buffer (from the worker's pool) before the
 * session may write a reply. False: out of memory. */
static bool conn_out_ready(struct worker_loop *l, struct conn *c)
{
	if (c->out.buf)
		return true;
	c->out.buf = l->reply_pool_count ? l->reply_pool[--l->reply_pool_count]
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
static void conn_out_put(struct worker_loop *l, struct conn *c)
{
	if (!c->out.buf || c->out.len || (c->flags & CONN_SEND_INFLIGHT))
		return;
	if (c->out.cap == SMTP_REPLY_BUFFER_BYTES && !(c->flags & CONN_HTTP) &&
	    l->reply_pool_count < REPLY_BUFFER_POOL_MAX)
		l->reply_pool[l->reply_pool_count++] = c->out.buf;
	else
		free(c->out.buf);
	c->out.buf = NULL;
	c->out.cap = 0;
}

/* ---- connection life ----------------------------------------------------- */

/* Tells main.c which config snapshots this worker still reads: the
 * current one and those of sessions still open. */
static void cfg_publish_held(struct worker_loop *l)
{
	unsigned mask = 1u << l->cfg->snapshot;
	for (uint32_t k = 0; k < CONFIG_SNAPSHOTS_MAX; k++)
		if (l->cfg_users[k])
			mask |= 1u << k;
	if (atomic_load_explicit(&l->w->cfg_held_mask, memory_order_relaxed) != mask)
		atomic_store_explicit(&l->w->cfg_held_mask, mask, memory_order_release);
}

static void conn_cfg_release(struct worker_loop *l, struct conn *c)
{
	if (c->cfg_snapshot < 0)
		return;
	RMX_ASSERT(l->cfg_users[c->cfg_snapshot] > 0);
	if (--l->cfg_users[c->cfg_snapshot] == 0 && (uint32_t)c->cfg_snapshot != l->cfg->snapshot)
		cfg_publish_held(l);
	c->cfg_snapshot = -1;
}

/* event=connection_close: who, how long, how much. */
static void log_connection_close(struct worker_loop *l, const struct conn *c)
{
	struct log_msg m;
	if (!log_begin(&m, LOG_INFO, "connection_close"))
		return;
	log_add_u64(&m, "worker", l->w->id);
	log_add_str(&m, "client", c->peer.ip);
	log_add_span(&m, "helo", smtp_session_helo(&c->session));
	log_add_u64(&m, "duration_ms", l->now_ms - (uint64_t)c->opened_ms);
	log_add_u64(&m, "commands", c->txn.commands);
	log_add_u64(&m, "messages", c->messages);
	log_add_u64(&m, "bytes_in", c->bytes_in);
	log_add_u64(&m, "bytes_out", c->bytes_out);
	log_end(&m);
}

static void conn_maybe_release(struct worker_loop *l, struct conn *c)
{
	if (!(c->flags & CONN_CLOSING))
		return;
	if (c->flags & (CONN_RECV_ARMED | CONN_SEND_INFLIGHT | CONN_WAIT_COMMIT))
		return;
	if (c->flags & (CONN_WAIT_RESERVE | CONN_REARM))
		return; /* on a worker list: released when taken off it */
	timer_cancel(&l->wheel, &c->timer);
	if (c->txn.active || c->txn.body.data || c->txn.env.data)
		txn_reset(&c->txn);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->cfg_snapshot >= 0)
		log_connection_close(l, c);
	conn_cfg_release(l, c);
	c->out.len = 0; /* never to be sent now */
	conn_out_put(l, c);
	bool http = c->flags & CONN_HTTP;
	conn_release(&l->slab, c);
	if (http) {
		/* Metrics clients count neither as SMTP connections nor in the limit. */
		RMX_ASSERT(l->http_open > 0);
		l->http_open--;
		return;
	}
	metrics_dec(&l->w->metrics->connections_active);
	unsigned prev = atomic_fetch_sub_explicit(l->w->connections, 1, memory_order_relaxed);
	RMX_ASSERT(prev > 0);
}

/* Stops the connection now: no more replies. */
static void conn_close(struct worker_loop *l, struct conn *c)
{
	if (c->flags & CONN_CLOSING)
		return;
	c->flags |= CONN_CLOSING;
	c->flags &= ~(CONN_CLOSE_AFTER_SEND | CONN_LINGER | CONN_WAIT_FLUSH);
	timer_cancel(&l->wheel, &c->timer);
	/* Wakes the multishot recv with a final completion. */
	if (shutdown(c->fd, SHUT_RDWR) != 0 && errno != ENOTCONN)
		log_debug("event=shutdown_failed errno=%s", log_errno_name(errno));
	conn_maybe_release(l, c);
}

/* The final reply has gone out: send FIN, read and drop what still comes,
 * then close. The client reads our last reply instead of a reset. */
static void conn_linger(struct worker_loop *l, struct conn *c)
{
	c->flags &= ~CONN_CLOSE_AFTER_SEND;
	c->flags |= CONN_LINGER;
	if (shutdown(c->fd, SHUT_WR) != 0) {
		conn_close(l, c);
		return;
	}
	if (!(c->flags & CONN_RECV_ARMED) || (c->flags & CONN_EOF)) {
		conn_close(l, c);
		return;
	}
	timer_arm(&l->wheel, &c->timer, LINGER_MS);
}

/* After the session or a send changed something: send, close, or resume. */
static void conn_after(struct worker_loop *l, struct conn *c)
{
	if (c->flags & CONN_CLOSING)
		return;
	conn_flush(l, c);
	if ((c->flags & CONN_CLOSE_AFTER_SEND) && !(c->flags & CONN_SEND_INFLIGHT)) {
		conn_linger(l, c);
		return;
	}
	if ((c->flags & CONN_EOF) && !(c->flags & (CONN_WAITING | CONN_SEND_INFLIGHT)))
		conn_close(l, c);
}

/* ---- metrics --------------------------------------------------------------- */

/* ---- the store ------------------------------------------------------------ */

static uint64_t conn_cookie(struct worker_loop *l, struct conn *c)
{
	return ((uint64_t)c->gen << 32) | conn_index(&l->slab, c);
}

static void reserve_wait_push(struct worker_loop *l, struct conn *c)
{
	c->flags |= CONN_WAIT_RESERVE;
	c->next = CONN_NONE;
	uint32_t idx = conn_index(&l->slab, c);
	if (l->reserve_tail == CONN_NONE)
		l->reserve_head = idx;
	else
		l->slab.conns[l->reserve_tail].next = idx;
	l->reserve_tail = idx;
}

/*
 * Turns the finished transaction into a store record: reserve its place
 * (which fixes the queue id), write the Received: header in front of the
 * body, seal, append. Returns 0, -EAGAIN (no room yet: retried later) or a
 * failure to report to the client.
 */
static int conn_store_message(struct worker_loop *l, struct conn *c)
{
	struct txn *t = &c->txn;
	char received[SMTP_RECEIVED_HEADER_MAX_BYTES];
	char id_text[RECORD_QUEUE_ID_CHARS];
	int64_t now_unix = l->now_unix_ms / 1000;
	memset(id_text, '0', sizeof(id_text));
	size_t rlen = smtp_session_received(&c->session, span_make(id_text, sizeof(id_text)),
					    now_unix, received, sizeof(received));
	RMX_ASSERT(rlen > 0 && rlen <= TXN_HEADROOM_BYTES);
	uint64_t qid;
	int rc = store_reserve(l->w->shards[0].store, txn_record_bytes(t, rlen), &qid);
	if (rc != 0)
		return rc;
	queue_id_format(qid, id_text);
	size_t rlen2 = smtp_session_received(&c->session, span_make(id_text, sizeof(id_text)),
					     now_unix, received, sizeof(received));
	RMX_ASSERT(rlen2 == rlen);
	txn_set_received(t, received, rlen);
	txn_seal(t, qid, l->now_unix_ms);
	rc = store_append(l->w->shards[0].store, qid, t->parts, t->nparts, conn_cookie(l, c));
	RMX_ASSERT(rc == 0); /* a reservation always takes its record */
	c->flags |= CONN_WAIT_COMMIT;
	return 0;
}

/* The session finished a message: add the client facts, then store it. */
static void conn_message_done(struct worker_loop *l, struct conn *c)
{
	int rc = txn_add_client(&c->txn, span_make(c->peer.ip, strlen(c->peer.ip)),
				smtp_session_helo(&c->session),
				smtp_session_protocol(&c->session));
	if (rc == 0)
		rc = conn_store_message(l, c);
	if (rc == -EAGAIN) {
		reserve_wait_push(l, c);
		return;
	}
	if (rc != 0) {
		log_error("event=store_reject worker=%u error=%s", l->w->id, log_errno_name(rc));
		txn_reset(&c->txn);
		smtp_session_committed(&c->session, rc, span_make("", 0), &c->out);
	}
}

static void commit_done_one(void *ctx, uint64_t cookie, int result)
{
	struct worker_loop *l = ctx;
	if (cookie & FORWARD_COOKIE_BIT) {
		forward_dsn_committed(l->forward, cookie, result);
		return;
	}
	uint32_t slot = (uint32_t)cookie;
	struct conn *c = &l->slab.conns[slot];
	RMX_ASSERT(slot < l->slab.cap && (c->flags & CONN_USED) && (c->flags & CONN_WAIT_COMMIT));
	RMX_ASSERT(c->gen == (uint32_t)(cookie >> 32));
	char id_text[RECORD_QUEUE_ID_CHARS];
	queue_id_format(c->txn.queue_id, id_text);
	if (result == 0) {
		struct metrics_worker *m = l->w->metrics;
		uint64_t body_bytes = c->txn.body.len - TXN_HEADROOM_BYTES;
		metrics_inc(&m->messages_accepted);
		metrics_add(&m->received_bytes, body_bytes);
		metrics_observe_size_bytes(&m->message_size, body_bytes);
		metrics_observe_latency_ns(&m->ack_latency, l->now_ns - c->msg_done_ns);
		if (c->txn.mail_ns)
			metrics_observe_latency_ns(&m->transaction_duration,
						   l->now_ns - c->txn.mail_ns);
		c->messages++;
		txn_log_accepted(&c->txn);
	}
	if (result == 0)
		forward_record_durable(l->forward, c->txn.queue_id,
				       c->txn.header.length + record_padding(c->txn.header.length),
				       c->txn.rcpt_count, c->txn.header.arrival_unix_ms);
	txn_reset(&c->txn);
	c->flags &= ~CONN_WAIT_COMMIT;
	if (result != 0)
		log_error("event=commit_failed worker=%u error=%s", l->w->id, log_errno_name(result));
	if (c->flags & CONN_CLOSING) {
		conn_maybe_release(l, c);
		return;
	}
	if (!conn_out_ready(l, c)) {
		conn_close(l, c);
		return;
	}
	smtp_session_committed(&c->session, result, span_make(id_text, sizeof(id_text)), &c->out);
	conn_arm_deadline(l, c);
	conn_pump(l, c);
}

static void commit_submit(struct worker_loop *l)
{
	struct store_commit sc;
	if (l->commit_inflight || !store_commit_begin(l->w->shards[0].store, &sc))
		return;
	struct io_uring_sqe *sqes[2]; /* one submission: the link must not be cut */
	ring_sqes(&l->ring, sc.sync ? 2 : 1, sqes);
	struct io_uring_sqe *sqe = sqes[0];
	io_uring_prep_writev(sqe, sc.fd, sc.iov, (unsigned)sc.iovcnt, sc.offset);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_COMMIT_WRITE, 0, 0));
	if (sc.sync) {
		sqe->flags |= IOSQE_IO_LINK;
		sqe = sqes[1];
		io_uring_prep_fsync(sqe, sc.fd, IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_COMMIT_SYNC, 0, 0));
	}
	l->commit_inflight = true;
	l->commit_sync = sc.sync;
	l->commit_bytes = sc.bytes;
	l->commit_write_result = 0;
	l->commit_started_ns = mono_ns();
	metrics_observe_batch_records(&l->w->metrics->commit_batch, sc.records);
}

static void commit_finish(struct worker_loop *l, int result)
{
	RMX_ASSERT(l->commit_inflight);
	l->commit_inflight = false;
	metrics_observe_latency_ns(&l->w->metrics->fsync_latency,
				   mono_ns() - l->commit_started_ns);
	if (result < 0)
		metrics_inc(&l->w->metrics->store_commit_failures);
	store_commit_done(l->w->shards[0].store, result, commit_done_one, l);
}

static void on_commit_write(struct worker_loop *l, int res)
{
	int result = res;
	if (res >= 0 && (uint64_t)res != l->commit_bytes)
		result = -EIO; /* a short write into a pre-zeroed segment is a failure */
	if (!l->commit_sync) {
		commit_finish(l, result < 0 ? result : 0);
		return;
	}
	l->commit_write_result = result < 0 ? result : 0;
}

static void on_commit_sync(struct worker_loop *l, int res)
{
	/* A broken link reports -ECANCELED here: the write's error is the cause. */
	int result = l->commit_write_result != 0 ? l->commit_write_result : res;
	commit_finish(l, result < 0 ? result : 0);
}

/* Spare segments: open, fallocate, header block + zero-fill, fdatasync,
 * directory fsync. */
static void spare_step_submit(struct worker_loop *l)
{
	struct io_uring_sqe *sqe = ring_sqe(&l->ring);
	switch (l->spare_step) {
	case SPARE_FALLOCATE:
		io_uring_prep_fallocate(sqe, l->spare_fd, 0, 0, (off_t)l->cfg->segment_size_bytes);
		break;
	case SPARE_ZERO: {
		/* The header block first, then zeros (spare_start: the buffer). */
		const uint64_t zeros_bytes = SEGMENT_ZERO_CHUNK_BYTES - SEGMENT_HEADER_BYTES;
		const uint8_t *src = l->zero_chunk;
		uint64_t n = RMX_MIN(l->cfg->segment_size_bytes - l->spare_offset, zeros_bytes);
		if (l->spare_offset < SEGMENT_HEADER_BYTES) {
			src = l->zero_chunk + zeros_bytes + l->spare_offset;
			n = SEGMENT_HEADER_BYTES - l->spare_offset;
		}
		io_uring_prep_write(sqe, l->spare_fd, src, (unsigned)n, l->spare_offset);
		break;
	}
	case SPARE_DLOG:
		io_uring_prep_openat(sqe, AT_FDCWD, l->spare_dlog_path,
				     O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		break;
	case SPARE_SYNC:
		io_uring_prep_fsync(sqe, l->spare_fd, IORING_FSYNC_DATASYNC);
		break;
	case SPARE_DIRSYNC:
		io_uring_prep_fsync(sqe, store_dir_fd(l->w->shards[0].store), 0);
		break;
	default:
		RMX_ASSERT(!"bad spare step");
	}
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_SPARE, 0, l->spare_step));
}

/*
 * The spare is zero-filled with O_DIRECT: 64 MiB of zeros through the page
 * cache would be dirty data that the next journal commit (every group
 * commit's fdatasync) has to wait for, stalling acknowledgements for
 * hundreds of milliseconds. A file system without O_DIRECT (tmpfs) gets
 * buffered writes. O_DIRECT is cleared before the store writes records.
 */
static void spare_open_submit(struct worker_loop *l)
{
	l->spare_step = SPARE_OPEN;
	struct io_uring_sqe *sqe = ring_sqe(&l->ring);
	io_uring_prep_openat(sqe, AT_FDCWD, l->spare_path,
			     O_RDWR | O_CREAT | O_CLOEXEC | (l->spare_direct ? O_DIRECT : 0), 0600);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_SPARE, 0, SPARE_OPEN));
}

static void spare_start(struct worker_loop *l)
{
	const char *path;
	uint32_t seq;
	if (l->spare_step != SPARE_IDLE || l->draining || !store_spare_wanted(l->w->shards[0].store, &path, &seq))
		return;
	if (!l->zero_chunk) {
		/* Zeros, then in the last SEGMENT_HEADER_BYTES the header block of
		 * the spare being made: page-aligned for O_DIRECT, and only that
		 * block is ever written to. */
		_Static_assert(SEGMENT_ZERO_CHUNK_BYTES > SEGMENT_HEADER_BYTES &&
				       SEGMENT_ZERO_CHUNK_BYTES % SEGMENT_HEADER_BYTES == 0,
			       "the header block ends the zero chunk, aligned");
		void *z = mmap(NULL, SEGMENT_ZERO_CHUNK_BYTES, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (z == MAP_FAILED) {
			store_spare_ready(l->w->shards[0].store, seq, -errno);
			return;
		}
		l->zero_chunk = z;
	}
	/* A fresh salt per segment: what makes its record framing unforgeable. */
	uint64_t salt;
	ssize_t got = getrandom(&salt, sizeof(salt), GRND_NONBLOCK);
	if (got != (ssize_t)sizeof(salt)) {
		store_spare_ready(l->w->shards[0].store, seq, got < 0 ? -errno : -EIO);
		return;
	}
	store_spare_header(l->w->shards[0].store, salt,
			   l->zero_chunk + SEGMENT_ZERO_CHUNK_BYTES - SEGMENT_HEADER_BYTES);
	/* <seq>.dlog beside <seq>.seg: the same directory, the log's name. */
	const char *slash = strrchr(path, '/');
	size_t dir_len = slash ? (size_t)(slash - path + 1) : 0;
	char delivery_log_name[DELIVERY_LOG_NAME_MAX_BYTES];
	delivery_log_name_format(delivery_log_name, seq);
	int n = snprintf(l->spare_dlog_path, sizeof(l->spare_dlog_path), "%.*s%s", (int)dir_len,
			 path, delivery_log_name);
	RMX_ASSERT(n > 0 && (size_t)n < sizeof(l->spare_dlog_path));
	n = snprintf(l->spare_path, sizeof(l->spare_path), "%s", path);
	RMX_ASSERT(n > 0 && (size_t)n < sizeof(l->spare_path));
	l->spare_seq = seq;
	l->spare_fd = -1;
	l->spare_offset = 0;
	l->spare_direct = true;
	spare_open_submit(l);
}

static void on_spare(struct worker_loop *l, int res)
{
	RMX_ASSERT(l->spare_step != SPARE_IDLE);
	if (res < 0 && l->spare_step == SPARE_DLOG) {
		/* The segment is fine; without its log, its outcomes are not kept
		 * and it is never deleted in this run (the queue says so). */
		log_error("event=delivery_log_open_failed worker=%u seq=%u error=%s", l->w->id,
			  l->spare_seq, log_errno_name(res));
		metrics_inc(&l->w->metrics->delivery_log_failures);
		int rc = queue_dlog_ready(l->w->shards[0].queue, l->spare_seq, res);
		RMX_ASSERT(rc == 0 || rc == -EEXIST);
		l->spare_step = l->cfg->fsync ? SPARE_SYNC : SPARE_IDLE;
		if (l->spare_step == SPARE_IDLE) {
			store_spare_ready(l->w->shards[0].store, l->spare_seq, l->spare_fd);
			l->spare_fd = -1;
			return;
		}
		spare_step_submit(l);
		return;
	}
	if (res == -EINVAL && l->spare_step == SPARE_OPEN && l->spare_direct) {
		l->spare_direct = false; /* no O_DIRECT here: buffered zero-fill */
		spare_open_submit(l);
		return;
	}
	if (res < 0) {
		log_error("event=spare_segment_failed worker=%u seq=%u step=%d error=%s", l->w->id,
			  l->spare_seq, (int)l->spare_step, log_errno_name(res));
		metrics_inc(&l->w->metrics->store_spare_failures);
		if (l->spare_fd >= 0)
			close(l->spare_fd);
		l->spare_step = SPARE_IDLE;
		store_spare_ready(l->w->shards[0].store, l->spare_seq, res);
		return;
	}
	switch (l->spare_step) {
	case SPARE_OPEN:
		l->spare_fd = res;
		l->spare_step = SPARE_FALLOCATE;
		break;
	case SPARE_FALLOCATE:
		l->spare_step = SPARE_ZERO;
		break;
	case SPARE_ZERO:
		l->spare_offset += (uint64_t)res;
		if (res == 0) {
			on_spare(l, -EIO);
			return;
		}
		if (l->spare_offset < l->cfg->segment_size_bytes)
			break;
		if (l->spare_direct) {
			int fl = fcntl(l->spare_fd, F_GETFL);
			if (fl < 0 || fcntl(l->spare_fd, F_SETFL, fl & ~O_DIRECT) != 0) {
				on_spare(l, -errno);
				return;
			}
			l->spare_direct = false;
		}
		l->spare_step = SPARE_DLOG;
		break;
	case SPARE_DLOG: {
		int rc = queue_dlog_ready(l->w->shards[0].queue, l->spare_seq, res);
		if (rc != 0) {
			/* -EEXIST: the queue already holds this log (from start-up). */
			close(res);
			if (rc != -EEXIST) {
				log_error("event=delivery_log_open_failed worker=%u seq=%u error=%s",
					  l->w->id, l->spare_seq, log_errno_name(rc));
				metrics_inc(&l->w->metrics->delivery_log_failures);
			}
		}
		l->spare_step = l->cfg->fsync ? SPARE_SYNC : SPARE_IDLE;
		break;
	}
	case SPARE_SYNC:
		l->spare_step = SPARE_DIRSYNC;
		break;
	case SPARE_DIRSYNC:
		l->spare_step = SPARE_IDLE;
		break;
	default:
		RMX_ASSERT(!"bad spare step");
	}
	if (l->spare_step == SPARE_IDLE) {
		store_spare_ready(l->w->shards[0].store, l->spare_seq, l->spare_fd);
		l->spare_fd = -1;
		return;
	}
	spare_step_submit(l);
}

/* Once per loop turn: start a commit, a spare, and retry waiting messages. */
static void store_kick(struct worker_loop *l)
{
	l->budget.store_state = store_admit(l->w->shards[0].store);
	while (l->reserve_head != CONN_NONE) {
		struct conn *c = &l->slab.conns[l->reserve_head];
		int rc = 0;
		if (!(c->flags & CONN_CLOSING)) {
			rc = conn_store_message(l, c);
			if (rc == -EAGAIN)
				break;
		}
		l->reserve_head = c->next;
		if (l->reserve_head == CONN_NONE)
			l->reserve_tail = CONN_NONE;
		c->flags &= ~CONN_WAIT_RESERVE;
		if (c->flags & CONN_CLOSING) {
			conn_maybe_release(l, c);
			continue;
		}
		if (rc != 0) {
			txn_reset(&c->txn);
			if (!conn_out_ready(l, c)) { /* its earlier replies were sent meanwhile */
				conn_close(l, c);
				continue;
			}
			smtp_session_committed(&c->session, rc, span_make("", 0), &c->out);
			conn_pump(l, c);
		}
	}
	commit_submit(l);
	spare_start(l);
	for (int fd; (fd = store_retired_fd(l->w->shards[0].store)) >= 0;)
		close(fd); /* a sealed segment the store has finished writing */
	forward_tick(l->forward, l->now_unix_ms, l->now_ms);
	commit_submit(l); /* a bounce the forwarder just stored */
	uint64_t bytes = 0, segments = 0;
	for (uint32_t k = 0; k < l->w->shard_count; k++) {
		struct store_stats ss;
		store_get_stats(l->w->shards[k].store, &ss);
		bytes += ss.bytes_used;
		segments += ss.segments;
	}
	metrics_set(&l->w->metrics->inflight_data_bytes, l->budget.inflight_bytes);
	metrics_set(&l->w->metrics->store_failed, l->budget.store_state == -EIO);
	struct ring_backlog_stats rb = ring_backlog_stats(&l->ring);
	metrics_set(&l->w->metrics->ring_backlog_sqes, rb.sqes_total);
	metrics_set(&l->w->metrics->ring_submit_failures, rb.submit_failures_total);
	metrics_set(&l->w->metrics->store_bytes, bytes);
	metrics_set(&l->w->metrics->store_segments, segments);
}

/* ---- feeding the session -------------------------------------------------- */

/*
 * Feeds p[0..n) to the session until it wants more, pauses or closes.
 * Returns the bytes consumed; the rest must be carried.
 */
static size_t conn_feed(struct worker_loop *l, struct conn *c, const uint8_t *p, size_t n)
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
			c->msg_done_ns = l->now_ns;
			conn_message_done(l, c);
			if (c->flags & CONN_WAITING)
				return used;
			break; /* refused at once (451/452): the session goes on */
		case SMTP_FEED_FLUSH:
			c->flags |= CONN_WAIT_FLUSH;
			return used;
		case SMTP_FEED_CLOSE:
			c->flags |= CONN_CLOSE_AFTER_SEND;
			return n;
		}
	}
	return used;
}

/* Feeds carried input while the session is not waiting; bytes_in arrived
 * just now (they move the data deadline). */
static void conn_pump_input(struct worker_loop *l, struct conn *c, size_t bytes_in)
{
	while (c->carry_len && !(c->flags & (CONN_WAITING | CONN_CLOSE_AFTER_SEND | CONN_CLOSING))) {
		if (!conn_out_ready(l, c)) {
			conn_close(l, c);
			return;
		}
		uint32_t before = c->carry_len;
		size_t used = conn_feed(l, c, c->carry, c->carry_len);
		conn_carry_consume(c, used);
		if (used == 0 || c->carry_len == before)
			break; /* a partial line: wait for more input */
	}
	if (!(c->flags & CONN_CLOSING)) {
		conn_deadline_progress(l, c, bytes_in);
		conn_recv_update(l, c);
	}
	conn_after(l, c);
}

static void conn_pump(struct worker_loop *l, struct conn *c)
{
	conn_pump_input(l, c, 0);
}

static void conn_input(struct worker_loop *l, struct conn *c, const uint8_t *p, size_t n)
{
	if (c->flags & (CONN_CLOSING | CONN_LINGER | CONN_CLOSE_AFTER_SEND))
		return; /* after the last reply, input is dropped */
	if (c->flags & CONN_HTTP) {
		http_input(l, c, p, n);
		return;
	}
	if (c->carry_len || (c->flags & CONN_WAITING)) {
		if (conn_carry_append(c, p, n) != 0) {
			log_warn("event=input_overflow worker=%u client=%s", l->w->id, c->peer.ip);
			metrics_inc(&l->w->metrics->connections_overflow_closed);
			conn_close(l, c);
			return;
		}
		conn_pump_input(l, c, n);
		return;
	}
	if (!conn_out_ready(l, c)) {
		conn_close(l, c);
		return;
	}
	size_t used = conn_feed(l, c, p, n);
	if (used < n && !(c->flags & CONN_CLOSE_AFTER_SEND) &&
	    conn_carry_append(c, p + used, n - used) != 0) {
		conn_close(l, c);
		return;
	}
	if (!(c->flags & CONN_CLOSING)) {
		conn_deadline_progress(l, c, n);
		conn_recv_update(l, c);
	}
	conn_after(l, c);
}

/* ---- the metrics endpoint --------------------------------------------------- */

/* Answers one request (or a malformed one) and closes after sending: every
 * response says "Connection: close", which keeps this path short. */
static void http_respond(struct worker_loop *l, struct conn *c, const struct http_request *req,
			 unsigned error_status)
{
	unsigned status = error_status ? error_status : http_request_refusal(req);
	enum http_body kind = HTTP_BODY_TEXT;
	const char *text = NULL;
	size_t body_cap = 64;
	if (!status) {
		switch (req->route) {
		case HTTP_ROUTE_METRICS:
			kind = HTTP_BODY_METRICS;
			body_cap = metrics_render_bound(l->w->metrics_static);
			status = 200;
			break;
		case HTTP_ROUTE_HEALTHZ:
			status = 200;
			text = "ok\n";
			break;
		case HTTP_ROUTE_READYZ:
			status = l->draining ? 503 : 200;
			text = l->draining ? "draining\n" : "ready\n";
			break;
		default:
			status = 404;
			break;
		}
	}
	if (!text && kind == HTTP_BODY_TEXT)
		text = http_status_reason(status);
	size_t cap = HTTP_RESPONSE_HEAD_MAX_BYTES + body_cap + 2;
	uint8_t *buf = malloc(cap);
	if (!buf) {
		conn_close(l, c);
		return;
	}
	/* The body goes after the largest head; the head is written in front of it. */
	char *body = (char *)buf + HTTP_RESPONSE_HEAD_MAX_BYTES;
	size_t body_len;
	if (kind == HTTP_BODY_METRICS) {
		body_len = metrics_render(l->w->all_metrics, l->w->worker_count, l->w->metrics_static,
					  body, body_cap);
		RMX_ASSERT(body_len <= body_cap);
	} else {
		body_len = (size_t)snprintf(body, body_cap, "%s%s", text,
					    text[strlen(text) - 1] == '\n' ? "" : "\n");
	}
	struct http_response r = http_response_for(error_status ? NULL : req, status, kind, body_len);
	r.close = true;
	r.keep_alive_10 = false;
	char head[HTTP_RESPONSE_HEAD_MAX_BYTES];
	size_t head_len = http_response_head(&r, head, sizeof(head));
	RMX_ASSERT(head_len > 0 && head_len <= HTTP_RESPONSE_HEAD_MAX_BYTES);
	uint8_t *start = buf + HTTP_RESPONSE_HEAD_MAX_BYTES - head_len;
	memcpy(start, head, head_len);
	size_t total = head_len + (r.head_only ? 0 : body_len);
	memmove(buf, start, total);
	free(c->out.buf);
	c->out.buf = buf;
	c->out.len = total;
	c->out.cap = cap;
	c->flags |= CONN_CLOSE_AFTER_SEND;
	conn_after(l, c);
}

static void http_input(struct worker_loop *l, struct conn *c, const uint8_t *p, size_t n)
{
	size_t consumed = 0;
	enum http_parse_status st = http_parse(c->http, p, n, &consumed);
	if (st == HTTP_PARSE_AGAIN)
		return;
	/* One request per connection: anything after it is dropped with the close. */
	http_respond(l, c, &c->http->request, st == HTTP_PARSE_ERROR ? c->http->error_status : 0);
}

static void on_http_accept(struct worker_loop *l, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		l->accept_rearm_http = true;
		l->accept_rearm_at_ms = l->now_ms + (cqe->res < 0 ? TIMER_TICK_MS : 0);
	}
	if (cqe->res < 0)
		return;
	/* The slab holds HTTP_CONNECTIONS_MAX slots beyond max_connections, and
	 * SMTP never takes more than max_connections of it: so an HTTP client
	 * within its pool always finds a slot, and never takes an SMTP one. */
	struct conn *c = l->http_open < HTTP_CONNECTIONS_MAX ? conn_alloc(&l->slab) : NULL;
	if (!c) {
		metrics_inc(&l->w->metrics->http_connections_rejected);
		close(cqe->res);
		return;
	}
	l->http_open++;
	c->fd = cqe->res;
	c->flags |= CONN_HTTP;
	txn_init(&c->txn, &l->budget);
	c->http = malloc(sizeof(*c->http));
	if (!c->http) {
		c->flags |= CONN_CLOSING;
		conn_maybe_release(l, c);
		return;
	}
	http_parser_init(c->http);
	arm_recv(l, c);
	timer_arm(&l->wheel, &c->timer, HTTP_DEADLINE_MS);
}

/* ---- completions ----------------------------------------------------------- */

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

static void reject_connection(struct worker_loop *l, int fd)
{
	struct io_uring_sqe *sqe = ring_sqe(&l->ring);
	io_uring_prep_send(sqe, fd, l->reject_reply, l->reject_reply_len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_REJECT_SEND, 0, (uint32_t)fd));
}

static void on_accept(struct worker_loop *l, struct io_uring_cqe *cqe)
{
	uint32_t i = ring_ud_slot(cqe->user_data);
	if (cqe->res < 0) {
		if (cqe->res == -ECANCELED)
			return;
		/* Out of descriptors or memory: the connection waits in the backlog.
		 * Re-arm after a tick, not at once (that would spin), and log at most
		 * once a second. */
		if (!(cqe->flags & IORING_CQE_F_MORE) && l->listening) {
			l->accept_rearm_mask |= 1u << i;
			l->accept_rearm_at_ms = l->now_ms + TIMER_TICK_MS;
		}
		l->accept_errors++;
		metrics_inc(&l->w->metrics->accept_errors);
		if (l->now_ms >= l->accept_error_logged_ms + 1000) {
			log_warn("event=accept_failed worker=%u error=%s count=%llu", l->w->id,
				 log_errno_name(cqe->res), (unsigned long long)l->accept_errors);
			l->accept_error_logged_ms = l->now_ms;
			l->accept_errors = 0;
		}
		return;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE) && l->listening)
		arm_accept(l, i);
	int fd = cqe->res;
	unsigned open = atomic_fetch_add_explicit(l->w->connections, 1, memory_order_relaxed);
	struct conn *c = NULL;
	if (open < l->cfg->max_connections && !l->draining)
		c = conn_alloc(&l->slab);
	if (!c) {
		atomic_fetch_sub_explicit(l->w->connections, 1, memory_order_relaxed);
		metrics_inc(&l->w->metrics->connections_rejected[l->draining
									? METRICS_CONN_REJECT_SHUTDOWN
									: METRICS_CONN_REJECT_LIMIT]);
		reject_connection(l, fd);
		return;
	}
	c->fd = fd;
	c->opened_ms = (int64_t)l->now_ms;
	metrics_inc(&l->w->metrics->connections_accepted);
	metrics_inc(&l->w->metrics->connections_active); /* released: decremented */
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	txn_init(&c->txn, &l->budget);
	if (!peer_from_fd(fd, &c->peer) || !conn_out_ready(l, c)) {
		c->flags |= CONN_CLOSING;
		conn_maybe_release(l, c);
		return;
	}
	c->cfg_snapshot = (int32_t)l->cfg->snapshot;
	l->cfg_users[l->cfg->snapshot]++;
	struct log_msg lm;
	if (log_begin(&lm, LOG_INFO, "connection_open")) {
		log_add_u64(&lm, "worker", l->w->id);
		log_add_str(&lm, "client", c->peer.ip);
		log_end(&lm);
	}
	smtp_session_start(&c->session, &l->cfg->session, &c->peer, &txn_ops, &c->txn, &c->out);
	arm_recv(l, c);
	conn_arm_deadline(l, c);
	conn_flush(l, c);
}

static void on_recv(struct worker_loop *l, struct io_uring_cqe *cqe)
{
	struct conn *c = conn_lookup(&l->slab, ring_ud_slot(cqe->user_data),
				     ring_ud_gen(cqe->user_data));
	bool has_buf = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
	uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	if (!c) {
		if (has_buf)
			buf_ring_return(&l->bufs, bid);
		return;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->flags &= ~CONN_RECV_ARMED;
	if (cqe->res > 0) {
		RMX_ASSERT(has_buf);
		c->bytes_in += (uint64_t)cqe->res;
		conn_input(l, c, buf_ring_addr(&l->bufs, bid), (size_t)cqe->res);
		buf_ring_return(&l->bufs, bid);
		if (!(c->flags & CONN_USED))
			return; /* released while handling the input */
	} else if (has_buf) {
		buf_ring_return(&l->bufs, bid);
	}
	if (c->flags & CONN_RECV_ARMED)
		return;
	if (c->flags & CONN_CLOSING) {
		conn_maybe_release(l, c); /* the final completion we waited for */
		return;
	}
	if (cqe->res == -ENOBUFS) {
		metrics_inc(&l->w->metrics->buffer_ring_enobufs);
		/* Re-armed after this batch has returned its buffers: no spinning. */
		if (!(c->flags & CONN_REARM)) {
			c->flags |= CONN_REARM;
			c->rearm_next = l->rearm_head;
			l->rearm_head = conn_index(&l->slab, c);
		}
		return;
	}
	if (cqe->res > 0 || (cqe->res == -ECANCELED && (c->flags & CONN_RECV_PAUSED))) {
		/* The kernel ended the multishot, or we paused it: re-arm when wanted. */
		conn_recv_update(l, c);
		return;
	}
	/* End of input (0) or an error. */
	c->flags |= CONN_EOF;
	if (c->flags & CONN_LINGER || cqe->res < 0) {
		conn_close(l, c);
		return;
	}
	/* Replies still owed (to input before the FIN) go out first; a message
	 * being made durable gets its answer; then the connection closes. */
	conn_after(l, c);
}

static void on_send(struct worker_loop *l, struct io_uring_cqe *cqe)
{
	struct conn *c = conn_lookup(&l->slab, ring_ud_slot(cqe->user_data),
				     ring_ud_gen(cqe->user_data));
	RMX_ASSERT(c != NULL); /* a connection is never released with a send in flight */
	RMX_ASSERT(c->flags & CONN_SEND_INFLIGHT);
	c->flags &= ~CONN_SEND_INFLIGHT;
	if (cqe->res < 0) {
		if (c->flags & CONN_CLOSING)
			conn_maybe_release(l, c);
		else
			conn_close(l, c);
		return;
	}
	size_t sent = (size_t)cqe->res;
	RMX_ASSERT(sent <= c->send_bytes && c->send_bytes <= c->out.len);
	c->bytes_out += sent;
	memmove(c->out.buf, c->out.buf + sent, c->out.len - sent);
	c->out.len -= sent;
	if (c->flags & CONN_CLOSING) {
		conn_maybe_release(l, c);
		return;
	}
	if (c->out.len == 0 && (c->flags & CONN_WAIT_FLUSH)) {
		c->flags &= ~CONN_WAIT_FLUSH;
		conn_pump(l, c);
	} else {
		conn_after(l, c);
	}
	/* Everything sent and the session waits for the client: the buffer
	 * goes back to the pool until the next reply. */
	if ((c->flags & CONN_USED) && !(c->flags & (CONN_CLOSING | CONN_HTTP)))
		conn_out_put(l, c);
}

static void on_timer(void *ctx, struct timer_node *n)
{
	struct worker_loop *l = ctx;
	struct conn *c = (struct conn *)((char *)n - offsetof(struct conn, timer));
	if (c->flags & (CONN_LINGER | CONN_HTTP)) {
		conn_close(l, c);
		return;
	}
	if (c->flags & (CONN_WAIT_COMMIT | CONN_WAIT_RESERVE)) {
		conn_arm_deadline(l, c); /* we are the slow side, not the client */
		return;
	}
	if (c->flags & CONN_SEND_INFLIGHT) {
		conn_close(l, c); /* the client stopped reading our replies */
		return;
	}
	if (!conn_out_ready(l, c)) {
		conn_close(l, c);
		return;
	}
	smtp_session_timeout(&c->session, &c->out);
	metrics_inc(&l->w->metrics->smtp_timeouts);
	c->flags |= CONN_CLOSE_AFTER_SEND;
	conn_carry_consume(c, c->carry_len);
	conn_after(l, c);
}

/* ---- draining ------------------------------------------------------------- */

static void drain_begin(struct worker_loop *l)
{
	if (l->draining) {
		l->drain_deadline_ms = l->now_ms; /* asked again: hurry */
		return;
	}
	l->draining = true;
	l->listening = false;
	l->drain_deadline_ms = l->now_ms + (uint64_t)l->cfg->shutdown_grace_s * 1000u;
	for (uint32_t i = 0; i < l->w->listen_count; i++) {
		struct io_uring_sqe *sqe = ring_sqe(&l->ring);
		io_uring_prep_cancel64(sqe, ring_ud(RING_OP_ACCEPT, 0, i), 0);
		io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_CANCEL, 0, 0));
		/* The pending accept keeps its own reference until cancelled. */
		close(l->w->listen_fds[i]);
		l->w->listen_fds[i] = -1;
	}
	log_info("event=drain worker=%u connections=%u grace_s=%u", l->w->id, l->slab.used,
		 l->cfg->shutdown_grace_s);
}

/* Sends 421 to every connection that is not in a transaction (all of them
 * once the grace period is over). */
static void drain_connections(struct worker_loop *l)
{
	bool late = l->now_ms >= l->drain_deadline_ms;
	for (uint32_t i = 0; i < l->slab.high_water; i++) {
		struct conn *c = &l->slab.conns[i];
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
		if (!conn_out_ready(l, c)) {
			conn_close(l, c);
			continue;
		}
		smtp_session_shutdown(&c->session, &c->out);
		c->flags |= CONN_CLOSE_AFTER_SEND;
		c->flags &= ~CONN_WAIT_FLUSH;
		conn_carry_consume(c, c->carry_len);
		conn_after(l, c);
	}
}

static bool drain_finished(struct worker_loop *l)
{
	bool late = l->now_ms >= l->drain_deadline_ms;
	bool forwarding = forward_drain(l->forward, late);
	return l->slab.used == 0 && !l->commit_inflight && !store_busy(l->w->shards[0].store) &&
	       l->spare_step == SPARE_IDLE && !forwarding;
}

/* Operator requests (ringmx-store requeue/delete while we run): a few small
 * files read on the worker thread, only when asked. */
static void apply_control(struct worker_loop *l)
{
	for (uint32_t k = 0; k < l->w->shard_count; k++) {
		const struct forward_shard *sh = &l->w->shards[k];
		char shard_dir[PATH_MAX + 16];
		snprintf(shard_dir, sizeof(shard_dir), "%s/w%u", l->cfg->data_dir, sh->id);
		struct control_result r;
		memset(&r, 0, sizeof(r));
		int rc = control_apply(sh->queue, shard_dir, l->now_unix_ms, &r);
		if (rc != 0 || r.files)
			log_info("event=control worker=%u shard=w%u files=%u applied=%u "
				 "made_due=%llu unknown=%u busy=%u malformed=%u errors=%u error=%s",
				 l->w->id, sh->id, r.files, r.applied,
				 (unsigned long long)r.made_due, r.unknown, r.busy, r.malformed,
				 r.errors, log_errno_name(rc ? rc : r.first_error));
	}
}

/* A new configuration snapshot (SIGHUP): from now on new sessions, the
 * deadlines armed next, the in-flight data bound, the forwarder and the
 * retry schedule use it. Open sessions keep theirs (cfg_users). */
static void apply_reload(struct worker_loop *l)
{
	const struct config *next = atomic_load_explicit(&l->w->cfg_next, memory_order_acquire);
	if (!next || next == l->cfg)
		return;
	RMX_ASSERT(next->snapshot < CONFIG_SNAPSHOTS_MAX);
	l->cfg = next;
	l->budget.max_inflight_bytes = next->max_inflight_data_bytes;
	forward_set_config(l->forward, next);
	for (uint32_t k = 0; k < l->w->shard_count; k++) {
		int rc = queue_set_timing(l->w->shards[k].queue, (int64_t)next->retry_min_s * 1000,
					  (int64_t)next->retry_max_s * 1000,
					  (int64_t)next->max_queue_lifetime_s * 1000);
		if (rc != 0) /* config_load checks the same bounds */
			log_error("event=reload_queue_timing_refused worker=%u error=%s", l->w->id,
				  log_errno_name(rc));
	}
	cfg_publish_held(l);
	/* Only now may the reloading thread free what this worker read before:
	 * the mask naming next is visible before this store is. */
	atomic_store_explicit(&l->w->cfg_applied, next, memory_order_release);
	log_info("event=reload_applied worker=%u snapshot=%u", l->w->id, next->snapshot);
}

/* ---- logs --------------------------------------------------------------------- */

/* Publishes the lines lost so far: this worker's, and (worker 0 only, so
 * that the sum counts them once) those of threads without a log buffer. */
static void log_publish_dropped(struct worker_loop *l)
{
	uint64_t dropped = log_buffer_dropped_lines(&l->logbuf);
	if (l->w->id == 0)
		dropped += log_direct_dropped_lines();
	metrics_set(&l->w->metrics->log_lines_dropped, dropped);
}

/* Hands the next batch of log lines to the ring (never blocks the loop: a
 * slow stderr only delays the batch, a full non-blocking one is retried a
 * little later, and a full buffer drops lines, which
 * ringmx_log_lines_dropped_total counts). Offset -1 (the file position) is
 * safe for a regular file only because log_stderr_setup put it in append
 * mode (log.h). */
static void log_pump(struct worker_loop *l)
{
	log_publish_dropped(l);
	const void *p;
	size_t n;
	if (l->log_write_inflight || !log_buffer_begin_write(&l->logbuf, l->now_ms, &p, &n))
		return;
	struct io_uring_sqe *sqe = ring_sqe(&l->ring);
	io_uring_prep_write(sqe, STDERR_FILENO, p, (unsigned)n, (uint64_t)-1); /* file position */
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_LOG_WRITE, 0, 0));
	l->log_write_inflight = true;
}

static void on_log_write(struct worker_loop *l, int res)
{
	RMX_ASSERT(l->log_write_inflight);
	l->log_write_inflight = false;
	log_buffer_write_done(&l->logbuf, res, l->now_ms);
	log_pump(l);
}

/* At exit: waits for the write in flight (other completions are moot now),
 * then writes what is left directly. */
static void log_finish(struct worker_loop *l)
{
	while (l->log_write_inflight) {
		struct io_uring_cqe *cqe;
		ring_flush(&l->ring);
		int rc = io_uring_submit_and_wait(&l->ring, 1);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			break;
		unsigned head, seen = 0;
		int res = 0;
		bool done = false;
		io_uring_for_each_cqe(&l->ring, head, cqe)
		{
			if (ring_ud_op(cqe->user_data) == RING_OP_LOG_WRITE) {
				res = cqe->res;
				done = true;
			}
			seen++;
		}
		io_uring_cq_advance(&l->ring, seen);
		if (done) {
			l->log_write_inflight = false;
			log_buffer_write_done(&l->logbuf, res, l->now_ms);
		}
	}
	log_thread_attach(NULL);
	if (!l->log_write_inflight)
		log_buffer_flush_sync(&l->logbuf);
}

/* ---- the loop ------------------------------------------------------------- */

static void dispatch(struct worker_loop *l, struct io_uring_cqe *cqe)
{
	switch (ring_ud_op(cqe->user_data)) {
	case RING_OP_ACCEPT:
		on_accept(l, cqe);
		break;
	case RING_OP_RECV:
		on_recv(l, cqe);
		break;
	case RING_OP_SEND:
		on_send(l, cqe);
		break;
	case RING_OP_REJECT_SEND: {
		int fd = (int)ring_ud_slot(cqe->user_data);
		close(fd);
		break;
	}
	case RING_OP_COMMIT_WRITE:
		on_commit_write(l, cqe->res);
		break;
	case RING_OP_COMMIT_SYNC:
		on_commit_sync(l, cqe->res);
		break;
	case RING_OP_SPARE:
		on_spare(l, cqe->res);
		break;
	case RING_OP_WAKE:
		if (atomic_exchange(&l->w->reload_requested, false))
			apply_reload(l);
		if (atomic_exchange(&l->w->control_requested, false))
			apply_control(l);
		if (atomic_load(&l->w->stop_requested))
			drain_begin(l);
		arm_wake(l);
		break;
	case RING_OP_CANCEL:
		break;
	case RING_OP_HTTP_ACCEPT:
		on_http_accept(l, cqe);
		break;
	case RING_OP_LOG_WRITE:
		on_log_write(l, cqe->res);
		break;
	case RING_OP_FWD_CONNECT:
	case RING_OP_FWD_RECV:
	case RING_OP_FWD_SEND:
	case RING_OP_FWD_READ:
	case RING_OP_FWD_CLOSE:
	case RING_OP_DLOG_WRITE:
	case RING_OP_DLOG_SYNC:
	case RING_OP_RECLAIM:
		forward_on_cqe(l->forward, cqe);
		break;
	default:
		RMX_ASSERT(!"unknown op in user_data");
	}
}

static void rearm_pending(struct worker_loop *l)
{
	while (l->rearm_head != CONN_NONE) {
		struct conn *c = &l->slab.conns[l->rearm_head];
		l->rearm_head = c->rearm_next;
		c->rearm_next = CONN_NONE;
		if (!(c->flags & CONN_REARM))
			continue;
		c->flags &= ~CONN_REARM;
		if (c->flags & CONN_CLOSING)
			conn_maybe_release(l, c);
		else
			conn_recv_update(l, c);
	}
}

/*
 * Buffer-ring occupancy: the buffers the kernel filled in one batch of
 * completions are all given back at the next publish, so the batch's count
 * is how close the ring came to running dry (ENOBUFS). The gauge holds the
 * largest batch of the last second.
 */
static void buffer_occupancy(struct worker_loop *l)
{
	l->bufs_peak = RMX_MAX(l->bufs_peak, l->bufs.returned);
	if (l->now_ms - l->bufs_peak_since_ms < 1000)
		return;
	metrics_set(&l->w->metrics->buffer_ring_in_use, l->bufs_peak);
	l->bufs_peak = 0;
	l->bufs_peak_since_ms = l->now_ms;
}

static int loop_run(struct worker_loop *l)
{
	for (;;) {
		loop_clock(l);
		timer_wheel_advance(&l->wheel, l->now_ms, on_timer, l);
		store_kick(l);
		if (l->draining) {
			drain_connections(l);
			store_kick(l);
			/* Drained: keep answering /readyz (503) until every worker is
			 * done, so that no scrape meets a closed listener. */
			if (drain_finished(l)) {
				atomic_store(&l->w->drained, true);
				if (atomic_load(&l->w->exit_now))
					return 0;
			}
		}
		buffer_occupancy(l);
		log_pump(l);
		buf_ring_publish(&l->bufs);
		rearm_pending(l);
		if (l->accept_rearm_http && l->now_ms >= l->accept_rearm_at_ms) {
			l->accept_rearm_http = false;
			arm_http_accept(l);
		}
		if (l->accept_rearm_mask && l->now_ms >= l->accept_rearm_at_ms) {
			for (uint32_t i = 0; i < l->w->listen_count; i++)
				if ((l->accept_rearm_mask & (1u << i)) && l->listening)
					arm_accept(l, i);
			l->accept_rearm_mask = 0;
		}
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = TIMER_TICK_MS * 1000000L };
		struct io_uring_cqe *cqe;
		ring_flush(&l->ring);
		int rc = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
			log_error("event=ring_wait_failed worker=%u error=%s", l->w->id, log_errno_name(rc));
			return rc;
		}
		loop_clock(l);
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&l->ring, head, cqe)
		{
			dispatch(l, cqe);
			seen++;
		}
		io_uring_cq_advance(&l->ring, seen);
	}
}

static int loop_setup(struct worker_loop *l, struct worker *w)
{
	memset(l, 0, sizeof(*l));
	l->w = w;
	log_buffer_init(&l->logbuf, STDERR_FILENO);
	log_thread_attach(&l->logbuf);
	l->cfg = w->cfg;
	atomic_store(&w->cfg_held_mask, 1u << w->cfg->snapshot);
	atomic_store(&w->cfg_applied, w->cfg);
	l->reserve_head = l->reserve_tail = l->rearm_head = CONN_NONE;
	l->spare_fd = -1;
	l->budget.max_inflight_bytes = w->cfg->max_inflight_data_bytes;
	l->budget.metrics = w->metrics;
	uint64_t sealed_damaged = 0;
	for (uint32_t k = 0; k < w->shard_count; k++)
		sealed_damaged += w->shards[k].sealed_damaged;
	metrics_set(&w->metrics->store_sealed_damaged, sealed_damaged);
	loop_clock(l);
	timer_wheel_init(&l->wheel, l->now_ms);
	int rc = ring_init(&l->ring, RING_SQ_ENTRIES, &l->ring_info);
	if (rc != 0) {
		log_error("event=ring_init_failed worker=%u error=%s", w->id, log_errno_name(rc));
		return rc;
	}
	if (!l->ring_info.defer_taskrun)
		log_warn("event=ring_flags worker=%u note=\"kernel refused DEFER_TASKRUN; "
			 "running with flags 0x%x\"", w->id, l->ring_info.flags);
	unsigned iowq[2] = { IOWQ_BOUNDED_WORKERS_MAX, IOWQ_UNBOUNDED_WORKERS_MAX };
	rc = io_uring_register_iowq_max_workers(&l->ring, iowq);
	if (rc != 0) /* fsyncs then use the kernel's default io-wq pool: slower, correct */
		log_warn("event=iowq_limit_failed worker=%u error=%s", w->id, log_errno_name(rc));
	rc = buf_ring_setup(&l->ring, &l->bufs, RECV_BUFFER_COUNT, RECV_BUFFER_BYTES, 0);
	if (rc != 0) {
		log_error("event=buffer_ring_failed worker=%u error=%s", w->id, log_errno_name(rc));
		return rc;
	}
	rc = conn_slab_init(&l->slab, w->cfg->max_connections + HTTP_CONNECTIONS_MAX);
	if (rc != 0)
		return rc;
	struct smtp_out out = { l->reject_reply, 0, sizeof(l->reject_reply) };
	l->reject_reply_len = smtp_reply_too_many_connections(w->cfg->session.hostname, &out);
	RMX_ASSERT(l->reject_reply_len > 0);
	struct forward_env fe = {
		.ring = &l->ring,
		.shards = w->shards,
		.shard_count = w->shard_count,
		.cfg = w->cfg,
		.worker = w->id,
		.metrics = w->metrics,
	};
	rc = forward_new(&fe, &l->forward);
	if (rc != 0)
		return rc;
	apply_control(l); /* requests left while we were not running */
	if (w->metrics_fd >= 0)
		arm_http_accept(l);
	l->listening = true;
	for (uint32_t i = 0; i < w->listen_count; i++)
		arm_accept(l, i);
	arm_wake(l);
	return 0;
}

static void loop_teardown(struct worker_loop *l)
{
	for (uint32_t i = 0; i < l->w->listen_count; i++) {
		if (l->w->listen_fds[i] >= 0)
			close(l->w->listen_fds[i]);
		l->w->listen_fds[i] = -1;
	}
	if (l->w->metrics_fd >= 0)
		close(l->w->metrics_fd);
	l->w->metrics_fd = -1;
	forward_free(l->forward);
	l->forward = NULL;
	buf_ring_free(&l->ring, &l->bufs);
	ring_exit(&l->ring);
	conn_slab_free(&l->slab);
	while (l->reply_pool_count)
		free(l->reply_pool[--l->reply_pool_count]);
	if (l->zero_chunk)
		munmap(l->zero_chunk, SEGMENT_ZERO_CHUNK_BYTES);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	if (w->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
			log_warn("event=pin_failed worker=%u cpu=%d", w->id, w->cpu);
	}
	struct worker_loop *l = calloc(1, sizeof(*l));
	if (!l) {
		atomic_store(&w->finished, true);
		atomic_store(&w->status, -ENOMEM);
		return NULL;
	}
	w->loop = l;
	int rc = loop_setup(l, w);
	if (rc != 0) {
		log_finish(l);
		loop_teardown(l);
		free(l);
		w->loop = NULL;
		atomic_store(&w->finished, true);
		atomic_store(&w->status, rc);
		return NULL;
	}
	atomic_store(&w->status, 1);
	w->exit_status = loop_run(l) == 0 ? 0 : 1;
	log_finish(l);
	loop_teardown(l);
	free(l);
	w->loop = NULL;
	atomic_store(&w->finished, true);
	return NULL;
}

int worker_start(struct worker *w)
{
	atomic_store(&w->status, 0);
	atomic_store(&w->finished, false);
	atomic_store(&w->stop_requested, false);
	atomic_store(&w->control_requested, false);
	atomic_store(&w->drained, false);
	atomic_store(&w->exit_now, false);
	w->exit_status = 0;
	int rc = pthread_create(&w->thread, NULL, worker_main, w);
	if (rc != 0)
		return -rc;
	for (;;) {
		int s = atomic_load(&w->status);
		if (s != 0) {
			if (s < 0) {
				pthread_join(w->thread, NULL);
				return s;
			}
			return 0;
		}
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
}

/* Sets one of the worker's request flags, then wakes its loop. */
static void worker_wake(struct worker *w, atomic_bool *flag)
{
	atomic_store(flag, true);
	uint64_t one = 1;
	ssize_t n = write(w->wake_fd, &one, sizeof(one));
	RMX_ASSERT(n == (ssize_t)sizeof(one)); /* an eventfd counter cannot overflow here */
}

bool worker_snapshot_unused(const struct worker *workers, uint32_t count, uint32_t k)
{
	RMX_ASSERT(k < CONFIG_SNAPSHOTS_MAX);
	for (uint32_t i = 0; i < count; i++) {
		const struct worker *w = &workers[i];
		const struct config *next = atomic_load_explicit(&w->cfg_next, memory_order_acquire);
		const struct config *applied =
			atomic_load_explicit(&w->cfg_applied, memory_order_acquire);
		if (next != NULL && applied != next)
			return false; /* may hold a pointer it has not published yet */
		if (atomic_load_explicit(&w->cfg_held_mask, memory_order_acquire) & (1u << k))
			return false;
	}
	return true;
}

void worker_request_reload(struct worker *w, const struct config *next)
{
	atomic_store_explicit(&w->cfg_next, next, memory_order_release);
	worker_wake(w, &w->reload_requested);
}

void worker_request_control(struct worker *w)
{
	worker_wake(w, &w->control_requested);
}

void worker_request_exit(struct worker *w)
{
	worker_wake(w, &w->exit_now);
}

void worker_request_stop(struct worker *w)
{
	worker_wake(w, &w->stop_requested);
}

int worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
	return w->exit_status;
}
