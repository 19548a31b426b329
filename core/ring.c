/*
 * ring.c - io_uring set-up for one worker, and the provided buffer ring.
 *
 * liburing 2.3 has no io_uring_setup_buf_ring: we map the ring memory
 * ourselves (page aligned, entries * 16 bytes), register it, then add every
 * buffer. The kernel flags wanted (SINGLE_ISSUER + DEFER_TASKRUN) are tried
 * first; an old kernel refusing them costs speed, not correctness.
 *
 * Submission: ring_sqe/ring_sqes hand out SQEs from the SQ while nothing
 * waits in the backlog and the SQ has room (or gets it from a submission);
 * otherwise from the backlog, a circular array of SQEs allocated with the
 * ring. Invariants: SQEs reach the kernel in the order they were handed out
 * (SQ first, then the backlog, oldest first); a reservation of n lies in one
 * place, the SQ or the backlog, and ring_flush moves a link chain only whole,
 * so no submission ends inside a chain we made. A backlog too full for a
 * reservation flushes and retries every millisecond, for at most
 * RING_SUBMIT_STALL_MAX_MS.
 */
#include "ring.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "../common/bounds.h"
#include "log.h"

struct ring_backlog {
	struct io_uring *ring;
	struct io_uring_sqe *sqes; /* cap entries, circular */
	uint32_t cap;
	uint32_t head;  /* oldest waiting SQE */
	uint32_t count; /* SQEs waiting */
	ring_submit_fn submit;
	struct ring_backlog_stats stats;
	uint64_t reported_sqes, reported_failures;
	int64_t reported_ms;
};

/* One ring per worker thread: its backlog is found through the thread. */
static _Thread_local struct ring_backlog *ring_tls_backlog;

static struct ring_backlog *backlog_of(const struct io_uring *ring)
{
	struct ring_backlog *b = ring_tls_backlog;
	RMX_ASSERT(b != NULL && b->ring == ring);
	return b;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	RMX_ASSERT(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int backlog_new(struct io_uring *ring)
{
	RMX_ASSERT(ring_tls_backlog == NULL); /* one ring per thread */
	RMX_ASSERT(!(ring->flags & IORING_SETUP_SQE128));
	struct ring_backlog *b = calloc(1, sizeof(*b));
	uint32_t cap = RMX_MIN(ring->sq.ring_entries, (uint32_t)RING_BACKLOG_SQES_MAX);
	struct io_uring_sqe *sqes = calloc(cap, sizeof(*sqes));
	if (b == NULL || sqes == NULL) {
		free(b);
		free(sqes);
		io_uring_queue_exit(ring);
		memset(ring, 0, sizeof(*ring));
		ring->ring_fd = -1; /* ring_exit then has nothing to release */
		return -ENOMEM;
	}
	b->ring = ring;
	b->sqes = sqes;
	b->cap = cap;
	b->submit = io_uring_submit;
	ring_tls_backlog = b;
	return 0;
}

int ring_init(struct io_uring *ring, unsigned entries, struct ring_info *info)
{
	static const unsigned attempts[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int rc = -EINVAL;
	for (size_t i = 0; i < RMX_ARRAY_LEN(attempts); i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = attempts[i];
		rc = io_uring_queue_init_params(entries, ring, &p);
		if (rc == 0) {
			info->flags = attempts[i];
			info->defer_taskrun = (attempts[i] & IORING_SETUP_DEFER_TASKRUN) != 0;
			return backlog_new(ring);
		}
		if (rc != -EINVAL)
			return rc;
	}
	return rc;
}

int buf_ring_setup(struct io_uring *ring, struct buf_ring *b, uint32_t count, uint32_t size_bytes,
		   uint16_t bgid)
{
	RMX_ASSERT(count > 0 && (count & (count - 1)) == 0 && count <= 32768);
	memset(b, 0, sizeof(*b));
	size_t ring_bytes = (size_t)count * sizeof(struct io_uring_buf);
	void *r = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (r == MAP_FAILED)
		return -errno;
	size_t data_bytes = (size_t)count * size_bytes;
	void *d = mmap(NULL, data_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (d == MAP_FAILED) {
		int e = -errno;
		munmap(r, ring_bytes);
		return e;
	}
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)r;
	reg.ring_entries = count;
	reg.bgid = bgid;
	int rc = io_uring_register_buf_ring(ring, &reg, 0);
	if (rc != 0) {
		munmap(d, data_bytes);
		munmap(r, ring_bytes);
		return rc;
	}
	b->br = r;
	b->base = d;
	b->count = count;
	b->size_bytes = size_bytes;
	b->bgid = bgid;
	io_uring_buf_ring_init(b->br);
	for (uint32_t i = 0; i < count; i++)
		buf_ring_return(b, (uint16_t)i);
	buf_ring_publish(b);
	return 0;
}

void buf_ring_free(struct io_uring *ring, struct buf_ring *b)
{
	if (!b->br)
		return;
	(void)io_uring_unregister_buf_ring(ring, b->bgid);
	munmap(b->base, (size_t)b->count * b->size_bytes);
	munmap(b->br, (size_t)b->count * sizeof(struct io_uring_buf));
	memset(b, 0, sizeof(*b));
}

void ring_exit(struct io_uring *ring)
{
	struct ring_backlog *b = ring_tls_backlog;
	if (b != NULL && b->ring == ring) {
		free(b->sqes);
		free(b);
		ring_tls_backlog = NULL;
	}
	if (ring->ring_fd >= 0)
		io_uring_queue_exit(ring);
}

/* Submits what the SQ holds to make room; a refusal is counted, never fatal
 * (the caller falls back on the backlog, and the loop's wait reports an
 * error that is not passing). */
static void sq_submit(struct ring_backlog *b)
{
	int rc = b->submit(b->ring);
	if (rc < 0) {
		b->stats.submit_failures_total++;
		b->stats.last_error = rc;
	}
}

static struct io_uring_sqe *backlog_at(struct ring_backlog *b, uint32_t i)
{
	return &b->sqes[(b->head + i) % b->cap];
}

/* Length of the link chain that starts at the oldest waiting SQE. */
static uint32_t backlog_chain_len(struct ring_backlog *b)
{
	uint32_t n = 1;
	while (n < b->count && (backlog_at(b, n - 1)->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK)))
		n++;
	return n;
}

/* Logs backlog use at most once a second, from the loop (ring_flush). */
static void backlog_report(struct ring_backlog *b)
{
	if (RMX_LIKELY(b->stats.sqes_total == b->reported_sqes &&
		       b->stats.submit_failures_total == b->reported_failures))
		return;
	int64_t now_ms = mono_ms();
	if (b->reported_ms != 0 && now_ms - b->reported_ms < 1000)
		return;
	log_warn("event=ring_backlog ring_fd=%d backlog_sqes=%" PRIu64 " submit_failures=%" PRIu64
		 " waiting=%" PRIu32 " waiting_peak=%" PRIu32 " last_error=%d",
		 b->ring->ring_fd, b->stats.sqes_total - b->reported_sqes,
		 b->stats.submit_failures_total - b->reported_failures, b->count,
		 b->stats.waiting_peak, b->stats.last_error);
	b->reported_sqes = b->stats.sqes_total;
	b->reported_failures = b->stats.submit_failures_total;
	b->reported_ms = now_ms;
}

void ring_flush(struct io_uring *ring)
{
	struct ring_backlog *b = backlog_of(ring);
	while (b->count > 0) {
		uint32_t n = backlog_chain_len(b);
		RMX_ASSERT(n <= ring->sq.ring_entries);
		if (io_uring_sq_space_left(ring) < n) {
			sq_submit(b);
			if (io_uring_sq_space_left(ring) < n)
				break;
		}
		for (uint32_t i = 0; i < n; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
			RMX_ASSERT(sqe != NULL);
			*sqe = *backlog_at(b, i);
		}
		b->head = (b->head + n) % b->cap;
		b->count -= n;
	}
	b->stats.waiting = b->count;
	backlog_report(b);
}

/* Takes n SQEs from the SQ if nothing waits in the backlog and the SQ has,
 * or after a submission gets, room for all n. */
static bool sq_take(struct ring_backlog *b, unsigned n, struct io_uring_sqe **out)
{
	if (b->count > 0)
		return false;
	if (io_uring_sq_space_left(b->ring) < n) {
		sq_submit(b);
		if (io_uring_sq_space_left(b->ring) < n)
			return false;
	}
	for (unsigned i = 0; i < n; i++) {
		out[i] = io_uring_get_sqe(b->ring);
		RMX_ASSERT(out[i] != NULL);
	}
	return true;
}

/* The backlog is too full for n: flush (which submits) and retry, every
 * millisecond, until the SQ or the backlog has room. */
static bool backlog_wait(struct ring_backlog *b, unsigned n, struct io_uring_sqe **out)
{
	int64_t start_ms = mono_ms();
	for (;;) {
		ring_flush(b->ring);
		if (sq_take(b, n, out))
			return true;
		if (b->cap - b->count >= n)
			return false;
		if (mono_ms() - start_ms > RING_SUBMIT_STALL_MAX_MS) {
			log_error("event=ring_submit_stalled ring_fd=%d waiting=%" PRIu32
				  " last_error=%d stalled_ms=%d", b->ring->ring_fd, b->count,
				  b->stats.last_error, RING_SUBMIT_STALL_MAX_MS);
			rmx_assert_fail("the kernel refused submissions for RING_SUBMIT_STALL_MAX_MS",
					__FILE__, __LINE__);
		}
		struct timespec pause = { .tv_sec = 0, .tv_nsec = 1000000L };
		(void)nanosleep(&pause, NULL); /* EINTR only shortens the pause */
	}
}

void ring_sqes(struct io_uring *ring, unsigned n, struct io_uring_sqe **out)
{
	struct ring_backlog *b = backlog_of(ring);
	RMX_ASSERT(n >= 1 && n <= b->cap);
	if (RMX_LIKELY(sq_take(b, n, out)))
		return;
	if (b->cap - b->count < n && backlog_wait(b, n, out))
		return;
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = backlog_at(b, b->count);
		memset(sqe, 0, sizeof(*sqe));
		out[i] = sqe;
		b->count++;
	}
	b->stats.sqes_total += n;
	b->stats.waiting = b->count;
	b->stats.waiting_peak = RMX_MAX(b->stats.waiting_peak, b->count);
}

struct io_uring_sqe *ring_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe;
	ring_sqes(ring, 1, &sqe);
	return sqe;
}

struct ring_backlog_stats ring_backlog_stats(const struct io_uring *ring)
{
	return backlog_of(ring)->stats;
}

void ring_set_submit_hook(struct io_uring *ring, ring_submit_fn fn)
{
	backlog_of(ring)->submit = fn != NULL ? fn : io_uring_submit;
}
