/*
 * conn.h - client connections: a slab allocated at start-up, one per worker,
 * with a generation per slot so that a late completion for a slot's previous
 * owner is recognised and dropped (liburing examples/proxy.c style).
 *
 * An idle connection costs its struct conn and nothing else: the reply
 * buffer and the carry buffer are allocated while there is something in
 * them, the transaction's buffers while a transaction is open.
 */
#ifndef RINGMX_CONN_H
#define RINGMX_CONN_H

#include "../proto/smtp_session.h"
#include "../common/base.h"
#include "timer.h"
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
};

#define CONN_WAITING (CONN_WAIT_COMMIT | CONN_WAIT_RESERVE | CONN_WAIT_FLUSH)

struct http_parser;

struct conn {
	int fd;
	uint32_t gen;          /* 24 bits used in user_data */
	uint32_t flags;
	uint32_t next;         /* free list, or the worker's reserve-wait list */
	uint32_t rearm_next;   /* the worker's list of recvs to re-arm */
	uint32_t send_bytes;   /* bytes of out.buf in the send in flight */
	uint32_t carry_len;
	uint32_t carry_cap;
	uint8_t *carry;        /* input not yet consumed by the session */
	struct smtp_out out;   /* replies; buf allocated on demand */
	struct timer_node timer;
	uint64_t deadline_ms;       /* when the timer fires (the loop's clock) */
	uint32_t deadline_commands; /* txn.commands when the deadline was set */
	uint8_t deadline_kind;      /* enum smtp_timeout_kind it was set for */
	struct smtp_peer peer;
	struct smtp_session session;
	struct txn txn;
	struct http_parser *http;  /* CONN_HTTP only */
	int64_t opened_ms;
	uint64_t msg_done_ns;      /* end of data seen (metrics; the loop's clock) */
	int32_t cfg_snapshot;      /* the config snapshot its session reads, -1: none */
	uint64_t bytes_in;         /* for the connection_close log line */
	uint64_t bytes_out;
	uint32_t messages;         /* accepted (durable) */
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

#endif
