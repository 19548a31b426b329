/*
 * smtp_received.c - the Received: trace header: ours, written into the
 * headroom in front of a stored body (DESIGN.md "Received: without a
 * copy"), and theirs, counted as the body streams through
 * proto/smtp_session on its way to the record, so a mail loop is refused
 * (RFC 5321 6.3) without a second pass over the message.
 *
 * Invariants: the writer never writes past cap and never returns a partial
 * header; the counter looks at each byte at most once, keeps one byte of
 * state between pieces, and stops for good at the end of the header
 * section.
 */
#include "smtp_received.h"

#include <string.h>

#include "rfc5322_date.h"

/* ---- writing ours -------------------------------------------------------- */

/* A bounded text builder: once something does not fit, it stays failed. */
struct text {
	char *buf;
	size_t cap;
	size_t len;
	bool overflow;
};

static void text_put(struct text *t, const void *p, size_t n)
{
	if (t->overflow || t->cap - t->len < n) {
		t->overflow = true;
		return;
	}
	memcpy(t->buf + t->len, p, n);
	t->len += n;
}

static void text_str(struct text *t, const char *str)
{
	text_put(t, str, strlen(str));
}

size_t smtp_received_write(const struct smtp_received_facts *f, char *buf, size_t cap)
{
	RMX_ASSERT(f != NULL && buf != NULL);
	if (f->now_unix < 0 || f->now_unix > RFC5322_DATE_UNIX_MAX)
		return 0;
	char date[RFC5322_DATE_BYTES];
	rfc5322_date_format(f->now_unix, date);

	struct text t = { buf, cap, 0, false };
	text_str(&t, "Received: from ");
	text_put(&t, f->helo.ptr, f->helo.len);
	text_str(&t, f->client_ipv6 ? " ([IPv6:" : " ([");
	text_str(&t, f->client_ip);
	text_str(&t, "])\r\n\t");
	if (f->tls_version != NULL) {
		/* As Postfix and sendmail record it: which TLS carried the
		 * message. Both are token text from the TLS library. */
		RMX_ASSERT(f->tls_cipher != NULL);
		text_str(&t, "(version=");
		text_str(&t, f->tls_version);
		text_str(&t, " cipher=");
		text_str(&t, f->tls_cipher);
		text_str(&t, ")\r\n\t");
	}
	text_str(&t, "by ");
	text_put(&t, f->hostname.ptr, f->hostname.len);
	text_str(&t, " (ringmx) with ");
	text_str(&t, f->protocol);
	text_str(&t, " id ");
	text_put(&t, f->queue_id.ptr, f->queue_id.len);
	text_str(&t, ";\r\n\t");
	text_put(&t, date, sizeof(date));
	text_str(&t, "\r\n");
	if (t.overflow)
		return 0;
	RMX_ASSERT(t.len <= SMTP_RECEIVED_HEADER_MAX_BYTES);
	return t.len;
}

/* ---- counting theirs ----------------------------------------------------- */

/* Counter positions: 0..8 is how much of "received:" matched at the start
 * of the current header line (0: at a line start). */
enum { H_BOL = 0, H_NAME_LEN = 9, H_BOL_CR = 10, H_SKIP = 11, H_DONE = 12 };
static const char received_name[H_NAME_LEN + 1] = "received:";

void smtp_received_counter_init(struct smtp_received_counter *rc)
{
	rc->count = 0;
	rc->state = H_BOL;
}

bool smtp_received_counting(const struct smtp_received_counter *rc)
{
	return rc->state != H_DONE;
}

void smtp_received_count(struct smtp_received_counter *rc, const uint8_t *p, size_t n)
{
	unsigned st = rc->state;
	for (size_t i = 0; i < n && st != H_DONE; i++) {
		uint8_t c = p[i];
		if (st == H_SKIP) {
			const uint8_t *lf = memchr(p + i, '\n', n - i);
			if (lf == NULL)
				break;
			i = (size_t)(lf - p);
			st = H_BOL;
			continue;
		}
		if (st == H_BOL_CR) {
			st = c == '\n' ? H_DONE : H_SKIP;
			continue;
		}
		if (st == H_BOL && (c == '\r' || c == '\n')) {
			st = c == '\r' ? H_BOL_CR : H_DONE;
			continue;
		}
		uint8_t lower = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + ('a' - 'A')) : c;
		if (lower == (uint8_t)received_name[st]) {
			if (++st == H_NAME_LEN) {
				if (rc->count < UINT16_MAX)
					rc->count++;
				st = H_SKIP;
			}
		} else {
			st = c == '\n' ? H_BOL : H_SKIP;
		}
	}
	rc->state = (uint8_t)st;
}
