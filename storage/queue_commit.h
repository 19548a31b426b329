/*
 * queue_commit.h - the queue's side of the delivery logs: the group commit
 * of outcome entries (queue_commit_begin/done, or the same as an io_plan
 * with queue_commit_plan/advance), and the log fds the queue writes to
 * (queue_dlog_ready at run time, queue_log_resume at start-up).
 *
 * Part of the queue module (queue.h includes this header; struct queue is
 * opaque). Entries are made by the queue as outcomes are reported; core/
 * performs the writes handed out here and reports their results. No system
 * call; one thread per queue.
 */
#ifndef RINGMX_QUEUE_COMMIT_H
#define RINGMX_QUEUE_COMMIT_H

#include <sys/uio.h>

#include "../common/base.h"
#include "io_plan.h"

#define QUEUE_COMMIT_WRITES_MAX 4        /* segment logs written by one commit */

struct queue;

/* A log write to perform: pwritev(fd, &iov, 1, offset), then fdatasync(fd)
 * when the commit says sync (link the two). fd is not opened O_APPEND by
 * the queue; offsets are exact. */
struct queue_commit_write {
	int fd;
	uint32_t seq;
	uint64_t offset;
	struct iovec iov;   /* points into the queue; valid until queue_commit_done */
	uint32_t entries;
};

struct queue_commit {
	struct queue_commit_write write[QUEUE_COMMIT_WRITES_MAX];
	uint32_t count;     /* >= 1 when handed out */
	bool sync;
};

/*
 * If no commit is in flight and entries wait for segments whose log fd is
 * ready, fills c with the writes of up to QUEUE_COMMIT_WRITES_MAX segments
 * (each segment's entries in order) and returns true. Returns false after
 * a failure (the logs are frozen until restart).
 */
bool queue_commit_begin(struct queue *q, struct queue_commit *c);

/*
 * Reports the commit begun last, once all its writes and syncs finished:
 * 0 (or any non-negative count) if every write wrote its whole iov and
 * every sync returned 0, else the first -errno (a short write is -EIO).
 * A failure marks the queue failed for good: forwarding goes on, no
 * segment is reclaimed, no more log writes (queue_status returns the
 * error; a restart replays what is durable).
 */
void queue_commit_done(struct queue *q, int result);

/*
 * The delivery-log commit in io_plan.h's words, as core/store_io performs
 * it at run time (queue_commit_begin/done above are its two halves).
 * queue_commit_plan: when queue_commit_begin hands out a commit, fills p with
 * one write per log, each linked to its fdatasync when the commit syncs (the
 * logs independent of each other), and returns true; else false.
 * queue_commit_advance: judges the results (a short write is -EIO; the first
 * failure in plan order, so a write's error comes before its cancelled
 * sync), reports them through queue_commit_done and returns what it
 * reported: 0 or -errno.
 */
bool queue_commit_plan(struct queue *q, struct io_plan *p);
int queue_commit_advance(struct queue *q, const struct io_plan *p);

/* True while a commit is in flight or entries wait (shutdown flushes).
 * Entries wait also for a segment whose log fd has not been handed over. */
bool queue_commit_busy(const struct queue *q);

/* 0, or the -errno of the failed log commit. */
int queue_status(const struct queue *q);

/*
 * The log fd of segment seq (core/ creates <seq>.dlog, O_RDWR|O_CREAT|
 * O_TRUNC|O_CLOEXEC 0600, when it prepares the store's spare <seq>.seg,
 * before the directory fsync that makes the spare durable) or
 * -errno when it could not: then that segment's entries are dropped and it
 * is never reclaimed in this run. Returns 0 and the queue owns fd from here
 * on (queue_reclaimed or queue_close give it back), or -ENOMEM, or -EEXIST
 * (queue_open already holds that log: the spare store_open made), and the
 * caller still owns fd.
 */
RMX_MUST_CHECK int queue_dlog_ready(struct queue *q, uint32_t seq, int fd);

/* For start-up recovery (queue_recover.c) only. */

/*
 * The log of segment seq, opened for appending, whose valid prefix ends at
 * log_bytes: the next entries go there. 0 and the queue owns fd, or
 * -ENOMEM or -EEXIST (a log of seq is held already) and the caller still
 * owns fd.
 */
RMX_MUST_CHECK int queue_log_resume(struct queue *q, uint32_t seq, int fd, uint64_t log_bytes);

#endif
