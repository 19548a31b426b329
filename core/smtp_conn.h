/*
 * smtp_conn.h - the client connections of one worker: accept, receive with
 * the provided buffer ring, feed the pure session, send its replies,
 * lingering close, deadlines, the carry buffer and back-pressure.
 *
 * Connections live in a slab allocated at start-up, with a generation per
 * slot so that a late completion for a slot's previous owner is recognised
 * and dropped (liburing examples/proxy.c style). The slab holds
 * max_connections SMTP slots and HTTP_CONNECTIONS_MAX more that the metrics
 * endpoint borrows (smtp_conns_alloc_http): SMTP never takes more than its
 * share, so neither pool can starve the other.
 *
 * An idle connection costs its struct conn and nothing else: the reply
 * buffer and the carry buffer are allocated while there is something in
 * them, the transaction's buffers while a transaction is open. All socket
 * I/O goes through the connection's transport (transport.h).
 *
 * The worker owns the loop and the one dispatch switch: it calls the
 * smtp_conn_on_<op> handlers below for the connection ops, and plugs in
 * what happens to a finished message (the store) and to the input of a
 * metrics client (metrics_http.c) through struct smtp_conn_hooks. Worker
 * thread only.
 */
#ifndef RINGMX_SMTP_CONN_H
#define RINGMX_SMTP_CONN_H

#include "../proto/smtp_session.h"
#include "../common/base.h"
#include "client_table.h"
#include "config.h"
#include "overload.h"
#include "ring.h"
#include "timer.h"
#include "transport.h"
#include "txn.h"

enum conn_flag {
	CONN_USED = 1u << 0,
	CONN_RECV_ARMED = 1u << 1,   /* a multishot recv is live */
	CONN_SEND_INFLIGHT = 1u << 2,
	CONN_WAIT_COMMIT = 1u << 3,  /* message handed to the store, not durable yet */
	CONN_WAIT_RESERVE = 1u << 4, /* message waiting for room in the store */
	CONN_WAIT_FLUSH = 1u << 5,   /* session paused until replies are sent */
	CONN_CLOSE_AFTER_SEND = 1u << 6,
	CONN_LINGER = 1u << 7,       /* final reply sent, FIN sent, draining input */
	CONN_CLOSING = 1u << 8,      /* shutting the socket; release when quiet */
	CONN_REARM = 1u << 9,        /* recv must be re-armed (after -ENOBUFS) */
	CONN_EOF = 1u << 10,         /* the client closed its side */
	CONN_RECV_PAUSED = 1u << 11, /* too much input waits: receiving is paused */
	CONN_HTTP = 1u << 12,        /* a metrics-endpoint client, not SMTP */
	CONN_STARTTLS_WAIT = 1u << 13, /* STARTTLS accepted: replies before its 220 go
					  out in clear, then the transport turns TLS */
	CONN_TLS_HANDSHAKE = 1u << 14, /* the TLS handshake runs (its own deadline) */
	CONN_WAIT_AUTH = 1u << 15,   /* a password check is queued (smtp_conn_auth) */
	CONN_GREET_PAUSE = 1u << 16, /* greet_pause: "220-" sent, the timer ends the pause */
	CONN_ERROR_DELAY = 1u << 17, /* a reply past the soft error limit waits its time */
	CONN_SCREEN_DONE = 1u << 18, /* its screening verdict has been recorded */
	CONN_PROXY_WAIT = 1u << 19,  /* its PROXY header is awaited (smtp_conn_proxy) */
	CONN_PROBE = 1u << 20,       /* a balancer's health check: no limits, debug logs */
	CONN_FLOW_HOLD = 1u << 21,   /* durable; its 250 waits for inflow control (flow.h) */
};

#define CONN_WAITING (CONN_WAIT_COMMIT | CONN_WAIT_RESERVE | CONN_WAIT_FLUSH | CONN_WAIT_AUTH)

/* The deadline a connection runs against (its timer fires at at_ms). */
struct smtp_deadline {
	uint64_t at_ms;    /* on the loop's monotonic clock */
	uint32_t commands; /* txn.commands when it was set */
	uint8_t kind;      /* enum smtp_timeout_kind it was set for */
};

struct http_parser;
struct front;
struct conn_proxy;

struct conn {
	struct transport tp;   /* the socket and how to reach it */
	uint32_t gen;          /* 24 bits used in user_data */
	uint32_t flags;
	uint32_t next;         /* free list, or the worker's reserve-wait list */
	uint32_t rearm_next;   /* the list of recvs to re-arm */
	uint32_t send_bytes;   /* bytes of out.buf in the send in flight */
	uint32_t carry_len;
	uint32_t carry_cap;
	uint8_t *carry;        /* input not yet consumed by the session */
	struct smtp_out out;   /* replies; buf allocated on demand */
	struct timer_node timer;
	struct smtp_deadline deadline;
	struct smtp_peer peer;
	struct smtp_session session;
	struct txn txn;
	struct http_parser *http;  /* CONN_HTTP only */
	struct conn_proxy *proxy;  /* CONN_PROXY_WAIT only (smtp_conn_proxy) */
	int64_t opened_ms;
	uint64_t msg_done_ns;      /* end of data seen (metrics; the loop's clock) */
	uint64_t flow_held_ms;     /* CONN_FLOW_HOLD: since when (the loop's clock) */
	uint64_t flow_held_id;     /* CONN_FLOW_HOLD: the queue id its 250 names */
	int32_t cfg_snapshot;      /* the config snapshot its session reads, -1: none */
	uint64_t bytes_in;         /* for the connection_close log line */
	uint64_t bytes_out;
	uint32_t messages;         /* accepted (durable) */
	uint32_t starttls_clear;   /* CONN_STARTTLS_WAIT: bytes of out before the 220 */
	uint8_t listener_mode;     /* enum smtp_listener_mode of its listener */
	uint8_t auth_mech;         /* CONN_WAIT_AUTH: the mechanism being checked */
	uint8_t *auth_buf;         /* lent to the session for an AUTH exchange */
	struct smtp_conns *owner;  /* the AUTH side's way back (smtp_conn_auth) */
	struct client_ref client;  /* its hold on the client table (limits, screening) */
	struct smtp_tls_info tls_info; /* once TLS is up; the session points at it */
};

#define CONN_NONE UINT32_MAX

struct conn_slab {
	struct conn *conns;
	uint32_t cap;
	uint32_t free_head;
	uint32_t used;
	uint32_t high_water;   /* slots [0, high_water) have ever been used */
};

/* Allocates cap slots (virtual memory; pages are touched as slots are used). */
RMX_MUST_CHECK int conn_slab_init(struct conn_slab *s, uint32_t cap);
void conn_slab_free(struct conn_slab *s);

/* A free slot with a fresh generation, or NULL when all cap are in use. */
struct conn *conn_alloc(struct conn_slab *s);

/* Frees the slot's buffers and puts it on the free list. Nothing of it may
 * be in flight. */
void conn_release(struct conn_slab *s, struct conn *c);

static inline uint32_t conn_index(const struct conn_slab *s, const struct conn *c)
{
	return (uint32_t)(c - s->conns);
}

/* The connection that slot/gen name, or NULL if the slot moved on. */
static inline struct conn *conn_lookup(struct conn_slab *s, uint32_t slot, uint32_t gen)
{
	if (slot >= s->cap)
		return NULL;
	struct conn *c = &s->conns[slot];
	return ((c->flags & CONN_USED) && (c->gen & 0xffffffu) == gen) ? c : NULL;
}

/* Appends input to the carry buffer. -ENOBUFS past CARRY_HARD_MAX_BYTES. */
RMX_MUST_CHECK int conn_carry_append(struct conn *c, const uint8_t *p, size_t n);

/* Drops the first n bytes of the carry buffer; frees it when empty. */
void conn_carry_consume(struct conn *c, size_t n);

/* ---- deadlines: pure arithmetic, no clock read ------------------------- */

/* The timeout configured for what the session waits for. */
uint64_t smtp_deadline_timeout_ms(const struct config *cfg, enum smtp_timeout_kind kind);

/*
 * What a connection waits for: the session's answer, except that between
 * BDAT chunks (a body is open, no message waits for the store) the data
 * deadline goes on, so a chunk's command does not restart it.
 */
enum smtp_timeout_kind smtp_deadline_kind(enum smtp_timeout_kind session_kind, bool body_open,
					  bool waits_for_store);

/* A fresh deadline for kind, from now_ms, at command count commands. */
struct smtp_deadline smtp_deadline_fresh(const struct config *cfg, enum smtp_timeout_kind kind,
					 uint32_t commands, uint64_t now_ms);

/*
 * After input (RFC 5321 4.5.3.2: a command must arrive whole within its
 * timeout, counted from when we began to wait for it): true when the
 * deadline d (armed or not) must be replaced by a fresh one: none is armed,
 * the session now waits for something else, or outside a body a new
 * command has begun. Bytes of a line still incomplete do not restart it.
 */
bool smtp_deadline_restarts(const struct smtp_deadline *d, bool armed,
			    enum smtp_timeout_kind kind, uint32_t commands);

/*
 * In a body, where d moves to after body_bytes more: each byte moves it by
 * 1 / min_data_rate seconds, never beyond data_timeout from now_ms, so a
 * trickle cannot hold the connection much past data_timeout.
 */
uint64_t smtp_deadline_after_body(const struct smtp_deadline *d, const struct config *cfg,
				  uint64_t now_ms, uint64_t body_bytes);

/* ---- the connections of one worker --------------------------------------- */

/* The loop's clock, read once per loop turn by the worker. */
struct loop_clock {
	uint64_t now_ms;     /* CLOCK_MONOTONIC */
	uint64_t now_ns;     /* the same, in nanoseconds (latency metrics) */
	int64_t now_unix_ms; /* CLOCK_REALTIME */
};

/* What the worker plugs in. */
struct smtp_conn_hooks {
	/* The session finished a message (the client sent its end): store it.
	 * On return the connection either waits (CONN_WAIT_COMMIT or
	 * CONN_WAIT_RESERVE) or the session has its refusal in c->out. */
	void (*message_done)(void *ctx, struct conn *c);
	void *message_ctx;
	/* Input for a CONN_HTTP connection (in place; not kept). */
	void (*http_input)(void *ctx, struct conn *c, const uint8_t *p, size_t n);
	void *http_ctx;
};

struct worker;

struct smtp_conns {
	struct worker *w;              /* id, listeners, counters, held-snapshot mask */
	const struct config *cfg;      /* the current snapshot (new sessions, deadlines) */
	const struct loop_clock *clock;
	struct transport_env env;
	struct buf_ring *bufs;         /* where receives land (the worker's) */
	struct txn_budget *budget;     /* the worker's in-flight data bound */
	const struct front *front;     /* what all workers share (front.h); may be NULL */
	uint32_t auth_buffers_out;     /* AUTH decode buffers lent (AUTH_EXCHANGES_MAX) */
	uint8_t overload;              /* enum overload_state the worker judged last */
	struct smtp_conn_hooks hooks;
	struct conn_slab slab;         /* SMTP connections, then HTTP_CONNECTIONS_MAX more */
	uint32_t http_open;            /* metrics-endpoint connections in the slab */
	struct timer_wheel wheel;      /* every connection's deadline */
	uint32_t cfg_users[CONFIG_SNAPSHOTS_MAX]; /* open sessions per config snapshot */
	void *reply_pool[REPLY_BUFFER_POOL_MAX];  /* free reply buffers */
	uint32_t reply_pool_count;
	uint32_t rearm_head;           /* connections whose recv waits for a re-arm */
	bool listening;
	bool draining;                 /* new connections are refused with 421 */
	uint32_t accept_rearm_mask;    /* listeners whose accept waits for a re-arm */
	uint64_t accept_rearm_at_ms;
	uint64_t accept_errors;        /* since the last accept_failed log line */
	uint64_t accept_error_logged_ms;
	/* The 421 for a refused connection, by reason. */
	uint8_t reject_reply[SMTP_REFUSE_COUNT][REJECT_REPLY_BYTES];
	size_t reject_reply_len[SMTP_REFUSE_COUNT];
};

/*
 * Sets up the slab (cfg->max_connections + HTTP_CONNECTIONS_MAX slots), the
 * deadline wheel and the 421 reply for refused connections. w, clock,
 * bufs and budget are borrowed for the life of sc. 0 or -errno.
 */
RMX_MUST_CHECK int smtp_conns_init(struct smtp_conns *sc, struct worker *w,
				   const struct config *cfg, const struct loop_clock *clock,
				   struct transport_env env, struct buf_ring *bufs,
				   struct txn_budget *budget,
				   const struct smtp_conn_hooks *hooks);

/* Frees the slab and the pooled reply buffers (the ring is gone by now). */
void smtp_conns_free(struct smtp_conns *sc);

/* Arms a multishot accept on every listener. */
void smtp_conns_listen(struct smtp_conns *sc);

/* Draining: no more accepts (cancelled, listeners closed); connections
 * accepted meanwhile get 421. */
void smtp_conns_stop_listening(struct smtp_conns *sc);

/* A new snapshot for new sessions and deadlines armed from now on. */
void smtp_conns_set_config(struct smtp_conns *sc, const struct config *cfg);

/* Publishes which snapshots this worker still reads: the current one and
 * those of sessions still open (worker.cfg_held_mask). */
void smtp_conns_publish_held(struct smtp_conns *sc);

/* The worker's overload state changed (core/overload): stress gives new
 * transactions 452 4.3.1, halves timeouts, the greeting pause and the error
 * limits of new sessions; refuse answers new connections 421 4.3.2. */
void smtp_conns_set_overload(struct smtp_conns *sc, enum overload_state state);

/* Once per loop turn: fires the deadlines that are due. */
void smtp_conns_tick(struct smtp_conns *sc);

/* Once per loop turn, after the buffer ring got its buffers back: re-arms
 * receives that ran out of buffers and accepts that failed. */
void smtp_conns_rearm(struct smtp_conns *sc);

/* Draining: 421 to every connection not in a transaction, or to every one
 * once late (the grace period is over). */
void smtp_conns_drain(struct smtp_conns *sc, bool late);

/* Completion handlers, called by the worker's dispatch switch. */
void smtp_conn_on_accept(struct smtp_conns *sc, const struct io_uring_cqe *cqe);
void smtp_conn_on_recv(struct smtp_conns *sc, const struct io_uring_cqe *cqe);
void smtp_conn_on_send(struct smtp_conns *sc, const struct io_uring_cqe *cqe);
void smtp_conn_on_reject_sent(struct smtp_conns *sc, const struct io_uring_cqe *cqe);

/* Gives c a reply buffer before the session may write a reply. False: out
 * of memory (the caller closes the connection). */
RMX_MUST_CHECK bool smtp_conn_out_ready(struct smtp_conns *sc, struct conn *c);

/* Arms the receive of a connection just set up (SMTP or HTTP). */
void smtp_conn_arm_recv(struct smtp_conns *sc, struct conn *c);

/* A fresh deadline for what the session waits for now: after a reply we
 * owed (the client's time starts again), and at accept. */
void smtp_conn_arm_deadline(struct smtp_conns *sc, struct conn *c);

/* Feeds carried input while the session is not waiting, then sends,
 * lingers or closes as the session says. After a store outcome. */
void smtp_conn_pump(struct smtp_conns *sc, struct conn *c);

/* After c->out or the flags changed: sends, lingers or closes. */
void smtp_conn_after(struct smtp_conns *sc, struct conn *c);

/* Starts an accepted connection whose peer is known (after its PROXY
 * header, if any): counted against its client's limits (421 4.7.0 and
 * closed when over them), then its session begins. A probe (a balancer's
 * health check) is counted against nothing, not screened and logged at
 * debug level only. */
void smtp_conn_start(struct smtp_conns *sc, struct conn *c, bool probe);

/* Received bytes of c, through its transport (TLS: decrypted), to the
 * session; after its PROXY header, the rest of the read. */
void smtp_conn_received(struct smtp_conns *sc, struct conn *c, const uint8_t *p, size_t n);

/* Stops the connection now: no more replies. Released once quiet. */
void smtp_conn_close(struct smtp_conns *sc, struct conn *c);

/* Releases a closing connection once nothing of it is in flight or on a
 * worker list; does nothing otherwise. */
void smtp_conn_release_if_done(struct smtp_conns *sc, struct conn *c);

/* A free slot of the metrics endpoint's pool (CONN_HTTP set, counted in
 * http_open), or NULL when all HTTP_CONNECTIONS_MAX are in use. */
struct conn *smtp_conns_alloc_http(struct smtp_conns *sc, int fd);

#endif
