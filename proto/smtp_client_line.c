/*
 * smtp_client_line.c - writing the ESMTP client's command lines (see
 * smtp_client_line.h): a bounded line builder, whole lines appended to the
 * caller's output buffer, the XFORWARD lines with their xtext values, and
 * the check that a stored address can go between <> on a command line.
 *
 * Where it sits: proto/smtp_client decides which command comes next and
 * builds it with these pieces; core/forward sends what lands in out.
 *
 * Invariants: nothing is written past a line's or out's capacity (the
 * bounds are asserted, and callers size their lines from
 * SMTP_CLIENT_COMMAND_MAX_BYTES); a line is appended to out whole or not at
 * all; every XFORWARD line, CRLF included, is shorter than
 * SMTP_CLIENT_COMMAND_MAX_BYTES. Pure: no system call, no allocation.
 */
#include "smtp_client_line.h"

#include <string.h>

#define XFORWARD_VERB "XFORWARD"
#define XFORWARD_UNAVAILABLE "[UNAVAILABLE]"

/* ---- output and the line builder ------------------------------------------------ */

void smtp_client_out_put(struct smtp_out *out, const void *p, size_t n)
{
	RMX_ASSERT(out->len <= out->cap && n <= out->cap - out->len);
	memcpy(out->buf + out->len, p, n);
	out->len += n;
}

bool smtp_client_out_fits(const struct smtp_out *out, size_t n)
{
	RMX_ASSERT(out->len <= out->cap);
	return n <= out->cap - out->len;
}

void smtp_client_line_put(struct smtp_client_line *lb, const void *p, size_t n)
{
	RMX_ASSERT(n <= lb->cap - lb->len);
	if (n == 0)
		return; /* an empty span may have no pointer */
	memcpy(lb->p + lb->len, p, n);
	lb->len += n;
}

void smtp_client_line_str(struct smtp_client_line *lb, const char *s)
{
	smtp_client_line_put(lb, s, strlen(s));
}

void smtp_client_line_u64(struct smtp_client_line *lb, uint64_t v)
{
	char digits[20];
	size_t n = 0;
	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	RMX_ASSERT(n <= lb->cap - lb->len);
	while (n > 0)
		lb->p[lb->len++] = digits[--n];
}

bool smtp_client_out_command(struct smtp_out *out, const char *verb, struct span arg)
{
	char cmd[SMTP_CLIENT_COMMAND_MAX_BYTES];
	struct smtp_client_line lb = { cmd, 0, sizeof(cmd) };
	smtp_client_line_str(&lb, verb);
	if (arg.len > 0) {
		smtp_client_line_str(&lb, " ");
		smtp_client_line_put(&lb, arg.ptr, arg.len);
	}
	smtp_client_line_str(&lb, "\r\n");
	if (!smtp_client_out_fits(out, lb.len))
		return false;
	smtp_client_out_put(out, cmd, lb.len);
	return true;
}

/* ---- xtext and XFORWARD --------------------------------------------------------- */

/* xtext (RFC 1891 section 5, as Postfix's XFORWARD_README asks): '+', '='
 * and bytes outside 0x21-0x7e become +HH. */
static bool xtext_plain(uint8_t b)
{
	return b >= 0x21 && b <= 0x7e && b != '+' && b != '=';
}

static size_t xtext_len(struct span v)
{
	size_t n = 0;
	for (size_t i = 0; i < v.len; i++)
		n += xtext_plain(v.ptr[i]) ? 1 : 3;
	return n;
}

static void line_xtext(struct smtp_client_line *lb, struct span v)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < v.len; i++) {
		uint8_t b = v.ptr[i];
		if (xtext_plain(b)) {
			smtp_client_line_put(lb, &b, 1);
		} else {
			char e[3] = { '+', hex[b >> 4], hex[b & 15] };
			smtp_client_line_put(lb, e, 3);
		}
	}
}

static struct span xforward_value(const struct smtp_client_xforward *xf, uint8_t bit)
{
	switch (bit) {
	case SMTP_XFORWARD_NAME:
		return xf->name;
	case SMTP_XFORWARD_ADDR:
		return xf->addr;
	case SMTP_XFORWARD_HELO:
		return xf->helo;
	default:
		RMX_ASSERT(bit == SMTP_XFORWARD_PROTO);
		return xf->proto;
	}
}

/* Room for " NAME=value" in one XFORWARD line under 512 bytes with CRLF. */
#define XFORWARD_ATTR_ROOM (SMTP_CLIENT_COMMAND_MAX_BYTES - 1 - (sizeof(XFORWARD_VERB) - 1) - 2)

/* An empty value, or one too long for a line once encoded, is sent as
 * [UNAVAILABLE], which the README defines for unknown information. */
static bool xforward_value_usable(const struct smtp_xforward_attr *a, struct span v)
{
	return v.len > 0 && 1 + strlen(a->name) + 1 + xtext_len(v) <= XFORWARD_ATTR_ROOM;
}

static size_t xforward_attr_len(const struct smtp_xforward_attr *a, struct span v)
{
	size_t value = xforward_value_usable(a, v) ? xtext_len(v) : strlen(XFORWARD_UNAVAILABLE);
	return 1 + strlen(a->name) + 1 + value;
}

uint32_t smtp_client_xforward_pack(const struct smtp_client_xforward *xf, uint8_t attrs,
				   uint32_t want, struct smtp_client_line *lb)
{
	uint32_t line = 0;
	size_t line_len = 0; /* 0: no line started */
	for (size_t i = 0; i < RMX_ARRAY_LEN(smtp_xforward_attrs); i++) {
		const struct smtp_xforward_attr *a = &smtp_xforward_attrs[i];
		if (!(attrs & a->bit))
			continue;
		struct span v = xforward_value(xf, a->bit);
		size_t n = xforward_attr_len(a, v);
		if (line_len > 0 && line_len + n + 2 > SMTP_CLIENT_COMMAND_MAX_BYTES - 1) {
			if (lb != NULL && line == want)
				smtp_client_line_str(lb, "\r\n");
			line++;
			line_len = 0;
		}
		if (line_len == 0) {
			line_len = sizeof(XFORWARD_VERB) - 1;
			if (lb != NULL && line == want)
				smtp_client_line_str(lb, XFORWARD_VERB);
		}
		line_len += n;
		if (lb != NULL && line == want) {
			smtp_client_line_str(lb, " ");
			smtp_client_line_str(lb, a->name);
			smtp_client_line_str(lb, "=");
			if (xforward_value_usable(a, v))
				line_xtext(lb, v);
			else
				smtp_client_line_str(lb, XFORWARD_UNAVAILABLE);
		}
	}
	if (line_len == 0)
		return line;
	if (lb != NULL && line == want)
		smtp_client_line_str(lb, "\r\n");
	return line + 1;
}

/* ---- addresses on a command line ------------------------------------------------ */

/* Bytes of a stored address: 0 never on a command line, 1 ASCII, 2 UTF-8. */
static const uint8_t path_byte_class[256] = {
	/* 0x00-0x1f: controls */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x20-0x7f: printable, but not < > or DEL */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
	/* 0x80-0xff: UTF-8, only under SMTPUTF8 */
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

bool smtp_client_path_sendable(struct span p, bool smtputf8)
{
	if (p.len > SMTP_PATH_MAX_BYTES)
		return false;
	uint8_t allowed_max = smtputf8 ? 2 : 1;
	for (size_t i = 0; i < p.len; i++) {
		uint8_t k = path_byte_class[p.ptr[i]];
		if (k == 0 || k > allowed_max)
			return false;
	}
	return true;
}
