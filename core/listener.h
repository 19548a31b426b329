/*
 * listener.h - a listening TCP socket for one configured address.
 *
 * Contract: listener_open makes, binds and listens on a socket for a, with
 * every option its connections need already set on the listener, so that
 * an accepted connection costs no system call of its own for them: Linux
 * copies a listener's socket options (TCP_NODELAY, SO_RCVBUF) into each
 * socket it accepts. Each worker opens its own (SO_REUSEPORT).
 * Returns the descriptor, or -1 with err filled.
 */
#ifndef RINGMX_LISTENER_H
#define RINGMX_LISTENER_H

#include <stddef.h>

#include "config.h"

/* The backlog given to listen(2). */
#define LISTENER_BACKLOG 4096

int listener_open(const struct listen_addr *a, char *err, size_t errlen);

#endif
