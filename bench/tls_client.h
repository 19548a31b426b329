/*
 * tls_client.h - the bench's TLS client: wolfSSL over a connection's own
 * ciphertext buffers.
 *
 * wolfSSL never touches the socket: its custom I/O callbacks take received
 * ciphertext from the link's input buffer (WANT_READ when it runs dry) and
 * append what it wants sent to the link's output buffer (WANT_WRITE when
 * that is full). The event loop moves those buffers with io_uring. No
 * certificate is checked (the servers under test use throw-away ones). One
 * context serves every loop; a link belongs to one loop's connection.
 */
#ifndef RINGMX_BENCH_TLS_CLIENT_H
#define RINGMX_BENCH_TLS_CLIENT_H

#include "../common/base.h"

/* Ciphertext bytes a link buffers each way. The input holds at least one
 * whole TLS record (16 KiB plus its overhead is never needed at once: wolfSSL
 * keeps a partial record itself); the output takes a handshake flight or
 * the records of TLS_WRITE_CHUNK_MAX_BYTES of plaintext. */
#define TLS_IN_BYTES (16u * 1024)
#define TLS_OUT_BYTES (32u * 1024)
#define TLS_WRITE_CHUNK_MAX_BYTES (16u * 1024)
#define TLS_RECORD_OVERHEAD_MAX_BYTES 256u  /* header, nonce, tag, padding */
#define TLS_VERSION_TEXT_BYTES 16
#define TLS_CIPHER_TEXT_BYTES 64

_Static_assert(TLS_OUT_BYTES >= TLS_WRITE_CHUNK_MAX_BYTES + TLS_RECORD_OVERHEAD_MAX_BYTES,
	       "one chunk of plaintext encrypts into an empty output buffer");

struct tls_client_ctx;   /* wolfSSL's context, shared read-only by the loops */
struct tls_session;      /* a session a later handshake may resume */

struct tls_link {
	void *ssl;               /* WOLFSSL *, NULL while the link is off */
	uint8_t *in;             /* TLS_IN_BYTES: received, not yet taken */
	size_t in_off, in_len;
	uint8_t *out;            /* TLS_OUT_BYTES: to send, [out_sent, out_len) */
	size_t out_sent, out_len;
};

enum tls_step {
	TLS_STEP_MORE,   /* the handshake waits for the peer's bytes */
	TLS_STEP_DONE,   /* the handshake is complete */
	TLS_STEP_FAILED, /* an alert, a protocol error or a full buffer */
};

/* Initialises wolfSSL and makes the client context (TLS 1.2 or 1.3, no
 * verification). NULL on failure, said on stderr. Call once, before any
 * loop runs. */
struct tls_client_ctx *tls_client_ctx_new(void);
void tls_client_ctx_free(struct tls_client_ctx *ctx);

/* Starts a handshake on link, whose in and out buffers the caller has set
 * and emptied, resuming session when it is not NULL. The ClientHello is in
 * link->out afterwards. Returns 0 or -1 (out of memory). */
int tls_link_start(struct tls_link *link, struct tls_client_ctx *ctx,
		   struct tls_session *session) RMX_MUST_CHECK;

/* Takes the handshake as far as the received bytes allow. */
enum tls_step tls_link_handshake(struct tls_link *link) RMX_MUST_CHECK;

/* Decrypts into buf[0..cap). Returns the bytes written (> 0), 0 when the
 * received ciphertext holds no more whole record, -1 on an error or the
 * peer's close_notify. */
long tls_link_read(struct tls_link *link, uint8_t *buf, size_t cap) RMX_MUST_CHECK;

/* Encrypts up to len bytes of data into link->out, whole records only, as
 * much as the free room holds. Returns the plaintext bytes taken (0 when
 * there is no room now) or -1 on an error. */
long tls_link_write(struct tls_link *link, const void *data, size_t len) RMX_MUST_CHECK;

/* The negotiated version and cipher (IANA name) as text. */
void tls_link_describe(struct tls_link *link, char version[TLS_VERSION_TEXT_BYTES],
		       char cipher[TLS_CIPHER_TEXT_BYTES]);

/* The last error wolfSSL saw on link, as "CODE text", into buf. */
void tls_link_error(struct tls_link *link, char *buf, size_t cap);

/* Did the handshake resume a session? */
bool tls_link_resumed(struct tls_link *link);

/* The link's session for a later resumption (NULL when it has none);
 * the caller frees it with tls_session_free. */
struct tls_session *tls_link_session(struct tls_link *link);
void tls_session_free(struct tls_session *session);

/* Frees the engine; the buffers stay the caller's. Safe on an off link. */
void tls_link_end(struct tls_link *link);

#endif
