/*
 * options.c - parsing ringmx-bench's command line (see options.h).
 *
 * Runs once, before any event loop exists. Invariants of a parsed struct:
 * a server is given; exactly one of messages and duration_s is non-zero;
 * the size distribution has at least one class summing to 100%; conns is at
 * least threads; addresses hold no spaces, controls or angle brackets.
 */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

void options_usage(FILE *f)
{
	fprintf(f,
		"usage: ringmx-bench --server HOST:PORT [options]\n"
		"  --threads N            event loops, one io_uring each (default 1)\n"
		"  --conns N              concurrent sessions sending mail (default 10)\n"
		"  --messages N           messages in total (default %d), or\n"
		"  --duration S           send for S seconds\n"
		"  --size SPEC            1k, 32k, or 1k:60,10k:30,100k:10 (percent)\n"
		"  --rcpts N              recipients per message (default 1)\n"
		"  --from ADDR --to ADDR  envelope; with --rcpts > 1, user1@dom, user2@dom ...\n"
		"  --helo NAME            EHLO name (default bench.ringmx.invalid)\n"
		"  --pipelining on|off    MAIL+RCPT+DATA in one write (default on)\n"
		"  --new-conn-per-message one session per message\n"
		"  --rate R               open loop: start R messages/s on a fixed schedule\n"
		"  --idle-conns N         extra sessions that only hold a session open\n"
		"  --idle-noop S          idle sessions send NOOP every S seconds\n"
		"  --source-spread on|off bind to 127.0.0.1-254 (default on for 127.*)\n"
		"  --timeout S            wait at most S seconds for a reply (default %d)\n"
		"  --pid PID              report that server's CPU per 1000 messages and RSS\n"
		"  --tls[=starttls|implicit]\n"
		"                         STARTTLS after EHLO, then EHLO again (default), or\n"
		"                         TLS from the first byte; no certificate checks\n"
		"  --smtps                the same as --tls=implicit\n"
		"  --tls-resume           resume the loop's last TLS session (default: every\n"
		"                         handshake is a full one)\n"
		"  --json FILE|-          machine-readable results (- : stdout; the text\n"
		"                         summary then goes to stderr)\n"
		"  --allow-errors         exit 0 even if some messages failed\n"
		"exit status: 0 every message got a 2xx final reply, 1 otherwise, 2 bad options\n",
		MESSAGES_DEFAULT, REPLY_TIMEOUT_DEFAULT_S);
}

static int bad_option(const char *what, const char *value)
{
	fprintf(stderr, "ringmx-bench: bad %s '%s' (see --help)\n", what, value ? value : "");
	return -1;
}

static int parse_on_off(const char *v, bool *out)
{
	if (strcmp(v, "on") == 0)
		*out = true;
	else if (strcmp(v, "off") == 0)
		*out = false;
	else
		return -1;
	return 0;
}

static int parse_seconds(const char *v, double min, double max, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (end == v || *end != '\0' || errno != 0 || !(d >= min) || !(d <= max))
		return -1;
	*out = d;
	return 0;
}

static bool address_ok(const char *a)
{
	size_t n = strlen(a);
	if (n == 0 || n >= ADDRESS_MAX_BYTES - 16)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)a[i] <= ' ' || a[i] == '<' || a[i] == '>' || a[i] == 0x7f)
			return false;
	return true;
}

enum {
	O_SERVER = 256, O_THREADS, O_CONNS, O_MESSAGES, O_DURATION, O_SIZE, O_RCPTS, O_FROM,
	O_TO, O_PIPELINING, O_NEWCONN, O_RATE, O_IDLE, O_IDLE_NOOP, O_SPREAD, O_PID, O_JSON,
	O_TLS, O_SMTPS, O_TLS_RESUME, O_ALLOW, O_TIMEOUT, O_HELO, O_HELP,
};

int options_parse(struct options *opt, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "server", required_argument, NULL, O_SERVER },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "conns", required_argument, NULL, O_CONNS },
		{ "messages", required_argument, NULL, O_MESSAGES },
		{ "duration", required_argument, NULL, O_DURATION },
		{ "size", required_argument, NULL, O_SIZE },
		{ "rcpts", required_argument, NULL, O_RCPTS },
		{ "from", required_argument, NULL, O_FROM },
		{ "to", required_argument, NULL, O_TO },
		{ "pipelining", required_argument, NULL, O_PIPELINING },
		{ "new-conn-per-message", no_argument, NULL, O_NEWCONN },
		{ "rate", required_argument, NULL, O_RATE },
		{ "idle-conns", required_argument, NULL, O_IDLE },
		{ "idle-noop", required_argument, NULL, O_IDLE_NOOP },
		{ "source-spread", required_argument, NULL, O_SPREAD },
		{ "pid", required_argument, NULL, O_PID },
		{ "json", required_argument, NULL, O_JSON },
		{ "tls", optional_argument, NULL, O_TLS },
		{ "smtps", no_argument, NULL, O_SMTPS },
		{ "tls-resume", no_argument, NULL, O_TLS_RESUME },
		{ "allow-errors", no_argument, NULL, O_ALLOW },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "helo", required_argument, NULL, O_HELO },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	memset(opt, 0, sizeof(*opt));
	opt->threads = 1;
	opt->conns = 10;
	opt->rcpts = 1;
	opt->pipelining = true;
	opt->source_spread = -1;
	opt->timeout_s = REPLY_TIMEOUT_DEFAULT_S;
	strcpy(opt->from, "bench@client.invalid");
	strcpy(opt->to, "user@example.com");
	strcpy(opt->helo, "bench.ringmx.invalid");
	strcpy(opt->size_text, "1k");
	bool have_server = false, have_messages = false;
	uint64_t v;
	bool flag;
	int ch;
	opterr = 0;
	optind = 0; /* glibc: start over, also on a second call */
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		const char *a = optarg;
		switch (ch) {
		case O_SERVER: {
			const char *colon = strrchr(a, ':');
			const char *h = a;
			size_t hl = colon ? (size_t)(colon - a) : 0;
			if (hl >= 2 && a[0] == '[' && a[hl - 1] == ']') {
				h = a + 1;
				hl -= 2;
			}
			if (colon == NULL || hl == 0 || hl >= sizeof(opt->host) ||
			    parse_unsigned(colon + 1, 1, 65535, &v) != 0)
				return bad_option("--server (HOST:PORT)", a);
			memcpy(opt->host, h, hl);
			opt->host[hl] = '\0';
			snprintf(opt->port, sizeof(opt->port), "%u", (unsigned)v);
			have_server = true;
			break;
		}
		case O_THREADS:
			if (parse_unsigned(a, 1, THREADS_MAX, &v) != 0)
				return bad_option("--threads (1-64)", a);
			opt->threads = (unsigned)v;
			break;
		case O_CONNS:
			if (parse_unsigned(a, 1, CONNS_MAX, &v) != 0)
				return bad_option("--conns", a);
			opt->conns = (unsigned)v;
			break;
		case O_MESSAGES:
			if (parse_unsigned(a, 1, UINT64_MAX / 2, &v) != 0)
				return bad_option("--messages", a);
			opt->messages = v;
			have_messages = true;
			break;
		case O_DURATION:
			if (parse_seconds(a, 0.001, 1e7, &opt->duration_s) != 0)
				return bad_option("--duration (seconds)", a);
			break;
		case O_SIZE: {
			char err[200];
			if (strlen(a) >= sizeof(opt->size_text) ||
			    size_dist_parse(&opt->sizes, a, err, sizeof(err)) != 0) {
				fprintf(stderr, "ringmx-bench: --size: %s\n",
					strlen(a) >= sizeof(opt->size_text) ? "too long" : err);
				return -1;
			}
			strcpy(opt->size_text, a);
			break;
		}
		case O_RCPTS:
			if (parse_unsigned(a, 1, RCPTS_MAX, &v) != 0)
				return bad_option("--rcpts (1-1000)", a);
			opt->rcpts = (unsigned)v;
			break;
		case O_FROM:
		case O_TO:
			if (!address_ok(a))
				return bad_option(ch == O_FROM ? "--from" : "--to", a);
			strcpy(ch == O_FROM ? opt->from : opt->to, a);
			break;
		case O_HELO:
			if (!address_ok(a) || strlen(a) >= sizeof(opt->helo))
				return bad_option("--helo", a);
			strcpy(opt->helo, a);
			break;
		case O_PIPELINING:
			if (parse_on_off(a, &opt->pipelining) != 0)
				return bad_option("--pipelining (on|off)", a);
			break;
		case O_NEWCONN:
			opt->new_conn_per_message = true;
			break;
		case O_RATE:
			if (parse_seconds(a, 0.001, 1e8, &opt->rate_per_s) != 0)
				return bad_option("--rate (messages/s)", a);
			break;
		case O_IDLE:
			if (parse_unsigned(a, 0, CONNS_MAX, &v) != 0)
				return bad_option("--idle-conns", a);
			opt->idle_conns = (unsigned)v;
			break;
		case O_IDLE_NOOP:
			if (parse_seconds(a, 0.01, 86400, &opt->idle_noop_s) != 0)
				return bad_option("--idle-noop (seconds)", a);
			break;
		case O_SPREAD:
			if (parse_on_off(a, &flag) != 0)
				return bad_option("--source-spread (on|off)", a);
			opt->source_spread = flag ? 1 : 0;
			break;
		case O_PID:
			if (parse_unsigned(a, 1, 1u << 30, &v) != 0)
				return bad_option("--pid", a);
			opt->pid = (long)v;
			break;
		case O_JSON:
			opt->json_path = a;
			break;
		case O_TLS:
			if (a == NULL || strcmp(a, "starttls") == 0)
				opt->tls = BENCH_TLS_STARTTLS;
			else if (strcmp(a, "implicit") == 0)
				opt->tls = BENCH_TLS_IMPLICIT;
			else
				return bad_option("--tls (starttls|implicit)", a);
			break;
		case O_SMTPS:
			opt->tls = BENCH_TLS_IMPLICIT;
			break;
		case O_TLS_RESUME:
			opt->tls_resume = true;
			break;
		case O_ALLOW:
			opt->allow_errors = true;
			break;
		case O_TIMEOUT:
			if (parse_seconds(a, 0.01, 86400, &opt->timeout_s) != 0)
				return bad_option("--timeout (seconds)", a);
			break;
		case O_HELP:
			return 1;
		default:
			fprintf(stderr, "ringmx-bench: unknown option or missing value: %s\n",
				argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc)
		return bad_option("argument", argv[optind]);
	if (!have_server) {
		fprintf(stderr, "ringmx-bench: --server HOST:PORT is required\n");
		return -1;
	}
	if (have_messages && opt->duration_s > 0) {
		fprintf(stderr, "ringmx-bench: give --messages or --duration, not both\n");
		return -1;
	}
	if (!have_messages && opt->duration_s == 0)
		opt->messages = MESSAGES_DEFAULT;
	if (opt->sizes.count == 0 && size_dist_parse(&opt->sizes, opt->size_text, NULL, 0) != 0)
		return -1;
	if (opt->conns < opt->threads) {
		fprintf(stderr, "ringmx-bench: --conns must be at least --threads\n");
		return -1;
	}
	if (opt->tls_resume && opt->tls == BENCH_TLS_OFF) {
		fprintf(stderr, "ringmx-bench: --tls-resume needs --tls or --smtps\n");
		return -1;
	}
	if (opt->idle_noop_s > 0 && opt->idle_conns == 0) {
		fprintf(stderr, "ringmx-bench: --idle-noop needs --idle-conns\n");
		return -1;
	}
	return 0;
}
