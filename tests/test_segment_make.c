/*
 * test_segment_make.c - the segment-making state machine fed results by
 * hand: the plans it makes on the way (O_EXCL, O_DIRECT and its fallback,
 * header block first, reopen, log, sync), fallocate answering EOPNOTSUPP
 * (the zero-fill allocates: the segment is made) and ENOSPC (what was made
 * is closed and unlinked), an existing name (EEXIST: left alone), a failed
 * sync after the log was made; then the blocking executor in a temporary
 * directory: the file's bytes, and O_EXCL keeping an existing segment.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../storage/segment_make.h"
#include "test.h"

#define SIZE_BYTES (SEGMENT_HEADER_BYTES + 3 * 8192)
#define ZEROS_BYTES 8192

static _Alignas(4096) uint8_t header_block[SEGMENT_HEADER_BYTES];
static _Alignas(4096) uint8_t zeros[ZEROS_BYTES];

static void start(struct segment_make *m, int dir_fd, bool sync, bool with_log)
{
	struct segment_make_config cfg = {
		.dir_fd = dir_fd, .size_bytes = SIZE_BYTES, .header = header_block,
		.zeros = zeros, .zeros_bytes = ZEROS_BYTES, .sync = sync, .with_log = with_log,
	};
	segment_make_start(m, &cfg, 9);
}

/* Plans once, checks the first step's op, and answers every step with results. */
static bool step(struct segment_make *m, struct io_plan *p, enum io_step_op op, int r0, int r1)
{
	if (!segment_make_plan(m, p))
		return false;
	CHECK_EQ_U(p->step[0].op, op);
	for (uint32_t i = 0; i < p->count; i++) {
		p->result[i] = i == 0 ? r0 : r1;
		p->pending--;
	}
	segment_make_advance(m, p);
	return true;
}

/* Answers FILL writes in full until the state leaves FILL; returns the count. */
static unsigned fill(struct segment_make *m, struct io_plan *p)
{
	unsigned writes = 0;
	while (m->state == SEGMENT_MAKE_FILL) {
		REQUIRE(segment_make_plan(m, p));
		CHECK_EQ_U(p->step[0].op, IO_STEP_WRITE);
		CHECK_EQ_U(p->step[0].offset, m->offset);
		if (writes == 0)
			CHECK(p->step[0].buf == header_block && p->step[0].len == SEGMENT_HEADER_BYTES);
		p->result[0] = (int)p->step[0].len;
		p->pending = 0;
		segment_make_advance(m, p);
		writes++;
	}
	return writes;
}

static void test_whole_path(void)
{
	struct segment_make m;
	struct io_plan p;
	start(&m, 3, true, true);
	REQUIRE(segment_make_plan(&m, &p));
	CHECK_EQ_U(p.step[0].op, IO_STEP_OPENAT);
	CHECK((p.step[0].flags & (O_EXCL | O_CREAT | O_DIRECT)) == (O_EXCL | O_CREAT | O_DIRECT));
	CHECK(strcmp(p.step[0].path, "00000009.seg") == 0);
	p.result[0] = 20;
	p.pending = 0;
	segment_make_advance(&m, &p);
	CHECK(step(&m, &p, IO_STEP_FALLOCATE, 0, 0));
	CHECK_EQ_U(fill(&m, &p), 1 + 3);
	CHECK(segment_make_plan(&m, &p) && p.count == 2 && p.step[0].op == IO_STEP_CLOSE &&
	      p.step[0].fd == 20 && p.step[0].link && p.step[1].op == IO_STEP_OPENAT &&
	      !(p.step[1].flags & (O_DIRECT | O_CREAT)));
	p.result[0] = 0;
	p.result[1] = 21;
	p.pending = 0;
	segment_make_advance(&m, &p);
	CHECK(step(&m, &p, IO_STEP_OPENAT, 22, 0)); /* the log */
	CHECK(step(&m, &p, IO_STEP_FDATASYNC, 0, 0));
	CHECK(segment_make_done(&m));
	CHECK(!segment_make_plan(&m, &p));
	CHECK(m.error == 0 && m.fd == 21 && m.log_fd == 22 && m.log_error == 0);
}

/* A file system without fallocate (ext4 on a file without extents, NFS, ...):
 * the segment is made all the same, by the zero-fill. */
static void test_fallocate_unsupported(void)
{
	struct segment_make m;
	struct io_plan p;
	start(&m, 3, false, false);
	CHECK(step(&m, &p, IO_STEP_OPENAT, 20, 0));
	CHECK(step(&m, &p, IO_STEP_FALLOCATE, -EOPNOTSUPP, 0));
	CHECK_EQ_U(fill(&m, &p), 4);
	CHECK(step(&m, &p, IO_STEP_CLOSE, 0, 21));
	CHECK(segment_make_done(&m));
	CHECK(m.error == 0 && m.fd == 21 && m.fallocate_unsupported);
}

/* A full disk: the half-made file is closed and unlinked. */
static void test_fallocate_enospc(void)
{
	struct segment_make m;
	struct io_plan p;
	start(&m, 3, true, true);
	CHECK(step(&m, &p, IO_STEP_OPENAT, 20, 0));
	CHECK(step(&m, &p, IO_STEP_FALLOCATE, -ENOSPC, 0));
	REQUIRE(segment_make_plan(&m, &p));
	CHECK(p.count == 2 && p.step[0].op == IO_STEP_CLOSE && p.step[0].fd == 20 &&
	      p.step[1].op == IO_STEP_UNLINKAT && strcmp(p.step[1].path, "00000009.seg") == 0);
	p.result[0] = p.result[1] = 0;
	p.pending = 0;
	segment_make_advance(&m, &p);
	CHECK(segment_make_done(&m));
	CHECK(m.error == -ENOSPC && m.fd == -1 && m.failed_op == IO_STEP_FALLOCATE);
}

/* No O_DIRECT (EINVAL): the name the open may have made is removed and the
 * open retried buffered, still exclusive; no reopen after the fill. */
static void test_no_direct(void)
{
	struct segment_make m;
	struct io_plan p;
	start(&m, 3, false, false);
	CHECK(step(&m, &p, IO_STEP_OPENAT, -EINVAL, 0));
	CHECK(step(&m, &p, IO_STEP_UNLINKAT, 0, 0));
	REQUIRE(segment_make_plan(&m, &p));
	CHECK((p.step[0].flags & (O_EXCL | O_DIRECT)) == O_EXCL);
	p.result[0] = 20;
	p.pending = 0;
	segment_make_advance(&m, &p);
	CHECK(step(&m, &p, IO_STEP_FALLOCATE, 0, 0));
	fill(&m, &p);
	CHECK(segment_make_done(&m) && m.fd == 20 && m.error == 0);
}

/* An existing name is not ours: no cleanup touches it. */
static void test_exists(void)
{
	struct segment_make m;
	struct io_plan p;
	start(&m, 3, false, true);
	CHECK(step(&m, &p, IO_STEP_OPENAT, -EEXIST, 0));
	CHECK(!segment_make_plan(&m, &p));
	CHECK(segment_make_done(&m) && m.error == -EEXIST && m.fd == -1);
}

/* The sync fails after the log was made: both closed, both unlinked. */
static void test_sync_fails(void)
{
	struct segment_make m;
	struct io_plan p;
	start(&m, 3, true, true);
	CHECK(step(&m, &p, IO_STEP_OPENAT, -EINVAL, 0));
	CHECK(step(&m, &p, IO_STEP_UNLINKAT, -ENOENT, 0));
	CHECK(step(&m, &p, IO_STEP_OPENAT, 20, 0));
	CHECK(step(&m, &p, IO_STEP_FALLOCATE, 0, 0));
	fill(&m, &p);
	CHECK(step(&m, &p, IO_STEP_OPENAT, 22, 0));
	CHECK(step(&m, &p, IO_STEP_FDATASYNC, -EIO, -ECANCELED));
	REQUIRE(segment_make_plan(&m, &p));
	CHECK_EQ_U(p.count, 4);
	unsigned unlinks = 0, closes = 0;
	for (uint32_t i = 0; i < p.count; i++) {
		unlinks += p.step[i].op == IO_STEP_UNLINKAT;
		closes += p.step[i].op == IO_STEP_CLOSE;
		p.result[i] = 0;
	}
	CHECK(unlinks == 2 && closes == 2);
	p.pending = 0;
	segment_make_advance(&m, &p);
	CHECK(segment_make_done(&m) && m.error == -EIO && m.fd == -1 && m.log_fd == -1);
}

static void test_blocking(void)
{
	char dir[] = "/tmp/ringmx-segment-make-XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	REQUIRE(dfd >= 0);
	segment_header_encode(header_block, 1, 9, 77);
	struct segment_make m;
	start(&m, dfd, true, true);
	segment_make_run_blocking(&m);
	CHECK(m.error == 0 && m.fd >= 0 && m.log_fd >= 0);
	struct stat st;
	CHECK(fstat(m.fd, &st) == 0 && (uint64_t)st.st_size == SIZE_BYTES);
	static uint8_t image[SIZE_BYTES];
	CHECK(pread(m.fd, image, SIZE_BYTES, 0) == SIZE_BYTES);
	CHECK(memcmp(image, header_block, SEGMENT_HEADER_BYTES) == 0);
	CHECK(segment_image_unused(image, SIZE_BYTES));
	CHECK((fcntl(m.fd, F_GETFL) & O_DIRECT) == 0);
	int first_fd = m.fd;

	/* O_EXCL: making it again fails and leaves the first one whole. */
	start(&m, dfd, true, true);
	segment_make_run_blocking(&m);
	CHECK(m.error == -EEXIST && m.fd == -1);
	CHECK(fstatat(dfd, "00000009.seg", &st, 0) == 0 && (uint64_t)st.st_size == SIZE_BYTES);
	CHECK(fstatat(dfd, "00000009.dlog", &st, 0) == 0);

	close(first_fd);
	CHECK(unlinkat(dfd, "00000009.seg", 0) == 0);
	CHECK(unlinkat(dfd, "00000009.dlog", 0) == 0);
	close(dfd);
	CHECK(rmdir(dir) == 0);
}

int main(void)
{
	test_whole_path();
	test_fallocate_unsupported();
	test_fallocate_enospc();
	test_no_direct();
	test_exists();
	test_sync_fails();
	test_blocking();
	return test_main_end("segment_make");
}
