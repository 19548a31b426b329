/*
 * forward_upkeep.c - the disk work a forwarder does for its shards once
 * outcomes are known: the delivery-log commit and segment reclamation.
 *
 * Outcomes go into the queues' delivery logs in memory; the commit writes
 * them (each log's write linked to its fdatasync) and the queue takes the
 * results. A segment whose every recipient is final is reclaimable: it is
 * unlinked, the directory is fsynced, then its delivery log is unlinked, so
 * a crash never leaves a segment without its log. Both are storage's plans
 * performed by store_io, each one at a time; a failure is logged and
 * counted, never fatal.
 */
#include "forward_upkeep.h"

#include <unistd.h>

#include "../storage/store.h"
#include "forward_record.h"
#include "metrics.h"

/*
 * The delivery-log commit: the queue plans it (queue_commit_plan: each
 * log's write linked to its fdatasync), store_io performs it, and
 * queue_commit_advance takes the results. One in flight, the shards taking
 * turns; a commit starts only from delivery_log_submit, once per tick.
 */
static bool delivery_log_plan(void *owner, struct io_plan *p)
{
	struct forward *f = owner;
	if (!f->delivery_log_wanted)
		return false;
	uint32_t n = f->env.shard_count;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t shard = (f->delivery_log_next + k) % n;
		if (queue_commit_plan(shard_queue(f, shard), p)) {
			f->delivery_log_wanted = false;
			f->delivery_log_shard = shard;
			f->delivery_log_next = shard + 1;
			return true;
		}
	}
	return false;
}

static void delivery_log_advance(void *owner, const struct io_plan *p)
{
	struct forward *f = owner;
	int rc = queue_commit_advance(shard_queue(f, f->delivery_log_shard), p);
	if (rc != 0) {
		log_error("event=delivery_log_failed worker=%u error=%s", f->env.worker,
			  log_errno_name(rc));
		metrics_inc(&f->env.metrics->delivery_log_failures);
	}
}

static void delivery_log_submit(struct forward *f)
{
	f->delivery_log_wanted = true;
	store_io_kick(f->env.io, &f->delivery_log_job);
	f->delivery_log_wanted = false;
}

/* The removal of a reclaimable segment and its log: storage plans it
 * (segment_remove.h: the segment, a directory fsync, then the log), store_io
 * performs it. One at a time, the shards taking turns from the first. */
static void reclaim_finish(struct forward *f)
{
	const struct segment_remove *r = &f->reclaim;
	f->reclaim_inflight = false;
	const struct forward_shard *sh = &f->env.shards[f->reclaim_shard];
	if (r->error != 0)
		log_error("event=segment_unlink_failed worker=%u seq=%u op=%s log_kept=%d error=%s",
			  f->env.worker, r->seq, io_step_op_name(r->failed_op), (int)r->log_kept,
			  log_errno_name(r->error));
	int fd = queue_reclaimed(sh->queue, r->seq);
	if (fd >= 0)
		close(fd);
	store_segment_removed(sh->store, r->seq);
	log_info("event=segment_reclaimed worker=%u shard=w%u seq=%u", f->env.worker, sh->id,
		 r->seq);
}

static bool reclaim_plan(void *owner, struct io_plan *p)
{
	struct forward *f = owner;
	if (!f->reclaim_inflight)
		return false;
	if (segment_remove_plan(&f->reclaim, p))
		return true;
	reclaim_finish(f);
	return false;
}

static void reclaim_advance(void *owner, const struct io_plan *p)
{
	struct forward *f = owner;
	segment_remove_advance(&f->reclaim, p);
}

static void reclaim_submit(struct forward *f)
{
	uint32_t seq = 0, shard = 0;
	if (f->reclaim_inflight)
		return;
	while (shard < f->env.shard_count && !queue_reclaimable(shard_queue(f, shard), &seq))
		shard++;
	if (shard == f->env.shard_count)
		return;
	forward_record_forget_segment(f, shard, seq);
	f->reclaim_inflight = true;
	f->reclaim_shard = shard;
	segment_remove_start(&f->reclaim, store_dir_fd(f->env.shards[shard].store), seq);
	store_io_kick(f->env.io, &f->reclaim_job);
}

void forward_upkeep_jobs_add(struct forward *f)
{
	store_io_add(f->env.io, &f->delivery_log_job, delivery_log_plan, delivery_log_advance, f);
	store_io_add(f->env.io, &f->reclaim_job, reclaim_plan, reclaim_advance, f);
}

void forward_upkeep_submit(struct forward *f)
{
	delivery_log_submit(f);
	reclaim_submit(f);
}

bool forward_upkeep_busy(const struct forward *f)
{
	bool busy = false;
	for (uint32_t k = 0; k < f->env.shard_count; k++)
		busy |= queue_commit_busy(shard_queue(f, k));
	return busy || f->delivery_log_job.busy || f->reclaim_inflight;
}
