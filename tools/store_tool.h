/*
 * store_tool.h - what the commands of ringmx-store share: the tool's name
 * in its messages, the wall clock, ages as an operator reads them, and a
 * pause. Tool code: blocking, one thread.
 */
#ifndef RINGMX_STORE_TOOL_H
#define RINGMX_STORE_TOOL_H

#include <stdio.h>

#include "../common/base.h"

#define TOOL_NAME "ringmx-store"

/* Milliseconds since the epoch (CLOCK_REALTIME); 0 if the clock fails. */
int64_t store_tool_now_unix_ms(void);

/* age_ms as the largest whole unit: "42s", "5m", "3h", "2d" (a negative
 * age is 0s); cut to fit out[cap]. */
void store_tool_format_age(int64_t age_ms, char *out, size_t cap);

/* Sleeps ms milliseconds, resuming after a signal. */
void store_tool_sleep_ms(long ms);

#endif
