/*
 * test_rfc5322_date.c - the one RFC 5322 date formatter (Received:, DSN
 * Date: and Arrival-Date:): fixed cases across leap years and the clamps,
 * then 200,000 instants against the C library's gmtime_r + strftime.
 */
#include <time.h>

#include "../proto/rfc5322_date.h"
#include "test.h"

static void check_date(int64_t t, const char *want)
{
	char out[RFC5322_DATE_BYTES];
	rfc5322_date_format(t, out);
	CHECK_MEM(out, sizeof out, want, strlen(want));
}

static void test_dates(void)
{
	check_date(0, "Thu, 01 Jan 1970 00:00:00 +0000");
	check_date(951782400, "Tue, 29 Feb 2000 00:00:00 +0000");
	check_date(1709210096, "Thu, 29 Feb 2024 12:34:56 +0000");
	check_date(4107542399, "Sun, 28 Feb 2100 23:59:59 +0000");
	check_date(4107542400, "Mon, 01 Mar 2100 00:00:00 +0000");
	check_date(253402300799, "Fri, 31 Dec 9999 23:59:59 +0000");
	check_date(INT64_MAX, "Fri, 31 Dec 9999 23:59:59 +0000");
	check_date(-1, "Thu, 01 Jan 1970 00:00:00 +0000");
	check_date(INT64_MIN, "Thu, 01 Jan 1970 00:00:00 +0000");

	/* Against the C library over the whole range (fixed seed). */
	uint64_t state = 0x9e3779b97f4a7c15ull;
	size_t mismatches = 0;
	for (int i = 0; i < 200000; i++) {
		state ^= state << 13;
		state ^= state >> 7;
		state ^= state << 17;
		int64_t t = (int64_t)(state % 253402300800ull);
		if (i < 1000)
			t = (int64_t)(state % 4200000000ull); /* dense near now */
		time_t tt = (time_t)t;
		struct tm tm;
		REQUIRE(gmtime_r(&tt, &tm) != NULL);
		char want[64];
		REQUIRE(strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S +0000", &tm) ==
			RFC5322_DATE_BYTES);
		char got[RFC5322_DATE_BYTES];
		rfc5322_date_format(t, got);
		if (memcmp(got, want, RFC5322_DATE_BYTES) != 0) {
			if (mismatches++ < 5)
				fprintf(stderr, "date %lld: %.31s != %s\n", (long long)t, got, want);
		}
	}
	CHECK_EQ_U(mismatches, 0);
}

int main(void)
{
	test_dates();
	return test_main_end("test_rfc5322_date");
}
