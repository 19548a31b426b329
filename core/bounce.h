/*
 * bounce.h - DSN production for the forwarder (DESIGN.md "Forwarding"):
 * when an attempt leaves recipients refused for good (5xx) or expired, an
 * RFC 3464 delivery status notification from <> to the reverse path is
 * built (proto/dsn) and stored as a new record in the worker's own shard;
 * once that record is durable the original's recipients are final and the
 * DSN is queued like any message. A DSN that cannot be stored puts its
 * recipients back to pending: the next attempt asks for it again.
 *
 * The DSN's input (which recipients, their diagnostic and status, the last
 * reply) and its envelope are built by pure functions (no ring, no store,
 * no clock); the rest runs on the worker thread that owns the slot.
 */
#ifndef RINGMX_BOUNCE_H
#define RINGMX_BOUNCE_H

#include <sys/uio.h>

#include "../common/base.h"
#include "../common/bounds.h"
#include "../proto/dsn.h"
#include "../storage/record.h"
#include "config.h"
#include "forward_msg.h"

struct store;
struct queue;
struct queue_msg;

/* The DSN's Message-ID token: queue id, worker and a per-worker serial. */
#define BOUNCE_TOKEN_BYTES 48

/*
 * The input of dsn_build for one message: the recipients due a DSN, in
 * record order, with their texts. in's spans point into this struct, into
 * fm and its record, and into reporting_mta: all must outlive in's use,
 * and a built report is not moved.
 */
struct bounce_report {
	struct dsn_input in;
	struct dsn_recipient *rcpts;             /* [in.recipient_count] */
	char (*diagnostic)[FORWARD_DIAG_BYTES];  /* rcpts[i].diagnostic's bytes */
	char queue_id[RECORD_QUEUE_ID_CHARS];
	char token[BOUNCE_TOKEN_BYTES];
};

/*
 * Builds r for the recipients of queue message qm that are BOUNCE_DUE or
 * EXPIRE_DUE, fm being its loaded record with this attempt's results. A
 * recipient refused in this attempt reports that reply ("550 5.1.1 text")
 * and its status; an expired one (or one without a reply of its own)
 * reports "delivery time expired after N attempts; last reply C X.Y.Z"
 * (the message's last reply, codes only) with 5.4.7. Every one is
 * "failed", last attempted now. Returns 0, -ENOENT (no recipient due: r
 * holds nothing) or -ENOMEM. Free with bounce_report_free.
 */
RMX_MUST_CHECK int bounce_report_build(struct bounce_report *r, const struct forward_msg *fm,
				       const struct queue_msg *qm, struct span reporting_mta,
				       uint32_t worker, uint64_t serial, int64_t now_unix_ms);
void bounce_report_free(struct bounce_report *r);

/*
 * Appends the DSN record's envelope to env: the null reverse path, the body
 * type (8BITMIME when needs, dsn_transport_needs' bits, says so, else 7BIT),
 * SMTPUTF8 when needed, one recipient (to: the original's reverse path),
 * our helo and protocol "LOCAL". Returns 0, -EINVAL or -ENOMEM.
 */
RMX_MUST_CHECK int bounce_envelope_build(struct bytebuf *env, struct span to, unsigned needs,
					 struct span helo);

/* One slot's DSN in production: built, waiting for room, or being stored. */
struct bounce {
	bool active;       /* a DSN record is being stored for the slot's message */
	bool reserve_wait; /* not appended yet (store_reserve said -EAGAIN) */
	uint8_t *body;
	size_t body_len;
	struct bytebuf env;
	struct record_header header;
	struct iovec parts[RECORD_SEALED_PARTS];
	uint64_t queue_id;
	uint64_t padded_bytes;
	int64_t arrival_unix_ms;
	uint32_t recipients; /* the recipients it reports */
};

/*
 * Builds the DSN for qm (see bounce_report_build; fm NULL when its record
 * was never loaded) and makes b active, waiting to be stored. Returns false
 * when there is none to send (a null reverse path, no record, no recipient
 * due, out of memory: logged), so the caller finishes the bounce at once.
 * *serial counts the DSNs of this worker.
 */
bool bounce_start(struct bounce *b, const struct forward_msg *fm, const struct queue_msg *qm,
		  const struct config *cfg, uint32_t worker, uint64_t *serial,
		  int64_t now_unix_ms);

/*
 * Reserves, seals and appends b's record to store (the worker's own shard)
 * with cookie. Returns 0 (appended: the cookie comes back from the store's
 * commit), -EAGAIN (no room yet: b still waits, call again next turn) or
 * another -errno: the DSN cannot be stored (bounce_abandon).
 */
RMX_MUST_CHECK int bounce_store(struct bounce *b, struct store *store, uint64_t cookie,
				int64_t now_unix_ms);

/*
 * b cannot be stored (error): qm's recipients due a DSN go back to pending
 * and qm to q, due after retry_min_s like a temporary failure; nothing final
 * was logged, so nothing is lost. Logs, frees b; the caller lets go of qm.
 */
void bounce_abandon(struct bounce *b, struct queue *q, struct queue_msg *qm, uint32_t worker,
		    uint32_t retry_min_s, int64_t now_unix_ms, int error);

/*
 * b's record is durable: it is queued in own (the worker's own shard's
 * queue) and qm's recipients due a DSN become final in q. Frees b and
 * returns the recipients it reported; the caller lets go of qm.
 */
uint32_t bounce_committed(struct bounce *b, struct queue *own, struct queue *q,
			  struct queue_msg *qm, uint32_t worker, int64_t now_unix_ms);

/* Frees b's buffers and zeroes it; a zeroed b is a no-op. */
void bounce_free(struct bounce *b);

#endif
