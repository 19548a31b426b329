/*
 * overload.c - the overload state machine (see overload.h).
 *
 * Each measure is reduced to one number compared with its own watermarks:
 * percentages in permille of their maximum (so 90% is 900 and a tenth of
 * the way back is 810), counts and ages as they are. A measure's level only
 * rises to what its value has reached and only falls below a level once the
 * value is under that level's clear mark (the watermark less a tenth of
 * it). The state is the highest level; nothing else is remembered, so the
 * result depends on the previous levels and the sample alone.
 */
#include "overload.h"

#include "config.h"

#include <string.h>

void overload_init(struct overload *o)
{
	memset(o, 0, sizeof(*o));
	o->state = OVERLOAD_NORMAL;
}

void overload_watermarks_of_config(const struct config *c, struct overload_watermarks *out)
{
	out->store_soft_pct = c->overload_store_soft_pct;
	out->store_hard_pct = c->overload_store_hard_pct;
	out->backlog_soft = c->overload_backlog_soft;
	out->backlog_hard = c->overload_backlog_hard;
	out->backlog_age_soft_s = c->overload_backlog_age_soft_s;
	out->backlog_age_hard_s = c->overload_backlog_age_hard_s;
	out->inflight_soft_pct = c->overload_inflight_soft_pct;
	out->inflight_hard_pct = c->overload_inflight_hard_pct;
}

static uint64_t permille(uint64_t used, uint64_t max)
{
	if (max == 0)
		return 0;
	unsigned __int128 p = (unsigned __int128)used * 1000 / max;
	return p > UINT64_MAX ? UINT64_MAX : (uint64_t)p;
}

/* The value under which a level held at watermark mark is left. */
static uint64_t clear_mark(uint64_t mark)
{
	return mark - mark / 10;
}

/*
 * The new level of a measure at value, from level, with watermarks soft and
 * hard (0: off).
 */
static enum overload_state measure_level(enum overload_state level, uint64_t value,
					 uint64_t soft, uint64_t hard)
{
	enum overload_state reached = OVERLOAD_NORMAL;
	if (hard && value >= hard)
		reached = OVERLOAD_REFUSE;
	else if (soft && value >= soft)
		reached = OVERLOAD_STRESS;
	if (reached >= level)
		return reached;
	if (level == OVERLOAD_REFUSE && hard && value >= clear_mark(hard))
		return OVERLOAD_REFUSE;
	/* Leaving REFUSE, or holding STRESS: the soft mark's band. */
	if (soft && value >= clear_mark(soft))
		return OVERLOAD_STRESS;
	return reached;
}

bool overload_update(struct overload *o, const struct overload_watermarks *w,
		     const struct overload_sample *s)
{
	const uint64_t value[OVERLOAD_REASON_COUNT] = {
		[OVERLOAD_REASON_STORE] = permille(s->store_used_bytes, s->store_max_bytes),
		[OVERLOAD_REASON_BACKLOG] = s->backlog_messages,
		[OVERLOAD_REASON_BACKLOG_AGE] = s->backlog_oldest_age_s,
		[OVERLOAD_REASON_INFLIGHT] = permille(s->inflight_bytes, s->inflight_max_bytes),
	};
	const uint64_t soft[OVERLOAD_REASON_COUNT] = {
		[OVERLOAD_REASON_STORE] = (uint64_t)w->store_soft_pct * 10,
		[OVERLOAD_REASON_BACKLOG] = w->backlog_soft,
		[OVERLOAD_REASON_BACKLOG_AGE] = w->backlog_age_soft_s,
		[OVERLOAD_REASON_INFLIGHT] = (uint64_t)w->inflight_soft_pct * 10,
	};
	const uint64_t hard[OVERLOAD_REASON_COUNT] = {
		[OVERLOAD_REASON_STORE] = (uint64_t)w->store_hard_pct * 10,
		[OVERLOAD_REASON_BACKLOG] = w->backlog_hard,
		[OVERLOAD_REASON_BACKLOG_AGE] = w->backlog_age_hard_s,
		[OVERLOAD_REASON_INFLIGHT] = (uint64_t)w->inflight_hard_pct * 10,
	};
	enum overload_state state = OVERLOAD_NORMAL;
	uint32_t reasons = 0;
	for (unsigned r = 0; r < OVERLOAD_REASON_COUNT; r++) {
		RMX_ASSERT(o->level[r] < OVERLOAD_STATE_COUNT);
		o->level[r] = measure_level(o->level[r], value[r], soft[r], hard[r]);
		if (o->level[r] > state)
			state = o->level[r];
		if (o->level[r] != OVERLOAD_NORMAL)
			reasons |= OVERLOAD_REASON_BIT(r);
	}
	bool changed = state != o->state || reasons != o->reasons;
	o->state = state;
	o->reasons = reasons;
	return changed;
}

const char *overload_state_name(enum overload_state s)
{
	static const char *const names[OVERLOAD_STATE_COUNT] = { "normal", "stress", "refuse" };
	RMX_ASSERT(s < OVERLOAD_STATE_COUNT);
	return names[s];
}

const char *overload_reason_name(enum overload_reason r)
{
	static const char *const names[OVERLOAD_REASON_COUNT] = {
		[OVERLOAD_REASON_STORE] = "store",
		[OVERLOAD_REASON_BACKLOG] = "backlog",
		[OVERLOAD_REASON_BACKLOG_AGE] = "backlog_age",
		[OVERLOAD_REASON_INFLIGHT] = "inflight",
	};
	RMX_ASSERT(r < OVERLOAD_REASON_COUNT);
	return names[r];
}

bool overload_reasons_format(uint32_t reasons, char *out, size_t cap)
{
	if (cap == 0)
		return false;
	out[0] = '\0';
	if (reasons == 0) {
		int n = snprintf(out, cap, "none");
		return n >= 0 && (size_t)n < cap;
	}
	size_t used = 0;
	for (unsigned r = 0; r < OVERLOAD_REASON_COUNT; r++) {
		if (!(reasons & OVERLOAD_REASON_BIT(r)))
			continue;
		int n = snprintf(out + used, cap - used, "%s%s", used ? "," : "",
				 overload_reason_name((enum overload_reason)r));
		if (n < 0 || (size_t)n >= cap - used)
			return false;
		used += (size_t)n;
	}
	return true;
}
