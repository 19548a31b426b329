/*
 * smtp_conn_auth.c - AUTH for the client connections of one worker: the
 * session's AUTH side (struct smtp_auth_ops), the hand-off of credentials to
 * the verifier threads, and their answers. See smtp_conn_auth.h.
 *
 * A decode buffer is malloc'd for the length of one exchange and freed
 * after it (wiped by proto/sasl first): an idle connection holds none, and
 * a worker holds at most AUTH_EXCHANGES_MAX. The verifier copies the
 * credentials it is given, so the buffer goes back as soon as the check is
 * queued.
 */
#include "smtp_conn_auth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/bounds.h"
#include "auth_failures.h"
#include "auth_verify.h"
#include "front.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

/* The connection that owns a session's AUTH side (the ops' ctx). */
static struct conn *auth_conn(void *ctx)
{
	return ctx;
}

/* Lends a decode buffer, unless the client is past its failure limit
 * (-EPERM: 421) or the worker has lent AUTH_EXCHANGES_MAX (-ENOBUFS: 454). */
static int auth_buffer(void *ctx, uint8_t **buf, size_t *cap_bytes)
{
	struct conn *c = auth_conn(ctx);
	struct smtp_conns *sc = c->owner;
	RMX_ASSERT(c->auth_buf == NULL);
	uint32_t limit = sc->cfg->auth_fail_limit;
	uint32_t failures =
		auth_failures_count_ip(sc->front->auth_failures, c->peer.ip, sc->clock->now_ms);
	if (failures >= limit) {
		auth_failures_log(c->peer.ip, "-", "blocked", span_make("", 0), failures, limit);
		return -EPERM;
	}
	if (sc->auth_buffers_out >= AUTH_EXCHANGES_MAX)
		return -ENOBUFS;
	c->auth_buf = malloc(SASL_DECODED_MAX_BYTES);
	if (c->auth_buf == NULL)
		return -ENOBUFS;
	sc->auth_buffers_out++;
	*buf = c->auth_buf;
	*cap_bytes = SASL_DECODED_MAX_BYTES;
	return 0;
}

static void auth_buffer_free(struct smtp_conns *sc, struct conn *c)
{
	if (c->auth_buf == NULL)
		return;
	explicit_bzero(c->auth_buf, SASL_DECODED_MAX_BYTES);
	free(c->auth_buf);
	c->auth_buf = NULL;
	RMX_ASSERT(sc->auth_buffers_out > 0);
	sc->auth_buffers_out--;
}

static void auth_buffer_release(void *ctx)
{
	struct conn *c = auth_conn(ctx);
	auth_buffer_free(c->owner, c);
}

/* The metric result of an exchange that failed in the session. */
static enum metrics_auth_result failed_result(enum sasl_error e)
{
	switch (e) {
	case SASL_ERR_CANCELLED:
		return METRICS_AUTH_CANCELLED;
	case SASL_ERR_AUTHZID:
		return METRICS_AUTH_FAILURE;
	default:
		return METRICS_AUTH_MALFORMED;
	}
}

/*
 * An exchange that failed in the session. A message that decodes but is no
 * valid PLAIN/LOGIN answer, or asks to act as someone else, was answered
 * 535 and counts against auth_fail_limit like a wrong password; undecodable
 * or cancelled exchanges and unknown mechanisms are logged and counted
 * only.
 */
static int auth_failed(void *ctx, enum sasl_mech mech, enum sasl_error error)
{
	struct conn *c = auth_conn(ctx);
	struct smtp_conns *sc = c->owner;
	bool known = (unsigned)mech < SASL_MECH_COUNT;
	enum metrics_auth_result r = failed_result(error);
	if (known)
		metrics_count_auth(sc->w->metrics, mech, r);
	uint32_t limit = sc->cfg->auth_fail_limit;
	bool counts = error == SASL_ERR_MALFORMED || error == SASL_ERR_AUTHZID;
	uint32_t failures = counts ? auth_failures_record_ip(sc->front->auth_failures, c->peer.ip,
							     sc->clock->now_ms)
				   : auth_failures_count_ip(sc->front->auth_failures, c->peer.ip,
							    sc->clock->now_ms);
	static const char *const result_name[METRICS_AUTH_RESULT_COUNT] = {
		[METRICS_AUTH_FAILURE] = "failure",
		[METRICS_AUTH_MALFORMED] = "malformed",
		[METRICS_AUTH_CANCELLED] = "cancelled",
	};
	auth_failures_log(c->peer.ip, known ? sasl_mech_label(mech) : "-", result_name[r],
			  span_make("", 0), failures, limit);
	return counts && failures >= limit ? -EPERM : 0;
}

static const struct smtp_auth_ops conn_auth_ops = {
	.buffer = auth_buffer,
	.buffer_release = auth_buffer_release,
	.failed = auth_failed,
};

void smtp_conn_auth_attach(struct smtp_conns *sc, struct conn *c)
{
	if (sc->front == NULL || sc->front->auth_verify == NULL ||
	    c->listener_mode == SMTP_LISTENER_SMTP)
		return;
	c->owner = sc;
	smtp_session_set_auth(&c->session, &conn_auth_ops, c);
}

void smtp_conn_auth_submit(struct smtp_conns *sc, struct conn *c)
{
	struct smtp_auth_request req;
	smtp_session_auth_credentials(&c->session, &req);
	c->auth_mech = (uint8_t)req.mech;
	uint64_t ud = ring_ud(RING_OP_AUTH, c->gen, conn_index(&sc->slab, c));
	int rc = auth_verify_submit(sc->front->auth_verify, sc->env.ring->ring_fd, ud, req.user,
				    req.password);
	/* The verifier has its own copy now (or none was made): the decoded
	 * credentials are wiped and the buffer freed either way. */
	smtp_session_auth_queued(&c->session, rc, &c->out);
	if (rc == 0) {
		c->flags |= CONN_WAIT_AUTH;
		return;
	}
	metrics_count_auth(sc->w->metrics, req.mech, METRICS_AUTH_TEMPFAIL);
	log_warn("event=auth_tempfail worker=%u client=%s error=%s", sc->w->id, c->peer.ip,
		 log_errno_name(rc));
}

void smtp_conn_on_auth(struct smtp_conns *sc, const struct io_uring_cqe *cqe)
{
	struct conn *c = conn_lookup(&sc->slab, ring_ud_slot(cqe->user_data),
				     ring_ud_gen(cqe->user_data));
	if (c == NULL || !(c->flags & CONN_WAIT_AUTH))
		return; /* the client left while its password was checked */
	c->flags &= ~CONN_WAIT_AUTH;
	if (c->flags & CONN_CLOSING) {
		smtp_conn_release_if_done(sc, c);
		return;
	}
	enum sasl_mech mech = (enum sasl_mech)c->auth_mech;
	struct span user = smtp_session_auth_user(&c->session);
	uint32_t limit = sc->cfg->auth_fail_limit;
	enum smtp_auth_outcome outcome;
	switch (cqe->res) {
	case AUTH_RESULT_OK:
		outcome = SMTP_AUTH_OK;
		metrics_count_auth(sc->w->metrics, mech, METRICS_AUTH_SUCCESS);
		log_info("event=auth_ok worker=%u client=%s mechanism=%s", sc->w->id, c->peer.ip,
			 sasl_mech_label(mech));
		break;
	case AUTH_RESULT_FAILED: {
		uint32_t failures = auth_failures_record_ip(sc->front->auth_failures, c->peer.ip,
							    sc->clock->now_ms);
		outcome = failures >= limit ? SMTP_AUTH_FAILED_LAST : SMTP_AUTH_FAILED;
		metrics_count_auth(sc->w->metrics, mech, METRICS_AUTH_FAILURE);
		auth_failures_log(c->peer.ip, sasl_mech_label(mech), "failure", user, failures,
				  limit);
		break;
	}
	default:
		outcome = SMTP_AUTH_TEMPFAIL;
		metrics_count_auth(sc->w->metrics, mech, METRICS_AUTH_TEMPFAIL);
		log_warn("event=auth_tempfail worker=%u client=%s result=%d", sc->w->id,
			 c->peer.ip, cqe->res);
		break;
	}
	if (!smtp_conn_out_ready(sc, c)) {
		smtp_conn_close(sc, c);
		return;
	}
	smtp_session_auth_result(&c->session, outcome, &c->out);
	if (smtp_session_closed(&c->session)) {
		/* The failure limit: 535, 421, then the connection ends. */
		c->flags |= CONN_CLOSE_AFTER_SEND;
		conn_carry_consume(c, c->carry_len);
		smtp_conn_after(sc, c);
		return;
	}
	/* The reply is ours to send now, and the client's time starts again. */
	smtp_conn_arm_deadline(sc, c);
	smtp_conn_pump(sc, c);
}

void smtp_conn_auth_release(struct smtp_conns *sc, struct conn *c)
{
	auth_buffer_free(sc, c);
}
