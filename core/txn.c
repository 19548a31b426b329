/*
 * txn.c - the record builder behind a session's smtp_txn_ops.
 *
 * The envelope is encoded item by item as the session accepts MAIL and RCPT.
 * The body buffer is sized once from MAIL SIZE= when given, else grows
 * geometrically; its capacity is charged to the worker's in-flight budget
 * before it is allocated, so the bound holds per byte: a body that would
 * pass it is released at once and its transaction ends with 451 4.3.1. The
 * charge is given back when the txn resets. Once the record is durable,
 * txn_log_accepted() writes the message's one log line from the envelope.
 */
#include "txn.h"

#include <errno.h>
#include <string.h>

#include "../common/le.h"
#include "log.h"
#include "metrics.h"

/* Capacity the body buffer grows to for want bytes: geometric from 16 KiB,
 * or sized once from MAIL SIZE= while that takes at most a quarter of the
 * budget left (a declared size is a hint, not a reservation a client can
 * hold without sending); never more than the budget allows, then exactly
 * want. 0 when even want does not fit. */
static size_t txn_body_capacity(const struct txn *t, size_t want)
{
	const struct bytebuf *b = &t->body;
	const struct txn_budget *g = t->budget;
	uint64_t room = g->inflight_bytes < g->max_inflight_bytes
				? g->max_inflight_bytes - g->inflight_bytes
				: 0;
	size_t cap = b->cap ? b->cap : TXN_BODY_INITIAL_BYTES;
	uint64_t hinted = t->size_hint_bytes + TXN_HEADROOM_BYTES + 4096; /* + stuffing */
	if (!b->cap && hinted > cap && hinted <= room / 4)
		cap = (size_t)hinted;
	while (cap < want)
		cap *= 2;
	if (cap - b->cap <= room)
		return cap;
	if (want - b->cap <= room)
		return want;
	return 0;
}

/*
 * Makes room for extra more body bytes. What the buffer holds (its
 * capacity, not only the bytes in it) is charged to the worker's budget
 * before it is allocated, so the bodies of all open transactions never hold
 * more than max_inflight_bytes. -ENOBUFS past the budget, -ENOMEM when the
 * allocation fails.
 */
static int txn_reserve_body(struct txn *t, size_t extra)
{
	struct bytebuf *b = &t->body;
	if (b->cap - b->len >= extra)
		return 0;
	size_t cap = txn_body_capacity(t, b->len + extra);
	if (cap == 0)
		return -ENOBUFS;
	void *p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	uint64_t grow = cap - b->cap;
	b->data = p;
	b->cap = cap;
	t->charged_bytes += grow;
	t->budget->inflight_bytes += grow;
	RMX_ASSERT(t->budget->inflight_bytes <= t->budget->max_inflight_bytes);
	return 0;
}

/* Frees the body and gives its charge back to the budget at once. */
static void txn_release_body(struct txn *t)
{
	RMX_ASSERT(t->budget->inflight_bytes >= t->charged_bytes);
	t->budget->inflight_bytes -= t->charged_bytes;
	t->charged_bytes = 0;
	bytebuf_free(&t->body);
}

/* A transaction refused or ended by the in-flight bound. */
static void txn_count_refused(const struct txn *t)
{
	if (t->budget->metrics)
		metrics_inc(&t->budget->metrics->inflight_data_refused);
}

static int op_mail(void *ctx, const struct smtp_mail_info *m)
{
	struct txn *t = ctx;
	RMX_ASSERT(!t->active);
	if (t->budget->store_state != 0)
		return t->budget->store_state;
	if (t->budget->mail_gate != NULL) {
		int rc = t->budget->mail_gate(t->budget->mail_gate_ctx, t);
		if (rc != 0)
			return rc;
	}
	t->active = true;
	t->size_hint_bytes = m->params->size_given ? m->params->size_bytes : 0;
	int rc = record_env_put(&t->env, RECORD_TAG_REVERSE_PATH, m->reverse_path);
	if (rc == 0) {
		uint8_t body_type = (uint8_t)m->params->body;
		rc = record_env_put(&t->env, RECORD_TAG_BODY_TYPE, span_make(&body_type, 1));
	}
	if (rc == 0 && m->params->smtputf8)
		rc = record_env_put(&t->env, RECORD_TAG_SMTPUTF8, span_make("", 0));
	if (rc == 0 && m->params->size_given) {
		uint8_t le[8];
		put_le64(le, m->params->size_bytes);
		rc = record_env_put(&t->env, RECORD_TAG_SIZE_DECLARED, span_make(le, 8));
	}
	if (rc != 0) {
		txn_reset(t);
		return -ENOMEM;
	}
	return 0;
}

static int op_rcpt(void *ctx, struct span forward_path)
{
	struct txn *t = ctx;
	RMX_ASSERT(t->active);
	if (record_env_put(&t->env, RECORD_TAG_RECIPIENT, forward_path) != 0)
		return -ENOMEM;
	t->rcpt_count++;
	return 0;
}

static int op_data_begin(void *ctx)
{
	struct txn *t = ctx;
	RMX_ASSERT(t->active);
	if (t->budget->store_state == -EIO)
		return -EIO;
	RMX_ASSERT(t->body.len == 0 && t->charged_bytes == 0);
	int rc = txn_reserve_body(t, TXN_HEADROOM_BYTES);
	if (rc != 0) {
		txn_count_refused(t);
		return -ENOBUFS;
	}
	t->body.len = TXN_HEADROOM_BYTES;
	return 0;
}

/* Past the budget the transaction ends (451 4.3.1, from the session once the
 * body is over) and its bytes are released now, not when the client finishes
 * sending: the session sends no more bytes after a failed append. */
static int op_data_append(void *ctx, const uint8_t *p, size_t n)
{
	struct txn *t = ctx;
	RMX_ASSERT(t->active);
	if (t->body.len < TXN_HEADROOM_BYTES)
		return -ENOBUFS; /* released after an earlier refusal */
	int rc = txn_reserve_body(t, n);
	if (rc != 0) {
		txn_release_body(t);
		txn_count_refused(t);
		return rc;
	}
	memcpy(t->body.data + t->body.len, p, n);
	t->body.len += n;
	return 0;
}

static void op_reset(void *ctx)
{
	txn_reset(ctx);
}

static void count_rcpt_reply(struct metrics_worker *m, unsigned code)
{
	if (code >= 200 && code < 300) {
		metrics_inc(&m->recipients_accepted);
		return;
	}
	enum metrics_rcpt_reject r = code == 554   ? METRICS_RCPT_REJECT_RELAY_DENIED
				     : code == 550 ? METRICS_RCPT_REJECT_UNKNOWN_USER
				     : code == 452 ? METRICS_RCPT_REJECT_TOO_MANY
				     : (code == 501 || code == 553 || code == 555)
					     ? METRICS_RCPT_REJECT_SYNTAX
					     : METRICS_RCPT_REJECT_OTHER;
	if (code)
		metrics_inc(&m->recipients_rejected[r]);
}

/* The session's observer: commands, replies and recipient outcomes go to the
 * worker's counters; the time of an accepted MAIL starts the transaction
 * clock. */
static void op_observe(void *ctx, bool command, enum smtp_verb verb, unsigned code)
{
	struct txn *t = ctx;
	struct metrics_worker *m = t->budget->metrics;
	if (command)
		t->commands++;
	if (!m)
		return;
	if (command) {
		metrics_count_command(m, verb);
		if (verb == SMTP_VERB_RCPT)
			count_rcpt_reply(m, code);
		if (verb == SMTP_VERB_MAIL && code >= 200 && code < 300)
			t->mail_ns = t->budget->now_ns;
	}
	if (code)
		metrics_count_reply(m, code);
}

const struct smtp_txn_ops txn_ops = {
	.mail = op_mail,
	.rcpt = op_rcpt,
	.data_begin = op_data_begin,
	.data_append = op_data_append,
	.reset = op_reset,
	.observe = op_observe,
};

void txn_init(struct txn *t, struct txn_budget *budget)
{
	memset(t, 0, sizeof(*t));
	t->budget = budget;
}

int txn_add_client(struct txn *t, const struct txn_client_facts *f)
{
	int rc = record_env_put(&t->env, RECORD_TAG_CLIENT_ADDR, f->client_ip);
	if (rc == 0)
		rc = record_env_put(&t->env, RECORD_TAG_HELO, f->helo);
	if (rc == 0)
		rc = record_env_put(&t->env, RECORD_TAG_PROTOCOL,
				    span_make(f->protocol, strlen(f->protocol)));
	if (rc == 0 && f->tls.len != 0)
		rc = record_env_put(&t->env, RECORD_TAG_TLS, f->tls);
	if (rc == 0 && f->auth_user.len != 0)
		rc = record_env_put(&t->env, RECORD_TAG_AUTH_USER, f->auth_user);
	return rc;
}

void txn_reset(struct txn *t)
{
	txn_release_body(t);
	bytebuf_free(&t->env);
	t->size_hint_bytes = 0;
	t->received_len = 0;
	t->nparts = 0;
	t->rcpt_count = 0;
	t->mail_ns = 0;
	t->active = false;
}

uint64_t txn_record_bytes(const struct txn *t, size_t received_len)
{
	RMX_ASSERT(t->body.len >= TXN_HEADROOM_BYTES);
	return record_padded_length(t->env.len, received_len + t->body.len - TXN_HEADROOM_BYTES);
}

void txn_set_received(struct txn *t, const char *received, size_t len)
{
	RMX_ASSERT(len > 0 && len <= TXN_HEADROOM_BYTES && t->body.len >= TXN_HEADROOM_BYTES);
	memcpy(t->body.data + TXN_HEADROOM_BYTES - len, received, len);
	t->received_len = len;
}

void txn_seal(struct txn *t, uint64_t queue_id, int64_t arrival_unix_ms)
{
	RMX_ASSERT(t->received_len > 0);
	struct iovec body = {
		t->body.data + TXN_HEADROOM_BYTES - t->received_len,
		t->body.len - TXN_HEADROOM_BYTES + t->received_len,
	};
	record_seal_parts(&t->header, queue_id, arrival_unix_ms,
			  span_make(t->env.data, t->env.len), body, t->parts);
	t->queue_id = queue_id;
	t->nparts = RECORD_SEALED_PARTS;
}

void txn_log_accepted(const struct txn *t)
{
	struct log_msg m;
	if (!log_begin(&m, LOG_INFO, "message_accepted"))
		return;
	RMX_ASSERT(t->nparts == 4 && t->body.len >= TXN_HEADROOM_BYTES);
	struct record_envelope e;
	record_envelope_decode(span_make(t->env.data, t->env.len), &e);
	RMX_ASSERT(!e.malformed); /* we encoded it */
	char id[RECORD_QUEUE_ID_CHARS];
	queue_id_format(t->queue_id, id);
	log_add(&m, "queue_id", id, sizeof(id));
	log_add_span(&m, "from", e.reverse_path);
	log_add_u64(&m, "rcpts", t->rcpt_count);
	log_add_u64(&m, "size", t->body.len - TXN_HEADROOM_BYTES);
	log_add_span(&m, "client", e.client_addr);
	log_add_span(&m, "helo", e.helo);
	log_add_span(&m, "proto", e.protocol);
	if (e.tls.len != 0)
		log_add_span(&m, "tls", e.tls);
	else
		log_add(&m, "tls", "no", 2);
	if (e.auth_user.len != 0)
		log_add_span(&m, "auth", e.auth_user);
	log_end(&m);
}
