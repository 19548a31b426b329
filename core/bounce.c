/*
 * bounce.c - the forwarder's DSNs: which recipients, what they say, and
 * the DSN stored as a record of the worker's own shard.
 *
 * Life of a DSN (struct bounce, one per forwarder slot): bounce_start
 * builds its body and envelope; bounce_store reserves and appends it (again
 * on every turn while the store says -EAGAIN); the store's commit comes back
 * as bounce_committed, or bounce_abandon when it failed. The original
 * message stays in flight on its slot all that time: its BOUNCED/EXPIRED
 * entries are logged only once the DSN is durable, so a crash can repeat a
 * bounce, never lose one.
 */
#include "bounce.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../storage/delivery_log.h"
#include "../storage/queue.h"
#include "../storage/store.h"
#include "log.h"

/* snprintf's result as the length of what it wrote into cap bytes. */
static size_t printed_len(int n, size_t cap)
{
	return n < 0 ? 0 : RMX_MIN((size_t)n, cap - 1);
}

/* "delivery time expired after N attempts[; last reply C[ X.Y.Z]]": the
 * reply text is not kept across attempts, only its codes. */
static size_t expired_text(char *out, size_t cap, const struct queue_msg *qm)
{
	char last[48] = "";
	unsigned cls, subj, det;
	uint16_t code = queue_msg_last_reply_code(qm);
	if (code && delivery_log_enhanced_unpack(queue_msg_last_enhanced(qm), &cls, &subj, &det))
		snprintf(last, sizeof(last), "; last reply %u %u.%u.%u", code, cls, subj, det);
	else if (code)
		snprintf(last, sizeof(last), "; last reply %u", code);
	int n = snprintf(out, cap, "delivery time expired after %u attempts%s",
			 (unsigned)queue_msg_attempts(qm), last);
	return printed_len(n, cap);
}

void bounce_report_free(struct bounce_report *r)
{
	free(r->rcpts);
	free(r->diagnostic);
	memset(r, 0, sizeof(*r));
}

int bounce_report_build(struct bounce_report *r, const struct forward_msg *fm,
			const struct queue_msg *qm, struct span reporting_mta, uint32_t worker,
			uint64_t serial, int64_t now_unix_ms)
{
	memset(r, 0, sizeof(*r));
	uint32_t total = fm->rcpt_total;
	r->rcpts = calloc(total, sizeof(*r->rcpts));
	r->diagnostic = calloc(total, sizeof(*r->diagnostic));
	if (!r->rcpts || !r->diagnostic) {
		bounce_report_free(r);
		return -ENOMEM;
	}
	uint32_t n = 0, pending = 0;
	struct record_recipient_cursor c = record_recipient_first(&fm->env);
	struct span address;
	for (uint32_t k = 0; k < total && record_recipient_next(&c, &address); k++) {
		/* This attempt's result for k, if it was sent (rcpt_index rises). */
		const struct smtp_client_result *res = NULL;
		while (pending < fm->rcpt_count && fm->rcpt_index[pending] < k)
			pending++;
		if (pending < fm->rcpt_count && fm->rcpt_index[pending] == k)
			res = &fm->results[pending];
		enum queue_rcpt_state st = queue_msg_rcpt_state(qm, k);
		if (st != QUEUE_RCPT_BOUNCE_DUE && st != QUEUE_RCPT_EXPIRE_DUE)
			continue;
		struct dsn_recipient *d = &r->rcpts[n];
		char *diag = r->diagnostic[n];
		d->address = address;
		d->action = DSN_ACTION_FAILED;
		d->last_attempt_unix = now_unix_ms / 1000;
		d->remote_mta = span_make("", 0);
		if (st == QUEUE_RCPT_BOUNCE_DUE && res && res->code) {
			int len = snprintf(diag, FORWARD_DIAG_BYTES, "%u %s %s", res->code, res->status,
					   res->text);
			d->diagnostic = span_make(diag, printed_len(len, FORWARD_DIAG_BYTES));
			d->status = span_make(res->status, strlen(res->status));
		} else {
			d->diagnostic = span_make(diag, expired_text(diag, FORWARD_DIAG_BYTES, qm));
			d->status = span_make("5.4.7", 5);
		}
		n++;
	}
	if (n == 0) {
		bounce_report_free(r);
		return -ENOENT;
	}
	queue_id_format(queue_msg_id(qm), r->queue_id);
	int tlen = snprintf(r->token, sizeof(r->token), "%.16s-%u-%llu", r->queue_id, worker,
			    (unsigned long long)serial);
	r->in = (struct dsn_input){
		.reporting_mta = reporting_mta,
		.queue_id = span_make(r->queue_id, RECORD_QUEUE_ID_CHARS),
		.arrival_unix = queue_msg_arrival_unix_ms(qm) / 1000,
		.now_unix = now_unix_ms / 1000,
		.to = fm->env.reverse_path,
		.recipients = r->rcpts,
		.recipient_count = n,
		.original = fm->body,
		.smtputf8 = fm->env.smtputf8,
		.message_id_token = span_make(r->token, printed_len(tlen, sizeof(r->token))),
	};
	return 0;
}

int bounce_envelope_build(struct bytebuf *env, struct span to, unsigned needs, struct span helo)
{
	uint8_t body_type = (needs & DSN_NEEDS_8BITMIME) ? RECORD_BODY_8BITMIME : RECORD_BODY_7BIT;
	int rc = record_env_put(env, RECORD_TAG_REVERSE_PATH, span_make("", 0));
	if (rc == 0)
		rc = record_env_put(env, RECORD_TAG_BODY_TYPE, span_make(&body_type, 1));
	if (rc == 0 && (needs & DSN_NEEDS_SMTPUTF8))
		rc = record_env_put(env, RECORD_TAG_SMTPUTF8, span_make("", 0));
	if (rc == 0)
		rc = record_env_put(env, RECORD_TAG_RECIPIENT, to);
	if (rc == 0)
		rc = record_env_put(env, RECORD_TAG_HELO, helo);
	if (rc == 0)
		rc = record_env_put(env, RECORD_TAG_PROTOCOL, span_make("LOCAL", 5));
	return rc;
}

void bounce_free(struct bounce *b)
{
	free(b->body);
	bytebuf_free(&b->env);
	memset(b, 0, sizeof(*b));
}

/* The DSN's body (dsn_build sized by a dry run) and its record envelope. */
static int bounce_build(struct bounce *b, const struct bounce_report *r, struct span helo)
{
	size_t need = dsn_build(&r->in, NULL, 0);
	b->body = malloc(need);
	if (!b->body)
		return -ENOMEM;
	b->body_len = dsn_build(&r->in, b->body, need);
	RMX_ASSERT(b->body_len == need);
	unsigned needs = dsn_transport_needs(&r->in, b->body, b->body_len);
	return bounce_envelope_build(&b->env, r->in.to, needs, helo);
}

bool bounce_start(struct bounce *b, const struct forward_msg *fm, const struct queue_msg *qm,
		  const struct config *cfg, uint32_t worker, uint64_t *serial,
		  int64_t now_unix_ms)
{
	char id[RECORD_QUEUE_ID_CHARS];
	queue_id_format(queue_msg_id(qm), id);
	if (!fm || fm->env.reverse_path.len == 0) {
		log_warn("event=bounce_suppressed worker=%u id=%.16s reason=%s", worker, id,
			 fm ? "null_reverse_path" : "record_not_loaded");
		return false;
	}
	struct bounce_report r;
	int rc = bounce_report_build(&r, fm, qm, cfg->session.hostname, worker, ++*serial,
				     now_unix_ms);
	if (rc != 0) {
		log_error("event=bounce_failed worker=%u id=%.16s reason=%s", worker, id,
			  rc == -ENOENT ? "no_recipient_due" : "out_of_memory");
		return false;
	}
	rc = bounce_build(b, &r, span_make(cfg->hostname, strlen(cfg->hostname)));
	uint32_t n = r.in.recipient_count;
	bounce_report_free(&r);
	if (rc != 0) {
		log_error("event=bounce_failed worker=%u id=%.16s reason=%s", worker, id,
			  b->body ? "envelope" : "out_of_memory");
		bounce_free(b);
		return false;
	}
	b->active = true;
	b->recipients = n;
	b->reserve_wait = true; /* stored by bounce_store, this turn or a later one */
	struct log_msg lm;
	if (log_begin(&lm, LOG_INFO, "bounce")) {
		log_add_u64(&lm, "worker", worker);
		log_add(&lm, "id", id, RECORD_QUEUE_ID_CHARS);
		log_add_span(&lm, "to", fm->env.reverse_path);
		log_add_u64(&lm, "recipients", n);
		log_end(&lm);
	}
	return true;
}

int bounce_store(struct bounce *b, struct store *store, uint64_t cookie, int64_t now_unix_ms)
{
	RMX_ASSERT(b->active && b->reserve_wait);
	uint64_t padded = record_padded_length(b->env.len, b->body_len);
	uint64_t qid;
	int rc = store_reserve(store, padded, &qid);
	if (rc != 0)
		return rc;
	b->arrival_unix_ms = now_unix_ms;
	record_seal_parts(&b->header, qid, b->arrival_unix_ms, span_make(b->env.data, b->env.len),
			  (struct iovec){ b->body, b->body_len }, b->parts);
	b->queue_id = qid;
	b->padded_bytes = padded;
	rc = store_append(store, qid, b->parts, RECORD_SEALED_PARTS, cookie);
	RMX_ASSERT(rc == 0); /* a reservation always takes its record */
	b->reserve_wait = false;
	return 0;
}

void bounce_abandon(struct bounce *b, struct queue *q, struct queue_msg *qm, uint32_t worker,
		    uint32_t retry_min_s, int64_t now_unix_ms, int error)
{
	char id[RECORD_QUEUE_ID_CHARS];
	queue_id_format(queue_msg_id(qm), id);
	log_error("event=bounce_store_failed worker=%u id=%.16s error=%s retry_s=%u", worker, id,
		  log_errno_name(error), retry_min_s);
	enum queue_attempt_result r =
		queue_bounce_failed(q, qm, now_unix_ms + (int64_t)retry_min_s * 1000);
	RMX_ASSERT(r != QUEUE_ATTEMPT_BOUNCE_DUE);
	bounce_free(b);
}

uint32_t bounce_committed(struct bounce *b, struct queue *own, struct queue *q,
			  struct queue_msg *qm, uint32_t worker, int64_t now_unix_ms)
{
	RMX_ASSERT(b->active && !b->reserve_wait);
	uint32_t n = b->recipients;
	int rc = queue_add(own, b->queue_id, b->padded_bytes, 1, b->arrival_unix_ms, now_unix_ms);
	if (rc != 0)
		log_error("event=queue_add_failed worker=%u error=%s", worker, log_errno_name(rc));
	enum queue_attempt_result r = queue_bounce_done(q, qm, now_unix_ms);
	RMX_ASSERT(r != QUEUE_ATTEMPT_BOUNCE_DUE);
	bounce_free(b);
	return n;
}
