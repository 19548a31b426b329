/*
 * store.h - one worker's shard of the segment store at run time: a sans-IO
 * group-commit state machine on the hot path. Start-up (store_open, the
 * recovery scan, quarantine) is store_recover.h.
 *
 * Layout: DIR/w<N>/<seq>.seg, pre-zeroed files of segment_size bytes: a
 * header block with the segment's random salt (segment.h), then 8-byte-
 * aligned records (record.h) from SEGMENT_HEADER_BYTES on; the first
 * all-zero record header ends a segment. Every record's CRC is salted with
 * its segment's salt, which the store mixes in when it takes the record, so
 * a message body can never pass for framing. Bad records are copied to
 * DIR/w<N>/quarantine/ at recovery; damage in a sealed segment (one that a
 * later segment with data follows) cannot be a torn write and is reported
 * as such (sealed_damaged). Segments of another format stop store_open.
 *
 * Hot path (DESIGN.md rules 2 and 6): core/ appends sealed records with
 * store_append(), asks store_commit_plan() for the next write (buffered: one
 * pwritev of the whole batch linked to an fdatasync; direct: the batch copied
 * into a block-aligned buffer, padded with zeros to the next block boundary
 * and written with one O_DIRECT write with RWF_DSYNC, which io_uring issues
 * inline instead of handing a blocking write and a sync to its io-wq
 * threads; the next batch starts at that boundary), performs it on its ring and
 * hands the results to store_commit_advance(), which hands back the cookie
 * of every record made durable. Up to commits_in_flight commits in flight
 * (store_config), each its own batch, acknowledged in order; the next batch
 * fills meanwhile. When the active segment cannot take a record, the store asks
 * for a pre-zeroed spare (store_spare_wanted) which core/ prepares
 * asynchronously, writing the header block store_spare_header() gives it,
 * and hands over with store_spare_ready().
 *
 * store_close() blocks; everything else does no I/O. One store is used by
 * one thread.
 */
#ifndef RINGMX_STORE_H
#define RINGMX_STORE_H

#include <sys/uio.h>

#include "../common/base.h"
#include "io_plan.h"
#include "record.h"
#include "segment.h"

struct store;

/* How group commits reach the disk (the store_io key). */
enum store_io_mode {
	STORE_IO_BUFFERED = 0, /* pwritev into the page cache, linked to an fdatasync */
	STORE_IO_DIRECT,       /* O_DIRECT: one block-aligned write with RWF_DSYNC */
	STORE_IO_AUTO,         /* direct where the file system takes it, else buffered */
};

const char *store_io_mode_name(enum store_io_mode mode);

/* Segments below this sequence are sealed: every record in them was
 * recovered or committed (queue_set_active_segment takes it). */
uint32_t store_first_unsealed_seq(const struct store *st);

/* Closes files and frees the shard. Commits must be finished. */
void store_close(struct store *st);

/* 0 if a new transaction may start; -ENOSPC when the shard is at store_max_bytes;
 * -EIO after an fsync error (the shard takes no more data). */
int store_admit(const struct store *st);

/*
 * Reserves room for a record of padded_bytes and returns its queue id (the
 * id is fixed once returned: it goes into the Received: header). -EAGAIN: no
 * segment has room and the spare is not ready yet (retry after
 * store_spare_ready), or every batch slot is queued (retry after
 * store_commit_done); -ENOSPC: no segment has room and the last attempt to
 * make a spare failed (refuse the message; store_admit says -ENOSPC too
 * until a spare is made); -E2BIG: larger than a segment; -EINVAL: not a multiple
 * of 8 or shorter than a header; -EIO: shard failed.
 * Each reservation must be followed by exactly one store_append with the
 * same id, before the next reservation.
 */
RMX_MUST_CHECK int store_reserve(struct store *st, uint64_t padded_bytes, uint64_t *queue_id);

/*
 * Queues a sealed record at its reserved place. parts are the header
 * (exactly RECORD_HEADER_BYTES, as record_seal left it), the envelope, body
 * pieces and padding; the caller keeps them alive until the cookie comes
 * back from store_commit_done. At most 6 parts. The store writes its own
 * copy of the header, with the CRC salted for the segment; parts[0] is
 * not changed.
 */
RMX_MUST_CHECK int store_append(struct store *st, uint64_t queue_id, const struct iovec *parts,
				int nparts, uint64_t cookie);

/* A write the caller must perform: pwritev(fd, iov, iovcnt, offset), then
 * fdatasync(fd) when sync (linked). direct: fd has O_DIRECT and offset is on
 * a block boundary; store_commit_plan writes the batch from its own aligned
 * copy, padded to a whole block, with RWF_DSYNC when sync. */
struct store_commit {
	bool direct;
	int fd;
	uint64_t offset;
	const struct iovec *iov;
	int iovcnt;
	uint64_t bytes;
	bool sync;
	uint32_t records;
	uint64_t ticket;   /* for store_commit_finish */
};

/*
 * If fewer commits than commits_in_flight are in flight and the oldest batch
 * not handed out is complete (and lies in the same segment as those in
 * flight), hands it out: fills c (ticket names it) and returns true.
 */
bool store_commit_begin(struct store *st, struct store_commit *c);

/*
 * Reports the result of the commit named ticket, once, after both linked
 * steps: the first negative result of the two, else the write's byte count
 * (or 0). A short write counts as a failure. Records are answered in the
 * order of their batches: a batch whose commit succeeded waits for every
 * older batch's, then calls done(ctx, cookie, 0) for each of its records;
 * so an acknowledged record never follows one that may be torn. After a
 * failure every queued record gets done(ctx, cookie, -EIO), the results
 * of commits still in flight are then ignored, and the shard refuses
 * further data (store_admit returns -EIO): never retry-and-pretend.
 */
void store_commit_finish(struct store *st, uint64_t ticket, int result,
			 void (*done)(void *ctx, uint64_t cookie, int result), void *ctx);

/* store_commit_finish for the oldest commit in flight (with one commit in
 * flight: the one begun last). */
void store_commit_done(struct store *st, int result,
		       void (*done)(void *ctx, uint64_t cookie, int result), void *ctx);

/*
 * The group commit in io_plan.h's words, as core/store_io performs it at run
 * time (the one commit driver; store_commit_begin/done above are its two
 * halves). store_commit_plan: when store_commit_begin hands out a commit,
 * fills p with its pwritev (IO_STEP_WRITEV, len the batch's bytes), linked
 * to an fdatasync when the store syncs, sets *records to the batch's record
 * count and returns true; else false. store_commit_advance: judges the
 * results (a short write is -EIO; after a failed write the sync's
 * -ECANCELED gives way to the write's error), reports them through
 * store_commit_done, and returns what it reported: 0 or -errno. The batch's
 * iovecs stay put until then.
 */
bool store_commit_plan(struct store *st, struct io_plan *p, uint32_t *records);
/* In direct mode the plan is one IO_STEP_WRITE of the padded batch (flags
 * RWF_DSYNC when the store syncs) from an aligned buffer of the store's,
 * one per commit in flight, which stays put until store_commit_advance.
 * The plan's ticket names the commit; executors keep it. */
int store_commit_advance(struct store *st, const struct io_plan *p,
			 void (*done)(void *ctx, uint64_t cookie, int result), void *ctx);

/* True while a commit is in flight or records wait (shutdown flushes). */
bool store_busy(const struct store *st);

/* The shard wants a spare segment: returns true and its path and sequence
 * (path is valid until store_spare_ready). core/ makes it (segment_make.h:
 * with the header block of store_spare_header), then hands over the fd.
 * After a failed spare the next request waits STORE_SPARE_RETRY_MIN_MS from
 * the first call that sees the failure (now_ms, a monotonic clock), doubling
 * with each failure up to STORE_SPARE_RETRY_MAX_MS; a success resets it. */
bool store_spare_wanted(struct store *st, uint64_t now_ms, const char **path, uint32_t *seq);

/* Fills block with the header of the spare asked for, salted with salt (a
 * fresh random value the caller drew: getrandom is a system call, so it is
 * core/'s to make). The store keeps the salt for the spare's records. Call
 * after store_spare_wanted, before a store_spare_ready that hands an fd over. */
void store_spare_header(struct store *st, uint64_t salt, uint8_t block[SEGMENT_HEADER_BYTES]);

/* The spare is ready (fd >= 0) or could not be made (fd = -errno). */
void store_spare_ready(struct store *st, uint32_t seq, int fd);
/* The same for a spare whose fd has O_DIRECT (segment_make's keep_direct):
 * a store that commits direct does so in it. */
void store_spare_ready_direct(struct store *st, uint32_t seq, int fd);

/* True when the store commits with O_DIRECT (chosen at store_open): core/
 * makes spares with keep_direct then. */
bool store_commits_direct(const struct store *st);

/*
 * Verifies the record of queue_id read back from this shard into
 * p[0..avail) with its segment's salt: record_check() for callers that hold
 * no salts (the forwarder). RECORD_BAD_HEADER when the id names no segment
 * of the shard. out is filled only for RECORD_OK.
 */
enum record_check_result store_record_check(const struct store *st, uint64_t queue_id,
					    const uint8_t *p, size_t avail, struct record_view *out);

/* The shard directory fd (for the directory fsync after creating a segment). */
int store_dir_fd(const struct store *st);

/* A segment fd the store is done with (a sealed segment fully written):
 * core/ closes it. Returns -1 when there is none. store_close() closes the
 * ones never collected; if too many pile up the store closes one itself. */
int store_retired_fd(struct store *st);

/* A sealed segment (not the active one, not the spare, no commit pending in
 * it) has been removed by core/ because every record in it is final: it no
 * longer counts toward store_max_bytes. */
void store_segment_removed(struct store *st, uint32_t seq);

struct store_stats {
	uint64_t bytes_used;
	uint32_t segments;
	uint64_t records_committed;
	uint64_t commits;
};
void store_get_stats(const struct store *st, struct store_stats *out);

#endif
