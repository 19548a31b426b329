/*
 * transport_tls.c - the TLS transport: wolfSSL over our own buffers, never
 * over the socket (transport.h has the contract).
 *
 * Receiving: the ciphertext of a receive completion is handed to wolfSSL
 * through its custom receive callback, which reads from the span that
 * input was given and says WANT_READ when it runs dry; input then returns
 * the plaintext decrypted into the session's plaintext buffer. While the
 * handshake runs, input drives it and returns nothing.
 *
 * Sending: wolfSSL's send callback appends ciphertext to the session's
 * out buffer; send encrypts the caller's plaintext into it and arms one
 * io_uring send of everything pending. Bytes the engine writes by itself
 * (handshake flights, tickets) wait there and make send_pending true, so
 * the connection sends them with n = 0. Only the range of the send in
 * flight is read by the kernel; new ciphertext is appended past it, and
 * the buffer is compacted only when nothing is in flight.
 *
 * Buffers are allocated at attach, so a TLS connection costs its wolfSSL
 * session, TLS_PLAIN_BUFFER_BYTES and TLS_CIPHER_OUT_BYTES on top of a
 * plain one. Worker thread only.
 */
#include "transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "../common/bounds.h"
#include "ring.h"
#include "tls.h"

/* One TLS record carries at most 16 KiB of plaintext; with its header,
 * padding and tag, well under this. */
#define TLS_RECORD_CIPHER_MAX_BYTES (16384 + 2048)
/* Input decrypts everything a receive brought plus the record wolfSSL
 * may hold from before: the plaintext of one input always fits. */
#define TLS_PLAIN_BUFFER_BYTES (RECV_BUFFER_BYTES + TLS_RECORD_CIPHER_MAX_BYTES)
/* Pending ciphertext: a handshake flight with a certificate chain, or the
 * encryption of up to TLS_SEND_PLAIN_MAX_BYTES. */
#define TLS_CIPHER_OUT_BYTES (64 * 1024)
/* The plaintext one send encrypts at most (a short send reports less). */
#define TLS_SEND_PLAIN_MAX_BYTES (16 * 1024)
/* Ciphertext carried when the plaintext buffer filled up (rare). */
#define TLS_CIPHER_CARRY_MAX_BYTES (2 * RECV_BUFFER_BYTES)

_Static_assert(SMTP_REPLY_BUFFER_BYTES + TLS_RECORD_CIPHER_MAX_BYTES <= TLS_CIPHER_OUT_BYTES,
	       "a 220 in clear and a handshake flight fit the out buffer");
_Static_assert(TLS_SEND_PLAIN_MAX_BYTES + 2 * TLS_RECORD_CIPHER_MAX_BYTES <= TLS_CIPHER_OUT_BYTES,
	       "an encrypted send fits the out buffer");

struct tls_state {
	WOLFSSL *ssl;
	struct tls_ctx *ctx;       /* referenced until close */
	uint8_t status;            /* enum transport_tls_status */
	bool client;
	const char *failure;       /* static token text once failed */
	/* input: the ciphertext wolfSSL reads now */
	const uint8_t *in;
	size_t in_len;
	uint8_t *carry;            /* ciphertext left over (plaintext buffer full) */
	size_t carry_len;
	uint8_t *plain;            /* TLS_PLAIN_BUFFER_BYTES */
	/* output: [sent, inflight_end) is being sent, [inflight_end, len) waits */
	uint8_t *out;              /* TLS_CIPHER_OUT_BYTES */
	size_t out_sent;
	size_t out_inflight_end;
	size_t out_len;
	size_t plain_inflight;     /* plaintext bytes the send in flight carries */
	bool inflight;
};

static struct tls_state *st(const struct transport *t)
{
	return t->state;
}

/* ---- wolfSSL's custom I/O ------------------------------------------------------ */

static int tls_io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	(void)ssl;
	struct tls_state *s = ctx;
	if (s->in_len == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	size_t n = RMX_MIN((size_t)sz, s->in_len);
	memcpy(buf, s->in, n);
	s->in += n;
	s->in_len -= n;
	return (int)n;
}

static int tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	(void)ssl;
	struct tls_state *s = ctx;
	if (sz <= 0)
		return 0;
	size_t room = TLS_CIPHER_OUT_BYTES - s->out_len;
	if (room == 0)
		return WOLFSSL_CBIO_ERR_WANT_WRITE;
	size_t n = RMX_MIN((size_t)sz, room);
	memcpy(s->out + s->out_len, buf, n);
	s->out_len += n;
	return (int)n;
}

/* ---- the handshake and records ---------------------------------------------------- */

static void tls_fail(struct tls_state *s, const char *why)
{
	if (s->status != TRANSPORT_TLS_FAILED) {
		s->status = TRANSPORT_TLS_FAILED;
		s->failure = why;
	}
}

/* A short token for a wolfSSL error, for the tls_failed log line. */
static const char *tls_error_token(int err)
{
	switch (err) {
	case VERSION_ERROR:
		return "protocol_version";
	case MATCH_SUITE_ERROR:
		return "no_shared_cipher";
	case SOCKET_PEER_CLOSED_E:
	case SOCKET_ERROR_E:
		return "peer_closed";
	case FATAL_ERROR:
		return "peer_alert";
	case DOMAIN_NAME_MISMATCH:
	case ASN_NO_SIGNER_E:
	case ASN_AFTER_DATE_E:
		return "certificate_verify_failed";
	case WOLFSSL_CBIO_ERR_WANT_WRITE:
	case WANT_WRITE:
		return "output_full";
	case MEMORY_E:
		return "out_of_memory";
	default:
		return "handshake_failure";
	}
}

/* Runs the handshake on what input brought. */
static void tls_handshake_step(struct tls_state *s)
{
	int rc = s->client ? wolfSSL_connect(s->ssl) : wolfSSL_accept(s->ssl);
	if (rc == WOLFSSL_SUCCESS) {
		s->status = TRANSPORT_TLS_ESTABLISHED;
		return;
	}
	int err = wolfSSL_get_error(s->ssl, rc);
	if (err == WOLFSSL_ERROR_WANT_READ)
		return;
	tls_fail(s, tls_error_token(err));
}

/* Decrypts what is available into s->plain from offset *len on. */
static void tls_read_records(struct tls_state *s, size_t *len)
{
	while (*len < TLS_PLAIN_BUFFER_BYTES) {
		int cap = (int)RMX_MIN(TLS_PLAIN_BUFFER_BYTES - *len, (size_t)INT32_MAX);
		int rc = wolfSSL_read(s->ssl, s->plain + *len, cap);
		if (rc > 0) {
			*len += (size_t)rc;
			continue;
		}
		int err = wolfSSL_get_error(s->ssl, rc);
		if (err == WOLFSSL_ERROR_WANT_READ)
			return;
		if (err == WOLFSSL_ERROR_ZERO_RETURN) {
			tls_fail(s, "peer_closed"); /* close_notify: nothing more to read */
			return;
		}
		tls_fail(s, tls_error_token(err));
		return;
	}
}

/* ---- the ops ----------------------------------------------------------------------- */

static void tls_arm_recv(const struct transport_env *env, struct transport *t, bool multishot,
			 uint64_t user_data)
{
	transport_plain.arm_recv(env, t, multishot, user_data);
}

static void tls_cancel_recv(const struct transport_env *env, struct transport *t,
			    uint64_t recv_user_data)
{
	transport_plain.cancel_recv(env, t, recv_user_data);
}

/* Ciphertext kept over from the last input goes first: append p to it. */
static bool tls_carry_join(struct tls_state *s, const uint8_t *p, size_t n)
{
	if (s->carry_len + n > TLS_CIPHER_CARRY_MAX_BYTES + RECV_BUFFER_BYTES)
		return false;
	uint8_t *q = realloc(s->carry, s->carry_len + n);
	if (!q)
		return false;
	memcpy(q + s->carry_len, p, n);
	s->carry = q;
	s->carry_len += n;
	return true;
}

static size_t tls_input(struct transport *t, const uint8_t *p, size_t n, const uint8_t **out)
{
	struct tls_state *s = st(t);
	*out = s->plain;
	if (s->status == TRANSPORT_TLS_FAILED)
		return 0;
	uint8_t *joined = NULL;
	if (s->carry_len) {
		if (!tls_carry_join(s, p, n)) {
			tls_fail(s, "input_overflow");
			return 0;
		}
		joined = s->carry;
		s->carry = NULL;
		p = joined;
		n = s->carry_len;
		s->carry_len = 0;
	}
	s->in = p;
	s->in_len = n;
	size_t len = 0;
	if (s->status == TRANSPORT_TLS_HANDSHAKE)
		tls_handshake_step(s);
	if (s->status == TRANSPORT_TLS_ESTABLISHED)
		tls_read_records(s, &len);
	if (s->in_len && s->status != TRANSPORT_TLS_FAILED && !tls_carry_join(s, s->in, s->in_len))
		tls_fail(s, "input_overflow");
	s->in = NULL;
	s->in_len = 0;
	free(joined);
	return s->status == TRANSPORT_TLS_FAILED ? 0 : len;
}

/* Arms a send of [out_sent, out_len). */
static void tls_arm_send(const struct transport_env *env, struct transport *t, struct tls_state *s,
			 uint64_t user_data)
{
	RMX_ASSERT(s->out_len > s->out_sent && !s->inflight);
	struct io_uring_sqe *sqe = ring_sqe(env->ring);
	io_uring_prep_send(sqe, t->fd, s->out + s->out_sent, s->out_len - s->out_sent, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, user_data);
	s->out_inflight_end = s->out_len;
	s->inflight = true;
}

static void tls_send(const struct transport_env *env, struct transport *t, const uint8_t *p,
		     size_t n, uint64_t user_data)
{
	struct tls_state *s = st(t);
	RMX_ASSERT(!s->inflight);
	if (s->out_sent) {
		memmove(s->out, s->out + s->out_sent, s->out_len - s->out_sent);
		s->out_len -= s->out_sent;
		s->out_sent = 0;
	}
	size_t done = 0;
	if (n && s->status == TRANSPORT_TLS_ESTABLISHED) {
		size_t want = RMX_MIN(n, TLS_SEND_PLAIN_MAX_BYTES);
		while (done < want && TLS_CIPHER_OUT_BYTES - s->out_len >= TLS_RECORD_CIPHER_MAX_BYTES) {
			int chunk = (int)RMX_MIN(want - done, (size_t)16384);
			int rc = wolfSSL_write(s->ssl, p + done, chunk);
			if (rc <= 0) {
				tls_fail(s, tls_error_token(wolfSSL_get_error(s->ssl, rc)));
				break;
			}
			done += (size_t)rc;
		}
	} else if (n) {
		tls_fail(s, "send_before_handshake");
	}
	s->plain_inflight = done;
	if (s->status == TRANSPORT_TLS_FAILED || s->out_len == 0) {
		/* Nothing to send: complete at once (send_done reports it). */
		struct io_uring_sqe *sqe = ring_sqe(env->ring);
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data64(sqe, user_data);
		s->inflight = true;
		s->out_inflight_end = s->out_sent;
		return;
	}
	tls_arm_send(env, t, s, user_data);
}

static bool tls_send_pending(const struct transport *t)
{
	const struct tls_state *s = st(t);
	return s->status != TRANSPORT_TLS_FAILED && s->out_len > (s->inflight ? s->out_inflight_end
									       : s->out_sent);
}

static int64_t tls_send_done(const struct transport_env *env, struct transport *t, int32_t res,
			     uint64_t user_data)
{
	struct tls_state *s = st(t);
	RMX_ASSERT(s->inflight);
	s->inflight = false;
	if (res < 0)
		return res;
	if (s->status == TRANSPORT_TLS_FAILED)
		return -EPROTO;
	RMX_ASSERT((size_t)res <= s->out_inflight_end - s->out_sent);
	s->out_sent += (size_t)res;
	if (s->out_sent < s->out_inflight_end) {
		tls_arm_send(env, t, s, user_data); /* a short send: the rest, and what came since */
		return -EINPROGRESS;
	}
	if (s->out_sent == s->out_len)
		s->out_sent = s->out_len = 0;
	size_t plain = s->plain_inflight;
	s->plain_inflight = 0;
	return (int64_t)plain;
}

/* close_notify before the FIN: one non-blocking send of the alert (a few
 * dozen bytes into an idle socket: the last reply has been sent). */
static int tls_shutdown(struct transport *t, enum transport_shutdown how)
{
	struct tls_state *s = st(t);
	if (how == TRANSPORT_SHUTDOWN_WRITE && s->status == TRANSPORT_TLS_ESTABLISHED &&
	    !s->inflight) {
		size_t before = s->out_len;
		(void)wolfSSL_shutdown(s->ssl); /* writes the alert through tls_io_send */
		if (s->out_len > before) {
			ssize_t w = send(t->fd, s->out + before, s->out_len - before,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)w; /* best effort: the FIN follows either way */
			s->out_len = before;
		}
	}
	return transport_plain.shutdown(t, how);
}

static void tls_close(struct transport *t)
{
	struct tls_state *s = st(t);
	if (s) {
		wolfSSL_free(s->ssl);
		tls_ctx_unref(s->ctx);
		free(s->carry);
		free(s->plain);
		free(s->out);
		free(s);
		t->state = NULL;
	}
	transport_plain.close(t);
}

const struct transport_ops transport_tls = {
	.arm_recv = tls_arm_recv,
	.cancel_recv = tls_cancel_recv,
	.input = tls_input,
	.send = tls_send,
	.send_pending = tls_send_pending,
	.send_done = tls_send_done,
	.shutdown = tls_shutdown,
	.close = tls_close,
};

/* ---- attach and inspect ------------------------------------------------------------- */

int transport_tls_attach(struct transport *t, struct tls_ctx *ctx, const uint8_t *clear,
			 size_t clear_len, const char *server_name)
{
	RMX_ASSERT(t->fd >= 0 && t->state == NULL && clear_len <= SMTP_REPLY_BUFFER_BYTES);
	struct tls_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->plain = malloc(TLS_PLAIN_BUFFER_BYTES);
	s->out = malloc(TLS_CIPHER_OUT_BYTES);
	s->ssl = s->plain && s->out ? wolfSSL_new(tls_ctx_library_handle(ctx)) : NULL;
	if (!s->ssl) {
		free(s->plain);
		free(s->out);
		free(s);
		return -ENOMEM;
	}
	s->client = tls_ctx_is_client(ctx);
	wolfSSL_SSLSetIORecv(s->ssl, tls_io_recv);
	wolfSSL_SSLSetIOSend(s->ssl, tls_io_send);
	wolfSSL_SetIOReadCtx(s->ssl, s);
	wolfSSL_SetIOWriteCtx(s->ssl, s);
	if (s->client && server_name && server_name[0]) {
		(void)wolfSSL_UseSNI(s->ssl, WOLFSSL_SNI_HOST_NAME, server_name,
				     (unsigned short)strnlen(server_name, 255));
		(void)wolfSSL_check_domain_name(s->ssl, server_name);
	}
	tls_ctx_ref(ctx);
	s->ctx = ctx;
	s->status = TRANSPORT_TLS_HANDSHAKE;
	if (clear_len)
		memcpy(s->out, clear, clear_len);
	s->out_len = clear_len;
	t->ops = &transport_tls;
	t->state = s;
	if (s->client)
		tls_handshake_step(s); /* the ClientHello, pending */
	return 0;
}

enum transport_tls_status transport_tls_status(const struct transport *t)
{
	return (enum transport_tls_status)st(t)->status;
}

static void copy_token(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

void transport_tls_describe(const struct transport *t, struct transport_tls_facts *out)
{
	struct tls_state *s = st(t);
	memset(out, 0, sizeof(*out));
	copy_token(out->version, sizeof(out->version), wolfSSL_get_version(s->ssl));
	int suite = wolfSSL_get_current_cipher_suite(s->ssl); /* IANA name, as RFC 8446 */
	copy_token(out->cipher, sizeof(out->cipher),
		   suite < 0 ? NULL
			     : wolfSSL_get_cipher_name_iana_from_suite((unsigned char)(suite >> 8),
									(unsigned char)suite));
	out->resumed = wolfSSL_session_reused(s->ssl) == 1;
	if (!s->client)
		copy_token(out->sni, sizeof(out->sni),
			   wolfSSL_get_servername(s->ssl, WOLFSSL_SNI_HOST_NAME));
}

const char *transport_tls_failure(const struct transport *t)
{
	const char *f = st(t)->failure;
	return f ? f : "none";
}
