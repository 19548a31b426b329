/*
 * store_io.c - the run-time executor of storage's plans (store_io.h). The
 * blocking executor for start-up is io_plan_run_blocking in storage/; both
 * give a step the same result (io_plan.h), so a state machine cannot tell
 * which one ran it.
 */
#include "store_io.h"

#include "ring.h"

void store_io_init(struct store_io *io, struct io_uring *ring)
{
	*io = (struct store_io){.ring = ring};
}

void store_io_add(struct store_io *io, struct store_io_job *job,
		  bool (*plan)(void *owner, struct io_plan *p),
		  void (*advance)(void *owner, const struct io_plan *p), void *owner)
{
	RMX_ASSERT(io->count < STORE_IO_JOBS_MAX);
	*job = (struct store_io_job){.plan = plan, .advance = advance, .owner = owner,
				     .index = io->count};
	io->jobs[io->count++] = job;
}

static void prep_step(struct io_uring_sqe *sqe, const struct io_step *s)
{
	switch (s->op) {
	case IO_STEP_OPENAT:
		io_uring_prep_openat(sqe, s->fd, s->path, s->flags, (mode_t)s->mode);
		break;
	case IO_STEP_FALLOCATE:
		io_uring_prep_fallocate(sqe, s->fd, s->flags, (off_t)s->offset, (off_t)s->len);
		break;
	case IO_STEP_WRITE:
		RMX_ASSERT(s->len <= UINT32_MAX);
		io_uring_prep_write(sqe, s->fd, s->buf, (unsigned)s->len, s->offset);
		sqe->rw_flags = s->flags; /* RWF_DSYNC: the O_DIRECT commit */
		break;
	case IO_STEP_WRITEV:
		io_uring_prep_writev(sqe, s->fd, s->iov, (unsigned)s->iovcnt, s->offset);
		sqe->rw_flags = s->flags;
		break;
	case IO_STEP_READ:
		RMX_ASSERT(s->len <= UINT32_MAX);
		io_uring_prep_read(sqe, s->fd, s->buf, (unsigned)s->len, s->offset);
		break;
	case IO_STEP_FDATASYNC:
		io_uring_prep_fsync(sqe, s->fd, IORING_FSYNC_DATASYNC);
		break;
	case IO_STEP_FSYNC:
		io_uring_prep_fsync(sqe, s->fd, 0);
		break;
	case IO_STEP_UNLINKAT:
		io_uring_prep_unlinkat(sqe, s->fd, s->path, s->flags);
		break;
	case IO_STEP_MKDIRAT: /* IORING_OP_MKDIRAT: Linux 5.15 */
		io_uring_prep_mkdirat(sqe, s->fd, s->path, (mode_t)s->mode);
		break;
	case IO_STEP_CLOSE:
		io_uring_prep_close(sqe, s->fd);
		break;
	default:
		RMX_ASSERT(!"bad io step");
	}
	if (s->link) {
		RMX_ASSERT(io_step_can_link(s->op)); /* io_plan.h */
		sqe->flags |= IOSQE_IO_LINK;
	}
}

bool store_io_kick(struct store_io *io, struct store_io_job *job)
{
	if (job->busy)
		return true;
	if (!job->plan(job->owner, &job->p))
		return false;
	struct io_plan *p = &job->p;
	RMX_ASSERT(p->count >= 1 && p->count <= IO_PLAN_STEPS_MAX);
	RMX_ASSERT(!p->step[p->count - 1].link); /* a link never reaches past the plan */
	struct io_uring_sqe *sqes[IO_PLAN_STEPS_MAX];
	ring_sqes(io->ring, p->count, sqes); /* one submission: the links are not cut */
	for (uint32_t i = 0; i < p->count; i++) {
		prep_step(sqes[i], &p->step[i]);
		io_uring_sqe_set_data64(sqes[i], ring_ud(RING_OP_STORE_IO, job->index, i));
		p->result[i] = 0;
	}
	p->pending = p->count;
	job->busy = true;
	return true;
}

void store_io_on_cqe(struct store_io *io, const struct io_uring_cqe *cqe)
{
	uint32_t j = ring_ud_gen(cqe->user_data), i = ring_ud_slot(cqe->user_data);
	RMX_ASSERT(j < io->count);
	struct store_io_job *job = io->jobs[j];
	RMX_ASSERT(job->busy && i < job->p.count && job->p.pending > 0);
	job->p.result[i] = cqe->res;
	if (--job->p.pending > 0)
		return;
	job->busy = false;
	job->advance(job->owner, &job->p);
	store_io_kick(io, job);
}
