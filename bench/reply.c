/*
 * reply.c - incremental SMTP reply reader (see reply.h).
 *
 * Between a connection's receive buffer and its transaction state machine in
 * ringmx_bench.c. Invariants: only whole lines (ending in LF; a CR before it
 * is dropped) are consumed; every line of one reply carries the same code;
 * a reply never spans more than BENCH_REPLY_LINES_MAX lines.
 */
#include "reply.h"

#include <string.h>

void reply_reader_init(struct reply_reader *r)
{
	memset(r, 0, sizeof(*r));
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* Case-insensitive: does the EHLO line's text begin with keyword kw (followed
 * by the end of the line or a space)? */
static bool keyword_is(const uint8_t *text, size_t len, const char *kw)
{
	size_t n = strlen(kw);
	if (len < n || (len > n && text[n] != ' '))
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = text[i];
		if (c >= 'a' && c <= 'z')
			c = (uint8_t)(c - 'a' + 'A');
		if (c != (uint8_t)kw[i])
			return false;
	}
	return true;
}

enum reply_status reply_read(struct reply_reader *r, const uint8_t *buf, size_t len,
			     size_t *consumed_bytes)
{
	size_t pos = 0;
	*consumed_bytes = 0;
	while (pos < len) {
		const uint8_t *nl = memchr(buf + pos, '\n', len - pos);
		if (nl == NULL) {
			if (len - pos > BENCH_REPLY_LINE_MAX_BYTES)
				return REPLY_BAD;
			return REPLY_NEED_MORE;
		}
		size_t line_len = (size_t)(nl - (buf + pos));
		size_t next = pos + line_len + 1;
		if (line_len > 0 && buf[pos + line_len - 1] == '\r')
			line_len--;
		const uint8_t *line = buf + pos;
		if (line_len > BENCH_REPLY_LINE_MAX_BYTES || line_len < 3 ||
		    line[0] < '2' || line[0] > '5' || !is_digit(line[1]) || !is_digit(line[2]))
			return REPLY_BAD;
		if (line_len > 3 && line[3] != ' ' && line[3] != '-')
			return REPLY_BAD;
		unsigned code = (unsigned)(line[0] - '0') * 100 + (unsigned)(line[1] - '0') * 10 +
				(unsigned)(line[2] - '0');
		if (r->lines == 0) {
			r->code = code;
			r->keywords = 0;
		} else if (code != r->code) {
			return REPLY_BAD;
		}
		if (r->lines > 0 && line_len > 4 &&
		    keyword_is(line + 4, line_len - 4, "PIPELINING"))
			r->keywords |= REPLY_KW_PIPELINING;
		if (r->lines > 0 && line_len > 4 &&
		    keyword_is(line + 4, line_len - 4, "STARTTLS"))
			r->keywords |= REPLY_KW_STARTTLS;
		r->lines++;
		pos = next;
		*consumed_bytes = pos;
		if (line_len == 3 || line[3] == ' ') {
			r->lines = 0;
			return REPLY_DONE;
		}
		if (r->lines >= BENCH_REPLY_LINES_MAX)
			return REPLY_BAD;
	}
	return REPLY_NEED_MORE;
}
