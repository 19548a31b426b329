/*
 * io_plan.c - the step vocabulary's helpers and the blocking executor that
 * start-up and the tools use (io_plan.h); the run-time executor on the
 * worker's ring is core/store_io.c. Both give a step the same result: the
 * system call's, or -errno, and -ECANCELED after a failed linked step.
 */
#include "io_plan.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void io_plan_clear(struct io_plan *p)
{
	memset(p, 0, sizeof(*p));
}

struct io_step *io_plan_add(struct io_plan *p, enum io_step_op op, int fd)
{
	RMX_ASSERT(p->count < IO_PLAN_STEPS_MAX);
	struct io_step *s = &p->step[p->count++];
	memset(s, 0, sizeof(*s));
	s->op = op;
	s->fd = fd;
	return s;
}

const char *io_step_op_name(enum io_step_op op)
{
	static const char *const names[] = {
		[IO_STEP_OPENAT] = "openat",     [IO_STEP_FALLOCATE] = "fallocate",
		[IO_STEP_WRITE] = "write",       [IO_STEP_WRITEV] = "writev",
		[IO_STEP_READ] = "read",         [IO_STEP_FDATASYNC] = "fdatasync",
		[IO_STEP_FSYNC] = "fsync",       [IO_STEP_UNLINKAT] = "unlinkat",
		[IO_STEP_MKDIRAT] = "mkdirat",   [IO_STEP_CLOSE] = "close",
	};
	return (unsigned)op < RMX_ARRAY_LEN(names) ? names[op] : "unknown";
}

int io_step_outcome(const struct io_step *s, int result)
{
	if (result < 0)
		return result;
	bool sized = s->op == IO_STEP_WRITE || s->op == IO_STEP_WRITEV || s->op == IO_STEP_READ;
	if (sized && (uint64_t)result != s->len)
		return -EIO;
	return 0;
}

static int run_step(const struct io_step *s)
{
	for (;;) {
		long rc;
		switch (s->op) {
		case IO_STEP_OPENAT:
			rc = openat(s->fd, s->path, s->flags, (mode_t)s->mode);
			break;
		case IO_STEP_FALLOCATE:
			rc = fallocate(s->fd, s->flags, (off_t)s->offset, (off_t)s->len);
			break;
		case IO_STEP_WRITE: {
			struct iovec one = { s->buf, s->len };
			rc = pwritev2(s->fd, &one, 1, (off_t)s->offset, s->flags);
			break;
		}
		case IO_STEP_WRITEV:
			rc = pwritev2(s->fd, s->iov, s->iovcnt, (off_t)s->offset, s->flags);
			break;
		case IO_STEP_READ:
			rc = pread(s->fd, s->buf, s->len, (off_t)s->offset);
			break;
		case IO_STEP_FDATASYNC:
			rc = fdatasync(s->fd);
			break;
		case IO_STEP_FSYNC:
			rc = fsync(s->fd);
			break;
		case IO_STEP_UNLINKAT:
			rc = unlinkat(s->fd, s->path, s->flags);
			break;
		case IO_STEP_MKDIRAT:
			rc = mkdirat(s->fd, s->path, (mode_t)s->mode);
			break;
		case IO_STEP_CLOSE:
			return close(s->fd) == 0 ? 0 : -errno; /* never retried: the fd is gone */
		default:
			RMX_ASSERT(!"bad io step");
			return -EINVAL;
		}
		if (rc >= 0)
			return (int)rc;
		if (errno != EINTR)
			return -errno;
	}
}

void io_plan_run_blocking(struct io_plan *p)
{
	bool cancelled = false;
	for (uint32_t i = 0; i < p->count; i++) {
		const struct io_step *s = &p->step[i];
		RMX_ASSERT(!s->link || io_step_can_link(s->op));
		p->result[i] = cancelled ? -ECANCELED : run_step(s);
		cancelled = s->link && (cancelled || io_step_outcome(s, p->result[i]) != 0);
	}
	p->pending = 0;
}
