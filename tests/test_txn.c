/*
 * test_txn.c - the record builder's in-flight budget (core/txn.c): what a
 * body buffer holds is charged before it is allocated, the bound holds per
 * byte, a body past it is released at once, and MAIL SIZE= cannot reserve
 * more than a quarter of what is left.
 */
#include <errno.h>

#include "../core/metrics.h"
#include "../core/txn.h"
#include "test.h"

#define BUDGET_BYTES (256u * 1024)

static void open_body(struct txn *t, struct txn_budget *b, uint64_t size_hint)
{
	txn_init(t, b);
	struct smtp_mail_params params = { .size_bytes = size_hint, .size_given = size_hint > 0 };
	struct smtp_mail_info mi = { span_make("a@example.org", 13), &params };
	REQUIRE(txn_ops.mail(t, &mi) == 0);
	REQUIRE(txn_ops.rcpt(t, span_make("user@example.com", 16)) == 0);
}

static int append(struct txn *t, size_t n)
{
	static uint8_t bytes[64 * 1024];
	memset(bytes, 'x', sizeof(bytes));
	while (n > 0) {
		size_t k = n < sizeof(bytes) ? n : sizeof(bytes);
		int rc = txn_ops.data_append(t, bytes, k);
		if (rc != 0)
			return rc;
		n -= k;
	}
	return 0;
}

/* Two bodies share the budget; the one that would pass it is refused,
 * released at once, and counted; the other goes on. */
static void test_bound_per_byte(void)
{
	struct metrics_worker m;
	metrics_worker_init(&m);
	struct txn_budget b = { .max_inflight_bytes = BUDGET_BYTES, .metrics = &m };
	struct txn a, c;
	open_body(&a, &b, 0);
	open_body(&c, &b, 0);
	REQUIRE(txn_ops.data_begin(&a) == 0);
	REQUIRE(txn_ops.data_begin(&c) == 0);
	CHECK(b.inflight_bytes == a.charged_bytes + c.charged_bytes);
	CHECK(a.charged_bytes >= a.body.cap && a.charged_bytes > 0);

	CHECK(append(&a, 150 * 1024) == 0);
	CHECK(b.inflight_bytes <= BUDGET_BYTES);
	uint64_t a_held = a.charged_bytes;
	CHECK(a_held == a.body.cap);
	/* c grows until the budget is gone: refused, its bytes given back. */
	CHECK(append(&c, 150 * 1024) == -ENOBUFS);
	CHECK(b.inflight_bytes == a_held);
	CHECK(c.charged_bytes == 0 && c.body.data == NULL);
	CHECK_EQ_U(m.inflight_data_refused, 1);
	/* A refused body takes no more bytes, whatever the caller does. */
	CHECK(append(&c, 10) == -ENOBUFS);
	CHECK(b.inflight_bytes == a_held);
	/* a finishes within the bound: exactly to the budget, never past it. */
	CHECK(append(&a, BUDGET_BYTES - a.body.len - TXN_HEADROOM_BYTES) == 0);
	CHECK(b.inflight_bytes <= BUDGET_BYTES);
	CHECK(append(&a, BUDGET_BYTES) == -ENOBUFS);
	CHECK(b.inflight_bytes == 0);
	CHECK_EQ_U(m.inflight_data_refused, 2);
	txn_reset(&a);
	txn_reset(&c);
	CHECK(b.inflight_bytes == 0);

	/* With the budget spent, DATA itself is refused. */
	b.max_inflight_bytes = TXN_BODY_INITIAL_BYTES + TXN_HEADROOM_BYTES / 2;
	struct txn first, late;
	open_body(&first, &b, 0);
	REQUIRE(txn_ops.data_begin(&first) == 0);
	CHECK_EQ_U(b.inflight_bytes, TXN_BODY_INITIAL_BYTES);
	open_body(&late, &b, 0);
	CHECK(txn_ops.data_begin(&late) == -ENOBUFS);
	CHECK_EQ_U(b.inflight_bytes, TXN_BODY_INITIAL_BYTES);
	CHECK_EQ_U(m.inflight_data_refused, 3);
	txn_reset(&late);
	txn_reset(&first);
	CHECK(b.inflight_bytes == 0);
}

/* SIZE= sizes the buffer once only while that takes at most a quarter of
 * the budget left: a declared size reserves nothing a client need not send. */
static void test_size_hint(void)
{
	struct txn_budget b = { .max_inflight_bytes = BUDGET_BYTES };
	struct txn t;
	open_body(&t, &b, BUDGET_BYTES / 8);
	REQUIRE(txn_ops.data_begin(&t) == 0);
	CHECK(t.body.cap >= BUDGET_BYTES / 8);
	txn_reset(&t);
	open_body(&t, &b, BUDGET_BYTES / 2);
	REQUIRE(txn_ops.data_begin(&t) == 0);
	CHECK_EQ_U(t.body.cap, TXN_BODY_INITIAL_BYTES);
	CHECK(b.inflight_bytes == TXN_BODY_INITIAL_BYTES);
	txn_reset(&t);
	CHECK(b.inflight_bytes == 0);
}

/* A budget lowered below what is held (a reload): nothing grows until the
 * held bytes go back under it. */
static void test_lowered_budget(void)
{
	struct txn_budget b = { .max_inflight_bytes = BUDGET_BYTES };
	struct txn t;
	open_body(&t, &b, 0);
	REQUIRE(txn_ops.data_begin(&t) == 0);
	REQUIRE(append(&t, 100 * 1024) == 0);
	b.max_inflight_bytes = 64 * 1024;
	CHECK(append(&t, t.body.cap - t.body.len) == 0); /* within what it holds */
	CHECK(append(&t, 1) == -ENOBUFS);
	CHECK(b.inflight_bytes == 0);
	txn_reset(&t);
}

int main(void)
{
	test_bound_per_byte();
	test_size_hint();
	test_lowered_budget();
	return test_main_end("test_txn");
}
