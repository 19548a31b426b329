/*
 * test_smtp_lex.c - the command-line lexer against a table of cases.
 *
 * Every case is checked whole, then at every prefix length (each prefix in
 * a heap block of exactly that size, so ASan catches a read past the end),
 * then with each prefix placed flush against a PROT_NONE guard page, then
 * followed by a pipelined command. Cases with a known verb are repeated with
 * every upper/lower-case spelling of the verb. All single-line cases joined
 * into one pipelined stream are lexed as two reads split at every byte, with
 * the partial line carried over as the session does, and with one resumed
 * scan across the reads; every case is also lexed with a resumed scan cut
 * at each point and byte by byte. An exhaustive pass puts each of the 256
 * byte values at every alignment of a line. A maximal line fed a byte per
 * call, carried prefix first, must cost a linear number of examined bytes.
 */
#include "../proto/smtp_lex.h"
#include "test.h"

#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#define IN(s) s, sizeof(s) - 1
#define A(s) s, sizeof(s) - 1
#define A0 NULL, 0

struct lex_case {
	const char *input;
	size_t input_len;
	size_t max_line_bytes;
	bool lax; /* bare_lf_ends_line */
	enum smtp_lex_status status;
	size_t consumed;
	enum smtp_verb verb;
	const char *verb_text;
	const char *arg;
	size_t arg_len;
	unsigned flags;
};

enum { CTL = SMTP_LINE_CTL, BCR = SMTP_LINE_BARE_CR, BLF = SMTP_LINE_BARE_LF, HI = SMTP_LINE_8BIT };
#define LINE SMTP_LEX_LINE
#define INCOMPLETE SMTP_LEX_INCOMPLETE
#define TOO_LONG SMTP_LEX_TOO_LONG

static const struct lex_case lex_cases[] = {
	/* every verb */
	{ IN("HELO example.com\r\n"), 512, false, LINE, 18, SMTP_VERB_HELO, "HELO", A("example.com"), 0 },
	{ IN("EHLO mx.example.org\r\n"), 512, false, LINE, 21, SMTP_VERB_EHLO, "EHLO", A("mx.example.org"), 0 },
	{ IN("MAIL FROM:<a@b.example>\r\n"), 512, false, LINE, 25, SMTP_VERB_MAIL, "MAIL", A("FROM:<a@b.example>"), 0 },
	{ IN("RCPT TO:<a@b.example> \r\n"), 512, false, LINE, 24, SMTP_VERB_RCPT, "RCPT", A("TO:<a@b.example> "), 0 },
	{ IN("DATA\r\n"), 512, false, LINE, 6, SMTP_VERB_DATA, "DATA", A(""), 0 },
	{ IN("DATA \r\n"), 512, false, LINE, 7, SMTP_VERB_DATA, "DATA", A(""), 0 },
	{ IN("BDAT 100 LAST\r\n"), 512, false, LINE, 15, SMTP_VERB_BDAT, "BDAT", A("100 LAST"), 0 },
	{ IN("RSET\r\n"), 512, false, LINE, 6, SMTP_VERB_RSET, "RSET", A(""), 0 },
	{ IN("NOOP\r\n"), 512, false, LINE, 6, SMTP_VERB_NOOP, "NOOP", A(""), 0 },
	{ IN("QUIT\r\n"), 512, false, LINE, 6, SMTP_VERB_QUIT, "QUIT", A(""), 0 },
	{ IN("VRFY root\r\n"), 512, false, LINE, 11, SMTP_VERB_VRFY, "VRFY", A("root"), 0 },
	{ IN("HELP me\r\n"), 512, false, LINE, 9, SMTP_VERB_HELP, "HELP", A("me"), 0 },
	{ IN("EXPN list\r\n"), 512, false, LINE, 11, SMTP_VERB_EXPN, "EXPN", A("list"), 0 },
	{ IN("TURN\r\n"), 512, false, LINE, 6, SMTP_VERB_TURN, "TURN", A(""), 0 },
	{ IN("ETRN @example.com\r\n"), 512, false, LINE, 19, SMTP_VERB_ETRN, "ETRN", A("@example.com"), 0 },
	{ IN("STARTTLS\r\n"), 512, false, LINE, 10, SMTP_VERB_STARTTLS, "STARTTLS", A(""), 0 },
	{ IN("STARTTLS junk\r\n"), 512, false, LINE, 15, SMTP_VERB_STARTTLS, "STARTTLS", A("junk"), 0 },
	{ IN("AUTH PLAIN AGZvbwBiYXI=\r\n"), 512, false, LINE, 25, SMTP_VERB_AUTH, "AUTH", A("PLAIN AGZvbwBiYXI="), 0 },
	/* two spaces: arg keeps the second */
	{ IN("MAIL  FROM:<>\r\n"), 512, false, LINE, 15, SMTP_VERB_MAIL, "MAIL", A(" FROM:<>"), 0 },
	/* not verbs */
	{ IN("MAILX\r\n"), 512, false, LINE, 7, SMTP_VERB_UNKNOWN, "MAILX", A(""), 0 },
	{ IN("MAILX FROM:<>\r\n"), 512, false, LINE, 15, SMTP_VERB_UNKNOWN, "MAILX", A("FROM:<>"), 0 },
	{ IN("MAIL:x\r\n"), 512, false, LINE, 8, SMTP_VERB_UNKNOWN, "MAIL:x", A(""), 0 },
	{ IN("MAI\r\n"), 512, false, LINE, 5, SMTP_VERB_UNKNOWN, "MAI", A(""), 0 },
	{ IN("STAR\r\n"), 512, false, LINE, 6, SMTP_VERB_UNKNOWN, "STAR", A(""), 0 },
	{ IN("STARTTL\r\n"), 512, false, LINE, 9, SMTP_VERB_UNKNOWN, "STARTTL", A(""), 0 },
	{ IN("STARTTLSX\r\n"), 512, false, LINE, 11, SMTP_VERB_UNKNOWN, "STARTTLSX", A(""), 0 },
	{ IN("STARXTLS\r\n"), 512, false, LINE, 10, SMTP_VERB_UNKNOWN, "STARXTLS", A(""), 0 },
	{ IN("M@IL x\r\n"), 512, false, LINE, 8, SMTP_VERB_UNKNOWN, "M@IL", A("x"), 0 },
	{ IN("NO0P\r\n"), 512, false, LINE, 6, SMTP_VERB_UNKNOWN, "NO0P", A(""), 0 },
	{ IN("NOOP\tx\r\n"), 512, false, LINE, 8, SMTP_VERB_UNKNOWN, "NOOP\tx", A(""), 0 },
	{ IN(" NOOP\r\n"), 512, false, LINE, 7, SMTP_VERB_UNKNOWN, "", A("NOOP"), 0 },
	{ IN("XYZZY a b\r\n"), 512, false, LINE, 11, SMTP_VERB_UNKNOWN, "XYZZY", A("a b"), 0 },
	{ IN("\r\n"), 512, false, LINE, 2, SMTP_VERB_UNKNOWN, "", A(""), 0 },
	/* flags */
	{ IN("NOOP \x00x\r\n"), 512, false, LINE, 9, SMTP_VERB_NOOP, "NOOP", A("\x00x"), CTL },
	{ IN("NOOP \x01\r\n"), 512, false, LINE, 8, SMTP_VERB_NOOP, "NOOP", A("\x01"), CTL },
	{ IN("NOOP \x1b[0m\r\n"), 512, false, LINE, 11, SMTP_VERB_NOOP, "NOOP", A("\x1b[0m"), CTL },
	{ IN("NOOP \x7f\r\n"), 512, false, LINE, 8, SMTP_VERB_NOOP, "NOOP", A("\x7f"), CTL },
	{ IN("NOOP a\tb\r\n"), 512, false, LINE, 10, SMTP_VERB_NOOP, "NOOP", A("a\tb"), 0 },
	{ IN("NOOP a\rb\r\n"), 512, false, LINE, 10, SMTP_VERB_NOOP, "NOOP", A("a\rb"), BCR },
	{ IN("NOOP a\r\r\n"), 512, false, LINE, 9, SMTP_VERB_NOOP, "NOOP", A("a\r"), BCR },
	{ IN("NOOP\r\r\n"), 512, false, LINE, 7, SMTP_VERB_UNKNOWN, "NOOP\r", A(""), BCR },
	{ IN("NOOP a\r\x00\r\n"), 512, false, LINE, 10, SMTP_VERB_NOOP, "NOOP", A("a\r\x00"), BCR | CTL },
	{ IN("NOOP a\r\xc3\xa9\r\n"), 512, false, LINE, 11, SMTP_VERB_NOOP, "NOOP", A("a\r\xc3\xa9"), BCR | HI },
	{ IN("NOOP \xc3\xa9t\xc3\xa9\r\n"), 512, false, LINE, 12, SMTP_VERB_NOOP, "NOOP", A("\xc3\xa9t\xc3\xa9"), HI },
	{ IN("NOOP \xff\r\n"), 512, false, LINE, 8, SMTP_VERB_NOOP, "NOOP", A("\xff"), HI },
	{ IN("NOOP a\nb\r\n"), 512, false, LINE, 10, SMTP_VERB_NOOP, "NOOP", A("a\nb"), BLF },
	{ IN("NOOP a\nb\r\n"), 512, true, LINE, 7, SMTP_VERB_NOOP, "NOOP", A("a"), BLF },
	{ IN("NOOP\n"), 512, true, LINE, 5, SMTP_VERB_NOOP, "NOOP", A(""), BLF },
	{ IN("\n"), 512, true, LINE, 1, SMTP_VERB_UNKNOWN, "", A(""), BLF },
	{ IN("NOOP\r\n"), 512, true, LINE, 6, SMTP_VERB_NOOP, "NOOP", A(""), 0 },
	{ IN("NOOP\r\rx\n"), 512, true, LINE, 8, SMTP_VERB_UNKNOWN, "NOOP\r\rx", A(""), BCR | BLF },
	{ IN("NOOP \x00\r\x80\n"), 512, true, LINE, 9, SMTP_VERB_NOOP, "NOOP", A("\x00\r\x80"), CTL | BCR | HI | BLF },
	{ IN("NOOP \x00\r\x80\nX\r\n"), 512, false, LINE, 12, SMTP_VERB_NOOP, "NOOP", A("\x00\r\x80\nX"), CTL | BCR | HI | BLF },
	/* a long line: the eight-byte skip runs */
	{ IN("MAIL FROM:<someone.with.a.rather.long.name@sub.example.com> SIZE=1000 BODY=8BITMIME\r\n"), 512, false, LINE, 85,
	  SMTP_VERB_MAIL, "MAIL", A("FROM:<someone.with.a.rather.long.name@sub.example.com> SIZE=1000 BODY=8BITMIME"), 0 },
	{ IN("RCPT TO:<a@b.example> xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\x01yyyyyyyyyyyyyyy\r\n"), 512, false, LINE, 71,
	  SMTP_VERB_RCPT, "RCPT", A("TO:<a@b.example> xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\x01yyyyyyyyyyyyyyy"), CTL },
	/* pipelined: only the first line */
	{ IN("NOOP\r\nQUIT\r\n"), 512, false, LINE, 6, SMTP_VERB_NOOP, "NOOP", A(""), 0 },
	{ IN("RSET\nQUIT\r\n"), 512, true, LINE, 5, SMTP_VERB_RSET, "RSET", A(""), BLF },
	/* length bounds: max includes the terminator */
	{ IN("NOOP 12345\r\n"), 12, false, LINE, 12, SMTP_VERB_NOOP, "NOOP", A("12345"), 0 },
	{ IN("NOOP 12345\r\n"), 11, false, TOO_LONG, 11, SMTP_VERB_UNKNOWN, NULL, A0, 0 },
	{ IN("NOOP 12345\r\n"), 10, false, TOO_LONG, 10, SMTP_VERB_UNKNOWN, NULL, A0, 0 },
	{ IN("NOOP 12\n"), 8, true, LINE, 8, SMTP_VERB_NOOP, "NOOP", A("12"), BLF },
	{ IN("NOOP 12\n"), 7, true, TOO_LONG, 7, SMTP_VERB_UNKNOWN, NULL, A0, 0 },
	{ IN("NOOP 12\nxx\r\n"), 8, false, TOO_LONG, 8, SMTP_VERB_UNKNOWN, NULL, A0, 0 },
	{ IN("\r\n"), 2, false, LINE, 2, SMTP_VERB_UNKNOWN, "", A(""), 0 },
	{ IN("x\r\n"), 2, false, TOO_LONG, 2, SMTP_VERB_UNKNOWN, NULL, A0, 0 },
	/* no line end yet */
	{ IN("NOOP"), 512, false, INCOMPLETE, 0, SMTP_VERB_UNKNOWN, NULL, A0, 0 },
	{ IN("NOOP\r"), 512, false, INCOMPLETE, 0, SMTP_VERB_UNKNOWN, NULL, A0, 0 },
	{ IN("NOOP\n"), 512, false, INCOMPLETE, 0, SMTP_VERB_UNKNOWN, NULL, A0, 0 },
	{ IN("MAIL FROM:<someone.with.a.rather.long.name@sub.example.com>"), 512, false, INCOMPLETE, 0,
	  SMTP_VERB_UNKNOWN, NULL, A0, 0 },
	{ IN(""), 512, false, INCOMPLETE, 0, SMTP_VERB_UNKNOWN, NULL, A0, 0 },
};

/* Where in a line the lexer has decided: bytes after this are never read. */
static size_t decision_point(const struct lex_case *c)
{
	if (c->status == LINE)
		return c->consumed;
	if (c->status == TOO_LONG)
		return c->max_line_bytes;
	return SIZE_MAX;
}

static void check_span_inside(struct span s, const uint8_t *buf, size_t consumed)
{
	CHECK(s.ptr >= buf && s.ptr + s.len <= buf + consumed);
}

/* Checks the outcome expected for lexing buf[0..n) (what check_lex does). */
static void check_result(const struct lex_case *c, const uint8_t *buf, size_t n, const char *what,
			 enum smtp_lex_status st, const struct smtp_line *outp)
{
	const struct smtp_line line = *outp;
	size_t failed_before = test_checks_failed;

	if (n < decision_point(c)) {
		CHECK_EQ_U(st, INCOMPLETE);
		CHECK_EQ_U(line.consumed, 0);
	} else {
		CHECK_EQ_U(st, c->status);
		CHECK_EQ_U(line.consumed, c->consumed);
		if (c->status == LINE) {
			CHECK_EQ_U(line.verb, c->verb);
			CHECK_EQ_U(line.flags, c->flags);
			CHECK(line.text.ptr == buf);
			size_t term = c->consumed >= 2 && buf[c->consumed - 2] == '\r' ? 2 : 1;
			CHECK_EQ_U(line.text.len, c->consumed - term);
			CHECK_EQ_U(line.verb_text.len, strlen(c->verb_text));
			CHECK(line.verb_text.len == strlen(c->verb_text) &&
			      strncasecmp((const char *)line.verb_text.ptr, c->verb_text,
					  line.verb_text.len) == 0);
			CHECK_MEM(line.arg.ptr, line.arg.len, c->arg, c->arg_len);
			check_span_inside(line.verb_text, buf, c->consumed);
			check_span_inside(line.arg, buf, c->consumed);
		}
	}
	if (test_checks_failed != failed_before)
		fprintf(stderr, "  in case \"%.*s\" (%s, n=%zu)\n", (int)c->input_len, c->input,
			what, n);
}

/* Lexes buf[0..n) and checks the outcome expected for that length. */
static void check_lex(const struct lex_case *c, const uint8_t *buf, size_t n, const char *what)
{
	struct smtp_line line;
	enum smtp_lex_status st = smtp_lex_line(buf, n, c->max_line_bytes, c->lax, &line);
	check_result(c, buf, n, what, st, &line);
}

/* Lexes the case with one resumed scan, presented as the session presents
 * it: first the prefix input[0..cut), then (if that is undecided) all of
 * it; each presentation in a heap block of exactly its size. The outcome
 * must be the one of a fresh scan of the same bytes. */
static void check_resumed_cut(const struct lex_case *c, const char *input, size_t cut)
{
	struct smtp_lex_scan scan;
	smtp_lex_scan_init(&scan);
	size_t lengths[2] = { cut, c->input_len };
	for (int k = 0; k < 2; k++) {
		size_t n = lengths[k];
		uint8_t *block = malloc(n ? n : 1);
		REQUIRE(block != NULL);
		memcpy(block, input, n);
		struct smtp_line line;
		enum smtp_lex_status st = smtp_lex_line_resume(&scan, n ? block : NULL, n,
							       c->max_line_bytes, c->lax, &line);
		check_result(c, block, n, k == 0 ? "resumed, first piece" : "resumed, whole", st,
			     &line);
		free(block);
		if (st != INCOMPLETE)
			break;
	}
	CHECK(scan.examined_bytes <= c->input_len);
}

/* The case presented a byte more each time, carried prefix first, with one
 * resumed scan; in one buffer that grows, as core/ carries it. */
static void check_resumed_bytewise(const struct lex_case *c, const char *input)
{
	struct smtp_lex_scan scan;
	smtp_lex_scan_init(&scan);
	for (size_t n = 0; n <= c->input_len; n++) {
		uint8_t *block = malloc(n ? n : 1);
		REQUIRE(block != NULL);
		memcpy(block, input, n);
		struct smtp_line line;
		enum smtp_lex_status st = smtp_lex_line_resume(&scan, n ? block : NULL, n,
							       c->max_line_bytes, c->lax, &line);
		check_result(c, block, n, "resumed byte by byte", st, &line);
		free(block);
		if (st != INCOMPLETE)
			break;
	}
	CHECK(scan.examined_bytes <= c->input_len);
}

/* Every prefix in a heap block of exactly its size. */
static void check_prefixes(const struct lex_case *c, const char *input)
{
	for (size_t k = 0; k <= c->input_len; k++) {
		uint8_t *block = malloc(k ? k : 1);
		REQUIRE(block != NULL);
		memcpy(block, input, k);
		check_lex(c, k ? block : NULL, k, "heap prefix");
		free(block);
	}
}

/* Every prefix ending exactly at a PROT_NONE page. */
static void check_guard_page(const struct lex_case *c, const char *input, uint8_t *guarded_end)
{
	for (size_t k = 0; k <= c->input_len; k++) {
		uint8_t *start = guarded_end - k;
		memcpy(start, input, k);
		check_lex(c, start, k, "guard page");
	}
}

/* The line followed by another command in the same buffer: the first
 * result must not change and the second line must lex from consumed. */
static void check_pipelined(const struct lex_case *c, const char *input)
{
	if (c->status != LINE)
		return;
	static const char next[] = "QUIT\r\n";
	size_t n = c->input_len + sizeof(next) - 1;
	uint8_t *buf = malloc(n);
	REQUIRE(buf != NULL);
	memcpy(buf, input, c->input_len);
	memcpy(buf + c->input_len, next, sizeof(next) - 1);
	check_lex(c, buf, n, "pipelined");
	if (c->consumed == c->input_len) {
		struct smtp_line line;
		CHECK_EQ_U(smtp_lex_line(buf + c->consumed, n - c->consumed, 512, c->lax, &line),
			   LINE);
		CHECK_EQ_U(line.verb, SMTP_VERB_QUIT);
		CHECK_EQ_U(line.consumed, 6);
	}
	free(buf);
}

/* Calls fn with every upper/lower-case spelling of the case's verb. */
static void for_each_verb_spelling(const struct lex_case *c, uint8_t *guarded_end)
{
	size_t verb_len = c->status == LINE && c->verb != SMTP_VERB_UNKNOWN ? strlen(c->verb_text) : 0;
	REQUIRE(verb_len <= 8);
	char *spelled = malloc(c->input_len + 1);
	REQUIRE(spelled != NULL);
	for (unsigned mask = 0; mask < (1u << verb_len); mask++) {
		memcpy(spelled, c->input, c->input_len);
		for (size_t i = 0; i < verb_len; i++) {
			char ch = spelled[i];
			spelled[i] = (char)((mask >> i) & 1 ? (ch | 0x20) : (ch & ~0x20));
		}
		check_lex(c, (const uint8_t *)spelled, c->input_len, "whole");
		check_prefixes(c, spelled);
		check_guard_page(c, spelled, guarded_end);
		check_pipelined(c, spelled);
		for (size_t cut = 0; cut <= c->input_len; cut++)
			check_resumed_cut(c, spelled, cut);
		check_resumed_bytewise(c, spelled);
	}
	free(spelled);
}

/* Each byte value at each offset of a long NOOP line: the flags must follow
 * the byte's class whether it lands in the eight-byte skip or not. */
static void test_every_byte_everywhere(void)
{
	char line[64];
	for (unsigned b = 0; b < 256; b++) {
		if (b == '\r' || b == '\n')
			continue;
		unsigned want = 0;
		if ((b < 0x20 && b != '\t') || b == 0x7f)
			want = CTL;
		else if (b >= 0x80)
			want = HI;
		for (size_t at = 5; at < 40; at++) {
			memset(line, 'a', sizeof(line));
			memcpy(line, "NOOP ", 5);
			line[at] = (char)b;
			line[48] = '\r';
			line[49] = '\n';
			struct smtp_line out;
			enum smtp_lex_status st =
				smtp_lex_line((const uint8_t *)line, 50, 512, false, &out);
			if (st != LINE || out.flags != want || out.consumed != 50 ||
			    out.verb != SMTP_VERB_NOOP) {
				CHECK(false);
				fprintf(stderr, "  byte 0x%02x at %zu: st %d flags %u\n", b, at, st,
					out.flags);
			} else {
				CHECK(true);
			}
		}
	}
}

#define STREAM_MAX_LINES 128

struct lexed {
	enum smtp_verb verb;
	size_t offset;   /* of the line in the stream */
	size_t consumed;
	unsigned flags;
	size_t arg_offset;
	size_t arg_len;
};

/*
 * Lexes a stream delivered in two reads, split at `split`, the way the
 * session does it: complete lines are taken from the buffer, the partial
 * tail is carried and the next read appended to it. Records every line
 * with offsets relative to the stream. Returns the number of lines.
 */
static size_t lex_stream(const uint8_t *stream, size_t n, size_t split, bool lax, bool resume,
			 struct lexed *lines)
{
	struct smtp_lex_scan scan;
	smtp_lex_scan_init(&scan);
	uint8_t *carry = malloc(n ? n : 1);
	REQUIRE(carry != NULL);
	size_t carry_len = 0, base = 0, count = 0;
	size_t reads[2][2] = { { 0, split }, { split, n } };

	for (int r = 0; r < 2; r++) {
		memcpy(carry + carry_len, stream + reads[r][0], reads[r][1] - reads[r][0]);
		carry_len += reads[r][1] - reads[r][0];
		size_t off = 0;
		for (;;) {
			struct smtp_line line;
			enum smtp_lex_status st =
				resume ? smtp_lex_line_resume(&scan, carry + off, carry_len - off,
							      512, lax, &line)
				       : smtp_lex_line(carry + off, carry_len - off, 512, lax, &line);
			if (st != LINE)
				break;
			REQUIRE(count < STREAM_MAX_LINES);
			lines[count].verb = line.verb;
			lines[count].offset = base + off;
			lines[count].consumed = line.consumed;
			lines[count].flags = line.flags;
			lines[count].arg_offset = base + (size_t)(line.arg.ptr - carry);
			lines[count].arg_len = line.arg.len;
			count++;
			off += line.consumed;
		}
		memmove(carry, carry + off, carry_len - off);
		carry_len -= off;
		base += off;
	}
	free(carry);
	/* Resumed, each byte of the stream is examined once. */
	if (resume)
		CHECK(scan.examined_bytes <= n);
	return count;
}

/* Pipelined input split into two reads at every byte gives the same lines
 * as the whole input in one read, lexed afresh or with a resumed scan. */
static void test_stream_splits(bool lax, bool resume)
{
	uint8_t stream[2048];
	size_t n = 0;
	for (size_t i = 0; i < RMX_ARRAY_LEN(lex_cases); i++) {
		const struct lex_case *c = &lex_cases[i];
		/* Whole single lines that end the same way in this mode. */
		if (c->status != LINE || c->max_line_bytes != 512 || c->consumed != c->input_len ||
		    (c->lax != lax && (c->flags & BLF)))
			continue;
		REQUIRE(n + c->input_len <= sizeof(stream));
		memcpy(stream + n, c->input, c->input_len);
		n += c->input_len;
	}
	struct lexed whole[STREAM_MAX_LINES], split[STREAM_MAX_LINES];
	size_t whole_count = lex_stream(stream, n, n, lax, false, whole);
	CHECK(whole_count > 10);
	CHECK_EQ_U(whole[whole_count - 1].offset + whole[whole_count - 1].consumed, n);
	for (size_t k = 0; k <= n; k++) {
		size_t count = lex_stream(stream, n, k, lax, resume, split);
		bool same = count == whole_count;
		for (size_t i = 0; same && i < count; i++)
			same = split[i].verb == whole[i].verb && split[i].offset == whole[i].offset &&
			       split[i].consumed == whole[i].consumed &&
			       split[i].flags == whole[i].flags &&
			       split[i].arg_offset == whole[i].arg_offset &&
			       split[i].arg_len == whole[i].arg_len;
		CHECK(same);
		if (!same)
			fprintf(stderr, "  stream split at %zu (lax %d, resume %d)\n", k, lax, resume);
	}
}

/* The RFC 5321 minimum line at exactly the bound and one over. */
static void test_bound_lines(void)
{
	const size_t max = 512;
	char *buf = malloc(max + 1);
	REQUIRE(buf != NULL);
	memcpy(buf, "NOOP ", 5);
	memset(buf + 5, 'x', max - 5);
	buf[max - 2] = '\r';
	buf[max - 1] = '\n';
	struct smtp_line out;
	CHECK_EQ_U(smtp_lex_line((uint8_t *)buf, max, max, false, &out), LINE);
	CHECK_EQ_U(out.consumed, max);
	CHECK_EQ_U(out.arg.len, max - 7);

	buf[max - 2] = 'x';
	buf[max - 1] = '\r';
	buf[max] = '\n';
	CHECK_EQ_U(smtp_lex_line((uint8_t *)buf, max - 1, max, false, &out), INCOMPLETE);
	CHECK_EQ_U(smtp_lex_line((uint8_t *)buf, max, max, false, &out), TOO_LONG);
	CHECK_EQ_U(out.consumed, max);
	CHECK_EQ_U(smtp_lex_line((uint8_t *)buf, max + 1, max, false, &out), TOO_LONG);
	CHECK_EQ_U(out.consumed, max);
	/* after discarding max bytes, the rest of the line is "\n" */
	CHECK_EQ_U(smtp_lex_line((uint8_t *)buf + max, 1, max, true, &out), LINE);
	CHECK_EQ_U(out.consumed, 1);
	free(buf);
}

/*
 * Feeds a line of max bytes, a byte more per call, the way core/ presents a
 * trickled line: the whole carried prefix again plus the new byte. Returns
 * the bytes the scan examined; checks the outcome of each call.
 */
static uint32_t feed_trickled(const uint8_t *line, size_t max, bool ends, bool lax)
{
	struct smtp_lex_scan scan;
	smtp_lex_scan_init(&scan);
	uint8_t *carry = malloc(max);
	REQUIRE(carry != NULL);
	for (size_t n = 1; n <= max; n++) {
		carry[n - 1] = line[n - 1];
		struct smtp_line out;
		enum smtp_lex_status st = smtp_lex_line_resume(&scan, carry, n, max, lax, &out);
		if (n < max) {
			if (st != INCOMPLETE) {
				CHECK_EQ_U(st, INCOMPLETE);
				break;
			}
			continue;
		}
		CHECK_EQ_U(st, ends ? LINE : TOO_LONG);
		CHECK_EQ_U(out.consumed, max);
		if (ends) {
			CHECK_EQ_U(out.verb, SMTP_VERB_NOOP);
			CHECK_EQ_U(out.arg.len, max - 7);
			CHECK_EQ_U(out.flags, HI | CTL);
		}
	}
	free(carry);
	return scan.examined_bytes;
}

/* The longest legal command line trickled a byte per call costs a linear
 * number of examined bytes, not one rescan of the prefix per byte (about
 * 33.5 million for 8 KiB). Counted, not timed. */
static void test_longest_line_bytewise(void)
{
	const size_t max = SMTP_COMMAND_LINE_MAX_BYTES;
	uint8_t *line = malloc(max);
	REQUIRE(line != NULL);
	memcpy(line, "NOOP ", 5);
	for (size_t i = 5; i < max - 2; i++)
		line[i] = (uint8_t)('a' + i % 26);
	line[max / 2] = 0xc3; /* a flag raised early must survive every resume */
	line[max / 3] = 0x01;
	line[max - 2] = '\r';
	line[max - 1] = '\n';
	for (int lax = 0; lax < 2; lax++) {
		uint32_t examined = feed_trickled(line, max, true, lax);
		printf("%zu-byte line fed a byte per call (lax %d): %" PRIu32
		       " bytes examined\n", max, lax, examined);
		CHECK(examined <= 2 * max);
	}
	memset(line, 'x', max); /* no line end: 500 at the bound */
	uint32_t examined = feed_trickled(line, max, false, false);
	printf("%zu bytes without a line end fed a byte per call: %" PRIu32 " bytes examined\n",
	       max, examined);
	CHECK(examined <= 2 * max);
	free(line);
}

static void test_verb_names(void)
{
	CHECK(strcmp(smtp_verb_name(SMTP_VERB_UNKNOWN), "unknown") == 0);
	CHECK(strcmp(smtp_verb_name(SMTP_VERB_EHLO), "ehlo") == 0);
	CHECK(strcmp(smtp_verb_name(SMTP_VERB_STARTTLS), "starttls") == 0);
	CHECK(strcmp(smtp_verb_name(SMTP_VERB_AUTH), "auth") == 0);
	CHECK(strcmp(smtp_verb_name(SMTP_VERB_COUNT), "unknown") == 0);
	for (int v = 0; v < SMTP_VERB_COUNT; v++) {
		const char *name = smtp_verb_name((enum smtp_verb)v);
		REQUIRE(name != NULL);
		for (const char *q = name; *q; q++)
			CHECK(*q >= 'a' && *q <= 'z');
	}
}

int main(void)
{
	long page = sysconf(_SC_PAGESIZE);
	REQUIRE(page > 0);
	uint8_t *pages = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(pages != MAP_FAILED);
	REQUIRE(mprotect(pages + page, (size_t)page, PROT_NONE) == 0);
	uint8_t *guarded_end = pages + page;

	for (size_t i = 0; i < RMX_ARRAY_LEN(lex_cases); i++) {
		REQUIRE(lex_cases[i].input_len < (size_t)page);
		for_each_verb_spelling(&lex_cases[i], guarded_end);
	}
	test_every_byte_everywhere();
	test_stream_splits(false, false);
	test_stream_splits(true, false);
	test_stream_splits(false, true);
	test_stream_splits(true, true);
	test_longest_line_bytewise();
	test_bound_lines();
	test_verb_names();

	REQUIRE(munmap(pages, 2 * (size_t)page) == 0);
	return test_main_end("smtp_lex");
}
