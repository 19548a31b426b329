/*
 * smtp_conn_proxy.h - the PROXY protocol at the start of a connection: a
 * trusted load balancer names the real client before the session begins.
 *
 * Between accept and admission (smtp_conn_start), a connection of a
 * listener whose PROXY protocol is on (config_listener_proxy) is handled
 * here:
 *   - required, peer outside proxy_trusted: closed with no banner, counted
 *     (ringmx_connections_rejected_total{reason="proxy"}), logged at info;
 *   - optional, peer outside proxy_trusted: nothing is parsed, the session
 *     starts at once (a PROXY line is then the session's bad command);
 *   - trusted peer: its first bytes go to proto/proxy (CONN_PROXY_WAIT, a
 *     parser lent for the wait only) under proxy_timeout. A whole header
 *     puts its source address in c->peer, so that limits, screening,
 *     Received:, logs and metrics see the real client; a v2 LOCAL header (a
 *     balancer's health check) starts a probe: no limits, no screening, no
 *     info-level log line, the balancer's own address. The bytes after the
 *     header in the same read go to the session, or to TLS on smtps.
 *     A malformed header, or none in time in required mode, closes the
 *     connection without a banner (counted, logged with the reason); in
 *     optional mode a peer whose first bytes are no header, or who says
 *     nothing within proxy_timeout, gets its session with its own address
 *     (one that stops inside a signature is closed as in required mode).
 * Worker thread only.
 */
#ifndef RINGMX_SMTP_CONN_PROXY_H
#define RINGMX_SMTP_CONN_PROXY_H

#include "smtp_conn.h"

/*
 * At accept, before admission, for the connection of listener i. True: the
 * connection is taken care of here (waiting for its header, or closing);
 * false: nothing to do, the caller admits and starts it now.
 */
RMX_MUST_CHECK bool smtp_conn_proxy_accept(struct smtp_conns *sc, struct conn *c, uint32_t i);

/* Input of a connection in CONN_PROXY_WAIT (raw bytes, in place, not kept). */
void smtp_conn_proxy_input(struct smtp_conns *sc, struct conn *c, const uint8_t *p, size_t n);

/* Its timer fired while in CONN_PROXY_WAIT. */
void smtp_conn_proxy_timeout(struct smtp_conns *sc, struct conn *c);

#endif
