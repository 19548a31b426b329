/*
 * forward.h - one worker's forwarder: a pool of persistent ESMTP client
 * connections to the configured upstream relays, driving proto/smtp_client
 * over the worker's io_uring (DESIGN.md "Forwarding").
 *
 * The queue (storage/queue.h) says which message is due; the forwarder reads
 * its record from the segment, verifies it, forwards it verbatim (the body is
 * stored in DATA wire form), reports each recipient's outcome, stores a DSN
 * for recipients refused for good or expired, writes the delivery-log
 * commits, and deletes segments whose every recipient is final. Upstreams
 * are tried in order; one that refuses connections is skipped for a while,
 * then used again. Without any upstream configured, mail stays in the store.
 * Everything here runs on the worker thread.
 */
#ifndef RINGMX_FORWARD_H
#define RINGMX_FORWARD_H

#include <liburing.h>

#include "../common/base.h"
#include "config.h"

struct store_io;
struct buf_ring;

struct store;
struct queue;
struct forward;

#define FORWARD_SHARDS_MAX WORKERS_MAX

/* Store cookies with this bit belong to the forwarder (DSN records). */
#define FORWARD_COOKIE_BIT (1ull << 63)

/* A store shard whose mail the forwarder sends: the worker's own, and any
 * leftover shard (store_open_leftover) the worker was given at start-up, so
 * that a smaller worker count strands no mail (DESIGN.md "Storage"). */
struct forward_shard {
	uint32_t id;          /* the shard is DATA_DIR/w<id> */
	struct store *store;
	struct queue *queue;
	uint32_t sealed_damaged; /* damaged regions recovery found in sealed segments */
};

struct forward_env {
	struct io_uring *ring;
	struct buf_ring *bufs;              /* the worker's provided buffers: upstream replies land there */
	const struct forward_shard *shards; /* [0]: the worker's own (new records, DSNs) */
	uint32_t shard_count;               /* 1 .. FORWARD_SHARDS_MAX */
	const struct config *cfg;
	uint32_t worker;
	struct metrics_worker *metrics;
	struct store_io *io;                /* the worker's executor of storage's plans */
};

RMX_MUST_CHECK int forward_new(const struct forward_env *env, struct forward **out);
void forward_free(struct forward *f);

/* A reloaded configuration: upstream_timeout and the diagnostics use it
 * from now on (the upstream list and pool are restart-only, so they are
 * the same). cfg outlives the forwarder's use of it. */
void forward_set_config(struct forward *f, const struct config *cfg);

/* Once per loop turn: start due attempts, expire deadlines, submit the
 * delivery-log commit, reclaim segments. */
void forward_tick(struct forward *f, int64_t now_unix_ms, uint64_t now_ms);

/* A completion whose op is one of RING_OP_FWD_*. */
void forward_on_cqe(struct forward *f, const struct io_uring_cqe *cqe);

/* A record is durable (store_commit_done said 0): queue it for forwarding. */
void forward_record_durable(struct forward *f, uint64_t queue_id, uint64_t padded_bytes,
			    uint32_t rcpt_count, int64_t arrival_unix_ms);

/* The DSN record with this cookie (FORWARD_COOKIE_BIT set) is durable or failed. */
void forward_dsn_committed(struct forward *f, uint64_t cookie, int result);

/* Shutdown: start no new attempt, QUIT idle connections, let messages in
 * flight finish (or put them back). True while anything is still running. */
bool forward_drain(struct forward *f, bool hurry);

struct forward_stats {
	uint64_t attempts, delivered, deferred, bounced;
	uint32_t upstream_up_mask;
};
void forward_get_stats(const struct forward *f, struct forward_stats *out);

#endif
