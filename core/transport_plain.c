/*
 * transport_plain.c - the plain-text transport: each op is one io_uring SQE
 * on the worker's ring (receive, cancel, send) or one non-blocking socket
 * call (shutdown, close). Received bytes are already plaintext and stay in
 * the receive buffer where the session parses them.
 */
#include "transport.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ring.h"

static void plain_arm_recv(const struct transport_env *env, struct transport *t, bool multishot,
			   uint64_t user_data)
{
	RMX_ASSERT(t->fd >= 0);
	struct io_uring_sqe *sqe = ring_sqe(env->ring);
	if (multishot)
		io_uring_prep_recv_multishot(sqe, t->fd, NULL, 0, 0);
	else
		io_uring_prep_recv(sqe, t->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = env->buf_group;
	io_uring_sqe_set_data64(sqe, user_data);
}

static void plain_cancel_recv(const struct transport_env *env, struct transport *t,
			      uint64_t recv_user_data)
{
	(void)t;
	struct io_uring_sqe *sqe = ring_sqe(env->ring);
	io_uring_prep_cancel64(sqe, recv_user_data, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_CANCEL, 0, 0));
}

static size_t plain_input(struct transport *t, const uint8_t *p, size_t n, const uint8_t **out)
{
	(void)t;
	*out = p;
	return n;
}

static void plain_send(const struct transport_env *env, struct transport *t, const uint8_t *p,
		       size_t n, uint64_t user_data)
{
	RMX_ASSERT(t->fd >= 0 && n <= UINT32_MAX);
	struct io_uring_sqe *sqe = ring_sqe(env->ring);
	/* MSG_MORE holds the bytes until the FIN pushes them (tcp(7)); should
	 * shutdown not follow, close sends them all the same. */
	io_uring_prep_send(sqe, t->fd, p, n, MSG_NOSIGNAL | (t->final_send ? MSG_MORE : 0));
	io_uring_sqe_set_data64(sqe, user_data);
}

static bool plain_send_pending(const struct transport *t)
{
	(void)t;
	return false;
}

static int64_t plain_send_done(const struct transport_env *env, struct transport *t, int32_t res,
			       uint64_t user_data)
{
	(void)env;
	(void)t;
	(void)user_data;
	return res;
}

static int plain_shutdown(struct transport *t, enum transport_shutdown how)
{
	if (shutdown(t->fd, how == TRANSPORT_SHUTDOWN_WRITE ? SHUT_WR : SHUT_RDWR) != 0)
		return -errno;
	return 0;
}

static void plain_close(struct transport *t)
{
	if (t->fd >= 0)
		close(t->fd); /* the descriptor is gone whatever close says */
	t->fd = -1;
}

const struct transport_ops transport_plain = {
	.arm_recv = plain_arm_recv,
	.cancel_recv = plain_cancel_recv,
	.input = plain_input,
	.send = plain_send,
	.send_pending = plain_send_pending,
	.send_done = plain_send_done,
	.shutdown = plain_shutdown,
	.close = plain_close,
};
