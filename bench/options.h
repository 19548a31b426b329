/*
 * options.h - ringmx-bench's command line, parsed into one immutable struct.
 *
 * Every option of the bench with its bounds; a bad value is refused with a
 * message on stderr (the bench then exits 2), never clamped. The struct is
 * filled once at start-up and only read afterwards, by every event loop.
 */
#ifndef RINGMX_BENCH_OPTIONS_H
#define RINGMX_BENCH_OPTIONS_H

#include "load.h"

#include <stdio.h>

#define THREADS_MAX 64
#define CONNS_MAX 1000000u
#define RCPTS_MAX 1000u
#define ADDRESS_MAX_BYTES 256
#define REPLY_TIMEOUT_DEFAULT_S 60
#define MESSAGES_DEFAULT 10000

/* How a session speaks TLS: never, STARTTLS after the first EHLO (RFC 3207;
 * EHLO again afterwards), or from the first byte (smtps, RFC 8314). */
enum bench_tls {
	BENCH_TLS_OFF,
	BENCH_TLS_STARTTLS,
	BENCH_TLS_IMPLICIT,
};

struct options {
	char host[256];
	char port[16];
	unsigned threads;
	unsigned conns;
	uint64_t messages;       /* 0 with --duration */
	double duration_s;       /* 0 with --messages */
	struct size_dist sizes;
	char size_text[128];
	unsigned rcpts;
	char from[ADDRESS_MAX_BYTES];
	char to[ADDRESS_MAX_BYTES];
	bool pipelining;
	bool new_conn_per_message;
	double rate_per_s;       /* 0: closed loop */
	unsigned idle_conns;
	double idle_noop_s;      /* 0: idle connections never send NOOP */
	int source_spread;       /* -1: on for 127.* servers */
	long pid;                /* 0: none */
	const char *json_path;
	bool allow_errors;
	double timeout_s;
	char helo[128];
	enum bench_tls tls;
	bool tls_resume;         /* offer the last session's ticket (else every
				  * handshake is a full one) */
};

/* Fills opt from argv. Returns 0, 1 for --help, or -1 after saying what is
 * wrong on stderr. Uses getopt_long (process-wide state, reset on entry):
 * call it from one thread. */
int options_parse(struct options *opt, int argc, char **argv) RMX_MUST_CHECK;

/* The --help text. */
void options_usage(FILE *f);

#endif
