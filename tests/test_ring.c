/*
 * test_ring.c - submission through core/ring on a real, small ring.
 *
 * A ring of RING_TEST_ENTRIES SQEs and NOPs (plus a read from an empty pipe
 * where a chain must be seen to hold): link chains reserved past the end of
 * the SQ are submitted whole; a kernel that refuses submissions (a hook that
 * answers -EBUSY) sends SQEs to the backlog in order, chains whole, without
 * aborting, and ring_flush submits everything once the kernel takes it again.
 * Skipped (77) where io_uring is not available.
 */
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "../core/ring.h"
#include "test.h"

#define RING_TEST_ENTRIES 8

static int submit_busy(struct io_uring *ring)
{
	(void)ring;
	return -EBUSY;
}

static unsigned submit_busy_left; /* refusals before submit_busy_then_ok submits */

static int submit_busy_then_ok(struct io_uring *ring)
{
	if (submit_busy_left > 0) {
		submit_busy_left--;
		return -EBUSY;
	}
	return io_uring_submit(ring);
}

static void nop(struct io_uring_sqe *sqe, uint64_t ud, bool link)
{
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, ud);
	if (link)
		sqe->flags |= IOSQE_IO_LINK;
}

#define READ_UD 100 /* the one op whose result is not 0: a 1-byte read */

/* Reaps up to `want` CQEs into uds, waiting at most wait_ms for each;
 * returns how many came. Every NOP must succeed. */
static unsigned reap(struct io_uring *ring, uint64_t *uds, unsigned max, unsigned want,
		     long wait_ms)
{
	unsigned got = 0;
	while (got < want) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = { .tv_sec = wait_ms / 1000,
						.tv_nsec = (wait_ms % 1000) * 1000000L };
		int rc = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
		if (rc != 0)
			break;
		REQUIRE(got < max);
		CHECK_EQ_U(cqe->res, cqe->user_data == READ_UD ? 1 : 0);
		uds[got++] = cqe->user_data;
		io_uring_cqe_seen(ring, cqe);
	}
	return got;
}

static bool ring_open(struct io_uring *ring)
{
	struct ring_info info;
	int rc = ring_init(ring, RING_TEST_ENTRIES, &info);
	if (rc == -ENOSYS || rc == -EPERM) {
		fprintf(stderr, "io_uring unavailable (%d): skipped\n", rc);
		return false;
	}
	REQUIRE(rc == 0);
	REQUIRE(ring->sq.ring_entries == RING_TEST_ENTRIES);
	return true;
}

/* Commit's shape: a read that cannot complete yet, linked to a NOP. With the
 * SQ one short of full, the two-SQE reservation must not put the read in
 * this submission and the NOP in the next: the NOP may complete only after
 * the read. Before ring_sqes, two ring_sqe calls cut this chain. */
static void test_chain_at_sq_end(void)
{
	struct io_uring ring;
	if (!ring_open(&ring))
		exit(77);
	int fds[2];
	REQUIRE(pipe(fds) == 0);
	static char byte;

	for (unsigned round = 0; round < 3; round++) {
		/* fill all but one slot, whatever the SQ holds now */
		uint64_t ud = 1;
		while (io_uring_sq_space_left(&ring) > 1)
			nop(ring_sqe(&ring), ud++, false);
		unsigned fillers = (unsigned)(ud - 1);
		struct io_uring_sqe *chain[2];
		ring_sqes(&ring, 2, chain);
		/* contiguous in the SQ, in one submission */
		CHECK(chain[1] == &ring.sq.sqes[(chain[0] - ring.sq.sqes + 1) &
						 (ring.sq.ring_entries - 1)]);
		CHECK_EQ_U(io_uring_sq_ready(&ring), 2);
		io_uring_prep_read(chain[0], fds[0], &byte, 1, 0);
		io_uring_sqe_set_data64(chain[0], READ_UD);
		chain[0]->flags |= IOSQE_IO_LINK;
		nop(chain[1], READ_UD + 1, false);
		ring_flush(&ring);
		REQUIRE(io_uring_submit(&ring) >= 0);

		uint64_t uds[RING_TEST_ENTRIES * 2];
		unsigned got = reap(&ring, uds, RMX_ARRAY_LEN(uds), fillers + 1, 200);
		/* the fillers came back; the NOP waits behind the read */
		CHECK_EQ_U(got, fillers);
		for (unsigned i = 0; i < got; i++)
			CHECK_EQ_U(uds[i], i + 1);
		REQUIRE(write(fds[1], "x", 1) == 1);
		got = reap(&ring, uds, RMX_ARRAY_LEN(uds), 2, 1000);
		CHECK_EQ_U(got, 2);
		if (got == 2) {
			CHECK_EQ_U(uds[0], READ_UD);
			CHECK_EQ_U(uds[1], READ_UD + 1);
		}
	}
	CHECK_EQ_U(ring_backlog_stats(&ring).sqes_total, 0);
	close(fds[0]);
	close(fds[1]);
	ring_exit(&ring);
}

/*
 * The NOPs a test hands out, numbered 1, 2, ... in the order handed out, and
 * the order their CQEs came in. What the kernel promises, and so what is
 * checked: a NOP that no link holds back (a single or a chain's head)
 * completes inline when submitted, so those CQEs come in submission order;
 * a linked follower completes after its predecessor (later, from task work).
 */
#define LEDGER_NOPS_MAX 1024

struct ledger {
	uint64_t next;              /* the next NOP's number */
	bool linked_prev;           /* the last NOP handed out has IOSQE_IO_LINK */
	bool follower[LEDGER_NOPS_MAX + 1];
	unsigned pos[LEDGER_NOPS_MAX + 1]; /* 1-based arrival; 0: not yet */
	unsigned arrived;
};

static void ledger_nop(struct ledger *l, struct io_uring_sqe *sqe, bool link)
{
	if (l->next == 0)
		l->next = 1;
	REQUIRE(l->next <= LEDGER_NOPS_MAX);
	l->follower[l->next] = l->linked_prev;
	nop(sqe, l->next++, link);
	l->linked_prev = link;
}

/* n SQEs for one chain of n NOPs, checking where ring_sqes put them: all in
 * the SQ, one after the other, not yet submitted; or all outside it. */
static void ledger_chain(struct ledger *l, struct io_uring *ring, unsigned n)
{
	struct io_uring_sqe *sqes[RING_TEST_ENTRIES];
	REQUIRE(n <= RING_TEST_ENTRIES);
	ring_sqes(ring, n, sqes);
	bool in_sq = sqes[0] >= ring->sq.sqes && sqes[0] < ring->sq.sqes + ring->sq.ring_entries;
	if (in_sq)
		CHECK(io_uring_sq_ready(ring) >= n);
	for (unsigned i = 1; i < n; i++) {
		if (in_sq)
			CHECK(sqes[i] == &ring->sq.sqes[(sqes[i - 1] - ring->sq.sqes + 1) &
							(ring->sq.ring_entries - 1)]);
		else
			CHECK(sqes[i] < ring->sq.sqes ||
			      sqes[i] >= ring->sq.sqes + ring->sq.ring_entries);
	}
	for (unsigned i = 0; i < n; i++)
		ledger_nop(l, sqes[i], i + 1 < n);
}

static void ledger_take(struct ledger *l, struct io_uring_cqe *cqe)
{
	CHECK_EQ_U(cqe->res, 0);
	uint64_t ud = cqe->user_data;
	REQUIRE(ud >= 1 && ud < l->next);
	CHECK_EQ_U(l->pos[ud], 0); /* once */
	l->pos[ud] = ++l->arrived;
}

/* Takes the CQEs already posted, without waiting. */
static void ledger_peek(struct ledger *l, struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(ring, &cqe) == 0) {
		ledger_take(l, cqe);
		io_uring_cqe_seen(ring, cqe);
	}
}

/* Flushes, submits and waits (1 s at most per CQE) until every NOP has come
 * back; then checks the order. */
static void ledger_finish(struct ledger *l, struct io_uring *ring)
{
	ring_flush(ring);
	CHECK_EQ_U(ring_backlog_stats(ring).waiting, 0);
	REQUIRE(io_uring_submit(ring) >= 0);
	while (l->arrived < l->next - 1) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
		if (io_uring_wait_cqe_timeout(ring, &cqe, &ts) != 0)
			break;
		ledger_take(l, cqe);
		io_uring_cqe_seen(ring, cqe);
	}
	CHECK_EQ_U(l->arrived, l->next - 1);
	unsigned last_unheld = 0;
	for (uint64_t ud = 1; ud < l->next; ud++) {
		if (l->pos[ud] == 0)
			continue; /* counted above */
		if (l->follower[ud]) {
			CHECK(l->pos[ud] > l->pos[ud - 1]);
		} else {
			CHECK(l->pos[ud] > last_unheld);
			last_unheld = l->pos[ud];
		}
	}
}

/* Chains of 1..4 NOPs laid one after the other past the end of the SQ, many
 * times over: each reservation lies whole in one submission, and every CQE
 * comes back, in order. */
static void test_chains_fill_past_sq(void)
{
	struct io_uring ring;
	if (!ring_open(&ring))
		exit(77);
	static struct ledger l;
	memset(&l, 0, sizeof(l));
	for (unsigned round = 0; round < 300; round++) {
		ledger_chain(&l, &ring, 1 + round % 4);
		ledger_peek(&l, &ring); /* so that the CQ never overflows */
	}
	ledger_finish(&l, &ring);
	CHECK_EQ_U(ring_backlog_stats(&ring).sqes_total, 0);
	ring_exit(&ring);
}

/* The kernel refuses every submission: SQEs past the SQ go to the backlog
 * (no abort), in order, and everything goes out once it accepts again. */
static void test_backlog_when_kernel_refuses(void)
{
	struct io_uring ring;
	if (!ring_open(&ring))
		exit(77);
	static struct ledger l;
	memset(&l, 0, sizeof(l));
	ring_set_submit_hook(&ring, submit_busy);
	/* the SQ: 8 single NOPs */
	for (unsigned i = 0; i < RING_TEST_ENTRIES; i++)
		ledger_chain(&l, &ring, 1);
	/* the backlog: chains of 3, 1, 2 and 2 = all 8 of its entries */
	static const unsigned lens[] = { 3, 1, 2, 2 };
	for (unsigned c = 0; c < RMX_ARRAY_LEN(lens); c++)
		ledger_chain(&l, &ring, lens[c]);
	struct ring_backlog_stats st = ring_backlog_stats(&ring);
	CHECK_EQ_U(st.sqes_total, RING_TEST_ENTRIES);
	CHECK_EQ_U(st.waiting, RING_TEST_ENTRIES);
	CHECK(st.submit_failures_total >= 1);
	CHECK_EQ_U(st.last_error, -EBUSY);
	CHECK_EQ_U(io_uring_sq_ready(&ring), RING_TEST_ENTRIES);

	/* still refused: the flush moves nothing and loses nothing */
	ring_flush(&ring);
	CHECK_EQ_U(ring_backlog_stats(&ring).waiting, RING_TEST_ENTRIES);
	CHECK_EQ_U(io_uring_sq_ready(&ring), RING_TEST_ENTRIES);

	/* accepted again: the flush submits the SQ, then the chains whole */
	ring_set_submit_hook(&ring, NULL);
	ledger_finish(&l, &ring);
	ring_exit(&ring);
}

/* The SQ gets a chain whole or not at all: a chain of 3 that finds 2 free
 * slots, with submission refused, stays in the backlog, and so does what
 * came after it; once there is room it moves in one piece. */
static void test_flush_keeps_chain_whole(void)
{
	struct io_uring ring;
	if (!ring_open(&ring))
		exit(77);
	static struct ledger l;
	memset(&l, 0, sizeof(l));
	ring_set_submit_hook(&ring, submit_busy);
	for (unsigned i = 0; i < RING_TEST_ENTRIES - 2; i++)
		ledger_chain(&l, &ring, 1);
	ledger_chain(&l, &ring, 3);
	ledger_chain(&l, &ring, 1); /* fits the SQ, but order puts it behind */
	CHECK_EQ_U(io_uring_sq_ready(&ring), RING_TEST_ENTRIES - 2);
	CHECK_EQ_U(ring_backlog_stats(&ring).waiting, 4);
	ring_flush(&ring);
	CHECK_EQ_U(io_uring_sq_ready(&ring), RING_TEST_ENTRIES - 2);
	CHECK_EQ_U(ring_backlog_stats(&ring).waiting, 4);

	/* the kernel takes the SQ once, by hand, and refuses again: the flush
	 * has room for everything without submitting */
	REQUIRE(io_uring_submit(&ring) == RING_TEST_ENTRIES - 2);
	ring_flush(&ring);
	CHECK_EQ_U(ring_backlog_stats(&ring).waiting, 0);
	CHECK_EQ_U(io_uring_sq_ready(&ring), 4);
	ring_set_submit_hook(&ring, NULL);
	ledger_finish(&l, &ring);
	ring_exit(&ring);
}

/* A full backlog waits for the kernel instead of aborting: after a few
 * refusals the reservation is served and nothing is lost. */
static void test_full_backlog_waits(void)
{
	struct io_uring ring;
	if (!ring_open(&ring))
		exit(77);
	static struct ledger l;
	memset(&l, 0, sizeof(l));
	ring_set_submit_hook(&ring, submit_busy);
	for (unsigned i = 0; i < 2 * RING_TEST_ENTRIES - 1; i++)
		ledger_chain(&l, &ring, 1);
	CHECK_EQ_U(ring_backlog_stats(&ring).waiting, RING_TEST_ENTRIES - 1);
	submit_busy_left = 5;
	ring_set_submit_hook(&ring, submit_busy_then_ok);
	ledger_chain(&l, &ring, 2); /* the backlog has room for 1: waits ~5 ms */
	CHECK(ring_backlog_stats(&ring).submit_failures_total >= 5);
	ring_set_submit_hook(&ring, NULL);
	ledger_finish(&l, &ring);
	ring_exit(&ring);
}

int main(void)
{
	test_chain_at_sq_end();
	test_chains_fill_past_sq();
	test_backlog_when_kernel_refuses();
	test_flush_keeps_chain_whole();
	test_full_backlog_waits();
	return test_main_end("ring");
}
