/*
 * queue_offline.c - the store tool's view of the forwarding queue (see
 * queue_offline.h): list and find deferred messages, and the operator
 * changes made while the gateway is stopped (delete, requeue).
 *
 * Where it sits: offline code of storage/, beside the tool that is its only
 * user (DESIGN.md "Layout"). It reads each segment through the same replay
 * as start-up recovery (queue_recover_load), so the tool and the gateway
 * agree on what is pending. A change is one message-wide entry appended at
 * the end of the log's valid prefix, synced, under the shard lock: the
 * running gateway writes logs at offsets it keeps in memory, so nothing is
 * appended behind its back. Blocking by design.
 */
#include "queue_offline.h"

#include <errno.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "../storage/delivery_log.h"
#include "../storage/queue_recover.h"
#include "../storage/record.h"
#include "../storage/segment.h"

/* What the listing says of one replayed record. */
static struct queue_deferred_info deferred_info(const struct queue_recover_record *r)
{
	return (struct queue_deferred_info){
		.queue_id = r->queue_id,
		.arrival_unix_ms = r->arrival_unix_ms,
		.next_attempt_unix_ms = r->replay.next_attempt_unix_ms,
		.attempts = r->replay.attempts,
		.last_reply_code = r->replay.last_reply_code,
		.last_enhanced = r->replay.last_enhanced,
		.rcpt_count = r->replay.rcpt_count,
		.rcpt_pending = r->replay.pending,
	};
}

/*
 * Writes len bytes of entries at offset at of <seq>.dlog (the end of its
 * valid prefix, so a torn tail is overwritten), then fdatasync. 0 or
 * -errno; *what names the step that failed.
 */
static int log_append_synced(int dirfd, uint32_t seq, uint64_t at, const uint8_t *bytes,
			     size_t len, const char **what)
{
	int fd = -1;
	*what = "open delivery log";
	int rc = delivery_log_open_for_append(dirfd, seq, at, true, &fd);
	if (rc != 0)
		return rc;
	*what = "append to delivery log";
	rc = segment_write_all_at(fd, bytes, len, at);
	if (rc == 0 && fdatasync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

int queue_offline_list(const char *data_dir, uint32_t worker, queue_deferred_fn *each, void *ctx,
		       char *err, size_t errlen)
{
	if (worker >= WORKERS_MAX)
		return queue_recover_error(err, errlen, -EINVAL, "list shard", data_dir, worker, 0);
	int dirfd;
	int rc = queue_recover_open_shard(data_dir, worker, &dirfd);
	if (rc != 0)
		return queue_recover_error(err, errlen, rc, "open shard", data_dir, worker, 0);
	uint32_t *seqs = NULL;
	size_t count = 0;
	rc = segment_list(dirfd, &seqs, &count);
	if (rc != 0) {
		close(dirfd);
		return queue_recover_error(err, errlen, rc, "list segments of", data_dir, worker,
					   0);
	}
	int stop = 0;
	for (size_t i = 0; rc == 0 && stop == 0 && i < count; i++) {
		struct queue_recover_segment ls;
		const char *what;
		rc = queue_recover_load(dirfd, worker, seqs[i], &ls, &what);
		if (rc == -ENOENT) {
			rc = 0; /* removed since the listing (reclaimed) */
			continue;
		}
		if (rc != 0) {
			rc = queue_recover_error(err, errlen, rc, what, data_dir, worker, seqs[i]);
			break;
		}
		for (size_t k = 0; stop == 0 && k < ls.count; k++) {
			const struct queue_recover_record *r = &ls.rec[k];
			if (r->replay.pending == 0)
				continue;
			struct queue_deferred_info info = deferred_info(r);
			stop = each(ctx, &info);
		}
		queue_recover_free(&ls);
	}
	free(seqs);
	close(dirfd);
	return rc != 0 ? rc : stop;
}

/*
 * Opens shard DIR/w<worker> and takes its lock for an offline change. The
 * daemon writes logs at offsets it keeps in memory: never append behind its
 * back, so a running gateway makes this -EBUSY. 0, or -errno with err set.
 */
static int open_locked_shard(const char *data_dir, uint32_t worker, int *dirfd, char *err,
			     size_t errlen)
{
	int rc = queue_recover_open_shard(data_dir, worker, dirfd);
	if (rc != 0)
		return queue_recover_error(err, errlen, rc, "open shard", data_dir, worker, 0);
	if (flock(*dirfd, LOCK_EX | LOCK_NB) != 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(*dirfd);
		return queue_recover_error(err, errlen, rc, "lock shard (is ringmx running?)",
					   data_dir, worker, 0);
	}
	return 0;
}

int queue_offline_mark(const char *data_dir, uint64_t queue_id, enum queue_offline_action action,
		       int64_t now_unix_ms, char *err, size_t errlen)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(queue_id, &worker, &seq, &offset);
	if (worker >= WORKERS_MAX || seq == 0)
		return queue_recover_error(err, errlen, -EINVAL, "mark message in", data_dir,
					   worker, seq);
	int dirfd;
	int rc = open_locked_shard(data_dir, worker, &dirfd, err, errlen);
	if (rc != 0)
		return rc;
	struct queue_recover_segment ls;
	const char *what = "mark message in";
	rc = queue_recover_load(dirfd, worker, seq, &ls, &what);
	if (rc != 0) {
		close(dirfd);
		return queue_recover_error(err, errlen, rc, what, data_dir, worker, seq);
	}
	const struct queue_recover_record *r = queue_recover_find(&ls, queue_id);
	if (r == NULL || r->replay.pending == 0) {
		queue_recover_free(&ls);
		close(dirfd);
		return queue_recover_error(err, errlen, -ENOENT,
					   "no pending message at its place in", data_dir, worker,
					   seq);
	}
	struct delivery_log_entry e = {
		.type = action == QUEUE_OFFLINE_DELETE ? DELIVERY_LOG_DELETED : DELIVERY_LOG_REQUEUE,
		.rcpt = DELIVERY_LOG_RCPT_ALL,
		.queue_id = queue_id,
		.time_unix_ms = now_unix_ms,
		.attempt = r->replay.attempts,
	};
	uint8_t bytes[DELIVERY_LOG_ENTRY_BYTES];
	delivery_log_entry_encode(&e, bytes);
	uint64_t at = ls.log_valid_bytes;
	queue_recover_free(&ls);
	rc = log_append_synced(dirfd, seq, at, bytes, sizeof(bytes), &what);
	if (rc == 0 && fsync(dirfd) != 0) {
		what = "sync shard directory";
		rc = -errno;
	}
	close(dirfd); /* drops the lock */
	return rc != 0 ? queue_recover_error(err, errlen, rc, what, data_dir, worker, seq) : 0;
}

/* Appends REQUEUE entries for the records of one loaded segment whose next
 * attempt lies after now; adds their number to *requeued. */
static int requeue_segment(int dirfd, uint32_t seq, const struct queue_recover_segment *ls,
			   int64_t now_unix_ms, uint64_t *requeued, const char **what)
{
	size_t count = 0;
	for (size_t k = 0; k < ls->count; k++)
		count += ls->rec[k].replay.pending > 0 &&
			 ls->rec[k].replay.next_attempt_unix_ms > now_unix_ms;
	if (count == 0)
		return 0;
	*what = "requeue messages in";
	uint8_t *bytes = malloc(count * DELIVERY_LOG_ENTRY_BYTES);
	if (bytes == NULL)
		return -ENOMEM;
	size_t used = 0;
	for (size_t k = 0; k < ls->count; k++) {
		const struct queue_recover_record *r = &ls->rec[k];
		if (r->replay.pending == 0 || r->replay.next_attempt_unix_ms <= now_unix_ms)
			continue;
		struct delivery_log_entry e = {
			.type = DELIVERY_LOG_REQUEUE,
			.rcpt = DELIVERY_LOG_RCPT_ALL,
			.queue_id = r->queue_id,
			.time_unix_ms = now_unix_ms,
			.attempt = r->replay.attempts,
		};
		RMX_ASSERT(used < count);
		delivery_log_entry_encode(&e, bytes + used * DELIVERY_LOG_ENTRY_BYTES);
		used++;
	}
	RMX_ASSERT(used == count);
	int rc = log_append_synced(dirfd, seq, ls->log_valid_bytes, bytes,
				   count * DELIVERY_LOG_ENTRY_BYTES, what);
	free(bytes);
	if (rc == 0)
		*requeued += count;
	return rc;
}

int queue_offline_requeue_all(const char *data_dir, uint32_t worker, int64_t now_unix_ms,
			      uint64_t *requeued, char *err, size_t errlen)
{
	*requeued = 0;
	if (worker >= WORKERS_MAX)
		return queue_recover_error(err, errlen, -EINVAL, "requeue shard", data_dir, worker, 0);
	int dirfd;
	int rc = open_locked_shard(data_dir, worker, &dirfd, err, errlen);
	if (rc != 0)
		return rc;
	uint32_t *seqs = NULL;
	size_t count = 0;
	const char *what = "list segments of";
	uint32_t seq = 0;
	rc = segment_list(dirfd, &seqs, &count);
	bool wrote = false;
	for (size_t i = 0; rc == 0 && i < count; i++) {
		seq = seqs[i];
		struct queue_recover_segment ls;
		rc = queue_recover_load(dirfd, worker, seq, &ls, &what);
		if (rc != 0)
			break;
		uint64_t before = *requeued;
		rc = requeue_segment(dirfd, seq, &ls, now_unix_ms, requeued, &what);
		wrote = wrote || *requeued != before;
		queue_recover_free(&ls);
	}
	free(seqs);
	/* A log file created by the append is durable before we report. */
	if (rc == 0 && wrote && fsync(dirfd) != 0) {
		what = "sync shard directory";
		seq = 0;
		rc = -errno;
	}
	close(dirfd); /* drops the lock */
	return rc != 0 ? queue_recover_error(err, errlen, rc, what, data_dir, worker, seq) : 0;
}

int queue_offline_find(const char *data_dir, uint64_t queue_id, struct queue_deferred_info *out,
		       char *err, size_t errlen)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(queue_id, &worker, &seq, &offset);
	if (worker >= WORKERS_MAX || seq == 0)
		return 0;
	int dirfd;
	int rc = queue_recover_open_shard(data_dir, worker, &dirfd);
	if (rc == -ENOENT)
		return 0;
	if (rc != 0)
		return queue_recover_error(err, errlen, rc, "open shard", data_dir, worker, 0);
	struct queue_recover_segment ls;
	const char *what;
	rc = queue_recover_load(dirfd, worker, seq, &ls, &what);
	close(dirfd);
	if (rc == -ENOENT)
		return 0; /* no such segment (or reclaimed: every record final) */
	if (rc != 0)
		return queue_recover_error(err, errlen, rc, what, data_dir, worker, seq);
	const struct queue_recover_record *r = queue_recover_find(&ls, queue_id);
	int found = r != NULL && r->replay.pending > 0;
	if (found) {
		*out = deferred_info(r);
	}
	queue_recover_free(&ls);
	return found;
}

