/*
 * queue_offline.h - the forwarding queue as the store tool sees it: the
 * deferred messages of a shard, read from its segments and delivery logs,
 * and the operator's changes while the gateway is stopped.
 *
 * Offline code of storage/ (DESIGN.md "Layout"): built into a small library
 * beside tools/ringmx-store.c, linked by the tool and its tests, never by
 * the gateway. Every function blocks. Reading (list, find) is safe while
 * ringmx runs; a change (mark, requeue_all) takes the shard lock and is
 * refused with -EBUSY while it runs. Errors come back as -errno with a
 * message in err[errlen] ("queue: WHAT DIR/w<N>[/<seq>]: reason").
 */
#ifndef RINGMX_QUEUE_OFFLINE_H
#define RINGMX_QUEUE_OFFLINE_H

#include "../common/base.h"

struct queue_deferred_info {
	uint64_t queue_id;
	int64_t arrival_unix_ms;
	int64_t next_attempt_unix_ms;   /* 0: due at once (never attempted) */
	uint16_t attempts;
	uint16_t last_reply_code;
	uint16_t last_enhanced;
	uint32_t rcpt_count;
	uint32_t rcpt_pending;
};

/*
 * Calls each(ctx, info) for every record of shard DIR/w<worker> with a
 * pending recipient, in segment and offset order; stops early when each
 * returns non-zero (that value is returned). Returns 0 or -errno with a
 * message in err.
 */
typedef int queue_deferred_fn(void *ctx, const struct queue_deferred_info *info);
RMX_MUST_CHECK int queue_offline_list(const char *data_dir, uint32_t worker,
				      queue_deferred_fn *each, void *ctx, char *err,
				      size_t errlen);

enum queue_offline_action {
	QUEUE_OFFLINE_DELETE,  /* DELETED for every pending recipient */
	QUEUE_OFFLINE_REQUEUE, /* REQUEUE: due at now on the next start */
};

/*
 * Appends one message-wide entry for queue_id to its segment's log (then
 * fdatasync). Needs the daemon stopped: takes the shard lock (-EBUSY while
 * ringmx runs). -ENOENT when the record is not there or has no pending
 * recipient. Returns 0 or -errno with a message in err.
 */
RMX_MUST_CHECK int queue_offline_mark(const char *data_dir, uint64_t queue_id,
				      enum queue_offline_action action, int64_t now_unix_ms,
				      char *err, size_t errlen);

/*
 * Like queue_offline_mark, under the shard lock (-EBUSY while ringmx
 * runs): appends a REQUEUE entry (then fdatasync) for every record of shard
 * DIR/w<worker> with a pending recipient whose next attempt is after now;
 * *requeued counts them. Each segment is read once. Returns 0 or -errno
 * with a message in err.
 */
RMX_MUST_CHECK int queue_offline_requeue_all(const char *data_dir, uint32_t worker,
					     int64_t now_unix_ms, uint64_t *requeued,
					     char *err, size_t errlen);

/*
 * Safe while ringmx runs (like queue_offline_list): reads only the segment
 * queue_id names and its log. Returns 1 and *out when the record is there
 * with a pending recipient, 0 when it is not (no such shard, segment or
 * record, or every recipient final), or -errno with a message in err.
 */
RMX_MUST_CHECK int queue_offline_find(const char *data_dir, uint64_t queue_id,
				      struct queue_deferred_info *out, char *err, size_t errlen);

#endif
