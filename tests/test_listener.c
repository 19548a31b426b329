/*
 * test_listener.c - the listening socket: a connection accepted from it,
 * the way the workers accept (an io_uring multishot accept), already has
 * TCP_NODELAY and the listener's receive buffer, since Linux copies a
 * listener's options into each accepted socket; so accepting costs no
 * setsockopt. Checked on 127.0.0.1, and on ::1 where it can be bound.
 * Skipped (77) where io_uring is not available.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "../core/listener.h"
#include "test.h"

static struct listen_addr loopback(int family)
{
	struct listen_addr a;
	memset(&a, 0, sizeof(a));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&a.addr;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a.addr_len = sizeof(*in);
		snprintf(a.text, sizeof(a.text), "127.0.0.1:0");
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a.addr;
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		a.addr_len = sizeof(*in6);
		snprintf(a.text, sizeof(a.text), "[::1]:0");
	}
	return a;
}

static int sockopt_int(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);
	REQUIRE(getsockopt(fd, level, name, &v, &len) == 0);
	return v;
}

/* Returns false when the family cannot be bound here (no IPv6). */
static bool check_family(struct io_uring *ring, int family)
{
	struct listen_addr a = loopback(family);
	char err[256] = "";
	int lfd = listener_open(&a, err, sizeof(err));
	if (lfd < 0 && family == AF_INET6) {
		fprintf(stderr, "::1 cannot be bound (%s): IPv6 case skipped\n", err);
		return false;
	}
	REQUIRE(lfd >= 0);
	CHECK_EQ_U(sockopt_int(lfd, IPPROTO_TCP, TCP_NODELAY), 1);
	struct sockaddr_storage bound;
	socklen_t bound_len = sizeof(bound);
	REQUIRE(getsockname(lfd, (struct sockaddr *)&bound, &bound_len) == 0);

	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	REQUIRE(sqe != NULL);
	io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, 1);
	REQUIRE(io_uring_submit(ring) == 1);

	int cfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	REQUIRE(cfd >= 0);
	REQUIRE(connect(cfd, (struct sockaddr *)&bound, bound_len) == 0);
	struct io_uring_cqe *cqe = NULL;
	REQUIRE(io_uring_wait_cqe(ring, &cqe) == 0);
	int afd = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	REQUIRE(afd >= 0);

	CHECK_EQ_U(sockopt_int(afd, IPPROTO_TCP, TCP_NODELAY), 1);
	/* Linux reports twice the size asked for (its bookkeeping). */
	CHECK(sockopt_int(afd, SOL_SOCKET, SO_RCVBUF) >= CLIENT_SOCKET_RCVBUF_BYTES);
	/* The client's own socket is untouched: the option is the server's. */
	CHECK_EQ_U(sockopt_int(cfd, IPPROTO_TCP, TCP_NODELAY), 0);

	REQUIRE(close(afd) == 0);
	REQUIRE(close(cfd) == 0);
	REQUIRE(close(lfd) == 0); /* its armed accept goes with the ring */
	return true;
}

int main(void)
{
	struct io_uring ring;
	int rc = io_uring_queue_init(8, &ring, 0);
	if (rc == -ENOSYS || rc == -EPERM) {
		fprintf(stderr, "io_uring unavailable (%d): skipped\n", rc);
		return 77;
	}
	REQUIRE(rc == 0);
	check_family(&ring, AF_INET);
	check_family(&ring, AF_INET6);
	io_uring_queue_exit(&ring);
	return test_main_end("test_listener");
}
