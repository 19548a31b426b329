/*
 * test_queue.c - the forwarding queue. The test plays core/forward: it pops
 * due messages, reports outcomes, ends attempts, performs the log commits
 * (into in-memory logs, or real files for recovery) and unlinks reclaimed
 * segments. Covered: due order, backoff growth and jitter bounds, expiry and
 * the two-step bounce, set-aside, requeue, commit batching over segments,
 * commit failure, a full entry buffer, reclamation only for sealed segments
 * with durable final entries, random operations checked against a replay
 * of the logs, and on real shards written with the store API: recovery
 * (with rollover, reclamation, offline list and mark), a log cut at every
 * byte, and redelivery after a failed log commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "../storage/queue.h"
#include "../storage/queue_recover.h"
#include "../storage/segment.h"
#include "../storage/store.h"
#include "../storage/store_recover.h"
#include "../tools/queue_offline.h"
#include "test.h"

#define W 3                    /* the worker of most tests */
#define FAKE_FD_BASE 1000      /* fds the in-memory tests hand over (never used) */
#define MEM_LOG_ENTRIES 20000
#define SEQS_MAX 16

static struct queue_config cfg_make(void)
{
	struct queue_config c = {
		.data_dir = NULL,
		.worker = W,
		.retry_min_ms = 1000,
		.retry_max_ms = 16000,
		.max_lifetime_ms = 1000000,
		.fsync = true,
		.jitter_seed = 12345,
		.now_unix_ms = 0,
	};
	return c;
}

static uint64_t qid(uint32_t seq, uint64_t offset)
{
	return queue_id_make(W, seq, offset);
}

/* In-memory delivery logs, one per segment, as core/ would write them. */
static uint8_t mem_log[SEQS_MAX][MEM_LOG_ENTRIES * DELIVERY_LOG_ENTRY_BYTES];
static uint64_t mem_log_bytes[SEQS_MAX];

static void mem_reset(void)
{
	memset(mem_log_bytes, 0, sizeof(mem_log_bytes));
}

/* Performs one commit into mem_log; inject != 0 reports that -errno
 * instead. Returns the number of writes, 0 when nothing was handed out. */
static uint32_t mem_commit(struct queue *q, int inject, struct queue_commit *seen)
{
	struct queue_commit c;
	if (!queue_commit_begin(q, &c))
		return 0;
	REQUIRE(c.count >= 1 && c.count <= QUEUE_COMMIT_WRITES_MAX);
	for (uint32_t k = 0; k < c.count; k++) {
		const struct queue_commit_write *w = &c.write[k];
		REQUIRE(w->seq < SEQS_MAX);
		REQUIRE(w->fd == FAKE_FD_BASE + (int)w->seq);
		REQUIRE(w->iov.iov_len == (size_t)w->entries * DELIVERY_LOG_ENTRY_BYTES);
		REQUIRE(w->offset == mem_log_bytes[w->seq]);
		REQUIRE(w->offset + w->iov.iov_len <= sizeof(mem_log[0]));
		memcpy(mem_log[w->seq] + w->offset, w->iov.iov_base, w->iov.iov_len);
		mem_log_bytes[w->seq] += w->iov.iov_len;
	}
	if (seen)
		*seen = c;
	queue_commit_done(q, inject ? -inject : 0);
	return c.count;
}

static void mem_flush(struct queue *q)
{
	while (mem_commit(q, 0, NULL) > 0) {
	}
}

/* The i-th entry of segment seq's in-memory log. */
static struct delivery_log_entry mem_entry(uint32_t seq, uint64_t i)
{
	struct delivery_log_entry e;
	memset(&e, 0, sizeof(e));
	REQUIRE((i + 1) * DELIVERY_LOG_ENTRY_BYTES <= mem_log_bytes[seq]);
	REQUIRE(delivery_log_entry_decode(mem_log[seq] + i * DELIVERY_LOG_ENTRY_BYTES, &e) == DELIVERY_LOG_OK);
	return e;
}

static uint64_t mem_entries(uint32_t seq)
{
	return mem_log_bytes[seq] / DELIVERY_LOG_ENTRY_BYTES;
}

static struct queue *new_queue(const struct queue_config *c)
{
	struct queue *q = NULL;
	REQUIRE(queue_new(c, &q) == 0);
	for (uint32_t seq = 1; seq < 8; seq++)
		REQUIRE(queue_dlog_ready(q, seq, FAKE_FD_BASE + (int)seq) == 0);
	return q;
}

static void test_config_checked(void)
{
	struct queue_config c = cfg_make();
	struct queue *q = (struct queue *)1;
	c.retry_min_ms = 0;
	CHECK(queue_new(&c, &q) == -EINVAL && q == NULL);
	c = cfg_make();
	c.retry_max_ms = c.retry_min_ms - 1;
	CHECK(queue_new(&c, &q) == -EINVAL);
	c = cfg_make();
	c.max_lifetime_ms = 0;
	CHECK(queue_new(&c, &q) == -EINVAL);
	c = cfg_make();
	c.worker = WORKERS_MAX;
	CHECK(queue_new(&c, &q) == -EINVAL);

	c = cfg_make();
	REQUIRE(queue_new(&c, &q) == 0);
	CHECK(queue_add(q, qid(1, 0), 64, 0, 0, 0) == -EINVAL);          /* no recipient */
	CHECK(queue_add(q, qid(1, 0), 64, SMTP_RECIPIENTS_MAX + 1, 0, 0) == -EINVAL);
	CHECK(queue_add(q, queue_id_make(W + 1, 1, 0), 64, 1, 0, 0) == -EINVAL); /* other worker */
	CHECK(queue_add(q, qid(1, 0), 60, 1, 0, 0) == -EINVAL);          /* not padded */
	CHECK(queue_add(q, qid(1, 0), 8, 1, 0, 0) == -EINVAL);           /* shorter than a header */
	CHECK(queue_next_due_time(q) == INT64_MAX);
	CHECK(queue_next_due(q, INT64_MAX) == NULL);
	queue_close(q);
}

static void test_due_order(void)
{
	struct queue_config c = cfg_make();
	struct queue *q = new_queue(&c);
	CHECK(queue_add(q, qid(1, 64), 64, 1, 0, 500) == 0);
	CHECK(queue_add(q, qid(1, 0), 64, 2, 0, 500) == 0);
	CHECK(queue_add(q, qid(1, 128), 64, 3, 0, 100) == 0);
	CHECK_EQ_U(queue_next_due_time(q), 100);
	CHECK(queue_next_due(q, 99) == NULL);
	struct queue_msg *a = queue_next_due(q, 1000);
	struct queue_msg *b = queue_next_due(q, 1000);
	struct queue_msg *d = queue_next_due(q, 1000);
	REQUIRE(a && b && d);
	CHECK(queue_next_due(q, 1000) == NULL);
	CHECK_EQ_U(queue_next_due_time(q), INT64_MAX); /* in flight is not queued */
	/* Earliest time first; equal times by queue id. */
	CHECK_EQ_U(queue_msg_id(a), qid(1, 128));
	CHECK_EQ_U(queue_msg_id(b), qid(1, 0));
	CHECK_EQ_U(queue_msg_id(d), qid(1, 64));
	CHECK_EQ_U(queue_msg_rcpt_count(a), 3);
	CHECK_EQ_U(queue_msg_padded_bytes(a), 64);

	struct queue_stats st;
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.messages, 3);
	CHECK_EQ_U(st.in_flight, 3);
	CHECK_EQ_U(st.recipients_pending, 6);

	/* a: 2 delivered, 1 temporary failure -> retry; one DELIVERED entry each. */
	queue_outcome(q, a, 0, QUEUE_OUTCOME_DELIVERED, 250, delivery_log_enhanced_pack(2, 0, 0), 1000);
	queue_outcome(q, a, 1, QUEUE_OUTCOME_TEMPFAIL, 451, delivery_log_enhanced_pack(4, 3, 0), 1000);
	queue_outcome(q, a, 2, QUEUE_OUTCOME_DELIVERED, 250, 0, 1000);
	/* An outcome for a recipient that is final already changes nothing. */
	queue_outcome(q, a, 0, QUEUE_OUTCOME_PERMFAIL, 550, 0, 1000);
	CHECK(queue_msg_rcpt_state(a, 0) == QUEUE_RCPT_DELIVERED);
	CHECK(queue_msg_rcpt_state(a, 1) == QUEUE_RCPT_PENDING);
	CHECK(queue_attempt_done(q, a, 1000) == QUEUE_ATTEMPT_RETRY);
	CHECK_EQ_U(queue_msg_attempts(a), 1);
	CHECK_EQ_U(queue_msg_last_reply_code(a), 550);
	/* b: everything delivered -> done (freed). */
	queue_outcome(q, b, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 1001);
	queue_outcome(q, b, 1, QUEUE_OUTCOME_DELIVERED, 250, 0, 1001);
	CHECK(queue_attempt_done(q, b, 1001) == QUEUE_ATTEMPT_DONE);
	/* d: no outcome at all (connection lost) -> retry. */
	CHECK(queue_attempt_done(q, d, 1002) == QUEUE_ATTEMPT_RETRY);

	queue_get_stats(q, &st);
	CHECK_EQ_U(st.messages, 2);
	CHECK_EQ_U(st.in_flight, 0);
	CHECK_EQ_U(st.recipients_pending, 2);
	CHECK_EQ_U(st.delivered, 4);
	CHECK_EQ_U(st.deferred, 2);

	mem_reset();
	mem_flush(q);
	CHECK(!queue_commit_busy(q));
	/* Log: a0 a2 DELIVERED, a DEFERRED, b0 b1 DELIVERED, d DEFERRED. */
	REQUIRE(mem_entries(1) == 6);
	struct delivery_log_entry e = mem_entry(1, 0);
	CHECK(e.type == DELIVERY_LOG_DELIVERED && e.rcpt == 0 && e.queue_id == qid(1, 128));
	CHECK(e.attempt == 1 && e.reply_code == 250 && e.time_unix_ms == 1000);
	e = mem_entry(1, 1);
	CHECK(e.type == DELIVERY_LOG_DELIVERED && e.rcpt == 2 && e.queue_id == qid(1, 128));
	e = mem_entry(1, 2);
	CHECK(e.type == DELIVERY_LOG_DEFERRED && e.rcpt == DELIVERY_LOG_RCPT_ALL && e.queue_id == qid(1, 128));
	CHECK(e.attempt == 1 && e.reply_code == 550);
	CHECK(e.time_unix_ms >= 1000 + 800 && e.time_unix_ms <= 1000 + 1200);
	e = mem_entry(1, 5);
	CHECK(e.type == DELIVERY_LOG_DEFERRED && e.queue_id == qid(1, 64) && e.reply_code == 0);

	/* The retries come back in time order, not before. */
	int64_t t = queue_next_due_time(q);
	CHECK(t >= 1800 && t <= 2202);
	CHECK(queue_next_due(q, t - 1) == NULL);
	struct queue_msg *m = queue_next_due(q, t);
	REQUIRE(m != NULL);
	queue_outcome(q, m, m == a ? 1 : 0, QUEUE_OUTCOME_DELIVERED, 250, 0, t);
	CHECK(queue_attempt_done(q, m, t) == QUEUE_ATTEMPT_DONE);
	queue_close(q); /* the other one is freed by close */
}

static void test_requeue(void)
{
	struct queue_config c = cfg_make();
	struct queue *q = new_queue(&c);
	mem_reset();
	REQUIRE(queue_add(q, qid(1, 0), 64, 2, 0, 0) == 0);
	struct queue_msg *m = queue_next_due(q, 0);
	REQUIRE(m != NULL);
	/* No upstream free: back at 300, no attempt counted, nothing logged. */
	CHECK(queue_requeue(q, m, 300) == QUEUE_ATTEMPT_RETRY);
	CHECK_EQ_U(queue_next_due_time(q), 300);
	CHECK(!queue_commit_busy(q));
	m = queue_next_due(q, 300);
	REQUIRE(m != NULL);
	CHECK_EQ_U(queue_msg_attempts(m), 0);
	queue_outcome(q, m, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 301);
	CHECK(queue_requeue(q, m, 400) == QUEUE_ATTEMPT_RETRY);
	m = queue_next_due(q, 400);
	REQUIRE(m != NULL);
	CHECK(queue_msg_rcpt_state(m, 0) == QUEUE_RCPT_DELIVERED);
	/* The DELIVERED entry numbered attempt 1, so it counts (as on replay). */
	CHECK_EQ_U(queue_msg_attempts(m), 1);
	queue_outcome(q, m, 1, QUEUE_OUTCOME_DELIVERED, 250, 0, 401);
	CHECK(queue_requeue(q, m, 500) == QUEUE_ATTEMPT_DONE);
	struct queue_stats st;
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.messages, 0);
	/* A core/ that reports the byte count of a good commit. */
	struct queue_commit cm;
	REQUIRE(queue_commit_begin(q, &cm));
	CHECK_EQ_U(cm.count, 1);
	CHECK_EQ_U(cm.write[0].entries, 2);
	queue_commit_done(q, (int)cm.write[0].iov.iov_len);
	CHECK(queue_status(q) == 0);
	uint32_t seq;
	queue_set_active_segment(q, 2);
	CHECK(queue_reclaimable(q, &seq) && seq == 1);
	queue_close(q);
}

static void test_backoff(void)
{
	struct queue_config c = cfg_make();
	c.max_lifetime_ms = 1000ll * 1000 * 1000;
	struct queue *q = new_queue(&c);
	struct queue *twin = new_queue(&c);
	REQUIRE(queue_add(q, qid(1, 0), 64, 1, 0, 0) == 0);
	REQUIRE(queue_add(twin, qid(1, 0), 64, 1, 0, 0) == 0);
	int64_t now = 0;
	int64_t lowest = INT64_MAX, highest = 0;
	uint32_t differs_from_base = 0;
	for (uint32_t attempt = 1; attempt <= 200; attempt++) {
		struct queue_msg *m = queue_next_due(q, now);
		struct queue_msg *tm = queue_next_due(twin, now);
		REQUIRE(m != NULL && tm != NULL);
		CHECK_EQ_U(queue_msg_attempts(m), attempt - 1);
		queue_outcome(q, m, 0, QUEUE_OUTCOME_TEMPFAIL, 421, 0, now);
		CHECK(queue_attempt_done(q, m, now) == QUEUE_ATTEMPT_RETRY);
		CHECK(queue_attempt_done(twin, tm, now) == QUEUE_ATTEMPT_RETRY);
		int64_t base = 1000;
		for (uint32_t k = 1; k < attempt && base < 16000; k++)
			base *= 2;
		base = RMX_MIN(base, 16000);
		int64_t delay = queue_next_due_time(q) - now;
		/* +-20% around min(retry_min * 2^(attempt-1), retry_max). */
		CHECK(delay >= base - base / 5 && delay <= base + base / 5);
		if (attempt >= 6) {
			lowest = RMX_MIN(lowest, delay);
			highest = RMX_MAX(highest, delay);
		}
		differs_from_base += delay != base;
		/* The same seed gives the same schedule. */
		CHECK_EQ_U(queue_next_due_time(twin), queue_next_due_time(q));
		now = queue_next_due_time(q);
	}
	/* Jitter spreads the capped delay over most of its +-20% range. */
	CHECK(lowest < 16000 - 16000 / 5 + 800);
	CHECK(highest > 16000 + 16000 / 5 - 800);
	CHECK(differs_from_base > 150);
	queue_close(q);
	queue_close(twin);

	/* Another seed, another schedule. */
	c.jitter_seed = 999;
	q = new_queue(&c);
	struct queue_config other = cfg_make();
	twin = new_queue(&other);
	REQUIRE(queue_add(q, qid(1, 0), 64, 1, 0, 0) == 0);
	REQUIRE(queue_add(twin, qid(1, 0), 64, 1, 0, 0) == 0);
	uint32_t same_times = 0;
	for (int i = 0; i < 20; i++) {
		struct queue_msg *m = queue_next_due(q, INT64_MAX - 1);
		struct queue_msg *tm = queue_next_due(twin, INT64_MAX - 1);
		REQUIRE(m && tm);
		REQUIRE(queue_attempt_done(q, m, 0) == QUEUE_ATTEMPT_RETRY);
		REQUIRE(queue_attempt_done(twin, tm, 0) == QUEUE_ATTEMPT_RETRY);
		same_times += queue_next_due_time(q) == queue_next_due_time(twin);
	}
	CHECK(same_times < 5);
	queue_close(q);
	queue_close(twin);
}

static void test_bounce_and_expiry(void)
{
	struct queue_config c = cfg_make();
	c.retry_min_ms = 4000;
	c.retry_max_ms = 4000;
	c.max_lifetime_ms = 10000;
	struct queue *q = new_queue(&c);
	mem_reset();
	/* arrival 0, expires at 10000. Recipients: 0 delivered, 1 refused
	 * (5xx), 2 and 3 temporary. */
	REQUIRE(queue_add(q, qid(2, 0), 64, 4, 0, 0) == 0);
	struct queue_msg *m = queue_next_due(q, 0);
	REQUIRE(m != NULL);
	queue_outcome(q, m, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 1);
	queue_outcome(q, m, 1, QUEUE_OUTCOME_PERMFAIL, 550, delivery_log_enhanced_pack(5, 1, 1), 1);
	queue_outcome(q, m, 2, QUEUE_OUTCOME_TEMPFAIL, 450, 0, 1);
	CHECK(queue_msg_rcpt_state(m, 1) == QUEUE_RCPT_BOUNCE_DUE);
	CHECK(queue_attempt_done(q, m, 2) == QUEUE_ATTEMPT_BOUNCE_DUE);
	/* Nothing BOUNCED is logged before the DSN is durable. */
	mem_flush(q);
	CHECK_EQ_U(mem_entries(2), 1);
	CHECK(mem_entry(2, 0).type == DELIVERY_LOG_DELIVERED);
	CHECK_EQ_U(queue_next_due_time(q), INT64_MAX); /* still in flight */
	CHECK(queue_bounce_done(q, m, 3) == QUEUE_ATTEMPT_RETRY);
	CHECK(queue_msg_rcpt_state(m, 1) == QUEUE_RCPT_BOUNCED);
	mem_flush(q);
	REQUIRE(mem_entries(2) == 3);
	struct delivery_log_entry e = mem_entry(2, 1);
	CHECK(e.type == DELIVERY_LOG_BOUNCED && e.rcpt == 1 && e.time_unix_ms == 3 && e.attempt == 1);
	e = mem_entry(2, 2);
	CHECK(e.type == DELIVERY_LOG_DEFERRED && e.rcpt == DELIVERY_LOG_RCPT_ALL);

	/* Second attempt at about 4000, third at about 8000; the fourth would
	 * be past the expiry, so it is moved to exactly 10000. */
	int64_t now = queue_next_due_time(q);
	for (int i = 0; i < 2; i++) {
		m = queue_next_due(q, now);
		REQUIRE(m != NULL);
		CHECK(queue_attempt_done(q, m, now) == QUEUE_ATTEMPT_RETRY);
		now = queue_next_due_time(q);
	}
	CHECK_EQ_U(now, 10000);
	m = queue_next_due(q, now);
	REQUIRE(m != NULL);
	queue_outcome(q, m, 3, QUEUE_OUTCOME_DELIVERED, 250, 0, now);
	CHECK(queue_attempt_done(q, m, now) == QUEUE_ATTEMPT_BOUNCE_DUE);
	CHECK(queue_msg_rcpt_state(m, 2) == QUEUE_RCPT_EXPIRE_DUE);
	CHECK(queue_msg_rcpt_state(m, 3) == QUEUE_RCPT_DELIVERED);
	CHECK(queue_bounce_done(q, m, now + 5) == QUEUE_ATTEMPT_DONE);
	mem_flush(q);
	uint64_t n = mem_entries(2);
	REQUIRE(n >= 2);
	e = mem_entry(2, n - 2);
	CHECK(e.type == DELIVERY_LOG_DELIVERED && e.rcpt == 3);
	e = mem_entry(2, n - 1);
	CHECK(e.type == DELIVERY_LOG_EXPIRED && e.rcpt == 2 && e.time_unix_ms == now + 5);
	CHECK(e.attempt == 4);

	struct queue_stats st;
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.messages, 0);
	CHECK_EQ_U(st.recipients_pending, 0);
	CHECK_EQ_U(st.bounced, 1);
	CHECK_EQ_U(st.expired, 1);
	CHECK_EQ_U(st.delivered, 2);

	/* Replaying that log gives the same final states. */
	uint8_t states[4];
	struct delivery_log_replay_msg r = { .rcpt_state = states, .rcpt_count = 4, .pending = 4 };
	memset(states, 0, sizeof(states));
	for (uint64_t i = 0; i < n; i++) {
		e = mem_entry(2, i);
		CHECK(delivery_log_apply(&r, &e));
	}
	CHECK(r.pending == 0 && states[0] == DELIVERY_LOG_RCPT_DELIVERED && states[1] == DELIVERY_LOG_RCPT_BOUNCED &&
	      states[2] == DELIVERY_LOG_RCPT_EXPIRED && states[3] == DELIVERY_LOG_RCPT_DELIVERED);

	/* Already expired when first tried: expires after one attempt. */
	REQUIRE(queue_add(q, qid(2, 64), 64, 2, 0, 20000) == 0);
	m = queue_next_due(q, 20000);
	REQUIRE(m != NULL);
	CHECK(queue_attempt_done(q, m, 20000) == QUEUE_ATTEMPT_BOUNCE_DUE);
	CHECK(queue_bounce_done(q, m, 20001) == QUEUE_ATTEMPT_DONE);

	/* Set aside: the record does not read back. */
	REQUIRE(queue_add(q, qid(2, 128), 64, 3, 15000, 20000) == 0);
	m = queue_next_due(q, 20000);
	REQUIRE(m != NULL);
	queue_outcome(q, m, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 20000);
	queue_set_aside(q, m, 20002);
	mem_flush(q);
	e = mem_entry(2, mem_entries(2) - 1);
	CHECK(e.type == DELIVERY_LOG_SET_ASIDE && e.rcpt == DELIVERY_LOG_RCPT_ALL && e.queue_id == qid(2, 128));
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.messages, 0);
	CHECK_EQ_U(st.recipients_pending, 0);
	CHECK_EQ_U(st.set_aside, 1);
	queue_close(q);
}

static void test_commit_batching(void)
{
	struct queue_config c = cfg_make();
	c.fsync = false;
	struct queue *q = new_queue(&c);
	mem_reset();
	/* Interleaved outcomes over six segments. */
	struct queue_msg *m[6];
	for (uint32_t s = 1; s <= 6; s++)
		REQUIRE(queue_add(q, qid(s, 0), 64, 3, 0, 0) == 0);
	for (int i = 0; i < 6; i++)
		REQUIRE((m[i] = queue_next_due(q, 0)) != NULL);
	for (uint32_t r = 0; r < 3; r++)
		for (int i = 0; i < 6; i++)
			queue_outcome(q, m[i], r, QUEUE_OUTCOME_DELIVERED, 250, 0, 10 * r + (uint32_t)i);
	struct queue_stats st;
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.entries_waiting, 18);
	CHECK(queue_commit_busy(q));

	struct queue_commit seen;
	CHECK_EQ_U(mem_commit(q, 0, &seen), 4);
	CHECK(!seen.sync);
	for (uint32_t k = 0; k < 4; k++) {
		CHECK_EQ_U(seen.write[k].entries, 3);
		CHECK_EQ_U(seen.write[k].offset, 0);
	}
	/* The segments whose entries came first go first. */
	uint32_t first = seen.write[0].seq;
	CHECK(first >= 1 && first <= 6);
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.entries_waiting, 6);
	CHECK_EQ_U(st.entries_committed, 12);

	/* One commit in flight at a time. */
	struct queue_commit c1, c2;
	REQUIRE(queue_commit_begin(q, &c1));
	CHECK(!queue_commit_begin(q, &c2));
	CHECK(queue_commit_busy(q));
	CHECK_EQ_U(c1.count, 2);
	for (uint32_t k = 0; k < c1.count; k++) {
		memcpy(mem_log[c1.write[k].seq], c1.write[k].iov.iov_base, c1.write[k].iov.iov_len);
		mem_log_bytes[c1.write[k].seq] += c1.write[k].iov.iov_len;
	}
	queue_commit_done(q, 0);
	CHECK(!queue_commit_busy(q));
	/* Per segment: its entries, in order, with the right ids. */
	for (uint32_t s = 1; s <= 6; s++) {
		REQUIRE(mem_entries(s) == 3);
		for (uint32_t r = 0; r < 3; r++) {
			struct delivery_log_entry e = mem_entry(s, r);
			CHECK(e.type == DELIVERY_LOG_DELIVERED && e.rcpt == r && e.queue_id == qid(s, 0));
		}
	}
	/* Later entries of a segment land after the earlier ones. */
	for (int i = 0; i < 6; i++)
		CHECK(queue_attempt_done(q, m[i], 100) == QUEUE_ATTEMPT_DONE);
	CHECK_EQ_U(mem_commit(q, 0, &seen), 0); /* all final: nothing more to log */

	/* A segment whose log is not ready waits; the others go on. */
	REQUIRE(queue_add(q, qid(9, 0), 64, 1, 0, 0) == 0);
	REQUIRE(queue_add(q, qid(1, 64), 64, 1, 0, 0) == 0);
	struct queue_msg *a = queue_next_due(q, 0), *b = queue_next_due(q, 0);
	REQUIRE(a && b);
	queue_outcome(q, a, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 1);
	queue_outcome(q, b, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 1);
	CHECK(queue_attempt_done(q, a, 1) == QUEUE_ATTEMPT_DONE);
	CHECK(queue_attempt_done(q, b, 1) == QUEUE_ATTEMPT_DONE);
	CHECK_EQ_U(mem_commit(q, 0, &seen), 1);
	CHECK_EQ_U(seen.write[0].seq, 1);
	CHECK_EQ_U(seen.write[0].offset, 3 * DELIVERY_LOG_ENTRY_BYTES);
	CHECK(!queue_commit_begin(q, &c2));
	CHECK(queue_commit_busy(q)); /* an entry waits for segment 9's log */
	REQUIRE(queue_dlog_ready(q, 9, FAKE_FD_BASE + 9) == 0);
	CHECK(queue_dlog_ready(q, 9, 77) == -EEXIST);
	CHECK_EQ_U(mem_commit(q, 0, &seen), 1);
	CHECK_EQ_U(seen.write[0].seq, 9);
	CHECK(!queue_commit_busy(q));
	queue_close(q);
}

static void test_commit_failure(void)
{
	struct queue_config c = cfg_make();
	struct queue *q = new_queue(&c);
	mem_reset();
	REQUIRE(queue_add(q, qid(1, 0), 64, 2, 0, 0) == 0);
	REQUIRE(queue_add(q, qid(2, 0), 64, 1, 0, 0) == 0);
	struct queue_msg *a = queue_next_due(q, 0), *b = queue_next_due(q, 0);
	REQUIRE(a && b);
	queue_outcome(q, a, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 1);
	queue_outcome(q, a, 1, QUEUE_OUTCOME_DELIVERED, 250, 0, 1);
	CHECK(queue_attempt_done(q, a, 1) == QUEUE_ATTEMPT_DONE);
	queue_set_active_segment(q, 3);
	CHECK_EQ_U(mem_commit(q, EIO, NULL), 1);
	CHECK(queue_status(q) == -EIO);
	/* The queue keeps forwarding, but logs nothing more and reclaims nothing. */
	queue_outcome(q, b, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 2);
	CHECK(queue_attempt_done(q, b, 2) == QUEUE_ATTEMPT_DONE);
	struct queue_commit cm;
	CHECK(!queue_commit_begin(q, &cm));
	CHECK(!queue_commit_busy(q));
	uint32_t seq;
	CHECK(!queue_reclaimable(q, &seq));
	REQUIRE(queue_add(q, qid(3, 0), 64, 1, 0, 5) == 0);
	struct queue_msg *d = queue_next_due(q, 5);
	CHECK(d != NULL);
	if (d)
		CHECK(queue_attempt_done(q, d, 5) == QUEUE_ATTEMPT_RETRY);
	struct queue_stats st;
	queue_get_stats(q, &st);
	CHECK(st.entries_dropped >= 3);
	CHECK_EQ_U(st.entries_committed, 0);
	queue_close(q);
}

/* The commit as a plan: per log a write of its entries at its offset,
 * linked to that log's fdatasync (the write alone without fsync); the
 * results judged as one, the first failure in plan order. */
static void test_commit_plan(void)
{
	struct queue_config c = cfg_make();
	struct queue *q = new_queue(&c);
	mem_reset();
	struct io_plan p;
	CHECK(!queue_commit_plan(q, &p)); /* nothing waits */
	for (uint32_t s = 1; s <= 4; s++)
		REQUIRE(queue_add(q, qid(s, 0), 64, 1, 0, 0) == 0);
	for (uint32_t s = 1; s <= 4; s++) {
		struct queue_msg *m = queue_next_due(q, 0);
		REQUIRE(m != NULL);
		queue_outcome(q, m, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 1);
		CHECK(queue_attempt_done(q, m, 1) == QUEUE_ATTEMPT_DONE);
	}
	REQUIRE(queue_commit_plan(q, &p));
	REQUIRE(p.count == 8 && p.pending == 8);
	for (uint32_t k = 0; k < 4; k++) {
		const struct io_step *w = &p.step[2 * k], *y = &p.step[2 * k + 1];
		CHECK(w->op == IO_STEP_WRITE && w->link && w->offset == 0);
		CHECK(w->fd >= FAKE_FD_BASE + 1 && w->fd <= FAKE_FD_BASE + 4);
		CHECK_EQ_U(w->len, DELIVERY_LOG_ENTRY_BYTES);
		CHECK(y->op == IO_STEP_FDATASYNC && y->fd == w->fd && !y->link);
		p.result[2 * k] = (int)w->len;
		p.result[2 * k + 1] = 0;
	}
	struct io_plan again;
	CHECK(!queue_commit_plan(q, &again)); /* one in flight */
	p.pending = 0;
	CHECK(queue_commit_advance(q, &p) == 0);
	CHECK(queue_status(q) == 0 && !queue_commit_busy(q));
	queue_close(q);

	/* Without fsync: the writes alone, unlinked. */
	c.fsync = false;
	q = new_queue(&c);
	REQUIRE(queue_add(q, qid(1, 0), 64, 1, 0, 0) == 0);
	struct queue_msg *m = queue_next_due(q, 0);
	REQUIRE(m != NULL);
	queue_set_aside(q, m, 1);
	REQUIRE(queue_commit_plan(q, &p));
	CHECK(p.count == 1 && p.step[0].op == IO_STEP_WRITE && !p.step[0].link);
	p.result[0] = (int)p.step[0].len;
	p.pending = 0;
	CHECK(queue_commit_advance(q, &p) == 0);
	queue_close(q);
	c.fsync = true;

	/* Two logs; one thing goes wrong. */
	static const struct { int result[4]; int want; } cases[] = {
		{ { -8, 0, 0, 0 }, -EIO },                 /* short write (len - 8) */
		{ { 0, 0, -ENOSPC, -ECANCELED }, -ENOSPC }, /* failed write, sync cancelled */
		{ { 0, -EIO, 0, 0 }, -EIO },               /* failed sync */
		{ { -8, -ECANCELED, 0, -EROFS }, -EIO },    /* the first in plan order */
	};
	for (size_t k = 0; k < RMX_ARRAY_LEN(cases); k++) {
		q = new_queue(&c);
		for (uint32_t s = 1; s <= 2; s++)
			REQUIRE(queue_add(q, qid(s, 0), 64, 1, 0, 0) == 0);
		for (uint32_t s = 1; s <= 2; s++) {
			m = queue_next_due(q, 0);
			REQUIRE(m != NULL);
			queue_set_aside(q, m, 1);
		}
		REQUIRE(queue_commit_plan(q, &p) && p.count == 4);
		for (uint32_t i = 0; i < 4; i++) {
			int r = cases[k].result[i];
			bool write = p.step[i].op == IO_STEP_WRITE;
			p.result[i] = write && (r == 0 || r == -8) ? (int)p.step[i].len + r : r;
		}
		p.pending = 0;
		CHECK_EQ_U(queue_commit_advance(q, &p), (unsigned long long)cases[k].want);
		CHECK_EQ_U(queue_status(q), (unsigned long long)cases[k].want); /* failed for good */
		CHECK(!queue_commit_plan(q, &p));
		queue_close(q);
	}
}

static void test_reclaim(void)
{
	struct queue_config c = cfg_make();
	struct queue *q = new_queue(&c);
	mem_reset();
	uint32_t seq = 0;
	/* Segments 1 and 2 hold one message each; 2 is the active one. */
	REQUIRE(queue_add(q, qid(1, 0), 64, 2, 0, 0) == 0);
	REQUIRE(queue_add(q, qid(2, 0), 64, 1, 0, 0) == 0);
	struct queue_msg *a = queue_next_due(q, 0), *b = queue_next_due(q, 0);
	REQUIRE(a && b);
	if (queue_msg_id(a) != qid(1, 0)) {
		struct queue_msg *t = a;
		a = b;
		b = t;
	}
	CHECK(!queue_reclaimable(q, &seq));
	queue_outcome(q, a, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 1);
	CHECK(queue_attempt_done(q, a, 1) == QUEUE_ATTEMPT_RETRY);
	mem_flush(q);
	CHECK(!queue_reclaimable(q, &seq)); /* a recipient is still pending */
	a = queue_next_due(q, INT64_MAX - 1);
	REQUIRE(a != NULL && queue_msg_id(a) == qid(1, 0));
	queue_outcome(q, a, 1, QUEUE_OUTCOME_PERMFAIL, 550, 0, 2);
	CHECK(queue_attempt_done(q, a, 2) == QUEUE_ATTEMPT_BOUNCE_DUE);
	CHECK(!queue_reclaimable(q, &seq)); /* waiting for the DSN */
	CHECK(queue_bounce_done(q, a, 3) == QUEUE_ATTEMPT_DONE);
	/* All final, but the final entry is not durable yet. */
	CHECK(!queue_reclaimable(q, &seq));
	struct queue_commit cm;
	REQUIRE(queue_commit_begin(q, &cm));
	CHECK(!queue_reclaimable(q, &seq)); /* in flight is not durable either */
	queue_commit_done(q, 0);
	CHECK(queue_reclaimable(q, &seq));
	CHECK_EQ_U(seq, 1);
	CHECK(!queue_reclaimable(q, &seq)); /* once */
	CHECK_EQ_U(queue_reclaimed(q, 1), FAKE_FD_BASE + 1);

	/* Segment 2 is final and durable, but it is the active one. */
	queue_outcome(q, b, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 4);
	CHECK(queue_attempt_done(q, b, 4) == QUEUE_ATTEMPT_DONE);
	mem_flush(q);
	CHECK(!queue_reclaimable(q, &seq));
	/* A record of segment 3 is durable: 2 is sealed now. Segments 3..7
	 * (logs ready, no records) are not sealed. */
	REQUIRE(queue_add(q, qid(3, 0), 64, 1, 0, 5) == 0);
	CHECK(queue_reclaimable(q, &seq));
	CHECK_EQ_U(seq, 2);
	CHECK_EQ_U(queue_reclaimed(q, 2), FAKE_FD_BASE + 2);
	CHECK(!queue_reclaimable(q, &seq));
	queue_set_active_segment(q, 5);
	/* 4 (sealed, nothing in it) goes; 3 holds a pending message. */
	CHECK(queue_reclaimable(q, &seq) && seq == 4);
	CHECK(!queue_reclaimable(q, &seq));
	CHECK_EQ_U(queue_reclaimed(q, 4), FAKE_FD_BASE + 4);
	struct queue_msg *d = queue_next_due(q, 5);
	REQUIRE(d != NULL);
	queue_outcome(q, d, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 6);
	CHECK(queue_attempt_done(q, d, 6) == QUEUE_ATTEMPT_DONE);
	CHECK(!queue_reclaimable(q, &seq));
	mem_flush(q);
	CHECK(queue_reclaimable(q, &seq) && seq == 3);
	CHECK(!queue_reclaimable(q, &seq));
	CHECK_EQ_U(queue_reclaimed(q, 3), FAKE_FD_BASE + 3);

	/* A segment whose log could not be made is never reclaimed. */
	REQUIRE(queue_add(q, qid(10, 0), 64, 1, 0, 7) == 0);
	REQUIRE(queue_dlog_ready(q, 10, -ENOSPC) == 0);
	d = queue_next_due(q, 7);
	REQUIRE(d != NULL);
	queue_outcome(q, d, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 7);
	CHECK(queue_attempt_done(q, d, 7) == QUEUE_ATTEMPT_DONE);
	mem_flush(q);
	queue_set_active_segment(q, 11);
	while (queue_reclaimable(q, &seq)) {
		CHECK(seq != 10);
		CHECK_EQ_U(queue_reclaimed(q, seq), FAKE_FD_BASE + (int)seq);
	}
	struct queue_stats st;
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.entries_dropped, 1);
	CHECK_EQ_U(st.segments, 1); /* only 10 is left */
	queue_close(q);
}

static void test_entry_buffer_full(void)
{
	struct queue_config c = cfg_make();
	struct queue *q = new_queue(&c);
	mem_reset();
	/* More final entries than the buffer holds, none committed: the
	 * overflow is dropped and its segment is never reclaimed. */
	uint32_t n = QUEUE_PENDING_ENTRIES_MAX + 10;
	REQUIRE(queue_add(q, qid(1, 0), 64, n, 0, 0) == 0);
	REQUIRE(queue_add(q, qid(2, 0), 64, 1, 0, 0) == 0);
	struct queue_msg *m = queue_next_due(q, 0);
	REQUIRE(m != NULL && queue_msg_id(m) == qid(1, 0));
	for (uint32_t i = 0; i < n; i++)
		queue_outcome(q, m, i, QUEUE_OUTCOME_DELIVERED, 250, 0, 1);
	CHECK(queue_attempt_done(q, m, 1) == QUEUE_ATTEMPT_DONE);
	struct queue_stats st;
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.entries_waiting, QUEUE_PENDING_ENTRIES_MAX);
	CHECK_EQ_U(st.entries_dropped, 10);
	mem_flush(q);
	CHECK_EQ_U(mem_entries(1), QUEUE_PENDING_ENTRIES_MAX);
	uint32_t seq;
	CHECK(!queue_reclaimable(q, &seq));
	queue_close(q);
}

/*
 * Random operations against the queue, then the property everything else
 * rests on: replaying the delivery logs gives every recipient the state
 * the queue holds in memory (a *_DUE recipient is still pending in the log:
 * its DSN is not durable yet), and a message absent from the queue has no
 * pending recipient in the log.
 */
#define MODEL_MSGS 400
#define MODEL_RCPTS_MAX 6

struct model_msg {
	uint64_t id;
	uint32_t rcpts;
	struct queue_msg *held; /* in flight, held by the test */
	bool added;
};

static uint64_t model_rng = 0x2545F4914F6CDD1Dull;

static uint32_t model_rand(uint32_t n)
{
	model_rng ^= model_rng << 13;
	model_rng ^= model_rng >> 7;
	model_rng ^= model_rng << 17;
	return (uint32_t)(model_rng % n);
}

static int model_find(const struct model_msg *mm, uint64_t id)
{
	for (int i = 0; i < MODEL_MSGS; i++)
		if (mm[i].added && mm[i].id == id)
			return i;
	return -1;
}

static void test_random_against_replay(void)
{
	static struct model_msg mm[MODEL_MSGS];
	memset(mm, 0, sizeof(mm));
	struct queue_config c = cfg_make();
	c.max_lifetime_ms = 50000;
	struct queue *q = new_queue(&c);
	mem_reset();
	int64_t now = 0;
	int added = 0;
	for (int step = 0; step < 20000; step++) {
		now += model_rand(300);
		uint32_t op = model_rand(10);
		if (op == 0 && added < MODEL_MSGS) {
			struct model_msg *x = &mm[added];
			x->id = qid(1 + (uint32_t)added / 60, (uint64_t)(added % 60) * 64);
			x->rcpts = 1 + model_rand(MODEL_RCPTS_MAX);
			REQUIRE(queue_add(q, x->id, 64, x->rcpts, now, now) == 0);
			x->added = true;
			added++;
		} else if (op <= 3) {
			struct queue_msg *m = queue_next_due(q, now);
			if (m != NULL) {
				int i = model_find(mm, queue_msg_id(m));
				REQUIRE(i >= 0 && mm[i].held == NULL);
				mm[i].held = m;
			}
		} else if (op <= 8 && added > 0) {
			struct model_msg *x = &mm[model_rand((uint32_t)added)];
			struct queue_msg *m = x->held;
			if (m == NULL)
				continue;
			uint32_t what = model_rand(12);
			if (what < 6) {
				queue_outcome(q, m, model_rand(x->rcpts),
					      (enum queue_outcome)model_rand(3), 250 + what, 0, now);
				continue;
			}
			enum queue_attempt_result r;
			if (what == 6) {
				queue_set_aside(q, m, now);
				r = QUEUE_ATTEMPT_DONE;
			} else if (what == 7) {
				bool due = false;
				for (uint32_t k = 0; k < x->rcpts; k++)
					due = due || queue_msg_rcpt_state(m, k) >= QUEUE_RCPT_BOUNCE_DUE;
				if (due)
					continue;
				r = queue_requeue(q, m, now + 10);
			} else {
				r = queue_attempt_done(q, m, now);
				if (r == QUEUE_ATTEMPT_BOUNCE_DUE)
					r = queue_bounce_done(q, m, now);
			}
			CHECK(r != QUEUE_ATTEMPT_BOUNCE_DUE);
			x->held = NULL;
		} else if (op == 9) {
			mem_commit(q, 0, NULL);
		}
	}
	mem_flush(q);
	CHECK(!queue_commit_busy(q));
	struct queue_stats st;
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.entries_dropped, 0);

	/* Replay every segment's log. */
	static uint8_t states[MODEL_MSGS][MODEL_RCPTS_MAX];
	static struct delivery_log_replay_msg rp[MODEL_MSGS];
	for (int i = 0; i < added; i++) {
		memset(states[i], 0, sizeof(states[i]));
		rp[i] = (struct delivery_log_replay_msg){ .rcpt_state = states[i],
						  .rcpt_count = mm[i].rcpts,
						  .pending = mm[i].rcpts };
	}
	for (uint32_t seq = 1; seq < SEQS_MAX; seq++) {
		for (uint64_t k = 0; k < mem_entries(seq); k++) {
			struct delivery_log_entry e = mem_entry(seq, k);
			int i = model_find(mm, e.queue_id);
			REQUIRE(i >= 0);
			CHECK(delivery_log_apply(&rp[i], &e));
		}
	}
	/* Every message still held, in flight or queued, matches its replay. */
	static bool seen[MODEL_MSGS];
	memset(seen, 0, sizeof(seen));
	uint64_t pending_total = 0;
	for (int i = 0; i < added; i++) {
		struct queue_msg *m = mm[i].held;
		if (m == NULL)
			continue;
		seen[i] = true;
		for (uint32_t k = 0; k < mm[i].rcpts; k++) {
			enum queue_rcpt_state s = queue_msg_rcpt_state(m, k);
			uint8_t want = s >= QUEUE_RCPT_BOUNCE_DUE ? DELIVERY_LOG_RCPT_PENDING : (uint8_t)s;
			CHECK_EQ_U(states[i][k], want);
			pending_total += s == QUEUE_RCPT_PENDING || s >= QUEUE_RCPT_BOUNCE_DUE;
		}
	}
	struct queue_msg *m;
	while ((m = queue_next_due(q, INT64_MAX - 1)) != NULL) {
		int i = model_find(mm, queue_msg_id(m));
		REQUIRE(i >= 0 && !seen[i]);
		seen[i] = true;
		CHECK(rp[i].pending > 0);
		CHECK_EQ_U(queue_msg_attempts(m), rp[i].attempts);
		for (uint32_t k = 0; k < mm[i].rcpts; k++) {
			CHECK_EQ_U(queue_msg_rcpt_state(m, k), states[i][k]);
			pending_total += states[i][k] == DELIVERY_LOG_RCPT_PENDING;
		}
	}
	CHECK_EQ_U(pending_total, st.recipients_pending);
	uint32_t finished = 0;
	for (int i = 0; i < added; i++) {
		if (!seen[i]) {
			CHECK_EQ_U(rp[i].pending, 0);
			finished++;
		}
	}
	CHECK(added > 300 && finished > 100);
	queue_close(q);
}

/* ---- recovery on real files ---- */

#define SEG_BYTES SEGMENT_SIZE_MIN_BYTES
#define REAL_RECS 40

struct real_rec {
	struct record_header h;
	struct bytebuf env;
	uint8_t body[60000];
	struct iovec parts[4];
	uint64_t id;
	uint32_t rcpts;
};

static const uint8_t zero_pad[8];
static struct real_rec real[REAL_RECS];
static int durable[REAL_RECS];

static void on_durable(void *ctx, uint64_t cookie, int result)
{
	(void)ctx;
	REQUIRE(cookie < REAL_RECS);
	durable[cookie] = result == 0 ? 1 : -1;
}

static void real_provide_spare(struct store *st, struct queue *q)
{
	const char *path;
	uint32_t seq;
	if (!store_spare_wanted(st, 0, &path, &seq))
		return;
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	uint8_t *zeros = calloc(1, SEG_BYTES);
	REQUIRE(zeros != NULL);
	/* Like core/: the header block with a new salt, then zeros. */
	static uint64_t salts_made;
	store_spare_header(st, 0x9E3779B97F4A7C15ull * ++salts_made, zeros);
	REQUIRE(pwrite(fd, zeros, SEG_BYTES, 0) == (ssize_t)SEG_BYTES);
	free(zeros);
	REQUIRE(fdatasync(fd) == 0);
	/* Like core/: the spare's delivery log comes with it. */
	char name[DELIVERY_LOG_NAME_MAX_BYTES];
	delivery_log_name_format(name, seq);
	int lfd = openat(store_dir_fd(st), name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	REQUIRE(lfd >= 0);
	REQUIRE(fsync(store_dir_fd(st)) == 0);
	store_spare_ready(st, seq, fd);
	int rc = q ? queue_dlog_ready(q, seq, lfd) : -EEXIST;
	if (rc != 0)
		close(lfd);
}

/* Record i with 1 + i % 4 recipients, sealed and appended; commits it. */
static void real_add(struct store *st, struct queue *q, int i)
{
	struct real_rec *r = &real[i];
	bytebuf_free(&r->env);
	r->rcpts = 1 + (uint32_t)i % 4;
	REQUIRE(record_env_put(&r->env, RECORD_TAG_REVERSE_PATH, span_make("s@example.net", 13)) == 0);
	for (uint32_t k = 0; k < r->rcpts; k++) {
		char rcpt[64];
		int n = snprintf(rcpt, sizeof(rcpt), "u%d.%u@example.org", i, k);
		REQUIRE(record_env_put(&r->env, RECORD_TAG_RECIPIENT, span_make(rcpt, (size_t)n)) == 0);
	}
	memset(r->body, 'a' + i % 26, sizeof(r->body));
	uint64_t padded = record_padded_length(r->env.len, sizeof(r->body));
	int rc;
	while ((rc = store_reserve(st, padded, &r->id)) == -EAGAIN)
		real_provide_spare(st, q);
	REQUIRE(rc == 0);
	struct iovec body = { r->body, sizeof(r->body) };
	record_seal(&r->h, r->id, 1000 + i, span_make(r->env.data, r->env.len), &body, 1);
	r->parts[0] = (struct iovec){ &r->h, RECORD_HEADER_BYTES };
	r->parts[1] = (struct iovec){ r->env.data, r->env.len };
	r->parts[2] = body;
	r->parts[3] = (struct iovec){ (void *)zero_pad, record_padding(r->h.length) };
	REQUIRE(store_append(st, r->id, r->parts, 4, (uint64_t)i) == 0);
	struct io_plan p;
	uint32_t records;
	REQUIRE(store_commit_plan(st, &p, &records) && records == 1);
	io_plan_run_blocking(&p);
	durable[i] = 0;
	REQUIRE(store_commit_advance(st, &p, on_durable, NULL) == 0);
	REQUIRE(durable[i] == 1);
	REQUIRE(queue_add(q, r->id, padded, r->rcpts, 1000 + i, 5000) == 0);
	int fd;
	while ((fd = store_retired_fd(st)) >= 0)
		close(fd);
}

/* Performs the queue's commits on the real files, as planned. */
static void real_flush(struct queue *q)
{
	struct io_plan p;
	while (queue_commit_plan(q, &p)) {
		io_plan_run_blocking(&p);
		REQUIRE(queue_commit_advance(q, &p) == 0);
	}
}

static int find_real(uint64_t id)
{
	for (int i = 0; i < REAL_RECS; i++)
		if (real[i].id == id)
			return i;
	return -1;
}

/* What the test decided for each recipient: 1 final, 0 pending. */
static uint8_t decided[REAL_RECS][4];

struct listed {
	uint32_t count;
	uint32_t rcpts;
	uint64_t first_id;
	uint16_t code_of_5;
};

static int on_listed(void *ctx, const struct queue_deferred_info *info)
{
	struct listed *l = ctx;
	int i = find_real(info->queue_id);
	REQUIRE(i >= 0);
	uint32_t pending = 0;
	for (uint32_t k = 0; k < real[i].rcpts; k++)
		pending += !decided[i][k];
	CHECK_EQ_U(info->rcpt_pending, pending);
	CHECK_EQ_U(info->rcpt_count, real[i].rcpts);
	CHECK_EQ_U(info->arrival_unix_ms, 1000 + i);
	if (l->count == 0)
		l->first_id = info->queue_id;
	if (i == 5)
		l->code_of_5 = info->last_reply_code;
	l->count++;
	l->rcpts += pending;
	return 0;
}

static bool path_exists(const char *dir, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/w%u/%s", dir, (unsigned)W, name);
	struct stat sb;
	return stat(path, &sb) == 0;
}

static void test_recovery_real_files(void)
{
	char dir[] = "/tmp/rmx-queue-XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	struct store_config scfg = {
		.data_dir = dir,
		.worker = W,
		.segment_size_bytes = SEG_BYTES,
		.store_max_bytes = 64 * SEG_BYTES,
		.fsync = true,
	};
	struct queue_config qcfg = cfg_make();
	qcfg.data_dir = dir;
	qcfg.now_unix_ms = 5000;
	char err[256];
	struct store *st = NULL;
	struct store_recovery_stats srs;
	REQUIRE(store_open(&scfg, &st, &srs, err, sizeof(err)) == 0);
	struct queue *q = NULL;
	struct queue_recovery_stats qrs;
	REQUIRE(queue_open(&qcfg, &q, &qrs, err, sizeof(err)) == 0);
	CHECK_EQ_U(qrs.records, 0);
	CHECK(path_exists(dir, "00000001.dlog")); /* active */
	CHECK(path_exists(dir, "00000002.dlog")); /* the spare store_open made */

	/* 60 KB records in 1 MiB segments: the store rolls over twice. */
	for (int i = 0; i < REAL_RECS; i++)
		real_add(st, q, i);
	memset(decided, 0, sizeof(decided));

	/* Deliver: records with i % 3 == 0 entirely; i % 3 == 1: recipient 0
	 * only, the rest deferred; i % 3 == 2: no outcome (connection lost). */
	struct queue_msg *m;
	while ((m = queue_next_due(q, 5000)) != NULL) {
		int i = find_real(queue_msg_id(m));
		REQUIRE(i >= 0);
		if (i % 3 == 0) {
			for (uint32_t k = 0; k < real[i].rcpts; k++) {
				queue_outcome(q, m, k, QUEUE_OUTCOME_DELIVERED, 250, 0, 5001);
				decided[i][k] = 1;
			}
		} else if (i % 3 == 1) {
			queue_outcome(q, m, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 5001);
			decided[i][0] = 1;
			for (uint32_t k = 1; k < real[i].rcpts; k++)
				queue_outcome(q, m, k, QUEUE_OUTCOME_TEMPFAIL, 452, 0, 5001);
		}
		bool all = true;
		for (uint32_t k = 0; k < real[i].rcpts; k++)
			all = all && decided[i][k];
		CHECK(queue_attempt_done(q, m, 5002) ==
		      (all ? QUEUE_ATTEMPT_DONE : QUEUE_ATTEMPT_RETRY));
	}
	real_flush(q);
	/* A torn entry at the end of segment 1's log, as a crash mid-append
	 * leaves it: replay ignores it and the next append overwrites it. */
	{
		int fd = openat(store_dir_fd(st), "00000001.dlog", O_WRONLY | O_APPEND | O_CLOEXEC);
		REQUIRE(fd >= 0);
		uint8_t junk[13];
		memset(junk, 0x5a, sizeof(junk));
		REQUIRE(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
		close(fd);
	}
	queue_close(q);
	store_close(st);

	/* Restart: exactly the pending recipients come back. */
	REQUIRE(store_open(&scfg, &st, &srs, err, sizeof(err)) == 0);
	qcfg.now_unix_ms = 100000; /* past every backoff: all due */
	REQUIRE(queue_open(&qcfg, &q, &qrs, err, sizeof(err)) == 0);
	uint64_t want_msgs = 0, want_rcpts = 0, final_recs = 0;
	for (int i = 0; i < REAL_RECS; i++) {
		uint32_t pending = 0;
		for (uint32_t k = 0; k < real[i].rcpts; k++)
			pending += !decided[i][k];
		want_msgs += pending > 0;
		want_rcpts += pending;
		final_recs += pending == 0;
	}
	CHECK_EQ_U(qrs.records, REAL_RECS);
	CHECK_EQ_U(qrs.records_final, final_recs);
	CHECK_EQ_U(qrs.messages_pending, want_msgs);
	CHECK_EQ_U(qrs.recipients_pending, want_rcpts);
	CHECK_EQ_U(qrs.log_bad_bytes, 13);
	CHECK_EQ_U(qrs.log_unmatched, 0);
	uint32_t got = 0;
	while ((m = queue_next_due(q, 100000)) != NULL) {
		int i = find_real(queue_msg_id(m));
		REQUIRE(i >= 0);
		got++;
		CHECK_EQ_U(queue_msg_rcpt_count(m), real[i].rcpts);
		CHECK_EQ_U(queue_msg_arrival_unix_ms(m), 1000 + i);
		CHECK_EQ_U(queue_msg_attempts(m), 1);
		for (uint32_t k = 0; k < real[i].rcpts; k++)
			CHECK_EQ_U(queue_msg_rcpt_state(m, k),
				   decided[i][k] ? QUEUE_RCPT_DELIVERED : QUEUE_RCPT_PENDING);
		if (i % 3 == 1)
			CHECK_EQ_U(queue_msg_last_reply_code(m), 452);
		/* Record 2: recipient 0 bounces now (its DSN is "durable"). */
		if (i == 2) {
			queue_outcome(q, m, 0, QUEUE_OUTCOME_PERMFAIL, 550, 0, 100001);
			decided[i][0] = 1;
			CHECK(queue_attempt_done(q, m, 100001) == QUEUE_ATTEMPT_BOUNCE_DUE);
			CHECK(queue_bounce_done(q, m, 100002) == QUEUE_ATTEMPT_RETRY);
		} else {
			CHECK(queue_attempt_done(q, m, 100001) == QUEUE_ATTEMPT_RETRY);
		}
	}
	CHECK_EQ_U(got, want_msgs);
	real_flush(q);
	queue_close(q);
	store_close(st);

	/* Offline: list what is deferred, delete one, requeue one. */
	struct listed l = { 0 };
	CHECK(queue_offline_list(dir, W, on_listed, &l, err, sizeof(err)) == 0);
	CHECK_EQ_U(l.count, want_msgs); /* record 2 had 3 recipients: still pending */
	CHECK_EQ_U(l.rcpts, want_rcpts - 1);
	CHECK_EQ_U(l.code_of_5, 0); /* record 5: no outcome at all, attempts only */
	CHECK(queue_offline_mark(dir, real[7].id, QUEUE_OFFLINE_DELETE, 100005, err,
				 sizeof(err)) == 0);
	for (uint32_t k = 0; k < real[7].rcpts; k++)
		decided[7][k] = 1;
	CHECK(queue_offline_mark(dir, real[0].id, QUEUE_OFFLINE_DELETE, 100005, err,
				 sizeof(err)) == -ENOENT); /* all delivered */
	CHECK(queue_offline_mark(dir, real[7].id, QUEUE_OFFLINE_DELETE, 100005, err,
				 sizeof(err)) == -ENOENT); /* deleted already */
	CHECK(queue_offline_mark(dir, real[5].id + 8, QUEUE_OFFLINE_REQUEUE, 100005, err,
				 sizeof(err)) == -ENOENT); /* no record there */
	CHECK(queue_offline_mark(dir, real[5].id, QUEUE_OFFLINE_REQUEUE, 100005, err,
				 sizeof(err)) == 0);

	/* While the shard is locked (ringmx running), marking is refused. */
	{
		char path[512];
		snprintf(path, sizeof(path), "%s/w%u", dir, (unsigned)W);
		int lock = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		REQUIRE(lock >= 0);
		REQUIRE(flock(lock, LOCK_EX | LOCK_NB) == 0);
		CHECK(queue_offline_mark(dir, real[8].id, QUEUE_OFFLINE_DELETE, 100005, err,
					 sizeof(err)) == -EBUSY);
		close(lock);
	}

	/* Restart again: record 7 is gone, record 5 due at once, the rest
	 * keep their backoff (due after now). */
	REQUIRE(store_open(&scfg, &st, &srs, err, sizeof(err)) == 0);
	qcfg.now_unix_ms = 100010;
	REQUIRE(queue_open(&qcfg, &q, &qrs, err, sizeof(err)) == 0);
	CHECK_EQ_U(qrs.messages_pending, want_msgs - 1);
	m = queue_next_due(q, 100010);
	CHECK(m != NULL && queue_msg_id(m) == real[5].id);
	CHECK(queue_next_due(q, 100010) == NULL);
	if (m) {
		for (uint32_t k = 0; k < real[5].rcpts; k++) {
			queue_outcome(q, m, k, QUEUE_OUTCOME_DELIVERED, 250, 0, 100011);
			decided[5][k] = 1;
		}
		CHECK(queue_attempt_done(q, m, 100011) == QUEUE_ATTEMPT_DONE);
	}
	/* Deliver everything left: segments below the active one are then
	 * reclaimable; the test unlinks them like core/. */
	int64_t now = 100012;
	while (queue_next_due_time(q) != INT64_MAX) {
		now = RMX_MAX(now, queue_next_due_time(q));
		m = queue_next_due(q, now);
		REQUIRE(m != NULL);
		for (uint32_t k = 0; k < queue_msg_rcpt_count(m); k++)
			queue_outcome(q, m, k, QUEUE_OUTCOME_DELIVERED, 250, 0, now);
		CHECK(queue_attempt_done(q, m, now) == QUEUE_ATTEMPT_DONE);
	}
	uint32_t seq;
	CHECK(!queue_reclaimable(q, &seq)); /* not durable yet */
	real_flush(q);
	struct store_stats ss;
	store_get_stats(st, &ss);
	uint32_t reclaimed = 0;
	while (queue_reclaimable(q, &seq)) {
		char name[DELIVERY_LOG_NAME_MAX_BYTES];
		segment_name_format(name, seq);
		CHECK(unlinkat(store_dir_fd(st), name, 0) == 0);
		delivery_log_name_format(name, seq);
		CHECK(unlinkat(store_dir_fd(st), name, 0) == 0);
		int fd = queue_reclaimed(q, seq);
		CHECK(fd >= 0);
		if (fd >= 0)
			close(fd);
		store_segment_removed(st, seq);
		reclaimed++;
	}
	/* Every segment holding records but the newest (the active one). */
	uint32_t highest = 0, distinct = 0, in_active = 0;
	for (int i = 0; i < REAL_RECS; i++) {
		uint32_t w, s;
		uint64_t off;
		queue_id_split(real[i].id, &w, &s, &off);
		distinct += i == 0 || s != highest;
		highest = RMX_MAX(highest, s);
	}
	for (int i = 0; i < REAL_RECS; i++) {
		uint32_t w, s;
		uint64_t off;
		queue_id_split(real[i].id, &w, &s, &off);
		in_active += s == highest;
	}
	CHECK(distinct >= 3);
	CHECK_EQ_U(reclaimed, distinct - 1);
	struct store_stats after;
	store_get_stats(st, &after);
	CHECK_EQ_U(after.segments + reclaimed, ss.segments);
	CHECK(!path_exists(dir, "00000001.seg") && !path_exists(dir, "00000001.dlog"));
	queue_close(q);
	store_close(st);

	/* Nothing pending after a last restart; an orphan log is removed. */
	{
		char path[512];
		snprintf(path, sizeof(path), "%s/w%u/00000077.dlog", dir, (unsigned)W);
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		REQUIRE(fd >= 0);
		close(fd);
	}
	REQUIRE(store_open(&scfg, &st, &srs, err, sizeof(err)) == 0);
	REQUIRE(queue_open(&qcfg, &q, &qrs, err, sizeof(err)) == 0);
	CHECK_EQ_U(qrs.messages_pending, 0);
	CHECK_EQ_U(qrs.records, in_active);
	CHECK_EQ_U(qrs.records_final, in_active);
	CHECK_EQ_U(qrs.orphan_logs_removed, 1);
	CHECK(!path_exists(dir, "00000077.dlog"));
	queue_close(q);
	store_close(st);
	for (int i = 0; i < REAL_RECS; i++)
		bytebuf_free(&real[i].env);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

/*
 * At-least-once across a failed log commit: what was not written comes
 * back after a restart, what was written stays final; a missing log is
 * recreated and means "nothing happened yet".
 */
static void test_failed_commit_redelivers(void)
{
	char dir[] = "/tmp/rmx-qfail-XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	struct store_config scfg = {
		.data_dir = dir,
		.worker = W,
		.segment_size_bytes = SEG_BYTES,
		.store_max_bytes = 8 * SEG_BYTES,
		.fsync = true,
	};
	struct queue_config qcfg = cfg_make();
	qcfg.data_dir = dir;
	qcfg.now_unix_ms = 5000;
	char err[256];
	struct store *st = NULL;
	struct store_recovery_stats srs;
	struct queue *q = NULL;
	struct queue_recovery_stats qrs;
	REQUIRE(store_open(&scfg, &st, &srs, err, sizeof(err)) == 0);
	REQUIRE(queue_open(&qcfg, &q, &qrs, err, sizeof(err)) == 0);
	real_add(st, q, 0); /* 1 recipient */
	real_add(st, q, 1); /* 2 recipients */
	struct queue_msg *a = queue_next_due(q, 5000), *b = queue_next_due(q, 5000);
	REQUIRE(a && b && queue_msg_id(a) == real[0].id);
	queue_outcome(q, a, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 5001);
	CHECK(queue_attempt_done(q, a, 5001) == QUEUE_ATTEMPT_DONE);
	real_flush(q);
	for (uint32_t k = 0; k < 2; k++)
		queue_outcome(q, b, k, QUEUE_OUTCOME_DELIVERED, 250, 0, 5002);
	CHECK(queue_attempt_done(q, b, 5002) == QUEUE_ATTEMPT_DONE);
	struct queue_commit c;
	REQUIRE(queue_commit_begin(q, &c));
	queue_commit_done(q, -EIO); /* the disk said no: nothing written */
	CHECK(queue_status(q) == -EIO);
	queue_set_active_segment(q, 99);
	uint32_t seq;
	CHECK(!queue_reclaimable(q, &seq));
	queue_close(q);
	store_close(st);

	REQUIRE(store_open(&scfg, &st, &srs, err, sizeof(err)) == 0);
	REQUIRE(queue_open(&qcfg, &q, &qrs, err, sizeof(err)) == 0);
	CHECK_EQ_U(qrs.records, 2);
	CHECK_EQ_U(qrs.records_final, 1);
	CHECK_EQ_U(qrs.recipients_pending, 2);
	b = queue_next_due(q, 5000);
	CHECK(b != NULL && queue_msg_id(b) == real[1].id);
	CHECK(queue_next_due(q, 5000) == NULL);
	queue_close(q);
	store_close(st);

	/* Without its log, every recipient is pending again. */
	char path[512];
	snprintf(path, sizeof(path), "%s/w%u/00000001.dlog", dir, (unsigned)W);
	REQUIRE(unlink(path) == 0);
	REQUIRE(store_open(&scfg, &st, &srs, err, sizeof(err)) == 0);
	REQUIRE(queue_open(&qcfg, &q, &qrs, err, sizeof(err)) == 0);
	CHECK_EQ_U(qrs.messages_pending, 2);
	CHECK_EQ_U(qrs.recipients_pending, 3);
	CHECK(path_exists(dir, "00000001.dlog"));
	queue_close(q);
	store_close(st);
	for (int i = 0; i < 2; i++)
		bytebuf_free(&real[i].env);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

/*
 * A crash can cut a log anywhere. For every cut of a real log at every
 * byte, recovery must bring back exactly the recipients that the whole
 * entries before the cut leave pending (and cut the file there).
 */
#define CUT_RECS 6

static void test_recovery_every_log_cut(void)
{
	char dir[] = "/tmp/rmx-qcut-XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	struct store_config scfg = {
		.data_dir = dir,
		.worker = W,
		.segment_size_bytes = SEG_BYTES,
		.store_max_bytes = 8 * SEG_BYTES,
		.fsync = false,
	};
	struct queue_config qcfg = cfg_make();
	qcfg.data_dir = dir;
	qcfg.fsync = false;
	qcfg.max_lifetime_ms = 20000;
	char err[256];
	struct store *st = NULL;
	struct store_recovery_stats srs;
	REQUIRE(store_open(&scfg, &st, &srs, err, sizeof(err)) == 0);
	struct queue *q = NULL;
	struct queue_recovery_stats qrs;
	REQUIRE(queue_open(&qcfg, &q, &qrs, err, sizeof(err)) == 0);
	for (int i = 0; i < CUT_RECS; i++)
		real_add(st, q, i);
	/* A few rounds of mixed outcomes until everything is final. */
	int64_t now = 5000;
	uint64_t rng = 88172645463325252ull;
	while (queue_next_due_time(q) != INT64_MAX) {
		now = RMX_MAX(now, queue_next_due_time(q));
		struct queue_msg *m = queue_next_due(q, now);
		REQUIRE(m != NULL);
		for (uint32_t k = 0; k < queue_msg_rcpt_count(m); k++) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			enum queue_outcome o = rng % 5 == 0   ? QUEUE_OUTCOME_PERMFAIL
					       : rng % 5 <= 2 ? QUEUE_OUTCOME_TEMPFAIL
							      : QUEUE_OUTCOME_DELIVERED;
			queue_outcome(q, m, k, o, o == QUEUE_OUTCOME_DELIVERED ? 250 : 450, 0, now);
		}
		if (queue_attempt_done(q, m, now) == QUEUE_ATTEMPT_BOUNCE_DUE)
			CHECK(queue_bounce_done(q, m, now) != QUEUE_ATTEMPT_BOUNCE_DUE);
		real_flush(q);
	}
	queue_close(q);
	store_close(st);

	char path[512];
	snprintf(path, sizeof(path), "%s/w%u/00000001.dlog", dir, (unsigned)W);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0);
	static uint8_t full[64 * 1024];
	ssize_t len = read(fd, full, sizeof(full));
	close(fd);
	REQUIRE(len > 0 && len % DELIVERY_LOG_ENTRY_BYTES == 0 && (size_t)len < sizeof(full));
	CHECK(len / DELIVERY_LOG_ENTRY_BYTES > 2 * CUT_RECS);

	for (ssize_t cut = 0; cut <= len; cut++) {
		/* The crash: the log ends at cut, with junk after a torn entry. */
		fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
		REQUIRE(fd >= 0);
		REQUIRE(write(fd, full, (size_t)cut) == cut);
		if (cut % DELIVERY_LOG_ENTRY_BYTES != 0)
			REQUIRE(write(fd, "\xff\xff", 2) == 2);
		close(fd);

		/* What the whole entries before the cut say. */
		uint8_t states[CUT_RECS][4];
		struct delivery_log_replay_msg want[CUT_RECS];
		for (int i = 0; i < CUT_RECS; i++) {
			memset(states[i], 0, sizeof(states[i]));
			want[i] = (struct delivery_log_replay_msg){ .rcpt_state = states[i],
							    .rcpt_count = real[i].rcpts,
							    .pending = real[i].rcpts };
		}
		for (ssize_t off = 0; off + DELIVERY_LOG_ENTRY_BYTES <= cut; off += DELIVERY_LOG_ENTRY_BYTES) {
			struct delivery_log_entry e;
			REQUIRE(delivery_log_entry_decode(full + off, &e) == DELIVERY_LOG_OK);
			int i = find_real(e.queue_id);
			REQUIRE(i >= 0);
			CHECK(delivery_log_apply(&want[i], &e));
		}

		qcfg.now_unix_ms = INT64_MAX / 2;
		REQUIRE(queue_open(&qcfg, &q, &qrs, err, sizeof(err)) == 0);
		uint32_t want_msgs = 0;
		for (int i = 0; i < CUT_RECS; i++)
			want_msgs += want[i].pending > 0;
		CHECK_EQ_U(qrs.messages_pending, want_msgs);
		CHECK_EQ_U(qrs.log_entries, (uint64_t)cut / DELIVERY_LOG_ENTRY_BYTES);
		struct queue_msg *m;
		while ((m = queue_next_due(q, INT64_MAX / 2)) != NULL) {
			int i = find_real(queue_msg_id(m));
			REQUIRE(i >= 0);
			CHECK(want[i].pending > 0);
			CHECK_EQ_U(queue_msg_attempts(m), want[i].attempts);
			for (uint32_t k = 0; k < real[i].rcpts; k++)
				CHECK_EQ_U(queue_msg_rcpt_state(m, k), states[i][k]);
		}
		queue_close(q);
		struct stat sb;
		CHECK(stat(path, &sb) == 0 &&
		      sb.st_size == cut / DELIVERY_LOG_ENTRY_BYTES * DELIVERY_LOG_ENTRY_BYTES);
	}
	for (int i = 0; i < CUT_RECS; i++)
		bytebuf_free(&real[i].env);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

/* A DSN that cannot be stored: the refused recipient is pending again,
 * nothing final is logged for it, and the next attempt asks again. */
static void test_bounce_store_failed(void)
{
	struct queue_config c = cfg_make();
	c.retry_min_ms = 4000;
	c.retry_max_ms = 4000;
	struct queue *q = new_queue(&c);
	mem_reset();
	REQUIRE(queue_add(q, qid(2, 0), 64, 2, 0, 0) == 0);
	struct queue_msg *m = queue_next_due(q, 0);
	REQUIRE(m != NULL);
	queue_outcome(q, m, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 1);
	queue_outcome(q, m, 1, QUEUE_OUTCOME_PERMFAIL, 550, delivery_log_enhanced_pack(5, 1, 1), 1);
	CHECK(queue_attempt_done(q, m, 2) == QUEUE_ATTEMPT_BOUNCE_DUE);
	CHECK(queue_bounce_failed(q, m, 5000) == QUEUE_ATTEMPT_RETRY);
	CHECK(queue_msg_rcpt_state(m, 1) == QUEUE_RCPT_PENDING);
	CHECK(queue_msg_rcpt_state(m, 0) == QUEUE_RCPT_DELIVERED);
	CHECK_EQ_U(queue_next_due_time(q), 5000);
	struct queue_stats st;
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.messages, 1);
	CHECK_EQ_U(st.in_flight, 0);
	CHECK_EQ_U(st.recipients_pending, 1);
	CHECK_EQ_U(st.bounced, 0);
	mem_flush(q);
	for (uint64_t i = 0; i < mem_entries(2); i++)
		CHECK(mem_entry(2, i).type != DELIVERY_LOG_BOUNCED);
	/* The next attempt refuses it again; this time the DSN is stored. */
	m = queue_next_due(q, 5000);
	REQUIRE(m != NULL);
	queue_outcome(q, m, 1, QUEUE_OUTCOME_PERMFAIL, 550, delivery_log_enhanced_pack(5, 1, 1), 5001);
	CHECK(queue_attempt_done(q, m, 5002) == QUEUE_ATTEMPT_BOUNCE_DUE);
	CHECK(queue_bounce_done(q, m, 5003) == QUEUE_ATTEMPT_DONE);
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.messages, 0);
	CHECK_EQ_U(st.recipients_pending, 0);
	CHECK_EQ_U(st.bounced, 1);
	queue_close(q);
}

int main(void)
{
	test_config_checked();
	test_due_order();
	test_requeue();
	test_backoff();
	test_bounce_and_expiry();
	test_bounce_store_failed();
	test_commit_batching();
	test_commit_failure();
	test_commit_plan();
	test_reclaim();
	test_entry_buffer_full();
	test_random_against_replay();
	test_recovery_real_files();
	test_recovery_every_log_cut();
	test_failed_commit_redelivers();
	return test_main_end("test_queue");
}
