/*
 * forward_attempt.c - the message attached to a forwarder slot, from the
 * moment its record is read to the end of its attempt: the outcomes each
 * recipient's reply becomes (storage/queue, through forward_msg), the
 * delivery log lines and forwarding metrics, and the DSN handed to
 * bounce.c for recipients refused for good or expired.
 *
 * Invariants: the record buffer a slot holds is counted in rec_held_bytes
 * until forward_attempt_release (or the quarantine copy) gives it back; a
 * slot whose DSN is active keeps its message until that record is durable
 * or abandoned. No I/O here but the log.
 */
#include "forward_attempt.h"

#include <errno.h>
#include <stdlib.h>

#include "metrics.h"

/* Lets go of the slot's message; the record buffer's bytes go back to the
 * forwarder's budget. The buffers themselves are kept for the next message
 * unless they are larger than a usual one (FORWARD_REC_KEEP_BYTES,
 * FORWARD_MSG_RCPT_KEEP). */
void forward_attempt_release(struct forward *f, struct forward_slot *s)
{
	if (s->rec) {
		RMX_ASSERT(f->rec_held_bytes >= s->rec_bytes);
		f->rec_held_bytes -= s->rec_bytes;
	}
	s->rec = NULL;
	if (s->rec_buf_bytes > FORWARD_REC_KEEP_BYTES) {
		free(s->rec_buf);
		s->rec_buf = NULL;
		s->rec_buf_bytes = 0;
	}
	forward_msg_release(&s->fm);
	s->msg = NULL;
	s->msg_loaded = false;
	s->msg_started = false;
	s->body_pending = false;
	s->tried_mask = 0;
}

/* Gives the slot's message back to the queue without counting an attempt,
 * due at due_unix_ms (DONE or RETRY: either way the slot lets go of it). */
void forward_attempt_requeue(struct forward *f, struct forward_slot *s, int64_t due_unix_ms)
{
	enum queue_attempt_result r = queue_requeue(slot_queue(f, s), s->msg, due_unix_ms);
	RMX_ASSERT(r != QUEUE_ATTEMPT_BOUNCE_DUE);
	forward_attempt_release(f, s);
}

static const char *attempt_result_name(enum queue_attempt_result r)
{
	return r == QUEUE_ATTEMPT_DONE ? "done" : r == QUEUE_ATTEMPT_RETRY ? "retry" : "bounce";
}

/* The attempt on the slot's message is over (outcomes reported). */
void forward_attempt_finished(struct forward *f, struct forward_slot *s)
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
	forward_attempt_release(f, s);
}

/* Every pending recipient of the slot's message failed the same way. */
void forward_attempt_fail_all(struct forward *f, struct forward_slot *s,
			      enum queue_outcome outcome, uint16_t code, const char *status)
{
	forward_msg_fail_all(&s->fm, slot_queue(f, s), s->msg, outcome, code, status,
			     f->now_unix_ms);
	if (outcome == QUEUE_OUTCOME_TEMPFAIL) {
		f->stats.deferred += s->fm.rcpt_count;
		metrics_add(&f->env.metrics->forward_deferrals, s->fm.rcpt_count);
	}
	metrics_inc(&f->env.metrics->forward_attempts[METRICS_FORWARD_ERROR]);
	forward_attempt_finished(f, s);
}

/*
 * The connection ended under the slot's message. Begun on the wire: the
 * client settles every unfinished recipient with a 4xx (results already
 * final, a 550 to RCPT say, stand) and the attempt ends. Not begun: the
 * message waits for the next connection; not even read: back to the queue.
 */
void forward_attempt_connection_lost(struct forward *f, struct forward_slot *s,
				     const char *why)
{
	if (!s->msg || s->dsn.active)
		return;
	if (!s->msg_loaded) {
		if (!s->read_inflight)
			forward_attempt_requeue(f, s, f->now_unix_ms + 1000);
		return;
	}
	if (!s->msg_started)
		return;
	(void)smtp_client_connection_lost(&s->client, why);
	forward_attempt_results(f, s);
}

/* MESSAGE_DONE: one outcome per recipient, then the attempt ends. */
void forward_attempt_results(struct forward *f, struct forward_slot *s)
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
			if (s->tls_version[0]) { /* the connection is TLS */
				log_add_str(&lm, "tls_version", s->tls_version);
				log_add_str(&lm, "tls_cipher", s->tls_cipher);
			}
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
	forward_attempt_finished(f, s);
}

/* ---- bounces --------------------------------------------------------------- */

/* The slot's DSN cannot be stored: the slot lets go of the message, whose
 * recipients due a DSN are pending again (bounce_abandon). */
void forward_attempt_dsn_abandon(struct forward *f, struct forward_slot *s, int error)
{
	bounce_abandon(&s->dsn, slot_queue(f, s), s->msg, f->env.worker, f->env.cfg->retry_min_s,
		       f->now_unix_ms, error);
	forward_attempt_release(f, s);
}

/* Appends the slot's DSN record to the worker's own shard; retried on -EAGAIN. */
void forward_attempt_dsn_store(struct forward *f, struct forward_slot *s)
{
	int rc = bounce_store(&s->dsn, f->env.shards[0].store, FORWARD_COOKIE_BIT | s->index,
			      f->now_unix_ms);
	if (rc != 0 && rc != -EAGAIN)
		forward_attempt_dsn_abandon(f, s, rc);
}

