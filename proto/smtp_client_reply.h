/*
 * smtp_client_reply.h - reading an upstream relay's replies, for the ESMTP
 * client (proto/smtp_client): the line assembler that turns received bytes
 * of any split into checked reply lines, the results a reply folds into
 * (code, RFC 3463 enhanced status, printable text), and the EHLO keywords
 * that become capabilities.
 *
 * Pure: no syscalls, no allocation; memory per connection is the fixed
 * struct smtp_client_reply_reader, whatever the upstream sends. What the
 * replies mean (which command they answer, what to send next) is the
 * client's; nothing here knows its states. No byte from the upstream
 * reaches an assertion.
 */
#ifndef RINGMX_SMTP_CLIENT_REPLY_H
#define RINGMX_SMTP_CLIENT_REPLY_H

#include "../common/base.h"
#include "../common/bounds.h"

/* The outcome of one recipient (or of the whole message). */
struct smtp_client_result {
	uint16_t code;                 /* 250, 450, 550 ...; 0 = not attempted */
	char status[16];               /* enhanced status "5.1.1", or "" */
	char text[SMTP_CLIENT_REPLY_TEXT_MAX_BYTES]; /* reply text, printable ASCII only */
};

/* Capabilities learnt from EHLO. */
enum {
	SMTP_CAP_PIPELINING = 1u << 0,
	SMTP_CAP_SIZE = 1u << 1,
	SMTP_CAP_8BITMIME = 1u << 2,
	SMTP_CAP_SMTPUTF8 = 1u << 3,
	SMTP_CAP_CHUNKING = 1u << 4,
	SMTP_CAP_BINARYMIME = 1u << 5,
	SMTP_CAP_XFORWARD = 1u << 6,
	SMTP_CAP_ENHANCEDSTATUSCODES = 1u << 7,
	SMTP_CAP_STARTTLS = 1u << 8,
};

/* The XFORWARD attributes (Postfix XFORWARD_README) an upstream may list
 * after its XFORWARD keyword, and that the client then sends. */
enum {
	SMTP_XFORWARD_NAME = 1u << 0,
	SMTP_XFORWARD_ADDR = 1u << 1,
	SMTP_XFORWARD_HELO = 1u << 2,
	SMTP_XFORWARD_PROTO = 1u << 3,
};

struct smtp_xforward_attr {
	uint8_t bit;      /* SMTP_XFORWARD_* */
	const char *name; /* "NAME", ... */
};

/* The four attributes, in the order they are sent. */
#define SMTP_XFORWARD_ATTR_COUNT 4
extern const struct smtp_xforward_attr smtp_xforward_attrs[SMTP_XFORWARD_ATTR_COUNT];

/* What EHLO told us; all zero after a refused EHLO. */
struct smtp_client_caps {
	uint64_t size_max;      /* SIZE n, 0 = no limit given */
	uint32_t caps;          /* SMTP_CAP_* */
	uint8_t xforward_attrs; /* SMTP_XFORWARD_* the upstream listed */
};

/* The line assembler's state, embedded in the client. Only a bounded prefix
 * of each line is kept; line_len counts every byte. */
struct smtp_client_reply_reader {
	uint32_t line_len;   /* bytes of the current reply line (all, not just kept) */
	uint16_t code;       /* code of the multi-line reply being read */
	uint16_t lines;      /* lines of it so far */
	bool cr;             /* the last byte was a CR: LF must follow */
	bool multi;          /* a continuation line was read; more lines follow */
	char line[SMTP_CLIENT_REPLY_TEXT_MAX_BYTES + 16]; /* kept prefix of the line */
};

/* One complete reply line, as smtp_client_reply_read hands it out. */
struct smtp_client_reply_line {
	const char *text;    /* after "ddd-" or "ddd ", within the reader's kept prefix */
	size_t text_len;
	uint16_t code;
	bool first;          /* the reply's first line */
	bool last;           /* the reply's last line */
	bool lines_over_max; /* not last, and SMTP_CLIENT_REPLY_LINES_MAX lines read:
			      * the reply is malformed once the caller has this line */
};

enum smtp_client_reply_event {
	SMTP_CLIENT_REPLY_MORE,      /* the bytes read so far end no line: go on */
	SMTP_CLIENT_REPLY_BEGIN,     /* the bytes just read began a reply */
	SMTP_CLIENT_REPLY_LINE,      /* a line is complete: see *line */
	SMTP_CLIENT_REPLY_MALFORMED, /* not SMTP (RFC 5321 4.2): the connection is unusable */
};

/* Readies r for a connection's first reply. */
void smtp_client_reply_reader_init(struct smtp_client_reply_reader *r);

/*
 * Reads p[*at..n) up to the next event and advances *at past what it took
 * (a run of text, one CR, or the LF that ends a line). BEGIN comes once per
 * reply, for the bytes that start it (a bare LF starts none); LINE has
 * checked the code (2xx-5xx), the separator and, on continuation lines, that
 * the code repeats (RFC 5321 4.2.1); line->text stays valid until the next
 * call. A line longer than SMTP_CLIENT_REPLY_LINE_MAX_BYTES, a CR without
 * LF, or a control byte, NUL or DEL is MALFORMED. Requires *at < n.
 */
enum smtp_client_reply_event smtp_client_reply_read(struct smtp_client_reply_reader *r,
						    const uint8_t *p, size_t n, size_t *at,
						    struct smtp_client_reply_line *line);

/* Sets r to code, status and text (printable ASCII, '?' for any other
 * byte, cut at the field's end). code is 200..599 and status shorter than
 * the field (asserted: our own values). */
void smtp_client_result_set(struct smtp_client_result *r, uint16_t code, const char *status,
			    const char *text);

/* Empties r (code 0: not attempted). */
void smtp_client_result_clear(struct smtp_client_result *r);

/* Folds a reply line into r: the first line gives the code, the enhanced
 * status (the one it carries, else "c.0.0" made from the code) and the
 * text; a later line appends its text after a space, its status repeat
 * dropped, as far as the field holds. */
void smtp_client_result_add_line(struct smtp_client_result *r,
				  const struct smtp_client_reply_line *line);

/* One EHLO reply line after the first: "KEYWORD [params]" into caps (SIZE
 * and its limit, XFORWARD and its attributes, ...); an unknown keyword
 * changes nothing. The line may have been cut by the reader: a cut
 * parameter list only loses its tail. */
void smtp_client_caps_add_line(struct smtp_client_caps *caps, const char *p, size_t n);

#endif
