/*
 * ringmx_bench.c - ringmx-bench, the SMTP load generator: its main().
 *
 * Parses the options, builds the plan (options.c, loop.c), starts one event
 * loop per --threads (loop.c), samples the server's CPU and RSS around the
 * run (procstat.c), merges the loops' counters and prints them (report.c).
 * Exit status: 0 when every message got a 2xx final reply (or with
 * --allow-errors), 1 otherwise, 2 for bad options.
 */
#include "loop.h"
#include "options.h"
#include "procstat.h"
#include "report.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define EXIT_OK 0
#define EXIT_FAILED 1
#define EXIT_USAGE 2

static uint64_t monotonic_ns(void)
{
	struct timespec ts;
	int rc = clock_gettime(CLOCK_MONOTONIC, &ts);
	RMX_ASSERT(rc == 0);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_self_s(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0.0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Raises the open-file limit to what the connections need (soft up to hard). */
static void raise_nofile(uint64_t want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	rlim_t target = want < rl.rlim_max ? (rlim_t)want : rl.rlim_max;
	rl.rlim_cur = target;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || target < want)
		fprintf(stderr, "ringmx-bench: open files limited to %llu; %llu connections "
				"may not all open\n", (unsigned long long)target,
			(unsigned long long)want);
}

/* Runs the loops and fills res. Returns 0, -1 on a failure during the run
 * (results are still reported), -2 when the server address is unusable
 * (nothing ran). */
static int run(const struct options *opt, struct bench_results *res)
{
	struct plan plan; /* read-only once the loops run */
	struct loop **loops = NULL;
	pthread_t tids[THREADS_MAX];
	int rc;
	unsigned started = 0;
	stats_init(&res->st);
	rc = plan_build(&plan, opt);
	if (rc != 0) {
		if (rc == -1)
			fprintf(stderr, "ringmx-bench: cannot build the messages\n");
		goto out;
	}
	rc = -1;
	raise_nofile((uint64_t)opt->conns + opt->idle_conns + 64);
	loops = calloc(opt->threads, sizeof(*loops));
	if (loops == NULL)
		goto out;
	for (unsigned i = 0; i < opt->threads; i++)
		if ((loops[i] = loop_new(&plan, i)) == NULL) {
			fprintf(stderr, "ringmx-bench: out of memory for %u connections\n",
				opt->conns + opt->idle_conns);
			goto out;
		}
	if (opt->pid) {
		int prc = proc_sample_read((pid_t)opt->pid, &res->server_before);
		if (prc != 0)
			fprintf(stderr, "ringmx-bench: --pid %ld: %s\n", opt->pid, strerror(-prc));
		res->have_server = prc == 0;
	}
	double cpu0 = cpu_self_s();
	plan.start_ns = monotonic_ns();
	plan.end_ns = opt->duration_s > 0 ? plan.start_ns + (uint64_t)(opt->duration_s * 1e9)
					  : UINT64_MAX;
	for (; started < opt->threads; started++) {
		int prc = pthread_create(&tids[started], NULL, loop_run, loops[started]);
		if (prc != 0) {
			fprintf(stderr, "ringmx-bench: pthread_create: %s\n", strerror(prc));
			break;
		}
	}
	for (unsigned i = 0; i < started; i++) {
		int prc = pthread_join(tids[i], NULL);
		RMX_ASSERT(prc == 0);
	}
	uint64_t end = monotonic_ns();
	res->bench_cpu_s = cpu_self_s() - cpu0;
	if (res->have_server &&
	    proc_sample_read((pid_t)opt->pid, &res->server_after) != 0) {
		fprintf(stderr, "ringmx-bench: --pid %ld: gone before the end\n", opt->pid);
		res->have_server = false;
	}
	bool loop_failed = started < opt->threads;
	for (unsigned i = 0; i < started; i++) {
		if (loop_error(loops[i]) != 0) {
			fprintf(stderr, "ringmx-bench: event loop %u: %s\n", i,
				strerror(-loop_error(loops[i])));
			loop_failed = true;
		}
		stats_merge(&res->st, loop_stats(loops[i]));
	}
	/* From the first connect to the last final reply (or the end when no
	 * message finished). */
	uint64_t last = res->st.last_done_ns ? res->st.last_done_ns : end;
	res->elapsed_s = (double)(last - plan.start_ns) / 1e9;
	rc = loop_failed ? -1 : 0;
out:
	if (loops)
		for (unsigned i = 0; i < opt->threads; i++)
			loop_free(loops[i]);
	free(loops);
	plan_free(&plan);
	return rc;
}

int main(int argc, char **argv)
{
	struct options opt;
	int prc = options_parse(&opt, argc, argv);
	if (prc == 1) {
		options_usage(stdout);
		return EXIT_OK;
	}
	if (prc != 0)
		return EXIT_USAGE;
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return EXIT_FAILED;
	FILE *json = NULL;
	bool json_stdout = opt.json_path && strcmp(opt.json_path, "-") == 0;
	if (opt.json_path && !json_stdout) {
		json = fopen(opt.json_path, "w");
		if (json == NULL) {
			fprintf(stderr, "ringmx-bench: --json %s: %s\n", opt.json_path,
				strerror(errno));
			return EXIT_USAGE;
		}
	}
	/* Four histograms: too large for the stack. */
	struct bench_results *res = calloc(1, sizeof(*res));
	if (res == NULL) {
		fprintf(stderr, "ringmx-bench: out of memory\n");
		return EXIT_FAILED;
	}
	int rc = run(&opt, res);
	if (rc == -2) {
		free(res);
		if (json)
			(void)fclose(json);
		return EXIT_USAGE;
	}
	report_text(json_stdout ? stderr : stdout, &opt, res);
	if (opt.json_path) {
		FILE *f = json_stdout ? stdout : json;
		if (report_json(f, &opt, res) != 0 || fflush(f) != 0) {
			fprintf(stderr, "ringmx-bench: writing JSON failed\n");
			rc = -1;
		}
		if (json && fclose(json) != 0)
			rc = -1;
	}
	if (fflush(stdout) != 0)
		rc = -1;
	const struct bench_stats *st = &res->st;
	bool all_done = opt.messages == 0 || st->ok + st->failed >= opt.messages;
	bool clean = st->failed == 0 && st->conn_errors == 0;
	int status = EXIT_OK;
	if (rc != 0 || st->ok == 0 || !all_done || (!clean && !opt.allow_errors))
		status = EXIT_FAILED;
	free(res);
	return status;
}
