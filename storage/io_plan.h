/*
 * io_plan.h - the words in which storage/ states its disk work. A plan is a
 * short list of steps (open, fallocate, write, writev, read, fdatasync, fsync
 * of a directory, unlinkat, mkdirat, close), each optionally linked to the
 * next. A
 * storage state machine fills a plan, someone performs it, and the state
 * machine reads every step's result from the plan and decides what comes
 * next (DESIGN.md rule 2: storage plans, core/ talks to the kernel).
 *
 * Two executors keep one meaning: core/store_io.c on the worker's ring at run
 * time (a plan goes in one submission, so a linked run is never cut), and
 * io_plan_run_blocking() below with plain system calls, for start-up and
 * tools. Results follow io_uring: bytes, a new fd, 0, or -errno; a step after
 * a linked step that failed (or wrote or read short) gets -ECANCELED. No
 * step links from a mkdirat or an unlinkat: io_uring completes those
 * without breaking the link when they fail, so the next step would run on
 * the ring and not in the blocking executor (both assert it).
 *
 * The protocol for a state machine X: X_plan(x, plan) fills plan and returns
 * true, or returns false when it has nothing to do (done or idle); once every
 * step's result is in plan->result, X_advance(x, plan) takes them all. One
 * plan of a state machine is in flight at a time. Buffers and paths a plan
 * names belong to the state machine and stay put until X_advance.
 */
#ifndef RINGMX_IO_PLAN_H
#define RINGMX_IO_PLAN_H

#include <sys/uio.h>

#include "../common/base.h"

enum io_step_op {
	IO_STEP_OPENAT,    /* fd: directory; path, flags, mode */
	IO_STEP_FALLOCATE, /* fd; flags: mode; offset, len */
	IO_STEP_WRITE,     /* fd; buf, len, offset; flags: RWF_ flags (RWF_DSYNC) */
	IO_STEP_WRITEV,    /* fd; iov, iovcnt, offset; len: the total, for short-write links;
			    * flags: RWF_ flags */
	IO_STEP_READ,      /* fd; buf, len, offset */
	IO_STEP_FDATASYNC, /* fd */
	IO_STEP_FSYNC,     /* fd (a directory, after creating or removing a name) */
	IO_STEP_UNLINKAT,  /* fd: directory; path; flags: AT_ flags */
	IO_STEP_MKDIRAT,   /* fd: directory; path, mode */
	IO_STEP_CLOSE,     /* fd */
};

struct io_step {
	enum io_step_op op;
	bool link; /* the next step runs only if this one succeeds in full */
	int fd;
	int flags;
	unsigned mode;
	const char *path;
	void *buf;
	const struct iovec *iov;
	int iovcnt;
	uint64_t len;
	uint64_t offset;
};

/* The longest plan is the delivery-log commit: a write and its fdatasync for
 * each of QUEUE_COMMIT_WRITES_MAX logs (queue_commit.c asserts it fits). */
#define IO_PLAN_STEPS_MAX 8

struct io_plan {
	uint32_t count;
	struct io_step step[IO_PLAN_STEPS_MAX];
	int result[IO_PLAN_STEPS_MAX];
	uint32_t pending; /* results still to come (the executor's count) */
	uint64_t ticket;  /* the planner's own mark (which commit this is);
			   * executors leave it alone */
};

/* Empties a plan; io_plan_add appends a step and returns it (asserts room). */
void io_plan_clear(struct io_plan *p);
struct io_step *io_plan_add(struct io_plan *p, enum io_step_op op, int fd);

/* Whether io_uring breaks a link after a failure of op (all but mkdirat
 * and unlinkat): the only steps a plan may link from. */
static inline bool io_step_can_link(enum io_step_op op)
{
	return op != IO_STEP_MKDIRAT && op != IO_STEP_UNLINKAT;
}

/* The step's name in log lines ("openat", "fallocate", ...). */
const char *io_step_op_name(enum io_step_op op);

/* A step's result, judged as the links judge it: 0 if the step did all it
 * was asked (a write or read of len bytes, any other success), the -errno,
 * or -EIO for a short write or read. */
int io_step_outcome(const struct io_step *s, int result);

/* Performs every step of p with blocking system calls, in order, with the
 * link semantics above, filling p->result. Start-up and tools only. */
void io_plan_run_blocking(struct io_plan *p);

#endif
