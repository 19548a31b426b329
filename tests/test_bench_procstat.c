/*
 * test_bench_procstat.c - reading a server's CPU time and RSS from /proc.
 *
 * The stat parser on hostile command names (spaces, parentheses), short or
 * malformed lines, the status parser, and a live sample of this process.
 */
#include "../bench/procstat.h"
#include "test.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static void test_parsers(void)
{
	double cpu = 0;
	/* fields: pid (comm) state ppid pgrp session tty tpgid flags minflt
	 * cminflt majflt cmajflt utime stime ... */
	const char *stat = "1234 (rin g) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0\n";
	CHECK(proc_stat_parse_cpu(stat, 100, &cpu) == 0);
	CHECK(cpu > 2.999 && cpu < 3.001);
	CHECK(proc_stat_parse_cpu("1234 (x) S 1 2 3\n", 100, &cpu) == -EPROTO);
	CHECK(proc_stat_parse_cpu("1234 x S 1 2 3\n", 100, &cpu) == -EPROTO);
	CHECK(proc_stat_parse_cpu("1 (a) S 1 1 1 0 -1 0 0 0 0 0 2x 5 0\n", 100, &cpu) == -EPROTO);
	uint64_t rss = 0;
	CHECK(proc_status_parse_rss("Name:\tx\nVmPeak:\t  10 kB\nVmRSS:\t    4321 kB\n", &rss) == 0);
	CHECK_EQ_U(rss, 4321);
	CHECK(proc_status_parse_rss("Name:\tx\n", &rss) == -EPROTO);
	CHECK(proc_status_parse_rss("VmRSS:\tkB\n", &rss) == -EPROTO);
}

static void test_live(void)
{
	struct proc_sample s;
	memset(&s, 0, sizeof(s));
	CHECK(proc_sample_read(getpid(), &s) == 0);
	CHECK(s.rss_kib > 0);
	CHECK(s.cpu_s >= 0.0);
	/* pid_max is at most 2^22: this one cannot exist */
	CHECK(proc_sample_read((pid_t)((1 << 22) + 1), &s) == -ESRCH);
}

int main(void)
{
	test_parsers();
	test_live();
	return test_main_end("test_bench_procstat");
}
