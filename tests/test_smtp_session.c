/*
 * test_smtp_session.c - the ESMTP server session (proto/smtp_session.c)
 * against golden conversations, plus unit checks of what scripts cannot
 * express (Received: header, timeouts, shutdown, sizes).
 *
 * Golden scripts live in tests/scripts (files NAME.smtp), one conversation each:
 *
 *   # comment                      ignored, as are empty lines
 *   CONFIG key=value ...           max_size, max_rcpt, max_line, normalize (0|1),
 *                                  mode (0 smtp, 1 submission, 2 smtps: TLS from
 *                                  the start), tls (1: certificates loaded),
 *                                  auth (1: a user table loaded), soft, hard,
 *                                  junk (the error budget; default 10, 20, 100),
 *                                  pause (1: start paused), greet (action:
 *                                  0 ignore, 1 enforce, 2 drop)
 *   DOMAIN example.org             a served domain (default: example.com)
 *   RECIPIENT user@example.com     a recipients_file entry
 *   PEER 2001:db8::1               client address (default 192.0.2.1)
 *   FAIL op ERRNO                  make ops->op (mail, rcpt, data_begin,
 *                                  data_append) fail with -ERRNO
 *   WHOLE-ONLY                     replay only with each flight whole
 *   C: bytes                       client bytes; escapes \r \n \t \0 \\ \xNN;
 *                                  no line end is added. Consecutive C: lines
 *                                  form one flight (one write by the client).
 *   REPEAT n C: bytes              the same, n times (also S:, O:, O+)
 *   S: line                        one exact server line (CRLF added)
 *   COMMIT ok ID | COMMIT fail | COMMIT full
 *                                  the outcome of the next completed message
 *                                  (fail: -EIO, full: -ENOSPC)
 *   GREET                          (CONFIG pause=1) the greeting pause ends
 *                                  here: the final 220 is written, then what
 *                                  the client sent meanwhile is fed
 *   SCREEN bits                    smtp_session_screen() at the end (default 0)
 *   AUTHLIMIT n [prior]            the client's nth failed exchange reaches
 *                                  the failure limit; prior failures happened
 *                                  before this session (AUTH then gets 421)
 *   AUTHRESULT ok|fail|tempfail|last|busy
 *                                  the outcome of the next password check
 *                                  (busy: it cannot be queued)
 *   O: event                       the next call the session made on the
 *                                  record builder: "mail <path> [SIZE=n]
 *                                  [BODY=x] [SMTPUTF8]", "rcpt <addr>",
 *                                  "begin", "reset", or "message <body>" (the
 *                                  stored body, escaped, when feed reports
 *                                  SMTP_FEED_MESSAGE), or "starttls" (feed
 *                                  returned SMTP_FEED_STARTTLS: the harness
 *                                  drops the rest of that flight, as core/
 *                                  does, and reports the handshake done), or
 *                                  "auth MECH USER PASSWORD" (feed returned
 *                                  SMTP_FEED_AUTH with these credentials),
 *                                  "auth_failed MECH" (an exchange failed in
 *                                  the session; "-" for an unknown one), or
 *                                  "delay" (the reply just sent went past the
 *                                  soft error limit and was held)
 *   O+ text                        continues the previous O: line
 *
 * Each script is replayed with every flight whole, byte by byte, and with
 * each flight split at every point, by a harness that behaves like core/:
 * unconsumed bytes are kept and presented again ahead of newer input. The
 * server transcript and the event list must match the script exactly in
 * every replay. Every stored text body is also checked to be DATA wire form.
 */
#include "../proto/policy.h"
#include "../proto/smtp_reply.h"
#include "../proto/smtp_session.h"

#include <dirent.h>
#include <errno.h>

#include "test.h"
#include "test_util.h"

#ifndef RINGMX_SOURCE_DIR
#error "tests/CMakeLists.txt defines RINGMX_SOURCE_DIR"
#endif

#define HOSTNAME "mx.example.test"

/* Appends p escaped as scripts write it. */
static void buf_escaped(struct test_buf *b, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char tmp[8];
		switch (p[i]) {
		case '\r': test_buf_str(b, "\\r"); break;
		case '\n': test_buf_str(b, "\\n"); break;
		case '\t': test_buf_str(b, "\\t"); break;
		case '\0': test_buf_str(b, "\\0"); break;
		case '\\': test_buf_str(b, "\\\\"); break;
		default:
			if (p[i] < 0x20 || p[i] >= 0x7f) {
				snprintf(tmp, sizeof(tmp), "\\x%02X", p[i]);
				test_buf_str(b, tmp);
			} else {
				test_buf_put(b, p + i, 1);
			}
		}
	}
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes script escapes; false on a malformed escape. */
static bool unescape(const char *s, struct test_buf *out)
{
	for (size_t i = 0; s[i] != '\0'; i++) {
		uint8_t c = (uint8_t)s[i];
		if (c != '\\') {
			test_buf_put(out, &c, 1);
			continue;
		}
		i++;
		switch (s[i]) {
		case 'r': c = '\r'; break;
		case 'n': c = '\n'; break;
		case 't': c = '\t'; break;
		case '0': c = '\0'; break;
		case '\\': c = '\\'; break;
		case 'x': {
			int hi = hex_value(s[i + 1]);
			int lo = hi < 0 ? -1 : hex_value(s[i + 2]);
			if (lo < 0)
				return false;
			c = (uint8_t)(hi * 16 + lo);
			i += 2;
			break;
		}
		default:
			return false;
		}
		test_buf_put(out, &c, 1);
	}
	return true;
}

/* ---- scripts -------------------------------------------------------------------- */

#define SCRIPT_MAX_FLIGHTS 256
#define SCRIPT_MAX_COMMITS 32
#define SCRIPT_MAX_DOMAINS 8
#define SCRIPT_MAX_RECIPIENTS 8

enum fail_op { FAIL_MAIL, FAIL_RCPT, FAIL_DATA_BEGIN, FAIL_DATA_APPEND, FAIL_OP_COUNT };

struct script {
	char name[128];
	uint64_t max_size_bytes;
	uint32_t max_recipients;
	uint32_t max_line_bytes;
	bool normalize;
	bool whole_only;
	uint8_t mode;
	bool tls;
	bool auth;
	uint16_t soft_errors;
	uint16_t hard_errors;
	uint16_t junk_commands;
	bool pause;
	uint8_t greet_action;
	size_t greet_flight; /* GREET comes before this flight; SIZE_MAX: none */
	unsigned screen;
	char peer[48];
	int fail[FAIL_OP_COUNT]; /* 0 or a negative errno */
	char domains[SCRIPT_MAX_DOMAINS][64];
	size_t ndomains;
	char recipients[SCRIPT_MAX_RECIPIENTS][64];
	size_t nrecipients;

	struct test_buf client;            /* all flights, back to back */
	size_t flight_end[SCRIPT_MAX_FLIGHTS];
	size_t nflights;
	bool in_flight;
	struct test_buf server;            /* expected transcript */
	struct test_buf events;            /* expected events, one per line */
	struct {
		bool ok;
		int err; /* when not ok: -EIO (fail) or -ENOSPC (full) */
		char id[32];
	} commits[SCRIPT_MAX_COMMITS];
	size_t ncommits;
	char auth_results[SCRIPT_MAX_COMMITS][16];
	size_t nauth_results;
	unsigned auth_limit; /* AUTHLIMIT n [prior]: the nth failed exchange (counting
				prior ones from other sessions) gets -EPERM */
	unsigned auth_prior;
};

static int errno_named(const char *name)
{
	static const struct {
		const char *name;
		int value;
	} names[] = { { "ENOSPC", ENOSPC }, { "EIO", EIO }, { "ENOMEM", ENOMEM }, { "ENOBUFS", ENOBUFS },
		      { "EBUSY", EBUSY } };
	for (size_t i = 0; i < RMX_ARRAY_LEN(names); i++) {
		if (strcmp(names[i].name, name) == 0)
			return names[i].value;
	}
	return 0;
}

static void end_flight(struct script *sc)
{
	if (!sc->in_flight)
		return;
	REQUIRE(sc->nflights < SCRIPT_MAX_FLIGHTS);
	sc->flight_end[sc->nflights++] = sc->client.len;
	sc->in_flight = false;
}

/* One "C:", "S:" or "O:" body line, possibly repeated. */
static bool script_line(struct script *sc, char kind, const char *text, unsigned times)
{
	for (unsigned t = 0; t < times; t++) {
		if (kind == 'C') {
			sc->in_flight = true;
			if (!unescape(text, &sc->client))
				return false;
		} else if (kind == 'S') {
			end_flight(sc);
			if (!unescape(text, &sc->server))
				return false;
			test_buf_str(&sc->server, "\r\n");
		} else if (kind == 'O') {
			end_flight(sc);
			test_buf_str(&sc->events, text);
			test_buf_str(&sc->events, "\n");
		} else {
			/* "O+": continues the previous event line. */
			end_flight(sc);
			if (sc->events.len == 0)
				return false;
			sc->events.len--;
			test_buf_str(&sc->events, text);
			test_buf_str(&sc->events, "\n");
		}
	}
	return true;
}

static bool script_config(struct script *sc, char *args)
{
	for (char *tok = strtok(args, " "); tok != NULL; tok = strtok(NULL, " ")) {
		char *eq = strchr(tok, '=');
		if (eq == NULL)
			return false;
		*eq = '\0';
		unsigned long long v = strtoull(eq + 1, NULL, 10);
		if (strcmp(tok, "max_size") == 0)
			sc->max_size_bytes = v;
		else if (strcmp(tok, "max_rcpt") == 0)
			sc->max_recipients = (uint32_t)v;
		else if (strcmp(tok, "max_line") == 0)
			sc->max_line_bytes = (uint32_t)v;
		else if (strcmp(tok, "normalize") == 0)
			sc->normalize = v != 0;
		else if (strcmp(tok, "mode") == 0 && v <= SMTP_LISTENER_SMTPS)
			sc->mode = (uint8_t)v;
		else if (strcmp(tok, "tls") == 0)
			sc->tls = v != 0;
		else if (strcmp(tok, "auth") == 0)
			sc->auth = v != 0;
		else if (strcmp(tok, "soft") == 0 && v >= 1 && v <= SMTP_ERROR_LIMIT_MAX)
			sc->soft_errors = (uint16_t)v;
		else if (strcmp(tok, "hard") == 0 && v >= 1 && v <= SMTP_ERROR_LIMIT_MAX)
			sc->hard_errors = (uint16_t)v;
		else if (strcmp(tok, "junk") == 0 && v >= 1 && v <= SMTP_ERROR_LIMIT_MAX)
			sc->junk_commands = (uint16_t)v;
		else if (strcmp(tok, "pause") == 0)
			sc->pause = v != 0;
		else if (strcmp(tok, "greet") == 0 && v <= SMTP_GREET_DROP)
			sc->greet_action = (uint8_t)v;
		else
			return false;
	}
	return true;
}

static bool script_fail(struct script *sc, const char *args)
{
	static const char *const ops[FAIL_OP_COUNT] = { "mail", "rcpt", "data_begin", "data_append" };
	char op[32], err[32];
	if (sscanf(args, "%31s %31s", op, err) != 2)
		return false;
	for (int i = 0; i < FAIL_OP_COUNT; i++) {
		if (strcmp(op, ops[i]) == 0 && errno_named(err) != 0) {
			sc->fail[i] = -errno_named(err);
			return true;
		}
	}
	return false;
}

/* Copies a directive's argument; false if it does not fit. */
static bool copy_word(char *dst, size_t cap, const char *src)
{
	size_t len = strlen(src);
	if (len == 0 || len >= cap)
		return false;
	memcpy(dst, src, len + 1);
	return true;
}

static bool script_directive(struct script *sc, char *line)
{
	if (line[0] == '\0' || line[0] == '#')
		return true;
	if (strncmp(line, "C: ", 3) == 0 || strncmp(line, "S: ", 3) == 0 ||
	    strncmp(line, "O: ", 3) == 0)
		return script_line(sc, line[0], line + 3, 1);
	if (strncmp(line, "O+ ", 3) == 0)
		return script_line(sc, 'P', line + 3, 1);
	if (strcmp(line, "C:") == 0 || strcmp(line, "S:") == 0)
		return false;
	if (strncmp(line, "REPEAT ", 7) == 0) {
		char *end;
		unsigned long times = strtoul(line + 7, &end, 10);
		if (times == 0 || times > 100000 || strlen(end) < 4 || end[0] != ' ')
			return false;
		if (strncmp(end + 1, "O+ ", 3) == 0)
			return script_line(sc, 'P', end + 4, (unsigned)times);
		if (end[2] != ':' || end[3] != ' ' || strchr("CSO", end[1]) == NULL)
			return false;
		return script_line(sc, end[1], end + 4, (unsigned)times);
	}
	end_flight(sc);
	if (strncmp(line, "CONFIG ", 7) == 0)
		return script_config(sc, line + 7);
	if (strcmp(line, "WHOLE-ONLY") == 0) {
		sc->whole_only = true;
		return true;
	}
	if (strncmp(line, "DOMAIN ", 7) == 0 && sc->ndomains < SCRIPT_MAX_DOMAINS)
		return copy_word(sc->domains[sc->ndomains++], sizeof(sc->domains[0]), line + 7);
	if (strncmp(line, "RECIPIENT ", 10) == 0 && sc->nrecipients < SCRIPT_MAX_RECIPIENTS)
		return copy_word(sc->recipients[sc->nrecipients++], sizeof(sc->recipients[0]),
				 line + 10);
	if (strncmp(line, "PEER ", 5) == 0)
		return copy_word(sc->peer, sizeof(sc->peer), line + 5);
	if (strncmp(line, "FAIL ", 5) == 0)
		return script_fail(sc, line + 5);
	if (strcmp(line, "GREET") == 0) {
		sc->greet_flight = sc->nflights;
		return true;
	}
	if (strncmp(line, "SCREEN ", 7) == 0) {
		sc->screen = (unsigned)strtoul(line + 7, NULL, 10);
		return true;
	}
	if (strncmp(line, "AUTHLIMIT ", 10) == 0) {
		char *end;
		sc->auth_limit = (unsigned)strtoul(line + 10, &end, 10);
		sc->auth_prior = (unsigned)strtoul(end, NULL, 10);
		return sc->auth_limit > 0;
	}
	if (strncmp(line, "AUTHRESULT ", 11) == 0 && sc->nauth_results < SCRIPT_MAX_COMMITS)
		return copy_word(sc->auth_results[sc->nauth_results++], sizeof(sc->auth_results[0]),
				 line + 11);
	if (strncmp(line, "COMMIT ", 7) == 0 && sc->ncommits < SCRIPT_MAX_COMMITS) {
		char word[16] = "", id[32] = "";
		if (sscanf(line + 7, "%15s %31s", word, id) < 1)
			return false;
		bool ok = strcmp(word, "ok") == 0;
		bool full = strcmp(word, "full") == 0;
		if (!ok && !full && strcmp(word, "fail") != 0)
			return false;
		sc->commits[sc->ncommits].err = full ? -ENOSPC : -EIO;
		if (ok && id[0] == '\0')
			return false;
		sc->commits[sc->ncommits].ok = ok;
		snprintf(sc->commits[sc->ncommits].id, sizeof(sc->commits[0].id), "%s", id);
		sc->ncommits++;
		return true;
	}
	return false;
}

static bool script_load(const char *path, const char *name, struct script *sc)
{
	memset(sc, 0, sizeof(*sc));
	snprintf(sc->name, sizeof(sc->name), "%s", name);
	sc->max_size_bytes = SMTP_MESSAGE_SIZE_DEFAULT_BYTES;
	sc->max_recipients = 100;
	sc->max_line_bytes = SMTP_COMMAND_LINE_MIN_BYTES;
	sc->soft_errors = SMTP_SOFT_ERROR_LIMIT_DEFAULT;
	sc->hard_errors = SMTP_HARD_ERROR_LIMIT_DEFAULT;
	sc->junk_commands = SMTP_JUNK_COMMAND_LIMIT_DEFAULT;
	sc->greet_flight = SIZE_MAX;
	snprintf(sc->peer, sizeof(sc->peer), "192.0.2.1");

	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	char line[4096];
	unsigned lineno = 0;
	bool ok = true;
	while (ok && fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		size_t len = strlen(line);
		if (len && line[len - 1] == '\n')
			line[--len] = '\0';
		ok = script_directive(sc, line);
		if (!ok)
			fprintf(stderr, "%s:%u: bad script line\n", name, lineno);
	}
	fclose(f);
	end_flight(sc);
	if (sc->ndomains == 0)
		snprintf(sc->domains[sc->ndomains++], 64, "example.com");
	return ok;
}

static void script_free(struct script *sc)
{
	free(sc->client.data);
	free(sc->server.data);
	free(sc->events.data);
}

/* ---- the record builder the session talks to --------------------------------- */

struct test_txn {
	const struct script *sc;
	struct test_buf events;
	struct test_buf body;
	bool binary;
	bool open;
	bool auth_lent; /* auth_buf is lent to the session */
	unsigned auth_failures; /* reported by the session itself */
	uint8_t auth_buf[SASL_DECODED_MAX_BYTES];
};

static int ops_mail(void *ctx, const struct smtp_mail_info *m)
{
	struct test_txn *t = ctx;
	CHECK(!t->open);
	if (t->sc->fail[FAIL_MAIL])
		return t->sc->fail[FAIL_MAIL];
	test_buf_str(&t->events, "mail <");
	buf_escaped(&t->events, m->reverse_path.ptr, m->reverse_path.len);
	test_buf_str(&t->events, ">");
	if (m->params->size_given) {
		char tmp[40];
		snprintf(tmp, sizeof(tmp), " SIZE=%" PRIu64, m->params->size_bytes);
		test_buf_str(&t->events, tmp);
	}
	if (m->params->body == SMTP_BODY_8BITMIME)
		test_buf_str(&t->events, " BODY=8BITMIME");
	if (m->params->body == SMTP_BODY_BINARYMIME)
		test_buf_str(&t->events, " BODY=BINARYMIME");
	if (m->params->smtputf8)
		test_buf_str(&t->events, " SMTPUTF8");
	test_buf_str(&t->events, "\n");
	t->binary = m->params->body == SMTP_BODY_BINARYMIME;
	t->open = true;
	return 0;
}

static int ops_rcpt(void *ctx, struct span forward_path)
{
	struct test_txn *t = ctx;
	CHECK(t->open);
	if (t->sc->fail[FAIL_RCPT])
		return t->sc->fail[FAIL_RCPT];
	test_buf_str(&t->events, "rcpt <");
	buf_escaped(&t->events, forward_path.ptr, forward_path.len);
	test_buf_str(&t->events, ">\n");
	return 0;
}

static int ops_data_begin(void *ctx)
{
	struct test_txn *t = ctx;
	CHECK(t->open);
	if (t->sc->fail[FAIL_DATA_BEGIN])
		return t->sc->fail[FAIL_DATA_BEGIN];
	test_buf_str(&t->events, "begin\n");
	t->body.len = 0;
	return 0;
}

static int ops_data_append(void *ctx, const uint8_t *p, size_t n)
{
	struct test_txn *t = ctx;
	CHECK(t->open);
	CHECK(n > 0);
	if (t->sc->fail[FAIL_DATA_APPEND])
		return t->sc->fail[FAIL_DATA_APPEND];
	test_buf_put(&t->body, p, n);
	return 0;
}

static void ops_reset(void *ctx)
{
	struct test_txn *t = ctx;
	test_buf_str(&t->events, "reset\n");
	t->body.len = 0;
	t->open = false;
}

static bool auth_limit_reached(const struct test_txn *t)
{
	return t->sc->auth_limit != 0 &&
	       t->sc->auth_prior + t->auth_failures >= t->sc->auth_limit;
}

static int ops_auth_buffer(void *ctx, uint8_t **buf, size_t *cap)
{
	struct test_txn *t = ctx;
	CHECK(!t->auth_lent);
	if (auth_limit_reached(t))
		return -EPERM;
	t->auth_lent = true;
	memset(t->auth_buf, 0xa5, sizeof(t->auth_buf));
	*buf = t->auth_buf;
	*cap = sizeof(t->auth_buf);
	return 0;
}

/* The buffer comes back wiped (what the exchange decoded is gone). */
static void ops_auth_buffer_release(void *ctx)
{
	struct test_txn *t = ctx;
	CHECK(t->auth_lent);
	t->auth_lent = false;
	bool wiped = true;
	for (size_t i = 0; i < 64; i++)
		wiped = wiped && (t->auth_buf[i] == 0 || t->auth_buf[i] == 0xa5);
	CHECK(wiped);
}

/* An exchange that failed in the session: an event, and the script's
 * AUTHLIMIT says which failure is the last allowed. */
static int ops_auth_failed(void *ctx, enum sasl_mech mech, enum sasl_error error)
{
	struct test_txn *t = ctx;
	CHECK(error != SASL_ERR_NONE && error < SASL_ERR_COUNT);
	test_buf_str(&t->events, "auth_failed ");
	test_buf_str(&t->events, mech < SASL_MECH_COUNT ? sasl_mech_label(mech) : "-");
	test_buf_str(&t->events, "\n");
	t->auth_failures++;
	return auth_limit_reached(t) ? -EPERM : 0;
}

static const struct smtp_txn_ops test_ops = {
	.mail = ops_mail,
	.rcpt = ops_rcpt,
	.data_begin = ops_data_begin,
	.data_append = ops_data_append,
	.reset = ops_reset,
};

static const struct smtp_auth_ops test_auth_ops = {
	.buffer = ops_auth_buffer,
	.buffer_release = ops_auth_buffer_release,
	.failed = ops_auth_failed,
};

/* DATA wire form: CRLF lines, no bare CR/LF, no line that is exactly ".",
 * CRLF at the end unless empty. */
static bool stored_body_ok(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
			return false;
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return false;
		bool line_start = i == 0 || p[i - 1] == '\n';
		if (line_start && p[i] == '.' && i + 1 < n && p[i + 1] == '\r')
			return false;
	}
	return n == 0 || (n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n');
}

/* ---- replay ---------------------------------------------------------------------- */

struct replay {
	const struct script *sc;
	struct smtp_session_config cfg;
	struct smtp_session session;
	struct test_txn txn;
	uint8_t out_buf[SMTP_REPLY_BUFFER_BYTES];
	struct smtp_out out;
	struct test_buf transcript;
	struct test_buf pending; /* bytes the session has not consumed yet */
	size_t next_commit;
	size_t next_auth;
	bool closed;
	bool broken; /* the harness saw a contract violation */
	bool tls_discard; /* STARTTLS seen: the rest of this flight is dropped */
};

static const struct smtp_tls_info test_tls_info = { "TLSv1.3", "TLS_AES_256_GCM_SHA384" };

/* FLUSH statuses seen over all replays (reported per script). */
static unsigned long flushes_seen;

static void drain(struct replay *r)
{
	test_buf_put(&r->transcript, r->out.buf, r->out.len);
	r->out.len = 0;
}

/* Feeds newly arrived bytes, like core/smtp_conn: what the session leaves
 * unconsumed is presented again, ahead of anything newer. */
static void replay_input(struct replay *r, const uint8_t *p, size_t n)
{
	if (r->closed || r->tls_discard)
		return;
	test_buf_put(&r->pending, p, n);
	for (unsigned guard = 0; guard < 1000000; guard++) {
		struct smtp_feed_result res =
			smtp_session_feed(&r->session, r->pending.data, r->pending.len, &r->out);
		if (res.consumed > r->pending.len) {
			r->broken = true;
			return;
		}
		test_buf_drop_front(&r->pending, res.consumed);
		drain(r);
		switch (res.status) {
		case SMTP_FEED_MORE:
			/* Unconsumed bytes must be a partial command line. */
			if (r->pending.len >= r->cfg.max_command_line_bytes)
				r->broken = true;
			return;
		case SMTP_FEED_FLUSH:
			flushes_seen++;
			if (smtp_session_take_delay(&r->session))
				test_buf_str(&r->txn.events, "delay\n");
			continue;
		case SMTP_FEED_CLOSE:
			r->closed = true;
			return;
		case SMTP_FEED_AUTH: {
			struct smtp_auth_request req;
			smtp_session_auth_credentials(&r->session, &req);
			struct test_buf *ev = &r->txn.events;
			test_buf_str(ev, "auth ");
			test_buf_str(ev, sasl_mech_label(req.mech));
			test_buf_str(ev, " ");
			buf_escaped(ev, req.user.ptr, req.user.len);
			test_buf_str(ev, " ");
			buf_escaped(ev, req.password.ptr, req.password.len);
			test_buf_str(ev, "\n");
			if (r->next_auth >= r->sc->nauth_results) {
				fprintf(stderr, "%s: AUTH without an AUTHRESULT line\n", r->sc->name);
				r->broken = true;
				r->closed = true;
				return;
			}
			const char *what = r->sc->auth_results[r->next_auth++];
			if (strcmp(what, "busy") == 0) {
				smtp_session_auth_queued(&r->session, -EAGAIN, &r->out);
			} else {
				smtp_session_auth_queued(&r->session, 0, &r->out);
				/* While the check runs, nothing is consumed. */
				struct smtp_feed_result again = smtp_session_feed(
					&r->session, r->pending.data, r->pending.len, &r->out);
				if (again.status != SMTP_FEED_AUTH || again.consumed != 0)
					r->broken = true;
				enum smtp_auth_outcome o = SMTP_AUTH_OK;
				if (strcmp(what, "fail") == 0)
					o = SMTP_AUTH_FAILED;
				else if (strcmp(what, "tempfail") == 0)
					o = SMTP_AUTH_TEMPFAIL;
				else if (strcmp(what, "last") == 0)
					o = SMTP_AUTH_FAILED_LAST;
				else if (strcmp(what, "ok") != 0)
					r->broken = true;
				smtp_session_auth_result(&r->session, o, &r->out);
				if (smtp_session_closed(&r->session) != (o == SMTP_AUTH_FAILED_LAST))
					r->broken = true;
			}
			if (r->txn.auth_lent)
				r->broken = true;
			drain(r);
			continue;
		}
		case SMTP_FEED_STARTTLS:
			/* As core/: nothing after the STARTTLS line is kept,
			 * then the handshake completes. */
			test_buf_str(&r->txn.events, "starttls\n");
			r->pending.len = 0;
			r->tls_discard = true;
			smtp_session_tls_started(&r->session, &test_tls_info);
			return;
		case SMTP_FEED_MESSAGE: {
			struct test_buf *ev = &r->txn.events;
			test_buf_str(ev, "message ");
			buf_escaped(ev, r->txn.body.data, r->txn.body.len);
			test_buf_str(ev, "\n");
			if (!r->txn.binary && !stored_body_ok(r->txn.body.data, r->txn.body.len)) {
				fprintf(stderr, "%s: stored body is not DATA wire form\n", r->sc->name);
				r->broken = true;
			}
			/* While the record is made durable, nothing is consumed. */
			struct smtp_feed_result again =
				smtp_session_feed(&r->session, r->pending.data, r->pending.len, &r->out);
			if (again.status != SMTP_FEED_MESSAGE || again.consumed != 0)
				r->broken = true;
			if (r->next_commit >= r->sc->ncommits) {
				fprintf(stderr, "%s: message without a COMMIT line\n", r->sc->name);
				r->broken = true;
				r->closed = true;
				return;
			}
			const char *id = r->sc->commits[r->next_commit].id;
			bool ok = r->sc->commits[r->next_commit].ok;
			int err = r->sc->commits[r->next_commit].err;
			r->next_commit++;
			smtp_session_committed(&r->session, ok ? 0 : err, span_make(id, strlen(id)),
					       &r->out);
			if (ok)
				r->txn.open = false;
			r->txn.body.len = 0;
			drain(r);
			continue;
		}
		}
	}
	r->broken = true;
}

/*
 * Replays the script. split_flight/split_at: that flight arrives in two
 * pieces cut at split_at (SIZE_MAX: none); bytewise: every flight arrives
 * one byte at a time.
 */
static bool replay_run(const struct script *sc, struct smtp_policy *policy, size_t split_flight,
		       size_t split_at, bool bytewise)
{
	struct replay *r = calloc(1, sizeof(*r));
	REQUIRE(r != NULL);
	r->sc = sc;
	r->cfg.hostname = span_make(HOSTNAME, strlen(HOSTNAME));
	r->cfg.max_message_size_bytes = sc->max_size_bytes;
	r->cfg.max_recipients = sc->max_recipients;
	r->cfg.max_command_line_bytes = sc->max_line_bytes;
	r->cfg.bare_newline_normalize = sc->normalize;
	r->cfg.policy = policy;
	r->cfg.listener_mode = sc->mode;
	r->cfg.soft_error_limit = sc->soft_errors;
	r->cfg.hard_error_limit = sc->hard_errors;
	r->cfg.junk_command_limit = sc->junk_commands;
	r->cfg.greet_action = sc->greet_action;
	r->cfg.tls_offered = sc->tls;
	r->cfg.auth_offered = sc->auth;
	r->txn.sc = sc;
	r->out.buf = r->out_buf;
	r->out.cap = sizeof(r->out_buf);

	struct smtp_peer peer;
	memset(&peer, 0, sizeof(peer));
	snprintf(peer.ip, sizeof(peer.ip), "%s", sc->peer);
	peer.ipv6 = strchr(sc->peer, ':') != NULL;
	if (sc->pause)
		smtp_session_start_paused(&r->session, &r->cfg, &peer, &test_ops, &r->txn, &r->out);
	else
		smtp_session_start(&r->session, &r->cfg, &peer, &test_ops, &r->txn, &r->out);
	smtp_session_set_auth(&r->session, &test_auth_ops, &r->txn);
	if (sc->mode == SMTP_LISTENER_SMTPS)
		smtp_session_tls_started(&r->session, &test_tls_info);
	drain(r);

	size_t start = 0;
	for (size_t f = 0; f <= sc->nflights; f++) {
		if (f == sc->greet_flight && !r->closed) {
			/* The pause ends: the final 220, then what waited. */
			smtp_session_greet_final(&r->session, &r->out);
			static const uint8_t none[1];
			replay_input(r, none, 0);
			drain(r);
		}
		if (f == sc->nflights)
			break;
		r->tls_discard = false;
		const uint8_t *p = sc->client.data + start;
		size_t n = sc->flight_end[f] - start;
		if (bytewise) {
			for (size_t i = 0; i < n; i++)
				replay_input(r, p + i, 1);
		} else if (f == split_flight && split_at > 0 && split_at < n) {
			replay_input(r, p, split_at);
			replay_input(r, p + split_at, n - split_at);
		} else {
			replay_input(r, p, n);
		}
		start = sc->flight_end[f];
	}

	bool same_out = test_buf_eq(&r->transcript, &sc->server);
	bool same_events = test_buf_eq(&r->txn.events, &sc->events);
	bool all_commits = r->next_commit == sc->ncommits && r->next_auth == sc->nauth_results &&
			   smtp_session_screen(&r->session) == sc->screen;
	bool ok = same_out && same_events && all_commits && !r->broken;
	if (!ok) {
		fprintf(stderr, "%s: replay (split flight %zu at %zu, bytewise %d) differs%s%s%s%s\n",
			sc->name, split_flight == SIZE_MAX ? 0 : split_flight,
			split_at == SIZE_MAX ? 0 : split_at, (int)bytewise,
			same_out ? "" : " [transcript]", same_events ? "" : " [events]",
			all_commits ? "" : " [commits, auth results or screen differ]", r->broken ? " [contract]" : "");
		if (!same_out)
			fprintf(stderr, "--- got:\n%.*s--- want:\n%.*s---\n", (int)r->transcript.len,
				(const char *)r->transcript.data, (int)sc->server.len,
				(const char *)sc->server.data);
		if (!same_events)
			fprintf(stderr, "--- got events:\n%.*s--- want events:\n%.*s---\n",
				(int)r->txn.events.len, (const char *)r->txn.events.data,
				(int)sc->events.len, (const char *)sc->events.data);
	}
	free(r->transcript.data);
	free(r->pending.data);
	free(r->txn.events.data);
	free(r->txn.body.data);
	free(r);
	return ok;
}

static struct smtp_policy *policy_for(const struct script *sc)
{
	struct smtp_policy *p = policy_new();
	REQUIRE(p != NULL);
	for (size_t i = 0; i < sc->ndomains; i++)
		REQUIRE(policy_add_domain(p, span_make(sc->domains[i], strlen(sc->domains[i]))) == 0);
	for (size_t i = 0; i < sc->nrecipients; i++)
		REQUIRE(policy_add_recipient(p, span_make(sc->recipients[i],
							  strlen(sc->recipients[i]))) == 0);
	return p;
}

static void run_script(const char *dir, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	struct script *sc = malloc(sizeof(*sc));
	REQUIRE(sc != NULL);
	bool loaded = script_load(path, name, sc);
	CHECK(loaded);
	CHECK(sc->server.len > 0);
	if (!loaded) {
		script_free(sc);
		free(sc);
		return;
	}
	struct smtp_policy *policy = policy_for(sc);
	unsigned long replays = 1, failures = 0;
	flushes_seen = 0;

	failures += !replay_run(sc, policy, SIZE_MAX, SIZE_MAX, false);
	if (!sc->whole_only && failures == 0) {
		replays++;
		failures += !replay_run(sc, policy, SIZE_MAX, SIZE_MAX, true);
		size_t start = 0;
		for (size_t f = 0; f < sc->nflights && failures == 0; f++) {
			size_t n = sc->flight_end[f] - start;
			for (size_t k = 1; k < n && failures == 0; k++) {
				replays++;
				failures += !replay_run(sc, policy, f, k, false);
			}
			start = sc->flight_end[f];
		}
	}
	CHECK_EQ_U(failures, 0);
	printf("  %-32s %5zu client bytes, %3zu flights, %5lu replays, %5lu flushes%s\n", name,
	       sc->client.len, sc->nflights, replays, flushes_seen,
	       sc->whole_only ? " (whole only)" : "");
	policy_free(policy);
	script_free(sc);
	free(sc);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_golden_scripts(void)
{
	const char *dir = RINGMX_SOURCE_DIR "/tests/scripts";
	DIR *d = opendir(dir);
	REQUIRE(d != NULL);
	char *names[256];
	size_t count = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len > 5 && strcmp(e->d_name + len - 5, ".smtp") == 0 && count < 256) {
			names[count] = strdup(e->d_name);
			REQUIRE(names[count] != NULL);
			count++;
		}
	}
	closedir(d);
	qsort(names, count, sizeof(names[0]), name_cmp);
	CHECK(count >= 10);
	printf("golden scripts in tests/scripts:\n");
	for (size_t i = 0; i < count; i++) {
		run_script(dir, names[i]);
		free(names[i]);
	}
}

/* ---- unit checks ------------------------------------------------------------------ */

struct fixture {
	struct smtp_session_config cfg;
	struct smtp_policy *policy;
	struct script sc; /* only for the test ops' failure table */
	struct test_txn txn;
	struct smtp_session s;
	uint8_t out_buf[SMTP_REPLY_BUFFER_BYTES];
	struct smtp_out out;
};

static void fixture_start(struct fixture *fx, const char *ip, bool ipv6)
{
	memset(fx, 0, sizeof(*fx));
	fx->policy = policy_new();
	REQUIRE(fx->policy != NULL);
	REQUIRE(policy_add_domain(fx->policy, span_make("example.com", 11)) == 0);
	fx->cfg.hostname = span_make(HOSTNAME, strlen(HOSTNAME));
	fx->cfg.max_message_size_bytes = 1000;
	fx->cfg.max_recipients = 10;
	fx->cfg.max_command_line_bytes = SMTP_COMMAND_LINE_MIN_BYTES;
	fx->cfg.policy = fx->policy;
	fx->cfg.soft_error_limit = SMTP_SOFT_ERROR_LIMIT_DEFAULT;
	fx->cfg.hard_error_limit = SMTP_HARD_ERROR_LIMIT_DEFAULT;
	fx->cfg.junk_command_limit = SMTP_JUNK_COMMAND_LIMIT_DEFAULT;
	fx->txn.sc = &fx->sc;
	fx->out.buf = fx->out_buf;
	fx->out.cap = sizeof(fx->out_buf);
	struct smtp_peer peer;
	memset(&peer, 0, sizeof(peer));
	snprintf(peer.ip, sizeof(peer.ip), "%s", ip);
	peer.ipv6 = ipv6;
	smtp_session_start(&fx->s, &fx->cfg, &peer, &test_ops, &fx->txn, &fx->out);
}

static void fixture_end(struct fixture *fx)
{
	policy_free(fx->policy);
	free(fx->txn.events.data);
	free(fx->txn.body.data);
}

static struct smtp_feed_result feed_str(struct fixture *fx, const char *s)
{
	fx->out.len = 0;
	return smtp_session_feed(&fx->s, (const uint8_t *)s, strlen(s), &fx->out);
}

static bool out_is(const struct fixture *fx, const char *want)
{
	return fx->out.len == strlen(want) && memcmp(fx->out.buf, want, fx->out.len) == 0;
}

static void test_received_header(void)
{
	struct fixture fx;
	fixture_start(&fx, "192.0.2.7", false);
	struct smtp_feed_result r;
	r = feed_str(&fx, "EHLO client.example\r\n");
	CHECK(r.status == SMTP_FEED_MORE);
	r = feed_str(&fx, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n");
	CHECK(r.status == SMTP_FEED_MORE);
	CHECK(smtp_session_timeout_kind(&fx.s) == SMTP_TIMEOUT_DATA);
	r = feed_str(&fx, "hi\r\n.\r\n");
	CHECK(r.status == SMTP_FEED_MESSAGE);

	char hdr[SMTP_RECEIVED_HEADER_MAX_BYTES];
	const char *id = "0000000100000A08";
	/* 2026-11-28 16:19:30 UTC, a Saturday. */
	size_t n = smtp_session_received(&fx.s, span_make(id, strlen(id)), 1795882770, hdr, sizeof(hdr));
	const char *want = "Received: from client.example ([192.0.2.7])\r\n"
			   "\tby mx.example.test (ringmx) with ESMTP id 0000000100000A08;\r\n"
			   "\tSat, 28 Nov 2026 16:19:30 +0000\r\n";
	CHECK_MEM(hdr, n, want, strlen(want));

	/* Dates that catch off-by-one errors in the civil conversion. */
	static const struct {
		int64_t t;
		const char *date;
	} dates[] = {
		{ 0, "Thu, 01 Jan 1970 00:00:00 +0000" },
		{ 951782400, "Tue, 29 Feb 2000 00:00:00 +0000" },
		{ 951868799, "Tue, 29 Feb 2000 23:59:59 +0000" },
		{ 1078099199, "Sun, 29 Feb 2004 23:59:59 +0000" },
		{ 4107542399, "Sun, 28 Feb 2100 23:59:59 +0000" },
		{ 4107542400, "Mon, 01 Mar 2100 00:00:00 +0000" },
		{ 1704067199, "Sun, 31 Dec 2023 23:59:59 +0000" },
		{ 253402300799, "Fri, 31 Dec 9999 23:59:59 +0000" },
	};
	for (size_t i = 0; i < RMX_ARRAY_LEN(dates); i++) {
		n = smtp_session_received(&fx.s, span_make(id, strlen(id)), dates[i].t, hdr, sizeof(hdr));
		REQUIRE(n > 35);
		/* The date is the last line: "\t" DATE "\r\n". */
		CHECK_MEM(hdr + n - 2 - strlen(dates[i].date), strlen(dates[i].date), dates[i].date,
			  strlen(dates[i].date));
	}
	CHECK_EQ_U(smtp_session_received(&fx.s, span_make(id, strlen(id)), -1, hdr, sizeof(hdr)), 0);
	CHECK_EQ_U(smtp_session_received(&fx.s, span_make(id, strlen(id)), 0, hdr, 40), 0);

	fx.out.len = 0;
	smtp_session_committed(&fx.s, 0, span_make(id, strlen(id)), &fx.out);
	CHECK(out_is(&fx, "250 2.0.0 Ok: queued as 0000000100000A08\r\n"));
	fixture_end(&fx);

	/* IPv6 literal, HELO (SMTP) and SMTPUTF8 (UTF8SMTP). */
	fixture_start(&fx, "2001:db8::25", true);
	r = feed_str(&fx, "HELO old.example\r\n");
	r = feed_str(&fx, "MAIL FROM:<a@b.example>\r\n");
	r = feed_str(&fx, "RCPT TO:<u@example.com>\r\n");
	r = feed_str(&fx, "DATA\r\n");
	r = feed_str(&fx, ".\r\n");
	CHECK(r.status == SMTP_FEED_MESSAGE);
	n = smtp_session_received(&fx.s, span_make("Q1", 2), 0, hdr, sizeof(hdr));
	want = "Received: from old.example ([IPv6:2001:db8::25])\r\n"
	       "\tby mx.example.test (ringmx) with SMTP id Q1;\r\n"
	       "\tThu, 01 Jan 1970 00:00:00 +0000\r\n";
	CHECK_MEM(hdr, n, want, strlen(want));
	smtp_session_committed(&fx.s, 0, span_make("Q1", 2), &fx.out);
	fixture_end(&fx);

	fixture_start(&fx, "::1", true);
	r = feed_str(&fx, "EHLO [IPv6:::1]\r\n");
	r = feed_str(&fx, "MAIL FROM:<a@b.example> SMTPUTF8\r\nRCPT TO:<u@example.com>\r\nDATA\r\n");
	r = feed_str(&fx, "x\r\n.\r\n");
	CHECK(r.status == SMTP_FEED_MESSAGE);
	n = smtp_session_received(&fx.s, span_make("Q2", 2), 0, hdr, sizeof(hdr));
	want = "Received: from [IPv6:::1] ([IPv6:::1])\r\n"
	       "\tby mx.example.test (ringmx) with UTF8SMTP id Q2;\r\n"
	       "\tThu, 01 Jan 1970 00:00:00 +0000\r\n";
	CHECK_MEM(hdr, n, want, strlen(want));
	CHECK(smtp_session_helo(&fx.s).len == strlen("[IPv6:::1]"));
	fixture_end(&fx);

	/* Under STARTTLS: ESMTPS (RFC 3848) and the TLS version and cipher. */
	fixture_start(&fx, "192.0.2.9", false);
	fx.cfg.tls_offered = true;
	r = feed_str(&fx, "EHLO client.example\r\n");
	r = feed_str(&fx, "STARTTLS\r\nMAIL FROM:<injected@example.net>\r\n");
	CHECK(r.status == SMTP_FEED_STARTTLS && r.consumed == strlen("STARTTLS\r\n"));
	CHECK(!smtp_session_tls_active(&fx.s));
	static const struct smtp_tls_info tls = { "TLSv1.3", "TLS_AES_128_GCM_SHA256" };
	smtp_session_tls_started(&fx.s, &tls);
	CHECK(smtp_session_tls_active(&fx.s));
	CHECK(smtp_session_helo(&fx.s).len == 0);
	r = feed_str(&fx, "EHLO again.example\r\n");
	r = feed_str(&fx, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n");
	r = feed_str(&fx, "x\r\n.\r\n");
	CHECK(r.status == SMTP_FEED_MESSAGE);
	CHECK(strcmp(smtp_session_protocol(&fx.s), "ESMTPS") == 0);
	n = smtp_session_received(&fx.s, span_make("Q3", 2), 0, hdr, sizeof(hdr));
	want = "Received: from again.example ([192.0.2.9])\r\n"
	       "\t(version=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256)\r\n"
	       "\tby mx.example.test (ringmx) with ESMTPS id Q3;\r\n"
	       "\tThu, 01 Jan 1970 00:00:00 +0000\r\n";
	CHECK_MEM(hdr, n, want, strlen(want));
	fixture_end(&fx);
}

static void test_events_outside_feed(void)
{
	struct fixture fx;
	struct smtp_feed_result r;

	fixture_start(&fx, "192.0.2.1", false);
	CHECK(out_is(&fx, "220 mx.example.test ESMTP ringmx\r\n"));
	CHECK(smtp_session_timeout_kind(&fx.s) == SMTP_TIMEOUT_IDLE);
	CHECK(!smtp_session_in_transaction(&fx.s));
	r = feed_str(&fx, "EHLO c.example\r\n");
	r = feed_str(&fx, "MAIL FROM:<>\r\n");
	CHECK(out_is(&fx, "250 2.1.0 Ok\r\n"));
	CHECK(smtp_session_in_transaction(&fx.s));
	CHECK(smtp_session_timeout_kind(&fx.s) == SMTP_TIMEOUT_COMMAND);
	fx.out.len = 0;
	smtp_session_timeout(&fx.s, &fx.out);
	CHECK(out_is(&fx, "421 4.4.2 mx.example.test Error: timeout exceeded\r\n"));
	CHECK(!smtp_session_in_transaction(&fx.s));
	CHECK_MEM(fx.txn.events.data, fx.txn.events.len, "mail <>\nreset\n", 14);
	r = feed_str(&fx, "NOOP\r\n");
	CHECK(r.status == SMTP_FEED_CLOSE && r.consumed == 0 && fx.out.len == 0);
	fixture_end(&fx);

	fixture_start(&fx, "192.0.2.1", false);
	fx.out.len = 0;
	smtp_session_shutdown(&fx.s, &fx.out);
	CHECK(out_is(&fx, "421 4.3.2 mx.example.test Service shutting down\r\n"));
	fixture_end(&fx);

	/* BDAT chunk in progress: the DATA deadline applies. */
	fixture_start(&fx, "192.0.2.1", false);
	r = feed_str(&fx, "EHLO c.example\r\n");
	r = feed_str(&fx, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nBDAT 10\r\nabc");
	CHECK(r.status == SMTP_FEED_MORE);
	CHECK(smtp_session_timeout_kind(&fx.s) == SMTP_TIMEOUT_DATA);
	r = feed_str(&fx, "defghij");
	CHECK(out_is(&fx, "250 2.0.0 10 octets received\r\n"));
	CHECK(smtp_session_timeout_kind(&fx.s) == SMTP_TIMEOUT_COMMAND);
	fixture_end(&fx);

	/* A deadline while the record is being made durable: 421, but the
	 * record belongs to the caller, so no reset. */
	fixture_start(&fx, "192.0.2.1", false);
	r = feed_str(&fx, "EHLO c.example\r\n");
	r = feed_str(&fx, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n");
	r = feed_str(&fx, "x\r\n.\r\nNOOP\r\n");
	CHECK(r.status == SMTP_FEED_MESSAGE && r.consumed == 6);
	CHECK(smtp_session_in_transaction(&fx.s));
	r = feed_str(&fx, "NOOP\r\n");
	CHECK(r.status == SMTP_FEED_MESSAGE && r.consumed == 0 && fx.out.len == 0);
	fx.out.len = 0;
	smtp_session_shutdown(&fx.s, &fx.out);
	CHECK(out_is(&fx, "421 4.3.2 mx.example.test Service shutting down\r\n"));
	const char *events = "mail <a@b.example>\nrcpt <u@example.com>\nbegin\n";
	CHECK_MEM(fx.txn.events.data, fx.txn.events.len, events, strlen(events));
	fixture_end(&fx);

	/* Too many connections: the reply core/ sends without a session. */
	uint8_t small[SMTP_REPLY_BUFFER_BYTES];
	struct smtp_out out = { small, 0, sizeof(small) };
	size_t n = smtp_reply_too_many_connections(span_make(HOSTNAME, strlen(HOSTNAME)), &out);
	const char *want = "421 4.3.2 mx.example.test Error: too many connections\r\n";
	CHECK_MEM(out.buf, out.len, want, strlen(want));
	CHECK_EQ_U(n, strlen(want));
	out.len = 0;
	static const struct {
		enum smtp_refusal why;
		const char *want;
	} refusals[] = {
		{ SMTP_REFUSE_OVERLOAD,
		  "421 4.3.2 mx.example.test Service temporarily overloaded, try again later\r\n" },
		{ SMTP_REFUSE_CLIENT_CONNECTIONS,
		  "421 4.7.0 mx.example.test Error: too many connections from your address\r\n" },
		{ SMTP_REFUSE_CLIENT_RATE, "421 4.7.0 mx.example.test Error: too many connections from "
					   "your address, try again later\r\n" },
	};
	for (size_t i = 0; i < RMX_ARRAY_LEN(refusals); i++) {
		out.len = 0;
		n = smtp_reply_refuse_connection(span_make(HOSTNAME, strlen(HOSTNAME)),
						 refusals[i].why, &out);
		CHECK_MEM(out.buf, out.len, refusals[i].want, strlen(refusals[i].want));
		CHECK_EQ_U(n, strlen(refusals[i].want));
	}
	out.len = out.cap - 10;
	CHECK_EQ_U(smtp_reply_too_many_connections(span_make(HOSTNAME, strlen(HOSTNAME)), &out), 0);
	CHECK_EQ_U(out.len, out.cap - 10);
}

static void test_reply_catalogue(void)
{
	uint8_t b[SMTP_REPLY_BUFFER_BYTES];
	struct smtp_out out = { b, 0, sizeof(b) };
	/* Every row: code digits, a separator, an enhanced code whose class
	 * matches the basic code (RFC 3463), CRLF. */
	for (int id = 0; id < SMTP_REPLY_COUNT; id++) {
		out.len = 0;
		unsigned code = smtp_reply_code((enum smtp_reply_id)id);
		size_t n = smtp_reply_put(&out, (enum smtp_reply_id)id, span_make("", 0), false);
		CHECK(n >= 6);
		CHECK(b[0] == (uint8_t)('0' + code / 100));
		CHECK(b[3] == ' ');
		CHECK(b[n - 2] == '\r' && b[n - 1] == '\n');
		bool greeting = id <= SMTP_R_EHLO_AUTH || id == SMTP_R_DATA_GO ||
				id == SMTP_R_AUTH_CHALLENGE;
		if (!greeting) {
			CHECK(b[4] == b[0] && b[5] == '.');
		}
	}
	CHECK(smtp_reply_counts_as_error(SMTP_R_UNKNOWN_COMMAND));
	CHECK(!smtp_reply_counts_as_error(SMTP_R_TOO_MANY_RECIPIENTS));
	CHECK(!smtp_reply_counts_as_error(SMTP_R_QUEUE_WRITE_ERROR));
	out.len = 0;
	CHECK(smtp_reply_put(&out, SMTP_R_OK, span_make("", 0), true) == 14);
	CHECK_MEM(b, out.len, "250-2.0.0 Ok\r\n", 14);
	out.len = out.cap - 13;
	CHECK_EQ_U(smtp_reply_put(&out, SMTP_R_OK, span_make("", 0), false), 0);
}

/* ---- random conversations ---------------------------------------------------- */

/*
 * A record builder that checks the order of calls the session makes:
 * mail only outside a transaction, rcpt inside one, data_begin once after
 * at least one rcpt, data_append only after data_begin. Any violation is a
 * session bug.
 */
struct strict_txn {
	bool open;
	bool begun;
	bool binary;
	unsigned rcpts;
	unsigned violations;
	unsigned messages;
	struct test_buf body;
};

static int strict_mail(void *ctx, const struct smtp_mail_info *m)
{
	struct strict_txn *t = ctx;
	t->violations += t->open;
	t->open = true;
	t->begun = false;
	t->rcpts = 0;
	t->binary = m->params->body == SMTP_BODY_BINARYMIME;
	return 0;
}

static int strict_rcpt(void *ctx, struct span forward_path)
{
	struct strict_txn *t = ctx;
	t->violations += !t->open || t->begun || forward_path.len == 0;
	t->rcpts++;
	return 0;
}

static int strict_data_begin(void *ctx)
{
	struct strict_txn *t = ctx;
	t->violations += !t->open || t->begun || t->rcpts == 0;
	t->begun = true;
	t->body.len = 0;
	return 0;
}

static int strict_data_append(void *ctx, const uint8_t *p, size_t n)
{
	struct strict_txn *t = ctx;
	t->violations += !t->begun || n == 0;
	test_buf_put(&t->body, p, n);
	return 0;
}

static void strict_reset(void *ctx)
{
	struct strict_txn *t = ctx;
	t->open = false;
	t->begun = false;
	t->body.len = 0;
}

static const struct smtp_txn_ops strict_ops = {
	.mail = strict_mail,
	.rcpt = strict_rcpt,
	.data_begin = strict_data_begin,
	.data_append = strict_data_append,
	.reset = strict_reset,
};

static uint64_t conv_rng = 0x243f6a8885a308d3ull;

static size_t conv_below(size_t n)
{
	conv_rng ^= conv_rng >> 12;
	conv_rng ^= conv_rng << 25;
	conv_rng ^= conv_rng >> 27;
	return (size_t)((conv_rng * 0x2545f4914f6cdd1dull) % n);
}

/* Token boundaries of a conversation: each token is one write by the
 * client (a command and what a pipelining client may send with it). */
#define CONV_MAX_TOKENS 256

struct conversation {
	struct test_buf bytes;
	size_t token_end[CONV_MAX_TOKENS];
	size_t ntokens;
};

static void conv_token(struct conversation *c, const char *text, size_t len)
{
	if (c->ntokens == CONV_MAX_TOKENS)
		return;
	test_buf_put(&c->bytes, text, len);
	c->token_end[c->ntokens++] = c->bytes.len;
}

static void conv_str(struct conversation *c, const char *text)
{
	conv_token(c, text, strlen(text));
}

/* Mostly well-formed transactions (DATA and BDAT, pipelined or not), with
 * noise mixed in: junk bytes, bare CR/LF, long lines, stray commands. */
static void random_conversation(struct conversation *c)
{
	static const char *const noise[] = {
		"HELO a.example\r\n", "RSET\r\n", "NOOP\r\n", "QUIT\r\n", ".\r\n",
		"\r\n.\r\n", "\n", "\r", ".", "\0", "..\r\n", "VRFY x\r\n", "BDAT junk\r\n",
		"RCPT TO:<x@other.example>\r\n", "MAIL FROM:<a@b.example> SIZE=50\r\n",
		"Received: x\r\n", "DATA\r\n", "BDAT 0 LAST\r\n", "x\n.\r\n", "x\r.\r\n",
	};
	static const char *const body_lines[] = {
		"Subject: hi\r\n", "\r\n", "text\r\n", ".\r\n", "..dot\r\n", "Received: y\r\n",
		"bare\nlf\r\n", "bare\rcr\r\n", "\n.\n", "\r.\r\n", "\0.\r\n",
	};
	c->bytes.len = 0;
	c->ntokens = 0;
	conv_str(c, "EHLO a.example\r\n");
	for (size_t txn = 0, ntxn = 1 + conv_below(4); txn < ntxn; txn++) {
		bool binary = conv_below(5) == 0;
		bool bdat = binary || conv_below(2) == 0;
		char group[512] = "";
		strcat(group, binary ? "MAIL FROM:<> BODY=BINARYMIME\r\n" : "MAIL FROM:<a@b.example>\r\n");
		for (size_t r = 0, nr = 1 + conv_below(3); r < nr; r++)
			strcat(group, conv_below(4) ? "RCPT TO:<u@example.com>\r\n"
						    : "RCPT TO:<x@other.example>\r\n");
		if (!bdat) {
			strcat(group, "DATA\r\n");
			conv_str(c, group);
			for (size_t l = 0, nl = conv_below(8); l < nl; l++)
				conv_str(c, body_lines[conv_below(RMX_ARRAY_LEN(body_lines))]);
			conv_str(c, ".\r\n");
		} else {
			conv_str(c, group);
			for (size_t k = 0, nk = 1 + conv_below(3); k < nk; k++) {
				char chunk[128];
				const char *line = body_lines[conv_below(RMX_ARRAY_LEN(body_lines))];
				size_t len = strlen(line) + (line[0] == '\0');
				int head = snprintf(chunk, sizeof(chunk), "BDAT %zu%s\r\n", len,
						    k + 1 == nk ? " LAST" : "");
				REQUIRE(head > 0 && (size_t)head + len < sizeof(chunk));
				memcpy(chunk + head, line, len);
				conv_token(c, chunk, (size_t)head + len);
			}
		}
		if (conv_below(3) == 0) {
			size_t pick = conv_below(RMX_ARRAY_LEN(noise) + 2);
			if (pick < RMX_ARRAY_LEN(noise)) {
				const char *n = noise[pick];
				conv_token(c, n, n[0] == '\0' ? 1 : strlen(n));
			} else if (pick == RMX_ARRAY_LEN(noise)) {
				char junk[24];
				for (size_t k = 0; k < sizeof(junk); k++)
					junk[k] = (char)conv_below(256);
				conv_token(c, junk, sizeof(junk));
			} else {
				char lng[700];
				memset(lng, 'y', sizeof(lng));
				conv_token(c, lng, sizeof(lng));
			}
		}
	}
	conv_str(c, "QUIT\r\n");
}

/* Random command streams at random split points: no assertion fires, the
 * call order on the record builder is always legal, every stored text body
 * is DATA wire form, and unconsumed input is only ever a partial line. */
static void test_random_conversations(void)
{
	enum { TRIALS = 4000 };
	struct smtp_policy *policy = policy_new();
	REQUIRE(policy != NULL);
	REQUIRE(policy_add_domain(policy, span_make("example.com", 11)) == 0);
	struct conversation conv = { 0 };
	struct test_buf pending = { 0 };
	unsigned long violations = 0, messages = 0, closes = 0, bad_bodies = 0, bad_carry = 0;

	for (unsigned t = 0; t < TRIALS; t++) {
		struct smtp_session_config cfg = {
			.hostname = span_make(HOSTNAME, strlen(HOSTNAME)),
			.max_message_size_bytes = 40 + conv_below(400),
			.max_recipients = 1 + (uint32_t)conv_below(4),
			.max_command_line_bytes = SMTP_COMMAND_LINE_MIN_BYTES,
			.bare_newline_normalize = conv_below(2) == 0,
			.policy = policy,
			.soft_error_limit = SMTP_SOFT_ERROR_LIMIT_DEFAULT,
			.hard_error_limit = SMTP_HARD_ERROR_LIMIT_DEFAULT,
			.junk_command_limit = SMTP_JUNK_COMMAND_LIMIT_DEFAULT,
		};
		struct smtp_peer peer = { "192.0.2.9", false };
		struct strict_txn txn = { 0 };
		uint8_t out_buf[SMTP_REPLY_BUFFER_BYTES];
		struct smtp_out out = { out_buf, 0, sizeof(out_buf) };
		struct smtp_session s;
		smtp_session_start(&s, &cfg, &peer, &strict_ops, &txn, &out);

		pending.len = 0;
		random_conversation(&conv);
		const struct test_buf *in = &conv.bytes;
		size_t pos = 0, token = 0;
		bool closed = false;
		while (pos < in->len && !closed) {
			/* A piece never crosses into the next token (the client waits
			 * for replies), except now and then, as a pipelining client
			 * or a network would merge writes. */
			while (token < conv.ntokens && conv.token_end[token] <= pos)
				token++;
			size_t limit = conv.token_end[token] - pos;
			if (conv_below(10) == 0)
				limit = in->len - pos;
			size_t piece = 1 + conv_below(RMX_MIN(limit, (size_t)64));
			test_buf_put(&pending, in->data + pos, piece);
			pos += piece;
			for (;;) {
				out.len = 0;
				struct smtp_feed_result r =
					smtp_session_feed(&s, pending.data, pending.len, &out);
				REQUIRE(r.consumed <= pending.len);
				test_buf_drop_front(&pending, r.consumed);
				if (r.status == SMTP_FEED_MORE) {
					bad_carry += pending.len >= cfg.max_command_line_bytes;
					break;
				}
				if (r.status == SMTP_FEED_CLOSE) {
					closed = true;
					closes++;
					break;
				}
				if (r.status == SMTP_FEED_MESSAGE) {
					messages++;
					violations += !txn.begun;
					if (!txn.binary && !stored_body_ok(txn.body.data, txn.body.len))
						bad_bodies++;
					bool ok = conv_below(4) != 0;
					smtp_session_committed(&s, ok ? 0 : -EIO, span_make("Q", 1), &out);
					if (ok) {
						txn.open = false;
						txn.begun = false;
					}
				}
			}
		}
		violations += txn.violations;
		free(txn.body.data);
	}
	CHECK_EQ_U(violations, 0);
	CHECK_EQ_U(bad_bodies, 0);
	CHECK_EQ_U(bad_carry, 0);
	CHECK(messages > 50);
	CHECK(closes > 50);
	printf("random conversations: %u trials, %lu messages, %lu closed\n", (unsigned)TRIALS,
	       messages, closes);
	free(conv.bytes.data);
	free(pending.data);
	policy_free(policy);
}

/*
 * A command line of max_command_line bytes (the largest allowed) arriving a
 * byte per read, presented as core/ presents it: what the session left
 * unconsumed first, then the new byte. The session must scan each byte
 * once (counted by its lexer, not timed), and answer the line as it would
 * whole; one byte more is 500 5.5.2 just the same.
 */
static void trickle_line(struct fixture *fx, const uint8_t *line, size_t len, uint32_t *examined)
{
	uint8_t *pending = malloc(len);
	REQUIRE(pending != NULL);
	size_t pending_len = 0;
	uint32_t before = fx->s.lex.examined_bytes;
	fx->out.len = 0;
	for (size_t i = 0; i < len; i++) {
		pending[pending_len++] = line[i];
		struct smtp_feed_result r =
			smtp_session_feed(&fx->s, pending, pending_len, &fx->out);
		REQUIRE(r.consumed <= pending_len);
		memmove(pending, pending + r.consumed, pending_len - r.consumed);
		pending_len -= r.consumed;
		if (i + 1 < len && r.status != SMTP_FEED_MORE) {
			CHECK(r.status == SMTP_FEED_MORE);
			break;
		}
	}
	CHECK_EQ_U(pending_len, 0);
	*examined = fx->s.lex.examined_bytes - before;
	free(pending);
}

static void test_longest_line_trickled(void)
{
	struct fixture fx;
	fixture_start(&fx, "192.0.2.9", false);
	fx.cfg.max_command_line_bytes = SMTP_COMMAND_LINE_MAX_BYTES;
	smtp_session_start(&fx.s, &fx.cfg, &(struct smtp_peer){ .ip = "192.0.2.9" }, &test_ops,
			   &fx.txn, &fx.out);
	CHECK(feed_str(&fx, "EHLO client.example\r\n").status == SMTP_FEED_MORE);

	const size_t max = SMTP_COMMAND_LINE_MAX_BYTES;
	uint8_t *line = malloc(max + 1);
	REQUIRE(line != NULL);
	memcpy(line, "NOOP ", 5);
	memset(line + 5, 'n', max - 7);
	line[max - 2] = '\r';
	line[max - 1] = '\n';
	uint32_t examined = 0;
	trickle_line(&fx, line, max, &examined);
	printf("%zu-byte command line trickled a byte per read: %" PRIu32 " bytes examined\n",
	       max, examined);
	CHECK(examined <= 2 * max);
	CHECK(out_is(&fx, "250 2.0.0 Ok\r\n"));

	/* One byte over the bound: refused at the bound, the rest discarded. */
	memset(line + 5, 'n', max - 6);
	line[max - 1] = '\r';
	line[max] = '\n';
	trickle_line(&fx, line, max + 1, &examined);
	CHECK(examined <= 2 * max);
	CHECK(fx.out.len > 4 && memcmp(fx.out.buf, "500 5.5.2 ", 10) == 0);
	CHECK(feed_str(&fx, "NOOP\r\n").status == SMTP_FEED_MORE);
	CHECK(out_is(&fx, "250 2.0.0 Ok\r\n"));
	free(line);
	fixture_end(&fx);
}

int main(void)
{
	printf("sizeof(struct smtp_session) = %zu bytes\n", sizeof(struct smtp_session));
	CHECK(sizeof(struct smtp_session) < 1024);
	test_reply_catalogue();
	test_received_header();
	test_events_outside_feed();
	test_longest_line_trickled();
	test_golden_scripts();
	test_random_conversations();
	return test_main_end("test_smtp_session");
}
