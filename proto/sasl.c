/*
 * sasl.c - AUTH PLAIN (RFC 4616) and AUTH LOGIN, the server side, line by line.
 *
 * Sits between the session's AUTH command and core/auth_verify: the session
 * feeds it the mechanism, the initial response and each response line; it
 * answers with 334 challenges, with the credentials (spans into the caller's
 * buffer), or with the reply that ends the exchange. It never checks a
 * password. Invariants: nothing is written outside buf[0..cap_bytes); the
 * credentials handed out hold no NUL and authcid and password are non-empty;
 * every reply is one of the static lines below.
 *
 * Replies (RFC 4954 section 6, and what Dovecot behind Postfix answers):
 * undecodable base64 is 501 5.5.2; "*" is 501 5.7.0; an over-long line is
 * 500 5.5.6; an unknown mechanism 504 5.5.4. A response that decodes but is
 * not a valid PLAIN or LOGIN message (RFC 4616 section 2: exactly two NULs,
 * authcid and passwd of one octet or more), or that asks for an authzid other
 * than the authcid (we have no proxy authorization), fails the exchange as a
 * failed authentication does: 535 5.7.8, so that it counts against the
 * client's failure limit.
 */
#include "sasl.h"

#include <string.h>
#include <strings.h>

enum sasl_step {
	STEP_IDLE,
	STEP_PLAIN_RESPONSE,  /* "334 " sent, waiting for the PLAIN message */
	STEP_LOGIN_USER,      /* "334 VXNlcm5hbWU6" (Username:) sent */
	STEP_LOGIN_PASSWORD,  /* "334 UGFzc3dvcmQ6" (Password:) sent */
};

#define REPLY(text) { (const uint8_t *)(text), sizeof(text) - 1 }

static const struct span reply_plain_challenge = REPLY("334 \r\n");
static const struct span reply_login_user = REPLY("334 VXNlcm5hbWU6\r\n");
static const struct span reply_login_password = REPLY("334 UGFzc3dvcmQ6\r\n");

static const struct span error_reply[SASL_ERR_COUNT] = {
	[SASL_ERR_NONE] = REPLY(""),
	[SASL_ERR_UNKNOWN_MECH] = REPLY("504 5.5.4 Unrecognized authentication type\r\n"),
	[SASL_ERR_BAD_BASE64] = REPLY("501 5.5.2 Cannot decode response\r\n"),
	[SASL_ERR_MALFORMED] = REPLY("535 5.7.8 Authentication credentials invalid\r\n"),
	[SASL_ERR_CANCELLED] = REPLY("501 5.7.0 Authentication cancelled\r\n"),
	[SASL_ERR_TOO_LONG] = REPLY("500 5.5.6 Authentication exchange line is too long\r\n"),
	[SASL_ERR_AUTHZID] = REPLY("535 5.7.8 Authentication credentials invalid\r\n"),
};

static const char *const mech_name[SASL_MECH_COUNT] = {
	[SASL_MECH_PLAIN] = "PLAIN",
	[SASL_MECH_LOGIN] = "LOGIN",
};
static const char *const mech_label[SASL_MECH_COUNT] = {
	[SASL_MECH_PLAIN] = "plain",
	[SASL_MECH_LOGIN] = "login",
};

/*
 * Base64 character classes: 0..63 the digit's value, PAD for '=', BAD for
 * everything else (space, CR, LF, '-', '_', controls, 8-bit bytes).
 */
#define B64_PAD 64
#define B64_BAD 255
static const uint8_t b64_value[256] = {
	/* 0x00-0x1f: controls */
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	/* 0x20-0x2f: space ! " # $ % & ' ( ) * + , - . / ('+' is 62, '/' is 63) */
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 62, 255, 255, 255, 63,
	/* 0x30-0x3f: 0-9 are 52..61; '=' is padding */
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 255, 255, 255, 64, 255, 255,
	/* 0x40-0x5f: @ A-Z (0..25) [ \ ] ^ _ */
	255, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 255, 255, 255, 255, 255,
	/* 0x60-0x7f: ` a-z (26..51) { | } ~ DEL */
	255, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 255, 255, 255, 255, 255,
	/* 0x80-0xff: 8-bit bytes */
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
};

ssize_t sasl_base64_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	if (len % 4 != 0)
		return -1;
	if (len == 0)
		return 0;
	size_t pad = 0;
	if (in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	size_t out_len = len / 4 * 3 - pad;
	if (out_len > cap)
		return -2;

	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		size_t digits = last ? 4 - pad : 4;
		uint8_t v[4] = { 0, 0, 0, 0 };
		for (size_t k = 0; k < digits; k++) {
			v[k] = b64_value[in[i + k]];
			if (v[k] >= B64_PAD) /* '=' before the end, or not base64 at all */
				return -1;
		}
		out[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (digits >= 3)
			out[o++] = (uint8_t)(v[1] << 4 | v[2] >> 2);
		if (digits == 4)
			out[o++] = (uint8_t)(v[2] << 6 | v[3]);
		/* Canonical encoding only (RFC 4648 section 3.5): the bits the
		 * padding leaves over are zero. */
		if (digits == 2 && (v[1] & 0x0f) != 0)
			return -1;
		if (digits == 3 && (v[2] & 0x03) != 0)
			return -1;
	}
	RMX_ASSERT(o == out_len);
	return (ssize_t)o;
}

void sasl_init(struct sasl *s, uint8_t *buf, size_t cap_bytes)
{
	RMX_ASSERT(buf != NULL || cap_bytes == 0);
	memset(s, 0, sizeof(*s));
	s->buf = buf;
	s->cap_bytes = cap_bytes;
	s->mech = SASL_MECH_COUNT;
	s->step = STEP_IDLE;
}

static struct sasl_result challenge(struct sasl *s, enum sasl_step step, struct span reply)
{
	s->step = (uint8_t)step;
	struct sasl_result r = { .status = SASL_CHALLENGE, .error = SASL_ERR_NONE,
				 .mech = (enum sasl_mech)s->mech, .reply = reply };
	return r;
}

static struct sasl_result fail(struct sasl *s, enum sasl_error e)
{
	RMX_ASSERT(e > SASL_ERR_NONE && e < SASL_ERR_COUNT);
	s->step = STEP_IDLE;
	struct sasl_result r = { .status = SASL_FAILED, .error = e,
				 .mech = (enum sasl_mech)s->mech, .reply = error_reply[e] };
	return r;
}

static struct sasl_result done(struct sasl *s, struct span authzid, struct span authcid,
			       struct span password)
{
	s->step = STEP_IDLE;
	struct sasl_result r = { .status = SASL_DONE, .error = SASL_ERR_NONE,
				 .mech = (enum sasl_mech)s->mech };
	r.creds.authzid = authzid;
	r.creds.authcid = authcid;
	r.creds.password = password;
	return r;
}

/* Decodes one response into buf[at..cap): its length, or an error. */
static enum sasl_error decode_at(struct sasl *s, size_t at, struct span line, size_t *len)
{
	if (line.len > SASL_RESPONSE_LINE_MAX_BYTES)
		return SASL_ERR_TOO_LONG;
	RMX_ASSERT(at <= s->cap_bytes);
	/* No pointer arithmetic on a missing buffer (NULL, 0). */
	uint8_t *out = s->buf != NULL ? s->buf + at : NULL;
	ssize_t n = sasl_base64_decode(line.ptr, line.len, out, s->cap_bytes - at);
	if (n == -2)
		return SASL_ERR_TOO_LONG;
	if (n < 0)
		return SASL_ERR_BAD_BASE64;
	*len = (size_t)n;
	return SASL_ERR_NONE;
}

/* RFC 4616 section 2: message = [authzid] NUL authcid NUL passwd. */
static struct sasl_result plain_message(struct sasl *s, size_t len)
{
	const uint8_t *m = s->buf;
	if (len == 0) /* no NUL at all; and m may be NULL, which memchr must not see */
		return fail(s, SASL_ERR_MALFORMED);
	const uint8_t *nul1 = memchr(m, 0, len);
	if (nul1 == NULL)
		return fail(s, SASL_ERR_MALFORMED);
	size_t a = (size_t)(nul1 - m);
	const uint8_t *nul2 = memchr(nul1 + 1, 0, len - a - 1);
	if (nul2 == NULL)
		return fail(s, SASL_ERR_MALFORMED);
	size_t b = (size_t)(nul2 - m);
	if (memchr(nul2 + 1, 0, len - b - 1) != NULL)
		return fail(s, SASL_ERR_MALFORMED);
	struct span authzid = span_make(m, a);
	struct span authcid = span_make(m + a + 1, b - a - 1);
	struct span password = span_make(m + b + 1, len - b - 1);
	if (authcid.len == 0 || password.len == 0)
		return fail(s, SASL_ERR_MALFORMED);
	if (authzid.len != 0 &&
	    (authzid.len != authcid.len || memcmp(authzid.ptr, authcid.ptr, authcid.len) != 0))
		return fail(s, SASL_ERR_AUTHZID);
	return done(s, authzid, authcid, password);
}

/* LOGIN's user name, decoded at buf[0..len): non-empty, no NUL. */
static struct sasl_result login_user(struct sasl *s, size_t len)
{
	if (len == 0 || memchr(s->buf, 0, len) != NULL)
		return fail(s, SASL_ERR_MALFORMED);
	s->user_len = len;
	return challenge(s, STEP_LOGIN_PASSWORD, reply_login_password);
}

static struct sasl_result login_password(struct sasl *s, size_t len)
{
	const uint8_t *p = s->buf + s->user_len;
	if (len == 0 || memchr(p, 0, len) != NULL)
		return fail(s, SASL_ERR_MALFORMED);
	return done(s, span_make(s->buf, 0), span_make(s->buf, s->user_len), span_make(p, len));
}

static bool mech_parse(struct span name, enum sasl_mech *out)
{
	for (unsigned m = 0; m < SASL_MECH_COUNT; m++) {
		size_t n = strlen(mech_name[m]);
		if (name.len == n && strncasecmp((const char *)name.ptr, mech_name[m], n) == 0) {
			*out = (enum sasl_mech)m;
			return true;
		}
	}
	return false;
}

struct sasl_result sasl_start(struct sasl *s, struct span mechanism, bool has_initial,
			      struct span initial)
{
	s->step = STEP_IDLE;
	s->user_len = 0;
	s->mech = SASL_MECH_COUNT;
	enum sasl_mech m;
	if (!mech_parse(mechanism, &m))
		return fail(s, SASL_ERR_UNKNOWN_MECH);
	s->mech = (uint8_t)m;

	if (!has_initial) {
		if (m == SASL_MECH_PLAIN)
			return challenge(s, STEP_PLAIN_RESPONSE, reply_plain_challenge);
		return challenge(s, STEP_LOGIN_USER, reply_login_user);
	}
	/* RFC 4954 section 4: "=" is a zero-length initial response. */
	size_t len = 0;
	if (!(initial.len == 1 && initial.ptr[0] == '=')) {
		enum sasl_error e = decode_at(s, 0, initial, &len);
		if (e != SASL_ERR_NONE)
			return fail(s, e);
	}
	if (m == SASL_MECH_PLAIN)
		return plain_message(s, len);
	return login_user(s, len);
}

struct sasl_result sasl_feed(struct sasl *s, struct span line)
{
	RMX_ASSERT(sasl_waiting(s));
	/* RFC 4954 section 4: a line holding only "*" cancels the exchange. */
	if (line.len == 1 && line.ptr[0] == '*')
		return fail(s, SASL_ERR_CANCELLED);
	size_t at = s->step == STEP_LOGIN_PASSWORD ? s->user_len : 0;
	size_t len = 0;
	enum sasl_error e = decode_at(s, at, line, &len);
	if (e != SASL_ERR_NONE)
		return fail(s, e);
	switch ((enum sasl_step)s->step) {
	case STEP_PLAIN_RESPONSE: return plain_message(s, len);
	case STEP_LOGIN_USER: return login_user(s, len);
	case STEP_LOGIN_PASSWORD: return login_password(s, len);
	case STEP_IDLE: break;
	}
	RMX_ASSERT(!"sasl_feed without a challenge");
	return fail(s, SASL_ERR_MALFORMED);
}

struct sasl_result sasl_feed_too_long(struct sasl *s)
{
	RMX_ASSERT(sasl_waiting(s));
	return fail(s, SASL_ERR_TOO_LONG);
}

bool sasl_waiting(const struct sasl *s)
{
	return s->step != STEP_IDLE;
}

void sasl_wipe(struct sasl *s)
{
	if (s->buf != NULL)
		explicit_bzero(s->buf, s->cap_bytes);
	s->step = STEP_IDLE;
	s->user_len = 0;
}

const char *sasl_mech_label(enum sasl_mech m)
{
	RMX_ASSERT((unsigned)m < SASL_MECH_COUNT);
	return mech_label[m];
}

struct span sasl_error_reply(enum sasl_error e)
{
	RMX_ASSERT(e > SASL_ERR_NONE && e < SASL_ERR_COUNT);
	return error_reply[e];
}
