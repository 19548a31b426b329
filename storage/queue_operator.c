/*
 * queue_operator.c - the operator's requests on a queue (see
 * queue_operator.h): make one queued message due now, make every one due,
 * or give one up for good.
 *
 * Where it sits: core/control calls these on the worker thread that owns
 * the queue. Each request logs its entry (REQUEUE or DELETED) through the
 * group commit (queue_commit.c), so a restart keeps what was asked for.
 *
 * Invariants: only a queued message (not in flight) is touched; heap order
 * is restored before returning. No system call.
 */
#include "queue_state.h"

#include <errno.h>

/* The queued (not in flight) message of queue_id: 0, -ENOENT or -EBUSY. */
static int operator_target(struct queue *q, uint64_t queue_id, struct queue_msg **out)
{
	struct queue_msg *m = queue_ids_find(q, queue_id);
	if (m == NULL)
		return -ENOENT;
	if (m->in_flight)
		return -EBUSY;
	RMX_ASSERT(m->queued && m->pending > 0 && m->due == 0);
	*out = m;
	return 0;
}

int queue_make_due(struct queue *q, uint64_t queue_id, int64_t now_unix_ms)
{
	struct queue_msg *m = NULL;
	int rc = operator_target(q, queue_id, &m);
	if (rc != 0)
		return rc;
	if (m->next_attempt_unix_ms <= now_unix_ms)
		return 0; /* due already; a restart would make it due too */
	uint32_t i = queue_heap_find(q, m);
	RMX_ASSERT(i != UINT32_MAX);
	m->next_attempt_unix_ms = now_unix_ms;
	q->heap[i].due_unix_ms = now_unix_ms;
	queue_heap_up(q, i);
	queue_log_entry(q, m, DELIVERY_LOG_REQUEUE, DELIVERY_LOG_RCPT_ALL, m->attempts, now_unix_ms, 0, 0);
	return 0;
}

uint64_t queue_make_all_due(struct queue *q, int64_t now_unix_ms)
{
	uint64_t changed = 0;
	for (uint32_t i = 0; i < q->heap_len; i++) {
		struct heap_slot *h = &q->heap[i];
		if (h->due_unix_ms <= now_unix_ms)
			continue;
		h->due_unix_ms = now_unix_ms;
		h->msg->next_attempt_unix_ms = now_unix_ms;
		queue_log_entry(q, h->msg, DELIVERY_LOG_REQUEUE, DELIVERY_LOG_RCPT_ALL, h->msg->attempts,
				now_unix_ms, 0, 0);
		changed++;
	}
	/* Many keys moved: rebuild the heap bottom-up (Floyd), O(n). */
	if (changed > 0)
		for (uint32_t i = q->heap_len / 2; i-- > 0;)
			queue_heap_down(q, i);
	return changed;
}

int queue_delete(struct queue *q, uint64_t queue_id, int64_t now_unix_ms)
{
	struct queue_msg *m = NULL;
	int rc = operator_target(q, queue_id, &m);
	if (rc != 0)
		return rc;
	uint32_t i = queue_heap_find(q, m);
	RMX_ASSERT(i != UINT32_MAX);
	queue_heap_remove_at(q, i);
	for (uint32_t r = 0; r < m->rcpt_count && m->pending > 0; r++) {
		if (m->rcpt_state[r] != QUEUE_RCPT_PENDING)
			continue;
		queue_rcpt_set(m, r, QUEUE_RCPT_DELETED);
		q->recipients_pending--;
	}
	queue_log_entry(q, m, DELIVERY_LOG_DELETED, DELIVERY_LOG_RCPT_ALL, m->attempts, now_unix_ms, 0, 0);
	queue_msg_free(q, m);
	return 0;
}

