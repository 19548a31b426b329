/*
 * worker.h - one pinned thread with its own io_uring, listeners, connections,
 * buffer ring and store shard (DESIGN.md rule 1).
 *
 * main.c creates the listening sockets and opens the store shards (blocking
 * start-up work), then starts the workers. The only cross-thread traffic is
 * worker_request_stop() (an eventfd write) and the global connection count.
 */
#ifndef RINGMX_WORKER_H
#define RINGMX_WORKER_H

#include <pthread.h>
#include <stdatomic.h>

#include "../common/base.h"
#include "config.h"
#include "forward.h"
#include "../common/bounds.h"

struct front;

struct store;
struct queue;
struct metrics_worker;
struct metrics_static;
struct worker_loop;

struct worker {
	uint32_t id;
	int cpu;                        /* pinned to this CPU, -1: not pinned */
	const struct config *cfg;       /* the snapshot at start-up */
	_Atomic(const struct config *) cfg_next; /* set by worker_request_reload */
	atomic_uint cfg_held_mask;      /* bit k: snapshot k is still read by this worker */
	_Atomic(const struct config *) cfg_applied; /* the last snapshot switched to, stored
						     * after cfg_held_mask names it */
	atomic_uint *connections;       /* all workers' open connections */
	const struct front *front;      /* what all workers' connections share */
	int listen_fds[LISTENERS_MAX];
	uint32_t listen_count;
	int wake_fd;                    /* eventfd: a write asks the worker to stop */
	/* Store shards and their forwarding queues: [0] is the worker's own
	 * (w<id>), which takes the new records; the others are leftover shards
	 * (w<k>, k >= workers) whose mail this worker forwards. */
	struct forward_shard shards[FORWARD_SHARDS_MAX];
	uint32_t shard_count;
	int metrics_fd;                 /* the metrics listener, -1 when off */
	struct metrics_worker *metrics; /* this worker's counters (64-byte aligned) */
	const struct metrics_worker *const *all_metrics; /* every worker's, for a scrape */
	uint32_t worker_count;
	const struct metrics_static *metrics_static;
	pthread_t thread;
	atomic_int status;              /* 0 starting, 1 running, <0 -errno at start-up */
	atomic_bool finished;           /* the loop has ended */
	atomic_bool stop_requested;     /* set with the eventfd write: drain */
	atomic_bool control_requested;  /* set with the eventfd write: operator requests */
	atomic_bool reload_requested;   /* set with the eventfd write: cfg_next is new */
	atomic_bool drained;            /* draining is over; waits for exit_now */
	atomic_bool exit_now;           /* every worker has drained: leave the loop */
	int exit_status;
	struct worker_loop *loop;       /* private to worker.c */
};

/* Starts the thread. Returns 0 once it runs its loop, or -errno. */
RMX_MUST_CHECK int worker_start(struct worker *w);

/* Asks the worker to drain (first call) or to hurry (later calls). Any thread. */
void worker_request_stop(struct worker *w);

/* Every worker has drained (worker.drained): ends the worker's loop. Any thread. */
void worker_request_exit(struct worker *w);

/* Asks the worker to apply the operator's request files (control.h) of its
 * shard. Any thread. */
void worker_request_control(struct worker *w);

/*
 * Hands the worker a new configuration snapshot (SIGHUP). The worker
 * switches at its next loop turn: new sessions, timers, the forwarder and
 * the queues use it; sessions already open keep reading the snapshot they
 * started with. cfg_held_mask tells when a snapshot is no longer read
 * (main.c frees it then). Any thread; next outlives the worker's use.
 */
void worker_request_reload(struct worker *w, const struct config *next);

/*
 * True when snapshot k is read by none of the count workers and none can be
 * about to read it: every worker has switched to the snapshot last handed
 * to it (one that has loaded cfg_next but not yet published its held mask
 * has not), so snapshots other than that current one are safe to free. The
 * reloading thread only.
 */
bool worker_snapshot_unused(const struct worker *workers, uint32_t count, uint32_t k);

/* Waits for the thread; returns its exit status (0 clean). */
int worker_join(struct worker *w);

#endif
