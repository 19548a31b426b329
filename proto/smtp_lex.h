/*
 * smtp_lex.h - command-line lexer: finds one command line in the caller's
 * buffer and splits it into verb and argument, as spans, without copying.
 *
 * Table driven (STYLE.md 4): a 256-entry character-class table and a
 * state x class transition table; the verb is the upper-cased first four
 * bytes compared as one 32-bit word against the verb table in smtp_lex.c.
 * Pure: no I/O, no allocation; safe from any thread.
 */
#ifndef RINGMX_SMTP_LEX_H
#define RINGMX_SMTP_LEX_H

#include "../common/base.h"
#include "../common/bounds.h"

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_HELP,
	SMTP_VERB_EXPN,
	SMTP_VERB_TURN,
	SMTP_VERB_ETRN,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_COUNT
};

/* Facts about one line, as bits of smtp_line.flags. */
enum {
	SMTP_LINE_CTL = 1u << 0,     /* NUL or another control byte (not HT) */
	SMTP_LINE_BARE_CR = 1u << 1, /* a CR not followed by LF */
	SMTP_LINE_BARE_LF = 1u << 2, /* terminated by LF without CR */
	SMTP_LINE_8BIT = 1u << 3,    /* a byte >= 0x80 */
};

enum smtp_lex_status {
	SMTP_LEX_LINE,       /* one whole line: see out */
	SMTP_LEX_INCOMPLETE, /* no line end yet and fewer than max bytes: feed more */
	SMTP_LEX_TOO_LONG,   /* max bytes without a line end: out->consumed says how
				many bytes to discard; keep discarding to the next LF */
};

struct smtp_line {
	struct span text;    /* the line without its terminator */
	size_t consumed;     /* bytes of input this line used, terminator included */
	enum smtp_verb verb; /* SMTP_VERB_UNKNOWN when not in the table */
	struct span verb_text;
	struct span arg;     /* after the verb and its separating SP; may be empty */
	unsigned flags;      /* SMTP_LINE_* */
};

/*
 * How far the current partial line has been scanned, so that a line that
 * arrives in pieces is scanned once, not once per piece. Zeroed (or
 * smtp_lex_scan_init) means "nothing scanned yet". Owned by the caller
 * (the session embeds one); only smtp_lex_line_resume writes it.
 */
struct smtp_lex_scan {
	uint32_t examined_bytes; /* bytes stepped over by every scan since init,
				    modulo 2^32: a measure of work, for tests */
	uint16_t scanned_bytes;  /* of the partial line already examined */
	uint8_t state;           /* lexer state after scanned_bytes */
	uint8_t flags;           /* SMTP_LINE_* raised by those bytes */
};
_Static_assert(SMTP_COMMAND_LINE_MAX_BYTES <= UINT16_MAX, "scanned_bytes holds a whole line");

void smtp_lex_scan_init(struct smtp_lex_scan *scan);

/*
 * Lexes the first line of p[0..n). A line ends at CRLF; with
 * bare_lf_ends_line, also at a lone LF (flagged SMTP_LINE_BARE_LF either
 * way: the caller decides policy). max_line_bytes bounds the line,
 * terminator included (2..UINT16_MAX). The spans point into p.
 *
 * Resumable: when the previous call on scan returned SMTP_LEX_INCOMPLETE,
 * p must start with the same bytes it was given then (the carried partial
 * line, n at least as long), followed by newer input; only the newer bytes
 * are examined. Any other result leaves scan ready for the next line. The
 * caller must not change max_line_bytes or bare_lf_ends_line in the middle
 * of a line.
 */
enum smtp_lex_status smtp_lex_line_resume(struct smtp_lex_scan *scan, const uint8_t *p, size_t n,
					  size_t max_line_bytes, bool bare_lf_ends_line,
					  struct smtp_line *out);

/* smtp_lex_line_resume with a fresh scan: p[0..n) is examined from its start. */
enum smtp_lex_status smtp_lex_line(const uint8_t *p, size_t n, size_t max_line_bytes,
				   bool bare_lf_ends_line, struct smtp_line *out);

/* Name of a verb for logs and metric labels ("ehlo", "mail", ... "unknown"). */
const char *smtp_verb_name(enum smtp_verb v);

#endif
