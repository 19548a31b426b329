/*
 * test_store_io.c - the run-time executor of storage's plans on a real ring,
 * against the blocking executor: every step kind (mkdirat, openat, write,
 * writev, read, fdatasync, fsync, unlinkat, close; fallocate where the file
 * system has it) with the results the blocking executor gives for the same
 * plan; a short read breaks its link (-ECANCELED after it); a plan of
 * IO_PLAN_STEPS_MAX steps (the delivery-log commit's shape) goes whole; a job
 * is asked for its next plan at once after each advance, until it has none.
 * Skipped (77) where io_uring is not available.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/ring.h"
#include "../core/store_io.h"
#include "../storage/segment_quarantine.h"
#include "test.h"

/* A job that runs each of a list of plans once. */
struct script {
	struct io_plan *plans;
	uint32_t count;
	uint32_t next;     /* the plan to hand out next */
	uint32_t advanced;
	struct io_plan seen[8];
};

static bool script_plan(void *owner, struct io_plan *p)
{
	struct script *sc = owner;
	if (sc->next == sc->count)
		return false;
	*p = sc->plans[sc->next++];
	p->pending = p->count;
	return true;
}

static void script_advance(void *owner, const struct io_plan *p)
{
	struct script *sc = owner;
	REQUIRE(p->pending == 0 && sc->advanced < 8);
	sc->seen[sc->advanced++] = *p;
}

/* Reaps until every job given is idle (a bounded wait). */
static void run_ring(struct io_uring *ring, struct store_io *io, struct store_io_job **jobs,
		     uint32_t n)
{
	for (int rounds = 0; rounds < 1000; rounds++) {
		bool busy = false;
		for (uint32_t i = 0; i < n; i++)
			busy = busy || jobs[i]->busy;
		if (!busy)
			return;
		ring_flush(ring);
		struct __kernel_timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
		struct io_uring_cqe *cqe;
		int rc = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
		REQUIRE(rc >= 0 || rc == -ETIME || rc == -EINTR);
		unsigned head, seen = 0;
		io_uring_for_each_cqe(ring, head, cqe)
		{
			REQUIRE(ring_ud_op(cqe->user_data) == RING_OP_STORE_IO);
			store_io_on_cqe(io, cqe);
			seen++;
		}
		io_uring_cq_advance(ring, seen);
	}
	REQUIRE(!"the ring did not finish");
}

static char root[] = "/tmp/rmx-store-io-XXXXXX";

static int dir_open(const char *name)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", root, name);
	REQUIRE(mkdir(path, 0700) == 0);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	REQUIRE(fd >= 0);
	return fd;
}

/* Runs plans[0..count) through the ring (e == 0) or the blocking executor. */
static void run_plans(int e, struct io_uring *ring, struct store_io *io, struct store_io_job *job,
		      struct script *sc)
{
	if (e == 0) {
		store_io_init(io, ring);
		store_io_add(io, job, script_plan, script_advance, sc);
		REQUIRE(store_io_kick(io, job));
		run_ring(ring, io, &job, 1);
	} else {
		for (uint32_t k = 0; k < sc->count; k++) {
			REQUIRE(script_plan(sc, &sc->seen[k]));
			io_plan_run_blocking(&sc->seen[k]);
			script_advance(sc, &sc->seen[k]);
		}
	}
	REQUIRE(sc->advanced == sc->count); /* asked again at once after each advance */
}

/* The same plans, once through each executor, each in its own directory;
 * the results must agree. Steps side by side in a plan are independent. */
static void test_steps_agree(struct io_uring *ring, struct store_io *io, struct store_io_job *job)
{
	static char text[] = "0123456789abcdef";
	static char back[2][32];
	static struct iovec iov[2] = { { text, 4 }, { text + 4, 12 } };
	int dirs[2] = { dir_open("ring"), dir_open("blocking") };
	int results[2][16];
	uint32_t nresults = 0;
	for (int e = 0; e < 2; e++) {
		struct io_plan plans[6];
		/* mkdirat, then openat inside it; mkdirat again: -EEXIST */
		io_plan_clear(&plans[0]);
		struct io_step *s = io_plan_add(&plans[0], IO_STEP_MKDIRAT, dirs[e]);
		s->path = "sub";
		s->mode = 0750;
		io_plan_clear(&plans[1]);
		s = io_plan_add(&plans[1], IO_STEP_OPENAT, dirs[e]);
		s->path = "sub/f";
		s->flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC;
		s->mode = 0600;
		plans[2] = plans[0];
		struct script sc = { .plans = plans, .count = 3 };
		run_plans(e, ring, io, job, &sc);
		int fd = sc.seen[1].result[0];
		REQUIRE(fd >= 0);
		CHECK(sc.seen[0].result[0] == 0 && sc.seen[2].result[0] == -EEXIST);
		/* writev ->link-> fdatasync; a read in full ->link-> fsync of the
		 * directory; a write; a short read ->link-> unlinkat, which is
		 * cancelled; close */
		io_plan_clear(&plans[0]);
		s = io_plan_add(&plans[0], IO_STEP_WRITEV, fd);
		s->iov = iov;
		s->iovcnt = 2;
		s->len = 16;
		s->link = true;
		(void)io_plan_add(&plans[0], IO_STEP_FDATASYNC, fd);
		io_plan_clear(&plans[1]);
		s = io_plan_add(&plans[1], IO_STEP_READ, fd);
		s->buf = back[e];
		s->len = 8;
		s->offset = 4;
		s->link = true;
		(void)io_plan_add(&plans[1], IO_STEP_FSYNC, dirs[e]);
		io_plan_clear(&plans[2]);
		s = io_plan_add(&plans[2], IO_STEP_WRITE, fd);
		s->buf = text;
		s->len = 4;
		s->offset = 16;
		io_plan_clear(&plans[3]);
		s = io_plan_add(&plans[3], IO_STEP_READ, fd);
		s->buf = back[e] + 16;
		s->len = 10;
		s->offset = 12; /* 8 bytes there: short */
		s->link = true;
		s = io_plan_add(&plans[3], IO_STEP_UNLINKAT, dirs[e]);
		s->path = "sub/f";
		io_plan_clear(&plans[4]);
		(void)io_plan_add(&plans[4], IO_STEP_CLOSE, fd);
		sc = (struct script){ .plans = plans, .count = 5 };
		run_plans(e, ring, io, job, &sc);
		nresults = 0;
		for (uint32_t k = 0; k < sc.count; k++)
			for (uint32_t i = 0; i < sc.seen[k].count; i++)
				results[e][nresults++] = sc.seen[k].result[i];
		CHECK_MEM(back[e], 8, "456789ab", 8);
		CHECK_MEM(back[e] + 16, 8, "cdef0123", 8);
		struct stat sb;
		CHECK(fstatat(dirs[e], "sub/f", &sb, 0) == 0 && sb.st_size == 20);
		CHECK(fstatat(dirs[e], "sub", &sb, 0) == 0 && (sb.st_mode & 0777) == 0750);
	}
	static const int want[] = { 16, 0, 8, 0, 4, 8, -ECANCELED, 0 };
	REQUIRE(nresults == RMX_ARRAY_LEN(want));
	for (uint32_t i = 0; i < nresults; i++) {
		CHECK_EQ_U(results[0][i], want[i]);
		CHECK_EQ_U(results[1][i], want[i]);
	}
	close(dirs[0]);
	close(dirs[1]);
}

/* A plan of IO_PLAN_STEPS_MAX steps, pairs of write ->link-> fdatasync on
 * four files, and fallocate where the file system has it. */
static void test_full_plan(struct io_uring *ring, struct store_io *io, struct store_io_job *job)
{
	int dfd = dir_open("full");
	int fds[IO_PLAN_STEPS_MAX / 2];
	static char entry[64] = "an entry";
	struct io_plan plan;
	io_plan_clear(&plan);
	for (uint32_t k = 0; k < IO_PLAN_STEPS_MAX / 2; k++) {
		char name[16];
		snprintf(name, sizeof(name), "log%u", k);
		fds[k] = openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		REQUIRE(fds[k] >= 0);
		struct io_step *s = io_plan_add(&plan, IO_STEP_WRITE, fds[k]);
		s->buf = entry;
		s->len = sizeof(entry);
		s->offset = 64 * k;
		s->link = true;
		(void)io_plan_add(&plan, IO_STEP_FDATASYNC, fds[k]);
	}
	struct script sc = { .plans = &plan, .count = 1 };
	store_io_init(io, ring);
	store_io_add(io, job, script_plan, script_advance, &sc);
	REQUIRE(store_io_kick(io, job));
	run_ring(ring, io, &job, 1);
	REQUIRE(sc.advanced == 1 && sc.seen[0].count == IO_PLAN_STEPS_MAX);
	for (uint32_t i = 0; i < IO_PLAN_STEPS_MAX; i++)
		CHECK_EQ_U(sc.seen[0].result[i], i % 2 ? 0 : (int)sizeof(entry));
	/* fallocate: what the blocking executor says, the ring says. */
	io_plan_clear(&plan);
	struct io_step *s = io_plan_add(&plan, IO_STEP_FALLOCATE, fds[0]);
	s->len = 1 << 20;
	struct io_plan blocking = plan;
	sc = (struct script){ .plans = &plan, .count = 1 };
	REQUIRE(store_io_kick(io, job));
	run_ring(ring, io, &job, 1);
	io_plan_run_blocking(&blocking);
	CHECK_EQ_U(sc.seen[0].result[0], blocking.result[0]);
	CHECK(blocking.result[0] == 0 || blocking.result[0] == -EOPNOTSUPP);
	for (uint32_t k = 0; k < IO_PLAN_STEPS_MAX / 2; k++)
		close(fds[k]);
	close(dfd);
}

/* The quarantine copy on the ring, its mkdirat included. */
struct quarantine_job {
	struct segment_quarantine q;
};

static bool quarantine_plan(void *owner, struct io_plan *p)
{
	return segment_quarantine_plan(&((struct quarantine_job *)owner)->q, p);
}

static void quarantine_advance(void *owner, const struct io_plan *p)
{
	segment_quarantine_advance(&((struct quarantine_job *)owner)->q, p);
}

static void test_quarantine_on_ring(struct io_uring *ring, struct store_io *io,
				    struct store_io_job *job)
{
	int dfd = dir_open("shard");
	static uint8_t bytes[10000];
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(i * 13);
	struct quarantine_job qj;
	store_io_init(io, ring);
	store_io_add(io, job, quarantine_plan, quarantine_advance, &qj);
	for (int round = 0; round < 2; round++) {
		segment_quarantine_start(&qj.q, dfd, 4, 8192, bytes, sizeof(bytes), false);
		REQUIRE(store_io_kick(io, job));
		run_ring(ring, io, &job, 1);
		REQUIRE(segment_quarantine_done(&qj.q));
		if (round == 0) {
			CHECK(qj.q.error == 0 && qj.q.dir_made);
		} else { /* the copy is there: never replaced at run time */
			CHECK(qj.q.error == -EEXIST && qj.q.failed_op == IO_STEP_OPENAT);
		}
	}
	char path[256];
	snprintf(path, sizeof(path), "%s/shard/quarantine/00000004-8192.bad", root);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0);
	static uint8_t back[sizeof(bytes) + 1];
	CHECK(read(fd, back, sizeof(back)) == (ssize_t)sizeof(bytes));
	CHECK(memcmp(back, bytes, sizeof(bytes)) == 0);
	close(fd);
	close(dfd);
}

int main(void)
{
	struct io_uring ring;
	struct ring_info info;
	int rc = ring_init(&ring, 64, &info);
	if (rc == -ENOSYS || rc == -EPERM) {
		fprintf(stderr, "io_uring unavailable (%d): skipped\n", rc);
		return 77;
	}
	REQUIRE(rc == 0);
	REQUIRE(mkdtemp(root) != NULL);
	static struct store_io io;
	static struct store_io_job job;
	test_steps_agree(&ring, &io, &job);
	test_full_plan(&ring, &io, &job);
	test_quarantine_on_ring(&ring, &io, &job);
	ring_exit(&ring);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	REQUIRE(system(cmd) == 0);
	return test_main_end("store_io");
}
