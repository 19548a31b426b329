/*
 * metrics.h - per-worker counters, gauges and histograms, and their
 * Prometheus text exposition (format 0.0.4).
 *
 * Each worker owns one struct metrics_worker (cache-line aligned, so no two
 * workers ever share a line) and is its only writer. Updates are relaxed
 * atomic load + relaxed atomic store of the worker's own uint64_t: on x86-64
 * that is a plain mov pair, no lock prefix and no read-modify-write
 * contention, yet no data race in the C memory model, so the sanitizers stay
 * quiet. A scrape, on any worker thread, reads every worker's values with
 * relaxed atomic loads and sums (or takes the maximum of) them. A scrape sees
 * each value whole but not a snapshot across values: a histogram's _sum may
 * lag or lead its buckets by the observation in flight. _count is derived
 * from the buckets it is printed with, so buckets and _count always agree.
 *
 * The metric set is one static table in metrics.c (name with its unit,
 * type, help, label set, aggregation); metrics_render walks it in order, so
 * the output is deterministic.
 */
#ifndef RINGMX_METRICS_H
#define RINGMX_METRICS_H

#include <string.h>

#include "../common/base.h"
#include "../common/bounds.h"
#include "../proto/sasl.h"
#include "../proto/smtp_lex.h"
#include "overload.h"

/* Why a connection was refused before its session started. */
enum metrics_conn_reject {
	METRICS_CONN_REJECT_LIMIT,    /* connection limit (421 4.3.2) */
	METRICS_CONN_REJECT_PER_IP,   /* per-client-address limit */
	METRICS_CONN_REJECT_PROXY,    /* bad or untrusted PROXY protocol header */
	METRICS_CONN_REJECT_SHUTDOWN, /* the worker is draining */
	METRICS_CONN_REJECT_OVERLOAD, /* the hard overload watermark (421 4.3.2) */
	METRICS_CONN_REJECT_COUNT
};

/* What pre-greeting screening found (a connection may count in several). */
enum metrics_screen_verdict {
	METRICS_SCREEN_PASS,     /* waited for the final greeting */
	METRICS_SCREEN_PREGREET, /* talked before it */
	METRICS_SCREEN_HTTP,     /* an HTTP request as its first command */
	METRICS_SCREEN_BARE_LF,  /* a first command ended by a bare LF */
	METRICS_SCREEN_COUNT
};

/* Why a recipient was refused. */
enum metrics_rcpt_reject {
	METRICS_RCPT_REJECT_RELAY_DENIED, /* 554 5.7.1: not a served domain */
	METRICS_RCPT_REJECT_UNKNOWN_USER, /* 550 5.1.1: not in the recipient table */
	METRICS_RCPT_REJECT_TOO_MANY,     /* 452 4.5.3 */
	METRICS_RCPT_REJECT_SYNTAX,       /* 501 / 553 / 555 */
	METRICS_RCPT_REJECT_STORAGE_FULL, /* 452 4.3.1 */
	METRICS_RCPT_REJECT_OTHER,
	METRICS_RCPT_REJECT_COUNT
};

/* Outcome of one forwarding attempt of one message to one upstream. */
enum metrics_forward_result {
	METRICS_FORWARD_SUCCESS,  /* 2xx for every recipient tried */
	METRICS_FORWARD_TEMPFAIL, /* a 4xx: retried later */
	METRICS_FORWARD_PERMFAIL, /* a 5xx: bounced */
	METRICS_FORWARD_ERROR,    /* connection or protocol failure */
	METRICS_FORWARD_RESULT_COUNT
};

/* What STARTTLS to an upstream came to, once per connection that wanted it
 * (upstream_tls opportunistic or required). */
enum metrics_upstream_tls_result {
	METRICS_UPSTREAM_TLS_VERIFIED,    /* encrypted, chain and name checked (upstream_ca) */
	METRICS_UPSTREAM_TLS_UNVERIFIED,  /* encrypted, certificate not checked */
	METRICS_UPSTREAM_TLS_FAILED,      /* the handshake failed or timed out */
	METRICS_UPSTREAM_TLS_NOT_OFFERED, /* STARTTLS not offered or refused */
	METRICS_UPSTREAM_TLS_RESULT_COUNT
};

/* Outcome of a server-side TLS handshake (STARTTLS). */
enum metrics_tls_result {
	METRICS_TLS_FULL,    /* a full handshake completed */
	METRICS_TLS_RESUMED, /* a session resumption completed */
	METRICS_TLS_FAILED,  /* alert, protocol error or timeout */
	METRICS_TLS_RESULT_COUNT
};

/* The protocol of a server-side handshake (its second label). */
enum metrics_tls_version {
	METRICS_TLS_V1_2,
	METRICS_TLS_V1_3,
	METRICS_TLS_V_UNKNOWN, /* not negotiated (a failure) or anything else */
	METRICS_TLS_VERSION_COUNT
};

/* Certificates with an expiry gauge: as many as tls_cert pairs. */
#define METRICS_TLS_CERTS_MAX 8
/* Longest certificate label (its file), terminator included; longer are cut. */
#define METRICS_TLS_CERT_LABEL_MAX_BYTES 256

/* Outcome of one AUTH exchange (per mechanism, proto/sasl.h). */
enum metrics_auth_result {
	METRICS_AUTH_SUCCESS,   /* 235 */
	METRICS_AUTH_FAILURE,   /* 535: wrong password, unknown user, another authzid */
	METRICS_AUTH_MALFORMED, /* bad base64, a broken PLAIN/LOGIN message, too long */
	METRICS_AUTH_CANCELLED, /* the client sent "*" */
	METRICS_AUTH_TEMPFAIL,  /* 454: the check could not run (queue full) */
	METRICS_AUTH_RESULT_COUNT
};

/* Reply codes counted by exact code; anything else counts as "other". */
#define METRICS_REPLY_CODES 26
#define METRICS_REPLY_OTHER METRICS_REPLY_CODES
#define METRICS_REPLY_SLOTS (METRICS_REPLY_CODES + 1)

/* Histogram bucket bounds (upper bounds, inclusive, as Prometheus' le):
 * latencies 50 us .. 60 s; sizes 1 KiB .. 64 MiB; batches 1 .. 1024.
 * Each histogram has one more bucket than bounds: +Inf. */
#define METRICS_LATENCY_BOUNDS 19
#define METRICS_SIZE_BOUNDS 9
#define METRICS_BATCH_BOUNDS 11

struct metrics_latency_hist {
	uint64_t sum_ns;
	uint64_t bucket[METRICS_LATENCY_BOUNDS + 1]; /* not cumulative */
};
struct metrics_size_hist {
	uint64_t sum_bytes;
	uint64_t bucket[METRICS_SIZE_BOUNDS + 1];
};
struct metrics_batch_hist {
	uint64_t sum_records;
	uint64_t bucket[METRICS_BATCH_BOUNDS + 1];
};

/*
 * One worker's metrics. Zero it with metrics_worker_init before use; only
 * the owning worker writes it, through the helpers below. Gauges are set by
 * their owner; the aggregation across workers (sum or max) is fixed per
 * metric in the table in metrics.c.
 */
struct __attribute__((aligned(64))) metrics_worker {
	/* Connections. */
	uint64_t connections_accepted;
	uint64_t connections_active; /* gauge */
	uint64_t connections_rejected[METRICS_CONN_REJECT_COUNT];
	uint64_t screen_verdicts[METRICS_SCREEN_COUNT];
	uint64_t overload_state;                     /* gauge: 0 normal, 1 stress, 2 refuse */
	uint64_t overload_reason[OVERLOAD_REASON_COUNT]; /* gauge: each measure's level */
	uint64_t accept_errors;       /* accepts that failed (EMFILE, ENOMEM ...) */
	uint64_t connections_overflow_closed; /* closed past the carried-input hard bound */
	/* SMTP. */
	uint64_t commands[SMTP_VERB_COUNT];
	uint64_t replies[METRICS_REPLY_SLOTS];
	uint64_t messages_accepted;
	uint64_t flow_held;             /* 250s held by inflow control (core/flow) */
	uint64_t received_bytes;
	uint64_t inflight_data_bytes;   /* gauge: body buffers not yet durable */
	uint64_t inflight_data_refused; /* transactions ended by max_inflight_data_bytes */
	uint64_t smtp_timeouts;         /* sessions ended by a deadline (421 4.4.2) */
	uint64_t recipients_accepted;
	uint64_t recipients_rejected[METRICS_RCPT_REJECT_COUNT];
	struct metrics_latency_hist transaction_duration; /* MAIL to the final 250 */
	struct metrics_latency_hist ack_latency;          /* end of data to 250 */
	struct metrics_size_hist message_size;
	/* Store. */
	struct metrics_latency_hist fsync_latency;
	struct metrics_batch_hist commit_batch;
	uint64_t store_bytes;    /* gauge */
	uint64_t store_segments; /* gauge */
	uint64_t store_sealed_damaged; /* gauge, set at start-up */
	uint64_t store_failed;         /* gauge: 1 while the shard refuses data after an I/O error */
	uint64_t store_commit_failures;
	uint64_t store_spare_failures;
	uint64_t delivery_log_failures;
	uint64_t forward_set_aside;    /* records that did not read back: never sent */
	uint64_t forward_record_read_failures; /* reads that failed or came short: retried */
	/* Forwarding. */
	uint64_t forward_pending_records;           /* gauge */
	uint64_t forward_record_buffer_bytes;       /* gauge */
	uint64_t forward_oldest_pending_age_s;      /* gauge; max over workers */
	uint64_t forward_attempts[METRICS_FORWARD_RESULT_COUNT];
	uint64_t forward_deferrals;
	uint64_t forward_bounces;
	struct metrics_latency_hist forward_latency; /* accept to upstream 250 */
	uint64_t upstream_up[UPSTREAMS_MAX];         /* gauge 0/1; max over workers */
	uint64_t upstream_tls[METRICS_UPSTREAM_TLS_RESULT_COUNT];
	/* Provided buffer ring. */
	uint64_t buffer_ring_enobufs;
	uint64_t buffer_ring_in_use; /* gauge */

	/* io_uring submissions (ring.h backlog). */
	uint64_t ring_backlog_sqes;      /* SQEs parked while the kernel refused submissions */
	uint64_t ring_submit_failures;   /* submissions the kernel refused */
	/* Logs. */
	uint64_t log_lines_dropped;
	/* The metrics endpoint. */
	uint64_t http_connections_rejected;
	/* TLS. */
	/* [result * METRICS_TLS_VERSION_COUNT + version] */
	uint64_t tls_handshakes[METRICS_TLS_RESULT_COUNT * METRICS_TLS_VERSION_COUNT];
	/* notAfter (Unix seconds) of the current configuration's certificates,
	 * by position (gauge; 0: none there) */
	uint64_t tls_cert_expiry[METRICS_TLS_CERTS_MAX];
	/* AUTH: [mechanism * METRICS_AUTH_RESULT_COUNT + result]. */
	uint64_t auth_attempts[SASL_MECH_COUNT * METRICS_AUTH_RESULT_COUNT];
};

/* Longest upstream label ("host:port"), terminator included. */
#define METRICS_UPSTREAM_LABEL_MAX_BYTES (SMTP_DOMAIN_MAX_BYTES + 8)
#define METRICS_VERSION_MAX_BYTES 64

/* What does not change while the process runs: filled once at start-up by
 * metrics_static_init, then read-only (any thread). */
struct metrics_static {
	char version[METRICS_VERSION_MAX_BYTES];
	bool fsync_disabled;
	unsigned upstream_count;
	char upstream[UPSTREAMS_MAX][METRICS_UPSTREAM_LABEL_MAX_BYTES];
	unsigned tls_cert_count;
	char tls_cert[METRICS_TLS_CERTS_MAX][METRICS_TLS_CERT_LABEL_MAX_BYTES];
};

/* Zeroes a worker's metrics. The owning worker calls it before it starts. */
void metrics_worker_init(struct metrics_worker *m);

/*
 * Fills st: the version string (build_info), whether fsync is disabled, and
 * the upstream labels in configuration order (index i is upstream_up[i]).
 * Strings are copied. -EINVAL if there are more than UPSTREAMS_MAX upstreams
 * or a string does not fit; st is then unchanged.
 */
RMX_MUST_CHECK int metrics_static_init(struct metrics_static *st, const char *version,
				       bool fsync_disabled, const char *const *upstreams,
				       unsigned upstream_count);

/* --- Hot path: the owning worker only. --------------------------------- */

static inline void metrics_add(uint64_t *v, uint64_t n)
{
	__atomic_store_n(v, __atomic_load_n(v, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline void metrics_inc(uint64_t *v)
{
	metrics_add(v, 1);
}

/* A gauge going down; going below zero is a bug (asserted). */
static inline void metrics_dec(uint64_t *v)
{
	uint64_t old = __atomic_load_n(v, __ATOMIC_RELAXED);
	RMX_ASSERT(old > 0);
	__atomic_store_n(v, old - 1, __ATOMIC_RELAXED);
}

static inline void metrics_set(uint64_t *v, uint64_t value)
{
	__atomic_store_n(v, value, __ATOMIC_RELAXED);
}

/* Index of a reply code in metrics_worker.replies: the code's own slot
 * for the codes the server sends, METRICS_REPLY_OTHER for anything else. */
unsigned metrics_reply_slot(unsigned code);

static inline void metrics_count_reply(struct metrics_worker *m, unsigned code)
{
	metrics_inc(&m->replies[metrics_reply_slot(code)]);
}

static inline void metrics_count_command(struct metrics_worker *m, enum smtp_verb v)
{
	RMX_ASSERT((unsigned)v < SMTP_VERB_COUNT);
	metrics_inc(&m->commands[v]);
}

static inline void metrics_count_auth(struct metrics_worker *m, enum sasl_mech mech,
				      enum metrics_auth_result r)
{
	RMX_ASSERT((unsigned)mech < SASL_MECH_COUNT && (unsigned)r < METRICS_AUTH_RESULT_COUNT);
	metrics_inc(&m->auth_attempts[mech * METRICS_AUTH_RESULT_COUNT + r]);
}

/* A server-side handshake's outcome; version as wolfSSL names it
 * ("TLSv1.3"), NULL or anything else counting as unknown. */
static inline void metrics_count_tls(struct metrics_worker *m, enum metrics_tls_result r,
				     const char *version)
{
	RMX_ASSERT((unsigned)r < METRICS_TLS_RESULT_COUNT);
	enum metrics_tls_version v = METRICS_TLS_V_UNKNOWN;
	if (version && strcmp(version, "TLSv1.3") == 0)
		v = METRICS_TLS_V1_3;
	else if (version && strcmp(version, "TLSv1.2") == 0)
		v = METRICS_TLS_V1_2;
	metrics_inc(&m->tls_handshakes[r * METRICS_TLS_VERSION_COUNT + v]);
}

/*
 * The labels of ringmx_tls_cert_expiry_timestamp_seconds: the certificate
 * files configured at start-up, by position (at most METRICS_TLS_CERTS_MAX;
 * each cut to METRICS_TLS_CERT_LABEL_MAX_BYTES - 1). Start-up only.
 */
void metrics_static_set_certs(struct metrics_static *st, const char *const *files,
			      unsigned count);

/* Record one observation. Durations in nanoseconds (rendered as seconds). */
void metrics_observe_latency_ns(struct metrics_latency_hist *h, uint64_t duration_ns);
void metrics_observe_size_bytes(struct metrics_size_hist *h, uint64_t size_bytes);
void metrics_observe_batch_records(struct metrics_batch_hist *h, uint64_t records);

/* --- Scrape: any thread. ----------------------------------------------- */

/*
 * Renders the Prometheus text exposition (0.0.4) of the n workers' metrics,
 * summed (or maxed, per metric), plus st's, into buf[0..cap). Returns the
 * length of the whole exposition; when that exceeds cap, buf holds a
 * truncated prefix and the caller should retry with a larger buffer (a dry
 * run with NULL, 0 only measures). No terminating NUL. No allocation.
 * Values may grow between two calls: size buffers with metrics_render_bound.
 */
size_t metrics_render(const struct metrics_worker *const *workers, unsigned n,
		      const struct metrics_static *st, char *buf, size_t cap);

/* An upper bound of metrics_render's result for any values of the counters
 * (every number at its longest), for these static facts. */
size_t metrics_render_bound(const struct metrics_static *st);

/* The metric table, in rendering order (the tests check its naming). */
enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };
struct metrics_desc {
	const char *name; /* unit last, then "_total" for counters */
	const char *unit; /* "" for plain counts */
	const char *help;
	uint8_t type;     /* enum metrics_type */
	uint8_t labels;   /* which label set (private to metrics.c) */
	uint8_t from;     /* sum or max over workers, or a static fact */
	uint8_t buckets;  /* histograms: which bucket bounds */
	uint32_t offset;  /* in struct metrics_worker; labelled: of element 0 */
};
extern const struct metrics_desc metrics_table[];
extern const unsigned metrics_table_count;

/* Reply codes counted by exact code, in slot order. */
extern const uint16_t metrics_reply_codes[METRICS_REPLY_CODES];

#endif
