/*
 * forward_record.h - a forwarder slot's stored record (DESIGN.md
 * "Forwarding", "Storage"): the read of its message's record from the
 * segment, planned by storage/store_read and performed by store_io on the
 * slot's job; the verdict on it (forward it, read it again later, or set it
 * aside with a copy in quarantine/); and the cache of read-only segment
 * fds. Private to core/forward*.c. Worker thread only.
 */
#ifndef RINGMX_FORWARD_RECORD_H
#define RINGMX_FORWARD_RECORD_H

#include "forward_state.h"

/* Registers the slot's store_io job (its record's read, then a bad record's
 * quarantine copy) with the worker's executor; once, at forward_new. */
void forward_record_job_add(struct forward *f, struct forward_slot *s);

/* Reads the record of the message attached to the slot into a buffer of
 * its own (counted in rec_held_bytes); when it is back the message is
 * loaded and started, requeued, or set aside. */
void forward_record_read(struct forward *f, struct forward_slot *s);

/* Closes the cached fd of segment seq of a shard, if any (before the
 * segment is removed). */
void forward_record_forget_segment(struct forward *f, uint32_t shard, uint32_t seq);

#endif
