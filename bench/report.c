/*
 * report.c - merging the loops' counters and printing them (see report.h).
 *
 * Runs on the main thread after every event loop has ended. Rates are per
 * elapsed second of the run; "MB" is 10^6 bytes of acknowledged messages.
 */
#include "report.h"

#include <inttypes.h>
#include <string.h>

void stats_init(struct bench_stats *st)
{
	memset(st, 0, sizeof(*st));
	hist_init(&st->txn);
	hist_init(&st->ack);
	hist_init(&st->lag);
	hist_init(&st->handshake);
}

static const char *tls_mode_name(enum bench_tls tls)
{
	switch (tls) {
	case BENCH_TLS_STARTTLS:
		return "starttls";
	case BENCH_TLS_IMPLICIT:
		return "implicit";
	case BENCH_TLS_OFF:
		break;
	}
	return "off";
}

static void print_latency(FILE *f, const char *name, const struct hist *h)
{
	if (h->count == 0) {
		fprintf(f, "%-26s none\n", name);
		return;
	}
	fprintf(f, "%-26s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (us)\n", name,
		(double)hist_percentile_ns(h, 50) / 1e3, (double)hist_percentile_ns(h, 90) / 1e3,
		(double)hist_percentile_ns(h, 99) / 1e3, (double)hist_percentile_ns(h, 99.9) / 1e3,
		(double)h->max_ns / 1e3);
}

static void print_errors(FILE *f, const struct bench_stats *st)
{
	bool any = false;
	for (unsigned code = 1; code < ERROR_CODES; code++) {
		if (st->errors_by_code[code]) {
			fprintf(f, "%s%u:%" PRIu64, any ? " " : "", code, st->errors_by_code[code]);
			any = true;
		}
	}
	if (st->errors_by_code[0]) {
		fprintf(f, "%sconn:%" PRIu64, any ? " " : "", st->errors_by_code[0]);
		any = true;
	}
	if (!any)
		fprintf(f, "none");
}

static double per_s(uint64_t n, double s)
{
	return s > 0 ? (double)n / s : 0.0;
}

void report_text(FILE *f, const struct options *opt, const struct bench_results *r)
{
	const struct bench_stats *st = &r->st;
	fprintf(f, "ringmx-bench: %s:%s, %u thread%s, %u conns, pipelining %s, size %s, "
		   "%u rcpt%s%s\n",
		opt->host, opt->port, opt->threads, opt->threads == 1 ? "" : "s", opt->conns,
		opt->pipelining ? "on" : "off", opt->size_text, opt->rcpts,
		opt->rcpts == 1 ? "" : "s", opt->new_conn_per_message ? ", new conn per message" : "");
	if (opt->tls != BENCH_TLS_OFF)
		fprintf(f, "tls                        %s, session resumption %s, %s %s\n",
			tls_mode_name(opt->tls), opt->tls_resume ? "on" : "off",
			st->tls_version[0] ? st->tls_version : "-",
			st->tls_cipher[0] ? st->tls_cipher : "-");
	fprintf(f, "messages                   %" PRIu64 " ok, %" PRIu64 " failed in %.3f s\n",
		st->ok, st->failed, r->elapsed_s);
	if (opt->messages > st->ok + st->failed)
		fprintf(f, "NOT DONE                   %" PRIu64 " of %" PRIu64 " messages never "
			   "started (no connection worked)\n",
			opt->messages - st->ok - st->failed, opt->messages);
	fprintf(f, "throughput                 %.1f msgs/s, %.2f MB/s", per_s(st->ok, r->elapsed_s),
		per_s(st->message_bytes, r->elapsed_s) / 1e6);
	if (opt->new_conn_per_message)
		fprintf(f, ", %.1f conns/s", per_s(st->connects, r->elapsed_s));
	fprintf(f, "\nerrors                     ");
	print_errors(f, st);
	fprintf(f, " (connection failures %" PRIu64 ", timeouts %" PRIu64 ")\n", st->conn_errors,
		st->timeouts);
	if (opt->tls != BENCH_TLS_OFF) {
		fprintf(f, "tls handshakes             %" PRIu64 " (%" PRIu64 " resumed), %.1f/s, "
			   "%" PRIu64 " failed", st->tls_handshakes, st->tls_resumed,
			per_s(st->tls_handshakes, r->elapsed_s), st->tls_failures);
		if (st->no_starttls)
			fprintf(f, ", %" PRIu64 " sessions without STARTTLS in EHLO",
				st->no_starttls);
		fprintf(f, "\n");
	}
	print_latency(f, "latency transaction", &st->txn);
	print_latency(f, "latency ack", &st->ack);
	if (opt->tls != BENCH_TLS_OFF)
		print_latency(f, "latency tls handshake", &st->handshake);
	if (opt->rate_per_s > 0) {
		print_latency(f, "schedule lag", &st->lag);
		uint64_t starts = st->lag.count;
		if (st->never_started > 0)
			fprintf(f, "schedule                   NOT KEPT: %" PRIu64 " messages due "
				   "before the end never started (no free connection)\n",
				st->never_started);
		if (st->late > 0)
			fprintf(f, "schedule                   NOT KEPT: %" PRIu64 " of %" PRIu64
				   " messages started more than 1 ms late (target %.1f/s); %"
				   PRIu64 " of them waited for a free connection (more --conns), "
				   "the rest for this process to run\n",
				st->late, starts, opt->rate_per_s, st->late_no_conn);
		else
			fprintf(f, "schedule                   kept: %" PRIu64 " messages at %.1f/s\n",
				starts, opt->rate_per_s);
	}
	if (st->no_pipelining)
		fprintf(f, "warning                    %" PRIu64 " sessions got no PIPELINING "
			   "in EHLO and ran one command per round trip\n", st->no_pipelining);
	uint64_t done = st->ok + st->failed;
	fprintf(f, "bench cpu                  %.3f s (%.4f s per 1000 messages)\n", r->bench_cpu_s,
		done ? r->bench_cpu_s * 1000.0 / (double)done : 0.0);
	if (r->have_server) {
		double cpu = r->server_after.cpu_s - r->server_before.cpu_s;
		fprintf(f, "server cpu                 %.3f s (%.4f s per 1000 messages), RSS %"
			   PRIu64 " -> %" PRIu64 " KiB\n", cpu,
			done ? cpu * 1000.0 / (double)done : 0.0, r->server_before.rss_kib,
			r->server_after.rss_kib);
	}
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_latency(FILE *f, const char *name, const struct hist *h)
{
	fprintf(f, "  \"%s\": {\"count\": %" PRIu64 ", \"p50\": %.3f, \"p90\": %.3f, "
		   "\"p99\": %.3f, \"p99_9\": %.3f, \"max\": %.3f, \"mean\": %.3f},\n",
		name, h->count, (double)hist_percentile_ns(h, 50) / 1e3,
		(double)hist_percentile_ns(h, 90) / 1e3, (double)hist_percentile_ns(h, 99) / 1e3,
		(double)hist_percentile_ns(h, 99.9) / 1e3, (double)h->max_ns / 1e3,
		hist_mean_ns(h) / 1e3);
}

int report_json(FILE *f, const struct options *opt, const struct bench_results *r)
{
	const struct bench_stats *st = &r->st;
	uint64_t done = st->ok + st->failed;
	fprintf(f, "{\n  \"server\": ");
	json_string(f, opt->host);
	fprintf(f, ",\n  \"port\": %s,\n  \"threads\": %u,\n  \"conns\": %u,\n"
		   "  \"idle_conns\": %u,\n  \"pipelining\": %s,\n  \"size\": ",
		opt->port, opt->threads, opt->conns, opt->idle_conns,
		opt->pipelining ? "true" : "false");
	json_string(f, opt->size_text);
	fprintf(f, ",\n  \"rcpts\": %u,\n  \"new_conn_per_message\": %s,\n"
		   "  \"rate_target\": %.3f,\n",
		opt->rcpts, opt->new_conn_per_message ? "true" : "false", opt->rate_per_s);
	fprintf(f, "  \"messages_requested\": %" PRIu64 ",\n", opt->messages);
	fprintf(f, "  \"tls\": \"%s\",\n  \"tls_resume\": %s,\n", tls_mode_name(opt->tls),
		opt->tls_resume ? "true" : "false");
	if (opt->tls != BENCH_TLS_OFF) {
		fprintf(f, "  \"tls_version\": ");
		json_string(f, st->tls_version);
		fprintf(f, ",\n  \"tls_cipher\": ");
		json_string(f, st->tls_cipher);
		fprintf(f, ",\n  \"tls_handshakes\": %" PRIu64 ",\n  \"tls_handshakes_per_s\": %.3f,\n"
			   "  \"tls_resumed\": %" PRIu64 ",\n  \"tls_failures\": %" PRIu64 ",\n"
			   "  \"no_starttls_sessions\": %" PRIu64 ",\n",
			st->tls_handshakes, per_s(st->tls_handshakes, r->elapsed_s), st->tls_resumed,
			st->tls_failures, st->no_starttls);
		json_latency(f, "latency_handshake_us", &st->handshake);
	}
	fprintf(f, "  \"messages\": %" PRIu64 ",\n  \"errors\": %" PRIu64 ",\n"
		   "  \"elapsed_s\": %.6f,\n  \"msgs_per_s\": %.3f,\n  \"mb_per_s\": %.6f,\n"
		   "  \"message_bytes\": %" PRIu64 ",\n  \"connects\": %" PRIu64 ",\n"
		   "  \"conns_per_s\": %.3f,\n  \"connection_failures\": %" PRIu64 ",\n"
		   "  \"timeouts\": %" PRIu64 ",\n  \"no_pipelining_sessions\": %" PRIu64 ",\n",
		st->ok, st->failed, r->elapsed_s, per_s(st->ok, r->elapsed_s),
		per_s(st->message_bytes, r->elapsed_s) / 1e6, st->message_bytes, st->connects,
		per_s(st->connects, r->elapsed_s), st->conn_errors, st->timeouts,
		st->no_pipelining);
	fprintf(f, "  \"errors_by_code\": {");
	bool any = false;
	for (unsigned code = 0; code < ERROR_CODES; code++) {
		if (st->errors_by_code[code] == 0)
			continue;
		if (code == 0)
			fprintf(f, "%s\"conn\": %" PRIu64, any ? ", " : "", st->errors_by_code[0]);
		else
			fprintf(f, "%s\"%u\": %" PRIu64, any ? ", " : "", code,
				st->errors_by_code[code]);
		any = true;
	}
	fprintf(f, "},\n");
	json_latency(f, "latency_txn_us", &st->txn);
	json_latency(f, "latency_ack_us", &st->ack);
	if (opt->rate_per_s > 0) {
		json_latency(f, "schedule_lag_us", &st->lag);
		fprintf(f, "  \"schedule_late\": %" PRIu64 ",\n  \"schedule_late_no_conn\": %" PRIu64
			   ",\n  \"schedule_never_started\": %" PRIu64 ",\n  \"schedule_kept\": %s,\n",
			st->late, st->late_no_conn, st->never_started,
			st->late == 0 && st->never_started == 0 ? "true" : "false");
	}
	fprintf(f, "  \"bench_cpu_s\": %.6f,\n  \"bench_cpu_s_per_1000\": %.6f", r->bench_cpu_s,
		done ? r->bench_cpu_s * 1000.0 / (double)done : 0.0);
	if (r->have_server) {
		double cpu = r->server_after.cpu_s - r->server_before.cpu_s;
		fprintf(f, ",\n  \"server_pid\": %ld,\n  \"server_cpu_s\": %.6f,\n"
			   "  \"server_cpu_s_per_1000\": %.6f,\n  \"server_rss_kib_before\": %" PRIu64
			   ",\n  \"server_rss_kib_after\": %" PRIu64,
			opt->pid, cpu, done ? cpu * 1000.0 / (double)done : 0.0,
			r->server_before.rss_kib, r->server_after.rss_kib);
	}
	fprintf(f, "\n}\n");
	return ferror(f) ? -1 : 0;
}

void stats_merge(struct bench_stats *dst, const struct bench_stats *src)
{
	dst->ok += src->ok;
	dst->failed += src->failed;
	dst->message_bytes += src->message_bytes;
	dst->connects += src->connects;
	dst->conn_errors += src->conn_errors;
	dst->timeouts += src->timeouts;
	dst->late += src->late;
	dst->late_no_conn += src->late_no_conn;
	dst->never_started += src->never_started;
	dst->no_pipelining += src->no_pipelining;
	dst->no_starttls += src->no_starttls;
	dst->tls_handshakes += src->tls_handshakes;
	dst->tls_resumed += src->tls_resumed;
	dst->tls_failures += src->tls_failures;
	if (!dst->tls_version[0]) {
		memcpy(dst->tls_version, src->tls_version, sizeof(dst->tls_version));
		memcpy(dst->tls_cipher, src->tls_cipher, sizeof(dst->tls_cipher));
	}
	dst->last_done_ns = RMX_MAX(dst->last_done_ns, src->last_done_ns);
	for (unsigned i = 0; i < ERROR_CODES; i++)
		dst->errors_by_code[i] += src->errors_by_code[i];
	hist_merge(&dst->txn, &src->txn);
	hist_merge(&dst->ack, &src->ack);
	hist_merge(&dst->lag, &src->lag);
	hist_merge(&dst->handshake, &src->handshake);
}
