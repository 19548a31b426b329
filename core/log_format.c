/*
 * log_format.c - the text of a log line, apart from where it goes: logfmt
 * values (log_value), keys, and the conversion of a finished logfmt line
 * into one JSON object (log_json_from_logfmt). core/log builds lines with
 * these and buffers and writes them.
 *
 * Invariants: nothing is written at or past cap; every output is 7-bit
 * clean, printable but for the JSON line's final newline; a value or an
 * object that does not fit is cut at a whole escaped character and says so
 * ("..." and truncated). No state, no allocation: any thread.
 */
#include "log_format.h"

#include <stdio.h>
#include <string.h>

/* ---- logfmt values ------------------------------------------------------ */

/* How a byte is written in a value. The low two bits are the extra bytes
 * its escaped form takes; bit 2 says the value must be quoted. V_: as
 * itself, bare is fine; Q_: as itself, inside quotes; S_: a two-byte
 * escape; X_: \xHH. */
enum { V_ = 0, Q_ = 4, S_ = 4 | 1, X_ = 4 | 3 };
#define VALUE_QUOTE 4
#define VALUE_EXTRA 3

static const uint8_t value_class[256] = {
	/* 0x00-0x0f: NUL..SI; HT, LF and CR have short escapes */
	X_, X_, X_, X_, X_, X_, X_, X_, X_, S_, S_, X_, X_, S_, X_, X_,
	/* 0x10-0x1f: DLE..US */
	X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_,
	/* 0x20-0x2f: SP ! " # $ % & ' ( ) * + , - . / */
	Q_, V_, S_, V_, Q_, V_, V_, V_, Q_, Q_, V_, V_, V_, V_, V_, V_,
	/* 0x30-0x3f: 0-9 : ; < = > ? */
	V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, Q_, V_, V_,
	/* 0x40-0x4f: @ A-O */
	V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_,
	/* 0x50-0x5f: P-Z [ \ ] ^ _ */
	V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, S_, V_, Q_, V_,
	/* 0x60-0x6f: ` a-o */
	Q_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_,
	/* 0x70-0x7f: p-z { | } ~ DEL */
	V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, V_, Q_, Q_, Q_, V_, X_,
	/* 0x80-0xff: 8-bit bytes, always \xHH: a line stays 7-bit */
	X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_,
	X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_,
	X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_,
	X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_,
	X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_,
	X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_,
	X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_,
	X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_,
};

static const char hex_digits[] = "0123456789abcdef";

/* Writes the escaped form of byte c at out; returns its width. */
static size_t value_put(char *out, uint8_t c)
{
	switch (value_class[c]) {
	case V_:
	case Q_:
		out[0] = (char)c;
		return 1;
	case S_:
		out[0] = '\\';
		out[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : (char)c;
		return 2;
	default:
		out[0] = '\\';
		out[1] = 'x';
		out[2] = hex_digits[c >> 4];
		out[3] = hex_digits[c & 15];
		return 4;
	}
}

size_t log_value_write(char *out, size_t cap, const uint8_t *p, size_t n, bool *cut)
{
	*cut = false;
	if (cap == 0)
		return 0;
	size_t extra = 0;
	unsigned any = n == 0 ? VALUE_QUOTE : 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = value_class[p[i]];
		extra += c & VALUE_EXTRA;
		any |= c;
	}
	bool quote = any & VALUE_QUOTE;
	size_t total = n + extra + (quote ? 2 : 0);
	size_t o = 0;
	if (total < cap && !quote) {
		memcpy(out, p, n);
		out[n] = '\0';
		return n;
	}
	if (total < cap) {
		out[o++] = '"';
		for (size_t i = 0; i < n; i++)
			o += value_put(out + o, p[i]);
		out[o++] = '"';
		RMX_ASSERT(o == total);
		out[o] = '\0';
		return o;
	}
	*cut = true;
	if (cap < LOG_VALUE_MIN_CAP) {
		out[0] = '\0';
		return 0;
	}
	size_t room = cap - LOG_VALUE_MIN_CAP; /* for whole escaped characters */
	out[o++] = '"';
	for (size_t i = 0; i < n; i++) {
		size_t w = 1 + (value_class[p[i]] & VALUE_EXTRA);
		if (w > room)
			break;
		o += value_put(out + o, p[i]);
		room -= w;
	}
	memcpy(out + o, "...\"", 4);
	o += 4;
	out[o] = '\0';
	RMX_ASSERT(o < cap);
	return o;
}

size_t log_value(char *out, size_t cap, const void *bytes, size_t len)
{
	bool cut;
	return log_value_write(out, cap, bytes, len, &cut);
}

/* ---- logfmt keys -------------------------------------------------------- */

/* A bitmap of 0x00-0x3f and 0x40-0x7f. */
bool log_key_byte(uint8_t c)
{
	static const uint64_t low = 1ull << '-' | 1ull << '.' | 0x3ffull << '0';
	static const uint64_t high = 0x3ffffffull << ('A' - 64) | 1ull << ('_' - 64) |
				     0x3ffffffull << ('a' - 64);
	return c < 64 ? low >> c & 1 : c < 128 ? high >> (c - 64) & 1 : false;
}

bool log_key_ok(const char *key, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!log_key_byte((uint8_t)key[i]))
			return false;
	return true;
}

/* ---- JSON --------------------------------------------------------------- */

#define JSON_KEYS_MAX 64    /* pairs per line; the rest goes into "msg" */
#define JSON_KEY_MAX_BYTES 48
/* Kept free for the end of a cut object: `..."` of the cut string, then
 * `,"truncated_N":"true"}\n` and the NUL (29 bytes with a two-digit N). */
#define JSON_RESERVE_BYTES 48

struct json_out {
	char *out;
	size_t len;
	size_t end;   /* normal output stops here; the reserve follows */
	size_t cap;
	bool first;   /* no pair written yet */
	bool cut;
	uint32_t keys;
	uint16_t key_off[JSON_KEYS_MAX];
	uint8_t key_len[JSON_KEYS_MAX];
};

/* Width of byte c inside a JSON string. */
static size_t json_width(uint8_t c)
{
	if (c == '"' || c == '\\')
		return 2;
	return c < 0x20 || c >= 0x7f ? 6 : 1;
}

static void json_put_byte(struct json_out *j, uint8_t c)
{
	char *o = j->out + j->len;
	if (c == '"' || c == '\\') {
		o[0] = '\\';
		o[1] = (char)c;
		j->len += 2;
	} else if (c < 0x20 || c >= 0x7f) {
		memcpy(o, "\\u00", 4);
		o[4] = hex_digits[c >> 4];
		o[5] = hex_digits[c & 15];
		j->len += 6;
	} else {
		o[0] = (char)c;
		j->len += 1;
	}
}

static bool json_key_taken(const struct json_out *j, const char *name, size_t len)
{
	for (uint32_t i = 0; i < j->keys; i++)
		if (j->key_len[i] == len && memcmp(j->out + j->key_off[i], name, len) == 0)
			return true;
	return false;
}

/* Writes `,"key":` (key made unique with _2, _3 ...) within limit; false if
 * it does not fit. */
static bool json_put_key(struct json_out *j, const char *key, size_t klen, size_t limit)
{
	RMX_ASSERT(klen > 0 && klen <= JSON_KEY_MAX_BYTES && j->keys < JSON_KEYS_MAX);
	char name[JSON_KEY_MAX_BYTES + 8];
	memcpy(name, key, klen);
	size_t nlen = klen;
	for (unsigned k = 2; json_key_taken(j, name, nlen); k++) {
		int n = snprintf(name + klen, sizeof(name) - klen, "_%u", k);
		RMX_ASSERT(n > 0 && (size_t)n < sizeof(name) - klen);
		nlen = klen + (size_t)n;
	}
	size_t need = (j->first ? 0 : 1) + nlen + 3;
	if (j->len + need > limit)
		return false;
	if (!j->first)
		j->out[j->len++] = ',';
	j->out[j->len++] = '"';
	j->key_off[j->keys] = (uint16_t)j->len;
	j->key_len[j->keys] = (uint8_t)nlen;
	j->keys++;
	memcpy(j->out + j->len, name, nlen);
	j->len += nlen;
	memcpy(j->out + j->len, "\":", 2);
	j->len += 2;
	j->first = false;
	return true;
}

/* Decodes the logfmt escape at s (s[0] == '\\', n bytes available): the byte
 * it stands for, and its width in *w; -1 if it is not one of ours. */
static int logfmt_unescape(const char *s, size_t n, size_t *w)
{
	if (n < 2)
		return -1;
	*w = 2;
	switch (s[1]) {
	case '"':
	case '\\':
		return (uint8_t)s[1];
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 't':
		return '\t';
	case 'x': {
		if (n < 4)
			return -1;
		int v = 0;
		for (int i = 2; i < 4; i++) {
			char c = s[i];
			int d = c >= '0' && c <= '9'   ? c - '0'
				: c >= 'a' && c <= 'f' ? c - 'a' + 10
				: c >= 'A' && c <= 'F' ? c - 'A' + 10
						       : -1;
			if (d < 0)
				return -1;
			v = v * 16 + d;
		}
		*w = 4;
		return v;
	}
	default:
		return -1;
	}
}

/* Writes one byte of a string value, or cuts the string when it does not
 * fit before j->end. */
static bool json_string_byte(struct json_out *j, uint8_t c)
{
	if (j->len + json_width(c) > j->end) {
		memcpy(j->out + j->len, "...", 3);
		j->len += 3;
		j->cut = true;
		return false;
	}
	json_put_byte(j, c);
	return true;
}

/* Writes bytes [s, s+n) as a JSON string; when quoted, they are a logfmt
 * quoted value's content (already validated) and are unescaped first. */
static void json_put_string(struct json_out *j, const char *s, size_t n, bool quoted)
{
	j->out[j->len++] = '"';
	/* With room for the worst case (every byte as \u00XX), a run of plain
	 * bytes is copied without checks. */
	size_t i = 0;
	if (j->len + 6 * n <= j->end) {
		char *o = j->out + j->len;
		for (; i < n; i++) {
			uint8_t c = (uint8_t)s[i];
			if (value_class[c] & VALUE_EXTRA) /* not printable, or " or \\ */
				break;
			*o++ = (char)c;
		}
		j->len = (size_t)(o - j->out);
	}
	while (i < n) {
		int c = (uint8_t)s[i];
		size_t w = 1;
		if (quoted && c == '\\')
			c = logfmt_unescape(s + i, n - i, &w);
		RMX_ASSERT(c >= 0);
		if (!json_string_byte(j, (uint8_t)c))
			break;
		i += w;
	}
	j->out[j->len++] = '"';
}

/* A bare value that JSON takes as a number: 0, or up to 15 digits without a
 * leading zero (exact in a double), optionally negative. */
static bool json_number_ok(const char *s, size_t n)
{
	size_t i = n > 0 && s[0] == '-' ? 1 : 0;
	size_t digits = n - i;
	if (digits == 0 || digits > 15)
		return false;
	if (s[i] == '0')
		return digits == 1 && i == 0;
	for (; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* The end of the logfmt value starting at s[0] (n bytes to the end of the
 * text): bare up to a space, or quoted with valid escapes. Returns its
 * length, or 0 if malformed (unterminated, bad escape, a bare '"' or '=',
 * nothing or no space after it). */
static size_t logfmt_value_len(const char *s, size_t n)
{
	size_t i = 0;
	if (n > 0 && s[0] == '"') {
		for (i = 1; i < n && s[i] != '"'; i++) {
			if (s[i] == '\\') {
				size_t w;
				if (logfmt_unescape(s + i, n - i, &w) < 0)
					return 0;
				i += w - 1;
			}
		}
		if (i >= n)
			return 0;
		i++; /* the closing quote */
	} else {
		while (i < n && s[i] != ' ') {
			if (s[i] == '"' || s[i] == '=')
				return 0;
			i++;
		}
		if (i == 0)
			return SIZE_MAX; /* "key=": an empty value */
	}
	if (i < n && s[i] != ' ')
		return 0;
	return i;
}

size_t log_json_from_logfmt(char *out, size_t cap, const char *text, size_t len)
{
	RMX_ASSERT(cap >= LOG_JSON_MIN_CAP && cap <= UINT16_MAX);
	struct json_out j = {
		.out = out, .end = cap - JSON_RESERVE_BYTES, .cap = cap, .first = true,
	};
	j.out[j.len++] = '{';
	size_t i = 0;
	while (i < len && !j.cut) {
		while (i < len && text[i] == ' ')
			i++;
		if (i == len)
			break;
		size_t start = i;
		size_t klen = 0;
		while (i < len && klen <= JSON_KEY_MAX_BYTES && log_key_byte((uint8_t)text[i])) {
			i++;
			klen++;
		}
		size_t vlen = 0;
		bool good = klen > 0 && klen <= JSON_KEY_MAX_BYTES && i < len && text[i] == '=' &&
			    j.keys < JSON_KEYS_MAX - 2;
		if (good) {
			vlen = logfmt_value_len(text + i + 1, len - i - 1);
			good = vlen != 0;
		}
		if (!good) {
			/* A call-site bug: keep the rest, readable, as "msg". */
			if (!json_put_key(&j, "msg", 3, j.end - 6))
				j.cut = true;
			else
				json_put_string(&j, text + start, len - start, false);
			break;
		}
		const char *v = text + i + 1;
		if (vlen == SIZE_MAX)
			vlen = 0;
		size_t mark = j.len;
		bool first = j.first;
		if (!json_put_key(&j, text + start, klen, j.end - 6)) {
			j.cut = true;
			break;
		}
		if (vlen > 0 && v[0] == '"') {
			json_put_string(&j, v + 1, vlen - 2, true);
		} else if (json_number_ok(v, vlen)) {
			if (j.len + vlen > j.end) {
				j.len = mark;
				j.first = first;
				j.keys--;
				j.cut = true;
				break;
			}
			memcpy(j.out + j.len, v, vlen);
			j.len += vlen;
		} else {
			json_put_string(&j, v, vlen, false);
		}
		i += 1 + vlen;
	}
	if (j.cut) {
		/* The reserve holds this: the key is short, the value "true". */
		bool ok = json_put_key(&j, "truncated", 9, cap - 9);
		RMX_ASSERT(ok);
		memcpy(j.out + j.len, "\"true\"", 6);
		j.len += 6;
	}
	RMX_ASSERT(j.len + 3 <= cap);
	j.out[j.len++] = '}';
	j.out[j.len++] = '\n';
	j.out[j.len] = '\0';
	return j.len;
}
