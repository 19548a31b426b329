/*
 * queue_recover.c - start-up replay of a shard's delivery logs (see
 * queue_recover.h): rebuilds the forwarder's pending set from the segments
 * and their logs.
 *
 * Where it sits: core/main calls queue_open() once per shard after
 * store_open() has cut torn tails; each segment is read through
 * segment_scan, each record's recipients counted with
 * record_envelope_decode, its log replayed (delivery_log_apply) and every
 * record with a pending recipient handed to the runtime queue
 * (queue_restore). The store tool reads the same replay
 * (queue_recover_load) for its offline commands.
 *
 * Invariants: only the valid prefix of a log is applied; an entry naming no
 * record or recipient of its segment is counted, never applied. A record
 * whose envelope is malformed or names no recipient (or too many) cannot be
 * forwarded and counts as unreadable. Blocking; start-up and tools only.
 */
#include "queue_recover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "record.h"
#include "segment.h"

void queue_recover_free(struct queue_recover_segment *ls)
{
	free(ls->rec);
	free(ls->states);
	memset(ls, 0, sizeof(*ls));
}

/* Recipients of a checked record; 0 when its envelope is malformed or
 * names none (such a record cannot be forwarded). */
static uint32_t count_recipients(const struct record_view *v)
{
	struct record_envelope e;
	record_envelope_decode(v->envelope, &e);
	if (e.malformed || e.recipient_count > SMTP_RECIPIENTS_MAX)
		return 0;
	return e.recipient_count;
}

/* The record of ls with this queue id (binary search), or NULL. */
static struct queue_recover_record *record_of(const struct queue_recover_segment *ls,
					      uint64_t queue_id)
{
	size_t lo = 0, hi = ls->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ls->rec[mid].queue_id < queue_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < ls->count && ls->rec[lo].queue_id == queue_id ? &ls->rec[lo] : NULL;
}

const struct queue_recover_record *queue_recover_find(const struct queue_recover_segment *ls,
						      uint64_t queue_id)
{
	return record_of(ls, queue_id);
}

/* Scans the mapped image twice: once to size the arrays, once to fill
 * them, never past what the first pass counted. */
static int load_records(const struct segment_map *m, uint32_t worker, uint32_t seq,
			struct queue_recover_segment *ls)
{
	struct segment_scan s;
	struct segment_item it;
	size_t records = 0;
	uint64_t rcpts = 0;
	segment_scan_init(&s, m->image, m->size_bytes, worker, seq);
	while (segment_scan_next(&s, &it)) {
		if (it.kind == SEGMENT_ITEM_RECORD) {
			uint32_t n = count_recipients(&it.record);
			records += n > 0;
			rcpts += n;
		}
	}
	if (records == 0)
		return 0;
	ls->rec = calloc(records, sizeof(*ls->rec));
	ls->states = calloc((size_t)rcpts, 1);
	if (ls->rec == NULL || ls->states == NULL)
		return -ENOMEM;
	uint64_t used = 0;
	segment_scan_init(&s, m->image, m->size_bytes, worker, seq);
	while (segment_scan_next(&s, &it)) {
		if (it.kind != SEGMENT_ITEM_RECORD) {
			ls->unreadable += it.kind == SEGMENT_ITEM_CORRUPT ||
					  it.kind == SEGMENT_ITEM_TORN_TAIL;
			continue;
		}
		uint32_t n = count_recipients(&it.record);
		if (n == 0) {
			ls->unreadable++;
			continue;
		}
		/* The tool reads shards a running gateway appends to: what
		 * was committed after the first pass waits for the next look. */
		if (ls->count == records || n > rcpts - used)
			break;
		struct queue_recover_record *r = &ls->rec[ls->count++];
		r->queue_id = it.record.header.queue_id;
		r->padded_bytes = it.record.padded_length;
		r->arrival_unix_ms = it.record.header.arrival_unix_ms;
		r->replay.rcpt_state = ls->states + used;
		r->replay.rcpt_count = n;
		r->replay.pending = n;
		used += n;
		RMX_ASSERT(ls->count == 1 || ls->rec[ls->count - 2].queue_id < r->queue_id);
	}
	return 0;
}

/* Applies the valid prefix of a log image to the records of ls; entries
 * naming no record (or recipient) of this segment are counted, not used. */
static void replay_log(const uint8_t *image, size_t len, struct queue_recover_segment *ls)
{
	size_t valid = delivery_log_valid_prefix(image, len);
	ls->log_valid_bytes = valid;
	ls->log_bad_bytes = len - valid;
	for (size_t off = 0; off < valid; off += DELIVERY_LOG_ENTRY_BYTES) {
		struct delivery_log_entry e;
		RMX_ASSERT(delivery_log_entry_decode(image + off, &e) == DELIVERY_LOG_OK);
		ls->log_entries++;
		struct queue_recover_record *r = record_of(ls, e.queue_id);
		if (r == NULL || !delivery_log_apply(&r->replay, &e))
			ls->log_unmatched++;
	}
}

int queue_recover_load(int dirfd, uint32_t worker, uint32_t seq,
		       struct queue_recover_segment *ls, const char **what)
{
	memset(ls, 0, sizeof(*ls));
	struct segment_map m;
	*what = "read segment";
	int rc = segment_map_open(dirfd, seq, false, &m);
	if (rc != 0)
		return rc;
	rc = load_records(&m, worker, seq, ls);
	segment_map_close(&m, false);
	if (rc != 0) {
		queue_recover_free(ls);
		return rc;
	}
	uint8_t *image = NULL;
	size_t len = 0;
	*what = "read delivery log";
	rc = delivery_log_read(dirfd, seq, &image, &len);
	if (rc != 0) {
		queue_recover_free(ls);
		return rc;
	}
	replay_log(image, len, ls);
	free(image);
	return 0;
}

int queue_recover_error(char *err, size_t errlen, int rc, const char *what, const char *dir,
			uint32_t worker, uint32_t seq)
{
	if (errlen > 0 && seq != 0)
		snprintf(err, errlen, "queue: %s %s/w%u/%08u: %s", what, dir, (unsigned)worker,
			 (unsigned)seq, strerror(-rc));
	else if (errlen > 0)
		snprintf(err, errlen, "queue: %s %s/w%u: %s", what, dir, (unsigned)worker,
			 strerror(-rc));
	return rc;
}

int queue_recover_open_shard(const char *data_dir, uint32_t worker, int *dirfd)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/w%u", data_dir, (unsigned)worker);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	*dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return *dirfd < 0 ? -errno : 0;
}

/* Queues the records of ls with pending recipients, due at the later of
 * now and the next attempt their log names. */
static int queue_loaded(struct queue *q, const struct queue_recover_segment *ls,
			int64_t now_unix_ms, struct queue_recovery_stats *stats)
{
	for (size_t i = 0; i < ls->count; i++) {
		const struct queue_recover_record *r = &ls->rec[i];
		if (r->replay.pending == 0) {
			stats->records_final++;
			continue;
		}
		int rc = queue_restore(q, r->queue_id, r->padded_bytes, r->arrival_unix_ms,
				       &r->replay,
				       RMX_MAX(now_unix_ms, r->replay.next_attempt_unix_ms));
		if (rc != 0)
			return rc;
		stats->messages_pending++;
		stats->recipients_pending += r->replay.pending;
	}
	return 0;
}

/* Removes <seq>.dlog files whose segment is not in seqs[0..count). */
static int remove_orphan_logs(int dirfd, const uint32_t *seqs, size_t count, uint32_t *removed)
{
	DIR *dir;
	int orc = segment_opendir(dirfd, &dir);
	if (orc != 0)
		return orc;
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (errno = 0, de = readdir(dir)) != NULL) {
		uint32_t seq;
		if (!delivery_log_name_parse(de->d_name, &seq))
			continue;
		bool present = false;
		for (size_t lo = 0, hi = count; lo < hi && !present;) {
			size_t mid = lo + (hi - lo) / 2;
			present = seqs[mid] == seq;
			if (seqs[mid] < seq)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (present)
			continue;
		if (unlinkat(dirfd, de->d_name, 0) != 0)
			rc = -errno;
		else
			(*removed)++;
	}
	if (rc == 0 && errno != 0)
		rc = -errno;
	closedir(dir);
	return rc;
}

/* Recovers one segment into q: load, queue, open its log for appending. */
static int recover_segment(struct queue *q, const struct queue_config *cfg, int dirfd,
			   uint32_t seq, struct queue_recovery_stats *stats, const char **what)
{
	struct queue_recover_segment ls;
	int rc = queue_recover_load(dirfd, cfg->worker, seq, &ls, what);
	if (rc != 0)
		return rc;
	stats->segments++;
	stats->records += ls.count;
	stats->records_unreadable += ls.unreadable;
	stats->log_entries += ls.log_entries;
	stats->log_bad_bytes += ls.log_bad_bytes;
	stats->log_unmatched += ls.log_unmatched;
	*what = "open delivery log";
	int fd = -1;
	rc = delivery_log_open_for_append(dirfd, seq, ls.log_valid_bytes, cfg->fsync, &fd);
	if (rc == 0) {
		rc = queue_log_resume(q, seq, fd, ls.log_valid_bytes);
		if (rc != 0)
			close(fd);
	}
	if (rc == 0) {
		*what = "queue records of";
		rc = queue_loaded(q, &ls, cfg->now_unix_ms, stats);
		/* A segment with records is at least as new as the active one's
		 * predecessors: every segment below it is sealed. */
		if (rc == 0 && ls.count > 0)
			queue_set_active_segment(q, seq);
	}
	queue_recover_free(&ls);
	return rc;
}

int queue_open(const struct queue_config *cfg, struct queue **out,
	       struct queue_recovery_stats *stats, char *err, size_t errlen)
{
	memset(stats, 0, sizeof(*stats));
	*out = NULL;
	if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0')
		return queue_recover_error(err, errlen, -EINVAL, "no data_dir for shard", "",
					   cfg->worker, 0);
	struct queue *q;
	int rc = queue_new(cfg, &q);
	if (rc != 0)
		return queue_recover_error(err, errlen, rc, "configure queue of", cfg->data_dir,
					   cfg->worker, 0);
	int dirfd;
	rc = queue_recover_open_shard(cfg->data_dir, cfg->worker, &dirfd);
	if (rc != 0) {
		queue_close(q);
		return queue_recover_error(err, errlen, rc, "open shard", cfg->data_dir,
					   cfg->worker, 0);
	}
	uint32_t *seqs = NULL;
	size_t count = 0;
	const char *what = "list segments of";
	uint32_t seq = 0;
	rc = segment_list(dirfd, &seqs, &count);
	for (size_t i = 0; rc == 0 && i < count; i++) {
		seq = seqs[i];
		rc = recover_segment(q, cfg, dirfd, seq, stats, &what);
	}
	if (rc == 0) {
		what = "remove orphan delivery logs in";
		seq = 0;
		rc = remove_orphan_logs(dirfd, seqs, count, &stats->orphan_logs_removed);
	}
	/* New log files and removed ones are durable before anything relies
	 * on them. */
	if (rc == 0 && cfg->fsync && fsync(dirfd) != 0) {
		what = "sync shard directory";
		rc = -errno;
	}
	free(seqs);
	close(dirfd);
	if (rc != 0) {
		queue_close(q);
		return queue_recover_error(err, errlen, rc, what, cfg->data_dir, cfg->worker, seq);
	}
	*out = q;
	return 0;
}
