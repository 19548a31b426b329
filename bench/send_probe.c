/*
 * send_probe.c - does sending stored messages without copying them pay here?
 *
 *   send_probe DIR [ROUNDS]
 *
 * Writes a 256 MiB file of records in DIR (unlinked at once, kept open, page
 * cache warm, like a store segment), opens one TCP connection on 127.0.0.1
 * to a receiver thread that reads and discards with a 1 MiB buffer, and then
 * sends message bodies of 1 KiB, 32 KiB, 256 KiB and 1 MiB taken from the
 * file, one message in flight at a time (as the forwarder does per upstream
 * connection), six ways:
 *   a   io_uring read into a buffer, then io_uring send of the buffer (what
 *       the forwarder does today);
 *   b   mmap of the file, io_uring send from the mapping (the kernel copies);
 *   c1  mmap, io_uring send_zc from the mapping, waiting for each message's
 *       notification before the next one (the rule for a reused buffer);
 *   c2  the same, but the next message goes once the send's result is in;
 *       notifications are reaped as they come (at most ZC_NOTIFS_OWED_MAX
 *       outstanding, all of them before the batch counts as done): segment
 *       pages are never rewritten, they only must not be unmapped early;
 *   d1  splice(2) file -> pipe -> socket, blocking, in the sending thread;
 *   d2  the same with io_uring splice ops (a linked pair per chunk).
 * Per message it reports the sending thread's CPU (its CPU clock, which
 * getrusage(RUSAGE_THREAD) agrees with over the run, printed at the top),
 * the wall time, the receiver thread's CPU and the CPU of the process's
 * other threads (io_uring's io-wq workers: io_uring runs splice there, so
 * d2's work does not show in the sender's own time). Each round runs one
 * batch per size and method, in an order that rotates every round; a batch
 * reads a part of the file no earlier batch touched, so no method finds the
 * data in the CPU caches because another method just sent it. The table
 * holds the medians over the rounds (round 0 is a warm-up, not counted).
 * For c1 and c2 it counts the notifications whose result carries
 * IORING_NOTIF_USAGE_ZC_COPIED (the kernel copied after all) out of all.
 *
 * All of that runs twice: sending only, then with the check the forwarder
 * makes before every send, a CRC32C (the store's crc32c) of the body: a
 * checks its buffer after the read, the others read the mapping, so a path
 * that skips the copy does not skip that read. Each round also times a CRC
 * pass alone over bodies from the mapping that nothing has touched yet.
 *
 * Before timing, every method sends a few messages that the receiver checks
 * byte for byte against the file; a mismatch stops the probe.
 * Standalone: of ringmx it uses only crc32c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "../storage/crc32c.h"

/* UAPI constants that liburing 2.3's headers lack. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

#define FILE_BYTES (256ull << 20)
#define RECORD_OVERHEAD_BYTES 264u   /* record header + envelope before a body: 8-aligned, */
				     /* so bodies start where real ones do, not on pages */
#define MSG_BYTES_MAX (1u << 20)
#define RECV_BUF_BYTES (1u << 20)
#define PIPE_BYTES_WANTED (1u << 20) /* fs.pipe-max-size's default; less is accepted */
#define BATCH_BYTES (32u << 20)      /* bytes per batch, within the bounds below */
#define BATCH_MSGS_MIN 32u
#define BATCH_MSGS_MAX 4096u
#define ROUNDS_DEFAULT 9
#define ROUNDS_MAX 99
#define PASS_SECONDS_MAX 50          /* per pass, stop adding rounds past this (two */
				     /* passes: under 2 minutes in all) */
#define VERIFY_MSGS_PER_SIZE 3u
#define RING_ENTRIES 64u
#define ZC_NOTIFS_OWED_MAX 32        /* c2: below the CQ ring's 128 entries */

enum method {
	READ_SEND,
	MMAP_SEND,
	MMAP_SEND_ZC_WAIT,
	MMAP_SEND_ZC,
	SPLICE_SYSCALL,
	SPLICE_URING,
	METHOD_COUNT
};

static const char *const method_name[METHOD_COUNT] = {
	"a  read + send (today)",
	"b  mmap + send",
	"c1 mmap + send_zc, wait notif",
	"c2 mmap + send_zc, notif later",
	"d1 splice(2) via pipe",
	"d2 io_uring splice via pipe",
};

static const size_t msg_sizes[] = { 1u << 10, 32u << 10, 256u << 10, 1u << 20 };
#define SIZE_COUNT (sizeof(msg_sizes) / sizeof(msg_sizes[0]))
#define VERIFY_SPANS_MAX (METHOD_COUNT * SIZE_COUNT * VERIFY_MSGS_PER_SIZE)

_Static_assert(MSG_BYTES_MAX + RECORD_OVERHEAD_BYTES < FILE_BYTES / 64,
	       "the file holds many records of the largest size");
_Static_assert(RECORD_OVERHEAD_BYTES % 8 == 0, "records are 8-byte aligned");

static void die(const char *what)
{
	fprintf(stderr, "send_probe: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void die_res(const char *what, int res)
{
	fprintf(stderr, "send_probe: %s: %s\n", what, res < 0 ? strerror(-res) : "short transfer");
	exit(1);
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	if (clock_gettime(id, &ts) != 0)
		die("clock_gettime");
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/*
 * User + system time of the calling thread. getrusage(RUSAGE_THREAD) gives
 * the same sum, but without the slice the thread is running now (up to a
 * scheduler tick, milliseconds: a large part of a batch), so batches are
 * timed with the thread's CPU clock; main compares the two over the run.
 */
static uint64_t thread_cpu_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

static uint64_t rusage_thread_ns(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_THREAD, &ru) != 0)
		die("getrusage");
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

/* Where the body of record idx (of records with size-byte bodies) starts. */
static uint64_t body_offset(size_t size, uint64_t idx)
{
	uint64_t stride = ((uint64_t)size + RECORD_OVERHEAD_BYTES + 7u) & ~7ull;
	uint64_t per_file = FILE_BYTES / stride;
	return (idx % per_file) * stride + RECORD_OVERHEAD_BYTES;
}

/* ---- the receiver ------------------------------------------------------------- */

struct check_span {
	uint64_t offset;
	uint64_t len;
};

/*
 * The receiver thread accepts one connection and reads until EOF. Its first
 * verify_bytes are compared with the spans of the file they should be; the
 * rest is discarded. received_bytes lets the sender wait for the socket to
 * drain between batches.
 */
struct receiver {
	int listen_fd;
	int cpu; /* -1: not pinned */
	pthread_t thread;
	const unsigned char *map;
	const struct check_span *verify;
	size_t verify_count;
	uint64_t verify_bytes;
	char *buf;
	_Atomic uint64_t received_bytes;
	_Atomic uint64_t mismatches;
	_Atomic int error; /* errno of a failed recv or accept */
};

/* Compares n received bytes at stream position pos with the expected spans. */
static uint64_t verify_chunk(const struct receiver *r, uint64_t pos, const char *p, size_t n)
{
	uint64_t bad = 0, start = 0;
	for (size_t i = 0; i < r->verify_count && n > 0; i++) {
		uint64_t end = start + r->verify[i].len;
		if (pos < end) {
			uint64_t in = pos - start;
			size_t k = (size_t)(end - pos < n ? end - pos : n);
			if (memcmp(p, r->map + r->verify[i].offset + in, k) != 0)
				bad++;
			p += k;
			n -= k;
			pos += k;
		}
		start = end;
	}
	return bad;
}

static void *receiver_main(void *arg)
{
	struct receiver *r = arg;
	if (r->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(r->cpu, &set);
		(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	int fd = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		atomic_store(&r->error, errno);
		return NULL;
	}
	uint64_t pos = 0;
	for (;;) {
		size_t want = RECV_BUF_BYTES;
		if (pos < r->verify_bytes && r->verify_bytes - pos < want)
			want = (size_t)(r->verify_bytes - pos); /* do not read past the checked part */
		ssize_t n = recv(fd, r->buf, want, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			atomic_store(&r->error, errno);
			break;
		}
		if (n == 0)
			break;
		if (pos < r->verify_bytes)
			atomic_fetch_add(&r->mismatches, verify_chunk(r, pos, r->buf, (size_t)n));
		pos += (uint64_t)n;
		atomic_store_explicit(&r->received_bytes, pos, memory_order_release);
	}
	close(fd);
	return NULL;
}

/* ---- the sender --------------------------------------------------------------- */

struct sender {
	struct io_uring ring;
	unsigned ring_flags;
	int file_fd;
	const unsigned char *map;
	int sock;
	int pipe_rd, pipe_wr;
	size_t pipe_bytes;
	char *buf; /* a's read buffer */
	bool have_send_zc, have_splice;
	uint64_t sent_bytes;
	bool check_crc;                /* the second pass: CRC32C of each body before its send */
	uint32_t crc_acc;              /* xor of the CRCs, so that none is optimised away */
	int64_t zc_owed;               /* send_zc notifications announced, not yet reaped */
	uint64_t zc_notifs, zc_copied; /* of the current size, reset by the caller */
};

struct completion {
	uint64_t user_data;
	int res;
	unsigned flags;
};

/* Submits what is queued and returns the next completion. */
static struct completion ring_wait(struct sender *s)
{
	struct io_uring_cqe *cqe;
	for (;;) {
		int rc = io_uring_submit_and_wait(&s->ring, 1);
		if (rc < 0 && rc != -EINTR)
			die_res("io_uring_submit_and_wait", rc);
		if (io_uring_peek_cqe(&s->ring, &cqe) == 0)
			break;
	}
	struct completion c = { cqe->user_data, cqe->res, cqe->flags };
	io_uring_cqe_seen(&s->ring, cqe);
	return c;
}

static struct io_uring_sqe *ring_sqe(struct sender *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	if (sqe == NULL) {
		errno = EBUSY;
		die("io_uring_get_sqe"); /* one or two in flight in a 64-entry ring: a bug */
	}
	sqe->user_data = 0; /* liburing 2.3's prep helpers leave it as it was */
	return sqe;
}

static void uring_send_all(struct sender *s, const void *p, size_t len)
{
	const char *c = p;
	while (len > 0) {
		io_uring_prep_send(ring_sqe(s), s->sock, c, len, MSG_NOSIGNAL | MSG_WAITALL);
		struct completion r = ring_wait(s);
		if (r.res <= 0)
			die_res("io_uring send", r.res);
		c += r.res;
		len -= (size_t)r.res;
	}
}

/* a: read the record into the buffer, then send the buffer. */
static void send_read_send(struct sender *s, uint64_t offset, size_t len)
{
	size_t got = 0;
	while (got < len) {
		io_uring_prep_read(ring_sqe(s), s->file_fd, s->buf + got, (unsigned)(len - got),
				   offset + got);
		struct completion r = ring_wait(s);
		if (r.res <= 0)
			die_res("io_uring read", r.res);
		got += (size_t)r.res;
	}
	if (s->check_crc)
		s->crc_acc ^= crc32c(0, s->buf, len);
	uring_send_all(s, s->buf, len);
}

/*
 * c: each send_zc request completes twice: its result (with
 * IORING_CQE_F_MORE when a notification follows) and the notification, once
 * the kernel no longer uses the pages. zc_owed counts the notifications
 * announced and not yet reaped (it may dip below zero for a moment, should
 * a notification be reaped before its result). Returns the result's byte
 * count, or 0 for a notification.
 */
static int zc_reap(struct sender *s)
{
	struct completion r = ring_wait(s);
	if (r.flags & IORING_CQE_F_NOTIF) {
		s->zc_owed--;
		s->zc_notifs++;
		if ((uint32_t)r.res & IORING_NOTIF_USAGE_ZC_COPIED)
			s->zc_copied++;
		return 0;
	}
	if (r.res <= 0)
		die_res("io_uring send_zc", r.res);
	if (r.flags & IORING_CQE_F_MORE)
		s->zc_owed++;
	return r.res;
}

/* Reaps notifications until at most owed_max are outstanding (no send in flight). */
static void zc_settle(struct sender *s, int64_t owed_max)
{
	while (s->zc_owed > owed_max)
		if (zc_reap(s) != 0) {
			errno = EPROTO;
			die("send_zc result without a send in flight");
		}
}

/*
 * c1 waits for each message's notification before the next message (the
 * pages may be reused at once); c2 sends on after the result and lets up to
 * ZC_NOTIFS_OWED_MAX notifications wait (enough for immutable segment
 * pages, which only need them all back before the segment is unmapped).
 */
static void send_mmap_zc(struct sender *s, uint64_t offset, size_t len, int64_t owed_max)
{
	const unsigned char *p = s->map + offset;
	while (len > 0) {
		io_uring_prep_send_zc(ring_sqe(s), s->sock, p, len, MSG_NOSIGNAL | MSG_WAITALL,
				      IORING_SEND_ZC_REPORT_USAGE);
		int sent = 0;
		while (sent == 0)
			sent = zc_reap(s);
		p += sent;
		len -= (size_t)sent;
	}
	zc_settle(s, owed_max);
}

/* d1: blocking splice(2) file -> pipe -> socket, in the sending thread. */
static void send_splice_syscall(struct sender *s, uint64_t offset, size_t len)
{
	loff_t off = (loff_t)offset;
	while (len > 0) {
		size_t chunk = len < s->pipe_bytes ? len : s->pipe_bytes;
		ssize_t in = splice(s->file_fd, &off, s->pipe_wr, NULL, chunk, SPLICE_F_MOVE);
		if (in < 0 && errno == EINTR)
			continue;
		if (in <= 0)
			die("splice file -> pipe");
		size_t left = (size_t)in;
		while (left > 0) {
			ssize_t out = splice(s->pipe_rd, NULL, s->sock, NULL, left, SPLICE_F_MOVE);
			if (out < 0 && errno == EINTR)
				continue;
			if (out <= 0)
				die("splice pipe -> socket");
			left -= (size_t)out;
		}
		len -= (size_t)in;
	}
}

/*
 * d2: a linked pair per chunk, file -> pipe then pipe -> socket. A short
 * first splice breaks the link (the second completes with -ECANCELED), and
 * a short second one leaves bytes in the pipe: both drain with single ops.
 */
static void send_splice_uring(struct sender *s, uint64_t offset, size_t len)
{
	while (len > 0) {
		unsigned chunk = (unsigned)(len < s->pipe_bytes ? len : s->pipe_bytes);
		struct io_uring_sqe *sqe = ring_sqe(s);
		io_uring_prep_splice(sqe, s->file_fd, (int64_t)offset, s->pipe_wr, -1, chunk,
				     SPLICE_F_MOVE);
		sqe->flags |= IOSQE_IO_LINK;
		sqe->user_data = 1;
		sqe = ring_sqe(s);
		io_uring_prep_splice(sqe, s->pipe_rd, -1, s->sock, -1, chunk, SPLICE_F_MOVE);
		sqe->user_data = 2;
		int in = -1, out = -1;
		for (int i = 0; i < 2; i++) {
			struct completion r = ring_wait(s);
			if (r.user_data == 1)
				in = r.res;
			else if (r.user_data == 2)
				out = r.res;
			else
				die_res("io_uring splice: a completion of something else", -EPROTO);
		}
		if (in <= 0)
			die_res("io_uring splice file -> pipe", in);
		if (out < 0 && out != -ECANCELED)
			die_res("io_uring splice pipe -> socket", out);
		unsigned left = (unsigned)in - (out > 0 ? (unsigned)out : 0u);
		while (left > 0) {
			io_uring_prep_splice(ring_sqe(s), s->pipe_rd, -1, s->sock, -1, left,
					     SPLICE_F_MOVE);
			struct completion r = ring_wait(s);
			if (r.res <= 0)
				die_res("io_uring splice pipe -> socket", r.res);
			left -= (unsigned)r.res;
		}
		offset += (unsigned)in;
		len -= (unsigned)in;
	}
}

static bool method_available(const struct sender *s, enum method m)
{
	if (m == MMAP_SEND_ZC_WAIT || m == MMAP_SEND_ZC)
		return s->have_send_zc;
	if (m == SPLICE_URING)
		return s->have_splice;
	return true;
}

/* With check_crc, a body is checked where the method has it: a in its
 * buffer after the read (see send_read_send), the others in the mapping. */
static void send_message(struct sender *s, enum method m, uint64_t offset, size_t len)
{
	if (s->check_crc && m != READ_SEND)
		s->crc_acc ^= crc32c(0, s->map + offset, len);
	switch (m) {
	case READ_SEND:
		send_read_send(s, offset, len);
		break;
	case MMAP_SEND:
		uring_send_all(s, s->map + offset, len);
		break;
	case MMAP_SEND_ZC_WAIT:
		send_mmap_zc(s, offset, len, 0);
		break;
	case MMAP_SEND_ZC:
		send_mmap_zc(s, offset, len, ZC_NOTIFS_OWED_MAX);
		break;
	case SPLICE_SYSCALL:
		send_splice_syscall(s, offset, len);
		break;
	case SPLICE_URING:
		send_splice_uring(s, offset, len);
		break;
	case METHOD_COUNT:
		abort();
	}
	s->sent_bytes += len;
}

/* ---- setting up --------------------------------------------------------------- */

/* Writes the file with mail-like lines, makes it durable and maps it. */
static void file_prepare(struct sender *s, const char *dir)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/send_probe.%ld.tmp", dir, (long)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		die("create the scratch file");
	if (unlink(path) != 0) /* gone whatever happens next; the fd keeps it */
		die("unlink the scratch file");
	char *chunk = malloc(MSG_BYTES_MAX);
	if (chunk == NULL)
		die("malloc");
	for (uint64_t off = 0; off < FILE_BYTES; off += MSG_BYTES_MAX) {
		/* 78 letters + CRLF per line; each chunk differs, so a
		 * misplaced span cannot compare equal by accident. */
		for (size_t i = 0; i < MSG_BYTES_MAX; i++) {
			size_t col = i % 80;
			chunk[i] = col == 78 ? '\r' : col == 79 ? '\n'
				   : (char)('a' + (i / 80 + off / MSG_BYTES_MAX + col) % 26);
		}
		if (pwrite(fd, chunk, MSG_BYTES_MAX, (off_t)off) != (ssize_t)MSG_BYTES_MAX)
			die("write the scratch file");
	}
	free(chunk);
	if (fdatasync(fd) != 0) /* no writeback while measuring */
		die("fdatasync the scratch file");
	void *map = mmap(NULL, FILE_BYTES, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (map == MAP_FAILED)
		die("mmap the scratch file");
	s->file_fd = fd;
	s->map = map;
}

/* Share of the file's pages in the page cache, in percent. */
static double file_resident_pct(const struct sender *s)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (size_t)(FILE_BYTES / page);
	unsigned char *vec = malloc(pages);
	if (vec == NULL)
		die("malloc");
	if (mincore((void *)s->map, FILE_BYTES, vec) != 0)
		die("mincore");
	size_t in = 0;
	for (size_t i = 0; i < pages; i++)
		in += vec[i] & 1u;
	free(vec);
	return 100.0 * (double)in / (double)pages;
}

static void ring_prepare(struct sender *s)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	/* The flags the gateway's workers use (SINGLE_ISSUER | DEFER_TASKRUN). */
	p.flags = (1U << 12) | (1U << 13);
	int rc = io_uring_queue_init_params(RING_ENTRIES, &s->ring, &p);
	if (rc < 0) {
		memset(&p, 0, sizeof(p));
		rc = io_uring_queue_init_params(RING_ENTRIES, &s->ring, &p);
	}
	if (rc < 0)
		die_res("io_uring_queue_init_params", rc);
	s->ring_flags = p.flags;
	struct io_uring_probe *probe = io_uring_get_probe_ring(&s->ring);
	if (probe == NULL) {
		errno = ENOSYS;
		die("io_uring_get_probe_ring");
	}
	s->have_send_zc = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC);
	s->have_splice = io_uring_opcode_supported(probe, IORING_OP_SPLICE);
	io_uring_free_probe(probe);
}

static void pipe_prepare(struct sender *s)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		die("pipe2");
	int got = fcntl(fds[1], F_SETPIPE_SZ, (int)PIPE_BYTES_WANTED);
	if (got < 0)
		got = fcntl(fds[1], F_GETPIPE_SZ);
	if (got <= 0)
		die("F_GETPIPE_SZ");
	s->pipe_rd = fds[0];
	s->pipe_wr = fds[1];
	s->pipe_bytes = (size_t)got;
}

/* Listens on 127.0.0.1, any port; returns the listening socket. */
static int listen_loopback(struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t alen = sizeof(*addr);
	if (bind(fd, (struct sockaddr *)addr, sizeof(*addr)) != 0 || listen(fd, 1) != 0 ||
	    getsockname(fd, (struct sockaddr *)addr, &alen) != 0)
		die("listen on 127.0.0.1");
	return fd;
}

static int connect_loopback(const struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0)
		die("connect to the receiver");
	int one = 1; /* as the forwarder's upstream sockets */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		die("TCP_NODELAY");
	return fd;
}

/* Picks two allowed CPUs: the sender's and the receiver's (-1: do not pin). */
static void pick_cpus(int *sender_cpu, int *receiver_cpu)
{
	cpu_set_t set;
	*sender_cpu = *receiver_cpu = -1;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return;
	int found[2], n = 0;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &set))
			found[n++] = c;
	if (n < 2)
		return;
	*sender_cpu = found[0];
	*receiver_cpu = found[1];
}

static void wait_drained(const struct sender *s, const struct receiver *r)
{
	const struct timespec tick = { 0, 50000 };
	while (atomic_load_explicit(&r->received_bytes, memory_order_acquire) < s->sent_bytes) {
		if (atomic_load(&r->error) != 0) {
			errno = atomic_load(&r->error);
			die("receiver");
		}
		nanosleep(&tick, NULL);
	}
}

static void read_loadavg(char *out, size_t out_bytes)
{
	snprintf(out, out_bytes, "unknown");
	FILE *f = fopen("/proc/loadavg", "r");
	if (f == NULL)
		return;
	double l1, l5, l15;
	if (fscanf(f, "%lf %lf %lf", &l1, &l5, &l15) == 3)
		snprintf(out, out_bytes, "%.2f %.2f %.2f", l1, l5, l15);
	fclose(f);
}

/* ---- measuring ---------------------------------------------------------------- */

/* Per message, in microseconds. */
struct sample {
	double send_cpu_us, wall_us, recv_cpu_us, other_cpu_us;
};

static uint32_t batch_messages(size_t size)
{
	uint32_t n = (uint32_t)(BATCH_BYTES / size);
	return n < BATCH_MSGS_MIN ? BATCH_MSGS_MIN : n > BATCH_MSGS_MAX ? BATCH_MSGS_MAX : n;
}

/*
 * One batch: count messages of one size, records first .. first+count-1.
 * The sender's CPU and the wall time stop at the last completion; the
 * receiver's and the other threads' CPU once the receiver has read it all.
 */
static struct sample run_batch(struct sender *s, const struct receiver *r, clockid_t recv_clock,
			       enum method m, size_t size, uint64_t first, uint32_t count)
{
	uint64_t proc0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID), recv0 = clock_ns(recv_clock);
	uint64_t cpu0 = thread_cpu_ns(), t0 = now_ns();
	for (uint32_t i = 0; i < count; i++)
		send_message(s, m, body_offset(size, first + i), size);
	zc_settle(s, 0); /* c2's pages are free only when every notification is back */
	uint64_t t1 = now_ns(), cpu1 = thread_cpu_ns();
	wait_drained(s, r);
	uint64_t cpu2 = thread_cpu_ns(), recv1 = clock_ns(recv_clock);
	uint64_t proc1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	int64_t other = (int64_t)(proc1 - proc0) - (int64_t)(cpu2 - cpu0) - (int64_t)(recv1 - recv0);
	struct sample out = {
		.send_cpu_us = (double)(cpu1 - cpu0) / 1000.0 / count,
		.wall_us = (double)(t1 - t0) / 1000.0 / count,
		.recv_cpu_us = (double)(recv1 - recv0) / 1000.0 / count,
		/* the clocks are read at slightly different moments: clamp at 0 */
		.other_cpu_us = other > 0 ? (double)other / 1000.0 / count : 0.0,
	};
	return out;
}

/* CPU per body of a CRC32C pass over count bodies of the mapping, in us. */
static double crc_batch_us(struct sender *s, size_t size, uint64_t first, uint32_t count)
{
	uint64_t cpu0 = thread_cpu_ns();
	for (uint32_t i = 0; i < count; i++)
		s->crc_acc ^= crc32c(0, s->map + body_offset(size, first + i), size);
	return (double)(thread_cpu_ns() - cpu0) / 1000.0 / count;
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), compare_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* Sends every method's check messages; the receiver compares them. */
static void verify_methods(struct sender *s, const struct check_span *spans, size_t span_count,
			   const struct receiver *r)
{
	size_t i = 0;
	for (int m = 0; m < METHOD_COUNT; m++) {
		for (size_t z = 0; z < SIZE_COUNT; z++)
			for (unsigned k = 0; k < VERIFY_MSGS_PER_SIZE; k++, i++)
				if (method_available(s, (enum method)m))
					send_message(s, (enum method)m, spans[i].offset,
						     (size_t)spans[i].len);
		zc_settle(s, 0); /* no completion of one method is left for the next */
	}
	if (i != span_count) {
		errno = EINVAL;
		die("verify plan");
	}
	wait_drained(s, r);
	if (atomic_load(&r->mismatches) != 0) {
		fprintf(stderr, "send_probe: the receiver got wrong bytes (%llu mismatching chunks)\n",
			(unsigned long long)atomic_load(&r->mismatches));
		exit(1);
	}
}

struct results {
	struct sample samples[SIZE_COUNT][METHOD_COUNT][ROUNDS_MAX];
	uint64_t zc_notifs[SIZE_COUNT][METHOD_COUNT], zc_copied[SIZE_COUNT][METHOD_COUNT];
	double crc_us[SIZE_COUNT][ROUNDS_MAX]; /* per body, CPU of the calling thread */
	int rounds_done;
};

/*
 * Round 0 warms up and is not kept. Every size runs one batch per method,
 * in an order rotated each round; each batch takes the next records of the
 * file (cursor[] carries on from pass to pass). Stops adding rounds when
 * PASS_SECONDS_MAX have passed.
 */
static void run_rounds(struct sender *s, const struct receiver *r, clockid_t recv_clock,
		       int rounds, uint64_t cursor[SIZE_COUNT], struct results *res)
{
	uint64_t start_ns = now_ns();
	for (int round = 0; round <= rounds; round++) {
		for (size_t z = 0; z < SIZE_COUNT; z++) {
			uint32_t count = batch_messages(msg_sizes[z]);
			for (int k = 0; k < METHOD_COUNT; k++) {
				enum method m = (enum method)((round + k) % METHOD_COUNT);
				if (!method_available(s, m))
					continue;
				s->zc_notifs = s->zc_copied = 0;
				struct sample x =
					run_batch(s, r, recv_clock, m, msg_sizes[z], cursor[z], count);
				cursor[z] += count;
				if (round == 0)
					continue;
				res->samples[z][m][round - 1] = x;
				res->zc_notifs[z][m] += s->zc_notifs;
				res->zc_copied[z][m] += s->zc_copied;
			}
			double crc_us = crc_batch_us(s, msg_sizes[z], cursor[z], count);
			cursor[z] += count;
			if (round > 0)
				res->crc_us[z][round - 1] = crc_us;
		}
		res->rounds_done = round;
		if ((now_ns() - start_ns) / 1000000000ull > PASS_SECONDS_MAX)
			break;
	}
}

/* Median over the rounds of one column of the samples of (size z, method m). */
static double sample_median(const struct results *res, size_t z, int m, size_t field_offset)
{
	double v[ROUNDS_MAX];
	for (int i = 0; i < res->rounds_done; i++) {
		const char *base = (const char *)&res->samples[z][m][i];
		memcpy(&v[i], base + field_offset, sizeof(double));
	}
	return median(v, res->rounds_done);
}

static void print_table(const struct sender *s, const struct results *res, const char *title)
{
	printf("\n%s: %d rounds (+1 warm-up)\n", title, res->rounds_done);
	printf("medians per message over the rounds, in microseconds (us); cpu x = "
	       "(send_cpu + iowq_cpu) / a's\n");
	printf("%-6s %-31s %5s %9s %9s %9s %6s %9s %6s %11s\n", "size", "method", "msgs",
	       "send_cpu", "iowq_cpu", "wall", "GB/s", "recv_cpu", "cpu x", "zc_copied");
	for (size_t z = 0; z < SIZE_COUNT; z++) {
		double base_cpu = 0.0;
		char size_label[24];
		snprintf(size_label, sizeof(size_label), "%zuK", msg_sizes[z] / 1024);
		for (int m = 0; m < METHOD_COUNT; m++) {
			const char *label = m == 0 ? size_label : "";
			if (!method_available(s, (enum method)m)) {
				printf("%-6s %-31s  not supported by this kernel\n", label,
				       method_name[m]);
				continue;
			}
			double cpu = sample_median(res, z, m, offsetof(struct sample, send_cpu_us));
			double other = sample_median(res, z, m, offsetof(struct sample, other_cpu_us));
			double wall = sample_median(res, z, m, offsetof(struct sample, wall_us));
			double recv_cpu = sample_median(res, z, m, offsetof(struct sample, recv_cpu_us));
			if (m == READ_SEND)
				base_cpu = cpu + other;
			char copied[48] = "-";
			if (m == MMAP_SEND_ZC_WAIT || m == MMAP_SEND_ZC)
				snprintf(copied, sizeof(copied), "%llu/%llu",
					 (unsigned long long)res->zc_copied[z][m],
					 (unsigned long long)res->zc_notifs[z][m]);
			printf("%-6s %-31s %5u %9.2f %9.2f %9.2f %6.2f %9.2f %6.2f %11s\n", label,
			       method_name[m], batch_messages(msg_sizes[z]), cpu, other, wall,
			       (double)msg_sizes[z] / wall / 1000.0, recv_cpu,
			       base_cpu > 0 ? (cpu + other) / base_cpu : 0.0, copied);
		}
	}
	printf("CRC32C pass over a body from the mapping (not in the CPU caches), CPU per body:");
	for (size_t z = 0; z < SIZE_COUNT; z++) {
		double v[ROUNDS_MAX];
		memcpy(v, res->crc_us[z], sizeof(double) * (size_t)res->rounds_done);
		printf(" %zuK %.2f us%s", msg_sizes[z] / 1024, median(v, res->rounds_done),
		       z + 1 < SIZE_COUNT ? "," : "\n");
	}
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3 || strcmp(argv[1], "-h") == 0) {
		fprintf(stderr, "usage: send_probe DIR [ROUNDS]\n");
		return 2;
	}
	int rounds = argc == 3 ? atoi(argv[2]) : ROUNDS_DEFAULT;
	if (rounds < 1 || rounds > ROUNDS_MAX) {
		fprintf(stderr, "send_probe: ROUNDS must be 1..%d\n", ROUNDS_MAX);
		return 2;
	}
	if (strlen(argv[1]) > 4000) {
		fprintf(stderr, "send_probe: directory name too long\n");
		return 2;
	}
	uint64_t start_ns = now_ns();
	char load_start[64], load_end[64];
	read_loadavg(load_start, sizeof(load_start));

	static struct sender s;
	static struct receiver r;
	int sender_cpu, receiver_cpu;
	pick_cpus(&sender_cpu, &receiver_cpu);
	if (sender_cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(sender_cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0)
			die("sched_setaffinity");
	}
	file_prepare(&s, argv[1]);
	ring_prepare(&s);
	pipe_prepare(&s);
	if (posix_memalign((void **)&s.buf, 4096, MSG_BYTES_MAX) != 0)
		die("posix_memalign");

	/* The check plan: per method and size, a few records at unaligned
	 * offsets spread over the file. A method the kernel lacks sends none. */
	static struct check_span spans[VERIFY_SPANS_MAX];
	size_t span_count = 0;
	uint64_t verify_bytes = 0;
	for (int m = 0; m < METHOD_COUNT; m++)
		for (size_t z = 0; z < SIZE_COUNT; z++)
			for (unsigned k = 0; k < VERIFY_MSGS_PER_SIZE; k++) {
				uint64_t idx = 7919u * (span_count + 1);
				spans[span_count].offset = body_offset(msg_sizes[z], idx);
				spans[span_count].len =
					method_available(&s, (enum method)m) ? msg_sizes[z] : 0;
				verify_bytes += spans[span_count].len;
				span_count++;
			}

	struct sockaddr_in addr;
	r.listen_fd = listen_loopback(&addr);
	r.cpu = receiver_cpu;
	r.map = s.map;
	r.verify = spans;
	r.verify_count = span_count;
	r.verify_bytes = verify_bytes;
	r.buf = malloc(RECV_BUF_BYTES);
	if (r.buf == NULL)
		die("malloc");
	int rc = pthread_create(&r.thread, NULL, receiver_main, &r);
	if (rc != 0) {
		errno = rc;
		die("pthread_create");
	}
	clockid_t recv_clock;
	rc = pthread_getcpuclockid(r.thread, &recv_clock);
	if (rc != 0) {
		errno = rc;
		die("pthread_getcpuclockid");
	}
	s.sock = connect_loopback(&addr);
	double resident_pct = file_resident_pct(&s);

	verify_methods(&s, spans, span_count, &r);

	static struct results res_send, res_checked;
	uint64_t cursor[SIZE_COUNT] = { 0 };
	uint64_t rusage0 = rusage_thread_ns(), clock0 = thread_cpu_ns();
	run_rounds(&s, &r, recv_clock, rounds, cursor, &res_send);
	s.check_crc = true;
	run_rounds(&s, &r, recv_clock, rounds, cursor, &res_checked);
	uint64_t clock1 = thread_cpu_ns(), rusage1 = rusage_thread_ns();
	if (shutdown(s.sock, SHUT_WR) != 0)
		die("shutdown");
	rc = pthread_join(r.thread, NULL);
	if (rc != 0) {
		errno = rc;
		die("pthread_join");
	}
	if (atomic_load(&r.error) != 0) {
		errno = atomic_load(&r.error);
		die("receiver");
	}
	if (atomic_load(&r.received_bytes) != s.sent_bytes) {
		fprintf(stderr, "send_probe: sent %llu bytes, the receiver got %llu\n",
			(unsigned long long)s.sent_bytes,
			(unsigned long long)atomic_load(&r.received_bytes));
		return 1;
	}
	read_loadavg(load_end, sizeof(load_end));
	if (res_send.rounds_done == 0 || res_checked.rounds_done == 0) {
		fprintf(stderr, "send_probe: a pass finished no round within %d s\n",
			PASS_SECONDS_MAX);
		return 1;
	}

	struct utsname u;
	if (uname(&u) != 0)
		die("uname");
	printf("send_probe: kernel %s, ring flags 0x%x, sender cpu %d, receiver cpu %d\n",
	       u.release, s.ring_flags, sender_cpu, receiver_cpu);
	printf("file %llu MiB, %.1f%% in the page cache; pipe %zu KiB; %llu MiB sent, "
	       "all checked bytes equal (crc xor %08x)\n",
	       (unsigned long long)(FILE_BYTES >> 20), resident_pct, s.pipe_bytes / 1024,
	       (unsigned long long)(s.sent_bytes >> 20), s.crc_acc);
	printf("load average before %s, after %s; %.1f s in all\n", load_start, load_end,
	       (double)(now_ns() - start_ns) / 1e9);
	printf("sender CPU over the rounds: thread clock %.1f ms, getrusage(RUSAGE_THREAD) %.1f ms\n",
	       (double)(clock1 - clock0) / 1e6, (double)(rusage1 - rusage0) / 1e6);
	print_table(&s, &res_send, "send only");
	print_table(&s, &res_checked,
		    "with the forwarder's record check: CRC32C of each body before its send "
		    "(a: in its buffer; the others: in the mapping)");
	io_uring_queue_exit(&s.ring);
	munmap((void *)s.map, FILE_BYTES);
	close(s.file_fd);
	close(s.sock);
	close(s.pipe_rd);
	close(s.pipe_wr);
	close(r.listen_fd);
	free(r.buf);
	free(s.buf);
	return 0;
}
