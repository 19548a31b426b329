/*
 * procstat.h - CPU time and resident memory of another process, from /proc.
 *
 * The bench samples the server (--pid) before and after a run to report its
 * CPU seconds per 1000 messages and its RSS. Linux only; blocking reads of
 * two small files, done outside the measured loops.
 */
#ifndef RINGMX_BENCH_PROCSTAT_H
#define RINGMX_BENCH_PROCSTAT_H

#include "../common/base.h"

#include <sys/types.h>

struct proc_sample {
	double cpu_s;     /* utime + stime, all threads */
	uint64_t rss_kib; /* VmRSS */
};

/* Reads /proc/PID/stat and /proc/PID/status. Returns 0, or -errno (-ESRCH
 * when the process is gone, -EPROTO when a file does not parse). */
int proc_sample_read(pid_t pid, struct proc_sample *out) RMX_MUST_CHECK;

/* Parses the text of a /proc/PID/stat file into CPU seconds given the clock
 * ticks per second. Returns 0 or -EPROTO. (Exposed for the unit test: the
 * command name field may hold spaces and parentheses.) */
int proc_stat_parse_cpu(const char *text, long ticks_per_s, double *cpu_s) RMX_MUST_CHECK;

/* Finds "VmRSS:  N kB" in the text of /proc/PID/status. 0 or -EPROTO. */
int proc_status_parse_rss(const char *text, uint64_t *rss_kib) RMX_MUST_CHECK;

#endif
