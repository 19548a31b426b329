/*
 * transport.h - the small table of operations through which a client
 * connection reaches its socket: receive, send, shut down, close
 * (STYLE.md item 8). The SMTP connection code (smtp_conn.c) and the metrics
 * endpoint never arm a receive or a send, nor shut down or close a socket,
 * themselves; they call the ops of the connection's transport, so they
 * cannot tell plain text from TLS.
 *
 * The plain transport (transport_plain.c) turns each op into its io_uring
 * SQE on the worker's ring: a receive into the provided buffer ring
 * (multishot or single-shot), a send of the caller's bytes, shutdown(2),
 * close(2). Its input op hands received bytes through untouched, so the
 * session parses them in place in the receive buffer (DESIGN.md rule 3).
 *
 * The TLS transport (transport_tls.c; wolfSSL over our own buffers, never
 * over the socket):
 *   - arm_recv arms the same receive of ciphertext; its completion comes
 *     back to the connection code as today, which passes the bytes to
 *     input. input feeds them to the TLS engine (whose custom I/O callback
 *     reads them and returns WANT_READ when they run dry) and returns the
 *     plaintext it decrypted into the connection's plaintext buffer: often
 *     nothing (a record still incomplete, a handshake message), never more
 *     than that buffer holds. Decrypted bytes feed the same session parser.
 *   - send takes plaintext (replies) and sends its encryption; bytes the
 *     engine must send by itself (handshake, tickets) wait until the
 *     connection calls send (send_pending says when, n may be 0). The
 *     connection passes each send completion through send_done, which
 *     reports plaintext bytes consumed, so the connection code keeps one
 *     accounting for both.
 *   - shutdown(WRITE) sends close_notify before the FIN; shutdown(BOTH)
 *     abandons the session at once.
 *   - STARTTLS switches t->ops of a live connection from plain to TLS
 *     between two reads: nothing received after the STARTTLS command in
 *     the same read is kept (DESIGN.md rule 8), and no send is in flight.
 *
 * The caller owns struct transport (one per connection, inside its slot)
 * and the user_data of each completion; the ops own nothing but what a TLS
 * session will keep in t->state. Worker thread only.
 */
#ifndef RINGMX_TRANSPORT_H
#define RINGMX_TRANSPORT_H

#include "../common/base.h"

struct io_uring;

/* What the ops need of the worker: its ring and its buffer ring's group. */
struct transport_env {
	struct io_uring *ring;
	uint16_t buf_group;
};

struct transport_ops;

/* One connection's end of the transport. */
struct transport {
	const struct transport_ops *ops;
	int fd;      /* the socket, -1 once closed */
	void *state; /* the TLS session later; NULL for plain text */
	/* Set by the caller before the send of its last bytes, which
	 * shutdown(WRITE) follows at that send's completion: plain text then
	 * lets the bytes wait in the socket (MSG_MORE) so they leave with the
	 * FIN in one segment, not two. TLS ignores it. */
	bool final_send;
};

enum transport_shutdown {
	TRANSPORT_SHUTDOWN_WRITE, /* our side is done (FIN after the last reply) */
	TRANSPORT_SHUTDOWN_BOTH,  /* stop both ways now (wakes a pending receive) */
};

struct transport_ops {
	/* Arms a receive into the buffer ring; its completions carry
	 * user_data. Multishot keeps receiving until the kernel or a cancel
	 * ends it; otherwise one completion, one buffer. */
	void (*arm_recv)(const struct transport_env *env, struct transport *t, bool multishot,
			 uint64_t user_data);
	/* Asks the kernel to end the receive armed with recv_user_data; the
	 * receive then completes with -ECANCELED. */
	void (*cancel_recv)(const struct transport_env *env, struct transport *t,
			    uint64_t recv_user_data);
	/* Turns n received bytes at p into plaintext: returns its length and
	 * points *out at it (plain: p itself; the bytes stay valid until the
	 * caller returns the receive buffer). */
	size_t (*input)(struct transport *t, const uint8_t *p, size_t n, const uint8_t **out);
	/* Sends p[0..n); the bytes stay untouched until the completion
	 * (user_data) reports how many went out, or -errno. */
	void (*send)(const struct transport_env *env, struct transport *t, const uint8_t *p,
		     size_t n, uint64_t user_data);
	/* True when the transport has bytes of its own to send (a TLS
	 * handshake flight, a ticket, an alert): the caller then calls send
	 * even with no plaintext (n = 0) once no send is in flight. */
	bool (*send_pending)(const struct transport *t);
	/* The completion of a send armed through send, with the kernel's
	 * result: returns the plaintext bytes of that send now gone (>= 0, at
	 * most its n), -EINPROGRESS when the transport went on sending under
	 * the same user_data (still in flight: wait for the next completion),
	 * or -errno. */
	int64_t (*send_done)(const struct transport_env *env, struct transport *t, int32_t res,
			     uint64_t user_data);
	/* Shuts down one or both directions now. 0 or -errno (-ENOTCONN when
	 * the peer is already gone). */
	RMX_MUST_CHECK int (*shutdown)(struct transport *t, enum transport_shutdown how);
	/* Releases the socket (and any TLS session); t->fd becomes -1. Only
	 * once nothing of t is in flight. */
	void (*close)(struct transport *t);
};

extern const struct transport_ops transport_plain;

/* Binds fd to the plain transport. */
static inline void transport_plain_attach(struct transport *t, int fd)
{
	t->ops = &transport_plain;
	t->fd = fd;
	t->state = NULL;
	t->final_send = false;
}

/* ---- TLS (transport_tls.c) ------------------------------------------------ */

struct tls_ctx;

extern const struct transport_ops transport_tls;

enum transport_tls_status {
	TRANSPORT_TLS_HANDSHAKE,   /* not done yet */
	TRANSPORT_TLS_ESTABLISHED, /* done: plaintext flows */
	TRANSPORT_TLS_FAILED,      /* handshake or record failure: close, no reply */
};

/* What a TLS session negotiated, for logs, Received: and metrics. */
struct transport_tls_facts {
	char version[16];     /* "TLSv1.3" */
	char cipher[64];      /* "TLS_AES_128_GCM_SHA256" */
	char sni[256];        /* the name the client asked for; "" when none */
	bool resumed;         /* a session resumption (ticket), not a full handshake */
};

/*
 * Puts t (its socket open, no send in flight) on TLS made from ctx (server
 * or client as ctx is) and takes a reference on ctx until close. clear[0..
 * clear_len) goes out first and in clear (the 220 to STARTTLS; at most
 * SMTP_REPLY_BUFFER_BYTES; clear may be NULL when clear_len is 0, as for
 * an smtps connection or the upstream side); server_name is for a client
 * context (SNI and, with a CA, the name checked), NULL for a server. From
 * here on, input is ciphertext only. A client's ClientHello is pending at
 * once (send_pending). 0, or -ENOMEM (t unchanged).
 */
RMX_MUST_CHECK int transport_tls_attach(struct transport *t, struct tls_ctx *ctx,
					const uint8_t *clear, size_t clear_len,
					const char *server_name);

/* Where the handshake is; changes inside input (and send_done). */
enum transport_tls_status transport_tls_status(const struct transport *t);

/* Once established: what was negotiated. */
void transport_tls_describe(const struct transport *t, struct transport_tls_facts *out);

/* Once failed: why, as a short token text ("handshake_failure",
 * "protocol_version", "peer_closed", ...). */
const char *transport_tls_failure(const struct transport *t);

#endif
