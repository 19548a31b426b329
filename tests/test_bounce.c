/*
 * test_bounce.c - the DSN input the forwarder builds for bounce production
 * and the DSN record's envelope (core/bounce).
 *
 * Records are real record bytes; recipient states come from a real
 * in-memory queue driven through core/forward_msg as the forwarder drives
 * it. Covered: which recipients a DSN reports (refused this attempt or
 * expired, in record order, across a retry that sent only some), the
 * diagnostic and status of each (the reply, or the expiry text with the
 * last reply's codes, with its enhanced code, with a bare code, without
 * any), the report's other facts, none due, the envelope for each
 * transport need, and the DSN dsn_build makes of the input.
 */
#include <errno.h>

#include "../core/bounce.h"
#include "../core/forward_msg.h"
#include "../storage/delivery_log.h"
#include "test_forward_fixture.h"

#define BODY "Received: from x\r\nSubject: hi\r\n\r\nbody\r\n"
#define MTA "mx.example.net"
#define LIFETIME_MS (24ll * 3600 * 1000)

static const char *const rcpt_names[] = {
	"a@example.org", "b@example.org", "c@example.org", "d@example.org",
};

static void check_span(struct span s, const char *text)
{
	CHECK_MEM(s.ptr, s.len, text, strlen(text));
}

static void record_make(struct fix_record *r, const char *reverse_path, bool smtputf8)
{
	fix_put(r, RECORD_TAG_REVERSE_PATH, reverse_path);
	for (uint32_t i = 0; i < 4; i++)
		fix_put(r, RECORD_TAG_RECIPIENT, rcpt_names[i]);
	fix_put(r, RECORD_TAG_CLIENT_ADDR, "192.0.2.7");
	if (smtputf8)
		fix_put(r, RECORD_TAG_SMTPUTF8, "");
	fix_seal(r, BODY);
}

/* A new message of four recipients in a new queue, popped at now. */
static struct queue_msg *pop_new(struct fix_record *r, bool smtputf8, struct queue **q,
				 int64_t now)
{
	record_make(r, "sender@example.com", smtputf8);
	*q = fix_queue(LIFETIME_MS);
	return fix_pop_new(*q, r, 4, now);
}

/* One attempt: loads qm, gives pending recipient i results[i] (code 0
 * takes mr), reports them all and ends the attempt. fm stays loaded. */
static enum queue_attempt_result attempt(struct forward_msg *fm, const struct fix_record *r,
					 struct queue *q, struct queue_msg *qm,
					 const uint16_t *codes, const char *const *statuses,
					 const struct smtp_client_result *mr, int64_t now)
{
	REQUIRE(forward_msg_load(fm, &r->view, qm) == FORWARD_MSG_LOADED);
	for (uint32_t i = 0; i < fm->rcpt_count; i++) {
		fix_result(&fm->results[i], codes[i], statuses[i], codes[i] ? "reply text" : "");
		forward_msg_report(fm, i, mr, q, qm, now);
	}
	return queue_attempt_done(q, qm, now);
}

static void report(struct bounce_report *rep, const struct forward_msg *fm,
		   const struct queue_msg *qm, int64_t now, uint32_t count)
{
	REQUIRE(bounce_report_build(rep, fm, qm, span_make(MTA, strlen(MTA)), FIX_WORKER, 1,
				    now) == 0);
	REQUIRE(rep->in.recipient_count == count);
}

/* Recipient i of the report is rcpt_names[first + i * step], with this
 * diagnostic and the expiry status 5.4.7. */
static void check_expired(const struct bounce_report *rep, uint32_t first, uint32_t step,
			  const char *diagnostic)
{
	for (uint32_t i = 0; i < rep->in.recipient_count; i++) {
		const struct dsn_recipient *d = &rep->in.recipients[i];
		check_span(d->address, rcpt_names[first + i * step]);
		check_span(d->diagnostic, diagnostic);
		check_span(d->status, "5.4.7");
		CHECK(d->action == DSN_ACTION_FAILED);
	}
}

/* The DSN is durable: the attempt ends as the queue says. */
static void finish(struct bounce_report *rep, struct forward_msg *fm, struct queue *q,
		   struct queue_msg *qm, int64_t now, enum queue_attempt_result want)
{
	bounce_report_free(rep);
	forward_msg_free(fm);
	CHECK(queue_bounce_done(q, qm, now) == want);
	queue_close(q);
}

/*
 * a delivered and b, c, d deferred; then b refused, c deferred, d refused:
 * the DSN names b and d, each with its own reply, in record order.
 */
static void test_refused(void)
{
	struct fix_record r = { 0 };
	struct queue *q;
	int64_t now = FIX_ARRIVAL_MS + 2000;
	struct queue_msg *qm = pop_new(&r, true, &q, now);
	struct forward_msg fm = { 0 };
	struct smtp_client_result mr;
	fix_result(&mr, 250, "2.0.0", "queued");
	static const uint16_t first[] = { 250, 451, 451, 451 };
	static const char *const first_st[] = { "2.0.0", "4.7.1", "4.7.1", "4.7.1" };
	REQUIRE(attempt(&fm, &r, q, qm, first, first_st, &mr, now) == QUEUE_ATTEMPT_RETRY);
	struct bounce_report rep;
	forward_msg_free(&fm);

	now = queue_next_due_time(q);
	qm = queue_next_due(q, now);
	REQUIRE(qm != NULL);
	static const uint16_t second[] = { 550, 452, 551 };
	static const char *const second_st[] = { "5.1.1", "4.2.2", "5.1.6" };
	REQUIRE(attempt(&fm, &r, q, qm, second, second_st, &mr, now) == QUEUE_ATTEMPT_BOUNCE_DUE);
	REQUIRE(bounce_report_build(&rep, &fm, qm, span_make(MTA, strlen(MTA)), FIX_WORKER, 9,
				    now) == 0);
	const struct dsn_input *in = &rep.in;
	REQUIRE(in->recipient_count == 2);
	check_span(in->recipients[0].address, rcpt_names[1]);
	check_span(in->recipients[0].diagnostic, "550 5.1.1 reply text");
	check_span(in->recipients[0].status, "5.1.1");
	check_span(in->recipients[1].address, rcpt_names[3]);
	check_span(in->recipients[1].diagnostic, "551 5.1.6 reply text");
	check_span(in->recipients[1].status, "5.1.6");
	for (uint32_t i = 0; i < 2; i++) {
		CHECK(in->recipients[i].action == DSN_ACTION_FAILED);
		CHECK_EQ_U(in->recipients[i].remote_mta.len, 0);
		CHECK_EQ_U(in->recipients[i].last_attempt_unix, now / 1000);
	}
	char id[RECORD_QUEUE_ID_CHARS], token[64];
	queue_id_format(fix_queue_id(), id);
	CHECK_MEM(in->queue_id.ptr, in->queue_id.len, id, sizeof(id));
	snprintf(token, sizeof(token), "%.16s-%u-9", id, FIX_WORKER);
	check_span(in->message_id_token, token);
	check_span(in->reporting_mta, MTA);
	check_span(in->to, "sender@example.com");
	CHECK_EQ_U(in->arrival_unix, FIX_ARRIVAL_MS / 1000);
	CHECK_EQ_U(in->now_unix, now / 1000);
	CHECK(in->original.ptr == r.view.body.ptr && in->original.len == strlen(BODY));
	CHECK(in->smtputf8);

	/* What dsn_build makes of it. */
	size_t need = dsn_build(in, NULL, 0);
	uint8_t *dsn = malloc(need + 1);
	REQUIRE(dsn != NULL);
	REQUIRE(dsn_build(in, dsn, need) == need);
	dsn[need] = 0;
	CHECK(strstr((char *)dsn, "Diagnostic-Code: smtp; 550 5.1.1 reply text") != NULL);
	CHECK(strstr((char *)dsn, "Diagnostic-Code: smtp; 551 5.1.6 reply text") != NULL);
	CHECK(strstr((char *)dsn, "c@example.org") == NULL); /* deferred: not in the DSN */
	CHECK(strstr((char *)dsn, token) != NULL);
	free(dsn);
	bounce_report_free(&rep);
	CHECK(rep.rcpts == NULL && rep.diagnostic == NULL);
	finish(&rep, &fm, q, qm, now, QUEUE_ATTEMPT_RETRY); /* a freed report frees nothing twice */
	fix_record_free(&r);
}

/* The lifetime runs out: every pending recipient reports the expiry with
 * the message's last reply (its codes; the text is not kept). */
static void test_expired(void)
{
	static const struct {
		uint16_t code;
		const char *status;
		const char *diagnostic;
	} cases[] = {
		{ 451, "4.7.1", "delivery time expired after 2 attempts; last reply 451 4.7.1" },
		{ 421, "", "delivery time expired after 2 attempts; last reply 421" },
		{ 421, "4.x", "delivery time expired after 2 attempts; last reply 421" },
	};
	for (size_t k = 0; k < RMX_ARRAY_LEN(cases); k++) {
		struct fix_record r = { 0 };
		struct queue *q;
		int64_t now = FIX_ARRIVAL_MS;
		struct queue_msg *qm = pop_new(&r, false, &q, now);
		struct forward_msg fm = { 0 };
		struct smtp_client_result mr;
		fix_result(&mr, 0, "", "");
		static const uint16_t first[] = { 250, 450, 450, 450 };
		static const char *const first_st[] = { "2.0.0", "4.2.0", "4.2.0", "4.2.0" };
		REQUIRE(attempt(&fm, &r, q, qm, first, first_st, &mr, now) == QUEUE_ATTEMPT_RETRY);
		forward_msg_free(&fm);
		now = FIX_ARRIVAL_MS + LIFETIME_MS;
		qm = queue_next_due(q, now);
		REQUIRE(qm != NULL);
		const uint16_t codes[] = { cases[k].code, cases[k].code, cases[k].code };
		const char *const st[] = { cases[k].status, cases[k].status, cases[k].status };
		REQUIRE(attempt(&fm, &r, q, qm, codes, st, &mr, now) == QUEUE_ATTEMPT_BOUNCE_DUE);
		struct bounce_report rep;
		report(&rep, &fm, qm, now, 3);
		check_expired(&rep, 1, 1, cases[k].diagnostic);
		CHECK(!rep.in.smtputf8);
		finish(&rep, &fm, q, qm, now, QUEUE_ATTEMPT_DONE);
		fix_record_free(&r);
	}
}

/* Expired before any reply: no last reply to quote. Refused on the
 * message's result, without a reply of its own: the expiry wording with
 * that result's codes and 5.4.7 (the recipient had no text to quote). */
static void test_without_reply(void)
{
	struct fix_record r = { 0 };
	struct queue *q;
	int64_t now = FIX_ARRIVAL_MS + LIFETIME_MS;
	struct queue_msg *qm = pop_new(&r, false, &q, now);
	struct forward_msg fm = { 0 };
	REQUIRE(forward_msg_load(&fm, &r.view, qm) == FORWARD_MSG_LOADED);
	REQUIRE(queue_attempt_done(q, qm, now) == QUEUE_ATTEMPT_BOUNCE_DUE);
	struct bounce_report rep;
	report(&rep, &fm, qm, now, 4);
	check_expired(&rep, 0, 1, "delivery time expired after 1 attempts");
	finish(&rep, &fm, q, qm, now, QUEUE_ATTEMPT_DONE);

	q = fix_queue(LIFETIME_MS);
	now = FIX_ARRIVAL_MS;
	qm = fix_pop_new(q, &r, 4, now);
	struct smtp_client_result mr;
	fix_result(&mr, 554, "5.6.3", "refused");
	static const uint16_t codes[] = { 0, 250, 0, 451 };
	static const char *const st[] = { "", "2.0.0", "", "4.3.0" };
	REQUIRE(attempt(&fm, &r, q, qm, codes, st, &mr, now) == QUEUE_ATTEMPT_BOUNCE_DUE);
	report(&rep, &fm, qm, now, 2);
	/* a and c; the last reply reported was d's 451 4.3.0. */
	check_expired(&rep, 0, 2, "delivery time expired after 1 attempts; last reply 451 4.3.0");
	finish(&rep, &fm, q, qm, now, QUEUE_ATTEMPT_RETRY);
	fix_record_free(&r);
}

/* Deferred and delivered recipients are no DSN's business. */
static void test_none_due(void)
{
	struct fix_record r = { 0 };
	struct queue *q;
	int64_t now = FIX_ARRIVAL_MS;
	struct queue_msg *qm = pop_new(&r, false, &q, now);
	struct forward_msg fm = { 0 };
	struct smtp_client_result mr;
	fix_result(&mr, 250, "2.0.0", "ok");
	static const uint16_t codes[] = { 250, 451, 250, 0 };
	static const char *const st[] = { "2.0.0", "4.7.1", "2.0.0", "" };
	REQUIRE(attempt(&fm, &r, q, qm, codes, st, &mr, now) == QUEUE_ATTEMPT_RETRY);
	qm = queue_next_due(q, queue_next_due_time(q));
	REQUIRE(qm != NULL);
	forward_msg_free(&fm);
	REQUIRE(forward_msg_load(&fm, &r.view, qm) == FORWARD_MSG_LOADED);
	struct bounce_report rep;
	CHECK(bounce_report_build(&rep, &fm, qm, span_make(MTA, strlen(MTA)), 0, 1, now) ==
	      -ENOENT);
	CHECK(rep.rcpts == NULL && rep.diagnostic == NULL);
	forward_msg_free(&fm);
	CHECK(queue_requeue(q, qm, now) == QUEUE_ATTEMPT_RETRY);
	queue_close(q);
	fix_record_free(&r);
}

/* The DSN record's envelope, for each transport need, read back by the
 * record decoder. */
static void test_envelope(void)
{
	static const struct {
		unsigned needs;
		enum record_body_type body_type;
		bool smtputf8;
	} cases[] = {
		{ 0, RECORD_BODY_7BIT, false },
		{ DSN_NEEDS_8BITMIME, RECORD_BODY_8BITMIME, false },
		{ DSN_NEEDS_SMTPUTF8, RECORD_BODY_7BIT, true },
		{ DSN_NEEDS_8BITMIME | DSN_NEEDS_SMTPUTF8, RECORD_BODY_8BITMIME, true },
	};
	for (size_t k = 0; k < RMX_ARRAY_LEN(cases); k++) {
		struct bytebuf env = { 0 };
		REQUIRE(bounce_envelope_build(&env, span_make("s\xc3\xa9@example.com", 15),
					      cases[k].needs, span_make(MTA, strlen(MTA))) == 0);
		struct record_envelope e;
		record_envelope_decode(span_make(env.data, env.len), &e);
		CHECK(!e.malformed);
		CHECK_EQ_U(e.reverse_path.len, 0);
		CHECK_EQ_U(e.body_type, cases[k].body_type);
		CHECK(e.smtputf8 == cases[k].smtputf8);
		check_span(e.helo, MTA);
		check_span(e.protocol, "LOCAL");
		CHECK_EQ_U(e.client_addr.len, 0);
		REQUIRE(e.recipient_count == 1);
		struct record_recipient_cursor c = record_recipient_first(&e);
		struct span to;
		REQUIRE(record_recipient_next(&c, &to));
		check_span(to, "s\xc3\xa9@example.com");
		CHECK(!record_recipient_next(&c, &to));
		bytebuf_free(&env);
	}
	/* A reverse path no item can hold. */
	static uint8_t huge[RECORD_ITEM_VALUE_MAX_BYTES + 1];
	struct bytebuf env = { 0 };
	CHECK(bounce_envelope_build(&env, span_make(huge, sizeof(huge)), 0,
				    span_make(MTA, strlen(MTA))) == -EINVAL);
	bytebuf_free(&env);
}

int main(void)
{
	test_refused();
	test_expired();
	test_without_reply();
	test_none_due();
	test_envelope();
	return test_main_end("test_bounce");
}
