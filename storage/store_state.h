/*
 * store_state.h - the layout of one shard's store, shared by the two halves
 * of the store module: store.c (the hot path: reserve, append, the commit
 * state machine, spares) and store_recover.c (start-up: open, the recovery
 * scan, quarantine), which fills the state that store.c then runs on.
 * Private to storage/store*.c; everyone else sees struct store as opaque
 * (store.h).
 */
#ifndef RINGMX_STORE_STATE_H
#define RINGMX_STORE_STATE_H

#include <limits.h>
#include <sys/uio.h>

#include "../common/base.h"
#include "../common/bounds.h"
#include "record.h"

struct store_batch {
	uint32_t seq;              /* segment written by this batch */
	int fd;
	uint64_t offset;           /* where the batch starts in the segment */
	uint64_t bytes;            /* reserved bytes, contiguous from offset */
	uint32_t records;          /* including a reservation not yet appended */
	int iovcnt;
	bool in_flight;            /* handed out, its result not back yet */
	bool finished;             /* its result (a success) is back, an older batch's is not */
	uint32_t bounce_slot;      /* direct, in flight: its aligned copy */
	uint64_t ticket;           /* names the commit while it is handed out */
	bool pending_append;       /* holds the outstanding reservation */
	bool direct;               /* fd has O_DIRECT: offset is on a block boundary */
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
	bool direct;               /* commits go O_DIRECT (store_recover chose it) */
	uint8_t *bounce;           /* direct: one aligned copy per commit in flight (mmap'd) */
	uint64_t bounce_bytes;     /* room for the largest padded batch, per slot */
	uint32_t bounce_free;      /* bit i: slot i is not in use */
	uint32_t commits_in_flight_max; /* 1..STORE_COMMITS_IN_FLIGHT_MAX */
	int dir_fd;                /* DIR/w<N>, flock()ed for the shard's lifetime */

	uint32_t active_seq;
	uint64_t active_salt;
	int active_fd;
	uint64_t active_size_bytes;
	uint64_t active_tail;      /* next reservation starts here */
	bool active_sealed;        /* a record did not fit: waiting for the spare */
	bool active_direct;        /* active_fd has O_DIRECT */

	int spare_fd;              /* -1: none */
	uint32_t spare_seq;
	uint64_t spare_salt;
	bool spare_direct;         /* spare_fd has O_DIRECT */
	bool spare_requested;      /* handed out by store_spare_wanted, not back yet */
	bool spare_header_made;    /* store_spare_header called for the request */
	int spare_error;           /* the last failed spare, 0 when the last worked */
	uint64_t spare_backoff_ms; /* after a failure: the wait before the next try, doubling */
	uint64_t spare_retry_at_ms;
	bool spare_retry_armed;    /* spare_retry_at_ms is set for the failure in spare_error */
	char spare_path[PATH_MAX];

	bool reserved;
	uint64_t reserved_id;
	uint64_t reserved_bytes;
	uint32_t reserved_slot;

	struct store_batch *batch; /* STORE_BATCH_SLOTS */
	uint32_t batch_head;
	uint32_t batch_count;
	uint32_t handed_out;       /* the oldest batches, in flight or finished */
	uint32_t in_flight;        /* of those, the ones whose result is not back */
	uint32_t orphans;          /* commits still in flight after a failure answered them */
	uint64_t next_ticket;
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
RMX_MUST_CHECK int store_salt_reserve(struct store *st, uint32_t more);

/* Appends the salt of a segment newer than every one held; room was
 * reserved with store_salt_reserve. */
void store_salt_put(struct store *st, uint32_t seq, uint64_t salt);

#endif
