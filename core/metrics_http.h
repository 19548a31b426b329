/*
 * metrics_http.h - the metrics endpoint of one worker (/metrics, /healthz,
 * /readyz): accepts on the metrics listener, parses one request per
 * connection with proto/http and answers it, then closes.
 *
 * Its clients borrow slots of the worker's connection slab (a pool of
 * HTTP_CONNECTIONS_MAX beside the SMTP slots, smtp_conns_alloc_http) and
 * go through the same receive, send and lingering close as SMTP clients;
 * what they send comes here (metrics_http_input, the smtp_conns hook).
 * A client past the pool is closed at once and counted
 * (ringmx_http_connections_rejected_total). Worker thread only.
 */
#ifndef RINGMX_METRICS_HTTP_H
#define RINGMX_METRICS_HTTP_H

#include "smtp_conn.h"

struct metrics_http {
	struct smtp_conns *conns;
	struct worker *w;        /* the metrics listener, every worker's counters */
	const bool *draining;    /* /readyz answers 503 while true */
	bool accept_rearm;       /* the listener's accept waits for a re-arm */
	uint64_t accept_rearm_at_ms;
};

/* Borrows conns (the slab and its clock), w and draining for the life of mh. */
void metrics_http_init(struct metrics_http *mh, struct smtp_conns *conns, struct worker *w,
		       const bool *draining);

/* Arms the multishot accept on the metrics listener, if there is one. */
void metrics_http_listen(struct metrics_http *mh);

/* Once per loop turn: re-arms an accept the kernel ended. */
void metrics_http_rearm(struct metrics_http *mh);

/* The completion of the metrics listener's accept (RING_OP_HTTP_ACCEPT). */
void metrics_http_on_accept(struct metrics_http *mh, const struct io_uring_cqe *cqe);

/* Input of a CONN_HTTP connection (the smtp_conns hook; ctx is mh). */
void metrics_http_input(void *ctx, struct conn *c, const uint8_t *p, size_t n);

#endif
