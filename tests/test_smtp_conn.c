/*
 * test_smtp_conn.c - the pure parts of the SMTP connections: the deadline
 * arithmetic (which timeout applies, when input restarts it, how a body
 * moves it, and what that means for a client trickling a body faster or
 * slower than min_data_rate), the slab's slots and generations, and the
 * carry buffer's bound.
 */
#include "../core/config.h"
#include "../core/smtp_conn.h"
#include "test.h"

#include <errno.h>

static struct config timeouts(void)
{
	struct config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.idle_timeout_s = 300;
	cfg.command_timeout_s = 60;
	cfg.data_timeout_s = 600;
	cfg.min_data_rate_bytes_per_s = 1000;
	return cfg;
}

static void test_timeout_and_kind(void)
{
	struct config cfg = timeouts();
	CHECK_EQ_U(smtp_deadline_timeout_ms(&cfg, SMTP_TIMEOUT_IDLE), 300000);
	CHECK_EQ_U(smtp_deadline_timeout_ms(&cfg, SMTP_TIMEOUT_COMMAND), 60000);
	CHECK_EQ_U(smtp_deadline_timeout_ms(&cfg, SMTP_TIMEOUT_DATA), 600000);
	cfg.data_timeout_s = UINT32_MAX; /* no overflow in the product */
	CHECK_EQ_U(smtp_deadline_timeout_ms(&cfg, SMTP_TIMEOUT_DATA), (uint64_t)UINT32_MAX * 1000u);

	/* Between BDAT chunks the data deadline goes on... */
	CHECK_EQ_U(smtp_deadline_kind(SMTP_TIMEOUT_COMMAND, true, false), SMTP_TIMEOUT_DATA);
	/* ...but not while the message waits for the store, nor without a body. */
	CHECK_EQ_U(smtp_deadline_kind(SMTP_TIMEOUT_COMMAND, true, true), SMTP_TIMEOUT_COMMAND);
	CHECK_EQ_U(smtp_deadline_kind(SMTP_TIMEOUT_COMMAND, false, false), SMTP_TIMEOUT_COMMAND);
	for (int open = 0; open < 2; open++)
		for (int waits = 0; waits < 2; waits++) {
			CHECK_EQ_U(smtp_deadline_kind(SMTP_TIMEOUT_IDLE, open, waits), SMTP_TIMEOUT_IDLE);
			CHECK_EQ_U(smtp_deadline_kind(SMTP_TIMEOUT_DATA, open, waits), SMTP_TIMEOUT_DATA);
		}
}

static void test_restarts(void)
{
	struct config cfg = timeouts();
	struct smtp_deadline d = smtp_deadline_fresh(&cfg, SMTP_TIMEOUT_COMMAND, 7, 1000);
	CHECK_EQ_U(d.at_ms, 61000);
	CHECK_EQ_U(d.commands, 7);
	CHECK_EQ_U(d.kind, SMTP_TIMEOUT_COMMAND);
	/* Bytes of the same command: the deadline stays where it is. */
	CHECK(!smtp_deadline_restarts(&d, true, SMTP_TIMEOUT_COMMAND, 7));
	/* A new command, no deadline armed, or another kind of wait: fresh. */
	CHECK(smtp_deadline_restarts(&d, true, SMTP_TIMEOUT_COMMAND, 8));
	CHECK(smtp_deadline_restarts(&d, false, SMTP_TIMEOUT_COMMAND, 7));
	CHECK(smtp_deadline_restarts(&d, true, SMTP_TIMEOUT_IDLE, 7));
	CHECK(smtp_deadline_restarts(&d, true, SMTP_TIMEOUT_DATA, 7));

	/* In a body, commands (BDAT chunks) do not restart it; progress does. */
	struct smtp_deadline b = smtp_deadline_fresh(&cfg, SMTP_TIMEOUT_DATA, 3, 5000);
	CHECK_EQ_U(b.at_ms, 605000);
	CHECK(!smtp_deadline_restarts(&b, true, SMTP_TIMEOUT_DATA, 3));
	CHECK(!smtp_deadline_restarts(&b, true, SMTP_TIMEOUT_DATA, 4));
	CHECK(smtp_deadline_restarts(&b, true, SMTP_TIMEOUT_COMMAND, 3));
	CHECK(smtp_deadline_restarts(&b, false, SMTP_TIMEOUT_DATA, 3));
}

static void test_after_body(void)
{
	struct config cfg = timeouts();
	struct smtp_deadline d = smtp_deadline_fresh(&cfg, SMTP_TIMEOUT_DATA, 0, 0);
	/* 1000 B/s: a byte buys a millisecond. */
	CHECK_EQ_U(smtp_deadline_after_body(&d, &cfg, 10000, 0), d.at_ms);
	CHECK_EQ_U(smtp_deadline_after_body(&d, &cfg, 10000, 1), d.at_ms + 1);
	CHECK_EQ_U(smtp_deadline_after_body(&d, &cfg, 10000, 999), d.at_ms + 999);
	/* Never beyond data_timeout from now. */
	CHECK_EQ_U(smtp_deadline_after_body(&d, &cfg, 10000, 50000), 610000);
	CHECK_EQ_U(smtp_deadline_after_body(&d, &cfg, 0, 1u << 30), 600000);
	/* Fractions of a millisecond are not credited: 3 bytes buy 1 ms at 3000 B/s. */
	cfg.min_data_rate_bytes_per_s = 3000;
	CHECK_EQ_U(smtp_deadline_after_body(&d, &cfg, 10000, 2), d.at_ms);
	CHECK_EQ_U(smtp_deadline_after_body(&d, &cfg, 10000, 3), d.at_ms + 1);
	/* The largest body cannot overflow the arithmetic. */
	cfg.min_data_rate_bytes_per_s = 1;
	CHECK_EQ_U(smtp_deadline_after_body(&d, &cfg, 1000, (uint64_t)1 << 40), 601000);
}

/*
 * A client that sends a body in chunks of chunk_bytes every interval_ms,
 * replayed against the arithmetic the way the connection applies it (one
 * smtp_deadline_after_body per read). Returns when the deadline fell
 * (ms since the body began), or 0 if body_bytes all arrived first.
 */
static uint64_t trickle(const struct config *cfg, uint64_t chunk_bytes, uint64_t interval_ms,
			uint64_t body_bytes)
{
	struct smtp_deadline d = smtp_deadline_fresh(cfg, SMTP_TIMEOUT_DATA, 0, 0);
	uint64_t now_ms = 0, sent = 0;
	while (sent < body_bytes) {
		now_ms += interval_ms;
		if (now_ms >= d.at_ms)
			return d.at_ms;
		sent += chunk_bytes;
		d.at_ms = smtp_deadline_after_body(&d, cfg, now_ms, chunk_bytes);
	}
	return 0;
}

static void test_trickle(void)
{
	struct config cfg = timeouts();
	cfg.data_timeout_s = 60;
	cfg.min_data_rate_bytes_per_s = 1024;
	/* Faster than min_data_rate: a 50 MiB body at 2 KiB/s (more than
	 * 7 hours, far past data_timeout) is never cut off. */
	CHECK_EQ_U(trickle(&cfg, 2048, 1000, 50u << 20), 0);
	/* Slower: cut off, and not much past data_timeout times the ratio of
	 * min_data_rate to the client's rate. At 512 B/s, 60 s of credit plus
	 * half a second per second: about 120 s. */
	uint64_t cut_ms = trickle(&cfg, 512, 1000, 50u << 20);
	CHECK(cut_ms >= 119000 && cut_ms <= 121000);
	/* A byte a second buys nothing (a millisecond is the unit): cut at
	 * data_timeout. */
	cut_ms = trickle(&cfg, 1, 1000, 50u << 20);
	CHECK(cut_ms >= 60000 && cut_ms <= 61000);
	/* Nothing at all: data_timeout exactly. */
	CHECK_EQ_U(trickle(&cfg, 0, 1000, 1), 60000);
}

static void test_slab(void)
{
	struct conn_slab s;
	REQUIRE(conn_slab_init(&s, 3) == 0);
	struct conn *a = conn_alloc(&s), *b = conn_alloc(&s), *c = conn_alloc(&s);
	REQUIRE(a && b && c);
	CHECK(conn_alloc(&s) == NULL); /* all cap in use */
	CHECK_EQ_U(s.used, 3);
	CHECK_EQ_U(conn_index(&s, b), 1);
	CHECK(a->tp.fd == -1 && a->cfg_snapshot == -1 && a->next == CONN_NONE);
	CHECK(conn_lookup(&s, 1, b->gen) == b);
	CHECK(conn_lookup(&s, 1, b->gen + 1) == NULL);
	CHECK(conn_lookup(&s, 3, 0) == NULL);
	CHECK(conn_lookup(&s, UINT32_MAX, 0) == NULL);

	/* A released slot is reused with a new generation: a completion for
	 * its previous owner no longer finds it. */
	uint32_t old_gen = b->gen;
	b->carry = malloc(16);
	b->out.buf = malloc(16);
	conn_release(&s, b); /* frees what it holds (ASan: no leak) */
	CHECK(conn_lookup(&s, 1, old_gen) == NULL);
	CHECK_EQ_U(s.used, 2);
	struct conn *b2 = conn_alloc(&s);
	CHECK(b2 == b);
	CHECK_EQ_U(b2->gen, old_gen + 1);
	CHECK(b2->carry == NULL && b2->out.buf == NULL);
	CHECK(conn_lookup(&s, 1, old_gen) == NULL);
	CHECK(conn_lookup(&s, 1, b2->gen) == b2);

	/* Generations wrap within the 24 bits that user_data carries. */
	b2->gen = 0xffffff;
	conn_release(&s, b2);
	b2 = conn_alloc(&s);
	CHECK_EQ_U(b2->gen, 0);
	CHECK(conn_lookup(&s, 1, 0) == b2);

	/* Slots never used are not touched: high_water counts the ever-used. */
	CHECK_EQ_U(s.high_water, 3);
	conn_release(&s, a);
	conn_release(&s, b2);
	conn_release(&s, c);
	CHECK_EQ_U(s.used, 0);
	conn_slab_free(&s);
}

static void test_carry(void)
{
	struct conn c;
	memset(&c, 0, sizeof(c));
	static uint8_t chunk[RECV_BUFFER_BYTES];
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)i;
	CHECK(conn_carry_append(&c, chunk, 0) == 0);
	CHECK(c.carry == NULL);
	/* Up to the hard bound exactly, then -ENOBUFS, and nothing changes. */
	size_t total = 0;
	while (total + sizeof(chunk) <= CARRY_HARD_MAX_BYTES) {
		REQUIRE(conn_carry_append(&c, chunk, sizeof(chunk)) == 0);
		total += sizeof(chunk);
	}
	size_t room = CARRY_HARD_MAX_BYTES - total;
	CHECK(conn_carry_append(&c, chunk, room + 1) == -ENOBUFS);
	CHECK_EQ_U(c.carry_len, total);
	CHECK(conn_carry_append(&c, chunk, room) == 0);
	CHECK_EQ_U(c.carry_len, CARRY_HARD_MAX_BYTES);
	CHECK(conn_carry_append(&c, chunk, 1) == -ENOBUFS);
	CHECK(c.carry_cap >= c.carry_len);
	/* Consuming keeps what is left in order. */
	conn_carry_consume(&c, 5);
	CHECK_EQ_U(c.carry_len, CARRY_HARD_MAX_BYTES - 5);
	CHECK_EQ_U(c.carry[0], 5);
	CHECK_EQ_U(c.carry[sizeof(chunk) - 6], (uint8_t)(sizeof(chunk) - 1));
	CHECK_EQ_U(c.carry[sizeof(chunk) - 5], 0);
	/* Consuming everything frees the buffer. */
	conn_carry_consume(&c, c.carry_len);
	CHECK(c.carry == NULL && c.carry_len == 0 && c.carry_cap == 0);
}

int main(void)
{
	test_timeout_and_kind();
	test_restarts();
	test_after_body();
	test_trickle();
	test_slab();
	test_carry();
	return test_main_end("test_smtp_conn");
}
