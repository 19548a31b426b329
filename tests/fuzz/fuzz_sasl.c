/*
 * fuzz_sasl.c - AUTH decoding (proto/sasl): the strict base64 decoder
 * against a reference written here, and whole PLAIN and LOGIN exchanges
 * driven by arbitrary client lines.
 *
 * Input: a settings byte (mechanism, initial response or not, decode
 * buffer size), then client lines separated by LF: the first is the
 * initial response, each next one answers a 334.
 * Invariants: the decoder accepts exactly what RFC 4648 section 4 allows
 * without whitespace (length a multiple of 4, padding only at the end,
 * zero pad bits), decodes the same bytes as the reference, reports a buffer
 * too small without writing past it, and decodes what the reference
 * encoder wrote back to the original bytes; an exchange replies with whole
 * "ddd ..." CRLF lines, fails with an error that has its reply, and finishes
 * with non-empty credentials without NUL inside the decode buffer, which
 * for PLAIN are the fields of the decoded message (authzid empty or equal
 * to authcid); sasl_wipe leaves none of their bytes behind.
 */
#include "../../proto/sasl.h"

#include "fuzz_common.h"

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int ref_value(uint8_t c)
{
	const char *at = c ? strchr(alphabet, c) : NULL;
	return at ? (int)(at - alphabet) : -1;
}

/* Strict decoding, byte by byte; -1 when malformed. */
static ssize_t ref_decode(const uint8_t *in, size_t len, uint8_t *out)
{
	if (len % 4)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int v[4];
		unsigned pads = 0;
		for (int k = 0; k < 4; k++) {
			uint8_t c = in[i + k];
			if (c == '=' && last && k >= 2) {
				v[k] = 0;
				pads++;
				continue;
			}
			if (pads)
				return -1; /* data after padding */
			v[k] = ref_value(c);
			if (v[k] < 0)
				return -1;
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		if (pads == 2 && (w & 0xffff))
			return -1; /* pad bits */
		if (pads == 1 && (w & 0xff))
			return -1;
		out[o++] = (uint8_t)(w >> 16);
		if (pads < 2)
			out[o++] = (uint8_t)(w >> 8);
		if (pads < 1)
			out[o++] = (uint8_t)w;
	}
	return (ssize_t)o;
}

static size_t ref_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t w = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			w |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			w |= in[i + 2];
		out[o++] = alphabet[w >> 18 & 63];
		out[o++] = alphabet[w >> 12 & 63];
		out[o++] = i + 1 < n ? alphabet[w >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? alphabet[w & 63] : '=';
	}
	return o;
}

static void check_base64(const uint8_t *p, size_t n)
{
	uint8_t *want = malloc(n + 1), *got = malloc(n + 1);
	FUZZ_CHECK(want != NULL && got != NULL);
	ssize_t w = ref_decode(p, n, want);
	ssize_t g = sasl_base64_decode(p, n, got, n + 1);
	FUZZ_CHECK(g == w);
	if (w > 0) {
		FUZZ_CHECK(memcmp(want, got, (size_t)w) == 0);
		/* One byte short: -2, and nothing past that buffer. */
		uint8_t *short_out = malloc((size_t)w - 1 ? (size_t)w - 1 : 1);
		FUZZ_CHECK(short_out != NULL);
		FUZZ_CHECK(sasl_base64_decode(p, n, short_out, (size_t)w - 1) == -2);
		free(short_out);
	}
	/* Encoded by the reference, the bytes decode back to themselves. */
	char *enc = malloc(4 * (n / 3 + 1));
	FUZZ_CHECK(enc != NULL);
	size_t e = ref_encode(p, n, enc);
	uint8_t *copy = fuzz_exact_copy((const uint8_t *)enc, e);
	FUZZ_CHECK(sasl_base64_decode(copy, e, got, n + 1) == (ssize_t)n);
	FUZZ_CHECK(n == 0 || memcmp(got, p, n) == 0);
	free(copy);
	free(enc);
	free(want);
	free(got);
}

static void check_reply(const struct sasl_result *r)
{
	FUZZ_CHECK(r->reply.len >= 6 && r->reply.ptr != NULL);
	const uint8_t *t = r->reply.ptr;
	FUZZ_CHECK(t[0] >= '2' && t[0] <= '5' && t[3] == ' ');
	FUZZ_CHECK(t[r->reply.len - 2] == '\r' && t[r->reply.len - 1] == '\n');
	for (size_t i = 0; i + 2 < r->reply.len; i++)
		FUZZ_CHECK(t[i] >= 0x20 && t[i] < 0x7f);
}

static bool has_nul(struct span s)
{
	return s.len && memchr(s.ptr, '\0', s.len) != NULL;
}

/* PLAIN's message, decoded by the reference: its three fields. */
static bool plain_fields(struct span line, struct span f[3], uint8_t *scratch)
{
	ssize_t n = ref_decode(line.ptr, line.len, scratch);
	if (n < 0)
		return false;
	uint8_t *a = memchr(scratch, 0, (size_t)n);
	if (!a)
		return false;
	uint8_t *b = memchr(a + 1, 0, (size_t)n - (size_t)(a + 1 - scratch));
	if (!b)
		return false;
	f[0] = span_make(scratch, (size_t)(a - scratch));
	f[1] = span_make(a + 1, (size_t)(b - a - 1));
	f[2] = span_make(b + 1, (size_t)n - (size_t)(b + 1 - scratch));
	return true;
}

static bool span_same(struct span a, struct span b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void exchange(uint8_t settings, const uint8_t *p, size_t n)
{
	static const char *const mechs[4] = { "PLAIN", "login", "CRAM-MD5", "" };
	static const size_t caps[4] = { SASL_DECODED_MAX_BYTES, 64, 7, 0 };
	size_t cap = caps[(settings >> 3) & 3];
	uint8_t *buf = malloc(cap ? cap : 1);
	FUZZ_CHECK(buf != NULL);
	struct sasl s;
	sasl_init(&s, cap ? buf : NULL, cap);

	const char *mech = mechs[settings & 3];
	bool has_initial = settings & 4;
	const uint8_t *line = p;
	const uint8_t *end = p + n;
	const uint8_t *lf = memchr(line, '\n', n);
	struct span first = span_make(line, (size_t)((lf ? lf : end) - line));
	line = lf ? lf + 1 : end;
	struct sasl_result r = sasl_start(&s, span_make(mech, strlen(mech)), has_initial,
					  has_initial ? first : span_make(p, 0));
	struct span last_line = first;
	bool plain_initial = has_initial && (settings & 3) == 0;
	for (unsigned turn = 0; r.status == SASL_CHALLENGE; turn++) {
		FUZZ_CHECK(turn < 4 && sasl_waiting(&s));
		check_reply(&r);
		FUZZ_CHECK(r.reply.ptr[0] == '3');
		if (line >= end) {
			r = sasl_feed_too_long(&s);
			break;
		}
		lf = memchr(line, '\n', (size_t)(end - line));
		last_line = span_make(line, (size_t)((lf ? lf : end) - line));
		line = lf ? lf + 1 : end;
		uint8_t *view = fuzz_exact_copy(last_line.ptr, last_line.len);
		r = sasl_feed(&s, span_make(view, last_line.len));
		free(view);
		plain_initial = (settings & 3) == 0;
	}
	FUZZ_CHECK(!sasl_waiting(&s));
	if (r.status == SASL_FAILED) {
		FUZZ_CHECK(r.error != SASL_ERR_NONE && r.error < SASL_ERR_COUNT);
		check_reply(&r);
		struct span e = sasl_error_reply(r.error);
		FUZZ_CHECK(span_same(e, r.reply));
	} else {
		FUZZ_CHECK(r.status == SASL_DONE);
		struct sasl_creds c = r.creds;
		FUZZ_CHECK(c.authcid.len > 0 && c.password.len > 0);
		FUZZ_CHECK(!has_nul(c.authcid) && !has_nul(c.password) && !has_nul(c.authzid));
		FUZZ_CHECK(fuzz_span_within(c.authcid.ptr, c.authcid.len, buf, cap));
		FUZZ_CHECK(fuzz_span_within(c.password.ptr, c.password.len, buf, cap));
		FUZZ_CHECK(c.authzid.len == 0 || span_same(c.authzid, c.authcid));
		if (plain_initial) {
			uint8_t *scratch = malloc(last_line.len + 1);
			FUZZ_CHECK(scratch != NULL);
			struct span f[3];
			FUZZ_CHECK(plain_fields(last_line, f, scratch));
			FUZZ_CHECK(span_same(f[0], c.authzid) && span_same(f[1], c.authcid) &&
				   span_same(f[2], c.password));
			free(scratch);
		}
		sasl_wipe(&s);
		for (size_t i = 0; i < c.password.len; i++)
			FUZZ_CHECK(c.password.ptr[i] == 0);
		for (size_t i = 0; i < c.authcid.len; i++)
			FUZZ_CHECK(c.authcid.ptr[i] == 0);
	}
	sasl_wipe(&s);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	uint8_t settings = fuzz_u8(&in);
	uint8_t *copy = fuzz_exact_copy(in.p, in.n);
	check_base64(copy, in.n);
	exchange(settings, copy, in.n);
	free(copy);
	return 0;
}
