/*
 * queue_recover.h - the start-up replay of one shard's delivery logs, which
 * rebuilds the forwarder's pending set (queue_open), and the replay of one
 * segment that it is made of (queue_recover_load), which the store tool's
 * offline commands read too.
 *
 * Replay: every valid record of a segment (segment_scan) with its
 * recipients counted, then the valid prefix of the segment's log applied
 * (delivery_log_apply); what is left pending is what the gateway still has
 * to forward. Blocking (start-up and tools); the runtime queue is queue.h.
 */
#ifndef RINGMX_QUEUE_RECOVER_H
#define RINGMX_QUEUE_RECOVER_H

#include "../common/base.h"
#include "delivery_log.h"
#include "queue.h"

struct queue_recovery_stats {
	uint32_t segments;            /* segment files read */
	uint64_t records;             /* valid records found */
	uint64_t records_final;       /* every recipient final: not queued */
	uint64_t messages_pending;    /* queued again */
	uint64_t recipients_pending;
	uint64_t records_unreadable;  /* corrupt regions or torn tails skipped */
	uint64_t log_entries;         /* valid log entries replayed */
	uint64_t log_bad_bytes;       /* torn/bad log tails cut off */
	uint64_t log_unmatched;       /* entries naming no record or recipient */
	uint32_t orphan_logs_removed; /* <seq>.dlog without its <seq>.seg */
};

/*
 * Start-up (blocking), after store_open() of the same shard (the store has
 * cut torn tails and holds the shard lock; this does not lock): reads every
 * segment of DIR/w<worker>, counts each valid record's recipients, replays
 * its delivery log, opens each log for appending (creating missing ones,
 * cutting bad tails; fdatasync when cfg->fsync) and queues every record
 * with a pending recipient, attempts and last reply from the log, due at
 * the later of cfg->now_unix_ms and the next attempt its log names (a
 * restart does not undo backoff; an operator REQUEUE makes it due at
 * once). Removes logs whose segment is gone. Returns 0 and
 * *out, or -errno with a message in err[errlen].
 */
RMX_MUST_CHECK int queue_open(const struct queue_config *cfg, struct queue **out,
			      struct queue_recovery_stats *stats, char *err, size_t errlen);

/* One valid record of a segment with what its log says about it. */
struct queue_recover_record {
	uint64_t queue_id;
	uint64_t padded_bytes;
	int64_t arrival_unix_ms;
	struct delivery_log_replay_msg replay; /* rcpt_state points into states */
};

/* A segment read and its log replayed (queue_recover_load). */
struct queue_recover_segment {
	struct queue_recover_record *rec; /* in offset order, so by queue id */
	size_t count;
	uint8_t *states;           /* every record's recipient states */
	uint64_t log_valid_bytes;  /* where an append to the log goes */
	uint64_t log_bad_bytes;
	uint64_t log_entries;
	uint64_t log_unmatched;
	uint64_t unreadable;       /* corrupt regions, torn tail, records without recipients */
};

/*
 * Reads segment seq of the shard open at dirfd (worker's) and replays its
 * log into *ls, which the caller frees with queue_recover_free. Only records
 * that name at least one recipient are kept. Returns 0 or -errno (-ENOENT:
 * no such segment); *what names the step that failed. Blocking; allocates.
 */
RMX_MUST_CHECK int queue_recover_load(int dirfd, uint32_t worker, uint32_t seq,
				      struct queue_recover_segment *ls, const char **what);
void queue_recover_free(struct queue_recover_segment *ls);

/* The record of ls with this queue id, or NULL (binary search). */
const struct queue_recover_record *queue_recover_find(const struct queue_recover_segment *ls,
						      uint64_t queue_id);

/* Opens DIR/w<worker> (O_DIRECTORY): 0 and *dirfd, or -errno. */
RMX_MUST_CHECK int queue_recover_open_shard(const char *data_dir, uint32_t worker, int *dirfd);

/* Writes "queue: WHAT DIR/w<worker>[/<seq>]: strerror" into err (seq 0: no
 * segment) and returns rc: the error form of this module and of the
 * offline commands built on it. */
int queue_recover_error(char *err, size_t errlen, int rc, const char *what, const char *dir,
			uint32_t worker, uint32_t seq);

#endif
