/*
 * store_recover.c - start-up of one worker's shard of the segment store
 * (see store_recover.h): the shard directory made and locked, every segment
 * scanned, damage copied to quarantine/, the torn tail of the newest cut,
 * the last run's spare adopted, and the active segment and a spare opened.
 *
 * Where it sits: core/main calls store_open (or store_open_leftover for a
 * shard past today's worker count) once per shard before queue_open; what
 * it finds goes into the store's state (store_state.h), which store.c then
 * runs at run time.
 *
 * Invariants: recovery never guesses. A record whose header or CRC does not
 * check is copied to quarantine/ before anything is cut, and only the
 * newest segment's torn tail is zeroed; damage in a sealed segment is
 * counted as corruption (sealed_damaged), never as a torn write. A segment
 * holding data this version cannot check stops start-up with what the
 * operator should do. Past the active segment's tail there are only zeros.
 * Blocking by design; start-up only.
 */
#include "store_recover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "segment.h"
#include "segment_quarantine.h"
#include "store_state.h"

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
	if (store_salt_reserve(st, (uint32_t)RMX_MIN(count + 1, (size_t)UINT32_MAX / 4)) != 0)
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
		store_salt_put(st, seqs[i], r.salt);
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
			rc = store_salt_reserve(st, 1);
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
	else if (cfg->commits_in_flight > STORE_COMMITS_IN_FLIGHT_MAX)
		why = "commits_in_flight out of range";
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
		rc = store_salt_reserve(st, 1);
		if (rc == 0)
			rc = segment_create_zeroed(st->dir_fd, st->worker, st->active_seq,
						   st->segment_size_bytes, &st->active_fd,
						   &st->active_salt);
		if (rc != 0)
			return fail(err, errlen, rc, "create first segment in", st->data_dir);
		store_salt_put(st, st->active_seq, st->active_salt);
		st->active_size_bytes = st->segment_size_bytes;
		st->active_tail = SEGMENT_HEADER_BYTES;
		in_use = 1;
		highest = st->active_seq;
	}
	st->segments_in_use = (uint32_t)in_use;

	if (st->spare_fd < 0 && highest < SEGMENT_SEQ_MAX) {
		/* A spare numbered past everything seen, adopted or not. */
		uint32_t seq = RMX_MAX(highest, st->active_seq) + 1;
		rc = store_salt_reserve(st, 1);
		if (rc == 0)
			rc = segment_create_zeroed(st->dir_fd, st->worker, seq,
						   st->segment_size_bytes, &st->spare_fd,
						   &st->spare_salt);
		if (rc == -ENOSPC || rc == -EDQUOT) {
			/* A full file system must not keep the gateway from
			 * starting: forwarding is what frees it. The spare is made
			 * at run time (store_spare_wanted, with its backoff); till
			 * then the active segment takes what fits and the rest is
			 * refused (store_admit, store_reserve: -ENOSPC). */
			st->spare_error = rc;
			st->spare_backoff_ms = STORE_SPARE_RETRY_MIN_MS;
			rc = 0;
		} else if (rc != 0) {
			return fail(err, errlen, rc, "create spare segment in", st->data_dir);
		} else {
			st->spare_seq = seq;
		}
	}
	stats->segments = st->segments_in_use;
	return 0;
}

/*
 * Opens segment seq again with O_DIRECT, read-write: the fd or -errno. The
 * file's cached pages are dropped first (recovery read the whole segment
 * in, and left it clean): a direct write over a cached page must
 * invalidate it, which io_uring cannot do without blocking, so each such
 * commit would go to an io-wq thread after all.
 */
static int reopen_direct(struct store *st, uint32_t seq)
{
	char name[SEGMENT_NAME_MAX_BYTES];
	segment_name_format(name, seq);
	int fd = openat(st->dir_fd, name, O_RDWR | O_CLOEXEC | O_DIRECT);
	if (fd < 0)
		return -errno;
	/* Advice only: where it fails, commits still work, some via io-wq. */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	return fd;
}

/*
 * Why fd (a segment open with O_DIRECT) cannot take block-aligned direct
 * commits from a page-aligned buffer, or NULL when it can: the file
 * system's DIO alignment (statx, where it reports one) must divide
 * SEGMENT_BLOCK_BYTES, and its blocks be no larger (a write of part of a
 * block would be a read-modify-write the kernel cannot issue inline).
 */
static const char *direct_unfit(int fd)
{
#ifdef STATX_DIOALIGN
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
	    (sx.stx_mask & STATX_DIOALIGN) &&
	    (sx.stx_dio_offset_align == 0 || sx.stx_dio_mem_align == 0 ||
	     SEGMENT_BLOCK_BYTES % sx.stx_dio_offset_align != 0 ||
	     SEGMENT_BLOCK_BYTES % sx.stx_dio_mem_align != 0))
		return "dio_alignment";
#endif
	struct statfs fs;
	if (fstatfs(fd, &fs) != 0 || fs.f_bsize <= 0 || (uint64_t)fs.f_bsize > SEGMENT_BLOCK_BYTES)
		return "block_size";
	return NULL;
}

/* Reads the first line of a sysfs attribute into buf; false if it cannot. */
static bool read_attribute(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, cap - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return true;
}

/*
 * Whether a synchronous direct write to fd's file needs a cache flush of
 * its own: the block device behind it keeps a volatile write cache
 * (queue/write_cache "write back") and has no FUA (queue/fua 0). Then the
 * kernel ends every RWF_DSYNC write with a flush from a kernel worker
 * thread, outside the ring, which waits for a CPU under load; with FUA or a
 * write-through cache the write is durable when the device completes it.
 * A file system with no block device of its own (tmpfs) needs none. A
 * device whose attributes cannot be read (a partition's are its disk's)
 * counts as needing one.
 */
static bool device_needs_flush(int fd)
{
	struct stat sb;
	if (fstat(fd, &sb) != 0)
		return true;
	unsigned maj = major(sb.st_dev), min = minor(sb.st_dev);
	if (maj == 0)
		return false;
	static const char *const queue_dirs[] = { "/sys/dev/block/%u:%u/queue",
						  "/sys/dev/block/%u:%u/../queue" };
	for (size_t i = 0; i < RMX_ARRAY_LEN(queue_dirs); i++) {
		char dir[96], path[128], cache[32], fua[8];
		snprintf(dir, sizeof(dir), queue_dirs[i], maj, min);
		snprintf(path, sizeof(path), "%s/write_cache", dir);
		if (!read_attribute(path, cache, sizeof(cache)))
			continue;
		if (strcmp(cache, "write through") == 0)
			return false;
		snprintf(path, sizeof(path), "%s/fua", dir);
		return !read_attribute(path, fua, sizeof(fua)) || strcmp(fua, "1") != 0;
	}
	return true;
}

/*
 * Chooses the commit path (store_recover.h): for direct commits the active
 * segment and the spare are opened again with O_DIRECT (their buffered fds
 * closed) and the aligned batch buffer is mapped; the mapping reserves no
 * memory until a batch of that size is written.
 */
static int choose_io(struct store *st, enum store_io_mode mode,
		     struct store_recovery_stats *stats, char *err, size_t errlen)
{
	stats->io_mode = STORE_IO_BUFFERED;
	stats->io_reason = "configured";
	if (mode == STORE_IO_BUFFERED)
		return 0;
	const char *why = NULL;
	int active = -1, spare = -1;
	if (st->segment_size_bytes % SEGMENT_BLOCK_BYTES != 0 ||
	    st->active_size_bytes % SEGMENT_BLOCK_BYTES != 0)
		why = "segment_size_not_block_multiple";
	if (why == NULL) {
		active = reopen_direct(st, st->active_seq);
		if (active == -EINVAL)
			why = "o_direct_refused";
		else if (active < 0)
			return fail(err, errlen, active, "open active segment with O_DIRECT in",
				    st->data_dir);
	}
	if (why == NULL)
		why = direct_unfit(active);
	if (why == NULL && mode == STORE_IO_AUTO && device_needs_flush(active))
		why = "device_cache_needs_flush";
	if (why == NULL && st->spare_fd >= 0) {
		spare = reopen_direct(st, st->spare_seq);
		if (spare < 0) {
			close(active);
			return fail(err, errlen, spare, "open spare segment with O_DIRECT in",
				    st->data_dir);
		}
	}
	uint64_t bounce_bytes = RMX_MAX(st->segment_size_bytes,
					STORE_BATCH_BYTES_MAX + SEGMENT_BLOCK_BYTES);
	void *bounce = MAP_FAILED;
	if (why == NULL) {
		bounce = mmap(NULL, (size_t)(bounce_bytes * st->commits_in_flight_max),
			      PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (bounce == MAP_FAILED) {
			int rc = -errno;
			close(active);
			if (spare >= 0)
				close(spare);
			return fail(err, errlen, rc, "map the direct commit buffer for", st->data_dir);
		}
	}
	if (why != NULL) {
		if (active >= 0)
			close(active);
		if (mode == STORE_IO_DIRECT) {
			if (errlen > 0)
				snprintf(err, errlen,
					 "store_io = direct, but %s/w%u cannot take O_DIRECT commits "
					 "(%s); use store_io = auto or buffered",
					 st->data_dir, (unsigned)st->worker, why);
			return -EINVAL;
		}
		stats->io_reason = why;
		return 0;
	}
	close(st->active_fd);
	st->active_fd = active;
	st->active_direct = true;
	if (spare >= 0) {
		close(st->spare_fd);
		st->spare_fd = spare;
		st->spare_direct = true;
	}
	st->direct = true;
	st->bounce = bounce;
	st->bounce_bytes = bounce_bytes;
	st->bounce_free = (1u << st->commits_in_flight_max) - 1;
	stats->io_mode = STORE_IO_DIRECT;
	stats->io_reason = mode == STORE_IO_DIRECT ? "configured" : "o_direct_accepted";
	return 0;
}

static int store_open_mode(const struct store_config *cfg, bool leftover, struct store **out,
			   struct store_recovery_stats *stats, char *err, size_t errlen)
{
	*out = NULL;
	memset(stats, 0, sizeof(*stats));
	stats->io_reason = leftover ? "leftover" : "configured";
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
	st->commits_in_flight_max = cfg->commits_in_flight == 0 ? 1 : cfg->commits_in_flight;
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
	if (rc == 0)
		rc = leftover ? 0 : choose_io(st, cfg->io_mode, stats, err, errlen);
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

