/*
 * segment_make.c - the segment-making state machine of segment_make.h.
 *
 * OPEN -> FALLOCATE -> FILL (header block, then zeros, one write a plan) ->
 * REOPEN (only if O_DIRECT and not keep_direct) -> LOG (only with_log) -> SYNC (only sync) ->
 * DONE. OPEN answered EINVAL with O_DIRECT (a file system without it, tmpfs
 * before 6.6): the open may have made the name, so it is unlinked and the
 * open retried buffered. Any other failure once the name exists goes through
 * CLEANUP (close, unlink the segment and its log) to DONE with the error.
 */
#include "segment_make.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

void segment_make_start(struct segment_make *m, const struct segment_make_config *cfg, uint32_t seq)
{
	RMX_ASSERT(cfg->size_bytes > SEGMENT_HEADER_BYTES && cfg->zeros_bytes >= SEGMENT_HEADER_BYTES &&
		   cfg->zeros_bytes % SEGMENT_HEADER_BYTES == 0);
	memset(m, 0, sizeof(*m));
	m->cfg = *cfg;
	m->seq = seq;
	segment_name_format(m->seg_name, seq);
	delivery_log_name_format(m->log_name, seq);
	m->state = SEGMENT_MAKE_OPEN;
	m->direct = true;
	m->fd = -1;
	m->log_fd = -1;
}

const char *segment_make_state_name(enum segment_make_state s)
{
	static const char *const names[] = {
		[SEGMENT_MAKE_IDLE] = "idle",         [SEGMENT_MAKE_OPEN] = "open",
		[SEGMENT_MAKE_UNLINK_DIRECT] = "open", [SEGMENT_MAKE_FALLOCATE] = "fallocate",
		[SEGMENT_MAKE_FILL] = "zero_fill",    [SEGMENT_MAKE_REOPEN] = "reopen",
		[SEGMENT_MAKE_LOG] = "delivery_log",  [SEGMENT_MAKE_SYNC] = "sync",
		[SEGMENT_MAKE_CLEANUP] = "cleanup",   [SEGMENT_MAKE_DONE] = "done",
	};
	return (unsigned)s < RMX_ARRAY_LEN(names) ? names[s] : "unknown";
}

bool segment_make_plan(struct segment_make *m, struct io_plan *p)
{
	io_plan_clear(p);
	struct io_step *s;
	switch (m->state) {
	case SEGMENT_MAKE_OPEN:
		s = io_plan_add(p, IO_STEP_OPENAT, m->cfg.dir_fd);
		s->path = m->seg_name;
		s->flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | (m->direct ? O_DIRECT : 0);
		s->mode = 0600;
		break;
	case SEGMENT_MAKE_UNLINK_DIRECT:
		s = io_plan_add(p, IO_STEP_UNLINKAT, m->cfg.dir_fd);
		s->path = m->seg_name;
		break;
	case SEGMENT_MAKE_FALLOCATE:
		/* Allocate first so a full disk fails here, not halfway through. */
		s = io_plan_add(p, IO_STEP_FALLOCATE, m->fd);
		s->len = m->cfg.size_bytes;
		break;
	case SEGMENT_MAKE_FILL:
		/* Really write the zeros: overwriting written blocks later needs no
		 * extent conversion, which is what keeps fdatasync short. */
		s = io_plan_add(p, IO_STEP_WRITE, m->fd);
		s->offset = m->offset;
		if (m->offset < SEGMENT_HEADER_BYTES) {
			s->buf = (void *)(m->cfg.header + m->offset);
			s->len = SEGMENT_HEADER_BYTES - m->offset;
		} else {
			s->buf = (void *)m->cfg.zeros;
			s->len = RMX_MIN(m->cfg.size_bytes - m->offset, m->cfg.zeros_bytes);
		}
		break;
	case SEGMENT_MAKE_REOPEN:
		s = io_plan_add(p, IO_STEP_CLOSE, m->fd);
		s->link = true;
		s = io_plan_add(p, IO_STEP_OPENAT, m->cfg.dir_fd);
		s->path = m->seg_name;
		s->flags = O_RDWR | O_CLOEXEC;
		break;
	case SEGMENT_MAKE_LOG:
		s = io_plan_add(p, IO_STEP_OPENAT, m->cfg.dir_fd);
		s->path = m->log_name;
		s->flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
		s->mode = 0600;
		break;
	case SEGMENT_MAKE_SYNC:
		s = io_plan_add(p, IO_STEP_FDATASYNC, m->fd);
		s->link = true;
		io_plan_add(p, IO_STEP_FSYNC, m->cfg.dir_fd);
		break;
	case SEGMENT_MAKE_CLEANUP:
		if (m->fd >= 0)
			io_plan_add(p, IO_STEP_CLOSE, m->fd);
		if (m->log_fd >= 0)
			io_plan_add(p, IO_STEP_CLOSE, m->log_fd);
		if (m->created) {
			s = io_plan_add(p, IO_STEP_UNLINKAT, m->cfg.dir_fd);
			s->path = m->seg_name;
		}
		if (m->log_created) {
			s = io_plan_add(p, IO_STEP_UNLINKAT, m->cfg.dir_fd);
			s->path = m->log_name;
		}
		m->fd = -1;
		m->log_fd = -1;
		m->created = false;
		m->log_created = false;
		if (p->count == 0) {
			m->state = SEGMENT_MAKE_DONE;
			return false;
		}
		break;
	case SEGMENT_MAKE_DONE:
		return false;
	default:
		RMX_ASSERT(!"bad segment_make state");
		return false;
	}
	p->pending = p->count;
	return true;
}

static void fail(struct segment_make *m, enum io_step_op op, int error)
{
	RMX_ASSERT(error < 0);
	m->error = error;
	m->failed_state = m->state;
	m->failed_op = op;
	m->state = SEGMENT_MAKE_CLEANUP;
}

/* After the zero-fill (and the reopen): the log, the sync, or done. */
static void after_fill(struct segment_make *m)
{
	if (m->cfg.with_log)
		m->state = SEGMENT_MAKE_LOG;
	else if (m->cfg.sync)
		m->state = SEGMENT_MAKE_SYNC;
	else
		m->state = SEGMENT_MAKE_DONE;
}

void segment_make_advance(struct segment_make *m, const struct io_plan *p)
{
	RMX_ASSERT(p->count >= 1 && p->pending == 0);
	const int r = p->result[0];
	switch (m->state) {
	case SEGMENT_MAKE_OPEN:
		if (r == -EINVAL && m->direct) {
			m->direct = false; /* no O_DIRECT here: buffered zero-fill */
			m->state = SEGMENT_MAKE_UNLINK_DIRECT;
		} else if (r < 0) {
			fail(m, IO_STEP_OPENAT, r); /* EEXIST included: that name is not ours */
		} else {
			m->fd = r;
			m->created = true;
			m->state = SEGMENT_MAKE_FALLOCATE;
		}
		return;
	case SEGMENT_MAKE_UNLINK_DIRECT:
		if (r < 0 && r != -ENOENT)
			fail(m, IO_STEP_UNLINKAT, r);
		else
			m->state = SEGMENT_MAKE_OPEN;
		return;
	case SEGMENT_MAKE_FALLOCATE:
		if (r == -EOPNOTSUPP)
			m->fallocate_unsupported = true; /* the zero-fill allocates */
		else if (r < 0)
			return fail(m, IO_STEP_FALLOCATE, r);
		m->state = SEGMENT_MAKE_FILL;
		return;
	case SEGMENT_MAKE_FILL:
		if (r <= 0)
			return fail(m, IO_STEP_WRITE, r < 0 ? r : -EIO);
		m->offset += (uint64_t)r;
		RMX_ASSERT(m->offset <= m->cfg.size_bytes);
		if (m->offset < m->cfg.size_bytes)
			return;
		if (m->direct && !m->cfg.keep_direct)
			m->state = SEGMENT_MAKE_REOPEN;
		else
			after_fill(m);
		return;
	case SEGMENT_MAKE_REOPEN:
		m->fd = -1; /* closed, whatever close answered */
		if (r < 0)
			return fail(m, IO_STEP_CLOSE, r);
		if (p->result[1] < 0)
			return fail(m, IO_STEP_OPENAT, p->result[1]);
		m->fd = p->result[1];
		m->direct = false;
		after_fill(m);
		return;
	case SEGMENT_MAKE_LOG:
		/* Not fatal: without its log, the segment's outcomes are not kept
		 * and it is not deleted in this run (the queue's rule). */
		if (r < 0)
			m->log_error = r;
		else
			m->log_fd = r;
		m->log_created = r >= 0;
		m->state = m->cfg.sync ? SEGMENT_MAKE_SYNC : SEGMENT_MAKE_DONE;
		return;
	case SEGMENT_MAKE_SYNC:
		if (r < 0)
			return fail(m, IO_STEP_FDATASYNC, r);
		if (p->result[1] < 0)
			return fail(m, IO_STEP_FSYNC, p->result[1]);
		m->state = SEGMENT_MAKE_DONE;
		return;
	case SEGMENT_MAKE_CLEANUP:
		/* Close and unlink results change nothing: the error stands. */
		m->state = SEGMENT_MAKE_DONE;
		return;
	default:
		RMX_ASSERT(!"bad segment_make state");
	}
}

void segment_make_run_blocking(struct segment_make *m)
{
	struct io_plan p;
	while (segment_make_plan(m, &p)) {
		io_plan_run_blocking(&p);
		segment_make_advance(m, &p);
	}
}
