/*
 * test_smtp_client_line.c - the client's command-line writer
 * (proto/smtp_client_line) on its own: XFORWARD values in xtext and
 * [UNAVAILABLE] where a value is empty or cannot fit, the packing of the
 * attributes into lines shorter than 512 bytes for every value length
 * around the boundaries (each attribute once, in order, and the count
 * agreeing with the lines written), which bytes of an address may go on a
 * command line with and without SMTPUTF8, and that a command line goes
 * into out whole or not at all.
 */
#include "../proto/smtp_client_line.h"

#include <string.h>

#include "test.h"

/* Line number want of the packing, NUL-terminated in buf. */
static size_t pack_line(const struct smtp_client_xforward *xf, uint8_t attrs, uint32_t want,
			char *buf, size_t cap)
{
	struct smtp_client_line lb = { buf, 0, cap - 1 };
	(void)smtp_client_xforward_pack(xf, attrs, want, &lb);
	buf[lb.len] = '\0';
	return lb.len;
}

static struct span str_span(const char *s)
{
	return span_make(s, strlen(s));
}

static void test_xtext_values(void)
{
	static const char raw[] = { 'a', '+', '=', ' ', '\x01', '\x7f', '\x80', '\xff', '~', '!' };
	struct smtp_client_xforward xf = {
		.name = span_make(raw, sizeof(raw)),
		.addr = str_span("192.0.2.7"),
		.helo = span_make(NULL, 0),
		.proto = str_span("ESMTP"),
	};
	uint8_t all = SMTP_XFORWARD_NAME | SMTP_XFORWARD_ADDR | SMTP_XFORWARD_HELO |
		      SMTP_XFORWARD_PROTO;
	char buf[SMTP_CLIENT_COMMAND_MAX_BYTES + 1];
	CHECK_EQ_U(smtp_client_xforward_pack(&xf, all, 0, NULL), 1);
	pack_line(&xf, all, 0, buf, sizeof(buf));
	CHECK(strcmp(buf, "XFORWARD NAME=a+2B+3D+20+01+7F+80+FF~! ADDR=192.0.2.7 "
			  "HELO=[UNAVAILABLE] PROTO=ESMTP\r\n") == 0);

	/* Only the attributes offered, in the table's order. */
	pack_line(&xf, SMTP_XFORWARD_PROTO | SMTP_XFORWARD_ADDR, 0, buf, sizeof(buf));
	CHECK(strcmp(buf, "XFORWARD ADDR=192.0.2.7 PROTO=ESMTP\r\n") == 0);
	/* None offered: no line. */
	CHECK_EQ_U(smtp_client_xforward_pack(&xf, 0, 0, NULL), 0);
	CHECK_EQ_U(pack_line(&xf, 0, 0, buf, sizeof(buf)), 0);
}

/* Every line of a packing: under 512 bytes with CRLF, "XFORWARD" then
 * " KEY=value" pairs; together each offered key once, in order. */
static void check_packing(const struct smtp_client_xforward *xf, uint8_t attrs)
{
	static const char *const keys[] = { "NAME", "ADDR", "HELO", "PROTO" };
	char buf[SMTP_CLIENT_COMMAND_MAX_BYTES + 1];
	uint32_t lines = smtp_client_xforward_pack(xf, attrs, 0, NULL);
	size_t next_key = 0;
	for (uint32_t l = 0; l < lines; l++) {
		size_t n = pack_line(xf, attrs, l, buf, sizeof(buf));
		CHECK(n > 10 && n < SMTP_CLIENT_COMMAND_MAX_BYTES);
		CHECK(memcmp(buf, "XFORWARD ", 9) == 0);
		CHECK(buf[n - 2] == '\r' && buf[n - 1] == '\n');
		CHECK(memchr(buf, '\r', n - 2) == NULL && memchr(buf, '\n', n - 2) == NULL);
		buf[n - 2] = '\0';
		for (char *attr = strtok(buf + 9, " "); attr != NULL; attr = strtok(NULL, " ")) {
			while (next_key < RMX_ARRAY_LEN(keys) &&
			       !(attrs & smtp_xforward_attrs[next_key].bit))
				next_key++;
			REQUIRE(next_key < RMX_ARRAY_LEN(keys));
			size_t k = strlen(keys[next_key]);
			CHECK(strncmp(attr, keys[next_key], k) == 0 && attr[k] == '=');
			next_key++;
		}
	}
	while (next_key < RMX_ARRAY_LEN(keys) && !(attrs & smtp_xforward_attrs[next_key].bit))
		next_key++;
	CHECK_EQ_U(next_key, RMX_ARRAY_LEN(keys));
	/* Past the last line nothing is written. */
	CHECK_EQ_U(pack_line(xf, attrs, lines, buf, sizeof(buf)), 0);
}

static void test_xforward_lines(void)
{
	static char long_value[2 * SMTP_CLIENT_COMMAND_MAX_BYTES];
	memset(long_value, 'n', sizeof(long_value));
	uint8_t all = SMTP_XFORWARD_NAME | SMTP_XFORWARD_ADDR | SMTP_XFORWARD_HELO |
		      SMTP_XFORWARD_PROTO;
	for (size_t len = 0; len <= sizeof(long_value); len++) {
		struct smtp_client_xforward xf = {
			.name = span_make(long_value, len),
			.addr = str_span("2001:db8::1"),
			.helo = span_make(long_value, len / 2),
			.proto = str_span("ESMTP"),
		};
		check_packing(&xf, all);
		check_packing(&xf, SMTP_XFORWARD_NAME | SMTP_XFORWARD_HELO);
	}

	/* The longest value that fits a line alone is sent; one byte more is not. */
	char buf[SMTP_CLIENT_COMMAND_MAX_BYTES + 1];
	size_t room = SMTP_CLIENT_COMMAND_MAX_BYTES - 1 - strlen("XFORWARD NAME=\r\n");
	struct smtp_client_xforward xf = { .name = span_make(long_value, room) };
	size_t n = pack_line(&xf, SMTP_XFORWARD_NAME, 0, buf, sizeof(buf));
	CHECK_EQ_U(n, SMTP_CLIENT_COMMAND_MAX_BYTES - 1);
	xf.name.len = room + 1;
	pack_line(&xf, SMTP_XFORWARD_NAME, 0, buf, sizeof(buf));
	CHECK(strcmp(buf, "XFORWARD NAME=[UNAVAILABLE]\r\n") == 0);
}

static void test_path_bytes(void)
{
	for (unsigned b = 0; b < 256; b++) {
		uint8_t byte = (uint8_t)b;
		struct span p = span_make(&byte, 1);
		bool ascii = b >= 0x20 && b < 0x7f && b != '<' && b != '>';
		CHECK(smtp_client_path_sendable(p, false) == ascii);
		CHECK(smtp_client_path_sendable(p, true) == (ascii || b >= 0x80));
	}
	static uint8_t path[SMTP_PATH_MAX_BYTES + 1];
	memset(path, 'a', sizeof(path));
	CHECK(smtp_client_path_sendable(span_make(NULL, 0), false));
	CHECK(smtp_client_path_sendable(span_make(path, SMTP_PATH_MAX_BYTES), false));
	CHECK(!smtp_client_path_sendable(span_make(path, SMTP_PATH_MAX_BYTES + 1), true));
}

static void test_out_command(void)
{
	uint8_t buf[64];
	memset(buf, '#', sizeof(buf));
	struct smtp_out out = { buf, 0, 14 };
	CHECK(smtp_client_out_command(&out, "RCPT", str_span("x"))); /* 8 bytes */
	CHECK(!smtp_client_out_command(&out, "RCPT", str_span("x"))); /* 6 left */
	CHECK_EQ_U(out.len, 8);
	CHECK(smtp_client_out_command(&out, "QUIT", span_make(NULL, 0))); /* exactly 6 */
	CHECK_MEM(buf, out.len, "RCPT x\r\nQUIT\r\n", (size_t)14);
	CHECK(buf[14] == '#');
	CHECK(smtp_client_out_fits(&out, 0) && !smtp_client_out_fits(&out, 1));

	char line[24];
	struct smtp_client_line lb = { line, 0, sizeof(line) };
	smtp_client_line_u64(&lb, 0);
	smtp_client_line_str(&lb, " ");
	smtp_client_line_u64(&lb, UINT64_MAX);
	smtp_client_line_put(&lb, NULL, 0);
	CHECK_MEM(line, lb.len, "0 18446744073709551615", (size_t)22);
}

int main(void)
{
	test_xtext_values();
	test_xforward_lines();
	test_path_bytes();
	test_out_command();
	return test_main_end("test_smtp_client_line");
}
