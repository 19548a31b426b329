/*
 * forward.c - one worker's forwarder: a pool of slots, each one upstream
 * connection and at most one message, and what the worker calls (forward.h).
 *
 * Each tick enforces every slot's upstream deadline and closes idle
 * connections; attaches due messages to free slots, the shards taking
 * turns and the record buffers bounded by max_inflight_data_bytes, open
 * connections first and a new one only while the backlog persists (the
 * adaptive pool, pool_attach_due); then starts the disk upkeep. The
 * parts, over one private layout (forward_state.h):
 *
 *   forward_record.c    the slot's stored record: read, check, set aside
 *   forward_upstream.c  the connection to the relay, driving smtp_client
 *   forward_attempt.c   the message's outcomes, the delivery log lines, DSNs
 *   forward_upkeep.c    delivery-log commits and segment reclamation
 *
 * Everything runs on the worker thread; completions of RING_OP_FWD_* come
 * in through forward_on_cqe, store_io's through the jobs the parts register.
 */
#include "forward.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "forward_attempt.h"
#include "forward_record.h"
#include "forward_state.h"
#include "forward_upkeep.h"
#include "forward_upstream.h"
#include "metrics.h"

/* Connections the pool opens at once (see pool_attach_due). */
#define FORWARD_POOL_OPENING_MAX 1u

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
		/* Built even with upstream_tls = none: a reload may turn it on.
		 * upstream_ca is read here, at start-up. */
		struct tls_client_settings ts = { .min_version = TLS_VERSION_MIN_1_2,
						  .ciphers = NULL,
						  .ca_file = env->cfg->upstream_ca };
		char err[TLS_ERROR_TEXT_BYTES + PATH_MAX];
		f->tls_client = tls_client_ctx_new(&ts, err, sizeof(err));
		if (!f->tls_client) {
			log_error("event=upstream_tls_setup_failed worker=%u error=\"%s\"", env->worker,
				  err);
			free(f->slots);
			free(f);
			return -EINVAL;
		}
	}
	for (uint32_t i = 0; i < f->slot_count; i++) {
		struct forward_slot *s = &f->slots[i];
		s->owner = f;
		s->index = i;
		s->tp.fd = -1;
		s->state = SLOT_IDLE;
		forward_record_job_add(f, s);
	}
	for (uint32_t i = 0; i < FORWARD_SEGMENT_FDS_MAX; i++)
		f->seg_fds[i].fd = -1;
	forward_upkeep_jobs_add(f);
	*out = f;
	return 0;
}

void forward_free(struct forward *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->slot_count; i++) {
		struct forward_slot *s = &f->slots[i];
		if (s->tp.fd >= 0)
			s->tp.ops->close(&s->tp);
		free(s->rec_buf);
		free(s->quarantine_rec);
		forward_msg_free(&s->fm);
		bounce_free(&s->dsn);
	}
	for (uint32_t i = 0; i < FORWARD_SEGMENT_FDS_MAX; i++)
		if (f->seg_fds[i].fd >= 0)
			close(f->seg_fds[i].fd);
	free(f->slots);
	tls_ctx_unref(f->tls_client);
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

void forward_dsn_committed(struct forward *f, uint64_t cookie, int result)
{
	uint32_t i = (uint32_t)(cookie & ~FORWARD_COOKIE_BIT);
	RMX_ASSERT(i < f->slot_count);
	struct forward_slot *s = &f->slots[i];
	RMX_ASSERT(s->dsn.active && s->msg);
	if (result != 0) {
		forward_attempt_dsn_abandon(f, s, result);
		return;
	}
	uint32_t n = bounce_committed(&s->dsn, shard_queue(f, 0), slot_queue(f, s), s->msg,
				      f->env.worker, f->now_unix_ms);
	f->stats.bounced += n;
	metrics_add(&f->env.metrics->forward_bounces, n);
	forward_attempt_release(f, s);
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

/* A slot connecting for the message it holds: the connect, the greeting
 * and EHLO (and STARTTLS) still run, or its record is being read first. */
static bool slot_opening(const struct forward_slot *s)
{
	return s->msg != NULL && !s->msg_started &&
	       (s->state == SLOT_IDLE || s->state == SLOT_CONNECTING ||
		(s->state == SLOT_SESSION && !s->client_ready));
}

/* The slot's deadlines, its idle connection's QUIT, a DSN waiting for room:
 * every slot, every tick, whatever the queue holds. */
static void slot_upkeep(struct forward *f, struct forward_slot *s, uint64_t now_ms)
{
	if (s->dsn.active && s->dsn.reserve_wait)
		forward_attempt_dsn_store(f, s);
	forward_upstream_recv_again(f, s);
	if (s->deadline_ms && now_ms > s->deadline_ms &&
	    (s->state == SLOT_SESSION || s->state == SLOT_CONNECTING)) {
		log_warn("event=upstream_timeout worker=%u upstream=%s", f->env.worker,
			 f->env.cfg->upstream[s->upstream].text);
		s->deadline_ms = 0;
		if (s->state == SLOT_CONNECTING)
			f->upstream_down_until_ms[s->upstream] = now_ms + FORWARD_UPSTREAM_DOWN_MS;
		forward_attempt_connection_lost(f, s, "upstream timeout");
		forward_upstream_close(f, s);
		return;
	}
	if (s->state == SLOT_SESSION && s->client_ready && !s->msg && !s->quitting &&
	    (f->draining || now_ms - s->idle_since_ms > FORWARD_IDLE_QUIT_MS ||
	     (s->upstream > 0 && now_ms - s->connected_ms > FORWARD_FAILOVER_MAX_AGE_MS))) {
		s->quitting = true;
		s->client_ready = false;
		forward_upstream_drive(f, s, smtp_client_quit(&s->client, &s->out));
	}
}

/* True when the slot can take a due message now: a connection that is
 * READY, or (opening one) a slot without a connection. */
static bool slot_free(const struct forward *f, const struct forward_slot *s)
{
	if (f->draining || s->msg || s->quitting || s->quarantine_active)
		return false;
	return (s->state == SLOT_SESSION && s->client_ready) || s->state == SLOT_IDLE;
}

/*
 * The adaptive pool. Due messages go first to connections that are open
 * and READY; only while messages are still due with none of those free
 * does the pool grow, by one connection at a time (the next waits until
 * the one opening has said EHLO), up to upstream_connections. So the pool
 * follows the backlog: a steady trickle keeps one connection busy, a
 * backlog that persists opens more, one after another, as fast as the
 * relay takes them; a relay that is down sees one attempt at a time, not
 * a burst. Connections idle for FORWARD_IDLE_QUIT_MS are closed: the pool
 * shrinks again when the load goes.
 */
static void pool_attach_due(struct forward *f, int64_t now_unix_ms)
{
	uint32_t opening = 0;
	for (uint32_t i = 0; i < f->slot_count; i++) {
		struct forward_slot *s = &f->slots[i];
		if (slot_opening(s)) {
			opening++;
			continue;
		}
		if (s->state != SLOT_SESSION || !slot_free(f, s))
			continue;
		if (!next_due(f, s, now_unix_ms))
			return;
		forward_record_read(f, s);
	}
	for (uint32_t i = 0; i < f->slot_count && opening < FORWARD_POOL_OPENING_MAX; i++) {
		struct forward_slot *s = &f->slots[i];
		if (s->state != SLOT_IDLE || !slot_free(f, s))
			continue;
		if (!next_due(f, s, now_unix_ms))
			return;
		forward_record_read(f, s);
		opening++;
	}
}

void forward_tick(struct forward *f, int64_t now_unix_ms, uint64_t now_ms)
{
	f->now_unix_ms = now_unix_ms;
	f->now_ms = now_ms;
	for (uint32_t i = 0; i < f->slot_count; i++)
		slot_upkeep(f, &f->slots[i], now_ms);
	pool_attach_due(f, now_unix_ms);
	forward_upkeep_submit(f);
	uint64_t pending = 0;
	int64_t oldest = INT64_MAX;
	for (uint32_t k = 0; k < f->env.shard_count; k++) {
		struct queue_stats qs;
		queue_get_stats(shard_queue(f, k), &qs);
		pending += qs.messages;
		oldest = RMX_MIN(oldest, queue_oldest_arrival_unix_ms(shard_queue(f, k)));
	}
	metrics_set(&f->env.metrics->forward_pending_records, pending);
	metrics_set(&f->env.metrics->forward_record_buffer_bytes, f->rec_held_bytes);
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
		forward_upstream_on_connect(f, s, cqe->res);
		return;
	case RING_OP_FWD_RECV:
		forward_upstream_on_recv(f, s, cqe);
		return;
	case RING_OP_FWD_SEND:
		forward_upstream_on_send(f, s, cqe->res);
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
			forward_upstream_close(f, s);
		/* Not read yet, or not begun on the wire: back to the queue for the
		 * next start. */
		bool unread = s->msg && !s->msg_loaded && !s->read_inflight;
		bool unsent = s->msg && s->msg_loaded && !s->msg_started && !s->dsn.active &&
			      s->state != SLOT_CONNECTING;
		if (unread || unsent)
			forward_attempt_requeue(f, s, f->now_unix_ms);
		busy |= s->state != SLOT_IDLE || s->msg != NULL || s->read_inflight ||
			s->quarantine_active;
	}
	return busy || forward_upkeep_busy(f);
}

void forward_get_stats(const struct forward *f, struct forward_stats *out)
{
	*out = f->stats;
}
