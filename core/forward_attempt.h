/*
 * forward_attempt.h - the message attached to a forwarder slot and the end
 * of its attempt (DESIGN.md "Forwarding"): giving it back to the queue,
 * reporting each recipient's outcome (logged, counted), and the DSN for
 * recipients refused for good or expired, which the slot holds until its
 * record is durable (bounce.h). Private to core/forward*.c; the caller owns
 * the slot and passes its forwarder. Worker thread only.
 */
#ifndef RINGMX_FORWARD_ATTEMPT_H
#define RINGMX_FORWARD_ATTEMPT_H

#include "forward_state.h"

/* Lets go of the slot's message and its buffers (s->msg becomes NULL); the
 * record buffer's bytes go back to the forwarder's budget. */
void forward_attempt_release(struct forward *f, struct forward_slot *s);

/* Gives the slot's message back to the queue without counting an attempt,
 * due at due_unix_ms, and lets go of it. */
void forward_attempt_requeue(struct forward *f, struct forward_slot *s, int64_t due_unix_ms);

/* The attempt on the slot's message is over (outcomes reported): the queue
 * says what next; a DSN due keeps the message on the slot (s->dsn.active). */
void forward_attempt_finished(struct forward *f, struct forward_slot *s);

/* Every pending recipient of the slot's message failed the same way
 * (code, status); the attempt ends. */
void forward_attempt_fail_all(struct forward *f, struct forward_slot *s,
			      enum queue_outcome outcome, uint16_t code, const char *status);

/* The connection ended under the slot's message: begun on the wire, every
 * unfinished recipient gets a 4xx and the attempt ends; not read yet, the
 * message goes back to the queue; read but not begun, it stays. */
void forward_attempt_connection_lost(struct forward *f, struct forward_slot *s,
				     const char *why);

/* The client's MESSAGE_DONE: one outcome per recipient, then the attempt
 * ends. */
void forward_attempt_results(struct forward *f, struct forward_slot *s);

/* Appends the slot's DSN record to the worker's own shard; -EAGAIN leaves
 * it waiting for the next tick, any other failure abandons it. */
void forward_attempt_dsn_store(struct forward *f, struct forward_slot *s);

/* The slot's DSN cannot be stored (error): its recipients are pending
 * again and the slot lets go of the message. */
void forward_attempt_dsn_abandon(struct forward *f, struct forward_slot *s, int error);

#endif
