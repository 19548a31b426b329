/*
 * test_transport_tls.c - the TLS transport and the server contexts, on a
 * real ring and buffer ring, against a wolfSSL client on the other end of a
 * connected AF_UNIX stream pair (non-blocking, driven step by step from this
 * one thread). Certificates are made at test time with openssl(1).
 *
 * Proves: the clear prefix (the 220 to STARTTLS) reaches the client before
 * any TLS byte; a TLS 1.3 handshake completes through input/send_pending/
 * send/send_done with the handshake bytes sent by the connection's own
 * sends; plaintext flows both ways, also when the ciphertext arrives one
 * byte per input; the negotiated version and cipher are reported; SNI picks
 * the second pair; cleartext where a ClientHello belongs fails the
 * handshake and yields no plaintext; a key that does not match its
 * certificate is refused with the file named; a reload keeps the old pair
 * when the new one is broken; close releases the context's reference.
 * Skipped (77) without io_uring or without openssl.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "../core/ring.h"
#include "../core/tls.h"
#include "../core/transport.h"
#include "test.h"

#define UD_RECV 0x2001
#define UD_SEND 0x2002

static char dir[64];

static bool make_cert(const char *name, const char *cn)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
		 "-keyout %s/%s.key -out %s/%s.crt -days 30 -subj /CN=%s "
		 "-addext subjectAltName=DNS:%s >/dev/null 2>&1",
		 dir, name, dir, name, cn, cn);
	return system(cmd) == 0;
}

static char *path(const char *name, const char *ext)
{
	static char buf[8][160];
	static int k;
	char *p = buf[k++ % 8];
	snprintf(p, 160, "%s/%s.%s", dir, name, ext);
	return p;
}

/* The server end: a transport on sv[0] and what it decrypted. */
struct server {
	struct io_uring *ring;
	struct buf_ring *bufs;
	struct transport_env env;
	struct transport t;
	bool send_inflight;
	uint8_t plain[4096];
	size_t plain_len;
	bool byte_by_byte;
};

/* One turn of the server: completions handled, pending bytes sent. */
static void server_turn(struct server *s)
{
	if (!s->send_inflight && s->t.ops->send_pending(&s->t)) {
		s->t.ops->send(&s->env, &s->t, NULL, 0, UD_SEND);
		s->send_inflight = true;
	}
	ring_flush(s->ring);
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 20 * 1000 * 1000 };
	(void)io_uring_submit_and_wait_timeout(s->ring, &cqe, 1, &ts, NULL);
	while (io_uring_peek_cqe(s->ring, &cqe) == 0) {
		uint64_t ud = cqe->user_data;
		int res = cqe->res;
		unsigned flags = cqe->flags;
		io_uring_cqe_seen(s->ring, cqe);
		if (ud == UD_SEND) {
			int64_t r = s->t.ops->send_done(&s->env, &s->t, res, UD_SEND);
			if (r != -EINPROGRESS)
				s->send_inflight = false;
			continue;
		}
		if (ud != UD_RECV)
			continue;
		if (res > 0) {
			uint16_t bid = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);
			const uint8_t *p = buf_ring_addr(s->bufs, bid), *out = NULL;
			size_t step = s->byte_by_byte ? 1 : (size_t)res;
			for (size_t off = 0; off < (size_t)res; off += step) {
				size_t n = s->t.ops->input(&s->t, p + off, RMX_MIN(step, (size_t)res - off), &out);
				REQUIRE(s->plain_len + n <= sizeof(s->plain));
				memcpy(s->plain + s->plain_len, out, n);
				s->plain_len += n;
			}
			buf_ring_return(s->bufs, bid);
			buf_ring_publish(s->bufs);
		}
		if (!(flags & IORING_CQE_F_MORE) && res > 0)
			s->t.ops->arm_recv(&s->env, &s->t, true, UD_RECV);
	}
}

static void server_open(struct server *s, struct io_uring *ring, struct buf_ring *bufs, int fd,
			struct tls_ctx *ctx, const char *clear)
{
	memset(s, 0, sizeof(*s));
	s->ring = ring;
	s->bufs = bufs;
	s->env = (struct transport_env){ .ring = ring, .buf_group = bufs->bgid };
	transport_plain_attach(&s->t, fd);
	/* No clear prefix (smtps, SNI cases): NULL, as the upstream side passes
	 * it; with UBSan a memcpy from NULL would stop the test here. */
	const uint8_t *prefix = clear[0] ? (const uint8_t *)clear : NULL;
	REQUIRE(transport_tls_attach(&s->t, ctx, prefix, strlen(clear), NULL) == 0);
	CHECK(transport_tls_status(&s->t) == TRANSPORT_TLS_HANDSHAKE);
	s->t.ops->arm_recv(&s->env, &s->t, true, UD_RECV);
}

static void server_close(struct server *s)
{
	int rc = s->t.ops->shutdown(&s->t, TRANSPORT_SHUTDOWN_BOTH);
	CHECK(rc == 0 || rc == -ENOTCONN);
	for (int i = 0; i < 5; i++)
		server_turn(s); /* the receive's final completion */
	s->t.ops->close(&s->t);
}

static WOLFSSL *client_new(WOLFSSL_CTX *cctx, int fd, const char *sni)
{
	WOLFSSL *c = wolfSSL_new(cctx);
	REQUIRE(c != NULL);
	REQUIRE(wolfSSL_set_fd(c, fd) == WOLFSSL_SUCCESS);
	if (sni)
		REQUIRE(wolfSSL_UseSNI(c, WOLFSSL_SNI_HOST_NAME, sni, (unsigned short)strlen(sni)) ==
			WOLFSSL_SUCCESS);
	return c;
}

/* Drives both ends until the client's handshake ends; true on success. */
static bool handshake(struct server *s, WOLFSSL *c)
{
	for (int i = 0; i < 200; i++) {
		int rc = wolfSSL_connect(c);
		if (rc == WOLFSSL_SUCCESS)
			return true;
		int err = wolfSSL_get_error(c, rc);
		if (err != WOLFSSL_ERROR_WANT_READ && err != WOLFSSL_ERROR_WANT_WRITE)
			return false;
		server_turn(s);
		if (transport_tls_status(&s->t) == TRANSPORT_TLS_FAILED)
			return false;
	}
	return false;
}

static void socket_pair(int sv[2])
{
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	REQUIRE(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
}

static struct tls_ctx *server_ctx(uint32_t pairs, const char *const *names)
{
	struct tls_server_settings set = { .pair_count = pairs };
	for (uint32_t i = 0; i < pairs; i++) {
		set.pairs[i].cert_file = path(names[i], "crt");
		set.pairs[i].key_file = path(names[i], "key");
	}
	char err[512] = "";
	struct tls_ctx *ctx = tls_server_ctx_new(&set, err, sizeof(err));
	if (!ctx)
		fprintf(stderr, "tls_server_ctx_new: %s\n", err);
	return ctx;
}

/* Reads what the client can: up to cap bytes, after a few server turns. */
static size_t client_read(struct server *s, WOLFSSL *c, char *buf, size_t cap, size_t want)
{
	size_t got = 0;
	for (int i = 0; i < 100 && got < want; i++) {
		server_turn(s);
		int rc = wolfSSL_read(c, buf + got, (int)(cap - got));
		if (rc > 0)
			got += (size_t)rc;
	}
	return got;
}

static void test_session(struct io_uring *ring, struct buf_ring *bufs, WOLFSSL_CTX *cctx,
			 bool byte_by_byte)
{
	const char *names[] = { "first" };
	struct tls_ctx *ctx = server_ctx(1, names);
	REQUIRE(ctx != NULL);
	CHECK_EQ_U(tls_ctx_cert_count(ctx), 1);
	CHECK(tls_ctx_cert_not_after(ctx, 0) > (int64_t)time(NULL) + 29 * 86400);
	int sv[2];
	socket_pair(sv);
	struct server s;
	const char *ready = "220 2.0.0 Ready to start TLS\r\n";
	server_open(&s, ring, bufs, sv[0], ctx, ready);
	s.byte_by_byte = byte_by_byte;
	tls_ctx_unref(ctx); /* the session holds its own reference */
	CHECK(s.t.ops->send_pending(&s.t));

	/* The 220 arrives in clear before any TLS byte. */
	char line[64];
	size_t got = 0;
	for (int i = 0; i < 50 && got < strlen(ready); i++) {
		server_turn(&s);
		ssize_t r = read(sv[1], line + got, strlen(ready) - got);
		if (r > 0)
			got += (size_t)r;
	}
	CHECK_MEM(line, got, ready, strlen(ready));

	WOLFSSL *c = client_new(cctx, sv[1], NULL);
	CHECK(handshake(&s, c));
	for (int i = 0; i < 5; i++)
		server_turn(&s);
	CHECK(transport_tls_status(&s.t) == TRANSPORT_TLS_ESTABLISHED);
	struct transport_tls_facts facts;
	transport_tls_describe(&s.t, &facts);
	CHECK(strcmp(facts.version, "TLSv1.3") == 0);
	CHECK(strncmp(facts.cipher, "TLS_AES_", 8) == 0 || strncmp(facts.cipher, "TLS_CHACHA", 10) == 0);
	fprintf(stderr, "negotiated %s %s\n", facts.version, facts.cipher);
	CHECK(facts.sni[0] == '\0');

	/* Client to server: plaintext out of input. */
	const char *ehlo = "EHLO client.example\r\n";
	REQUIRE(wolfSSL_write(c, ehlo, (int)strlen(ehlo)) == (int)strlen(ehlo));
	for (int i = 0; i < 20 && s.plain_len < strlen(ehlo); i++)
		server_turn(&s);
	CHECK_MEM(s.plain, s.plain_len, ehlo, strlen(ehlo));

	/* Server to client: send reports the plaintext bytes. */
	const char *reply = "250-mx.example\r\n250 PIPELINING\r\n";
	REQUIRE(!s.send_inflight);
	s.t.ops->send(&s.env, &s.t, (const uint8_t *)reply, strlen(reply), UD_SEND);
	s.send_inflight = true;
	int64_t done = -1;
	for (int i = 0; i < 20 && s.send_inflight; i++) {
		ring_flush(ring);
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
		REQUIRE(io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL) >= 0);
		uint64_t ud = cqe->user_data;
		int res = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		if (ud == UD_SEND) {
			done = s.t.ops->send_done(&s.env, &s.t, res, UD_SEND);
			if (done != -EINPROGRESS)
				s.send_inflight = false;
		}
	}
	CHECK_EQ_U(done, strlen(reply));
	char buf[256];
	got = client_read(&s, c, buf, sizeof(buf), strlen(reply));
	CHECK_MEM(buf, got, reply, strlen(reply));

	wolfSSL_free(c);
	server_close(&s);
	close(sv[1]);
}

static void test_sni(struct io_uring *ring, struct buf_ring *bufs, WOLFSSL_CTX *cctx)
{
	const char *names[] = { "first", "second" };
	struct tls_ctx *ctx = server_ctx(2, names);
	REQUIRE(ctx != NULL);
	CHECK(strcmp(tls_ctx_cert_file(ctx, 1), path("second", "crt")) == 0);
	for (int round = 0; round < 3; round++) {
		const char *sni = round == 0 ? "second.example.test" : round == 1 ? "first.example.test" : "other.example.test";
		const char *want = round == 0 ? "second.example.test" : "first.example.test";
		int sv[2];
		socket_pair(sv);
		struct server s;
		server_open(&s, ring, bufs, sv[0], ctx, "");
		WOLFSSL *c = client_new(cctx, sv[1], sni);
		CHECK(handshake(&s, c));
		WOLFSSL_X509 *peer = wolfSSL_get_peer_certificate(c);
		CHECK(peer != NULL);
		if (peer) {
			CHECK(wolfSSL_X509_check_host(peer, want, strlen(want), 0, NULL) == WOLFSSL_SUCCESS);
			wolfSSL_X509_free(peer);
		}
		for (int i = 0; i < 3; i++)
			server_turn(&s);
		struct transport_tls_facts facts;
		transport_tls_describe(&s.t, &facts);
		CHECK(strcmp(facts.sni, sni) == 0);
		wolfSSL_free(c);
		server_close(&s);
		close(sv[1]);
	}
	tls_ctx_unref(ctx);
}

/* Cleartext where the ClientHello belongs (a command pipelined after
 * STARTTLS, say) fails the handshake; nothing comes out as plaintext. */
static void test_cleartext_refused(struct io_uring *ring, struct buf_ring *bufs)
{
	const char *names[] = { "first" };
	struct tls_ctx *ctx = server_ctx(1, names);
	REQUIRE(ctx != NULL);
	int sv[2];
	socket_pair(sv);
	struct server s;
	server_open(&s, ring, bufs, sv[0], ctx, "");
	REQUIRE(write(sv[1], "RSET\r\nMAIL FROM:<a@b>\r\n", 23) == 23);
	for (int i = 0; i < 10 && transport_tls_status(&s.t) == TRANSPORT_TLS_HANDSHAKE; i++)
		server_turn(&s);
	CHECK(transport_tls_status(&s.t) == TRANSPORT_TLS_FAILED);
	CHECK_EQ_U(s.plain_len, 0);
	CHECK(strcmp(transport_tls_failure(&s.t), "none") != 0);
	CHECK(!s.t.ops->send_pending(&s.t));
	server_close(&s);
	close(sv[1]);
	tls_ctx_unref(ctx);
}

static void report_kept(void *arg, const char *message)
{
	int *count = arg;
	(*count)++;
	fprintf(stderr, "reload: %s\n", message);
}

static void test_contexts(void)
{
	char err[512] = "";
	/* A key that does not match its certificate. */
	struct tls_server_settings bad = { .pair_count = 1 };
	bad.pairs[0].cert_file = path("first", "crt");
	bad.pairs[0].key_file = path("second", "key");
	CHECK(tls_server_ctx_new(&bad, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "does not match") != NULL);
	/* A missing file is named. */
	bad.pairs[0].cert_file = path("missing", "crt");
	CHECK(tls_server_ctx_new(&bad, err, sizeof(err)) == NULL);
	CHECK(strstr(err, path("missing", "crt")) != NULL);
	/* An unknown cipher list. */
	struct tls_server_settings good = { .pair_count = 1, .ciphers = "NO-SUCH-CIPHER" };
	good.pairs[0].cert_file = path("first", "crt");
	good.pairs[0].key_file = path("first", "key");
	CHECK(tls_server_ctx_new(&good, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "tls_ciphers") != NULL);
	good.ciphers = NULL;

	/* Reload: the pair's file is now broken: the old pair is kept. */
	struct tls_ctx *old = tls_server_ctx_new(&good, err, sizeof(err));
	REQUIRE(old != NULL);
	int64_t not_after = tls_ctx_cert_not_after(old, 0);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "cp %s %s.saved && echo broken > %s", path("first", "crt"),
		 path("first", "crt"), path("first", "crt"));
	REQUIRE(system(cmd) == 0);
	int kept = 0;
	struct tls_ctx *next = tls_server_ctx_reload(old, &good, report_kept, &kept, err, sizeof(err));
	CHECK(next != NULL);
	CHECK_EQ_U(kept, 1);
	CHECK(tls_server_ctx_new(&good, err, sizeof(err)) == NULL); /* without old: refused */
	if (next) {
		CHECK_EQ_U(tls_ctx_cert_not_after(next, 0), not_after);
		tls_ctx_unref(next);
	}
	snprintf(cmd, sizeof(cmd), "mv %s.saved %s", path("first", "crt"), path("first", "crt"));
	REQUIRE(system(cmd) == 0);
	tls_ctx_unref(old);

	/* A client context with a CA file that does not exist is refused. */
	struct tls_client_settings cs = { .ca_file = path("missing", "crt") };
	CHECK(tls_client_ctx_new(&cs, err, sizeof(err)) == NULL);
	cs.ca_file = NULL;
	struct tls_ctx *cctx = tls_client_ctx_new(&cs, err, sizeof(err));
	CHECK(cctx != NULL && tls_ctx_is_client(cctx));
	tls_ctx_unref(cctx);
}

int main(void)
{
	if (system("openssl version >/dev/null 2>&1") != 0) {
		fprintf(stderr, "openssl not found: skipped\n");
		return 77;
	}
	struct io_uring ring;
	struct ring_info info;
	int rc = ring_init(&ring, 64, &info);
	if (rc == -ENOSYS || rc == -EPERM) {
		fprintf(stderr, "io_uring unavailable (%d): skipped\n", rc);
		return 77;
	}
	REQUIRE(rc == 0);
	snprintf(dir, sizeof(dir), "/tmp/test_transport_tls.XXXXXX");
	REQUIRE(mkdtemp(dir) != NULL);
	REQUIRE(make_cert("first", "first.example.test"));
	REQUIRE(make_cert("second", "second.example.test"));
	REQUIRE(tls_global_init() == 0);
	struct buf_ring bufs;
	REQUIRE(buf_ring_setup(&ring, &bufs, 16, 16384, 0) == 0);
	WOLFSSL_CTX *cctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
	REQUIRE(cctx != NULL);
	wolfSSL_CTX_set_verify(cctx, WOLFSSL_VERIFY_NONE, NULL);

	test_session(&ring, &bufs, cctx, false);
	test_session(&ring, &bufs, cctx, true);
	test_sni(&ring, &bufs, cctx);
	test_cleartext_refused(&ring, &bufs);
	test_contexts();

	wolfSSL_CTX_free(cctx);
	buf_ring_free(&ring, &bufs);
	ring_exit(&ring);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)system(cmd);
	tls_global_cleanup();
	return test_main_end("test_transport_tls");
}
