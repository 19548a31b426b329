/*
 * worker.c - the event loop of one worker: the loop, the dispatch of every
 * completion, draining, reload and operator requests; for now also the
 * ends of the store's group commit and of spare segments (and their delivery
 * logs): storage plans their disk work (store.h, segment_make.h) and
 * store_io.c performs it.
 *
 * The loop has liburing examples/proxy.c's shape: submit and wait, reap every
 * completion with io_uring_for_each_cqe, advance once, dispatch on the op in
 * user_data (the one switch; the modules expose on_<op> handlers). Client
 * connections are smtp_conn.c's, the metrics endpoint metrics_http.c's, the
 * upstream side forward.c's. Direct system calls are the store's chores
 * (getrandom, the zero chunk's mmap, closing retired segments) and, only
 * when an operator asks, the reading of request files (control.c).
 */
#include "worker.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "../storage/record.h"
#include "../storage/store.h"
#include "../storage/queue.h"
#include "../storage/segment_make.h"
#include "auth_verify.h"
#include "control.h"
#include "forward.h"
#include "front.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "overload.h"
#include "ring.h"
#include "smtp_conn.h"
#include "smtp_conn_auth.h"
#include "flow.h"
#include "store_io.h"
#include "txn.h"

/* One group commit in flight: its store_io job and when it was issued. */
struct commit_slot {
	struct store_io_job job;
	struct worker_loop *loop;
	uint64_t started_ns;
};

struct worker_loop {
	struct worker *w;
	const struct config *cfg;
	struct io_uring ring;
	struct ring_info ring_info;
	struct buf_ring bufs;
	bool log_write_inflight;
	bool wait_idle;                /* the loop's last wait ended with no completion */
	struct log_buffer logbuf;      /* this thread's log lines (log.h) */
	uint32_t bufs_peak;            /* most buffers filled in one batch, this second */
	uint64_t bufs_peak_since_ms;
	struct smtp_conns conns;       /* client connections (SMTP, then metrics clients) */
	struct overload overload;      /* this worker's overload state (core/overload) */
	uint64_t overload_checked_ms;
	struct metrics_http http;      /* the metrics endpoint */
	struct txn_budget budget;
	struct loop_clock clock;       /* read once per loop turn */
	uint64_t wake_value;
	bool draining;
	uint64_t drain_deadline_ms;

	/* Storage's plans on this ring: the group commits (up to
	 * commits_in_flight at once) and the spare segment's making. */
	struct store_io io;
	struct commit_slot commit[STORE_COMMITS_IN_FLIGHT_MAX];
	uint32_t commit_slots;         /* commits_in_flight */
	bool commit_wanted;            /* commit_submit is asking */
	struct store_io_job spare_job;
	struct segment_make spare;
	bool spare_active;             /* spare is being made */
	uint8_t *zero_chunk;           /* zeros, then the spare's header block */

	struct forward *forward;

	/* Connections whose finished message waits for room in the store. */
	uint32_t reserve_head, reserve_tail;

	/* Connections whose durable message's 250 waits for the forwarder. */
	struct flow flow;
};

/* ---- time ---------------------------------------------------------------- */

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void loop_clock(struct worker_loop *l)
{
	l->clock.now_ns = mono_ns();
	l->clock.now_ms = l->clock.now_ns / 1000000u;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	l->clock.now_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	l->budget.now_ns = l->clock.now_ns;
}

static void arm_wake(struct worker_loop *l)
{
	struct io_uring_sqe *sqe = ring_sqe(&l->ring);
	io_uring_prep_read(sqe, l->w->wake_fd, &l->wake_value, sizeof(l->wake_value), 0);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_WAKE, 0, 0));
}

/* ---- the store ------------------------------------------------------------ */

static uint64_t conn_cookie(struct worker_loop *l, struct conn *c)
{
	return ((uint64_t)c->gen << 32) | conn_index(&l->conns.slab, c);
}

static void reserve_wait_push(struct worker_loop *l, struct conn *c)
{
	c->flags |= CONN_WAIT_RESERVE;
	c->next = CONN_NONE;
	uint32_t idx = conn_index(&l->conns.slab, c);
	if (l->reserve_tail == CONN_NONE)
		l->reserve_head = idx;
	else
		l->conns.slab.conns[l->reserve_tail].next = idx;
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
	int64_t now_unix = l->clock.now_unix_ms / 1000;
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
	txn_seal(t, qid, l->clock.now_unix_ms);
	rc = store_append(l->w->shards[0].store, qid, t->parts, t->nparts, conn_cookie(l, c));
	RMX_ASSERT(rc == 0); /* a reservation always takes its record */
	c->flags |= CONN_WAIT_COMMIT;
	return 0;
}

/* The session finished a message: add the client facts, then store it
 * (the smtp_conns hook). */
static void conn_message_done(void *ctx, struct conn *c)
{
	struct worker_loop *l = ctx;
	/* "VERSION CIPHER", as the record and the log keep it. */
	char tls_text[sizeof(struct smtp_tls_info)];
	struct span tls = { (const uint8_t *)tls_text, 0 };
	const struct smtp_tls_info *ti = smtp_session_tls(&c->session);
	if (ti != NULL) {
		int n = snprintf(tls_text, sizeof(tls_text), "%s %s", ti->version, ti->cipher);
		RMX_ASSERT(n > 0 && (size_t)n < sizeof(tls_text));
		tls.len = (size_t)n;
	}
	const struct txn_client_facts facts = {
		.client_ip = span_make(c->peer.ip, strlen(c->peer.ip)),
		.helo = smtp_session_helo(&c->session),
		.protocol = smtp_session_protocol(&c->session),
		.tls = tls,
		.auth_user = smtp_session_auth_user(&c->session),
	};
	int rc = txn_add_client(&c->txn, &facts);
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

static void conn_answer_commit(struct worker_loop *l, struct conn *c, int result,
			       uint64_t queue_id);

static void commit_done_one(void *ctx, uint64_t cookie, int result)
{
	struct worker_loop *l = ctx;
	if (cookie & FORWARD_COOKIE_BIT) {
		forward_dsn_committed(l->forward, cookie, result);
		return;
	}
	uint32_t slot = (uint32_t)cookie;
	struct conn *c = &l->conns.slab.conns[slot];
	RMX_ASSERT(slot < l->conns.slab.cap && (c->flags & CONN_USED) && (c->flags & CONN_WAIT_COMMIT));
	RMX_ASSERT(c->gen == (uint32_t)(cookie >> 32));
	if (result == 0) {
		struct metrics_worker *m = l->w->metrics;
		uint64_t body_bytes = c->txn.body.len - TXN_HEADROOM_BYTES;
		metrics_inc(&m->messages_accepted);
		metrics_add(&m->received_bytes, body_bytes);
		metrics_observe_size_bytes(&m->message_size, body_bytes);
		metrics_observe_latency_ns(&m->ack_latency, l->clock.now_ns - c->msg_done_ns);
		if (c->txn.mail_ns)
			metrics_observe_latency_ns(&m->transaction_duration,
						   l->clock.now_ns - c->txn.mail_ns);
		c->messages++;
		txn_log_accepted(&c->txn);
		forward_record_durable(l->forward, c->txn.queue_id,
				       c->txn.header.length + record_padding(c->txn.header.length),
				       c->txn.rcpt_count, c->txn.header.arrival_unix_ms);
	}
	uint64_t queue_id = c->txn.queue_id;
	txn_reset(&c->txn);
	if (result != 0)
		log_error("event=commit_failed worker=%u error=%s", l->w->id, log_errno_name(result));
	if (result == 0 && !(c->flags & CONN_CLOSING) && flow_should_hold(&l->flow)) {
		/* Durable; its 250 waits for the forwarder (flow.h). */
		c->flow_held_id = queue_id;
		flow_hold(&l->flow, &l->conns.slab, c, l->clock.now_ms);
		metrics_inc(&l->w->metrics->flow_held);
		return;
	}
	conn_answer_commit(l, c, result, queue_id);
}

/* Gives the session the outcome of its message's commit: "250 ... queued
 * as ID", or the failure. */
static void conn_answer_commit(struct worker_loop *l, struct conn *c, int result, uint64_t queue_id)
{
	c->flags &= ~CONN_WAIT_COMMIT;
	if (c->flags & CONN_CLOSING) {
		smtp_conn_release_if_done(&l->conns, c);
		return;
	}
	if (!smtp_conn_out_ready(&l->conns, c)) {
		smtp_conn_close(&l->conns, c);
		return;
	}
	char id_text[RECORD_QUEUE_ID_CHARS];
	queue_id_format(queue_id, id_text);
	smtp_session_committed(&c->session, result, span_make(id_text, sizeof(id_text)), &c->out);
	smtp_conn_arm_deadline(&l->conns, c);
	smtp_conn_pump(&l->conns, c);
}

/* Inflow control, once per loop turn: tokens from what the forwarder
 * delivered, then the held 250s that may go (all of them when draining or
 * no longer pacing). */
static void flow_kick(struct worker_loop *l)
{
	const struct metrics_worker *m = l->w->metrics;
	flow_tick(&l->flow, m->forward_attempts[METRICS_FORWARD_SUCCESS],
		  m->forward_pending_records, l->cfg->in_flow_backlog,
		  (uint64_t)l->cfg->in_flow_delay_s * 1000u, l->clock.now_ms);
	struct conn *c;
	while ((c = flow_next_due(&l->flow, &l->conns.slab, l->clock.now_ms,
				  (uint64_t)l->cfg->in_flow_delay_s * 1000u,
				  l->draining || !l->flow.pacing)) != NULL)
		conn_answer_commit(l, c, 0, c->flow_held_id);
}

/*
 * The group commit: storage plans it (store_commit_plan: the batch's
 * writev linked to its fdatasync, or one direct write), store_io performs
 * it, and store_commit_advance reports it; the store answers the records of
 * a batch once it and every older batch are durable. A commit starts only
 * from commit_submit, once per loop turn (not again from its own
 * completion), so that a batch collects what finishes meanwhile; with
 * commits_in_flight > 1 the next batch goes as soon as it holds a record,
 * while the earlier ones are still on their way.
 */
static bool commit_plan(void *owner, struct io_plan *p)
{
	struct commit_slot *slot = owner;
	struct worker_loop *l = slot->loop;
	uint32_t records;
	if (!l->commit_wanted || !store_commit_plan(l->w->shards[0].store, p, &records))
		return false;
	slot->started_ns = mono_ns();
	metrics_observe_batch_records(&l->w->metrics->commit_batch, records);
	return true;
}

static void commit_advance(void *owner, const struct io_plan *p)
{
	struct commit_slot *slot = owner;
	struct worker_loop *l = slot->loop;
	metrics_observe_latency_ns(&l->w->metrics->fsync_latency, mono_ns() - slot->started_ns);
	int result = store_commit_advance(l->w->shards[0].store, p, commit_done_one, l);
	if (result < 0)
		metrics_inc(&l->w->metrics->store_commit_failures);
}

static void commit_submit(struct worker_loop *l)
{
	l->commit_wanted = true;
	for (uint32_t i = 0; i < l->commit_slots; i++) {
		struct store_io_job *job = &l->commit[i].job;
		if (!job->busy && !store_io_kick(&l->io, job))
			break; /* nothing (more) to commit now */
	}
	l->commit_wanted = false;
}

static bool commits_busy(const struct worker_loop *l)
{
	for (uint32_t i = 0; i < l->commit_slots; i++)
		if (l->commit[i].job.busy)
			return true;
	return false;
}

/*
 * Spare segments: made by storage's machine (segment_make.h) on this ring,
 * the same one start-up runs blocking. Its plans zero-fill with O_DIRECT:
 * 64 MiB of zeros through the page cache would be dirty data that the next
 * journal commit (every group commit's fdatasync) has to wait for, stalling
 * acknowledgements for hundreds of milliseconds.
 */
static void spare_finish(struct worker_loop *l)
{
	struct segment_make *m = &l->spare;
	struct store *st = l->w->shards[0].store;
	l->spare_active = false;
	if (m->error == 0 && m->log_fd >= 0) {
		int rc = queue_dlog_ready(l->w->shards[0].queue, m->seq, m->log_fd);
		if (rc != 0) {
			/* -EEXIST: the queue already holds this log (from start-up). */
			close(m->log_fd);
			if (rc != -EEXIST) {
				log_error("event=delivery_log_open_failed worker=%u seq=%u error=%s",
					  l->w->id, m->seq, log_errno_name(rc));
				metrics_inc(&l->w->metrics->delivery_log_failures);
			}
		}
	} else if (m->error == 0 && m->log_error != 0) {
		/* The segment is fine; without its log, its outcomes are not kept
		 * and it is never deleted in this run (the queue says so). */
		log_error("event=delivery_log_open_failed worker=%u seq=%u error=%s", l->w->id,
			  m->seq, log_errno_name(m->log_error));
		metrics_inc(&l->w->metrics->delivery_log_failures);
		int rc = queue_dlog_ready(l->w->shards[0].queue, m->seq, m->log_error);
		if (rc != 0 && rc != -EEXIST) /* -ENOMEM: the queue cannot even note it */
			log_error("event=delivery_log_untracked worker=%u seq=%u error=%s",
				  l->w->id, m->seq, log_errno_name(rc));
	}
	if (m->error != 0) {
		log_error("event=spare_segment_failed worker=%u seq=%u step=%s op=%s error=%s",
			  l->w->id, m->seq, segment_make_state_name(m->failed_state),
			  io_step_op_name(m->failed_op), log_errno_name(m->error));
		metrics_inc(&l->w->metrics->store_spare_failures);
		store_spare_ready(st, m->seq, m->error);
		return;
	}
	if (m->fallocate_unsupported)
		log_info("event=spare_segment_zero_filled worker=%u seq=%u reason=fallocate_unsupported",
			 l->w->id, m->seq);
	if (m->direct)
		store_spare_ready_direct(st, m->seq, m->fd);
	else
		store_spare_ready(st, m->seq, m->fd);
}

static bool spare_plan(void *owner, struct io_plan *p)
{
	struct worker_loop *l = owner;
	if (!l->spare_active)
		return false;
	if (segment_make_plan(&l->spare, p))
		return true;
	spare_finish(l);
	return false;
}

static void spare_advance(void *owner, const struct io_plan *p)
{
	struct worker_loop *l = owner;
	segment_make_advance(&l->spare, p);
}

static void spare_start(struct worker_loop *l)
{
	const char *path;
	uint32_t seq;
	struct store *st = l->w->shards[0].store;
	if (l->spare_active || l->draining || !store_spare_wanted(st, l->clock.now_ms, &path, &seq))
		return;
	/* Zeros, then in the last SEGMENT_HEADER_BYTES the header block of the
	 * spare being made: page-aligned for O_DIRECT, and only that block is
	 * ever written to. */
	_Static_assert(SEGMENT_ZERO_CHUNK_BYTES > SEGMENT_HEADER_BYTES &&
			       SEGMENT_ZERO_CHUNK_BYTES % SEGMENT_HEADER_BYTES == 0,
		       "the header block ends the zero chunk, aligned");
	const uint64_t zeros_bytes = SEGMENT_ZERO_CHUNK_BYTES - SEGMENT_HEADER_BYTES;
	if (!l->zero_chunk) {
		void *z = mmap(NULL, SEGMENT_ZERO_CHUNK_BYTES, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (z == MAP_FAILED) {
			store_spare_ready(st, seq, -errno);
			return;
		}
		l->zero_chunk = z;
	}
	/* A fresh salt per segment: what makes its record framing unforgeable. */
	uint64_t salt;
	ssize_t got = getrandom(&salt, sizeof(salt), GRND_NONBLOCK);
	if (got != (ssize_t)sizeof(salt)) {
		store_spare_ready(st, seq, got < 0 ? -errno : -EIO);
		return;
	}
	store_spare_header(st, salt, l->zero_chunk + zeros_bytes);
	struct segment_make_config mc = {
		.dir_fd = store_dir_fd(st),
		.size_bytes = l->cfg->segment_size_bytes,
		.header = l->zero_chunk + zeros_bytes,
		.zeros = l->zero_chunk,
		.zeros_bytes = zeros_bytes,
		.sync = l->cfg->fsync,
		.with_log = true,
		.keep_direct = store_commits_direct(st),
	};
	segment_make_start(&l->spare, &mc, seq);
	l->spare_active = true;
	store_io_kick(&l->io, &l->spare_job);
}

/* Once per loop turn: start a commit, a spare, and retry waiting messages. */
static void store_kick(struct worker_loop *l)
{
	l->budget.store_state = store_admit(l->w->shards[0].store);
	while (l->reserve_head != CONN_NONE) {
		struct conn *c = &l->conns.slab.conns[l->reserve_head];
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
			smtp_conn_release_if_done(&l->conns, c);
			continue;
		}
		if (rc != 0) {
			txn_reset(&c->txn);
			if (!smtp_conn_out_ready(&l->conns, c)) { /* its earlier replies were sent meanwhile */
				smtp_conn_close(&l->conns, c);
				continue;
			}
			smtp_session_committed(&c->session, rc, span_make("", 0), &c->out);
			smtp_conn_pump(&l->conns, c);
		}
	}
	commit_submit(l);
	spare_start(l);
	for (int fd; (fd = store_retired_fd(l->w->shards[0].store)) >= 0;)
		close(fd); /* a sealed segment the store has finished writing */
	forward_tick(l->forward, l->clock.now_unix_ms, l->clock.now_ms);
	flow_kick(l);
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

/*
 * Overload, judged per worker every OVERLOAD_CHECK_MS from its own shard,
 * backlog and in-flight data against the overload_* watermarks: stress makes
 * new transactions wait (452 4.3.1) and shortens timeouts, refuse sends new
 * connections away (421 4.3.2). Messages already past DATA are never cut.
 * A change is logged with its reasons.
 */
static void overload_check(struct worker_loop *l)
{
	if (l->clock.now_ms - l->overload_checked_ms < OVERLOAD_CHECK_MS)
		return;
	l->overload_checked_ms = l->clock.now_ms;
	const struct config *cfg = l->conns.cfg;
	struct store_stats ss;
	store_get_stats(l->w->shards[0].store, &ss);
	const struct metrics_worker *m = l->w->metrics;
	struct overload_sample sample = {
		.store_used_bytes = ss.bytes_used,
		.store_max_bytes = cfg->store_max_bytes / cfg->workers,
		.backlog_messages = m->forward_pending_records,
		.backlog_oldest_age_s = m->forward_oldest_pending_age_s,
		.inflight_bytes = l->budget.inflight_bytes,
		.inflight_max_bytes = l->budget.max_inflight_bytes,
	};
	struct overload_watermarks wm;
	overload_watermarks_of_config(cfg, &wm);
	enum overload_state before = l->overload.state;
	if (overload_update(&l->overload, &wm, &sample)) {
		char reasons[128];
		if (!overload_reasons_format(l->overload.reasons, reasons, sizeof(reasons)))
			snprintf(reasons, sizeof(reasons), "?");
		enum log_level level = l->overload.state > before ? LOG_WARN : LOG_INFO;
		log_line(level, "event=overload worker=%u state=%s was=%s reasons=%s store_bytes=%llu "
			 "backlog=%llu backlog_age_s=%llu inflight_bytes=%llu", l->w->id,
			 overload_state_name(l->overload.state), overload_state_name(before),
			 reasons[0] ? reasons : "none", (unsigned long long)sample.store_used_bytes,
			 (unsigned long long)sample.backlog_messages,
			 (unsigned long long)sample.backlog_oldest_age_s,
			 (unsigned long long)sample.inflight_bytes);
		smtp_conns_set_overload(&l->conns, l->overload.state);
	}
	metrics_set(&l->w->metrics->overload_state, l->overload.state);
	for (unsigned r = 0; r < OVERLOAD_REASON_COUNT; r++)
		metrics_set(&l->w->metrics->overload_reason[r], l->overload.level[r]);
}

/* ---- draining ------------------------------------------------------------- */

static void drain_begin(struct worker_loop *l)
{
	if (l->draining) {
		l->drain_deadline_ms = l->clock.now_ms; /* asked again: hurry */
		return;
	}
	l->draining = true;
	l->drain_deadline_ms = l->clock.now_ms + (uint64_t)l->cfg->shutdown_grace_s * 1000u;
	smtp_conns_stop_listening(&l->conns);
	log_info("event=drain worker=%u connections=%u grace_s=%u", l->w->id, l->conns.slab.used,
		 l->cfg->shutdown_grace_s);
}

static bool drain_finished(struct worker_loop *l)
{
	bool late = l->clock.now_ms >= l->drain_deadline_ms;
	bool forwarding = forward_drain(l->forward, late);
	return l->conns.slab.used == 0 && !commits_busy(l) && !store_busy(l->w->shards[0].store) &&
	       !l->spare_active && !forwarding;
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
		int rc = control_apply(sh->queue, shard_dir, l->clock.now_unix_ms, &r);
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
	smtp_conns_set_config(&l->conns, next);
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
	if (l->log_write_inflight ||
	    log_buffer_due_ms(&l->logbuf, l->clock.now_ms, l->wait_idle) != 0 ||
	    !log_buffer_begin_write(&l->logbuf, l->clock.now_ms, &p, &n))
		return; /* a busy loop's lines wait for a batch (log_buffer_due_ms) */
	struct io_uring_sqe *sqe = ring_sqe(&l->ring);
	io_uring_prep_write(sqe, STDERR_FILENO, p, (unsigned)n, (uint64_t)-1); /* file position */
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_LOG_WRITE, 0, 0));
	l->log_write_inflight = true;
}

static void on_log_write(struct worker_loop *l, int res)
{
	RMX_ASSERT(l->log_write_inflight);
	l->log_write_inflight = false;
	log_buffer_write_done(&l->logbuf, res, l->clock.now_ms);
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
			log_buffer_write_done(&l->logbuf, res, l->clock.now_ms);
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
		smtp_conn_on_accept(&l->conns, cqe);
		break;
	case RING_OP_RECV:
		smtp_conn_on_recv(&l->conns, cqe);
		break;
	case RING_OP_SEND:
		smtp_conn_on_send(&l->conns, cqe);
		break;
	case RING_OP_REJECT_SEND:
		smtp_conn_on_reject_sent(&l->conns, cqe);
		break;
	case RING_OP_STORE_IO:
		store_io_on_cqe(&l->io, cqe);
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
		metrics_http_on_accept(&l->http, cqe);
		break;
	case RING_OP_LOG_WRITE:
		on_log_write(l, cqe->res);
		break;
	case RING_OP_AUTH:
		smtp_conn_on_auth(&l->conns, cqe);
		break;
	case RING_OP_FWD_CONNECT:
	case RING_OP_FWD_RECV:
	case RING_OP_FWD_SEND:
	case RING_OP_FWD_CLOSE:
		forward_on_cqe(l->forward, cqe);
		break;
	default:
		RMX_ASSERT(!"unknown op in user_data");
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
	if (l->clock.now_ms - l->bufs_peak_since_ms < 1000)
		return;
	metrics_set(&l->w->metrics->buffer_ring_in_use, l->bufs_peak);
	l->bufs_peak = 0;
	l->bufs_peak_since_ms = l->clock.now_ms;
}

static int loop_run(struct worker_loop *l)
{
	for (;;) {
		loop_clock(l);
		smtp_conns_tick(&l->conns);
		store_kick(l);
		if (l->draining) {
			smtp_conns_drain(&l->conns, l->clock.now_ms >= l->drain_deadline_ms);
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
		overload_check(l);
		log_pump(l);
		buf_ring_publish(&l->bufs);
		smtp_conns_rearm(&l->conns);
		metrics_http_rearm(&l->http);
		/* Waits at most a timer tick, and no longer than log lines may wait. */
		uint64_t wait_ms = RMX_MIN((uint64_t)TIMER_TICK_MS,
					   log_buffer_due_ms(&l->logbuf, l->clock.now_ms, false));
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = (long long)wait_ms * 1000000L };
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
		l->wait_idle = seen == 0; /* the wait ran out: nothing to do */
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
	l->reserve_head = l->reserve_tail = CONN_NONE;
	flow_init(&l->flow);
	l->budget.max_inflight_bytes = w->cfg->max_inflight_data_bytes;
	l->budget.metrics = w->metrics;
	uint64_t sealed_damaged = 0;
	for (uint32_t k = 0; k < w->shard_count; k++)
		sealed_damaged += w->shards[k].sealed_damaged;
	metrics_set(&w->metrics->store_sealed_damaged, sealed_damaged);
	loop_clock(l);
	int rc = ring_init(&l->ring, RING_SQ_ENTRIES, &l->ring_info);
	if (rc != 0) {
		log_error("event=ring_init_failed worker=%u error=%s", w->id, log_errno_name(rc));
		return rc;
	}
	store_io_init(&l->io, &l->ring);
	l->commit_slots = w->cfg->commits_in_flight;
	RMX_ASSERT(l->commit_slots >= 1 && l->commit_slots <= STORE_COMMITS_IN_FLIGHT_MAX);
	for (uint32_t i = 0; i < l->commit_slots; i++) {
		l->commit[i].loop = l;
		store_io_add(&l->io, &l->commit[i].job, commit_plan, commit_advance, &l->commit[i]);
	}
	store_io_add(&l->io, &l->spare_job, spare_plan, spare_advance, l);
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
	struct transport_env env = { .ring = &l->ring, .buf_group = l->bufs.bgid };
	struct smtp_conn_hooks hooks = {
		.message_done = conn_message_done,
		.message_ctx = l,
		.http_input = metrics_http_input,
		.http_ctx = &l->http,
	};
	overload_init(&l->overload);
	rc = smtp_conns_init(&l->conns, w, w->cfg, &l->clock, env, &l->bufs, &l->budget, &hooks);
	if (rc != 0)
		return rc;
	metrics_http_init(&l->http, &l->conns, w, &l->draining);
	struct forward_env fe = {
		.ring = &l->ring,
		.bufs = &l->bufs,
		.shards = w->shards,
		.shard_count = w->shard_count,
		.cfg = w->cfg,
		.worker = w->id,
		.metrics = w->metrics,
		.io = &l->io,
	};
	rc = forward_new(&fe, &l->forward);
	if (rc != 0)
		return rc;
	apply_control(l); /* requests left while we were not running */
	metrics_http_listen(&l->http);
	smtp_conns_listen(&l->conns);
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
	/* No verifier thread may post to this ring's fd once it is gone (the
	 * number could be a new ring's). */
	if (l->w->front && l->w->front->auth_verify)
		auth_verify_forget(l->w->front->auth_verify, l->ring.ring_fd);
	ring_exit(&l->ring);
	smtp_conns_free(&l->conns);
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
