/*
 * forward_upkeep.h - the forwarder's disk upkeep of its shards (DESIGN.md
 * "Storage"): the delivery-log commits that make recipients' outcomes
 * durable, and the removal of segments whose every record is final. The
 * queues and storage plan the work; the worker's store_io performs it, one
 * commit and one removal in flight at a time. Private to core/forward*.c.
 * Worker thread only.
 */
#ifndef RINGMX_FORWARD_UPKEEP_H
#define RINGMX_FORWARD_UPKEEP_H

#include "forward_state.h"

/* Registers the delivery-log and reclamation jobs with the worker's
 * executor; once, at forward_new. */
void forward_upkeep_jobs_add(struct forward *f);

/* Once per tick: starts the next delivery-log commit (the shards taking
 * turns) and the next segment removal, when there is one to do and none of
 * its kind is in flight. */
void forward_upkeep_submit(struct forward *f);

/* True while a shard's delivery-log commit is pending or in flight, or a
 * segment is being removed. */
bool forward_upkeep_busy(const struct forward *f);

#endif
