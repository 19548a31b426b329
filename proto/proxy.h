/*
 * proxy.h - the PROXY protocol header (versions 1 and 2) that a load
 * balancer puts in front of a connection to tell who the client is.
 *
 * Sans-IO: core/ feeds the first bytes of a connection from a trusted
 * balancer to proxy_parse, in as many pieces as they arrive, and gets back
 * NEED_MORE, DONE (with how many of the bytes fed in that call belong to the
 * header: the rest belong to the SMTP session, or to TLS), ABSENT (optional
 * mode only: the peer sends no header, nothing consumed) or ERROR (a reason;
 * the connection is to be closed without a banner). Pure: no I/O, no
 * allocation, no clock; any thread, one parser per connection. The header is
 * kept in the parser until it is complete (at most PROXY_HEADER_MAX_BYTES),
 * as the specification asks: no address is decoded from a partial header.
 *
 * What is accepted (haproxy's doc/proxy-protocol.txt, version 2 of the text):
 *   - The version is told from the signature only: "PROXY" is version 1, the
 *     12-byte binary signature version 2; anything else is not a header.
 *   - v1: "PROXY TCP4|TCP6 src dst sport dport\r\n", exactly one space
 *     between fields, canonical addresses (IPv4: four decimal numbers without
 *     leading zeros; IPv6: hex groups with at most one "::", 128 bits, no
 *     embedded dotted quad, no zone), ports 0-65535 without leading zeros;
 *     or "PROXY UNKNOWN" and anything up to CRLF (address unknown). At most
 *     PROXY_V1_LINE_MAX_BYTES with the CRLF; a lone CR or LF is an error.
 *   - v2: version nibble 2; command LOCAL (the balancer's own connection, a
 *     health check: the block is skipped whole, whatever its family) or PROXY.
 *     Families TCP over IPv4/IPv6 give the client; UNSPEC, UDP and UNIX are
 *     valid but give no usable address (the specification's advice: fall
 *     back to the real endpoints), other family or protocol nibbles are
 *     errors. The block after the 16-byte head is at most
 *     PROXY_V2_BLOCK_MAX_BYTES and holds at least the family's addresses.
 *   - v2 TLVs after the addresses are walked with every length checked (a
 *     TLV that overruns the block is an error), unknown types skipped. ALPN,
 *     AUTHORITY, UNIQUE_ID (at most 128 bytes) and SSL (client flags,
 *     verify result, version, cipher and CN sub-TLVs) are reported as spans
 *     into the parser; when a type repeats, the first one is kept. The
 *     CRC32C TLV is skipped, not checked (receivers may leave it unchecked).
 */
#ifndef RINGMX_PROXY_H
#define RINGMX_PROXY_H

#include "../common/base.h"
#include "../common/bounds.h"

#include <netinet/in.h>
#include <sys/socket.h>

enum proxy_mode {
	PROXY_MODE_REQUIRED, /* the connection must start with a header */
	PROXY_MODE_OPTIONAL, /* it may; bytes that cannot start one are ABSENT */
};

enum proxy_status {
	PROXY_NEED_MORE, /* all input consumed; feed more */
	PROXY_DONE,      /* a whole header: see parser.header */
	PROXY_ABSENT,    /* optional mode: no header; nothing was consumed */
	PROXY_ERROR,     /* see parser.error; close the connection */
};

enum proxy_error {
	PROXY_ERROR_NONE,
	PROXY_ERROR_SIGNATURE,     /* required mode: neither signature */
	PROXY_ERROR_V1_TOO_LONG,   /* no CRLF within PROXY_V1_LINE_MAX_BYTES */
	PROXY_ERROR_V1_SYNTAX,     /* spaces, protocol word, lone CR or LF */
	PROXY_ERROR_V1_ADDRESS,    /* an address that is not canonical */
	PROXY_ERROR_V1_PORT,       /* a port out of range or with leading zeros */
	PROXY_ERROR_V2_VERSION,    /* version nibble other than 2 */
	PROXY_ERROR_V2_COMMAND,    /* command other than LOCAL or PROXY */
	PROXY_ERROR_V2_FAMILY,     /* unassigned family or protocol nibble */
	PROXY_ERROR_V2_TOO_LONG,   /* block longer than PROXY_V2_BLOCK_MAX_BYTES */
	PROXY_ERROR_V2_ADDRESS,    /* block shorter than the family's addresses */
	PROXY_ERROR_V2_TLV,        /* a TLV or SSL sub-TLV overruns its space */
};

/* What a header says. Spans point into the parser's buffer: valid until the
 * parser is initialised again. */
struct proxy_header {
	uint8_t version;    /* 1 or 2 */
	bool local;         /* v2 LOCAL: the balancer's own connection (a probe) */
	bool address_known; /* source and destination hold the client's endpoints;
			       false for LOCAL, v1 UNKNOWN, v2 UNSPEC/UDP/UNIX:
			       use the connection's own */
	struct sockaddr_storage source;      /* AF_INET or AF_INET6 with port */
	struct sockaddr_storage destination;
	/* v2 TLVs (empty when absent). */
	struct span alpn;
	struct span authority;
	struct span unique_id;
	bool ssl_present;
	uint8_t ssl_client;   /* PP2_CLIENT_SSL 0x01, CERT_CONN 0x02, CERT_SESS 0x04 */
	uint32_t ssl_verify;  /* 0: a client certificate was verified */
	struct span ssl_version;
	struct span ssl_cipher;
	struct span ssl_cn;
};

struct proxy_parser {
	struct proxy_header header; /* valid after PROXY_DONE */
	enum proxy_error error;     /* valid after PROXY_ERROR */
	/* Private. */
	uint8_t mode;   /* enum proxy_mode */
	uint8_t state;
	uint16_t len;   /* bytes of the header in buf so far */
	uint16_t need;  /* v2: the header's whole length, once its head is in */
	uint8_t buf[PROXY_HEADER_MAX_BYTES];
};

/* Makes p ready for the start of a connection. */
void proxy_parser_init(struct proxy_parser *p, enum proxy_mode mode);

/*
 * Feeds data[0..len) to p. Returns NEED_MORE with *consumed = len; DONE with
 * *consumed = the header's bytes in this call (data[*consumed..len) is the
 * session's); ABSENT with *consumed = 0 (optional mode only: the peer's bytes
 * are all the session's, see proxy_parser_held);
 * ERROR with *consumed unspecified. ABSENT may follow NEED_MORE (optional
 * mode, "PRO" then "X"): proxy_parser_held gives back what was taken. After DONE, ABSENT or ERROR, feeding p
 * again without proxy_parser_init is a bug (asserted).
 */
RMX_MUST_CHECK enum proxy_status proxy_parse(struct proxy_parser *p, const uint8_t *data,
					     size_t len, size_t *consumed);

/* After ABSENT: the bytes fed in earlier calls (a prefix of a signature that
 * the next bytes did not continue), held in the parser. They are the
 * session's and come before the data of the call that returned ABSENT. */
struct span proxy_parser_held(const struct proxy_parser *p);

/* A short name for an error ("v2_tlv"), for logs and metrics labels. */
const char *proxy_error_name(enum proxy_error error);

/*
 * Writes the address of ss (AF_INET or AF_INET6) as text, no brackets, no
 * port ("192.0.2.1", "2001:db8::1"), to buf. Returns the length, or 0 when
 * cap is too small or the family is neither (buf then holds nothing useful).
 */
RMX_MUST_CHECK size_t proxy_address_text(const struct sockaddr_storage *ss, char *buf,
					 size_t cap);

#endif
