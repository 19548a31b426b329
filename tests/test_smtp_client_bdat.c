/*
 * test_smtp_client_bdat.c - a stored body as BDAT carries it
 * (proto/smtp_client_bdat.c): the runs between stuffed dots, their total,
 * and the unstuffed copy.
 *
 * Fixed cases first (line starts, bare CR and LF that start no line, dots
 * that are not stuffing); then a round trip: random bodies, text and
 * binary, are stuffed by the receiving side's own scanner
 * (proto/smtp_data.c, as a BDAT body is stored), and what the runs give
 * back, sent in pieces of random size as core/forward sends them, must be
 * the original byte for byte. Stored bodies are heap blocks of exactly their
 * size, so ASan catches a read past them.
 */
#include "../proto/smtp_client_bdat.h"
#include "../proto/smtp_data.h"

#include "test.h"
#include "test_util.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng(uint32_t n)
{
	return (uint32_t)(test_xorshift64star(&rng_state) % n);
}

/* Sends stored as core/forward does: each run from its start, in sends of
 * random size (a short send resumes mid-run); returns the bytes sent. */
static void send_runs(struct span stored, struct test_buf *sent, uint64_t *runs)
{
	size_t at = 0;
	*runs = 0;
	for (;;) {
		size_t start;
		size_t end = smtp_bdat_run(stored, at, &start);
		if (start == end) {
			CHECK_EQ_U(end, stored.len);
			return;
		}
		(*runs)++;
		while (start < end) {
			size_t n = 1 + rng((uint32_t)(end - start));
			test_buf_put(sent, stored.ptr + start, n);
			start += n;
			/* Mid-run, asking again gives the rest of the same run. */
			size_t again_start;
			if (start < end) {
				CHECK_EQ_U(smtp_bdat_run(stored, start, &again_start), end);
				CHECK_EQ_U(again_start, start);
			}
		}
		at = end;
	}
}

/* Checks stored against its unstuffed form want: measure, copy, runs. */
static void check_body(const void *stored_bytes, size_t stored_len, const void *want,
		       size_t want_len, uint64_t runs_want)
{
	uint8_t *heap = malloc(stored_len ? stored_len : 1);
	REQUIRE(heap != NULL);
	memcpy(heap, stored_bytes, stored_len);
	struct span stored = span_make(heap, stored_len);
	struct smtp_bdat_size z = smtp_bdat_measure(stored);
	CHECK_EQ_U(z.bytes, want_len);
	if (runs_want != UINT64_MAX)
		CHECK_EQ_U(z.runs, runs_want);
	uint8_t *copy = malloc(want_len ? want_len : 1);
	REQUIRE(copy != NULL);
	CHECK_EQ_U(smtp_bdat_copy(stored, copy, want_len), want_len);
	CHECK_MEM(copy, want_len, want, want_len);
	struct test_buf sent = { 0 };
	test_buf_put(&sent, "", 1); /* keeps data non-NULL for an empty body */
	sent.len = 0;
	uint64_t runs = 0;
	send_runs(stored, &sent, &runs);
	CHECK_MEM(sent.data, sent.len, want, want_len);
	CHECK_EQ_U(runs, z.runs);
	test_buf_free(&sent);
	free(copy);
	free(heap);
}

static void check_str(const char *stored, const char *want, uint64_t runs)
{
	check_body(stored, strlen(stored), want, strlen(want), runs);
}

static void test_fixed(void)
{
	check_str("", "", 0);
	check_str("abc\r\n", "abc\r\n", 1);
	check_str("..x\r\n", ".x\r\n", 1);                  /* at the very start */
	check_str("a\r\n..b\r\n", "a\r\n.b\r\n", 2);
	check_str("a\r\n...\r\n", "a\r\n..\r\n", 2);       /* only the first dot goes */
	check_str("a\r\n..\r\n..\r\n", "a\r\n.\r\n.\r\n", 3);
	check_str("a.b\r\n", "a.b\r\n", 1);                /* mid-line dots stay */
	check_str("a\n.b", "a\n.b", 1);                    /* binary: a bare LF starts no line */
	check_str("a\r.b", "a\r.b", 1);                    /* nor a bare CR */
	check_str("a\r\r\n..b", "a\r\r\n.b", 2);
	check_str("\r\n..", "\r\n.", 2);                   /* a binary body ending in CRLF "." */
	check_str("x\r\n.", "x\r\n", 1);                   /* a lone dot at the end is stuffing */
	check_body("\0\r\n..\0", 6, "\0\r\n.\0", 5, 2);
}

struct sink_buf {
	struct test_buf b;
};

static void sink(void *ctx, const uint8_t *p, size_t n)
{
	test_buf_put(&((struct sink_buf *)ctx)->b, p, n);
}

/* Random original bodies, stored by the receiving side's BDAT scanner, come
 * back whole. Text bodies are made of CRLF lines (a bare CR or LF would be
 * repaired on the way in, changing the body); binary ones of anything. */
static void test_round_trip(void)
{
	static const uint8_t alphabet[] = { '.', '\r', '\n', 'a', '\0', 0xff, '.', '\r', '\n' };
	for (int round = 0; round < 20000; round++) {
		bool binary = rng(2) == 0;
		struct test_buf orig = { 0 };
		test_buf_put(&orig, "", 1); /* keeps data non-NULL for an empty body */
		orig.len = 0;
		size_t len = rng(round < 10000 ? 24 : 600);
		for (size_t i = 0; i < len; i++) {
			if (binary) {
				test_buf_put(&orig, &alphabet[rng(sizeof(alphabet))], 1);
				continue;
			}
			static const char *const pieces[] = { ".", "..", "x", "\r\n", "\r\n.", "ab" };
			test_buf_str(&orig, pieces[rng(RMX_ARRAY_LEN(pieces))]);
		}
		if (!binary && orig.len > 0 &&
		    (orig.data[orig.len - 1] != '\n' || orig.len < 2 || orig.data[orig.len - 2] != '\r'))
			test_buf_str(&orig, "\r\n"); /* the text scanner would add it */
		if (!binary) {
			/* "\r\n" pieces only: every CR and LF is paired. */
			for (size_t i = 0; i < orig.len; i++) {
				REQUIRE(orig.data[i] != '\r' || (i + 1 < orig.len && orig.data[i + 1] == '\n'));
				REQUIRE(orig.data[i] != '\n' || (i > 0 && orig.data[i - 1] == '\r'));
			}
		}
		struct smtp_data_scanner d;
		smtp_data_init(&d, binary ? SMTP_DATA_BDAT_BINARY : SMTP_DATA_BDAT_TEXT);
		struct sink_buf stored = { { 0 } };
		test_buf_put(&stored.b, "", 1);
		stored.b.len = 0;
		/* The chunks a client might have sent: split anywhere. */
		size_t at = 0;
		while (at < orig.len) {
			size_t n = 1 + rng((uint32_t)(orig.len - at));
			struct smtp_data_result r =
				smtp_data_scan(&d, orig.data + at, n, false, sink, &stored);
			CHECK_EQ_U(r.consumed, n);
			CHECK_EQ_U(r.bare, 0);
			at += n;
		}
		CHECK_EQ_U(smtp_data_finish(&d, false, sink, &stored), 0);
		check_body(stored.b.data, stored.b.len, orig.data, orig.len, UINT64_MAX);
		test_buf_free(&stored.b);
		test_buf_free(&orig);
	}
}

int main(void)
{
	test_fixed();
	test_round_trip();
	return test_main_end("smtp_client_bdat");
}
