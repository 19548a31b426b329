/*
 * dsn.c - builds a delivery status notification (RFC 3464 in an RFC 6522
 * multipart/report; RFC 6533 when addresses are internationalised).
 *
 * Sits after the forwarder: when recipients fail for good or stay delayed,
 * it hands their outcomes and the stored original to dsn_build(), stores the
 * result as a new message from <> and forwards it like any other. The output
 * is DATA wire form, like every stored body (DESIGN.md rule 5).
 *
 * Invariants:
 *  - every byte goes through proto/dsn_writer, which counts what it would
 *    write and writes only what fits, so a dry run and a real run agree on
 *    the length and nothing lands at or past buf + cap; it ends every line
 *    in CRLF within DSN_LINE_MAX_BYTES and doubles a '.' opening a line;
 *  - text from clients and upstreams (addresses, diagnostics, host names)
 *    is made safe (dsn_put_safe, dsn_text_append_safe) before it is
 *    written; the original's header lines go through dsn_put_headers, and
 *    part 3 declares 8bit only when that plan says 8-bit bytes are in it;
 *  - the MIME boundary occurs in no input span, so no line of any part can
 *    be taken for a delimiter. Generated text never contains "=_".
 */
#include "dsn.h"

#include <string.h>

#include "dsn_writer.h"

/* ---- the MIME boundary --------------------------------------------------- */

/* "=_ringmx_" <queue id> "." <token> [ "." 8 hex digits ] */
#define BOUNDARY_PREFIX "=_ringmx_"
#define BOUNDARY_PART_MAX_BYTES 24
#define BOUNDARY_SUFFIX_BYTES 9
#define BOUNDARY_WINDOW 4096
_Static_assert(sizeof BOUNDARY_PREFIX - 1 + 2 * BOUNDARY_PART_MAX_BYTES + 1 +
			       BOUNDARY_SUFFIX_BYTES <=
		       DSN_BOUNDARY_MAX_BYTES,
	       "the longest boundary is legal (RFC 2046 5.1.1)");

struct boundary {
	size_t len;
	uint8_t bytes[DSN_BOUNDARY_MAX_BYTES];
};

/* Occurrences of the base boundary in the input, and which of the suffixed
 * candidates [window, window + BOUNDARY_WINDOW) they rule out. */
struct boundary_scan {
	const uint8_t *base;
	size_t base_len;
	uint32_t window;
	bool base_seen;
	uint64_t taken[BOUNDARY_WINDOW / 64];
};

static bool is_alnum(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static void boundary_append_token(struct boundary *b, struct span s)
{
	size_t start = b->len;
	for (size_t i = 0; i < s.len && b->len - start < BOUNDARY_PART_MAX_BYTES; i++) {
		if (is_alnum(s.ptr[i]))
			b->bytes[b->len++] = s.ptr[i];
	}
	if (b->len == start)
		b->bytes[b->len++] = '0';
}

static int hex_value(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void boundary_scan_span(struct boundary_scan *sc, struct span s)
{
	if (s.len < sc->base_len)
		return;
	const uint8_t *p = s.ptr;
	const uint8_t *end = s.ptr + s.len;
	while ((size_t)(end - p) >= sc->base_len) {
		const uint8_t *hit = memmem(p, (size_t)(end - p), sc->base, sc->base_len);
		if (hit == NULL)
			return;
		sc->base_seen = true;
		p = hit + 1;
		const uint8_t *suffix = hit + sc->base_len;
		if ((size_t)(end - suffix) < BOUNDARY_SUFFIX_BYTES || suffix[0] != '.')
			continue;
		uint32_t v = 0;
		bool hex8 = true;
		for (size_t i = 1; i < BOUNDARY_SUFFIX_BYTES && hex8; i++) {
			int h = hex_value(suffix[i]);
			hex8 = h >= 0;
			v = (v << 4) | (uint32_t)(h & 0xf);
		}
		if (hex8 && v - sc->window < BOUNDARY_WINDOW)
			sc->taken[(v - sc->window) / 64] |= 1ull << ((v - sc->window) % 64);
	}
}

/* Every span whose bytes can reach the message. */
static void boundary_scan_input(struct boundary_scan *sc, const struct dsn_input *in)
{
	memset(sc->taken, 0, sizeof sc->taken);
	boundary_scan_span(sc, in->original);
	boundary_scan_span(sc, in->to);
	boundary_scan_span(sc, in->reporting_mta);
	boundary_scan_span(sc, in->queue_id);
	boundary_scan_span(sc, in->message_id_token);
	for (uint32_t i = 0; i < in->recipient_count; i++) {
		const struct dsn_recipient *r = &in->recipients[i];
		boundary_scan_span(sc, r->address);
		boundary_scan_span(sc, r->status);
		boundary_scan_span(sc, r->remote_mta);
		boundary_scan_span(sc, r->diagnostic);
	}
}

/*
 * The boundary: the base made of the queue id and the token when it occurs
 * in no input; else the base with the first suffix ".%08x" that occurs in
 * none. One occurrence of the base rules out at most one suffix (they have
 * a fixed width), so a window with a free suffix is always found.
 */
static void choose_boundary(const struct dsn_input *in, struct boundary *b)
{
	b->len = 0;
	memcpy(b->bytes, BOUNDARY_PREFIX, sizeof BOUNDARY_PREFIX - 1);
	b->len = sizeof BOUNDARY_PREFIX - 1;
	boundary_append_token(b, in->queue_id);
	b->bytes[b->len++] = '.';
	boundary_append_token(b, in->message_id_token);

	struct boundary_scan sc = { b->bytes, b->len, 0, false, { 0 } };
	boundary_scan_input(&sc, in);
	if (!sc.base_seen)
		return;
	for (;;) {
		for (uint32_t i = 0; i < BOUNDARY_WINDOW; i++) {
			if (sc.taken[i / 64] & (1ull << (i % 64)))
				continue;
			static const char hex[] = "0123456789abcdef";
			uint32_t v = sc.window + i;
			b->bytes[b->len++] = '.';
			for (int d = 7; d >= 0; d--)
				b->bytes[b->len++] = (uint8_t)hex[(v >> (4 * d)) & 0xf];
			RMX_ASSERT(b->len <= DSN_BOUNDARY_MAX_BYTES);
			return;
		}
		RMX_ASSERT(sc.window <= UINT32_MAX - 2 * BOUNDARY_WINDOW);
		sc.window += BOUNDARY_WINDOW;
		boundary_scan_input(&sc, in);
	}
}

static void w_delimiter(struct dsn_writer *w, const struct boundary *b, bool last)
{
	dsn_put_str(w, "--");
	dsn_put_text(w, b->bytes, b->len);
	if (last)
		dsn_put_str(w, "--");
	dsn_put_eol(w);
}

/* ---- the three parts ------------------------------------------------------- */

/* What the builder learns about the input before it writes. */
struct dsn_facts {
	bool any_failed;
	bool any_delayed;
	bool to_8bit;
	bool addresses_8bit; /* some recipient's address */
	bool global;         /* RFC 6533 types */
	struct dsn_headers_plan headers;
	struct boundary boundary;
};

static const char *action_name(enum dsn_action a)
{
	return a == DSN_ACTION_DELAYED ? "delayed" : "failed";
}

/* An RFC 3463 status code: class "." subject "." detail, "5.123.456" at most. */
struct status_code {
	size_t len;
	uint8_t bytes[9];
};

/*
 * The status for the report: the caller's when it is an RFC 3463 code, with
 * the class set by the action (5 for failed, 4 for delayed: RFC 3464
 * 2.3.4, so a 4xx whose retries ran out reads 5.x.x); else X.0.0.
 */
static struct status_code recipient_status(const struct dsn_recipient *r)
{
	struct status_code code;
	const uint8_t *s = r->status.ptr;
	size_t n = r->status.len;
	size_t dots = 0, run = 0;
	bool ok = n >= 5 && n <= sizeof code.bytes && (s[0] == '2' || s[0] == '4' || s[0] == '5') &&
		  s[1] == '.';
	for (size_t i = 2; ok && i < n; i++) {
		if (s[i] == '.') {
			ok = run > 0 && dots == 0;
			dots++;
			run = 0;
		} else {
			ok = s[i] >= '0' && s[i] <= '9' && ++run <= 3;
		}
	}
	ok = ok && dots == 1 && run > 0;
	if (ok) {
		memcpy(code.bytes, s, n);
		code.len = n;
	} else {
		memcpy(code.bytes, "5.0.0", 5);
		code.len = 5;
	}
	code.bytes[0] = r->action == DSN_ACTION_DELAYED ? '4' : '5';
	return code;
}

/* An SMTP reply starts with a reply code (RFC 5321 4.2); anything else is
 * our own account of a failure. */
static bool looks_like_smtp_reply(struct span diagnostic)
{
	const uint8_t *s = diagnostic.ptr;
	return diagnostic.len >= 3 && s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' &&
	       s[2] >= '0' && s[2] <= '9' && (diagnostic.len == 3 || s[3] == ' ' || s[3] == '-');
}

/* One recipient in the explanation: "<address>: host <remote> said:
 * <diagnostic>", or without a diagnostic "<address>: delivery failed
 * (status 5.4.7), last tried at host <remote>"; wrapped, indented. */
static void w_recipient_explanation(struct dsn_writer *w, const struct dsn_recipient *r)
{
	struct dsn_text_buf diagnostic;
	diagnostic.len = 0;
	dsn_text_append_safe(&diagnostic, r->diagnostic, DSN_SAFE_TEXT, DSN_DIAGNOSTIC_MAX_BYTES);

	struct dsn_text_buf t;
	t.len = 0;
	dsn_text_append(&t, "<");
	dsn_text_append_safe(&t, r->address, DSN_SAFE_TEXT, DSN_ADDRESS_MAX_BYTES);
	dsn_text_append(&t, ">: ");
	if (diagnostic.len > 0) {
		if (r->remote_mta.len > 0) {
			dsn_text_append(&t, "host ");
			dsn_text_append_safe(&t, r->remote_mta, DSN_SAFE_HOST, DSN_HOST_MAX_BYTES);
			dsn_text_append(&t, " said: ");
		}
		RMX_ASSERT(diagnostic.len <= sizeof t.bytes - t.len);
		memcpy(t.bytes + t.len, diagnostic.bytes, diagnostic.len);
		t.len += diagnostic.len;
	} else {
		struct status_code code = recipient_status(r);
		dsn_text_append(&t, r->action == DSN_ACTION_DELAYED ? "not delivered yet (status "
							     : "delivery failed (status ");
		RMX_ASSERT(code.len <= sizeof t.bytes - t.len);
		memcpy(t.bytes + t.len, code.bytes, code.len);
		t.len += code.len;
		dsn_text_append(&t, ")");
		if (r->remote_mta.len > 0) {
			dsn_text_append(&t, ", last tried at host ");
			dsn_text_append_safe(&t, r->remote_mta, DSN_SAFE_HOST, DSN_HOST_MAX_BYTES);
		}
	}
	dsn_put_wrapped(w, t.bytes, t.len, false, "    ");
	dsn_put_eol(w);
}

static void w_part_text(struct dsn_writer *w, const struct dsn_input *in,
			const struct dsn_facts *f)
{
	dsn_put_line(w, "Content-Description: Notification");
	dsn_put_line(w, "Content-Type: text/plain; charset=us-ascii");
	dsn_put_eol(w);
	dsn_put_str(w, "This is the mail system at host ");
	dsn_put_safe(w, in->reporting_mta, DSN_SAFE_HOST, DSN_HOST_MAX_BYTES);
	dsn_put_str(w, ".");
	dsn_put_eol(w);
	dsn_put_eol(w);
	for (int pass = 0; pass < 2; pass++) {
		enum dsn_action action = pass == 0 ? DSN_ACTION_FAILED : DSN_ACTION_DELAYED;
		if (!(action == DSN_ACTION_FAILED ? f->any_failed : f->any_delayed))
			continue;
		if (action == DSN_ACTION_FAILED) {
			dsn_put_line(w, "Your message could not be delivered to the recipients below.");
			dsn_put_line(w, "The errors are permanent: it will not be tried again for them.");
		} else {
			dsn_put_line(w, "Your message has not been delivered yet to the recipients below.");
			dsn_put_line(w, "Delivery will be tried again; you need not send it again.");
		}
		dsn_put_eol(w);
		for (uint32_t i = 0; i < in->recipient_count; i++) {
			if (in->recipients[i].action == action)
				w_recipient_explanation(w, &in->recipients[i]);
		}
		dsn_put_eol(w);
	}
	dsn_put_line(w, "The header section of your message is attached below.");
	dsn_put_eol(w);
}

static void w_recipient_fields(struct dsn_writer *w, const struct dsn_recipient *r, bool global)
{
	dsn_put_eol(w);
	if (global && dsn_has_8bit(r->address)) {
		/* RFC 6533 3: the utf-8 address type, raw UTF-8 allowed in a
		 * message/global-delivery-status. */
		dsn_put_str(w, "Final-Recipient: utf-8; ");
		dsn_put_safe(w, r->address, DSN_SAFE_UNITEXT, DSN_ADDRESS_MAX_BYTES);
	} else {
		dsn_put_str(w, "Final-Recipient: rfc822; ");
		dsn_put_safe(w, r->address, DSN_SAFE_TEXT, DSN_ADDRESS_MAX_BYTES);
	}
	dsn_put_eol(w);
	dsn_put_str(w, "Action: ");
	dsn_put_str(w, action_name(r->action));
	dsn_put_eol(w);
	struct status_code code = recipient_status(r);
	dsn_put_str(w, "Status: ");
	dsn_put_text(w, code.bytes, code.len);
	dsn_put_eol(w);
	if (r->remote_mta.len > 0) {
		dsn_put_str(w, "Remote-MTA: dns; ");
		dsn_put_safe(w, r->remote_mta, DSN_SAFE_HOST, DSN_HOST_MAX_BYTES);
		dsn_put_eol(w);
	}
	if (r->diagnostic.len > 0) {
		struct dsn_text_buf t;
		t.len = 0;
		dsn_text_append_safe(&t, r->diagnostic, DSN_SAFE_TEXT, DSN_DIAGNOSTIC_MAX_BYTES);
		if (t.len > 0) {
			/* RFC 3464 2.3.6: "smtp" for a reply from an SMTP
			 * server; our own words get an X- type. */
			dsn_put_str(w, looks_like_smtp_reply(r->diagnostic) ? "Diagnostic-Code: smtp; "
								       : "Diagnostic-Code: X-Ringmx; ");
			dsn_put_wrapped(w, t.bytes, t.len, true, "");
			dsn_put_eol(w);
		}
	}
	if (r->last_attempt_unix > 0) {
		dsn_put_str(w, "Last-Attempt-Date: ");
		dsn_put_date(w, r->last_attempt_unix);
		dsn_put_eol(w);
	}
}

static void w_part_report(struct dsn_writer *w, const struct dsn_input *in,
			  const struct dsn_facts *f)
{
	dsn_put_line(w, "Content-Description: Delivery report");
	dsn_put_line(w, f->global ? "Content-Type: message/global-delivery-status"
			    : "Content-Type: message/delivery-status");
	if (f->global && f->addresses_8bit)
		dsn_put_line(w, "Content-Transfer-Encoding: 8bit");
	dsn_put_eol(w);
	dsn_put_str(w, "Reporting-MTA: dns; ");
	dsn_put_safe(w, in->reporting_mta, DSN_SAFE_HOST, DSN_HOST_MAX_BYTES);
	dsn_put_eol(w);
	if (in->queue_id.len > 0) {
		dsn_put_str(w, "X-Ringmx-Queue-ID: ");
		dsn_put_safe(w, in->queue_id, DSN_SAFE_HOST, DSN_TOKEN_MAX_BYTES);
		dsn_put_eol(w);
	}
	dsn_put_str(w, "Arrival-Date: ");
	dsn_put_date(w, in->arrival_unix);
	dsn_put_eol(w);
	for (uint32_t i = 0; i < in->recipient_count; i++)
		w_recipient_fields(w, &in->recipients[i], f->global);
	dsn_put_eol(w);
}

static void w_part_headers(struct dsn_writer *w, const struct dsn_input *in,
			   const struct dsn_facts *f)
{
	dsn_put_line(w, "Content-Description: Undelivered Message Headers");
	/* RFC 6533 6.3: message/global-headers returns UTF-8 header fields. */
	dsn_put_line(w, f->global ? "Content-Type: message/global-headers"
			    : "Content-Type: text/rfc822-headers");
	if (f->headers.eight_bit)
		dsn_put_line(w, "Content-Transfer-Encoding: 8bit");
	dsn_put_eol(w);
	dsn_put_headers(w, in->original, &f->headers);
	dsn_put_eol(w);
}

static void w_top_headers(struct dsn_writer *w, const struct dsn_input *in,
			  const struct dsn_facts *f)
{
	dsn_put_str(w, "From: Mail Delivery System <MAILER-DAEMON@");
	dsn_put_safe(w, in->reporting_mta, DSN_SAFE_HOST, DSN_HOST_MAX_BYTES);
	dsn_put_str(w, ">");
	dsn_put_eol(w);
	dsn_put_str(w, "To: <");
	dsn_put_safe(w, in->to, f->to_8bit ? DSN_SAFE_UTF8 : DSN_SAFE_TEXT, DSN_ADDRESS_MAX_BYTES);
	dsn_put_str(w, ">");
	dsn_put_eol(w);
	dsn_put_line(w, f->any_failed ? "Subject: Undelivered Mail Returned to Sender"
				: "Subject: Delayed Mail (still being retried)");
	dsn_put_str(w, "Date: ");
	dsn_put_date(w, in->now_unix);
	dsn_put_eol(w);
	dsn_put_str(w, "Message-ID: <");
	dsn_put_safe(w, in->message_id_token, DSN_SAFE_ATOM, DSN_TOKEN_MAX_BYTES);
	dsn_put_str(w, "@");
	dsn_put_safe(w, in->reporting_mta, DSN_SAFE_HOST, DSN_HOST_MAX_BYTES);
	dsn_put_str(w, ">");
	dsn_put_eol(w);
	/* RFC 3834 5: a notification is an automatic reply; autoresponders
	 * must not answer it. */
	dsn_put_line(w, "Auto-Submitted: auto-replied");
	dsn_put_line(w, "MIME-Version: 1.0");
	/* RFC 6522 3: report-type names the second part's subtype. */
	dsn_put_line(w, f->global ? "Content-Type: multipart/report; report-type=global-delivery-status;"
			    : "Content-Type: multipart/report; report-type=delivery-status;");
	dsn_put_str(w, "\tboundary=\"");
	dsn_put_text(w, f->boundary.bytes, f->boundary.len);
	dsn_put_str(w, "\"");
	dsn_put_eol(w);
	if (f->headers.eight_bit || (f->global && f->addresses_8bit))
		dsn_put_line(w, "Content-Transfer-Encoding: 8bit");
	dsn_put_eol(w);
	dsn_put_line(w, "This is a MIME-encapsulated message.");
	dsn_put_eol(w);
}

static void gather_facts(const struct dsn_input *in, struct dsn_facts *f)
{
	f->any_failed = false;
	f->any_delayed = false;
	f->addresses_8bit = false;
	for (uint32_t i = 0; i < in->recipient_count; i++) {
		const struct dsn_recipient *r = &in->recipients[i];
		RMX_ASSERT(r->action == DSN_ACTION_FAILED || r->action == DSN_ACTION_DELAYED);
		if (r->action == DSN_ACTION_FAILED)
			f->any_failed = true;
		else
			f->any_delayed = true;
		f->addresses_8bit = f->addresses_8bit || dsn_has_8bit(r->address);
	}
	f->to_8bit = dsn_has_8bit(in->to);
	f->global = in->smtputf8 || f->to_8bit || f->addresses_8bit;
	f->headers = dsn_headers_plan_make(in->original, f->global);
	choose_boundary(in, &f->boundary);
}

size_t dsn_build(const struct dsn_input *in, uint8_t *buf, size_t cap)
{
	RMX_ASSERT(in != NULL && (buf != NULL || cap == 0));
	RMX_ASSERT(in->to.len > 0);
	RMX_ASSERT(in->reporting_mta.len > 0 && in->message_id_token.len > 0);
	RMX_ASSERT(in->recipient_count > 0 && in->recipients != NULL);
	RMX_ASSERT(in->original.ptr != NULL || in->original.len == 0);

	struct dsn_facts facts;
	gather_facts(in, &facts);

	struct dsn_writer w = { buf, cap, 0, 0 };
	w_top_headers(&w, in, &facts);
	w_delimiter(&w, &facts.boundary, false);
	w_part_text(&w, in, &facts);
	w_delimiter(&w, &facts.boundary, false);
	w_part_report(&w, in, &facts);
	w_delimiter(&w, &facts.boundary, false);
	w_part_headers(&w, in, &facts);
	w_delimiter(&w, &facts.boundary, true);
	RMX_ASSERT(w.col == 0);
	return w.len;
}

unsigned dsn_transport_needs(const struct dsn_input *in, const uint8_t *message, size_t len)
{
	unsigned needs = 0;
	if (dsn_has_8bit(in->to))
		needs |= DSN_NEEDS_SMTPUTF8;
	if (dsn_has_8bit(span_make(message, len)))
		needs |= DSN_NEEDS_8BITMIME;
	return needs;
}
