/*
 * handover.h - handing an operator's queue request to the running gateway
 * (requeue, delete while ringmx holds the shard lock): the request is
 * written atomically as a file in the shard's control/ directory (format:
 * common/control_proto.h), the gateway is sent SIGUSR1 at the pid in
 * DIR/ringmx.pid, and the tool waits, bounded, until it has read it.
 * Tool code: blocking, one thread; errors are printed on stderr here.
 */
#ifndef RINGMX_HANDOVER_H
#define RINGMX_HANDOVER_H

#include <limits.h>

#include "../common/base.h"

/* A request handed to the running gateway: where it was written. */
struct handover {
	char path[PATH_MAX];
	bool written;
};

/* Writes text (one control line) as a request file of shard w<worker>,
 * durably, and notes where in h. Returns 0 or -errno (printed). */
RMX_MUST_CHECK int handover_request_write(const char *data_dir, uint32_t worker,
					  const char *text, struct handover *h);

/* Takes back a written request nobody will read (h->written becomes false). */
void handover_request_withdraw(struct handover *h);

/* Signals the gateway that the count written requests h[] wait, then waits
 * until it has read them all (STORE_TOOL_HANDOVER_WAIT_MS at most); label
 * names the request in the line printed on success. 0 once read; 1
 * (printed) when it cannot be signalled (the requests are withdrawn) or
 * did not read them in time (they stay: it reads them later). */
RMX_MUST_CHECK int handover_signal_and_wait(const char *data_dir, const char *label,
					    struct handover *h, uint32_t count);

#endif
