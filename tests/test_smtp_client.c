/*
 * test_smtp_client.c - the upstream client state machine (proto/smtp_client.c)
 * against scripted conversations with a pretend upstream.
 *
 * A conversation is a small script, one directive a line:
 *   S: text      the upstream sends text CRLF; consecutive S/s lines are one
 *   s: text      flight (one TCP read); s: adds no CRLF
 *   C: text      the client must have written text CRLF by the next check
 *   > start | body | rset | next | quit | sent | lost    call start_message,
 *                body_sent, rset, next, quit, feed with n = 0, or
 *                connection_lost
 *   = STATUS     the status the last call returned
 *   R<i>: res    recipient i's result, "code status text" ("0": none)
 *   M: res / X: res    the message result / the connection result
 *   K: caps      capabilities, e.g. "PIPELINING SIZE=1000 8BITMIME"
 *   F: path   T: path   B: 7BIT|8BITMIME|BINARYMIME size [bdat]   U:   W: n|a|h|p
 *                the message: reverse path, each recipient, body type and
 *                size (and unstuffed size, for BDAT), SMTPUTF8, XFORWARD
 *                values
 *   H:           BDAT allowed (smtp_client_set_chunking)
 *   P:           the message prefers DATA (data_preferred)
 *   O: bytes     the size of the out buffer (default 4096)
 *   L: none|opportunistic|required   what the client does about STARTTLS
 *   > tls | tlsfail   the caller's TLS handshake succeeded (tls_started) or
 *                failed (tls_failed)
 * Texts take escapes \r \n \t \0 \xHH \\.
 *
 * Every script is replayed with each flight whole, byte by byte, and split
 * in two at every byte of every flight (flights over 4 KiB, the long-line
 * and 1000-recipient ones, at a stride of 13 to 211 bytes; the unpipelined
 * 1000-recipient one splits every 97th flight); every replay must match
 * the script exactly, commands and results alike, and no command line may
 * reach 512 bytes.
 * Input chunks and the out buffer are heap blocks of exactly their size, so
 * ASan catches any read or write past them. After every call the driver
 * "sends" out and calls feed with n = 0, as core/forward does when a send
 * completes (but not behind SEND_BODY: the body goes next, and body_sent
 * comes with the script's "> body"). A random upstream then checks what
 * must hold whatever it says.
 */
#include "../proto/smtp_client.h"

#include "test.h"
#include "test_util.h"

/* Decodes script escapes from s into b; false on a bad escape. */
static bool unescape(const char *s, struct test_buf *b)
{
	for (; *s; s++) {
		if (*s != '\\') {
			test_buf_put(b, s, 1);
			continue;
		}
		s++;
		char c;
		switch (*s) {
		case 'r': c = '\r'; break;
		case 'n': c = '\n'; break;
		case 't': c = '\t'; break;
		case '0': c = '\0'; break;
		case '\\': c = '\\'; break;
		case 'x': {
			unsigned v;
			if (sscanf(s + 1, "%2x", &v) != 1)
				return false;
			c = (char)v;
			s += 2;
			break;
		}
		default:
			return false;
		}
		test_buf_put(b, &c, 1);
	}
	return true;
}

/* ---- scripts ------------------------------------------------------------------- */

enum step_kind {
	STEP_FLIGHT,
	STEP_EXPECT_OUT,
	STEP_ACTION,
	STEP_STATUS,
	STEP_RCPT,
	STEP_MESSAGE,
	STEP_CONN,
	STEP_CAPS,
};

struct step {
	enum step_kind kind;
	struct test_buf data;   /* flight bytes, expected out bytes */
	char *text;        /* action name, expected status/result/caps */
	uint32_t index;    /* STEP_RCPT */
};

#define CONV_RCPT_MAX 2000

struct conv {
	const char *name;
	struct step *steps;
	size_t step_count;
	size_t out_cap;
	enum smtp_client_tls tls_mode;
	bool chunking;
	/* the message */
	struct test_buf strings[CONV_RCPT_MAX + 5];
	size_t string_count;
	struct span rcpts[CONV_RCPT_MAX];
	struct smtp_client_xforward xf;
	struct smtp_client_message msg;
};

static struct step *conv_step(struct conv *cv, enum step_kind kind)
{
	cv->steps = realloc(cv->steps, (cv->step_count + 1) * sizeof(*cv->steps));
	REQUIRE(cv->steps != NULL);
	struct step *st = &cv->steps[cv->step_count++];
	memset(st, 0, sizeof(*st));
	st->kind = kind;
	return st;
}

/* Decodes text into a string owned by the conversation; returns a span. */
static struct span conv_string(struct conv *cv, const char *text)
{
	REQUIRE(cv->string_count < RMX_ARRAY_LEN(cv->strings));
	struct test_buf *b = &cv->strings[cv->string_count++];
	REQUIRE(unescape(text, b));
	test_buf_put(b, "", 1); /* keeps data non-NULL */
	b->len--;
	return span_make(b->data, b->len);
}

static char *dup_str(const char *s)
{
	char *d = strdup(s);
	REQUIRE(d != NULL);
	return d;
}

static bool conv_line(struct conv *cv, const char *line)
{
	if (line[0] == '\0' || line[0] == '#')
		return true;
	const char *arg = strchr(line, ':');
	if (line[0] == '>' || line[0] == '=') {
		if (line[1] != ' ')
			return false;
		struct step *st = conv_step(cv, line[0] == '>' ? STEP_ACTION : STEP_STATUS);
		st->text = dup_str(line + 2);
		return true;
	}
	if (arg == NULL)
		return false;
	arg = arg[1] == ' ' ? arg + 2 : arg + 1;
	switch (line[0]) {
	case 'S':
	case 's': {
		struct step *st = NULL;
		if (cv->step_count > 0 && cv->steps[cv->step_count - 1].kind == STEP_FLIGHT)
			st = &cv->steps[cv->step_count - 1];
		else
			st = conv_step(cv, STEP_FLIGHT);
		if (!unescape(arg, &st->data))
			return false;
		if (line[0] == 'S')
			test_buf_put(&st->data, "\r\n", 2);
		return true;
	}
	case 'C': {
		struct step *st = conv_step(cv, STEP_EXPECT_OUT);
		if (!unescape(arg, &st->data))
			return false;
		test_buf_put(&st->data, "\r\n", 2);
		return true;
	}
	case 'R': {
		char *end = NULL;
		unsigned long index = strtoul(line + 1, &end, 10);
		if (end == line + 1 || *end != ':')
			return false;
		struct step *st = conv_step(cv, STEP_RCPT);
		st->index = (uint32_t)index;
		st->text = dup_str(arg);
		return true;
	}
	case 'M':
	case 'X':
	case 'K': {
		struct step *st = conv_step(cv, line[0] == 'M' ? STEP_MESSAGE
					     : line[0] == 'X' ? STEP_CONN : STEP_CAPS);
		st->text = dup_str(arg);
		return true;
	}
	case 'F':
		cv->msg.reverse_path = conv_string(cv, arg);
		return true;
	case 'T':
		REQUIRE(cv->msg.recipient_count < CONV_RCPT_MAX);
		cv->rcpts[cv->msg.recipient_count++] = conv_string(cv, arg);
		return true;
	case 'B': {
		char type[16];
		unsigned long long size, bdat_size;
		int got = sscanf(arg, "%15s %llu %llu", type, &size, &bdat_size);
		if (got < 2)
			return false;
		cv->msg.bdat_bytes = got == 3 ? bdat_size : size;
		cv->msg.body_type = strcmp(type, "8BITMIME") == 0	 ? SMTP_BODY_8BITMIME
				    : strcmp(type, "BINARYMIME") == 0 ? SMTP_BODY_BINARYMIME
								       : SMTP_BODY_7BIT;
		cv->msg.body_bytes = size;
		return true;
	}
	case 'U':
		cv->msg.smtputf8 = true;
		return true;
	case 'H':
		cv->chunking = true;
		return true;
	case 'P':
		cv->msg.data_preferred = true;
		return true;
	case 'W': {
		struct span *fields[4] = { &cv->xf.name, &cv->xf.addr, &cv->xf.helo, &cv->xf.proto };
		char *copy = dup_str(arg);
		char *tok = copy;
		for (size_t i = 0; i < 4; i++) {
			char *bar = strchr(tok, '|');
			if (bar != NULL)
				*bar = '\0';
			*fields[i] = conv_string(cv, tok);
			if (bar == NULL)
				break;
			tok = bar + 1;
		}
		free(copy);
		cv->msg.xforward = &cv->xf;
		return true;
	}
	case 'O':
		cv->out_cap = strtoul(arg, NULL, 10);
		return cv->out_cap >= SMTP_CLIENT_OUT_MIN_BYTES;
	case 'L':
		if (strcmp(arg, "none") == 0)
			cv->tls_mode = SMTP_CLIENT_TLS_NONE;
		else if (strcmp(arg, "opportunistic") == 0)
			cv->tls_mode = SMTP_CLIENT_TLS_OPPORTUNISTIC;
		else if (strcmp(arg, "required") == 0)
			cv->tls_mode = SMTP_CLIENT_TLS_REQUIRED;
		else
			return false;
		return true;
	default:
		return false;
	}
}

static struct conv *conv_load(const char *name, const char *script)
{
	struct conv *cv = calloc(1, sizeof(*cv));
	REQUIRE(cv != NULL);
	cv->name = name;
	cv->out_cap = 4096;
	cv->msg.recipients = cv->rcpts;
	char *copy = dup_str(script);
	unsigned lineno = 0;
	for (char *line = copy, *next; line != NULL; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		lineno++;
		if (!conv_line(cv, line)) {
			fprintf(stderr, "%s:%u: bad script line: %s\n", name, lineno, line);
			REQUIRE(false);
		}
	}
	free(copy);
	return cv;
}

static void conv_free(struct conv *cv)
{
	for (size_t i = 0; i < cv->step_count; i++) {
		free(cv->steps[i].data.data);
		free(cv->steps[i].text);
	}
	free(cv->steps);
	for (size_t i = 0; i < cv->string_count; i++)
		free(cv->strings[i].data);
	free(cv);
}

/* ---- replay -------------------------------------------------------------------- */

static const char *status_name(enum smtp_client_status st)
{
	switch (st) {
	case SMTP_CLIENT_WANT_INPUT: return "WANT_INPUT";
	case SMTP_CLIENT_START_TLS: return "START_TLS";
	case SMTP_CLIENT_READY: return "READY";
	case SMTP_CLIENT_SEND_BODY: return "SEND_BODY";
	case SMTP_CLIENT_MESSAGE_DONE: return "MESSAGE_DONE";
	case SMTP_CLIENT_CLOSED: return "CLOSED";
	case SMTP_CLIENT_FAILED: return "FAILED";
	}
	return "?";
}

static void result_format(const struct smtp_client_result *r, char *s, size_t cap)
{
	int n = snprintf(s, cap, "%u", r->code);
	REQUIRE(n > 0 && (size_t)n < cap);
	if (r->status[0])
		n += snprintf(s + n, cap - (size_t)n, " %s", r->status);
	REQUIRE((size_t)n < cap);
	if (r->text[0])
		n += snprintf(s + n, cap - (size_t)n, " %s", r->text);
	REQUIRE((size_t)n < cap);
}

static void caps_format(const struct smtp_client *c, char *s, size_t cap)
{
	static const char *const names[] = { "PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8",
					     "CHUNKING", "BINARYMIME", "XFORWARD",
					     "ENHANCEDSTATUSCODES", "STARTTLS" };
	uint32_t caps = smtp_client_caps(c);
	size_t n = 0;
	s[0] = '\0';
	for (size_t i = 0; i < RMX_ARRAY_LEN(names); i++) {
		if (!(caps & (1u << i)))
			continue;
		int w = snprintf(s + n, cap - n, "%s%s", n ? " " : "", names[i]);
		REQUIRE(w > 0 && (size_t)w < cap - n);
		n += (size_t)w;
		if ((1u << i) == SMTP_CAP_SIZE && c->upstream.size_max > 0) {
			w = snprintf(s + n, cap - n, "=%llu",
				     (unsigned long long)c->upstream.size_max);
			REQUIRE(w > 0 && (size_t)w < cap - n);
			n += (size_t)w;
		}
	}
}

struct replay {
	const struct conv *cv;
	struct smtp_client client;
	struct smtp_out out;
	struct smtp_client_result *results;
	struct test_buf actual;    /* every byte the client wrote */
	struct test_buf expected;  /* every C: line so far */
	enum smtp_client_status status;
	size_t out_line_bytes;     /* of the command line being written */
	size_t out_line_max_bytes; /* longest command line, CRLF included */
	char error[2048];
};

/* Sends out, and tells the client so, until it has nothing more to write. */
static void replay_drain(struct replay *r)
{
	unsigned rounds = 0;
	while (r->out.len > 0 && r->status != SMTP_CLIENT_SEND_BODY) {
		REQUIRE(r->out.len <= r->out.cap);
		test_buf_put(&r->actual, r->out.buf, r->out.len);
		for (size_t i = 0; i < r->out.len; i++) {
			r->out_line_bytes++;
			if (r->out.buf[i] == '\n') {
				r->out_line_max_bytes = RMX_MAX(r->out_line_max_bytes, r->out_line_bytes);
				r->out_line_bytes = 0;
			}
		}
		r->out.len = 0;
		r->status = smtp_client_feed(&r->client, NULL, 0, &r->out);
		REQUIRE(++rounds < 100000);
	}
	if (r->status == SMTP_CLIENT_SEND_BODY && r->out.len > 0) {
		/* The commands before the body go; nothing more is asked. */
		test_buf_put(&r->actual, r->out.buf, r->out.len);
		for (size_t i = 0; i < r->out.len; i++) {
			r->out_line_bytes++;
			if (r->out.buf[i] == '\n') {
				r->out_line_max_bytes = RMX_MAX(r->out_line_max_bytes, r->out_line_bytes);
				r->out_line_bytes = 0;
			}
		}
		r->out.len = 0;
	}
}

static void replay_feed(struct replay *r, const uint8_t *p, size_t n)
{
	uint8_t *chunk = malloc(n ? n : 1);
	REQUIRE(chunk != NULL);
	memcpy(chunk, p, n);
	r->status = smtp_client_feed(&r->client, chunk, n, &r->out);
	free(chunk);
	replay_drain(r);
}

static bool replay_out_ok(struct replay *r, size_t step)
{
	if (test_buf_eq(&r->actual, &r->expected))
		return true;
	snprintf(r->error, sizeof(r->error), "step %zu: out differs\n--- got:\n%.*s--- want:\n%.*s",
		 step, (int)RMX_MIN(r->actual.len, 800), (const char *)r->actual.data,
		 (int)RMX_MIN(r->expected.len, 800), (const char *)r->expected.data);
	return false;
}

static bool replay_text_ok(struct replay *r, size_t step, const char *what, const char *got,
			   const char *want)
{
	if (strcmp(got, want) == 0)
		return true;
	snprintf(r->error, sizeof(r->error), "step %zu: %s: got \"%s\", want \"%s\"", step, what,
		 got, want);
	return false;
}

static bool replay_action(struct replay *r, size_t step, const char *action)
{
	const struct conv *cv = r->cv;
	if (strcmp(action, "start") == 0)
		r->status = smtp_client_start_message(&r->client, &cv->msg, r->results, &r->out);
	else if (strcmp(action, "body") == 0)
		r->status = smtp_client_body_sent(&r->client, &r->out);
	else if (strcmp(action, "rset") == 0)
		r->status = smtp_client_rset(&r->client, &r->out);
	else if (strcmp(action, "next") == 0)
		r->status = smtp_client_next(&r->client, &r->out);
	else if (strcmp(action, "quit") == 0)
		r->status = smtp_client_quit(&r->client, &r->out);
	else if (strcmp(action, "sent") == 0)
		r->status = smtp_client_feed(&r->client, NULL, 0, &r->out);
	else if (strcmp(action, "lost") == 0)
		r->status = smtp_client_connection_lost(&r->client, "lost connection with upstream");
	else if (strcmp(action, "tls") == 0)
		r->status = smtp_client_tls_started(&r->client, &r->out);
	else if (strcmp(action, "tlsfail") == 0)
		r->status = smtp_client_tls_failed(&r->client, "TLS handshake failed");
	else {
		snprintf(r->error, sizeof(r->error), "step %zu: unknown action %s", step, action);
		return false;
	}
	replay_drain(r);
	return true;
}

/* Feeds one flight: whole (split_at 0), byte by byte (split_at SIZE_MAX),
 * or in two pieces at split_at. */
static void replay_flight(struct replay *r, const struct test_buf *f, size_t split_at)
{
	if (split_at == SIZE_MAX) {
		for (size_t i = 0; i < f->len; i++)
			replay_feed(r, f->data + i, 1);
	} else if (split_at == 0 || split_at >= f->len) {
		replay_feed(r, f->data, f->len);
	} else {
		replay_feed(r, f->data, split_at);
		replay_feed(r, f->data + split_at, f->len - split_at);
	}
}

/*
 * Replays the conversation; flight number split_flight arrives split at
 * split_at (SIZE_MAX: every flight byte by byte). Returns true when every
 * check holds; else r->error says what differed first.
 */
static bool replay_run(struct replay *r, const struct conv *cv, size_t split_flight,
		       size_t split_at)
{
	memset(r, 0, sizeof(*r));
	r->cv = cv;
	r->out.buf = malloc(cv->out_cap);
	r->out.cap = cv->out_cap;
	size_t nres = cv->msg.recipient_count ? cv->msg.recipient_count : 1;
	r->results = malloc(nres * sizeof(*r->results));
	REQUIRE(r->out.buf != NULL && r->results != NULL);
	memset(r->results, 0xa5, nres * sizeof(*r->results));
	smtp_client_init(&r->client, span_make("relay.example", 13));
	smtp_client_set_tls(&r->client, cv->tls_mode);
	smtp_client_set_chunking(&r->client, cv->chunking);
	r->status = SMTP_CLIENT_WANT_INPUT;

	bool ok = true;
	size_t flight = 0;
	char got[512];
	for (size_t i = 0; ok && i < cv->step_count; i++) {
		const struct step *st = &cv->steps[i];
		if (st->kind != STEP_EXPECT_OUT)
			ok = replay_out_ok(r, i);
		if (!ok)
			break;
		switch (st->kind) {
		case STEP_FLIGHT:
			if (split_flight == SIZE_MAX)
				replay_flight(r, &st->data, SIZE_MAX);
			else
				replay_flight(r, &st->data, flight == split_flight ? split_at : 0);
			flight++;
			break;
		case STEP_EXPECT_OUT:
			test_buf_put(&r->expected, st->data.data, st->data.len);
			break;
		case STEP_ACTION:
			ok = replay_action(r, i, st->text);
			break;
		case STEP_STATUS:
			ok = replay_text_ok(r, i, "status", status_name(r->status), st->text);
			break;
		case STEP_RCPT:
			REQUIRE(st->index < cv->msg.recipient_count);
			result_format(&r->results[st->index], got, sizeof(got));
			ok = replay_text_ok(r, i, "recipient result", got, st->text);
			break;
		case STEP_MESSAGE:
			result_format(smtp_client_message_result(&r->client), got, sizeof(got));
			ok = replay_text_ok(r, i, "message result", got, st->text);
			break;
		case STEP_CONN:
			result_format(smtp_client_conn_result(&r->client), got, sizeof(got));
			ok = replay_text_ok(r, i, "connection result", got, st->text);
			break;
		case STEP_CAPS:
			caps_format(&r->client, got, sizeof(got));
			ok = replay_text_ok(r, i, "caps", got, st->text);
			break;
		}
	}
	if (ok)
		ok = replay_out_ok(r, cv->step_count);
	if (ok && (r->out_line_max_bytes >= 512 || r->out_line_bytes != 0)) {
		snprintf(r->error, sizeof(r->error), "a command line of %zu bytes, or a partial one",
			 RMX_MAX(r->out_line_max_bytes, r->out_line_bytes));
		ok = false;
	}
	free(r->out.buf);
	free(r->results);
	free(r->actual.data);
	free(r->expected.data);
	return ok;
}

static unsigned long replays_run;

/* Runs cv whole, byte by byte and split at every byte of every
 * flight_every-th flight (every stride-th byte for flights over 4 KiB). */
static void conv_check(struct conv *cv, size_t stride, size_t flight_every)
{
	struct replay *r = malloc(sizeof(*r));
	REQUIRE(r != NULL);
	bool ok = replay_run(r, cv, 0, 0);
	if (!ok)
		fprintf(stderr, "%s (whole): %s\n", cv->name, r->error);
	CHECK(ok);
	ok = replay_run(r, cv, SIZE_MAX, 0);
	if (!ok)
		fprintf(stderr, "%s (byte by byte): %s\n", cv->name, r->error);
	CHECK(ok);
	replays_run += 2;
	size_t flight = 0;
	unsigned split_failures = 0;
	for (size_t i = 0; i < cv->step_count; i++) {
		if (cv->steps[i].kind != STEP_FLIGHT)
			continue;
		size_t len = flight % flight_every == 0 ? cv->steps[i].data.len : 0;
		size_t step_by = len > 4096 ? stride : 1;
		for (size_t at = 1; at < len; at += step_by) {
			replays_run++;
			if (replay_run(r, cv, flight, at))
				continue;
			if (split_failures++ == 0)
				fprintf(stderr, "%s (flight %zu split at %zu): %s\n", cv->name, flight,
					at, r->error);
		}
		flight++;
	}
	CHECK_EQ_U(split_failures, 0);
	free(r);
}

static void run_script(const char *name, const char *script)
{
	struct conv *cv = conv_load(name, script);
	conv_check(cv, 1, 1);
	conv_free(cv);
}

/* ---- conversations --------------------------------------------------------------- */

#define GREET_EHLO_PIPE                          \
	"S: 220 mx.upstream.test ESMTP\n"        \
	"C: EHLO relay.example\n"                \
	"= WANT_INPUT\n"                         \
	"S: 250-mx.upstream.test\n"              \
	"S: 250-PIPELINING\n"                    \
	"S: 250-SIZE 10240000\n"                 \
	"S: 250-8BITMIME\n"                      \
	"S: 250-ENHANCEDSTATUSCODES\n"           \
	"S: 250 SMTPUTF8\n"                      \
	"= READY\n"

#define GREET_EHLO_PLAIN                         \
	"S: 220 mx.upstream.test ESMTP\n"        \
	"C: EHLO relay.example\n"                \
	"S: 250-mx.upstream.test\n"              \
	"S: 250 8BITMIME\n"                      \
	"= READY\n"

static const char conv_pipelined_mix[] =
	"F: sender@origin.example\n"
	"T: a@dest.example\n"
	"T: b@dest.example\n"
	"T: c@dest.example\n"
	"B: 7BIT 1234\n"
	GREET_EHLO_PIPE
	"K: PIPELINING SIZE=10240000 8BITMIME SMTPUTF8 ENHANCEDSTATUSCODES\n"
	"> start\n"
	"C: MAIL FROM:<sender@origin.example> SIZE=1234\n"
	"C: RCPT TO:<a@dest.example>\n"
	"C: RCPT TO:<b@dest.example>\n"
	"C: RCPT TO:<c@dest.example>\n"
	"C: DATA\n"
	"= WANT_INPUT\n"
	"S: 250 2.1.0 Ok\n"
	"S: 250 2.1.5 Ok\n"
	"S: 450 4.2.0 <b@dest.example>: Recipient address rejected: Greylisted\n"
	"S: 550 5.1.1 <c@dest.example>: Recipient address rejected: User unknown\n"
	"S: 354 End data with <CR><LF>.<CR><LF>\n"
	"= SEND_BODY\n"
	"R0: 250 2.1.5 Ok\n"
	"R1: 450 4.2.0 <b@dest.example>: Recipient address rejected: Greylisted\n"
	"R2: 550 5.1.1 <c@dest.example>: Recipient address rejected: User unknown\n"
	"> body\n"
	"C: .\n"
	"= WANT_INPUT\n"
	"S: 250 2.0.0 Ok: queued as 4XyZ\n"
	"= MESSAGE_DONE\n"
	"R0: 250 2.0.0 Ok: queued as 4XyZ\n"
	"R1: 450 4.2.0 <b@dest.example>: Recipient address rejected: Greylisted\n"
	"R2: 550 5.1.1 <c@dest.example>: Recipient address rejected: User unknown\n"
	"M: 250 2.0.0 Ok: queued as 4XyZ\n"
	"> rset\n"
	"C: RSET\n"
	"S: 250 2.0.0 Ok\n"
	"= READY\n"
	"> start\n"
	"C: MAIL FROM:<sender@origin.example> SIZE=1234\n"
	"C: RCPT TO:<a@dest.example>\n"
	"C: RCPT TO:<b@dest.example>\n"
	"C: RCPT TO:<c@dest.example>\n"
	"C: DATA\n"
	"S: 250 2.1.0 Ok\n"
	"S: 250 2.1.5 Ok\n"
	"S: 250 2.1.5 Ok\n"
	"S: 250 2.1.5 Ok\n"
	"S: 354 go ahead\n"
	"= SEND_BODY\n"
	"> body\n"
	"C: .\n"
	"S: 452 4.3.1 Insufficient system storage\n"
	"= MESSAGE_DONE\n"
	"R0: 452 4.3.1 Insufficient system storage\n"
	"R2: 452 4.3.1 Insufficient system storage\n"
	"M: 452 4.3.1 Insufficient system storage\n"
	"> quit\n"
	"C: QUIT\n"
	"= WANT_INPUT\n"
	"S: 221 2.0.0 Bye\n"
	"= CLOSED\n";

static const char conv_unpipelined[] =
	"F:\n"
	"T: a@dest.example\n"
	"T: b@dest.example\n"
	"B: 8BITMIME 99\n"
	GREET_EHLO_PLAIN
	"K: 8BITMIME\n"
	"> start\n"
	"C: MAIL FROM:<> BODY=8BITMIME\n"
	"= WANT_INPUT\n"
	"S: 250 ok\n"
	"C: RCPT TO:<a@dest.example>\n"
	"S: 550 no such user here\n"
	"C: RCPT TO:<b@dest.example>\n"
	"S: 251 user not local; will forward\n"
	"C: DATA\n"
	"S: 354 send it\n"
	"= SEND_BODY\n"
	"> body\n"
	"C: .\n"
	"S: 554 5.7.1 content rejected\n"
	"= MESSAGE_DONE\n"
	"R0: 550 5.0.0 no such user here\n"
	"R1: 554 5.7.1 content rejected\n"
	"M: 554 5.7.1 content rejected\n"
	"> rset\n"
	"C: RSET\n"
	"S: 250 ok\n"
	"= READY\n"
	"> quit\n"
	"C: QUIT\n"
	"S: 500 what?\n"
	"= CLOSED\n";

static const char conv_greeting_multiline[] =
	"S: 220-mx.upstream.test ESMTP\n"
	"S: 220-no UCE\n"
	"S: 220 really\n"
	"C: EHLO relay.example\n"
	"S: 250 mx.upstream.test\n"
	"= READY\n"
	"K: \n";

static const char conv_greeting_554[] =
	"S: 554 5.3.2 mx.upstream.test go away\n"
	"= CLOSED\n"
	"X: 554 5.3.2 mx.upstream.test go away\n";

static const char conv_greeting_421[] =
	"S: 421 4.3.2 Service shutting down\n"
	"= CLOSED\n"
	"X: 421 4.3.2 Service shutting down\n";

static const char conv_greeting_450[] =
	"S: 450 try later\n"
	"= FAILED\n"
	"X: 450 4.0.0 try later\n";

static const char conv_greeting_250[] =
	"S: 250 hello?\n"
	"= FAILED\n"
	"X: 451 4.4.0 unexpected greeting from upstream\n";

static const char conv_helo_fallback[] =
	"F: s@origin.example\n"
	"T: a@dest.example\n"
	"S: 220 old.upstream.test SMTP\n"
	"C: EHLO relay.example\n"
	"S: 502 5.5.2 Error: command not recognized\n"
	"C: HELO relay.example\n"
	"= WANT_INPUT\n"
	"S: 250 old.upstream.test\n"
	"= READY\n"
	"K: \n"
	"> start\n"
	"C: MAIL FROM:<s@origin.example>\n"
	"S: 250 ok\n"
	"C: RCPT TO:<a@dest.example>\n"
	"S: 250 ok\n"
	"C: DATA\n"
	"S: 354 go\n"
	"> body\n"
	"C: .\n"
	"S: 250 queued\n"
	"= MESSAGE_DONE\n"
	"R0: 250 2.0.0 queued\n";

static const char conv_ehlo_multiline_5xx[] =
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 500-PIPELINING\n"
	"S: 500 unrecognized\n"
	"C: HELO relay.example\n"
	"S: 550 5.7.1 no thanks\n"
	"= FAILED\n"
	"K: \n"
	"X: 550 5.7.1 no thanks\n";

static const char conv_ehlo_421[] =
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 421 4.7.0 too busy\n"
	"= CLOSED\n"
	"X: 421 4.7.0 too busy\n";

static const char conv_ehlo_450[] =
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 450 4.7.1 slow down\n"
	"= FAILED\n"
	"X: 450 4.7.1 slow down\n";

static const char conv_capabilities[] =
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250-x.example greets relay.example\n"
	"S: 250-pipelining\n"
	"S: 250-Size 52428800\n"
	"S: 250-AUTH PLAIN LOGIN\n"
	"S: 250-8bitmime\n"
	"S: 250-smtputf8\n"
	"S: 250-chunking\n"
	"S: 250-BINARYMIME\n"
	"S: 250-XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT\n"
	"S: 250-enhancedstatuscodes\n"
	"S: 250-STARTTLS\n"
	"S: 250-DSN\n"
	"S: 250-PIPELININGX\n"
	"S: 250 X-UNKNOWN-THING with args\n"
	"= READY\n"
	"K: PIPELINING SIZE=52428800 8BITMIME SMTPUTF8 CHUNKING BINARYMIME XFORWARD "
	"ENHANCEDSTATUSCODES STARTTLS\n";

static const char conv_size_no_limit[] =
	"F: s@o.example\n"
	"T: r@d.example\n"
	"B: 7BIT 999999999\n"
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250-x\n"
	"S: 250 SIZE\n"
	"= READY\n"
	"K: SIZE\n"
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=999999999\n"
	"= WANT_INPUT\n";

static const char conv_single_line_ehlo[] =
	"s: 220 x\\r\\n\n"
	"C: EHLO relay.example\n"
	"s: 250 x only\\n\n"
	"= READY\n"
	"K: \n";

/* MAIL refused, pipelined: the pipelined replies are read, then done. */
static const char conv_mail_rejected_pipelined[] =
	"F: bad@origin.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	"B: 7BIT 10\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<bad@origin.example> SIZE=10\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: RCPT TO:<b@d.example>\n"
	"C: DATA\n"
	"S: 553 5.7.1 <bad@origin.example>: Sender address rejected\n"
	"S: 503 5.5.1 Error: need MAIL command\n"
	"= WANT_INPUT\n"
	"S: 503 5.5.1 Error: need MAIL command\n"
	"S: 503 5.5.1 Error: need MAIL command\n"
	"= MESSAGE_DONE\n"
	"R0: 553 5.7.1 <bad@origin.example>: Sender address rejected\n"
	"R1: 553 5.7.1 <bad@origin.example>: Sender address rejected\n"
	"M: 553 5.7.1 <bad@origin.example>: Sender address rejected\n"
	"> rset\n"
	"C: RSET\n"
	"S: 250 2.0.0 Ok\n"
	"= READY\n";

static const char conv_mail_rejected_plain[] =
	"F: bad@origin.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	GREET_EHLO_PLAIN
	"> start\n"
	"C: MAIL FROM:<bad@origin.example>\n"
	"S: 451 4.3.0 temporary lookup failure\n"
	"= MESSAGE_DONE\n"
	"R0: 451 4.3.0 temporary lookup failure\n"
	"R1: 451 4.3.0 temporary lookup failure\n"
	"M: 451 4.3.0 temporary lookup failure\n";

static const char conv_no_rcpt_pipelined[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: RCPT TO:<b@d.example>\n"
	"C: DATA\n"
	"S: 250 2.1.0 Ok\n"
	"S: 550 5.1.1 unknown a\n"
	"S: 450 4.1.1 try b later\n"
	"S: 554 5.5.1 Error: no valid recipients\n"
	"= MESSAGE_DONE\n"
	"R0: 550 5.1.1 unknown a\n"
	"R1: 450 4.1.1 try b later\n"
	"M: 450 4.1.1 try b later\n"
	"> quit\n"
	"C: QUIT\n"
	"S: 221 2.0.0 Bye\n"
	"= CLOSED\n";

static const char conv_no_rcpt_plain[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	GREET_EHLO_PLAIN
	"> start\n"
	"C: MAIL FROM:<s@o.example>\n"
	"S: 250 ok\n"
	"C: RCPT TO:<a@d.example>\n"
	"S: 550 5.1.1 unknown\n"
	"= MESSAGE_DONE\n"
	"R0: 550 5.1.1 unknown\n"
	"M: 550 5.1.1 unknown\n"
	"> rset\n"
	"C: RSET\n"
	"S: 250 ok\n"
	"= READY\n";

/* A non-conforming server says 354 with no recipient: a lone dot ends it. */
static const char conv_354_without_rcpt[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 550 5.1.1 unknown\n"
	"S: 354 go ahead anyway\n"
	"C: .\n"
	"= WANT_INPUT\n"
	"S: 554 5.5.1 no recipients\n"
	"= MESSAGE_DONE\n"
	"R0: 550 5.1.1 unknown\n"
	"M: 550 5.1.1 unknown\n";

static const char conv_data_rejected[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	"T: c@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: RCPT TO:<b@d.example>\n"
	"C: RCPT TO:<c@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 550 5.1.1 no b\n"
	"S: 250 ok\n"
	"S: 451 4.3.0 data refused for now\n"
	"= MESSAGE_DONE\n"
	"R0: 451 4.3.0 data refused for now\n"
	"R1: 550 5.1.1 no b\n"
	"R2: 451 4.3.0 data refused for now\n"
	"M: 451 4.3.0 data refused for now\n";

/* smtp_client_next: the final reply after the dot ends the transaction
 * (whatever its code), so the next message starts with MAIL at once, no
 * RSET round trip; a message refused before anything went out needs none
 * either. */
static const char conv_next_after_final[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: 7BIT 10\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=10\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 250 2.1.0 Ok\n"
	"S: 250 2.1.5 Ok\n"
	"S: 354 go\n"
	"= SEND_BODY\n"
	"> body\n"
	"C: .\n"
	"S: 250 2.0.0 Ok: queued as A1\n"
	"= MESSAGE_DONE\n"
	"R0: 250 2.0.0 Ok: queued as A1\n"
	"> next\n"
	"= READY\n"
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=10\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 250 2.1.0 Ok\n"
	"S: 250 2.1.5 Ok\n"
	"S: 354 go\n"
	"> body\n"
	"C: .\n"
	"S: 554 5.7.1 content rejected\n"
	"= MESSAGE_DONE\n"
	"R0: 554 5.7.1 content rejected\n"
	"> next\n"
	"= READY\n"
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=10\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 250 2.1.0 Ok\n"
	"S: 250 2.1.5 Ok\n"
	"S: 354 go\n"
	"> body\n"
	"C: .\n"
	"S: 451 4.3.0 try again\n"
	"= MESSAGE_DONE\n"
	"R0: 451 4.3.0 try again\n"
	"> next\n"
	"= READY\n"
	"> quit\n"
	"C: QUIT\n"
	"S: 221 2.0.0 Bye\n"
	"= CLOSED\n";

/* smtp_client_next while a transaction is still open upstream: the RCPTs
 * all refused (DATA refused), MAIL refused, DATA refused with a recipient
 * accepted, a 354 answered with a lone dot; each time RSET goes out and its
 * 250 gives READY. A refused RSET fails the connection as before. */
static const char conv_next_rsets_open[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 250 2.1.0 Ok\n"
	"S: 550 5.1.1 unknown\n"
	"S: 554 5.5.1 Error: no valid recipients\n"
	"= MESSAGE_DONE\n"
	"R0: 550 5.1.1 unknown\n"
	"> next\n"
	"C: RSET\n"
	"= WANT_INPUT\n"
	"S: 250 2.0.0 Ok\n"
	"= READY\n"
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 553 5.7.1 sender rejected\n"
	"S: 503 5.5.1 need MAIL\n"
	"S: 503 5.5.1 need MAIL\n"
	"= MESSAGE_DONE\n"
	"R0: 553 5.7.1 sender rejected\n"
	"> next\n"
	"C: RSET\n"
	"S: 250 2.0.0 Ok\n"
	"= READY\n"
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 250 2.1.0 Ok\n"
	"S: 250 2.1.5 Ok\n"
	"S: 451 4.3.0 data refused for now\n"
	"= MESSAGE_DONE\n"
	"R0: 451 4.3.0 data refused for now\n"
	"> next\n"
	"C: RSET\n"
	"S: 250 2.0.0 Ok\n"
	"= READY\n"
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 550 5.1.1 unknown\n"
	"S: 354 go ahead anyway\n"
	"C: .\n"
	"= WANT_INPUT\n"
	"S: 554 5.5.1 no recipients\n"
	"= MESSAGE_DONE\n"
	"> next\n"
	"C: RSET\n"
	"S: 500 5.5.2 what?\n"
	"= FAILED\n"
	"X: 500 5.5.2 what?\n";

/* A message refused before anything went out (BINARYMIME) leaves the
 * upstream idle: next is READY without RSET, and the next message starts. */
static const char conv_next_after_refusal[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: BINARYMIME 5\n"
	GREET_EHLO_PIPE
	"> start\n"
	"= MESSAGE_DONE\n"
	"R0: 554 5.6.3 binary content cannot be relayed: chunking to upstream is off\n"
	"> next\n"
	"= READY\n"
	"> quit\n"
	"C: QUIT\n"
	"S: 221 2.0.0 Bye\n"
	"= CLOSED\n";

static const char conv_final_5xx[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: RCPT TO:<b@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 354 go\n"
	"> body\n"
	"C: .\n"
	"S: 550-5.7.1 Message rejected as spam\n"
	"S: 550-5.7.1 see https://upstream.test/why\n"
	"S: 550 5.7.1 bye\n"
	"= MESSAGE_DONE\n"
	"R0: 550 5.7.1 Message rejected as spam see https://upstream.test/why bye\n"
	"R1: 550 5.7.1 Message rejected as spam see https://upstream.test/why bye\n"
	"M: 550 5.7.1 Message rejected as spam see https://upstream.test/why bye\n";

/* 421 in the middle of the pipelined replies: every recipient without a
 * final result gets it, the refused one keeps its own. */
static const char conv_421_mid_transaction[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	"T: c@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: RCPT TO:<b@d.example>\n"
	"C: RCPT TO:<c@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 550 5.1.1 no b\n"
	"S: 421 4.4.2 upstream.test Error: timeout exceeded\n"
	"S: 250 these bytes are never read\n"
	"= CLOSED\n"
	"R0: 421 4.4.2 upstream.test Error: timeout exceeded\n"
	"R1: 550 5.1.1 no b\n"
	"R2: 421 4.4.2 upstream.test Error: timeout exceeded\n"
	"M: 421 4.4.2 upstream.test Error: timeout exceeded\n"
	"X: 421 4.4.2 upstream.test Error: timeout exceeded\n";

static const char conv_421_final[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 354 go\n"
	"> body\n"
	"C: .\n"
	"S: 421 4.3.0 shutting down\n"
	"= CLOSED\n"
	"R0: 421 4.3.0 shutting down\n";

/* The upstream gives up while the body is on its way. */
static const char conv_421_during_body[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: RCPT TO:<b@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 452 4.5.3 too many\n"
	"S: 354 go\n"
	"= SEND_BODY\n"
	"S: 421 4.4.2 timeout\n"
	"= CLOSED\n"
	"> body\n"
	"= CLOSED\n"
	"R0: 421 4.4.2 timeout\n"
	"R1: 452 4.5.3 too many\n";

static const char conv_421_idle[] =
	GREET_EHLO_PIPE
	"S: 421-4.4.2 mx.upstream.test Error: timeout exceeded\n"
	"S: 421 4.4.2 closing\n"
	"= CLOSED\n"
	"X: 421 4.4.2 mx.upstream.test Error: timeout exceeded closing\n";

static const char conv_rset_refused[] =
	GREET_EHLO_PIPE
	"> rset\n"
	"C: RSET\n"
	"S: 502 5.5.1 no RSET today\n"
	"= FAILED\n"
	"X: 502 5.5.1 no RSET today\n";

static const char conv_quit_ready[] =
	GREET_EHLO_PIPE
	"> quit\n"
	"C: QUIT\n"
	"= WANT_INPUT\n"
	"S: 221-2.0.0 Bye\n"
	"= WANT_INPUT\n"
	"S: 221 2.0.0 Bye\n"
	"= CLOSED\n";

/* Enhanced status: only a well-formed x.y.z of the reply's class counts. */
static const char conv_enhanced_status[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	"T: c@d.example\n"
	"T: d@d.example\n"
	"T: e@d.example\n"
	"T: f@d.example\n"
	GREET_EHLO_PLAIN
	"> start\n"
	"C: MAIL FROM:<s@o.example>\n"
	"S: 250 2.1.0\n"
	"C: RCPT TO:<a@d.example>\n"
	"S: 550 4.1.1 wrong class\n"
	"C: RCPT TO:<b@d.example>\n"
	"S: 550 5.1.1234 detail too long\n"
	"C: RCPT TO:<c@d.example>\n"
	"S: 450 4.7.25\n"
	"C: RCPT TO:<d@d.example>\n"
	"S: 550\n"
	"C: RCPT TO:<e@d.example>\n"
	"S: 550 5.1.x bad\n"
	"C: RCPT TO:<f@d.example>\n"
	"S: 553 5.1.3\tTab and \\xc3\\xa9 UTF-8 and ~ kept\n"
	"= MESSAGE_DONE\n"
	"R0: 550 5.0.0 4.1.1 wrong class\n"
	"R1: 550 5.0.0 5.1.1234 detail too long\n"
	"R2: 450 4.7.25\n"
	"R3: 550 5.0.0\n"
	"R4: 550 5.0.0 5.1.x bad\n"
	"R5: 553 5.0.0 5.1.3?Tab and ?? UTF-8 and ~ kept\n";

/* Bare LF line ends are accepted. */
static const char conv_bare_lf[] =
	"s: 220-x\\n220 y\\r\\n\n"
	"C: EHLO relay.example\n"
	"s: 250-x\\n250 PIPELINING\\n\n"
	"= READY\n"
	"K: PIPELINING\n";

/* ---- malformed replies --------------------------------------------------------------- */

#define MALFORMED_AT_EHLO(name, bytes)                   \
	static const char name[] = "S: 220 x\n"          \
				   "C: EHLO relay.example\n" \
				   "s: " bytes "\n"          \
				   "= FAILED\n"              \
				   "X: 451 4.4.0 malformed reply from upstream\n";

MALFORMED_AT_EHLO(conv_bad_nul, "250 o\\0k\\r\\n")
MALFORMED_AT_EHLO(conv_bad_control, "250 o\\x01k\\r\\n")
MALFORMED_AT_EHLO(conv_bad_del, "250 ok\\x7f\\r\\n")
MALFORMED_AT_EHLO(conv_bad_bare_cr, "250 o\\rk\\r\\n")
MALFORMED_AT_EHLO(conv_bad_code_low, "199 ok\\r\\n")
MALFORMED_AT_EHLO(conv_bad_code_high, "600 ok\\r\\n")
MALFORMED_AT_EHLO(conv_bad_code_alpha, "2x0 ok\\r\\n")
MALFORMED_AT_EHLO(conv_bad_short, "25\\r\\n")
MALFORMED_AT_EHLO(conv_bad_empty, "\\r\\n")
MALFORMED_AT_EHLO(conv_bad_separator, "250_ok\\r\\n")
MALFORMED_AT_EHLO(conv_bad_mismatch, "250-x\\r\\n251 y\\r\\n")
MALFORMED_AT_EHLO(conv_bad_leading_space, " 250 ok\\r\\n")

/* Garbage in the middle of a message: the recipients get a 4xx, never 5xx. */
static const char conv_bad_mid_message[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	"T: c@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: RCPT TO:<b@d.example>\n"
	"C: RCPT TO:<c@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 550 no\n"
	"s: 25\\x00 ok\\r\\n\n"
	"= FAILED\n"
	"R0: 451 4.4.0 malformed reply from upstream\n"
	"R1: 550 5.0.0 no\n"
	"R2: 451 4.4.0 malformed reply from upstream\n"
	"M: 451 4.4.0 malformed reply from upstream\n";

/* Bytes when no reply is expected. */
static const char conv_unexpected_ready[] =
	GREET_EHLO_PIPE
	"S: 250 surprise\n"
	"= FAILED\n"
	"X: 451 4.4.0 unexpected reply from upstream\n";

/* One reply too many after the message: results stay, the connection fails. */
static const char conv_unexpected_after_done[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 354 go\n"
	"> body\n"
	"C: .\n"
	"S: 250 2.0.0 queued\n"
	"S: 250 2.0.0 queued twice\n"
	"= FAILED\n"
	"R0: 250 2.0.0 queued\n"
	"M: 250 2.0.0 queued\n"
	"X: 451 4.4.0 unexpected reply from upstream\n";

/* A reply that begins before the RSET is sent is not RSET's answer. */
static const char conv_unexpected_before_rset[] =
	GREET_EHLO_PIPE
	"s: 25\n"
	"= READY\n"
	"> rset\n"
	"C: RSET\n"
	"S: 0 ok\n"
	"= FAILED\n"
	"X: 451 4.4.0 unexpected reply from upstream\n";

/* ---- XFORWARD ---------------------------------------------------------------------- */

static const char conv_xforward[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"W: client+1.example|192.0.2.7|[helo=x y]|ESMTP\n"
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250-x\n"
	"S: 250-PIPELINING\n"
	"S: 250 XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT\n"
	"> start\n"
	"C: XFORWARD NAME=client+2B1.example ADDR=192.0.2.7 HELO=[helo+3Dx+20y] PROTO=ESMTP\n"
	"C: MAIL FROM:<s@o.example>\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 250 2.0.0 Ok\n"
	"S: 250 2.1.0 Ok\n"
	"S: 250 2.1.5 Ok\n"
	"S: 354 go\n"
	"= SEND_BODY\n";

/* Only the attributes the upstream lists; empty values are [UNAVAILABLE]. */
static const char conv_xforward_subset[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"W: |2001:db8::1|h|SMTP\n"
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250-x\n"
	"S: 250 xforward name addr\n"
	"> start\n"
	"C: XFORWARD NAME=[UNAVAILABLE] ADDR=2001:db8::1\n"
	"S: 250 Ok\n"
	"C: MAIL FROM:<s@o.example>\n"
	"S: 250 Ok\n"
	"C: RCPT TO:<a@d.example>\n"
	"= WANT_INPUT\n";

/* XFORWARD refused with pipelining: MAIL and RCPT were already accepted
 * upstream, so a 354 can only be cancelled by dropping the connection. */
static const char conv_xforward_refused_pipelined[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"W: n|a|h|p\n"
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250-x\n"
	"S: 250-PIPELINING\n"
	"S: 250 XFORWARD NAME\n"
	"> start\n"
	"C: XFORWARD NAME=n\n"
	"C: MAIL FROM:<s@o.example>\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 550 5.7.0 not authorized\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 354 go\n"
	"= FAILED\n"
	"R0: 550 5.7.0 not authorized\n"
	"M: 550 5.7.0 not authorized\n"
	"X: 451 4.4.0 upstream accepted data for an abandoned transaction\n";

static const char conv_xforward_refused_plain[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"W: n|a|h|p\n"
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250-x\n"
	"S: 250 XFORWARD NAME\n"
	"> start\n"
	"C: XFORWARD NAME=n\n"
	"S: 220 odd\n"
	"= MESSAGE_DONE\n"
	"R0: 451 4.5.0 unexpected XFORWARD reply from upstream\n";

/* ---- capability refusals -------------------------------------------------------------- */

static const char conv_refuse_smtputf8[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"U:\n"
	GREET_EHLO_PLAIN
	"> start\n"
	"= MESSAGE_DONE\n"
	"R0: 553 5.6.7 upstream does not support SMTPUTF8\n"
	"M: 553 5.6.7 upstream does not support SMTPUTF8\n"
	"> quit\n"
	"C: QUIT\n";

static const char conv_refuse_8bit[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	"B: 8BITMIME 5\n"
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250 x\n"
	"> start\n"
	"= MESSAGE_DONE\n"
	"R0: 554 5.6.3 upstream does not support 8BITMIME\n"
	"R1: 554 5.6.3 upstream does not support 8BITMIME\n";

static const char conv_refuse_binary[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: BINARYMIME 5\n"
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250-x\n"
	"S: 250-CHUNKING\n"
	"S: 250 BINARYMIME\n"
	"> start\n"
	"= MESSAGE_DONE\n"
	"R0: 554 5.6.3 binary content cannot be relayed: chunking to upstream is off\n"
	"> start\n"
	"= MESSAGE_DONE\n";

static const char conv_refuse_size[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: 7BIT 1001\n"
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250-x\n"
	"S: 250 SIZE 1000\n"
	"> start\n"
	"= MESSAGE_DONE\n"
	"R0: 552 5.3.4 message too big for upstream\n";

/* SMTPUTF8 and 8BITMIME offered: the MAIL parameters say so. */
static const char conv_utf8_params[] =
	"F: s\\xc3\\xa9@o.example\n"
	"T: \\xc3\\xa9@d.example\n"
	"T: bad\\r\\n@d.example\n"
	"U:\n"
	"B: 8BITMIME 1000\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s\\xc3\\xa9@o.example> SIZE=1000 BODY=8BITMIME SMTPUTF8\n"
	"C: RCPT TO:<\\xc3\\xa9@d.example>\n"
	"C: DATA\n"
	"R1: 553 5.1.3 stored recipient address cannot be relayed\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 354 go\n"
	"= SEND_BODY\n"
	"R0: 250 2.0.0 ok\n";

/* Addresses that cannot go on a command line are refused one by one; when
 * none is left, nothing is sent at all. */
static const char conv_unsendable_rcpts[] =
	"F: s@o.example\n"
	"T: a\\x01@d.example\n"
	"T: <x>@d.example\n"
	"T: \\xc3\\xa9@d.example\n"
	"T:\n"
	GREET_EHLO_PIPE
	"> start\n"
	"= MESSAGE_DONE\n"
	"R0: 553 5.1.3 stored recipient address cannot be relayed\n"
	"R1: 553 5.1.3 stored recipient address cannot be relayed\n"
	"R2: 553 5.1.3 stored recipient address cannot be relayed\n"
	"R3: 553 5.1.3 stored recipient address cannot be relayed\n"
	"M: 553 5.1.3 stored recipient address cannot be relayed\n"
	"> rset\n"
	"C: RSET\n"
	"S: 250 ok\n"
	"= READY\n";

static const char conv_unsendable_sender[] =
	"F: s\\r\\nRCPT TO:<x@y>\n"
	"T: a@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"= MESSAGE_DONE\n"
	"R0: 553 5.1.7 stored sender address cannot be relayed\n";

/* The first recipient refused locally: replies map to the others. */
static const char conv_unsendable_first[] =
	"F: s@o.example\n"
	"T: a\\x7f@d.example\n"
	"T: b@d.example\n"
	"T: c\\n@d.example\n"
	"T: d@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<b@d.example>\n"
	"C: RCPT TO:<d@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 550 5.1.1 no b\n"
	"S: 250 ok d\n"
	"S: 354 go\n"
	"= SEND_BODY\n"
	"R0: 553 5.1.3 stored recipient address cannot be relayed\n"
	"R1: 550 5.1.1 no b\n"
	"R2: 553 5.1.3 stored recipient address cannot be relayed\n"
	"R3: 250 2.0.0 ok d\n";

/* Reply codes a command cannot get are a broken upstream: a 4xx failure. */
static const char conv_ehlo_354[] =
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 354 what\n"
	"= FAILED\n"
	"X: 451 4.4.0 unexpected reply code from upstream\n";

static const char conv_rset_354[] =
	GREET_EHLO_PIPE
	"> rset\n"
	"C: RSET\n"
	"S: 354 what\n"
	"= FAILED\n"
	"X: 451 4.4.0 unexpected reply code from upstream\n";

static const char conv_final_354[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 354 go\n"
	"> body\n"
	"C: .\n"
	"S: 354 again?\n"
	"= FAILED\n"
	"R0: 451 4.4.0 unexpected reply code from upstream\n";

static const char conv_rcpt_354[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	GREET_EHLO_PLAIN
	"> start\n"
	"C: MAIL FROM:<s@o.example>\n"
	"S: 250 ok\n"
	"C: RCPT TO:<a@d.example>\n"
	"S: 354 eh\n"
	"= FAILED\n"
	"R0: 451 4.4.0 unexpected reply code from upstream\n";

static const char conv_data_250[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	GREET_EHLO_PLAIN
	"> start\n"
	"C: MAIL FROM:<s@o.example>\n"
	"S: 250 ok\n"
	"C: RCPT TO:<a@d.example>\n"
	"S: 250 ok\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"= FAILED\n"
	"R0: 451 4.4.0 unexpected reply code from upstream\n";

/* SIZE with junk or a number past 64 bits. */
static const char conv_size_junk[] =
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250-x\n"
	"S: 250 SIZE 12k\n"
	"K: SIZE\n";

static const char conv_size_huge[] =
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250-x\n"
	"S: 250 SIZE 99999999999999999999999\n"
	"K: SIZE=18446744073709551615\n";

/* XFORWARD offered with no attribute we send: no XFORWARD command. */
static const char conv_xforward_no_attrs[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"W: n|a|h|p\n"
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250-x\n"
	"S: 250 XFORWARD SOURCE PORT IDENT\n"
	"K: XFORWARD\n"
	"> start\n"
	"C: MAIL FROM:<s@o.example>\n";

/* An address over 256 bytes cannot be sent. */
static const char conv_path_too_long[] =
	"F: s@o.example\n"
	"T: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@"
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	"bbbbbbbbbbbbbbbbbbbbbbb.example\n"
	"T: ok@d.example\n"
	GREET_EHLO_PLAIN
	"> start\n"
	"C: MAIL FROM:<s@o.example>\n"
	"R0: 553 5.1.3 stored recipient address cannot be relayed\n";

/* EOF in the middle of the replies: unfinished recipients get a 4xx. */
static const char conv_lost_mid_message[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	"T: c@d.example\n"
	GREET_EHLO_PIPE
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: RCPT TO:<b@d.example>\n"
	"C: RCPT TO:<c@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 550 5.1.1 no b\n"
	"s: 25\n"
	"> lost\n"
	"= FAILED\n"
	"R0: 451 4.4.2 lost connection with upstream\n"
	"R1: 550 5.1.1 no b\n"
	"R2: 451 4.4.2 lost connection with upstream\n"
	"M: 451 4.4.2 lost connection with upstream\n"
	"X: 451 4.4.2 lost connection with upstream\n"
	"> lost\n"
	"= FAILED\n";

/* EOF after QUIT is how a session ends; after a finished message it only
 * fails the connection. */
static const char conv_lost_after_quit[] =
	GREET_EHLO_PIPE
	"> quit\n"
	"C: QUIT\n"
	"> lost\n"
	"= CLOSED\n";

static const char conv_lost_after_done[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	GREET_EHLO_PLAIN
	"> start\n"
	"C: MAIL FROM:<s@o.example>\n"
	"S: 550 5.7.1 no\n"
	"= MESSAGE_DONE\n"
	"> lost\n"
	"= FAILED\n"
	"R0: 550 5.7.1 no\n"
	"M: 550 5.7.1 no\n";

/* ---- STARTTLS (RFC 3207) --------------------------------------------------------------- */

#define GREET_EHLO_STARTTLS                      \
	"S: 220 mx.upstream.test ESMTP\n"        \
	"C: EHLO relay.example\n"                \
	"S: 250-mx.upstream.test\n"              \
	"S: 250-PIPELINING\n"                    \
	"S: 250-SIZE 1000\n"                     \
	"S: 250 STARTTLS\n"

/* STARTTLS when offered; after the handshake what the first EHLO offered
 * is forgotten, EHLO goes again, and a second STARTTLS offer is ignored. */
static const char conv_tls_opportunistic[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"L: opportunistic\n"
	GREET_EHLO_STARTTLS
	"C: STARTTLS\n"
	"= WANT_INPUT\n"
	"S: 220 2.0.0 Ready to start TLS\n"
	"= START_TLS\n"
	"> tls\n"
	"C: EHLO relay.example\n"
	"= WANT_INPUT\n"
	"K: \n"
	"S: 250-mx.upstream.test\n"
	"S: 250-8BITMIME\n"
	"S: 250 STARTTLS\n"
	"= READY\n"
	"K: 8BITMIME STARTTLS\n"
	"> start\n"
	"C: MAIL FROM:<s@o.example>\n"
	"S: 250 ok\n"
	"C: RCPT TO:<a@d.example>\n"
	"S: 250 ok\n"
	"C: DATA\n"
	"S: 354 go\n"
	"> body\n"
	"C: .\n"
	"S: 250 2.0.0 queued\n"
	"= MESSAGE_DONE\n"
	"R0: 250 2.0.0 queued\n";

/* Cleartext behind the 220 in the same read (injected, or a server that
 * pipelines wrongly) is never read: had it been, "250 injected" would
 * answer the EHLO sent after the handshake. */
static const char conv_tls_injection[] =
	"L: required\n"
	GREET_EHLO_STARTTLS
	"C: STARTTLS\n"
	"S: 220 2.0.0 Ready to start TLS\n"
	"S: 250-injected\n"
	"S: 250 XFORWARD NAME ADDR\n"
	"= START_TLS\n"
	"> tls\n"
	"C: EHLO relay.example\n"
	"= WANT_INPUT\n"
	"S: 250-mx.upstream.test\n"
	"S: 250 PIPELINING\n"
	"= READY\n"
	"K: PIPELINING\n";

static const char conv_tls_required_not_offered[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"L: required\n"
	"S: 220 mx.upstream.test ESMTP\n"
	"C: EHLO relay.example\n"
	"S: 250-mx.upstream.test\n"
	"S: 250 PIPELINING\n"
	"= FAILED\n"
	"X: 451 4.7.4 TLS is required, but upstream did not offer STARTTLS\n";

/* HELO has no extensions, so no STARTTLS either. */
static const char conv_tls_required_helo[] =
	"L: required\n"
	"S: 220 old.upstream.test SMTP\n"
	"C: EHLO relay.example\n"
	"S: 502 5.5.2 Error: command not recognized\n"
	"C: HELO relay.example\n"
	"S: 250 old.upstream.test\n"
	"= FAILED\n"
	"X: 451 4.7.4 TLS is required, but upstream did not offer STARTTLS\n";

static const char conv_tls_opportunistic_not_offered[] =
	"L: opportunistic\n"
	GREET_EHLO_PLAIN
	"K: 8BITMIME\n";

static const char conv_tls_none[] =
	"L: none\n"
	GREET_EHLO_STARTTLS
	"= READY\n"
	"K: PIPELINING SIZE=1000 STARTTLS\n"
	"> quit\n"
	"C: QUIT\n"
	"S: 221 bye\n"
	"= CLOSED\n";

/* Refused STARTTLS: opportunistic carries on in clear. */
static const char conv_tls_refused_opportunistic[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"L: opportunistic\n"
	GREET_EHLO_STARTTLS
	"C: STARTTLS\n"
	"S: 454 4.7.0 TLS not available due to local problem\n"
	"= READY\n"
	"K: PIPELINING SIZE=1000 STARTTLS\n"
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=0\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 354 go\n"
	"> body\n"
	"C: .\n"
	"S: 250 2.0.0 queued\n"
	"= MESSAGE_DONE\n";

static const char conv_tls_refused_required_4xx[] =
	"L: required\n"
	GREET_EHLO_STARTTLS
	"C: STARTTLS\n"
	"S: 454 4.7.0 TLS not available due to local problem\n"
	"= FAILED\n"
	"X: 454 4.7.0 TLS not available due to local problem\n";

/* A permanent refusal still only defers: another relay, or a later
 * attempt, may do TLS. */
static const char conv_tls_refused_required_5xx[] =
	"L: required\n"
	GREET_EHLO_STARTTLS
	"C: STARTTLS\n"
	"S: 502 5.5.1 no\n"
	"= FAILED\n"
	"X: 451 4.7.4 TLS is required, but upstream refused STARTTLS\n";

static const char conv_tls_250[] =
	"L: required\n"
	GREET_EHLO_STARTTLS
	"C: STARTTLS\n"
	"S: 250 sure\n"
	"= FAILED\n"
	"X: 451 4.4.0 unexpected reply code from upstream\n";

static const char conv_tls_421[] =
	"L: opportunistic\n"
	GREET_EHLO_STARTTLS
	"C: STARTTLS\n"
	"S: 421 4.3.2 shutting down\n"
	"= CLOSED\n"
	"X: 421 4.3.2 shutting down\n";

static const char conv_tls_handshake_failed[] =
	"L: opportunistic\n"
	GREET_EHLO_STARTTLS
	"C: STARTTLS\n"
	"S: 220 go ahead\n"
	"= START_TLS\n"
	"> tlsfail\n"
	"= FAILED\n"
	"X: 451 4.7.5 TLS handshake failed\n";

/* ---- conversations built in code -------------------------------------------------------- */

/* XFORWARD lines stay under 512 bytes; a value that cannot fit one line is
 * sent as [UNAVAILABLE]. */
static void test_xforward_split(bool refuse_first)
{
	char name[801], helo[251], addr[251];
	memset(name, '+', 200);
	name[200] = '\0'; /* 600 bytes encoded: too long for a line */
	memset(helo, 'h', 250);
	helo[250] = '\0';
	memset(addr, 'a', 250);
	addr[250] = '\0';
	struct test_buf s = { 0 };
	test_buf_str(&s, "F: s@o.example\nT: r@d.example\nW: ");
	test_buf_str(&s, name);
	test_buf_str(&s, "|");
	test_buf_str(&s, addr);
	test_buf_str(&s, "|");
	test_buf_str(&s, helo);
	test_buf_str(&s, "|ESMTP\n");
	test_buf_str(&s, "S: 220 x\nC: EHLO relay.example\nS: 250-x\nS: 250-PIPELINING\n"
		     "S: 250 XFORWARD NAME ADDR HELO PROTO\n> start\n");
	test_buf_str(&s, "C: XFORWARD NAME=[UNAVAILABLE] ADDR=");
	test_buf_str(&s, addr);
	test_buf_str(&s, "\nC: XFORWARD HELO=");
	test_buf_str(&s, helo);
	test_buf_str(&s, " PROTO=ESMTP\nC: MAIL FROM:<s@o.example>\nC: RCPT TO:<r@d.example>\n"
		     "C: DATA\n");
	if (refuse_first)
		test_buf_str(&s, "S: 550 5.7.0 no\nS: 250 ok\nS: 250 ok\nS: 550 5.1.1 no\nS: 503 5.5.1 no\n"
			     "= MESSAGE_DONE\nR0: 550 5.7.0 no\nM: 550 5.7.0 no\n");
	else
		test_buf_str(&s, "S: 250 ok\nS: 250 ok\nS: 250 ok\nS: 250 ok\nS: 354 go\n"
			     "= SEND_BODY\n");
	test_buf_put(&s, "", 1);
	run_script(refuse_first ? "xforward_split_refused" : "xforward_split",
		   (const char *)s.data);

	free(s.data);
}

/* A reply line at the limit is fine, one byte more is malformed. */
static void test_long_lines(void)
{
	size_t limit = SMTP_CLIENT_REPLY_LINE_MAX_BYTES - 2; /* without CRLF */
	for (int over = 0; over <= 1; over++) {
		struct test_buf s = { 0 };
		test_buf_str(&s, "S: 220 x\nC: EHLO relay.example\nS: 250-");
		for (size_t i = 4; i < limit + (size_t)over; i++)
			test_buf_put(&s, i % 60 ? "x" : " ", 1);
		test_buf_str(&s, over ? "\n= FAILED\nX: 451 4.4.0 malformed reply from upstream\n"
				 : "\nS: 250 PIPELINING\n= READY\nK: PIPELINING\n");
		test_buf_put(&s, "", 1);
		struct conv *cv = conv_load(over ? "line_too_long" : "line_at_limit",
					    (const char *)s.data);
		conv_check(cv, 97, 1);
		conv_free(cv);
		free(s.data);
	}
	/* A reply of too many lines is malformed too, not an endless read. */
	struct test_buf s = { 0 };
	test_buf_str(&s, "S: 220 x\nC: EHLO relay.example\n");
	for (int i = 0; i < 1000; i++)
		test_buf_str(&s, "S: 250-X\n");
	test_buf_str(&s, "= FAILED\nX: 451 4.4.0 malformed reply from upstream\n");
	test_buf_put(&s, "", 1);
	struct conv *cv = conv_load("too_many_lines", (const char *)s.data);
	conv_check(cv, 13, 1);
	conv_free(cv);
	free(s.data);
}

/*
 * 1000 recipients through a small out buffer: the RCPTs go out in rounds,
 * every command line whole, replies matched in order across rounds.
 */
static void test_many_recipients(size_t out_cap, bool pipelined)
{
	enum { N = 1000 };
	struct test_buf s = { 0 };
	char line[128];
	snprintf(line, sizeof(line), "O: %zu\nF: s@o.example\n", out_cap);
	test_buf_str(&s, line);
	for (int i = 0; i < N; i++) {
		snprintf(line, sizeof(line), "T: user%04d@dest.example\n", i);
		test_buf_str(&s, line);
	}
	test_buf_str(&s, "S: 220 x\nC: EHLO relay.example\nS: 250-x\n");
	test_buf_str(&s, pipelined ? "S: 250 PIPELINING\n> start\n" : "S: 250 8BITMIME\n> start\n");
	test_buf_str(&s, "C: MAIL FROM:<s@o.example>\n");
	if (pipelined) {
		for (int i = 0; i < N; i++) {
			snprintf(line, sizeof(line), "C: RCPT TO:<user%04d@dest.example>\n", i);
			test_buf_str(&s, line);
		}
		test_buf_str(&s, "C: DATA\n= WANT_INPUT\nS: 250 ok\n");
		for (int i = 0; i < N; i++)
			test_buf_str(&s, i % 7 == 3 ? "S: 450 4.2.1 later\n" : "S: 250 2.1.5 ok\n");
		test_buf_str(&s, "S: 354 go\n");
	} else {
		test_buf_str(&s, "S: 250 ok\n");
		for (int i = 0; i < N; i++) {
			snprintf(line, sizeof(line), "C: RCPT TO:<user%04d@dest.example>\n", i);
			test_buf_str(&s, line);
			test_buf_str(&s, i % 7 == 3 ? "S: 450 4.2.1 later\n" : "S: 250 2.1.5 ok\n");
		}
		test_buf_str(&s, "C: DATA\nS: 354 go\n");
	}
	test_buf_str(&s, "= SEND_BODY\n> body\nC: .\nS: 250 2.0.0 queued\n= MESSAGE_DONE\n");
	for (int i = 0; i < N; i += 1) {
		snprintf(line, sizeof(line), "R%d: %s\n", i,
			 i % 7 == 3 ? "450 4.2.1 later" : "250 2.0.0 queued");
		test_buf_str(&s, line);
	}
	test_buf_put(&s, "", 1);
	char name[64];
	snprintf(name, sizeof(name), "rcpt_1000_out_%zu_%s", out_cap, pipelined ? "pipe" : "plain");
	struct conv *cv = conv_load(name, (const char *)s.data);
	conv_check(cv, 211, pipelined ? 1 : 97);
	conv_free(cv);
	free(s.data);
}

/* Rounds with replies in between: the second round goes out only after the
 * first was sent, and replies to round one may come before it. */
static void test_rounds_interleaved(void)
{
	struct smtp_client c;
	smtp_client_init(&c, span_make("relay.example", 13));
	enum { N = 60 };
	char names[N][32];
	struct span rcpts[N];
	for (int i = 0; i < N; i++) {
		int n = snprintf(names[i], sizeof(names[i]), "r%02d@d.example", i);
		rcpts[i] = span_make(names[i], (size_t)n);
	}
	struct smtp_client_message m = { .reverse_path = span_make("s@o.example", 11),
					 .recipients = rcpts,
					 .recipient_count = N };
	struct smtp_client_result res[N];
	uint8_t *mem = malloc(600);
	REQUIRE(mem != NULL);
	struct smtp_out out = { mem, 0, 600 };
	const char *hello = "220 x\r\n250-x\r\n250 PIPELINING\r\n";
	CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)hello, 7, &out), SMTP_CLIENT_WANT_INPUT);
	out.len = 0;
	CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)hello + 7, strlen(hello) - 7, &out),
		   SMTP_CLIENT_READY);
	CHECK_EQ_U(out.len, 0);
	CHECK_EQ_U(smtp_client_start_message(&c, &m, res, &out), SMTP_CLIENT_WANT_INPUT);
	size_t first = out.len;
	CHECK(first > 0 && first <= 600);
	CHECK(memcmp(mem, "MAIL FROM:<s@o.example>\r\n", 25) == 0);
	/* Replies to what was sent, before the caller reports the send: no
	 * new round is written on input. */
	uint32_t sent_cmds = 0;
	for (size_t i = 0; i < first; i++)
		sent_cmds += mem[i] == '\n';
	out.len = 0;
	const char *ok = "250 ok\r\n";
	for (uint32_t i = 0; i < sent_cmds; i++)
		CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)ok, 8, &out),
			   SMTP_CLIENT_WANT_INPUT);
	CHECK_EQ_U(out.len, 0);
	/* Each feed with n = 0 writes the next round. */
	unsigned rounds = 0;
	for (;;) {
		CHECK_EQ_U(smtp_client_feed(&c, NULL, 0, &out), SMTP_CLIENT_WANT_INPUT);
		if (out.len == 0)
			break;
		uint32_t k = 0;
		for (size_t i = 0; i < out.len; i++)
			k += mem[i] == '\n';
		CHECK(out.len <= 600 && mem[out.len - 1] == '\n');
		sent_cmds += k;
		rounds++;
		bool data = out.len >= 6 && memcmp(mem + out.len - 6, "DATA\r\n", 6) == 0;
		out.len = 0;
		for (uint32_t i = 0; i < k; i++) {
			const char *rep = (data && i + 1 == k) ? "354 go\r\n" : ok;
			enum smtp_client_status st =
				smtp_client_feed(&c, (const uint8_t *)rep, 8, &out);
			CHECK_EQ_U(st, (data && i + 1 == k) ? SMTP_CLIENT_SEND_BODY
							   : SMTP_CLIENT_WANT_INPUT);
		}
		if (data)
			break;
	}
	CHECK(rounds >= 2);
	CHECK_EQ_U(sent_cmds, N + 2);
	CHECK_EQ_U(smtp_client_body_sent(&c, &out), SMTP_CLIENT_WANT_INPUT);
	CHECK_MEM(mem, out.len, ".\r\n", 3);
	out.len = 0;
	CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)"250 2.0.0 ok\r\n", 14, &out),
		   SMTP_CLIENT_MESSAGE_DONE);
	for (int i = 0; i < N; i++)
		CHECK_EQ_U(res[i].code, 250);
	free(mem);
}

/* ---- upstreams that answer ahead ------------------------------------------------------ */

/*
 * The caller sends out only after feed returns, so a reply cannot answer a
 * command the client wrote during the same feed call. A relay that answers
 * ahead anyway (no PIPELINING, a burst of 250s in one read), or whose
 * replies outrun a send that has not completed, fails the connection with a
 * 4xx for every unfinished recipient; nothing it sends reaches an assertion.
 */

#define AHEAD_TEXT "451 4.5.0 upstream replied before the command was sent"
#define FULL_TEXT "451 4.5.0 upstream replied ahead: output buffer full"
#define AHEAD_RCPTS 200

struct ahead {
	struct smtp_client c;
	struct smtp_out out;
	enum smtp_client_status st;
	struct smtp_client_message m;
	struct smtp_client_result res[AHEAD_RCPTS];
	struct span rcpts[AHEAD_RCPTS];
	char names[AHEAD_RCPTS][32];
};

/* "Sends" out and tells the client, as core/forward does, until it has
 * nothing more to write. */
static void ahead_drain(struct ahead *a)
{
	unsigned rounds = 0;
	while (a->out.len > 0 && a->st != SMTP_CLIENT_FAILED && a->st != SMTP_CLIENT_CLOSED) {
		REQUIRE(a->out.len <= a->out.cap);
		a->out.len = 0;
		a->st = smtp_client_feed(&a->c, NULL, 0, &a->out);
		REQUIRE(++rounds < 10000);
	}
}

/* Feeds n bytes from an exactly sized heap block; sends out afterwards
 * unless the caller's send is stuck. */
static void ahead_feed(struct ahead *a, const void *p, size_t n, bool send)
{
	uint8_t *chunk = malloc(n ? n : 1);
	REQUIRE(chunk != NULL);
	memcpy(chunk, p, n);
	a->st = smtp_client_feed(&a->c, chunk, n, &a->out);
	free(chunk);
	REQUIRE(a->out.len <= a->out.cap);
	if (send)
		ahead_drain(a);
}

static void ahead_feed_str(struct ahead *a, const char *s)
{
	ahead_feed(a, s, strlen(s), true);
}

/* A client with an out block of exactly out_cap bytes, READY after the
 * given EHLO reply (whose keywords decide PIPELINING), and a message of
 * rcpt_count recipients ready to start. */
static struct ahead *ahead_new(size_t out_cap, const char *ehlo_reply, uint32_t rcpt_count)
{
	REQUIRE(rcpt_count >= 1 && rcpt_count <= AHEAD_RCPTS);
	struct ahead *a = calloc(1, sizeof(*a));
	REQUIRE(a != NULL);
	a->out.buf = malloc(out_cap);
	REQUIRE(a->out.buf != NULL);
	a->out.cap = out_cap;
	for (uint32_t i = 0; i < rcpt_count; i++) {
		int n = snprintf(a->names[i], sizeof(a->names[i]), "user%04u@dest.example", i);
		a->rcpts[i] = span_make(a->names[i], (size_t)n);
	}
	a->m.reverse_path = span_make("s@o.example", 11);
	a->m.recipients = a->rcpts;
	a->m.recipient_count = rcpt_count;
	smtp_client_init(&a->c, span_make("relay.example", 13));
	a->st = SMTP_CLIENT_WANT_INPUT;
	ahead_feed_str(a, "220 x\r\n");
	REQUIRE(a->st == SMTP_CLIENT_WANT_INPUT);
	ahead_feed_str(a, ehlo_reply);
	REQUIRE(a->st == SMTP_CLIENT_READY);
	return a;
}

static void ahead_free(struct ahead *a)
{
	free(a->out.buf);
	free(a);
}

/* Starts the message; out is not sent yet. */
static void ahead_start(struct ahead *a)
{
	a->st = smtp_client_start_message(&a->c, &a->m, a->res, &a->out);
}

static bool result_is(const struct smtp_client_result *r, const char *want)
{
	char got[512];
	result_format(r, got, sizeof(got));
	return strcmp(got, want) == 0;
}

/* FAILED, a 4xx connection result, and every recipient a 4xx. */
static bool ahead_failed_4xx(const struct ahead *a)
{
	if (a->st != SMTP_CLIENT_FAILED || smtp_client_conn_result(&a->c)->code / 100 != 4)
		return false;
	for (uint32_t i = 0; i < a->m.recipient_count; i++)
		if (a->res[i].code / 100 != 4)
			return false;
	return true;
}

/* 300 x 250 from a relay without PIPELINING, for a 200-recipient message,
 * right after MAIL went out: fed whole, byte by byte and split in two at
 * every byte. Whole or split, one read holds a reply to a RCPT written in
 * that same feed call; byte by byte, each reply comes after its command was
 * sent, and the 250 to DATA is the failure. */
static void test_ahead_rcpt_burst(void)
{
	struct test_buf flight = { 0 };
	for (int i = 0; i < 300; i++)
		test_buf_str(&flight, "250 2.1.5 ok\r\n");
	unsigned bad = 0, runs = 0;
	for (size_t at = 0; at <= flight.len; at++) {
		/* at 0: whole; at flight.len: byte by byte; else two pieces */
		struct ahead *a = ahead_new(4096, "250-x\r\n250 8BITMIME\r\n", AHEAD_RCPTS);
		ahead_start(a);
		CHECK_MEM(a->out.buf, a->out.len, "MAIL FROM:<s@o.example>\r\n", 25);
		ahead_drain(a);
		if (at == 0) {
			ahead_feed(a, flight.data, flight.len, false);
			CHECK(result_is(smtp_client_conn_result(&a->c), AHEAD_TEXT));
			CHECK(result_is(&a->res[0], AHEAD_TEXT));
			CHECK(result_is(&a->res[AHEAD_RCPTS - 1], AHEAD_TEXT));
			/* MAIL's answer wrote the first RCPT, nothing more */
			CHECK_MEM(a->out.buf, a->out.len, "RCPT TO:<user0000@dest.example>\r\n", 33);
		} else if (at == flight.len) {
			for (size_t i = 0; i < flight.len; i++)
				ahead_feed(a, flight.data + i, 1, true);
			CHECK(result_is(smtp_client_conn_result(&a->c),
					"451 4.4.0 unexpected reply code from upstream"));
		} else {
			ahead_feed(a, flight.data, at, true);
			ahead_feed(a, flight.data + at, flight.len - at, true);
		}
		runs++;
		if (!ahead_failed_4xx(a) && bad++ == 0)
			fprintf(stderr, "rcpt burst split at %zu: status %s, conn %u\n", at,
				status_name(a->st), smtp_client_conn_result(&a->c)->code);
		ahead_free(a);
	}
	CHECK_EQ_U(bad, 0);
	CHECK_EQ_U(runs, flight.len + 1);
	free(flight.data);
}

/* The caller's send of MAIL never completes while the relay answers one
 * reply per read: each reply asks for the next RCPT, which piles up in out.
 * When the next command does not fit, the connection fails; out never
 * overflows (its block is exactly out_cap bytes, under ASan). */
static void test_ahead_stuck_send(size_t out_cap)
{
	struct ahead *a = ahead_new(out_cap, "250-x\r\n250 8BITMIME\r\n", AHEAD_RCPTS);
	ahead_start(a);
	unsigned reads = 0;
	while (a->st == SMTP_CLIENT_WANT_INPUT && reads < 300) {
		ahead_feed(a, "250 2.1.5 ok\r\n", 14, false);
		reads++;
	}
	CHECK(ahead_failed_4xx(a));
	CHECK(result_is(smtp_client_conn_result(&a->c), FULL_TEXT));
	CHECK(a->out.len <= a->out.cap && a->out.len + 33 > a->out.cap);
	CHECK(reads < AHEAD_RCPTS);
	ahead_free(a);
}

/*
 * The greeting and the answer to EHLO (or to EHLO and HELO) in one read.
 * In two pieces only the split right before the EHLO answer is legitimate
 * (EHLO went out in between); byte by byte is legitimate too.
 */
static void test_ahead_hello(void)
{
	static const struct {
		const char *flight;
		size_t legit_split; /* 0: none */
		const char *whole_conn;
		enum smtp_client_status whole;
	} cases[] = {
		{ "220 x\r\n250 x\r\n", 7, AHEAD_TEXT, SMTP_CLIENT_FAILED },
		{ "220-x\r\n220 y\r\n250-x\r\n250 PIPELINING\r\n", 14, AHEAD_TEXT,
		  SMTP_CLIENT_FAILED },
		{ "220 x\r\n502 5.5.2 no\r\n250 x\r\n", 0, AHEAD_TEXT, SMTP_CLIENT_FAILED },
		{ "220 x\r\n421 4.3.2 bye\r\n", 7, "421 4.3.2 bye", SMTP_CLIENT_CLOSED },
	};
	for (size_t k = 0; k < RMX_ARRAY_LEN(cases); k++) {
		const char *f = cases[k].flight;
		size_t len = strlen(f);
		unsigned bad = 0;
		for (size_t at = 0; at <= len; at++) {
			struct smtp_client c;
			smtp_client_init(&c, span_make("relay.example", 13));
			uint8_t *mem = malloc(SMTP_CLIENT_OUT_MIN_BYTES);
			REQUIRE(mem != NULL);
			struct smtp_out out = { mem, 0, SMTP_CLIENT_OUT_MIN_BYTES };
			enum smtp_client_status st = SMTP_CLIENT_WANT_INPUT;
			size_t piece = at == len ? 1 : at == 0 ? len : at;
			for (size_t i = 0; i < len && st == SMTP_CLIENT_WANT_INPUT; ) {
				size_t n = RMX_MIN(piece, len - i);
				st = smtp_client_feed(&c, (const uint8_t *)f + i, n, &out);
				REQUIRE(out.len <= out.cap);
				out.len = 0; /* sent */
				i += n;
				if (at != len && at != 0)
					piece = len; /* two pieces */
			}
			bool legit = at == len || (at != 0 && at == cases[k].legit_split);
			enum smtp_client_status want = cases[k].whole;
			if (legit)
				want = cases[k].whole == SMTP_CLIENT_CLOSED ? SMTP_CLIENT_CLOSED
									     : SMTP_CLIENT_READY;
			bool ok = st == want;
			if (ok && !legit && at == 0)
				ok = result_is(smtp_client_conn_result(&c), cases[k].whole_conn);
			if (!ok && bad++ == 0)
				fprintf(stderr, "hello ahead %zu split at %zu: status %s\n", k, at,
					status_name(st));
			free(mem);
		}
		CHECK_EQ_U(bad, 0);
	}
}

/* A relay that says 354 with no recipient accepted gets a lone "."; its
 * answer in the same read is ahead of it. The 550 stays: it answered a
 * RCPT that was sent. */
static void test_ahead_dot_discard(void)
{
	const char *f = "250 2.1.0 ok\r\n550 5.1.1 no\r\n354 go\r\n554 5.5.1 no valid rcpt\r\n";
	for (int whole = 0; whole <= 1; whole++) {
		struct ahead *a = ahead_new(4096, "250-x\r\n250 PIPELINING\r\n", 1);
		ahead_start(a);
		ahead_drain(a);
		if (whole) {
			ahead_feed(a, f, strlen(f), false);
			CHECK_EQ_U(a->st, SMTP_CLIENT_FAILED);
			CHECK(result_is(smtp_client_conn_result(&a->c), AHEAD_TEXT));
			CHECK_MEM(a->out.buf, a->out.len, ".\r\n", 3);
		} else {
			for (size_t i = 0; f[i]; i++)
				ahead_feed(a, f + i, 1, true);
			CHECK_EQ_U(a->st, SMTP_CLIENT_MESSAGE_DONE);
		}
		CHECK(result_is(&a->res[0], "550 5.1.1 no"));
		ahead_free(a);
	}
}

/*
 * Out holds unsent bytes (a send that has not completed while the relay
 * answered ahead) when the caller asks for RSET, QUIT, a new message or the
 * final dot: the command does not fit, so the connection fails; nothing is
 * half written and results that were final stay as they were.
 */
static void test_full_out(void)
{
	/* RSET and QUIT after a finished message, out nearly full */
	for (int quit = 0; quit <= 1; quit++) {
		struct ahead *a = ahead_new(4096, "250-x\r\n250 PIPELINING\r\n", 2);
		ahead_start(a);
		ahead_drain(a);
		ahead_feed_str(a, "250 ok\r\n450 4.2.1 later\r\n450 4.2.1 later\r\n554 5.5.1 none\r\n");
		CHECK_EQ_U(a->st, SMTP_CLIENT_MESSAGE_DONE);
		a->out.len = a->out.cap - 5;
		a->st = quit ? smtp_client_quit(&a->c, &a->out) : smtp_client_rset(&a->c, &a->out);
		CHECK_EQ_U(a->out.len, a->out.cap - 5);
		CHECK(ahead_failed_4xx(a));
		CHECK(result_is(smtp_client_conn_result(&a->c), FULL_TEXT));
		CHECK(result_is(&a->res[0], "450 4.2.1 later"));
		ahead_free(a);
	}
	/* QUIT while idle */
	{
		struct ahead *a = ahead_new(SMTP_CLIENT_OUT_MIN_BYTES, "250 x\r\n", 1);
		a->out.len = a->out.cap;
		a->st = smtp_client_quit(&a->c, &a->out);
		CHECK_EQ_U(a->st, SMTP_CLIENT_FAILED);
		CHECK(result_is(smtp_client_conn_result(&a->c), FULL_TEXT));
		ahead_free(a);
	}
	/* a new message without PIPELINING: MAIL does not fit */
	{
		struct ahead *a = ahead_new(4096, "250 x\r\n", 3);
		a->out.len = a->out.cap - 20;
		ahead_start(a);
		CHECK_EQ_U(a->out.len, a->out.cap - 20);
		CHECK(ahead_failed_4xx(a));
		CHECK(result_is(&a->res[2], FULL_TEXT));
		ahead_free(a);
	}
	/* with PIPELINING the first round simply waits for the next send */
	{
		struct ahead *a = ahead_new(4096, "250-x\r\n250 PIPELINING\r\n", 3);
		a->out.len = a->out.cap - 20;
		ahead_start(a);
		CHECK_EQ_U(a->st, SMTP_CLIENT_WANT_INPUT);
		CHECK_EQ_U(a->out.len, a->out.cap - 20);
		ahead_drain(a);
		CHECK_EQ_U(a->st, SMTP_CLIENT_WANT_INPUT);
		ahead_feed_str(a, "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
		CHECK_EQ_U(a->st, SMTP_CLIENT_SEND_BODY);
		ahead_free(a);
	}
	/* the final dot */
	{
		struct ahead *a = ahead_new(4096, "250-x\r\n250 PIPELINING\r\n", 2);
		ahead_start(a);
		ahead_drain(a);
		ahead_feed_str(a, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
		CHECK_EQ_U(a->st, SMTP_CLIENT_SEND_BODY);
		a->out.len = a->out.cap - 2;
		a->st = smtp_client_body_sent(&a->c, &a->out);
		CHECK_EQ_U(a->out.len, a->out.cap - 2);
		CHECK(ahead_failed_4xx(a));
		CHECK(result_is(&a->res[1], FULL_TEXT));
		ahead_free(a);
	}
}

/* ---- random upstreams ------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng(uint32_t n)
{
	return (uint32_t)(test_xorshift64(&rng_state) % n);
}

/* True when a line of stream that starts with '5' holds text, '?' in text
 * standing for any byte (the client keeps only printable ASCII): a 5xx
 * result the upstream itself gave, possibly damaged, not one made up. */
static bool stream_has_5xx_text(const uint8_t *stream, size_t len, const char *text)
{
	size_t tn = strlen(text);
	for (size_t ls = 0; ls < len;) {
		const uint8_t *lf = memchr(stream + ls, '\n', len - ls);
		size_t le = lf ? (size_t)(lf - stream) : len;
		for (size_t at = ls; stream[ls] == '5' && at + tn <= le; at++) {
			size_t k = 0;
			while (k < tn && (text[k] == '?' || (uint8_t)text[k] == stream[at + k]))
				k++;
			if (k == tn)
				return true;
		}
		ls = le + 1;
	}
	return false;
}

/*
 * An upstream that answers with plausible lines in random order, sometimes
 * damaged, in random pieces, while a driver reacts to every status as
 * core/forward would. Whatever happens: no crash or sanitizer report, out
 * never overflows, every call returns, and when a message ends (done,
 * closed, failed) every recipient has a result of 2xx-5xx, a 2xx only when
 * the message as a whole got one. In a quarter of the rounds the caller's
 * sends rarely complete while mostly 250s come one per read.
 */
static void test_random_upstreams(void)
{
	static const char *const lines[] = {
		"220 hi\r\n", "250 ok\r\n", "250-x\r\n", "250-PIPELINING\r\n",
		"250-XFORWARD NAME ADDR HELO PROTO\r\n", "250-SIZE 100\r\n", "354 go\r\n",
		"421 4.4.2 bye\r\n", "450 4.1.1 later\r\n", "550 5.1.1 no\r\n", "221 bye\r\n",
		"503 5.5.1 seq\r\n", "250 2.0.0 queued\r\n", "502 what\r\n", "250\n",
	};
	enum { RCPTS = 40, ROUNDS = 3000 };
	char names[RCPTS][24];
	struct span rcpts[RCPTS];
	for (int i = 0; i < RCPTS; i++) {
		int n = snprintf(names[i], sizeof(names[i]), "u%d@d.example", i);
		rcpts[i] = span_make(names[i], (size_t)n);
	}
	struct smtp_client_xforward xf = { span_make("h+=", 3), span_make("192.0.2.1", 9),
					   span_make("", 0), span_make("ESMTP", 5) };
	struct smtp_client_result res[RCPTS];
	uint8_t stream[2048];
	unsigned messages = 0, violations = 0, ahead = 0, full = 0;
	for (int round = 0; round < ROUNDS; round++) {
		/* A stuck round: the caller's sends rarely complete, and a relay
		 * without PIPELINING mostly says 250 to whatever it is sent, one
		 * reply per read, so unsent commands pile up in out. */
		bool stuck = rng(4) == 0;
		size_t cap = SMTP_CLIENT_OUT_MIN_BYTES + (stuck ? rng(64) : rng(2048));
		uint8_t *mem = malloc(cap);
		REQUIRE(mem != NULL);
		struct smtp_out out = { mem, 0, cap };
		struct smtp_client c;
		smtp_client_init(&c, span_make("relay.example", 13));
		smtp_client_set_chunking(&c, rng(2) == 0);
		struct smtp_client_message m = {
			.reverse_path = span_make("s@o.example", 11),
			.recipients = rcpts,
			.recipient_count = 1 + rng(RCPTS),
			.body_bytes = rng(200),
			.body_type = rng(4) == 0 ? SMTP_BODY_BINARYMIME : SMTP_BODY_7BIT,
			.data_preferred = rng(4) == 0,
			.xforward = rng(2) ? &xf : NULL,
		};
		m.bdat_bytes = m.body_bytes;
		static const char *const hellos[] = {
			"220 hi\r\n250-x\r\n250-PIPELINING\r\n250 XFORWARD NAME HELO\r\n",
			"220 hi\r\n250-x\r\n250 PIPELINING\r\n", "220 hi\r\n250 x\r\n", "",
			"220 hi\r\n250-x\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 BINARYMIME\r\n",
			"220 hi\r\n250-x\r\n250 CHUNKING\r\n",
		};
		const char *hello = stuck ? hellos[2] : hellos[rng(RMX_ARRAY_LEN(hellos))];
		size_t len = strlen(hello);
		memcpy(stream, hello, len);
		while (len < sizeof(stream) - 64) {
			const char *l = stuck && rng(8) != 0 ? "250 ok\r\n"
							      : lines[rng(RMX_ARRAY_LEN(lines))];
			size_t n = strlen(l);
			memcpy(stream + len, l, n);
			if (rng(40) == 0)
				stream[len + rng((uint32_t)n)] = (uint8_t)rng(256);
			len += n;
		}
		bool in_message = false;
		bool body_due = false; /* BDAT: SEND_BODY seen, body_sent not called yet */
		enum smtp_client_status st = SMTP_CLIENT_WANT_INPUT;
		size_t at = 0;
		unsigned calls = 0;
		/* 1 in send_odds sends completes; 1 in align_odds reads ends anywhere */
		uint32_t send_odds = stuck ? 16 : 1;
		uint32_t align_odds = stuck ? 16 : 2;
		while (at < len && st != SMTP_CLIENT_CLOSED && st != SMTP_CLIENT_FAILED) {
			REQUIRE(++calls < 100000);
			bool send = rng(send_odds) == 0;
			if (send)
				out.len = 0;
			switch (st) {
			case SMTP_CLIENT_READY:
				if (rng(8) == 0) {
					st = smtp_client_quit(&c, &out);
					break;
				}
				st = smtp_client_start_message(&c, &m, res, &out);
				in_message = st != SMTP_CLIENT_MESSAGE_DONE;
				if (!in_message)
					messages++;
				break;
			case SMTP_CLIENT_SEND_BODY:
				/* By BDAT, replies may arrive while the body goes. */
				if (smtp_client_body_by_bdat(&c) && !body_due && rng(2) == 0) {
					body_due = true;
					st = SMTP_CLIENT_WANT_INPUT;
					break;
				}
				body_due = false;
				st = smtp_client_body_sent(&c, &out);
				break;
			case SMTP_CLIENT_MESSAGE_DONE:
				st = rng(4) ? smtp_client_rset(&c, &out) : smtp_client_quit(&c, &out);
				break;
			default: {
				if (body_due && rng(4) == 0) {
					body_due = false;
					st = smtp_client_body_sent(&c, &out);
					break;
				}
				if (rng(100) == 0) {
					st = smtp_client_connection_lost(&c, "lost");
					break;
				}
				/* Most reads end with a reply line, as from a relay
				 * that answers one command per read; the rest end
				 * anywhere (and often answer ahead). */
				size_t n = RMX_MIN(len - at, 1 + rng(64));
				if (rng(align_odds) != 0) {
					const uint8_t *lf = memchr(stream + at, '\n', len - at);
					if (lf != NULL)
						n = (size_t)(lf - (stream + at)) + 1;
				}
				st = smtp_client_feed(&c, stream + at, n, &out);
				at += n;
				if (send && out.len > 0 && out.len <= out.cap) {
					out.len = 0;
					st = smtp_client_feed(&c, NULL, 0, &out);
				}
				break;
			}
			}
			if (out.len > out.cap)
				violations++;
			if (body_due && st == SMTP_CLIENT_MESSAGE_DONE)
				violations++; /* the body's buffer would be let go while sent */
			if (body_due && (st == SMTP_CLIENT_CLOSED || st == SMTP_CLIENT_FAILED))
				body_due = false;
			bool ended = st == SMTP_CLIENT_MESSAGE_DONE || st == SMTP_CLIENT_CLOSED ||
				     st == SMTP_CLIENT_FAILED;
			if (in_message && ended) {
				in_message = false;
				messages++;
				const struct smtp_client_result *mr = smtp_client_message_result(&c);
				for (uint32_t i = 0; i < m.recipient_count; i++) {
					if (res[i].code < 200 || res[i].code > 599)
						violations++;
					if (res[i].code / 100 == 2 && mr->code / 100 != 2)
						violations++;
					if (st != SMTP_CLIENT_MESSAGE_DONE && res[i].code / 100 == 5 &&
					    !stream_has_5xx_text(stream, len, res[i].text))
						violations++; /* a dropped connection never bounces */
				}
			}
		}
		if (st == SMTP_CLIENT_FAILED) {
			const char *t = smtp_client_conn_result(&c)->text;
			ahead += strcmp(t, "upstream replied before the command was sent") == 0;
			full += strcmp(t, "upstream replied ahead: output buffer full") == 0;
		}
		free(mem);
	}
	CHECK_EQ_U(violations, 0);
	CHECK(messages > 100);
	CHECK(ahead > 0 && full > 0);
	printf("smtp_client: %u random messages; %u connections failed answering ahead, %u "
	       "with out full\n", messages, ahead, full);
}


/* ---- BDAT (RFC 3030) ------------------------------------------------------------ */

#define GREET_EHLO_CHUNKING                      \
	"S: 220 mx.upstream.test ESMTP\n"        \
	"C: EHLO relay.example\n"                \
	"S: 250-mx.upstream.test\n"              \
	"S: 250-PIPELINING\n"                    \
	"S: 250-SIZE 10240000\n"                 \
	"S: 250-8BITMIME\n"                      \
	"S: 250-CHUNKING\n"                      \
	"S: 250 ENHANCEDSTATUSCODES\n"           \
	"= READY\n"

/* MAIL, RCPTs and BDAT in one write, the body right behind them (no 354);
 * SIZE= and BDAT give the unstuffed size. Refused RCPTs keep their
 * replies; the BDAT reply is the accepted one's. */
static const char conv_bdat_pipelined_mix[] =
	"H:\n"
	"F: sender@origin.example\n"
	"T: a@dest.example\n"
	"T: b@dest.example\n"
	"T: c@dest.example\n"
	"B: 8BITMIME 1234 1200\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<sender@origin.example> SIZE=1200 BODY=8BITMIME\n"
	"C: RCPT TO:<a@dest.example>\n"
	"C: RCPT TO:<b@dest.example>\n"
	"C: RCPT TO:<c@dest.example>\n"
	"C: BDAT 1200 LAST\n"
	"= SEND_BODY\n"
	"S: 250 2.1.0 Ok\n"
	"S: 250 2.1.5 Ok\n"
	"S: 450 4.2.0 <b@dest.example>: Greylisted\n"
	"S: 550 5.1.1 <c@dest.example>: User unknown\n"
	"= WANT_INPUT\n"
	"R0: 250 2.1.5 Ok\n"
	"> body\n"
	"= WANT_INPUT\n"
	"S: 250 2.0.0 Ok: 1200 bytes queued as 4XyZ\n"
	"= MESSAGE_DONE\n"
	"R0: 250 2.0.0 Ok: 1200 bytes queued as 4XyZ\n"
	"R1: 450 4.2.0 <b@dest.example>: Greylisted\n"
	"R2: 550 5.1.1 <c@dest.example>: User unknown\n"
	"M: 250 2.0.0 Ok: 1200 bytes queued as 4XyZ\n"
	"> next\n"
	"= READY\n"
	"> start\n"
	"C: MAIL FROM:<sender@origin.example> SIZE=1200 BODY=8BITMIME\n"
	"C: RCPT TO:<a@dest.example>\n"
	"C: RCPT TO:<b@dest.example>\n"
	"C: RCPT TO:<c@dest.example>\n"
	"C: BDAT 1200 LAST\n"
	"= SEND_BODY\n";

/* The BDAT reply may come before the caller has seen its body's send
 * complete: the results are final, but MESSAGE_DONE waits for body_sent
 * (the caller's buffer is still being sent). */
static const char conv_bdat_reply_before_body_sent[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: 7BIT 10\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=10\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: BDAT 10 LAST\n"
	"= SEND_BODY\n"
	"S: 250 2.1.0 Ok\n"
	"S: 250 2.1.5 Ok\n"
	"S: 250 2.0.0 Ok: queued\n"
	"= WANT_INPUT\n"
	"R0: 250 2.0.0 Ok: queued\n"
	"> body\n"
	"= MESSAGE_DONE\n"
	"R0: 250 2.0.0 Ok: queued\n"
	"> next\n"
	"= READY\n";

/* Every RCPT refused with the BDAT already on the wire: the upstream reads
 * the chunk and refuses it (Postfix: 554 5.5.1 Error: no valid recipients).
 * The RCPT refusals stand; RSET follows. */
static const char conv_bdat_no_rcpt_pipelined[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	"B: 7BIT 10\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=10\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: RCPT TO:<b@d.example>\n"
	"C: BDAT 10 LAST\n"
	"= SEND_BODY\n"
	"> body\n"
	"= WANT_INPUT\n"
	"S: 250 2.1.0 Ok\n"
	"S: 550 5.1.1 <a@d.example>: User unknown\n"
	"S: 550 5.1.1 <b@d.example>: User unknown\n"
	"S: 554 5.5.1 Error: no valid recipients\n"
	"= MESSAGE_DONE\n"
	"R0: 550 5.1.1 <a@d.example>: User unknown\n"
	"R1: 550 5.1.1 <b@d.example>: User unknown\n"
	"M: 550 5.1.1 <b@d.example>: User unknown\n"
	"> next\n"
	"C: RSET\n"
	"S: 250 2.0.0 Ok\n"
	"= READY\n";

/* MAIL refused, pipelined: the rest is read, the BDAT's refusal changes
 * nothing, RSET follows. */
static const char conv_bdat_mail_refused_pipelined[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: 7BIT 10\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=10\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: BDAT 10 LAST\n"
	"= SEND_BODY\n"
	"S: 452 4.3.1 Insufficient system storage\n"
	"S: 503 5.5.1 Error: need MAIL command\n"
	"= WANT_INPUT\n"
	"> body\n"
	"= WANT_INPUT\n"
	"S: 503 5.5.1 Error: need MAIL command\n"
	"= MESSAGE_DONE\n"
	"R0: 452 4.3.1 Insufficient system storage\n"
	"M: 452 4.3.1 Insufficient system storage\n"
	"> next\n"
	"C: RSET\n"
	"S: 250 2.0.0 Ok\n"
	"= READY\n";

#define GREET_EHLO_CHUNKING_PLAIN                \
	"S: 220 mx.upstream.test ESMTP\n"        \
	"C: EHLO relay.example\n"                \
	"S: 250-mx.upstream.test\n"              \
	"S: 250-CHUNKING\n"                      \
	"S: 250 BINARYMIME\n"                    \
	"= READY\n"

/* Without PIPELINING: one command per reply, BDAT and its body together
 * after the last RCPT reply; a BINARYMIME body says BODY=BINARYMIME. */
static const char conv_bdat_plain_binary[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	"B: BINARYMIME 520 512\n"
	GREET_EHLO_CHUNKING_PLAIN
	"> start\n"
	"C: MAIL FROM:<s@o.example> BODY=BINARYMIME\n"
	"= WANT_INPUT\n"
	"S: 250 ok\n"
	"C: RCPT TO:<a@d.example>\n"
	"= WANT_INPUT\n"
	"S: 550 5.1.1 no\n"
	"C: RCPT TO:<b@d.example>\n"
	"S: 250 ok\n"
	"C: BDAT 512 LAST\n"
	"= SEND_BODY\n"
	"> body\n"
	"= WANT_INPUT\n"
	"S: 250 2.0.0 queued\n"
	"= MESSAGE_DONE\n"
	"R0: 550 5.1.1 no\n"
	"R1: 250 2.0.0 queued\n"
	"> next\n"
	"= READY\n";

/* Without PIPELINING, every RCPT refused: no BDAT is sent at all. */
static const char conv_bdat_no_rcpt_plain[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: 7BIT 10\n"
	GREET_EHLO_CHUNKING_PLAIN
	"> start\n"
	"C: MAIL FROM:<s@o.example>\n"
	"S: 250 ok\n"
	"C: RCPT TO:<a@d.example>\n"
	"S: 550 5.1.1 no\n"
	"= MESSAGE_DONE\n"
	"R0: 550 5.1.1 no\n"
	"M: 550 5.1.1 no\n"
	"> next\n"
	"C: RSET\n"
	"S: 250 ok\n"
	"= READY\n";

/* A 4xx or 5xx to BDAT LAST: the accepted recipients take it; the
 * transaction may still be open, so RSET follows. */
static const char conv_bdat_4xx[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	"B: 7BIT 10\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=10\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: RCPT TO:<b@d.example>\n"
	"C: BDAT 10 LAST\n"
	"= SEND_BODY\n"
	"> body\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 550 5.1.1 no\n"
	"S: 452 4.3.1 Insufficient system storage\n"
	"= MESSAGE_DONE\n"
	"R0: 452 4.3.1 Insufficient system storage\n"
	"R1: 550 5.1.1 no\n"
	"M: 452 4.3.1 Insufficient system storage\n"
	"> next\n"
	"C: RSET\n"
	"S: 250 ok\n"
	"= READY\n";

static const char conv_bdat_5xx[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: 7BIT 10\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=10\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: BDAT 10 LAST\n"
	"= SEND_BODY\n"
	"> body\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 554 5.7.1 Message content rejected\n"
	"= MESSAGE_DONE\n"
	"R0: 554 5.7.1 Message content rejected\n"
	"> next\n"
	"C: RSET\n";

/* A 3xx to BDAT means nothing: the connection fails, the recipient is
 * deferred. */
static const char conv_bdat_354[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: 7BIT 10\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=10\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: BDAT 10 LAST\n"
	"= SEND_BODY\n"
	"> body\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 354 go ahead\n"
	"= FAILED\n"
	"R0: 451 4.4.0 unexpected reply code from upstream\n";

/* The upstream closes mid-chunk (the body is being sent): every recipient
 * is deferred, even the accepted one; body_sent after that changes
 * nothing. */
static const char conv_bdat_lost_mid_chunk[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"T: b@d.example\n"
	"B: 7BIT 100000\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=100000\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: RCPT TO:<b@d.example>\n"
	"C: BDAT 100000 LAST\n"
	"= SEND_BODY\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 550 5.1.1 no\n"
	"= WANT_INPUT\n"
	"> lost\n"
	"= FAILED\n"
	"R0: 451 4.4.2 lost connection with upstream\n"
	"R1: 550 5.1.1 no\n"
	"> body\n"
	"= FAILED\n";

/* A 421 while the chunk goes out closes; the accepted recipient is
 * deferred with it. */
static const char conv_bdat_421_mid_chunk[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: 7BIT 100000\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=100000\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: BDAT 100000 LAST\n"
	"= SEND_BODY\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 421 4.4.2 timeout exceeded\n"
	"= CLOSED\n"
	"R0: 421 4.4.2 timeout exceeded\n"
	"X: 421 4.4.2 timeout exceeded\n";

/* Once the BDAT reply made the results final, a stray reply still fails
 * the connection, but the delivery stands (no 4xx over a 250: that would
 * send the message twice). */
static const char conv_bdat_stray_after_reply[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: 7BIT 10\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=10\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: BDAT 10 LAST\n"
	"= SEND_BODY\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 250 2.0.0 queued\n"
	"= WANT_INPUT\n"
	"S: 250 what\n"
	"= FAILED\n"
	"R0: 250 2.0.0 queued\n"
	"M: 250 2.0.0 queued\n"
	"> body\n"
	"= FAILED\n";

/* Chunking turned off, or the message prefers DATA: DATA, with the stored
 * size, although CHUNKING is offered. */
static const char conv_bdat_off[] =
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: 7BIT 12 10\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=12\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"= WANT_INPUT\n";

static const char conv_bdat_data_preferred[] =
	"H:\n"
	"P:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: 7BIT 12 10\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=12\n"
	"C: RCPT TO:<a@d.example>\n"
	"C: DATA\n"
	"= WANT_INPUT\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 354 go\n"
	"= SEND_BODY\n"
	"> body\n"
	"C: .\n";

/* A BINARYMIME message preferring DATA still goes by BDAT: it cannot go
 * any other way. Without BINARYMIME offered it is refused, saying why. */
static const char conv_bdat_binary_preferred_data[] =
	"H:\n"
	"P:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: BINARYMIME 12 10\n"
	GREET_EHLO_CHUNKING_PLAIN
	"> start\n"
	"C: MAIL FROM:<s@o.example> BODY=BINARYMIME\n";

static const char conv_bdat_binary_not_offered[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: BINARYMIME 12 10\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"= MESSAGE_DONE\n"
	"R0: 554 5.6.3 binary content cannot be relayed: upstream does not offer BINARYMIME and "
	"CHUNKING\n"
	"> next\n"
	"= READY\n";

static const char conv_bdat_binary_no_chunking[] =
	"H:\n"
	"F: s@o.example\n"
	"T: a@d.example\n"
	"B: BINARYMIME 12 10\n"
	"S: 220 x\n"
	"C: EHLO relay.example\n"
	"S: 250-x\n"
	"S: 250 BINARYMIME\n"
	"> start\n"
	"= MESSAGE_DONE\n"
	"R0: 554 5.6.3 binary content cannot be relayed: upstream does not offer BINARYMIME and "
	"CHUNKING\n";

/* Rounds: MAIL and RCPTs too many for out go in several writes, and BDAT
 * (with SEND_BODY) only in the last; the body follows it. */
static const char conv_bdat_rounds[] =
	"H:\n"
	"O: 512\n"
	"F: s@o.example\n"
	"T: a-rather-long-local-part-number-01@destination.example\n"
	"T: a-rather-long-local-part-number-02@destination.example\n"
	"T: a-rather-long-local-part-number-03@destination.example\n"
	"T: a-rather-long-local-part-number-04@destination.example\n"
	"T: a-rather-long-local-part-number-05@destination.example\n"
	"T: a-rather-long-local-part-number-06@destination.example\n"
	"T: a-rather-long-local-part-number-07@destination.example\n"
	"T: a-rather-long-local-part-number-08@destination.example\n"
	"T: a-rather-long-local-part-number-09@destination.example\n"
	"T: a-rather-long-local-part-number-10@destination.example\n"
	"B: 7BIT 10\n"
	GREET_EHLO_CHUNKING
	"> start\n"
	"C: MAIL FROM:<s@o.example> SIZE=10\n"
	"C: RCPT TO:<a-rather-long-local-part-number-01@destination.example>\n"
	"C: RCPT TO:<a-rather-long-local-part-number-02@destination.example>\n"
	"C: RCPT TO:<a-rather-long-local-part-number-03@destination.example>\n"
	"C: RCPT TO:<a-rather-long-local-part-number-04@destination.example>\n"
	"C: RCPT TO:<a-rather-long-local-part-number-05@destination.example>\n"
	"C: RCPT TO:<a-rather-long-local-part-number-06@destination.example>\n"
	"C: RCPT TO:<a-rather-long-local-part-number-07@destination.example>\n"
	"C: RCPT TO:<a-rather-long-local-part-number-08@destination.example>\n"
	"C: RCPT TO:<a-rather-long-local-part-number-09@destination.example>\n"
	"C: RCPT TO:<a-rather-long-local-part-number-10@destination.example>\n"
	"C: BDAT 10 LAST\n"
	"= SEND_BODY\n"
	"> body\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"S: 250 ok\n"
	"= WANT_INPUT\n"
	"S: 250 2.0.0 queued\n"
	"= MESSAGE_DONE\n"
	"R9: 250 2.0.0 queued\n";

/* Without PIPELINING, a reply that starts in the read whose RCPT reply
 * wrote BDAT is ahead of it (the caller has sent neither the command nor
 * the body): the connection fails and nothing counts as delivered. Split
 * where a real upstream would answer, the same bytes deliver. */
static void test_bdat_ahead(void)
{
	static const struct span rcpt = { (const uint8_t *)"a@d.example", 11 };
	for (int split = 0; split < 2; split++) {
		struct smtp_client c;
		smtp_client_init(&c, span_make("relay.example", 13));
		smtp_client_set_chunking(&c, true);
		uint8_t mem[SMTP_CLIENT_OUT_MIN_BYTES];
		struct smtp_out out = { mem, 0, sizeof(mem) };
		const char *in = "220 x\r\n250-x\r\n250 CHUNKING\r\n";
		CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)in, 7, &out), SMTP_CLIENT_WANT_INPUT);
		out.len = 0;
		CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)in + 7, strlen(in) - 7, &out),
			   SMTP_CLIENT_READY);
		CHECK(smtp_client_chunking_offered(&c));
		struct smtp_client_message m = {
			.reverse_path = span_make("s@o.example", 11),
			.recipients = &rcpt,
			.recipient_count = 1,
			.body_bytes = 12,
			.bdat_bytes = 10,
		};
		struct smtp_client_result res[1];
		CHECK_EQ_U(smtp_client_start_message(&c, &m, res, &out), SMTP_CLIENT_WANT_INPUT);
		CHECK_MEM(out.buf, out.len, "MAIL FROM:<s@o.example>\r\n", 25);
		out.len = 0;
		in = "250 ok\r\n";
		CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)in, strlen(in), &out),
			   SMTP_CLIENT_WANT_INPUT);
		out.len = 0;
		in = "250 ok\r\n250 2.0.0 queued\r\n";
		size_t first = split ? 8 : strlen(in);
		enum smtp_client_status st = smtp_client_feed(&c, (const uint8_t *)in, first, &out);
		CHECK_MEM(out.buf, out.len, "BDAT 10 LAST\r\n", 14);
		if (!split) {
			CHECK_EQ_U(st, SMTP_CLIENT_FAILED);
			CHECK(result_is(smtp_client_conn_result(&c), AHEAD_TEXT));
			CHECK(result_is(&res[0], AHEAD_TEXT));
			continue;
		}
		CHECK_EQ_U(st, SMTP_CLIENT_SEND_BODY);
		CHECK(smtp_client_body_by_bdat(&c));
		out.len = 0;
		st = smtp_client_feed(&c, (const uint8_t *)in + first, strlen(in) - first, &out);
		CHECK_EQ_U(st, SMTP_CLIENT_WANT_INPUT);
		CHECK_EQ_U(smtp_client_body_sent(&c, &out), SMTP_CLIENT_MESSAGE_DONE);
		CHECK(result_is(&res[0], "250 2.0.0 queued"));
		CHECK_EQ_U(out.len, 0);
	}
}

/* After FAILED or CLOSED, more input changes nothing. */
static void test_dead_client(void)
{
	struct smtp_client c;
	smtp_client_init(&c, span_make("relay.example", 13));
	uint8_t mem[SMTP_CLIENT_OUT_MIN_BYTES];
	struct smtp_out out = { mem, 0, sizeof(mem) };
	const char *bad = "220 x\r\n\x01";
	CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)bad, strlen(bad), &out),
		   SMTP_CLIENT_FAILED);
	size_t len = out.len;
	CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)"220 x\r\n", 7, &out),
		   SMTP_CLIENT_FAILED);
	CHECK_EQ_U(out.len, len);
	CHECK_EQ_U(smtp_client_conn_result(&c)->code, 451);
}

/* A 220 that comes in the read with the EHLO reply, before STARTTLS went
 * out, is not the answer to it (an injected "go ahead"); split where a
 * real upstream would answer, it is. */
static void test_tls_ahead(void)
{
	const char *greeting = "220 x\r\n";
	const char *flight = "250-x\r\n250 STARTTLS\r\n220 go\r\n";
	size_t legit_split = strlen("250-x\r\n250 STARTTLS\r\n");
	for (int split = 0; split < 2; split++) {
		struct smtp_client c;
		smtp_client_init(&c, span_make("relay.example", 13));
		smtp_client_set_tls(&c, SMTP_CLIENT_TLS_REQUIRED);
		uint8_t mem[SMTP_CLIENT_OUT_MIN_BYTES];
		struct smtp_out out = { mem, 0, sizeof(mem) };
		CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)greeting, strlen(greeting), &out),
			   SMTP_CLIENT_WANT_INPUT);
		out.len = 0;
		size_t first = split ? legit_split : strlen(flight);
		enum smtp_client_status st = smtp_client_feed(&c, (const uint8_t *)flight, first, &out);
		CHECK(out.len == 10 && memcmp(out.buf, "STARTTLS\r\n", 10) == 0);
		out.len = 0;
		if (split) {
			CHECK_EQ_U(st, SMTP_CLIENT_WANT_INPUT);
			st = smtp_client_feed(&c, (const uint8_t *)flight + first, strlen(flight) - first,
					      &out);
			CHECK_EQ_U(st, SMTP_CLIENT_START_TLS);
		} else {
			CHECK_EQ_U(st, SMTP_CLIENT_FAILED);
			CHECK(result_is(smtp_client_conn_result(&c), AHEAD_TEXT));
		}
		CHECK(!smtp_client_tls_active(&c));
	}
}

/* The EHLO after the handshake must fit out like any other. */
static void test_tls_started_out_full(void)
{
	struct smtp_client c;
	smtp_client_init(&c, span_make("relay.example", 13));
	smtp_client_set_tls(&c, SMTP_CLIENT_TLS_REQUIRED);
	uint8_t mem[SMTP_CLIENT_OUT_MIN_BYTES];
	struct smtp_out out = { mem, 0, sizeof(mem) };
	const char *in = "220 x\r\n";
	CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)in, strlen(in), &out), SMTP_CLIENT_WANT_INPUT);
	out.len = 0;
	in = "250-x\r\n250 STARTTLS\r\n";
	CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)in, strlen(in), &out), SMTP_CLIENT_WANT_INPUT);
	CHECK(out.len == 10 && memcmp(out.buf, "STARTTLS\r\n", 10) == 0);
	out.len = 0;
	in = "220 go\r\n";
	CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)in, strlen(in), &out), SMTP_CLIENT_START_TLS);
	CHECK(!smtp_client_tls_active(&c));
	/* More cleartext handed in by mistake is not read either. */
	in = "250 x\r\n";
	CHECK_EQ_U(smtp_client_feed(&c, (const uint8_t *)in, strlen(in), &out), SMTP_CLIENT_START_TLS);
	out.len = out.cap - 5;
	CHECK_EQ_U(smtp_client_tls_started(&c, &out), SMTP_CLIENT_FAILED);
	CHECK_EQ_U(smtp_client_conn_result(&c)->code, 451);
}

int main(void)
{
	static const struct {
		const char *name;
		const char *script;
	} scripts[] = {
		{ "pipelined_mix", conv_pipelined_mix },
		{ "unpipelined", conv_unpipelined },
		{ "greeting_multiline", conv_greeting_multiline },
		{ "greeting_554", conv_greeting_554 },
		{ "greeting_421", conv_greeting_421 },
		{ "greeting_450", conv_greeting_450 },
		{ "greeting_250", conv_greeting_250 },
		{ "helo_fallback", conv_helo_fallback },
		{ "ehlo_multiline_5xx", conv_ehlo_multiline_5xx },
		{ "ehlo_421", conv_ehlo_421 },
		{ "ehlo_450", conv_ehlo_450 },
		{ "capabilities", conv_capabilities },
		{ "size_no_limit", conv_size_no_limit },
		{ "single_line_ehlo", conv_single_line_ehlo },
		{ "mail_rejected_pipelined", conv_mail_rejected_pipelined },
		{ "mail_rejected_plain", conv_mail_rejected_plain },
		{ "no_rcpt_pipelined", conv_no_rcpt_pipelined },
		{ "no_rcpt_plain", conv_no_rcpt_plain },
		{ "354_without_rcpt", conv_354_without_rcpt },
		{ "data_rejected", conv_data_rejected },
		{ "next_after_final", conv_next_after_final },
		{ "next_rsets_open", conv_next_rsets_open },
		{ "next_after_refusal", conv_next_after_refusal },
		{ "final_5xx", conv_final_5xx },
		{ "421_mid_transaction", conv_421_mid_transaction },
		{ "421_final", conv_421_final },
		{ "421_during_body", conv_421_during_body },
		{ "421_idle", conv_421_idle },
		{ "rset_refused", conv_rset_refused },
		{ "quit_ready", conv_quit_ready },
		{ "enhanced_status", conv_enhanced_status },
		{ "bare_lf", conv_bare_lf },
		{ "bad_nul", conv_bad_nul },
		{ "bad_control", conv_bad_control },
		{ "bad_del", conv_bad_del },
		{ "bad_bare_cr", conv_bad_bare_cr },
		{ "bad_code_low", conv_bad_code_low },
		{ "bad_code_high", conv_bad_code_high },
		{ "bad_code_alpha", conv_bad_code_alpha },
		{ "bad_short", conv_bad_short },
		{ "bad_empty", conv_bad_empty },
		{ "bad_separator", conv_bad_separator },
		{ "bad_mismatch", conv_bad_mismatch },
		{ "bad_leading_space", conv_bad_leading_space },
		{ "bad_mid_message", conv_bad_mid_message },
		{ "unexpected_ready", conv_unexpected_ready },
		{ "unexpected_after_done", conv_unexpected_after_done },
		{ "unexpected_before_rset", conv_unexpected_before_rset },
		{ "xforward", conv_xforward },
		{ "xforward_subset", conv_xforward_subset },
		{ "xforward_refused_pipelined", conv_xforward_refused_pipelined },
		{ "xforward_refused_plain", conv_xforward_refused_plain },
		{ "refuse_smtputf8", conv_refuse_smtputf8 },
		{ "refuse_8bit", conv_refuse_8bit },
		{ "refuse_binary", conv_refuse_binary },
		{ "refuse_size", conv_refuse_size },
		{ "utf8_params", conv_utf8_params },
		{ "unsendable_rcpts", conv_unsendable_rcpts },
		{ "unsendable_sender", conv_unsendable_sender },
		{ "unsendable_first", conv_unsendable_first },
		{ "ehlo_354", conv_ehlo_354 },
		{ "rset_354", conv_rset_354 },
		{ "final_354", conv_final_354 },
		{ "rcpt_354", conv_rcpt_354 },
		{ "data_250", conv_data_250 },
		{ "size_junk", conv_size_junk },
		{ "size_huge", conv_size_huge },
		{ "xforward_no_attrs", conv_xforward_no_attrs },
		{ "path_too_long", conv_path_too_long },
		{ "lost_mid_message", conv_lost_mid_message },
		{ "lost_after_quit", conv_lost_after_quit },
		{ "lost_after_done", conv_lost_after_done },
		{ "tls_opportunistic", conv_tls_opportunistic },
		{ "tls_injection", conv_tls_injection },
		{ "tls_required_not_offered", conv_tls_required_not_offered },
		{ "tls_required_helo", conv_tls_required_helo },
		{ "tls_opportunistic_not_offered", conv_tls_opportunistic_not_offered },
		{ "tls_none", conv_tls_none },
		{ "tls_refused_opportunistic", conv_tls_refused_opportunistic },
		{ "tls_refused_required_4xx", conv_tls_refused_required_4xx },
		{ "tls_refused_required_5xx", conv_tls_refused_required_5xx },
		{ "tls_250", conv_tls_250 },
		{ "tls_421", conv_tls_421 },
		{ "tls_handshake_failed", conv_tls_handshake_failed },
		{ "bdat_pipelined_mix", conv_bdat_pipelined_mix },
		{ "bdat_reply_before_body_sent", conv_bdat_reply_before_body_sent },
		{ "bdat_no_rcpt_pipelined", conv_bdat_no_rcpt_pipelined },
		{ "bdat_mail_refused_pipelined", conv_bdat_mail_refused_pipelined },
		{ "bdat_plain_binary", conv_bdat_plain_binary },
		{ "bdat_no_rcpt_plain", conv_bdat_no_rcpt_plain },
		{ "bdat_4xx", conv_bdat_4xx },
		{ "bdat_5xx", conv_bdat_5xx },
		{ "bdat_354", conv_bdat_354 },
		{ "bdat_lost_mid_chunk", conv_bdat_lost_mid_chunk },
		{ "bdat_421_mid_chunk", conv_bdat_421_mid_chunk },
		{ "bdat_stray_after_reply", conv_bdat_stray_after_reply },
		{ "bdat_off", conv_bdat_off },
		{ "bdat_data_preferred", conv_bdat_data_preferred },
		{ "bdat_binary_preferred_data", conv_bdat_binary_preferred_data },
		{ "bdat_binary_not_offered", conv_bdat_binary_not_offered },
		{ "bdat_binary_no_chunking", conv_bdat_binary_no_chunking },
		{ "bdat_rounds", conv_bdat_rounds },
	};
	for (size_t i = 0; i < RMX_ARRAY_LEN(scripts); i++)
		run_script(scripts[i].name, scripts[i].script);
	test_xforward_split(false);
	test_xforward_split(true);
	test_long_lines();
	test_many_recipients(4096, true);
	test_many_recipients(SMTP_CLIENT_OUT_MIN_BYTES, true);
	test_many_recipients(4096, false);
	test_rounds_interleaved();
	test_dead_client();
	test_bdat_ahead();
	test_tls_started_out_full();
	test_tls_ahead();
	test_ahead_hello();
	test_ahead_dot_discard();
	test_ahead_rcpt_burst();
	test_ahead_stuck_send(4096);
	test_ahead_stuck_send(SMTP_CLIENT_OUT_MIN_BYTES);
	test_full_out();
	test_random_upstreams();
	printf("smtp_client: %lu replays\n", replays_run);
	return test_main_end("smtp_client");
}
