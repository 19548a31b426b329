/*
 * test_forward_msg.c - a stored record made into the message the client
 * sends, and the client's results made into queue outcomes (core/forward_msg).
 *
 * Records are real record bytes (storage/record builds and checks them);
 * recipient states come from a real in-memory queue. Covered: every
 * envelope fact the client takes (reverse path, pending recipients and
 * their record index, SIZE from the stored body, each body type, SMTPUTF8,
 * XFORWARD with IPv4, IPv6 and over-long IPv6 addresses, and none), a
 * malformed envelope and a recipient count that is not the queue's; each
 * reply class and the message-level result for a recipient without one;
 * the reported outcomes' effect on the queue (delivered, deferred with
 * backoff, bounce due) and a failure of every recipient.
 */
#include "../core/forward_msg.h"
#include "../storage/delivery_log.h"
#include "test_forward_fixture.h"

#define BODY "Received: from x\r\nSubject: hi\r\n\r\nbody\r\n"

static const char *const rcpt_names[] = {
	"a@example.org", "b@example.org", "c@example.org", "d@example.org",
};

static void check_span(struct span s, const char *text)
{
	CHECK_MEM(s.ptr, s.len, text, strlen(text));
}

/* A message loaded from a fresh queue, as the forwarder's first attempt. */
struct loaded {
	struct queue *q;
	struct queue_msg *qm;
	struct forward_msg fm;
};

static void load_new(struct loaded *l, const struct fix_record *r, uint32_t rcpt_count)
{
	l->q = fix_queue(FIX_RETRY_MAX_MS * 100);
	l->qm = fix_pop_new(l->q, r, rcpt_count, FIX_ARRIVAL_MS);
	memset(&l->fm, 0, sizeof(l->fm));
	REQUIRE(forward_msg_load(&l->fm, &r->view, l->qm) == FORWARD_MSG_LOADED);
}

/* Lets go of the message untried, as a drain does. */
static void loaded_end(struct loaded *l)
{
	forward_msg_free(&l->fm);
	CHECK(queue_requeue(l->q, l->qm, FIX_ARRIVAL_MS) == QUEUE_ATTEMPT_RETRY);
	queue_close(l->q);
}

/* Every item the gateway writes, recipients rcpt_names[0..n). */
static void record_full(struct fix_record *r, uint32_t n, const char *client_addr)
{
	uint8_t body_type = RECORD_BODY_8BITMIME;
	uint8_t size_le[8] = { 0x39, 0x05 };
	fix_put(r, RECORD_TAG_REVERSE_PATH, "sender@example.com");
	for (uint32_t i = 0; i < n; i++)
		fix_put(r, RECORD_TAG_RECIPIENT, rcpt_names[i]);
	fix_put(r, RECORD_TAG_HELO, "client.example.com");
	if (client_addr)
		fix_put(r, RECORD_TAG_CLIENT_ADDR, client_addr);
	fix_put_bytes(r, RECORD_TAG_BODY_TYPE, &body_type, 1);
	fix_put(r, RECORD_TAG_SMTPUTF8, "");
	fix_put(r, RECORD_TAG_PROTOCOL, "UTF8SMTP");
	fix_put_bytes(r, RECORD_TAG_SIZE_DECLARED, size_le, sizeof(size_le));
	fix_put(r, (enum record_tag)200, "an item of a later version");
	fix_seal(r, BODY);
}

static void test_load_full(void)
{
	struct fix_record r = { 0 };
	record_full(&r, 3, "192.0.2.7");
	struct loaded l;
	load_new(&l, &r, 3);
	const struct forward_msg *fm = &l.fm;
	CHECK_EQ_U(fm->rcpt_total, 3);
	CHECK_EQ_U(fm->rcpt_count, 3);
	const struct smtp_client_message *cm = &fm->cm;
	check_span(cm->reverse_path, "sender@example.com");
	CHECK_EQ_U(cm->recipient_count, 3);
	CHECK(cm->recipients == fm->rcpts);
	for (uint32_t i = 0; i < 3; i++) {
		check_span(cm->recipients[i], rcpt_names[i]);
		CHECK_EQ_U(fm->rcpt_index[i], i);
		CHECK_EQ_U(fm->results[i].code, 0);
	}
	/* SIZE= is what goes on the wire: the stored body, not the declared size. */
	CHECK_EQ_U(cm->body_bytes, strlen(BODY));
	CHECK(fm->body.ptr == r.view.body.ptr && fm->body.len == strlen(BODY));
	CHECK(cm->body_type == SMTP_BODY_8BITMIME);
	CHECK(cm->smtputf8);
	REQUIRE(cm->xforward == &fm->xf);
	check_span(cm->xforward->name, "[UNAVAILABLE]");
	check_span(cm->xforward->addr, "192.0.2.7");
	check_span(cm->xforward->helo, "client.example.com");
	check_span(cm->xforward->proto, "UTF8SMTP");
	forward_msg_free(&l.fm);
	CHECK(fm->rcpts == NULL && fm->rcpt_index == NULL && fm->results == NULL);
	loaded_end(&l); /* a freed message frees nothing twice */
	fix_record_free(&r);
}

/* XFORWARD ADDR: IPv6 as "IPV6:...", unless that would not fit. */
static void test_load_xforward(void)
{
	static const struct {
		const char *stored, *sent;
	} cases[] = {
		{ "2001:db8::1", "IPV6:2001:db8::1" },
		{ "::1", "IPV6:::1" },
		/* 58 bytes: with "IPV6:" 63, the last that fits */
		{ "2001:0db8:0000:0000:0000:0000:0000:0001%eth0.1234567890abc",
		  "IPV6:2001:0db8:0000:0000:0000:0000:0000:0001%eth0.1234567890abc" },
		/* 59 bytes goes bare */
		{ "2001:0db8:0000:0000:0000:0000:0000:0001%eth0.1234567890abcd",
		  "2001:0db8:0000:0000:0000:0000:0000:0001%eth0.1234567890abcd" },
		{ "198.51.100.1", "198.51.100.1" },
	};
	for (size_t k = 0; k < RMX_ARRAY_LEN(cases); k++) {
		struct fix_record r = { 0 };
		record_full(&r, 1, cases[k].stored);
		struct loaded l;
		load_new(&l, &r, 1);
		REQUIRE(l.fm.cm.xforward != NULL);
		check_span(l.fm.cm.xforward->addr, cases[k].sent);
		loaded_end(&l);
		fix_record_free(&r);
	}
}

/* The least a record holds: <>, one recipient, nothing else. */
static void test_load_minimal(void)
{
	struct fix_record r = { 0 };
	fix_put(&r, RECORD_TAG_REVERSE_PATH, "");
	fix_put(&r, RECORD_TAG_RECIPIENT, "postmaster@example.org");
	fix_seal(&r, "");
	struct loaded l;
	load_new(&l, &r, 1);
	const struct smtp_client_message *cm = &l.fm.cm;
	CHECK_EQ_U(cm->reverse_path.len, 0);
	CHECK_EQ_U(cm->recipient_count, 1);
	check_span(cm->recipients[0], "postmaster@example.org");
	CHECK_EQ_U(cm->body_bytes, 0);
	CHECK(cm->body_type == SMTP_BODY_7BIT);
	CHECK(!cm->smtputf8);
	CHECK(cm->xforward == NULL); /* no client address: no XFORWARD */
	loaded_end(&l);
	fix_record_free(&r);
}

/* Each stored body type; a value or length we never write reads as 7BIT. */
static void test_load_body_types(void)
{
	static const struct {
		uint8_t value[2];
		size_t len;
		enum smtp_body_type sent;
	} cases[] = {
		{ { 0 }, 1, SMTP_BODY_7BIT },
		{ { 1 }, 1, SMTP_BODY_8BITMIME },
		{ { 2 }, 1, SMTP_BODY_BINARYMIME },
		{ { 3 }, 1, SMTP_BODY_7BIT },
		{ { 255 }, 1, SMTP_BODY_7BIT },
		{ { 1, 0 }, 2, SMTP_BODY_7BIT },
		{ { 0 }, 0, SMTP_BODY_7BIT },
	};
	for (size_t k = 0; k < RMX_ARRAY_LEN(cases); k++) {
		struct fix_record r = { 0 };
		fix_put(&r, RECORD_TAG_REVERSE_PATH, "s@example.com");
		fix_put(&r, RECORD_TAG_RECIPIENT, "r@example.org");
		fix_put_bytes(&r, RECORD_TAG_BODY_TYPE, cases[k].value, cases[k].len);
		fix_seal(&r, BODY);
		struct loaded l;
		load_new(&l, &r, 1);
		CHECK_EQ_U(l.fm.cm.body_type, cases[k].sent);
		loaded_end(&l);
		fix_record_free(&r);
	}
}

/* A record that is not what the queue counted is refused, holding nothing. */
static void test_load_refused(void)
{
	struct fix_record r = { 0 };
	fix_put(&r, RECORD_TAG_REVERSE_PATH, "s@example.com");
	fix_put(&r, RECORD_TAG_RECIPIENT, "a@example.org");
	fix_put(&r, RECORD_TAG_RECIPIENT, "b@example.org");
	fix_seal(&r, BODY);
	struct forward_msg fm = { 0 };
	for (uint32_t counted = 1; counted <= 3; counted += 2) {
		struct queue *q = fix_queue(FIX_RETRY_MAX_MS * 100);
		struct queue_msg *qm = fix_pop_new(q, &r, counted, FIX_ARRIVAL_MS);
		CHECK(forward_msg_load(&fm, &r.view, qm) == FORWARD_MSG_RCPT_MISMATCH);
		CHECK(fm.rcpts == NULL && fm.rcpt_index == NULL && fm.results == NULL);
		CHECK(queue_requeue(q, qm, FIX_ARRIVAL_MS) == QUEUE_ATTEMPT_RETRY);
		queue_close(q);
	}
	fix_record_free(&r);

	/* A recipient item cut short: its length runs past the envelope. */
	static const uint8_t cut[] = { RECORD_TAG_RECIPIENT, 40, 0, 'x', 'y' };
	fix_put(&r, RECORD_TAG_REVERSE_PATH, "s@example.com");
	fix_put(&r, RECORD_TAG_RECIPIENT, "a@example.org");
	REQUIRE(bytebuf_append(&r.env, cut, sizeof(cut)) == 0);
	fix_seal(&r, BODY);
	for (uint32_t counted = 1; counted <= 2; counted++) {
		struct queue *q = fix_queue(FIX_RETRY_MAX_MS * 100);
		struct queue_msg *qm = fix_pop_new(q, &r, counted, FIX_ARRIVAL_MS);
		CHECK(forward_msg_load(&fm, &r.view, qm) == FORWARD_MSG_MALFORMED);
		CHECK(fm.rcpts == NULL && fm.rcpt_index == NULL && fm.results == NULL);
		CHECK(queue_requeue(q, qm, FIX_ARRIVAL_MS) == QUEUE_ATTEMPT_RETRY);
		queue_close(q);
	}
	fix_record_free(&r);
}

/* Every reply class, and a recipient without a reply of its own. */
static void test_outcome_classes(void)
{
	static const struct {
		uint16_t code;
		const char *status;
		enum queue_outcome outcome;
		uint16_t logged;
	} cases[] = {
		{ 250, "2.0.0", QUEUE_OUTCOME_DELIVERED, 250 },
		{ 200, "", QUEUE_OUTCOME_DELIVERED, 200 },
		{ 299, "2.1.5", QUEUE_OUTCOME_DELIVERED, 299 },
		{ 199, "", QUEUE_OUTCOME_TEMPFAIL, 199 },
		{ 300, "", QUEUE_OUTCOME_TEMPFAIL, 300 },
		{ 354, "", QUEUE_OUTCOME_TEMPFAIL, 354 },
		{ 400, "4.0.0", QUEUE_OUTCOME_TEMPFAIL, 400 },
		{ 421, "4.4.2", QUEUE_OUTCOME_TEMPFAIL, 421 },
		{ 451, "4.7.1", QUEUE_OUTCOME_TEMPFAIL, 451 },
		{ 499, "", QUEUE_OUTCOME_TEMPFAIL, 499 },
		{ 500, "5.5.2", QUEUE_OUTCOME_PERMFAIL, 500 },
		{ 550, "5.1.1", QUEUE_OUTCOME_PERMFAIL, 550 },
		{ 599, "5.9.9", QUEUE_OUTCOME_PERMFAIL, 599 },
		{ 600, "", QUEUE_OUTCOME_TEMPFAIL, 600 },
	};
	struct smtp_client_result rcpt, mr;
	fix_result(&mr, 554, "5.6.3", "the message's");
	for (size_t k = 0; k < RMX_ARRAY_LEN(cases); k++) {
		fix_result(&rcpt, cases[k].code, cases[k].status, "text");
		struct forward_outcome o = forward_outcome_of(&rcpt, &mr);
		CHECK_EQ_U(o.outcome, cases[k].outcome);
		CHECK_EQ_U(o.code, cases[k].logged);
		CHECK_EQ_U(o.enhanced, delivery_log_enhanced_parse(span_make(
					       cases[k].status, strlen(cases[k].status))));
		CHECK(o.reply == &rcpt);
	}
	fix_result(&rcpt, 550, "5.1.1", "");
	CHECK_EQ_U(forward_outcome_of(&rcpt, &mr).enhanced, delivery_log_enhanced_pack(5, 1, 1));
	fix_result(&rcpt, 550, "5.1", "");
	CHECK_EQ_U(forward_outcome_of(&rcpt, &mr).enhanced, 0); /* malformed: none */

	/* No reply of its own: the message's result. */
	fix_result(&rcpt, 0, "", "");
	struct forward_outcome o = forward_outcome_of(&rcpt, &mr);
	CHECK_EQ_U(o.outcome, QUEUE_OUTCOME_PERMFAIL);
	CHECK_EQ_U(o.code, 554);
	CHECK_EQ_U(o.enhanced, delivery_log_enhanced_pack(5, 6, 3));
	CHECK(o.reply == &mr);
	fix_result(&mr, 250, "2.0.0", "ok");
	CHECK_EQ_U(forward_outcome_of(&rcpt, &mr).outcome, QUEUE_OUTCOME_DELIVERED);
	/* No reply at all: deferred as 451. */
	fix_result(&mr, 0, "", "");
	o = forward_outcome_of(&rcpt, &mr);
	CHECK_EQ_U(o.outcome, QUEUE_OUTCOME_TEMPFAIL);
	CHECK_EQ_U(o.code, 451);
	CHECK_EQ_U(o.enhanced, 0);
	CHECK(o.reply == &mr);
}

/* Due time of the one queued message; its jittered backoff after attempt n
 * is retry_min * 2^(n-1) +-20%. */
static void check_backoff(const struct queue *q, int64_t now_unix_ms, unsigned attempts)
{
	int64_t delay_ms = FIX_RETRY_MIN_MS << (attempts - 1);
	int64_t due = queue_next_due_time(q);
	CHECK(due >= now_unix_ms + delay_ms * 8 / 10);
	CHECK(due <= now_unix_ms + delay_ms * 12 / 10);
}

/*
 * Two attempts on four recipients through forward_msg_report: the first
 * delivers a, defers b and d (d on the message's result) and refuses c;
 * the second sends only b and d, which the record indexes still name.
 */
static void test_report_attempts(void)
{
	struct fix_record r = { 0 };
	record_full(&r, 4, "192.0.2.7");
	struct queue *q = fix_queue(FIX_RETRY_MAX_MS * 100);
	int64_t now = FIX_ARRIVAL_MS + 1000;
	struct queue_msg *qm = fix_pop_new(q, &r, 4, now);
	struct forward_msg fm = { 0 };
	REQUIRE(forward_msg_load(&fm, &r.view, qm) == FORWARD_MSG_LOADED);
	REQUIRE(fm.rcpt_count == 4);
	struct smtp_client_result mr;
	fix_result(&mr, 452, "4.3.1", "try later");
	fix_result(&fm.results[0], 250, "2.0.0", "ok");
	fix_result(&fm.results[1], 450, "4.2.0", "greylisted");
	fix_result(&fm.results[2], 550, "5.1.1", "no such user");
	fix_result(&fm.results[3], 0, "", "");
	static const enum queue_outcome want[] = {
		QUEUE_OUTCOME_DELIVERED, QUEUE_OUTCOME_TEMPFAIL, QUEUE_OUTCOME_PERMFAIL,
		QUEUE_OUTCOME_TEMPFAIL,
	};
	for (uint32_t i = 0; i < 4; i++)
		CHECK_EQ_U(forward_msg_report(&fm, i, &mr, q, qm, now).outcome, want[i]);
	CHECK(queue_msg_rcpt_state(qm, 0) == QUEUE_RCPT_DELIVERED);
	CHECK(queue_msg_rcpt_state(qm, 1) == QUEUE_RCPT_PENDING);
	CHECK(queue_msg_rcpt_state(qm, 2) == QUEUE_RCPT_BOUNCE_DUE);
	CHECK(queue_msg_rcpt_state(qm, 3) == QUEUE_RCPT_PENDING);
	CHECK_EQ_U(queue_msg_last_reply_code(qm), 452); /* the last reported */
	CHECK_EQ_U(queue_msg_last_enhanced(qm), delivery_log_enhanced_pack(4, 3, 1));
	forward_msg_free(&fm);
	REQUIRE(queue_attempt_done(q, qm, now) == QUEUE_ATTEMPT_BOUNCE_DUE);
	REQUIRE(queue_bounce_done(q, qm, now) == QUEUE_ATTEMPT_RETRY);
	check_backoff(q, now, 1);

	now = queue_next_due_time(q);
	qm = queue_next_due(q, now);
	REQUIRE(qm != NULL);
	REQUIRE(forward_msg_load(&fm, &r.view, qm) == FORWARD_MSG_LOADED);
	CHECK_EQ_U(fm.rcpt_total, 4);
	REQUIRE(fm.rcpt_count == 2 && fm.cm.recipient_count == 2);
	check_span(fm.cm.recipients[0], rcpt_names[1]);
	check_span(fm.cm.recipients[1], rcpt_names[3]);
	CHECK_EQ_U(fm.rcpt_index[0], 1);
	CHECK_EQ_U(fm.rcpt_index[1], 3);
	/* Deferred again: each report lands on its record index. */
	fix_result(&fm.results[0], 250, "2.0.0", "ok");
	fix_result(&fm.results[1], 421, "4.4.2", "closing");
	forward_msg_report(&fm, 0, &mr, q, qm, now);
	forward_msg_report(&fm, 1, &mr, q, qm, now);
	CHECK(queue_msg_rcpt_state(qm, 1) == QUEUE_RCPT_DELIVERED);
	CHECK(queue_msg_rcpt_state(qm, 3) == QUEUE_RCPT_PENDING);
	forward_msg_free(&fm);
	REQUIRE(queue_attempt_done(q, qm, now) == QUEUE_ATTEMPT_RETRY);
	check_backoff(q, now, 2); /* the backoff doubles */
	queue_close(q);
	fix_record_free(&r);
}

/* No relay reachable: every pending recipient deferred with one reply. */
static void test_fail_all(void)
{
	struct fix_record r = { 0 };
	record_full(&r, 3, NULL);
	struct queue *q = fix_queue(FIX_RETRY_MAX_MS * 100);
	int64_t now = FIX_ARRIVAL_MS;
	struct queue_msg *qm = fix_pop_new(q, &r, 3, now);
	struct forward_msg fm = { 0 };
	REQUIRE(forward_msg_load(&fm, &r.view, qm) == FORWARD_MSG_LOADED);
	forward_msg_fail_all(&fm, q, qm, QUEUE_OUTCOME_TEMPFAIL, 451, "4.4.1", now);
	for (uint32_t i = 0; i < 3; i++)
		CHECK(queue_msg_rcpt_state(qm, i) == QUEUE_RCPT_PENDING);
	CHECK_EQ_U(queue_msg_last_reply_code(qm), 451);
	CHECK_EQ_U(queue_msg_last_enhanced(qm), delivery_log_enhanced_pack(4, 4, 1));
	forward_msg_free(&fm);
	REQUIRE(queue_attempt_done(q, qm, now) == QUEUE_ATTEMPT_RETRY);
	check_backoff(q, now, 1);

	/* Refused for good, each one: a DSN is due for all. */
	now = queue_next_due_time(q);
	qm = queue_next_due(q, now);
	REQUIRE(qm != NULL);
	REQUIRE(forward_msg_load(&fm, &r.view, qm) == FORWARD_MSG_LOADED);
	forward_msg_fail_all(&fm, q, qm, QUEUE_OUTCOME_PERMFAIL, 554, "5.7.1", now);
	for (uint32_t i = 0; i < 3; i++)
		CHECK(queue_msg_rcpt_state(qm, i) == QUEUE_RCPT_BOUNCE_DUE);
	CHECK_EQ_U(queue_msg_last_enhanced(qm), delivery_log_enhanced_pack(5, 7, 1));
	forward_msg_free(&fm);
	CHECK(queue_attempt_done(q, qm, now) == QUEUE_ATTEMPT_BOUNCE_DUE);
	CHECK(queue_bounce_done(q, qm, now) == QUEUE_ATTEMPT_DONE);
	queue_close(q);
	fix_record_free(&r);
}

/* The recipient arrays serve message after message: a usual message is
 * loaded with no allocation, its results start zeroed, a message with more
 * recipients than kept gets arrays of its own, let go of when it is done. */
static void test_arrays_reused(void)
{
	struct fix_record two = { 0 }, three = { 0 }, many = { 0 };
	record_full(&two, 2, NULL);
	record_full(&three, 3, NULL);
	const uint32_t n_many = FORWARD_MSG_RCPT_KEEP + 20;
	fix_put(&many, RECORD_TAG_REVERSE_PATH, "s@example.com");
	for (uint32_t i = 0; i < n_many; i++) {
		char name[32];
		snprintf(name, sizeof(name), "r%u@example.org", i);
		fix_put(&many, RECORD_TAG_RECIPIENT, name);
	}
	fix_seal(&many, BODY);

	struct forward_msg fm = { 0 };
	struct queue *q = fix_queue(FIX_RETRY_MAX_MS * 100);
	struct queue_msg *qm = fix_pop_new(q, &two, 2, FIX_ARRIVAL_MS);
	REQUIRE(forward_msg_load(&fm, &two.view, qm) == FORWARD_MSG_LOADED);
	const struct span *rcpts = fm.rcpts;
	const struct smtp_client_result *results = fm.results;
	CHECK_EQ_U(fm.rcpt_cap, FORWARD_MSG_RCPT_KEEP);
	fm.results[0].code = 250; /* as the client leaves it */
	CHECK(queue_requeue(q, qm, FIX_ARRIVAL_MS) == QUEUE_ATTEMPT_RETRY);
	forward_msg_release(&fm);
	CHECK(fm.rcpts == rcpts && fm.rcpt_count == 0 && fm.body.len == 0);

	queue_close(q);
	q = fix_queue(FIX_RETRY_MAX_MS * 100);
	qm = fix_pop_new(q, &three, 3, FIX_ARRIVAL_MS);
	REQUIRE(forward_msg_load(&fm, &three.view, qm) == FORWARD_MSG_LOADED);
	CHECK(fm.rcpts == rcpts && fm.results == results); /* no allocation */
	CHECK_EQ_U(fm.rcpt_count, 3);
	check_span(fm.rcpts[2], rcpt_names[2]);
	CHECK_EQ_U(fm.results[0].code, 0);
	CHECK(queue_requeue(q, qm, FIX_ARRIVAL_MS) == QUEUE_ATTEMPT_RETRY);
	forward_msg_release(&fm);

	queue_close(q);
	q = fix_queue(FIX_RETRY_MAX_MS * 100);
	qm = fix_pop_new(q, &many, n_many, FIX_ARRIVAL_MS);
	REQUIRE(forward_msg_load(&fm, &many.view, qm) == FORWARD_MSG_LOADED);
	CHECK_EQ_U(fm.rcpt_count, n_many);
	CHECK_EQ_U(fm.rcpt_cap, n_many);
	check_span(fm.rcpts[n_many - 1], "r119@example.org");
	CHECK(queue_requeue(q, qm, FIX_ARRIVAL_MS) == QUEUE_ATTEMPT_RETRY);
	forward_msg_release(&fm); /* more than kept: freed */
	CHECK(fm.rcpts == NULL && fm.rcpt_index == NULL && fm.results == NULL && fm.rcpt_cap == 0);

	queue_close(q);
	q = fix_queue(FIX_RETRY_MAX_MS * 100);
	qm = fix_pop_new(q, &two, 2, FIX_ARRIVAL_MS);
	REQUIRE(forward_msg_load(&fm, &two.view, qm) == FORWARD_MSG_LOADED);
	CHECK_EQ_U(fm.rcpt_cap, FORWARD_MSG_RCPT_KEEP);
	CHECK(queue_requeue(q, qm, FIX_ARRIVAL_MS) == QUEUE_ATTEMPT_RETRY);
	forward_msg_free(&fm);
	queue_close(q);
	fix_record_free(&two);
	fix_record_free(&three);
	fix_record_free(&many);
}

int main(void)
{
	test_load_full();
	test_load_xforward();
	test_load_minimal();
	test_load_body_types();
	test_load_refused();
	test_arrays_reused();
	test_outcome_classes();
	test_report_attempts();
	test_fail_all();
	return test_main_end("test_forward_msg");
}
