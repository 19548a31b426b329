/*
 * tls_speed.c - ringmx-tls-speed: what the linked wolfSSL costs per core.
 *
 * Full TLS 1.3 handshakes: a client and a server in this one thread, joined
 * by two in-memory pipes through wolfSSL's custom I/O (no socket, no
 * kernel), so the figure is the library's CPU alone. The server's share is
 * timed with the thread CPU clock around the server's calls only, and
 * reported as microseconds per handshake and handshakes per second per
 * core. Then AES-GCM (128 and 256) over 16 KiB buffers, in bytes per second
 * per core, as a TLS record layer uses it.
 *
 * The certificate is made at run time with openssl(1) (ECDSA P-256 by
 * default, --rsa for RSA 2048) in a temporary folder. Usage:
 *   ringmx-tls-speed [--handshakes N] [--rsa] [--seconds S]
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/version.h>
#include <wolfssl/wolfcrypt/aes.h>

/* One direction of the in-memory link. */
struct pipe {
	uint8_t buf[64 * 1024];
	size_t len;
};

struct end {
	struct pipe *rx;
	struct pipe *tx;
};

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	(void)ssl;
	struct end *e = ctx;
	if (e->rx->len == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	size_t n = (size_t)sz < e->rx->len ? (size_t)sz : e->rx->len;
	memcpy(buf, e->rx->buf, n);
	memmove(e->rx->buf, e->rx->buf + n, e->rx->len - n);
	e->rx->len -= n;
	return (int)n;
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	(void)ssl;
	struct end *e = ctx;
	size_t room = sizeof(e->tx->buf) - e->tx->len;
	if (room == 0)
		return WOLFSSL_CBIO_ERR_WANT_WRITE;
	size_t n = (size_t)sz < room ? (size_t)sz : room;
	memcpy(e->tx->buf + e->tx->len, buf, n);
	e->tx->len += n;
	return (int)n;
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static WOLFSSL *make_end(WOLFSSL_CTX *ctx, struct end *e)
{
	WOLFSSL *ssl = wolfSSL_new(ctx);
	if (!ssl)
		return NULL;
	wolfSSL_SSLSetIORecv(ssl, io_recv);
	wolfSSL_SSLSetIOSend(ssl, io_send);
	wolfSSL_SetIOReadCtx(ssl, e);
	wolfSSL_SetIOWriteCtx(ssl, e);
	return ssl;
}

/* One full handshake; adds the server's CPU time to *server_ns. */
static bool one_handshake(WOLFSSL_CTX *sctx, WOLFSSL_CTX *cctx, uint64_t *server_ns,
			  char *version, char *cipher)
{
	static struct pipe c2s, s2c;
	c2s.len = s2c.len = 0;
	struct end ce = { &s2c, &c2s }, se = { &c2s, &s2c };
	WOLFSSL *c = make_end(cctx, &ce);
	uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	WOLFSSL *s = make_end(sctx, &se);
	*server_ns += clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
	bool c_done = false, s_done = false, ok = c && s;
	for (int round = 0; ok && round < 20 && !(c_done && s_done); round++) {
		if (!c_done) {
			int rc = wolfSSL_connect(c);
			if (rc == WOLFSSL_SUCCESS)
				c_done = true;
			else if (wolfSSL_get_error(c, rc) != WOLFSSL_ERROR_WANT_READ)
				ok = false;
		}
		if (!s_done && ok) {
			t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
			int rc = wolfSSL_accept(s);
			int err = rc == WOLFSSL_SUCCESS ? 0 : wolfSSL_get_error(s, rc);
			*server_ns += clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
			if (rc == WOLFSSL_SUCCESS)
				s_done = true;
			else if (err != WOLFSSL_ERROR_WANT_READ)
				ok = false;
		}
	}
	ok = ok && c_done && s_done;
	if (ok && version) {
		snprintf(version, 16, "%s", wolfSSL_get_version(s));
		int suite = wolfSSL_get_current_cipher_suite(s);
		const char *name = suite < 0 ? NULL
			: wolfSSL_get_cipher_name_iana_from_suite((unsigned char)(suite >> 8),
								  (unsigned char)suite);
		snprintf(cipher, 64, "%s", name ? name : "?");
	}
	t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	wolfSSL_free(s);
	*server_ns += clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
	wolfSSL_free(c);
	return ok;
}

static double aes_gcm_bytes_per_s(int key_bytes, double seconds)
{
	static uint8_t in[16384], out[16384];
	uint8_t key[32] = { 1 }, iv[12] = { 2 }, tag[16], aad[13] = { 3 };
	Aes aes;
	if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0 ||
	    wc_AesGcmSetKey(&aes, key, (word32)key_bytes) != 0)
		return -1;
	uint64_t bytes = 0;
	uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID), t1 = t0;
	while (t1 - t0 < (uint64_t)(seconds * 1e9)) {
		for (int i = 0; i < 64; i++) {
			if (wc_AesGcmEncrypt(&aes, out, in, sizeof(in), iv, sizeof(iv), tag,
					     sizeof(tag), aad, sizeof(aad)) != 0)
				return -1;
			iv[11]++;
			bytes += sizeof(in);
		}
		t1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	}
	wc_AesFree(&aes);
	return (double)bytes / ((double)(t1 - t0) / 1e9);
}

int main(int argc, char **argv)
{
	int handshakes = 2000;
	double seconds = 1.0;
	bool rsa = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--handshakes") == 0 && i + 1 < argc)
			handshakes = atoi(argv[++i]);
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--rsa") == 0)
			rsa = true;
		else {
			fprintf(stderr, "usage: %s [--handshakes N] [--rsa] [--seconds S]\n", argv[0]);
			return 2;
		}
	}
	if (handshakes < 1 || seconds <= 0) {
		fprintf(stderr, "ringmx-tls-speed: --handshakes and --seconds must be positive\n");
		return 2;
	}
	char dir[] = "/tmp/ringmx-tls-speed.XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	char cmd[1024], crt[64], key[64];
	snprintf(crt, sizeof(crt), "%s/c.pem", dir);
	snprintf(key, sizeof(key), "%s/k.pem", dir);
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey %s -nodes -keyout %s -out %s -days 2 "
		 "-subj /CN=bench.example.test >/dev/null 2>&1",
		 rsa ? "rsa:2048" : "ec -pkeyopt ec_paramgen_curve:prime256v1", key, crt);
	if (system(cmd) != 0) {
		fprintf(stderr, "ringmx-tls-speed: openssl could not make a certificate\n");
		return 1;
	}
	if (wolfSSL_Init() != WOLFSSL_SUCCESS)
		return 1;
	WOLFSSL_CTX *sctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
	WOLFSSL_CTX *cctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
	if (!sctx || !cctx ||
	    wolfSSL_CTX_use_certificate_chain_file(sctx, crt) != WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_use_PrivateKey_file(sctx, key, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
		fprintf(stderr, "ringmx-tls-speed: cannot set up the contexts\n");
		return 1;
	}
	wolfSSL_CTX_set_verify(cctx, WOLFSSL_VERIFY_NONE, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "ringmx-tls-speed: could not remove %s\n", dir);

	char version[16] = "", cipher[64] = "";
	uint64_t server_ns = 0;
	(void)one_handshake(sctx, cctx, &server_ns, NULL, NULL); /* warm-up */
	server_ns = 0;
	uint64_t wall0 = clock_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < handshakes; i++) {
		if (!one_handshake(sctx, cctx, &server_ns, i == 0 ? version : NULL, cipher)) {
			fprintf(stderr, "ringmx-tls-speed: handshake %d failed\n", i);
			return 1;
		}
	}
	double wall_s = (double)(clock_ns(CLOCK_MONOTONIC) - wall0) / 1e9;
	double us = (double)server_ns / 1e3 / handshakes;
	printf("wolfSSL %s, certificate %s\n", LIBWOLFSSL_VERSION_STRING,
	       rsa ? "RSA 2048" : "ECDSA P-256");
	printf("full handshakes: %d (%s %s), %.1f s for both ends\n", handshakes, version, cipher,
	       wall_s);
	printf("server CPU per handshake: %.1f us = %.0f handshakes/s per core\n", us, 1e6 / us);
	double g128 = aes_gcm_bytes_per_s(16, seconds), g256 = aes_gcm_bytes_per_s(32, seconds);
	printf("AES-128-GCM: %.2f GB/s per core\n", g128 / 1e9);
	printf("AES-256-GCM: %.2f GB/s per core\n", g256 / 1e9);
	wolfSSL_CTX_free(sctx);
	wolfSSL_CTX_free(cctx);
	wolfSSL_Cleanup();
	return 0;
}
