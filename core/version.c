/*
 * version.c - the report of `ringmx --version`.
 *
 * Build facts come from the compiler: ringmx's version and the git commit
 * (both passed in by CMake at configure time), liburing's version from its
 * headers when they carry one (IO_URING_VERSION_MAJOR/MINOR, liburing 2.4
 * and later) or else the one pkg-config reported at configure time,
 * which wolfSSL build CMake linked (RINGMX_WOLFSSL_BUILD) and wolfSSL's
 * acceleration from the macros of wolfSSL's own options.h. The
 * wolfSSL version is asked of the library loaded at run time, which is the
 * one that matters when a distribution updates it. Kernel facts are read
 * now: one small ring is set up, its granted features are decoded to names,
 * and the opcode probe says which operations the gateway uses are there.
 * Start-up only (blocking, main thread); not on any hot path.
 */
#include "version.h"

#include <errno.h>
#include <liburing.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "../common/base.h"

#ifndef RINGMX_VERSION
#define RINGMX_VERSION "dev"
#endif
#ifndef RINGMX_GIT_COMMIT
#define RINGMX_GIT_COMMIT "unknown"
#endif
#ifndef RINGMX_URING_PC_VERSION
#define RINGMX_URING_PC_VERSION "unknown"
#endif

#define VERSION_STR2(x) #x
#define VERSION_STR(x) VERSION_STR2(x)

/* The entries of the ring set up to read the kernel's features. */
#define VERSION_PROBE_RING_ENTRIES 4u

struct bit_name {
	uint32_t bit;
	const char *name;
};

/* IORING_FEAT_* as the kernel's io_uring.h names them, lower case; the
 * bits newer than liburing 2.3's header are spelled out. */
static const struct bit_name feature_names[] = {
	{ IORING_FEAT_SINGLE_MMAP, "single_mmap" },
	{ IORING_FEAT_NODROP, "nodrop" },
	{ IORING_FEAT_SUBMIT_STABLE, "submit_stable" },
	{ IORING_FEAT_RW_CUR_POS, "rw_cur_pos" },
	{ IORING_FEAT_CUR_PERSONALITY, "cur_personality" },
	{ IORING_FEAT_FAST_POLL, "fast_poll" },
	{ IORING_FEAT_POLL_32BITS, "poll_32bits" },
	{ IORING_FEAT_SQPOLL_NONFIXED, "sqpoll_nonfixed" },
	{ IORING_FEAT_EXT_ARG, "ext_arg" },
	{ IORING_FEAT_NATIVE_WORKERS, "native_workers" },
	{ IORING_FEAT_RSRC_TAGS, "rsrc_tags" },
	{ IORING_FEAT_CQE_SKIP, "cqe_skip" },
	{ IORING_FEAT_LINKED_FILE, "linked_file" },
	{ 1u << 13, "reg_reg_ring" },
	{ 1u << 14, "recvsend_bundle" },
	{ 1u << 15, "min_timeout" },
	{ 1u << 16, "rw_attr" },
	{ 1u << 17, "no_iowait" },
};

struct op_name {
	int op;
	const char *name;
};

/* The operations the gateway submits (core/), in the probe's terms. */
static const struct op_name gateway_ops[] = {
	{ IORING_OP_ACCEPT, "accept" },
	{ IORING_OP_RECV, "recv" },
	{ IORING_OP_SEND, "send" },
	{ IORING_OP_CONNECT, "connect" },
	{ IORING_OP_READ, "read" },
	{ IORING_OP_WRITE, "write" },
	{ IORING_OP_WRITEV, "writev" },
	{ IORING_OP_FSYNC, "fsync" },
	{ IORING_OP_FALLOCATE, "fallocate" },
	{ IORING_OP_OPENAT, "openat" },
	{ IORING_OP_CLOSE, "close" },
	{ IORING_OP_MKDIRAT, "mkdirat" },
	{ IORING_OP_UNLINKAT, "unlinkat" },
	{ IORING_OP_ASYNC_CANCEL, "async_cancel" },
};

/* Appends word to out (a space before all but the first), truncating. */
static void append_word(char *out, size_t out_bytes, const char *word)
{
	size_t used = strlen(out);
	if (used + 1 >= out_bytes)
		return;
	snprintf(out + used, out_bytes - used, "%s%s", used ? " " : "", word);
}

/* The names of the bits set in features, space-separated ("unknown(0x...)"
 * for bits without a name, "none" for zero), truncated to out_bytes. */
static void version_features_text(uint32_t features, char *out, size_t out_bytes)
{
	RMX_ASSERT(out_bytes > 0);
	out[0] = '\0';
	uint32_t rest = features;
	for (size_t i = 0; i < RMX_ARRAY_LEN(feature_names); i++) {
		if (features & feature_names[i].bit) {
			append_word(out, out_bytes, feature_names[i].name);
			rest &= ~feature_names[i].bit;
		}
	}
	if (rest) {
		char word[32];
		snprintf(word, sizeof(word), "unknown(0x%x)", rest);
		append_word(out, out_bytes, word);
	}
	if (!out[0])
		snprintf(out, out_bytes, "none");
}

/* wolfSSL's compiled-in acceleration, from its options.h; NULL ends it. */
static const char *const wolfssl_acceleration[] = {
#ifdef WOLFSSL_AESNI
	"aesni",
#endif
#ifdef USE_INTEL_SPEEDUP
	"intel_speedup",
#endif
#ifdef WOLFSSL_SP_X86_64_ASM
	"sp_x86_64_asm",
#endif
#if defined(WOLFSSL_SP_X86_64) && !defined(WOLFSSL_SP_X86_64_ASM)
	"sp_int_x86_64",
#endif
#ifdef WOLFSSL_SP_ASM
	"sp_asm",
#endif
#ifdef WOLFSSL_HAVE_SP_RSA
	"sp_rsa",
#endif
#ifdef WOLFSSL_HAVE_SP_DH
	"sp_dh",
#endif
#ifdef WOLFSSL_HAVE_SP_ECC
	"sp_ecc",
#endif
	NULL,
};

/* Which wolfSSL the build linked, as CMake found it (RINGMX_WOLFSSL_BUILD):
 * the accelerated one built from Debian's source, or Debian's package. */
static const char *wolfssl_build(void)
{
#ifndef RINGMX_WOLFSSL_BUILD
#define RINGMX_WOLFSSL_BUILD "unknown"
#endif
	if (strcmp(RINGMX_WOLFSSL_BUILD, "accelerated") == 0)
		return "accelerated private build (Debian's source with AES-NI and assembly)";
	if (strcmp(RINGMX_WOLFSSL_BUILD, "debian") == 0)
		return "Debian's build (libwolfssl, without AES-NI and assembly)";
	return "unknown";
}

/* The liburing version: its headers' if they have one, else pkg-config's. */
static const char *liburing_version(void)
{
#if defined(IO_URING_VERSION_MAJOR) && defined(IO_URING_VERSION_MINOR)
	return VERSION_STR(IO_URING_VERSION_MAJOR) "." VERSION_STR(IO_URING_VERSION_MINOR);
#else
	return RINGMX_URING_PC_VERSION;
#endif
}

/* The kernel lines: features granted to a fresh ring, and the probe. */
static void print_kernel(FILE *out)
{
	struct io_uring ring;
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	int rc = io_uring_queue_init_params(VERSION_PROBE_RING_ENTRIES, &ring, &p);
	if (rc != 0) {
		fprintf(out, "io_uring: unavailable (io_uring_setup: %s)\n", strerror(-rc));
		return;
	}
	char text[512];
	version_features_text(p.features, text, sizeof(text));
	fprintf(out, "io_uring features: %s\n", text);
	struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
	if (!probe) {
		fprintf(out, "io_uring ops: unknown (no probe)\n");
	} else {
		char have[512] = "", missing[512] = "";
		for (size_t i = 0; i < RMX_ARRAY_LEN(gateway_ops); i++) {
			bool ok = io_uring_opcode_supported(probe, gateway_ops[i].op);
			append_word(ok ? have : missing, ok ? sizeof(have) : sizeof(missing),
				    gateway_ops[i].name);
		}
		fprintf(out, "io_uring ops: %s\n", have[0] ? have : "none");
		fprintf(out, "io_uring ops missing: %s\n", missing[0] ? missing : "none");
		io_uring_free_probe(probe);
	}
	io_uring_queue_exit(&ring);
	/* What ring_init asks for first: a worker gets it when this works. */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	rc = io_uring_queue_init_params(VERSION_PROBE_RING_ENTRIES, &ring, &p);
	fprintf(out, "io_uring single_issuer+defer_taskrun: %s\n", rc == 0 ? "yes" : "no");
	if (rc == 0)
		io_uring_queue_exit(&ring);
}

int version_print(FILE *out)
{
	char accel[256] = "";
	for (size_t i = 0; wolfssl_acceleration[i]; i++)
		append_word(accel, sizeof(accel), wolfssl_acceleration[i]);
	fprintf(out, "ringmx %s\n", RINGMX_VERSION);
	fprintf(out, "commit: %s\n", RINGMX_GIT_COMMIT);
	fprintf(out, "liburing: %s\n", liburing_version());
	fprintf(out, "wolfssl: %s (built against %s)\n", wolfSSL_lib_version(),
		LIBWOLFSSL_VERSION_STRING);
	fprintf(out, "wolfssl build: %s\n", wolfssl_build());
	fprintf(out, "wolfssl acceleration: %s\n", accel[0] ? accel : "none");
	print_kernel(out);
	if (fflush(out) != 0 || ferror(out))
		return -1;
	return 0;
}
