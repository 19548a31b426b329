/*
 * segment_remove.h - the removal of a reclaimable segment and its delivery
 * log (queue_reclaimable) as a plan-and-advance machine (io_plan.h): unlink
 * <seq>.seg, fsync the shard directory, and only then unlink <seq>.dlog.
 * A crash at any point leaves either both files, or an orphan log that
 * queue_open removes; never a segment without its log, whose outcomes would
 * be lost and its messages sent again. No I/O here.
 */
#ifndef RINGMX_SEGMENT_REMOVE_H
#define RINGMX_SEGMENT_REMOVE_H

#include "delivery_log.h"
#include "io_plan.h"
#include "segment.h"

enum segment_remove_state {
	SEGMENT_REMOVE_SEGMENT,
	SEGMENT_REMOVE_DIRSYNC_LOG, /* fsync the directory, linked to the log's unlink */
	SEGMENT_REMOVE_DONE,
};

struct segment_remove {
	enum segment_remove_state state;
	int dir_fd;
	uint32_t seq;
	char seg_name[SEGMENT_NAME_MAX_BYTES];
	char log_name[DELIVERY_LOG_NAME_MAX_BYTES];
	/* Outcome, once DONE: the first failure and where (0: none). A segment
	 * already gone (ENOENT) is no failure. After a failed unlink or
	 * directory fsync the log is kept. */
	int error;
	enum io_step_op failed_op;
	bool log_kept;
};

void segment_remove_start(struct segment_remove *r, int dir_fd, uint32_t seq);
bool segment_remove_plan(struct segment_remove *r, struct io_plan *p);
void segment_remove_advance(struct segment_remove *r, const struct io_plan *p);

#endif
