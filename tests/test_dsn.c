/*
 * test_dsn.c - delivery status notifications (proto/dsn.c).
 *
 * Every message built here is checked for the wire-form invariants (CRLF
 * lines of at most 998 octets, dot-stuffing, final CRLF, dry run as long as
 * the real one) and then for its content: the exact key lines of one failed
 * recipient, an exact delivery-status part for a mixed set, delayed-only
 * wording, header lines that start with '.', originals that contain the
 * would-be boundary (once, twice, and in thousands of suffixed forms), huge
 * and hostile diagnostics, internationalised addresses, the 64 KiB bound on
 * returned headers, over-long header lines, control and malformed 8-bit
 * bytes in returned headers, and every too-small capacity.
 * With --peer (ctest entry test_dsn_peer) two messages are parsed by
 * Python's email package instead; that entry is skipped (77) without python3.
 */
#include "../proto/dsn.h"

#include "test.h"

#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------- */

#define S(lit) span_make((lit), sizeof(lit) - 1)
#define SZ(str) span_make((str), strlen(str))

static const char original_basic[] =
	"Received: from client.example.com (client.example.com [192.0.2.10])\r\n"
	"\tby mx.example.org (ringmx) with ESMTP id Q1ABC\r\n"
	"\tfor <user@example.org>; Sat, 28 Nov 2026 15:33:20 +0000\r\n"
	"From: Sender <sender@example.com>\r\n"
	"To: User <user@example.org>\r\n"
	"Subject: hello\r\n"
	"Message-ID: <orig1@example.com>\r\n"
	"\r\n"
	"Body line one\r\n"
	"..dotted body line\r\n"
	"SECRET-BODY-MARKER\r\n";

#define NOW_UNIX 1795883000          /* Sat, 28 Nov 2026 16:23:20 +0000 */
#define ARRIVAL_UNIX 1795790000      /* Fri, 27 Nov 2026 14:33:20 +0000 */
#define LAST_ATTEMPT_UNIX 1795882000 /* Sat, 28 Nov 2026 16:06:40 +0000 */

static struct dsn_input base_input(const struct dsn_recipient *r, uint32_t count)
{
	struct dsn_input in;
	memset(&in, 0, sizeof in);
	in.reporting_mta = S("mx.example.org");
	in.queue_id = S("Q1ABC");
	in.arrival_unix = ARRIVAL_UNIX;
	in.now_unix = NOW_UNIX;
	in.to = S("sender@example.com");
	in.recipients = r;
	in.recipient_count = count;
	in.original = S(original_basic);
	in.smtputf8 = false;
	in.message_id_token = S("T0KEN1");
	return in;
}

static bool contains(const uint8_t *p, size_t n, const char *needle)
{
	size_t m = strlen(needle);
	if (m > n)
		return false;
	return memmem(p, n, needle, m) != NULL;
}

static size_t count_of(const uint8_t *p, size_t n, const char *needle)
{
	size_t m = strlen(needle), count = 0;
	const uint8_t *end = p + n;
	while ((size_t)(end - p) >= m) {
		const uint8_t *hit = memmem(p, (size_t)(end - p), needle, m);
		if (hit == NULL)
			break;
		count++;
		p = hit + 1;
	}
	return count;
}

/* Whether some whole line of p equals line. */
static bool has_line(const uint8_t *p, size_t n, const char *line)
{
	size_t m = strlen(line);
	if (n >= m + 2 && memcmp(p, line, m) == 0 && p[m] == '\r' && p[m + 1] == '\n')
		return true;
	char needle[1100];
	REQUIRE(m + 4 < sizeof needle);
	snprintf(needle, sizeof needle, "\r\n%s\r\n", line);
	return contains(p, n, needle);
}

/* The wire-form invariants every DSN keeps. */
static bool wire_form_ok(const uint8_t *p, size_t n)
{
	if (n < 2 || p[n - 2] != '\r' || p[n - 1] != '\n')
		return false;
	size_t line_start = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n'))
			return false;
		if (p[i] == '\n') {
			if (i == 0 || p[i - 1] != '\r')
				return false;
			size_t len = i - 1 - line_start;
			if (len > DSN_LINE_MAX_BYTES)
				return false;
			/* A line opening with '.' is stuffed: "." alone or ".x"
			 * would be read as the end of data or lose its dot. */
			if (len > 0 && p[line_start] == '.' && (len < 2 || p[line_start + 1] != '.'))
				return false;
			line_start = i + 1;
		}
	}
	return true;
}

static size_t longest_line(const uint8_t *p, size_t n)
{
	size_t longest = 0, start = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] == '\r' && p[i + 1] == '\n') {
			longest = RMX_MAX(longest, i - start);
			start = i + 2;
		}
	}
	return longest;
}

struct built {
	uint8_t *bytes;
	size_t len;
};

/* Builds in with a dry run, then for real into a buffer of exactly that
 * size, and checks the invariants. */
static struct built build(const struct dsn_input *in)
{
	struct built b;
	size_t need = dsn_build(in, NULL, 0);
	REQUIRE(need > 0);
	b.bytes = malloc(need);
	REQUIRE(b.bytes != NULL);
	b.len = dsn_build(in, b.bytes, need);
	CHECK_EQ_U(b.len, need);
	CHECK(wire_form_ok(b.bytes, b.len));
	/* Deterministic: a second build gives the same bytes. */
	uint8_t *again = malloc(need);
	REQUIRE(again != NULL);
	CHECK_EQ_U(dsn_build(in, again, need), need);
	CHECK(memcmp(again, b.bytes, need) == 0);
	free(again);
	return b;
}

/* The boundary from the top-level Content-Type. */
static size_t boundary_of(const struct built *b, char *out, size_t cap)
{
	const char *key = "boundary=\"";
	const uint8_t *at = memmem(b->bytes, b->len, key, strlen(key));
	REQUIRE(at != NULL);
	at += strlen(key);
	const uint8_t *end = memchr(at, '"', b->len - (size_t)(at - b->bytes));
	REQUIRE(end != NULL && (size_t)(end - at) < cap);
	memcpy(out, at, (size_t)(end - at));
	out[end - at] = '\0';
	return (size_t)(end - at);
}

/* Part index (1-based) of b: its bytes after "--B" CRLF up to the CRLF that
 * precedes the next delimiter. */
static struct span part_of(const struct built *b, unsigned index)
{
	char boundary[DSN_BOUNDARY_MAX_BYTES + 1];
	boundary_of(b, boundary, sizeof boundary);
	char delim[DSN_BOUNDARY_MAX_BYTES + 8];
	snprintf(delim, sizeof delim, "\r\n--%s", boundary);
	const uint8_t *p = b->bytes, *end = b->bytes + b->len;
	for (unsigned i = 0; i < index; i++) {
		p = memmem(p, (size_t)(end - p), delim, strlen(delim));
		REQUIRE(p != NULL);
		p += strlen(delim);
	}
	REQUIRE(end - p >= 2 && p[0] == '\r' && p[1] == '\n');
	p += 2;
	const uint8_t *next = memmem(p, (size_t)(end - p), delim, strlen(delim));
	REQUIRE(next != NULL);
	return span_make(p, (size_t)(next - p));
}

/* The value of the first field named name (at a line start), unfolded
 * (RFC 5322 2.2.3: CRLF before WSP removed), into out. SIZE_MAX if none. */
static size_t field_value(const uint8_t *p, size_t n, const char *name, char *out, size_t cap)
{
	char needle[128];
	snprintf(needle, sizeof needle, "\n%s: ", name);
	const uint8_t *at = memmem(p, n, needle, strlen(needle));
	if (at == NULL)
		return SIZE_MAX;
	at += strlen(needle);
	size_t len = 0;
	const uint8_t *end = p + n;
	while (at < end) {
		if (at[0] == '\r' && end - at >= 3 && at[1] == '\n' && (at[2] == ' ' || at[2] == '\t')) {
			at += 2;
			continue;
		}
		if (at[0] == '\r')
			break;
		REQUIRE(len + 1 < cap);
		out[len++] = (char)*at++;
	}
	out[len] = '\0';
	return len;
}

static bool all_ascii(struct span s)
{
	for (size_t i = 0; i < s.len; i++) {
		if (s.ptr[i] >= 0x80)
			return false;
	}
	return true;
}

/* No byte of p is a control other than the CR LF of line ends and HT, nor
 * DEL: what RFC 5322 (2.2, 3.2.2) allows outside its obsolete syntax, and
 * never a NUL (RFC 2045 2.7, 2.8). */
static bool no_control_bytes(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if ((c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

/* Whether p is well-formed UTF-8 (RFC 3629: shortest forms, no surrogates,
 * at most U+10FFFF). */
static bool utf8_valid(const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = p[i];
		size_t len;
		uint32_t v, min;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2, v = c & 0x1fu, min = 0x80;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3, v = c & 0x0fu, min = 0x800;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4, v = c & 0x07u, min = 0x10000;
		else
			return false;
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			v = (v << 6) | (p[i + k] & 0x3fu);
		}
		if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* ---- one failed recipient: the key lines ---------------------------------- */

#define SL(lit) { (const uint8_t *)(lit), sizeof(lit) - 1 }

static const struct dsn_recipient rcpt_user_unknown = {
	.address = SL("user@example.org"),
	.action = DSN_ACTION_FAILED,
	.status = SL("5.1.1"),
	.remote_mta = SL("relay.example.net"),
	.diagnostic = SL("550 5.1.1 <user@example.org>: Recipient address rejected: "
			 "User unknown in local recipient table"),
	.last_attempt_unix = LAST_ATTEMPT_UNIX,
};

static void test_one_failed(void)
{
	struct dsn_input in = base_input(&rcpt_user_unknown, 1);
	struct built b = build(&in);
	const uint8_t *p = b.bytes;
	size_t n = b.len;

	CHECK(has_line(p, n, "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>"));
	CHECK(has_line(p, n, "To: <sender@example.com>"));
	CHECK(has_line(p, n, "Subject: Undelivered Mail Returned to Sender"));
	CHECK(has_line(p, n, "Date: Sat, 28 Nov 2026 16:23:20 +0000"));
	CHECK(has_line(p, n, "Message-ID: <T0KEN1@mx.example.org>"));
	CHECK(has_line(p, n, "Auto-Submitted: auto-replied"));
	CHECK(has_line(p, n, "MIME-Version: 1.0"));
	CHECK(has_line(p, n, "Content-Type: multipart/report; report-type=delivery-status;"));
	CHECK(memcmp(p, "From: ", 6) == 0);
	CHECK(!contains(p, n, "Content-Transfer-Encoding"));

	char boundary[DSN_BOUNDARY_MAX_BYTES + 1];
	size_t blen = boundary_of(&b, boundary, sizeof boundary);
	CHECK(blen > 0 && blen <= DSN_BOUNDARY_MAX_BYTES);
	CHECK(strstr(boundary, "Q1ABC") != NULL && strstr(boundary, "T0KEN1") != NULL);
	char line[128];
	snprintf(line, sizeof line, "--%s", boundary);
	CHECK_EQ_U(count_of(p, n, line), 4);
	CHECK(has_line(p, n, line));
	snprintf(line, sizeof line, "\r\n--%s--\r\n", boundary);
	CHECK(n > strlen(line) && memcmp(p + n - strlen(line), line, strlen(line)) == 0);

	struct span text = part_of(&b, 1);
	struct span report = part_of(&b, 2);
	struct span headers = part_of(&b, 3);
	CHECK(has_line(text.ptr, text.len, "Content-Type: text/plain; charset=us-ascii"));
	CHECK(contains(text.ptr, text.len, "mx.example.org"));
	CHECK(contains(text.ptr, text.len, "<user@example.org>: host relay.example.net said: 550 5.1.1"));
	CHECK(contains(text.ptr, text.len, "User unknown"));
	CHECK(!contains(text.ptr, text.len, "not been delivered yet"));
	CHECK(all_ascii(text));
	CHECK(longest_line(text.ptr, text.len) <= DSN_FOLD_WIDTH_BYTES);

	CHECK(has_line(report.ptr, report.len, "Content-Type: message/delivery-status"));
	CHECK(has_line(report.ptr, report.len, "Reporting-MTA: dns; mx.example.org"));
	CHECK(has_line(report.ptr, report.len, "X-Ringmx-Queue-ID: Q1ABC"));
	CHECK(has_line(report.ptr, report.len, "Arrival-Date: Fri, 27 Nov 2026 14:33:20 +0000"));
	CHECK(has_line(report.ptr, report.len, "Final-Recipient: rfc822; user@example.org"));
	CHECK(has_line(report.ptr, report.len, "Action: failed"));
	CHECK(has_line(report.ptr, report.len, "Status: 5.1.1"));
	CHECK(has_line(report.ptr, report.len, "Remote-MTA: dns; relay.example.net"));
	CHECK(has_line(report.ptr, report.len, "Last-Attempt-Date: Sat, 28 Nov 2026 16:06:40 +0000"));
	char value[2048];
	CHECK(field_value(report.ptr, report.len, "Diagnostic-Code", value, sizeof value) != SIZE_MAX);
	CHECK(strcmp(value, "smtp; 550 5.1.1 <user@example.org>: Recipient address rejected: "
			    "User unknown in local recipient table") == 0);
	/* The diagnostic is long enough to be folded. */
	CHECK(longest_line(report.ptr, report.len) <= DSN_FOLD_WIDTH_BYTES);

	CHECK(has_line(headers.ptr, headers.len, "Content-Type: text/rfc822-headers"));
	CHECK(contains(headers.ptr, headers.len,
		       "\r\n\r\nReceived: from client.example.com (client.example.com [192.0.2.10])\r\n"
		       "\tby mx.example.org (ringmx) with ESMTP id Q1ABC\r\n"));
	CHECK(has_line(headers.ptr, headers.len, "Subject: hello"));
	CHECK(has_line(headers.ptr, headers.len, "Message-ID: <orig1@example.com>"));
	/* The header section ends with its empty line; no body comes back. */
	CHECK(headers.len >= 3 && memcmp(headers.ptr + headers.len - 3, ">\r\n", 3) == 0);
	CHECK(!contains(p, n, "SECRET-BODY-MARKER"));
	CHECK(!contains(p, n, "dotted body line"));
	CHECK(dsn_transport_needs(&in, p, n) == 0);
	free(b.bytes);
}

/* ---- the capacity contract --------------------------------------------------- */

static void test_capacity(void)
{
	struct dsn_input in = base_input(&rcpt_user_unknown, 1);
	struct built b = build(&in);
	size_t failures = 0;
	/* Every capacity below the length: the length comes back and not a
	 * byte is written at or past cap (the buffer is exactly cap bytes, so
	 * AddressSanitizer also watches; the guard catches the rest). */
	for (size_t cap = 0; cap < b.len; cap++) {
		uint8_t *buf = malloc(cap + 16);
		REQUIRE(buf != NULL);
		memset(buf, 0xa5, cap + 16);
		size_t got = dsn_build(&in, cap > 0 ? buf : NULL, cap);
		bool guard_ok = true;
		for (size_t i = cap; i < cap + 16; i++)
			guard_ok = guard_ok && buf[i] == 0xa5;
		if (got != b.len || !guard_ok)
			failures++;
		free(buf);
	}
	CHECK_EQ_U(failures, 0);
	uint8_t *exact = malloc(b.len);
	REQUIRE(exact != NULL);
	CHECK_EQ_U(dsn_build(&in, exact, b.len), b.len);
	CHECK(memcmp(exact, b.bytes, b.len) == 0);
	free(exact);
	/* A larger buffer is fine, and nothing is written past the message. */
	uint8_t *large = malloc(b.len + 100);
	REQUIRE(large != NULL);
	memset(large, 0x5a, b.len + 100);
	CHECK_EQ_U(dsn_build(&in, large, b.len + 100), b.len);
	CHECK(memcmp(large, b.bytes, b.len) == 0);
	CHECK(large[b.len] == 0x5a && large[b.len + 99] == 0x5a);
	free(large);
	free(b.bytes);
}

/* ---- several recipients, mixed ------------------------------------------------- */

static void test_mixed(void)
{
	struct dsn_recipient r[4];
	memset(r, 0, sizeof r);
	r[0].address = S("a@example.org");
	r[0].action = DSN_ACTION_FAILED;
	r[0].status = S("5.1.1");
	r[0].remote_mta = S("relay.example.net");
	r[0].diagnostic = S("550 5.1.1 No such user");
	r[0].last_attempt_unix = LAST_ATTEMPT_UNIX;
	r[1].address = S("b@example.org");
	r[1].action = DSN_ACTION_DELAYED;
	r[1].status = S("4.4.1");
	r[1].remote_mta = S("relay.example.net");
	r[1].diagnostic = S("connect to relay.example.net: Connection refused");
	r[1].last_attempt_unix = LAST_ATTEMPT_UNIX;
	/* Retries ran out: the last 4xx status becomes permanent. */
	r[2].address = S("c@example.org");
	r[2].action = DSN_ACTION_FAILED;
	r[2].status = S("4.4.7");
	r[2].remote_mta = S("relay.example.net");
	r[2].diagnostic = S("451 4.4.7 Message expired");
	r[2].last_attempt_unix = LAST_ATTEMPT_UNIX;
	/* Never attempted, malformed status, nothing known. */
	r[3].address = S("d@example.org");
	r[3].action = DSN_ACTION_DELAYED;
	r[3].status = S("4.x.1");
	r[3].last_attempt_unix = 0;

	struct dsn_input in = base_input(r, 4);
	struct built b = build(&in);
	CHECK(has_line(b.bytes, b.len, "Subject: Undelivered Mail Returned to Sender"));
	struct span report = part_of(&b, 2);
	static const char expected[] =
		"Content-Description: Delivery report\r\n"
		"Content-Type: message/delivery-status\r\n"
		"\r\n"
		"Reporting-MTA: dns; mx.example.org\r\n"
		"X-Ringmx-Queue-ID: Q1ABC\r\n"
		"Arrival-Date: Fri, 27 Nov 2026 14:33:20 +0000\r\n"
		"\r\n"
		"Final-Recipient: rfc822; a@example.org\r\n"
		"Action: failed\r\n"
		"Status: 5.1.1\r\n"
		"Remote-MTA: dns; relay.example.net\r\n"
		"Diagnostic-Code: smtp; 550 5.1.1 No such user\r\n"
		"Last-Attempt-Date: Sat, 28 Nov 2026 16:06:40 +0000\r\n"
		"\r\n"
		"Final-Recipient: rfc822; b@example.org\r\n"
		"Action: delayed\r\n"
		"Status: 4.4.1\r\n"
		"Remote-MTA: dns; relay.example.net\r\n"
		"Diagnostic-Code: X-Ringmx; connect to relay.example.net: Connection refused\r\n"
		"Last-Attempt-Date: Sat, 28 Nov 2026 16:06:40 +0000\r\n"
		"\r\n"
		"Final-Recipient: rfc822; c@example.org\r\n"
		"Action: failed\r\n"
		"Status: 5.4.7\r\n"
		"Remote-MTA: dns; relay.example.net\r\n"
		"Diagnostic-Code: smtp; 451 4.4.7 Message expired\r\n"
		"Last-Attempt-Date: Sat, 28 Nov 2026 16:06:40 +0000\r\n"
		"\r\n"
		"Final-Recipient: rfc822; d@example.org\r\n"
		"Action: delayed\r\n"
		"Status: 4.0.0\r\n";
	CHECK_MEM(report.ptr, report.len, expected, sizeof expected - 1);

	struct span text = part_of(&b, 1);
	CHECK(contains(text.ptr, text.len, "could not be delivered"));
	CHECK(contains(text.ptr, text.len, "not been delivered yet"));
	/* Failed ones are listed under the failure paragraph, delayed ones
	 * under the delay paragraph. */
	const uint8_t *fail_at = memmem(text.ptr, text.len, "could not be delivered", 22);
	const uint8_t *delay_at = memmem(text.ptr, text.len, "not been delivered yet", 22);
	const uint8_t *a_at = memmem(text.ptr, text.len, "<a@example.org>", 15);
	const uint8_t *b_at = memmem(text.ptr, text.len, "<b@example.org>", 15);
	const uint8_t *c_at = memmem(text.ptr, text.len, "<c@example.org>", 15);
	const uint8_t *d_at = memmem(text.ptr, text.len, "<d@example.org>: not delivered yet (status 4.0.0)", 49);
	REQUIRE(fail_at && delay_at && a_at && b_at && c_at && d_at);
	CHECK(fail_at < a_at && a_at < c_at && c_at < delay_at && delay_at < b_at && b_at < d_at);
	free(b.bytes);

	/* No diagnostic: the status and the host in the explanation. */
	struct dsn_recipient quiet = r[2];
	quiet.diagnostic = span_make(NULL, 0);
	in = base_input(&quiet, 1);
	b = build(&in);
	text = part_of(&b, 1);
	CHECK(contains(text.ptr, text.len,
		       "<c@example.org>: delivery failed (status 5.4.7), last tried at host\r\n"
		       "    relay.example.net\r\n"));
	CHECK(!contains(b.bytes, b.len, "Diagnostic-Code"));
	free(b.bytes);

	/* A status of the wrong class for its action is corrected; one of
	 * another shape is replaced. */
	struct dsn_recipient one = r[0];
	const char *statuses[][2] = {
		{ "2.0.0", "5.0.0" }, { "5.123.456", "5.123.456" }, { "5.1234.1", "5.0.0" },
		{ "5.1.", "5.0.0" },  { "", "5.0.0" },              { "5.1.1 ", "5.0.0" },
		{ "5.123", "5.0.0" }, { "5.1.1.1", "5.0.0" },       { "4.7.1", "5.7.1" },
	};
	for (size_t i = 0; i < RMX_ARRAY_LEN(statuses); i++) {
		one.status = SZ(statuses[i][0]);
		in = base_input(&one, 1);
		b = build(&in);
		char want[64];
		snprintf(want, sizeof want, "Status: %s", statuses[i][1]);
		CHECK(has_line(b.bytes, b.len, want));
		free(b.bytes);
	}
}

static void test_delayed_only(void)
{
	struct dsn_recipient r[2];
	memset(r, 0, sizeof r);
	r[0].address = S("a@example.org");
	r[0].action = DSN_ACTION_DELAYED;
	r[0].status = S("4.3.0");
	r[0].diagnostic = S("451 4.3.0 Try again later");
	r[0].remote_mta = S("relay.example.net");
	r[0].last_attempt_unix = LAST_ATTEMPT_UNIX;
	r[1] = r[0];
	r[1].address = S("b@example.org");
	struct dsn_input in = base_input(r, 2);
	struct built b = build(&in);
	CHECK(has_line(b.bytes, b.len, "Subject: Delayed Mail (still being retried)"));
	CHECK(!contains(b.bytes, b.len, "Undelivered Mail"));
	struct span text = part_of(&b, 1);
	CHECK(contains(text.ptr, text.len, "not been delivered yet"));
	CHECK(!contains(text.ptr, text.len, "could not be delivered"));
	CHECK_EQ_U(count_of(b.bytes, b.len, "\r\nAction: delayed\r\n"), 2);
	CHECK(!contains(b.bytes, b.len, "Action: failed"));
	free(b.bytes);
}

/* ---- the original's header section --------------------------------------------- */

static void test_dot_lines(void)
{
	/* Wire form: "..starts" is the line ".starts" stuffed. */
	static const char original[] = "Received: from a by b; Sat, 28 Nov 2026 15:33:20 +0000\r\n"
				       "X-Odd: value\r\n"
				       "..starts with a dot\r\n"
				       "...two dots\r\n"
				       "\t.folded dot\r\n"
				       "Subject: dots\r\n"
				       "\r\n"
				       "..body dot\r\n";
	struct dsn_input in = base_input(&rcpt_user_unknown, 1);
	in.original = S(original);
	struct built b = build(&in);
	struct span headers = part_of(&b, 3);
	CHECK(has_line(headers.ptr, headers.len, "..starts with a dot"));
	CHECK(has_line(headers.ptr, headers.len, "...two dots"));
	CHECK(has_line(headers.ptr, headers.len, "\t.folded dot"));
	CHECK(has_line(headers.ptr, headers.len, "Subject: dots"));
	CHECK(!contains(b.bytes, b.len, "body dot"));
	free(b.bytes);

	/* A dot in generated text that could open a line: a host name that
	 * starts with one, an address that does. */
	struct dsn_recipient r = rcpt_user_unknown;
	r.address = S(".dot@example.org");
	in = base_input(&r, 1);
	in.reporting_mta = S(".mx.example.org");
	b = build(&in);
	CHECK(has_line(b.bytes, b.len, "Final-Recipient: rfc822; .dot@example.org"));
	CHECK(has_line(b.bytes, b.len, "Reporting-MTA: dns; .mx.example.org"));
	free(b.bytes);
}

static void test_header_bounds(void)
{
	/* 2000 lines of 64 bytes: far more than 64 KiB, and a whole number
	 * of lines is exactly 64 KiB (so the final empty line must cost one). */
	size_t cap = 2000 * 64 + 64;
	char *original = malloc(cap);
	REQUIRE(original != NULL);
	size_t len = 0;
	for (int i = 0; i < 2000; i++)
		len += (size_t)snprintf(original + len, cap - len,
					"X-Filler-%04d: %047d\r\n", i, i);
	len += (size_t)snprintf(original + len, cap - len, "\r\nbody\r\n");
	struct dsn_input in = base_input(&rcpt_user_unknown, 1);
	in.original = span_make(original, len);
	struct built b = build(&in);
	struct span headers = part_of(&b, 3);
	const uint8_t *body = memmem(headers.ptr, headers.len, "\r\n\r\n", 4);
	REQUIRE(body != NULL);
	body += 4;
	size_t returned = headers.len - (size_t)(body - headers.ptr) + 2; /* with the CRLF before "--" */
	CHECK(returned <= DSN_HEADERS_MAX_BYTES);
	CHECK(returned > DSN_HEADERS_MAX_BYTES - 100);
	/* Cut at a line boundary: whole filler lines, then the empty line. */
	CHECK((returned - 2) % 64 == 0);
	CHECK(memcmp(body, "X-Filler-0000: ", 15) == 0);
	char last[32];
	snprintf(last, sizeof last, "X-Filler-%04zu: ", (returned - 2) / 64 - 1);
	CHECK(contains(body, headers.len - (size_t)(body - headers.ptr), last));
	CHECK(headers.ptr[headers.len - 3] >= '0' && headers.ptr[headers.len - 3] <= '9');
	CHECK(memcmp(headers.ptr + headers.len - 2, "\r\n", 2) == 0);
	free(b.bytes);
	free(original);

	/* One header line of 5000 bytes: cut into folded pieces. */
	char *longline = malloc(6000);
	REQUIRE(longline != NULL);
	len = (size_t)snprintf(longline, 6000, "Subject: ");
	for (int i = 0; i < 5000; i++)
		longline[len++] = (char)('a' + i % 26);
	memcpy(longline + len, "\r\nTo: x\r\n\r\n", 11);
	len += 11;
	in.original = span_make(longline, len);
	b = build(&in);
	headers = part_of(&b, 3);
	const uint8_t *start = memmem(headers.ptr, headers.len, "\r\n\r\nSubject: ", 13);
	REQUIRE(start != NULL);
	start += 4;
	/* Unfolding (dropping each CRLF and the space the cut added) gives
	 * the line back. */
	char rebuilt[6000];
	size_t rebuilt_len = 0, pieces = 0;
	const uint8_t *end = headers.ptr + headers.len;
	const uint8_t *q = start;
	for (;;) {
		const uint8_t *eol = memmem(q, (size_t)(end - q), "\r\n", 2);
		REQUIRE(eol != NULL);
		CHECK((size_t)(eol - q) <= DSN_LINE_MAX_BYTES);
		if (pieces > 0) {
			CHECK(q[0] == ' ');
			q++;
		}
		REQUIRE(rebuilt_len + (size_t)(eol - q) < sizeof rebuilt);
		memcpy(rebuilt + rebuilt_len, q, (size_t)(eol - q));
		rebuilt_len += (size_t)(eol - q);
		pieces++;
		q = eol + 2;
		if (q[0] != ' ')
			break;
	}
	CHECK_EQ_U(pieces, 6);
	CHECK_MEM(rebuilt, rebuilt_len, longline, 9 + 5000);
	CHECK(memcmp(q, "To: x\r\n", 7) == 0);
	free(b.bytes);

	/* A long line of two-byte UTF-8 characters is not cut inside one. */
	len = (size_t)snprintf(longline, 6000, "Subject: ");
	for (int i = 0; i < 2000; i++) {
		longline[len++] = (char)0xc3;
		longline[len++] = (char)0xa9;
	}
	memcpy(longline + len, "\r\n\r\n", 4);
	len += 4;
	in.original = span_make(longline, len);
	b = build(&in);
	headers = part_of(&b, 3);
	CHECK(has_line(headers.ptr, headers.len, "Content-Transfer-Encoding: 8bit"));
	CHECK(has_line(b.bytes, b.len, "Content-Transfer-Encoding: 8bit"));
	CHECK(dsn_transport_needs(&in, b.bytes, b.len) == DSN_NEEDS_8BITMIME);
	size_t bad_cuts = 0;
	for (size_t i = 0; i + 3 < headers.len; i++) {
		if (headers.ptr[i] == '\r' && headers.ptr[i + 1] == '\n' && headers.ptr[i + 2] == ' ' &&
		    (headers.ptr[i + 3] & 0xc0) == 0x80)
			bad_cuts++;
		if (headers.ptr[i] == 0xc3 && headers.ptr[i + 1] == '\r')
			bad_cuts++;
	}
	CHECK_EQ_U(bad_cuts, 0);
	free(b.bytes);
	free(longline);

	/* No empty line: all of it is the header section, the last line has
	 * no CRLF; a bare CR inside a line becomes a space; an empty original. */
	static const char headers_only[] = "Received: x\r\nX-Bare: a\rb\r\nSubject: no end";
	in.original = S(headers_only);
	b = build(&in);
	headers = part_of(&b, 3);
	CHECK(has_line(headers.ptr, headers.len, "X-Bare: a b"));
	CHECK(has_line(headers.ptr, headers.len, "Subject: no end"));
	free(b.bytes);
	in.original = span_make(NULL, 0);
	b = build(&in);
	headers = part_of(&b, 3);
	CHECK(headers.len >= 4 && memcmp(headers.ptr + headers.len - 4, "\r\n\r\n", 4) == 0);
	CHECK(has_line(headers.ptr, headers.len, "Content-Type: text/rfc822-headers"));
	free(b.bytes);
}

/* ---- control and 8-bit bytes in the returned header section ---------------------------- */

static void test_header_controls(void)
{
	/* NUL, the other controls and DEL become '?' (HT stays, a bare CR is
	 * a space, a lone LF ends a line); in text/rfc822-headers, declared
	 * 8bit, 8-bit bytes stay as they are. */
	static const char original[] = "Received: from a by b\r\n"
				       "X-Ctl: a\0b\x01" "c\x1b" "d\x7f" "e\tf\vg\fh\ri\r\n"
				       "X-\x02Name: v\0\r\n"
				       "\0\r\n"
				       "X-Lf: one\ntwo\r\n"
				       "Subject: caf\xc3\xa9 \xff\r\n"
				       "\r\n"
				       "body \0\x01\r\n";
	struct dsn_input in = base_input(&rcpt_user_unknown, 1);
	in.original = S(original);
	struct built b = build(&in);
	struct span headers = part_of(&b, 3);
	CHECK(no_control_bytes(b.bytes, b.len));
	CHECK(has_line(headers.ptr, headers.len, "Content-Type: text/rfc822-headers"));
	CHECK(has_line(headers.ptr, headers.len, "X-Ctl: a?b?c?d?e\tf?g?h i"));
	CHECK(has_line(headers.ptr, headers.len, "X-?Name: v?"));
	CHECK(has_line(headers.ptr, headers.len, "?"));
	CHECK(has_line(headers.ptr, headers.len, "X-Lf: one"));
	CHECK(has_line(headers.ptr, headers.len, "two"));
	CHECK(has_line(headers.ptr, headers.len, "Subject: caf\xc3\xa9 \xff"));
	CHECK(has_line(headers.ptr, headers.len, "Content-Transfer-Encoding: 8bit"));
	CHECK(!contains(b.bytes, b.len, "body"));
	free(b.bytes);

	/* message/global-headers carries UTF-8 (RFC 6532): a byte of no
	 * well-formed sequence becomes '?', a well-formed one stays. */
	in.smtputf8 = true;
	b = build(&in);
	headers = part_of(&b, 3);
	CHECK(no_control_bytes(b.bytes, b.len));
	CHECK(utf8_valid(b.bytes, b.len));
	CHECK(has_line(headers.ptr, headers.len, "Content-Type: message/global-headers"));
	CHECK(has_line(headers.ptr, headers.len, "X-Ctl: a?b?c?d?e\tf?g?h i"));
	CHECK(has_line(headers.ptr, headers.len, "Subject: caf\xc3\xa9 ?"));
	CHECK(has_line(headers.ptr, headers.len, "Content-Transfer-Encoding: 8bit"));
	free(b.bytes);

	/* When every 8-bit byte is replaced, nothing 8-bit is left to
	 * declare, and the DSN needs no 8BITMIME. */
	static const char malformed[] = "Subject: \xff\xfe \xc3(\xe2\x82\r\n\r\n";
	in.original = S(malformed);
	b = build(&in);
	headers = part_of(&b, 3);
	CHECK(has_line(headers.ptr, headers.len, "Subject: ?? ?(??"));
	CHECK(!contains(b.bytes, b.len, "Content-Transfer-Encoding"));
	CHECK(all_ascii(span_make(b.bytes, b.len)));
	CHECK(dsn_transport_needs(&in, b.bytes, b.len) == 0);
	free(b.bytes);
}

/* ---- the boundary ------------------------------------------------------------------ */

static void test_boundary_collision(void)
{
	struct dsn_input in = base_input(&rcpt_user_unknown, 1);
	struct built b = build(&in);
	char base[DSN_BOUNDARY_MAX_BYTES + 1];
	size_t base_len = boundary_of(&b, base, sizeof base);
	free(b.bytes);

	/* The original carries the would-be boundary as a header and as a
	 * delimiter line of its body. */
	char original[1024];
	int olen = snprintf(original, sizeof original,
			    "Received: from a by b\r\nX-Trap: --%s\r\n--%s\r\n\r\n--%s--\r\n", base,
			    base, base);
	REQUIRE(olen > 0 && (size_t)olen < sizeof original);
	in.original = span_make(original, (size_t)olen);
	b = build(&in);
	char chosen[DSN_BOUNDARY_MAX_BYTES + 1];
	size_t chosen_len = boundary_of(&b, chosen, sizeof chosen);
	CHECK(chosen_len <= DSN_BOUNDARY_MAX_BYTES);
	CHECK(strcmp(chosen, base) != 0);
	CHECK(strstr(original, chosen) == NULL);
	char want[128];
	snprintf(want, sizeof want, "%s.00000000", base);
	CHECK(strcmp(chosen, want) == 0);
	/* The trap came back in part 3, and part 3 is still whole. */
	struct span headers = part_of(&b, 3);
	snprintf(want, sizeof want, "X-Trap: --%s", base);
	CHECK(has_line(headers.ptr, headers.len, want));
	free(b.bytes);

	/* The first alternative is taken as well. */
	olen = snprintf(original, sizeof original, "Received: x\r\nX-A: %s\r\nX-B: %s.00000000\r\n\r\n",
			base, base);
	in.original = span_make(original, (size_t)olen);
	b = build(&in);
	boundary_of(&b, chosen, sizeof chosen);
	snprintf(want, sizeof want, "%s.00000001", base);
	CHECK(strcmp(chosen, want) == 0);
	free(b.bytes);

	/* Thousands of alternatives taken, in the body: the first window is
	 * full, and the next one starts taken too. */
	size_t cap = 5000 * (base_len + 16) + 64;
	char *many = malloc(cap);
	REQUIRE(many != NULL);
	size_t len = (size_t)snprintf(many, cap, "Received: x\r\n\r\n");
	for (unsigned i = 0; i < 4101; i++)
		len += (size_t)snprintf(many + len, cap - len, "%s.%08x\r\n", base, 4100 - i);
	in.original = span_make(many, len);
	b = build(&in);
	boundary_of(&b, chosen, sizeof chosen);
	snprintf(want, sizeof want, "%s.00001005", base);
	CHECK(strcmp(chosen, want) == 0);
	CHECK(memmem(many, len, chosen, strlen(chosen)) == NULL);
	free(b.bytes);
	free(many);

	/* The boundary may hide in an upstream's diagnostic too. */
	char diagnostic[256];
	snprintf(diagnostic, sizeof diagnostic, "550 5.7.1 --%s", base);
	struct dsn_recipient r = rcpt_user_unknown;
	r.diagnostic = SZ(diagnostic);
	in = base_input(&r, 1);
	b = build(&in);
	boundary_of(&b, chosen, sizeof chosen);
	CHECK(strcmp(chosen, base) != 0);
	CHECK(strstr(diagnostic, chosen) == NULL);
	free(b.bytes);

	/* Tokens with characters a boundary cannot hold; long ones. */
	in = base_input(&rcpt_user_unknown, 1);
	in.queue_id = S("q/1 \"2\"");
	in.message_id_token = S("0123456789abcdef0123456789abcdef0123456789abcdef");
	b = build(&in);
	chosen_len = boundary_of(&b, chosen, sizeof chosen);
	CHECK(chosen_len <= DSN_BOUNDARY_MAX_BYTES);
	CHECK(strchr(chosen, ' ') == NULL && strchr(chosen, '/') == NULL);
	CHECK(has_line(b.bytes, b.len, "X-Ringmx-Queue-ID: q?1??2?"));
	free(b.bytes);
}

/* ---- hostile diagnostics -------------------------------------------------------------- */

static void test_huge_diagnostic(void)
{
	size_t big = 200000;
	char *diag = malloc(big);
	REQUIRE(diag != NULL);

	/* One word of 200000 bytes. */
	memcpy(diag, "550 ", 4);
	memset(diag + 4, 'x', big - 4);
	struct dsn_recipient r = rcpt_user_unknown;
	r.diagnostic = span_make(diag, big);
	struct dsn_input in = base_input(&r, 1);
	struct built b = build(&in);
	CHECK(b.len < 16384);
	char value[4096];
	size_t vlen = field_value(b.bytes, b.len, "Diagnostic-Code", value, sizeof value);
	REQUIRE(vlen != SIZE_MAX);
	CHECK(vlen <= strlen("smtp; ") + DSN_DIAGNOSTIC_MAX_BYTES + 2);
	CHECK(vlen > 6 && strcmp(value + vlen - 3, "...") == 0);
	CHECK(memcmp(value, "smtp; 550 xxxx", 14) == 0);
	CHECK(longest_line(b.bytes, b.len) <= DSN_LINE_MAX_BYTES);
	free(b.bytes);

	/* Words, with CR, LF, NUL, DEL, TAB and UTF-8 between them, and an
	 * attempt to start a header and a delimiter of its own. */
	static const char nasty[] = "451-4.3.0 first\r\n451 4.3.0 second\rthird\nInjected: yes\r\n\r\n"
				    "--x--\r\n.\r\n\x01\x7f\t\x00 caf\xc3\xa9 \xff ";
	size_t len = 0;
	while (len + sizeof nasty < big) {
		memcpy(diag + len, nasty, sizeof nasty - 1);
		len += sizeof nasty - 1;
	}
	r.diagnostic = span_make(diag, len);
	in = base_input(&r, 1);
	b = build(&in);
	CHECK(!has_line(b.bytes, b.len, "Injected: yes"));
	CHECK(!has_line(b.bytes, b.len, "--x--"));
	CHECK(!has_line(b.bytes, b.len, "."));
	vlen = field_value(b.bytes, b.len, "Diagnostic-Code", value, sizeof value);
	REQUIRE(vlen != SIZE_MAX);
	static const char want[] = "smtp; 451-4.3.0 first 451 4.3.0 second third Injected: yes "
				   "--x-- . ?? ? caf\\x{E9} ? 451-4.3.0 first";
	CHECK(vlen > sizeof want && memcmp(value, want, sizeof want - 1) == 0);
	CHECK(vlen <= strlen("smtp; ") + DSN_DIAGNOSTIC_MAX_BYTES);
	CHECK(strstr(value, "  ") == NULL);
	struct span report = part_of(&b, 2);
	CHECK(longest_line(report.ptr, report.len) <= DSN_FOLD_WIDTH_BYTES);
	CHECK(all_ascii(report));
	struct span text = part_of(&b, 1);
	CHECK(all_ascii(text));
	CHECK(longest_line(text.ptr, text.len) <= DSN_FOLD_WIDTH_BYTES);
	free(b.bytes);

	/* Many recipients with huge diagnostics: still bounded per recipient. */
	struct dsn_recipient many[50];
	for (size_t i = 0; i < RMX_ARRAY_LEN(many); i++) {
		many[i] = r;
		many[i].diagnostic = span_make(diag, big);
	}
	in = base_input(many, RMX_ARRAY_LEN(many));
	b = build(&in);
	CHECK(b.len < 50 * 4096);
	CHECK_EQ_U(count_of(b.bytes, b.len, "\r\nFinal-Recipient: rfc822; user@example.org\r\n"), 50);
	free(b.bytes);
	free(diag);
}

/* ---- internationalised addresses ------------------------------------------------------- */

static void test_non_ascii(void)
{
	struct dsn_recipient r[4];
	memset(r, 0, sizeof r);
	r[0] = rcpt_user_unknown;
	r[0].address = S("用户@例子.广告");
	r[1] = rcpt_user_unknown;
	r[1].address = S("pl+us=eq@ex\xc3\xa4mple.org");
	r[2] = rcpt_user_unknown;
	r[2].address = S("bad\xff@example.org");
	r[3] = rcpt_user_unknown; /* ASCII, in the same report */

	struct dsn_input in = base_input(r, 4);
	struct built b = build(&in);
	const uint8_t *p = b.bytes;
	size_t n = b.len;
	CHECK(has_line(p, n, "Content-Type: multipart/report; report-type=global-delivery-status;"));
	CHECK(has_line(p, n, "Content-Transfer-Encoding: 8bit"));
	struct span report = part_of(&b, 2);
	CHECK(has_line(report.ptr, report.len, "Content-Type: message/global-delivery-status"));
	CHECK(has_line(report.ptr, report.len, "Content-Transfer-Encoding: 8bit"));
	CHECK(has_line(report.ptr, report.len, "Final-Recipient: utf-8; 用户@例子.广告"));
	CHECK(has_line(report.ptr, report.len,
		       "Final-Recipient: utf-8; pl\\x{2B}us\\x{3D}eq@ex\xc3\xa4mple.org"));
	CHECK(has_line(report.ptr, report.len, "Final-Recipient: utf-8; bad\\x{FFFD}@example.org"));
	CHECK(has_line(report.ptr, report.len, "Final-Recipient: rfc822; user@example.org"));
	struct span text = part_of(&b, 1);
	CHECK(all_ascii(text));
	CHECK(contains(text.ptr, text.len,
		       "<\\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.\\x{5E7F}\\x{544A}>: host"));
	CHECK(contains(text.ptr, text.len, "<bad?@example.org>"));
	struct span headers = part_of(&b, 3);
	CHECK(has_line(headers.ptr, headers.len, "Content-Type: message/global-headers"));
	CHECK(!has_line(headers.ptr, headers.len, "Content-Transfer-Encoding: 8bit"));
	CHECK(dsn_transport_needs(&in, p, n) == DSN_NEEDS_8BITMIME);
	free(b.bytes);

	/* A non-ASCII reverse path: the To: field carries UTF-8, so the DSN
	 * needs SMTPUTF8; control bytes in it are replaced. */
	in = base_input(&rcpt_user_unknown, 1);
	in.to = S("δοκιμή@παράδειγμα.δοκιμή");
	b = build(&in);
	CHECK(has_line(b.bytes, b.len, "To: <δοκιμή@παράδειγμα.δοκιμή>"));
	CHECK(has_line(b.bytes, b.len, "Content-Type: message/global-delivery-status"));
	CHECK(dsn_transport_needs(&in, b.bytes, b.len) == (DSN_NEEDS_SMTPUTF8 | DSN_NEEDS_8BITMIME));
	free(b.bytes);
	in.to = S("δ\r\nBcc: x@y\xff");
	b = build(&in);
	CHECK(has_line(b.bytes, b.len, "To: <δ??Bcc: x@y?>"));
	free(b.bytes);

	/* SMTPUTF8 with ASCII addresses: the global types, all 7-bit. */
	in = base_input(&rcpt_user_unknown, 1);
	in.smtputf8 = true;
	b = build(&in);
	CHECK(has_line(b.bytes, b.len, "Content-Type: message/global-delivery-status"));
	CHECK(has_line(b.bytes, b.len, "Content-Type: message/global-headers"));
	CHECK(has_line(b.bytes, b.len, "Final-Recipient: rfc822; user@example.org"));
	CHECK(!contains(b.bytes, b.len, "Content-Transfer-Encoding"));
	CHECK(dsn_transport_needs(&in, b.bytes, b.len) == 0);
	free(b.bytes);
}


/* ---- random inputs keep every invariant ----------------------------------------------- */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rng_next(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Pieces that matter to the builder: line ends, dots, spaces, boundary
 * material, 8-bit bytes (well-formed and not), NUL. */
static const struct span random_pieces[] = {
	SL("\r"),        SL("\n"),         SL("\r\n"),  SL("."),      SL(".."),
	SL(" "),         SL("\t"),         SL("a"),     SL("Z9"),     SL("="),
	SL("_"),         SL("-"),          SL("\0"),    SL("\xc3\xa9"), SL("\xff"),
	SL("\x80"),      SL("=_ringmx_"),  SL("Q1"),    SL("T1"),     SL("--"),
	SL("\r\n.\r\n"), SL("\r\n\r\n"),   SL("\xe4\xb8\xad"), SL("+"), SL("\\"),
	SL("X-H: v\r\n"), SL("\"<>@,;:"),  SL("0000000"),
};

/* Fills buf with up to max bytes of random pieces; returns the length. */
static size_t random_fill(uint8_t *buf, size_t max)
{
	size_t target = max > 0 ? (size_t)(rng_next() % (max + 1)) : 0;
	size_t len = 0;
	while (len < target) {
		struct span piece = random_pieces[rng_next() % RMX_ARRAY_LEN(random_pieces)];
		if (len + piece.len > max)
			break;
		memcpy(buf + len, piece.ptr, piece.len);
		len += piece.len;
	}
	return len;
}

static void test_random_inputs(void)
{
	enum { ROUNDS = 3000, RCPT_MAX = 5 };
	static uint8_t original[4096], to[64], mta[64], qid[32], token[32];
	static uint8_t address[RCPT_MAX][320], status[RCPT_MAX][16], remote[RCPT_MAX][64];
	static uint8_t diagnostic[RCPT_MAX][3000];
	size_t failures = 0;
	for (int round = 0; round < ROUNDS; round++) {
		struct dsn_recipient r[RCPT_MAX];
		uint32_t count = 1 + (uint32_t)(rng_next() % RCPT_MAX);
		struct dsn_input in;
		memset(&in, 0, sizeof in);
		in.original = span_make(original, random_fill(original, sizeof original));
		size_t to_len = random_fill(to, sizeof to);
		in.to = to_len > 0 ? span_make(to, to_len) : S("x@example.org");
		size_t mta_len = random_fill(mta, sizeof mta);
		in.reporting_mta = mta_len > 0 ? span_make(mta, mta_len) : S("mx.example.org");
		in.queue_id = span_make(qid, random_fill(qid, sizeof qid));
		size_t token_len = random_fill(token, sizeof token);
		in.message_id_token = token_len > 0 ? span_make(token, token_len) : S("T");
		in.arrival_unix = (int64_t)rng_next();
		in.now_unix = (int64_t)(rng_next() % 4000000000ull);
		in.smtputf8 = rng_next() % 2 == 0;
		in.recipients = r;
		in.recipient_count = count;
		for (uint32_t i = 0; i < count; i++) {
			r[i].address = span_make(address[i], random_fill(address[i], sizeof address[i]));
			r[i].action = rng_next() % 2 ? DSN_ACTION_FAILED : DSN_ACTION_DELAYED;
			r[i].status = span_make(status[i], random_fill(status[i], sizeof status[i]));
			r[i].remote_mta = span_make(remote[i], random_fill(remote[i], sizeof remote[i]));
			r[i].diagnostic =
				span_make(diagnostic[i], random_fill(diagnostic[i], sizeof diagnostic[i]));
			r[i].last_attempt_unix = (int64_t)(rng_next() % 4000000000ull) - 1000;
		}
		size_t need = dsn_build(&in, NULL, 0);
		uint8_t *buf = malloc(need);
		REQUIRE(buf != NULL);
		bool ok = dsn_build(&in, buf, need) == need && wire_form_ok(buf, need);
		struct built b = { buf, need };
		char boundary[DSN_BOUNDARY_MAX_BYTES + 1];
		size_t blen = boundary_of(&b, boundary, sizeof boundary);
		/* The boundary occurs in no input, and exactly four lines start
		 * with it: three delimiters and the last one. */
		ok = ok && memmem(in.original.ptr, in.original.len, boundary, blen) == NULL;
		for (uint32_t i = 0; i < count && ok; i++)
			ok = memmem(r[i].diagnostic.ptr, r[i].diagnostic.len, boundary, blen) == NULL &&
			     memmem(r[i].address.ptr, r[i].address.len, boundary, blen) == NULL;
		char delimiter[DSN_BOUNDARY_MAX_BYTES + 16];
		snprintf(delimiter, sizeof delimiter, "\n--%s", boundary);
		ok = ok && count_of(buf, need, delimiter) == 4;
		snprintf(delimiter, sizeof delimiter, "\r\n--%s--\r\n", boundary);
		ok = ok && need > strlen(delimiter) &&
		     memcmp(buf + need - strlen(delimiter), delimiter, strlen(delimiter)) == 0;
		/* No control byte but line ends and HT; in the RFC 6533 types
		 * all of it is UTF-8; 8-bit bytes in part 3 are declared. */
		ok = ok && no_control_bytes(buf, need);
		bool global = contains(buf, need, "report-type=global-delivery-status;");
		ok = ok && (!global || utf8_valid(buf, need));
		struct span headers = part_of(&b, 3);
		ok = ok && (all_ascii(headers) ||
			    has_line(headers.ptr, headers.len, "Content-Transfer-Encoding: 8bit"));
		if (!ok && failures++ < 3)
			fprintf(stderr, "random round %d: an invariant does not hold\n", round);
		free(buf);
	}
	CHECK_EQ_U(failures, 0);
}

/* ---- Python's email package reads it ---------------------------------------------------- */

static const char python_check[] =
	"import sys, email, email.policy\n"
	"raw = open(sys.argv[1], 'rb').read()\n"
	"assert raw.endswith(b'\\r\\n')\n"
	"lines = raw.split(b'\\r\\n')\n"
	"raw = b'\\r\\n'.join(l[1:] if l.startswith(b'.') else l for l in lines)\n"
	"m = email.message_from_bytes(raw, policy=email.policy.default)\n"
	"assert not m.defects, m.defects\n"
	"assert m.get_content_type() == 'multipart/report', m.get_content_type()\n"
	"assert m.get_param('report-type') == 'delivery-status'\n"
	"assert m['Subject'] == 'Undelivered Mail Returned to Sender'\n"
	"assert m['From'].addresses[0].addr_spec == 'MAILER-DAEMON@mx.example.org'\n"
	"assert m['To'].addresses[0].addr_spec == 'sender@example.com'\n"
	"assert m['Auto-Submitted'] == 'auto-replied'\n"
	"assert m['Message-ID'] == '<T0KEN1@mx.example.org>'\n"
	"assert m['Date'].datetime.timestamp() == 1795883000, m['Date']\n"
	"parts = list(m.iter_parts())\n"
	"assert len(parts) == 3, len(parts)\n"
	"assert [p.get_content_type() for p in parts] == ['text/plain', 'message/delivery-status', "
	"'text/rfc822-headers'], [p.get_content_type() for p in parts]\n"
	"for p in parts:\n"
	"    assert not p.defects, p.defects\n"
	"assert 'relay.example.net said' in parts[0].get_content()\n"
	"blocks = parts[1].get_payload()\n"
	"assert len(blocks) == 3, len(blocks)\n"
	"assert blocks[0]['Reporting-MTA'] == 'dns; mx.example.org'\n"
	"assert blocks[0]['X-Ringmx-Queue-ID'] == 'Q1ABC'\n"
	"assert blocks[0]['Arrival-Date'] == 'Fri, 27 Nov 2026 14:33:20 +0000'\n"
	"assert blocks[1]['Final-Recipient'] == 'rfc822; user@example.org'\n"
	"assert blocks[1]['Action'] == 'failed'\n"
	"assert blocks[1]['Status'] == '5.1.1'\n"
	"assert blocks[1]['Remote-MTA'] == 'dns; relay.example.net'\n"
	"d = str(blocks[1]['Diagnostic-Code'])\n"
	"assert d.startswith('smtp; 550 5.1.1 <user@example.org>:') and d.endswith('table'), d\n"
	"assert blocks[2]['Final-Recipient'] == 'rfc822; other@example.org'\n"
	"assert blocks[2]['Action'] == 'delayed'\n"
	"assert blocks[2]['Status'] == '4.4.1'\n"
	"h = parts[2].get_content()\n"
	"assert 'X-Trap: --' in h and 'Subject: hello' in h and '..dotted' in h, h\n"
	"assert 'SECRET' not in h\n"
	"print('python email: ok')\n";

/* The same for an internationalised report: Python has no parser of its
 * own for message/global-delivery-status and reads it as a message, so the
 * fields are found in that message's header and body. */
static const char python_check_global[] =
	"import sys, email, email.policy\n"
	"raw = open(sys.argv[1], 'rb').read()\n"
	"m = email.message_from_bytes(raw, policy=email.policy.default)\n"
	"assert not m.defects, m.defects\n"
	"assert m.get_content_type() == 'multipart/report', m.get_content_type()\n"
	"assert m.get_param('report-type') == 'global-delivery-status'\n"
	"parts = list(m.iter_parts())\n"
	"assert [p.get_content_type() for p in parts] == ['text/plain', "
	"'message/global-delivery-status', 'message/global-headers'], parts\n"
	"for p in parts:\n"
	"    assert not p.defects, p.defects\n"
	"report = parts[1].get_payload()[0]\n"
	"assert report['Reporting-MTA'] == 'dns; mx.example.org'\n"
	"body = report.get_payload(decode=True).decode('utf-8')\n"
	"assert 'Final-Recipient: utf-8; \u7528\u6237@example.org\\r\\n' in body, body\n"
	"assert 'Action: failed' in body\n"
	"print('python email (global): ok')\n";

/* Writes message and script to temporary files and runs the script on the
 * message; the message stays behind when Python rejects it. */
static void run_python(const struct built *b, const char *script)
{
	char msg_path[] = "/tmp/test_dsn_msg_XXXXXX";
	char script_path[] = "/tmp/test_dsn_py_XXXXXX";
	int msg_fd = mkstemp(msg_path);
	int script_fd = mkstemp(script_path);
	REQUIRE(msg_fd >= 0 && script_fd >= 0);
	REQUIRE(write(msg_fd, b->bytes, b->len) == (ssize_t)b->len);
	REQUIRE(write(script_fd, script, strlen(script)) == (ssize_t)strlen(script));
	REQUIRE(close(msg_fd) == 0 && close(script_fd) == 0);
	char command[256];
	snprintf(command, sizeof command, "python3 %s %s", script_path, msg_path);
	int status = system(command);
	CHECK(status == 0);
	if (status != 0)
		fprintf(stderr, "test_dsn: the message that Python rejected is in %s\n", msg_path);
	else
		CHECK(unlink(msg_path) == 0);
	CHECK(unlink(script_path) == 0);
}

static void test_python_email(void)
{
	test_require_program("test_dsn", "python3", "python3");
	struct dsn_recipient r[2];
	r[0] = rcpt_user_unknown;
	r[1] = rcpt_user_unknown;
	r[1].address = S("other@example.org");
	r[1].action = DSN_ACTION_DELAYED;
	r[1].status = S("4.4.1");
	r[1].diagnostic = S("451 4.4.1 No answer from host");
	struct dsn_input in = base_input(r, 2);
	/* With a trap for the boundary in its headers, and a dotted line. */
	struct built first = build(&in);
	char base[DSN_BOUNDARY_MAX_BYTES + 1];
	boundary_of(&first, base, sizeof base);
	free(first.bytes);
	char original[1024];
	int olen = snprintf(original, sizeof original,
			    "Received: from a by b\r\nX-Trap: --%s\r\n...dotted\r\nSubject: hello\r\n"
			    "\r\nSECRET\r\n--%s--\r\n",
			    base, base);
	REQUIRE(olen > 0 && (size_t)olen < sizeof original);
	in.original = span_make(original, (size_t)olen);
	struct built b = build(&in);

	run_python(&b, python_check);
	free(b.bytes);

	struct dsn_recipient global = rcpt_user_unknown;
	global.address = S("用户@example.org");
	in = base_input(&global, 1);
	b = build(&in);
	run_python(&b, python_check_global);
	free(b.bytes);
}

int main(int argc, char **argv)
{
	if (test_peer_mode(argc, argv)) {
		test_python_email();
		return test_main_end("test_dsn --peer");
	}
	test_one_failed();
	test_capacity();
	test_mixed();
	test_delayed_only();
	test_dot_lines();
	test_header_bounds();
	test_header_controls();
	test_boundary_collision();
	test_huge_diagnostic();
	test_non_ascii();
	test_random_inputs();
	return test_main_end("test_dsn");
}
