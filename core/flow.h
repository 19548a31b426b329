/*
 * flow.h - inflow control: acceptance paced to the forwarder's delivery
 * rate while the backlog is high (Postfix's in_flow_delay, for a store and
 * forward gateway).
 *
 * A message is made durable as always; what waits is its "250". While this
 * worker's backlog (messages stored, not yet forwarded) is above
 * in_flow_backlog and its forwarder is delivering (a message went through
 * in the last FLOW_DELIVERING_MS), each accepted message takes a token, and
 * every message the forwarder delivers gives one. Without a token the
 * connection's 250 is held, oldest first, until a token comes or
 * in_flow_delay has passed. A client that waits for each 250 before its next
 * message (every SMTP client: pipelining ends at DATA) then sends no faster
 * than mail leaves, and the backlog stops growing. When the relays are down
 * nothing is delivered and nothing is held: the store takes the mail, which
 * is what it is for (the overload watermarks bound it).
 *
 * Pure bookkeeping on the worker's thread: the held connections are a list
 * through conn.next in the worker's slab (a connection on it keeps
 * CONN_WAIT_COMMIT, so nothing else lists or releases it meanwhile); the
 * worker answers what flow_next_due hands back.
 */
#ifndef RINGMX_FLOW_H
#define RINGMX_FLOW_H

#include "../common/base.h"
#include "smtp_conn.h"

struct flow {
	uint32_t head, tail;       /* held connections, oldest first (conn.next) */
	uint32_t held;             /* how many */
	uint64_t tokens;           /* deliveries not yet matched by an acceptance */
	uint64_t delivered_seen;   /* the forwarder's delivered count at the last tick */
	uint64_t delivered_at_ms;  /* when it last grew */
	bool pacing;               /* the last tick's verdict */
};

void flow_init(struct flow *fl);

/*
 * Once per loop turn: delivered is the forwarder's running count of
 * messages delivered, backlog this worker's messages stored and not yet
 * forwarded. Tokens grow by the new deliveries (at most FLOW_TOKENS_MAX
 * kept); pacing is on while backlog > backlog_max, delay_ms > 0 and the
 * forwarder delivered within FLOW_DELIVERING_MS.
 */
void flow_tick(struct flow *fl, uint64_t delivered, uint64_t backlog, uint64_t backlog_max,
	       uint64_t delay_ms, uint64_t now_ms);

/* A message of this worker became durable: true when its 250 must be held
 * (pacing, and no token to take; a token is taken otherwise). */
bool flow_should_hold(struct flow *fl);

/* Holds c (its message durable, CONN_WAIT_COMMIT still set) from now_ms. */
void flow_hold(struct flow *fl, struct conn_slab *slab, struct conn *c, uint64_t now_ms);

/*
 * The oldest held connection that may be answered now (a token for it, or
 * held delay_ms already, or release_all), taken off the list; NULL when
 * none. Its token, if any, is spent.
 */
struct conn *flow_next_due(struct flow *fl, struct conn_slab *slab, uint64_t now_ms,
			   uint64_t delay_ms, bool release_all);

#endif
