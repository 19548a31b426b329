/*
 * dsn_writer.c - the writer proto/dsn builds a DSN with: bounded RFC 5322 /
 * MIME lines in DATA wire form, client and upstream text made safe (RFC
 * 6533 escapes where the report needs them), and the original's header
 * section copied into part 3 (text/rfc822-headers or message/global-headers).
 *
 * Invariants:
 *  - every byte goes through w_raw, which counts what it would write and
 *    writes only what fits, so a dry run and a real run agree on the length
 *    and nothing lands at or past buf + cap;
 *  - every line ends in CRLF, holds no other CR or LF, and is at most
 *    DSN_LINE_MAX_BYTES long on the wire; a '.' opening a line is doubled
 *    here, so no caller can forget it;
 *  - safe text is bounded, one line, printable ASCII (or well-formed UTF-8
 *    where RFC 6533 allows it); the original's header lines keep their
 *    bytes, but no control byte other than HT, and 8-bit bytes only as
 *    planned (and only UTF-8 in the global type).
 */
#include "dsn_writer.h"

#include <string.h>

#include "rfc5322_date.h"

/* ---- the writer ---------------------------------------------------------- */

/* Appends bytes that fit; counts them either way. Once a piece does not fit,
 * no later piece does (len only grows), so nothing is written out of order. */
static void w_raw(struct dsn_writer *w, const void *p, size_t n)
{
	if (n > 0 && n <= w->cap && w->len <= w->cap - n)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
}

/* Appends line content: no CR or LF in it; a '.' opening a line is doubled. */
void dsn_put_text(struct dsn_writer *w, const uint8_t *p, size_t n)
{
	if (n == 0)
		return;
	RMX_ASSERT(memchr(p, '\r', n) == NULL && memchr(p, '\n', n) == NULL);
	if (w->col == 0 && p[0] == '.') {
		w_raw(w, ".", 1);
		w->col++;
	}
	w_raw(w, p, n);
	w->col += n;
}

void dsn_put_str(struct dsn_writer *w, const char *s)
{
	dsn_put_text(w, (const uint8_t *)s, strlen(s));
}

void dsn_put_eol(struct dsn_writer *w)
{
	RMX_ASSERT(w->col <= DSN_LINE_MAX_BYTES);
	w_raw(w, "\r\n", 2);
	w->col = 0;
}

void dsn_put_line(struct dsn_writer *w, const char *s)
{
	dsn_put_str(w, s);
	dsn_put_eol(w);
}

/* Breaks as dsn_writer.h says; the loop writes one line per turn. */
void dsn_put_wrapped(struct dsn_writer *w, const uint8_t *p, size_t n, bool fold,
		     const char *indent)
{
	RMX_ASSERT(w->col > 0 || n == 0 || p[0] != '.');
	RMX_ASSERT(fold || strlen(indent) > 0);
	while (n > 0) {
		size_t room = w->col < DSN_FOLD_WIDTH_BYTES ? DSN_FOLD_WIDTH_BYTES - w->col : 0;
		if (n <= room) {
			dsn_put_text(w, p, n);
			return;
		}
		size_t brk = 0;
		for (size_t i = RMX_MIN(room, n - 1); i >= 1; i--) {
			if (p[i] == ' ') {
				brk = i;
				break;
			}
		}
		if (brk == 0) {
			/* No space within the width: the first one within the
			 * hard limit, else cut there. */
			RMX_ASSERT(w->col < DSN_LINE_MAX_BYTES);
			size_t hard = DSN_LINE_MAX_BYTES - w->col;
			for (size_t i = 1; i < n && i <= hard; i++) {
				if (p[i] == ' ') {
					brk = i;
					break;
				}
			}
			if (brk == 0)
				brk = RMX_MIN(hard, n);
		}
		dsn_put_text(w, p, brk);
		p += brk;
		n -= brk;
		if (n == 0)
			return;
		dsn_put_eol(w);
		if (fold) {
			if (p[0] != ' ')
				dsn_put_str(w, " ");
		} else {
			dsn_put_str(w, indent);
			if (p[0] == ' ') {
				p++;
				n--;
			}
		}
	}
}

/* ---- making client text safe ------------------------------------------ */

/*
 * Decodes one well-formed UTF-8 sequence of two to four bytes at p[0..n)
 * (RFC 3629: shortest form, no surrogates, at most U+10FFFF). Returns its
 * length and stores the code point, or returns 0.
 */
static size_t utf8_decode(const uint8_t *p, size_t n, uint32_t *cp)
{
	uint8_t lead = p[0];
	size_t len;
	uint32_t v, min;
	if (lead >= 0xc2 && lead <= 0xdf) {
		len = 2, v = lead & 0x1fu, min = 0x80;
	} else if (lead >= 0xe0 && lead <= 0xef) {
		len = 3, v = lead & 0x0fu, min = 0x800;
	} else if (lead >= 0xf0 && lead <= 0xf4) {
		len = 4, v = lead & 0x07u, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (p[i] & 0x3fu);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

/* "\x{HEX}": upper-case hex, at least two digits. Returns its length. */
static size_t escape_code_point(uint32_t cp, uint8_t out[12])
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned digits = 2;
	while (digits < 8 && (cp >> (4 * digits)) != 0)
		digits++;
	size_t n = 0;
	out[n++] = '\\';
	out[n++] = 'x';
	out[n++] = '{';
	for (unsigned i = digits; i > 0; i--)
		out[n++] = (uint8_t)hex[(cp >> (4 * (i - 1))) & 0xf];
	out[n++] = '}';
	return n;
}

static bool is_alnum(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_space_like(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/*
 * What the input at p[0..n) (n >= 1) becomes in mode: writes the safe bytes
 * to out (0 of them for a space DSN_SAFE_TEXT folds into the previous one) and
 * returns how many input bytes that used. prev is the last byte written.
 */
static size_t safe_piece(enum dsn_safe_mode mode, const uint8_t *p, size_t n, uint8_t prev,
			 uint8_t out[12], size_t *out_len)
{
	uint8_t c = p[0];
	uint32_t cp = 0;
	size_t seq = c >= 0x80 ? utf8_decode(p, n, &cp) : 0;
	*out_len = 1;
	out[0] = '?';
	switch (mode) {
	case DSN_SAFE_TEXT:
		if (is_space_like(c)) {
			out[0] = ' ';
			*out_len = prev == ' ' ? 0 : 1;
		} else if (c > 0x20 && c < 0x7f) {
			out[0] = c;
		} else if (seq > 0) {
			*out_len = escape_code_point(cp, out);
			return seq;
		}
		return 1;
	case DSN_SAFE_UNITEXT:
		if (c > 0x20 && c < 0x7f && c != '+' && c != '=' && c != '\\') {
			out[0] = c;
		} else if (c < 0x80) {
			*out_len = escape_code_point(c, out);
		} else if (seq > 0) {
			memcpy(out, p, seq);
			*out_len = seq;
			return seq;
		} else {
			*out_len = escape_code_point(0xfffd, out);
		}
		return 1;
	case DSN_SAFE_UTF8:
		if (c >= 0x20 && c < 0x7f) {
			out[0] = c;
		} else if (seq > 0) {
			memcpy(out, p, seq);
			*out_len = seq;
			return seq;
		}
		return 1;
	case DSN_SAFE_HOST:
		if (is_alnum(c) || c == '.' || c == '-' || c == '_' || c == '[' || c == ']' ||
		    c == ':')
			out[0] = c;
		return 1;
	case DSN_SAFE_ATOM:
		out[0] = is_alnum(c) || c == '-' ? c : '_';
		return 1;
	}
	RMX_ASSERT(!"unknown dsn_safe_mode");
	return 1;
}

void dsn_text_append_safe(struct dsn_text_buf *t, struct span s, enum dsn_safe_mode mode,
			  size_t max_bytes)
{
	RMX_ASSERT(max_bytes >= 4 && max_bytes <= sizeof t->bytes - t->len);
	size_t start = t->len;
	size_t limit = start + max_bytes - 3; /* room kept for "..." */
	for (size_t i = 0; i < s.len;) {
		uint8_t piece[12];
		size_t piece_len;
		uint8_t prev = t->len > start ? t->bytes[t->len - 1] : ' ';
		size_t used = safe_piece(mode, s.ptr + i, s.len - i, prev, piece, &piece_len);
		if (t->len + piece_len > limit) {
			memcpy(t->bytes + t->len, "...", 3);
			t->len += 3;
			return;
		}
		memcpy(t->bytes + t->len, piece, piece_len);
		t->len += piece_len;
		i += used;
	}
	if (mode == DSN_SAFE_TEXT && t->len > start && t->bytes[t->len - 1] == ' ')
		t->len--;
}

void dsn_text_append(struct dsn_text_buf *t, const char *s)
{
	size_t n = strlen(s);
	RMX_ASSERT(n <= sizeof t->bytes - t->len);
	memcpy(t->bytes + t->len, s, n);
	t->len += n;
}

void dsn_put_safe(struct dsn_writer *w, struct span s, enum dsn_safe_mode mode,
		  size_t max_bytes)
{
	struct dsn_text_buf t;
	t.len = 0;
	dsn_text_append_safe(&t, s, mode, max_bytes);
	dsn_put_text(w, t.bytes, t.len);
}

bool dsn_has_8bit(struct span s)
{
	for (size_t i = 0; i < s.len; i++) {
		if (s.ptr[i] >= 0x80)
			return true;
	}
	return false;
}

/* ---- dates --------------------------------------------------------------- */

void dsn_put_date(struct dsn_writer *w, int64_t t)
{
	char date[RFC5322_DATE_BYTES];
	rfc5322_date_format(t, date);
	dsn_put_text(w, (const uint8_t *)date, sizeof date);
}

/* ---- the original's header section --------------------------------------- */

/*
 * The next line of the original from *pos: its bytes without the line end
 * and without a stuffing dot (the writer puts that back). A last line
 * without LF counts. Returns false at the end.
 */
static bool next_line(struct span original, size_t *pos, struct span *line)
{
	if (*pos >= original.len)
		return false;
	const uint8_t *start = original.ptr + *pos;
	size_t rest = original.len - *pos;
	const uint8_t *lf = memchr(start, '\n', rest);
	size_t len = lf != NULL ? (size_t)(lf - start) : rest;
	*pos += lf != NULL ? len + 1 : len;
	if (len > 0 && start[len - 1] == '\r')
		len--;
	if (len > 0 && start[0] == '.') {
		start++;
		len--;
	}
	*line = span_make(start, len);
	return true;
}

/*
 * How many bytes at p[0..n) (n >= 1) part 3 keeps as they are: HT and
 * printable ASCII, a well-formed UTF-8 sequence whole, and any other 8-bit
 * byte unless utf8_only. 0: the byte is replaced.
 */
static size_t header_kept_bytes(const uint8_t *p, size_t n, bool utf8_only)
{
	uint8_t c = p[0];
	if (c == '\t' || (c >= 0x20 && c < 0x7f))
		return 1;
	if (c < 0x80)
		return 0;
	uint32_t cp;
	size_t seq = utf8_decode(p, n, &cp);
	if (seq > 0)
		return seq;
	return utf8_only ? 0 : 1;
}

/*
 * Writes header line content p[0..n) as part 3 may carry it. Field text is
 * printable ASCII and WSP (RFC 5322 2.2; we never write its obsolete
 * controls), and NUL is legal in no MIME body (RFC 2045 2.7, 2.8): a NUL,
 * another control byte or DEL becomes '?', a bare CR (its line end is
 * gone) a space. 8-bit bytes stay where part 3 declares 8bit; in
 * message/global-headers (utf8_only) they must be UTF-8 (RFC 6532 3.2), so
 * a byte of no well-formed sequence becomes '?'. Every byte maps to one, so
 * lengths and cuts are those of the input. Sets *eight_bit when it writes
 * an 8-bit byte.
 */
static void w_header_text(struct dsn_writer *w, const uint8_t *p, size_t n, bool utf8_only,
			  bool *eight_bit)
{
	size_t run = 0; /* p[0..run) is kept as it is */
	while (run < n) {
		size_t kept = header_kept_bytes(p + run, n - run, utf8_only);
		if (kept > 0) {
			if (p[run] >= 0x80)
				*eight_bit = true;
			run += kept;
			continue;
		}
		dsn_put_text(w, p, run);
		dsn_put_str(w, p[run] == '\r' ? " " : "?");
		p += run + 1;
		n -= run + 1;
		run = 0;
	}
	dsn_put_text(w, p, run);
}

/*
 * Writes one non-empty line of the original's header section, its bytes
 * made safe by w_header_text; a line too long for DSN_LINE_MAX_BYTES is
 * cut into pieces, each after the first opened by a space (a folded header
 * line). A cut does not split a UTF-8 sequence.
 */
static void w_header_line(struct dsn_writer *w, struct span line, bool utf8_only,
			  bool *eight_bit)
{
	RMX_ASSERT(w->col == 0 && line.len > 0);
	const uint8_t *p = line.ptr;
	size_t n = line.len;
	bool first = true;
	while (n > 0) {
		size_t room = DSN_LINE_MAX_BYTES - (first ? (p[0] == '.' ? 1 : 0) : 1);
		size_t take = n;
		if (take > room) {
			take = room;
			while (take > room - 3 && (p[take] & 0xc0) == 0x80)
				take--;
		}
		if (!first)
			dsn_put_str(w, " ");
		w_header_text(w, p, take, utf8_only, eight_bit);
		dsn_put_eol(w);
		p += take;
		n -= take;
		first = false;
	}
}

struct dsn_headers_plan dsn_headers_plan_make(struct span original, bool utf8_only)
{
	struct dsn_headers_plan plan = { 0, utf8_only, false };
	size_t pos = 0;
	size_t total_bytes = 2;
	struct span line;
	while (next_line(original, &pos, &line) && line.len > 0) {
		struct dsn_writer probe = { NULL, 0, 0, 0 };
		bool line_8bit = false;
		w_header_line(&probe, line, utf8_only, &line_8bit);
		if (probe.len > DSN_HEADERS_MAX_BYTES - total_bytes)
			break;
		total_bytes += probe.len;
		plan.end = pos;
		plan.eight_bit = plan.eight_bit || line_8bit;
	}
	return plan;
}

void dsn_put_headers(struct dsn_writer *w, struct span original,
		     const struct dsn_headers_plan *plan)
{
	size_t pos = 0;
	struct span line;
	struct span returned = span_make(original.ptr, plan->end);
	bool eight_bit = false;
	while (next_line(returned, &pos, &line)) {
		RMX_ASSERT(line.len > 0);
		w_header_line(w, line, plan->utf8_only, &eight_bit);
	}
	/* What is written is what was planned, and declared. */
	RMX_ASSERT(eight_bit == plan->eight_bit);
}

