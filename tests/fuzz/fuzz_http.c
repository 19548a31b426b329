/*
 * fuzz_http.c - the metrics endpoint's HTTP/1.1 request parser
 * (proto/http) and the response head written for what it parsed.
 *
 * Input: split bytes up to a zero (the sizes of the reads), then the
 * client's bytes: requests one after another on one connection. They are
 * parsed whole and in pieces, each piece in a buffer of exactly its size;
 * both must give the same requests, the same error status and stop at the
 * same byte. Invariants: AGAIN consumes everything it was given, DONE and
 * ERROR no more; an error is one of the statuses the endpoint sends; no
 * head is longer than HTTP_REQUEST_HEAD_MAX_BYTES; a parsed request gets a
 * response head within HTTP_RESPONSE_HEAD_MAX_BYTES, for GET and HEAD
 * alike.
 */
#include "../../proto/http.h"

#include "fuzz_common.h"

struct outcome {
	struct http_request req[16];
	size_t requests;
	uint16_t error_status;
	size_t stop_at; /* bytes before the end of the last head, or the error */
};

static bool error_known(uint16_t status)
{
	return status == 400 || status == 413 || status == 414 || status == 431 ||
	       status == 505;
}

static void respond(const struct http_request *req, unsigned status)
{
	char head[HTTP_RESPONSE_HEAD_MAX_BYTES];
	struct http_response r = http_response_for(req, status, HTTP_BODY_METRICS, 5);
	size_t n = http_response_head(&r, head, sizeof(head));
	FUZZ_CHECK(n > 0 && n <= sizeof(head));
	FUZZ_CHECK(n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0);
	char full[HTTP_RESPONSE_HEAD_MAX_BYTES + 5];
	size_t m = http_response_write(&r, span_make("hello", 5), full, sizeof(full));
	FUZZ_CHECK(m == n + (r.head_only ? 0 : 5));
}

static void parse_all(const uint8_t *p, size_t n, const uint8_t *splits, size_t nsplits,
		      struct outcome *o)
{
	struct http_parser parser;
	http_parser_init(&parser);
	size_t head_start = 0, done = 0, split = 0;
	size_t piece_end = 0;
	while (done < n) {
		if (done == piece_end) {
			size_t piece = nsplits ? splits[split++ % nsplits] : n;
			piece_end = done + (piece < n - done ? piece : n - done);
		}
		size_t len = piece_end - done;
		uint8_t *view = fuzz_exact_copy(p + done, len);
		size_t consumed = SIZE_MAX;
		enum http_parse_status st = http_parse(&parser, view, len, &consumed);
		free(view);
		FUZZ_CHECK(consumed <= len);
		if (st == HTTP_PARSE_AGAIN) {
			FUZZ_CHECK(consumed == len);
			done += len;
			FUZZ_CHECK(done - head_start <= HTTP_REQUEST_HEAD_MAX_BYTES);
			continue;
		}
		if (st == HTTP_PARSE_ERROR) {
			FUZZ_CHECK(error_known(parser.error_status));
			o->error_status = parser.error_status;
			o->stop_at = done + consumed;
			respond(NULL, parser.error_status);
			return;
		}
		FUZZ_CHECK(st == HTTP_PARSE_DONE);
		done += consumed;
		FUZZ_CHECK(done - head_start <= HTTP_REQUEST_HEAD_MAX_BYTES);
		struct http_request req = parser.request;
		FUZZ_CHECK(req.version_minor <= 1);
		FUZZ_CHECK(req.method <= HTTP_METHOD_HEAD && req.route <= HTTP_ROUTE_READYZ);
		unsigned refusal = http_request_refusal(&req);
		FUZZ_CHECK(refusal == 0 || refusal == 404 || refusal == 405);
		respond(&req, refusal ? refusal : 200);
		if (o->requests < RMX_ARRAY_LEN(o->req))
			o->req[o->requests] = req;
		o->requests++;
		o->stop_at = done;
		head_start = done;
		http_parser_init(&parser);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	uint8_t splits[64];
	size_t nsplits = fuzz_splits(&in, splits, sizeof(splits));
	struct outcome whole = { 0 }, pieces = { 0 };
	parse_all(in.p, in.n, NULL, 0, &whole);
	parse_all(in.p, in.n, splits, nsplits, &pieces);
	FUZZ_CHECK(whole.requests == pieces.requests);
	FUZZ_CHECK(whole.error_status == pieces.error_status);
	FUZZ_CHECK(whole.stop_at == pieces.stop_at);
	for (size_t i = 0; i < whole.requests && i < RMX_ARRAY_LEN(whole.req); i++)
		FUZZ_CHECK(memcmp(&whole.req[i], &pieces.req[i], sizeof(whole.req[i])) == 0);
	return 0;
}
