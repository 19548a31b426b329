/*
 * tls.h - TLS contexts: what a TLS session is made from (wolfSSL).
 *
 * A struct tls_ctx is immutable once built and reference-counted: a
 * connection that starts TLS takes a reference (tls_ctx_ref) and drops it
 * when its session ends, so a reload can swap in a new context while open
 * sessions keep theirs. The last tls_ctx_unref frees it. References may be
 * taken and dropped from any thread (atomic count).
 *
 * Server contexts hold one or more certificate/key pairs (tls_cert /
 * tls_key, PEM, a chain allowed): the client's SNI picks the pair whose
 * certificate names it, the first pair is the default. TLS 1.0 and 1.1 are
 * never negotiated, renegotiation is refused, there is no compression;
 * TLS 1.3 session tickets are issued.
 *
 * Client contexts (forwarding to an upstream) verify the peer's chain and
 * name against ca_file when one is given; otherwise they encrypt without
 * verifying (opportunistic TLS, RFC 7435).
 *
 * Sessions are made by the TLS transport (transport_tls.c) from a context;
 * nothing here touches a socket.
 */
#ifndef RINGMX_TLS_H
#define RINGMX_TLS_H

#include <stdio.h>

#include "../common/base.h"

#define TLS_CERT_PAIRS_MAX 8
#define TLS_ERROR_TEXT_BYTES 256

/* The oldest protocol a context accepts (tls_min_version = 1.2 | 1.3). */
enum tls_version_min {
	TLS_VERSION_MIN_1_2,
	TLS_VERSION_MIN_1_3,
};

struct tls_pair_paths {
	const char *cert_file; /* PEM: the certificate, then its chain */
	const char *key_file;  /* PEM: its private key */
};

struct tls_server_settings {
	struct tls_pair_paths pairs[TLS_CERT_PAIRS_MAX];
	uint32_t pair_count;      /* 1..TLS_CERT_PAIRS_MAX; pairs[0] is the default */
	enum tls_version_min min_version;
	const char *ciphers;      /* NULL or "": AEAD suites with ECDHE only (tls.c) */
};

struct tls_client_settings {
	enum tls_version_min min_version;
	const char *ciphers;      /* NULL or "": the library's default list */
	const char *ca_file;      /* NULL or "": encrypt without verifying */
};

struct tls_ctx;

/* Once per process before any other call (start-up, one thread). 0 or -1. */
RMX_MUST_CHECK int tls_global_init(void);

/* Pairs with a successful tls_global_init, at exit: every context and
 * session is gone and no other thread uses the library any more. */
void tls_global_cleanup(void);

/*
 * Builds a server context from s. Every pair must load and its key must
 * match its certificate; otherwise NULL with "FILE: what is wrong" in err.
 * Start-up and reload (reads files; blocking I/O).
 */
struct tls_ctx *tls_server_ctx_new(const struct tls_server_settings *s, char *err,
				   size_t errlen);

/*
 * Reload: builds a server context from s where each pair that fails to load
 * or whose key does not match is replaced by the pair that old serves for
 * the same certificate file (or, failing that, at the same position), so a
 * broken renewal keeps the old certificate in service. report(ctx_arg,
 * message) is called once per pair kept that way. NULL (err set) only when a
 * pair fails and old has nothing to keep for it. old is not changed.
 */
struct tls_ctx *tls_server_ctx_reload(const struct tls_ctx *old,
				      const struct tls_server_settings *s,
				      void (*report)(void *arg, const char *message), void *arg,
				      char *err, size_t errlen);

/* Builds a client context (upstream TLS). NULL with err set on failure. */
struct tls_ctx *tls_client_ctx_new(const struct tls_client_settings *s, char *err,
				   size_t errlen);

void tls_ctx_ref(struct tls_ctx *ctx);
void tls_ctx_unref(struct tls_ctx *ctx);

/* True for a client context. */
bool tls_ctx_is_client(const struct tls_ctx *ctx);

/* Certificates of a server context, for the expiry gauge
 * ringmx_tls_cert_expiry_timestamp_seconds{cert="<file>"}: the count, each
 * one's certificate file as configured, and its notAfter in Unix seconds. */
uint32_t tls_ctx_cert_count(const struct tls_ctx *ctx);
const char *tls_ctx_cert_file(const struct tls_ctx *ctx, uint32_t i);
int64_t tls_ctx_cert_not_after(const struct tls_ctx *ctx, uint32_t i);

/* The library's handle, for transport_tls.c only (a WOLFSSL_CTX *). */
void *tls_ctx_library_handle(const struct tls_ctx *ctx);

#endif
