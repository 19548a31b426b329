/*
 * test_smtp_received.c - the Received: module (proto/smtp_received): the
 * counter of a message's own Received: lines, fed every case whole, a byte
 * at a time and split at every point (the count and where the header
 * section ends must not depend on the split), its saturation; and the
 * writer's bounds: every cap too small gives 0 and writes nothing past cap.
 */
#include "../proto/smtp_received.h"

#include "test.h"

struct count_case {
	const char *text;
	uint16_t count;
	bool counting; /* the header section has not ended */
};

static const struct count_case count_cases[] = {
	{ "", 0, true },
	{ "Received: a\r\nreceived: b\r\nX: y\r\n\r\nReceived: body\r\n", 2, false },
	{ "RECEIVED: a\r\nReCeIvEd:b\r\n", 2, true },
	{ "Received: a\nReceived: b\n\nReceived: c\n", 2, false },
	{ "Received-SPF: pass\r\nXReceived: x\r\nReceived : x\r\n", 0, true },
	{ "Subject: x\r\n Received: folded\r\n\tReceived: folded\r\n", 0, true },
	{ "Received", 0, true },
	{ "Received:", 1, true },
	{ "Subject: Received: inside\r\nReceived: y\r\n", 1, true },
	{ "\rReceived: a\r\nReceived: b\r\n", 1, true },
	{ "\r\nReceived: a\r\n", 0, false },
	{ "\nReceived: a\r\n", 0, false },
	{ "Received: a\r\n\r\n", 1, false },
	{ "X: y\r\nReceived: a\r\r\nReceived: b\r\n", 2, true },
	{ "Rec\nReceived: a\r\n", 1, true },
	{ "Received\n\nReceived: x\r\n", 0, false },
};

static void count_in_pieces(const char *text, size_t split_a, size_t split_b,
			    struct smtp_received_counter *rc)
{
	size_t n = strlen(text);
	const uint8_t *p = (const uint8_t *)text;
	smtp_received_counter_init(rc);
	smtp_received_count(rc, p, split_a);
	smtp_received_count(rc, p + split_a, split_b - split_a);
	smtp_received_count(rc, p + split_b, n - split_b);
}

static void test_count_cases(void)
{
	for (size_t c = 0; c < RMX_ARRAY_LEN(count_cases); c++) {
		const struct count_case *k = &count_cases[c];
		size_t n = strlen(k->text);
		struct smtp_received_counter rc;

		/* Whole, and at every pair of split points (which covers one
		 * split and empty pieces). */
		for (size_t a = 0; a <= n; a++) {
			for (size_t b = a; b <= n; b++) {
				count_in_pieces(k->text, a, b, &rc);
				CHECK_EQ_U(rc.count, k->count);
				CHECK(smtp_received_counting(&rc) == k->counting);
			}
		}

		/* A byte at a time. */
		smtp_received_counter_init(&rc);
		for (size_t i = 0; i < n; i++)
			smtp_received_count(&rc, (const uint8_t *)k->text + i, 1);
		CHECK_EQ_U(rc.count, k->count);
		CHECK(smtp_received_counting(&rc) == k->counting);
	}
}

/* Past the end of the header section nothing more counts, whatever comes. */
static void test_count_stops(void)
{
	struct smtp_received_counter rc;
	smtp_received_counter_init(&rc);
	smtp_received_count(&rc, (const uint8_t *)"Received: a\r\n\r\n", 15);
	CHECK(!smtp_received_counting(&rc));
	for (int i = 0; i < 10; i++)
		smtp_received_count(&rc, (const uint8_t *)"Received: b\r\n", 13);
	CHECK_EQ_U(rc.count, 1);

	/* A new message starts over. */
	smtp_received_counter_init(&rc);
	CHECK(smtp_received_counting(&rc));
	CHECK_EQ_U(rc.count, 0);
}

static void test_count_saturates(void)
{
	static const char line[] = "Received: x\r\n";
	size_t lines = (size_t)UINT16_MAX + 10;
	size_t n = lines * (sizeof(line) - 1);
	uint8_t *p = malloc(n);
	REQUIRE(p != NULL);
	for (size_t i = 0; i < lines; i++)
		memcpy(p + i * (sizeof(line) - 1), line, sizeof(line) - 1);
	struct smtp_received_counter rc;
	smtp_received_counter_init(&rc);
	smtp_received_count(&rc, p, n);
	CHECK_EQ_U(rc.count, UINT16_MAX);
	CHECK(smtp_received_counting(&rc));
	free(p);
}

static void test_write_bounds(void)
{
	struct smtp_received_facts f = {
		.helo = span_make("client.example", 14),
		.client_ip = "2001:db8::25",
		.client_ipv6 = true,
		.hostname = span_make("mx.example.org", 14),
		.protocol = "ESMTP",
		.queue_id = span_make("Q0123", 5),
		.now_unix = 0,
	};
	char whole[SMTP_RECEIVED_HEADER_MAX_BYTES];
	size_t len = smtp_received_write(&f, whole, sizeof(whole));
	const char *want = "Received: from client.example ([IPv6:2001:db8::25])\r\n"
			   "\tby mx.example.org (ringmx) with ESMTP id Q0123;\r\n"
			   "\tThu, 01 Jan 1970 00:00:00 +0000\r\n";
	CHECK_MEM(whole, len, want, strlen(want));

	char buf[SMTP_RECEIVED_HEADER_MAX_BYTES + 16];
	for (size_t cap = 0; cap <= len; cap++) {
		memset(buf, 0x5a, sizeof(buf));
		size_t got = smtp_received_write(&f, buf, cap);
		CHECK_EQ_U(got, cap == len ? len : 0);
		bool past = false;
		for (size_t i = cap; i < sizeof(buf); i++)
			past = past || buf[i] != 0x5a;
		CHECK(!past);
	}
	CHECK_EQ_U(smtp_received_write(&f, buf, len - 1), 0);

	f.now_unix = -1;
	CHECK_EQ_U(smtp_received_write(&f, buf, sizeof(buf)), 0);
}

int main(void)
{
	test_count_cases();
	test_count_stops();
	test_count_saturates();
	test_write_bounds();
	return test_main_end("test_smtp_received");
}
