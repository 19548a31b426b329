/*
 * queue_commit.c - the group commit of the queue's outcome entries to the
 * per-segment delivery logs (see queue_commit.h), and the log fds.
 *
 * Where it sits: outcomes, bounces, deferrals and operator requests make
 * entries (queue_log_entry) that wait in a fixed buffer; core/ takes them
 * out as one commit at a time (queue_commit_plan, performed by core/store_io)
 * and reports the results (queue_commit_advance), which make them durable
 * and let their segments be reclaimed (queue.c).
 *
 * Invariants: at most one commit is in flight; each segment's entries reach
 * its log in the order they were made, at exact offsets; seg->unsynced
 * counts a segment's entries waiting or in flight; after a failed commit
 * nothing more is written in this run. No system call.
 */
#include "queue_state.h"

#include <errno.h>
#include <string.h>

#include "segment.h"

_Static_assert(QUEUE_PENDING_ENTRIES_MAX * DELIVERY_LOG_ENTRY_BYTES <= INT32_MAX,
	       "a commit's byte count fits the result int");

/*
 * Queues one entry for m's segment log. Dropped (and counted) when the
 * queue failed, the segment's log could not be made, or the waiting buffer
 * is full; a dropped final entry keeps its segment from being reclaimed.
 */
void queue_log_entry(struct queue *q, const struct queue_msg *m, enum delivery_log_type type,
		     uint32_t rcpt, uint16_t attempt, int64_t time_unix_ms, uint16_t code,
		     uint16_t enhanced)
{
	struct queue_segment *s = queue_seg_find(q, m->seq);
	RMX_ASSERT(s != NULL);
	bool final = delivery_log_type_is_final(type);
	if (q->status != 0 || s->fd_error != 0 || q->waiting_count == QUEUE_PENDING_ENTRIES_MAX) {
		q->entries_dropped++;
		if (final)
			s->log_lost = true;
		return;
	}
	struct delivery_log_entry e = {
		.type = type,
		.rcpt = rcpt,
		.queue_id = m->queue_id,
		.time_unix_ms = time_unix_ms,
		.attempt = attempt,
		.reply_code = code,
		.enhanced = enhanced,
	};
	struct waiting_entry *w = &q->waiting[q->waiting_count++];
	w->seq = m->seq;
	delivery_log_entry_encode(&e, w->bytes);
	s->unsynced++;
}

/* ---- group commit of log entries ---- */

bool queue_commit_begin(struct queue *q, struct queue_commit *c)
{
	if (q->in_flight || q->status != 0 || q->waiting_count == 0)
		return false;
	memset(c, 0, sizeof(*c));
	/* Pick up to QUEUE_COMMIT_WRITES_MAX segments whose log is ready, in
	 * the order their entries arrived. */
	struct queue_segment *chosen[QUEUE_COMMIT_WRITES_MAX];
	uint32_t nchosen = 0;
	for (uint32_t i = 0; i < q->waiting_count && nchosen < QUEUE_COMMIT_WRITES_MAX; i++) {
		uint32_t seq = q->waiting[i].seq;
		bool seen = false;
		for (uint32_t k = 0; k < nchosen; k++)
			seen = seen || chosen[k]->seq == seq;
		if (seen)
			continue;
		struct queue_segment *s = queue_seg_find(q, seq);
		RMX_ASSERT(s != NULL);
		if (s->fd >= 0)
			chosen[nchosen++] = s;
	}
	if (nchosen == 0)
		return false;

	/* Copy each chosen segment's entries, in order, into the flight buffer;
	 * keep the others waiting, in order. */
	uint32_t used = 0;
	for (uint32_t k = 0; k < nchosen; k++) {
		struct queue_commit_write *w = &c->write[k];
		uint32_t first = used;
		for (uint32_t i = 0; i < q->waiting_count; i++) {
			if (q->waiting[i].seq != chosen[k]->seq)
				continue;
			memcpy(q->flight + (size_t)used * DELIVERY_LOG_ENTRY_BYTES, q->waiting[i].bytes,
			       DELIVERY_LOG_ENTRY_BYTES);
			used++;
		}
		RMX_ASSERT(used > first && used <= QUEUE_PENDING_ENTRIES_MAX);
		w->fd = chosen[k]->fd;
		w->seq = chosen[k]->seq;
		w->offset = chosen[k]->log_bytes;
		w->entries = used - first;
		w->iov.iov_base = q->flight + (size_t)first * DELIVERY_LOG_ENTRY_BYTES;
		w->iov.iov_len = (size_t)w->entries * DELIVERY_LOG_ENTRY_BYTES;
		chosen[k]->log_bytes += w->iov.iov_len;
		q->flight_seq[k] = w->seq;
		q->flight_entries[k] = w->entries;
	}
	uint32_t kept = 0;
	for (uint32_t i = 0; i < q->waiting_count; i++) {
		bool taken = false;
		for (uint32_t k = 0; k < nchosen; k++)
			taken = taken || q->waiting[i].seq == chosen[k]->seq;
		if (!taken)
			q->waiting[kept++] = q->waiting[i];
	}
	RMX_ASSERT(kept + used == q->waiting_count);
	q->waiting_count = kept;
	c->count = nchosen;
	c->sync = q->fsync;
	q->flight_count = nchosen;
	q->in_flight = true;
	return true;
}

void queue_commit_done(struct queue *q, int result)
{
	RMX_ASSERT(q->in_flight);
	q->in_flight = false;
	if (result < 0) {
		/* Never retry-and-pretend: the logs stay as they are on disk
		 * until a restart replays them. Everything not written is lost
		 * for this run and no segment is reclaimed. */
		q->status = result;
		uint64_t lost = q->waiting_count;
		for (uint32_t k = 0; k < q->flight_count; k++)
			lost += q->flight_entries[k];
		q->entries_dropped += lost;
		q->waiting_count = 0;
		q->flight_count = 0;
		return;
	}
	for (uint32_t k = 0; k < q->flight_count; k++) {
		struct queue_segment *s = queue_seg_find(q, q->flight_seq[k]);
		RMX_ASSERT(s != NULL && s->unsynced >= q->flight_entries[k]);
		s->unsynced -= q->flight_entries[k];
		q->entries_committed += q->flight_entries[k];
	}
	q->commits++;
	q->flight_count = 0;
}

_Static_assert(2 * QUEUE_COMMIT_WRITES_MAX <= IO_PLAN_STEPS_MAX,
	       "a commit's writes and syncs are one plan");

bool queue_commit_plan(struct queue *q, struct io_plan *p)
{
	struct queue_commit c;
	if (!queue_commit_begin(q, &c))
		return false;
	io_plan_clear(p);
	for (uint32_t k = 0; k < c.count; k++) {
		struct io_step *s = io_plan_add(p, IO_STEP_WRITE, c.write[k].fd);
		s->buf = c.write[k].iov.iov_base;
		s->len = c.write[k].iov.iov_len;
		s->offset = c.write[k].offset;
		if (c.sync) {
			s->link = true; /* the sync runs only after the whole write */
			(void)io_plan_add(p, IO_STEP_FDATASYNC, c.write[k].fd);
		}
	}
	p->pending = p->count;
	return true;
}

int queue_commit_advance(struct queue *q, const struct io_plan *p)
{
	RMX_ASSERT(p->pending == 0 && p->count >= 1);
	int result = 0;
	for (uint32_t i = 0; i < p->count && result == 0; i++)
		result = io_step_outcome(&p->step[i], p->result[i]);
	queue_commit_done(q, result);
	return result;
}

bool queue_commit_busy(const struct queue *q)
{
	return q->in_flight || (q->status == 0 && q->waiting_count > 0);
}

int queue_status(const struct queue *q)
{
	return q->status;
}

/* ---- the log fds ---- */

/* The entry of segment seq, which has no log yet: 0 and *out, -ENOMEM, or
 * -EEXIST when its log was handed over (or failed) already. */
static int seg_without_log(struct queue *q, uint32_t seq, struct queue_segment **out)
{
	RMX_ASSERT(seq >= 1 && seq <= SEGMENT_SEQ_MAX);
	struct queue_segment *s = queue_seg_get(q, seq);
	if (s == NULL)
		return -ENOMEM;
	if (s->fd >= 0 || s->fd_error != 0)
		return -EEXIST;
	*out = s;
	return 0;
}

int queue_log_resume(struct queue *q, uint32_t seq, int fd, uint64_t log_bytes)
{
	RMX_ASSERT(fd >= 0);
	struct queue_segment *s;
	int rc = seg_without_log(q, seq, &s);
	if (rc != 0)
		return rc;
	s->fd = fd;
	s->log_bytes = log_bytes;
	return 0;
}

int queue_dlog_ready(struct queue *q, uint32_t seq, int fd)
{
	if (fd >= 0) /* -EEXIST: queue_open holds it already (a spare made at start-up) */
		return queue_log_resume(q, seq, fd, 0);
	struct queue_segment *s;
	int rc = seg_without_log(q, seq, &s);
	if (rc != 0)
		return rc;
	/* core/ could not make the log. */
	s->fd_error = fd;
	s->log_lost = s->log_lost || s->unsynced > 0;
	/* Entries already waiting for it can never be written. */
	uint32_t kept = 0;
	for (uint32_t i = 0; i < q->waiting_count; i++) {
		if (q->waiting[i].seq == seq)
			q->entries_dropped++;
		else
			q->waiting[kept++] = q->waiting[i];
	}
	q->waiting_count = kept;
	s->unsynced = 0;
	return 0;
}

