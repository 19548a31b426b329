/*
 * forward_msg.c - a stored record made into the message the client sends,
 * and the client's results made into queue outcomes.
 *
 * The envelope is read by the one decoder of storage/record (no walk of
 * our own); the recipients sent are those the queue still has pending, so
 * a retry never repeats a delivered or bounced one. Pure but for the
 * per-recipient arrays allocated when a message is loaded.
 */
#include "forward_msg.h"

#include <stdlib.h>
#include <string.h>

#include "../storage/delivery_log.h"

_Static_assert((int)RECORD_BODY_7BIT == (int)SMTP_BODY_7BIT &&
		       (int)RECORD_BODY_8BITMIME == (int)SMTP_BODY_8BITMIME &&
		       (int)RECORD_BODY_BINARYMIME == (int)SMTP_BODY_BINARYMIME,
	       "a stored body type is the client's");

void forward_msg_free(struct forward_msg *fm)
{
	free(fm->rcpts);
	free(fm->rcpt_index);
	free(fm->results);
	memset(fm, 0, sizeof(*fm));
}

void forward_msg_release(struct forward_msg *fm)
{
	if (fm->rcpt_cap > FORWARD_MSG_RCPT_KEEP) {
		forward_msg_free(fm);
		return;
	}
	struct forward_msg keep = { .rcpts = fm->rcpts, .rcpt_index = fm->rcpt_index,
				    .results = fm->results, .rcpt_cap = fm->rcpt_cap };
	*fm = keep;
}

/* Room for total recipients in fm's arrays (their contents are not kept):
 * false when it cannot be had (the arrays are then freed). */
static bool rcpt_room(struct forward_msg *fm, uint32_t total)
{
	if (total <= fm->rcpt_cap && fm->rcpts != NULL)
		return true;
	free(fm->rcpts);
	free(fm->rcpt_index);
	free(fm->results);
	uint32_t cap = RMX_MAX(total, (uint32_t)FORWARD_MSG_RCPT_KEEP);
	fm->rcpts = calloc(cap, sizeof(*fm->rcpts));
	fm->rcpt_index = calloc(cap, sizeof(*fm->rcpt_index));
	fm->results = calloc(cap, sizeof(*fm->results));
	fm->rcpt_cap = cap;
	if (fm->rcpts && fm->rcpt_index && fm->results)
		return true;
	forward_msg_free(fm);
	return false;
}

/* XFORWARD ADDR wants IPv6 addresses as "IPV6:..." (Postfix refuses a bare
 * one with 501), as in address literals. */
static void xforward_set(struct forward_msg *fm)
{
	const struct record_envelope *e = &fm->env;
	struct span addr = e->client_addr;
	fm->xf = (struct smtp_client_xforward){
		.name = span_make("[UNAVAILABLE]", 13),
		.addr = addr,
		.helo = e->helo,
		.proto = e->protocol,
	};
	if (memchr(addr.ptr, ':', addr.len) && addr.len + 5 < sizeof(fm->xf_addr)) {
		memcpy(fm->xf_addr, "IPV6:", 5);
		memcpy(fm->xf_addr + 5, addr.ptr, addr.len);
		fm->xf.addr = span_make(fm->xf_addr, addr.len + 5);
	}
}

enum forward_msg_load_result forward_msg_load(struct forward_msg *fm,
					      const struct record_view *view,
					      const struct queue_msg *qm)
{
	forward_msg_release(fm);
	record_envelope_decode(view->envelope, &fm->env);
	fm->body = view->body;
	uint32_t total = queue_msg_rcpt_count(qm);
	if (fm->env.malformed) {
		forward_msg_release(fm);
		return FORWARD_MSG_MALFORMED;
	}
	if (fm->env.recipient_count != total) {
		forward_msg_release(fm);
		return FORWARD_MSG_RCPT_MISMATCH;
	}
	fm->rcpt_total = total;
	if (!rcpt_room(fm, total))
		return FORWARD_MSG_NO_MEMORY;
	memset(fm->results, 0, total * sizeof(*fm->results));
	struct record_recipient_cursor c = record_recipient_first(&fm->env);
	struct span address;
	for (uint32_t r = 0; record_recipient_next(&c, &address); r++) {
		RMX_ASSERT(r < total); /* the decoder counted them */
		if (queue_msg_rcpt_state(qm, r) != QUEUE_RCPT_PENDING)
			continue;
		fm->rcpts[fm->rcpt_count] = address;
		fm->rcpt_index[fm->rcpt_count] = r;
		fm->rcpt_count++;
	}
	xforward_set(fm);
	fm->cm = (struct smtp_client_message){
		.reverse_path = fm->env.reverse_path,
		.recipients = fm->rcpts,
		.recipient_count = fm->rcpt_count,
		.body_bytes = fm->body.len,
		/* A value we never write reads as 7BIT, as it always did. */
		.body_type = fm->env.body_type == RECORD_BODY_UNKNOWN
				     ? SMTP_BODY_7BIT
				     : (enum smtp_body_type)fm->env.body_type,
		.smtputf8 = fm->env.smtputf8,
		.xforward = fm->env.client_addr.len ? &fm->xf : NULL,
	};
	return FORWARD_MSG_LOADED;
}

struct forward_outcome forward_outcome_of(const struct smtp_client_result *rcpt,
					  const struct smtp_client_result *mr)
{
	const struct smtp_client_result *r = rcpt->code != 0 ? rcpt : mr;
	struct forward_outcome o = {
		.outcome = r->code >= 200 && r->code < 300   ? QUEUE_OUTCOME_DELIVERED
			   : r->code >= 500 && r->code < 600 ? QUEUE_OUTCOME_PERMFAIL
							     : QUEUE_OUTCOME_TEMPFAIL,
		.code = r->code ? r->code : 451,
		.enhanced = delivery_log_enhanced_parse(span_make(r->status, strlen(r->status))),
		.reply = r,
	};
	return o;
}

struct forward_outcome forward_msg_report(const struct forward_msg *fm, uint32_t i,
					  const struct smtp_client_result *mr, struct queue *q,
					  struct queue_msg *qm, int64_t now_unix_ms)
{
	RMX_ASSERT(i < fm->rcpt_count);
	struct forward_outcome o = forward_outcome_of(&fm->results[i], mr);
	queue_outcome(q, qm, fm->rcpt_index[i], o.outcome, o.code, o.enhanced, now_unix_ms);
	return o;
}

void forward_msg_fail_all(const struct forward_msg *fm, struct queue *q, struct queue_msg *qm,
			  enum queue_outcome outcome, uint16_t code, const char *status,
			  int64_t now_unix_ms)
{
	uint16_t enhanced = delivery_log_enhanced_parse(span_make(status, strlen(status)));
	for (uint32_t i = 0; i < fm->rcpt_count; i++)
		queue_outcome(q, qm, fm->rcpt_index[i], outcome, code, enhanced, now_unix_ms);
}
