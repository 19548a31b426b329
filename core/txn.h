/*
 * txn.h - one SMTP transaction on its way to becoming a store record.
 *
 * The session (proto/) hands over the envelope and body through
 * struct smtp_txn_ops; txn keeps them in growable buffers: the envelope as
 * record items, the body in DATA wire form. This is the one copy of a body
 * (DESIGN.md rule 3): from the receive buffer into txn.body, from which the
 * group commit writes it. A txn belongs to one connection on one worker; it
 * is allocated at MAIL and freed when the transaction ends or its record is
 * durable. What its body buffer holds is charged to the worker's budget
 * (max_inflight_data_bytes) before it is allocated; past the budget the
 * transaction ends with 451 4.3.1 and its bytes are released at once.
 *
 * The body buffer starts with TXN_HEADROOM_BYTES of room so that the
 * Received: header, known only once the queue id is, is written right in
 * front of the body and both go out as one iovec.
 */
#ifndef RINGMX_TXN_H
#define RINGMX_TXN_H

#include <sys/uio.h>

#include "../proto/smtp_session.h"
#include "../storage/record.h"
#include "../common/base.h"

struct metrics_worker;

struct txn;

/* The worker-wide budget txns draw on (max_inflight_data_bytes). */
struct txn_budget {
	uint64_t inflight_bytes;     /* capacity of every open body buffer */
	uint64_t max_inflight_bytes; /* never exceeded (max_inflight_data_bytes) */
	int store_state; /* 0, -ENOSPC (store full) or -EIO (store failed) */
	struct metrics_worker *metrics; /* the worker's counters (observer hook) */
	uint64_t now_ns;                /* the worker's monotonic clock, this loop turn */
	/* Optional: asked at each MAIL after the store's state; 0 or the
	 * errno the session answers (-EBUSY: the client's message rate,
	 * 451 4.7.1; -ENOSPC: overload, 452 4.3.1). */
	int (*mail_gate)(void *ctx, struct txn *t);
	void *mail_gate_ctx;
};

struct txn {
	struct txn_budget *budget;
	struct bytebuf env;
	struct bytebuf body;
	uint64_t charged_bytes;      /* body capacity counted in budget */
	uint64_t size_hint_bytes;    /* MAIL SIZE=, to size the body buffer once */
	struct record_header header; /* filled at seal time */
	size_t received_len;         /* Received: sits just before the body */
	struct iovec parts[RECORD_SEALED_PARTS];
	int nparts;
	uint64_t queue_id;
	uint32_t rcpt_count;         /* recipients in the envelope */
	uint64_t mail_ns;            /* when MAIL was accepted (metrics) */
	uint32_t commands;           /* commands of the whole connection (logs) */
	bool active;                 /* between MAIL and reset/commit */
};

#define TXN_HEADROOM_BYTES SMTP_RECEIVED_HEADER_MAX_BYTES

extern const struct smtp_txn_ops txn_ops;

void txn_init(struct txn *t, struct txn_budget *budget);

/* The connection facts a record keeps. */
struct txn_client_facts {
	struct span client_ip;
	struct span helo;
	const char *protocol;  /* "ESMTP", "ESMTPSA", ... */
	struct span tls;       /* "TLSv1.3 TLS_AES_256_GCM_SHA384"; empty in clear text */
	struct span auth_user; /* empty when not authenticated */
};

/* Adds the connection facts once the message is complete, before sealing. */
RMX_MUST_CHECK int txn_add_client(struct txn *t, const struct txn_client_facts *f);

/* Releases buffers and the budget charge. */
void txn_reset(struct txn *t);

/* Bytes the record for this txn will occupy, padded, given a Received:
 * header of received_len bytes. */
uint64_t txn_record_bytes(const struct txn *t, size_t received_len);

/* Places the Received: header in front of the body. */
void txn_set_received(struct txn *t, const char *received, size_t len);

/* Seals the record (header + CRC) for queue_id and fills t->parts. */
void txn_seal(struct txn *t, uint64_t queue_id, int64_t arrival_unix_ms);

/* The record of a sealed txn is durable and its 250 goes out: logs
 * event=message_accepted (queue id, reverse path, recipients, body bytes,
 * client, HELO, TLS) from the envelope, quoted, into the thread's log
 * buffer. Call before txn_reset. */
void txn_log_accepted(const struct txn *t);

#endif
