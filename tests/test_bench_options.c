/*
 * test_bench_options.c - ringmx-bench's command line.
 *
 * Defaults, every option's value landing in the struct, HOST:PORT forms
 * (name, IPv4, bracketed IPv6), and the refusals that make the bench exit 2:
 * missing server, --messages with --duration, weights not summing to 100,
 * out-of-range numbers, unknown options, stray arguments; the TLS modes
 * (--tls, --tls=starttls|implicit, --smtps, --tls-resume) and their refusals.
 */
#include "../bench/options.h"
#include "test.h"

#include <string.h>

#define ARGS_MAX 40

/* Parses a NULL-terminated list of arguments (argv[0] is added). */
static int parse(struct options *opt, const char *const *args)
{
	char *argv[ARGS_MAX + 2];
	static char name[] = "ringmx-bench";
	int argc = 0;
	argv[argc++] = name;
	for (; *args; args++) {
		REQUIRE(argc <= ARGS_MAX);
		argv[argc++] = (char *)*args;
	}
	argv[argc] = NULL;
	return options_parse(opt, argc, argv);
}

static void test_defaults(void)
{
	struct options o;
	const char *const a[] = { "--server", "127.0.0.1:2525", NULL };
	CHECK(parse(&o, a) == 0);
	CHECK(strcmp(o.host, "127.0.0.1") == 0);
	CHECK(strcmp(o.port, "2525") == 0);
	CHECK_EQ_U(o.threads, 1);
	CHECK_EQ_U(o.messages, MESSAGES_DEFAULT);
	CHECK(o.duration_s == 0);
	CHECK_EQ_U(o.sizes.count, 1);
	CHECK_EQ_U(o.sizes.size_bytes[0], 1024);
	CHECK_EQ_U(o.rcpts, 1);
	CHECK(o.pipelining);
	CHECK(!o.new_conn_per_message);
	CHECK(o.source_spread == -1);
	CHECK(o.rate_per_s == 0);
	CHECK(o.json_path == NULL);
	CHECK(o.timeout_s == REPLY_TIMEOUT_DEFAULT_S);
	CHECK(o.tls == BENCH_TLS_OFF);
	CHECK(!o.tls_resume);
}

static void test_tls(void)
{
	struct options o;
	const char *const bare[] = { "--server", "h:25", "--tls", NULL };
	CHECK(parse(&o, bare) == 0);
	CHECK(o.tls == BENCH_TLS_STARTTLS);
	CHECK(!o.tls_resume);
	const char *const starttls[] = { "--server", "h:25", "--tls=starttls", "--tls-resume",
					 NULL };
	CHECK(parse(&o, starttls) == 0);
	CHECK(o.tls == BENCH_TLS_STARTTLS);
	CHECK(o.tls_resume);
	const char *const implicit[] = { "--server", "h:465", "--tls=implicit", NULL };
	CHECK(parse(&o, implicit) == 0);
	CHECK(o.tls == BENCH_TLS_IMPLICIT);
	CHECK(!o.tls_resume);
	const char *const smtps[] = { "--server", "h:465", "--smtps", "--messages", "3", NULL };
	CHECK(parse(&o, smtps) == 0);
	CHECK(o.tls == BENCH_TLS_IMPLICIT);
	CHECK_EQ_U(o.messages, 3);
	/* a later parse without TLS forgets it */
	const char *const plain[] = { "--server", "h:25", NULL };
	CHECK(parse(&o, plain) == 0);
	CHECK(o.tls == BENCH_TLS_OFF);
}

static void test_everything(void)
{
	struct options o;
	const char *const a[] = {
		"--server", "[::1]:25", "--threads", "2", "--conns", "300", "--duration", "2.5",
		"--size", "1k:60,10k:30,100k:10", "--rcpts", "7", "--from", "a@b.example",
		"--to", "u@d.example", "--pipelining", "off", "--new-conn-per-message",
		"--rate", "1500", "--idle-conns", "50000", "--idle-noop", "240",
		"--source-spread", "off", "--pid", "4242", "--json", "-", "--allow-errors",
		"--timeout", "5", "--helo", "load.example", NULL
	};
	CHECK(parse(&o, a) == 0);
	CHECK(strcmp(o.host, "::1") == 0);
	CHECK(strcmp(o.port, "25") == 0);
	CHECK_EQ_U(o.threads, 2);
	CHECK_EQ_U(o.conns, 300);
	CHECK_EQ_U(o.messages, 0);
	CHECK(o.duration_s == 2.5);
	CHECK_EQ_U(o.sizes.count, 3);
	CHECK_EQ_U(o.rcpts, 7);
	CHECK(strcmp(o.from, "a@b.example") == 0);
	CHECK(strcmp(o.to, "u@d.example") == 0);
	CHECK(!o.pipelining);
	CHECK(o.new_conn_per_message);
	CHECK(o.rate_per_s == 1500);
	CHECK_EQ_U(o.idle_conns, 50000);
	CHECK(o.idle_noop_s == 240);
	CHECK(o.source_spread == 0);
	CHECK_EQ_U(o.pid, 4242);
	CHECK(o.json_path && strcmp(o.json_path, "-") == 0);
	CHECK(o.allow_errors);
	CHECK(o.timeout_s == 5);
	CHECK(strcmp(o.helo, "load.example") == 0);
	/* a second parse starts over */
	const char *const b[] = { "--server", "mx.example:2525", "--messages", "5", NULL };
	CHECK(parse(&o, b) == 0);
	CHECK(strcmp(o.host, "mx.example") == 0);
	CHECK_EQ_U(o.messages, 5);
	CHECK(o.pipelining);
}

static void test_refusals(void)
{
	struct options o;
	const char *const help[] = { "--help", NULL };
	CHECK(parse(&o, help) == 1);
	const char *const *bad[] = {
		(const char *const[]){ "--conns", "5", NULL },
		(const char *const[]){ "--server", "127.0.0.1", NULL },
		(const char *const[]){ "--server", ":25", NULL },
		(const char *const[]){ "--server", "h:0", NULL },
		(const char *const[]){ "--server", "h:65536", NULL },
		(const char *const[]){ "--server", "h:25", "--messages", "5", "--duration", "1", NULL },
		(const char *const[]){ "--server", "h:25", "--size", "1k:60,10k:30", NULL },
		(const char *const[]){ "--server", "h:25", "--size", "0", NULL },
		(const char *const[]){ "--server", "h:25", "--threads", "0", NULL },
		(const char *const[]){ "--server", "h:25", "--threads", "65", NULL },
		(const char *const[]){ "--server", "h:25", "--threads", "4", "--conns", "3", NULL },
		(const char *const[]){ "--server", "h:25", "--rcpts", "1001", NULL },
		(const char *const[]){ "--server", "h:25", "--pipelining", "yes", NULL },
		(const char *const[]){ "--server", "h:25", "--rate", "-3", NULL },
		(const char *const[]){ "--server", "h:25", "--duration", "x", NULL },
		(const char *const[]){ "--server", "h:25", "--idle-noop", "5", NULL },
		(const char *const[]){ "--server", "h:25", "--to", "a b@c", NULL },
		(const char *const[]){ "--server", "h:25", "--from", "<x@y>", NULL },
		(const char *const[]){ "--server", "h:25", "--tls=ssl", NULL },
		(const char *const[]){ "--server", "h:25", "--tls=", NULL },
		(const char *const[]){ "--server", "h:25", "--tls", "implicit", NULL },
		(const char *const[]){ "--server", "h:25", "--tls-resume", NULL },
		(const char *const[]){ "--server", "h:25", "--smtps=yes", NULL },
		(const char *const[]){ "--server", "h:25", "--bogus", NULL },
		(const char *const[]){ "--server", "h:25", "stray", NULL },
		(const char *const[]){ "--server", NULL },
	};
	for (size_t i = 0; i < RMX_ARRAY_LEN(bad); i++) {
		int rc = parse(&o, bad[i]);
		if (rc != -1)
			fprintf(stderr, "refusal case %zu parsed (%d)\n", i, rc);
		CHECK(rc == -1);
	}
}

int main(void)
{
	test_defaults();
	test_everything();
	test_tls();
	test_refusals();
	return test_main_end("test_bench_options");
}
