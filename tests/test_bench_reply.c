/*
 * test_bench_reply.c - the bench's incremental SMTP reply reader.
 *
 * Single and multi-line replies, PIPELINING and STARTTLS detection, several
 * replies in one read, every split point of a pipelined reply stream, and the inputs
 * that are not SMTP (bad codes, mixed codes, over-long lines).
 */
#include "../bench/reply.h"
#include "test.h"

#include <string.h>

/* Feeds text in pieces of at most step bytes (carrying the unconsumed
 * tail, as a connection does) and collects reply codes. Returns the number
 * of replies, or -1 on REPLY_BAD. */
static int feed(const char *text, size_t step, unsigned *codes, unsigned *keywords, int max)
{
	struct reply_reader r;
	reply_reader_init(&r);
	uint8_t buf[4096];
	size_t have = 0, fed = 0, total = strlen(text);
	int n = 0;
	while (fed < total || have > 0) {
		size_t take = RMX_MIN(step, total - fed);
		REQUIRE(have + take <= sizeof(buf));
		memcpy(buf + have, text + fed, take);
		have += take;
		fed += take;
		size_t pos = 0;
		for (;;) {
			size_t used;
			enum reply_status st = reply_read(&r, buf + pos, have - pos, &used);
			pos += used;
			if (st == REPLY_BAD)
				return -1;
			if (st == REPLY_NEED_MORE)
				break;
			REQUIRE(n < max);
			codes[n] = r.code;
			keywords[n] = r.keywords;
			n++;
		}
		memmove(buf, buf + pos, have - pos);
		have -= pos;
		if (take == 0)
			break; /* input exhausted with a partial line left */
	}
	return n;
}

static void test_basic(void)
{
	unsigned codes[8], kw[8];
	CHECK_EQ_U(feed("220 mx.example ESMTP\r\n", 4096, codes, kw, 8), 1);
	CHECK_EQ_U(codes[0], 220);
	CHECK_EQ_U(feed("250\r\n", 4096, codes, kw, 8), 1);
	CHECK_EQ_U(codes[0], 250);
	CHECK_EQ_U(feed("250 ok\n", 4096, codes, kw, 8), 1); /* bare LF tolerated */
	const char *ehlo = "250-mx.example\r\n250-SIZE 1000\r\n250-pipelining\r\n250 8BITMIME\r\n";
	CHECK_EQ_U(feed(ehlo, 4096, codes, kw, 8), 1);
	CHECK_EQ_U(codes[0], 250);
	CHECK_EQ_U(kw[0], REPLY_KW_PIPELINING);
	const char *nopipe = "250-PIPELININGX\r\n250-XPIPELINING\r\n250 SIZE\r\n";
	CHECK_EQ_U(feed(nopipe, 4096, codes, kw, 8), 1);
	CHECK_EQ_U(kw[0], 0);
	/* PIPELINING on the greeting line itself is not a keyword */
	CHECK_EQ_U(feed("250 PIPELINING\r\n", 4096, codes, kw, 8), 1);
	CHECK_EQ_U(kw[0], 0);
	/* incomplete: nothing yet */
	CHECK_EQ_U(feed("250-a\r\n250", 4096, codes, kw, 8), 0);
	/* STARTTLS (RFC 3207), alone and beside PIPELINING, never as a prefix */
	const char *tls = "250-mx.example\r\n250-starttls\r\n250 PIPELINING\r\n";
	CHECK_EQ_U(feed(tls, 1, codes, kw, 8), 1);
	CHECK_EQ_U(kw[0], REPLY_KW_STARTTLS | REPLY_KW_PIPELINING);
	CHECK_EQ_U(feed("250-mx.example\r\n250 STARTTLS\r\n", 4096, codes, kw, 8), 1);
	CHECK_EQ_U(kw[0], REPLY_KW_STARTTLS);
	CHECK_EQ_U(feed("250-mx.example\r\n250-STARTTLSX\r\n250 XSTARTTLS\r\n", 4096, codes,
			kw, 8), 1);
	CHECK_EQ_U(kw[0], 0);
	CHECK_EQ_U(feed("250 STARTTLS\r\n", 4096, codes, kw, 8), 1);
	CHECK_EQ_U(kw[0], 0);
}

static void test_splits(void)
{
	const char *stream = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n"
			     "250-x\r\n250-PIPELINING\r\n250 y\r\n"
			     "550 5.1.1 no\r\n221 bye\r\n";
	const unsigned want[] = { 250, 250, 250, 354, 250, 550, 221 };
	bool all_ok = true;
	for (size_t step = 1; step <= strlen(stream); step++) {
		unsigned codes[16], kw[16];
		int n = feed(stream, step, codes, kw, 16);
		if (n != (int)RMX_ARRAY_LEN(want)) {
			all_ok = false;
			continue;
		}
		for (size_t i = 0; i < RMX_ARRAY_LEN(want); i++)
			if (codes[i] != want[i])
				all_ok = false;
		if (kw[4] != REPLY_KW_PIPELINING || kw[0] != 0)
			all_ok = false;
	}
	CHECK(all_ok);
}

static void test_bad(void)
{
	unsigned codes[8], kw[8];
	CHECK(feed("hello\r\n", 4096, codes, kw, 8) == -1);
	CHECK(feed("150 x\r\n", 4096, codes, kw, 8) == -1);
	CHECK(feed("25\r\n", 4096, codes, kw, 8) == -1);
	CHECK(feed("250x\r\n", 4096, codes, kw, 8) == -1);
	CHECK(feed("250-a\r\n251 b\r\n", 4096, codes, kw, 8) == -1);
	char longline[BENCH_REPLY_LINE_MAX_BYTES + 64];
	memset(longline, 'a', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	memcpy(longline, "250 ", 4);
	CHECK(feed(longline, 64, codes, kw, 8) == -1); /* no LF, too long */
	/* a reply of too many lines */
	static char many[BENCH_REPLY_LINES_MAX * 8 + 16];
	size_t len = 0;
	for (unsigned i = 0; i < BENCH_REPLY_LINES_MAX + 1; i++) {
		memcpy(many + len, "250-x\r\n", 7);
		len += 7;
	}
	memcpy(many + len, "250 x\r\n", 8);
	struct reply_reader r;
	reply_reader_init(&r);
	size_t used;
	CHECK(reply_read(&r, (const uint8_t *)many, strlen(many), &used) == REPLY_BAD);
}

int main(void)
{
	test_basic();
	test_splits();
	test_bad();
	return test_main_end("test_bench_reply");
}
