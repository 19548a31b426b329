/*
 * segment_quarantine.h - the copy of damaged record bytes to
 * quarantine/<seq>-<offset>.bad in a shard directory, as a plan-and-advance
 * machine (io_plan.h): make quarantine/ (0700; one that exists is fine),
 * open it and create the file (0600), write the bytes (a short write goes on
 * from where it stopped) linked to an fdatasync, close the file and fsync
 * quarantine/, close it and, when this copy made it, fsync the shard
 * directory. A failure closes what is open and stops there; the copy's
 * file, if made, is left as far as it got.
 *
 * Two users: recovery at start-up (segment_quarantine below, blocking),
 * which copies the same damage again at every start and so replaces an
 * earlier copy; and the forwarder at run time, for a record that no longer
 * checks (on the ring, core/store_io.c), whose copy never replaces one
 * (O_EXCL). No I/O here.
 */
#ifndef RINGMX_SEGMENT_QUARANTINE_H
#define RINGMX_SEGMENT_QUARANTINE_H

#include "io_plan.h"
#include "segment.h"

enum segment_quarantine_state {
	SEGMENT_QUARANTINE_MKDIR,
	SEGMENT_QUARANTINE_OPEN,       /* quarantine/ and the file, side by side */
	SEGMENT_QUARANTINE_WRITE,      /* the bytes left, linked to fdatasync */
	SEGMENT_QUARANTINE_CLOSE_FILE, /* close the file; fsync quarantine/ */
	SEGMENT_QUARANTINE_CLOSE_DIR,  /* close quarantine/; fsync the shard directory if made */
	SEGMENT_QUARANTINE_CLEANUP,    /* after a failure: close what is open */
	SEGMENT_QUARANTINE_DONE,
};

#define SEGMENT_QUARANTINE_PATH_MAX_BYTES 64 /* "quarantine/%08u-%llu.bad" */

struct segment_quarantine {
	enum segment_quarantine_state state;
	int dir_fd;              /* the shard directory */
	uint32_t seq;            /* where the bytes were: segment and offset */
	uint64_t offset;
	bool replace;            /* O_TRUNC an earlier copy instead of O_EXCL */
	const uint8_t *bytes;    /* the caller's, alive until DONE */
	uint64_t len;
	uint64_t written;
	uint32_t chunk;          /* the write in flight */
	char path[SEGMENT_QUARANTINE_PATH_MAX_BYTES]; /* relative to dir_fd */
	bool dir_made;           /* this copy made quarantine/ */
	int qdir_fd;             /* quarantine/, or -1 */
	int fd;                  /* the copy, or -1 */
	/* Outcome, once DONE: 0, or the first -errno and its step. */
	int error;
	enum io_step_op failed_op;
};

/* Starts copying bytes[0..len) of segment seq at offset. */
void segment_quarantine_start(struct segment_quarantine *q, int shard_dirfd, uint32_t seq,
			      uint64_t offset, const uint8_t *bytes, uint64_t len, bool replace);

/* io_plan.h protocol. plan returns false once the state is DONE. */
bool segment_quarantine_plan(struct segment_quarantine *q, struct io_plan *p);
void segment_quarantine_advance(struct segment_quarantine *q, const struct io_plan *p);

static inline bool segment_quarantine_done(const struct segment_quarantine *q)
{
	return q->state == SEGMENT_QUARANTINE_DONE;
}

/* The copy, blocking (io_plan_run_blocking), replacing an earlier one:
 * recovery at start-up, and tools. 0 or -errno. */
RMX_MUST_CHECK int segment_quarantine(int shard_dirfd, uint32_t seq, uint64_t offset,
				      const uint8_t *bytes, uint64_t len);

#endif
