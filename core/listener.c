/*
 * listener.c - a listening TCP socket for one configured address (see
 * listener.h). Called at start-up only: not on the hot path.
 */
#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/bounds.h"

int listener_open(const struct listen_addr *a, char *err, size_t errlen)
{
	int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket for %s: %s", a->text, strerror(errno));
		return -1;
	}
	int one = 1;
	int rcvbuf = CLIENT_SOCKET_RCVBUF_BYTES;
	/* TCP_NODELAY here rather than per connection: replies go out as soon
	 * as they are written, and an accept costs no setsockopt. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
	    (a->addr.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)) {
		snprintf(err, errlen, "setsockopt for %s: %s", a->text, strerror(errno));
		close(fd);
		return -1;
	}
	if (bind(fd, (const struct sockaddr *)&a->addr, a->addr_len) != 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", a->text, strerror(errno));
		close(fd);
		return -1;
	}
	if (listen(fd, LISTENER_BACKLOG) != 0) {
		snprintf(err, errlen, "listen on %s: %s", a->text, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}
