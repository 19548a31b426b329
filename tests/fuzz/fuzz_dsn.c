/*
 * fuzz_dsn.c - the bounce builder (proto/dsn): every text that reaches it
 * from a client or an upstream (the reverse path, each recipient, its
 * status, the remote MTA's name, its diagnostic, the original message)
 * is arbitrary bytes here; our own values (hostname, queue id, Message-ID
 * token) are fixed and valid, as the forwarder passes them.
 *
 * Input: a settings byte (recipient count, actions, SMTPUTF8), then for
 * each recipient four fields and for the reverse path one, each a length
 * byte and its bytes; the rest is the original message.
 * Invariants: a dry run sizes the message and a build into exactly that
 * many bytes writes the same length; a build into one byte less writes
 * nothing past its buffer; the result is DATA wire form with lines of at
 * most DSN_LINE_MAX_BYTES, no NUL, no line that is a lone "."; the same
 * input gives the same bytes; dsn_transport_needs asks for 8BITMIME exactly
 * when a byte is above 0x7f.
 */
#include "../../proto/dsn.h"

#include "fuzz_common.h"

static struct span field(struct fuzz_input *in)
{
	size_t len = fuzz_u8(in);
	if (len > in->n)
		len = in->n;
	struct span s = span_make(in->p, len);
	in->p += len;
	in->n -= len;
	return s;
}

static void check_wire_form(const uint8_t *p, size_t n)
{
	FUZZ_CHECK(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n');
	size_t line_start = 0;
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(p[i] != '\0');
		if (p[i] == '\r')
			FUZZ_CHECK(i + 1 < n && p[i + 1] == '\n');
		if (p[i] != '\n')
			continue;
		FUZZ_CHECK(i > 0 && p[i - 1] == '\r');
		size_t len = i - 1 - line_start; /* CRLF excluded */
		FUZZ_CHECK(len <= DSN_LINE_MAX_BYTES);
		FUZZ_CHECK(!(len == 1 && p[line_start] == '.'));
		line_start = i + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	uint8_t settings = fuzz_u8(&in);
	struct dsn_recipient rcpts[4];
	uint32_t count = 1 + (settings & 3);
	for (uint32_t i = 0; i < count; i++) {
		rcpts[i].address = field(&in);
		rcpts[i].action = (settings >> (2 + i)) & 1 ? DSN_ACTION_DELAYED : DSN_ACTION_FAILED;
		rcpts[i].status = field(&in);
		rcpts[i].remote_mta = field(&in);
		rcpts[i].diagnostic = field(&in);
		rcpts[i].last_attempt_unix = i == 0 ? 0 : 1700000000 + i;
	}
	struct span to = field(&in);
	if (to.len == 0)
		to = span_make("sender@example.org", 18);
	struct dsn_input d = {
		.reporting_mta = span_make("mx.example.test", 15),
		.queue_id = span_make("0300000700000200", 16),
		.arrival_unix = 1700000000,
		.now_unix = 1700003600,
		.to = to,
		.recipients = rcpts,
		.recipient_count = count,
		.original = span_make(in.p, in.n),
		.smtputf8 = settings & 0x80,
		.message_id_token = span_make("dsn-0300000700000200", 20),
	};
	size_t len = dsn_build(&d, NULL, 0);
	FUZZ_CHECK(len > 0);
	uint8_t *buf = malloc(len);
	FUZZ_CHECK(buf != NULL);
	FUZZ_CHECK(dsn_build(&d, buf, len) == len);
	check_wire_form(buf, len);
	uint8_t *again = malloc(len);
	FUZZ_CHECK(again != NULL);
	FUZZ_CHECK(dsn_build(&d, again, len) == len && memcmp(buf, again, len) == 0);
	free(again);
	/* One byte short: the length again, and nothing past the buffer
	 * (AddressSanitizer watches the byte after it). */
	uint8_t *short_buf = malloc(len - 1 ? len - 1 : 1);
	FUZZ_CHECK(short_buf != NULL);
	FUZZ_CHECK(dsn_build(&d, short_buf, len - 1) == len);
	free(short_buf);

	bool high = false;
	for (size_t i = 0; i < len && !high; i++)
		high = buf[i] > 0x7f;
	unsigned needs = dsn_transport_needs(&d, buf, len);
	FUZZ_CHECK(((needs & DSN_NEEDS_8BITMIME) != 0) == high);
	free(buf);
	return 0;
}
