/*
 * smtp_conn_auth.h - AUTH for the client connections of one worker (RFC
 * 4954, the session side being proto/smtp_session and proto/sasl).
 *
 * Lends a session a decode buffer for one exchange (at most
 * AUTH_EXCHANGES_MAX at once per worker), hands the credentials to the
 * verifier threads (auth_verify: crypt_r never runs on a worker), and turns
 * their answer, which arrives on the worker's ring as a RING_OP_AUTH
 * completion, into the session's reply. Failures, including exchanges that
 * fail in the session, are counted per client address (auth_failures) for
 * auth_fail_limit, logged fail2ban-friendly and counted in
 * ringmx_auth_attempts_total. Worker thread only.
 */
#ifndef RINGMX_SMTP_CONN_AUTH_H
#define RINGMX_SMTP_CONN_AUTH_H

#include "smtp_conn.h"

/* Gives a session just started its AUTH side, if its listener and the
 * configuration offer AUTH and a verifier runs. */
void smtp_conn_auth_attach(struct smtp_conns *sc, struct conn *c);

/* The session returned SMTP_FEED_AUTH: queue the check. Afterwards either
 * CONN_WAIT_AUTH is set (the answer comes as a completion) or the session
 * has its 454 in c->out and goes on. */
void smtp_conn_auth_submit(struct smtp_conns *sc, struct conn *c);

/* A RING_OP_AUTH completion: the verifier's answer for a connection that
 * may be gone by now. */
void smtp_conn_on_auth(struct smtp_conns *sc, const struct io_uring_cqe *cqe);

/* The connection is being released: a buffer still lent is freed. */
void smtp_conn_auth_release(struct smtp_conns *sc, struct conn *c);

#endif
