/*
 * test_transport_plain.c - the plain transport's ops on a real ring, a real
 * provided buffer ring and a connected AF_UNIX stream pair: a multishot
 * receive delivers the peer's bytes into ring buffers with the caller's
 * user_data and stays armed; input hands them through in place; a cancel
 * ends the receive with -ECANCELED; a single-shot receive ends after one
 * completion; send delivers the bytes to the peer; shutdown(WRITE) gives
 * the peer end-of-file while we still read; close releases the descriptor.
 * Skipped (77) where io_uring is not available.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/ring.h"
#include "../core/transport.h"
#include "test.h"

#define UD_RECV 0x1001
#define UD_SEND 0x1002
#define UD_RECV_ONE 0x1003

struct completion {
	uint64_t user_data;
	int res;
	unsigned flags;
};

/* Submits, then waits up to a second for one completion. */
static bool next_cqe(struct io_uring *ring, struct completion *out)
{
	ring_flush(ring);
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
	int rc = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
	if (rc < 0 && rc != -ETIME)
		return false;
	if (io_uring_peek_cqe(ring, &cqe) != 0)
		return false;
	out->user_data = cqe->user_data;
	out->res = cqe->res;
	out->flags = cqe->flags;
	io_uring_cqe_seen(ring, cqe);
	return true;
}

/* The next completion that is not a cancel request's own. */
static bool next_op_cqe(struct io_uring *ring, struct completion *out)
{
	while (next_cqe(ring, out))
		if (ring_ud_op(out->user_data) != RING_OP_CANCEL)
			return true;
	return false;
}

static void test_plain(struct io_uring *ring, struct buf_ring *bufs)
{
	int sv[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	struct transport_env env = { .ring = ring, .buf_group = bufs->bgid };
	struct transport t;
	transport_plain_attach(&t, sv[0]);
	CHECK(t.ops == &transport_plain && t.fd == sv[0] && t.state == NULL);

	/* Multishot: two writes, two completions, still armed. */
	t.ops->arm_recv(&env, &t, true, UD_RECV);
	for (int round = 0; round < 2; round++) {
		const char *msg = round ? "QUIT\r\n" : "EHLO a\r\n";
		REQUIRE(write(sv[1], msg, strlen(msg)) == (ssize_t)strlen(msg));
		struct completion c;
		REQUIRE(next_op_cqe(ring, &c));
		CHECK_EQ_U(c.user_data, UD_RECV);
		CHECK_EQ_U(c.res, strlen(msg));
		CHECK(c.flags & IORING_CQE_F_BUFFER);
		CHECK(c.flags & IORING_CQE_F_MORE);
		uint16_t bid = (uint16_t)(c.flags >> IORING_CQE_BUFFER_SHIFT);
		const uint8_t *p = buf_ring_addr(bufs, bid), *plain = NULL;
		size_t n = t.ops->input(&t, p, (size_t)c.res, &plain);
		CHECK(plain == p); /* in place: no copy */
		CHECK_EQ_U(n, strlen(msg));
		CHECK(memcmp(plain, msg, n) == 0);
		buf_ring_return(bufs, bid);
		buf_ring_publish(bufs);
	}

	/* A cancel ends the multishot receive. */
	t.ops->cancel_recv(&env, &t, UD_RECV);
	struct completion c;
	REQUIRE(next_op_cqe(ring, &c));
	CHECK_EQ_U(c.user_data, UD_RECV);
	CHECK_EQ_U(c.res, -ECANCELED);
	CHECK(!(c.flags & IORING_CQE_F_MORE));

	/* Single-shot: one completion, and it is over. */
	REQUIRE(write(sv[1], "x", 1) == 1);
	t.ops->arm_recv(&env, &t, false, UD_RECV_ONE);
	REQUIRE(next_op_cqe(ring, &c));
	CHECK_EQ_U(c.user_data, UD_RECV_ONE);
	CHECK_EQ_U(c.res, 1);
	CHECK(!(c.flags & IORING_CQE_F_MORE));
	buf_ring_return(bufs, (uint16_t)(c.flags >> IORING_CQE_BUFFER_SHIFT));
	buf_ring_publish(bufs);

	/* Send: the peer reads exactly what we sent. */
	static const uint8_t reply[] = "250 ok\r\n";
	t.ops->send(&env, &t, reply, sizeof(reply) - 1, UD_SEND);
	REQUIRE(next_op_cqe(ring, &c));
	CHECK_EQ_U(c.user_data, UD_SEND);
	CHECK_EQ_U(c.res, sizeof(reply) - 1);
	char got[32];
	CHECK_EQ_U(read(sv[1], got, sizeof(got)), sizeof(reply) - 1);
	CHECK(memcmp(got, reply, sizeof(reply) - 1) == 0);

	/* shutdown(WRITE): the peer sees end-of-file, and we still receive. */
	CHECK(t.ops->shutdown(&t, TRANSPORT_SHUTDOWN_WRITE) == 0);
	CHECK_EQ_U(read(sv[1], got, sizeof(got)), 0);
	REQUIRE(write(sv[1], "late", 4) == 4);
	t.ops->arm_recv(&env, &t, false, UD_RECV_ONE);
	REQUIRE(next_op_cqe(ring, &c));
	CHECK_EQ_U(c.res, 4);
	buf_ring_return(bufs, (uint16_t)(c.flags >> IORING_CQE_BUFFER_SHIFT));
	buf_ring_publish(bufs);

	/* shutdown(BOTH) wakes a pending receive with end-of-input. */
	t.ops->arm_recv(&env, &t, true, UD_RECV);
	CHECK(t.ops->shutdown(&t, TRANSPORT_SHUTDOWN_BOTH) == 0);
	REQUIRE(next_op_cqe(ring, &c));
	CHECK_EQ_U(c.user_data, UD_RECV);
	CHECK_EQ_U(c.res, 0);
	CHECK(!(c.flags & IORING_CQE_F_MORE));

	/* close releases the descriptor once, and says so in t. */
	int fd = t.fd;
	t.ops->close(&t);
	CHECK_EQ_U(t.fd, -1);
	CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF);
	t.ops->close(&t); /* a second close touches no descriptor */
	close(sv[1]);
}

/* A shutdown on a descriptor that is no socket reports -errno. */
static void test_shutdown_error(void)
{
	int p[2];
	REQUIRE(pipe(p) == 0);
	struct transport t;
	transport_plain_attach(&t, p[0]);
	CHECK(t.ops->shutdown(&t, TRANSPORT_SHUTDOWN_BOTH) == -ENOTSOCK);
	t.ops->close(&t);
	close(p[1]);
}

int main(void)
{
	struct io_uring ring;
	struct ring_info info;
	int rc = ring_init(&ring, 16, &info);
	if (rc == -ENOSYS || rc == -EPERM) {
		fprintf(stderr, "io_uring unavailable (%d): skipped\n", rc);
		return 77;
	}
	REQUIRE(rc == 0);
	struct buf_ring bufs;
	REQUIRE(buf_ring_setup(&ring, &bufs, 8, 4096, 0) == 0);
	test_plain(&ring, &bufs);
	test_shutdown_error();
	buf_ring_free(&ring, &bufs);
	ring_exit(&ring);
	return test_main_end("test_transport_plain");
}
