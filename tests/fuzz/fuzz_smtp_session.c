/*
 * fuzz_smtp_session.c - the whole server session (proto/smtp_session) fed
 * arbitrary client bytes cut at arbitrary points, behind a record builder
 * that accepts, counts and sometimes fails.
 *
 * Input: a settings byte (bare newline policy, client family, recipient,
 * size and line bounds, how the session ends), a byte that seeds which
 * builder calls fail, split bytes up to a zero (the sizes of the reads, in
 * turn), then the client's bytes. The harness behaves as core/smtp_conn
 * does: unconsumed bytes are kept and presented again first, each call in a
 * buffer of exactly that size. Invariants checked on every call:
 *   - consumed <= n, and out never past its cap;
 *   - what out holds is whole reply lines "ddd SP|- text CRLF", printable,
 *     at most SMTP_REPLY_LINE_MAX_BYTES each;
 *   - MORE leaves less than the line bound unconsumed;
 *   - a MESSAGE status holds (feeding again consumes and writes nothing)
 *     until smtp_session_committed() is called, which the harness always
 *     does next, and a text body is in DATA wire form;
 *   - the builder sees its calls in a legal order (mail, rcpt..., begin,
 *     append..., and reset only ends what mail opened);
 *   - CLOSE is final, and no input makes the session loop.
 */
#include "../../proto/policy.h"
#include "../../proto/smtp_session.h"

#include "fuzz_common.h"

#include <errno.h>

/* ---- the record builder ---------------------------------------------------- */

struct builder {
	uint32_t rng;       /* 0: never fail */
	bool open, begun, binary;
	unsigned rcpts;
	uint8_t *body;
	size_t body_len, body_cap;
};

/* True about one call in sixteen when failures are on. */
static bool builder_fails(struct builder *b)
{
	if (b->rng == 0)
		return false;
	b->rng ^= b->rng << 13;
	b->rng ^= b->rng >> 17;
	b->rng ^= b->rng << 5;
	return (b->rng & 15) == 0;
}

static int b_mail(void *ctx, const struct smtp_mail_info *m)
{
	struct builder *b = ctx;
	FUZZ_CHECK(!b->open);
	FUZZ_CHECK(m != NULL && m->params != NULL);
	if (builder_fails(b))
		return (b->rng >> 8) & 1 ? -ENOSPC : -EIO;
	b->open = true;
	b->begun = false;
	b->rcpts = 0;
	b->binary = m->params->body == SMTP_BODY_BINARYMIME;
	return 0;
}

static int b_rcpt(void *ctx, struct span forward_path)
{
	struct builder *b = ctx;
	FUZZ_CHECK(b->open && !b->begun && forward_path.len > 0);
	if (builder_fails(b))
		return -ENOMEM;
	b->rcpts++;
	return 0;
}

static int b_data_begin(void *ctx)
{
	struct builder *b = ctx;
	FUZZ_CHECK(b->open && !b->begun && b->rcpts > 0);
	if (builder_fails(b))
		return (b->rng >> 8) & 1 ? -ENOBUFS : -EIO;
	b->begun = true;
	b->body_len = 0;
	return 0;
}

static int b_data_append(void *ctx, const uint8_t *p, size_t n)
{
	struct builder *b = ctx;
	FUZZ_CHECK(b->begun && n > 0);
	if (builder_fails(b))
		return -ENOMEM;
	if (b->body_len + n > b->body_cap) {
		size_t cap = (b->body_len + n) * 2;
		uint8_t *grown = realloc(b->body, cap);
		FUZZ_CHECK(grown != NULL);
		b->body = grown;
		b->body_cap = cap;
	}
	memcpy(b->body + b->body_len, p, n);
	b->body_len += n;
	return 0;
}

static void b_reset(void *ctx)
{
	struct builder *b = ctx;
	b->open = false;
	b->begun = false;
	b->rcpts = 0;
	b->body_len = 0;
}

static const struct smtp_txn_ops builder_ops = {
	.mail = b_mail,
	.rcpt = b_rcpt,
	.data_begin = b_data_begin,
	.data_append = b_data_append,
	.reset = b_reset,
};

/* ---- checks ------------------------------------------------------------------ */

/* DATA wire form: CRLF lines, no bare CR or LF, no line that is exactly
 * ".", CRLF at the end unless empty. */
static bool wire_form(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
			return false;
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return false;
		bool line_start = i == 0 || p[i - 1] == '\n';
		if (line_start && p[i] == '.' && i + 1 < n && p[i + 1] == '\r')
			return false;
	}
	return n == 0 || (n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n');
}

/* out holds whole reply lines only. */
static void check_replies(const struct smtp_out *out)
{
	FUZZ_CHECK(out->len <= out->cap);
	size_t at = 0;
	while (at < out->len) {
		const uint8_t *line = out->buf + at;
		const uint8_t *lf = memchr(line, '\n', out->len - at);
		FUZZ_CHECK(lf != NULL);
		size_t len = (size_t)(lf - line) + 1;
		FUZZ_CHECK(len >= 6 && len <= SMTP_REPLY_LINE_MAX_BYTES);
		FUZZ_CHECK(line[0] >= '2' && line[0] <= '5');
		FUZZ_CHECK(line[1] >= '0' && line[1] <= '9' && line[2] >= '0' && line[2] <= '9');
		FUZZ_CHECK(line[3] == ' ' || line[3] == '-');
		FUZZ_CHECK(line[len - 2] == '\r');
		for (size_t i = 0; i + 2 < len; i++)
			FUZZ_CHECK(line[i] >= 0x20 && line[i] < 0x7f);
		at += len;
	}
}

/* ---- the harness ------------------------------------------------------------- */

struct harness {
	struct smtp_session_config cfg;
	struct smtp_session session;
	struct builder b;
	uint8_t out_buf[SMTP_REPLY_BUFFER_BYTES];
	struct smtp_out out;
	uint8_t *pending;
	size_t pending_len;
	bool closed;
	bool stopped; /* a status this harness does not drive further */
	unsigned messages;
};

static void drain(struct harness *h)
{
	check_replies(&h->out);
	h->out.len = 0;
}

static struct smtp_feed_result feed(struct harness *h)
{
	uint8_t *view = fuzz_exact_copy(h->pending, h->pending_len);
	struct smtp_feed_result r = smtp_session_feed(&h->session, view, h->pending_len, &h->out);
	free(view);
	FUZZ_CHECK(r.consumed <= h->pending_len);
	FUZZ_CHECK(h->out.len <= h->out.cap);
	return r;
}

static void deliver(struct harness *h, const uint8_t *p, size_t n, bool commit_fails)
{
	if (h->closed || h->stopped)
		return;
	uint8_t *grown = realloc(h->pending, h->pending_len + n + 1);
	FUZZ_CHECK(grown != NULL);
	h->pending = grown;
	memcpy(h->pending + h->pending_len, p, n);
	h->pending_len += n;
	/* Every turn consumes, commits or flushes: a bound on turns catches a
	 * session that stops making progress. */
	for (size_t turn = 0; turn < 4 * h->pending_len + 64; turn++) {
		struct smtp_feed_result r = feed(h);
		memmove(h->pending, h->pending + r.consumed, h->pending_len - r.consumed);
		h->pending_len -= r.consumed;
		switch (r.status) {
		case SMTP_FEED_MORE:
			FUZZ_CHECK(h->pending_len < h->cfg.max_command_line_bytes);
			drain(h);
			return;
		case SMTP_FEED_FLUSH:
			FUZZ_CHECK(h->out.len > 0);
			drain(h);
			continue;
		case SMTP_FEED_CLOSE: {
			drain(h);
			h->closed = true;
			struct smtp_feed_result again = feed(h);
			FUZZ_CHECK(again.status == SMTP_FEED_CLOSE && again.consumed == 0);
			FUZZ_CHECK(h->out.len == 0);
			return;
		}
		case SMTP_FEED_MESSAGE: {
			FUZZ_CHECK(h->b.open && h->b.begun);
			if (!h->b.binary)
				FUZZ_CHECK(wire_form(h->b.body, h->b.body_len));
			size_t before = h->out.len;
			struct smtp_feed_result again = feed(h);
			FUZZ_CHECK(again.status == SMTP_FEED_MESSAGE && again.consumed == 0);
			FUZZ_CHECK(h->out.len == before);
			FUZZ_CHECK(smtp_session_in_transaction(&h->session));
			h->messages++;
			bool fail = commit_fails && (h->messages & 1);
			smtp_session_committed(&h->session, fail ? -EIO : 0,
					       span_make("0123456789ABCDEF", 16), &h->out);
			if (!fail) /* the caller owns a committed transaction */
				b_reset(&h->b);
			FUZZ_CHECK(!h->b.open && !smtp_session_in_transaction(&h->session));
			drain(h);
			continue;
		}
		default:
			/* A status for a layer below the session (TLS): its own
			 * rules apply from here on. */
			drain(h);
			h->stopped = true;
			return;
		}
	}
	FUZZ_CHECK(!"the session stopped making progress");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t rcpt_max[4] = { 1, 2, 5, SMTP_RECIPIENTS_DEFAULT };
	static const uint64_t size_max[4] = { 0, 16, 300, SMTP_MESSAGE_SIZE_DEFAULT_BYTES };
	struct fuzz_input in = { data, size };
	uint8_t settings = fuzz_u8(&in);
	uint8_t fail_seed = fuzz_u8(&in);
	uint8_t splits[64];
	size_t nsplits = 0;
	while (nsplits < sizeof(splits) && in.n) {
		uint8_t s = fuzz_u8(&in);
		if (s == 0)
			break;
		splits[nsplits++] = s;
	}

	struct smtp_policy *policy = policy_new();
	FUZZ_CHECK(policy != NULL);
	FUZZ_CHECK(policy_add_domain(policy, span_make("example.com", 11)) == 0);

	struct harness *h = calloc(1, sizeof(*h));
	FUZZ_CHECK(h != NULL);
	h->cfg.hostname = span_make("mx.example.test", 15);
	h->cfg.bare_newline_normalize = settings & 1;
	h->cfg.max_recipients = rcpt_max[(settings >> 2) & 3];
	h->cfg.max_message_size_bytes = size_max[(settings >> 4) & 3];
	h->cfg.max_command_line_bytes = settings & 0x40 ? SMTP_COMMAND_LINE_MIN_BYTES
							: SMTP_COMMAND_LINE_DEFAULT_BYTES;
	h->cfg.policy = policy;
	h->cfg.soft_error_limit = SMTP_SOFT_ERROR_LIMIT_DEFAULT;
	h->cfg.hard_error_limit = SMTP_HARD_ERROR_LIMIT_DEFAULT;
	h->cfg.junk_command_limit = SMTP_JUNK_COMMAND_LIMIT_DEFAULT;
	h->b.rng = fail_seed & 0x7f ? 0x9e3779b9u * fail_seed : 0;
	h->out.buf = h->out_buf;
	h->out.cap = sizeof(h->out_buf);
	struct smtp_peer peer;
	memset(&peer, 0, sizeof(peer));
	snprintf(peer.ip, sizeof(peer.ip), "%s", settings & 2 ? "2001:db8::25" : "192.0.2.25");
	peer.ipv6 = settings & 2;

	smtp_session_start(&h->session, &h->cfg, &peer, &builder_ops, &h->b, &h->out);
	drain(h);
	size_t at = 0, split = 0;
	while (at < in.n && !h->closed && !h->stopped) {
		size_t piece = nsplits ? splits[split++ % nsplits] : in.n;
		if (piece > in.n - at)
			piece = in.n - at;
		deliver(h, in.p + at, piece, fail_seed & 0x80);
		at += piece;
	}
	if (!h->closed && !h->stopped) {
		if (settings & 0x80)
			smtp_session_timeout(&h->session, &h->out);
		else
			smtp_session_shutdown(&h->session, &h->out);
		FUZZ_CHECK(h->out.len > 0);
		drain(h);
		FUZZ_CHECK(!h->b.open); /* the session gave its transaction back */
	}
	free(h->pending);
	free(h->b.body);
	free(h);
	policy_free(policy);
	return 0;
}
