/*
 * overload.h - whether the gateway is overloaded, and why, from a sample of
 * its measures: store use, the backlog not yet forwarded (count and age of
 * the oldest) and DATA bytes in flight.
 *
 * Each measure has a soft and a hard watermark (0: not watched). At soft the
 * gateway enters STRESS (shorter timeouts, lower error limits, greeting
 * pause halved, 452 4.3.1 at MAIL for new transactions); at hard REFUSE
 * (421 4.3.2 at connect). Transactions already past DATA are never cut: the
 * state only decides what starts next. Hysteresis: a measure leaves a level
 * only once it is below that level's watermark by a tenth of it (store 90%:
 * stress until below 81%), so a measure that hovers at a watermark does not
 * flap. The state is the highest level of any measure; the reasons are the
 * measures at soft or above.
 *
 * Pure: no clock, no I/O, no allocation. One owner updates a struct
 * overload (any thread, one at a time) and publishes its state as it likes.
 */
#ifndef RINGMX_OVERLOAD_H
#define RINGMX_OVERLOAD_H

#include "../common/base.h"

struct config;

enum overload_state {
	OVERLOAD_NORMAL,
	OVERLOAD_STRESS,
	OVERLOAD_REFUSE,
	OVERLOAD_STATE_COUNT
};

enum overload_reason {
	OVERLOAD_REASON_STORE,       /* store use, of store_max_bytes */
	OVERLOAD_REASON_BACKLOG,     /* messages not yet forwarded */
	OVERLOAD_REASON_BACKLOG_AGE, /* the oldest of them */
	OVERLOAD_REASON_INFLIGHT,    /* DATA bytes in flight, of their bound */
	OVERLOAD_REASON_COUNT
};
#define OVERLOAD_REASON_BIT(r) (1u << (r))

/* The watermarks (0: that one is off). */
struct overload_watermarks {
	uint32_t store_soft_pct, store_hard_pct;
	uint64_t backlog_soft, backlog_hard;
	uint64_t backlog_age_soft_s, backlog_age_hard_s;
	uint32_t inflight_soft_pct, inflight_hard_pct;
};

/* One look at the measures. A max of 0 makes its percentage 0. */
struct overload_sample {
	uint64_t store_used_bytes;
	uint64_t store_max_bytes;
	uint64_t backlog_messages;
	uint64_t backlog_oldest_age_s; /* 0 when the backlog is empty */
	uint64_t inflight_bytes;
	uint64_t inflight_max_bytes;
};

struct overload {
	enum overload_state state;
	uint32_t reasons;                         /* OVERLOAD_REASON_BITs */
	enum overload_state level[OVERLOAD_REASON_COUNT]; /* each measure's own */
};

/* NORMAL, no reasons. */
void overload_init(struct overload *o);

/* The watermarks the configuration gives (the overload_* keys). */
void overload_watermarks_of_config(const struct config *c, struct overload_watermarks *out);

/*
 * Takes a sample; returns true when the state or the reasons changed (the
 * caller logs it: "overload_state from=... to=... reasons=..."). o->level[r]
 * is each measure's gauge (ringmx_overload_reason{reason}), o->state the
 * gauge ringmx_overload_state (0 normal, 1 stress, 2 refuse).
 */
bool overload_update(struct overload *o, const struct overload_watermarks *w,
		     const struct overload_sample *s);

/* What each state means at the door. */
static inline bool overload_refuses_connect(enum overload_state s)
{
	return s == OVERLOAD_REFUSE; /* 421 4.3.2 */
}
static inline bool overload_refuses_mail(enum overload_state s)
{
	return s != OVERLOAD_NORMAL; /* 452 4.3.1 for a new transaction */
}

/* "normal", "stress", "refuse"; "store", "backlog", "backlog_age",
 * "inflight" (the label values of the gauges). */
const char *overload_state_name(enum overload_state s);
const char *overload_reason_name(enum overload_reason r);

/* The reasons as "store,backlog_age" ("none" for none) into out[cap];
 * false when cut short. */
bool overload_reasons_format(uint32_t reasons, char *out, size_t cap);

#endif
