/*
 * test_http.c - the metrics listener's request parser and response writer.
 *
 * Every request case is fed whole, one byte at a time, and split in two at
 * every offset (and in three at every pair of offsets for the short ones);
 * each chunk sits in a heap block of exactly its size, so a read past it is
 * an AddressSanitizer error. All feedings must agree on the status, the
 * bytes consumed and the parsed request. Then every error path, the bounds
 * at their edges, pipelined requests, mutated requests (whole against
 * byte by byte), and the exact bytes of responses and their buffer bounds.
 * (The endpoint built from them meets real clients in test_metrics_http.c.)
 */
#include "../proto/http.h"
#include "test.h"
#include "test_util.h"

#include <errno.h>

struct outcome {
	enum http_parse_status status;
	size_t consumed; /* from the start of the input */
	unsigned error_status;
	struct http_request request;
};

/* Feeds in[0..n) as chunks ending at the given cut offsets. */
static struct outcome feed_cuts(const char *in, size_t n, const size_t *cuts, size_t ncuts)
{
	struct http_parser p;
	http_parser_init(&p);
	struct outcome o = { HTTP_PARSE_AGAIN, 0, 0, { 0 } };
	size_t start = 0;
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : n;
		REQUIRE(end >= start && end <= n);
		size_t len = end - start;
		uint8_t *chunk = malloc(len ? len : 1);
		REQUIRE(chunk != NULL);
		memcpy(chunk, in + start, len);
		size_t used = ~(size_t)0;
		enum http_parse_status st = http_parse(&p, len ? chunk : NULL, len, &used);
		free(chunk);
		REQUIRE(used <= len);
		o.status = st;
		o.consumed = start + used;
		if (st == HTTP_PARSE_DONE) {
			o.request = p.request;
			return o;
		}
		if (st == HTTP_PARSE_ERROR) {
			o.error_status = p.error_status;
			return o;
		}
		REQUIRE(used == len);
		start = end;
	}
	return o;
}

static bool same_outcome(const struct outcome *a, const struct outcome *b)
{
	if (a->status != b->status || a->consumed != b->consumed)
		return false;
	if (a->status == HTTP_PARSE_ERROR)
		return a->error_status == b->error_status;
	if (a->status == HTTP_PARSE_DONE)
		return a->request.method == b->request.method &&
		       a->request.route == b->request.route &&
		       a->request.version_minor == b->request.version_minor &&
		       a->request.keep_alive == b->request.keep_alive;
	return true;
}

/* Whole, per byte, at every split, and (for short input) every pair of
 * splits: all must agree. Returns the whole-input outcome. */
static struct outcome feed_every_way(const char *in, size_t n)
{
	struct outcome whole = feed_cuts(in, n, NULL, 0);
	bool agree = true;

	size_t *cuts = malloc((n ? n : 1) * sizeof(size_t));
	REQUIRE(cuts != NULL);
	for (size_t i = 0; i < n; i++)
		cuts[i] = i + 1;
	struct outcome bytewise = feed_cuts(in, n, cuts, n ? n - 1 : 0);
	agree = agree && same_outcome(&whole, &bytewise);
	free(cuts);

	for (size_t a = 0; a <= n; a++) {
		size_t one[1] = { a };
		struct outcome o = feed_cuts(in, n, one, 1);
		agree = agree && same_outcome(&whole, &o);
	}
	if (n <= 96) {
		for (size_t a = 0; a <= n; a++)
			for (size_t b = a; b <= n; b++) {
				size_t two[2] = { a, b };
				struct outcome o = feed_cuts(in, n, two, 2);
				agree = agree && same_outcome(&whole, &o);
			}
	}
	if (!agree)
		fprintf(stderr, "splits disagree on: %.*s\n", (int)RMX_MIN(n, 200), in);
	CHECK(agree);
	return whole;
}

static void expect_request(const char *in, enum http_method method, enum http_route route,
			   unsigned minor, bool keep_alive)
{
	size_t n = strlen(in);
	struct outcome o = feed_every_way(in, n);
	if (o.status != HTTP_PARSE_DONE)
		fprintf(stderr, "not parsed (status %d, error %u): %s\n", o.status,
			o.error_status, in);
	CHECK(o.status == HTTP_PARSE_DONE);
	CHECK_EQ_U(o.consumed, n);
	CHECK_EQ_U(o.request.method, method);
	CHECK_EQ_U(o.request.route, route);
	CHECK_EQ_U(o.request.version_minor, minor);
	CHECK_EQ_U(o.request.keep_alive, keep_alive);
}

/* at: offset of the byte that is refused (the bytes consumed). */
static void expect_error_n(const char *in, size_t n, unsigned status, size_t at)
{
	struct outcome o = feed_every_way(in, n);
	if (o.status != HTTP_PARSE_ERROR || o.error_status != status || o.consumed != at)
		fprintf(stderr, "expected %u at %zu, got status %d error %u at %zu: %.*s\n",
			status, at, o.status, o.error_status, o.consumed, (int)RMX_MIN(n, 120),
			in);
	CHECK(o.status == HTTP_PARSE_ERROR);
	CHECK_EQ_U(o.error_status, status);
	CHECK_EQ_U(o.consumed, at);
}

static void expect_error(const char *in, unsigned status, size_t at)
{
	expect_error_n(in, strlen(in), status, at);
}

static void test_valid_requests(void)
{
	expect_request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_METHOD_GET,
		       HTTP_ROUTE_METRICS, 1, true);
	expect_request("HEAD /healthz HTTP/1.0\r\n\r\n", HTTP_METHOD_HEAD, HTTP_ROUTE_HEALTHZ, 0,
		       false);
	expect_request("GET /readyz?verbose=1&x=%20/? HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
		       HTTP_METHOD_GET, HTTP_ROUTE_READYZ, 0, true);
	expect_request("GET /metrics?a[]={b}|\"c\"^`\\<> HTTP/1.1\r\nHost: a\r\n\r\n",
		       HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 1, true);
	expect_request("GET /metrics? HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		       HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 1, false);
	expect_request("GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\r\n",
		       HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 1, true);
	expect_request("GET /metrics HTTP/1.1\r\nhOsT: a\r\nConnection: Upgrade,\t CLOSE \r\n\r\n",
		       HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 1, false);
	/* 1.0 keep-alive then close: close wins. */
	expect_request("GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
		       HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 0, false);
	/* A longer option that starts like one of ours is not it. */
	expect_request("GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n",
		       HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 1, true);
	/* Bare LF line ends, and empty lines before the request line. */
	expect_request("GET /metrics HTTP/1.1\nHost: a\n\n", HTTP_METHOD_GET, HTTP_ROUTE_METRICS,
		       1, true);
	expect_request("\r\n\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_METHOD_GET,
		       HTTP_ROUTE_HEALTHZ, 1, true);
	/* Absolute form; the authority is not the route. */
	expect_request("GET http://example.org:9100/metrics?x HTTP/1.1\r\nHost: example.org\r\n\r\n",
		       HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 1, true);
	expect_request("GET HTTPS://[::1]:9100 HTTP/1.1\r\nHost: [::1]\r\n\r\n", HTTP_METHOD_GET,
		       HTTP_ROUTE_NOT_FOUND, 1, true);
	expect_request("GET http://a?x HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_METHOD_GET,
		       HTTP_ROUTE_NOT_FOUND, 1, true);
	/* Paths are matched exactly, without decoding. */
	const char *not_found[] = {
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /metricsx HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /metrics/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /Metrics HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /%6Detrics HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET //metrics HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /metrics/../metrics HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /readyzreadyzreadyzreadyzreadyz HTTP/1.1\r\nHost: a\r\n\r\n",
	};
	for (size_t i = 0; i < RMX_ARRAY_LEN(not_found); i++)
		expect_request(not_found[i], HTTP_METHOD_GET, HTTP_ROUTE_NOT_FOUND, 1, true);
	/* Methods are case-sensitive; others parse and are refused after. */
	expect_request("POST /metrics HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_METHOD_OTHER,
		       HTTP_ROUTE_METRICS, 1, true);
	expect_request("get /metrics HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_METHOD_OTHER,
		       HTTP_ROUTE_METRICS, 1, true);
	expect_request("GETS /metrics HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_METHOD_OTHER,
		       HTTP_ROUTE_METRICS, 1, true);
	expect_request("GETGETGETGETGETGETGETGETGETGET /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
		       HTTP_METHOD_OTHER, HTTP_ROUTE_METRICS, 1, true);
	/* Content-Length 0 (repeated alike) is no body. */
	expect_request("GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
		       "content-length:000 \r\n\r\n",
		       HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 1, true);
	/* A later 1.x is answered as 1.1. */
	expect_request("GET /metrics HTTP/1.7\r\nHost: a\r\n\r\n", HTTP_METHOD_GET,
		       HTTP_ROUTE_METRICS, 1, true);
	/* Odd but legal field names and values (tchars, HTAB, obs-text, empty). */
	expect_request("GET /metrics HTTP/1.1\r\nX-A!#$%&'*+-.^_`|~: v\t\"w\" \x80\xff\r\n"
		       "Empty:\r\nHost:a\r\nUser-Agent: Prometheus/2.42.0\r\n"
		       "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
		       HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 1, true);
}

static void test_errors(void)
{
	/* Request line. */
	expect_error(" GET / HTTP/1.1\r\n", 400, 0);
	expect_error("\r\r", 400, 1);
	expect_error("GET  /metrics HTTP/1.1\r\n", 400, 4);
	expect_error("GET\t/metrics HTTP/1.1\r\n", 400, 3);
	expect_error("G(T /metrics HTTP/1.1\r\n", 400, 1);
	expect_error("GET * HTTP/1.1\r\n", 400, 4);
	expect_error("GET metrics HTTP/1.1\r\n", 400, 11);
	expect_error("GET ftp://a/metrics HTTP/1.1\r\n", 400, 7);
	expect_error("GET http:/a/metrics HTTP/1.1\r\n", 400, 10);
	expect_error("GET http:///metrics HTTP/1.1\r\n", 400, 11);
	expect_error("GET http://a\"b/ HTTP/1.1\r\n", 400, 12);
	expect_error("GET /me\"trics HTTP/1.1\r\n", 400, 7);
	expect_error("GET /a#frag HTTP/1.1\r\n", 400, 6);
	expect_error("GET /a?b#c HTTP/1.1\r\n", 400, 8);
	expect_error("GET /a?b\x80 HTTP/1.1\r\n", 400, 8);
	expect_error("GET /a?b\tc HTTP/1.1\r\n", 400, 8);
	expect_error("GET /a\x80 HTTP/1.1\r\n", 400, 6);
	expect_error("GET /metrics\r\n", 400, 12);
	expect_error("GET /metrics HTTP/1.1 \r\n", 400, 21);
	expect_error("GET /metrics http/1.1\r\n", 400, 13);
	expect_error("GET /metrics HTTP/11\r\n", 400, 19);
	expect_error("GET /metrics HTTP/1.1x\r\n", 400, 21);
	expect_error("GET /metrics HTTP/1.\r\n", 400, 20);
	expect_error("GET /metrics HTTP/1.1\rX", 400, 22);
	expect_error("GET /metrics HTTP/1.0\n\rX", 400, 23);
	expect_error_n("GET /\0 HTTP/1.1\r\n", 17, 400, 5);
	/* Versions. */
	expect_error("GET /metrics HTTP/2.0\r\n", 505, 21);
	expect_error("GET /metrics HTTP/0.9\r\nHost: a\r\n\r\n", 505, 21);
	expect_error("GET /metrics HTTP/3.0\n", 505, 21);
	/* Field lines. */
	expect_error("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, 20);
	expect_error("GET / HTTP/1.1\r\n: a\r\n\r\n", 400, 16);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400, 25);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n", 400, 25);
	expect_error("GET / HTTP/1.1\r\nHost\r\n\r\n", 400, 20);
	expect_error("GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n", 400, 20);
	expect_error("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400, 20);
	expect_error_n("GET / HTTP/1.1\r\nX: \0\r\n\r\n", 24, 400, 19);
	expect_error("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400, 21);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\n\rX", 400, 26);
	expect_error("GET / HTTP/1.1\r\nConnection: clo\"se\r\n\r\n", 400, 31);
	/* Host: needed once by 1.1, never twice. */
	expect_error("GET /metrics HTTP/1.1\r\n\r\n", 400, 23);
	expect_error("GET /metrics HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, 41);
	expect_error("GET /metrics HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\n", 400, 41);
	/* Bodies. */
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 413, 44);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		     400, 53);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400, 45);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
		     "Transfer-Encoding: identity\r\n\r\n", 400, 73);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400, 41);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400, 42);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400, 43);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, 41);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400, 40);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length:  \r\n\r\n", 400, 42);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n",
		     400, 61);
	/* 2^64 does not fit; 2^64 - 1 does (and is then too large a body). */
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
		     400, 60);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
		     413, 63);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
		     400, 60);
}

/* A request of exactly total bytes: a path or a field padded to size. */
static char *make_padded(size_t total, bool in_request_line)
{
	char *buf = malloc(total + 1);
	REQUIRE(buf != NULL);
	const char *tail = "\r\n\r\n";
	if (in_request_line) {
		/* "GET /aaaa... HTTP/1.0" CRLF CRLF */
		const char *head = "GET /";
		const char *ver = " HTTP/1.0";
		size_t fixed = strlen(head) + strlen(ver) + strlen(tail);
		REQUIRE(total > fixed);
		size_t pad = total - fixed;
		size_t at = 0;
		memcpy(buf, head, strlen(head));
		at += strlen(head);
		memset(buf + at, 'a', pad);
		at += pad;
		memcpy(buf + at, ver, strlen(ver));
		at += strlen(ver);
		memcpy(buf + at, tail, strlen(tail));
	} else {
		const char *head = "GET /metrics HTTP/1.1\r\nHost: a\r\nX-Pad: ";
		size_t fixed = strlen(head) + strlen(tail);
		REQUIRE(total > fixed);
		size_t pad = total - fixed;
		memcpy(buf, head, strlen(head));
		memset(buf + strlen(head), 'p', pad);
		memcpy(buf + strlen(head) + pad, tail, strlen(tail));
	}
	buf[total] = '\0';
	return buf;
}

static void test_bounds(void)
{
	/* A head of exactly the bound parses; one byte more does not. */
	char *fits = make_padded(HTTP_REQUEST_HEAD_MAX_BYTES, false);
	expect_request(fits, HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 1, true);
	free(fits);
	char *over = make_padded(HTTP_REQUEST_HEAD_MAX_BYTES + 1, false);
	expect_error(over, 431, HTTP_REQUEST_HEAD_MAX_BYTES);
	free(over);

	char *line_fits = make_padded(HTTP_REQUEST_HEAD_MAX_BYTES, true);
	expect_request(line_fits, HTTP_METHOD_GET, HTTP_ROUTE_NOT_FOUND, 0, false);
	free(line_fits);
	/* Past the bound inside the request line: 414. */
	char *line_over = make_padded(HTTP_REQUEST_HEAD_MAX_BYTES + 100, true);
	expect_error(line_over, 414, HTTP_REQUEST_HEAD_MAX_BYTES);
	free(line_over);

	/* Nothing but empty lines, forever: 400 at the bound. */
	char *empty = malloc(HTTP_REQUEST_HEAD_MAX_BYTES + 3);
	REQUIRE(empty != NULL);
	for (size_t i = 0; i < HTTP_REQUEST_HEAD_MAX_BYTES + 2; i += 2)
		memcpy(empty + i, "\r\n", 2);
	empty[HTTP_REQUEST_HEAD_MAX_BYTES + 2] = '\0';
	expect_error(empty, 400, HTTP_REQUEST_HEAD_MAX_BYTES);
	free(empty);

	/* Field count: exactly the limit, then one more. */
	char fields[4096];
	for (unsigned extra = 0; extra <= 1; extra++) {
		size_t at = (size_t)snprintf(fields, sizeof(fields), "GET /metrics HTTP/1.1\r\n");
		for (unsigned i = 0; i < HTTP_REQUEST_FIELDS_MAX + extra; i++) {
			const char *f = i == 0 ? "Host: a\r\n" : "X: 1\r\n";
			size_t fl = strlen(f);
			REQUIRE(at + fl < sizeof(fields));
			memcpy(fields + at, f, fl);
			at += fl;
		}
		memcpy(fields + at, "\r\n", 3);
		if (extra == 0) {
			expect_request(fields, HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 1, true);
		} else {
			/* Refused at the first byte of the field past the limit. */
			size_t err_at = at - strlen("X: 1\r\n");
			expect_error(fields, 431, err_at);
		}
	}

	/* Incomplete input stays AGAIN and consumes everything. */
	const char *partial = "GET /metrics HTTP/1.1\r\nHost: a\r\n";
	struct outcome o = feed_every_way(partial, strlen(partial));
	CHECK(o.status == HTTP_PARSE_AGAIN);
	CHECK_EQ_U(o.consumed, strlen(partial));
	o = feed_every_way("", 0);
	CHECK(o.status == HTTP_PARSE_AGAIN);
}

static void test_pipelined(void)
{
	const char *two = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
			  "HEAD /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
			  "GET /x";
	size_t n = strlen(two);
	struct http_parser p;
	http_parser_init(&p);
	size_t used = 0, at = 0;
	CHECK(http_parse(&p, (const uint8_t *)two, n, &used) == HTTP_PARSE_DONE);
	CHECK_EQ_U(used, strlen("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"));
	CHECK(p.request.route == HTTP_ROUTE_METRICS && p.request.keep_alive);
	at += used;
	http_parser_init(&p);
	CHECK(http_parse(&p, (const uint8_t *)two + at, n - at, &used) == HTTP_PARSE_DONE);
	CHECK(p.request.method == HTTP_METHOD_HEAD && p.request.route == HTTP_ROUTE_READYZ);
	CHECK(!p.request.keep_alive);
	at += used;
	http_parser_init(&p);
	CHECK(http_parse(&p, (const uint8_t *)two + at, n - at, &used) == HTTP_PARSE_AGAIN);
	CHECK_EQ_U(used, strlen("GET /x"));

	/* The state of one request never leaks into the next. */
	http_parser_init(&p);
	const char *closing = "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
	CHECK(http_parse(&p, (const uint8_t *)closing, strlen(closing), &used) == HTTP_PARSE_DONE);
	CHECK(!p.request.keep_alive);
	http_parser_init(&p);
	const char *plain = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
	CHECK(http_parse(&p, (const uint8_t *)plain, strlen(plain), &used) == HTTP_PARSE_DONE);
	CHECK(p.request.keep_alive);
}

/* Small deterministic generator (xorshift64*), so failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
	return test_xorshift64star(&rng_state);
}

static void test_mutations(void)
{
	static const char *const seeds[] = {
		"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
		"HEAD http://h:1/readyz?q HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
		"\r\nGET /healthz HTTP/1.1\nHost: x\nX: y\n\n",
	};
	static const char alphabet[] = "\r\n :/?GETHhtp1.0\t\"\x80\x00,aC-";
	unsigned done = 0, errors = 0, again = 0;
	for (unsigned iter = 0; iter < 3000; iter++) {
		const char *seed = seeds[iter % RMX_ARRAY_LEN(seeds)];
		char buf[128];
		size_t n = strlen(seed);
		REQUIRE(n < sizeof(buf));
		memcpy(buf, seed, n);
		unsigned edits = 1 + (unsigned)(rng_next() % 3);
		for (unsigned e = 0; e < edits; e++) {
			size_t pos = (size_t)(rng_next() % n);
			uint64_t r = rng_next();
			char ch = alphabet[r % (sizeof(alphabet) - 1)];
			switch ((r >> 8) % 3) {
			case 0: /* replace */
				buf[pos] = ch;
				break;
			case 1: /* delete */
				memmove(buf + pos, buf + pos + 1, n - pos - 1);
				n--;
				break;
			default: /* insert */
				if (n + 1 < sizeof(buf)) {
					memmove(buf + pos + 1, buf + pos, n - pos);
					buf[pos] = ch;
					n++;
				}
				break;
			}
		}
		struct outcome whole = feed_cuts(buf, n, NULL, 0);
		size_t cuts[128];
		for (size_t i = 0; i + 1 < n; i++)
			cuts[i] = i + 1;
		struct outcome bytewise = feed_cuts(buf, n, cuts, n ? n - 1 : 0);
		CHECK(same_outcome(&whole, &bytewise));
		CHECK(whole.consumed <= n);
		if (whole.status == HTTP_PARSE_ERROR) {
			errors++;
			CHECK(whole.error_status == 400 || whole.error_status == 413 ||
			      whole.error_status == 505);
		} else if (whole.status == HTTP_PARSE_DONE) {
			done++;
		} else {
			again++;
			CHECK_EQ_U(whole.consumed, n);
		}
	}
	printf("http: mutations parsed %u, refused %u, incomplete %u\n", done, errors, again);
	CHECK(done > 0 && errors > 0);
}

static void test_refusal(void)
{
	struct http_request r = { HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 1, true };
	CHECK_EQ_U(http_request_refusal(&r), 0);
	r.route = HTTP_ROUTE_NOT_FOUND;
	CHECK_EQ_U(http_request_refusal(&r), 404);
	r.method = HTTP_METHOD_OTHER;
	CHECK_EQ_U(http_request_refusal(&r), 405);
	r.route = HTTP_ROUTE_READYZ;
	CHECK_EQ_U(http_request_refusal(&r), 405);
	r.method = HTTP_METHOD_HEAD;
	CHECK_EQ_U(http_request_refusal(&r), 0);
}

static void check_head(const struct http_response *r, const char *expected)
{
	char buf[HTTP_RESPONSE_HEAD_MAX_BYTES];
	size_t n = http_response_head(r, buf, sizeof(buf));
	CHECK_MEM(buf, n, expected, strlen(expected));
}

static void test_responses(void)
{
	struct http_request get11 = { HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 1, true };
	struct http_request head10 = { HTTP_METHOD_HEAD, HTTP_ROUTE_HEALTHZ, 0, true };
	struct http_request get10 = { HTTP_METHOD_GET, HTTP_ROUTE_METRICS, 0, false };
	struct http_request post = { HTTP_METHOD_OTHER, HTTP_ROUTE_METRICS, 1, true };

	struct http_response r = http_response_for(&get11, 200, HTTP_BODY_METRICS, 12345);
	CHECK(!r.head_only && !r.close && !r.keep_alive_10);
	check_head(&r, "HTTP/1.1 200 OK\r\n"
		       "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
		       "Content-Length: 12345\r\n"
		       "Cache-Control: no-store\r\n\r\n");

	r = http_response_for(&head10, 200, HTTP_BODY_TEXT, 3);
	CHECK(r.head_only && !r.close && r.keep_alive_10);
	check_head(&r, "HTTP/1.1 200 OK\r\n"
		       "Content-Type: text/plain; charset=utf-8\r\n"
		       "Content-Length: 3\r\n"
		       "Cache-Control: no-store\r\n"
		       "Connection: keep-alive\r\n\r\n");

	r = http_response_for(&get10, 503, HTTP_BODY_TEXT, 0);
	CHECK(r.close);
	check_head(&r, "HTTP/1.1 503 Service Unavailable\r\n"
		       "Content-Type: text/plain; charset=utf-8\r\n"
		       "Content-Length: 0\r\n"
		       "Cache-Control: no-store\r\n"
		       "Connection: close\r\n\r\n");

	r = http_response_for(&post, 405, HTTP_BODY_TEXT, 0);
	check_head(&r, "HTTP/1.1 405 Method Not Allowed\r\n"
		       "Content-Type: text/plain; charset=utf-8\r\n"
		       "Content-Length: 0\r\n"
		       "Allow: GET, HEAD\r\n"
		       "Cache-Control: no-store\r\n\r\n");

	/* After a parse error there is no request: always close. */
	r = http_response_for(NULL, 431, HTTP_BODY_TEXT, 0);
	CHECK(r.close && !r.head_only && !r.keep_alive_10);

	/* Head and body together; HEAD sends the head only. */
	const char *body = "ok\n";
	char out[512];
	r = http_response_for(&get11, 200, HTTP_BODY_TEXT, 3);
	size_t n = http_response_write(&r, span_make(body, 3), out, sizeof(out));
	const char *whole = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
			    "Content-Length: 3\r\nCache-Control: no-store\r\n\r\nok\n";
	CHECK_MEM(out, n, whole, strlen(whole));
	/* Every cap short of the whole fails without writing past cap. */
	for (size_t cap = 0; cap < strlen(whole); cap++) {
		char *b = malloc(cap ? cap : 1);
		REQUIRE(b != NULL);
		CHECK_EQ_U(http_response_write(&r, span_make(body, 3), cap ? b : NULL, cap), 0);
		free(b);
	}
	char *exact = malloc(strlen(whole));
	REQUIRE(exact != NULL);
	CHECK_EQ_U(http_response_write(&r, span_make(body, 3), exact, strlen(whole)),
		   strlen(whole));
	CHECK_MEM(exact, strlen(whole), whole, strlen(whole));
	free(exact);

	struct http_request head11 = { HTTP_METHOD_HEAD, HTTP_ROUTE_READYZ, 1, true };
	r = http_response_for(&head11, 200, HTTP_BODY_TEXT, 3);
	n = http_response_write(&r, span_make(body, 3), out, sizeof(out));
	size_t head_len = strlen(whole) - 3;
	CHECK_MEM(out, n, whole, head_len);
	/* HEAD needs the body's length, not the body. */
	n = http_response_write(&r, span_make(NULL, 0), out, sizeof(out));
	CHECK_MEM(out, n, whole, head_len);
	CHECK_EQ_U(http_response_write(&r, span_make(NULL, 0), out, head_len), head_len);
	CHECK_EQ_U(http_response_write(&r, span_make(NULL, 0), out, head_len - 1), 0);

	/* The longest head fits the bound, for every status we know. */
	size_t longest = 0;
	for (unsigned status = 100; status < 600; status++) {
		if (http_status_reason(status) == NULL)
			continue;
		for (int body_kind = HTTP_BODY_TEXT; body_kind <= HTTP_BODY_METRICS; body_kind++)
			for (int conn = 0; conn < 3; conn++) {
				struct http_response w = {
					.status = status,
					.body = (enum http_body)body_kind,
					.body_bytes = SIZE_MAX,
					.close = conn == 1,
					.keep_alive_10 = conn == 2,
				};
				char b[HTTP_RESPONSE_HEAD_MAX_BYTES];
				size_t len = http_response_head(&w, b, sizeof(b));
				CHECK(len > 0);
				longest = RMX_MAX(longest, len);
			}
	}
	CHECK(longest <= HTTP_RESPONSE_HEAD_MAX_BYTES);
	printf("http: longest response head %zu bytes (bound %d)\n", longest,
	       HTTP_RESPONSE_HEAD_MAX_BYTES);
	const unsigned sent[] = { 200, 400, 404, 405, 413, 414, 431, 503, 505 };
	for (size_t i = 0; i < RMX_ARRAY_LEN(sent); i++)
		CHECK(http_status_reason(sent[i]) != NULL);
	CHECK(http_status_reason(201) == NULL);
}

int main(void)
{
	test_valid_requests();
	test_errors();
	test_bounds();
	test_pipelined();
	test_mutations();
	test_refusal();
	test_responses();
	return test_main_end("test_http");
}
