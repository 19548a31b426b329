/*
 * forward_upstream.h - a forwarder slot's connection to an upstream relay
 * (DESIGN.md "Forwarding"): connect with failover down the ordered list,
 * the ESMTP session driven through proto/smtp_client, one send and one
 * receive in flight, the upstream_timeout deadline, and the close. Private
 * to core/forward*.c; the ring's completions for RING_OP_FWD_* reach it
 * through forward_on_cqe. Worker thread only.
 */
#ifndef RINGMX_FORWARD_UPSTREAM_H
#define RINGMX_FORWARD_UPSTREAM_H

#include "forward_state.h"

/* Connects the slot to the first upstream not marked down and not tried by
 * this attempt (then to any not tried); none left: the slot is IDLE and a
 * loaded message fails with 451 4.4.1 for now. */
void forward_upstream_connect(struct forward *f, struct forward_slot *s);

/* Stops the slot's connection; the slot is IDLE once nothing is in flight.
 * A message that had not started goes to the next relay, or fails for now. */
void forward_upstream_close(struct forward *f, struct forward_slot *s);

/* Acts on what the client says st: sends, receives, starts the attached
 * message when READY, reports its results, closes. */
void forward_upstream_drive(struct forward *f, struct forward_slot *s,
			    enum smtp_client_status st);

/* Hands the slot's loaded message to the client, which is READY. */
void forward_upstream_start_message(struct forward *f, struct forward_slot *s);

/* The completions of the slot's connect and send (cqe->res), and of its
 * receive (the whole cqe: the bytes are in a provided buffer, which goes
 * back to the worker's buffer ring here). */
void forward_upstream_on_connect(struct forward *f, struct forward_slot *s, int res);
void forward_upstream_on_recv(struct forward *f, struct forward_slot *s,
			      const struct io_uring_cqe *cqe);
void forward_upstream_on_send(struct forward *f, struct forward_slot *s, int res);

/* Once per tick: a receive that found the buffer ring empty is asked
 * again (the buffers given back meanwhile are published before it runs). */
void forward_upstream_recv_again(struct forward *f, struct forward_slot *s);

#endif
