/*
 * queue.c - one worker's forwarding queue at run time (see queue.h): the
 * messages held, their per-recipient outcomes and retry backoff, the
 * segment table with each segment's id list, and segment reclamation. The
 * other parts of the module share its state (queue_state.h): the heap on
 * next attempt time (queue_heap.c), the group commit of outcome entries to
 * the per-segment delivery logs (queue_commit.c) and the operator's
 * requests (queue_operator.c). Start-up recovery, which rebuilds the queue
 * from the segments and their logs, is queue_recover.c; it fills the queue
 * through queue_restore and queue_log_resume.
 *
 * Where it sits: the store makes a record durable -> core/ calls queue_add;
 * core/forward pops due messages, forwards them through proto/smtp_client
 * and reports outcomes here; entries are written by core/ as handed out by
 * queue_commit_plan; sealed segments with every recipient final and every
 * entry durable are handed to core/ for unlinking.
 *
 * Invariants: a queued message is in the heap exactly when it is not in
 * flight; msg->pending and msg->due count its PENDING and *_DUE recipients;
 * seg->live_msgs counts the messages of a segment still held; seg->unsynced
 * counts its entries waiting or in flight, so a segment is reclaimable only
 * once that is 0, it is sealed, it lost no final entry and the queue has
 * not failed. At most one commit is in flight. Every message held is in
 * its segment's id list exactly once. Only queue_close() makes system
 * calls (it closes the log fds).
 */
#include "queue_state.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "record.h"

/* Sanity bounds on the configuration (a year; ten years). */
#define QUEUE_RETRY_MAX_LIMIT_MS (366ll * 24 * 60 * 60 * 1000)
#define QUEUE_LIFETIME_LIMIT_MS (3660ll * 24 * 60 * 60 * 1000)
#define QUEUE_JITTER_SEED_DEFAULT 0x9E3779B97F4A7C15ull

_Static_assert(SMTP_RECIPIENTS_MAX < DELIVERY_LOG_RCPT_ALL, "recipient indexes never look like ALL");

/* ---- small pieces ---- */

static uint64_t rng_next(struct queue *q)
{
	/* xorshift64 (Marsaglia): never 0 once seeded non-zero. */
	uint64_t x = q->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	q->rng = x;
	return x;
}

static int64_t add_sat(int64_t a, int64_t b)
{
	RMX_ASSERT(b >= 0);
	return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* ---- segments ---- */

/* Index of seq in the sorted table, or where it would go (*found false). */
static uint32_t seg_search(const struct queue *q, uint32_t seq, bool *found)
{
	uint32_t lo = 0, hi = q->seg_count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (q->seg[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < q->seg_count && q->seg[lo].seq == seq;
	return lo;
}

struct queue_segment *queue_seg_find(struct queue *q, uint32_t seq)
{
	bool found;
	uint32_t i = seg_search(q, seq, &found);
	return found ? &q->seg[i] : NULL;
}

/* Finds or inserts the entry of seq. Allocates when the table grows (once
 * per segment of the shard's life). NULL: out of memory. */
struct queue_segment *queue_seg_get(struct queue *q, uint32_t seq)
{
	bool found;
	uint32_t i = seg_search(q, seq, &found);
	if (found)
		return &q->seg[i];
	if (q->seg_count == q->seg_cap) {
		uint32_t cap = q->seg_cap ? q->seg_cap * 2 : 16;
		struct queue_segment *grown = realloc(q->seg, (size_t)cap * sizeof(*grown));
		if (grown == NULL)
			return NULL;
		q->seg = grown;
		q->seg_cap = cap;
	}
	memmove(&q->seg[i + 1], &q->seg[i], (size_t)(q->seg_count - i) * sizeof(*q->seg));
	q->seg_count++;
	struct queue_segment *s = &q->seg[i];
	memset(s, 0, sizeof(*s));
	s->seq = seq;
	s->fd = -1;
	return s;
}

/* ---- the queue id index ----
 *
 * A queue id names its segment and offset, and records are queued in
 * commit order, so each segment keeps a sorted list of {id, message} that
 * queue_add only appends to (sequential memory, amortised O(1), no
 * hashing). A freed message leaves its entry with msg NULL (the list keeps
 * its order for the binary search); the list goes with its segment
 * (queue_reclaimed). Lookups (operator requests, msg_free) cost a search
 * over the segments and one within the segment. */

/* Index in s->ids of queue_id, or where it would go (*found false). */
static uint32_t ids_search(const struct queue_segment *s, uint64_t queue_id, bool *found)
{
	uint32_t lo = 0, hi = s->ids_len;
	/* The common case: the newest record of the segment. */
	if (hi > 0 && s->ids[hi - 1].queue_id < queue_id) {
		*found = false;
		return hi;
	}
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->ids[mid].queue_id < queue_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < s->ids_len && s->ids[lo].queue_id == queue_id;
	return lo;
}

/* Room for one more entry in s->ids: 0 or -ENOMEM. */
static int ids_reserve(struct queue_segment *s)
{
	if (s->ids_len < s->ids_cap)
		return 0;
	if (s->ids_cap > UINT32_MAX / 2)
		return -ENOMEM;
	uint32_t cap = s->ids_cap ? s->ids_cap * 2 : 64;
	struct id_slot *grown = realloc(s->ids, (size_t)cap * sizeof(*grown));
	if (grown == NULL)
		return -ENOMEM;
	s->ids = grown;
	s->ids_cap = cap;
	return 0;
}

/* Drops the freed entries of s->ids once they are three quarters of it
 * (amortised O(1) per free) and gives memory back, so that a segment kept
 * by a few deferred messages does not hold an entry per record. */
static void ids_compact(struct queue_segment *s)
{
	if (s->ids_len < 64 || (uint64_t)s->live_msgs * 4 >= s->ids_len)
		return;
	uint32_t kept = 0;
	for (uint32_t i = 0; i < s->ids_len; i++)
		if (s->ids[i].msg != NULL)
			s->ids[kept++] = s->ids[i];
	RMX_ASSERT(kept == s->live_msgs);
	s->ids_len = kept;
	uint32_t cap = RMX_MAX(64u, kept * 2);
	struct id_slot *shrunk = realloc(s->ids, (size_t)cap * sizeof(*shrunk));
	if (shrunk != NULL) {
		s->ids = shrunk;
		s->ids_cap = cap;
	}
}

/* The message of queue_id held by q, or NULL. */
struct queue_msg *queue_ids_find(struct queue *q, uint64_t queue_id)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(queue_id, &worker, &seq, &offset);
	if (worker != q->worker)
		return NULL;
	const struct queue_segment *s = queue_seg_find(q, seq);
	if (s == NULL)
		return NULL;
	bool found;
	uint32_t i = ids_search(s, queue_id, &found);
	return found ? s->ids[i].msg : NULL;
}

/* ---- messages ---- */

void queue_msg_free(struct queue *q, struct queue_msg *m)
{
	RMX_ASSERT(m->pending == 0 && m->due == 0);
	RMX_ASSERT(!m->queued);
	struct queue_segment *s = queue_seg_find(q, m->seq);
	RMX_ASSERT(s != NULL && s->live_msgs > 0);
	s->live_msgs--;
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		q->all = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	else
		q->all_tail = m->prev;
	if (m->in_flight)
		q->messages_in_flight--;
	q->messages--;
	bool found;
	uint32_t i = ids_search(s, m->queue_id, &found);
	RMX_ASSERT(found && s->ids[i].msg == m);
	s->ids[i].msg = NULL;
	ids_compact(s);
	free(m);
}

/* Moves a PENDING or *_DUE recipient on, keeping m->pending and m->due. */
void queue_rcpt_set(struct queue_msg *m, uint32_t rcpt, enum queue_rcpt_state to)
{
	enum queue_rcpt_state from = m->rcpt_state[rcpt];
	bool from_due = from == QUEUE_RCPT_BOUNCE_DUE || from == QUEUE_RCPT_EXPIRE_DUE;
	bool to_due = to == QUEUE_RCPT_BOUNCE_DUE || to == QUEUE_RCPT_EXPIRE_DUE;
	RMX_ASSERT(from == QUEUE_RCPT_PENDING || from_due);
	RMX_ASSERT(to != QUEUE_RCPT_PENDING);
	if (from == QUEUE_RCPT_PENDING)
		m->pending--;
	else
		m->due--;
	if (to_due)
		m->due++;
	m->rcpt_state[rcpt] = (uint8_t)to;
}

/* The delay before attempt number attempts + 1: retry_min doubled per
 * finished attempt past the first, capped at retry_max, then +-20%. */
static int64_t retry_delay_ms(struct queue *q, uint16_t attempts)
{
	int64_t delay = q->retry_min_ms;
	for (uint16_t i = 1; i < attempts && delay < q->retry_max_ms; i++)
		delay *= 2;
	delay = RMX_MIN(delay, q->retry_max_ms);
	int64_t spread = delay / 5;
	if (spread > 0) {
		uint64_t r = rng_next(q) % (uint64_t)(2 * spread + 1);
		delay += (int64_t)r - spread;
	}
	RMX_ASSERT(delay > 0);
	return delay;
}

static int64_t expiry_unix_ms(const struct queue *q, const struct queue_msg *m)
{
	return add_sat(m->arrival_unix_ms, q->max_lifetime_ms);
}

/* Ends an attempt with no *_DUE recipient left: frees m or requeues it. */
static enum queue_attempt_result finish_attempt(struct queue *q, struct queue_msg *m,
						int64_t now_unix_ms)
{
	RMX_ASSERT(m->in_flight && m->due == 0);
	if (m->pending == 0) {
		queue_msg_free(q, m);
		return QUEUE_ATTEMPT_DONE;
	}
	int64_t next = add_sat(now_unix_ms, retry_delay_ms(q, m->attempts));
	int64_t expiry = expiry_unix_ms(q, m);
	if (next > expiry && expiry > now_unix_ms)
		next = expiry;
	m->next_attempt_unix_ms = next;
	m->in_flight = false;
	q->messages_in_flight--;
	q->deferred++;
	queue_log_entry(q, m, DELIVERY_LOG_DEFERRED, DELIVERY_LOG_RCPT_ALL, m->attempts, next,
			m->last_reply_code, m->last_enhanced);
	queue_heap_push(q, m);
	return QUEUE_ATTEMPT_RETRY;
}

/* ---- public hot path ---- */

static bool timing_valid(int64_t retry_min_ms, int64_t retry_max_ms, int64_t max_lifetime_ms)
{
	return retry_min_ms > 0 && retry_max_ms >= retry_min_ms &&
	       retry_max_ms <= QUEUE_RETRY_MAX_LIMIT_MS && max_lifetime_ms > 0 &&
	       max_lifetime_ms <= QUEUE_LIFETIME_LIMIT_MS;
}

int queue_set_timing(struct queue *q, int64_t retry_min_ms, int64_t retry_max_ms,
		     int64_t max_lifetime_ms)
{
	if (!timing_valid(retry_min_ms, retry_max_ms, max_lifetime_ms))
		return -EINVAL;
	q->retry_min_ms = retry_min_ms;
	q->retry_max_ms = retry_max_ms;
	q->max_lifetime_ms = max_lifetime_ms;
	return 0;
}

int queue_new(const struct queue_config *cfg, struct queue **out)
{
	*out = NULL;
	if (cfg->worker >= WORKERS_MAX ||
	    !timing_valid(cfg->retry_min_ms, cfg->retry_max_ms, cfg->max_lifetime_ms))
		return -EINVAL;
	struct queue *q = calloc(1, sizeof(*q));
	if (q == NULL)
		return -ENOMEM;
	q->worker = cfg->worker;
	q->retry_min_ms = cfg->retry_min_ms;
	q->retry_max_ms = cfg->retry_max_ms;
	q->max_lifetime_ms = cfg->max_lifetime_ms;
	q->fsync = cfg->fsync;
	q->rng = cfg->jitter_seed ? cfg->jitter_seed : QUEUE_JITTER_SEED_DEFAULT;
	q->waiting = calloc(QUEUE_PENDING_ENTRIES_MAX, sizeof(*q->waiting));
	q->flight = calloc(QUEUE_PENDING_ENTRIES_MAX, DELIVERY_LOG_ENTRY_BYTES);
	if (q->waiting == NULL || q->flight == NULL) {
		queue_close(q);
		return -ENOMEM;
	}
	*out = q;
	return 0;
}

void queue_close(struct queue *q)
{
	if (q == NULL)
		return;
	RMX_ASSERT(!q->in_flight); /* core/ is still writing from q->flight */
	while (q->all != NULL) {
		struct queue_msg *next = q->all->next;
		free(q->all);
		q->all = next;
	}
	free(q->heap);
	for (uint32_t i = 0; i < q->seg_count; i++) {
		if (q->seg[i].fd >= 0)
			close(q->seg[i].fd);
		free(q->seg[i].ids);
	}
	free(q->seg);
	free(q->waiting);
	free(q->flight);
	free(q);
}

/* Inserts a message built by the caller (queue_add, recovery). */
static int msg_insert(struct queue *q, struct queue_msg *m)
{
	int rc = queue_heap_reserve(q, q->messages + 1);
	if (rc != 0)
		return rc;
	struct queue_segment *s = queue_seg_get(q, m->seq);
	if (s == NULL || ids_reserve(s) != 0)
		return -ENOMEM;
	bool found;
	uint32_t at = ids_search(s, m->queue_id, &found);
	if (found && s->ids[at].msg != NULL)
		return -EINVAL; /* a record is queued once */
	if (!found) {
		/* Commit order makes this an append; anything else still works. */
		memmove(&s->ids[at + 1], &s->ids[at], (size_t)(s->ids_len - at) * sizeof(*s->ids));
		s->ids_len++;
	}
	s->ids[at] = (struct id_slot){ m->queue_id, m };
	s->live_msgs++;
	q->messages++;
	m->prev = NULL;
	m->next = q->all;
	if (q->all != NULL)
		q->all->prev = m;
	else
		q->all_tail = m;
	q->all = m;
	if (m->seq > q->sealed_below)
		q->sealed_below = m->seq;
	queue_heap_push(q, m);
	return 0;
}

static struct queue_msg *msg_alloc(uint64_t queue_id, uint64_t padded_bytes, uint32_t rcpt_count,
				   int64_t arrival_unix_ms)
{
	struct queue_msg *m = calloc(1, sizeof(*m) + rcpt_count);
	if (m == NULL)
		return NULL;
	uint32_t worker;
	uint64_t offset;
	queue_id_split(queue_id, &worker, &m->seq, &offset);
	m->queue_id = queue_id;
	m->padded_bytes = padded_bytes;
	m->arrival_unix_ms = arrival_unix_ms;
	m->rcpt_count = rcpt_count;
	m->pending = rcpt_count;
	return m; /* every recipient QUEUE_RCPT_PENDING (0), not queued */
}

/* Inserts m (built by msg_alloc) and counts its pending recipients; frees
 * it when it cannot be queued. */
static int msg_queue(struct queue *q, struct queue_msg *m)
{
	int rc = msg_insert(q, m);
	if (rc != 0) {
		free(m);
		return rc;
	}
	q->recipients_pending += m->pending;
	return 0;
}

int queue_add(struct queue *q, uint64_t queue_id, uint64_t padded_bytes, uint32_t rcpt_count,
	      int64_t arrival_unix_ms, int64_t now_unix_ms)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(queue_id, &worker, &seq, &offset);
	if (worker != q->worker || seq == 0 || rcpt_count == 0 ||
	    rcpt_count > SMTP_RECIPIENTS_MAX ||
	    padded_bytes < RECORD_HEADER_BYTES || padded_bytes % RECORD_ALIGN_BYTES != 0)
		return -EINVAL;
	struct queue_msg *m = msg_alloc(queue_id, padded_bytes, rcpt_count, arrival_unix_ms);
	if (m == NULL)
		return -ENOMEM;
	m->next_attempt_unix_ms = now_unix_ms;
	return msg_queue(q, m);
}

int queue_restore(struct queue *q, uint64_t queue_id, uint64_t padded_bytes,
		  int64_t arrival_unix_ms, const struct delivery_log_replay_msg *replay,
		  int64_t due_unix_ms)
{
	RMX_ASSERT(replay->pending > 0 && replay->pending <= replay->rcpt_count);
	struct queue_msg *m = msg_alloc(queue_id, padded_bytes, replay->rcpt_count,
					arrival_unix_ms);
	if (m == NULL)
		return -ENOMEM;
	memcpy(m->rcpt_state, replay->rcpt_state, replay->rcpt_count);
	m->pending = replay->pending;
	m->attempts = replay->attempts;
	m->last_reply_code = replay->last_reply_code;
	m->last_enhanced = replay->last_enhanced;
	m->next_attempt_unix_ms = due_unix_ms;
	return msg_queue(q, m);
}

int64_t queue_next_due_time(const struct queue *q)
{
	return q->heap_len ? q->heap[0].due_unix_ms : INT64_MAX;
}

struct queue_msg *queue_next_due(struct queue *q, int64_t now_unix_ms)
{
	if (q->heap_len == 0 || q->heap[0].due_unix_ms > now_unix_ms)
		return NULL;
	struct queue_msg *m = queue_heap_pop(q);
	RMX_ASSERT(!m->in_flight && m->pending > 0 && m->due == 0);
	m->in_flight = true;
	m->attempt_logged = false;
	q->messages_in_flight++;
	return m;
}

uint64_t queue_next_due_bytes(const struct queue *q, int64_t now_unix_ms)
{
	if (q->heap_len == 0 || q->heap[0].due_unix_ms > now_unix_ms)
		return 0;
	return q->heap[0].msg->padded_bytes;
}

uint64_t queue_msg_id(const struct queue_msg *m) { return m->queue_id; }
uint64_t queue_msg_padded_bytes(const struct queue_msg *m) { return m->padded_bytes; }
uint32_t queue_msg_rcpt_count(const struct queue_msg *m) { return m->rcpt_count; }
int64_t queue_msg_arrival_unix_ms(const struct queue_msg *m) { return m->arrival_unix_ms; }

int64_t queue_oldest_arrival_unix_ms(const struct queue *q)
{
	return q->all_tail ? q->all_tail->arrival_unix_ms : INT64_MAX;
}
uint16_t queue_msg_attempts(const struct queue_msg *m) { return m->attempts; }
uint16_t queue_msg_last_reply_code(const struct queue_msg *m) { return m->last_reply_code; }
uint16_t queue_msg_last_enhanced(const struct queue_msg *m) { return m->last_enhanced; }

enum queue_rcpt_state queue_msg_rcpt_state(const struct queue_msg *m, uint32_t rcpt)
{
	RMX_ASSERT(rcpt < m->rcpt_count);
	return (enum queue_rcpt_state)m->rcpt_state[rcpt];
}

void queue_outcome(struct queue *q, struct queue_msg *m, uint32_t rcpt,
		   enum queue_outcome outcome, uint16_t code, uint16_t enhanced,
		   int64_t now_unix_ms)
{
	RMX_ASSERT(m->in_flight);
	RMX_ASSERT(rcpt < m->rcpt_count);
	if (code != 0) {
		m->last_reply_code = code;
		m->last_enhanced = enhanced;
	}
	if (m->rcpt_state[rcpt] != QUEUE_RCPT_PENDING)
		return;
	switch (outcome) {
	case QUEUE_OUTCOME_DELIVERED:
		queue_rcpt_set(m, rcpt, QUEUE_RCPT_DELIVERED);
		q->recipients_pending--;
		q->delivered++;
		/* The attempt in progress is number attempts + 1. */
		queue_log_entry(q, m, DELIVERY_LOG_DELIVERED, rcpt,
				m->attempts < UINT16_MAX ? m->attempts + 1 : UINT16_MAX, now_unix_ms,
				code, enhanced);
		m->attempt_logged = true;
		break;
	case QUEUE_OUTCOME_PERMFAIL:
		queue_rcpt_set(m, rcpt, QUEUE_RCPT_BOUNCE_DUE);
		break;
	case QUEUE_OUTCOME_TEMPFAIL:
		break;
	}
}

enum queue_attempt_result queue_attempt_done(struct queue *q, struct queue_msg *m,
					     int64_t now_unix_ms)
{
	RMX_ASSERT(m->in_flight);
	if (m->attempts < UINT16_MAX)
		m->attempts++;
	if (m->pending > 0 && now_unix_ms >= expiry_unix_ms(q, m)) {
		for (uint32_t i = 0; i < m->rcpt_count && m->pending > 0; i++)
			if (m->rcpt_state[i] == QUEUE_RCPT_PENDING)
				queue_rcpt_set(m, i, QUEUE_RCPT_EXPIRE_DUE);
	}
	if (m->due > 0)
		return QUEUE_ATTEMPT_BOUNCE_DUE;
	return finish_attempt(q, m, now_unix_ms);
}

enum queue_attempt_result queue_bounce_done(struct queue *q, struct queue_msg *m,
					    int64_t now_unix_ms)
{
	RMX_ASSERT(m->in_flight);
	for (uint32_t i = 0; i < m->rcpt_count && m->due > 0; i++) {
		enum queue_rcpt_state st = m->rcpt_state[i];
		if (st == QUEUE_RCPT_BOUNCE_DUE) {
			queue_rcpt_set(m, i, QUEUE_RCPT_BOUNCED);
			q->bounced++;
			queue_log_entry(q, m, DELIVERY_LOG_BOUNCED, i, m->attempts, now_unix_ms,
					m->last_reply_code, m->last_enhanced);
		} else if (st == QUEUE_RCPT_EXPIRE_DUE) {
			queue_rcpt_set(m, i, QUEUE_RCPT_EXPIRED);
			q->expired++;
			queue_log_entry(q, m, DELIVERY_LOG_EXPIRED, i, m->attempts, now_unix_ms,
					m->last_reply_code, m->last_enhanced);
		} else {
			continue;
		}
		q->recipients_pending--;
	}
	RMX_ASSERT(m->due == 0);
	return finish_attempt(q, m, now_unix_ms);
}

enum queue_attempt_result queue_bounce_failed(struct queue *q, struct queue_msg *m,
					      int64_t due_unix_ms)
{
	RMX_ASSERT(m->in_flight);
	for (uint32_t i = 0; i < m->rcpt_count && m->due > 0; i++) {
		enum queue_rcpt_state st = m->rcpt_state[i];
		if (st != QUEUE_RCPT_BOUNCE_DUE && st != QUEUE_RCPT_EXPIRE_DUE)
			continue;
		m->rcpt_state[i] = QUEUE_RCPT_PENDING; /* still counted in recipients_pending */
		m->due--;
		m->pending++;
	}
	RMX_ASSERT(m->due == 0);
	return queue_requeue(q, m, due_unix_ms);
}

void queue_set_aside(struct queue *q, struct queue_msg *m, int64_t now_unix_ms)
{
	RMX_ASSERT(m->in_flight);
	for (uint32_t i = 0; i < m->rcpt_count; i++) {
		enum queue_rcpt_state st = m->rcpt_state[i];
		if (st == QUEUE_RCPT_PENDING || st == QUEUE_RCPT_BOUNCE_DUE ||
		    st == QUEUE_RCPT_EXPIRE_DUE) {
			queue_rcpt_set(m, i, QUEUE_RCPT_SET_ASIDE);
			q->recipients_pending--;
		}
	}
	q->set_aside++;
	queue_log_entry(q, m, DELIVERY_LOG_SET_ASIDE, DELIVERY_LOG_RCPT_ALL, m->attempts, now_unix_ms,
			0, 0);
	queue_msg_free(q, m);
}

enum queue_attempt_result queue_requeue(struct queue *q, struct queue_msg *m,
					int64_t due_unix_ms)
{
	RMX_ASSERT(m->in_flight && m->due == 0);
	if (m->pending == 0) {
		queue_msg_free(q, m);
		return QUEUE_ATTEMPT_DONE;
	}
	/* The log numbered this attempt already: count it, as replay will. */
	if (m->attempt_logged && m->attempts < UINT16_MAX)
		m->attempts++;
	m->next_attempt_unix_ms = due_unix_ms;
	m->in_flight = false;
	q->messages_in_flight--;
	queue_heap_push(q, m);
	return QUEUE_ATTEMPT_RETRY;
}

/* ---- segments and reclamation ---- */

void queue_set_active_segment(struct queue *q, uint32_t seq)
{
	if (seq > q->sealed_below)
		q->sealed_below = seq;
}

bool queue_reclaimable(struct queue *q, uint32_t *seq)
{
	if (q->status != 0)
		return false;
	for (uint32_t i = 0; i < q->seg_count; i++) {
		struct queue_segment *s = &q->seg[i];
		if (s->seq >= q->sealed_below)
			break;
		if (s->live_msgs == 0 && s->unsynced == 0 && !s->log_lost && !s->offered &&
		    s->fd_error == 0) {
			s->offered = true;
			*seq = s->seq;
			return true;
		}
	}
	return false;
}

int queue_reclaimed(struct queue *q, uint32_t seq)
{
	bool found;
	uint32_t i = seg_search(q, seq, &found);
	RMX_ASSERT(found);
	struct queue_segment *s = &q->seg[i];
	RMX_ASSERT(s->offered && s->live_msgs == 0 && s->unsynced == 0);
	int fd = s->fd;
	free(s->ids);
	memmove(&q->seg[i], &q->seg[i + 1], (size_t)(q->seg_count - i - 1) * sizeof(*q->seg));
	q->seg_count--;
	return fd;
}

void queue_get_stats(const struct queue *q, struct queue_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->messages = q->messages;
	out->in_flight = q->messages_in_flight;
	out->recipients_pending = q->recipients_pending;
	out->segments = q->seg_count;
	out->entries_waiting = q->waiting_count;
	out->entries_dropped = q->entries_dropped;
	out->entries_committed = q->entries_committed;
	out->commits = q->commits;
	out->delivered = q->delivered;
	out->bounced = q->bounced;
	out->expired = q->expired;
	out->deferred = q->deferred;
	out->set_aside = q->set_aside;
}

