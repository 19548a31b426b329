/*
 * smtp_cmd.c - parsers for command arguments: reverse and forward paths
 * (RFC 5321 4.1.2, RFC 6531), MAIL and RCPT parameters (RFC 1870, 6152,
 * 6531, 3030), HELO/EHLO names and BDAT sizes.
 *
 * Called by the session on the arg span that smtp_lex.c found. Each parser
 * is a recursive-descent reading of the RFC grammar over a span; results are
 * spans into the same buffer. Nothing is copied or allocated, nothing is
 * written outside the result structs.
 *
 * Invariants: every index is checked against the span length before the
 * byte is read; numbers are accumulated with an explicit overflow test and
 * never wrap; on success every returned span lies inside the input span.
 */
#include "smtp_cmd.h"

#include "../common/bounds.h"

#include <string.h>

/* RFC 1035 2.3.4: a DNS label is at most 63 octets. */
#define DNS_LABEL_MAX_BYTES 63
/* RFC 1870 size-value and the BDAT chunk-size: 1*20DIGIT. */
#define DECIMAL_MAX_DIGITS 20

static inline bool is_alpha(uint8_t c)
{
	return (uint8_t)((c | 0x20) - 'a') < 26;
}

static inline bool is_digit(uint8_t c)
{
	return (uint8_t)(c - '0') < 10;
}

static inline bool is_let_dig(uint8_t c)
{
	return is_alpha(c) || is_digit(c);
}

static inline bool is_hex(uint8_t c)
{
	return is_digit(c) || (uint8_t)((c | 0x20) - 'a') < 6;
}

static inline uint8_t ascii_lower(uint8_t c)
{
	return (uint8_t)(c - 'A') < 26 ? (uint8_t)(c | 0x20) : c;
}

/* RFC 5322 atext, ASCII part: ALPHA / DIGIT / "!#$%&'*+-/=?^_`{|}~". */
static bool is_atext_ascii(uint8_t c)
{
	static const char specials[] = "!#$%&'*+-/=?^_`{|}~";
	return is_let_dig(c) || (c != 0 && memchr(specials, c, sizeof(specials) - 1) != NULL);
}

/* RFC 5321 qtextSMTP: %d32-33 / %d35-91 / %d93-126 (no '"', no '\'). */
static inline bool is_qtext_ascii(uint8_t c)
{
	return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

/* RFC 5321 dcontent: %d33-90 / %d94-126 (printable, no '[', '\', ']'). */
static inline bool is_dcontent(uint8_t c)
{
	return (c >= 33 && c <= 90) || (c >= 94 && c <= 126);
}

bool span_eq_nocase(struct span a, const char *b)
{
	RMX_ASSERT(b != NULL);
	size_t n = strlen(b);
	if (a.len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (ascii_lower(a.ptr[i]) != ascii_lower((uint8_t)b[i]))
			return false;
	}
	return true;
}

/* Case-insensitive: do the n bytes at p equal the C string s of length n? */
static bool bytes_eq_nocase(const uint8_t *p, size_t n, const char *s)
{
	return span_eq_nocase(span_make(p, n), s);
}

/*
 * Length of the well-formed UTF-8 encoding of one non-ASCII character at
 * p[0..n) (RFC 3629 section 4), or 0 when it is malformed: a stray
 * continuation byte, an overlong form, a surrogate, a value past U+10FFFF or
 * a truncated sequence.
 */
static size_t utf8_char_len(const uint8_t *p, size_t n)
{
	RMX_ASSERT(n > 0);
	uint8_t lead = p[0];
	uint8_t second_min = 0x80, second_max = 0xbf;
	size_t len;

	if (lead >= 0xc2 && lead <= 0xdf) {
		len = 2;
	} else if (lead >= 0xe0 && lead <= 0xef) {
		len = 3;
		if (lead == 0xe0)
			second_min = 0xa0; /* overlong below U+0800 */
		else if (lead == 0xed)
			second_max = 0x9f; /* U+D800..DFFF surrogates */
	} else if (lead >= 0xf0 && lead <= 0xf4) {
		len = 4;
		if (lead == 0xf0)
			second_min = 0x90; /* overlong below U+10000 */
		else if (lead == 0xf4)
			second_max = 0x8f; /* past U+10FFFF */
	} else {
		return 0; /* ASCII, continuation, C0/C1 overlong leads, F5..FF */
	}
	if (n < len || p[1] < second_min || p[1] > second_max)
		return 0;
	for (size_t i = 2; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	}
	return len;
}

/*
 * Parses an unsigned decimal of 1..DECIMAL_MAX_DIGITS digits spanning all of
 * s. Returns OK with *value, SIZE_OVERFLOW when the digits are valid but the
 * value exceeds max, or SYNTAX (empty, a non-digit, too many digits).
 */
static enum smtp_parse_result parse_decimal(struct span s, uint64_t max, uint64_t *value)
{
	uint64_t v = 0;
	bool overflow = false;

	if (s.len == 0)
		return SMTP_PARSE_SYNTAX;
	for (size_t i = 0; i < s.len; i++) {
		if (!is_digit(s.ptr[i]))
			return SMTP_PARSE_SYNTAX;
		unsigned d = (unsigned)(s.ptr[i] - '0');
		if (overflow || v > (max - d) / 10)
			overflow = true;
		else
			v = v * 10 + d;
	}
	if (overflow)
		return SMTP_PARSE_SIZE_OVERFLOW;
	if (s.len > DECIMAL_MAX_DIGITS)
		return SMTP_PARSE_SYNTAX;
	*value = v;
	return SMTP_PARSE_OK;
}

/* RFC 5321 4.1.3 IPv4-address-literal: Snum 3("." Snum), each 1*3DIGIT
 * with a value of 0..255; the whole of p[0..n). */
static bool is_ipv4_text(const uint8_t *p, size_t n)
{
	size_t i = 0;
	for (int part = 0; part < 4; part++) {
		if (part > 0) {
			if (i >= n || p[i] != '.')
				return false;
			i++;
		}
		unsigned value = 0;
		size_t digits = 0;
		while (i < n && is_digit(p[i]) && digits < 3) {
			value = value * 10 + (unsigned)(p[i] - '0');
			i++;
			digits++;
		}
		if (digits == 0 || value > 255)
			return false;
	}
	return i == n;
}

/*
 * RFC 5321 4.1.3 IPv6-addr (RFC 4291 2.2 text forms): eight groups of 1-4
 * hex digits, or fewer with exactly one "::" standing for one or more zero
 * groups, optionally ending in a dotted IPv4 address that counts as two
 * groups. The whole of p[0..n).
 */
static bool is_ipv6_text(const uint8_t *p, size_t n)
{
	size_t i = 0;
	unsigned groups = 0;
	bool compressed = false;

	if (n >= 2 && p[0] == ':' && p[1] == ':') {
		compressed = true;
		i = 2;
		if (i == n)
			return true;
	}
	for (;;) {
		size_t j = i;
		while (j < n && j - i < 4 && is_hex(p[j]))
			j++;
		if (j == i)
			return false;
		if (j < n && p[j] == '.') {
			if (!is_ipv4_text(p + i, n - i))
				return false;
			groups += 2;
			break;
		}
		groups++;
		i = j;
		if (i == n)
			break;
		if (p[i] != ':')
			return false;
		i++;
		if (i < n && p[i] == ':') {
			if (compressed)
				return false;
			compressed = true;
			i++;
			if (i == n)
				break;
		} else if (i == n) {
			return false; /* a single trailing colon */
		}
		if (groups >= 8)
			return false;
	}
	return compressed ? groups <= 7 : groups == 8;
}

/*
 * Parses an address literal "[...]" at p[0..n) (p[0] is '['): an IPv4
 * dotted quad, "IPv6:" and an IPv6 address, or a general literal
 * Standardized-tag ":" 1*dcontent. On success *used is its length,
 * brackets included. No bytes >= 0x80 are legal here.
 */
static enum smtp_parse_result parse_address_literal(const uint8_t *p, size_t n, size_t *used)
{
	RMX_ASSERT(n > 0 && p[0] == '[');
	size_t close = 1;
	while (close < n && p[close] != ']') {
		if (!is_dcontent(p[close]))
			return SMTP_PARSE_SYNTAX;
		close++;
	}
	if (close >= n)
		return SMTP_PARSE_SYNTAX;
	const uint8_t *body = p + 1;
	size_t body_len = close - 1;
	*used = close + 1;

	if (body_len == 0)
		return SMTP_PARSE_SYNTAX;
	if (is_ipv4_text(body, body_len))
		return SMTP_PARSE_OK;
	if (body_len >= 5 && bytes_eq_nocase(body, 5, "IPv6:"))
		return is_ipv6_text(body + 5, body_len - 5) ? SMTP_PARSE_OK : SMTP_PARSE_SYNTAX;

	/* General-address-literal: Ldh-str tag, ':', 1*dcontent. */
	size_t tag_len = 0;
	while (tag_len < body_len && (is_let_dig(body[tag_len]) || body[tag_len] == '-'))
		tag_len++;
	if (tag_len == 0 || !is_let_dig(body[0]) || !is_let_dig(body[tag_len - 1]))
		return SMTP_PARSE_SYNTAX;
	if (tag_len >= body_len || body[tag_len] != ':' || tag_len + 1 == body_len)
		return SMTP_PARSE_SYNTAX;
	/* The rest is dcontent: the scan above checked every byte. */
	return SMTP_PARSE_OK;
}

/*
 * Parses a Domain at p[0..n): sub-domains of Let-dig [Ldh-str], separated
 * by '.', and with utf8 also U-labels (well-formed UTF-8 mixed with
 * letters, digits and '-'). One trailing dot is part of the domain. Stops
 * at the first byte that cannot continue it; *used is the length taken.
 * *non_ascii is set when a byte >= 0x80 was taken.
 */
static enum smtp_parse_result parse_domain(const uint8_t *p, size_t n, size_t *used,
					   bool *non_ascii)
{
	size_t i = 0;
	for (;;) {
		size_t label_start = i;
		bool label_ascii = true;
		while (i < n) {
			uint8_t c = p[i];
			if (is_let_dig(c) || c == '-') {
				i++;
			} else if (c >= 0x80) {
				size_t len = utf8_char_len(p + i, n - i);
				if (len == 0)
					return SMTP_PARSE_SYNTAX;
				label_ascii = false;
				*non_ascii = true;
				i += len;
			} else {
				break;
			}
		}
		if (i == label_start)
			return SMTP_PARSE_SYNTAX;
		if (p[label_start] == '-' || p[i - 1] == '-')
			return SMTP_PARSE_SYNTAX;
		if (label_ascii && i - label_start > DNS_LABEL_MAX_BYTES)
			return SMTP_PARSE_SYNTAX;
		if (i == n || p[i] != '.')
			break;
		i++; /* the dot */
		if (i == n || !(is_let_dig(p[i]) || p[i] == '-' || p[i] >= 0x80))
			break; /* a trailing dot */
	}
	*used = i;
	return SMTP_PARSE_OK;
}

/* Scans a Dot-string local part at p[0..n); *used is its length. Sets
 * route_chars and non_ascii in out. */
static enum smtp_parse_result parse_dot_string(const uint8_t *p, size_t n, size_t *used,
					       struct smtp_path *out)
{
	size_t i = 0;
	for (;;) {
		size_t atom_start = i;
		while (i < n) {
			uint8_t c = p[i];
			if (c < 0x80) {
				if (!is_atext_ascii(c))
					break;
				if (c == '%' || c == '!')
					out->route_chars = true;
				i++;
			} else {
				size_t len = utf8_char_len(p + i, n - i);
				if (len == 0)
					return SMTP_PARSE_SYNTAX;
				out->non_ascii = true;
				i += len;
			}
		}
		if (i == atom_start)
			return SMTP_PARSE_SYNTAX; /* empty atom: leading, double or trailing dot */
		if (i == n || p[i] != '.')
			break;
		i++;
	}
	*used = i;
	return SMTP_PARSE_OK;
}

/* Scans a Quoted-string local part at p[0..n) (p[0] is '"'), quotes
 * included in *used. Sets route_chars and non_ascii in out. */
static enum smtp_parse_result parse_quoted_string(const uint8_t *p, size_t n, size_t *used,
						  struct smtp_path *out)
{
	RMX_ASSERT(n > 0 && p[0] == '"');
	size_t i = 1;
	while (i < n && p[i] != '"') {
		uint8_t c = p[i];
		if (c == '\\') {
			/* quoted-pairSMTP: '\' followed by %d32-126 */
			if (i + 1 >= n || p[i + 1] < 32 || p[i + 1] > 126)
				return SMTP_PARSE_SYNTAX;
			c = p[i + 1];
			i += 2;
		} else if (c >= 0x80) {
			size_t len = utf8_char_len(p + i, n - i);
			if (len == 0)
				return SMTP_PARSE_SYNTAX;
			out->non_ascii = true;
			i += len;
			continue;
		} else if (is_qtext_ascii(c)) {
			i++;
		} else {
			return SMTP_PARSE_SYNTAX;
		}
		if (c == '@' || c == '%' || c == '!')
			out->route_chars = true;
	}
	if (i >= n)
		return SMTP_PARSE_SYNTAX; /* no closing quote */
	*used = i + 1;
	return SMTP_PARSE_OK;
}

/* Parses A-d-l ":" at p[0..n) (p[0] is '@'): At-domain *( "," At-domain ).
 * *used includes the colon. */
static enum smtp_parse_result parse_source_route(const uint8_t *p, size_t n, size_t *used,
						 bool *non_ascii)
{
	size_t i = 0;
	for (;;) {
		if (i >= n || p[i] != '@')
			return SMTP_PARSE_SYNTAX;
		i++;
		size_t domain_len = 0;
		enum smtp_parse_result r = parse_domain(p + i, n - i, &domain_len, non_ascii);
		if (r != SMTP_PARSE_OK)
			return r;
		i += domain_len;
		if (i < n && p[i] == ',') {
			i++;
			continue;
		}
		break;
	}
	if (i >= n || p[i] != ':')
		return SMTP_PARSE_SYNTAX;
	*used = i + 1;
	return SMTP_PARSE_OK;
}

/*
 * Parses Mailbox ">" at p[0..n): Local-part "@" (Domain / address-literal),
 * or, when bare_postmaster_ok, the bare "postmaster" of RFC 5321 4.5.1.
 * Fills local, domain, address, quoted_local, address_literal, route_chars
 * and non_ascii in out; *used stops before the '>'.
 */
static enum smtp_parse_result parse_mailbox(const uint8_t *p, size_t n, bool bare_postmaster_ok,
					    size_t *used, struct smtp_path *out)
{
	size_t i = 0;
	enum smtp_parse_result r;

	if (n > 0 && p[0] == '"') {
		out->quoted_local = true;
		r = parse_quoted_string(p, n, &i, out);
	} else {
		r = parse_dot_string(p, n, &i, out);
	}
	if (r != SMTP_PARSE_OK)
		return r;
	out->local = span_make(p, i);

	if (bare_postmaster_ok && i < n && p[i] == '>' && !out->quoted_local &&
	    span_eq_nocase(out->local, "postmaster")) {
		out->domain = span_make(p + i, 0);
		out->address = out->local;
		*used = i;
		return SMTP_PARSE_OK;
	}
	if (i >= n || p[i] != '@')
		return SMTP_PARSE_SYNTAX;
	i++;
	if (i >= n)
		return SMTP_PARSE_SYNTAX;

	size_t domain_len = 0;
	if (p[i] == '[') {
		out->address_literal = true;
		r = parse_address_literal(p + i, n - i, &domain_len);
	} else {
		r = parse_domain(p + i, n - i, &domain_len, &out->non_ascii);
	}
	if (r != SMTP_PARSE_OK)
		return r;
	out->domain = span_make(p + i, domain_len);
	i += domain_len;
	out->address = span_make(p, i);
	*used = i;
	return SMTP_PARSE_OK;
}

enum smtp_parse_result smtp_parse_path(struct span arg, bool allow_null, bool utf8_allowed,
				       struct smtp_path *out, struct span *rest)
{
	RMX_ASSERT(out != NULL && rest != NULL);
	RMX_ASSERT(arg.ptr != NULL || arg.len == 0);
	const uint8_t *p = arg.ptr;
	const size_t n = arg.len;
	size_t i = 0;
	enum smtp_parse_result r;

	memset(out, 0, sizeof(*out));
	*rest = span_make(p + n, 0);

	while (i < n && p[i] == ' ')
		i++;
	if (i >= n || p[i] != '<')
		return SMTP_PARSE_SYNTAX;
	const size_t path_start = i;
	i++;

	if (i < n && p[i] == '>') {
		if (!allow_null)
			return SMTP_PARSE_SYNTAX;
		out->null_path = true;
		out->address = out->local = out->domain = span_make(p + i, 0);
		i++;
	} else {
		bool route_non_ascii = false;
		if (i < n && p[i] == '@') {
			size_t route_len = 0;
			r = parse_source_route(p + i, n - i, &route_len, &route_non_ascii);
			if (r != SMTP_PARSE_OK)
				return r;
			out->source_route = true;
			i += route_len;
		}
		/* The bare postmaster is a forward path only (RCPT: allow_null
		 * is false), and never behind a source route. */
		bool bare_postmaster_ok = !allow_null && !out->source_route;
		size_t mailbox_len = 0;
		r = parse_mailbox(p + i, n - i, bare_postmaster_ok, &mailbox_len, out);
		if (r != SMTP_PARSE_OK)
			return r;
		i += mailbox_len;
		if (i >= n || p[i] != '>')
			return SMTP_PARSE_SYNTAX;
		i++;
		out->non_ascii = out->non_ascii || route_non_ascii;
	}
	if (i < n && p[i] != ' ')
		return SMTP_PARSE_SYNTAX; /* parameters are separated by SP */

	if (out->local.len > SMTP_LOCAL_PART_MAX_BYTES || out->domain.len > SMTP_DOMAIN_MAX_BYTES ||
	    i - path_start > SMTP_PATH_MAX_BYTES)
		return SMTP_PARSE_TOO_LONG;
	if (out->non_ascii && !utf8_allowed)
		return SMTP_PARSE_NEEDS_UTF8;
	*rest = span_make(p + i, n - i);
	return SMTP_PARSE_OK;
}

bool smtp_strip_keyword(struct span arg, const char *keyword, struct span *rest)
{
	RMX_ASSERT(keyword != NULL && rest != NULL);
	size_t len = strlen(keyword);
	if (arg.len < len || !bytes_eq_nocase(arg.ptr, len, keyword))
		return false;
	*rest = span_make(arg.ptr + len, arg.len - len);
	return true;
}

/* Splits the next SP-separated word off *s (leading SPs skipped). Returns
 * false when only spaces are left. */
static bool next_word(struct span *s, struct span *word)
{
	size_t i = 0;
	while (i < s->len && s->ptr[i] == ' ')
		i++;
	size_t start = i;
	while (i < s->len && s->ptr[i] != ' ')
		i++;
	*word = span_make(s->ptr + start, i - start);
	*s = span_make(s->ptr + i, s->len - i);
	return word->len > 0;
}

/* RFC 5321 4.1.2 esmtp-keyword: (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"). */
static bool is_esmtp_keyword(struct span k)
{
	if (k.len == 0 || !is_let_dig(k.ptr[0]))
		return false;
	for (size_t i = 1; i < k.len; i++) {
		if (!is_let_dig(k.ptr[i]) && k.ptr[i] != '-')
			return false;
	}
	return true;
}

enum mail_param { PARAM_SIZE = 1u << 0, PARAM_BODY = 1u << 1, PARAM_SMTPUTF8 = 1u << 2 };

enum smtp_parse_result smtp_parse_mail_params(struct span params, struct smtp_mail_params *out)
{
	RMX_ASSERT(out != NULL);
	RMX_ASSERT(params.ptr != NULL || params.len == 0);
	unsigned seen = 0;
	struct span word;

	memset(out, 0, sizeof(*out));
	out->body = SMTP_BODY_7BIT;

	while (next_word(&params, &word)) {
		const uint8_t *eq = memchr(word.ptr, '=', word.len);
		struct span keyword = word, value = span_make(word.ptr + word.len, 0);
		bool has_value = eq != NULL;
		if (has_value) {
			keyword = span_make(word.ptr, (size_t)(eq - word.ptr));
			value = span_make(eq + 1, word.len - keyword.len - 1);
		}
		if (!is_esmtp_keyword(keyword))
			return SMTP_PARSE_SYNTAX;

		unsigned param;
		if (span_eq_nocase(keyword, "SIZE"))
			param = PARAM_SIZE;
		else if (span_eq_nocase(keyword, "BODY"))
			param = PARAM_BODY;
		else if (span_eq_nocase(keyword, "SMTPUTF8"))
			param = PARAM_SMTPUTF8;
		else
			return SMTP_PARSE_UNKNOWN_PARAM;
		if (seen & param)
			return SMTP_PARSE_BAD_VALUE;
		seen |= param;

		switch (param) {
		case PARAM_SIZE: {
			if (!has_value)
				return SMTP_PARSE_BAD_VALUE;
			enum smtp_parse_result r = parse_decimal(value, UINT64_MAX, &out->size_bytes);
			if (r == SMTP_PARSE_SIZE_OVERFLOW)
				return r;
			if (r != SMTP_PARSE_OK)
				return SMTP_PARSE_BAD_VALUE;
			out->size_given = true;
			break;
		}
		case PARAM_BODY:
			if (!has_value)
				return SMTP_PARSE_BAD_VALUE;
			if (span_eq_nocase(value, "7BIT"))
				out->body = SMTP_BODY_7BIT;
			else if (span_eq_nocase(value, "8BITMIME"))
				out->body = SMTP_BODY_8BITMIME;
			else if (span_eq_nocase(value, "BINARYMIME"))
				out->body = SMTP_BODY_BINARYMIME;
			else
				return SMTP_PARSE_BAD_VALUE;
			break;
		case PARAM_SMTPUTF8:
			if (has_value)
				return SMTP_PARSE_BAD_VALUE;
			out->smtputf8 = true;
			break;
		default:
			RMX_ASSERT(!"unreachable parameter");
		}
	}
	return SMTP_PARSE_OK;
}

enum smtp_parse_result smtp_parse_rcpt_params(struct span params)
{
	RMX_ASSERT(params.ptr != NULL || params.len == 0);
	struct span word;
	return next_word(&params, &word) ? SMTP_PARSE_UNKNOWN_PARAM : SMTP_PARSE_OK;
}

enum smtp_parse_result smtp_parse_helo(struct span arg, struct span *name)
{
	RMX_ASSERT(name != NULL);
	RMX_ASSERT(arg.ptr != NULL || arg.len == 0);
	struct span word;
	enum smtp_parse_result r;
	size_t used = 0;

	*name = span_make(arg.ptr + arg.len, 0);
	if (!next_word(&arg, &word))
		return SMTP_PARSE_SYNTAX;
	if (word.ptr[0] == '[') {
		r = parse_address_literal(word.ptr, word.len, &used);
	} else {
		bool non_ascii = false;
		r = parse_domain(word.ptr, word.len, &used, &non_ascii);
		if (r == SMTP_PARSE_OK && non_ascii)
			r = SMTP_PARSE_SYNTAX; /* the name goes into Received: as is */
	}
	if (r != SMTP_PARSE_OK)
		return r;
	if (used != word.len)
		return SMTP_PARSE_SYNTAX;
	if (word.len > SMTP_DOMAIN_MAX_BYTES)
		return SMTP_PARSE_TOO_LONG;
	*name = word;
	return SMTP_PARSE_OK;
}

enum smtp_parse_result smtp_parse_bdat(struct span arg, uint64_t *size_bytes, bool *last)
{
	RMX_ASSERT(size_bytes != NULL && last != NULL);
	RMX_ASSERT(arg.ptr != NULL || arg.len == 0);
	struct span word;
	uint64_t size = 0;

	if (!next_word(&arg, &word))
		return SMTP_PARSE_SYNTAX;
	enum smtp_parse_result r = parse_decimal(word, 1ull << 63, &size);
	if (r != SMTP_PARSE_OK)
		return r;
	bool is_last = false;
	if (next_word(&arg, &word)) {
		if (!span_eq_nocase(word, "LAST"))
			return SMTP_PARSE_SYNTAX;
		is_last = true;
		if (next_word(&arg, &word))
			return SMTP_PARSE_SYNTAX;
	}
	*size_bytes = size;
	*last = is_last;
	return SMTP_PARSE_OK;
}
