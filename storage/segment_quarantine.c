/*
 * segment_quarantine.c - the quarantine copy of segment_quarantine.h, plan
 * by plan:
 *
 *   [mkdirat quarantine/]
 *   [openat quarantine/] [openat quarantine/<name>]
 *   [write ->link-> fdatasync] ... until every byte is written
 *   [close file] [fsync quarantine/]
 *   [close quarantine/] [fsync shard directory, if quarantine/ is new]
 *
 * Steps side by side in one plan are independent of each other; the link
 * makes the sync wait for the whole write.
 */
#include "segment_quarantine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

/* One write at most this long: within what one read or write returns. */
#define SEGMENT_QUARANTINE_WRITE_MAX_BYTES (1u << 30)

void segment_quarantine_start(struct segment_quarantine *q, int shard_dirfd, uint32_t seq,
			      uint64_t offset, const uint8_t *bytes, uint64_t len, bool replace)
{
	memset(q, 0, sizeof(*q));
	q->dir_fd = shard_dirfd;
	q->seq = seq;
	q->offset = offset;
	q->replace = replace;
	q->bytes = bytes;
	q->len = len;
	q->qdir_fd = -1;
	q->fd = -1;
	int n = snprintf(q->path, sizeof(q->path), "%s/%08u-%llu.bad", SEGMENT_QUARANTINE_DIR,
			 (unsigned)seq, (unsigned long long)offset);
	RMX_ASSERT(n > 0 && (size_t)n < sizeof(q->path));
	q->state = SEGMENT_QUARANTINE_MKDIR;
}

bool segment_quarantine_plan(struct segment_quarantine *q, struct io_plan *p)
{
	io_plan_clear(p);
	struct io_step *s;
	switch (q->state) {
	case SEGMENT_QUARANTINE_MKDIR:
		s = io_plan_add(p, IO_STEP_MKDIRAT, q->dir_fd);
		s->path = SEGMENT_QUARANTINE_DIR;
		s->mode = 0700;
		break;
	case SEGMENT_QUARANTINE_OPEN:
		s = io_plan_add(p, IO_STEP_OPENAT, q->dir_fd);
		s->path = SEGMENT_QUARANTINE_DIR;
		s->flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
		s = io_plan_add(p, IO_STEP_OPENAT, q->dir_fd);
		s->path = q->path;
		s->flags = O_WRONLY | O_CREAT | O_CLOEXEC | (q->replace ? O_TRUNC : O_EXCL);
		s->mode = 0600;
		break;
	case SEGMENT_QUARANTINE_WRITE:
		q->chunk = (uint32_t)RMX_MIN(q->len - q->written,
					     (uint64_t)SEGMENT_QUARANTINE_WRITE_MAX_BYTES);
		s = io_plan_add(p, IO_STEP_WRITE, q->fd);
		s->buf = (void *)(q->bytes + q->written);
		s->len = q->chunk;
		s->offset = q->written;
		s->link = true;
		(void)io_plan_add(p, IO_STEP_FDATASYNC, q->fd);
		break;
	case SEGMENT_QUARANTINE_CLOSE_FILE:
		(void)io_plan_add(p, IO_STEP_CLOSE, q->fd);
		(void)io_plan_add(p, IO_STEP_FSYNC, q->qdir_fd);
		break;
	case SEGMENT_QUARANTINE_CLOSE_DIR:
		(void)io_plan_add(p, IO_STEP_CLOSE, q->qdir_fd);
		if (q->dir_made)
			(void)io_plan_add(p, IO_STEP_FSYNC, q->dir_fd);
		break;
	case SEGMENT_QUARANTINE_CLEANUP:
		if (q->fd >= 0)
			(void)io_plan_add(p, IO_STEP_CLOSE, q->fd);
		if (q->qdir_fd >= 0)
			(void)io_plan_add(p, IO_STEP_CLOSE, q->qdir_fd);
		RMX_ASSERT(p->count > 0);
		break;
	default:
		return false;
	}
	p->pending = p->count;
	return true;
}

/* Notes the first failure; what is open is closed next. */
static void fail(struct segment_quarantine *q, enum io_step_op op, int error)
{
	if (q->error == 0) {
		q->error = error;
		q->failed_op = op;
	}
	q->state = q->fd >= 0 || q->qdir_fd >= 0 ? SEGMENT_QUARANTINE_CLEANUP
						   : SEGMENT_QUARANTINE_DONE;
}

static void advance_write(struct segment_quarantine *q, const struct io_plan *p)
{
	int w = p->result[0];
	if (w < 0 || (w == 0 && q->chunk > 0)) {
		fail(q, IO_STEP_WRITE, w < 0 ? w : -EIO);
		return;
	}
	q->written += (uint64_t)w;
	if (q->written < q->len)
		return; /* short: the sync was cancelled; the rest goes next */
	if (p->result[1] < 0)
		fail(q, IO_STEP_FDATASYNC, p->result[1]);
	else
		q->state = SEGMENT_QUARANTINE_CLOSE_FILE;
}

void segment_quarantine_advance(struct segment_quarantine *q, const struct io_plan *p)
{
	RMX_ASSERT(p->pending == 0);
	switch (q->state) {
	case SEGMENT_QUARANTINE_MKDIR:
		if (p->result[0] == 0)
			q->dir_made = true;
		else if (p->result[0] != -EEXIST) {
			fail(q, IO_STEP_MKDIRAT, p->result[0]);
			return;
		}
		q->state = SEGMENT_QUARANTINE_OPEN;
		return;
	case SEGMENT_QUARANTINE_OPEN:
		q->qdir_fd = p->result[0] >= 0 ? p->result[0] : -1;
		q->fd = p->result[1] >= 0 ? p->result[1] : -1;
		if (p->result[0] < 0)
			fail(q, IO_STEP_OPENAT, p->result[0]);
		else if (p->result[1] < 0)
			fail(q, IO_STEP_OPENAT, p->result[1]);
		else
			q->state = SEGMENT_QUARANTINE_WRITE;
		return;
	case SEGMENT_QUARANTINE_WRITE:
		advance_write(q, p);
		return;
	case SEGMENT_QUARANTINE_CLOSE_FILE:
		q->fd = -1; /* gone, whatever close said */
		if (p->result[0] < 0)
			fail(q, IO_STEP_CLOSE, p->result[0]);
		else if (p->result[1] < 0)
			fail(q, IO_STEP_FSYNC, p->result[1]);
		else
			q->state = SEGMENT_QUARANTINE_CLOSE_DIR;
		return;
	case SEGMENT_QUARANTINE_CLOSE_DIR:
		q->qdir_fd = -1;
		if (p->result[0] < 0)
			fail(q, IO_STEP_CLOSE, p->result[0]);
		else if (p->count > 1 && p->result[1] < 0)
			fail(q, IO_STEP_FSYNC, p->result[1]);
		else
			q->state = SEGMENT_QUARANTINE_DONE;
		return;
	case SEGMENT_QUARANTINE_CLEANUP:
		q->fd = -1;
		q->qdir_fd = -1;
		q->state = SEGMENT_QUARANTINE_DONE;
		return;
	default:
		RMX_ASSERT(!"bad segment_quarantine state");
	}
}

int segment_quarantine(int shard_dirfd, uint32_t seq, uint64_t offset, const uint8_t *bytes,
		       uint64_t len)
{
	struct segment_quarantine q;
	struct io_plan p;
	segment_quarantine_start(&q, shard_dirfd, seq, offset, bytes, len, true);
	while (segment_quarantine_plan(&q, &p)) {
		io_plan_run_blocking(&p);
		segment_quarantine_advance(&q, &p);
	}
	return q.error;
}
