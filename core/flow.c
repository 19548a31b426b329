/*
 * flow.c - inflow control (see flow.h): tokens from deliveries, held 250s
 * in arrival order.
 *
 * Invariants: a connection is on the list at most once and only while
 * CONN_FLOW_HOLD is set; held counts the list; tokens never exceed
 * FLOW_TOKENS_MAX.
 */
#include "flow.h"

#include "../common/bounds.h"

void flow_init(struct flow *fl)
{
	*fl = (struct flow){ .head = CONN_NONE, .tail = CONN_NONE };
}

void flow_tick(struct flow *fl, uint64_t delivered, uint64_t backlog, uint64_t backlog_max,
	       uint64_t delay_ms, uint64_t now_ms)
{
	if (delivered > fl->delivered_seen) {
		uint64_t more = delivered - fl->delivered_seen;
		fl->tokens = RMX_MIN(fl->tokens + more, (uint64_t)FLOW_TOKENS_MAX);
		fl->delivered_at_ms = now_ms;
	}
	fl->delivered_seen = delivered;
	bool delivering = fl->delivered_at_ms != 0 &&
			  now_ms - fl->delivered_at_ms <= FLOW_DELIVERING_MS;
	bool pacing = delay_ms > 0 && backlog > backlog_max && delivering;
	if (pacing && !fl->pacing)
		fl->tokens = 0; /* deliveries before the backlog rose are not owed */
	fl->pacing = pacing;
}

bool flow_should_hold(struct flow *fl)
{
	if (!fl->pacing)
		return false;
	if (fl->held == 0 && fl->tokens > 0) {
		fl->tokens--;
		return false;
	}
	return true; /* behind the ones already held, or no token */
}

void flow_hold(struct flow *fl, struct conn_slab *slab, struct conn *c, uint64_t now_ms)
{
	RMX_ASSERT((c->flags & CONN_WAIT_COMMIT) && !(c->flags & CONN_FLOW_HOLD));
	c->flags |= CONN_FLOW_HOLD;
	c->flow_held_ms = now_ms;
	c->next = CONN_NONE;
	uint32_t idx = conn_index(slab, c);
	if (fl->tail == CONN_NONE)
		fl->head = idx;
	else
		slab->conns[fl->tail].next = idx;
	fl->tail = idx;
	fl->held++;
}

struct conn *flow_next_due(struct flow *fl, struct conn_slab *slab, uint64_t now_ms,
			   uint64_t delay_ms, bool release_all)
{
	if (fl->head == CONN_NONE)
		return NULL;
	struct conn *c = &slab->conns[fl->head];
	RMX_ASSERT((c->flags & CONN_FLOW_HOLD) && fl->held > 0);
	if (fl->tokens > 0)
		fl->tokens--;
	else if (!release_all && now_ms - c->flow_held_ms < delay_ms)
		return NULL;
	fl->head = c->next;
	if (fl->head == CONN_NONE)
		fl->tail = CONN_NONE;
	c->next = CONN_NONE;
	c->flags &= ~CONN_FLOW_HOLD;
	fl->held--;
	return c;
}
