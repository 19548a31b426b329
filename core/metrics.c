/*
 * metrics.c - the metric table, histogram observation and the Prometheus
 * text exposition.
 *
 * Workers write their own struct metrics_worker through the inline helpers
 * in metrics.h; a scrape (the /metrics endpoint, on whichever worker the
 * request landed) calls metrics_render, which walks metrics_table in order,
 * reads every worker's value with a relaxed atomic load, aggregates (sum,
 * or max for "the worst worker" gauges), and formats. Histogram buckets are
 * stored per bucket and made cumulative here, so each worker's observe is a
 * single store into one bucket plus one into the sum.
 *
 * Invariants: every table row's name ends with its unit (and "_total" for
 * counters; checked by the tests); the output never exceeds cap bytes;
 * rendering allocates nothing and keeps no state between calls.
 */
#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* --- Bucket bounds ------------------------------------------------------- */

#define NS_PER_US 1000ull
#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

static const uint64_t latency_bound_ns[METRICS_LATENCY_BOUNDS] = {
	50 * NS_PER_US,  100 * NS_PER_US, 250 * NS_PER_US, 500 * NS_PER_US,
	1 * NS_PER_MS,   2500 * NS_PER_US, 5 * NS_PER_MS,  10 * NS_PER_MS,
	25 * NS_PER_MS,  50 * NS_PER_MS,  100 * NS_PER_MS, 250 * NS_PER_MS,
	500 * NS_PER_MS, 1 * NS_PER_S,    2500 * NS_PER_MS, 5 * NS_PER_S,
	10 * NS_PER_S,   30 * NS_PER_S,   60 * NS_PER_S,
};

static const uint64_t size_bound_bytes[METRICS_SIZE_BOUNDS] = {
	1ull << 10, 1ull << 12, 1ull << 14, 1ull << 16, 1ull << 18,
	1ull << 20, 1ull << 22, 1ull << 24, 1ull << 26,
};

static const uint64_t batch_bound_records[METRICS_BATCH_BOUNDS] = {
	1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024,
};

/* How a histogram's raw integers become Prometheus numbers: value =
 * raw / 10^scale_digits (nanoseconds to seconds: 9). */
struct bucket_set {
	const uint64_t *bound;
	unsigned bounds;
	unsigned scale_digits;
};

enum { BUCKETS_NONE, BUCKETS_LATENCY, BUCKETS_SIZE, BUCKETS_BATCH };

static const struct bucket_set bucket_sets[] = {
	[BUCKETS_NONE] = { NULL, 0, 0 },
	[BUCKETS_LATENCY] = { latency_bound_ns, METRICS_LATENCY_BOUNDS, 9 },
	[BUCKETS_SIZE] = { size_bound_bytes, METRICS_SIZE_BOUNDS, 0 },
	[BUCKETS_BATCH] = { batch_bound_records, METRICS_BATCH_BOUNDS, 0 },
};

/* render reads a histogram as {sum, bucket[bounds + 1]} at one offset. */
_Static_assert(offsetof(struct metrics_latency_hist, bucket) == sizeof(uint64_t), "layout");
_Static_assert(offsetof(struct metrics_size_hist, bucket) == sizeof(uint64_t), "layout");
_Static_assert(offsetof(struct metrics_batch_hist, bucket) == sizeof(uint64_t), "layout");
#define HIST_BUCKETS_MAX (METRICS_LATENCY_BOUNDS + 1)
_Static_assert(METRICS_SIZE_BOUNDS < HIST_BUCKETS_MAX && METRICS_BATCH_BOUNDS < HIST_BUCKETS_MAX,
	       "the latency histogram has the most buckets");

/* --- Reply codes --------------------------------------------------------- */

/* Every code in proto/smtp_reply.c's catalogue (the tests check it) and
 * proto/sasl.c's (504). */
const uint16_t metrics_reply_codes[METRICS_REPLY_CODES] = {
	214, 220, 221, 235, 250, 252, 334, 354, 421, 451, 452, 454,
	500, 501, 502, 503, 504, 521, 530, 535, 538, 550, 552, 553, 554, 555,
};

static const char *const reply_code_label[METRICS_REPLY_SLOTS] = {
	"214", "220", "221", "235", "250", "252", "334", "354", "421", "451", "452", "454",
	"500", "501", "502", "503", "504", "521", "530", "535", "538", "550", "552", "553",
	"554", "555", "other",
};

/* slot + 1 by code; 0 (the default) means "other". */
static const uint8_t reply_slot_by_code[600] = {
	[214] = 1,  [220] = 2,  [221] = 3,  [235] = 4,  [250] = 5,  [252] = 6,
	[334] = 7,  [354] = 8,  [421] = 9,  [451] = 10, [452] = 11, [454] = 12,
	[500] = 13, [501] = 14, [502] = 15, [503] = 16, [504] = 17, [521] = 18,
	[530] = 19, [535] = 20, [538] = 21, [550] = 22, [552] = 23, [553] = 24,
	[554] = 25, [555] = 26,
};
_Static_assert(METRICS_REPLY_CODES == 26, "reply_slot_by_code lists every code");

unsigned metrics_reply_slot(unsigned code)
{
	if (code >= RMX_ARRAY_LEN(reply_slot_by_code) || reply_slot_by_code[code] == 0)
		return METRICS_REPLY_OTHER;
	return reply_slot_by_code[code] - 1u;
}

/* --- Label sets ---------------------------------------------------------- */

static const char *const conn_reject_label[METRICS_CONN_REJECT_COUNT] = {
	[METRICS_CONN_REJECT_LIMIT] = "limit",
	[METRICS_CONN_REJECT_PER_IP] = "per_ip",
	[METRICS_CONN_REJECT_PROXY] = "proxy",
	[METRICS_CONN_REJECT_SHUTDOWN] = "shutdown",
	[METRICS_CONN_REJECT_OVERLOAD] = "overload",
};

static const char *const screen_label[METRICS_SCREEN_COUNT] = {
	[METRICS_SCREEN_PASS] = "pass",
	[METRICS_SCREEN_PREGREET] = "pregreet",
	[METRICS_SCREEN_HTTP] = "http",
	[METRICS_SCREEN_BARE_LF] = "bare_lf",
};

static const char *const rcpt_reject_label[METRICS_RCPT_REJECT_COUNT] = {
	[METRICS_RCPT_REJECT_RELAY_DENIED] = "relay_denied",
	[METRICS_RCPT_REJECT_UNKNOWN_USER] = "unknown_user",
	[METRICS_RCPT_REJECT_TOO_MANY] = "too_many",
	[METRICS_RCPT_REJECT_SYNTAX] = "syntax",
	[METRICS_RCPT_REJECT_STORAGE_FULL] = "storage_full",
	[METRICS_RCPT_REJECT_OTHER] = "other",
};

static const char *const forward_result_label[METRICS_FORWARD_RESULT_COUNT] = {
	[METRICS_FORWARD_SUCCESS] = "success",
	[METRICS_FORWARD_TEMPFAIL] = "tempfail",
	[METRICS_FORWARD_PERMFAIL] = "permfail",
	[METRICS_FORWARD_ERROR] = "error",
};

/* The second label of LABELS_AUTH ("result"). */
static const char *const auth_result_label[METRICS_AUTH_RESULT_COUNT] = {
	[METRICS_AUTH_SUCCESS] = "success",
	[METRICS_AUTH_FAILURE] = "failure",
	[METRICS_AUTH_MALFORMED] = "malformed",
	[METRICS_AUTH_CANCELLED] = "cancelled",
	[METRICS_AUTH_TEMPFAIL] = "tempfail",
};

static const char *const upstream_tls_label[METRICS_UPSTREAM_TLS_RESULT_COUNT] = {
	[METRICS_UPSTREAM_TLS_VERIFIED] = "verified",
	[METRICS_UPSTREAM_TLS_UNVERIFIED] = "unverified",
	[METRICS_UPSTREAM_TLS_FAILED] = "failed",
	[METRICS_UPSTREAM_TLS_NOT_OFFERED] = "not_offered",
};

/* The second label of LABELS_TLS_RESULT ("version"). */
static const char *const tls_version_label[METRICS_TLS_VERSION_COUNT] = {
	[METRICS_TLS_V1_2] = "TLSv1.2",
	[METRICS_TLS_V1_3] = "TLSv1.3",
	[METRICS_TLS_V_UNKNOWN] = "unknown",
};

static const char *const tls_result_label[METRICS_TLS_RESULT_COUNT] = {
	[METRICS_TLS_FULL] = "full",
	[METRICS_TLS_RESUMED] = "resumed",
	[METRICS_TLS_FAILED] = "failed",
};

enum {
	LABELS_NONE,
	LABELS_CONN_REJECT,
	LABELS_COMMAND,
	LABELS_REPLY,
	LABELS_RCPT_REJECT,
	LABELS_FORWARD_RESULT,
	LABELS_UPSTREAM,
	LABELS_VERSION,
	LABELS_TLS_RESULT, /* two labels: result, then version */
	LABELS_TLS_CERT,
	LABELS_UPSTREAM_TLS,
	LABELS_AUTH, /* two labels: mechanism, then result */
	LABELS_SCREEN,
	LABELS_OVERLOAD_REASON,
};

static const char *const label_name[] = {
	[LABELS_NONE] = NULL,
	[LABELS_CONN_REJECT] = "reason",
	[LABELS_COMMAND] = "command",
	[LABELS_REPLY] = "code",
	[LABELS_RCPT_REJECT] = "reason",
	[LABELS_FORWARD_RESULT] = "result",
	[LABELS_UPSTREAM] = "upstream",
	[LABELS_VERSION] = "version",
	[LABELS_TLS_RESULT] = "result",
	[LABELS_TLS_CERT] = "cert",
	[LABELS_UPSTREAM_TLS] = "result",
	[LABELS_AUTH] = "mechanism",
	[LABELS_SCREEN] = "verdict",
	[LABELS_OVERLOAD_REASON] = "reason",
};

static unsigned label_count(unsigned labels, const struct metrics_static *st)
{
	switch (labels) {
	case LABELS_NONE: return 1;
	case LABELS_CONN_REJECT: return METRICS_CONN_REJECT_COUNT;
	case LABELS_COMMAND: return SMTP_VERB_COUNT;
	case LABELS_REPLY: return METRICS_REPLY_SLOTS;
	case LABELS_RCPT_REJECT: return METRICS_RCPT_REJECT_COUNT;
	case LABELS_FORWARD_RESULT: return METRICS_FORWARD_RESULT_COUNT;
	case LABELS_UPSTREAM: return st->upstream_count;
	case LABELS_VERSION: return 1;
	case LABELS_TLS_RESULT: return METRICS_TLS_RESULT_COUNT * METRICS_TLS_VERSION_COUNT;
	case LABELS_TLS_CERT: return st->tls_cert_count;
	case LABELS_UPSTREAM_TLS: return METRICS_UPSTREAM_TLS_RESULT_COUNT;
	case LABELS_AUTH: return SASL_MECH_COUNT * METRICS_AUTH_RESULT_COUNT;
	case LABELS_SCREEN: return METRICS_SCREEN_COUNT;
	case LABELS_OVERLOAD_REASON: return OVERLOAD_REASON_COUNT;
	}
	RMX_ASSERT(!"unknown label set");
	return 0;
}

static const char *label_value(unsigned labels, unsigned i, const struct metrics_static *st)
{
	switch (labels) {
	case LABELS_CONN_REJECT: return conn_reject_label[i];
	case LABELS_COMMAND: return smtp_verb_name((enum smtp_verb)i);
	case LABELS_REPLY: return reply_code_label[i];
	case LABELS_RCPT_REJECT: return rcpt_reject_label[i];
	case LABELS_FORWARD_RESULT: return forward_result_label[i];
	case LABELS_UPSTREAM: return st->upstream[i];
	case LABELS_VERSION: return st->version;
	case LABELS_TLS_RESULT: return tls_result_label[i / METRICS_TLS_VERSION_COUNT];
	case LABELS_TLS_CERT: return st->tls_cert[i];
	case LABELS_UPSTREAM_TLS: return upstream_tls_label[i];
	case LABELS_AUTH: return sasl_mech_label((enum sasl_mech)(i / METRICS_AUTH_RESULT_COUNT));
	case LABELS_SCREEN: return screen_label[i];
	case LABELS_OVERLOAD_REASON: return overload_reason_name((enum overload_reason)i);
	}
	RMX_ASSERT(!"label set without values");
	return "";
}

/* --- The table ----------------------------------------------------------- */

/* Where a value comes from: workers (summed, or the largest), or st. */
enum { FROM_SUM, FROM_MAX, FROM_BUILD_INFO, FROM_FSYNC_DISABLED };

#define OFF(field) ((uint32_t)offsetof(struct metrics_worker, field))
#define COUNTER(name, unit, labels, field, help) \
	{ name, unit, help, METRICS_COUNTER, labels, FROM_SUM, BUCKETS_NONE, OFF(field) }
#define GAUGE(name, unit, labels, from, field, help) \
	{ name, unit, help, METRICS_GAUGE, labels, from, BUCKETS_NONE, OFF(field) }
#define HISTOGRAM(name, unit, buckets, field, help) \
	{ name, unit, help, METRICS_HISTOGRAM, LABELS_NONE, FROM_SUM, buckets, OFF(field) }

const struct metrics_desc metrics_table[] = {
	{ "ringmx_build_info", "", "Build of the running ringmx; the value is always 1.",
	  METRICS_GAUGE, LABELS_VERSION, FROM_BUILD_INFO, BUCKETS_NONE, 0 },
	{ "ringmx_fsync_disabled", "",
	  "1 when fsync = never: accepted mail is NOT durable before 250 (benchmarks only).",
	  METRICS_GAUGE, LABELS_NONE, FROM_FSYNC_DISABLED, BUCKETS_NONE, 0 },

	COUNTER("ringmx_connections_accepted_total", "", LABELS_NONE, connections_accepted,
		"SMTP connections accepted."),
	GAUGE("ringmx_connections_active", "", LABELS_NONE, FROM_SUM, connections_active,
	      "SMTP connections open now."),
	COUNTER("ringmx_connections_rejected_total", "", LABELS_CONN_REJECT,
		connections_rejected[0], "SMTP connections refused before the session, by reason."),
	GAUGE("ringmx_overload_state", "", LABELS_NONE, FROM_MAX, overload_state,
	      "Overload: 0 normal, 1 stress (new transactions get 452 4.3.1, shorter timeouts), "
	      "2 refuse (new connections get 421 4.3.2); the worst worker's."),
	GAUGE("ringmx_overload_reason", "", LABELS_OVERLOAD_REASON, FROM_MAX, overload_reason[0],
	      "Overload level (0, 1, 2) of each measure against its watermarks: store use, "
	      "unforwarded backlog and its oldest age, in-flight data."),
	COUNTER("ringmx_screen_verdicts_total", "", LABELS_SCREEN, screen_verdicts[0],
		"Pre-greeting screening: clients that passed the greeting pause, and what the "
		"others did (talked early, HTTP, bare LF)."),

	COUNTER("ringmx_accept_errors_total", "", LABELS_NONE, accept_errors,
		"Accepts that failed (out of descriptors or memory): the client waits in the "
		"backlog."),
	COUNTER("ringmx_connections_overflow_closed_total", "", LABELS_NONE,
		connections_overflow_closed,
		"Connections closed because they sent far past what the session had consumed."),

	COUNTER("ringmx_smtp_commands_total", "", LABELS_COMMAND, commands[0],
		"SMTP commands received, by command."),
	COUNTER("ringmx_smtp_replies_total", "", LABELS_REPLY, replies[0],
		"SMTP replies sent, by reply code."),
	COUNTER("ringmx_messages_accepted_total", "", LABELS_NONE, messages_accepted,
		"Messages made durable and acknowledged with 250."),
	COUNTER("ringmx_flow_held_total", "", LABELS_NONE, flow_held,
		"Messages whose 250 inflow control held until the forwarder caught up (in_flow_delay)."),
	COUNTER("ringmx_received_bytes_total", "bytes", LABELS_NONE, received_bytes,
		"Message bytes received (DATA and BDAT payload)."),
	GAUGE("ringmx_inflight_data_bytes", "bytes", LABELS_NONE, FROM_SUM, inflight_data_bytes,
	      "Memory held by message bodies being received or made durable "
	      "(bounded by max_inflight_data_bytes per worker)."),
	COUNTER("ringmx_inflight_data_refused_total", "", LABELS_NONE, inflight_data_refused,
		"Transactions refused or ended with 451 4.3.1 by max_inflight_data_bytes."),
	COUNTER("ringmx_smtp_timeouts_total", "", LABELS_NONE, smtp_timeouts,
		"SMTP sessions closed with 421 4.4.2 because a command or the data did not "
		"arrive in time."),
	COUNTER("ringmx_recipients_accepted_total", "", LABELS_NONE, recipients_accepted,
		"Recipients accepted with 250."),
	COUNTER("ringmx_recipients_rejected_total", "", LABELS_RCPT_REJECT,
		recipients_rejected[0], "Recipients refused, by reason."),
	HISTOGRAM("ringmx_smtp_transaction_duration_seconds", "seconds", BUCKETS_LATENCY,
		  transaction_duration, "Time from MAIL FROM to the final 250 of a transaction."),
	HISTOGRAM("ringmx_smtp_ack_latency_seconds", "seconds", BUCKETS_LATENCY, ack_latency,
		  "Time from the end of the message data to its 250 (the durability wait)."),
	HISTOGRAM("ringmx_smtp_message_size_bytes", "bytes", BUCKETS_SIZE, message_size,
		  "Size of accepted messages as stored."),

	HISTOGRAM("ringmx_store_fsync_latency_seconds", "seconds", BUCKETS_LATENCY, fsync_latency,
		  "Duration of one group commit's write and fdatasync."),
	HISTOGRAM("ringmx_store_commit_batch_records", "records", BUCKETS_BATCH, commit_batch,
		  "Records made durable by one group commit."),
	GAUGE("ringmx_store_bytes", "bytes", LABELS_NONE, FROM_SUM, store_bytes,
	      "Bytes held by the segment store."),
	GAUGE("ringmx_store_segments", "", LABELS_NONE, FROM_SUM, store_segments,
	      "Segment files in the store."),
	GAUGE("ringmx_store_failed", "", LABELS_NONE, FROM_SUM, store_failed,
	      "Store shards that refuse new mail after a write or fdatasync error (restart "
	      "after fixing the disk)."),
	COUNTER("ringmx_store_commit_failures_total", "", LABELS_NONE, store_commit_failures,
		"Group commits whose write or fdatasync failed: their messages got 451."),
	COUNTER("ringmx_store_spare_failures_total", "", LABELS_NONE, store_spare_failures,
		"Spare segments that could not be prepared (retried)."),
	COUNTER("ringmx_delivery_log_failures_total", "", LABELS_NONE, delivery_log_failures,
		"Delivery-log writes, syncs or creations that failed."),
	COUNTER("ringmx_forward_set_aside_total", "", LABELS_NONE, forward_set_aside,
		"Stored records that did not read back intact and were set aside, never sent."),
	COUNTER("ringmx_forward_record_read_failures_total", "", LABELS_NONE,
		forward_record_read_failures,
		"Reads of stored records that failed or came short; the message is retried."),
	GAUGE("ringmx_store_sealed_damaged_regions", "", LABELS_NONE, FROM_SUM,
	      store_sealed_damaged,
	      "Damaged regions start-up recovery found in sealed segments: corruption, never a "
	      "torn write (set aside in quarantine/; check the disk)."),

	GAUGE("ringmx_forward_pending_records", "records", LABELS_NONE, FROM_SUM,
	      forward_pending_records, "Stored messages not yet forwarded or bounced."),
	GAUGE("ringmx_forward_record_buffer_bytes", "bytes", LABELS_NONE, FROM_SUM,
	      forward_record_buffer_bytes,
	      "Memory held by stored records being forwarded (bounded by "
	      "max_inflight_data_bytes per worker)."),
	GAUGE("ringmx_forward_oldest_pending_age_seconds", "seconds", LABELS_NONE, FROM_MAX,
	      forward_oldest_pending_age_s, "Age of the oldest message waiting to be forwarded."),
	COUNTER("ringmx_forward_attempts_total", "", LABELS_FORWARD_RESULT, forward_attempts[0],
		"Attempts to forward a message to an upstream relay, by result."),
	COUNTER("ringmx_forward_deferrals_total", "", LABELS_NONE, forward_deferrals,
		"Messages put back for a later retry."),
	COUNTER("ringmx_forward_bounces_total", "", LABELS_NONE, forward_bounces,
		"Messages given up on (5xx or queue lifetime) and reported to the sender."),
	HISTOGRAM("ringmx_forward_latency_seconds", "seconds", BUCKETS_LATENCY, forward_latency,
		  "Time from a message's acceptance to the upstream relay's 250."),
	GAUGE("ringmx_upstream_up", "", LABELS_UPSTREAM, FROM_MAX, upstream_up[0],
	      "1 when at least one worker reaches the upstream relay."),
	COUNTER("ringmx_upstream_tls_total", "", LABELS_UPSTREAM_TLS, upstream_tls[0],
		"Upstream connections that wanted STARTTLS (upstream_tls), by what it came to."),

	COUNTER("ringmx_buffer_ring_enobufs_total", "", LABELS_NONE, buffer_ring_enobufs,
		"Receives that found the provided buffer ring empty (ENOBUFS)."),
	GAUGE("ringmx_buffer_ring_in_use_buffers", "buffers", LABELS_NONE, FROM_SUM,
	      buffer_ring_in_use,
	      "Provided receive buffers filled and not yet given back at once: the largest "
	      "batch of the last second, summed over workers."),

	COUNTER("ringmx_ring_backlog_sqes_total", "", LABELS_NONE, ring_backlog_sqes,
		"io_uring requests held back in the worker's backlog while the kernel refused "
		"submissions (EAGAIN, EBUSY); submitted in order later."),
	COUNTER("ringmx_ring_submit_failures_total", "", LABELS_NONE, ring_submit_failures,
		"io_uring submissions the kernel refused."),

	COUNTER("ringmx_log_lines_dropped_total", "", LABELS_NONE, log_lines_dropped,
		"Log lines dropped because the worker's log buffer was full or a write failed."),

	COUNTER("ringmx_http_connections_rejected_total", "", LABELS_NONE,
		http_connections_rejected,
		"Connections to the metrics endpoint closed at once because its pool was full."),

	COUNTER("ringmx_tls_handshakes_total", "", LABELS_TLS_RESULT, tls_handshakes[0],
		"Server-side TLS handshakes (STARTTLS and smtps), by result and protocol version."),
	GAUGE("ringmx_tls_cert_expiry_timestamp_seconds", "seconds", LABELS_TLS_CERT, FROM_MAX,
	      tls_cert_expiry[0],
	      "When each configured certificate (tls_cert) expires: its notAfter, Unix time."),
	COUNTER("ringmx_auth_attempts_total", "", LABELS_AUTH, auth_attempts[0],
		"AUTH exchanges (RFC 4954), by mechanism and result."),
};

const unsigned metrics_table_count = RMX_ARRAY_LEN(metrics_table);

/* --- Hot path ------------------------------------------------------------ */

void metrics_worker_init(struct metrics_worker *m)
{
	memset(m, 0, sizeof(*m));
}

/* Index of the first bound >= v (v <= bound is Prometheus' le), or n for
 * +Inf. Binary search: at most five comparisons for the latency bounds. */
static unsigned bucket_index(const uint64_t *bound, unsigned n, uint64_t v)
{
	unsigned lo = 0, hi = n;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (bound[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void metrics_observe_latency_ns(struct metrics_latency_hist *h, uint64_t duration_ns)
{
	metrics_inc(&h->bucket[bucket_index(latency_bound_ns, METRICS_LATENCY_BOUNDS, duration_ns)]);
	metrics_add(&h->sum_ns, duration_ns);
}

void metrics_observe_size_bytes(struct metrics_size_hist *h, uint64_t size_bytes)
{
	metrics_inc(&h->bucket[bucket_index(size_bound_bytes, METRICS_SIZE_BOUNDS, size_bytes)]);
	metrics_add(&h->sum_bytes, size_bytes);
}

void metrics_observe_batch_records(struct metrics_batch_hist *h, uint64_t records)
{
	metrics_inc(&h->bucket[bucket_index(batch_bound_records, METRICS_BATCH_BOUNDS, records)]);
	metrics_add(&h->sum_records, records);
}

int metrics_static_init(struct metrics_static *st, const char *version, bool fsync_disabled,
			const char *const *upstreams, unsigned upstream_count)
{
	if (upstream_count > UPSTREAMS_MAX || strlen(version) >= sizeof(st->version))
		return -EINVAL;
	for (unsigned i = 0; i < upstream_count; i++)
		if (strlen(upstreams[i]) >= sizeof(st->upstream[i]))
			return -EINVAL;
	memset(st, 0, sizeof(*st));
	memcpy(st->version, version, strlen(version));
	st->fsync_disabled = fsync_disabled;
	st->upstream_count = upstream_count;
	for (unsigned i = 0; i < upstream_count; i++)
		memcpy(st->upstream[i], upstreams[i], strlen(upstreams[i]));
	return 0;
}

void metrics_static_set_certs(struct metrics_static *st, const char *const *files,
			      unsigned count)
{
	st->tls_cert_count = RMX_MIN(count, (unsigned)METRICS_TLS_CERTS_MAX);
	for (unsigned i = 0; i < st->tls_cert_count; i++)
		snprintf(st->tls_cert[i], sizeof(st->tls_cert[i]), "%s", files[i]);
}

/* --- Output -------------------------------------------------------------- */

/* A bounded writer that keeps counting past cap, so the caller learns the
 * length it needs. Once a piece does not fit nothing more is written
 * (len > cap from then on), so buf never holds a piece out of order. In
 * bound mode numbers count as their longest form and nothing is written. */
struct out {
	char *buf;
	size_t cap;
	size_t len;
	bool bound;
};

static void out_bytes(struct out *o, const char *s, size_t n)
{
	if (n == 0)
		return;
	if (!o->bound && o->len <= o->cap && n <= o->cap - o->len)
		memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void out_str(struct out *o, const char *s)
{
	out_bytes(o, s, strlen(s));
}

#define U64_DIGITS_MAX 20 /* 18446744073709551615 */

static void out_u64(struct out *o, uint64_t v)
{
	char tmp[U64_DIGITS_MAX];
	size_t i = sizeof(tmp);
	if (o->bound) {
		o->len += U64_DIGITS_MAX;
		return;
	}
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	out_bytes(o, tmp + i, sizeof(tmp) - i);
}

/* raw / 10^digits as a decimal without trailing zeros ("0.00005", "1",
 * "2.5"). Exact: no floating point on the way. */
static void out_fixed(struct out *o, uint64_t raw, unsigned digits)
{
	if (digits == 0) {
		out_u64(o, raw);
		return;
	}
	if (o->bound) {
		o->len += U64_DIGITS_MAX + 1; /* every digit plus the point */
		return;
	}
	uint64_t scale = 1;
	for (unsigned i = 0; i < digits; i++)
		scale *= 10;
	uint64_t frac = raw % scale;
	out_u64(o, raw / scale);
	if (frac == 0)
		return;
	char tmp[U64_DIGITS_MAX];
	RMX_ASSERT(digits <= sizeof(tmp));
	for (unsigned i = digits; i-- > 0;) {
		tmp[i] = (char)('0' + frac % 10);
		frac /= 10;
	}
	unsigned n = digits;
	while (tmp[n - 1] == '0')
		n--;
	out_bytes(o, ".", 1);
	out_bytes(o, tmp, n);
}

/* Exposition format 0.0.4: in a label value, backslash, double quote and
 * line feed are escaped; in HELP text, backslash and line feed. */
static void out_escaped(struct out *o, const char *s, bool quote_too)
{
	const char *run = s;
	for (; *s != '\0'; s++) {
		const char *esc = NULL;
		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '\n')
			esc = "\\n";
		else if (*s == '"' && quote_too)
			esc = "\\\"";
		if (esc == NULL)
			continue;
		out_bytes(o, run, (size_t)(s - run));
		out_bytes(o, esc, 2);
		run = s + 1;
	}
	out_bytes(o, run, (size_t)(s - run));
}

static void out_header(struct out *o, const struct metrics_desc *d)
{
	static const char *const type_name[] = {
		[METRICS_COUNTER] = "counter", [METRICS_GAUGE] = "gauge", [METRICS_HISTOGRAM] = "histogram",
	};
	out_str(o, "# HELP ");
	out_str(o, d->name);
	out_bytes(o, " ", 1);
	out_escaped(o, d->help, false);
	out_str(o, "\n# TYPE ");
	out_str(o, d->name);
	out_bytes(o, " ", 1);
	out_str(o, type_name[d->type]);
	out_bytes(o, "\n", 1);
}

static uint64_t load_at(const struct metrics_worker *w, size_t offset)
{
	const uint64_t *p = (const uint64_t *)(const void *)((const char *)w + offset);
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static uint64_t aggregate(const struct metrics_worker *const *workers, unsigned n,
			  size_t offset, bool max)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t x = load_at(workers[i], offset);
		v = max ? RMX_MAX(v, x) : v + x;
	}
	return v;
}

static void out_sample(struct out *o, const struct metrics_desc *d, unsigned label_index,
		       const struct metrics_static *st, uint64_t value)
{
	out_str(o, d->name);
	if (d->labels != LABELS_NONE) {
		out_bytes(o, "{", 1);
		out_str(o, label_name[d->labels]);
		out_bytes(o, "=\"", 2);
		out_escaped(o, label_value(d->labels, label_index, st), true);
		if (d->labels == LABELS_AUTH) {
			out_str(o, "\",result=\"");
			out_str(o, auth_result_label[label_index % METRICS_AUTH_RESULT_COUNT]);
		}
		if (d->labels == LABELS_TLS_RESULT) {
			out_str(o, "\",version=\"");
			out_str(o, tls_version_label[label_index % METRICS_TLS_VERSION_COUNT]);
		}
		out_bytes(o, "\"}", 2);
	}
	out_bytes(o, " ", 1);
	out_u64(o, value);
	out_bytes(o, "\n", 1);
}

static void out_histogram(struct out *o, const struct metrics_desc *d,
			  const struct metrics_worker *const *workers, unsigned n)
{
	const struct bucket_set *bs = &bucket_sets[d->buckets];
	uint64_t sum = aggregate(workers, n, d->offset, false);
	uint64_t cumulative = 0;
	for (unsigned b = 0; b <= bs->bounds; b++) {
		size_t offset = d->offset + sizeof(uint64_t) * (1 + b);
		cumulative += aggregate(workers, n, offset, false);
		out_str(o, d->name);
		out_str(o, "_bucket{le=\"");
		if (b < bs->bounds) {
			/* Bounds are constants: bound mode counts their exact
			 * length (it has no buffer, so nothing is written). */
			bool bound = o->bound;
			o->bound = false;
			out_fixed(o, bs->bound[b], bs->scale_digits);
			o->bound = bound;
		} else {
			out_str(o, "+Inf");
		}
		out_str(o, "\"} ");
		out_u64(o, cumulative);
		out_bytes(o, "\n", 1);
	}
	out_str(o, d->name);
	out_str(o, "_sum ");
	out_fixed(o, sum, bs->scale_digits);
	out_bytes(o, "\n", 1);
	out_str(o, d->name);
	out_str(o, "_count ");
	out_u64(o, cumulative);
	out_bytes(o, "\n", 1);
}

static void render(struct out *o, const struct metrics_worker *const *workers, unsigned n,
		   const struct metrics_static *st)
{
	RMX_ASSERT(st->upstream_count <= UPSTREAMS_MAX);
	for (size_t i = 0; i < RMX_ARRAY_LEN(metrics_table); i++) {
		const struct metrics_desc *d = &metrics_table[i];
		out_header(o, d);
		if (d->type == METRICS_HISTOGRAM) {
			out_histogram(o, d, workers, n);
			continue;
		}
		unsigned count = label_count(d->labels, st);
		for (unsigned l = 0; l < count; l++) {
			uint64_t v;
			switch (d->from) {
			case FROM_BUILD_INFO: v = 1; break;
			case FROM_FSYNC_DISABLED: v = st->fsync_disabled ? 1 : 0; break;
			default:
				v = aggregate(workers, n, d->offset + sizeof(uint64_t) * l,
					      d->from == FROM_MAX);
				break;
			}
			out_sample(o, d, l, st, v);
		}
	}
}

size_t metrics_render(const struct metrics_worker *const *workers, unsigned n,
		      const struct metrics_static *st, char *buf, size_t cap)
{
	RMX_ASSERT(buf != NULL || cap == 0);
	RMX_ASSERT(workers != NULL || n == 0);
	for (unsigned i = 0; i < n; i++)
		RMX_ASSERT(workers[i] != NULL);
	struct out o = { buf, cap, 0, false };
	render(&o, workers, n, st);
	return o.len;
}

size_t metrics_render_bound(const struct metrics_static *st)
{
	struct out o = { NULL, 0, 0, true };
	render(&o, NULL, 0, st);
	return o.len;
}
