/*
 * dsn.c - builds a delivery status notification (RFC 3464 in an RFC 6522
 * multipart/report; RFC 6533 when addresses are internationalised).
 *
 * Sits after the forwarder: when recipients fail for good or stay delayed,
 * it hands their outcomes and the stored original to dsn_build(), stores the
 * result as a new message from <> and forwards it like any other. The output
 * is DATA wire form, like every stored body (DESIGN.md rule 5).
 *
 * Invariants:
 *  - every byte goes through one writer that counts what it would write and
 *    writes only what fits, so a dry run and a real run agree on the length
 *    and nothing lands at or past buf + cap;
 *  - every line ends in CRLF, holds no other CR or LF, and is at most
 *    DSN_LINE_MAX_BYTES long on the wire; a '.' opening a line is doubled
 *    by the writer itself, so no caller can forget it;
 *  - text from clients and upstreams (addresses, diagnostics, host names)
 *    is made safe before it is written: bounded, one line, printable ASCII
 *    (or well-formed UTF-8 where RFC 6533 allows it); the original's header
 *    lines keep their bytes, but no control byte other than HT, and 8-bit
 *    bytes only under a declared 8bit (and only UTF-8 in the global type);
 *  - the MIME boundary occurs in no input span, so no line of any part can
 *    be taken for a delimiter. Generated text never contains "=_".
 */
#include "dsn.h"
#include "rfc5322_date.h"

#include <string.h>

/* ---- the writer ---------------------------------------------------------- */

struct dsn_writer {
	uint8_t *buf;
	size_t cap;
	size_t len; /* bytes produced so far, whether they fitted or not */
	size_t col; /* wire bytes on the current line */
};

/* Appends bytes that fit; counts them either way. Once a piece does not fit,
 * no later piece does (len only grows), so nothing is written out of order. */
static void w_raw(struct dsn_writer *w, const void *p, size_t n)
{
	if (n > 0 && n <= w->cap && w->len <= w->cap - n)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
}

/* Appends line content: no CR or LF in it; a '.' opening a line is doubled. */
static void w_text(struct dsn_writer *w, const uint8_t *p, size_t n)
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

static void w_str(struct dsn_writer *w, const char *s)
{
	w_text(w, (const uint8_t *)s, strlen(s));
}

static void w_eol(struct dsn_writer *w)
{
	RMX_ASSERT(w->col <= DSN_LINE_MAX_BYTES);
	w_raw(w, "\r\n", 2);
	w->col = 0;
}

static void w_line(struct dsn_writer *w, const char *s)
{
	w_str(w, s);
	w_eol(w);
}

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
static void w_wrapped(struct dsn_writer *w, const uint8_t *p, size_t n, bool fold,
		      const char *indent)
{
	RMX_ASSERT(w->col > 0 || n == 0 || p[0] != '.');
	RMX_ASSERT(fold || strlen(indent) > 0);
	while (n > 0) {
		size_t room = w->col < DSN_FOLD_WIDTH_BYTES ? DSN_FOLD_WIDTH_BYTES - w->col : 0;
		if (n <= room) {
			w_text(w, p, n);
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
		w_text(w, p, brk);
		p += brk;
		n -= brk;
		if (n == 0)
			return;
		w_eol(w);
		if (fold) {
			if (p[0] != ' ')
				w_str(w, " ");
		} else {
			w_str(w, indent);
			if (p[0] == ' ') {
				p++;
				n--;
			}
		}
	}
}

/* ---- making client text safe ------------------------------------------ */

/* Room for one composed line: "<address>: host <host> said: <diagnostic>". */
#define TEXT_BUF_BYTES 2048
_Static_assert(TEXT_BUF_BYTES >= DSN_ADDRESS_MAX_BYTES + DSN_HOST_MAX_BYTES +
				 DSN_DIAGNOSTIC_MAX_BYTES + 32,
	       "a recipient's line of explanation fits the compose buffer");

struct text_buf {
	size_t len;
	uint8_t bytes[TEXT_BUF_BYTES];
};

enum safe_mode {
	/* Printable ASCII in one line: whitespace runs become one space, other
	 * controls '?', well-formed UTF-8 "\x{HEX}" (RFC 6533's
	 * EmbeddedUnicodeChar), other bytes '?'. No space at either end. */
	SAFE_TEXT,
	/* RFC 6533 utf-8-addr-unitext: QCHARs and well-formed UTF-8 as they
	 * are; every other ASCII byte (space, controls, '+', '=', '\')
	 * "\x{HH}"; a malformed byte "\x{FFFD}". */
	SAFE_UNITEXT,
	/* Printable ASCII and well-formed UTF-8 as they are, else '?' (a
	 * header of an SMTPUTF8 message). */
	SAFE_UTF8,
	/* A host name or address literal: letters, digits and ".-_[]:". */
	SAFE_HOST,
	/* A Message-ID token: letters, digits, '-'; anything else '_'. */
	SAFE_ATOM,
};

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
 * to out (0 of them for a space SAFE_TEXT folds into the previous one) and
 * returns how many input bytes that used. prev is the last byte written.
 */
static size_t safe_piece(enum safe_mode mode, const uint8_t *p, size_t n, uint8_t prev,
			 uint8_t out[12], size_t *out_len)
{
	uint8_t c = p[0];
	uint32_t cp = 0;
	size_t seq = c >= 0x80 ? utf8_decode(p, n, &cp) : 0;
	*out_len = 1;
	out[0] = '?';
	switch (mode) {
	case SAFE_TEXT:
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
	case SAFE_UNITEXT:
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
	case SAFE_UTF8:
		if (c >= 0x20 && c < 0x7f) {
			out[0] = c;
		} else if (seq > 0) {
			memcpy(out, p, seq);
			*out_len = seq;
			return seq;
		}
		return 1;
	case SAFE_HOST:
		if (is_alnum(c) || c == '.' || c == '-' || c == '_' || c == '[' || c == ']' ||
		    c == ':')
			out[0] = c;
		return 1;
	case SAFE_ATOM:
		out[0] = is_alnum(c) || c == '-' ? c : '_';
		return 1;
	}
	RMX_ASSERT(!"unknown safe_mode");
	return 1;
}

/*
 * Appends s made safe for mode to t, at most max_bytes of it; a cut one
 * ends in "...". SAFE_TEXT leaves no space at either end of what it adds.
 */
static void text_append_safe(struct text_buf *t, struct span s, enum safe_mode mode,
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
	if (mode == SAFE_TEXT && t->len > start && t->bytes[t->len - 1] == ' ')
		t->len--;
}

static void text_append(struct text_buf *t, const char *s)
{
	size_t n = strlen(s);
	RMX_ASSERT(n <= sizeof t->bytes - t->len);
	memcpy(t->bytes + t->len, s, n);
	t->len += n;
}

static void w_safe(struct dsn_writer *w, struct span s, enum safe_mode mode, size_t max_bytes)
{
	struct text_buf t;
	t.len = 0;
	text_append_safe(&t, s, mode, max_bytes);
	w_text(w, t.bytes, t.len);
}

static bool has_8bit(struct span s)
{
	for (size_t i = 0; i < s.len; i++) {
		if (s.ptr[i] >= 0x80)
			return true;
	}
	return false;
}

/* ---- dates --------------------------------------------------------------- */

static void w_date(struct dsn_writer *w, int64_t t)
{
	char date[RFC5322_DATE_BYTES];
	rfc5322_date_format(t, date);
	w_text(w, (const uint8_t *)date, sizeof date);
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
		w_text(w, p, run);
		w_str(w, p[run] == '\r' ? " " : "?");
		p += run + 1;
		n -= run + 1;
		run = 0;
	}
	w_text(w, p, run);
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
			w_str(w, " ");
		w_header_text(w, p, take, utf8_only, eight_bit);
		w_eol(w);
		p += take;
		n -= take;
		first = false;
	}
}

/* How much of the original's header section part 3 returns. */
struct headers_plan {
	size_t end;      /* the original's bytes [0..end) are returned */
	bool utf8_only;  /* message/global-headers: see w_header_text */
	bool eight_bit;  /* what part 3 writes of them holds a byte above 0x7f */
};

/* The header section ends at the first empty line; what is returned stops
 * at the last whole line that keeps part 3 (its final empty line included)
 * within DSN_HEADERS_MAX_BYTES. */
static struct headers_plan plan_headers(struct span original, bool utf8_only)
{
	struct headers_plan plan = { 0, utf8_only, false };
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

static void w_headers(struct dsn_writer *w, struct span original, const struct headers_plan *plan)
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

/* ---- the MIME boundary --------------------------------------------------- */

/* "=_ringmx_" <queue id> "." <token> [ "." 8 hex digits ] */
#define BOUNDARY_PREFIX "=_ringmx_"
#define BOUNDARY_PART_MAX_BYTES 24
#define BOUNDARY_SUFFIX_BYTES 9
#define BOUNDARY_WINDOW 4096
_Static_assert(sizeof BOUNDARY_PREFIX - 1 + 2 * BOUNDARY_PART_MAX_BYTES + 1 +
			       BOUNDARY_SUFFIX_BYTES <=
		       DSN_BOUNDARY_MAX_BYTES,
	       "the longest boundary is legal (RFC 2046 5.1.1)");

struct boundary {
	size_t len;
	uint8_t bytes[DSN_BOUNDARY_MAX_BYTES];
};

/* Occurrences of the base boundary in the input, and which of the suffixed
 * candidates [window, window + BOUNDARY_WINDOW) they rule out. */
struct boundary_scan {
	const uint8_t *base;
	size_t base_len;
	uint32_t window;
	bool base_seen;
	uint64_t taken[BOUNDARY_WINDOW / 64];
};

static void boundary_append_token(struct boundary *b, struct span s)
{
	size_t start = b->len;
	for (size_t i = 0; i < s.len && b->len - start < BOUNDARY_PART_MAX_BYTES; i++) {
		if (is_alnum(s.ptr[i]))
			b->bytes[b->len++] = s.ptr[i];
	}
	if (b->len == start)
		b->bytes[b->len++] = '0';
}

static int hex_value(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void boundary_scan_span(struct boundary_scan *sc, struct span s)
{
	if (s.len < sc->base_len)
		return;
	const uint8_t *p = s.ptr;
	const uint8_t *end = s.ptr + s.len;
	while ((size_t)(end - p) >= sc->base_len) {
		const uint8_t *hit = memmem(p, (size_t)(end - p), sc->base, sc->base_len);
		if (hit == NULL)
			return;
		sc->base_seen = true;
		p = hit + 1;
		const uint8_t *suffix = hit + sc->base_len;
		if ((size_t)(end - suffix) < BOUNDARY_SUFFIX_BYTES || suffix[0] != '.')
			continue;
		uint32_t v = 0;
		bool hex8 = true;
		for (size_t i = 1; i < BOUNDARY_SUFFIX_BYTES && hex8; i++) {
			int h = hex_value(suffix[i]);
			hex8 = h >= 0;
			v = (v << 4) | (uint32_t)(h & 0xf);
		}
		if (hex8 && v - sc->window < BOUNDARY_WINDOW)
			sc->taken[(v - sc->window) / 64] |= 1ull << ((v - sc->window) % 64);
	}
}

/* Every span whose bytes can reach the message. */
static void boundary_scan_input(struct boundary_scan *sc, const struct dsn_input *in)
{
	memset(sc->taken, 0, sizeof sc->taken);
	boundary_scan_span(sc, in->original);
	boundary_scan_span(sc, in->to);
	boundary_scan_span(sc, in->reporting_mta);
	boundary_scan_span(sc, in->queue_id);
	boundary_scan_span(sc, in->message_id_token);
	for (uint32_t i = 0; i < in->recipient_count; i++) {
		const struct dsn_recipient *r = &in->recipients[i];
		boundary_scan_span(sc, r->address);
		boundary_scan_span(sc, r->status);
		boundary_scan_span(sc, r->remote_mta);
		boundary_scan_span(sc, r->diagnostic);
	}
}

/*
 * The boundary: the base made of the queue id and the token when it occurs
 * in no input; else the base with the first suffix ".%08x" that occurs in
 * none. One occurrence of the base rules out at most one suffix (they have
 * a fixed width), so a window with a free suffix is always found.
 */
static void choose_boundary(const struct dsn_input *in, struct boundary *b)
{
	b->len = 0;
	memcpy(b->bytes, BOUNDARY_PREFIX, sizeof BOUNDARY_PREFIX - 1);
	b->len = sizeof BOUNDARY_PREFIX - 1;
	boundary_append_token(b, in->queue_id);
	b->bytes[b->len++] = '.';
	boundary_append_token(b, in->message_id_token);

	struct boundary_scan sc = { b->bytes, b->len, 0, false, { 0 } };
	boundary_scan_input(&sc, in);
	if (!sc.base_seen)
		return;
	for (;;) {
		for (uint32_t i = 0; i < BOUNDARY_WINDOW; i++) {
			if (sc.taken[i / 64] & (1ull << (i % 64)))
				continue;
			static const char hex[] = "0123456789abcdef";
			uint32_t v = sc.window + i;
			b->bytes[b->len++] = '.';
			for (int d = 7; d >= 0; d--)
				b->bytes[b->len++] = (uint8_t)hex[(v >> (4 * d)) & 0xf];
			RMX_ASSERT(b->len <= DSN_BOUNDARY_MAX_BYTES);
			return;
		}
		RMX_ASSERT(sc.window <= UINT32_MAX - 2 * BOUNDARY_WINDOW);
		sc.window += BOUNDARY_WINDOW;
		boundary_scan_input(&sc, in);
	}
}

static void w_delimiter(struct dsn_writer *w, const struct boundary *b, bool last)
{
	w_str(w, "--");
	w_text(w, b->bytes, b->len);
	if (last)
		w_str(w, "--");
	w_eol(w);
}

/* ---- the three parts ------------------------------------------------------- */

/* What the builder learns about the input before it writes. */
struct dsn_facts {
	bool any_failed;
	bool any_delayed;
	bool to_8bit;
	bool addresses_8bit; /* some recipient's address */
	bool global;         /* RFC 6533 types */
	struct headers_plan headers;
	struct boundary boundary;
};

static const char *action_name(enum dsn_action a)
{
	return a == DSN_ACTION_DELAYED ? "delayed" : "failed";
}

/* An RFC 3463 status code: class "." subject "." detail, "5.123.456" at most. */
struct status_code {
	size_t len;
	uint8_t bytes[9];
};

/*
 * The status for the report: the caller's when it is an RFC 3463 code, with
 * the class set by the action (5 for failed, 4 for delayed: RFC 3464
 * 2.3.4, so a 4xx whose retries ran out reads 5.x.x); else X.0.0.
 */
static struct status_code recipient_status(const struct dsn_recipient *r)
{
	struct status_code code;
	const uint8_t *s = r->status.ptr;
	size_t n = r->status.len;
	size_t dots = 0, run = 0;
	bool ok = n >= 5 && n <= sizeof code.bytes && (s[0] == '2' || s[0] == '4' || s[0] == '5') &&
		  s[1] == '.';
	for (size_t i = 2; ok && i < n; i++) {
		if (s[i] == '.') {
			ok = run > 0 && dots == 0;
			dots++;
			run = 0;
		} else {
			ok = s[i] >= '0' && s[i] <= '9' && ++run <= 3;
		}
	}
	ok = ok && dots == 1 && run > 0;
	if (ok) {
		memcpy(code.bytes, s, n);
		code.len = n;
	} else {
		memcpy(code.bytes, "5.0.0", 5);
		code.len = 5;
	}
	code.bytes[0] = r->action == DSN_ACTION_DELAYED ? '4' : '5';
	return code;
}

/* An SMTP reply starts with a reply code (RFC 5321 4.2); anything else is
 * our own account of a failure. */
static bool looks_like_smtp_reply(struct span diagnostic)
{
	const uint8_t *s = diagnostic.ptr;
	return diagnostic.len >= 3 && s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' &&
	       s[2] >= '0' && s[2] <= '9' && (diagnostic.len == 3 || s[3] == ' ' || s[3] == '-');
}

/* One recipient in the explanation: "<address>: host <remote> said:
 * <diagnostic>", or without a diagnostic "<address>: delivery failed
 * (status 5.4.7), last tried at host <remote>"; wrapped, indented. */
static void w_recipient_explanation(struct dsn_writer *w, const struct dsn_recipient *r)
{
	struct text_buf diagnostic;
	diagnostic.len = 0;
	text_append_safe(&diagnostic, r->diagnostic, SAFE_TEXT, DSN_DIAGNOSTIC_MAX_BYTES);

	struct text_buf t;
	t.len = 0;
	text_append(&t, "<");
	text_append_safe(&t, r->address, SAFE_TEXT, DSN_ADDRESS_MAX_BYTES);
	text_append(&t, ">: ");
	if (diagnostic.len > 0) {
		if (r->remote_mta.len > 0) {
			text_append(&t, "host ");
			text_append_safe(&t, r->remote_mta, SAFE_HOST, DSN_HOST_MAX_BYTES);
			text_append(&t, " said: ");
		}
		RMX_ASSERT(diagnostic.len <= sizeof t.bytes - t.len);
		memcpy(t.bytes + t.len, diagnostic.bytes, diagnostic.len);
		t.len += diagnostic.len;
	} else {
		struct status_code code = recipient_status(r);
		text_append(&t, r->action == DSN_ACTION_DELAYED ? "not delivered yet (status "
							     : "delivery failed (status ");
		RMX_ASSERT(code.len <= sizeof t.bytes - t.len);
		memcpy(t.bytes + t.len, code.bytes, code.len);
		t.len += code.len;
		text_append(&t, ")");
		if (r->remote_mta.len > 0) {
			text_append(&t, ", last tried at host ");
			text_append_safe(&t, r->remote_mta, SAFE_HOST, DSN_HOST_MAX_BYTES);
		}
	}
	w_wrapped(w, t.bytes, t.len, false, "    ");
	w_eol(w);
}

static void w_part_text(struct dsn_writer *w, const struct dsn_input *in,
			const struct dsn_facts *f)
{
	w_line(w, "Content-Description: Notification");
	w_line(w, "Content-Type: text/plain; charset=us-ascii");
	w_eol(w);
	w_str(w, "This is the mail system at host ");
	w_safe(w, in->reporting_mta, SAFE_HOST, DSN_HOST_MAX_BYTES);
	w_str(w, ".");
	w_eol(w);
	w_eol(w);
	for (int pass = 0; pass < 2; pass++) {
		enum dsn_action action = pass == 0 ? DSN_ACTION_FAILED : DSN_ACTION_DELAYED;
		if (!(action == DSN_ACTION_FAILED ? f->any_failed : f->any_delayed))
			continue;
		if (action == DSN_ACTION_FAILED) {
			w_line(w, "Your message could not be delivered to the recipients below.");
			w_line(w, "The errors are permanent: it will not be tried again for them.");
		} else {
			w_line(w, "Your message has not been delivered yet to the recipients below.");
			w_line(w, "Delivery will be tried again; you need not send it again.");
		}
		w_eol(w);
		for (uint32_t i = 0; i < in->recipient_count; i++) {
			if (in->recipients[i].action == action)
				w_recipient_explanation(w, &in->recipients[i]);
		}
		w_eol(w);
	}
	w_line(w, "The header section of your message is attached below.");
	w_eol(w);
}

static void w_recipient_fields(struct dsn_writer *w, const struct dsn_recipient *r, bool global)
{
	w_eol(w);
	if (global && has_8bit(r->address)) {
		/* RFC 6533 3: the utf-8 address type, raw UTF-8 allowed in a
		 * message/global-delivery-status. */
		w_str(w, "Final-Recipient: utf-8; ");
		w_safe(w, r->address, SAFE_UNITEXT, DSN_ADDRESS_MAX_BYTES);
	} else {
		w_str(w, "Final-Recipient: rfc822; ");
		w_safe(w, r->address, SAFE_TEXT, DSN_ADDRESS_MAX_BYTES);
	}
	w_eol(w);
	w_str(w, "Action: ");
	w_str(w, action_name(r->action));
	w_eol(w);
	struct status_code code = recipient_status(r);
	w_str(w, "Status: ");
	w_text(w, code.bytes, code.len);
	w_eol(w);
	if (r->remote_mta.len > 0) {
		w_str(w, "Remote-MTA: dns; ");
		w_safe(w, r->remote_mta, SAFE_HOST, DSN_HOST_MAX_BYTES);
		w_eol(w);
	}
	if (r->diagnostic.len > 0) {
		struct text_buf t;
		t.len = 0;
		text_append_safe(&t, r->diagnostic, SAFE_TEXT, DSN_DIAGNOSTIC_MAX_BYTES);
		if (t.len > 0) {
			/* RFC 3464 2.3.6: "smtp" for a reply from an SMTP
			 * server; our own words get an X- type. */
			w_str(w, looks_like_smtp_reply(r->diagnostic) ? "Diagnostic-Code: smtp; "
								       : "Diagnostic-Code: X-Ringmx; ");
			w_wrapped(w, t.bytes, t.len, true, "");
			w_eol(w);
		}
	}
	if (r->last_attempt_unix > 0) {
		w_str(w, "Last-Attempt-Date: ");
		w_date(w, r->last_attempt_unix);
		w_eol(w);
	}
}

static void w_part_report(struct dsn_writer *w, const struct dsn_input *in,
			  const struct dsn_facts *f)
{
	w_line(w, "Content-Description: Delivery report");
	w_line(w, f->global ? "Content-Type: message/global-delivery-status"
			    : "Content-Type: message/delivery-status");
	if (f->global && f->addresses_8bit)
		w_line(w, "Content-Transfer-Encoding: 8bit");
	w_eol(w);
	w_str(w, "Reporting-MTA: dns; ");
	w_safe(w, in->reporting_mta, SAFE_HOST, DSN_HOST_MAX_BYTES);
	w_eol(w);
	if (in->queue_id.len > 0) {
		w_str(w, "X-Ringmx-Queue-ID: ");
		w_safe(w, in->queue_id, SAFE_HOST, DSN_TOKEN_MAX_BYTES);
		w_eol(w);
	}
	w_str(w, "Arrival-Date: ");
	w_date(w, in->arrival_unix);
	w_eol(w);
	for (uint32_t i = 0; i < in->recipient_count; i++)
		w_recipient_fields(w, &in->recipients[i], f->global);
	w_eol(w);
}

static void w_part_headers(struct dsn_writer *w, const struct dsn_input *in,
			   const struct dsn_facts *f)
{
	w_line(w, "Content-Description: Undelivered Message Headers");
	/* RFC 6533 6.3: message/global-headers returns UTF-8 header fields. */
	w_line(w, f->global ? "Content-Type: message/global-headers"
			    : "Content-Type: text/rfc822-headers");
	if (f->headers.eight_bit)
		w_line(w, "Content-Transfer-Encoding: 8bit");
	w_eol(w);
	w_headers(w, in->original, &f->headers);
	w_eol(w);
}

static void w_top_headers(struct dsn_writer *w, const struct dsn_input *in,
			  const struct dsn_facts *f)
{
	w_str(w, "From: Mail Delivery System <MAILER-DAEMON@");
	w_safe(w, in->reporting_mta, SAFE_HOST, DSN_HOST_MAX_BYTES);
	w_str(w, ">");
	w_eol(w);
	w_str(w, "To: <");
	w_safe(w, in->to, f->to_8bit ? SAFE_UTF8 : SAFE_TEXT, DSN_ADDRESS_MAX_BYTES);
	w_str(w, ">");
	w_eol(w);
	w_line(w, f->any_failed ? "Subject: Undelivered Mail Returned to Sender"
				: "Subject: Delayed Mail (still being retried)");
	w_str(w, "Date: ");
	w_date(w, in->now_unix);
	w_eol(w);
	w_str(w, "Message-ID: <");
	w_safe(w, in->message_id_token, SAFE_ATOM, DSN_TOKEN_MAX_BYTES);
	w_str(w, "@");
	w_safe(w, in->reporting_mta, SAFE_HOST, DSN_HOST_MAX_BYTES);
	w_str(w, ">");
	w_eol(w);
	/* RFC 3834 5: a notification is an automatic reply; autoresponders
	 * must not answer it. */
	w_line(w, "Auto-Submitted: auto-replied");
	w_line(w, "MIME-Version: 1.0");
	/* RFC 6522 3: report-type names the second part's subtype. */
	w_line(w, f->global ? "Content-Type: multipart/report; report-type=global-delivery-status;"
			    : "Content-Type: multipart/report; report-type=delivery-status;");
	w_str(w, "\tboundary=\"");
	w_text(w, f->boundary.bytes, f->boundary.len);
	w_str(w, "\"");
	w_eol(w);
	if (f->headers.eight_bit || (f->global && f->addresses_8bit))
		w_line(w, "Content-Transfer-Encoding: 8bit");
	w_eol(w);
	w_line(w, "This is a MIME-encapsulated message.");
	w_eol(w);
}

static void gather_facts(const struct dsn_input *in, struct dsn_facts *f)
{
	f->any_failed = false;
	f->any_delayed = false;
	f->addresses_8bit = false;
	for (uint32_t i = 0; i < in->recipient_count; i++) {
		const struct dsn_recipient *r = &in->recipients[i];
		RMX_ASSERT(r->action == DSN_ACTION_FAILED || r->action == DSN_ACTION_DELAYED);
		if (r->action == DSN_ACTION_FAILED)
			f->any_failed = true;
		else
			f->any_delayed = true;
		f->addresses_8bit = f->addresses_8bit || has_8bit(r->address);
	}
	f->to_8bit = has_8bit(in->to);
	f->global = in->smtputf8 || f->to_8bit || f->addresses_8bit;
	f->headers = plan_headers(in->original, f->global);
	choose_boundary(in, &f->boundary);
}

size_t dsn_build(const struct dsn_input *in, uint8_t *buf, size_t cap)
{
	RMX_ASSERT(in != NULL && (buf != NULL || cap == 0));
	RMX_ASSERT(in->to.len > 0);
	RMX_ASSERT(in->reporting_mta.len > 0 && in->message_id_token.len > 0);
	RMX_ASSERT(in->recipient_count > 0 && in->recipients != NULL);
	RMX_ASSERT(in->original.ptr != NULL || in->original.len == 0);

	struct dsn_facts facts;
	gather_facts(in, &facts);

	struct dsn_writer w = { buf, cap, 0, 0 };
	w_top_headers(&w, in, &facts);
	w_delimiter(&w, &facts.boundary, false);
	w_part_text(&w, in, &facts);
	w_delimiter(&w, &facts.boundary, false);
	w_part_report(&w, in, &facts);
	w_delimiter(&w, &facts.boundary, false);
	w_part_headers(&w, in, &facts);
	w_delimiter(&w, &facts.boundary, true);
	RMX_ASSERT(w.col == 0);
	return w.len;
}

unsigned dsn_transport_needs(const struct dsn_input *in, const uint8_t *message, size_t len)
{
	unsigned needs = 0;
	if (has_8bit(in->to))
		needs |= DSN_NEEDS_SMTPUTF8;
	if (has_8bit(span_make(message, len)))
		needs |= DSN_NEEDS_8BITMIME;
	return needs;
}
