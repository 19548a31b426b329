/*
 * load.c - message sizes and bodies for the load generator (see load.h).
 *
 * Used at start-up by ringmx_bench.c (parsing, body templates) and per
 * message (size pick, header block). Invariants: a distribution's weights sum
 * to 100 and every class is at least one byte; a body fill ends with CRLF and
 * none of its lines starts with '.'.
 */
#include "load.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int parse_unsigned(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	if (text == NULL || *text < '0' || *text > '9')
		return -1;
	uint64_t v = 0;
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int parse_size_bytes(const char *text, uint64_t max_bytes, uint64_t *out_bytes)
{
	char digits[32];
	size_t n = strlen(text);
	if (n == 0 || n >= sizeof(digits))
		return -1;
	uint64_t unit = 1;
	char last = text[n - 1];
	if (last == 'k' || last == 'K')
		unit = 1024;
	else if (last == 'm' || last == 'M')
		unit = 1024 * 1024;
	if (unit != 1)
		n--;
	memcpy(digits, text, n);
	digits[n] = '\0';
	uint64_t v;
	if (parse_unsigned(digits, 1, max_bytes, &v) != 0 || v > max_bytes / unit)
		return -1;
	*out_bytes = v * unit;
	return 0;
}

int size_dist_parse(struct size_dist *d, const char *text, char *err, size_t err_cap)
{
	memset(d, 0, sizeof(*d));
	if (strchr(text, ':') == NULL) {
		if (parse_size_bytes(text, MESSAGE_SIZE_MAX_BYTES, &d->size_bytes[0]) != 0) {
			snprintf(err, err_cap, "size '%s' is not a byte count like 1k or 32k "
				 "(at most 64m)", text);
			return -1;
		}
		d->count = 1;
		d->weight_pct[0] = 100;
		d->cumulative_pct[0] = 100;
		return 0;
	}
	char copy[512];
	if (strlen(text) >= sizeof(copy)) {
		snprintf(err, err_cap, "size distribution too long");
		return -1;
	}
	strcpy(copy, text);
	unsigned total = 0;
	char *save = NULL;
	for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		if (d->count == SIZE_CLASSES_MAX) {
			snprintf(err, err_cap, "more than %d size classes", SIZE_CLASSES_MAX);
			return -1;
		}
		char *colon = strchr(item, ':');
		uint64_t pct;
		if (colon == NULL) {
			snprintf(err, err_cap, "size class '%s' has no ':PERCENT'", item);
			return -1;
		}
		*colon = '\0';
		if (parse_size_bytes(item, MESSAGE_SIZE_MAX_BYTES, &d->size_bytes[d->count]) != 0 ||
		    parse_unsigned(colon + 1, 1, 100, &pct) != 0) {
			snprintf(err, err_cap, "size class '%s:%s' is not SIZE:PERCENT "
				 "(like 10k:30)", item, colon + 1);
			return -1;
		}
		total += (unsigned)pct;
		if (total > 100)
			break;
		d->weight_pct[d->count] = (unsigned)pct;
		d->cumulative_pct[d->count] = total;
		d->count++;
	}
	if (total != 100 || d->count == 0) {
		snprintf(err, err_cap, "size weights in '%s' add up to %u%%, not 100%%", text, total);
		return -1;
	}
	return 0;
}

unsigned size_dist_pick(const struct size_dist *d, uint32_t random)
{
	RMX_ASSERT(d->count > 0 && d->cumulative_pct[d->count - 1] == 100);
	unsigned roll = random % 100;
	for (unsigned i = 0; i < d->count; i++)
		if (roll < d->cumulative_pct[i])
			return i;
	RMX_ASSERT(0 && "cumulative weights end at 100");
	return 0;
}

size_t message_header_format(char *buf, size_t cap, const char *from, const char *to,
			     unsigned thread_index, uint64_t seq)
{
	/* Fixed widths: the length of the block never depends on the numbers. */
	int n = snprintf(buf, cap,
			 "From: <%s>\r\nTo: <%s>\r\n"
			 "Subject: ringmx-bench %03u-%012" PRIu64 "\r\n"
			 "Message-ID: <%03u.%012" PRIu64 "@ringmx-bench.invalid>\r\n\r\n",
			 from, to, thread_index % 1000, (uint64_t)(seq % 1000000000000ull),
			 thread_index % 1000, (uint64_t)(seq % 1000000000000ull));
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n;
}

uint8_t *body_fill_make(uint64_t size_bytes, size_t header_bytes, size_t *fill_bytes)
{
	const size_t line_bytes = BODY_LINE_TEXT_BYTES + 2;
	size_t want = size_bytes > header_bytes + 3 ? (size_t)(size_bytes - header_bytes) : 3;
	uint8_t *fill = malloc(want);
	if (fill == NULL)
		return NULL;
	size_t pos = 0;
	unsigned line_no = 0;
	while (pos < want) {
		size_t left = want - pos;
		/* A line of text and CRLF; the last one takes what is left (at
		 * least one character), and never leaves a remainder under 3. */
		size_t text = BODY_LINE_TEXT_BYTES;
		if (left < line_bytes + 3)
			text = left - 2;
		for (size_t i = 0; i < text; i++)
			fill[pos + i] = (uint8_t)('A' + (line_no + i) % 26);
		fill[pos + text] = '\r';
		fill[pos + text + 1] = '\n';
		pos += text + 2;
		line_no++;
	}
	RMX_ASSERT(pos == want && fill[want - 1] == '\n' && fill[0] != '.');
	*fill_bytes = want;
	return fill;
}
