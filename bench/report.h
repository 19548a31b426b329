/*
 * report.h - what a bench run measured, and how it is printed.
 *
 * Each event loop counts into its own bench_stats; the main thread merges
 * them after the loops end and prints the text summary and the JSON (the same
 * numbers in both). Latencies are in the histograms in nanoseconds and are
 * printed in microseconds.
 */
#ifndef RINGMX_BENCH_REPORT_H
#define RINGMX_BENCH_REPORT_H

#include "hist.h"
#include "options.h"
#include "procstat.h"

#include <stdio.h>

#define ERROR_CODES 600   /* index 0: no reply (connection failed) */

struct bench_stats {
	uint64_t ok;
	uint64_t failed;
	uint64_t message_bytes;  /* of messages acknowledged with 2xx */
	uint64_t connects;       /* sessions that reached the banner */
	uint64_t conn_errors;
	uint64_t timeouts;
	uint64_t late;           /* rate mode: started > 1 ms after schedule */
	uint64_t late_no_conn;   /* ... of which found no free connection */
	uint64_t never_started;  /* rate + duration: due, but no connection in time */
	uint64_t no_pipelining;  /* sessions whose EHLO lacked PIPELINING */
	uint64_t no_starttls;    /* --tls: sessions whose EHLO lacked STARTTLS */
	uint64_t tls_handshakes; /* completed */
	uint64_t tls_resumed;    /* ... of which resumed a session */
	uint64_t tls_failures;   /* handshakes that failed or were refused */
	char tls_version[16];    /* of the first completed handshake */
	char tls_cipher[64];
	uint64_t last_done_ns;
	uint64_t errors_by_code[ERROR_CODES];
	struct hist txn;         /* MAIL sent -> final reply */
	struct hist ack;         /* end of data sent -> final reply */
	struct hist lag;         /* rate mode: scheduled -> MAIL sent */
	struct hist handshake;   /* ClientHello queued -> handshake complete */
};

struct bench_results {
	struct bench_stats st;
	double elapsed_s;
	double bench_cpu_s;
	bool have_server;
	struct proc_sample server_before, server_after;
};

/* Empties st (histograms included). */
void stats_init(struct bench_stats *st);

/* Adds src into dst. */
void stats_merge(struct bench_stats *dst, const struct bench_stats *src);

/* The human-readable summary. */
void report_text(FILE *f, const struct options *opt, const struct bench_results *r);

/* The JSON document. Returns 0, or -1 if f reported a write error. */
int report_json(FILE *f, const struct options *opt, const struct bench_results *r) RMX_MUST_CHECK;

#endif
