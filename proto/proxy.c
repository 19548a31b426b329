/*
 * proxy.c - the PROXY protocol header parser (versions 1 and 2).
 *
 * The first bytes of a connection from a balancer come in through
 * proxy_parse in pieces of any size. They are appended to the parser's
 * buffer one step at a time: first only as far as they can still be a
 * prefix of one of the two signatures (which tells the version, or, in
 * optional mode, that there is no header at all), then up to the CRLF of a
 * v1 line or the length a v2 head announces. Nothing after the header is
 * ever taken. Only a whole header is decoded, as the specification asks;
 * what can be refused early is (a v2 version, command, family or length
 * known bad from the head, a v1 line that ran past its bound or holds a
 * lone CR or LF), so a broken balancer is told at once.
 *
 * Invariants: len <= PROXY_HEADER_MAX_BYTES; in state V2_BLOCK need is set
 * and len < need; DONE, ABSENT and ERROR are final until proxy_parser_init.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <string.h>

enum parser_state {
	STATE_SIGNATURE, /* bytes so far are a prefix of a signature */
	STATE_V1_LINE,   /* "PROXY" seen; up to CRLF */
	STATE_V2_HEAD,   /* the 12-byte signature seen; up to 16 bytes */
	STATE_V2_BLOCK,  /* the head is checked; up to need */
	STATE_DONE,
	STATE_ABSENT,
	STATE_ERROR,
};

static const uint8_t v1_signature[5] = { 'P', 'R', 'O', 'X', 'Y' };
static const uint8_t v2_signature[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					  0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* v2 head: byte 12 is version and command, 13 family and protocol, 14-15
 * the block's length (network order). */
#define V2_COMMAND_LOCAL 0x0
#define V2_COMMAND_PROXY 0x1
#define V2_FAMILY_UNSPEC 0x0
#define V2_FAMILY_INET 0x1
#define V2_FAMILY_INET6 0x2
#define V2_FAMILY_UNIX 0x3
#define V2_PROTOCOL_UNSPEC 0x0
#define V2_PROTOCOL_STREAM 0x1
#define V2_PROTOCOL_DGRAM 0x2

#define TLV_ALPN 0x01
#define TLV_AUTHORITY 0x02
#define TLV_UNIQUE_ID 0x05
#define TLV_SSL 0x20
#define TLV_SSL_VERSION 0x21
#define TLV_SSL_CN 0x22
#define TLV_SSL_CIPHER 0x23
#define TLV_HEAD_BYTES 3
#define SSL_TLV_FIXED_BYTES 5 /* client flags (1) and verify (4) */

void proxy_parser_init(struct proxy_parser *p, enum proxy_mode mode)
{
	memset(&p->header, 0, sizeof(p->header));
	p->error = PROXY_ERROR_NONE;
	p->mode = (uint8_t)mode;
	p->state = STATE_SIGNATURE;
	p->len = 0;
	p->need = 0;
}

struct span proxy_parser_held(const struct proxy_parser *p)
{
	RMX_ASSERT(p->state == STATE_ABSENT);
	return span_make(p->buf, p->len);
}

static uint16_t get_be16(const uint8_t *b)
{
	return (uint16_t)((unsigned)b[0] << 8 | b[1]);
}

static uint32_t get_be32(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static enum proxy_status fail(struct proxy_parser *p, enum proxy_error error)
{
	p->state = STATE_ERROR;
	p->error = error;
	return PROXY_ERROR;
}

/* ---- v1 ---- */

/* A decimal number in [0, max] without leading zeros, the whole of s[0..n). */
static bool parse_decimal(const uint8_t *s, size_t n, unsigned max, unsigned *out)
{
	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* Four decimal numbers 0-255 joined by single dots, no leading zeros. */
static bool parse_ipv4(const uint8_t *s, size_t n, uint8_t out[4])
{
	size_t start = 0;
	for (unsigned part = 0; part < 4; part++) {
		size_t end = start;
		while (end < n && s[end] != '.')
			end++;
		if ((part < 3) != (end < n))
			return false; /* too few or too many dots */
		unsigned v;
		if (!parse_decimal(s + start, end - start, 255, &v))
			return false;
		out[part] = (uint8_t)v;
		start = end + 1;
	}
	return true;
}

static int hex_value(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Groups of 1-4 hex digits joined by single colons, with at most one "::"
 * standing for one or more zero groups; 128 bits in all. No dotted quad,
 * no zone, no brackets.
 */
static bool parse_ipv6(const uint8_t *s, size_t n, uint8_t out[16])
{
	uint16_t groups[8];
	unsigned count = 0;
	int gap_at = -1; /* index in groups where "::" stands */
	size_t i = 0;
	if (n >= 2 && s[0] == ':' && s[1] == ':') {
		gap_at = 0;
		i = 2;
	} else if (n >= 1 && s[0] == ':') {
		return false;
	}
	while (i < n) {
		unsigned v = 0;
		size_t digits = 0;
		while (i < n && digits < 5) {
			int h = hex_value(s[i]);
			if (h < 0)
				break;
			v = v << 4 | (unsigned)h;
			digits++;
			i++;
		}
		if (digits == 0 || digits > 4 || count == 8)
			return false;
		groups[count++] = (uint16_t)v;
		if (i == n)
			break;
		if (s[i] != ':')
			return false;
		i++;
		if (i < n && s[i] == ':') {
			if (gap_at >= 0)
				return false; /* a second "::" */
			gap_at = (int)count;
			i++;
		} else if (i == n) {
			return false; /* a trailing single colon */
		}
	}
	if (gap_at < 0 ? count != 8 : count > 7)
		return false;
	unsigned zeros = 8 - count;
	unsigned g = 0;
	for (unsigned k = 0; k < 8; k++) {
		uint16_t v;
		if (gap_at >= 0 && k >= (unsigned)gap_at && k < (unsigned)gap_at + zeros)
			v = 0;
		else
			v = groups[g++];
		out[2 * k] = (uint8_t)(v >> 8);
		out[2 * k + 1] = (uint8_t)v;
	}
	return true;
}

static void set_inet(struct sockaddr_storage *ss, const uint8_t addr[4], unsigned port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	memcpy(&sin->sin_addr, addr, 4);
	sin->sin_port = htons((uint16_t)port);
}

static void set_inet6(struct sockaddr_storage *ss, const uint8_t addr[16], unsigned port)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	memcpy(&sin6->sin6_addr, addr, 16);
	sin6->sin6_port = htons((uint16_t)port);
}

/* The next field of line[*pos..n), up to a single space or the end. */
static struct span next_field(const uint8_t *line, size_t n, size_t *pos)
{
	size_t start = *pos, end = start;
	while (end < n && line[end] != ' ')
		end++;
	*pos = end < n ? end + 1 : end;
	return span_make(line + start, end - start);
}

/* Decodes the whole v1 line in p->buf, CRLF at p->len - 2. */
static enum proxy_status finish_v1(struct proxy_parser *p)
{
	const uint8_t *line = p->buf;
	size_t n = (size_t)p->len - 2;
	struct proxy_header *h = &p->header;
	h->version = 1;
	if (n < 6 || line[5] != ' ')
		return fail(p, PROXY_ERROR_V1_SYNTAX);
	size_t pos = 6;
	if (n - pos >= 7 && memcmp(line + pos, "UNKNOWN", 7) == 0 &&
	    (n - pos == 7 || line[pos + 7] == ' ')) {
		h->address_known = false; /* the rest is to be ignored */
		return PROXY_DONE;
	}
	struct span proto = next_field(line, n, &pos);
	bool ipv6;
	if (proto.len == 4 && memcmp(proto.ptr, "TCP4", 4) == 0)
		ipv6 = false;
	else if (proto.len == 4 && memcmp(proto.ptr, "TCP6", 4) == 0)
		ipv6 = true;
	else
		return fail(p, PROXY_ERROR_V1_SYNTAX);
	/* Exactly four non-empty fields, each after exactly one space. */
	struct span field[4];
	unsigned count = 0;
	size_t start = pos;
	for (size_t i = pos; i <= n; i++) {
		if (i < n && line[i] != ' ')
			continue;
		if (count == 4 || i == start)
			return fail(p, PROXY_ERROR_V1_SYNTAX); /* a fifth, or an empty one */
		field[count++] = span_make(line + start, i - start);
		start = i + 1;
	}
	if (count != 4)
		return fail(p, PROXY_ERROR_V1_SYNTAX);
	unsigned sport, dport;
	uint8_t src[16], dst[16];
	bool addresses_ok = ipv6 ? parse_ipv6(field[0].ptr, field[0].len, src) &&
					   parse_ipv6(field[1].ptr, field[1].len, dst)
				 : parse_ipv4(field[0].ptr, field[0].len, src) &&
					   parse_ipv4(field[1].ptr, field[1].len, dst);
	if (!addresses_ok)
		return fail(p, PROXY_ERROR_V1_ADDRESS);
	if (!parse_decimal(field[2].ptr, field[2].len, 65535, &sport) ||
	    !parse_decimal(field[3].ptr, field[3].len, 65535, &dport))
		return fail(p, PROXY_ERROR_V1_PORT);
	if (ipv6) {
		set_inet6(&h->source, src, sport);
		set_inet6(&h->destination, dst, dport);
	} else {
		set_inet(&h->source, src, sport);
		set_inet(&h->destination, dst, dport);
	}
	h->address_known = true;
	return PROXY_DONE;
}

/*
 * Takes bytes of a v1 line up to its LF. A CR must be followed by LF, an LF
 * must follow a CR; no CRLF within PROXY_V1_LINE_MAX_BYTES is an error.
 */
static enum proxy_status take_v1(struct proxy_parser *p, const uint8_t *data, size_t len,
				 size_t *taken)
{
	size_t i = 0;
	while (i < len) {
		uint8_t c = data[i];
		bool after_cr = p->buf[p->len - 1] == '\r';
		if (after_cr != (c == '\n'))
			return fail(p, PROXY_ERROR_V1_SYNTAX);
		p->buf[p->len++] = c;
		i++;
		if (c == '\n') {
			*taken = i;
			return finish_v1(p);
		}
		if (p->len == PROXY_V1_LINE_MAX_BYTES)
			return fail(p, PROXY_ERROR_V1_TOO_LONG);
	}
	*taken = i;
	return PROXY_NEED_MORE;
}

/* ---- v2 ---- */

/* Bytes of addresses a family and protocol carry; 0 when they give no
 * usable address (UNSPEC in either nibble). */
static size_t v2_address_bytes(uint8_t family, uint8_t protocol)
{
	if (family == V2_FAMILY_UNSPEC || protocol == V2_PROTOCOL_UNSPEC)
		return 0;
	switch (family) {
	case V2_FAMILY_INET:
		return 2 * 4 + 2 * 2;
	case V2_FAMILY_INET6:
		return 2 * 16 + 2 * 2;
	default:
		return 2 * 108;
	}
}

/* Checks as much of the v2 head as is in: version, command, family, then
 * the length. Returns NEED_MORE while it is fine so far. */
static enum proxy_status check_v2_head(struct proxy_parser *p)
{
	if (p->len > 12) {
		uint8_t version = p->buf[12] >> 4, command = p->buf[12] & 0x0f;
		if (version != 2)
			return fail(p, PROXY_ERROR_V2_VERSION);
		if (command != V2_COMMAND_LOCAL && command != V2_COMMAND_PROXY)
			return fail(p, PROXY_ERROR_V2_COMMAND);
	}
	bool local = p->len > 12 && (p->buf[12] & 0x0f) == V2_COMMAND_LOCAL;
	if (p->len > 13 && !local) {
		uint8_t family = p->buf[13] >> 4, protocol = p->buf[13] & 0x0f;
		if (family > V2_FAMILY_UNIX || protocol > V2_PROTOCOL_DGRAM)
			return fail(p, PROXY_ERROR_V2_FAMILY);
	}
	if (p->len == PROXY_V2_HEAD_BYTES) {
		size_t block = get_be16(p->buf + 14);
		if (block > PROXY_V2_BLOCK_MAX_BYTES)
			return fail(p, PROXY_ERROR_V2_TOO_LONG);
		if (!local && block < v2_address_bytes(p->buf[13] >> 4, p->buf[13] & 0x0f))
			return fail(p, PROXY_ERROR_V2_ADDRESS);
		p->need = (uint16_t)(PROXY_V2_HEAD_BYTES + block);
	}
	return PROXY_NEED_MORE;
}

/* The SSL TLV's value: flags, verify, then sub-TLVs in the same format. */
static bool read_ssl_tlv(struct proxy_header *h, const uint8_t *v, size_t n)
{
	if (n < SSL_TLV_FIXED_BYTES)
		return false;
	h->ssl_present = true;
	h->ssl_client = v[0];
	h->ssl_verify = get_be32(v + 1);
	size_t pos = SSL_TLV_FIXED_BYTES;
	while (pos < n) {
		if (n - pos < TLV_HEAD_BYTES)
			return false;
		uint8_t type = v[pos];
		size_t len = get_be16(v + pos + 1);
		pos += TLV_HEAD_BYTES;
		if (len > n - pos)
			return false;
		struct span value = span_make(v + pos, len);
		struct span *keep = type == TLV_SSL_VERSION ? &h->ssl_version
				  : type == TLV_SSL_CIPHER  ? &h->ssl_cipher
				  : type == TLV_SSL_CN	    ? &h->ssl_cn
							    : NULL;
		if (keep && !keep->ptr)
			*keep = value;
		pos += len;
	}
	return true;
}

/* Walks the TLVs in buf[pos..end): every length checked against what is
 * left, the useful ones kept (first of each type), the rest skipped. */
static bool read_tlvs(struct proxy_header *h, const uint8_t *buf, size_t pos, size_t end)
{
	while (pos < end) {
		if (end - pos < TLV_HEAD_BYTES)
			return false;
		uint8_t type = buf[pos];
		size_t len = get_be16(buf + pos + 1);
		pos += TLV_HEAD_BYTES;
		if (len > end - pos)
			return false;
		struct span value = span_make(buf + pos, len);
		switch (type) {
		case TLV_ALPN:
			if (!h->alpn.ptr)
				h->alpn = value;
			break;
		case TLV_AUTHORITY:
			if (!h->authority.ptr)
				h->authority = value;
			break;
		case TLV_UNIQUE_ID:
			if (len > PROXY_V2_UNIQUE_ID_MAX_BYTES)
				return false;
			if (!h->unique_id.ptr)
				h->unique_id = value;
			break;
		case TLV_SSL:
			if (!h->ssl_present && !read_ssl_tlv(h, value.ptr, value.len))
				return false;
			break;
		default:
			break;
		}
		pos += len;
	}
	return true;
}

/* Decodes the whole v2 header in p->buf[0..need). */
static enum proxy_status finish_v2(struct proxy_parser *p)
{
	struct proxy_header *h = &p->header;
	h->version = 2;
	if ((p->buf[12] & 0x0f) == V2_COMMAND_LOCAL) {
		h->local = true; /* the block is skipped whole */
		return PROXY_DONE;
	}
	uint8_t family = p->buf[13] >> 4, protocol = p->buf[13] & 0x0f;
	size_t address_bytes = v2_address_bytes(family, protocol);
	if (address_bytes == 0)
		return PROXY_DONE; /* UNSPEC: addresses and TLVs mean nothing */
	const uint8_t *a = p->buf + PROXY_V2_HEAD_BYTES;
	if (protocol == V2_PROTOCOL_STREAM && family == V2_FAMILY_INET) {
		set_inet(&h->source, a, get_be16(a + 8));
		set_inet(&h->destination, a + 4, get_be16(a + 10));
		h->address_known = true;
	} else if (protocol == V2_PROTOCOL_STREAM && family == V2_FAMILY_INET6) {
		set_inet6(&h->source, a, get_be16(a + 32));
		set_inet6(&h->destination, a + 16, get_be16(a + 34));
		h->address_known = true;
	} /* UDP, UNIX: valid, but not a client of ours: the real endpoints */
	if (!read_tlvs(h, p->buf, PROXY_V2_HEAD_BYTES + address_bytes, p->need)) {
		h->address_known = false;
		return fail(p, PROXY_ERROR_V2_TLV);
	}
	return PROXY_DONE;
}

/* Takes v2 bytes: the head (checked as it grows), then the block. */
static enum proxy_status take_v2(struct proxy_parser *p, const uint8_t *data, size_t len,
				 size_t *taken)
{
	size_t i = 0;
	while (i < len && p->state == STATE_V2_HEAD) {
		p->buf[p->len++] = data[i++];
		if (check_v2_head(p) == PROXY_ERROR)
			return PROXY_ERROR;
		if (p->len == PROXY_V2_HEAD_BYTES)
			p->state = STATE_V2_BLOCK;
	}
	if (p->state == STATE_V2_BLOCK) {
		RMX_ASSERT(p->need >= p->len && p->need <= PROXY_HEADER_MAX_BYTES);
		size_t n = RMX_MIN(len - i, (size_t)(p->need - p->len));
		memcpy(p->buf + p->len, data + i, n);
		p->len = (uint16_t)(p->len + n);
		i += n;
		if (p->len == p->need) {
			*taken = i;
			return finish_v2(p);
		}
	}
	*taken = i;
	return PROXY_NEED_MORE;
}

/* ---- detection ---- */

/*
 * Takes bytes while they are a prefix of a signature. Returns NEED_MORE with
 * the state moved on once one signature is whole; ABSENT or ERROR when a
 * byte continues neither.
 */
static enum proxy_status take_signature(struct proxy_parser *p, const uint8_t *data,
					size_t len, size_t *taken)
{
	size_t i = 0;
	while (i < len && p->state == STATE_SIGNATURE) {
		uint8_t c = data[i];
		bool v1 = p->len < sizeof(v1_signature) && memcmp(p->buf, v1_signature, p->len) == 0 &&
			  v1_signature[p->len] == c;
		bool v2 = p->len < sizeof(v2_signature) && memcmp(p->buf, v2_signature, p->len) == 0 &&
			  v2_signature[p->len] == c;
		if (!v1 && !v2) {
			if (p->mode == PROXY_MODE_OPTIONAL) {
				p->state = STATE_ABSENT;
				return PROXY_ABSENT;
			}
			return fail(p, PROXY_ERROR_SIGNATURE);
		}
		p->buf[p->len++] = c;
		i++;
		if (v1 && p->len == sizeof(v1_signature))
			p->state = STATE_V1_LINE;
		else if (v2 && p->len == sizeof(v2_signature))
			p->state = STATE_V2_HEAD;
	}
	*taken = i;
	return PROXY_NEED_MORE;
}

enum proxy_status proxy_parse(struct proxy_parser *p, const uint8_t *data, size_t len,
			      size_t *consumed)
{
	RMX_ASSERT(p->state <= STATE_V2_BLOCK);
	size_t done = 0, taken = 0;
	*consumed = 0;
	enum proxy_status status = PROXY_NEED_MORE;
	if (p->state == STATE_SIGNATURE) {
		uint16_t held = p->len;
		status = take_signature(p, data, len, &taken);
		if (status == PROXY_ABSENT) {
			p->len = held; /* this call's bytes stay the caller's */
			return PROXY_ABSENT;
		}
		done += taken;
	}
	if (status == PROXY_NEED_MORE && p->state == STATE_V1_LINE && done < len) {
		taken = 0;
		status = take_v1(p, data + done, len - done, &taken);
		done += taken;
	}
	if (status == PROXY_NEED_MORE &&
	    (p->state == STATE_V2_HEAD || p->state == STATE_V2_BLOCK) && done < len) {
		taken = 0;
		status = take_v2(p, data + done, len - done, &taken);
		done += taken;
	}
	if (status == PROXY_DONE)
		p->state = STATE_DONE;
	*consumed = done;
	return status;
}

const char *proxy_error_name(enum proxy_error error)
{
	switch (error) {
	case PROXY_ERROR_NONE:
		return "none";
	case PROXY_ERROR_SIGNATURE:
		return "signature";
	case PROXY_ERROR_V1_TOO_LONG:
		return "v1_too_long";
	case PROXY_ERROR_V1_SYNTAX:
		return "v1_syntax";
	case PROXY_ERROR_V1_ADDRESS:
		return "v1_address";
	case PROXY_ERROR_V1_PORT:
		return "v1_port";
	case PROXY_ERROR_V2_VERSION:
		return "v2_version";
	case PROXY_ERROR_V2_COMMAND:
		return "v2_command";
	case PROXY_ERROR_V2_FAMILY:
		return "v2_family";
	case PROXY_ERROR_V2_TOO_LONG:
		return "v2_too_long";
	case PROXY_ERROR_V2_ADDRESS:
		return "v2_address";
	case PROXY_ERROR_V2_TLV:
		return "v2_tlv";
	}
	return "unknown";
}

size_t proxy_address_text(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	const void *addr;
	if (ss->ss_family == AF_INET)
		addr = &((const struct sockaddr_in *)ss)->sin_addr;
	else if (ss->ss_family == AF_INET6)
		addr = &((const struct sockaddr_in6 *)ss)->sin6_addr;
	else
		return 0;
	if (cap > (size_t)INT32_MAX || !inet_ntop(ss->ss_family, addr, buf, (socklen_t)cap))
		return 0;
	return strlen(buf);
}
