/*
 * fuzz_smtp_lex.c - the command lexer (proto/smtp_lex) against a reference
 * written here byte by byte from its contract.
 *
 * Input: a settings byte (bit 0: a bare LF ends a line), two bytes of the
 * line bound, then split bytes up to a zero, then the client's bytes. The
 * bytes are lexed line after line twice: whole, and delivered in the pieces
 * the split bytes give, through smtp_lex_line_resume with the partial line
 * carried as the session carries it. Both must agree with each other and
 * with the reference: where a line ends, what it consumed, its verb, its
 * flags, and spans that stay inside the line.
 */
#include "../../proto/smtp_lex.h"

#include "fuzz_common.h"

#include <ctype.h>

static const char *const verb_words[SMTP_VERB_COUNT] = {
	[SMTP_VERB_HELO] = "HELO", [SMTP_VERB_EHLO] = "EHLO", [SMTP_VERB_MAIL] = "MAIL",
	[SMTP_VERB_RCPT] = "RCPT", [SMTP_VERB_DATA] = "DATA", [SMTP_VERB_BDAT] = "BDAT",
	[SMTP_VERB_RSET] = "RSET", [SMTP_VERB_NOOP] = "NOOP", [SMTP_VERB_QUIT] = "QUIT",
	[SMTP_VERB_VRFY] = "VRFY", [SMTP_VERB_HELP] = "HELP", [SMTP_VERB_EXPN] = "EXPN",
	[SMTP_VERB_TURN] = "TURN", [SMTP_VERB_ETRN] = "ETRN",
	[SMTP_VERB_STARTTLS] = "STARTTLS", [SMTP_VERB_AUTH] = "AUTH",
};

/* What the reference finds at the start of p[0..n). */
struct ref_line {
	enum smtp_lex_status status;
	size_t consumed;
	size_t text_len;
	unsigned flags;
	enum smtp_verb verb;
};

static bool is_ctl(uint8_t c)
{
	return (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f;
}

static enum smtp_verb ref_verb(const uint8_t *t, size_t len)
{
	for (int v = 1; v < SMTP_VERB_COUNT; v++) {
		size_t w = strlen(verb_words[v]);
		if (len < w || (len > w && t[w] != ' '))
			continue;
		bool same = true;
		for (size_t i = 0; i < w && same; i++)
			same = toupper(t[i]) == verb_words[v][i];
		if (same)
			return (enum smtp_verb)v;
	}
	return SMTP_VERB_UNKNOWN;
}

static struct ref_line ref_lex(const uint8_t *p, size_t n, size_t max, bool bare_lf_ends)
{
	struct ref_line r = { .status = SMTP_LEX_INCOMPLETE };
	size_t limit = n < max ? n : max;
	for (size_t i = 0; i < limit; i++) {
		uint8_t c = p[i];
		bool after_cr = i > 0 && p[i - 1] == '\r';
		if (c == '\n' && after_cr) {
			r.status = SMTP_LEX_LINE;
			r.consumed = i + 1;
			r.text_len = i - 1;
			break;
		}
		if (c == '\n') {
			r.flags |= SMTP_LINE_BARE_LF;
			if (bare_lf_ends) {
				r.status = SMTP_LEX_LINE;
				r.consumed = i + 1;
				r.text_len = i;
				break;
			}
		}
		if (after_cr)
			r.flags |= SMTP_LINE_BARE_CR;
		if (is_ctl(c))
			r.flags |= SMTP_LINE_CTL;
		if (c >= 0x80)
			r.flags |= SMTP_LINE_8BIT;
	}
	if (r.status == SMTP_LEX_LINE)
		r.verb = ref_verb(p, r.text_len);
	else if (n >= max) {
		r.status = SMTP_LEX_TOO_LONG;
		r.consumed = max;
	}
	return r;
}

static void check_line(const struct smtp_line *l, enum smtp_lex_status st, const uint8_t *p,
		       size_t n, const struct ref_line *ref)
{
	FUZZ_CHECK(st == ref->status);
	if (st == SMTP_LEX_INCOMPLETE)
		return;
	FUZZ_CHECK(l->consumed == ref->consumed && l->consumed <= n && l->consumed > 0);
	if (st != SMTP_LEX_LINE)
		return;
	FUZZ_CHECK(l->text.ptr == p && l->text.len == ref->text_len);
	FUZZ_CHECK(l->flags == ref->flags);
	FUZZ_CHECK(l->verb == ref->verb);
	FUZZ_CHECK(fuzz_span_within(l->verb_text.ptr, l->verb_text.len, p, l->text.len));
	FUZZ_CHECK(fuzz_span_within(l->arg.ptr, l->arg.len, p, l->text.len));
	FUZZ_CHECK(l->verb_text.len + l->arg.len <= l->text.len);
	if (l->verb != SMTP_VERB_UNKNOWN)
		FUZZ_CHECK(l->verb_text.len == strlen(verb_words[l->verb]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	bool bare_lf_ends = fuzz_u8(&in) & 1;
	size_t max = 2 + fuzz_u16(&in) % (SMTP_COMMAND_LINE_MAX_BYTES - 1);
	uint8_t splits[64];
	size_t nsplits = fuzz_splits(&in, splits, sizeof(splits));
	uint8_t *buf = fuzz_exact_copy(in.p, in.n);
	const size_t n = in.n;

	/* Whole: every line of the input in turn. */
	size_t at = 0;
	while (at < n) {
		struct smtp_line l;
		enum smtp_lex_status st = smtp_lex_line(buf + at, n - at, max, bare_lf_ends, &l);
		struct ref_line ref = ref_lex(buf + at, n - at, max, bare_lf_ends);
		check_line(&l, st, buf + at, n - at, &ref);
		if (st == SMTP_LEX_INCOMPLETE)
			break;
		at += l.consumed;
	}

	/* In pieces: the carried partial line first again, then what is new,
	 * each time in a buffer of exactly that size. */
	struct smtp_lex_scan scan;
	smtp_lex_scan_init(&scan);
	size_t line_start = 0, arrived = 0, split = 0;
	while (arrived < n) {
		size_t piece = nsplits ? splits[split++ % nsplits] : n;
		arrived += piece < n - arrived ? piece : n - arrived;
		for (;;) {
			size_t len = arrived - line_start;
			if (len == 0)
				break;
			uint8_t *view = fuzz_exact_copy(buf + line_start, len);
			struct smtp_line l;
			enum smtp_lex_status st =
				smtp_lex_line_resume(&scan, view, len, max, bare_lf_ends, &l);
			struct ref_line ref = ref_lex(view, len, max, bare_lf_ends);
			check_line(&l, st, view, len, &ref);
			free(view);
			if (st == SMTP_LEX_INCOMPLETE)
				break;
			line_start += l.consumed;
		}
	}
	free(buf);
	return 0;
}
