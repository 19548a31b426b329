/*
 * fuzz_smtp_session.c - the whole server session (proto/smtp_session) fed
 * arbitrary client bytes cut at arbitrary points, behind a record builder
 * that accepts, counts and sometimes fails.
 *
 * Input: a settings byte (bare newline policy, client family, recipient,
 * size and line bounds, how the session ends), a byte that seeds which
 * builder calls fail, a byte for the listener (mode, STARTTLS and AUTH
 * offered, the error budget, the AUTH buffer's size), a byte for
 * screening (a greeting pause, greet_action, how many reads come before the
 * final greeting), split bytes up to a
 * zero (the sizes of the reads, in turn), then the client's bytes. The
 * harness behaves as core/smtp_conn does: unconsumed bytes are kept and
 * presented again first, each call in a buffer of exactly that size; a
 * reply held by the error budget is taken (smtp_session_take_delay); after
 * STARTTLS the rest of that read is dropped and the handshake "completes";
 * AUTH credentials are queued and answered with outcomes the failure byte
 * chooses. Invariants checked on every call:
 *   - consumed <= n, and out never past its cap;
 *   - what out holds is whole reply lines "ddd SP|- text CRLF", printable,
 *     at most SMTP_REPLY_LINE_MAX_BYTES each;
 *   - MORE leaves less than the line bound unconsumed;
 *   - a MESSAGE status holds (feeding again consumes and writes nothing)
 *     until smtp_session_committed() is called, which the harness always
 *     does next, and a text body is in DATA wire form;
 *   - the builder sees its calls in a legal order (mail, rcpt..., begin,
 *     append..., and reset only ends what mail opened);
 *   - AUTH holds (feeding again consumes nothing) until the check is
 *     queued; its credentials are non-empty spans of the lent buffer, which
 *     comes back wiped and is never lent twice;
 *   - CLOSE is final, and no input makes the session loop.
 */
#include "../../proto/policy.h"
#include "../../proto/sasl.h"
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
	uint8_t *auth_buf;  /* what auth_buffer lends */
	size_t auth_cap;
	bool auth_lent;
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

static int b_auth_buffer(void *ctx, uint8_t **buf, size_t *cap_bytes)
{
	struct builder *b = ctx;
	FUZZ_CHECK(!b->auth_lent);
	if (builder_fails(b))
		return (b->rng >> 8) & 1 ? -ENOBUFS : -EPERM;
	memset(b->auth_buf, 0xa5, b->auth_cap); /* whatever the last user left */
	b->auth_lent = true;
	*buf = b->auth_buf;
	*cap_bytes = b->auth_cap;
	return 0;
}

static void b_auth_buffer_release(void *ctx)
{
	struct builder *b = ctx;
	FUZZ_CHECK(b->auth_lent);
	for (size_t i = 0; i < b->auth_cap; i++)
		FUZZ_CHECK(b->auth_buf[i] == 0); /* handed back wiped */
	b->auth_lent = false;
}

static int b_auth_failed(void *ctx, enum sasl_mech mech, enum sasl_error error)
{
	struct builder *b = ctx;
	FUZZ_CHECK((unsigned)mech <= SASL_MECH_COUNT);
	FUZZ_CHECK(error > SASL_ERR_NONE && error < SASL_ERR_COUNT);
	return builder_fails(b) ? -EPERM : 0; /* -EPERM: the client's last failure */
}

static const struct smtp_txn_ops builder_ops = {
	.mail = b_mail,
	.rcpt = b_rcpt,
	.data_begin = b_data_begin,
	.data_append = b_data_append,
	.reset = b_reset,
};

static const struct smtp_auth_ops builder_auth_ops = {
	.buffer = b_auth_buffer,
	.buffer_release = b_auth_buffer_release,
	.failed = b_auth_failed,
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

/* The Received: header of a completed message: built from validated tokens
 * only, so printable ASCII in folded lines (RFC 5322 2.2.3) of at most 998
 * bytes, each ending with CRLF. */
static void check_received(const struct smtp_session *s)
{
	char buf[SMTP_RECEIVED_HEADER_MAX_BYTES];
	size_t n = smtp_session_received(s, span_make("0123456789ABCDEF", 16), 1700000000,
					 buf, sizeof(buf));
	FUZZ_CHECK(n > 0 && n <= sizeof(buf));
	FUZZ_CHECK(n > 10 && memcmp(buf, "Received: ", 10) == 0);
	FUZZ_CHECK(buf[n - 2] == '\r' && buf[n - 1] == '\n');
	size_t line_start = 0;
	for (size_t i = 0; i < n; i++) {
		char c = buf[i];
		if (c == '\n') {
			FUZZ_CHECK(i > 0 && buf[i - 1] == '\r');
			FUZZ_CHECK(i - 1 - line_start <= 998);
			line_start = i + 1;
			/* a continuation line starts with white space */
			FUZZ_CHECK(i + 1 == n || buf[i + 1] == ' ' || buf[i + 1] == '\t');
			continue;
		}
		if (c == '\r') {
			FUZZ_CHECK(i + 1 < n && buf[i + 1] == '\n');
			continue;
		}
		FUZZ_CHECK((c >= 0x20 && c < 0x7f) || c == '\t');
	}
	const char *proto = smtp_session_protocol(s);
	FUZZ_CHECK(proto != NULL && strstr(buf, proto) != NULL);
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
	bool paused;  /* started with smtp_session_start_paused, before the final 220 */
	unsigned messages;
	struct smtp_tls_info tls;
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
			/* During a greeting pause nothing is consumed: the
			 * caller keeps what the client sends too early. A
			 * partial line is kept otherwise: a command line, or in
			 * an AUTH exchange (the buffer is lent) a response line,
			 * which may be longer. */
			if (h->paused)
				FUZZ_CHECK(r.consumed == 0);
			else if (h->b.auth_lent)
				FUZZ_CHECK(h->pending_len < SASL_RESPONSE_LINE_MAX_BYTES + 2);
			else
				FUZZ_CHECK(h->pending_len < h->cfg.max_command_line_bytes);
			drain(h);
			return;
		case SMTP_FEED_FLUSH:
			FUZZ_CHECK(h->out.len > 0);
			/* A reply past the soft error limit is held for the
			 * error sleep time (a timer in core/), then sent. */
			(void)smtp_session_take_delay(&h->session);
			FUZZ_CHECK(!smtp_session_take_delay(&h->session));
			drain(h);
			continue;
		case SMTP_FEED_STARTTLS:
			/* RFC 3207 section 4.2: nothing the client sent before
			 * the handshake counts after it; the rest of this read
			 * is dropped with it (the caller's next read is TLS). */
			FUZZ_CHECK(h->out.len > 0 && !h->b.open);
			drain(h);
			h->pending_len = 0;
			smtp_session_tls_started(&h->session, &h->tls);
			FUZZ_CHECK(smtp_session_tls_active(&h->session));
			return;
		case SMTP_FEED_AUTH: {
			FUZZ_CHECK(h->b.auth_lent);
			struct smtp_feed_result again = feed(h);
			FUZZ_CHECK(again.status == SMTP_FEED_AUTH && again.consumed == 0);
			struct smtp_auth_request req;
			smtp_session_auth_credentials(&h->session, &req);
			FUZZ_CHECK(req.user.len > 0 && req.password.len > 0);
			FUZZ_CHECK(fuzz_span_within(req.user.ptr, req.user.len, h->b.auth_buf,
						    h->b.auth_cap));
			FUZZ_CHECK(fuzz_span_within(req.password.ptr, req.password.len,
						    h->b.auth_buf, h->b.auth_cap));
			bool queue_fails = builder_fails(&h->b);
			smtp_session_auth_queued(&h->session, queue_fails ? -EAGAIN : 0, &h->out);
			FUZZ_CHECK(!h->b.auth_lent);
			drain(h);
			if (!queue_fails) {
				static const enum smtp_auth_outcome refusals[3] = {
					SMTP_AUTH_FAILED, SMTP_AUTH_TEMPFAIL, SMTP_AUTH_FAILED_LAST
				};
				bool refused = builder_fails(&h->b);
				smtp_session_auth_result(&h->session,
							 refused ? refusals[(h->b.rng >> 9) % 3]
								 : SMTP_AUTH_OK,
							 &h->out);
				FUZZ_CHECK(h->out.len > 0);
				drain(h);
			}
			continue;
		}
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
			check_received(&h->session);
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
			/* A status this harness does not know yet: nothing
			 * more can be checked. */
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
	static const uint16_t soft_max[4] = { 1, 3, SMTP_SOFT_ERROR_LIMIT_DEFAULT, 2 };
	static const uint16_t hard_max[4] = { 1, 5, SMTP_HARD_ERROR_LIMIT_DEFAULT, 2 };
	static const uint16_t junk_max[4] = { 1, 4, SMTP_JUNK_COMMAND_LIMIT_DEFAULT, 2 };
	uint8_t settings = fuzz_u8(&in);
	uint8_t fail_seed = fuzz_u8(&in);
	uint8_t listener = fuzz_u8(&in);
	uint8_t screen = fuzz_u8(&in);
	uint8_t splits[64];
	size_t nsplits = fuzz_splits(&in, splits, sizeof(splits));

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
	h->cfg.listener_mode = (uint8_t)((listener & 3) % 3); /* smtp, submission, smtps */
	h->cfg.tls_offered = listener & 4;
	h->cfg.auth_offered = listener & 8;
	h->cfg.soft_error_limit = soft_max[(listener >> 4) & 3];
	h->cfg.hard_error_limit = hard_max[(listener >> 4) & 3];
	h->cfg.junk_command_limit = junk_max[(listener >> 4) & 3];
	h->cfg.greet_action = (uint8_t)(((screen >> 1) & 3) % 3); /* ignore, enforce, drop */
	h->b.auth_cap = listener & 0x40 ? 24 : SASL_DECODED_MAX_BYTES;
	h->b.auth_buf = malloc(h->b.auth_cap);
	FUZZ_CHECK(h->b.auth_buf != NULL);
	snprintf(h->tls.version, sizeof(h->tls.version), "TLSv1.3");
	snprintf(h->tls.cipher, sizeof(h->tls.cipher), "TLS_AES_256_GCM_SHA384");
	h->b.rng = fail_seed & 0x7f ? 0x9e3779b9u * fail_seed : 0;
	h->out.buf = h->out_buf;
	h->out.cap = sizeof(h->out_buf);
	struct smtp_peer peer;
	memset(&peer, 0, sizeof(peer));
	snprintf(peer.ip, sizeof(peer.ip), "%s", settings & 2 ? "2001:db8::25" : "192.0.2.25");
	peer.ipv6 = settings & 2;

	/* smtps: TLS is started right after smtp_session_start (its
	 * contract), so such a listener has no greeting pause here. */
	h->paused = (screen & 1) && h->cfg.listener_mode != SMTP_LISTENER_SMTPS;
	size_t reads_before_greeting = screen >> 3;
	if (h->paused)
		smtp_session_start_paused(&h->session, &h->cfg, &peer, &builder_ops, &h->b,
					  &h->out);
	else
		smtp_session_start(&h->session, &h->cfg, &peer, &builder_ops, &h->b, &h->out);
	smtp_session_set_auth(&h->session, &builder_auth_ops, &h->b);
	FUZZ_CHECK(h->out.len > 0 && memcmp(h->out.buf, h->paused ? "220-" : "220 ", 4) == 0);
	drain(h);
	if (h->cfg.listener_mode == SMTP_LISTENER_SMTPS) /* TLS from the first byte */
		smtp_session_tls_started(&h->session, &h->tls);
	size_t at = 0, split = 0;
	while (at < in.n && !h->closed && !h->stopped) {
		size_t piece = nsplits ? splits[split++ % nsplits] : in.n;
		if (piece > in.n - at)
			piece = in.n - at;
		deliver(h, in.p + at, piece, fail_seed & 0x80);
		at += piece;
		if (h->paused && !h->closed && (reads_before_greeting-- == 0 || at == in.n)) {
			/* The pause is over: the final 220, then what the
			 * client sent meanwhile. */
			smtp_session_greet_final(&h->session, &h->out);
			FUZZ_CHECK(h->out.len > 0 && memcmp(h->out.buf, "220 ", 4) == 0);
			h->paused = false;
			drain(h);
			deliver(h, in.p + at, 0, fail_seed & 0x80);
		}
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
	free(h->b.auth_buf);
	free(h->pending);
	free(h->b.body);
	free(h);
	policy_free(policy);
	return 0;
}
