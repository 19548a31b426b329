/*
 * timer.c - the timing wheel. Slot heads are sentinels of circular lists;
 * a node is in exactly one list while armed (asserted on every change).
 */
#include "timer.h"

static void list_unlink(struct timer_node *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}

void timer_wheel_init(struct timer_wheel *w, uint64_t now_ms)
{
	for (size_t i = 0; i < TIMER_SLOTS; i++)
		w->slots[i].prev = w->slots[i].next = &w->slots[i];
	w->now_tick = now_ms / TIMER_TICK_MS;
	w->armed_count = 0;
}

void timer_arm(struct timer_wheel *w, struct timer_node *n, uint64_t delay_ms)
{
	if (n->armed)
		timer_cancel(w, n);
	/* Round up: a deadline never fires early. */
	uint64_t ticks = (delay_ms + TIMER_TICK_MS - 1) / TIMER_TICK_MS;
	n->deadline_tick = w->now_tick + (ticks ? ticks : 1);
	struct timer_node *head = &w->slots[n->deadline_tick & (TIMER_SLOTS - 1)];
	n->next = head->next;
	n->prev = head;
	head->next->prev = n;
	head->next = n;
	n->armed = true;
	w->armed_count++;
}

void timer_cancel(struct timer_wheel *w, struct timer_node *n)
{
	if (!n->armed)
		return;
	RMX_ASSERT(w->armed_count > 0 && n->prev && n->next);
	list_unlink(n);
	n->armed = false;
	w->armed_count--;
}

void timer_wheel_advance(struct timer_wheel *w, uint64_t now_ms,
			 void (*fire)(void *ctx, struct timer_node *n), void *ctx)
{
	uint64_t target = now_ms / TIMER_TICK_MS;
	if (target <= w->now_tick)
		return;
	uint64_t steps = target - w->now_tick;
	if (steps > TIMER_SLOTS)
		steps = TIMER_SLOTS; /* every slot once is enough: deadlines are absolute */
	w->now_tick = target;
	for (uint64_t s = 0; s < steps; s++) {
		struct timer_node *head = &w->slots[(target - s) & (TIMER_SLOTS - 1)];
		struct timer_node *n = head->next;
		while (n != head) {
			struct timer_node *next = n->next;
			if (n->deadline_tick <= target) {
				timer_cancel(w, n);
				fire(ctx, n);
			}
			n = next;
		}
	}
}
