/*
 * test_flow.c - inflow control's bookkeeping (core/flow.h): pacing only
 * while the backlog is above its mark, the delay is on and the forwarder
 * delivered within FLOW_DELIVERING_MS; one token per delivery, at most
 * FLOW_TOKENS_MAX, none owed from before pacing began; held replies go
 * oldest first, on a token or once held the delay, all at once when
 * released; a connection is on the list once.
 */
#include "../common/bounds.h"
#include "../core/flow.h"
#include "test.h"

#define DELAY_MS 1000
#define MARK 100

/* Holds slab connection i (its message durable: CONN_WAIT_COMMIT). */
static struct conn *hold(struct flow *fl, struct conn_slab *slab, uint64_t now_ms)
{
	struct conn *c = conn_alloc(slab);
	REQUIRE(c != NULL);
	c->flags |= CONN_WAIT_COMMIT;
	flow_hold(fl, slab, c, now_ms);
	return c;
}

static void test_when_pacing(void)
{
	struct flow fl;
	flow_init(&fl);
	/* Nothing delivered yet: the relays may be down; never paced. */
	flow_tick(&fl, 0, 10 * MARK, MARK, DELAY_MS, 1000);
	CHECK(!fl.pacing && !flow_should_hold(&fl));
	/* Delivering, backlog above the mark: paced. */
	flow_tick(&fl, 50, 10 * MARK, MARK, DELAY_MS, 2000);
	CHECK(fl.pacing);
	/* Tokens owed from before pacing began are dropped. */
	CHECK_EQ_U(fl.tokens, 0);
	CHECK(flow_should_hold(&fl));
	/* At or below the mark: not paced. */
	flow_tick(&fl, 60, MARK, MARK, DELAY_MS, 2100);
	CHECK(!fl.pacing && !flow_should_hold(&fl));
	/* The delay 0 turns it off. */
	flow_tick(&fl, 70, 10 * MARK, MARK, 0, 2200);
	CHECK(!fl.pacing);
	/* Paced again; then no delivery for longer than FLOW_DELIVERING_MS
	 * (the relays went down): not paced, the store takes the mail. */
	flow_tick(&fl, 80, 10 * MARK, MARK, DELAY_MS, 2300);
	CHECK(fl.pacing);
	flow_tick(&fl, 80, 10 * MARK, MARK, DELAY_MS, 2300 + FLOW_DELIVERING_MS);
	CHECK(fl.pacing);
	flow_tick(&fl, 80, 10 * MARK, MARK, DELAY_MS, 2301 + FLOW_DELIVERING_MS);
	CHECK(!fl.pacing);
}

static void test_tokens(void)
{
	struct flow fl;
	flow_init(&fl);
	flow_tick(&fl, 1, 10 * MARK, MARK, DELAY_MS, 1000);
	REQUIRE(fl.pacing);
	/* Three deliveries: three messages pass, the fourth is held. */
	flow_tick(&fl, 4, 10 * MARK, MARK, DELAY_MS, 1001);
	CHECK_EQ_U(fl.tokens, 3);
	for (int i = 0; i < 3; i++)
		CHECK(!flow_should_hold(&fl));
	CHECK(flow_should_hold(&fl));
	/* Never more than FLOW_TOKENS_MAX kept. */
	flow_tick(&fl, 4 + 10 * (uint64_t)FLOW_TOKENS_MAX, 10 * MARK, MARK, DELAY_MS, 1002);
	CHECK_EQ_U(fl.tokens, FLOW_TOKENS_MAX);
}

static void test_held_order(void)
{
	struct conn_slab slab;
	REQUIRE(conn_slab_init(&slab, 8) == 0);
	struct flow fl;
	flow_init(&fl);
	flow_tick(&fl, 1, 10 * MARK, MARK, DELAY_MS, 1000);
	REQUIRE(fl.pacing && fl.tokens == 0);
	struct conn *a = hold(&fl, &slab, 1000);
	struct conn *b = hold(&fl, &slab, 1200);
	struct conn *c = hold(&fl, &slab, 1400);
	CHECK_EQ_U(fl.held, 3);
	CHECK(a->flags & CONN_FLOW_HOLD);
	/* No token, not held long enough: nobody goes. */
	CHECK(flow_next_due(&fl, &slab, 1999, DELAY_MS, false) == NULL);
	/* A token while others are held: a new message queues behind them. */
	flow_tick(&fl, 2, 10 * MARK, MARK, DELAY_MS, 1999);
	CHECK(flow_should_hold(&fl));
	/* The token goes to the oldest. */
	CHECK(flow_next_due(&fl, &slab, 1999, DELAY_MS, false) == a);
	CHECK(!(a->flags & CONN_FLOW_HOLD) && (a->flags & CONN_WAIT_COMMIT));
	CHECK(flow_next_due(&fl, &slab, 1999, DELAY_MS, false) == NULL);
	/* b has waited the delay: it goes without a token; c not yet. */
	CHECK(flow_next_due(&fl, &slab, 2200, DELAY_MS, false) == b);
	CHECK(flow_next_due(&fl, &slab, 2200, DELAY_MS, false) == NULL);
	/* Released all at once (a drain, or pacing ended). */
	CHECK(flow_next_due(&fl, &slab, 2201, DELAY_MS, true) == c);
	CHECK(flow_next_due(&fl, &slab, 2201, DELAY_MS, true) == NULL);
	CHECK_EQ_U(fl.held, 0);
	/* The list is empty and works again. */
	struct conn *d = hold(&fl, &slab, 3000);
	CHECK(flow_next_due(&fl, &slab, 3000, DELAY_MS, true) == d);
	conn_slab_free(&slab);
}

int main(void)
{
	test_when_pacing();
	test_tokens();
	test_held_order();
	return test_main_end("test_flow");
}
