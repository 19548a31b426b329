/*
 * queue_operator.h - the operator's requests on one worker's forwarding
 * queue: make a message (or every message) due now, or give one up.
 *
 * Part of the queue module (queue.h includes this header; struct queue is
 * opaque). Each request logs its entry through the queue's group commit
 * (queue_commit.h), so a restart keeps what the operator asked for.
 */
#ifndef RINGMX_QUEUE_OPERATOR_H
#define RINGMX_QUEUE_OPERATOR_H

#include "../common/base.h"

struct queue;

/*
 * Operator requests (core/control on the worker thread; no system call).
 *
 * queue_make_due: the queued message queue_id becomes due at now (a
 * REQUEUE entry is logged so that a restart keeps it due; nothing is logged
 * when it is due already). 0, -ENOENT (not held by this queue: unknown,
 * final, or another shard's) or -EBUSY (in flight: being attempted now).
 * Finding the message's heap slot costs about the number of messages due
 * before it (about 1-2 ms with a million queued); queue_delete likewise.
 */
RMX_MUST_CHECK int queue_make_due(struct queue *q, uint64_t queue_id, int64_t now_unix_ms);

/* Every queued message not yet due becomes due at now, each with a REQUEUE
 * entry (past the entry buffer they are dropped and counted: after a
 * restart those keep their logged backoff). Returns how many moved. */
uint64_t queue_make_all_due(struct queue *q, int64_t now_unix_ms);

/*
 * Gives up on the queued message queue_id for good: its pending recipients
 * become DELETED (one message-wide entry; never sent, no DSN) and the
 * message is freed. 0, -ENOENT or -EBUSY as queue_make_due.
 */
RMX_MUST_CHECK int queue_delete(struct queue *q, uint64_t queue_id, int64_t now_unix_ms);

#endif
