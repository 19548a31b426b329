/*
 * smtp_lex.c - finds one command line in the receive buffer and splits it
 * into verb and argument, in place.
 *
 * Sits first in the command path: core/ hands the session a span of received
 * bytes, the session calls smtp_lex_line() on it and then the argument
 * parsers of smtp_cmd.c on the spans returned here. Nothing is copied.
 *
 * The scan is data (DESIGN.md rule 4): smtp_class[] maps each byte to a
 * class and smtp_next[state][class] gives the next state plus the line flags
 * the transition raises. Runs of plain printable ASCII are skipped eight
 * bytes at a time; the skip only jumps over bytes whose class is C_TEXT, so
 * it never changes what the tables decide.
 *
 * Resumable (the nginx / picohttpparser shape): a line that arrives in
 * pieces is presented again from its start with each piece, and struct
 * smtp_lex_scan remembers how far it was scanned, in which state and with
 * which flags, so each byte of a line is examined once however it is cut.
 * Resuming is exact because the tables are a pure function of (state, byte)
 * and the flags only accumulate.
 *
 * Invariants: never reads p[i] for i >= min(n, max_line_bytes); every field
 * of *out is written on every return; spans point into p.
 */
#include "smtp_lex.h"

#include <string.h>

enum lex_class {
	C_TEXT, /* printable ASCII and HT */
	C_CR,
	C_LF,
	C_CTL,  /* NUL, other C0 controls, DEL */
	C_HIGH, /* 0x80-0xff */
	CLASS_COUNT
};

#define X_ C_CTL
#define T_ C_TEXT
#define H_ C_HIGH
static const uint8_t smtp_class[256] = {
	/* 0x00-0x0f: NUL..SI; HT is text, LF and CR are line structure */
	X_, X_, X_, X_, X_, X_, X_, X_, X_, T_, C_LF, X_, X_, C_CR, X_, X_,
	/* 0x10-0x1f: DLE..US */
	X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_,
	/* 0x20-0x2f: SP ! " # $ % & ' ( ) * + , - . / */
	T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_,
	/* 0x30-0x3f: 0-9 : ; < = > ? */
	T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_,
	/* 0x40-0x4f: @ A-O */
	T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_,
	/* 0x50-0x5f: P-Z [ \ ] ^ _ */
	T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_,
	/* 0x60-0x6f: ` a-o */
	T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_,
	/* 0x70-0x7f: p-z { | } ~ DEL */
	T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, X_,
	/* 0x80-0xbf: UTF-8 continuation bytes (and Latin-1 upper half) */
	H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_,
	H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_,
	H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_,
	H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_,
	/* 0xc0-0xff: UTF-8 lead bytes (and invalid ones) */
	H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_,
	H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_,
	H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_,
	H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_, H_,
};
#undef X_
#undef T_
#undef H_

/*
 * States. The strict pair (S_LINE, S_LINE_CR) treats a lone LF as data; the
 * lax pair (S_LAX, S_LAX_CR) ends the line there. The two END states are
 * terminal and never indexed.
 */
enum lex_state {
	S_LINE,     /* inside the line, previous byte not CR */
	S_LINE_CR,  /* previous byte was CR */
	S_LAX,      /* as S_LINE, but a lone LF ends the line */
	S_LAX_CR,   /* as S_LINE_CR, lax */
	S_END_CRLF, /* line ended with CRLF */
	S_END_LF,   /* line ended with a lone LF (lax only) */
	STATE_COUNT
};

/* A transition: the next state in the low nibble, SMTP_LINE_* flags to raise
 * in the high nibble. */
#define TO(state, flags) ((uint8_t)((state) | ((flags) << 4)))
#define CTL SMTP_LINE_CTL
#define BCR SMTP_LINE_BARE_CR
#define BLF SMTP_LINE_BARE_LF
#define HI SMTP_LINE_8BIT
_Static_assert(STATE_COUNT <= 16, "a state fits the low nibble");
_Static_assert((CTL | BCR | BLF | HI) <= 0xf, "the flags fit the high nibble");

static const uint8_t smtp_next[STATE_COUNT][CLASS_COUNT] = {
	/*                C_TEXT                C_CR                   C_LF                    C_CTL                       C_HIGH */
	[S_LINE]     = { TO(S_LINE, 0),        TO(S_LINE_CR, 0),      TO(S_LINE, BLF),        TO(S_LINE, CTL),            TO(S_LINE, HI) },
	[S_LINE_CR]  = { TO(S_LINE, BCR),      TO(S_LINE_CR, BCR),    TO(S_END_CRLF, 0),      TO(S_LINE, BCR | CTL),      TO(S_LINE, BCR | HI) },
	[S_LAX]      = { TO(S_LAX, 0),         TO(S_LAX_CR, 0),       TO(S_END_LF, BLF),      TO(S_LAX, CTL),             TO(S_LAX, HI) },
	[S_LAX_CR]   = { TO(S_LAX, BCR),       TO(S_LAX_CR, BCR),     TO(S_END_CRLF, 0),      TO(S_LAX, BCR | CTL),       TO(S_LAX, BCR | HI) },
	[S_END_CRLF] = { TO(S_END_CRLF, 0),    TO(S_END_CRLF, 0),     TO(S_END_CRLF, 0),      TO(S_END_CRLF, 0),          TO(S_END_CRLF, 0) },
	[S_END_LF]   = { TO(S_END_LF, 0),      TO(S_END_LF, 0),       TO(S_END_LF, 0),        TO(S_END_LF, 0),            TO(S_END_LF, 0) },
};
#undef CTL
#undef BCR
#undef BLF
#undef HI
#undef TO

/* Verbs as their lower-cased first four bytes, little-endian packed. */
#define VERB_WORD(a, b, c, d)                                                    \
	((uint32_t)(uint8_t)(a) | (uint32_t)(uint8_t)(b) << 8 |                  \
	 (uint32_t)(uint8_t)(c) << 16 | (uint32_t)(uint8_t)(d) << 24)

struct verb_row {
	uint32_t word;
	uint8_t verb; /* enum smtp_verb */
};

static const struct verb_row verb_table[] = {
	{ VERB_WORD('m', 'a', 'i', 'l'), SMTP_VERB_MAIL },
	{ VERB_WORD('r', 'c', 'p', 't'), SMTP_VERB_RCPT },
	{ VERB_WORD('d', 'a', 't', 'a'), SMTP_VERB_DATA },
	{ VERB_WORD('b', 'd', 'a', 't'), SMTP_VERB_BDAT },
	{ VERB_WORD('e', 'h', 'l', 'o'), SMTP_VERB_EHLO },
	{ VERB_WORD('h', 'e', 'l', 'o'), SMTP_VERB_HELO },
	{ VERB_WORD('r', 's', 'e', 't'), SMTP_VERB_RSET },
	{ VERB_WORD('n', 'o', 'o', 'p'), SMTP_VERB_NOOP },
	{ VERB_WORD('q', 'u', 'i', 't'), SMTP_VERB_QUIT },
	{ VERB_WORD('s', 't', 'a', 'r'), SMTP_VERB_STARTTLS }, /* + "ttls" */
	{ VERB_WORD('v', 'r', 'f', 'y'), SMTP_VERB_VRFY },
	{ VERB_WORD('h', 'e', 'l', 'p'), SMTP_VERB_HELP },
	{ VERB_WORD('e', 'x', 'p', 'n'), SMTP_VERB_EXPN },
	{ VERB_WORD('t', 'u', 'r', 'n'), SMTP_VERB_TURN },
	{ VERB_WORD('e', 't', 'r', 'n'), SMTP_VERB_ETRN },
	{ VERB_WORD('a', 'u', 't', 'h'), SMTP_VERB_AUTH },
};
#define STARTTLS_TAIL_WORD VERB_WORD('t', 't', 'l', 's')

static const char *const verb_names[SMTP_VERB_COUNT] = {
	[SMTP_VERB_UNKNOWN] = "unknown", [SMTP_VERB_HELO] = "helo",
	[SMTP_VERB_EHLO] = "ehlo",       [SMTP_VERB_MAIL] = "mail",
	[SMTP_VERB_RCPT] = "rcpt",       [SMTP_VERB_DATA] = "data",
	[SMTP_VERB_BDAT] = "bdat",       [SMTP_VERB_RSET] = "rset",
	[SMTP_VERB_NOOP] = "noop",       [SMTP_VERB_QUIT] = "quit",
	[SMTP_VERB_VRFY] = "vrfy",       [SMTP_VERB_HELP] = "help",
	[SMTP_VERB_EXPN] = "expn",       [SMTP_VERB_TURN] = "turn",
	[SMTP_VERB_ETRN] = "etrn",       [SMTP_VERB_STARTTLS] = "starttls",
	[SMTP_VERB_AUTH] = "auth",
};

const char *smtp_verb_name(enum smtp_verb v)
{
	if ((unsigned)v >= SMTP_VERB_COUNT)
		return "unknown";
	return verb_names[v];
}

/* Four bytes at p, ASCII letters folded to lower case by setting bit 5.
 * Exact for the all-letter verb words: only 'A'-'Z' and 'a'-'z' fold onto
 * 'a'-'z'. */
static inline uint32_t load_folded_word(const uint8_t *p)
{
	return VERB_WORD(p[0], p[1], p[2], p[3]) | 0x20202020u;
}

/* True when none of the eight bytes in w is a control byte, DEL or >= 0x80,
 * i.e. every byte is in 0x20..0x7e and so of class C_TEXT. */
static inline bool word_is_plain_text(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ull;
	const uint64_t highs = 0x8080808080808080ull;
	uint64_t below_space = (w - ones * 0x20) & ~w & highs;
	uint64_t above_tilde = ((w + ones * (0x7f - 0x7e)) | w) & highs;
	return (below_space | above_tilde) == 0;
}

/* Classifies the verb of a complete line (text without terminator) and sets
 * verb, verb_text and arg. A known verb must be followed by SP or the end of
 * the line; anything else is SMTP_VERB_UNKNOWN with the first word as
 * verb_text. */
static void split_verb(struct smtp_line *out)
{
	const uint8_t *t = out->text.ptr;
	size_t len = out->text.len;
	size_t verb_len = 0;

	out->verb = SMTP_VERB_UNKNOWN;
	if (len >= 4) {
		uint32_t word = load_folded_word(t);
		for (size_t i = 0; i < RMX_ARRAY_LEN(verb_table); i++) {
			if (verb_table[i].word != word)
				continue;
			size_t want = 4;
			if (verb_table[i].verb == SMTP_VERB_STARTTLS) {
				if (len < 8 || load_folded_word(t + 4) != STARTTLS_TAIL_WORD)
					break;
				want = 8;
			}
			if (len == want || t[want] == ' ') {
				out->verb = (enum smtp_verb)verb_table[i].verb;
				verb_len = want;
			}
			break;
		}
	}
	if (out->verb == SMTP_VERB_UNKNOWN) {
		const uint8_t *sp = memchr(t, ' ', len);
		verb_len = sp ? (size_t)(sp - t) : len;
	}
	RMX_ASSERT(verb_len <= len);
	out->verb_text = span_make(t, verb_len);
	if (verb_len < len)
		out->arg = span_make(t + verb_len + 1, len - verb_len - 1);
	else
		out->arg = span_make(t + len, 0);
}

void smtp_lex_scan_init(struct smtp_lex_scan *scan)
{
	RMX_ASSERT(scan != NULL);
	memset(scan, 0, sizeof(*scan));
}

/*
 * Runs the tables over p[i..limit) from *state, raising *flags, and stops
 * after a line end or at limit. Returns the offset reached. Runs of plain
 * text in a body state are stepped over eight bytes at a time.
 */
static size_t scan_bytes(const uint8_t *p, size_t i, size_t limit, unsigned body_state,
			 unsigned *state, unsigned *flags)
{
	unsigned st = *state;
	unsigned fl = *flags;
	while (i < limit) {
		if (st == body_state) {
			while (i + 8 <= limit) {
				uint64_t w;
				memcpy(&w, p + i, sizeof(w));
				if (!word_is_plain_text(w))
					break;
				i += 8;
			}
			if (i == limit)
				break;
		}
		uint8_t step = smtp_next[st][smtp_class[p[i]]];
		i++;
		st = step & 0xfu;
		fl |= step >> 4;
		if (st >= S_END_CRLF)
			break;
	}
	*state = st;
	*flags = fl;
	return i;
}

enum smtp_lex_status smtp_lex_line_resume(struct smtp_lex_scan *scan, const uint8_t *p, size_t n,
					  size_t max_line_bytes, bool bare_lf_ends_line,
					  struct smtp_line *out)
{
	RMX_ASSERT(scan != NULL && out != NULL);
	RMX_ASSERT(p != NULL || n == 0);
	RMX_ASSERT(max_line_bytes >= 2 && max_line_bytes <= UINT16_MAX);

	memset(out, 0, sizeof(*out));
	out->text = span_make(p, 0);
	out->verb_text = out->text;
	out->arg = out->text;

	const size_t limit = RMX_MIN(n, max_line_bytes);
	const unsigned body_state = bare_lf_ends_line ? S_LAX : S_LINE;
	size_t from = scan->scanned_bytes;
	unsigned state = body_state;
	unsigned flags = 0;
	if (from != 0) {
		/* The carried partial line comes first again: resume after it.
		 * It stopped short of both n and the bound last time, in a
		 * state of this mode that had not ended the line. */
		RMX_ASSERT(from < limit || (from == limit && n < max_line_bytes));
		RMX_ASSERT(scan->state == body_state || scan->state == body_state + 1);
		state = scan->state;
		flags = scan->flags;
	}

	size_t i = scan_bytes(p, from, limit, body_state, &state, &flags);
	scan->examined_bytes += (uint32_t)(i - from);

	out->flags = flags;
	if (state == S_END_CRLF || state == S_END_LF) {
		size_t terminator = state == S_END_CRLF ? 2 : 1;
		RMX_ASSERT(i >= terminator && i <= limit);
		scan->scanned_bytes = 0;
		out->consumed = i;
		out->text = span_make(p, i - terminator);
		split_verb(out);
		return SMTP_LEX_LINE;
	}
	RMX_ASSERT(i == limit);
	if (n >= max_line_bytes) {
		scan->scanned_bytes = 0;
		out->consumed = max_line_bytes;
		return SMTP_LEX_TOO_LONG;
	}
	RMX_ASSERT(i <= UINT16_MAX);
	scan->scanned_bytes = (uint16_t)i;
	scan->state = (uint8_t)state;
	scan->flags = (uint8_t)flags;
	return SMTP_LEX_INCOMPLETE;
}

enum smtp_lex_status smtp_lex_line(const uint8_t *p, size_t n, size_t max_line_bytes,
				   bool bare_lf_ends_line, struct smtp_line *out)
{
	struct smtp_lex_scan scan;
	smtp_lex_scan_init(&scan);
	return smtp_lex_line_resume(&scan, p, n, max_line_bytes, bare_lf_ends_line, out);
}
