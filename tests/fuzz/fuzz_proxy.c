/*
 * fuzz_proxy.c - the PROXY protocol header parser (proto/proxy), v1 and
 * v2, in required and optional mode, fed the first bytes of a connection
 * whole and in the pieces the input chooses.
 *
 * Input: a settings byte (mode), split bytes up to a zero, then the
 * connection's bytes. Invariants: both readings agree on the status, the
 * error, where the header ends and everything it says; NEED_MORE consumes
 * all it is given; a header is at most PROXY_HEADER_MAX_BYTES; its spans
 * lie in the parser; after ABSENT the held bytes and the data of that call
 * give back the connection's bytes unchanged; a v1 header's addresses and
 * ports are the ones its text names, a v2 header's the bytes at their
 * offsets, and each address prints as text.
 */
#include "../../proto/proxy.h"

#include "fuzz_common.h"

#include <arpa/inet.h>

struct outcome {
	enum proxy_status status;
	enum proxy_error error;
	size_t header_bytes; /* DONE: bytes of the connection that were header */
	struct proxy_header header;
	uint8_t header_copy[PROXY_HEADER_MAX_BYTES];
};

static void check_span(struct span s, const struct proxy_parser *p)
{
	FUZZ_CHECK(s.len == 0 || fuzz_span_within(s.ptr, s.len, p->buf, sizeof(p->buf)));
}

static void parse(enum proxy_mode mode, const uint8_t *p, size_t n, const uint8_t *splits,
		  size_t nsplits, struct outcome *o)
{
	struct proxy_parser *parser = malloc(sizeof(*parser));
	FUZZ_CHECK(parser != NULL);
	proxy_parser_init(parser, mode);
	memset(o, 0, sizeof(*o));
	o->status = PROXY_NEED_MORE;
	size_t done = 0, split = 0;
	while (done < n) {
		size_t piece = nsplits ? splits[split++ % nsplits] : n;
		if (piece > n - done)
			piece = n - done;
		uint8_t *view = fuzz_exact_copy(p + done, piece);
		size_t consumed = SIZE_MAX;
		enum proxy_status st = proxy_parse(parser, view, piece, &consumed);
		o->status = st;
		if (st == PROXY_NEED_MORE) {
			FUZZ_CHECK(consumed == piece);
			done += piece;
			free(view);
			FUZZ_CHECK(done <= PROXY_HEADER_MAX_BYTES);
			continue;
		}
		if (st == PROXY_ERROR) {
			FUZZ_CHECK(parser->error != PROXY_ERROR_NONE);
			FUZZ_CHECK(proxy_error_name(parser->error) != NULL);
			o->error = parser->error;
		} else if (st == PROXY_ABSENT) {
			FUZZ_CHECK(mode == PROXY_MODE_OPTIONAL && consumed == 0);
			struct span held = proxy_parser_held(parser);
			FUZZ_CHECK(held.len == done);
			FUZZ_CHECK(held.len == 0 || memcmp(held.ptr, p, held.len) == 0);
		} else {
			FUZZ_CHECK(st == PROXY_DONE && consumed <= piece);
			o->header_bytes = done + consumed;
			FUZZ_CHECK(o->header_bytes > 0 && o->header_bytes <= PROXY_HEADER_MAX_BYTES);
			o->header = parser->header;
			const struct proxy_header *h = &parser->header;
			struct span spans[] = { h->alpn, h->authority, h->unique_id,
						h->ssl_version, h->ssl_cipher, h->ssl_cn };
			for (size_t i = 0; i < RMX_ARRAY_LEN(spans); i++)
				check_span(spans[i], parser);
			FUZZ_CHECK(h->unique_id.len <= PROXY_V2_UNIQUE_ID_MAX_BYTES);
			FUZZ_CHECK(h->version == 1 || h->version == 2);
			FUZZ_CHECK(!(h->local && h->address_known));
			memcpy(o->header_copy, p, o->header_bytes);
		}
		free(view);
		break;
	}
	free(parser);
}

/* The address in ss as text, and its port. */
static void address_of(const struct sockaddr_storage *ss, char *text, size_t cap, unsigned *port)
{
	FUZZ_CHECK(ss->ss_family == AF_INET || ss->ss_family == AF_INET6);
	FUZZ_CHECK(proxy_address_text(ss, text, cap) > 0);
	if (ss->ss_family == AF_INET)
		*port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
	else
		*port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* A v1 line names exactly the endpoints parsed from it. */
static void check_v1(const struct outcome *o)
{
	const struct proxy_header *h = &o->header;
	char line[PROXY_V1_LINE_MAX_BYTES + 1];
	FUZZ_CHECK(o->header_bytes >= 8 && o->header_bytes <= PROXY_V1_LINE_MAX_BYTES);
	memcpy(line, o->header_copy, o->header_bytes);
	FUZZ_CHECK(memcmp(line + o->header_bytes - 2, "\r\n", 2) == 0);
	line[o->header_bytes - 2] = '\0';
	if (!h->address_known) {
		FUZZ_CHECK(strncmp(line, "PROXY UNKNOWN", 13) == 0);
		return;
	}
	char proto[8], src[64], dst[64];
	unsigned sport, dport;
	FUZZ_CHECK(sscanf(line, "PROXY %7s %63s %63s %u %u", proto, src, dst, &sport, &dport) == 5);
	int family = strcmp(proto, "TCP4") == 0 ? AF_INET : AF_INET6;
	FUZZ_CHECK(family == AF_INET || strcmp(proto, "TCP6") == 0);
	FUZZ_CHECK(h->source.ss_family == family && h->destination.ss_family == family);
	uint8_t want[16], got[16];
	const void *src_addr = family == AF_INET
				       ? (const void *)&((const struct sockaddr_in *)&h->source)->sin_addr
				       : (const void *)&((const struct sockaddr_in6 *)&h->source)->sin6_addr;
	FUZZ_CHECK(inet_pton(family, src, want) == 1);
	memcpy(got, src_addr, family == AF_INET ? 4 : 16);
	FUZZ_CHECK(memcmp(want, got, family == AF_INET ? 4 : 16) == 0);
	char text[64];
	unsigned port;
	address_of(&h->source, text, sizeof(text), &port);
	FUZZ_CHECK(port == sport);
	if (family == AF_INET)
		FUZZ_CHECK(strcmp(text, src) == 0); /* canonical dotted quads only */
	address_of(&h->destination, text, sizeof(text), &port);
	FUZZ_CHECK(port == dport);
	if (family == AF_INET)
		FUZZ_CHECK(strcmp(text, dst) == 0);
}

/* A v2 header's endpoints are the bytes after its 16-byte head. */
static void check_v2(const struct outcome *o)
{
	const struct proxy_header *h = &o->header;
	const uint8_t *b = o->header_copy;
	FUZZ_CHECK(o->header_bytes >= PROXY_V2_HEAD_BYTES);
	size_t block = (size_t)b[14] << 8 | b[15];
	FUZZ_CHECK(o->header_bytes == PROXY_V2_HEAD_BYTES + block);
	FUZZ_CHECK(block <= PROXY_V2_BLOCK_MAX_BYTES);
	if (!h->address_known)
		return;
	char text[64];
	unsigned port;
	if (h->source.ss_family == AF_INET) {
		FUZZ_CHECK(block >= 12);
		const struct sockaddr_in *s = (const struct sockaddr_in *)&h->source;
		FUZZ_CHECK(memcmp(&s->sin_addr, b + 16, 4) == 0);
		address_of(&h->source, text, sizeof(text), &port);
		FUZZ_CHECK(port == ((unsigned)b[24] << 8 | b[25]));
	} else {
		FUZZ_CHECK(block >= 36);
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&h->source;
		FUZZ_CHECK(memcmp(&s->sin6_addr, b + 16, 16) == 0);
		address_of(&h->source, text, sizeof(text), &port);
		FUZZ_CHECK(port == ((unsigned)b[48] << 8 | b[49]));
	}
	address_of(&h->destination, text, sizeof(text), &port);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	enum proxy_mode mode = fuzz_u8(&in) & 1 ? PROXY_MODE_OPTIONAL : PROXY_MODE_REQUIRED;
	uint8_t splits[64];
	size_t nsplits = fuzz_splits(&in, splits, sizeof(splits));
	struct outcome *whole = malloc(sizeof(*whole)), *pieces = malloc(sizeof(*pieces));
	FUZZ_CHECK(whole != NULL && pieces != NULL);
	parse(mode, in.p, in.n, NULL, 0, whole);
	parse(mode, in.p, in.n, splits, nsplits, pieces);
	FUZZ_CHECK(whole->status == pieces->status && whole->error == pieces->error);
	if (whole->status == PROXY_DONE) {
		FUZZ_CHECK(whole->header_bytes == pieces->header_bytes);
		const struct proxy_header *a = &whole->header, *b = &pieces->header;
		FUZZ_CHECK(a->version == b->version && a->local == b->local &&
			   a->address_known == b->address_known);
		FUZZ_CHECK(memcmp(&a->source, &b->source, sizeof(a->source)) == 0);
		FUZZ_CHECK(memcmp(&a->destination, &b->destination, sizeof(a->destination)) == 0);
		FUZZ_CHECK(a->alpn.len == b->alpn.len && a->unique_id.len == b->unique_id.len);
		FUZZ_CHECK(a->ssl_present == b->ssl_present && a->ssl_cn.len == b->ssl_cn.len);
		if (a->version == 1)
			check_v1(whole);
		else
			check_v2(whole);
	}
	free(whole);
	free(pieces);
	return 0;
}
