/*
 * test_sasl.c - AUTH PLAIN and LOGIN exchanges and the strict base64 decoder.
 *
 * The decoder is checked against an encoder written here for every input
 * length from 0 to 300 (each encoding in a heap block of exactly its size,
 * each output buffer exactly as large as needed and one byte smaller), with
 * every one of the 256 byte values at every position of an encoding, with
 * every length that is not a multiple of 4, and with each kind of bad
 * padding. The exchanges are checked for each reply RFC 4954 and RFC 4616
 * call for: challenges, credentials, cancel, bad base64, over-long lines,
 * NUL rules, authzid, unknown mechanisms; PLAIN messages of every length and
 * NUL placement; and every truncation of a valid initial response.
 */
#include "../proto/sasl.h"
#include "test.h"

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Reference encoder (RFC 4648 section 4, padded). Returns the length. */
static size_t encode(const uint8_t *in, size_t len, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = i + 1 < len ? b64_alphabet[v >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
	}
	return o;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint8_t rnd8(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint8_t)(rng_state >> 24);
}

/* Decodes text (copied into a block of exactly its size) into a block of
 * exactly cap bytes; out receives up to out_cap decoded bytes. */
static ssize_t decode_exact(const char *text, size_t len, size_t cap, uint8_t *out, size_t out_cap)
{
	uint8_t *in = malloc(len ? len : 1);
	uint8_t *o = malloc(cap ? cap : 1);
	REQUIRE(in && o);
	memcpy(in, text, len);
	ssize_t n = sasl_base64_decode(in, len, o, cap);
	if (n > 0)
		memcpy(out, o, RMX_MIN((size_t)n, out_cap));
	free(in);
	free(o);
	return n;
}

static void test_decode_round_trip(void)
{
	uint8_t raw[300], got[300];
	char text[404];
	for (size_t len = 0; len <= sizeof raw; len++) {
		for (size_t i = 0; i < len; i++)
			raw[i] = rnd8();
		size_t tl = encode(raw, len, text);
		CHECK_EQ_U(tl, (len + 2) / 3 * 4);
		ssize_t n = decode_exact(text, tl, len, got, sizeof got);
		CHECK_EQ_U(n, len);
		if (n == (ssize_t)len)
			CHECK(memcmp(got, raw, len) == 0);
		if (len > 0)
			CHECK_EQ_U(decode_exact(text, tl, len - 1, got, sizeof got), (uint64_t)-2);
	}
	/* Known vectors (RFC 4648 section 10). */
	static const struct { const char *text, *raw; } vec[] = {
		{ "", "" }, { "Zg==", "f" }, { "Zm8=", "fo" }, { "Zm9v", "foo" },
		{ "Zm9vYg==", "foob" }, { "Zm9vYmE=", "fooba" }, { "Zm9vYmFy", "foobar" },
	};
	for (size_t i = 0; i < RMX_ARRAY_LEN(vec); i++) {
		size_t rl = strlen(vec[i].raw);
		ssize_t n = decode_exact(vec[i].text, strlen(vec[i].text), rl, got, sizeof got);
		CHECK_EQ_U(n, rl);
		CHECK_MEM(got, (size_t)(n < 0 ? 0 : n), vec[i].raw, rl);
	}
}

static void test_decode_bad_lengths(void)
{
	char text[80];
	uint8_t got[64];
	for (size_t len = 1; len < sizeof text; len++) {
		for (size_t i = 0; i < len; i++)
			text[i] = 'A';
		ssize_t n = decode_exact(text, len, sizeof got, got, sizeof got);
		if (len % 4 == 0)
			CHECK_EQ_U(n, len / 4 * 3);
		else
			CHECK_EQ_U(n, (uint64_t)-1);
		/* The same lengths with padding where it would be legal. */
		if (len >= 2) {
			text[len - 1] = '=';
			n = decode_exact(text, len, sizeof got, got, sizeof got);
			CHECK_EQ_U(n, len % 4 == 0 ? len / 4 * 3 - 1 : (uint64_t)-1);
		}
	}
}

/* Every byte value at every position of a 12-character encoding of 9
 * bytes (no padding): valid exactly when the byte is in the alphabet. */
static void test_decode_every_byte_everywhere(void)
{
	uint8_t raw[9], got[9];
	char text[12];
	for (size_t i = 0; i < sizeof raw; i++)
		raw[i] = rnd8();
	REQUIRE(encode(raw, sizeof raw, text) == 12);
	for (size_t pos = 0; pos < sizeof text; pos++) {
		for (unsigned c = 0; c < 256; c++) {
			char t[12];
			memcpy(t, text, sizeof t);
			t[pos] = (char)c;
			bool ok = c != 0 && strchr(b64_alphabet, (int)c) != NULL;
			ssize_t n = decode_exact(t, sizeof t, sizeof got, got, sizeof got);
			CHECK_EQ_U(n, ok ? 9 : (uint64_t)-1);
		}
	}
}

static void test_decode_padding(void)
{
	static const struct { const char *text; ssize_t want; } cases[] = {
		{ "AA==", 1 }, { "AAA=", 2 }, { "AAAA", 3 },
		{ "====", -1 }, { "A===", -1 }, { "=AAA", -1 }, { "AA=A", -1 }, { "A=AA", -1 },
		{ "=A==", -1 }, { "AA==AAAA", -1 }, { "AAA=AAAA", -1 }, { "AAAA====", -1 },
		{ "AB==", -1 },   /* pad bits set: not canonical */
		{ "AAB=", -1 },
		{ "AQ==", 1 }, { "AAE=", 2 },
		{ "AA== ", -1 }, { " AA=", -1 }, { "AA\r\n", -1 }, { "Zm9v\n", -1 },
		{ "Zm9v-_==", -1 }, /* the URL-safe alphabet is not ours */
	};
	uint8_t got[16];
	for (size_t i = 0; i < RMX_ARRAY_LEN(cases); i++) {
		ssize_t n = decode_exact(cases[i].text, strlen(cases[i].text), sizeof got, got,
					 sizeof got);
		if (n != cases[i].want)
			fprintf(stderr, "case \"%s\": %zd\n", cases[i].text, n);
		CHECK(n == cases[i].want);
	}
}

/* ---- exchanges ---- */

static uint8_t sbuf[SASL_DECODED_MAX_BYTES];

static struct span S(const char *t)
{
	return span_make(t, strlen(t));
}

static struct span enc(const void *raw, size_t len)
{
	static char text[SASL_RESPONSE_LINE_MAX_BYTES + 8];
	REQUIRE((len + 2) / 3 * 4 <= sizeof text);
	return span_make(text, encode(raw, len, text));
}

static bool reply_is(struct sasl_result r, const char *text)
{
	return r.reply.len == strlen(text) && memcmp(r.reply.ptr, text, r.reply.len) == 0;
}

static bool span_is(struct span s, const char *text)
{
	return s.len == strlen(text) && memcmp(s.ptr, text, s.len) == 0;
}

#define PLAIN(lit) enc(lit, sizeof(lit) - 1)

static void test_plain(void)
{
	struct sasl s;
	sasl_init(&s, sbuf, sizeof sbuf);
	CHECK(!sasl_waiting(&s));

	/* Initial response. */
	struct sasl_result r = sasl_start(&s, S("PLAIN"), true, PLAIN("\0alice\0secret"));
	CHECK(r.status == SASL_DONE);
	CHECK(r.mech == SASL_MECH_PLAIN);
	CHECK(span_is(r.creds.authcid, "alice"));
	CHECK(span_is(r.creds.password, "secret"));
	CHECK(r.creds.authzid.len == 0);
	CHECK(!sasl_waiting(&s));

	/* authzid equal to authcid: accepted. */
	r = sasl_start(&s, S("plain"), true, PLAIN("alice\0alice\0secret"));
	CHECK(r.status == SASL_DONE);
	CHECK(span_is(r.creds.authzid, "alice"));
	/* Another authzid: refused as a failed authentication. */
	r = sasl_start(&s, S("Plain"), true, PLAIN("bob\0alice\0secret"));
	CHECK(r.status == SASL_FAILED && r.error == SASL_ERR_AUTHZID);
	CHECK(reply_is(r, "535 5.7.8 Authentication credentials invalid\r\n"));
	r = sasl_start(&s, S("PLAIN"), true, PLAIN("alic\0alice\0secret"));
	CHECK(r.error == SASL_ERR_AUTHZID);

	/* NUL rules: exactly two, authcid and password non-empty. */
	static const struct { const char *raw; size_t len; } bad[] = {
		{ "\0alice\0", 7 }, { "\0\0secret", 8 }, { "alice\0secret", 12 }, { "alicesecret", 11 },
		{ "\0alice\0sec\0ret", 14 }, { "\0alice\0secret\0", 14 }, { "\0", 1 }, { "\0\0", 2 },
		{ "\0\0\0", 3 }, { "", 0 },
	};
	for (size_t i = 0; i < RMX_ARRAY_LEN(bad); i++) {
		r = sasl_start(&s, S("PLAIN"), true, enc(bad[i].raw, bad[i].len));
		CHECK(r.status == SASL_FAILED && r.error == SASL_ERR_MALFORMED);
		CHECK(reply_is(r, "535 5.7.8 Authentication credentials invalid\r\n"));
	}
	/* "=" is an empty initial response: for PLAIN, malformed. */
	r = sasl_start(&s, S("PLAIN"), true, S("="));
	CHECK(r.status == SASL_FAILED && r.error == SASL_ERR_MALFORMED);
	/* Bad base64 in the initial response; "*" there is bad base64 too. */
	r = sasl_start(&s, S("PLAIN"), true, S("AGFsaWNlAHNlY3JldA="));
	CHECK(r.error == SASL_ERR_BAD_BASE64);
	CHECK(reply_is(r, "501 5.5.2 Cannot decode response\r\n"));
	r = sasl_start(&s, S("PLAIN"), true, S("*"));
	CHECK(r.error == SASL_ERR_BAD_BASE64);

	/* No initial response: an empty challenge, then the message. */
	r = sasl_start(&s, S("PLAIN"), false, span_make(NULL, 0));
	CHECK(r.status == SASL_CHALLENGE);
	CHECK(reply_is(r, "334 \r\n"));
	CHECK(sasl_waiting(&s));
	r = sasl_feed(&s, PLAIN("\0alice\0secret"));
	CHECK(r.status == SASL_DONE && span_is(r.creds.password, "secret"));

	/* Cancel. */
	r = sasl_start(&s, S("PLAIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, S("*"));
	CHECK(r.status == SASL_FAILED && r.error == SASL_ERR_CANCELLED);
	CHECK(reply_is(r, "501 5.7.0 Authentication cancelled\r\n"));
	CHECK(!sasl_waiting(&s));
	/* "**" or " *" is not a cancel, just bad base64. */
	r = sasl_start(&s, S("PLAIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, S("**"));
	CHECK(r.error == SASL_ERR_BAD_BASE64);
	/* An empty line is an empty response: malformed for PLAIN. */
	r = sasl_start(&s, S("PLAIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, S(""));
	CHECK(r.error == SASL_ERR_MALFORMED);
	/* A line with CR or a space in it. */
	r = sasl_start(&s, S("PLAIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, S("AGFsaWNlAHNlY3JldA== "));
	CHECK(r.error == SASL_ERR_BAD_BASE64);
	sasl_wipe(&s);
}

static void test_unknown_mechanism(void)
{
	struct sasl s;
	sasl_init(&s, sbuf, sizeof sbuf);
	static const char *const names[] = { "CRAM-MD5", "PLAI", "PLAINX", "", "LOGIN ", "XOAUTH2",
					     "SCRAM-SHA-256", "plain\0" };
	for (size_t i = 0; i < RMX_ARRAY_LEN(names); i++) {
		size_t len = strlen(names[i]) + (i == 7);
		struct sasl_result r = sasl_start(&s, span_make(names[i], len), false,
						  span_make(NULL, 0));
		CHECK(r.status == SASL_FAILED && r.error == SASL_ERR_UNKNOWN_MECH);
		CHECK(r.mech == SASL_MECH_COUNT);
		CHECK(reply_is(r, "504 5.5.4 Unrecognized authentication type\r\n"));
		CHECK(!sasl_waiting(&s));
	}
	CHECK(strcmp(sasl_mech_label(SASL_MECH_PLAIN), "plain") == 0);
	CHECK(strcmp(sasl_mech_label(SASL_MECH_LOGIN), "login") == 0);
}

static void test_login(void)
{
	struct sasl s;
	sasl_init(&s, sbuf, sizeof sbuf);
	struct sasl_result r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
	CHECK(r.status == SASL_CHALLENGE && r.mech == SASL_MECH_LOGIN);
	CHECK(reply_is(r, "334 VXNlcm5hbWU6\r\n"));
	r = sasl_feed(&s, PLAIN("alice"));
	CHECK(r.status == SASL_CHALLENGE);
	CHECK(reply_is(r, "334 UGFzc3dvcmQ6\r\n"));
	r = sasl_feed(&s, PLAIN("secret"));
	CHECK(r.status == SASL_DONE);
	CHECK(span_is(r.creds.authcid, "alice") && span_is(r.creds.password, "secret"));
	CHECK(r.creds.authzid.len == 0);

	/* Initial response: the user name. */
	r = sasl_start(&s, S("login"), true, PLAIN("alice"));
	CHECK(r.status == SASL_CHALLENGE && reply_is(r, "334 UGFzc3dvcmQ6\r\n"));
	r = sasl_feed(&s, PLAIN("secret"));
	CHECK(r.status == SASL_DONE && span_is(r.creds.authcid, "alice"));

	/* Cancel at each step. */
	r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, S("*"));
	CHECK(r.error == SASL_ERR_CANCELLED);
	r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, PLAIN("alice"));
	r = sasl_feed(&s, S("*"));
	CHECK(r.error == SASL_ERR_CANCELLED && !sasl_waiting(&s));

	/* No NUL in the user name or the password; neither empty. */
	r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, PLAIN("ali\0ce"));
	CHECK(r.error == SASL_ERR_MALFORMED);
	r = sasl_start(&s, S("LOGIN"), true, S("="));
	CHECK(r.error == SASL_ERR_MALFORMED);
	r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, S(""));
	CHECK(r.error == SASL_ERR_MALFORMED);
	r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, PLAIN("alice"));
	r = sasl_feed(&s, PLAIN("sec\0ret"));
	CHECK(r.error == SASL_ERR_MALFORMED);
	r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, PLAIN("alice"));
	r = sasl_feed(&s, S(""));
	CHECK(r.error == SASL_ERR_MALFORMED);
	/* Bad base64 at each step. */
	r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, S("YWxpY2U"));
	CHECK(r.error == SASL_ERR_BAD_BASE64);
	r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, PLAIN("alice"));
	r = sasl_feed(&s, S("c2VjcmV0="));
	CHECK(r.error == SASL_ERR_BAD_BASE64);
	sasl_wipe(&s);
}

static void test_line_bounds(void)
{
	struct sasl s;
	sasl_init(&s, sbuf, sizeof sbuf);
	/* The longest line: 12288 characters, 9216 bytes, a valid message. */
	static uint8_t raw[SASL_DECODED_MAX_BYTES];
	memset(raw, 'p', sizeof raw);
	raw[0] = 0;
	raw[5] = 0;
	struct span line = enc(raw, sizeof raw);
	CHECK_EQ_U(line.len, SASL_RESPONSE_LINE_MAX_BYTES);
	struct sasl_result r = sasl_start(&s, S("PLAIN"), true, line);
	CHECK(r.status == SASL_DONE);
	CHECK_EQ_U(r.creds.authcid.len, 4);
	CHECK_EQ_U(r.creds.password.len, sizeof raw - 6);
	r = sasl_start(&s, S("PLAIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, line);
	CHECK(r.status == SASL_DONE);

	/* One more character: too long, whatever it holds. */
	static char longer[SASL_RESPONSE_LINE_MAX_BYTES + 4];
	memcpy(longer, line.ptr, line.len);
	memcpy(longer + line.len, "AAAA", 4);
	r = sasl_start(&s, S("PLAIN"), true, span_make(longer, line.len + 1));
	CHECK(r.error == SASL_ERR_TOO_LONG);
	CHECK(reply_is(r, "500 5.5.6 Authentication exchange line is too long\r\n"));
	r = sasl_start(&s, S("PLAIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, span_make(longer, line.len + 4));
	CHECK(r.error == SASL_ERR_TOO_LONG && !sasl_waiting(&s));
	r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
	r = sasl_feed_too_long(&s);
	CHECK(r.error == SASL_ERR_TOO_LONG && !sasl_waiting(&s));

	/* LOGIN: user and password together larger than the buffer. */
	memset(raw, 'u', sizeof raw);
	r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
	r = sasl_feed(&s, enc(raw, sizeof raw - 3));
	CHECK(r.status == SASL_CHALLENGE);
	r = sasl_feed(&s, enc(raw, 6));
	CHECK(r.error == SASL_ERR_TOO_LONG);

	/* A small buffer: what does not fit is too long, never written past. */
	uint8_t *small = malloc(8);
	REQUIRE(small);
	sasl_init(&s, small, 8);
	r = sasl_start(&s, S("PLAIN"), true, PLAIN("\0al\0pass"));
	CHECK(r.status == SASL_DONE);
	r = sasl_start(&s, S("PLAIN"), true, PLAIN("\0al\0passw"));
	CHECK(r.error == SASL_ERR_TOO_LONG);
	sasl_wipe(&s);
	free(small);
}

/* No buffer at all (sasl_init allows NULL with a zero size): every response
 * that decodes to something is too long, an empty one is malformed, and no
 * pointer is formed from the missing buffer (found by the fuzzer, which
 * UBSan stopped at "applying zero offset to null pointer"). */
static void test_no_buffer(void)
{
	struct sasl s;
	sasl_init(&s, NULL, 0);
	struct sasl_result r = sasl_start(&s, S("PLAIN"), true, S("="));
	CHECK(r.status == SASL_FAILED && r.error == SASL_ERR_MALFORMED);
	r = sasl_start(&s, S("PLAIN"), true, PLAIN("\0al\0pass"));
	CHECK(r.status == SASL_FAILED && r.error == SASL_ERR_TOO_LONG);
	r = sasl_start(&s, S("PLAIN"), false, span_make(NULL, 0));
	CHECK(r.status == SASL_CHALLENGE);
	r = sasl_feed(&s, span_make(NULL, 0));
	CHECK(r.status == SASL_FAILED && r.error == SASL_ERR_MALFORMED);
	r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
	CHECK(r.status == SASL_CHALLENGE);
	r = sasl_feed(&s, S("dXNlcg=="));
	CHECK(r.status == SASL_FAILED && r.error == SASL_ERR_TOO_LONG);
	r = sasl_start(&s, S("LOGIN"), true, S("="));
	CHECK(r.status == SASL_FAILED && r.error == SASL_ERR_MALFORMED);
	sasl_wipe(&s);
}

/* PLAIN messages of every length up to 64 with the two NULs at every pair of
 * places (and one or three NULs): the outcome follows RFC 4616's rules. */
static void test_plain_every_shape(void)
{
	struct sasl s;
	sasl_init(&s, sbuf, sizeof sbuf);
	uint8_t raw[64];
	for (size_t len = 0; len <= sizeof raw; len++) {
		for (size_t a = 0; a <= len; a++) {
			for (size_t b = a; b <= len; b++) {
				memset(raw, 'x', len);
				size_t nuls = 0;
				if (a < len) {
					raw[a] = 0;
					nuls++;
				}
				if (b > a && b < len) {
					raw[b] = 0;
					nuls++;
				}
				struct sasl_result r = sasl_start(&s, S("PLAIN"), true, enc(raw, len));
				bool ok = nuls == 2 && b - a - 1 > 0 && len - b - 1 > 0 && a == 0;
				bool authzid = nuls == 2 && b - a - 1 > 0 && len - b - 1 > 0 && a != 0;
				if (ok) {
					CHECK(r.status == SASL_DONE);
					CHECK_EQ_U(r.creds.authcid.len, b - a - 1);
					CHECK_EQ_U(r.creds.password.len, len - b - 1);
				} else if (authzid) {
					/* "x..x" as authzid equals authcid only when as long. */
					bool same = a == b - a - 1;
					CHECK(same ? r.status == SASL_DONE : r.error == SASL_ERR_AUTHZID);
				} else {
					CHECK(r.status == SASL_FAILED && r.error == SASL_ERR_MALFORMED);
				}
			}
		}
	}
	/* A third NUL anywhere. */
	for (size_t c = 0; c < 16; c++) {
		memset(raw, 'x', 16);
		raw[0] = 0;
		raw[5] = 0;
		raw[c] = 0;
		if (c == 0 || c == 5)
			continue;
		struct sasl_result r = sasl_start(&s, S("PLAIN"), true, enc(raw, 16));
		CHECK(r.error == SASL_ERR_MALFORMED);
	}
}

/* Every prefix of a valid response: lengths not a multiple of 4 are bad
 * base64, the others decode and are judged as messages; never more. */
static void test_every_truncation(void)
{
	struct sasl s;
	sasl_init(&s, sbuf, sizeof sbuf);
	static const char raw[] = "\0someone@example.org\0a long enough password";
	char text[128];
	size_t tl = encode((const uint8_t *)raw, sizeof raw - 1, text);
	for (size_t mech = 0; mech < SASL_MECH_COUNT; mech++) {
		for (size_t len = 0; len <= tl; len++) {
			char *cut = malloc(len ? len : 1);
			REQUIRE(cut);
			memcpy(cut, text, len);
			struct sasl_result r;
			if (mech == SASL_MECH_PLAIN) {
				r = sasl_start(&s, S("PLAIN"), false, span_make(NULL, 0));
			} else {
				r = sasl_start(&s, S("LOGIN"), false, span_make(NULL, 0));
				r = sasl_feed(&s, PLAIN("user"));
			}
			REQUIRE(r.status == SASL_CHALLENGE);
			r = sasl_feed(&s, span_make(cut, len));
			if (len % 4 != 0) {
				CHECK(r.error == SASL_ERR_BAD_BASE64);
			} else if (mech == SASL_MECH_PLAIN && len / 4 * 3 >= 22) {
				/* Both NULs and a password byte (a prefix of it). */
				CHECK(r.status == SASL_DONE);
				CHECK_EQ_U(r.creds.password.len,
					   RMX_MIN(len / 4 * 3, sizeof raw - 1) - 21);
			} else if (mech == SASL_MECH_LOGIN) {
				/* The raw message starts with a NUL. */
				CHECK(r.error == SASL_ERR_MALFORMED);
			} else {
				CHECK(r.status == SASL_FAILED && r.error == SASL_ERR_MALFORMED);
			}
			CHECK(r.status == SASL_DONE || r.reply.len > 2);
			free(cut);
		}
	}
}

/* Random lines, random states: every answer is one of the statuses with a
 * reply ending in CRLF, and the state machine never asserts. */
static void test_random_lines(void)
{
	struct sasl s;
	sasl_init(&s, sbuf, sizeof sbuf);
	char line[64];
	for (unsigned i = 0; i < 200000; i++) {
		size_t len = rnd8() % sizeof line;
		bool b64ish = rnd8() & 1;
		for (size_t k = 0; k < len; k++)
			line[k] = b64ish ? b64_alphabet[rnd8() % 64] : (char)rnd8();
		if (b64ish && len >= 2 && (rnd8() & 1))
			line[len - 1] = '=';
		if (!sasl_waiting(&s)) {
			struct sasl_result r = sasl_start(&s, S((rnd8() & 1) ? "PLAIN" : "LOGIN"),
							  false, span_make(NULL, 0));
			REQUIRE(r.status == SASL_CHALLENGE);
		}
		struct sasl_result r = sasl_feed(&s, span_make(line, len));
		CHECK(r.status == SASL_CHALLENGE || r.status == SASL_DONE || r.status == SASL_FAILED);
		if (r.status != SASL_DONE)
			CHECK(r.reply.len >= 3 && r.reply.ptr[r.reply.len - 2] == '\r' &&
			      r.reply.ptr[r.reply.len - 1] == '\n');
		if (r.status == SASL_DONE) {
			CHECK(r.creds.authcid.len > 0 && r.creds.password.len > 0);
			CHECK(memchr(r.creds.authcid.ptr, 0, r.creds.authcid.len) == NULL);
			CHECK(memchr(r.creds.password.ptr, 0, r.creds.password.len) == NULL);
		}
	}
}

static void test_wipe(void)
{
	struct sasl s;
	sasl_init(&s, sbuf, sizeof sbuf);
	struct sasl_result r = sasl_start(&s, S("PLAIN"), true, PLAIN("\0alice\0secret"));
	CHECK(r.status == SASL_DONE);
	CHECK(memmem(sbuf, sizeof sbuf, "secret", 6) != NULL);
	sasl_wipe(&s);
	CHECK(memmem(sbuf, sizeof sbuf, "secret", 6) == NULL);
	CHECK(!sasl_waiting(&s));
	for (unsigned e = SASL_ERR_NONE + 1; e < SASL_ERR_COUNT; e++) {
		struct span rep = sasl_error_reply((enum sasl_error)e);
		CHECK(rep.len > 10 && rep.ptr[rep.len - 1] == '\n');
	}
}

int main(void)
{
	test_decode_round_trip();
	test_decode_bad_lengths();
	test_decode_every_byte_everywhere();
	test_decode_padding();
	test_plain();
	test_unknown_mechanism();
	test_login();
	test_line_bounds();
	test_no_buffer();
	test_plain_every_shape();
	test_every_truncation();
	test_random_lines();
	test_wipe();
	return test_main_end("test_sasl");
}
