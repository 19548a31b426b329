/*
 * test_smtp_cmd.c - the argument parsers: paths, MAIL/RCPT parameters,
 * HELO names and BDAT sizes.
 *
 * Table-driven. Every input is copied into a heap block of exactly its
 * length before parsing, so ASan reports any read past the end of the span.
 * Each length limit is tested at exactly the bound and one over.
 */
#include "../common/bounds.h"
#include "../proto/smtp_cmd.h"
#include "test.h"

#define IN(s) s, sizeof(s) - 1

enum {
	F_NULL = 1u << 0,
	F_QUOTED = 1u << 1,
	F_ROUTE = 1u << 2,
	F_SRCROUTE = 1u << 3,
	F_LITERAL = 1u << 4,
	F_UTF8 = 1u << 5,
};

#define OK SMTP_PARSE_OK
#define SYNTAX SMTP_PARSE_SYNTAX
#define TOO_LONG SMTP_PARSE_TOO_LONG
#define NEEDS_UTF8 SMTP_PARSE_NEEDS_UTF8
#define UNKNOWN SMTP_PARSE_UNKNOWN_PARAM
#define BAD_VALUE SMTP_PARSE_BAD_VALUE
#define OVERFLOW SMTP_PARSE_SIZE_OVERFLOW

/* A copy of s in a heap block of exactly n bytes (never NULL). */
static uint8_t *exact_copy(const void *s, size_t n)
{
	uint8_t *p = malloc(n ? n : 1);
	REQUIRE(p != NULL);
	memcpy(p, s, n);
	return p;
}

struct path_case {
	const char *input;
	size_t input_len;
	bool allow_null;
	bool utf8;
	enum smtp_parse_result want;
	/* checked on OK only */
	const char *address;
	const char *local;
	const char *domain;
	unsigned flags;
	const char *rest;
};

/* Shorthands: M = MAIL (null allowed), R = RCPT; 8 = SMTPUTF8 on. */
#define M true, false
#define R false, false
#define M8 true, true
#define R8 false, true
#define FAIL NULL, NULL, NULL, 0, NULL

static const struct path_case path_cases[] = {
	/* plain mailboxes */
	{ IN("<user@example.com>"), R, OK, "user@example.com", "user", "example.com", 0, "" },
	{ IN("<user@example.com>"), M, OK, "user@example.com", "user", "example.com", 0, "" },
	{ IN(" <user@example.com>"), R, OK, "user@example.com", "user", "example.com", 0, "" },
	{ IN("   <user@example.com> SIZE=100"), M, OK, "user@example.com", "user", "example.com", 0, " SIZE=100" },
	{ IN("<User.Name+tag@Example.COM>"), R, OK, "User.Name+tag@Example.COM", "User.Name+tag", "Example.COM", 0, "" },
	{ IN("<a#$&'*+-/=?^_`{|}~@example.com>"), R, OK, "a#$&'*+-/=?^_`{|}~@example.com", "a#$&'*+-/=?^_`{|}~", "example.com", 0, "" },
	{ IN("<user@localhost>"), R, OK, "user@localhost", "user", "localhost", 0, "" },
	{ IN("<user@123.example>"), R, OK, "user@123.example", "user", "123.example", 0, "" },
	{ IN("<user@ex-am--ple.com>"), R, OK, "user@ex-am--ple.com", "user", "ex-am--ple.com", 0, "" },
	{ IN("<user@example.com.>"), R, OK, "user@example.com.", "user", "example.com.", 0, "" },
	{ IN("<user@example.com> "), R, OK, "user@example.com", "user", "example.com", 0, " " },
	/* broken mailboxes */
	{ IN("user@example.com"), R, SYNTAX, FAIL },
	{ IN("<user@example.com"), R, SYNTAX, FAIL },
	{ IN(""), R, SYNTAX, FAIL },
	{ IN("   "), R, SYNTAX, FAIL },
	{ IN("<"), R, SYNTAX, FAIL },
	{ IN("<user@>"), R, SYNTAX, FAIL },
	{ IN("<user@"), R, SYNTAX, FAIL },
	{ IN("<@>"), R, SYNTAX, FAIL },
	{ IN("<@example.com>"), R, SYNTAX, FAIL },
	{ IN("<user>"), R, SYNTAX, FAIL },
	{ IN("<user@example.com>>"), R, SYNTAX, FAIL },
	{ IN("<user@example.com>x"), R, SYNTAX, FAIL },
	{ IN("<user@example.com>\tSIZE=1"), M, SYNTAX, FAIL },
	{ IN("<user @example.com>"), R, SYNTAX, FAIL },
	{ IN("<user@ example.com>"), R, SYNTAX, FAIL },
	{ IN("<user@example.com >"), R, SYNTAX, FAIL },
	{ IN("\t<user@example.com>"), R, SYNTAX, FAIL },
	{ IN("<user@example.com..>"), R, SYNTAX, FAIL },
	{ IN("<user@.example.com>"), R, SYNTAX, FAIL },
	{ IN("<user@example..com>"), R, SYNTAX, FAIL },
	{ IN("<user@-example.com>"), R, SYNTAX, FAIL },
	{ IN("<user@example-.com>"), R, SYNTAX, FAIL },
	{ IN("<user@exa_mple.com>"), R, SYNTAX, FAIL },
	{ IN("<user@.>"), R, SYNTAX, FAIL },
	{ IN("<.user@example.com>"), R, SYNTAX, FAIL },
	{ IN("<user.@example.com>"), R, SYNTAX, FAIL },
	{ IN("<us..er@example.com>"), R, SYNTAX, FAIL },
	{ IN("<us(er@example.com>"), R, SYNTAX, FAIL },
	{ IN("<us\x01er@example.com>"), R, SYNTAX, FAIL },
	{ IN("<user@exam\x00ple.com>"), R, SYNTAX, FAIL },
	{ IN("<a@b@example.com>"), R, SYNTAX, FAIL },
	/* the null path */
	{ IN("<>"), M, OK, "", "", "", F_NULL, "" },
	{ IN("<> SIZE=10"), M, OK, "", "", "", F_NULL, " SIZE=10" },
	{ IN("  <>"), M, OK, "", "", "", F_NULL, "" },
	{ IN("<>"), R, SYNTAX, FAIL },
	{ IN("< >"), M, SYNTAX, FAIL },
	{ IN("<>x"), M, SYNTAX, FAIL },
	/* the bare postmaster (RFC 5321 4.5.1), forward paths only */
	{ IN("<postmaster>"), R, OK, "postmaster", "postmaster", "", 0, "" },
	{ IN("<PostMaster>"), R, OK, "PostMaster", "PostMaster", "", 0, "" },
	{ IN("<postmaster> "), R, OK, "postmaster", "postmaster", "", 0, " " },
	{ IN("<postmaster>"), M, SYNTAX, FAIL },
	{ IN("<\"postmaster\">"), R, SYNTAX, FAIL },
	{ IN("<postmasters>"), R, SYNTAX, FAIL },
	{ IN("<postmaster@example.com>"), R, OK, "postmaster@example.com", "postmaster", "example.com", 0, "" },
	{ IN("<@a.example:postmaster>"), R, SYNTAX, FAIL },
	/* source routes: accepted and ignored */
	{ IN("<@a.example,@b.example:user@c.example>"), R, OK, "user@c.example", "user", "c.example", F_SRCROUTE, "" },
	{ IN("<@a.example:user@c.example>"), M, OK, "user@c.example", "user", "c.example", F_SRCROUTE, "" },
	{ IN("<@a.example.:user@c.example> BODY=8BITMIME"), M, OK, "user@c.example", "user", "c.example", F_SRCROUTE, " BODY=8BITMIME" },
	{ IN("<@a.example,b.example:user@c.example>"), R, SYNTAX, FAIL },
	{ IN("<@a.example user@c.example>"), R, SYNTAX, FAIL },
	{ IN("<@:user@c.example>"), R, SYNTAX, FAIL },
	{ IN("<@a.example:>"), R, SYNTAX, FAIL },
	{ IN("<@a.example,:user@c.example>"), R, SYNTAX, FAIL },
	{ IN("<@[192.0.2.1]:user@c.example>"), R, SYNTAX, FAIL },
	/* quoted local parts */
	{ IN("<\"john doe\"@example.com>"), R, OK, "\"john doe\"@example.com", "\"john doe\"", "example.com", F_QUOTED, "" },
	{ IN("<\"a\\\"b\"@example.com>"), R, OK, "\"a\\\"b\"@example.com", "\"a\\\"b\"", "example.com", F_QUOTED, "" },
	{ IN("<\"a\\\\b\"@example.com>"), R, OK, "\"a\\\\b\"@example.com", "\"a\\\\b\"", "example.com", F_QUOTED, "" },
	{ IN("<\"\"@example.com>"), R, OK, "\"\"@example.com", "\"\"", "example.com", F_QUOTED, "" },
	{ IN("<\"a.>b\"@example.com>"), R, OK, "\"a.>b\"@example.com", "\"a.>b\"", "example.com", F_QUOTED, "" },
	{ IN("<\"abc@example.com>"), R, SYNTAX, FAIL },
	{ IN("<\"a\tb\"@example.com>"), R, SYNTAX, FAIL },
	{ IN("<\"a\\\x01b\"@example.com>"), R, SYNTAX, FAIL },
	{ IN("<\"a\\"), R, SYNTAX, FAIL },
	{ IN("<\"ab\"c@example.com>"), R, SYNTAX, FAIL },
	{ IN("<\"ab\".c@example.com>"), R, SYNTAX, FAIL },
	/* routing characters */
	{ IN("<a%b@example.com>"), R, OK, "a%b@example.com", "a%b", "example.com", F_ROUTE, "" },
	{ IN("<a!b@example.com>"), R, OK, "a!b@example.com", "a!b", "example.com", F_ROUTE, "" },
	{ IN("<b!a%c@example.com>"), R, OK, "b!a%c@example.com", "b!a%c", "example.com", F_ROUTE, "" },
	{ IN("<\"a@b\"@example.com>"), R, OK, "\"a@b\"@example.com", "\"a@b\"", "example.com", F_QUOTED | F_ROUTE, "" },
	{ IN("<\"a%b\"@example.com>"), R, OK, "\"a%b\"@example.com", "\"a%b\"", "example.com", F_QUOTED | F_ROUTE, "" },
	{ IN("<\"a\\@b\"@example.com>"), R, OK, "\"a\\@b\"@example.com", "\"a\\@b\"", "example.com", F_QUOTED | F_ROUTE, "" },
	/* address literals */
	{ IN("<user@[192.0.2.1]>"), R, OK, "user@[192.0.2.1]", "user", "[192.0.2.1]", F_LITERAL, "" },
	{ IN("<user@[0.0.0.0]>"), R, OK, "user@[0.0.0.0]", "user", "[0.0.0.0]", F_LITERAL, "" },
	{ IN("<user@[255.255.255.255]>"), R, OK, "user@[255.255.255.255]", "user", "[255.255.255.255]", F_LITERAL, "" },
	{ IN("<user@[192.0.2.256]>"), R, SYNTAX, FAIL },
	{ IN("<user@[192.0.2]>"), R, SYNTAX, FAIL },
	{ IN("<user@[192.0.2.1.5]>"), R, SYNTAX, FAIL },
	{ IN("<user@[1234.0.2.1]>"), R, SYNTAX, FAIL },
	{ IN("<user@[192.0..1]>"), R, SYNTAX, FAIL },
	{ IN("<user@[192.0.2.1.]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6:2001:db8::1]>"), R, OK, "user@[IPv6:2001:db8::1]", "user", "[IPv6:2001:db8::1]", F_LITERAL, "" },
	{ IN("<user@[ipv6:2001:DB8::1]>"), R, OK, "user@[ipv6:2001:DB8::1]", "user", "[ipv6:2001:DB8::1]", F_LITERAL, "" },
	{ IN("<user@[IPv6:1:2:3:4:5:6:7:8]>"), R, OK, "user@[IPv6:1:2:3:4:5:6:7:8]", "user", "[IPv6:1:2:3:4:5:6:7:8]", F_LITERAL, "" },
	{ IN("<user@[IPv6:::]>"), R, OK, "user@[IPv6:::]", "user", "[IPv6:::]", F_LITERAL, "" },
	{ IN("<user@[IPv6:::1]>"), R, OK, "user@[IPv6:::1]", "user", "[IPv6:::1]", F_LITERAL, "" },
	{ IN("<user@[IPv6:fe80::]>"), R, OK, "user@[IPv6:fe80::]", "user", "[IPv6:fe80::]", F_LITERAL, "" },
	{ IN("<user@[IPv6:::ffff:192.0.2.1]>"), R, OK, "user@[IPv6:::ffff:192.0.2.1]", "user", "[IPv6:::ffff:192.0.2.1]", F_LITERAL, "" },
	{ IN("<user@[IPv6:1:2:3:4:5:6:192.0.2.1]>"), R, OK, "user@[IPv6:1:2:3:4:5:6:192.0.2.1]", "user", "[IPv6:1:2:3:4:5:6:192.0.2.1]", F_LITERAL, "" },
	{ IN("<user@[IPv6:1:2:3:4:5:6:7:192.0.2.1]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6:1:2:3:4:5:6:7:8:9]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6:1:2:3:4:5:6:7]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6:1:2:3:4:5:6:7:8::]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6:1::2::3]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6:12345::1]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6:1:]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6::1]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6:::1:]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6::::1]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6:2001:db8::g]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6:::ffff:192.0.2.256]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6:192.0.2.1::]>"), R, SYNTAX, FAIL },
	{ IN("<user@[IPv6:]>"), R, SYNTAX, FAIL },
	{ IN("<user@[x-tag:some-thing]>"), R, OK, "user@[x-tag:some-thing]", "user", "[x-tag:some-thing]", F_LITERAL, "" },
	{ IN("<user@[tag:]>"), R, SYNTAX, FAIL },
	{ IN("<user@[tag-:x]>"), R, SYNTAX, FAIL },
	{ IN("<user@[:foo]>"), R, SYNTAX, FAIL },
	{ IN("<user@[foo]>"), R, SYNTAX, FAIL },
	{ IN("<user@[]>"), R, SYNTAX, FAIL },
	{ IN("<user@[192.0.2.1>"), R, SYNTAX, FAIL },
	{ IN("<user@[192.0.2.1]x>"), R, SYNTAX, FAIL },
	{ IN("<user@[192.0.2.1].>"), R, SYNTAX, FAIL },
	{ IN("<user@[a[b]>"), R, SYNTAX, FAIL },
	{ IN("<user@[a\\]b]>"), R, SYNTAX, FAIL },
	{ IN("<user@[tag:a b]>"), R, SYNTAX, FAIL },
	/* SMTPUTF8 */
	{ IN("<j\xc3\xb6ran@example.com>"), R, NEEDS_UTF8, FAIL },
	{ IN("<j\xc3\xb6ran@example.com>"), R8, OK, "j\xc3\xb6ran@example.com", "j\xc3\xb6ran", "example.com", F_UTF8, "" },
	{ IN("<user@b\xc3\xbc" "cher.example>"), M, NEEDS_UTF8, FAIL },
	{ IN("<user@b\xc3\xbc" "cher.example>"), M8, OK, "user@b\xc3\xbc" "cher.example", "user", "b\xc3\xbc" "cher.example", F_UTF8, "" },
	{ IN("<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>"), R8, OK,
	  "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", "\xe7\x94\xa8\xe6\x88\xb7",
	  "\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", F_UTF8, "" },
	{ IN("<\"j\xc3\xb6 ran\"@example.com>"), R8, OK, "\"j\xc3\xb6 ran\"@example.com", "\"j\xc3\xb6 ran\"", "example.com", F_QUOTED | F_UTF8, "" },
	{ IN("<\"j\xc3\xb6 ran\"@example.com>"), R, NEEDS_UTF8, FAIL },
	{ IN("<a\xf0\x9f\x98\x80@example.com>"), R8, OK, "a\xf0\x9f\x98\x80@example.com", "a\xf0\x9f\x98\x80", "example.com", F_UTF8, "" },
	{ IN("<@r\xc3\xa9lais.example:user@example.com>"), R, NEEDS_UTF8, FAIL },
	{ IN("<@r\xc3\xa9lais.example:user@example.com>"), R8, OK, "user@example.com", "user", "example.com", F_SRCROUTE | F_UTF8, "" },
	{ IN("<user@[IPv6:\xc3\xb6]>"), R8, SYNTAX, FAIL },
	{ IN("<user@-\xc3\xb6.example>"), R8, SYNTAX, FAIL },
	/* malformed UTF-8 is a syntax error whatever the mode */
	{ IN("<a\xc0\xaf@example.com>"), R8, SYNTAX, FAIL },       /* overlong '/' */
	{ IN("<a\xc0\xaf@example.com>"), R, SYNTAX, FAIL },
	{ IN("<a\xe0\x80\xaf@example.com>"), R8, SYNTAX, FAIL },   /* overlong, 3 bytes */
	{ IN("<a\xf0\x80\x80\xaf@example.com>"), R8, SYNTAX, FAIL }, /* overlong, 4 bytes */
	{ IN("<a\xed\xa0\x80@example.com>"), R8, SYNTAX, FAIL },   /* surrogate U+D800 */
	{ IN("<a\xed\xbf\xbf@example.com>"), R8, SYNTAX, FAIL },   /* surrogate U+DFFF */
	{ IN("<a\xed\x9f\xbf@example.com>"), R8, OK, "a\xed\x9f\xbf@example.com", "a\xed\x9f\xbf", "example.com", F_UTF8, "" },
	{ IN("<a\xf4\x90\x80\x80@example.com>"), R8, SYNTAX, FAIL }, /* past U+10FFFF */
	{ IN("<a\xf4\x8f\xbf\xbf@example.com>"), R8, OK, "a\xf4\x8f\xbf\xbf@example.com", "a\xf4\x8f\xbf\xbf", "example.com", F_UTF8, "" },
	{ IN("<a\xf5\x80\x80\x80@example.com>"), R8, SYNTAX, FAIL },
	{ IN("<a\x80@example.com>"), R8, SYNTAX, FAIL },           /* stray continuation */
	{ IN("<a\xc3@example.com>"), R8, SYNTAX, FAIL },           /* truncated */
	{ IN("<a@example.com\xc3"), R8, SYNTAX, FAIL },            /* truncated at the end */
	{ IN("<a@ex\xe2\x82>"), R8, SYNTAX, FAIL },
	{ IN("<a\xff@example.com>"), R8, SYNTAX, FAIL },
	{ IN("<\"a\xc0\xaf\"@example.com>"), R8, SYNTAX, FAIL },
	{ IN("<a@ex\xed\xa0\x80.com>"), R8, SYNTAX, FAIL },
};

static void check_path_case(const struct path_case *c)
{
	uint8_t *buf = exact_copy(c->input, c->input_len);
	struct smtp_path path;
	struct span rest;
	size_t failed_before = test_checks_failed;
	enum smtp_parse_result r =
		smtp_parse_path(span_make(buf, c->input_len), c->allow_null, c->utf8, &path, &rest);

	CHECK_EQ_U(r, c->want);
	if (r == OK && c->want == OK) {
		CHECK_MEM(path.address.ptr, path.address.len, c->address, strlen(c->address));
		CHECK_MEM(path.local.ptr, path.local.len, c->local, strlen(c->local));
		CHECK_MEM(path.domain.ptr, path.domain.len, c->domain, strlen(c->domain));
		CHECK_MEM(rest.ptr, rest.len, c->rest, strlen(c->rest));
		CHECK(rest.ptr + rest.len == buf + c->input_len);
		CHECK_EQ_U(path.null_path, (c->flags & F_NULL) != 0);
		CHECK_EQ_U(path.quoted_local, (c->flags & F_QUOTED) != 0);
		CHECK_EQ_U(path.route_chars, (c->flags & F_ROUTE) != 0);
		CHECK_EQ_U(path.source_route, (c->flags & F_SRCROUTE) != 0);
		CHECK_EQ_U(path.address_literal, (c->flags & F_LITERAL) != 0);
		CHECK_EQ_U(path.non_ascii, (c->flags & F_UTF8) != 0);
		if (path.address.len > 0)
			CHECK(path.address.ptr >= buf &&
			      path.address.ptr + path.address.len <= buf + c->input_len);
	}
	if (test_checks_failed != failed_before)
		fprintf(stderr, "  in path case \"%.*s\"\n", (int)c->input_len, c->input);
	free(buf);
}

/* A dot-separated domain of exactly len bytes, labels of 50 or 51. */
static void fill_domain(char *out, size_t len)
{
	for (size_t i = 0; i < len; i++)
		out[i] = (i % 51 == 50) ? '.' : 'd';
	if (len > 0 && out[len - 1] == '.')
		out[len - 1] = 'e';
}

static enum smtp_parse_result parse_built_path(const char *text, size_t len, struct smtp_path *path)
{
	uint8_t *buf = exact_copy(text, len);
	struct span rest;
	enum smtp_parse_result r = smtp_parse_path(span_make(buf, len), false, false, path, &rest);
	free(buf);
	return r;
}

/* RFC 5321 4.5.3.1: local part 64, domain 255, path 256, each at the bound
 * and one over; a DNS label at 63 and 64. */
static void test_path_limits(void)
{
	char text[1024];
	struct smtp_path path;
	size_t n;

	/* local part: 64 then 65, dot-string and quoted */
	for (size_t local = 64; local <= 65; local++) {
		n = 0;
		text[n++] = '<';
		memset(text + n, 'l', local);
		n += local;
		memcpy(text + n, "@example.com>", 13);
		n += 13;
		CHECK_EQ_U(parse_built_path(text, n, &path), local == 64 ? OK : TOO_LONG);
		if (local == 64)
			CHECK_EQ_U(path.local.len, 64);

		n = 0;
		text[n++] = '<';
		text[n++] = '"';
		memset(text + n, 'q', local - 2);
		n += local - 2;
		text[n++] = '"';
		memcpy(text + n, "@example.com>", 13);
		n += 13;
		CHECK_EQ_U(parse_built_path(text, n, &path), local == 64 ? OK : TOO_LONG);
	}
	/* whole path: "<" 64 "@" domain ">" = 256 then 257 */
	for (size_t total = 256; total <= 257; total++) {
		size_t domain = total - 67;
		n = 0;
		text[n++] = '<';
		memset(text + n, 'l', 64);
		n += 64;
		text[n++] = '@';
		fill_domain(text + n, domain);
		n += domain;
		text[n++] = '>';
		REQUIRE(n == total);
		CHECK_EQ_U(parse_built_path(text, n, &path), total == 256 ? OK : TOO_LONG);
		if (total == 256)
			CHECK_EQ_U(path.domain.len, 189);
	}
	/* a source route counts towards the path */
	n = 0;
	memcpy(text, "<@r.example:", 12);
	n = 12;
	memset(text + n, 'l', 64);
	n += 64;
	text[n++] = '@';
	fill_domain(text + n, 256 - 12 - 64 - 2);
	n += 256 - 12 - 64 - 2;
	text[n++] = '>';
	CHECK_EQ_U(n, 256);
	CHECK_EQ_U(parse_built_path(text, n, &path), OK);
	CHECK(path.source_route);
	text[n - 1] = 'x';
	text[n++] = '>';
	CHECK_EQ_U(parse_built_path(text, n, &path), TOO_LONG);
	/* domain 255 and 256: over the path bound too, but never accepted */
	for (size_t domain = 255; domain <= 256; domain++) {
		n = 0;
		memcpy(text, "<u@", 3);
		n = 3;
		fill_domain(text + n, domain);
		n += domain;
		text[n++] = '>';
		CHECK_EQ_U(parse_built_path(text, n, &path), TOO_LONG);
	}
	/* one label: 63 then 64 */
	for (size_t label = 63; label <= 64; label++) {
		n = 0;
		memcpy(text, "<u@", 3);
		n = 3;
		memset(text + n, 'x', label);
		n += label;
		memcpy(text + n, ".example>", 9);
		n += 9;
		CHECK_EQ_U(parse_built_path(text, n, &path), label == 63 ? OK : SYNTAX);
	}
}

struct params_case {
	const char *input;
	size_t input_len;
	enum smtp_parse_result want;
	uint64_t size_bytes;
	bool size_given;
	enum smtp_body_type body;
	bool smtputf8;
};

static const struct params_case params_cases[] = {
	{ IN(""), OK, 0, false, SMTP_BODY_7BIT, false },
	{ IN("   "), OK, 0, false, SMTP_BODY_7BIT, false },
	{ IN(" SIZE=1000"), OK, 1000, true, SMTP_BODY_7BIT, false },
	{ IN("SIZE=0"), OK, 0, true, SMTP_BODY_7BIT, false },
	{ IN("size=18446744073709551615"), OK, UINT64_MAX, true, SMTP_BODY_7BIT, false },
	{ IN("SIZE=00000000000000000001"), OK, 1, true, SMTP_BODY_7BIT, false },
	{ IN("SIZE=18446744073709551616"), OVERFLOW, 0, false, 0, false },
	{ IN("SIZE=99999999999999999999999"), OVERFLOW, 0, false, 0, false },
	{ IN("SIZE=000000000000000000001"), BAD_VALUE, 0, false, 0, false },
	{ IN("SIZE=12a"), BAD_VALUE, 0, false, 0, false },
	{ IN("SIZE=99999999999999999999999x"), BAD_VALUE, 0, false, 0, false },
	{ IN("SIZE="), BAD_VALUE, 0, false, 0, false },
	{ IN("SIZE"), BAD_VALUE, 0, false, 0, false },
	{ IN("SIZE=-1"), BAD_VALUE, 0, false, 0, false },
	{ IN("SIZE=+1"), BAD_VALUE, 0, false, 0, false },
	{ IN("SIZE=1=2"), BAD_VALUE, 0, false, 0, false },
	{ IN("BODY=8BITMIME"), OK, 0, false, SMTP_BODY_8BITMIME, false },
	{ IN("body=binarymime"), OK, 0, false, SMTP_BODY_BINARYMIME, false },
	{ IN("Body=7bit"), OK, 0, false, SMTP_BODY_7BIT, false },
	{ IN("BODY=8BIT"), BAD_VALUE, 0, false, 0, false },
	{ IN("BODY"), BAD_VALUE, 0, false, 0, false },
	{ IN("BODY="), BAD_VALUE, 0, false, 0, false },
	{ IN("SMTPUTF8"), OK, 0, false, SMTP_BODY_7BIT, true },
	{ IN("smtputf8"), OK, 0, false, SMTP_BODY_7BIT, true },
	{ IN("SMTPUTF8="), BAD_VALUE, 0, false, 0, false },
	{ IN("SMTPUTF8=yes"), BAD_VALUE, 0, false, 0, false },
	{ IN("SIZE=1 SIZE=2"), BAD_VALUE, 0, false, 0, false },
	{ IN("BODY=7BIT body=7BIT"), BAD_VALUE, 0, false, 0, false },
	{ IN("SMTPUTF8 SMTPUTF8"), BAD_VALUE, 0, false, 0, false },
	{ IN(" SIZE=10  BODY=8BITMIME   SMTPUTF8 "), OK, 10, true, SMTP_BODY_8BITMIME, true },
	{ IN("SMTPUTF8 BODY=BINARYMIME SIZE=5"), OK, 5, true, SMTP_BODY_BINARYMIME, true },
	{ IN("RET=FULL"), UNKNOWN, 0, false, 0, false },
	{ IN("X-FOO"), UNKNOWN, 0, false, 0, false },
	{ IN("SIZE=1 AUTH=<>"), UNKNOWN, 0, false, 0, false },
	{ IN("AUTH=<> SIZE=x"), UNKNOWN, 0, false, 0, false },
	{ IN("SIZES=1"), UNKNOWN, 0, false, 0, false },
	{ IN("SIZ=1"), UNKNOWN, 0, false, 0, false },
	{ IN("=x"), SYNTAX, 0, false, 0, false },
	{ IN("-X"), SYNTAX, 0, false, 0, false },
	{ IN("SI_ZE=1"), SYNTAX, 0, false, 0, false },
	{ IN("SIZE=1\tBODY=7BIT"), BAD_VALUE, 0, false, 0, false },
};

static void test_mail_params(void)
{
	for (size_t i = 0; i < RMX_ARRAY_LEN(params_cases); i++) {
		const struct params_case *c = &params_cases[i];
		uint8_t *buf = exact_copy(c->input, c->input_len);
		struct smtp_mail_params mp;
		size_t failed_before = test_checks_failed;
		enum smtp_parse_result r = smtp_parse_mail_params(span_make(buf, c->input_len), &mp);
		CHECK_EQ_U(r, c->want);
		if (r == OK && c->want == OK) {
			CHECK_EQ_U(mp.size_bytes, c->size_bytes);
			CHECK_EQ_U(mp.size_given, c->size_given);
			CHECK_EQ_U(mp.body, c->body);
			CHECK_EQ_U(mp.smtputf8, c->smtputf8);
		}
		if (test_checks_failed != failed_before)
			fprintf(stderr, "  in params case \"%s\"\n", c->input);
		free(buf);
	}
	CHECK_EQ_U(smtp_parse_mail_params(span_make(NULL, 0), &(struct smtp_mail_params){ 0 }), OK);
}

static enum smtp_parse_result rcpt_params(const char *s)
{
	size_t n = strlen(s);
	uint8_t *buf = exact_copy(s, n);
	enum smtp_parse_result r = smtp_parse_rcpt_params(span_make(buf, n));
	free(buf);
	return r;
}

static void test_rcpt_params(void)
{
	CHECK_EQ_U(rcpt_params(""), OK);
	CHECK_EQ_U(rcpt_params("   "), OK);
	CHECK_EQ_U(rcpt_params("NOTIFY=NEVER"), UNKNOWN);
	CHECK_EQ_U(rcpt_params(" ORCPT=rfc822;a@b.example"), UNKNOWN);
	CHECK_EQ_U(rcpt_params("x"), UNKNOWN);
}

static void test_strip_keyword(void)
{
	struct span rest = { 0 };
	CHECK(smtp_strip_keyword(span_make("FROM:<a@b>", 10), "FROM:", &rest));
	CHECK_MEM(rest.ptr, rest.len, "<a@b>", 5);
	CHECK(smtp_strip_keyword(span_make("from:<>", 7), "FROM:", &rest));
	CHECK_MEM(rest.ptr, rest.len, "<>", 2);
	CHECK(smtp_strip_keyword(span_make("To: <x@y>", 9), "TO:", &rest));
	CHECK_MEM(rest.ptr, rest.len, " <x@y>", 6);
	CHECK(smtp_strip_keyword(span_make("TO:", 3), "TO:", &rest));
	CHECK_EQ_U(rest.len, 0);
	CHECK(!smtp_strip_keyword(span_make("FROM :<>", 8), "FROM:", &rest));
	CHECK(!smtp_strip_keyword(span_make("FRO", 3), "FROM:", &rest));
	CHECK(!smtp_strip_keyword(span_make("TO:<x>", 6), "FROM:", &rest));
	CHECK(!smtp_strip_keyword(span_make(NULL, 0), "TO:", &rest));
}

static void test_span_eq_nocase(void)
{
	CHECK(span_eq_nocase(span_make("LAST", 4), "last"));
	CHECK(span_eq_nocase(span_make("LaSt", 4), "lAsT"));
	CHECK(span_eq_nocase(span_make(NULL, 0), ""));
	CHECK(!span_eq_nocase(span_make("LAS", 3), "last"));
	CHECK(!span_eq_nocase(span_make("LASTS", 5), "last"));
	CHECK(!span_eq_nocase(span_make("[", 1), "{"));  /* '[' | 0x20 == '{' */
	CHECK(!span_eq_nocase(span_make("@", 1), "`"));
}

struct helo_case {
	const char *input;
	enum smtp_parse_result want;
	const char *name;
};

static const struct helo_case helo_cases[] = {
	{ "example.com", OK, "example.com" },
	{ "mx1.Example.COM", OK, "mx1.Example.COM" },
	{ "example.com trailing text", OK, "example.com" },
	{ " example.com", OK, "example.com" },
	{ "example.com.", OK, "example.com." },
	{ "localhost", OK, "localhost" },
	{ "1.2.3.4", OK, "1.2.3.4" },
	{ "[192.0.2.1]", OK, "[192.0.2.1]" },
	{ "[IPv6:::1]", OK, "[IPv6:::1]" },
	{ "[IPv6:2001:db8::25] x", OK, "[IPv6:2001:db8::25]" },
	{ "", SYNTAX, NULL },
	{ "   ", SYNTAX, NULL },
	{ "exa_mple.com", SYNTAX, NULL },
	{ "-example.com", SYNTAX, NULL },
	{ "example-.com", SYNTAX, NULL },
	{ "example..com", SYNTAX, NULL },
	{ ".example.com", SYNTAX, NULL },
	{ "example.com..", SYNTAX, NULL },
	{ "b\xc3\xbc" "cher.example", SYNTAX, NULL },
	{ "[1.2.3.4]x", SYNTAX, NULL },
	{ "[1.2.3.4", SYNTAX, NULL },
	{ "[1.2.3.400]", SYNTAX, NULL },
	{ "example.com\t", SYNTAX, NULL },
	{ "ex\x01mple.com", SYNTAX, NULL },
	{ "user@example.com", SYNTAX, NULL },
	{ "<example.com>", SYNTAX, NULL },
};

static void test_helo(void)
{
	for (size_t i = 0; i < RMX_ARRAY_LEN(helo_cases); i++) {
		const struct helo_case *c = &helo_cases[i];
		size_t n = strlen(c->input);
		uint8_t *buf = exact_copy(c->input, n);
		struct span name;
		size_t failed_before = test_checks_failed;
		enum smtp_parse_result r = smtp_parse_helo(span_make(buf, n), &name);
		CHECK_EQ_U(r, c->want);
		if (r == OK && c->want == OK) {
			CHECK_MEM(name.ptr, name.len, c->name, strlen(c->name));
			CHECK(name.ptr >= buf && name.ptr + name.len <= buf + n);
		}
		if (test_checks_failed != failed_before)
			fprintf(stderr, "  in helo case \"%s\"\n", c->input);
		free(buf);
	}

	/* 255 bytes then 256; a 64-byte label */
	char text[300];
	struct span name;
	for (size_t len = 255; len <= 256; len++) {
		fill_domain(text, len);
		uint8_t *buf = exact_copy(text, len);
		CHECK_EQ_U(smtp_parse_helo(span_make(buf, len), &name), len == 255 ? OK : TOO_LONG);
		if (len == 255)
			CHECK_EQ_U(name.len, 255);
		free(buf);
	}
	memset(text, 'h', 64);
	CHECK_EQ_U(smtp_parse_helo(span_make(text, 63), &name), OK);
	CHECK_EQ_U(smtp_parse_helo(span_make(text, 64), &name), SYNTAX);
}

struct bdat_case {
	const char *input;
	enum smtp_parse_result want;
	uint64_t size_bytes;
	bool last;
};

static const struct bdat_case bdat_cases[] = {
	{ "100", OK, 100, false },
	{ "100 LAST", OK, 100, true },
	{ "100 last", OK, 100, true },
	{ "  100   LaSt  ", OK, 100, true },
	{ "0 LAST", OK, 0, true },
	{ "0", OK, 0, false },
	{ "00000000000000000001", OK, 1, false },
	{ "9223372036854775808", OK, 1ull << 63, false },
	{ "9223372036854775809", OVERFLOW, 0, false },
	{ "18446744073709551616 LAST", OVERFLOW, 0, false },
	{ "99999999999999999999999", OVERFLOW, 0, false },
	{ "000000000000000000001", SYNTAX, 0, false },
	{ "", SYNTAX, 0, false },
	{ "  ", SYNTAX, 0, false },
	{ "LAST", SYNTAX, 0, false },
	{ "100 LAST x", SYNTAX, 0, false },
	{ "100 LASTX", SYNTAX, 0, false },
	{ "100 FIRST", SYNTAX, 0, false },
	{ "100 200", SYNTAX, 0, false },
	{ "-1", SYNTAX, 0, false },
	{ "+1", SYNTAX, 0, false },
	{ "1x", SYNTAX, 0, false },
	{ "0x10", SYNTAX, 0, false },
	{ "100\tLAST", SYNTAX, 0, false },
};

static void test_bdat(void)
{
	for (size_t i = 0; i < RMX_ARRAY_LEN(bdat_cases); i++) {
		const struct bdat_case *c = &bdat_cases[i];
		size_t n = strlen(c->input);
		uint8_t *buf = exact_copy(c->input, n);
		uint64_t size = 12345;
		bool last = true;
		size_t failed_before = test_checks_failed;
		enum smtp_parse_result r = smtp_parse_bdat(span_make(buf, n), &size, &last);
		CHECK_EQ_U(r, c->want);
		if (r == OK && c->want == OK) {
			CHECK_EQ_U(size, c->size_bytes);
			CHECK_EQ_U(last, c->last);
		}
		if (test_checks_failed != failed_before)
			fprintf(stderr, "  in bdat case \"%s\"\n", c->input);
		free(buf);
	}
}

int main(void)
{
	for (size_t i = 0; i < RMX_ARRAY_LEN(path_cases); i++)
		check_path_case(&path_cases[i]);
	test_path_limits();
	test_mail_params();
	test_rcpt_params();
	test_strip_keyword();
	test_span_eq_nocase();
	test_helo();
	test_bdat();
	return test_main_end("smtp_cmd");
}
