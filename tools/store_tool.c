/*
 * store_tool.c - the small helpers every ringmx-store command uses: the
 * clock, the age format of ls and ls --deferred, a pause for the bounded
 * waits. No state.
 */
#include "store_tool.h"

#include <errno.h>
#include <time.h>

int64_t store_tool_now_unix_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void store_tool_format_age(int64_t age_ms, char *out, size_t cap)
{
	long long s = age_ms > 0 ? age_ms / 1000 : 0;
	if (s < 60)
		snprintf(out, cap, "%llds", s);
	else if (s < 3600)
		snprintf(out, cap, "%lldm", s / 60);
	else if (s < 86400)
		snprintf(out, cap, "%lldh", s / 3600);
	else
		snprintf(out, cap, "%lldd", s / 86400);
}

void store_tool_sleep_ms(long ms)
{
	struct timespec pause = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
	}
}
