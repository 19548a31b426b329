/*
 * tls_client.c - wolfSSL as the bench's TLS client (see tls_client.h).
 *
 * Sits between a connection's socket buffers (moved by loop.c through
 * io_uring) and its SMTP reply reader. Invariants: a write is offered to
 * wolfSSL only when its records fit the free output room, so the send
 * callback never refuses part of a record and wolfSSL never holds a half
 * written record of ours; the receive callback hands out what was received,
 * in order, and wolfSSL keeps any partial record itself, so the input buffer
 * is empty again whenever a read or handshake step says WANT_READ.
 */
#include "tls_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

struct tls_client_ctx {
	WOLFSSL_CTX *ctx;
};

static int link_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	(void)ssl;
	struct tls_link *link = arg;
	size_t have = link->in_len - link->in_off;
	if (have == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	size_t n = RMX_MIN(have, (size_t)sz);
	memcpy(buf, link->in + link->in_off, n);
	link->in_off += n;
	if (link->in_off == link->in_len)
		link->in_off = link->in_len = 0;
	return (int)n;
}

static int link_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	(void)ssl;
	struct tls_link *link = arg;
	size_t room = TLS_OUT_BYTES - link->out_len;
	if (room < (size_t)sz)
		return WOLFSSL_CBIO_ERR_WANT_WRITE; /* never a part of a record */
	memcpy(link->out + link->out_len, buf, (size_t)sz);
	link->out_len += (size_t)sz;
	return sz;
}

struct tls_client_ctx *tls_client_ctx_new(void)
{
	if (wolfSSL_Init() != WOLFSSL_SUCCESS) {
		fprintf(stderr, "ringmx-bench: wolfSSL_Init failed\n");
		return NULL;
	}
	struct tls_client_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
	if (c->ctx == NULL || wolfSSL_CTX_SetMinVersion(c->ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
		fprintf(stderr, "ringmx-bench: cannot make a TLS client context\n");
		tls_client_ctx_free(c);
		return NULL;
	}
	wolfSSL_CTX_set_verify(c->ctx, WOLFSSL_VERIFY_NONE, NULL);
	wolfSSL_CTX_SetIORecv(c->ctx, link_recv);
	wolfSSL_CTX_SetIOSend(c->ctx, link_send);
	return c;
}

void tls_client_ctx_free(struct tls_client_ctx *c)
{
	if (c == NULL)
		return;
	if (c->ctx)
		wolfSSL_CTX_free(c->ctx);
	free(c);
	(void)wolfSSL_Cleanup();
}

int tls_link_start(struct tls_link *link, struct tls_client_ctx *ctx,
		   struct tls_session *session)
{
	RMX_ASSERT(link->ssl == NULL && link->in && link->out);
	link->in_off = link->in_len = link->out_sent = link->out_len = 0;
	WOLFSSL *ssl = wolfSSL_new(ctx->ctx);
	if (ssl == NULL)
		return -1;
	wolfSSL_SetIOReadCtx(ssl, link);
	wolfSSL_SetIOWriteCtx(ssl, link);
	/* TLS 1.2 resumes by ticket too when the server issues them. */
	if (wolfSSL_UseSessionTicket(ssl) != WOLFSSL_SUCCESS ||
	    (session && wolfSSL_set_session(ssl, (WOLFSSL_SESSION *)session) != WOLFSSL_SUCCESS)) {
		wolfSSL_free(ssl);
		return -1;
	}
	link->ssl = ssl;
	return tls_link_handshake(link) == TLS_STEP_FAILED ? -1 : 0;
}

enum tls_step tls_link_handshake(struct tls_link *link)
{
	WOLFSSL *ssl = link->ssl;
	int rc = wolfSSL_connect(ssl);
	if (rc == WOLFSSL_SUCCESS)
		return TLS_STEP_DONE;
	return wolfSSL_get_error(ssl, rc) == WOLFSSL_ERROR_WANT_READ ? TLS_STEP_MORE
								     : TLS_STEP_FAILED;
}

long tls_link_read(struct tls_link *link, uint8_t *buf, size_t cap)
{
	WOLFSSL *ssl = link->ssl;
	RMX_ASSERT(cap > 0);
	int want = (int)RMX_MIN(cap, (size_t)INT32_MAX);
	int rc = wolfSSL_read(ssl, buf, want);
	if (rc > 0)
		return rc;
	return wolfSSL_get_error(ssl, rc) == WOLFSSL_ERROR_WANT_READ ? 0 : -1;
}

long tls_link_write(struct tls_link *link, const void *data, size_t len)
{
	size_t room = TLS_OUT_BYTES - link->out_len;
	if (room < TLS_RECORD_OVERHEAD_MAX_BYTES + 1)
		return 0;
	size_t n = RMX_MIN(len, RMX_MIN((size_t)TLS_WRITE_CHUNK_MAX_BYTES,
					room - TLS_RECORD_OVERHEAD_MAX_BYTES));
	int rc = wolfSSL_write(link->ssl, data, (int)n);
	if (rc <= 0)
		return -1;
	RMX_ASSERT((size_t)rc == n); /* the records fitted: see link_send */
	return rc;
}

void tls_link_describe(struct tls_link *link, char version[TLS_VERSION_TEXT_BYTES],
		       char cipher[TLS_CIPHER_TEXT_BYTES])
{
	WOLFSSL *ssl = link->ssl;
	const char *v = wolfSSL_get_version(ssl);
	int suite = wolfSSL_get_current_cipher_suite(ssl);
	const char *name = suite < 0 ? NULL
		: wolfSSL_get_cipher_name_iana_from_suite((unsigned char)(suite >> 8),
							  (unsigned char)suite);
	snprintf(version, TLS_VERSION_TEXT_BYTES, "%s", v ? v : "?");
	snprintf(cipher, TLS_CIPHER_TEXT_BYTES, "%s", name ? name : "?");
}

void tls_link_error(struct tls_link *link, char *buf, size_t cap)
{
	char text[WOLFSSL_MAX_ERROR_SZ];
	int err = link->ssl ? wolfSSL_get_error(link->ssl, 0) : 0;
	wolfSSL_ERR_error_string_n((unsigned long)(err < 0 ? -err : err), text, sizeof(text));
	snprintf(buf, cap, "%d %s", err, text);
}

bool tls_link_resumed(struct tls_link *link)
{
	return wolfSSL_session_reused(link->ssl) == 1;
}

struct tls_session *tls_link_session(struct tls_link *link)
{
	return (struct tls_session *)wolfSSL_get1_session(link->ssl);
}

void tls_session_free(struct tls_session *session)
{
	if (session)
		wolfSSL_SESSION_free((WOLFSSL_SESSION *)session);
}

void tls_link_end(struct tls_link *link)
{
	if (link->ssl) {
		wolfSSL_free(link->ssl);
		link->ssl = NULL;
	}
	link->in_off = link->in_len = link->out_sent = link->out_len = 0;
}
