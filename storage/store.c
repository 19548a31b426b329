/*
 * store.c - one worker's shard of the segment store (see store.h).
 *
 * Where it sits: core/conn finishes a message, core/ seals its record and
 * calls store_reserve() + store_append(); the worker loop asks
 * store_commit_begin() for the next group commit, runs pwritev + fdatasync
 * as linked SQEs, and reports back with store_commit_done(), which releases
 * the "250 queued as ID" replies of every record in the batch.
 *
 * Batches: a ring of STORE_BATCH_SLOTS batches, oldest first. The oldest may
 * be in flight; the newest accepts records while it has room (records,
 * iovecs) and lies in the active segment right after the previous record.
 * Otherwise a reservation opens a new batch, so a full batch never loses a
 * record; only a full ring answers -EAGAIN. A batch covers one contiguous
 * byte range of one segment, so it is exactly one pwritev.
 *
 * Invariants: at most one commit in flight, always the oldest batch. A batch
 * holding the outstanding reservation is never handed out before its
 * append. Offsets handed out only grow within a segment, start after its
 * header block, and the queue id of a reservation is the id sealed into the
 * record appended for it (asserted). After a failed write or sync the shard
 * is failed for good: every queued record is answered -EIO and nothing new
 * is taken.
 *
 * Salts: each segment in use has a random salt, kept in a table sorted by
 * sequence (filled at recovery, extended when the spare becomes active,
 * shrunk when core/ removes a segment). A batch writes its own copies of its
 * records' headers, with the CRC record_seal() computed salted for the
 * batch's segment; the forwarder checks what it reads back through
 * store_record_check(). The table grows only at start-up and when a spare
 * is handed over, never when a record is reserved.
 *
 * Only store_open() and store_close() touch the file system; the hot-path
 * functions make no system calls (retired segment fds are handed to core/
 * through store_retired_fd()).
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "segment.h"


_Static_assert(COMMIT_IOV_MAX >= STORE_APPEND_PARTS_MAX, "one record fits a batch");
_Static_assert(STORE_BATCH_BYTES_MAX < STORE_RECORD_MAX_BYTES, "a batch is one write");
_Static_assert(STORE_RECORD_MAX_BYTES <= INT32_MAX, "commit results are ints");
_Static_assert(WORKERS_MAX <= 256, "the queue id holds the worker in 8 bits");
_Static_assert(SEGMENT_SIZE_MAX_BYTES / RECORD_ALIGN_BYTES <= (1ull << 32),
	       "the queue id holds offset/8 in 32 bits");
_Static_assert(SEGMENT_SIZE_MIN_BYTES > SEGMENT_HEADER_BYTES, "a segment has room for records");

struct store_batch {
	uint32_t seq;              /* segment written by this batch */
	int fd;
	uint64_t offset;           /* where the batch starts in the segment */
	uint64_t bytes;            /* reserved bytes, contiguous from offset */
	uint32_t records;          /* including a reservation not yet appended */
	int iovcnt;
	bool in_flight;
	bool pending_append;       /* holds the outstanding reservation */
	uint64_t salt;             /* of segment seq */
	struct iovec iov[COMMIT_IOV_MAX];
	uint64_t cookie[COMMIT_BATCH_RECORDS_MAX];
	struct record_header header[COMMIT_BATCH_RECORDS_MAX]; /* salted copies, written */
};

struct segment_salt {
	uint32_t seq;
	uint64_t salt;
};

struct store {
	char *data_dir;
	uint32_t worker;
	uint64_t segment_size_bytes;
	uint64_t store_max_bytes;
	bool fsync;
	bool leftover;             /* store_open_leftover: takes no new records */
	int dir_fd;                /* DIR/w<N>, flock()ed for the shard's lifetime */

	uint32_t active_seq;
	uint64_t active_salt;
	int active_fd;
	uint64_t active_size_bytes;
	uint64_t active_tail;      /* next reservation starts here */
	bool active_sealed;        /* a record did not fit: waiting for the spare */

	int spare_fd;              /* -1: none */
	uint32_t spare_seq;
	uint64_t spare_salt;
	bool spare_requested;      /* handed out by store_spare_wanted, not back yet */
	bool spare_header_made;    /* store_spare_header called for the request */
	int spare_error;           /* the last failed spare, 0 when the last worked */
	char spare_path[PATH_MAX];

	bool reserved;
	uint64_t reserved_id;
	uint64_t reserved_bytes;
	uint32_t reserved_slot;

	struct store_batch *batch; /* STORE_BATCH_SLOTS */
	uint32_t batch_head;
	uint32_t batch_count;
	bool in_flight;
	bool failed;

	int retired_fd[STORE_RETIRED_FDS_MAX];
	uint32_t retired_count;

	struct segment_salt *salts; /* segments in use, ascending seq */
	uint32_t salt_count;
	uint32_t salt_cap;

	uint32_t segments_in_use;  /* active and sealed, not the spare */
	uint64_t records_committed;
	uint64_t commits;
};

/* Room for `more` salts beyond those held. 0 or -ENOMEM. */
static int salt_reserve(struct store *st, uint32_t more)
{
	if (more <= st->salt_cap - st->salt_count)
		return 0;
	if (more > UINT32_MAX / 2 - st->salt_count)
		return -ENOMEM;
	uint32_t cap = RMX_MAX(st->salt_count + more, st->salt_cap ? st->salt_cap * 2 : 64u);
	struct segment_salt *grown = realloc(st->salts, cap * sizeof(*grown));
	if (grown == NULL)
		return -ENOMEM;
	st->salts = grown;
	st->salt_cap = cap;
	return 0;
}

/* Appends a segment newer than every one held; room was reserved. */
static void salt_put(struct store *st, uint32_t seq, uint64_t salt)
{
	RMX_ASSERT(st->salt_count < st->salt_cap);
	RMX_ASSERT(st->salt_count == 0 || st->salts[st->salt_count - 1].seq < seq);
	st->salts[st->salt_count++] = (struct segment_salt){ seq, salt };
}

/* Index of seq in the table, or salt_count. */
static uint32_t salt_index(const struct store *st, uint32_t seq)
{
	uint32_t lo = 0, hi = st->salt_count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (st->salts[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < st->salt_count && st->salts[lo].seq == seq ? lo : st->salt_count;
}

static struct store_batch *batch_at(struct store *st, uint32_t i)
{
	RMX_ASSERT(i < st->batch_count);
	return &st->batch[(st->batch_head + i) % STORE_BATCH_SLOTS];
}

static bool batches_use_seq(struct store *st, uint32_t seq)
{
	for (uint32_t i = 0; i < st->batch_count; i++)
		if (batch_at(st, i)->seq == seq)
			return true;
	return false;
}

/* A sealed segment with nothing left to write: its fd goes to core/ to
 * close. Only when core/ does not collect them does the store close one
 * itself (a rare, cheap close of a regular file). */
static void retire_fd(struct store *st, int fd)
{
	RMX_ASSERT(fd >= 0 && fd != st->active_fd && fd != st->spare_fd);
	if (st->retired_count < STORE_RETIRED_FDS_MAX)
		st->retired_fd[st->retired_count++] = fd;
	else
		close(fd);
}

static void batch_pop(struct store *st)
{
	RMX_ASSERT(st->batch_count > 0);
	struct store_batch *b = batch_at(st, 0);
	uint32_t seq = b->seq;
	int fd = b->fd;
	b->records = 0;
	b->iovcnt = 0;
	b->bytes = 0;
	b->in_flight = false;
	b->pending_append = false;
	st->batch_head = (st->batch_head + 1) % STORE_BATCH_SLOTS;
	st->batch_count--;
	if (seq != st->active_seq && !batches_use_seq(st, seq))
		retire_fd(st, fd);
}

int store_admit(const struct store *st)
{
	if (st->leftover)
		return -EROFS;
	if (st->failed)
		return -EIO;
	if ((uint64_t)st->segments_in_use * st->segment_size_bytes >= st->store_max_bytes)
		return -ENOSPC;
	/* Sealed, no spare, and the last attempt to make one failed. */
	if (st->active_sealed && st->spare_fd < 0 && st->spare_error != 0)
		return -ENOSPC;
	return 0;
}

/* The active segment cannot take the next record: the spare takes over. */
static int roll_to_spare(struct store *st)
{
	st->active_sealed = true;
	if (st->spare_fd < 0)
		return -EAGAIN;
	if (!batches_use_seq(st, st->active_seq)) {
		int old = st->active_fd;
		st->active_fd = -1;
		retire_fd(st, old);
	}
	st->active_seq = st->spare_seq;
	st->active_salt = st->spare_salt;
	st->active_fd = st->spare_fd;
	st->active_size_bytes = st->segment_size_bytes;
	st->active_tail = SEGMENT_HEADER_BYTES;
	st->active_sealed = false;
	st->spare_fd = -1;
	st->segments_in_use++;
	salt_put(st, st->active_seq, st->active_salt); /* room reserved with the spare */
	return 0;
}

int store_reserve(struct store *st, uint64_t padded_bytes, uint64_t *queue_id)
{
	RMX_ASSERT(!st->reserved);
	if (st->leftover)
		return -EROFS;
	if (st->failed)
		return -EIO;
	if (padded_bytes < RECORD_HEADER_BYTES || padded_bytes % RECORD_ALIGN_BYTES != 0)
		return -EINVAL;
	if (padded_bytes > st->segment_size_bytes - SEGMENT_HEADER_BYTES ||
	    padded_bytes > STORE_RECORD_MAX_BYTES)
		return -E2BIG;
	if (st->active_sealed || padded_bytes > st->active_size_bytes - st->active_tail) {
		int rc = roll_to_spare(st);
		if (rc != 0)
			return rc;
	}
	RMX_ASSERT(padded_bytes <= st->active_size_bytes - st->active_tail);

	struct store_batch *b = NULL;
	if (st->batch_count > 0) {
		struct store_batch *last = batch_at(st, st->batch_count - 1);
		if (!last->in_flight && last->seq == st->active_seq &&
		    last->offset + last->bytes == st->active_tail &&
		    last->bytes + padded_bytes <= STORE_BATCH_BYTES_MAX &&
		    last->records < COMMIT_BATCH_RECORDS_MAX &&
		    last->iovcnt + STORE_APPEND_PARTS_MAX <= COMMIT_IOV_MAX)
			b = last;
	}
	if (b == NULL) {
		if (st->batch_count == STORE_BATCH_SLOTS)
			return -EAGAIN;
		st->batch_count++;
		b = batch_at(st, st->batch_count - 1);
		b->seq = st->active_seq;
		b->salt = st->active_salt;
		b->fd = st->active_fd;
		b->offset = st->active_tail;
		b->bytes = 0;
		b->records = 0;
		b->iovcnt = 0;
		b->in_flight = false;
	}
	b->pending_append = true;
	b->bytes += padded_bytes;
	b->records++;

	*queue_id = queue_id_make(st->worker, st->active_seq, st->active_tail);
	st->active_tail += padded_bytes;
	st->reserved = true;
	st->reserved_id = *queue_id;
	st->reserved_bytes = padded_bytes;
	st->reserved_slot = (uint32_t)(b - st->batch);
	return 0;
}

int store_append(struct store *st, uint64_t queue_id, const struct iovec *parts, int nparts,
		 uint64_t cookie)
{
	if (st->failed) {
		/* The failure answered every queued record; this one never was. */
		st->reserved = false;
		return -EIO;
	}
	RMX_ASSERT(st->reserved && queue_id == st->reserved_id);
	RMX_ASSERT(nparts >= 1 && nparts <= STORE_APPEND_PARTS_MAX);

	uint64_t total = 0;
	for (int i = 0; i < nparts; i++)
		total += parts[i].iov_len;
	RMX_ASSERT(total == st->reserved_bytes);
	struct store_batch *b = &st->batch[st->reserved_slot];
	RMX_ASSERT(b->pending_append && !b->in_flight && b->records > 0);

	/* The pair of the reservation: the sealed header names the same place. */
	RMX_ASSERT(parts[0].iov_len == RECORD_HEADER_BYTES);
	struct record_header *h = &b->header[b->records - 1];
	memcpy(h, parts[0].iov_base, sizeof(*h));
	RMX_ASSERT(h->magic == RECORD_MAGIC && h->version == RECORD_VERSION &&
		   h->queue_id == queue_id);
	RMX_ASSERT(h->length + record_padding(h->length) == total);
	/* The record's own CRC becomes its CRC in this segment. */
	h->crc32c = record_crc_salted(h->crc32c, b->salt);

	RMX_ASSERT(b->iovcnt < COMMIT_IOV_MAX);
	b->iov[b->iovcnt++] = (struct iovec){ h, RECORD_HEADER_BYTES };
	for (int i = 1; i < nparts; i++) {
		if (parts[i].iov_len == 0)
			continue;
		RMX_ASSERT(b->iovcnt < COMMIT_IOV_MAX);
		b->iov[b->iovcnt++] = parts[i];
	}
	b->cookie[b->records - 1] = cookie;
	b->pending_append = false;
	st->reserved = false;
	return 0;
}

bool store_commit_begin(struct store *st, struct store_commit *c)
{
	if (st->failed || st->in_flight || st->batch_count == 0)
		return false;
	struct store_batch *b = batch_at(st, 0);
	if (b->pending_append || b->records == 0)
		return false;
	uint64_t sum = 0;
	for (int i = 0; i < b->iovcnt; i++)
		sum += b->iov[i].iov_len;
	RMX_ASSERT(sum == b->bytes);
	RMX_ASSERT(b->seq != st->active_seq || b->offset + b->bytes <= st->active_size_bytes);

	b->in_flight = true;
	st->in_flight = true;
	c->fd = b->fd;
	c->offset = b->offset;
	c->iov = b->iov;
	c->iovcnt = b->iovcnt;
	c->bytes = b->bytes;
	c->sync = st->fsync;
	c->records = b->records;
	return true;
}

void store_commit_done(struct store *st, int result,
		       void (*done)(void *ctx, uint64_t cookie, int result), void *ctx)
{
	RMX_ASSERT(st->in_flight && st->batch_count > 0);
	struct store_batch *b = batch_at(st, 0);
	RMX_ASSERT(b->in_flight);
	uint64_t cookies[COMMIT_BATCH_RECORDS_MAX];

	/* A short write is a failed write: the tail of the batch is not there. */
	bool ok = result == 0 || (result > 0 && (uint64_t)result == b->bytes);
	st->in_flight = false;
	if (ok) {
		uint32_t n = b->records;
		memcpy(cookies, b->cookie, n * sizeof(cookies[0]));
		batch_pop(st);
		st->records_committed += n;
		st->commits++;
		for (uint32_t i = 0; i < n; i++)
			done(ctx, cookies[i], 0);
		return;
	}

	st->failed = true;
	while (st->batch_count > 0) {
		b = batch_at(st, 0);
		/* A reservation not yet appended has no cookie: its append fails. */
		uint32_t n = b->records - (b->pending_append ? 1 : 0);
		memcpy(cookies, b->cookie, n * sizeof(cookies[0]));
		batch_pop(st);
		for (uint32_t i = 0; i < n; i++)
			done(ctx, cookies[i], -EIO);
	}
}

bool store_busy(const struct store *st)
{
	return st->in_flight || st->batch_count > 0;
}

bool store_spare_wanted(struct store *st, const char **path, uint32_t *seq)
{
	if (st->leftover || st->failed || st->spare_fd >= 0 || st->spare_requested)
		return false;
	if (st->active_seq >= SEGMENT_SEQ_MAX)
		return false;
	uint32_t next = st->active_seq + 1;
	int n = snprintf(st->spare_path, sizeof(st->spare_path), "%s/w%u/%08u.seg", st->data_dir,
			 (unsigned)st->worker, (unsigned)next);
	if (n < 0 || (size_t)n >= sizeof(st->spare_path))
		return false; /* store_open checked that the longest path fits */
	st->spare_requested = true;
	st->spare_header_made = false;
	st->spare_seq = next;
	*path = st->spare_path;
	*seq = next;
	return true;
}

void store_spare_header(struct store *st, uint64_t salt, uint8_t block[SEGMENT_HEADER_BYTES])
{
	RMX_ASSERT(st->spare_requested && st->spare_fd < 0);
	segment_header_encode(block, st->worker, st->spare_seq, salt);
	st->spare_salt = salt;
	st->spare_header_made = true;
}

void store_spare_ready(struct store *st, uint32_t seq, int fd)
{
	RMX_ASSERT(st->spare_requested && seq == st->spare_seq && st->spare_fd < 0);
	st->spare_requested = false;
	if (fd < 0) {
		st->spare_error = fd;
		return;
	}
	RMX_ASSERT(st->spare_header_made);
	/* Its salt joins the table when it becomes active: room now, so that
	 * rolling over never allocates. */
	if (salt_reserve(st, 1) != 0) {
		st->spare_error = -ENOMEM;
		retire_fd(st, fd);
		return;
	}
	st->spare_error = 0;
	st->spare_fd = fd;
}

enum record_check_result store_record_check(const struct store *st, uint64_t queue_id,
					    const uint8_t *p, size_t avail, struct record_view *out)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(queue_id, &worker, &seq, &offset);
	uint32_t i = salt_index(st, seq);
	if (worker != st->worker || i == st->salt_count)
		return RECORD_BAD_HEADER;
	return record_check(p, avail, st->salts[i].salt, out);
}

int store_retired_fd(struct store *st)
{
	if (st->retired_count == 0)
		return -1;
	return st->retired_fd[--st->retired_count];
}

void store_segment_removed(struct store *st, uint32_t seq)
{
	RMX_ASSERT(seq < st->active_seq && !batches_use_seq(st, seq));
	/* The active segment always stays, but a leftover shard has none. */
	RMX_ASSERT(st->segments_in_use > (st->leftover ? 0u : 1u));
	st->segments_in_use--;
	uint32_t i = salt_index(st, seq);
	RMX_ASSERT(i < st->salt_count);
	memmove(&st->salts[i], &st->salts[i + 1],
		(st->salt_count - i - 1) * sizeof(st->salts[0]));
	st->salt_count--;
}

int store_dir_fd(const struct store *st)
{
	return st->dir_fd;
}

void store_get_stats(const struct store *st, struct store_stats *out)
{
	out->bytes_used = (uint64_t)st->segments_in_use * st->segment_size_bytes;
	out->segments = st->segments_in_use;
	out->records_committed = st->records_committed;
	out->commits = st->commits;
}

void store_close(struct store *st)
{
	if (st == NULL)
		return;
	RMX_ASSERT(!st->in_flight);
	/* Sealed segments that still had batches queued (a close before flush). */
	while (st->batch_count > 0)
		batch_pop(st);
	while (st->retired_count > 0)
		close(st->retired_fd[--st->retired_count]);
	if (st->active_fd >= 0)
		close(st->active_fd);
	if (st->spare_fd >= 0)
		close(st->spare_fd);
	if (st->dir_fd >= 0)
		close(st->dir_fd); /* drops the flock */
	free(st->salts);
	free(st->batch);
	free(st->data_dir);
	free(st);
}

/* ---- Start-up: listing shards, recovery (blocking). ---- */

/* "w<N>" with N decimal without leading zeros, N < WORKERS_MAX. */
static bool shard_name_parse(const char *name, uint32_t *worker)
{
	if (name[0] != 'w' || name[1] < '0' || name[1] > '9')
		return false;
	if (name[1] == '0' && name[2] != '\0')
		return false;
	uint32_t v = 0;
	const char *p = name + 1;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (uint32_t)(*p - '0');
		if (v >= WORKERS_MAX)
			return false;
	}
	if (*p != '\0')
		return false;
	*worker = v;
	return true;
}

static int compare_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

int store_list_shards(const char *data_dir, uint32_t *workers, uint32_t cap)
{
	DIR *dir = opendir(data_dir);
	if (dir == NULL)
		return -errno;
	uint32_t n = 0;
	int rc = 0;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(dir)) != NULL) {
		uint32_t w;
		if (!shard_name_parse(de->d_name, &w))
			continue;
		struct stat sb;
		if (fstatat(dirfd(dir), de->d_name, &sb, 0) != 0 || !S_ISDIR(sb.st_mode))
			continue;
		if (n == cap) {
			rc = -ENOBUFS;
			break;
		}
		workers[n++] = w;
		errno = 0;
	}
	if (rc == 0 && errno != 0)
		rc = -errno;
	closedir(dir);
	if (rc != 0)
		return rc;
	qsort(workers, n, sizeof(*workers), compare_u32);
	return (int)n;
}

static int fail(char *err, size_t errlen, int rc, const char *what, const char *where)
{
	if (errlen > 0)
		snprintf(err, errlen, "%s %s: %s", what, where, strerror(-rc));
	return rc;
}

/* Creates path (0700) unless it exists; a new entry is made durable by
 * syncing its parent directory. */
static int mkdir_durable(const char *path)
{
	if (mkdir(path, 0700) != 0)
		return errno == EEXIST ? 0 : -errno;
	char parent[PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof(parent))
		return -ENAMETOOLONG;
	memcpy(parent, path, n + 1);
	while (n > 1 && parent[n - 1] == '/')
		parent[--n] = '\0';
	char *slash = strrchr(parent, '/');
	if (slash == NULL)
		strcpy(parent, ".");
	else if (slash == parent)
		parent[1] = '\0';
	else
		*slash = '\0';
	int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (pfd < 0)
		return -errno;
	int rc = fsync(pfd) == 0 ? 0 : -errno;
	close(pfd);
	return rc;
}

/* Refuses a segment that holds data this version cannot check, saying what
 * the operator can do about it. */
static int refuse_segment(const struct store *st, const char *name,
			  enum segment_header_status status, char *err, size_t errlen)
{
	const char *advice;
	switch (status) {
	case SEGMENT_HEADER_FORMAT_1:
		advice = "let the earlier version forward all it holds first (stop new mail, "
			 "wait until its queue is empty), or move the shard directory aside";
		break;
	case SEGMENT_HEADER_VERSION:
		advice = "run the version that wrote it, or move the shard directory aside";
		break;
	default:
		advice = "its records cannot be checked: move the file out of the shard "
			 "directory (to keep it), then start again";
		break;
	}
	if (errlen > 0)
		snprintf(err, errlen,
			 "segment %s/w%u/%s: %s; this ringmx reads segment format %d only: %s",
			 st->data_dir, (unsigned)st->worker, name,
			 segment_header_status_name(status), SEGMENT_FORMAT_VERSION, advice);
	return -EPROTO;
}

/* Writes a fresh header (and salt) over the first block of a segment that
 * holds no record. */
static int give_header(struct store *st, uint32_t seq, int fd, uint64_t *salt)
{
	char name[SEGMENT_NAME_MAX_BYTES];
	segment_name_format(name, seq);
	int own = -1;
	if (fd < 0) {
		own = openat(st->dir_fd, name, O_RDWR | O_CLOEXEC);
		if (own < 0)
			return -errno;
		fd = own;
	}
	int rc = segment_write_header(fd, st->worker, seq, salt);
	if (own >= 0)
		close(own);
	return rc;
}

/* What recovery learnt of one segment. */
struct recovered {
	int fd;               /* kept open for the active segment only, else -1 */
	uint64_t size_bytes;
	uint64_t tail;        /* where writing would resume */
	uint64_t salt;
	uint32_t damaged;     /* CORRUPT and TORN_TAIL items set aside */
	bool has_records;     /* any byte past the header block */
};

/*
 * Recovers one segment: records counted, damage quarantined; in the active
 * segment a torn tail is copied to quarantine, then zeroed. A segment with
 * no record and no sound header (its preparation stopped before the header
 * was durable, or a format-1 spare) gets a header; one with data and no
 * header this version reads stops recovery (refuse_segment).
 */
static int recover_segment(struct store *st, uint32_t seq, bool active,
			   struct store_recovery_stats *stats, struct recovered *out, char *err,
			   size_t errlen)
{
	char name[SEGMENT_NAME_MAX_BYTES];
	segment_name_format(name, seq);
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	struct segment_map m;
	int rc = segment_map_open(st->dir_fd, seq, active, &m);
	if (rc != 0)
		return fail(err, errlen, rc, "open segment", name);

	struct segment_scan s;
	struct segment_item it;
	enum segment_header_status hs = segment_scan_init(&s, m.image, m.size_bytes, st->worker, seq);
	out->size_bytes = m.size_bytes;
	out->tail = SEGMENT_HEADER_BYTES;
	out->has_records = s.data_end > SEGMENT_HEADER_BYTES;
	if (hs != SEGMENT_HEADER_OK) {
		if (!segment_image_unused(m.image, m.size_bytes)) {
			segment_map_close(&m, false);
			return refuse_segment(st, name, hs, err, errlen);
		}
		rc = give_header(st, seq, active ? m.fd : -1, &out->salt);
		out->has_records = false;
	} else {
		out->salt = s.salt;
	}
	while (rc == 0 && hs == SEGMENT_HEADER_OK && segment_scan_next(&s, &it)) {
		switch (it.kind) {
		case SEGMENT_ITEM_RECORD:
			stats->records++;
			stats->bytes += it.length_bytes;
			break;
		case SEGMENT_ITEM_CORRUPT:
			rc = segment_quarantine(st->dir_fd, seq, it.offset, m.image + it.offset,
						it.length_bytes);
			stats->quarantined++;
			out->damaged++;
			break;
		case SEGMENT_ITEM_TORN_TAIL:
			if (active) {
				/* Normally the unacknowledged end of the last batch; but a
				 * damaged last record looks the same, so its bytes are kept
				 * in quarantine before the tail is zeroed: never destroyed. */
				rc = segment_quarantine(st->dir_fd, seq, it.offset,
							m.image + it.offset, it.length_bytes);
				if (rc == 0)
					rc = segment_zero_range(m.fd, it.offset, it.length_bytes);
				stats->truncated_bytes += it.length_bytes;
			} else {
				rc = segment_quarantine(st->dir_fd, seq, it.offset,
							m.image + it.offset, it.length_bytes);
				stats->quarantined++;
				out->damaged++;
			}
			out->tail = it.offset;
			break;
		case SEGMENT_ITEM_END:
			out->tail = it.offset;
			break;
		}
	}
	if (rc != 0) {
		segment_map_close(&m, false);
		return fail(err, errlen, rc, "recover segment", name);
	}
	out->fd = active ? m.fd : -1;
	segment_map_close(&m, active);
	return 0;
}

/*
 * Recovers segments seqs[0..count) in order, the last as the active one;
 * fills the salt table. Damage in a segment that a later segment with
 * records follows is counted in stats->sealed_damaged: commits go oldest
 * first and the active segment changes only forward, so a write into a
 * later segment means every write into this one had completed; its damage
 * cannot be a torn write. *active holds the last segment's findings.
 */
static int recover_segments(struct store *st, const uint32_t *seqs, size_t count,
			    struct store_recovery_stats *stats, struct recovered *active,
			    char *err, size_t errlen)
{
	memset(active, 0, sizeof(*active));
	active->fd = -1;
	if (salt_reserve(st, (uint32_t)RMX_MIN(count + 1, (size_t)UINT32_MAX / 4)) != 0)
		return fail(err, errlen, -ENOMEM, "allocate salts for", st->data_dir);
	uint32_t unconfirmed = 0; /* damage in segments with no later data yet */
	for (size_t i = 0; i < count; i++) {
		bool last = i + 1 == count;
		struct recovered r;
		int rc = recover_segment(st, seqs[i], last, stats, &r, err, errlen);
		if (rc != 0)
			return rc;
		if (r.has_records) {
			stats->sealed_damaged += unconfirmed;
			unconfirmed = r.damaged;
		}
		salt_put(st, seqs[i], r.salt);
		if (last)
			*active = r;
	}
	return 0;
}

/*
 * Makes [from, size) of a segment that holds only zeros there really
 * written, when the file system says it is not (a spare whose preparation
 * was cut short, or never synced): later commits then overwrite written
 * blocks, the fast case. A file system that cannot tell is trusted.
 */
static int ensure_prezeroed(int fd, uint64_t from, uint64_t size_bytes)
{
	if (from >= size_bytes || segment_is_prezeroed(fd, size_bytes) != 0)
		return 0;
	return segment_zero_range(fd, from, size_bytes - from);
}

/* Unlinks an empty segment and makes the removal durable. */
static int remove_empty_segment(struct store *st, const char *name, char *err, size_t errlen)
{
	if (unlinkat(st->dir_fd, name, 0) != 0 || fsync(st->dir_fd) != 0)
		return fail(err, errlen, -errno, "remove empty segment", name);
	return 0;
}

/*
 * The newest segment holding no record is the spare of the last run: kept
 * as the spare when it has today's size and older segments exist (given a
 * header if it has none sound), removed when its size is another (it holds
 * nothing). Returns how many segments remain in use.
 */
static int adopt_spare(struct store *st, const uint32_t *seqs, size_t count, size_t *in_use,
		       char *err, size_t errlen)
{
	*in_use = count;
	if (count == 0)
		return 0;
	uint32_t seq = seqs[count - 1];
	char name[SEGMENT_NAME_MAX_BYTES];
	segment_name_format(name, seq);
	struct segment_map m;
	int rc = segment_map_open(st->dir_fd, seq, true, &m);
	if (rc != 0)
		return fail(err, errlen, rc, "open segment", name);
	if (!segment_image_unused(m.image, m.size_bytes)) {
		segment_map_close(&m, false);
		return 0;
	}
	if (m.size_bytes == st->segment_size_bytes && count >= 2) {
		uint64_t salt = 0;
		enum segment_header_status hs =
			segment_header_check(m.image, m.size_bytes, st->worker, seq, &salt);
		segment_map_close(&m, true);
		rc = ensure_prezeroed(m.fd, SEGMENT_HEADER_BYTES, m.size_bytes);
		if (rc == 0 && hs != SEGMENT_HEADER_OK)
			rc = segment_write_header(m.fd, st->worker, seq, &salt);
		if (rc == 0)
			rc = salt_reserve(st, 1);
		if (rc != 0) {
			close(m.fd);
			return fail(err, errlen, rc, "prepare spare segment", name);
		}
		st->spare_fd = m.fd;
		st->spare_seq = seq;
		st->spare_salt = salt;
		*in_use = count - 1;
		return 0;
	}
	if (m.size_bytes != st->segment_size_bytes) {
		segment_map_close(&m, false);
		rc = remove_empty_segment(st, name, err, errlen);
		if (rc == 0)
			*in_use = count - 1;
		return rc;
	}
	segment_map_close(&m, false); /* the only segment, empty: it is the active one */
	return 0;
}

static int open_shard_dir(struct store *st, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int rc = mkdir_durable(st->data_dir);
	if (rc != 0)
		return fail(err, errlen, rc, "create data directory", st->data_dir);
	int n = snprintf(path, sizeof(path), "%s/w%u", st->data_dir, (unsigned)st->worker);
	/* Room for the longest segment path handed out by store_spare_wanted. */
	if (n < 0 || (size_t)n + 1 + SEGMENT_NAME_MAX_BYTES >= sizeof(path))
		return fail(err, errlen, -ENAMETOOLONG, "shard directory in", st->data_dir);
	rc = mkdir_durable(path);
	if (rc != 0)
		return fail(err, errlen, rc, "create shard directory", path);
	st->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->dir_fd < 0)
		return fail(err, errlen, -errno, "open shard directory", path);
	/* One process per shard: a second ringmx on the same directory stops here. */
	if (flock(st->dir_fd, LOCK_EX | LOCK_NB) != 0)
		return fail(err, errlen, errno == EWOULDBLOCK ? -EBUSY : -errno,
			    "lock shard directory (is another ringmx running?)", path);
	return 0;
}

static int check_config(const struct store_config *cfg, char *err, size_t errlen)
{
	const char *why = NULL;
	if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0')
		why = "data_dir is empty";
	else if (cfg->worker >= WORKERS_MAX)
		why = "worker number out of range";
	else if (cfg->segment_size_bytes < SEGMENT_SIZE_MIN_BYTES ||
		 cfg->segment_size_bytes > SEGMENT_SIZE_MAX_BYTES ||
		 cfg->segment_size_bytes % RECORD_ALIGN_BYTES != 0)
		why = "segment_size out of range or not a multiple of 8";
	else if (cfg->store_max_bytes == 0)
		why = "store_max_bytes is zero";
	if (why == NULL)
		return 0;
	if (errlen > 0)
		snprintf(err, errlen, "store: %s", why);
	return -EINVAL;
}

/*
 * Recovery of a leftover shard: segments at the end that hold no record
 * (spares, an unused active one) are removed; every other segment is
 * recovered, the newest like an active one (its torn tail cut). No segment
 * stays open and none is created; active_seq is past the newest so that
 * every segment counts as sealed.
 */
static int recover_leftover(struct store *st, struct store_recovery_stats *stats, char *err,
			    size_t errlen)
{
	uint32_t *seqs = NULL;
	size_t count = 0;
	int rc = segment_list(st->dir_fd, &seqs, &count);
	if (rc != 0)
		return fail(err, errlen, rc, "list segments in shard", st->data_dir);
	while (rc == 0 && count > 0) {
		char name[SEGMENT_NAME_MAX_BYTES];
		segment_name_format(name, seqs[count - 1]);
		struct segment_map m;
		rc = segment_map_open(st->dir_fd, seqs[count - 1], false, &m);
		if (rc != 0) {
			rc = fail(err, errlen, rc, "open segment", name);
			break;
		}
		bool empty = segment_image_unused(m.image, m.size_bytes);
		segment_map_close(&m, false);
		if (!empty)
			break;
		rc = remove_empty_segment(st, name, err, errlen);
		count--;
	}
	struct recovered newest;
	if (rc == 0)
		rc = recover_segments(st, seqs, count, stats, &newest, err, errlen);
	if (rc == 0 && newest.fd >= 0)
		close(newest.fd);
	st->active_seq = count ? seqs[count - 1] + 1 : 1;
	st->segments_in_use = (uint32_t)count;
	stats->segments = st->segments_in_use;
	free(seqs);
	return rc;
}

static int store_recover(struct store *st, struct store_recovery_stats *stats, char *err,
			 size_t errlen)
{
	if (st->leftover)
		return recover_leftover(st, stats, err, errlen);
	uint32_t *seqs = NULL;
	size_t count = 0;
	int rc = segment_list(st->dir_fd, &seqs, &count);
	if (rc != 0)
		return fail(err, errlen, rc, "list segments in shard", st->data_dir);
	uint32_t highest = count ? seqs[count - 1] : 0;
	size_t in_use = 0;
	rc = adopt_spare(st, seqs, count, &in_use, err, errlen);

	struct recovered active;
	if (rc == 0)
		rc = recover_segments(st, seqs, in_use, stats, &active, err, errlen);
	if (rc == 0 && in_use > 0) {
		st->active_seq = seqs[in_use - 1];
		st->active_salt = active.salt;
		st->active_fd = active.fd;
		st->active_size_bytes = RMX_MIN(active.size_bytes, SEGMENT_SIZE_MAX_BYTES);
		st->active_tail = RMX_MIN(active.tail, active.size_bytes);
		/* Past the tail there are only zeros (recovery made sure). */
		rc = ensure_prezeroed(active.fd, st->active_tail, active.size_bytes);
		if (rc != 0)
			rc = fail(err, errlen, rc, "zero active segment in", st->data_dir);
	}
	free(seqs);
	if (rc != 0)
		return rc;

	if (in_use == 0) {
		if (highest >= SEGMENT_SEQ_MAX)
			return fail(err, errlen, -EOVERFLOW, "segment numbers used up in",
				    st->data_dir);
		st->active_seq = highest + 1;
		rc = salt_reserve(st, 1);
		if (rc == 0)
			rc = segment_create_zeroed(st->dir_fd, st->worker, st->active_seq,
						   st->segment_size_bytes, &st->active_fd,
						   &st->active_salt);
		if (rc != 0)
			return fail(err, errlen, rc, "create first segment in", st->data_dir);
		salt_put(st, st->active_seq, st->active_salt);
		st->active_size_bytes = st->segment_size_bytes;
		st->active_tail = SEGMENT_HEADER_BYTES;
		in_use = 1;
		highest = st->active_seq;
	}
	st->segments_in_use = (uint32_t)in_use;

	if (st->spare_fd < 0 && highest < SEGMENT_SEQ_MAX) {
		/* A spare numbered past everything seen, adopted or not. */
		uint32_t seq = RMX_MAX(highest, st->active_seq) + 1;
		rc = salt_reserve(st, 1);
		if (rc == 0)
			rc = segment_create_zeroed(st->dir_fd, st->worker, seq,
						   st->segment_size_bytes, &st->spare_fd,
						   &st->spare_salt);
		if (rc != 0)
			return fail(err, errlen, rc, "create spare segment in", st->data_dir);
		st->spare_seq = seq;
	}
	stats->segments = st->segments_in_use;
	return 0;
}

static int store_open_mode(const struct store_config *cfg, bool leftover, struct store **out,
			   struct store_recovery_stats *stats, char *err, size_t errlen)
{
	*out = NULL;
	memset(stats, 0, sizeof(*stats));
	int rc = check_config(cfg, err, errlen);
	if (rc != 0)
		return rc;

	struct store *st = calloc(1, sizeof(*st));
	if (st == NULL)
		return fail(err, errlen, -ENOMEM, "allocate store for", cfg->data_dir);
	st->dir_fd = -1;
	st->active_fd = -1;
	st->spare_fd = -1;
	st->worker = cfg->worker;
	st->segment_size_bytes = cfg->segment_size_bytes;
	st->store_max_bytes = cfg->store_max_bytes;
	st->fsync = cfg->fsync;
	st->leftover = leftover;
	st->data_dir = strdup(cfg->data_dir);
	st->batch = calloc(STORE_BATCH_SLOTS, sizeof(*st->batch));
	if (st->data_dir == NULL || st->batch == NULL) {
		store_close(st);
		return fail(err, errlen, -ENOMEM, "allocate store for", cfg->data_dir);
	}
	rc = open_shard_dir(st, err, errlen);
	if (rc == 0)
		rc = store_recover(st, stats, err, errlen);
	if (rc != 0) {
		store_close(st);
		return rc;
	}
	*out = st;
	return 0;
}

int store_open(const struct store_config *cfg, struct store **out,
	       struct store_recovery_stats *stats, char *err, size_t errlen)
{
	return store_open_mode(cfg, false, out, stats, err, errlen);
}

int store_open_leftover(const struct store_config *cfg, struct store **out,
			struct store_recovery_stats *stats, char *err, size_t errlen)
{
	return store_open_mode(cfg, true, out, stats, err, errlen);
}

uint32_t store_first_unsealed_seq(const struct store *st)
{
	return st->active_seq;
}
