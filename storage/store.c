/*
 * store.c - one worker's shard of the segment store (see store.h).
 *
 * Where it sits: core/smtp_conn finishes a message, core/ seals its record and
 * calls store_reserve() + store_append(); the worker loop asks
 * store_commit_plan() for the next group commit (pwritev linked to
 * fdatasync), core/store_io performs it, and store_commit_advance() reports
 * the results through store_commit_done(), which releases the "250 queued
 * as ID" replies of every record in the batch.
 *
 * Batches: a ring of STORE_BATCH_SLOTS batches, oldest first. The oldest may
 * be in flight; the newest accepts records while it has room (records,
 * iovecs) and lies in the active segment right after the previous record.
 * Otherwise a reservation opens a new batch, so a full batch never loses a
 * record; only a full ring answers -EAGAIN. A batch covers one contiguous
 * byte range of one segment, so it is exactly one pwritev.
 *
 * Direct commits (O_DIRECT fds, chosen at start-up): a new batch starts on
 * a SEGMENT_BLOCK_BYTES boundary, and its write is the batch copied into
 * the store's aligned buffer and padded with zeros to the next boundary:
 * one write with RWF_DSYNC, which lands on blocks the segment's zero-fill
 * already wrote, so the file system issues it without blocking and with no
 * metadata to journal. The padding is per batch, not per record (the
 * scanner steps over it, segment.h), and a write never covers a block an
 * earlier commit wrote, so an acknowledged record is never rewritten.
 *
 * Commits in flight: up to commits_in_flight batches are handed out at
 * once, always the oldest ones, all in one segment (a batch in the next
 * segment waits until the earlier segment's commits are back). Their results
 * may come back in any order; a batch is acknowledged only when it and
 * every older batch are durable, so after a crash no acknowledged record
 * lies behind a torn one. A direct commit has an aligned buffer of its own.
 *
 * Invariants: the batches handed out are the oldest handed_out ones. A batch
 * holding the outstanding reservation is never handed out before its
 * append. Offsets handed out only grow within a segment, start after its
 * header block, and the queue id of a reservation is the id sealed into the
 * record appended for it (asserted). After a failed write or sync the shard
 * is failed for good: every queued record is answered -EIO and nothing new
 * is taken.
 *
 * Salts: each segment in use has a random salt, kept in a table sorted by
 * sequence (filled at recovery, extended when the spare becomes active,
 * shrunk when core/ removes a segment). A batch writes its own copies of its
 * records' headers, with the CRC record_seal() computed salted for the
 * batch's segment; the forwarder checks what it reads back through
 * store_record_check(). The table grows only at start-up and when a spare
 * is handed over, never when a record is reserved.
 *
 * Start-up (store_open, the recovery scan, quarantine) is store_recover.c,
 * which fills the state (store_state.h) this file runs on. Only
 * store_close() touches the file system here; the hot-path functions make
 * no system calls (retired segment fds are handed to core/ through
 * store_retired_fd()).
 */
#include "store.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "segment.h"
#include "store_state.h"

_Static_assert(COMMIT_IOV_MAX >= STORE_APPEND_PARTS_MAX, "one record fits a batch");
_Static_assert(STORE_BATCH_BYTES_MAX < STORE_RECORD_MAX_BYTES, "a batch is one write");
_Static_assert(STORE_RECORD_MAX_BYTES <= INT32_MAX, "commit results are ints");
_Static_assert(WORKERS_MAX <= 256, "the queue id holds the worker in 8 bits");
_Static_assert(SEGMENT_SIZE_MAX_BYTES / RECORD_ALIGN_BYTES <= (1ull << 32),
	       "the queue id holds offset/8 in 32 bits");
_Static_assert(SEGMENT_SIZE_MIN_BYTES > SEGMENT_HEADER_BYTES, "a segment has room for records");
_Static_assert(SEGMENT_BLOCK_BYTES % RECORD_ALIGN_BYTES == 0, "a block boundary is a record's");

const char *store_io_mode_name(enum store_io_mode mode)
{
	switch (mode) {
	case STORE_IO_BUFFERED:
		return "buffered";
	case STORE_IO_DIRECT:
		return "direct";
	case STORE_IO_AUTO:
		return "auto";
	}
	return "unknown";
}

static uint64_t block_round_up(uint64_t n)
{
	return (n + SEGMENT_BLOCK_BYTES - 1) / SEGMENT_BLOCK_BYTES * SEGMENT_BLOCK_BYTES;
}

int store_salt_reserve(struct store *st, uint32_t more)
{
	if (more <= st->salt_cap - st->salt_count)
		return 0;
	if (more > UINT32_MAX / 2 - st->salt_count)
		return -ENOMEM;
	uint32_t cap = RMX_MAX(st->salt_count + more, st->salt_cap ? st->salt_cap * 2 : 64u);
	struct segment_salt *grown = realloc(st->salts, cap * sizeof(*grown));
	if (grown == NULL)
		return -ENOMEM;
	st->salts = grown;
	st->salt_cap = cap;
	return 0;
}

void store_salt_put(struct store *st, uint32_t seq, uint64_t salt)
{
	RMX_ASSERT(st->salt_count < st->salt_cap);
	RMX_ASSERT(st->salt_count == 0 || st->salts[st->salt_count - 1].seq < seq);
	st->salts[st->salt_count++] = (struct segment_salt){ seq, salt };
}

/* Index of seq in the table, or salt_count. */
static uint32_t salt_index(const struct store *st, uint32_t seq)
{
	uint32_t lo = 0, hi = st->salt_count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (st->salts[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < st->salt_count && st->salts[lo].seq == seq ? lo : st->salt_count;
}

static struct store_batch *batch_at(struct store *st, uint32_t i)
{
	RMX_ASSERT(i < st->batch_count);
	return &st->batch[(st->batch_head + i) % STORE_BATCH_SLOTS];
}

static bool batches_use_seq(struct store *st, uint32_t seq)
{
	for (uint32_t i = 0; i < st->batch_count; i++)
		if (batch_at(st, i)->seq == seq)
			return true;
	return false;
}

/* A sealed segment with nothing left to write: its fd goes to core/ to
 * close. Only when core/ does not collect them does the store close one
 * itself (a rare, cheap close of a regular file). */
static void retire_fd(struct store *st, int fd)
{
	RMX_ASSERT(fd >= 0 && fd != st->active_fd && fd != st->spare_fd);
	if (st->retired_count < STORE_RETIRED_FDS_MAX)
		st->retired_fd[st->retired_count++] = fd;
	else
		close(fd);
}

static void batch_pop(struct store *st)
{
	RMX_ASSERT(st->batch_count > 0);
	struct store_batch *b = batch_at(st, 0);
	uint32_t seq = b->seq;
	int fd = b->fd;
	b->records = 0;
	b->iovcnt = 0;
	b->bytes = 0;
	b->in_flight = false;
	b->finished = false;
	b->pending_append = false;
	st->batch_head = (st->batch_head + 1) % STORE_BATCH_SLOTS;
	st->batch_count--;
	if (seq != st->active_seq && !batches_use_seq(st, seq))
		retire_fd(st, fd);
}

int store_admit(const struct store *st)
{
	if (st->leftover)
		return -EROFS;
	if (st->failed)
		return -EIO;
	if ((uint64_t)st->segments_in_use * st->segment_size_bytes >= st->store_max_bytes)
		return -ENOSPC;
	/* Sealed, no spare, and the last attempt to make one failed. */
	if (st->active_sealed && st->spare_fd < 0 && st->spare_error != 0)
		return -ENOSPC;
	return 0;
}

/* The active segment cannot take the next record: the spare takes over.
 * Without one, the record waits for it (-EAGAIN) while one is on its way;
 * when the last attempt failed (a full disk) it is refused (-ENOSPC), as
 * store_admit refuses new transactions then: a waiting message would hold
 * its client without an answer until the file system has room again. */
static int roll_to_spare(struct store *st)
{
	st->active_sealed = true;
	if (st->spare_fd < 0)
		return st->spare_error != 0 ? -ENOSPC : -EAGAIN;
	if (!batches_use_seq(st, st->active_seq)) {
		int old = st->active_fd;
		st->active_fd = -1;
		retire_fd(st, old);
	}
	st->active_seq = st->spare_seq;
	st->active_salt = st->spare_salt;
	st->active_fd = st->spare_fd;
	st->active_direct = st->spare_direct;
	st->active_size_bytes = st->segment_size_bytes;
	st->active_tail = SEGMENT_HEADER_BYTES;
	st->active_sealed = false;
	st->spare_fd = -1;
	st->segments_in_use++;
	store_salt_put(st, st->active_seq, st->active_salt); /* room reserved with the spare */
	return 0;
}

/* The newest batch, if the next record of padded_bytes may join it: not in
 * flight, in the active segment, ending at its tail, with room left. */
static struct store_batch *joinable_batch(struct store *st, uint64_t padded_bytes)
{
	if (st->batch_count == 0)
		return NULL;
	if (st->batch_count == st->handed_out)
		return NULL; /* the newest batch is being written */
	struct store_batch *last = batch_at(st, st->batch_count - 1);
	if (last->seq == st->active_seq &&
	    last->offset + last->bytes == st->active_tail &&
	    padded_bytes <= st->active_size_bytes - st->active_tail &&
	    last->bytes + padded_bytes <= STORE_BATCH_BYTES_MAX &&
	    last->records < COMMIT_BATCH_RECORDS_MAX &&
	    last->iovcnt + STORE_APPEND_PARTS_MAX <= COMMIT_IOV_MAX)
		return last;
	return NULL;
}

int store_reserve(struct store *st, uint64_t padded_bytes, uint64_t *queue_id)
{
	RMX_ASSERT(!st->reserved);
	if (st->leftover)
		return -EROFS;
	if (st->failed)
		return -EIO;
	if (padded_bytes < RECORD_HEADER_BYTES || padded_bytes % RECORD_ALIGN_BYTES != 0)
		return -EINVAL;
	if (padded_bytes > st->segment_size_bytes - SEGMENT_HEADER_BYTES ||
	    padded_bytes > STORE_RECORD_MAX_BYTES)
		return -E2BIG;
	struct store_batch *b = st->active_sealed ? NULL : joinable_batch(st, padded_bytes);
	/* A new batch of a direct store starts on a block boundary. */
	uint64_t at = b != NULL || !st->active_direct ? st->active_tail
						      : block_round_up(st->active_tail);
	if (st->active_sealed || at > st->active_size_bytes ||
	    padded_bytes > st->active_size_bytes - at) {
		int rc = roll_to_spare(st);
		if (rc != 0)
			return rc;
		b = NULL;
		at = st->active_tail; /* a segment's first record is on a block boundary */
	}
	RMX_ASSERT(at <= st->active_size_bytes && padded_bytes <= st->active_size_bytes - at);

	if (b == NULL) {
		if (st->batch_count == STORE_BATCH_SLOTS)
			return -EAGAIN;
		st->active_tail = at;
		st->batch_count++;
		b = batch_at(st, st->batch_count - 1);
		b->seq = st->active_seq;
		b->salt = st->active_salt;
		b->fd = st->active_fd;
		b->direct = st->active_direct;
		b->offset = st->active_tail;
		b->bytes = 0;
		b->records = 0;
		b->iovcnt = 0;
		b->in_flight = false;
		b->finished = false;
		RMX_ASSERT(!b->direct || b->offset % SEGMENT_BLOCK_BYTES == 0);
	}
	b->pending_append = true;
	b->bytes += padded_bytes;
	b->records++;

	*queue_id = queue_id_make(st->worker, st->active_seq, st->active_tail);
	st->active_tail += padded_bytes;
	st->reserved = true;
	st->reserved_id = *queue_id;
	st->reserved_bytes = padded_bytes;
	st->reserved_slot = (uint32_t)(b - st->batch);
	return 0;
}

int store_append(struct store *st, uint64_t queue_id, const struct iovec *parts, int nparts,
		 uint64_t cookie)
{
	if (st->failed) {
		/* The failure answered every queued record; this one never was. */
		st->reserved = false;
		return -EIO;
	}
	RMX_ASSERT(st->reserved && queue_id == st->reserved_id);
	RMX_ASSERT(nparts >= 1 && nparts <= STORE_APPEND_PARTS_MAX);

	uint64_t total = 0;
	for (int i = 0; i < nparts; i++)
		total += parts[i].iov_len;
	RMX_ASSERT(total == st->reserved_bytes);
	struct store_batch *b = &st->batch[st->reserved_slot];
	RMX_ASSERT(b->pending_append && !b->in_flight && b->records > 0);

	/* The pair of the reservation: the sealed header names the same place. */
	RMX_ASSERT(parts[0].iov_len == RECORD_HEADER_BYTES);
	struct record_header *h = &b->header[b->records - 1];
	memcpy(h, parts[0].iov_base, sizeof(*h));
	RMX_ASSERT(h->magic == RECORD_MAGIC && h->version == RECORD_VERSION &&
		   h->queue_id == queue_id);
	RMX_ASSERT(h->length + record_padding(h->length) == total);
	/* The record's own CRC becomes its CRC in this segment. */
	h->crc32c = record_crc_salted(h->crc32c, b->salt);

	RMX_ASSERT(b->iovcnt < COMMIT_IOV_MAX);
	b->iov[b->iovcnt++] = (struct iovec){ h, RECORD_HEADER_BYTES };
	for (int i = 1; i < nparts; i++) {
		if (parts[i].iov_len == 0)
			continue;
		RMX_ASSERT(b->iovcnt < COMMIT_IOV_MAX);
		b->iov[b->iovcnt++] = parts[i];
	}
	b->cookie[b->records - 1] = cookie;
	b->pending_append = false;
	st->reserved = false;
	return 0;
}

/* The next batch to hand out, if one may go now: under the limit of commits
 * in flight, fully appended, and in the same segment as those in flight (a
 * write into a later segment then still means every write into the earlier
 * one had completed: recovery's proof that damage there is not a torn
 * write). */
static struct store_batch *next_commit(struct store *st)
{
	if (st->failed || st->in_flight >= st->commits_in_flight_max ||
	    st->handed_out == st->batch_count)
		return NULL;
	struct store_batch *b = batch_at(st, st->handed_out);
	if (b->pending_append || b->records == 0)
		return NULL;
	if (st->handed_out > 0 && batch_at(st, 0)->seq != b->seq)
		return NULL;
	return b;
}

bool store_commit_begin(struct store *st, struct store_commit *c)
{
	struct store_batch *b = next_commit(st);
	if (b == NULL)
		return false;
	uint64_t sum = 0;
	for (int i = 0; i < b->iovcnt; i++)
		sum += b->iov[i].iov_len;
	RMX_ASSERT(sum == b->bytes);
	RMX_ASSERT(b->seq != st->active_seq || b->offset + b->bytes <= st->active_size_bytes);

	b->in_flight = true;
	b->ticket = ++st->next_ticket;
	st->handed_out++;
	st->in_flight++;
	c->direct = b->direct;
	c->fd = b->fd;
	c->offset = b->offset;
	c->iov = b->iov;
	c->iovcnt = b->iovcnt;
	c->bytes = b->bytes;
	c->sync = st->fsync;
	c->records = b->records;
	c->ticket = b->ticket;
	return true;
}

/* Answers every record of the oldest batch with result and drops it. */
static void batch_answer(struct store *st, int result,
			 void (*done)(void *ctx, uint64_t cookie, int result), void *ctx)
{
	struct store_batch *b = batch_at(st, 0);
	uint64_t cookies[COMMIT_BATCH_RECORDS_MAX];
	/* A reservation not yet appended has no cookie: its append fails. */
	uint32_t n = b->records - (b->pending_append ? 1 : 0);
	memcpy(cookies, b->cookie, n * sizeof(cookies[0]));
	batch_pop(st);
	if (result == 0) {
		st->records_committed += n;
		st->commits++;
	}
	for (uint32_t i = 0; i < n; i++)
		done(ctx, cookies[i], result);
}

void store_commit_finish(struct store *st, uint64_t ticket, int result,
			 void (*done)(void *ctx, uint64_t cookie, int result), void *ctx)
{
	uint32_t i = 0;
	while (i < st->handed_out && batch_at(st, i)->ticket != ticket)
		i++;
	if (i == st->handed_out) {
		/* A failure answered its records already. */
		RMX_ASSERT(st->failed && st->orphans > 0);
		st->orphans--;
		return;
	}
	struct store_batch *b = batch_at(st, i);
	RMX_ASSERT(b->in_flight && !b->finished);
	b->in_flight = false;
	b->finished = true;
	st->in_flight--;
	if (b->direct)
		st->bounce_free |= 1u << b->bounce_slot;
	/* A short write is a failed write: the tail of the batch is not there. */
	bool ok = result == 0 || (result > 0 && (uint64_t)result == b->bytes);
	if (!ok) {
		/* Nothing after a failure is acknowledged, not even a batch whose
		 * own write completed: the shard is failed for good. Commits still
		 * in flight report later, to nobody. */
		st->failed = true;
		st->orphans += st->in_flight;
		st->in_flight = 0;
		st->handed_out = 0;
		while (st->batch_count > 0)
			batch_answer(st, -EIO, done, ctx);
		return;
	}
	/* In order: a batch is acknowledged once it and every older one are
	 * durable, so an acknowledged record never follows a torn one. */
	while (st->handed_out > 0 && batch_at(st, 0)->finished) {
		st->handed_out--;
		batch_answer(st, 0, done, ctx);
	}
}

void store_commit_done(struct store *st, int result,
		       void (*done)(void *ctx, uint64_t cookie, int result), void *ctx)
{
	RMX_ASSERT(st->in_flight > 0 && st->batch_count > 0);
	uint32_t i = 0;
	while (!batch_at(st, i)->in_flight)
		i++;
	store_commit_finish(st, batch_at(st, i)->ticket, result, done, ctx);
}

/* The direct commit: the batch gathered into an aligned buffer of its own,
 * zeros to the block boundary, one write (RWF_DSYNC when syncing: durable
 * when it completes, on blocks that are already allocated and written). */
static void direct_plan(struct store *st, const struct store_commit *c, struct io_plan *p)
{
	struct store_batch *b = batch_at(st, st->handed_out - 1);
	RMX_ASSERT(b->ticket == c->ticket && st->bounce_free != 0);
	b->bounce_slot = (uint32_t)__builtin_ctz(st->bounce_free);
	st->bounce_free &= ~(1u << b->bounce_slot);
	uint8_t *bounce = st->bounce + (uint64_t)b->bounce_slot * st->bounce_bytes;
	uint64_t len = block_round_up(c->bytes);
	RMX_ASSERT(st->bounce != NULL && len <= st->bounce_bytes);
	RMX_ASSERT(c->offset % SEGMENT_BLOCK_BYTES == 0);
	uint64_t at = 0;
	for (int i = 0; i < c->iovcnt; i++) {
		memcpy(bounce + at, c->iov[i].iov_base, c->iov[i].iov_len);
		at += c->iov[i].iov_len;
	}
	RMX_ASSERT(at == c->bytes);
	memset(bounce + at, 0, len - at);
	struct io_step *s = io_plan_add(p, IO_STEP_WRITE, c->fd);
	s->buf = bounce;
	s->len = len;
	s->offset = c->offset;
	s->flags = c->sync ? RWF_DSYNC : 0;
	p->pending = p->count;
}

bool store_commit_plan(struct store *st, struct io_plan *p, uint32_t *records)
{
	struct store_commit c;
	if (!store_commit_begin(st, &c))
		return false;
	io_plan_clear(p);
	p->ticket = c.ticket;
	if (c.direct) {
		direct_plan(st, &c, p);
		*records = c.records;
		return true;
	}
	struct io_step *s = io_plan_add(p, IO_STEP_WRITEV, c.fd);
	s->iov = c.iov;
	s->iovcnt = c.iovcnt;
	s->len = c.bytes;
	s->offset = c.offset;
	if (c.sync) {
		s->link = true; /* never acknowledge a batch whose write did not complete */
		(void)io_plan_add(p, IO_STEP_FDATASYNC, c.fd);
	}
	p->pending = p->count;
	*records = c.records;
	return true;
}

int store_commit_advance(struct store *st, const struct io_plan *p,
			 void (*done)(void *ctx, uint64_t cookie, int result), void *ctx)
{
	RMX_ASSERT(p->pending == 0 && p->count >= 1 &&
		   (p->step[0].op == IO_STEP_WRITEV || p->step[0].op == IO_STEP_WRITE));
	/* A short write into a pre-zeroed segment is a failure: the tail of
	 * the batch is not there. The write's error is the cause of a broken
	 * link's -ECANCELED. */
	int result = io_step_outcome(&p->step[0], p->result[0]);
	if (result == 0 && p->count > 1)
		result = io_step_outcome(&p->step[1], p->result[1]);
	store_commit_finish(st, p->ticket, result, done, ctx);
	return result;
}

bool store_busy(const struct store *st)
{
	return st->in_flight > 0 || st->orphans > 0 || st->batch_count > 0;
}

bool store_spare_wanted(struct store *st, uint64_t now_ms, const char **path, uint32_t *seq)
{
	if (st->leftover || st->failed || st->spare_fd >= 0 || st->spare_requested)
		return false;
	if (st->spare_error != 0) {
		/* Backoff: a failing file system is not asked again every turn. */
		if (!st->spare_retry_armed) {
			st->spare_retry_at_ms = now_ms + st->spare_backoff_ms;
			st->spare_retry_armed = true;
		}
		if (now_ms < st->spare_retry_at_ms)
			return false;
		st->spare_retry_armed = false;
	}
	if (st->active_seq >= SEGMENT_SEQ_MAX)
		return false;
	uint32_t next = st->active_seq + 1;
	int n = snprintf(st->spare_path, sizeof(st->spare_path), "%s/w%u/%08u.seg", st->data_dir,
			 (unsigned)st->worker, (unsigned)next);
	if (n < 0 || (size_t)n >= sizeof(st->spare_path))
		return false; /* store_open checked that the longest path fits */
	st->spare_requested = true;
	st->spare_header_made = false;
	st->spare_seq = next;
	*path = st->spare_path;
	*seq = next;
	return true;
}

void store_spare_header(struct store *st, uint64_t salt, uint8_t block[SEGMENT_HEADER_BYTES])
{
	RMX_ASSERT(st->spare_requested && st->spare_fd < 0);
	segment_header_encode(block, st->worker, st->spare_seq, salt);
	st->spare_salt = salt;
	st->spare_header_made = true;
}

static void spare_ready(struct store *st, uint32_t seq, int fd, bool direct);

void store_spare_ready(struct store *st, uint32_t seq, int fd)
{
	spare_ready(st, seq, fd, false);
}

void store_spare_ready_direct(struct store *st, uint32_t seq, int fd)
{
	spare_ready(st, seq, fd, fd >= 0);
}

bool store_commits_direct(const struct store *st)
{
	return st->direct;
}

static void spare_ready(struct store *st, uint32_t seq, int fd, bool direct)
{
	RMX_ASSERT(st->spare_requested && seq == st->spare_seq && st->spare_fd < 0);
	st->spare_requested = false;
	if (fd < 0) {
		st->spare_error = fd;
		st->spare_backoff_ms = st->spare_backoff_ms == 0
					       ? STORE_SPARE_RETRY_MIN_MS
					       : RMX_MIN(2 * st->spare_backoff_ms, STORE_SPARE_RETRY_MAX_MS);
		st->spare_retry_armed = false;
		return;
	}
	RMX_ASSERT(st->spare_header_made);
	/* Its salt joins the table when it becomes active: room now, so that
	 * rolling over never allocates. */
	if (store_salt_reserve(st, 1) != 0) {
		st->spare_error = -ENOMEM;
		retire_fd(st, fd);
		return;
	}
	st->spare_error = 0;
	st->spare_backoff_ms = 0;
	st->spare_fd = fd;
	/* A buffered spare in a direct store (its O_DIRECT open was refused)
	 * is committed to buffered: the mode is the fd's. */
	st->spare_direct = direct && st->direct;
}

enum record_check_result store_record_check(const struct store *st, uint64_t queue_id,
					    const uint8_t *p, size_t avail, struct record_view *out)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(queue_id, &worker, &seq, &offset);
	uint32_t i = salt_index(st, seq);
	if (worker != st->worker || i == st->salt_count)
		return RECORD_BAD_HEADER;
	return record_check(p, avail, st->salts[i].salt, out);
}

int store_retired_fd(struct store *st)
{
	if (st->retired_count == 0)
		return -1;
	return st->retired_fd[--st->retired_count];
}

void store_segment_removed(struct store *st, uint32_t seq)
{
	RMX_ASSERT(seq < st->active_seq && !batches_use_seq(st, seq));
	/* The active segment always stays, but a leftover shard has none. */
	RMX_ASSERT(st->segments_in_use > (st->leftover ? 0u : 1u));
	st->segments_in_use--;
	uint32_t i = salt_index(st, seq);
	RMX_ASSERT(i < st->salt_count);
	memmove(&st->salts[i], &st->salts[i + 1],
		(st->salt_count - i - 1) * sizeof(st->salts[0]));
	st->salt_count--;
}

int store_dir_fd(const struct store *st)
{
	return st->dir_fd;
}

void store_get_stats(const struct store *st, struct store_stats *out)
{
	out->bytes_used = (uint64_t)st->segments_in_use * st->segment_size_bytes;
	out->segments = st->segments_in_use;
	out->records_committed = st->records_committed;
	out->commits = st->commits;
}

void store_close(struct store *st)
{
	if (st == NULL)
		return;
	RMX_ASSERT(st->in_flight == 0 && st->orphans == 0);
	/* Sealed segments that still had batches queued (a close before flush). */
	while (st->batch_count > 0)
		batch_pop(st);
	while (st->retired_count > 0)
		close(st->retired_fd[--st->retired_count]);
	if (st->active_fd >= 0)
		close(st->active_fd);
	if (st->spare_fd >= 0)
		close(st->spare_fd);
	if (st->dir_fd >= 0)
		close(st->dir_fd); /* drops the flock */
	if (st->bounce != NULL)
		munmap(st->bounce, (size_t)(st->bounce_bytes * st->commits_in_flight_max));
	free(st->salts);
	free(st->batch);
	free(st->data_dir);
	free(st);
}

uint32_t store_first_unsealed_seq(const struct store *st)
{
	return st->active_seq;
}

