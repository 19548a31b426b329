/*
 * http.h - the HTTP/1.1 request parser and response writer of the metrics
 * listener (/metrics, /healthz, /readyz).
 *
 * Sans-IO: the metrics endpoint (core/metrics_http.c) feeds received bytes
 * to http_parse and sends what http_response_head / http_response_write put
 * in its buffer. The parser keeps its whole state in struct http_parser, so
 * input may arrive split at any byte and nothing of it has to be kept by the
 * caller. Pure: no I/O, no allocation, no clock; any thread, one parser per
 * connection.
 *
 * What the endpoint accepts (RFC 9110, RFC 9112):
 *   - HTTP/1.0 and HTTP/1.1 (1.x with x > 1 is answered as 1.1); other
 *     versions get 505. Persistence: 1.1 keeps the connection unless
 *     "Connection: close"; 1.0 only with "Connection: keep-alive".
 *   - GET and HEAD; any other method gets 405 with "Allow: GET, HEAD".
 *   - Targets in origin form ("/metrics?x=1") or absolute form
 *     ("http://host:9100/metrics"). The query is ignored, and so read
 *     leniently (any visible ASCII but '#'). Paths other than the three
 *     are 404. No percent-decoding: "/%6Detrics" is 404.
 *   - No request bodies: a Content-Length above 0 gets 413 (the body limit
 *     is zero) and any Transfer-Encoding gets 400 (a body of unknown length
 *     on a GET is refused outright, which also rules out request smuggling
 *     through CL/TE disagreement). Both answers close the connection.
 *   - HTTP/1.1 requests carry exactly one Host field (400 otherwise).
 *   - The request head (request line, fields, empty line; leading empty
 *     lines included) is at most HTTP_REQUEST_HEAD_MAX_BYTES: past that 414
 *     while still in the request line, 431 in the fields; at most
 *     HTTP_REQUEST_FIELDS_MAX fields (431).
 *   - Lines end in CRLF or a bare LF (RFC 9112 2.2 allows accepting LF); a
 *     bare CR, a control byte, whitespace before a field's colon and
 *     obsolete line folding are 400.
 */
#ifndef RINGMX_HTTP_H
#define RINGMX_HTTP_H

#include "../common/base.h"
#include "../common/bounds.h"


enum http_method { HTTP_METHOD_OTHER, HTTP_METHOD_GET, HTTP_METHOD_HEAD };

enum http_route {
	HTTP_ROUTE_NOT_FOUND,
	HTTP_ROUTE_METRICS, /* /metrics */
	HTTP_ROUTE_HEALTHZ, /* /healthz: the process is alive */
	HTTP_ROUTE_READYZ,  /* /readyz: 503 while draining */
};

/* A parsed request head. */
struct http_request {
	enum http_method method;
	enum http_route route;
	uint8_t version_minor; /* 0 or 1 */
	bool keep_alive;       /* the client may send another request */
};

enum http_parse_status {
	HTTP_PARSE_AGAIN, /* all input consumed; the head is not complete yet */
	HTTP_PARSE_DONE,  /* one whole head: see parser.request */
	HTTP_PARSE_ERROR, /* malformed: answer parser.error_status and close */
};

/* Longest token the parser keeps: method, path, field name, connection
 * option. Longer ones are read to their end and match nothing. */
#define HTTP_TOKEN_KEEP_BYTES 24

struct http_parser {
	struct http_request request; /* valid after HTTP_PARSE_DONE */
	uint16_t error_status;       /* valid after HTTP_PARSE_ERROR */
	/* Private. */
	uint8_t state;
	uint8_t field;       /* which field's value is being read */
	uint8_t token_len;
	bool token_overflow;
	bool conn_close;
	bool conn_keep_alive;
	bool transfer_encoding;
	bool content_length_seen;
	bool value_digits;   /* Content-Length: digits seen in this value */
	bool value_done;     /* Content-Length: OWS after the digits */
	uint8_t version_major;
	uint8_t host_count;
	uint16_t field_count;
	uint32_t head_bytes;
	uint64_t content_length;
	uint64_t value_number;
	char token[HTTP_TOKEN_KEEP_BYTES];
	char path[HTTP_TOKEN_KEEP_BYTES];
	uint8_t path_len;
	bool path_overflow;
};

/* Makes p ready for a new request (also between requests on one
 * connection). */
void http_parser_init(struct http_parser *p);

/*
 * Feeds data[0..len) to p. Returns AGAIN with *consumed = len when the head
 * is still incomplete; DONE with *consumed = bytes up to and including the
 * head's final line end (what follows is the next request: init p again
 * and feed it); ERROR with *consumed at the offending byte. After DONE or
 * ERROR, feeding p again without http_parser_init is a bug (asserted).
 */
enum http_parse_status http_parse(struct http_parser *p, const uint8_t *data, size_t len,
				  size_t *consumed);

/* What a parsed request is answered with before its route is served:
 * 405 for a method other than GET and HEAD, 404 for an unknown path, 0 when
 * the route should be served. */
unsigned http_request_refusal(const struct http_request *req);

/* Body kinds: each has a fixed Content-Type, so a head's length is bounded. */
enum http_body {
	HTTP_BODY_TEXT,    /* text/plain; charset=utf-8 */
	HTTP_BODY_METRICS, /* text/plain; version=0.0.4; charset=utf-8 */
};

struct http_response {
	unsigned status;     /* 200, 404, 503 ... (one http_status_reason knows) */
	enum http_body body;
	size_t body_bytes;   /* Content-Length: also for HEAD, where no body follows */
	bool head_only;      /* the request was HEAD: send no body */
	bool close;          /* "Connection: close"; close after sending */
	bool keep_alive_10;  /* "Connection: keep-alive" (a kept HTTP/1.0 connection) */
};

/*
 * The response to req (NULL after a parse error, which always closes) with
 * this status and body. Sets head_only for HEAD, and the connection fields
 * from the request's persistence; 405 carries "Allow: GET, HEAD".
 */
struct http_response http_response_for(const struct http_request *req, unsigned status,
				       enum http_body body, size_t body_bytes);

/* Reason phrase for a status ("Not Found"); NULL for a status the endpoint
 * never sends (a bug to ask a head for). */
const char *http_status_reason(unsigned status);

/*
 * Writes r's status line and header fields, ending with the empty line, to
 * buf. Returns the bytes written (at most HTTP_RESPONSE_HEAD_MAX_BYTES), or
 * 0 when cap is too small (buf then holds nothing useful).
 */
RMX_MUST_CHECK size_t http_response_head(const struct http_response *r, char *buf, size_t cap);

/*
 * Head and body together: the head, then body (r->body_bytes of it, which
 * must equal body.len) unless r->head_only. For HEAD the body may be left
 * empty: only its length (r->body_bytes, e.g. from a metrics_render dry run)
 * is needed. Returns bytes written, or 0 when cap is too small.
 */
RMX_MUST_CHECK size_t http_response_write(const struct http_response *r, struct span body,
					  char *buf, size_t cap);

#endif
