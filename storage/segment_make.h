/*
 * segment_make.h - the making of one segment file (the first segment, or a
 * spare), as a plan-and-advance state machine (io_plan.h): create it with
 * O_EXCL (O_DIRECT where the file system has it, so 64 MiB of zeros never sit
 * dirty in the page cache for a group commit's fdatasync to wait on),
 * fallocate (EOPNOTSUPP is no failure: the zero-fill allocates), write the
 * header block and then zeros to the end, reopen without O_DIRECT (unless
 * the store commits with O_DIRECT: keep_direct), create the
 * delivery log beside it when asked, then fdatasync and fsync the directory
 * when asked. A failure after the file was created closes and unlinks what
 * was made, so no half-made segment is left behind.
 *
 * The same machine runs on the worker's ring (core/store_io.c) and blocking
 * at start-up (segment_make_run_blocking). No I/O here.
 */
#ifndef RINGMX_SEGMENT_MAKE_H
#define RINGMX_SEGMENT_MAKE_H

#include "delivery_log.h"
#include "io_plan.h"
#include "segment.h"

enum segment_make_state {
	SEGMENT_MAKE_IDLE,
	SEGMENT_MAKE_OPEN,
	SEGMENT_MAKE_UNLINK_DIRECT, /* O_DIRECT refused: remove what the open made, reopen buffered */
	SEGMENT_MAKE_FALLOCATE,
	SEGMENT_MAKE_FILL,
	SEGMENT_MAKE_REOPEN,        /* close the O_DIRECT fd, open the file buffered */
	SEGMENT_MAKE_LOG,
	SEGMENT_MAKE_SYNC,
	SEGMENT_MAKE_CLEANUP,
	SEGMENT_MAKE_DONE,
};

struct segment_make_config {
	int dir_fd;                 /* the shard directory; names are relative to it */
	uint64_t size_bytes;
	const uint8_t *header;      /* SEGMENT_HEADER_BYTES, 4096-aligned: the encoded header block */
	const uint8_t *zeros;       /* zeros_bytes of zeros, 4096-aligned */
	uint64_t zeros_bytes;       /* a multiple of 4096 */
	bool sync;                  /* fdatasync the file and fsync the directory */
	bool with_log;              /* also create <seq>.dlog, empty */
	bool keep_direct;           /* hand over the O_DIRECT fd (no REOPEN): for a
				     * store that commits with O_DIRECT (store.h) */
};

struct segment_make {
	struct segment_make_config cfg;
	enum segment_make_state state;
	uint32_t seq;
	char seg_name[SEGMENT_NAME_MAX_BYTES];
	char log_name[DELIVERY_LOG_NAME_MAX_BYTES];
	bool direct;      /* the open fd has O_DIRECT (once DONE: fd has it) */
	bool created;     /* the segment's name exists because of us */
	bool log_created; /* so does the log's */
	uint64_t offset;  /* bytes written from 0 */
	/* Outcome, once DONE: */
	int fd;           /* the segment, ready, or -1 */
	int error;        /* 0, or the -errno that stopped it */
	enum segment_make_state failed_state;
	enum io_step_op failed_op;
	int log_fd;       /* with_log: the delivery log's fd, or -1 */
	int log_error;    /* with_log: why log_fd is -1 (not fatal for the segment) */
	bool fallocate_unsupported;
};

/* Starts making segment seq. cfg's buffers stay alive until DONE. */
void segment_make_start(struct segment_make *m, const struct segment_make_config *cfg, uint32_t seq);

/* io_plan.h protocol. plan returns false once the state is DONE. */
bool segment_make_plan(struct segment_make *m, struct io_plan *p);
void segment_make_advance(struct segment_make *m, const struct io_plan *p);

static inline bool segment_make_done(const struct segment_make *m)
{
	return m->state == SEGMENT_MAKE_DONE;
}

const char *segment_make_state_name(enum segment_make_state s);

/* Runs the machine to DONE with io_plan_run_blocking (start-up, tools). */
void segment_make_run_blocking(struct segment_make *m);

#endif
