/*
 * segment_remove.c - the removal machine of segment_remove.h: two plans,
 * [unlinkat seg] then [fsync dir ->link-> unlinkat dlog]. The link makes the
 * log's unlink wait for the directory fsync, and not happen if it failed.
 */
#include "segment_remove.h"

#include <errno.h>
#include <string.h>

void segment_remove_start(struct segment_remove *r, int dir_fd, uint32_t seq)
{
	memset(r, 0, sizeof(*r));
	r->dir_fd = dir_fd;
	r->seq = seq;
	segment_name_format(r->seg_name, seq);
	delivery_log_name_format(r->log_name, seq);
	r->state = SEGMENT_REMOVE_SEGMENT;
}

bool segment_remove_plan(struct segment_remove *r, struct io_plan *p)
{
	io_plan_clear(p);
	struct io_step *s;
	switch (r->state) {
	case SEGMENT_REMOVE_SEGMENT:
		s = io_plan_add(p, IO_STEP_UNLINKAT, r->dir_fd);
		s->path = r->seg_name;
		break;
	case SEGMENT_REMOVE_DIRSYNC_LOG:
		s = io_plan_add(p, IO_STEP_FSYNC, r->dir_fd);
		s->link = true;
		s = io_plan_add(p, IO_STEP_UNLINKAT, r->dir_fd);
		s->path = r->log_name;
		break;
	default:
		return false;
	}
	p->pending = p->count;
	return true;
}

static void fail(struct segment_remove *r, enum io_step_op op, int error)
{
	if (r->error == 0) {
		r->error = error;
		r->failed_op = op;
	}
}

void segment_remove_advance(struct segment_remove *r, const struct io_plan *p)
{
	RMX_ASSERT(p->pending == 0);
	switch (r->state) {
	case SEGMENT_REMOVE_SEGMENT:
		if (p->result[0] < 0 && p->result[0] != -ENOENT) {
			fail(r, IO_STEP_UNLINKAT, p->result[0]);
			r->log_kept = true; /* the segment may still be there */
			r->state = SEGMENT_REMOVE_DONE;
			return;
		}
		r->state = SEGMENT_REMOVE_DIRSYNC_LOG;
		return;
	case SEGMENT_REMOVE_DIRSYNC_LOG:
		if (p->result[0] < 0) {
			fail(r, IO_STEP_FSYNC, p->result[0]);
			r->log_kept = true;
		} else if (p->result[1] < 0 && p->result[1] != -ENOENT) {
			fail(r, IO_STEP_UNLINKAT, p->result[1]);
			r->log_kept = true;
		}
		r->state = SEGMENT_REMOVE_DONE;
		return;
	default:
		RMX_ASSERT(!"bad segment_remove state");
	}
}
