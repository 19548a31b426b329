/*
 * metrics_http.c - the metrics endpoint: one request per connection, parsed
 * by proto/http, answered with the sum of every worker's counters
 * (metrics_render) or a health status, then the connection closes after
 * the send ("Connection: close" on every response keeps this path short).
 * The response is built in one buffer of its own size: the body after the
 * largest head, the head written in front of it.
 */
#include "metrics_http.h"

#include <stdlib.h>
#include <string.h>

#include "../proto/http.h"
#include "metrics.h"
#include "ring.h"
#include "worker.h"

void metrics_http_init(struct metrics_http *mh, struct smtp_conns *conns, struct worker *w,
		       const bool *draining)
{
	memset(mh, 0, sizeof(*mh));
	mh->conns = conns;
	mh->w = w;
	mh->draining = draining;
}

void metrics_http_listen(struct metrics_http *mh)
{
	if (mh->w->metrics_fd < 0)
		return;
	struct io_uring_sqe *sqe = ring_sqe(mh->conns->env.ring);
	io_uring_prep_multishot_accept(sqe, mh->w->metrics_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_HTTP_ACCEPT, 0, 0));
}

void metrics_http_rearm(struct metrics_http *mh)
{
	if (!mh->accept_rearm || mh->conns->clock->now_ms < mh->accept_rearm_at_ms)
		return;
	mh->accept_rearm = false;
	metrics_http_listen(mh);
}

/* The route's status and body: the text of a small one, or the size the
 * metrics body may take. */
static unsigned respond_route(const struct metrics_http *mh, const struct http_request *req,
			      enum http_body *kind, const char **text, size_t *body_cap)
{
	switch (req->route) {
	case HTTP_ROUTE_METRICS:
		*kind = HTTP_BODY_METRICS;
		*body_cap = metrics_render_bound(mh->w->metrics_static);
		return 200;
	case HTTP_ROUTE_HEALTHZ:
		*text = "ok\n";
		return 200;
	case HTTP_ROUTE_READYZ:
		*text = *mh->draining ? "draining\n" : "ready\n";
		return *mh->draining ? 503 : 200;
	default:
		return 404;
	}
}

/* Answers one request (or a malformed one: error_status) and closes after
 * sending. */
static void respond(struct metrics_http *mh, struct conn *c, const struct http_request *req,
		    unsigned error_status)
{
	unsigned status = error_status ? error_status : http_request_refusal(req);
	enum http_body kind = HTTP_BODY_TEXT;
	const char *text = NULL;
	size_t body_cap = 64;
	if (!status)
		status = respond_route(mh, req, &kind, &text, &body_cap);
	if (!text && kind == HTTP_BODY_TEXT)
		text = http_status_reason(status);
	size_t cap = HTTP_RESPONSE_HEAD_MAX_BYTES + body_cap + 2;
	uint8_t *buf = malloc(cap);
	if (!buf) {
		smtp_conn_close(mh->conns, c);
		return;
	}
	/* The body goes after the largest head; the head is written in front of it. */
	char *body = (char *)buf + HTTP_RESPONSE_HEAD_MAX_BYTES;
	size_t body_len;
	if (kind == HTTP_BODY_METRICS) {
		body_len = metrics_render(mh->w->all_metrics, mh->w->worker_count,
					  mh->w->metrics_static, body, body_cap);
		RMX_ASSERT(body_len <= body_cap);
	} else {
		body_len = (size_t)snprintf(body, body_cap, "%s%s", text,
					    text[strlen(text) - 1] == '\n' ? "" : "\n");
	}
	struct http_response r = http_response_for(error_status ? NULL : req, status, kind, body_len);
	r.close = true;
	r.keep_alive_10 = false;
	char head[HTTP_RESPONSE_HEAD_MAX_BYTES];
	size_t head_len = http_response_head(&r, head, sizeof(head));
	RMX_ASSERT(head_len > 0 && head_len <= HTTP_RESPONSE_HEAD_MAX_BYTES);
	uint8_t *start = buf + HTTP_RESPONSE_HEAD_MAX_BYTES - head_len;
	memcpy(start, head, head_len);
	size_t total = head_len + (r.head_only ? 0 : body_len);
	memmove(buf, start, total);
	free(c->out.buf);
	c->out.buf = buf;
	c->out.len = total;
	c->out.cap = cap;
	c->flags |= CONN_CLOSE_AFTER_SEND;
	smtp_conn_after(mh->conns, c);
}

void metrics_http_input(void *ctx, struct conn *c, const uint8_t *p, size_t n)
{
	struct metrics_http *mh = ctx;
	size_t consumed = 0;
	enum http_parse_status st = http_parse(c->http, p, n, &consumed);
	if (st == HTTP_PARSE_AGAIN)
		return;
	/* One request per connection: anything after it is dropped with the close. */
	respond(mh, c, &c->http->request, st == HTTP_PARSE_ERROR ? c->http->error_status : 0);
}

void metrics_http_on_accept(struct metrics_http *mh, const struct io_uring_cqe *cqe)
{
	struct smtp_conns *sc = mh->conns;
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		mh->accept_rearm = true;
		mh->accept_rearm_at_ms = sc->clock->now_ms + (cqe->res < 0 ? TIMER_TICK_MS : 0);
	}
	if (cqe->res < 0)
		return;
	struct conn *c = smtp_conns_alloc_http(sc, cqe->res);
	if (!c) {
		metrics_inc(&mh->w->metrics->http_connections_rejected);
		struct transport t;
		transport_plain_attach(&t, cqe->res);
		t.ops->close(&t);
		return;
	}
	c->http = malloc(sizeof(*c->http));
	if (!c->http) {
		c->flags |= CONN_CLOSING;
		smtp_conn_release_if_done(sc, c);
		return;
	}
	http_parser_init(c->http);
	smtp_conn_arm_recv(sc, c);
	timer_arm(&sc->wheel, &c->timer, HTTP_DEADLINE_MS);
}
