/*
 * queue_heap.c - the queue's heap on next attempt time (queue_state.h):
 * which queued message is due first, and the slots operator requests
 * reach into.
 *
 * Slots carry their key, so sifting compares within the array and never
 * touches a message (a backlog of a million deferred messages stays cheap:
 * no cache miss per comparison). Ties go by queue id, oldest first.
 *
 * Invariants: a message is in the heap exactly when its queued flag is
 * set, once, under its next attempt time; capacity for every message held
 * is reserved when it is inserted, so a push never allocates.
 */
#include "queue_state.h"

#include <errno.h>

static bool slot_before(const struct heap_slot *a, const struct heap_slot *b)
{
	if (a->due_unix_ms != b->due_unix_ms)
		return a->due_unix_ms < b->due_unix_ms;
	return a->queue_id < b->queue_id;
}

void queue_heap_up(struct queue *q, uint32_t i)
{
	struct heap_slot moving = q->heap[i];
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (!slot_before(&moving, &q->heap[parent]))
			break;
		q->heap[i] = q->heap[parent];
		i = parent;
	}
	q->heap[i] = moving;
}

void queue_heap_down(struct queue *q, uint32_t i)
{
	struct heap_slot moving = q->heap[i];
	for (;;) {
		uint32_t child = 2 * i + 1;
		if (child >= q->heap_len)
			break;
		if (child + 1 < q->heap_len && slot_before(&q->heap[child + 1], &q->heap[child]))
			child++;
		if (!slot_before(&q->heap[child], &moving))
			break;
		q->heap[i] = q->heap[child];
		i = child;
	}
	q->heap[i] = moving;
}

/* Pushes m at its next attempt time; the capacity was reserved when m was
 * inserted (one slot per message). */
void queue_heap_push(struct queue *q, struct queue_msg *m)
{
	RMX_ASSERT(q->heap_len < q->heap_cap);
	RMX_ASSERT(!m->queued);
	m->queued = true;
	q->heap[q->heap_len] = (struct heap_slot){ m->next_attempt_unix_ms, m->queue_id, m };
	q->heap_len++;
	queue_heap_up(q, q->heap_len - 1);
}

struct queue_msg *queue_heap_pop(struct queue *q)
{
	RMX_ASSERT(q->heap_len > 0);
	struct queue_msg *top = q->heap[0].msg;
	RMX_ASSERT(top->queued && top->next_attempt_unix_ms == q->heap[0].due_unix_ms);
	q->heap_len--;
	if (q->heap_len > 0) {
		q->heap[0] = q->heap[q->heap_len];
		queue_heap_down(q, 0);
	}
	top->queued = false;
	return top;
}

int queue_heap_reserve(struct queue *q, uint64_t want)
{
	if (want <= q->heap_cap)
		return 0;
	if (want > UINT32_MAX - 1)
		return -ENOMEM;
	uint64_t cap = q->heap_cap ? (uint64_t)q->heap_cap * 2 : 1024;
	if (cap < want)
		cap = want;
	if (cap > UINT32_MAX - 1)
		cap = UINT32_MAX - 1;
	struct heap_slot *grown = realloc(q->heap, cap * sizeof(*grown));
	if (grown == NULL)
		return -ENOMEM;
	q->heap = grown;
	q->heap_cap = (uint32_t)cap;
	return 0;
}

/*
 * The heap slot of queued message m. The search skips every subtree whose
 * root comes after m (heap order puts m below none of them), so it costs
 * about the number of messages due before m. UINT32_MAX if absent.
 */
uint32_t queue_heap_find(const struct queue *q, const struct queue_msg *m)
{
	struct heap_slot key = { m->next_attempt_unix_ms, m->queue_id, NULL };
	/* Preorder with an explicit stack: at most one pending sibling per
	 * level plus the node popped, and a heap is at most 32 levels deep. */
	uint32_t stack[66];
	uint32_t depth = 0;
	if (q->heap_len == 0)
		return UINT32_MAX;
	stack[depth++] = 0;
	while (depth > 0) {
		uint32_t i = stack[--depth];
		const struct heap_slot *h = &q->heap[i];
		if (h->msg == m)
			return i;
		if (slot_before(&key, h))
			continue;
		uint64_t left = 2 * (uint64_t)i + 1;
		for (uint64_t c = left + 1; c >= left; c--) {
			if (c < q->heap_len) {
				RMX_ASSERT(depth < RMX_ARRAY_LEN(stack));
				stack[depth++] = (uint32_t)c;
			}
		}
	}
	return UINT32_MAX;
}

/* Takes slot i out of the heap; its message is no longer queued. */
void queue_heap_remove_at(struct queue *q, uint32_t i)
{
	RMX_ASSERT(i < q->heap_len);
	struct queue_msg *m = q->heap[i].msg;
	RMX_ASSERT(m->queued);
	q->heap_len--;
	if (i < q->heap_len) {
		q->heap[i] = q->heap[q->heap_len];
		queue_heap_up(q, i);
		queue_heap_down(q, i); /* a no-op when heap_up moved the slot */
	}
	m->queued = false;
}

