/*
 * forward_record.c - the stored record of a forwarder slot's message.
 *
 * A due message attached to a slot has its record read from the segment
 * into a buffer of its own (storage plans the read, store_io performs it
 * on the ring: the worker never blocks on a cold page), checked (CRC, id,
 * length) and parsed into the slot's forward_msg; then the upstream side
 * takes it. A read that fails or comes short says nothing about the
 * record: the message is read again after FORWARD_READ_RETRY_MS. A record
 * that reads in full and fails its check is set aside, never sent, and its
 * bytes are copied to the shard's quarantine/ on the same job; the slot
 * takes no message until that copy is made. Segment fds are opened on
 * first use and cached (FORWARD_SEGMENT_FDS_MAX), read-only.
 */
#include "forward_record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "../storage/segment.h"
#include "../storage/store.h"
#include "forward_attempt.h"
#include "forward_upstream.h"
#include "metrics.h"

/* ---- segment fds -------------------------------------------------------------- */

/* A read-only fd for segment seq of a shard, opened on first use (a rare
 * openat(2) in the shard directory; the reads themselves go through the ring). */
static int segment_fd(struct forward *f, uint32_t shard, uint32_t seq)
{
	for (uint32_t i = 0; i < FORWARD_SEGMENT_FDS_MAX; i++)
		if (f->seg_fds[i].fd >= 0 && f->seg_fds[i].shard == shard &&
		    f->seg_fds[i].seq == seq)
			return f->seg_fds[i].fd;
	RMX_ASSERT(shard < f->env.shard_count);
	char name[SEGMENT_NAME_MAX_BYTES];
	segment_name_format(name, seq);
	int fd = openat(store_dir_fd(f->env.shards[shard].store), name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct seg_fd *e = &f->seg_fds[f->seg_fd_next++ % FORWARD_SEGMENT_FDS_MAX];
	if (e->fd >= 0)
		close(e->fd);
	e->shard = shard;
	e->seq = seq;
	e->fd = fd;
	return fd;
}

void forward_record_forget_segment(struct forward *f, uint32_t shard, uint32_t seq)
{
	for (uint32_t i = 0; i < FORWARD_SEGMENT_FDS_MAX; i++) {
		if (f->seg_fds[i].fd >= 0 && f->seg_fds[i].shard == shard &&
		    f->seg_fds[i].seq == seq) {
			close(f->seg_fds[i].fd);
			f->seg_fds[i].fd = -1;
		}
	}
}

/* ---- reading the record ------------------------------------------------------ */

/* Reads the slot's message's record into a buffer of its own: storage
 * plans the read (store_read.h), store_io performs it, record_read_done
 * acts on the outcome. */
void forward_record_read(struct forward *f, struct forward_slot *s)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(queue_msg_id(s->msg), &worker, &seq, &offset);
	s->rec_bytes = queue_msg_padded_bytes(s->msg);
	if (s->rec_buf_bytes < s->rec_bytes) {
		/* The kept buffer is too small: one of the record's size (a
		 * small one rounded up, so that it serves the next ones too). */
		free(s->rec_buf);
		s->rec_buf_bytes = RMX_MAX(s->rec_bytes, (uint64_t)FORWARD_REC_MIN_BYTES);
		s->rec_buf = malloc(s->rec_buf_bytes);
		if (!s->rec_buf)
			s->rec_buf_bytes = 0;
	}
	s->rec = s->rec_buf;
	if (s->rec)
		f->rec_held_bytes += s->rec_bytes;
	int fd = s->rec ? segment_fd(f, s->shard, seq) : -ENOMEM;
	if (fd < 0) {
		log_error("event=record_read_failed worker=%u seq=%u error=%s", f->env.worker, seq,
			  log_errno_name(fd));
		forward_attempt_requeue(f, s, f->now_unix_ms + FORWARD_READ_RETRY_MS);
		return;
	}
	store_read_start(&s->read, f->env.shards[s->shard].store, queue_msg_id(s->msg), fd, s->rec,
			 s->rec_bytes);
	s->read_inflight = true;
	store_io_kick(f->env.io, &s->io_job);
}

/* A copy of a record that does not check in the shard's quarantine/ (as
 * recovery keeps one): storage plans it (segment_quarantine.h), store_io
 * performs it on the slot's job. The copy takes the record's buffer, still
 * counted in rec_held_bytes, and the slot takes no message until it is
 * made; an existing copy is never replaced. */
static void record_quarantine_start(struct forward *f, struct forward_slot *s)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(queue_msg_id(s->msg), &worker, &seq, &offset);
	RMX_ASSERT(!s->quarantine_active && s->rec != NULL);
	s->quarantine_rec = s->rec; /* the copy takes the buffer */
	s->quarantine_bytes = s->rec_bytes;
	s->rec = NULL;
	s->rec_buf = NULL;
	s->rec_buf_bytes = 0;
	segment_quarantine_start(&s->quarantine, store_dir_fd(f->env.shards[s->shard].store), seq,
				 offset, s->quarantine_rec, s->quarantine_bytes, false);
	s->quarantine_active = true;
	store_io_kick(f->env.io, &s->io_job);
}

static void record_quarantine_done(struct forward *f, struct forward_slot *s)
{
	const struct segment_quarantine *q = &s->quarantine;
	if (q->error != 0)
		log_error("event=record_quarantine_failed worker=%u seq=%u offset=%llu op=%s "
			  "error=%s", f->env.worker, q->seq, (unsigned long long)q->offset,
			  io_step_op_name(q->failed_op), log_errno_name(q->error));
	RMX_ASSERT(f->rec_held_bytes >= s->quarantine_bytes);
	f->rec_held_bytes -= s->quarantine_bytes;
	free(s->quarantine_rec);
	s->quarantine_rec = NULL;
	s->quarantine_active = false;
}

static void record_read_done(struct forward *f, struct forward_slot *s)
{
	const struct store_read *r = &s->read;
	s->read_inflight = false;
	RMX_ASSERT(s->msg != NULL && r->outcome != STORE_READ_PENDING);
	char id[RECORD_QUEUE_ID_CHARS];
	queue_id_format(queue_msg_id(s->msg), id);
	if (r->outcome == STORE_READ_FAILED) {
		/* An I/O error or a short read says nothing about the record: the
		 * message waits and is read again later, never set aside for it. */
		log_error("event=record_read_failed worker=%u id=%.16s read=%d of=%llu error=%s",
			  f->env.worker, id, r->bytes, (unsigned long long)s->rec_bytes,
			  log_errno_name(r->error));
		metrics_inc(&f->env.metrics->forward_record_read_failures);
		forward_attempt_requeue(f, s, f->now_unix_ms + FORWARD_READ_RETRY_MS);
		return;
	}
	if (r->outcome == STORE_READ_BAD) {
		/* DESIGN.md: a record that does not read back is set aside, never
		 * sent; its bytes are kept in quarantine/ as recovery keeps them. */
		log_error("event=record_set_aside worker=%u id=%.16s check=%d", f->env.worker, id,
			  (int)r->check);
		record_quarantine_start(f, s);
		queue_set_aside(slot_queue(f, s), s->msg, f->now_unix_ms);
		metrics_inc(&f->env.metrics->forward_set_aside);
		forward_attempt_release(f, s);
		return;
	}
	s->view = r->view;
	enum forward_msg_load_result load = forward_msg_load(&s->fm, &s->view, s->msg);
	if (load == FORWARD_MSG_NO_MEMORY) {
		/* Out of memory says nothing about the record: read it again later. */
		log_error("event=record_read_failed worker=%u id=%.16s error=%s", f->env.worker, id,
			  log_errno_name(-ENOMEM));
		forward_attempt_requeue(f, s, f->now_unix_ms + FORWARD_READ_RETRY_MS);
		return;
	}
	if (load != FORWARD_MSG_LOADED) {
		log_error("event=record_set_aside worker=%u id=%.16s reason=envelope", f->env.worker,
			  id);
		queue_set_aside(slot_queue(f, s), s->msg, f->now_unix_ms);
		metrics_inc(&f->env.metrics->forward_set_aside);
		forward_attempt_release(f, s);
		return;
	}
	s->msg_loaded = true;
	if (s->fm.rcpt_count == 0) {
		forward_attempt_finished(f, s); /* nothing pending after all */
		return;
	}
	if (s->state == SLOT_IDLE) {
		s->tried_mask = 0;
		forward_upstream_connect(f, s);
	} else if (s->state == SLOT_SESSION && s->client_ready) {
		forward_upstream_start_message(f, s);
	}
}

/* The slot's store_io job: the plans of its record's read, then of a bad
 * record's quarantine copy; one of the two at a time. */
static bool slot_io_plan(void *owner, struct io_plan *p)
{
	struct forward_slot *s = owner;
	if (s->read_inflight)
		return store_read_plan(&s->read, p);
	return s->quarantine_active && segment_quarantine_plan(&s->quarantine, p);
}

static void slot_io_advance(void *owner, const struct io_plan *p)
{
	struct forward_slot *s = owner;
	if (s->read_inflight) {
		store_read_advance(&s->read, p);
		record_read_done(s->owner, s);
		return;
	}
	RMX_ASSERT(s->quarantine_active);
	segment_quarantine_advance(&s->quarantine, p);
	if (segment_quarantine_done(&s->quarantine))
		record_quarantine_done(s->owner, s);
}

void forward_record_job_add(struct forward *f, struct forward_slot *s)
{
	store_io_add(f->env.io, &s->io_job, slot_io_plan, slot_io_advance, s);
}
