/*
 * test_timer.c - the timing wheel: deadlines never fire early, fire once,
 * survive wrap-around past one turn, and cancel cleanly.
 */
#include "../core/timer.h"
#include "test.h"

struct probe {
	struct timer_node node;
	int fired;
	uint64_t fired_at_ms;
};

static uint64_t clock_ms;

static void on_fire(void *ctx, struct timer_node *n)
{
	(void)ctx;
	struct probe *p = (struct probe *)n;
	p->fired++;
	p->fired_at_ms = clock_ms;
}

static void advance_to(struct timer_wheel *w, uint64_t ms)
{
	for (; clock_ms < ms; clock_ms += 10)
		timer_wheel_advance(w, clock_ms, on_fire, NULL);
	timer_wheel_advance(w, clock_ms, on_fire, NULL);
}

int main(void)
{
	static struct timer_wheel w;
	clock_ms = 1000000;
	timer_wheel_init(&w, clock_ms);

	struct probe a = { 0 }, b = { 0 }, c = { 0 }, far = { 0 };
	timer_arm(&w, &a.node, 250);
	timer_arm(&w, &b.node, 1000);
	timer_arm(&w, &c.node, 500);
	timer_arm(&w, &far.node, 250000); /* more than two turns of the wheel */
	CHECK_EQ_U(w.armed_count, 4);

	advance_to(&w, 1000000 + 200);
	CHECK_EQ_U(a.fired, 0);
	advance_to(&w, 1000000 + 400);
	CHECK_EQ_U(a.fired, 1);
	CHECK(a.fired_at_ms >= 1000000 + 250);

	timer_cancel(&w, &c.node);
	CHECK(!c.node.armed);
	advance_to(&w, 1000000 + 2000);
	CHECK_EQ_U(c.fired, 0);
	CHECK_EQ_U(b.fired, 1);
	CHECK(b.fired_at_ms >= 1000000 + 1000 && b.fired_at_ms < 1000000 + 1300);

	/* Re-arming moves a deadline instead of adding a second one. */
	timer_arm(&w, &a.node, 300);
	timer_arm(&w, &a.node, 3000);
	advance_to(&w, 1000000 + 2000 + 1000);
	CHECK_EQ_U(a.fired, 1);
	advance_to(&w, 1000000 + 2000 + 3200);
	CHECK_EQ_U(a.fired, 2);

	CHECK_EQ_U(far.fired, 0);
	advance_to(&w, 1000000 + 249000);
	CHECK_EQ_U(far.fired, 0);
	advance_to(&w, 1000000 + 250200);
	CHECK_EQ_U(far.fired, 1);
	CHECK(far.fired_at_ms >= 1000000 + 250000);

	/* A jump far past one turn still fires what is due, once. */
	struct probe j = { 0 };
	timer_arm(&w, &j.node, 5000);
	clock_ms += 500000;
	timer_wheel_advance(&w, clock_ms, on_fire, NULL);
	CHECK_EQ_U(j.fired, 1);
	CHECK_EQ_U(w.armed_count, 0);
	return test_main_end("timer");
}
