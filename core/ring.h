/*
 * ring.h - the io_uring of one worker: set-up with the best flags the kernel
 * accepts, the provided buffer ring that liburing 2.3 cannot set up by
 * itself, and the user_data codec.
 *
 * user_data packs (op, generation, slot): the op selects the handler, the
 * slot finds the connection (or listener, or store step) and the generation
 * tells a completion for a slot's previous owner from one for its current
 * owner. Only the worker thread that created a ring touches it.
 */
#ifndef RINGMX_RING_H
#define RINGMX_RING_H

#include <liburing.h>

#include "../common/base.h"

/* UAPI constants that liburing 2.3's headers may lack. */
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif

enum ring_op {
	RING_OP_NONE = 0,
	RING_OP_ACCEPT,       /* slot: listener index */
	RING_OP_RECV,         /* slot: connection */
	RING_OP_SEND,         /* slot: connection */
	RING_OP_REJECT_SEND,  /* slot: the fd of a refused connection */
	RING_OP_STORE_IO,     /* gen: a store_io job, slot: the step of its plan */
	RING_OP_WAKE,         /* the worker's eventfd: shutdown requested */
	RING_OP_CANCEL,       /* result of a cancel request: ignored */
	RING_OP_FWD_CONNECT,  /* slot: upstream connection */
	RING_OP_FWD_RECV,     /* slot: upstream connection */
	RING_OP_FWD_SEND,     /* slot: upstream connection */
	RING_OP_FWD_CLOSE,    /* slot: upstream connection (its socket being closed) */
	RING_OP_HTTP_ACCEPT,  /* the metrics listener */
	RING_OP_LOG_WRITE,    /* a batch of the worker's log lines to stderr */
	RING_OP_AUTH,         /* slot: connection; posted by a verifier thread (MSG_RING) */
	RING_OP_COUNT
};

static inline uint64_t ring_ud(enum ring_op op, uint32_t gen, uint32_t slot)
{
	return ((uint64_t)op << 56) | ((uint64_t)(gen & 0xffffffu) << 32) | slot;
}
static inline enum ring_op ring_ud_op(uint64_t ud) { return (enum ring_op)(ud >> 56); }
static inline uint32_t ring_ud_gen(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xffffffu; }
static inline uint32_t ring_ud_slot(uint64_t ud) { return (uint32_t)ud; }

/* Flags the ring was created with, for the start-up log. */
struct ring_info {
	unsigned flags;
	bool defer_taskrun;
};

/*
 * Creates ring with `entries` SQEs, trying SINGLE_ISSUER + DEFER_TASKRUN,
 * then COOP_TASKRUN, then nothing, and allocates its SQE backlog (below).
 * Must run on the worker thread, which then owns the ring until ring_exit;
 * one ring per thread. Returns 0 or -errno.
 */
RMX_MUST_CHECK int ring_init(struct io_uring *ring, unsigned entries, struct ring_info *info);

/* A provided buffer ring: count buffers of size bytes, group bgid. */
struct buf_ring {
	struct io_uring_buf_ring *br;
	uint8_t *base;
	uint32_t count;
	uint32_t size_bytes;
	uint16_t bgid;
	uint32_t returned; /* buffers added since the last advance */
};

/* Registers the ring and fills it with every buffer. Returns 0 or -errno. */
RMX_MUST_CHECK int buf_ring_setup(struct io_uring *ring, struct buf_ring *b, uint32_t count,
				  uint32_t size_bytes, uint16_t bgid);
void buf_ring_free(struct io_uring *ring, struct buf_ring *b);

static inline uint8_t *buf_ring_addr(const struct buf_ring *b, uint16_t bid)
{
	RMX_ASSERT(bid < b->count);
	return b->base + (size_t)bid * b->size_bytes;
}

/* Gives buffer bid back; visible to the kernel at the next buf_ring_publish. */
static inline void buf_ring_return(struct buf_ring *b, uint16_t bid)
{
	io_uring_buf_ring_add(b->br, buf_ring_addr(b, bid), b->size_bytes, bid,
			      io_uring_buf_ring_mask(b->count), (int)b->returned);
	b->returned++;
}

static inline void buf_ring_publish(struct buf_ring *b)
{
	if (b->returned) {
		io_uring_buf_ring_advance(b->br, (int)b->returned);
		b->returned = 0;
	}
}

/*
 * Submission without aborting and without cutting link chains.
 *
 * Every ring made by ring_init has a user-space backlog of SQEs beside its
 * SQ, as many entries as the SQ holds (at most RING_BACKLOG_SQES_MAX). When the
 * SQ is full and the kernel refuses a submission (-EAGAIN, -EBUSY, -EINTR, or
 * any other error, which the loop's own wait then reports), SQEs are handed
 * out from the backlog instead: liburing's prep helpers only fill the struct,
 * so callers cannot tell. Order is strict: once anything waits in the
 * backlog, every new SQE goes there too, and ring_flush moves the backlog
 * into the SQ, oldest first, one whole link chain at a time (a chain moves
 * only when all of it fits, so one submission carries it whole).
 *
 * The backlog is found through the calling thread (one ring per worker
 * thread): every function below must run on the thread that called
 * ring_init, with that ring.
 */

/* Releases the backlog and the ring. Safe after a failed ring_init. */
void ring_exit(struct io_uring *ring);

/* An SQE, from the SQ or (see above) the backlog. Never NULL. */
struct io_uring_sqe *ring_sqe(struct io_uring *ring);

/*
 * n SQEs (1 <= n <= the SQ size) that go to the kernel in one submission, in
 * this order, out[0] first: what a link chain (IOSQE_IO_LINK on all but the
 * last) needs, since a submission that ends inside a chain cuts it in two.
 * Never fails.
 */
void ring_sqes(struct io_uring *ring, unsigned n, struct io_uring_sqe **out);

/* Moves waiting SQEs into the SQ (submitting when a chain does not fit).
 * Call once per loop turn, just before the loop submits and waits. */
void ring_flush(struct io_uring *ring);

/* What the backlog has seen, for logs and metrics. */
struct ring_backlog_stats {
	uint64_t sqes_total;            /* SQEs handed out from the backlog */
	uint64_t submit_failures_total; /* submissions the kernel refused */
	uint32_t waiting;               /* SQEs in the backlog now */
	uint32_t waiting_peak;
	int last_error;                 /* -errno of the last refused submission */
};
struct ring_backlog_stats ring_backlog_stats(const struct io_uring *ring);

/* Tests only: the function that submits the SQ when it is full or when
 * ring_flush needs room (NULL: io_uring_submit). Runs only on those paths. */
typedef int (*ring_submit_fn)(struct io_uring *ring);
void ring_set_submit_hook(struct io_uring *ring, ring_submit_fn fn);

#endif
