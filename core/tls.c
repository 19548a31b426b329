/*
 * tls.c - TLS contexts over wolfSSL (see tls.h for the contract).
 *
 * A server context keeps, per certificate/key pair, the PEM bytes as read
 * (so that a reload can keep a pair whose renewal is broken), one
 * WOLFSSL_CTX loaded with that pair and the context's settings, and the
 * leaf certificate parsed for SNI matching and its notAfter. The first
 * pair's WOLFSSL_CTX is the one sessions are made from; its SNI callback
 * moves a session to the pair whose certificate names the requested host.
 * Nothing changes after the build, so workers share a context without
 * locks; only the reference count is written, atomically.
 */
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>

/* A certificate chain or key file larger than this is refused (a chain of
 * a few certificates is a few KiB). */
#define TLS_PEM_FILE_MAX_BYTES (1024 * 1024)

struct tls_pair {
	char cert_file[PATH_MAX];
	char key_file[PATH_MAX];
	uint8_t *cert_pem;
	size_t cert_len;
	uint8_t *key_pem;
	size_t key_len;
	WOLFSSL_CTX *ssl_ctx;  /* this pair and the context's settings */
	WOLFSSL_X509 *leaf;    /* the first certificate: SNI matching */
	int64_t not_after_unix;
};

struct tls_ctx {
	atomic_uint refs;
	bool client;
	uint32_t pair_count;
	struct tls_pair pairs[TLS_CERT_PAIRS_MAX];
	WOLFSSL_CTX *client_ctx;
};

int tls_global_init(void)
{
	return wolfSSL_Init() == WOLFSSL_SUCCESS ? 0 : -1;
}

void tls_global_cleanup(void)
{
	(void)wolfSSL_Cleanup(); /* at exit: nothing is left to act on a failure */
}

static void set_err(char *err, size_t errlen, const char *file, const char *what)
{
	snprintf(err, errlen, "%s: %s", file, what);
}

/* Reads a whole PEM file (bounded). 0, or -errno / -EFBIG. */
static int read_pem(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	struct stat st;
	if (fstat(fileno(f), &st) != 0) {
		int e = -errno;
		fclose(f);
		return e;
	}
	if (st.st_size <= 0 || st.st_size > TLS_PEM_FILE_MAX_BYTES) {
		fclose(f);
		return st.st_size <= 0 ? -ENODATA : -EFBIG;
	}
	uint8_t *buf = malloc((size_t)st.st_size);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	size_t n = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	if (n != (size_t)st.st_size) {
		free(buf);
		return -EIO;
	}
	*out = buf;
	*len = n;
	return 0;
}

/*
 * The server's suites when tls_ciphers is not set: AEAD only, with forward
 * secrecy. Some builds of the library (Debian's among them) otherwise offer
 * everything they were built with in TLS 1.2, RC4, 3DES, NULL and PSK
 * suites included, which testssl.sh rates HIGH. CBC suites (Lucky13 class)
 * and finite-field DHE (weak or unknown groups) are left out too; a sender
 * that has none of these falls back to cleartext on port 25, as it would to
 * a server without STARTTLS. TLS 1.3 suites come first.
 */
static const char server_ciphers_default[] =
	"TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:"
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
	"ECDHE-ECDSA-CHACHA20-POLY1305:"
	"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
	"ECDHE-RSA-CHACHA20-POLY1305";

static int version_code(enum tls_version_min v)
{
	return v == TLS_VERSION_MIN_1_3 ? WOLFSSL_TLSV1_3 : WOLFSSL_TLSV1_2;
}

/* The settings every context shares: the oldest version, the ciphers. */
static const char *apply_common(WOLFSSL_CTX *c, enum tls_version_min min_version,
				const char *ciphers)
{
	if (wolfSSL_CTX_SetMinVersion(c, version_code(min_version)) != WOLFSSL_SUCCESS)
		return "the library refuses the minimum TLS version";
	if (ciphers && ciphers[0] && wolfSSL_CTX_set_cipher_list(c, ciphers) != WOLFSSL_SUCCESS)
		return "tls_ciphers names no cipher suite this library knows";
	return NULL;
}

static int sni_choose(WOLFSSL *ssl, int *alert, void *arg);

/* An EC key's public point (X9.63), from a private key (derived) or from a
 * SubjectPublicKeyInfo. False when der holds no EC key of that kind. */
static bool ecc_public_point(const uint8_t *der, size_t len, bool private_key, uint8_t *out,
			     word32 *out_len)
{
	ecc_key key;
	if (wc_ecc_init(&key) != 0)
		return false;
	word32 idx = 0;
	int rc;
	if (private_key) {
		word32 pkcs8 = 0;
		if (wc_GetPkcs8TraditionalOffset((byte *)der, &pkcs8, (word32)len) >= 0)
			idx = pkcs8; /* "PRIVATE KEY": the EC key inside PKCS #8 */
		rc = wc_EccPrivateKeyDecode(der, &idx, &key, (word32)len);
		if (rc == 0)
			rc = wc_ecc_make_pub(&key, NULL);
	} else {
		rc = wc_EccPublicKeyDecode(der, &idx, &key, (word32)len);
	}
	if (rc == 0)
		rc = wc_ecc_export_x963(&key, out, out_len);
	wc_ecc_free(&key);
	return rc == 0;
}

/*
 * Whether an EC private key belongs to the certificate: its public point,
 * derived, against the certificate's. Some builds of the library check EC
 * pairs only partly in wolfSSL_CTX_check_private_key, so this is checked
 * here too. True also when the key is not EC (the library's check stands).
 */
static bool ecc_pair_matches(const struct tls_pair *p)
{
	size_t cap = p->key_len;
	uint8_t *der = malloc(cap);
	if (!der)
		return false;
	uint8_t from_key[2 * MAX_ECC_BYTES + 1], from_cert[2 * MAX_ECC_BYTES + 1];
	word32 key_len = sizeof(from_key), cert_len = sizeof(from_cert);
	int der_len = wc_KeyPemToDer(p->key_pem, (int)p->key_len, der, (int)cap, NULL);
	bool is_ecc = der_len > 0 &&
		      ecc_public_point(der, (size_t)der_len, true, from_key, &key_len);
	free(der);
	if (!is_ecc)
		return true;
	unsigned char spki[1024];
	int spki_len = sizeof(spki);
	if (wolfSSL_X509_get_pubkey_buffer(p->leaf, spki, &spki_len) != WOLFSSL_SUCCESS ||
	    !ecc_public_point(spki, (size_t)spki_len, false, from_cert, &cert_len))
		return false; /* an EC key with a certificate that is not EC */
	return key_len == cert_len && memcmp(from_key, from_cert, key_len) == 0;
}

static int64_t not_after_unix(WOLFSSL_X509 *x)
{
	const WOLFSSL_ASN1_TIME *t = wolfSSL_X509_get_notAfter(x);
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (!t || wolfSSL_ASN1_TIME_to_tm(t, &tm) != WOLFSSL_SUCCESS)
		return 0;
	return (int64_t)timegm(&tm);
}

/*
 * Makes the WOLFSSL_CTX of a pair whose PEM bytes are loaded: the chain,
 * the key, the check that they match, the settings, the SNI callback.
 * NULL on success, else what is wrong.
 */
static const char *pair_build(struct tls_pair *p, const struct tls_server_settings *s,
			      struct tls_ctx *owner)
{
	p->ssl_ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
	if (!p->ssl_ctx)
		return "out of memory for a TLS context";
	if (wolfSSL_CTX_use_certificate_chain_buffer(p->ssl_ctx, p->cert_pem,
						     (long)p->cert_len) != WOLFSSL_SUCCESS)
		return "no PEM certificate (chain) could be loaded from it";
	if (wolfSSL_CTX_use_PrivateKey_buffer(p->ssl_ctx, p->key_pem, (long)p->key_len,
					      WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
		return "no PEM private key could be loaded from its tls_key";
	if (wolfSSL_CTX_check_private_key(p->ssl_ctx) != WOLFSSL_SUCCESS)
		return "its tls_key does not match the certificate";
	const char *ciphers = s->ciphers && s->ciphers[0] ? s->ciphers : server_ciphers_default;
	const char *why = apply_common(p->ssl_ctx, s->min_version, ciphers);
	if (why)
		return why;
	wolfSSL_CTX_set_verify(p->ssl_ctx, WOLFSSL_VERIFY_NONE, NULL);
	wolfSSL_CTX_set_servername_callback(p->ssl_ctx, sni_choose);
	if (wolfSSL_CTX_set_servername_arg(p->ssl_ctx, owner) != WOLFSSL_SUCCESS)
		return "the library refuses the SNI callback";
	p->leaf = wolfSSL_X509_load_certificate_buffer(p->cert_pem, (int)p->cert_len,
						       WOLFSSL_FILETYPE_PEM);
	if (!p->leaf)
		return "its first certificate cannot be parsed";
	p->not_after_unix = not_after_unix(p->leaf);
	if (!ecc_pair_matches(p))
		return "its tls_key does not match the certificate";
	return NULL;
}

static void pair_free(struct tls_pair *p)
{
	if (p->ssl_ctx)
		wolfSSL_CTX_free(p->ssl_ctx);
	if (p->leaf)
		wolfSSL_X509_free(p->leaf);
	free(p->cert_pem);
	free(p->key_pem);
	memset(p, 0, sizeof(*p));
}

/* Reads a pair's files and builds it. NULL on success, else what is wrong
 * (with the file it concerns in *file). */
static const char *pair_load(struct tls_pair *p, const struct tls_pair_paths *paths,
			     const struct tls_server_settings *s, struct tls_ctx *owner,
			     const char **file)
{
	memset(p, 0, sizeof(*p));
	*file = paths->cert_file;
	if (strlen(paths->cert_file) >= sizeof(p->cert_file) ||
	    strlen(paths->key_file) >= sizeof(p->key_file))
		return "path too long";
	memcpy(p->cert_file, paths->cert_file, strlen(paths->cert_file) + 1);
	memcpy(p->key_file, paths->key_file, strlen(paths->key_file) + 1);
	int rc = read_pem(paths->cert_file, &p->cert_pem, &p->cert_len);
	if (rc == 0) {
		*file = paths->key_file;
		rc = read_pem(paths->key_file, &p->key_pem, &p->key_len);
	}
	if (rc != 0)
		return rc == -EFBIG ? "file too large" : rc == -ENODATA ? "empty file" : strerror(-rc);
	*file = paths->cert_file;
	return pair_build(p, s, owner);
}

/* A pair rebuilt from another's PEM bytes (a reload that keeps it). */
static const char *pair_copy(struct tls_pair *p, const struct tls_pair *from,
			     const struct tls_server_settings *s, struct tls_ctx *owner)
{
	memset(p, 0, sizeof(*p));
	memcpy(p->cert_file, from->cert_file, sizeof(p->cert_file));
	memcpy(p->key_file, from->key_file, sizeof(p->key_file));
	p->cert_pem = malloc(from->cert_len);
	p->key_pem = malloc(from->key_len);
	if (!p->cert_pem || !p->key_pem)
		return "out of memory";
	memcpy(p->cert_pem, from->cert_pem, from->cert_len);
	memcpy(p->key_pem, from->key_pem, from->key_len);
	p->cert_len = from->cert_len;
	p->key_len = from->key_len;
	return pair_build(p, s, owner);
}

/*
 * The SNI callback of every pair's WOLFSSL_CTX: the first pair whose
 * certificate names the requested host serves the session; no SNI, or no
 * match, keeps the default (the first pair).
 */
static int sni_choose(WOLFSSL *ssl, int *alert, void *arg)
{
	(void)alert;
	struct tls_ctx *ctx = arg;
	const char *name = wolfSSL_get_servername(ssl, WOLFSSL_SNI_HOST_NAME);
	if (!name || !name[0] || !ctx)
		return 0; /* SSL_TLSEXT_ERR_OK */
	size_t len = strnlen(name, 256);
	for (uint32_t i = 1; i < ctx->pair_count; i++) {
		if (wolfSSL_X509_check_host(ctx->pairs[i].leaf, name, len, 0, NULL) ==
		    WOLFSSL_SUCCESS) {
			if (wolfSSL_set_SSL_CTX(ssl, ctx->pairs[i].ssl_ctx) == NULL)
				return 0; /* the default serves */
			return 0;
		}
	}
	return 0;
}

static struct tls_ctx *ctx_alloc(bool client)
{
	struct tls_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return NULL;
	atomic_init(&ctx->refs, 1);
	ctx->client = client;
	return ctx;
}

static void ctx_free(struct tls_ctx *ctx)
{
	for (uint32_t i = 0; i < ctx->pair_count; i++)
		pair_free(&ctx->pairs[i]);
	if (ctx->client_ctx)
		wolfSSL_CTX_free(ctx->client_ctx);
	free(ctx);
}

/* The pair of old that a failed pair of the new settings falls back to:
 * the same certificate file, else the same position. */
static const struct tls_pair *old_pair_for(const struct tls_ctx *old, const char *cert_file,
					   uint32_t i)
{
	if (!old)
		return NULL;
	for (uint32_t k = 0; k < old->pair_count; k++)
		if (strcmp(old->pairs[k].cert_file, cert_file) == 0)
			return &old->pairs[k];
	return i < old->pair_count ? &old->pairs[i] : NULL;
}

struct tls_ctx *tls_server_ctx_reload(const struct tls_ctx *old,
				      const struct tls_server_settings *s,
				      void (*report)(void *arg, const char *message), void *arg,
				      char *err, size_t errlen)
{
	RMX_ASSERT(s->pair_count >= 1 && s->pair_count <= TLS_CERT_PAIRS_MAX);
	RMX_ASSERT(!old || !old->client);
	struct tls_ctx *ctx = ctx_alloc(false);
	if (!ctx) {
		set_err(err, errlen, s->pairs[0].cert_file, "out of memory");
		return NULL;
	}
	for (uint32_t i = 0; i < s->pair_count; i++) {
		const char *file;
		struct tls_pair *p = &ctx->pairs[i];
		ctx->pair_count = i + 1;
		const char *why = pair_load(p, &s->pairs[i], s, ctx, &file);
		if (!why)
			continue;
		const struct tls_pair *keep = old_pair_for(old, s->pairs[i].cert_file, i);
		char msg[TLS_ERROR_TEXT_BYTES + PATH_MAX];
		if (!keep) {
			set_err(err, errlen, file, why);
			ctx_free(ctx);
			return NULL;
		}
		snprintf(msg, sizeof(msg), "%s: %s; keeping the certificate loaded from %s", file,
			 why, keep->cert_file);
		pair_free(p);
		const char *why_copy = pair_copy(p, keep, s, ctx);
		if (why_copy) {
			set_err(err, errlen, keep->cert_file, why_copy);
			ctx_free(ctx);
			return NULL;
		}
		if (report)
			report(arg, msg);
	}
	return ctx;
}

struct tls_ctx *tls_server_ctx_new(const struct tls_server_settings *s, char *err, size_t errlen)
{
	return tls_server_ctx_reload(NULL, s, NULL, NULL, err, errlen);
}

struct tls_ctx *tls_client_ctx_new(const struct tls_client_settings *s, char *err, size_t errlen)
{
	struct tls_ctx *ctx = ctx_alloc(true);
	const char *what = s->ca_file && s->ca_file[0] ? s->ca_file : "upstream TLS";
	if (!ctx || !(ctx->client_ctx = wolfSSL_CTX_new(wolfSSLv23_client_method()))) {
		set_err(err, errlen, what, "out of memory");
		if (ctx)
			ctx_free(ctx);
		return NULL;
	}
	const char *why = apply_common(ctx->client_ctx, s->min_version, s->ciphers);
	if (!why && s->ca_file && s->ca_file[0]) {
		if (wolfSSL_CTX_load_verify_locations(ctx->client_ctx, s->ca_file, NULL) !=
		    WOLFSSL_SUCCESS)
			why = "no CA certificate could be loaded from it";
		else
			wolfSSL_CTX_set_verify(ctx->client_ctx, WOLFSSL_VERIFY_PEER, NULL);
	} else if (!why) {
		wolfSSL_CTX_set_verify(ctx->client_ctx, WOLFSSL_VERIFY_NONE, NULL);
	}
	if (why) {
		set_err(err, errlen, what, why);
		ctx_free(ctx);
		return NULL;
	}
	return ctx;
}

void tls_ctx_ref(struct tls_ctx *ctx)
{
	unsigned prev = atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
	RMX_ASSERT(prev > 0);
}

void tls_ctx_unref(struct tls_ctx *ctx)
{
	if (!ctx)
		return;
	unsigned prev = atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel);
	RMX_ASSERT(prev > 0);
	if (prev == 1)
		ctx_free(ctx);
}

bool tls_ctx_is_client(const struct tls_ctx *ctx)
{
	return ctx->client;
}

uint32_t tls_ctx_cert_count(const struct tls_ctx *ctx)
{
	return ctx->pair_count;
}

const char *tls_ctx_cert_file(const struct tls_ctx *ctx, uint32_t i)
{
	RMX_ASSERT(i < ctx->pair_count);
	return ctx->pairs[i].cert_file;
}

int64_t tls_ctx_cert_not_after(const struct tls_ctx *ctx, uint32_t i)
{
	RMX_ASSERT(i < ctx->pair_count);
	return ctx->pairs[i].not_after_unix;
}

void *tls_ctx_library_handle(const struct tls_ctx *ctx)
{
	return ctx->client ? ctx->client_ctx : ctx->pairs[0].ssl_ctx;
}
