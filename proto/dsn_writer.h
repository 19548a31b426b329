/*
 * dsn_writer.h - what proto/dsn writes a delivery status notification
 * with: a bounded line writer for RFC 5322 / MIME text in DATA wire form,
 * the rules that make text from clients and upstreams safe to write, and
 * the copying of the original's header section into the third part.
 *
 * Pure: no syscalls, no clock, no allocation; the writer writes into the
 * caller's buffer and reads only the caller's spans. The writer counts
 * everything it would write and writes only what fits, so a dry run (buf
 * NULL, cap 0) gives the length a real run writes.
 */
#ifndef RINGMX_DSN_WRITER_H
#define RINGMX_DSN_WRITER_H

#include "../common/base.h"
#include "dsn.h"

/* Every line it ends is CRLF-terminated and at most DSN_LINE_MAX_BYTES on
 * the wire (asserted: the callers' own text); a '.' opening a line is
 * doubled. Start one as { buf, cap, 0, 0 }. */
struct dsn_writer {
	uint8_t *buf;
	size_t cap;
	size_t len; /* bytes produced so far, whether they fitted or not */
	size_t col; /* wire bytes on the current line */
};

/* Line content: p[0..n) holds no CR or LF (asserted). */
void dsn_put_text(struct dsn_writer *w, const uint8_t *p, size_t n);
void dsn_put_str(struct dsn_writer *w, const char *s);
/* Ends the line. */
void dsn_put_eol(struct dsn_writer *w);
/* s, then the end of the line. */
void dsn_put_line(struct dsn_writer *w, const char *s);

/*
 * Writes p[0..n), one line of safe text (no CR/LF, no runs of spaces, no
 * space at either end), from the current column, breaking at spaces to stay
 * within DSN_FOLD_WIDTH_BYTES where a space allows it and within
 * DSN_LINE_MAX_BYTES always (a word longer than that is cut).
 * fold: a header field. A break leaves the space to open the next line, so
 * unfolding (RFC 5322 2.2.3) gives the text back; a cut word's tail is
 * opened with an added space. !fold: body text; the space at a break is
 * dropped and each further line starts with indent.
 */
void dsn_put_wrapped(struct dsn_writer *w, const uint8_t *p, size_t n, bool fold,
		     const char *indent);

/* t (0..RFC5322_DATE_UNIX_MAX) as an RFC 5322 date in UTC. */
void dsn_put_date(struct dsn_writer *w, int64_t t);

/* ---- text from clients and upstreams, made safe ---- */

/* Room for one composed line: "<address>: host <host> said: <diagnostic>". */
#define DSN_TEXT_BUF_BYTES 2048
_Static_assert(DSN_TEXT_BUF_BYTES >= DSN_ADDRESS_MAX_BYTES + DSN_HOST_MAX_BYTES +
				 DSN_DIAGNOSTIC_MAX_BYTES + 32,
	       "a recipient's line of explanation fits the compose buffer");

/* A line composed before it is written; start with len = 0. */
struct dsn_text_buf {
	size_t len;
	uint8_t bytes[DSN_TEXT_BUF_BYTES];
};

enum dsn_safe_mode {
	/* Printable ASCII in one line: whitespace runs become one space, other
	 * controls '?', well-formed UTF-8 "\x{HEX}" (RFC 6533's
	 * EmbeddedUnicodeChar), other bytes '?'. No space at either end. */
	DSN_SAFE_TEXT,
	/* RFC 6533 utf-8-addr-unitext: QCHARs and well-formed UTF-8 as they
	 * are; every other ASCII byte (space, controls, '+', '=', '\')
	 * "\x{HH}"; a malformed byte "\x{FFFD}". */
	DSN_SAFE_UNITEXT,
	/* Printable ASCII and well-formed UTF-8 as they are, else '?' (a
	 * header of an SMTPUTF8 message). */
	DSN_SAFE_UTF8,
	/* A host name or address literal: letters, digits and ".-_[]:". */
	DSN_SAFE_HOST,
	/* A Message-ID token: letters, digits, '-'; anything else '_'. */
	DSN_SAFE_ATOM,
};

/*
 * Appends s made safe for mode to t, at most max_bytes of it; a cut one
 * ends in "...". DSN_SAFE_TEXT leaves no space at either end of what it
 * adds. max_bytes is 4 or more and fits t (asserted).
 */
void dsn_text_append_safe(struct dsn_text_buf *t, struct span s, enum dsn_safe_mode mode,
			  size_t max_bytes);

/* Appends our own text s, which fits t (asserted). */
void dsn_text_append(struct dsn_text_buf *t, const char *s);

/* Writes s made safe for mode, at most max_bytes of it (see above). */
void dsn_put_safe(struct dsn_writer *w, struct span s, enum dsn_safe_mode mode,
		  size_t max_bytes);

/* True when s holds a byte above 0x7f. */
bool dsn_has_8bit(struct span s);

/* ---- the original's header section ---- */

/* How much of the original's header section part 3 returns. */
struct dsn_headers_plan {
	size_t end;      /* the original's bytes [0..end) are returned */
	bool utf8_only;  /* message/global-headers: only UTF-8 8-bit bytes */
	bool eight_bit;  /* what part 3 writes of them holds a byte above 0x7f */
};

/*
 * Plans part 3 for original (DATA wire form): the header section ends at
 * the first empty line; what is returned stops at the last whole line that
 * keeps part 3 (its final empty line included) within
 * DSN_HEADERS_MAX_BYTES. utf8_only: the part is message/global-headers.
 */
struct dsn_headers_plan dsn_headers_plan_make(struct span original, bool utf8_only);

/*
 * Writes the planned lines, unstuffed and then stuffed again by the writer,
 * each made safe: no control byte but HT (NUL, controls and DEL '?', a bare
 * CR a space), 8-bit bytes kept (only as well-formed UTF-8 when utf8_only),
 * a line too long for DSN_LINE_MAX_BYTES folded. Writes exactly what plan
 * declared (asserted).
 */
void dsn_put_headers(struct dsn_writer *w, struct span original,
		     const struct dsn_headers_plan *plan);

#endif
