/*
 * forward.c - the upstream side of a worker: connections to the relays,
 * one message at a time per connection, outcomes into the queue (the
 * message and its outcomes are made in forward_msg.c), DSNs handed to
 * bounce.c, delivery-log commits and segment deletion.
 *
 * A slot is one upstream connection and at most one message:
 *
 *   IDLE --connect--> CONNECTING --ok--> SESSION (smtp_client: greeting,
 *   EHLO, READY, message, RSET, READY, ...) --QUIT / failure--> CLOSING --> IDLE
 *
 * A due message is attached to a free slot; its record is read from the
 * segment into a buffer (storage plans the read, store_io performs it on
 * the ring: the worker never blocks on a cold page), checked (CRC), and
 * handed to the client, which writes the commands; the body goes out
 * verbatim from the buffer. At most one send and one receive are in flight
 * per slot. Every wait for the upstream has the upstream_timeout deadline;
 * a connection to a fallback relay is retired after
 * FORWARD_FAILOVER_MAX_AGE_MS so that a recovered primary is used again.
 */
#include "forward.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../proto/smtp_client.h"
#include "../storage/delivery_log.h"
#include "../storage/queue.h"
#include "../storage/record.h"
#include "../storage/segment.h"
#include "../storage/segment_quarantine.h"
#include "../storage/segment_remove.h"
#include "../storage/store.h"
#include "../storage/store_read.h"
#include "bounce.h"
#include "forward_msg.h"
#include "log.h"
#include "metrics.h"
#include "ring.h"
#include "store_io.h"


enum slot_state { SLOT_IDLE, SLOT_CONNECTING, SLOT_SESSION, SLOT_CLOSING };

struct forward_slot {
	struct forward *owner;
	uint32_t index;
	uint32_t gen;
	int fd;
	enum slot_state state;
	uint32_t upstream;         /* index into cfg->upstream */
	uint32_t tried_mask;       /* upstreams tried by this connection attempt */
	uint64_t connected_ms;
	uint64_t deadline_ms;      /* the upstream must answer by then (0: none) */
	uint64_t idle_since_ms;    /* READY with no message since */
	bool connect_inflight;
	bool recv_inflight;
	bool send_inflight;
	bool read_inflight;
	bool quitting;
	bool client_ready;         /* the client said READY and nothing runs */
	struct smtp_client client;
	struct smtp_out out;
	uint8_t out_buf[FORWARD_OUT_BUFFER_BYTES];
	uint32_t send_bytes;       /* of out, in the send in flight */
	bool body_sending;         /* the send in flight is body bytes */
	size_t body_sent_bytes;
	bool body_pending;         /* SEND_BODY: the body goes after out */
	uint8_t in[FORWARD_IN_BUFFER_BYTES];

	/* The message attached to the slot, and its shard (index into shards). */
	struct queue_msg *msg;
	uint32_t shard;
	uint8_t *rec;
	uint64_t rec_bytes;
	struct store_io_job io_job;  /* the record's read, then a bad one's copy, on store_io */
	struct store_read read;
	struct segment_quarantine quarantine;
	bool quarantine_active;      /* the slot takes no message until the copy is made */
	uint8_t *quarantine_rec;     /* the bad record's bytes, held for the copy */
	uint64_t quarantine_bytes;
	struct record_view view;
	bool msg_loaded;           /* the record is read, checked and parsed into fm */
	bool msg_started;          /* the client is forwarding it */
	struct forward_msg fm;
	struct bounce dsn;
};

struct seg_fd {
	uint32_t shard; /* index into shards */
	uint32_t seq;
	int fd;
};

struct forward {
	struct forward_env env;       /* env.cfg: the current configuration snapshot */
	struct forward_slot *slots;
	uint32_t slot_count;
	int64_t now_unix_ms;
	uint64_t now_ms;
	bool draining;
	uint64_t upstream_down_until_ms[UPSTREAMS_MAX];

	uint32_t due_next;         /* shard asked first for a due message */

	struct store_io_job delivery_log_job; /* the queues' commits, on store_io */
	bool delivery_log_wanted;          /* delivery_log_submit is asking */
	uint32_t delivery_log_shard;       /* whose commit is in flight */
	uint32_t delivery_log_next;        /* asked first for the next commit */

	bool reclaim_inflight;
	uint32_t reclaim_shard;
	struct segment_remove reclaim;     /* storage's plans, on store_io */
	struct store_io_job reclaim_job;

	uint64_t rec_held_bytes;      /* record buffers of all slots (max_inflight_data_bytes) */

	struct seg_fd seg_fds[FORWARD_SEGMENT_FDS_MAX];
	uint32_t seg_fd_next;
	uint64_t dsn_counter;

	struct forward_stats stats;
};

static void slot_close(struct forward *f, struct forward_slot *s);
static void slot_drive(struct forward *f, struct forward_slot *s, enum smtp_client_status st);

/* ---- small helpers -------------------------------------------------------- */

static uint64_t slot_ud(enum ring_op op, const struct forward_slot *s)
{
	return ring_ud(op, s->gen, s->index);
}

static struct queue *shard_queue(const struct forward *f, uint32_t shard)
{
	RMX_ASSERT(shard < f->env.shard_count);
	return f->env.shards[shard].queue;
}

/* The queue of the slot's message. */
static struct queue *slot_queue(const struct forward *f, const struct forward_slot *s)
{
	return shard_queue(f, s->shard);
}

static void shard_path(const struct forward *f, uint32_t shard, char *out, size_t cap,
		       const char *name)
{
	RMX_ASSERT(shard < f->env.shard_count);
	int n = snprintf(out, cap, "%s/w%u/%s", f->env.cfg->data_dir, f->env.shards[shard].id, name);
	RMX_ASSERT(n > 0 && (size_t)n < cap);
}

/* A read-only fd for segment seq of a shard, opened on first use (a rare
 * open(2) of a local file; the reads themselves go through the ring). */
static int segment_fd(struct forward *f, uint32_t shard, uint32_t seq)
{
	for (uint32_t i = 0; i < FORWARD_SEGMENT_FDS_MAX; i++)
		if (f->seg_fds[i].fd >= 0 && f->seg_fds[i].shard == shard &&
		    f->seg_fds[i].seq == seq)
			return f->seg_fds[i].fd;
	char name[SEGMENT_NAME_MAX_BYTES], path[PATH_MAX];
	segment_name_format(name, seq);
	shard_path(f, shard, path, sizeof(path), name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct seg_fd *e = &f->seg_fds[f->seg_fd_next++ % FORWARD_SEGMENT_FDS_MAX];
	if (e->fd >= 0)
		close(e->fd);
	e->shard = shard;
	e->seq = seq;
	e->fd = fd;
	return fd;
}

static void segment_fd_forget(struct forward *f, uint32_t shard, uint32_t seq)
{
	for (uint32_t i = 0; i < FORWARD_SEGMENT_FDS_MAX; i++) {
		if (f->seg_fds[i].fd >= 0 && f->seg_fds[i].shard == shard &&
		    f->seg_fds[i].seq == seq) {
			close(f->seg_fds[i].fd);
			f->seg_fds[i].fd = -1;
		}
	}
}

static void slot_arm_deadline(struct forward *f, struct forward_slot *s)
{
	s->deadline_ms = f->now_ms + (uint64_t)f->env.cfg->upstream_timeout_s * 1000u;
}

/* reply="CODE STATUS TEXT" (the relay's words, quoted by the logger). */
static void log_add_reply(struct log_msg *m, unsigned code, const char *status, const char *text)
{
	char reply[FORWARD_DIAG_BYTES];
	int n = snprintf(reply, sizeof(reply), "%u %s%s%s", code, status, text[0] ? " " : "", text);
	log_add(m, "reply", reply, n < 0 ? 0 : RMX_MIN((size_t)n, sizeof(reply) - 1));
}

/* ---- the message attached to a slot ---------------------------------------- */

/* Lets go of the slot's message and its buffers; the record buffer's bytes
 * go back to the forwarder's budget. */
static void msg_free(struct forward *f, struct forward_slot *s)
{
	if (s->rec) {
		RMX_ASSERT(f->rec_held_bytes >= s->rec_bytes);
		f->rec_held_bytes -= s->rec_bytes;
	}
	free(s->rec);
	s->rec = NULL;
	forward_msg_free(&s->fm);
	s->msg = NULL;
	s->msg_loaded = false;
	s->msg_started = false;
	s->body_pending = false;
	s->tried_mask = 0;
}

/* Gives the slot's message back to the queue without counting an attempt,
 * due at due_unix_ms (DONE or RETRY: either way the slot lets go of it). */
static void msg_requeue(struct forward *f, struct forward_slot *s, int64_t due_unix_ms)
{
	enum queue_attempt_result r = queue_requeue(slot_queue(f, s), s->msg, due_unix_ms);
	RMX_ASSERT(r != QUEUE_ATTEMPT_BOUNCE_DUE);
	msg_free(f, s);
}

static const char *attempt_result_name(enum queue_attempt_result r)
{
	return r == QUEUE_ATTEMPT_DONE ? "done" : r == QUEUE_ATTEMPT_RETRY ? "retry" : "bounce";
}

/* The attempt on the slot's message is over (outcomes reported). */
static void msg_attempt_finished(struct forward *f, struct forward_slot *s)
{
	char id[RECORD_QUEUE_ID_CHARS];
	queue_id_format(queue_msg_id(s->msg), id); /* before: DONE frees the message */
	enum queue_attempt_result r = queue_attempt_done(slot_queue(f, s), s->msg, f->now_unix_ms);
	log_debug("event=attempt_done worker=%u id=%.16s result=%s", f->env.worker, id,
		  attempt_result_name(r));
	if (r == QUEUE_ATTEMPT_BOUNCE_DUE) {
		if (bounce_start(&s->dsn, s->msg_loaded ? &s->fm : NULL, s->msg, f->env.cfg,
				 f->env.worker, &f->dsn_counter, f->now_unix_ms))
			return; /* the slot keeps the message until the DSN is durable */
		r = queue_bounce_done(slot_queue(f, s), s->msg, f->now_unix_ms);
		RMX_ASSERT(r != QUEUE_ATTEMPT_BOUNCE_DUE);
	}
	msg_free(f, s);
}

/* Every pending recipient of the slot's message failed the same way. */
static void msg_fail_all(struct forward *f, struct forward_slot *s, enum queue_outcome outcome,
			 uint16_t code, const char *status)
{
	forward_msg_fail_all(&s->fm, slot_queue(f, s), s->msg, outcome, code, status,
			     f->now_unix_ms);
	if (outcome == QUEUE_OUTCOME_TEMPFAIL) {
		f->stats.deferred += s->fm.rcpt_count;
		metrics_add(&f->env.metrics->forward_deferrals, s->fm.rcpt_count);
	}
	metrics_inc(&f->env.metrics->forward_attempts[METRICS_FORWARD_ERROR]);
	msg_attempt_finished(f, s);
}

static void msg_results(struct forward *f, struct forward_slot *s);

/*
 * The connection ended under the slot's message. Begun on the wire: the
 * client settles every unfinished recipient with a 4xx (results already
 * final, a 550 to RCPT say, stand) and the attempt ends. Not begun: the
 * message waits for the next connection; not even read: back to the queue.
 */
static void msg_connection_lost(struct forward *f, struct forward_slot *s, const char *why)
{
	if (!s->msg || s->dsn.active)
		return;
	if (!s->msg_loaded) {
		if (!s->read_inflight)
			msg_requeue(f, s, f->now_unix_ms + 1000);
		return;
	}
	if (!s->msg_started)
		return;
	(void)smtp_client_connection_lost(&s->client, why);
	msg_results(f, s);
}

/* MESSAGE_DONE: one outcome per recipient, then the attempt ends. */
static void msg_results(struct forward *f, struct forward_slot *s)
{
	const struct smtp_client_result *mr = smtp_client_message_result(&s->client);
	char id[RECORD_QUEUE_ID_CHARS];
	queue_id_format(queue_msg_id(s->msg), id);
	struct metrics_worker *m = f->env.metrics;
	unsigned seen = 0; /* bit 0 delivered, 1 tempfail, 2 permfail */
	for (uint32_t i = 0; i < s->fm.rcpt_count; i++) {
		struct forward_outcome fo =
			forward_msg_report(&s->fm, i, mr, slot_queue(f, s), s->msg, f->now_unix_ms);
		enum queue_outcome o = fo.outcome;
		if (o == QUEUE_OUTCOME_DELIVERED) {
			f->stats.delivered++;
			int64_t age_ms = f->now_unix_ms - queue_msg_arrival_unix_ms(s->msg);
			metrics_observe_latency_ns(&m->forward_latency,
						   (uint64_t)RMX_MAX(age_ms, 0) * 1000000u);
		} else if (o == QUEUE_OUTCOME_TEMPFAIL) {
			f->stats.deferred++;
			metrics_inc(&m->forward_deferrals);
		}
		seen |= o == QUEUE_OUTCOME_DELIVERED ? 1u : o == QUEUE_OUTCOME_TEMPFAIL ? 2u : 4u;
		struct log_msg lm;
		if (log_begin(&lm, LOG_INFO, "delivery")) {
			log_add_u64(&lm, "worker", f->env.worker);
			log_add(&lm, "id", id, RECORD_QUEUE_ID_CHARS);
			log_add_span(&lm, "rcpt", s->fm.rcpts[i]);
			log_add_str(&lm, "upstream", f->env.cfg->upstream[s->upstream].text);
			const char *result = o == QUEUE_OUTCOME_DELIVERED ? "delivered"
					     : o == QUEUE_OUTCOME_PERMFAIL ? "bounced"
									   : "deferred";
			log_add_str(&lm, "result", result);
			log_add_reply(&lm, fo.code, fo.reply->status, "");
			/* since the message was accepted */
			int64_t delay_ms = f->now_unix_ms - queue_msg_arrival_unix_ms(s->msg);
			log_add_u64(&lm, "delay_ms", (uint64_t)RMX_MAX(delay_ms, 0));
			log_add_u64(&lm, "attempt", (unsigned)queue_msg_attempts(s->msg) + 1);
			log_end(&lm);
		}
	}
	metrics_inc(&m->forward_attempts[(seen & 4u)   ? METRICS_FORWARD_PERMFAIL
					 : (seen & 2u) ? METRICS_FORWARD_TEMPFAIL
						       : METRICS_FORWARD_SUCCESS]);
	msg_attempt_finished(f, s);
}

/* ---- bounces --------------------------------------------------------------- */

/* The slot's DSN cannot be stored: the slot lets go of the message, whose
 * recipients due a DSN are pending again (bounce_abandon). */
static void dsn_abandon(struct forward *f, struct forward_slot *s, int error)
{
	bounce_abandon(&s->dsn, slot_queue(f, s), s->msg, f->env.worker, f->env.cfg->retry_min_s,
		       f->now_unix_ms, error);
	msg_free(f, s);
}

/* Appends the slot's DSN record to the worker's own shard; retried on -EAGAIN. */
static void dsn_store(struct forward *f, struct forward_slot *s)
{
	int rc = bounce_store(&s->dsn, f->env.shards[0].store, FORWARD_COOKIE_BIT | s->index,
			      f->now_unix_ms);
	if (rc != 0 && rc != -EAGAIN)
		dsn_abandon(f, s, rc);
}

void forward_dsn_committed(struct forward *f, uint64_t cookie, int result)
{
	uint32_t i = (uint32_t)(cookie & ~FORWARD_COOKIE_BIT);
	RMX_ASSERT(i < f->slot_count);
	struct forward_slot *s = &f->slots[i];
	RMX_ASSERT(s->dsn.active && s->msg);
	if (result != 0) {
		dsn_abandon(f, s, result);
		return;
	}
	uint32_t n = bounce_committed(&s->dsn, shard_queue(f, 0), slot_queue(f, s), s->msg,
				      f->env.worker, f->now_unix_ms);
	f->stats.bounced += n;
	metrics_add(&f->env.metrics->forward_bounces, n);
	msg_free(f, s);
}

/* ---- sending and receiving -------------------------------------------------- */

static void slot_arm_recv(struct forward *f, struct forward_slot *s)
{
	if (s->recv_inflight || s->state != SLOT_SESSION)
		return;
	struct io_uring_sqe *sqe = ring_sqe(f->env.ring);
	io_uring_prep_recv(sqe, s->fd, s->in, sizeof(s->in), 0);
	io_uring_sqe_set_data64(sqe, slot_ud(RING_OP_FWD_RECV, s));
	s->recv_inflight = true;
}

/* Sends what is due: the commands in out first, then the body. */
static void slot_flush(struct forward *f, struct forward_slot *s)
{
	if (s->send_inflight || s->state != SLOT_SESSION)
		return;
	const void *p;
	size_t n;
	if (s->out.len) {
		p = s->out.buf;
		n = s->out.len;
		s->body_sending = false;
		s->send_bytes = (uint32_t)n;
	} else if (s->body_pending) {
		RMX_ASSERT(s->body_sent_bytes < s->view.body.len);
		p = s->view.body.ptr + s->body_sent_bytes;
		n = RMX_MIN(s->view.body.len - s->body_sent_bytes, (size_t)(1u << 30));
		s->body_sending = true;
	} else {
		return;
	}
	struct io_uring_sqe *sqe = ring_sqe(f->env.ring);
	io_uring_prep_send(sqe, s->fd, p, n, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, slot_ud(RING_OP_FWD_SEND, s));
	s->send_inflight = true;
	slot_arm_deadline(f, s);
}

static void slot_start_message(struct forward *f, struct forward_slot *s)
{
	RMX_ASSERT(s->msg && s->msg_loaded && !s->msg_started && s->client_ready);
	s->client_ready = false;
	s->msg_started = true;
	s->body_sent_bytes = 0;
	f->stats.attempts++;
	enum smtp_client_status st =
		smtp_client_start_message(&s->client, &s->fm.cm, s->fm.results, &s->out);
	slot_drive(f, s, st);
}

/* Acts on what the client says. */
static void slot_drive(struct forward *f, struct forward_slot *s, enum smtp_client_status st)
{
	switch (st) {
	case SMTP_CLIENT_WANT_INPUT:
		slot_flush(f, s);
		slot_arm_recv(f, s);
		slot_arm_deadline(f, s);
		return;
	case SMTP_CLIENT_READY:
		s->client_ready = true;
		s->idle_since_ms = f->now_ms;
		s->deadline_ms = 0;
		slot_flush(f, s);
		slot_arm_recv(f, s); /* notices an upstream that closes an idle link */
		if (s->quitting) {
			s->client_ready = false;
			slot_drive(f, s, smtp_client_quit(&s->client, &s->out));
			return;
		}
		if (s->msg && s->msg_loaded && !s->msg_started)
			slot_start_message(f, s);
		return;
	case SMTP_CLIENT_SEND_BODY:
		s->body_pending = s->view.body.len > 0;
		if (!s->body_pending) {
			slot_drive(f, s, smtp_client_body_sent(&s->client, &s->out));
			return;
		}
		slot_flush(f, s);
		return;
	case SMTP_CLIENT_MESSAGE_DONE:
		msg_results(f, s);
		slot_drive(f, s, smtp_client_rset(&s->client, &s->out));
		return;
	case SMTP_CLIENT_CLOSED:
	case SMTP_CLIENT_FAILED: {
		const struct smtp_client_result *why = smtp_client_conn_result(&s->client);
		if (s->msg && s->msg_started && !s->dsn.active)
			msg_results(f, s); /* the client settled every recipient */
		struct log_msg lm;
		if (st == SMTP_CLIENT_FAILED && log_begin(&lm, LOG_WARN, "upstream_failed")) {
			log_add_u64(&lm, "worker", f->env.worker);
			log_add_str(&lm, "upstream", f->env.cfg->upstream[s->upstream].text);
			log_add_reply(&lm, why->code, why->status, why->text);
			log_end(&lm);
		}
		slot_flush(f, s); /* a QUIT still queued goes out before the close */
		slot_close(f, s);
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

static void slot_connect(struct forward *f, struct forward_slot *s)
{
	int u = pick_upstream(f, s->tried_mask);
	if (u < 0) {
		s->tried_mask = 0;
		s->state = SLOT_IDLE;
		if (s->msg && s->msg_loaded && !s->dsn.active) {
			log_info("event=forward_deferred worker=%u reason=\"no upstream relay "
				 "reachable\"", f->env.worker);
			msg_fail_all(f, s, QUEUE_OUTCOME_TEMPFAIL, 451, "4.4.1");
		}
		return;
	}
	const struct listen_addr *a = &f->env.cfg->upstream[u];
	int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error("event=upstream_socket_failed worker=%u errno=%s", f->env.worker, log_errno_name(errno));
		s->tried_mask |= 1u << u;
		slot_connect(f, s);
		return;
	}
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->fd = fd;
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

static void on_connect(struct forward *f, struct forward_slot *s, int res)
{
	s->connect_inflight = false;
	if (s->state == SLOT_CLOSING) {
		slot_close(f, s); /* timed out or drained while connecting */
		return;
	}
	RMX_ASSERT(s->state == SLOT_CONNECTING);
	if (res < 0) {
		log_warn("event=upstream_connect_failed worker=%u upstream=%s error=%s",
			 f->env.worker, f->env.cfg->upstream[s->upstream].text, log_errno_name(res));
		f->upstream_down_until_ms[s->upstream] = f->now_ms + FORWARD_UPSTREAM_DOWN_MS;
		f->stats.upstream_up_mask &= ~(1u << s->upstream);
		metrics_set(&f->env.metrics->upstream_up[s->upstream], 0);
		close(s->fd);
		s->fd = -1;
		slot_connect(f, s); /* the next relay in the list */
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
	slot_arm_recv(f, s);
	slot_arm_deadline(f, s);
}

/* Stops the slot's connection; the slot is IDLE once nothing is in flight. */
static void slot_close(struct forward *f, struct forward_slot *s)
{
	if (s->state == SLOT_SESSION || s->state == SLOT_CONNECTING) {
		s->state = SLOT_CLOSING;
		(void)shutdown(s->fd, SHUT_RDWR); /* ends the receive in flight */
	}
	if (s->state != SLOT_CLOSING || s->recv_inflight || s->send_inflight || s->connect_inflight)
		return;
	close(s->fd);
	s->fd = -1;
	s->state = SLOT_IDLE;
	s->client_ready = false;
	s->deadline_ms = 0;
	s->body_pending = false;
	s->out.len = 0;
	if (s->msg && !s->dsn.active && s->msg_loaded && s->msg_started)
		msg_connection_lost(f, s, "lost connection with upstream");
	if (s->msg && !s->dsn.active && s->msg_loaded && !s->msg_started) {
		/* The session ended before the message could start (greeting
		 * refused, EHLO failed...): that relay is not serving; the next one
		 * in the list gets the message, and when none is left the attempt
		 * has failed and is retried later. */
		f->upstream_down_until_ms[s->upstream] = f->now_ms + FORWARD_UPSTREAM_DOWN_MS;
		metrics_set(&f->env.metrics->upstream_up[s->upstream], 0);
		if (!f->draining && pick_upstream(f, s->tried_mask) >= 0) {
			slot_connect(f, s);
			return;
		}
		const struct smtp_client_result *why = smtp_client_conn_result(&s->client);
		bool temp = why->code >= 400 && why->code < 500;
		s->tried_mask = 0;
		msg_fail_all(f, s, QUEUE_OUTCOME_TEMPFAIL, temp ? why->code : 451,
			     temp ? why->status : "4.4.2");
	}
}

static void on_recv(struct forward *f, struct forward_slot *s, int res)
{
	s->recv_inflight = false;
	if (s->state != SLOT_SESSION) {
		slot_close(f, s);
		return;
	}
	if (res <= 0) {
		msg_connection_lost(f, s, res == 0 ? "upstream closed the connection"
						   : "receive from upstream failed");
		slot_close(f, s);
		return;
	}
	/* The deadline moves with whole replies (and with our sends), not with
	 * every byte: an upstream that trickles a reply line cannot hold the
	 * slot past upstream_timeout. */
	uint32_t replies = smtp_client_replies(&s->client);
	uint64_t deadline_ms = s->deadline_ms;
	bool sending = s->send_inflight;
	enum smtp_client_status st = smtp_client_feed(&s->client, s->in, (size_t)res, &s->out);
	slot_drive(f, s, st);
	if (smtp_client_replies(&s->client) == replies && s->state == SLOT_SESSION &&
	    deadline_ms != 0 && s->send_inflight == sending)
		s->deadline_ms = deadline_ms;
}

static void on_send(struct forward *f, struct forward_slot *s, int res)
{
	s->send_inflight = false;
	if (s->state != SLOT_SESSION) {
		slot_close(f, s);
		return;
	}
	if (res <= 0) {
		msg_connection_lost(f, s, "send to upstream failed");
		slot_close(f, s);
		return;
	}
	if (s->body_sending) {
		s->body_sent_bytes += (size_t)res;
		if (s->body_sent_bytes == s->view.body.len) {
			s->body_pending = false;
			slot_drive(f, s, smtp_client_body_sent(&s->client, &s->out));
			return;
		}
	} else {
		RMX_ASSERT((size_t)res <= s->send_bytes && s->send_bytes <= s->out.len);
		memmove(s->out.buf, s->out.buf + res, s->out.len - (size_t)res);
		s->out.len -= (size_t)res;
		if (s->out.len == 0 && s->msg_started && !s->body_pending) {
			/* A pipelined message too big for out goes in rounds: the
			 * client appends the next one now that out is empty. */
			slot_drive(f, s, smtp_client_feed(&s->client, NULL, 0, &s->out));
			return;
		}
	}
	slot_flush(f, s);
}

/* ---- reading the record ------------------------------------------------------ */

/* Reads the slot's message's record into a buffer of its own: storage
 * plans the read (store_read.h), store_io performs it, record_read_done
 * acts on the outcome. */
static void slot_read_record(struct forward *f, struct forward_slot *s)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(queue_msg_id(s->msg), &worker, &seq, &offset);
	s->rec_bytes = queue_msg_padded_bytes(s->msg);
	s->rec = malloc(s->rec_bytes);
	if (s->rec)
		f->rec_held_bytes += s->rec_bytes;
	int fd = s->rec ? segment_fd(f, s->shard, seq) : -ENOMEM;
	if (fd < 0) {
		log_error("event=record_read_failed worker=%u seq=%u error=%s", f->env.worker, seq,
			  log_errno_name(fd));
		msg_requeue(f, s, f->now_unix_ms + FORWARD_READ_RETRY_MS);
		return;
	}
	store_read_start(&s->read, f->env.shards[s->shard].store, queue_msg_id(s->msg), fd, s->rec,
			 s->rec_bytes);
	s->read_inflight = true;
	store_io_kick(f->env.io, &s->io_job);
}

/* A copy of a record that does not check in the shard's quarantine/ (as
 * recovery keeps one): storage plans it (segment_quarantine.h), store_io
 * performs it on the slot's job. The copy takes the record's buffer, still
 * counted in rec_held_bytes, and the slot takes no message until it is
 * made; an existing copy is never replaced. */
static void record_quarantine_start(struct forward *f, struct forward_slot *s)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(queue_msg_id(s->msg), &worker, &seq, &offset);
	RMX_ASSERT(!s->quarantine_active && s->rec != NULL);
	s->quarantine_rec = s->rec;
	s->quarantine_bytes = s->rec_bytes;
	s->rec = NULL;
	segment_quarantine_start(&s->quarantine, store_dir_fd(f->env.shards[s->shard].store), seq,
				 offset, s->quarantine_rec, s->quarantine_bytes, false);
	s->quarantine_active = true;
	store_io_kick(f->env.io, &s->io_job);
}

static void record_quarantine_done(struct forward *f, struct forward_slot *s)
{
	const struct segment_quarantine *q = &s->quarantine;
	if (q->error != 0)
		log_error("event=record_quarantine_failed worker=%u seq=%u offset=%llu op=%s "
			  "error=%s", f->env.worker, q->seq, (unsigned long long)q->offset,
			  io_step_op_name(q->failed_op), log_errno_name(q->error));
	RMX_ASSERT(f->rec_held_bytes >= s->quarantine_bytes);
	f->rec_held_bytes -= s->quarantine_bytes;
	free(s->quarantine_rec);
	s->quarantine_rec = NULL;
	s->quarantine_active = false;
}

static void record_read_done(struct forward *f, struct forward_slot *s)
{
	const struct store_read *r = &s->read;
	s->read_inflight = false;
	RMX_ASSERT(s->msg != NULL && r->outcome != STORE_READ_PENDING);
	char id[RECORD_QUEUE_ID_CHARS];
	queue_id_format(queue_msg_id(s->msg), id);
	if (r->outcome == STORE_READ_FAILED) {
		/* An I/O error or a short read says nothing about the record: the
		 * message waits and is read again later, never set aside for it. */
		log_error("event=record_read_failed worker=%u id=%.16s read=%d of=%llu error=%s",
			  f->env.worker, id, r->bytes, (unsigned long long)s->rec_bytes,
			  log_errno_name(r->error));
		metrics_inc(&f->env.metrics->forward_record_read_failures);
		msg_requeue(f, s, f->now_unix_ms + FORWARD_READ_RETRY_MS);
		return;
	}
	if (r->outcome == STORE_READ_BAD) {
		/* DESIGN.md: a record that does not read back is set aside, never
		 * sent; its bytes are kept in quarantine/ as recovery keeps them. */
		log_error("event=record_set_aside worker=%u id=%.16s check=%d", f->env.worker, id,
			  (int)r->check);
		record_quarantine_start(f, s);
		queue_set_aside(slot_queue(f, s), s->msg, f->now_unix_ms);
		metrics_inc(&f->env.metrics->forward_set_aside);
		msg_free(f, s);
		return;
	}
	s->view = r->view;
	if (forward_msg_load(&s->fm, &s->view, s->msg) != FORWARD_MSG_LOADED) {
		log_error("event=record_set_aside worker=%u id=%.16s reason=envelope", f->env.worker,
			  id);
		queue_set_aside(slot_queue(f, s), s->msg, f->now_unix_ms);
		metrics_inc(&f->env.metrics->forward_set_aside);
		msg_free(f, s);
		return;
	}
	s->msg_loaded = true;
	if (s->fm.rcpt_count == 0) {
		msg_attempt_finished(f, s); /* nothing pending after all */
		return;
	}
	if (s->state == SLOT_IDLE) {
		s->tried_mask = 0;
		slot_connect(f, s);
	} else if (s->state == SLOT_SESSION && s->client_ready) {
		slot_start_message(f, s);
	}
}

/* The slot's store_io job: the plans of its record's read, then of a bad
 * record's quarantine copy; one of the two at a time. */
static bool slot_io_plan(void *owner, struct io_plan *p)
{
	struct forward_slot *s = owner;
	if (s->read_inflight)
		return store_read_plan(&s->read, p);
	return s->quarantine_active && segment_quarantine_plan(&s->quarantine, p);
}

static void slot_io_advance(void *owner, const struct io_plan *p)
{
	struct forward_slot *s = owner;
	if (s->read_inflight) {
		store_read_advance(&s->read, p);
		record_read_done(s->owner, s);
		return;
	}
	RMX_ASSERT(s->quarantine_active);
	segment_quarantine_advance(&s->quarantine, p);
	if (segment_quarantine_done(&s->quarantine))
		record_quarantine_done(s->owner, s);
}

/* ---- the delivery log and reclamation ---------------------------------------- */

/*
 * The delivery-log commit: the queue plans it (queue_commit_plan: each
 * log's write linked to its fdatasync), store_io performs it, and
 * queue_commit_advance takes the results. One in flight, the shards taking
 * turns; a commit starts only from delivery_log_submit, once per tick.
 */
static bool delivery_log_plan(void *owner, struct io_plan *p)
{
	struct forward *f = owner;
	if (!f->delivery_log_wanted)
		return false;
	uint32_t n = f->env.shard_count;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t shard = (f->delivery_log_next + k) % n;
		if (queue_commit_plan(shard_queue(f, shard), p)) {
			f->delivery_log_wanted = false;
			f->delivery_log_shard = shard;
			f->delivery_log_next = shard + 1;
			return true;
		}
	}
	return false;
}

static void delivery_log_advance(void *owner, const struct io_plan *p)
{
	struct forward *f = owner;
	int rc = queue_commit_advance(shard_queue(f, f->delivery_log_shard), p);
	if (rc != 0) {
		log_error("event=delivery_log_failed worker=%u error=%s", f->env.worker,
			  log_errno_name(rc));
		metrics_inc(&f->env.metrics->delivery_log_failures);
	}
}

static void delivery_log_submit(struct forward *f)
{
	f->delivery_log_wanted = true;
	store_io_kick(f->env.io, &f->delivery_log_job);
	f->delivery_log_wanted = false;
}

/* The removal of a reclaimable segment and its log: storage plans it
 * (segment_remove.h: the segment, a directory fsync, then the log), store_io
 * performs it. One at a time, the shards taking turns from the first. */
static void reclaim_finish(struct forward *f)
{
	const struct segment_remove *r = &f->reclaim;
	f->reclaim_inflight = false;
	const struct forward_shard *sh = &f->env.shards[f->reclaim_shard];
	if (r->error != 0)
		log_error("event=segment_unlink_failed worker=%u seq=%u op=%s log_kept=%d error=%s",
			  f->env.worker, r->seq, io_step_op_name(r->failed_op), (int)r->log_kept,
			  log_errno_name(r->error));
	int fd = queue_reclaimed(sh->queue, r->seq);
	if (fd >= 0)
		close(fd);
	store_segment_removed(sh->store, r->seq);
	log_info("event=segment_reclaimed worker=%u shard=w%u seq=%u", f->env.worker, sh->id,
		 r->seq);
}

static bool reclaim_plan(void *owner, struct io_plan *p)
{
	struct forward *f = owner;
	if (!f->reclaim_inflight)
		return false;
	if (segment_remove_plan(&f->reclaim, p))
		return true;
	reclaim_finish(f);
	return false;
}

static void reclaim_advance(void *owner, const struct io_plan *p)
{
	struct forward *f = owner;
	segment_remove_advance(&f->reclaim, p);
}

static void reclaim_submit(struct forward *f)
{
	uint32_t seq = 0, shard = 0;
	if (f->reclaim_inflight)
		return;
	while (shard < f->env.shard_count && !queue_reclaimable(shard_queue(f, shard), &seq))
		shard++;
	if (shard == f->env.shard_count)
		return;
	segment_fd_forget(f, shard, seq);
	f->reclaim_inflight = true;
	f->reclaim_shard = shard;
	segment_remove_start(&f->reclaim, store_dir_fd(f->env.shards[shard].store), seq);
	store_io_kick(f->env.io, &f->reclaim_job);
}

/* ---- the public face ---------------------------------------------------------- */

int forward_new(const struct forward_env *env, struct forward **out)
{
	RMX_ASSERT(env->shard_count >= 1 && env->shard_count <= FORWARD_SHARDS_MAX);
	struct forward *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->env = *env;
	f->slot_count = env->cfg->upstream_count ? env->cfg->upstream_connections : 0;
	if (f->slot_count) {
		f->slots = calloc(f->slot_count, sizeof(*f->slots));
		if (!f->slots) {
			free(f);
			return -ENOMEM;
		}
	}
	for (uint32_t i = 0; i < f->slot_count; i++) {
		struct forward_slot *s = &f->slots[i];
		s->owner = f;
		s->index = i;
		s->fd = -1;
		s->state = SLOT_IDLE;
		store_io_add(env->io, &s->io_job, slot_io_plan, slot_io_advance, s);
	}
	for (uint32_t i = 0; i < FORWARD_SEGMENT_FDS_MAX; i++)
		f->seg_fds[i].fd = -1;
	store_io_add(env->io, &f->delivery_log_job, delivery_log_plan, delivery_log_advance, f);
	store_io_add(env->io, &f->reclaim_job, reclaim_plan, reclaim_advance, f);
	*out = f;
	return 0;
}

void forward_free(struct forward *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->slot_count; i++) {
		struct forward_slot *s = &f->slots[i];
		if (s->fd >= 0)
			close(s->fd);
		free(s->rec);
		free(s->quarantine_rec);
		forward_msg_free(&s->fm);
		bounce_free(&s->dsn);
	}
	for (uint32_t i = 0; i < FORWARD_SEGMENT_FDS_MAX; i++)
		if (f->seg_fds[i].fd >= 0)
			close(f->seg_fds[i].fd);
	free(f->slots);
	free(f);
}

void forward_set_config(struct forward *f, const struct config *cfg)
{
	RMX_ASSERT(cfg->upstream_count == f->env.cfg->upstream_count &&
		   cfg->upstream_connections == f->env.cfg->upstream_connections);
	f->env.cfg = cfg;
}

void forward_record_durable(struct forward *f, uint64_t queue_id, uint64_t padded_bytes,
			    uint32_t rcpt_count, int64_t arrival_unix_ms)
{
	int rc = queue_add(shard_queue(f, 0), queue_id, padded_bytes, rcpt_count, arrival_unix_ms,
			   f->now_unix_ms ? f->now_unix_ms : arrival_unix_ms);
	if (rc != 0) {
		char id[RECORD_QUEUE_ID_CHARS];
		queue_id_format(queue_id, id);
		log_error("event=queue_add_failed worker=%u id=%.16s error=%s", f->env.worker, id,
			  log_errno_name(rc));
	}
}

/*
 * Attaches a due message of some shard to the slot, the shards taking turns.
 * The record buffers the slots hold stay within max_inflight_data_bytes (the
 * same bound as the bodies being received): a message that would pass it
 * waits until another slot lets go of its record. One record is always
 * allowed, so the largest message is never stuck.
 */
static bool next_due(struct forward *f, struct forward_slot *s, int64_t now_unix_ms)
{
	uint32_t n = f->env.shard_count;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t shard = (f->due_next + k) % n;
		uint64_t bytes = queue_next_due_bytes(shard_queue(f, shard), now_unix_ms);
		if (bytes == 0)
			continue;
		if (f->rec_held_bytes > 0 &&
		    f->rec_held_bytes + bytes > f->env.cfg->max_inflight_data_bytes)
			return false;
		struct queue_msg *m = queue_next_due(shard_queue(f, shard), now_unix_ms);
		RMX_ASSERT(m != NULL && queue_msg_padded_bytes(m) == bytes);
		s->msg = m;
		s->shard = shard;
		f->due_next = shard + 1;
		return true;
	}
	return false;
}

void forward_tick(struct forward *f, int64_t now_unix_ms, uint64_t now_ms)
{
	f->now_unix_ms = now_unix_ms;
	f->now_ms = now_ms;
	for (uint32_t i = 0; i < f->slot_count; i++) {
		struct forward_slot *s = &f->slots[i];
		if (s->dsn.active && s->dsn.reserve_wait)
			dsn_store(f, s);
		if (s->deadline_ms && now_ms > s->deadline_ms &&
		    (s->state == SLOT_SESSION || s->state == SLOT_CONNECTING)) {
			log_warn("event=upstream_timeout worker=%u upstream=%s", f->env.worker,
				 f->env.cfg->upstream[s->upstream].text);
			s->deadline_ms = 0;
			if (s->state == SLOT_CONNECTING)
				f->upstream_down_until_ms[s->upstream] = now_ms + FORWARD_UPSTREAM_DOWN_MS;
			msg_connection_lost(f, s, "upstream timeout");
			slot_close(f, s);
			continue;
		}
		if (s->state == SLOT_SESSION && s->client_ready && !s->msg && !s->quitting &&
		    (f->draining || now_ms - s->idle_since_ms > FORWARD_IDLE_QUIT_MS ||
		     (s->upstream > 0 && now_ms - s->connected_ms > FORWARD_FAILOVER_MAX_AGE_MS))) {
			s->quitting = true;
			s->client_ready = false;
			slot_drive(f, s, smtp_client_quit(&s->client, &s->out));
			continue;
		}
		if (f->draining || s->msg || s->state == SLOT_CLOSING || s->state == SLOT_CONNECTING ||
		    s->quitting || s->quarantine_active)
			continue;
		if (s->state == SLOT_SESSION && !s->client_ready)
			continue; /* greeting or RSET still running */
		if (!next_due(f, s, now_unix_ms))
			break;
		slot_read_record(f, s);
	}
	delivery_log_submit(f);
	reclaim_submit(f);
	uint64_t pending = 0;
	for (uint32_t k = 0; k < f->env.shard_count; k++) {
		struct queue_stats qs;
		queue_get_stats(shard_queue(f, k), &qs);
		pending += qs.messages;
	}
	metrics_set(&f->env.metrics->forward_pending_records, pending);
	metrics_set(&f->env.metrics->forward_record_buffer_bytes, f->rec_held_bytes);
	int64_t oldest = INT64_MAX;
	for (uint32_t k = 0; k < f->env.shard_count; k++)
		oldest = RMX_MIN(oldest, queue_oldest_arrival_unix_ms(shard_queue(f, k)));
	metrics_set(&f->env.metrics->forward_oldest_pending_age_s,
		    oldest == INT64_MAX ? 0 : (uint64_t)RMX_MAX(now_unix_ms - oldest, 0) / 1000);
}

void forward_on_cqe(struct forward *f, const struct io_uring_cqe *cqe)
{
	enum ring_op op = ring_ud_op(cqe->user_data);
	uint32_t i = ring_ud_slot(cqe->user_data);
	RMX_ASSERT(i < f->slot_count);
	struct forward_slot *s = &f->slots[i];
	switch (op) {
	case RING_OP_FWD_CONNECT:
		RMX_ASSERT(ring_ud_gen(cqe->user_data) == s->gen && s->connect_inflight);
		on_connect(f, s, cqe->res);
		return;
	case RING_OP_FWD_RECV:
		on_recv(f, s, cqe->res);
		return;
	case RING_OP_FWD_SEND:
		on_send(f, s, cqe->res);
		return;
	default:
		RMX_ASSERT(!"not a forwarder op");
	}
}

bool forward_drain(struct forward *f, bool hurry)
{
	f->draining = true;
	bool busy = false;
	for (uint32_t i = 0; i < f->slot_count; i++) {
		struct forward_slot *s = &f->slots[i];
		if (hurry && s->state != SLOT_IDLE && s->state != SLOT_CLOSING && !s->dsn.active)
			slot_close(f, s);
		/* Not read yet, or not begun on the wire: back to the queue for the
		 * next start. */
		bool unread = s->msg && !s->msg_loaded && !s->read_inflight;
		bool unsent = s->msg && s->msg_loaded && !s->msg_started && !s->dsn.active &&
			      s->state != SLOT_CONNECTING;
		if (unread || unsent)
			msg_requeue(f, s, f->now_unix_ms);
		busy |= s->state != SLOT_IDLE || s->msg != NULL || s->read_inflight ||
			s->quarantine_active;
	}
	for (uint32_t k = 0; k < f->env.shard_count; k++)
		busy |= queue_commit_busy(shard_queue(f, k));
	return busy || f->delivery_log_job.busy || f->reclaim_inflight;
}

void forward_get_stats(const struct forward *f, struct forward_stats *out)
{
	*out = f->stats;
}
