/*
 * timer.h - a hashed timing wheel for connection deadlines.
 *
 * Nodes are embedded in their owners (no allocation); arming, re-arming and
 * cancelling are O(1); advancing visits only the slots whose tick passed.
 * Resolution TIMER_TICK_MS. A deadline further away than one turn of the
 * wheel stays in its slot until its own turn comes. One worker owns a wheel.
 */
#ifndef RINGMX_TIMER_H
#define RINGMX_TIMER_H

#include "../common/base.h"
#include "../common/bounds.h"


struct timer_node {
	struct timer_node *prev;
	struct timer_node *next;
	uint64_t deadline_tick;
	bool armed;
};

struct timer_wheel {
	struct timer_node slots[TIMER_SLOTS]; /* list heads */
	uint64_t now_tick;
	uint32_t armed_count;
};

void timer_wheel_init(struct timer_wheel *w, uint64_t now_ms);

/* Arms (or re-arms) n to fire at or after now + delay_ms. */
void timer_arm(struct timer_wheel *w, struct timer_node *n, uint64_t delay_ms);

void timer_cancel(struct timer_wheel *w, struct timer_node *n);

/* Moves the wheel to now_ms; calls fire(ctx, n) for each node due, after
 * disarming it (fire may re-arm it or free its owner). */
void timer_wheel_advance(struct timer_wheel *w, uint64_t now_ms,
			 void (*fire)(void *ctx, struct timer_node *n), void *ctx);

#endif
