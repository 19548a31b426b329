/*
 * segment.c - what is in a segment, and the blocking chores on segment files.
 *
 * Where it sits: store_open() runs the scanner over every segment of a shard
 * at start-up to find the records, set aside damage and find where writing
 * resumes; the ringmx-store tool runs the same scanner over live segments.
 * A new segment is made by segment_make.h's machine: blocking at start-up
 * (segment_create_zeroed), on the worker's ring for the spares of the run
 * time (store_spare_header encodes their header block).
 *
 * The scanner's rules: the header block must be sound, or nothing in the
 * segment is read (its salt is unknown). Records start at
 * SEGMENT_HEADER_BYTES and follow each other at their padded lengths. A
 * record counts only if record_check() accepts it with the segment's salt
 * and its queue id names the place it sits in. Everything past the last
 * non-zero byte is the clean end. Zeros from the end of a record that is
 * not on a block boundary up to the next SEGMENT_BLOCK_BYTES boundary are
 * the padding of an O_DIRECT batch (store.c) when data follows: the
 * record's item covers them; zeros anywhere else before data are damage as
 * before. So the
 * only damage this can hide is a record that lies wholly in such a partial
 * block and reads as all zeros: a write that never reached the disk, which
 * a completed commit cannot be. A record that does not check but whose
 * header is plausible (it would check but for the CRC, and its id names its
 * place) is bad for exactly the span it claims: the scan never looks inside,
 * so bytes inside a message body are never taken for framing. At any other
 * bad position the scanner looks 8 bytes at a time for the next record or
 * plausible header (resync). If one follows, the bad region up to it is
 * CORRUPT and scanning goes on from there; if not, the region up to the last
 * non-zero byte is a TORN_TAIL and the scan ends. Because of the salt a
 * resync can only stop at framing the store wrote; a plausible header forged
 * inside a damaged record's body can at worst make the scan set more bytes
 * aside, never accept any. The scanner never reads outside image[0..size)
 * and never writes.
 */
#include "segment.h"
#include "segment_make.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "../common/bounds.h"
#include "../common/le.h"

#define SEGMENT_FIEMAP_EXTENTS 64

/* The header's fields; the CRC covers [8, SEGMENT_HEADER_FIELDS_BYTES) and
 * the rest of the block is zero. */
#define SEGMENT_HEADER_FIELDS_BYTES 32
#define SEGMENT_HEADER_CRC_START_BYTES 8
#define SH_MAGIC 0
#define SH_CRC 4
#define SH_VERSION 8
#define SH_HEADER_BYTES 12
#define SH_WORKER 16
#define SH_SEQ 20
#define SH_SALT 24

_Static_assert(SEGMENT_HEADER_BYTES % RECORD_ALIGN_BYTES == 0, "records stay aligned");
_Static_assert(SEGMENT_HEADER_BYTES % SEGMENT_BLOCK_BYTES == 0, "records start on a block");
_Static_assert(SEGMENT_HEADER_BYTES >= SEGMENT_HEADER_FIELDS_BYTES, "the fields fit the block");
_Static_assert(SH_SALT + 8 == SEGMENT_HEADER_FIELDS_BYTES, "layout");
_Static_assert(SEGMENT_MAGIC != RECORD_MAGIC, "a header is never taken for a record");

static bool all_zero(const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

static uint32_t header_crc(const uint8_t *block)
{
	return crc32c(0, block + SEGMENT_HEADER_CRC_START_BYTES,
		      SEGMENT_HEADER_FIELDS_BYTES - SEGMENT_HEADER_CRC_START_BYTES);
}

void segment_header_encode(uint8_t out[SEGMENT_HEADER_BYTES], uint32_t worker, uint32_t seq,
			   uint64_t salt)
{
	RMX_ASSERT(worker <= 0xff && seq <= SEGMENT_SEQ_MAX);
	memset(out, 0, SEGMENT_HEADER_BYTES);
	put_le32(out + SH_MAGIC, SEGMENT_MAGIC);
	put_le32(out + SH_VERSION, SEGMENT_FORMAT_VERSION);
	put_le32(out + SH_HEADER_BYTES, SEGMENT_HEADER_BYTES);
	put_le32(out + SH_WORKER, worker);
	put_le32(out + SH_SEQ, seq);
	put_le64(out + SH_SALT, salt);
	put_le32(out + SH_CRC, header_crc(out));
	uint64_t back = 0;
	RMX_ASSERT(segment_header_check(out, SEGMENT_HEADER_BYTES, worker, seq, &back) ==
			   SEGMENT_HEADER_OK &&
		   back == salt);
}

/*
 * Magic first, then the format (a newer format is named as such, whatever
 * its CRC covers), then the CRC, then that the block holds nothing else,
 * and last that it names this segment (a file copied or renamed).
 */
enum segment_header_status segment_header_check(const uint8_t *image, uint64_t size_bytes,
						uint32_t worker, uint32_t seq, uint64_t *salt)
{
	uint64_t avail = RMX_MIN(size_bytes, (uint64_t)SEGMENT_HEADER_BYTES);
	if (all_zero(image, avail))
		return SEGMENT_HEADER_NONE;
	if (avail < 4)
		return SEGMENT_HEADER_UNKNOWN;
	uint32_t magic = get_le32(image + SH_MAGIC);
	if (magic == RECORD_MAGIC)
		return SEGMENT_HEADER_FORMAT_1;
	if (magic != SEGMENT_MAGIC)
		return SEGMENT_HEADER_UNKNOWN;
	if (avail < SEGMENT_HEADER_BYTES)
		return SEGMENT_HEADER_DAMAGED;
	if (get_le32(image + SH_VERSION) != SEGMENT_FORMAT_VERSION)
		return SEGMENT_HEADER_VERSION;
	if (get_le32(image + SH_CRC) != header_crc(image) ||
	    get_le32(image + SH_HEADER_BYTES) != SEGMENT_HEADER_BYTES ||
	    !all_zero(image + SEGMENT_HEADER_FIELDS_BYTES,
		      SEGMENT_HEADER_BYTES - SEGMENT_HEADER_FIELDS_BYTES))
		return SEGMENT_HEADER_DAMAGED;
	if (get_le32(image + SH_WORKER) != worker || get_le32(image + SH_SEQ) != seq)
		return SEGMENT_HEADER_MISPLACED;
	*salt = get_le64(image + SH_SALT);
	return SEGMENT_HEADER_OK;
}

const char *segment_header_status_name(enum segment_header_status status)
{
	switch (status) {
	case SEGMENT_HEADER_OK:
		return "ok";
	case SEGMENT_HEADER_NONE:
		return "no segment header";
	case SEGMENT_HEADER_FORMAT_1:
		return "format 1 (written by an earlier ringmx: no segment header)";
	case SEGMENT_HEADER_VERSION:
		return "a segment format this version cannot read";
	case SEGMENT_HEADER_DAMAGED:
		return "damaged segment header";
	case SEGMENT_HEADER_MISPLACED:
		return "segment header names another worker or segment";
	case SEGMENT_HEADER_UNKNOWN:
		return "not a segment";
	}
	return "unknown";
}

bool segment_image_unused(const uint8_t *image, uint64_t size_bytes)
{
	uint64_t end = size_bytes ? segment_data_end(image, size_bytes) : 0;
	if (end == 0)
		return true;
	if (end > SEGMENT_HEADER_BYTES)
		return false;
	return size_bytes >= 4 && get_le32(image + SH_MAGIC) == SEGMENT_MAGIC;
}

uint64_t segment_data_end(const uint8_t *image, uint64_t size_bytes)
{
	uint64_t i = size_bytes;
	while (i % RECORD_ALIGN_BYTES != 0) {
		if (image[i - 1] != 0)
			return size_bytes; /* rounding up would pass the end */
		i--;
	}
	/* A non-zero word [i-8, i) puts the end, rounded up, exactly at i. */
	while (i >= 8) {
		uint64_t word;
		memcpy(&word, image + i - 8, sizeof(word));
		if (word != 0)
			return i;
		i -= 8;
	}
	return 0;
}

enum segment_header_status segment_scan_init(struct segment_scan *s, const uint8_t *image,
					     uint64_t size_bytes, uint32_t worker, uint32_t seq)
{
	RMX_ASSERT(worker <= 0xff);
	RMX_ASSERT(seq <= SEGMENT_SEQ_MAX);
	RMX_ASSERT(image != NULL || size_bytes == 0);
	s->image = image;
	s->size_bytes = size_bytes;
	s->data_end = size_bytes ? segment_data_end(image, size_bytes) : 0;
	s->offset = SEGMENT_HEADER_BYTES;
	s->worker = worker;
	s->seq = seq;
	s->salt = 0;
	s->header = segment_header_check(image, size_bytes, worker, seq, &s->salt);
	s->finished = s->header != SEGMENT_HEADER_OK;
	return s->header;
}

/* The queue id a record at offset must carry; false if none can. */
static bool expected_id(const struct segment_scan *s, uint64_t offset, uint64_t *id)
{
	if (offset % RECORD_ALIGN_BYTES != 0 || offset / RECORD_ALIGN_BYTES > 0xffffffffull)
		return false;
	*id = queue_id_make(s->worker, s->seq, offset);
	return true;
}

/* What stands at an offset of the data. */
enum at_kind {
	AT_RECORD,    /* a valid record of this place */
	AT_PLAUSIBLE, /* a header that would check but for the CRC: its span is *span */
	AT_NOTHING,   /* neither: *why says what is wrong */
};

static enum at_kind what_is_at(const struct segment_scan *s, uint64_t offset,
			       struct record_view *view, uint64_t *span,
			       enum segment_bad_reason *why)
{
	RMX_ASSERT(offset < s->size_bytes);
	const uint8_t *p = s->image + offset;
	uint64_t avail = s->size_bytes - offset;
	uint64_t id = 0;
	bool placed = expected_id(s, offset, &id);
	switch (record_check(p, (size_t)avail, s->salt, view)) {
	case RECORD_OK:
		if (placed && view->header.queue_id == id)
			return AT_RECORD;
		*why = SEGMENT_BAD_MISPLACED;
		return AT_NOTHING;
	case RECORD_BAD_CRC:
		/* record_check vouched for the lengths and that they fit. */
		RMX_ASSERT(avail >= RECORD_HEADER_BYTES);
		*why = SEGMENT_BAD_CRC;
		if (!placed || get_le64(p + 16) != id)
			return AT_NOTHING;
		*span = get_le32(p + 12) + record_padding(get_le32(p + 12));
		return AT_PLAUSIBLE;
	case RECORD_EMPTY:
		*why = SEGMENT_BAD_ZERO_HEADER;
		return AT_NOTHING;
	case RECORD_SHORT:
		*why = SEGMENT_BAD_SHORT;
		return AT_NOTHING;
	case RECORD_BAD_HEADER:
		*why = SEGMENT_BAD_HEADER;
		return AT_NOTHING;
	}
	RMX_ASSERT(!"unknown record_check result");
	return AT_NOTHING;
}

/* Resync: the first offset from `from` (8-aligned) holding a valid record or
 * a plausible header, or 0 when there is none before the end of the data. */
static uint64_t next_anchor(const struct segment_scan *s, uint64_t from)
{
	for (uint64_t y = from; y < s->data_end && s->size_bytes - y >= RECORD_HEADER_BYTES;
	     y += RECORD_ALIGN_BYTES) {
		uint64_t id;
		/* Cheap filters first: the CRC runs only on headers of this place. */
		if (get_le32(s->image + y) != RECORD_MAGIC || !expected_id(s, y, &id) ||
		    get_le64(s->image + y + 16) != id)
			continue;
		struct record_view view;
		uint64_t span;
		enum segment_bad_reason why;
		if (what_is_at(s, y, &view, &span, &why) != AT_NOTHING)
			return y;
	}
	return 0;
}

bool segment_scan_next(struct segment_scan *s, struct segment_item *item)
{
	if (s->finished)
		return false;
	memset(item, 0, sizeof(*item));
	uint64_t x = s->offset;
	item->offset = x;
	if (x >= s->data_end) {
		item->kind = SEGMENT_ITEM_END;
		item->length_bytes = s->size_bytes > x ? s->size_bytes - x : 0;
		s->finished = true;
		return true;
	}

	enum segment_bad_reason why = SEGMENT_BAD_NONE;
	uint64_t span = 0;
	enum at_kind at = what_is_at(s, x, &item->record, &span, &why);
	if (at == AT_RECORD) {
		item->kind = SEGMENT_ITEM_RECORD;
		uint64_t end = x + item->record.padded_length;
		uint64_t block_end = (end + SEGMENT_BLOCK_BYTES - 1) / SEGMENT_BLOCK_BYTES *
				     SEGMENT_BLOCK_BYTES;
		/* Batch padding (an O_DIRECT commit's) goes with the batch's last
		 * record: the next batch starts at the boundary. */
		if (block_end < s->data_end && all_zero(s->image + end, block_end - end))
			end = block_end;
		item->length_bytes = end - x;
		s->offset = RMX_MIN(end, s->size_bytes);
		return true;
	}
	memset(&item->record, 0, sizeof(item->record));
	item->reason = why;
	/* A plausible header's span is bad as a whole: never searched inside. */
	uint64_t from = at == AT_PLAUSIBLE ? x + span : x + RECORD_ALIGN_BYTES;
	uint64_t y = next_anchor(s, from);
	if (y != 0) {
		RMX_ASSERT(y > x && y < s->data_end);
		item->kind = SEGMENT_ITEM_CORRUPT;
		item->length_bytes = y - x;
		s->offset = y;
	} else {
		item->kind = SEGMENT_ITEM_TORN_TAIL;
		item->length_bytes = s->data_end - x;
		s->finished = true;
	}
	return true;
}

const char *segment_bad_reason_name(enum segment_bad_reason reason)
{
	switch (reason) {
	case SEGMENT_BAD_NONE:
		return "ok";
	case SEGMENT_BAD_ZERO_HEADER:
		return "zero header before data";
	case SEGMENT_BAD_SHORT:
		return "record runs past the data";
	case SEGMENT_BAD_HEADER:
		return "bad header";
	case SEGMENT_BAD_CRC:
		return "bad crc";
	case SEGMENT_BAD_MISPLACED:
		return "queue id does not match position";
	}
	return "unknown";
}

void segment_name_format(char out[SEGMENT_NAME_MAX_BYTES], uint32_t seq)
{
	int n = snprintf(out, SEGMENT_NAME_MAX_BYTES, "%08u.seg", (unsigned)seq);
	RMX_ASSERT(n > 0 && n < SEGMENT_NAME_MAX_BYTES);
}

bool segment_name_parse(const char *name, uint32_t *seq)
{
	uint64_t v = 0;
	size_t i = 0;
	for (; name[i] >= '0' && name[i] <= '9'; i++) {
		v = v * 10 + (uint64_t)(name[i] - '0');
		if (v > SEGMENT_SEQ_MAX)
			return false;
	}
	if (i == 0 || strcmp(name + i, ".seg") != 0 || v == 0)
		return false;
	*seq = (uint32_t)v;
	return true;
}

static int compare_seq(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

int segment_opendir(int dirfd, DIR **out)
{
	*out = NULL;
	int fd = dup(dirfd);
	if (fd < 0)
		return -errno;
	DIR *dir = fdopendir(fd);
	if (dir == NULL) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	rewinddir(dir);
	*out = dir;
	return 0;
}

int segment_list(int shard_dirfd, uint32_t **seqs, size_t *count)
{
	*seqs = NULL;
	*count = 0;
	DIR *dir = NULL;
	int orc = segment_opendir(shard_dirfd, &dir);
	if (orc != 0)
		return orc;
	uint32_t *list = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(dir)) != NULL) {
		uint32_t seq;
		if (!segment_name_parse(de->d_name, &seq))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			uint32_t *grown = realloc(list, ncap * sizeof(*list));
			if (grown == NULL) {
				rc = -ENOMEM;
				break;
			}
			list = grown;
			cap = ncap;
		}
		list[n++] = seq;
		errno = 0;
	}
	if (rc == 0 && errno != 0)
		rc = -errno;
	closedir(dir);
	if (rc != 0) {
		free(list);
		return rc;
	}
	if (n > 0)
		qsort(list, n, sizeof(*list), compare_seq);
	/* "1.seg" and "00000001.seg" would be one sequence twice. */
	for (size_t i = 1; i < n; i++) {
		if (list[i] == list[i - 1]) {
			free(list);
			return -EEXIST;
		}
	}
	*seqs = list;
	*count = n;
	return 0;
}

int segment_map_open(int shard_dirfd, uint32_t seq, bool writable, struct segment_map *m)
{
	char name[SEGMENT_NAME_MAX_BYTES];
	segment_name_format(name, seq);
	m->fd = -1;
	m->image = NULL;
	m->size_bytes = 0;
	int fd = openat(shard_dirfd, name, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	if (!S_ISREG(sb.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	m->fd = fd;
	m->size_bytes = (uint64_t)sb.st_size;
	if (m->size_bytes == 0)
		return 0;
	/* Every user reads the whole file: populate it in one go rather than
	 * one page fault at a time (the end-of-data search walks backwards). */
	void *p = mmap(NULL, (size_t)m->size_bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (p == MAP_FAILED) {
		int rc = -errno;
		close(fd);
		m->fd = -1;
		return rc;
	}
	m->image = p;
	return 0;
}

void segment_map_close(struct segment_map *m, bool keep_fd)
{
	if (m->image != NULL) {
		int rc = munmap(m->image, (size_t)m->size_bytes);
		RMX_ASSERT(rc == 0);
	}
	m->image = NULL;
	/* Advice only: a failure leaves the pages cached, which costs speed. */
	if (m->fd >= 0)
		(void)posix_fadvise(m->fd, 0, 0, POSIX_FADV_DONTNEED);
	if (!keep_fd && m->fd >= 0)
		close(m->fd);
	if (!keep_fd)
		m->fd = -1;
}

int segment_write_all_at(int fd, const void *buf, size_t len, uint64_t offset)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)offset);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

/* Writes zeros over [offset, offset+len) without syncing. */
static int write_zeros(int fd, uint64_t offset, uint64_t len)
{
	size_t chunk = (size_t)RMX_MIN(len, (uint64_t)SEGMENT_ZERO_CHUNK_BYTES);
	if (chunk == 0)
		return 0;
	uint8_t *zeros = calloc(1, chunk);
	if (zeros == NULL)
		return -ENOMEM;
	int rc = 0;
	while (len > 0 && rc == 0) {
		size_t n = (size_t)RMX_MIN(len, (uint64_t)chunk);
		rc = segment_write_all_at(fd, zeros, n, offset);
		offset += n;
		len -= n;
	}
	free(zeros);
	return rc;
}

int segment_salt_new(uint64_t *salt)
{
	uint8_t buf[8];
	size_t got = 0;
	while (got < sizeof(buf)) {
		ssize_t n = getrandom(buf + got, sizeof(buf) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	*salt = get_le64(buf);
	return 0;
}

/* Writes the header block of w<worker>/<seq> with a fresh salt, no sync. */
static int put_header(int fd, uint32_t worker, uint32_t seq, uint64_t *salt)
{
	uint64_t fresh = 0;
	int rc = segment_salt_new(&fresh);
	if (rc != 0)
		return rc;
	uint8_t *block = malloc(SEGMENT_HEADER_BYTES);
	if (block == NULL)
		return -ENOMEM;
	segment_header_encode(block, worker, seq, fresh);
	rc = segment_write_all_at(fd, block, SEGMENT_HEADER_BYTES, 0);
	free(block);
	if (rc == 0)
		*salt = fresh;
	return rc;
}

int segment_write_header(int fd, uint32_t worker, uint32_t seq, uint64_t *salt)
{
	uint64_t fresh = 0;
	int rc = put_header(fd, worker, seq, &fresh);
	if (rc == 0 && fdatasync(fd) != 0)
		rc = -errno;
	if (rc == 0)
		*salt = fresh;
	return rc;
}

int segment_create_zeroed(int shard_dirfd, uint32_t worker, uint32_t seq, uint64_t size_bytes,
			  int *fd_out, uint64_t *salt)
{
	RMX_ASSERT(size_bytes > SEGMENT_HEADER_BYTES);
	*fd_out = -1;
	uint64_t fresh = 0;
	int rc = segment_salt_new(&fresh);
	if (rc != 0)
		return rc;
	/* The run time's machine, run blocking: one way to make a segment. */
	uint8_t *chunk = NULL;
	if (posix_memalign((void **)&chunk, SEGMENT_HEADER_BYTES, SEGMENT_ZERO_CHUNK_BYTES) != 0)
		return -ENOMEM;
	memset(chunk, 0, SEGMENT_ZERO_CHUNK_BYTES);
	const uint64_t zeros_bytes = SEGMENT_ZERO_CHUNK_BYTES - SEGMENT_HEADER_BYTES;
	segment_header_encode(chunk + zeros_bytes, worker, seq, fresh);
	struct segment_make_config cfg = {
		.dir_fd = shard_dirfd, .size_bytes = size_bytes, .header = chunk + zeros_bytes,
		.zeros = chunk, .zeros_bytes = zeros_bytes, .sync = true, .with_log = false,
	};
	struct segment_make m;
	segment_make_start(&m, &cfg, seq);
	segment_make_run_blocking(&m);
	free(chunk);
	if (m.error != 0)
		return m.error;
	*fd_out = m.fd;
	*salt = fresh;
	return 0;
}

int segment_is_prezeroed(int fd, uint64_t size_bytes)
{
	/* The request and room for its extents (fm_extents[] is a flexible
	 * array member, so the room is a union, not a struct field after it). */
	union {
		struct fiemap map;
		uint8_t bytes[sizeof(struct fiemap) +
			      SEGMENT_FIEMAP_EXTENTS * sizeof(struct fiemap_extent)];
	} q;
	uint64_t covered = 0; /* [0, covered) is known to be written */
	while (covered < size_bytes) {
		memset(&q, 0, sizeof(q));
		q.map.fm_start = covered;
		q.map.fm_length = size_bytes - covered;
		q.map.fm_flags = FIEMAP_FLAG_SYNC;
		q.map.fm_extent_count = SEGMENT_FIEMAP_EXTENTS;
		if (ioctl(fd, FS_IOC_FIEMAP, &q.map) != 0)
			return -errno;
		if (q.map.fm_mapped_extents == 0)
			return 0; /* a hole up to the end */
		for (uint32_t i = 0; i < q.map.fm_mapped_extents; i++) {
			const struct fiemap_extent *e = &q.map.fm_extents[i];
			if (e->fe_logical > covered)
				return 0; /* a hole */
			if (e->fe_flags & (FIEMAP_EXTENT_UNWRITTEN | FIEMAP_EXTENT_DELALLOC |
					   FIEMAP_EXTENT_UNKNOWN))
				return 0;
			covered = RMX_MAX(covered, e->fe_logical + e->fe_length);
			if (e->fe_flags & FIEMAP_EXTENT_LAST)
				return covered >= size_bytes ? 1 : 0;
		}
	}
	return 1;
}

int segment_zero_range(int fd, uint64_t offset, uint64_t len)
{
	int rc = write_zeros(fd, offset, len);
	if (rc == 0 && fdatasync(fd) != 0)
		rc = -errno;
	return rc;
}
