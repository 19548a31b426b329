/*
 * fuzz_smtp_client.c - the forwarder's ESMTP client (proto/smtp_client)
 * against a hostile relay: whatever the upstream sends, cut anywhere, the
 * client must neither crash nor write a bad command, and every message it
 * started must end with a result for each recipient.
 *
 * Input: a settings byte (STARTTLS mode, recipients, body type, SMTPUTF8,
 * XFORWARD), a byte seeding which handshakes fail (and SMTPUTF8, XFORWARD,
 * whether BDAT is allowed, whether the message prefers DATA), split bytes
 * up to a zero, then the upstream's bytes. The harness drives the client as
 * core/forward does: it sends out whenever it holds bytes (and then feeds
 * n = 0), starts up to two messages when READY, sends the body on
 * SEND_BODY (by BDAT, body_sent may come only after later upstream bytes,
 * as when the body's send completes after replies arrive), goes on after a
 * message (smtp_client_next: RSET only when a
 * transaction is still open upstream) and quits after the second, completes
 * or fails a TLS handshake on START_TLS, and reports the connection lost
 * when the upstream's bytes run out.
 * Invariants: out never past its cap and only whole command lines of
 * printable ASCII (non-ASCII only in an SMTPUTF8 path) shorter than
 * SMTP_CLIENT_COMMAND_MAX_BYTES, or the final dot; results carry a code of
 * 200..599 with printable text; when a message ends (MESSAGE_DONE, FAILED,
 * CLOSED, lost) each of its recipients holds a result; MESSAGE_DONE never
 * comes while a BDAT body is still being sent; no input makes the harness
 * loop.
 */
#include "../../proto/smtp_client.h"

#include "fuzz_common.h"

#define RCPT_MAX 5

struct harness {
	struct smtp_client client;
	uint8_t out_buf[FORWARD_OUT_BUFFER_BYTES];
	struct smtp_out out;
	struct smtp_client_message msg;
	struct span rcpts[RCPT_MAX];
	struct smtp_client_result results[RCPT_MAX];
	struct smtp_client_xforward xf;
	uint32_t rng;
	unsigned messages_started;
	bool in_message; /* started and not yet settled */
	bool body_due;   /* SEND_BODY seen: the body is being sent */
	bool bdat_body_out; /* by BDAT: body_sent not called yet */
	bool done;       /* CLOSED or FAILED */
};

static bool rng_fails(struct harness *h)
{
	h->rng ^= h->rng << 13;
	h->rng ^= h->rng >> 17;
	h->rng ^= h->rng << 5;
	return (h->rng & 7) == 0;
}

/* A coin toss from the same generator. */
static bool rng_coin(struct harness *h)
{
	(void)rng_fails(h);
	return (h->rng >> 9 & 1) != 0;
}

static void check_result(const struct smtp_client_result *r)
{
	FUZZ_CHECK(r->code >= 200 && r->code <= 599);
	size_t n = strnlen(r->text, sizeof(r->text));
	FUZZ_CHECK(n < sizeof(r->text));
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(r->text[i] >= 0x20 && r->text[i] < 0x7f);
	FUZZ_CHECK(strnlen(r->status, sizeof(r->status)) < sizeof(r->status));
}

/* Every recipient of the message in flight holds its result. */
static void settle(struct harness *h)
{
	if (!h->in_message)
		return;
	for (uint32_t i = 0; i < h->msg.recipient_count; i++)
		check_result(&h->results[i]);
	h->in_message = false;
	h->body_due = false;
	h->bdat_body_out = false;
}

/* "Sends" out: whole command lines only. */
static void send_out(struct harness *h)
{
	FUZZ_CHECK(h->out.len <= h->out.cap);
	size_t at = 0;
	while (at < h->out.len) {
		const uint8_t *line = h->out.buf + at;
		const uint8_t *lf = memchr(line, '\n', h->out.len - at);
		FUZZ_CHECK(lf != NULL);
		size_t len = (size_t)(lf - line) + 1;
		FUZZ_CHECK(len >= 3 && len < SMTP_CLIENT_COMMAND_MAX_BYTES);
		FUZZ_CHECK(line[len - 2] == '\r');
		for (size_t i = 0; i + 2 < len; i++) {
			uint8_t c = line[i];
			FUZZ_CHECK(c >= 0x20 && c != 0x7f);
			FUZZ_CHECK(c < 0x80 || h->msg.smtputf8);
		}
		at += len;
	}
	h->out.len = 0;
}

/* Acts on a status until the client waits for the upstream. */
static void act(struct harness *h, enum smtp_client_status st)
{
	for (unsigned turn = 0; turn < 64; turn++) {
		switch (st) {
		case SMTP_CLIENT_WANT_INPUT:
			if (h->bdat_body_out && rng_coin(h)) {
				/* The body's send completed. */
				send_out(h);
				h->bdat_body_out = false;
				st = smtp_client_body_sent(&h->client, &h->out);
				continue;
			}
			if (h->out.len == 0)
				return;
			send_out(h);
			if (h->bdat_body_out)
				return; /* no feed while the body goes: core/forward's order */
			st = smtp_client_feed(&h->client, NULL, 0, &h->out);
			continue;
		case SMTP_CLIENT_START_TLS:
			send_out(h);
			st = rng_fails(h) ? smtp_client_tls_failed(&h->client, "handshake failed")
					  : smtp_client_tls_started(&h->client, &h->out);
			continue;
		case SMTP_CLIENT_READY:
			send_out(h);
			if (h->in_message)
				settle(h); /* refused before anything was sent */
			if (h->messages_started == 2) {
				st = smtp_client_quit(&h->client, &h->out);
				if (st == SMTP_CLIENT_WANT_INPUT && h->out.len == 0)
					return;
				continue;
			}
			memset(h->results, 0, sizeof(h->results));
			h->messages_started++;
			h->in_message = true;
			st = smtp_client_start_message(&h->client, &h->msg, h->results, &h->out);
			continue;
		case SMTP_CLIENT_SEND_BODY:
			FUZZ_CHECK(h->in_message && !h->bdat_body_out);
			send_out(h);
			if (smtp_client_body_by_bdat(&h->client) && rng_coin(h)) {
				h->bdat_body_out = true; /* replies may come first */
				return;
			}
			st = smtp_client_body_sent(&h->client, &h->out);
			continue;
		case SMTP_CLIENT_MESSAGE_DONE:
			FUZZ_CHECK(!h->bdat_body_out);
			send_out(h);
			check_result(smtp_client_message_result(&h->client));
			settle(h);
			st = h->messages_started == 2 ? smtp_client_quit(&h->client, &h->out)
						      : smtp_client_next(&h->client, &h->out);
			continue;
		case SMTP_CLIENT_CLOSED:
		case SMTP_CLIENT_FAILED:
			send_out(h);
			if (st == SMTP_CLIENT_FAILED)
				check_result(smtp_client_conn_result(&h->client));
			settle(h);
			h->done = true;
			return;
		}
		FUZZ_CHECK(!"unknown client status");
	}
	FUZZ_CHECK(!"the client keeps asking without input");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const addrs[RCPT_MAX] = {
		"u1@example.com", "\"quoted local\"@example.com", "u3@[192.0.2.1]",
		"j\xc3\xb6rg@example.com", "bad\001ctl@example.com",
	};
	struct fuzz_input in = { data, size };
	uint8_t settings = fuzz_u8(&in);
	uint8_t seed = fuzz_u8(&in);
	uint8_t splits[64];
	size_t nsplits = fuzz_splits(&in, splits, sizeof(splits));
	struct harness *h = calloc(1, sizeof(*h));
	FUZZ_CHECK(h != NULL);
	h->rng = 0x9e3779b9u * (seed | 1u);
	h->out.buf = h->out_buf;
	h->out.cap = sizeof(h->out_buf);
	for (int i = 0; i < RCPT_MAX; i++)
		h->rcpts[i] = span_make(addrs[i], strlen(addrs[i]));
	h->xf = (struct smtp_client_xforward){
		span_make("[UNAVAILABLE]", 13), span_make("192.0.2.7", 9),
		span_make("client.example", 14), span_make("ESMTP", 5),
	};
	h->msg.reverse_path = settings & 0x80 ? span_make("", 0)
					      : span_make("sender@example.org", 18);
	h->msg.recipients = h->rcpts;
	h->msg.recipient_count = 1 + (settings >> 2 & 7) % RCPT_MAX;
	h->msg.body_bytes = 1234;
	h->msg.bdat_bytes = 1200;
	h->msg.data_preferred = seed & 0x10;
	h->msg.body_type = (enum smtp_body_type)((settings >> 5 & 3) % 3);
	h->msg.smtputf8 = seed & 0x80;
	h->msg.xforward = seed & 0x40 ? &h->xf : NULL;

	smtp_client_init(&h->client, span_make("mx.example.test", 15));
	smtp_client_set_tls(&h->client, (enum smtp_client_tls)((settings & 3) % 3));
	smtp_client_set_chunking(&h->client, (seed & 0x20) != 0);
	size_t at = 0, split = 0;
	uint32_t replies = smtp_client_replies(&h->client);
	while (at < in.n && !h->done) {
		size_t piece = nsplits ? splits[split++ % nsplits] : in.n;
		if (piece > in.n - at)
			piece = in.n - at;
		uint8_t *view = fuzz_exact_copy(in.p + at, piece);
		enum smtp_client_status st = smtp_client_feed(&h->client, view, piece, &h->out);
		free(view);
		at += piece;
		uint32_t now = smtp_client_replies(&h->client);
		FUZZ_CHECK(now - replies <= piece); /* a reply takes at least a byte */
		replies = now;
		act(h, st);
	}
	if (!h->done) {
		enum smtp_client_status st =
			smtp_client_connection_lost(&h->client, "lost connection with upstream");
		FUZZ_CHECK(st == SMTP_CLIENT_CLOSED || st == SMTP_CLIENT_FAILED);
		act(h, st);
	}
	FUZZ_CHECK(!h->in_message);
	free(h);
	return 0;
}
