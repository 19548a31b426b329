/*
 * test_metrics.c - the metrics registry and its Prometheus exposition.
 *
 * Two (and more) fake workers are written through the hot-path helpers and
 * the rendered text is read back line by line: sums and maxima, cumulative
 * buckets against _count and _sum, label escaping, exact lengths on dry runs
 * and short buffers, the worst-case bound, and the metric table's naming.
 * Writers on real threads race a scraper to show the access discipline
 * holds. With --peer (ctest entry test_metrics_peer) the text goes through
 * `promtool check metrics` instead; that entry is skipped (77) without
 * promtool.
 */
#include "../core/metrics.h"
#include "../proto/sasl.h"
#include "../proto/smtp_reply.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#define RENDER_CAP (256 * 1024)

static char render_buf[RENDER_CAP];

static size_t render_all(const struct metrics_worker *const *w, unsigned n,
			 const struct metrics_static *st)
{
	size_t len = metrics_render(w, n, st, render_buf, sizeof(render_buf) - 1);
	REQUIRE(len < sizeof(render_buf));
	render_buf[len] = '\0';
	return len;
}

/* The value of the sample line that starts with "series " (exact series
 * text, labels included). Fails the test if the series is missing. */
static bool sample_text(const char *series, char *value, size_t value_cap)
{
	size_t n = strlen(series);
	const char *p = render_buf;
	while (p != NULL && *p != '\0') {
		if (strncmp(p, series, n) == 0 && p[n] == ' ') {
			const char *v = p + n + 1;
			size_t vlen = strcspn(v, "\n");
			if (vlen >= value_cap)
				return false;
			memcpy(value, v, vlen);
			value[vlen] = '\0';
			return true;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return false;
}

static unsigned long long sample_u64(const char *series)
{
	char value[64];
	if (!sample_text(series, value, sizeof(value))) {
		fprintf(stderr, "series missing: %s\n", series);
		CHECK(!"series present");
		return ~0ull;
	}
	char *end = NULL;
	unsigned long long v = strtoull(value, &end, 10);
	CHECK(end != value && *end == '\0');
	return v;
}

static void check_sample_is(const char *series, const char *expected)
{
	char value[64];
	bool found = sample_text(series, value, sizeof(value));
	CHECK(found);
	if (found)
		CHECK_MEM(value, strlen(value), expected, strlen(expected));
}

static void init_static(struct metrics_static *st, const char *version, bool fsync_disabled)
{
	static const char *const upstreams[] = { "relay1.example.net:25", "10.0.0.7:2525" };
	REQUIRE(metrics_static_init(st, version, fsync_disabled, upstreams, 2) == 0);
}

static void test_counters_sum(void)
{
	static struct metrics_worker w0, w1;
	metrics_worker_init(&w0);
	metrics_worker_init(&w1);
	CHECK_EQ_U((uintptr_t)&w0 % 64, 0);
	CHECK_EQ_U(sizeof(struct metrics_worker) % 64, 0);

	for (int i = 0; i < 3; i++)
		metrics_inc(&w0.connections_accepted);
	for (int i = 0; i < 4; i++)
		metrics_inc(&w1.connections_accepted);
	metrics_inc(&w0.connections_active);
	metrics_inc(&w0.connections_active);
	metrics_dec(&w0.connections_active);
	metrics_set(&w1.connections_active, 5);
	metrics_inc(&w1.connections_rejected[METRICS_CONN_REJECT_PER_IP]);
	metrics_count_command(&w0, SMTP_VERB_EHLO);
	metrics_count_command(&w1, SMTP_VERB_EHLO);
	metrics_count_command(&w1, SMTP_VERB_UNKNOWN);
	metrics_count_reply(&w0, 250);
	metrics_count_reply(&w1, 250);
	metrics_count_reply(&w1, 354);
	metrics_count_reply(&w1, 299); /* not a code we send */
	metrics_count_reply(&w1, 9999);
	metrics_add(&w0.received_bytes, 1000);
	metrics_add(&w1.received_bytes, 24);
	metrics_inc(&w1.recipients_rejected[METRICS_RCPT_REJECT_RELAY_DENIED]);
	metrics_inc(&w0.forward_attempts[METRICS_FORWARD_TEMPFAIL]);
	metrics_set(&w0.forward_oldest_pending_age_s, 30);
	metrics_set(&w1.forward_oldest_pending_age_s, 700);
	metrics_set(&w0.forward_pending_records, 2);
	metrics_set(&w1.forward_pending_records, 3);
	metrics_set(&w1.upstream_up[1], 1);
	metrics_inc(&w0.buffer_ring_enobufs);
	metrics_inc(&w0.upstream_tls[METRICS_UPSTREAM_TLS_VERIFIED]);
	metrics_inc(&w1.upstream_tls[METRICS_UPSTREAM_TLS_VERIFIED]);
	metrics_inc(&w1.upstream_tls[METRICS_UPSTREAM_TLS_NOT_OFFERED]);
	metrics_count_tls(&w0, METRICS_TLS_RESUMED, "TLSv1.3");
	metrics_count_tls(&w1, METRICS_TLS_RESUMED, "TLSv1.3");
	metrics_count_tls(&w1, METRICS_TLS_FULL, "TLSv1.2");
	metrics_count_tls(&w1, METRICS_TLS_FAILED, NULL);
	metrics_set(&w0.tls_cert_expiry[0], 1800000000);
	metrics_set(&w1.tls_cert_expiry[0], 1800000000);
	metrics_set(&w1.tls_cert_expiry[1], 1900000000);
	metrics_count_auth(&w0, SASL_MECH_LOGIN, METRICS_AUTH_TEMPFAIL);
	metrics_count_auth(&w1, SASL_MECH_LOGIN, METRICS_AUTH_TEMPFAIL);
	metrics_count_auth(&w1, SASL_MECH_PLAIN, METRICS_AUTH_SUCCESS);

	struct metrics_static st;
	init_static(&st, "0.1.0", true);
	const char *const certs[] = { "/etc/ringmx/mx.pem", "/etc/ringmx/\"odd\".pem" };
	metrics_static_set_certs(&st, certs, 2);
	const struct metrics_worker *const workers[] = { &w0, &w1 };
	render_all(workers, 2, &st);

	CHECK_EQ_U(sample_u64("ringmx_connections_accepted_total"), 7);
	CHECK_EQ_U(sample_u64("ringmx_connections_active"), 6);
	CHECK_EQ_U(sample_u64("ringmx_connections_rejected_total{reason=\"per_ip\"}"), 1);
	CHECK_EQ_U(sample_u64("ringmx_connections_rejected_total{reason=\"limit\"}"), 0);
	CHECK_EQ_U(sample_u64("ringmx_smtp_commands_total{command=\"ehlo\"}"), 2);
	CHECK_EQ_U(sample_u64("ringmx_smtp_commands_total{command=\"unknown\"}"), 1);
	CHECK_EQ_U(sample_u64("ringmx_smtp_commands_total{command=\"mail\"}"), 0);
	CHECK_EQ_U(sample_u64("ringmx_smtp_replies_total{code=\"250\"}"), 2);
	CHECK_EQ_U(sample_u64("ringmx_smtp_replies_total{code=\"354\"}"), 1);
	CHECK_EQ_U(sample_u64("ringmx_smtp_replies_total{code=\"other\"}"), 2);
	CHECK_EQ_U(sample_u64("ringmx_received_bytes_total"), 1024);
	CHECK_EQ_U(sample_u64("ringmx_recipients_rejected_total{reason=\"relay_denied\"}"), 1);
	CHECK_EQ_U(sample_u64("ringmx_forward_attempts_total{result=\"tempfail\"}"), 1);
	CHECK_EQ_U(sample_u64("ringmx_forward_pending_records"), 5);
	/* The oldest message is the oldest of any worker, not a sum of ages. */
	CHECK_EQ_U(sample_u64("ringmx_forward_oldest_pending_age_seconds"), 700);
	CHECK_EQ_U(sample_u64("ringmx_upstream_up{upstream=\"relay1.example.net:25\"}"), 0);
	CHECK_EQ_U(sample_u64("ringmx_upstream_up{upstream=\"10.0.0.7:2525\"}"), 1);
	CHECK_EQ_U(sample_u64("ringmx_buffer_ring_enobufs_total"), 1);
	CHECK_EQ_U(sample_u64("ringmx_upstream_tls_total{result=\"verified\"}"), 2);
	CHECK_EQ_U(sample_u64("ringmx_upstream_tls_total{result=\"not_offered\"}"), 1);
	CHECK_EQ_U(sample_u64("ringmx_upstream_tls_total{result=\"failed\"}"), 0);
	CHECK_EQ_U(sample_u64("ringmx_tls_handshakes_total{result=\"resumed\",version=\"TLSv1.3\"}"),
		   2);
	CHECK_EQ_U(sample_u64("ringmx_tls_handshakes_total{result=\"full\",version=\"TLSv1.2\"}"), 1);
	CHECK_EQ_U(sample_u64("ringmx_tls_handshakes_total{result=\"full\",version=\"TLSv1.3\"}"), 0);
	CHECK_EQ_U(sample_u64("ringmx_tls_handshakes_total{result=\"failed\",version=\"unknown\"}"),
		   1);
	/* The expiry of each certificate: the same on every worker, not summed. */
	CHECK_EQ_U(sample_u64("ringmx_tls_cert_expiry_timestamp_seconds{cert=\"/etc/ringmx/mx.pem\"}"),
		   1800000000);
	CHECK_EQ_U(sample_u64("ringmx_tls_cert_expiry_timestamp_seconds{cert=\"/etc/ringmx/\\\"odd\\\".pem\"}"),
		   1900000000);
	CHECK_EQ_U(sample_u64("ringmx_auth_attempts_total{mechanism=\"login\",result=\"tempfail\"}"),
		   2);
	CHECK_EQ_U(sample_u64("ringmx_auth_attempts_total{mechanism=\"plain\",result=\"success\"}"),
		   1);
	CHECK_EQ_U(sample_u64("ringmx_auth_attempts_total{mechanism=\"plain\",result=\"tempfail\"}"),
		   0);
	CHECK_EQ_U(sample_u64("ringmx_auth_attempts_total{mechanism=\"login\",result=\"cancelled\"}"),
		   0);
	CHECK_EQ_U(sample_u64("ringmx_build_info{version=\"0.1.0\"}"), 1);
	CHECK_EQ_U(sample_u64("ringmx_fsync_disabled"), 1);

	/* Every series appears once, with HELP and TYPE before it. */
	CHECK(strstr(render_buf, "# HELP ringmx_connections_accepted_total SMTP") != NULL);
	CHECK(strstr(render_buf, "# TYPE ringmx_connections_accepted_total counter\n") != NULL);
	CHECK(strstr(render_buf, "# TYPE ringmx_connections_active gauge\n") != NULL);
	CHECK(strstr(render_buf, "# TYPE ringmx_store_fsync_latency_seconds histogram\n") != NULL);
	const char *first = strstr(render_buf, "\nringmx_connections_accepted_total ");
	CHECK(first != NULL && strstr(first + 1, "\nringmx_connections_accepted_total ") == NULL);

	/* No workers at all: zeros, still well formed. */
	render_all(NULL, 0, &st);
	CHECK_EQ_U(sample_u64("ringmx_connections_accepted_total"), 0);
	check_sample_is("ringmx_forward_latency_seconds_sum", "0");
}

/* Buckets of one histogram as rendered: cumulative counts in order. */
static unsigned read_buckets(const char *name, unsigned long long *count, unsigned cap,
			     char le[][24])
{
	char prefix[128];
	int plen = snprintf(prefix, sizeof(prefix), "%s_bucket{le=\"", name);
	REQUIRE(plen > 0 && (size_t)plen < sizeof(prefix));
	unsigned n = 0;
	for (const char *p = strstr(render_buf, prefix); p != NULL;
	     p = strstr(p + 1, prefix)) {
		REQUIRE(n < cap);
		const char *q = p + plen;
		size_t l = strcspn(q, "\"");
		REQUIRE(l < 24);
		memcpy(le[n], q, l);
		le[n][l] = '\0';
		count[n] = strtoull(q + l + 3, NULL, 10); /* past "\"} " */
		n++;
	}
	return n;
}

static void test_histograms(void)
{
	static struct metrics_worker w0, w1;
	metrics_worker_init(&w0);
	metrics_worker_init(&w1);

	/* Latency: below the first bound, exactly on a bound (le is inclusive),
	 * just past it, and past the last bound (+Inf). */
	metrics_observe_latency_ns(&w0.fsync_latency, 1);
	metrics_observe_latency_ns(&w0.fsync_latency, 50000);
	metrics_observe_latency_ns(&w1.fsync_latency, 50001);
	metrics_observe_latency_ns(&w1.fsync_latency, 2500000000ull);
	metrics_observe_latency_ns(&w1.fsync_latency, 61000000000ull);

	metrics_observe_size_bytes(&w0.message_size, 1024);
	metrics_observe_size_bytes(&w1.message_size, 1025);
	metrics_observe_size_bytes(&w1.message_size, 100ull << 20);

	for (uint64_t r = 1; r <= 2048; r *= 2)
		metrics_observe_batch_records(&w0.commit_batch, r);

	struct metrics_static st;
	init_static(&st, "0.1.0", false);
	const struct metrics_worker *const workers[] = { &w0, &w1 };
	render_all(workers, 2, &st);

	unsigned long long c[32];
	char le[32][24];
	unsigned n = read_buckets("ringmx_store_fsync_latency_seconds", c, 32, le);
	CHECK_EQ_U(n, METRICS_LATENCY_BOUNDS + 1);
	CHECK_MEM(le[0], strlen(le[0]), "0.00005", 7);
	CHECK_MEM(le[1], strlen(le[1]), "0.0001", 6);
	CHECK_MEM(le[5], strlen(le[5]), "0.0025", 6);
	CHECK_MEM(le[13], strlen(le[13]), "1", 1);
	CHECK_MEM(le[14], strlen(le[14]), "2.5", 3);
	CHECK_MEM(le[18], strlen(le[18]), "60", 2);
	CHECK_MEM(le[19], strlen(le[19]), "+Inf", 4);
	CHECK_EQ_U(c[0], 2);  /* 1 ns and exactly 50 us */
	CHECK_EQ_U(c[1], 3);  /* 50.001 us */
	CHECK_EQ_U(c[13], 3);
	CHECK_EQ_U(c[14], 4); /* exactly 2.5 s */
	CHECK_EQ_U(c[18], 4);
	CHECK_EQ_U(c[19], 5); /* 61 s */
	for (unsigned i = 1; i < n; i++)
		CHECK(c[i] >= c[i - 1]);
	CHECK_EQ_U(sample_u64("ringmx_store_fsync_latency_seconds_count"), c[n - 1]);
	/* 1 + 50000 + 50001 + 2.5e9 + 61e9 ns, exactly. */
	check_sample_is("ringmx_store_fsync_latency_seconds_sum", "63.500100002");

	n = read_buckets("ringmx_smtp_message_size_bytes", c, 32, le);
	CHECK_EQ_U(n, METRICS_SIZE_BOUNDS + 1);
	CHECK_MEM(le[0], strlen(le[0]), "1024", 4);
	CHECK_MEM(le[8], strlen(le[8]), "67108864", 8);
	CHECK_EQ_U(c[0], 1);
	CHECK_EQ_U(c[1], 2);
	CHECK_EQ_U(c[8], 2);
	CHECK_EQ_U(c[9], 3);
	CHECK_EQ_U(sample_u64("ringmx_smtp_message_size_bytes_count"), 3);
	CHECK_EQ_U(sample_u64("ringmx_smtp_message_size_bytes_sum"), 1024 + 1025 + (100ull << 20));

	n = read_buckets("ringmx_store_commit_batch_records", c, 32, le);
	CHECK_EQ_U(n, METRICS_BATCH_BOUNDS + 1);
	for (unsigned i = 0; i < METRICS_BATCH_BOUNDS; i++)
		CHECK_EQ_U(c[i], i + 1); /* one batch of each power of two */
	CHECK_EQ_U(c[METRICS_BATCH_BOUNDS], 12); /* 2048 is past 1024 */
	CHECK_EQ_U(sample_u64("ringmx_store_commit_batch_records_sum"), 4095);

	/* An empty histogram: all buckets 0, _count 0, _sum 0. */
	n = read_buckets("ringmx_forward_latency_seconds", c, 32, le);
	CHECK_EQ_U(n, METRICS_LATENCY_BOUNDS + 1);
	CHECK_EQ_U(c[n - 1], 0);
	CHECK_EQ_U(sample_u64("ringmx_forward_latency_seconds_count"), 0);
}

static void test_escaping(void)
{
	struct metrics_static st;
	const char *const up[] = { "a\"b\\c\nd:25" };
	REQUIRE(metrics_static_init(&st, "1.0\"x\\y\nz", false, up, 1) == 0);
	render_all(NULL, 0, &st);
	CHECK_EQ_U(sample_u64("ringmx_build_info{version=\"1.0\\\"x\\\\y\\nz\"}"), 1);
	CHECK_EQ_U(sample_u64("ringmx_upstream_up{upstream=\"a\\\"b\\\\c\\nd:25\"}"), 0);
	/* No raw line feed or quote leaked out of a label value. */
	CHECK(strstr(render_buf, "\nz\"") == NULL);
	CHECK(strstr(render_buf, "\nd:25") == NULL);
}

static void test_static_init_errors(void)
{
	struct metrics_static st;
	init_static(&st, "keep", false);
	char long_version[METRICS_VERSION_MAX_BYTES + 1];
	memset(long_version, 'v', sizeof(long_version) - 1);
	long_version[sizeof(long_version) - 1] = '\0';
	CHECK(metrics_static_init(&st, long_version, false, NULL, 0) == -EINVAL);
	long_version[METRICS_VERSION_MAX_BYTES - 1] = '\0'; /* fits exactly */
	struct metrics_static st2;
	CHECK(metrics_static_init(&st2, long_version, false, NULL, 0) == 0);

	const char *nine[UPSTREAMS_MAX + 1];
	for (unsigned i = 0; i <= UPSTREAMS_MAX; i++)
		nine[i] = "h:25";
	CHECK(metrics_static_init(&st, "x", false, nine, UPSTREAMS_MAX + 1) == -EINVAL);
	CHECK(metrics_static_init(&st2, "x", false, nine, UPSTREAMS_MAX) == 0);
	CHECK_EQ_U(st2.upstream_count, UPSTREAMS_MAX);

	char long_host[METRICS_UPSTREAM_LABEL_MAX_BYTES + 1];
	memset(long_host, 'h', sizeof(long_host) - 1);
	long_host[sizeof(long_host) - 1] = '\0';
	const char *one[] = { long_host };
	CHECK(metrics_static_init(&st, "x", false, one, 1) == -EINVAL);
	/* A failed init leaves st as it was. */
	CHECK_MEM(st.version, strlen(st.version), "keep", 4);
	CHECK_EQ_U(st.upstream_count, 2);
}

static void test_lengths(void)
{
	static struct metrics_worker w0, w1;
	metrics_worker_init(&w0);
	metrics_worker_init(&w1);
	metrics_add(&w0.received_bytes, 123456789);
	metrics_observe_latency_ns(&w1.ack_latency, 123456);
	struct metrics_static st;
	init_static(&st, "0.1.0", false);
	const struct metrics_worker *const workers[] = { &w0, &w1 };

	size_t need = metrics_render(workers, 2, &st, NULL, 0);
	size_t full = render_all(workers, 2, &st);
	CHECK_EQ_U(need, full);
	CHECK(full > 1000);

	/* Short buffers: the same length comes back, nothing is written past
	 * cap (the heap block is exactly cap bytes, so ASan would see it), and
	 * what is written is a prefix of the full text. */
	size_t caps[] = { 1, 7, full / 3, full - 1 };
	for (size_t i = 0; i < RMX_ARRAY_LEN(caps); i++) {
		char *small = malloc(caps[i]);
		REQUIRE(small != NULL);
		memset(small, 0, caps[i]);
		CHECK_EQ_U(metrics_render(workers, 2, &st, small, caps[i]), full);
		size_t same = 0;
		while (same < caps[i] && small[same] == render_buf[same])
			same++;
		for (size_t j = same; j < caps[i]; j++)
			CHECK(small[j] == '\0'); /* unwritten tail */
		free(small);
	}
	char *exact = malloc(full);
	REQUIRE(exact != NULL);
	CHECK_EQ_U(metrics_render(workers, 2, &st, exact, full), full);
	CHECK_MEM(exact, full, render_buf, full);
	free(exact);

	/* The bound covers every value at its longest. */
	size_t bound = metrics_render_bound(&st);
	CHECK(bound >= full);
	static struct metrics_worker wmax;
	memset(&wmax, 0xff, sizeof(wmax));
	const struct metrics_worker *const one[] = { &wmax };
	size_t longest = metrics_render(one, 1, &st, NULL, 0);
	CHECK(bound >= longest);
	CHECK(longest > full);
	printf("metrics: exposition %zu bytes, bound %zu, all-max %zu\n", full, bound, longest);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static void test_table(void)
{
	CHECK(metrics_table_count >= 20);
	for (unsigned i = 0; i < metrics_table_count; i++) {
		const struct metrics_desc *d = &metrics_table[i];
		CHECK(strncmp(d->name, "ringmx_", 7) == 0);
		CHECK(d->help != NULL && d->help[0] != '\0');
		char base[128];
		size_t n = strlen(d->name);
		REQUIRE(n < sizeof(base));
		memcpy(base, d->name, n + 1);
		if (d->type == METRICS_COUNTER) {
			CHECK(ends_with(base, "_total"));
			if (n > 6)
				base[n - 6] = '\0';
		} else {
			CHECK(!ends_with(base, "_total"));
		}
		if (d->unit[0] != '\0') {
			char suffix[32];
			int sl = snprintf(suffix, sizeof(suffix), "_%s", d->unit);
			REQUIRE(sl > 0 && (size_t)sl < sizeof(suffix));
			if (!ends_with(base, suffix))
				fprintf(stderr, "unit not last: %s\n", d->name);
			CHECK(ends_with(base, suffix));
		}
		for (size_t c = 0; c < n; c++) {
			char ch = d->name[c];
			CHECK((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_');
		}
		for (unsigned j = 0; j < i; j++)
			CHECK(strcmp(metrics_table[j].name, d->name) != 0);
		CHECK(d->offset + sizeof(uint64_t) <= sizeof(struct metrics_worker));
	}
}

static void test_reply_codes(void)
{
	/* Every reply the server can send has its own series. */
	for (unsigned id = 0; id < SMTP_REPLY_COUNT; id++) {
		unsigned code = smtp_reply_code((enum smtp_reply_id)id);
		unsigned slot = metrics_reply_slot(code);
		if (slot == METRICS_REPLY_OTHER)
			fprintf(stderr, "reply code %u has no series\n", code);
		CHECK(slot != METRICS_REPLY_OTHER);
		CHECK_EQ_U(metrics_reply_codes[slot], code);
	}
	/* And every reply of the AUTH exchange (proto/sasl.c). */
	for (unsigned e = SASL_ERR_NONE + 1; e < SASL_ERR_COUNT; e++) {
		struct span r = sasl_error_reply((enum sasl_error)e);
		REQUIRE(r.len > 4);
		unsigned code = (unsigned)(r.ptr[0] - '0') * 100 + (unsigned)(r.ptr[1] - '0') * 10 +
				(unsigned)(r.ptr[2] - '0');
		CHECK(metrics_reply_slot(code) != METRICS_REPLY_OTHER);
	}
	for (unsigned s = 0; s < METRICS_REPLY_CODES; s++)
		CHECK_EQ_U(metrics_reply_slot(metrics_reply_codes[s]), s);
	CHECK_EQ_U(metrics_reply_slot(0), METRICS_REPLY_OTHER);
	CHECK_EQ_U(metrics_reply_slot(599), METRICS_REPLY_OTHER);
	CHECK_EQ_U(metrics_reply_slot(600), METRICS_REPLY_OTHER);
	CHECK_EQ_U(metrics_reply_slot(~0u), METRICS_REPLY_OTHER);

	/* The label of each slot is its code. */
	static struct metrics_worker w;
	metrics_worker_init(&w);
	for (unsigned s = 0; s < METRICS_REPLY_CODES; s++)
		for (unsigned k = 0; k <= s; k++)
			metrics_count_reply(&w, metrics_reply_codes[s]);
	struct metrics_static st;
	init_static(&st, "0.1.0", false);
	const struct metrics_worker *const workers[] = { &w };
	render_all(workers, 1, &st);
	for (unsigned s = 0; s < METRICS_REPLY_CODES; s++) {
		char series[64];
		snprintf(series, sizeof(series), "ringmx_smtp_replies_total{code=\"%u\"}",
			 metrics_reply_codes[s]);
		CHECK_EQ_U(sample_u64(series), s + 1);
	}
}

/* Writers on their own threads, each on its own struct, race a scraper:
 * the discipline of metrics.h (owner-only relaxed stores, relaxed loads
 * elsewhere) loses no increment and the scrape only ever sees counts grow. */
#define RACE_WRITERS 2
#define RACE_INCREMENTS 200000

static struct metrics_worker race_worker[RACE_WRITERS];

static void *race_writer(void *arg)
{
	struct metrics_worker *m = arg;
	for (unsigned i = 0; i < RACE_INCREMENTS; i++) {
		metrics_inc(&m->messages_accepted);
		metrics_observe_latency_ns(&m->ack_latency, i);
	}
	return NULL;
}

static void test_concurrent_scrape(void)
{
	struct metrics_static st;
	init_static(&st, "0.1.0", false);
	const struct metrics_worker *workers[RACE_WRITERS];
	pthread_t tid[RACE_WRITERS];
	for (unsigned i = 0; i < RACE_WRITERS; i++) {
		metrics_worker_init(&race_worker[i]);
		workers[i] = &race_worker[i];
	}
	for (unsigned i = 0; i < RACE_WRITERS; i++)
		REQUIRE(pthread_create(&tid[i], NULL, race_writer, &race_worker[i]) == 0);
	unsigned long long last = 0;
	bool monotonic = true, counts_agree = true;
	for (int scrape = 0; scrape < 200; scrape++) {
		render_all(workers, RACE_WRITERS, &st);
		unsigned long long now = sample_u64("ringmx_messages_accepted_total");
		monotonic = monotonic && now >= last;
		last = now;
		unsigned long long c[32];
		char le[32][24];
		unsigned n = read_buckets("ringmx_smtp_ack_latency_seconds", c, 32, le);
		counts_agree = counts_agree && n > 0 &&
			       c[n - 1] == sample_u64("ringmx_smtp_ack_latency_seconds_count");
	}
	for (unsigned i = 0; i < RACE_WRITERS; i++)
		REQUIRE(pthread_join(tid[i], NULL) == 0);
	CHECK(monotonic);
	CHECK(counts_agree);
	render_all(workers, RACE_WRITERS, &st);
	CHECK_EQ_U(sample_u64("ringmx_messages_accepted_total"),
		   (unsigned long long)RACE_WRITERS * RACE_INCREMENTS);
	CHECK_EQ_U(sample_u64("ringmx_smtp_ack_latency_seconds_count"),
		   (unsigned long long)RACE_WRITERS * RACE_INCREMENTS);
}

/* The rendered text through Prometheus' own linter, when it is installed. */
static void test_promtool(void)
{
	test_require_program("test_metrics", "promtool", "prometheus");
	static struct metrics_worker w0, w1;
	metrics_worker_init(&w0);
	metrics_worker_init(&w1);
	metrics_inc(&w0.connections_accepted);
	metrics_count_command(&w1, SMTP_VERB_DATA);
	metrics_observe_latency_ns(&w0.transaction_duration, 3000000);
	metrics_observe_size_bytes(&w1.message_size, 5000);
	struct metrics_static st;
	const char *const up[] = { "mx \"1\"\\:25" };
	REQUIRE(metrics_static_init(&st, "0.1.0\nrc", true, up, 1) == 0);
	const struct metrics_worker *const workers[] = { &w0, &w1 };
	size_t len = render_all(workers, 2, &st);

	char path[] = "/tmp/ringmx-metrics-XXXXXX";
	int fd = mkstemp(path);
	REQUIRE(fd >= 0);
	REQUIRE(write(fd, render_buf, len) == (ssize_t)len);
	REQUIRE(close(fd) == 0);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
	int rc = system(cmd);
	if (rc != 0)
		fprintf(stderr, "promtool rejected the exposition (kept in %s)\n", path);
	else
		unlink(path);
	CHECK(rc == 0);
}

int main(int argc, char **argv)
{
	if (test_peer_mode(argc, argv)) {
		test_promtool();
		return test_main_end("test_metrics --peer");
	}
	test_counters_sum();
	test_histograms();
	test_escaping();
	test_static_init_errors();
	test_lengths();
	test_table();
	test_reply_codes();
	test_concurrent_scrape();
	return test_main_end("test_metrics");
}
