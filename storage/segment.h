/*
 * segment.h - the segment header, reading segment images record by record,
 * and the blocking file chores around segments (create pre-zeroed with a
 * header, map, zero a range; the quarantine copy is segment_quarantine.h).
 *
 * A segment (format 2) opens with a SEGMENT_HEADER_BYTES block: magic,
 * format, worker, sequence and a random salt, with a CRC of its own; the
 * rest of the block is zero. Records follow from SEGMENT_HEADER_BYTES on, so
 * their file offsets (which queue ids carry) stay aligned to the block for a
 * future O_DIRECT commit path. Every record's CRC is salted with the
 * segment's salt (record.h), which makes record framing unforgeable by
 * message content: the salt never leaves the file.
 *
 * The scanner is pure: it walks a buffer holding a whole segment and yields
 * valid records, bad regions and the end, so recovery and the ringmx-store
 * tool share one definition of "what is in a segment" and tests need no
 * files. The file helpers block and are for start-up and tools only: never
 * call them from a worker's event loop.
 */
#ifndef RINGMX_SEGMENT_H
#define RINGMX_SEGMENT_H

#include <dirent.h>

#include "../common/base.h"
#include "record.h"

#define SEGMENT_SEQ_MAX 0xffffffu           /* 24 bits in a queue id */
#define SEGMENT_NAME_MAX_BYTES 32           /* "00000001.seg" and the like */
#define SEGMENT_QUARANTINE_DIR "quarantine"

#define SEGMENT_MAGIC 0x53584d52u      /* "RMXS" read little-endian */
#define SEGMENT_FORMAT_VERSION 2       /* 1: no header, records from offset 0 */
#define SEGMENT_HEADER_BYTES 4096      /* records start here */
/* The unit of an O_DIRECT commit (store.h): such a batch starts on a block
 * boundary and is written up to the next one, so the zeros from its last
 * record to that boundary are batch padding, which the scanner steps over. */
#define SEGMENT_BLOCK_BYTES 4096

/* What the first block of a segment holds. */
enum segment_header_status {
	SEGMENT_HEADER_OK = 0,    /* a sound header of this worker and segment */
	SEGMENT_HEADER_NONE,      /* only zeros: no header written (yet) */
	SEGMENT_HEADER_FORMAT_1,  /* a record at offset 0: written before format 2 */
	SEGMENT_HEADER_VERSION,   /* a segment header of a format this build cannot read */
	SEGMENT_HEADER_DAMAGED,   /* the segment magic, but a bad CRC or stray bytes */
	SEGMENT_HEADER_MISPLACED, /* sound, but names another worker or sequence */
	SEGMENT_HEADER_UNKNOWN,   /* not a segment at all */
};

enum segment_item_kind {
	SEGMENT_ITEM_RECORD,    /* a valid record at its own position */
	SEGMENT_ITEM_CORRUPT,   /* bad bytes with a record (or a plausible header) after them */
	SEGMENT_ITEM_TORN_TAIL, /* bad bytes with nothing of the kind after them */
	SEGMENT_ITEM_END,       /* only zero bytes from here on */
};

enum segment_bad_reason {
	SEGMENT_BAD_NONE = 0,
	SEGMENT_BAD_ZERO_HEADER, /* an all-zero header with data somewhere after it */
	SEGMENT_BAD_SHORT,       /* the record runs past the data */
	SEGMENT_BAD_HEADER,      /* magic, version, type or lengths impossible */
	SEGMENT_BAD_CRC,
	SEGMENT_BAD_MISPLACED,   /* checks, but its queue id names another place */
};

struct segment_item {
	enum segment_item_kind kind;
	uint64_t offset;              /* where the item starts in the segment */
	uint64_t length_bytes;        /* padded record (and any batch padding after
					 it), or the bad region */
	enum segment_bad_reason reason; /* for CORRUPT and TORN_TAIL */
	struct record_view record;    /* for RECORD: spans into the image */
};

/* Scanner state; the image is borrowed and must outlive the scan. */
struct segment_scan {
	const uint8_t *image;
	uint64_t size_bytes;
	uint64_t data_end;   /* past the last non-zero byte, rounded up to 8 */
	uint64_t offset;     /* the next item starts here */
	uint64_t salt;       /* from the header */
	uint32_t worker;
	uint32_t seq;
	enum segment_header_status header;
	bool finished;
};

/*
 * Starts a scan of the segment w<worker>/<seq> held in image[0..size) and
 * returns what its header block holds. Unless that is SEGMENT_HEADER_OK the
 * scan yields nothing (records cannot be checked without the salt). A
 * record counts only where its queue id names this worker, segment and
 * offset and its CRC checks with this segment's salt, so neither a stray
 * copy of a record nor one carried inside a message body is taken for real.
 */
enum segment_header_status segment_scan_init(struct segment_scan *s, const uint8_t *image,
					     uint64_t size_bytes, uint32_t worker, uint32_t seq);

/*
 * Yields the next item and returns true; returns false once END or
 * TORN_TAIL has been yielded (at once when the header is not sound). Items
 * tile the image from SEGMENT_HEADER_BYTES: each starts where the previous
 * one ended. A record that does not check but whose header is plausible
 * (sane lengths within the segment, the queue id of its place) is bad for
 * exactly its claimed length, never searched inside; past other bad bytes
 * the scan looks for the next record or plausible header 8 bytes at a time.
 * A CORRUPT item is followed by one of those; a TORN_TAIL runs to the end
 * of the data. Zeros from a record's end (not on a block boundary) up to
 * the next SEGMENT_BLOCK_BYTES boundary, with data past it, are batch
 * padding: the record's item covers them (length_bytes is then more than
 * record.padded_length) and the next item starts at the boundary.
 */
bool segment_scan_next(struct segment_scan *s, struct segment_item *item);

/* The header block of segment w<worker>/<seq> with this salt. */
void segment_header_encode(uint8_t out[SEGMENT_HEADER_BYTES], uint32_t worker, uint32_t seq,
			   uint64_t salt);

/* Checks the header block at the start of image[0..size); sets *salt when
 * it returns SEGMENT_HEADER_OK. A shorter image is checked as far as it goes. */
enum segment_header_status segment_header_check(const uint8_t *image, uint64_t size_bytes,
						uint32_t worker, uint32_t seq, uint64_t *salt);

const char *segment_header_status_name(enum segment_header_status status);

/*
 * True when the segment holds no record, only (at most) a header: nothing
 * but zeros past the header block, and a block that is zeros or starts with
 * the segment magic (a header, sound or torn). A segment of format 1 is
 * never unused unless it is all zeros.
 */
bool segment_image_unused(const uint8_t *image, uint64_t size_bytes);

/* Offset just past the last non-zero byte of image, rounded up to 8. */
uint64_t segment_data_end(const uint8_t *image, uint64_t size_bytes);

const char *segment_bad_reason_name(enum segment_bad_reason reason);

/* A directory stream over a duplicate of dirfd, from its first entry; the
 * caller closes it with closedir (dirfd stays open). 0 or -errno (then *out
 * is NULL). Blocking. */
int segment_opendir(int dirfd, DIR **out);

/* "<seq, 8 digits>.seg". */
void segment_name_format(char out[SEGMENT_NAME_MAX_BYTES], uint32_t seq);
/* Parses "<decimal>.seg" with 1 <= seq <= SEGMENT_SEQ_MAX. */
bool segment_name_parse(const char *name, uint32_t *seq);

/* The rest blocks (start-up and tools only). Functions return 0 or -errno. */

/* The segment sequences in the shard directory, ascending, in a malloc'd
 * array the caller frees (NULL when there are none). */
RMX_MUST_CHECK int segment_list(int shard_dirfd, uint32_t **seqs, size_t *count);

/* A segment file mapped read-only (MAP_SHARED: sees later writes), all of
 * it read in at once: for scanning whole segments. */
struct segment_map {
	int fd;
	uint8_t *image;      /* NULL when the file is empty */
	uint64_t size_bytes;
};

/* Opens <seq>.seg (read-write if writable) and maps it. */
RMX_MUST_CHECK int segment_map_open(int shard_dirfd, uint32_t seq, bool writable,
				    struct segment_map *m);
/* Unmaps, drops the file's clean cached pages (a scan reads a segment
 * once; and where the store commits with O_DIRECT a cached page in the
 * range of a commit makes that write block, so io_uring hands it to an
 * io-wq thread), and closes the fd unless keep_fd (then the caller owns
 * m->fd). */
void segment_map_close(struct segment_map *m, bool keep_fd);

/* A fresh random salt (getrandom; blocks only until the kernel's pool is
 * first initialised at boot). */
RMX_MUST_CHECK int segment_salt_new(uint64_t *salt);

/*
 * Creates <seq>.seg (must not exist) of size_bytes, allocated and filled
 * with zeros, with the header of w<worker>/<seq> and a fresh salt in its
 * first block, fdatasynced, and the directory fsynced. On success *fd is
 * open read-write and *salt set; on failure the file is removed.
 */
RMX_MUST_CHECK int segment_create_zeroed(int shard_dirfd, uint32_t worker, uint32_t seq,
					 uint64_t size_bytes, int *fd, uint64_t *salt);

/* Writes the header of w<worker>/<seq> with a fresh salt over the first
 * block of fd, then fdatasync; for a segment that holds no record. */
RMX_MUST_CHECK int segment_write_header(int fd, uint32_t worker, uint32_t seq, uint64_t *salt);

/* 1 if every block of the file's first size_bytes is allocated and
 * written (no holes, no unwritten extents: an overwrite needs no metadata
 * change), 0 if not, -errno if the file system cannot tell (FIEMAP). */
RMX_MUST_CHECK int segment_is_prezeroed(int fd, uint64_t size_bytes);

/* Overwrites [offset, offset+len) with zeros, then fdatasync. */
RMX_MUST_CHECK int segment_zero_range(int fd, uint64_t offset, uint64_t len);

/* Writes all of buf at offset, retrying short writes and EINTR. */
RMX_MUST_CHECK int segment_write_all_at(int fd, const void *buf, size_t len, uint64_t offset);

#endif
