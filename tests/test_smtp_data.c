/*
 * test_smtp_data.c - the end-of-data DFA, the bare CR/LF policy and BDAT
 * dot-stuffing (proto/smtp_data.c).
 *
 * Three parts: every SMTP smuggling variant in both policies; fixed cases
 * for dot-stuffing and the terminator; and the fast-path scanner against a
 * byte-by-byte walk of the pure table on random input over a biased
 * alphabet {CR, LF, '.', 'a', NUL}, fed at random split points (fixed seed,
 * so a failure reproduces).
 */
#include "../proto/smtp_data.h"

#include "test.h"
#include "test_util.h"

/* ---- a growable output buffer for the sink ---------------------------- */

struct sinkbuf {
	struct test_buf buf;
	size_t calls;
};

static void sink_append(void *ctx, const uint8_t *p, size_t n)
{
	struct sinkbuf *b = ctx;
	REQUIRE(n > 0);
	test_buf_put(&b->buf, p, n);
	b->calls++;
}

static void sink_reset(struct sinkbuf *b)
{
	b->buf.len = 0;
	b->calls = 0;
}

static bool contains(const uint8_t *p, size_t n, const char *needle)
{
	size_t m = strlen(needle);
	for (size_t i = 0; i + m <= n; i++) {
		if (memcmp(p + i, needle, m) == 0)
			return true;
	}
	return false;
}

/* Stored text bodies: every CR is followed by LF and every LF preceded by
 * CR; no line is exactly "." (it would end the message downstream). */
static bool valid_wire_form(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
			return false;
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return false;
	}
	if (n >= 3 && memcmp(p, ".\r\n", 3) == 0)
		return false;
	return !contains(p, n, "\r\n.\r\n");
}

/* Runs a whole DATA input through the scanner in one call. */
static struct smtp_data_result scan_dot(const char *in, size_t n, bool stop, struct sinkbuf *out)
{
	struct smtp_data_scanner d;
	smtp_data_init(&d, SMTP_DATA_DOT);
	sink_reset(out);
	return smtp_data_scan(&d, (const uint8_t *)in, n, stop, sink_append, out);
}

/* ---- smuggling --------------------------------------------------------- */

struct smuggle_case {
	const char *name;
	const char *seq;
	size_t seq_len;
	unsigned bare; /* first bare byte the reject policy must stop at */
};

#define SEQ(s) s, sizeof(s) - 1

static const struct smuggle_case smuggle_cases[] = {
	{ "\\n.\\n", SEQ("\n.\n"), SMTP_DATA_BARE_LF },
	{ "\\n.\\r\\n", SEQ("\n.\r\n"), SMTP_DATA_BARE_LF },
	{ "\\r\\n.\\n", SEQ("\r\n.\n"), SMTP_DATA_BARE_LF },
	{ "\\r.\\r", SEQ("\r.\r"), SMTP_DATA_BARE_CR },
	{ "\\r.\\n", SEQ("\r.\n"), SMTP_DATA_BARE_CR },
	{ "\\n.\\r", SEQ("\n.\r"), SMTP_DATA_BARE_LF },
	{ "\\r.\\r\\n", SEQ("\r.\r\n"), SMTP_DATA_BARE_CR },
	{ "\\r\\n\\0.\\r\\n", SEQ("\r\n\0.\r\n"), 0 },
};

static void test_smuggling(void)
{
	struct sinkbuf out = { 0 };
	for (size_t c = 0; c < RMX_ARRAY_LEN(smuggle_cases); c++) {
		const struct smuggle_case *sc = &smuggle_cases[c];
		/* "a" SEQ "MAIL FROM:<x@y>\r\n" then the real terminator. */
		char in[128];
		const char *smuggled = "MAIL FROM:<x@y>\r\n";
		const char *tail = "\r\n.\r\n";
		size_t n = 0;
		in[n++] = 'a';
		memcpy(in + n, sc->seq, sc->seq_len);
		n += sc->seq_len;
		memcpy(in + n, smuggled, strlen(smuggled));
		n += strlen(smuggled);
		size_t end_at = n + strlen(tail) - 2; /* terminator starts at CRLF */
		memcpy(in + n, tail, strlen(tail));
		n += strlen(tail);

		/* Normalize: never ends before the real terminator; the body is
		 * valid wire form. */
		struct smtp_data_result r = scan_dot(in, n, false, &out);
		if (!(r.end && r.consumed == n))
			fprintf(stderr, "smuggling case %s (normalize)\n", sc->name);
		CHECK(r.end);
		CHECK_EQ_U(r.consumed, n);
		CHECK_EQ_U(r.bare, sc->bare ? r.bare | sc->bare : 0);
		CHECK(valid_wire_form(out.buf.data, out.buf.len));
		CHECK(contains(out.buf.data, out.buf.len, "MAIL FROM:<x@y>\r\n"));
		(void)end_at;

		/* Reject: stops at the first bare byte, or (no bare byte) ends
		 * only at the real terminator. */
		r = scan_dot(in, n, true, &out);
		if (sc->bare) {
			CHECK(r.stopped);
			CHECK(!r.end);
			CHECK_EQ_U(r.bare, sc->bare);
		} else {
			CHECK(!r.stopped);
			CHECK(r.end);
			CHECK_EQ_U(r.consumed, n);
		}
	}

	/* Exact normalized forms: each variant between "a" and "b" stores as
	 * "a" CRLF ".." CRLF "b", except the NUL one, which is plain text. */
	for (size_t c = 0; c < RMX_ARRAY_LEN(smuggle_cases); c++) {
		const struct smuggle_case *sc = &smuggle_cases[c];
		char in[64];
		size_t n = 0;
		in[n++] = 'a';
		memcpy(in + n, sc->seq, sc->seq_len);
		n += sc->seq_len;
		memcpy(in + n, "b\r\n.\r\n", 6);
		n += 6;
		struct smtp_data_result r = scan_dot(in, n, false, &out);
		CHECK(r.end);
		if (sc->bare)
			CHECK_MEM(out.buf.data, out.buf.len, "a\r\n..\r\nb\r\n", 10);
		else
			CHECK_MEM(out.buf.data, out.buf.len, "a\r\n\0.\r\nb\r\n", 10);
	}
	test_buf_free(&out.buf);
}

/* ---- fixed cases ---------------------------------------------------------- */

static void test_terminator(void)
{
	struct sinkbuf out = { 0 };
	struct smtp_data_result r;

	/* "." CRLF as the very first line: an empty message. */
	r = scan_dot(".\r\nNEXT", 8, true, &out);
	CHECK(r.end);
	CHECK_EQ_U(r.consumed, 3);
	CHECK_EQ_U(out.buf.len, 0);

	/* The final CRLF belongs to the body; ".CRLF" does not. */
	r = scan_dot("Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n", 27, true, &out);
	CHECK(r.end);
	CHECK_EQ_U(r.consumed, 21);
	CHECK_MEM(out.buf.data, out.buf.len, "Subject: x\r\n\r\nhi\r\n", 18);

	/* Dot-stuffing is kept exactly as received. */
	r = scan_dot("..\r\n...x\r\n.y\r\n.\r\n", 17, true, &out);
	CHECK(r.end);
	CHECK_MEM(out.buf.data, out.buf.len, "..\r\n...x\r\n.y\r\n", 14);

	/* A dot inside a line, or a held dot followed by text. */
	r = scan_dot("a.\r\n.\r", 6, true, &out);
	CHECK(!r.end);
	CHECK_EQ_U(r.consumed, 6);
	CHECK_MEM(out.buf.data, out.buf.len, "a.\r\n", 4);

	/* Split exactly inside the terminator, one byte at a time. */
	const char *msg = "x\r\n.\r\n";
	struct smtp_data_scanner d;
	smtp_data_init(&d, SMTP_DATA_DOT);
	sink_reset(&out);
	for (size_t i = 0; i < 6; i++) {
		r = smtp_data_scan(&d, (const uint8_t *)msg + i, 1, true, sink_append, &out);
		CHECK_EQ_U(r.consumed, 1);
		CHECK(r.end == (i == 5));
	}
	CHECK_MEM(out.buf.data, out.buf.len, "x\r\n", 3);

	/* A long run of ordinary bytes goes to the sink in one piece. */
	char big[5000];
	memset(big, 'q', sizeof(big));
	memcpy(big + sizeof(big) - 5, "\r\n.\r\n", 5);
	r = scan_dot(big, sizeof(big), true, &out);
	CHECK(r.end);
	CHECK_EQ_U(out.buf.len, sizeof(big) - 3);
	CHECK_EQ_U(out.calls, 1);

	/* Bare CR at the end of input is undecided until the next byte. */
	smtp_data_init(&d, SMTP_DATA_DOT);
	sink_reset(&out);
	r = smtp_data_scan(&d, (const uint8_t *)"ab\r", 3, true, sink_append, &out);
	CHECK(!r.stopped && r.bare == 0 && r.consumed == 3);
	r = smtp_data_scan(&d, (const uint8_t *)"c", 1, true, sink_append, &out);
	CHECK(r.stopped);
	CHECK_EQ_U(r.bare, SMTP_DATA_BARE_CR);
	test_buf_free(&out.buf);
}

static void bdat_run(enum smtp_data_kind kind, const char *in, size_t n, bool stop,
		     struct sinkbuf *out, unsigned *bare)
{
	struct smtp_data_scanner d;
	smtp_data_init(&d, kind);
	sink_reset(out);
	struct smtp_data_result r = smtp_data_scan(&d, (const uint8_t *)in, n, stop, sink_append, out);
	CHECK(!r.end);
	*bare = r.bare;
	if (!r.stopped) {
		CHECK_EQ_U(r.consumed, n);
		*bare |= smtp_data_finish(&d, stop, sink_append, out);
	}
}

static void test_bdat(void)
{
	struct sinkbuf out = { 0 };
	unsigned bare;

	bdat_run(SMTP_DATA_BDAT_TEXT, SEQ(".a\r\n.\r\nb"), true, &out, &bare);
	CHECK_EQ_U(bare, 0);
	CHECK_MEM(out.buf.data, out.buf.len, "..a\r\n..\r\nb\r\n", 12);

	bdat_run(SMTP_DATA_BDAT_TEXT, "x\r\n", 3, true, &out, &bare);
	CHECK_MEM(out.buf.data, out.buf.len, "x\r\n", 3);

	bdat_run(SMTP_DATA_BDAT_TEXT, "", 0, true, &out, &bare);
	CHECK_EQ_U(out.buf.len, 0);

	/* Bare LF: rejected, or repaired with the following dot doubled. */
	bdat_run(SMTP_DATA_BDAT_TEXT, "a\n.\n", 4, true, &out, &bare);
	CHECK_EQ_U(bare, SMTP_DATA_BARE_LF);
	bdat_run(SMTP_DATA_BDAT_TEXT, "a\n.\n", 4, false, &out, &bare);
	CHECK_MEM(out.buf.data, out.buf.len, "a\r\n..\r\n", 7);
	CHECK(valid_wire_form(out.buf.data, out.buf.len));

	/* A CR at the very end of the last chunk is bare. */
	bdat_run(SMTP_DATA_BDAT_TEXT, "a\r", 2, true, &out, &bare);
	CHECK_EQ_U(bare, SMTP_DATA_BARE_CR);
	bdat_run(SMTP_DATA_BDAT_TEXT, "a\r", 2, false, &out, &bare);
	CHECK_MEM(out.buf.data, out.buf.len, "a\r\n", 3);

	/* BINARYMIME: opaque, but a dot after CRLF (or at the start) is
	 * doubled so the store stays DATA wire form. */
	bdat_run(SMTP_DATA_BDAT_BINARY, SEQ(".\n.x\r\n.y\r\r\n.\r\n\0"), true, &out, &bare);
	CHECK_EQ_U(bare, 0);
	static const char want_binary[] = "..\n.x\r\n..y\r\r\n..\r\n\0";
	CHECK_MEM(out.buf.data, out.buf.len, want_binary, sizeof(want_binary) - 1);
	test_buf_free(&out.buf);
}

/* ---- fast path against the pure table ------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
	return test_xorshift64star(&rng_state);
}

static size_t rng_below(size_t n)
{
	return (size_t)(rng_next() % n);
}

static void random_input(uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned pick = (unsigned)rng_below(100);
		if (pick < 2 && n - i >= 5) {
			/* A real terminator now and then, so that DATA ends. */
			memcpy(p + i, "\r\n.\r\n", 5);
			i += 5;
			continue;
		}
		if (pick < 8) {
			/* A run of ordinary bytes, long enough for the vector skip. */
			size_t want = rng_below(80);
			size_t run = RMX_MIN(n - i, want);
			memset(p + i, 'a', run);
			i += run;
			continue;
		}
		static const uint8_t alphabet[] = { '\r', '\r', '\n', '\n', '.', '.', 'a', 'a', 'a', 0 };
		p[i++] = alphabet[rng_below(sizeof(alphabet))];
	}
}

struct ref_result {
	size_t consumed;
	unsigned bare;
	bool end;
	bool stopped;
	uint8_t state;
};

/* The specification: step the pure table one byte at a time. */
static struct ref_result reference_scan(enum smtp_data_kind kind, uint8_t state, const uint8_t *p,
					size_t n, bool stop, struct sinkbuf *out)
{
	struct ref_result r = { 0, 0, false, false, state };
	for (size_t i = 0; i < n; i++) {
		struct smtp_data_edge e = smtp_data_next(kind, r.state, p[i]);
		unsigned bare = e.flags & (SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF);
		r.bare |= bare;
		if (stop && bare) {
			r.stopped = true;
			r.consumed = i + 1;
			return r;
		}
		struct span ins = smtp_data_insert_text(e.insert);
		if (ins.len)
			sink_append(out, ins.ptr, ins.len);
		if (!(e.flags & SMTP_DATA_HOLD))
			sink_append(out, p + i, 1);
		r.state = e.next;
		if (e.flags & SMTP_DATA_END) {
			r.end = true;
			r.consumed = i + 1;
			return r;
		}
	}
	r.consumed = n;
	return r;
}

static void test_fast_equals_table(void)
{
	enum { TRIALS = 30000, MAX_LEN = 1500 };
	uint8_t *in = malloc(MAX_LEN);
	REQUIRE(in != NULL);
	struct sinkbuf want = { 0 }, got = { 0 };
	unsigned long mismatches = 0, ends = 0, stops = 0;

	for (unsigned t = 0; t < TRIALS; t++) {
		const enum smtp_data_kind kind = (enum smtp_data_kind)(t % SMTP_DATA_KIND_COUNT);
		const bool stop = (t / SMTP_DATA_KIND_COUNT) % 2 == 0;
		const size_t n = rng_below(MAX_LEN + 1);
		random_input(in, n);

		sink_reset(&want);
		struct ref_result ref =
			reference_scan(kind, smtp_data_initial_state(), in, n, stop, &want);

		/* The scanner, fed in random pieces until it ends or stops. */
		struct smtp_data_scanner d;
		smtp_data_init(&d, kind);
		sink_reset(&got);
		size_t pos = 0;
		unsigned bare = 0;
		bool end = false, stopped = false;
		while (pos < n && !end && !stopped) {
			size_t bound = 1 + rng_below(200);
			size_t piece = 1 + rng_below(RMX_MIN(n - pos, bound));
			struct smtp_data_result r =
				smtp_data_scan(&d, in + pos, piece, stop, sink_append, &got);
			REQUIRE(r.consumed <= piece);
			bare |= r.bare;
			end = r.end;
			stopped = r.stopped;
			pos += r.consumed;
			if (!end && !stopped)
				REQUIRE(r.consumed == piece);
		}
		bool same = pos == ref.consumed && end == ref.end && stopped == ref.stopped &&
			    bare == ref.bare;
		/* On a stop the body is abandoned: its bytes do not matter. */
		if (!stopped) {
			same = same && d.state == ref.state && got.buf.len == want.buf.len &&
			       memcmp(got.buf.data, want.buf.data, got.buf.len) == 0;
		}
		if (!same) {
			if (mismatches < 5)
				fprintf(stderr, "trial %u kind %d stop %d: fast path differs\n", t,
					(int)kind, (int)stop);
			mismatches++;
		}
		ends += end;
		stops += stopped;
		/* Whatever the input, a repaired text body is valid wire form. */
		if (!stop && kind == SMTP_DATA_BDAT_TEXT) {
			(void)smtp_data_finish(&d, false, sink_append, &got);
			CHECK(valid_wire_form(got.buf.data, got.buf.len));
		}
		if (!stop && kind == SMTP_DATA_DOT && end)
			CHECK(valid_wire_form(got.buf.data, got.buf.len));
	}
	CHECK_EQ_U(mismatches, 0);
	/* The alphabet must actually exercise both outcomes. */
	CHECK(ends > 100);
	CHECK(stops > 100);
	printf("fast path vs table: %u trials, %lu ended, %lu stopped on bare\n", (unsigned)TRIALS,
	       ends, stops);
	free(in);
	test_buf_free(&want.buf);
	test_buf_free(&got.buf);
}

int main(void)
{
	test_smuggling();
	test_terminator();
	test_bdat();
	test_fast_equals_table();
	return test_main_end("test_smtp_data");
}
