/*
 * smtp_client_reply.c - reading an upstream relay's replies (RFC 5321 4.2,
 * enhanced status codes RFC 2034/3463, EHLO keywords) for proto/smtp_client,
 * which feeds each received chunk through smtp_client_reply_read() and acts
 * on the lines it hands back.
 *
 * A 256-entry class table sorts each byte; runs of text are copied at once,
 * and only a bounded prefix of each line (the code, the separator and the
 * text a result keeps) is kept, so memory stays fixed whatever the upstream
 * sends.
 *
 * Invariants:
 *  - line_len counts every byte of the current line and never passes
 *    SMTP_CLIENT_REPLY_LINE_MAX_BYTES - 2; the kept prefix is
 *    min(line_len, sizeof line) bytes;
 *  - a result's text is NUL-terminated printable ASCII, whatever came in;
 *  - nothing an upstream sends reaches an assertion.
 */
#include "smtp_client_reply.h"

#include <string.h>

#include "smtp_cmd.h"

/* Bytes of a line kept: "ddd-" and the text we may report. */
#define LINE_KEEP_BYTES sizeof(((struct smtp_client_reply_reader *)0)->line)
_Static_assert(LINE_KEEP_BYTES >= 4 + SMTP_CLIENT_REPLY_TEXT_MAX_BYTES, "line keeps the text");

const struct smtp_xforward_attr smtp_xforward_attrs[SMTP_XFORWARD_ATTR_COUNT] = {
	{ SMTP_XFORWARD_NAME, "NAME" },
	{ SMTP_XFORWARD_ADDR, "ADDR" },
	{ SMTP_XFORWARD_HELO, "HELO" },
	{ SMTP_XFORWARD_PROTO, "PROTO" },
};

/* ---- results ------------------------------------------------------------------ */

/* Copies text into r->text from offset at, as printable ASCII ('?' for any
 * other byte), truncating at the field's end. Returns the new length. */
static size_t result_text_put(struct smtp_client_result *r, size_t at, const char *p, size_t n)
{
	size_t room = sizeof(r->text) - 1;
	RMX_ASSERT(at <= room);
	size_t i = 0;
	for (; i < n && at < room; i++, at++) {
		uint8_t b = (uint8_t)p[i];
		r->text[at] = (b >= 0x20 && b <= 0x7e) ? (char)b : '?';
	}
	r->text[at] = '\0';
	return at;
}

void smtp_client_result_set(struct smtp_client_result *r, uint16_t code, const char *status,
			    const char *text)
{
	RMX_ASSERT(code >= 200 && code <= 599);
	RMX_ASSERT(strlen(status) < sizeof(r->status));
	r->code = code;
	memcpy(r->status, status, strlen(status) + 1);
	(void)result_text_put(r, 0, text, strlen(text));
}

void smtp_client_result_clear(struct smtp_client_result *r)
{
	r->code = 0;
	r->status[0] = '\0';
	r->text[0] = '\0';
}

static bool is_digit(uint8_t b)
{
	return b >= '0' && b <= '9';
}

/* Length of a run of 1..3 digits at p[0..n), 0 if there is none or 4+. */
static size_t digits_1_3(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && i < 4 && is_digit((uint8_t)p[i]))
		i++;
	return (i >= 1 && i <= 3) ? i : 0;
}

/*
 * Length of an RFC 3463 status "class.subject.detail" at the start of text
 * whose class is the reply code's first digit, followed by a space or the
 * end; 0 when there is none (then one is made up from the code).
 */
static size_t enhanced_status_len(const char *p, size_t n, uint16_t code)
{
	uint8_t cls = (uint8_t)(code / 100);
	if (cls == 3 || n < 5 || (uint8_t)p[0] != (uint8_t)('0' + cls) || p[1] != '.')
		return 0;
	size_t at = 2;
	size_t d = digits_1_3(p + at, n - at);
	if (d == 0 || at + d >= n || p[at + d] != '.')
		return 0;
	at += d + 1;
	d = digits_1_3(p + at, n - at);
	if (d == 0)
		return 0;
	at += d;
	return (at == n || p[at] == ' ') ? at : 0;
}

/* Sets r from the first line of a reply: code, status (given or made up)
 * and the text after the status. */
static void result_from_first_line(struct smtp_client_result *r, uint16_t code,
				   const char *text, size_t n)
{
	r->code = code;
	size_t sl = enhanced_status_len(text, n, code);
	uint8_t cls = (uint8_t)(code / 100);
	if (sl > 0) {
		RMX_ASSERT(sl < sizeof(r->status));
		memcpy(r->status, text, sl);
		r->status[sl] = '\0';
		while (sl < n && text[sl] == ' ')
			sl++;
	} else if (cls == 2 || cls == 4 || cls == 5) {
		r->status[0] = (char)('0' + cls);
		memcpy(r->status + 1, ".0.0", 5);
	} else {
		r->status[0] = '\0';
	}
	(void)result_text_put(r, 0, text + sl, n - sl);
}

/* Appends a continuation line's text (its status repeat dropped) after a
 * space, as far as the field holds. */
static void result_append_line(struct smtp_client_result *r, const char *text, size_t n)
{
	size_t sl = enhanced_status_len(text, n, r->code);
	if (sl > 0 && strncmp(r->status, text, sl) == 0 && r->status[sl] == '\0') {
		while (sl < n && text[sl] == ' ')
			sl++;
		text += sl;
		n -= sl;
	}
	size_t at = strlen(r->text);
	if (n == 0 || at + 1 >= sizeof(r->text) - 1)
		return;
	at = result_text_put(r, at, " ", 1);
	(void)result_text_put(r, at, text, n);
}

/* ---- EHLO keywords ------------------------------------------------------------------ */

struct ehlo_keyword {
	const char *name;
	uint32_t cap;
};

static const struct ehlo_keyword ehlo_keywords[] = {
	{ "PIPELINING", SMTP_CAP_PIPELINING },
	{ "SIZE", SMTP_CAP_SIZE },
	{ "8BITMIME", SMTP_CAP_8BITMIME },
	{ "SMTPUTF8", SMTP_CAP_SMTPUTF8 },
	{ "CHUNKING", SMTP_CAP_CHUNKING },
	{ "BINARYMIME", SMTP_CAP_BINARYMIME },
	{ "XFORWARD", SMTP_CAP_XFORWARD },
	{ "ENHANCEDSTATUSCODES", SMTP_CAP_ENHANCEDSTATUSCODES },
	{ "STARTTLS", SMTP_CAP_STARTTLS },
};

/* Splits the next space-separated word off [*p, end). */
static struct span next_word(const char **p, const char *end)
{
	const char *s = *p;
	while (s < end && *s == ' ')
		s++;
	const char *e = s;
	while (e < end && *e != ' ')
		e++;
	*p = e;
	return span_make(s, (size_t)(e - s));
}

/* SIZE's argument: decimal, saturating; anything else means no limit. */
static uint64_t parse_size(struct span w)
{
	uint64_t v = 0;
	for (size_t i = 0; i < w.len; i++) {
		if (!is_digit(w.ptr[i]))
			return 0;
		uint64_t d = (uint64_t)(w.ptr[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return UINT64_MAX;
		v = v * 10 + d;
	}
	return v;
}

void smtp_client_caps_add_line(struct smtp_client_caps *caps, const char *p, size_t n)
{
	const char *end = p + n;
	struct span kw = next_word(&p, end);
	for (size_t i = 0; i < RMX_ARRAY_LEN(ehlo_keywords); i++) {
		if (!span_eq_nocase(kw, ehlo_keywords[i].name))
			continue;
		caps->caps |= ehlo_keywords[i].cap;
		if (ehlo_keywords[i].cap == SMTP_CAP_SIZE)
			caps->size_max = parse_size(next_word(&p, end));
		if (ehlo_keywords[i].cap == SMTP_CAP_XFORWARD) {
			for (struct span w = next_word(&p, end); w.len > 0; w = next_word(&p, end)) {
				for (size_t a = 0; a < RMX_ARRAY_LEN(smtp_xforward_attrs); a++) {
					if (span_eq_nocase(w, smtp_xforward_attrs[a].name))
						caps->xforward_attrs |= smtp_xforward_attrs[a].bit;
				}
			}
		}
		return;
	}
}

/* ---- the line assembler ---------------------------------------------------------------- */

enum byte_class { BC_TEXT, BC_CR, BC_LF, BC_BAD };

/* RFC 5321 4.2: reply text is HT and 0x20-0x7e; UTF-8 (0x80-0xff) may come
 * from an SMTPUTF8 server and is kept as '?'. Other controls, NUL and DEL
 * mean the stream is not SMTP. */
static const uint8_t reply_byte_class[256] = {
	/* 0x00-0x0f: NUL and controls; HT; LF; CR */
	3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 2, 3, 3, 1, 3, 3,
	/* 0x10-0x1f: controls */
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
	/* 0x20-0x7e: printable; 0x7f: DEL */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3,
	/* 0x80-0xff: UTF-8 bytes */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

void smtp_client_result_add_line(struct smtp_client_result *r,
				  const struct smtp_client_reply_line *line)
{
	if (line->first)
		result_from_first_line(r, line->code, line->text, line->text_len);
	else
		result_append_line(r, line->text, line->text_len);
}

void smtp_client_reply_reader_init(struct smtp_client_reply_reader *r)
{
	memset(r, 0, sizeof(*r));
}

/*
 * A whole line is in (its first LINE_KEEP_BYTES in r->line): checks the
 * code and separator (RFC 5321 4.2.1) and, on a continuation line, that the
 * code repeats; counts the reply's lines.
 */
static enum smtp_client_reply_event line_end(struct smtp_client_reply_reader *r,
					     struct smtp_client_reply_line *line)
{
	size_t len = r->line_len;
	size_t kept = RMX_MIN(len, LINE_KEEP_BYTES);
	const char *l = r->line;
	r->line_len = 0;
	if (len < 3 || !is_digit((uint8_t)l[0]) || !is_digit((uint8_t)l[1]) ||
	    !is_digit((uint8_t)l[2]) || l[0] < '2' || l[0] > '5')
		return SMTP_CLIENT_REPLY_MALFORMED;
	if (len > 3 && l[3] != '-' && l[3] != ' ')
		return SMTP_CLIENT_REPLY_MALFORMED;
	uint16_t code = (uint16_t)((l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0'));
	if (r->multi && code != r->code)
		return SMTP_CLIENT_REPLY_MALFORMED;
	line->code = code;
	line->first = !r->multi;
	line->last = len == 3 || l[3] == ' ';
	line->text = l + RMX_MIN(kept, 4);
	line->text_len = kept - RMX_MIN(kept, 4);
	line->lines_over_max = false;
	r->code = code;
	r->multi = !line->last;
	if (!line->last && ++r->lines >= SMTP_CLIENT_REPLY_LINES_MAX)
		line->lines_over_max = true;
	return SMTP_CLIENT_REPLY_LINE;
}

enum smtp_client_reply_event smtp_client_reply_read(struct smtp_client_reply_reader *r,
						    const uint8_t *p, size_t n, size_t *at,
						    struct smtp_client_reply_line *line)
{
	size_t i = *at;
	RMX_ASSERT(i < n);
	uint8_t cls = reply_byte_class[p[i]];
	if (r->cr) {
		r->cr = false;
		if (cls != BC_LF)
			return SMTP_CLIENT_REPLY_MALFORMED;
	}
	bool begins = r->line_len == 0 && !r->multi && cls != BC_LF;
	if (begins)
		r->lines = 0;
	switch ((enum byte_class)cls) {
	case BC_TEXT: {
		/* The run of text up to the next CR, LF or bad byte. */
		size_t end = i + 1;
		while (end < n && reply_byte_class[p[end]] == BC_TEXT)
			end++;
		size_t run = end - i;
		if (run > SMTP_CLIENT_REPLY_LINE_MAX_BYTES - 2 - r->line_len)
			return SMTP_CLIENT_REPLY_MALFORMED;
		if (r->line_len < LINE_KEEP_BYTES)
			memcpy(r->line + r->line_len, p + i,
			       RMX_MIN(run, LINE_KEEP_BYTES - r->line_len));
		r->line_len += (uint32_t)run;
		*at = end;
		break;
	}
	case BC_CR:
		r->cr = true;
		*at = i + 1;
		break;
	case BC_LF:
		*at = i + 1;
		return line_end(r, line);
	case BC_BAD:
		return SMTP_CLIENT_REPLY_MALFORMED;
	}
	return begins ? SMTP_CLIENT_REPLY_BEGIN : SMTP_CLIENT_REPLY_MORE;
}
