/*
 * http.c - the metrics listener's HTTP/1.x request parser and response
 * writer.
 *
 * Bytes from the listener's connections come in through http_parse, which
 * runs one byte at a time through a state machine whose whole state lives in
 * struct http_parser: a request split anywhere parses exactly as if it came
 * whole. Only what the endpoint needs is kept (method, up to
 * HTTP_TOKEN_KEEP_BYTES of path, the version, and the facts of Host,
 * Content-Length, Transfer-Encoding and Connection); everything else is
 * checked for syntax and dropped. The answer is then written by
 * http_response_head into the caller's buffer. The accepted subset of
 * RFC 9112 is listed in http.h.
 *
 * Invariants: head_bytes never exceeds HTTP_REQUEST_HEAD_MAX_BYTES when the
 * parser is in a non-error state; the kept tokens are bounded (asserted);
 * DONE and ERROR are final until http_parser_init.
 */
#include "http.h"

#include <string.h>

/* Character classes, as bits of char_class[]. */
enum {
	T = 1 << 0, /* tchar (RFC 9110 5.6.2): methods, field names, options */
	V = 1 << 1, /* field-vchar: VCHAR or obs-text (RFC 9110 5.5) */
	P = 1 << 2, /* request-target byte: RFC 3986 unreserved, sub-delims,
		       ":@/?" and '%' (pct-encoding is not decoded) */
	W = 1 << 3, /* SP or HTAB */
	TV = T | V,
	VP = V | P,
	TVP = T | V | P,
};

static const uint8_t char_class[256] = {
	/* 0x00-0x0f: controls; only HTAB is whitespace (CR, LF handled apart) */
	0, 0, 0, 0, 0, 0, 0, 0, 0, W, 0, 0, 0, 0, 0, 0,
	/* 0x10-0x1f: controls */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x20-0x2f:  SP ! " # $ % & ' ( ) * + , - . / */
	W, TVP, V, TV, TVP, TVP, TVP, TVP, VP, VP, TVP, TVP, VP, TVP, TVP, VP,
	/* 0x30-0x3f: 0-9 : ; < = > ? */
	TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, VP, VP, V, VP, V, VP,
	/* 0x40-0x4f: @ A-O */
	VP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP,
	/* 0x50-0x5f: P-Z [ \ ] ^ _ */
	TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, V, V, V, TV, TVP,
	/* 0x60-0x6f: ` a-o */
	TV, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP,
	/* 0x70-0x7f: p-z { | } ~ DEL */
	TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, TVP, V, TV, V, TVP, 0,
	/* 0x80-0xff: obs-text, allowed in field values only */
	V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,
	V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,
	V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,
	V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,
	V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,
	V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,
	V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,
	V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,
};

enum parse_state {
	S_START,          /* before the request line (empty lines skipped) */
	S_START_LF,       /* CR of an empty line seen */
	S_METHOD,
	S_TARGET,         /* first byte of the request-target */
	S_ABS_SCHEME,     /* absolute form: "http" or "https" */
	S_ABS_SLASH1,
	S_ABS_SLASH2,
	S_ABS_AUTHORITY,  /* host[:port], up to the path */
	S_PATH,
	S_QUERY,
	S_VERSION,        /* "HTTP/d.d", collected in token */
	S_REQUEST_LF,     /* CR after the version seen */
	S_FIELD_START,    /* a field line or the empty line */
	S_FIELD_NAME,
	S_VALUE_OWS,      /* whitespace before a value */
	S_VALUE,
	S_FIELD_LF,       /* CR after a value seen */
	S_END_LF,         /* CR of the final empty line seen */
	S_DONE,
	S_ERROR,
};

/* Fields whose values matter here. */
enum { F_OTHER, F_HOST, F_CONTENT_LENGTH, F_TRANSFER_ENCODING, F_CONNECTION };

/* Returned by step: 0 to go on, DONE at the end of the head, or a status. */
#define STEP_DONE 1

void http_parser_init(struct http_parser *p)
{
	memset(p, 0, sizeof(*p));
	p->state = S_START;
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static uint8_t to_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + ('a' - 'A')) : c;
}

static void token_reset(struct http_parser *p)
{
	p->token_len = 0;
	p->token_overflow = false;
}

static void token_push(struct http_parser *p, uint8_t c)
{
	if (p->token_len < sizeof(p->token))
		p->token[p->token_len++] = (char)c;
	else
		p->token_overflow = true;
}

static bool token_is(const struct http_parser *p, const char *s)
{
	size_t n = strlen(s);
	return !p->token_overflow && p->token_len == n && memcmp(p->token, s, n) == 0;
}

static void path_push(struct http_parser *p, uint8_t c)
{
	if (p->path_len < sizeof(p->path))
		p->path[p->path_len++] = (char)c;
	else
		p->path_overflow = true;
}

static bool path_is(const struct http_parser *p, const char *s)
{
	size_t n = strlen(s);
	return !p->path_overflow && p->path_len == n && memcmp(p->path, s, n) == 0;
}

/* The method token is complete. Methods are case-sensitive (RFC 9110 9.1). */
static void end_method(struct http_parser *p)
{
	if (token_is(p, "GET"))
		p->request.method = HTTP_METHOD_GET;
	else if (token_is(p, "HEAD"))
		p->request.method = HTTP_METHOD_HEAD;
	else
		p->request.method = HTTP_METHOD_OTHER;
	token_reset(p);
}

/* One byte of "HTTP/d.d" (case-sensitive, RFC 9112 2.3). Returns 0 or 400. */
static unsigned version_byte(struct http_parser *p, uint8_t c)
{
	static const char prefix[] = "HTTP/";
	unsigned i = p->token_len;
	bool ok;
	if (i < sizeof(prefix) - 1)
		ok = c == (uint8_t)prefix[i];
	else if (i == 5 || i == 7)
		ok = is_digit(c);
	else if (i == 6)
		ok = c == '.';
	else
		ok = false; /* anything after "HTTP/d.d" but the line end */
	if (!ok)
		return 400;
	token_push(p, c);
	return 0;
}

/* The request line ended. Returns 0, 400 or 505. */
static unsigned end_version(struct http_parser *p)
{
	if (p->token_len != 8)
		return 400;
	unsigned major = (unsigned)(p->token[5] - '0');
	unsigned minor = (unsigned)(p->token[7] - '0');
	if (major != 1)
		return 505;
	/* RFC 9110 6.2: a higher minor version is answered as our own. */
	p->request.version_minor = minor >= 1 ? 1 : 0;
	token_reset(p);
	return 0;
}

/* A field name is complete (lower-cased in token). */
static unsigned end_field_name(struct http_parser *p)
{
	if (token_is(p, "host")) {
		p->field = F_HOST;
		p->host_count++;
	} else if (token_is(p, "content-length")) {
		p->field = F_CONTENT_LENGTH;
		p->value_number = 0;
		p->value_digits = false;
		p->value_done = false;
	} else if (token_is(p, "transfer-encoding")) {
		p->field = F_TRANSFER_ENCODING;
		p->transfer_encoding = true;
	} else if (token_is(p, "connection")) {
		p->field = F_CONNECTION;
	} else {
		p->field = F_OTHER;
	}
	token_reset(p);
	return 0;
}

/* One Connection option ended (RFC 9110 7.6.1); options are
 * case-insensitive and were lower-cased on the way in. */
static void end_connection_option(struct http_parser *p)
{
	if (token_is(p, "close"))
		p->conn_close = true;
	else if (token_is(p, "keep-alive"))
		p->conn_keep_alive = true;
	token_reset(p);
}

/* One byte of a field value (class V or W). Returns 0 or 400. */
static unsigned value_byte(struct http_parser *p, uint8_t c)
{
	switch (p->field) {
	case F_CONTENT_LENGTH:
		/* Content-Length = 1*DIGIT (RFC 9110 8.6); a list such as
		 * "5, 5" is refused, as is anything that overflows. */
		if (is_digit(c) && !p->value_done) {
			uint64_t digit = (uint64_t)(c - '0');
			if (p->value_number > (UINT64_MAX - digit) / 10)
				return 400;
			p->value_number = p->value_number * 10 + digit;
			p->value_digits = true;
			return 0;
		}
		if ((char_class[c] & W) && p->value_digits) {
			p->value_done = true; /* trailing OWS */
			return 0;
		}
		return 400;
	case F_CONNECTION:
		if (char_class[c] & T) {
			token_push(p, to_lower(c));
			return 0;
		}
		if (c == ',' || (char_class[c] & W)) {
			end_connection_option(p);
			return 0;
		}
		return 400;
	default:
		return 0;
	}
}

/* A field line ended (its value may be empty). Returns 0 or 400. */
static unsigned end_field(struct http_parser *p)
{
	switch (p->field) {
	case F_CONTENT_LENGTH:
		if (!p->value_digits)
			return 400;
		/* RFC 9112 6.3: differing lengths are unrecoverable. */
		if (p->content_length_seen && p->content_length != p->value_number)
			return 400;
		p->content_length_seen = true;
		p->content_length = p->value_number;
		break;
	case F_CONNECTION:
		end_connection_option(p);
		break;
	default:
		break;
	}
	p->field = F_OTHER;
	return 0;
}

/* The empty line that ends the head has begun: a status if the head as a
 * whole is refused, else 0. */
static unsigned head_refusal(const struct http_parser *p)
{
	if (p->transfer_encoding)
		return 400;
	if (p->content_length_seen && p->content_length > 0)
		return 413;
	/* RFC 9112 3.2: 1.1 requests need Host; no request may have two. */
	if (p->host_count > 1 || (p->request.version_minor == 1 && p->host_count == 0))
		return 400;
	return 0;
}

/* The head is complete (and was not refused). Returns STEP_DONE. */
static unsigned end_head(struct http_parser *p)
{
	if (p->request.version_minor == 1)
		p->request.keep_alive = !p->conn_close;
	else
		p->request.keep_alive = p->conn_keep_alive && !p->conn_close;
	if (path_is(p, "/metrics"))
		p->request.route = HTTP_ROUTE_METRICS;
	else if (path_is(p, "/healthz"))
		p->request.route = HTTP_ROUTE_HEALTHZ;
	else if (path_is(p, "/readyz"))
		p->request.route = HTTP_ROUTE_READYZ;
	else
		p->request.route = HTTP_ROUTE_NOT_FOUND;
	return STEP_DONE;
}

/* Where the target's path ends: at SP (version next) or '?'. */
static unsigned target_end(uint8_t c, enum parse_state *next)
{
	if (c == ' ') {
		*next = S_VERSION;
		return 0;
	}
	if (c == '?') {
		*next = S_QUERY;
		return 0;
	}
	return 400;
}

/* One byte through the state machine. */
static unsigned step(struct http_parser *p, uint8_t c)
{
	uint8_t cls = char_class[c];
	enum parse_state next = (enum parse_state)p->state;
	unsigned rc = 0;

	switch (p->state) {
	case S_START:
		/* RFC 9112 2.2: ignore empty lines before the request line. */
		if (c == '\r')
			next = S_START_LF;
		else if (c == '\n')
			next = S_START;
		else if (cls & T) {
			token_push(p, c);
			next = S_METHOD;
		} else
			rc = 400;
		break;
	case S_START_LF:
		if (c == '\n')
			next = S_START;
		else
			rc = 400;
		break;
	case S_METHOD:
		if (cls & T)
			token_push(p, c);
		else if (c == ' ') {
			end_method(p);
			next = S_TARGET;
		} else
			rc = 400;
		break;
	case S_TARGET:
		if (c == '/') {
			path_push(p, c);
			next = S_PATH;
		} else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
			token_push(p, to_lower(c));
			next = S_ABS_SCHEME;
		} else
			rc = 400; /* "*" (OPTIONS only) and junk */
		break;
	case S_ABS_SCHEME:
		if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
			token_push(p, to_lower(c));
		else if (c == ':' && (token_is(p, "http") || token_is(p, "https"))) {
			token_reset(p);
			next = S_ABS_SLASH1;
		} else
			rc = 400;
		break;
	case S_ABS_SLASH1:
		next = S_ABS_SLASH2;
		rc = c == '/' ? 0 : 400;
		break;
	case S_ABS_SLASH2:
		next = S_ABS_AUTHORITY;
		rc = c == '/' ? 0 : 400;
		break;
	case S_ABS_AUTHORITY:
		/* The authority is not kept; an http URI needs a host. */
		if (c == '/' || c == '?' || c == ' ') {
			if (p->token_len == 0 && !p->token_overflow) {
				rc = 400;
				break;
			}
			token_reset(p);
			path_push(p, '/'); /* an empty path is "/" */
			if (c != '/')
				rc = target_end(c, &next);
			else
				next = S_PATH;
		} else if ((cls & P) || c == '[' || c == ']')
			token_push(p, c);
		else
			rc = 400;
		break;
	case S_PATH:
		if ((cls & P) && c != '?')
			path_push(p, c);
		else
			rc = target_end(c, &next);
		break;
	case S_QUERY:
		/* The query is ignored, so it is read leniently: any visible
		 * ASCII but '#' (clients send "[]{}|" unencoded). */
		if (c == ' ')
			next = S_VERSION;
		else if (c < 0x21 || c > 0x7e || c == '#')
			rc = 400;
		break;
	case S_VERSION:
		/* A line is judged at its CR, so errors point at the earliest
		 * byte; the LF then only completes it. */
		if (c == '\r' || c == '\n') {
			rc = end_version(p);
			next = c == '\r' ? S_REQUEST_LF : S_FIELD_START;
		} else
			rc = version_byte(p, c);
		break;
	case S_REQUEST_LF:
		next = S_FIELD_START;
		rc = c == '\n' ? 0 : 400;
		break;
	case S_FIELD_START:
		if (c == '\r') {
			rc = head_refusal(p);
			next = S_END_LF;
		} else if (c == '\n') {
			rc = head_refusal(p);
			if (rc == 0)
				rc = end_head(p);
		}
		else if (cls & T) {
			if (++p->field_count > HTTP_REQUEST_FIELDS_MAX) {
				rc = 431;
				break;
			}
			token_push(p, to_lower(c));
			next = S_FIELD_NAME;
		} else
			rc = 400; /* obs-fold (SP/HTAB) or junk (RFC 9112 5.2) */
		break;
	case S_FIELD_NAME:
		if (cls & T)
			token_push(p, to_lower(c));
		else if (c == ':') {
			rc = end_field_name(p);
			next = S_VALUE_OWS;
		} else
			rc = 400; /* includes whitespace before the colon (5.1) */
		break;
	case S_VALUE_OWS:
	case S_VALUE:
		if (c == '\r' || c == '\n') {
			rc = end_field(p);
			next = c == '\r' ? S_FIELD_LF : S_FIELD_START;
		} else if (p->state == S_VALUE_OWS && (cls & W))
			next = S_VALUE_OWS;
		else if (cls & (V | W)) {
			rc = value_byte(p, c);
			next = S_VALUE;
		} else
			rc = 400; /* NUL and other controls */
		break;
	case S_FIELD_LF:
		next = S_FIELD_START;
		rc = c == '\n' ? 0 : 400;
		break;
	case S_END_LF:
		rc = c == '\n' ? end_head(p) : 400;
		break;
	default:
		RMX_ASSERT(!"http_parse after DONE or ERROR without http_parser_init");
	}
	p->state = (uint8_t)next;
	return rc;
}

/* The answer to a head that grew past its bound. */
static unsigned too_long_status(const struct http_parser *p)
{
	switch (p->state) {
	case S_START:
	case S_START_LF:
		return 400; /* nothing but empty lines */
	case S_FIELD_START:
	case S_FIELD_NAME:
	case S_VALUE_OWS:
	case S_VALUE:
	case S_FIELD_LF:
	case S_END_LF:
		return 431;
	default:
		return 414;
	}
}

enum http_parse_status http_parse(struct http_parser *p, const uint8_t *data, size_t len,
				  size_t *consumed)
{
	RMX_ASSERT(p->state != S_DONE && p->state != S_ERROR);
	RMX_ASSERT(data != NULL || len == 0);
	for (size_t i = 0; i < len; i++) {
		unsigned rc;
		if (p->head_bytes == HTTP_REQUEST_HEAD_MAX_BYTES)
			rc = too_long_status(p);
		else {
			p->head_bytes++;
			rc = step(p, data[i]);
		}
		if (rc == STEP_DONE) {
			p->state = S_DONE;
			*consumed = i + 1;
			return HTTP_PARSE_DONE;
		}
		if (rc != 0) {
			p->state = S_ERROR;
			p->error_status = (uint16_t)rc;
			*consumed = i;
			return HTTP_PARSE_ERROR;
		}
	}
	*consumed = len;
	return HTTP_PARSE_AGAIN;
}

unsigned http_request_refusal(const struct http_request *req)
{
	if (req->method == HTTP_METHOD_OTHER)
		return 405;
	if (req->route == HTTP_ROUTE_NOT_FOUND)
		return 404;
	return 0;
}

/* --- Responses ----------------------------------------------------------- */

const char *http_status_reason(unsigned status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return NULL;
	}
}

struct http_response http_response_for(const struct http_request *req, unsigned status,
				       enum http_body body, size_t body_bytes)
{
	RMX_ASSERT(http_status_reason(status) != NULL);
	struct http_response r = {
		.status = status,
		.body = body,
		.body_bytes = body_bytes,
		.head_only = req != NULL && req->method == HTTP_METHOD_HEAD,
		.close = req == NULL || !req->keep_alive,
		.keep_alive_10 = req != NULL && req->keep_alive && req->version_minor == 0,
	};
	return r;
}

/* A bounded writer: once a piece does not fit, the whole write fails. */
struct head_out {
	char *buf;
	size_t cap;
	size_t len;
	bool overflow;
};

static void put(struct head_out *o, const char *s)
{
	size_t n = strlen(s);
	if (o->overflow || n > o->cap - o->len) {
		o->overflow = true;
		return;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void put_u64(struct head_out *o, uint64_t v)
{
	char tmp[21];
	size_t i = sizeof(tmp) - 1;
	tmp[i] = '\0';
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	put(o, tmp + i);
}

size_t http_response_head(const struct http_response *r, char *buf, size_t cap)
{
	static const char *const content_type[] = {
		[HTTP_BODY_TEXT] = "text/plain; charset=utf-8",
		[HTTP_BODY_METRICS] = "text/plain; version=0.0.4; charset=utf-8",
	};
	const char *reason = http_status_reason(r->status);
	RMX_ASSERT(reason != NULL);
	RMX_ASSERT((unsigned)r->body < RMX_ARRAY_LEN(content_type));
	RMX_ASSERT(!(r->close && r->keep_alive_10));
	RMX_ASSERT(buf != NULL || cap == 0);

	struct head_out o = { buf, cap, 0, false };
	put(&o, "HTTP/1.1 ");
	put_u64(&o, r->status);
	put(&o, " ");
	put(&o, reason);
	put(&o, "\r\nContent-Type: ");
	put(&o, content_type[r->body]);
	put(&o, "\r\nContent-Length: ");
	put_u64(&o, r->body_bytes);
	put(&o, "\r\n");
	if (r->status == 405)
		put(&o, "Allow: GET, HEAD\r\n");
	/* A scrape must never be answered from a cache. */
	put(&o, "Cache-Control: no-store\r\n");
	if (r->close)
		put(&o, "Connection: close\r\n");
	else if (r->keep_alive_10)
		put(&o, "Connection: keep-alive\r\n");
	put(&o, "\r\n");
	if (o.overflow)
		return 0;
	RMX_ASSERT(o.len <= HTTP_RESPONSE_HEAD_MAX_BYTES);
	return o.len;
}

size_t http_response_write(const struct http_response *r, struct span body, char *buf,
			   size_t cap)
{
	RMX_ASSERT(body.len == r->body_bytes || (r->head_only && body.len == 0));
	size_t head = http_response_head(r, buf, cap);
	if (head == 0)
		return 0;
	if (r->head_only)
		return head;
	if (body.len > cap - head)
		return 0;
	if (body.len > 0)
		memcpy(buf + head, body.ptr, body.len);
	return head + body.len;
}
