/*
 * test_segment_quarantine.c - the quarantine copy as plans: their order
 * and shape, an existing quarantine/ (no directory fsync for the shard), an
 * existing copy (replaced at start-up, refused at run time), a short write
 * that goes on where it stopped, a failure at every step closing exactly
 * what is open; then the blocking executor on real files, and descriptors
 * never leaked.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../storage/segment_quarantine.h"
#include "test.h"

#define DIR_FD 5
#define QDIR_FD 40
#define FILE_FD 41

static void answer(struct segment_quarantine *q, struct io_plan *p, int r0, int r1)
{
	p->result[0] = r0;
	p->result[1] = r1;
	p->pending = 0;
	segment_quarantine_advance(q, p);
}

static const uint8_t bytes[300] = { 1, 2, 3 };

static void test_plans(void)
{
	struct segment_quarantine q;
	struct io_plan p;
	segment_quarantine_start(&q, DIR_FD, 7, 4096, bytes, sizeof(bytes), false);
	CHECK(strcmp(q.path, "quarantine/00000007-4096.bad") == 0);
	REQUIRE(segment_quarantine_plan(&q, &p));
	CHECK(p.count == 1 && p.step[0].op == IO_STEP_MKDIRAT && p.step[0].fd == DIR_FD &&
	      strcmp(p.step[0].path, "quarantine") == 0 && p.step[0].mode == 0700);
	answer(&q, &p, 0, 0); /* made it */
	REQUIRE(segment_quarantine_plan(&q, &p));
	CHECK(p.count == 2 && p.step[0].op == IO_STEP_OPENAT && !p.step[0].link &&
	      strcmp(p.step[0].path, "quarantine") == 0 &&
	      p.step[0].flags == (O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	CHECK(p.step[1].op == IO_STEP_OPENAT && p.step[1].fd == DIR_FD &&
	      strcmp(p.step[1].path, q.path) == 0 && p.step[1].mode == 0600 &&
	      p.step[1].flags == (O_WRONLY | O_CREAT | O_CLOEXEC | O_EXCL));
	answer(&q, &p, QDIR_FD, FILE_FD);
	REQUIRE(segment_quarantine_plan(&q, &p));
	CHECK(p.count == 2 && p.step[0].op == IO_STEP_WRITE && p.step[0].fd == FILE_FD &&
	      p.step[0].link && p.step[0].buf == bytes && p.step[0].len == sizeof(bytes) &&
	      p.step[0].offset == 0);
	CHECK(p.step[1].op == IO_STEP_FDATASYNC && p.step[1].fd == FILE_FD && !p.step[1].link);
	answer(&q, &p, 100, -ECANCELED); /* short: the rest next */
	REQUIRE(segment_quarantine_plan(&q, &p));
	CHECK(p.step[0].op == IO_STEP_WRITE && p.step[0].buf == bytes + 100 &&
	      p.step[0].len == sizeof(bytes) - 100 && p.step[0].offset == 100);
	answer(&q, &p, (int)sizeof(bytes) - 100, 0);
	REQUIRE(segment_quarantine_plan(&q, &p));
	CHECK(p.count == 2 && p.step[0].op == IO_STEP_CLOSE && p.step[0].fd == FILE_FD &&
	      p.step[1].op == IO_STEP_FSYNC && p.step[1].fd == QDIR_FD);
	answer(&q, &p, 0, 0);
	REQUIRE(segment_quarantine_plan(&q, &p));
	CHECK(p.count == 2 && p.step[0].op == IO_STEP_CLOSE && p.step[0].fd == QDIR_FD &&
	      p.step[1].op == IO_STEP_FSYNC && p.step[1].fd == DIR_FD);
	answer(&q, &p, 0, 0);
	CHECK(segment_quarantine_done(&q) && q.error == 0 && !segment_quarantine_plan(&q, &p));

	/* quarantine/ was there: no fsync of the shard directory; start-up
	 * replaces an earlier copy. */
	segment_quarantine_start(&q, DIR_FD, 7, 4096, bytes, 0, true);
	REQUIRE(segment_quarantine_plan(&q, &p));
	answer(&q, &p, -EEXIST, 0);
	REQUIRE(segment_quarantine_plan(&q, &p));
	CHECK(p.step[1].flags == (O_WRONLY | O_CREAT | O_CLOEXEC | O_TRUNC));
	answer(&q, &p, QDIR_FD, FILE_FD);
	REQUIRE(segment_quarantine_plan(&q, &p));
	CHECK(p.step[0].op == IO_STEP_WRITE && p.step[0].len == 0);
	answer(&q, &p, 0, 0); /* nothing to write is no short write */
	REQUIRE(segment_quarantine_plan(&q, &p));
	answer(&q, &p, 0, 0);
	REQUIRE(segment_quarantine_plan(&q, &p));
	CHECK(p.count == 1 && p.step[0].op == IO_STEP_CLOSE && p.step[0].fd == QDIR_FD);
	answer(&q, &p, 0, 0);
	CHECK(segment_quarantine_done(&q) && q.error == 0);
}

/* Runs the machine with the results of plan k taken from r[k] (r[k][0],
 * r[k][1]); returns how many plans ran and the fds closed in cleanup. */
static unsigned run_scripted(struct segment_quarantine *q, const int (*r)[2], unsigned n,
			     int *closed, unsigned *nclosed)
{
	struct io_plan p;
	unsigned k = 0;
	*nclosed = 0;
	while (segment_quarantine_plan(q, &p)) {
		if (q->state == SEGMENT_QUARANTINE_CLEANUP) {
			for (uint32_t i = 0; i < p.count; i++) {
				CHECK(p.step[i].op == IO_STEP_CLOSE);
				closed[(*nclosed)++] = p.step[i].fd;
			}
			answer(q, &p, 0, 0);
			continue;
		}
		REQUIRE(k < n);
		answer(q, &p, r[k][0], r[k][1]);
		k++;
	}
	return k;
}

static void test_failures(void)
{
	struct segment_quarantine q;
	int closed[4];
	unsigned nclosed;
	/* mkdirat refused: nothing open, nothing to close. */
	static const int mkdir_fails[][2] = { { -EACCES, 0 } };
	segment_quarantine_start(&q, DIR_FD, 1, 8, bytes, 10, false);
	CHECK(run_scripted(&q, mkdir_fails, 1, closed, &nclosed) == 1 && nclosed == 0);
	CHECK(q.error == -EACCES && q.failed_op == IO_STEP_MKDIRAT);
	/* The copy exists (run time): quarantine/ was opened, and is closed. */
	static const int exists[][2] = { { -EEXIST, 0 }, { QDIR_FD, -EEXIST } };
	segment_quarantine_start(&q, DIR_FD, 1, 8, bytes, 10, false);
	CHECK(run_scripted(&q, exists, 2, closed, &nclosed) == 2);
	CHECK(nclosed == 1 && closed[0] == QDIR_FD);
	CHECK(q.error == -EEXIST && q.failed_op == IO_STEP_OPENAT);
	/* quarantine/ cannot be opened, the file can: the file is closed. */
	static const int qdir_fails[][2] = { { 0, 0 }, { -EMFILE, FILE_FD } };
	segment_quarantine_start(&q, DIR_FD, 1, 8, bytes, 10, false);
	CHECK(run_scripted(&q, qdir_fails, 2, closed, &nclosed) == 2);
	CHECK(nclosed == 1 && closed[0] == FILE_FD && q.error == -EMFILE);
	/* The write fails (its sync cancelled); the write makes no progress;
	 * the sync fails: both stay open until cleanup closes them. */
	static const int write_fails[][2] = { { 0, 0 }, { QDIR_FD, FILE_FD }, { -ENOSPC, -ECANCELED } };
	static const int write_stalls[][2] = { { 0, 0 }, { QDIR_FD, FILE_FD }, { 0, -ECANCELED } };
	static const int sync_fails[][2] = { { 0, 0 }, { QDIR_FD, FILE_FD }, { 10, -EIO } };
	const int (*cases[3])[2] = { write_fails, write_stalls, sync_fails };
	const int want[3] = { -ENOSPC, -EIO, -EIO };
	const enum io_step_op want_op[3] = { IO_STEP_WRITE, IO_STEP_WRITE, IO_STEP_FDATASYNC };
	for (int k = 0; k < 3; k++) {
		segment_quarantine_start(&q, DIR_FD, 1, 8, bytes, 10, false);
		CHECK(run_scripted(&q, cases[k], 3, closed, &nclosed) == 3);
		CHECK(nclosed == 2 && closed[0] == FILE_FD && closed[1] == QDIR_FD);
		CHECK(q.error == want[k] && q.failed_op == want_op[k]);
	}
	/* Closing the file fails: it is gone anyway; quarantine/ is closed. */
	static const int close_fails[][2] = { { 0, 0 }, { QDIR_FD, FILE_FD }, { 10, 0 }, { -EIO, 0 } };
	segment_quarantine_start(&q, DIR_FD, 1, 8, bytes, 10, false);
	CHECK(run_scripted(&q, close_fails, 4, closed, &nclosed) == 4);
	CHECK(nclosed == 1 && closed[0] == QDIR_FD && q.error == -EIO &&
	      q.failed_op == IO_STEP_CLOSE);
	/* The directory fsyncs fail: quarantine/'s, then the shard's. */
	static const int qsync_fails[][2] = { { 0, 0 }, { QDIR_FD, FILE_FD }, { 10, 0 }, { 0, -EIO } };
	segment_quarantine_start(&q, DIR_FD, 1, 8, bytes, 10, false);
	CHECK(run_scripted(&q, qsync_fails, 4, closed, &nclosed) == 4);
	CHECK(nclosed == 1 && closed[0] == QDIR_FD && q.error == -EIO &&
	      q.failed_op == IO_STEP_FSYNC);
	static const int dsync_fails[][2] = { { 0, 0 }, { QDIR_FD, FILE_FD }, { 10, 0 }, { 0, 0 },
					      { 0, -EIO } };
	segment_quarantine_start(&q, DIR_FD, 1, 8, bytes, 10, false);
	CHECK(run_scripted(&q, dsync_fails, 5, closed, &nclosed) == 5);
	CHECK(nclosed == 0 && q.error == -EIO && q.failed_op == IO_STEP_FSYNC);
}

static unsigned open_fds(void)
{
	unsigned n = 0;
	DIR *d = opendir("/proc/self/fd");
	REQUIRE(d != NULL);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

static void test_blocking(void)
{
	char dir[] = "/tmp/ringmx-segment-quarantine-XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	REQUIRE(dfd >= 0);
	unsigned fds = open_fds();
	uint8_t data[5000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	/* Start-up: made, and made again over the first copy. */
	REQUIRE(segment_quarantine(dfd, 9, 65536, data, 100) == 0);
	REQUIRE(segment_quarantine(dfd, 9, 65536, data, sizeof(data)) == 0);
	char path[256];
	snprintf(path, sizeof(path), "%s/quarantine/00000009-65536.bad", dir);
	struct stat sb;
	REQUIRE(stat(path, &sb) == 0);
	CHECK_EQ_U(sb.st_size, sizeof(data));
	CHECK_EQ_U(sb.st_mode & 0777, 0600);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0);
	uint8_t back[sizeof(data)];
	CHECK(read(fd, back, sizeof(back)) == (ssize_t)sizeof(back));
	CHECK(memcmp(back, data, sizeof(data)) == 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/quarantine", dir);
	REQUIRE(stat(path, &sb) == 0);
	CHECK_EQ_U(sb.st_mode & 0777, 0700);
	/* Run time, the same plans through the blocking executor: an existing
	 * copy is kept, a new one made. */
	struct segment_quarantine q;
	struct io_plan p;
	segment_quarantine_start(&q, dfd, 9, 65536, data, 10, false);
	while (segment_quarantine_plan(&q, &p)) {
		io_plan_run_blocking(&p);
		segment_quarantine_advance(&q, &p);
	}
	CHECK(q.error == -EEXIST && q.failed_op == IO_STEP_OPENAT);
	snprintf(path, sizeof(path), "%s/quarantine/00000009-65536.bad", dir);
	REQUIRE(stat(path, &sb) == 0);
	CHECK_EQ_U(sb.st_size, sizeof(data));
	segment_quarantine_start(&q, dfd, 9, 131072, data, 10, false);
	while (segment_quarantine_plan(&q, &p)) {
		io_plan_run_blocking(&p);
		segment_quarantine_advance(&q, &p);
	}
	CHECK(q.error == 0);
	snprintf(path, sizeof(path), "%s/quarantine/00000009-131072.bad", dir);
	REQUIRE(stat(path, &sb) == 0);
	CHECK_EQ_U(sb.st_size, 10);
	/* Not a directory where quarantine/ should be. */
	CHECK(unlink(path) == 0);
	snprintf(path, sizeof(path), "%s/quarantine/00000009-65536.bad", dir);
	CHECK(unlink(path) == 0);
	snprintf(path, sizeof(path), "%s/quarantine", dir);
	CHECK(rmdir(path) == 0);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	close(fd);
	CHECK(segment_quarantine(dfd, 1, 8, data, 10) == -ENOTDIR);
	CHECK(unlink(path) == 0);
	CHECK_EQ_U(open_fds(), fds); /* nothing leaked on any path */
	close(dfd);
	CHECK(rmdir(dir) == 0);
}

int main(void)
{
	test_plans();
	test_failures();
	test_blocking();
	return test_main_end("segment_quarantine");
}
