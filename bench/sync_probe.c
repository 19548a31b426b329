/*
 * sync_probe.c - how long does it take to make one write durable here?
 *
 *   sync_probe DIR [ITERATIONS]
 *
 * On scratch files in DIR, times sequential 4 KiB and 64 KiB writes (and
 * 256 KiB and 1 MiB, group-commit sized), each made durable before the
 * next, five ways:
 *   a  append to an empty file + fdatasync (size and extents change)
 *   b  fallocate (unwritten extents) + overwrite + fdatasync
 *   c  pre-zeroed file (zeros really written) + overwrite + fdatasync
 *   d  pre-zeroed file + pwritev2(RWF_DSYNC)
 *   e  pre-zeroed file opened O_DIRECT|O_DSYNC + pwrite
 * and prints median, p90 and mean in microseconds. This is what chose the
 * store's pre-zeroed segments (c): a commit overwrites written blocks, so
 * fdatasync flushes data only, no metadata. Standalone; blocks by design.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define ITERATIONS_DEFAULT 200
#define ITERATIONS_MAX 100000
#define ZERO_CHUNK_BYTES (1u << 20)
#define DIRECT_ALIGN_BYTES 4096
#define LARGE_FILE_MAX_BYTES (64ull << 20) /* per method, for the large sizes */

enum method { APPEND, FALLOCATED, PREZEROED, PREZEROED_RWF_DSYNC, DIRECT_DSYNC, METHOD_COUNT };

static const char *const method_name[METHOD_COUNT] = {
	"a append + fdatasync",
	"b fallocate + overwrite + fdatasync",
	"c pre-zeroed + overwrite + fdatasync",
	"d pre-zeroed + pwritev2 RWF_DSYNC",
	"e pre-zeroed, O_DIRECT|O_DSYNC",
};

static void die(const char *what)
{
	fprintf(stderr, "sync_probe: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		die("clock_gettime");
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void write_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("pwrite");
		p += n;
		len -= (size_t)n;
		off += n;
	}
}

/* Prepares the scratch file for a method; returns an fd for the timed loop. */
static int prepare(const char *path, enum method m, uint64_t file_bytes)
{
	unlink(path);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		die("create scratch file");
	if (m == FALLOCATED && fallocate(fd, 0, 0, (off_t)file_bytes) != 0)
		die("fallocate");
	if (m == PREZEROED || m == PREZEROED_RWF_DSYNC || m == DIRECT_DSYNC) {
		if (fallocate(fd, 0, 0, (off_t)file_bytes) != 0 && errno != EOPNOTSUPP)
			die("fallocate");
		char *zeros = calloc(1, ZERO_CHUNK_BYTES);
		if (zeros == NULL)
			die("calloc");
		for (uint64_t off = 0; off < file_bytes; off += ZERO_CHUNK_BYTES) {
			uint64_t n = file_bytes - off < ZERO_CHUNK_BYTES ? file_bytes - off
									 : ZERO_CHUNK_BYTES;
			write_all(fd, zeros, (size_t)n, (off_t)off);
		}
		free(zeros);
	}
	if (fdatasync(fd) != 0 || fsync(fd) != 0)
		die("fsync after preparing");
	if (m == DIRECT_DSYNC) {
		close(fd);
		fd = open(path, O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC);
		if (fd < 0)
			die("open O_DIRECT|O_DSYNC");
	}
	return fd;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* One timed durable write of buf at off, the way method m does it. */
static uint64_t timed_write(int fd, enum method m, void *buf, size_t write_bytes, off_t off)
{
	uint64_t t0 = now_ns();
	switch (m) {
	case APPEND:
	case FALLOCATED:
	case PREZEROED:
		write_all(fd, buf, write_bytes, off);
		if (fdatasync(fd) != 0)
			die("fdatasync");
		break;
	case PREZEROED_RWF_DSYNC: {
		struct iovec iov = { buf, write_bytes };
		if (pwritev2(fd, &iov, 1, off, RWF_DSYNC) != (ssize_t)write_bytes)
			die("pwritev2 RWF_DSYNC");
		break;
	}
	case DIRECT_DSYNC:
		if (pwrite(fd, buf, write_bytes, off) != (ssize_t)write_bytes)
			die("pwrite O_DIRECT");
		break;
	case METHOD_COUNT:
		abort();
	}
	return now_ns() - t0;
}

/*
 * All five methods run interleaved, one write each per round, in an order
 * that rotates every round: the disk is shared, and background noise then
 * lands on every method alike instead of on whichever ran during it.
 */
static void run_size(const char *dir, size_t write_bytes, int iterations, void *buf,
		     uint64_t *lat_ns[METHOD_COUNT])
{
	uint64_t file_bytes = (uint64_t)write_bytes * (uint64_t)iterations;
	char path[METHOD_COUNT][4200];
	int fd[METHOD_COUNT];
	for (int m = 0; m < METHOD_COUNT; m++) {
		snprintf(path[m], sizeof(path[m]), "%s/sync_probe.%ld.%d.tmp", dir, (long)getpid(), m);
		fd[m] = prepare(path[m], (enum method)m, file_bytes);
	}
	for (int i = 0; i < iterations; i++) {
		off_t off = (off_t)((uint64_t)i * write_bytes);
		memset(buf, 'a' + i % 26, write_bytes);
		for (int k = 0; k < METHOD_COUNT; k++) {
			int m = (i + k) % METHOD_COUNT;
			lat_ns[m][i] = timed_write(fd[m], (enum method)m, buf, write_bytes, off);
		}
	}
	for (int m = 0; m < METHOD_COUNT; m++) {
		close(fd[m]);
		unlink(path[m]);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3 || strcmp(argv[1], "-h") == 0) {
		fprintf(stderr, "usage: sync_probe DIR [ITERATIONS]\n");
		return 2;
	}
	int iterations = argc == 3 ? atoi(argv[2]) : ITERATIONS_DEFAULT;
	if (iterations < 5 || iterations > ITERATIONS_MAX) {
		fprintf(stderr, "sync_probe: ITERATIONS must be 5..%d\n", ITERATIONS_MAX);
		return 2;
	}
	if (strlen(argv[1]) > 4000) {
		fprintf(stderr, "sync_probe: directory name too long\n");
		return 2;
	}
	/* 4 KiB and 64 KiB as asked; 256 KiB and 1 MiB show what a larger
	 * group commit costs (fewer rounds there: the files stay small). */
	static const size_t sizes[] = { 4096, 65536, 262144, 1048576 };
	void *buf = NULL;
	if (posix_memalign(&buf, DIRECT_ALIGN_BYTES, 1048576) != 0)
		die("posix_memalign");
	uint64_t *lat[METHOD_COUNT];
	for (int m = 0; m < METHOD_COUNT; m++) {
		lat[m] = calloc((size_t)iterations, sizeof(*lat[m]));
		if (lat[m] == NULL)
			die("calloc");
	}

	printf("%-40s %8s %10s %10s %10s\n", "method", "write", "median_us", "p90_us", "mean_us");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int rounds = iterations;
		if ((uint64_t)rounds * sizes[s] > LARGE_FILE_MAX_BYTES)
			rounds = (int)(LARGE_FILE_MAX_BYTES / sizes[s]);
		run_size(argv[1], sizes[s], rounds, buf, lat);
		for (int m = 0; m < METHOD_COUNT; m++) {
			uint64_t *l = lat[m];
			uint64_t sum = 0;
			for (int i = 0; i < rounds; i++)
				sum += l[i];
			qsort(l, (size_t)rounds, sizeof(*l), compare_u64);
			printf("%-40s %7zuK %10.1f %10.1f %10.1f\n", method_name[m], sizes[s] / 1024,
			       l[rounds / 2] / 1000.0, l[rounds * 9 / 10] / 1000.0,
			       (double)sum / rounds / 1000.0);
		}
		fflush(stdout);
	}
	for (int m = 0; m < METHOD_COUNT; m++)
		free(lat[m]);
	free(buf);
	return 0;
}
