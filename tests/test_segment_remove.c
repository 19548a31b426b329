/*
 * test_segment_remove.c - the removal of a segment and its log: the log's
 * unlink comes after the segment's unlink and a directory fsync, linked to
 * that fsync, so a crash never leaves a segment without its log; a failed
 * unlink or fsync keeps the log; then the blocking executor on real files.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../storage/segment_remove.h"
#include "test.h"

static void answer(struct segment_remove *r, struct io_plan *p, int r0, int r1)
{
	p->result[0] = r0;
	p->result[1] = r1;
	p->pending = 0;
	segment_remove_advance(r, p);
}

static void test_order(void)
{
	struct segment_remove r;
	struct io_plan p;
	segment_remove_start(&r, 5, 12);
	REQUIRE(segment_remove_plan(&r, &p));
	CHECK(p.count == 1 && p.step[0].op == IO_STEP_UNLINKAT && p.step[0].fd == 5 &&
	      strcmp(p.step[0].path, "00000012.seg") == 0 && !p.step[0].link);
	answer(&r, &p, 0, 0);
	REQUIRE(segment_remove_plan(&r, &p));
	CHECK(p.count == 2 && p.step[0].op == IO_STEP_FSYNC && p.step[0].fd == 5 &&
	      p.step[0].link);
	CHECK(p.step[1].op == IO_STEP_UNLINKAT && strcmp(p.step[1].path, "00000012.dlog") == 0);
	answer(&r, &p, 0, 0);
	CHECK(!segment_remove_plan(&r, &p));
	CHECK(r.error == 0 && !r.log_kept);
}

static void test_failures(void)
{
	struct segment_remove r;
	struct io_plan p;
	/* The segment already gone: the log goes on the same path. */
	segment_remove_start(&r, 5, 12);
	REQUIRE(segment_remove_plan(&r, &p));
	answer(&r, &p, -ENOENT, 0);
	REQUIRE(segment_remove_plan(&r, &p));
	answer(&r, &p, 0, -ENOENT);
	CHECK(!segment_remove_plan(&r, &p) && r.error == 0);
	/* The segment's unlink fails: the log is not touched. */
	segment_remove_start(&r, 5, 12);
	REQUIRE(segment_remove_plan(&r, &p));
	answer(&r, &p, -EIO, 0);
	CHECK(!segment_remove_plan(&r, &p));
	CHECK(r.error == -EIO && r.failed_op == IO_STEP_UNLINKAT && r.log_kept);
	/* The directory fsync fails: the linked unlink was cancelled. */
	segment_remove_start(&r, 5, 12);
	REQUIRE(segment_remove_plan(&r, &p));
	answer(&r, &p, 0, 0);
	REQUIRE(segment_remove_plan(&r, &p));
	answer(&r, &p, -EIO, -ECANCELED);
	CHECK(!segment_remove_plan(&r, &p));
	CHECK(r.error == -EIO && r.failed_op == IO_STEP_FSYNC && r.log_kept);
}

static void test_blocking(void)
{
	char dir[] = "/tmp/ringmx-segment-remove-XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	REQUIRE(dfd >= 0);
	int fd = openat(dfd, "00000003.seg", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	close(fd);
	fd = openat(dfd, "00000003.dlog", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	close(fd);
	struct segment_remove r;
	struct io_plan p;
	segment_remove_start(&r, dfd, 3);
	while (segment_remove_plan(&r, &p)) {
		io_plan_run_blocking(&p);
		segment_remove_advance(&r, &p);
	}
	struct stat st;
	CHECK(r.error == 0);
	CHECK(fstatat(dfd, "00000003.seg", &st, 0) != 0 && errno == ENOENT);
	CHECK(fstatat(dfd, "00000003.dlog", &st, 0) != 0 && errno == ENOENT);
	close(dfd);
	CHECK(rmdir(dir) == 0);
}

int main(void)
{
	test_order();
	test_failures();
	test_blocking();
	return test_main_end("segment_remove");
}
