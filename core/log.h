/*
 * log.h - one line per event on stderr, logfmt style (key=value).
 *
 * Each line is formatted into a local buffer and written with a single
 * write(2), so lines from different workers never interleave. Values that
 * come from clients must go through log_quote(). Any thread.
 */
#ifndef RINGMX_LOG_H
#define RINGMX_LOG_H

#include "base.h"

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);

/* Formats "level=... " + fmt and writes one line. */
void log_line(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_line(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_line(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_line(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_line(LOG_DEBUG, __VA_ARGS__)

#endif
