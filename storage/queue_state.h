/*
 * queue_state.h - the layout of one worker's forwarding queue, shared by the
 * parts of the queue module: queue.c (messages, outcomes and backoff, the
 * segment table and its id lists, reclamation), queue_heap.c (the heap on
 * next attempt time), queue_commit.c (log entries waiting, the group
 * commit, the log fds) and queue_operator.c (operator requests).
 * Private to storage/queue*.c; everyone else sees struct queue as opaque
 * (queue.h).
 *
 * Invariants (kept by all parts): a queued message is in the heap exactly
 * when it is not in flight; msg->pending and msg->due count its PENDING and
 * *_DUE recipients; seg->live_msgs counts the messages of a segment still
 * held; seg->unsynced counts its entries waiting or in flight. At most one
 * commit is in flight. Every message held is in its segment's id list
 * exactly once.
 */
#ifndef RINGMX_QUEUE_STATE_H
#define RINGMX_QUEUE_STATE_H

#include "../common/base.h"
#include "delivery_log.h"
#include "queue.h"

struct queue_msg {
	struct queue_msg *prev; /* every message of the queue, for queue_close */
	struct queue_msg *next;
	uint64_t queue_id;
	uint64_t padded_bytes;
	int64_t arrival_unix_ms;
	int64_t next_attempt_unix_ms;
	uint32_t seq;
	uint32_t rcpt_count;
	uint32_t pending;     /* recipients in QUEUE_RCPT_PENDING */
	uint32_t due;         /* recipients in QUEUE_RCPT_*_DUE */
	uint16_t attempts;
	uint16_t last_reply_code;
	uint16_t last_enhanced;
	bool in_flight;
	bool queued;          /* in the heap (exactly when not in flight) */
	bool attempt_logged;  /* an entry numbered the attempt in flight */
	uint8_t rcpt_state[]; /* rcpt_count bytes, enum queue_rcpt_state */
};

struct heap_slot {
	int64_t due_unix_ms;
	uint64_t queue_id;
	struct queue_msg *msg;
};

/* One entry of a segment's id list; msg NULL: the message was freed. */
struct id_slot {
	uint64_t queue_id;
	struct queue_msg *msg;
};

struct queue_segment {
	uint32_t seq;
	int fd;               /* the log, -1 until ready */
	int fd_error;         /* queue_dlog_ready said -errno */
	uint64_t log_bytes;   /* where the next write lands */
	uint64_t live_msgs;
	uint32_t unsynced;    /* entries waiting or in flight */
	bool log_lost;        /* a final entry was dropped: never reclaimed */
	bool offered;         /* handed out by queue_reclaimable */
	struct id_slot *ids;  /* its messages by queue id, ascending */
	uint32_t ids_len;
	uint32_t ids_cap;
};

struct waiting_entry {
	uint32_t seq;
	uint8_t bytes[DELIVERY_LOG_ENTRY_BYTES];
};

struct queue {
	uint32_t worker;
	int64_t retry_min_ms;
	int64_t retry_max_ms;
	int64_t max_lifetime_ms;
	bool fsync;
	uint64_t rng;

	struct queue_msg *all;     /* list of every message held, newest first */
	struct queue_msg *all_tail; /* its oldest: messages are queued in arrival order */
	struct heap_slot *heap;
	uint32_t heap_len;
	uint32_t heap_cap;

	struct queue_segment *seg; /* sorted by seq */
	uint32_t seg_count;
	uint32_t seg_cap;
	uint32_t sealed_below;     /* segments below this are sealed */

	struct waiting_entry *waiting; /* QUEUE_PENDING_ENTRIES_MAX */
	uint32_t waiting_count;
	uint8_t *flight;               /* QUEUE_PENDING_ENTRIES_MAX entries */
	uint32_t flight_seq[QUEUE_COMMIT_WRITES_MAX];
	uint32_t flight_entries[QUEUE_COMMIT_WRITES_MAX];
	uint32_t flight_count;
	bool in_flight;
	int status;

	uint64_t messages;
	uint64_t messages_in_flight;
	uint64_t recipients_pending;
	uint64_t entries_dropped;
	uint64_t entries_committed;
	uint64_t commits;
	uint64_t delivered, bounced, expired, deferred, set_aside;
};

/* ---- queue.c ---- */

/* The entry of segment seq, or NULL. */
struct queue_segment *queue_seg_find(struct queue *q, uint32_t seq);

/* Finds or inserts the entry of seq (allocates when the table grows); NULL:
 * out of memory. */
struct queue_segment *queue_seg_get(struct queue *q, uint32_t seq);

/* The message of queue_id held by q, or NULL. */
struct queue_msg *queue_ids_find(struct queue *q, uint64_t queue_id);

/* Frees m (no recipient PENDING or *_DUE, not in the heap) and forgets it
 * in its segment. */
void queue_msg_free(struct queue *q, struct queue_msg *m);

/* Moves a PENDING or *_DUE recipient on, keeping m->pending and m->due. */
void queue_rcpt_set(struct queue_msg *m, uint32_t rcpt, enum queue_rcpt_state to);

/* ---- queue_heap.c: the heap on next attempt time ---- */

/* Restore heap order after slot i's key moved earlier / later. */
void queue_heap_up(struct queue *q, uint32_t i);
void queue_heap_down(struct queue *q, uint32_t i);

/* Pushes m at its next attempt time (room reserved by queue_heap_reserve);
 * m is queued from here on. */
void queue_heap_push(struct queue *q, struct queue_msg *m);

/* Takes the earliest message off the heap (the heap is not empty); it is no
 * longer queued. */
struct queue_msg *queue_heap_pop(struct queue *q);

/* Room for want slots: 0 or -ENOMEM. */
RMX_MUST_CHECK int queue_heap_reserve(struct queue *q, uint64_t want);

/* The slot of queued message m, or UINT32_MAX; costs about the number of
 * messages due before m. */
uint32_t queue_heap_find(const struct queue *q, const struct queue_msg *m);

/* Takes slot i out of the heap; its message is no longer queued. */
void queue_heap_remove_at(struct queue *q, uint32_t i);

/* ---- queue_commit.c ---- */

/* Queues one entry for m's segment log, or drops and counts it (a dropped
 * final entry keeps its segment from being reclaimed). */
void queue_log_entry(struct queue *q, const struct queue_msg *m, enum delivery_log_type type,
		     uint32_t rcpt, uint16_t attempt, int64_t time_unix_ms, uint16_t code,
		     uint16_t enhanced);

#endif
