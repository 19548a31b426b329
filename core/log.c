/*
 * log.c - the line writer. A line longer than the buffer is cut, never
 * split across writes.
 */
#include "log.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>

static enum log_level log_threshold = LOG_INFO;

void log_set_level(enum log_level level)
{
	log_threshold = level;
}

void log_line(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	if (level > log_threshold)
		return;
	char line[1024];
	int n = snprintf(line, sizeof(line), "ringmx: level=%s ", names[level]);
	RMX_ASSERT(n > 0 && (size_t)n < sizeof(line));
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : RMX_MIN((size_t)m, sizeof(line) - (size_t)n - 2));
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w; /* nowhere to report a failed log write */
}
