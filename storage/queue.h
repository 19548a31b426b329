/*
 * queue.h - one worker's forwarding queue: which stored messages to forward
 * when, their per-recipient outcomes, the group commit of those outcomes to
 * the delivery logs (delivery_log.h), and which segments may be deleted.
 *
 * Sans-IO like the store (DESIGN.md rule 2): core/forward asks for a due
 * message (queue_next_due), forwards it, reports each recipient's outcome
 * (queue_outcome) and the end of the attempt (queue_attempt_done), and
 * performs the log writes that queue_commit_plan() plans, handing their
 * results to queue_commit_advance() (queue_commit.h). Segments whose every
 * recipient is final, with those final entries durable, are offered for
 * deletion (queue_reclaimable). The operator's requests are
 * queue_operator.h; this header includes both.
 *
 * Message life: queue_add (due now) -> queue_next_due (in flight) ->
 * outcomes -> queue_attempt_done: DONE (all final, freed), RETRY (back in
 * the queue at the next attempt time) or BOUNCE_DUE (still in flight: the
 * caller stores a DSN for the recipients in state QUEUE_RCPT_BOUNCE_DUE or
 * QUEUE_RCPT_EXPIRE_DUE, then calls queue_bounce_done). A BOUNCED/EXPIRED
 * entry is logged only once its DSN is durable, so a crash can repeat a
 * bounce, never lose one. queue_requeue puts a message back untried.
 *
 * Memory: queue_add allocates one block per message (a small struct and a
 * byte per recipient) and may grow the heap, its segment's id list and the
 * segment table;
 * queue_dlog_ready may grow the segment table (once per segment); nothing
 * else on the hot path allocates. Log entries wait in a fixed buffer of
 * QUEUE_PENDING_ENTRIES_MAX; when it is full a new entry is dropped and
 * counted, and if it was final its segment is never reclaimed in this run
 * (after a restart its recipients are forwarded again: at-least-once).
 *
 * queue_close() blocks; everything else makes no system call. Start-up
 * (queue_open, the replay of the delivery logs) is queue_recover.h; the
 * store tool's offline functions live beside the tool
 * (tools/queue_offline.h). One queue is used by one thread; it serves one
 * shard (a worker may hold the queues of several, e.g. the
 * shards left over when the worker count shrinks).
 */
#ifndef RINGMX_QUEUE_H
#define RINGMX_QUEUE_H

#include "../common/base.h"
#include "delivery_log.h"
#include "queue_commit.h"
#include "queue_operator.h"

#define QUEUE_PENDING_ENTRIES_MAX 8192   /* log entries waiting (256 KiB) */

#define QUEUE_RETRY_MIN_DEFAULT_MS (5ll * 60 * 1000)
#define QUEUE_RETRY_MAX_DEFAULT_MS (60ll * 60 * 1000)
#define QUEUE_LIFETIME_DEFAULT_MS (5ll * 24 * 60 * 60 * 1000)

struct queue;
struct queue_msg;

struct queue_config {
	const char *data_dir;     /* DIR; the shard is DIR/w<worker> (queue_open only) */
	uint32_t worker;
	int64_t retry_min_ms;     /* first retry delay, > 0 */
	int64_t retry_max_ms;     /* cap of the doubling, >= retry_min_ms */
	int64_t max_lifetime_ms;  /* past arrival + this, pending recipients expire */
	bool fsync;               /* false: log writes are not followed by fdatasync */
	uint64_t jitter_seed;     /* seeds the per-queue xorshift (0 picks a fixed one) */
	int64_t now_unix_ms;      /* queue_open: recovered messages are due from this time */
};

/* An empty queue with no files (tests, a shard with nothing stored, and the
 * start of queue_open).
 * Returns 0, -EINVAL (bad config) or -ENOMEM. */
RMX_MUST_CHECK int queue_new(const struct queue_config *cfg, struct queue **out);

/* A reload: the retry bounds and lifetime for attempts that end from now
 * on (messages already scheduled keep their time). Same rules as
 * queue_config; returns -EINVAL and changes nothing when they are broken. */
RMX_MUST_CHECK int queue_set_timing(struct queue *q, int64_t retry_min_ms, int64_t retry_max_ms,
				    int64_t max_lifetime_ms);

/* Frees the queue and closes the log fds it still holds (blocking). A
 * commit in flight must be finished; messages in flight are dropped. */
void queue_close(struct queue *q);

/*
 * A new record is durable (store_commit_done said 0): queue it, due at
 * now. Call in commit order. rcpt_count >= 1. Returns 0, -EINVAL (bad
 * arguments) or -ENOMEM. Allocates.
 */
RMX_MUST_CHECK int queue_add(struct queue *q, uint64_t queue_id, uint64_t padded_bytes,
			     uint32_t rcpt_count, int64_t arrival_unix_ms, int64_t now_unix_ms);

/* Arrival time of the oldest message held (queued or in flight), INT64_MAX
 * when none: the oldest by queueing order, which is arrival order (records
 * are queued in commit order, recovered in segment order). O(1). */
int64_t queue_oldest_arrival_unix_ms(const struct queue *q);

/* The earliest next-attempt time of a queued (not in flight) message, or
 * INT64_MAX when there is none: arm the timer for it. */
int64_t queue_next_due_time(const struct queue *q);

/* Pops a message whose next attempt time is <= now and marks it in flight;
 * NULL when none is due. The message stays valid until queue_attempt_done
 * returns DONE or RETRY, or queue_set_aside. */
struct queue_msg *queue_next_due(struct queue *q, int64_t now_unix_ms);

/* The padded record size of the message queue_next_due would pop now, or 0
 * when none is due: lets the caller bound the record buffers it holds. */
uint64_t queue_next_due_bytes(const struct queue *q, int64_t now_unix_ms);

uint64_t queue_msg_id(const struct queue_msg *m);
uint64_t queue_msg_padded_bytes(const struct queue_msg *m);
uint32_t queue_msg_rcpt_count(const struct queue_msg *m);
int64_t queue_msg_arrival_unix_ms(const struct queue_msg *m);
uint16_t queue_msg_attempts(const struct queue_msg *m);   /* finished attempts */
uint16_t queue_msg_last_reply_code(const struct queue_msg *m);
uint16_t queue_msg_last_enhanced(const struct queue_msg *m);

/* Recipient states: the final ones of delivery_log.h, plus two that wait
 * for a DSN (queue only, never logged). */
enum queue_rcpt_state {
	QUEUE_RCPT_PENDING = DELIVERY_LOG_RCPT_PENDING,
	QUEUE_RCPT_DELIVERED = DELIVERY_LOG_RCPT_DELIVERED,
	QUEUE_RCPT_BOUNCED = DELIVERY_LOG_RCPT_BOUNCED,
	QUEUE_RCPT_EXPIRED = DELIVERY_LOG_RCPT_EXPIRED,
	QUEUE_RCPT_DELETED = DELIVERY_LOG_RCPT_DELETED,
	QUEUE_RCPT_SET_ASIDE = DELIVERY_LOG_RCPT_SET_ASIDE,
	QUEUE_RCPT_BOUNCE_DUE = 16, /* refused for good this attempt; DSN to store */
	QUEUE_RCPT_EXPIRE_DUE = 17, /* lifetime over; DSN to store */
};
enum queue_rcpt_state queue_msg_rcpt_state(const struct queue_msg *m, uint32_t rcpt);

enum queue_outcome {
	QUEUE_OUTCOME_DELIVERED, /* 2xx to RCPT and to the end of data */
	QUEUE_OUTCOME_TEMPFAIL,  /* 4xx, connection error, timeout, malformed reply */
	QUEUE_OUTCOME_PERMFAIL,  /* 5xx: bounce now */
};

/*
 * Reports the outcome of recipient rcpt of an in-flight message. Only a
 * PENDING recipient changes: DELIVERED logs a DELIVERED entry at once;
 * PERMFAIL makes it BOUNCE_DUE; TEMPFAIL keeps it pending. code/enhanced
 * (delivery_log_enhanced_pack) become the message's last reply. A recipient given
 * no outcome in an attempt stays pending (retried).
 */
void queue_outcome(struct queue *q, struct queue_msg *m, uint32_t rcpt,
		   enum queue_outcome outcome, uint16_t code, uint16_t enhanced,
		   int64_t now_unix_ms);

enum queue_attempt_result {
	QUEUE_ATTEMPT_DONE,       /* every recipient final: m is freed */
	QUEUE_ATTEMPT_RETRY,      /* rescheduled (a DEFERRED entry logged): m is queued */
	QUEUE_ATTEMPT_BOUNCE_DUE, /* m stays in flight: store a DSN, then queue_bounce_done */
};

/*
 * Ends the attempt on an in-flight message. If recipients are pending and
 * arrival + max_lifetime has passed, they become EXPIRE_DUE. With any
 * *_DUE recipient: BOUNCE_DUE. Otherwise pending recipients get the next
 * attempt at now + min(retry_min * 2^(attempts-1), retry_max) +-20%
 * jitter (no later than the expiry time): RETRY; else DONE.
 */
enum queue_attempt_result queue_attempt_done(struct queue *q, struct queue_msg *m,
					     int64_t now_unix_ms);

/*
 * The DSN for the *_DUE recipients of m is durable (or none is due: null
 * reverse path): logs BOUNCED/EXPIRED for them, then finishes the attempt
 * as queue_attempt_done would (RETRY or DONE, never BOUNCE_DUE).
 */
enum queue_attempt_result queue_bounce_done(struct queue *q, struct queue_msg *m,
					    int64_t now_unix_ms);

/*
 * The DSN for a BOUNCE_DUE message could not be stored (store failed or
 * the record does not fit): its *_DUE recipients become PENDING again and
 * the message is queued for due_unix_ms, as after a restart (nothing was
 * logged for them). The next attempt refuses or expires them again and
 * asks for the DSN again. Returns RETRY (or DONE when nothing is pending).
 */
enum queue_attempt_result queue_bounce_failed(struct queue *q, struct queue_msg *m,
					      int64_t due_unix_ms);

/* The in-flight record does not read back (CRC): logs SET_ASIDE for the
 * whole message (never sent, no DSN) and frees m. */
void queue_set_aside(struct queue *q, struct queue_msg *m, int64_t now_unix_ms);

/*
 * Puts an in-flight message back without logging anything (no upstream
 * connection free, shutdown): due again at due_unix_ms. Outcomes already
 * reported stay; the attempt counts only if one of them was logged. m must have no *_DUE
 * recipient; if it has no pending one either, it is freed (returns DONE),
 * else it is queued (returns RETRY).
 */
enum queue_attempt_result queue_requeue(struct queue *q, struct queue_msg *m,
					int64_t due_unix_ms);

/*
 * Every record of segments below seq is durable and was given to queue_add
 * (e.g. the first record of seq was): those segments are sealed. queue_add
 * of a record in segment S implies the same for segments below S.
 */
void queue_set_active_segment(struct queue *q, uint32_t seq);

/*
 * A sealed segment whose records are all final and whose log entries are
 * all durable: returns true and *seq, once per segment. core/ unlinks
 * <seq>.seg first, then <seq>.dlog (a crash between leaves an orphan log
 * that queue_open removes), then calls queue_reclaimed and
 * store_segment_removed (so the store's size budget shrinks).
 */
bool queue_reclaimable(struct queue *q, uint32_t *seq);

/* Forgets segment seq (handed out by queue_reclaimable) and returns its log
 * fd for core/ to close, or -1. */
int queue_reclaimed(struct queue *q, uint32_t seq);

struct queue_stats {
	uint64_t messages;          /* queued + in flight */
	uint64_t in_flight;
	uint64_t recipients_pending;
	uint32_t segments;          /* known segments not yet reclaimed */
	uint32_t entries_waiting;   /* log entries not yet handed to a commit */
	uint64_t entries_dropped;   /* buffer full, failed queue, or log fd failed */
	uint64_t entries_committed;
	uint64_t commits;
	uint64_t delivered, bounced, expired, deferred, set_aside;
};
void queue_get_stats(const struct queue *q, struct queue_stats *out);

/* For start-up recovery (queue_recover.c) only. */

/*
 * Queues a recovered record as its log left it: replay->pending (>= 1)
 * recipients pending, the others in their final states, attempts and last
 * reply from the log; due at due_unix_ms. Returns 0, -EINVAL (queued
 * already) or -ENOMEM. Allocates.
 */
RMX_MUST_CHECK int queue_restore(struct queue *q, uint64_t queue_id, uint64_t padded_bytes,
				 int64_t arrival_unix_ms,
				 const struct delivery_log_replay_msg *replay, int64_t due_unix_ms);

#endif
