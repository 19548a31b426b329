/*
 * fuzz_smtp_client_reply.c - what an upstream relay sends, read by the
 * forwarder's ESMTP client: the reply line assembler and the folding of
 * reply lines into results and capabilities (proto/smtp_client_reply), and
 * the client's command-line writer (proto/smtp_client_line) given
 * arbitrary stored values.
 *
 * Input: a settings byte, split bytes up to a zero (the sizes of the
 * reads), then the upstream's bytes. They are read whole and in pieces,
 * each piece in a buffer of exactly its size: both readings must give the
 * same lines (code, first/last, text) and stop at the same malformation;
 * every line has a 2xx-5xx code and text within its buffer; a folded
 * result holds a valid code and only printable ASCII; EHLO lines never
 * give attributes outside the known set. The same bytes, cut into four
 * values, go through XFORWARD packing and the path check: every packed
 * line fits the command bound and ends with its only CRLF.
 */
#include "../../proto/smtp_client_line.h"
#include "../../proto/smtp_client_reply.h"
#include "../../proto/smtp_reply.h"

#include "fuzz_common.h"

/* One line as read, for comparing readings. */
struct seen_line {
	uint16_t code;
	bool first, last, over;
	uint16_t text_len;
	uint8_t text[SMTP_CLIENT_REPLY_TEXT_MAX_BYTES + 16];
};

struct reading {
	struct seen_line *lines;
	size_t count, cap;
	bool malformed;
	size_t consumed; /* bytes read before the malformation, or all */
	unsigned begins;
};

static void record_line(struct reading *rd, const struct smtp_client_reply_line *l,
			const struct smtp_client_reply_reader *r)
{
	FUZZ_CHECK(l->code >= 200 && l->code <= 599);
	FUZZ_CHECK(l->text_len <= sizeof(r->line));
	FUZZ_CHECK(l->text_len == 0 ||
		   fuzz_span_within((const uint8_t *)l->text, l->text_len,
				    (const uint8_t *)r->line, sizeof(r->line)));
	if (rd->count == rd->cap) {
		rd->cap = rd->cap ? 2 * rd->cap : 16;
		rd->lines = realloc(rd->lines, rd->cap * sizeof(*rd->lines));
		FUZZ_CHECK(rd->lines != NULL);
	}
	struct seen_line *s = &rd->lines[rd->count++];
	memset(s, 0, sizeof(*s));
	s->code = l->code;
	s->first = l->first;
	s->last = l->last;
	s->over = l->lines_over_max;
	s->text_len = (uint16_t)l->text_len;
	if (l->text_len)
		memcpy(s->text, l->text, l->text_len);
}

static void check_result(const struct smtp_client_result *res)
{
	FUZZ_CHECK(res->code >= 200 && res->code <= 599);
	size_t status_len = strnlen(res->status, sizeof(res->status));
	FUZZ_CHECK(status_len < sizeof(res->status));
	size_t text_len = strnlen(res->text, sizeof(res->text));
	FUZZ_CHECK(text_len < sizeof(res->text));
	for (size_t i = 0; i < text_len; i++)
		FUZZ_CHECK(res->text[i] >= 0x20 && res->text[i] < 0x7f);
	for (size_t i = 0; i < status_len; i++)
		FUZZ_CHECK(res->status[i] >= 0x20 && res->status[i] < 0x7f);
}

/* Reads p[0..n) in pieces of the given sizes (all at once without any). */
static void read_all(const uint8_t *p, size_t n, const uint8_t *splits, size_t nsplits,
		     bool ehlo, struct reading *rd)
{
	struct smtp_client_reply_reader r;
	smtp_client_reply_reader_init(&r);
	struct smtp_client_result res;
	smtp_client_result_clear(&res);
	struct smtp_client_caps caps = { 0 };
	size_t done = 0, split = 0;
	while (done < n && !rd->malformed) {
		size_t piece = nsplits ? splits[split++ % nsplits] : n;
		if (piece > n - done)
			piece = n - done;
		uint8_t *view = fuzz_exact_copy(p + done, piece);
		size_t at = 0;
		while (at < piece) {
			size_t before = at;
			struct smtp_client_reply_line line;
			enum smtp_client_reply_event ev =
				smtp_client_reply_read(&r, view, piece, &at, &line);
			FUZZ_CHECK(at <= piece);
			if (ev == SMTP_CLIENT_REPLY_MALFORMED) {
				rd->malformed = true;
				break;
			}
			FUZZ_CHECK(at > before || ev == SMTP_CLIENT_REPLY_BEGIN);
			if (ev == SMTP_CLIENT_REPLY_BEGIN)
				rd->begins++;
			if (ev != SMTP_CLIENT_REPLY_LINE)
				continue;
			record_line(rd, &line, &r);
			if (line.first)
				smtp_client_result_clear(&res);
			smtp_client_result_add_line(&res, &line);
			check_result(&res);
			if (ehlo && !line.first)
				smtp_client_caps_add_line(&caps, line.text, line.text_len);
		}
		free(view);
		rd->consumed = done + at;
		if (!rd->malformed)
			done += piece;
	}
	if (!rd->malformed)
		rd->consumed = n;
	FUZZ_CHECK((caps.xforward_attrs & ~0x0fu) == 0);
	FUZZ_CHECK((caps.caps & ~0x1ffu) == 0);
}

static void check_xforward(const uint8_t *p, size_t n, uint8_t attrs)
{
	struct span v[4];
	size_t quarter = n / 4;
	for (int i = 0; i < 4; i++)
		v[i] = span_make(p + i * quarter, i == 3 ? n - 3 * quarter : quarter);
	struct smtp_client_xforward xf = { v[0], v[1], v[2], v[3] };
	attrs &= 0x0f;
	uint32_t lines = smtp_client_xforward_pack(&xf, attrs, 0, NULL);
	FUZZ_CHECK(lines <= SMTP_XFORWARD_ATTR_COUNT);
	for (uint32_t i = 0; i < lines; i++) {
		char buf[SMTP_CLIENT_COMMAND_MAX_BYTES];
		struct smtp_client_line lb = { buf, 0, sizeof(buf) };
		FUZZ_CHECK(smtp_client_xforward_pack(&xf, attrs, i, &lb) == lines);
		FUZZ_CHECK(lb.len >= 2 && lb.len < SMTP_CLIENT_COMMAND_MAX_BYTES);
		FUZZ_CHECK(buf[lb.len - 2] == '\r' && buf[lb.len - 1] == '\n');
		for (size_t j = 0; j + 2 < lb.len; j++)
			FUZZ_CHECK(buf[j] >= 0x20 && buf[j] < 0x7f);
	}
	for (int utf8 = 0; utf8 < 2; utf8++) {
		if (!smtp_client_path_sendable(span_make(p, n), utf8))
			continue;
		FUZZ_CHECK(n <= SMTP_PATH_MAX_BYTES);
		for (size_t j = 0; j < n; j++)
			FUZZ_CHECK(p[j] >= 0x20 && p[j] != 0x7f && p[j] != '<' && p[j] != '>' &&
				   (utf8 || p[j] < 0x80));
		/* A sendable path goes on a line whole, or not at all. */
		uint8_t out_buf[SMTP_REPLY_BUFFER_BYTES];
		struct smtp_out out = { out_buf, 0, sizeof(out_buf) };
		if (smtp_client_out_command(&out, "RCPT TO:", span_make(p, n)))
			FUZZ_CHECK(out.len >= n + 2 && out.buf[out.len - 1] == '\n');
		else
			FUZZ_CHECK(out.len == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	uint8_t settings = fuzz_u8(&in);
	uint8_t splits[64];
	size_t nsplits = fuzz_splits(&in, splits, sizeof(splits));
	struct reading whole = { 0 }, pieces = { 0 };
	read_all(in.p, in.n, NULL, 0, settings & 1, &whole);
	read_all(in.p, in.n, splits, nsplits, settings & 1, &pieces);
	FUZZ_CHECK(whole.malformed == pieces.malformed && whole.count == pieces.count);
	FUZZ_CHECK(whole.begins == pieces.begins);
	if (whole.malformed)
		FUZZ_CHECK(whole.consumed == pieces.consumed);
	for (size_t i = 0; i < whole.count; i++) {
		const struct seen_line *a = &whole.lines[i], *b = &pieces.lines[i];
		FUZZ_CHECK(a->code == b->code && a->first == b->first && a->last == b->last);
		FUZZ_CHECK(a->over == b->over && a->text_len == b->text_len);
		FUZZ_CHECK(memcmp(a->text, b->text, a->text_len) == 0);
	}
	free(whole.lines);
	free(pieces.lines);
	check_xforward(in.p, in.n, settings >> 1);
	return 0;
}
