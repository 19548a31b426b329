/*
 * store_io.h - performs storage's plans (storage/io_plan.h) on a worker's
 * ring: the one driver of the disk work that storage plans, for the accept
 * side (the group commit, spare segments) and the forwarder (the
 * delivery-log commit, record reads, quarantine copies, reclamation) alike:
 * one commit driver.
 *
 * A job is a storage state machine seen through two functions, plan and
 * advance. store_io_kick asks an idle job for its next plan and submits every
 * step of it in one reservation (ring_sqes), so a linked run is never cut by
 * a submission boundary; each step's user_data is (RING_OP_STORE_IO, job,
 * step). When the last step of the plan completes, the job's advance takes
 * the results and the job is asked for its next plan at once, until it has
 * none. The caller owns the jobs and keeps them alive while busy. One
 * store_io per worker thread.
 */
#ifndef RINGMX_STORE_IO_H
#define RINGMX_STORE_IO_H

#include <liburing.h>

#include "../common/bounds.h"
#include "../storage/io_plan.h"

/* The worker's jobs (one per group commit in flight, the spare), the
 * forwarder's (the delivery-log commit, reclamation) and one per upstream
 * connection (its record's read, then a bad record's quarantine copy), with
 * room to spare. */
#define STORE_IO_JOBS_MAX (8 + STORE_COMMITS_IN_FLIGHT_MAX + UPSTREAM_CONNECTIONS_MAX)

struct store_io_job {
	bool (*plan)(void *owner, struct io_plan *p);
	void (*advance)(void *owner, const struct io_plan *p);
	void *owner;
	struct io_plan p;
	bool busy; /* a plan is on the ring */
	uint32_t index;
};

struct store_io {
	struct io_uring *ring;
	struct store_io_job *jobs[STORE_IO_JOBS_MAX];
	uint32_t count;
};

void store_io_init(struct store_io *io, struct io_uring *ring);

/* Adds a job (at most STORE_IO_JOBS_MAX, asserted). */
void store_io_add(struct store_io *io, struct store_io_job *job,
		  bool (*plan)(void *owner, struct io_plan *p),
		  void (*advance)(void *owner, const struct io_plan *p), void *owner);

/* If the job is idle, asks it for a plan and submits it; true if busy after. */
bool store_io_kick(struct store_io *io, struct store_io_job *job);

/* A completion whose op is RING_OP_STORE_IO. */
void store_io_on_cqe(struct store_io *io, const struct io_uring_cqe *cqe);

#endif
