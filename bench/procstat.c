/*
 * procstat.c - server CPU and RSS samples from /proc (see procstat.h).
 *
 * Used only before and after a bench run, never inside an event loop.
 * /proc/PID/stat: the command name (field 2) is in parentheses and may hold
 * anything, so fields are counted from the LAST ')'; utime and stime are
 * fields 14 and 15, in clock ticks.
 */
#include "procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PROC_FILE_MAX_BYTES 8192

int proc_stat_parse_cpu(const char *text, long ticks_per_s, double *cpu_s)
{
	const char *close = strrchr(text, ')');
	if (close == NULL || ticks_per_s <= 0)
		return -EPROTO;
	/* After ")": field 3 (state) is the first token; utime is field 14. */
	const char *p = close + 1;
	unsigned long long utime = 0, stime = 0;
	for (unsigned field = 3; field <= 15; field++) {
		while (*p == ' ')
			p++;
		if (*p == '\0' || *p == '\n')
			return -EPROTO;
		if (field == 14 || field == 15) {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(p, &end, 10);
			if (end == p || errno != 0 || (*end != ' ' && *end != '\n' && *end != '\0'))
				return -EPROTO;
			if (field == 14)
				utime = v;
			else
				stime = v;
			p = end;
		} else {
			while (*p && *p != ' ' && *p != '\n')
				p++;
		}
	}
	*cpu_s = (double)(utime + stime) / (double)ticks_per_s;
	return 0;
}

int proc_status_parse_rss(const char *text, uint64_t *rss_kib)
{
	const char *line = text;
	while (line && *line) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(line + 6, &end, 10);
			if (end == line + 6 || errno != 0)
				return -EPROTO;
			*rss_kib = v;
			return 0;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return -EPROTO;
}

/* Reads a whole small file into buf (NUL-terminated). 0 or -errno. */
static int read_small_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	size_t len = 0;
	for (;;) {
		if (len + 1 >= cap) {
			close(fd);
			return -EPROTO;
		}
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (close(fd) != 0)
		return -errno;
	return 0;
}

int proc_sample_read(pid_t pid, struct proc_sample *out)
{
	char path[64];
	char text[PROC_FILE_MAX_BYTES];
	long ticks = sysconf(_SC_CLK_TCK);
	int rc;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((rc = read_small_file(path, text, sizeof(text))) != 0)
		return rc;
	if ((rc = proc_stat_parse_cpu(text, ticks, &out->cpu_s)) != 0)
		return rc;
	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((rc = read_small_file(path, text, sizeof(text))) != 0)
		return rc;
	return proc_status_parse_rss(text, &out->rss_kib);
}
