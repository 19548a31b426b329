/*
 * test_overload.c - the overload state machine: each measure enters stress
 * at its soft mark and refuse at its hard mark, leaves only a tenth below
 * (no flapping at a watermark), the state is the worst measure, reasons
 * name the measures past soft, watermarks of 0 are off, and changes are
 * reported once.
 */
#include "../core/config.h"
#include "../core/overload.h"
#include "test.h"

static const struct overload_watermarks marks = {
	.store_soft_pct = 90, .store_hard_pct = 97,
	.backlog_soft = 1000, .backlog_hard = 5000,
	.backlog_age_soft_s = 1800, .backlog_age_hard_s = 7200,
	.inflight_soft_pct = 80, .inflight_hard_pct = 95,
};

/* A sample with store use at store_permille and the rest idle. */
static struct overload_sample store_at(uint64_t store_permille)
{
	struct overload_sample s = {
		.store_used_bytes = store_permille * 1000000, .store_max_bytes = 1000000000,
		.inflight_max_bytes = 256u << 20,
	};
	return s;
}

static void test_store_hysteresis(void)
{
	struct overload o;
	overload_init(&o);
	struct overload_sample s = store_at(899);
	CHECK(!overload_update(&o, &marks, &s));
	CHECK(o.state == OVERLOAD_NORMAL && o.reasons == 0);
	s = store_at(900);
	CHECK(overload_update(&o, &marks, &s));
	CHECK(o.state == OVERLOAD_STRESS);
	CHECK(o.reasons == OVERLOAD_REASON_BIT(OVERLOAD_REASON_STORE));
	CHECK(o.level[OVERLOAD_REASON_STORE] == OVERLOAD_STRESS);
	/* Hovering just under the mark: no flapping. */
	for (uint64_t p = 899; p >= 810; p -= 89) {
		s = store_at(p);
		CHECK(!overload_update(&o, &marks, &s));
		CHECK(o.state == OVERLOAD_STRESS);
	}
	s = store_at(809);
	CHECK(overload_update(&o, &marks, &s));
	CHECK(o.state == OVERLOAD_NORMAL && o.reasons == 0);
	/* Straight to refuse, and down through stress's band. */
	s = store_at(970);
	CHECK(overload_update(&o, &marks, &s));
	CHECK(o.state == OVERLOAD_REFUSE);
	CHECK(overload_refuses_connect(o.state) && overload_refuses_mail(o.state));
	s = store_at(874); /* 970 - 97 = 873: still refuse */
	CHECK(!overload_update(&o, &marks, &s));
	CHECK(o.state == OVERLOAD_REFUSE);
	s = store_at(872); /* below refuse's band, inside stress's (810..) */
	CHECK(overload_update(&o, &marks, &s));
	CHECK(o.state == OVERLOAD_STRESS);
	CHECK(!overload_refuses_connect(o.state) && overload_refuses_mail(o.state));
	s = store_at(0);
	CHECK(overload_update(&o, &marks, &s));
	CHECK(o.state == OVERLOAD_NORMAL);
	CHECK(!overload_refuses_connect(o.state) && !overload_refuses_mail(o.state));
	/* A store with no bound is never over it. */
	s.store_max_bytes = 0;
	s.store_used_bytes = 1;
	CHECK(!overload_update(&o, &marks, &s));
	/* Sizes near the top of uint64 do not overflow the percentage. */
	s.store_max_bytes = UINT64_MAX / 2;
	s.store_used_bytes = UINT64_MAX / 2;
	CHECK(overload_update(&o, &marks, &s) && o.state == OVERLOAD_REFUSE);
}

static void test_reasons(void)
{
	struct overload o;
	overload_init(&o);
	struct overload_sample s = store_at(500);
	s.backlog_messages = 1000;
	s.backlog_oldest_age_s = 7200;
	CHECK(overload_update(&o, &marks, &s));
	CHECK(o.state == OVERLOAD_REFUSE);
	CHECK(o.reasons == (OVERLOAD_REASON_BIT(OVERLOAD_REASON_BACKLOG) |
			    OVERLOAD_REASON_BIT(OVERLOAD_REASON_BACKLOG_AGE)));
	CHECK(o.level[OVERLOAD_REASON_BACKLOG] == OVERLOAD_STRESS);
	CHECK(o.level[OVERLOAD_REASON_BACKLOG_AGE] == OVERLOAD_REFUSE);
	char text[64];
	CHECK(overload_reasons_format(o.reasons, text, sizeof(text)));
	CHECK(strcmp(text, "backlog,backlog_age") == 0);
	/* The age clears; the backlog holds stress: a change of reasons. */
	s.backlog_oldest_age_s = 60;
	CHECK(overload_update(&o, &marks, &s));
	CHECK(o.state == OVERLOAD_STRESS);
	CHECK(o.reasons == OVERLOAD_REASON_BIT(OVERLOAD_REASON_BACKLOG));
	/* In-flight bytes join: same state, one more reason. */
	s.inflight_bytes = s.inflight_max_bytes / 100 * 81;
	CHECK(overload_update(&o, &marks, &s));
	CHECK(o.state == OVERLOAD_STRESS);
	CHECK(overload_reasons_format(o.reasons, text, sizeof(text)));
	CHECK(strcmp(text, "backlog,inflight") == 0);
	CHECK(!overload_reasons_format(o.reasons, text, 8));
	CHECK(overload_reasons_format(0, text, sizeof(text)) && strcmp(text, "none") == 0);
	CHECK(strcmp(overload_state_name(OVERLOAD_REFUSE), "refuse") == 0);
	CHECK(strcmp(overload_reason_name(OVERLOAD_REASON_INFLIGHT), "inflight") == 0);

	/* Watermarks of 0 are off, whatever the measure. */
	struct overload_watermarks off = { 0 };
	overload_init(&o);
	s = store_at(1000);
	s.backlog_messages = UINT64_MAX;
	s.backlog_oldest_age_s = UINT64_MAX;
	s.inflight_bytes = s.inflight_max_bytes;
	CHECK(!overload_update(&o, &off, &s));
	CHECK(o.state == OVERLOAD_NORMAL && o.reasons == 0);
	/* Only a hard mark: straight from normal to refuse and back. */
	struct overload_watermarks hard_only = { .backlog_hard = 100 };
	s = store_at(0);
	s.backlog_messages = 100;
	CHECK(overload_update(&o, &hard_only, &s) && o.state == OVERLOAD_REFUSE);
	s.backlog_messages = 90;
	CHECK(!overload_update(&o, &hard_only, &s));
	s.backlog_messages = 89;
	CHECK(overload_update(&o, &hard_only, &s) && o.state == OVERLOAD_NORMAL);
}

/* The configuration's keys reach the watermarks. */
static void test_config_marks(void)
{
	struct config c;
	char err[512];
	REQUIRE(config_load(&c, NULL, err, sizeof(err)) == 0);
	struct overload_watermarks w;
	overload_watermarks_of_config(&c, &w);
	CHECK(w.store_soft_pct == 90 && w.store_hard_pct == 97);
	CHECK(w.inflight_soft_pct == 80 && w.inflight_hard_pct == 95);
	CHECK(w.backlog_soft == 0 && w.backlog_hard == 0);
	CHECK(w.backlog_age_soft_s == 0 && w.backlog_age_hard_s == 0);
	config_free(&c);
}

int main(void)
{
	test_store_hysteresis();
	test_reasons();
	test_config_marks();
	return test_main_end("overload");
}
