/*
 * test_proxy.c - the PROXY protocol header parser (proto/proxy).
 *
 * Every valid header, followed by session bytes, is fed whole, one byte at a
 * time and split in two and in three at every offset; each chunk sits in a
 * heap block of exactly its size, so a read past it is an AddressSanitizer
 * error. All feedings must agree on the status, the bytes consumed and the
 * decoded header. Then: every field at its bounds (addresses, ports, line
 * length, v2 block length, unique id length), every prefix of a valid header
 * (always NEED_MORE), bad signatures in both modes, v1 lines with bad
 * addresses, ports and spacing, v2 heads with bad nibbles, and TLVs whose
 * lengths overrun their block or the SSL TLV.
 */
#include "../proto/proxy.h"
#include "test.h"

#include <arpa/inet.h>

struct outcome {
	enum proxy_status status;
	size_t consumed; /* from the start of the input */
	enum proxy_error error;
};

/* Feeds in[0..n) to p as chunks ending at the given cut offsets. */
static struct outcome feed_cuts(struct proxy_parser *p, enum proxy_mode mode, const uint8_t *in,
				size_t n, const size_t *cuts, size_t ncuts)
{
	proxy_parser_init(p, mode);
	struct outcome o = { PROXY_NEED_MORE, 0, PROXY_ERROR_NONE };
	size_t start = 0;
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : n;
		REQUIRE(end >= start && end <= n);
		size_t len = end - start;
		uint8_t *chunk = malloc(len ? len : 1);
		REQUIRE(chunk != NULL);
		memcpy(chunk, in + start, len);
		size_t used = ~(size_t)0;
		enum proxy_status st = proxy_parse(p, chunk, len, &used);
		free(chunk);
		o.status = st;
		if (st == PROXY_ERROR) {
			o.error = p->error;
			o.consumed = 0;
			return o;
		}
		REQUIRE(used <= len);
		o.consumed = start + used;
		if (st == PROXY_DONE)
			return o;
		if (st == PROXY_ABSENT) {
			REQUIRE(used == 0);
			o.consumed = start - proxy_parser_held(p).len;
			return o;
		}
		REQUIRE(used == len);
		start = end;
	}
	return o;
}

/* A span as an offset into its parser's buffer, comparable across parsers. */
static bool same_span(const struct proxy_parser *a, struct span x, const struct proxy_parser *b,
		      struct span y)
{
	if (x.len != y.len || (x.ptr == NULL) != (y.ptr == NULL))
		return false;
	return x.ptr == NULL || (x.ptr - a->buf == y.ptr - b->buf && memcmp(x.ptr, y.ptr, x.len) == 0);
}

static bool same_header(const struct proxy_parser *a, const struct proxy_parser *b)
{
	const struct proxy_header *x = &a->header, *y = &b->header;
	return x->version == y->version && x->local == y->local &&
	       x->address_known == y->address_known &&
	       memcmp(&x->source, &y->source, sizeof(x->source)) == 0 &&
	       memcmp(&x->destination, &y->destination, sizeof(x->destination)) == 0 &&
	       same_span(a, x->alpn, b, y->alpn) && same_span(a, x->authority, b, y->authority) &&
	       same_span(a, x->unique_id, b, y->unique_id) && x->ssl_present == y->ssl_present &&
	       x->ssl_client == y->ssl_client && x->ssl_verify == y->ssl_verify &&
	       same_span(a, x->ssl_version, b, y->ssl_version) &&
	       same_span(a, x->ssl_cipher, b, y->ssl_cipher) && same_span(a, x->ssl_cn, b, y->ssl_cn);
}

static bool same_outcome(const struct outcome *a, const struct outcome *b)
{
	return a->status == b->status && a->consumed == b->consumed && a->error == b->error;
}

/*
 * Feeds in whole, byte by byte, in two at every offset and in three at every
 * pair of offsets (inputs up to 160 bytes); every feeding must agree with
 * the whole one. Leaves the whole feeding's result in *whole.
 */
static struct outcome feed_every_way(struct proxy_parser *whole, enum proxy_mode mode,
				     const uint8_t *in, size_t n)
{
	static struct proxy_parser other; /* large: not on the stack */
	struct outcome w = feed_cuts(whole, mode, in, n, NULL, 0);
	size_t *cuts = malloc((n + 1) * sizeof(*cuts));
	REQUIRE(cuts != NULL);
	for (size_t i = 0; i < n; i++)
		cuts[i] = i + 1;
	struct outcome o = feed_cuts(&other, mode, in, n, cuts, n);
	CHECK(same_outcome(&w, &o));
	if (w.status == PROXY_DONE)
		CHECK(same_header(whole, &other));
	free(cuts);
	unsigned mismatches = 0;
	for (size_t i = 0; i <= n; i++) {
		o = feed_cuts(&other, mode, in, n, (size_t[]){ i }, 1);
		if (!same_outcome(&w, &o) || (w.status == PROXY_DONE && !same_header(whole, &other)))
			mismatches++;
		for (size_t j = i; n <= 160 && j <= n; j++) {
			o = feed_cuts(&other, mode, in, n, (size_t[]){ i, j }, 2);
			if (!same_outcome(&w, &o) ||
			    (w.status == PROXY_DONE && !same_header(whole, &other)))
				mismatches++;
		}
	}
	CHECK_EQ_U(mismatches, 0);
	return w;
}

static struct proxy_parser parser; /* the whole feeding's, inspected by the tests */

static const char *address_text(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	size_t n = proxy_address_text(ss, buf, cap);
	return n ? buf : "(none)";
}

static unsigned port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* A header in text form plus session bytes after it: DONE, the header's
 * length consumed, the endpoints as given. */
static void expect_v1(const char *line, const char *src, const char *dst, unsigned sport,
		      unsigned dport)
{
	char in[256];
	int n = snprintf(in, sizeof in, "%sEHLO x\r\n", line);
	REQUIRE(n > 0 && (size_t)n < sizeof in);
	struct outcome o = feed_every_way(&parser, PROXY_MODE_REQUIRED, (const uint8_t *)in, (size_t)n);
	CHECK_EQ_U(o.status, PROXY_DONE);
	CHECK_EQ_U(o.consumed, strlen(line));
	if (o.status != PROXY_DONE) {
		fprintf(stderr, "  line: %s  error %s\n", line, proxy_error_name(o.error));
		return;
	}
	CHECK_EQ_U(parser.header.version, 1);
	CHECK(!parser.header.local);
	char text[64];
	if (src == NULL) {
		CHECK(!parser.header.address_known);
		return;
	}
	CHECK(parser.header.address_known);
	const char *s = address_text(&parser.header.source, text, sizeof text);
	CHECK_MEM(s, strlen(s), src, strlen(src));
	s = address_text(&parser.header.destination, text, sizeof text);
	CHECK_MEM(s, strlen(s), dst, strlen(dst));
	CHECK_EQ_U(port_of(&parser.header.source), sport);
	CHECK_EQ_U(port_of(&parser.header.destination), dport);
}

/* in (text) must fail with error in both modes, whatever the split. */
static void expect_error_n(const uint8_t *in, size_t n, enum proxy_error error)
{
	struct outcome o = feed_every_way(&parser, PROXY_MODE_REQUIRED, in, n);
	CHECK_EQ_U(o.status, PROXY_ERROR);
	CHECK_EQ_U(o.error, error);
	if (o.status != PROXY_ERROR || o.error != error)
		fprintf(stderr, "  input: %.*s  got %s\n", (int)n, (const char *)in,
			proxy_error_name(o.error));
	o = feed_every_way(&parser, PROXY_MODE_OPTIONAL, in, n);
	CHECK_EQ_U(o.status, PROXY_ERROR);
	CHECK_EQ_U(o.error, error);
}

static void expect_v1_error(const char *line, enum proxy_error error)
{
	expect_error_n((const uint8_t *)line, strlen(line), error);
}

static void test_v1_valid(void)
{
	expect_v1("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n", "192.0.2.1", "198.51.100.2",
		  56324, 25);
	/* Field bounds: the smallest and largest address and port. */
	expect_v1("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", "0.0.0.0", "255.255.255.255", 0,
		  65535);
	expect_v1("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", "255.255.255.255",
		  "255.255.255.255", 65535, 65535);
	expect_v1("PROXY TCP4 10.20.30.40 1.2.3.4 9 10\r\n", "10.20.30.40", "1.2.3.4", 9, 10);
	expect_v1("PROXY TCP6 2001:db8::1 ::1 1 2\r\n", "2001:db8::1", "::1", 1, 2);
	expect_v1("PROXY TCP6 :: 1:: 3 4\r\n", "::", "1::", 3, 4);
	expect_v1("PROXY TCP6 1:2:3:4:5:6:7:8 1::8 5 6\r\n", "1:2:3:4:5:6:7:8", "1::8", 5, 6);
	expect_v1("PROXY TCP6 1:2:3:4:5:6:7:: ::2:3:4:5:6:7:8 5 6\r\n", "1:2:3:4:5:6:7:0",
		  "0:2:3:4:5:6:7:8", 5, 6);
	expect_v1("PROXY TCP6 FFFF:0000:00:0::abcd 2001:DB8:0:0:1:0:0:1 7 8\r\n", "ffff::abcd",
		  "2001:db8::1:0:0:1", 7, 8);
	/* The longest TCP6 line (104 bytes). */
	const char *longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	CHECK_EQ_U(strlen(longest), 104);
	expect_v1(longest, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535);
	/* UNKNOWN: the rest of the line is ignored, up to the 107-byte bound. */
	expect_v1("PROXY UNKNOWN\r\n", NULL, NULL, 0, 0);
	expect_v1("PROXY UNKNOWN whatever 1 2 3 junk\r\n", NULL, NULL, 0, 0);
	const char *unknown_max = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
				  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	CHECK_EQ_U(strlen(unknown_max), PROXY_V1_LINE_MAX_BYTES);
	expect_v1(unknown_max, NULL, NULL, 0, 0);
}

static void test_v1_errors(void)
{
	/* Line length: 108 bytes with the CRLF is refused at byte 107. */
	const char *over = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffff 65535 65535\r\n";
	CHECK_EQ_U(strlen(over), PROXY_V1_LINE_MAX_BYTES + 1);
	expect_v1_error(over, PROXY_ERROR_V1_TOO_LONG);
	char no_end[PROXY_V1_LINE_MAX_BYTES + 1];
	memset(no_end, 'x', sizeof no_end);
	memcpy(no_end, "PROXY UNKNOWN ", 14);
	expect_error_n((const uint8_t *)no_end, PROXY_V1_LINE_MAX_BYTES, PROXY_ERROR_V1_TOO_LONG);
	/* A 106-byte prefix without CRLF is still waiting. */
	struct outcome o = feed_every_way(&parser, PROXY_MODE_REQUIRED, (const uint8_t *)no_end,
					  PROXY_V1_LINE_MAX_BYTES - 1);
	CHECK_EQ_U(o.status, PROXY_NEED_MORE);
	/* Line ends: a lone LF, a lone CR, CR CR LF. */
	expect_v1_error("PROXY UNKNOWN\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY\r\n", PROXY_ERROR_V1_SYNTAX);
	/* Spacing and words. */
	expect_v1_error("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4 \r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXY UNKNOWNX\r\n", PROXY_ERROR_V1_SYNTAX);
	expect_v1_error("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_SYNTAX);
	/* IPv4 addresses. */
	expect_v1_error("PROXY TCP4 256.0.0.1 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP4 1.2.3.00 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP4 .1.2.3 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP4 1.2.3.a 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP4 1.2.3.-4 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP4 4294967297.0.0.1 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	/* IPv6 addresses. */
	expect_v1_error("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 1:2:3:4::5:6:7:8 ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 1::2::3 ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 ::: ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 :1::2 ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 1::2: ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 12345::1 ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 [::1] ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 g::1 ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	expect_v1_error("PROXY TCP6 : ::1 1 2\r\n", PROXY_ERROR_V1_ADDRESS);
	/* Ports. */
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", PROXY_ERROR_V1_PORT);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", PROXY_ERROR_V1_PORT);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", PROXY_ERROR_V1_PORT);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", PROXY_ERROR_V1_PORT);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", PROXY_ERROR_V1_PORT);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", PROXY_ERROR_V1_PORT);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 655350\r\n", PROXY_ERROR_V1_PORT);
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 0x19\r\n", PROXY_ERROR_V1_PORT);
}

/* ---- v2 ---- */

static const uint8_t v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* A v2 header: head, then block[0..block_len); returns its length. The
 * length field may be set apart (length_field >= 0) to lie. */
static size_t v2_build(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *block,
		       size_t block_len, long length_field)
{
	memcpy(out, v2_sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	size_t announced = length_field >= 0 ? (size_t)length_field : block_len;
	out[14] = (uint8_t)(announced >> 8);
	out[15] = (uint8_t)announced;
	if (block_len)
		memcpy(out + 16, block, block_len);
	return 16 + block_len;
}

/* Appends a TLV to block at *len. */
static void tlv_put(uint8_t *block, size_t *len, uint8_t type, const void *value, size_t n)
{
	block[(*len)++] = type;
	block[(*len)++] = (uint8_t)(n >> 8);
	block[(*len)++] = (uint8_t)n;
	memcpy(block + *len, value, n);
	*len += n;
}

static const uint8_t tcp4_addresses[12] = { 192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0, 25 };

static void check_span_text(struct span s, const char *text)
{
	CHECK(s.ptr != NULL);
	CHECK_MEM(s.ptr, s.len, text, strlen(text));
}

/* Header plus session bytes: DONE, header length consumed. */
static struct outcome expect_v2_done(const uint8_t *hdr, size_t n)
{
	uint8_t in[PROXY_HEADER_MAX_BYTES + 16];
	REQUIRE(n + 6 <= sizeof in);
	memcpy(in, hdr, n);
	memcpy(in + n, "EHLO\r\n", 6);
	struct outcome o = feed_every_way(&parser, PROXY_MODE_REQUIRED, in, n + 6);
	CHECK_EQ_U(o.status, PROXY_DONE);
	CHECK_EQ_U(o.consumed, n);
	if (o.status != PROXY_DONE)
		fprintf(stderr, "  v2 error %s\n", proxy_error_name(o.error));
	CHECK_EQ_U(parser.header.version, 2);
	struct outcome opt = feed_every_way(&parser, PROXY_MODE_OPTIONAL, in, n + 6);
	CHECK(same_outcome(&o, &opt));
	return o;
}

static void test_v2_valid(void)
{
	uint8_t hdr[PROXY_HEADER_MAX_BYTES + 16], block[PROXY_V2_BLOCK_MAX_BYTES + 8];
	char text[64];
	size_t n, blen;

	/* TCP4 with TLVs: ALPN, AUTHORITY, UNIQUE_ID, SSL with sub-TLVs, a
	 * NOOP and an unknown custom type skipped, an empty one at the end. */
	memcpy(block, tcp4_addresses, 12);
	blen = 12;
	tlv_put(block, &blen, 0x01, "smtp", 4);
	tlv_put(block, &blen, 0x04, "\0\0\0", 3);
	tlv_put(block, &blen, 0x02, "mx.example.org", 14);
	tlv_put(block, &blen, 0x05, "id-42", 5);
	uint8_t ssl[128];
	size_t slen = 0;
	ssl[slen++] = 0x01 | 0x04;
	memcpy(ssl + slen, "\0\0\0\7", 4);
	slen += 4;
	tlv_put(ssl, &slen, 0x21, "TLSv1.3", 7);
	tlv_put(ssl, &slen, 0x25, "RSA2048", 7);
	tlv_put(ssl, &slen, 0x23, "TLS_AES_128_GCM_SHA256", 22);
	tlv_put(ssl, &slen, 0x22, "client.example", 14);
	tlv_put(block, &blen, 0x20, ssl, slen);
	tlv_put(block, &blen, 0xe5, "custom", 6);
	tlv_put(block, &blen, 0x01, "second", 6); /* a repeat: the first is kept */
	tlv_put(block, &blen, 0x30, "", 0);
	n = v2_build(hdr, 0x21, 0x11, block, blen, -1);
	expect_v2_done(hdr, n);
	CHECK(parser.header.address_known);
	CHECK(!parser.header.local);
	const char *s = address_text(&parser.header.source, text, sizeof text);
	CHECK_MEM(s, strlen(s), "192.0.2.1", 9);
	s = address_text(&parser.header.destination, text, sizeof text);
	CHECK_MEM(s, strlen(s), "198.51.100.2", 12);
	CHECK_EQ_U(port_of(&parser.header.source), 0xdc04);
	CHECK_EQ_U(port_of(&parser.header.destination), 25);
	check_span_text(parser.header.alpn, "smtp");
	check_span_text(parser.header.authority, "mx.example.org");
	check_span_text(parser.header.unique_id, "id-42");
	CHECK(parser.header.ssl_present);
	CHECK_EQ_U(parser.header.ssl_client, 0x05);
	CHECK_EQ_U(parser.header.ssl_verify, 7);
	check_span_text(parser.header.ssl_version, "TLSv1.3");
	check_span_text(parser.header.ssl_cipher, "TLS_AES_128_GCM_SHA256");
	check_span_text(parser.header.ssl_cn, "client.example");

	/* TCP6, no TLVs; ports at their bounds. */
	uint8_t a6[36] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1, [16] = 0xfe, 0x80, [31] = 2,
			   [32] = 0xff, 0xff, 0, 0 };
	n = v2_build(hdr, 0x21, 0x21, a6, 36, -1);
	expect_v2_done(hdr, n);
	CHECK(parser.header.address_known);
	s = address_text(&parser.header.source, text, sizeof text);
	CHECK_MEM(s, strlen(s), "2001:db8::1", 11);
	s = address_text(&parser.header.destination, text, sizeof text);
	CHECK_MEM(s, strlen(s), "fe80::2", 7);
	CHECK_EQ_U(port_of(&parser.header.source), 65535);
	CHECK_EQ_U(port_of(&parser.header.destination), 0);
	CHECK(parser.header.alpn.ptr == NULL && !parser.header.ssl_present);

	/* LOCAL: a probe; the block is skipped whatever it holds, family too. */
	n = v2_build(hdr, 0x20, 0x00, NULL, 0, -1);
	expect_v2_done(hdr, n);
	CHECK(parser.header.local && !parser.header.address_known);
	memset(block, 0xff, 40);
	n = v2_build(hdr, 0x20, 0xff, block, 40, -1);
	expect_v2_done(hdr, n);
	CHECK(parser.header.local && !parser.header.address_known);
	n = v2_build(hdr, 0x20, 0x11, tcp4_addresses, 12, -1);
	expect_v2_done(hdr, n);
	CHECK(parser.header.local && !parser.header.address_known);

	/* PROXY with UNSPEC, UDP or UNIX: valid, address unknown. */
	n = v2_build(hdr, 0x21, 0x00, NULL, 0, -1);
	expect_v2_done(hdr, n);
	CHECK(!parser.header.local && !parser.header.address_known);
	n = v2_build(hdr, 0x21, 0x00, block, 40, -1); /* UNSPEC ignores its block */
	expect_v2_done(hdr, n);
	CHECK(!parser.header.address_known);
	n = v2_build(hdr, 0x21, 0x10, NULL, 0, -1); /* INET with UNSPEC protocol */
	expect_v2_done(hdr, n);
	CHECK(!parser.header.address_known);
	n = v2_build(hdr, 0x21, 0x12, tcp4_addresses, 12, -1);
	expect_v2_done(hdr, n);
	CHECK(!parser.header.address_known);
	n = v2_build(hdr, 0x21, 0x22, a6, 36, -1);
	expect_v2_done(hdr, n);
	CHECK(!parser.header.address_known);
	memset(block, 'u', 216);
	blen = 216;
	tlv_put(block, &blen, 0x02, "host", 4);
	n = v2_build(hdr, 0x21, 0x31, block, blen, -1);
	expect_v2_done(hdr, n);
	CHECK(!parser.header.address_known);
	check_span_text(parser.header.authority, "host"); /* TLVs still walked */
	n = v2_build(hdr, 0x21, 0x32, block, 216, -1);
	expect_v2_done(hdr, n);

	/* Bounds: a unique id of exactly 128 bytes; a block of exactly
	 * PROXY_V2_BLOCK_MAX_BYTES (one NOOP filling it). */
	uint8_t id[PROXY_V2_UNIQUE_ID_MAX_BYTES];
	memset(id, 'i', sizeof id);
	memcpy(block, tcp4_addresses, 12);
	blen = 12;
	tlv_put(block, &blen, 0x05, id, sizeof id);
	n = v2_build(hdr, 0x21, 0x11, block, blen, -1);
	expect_v2_done(hdr, n);
	CHECK_EQ_U(parser.header.unique_id.len, PROXY_V2_UNIQUE_ID_MAX_BYTES);
	memcpy(block, tcp4_addresses, 12);
	blen = 12;
	static uint8_t fill[PROXY_V2_BLOCK_MAX_BYTES];
	tlv_put(block, &blen, 0x04, fill, PROXY_V2_BLOCK_MAX_BYTES - 12 - 3);
	CHECK_EQ_U(blen, PROXY_V2_BLOCK_MAX_BYTES);
	n = v2_build(hdr, 0x21, 0x11, block, blen, -1);
	expect_v2_done(hdr, n);
	CHECK(parser.header.address_known);
	/* Addresses followed by a zero-length TLV and nothing else. */
	memcpy(block, tcp4_addresses, 12);
	blen = 12;
	tlv_put(block, &blen, 0x01, "", 0);
	n = v2_build(hdr, 0x21, 0x11, block, blen, -1);
	expect_v2_done(hdr, n);
	CHECK(parser.header.alpn.ptr != NULL && parser.header.alpn.len == 0);
}

static void test_v2_errors(void)
{
	uint8_t hdr[PROXY_HEADER_MAX_BYTES + 64], block[PROXY_V2_BLOCK_MAX_BYTES + 64];
	size_t n, blen;

	/* Version and command nibbles: refused as soon as byte 13 is in. */
	n = v2_build(hdr, 0x11, 0x11, tcp4_addresses, 12, -1);
	expect_error_n(hdr, 13, PROXY_ERROR_V2_VERSION);
	expect_error_n(hdr, n, PROXY_ERROR_V2_VERSION);
	n = v2_build(hdr, 0x31, 0x11, tcp4_addresses, 12, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_VERSION);
	n = v2_build(hdr, 0x22, 0x11, tcp4_addresses, 12, -1);
	expect_error_n(hdr, 13, PROXY_ERROR_V2_COMMAND);
	n = v2_build(hdr, 0x2f, 0x11, tcp4_addresses, 12, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_COMMAND);
	/* Family and protocol nibbles (PROXY command). */
	n = v2_build(hdr, 0x21, 0x41, tcp4_addresses, 12, -1);
	expect_error_n(hdr, 14, PROXY_ERROR_V2_FAMILY);
	n = v2_build(hdr, 0x21, 0x13, tcp4_addresses, 12, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_FAMILY);
	n = v2_build(hdr, 0x21, 0xf1, tcp4_addresses, 12, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_FAMILY);
	/* Block length: one past the bound is refused from the head alone. */
	n = v2_build(hdr, 0x21, 0x11, tcp4_addresses, 12, PROXY_V2_BLOCK_MAX_BYTES + 1);
	expect_error_n(hdr, 16, PROXY_ERROR_V2_TOO_LONG);
	n = v2_build(hdr, 0x20, 0x00, NULL, 0, 0xffff);
	expect_error_n(hdr, 16, PROXY_ERROR_V2_TOO_LONG);
	/* Block shorter than the family's addresses. */
	n = v2_build(hdr, 0x21, 0x11, tcp4_addresses, 11, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_ADDRESS);
	n = v2_build(hdr, 0x21, 0x21, block, 35, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_ADDRESS);
	n = v2_build(hdr, 0x21, 0x31, block, 215, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_ADDRESS);
	n = v2_build(hdr, 0x21, 0x11, NULL, 0, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_ADDRESS);

	/* TLVs overrunning the block. */
	uint8_t bad[][8] = {
		{ 1, 0x01, 0x00, 0x05, 'a', 'b', 'c', 'd' }, /* value 5, 4 left */
		{ 2, 0x02, 0xff, 0xff, 'a', 'b', 'c', 'd' }, /* 65535 */
		{ 3, 0x04, 0x00, 0x01, 'x', 0x01, 0x00 },    /* 2 stray bytes */
		{ 4, 0x04, 0x00, 0x01, 'x', 0x01 },          /* 1 stray byte */
		{ 5, 0x04, 0x80 },                           /* head cut */
	};
	size_t bad_len[] = { 7, 7, 6, 5, 2 };
	for (size_t k = 0; k < RMX_ARRAY_LEN(bad); k++) {
		memcpy(block, tcp4_addresses, 12);
		memcpy(block + 12, bad[k] + 1, bad_len[k]);
		n = v2_build(hdr, 0x21, 0x11, block, 12 + bad_len[k], -1);
		expect_error_n(hdr, n, PROXY_ERROR_V2_TLV);
	}
	/* A good TLV, then one whose length runs one byte past the block. */
	memcpy(block, tcp4_addresses, 12);
	blen = 12;
	tlv_put(block, &blen, 0x02, "host", 4);
	tlv_put(block, &blen, 0x01, "smtp", 4);
	block[blen - 5] = 5;
	n = v2_build(hdr, 0x21, 0x11, block, blen, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_TLV);
	/* A unique id one byte over the specification's bound. */
	uint8_t id[PROXY_V2_UNIQUE_ID_MAX_BYTES + 1];
	memset(id, 'i', sizeof id);
	memcpy(block, tcp4_addresses, 12);
	blen = 12;
	tlv_put(block, &blen, 0x05, id, sizeof id);
	n = v2_build(hdr, 0x21, 0x11, block, blen, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_TLV);
	/* SSL TLV shorter than its fixed part, and a sub-TLV overrunning it
	 * (though not the block: the outer length holds). */
	memcpy(block, tcp4_addresses, 12);
	blen = 12;
	tlv_put(block, &blen, 0x20, "\1\0\0\0", 4);
	n = v2_build(hdr, 0x21, 0x11, block, blen, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_TLV);
	uint8_t ssl[32] = { 1, 0, 0, 0, 0, 0x21, 0x00, 0x08, 'T', 'L', 'S' };
	memcpy(block, tcp4_addresses, 12);
	blen = 12;
	tlv_put(block, &blen, 0x20, ssl, 11);
	tlv_put(block, &blen, 0x04, "pad", 3);
	n = v2_build(hdr, 0x21, 0x11, block, blen, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_TLV);
	uint8_t ssl_cut[] = { 1, 0, 0, 0, 0, 0x21, 0x00 };
	memcpy(block, tcp4_addresses, 12);
	blen = 12;
	tlv_put(block, &blen, 0x20, ssl_cut, sizeof ssl_cut);
	n = v2_build(hdr, 0x21, 0x11, block, blen, -1);
	expect_error_n(hdr, n, PROXY_ERROR_V2_TLV);
}

/* Every proper prefix of a valid header waits for more. */
static void test_truncated(void)
{
	uint8_t hdr[64], block[32];
	size_t blen = 12;
	memcpy(block, tcp4_addresses, 12);
	tlv_put(block, &blen, 0x01, "smtp", 4);
	size_t n = v2_build(hdr, 0x21, 0x11, block, blen, -1);
	unsigned bad = 0;
	for (size_t k = 0; k < n; k++) {
		struct outcome o = feed_cuts(&parser, PROXY_MODE_REQUIRED, hdr, k, NULL, 0);
		if (o.status != PROXY_NEED_MORE || o.consumed != k)
			bad++;
	}
	const char *v1 = "PROXY TCP6 2001:db8::1 ::1 1 2\r\n";
	for (size_t k = 0; k < strlen(v1); k++) {
		struct outcome o = feed_cuts(&parser, PROXY_MODE_OPTIONAL, (const uint8_t *)v1, k,
					     NULL, 0);
		if (o.status != PROXY_NEED_MORE || o.consumed != k)
			bad++;
	}
	CHECK_EQ_U(bad, 0);
}

static void test_signatures(void)
{
	/* Required mode: anything else is an error at its first wrong byte. */
	struct outcome o;
	const char *not_headers[] = { "EHLO x\r\n", "PROXZ TCP4", "proxy TCP4", "\r\n\r\n\x01",
				      "GET / HTTP/1.1\r\n", "\x16\x03\x01" };
	for (size_t k = 0; k < RMX_ARRAY_LEN(not_headers); k++) {
		const uint8_t *in = (const uint8_t *)not_headers[k];
		size_t n = strlen(not_headers[k]);
		o = feed_every_way(&parser, PROXY_MODE_REQUIRED, in, n);
		CHECK_EQ_U(o.status, PROXY_ERROR);
		CHECK_EQ_U(o.error, PROXY_ERROR_SIGNATURE);
		/* Optional mode: ABSENT, and every byte is the session's
		 * (whatever was held from earlier pieces is given back). */
		o = feed_every_way(&parser, PROXY_MODE_OPTIONAL, in, n);
		CHECK_EQ_U(o.status, PROXY_ABSENT);
		CHECK_EQ_U(o.consumed, 0);
	}
	/* Optional mode decides at the first byte that continues neither
	 * signature, without waiting for more. */
	struct proxy_parser *p = &parser;
	size_t used = 99;
	proxy_parser_init(p, PROXY_MODE_OPTIONAL);
	CHECK_EQ_U(proxy_parse(p, (const uint8_t *)"E", 1, &used), PROXY_ABSENT);
	CHECK_EQ_U(used, 0);
	CHECK_EQ_U(proxy_parser_held(p).len, 0);
	proxy_parser_init(p, PROXY_MODE_OPTIONAL);
	CHECK_EQ_U(proxy_parse(p, (const uint8_t *)"PRO", 3, &used), PROXY_NEED_MORE);
	CHECK_EQ_U(used, 3);
	CHECK_EQ_U(proxy_parse(p, (const uint8_t *)"XZ", 2, &used), PROXY_ABSENT);
	CHECK_EQ_U(used, 0);
	CHECK_MEM(proxy_parser_held(p).ptr, proxy_parser_held(p).len, "PRO", 3);
	/* The v2 signature with its NUL, wrong at each of its 12 bytes. */
	for (size_t k = 0; k < 12; k++) {
		uint8_t sig[16];
		memcpy(sig, v2_sig, 12);
		sig[12] = 0x21;
		sig[k] ^= 0x40;
		o = feed_every_way(&parser, PROXY_MODE_REQUIRED, sig, 13);
		CHECK_EQ_U(o.status, PROXY_ERROR);
		CHECK_EQ_U(o.error, PROXY_ERROR_SIGNATURE);
		o = feed_every_way(&parser, PROXY_MODE_OPTIONAL, sig, 13);
		CHECK_EQ_U(o.status, PROXY_ABSENT);
	}
	/* Empty input is no information. */
	proxy_parser_init(p, PROXY_MODE_OPTIONAL);
	CHECK_EQ_U(proxy_parse(p, NULL, 0, &used), PROXY_NEED_MORE);
	CHECK_EQ_U(used, 0);
}

static void test_address_text(void)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	char buf[64];
	CHECK_EQ_U(proxy_address_text(&ss, buf, sizeof buf), 0); /* AF_UNSPEC */
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(0xc0000201);
	CHECK_EQ_U(proxy_address_text(&ss, buf, sizeof buf), 9);
	CHECK_EQ_U(proxy_address_text(&ss, buf, 9), 0); /* no room for the NUL */
	CHECK_EQ_U(proxy_address_text(&ss, buf, 10), 9);
	for (int e = PROXY_ERROR_NONE; e <= PROXY_ERROR_V2_TLV; e++)
		CHECK(strcmp(proxy_error_name((enum proxy_error)e), "unknown") != 0);
}

int main(void)
{
	test_v1_valid();
	test_v1_errors();
	test_v2_valid();
	test_v2_errors();
	test_truncated();
	test_signatures();
	test_address_text();
	return test_main_end("test_proxy");
}
