/*
 * rfc5322_date.c - days since the epoch to a civil date in the proleptic
 * Gregorian calendar (eras of 400 years, years starting in March so that the
 * leap day comes last), then the fixed-width RFC 5322 text.
 */
#include "rfc5322_date.h"

#include <string.h>

struct civil_date {
	int64_t year;
	unsigned month; /* 1..12 */
	unsigned day;   /* 1..31 */
};

static struct civil_date civil_from_days(int64_t days)
{
	const int64_t shifted = days + 719468; /* days from 0000-03-01 */
	const int64_t era = (shifted >= 0 ? shifted : shifted - 146096) / 146097;
	const int64_t day_of_era = shifted - era * 146097; /* 0..146096 */
	const int64_t year_of_era =
		(day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
	const int64_t day_of_year =
		day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); /* 0..365 */
	const int64_t month_from_march = (5 * day_of_year + 2) / 153;
	struct civil_date d;
	d.day = (unsigned)(day_of_year - (153 * month_from_march + 2) / 5 + 1);
	d.month = (unsigned)(month_from_march < 10 ? month_from_march + 3 : month_from_march - 9);
	d.year = year_of_era + era * 400 + (d.month <= 2 ? 1 : 0);
	return d;
}

/* Writes v as exactly width decimal digits (zero-padded). */
static void put_digits(char *out, uint64_t v, unsigned width)
{
	for (unsigned i = width; i-- > 0;) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

void rfc5322_date_format(int64_t t, char out[RFC5322_DATE_BYTES])
{
	/* 1970-01-01 was a Thursday. */
	static const char weekday[7][4] = { "Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed" };
	static const char month_name[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
						"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	if (t < 0)
		t = 0;
	if (t > RFC5322_DATE_UNIX_MAX)
		t = RFC5322_DATE_UNIX_MAX;
	const int64_t days = t / 86400;
	const unsigned secs = (unsigned)(t % 86400);
	const struct civil_date d = civil_from_days(days);
	RMX_ASSERT(d.year >= 1970 && d.year <= 9999 && d.month >= 1 && d.month <= 12);
	/* "Www, DD Mmm YYYY HH:MM:SS +0000" */
	memcpy(out, weekday[days % 7], 3);
	memcpy(out + 3, ", ", 2);
	put_digits(out + 5, d.day, 2);
	out[7] = ' ';
	memcpy(out + 8, month_name[d.month - 1], 3);
	out[11] = ' ';
	put_digits(out + 12, (uint64_t)d.year, 4);
	out[16] = ' ';
	put_digits(out + 17, secs / 3600, 2);
	out[19] = ':';
	put_digits(out + 20, secs / 60 % 60, 2);
	out[22] = ':';
	put_digits(out + 23, secs % 60, 2);
	memcpy(out + 25, " +0000", 6);
}
