/*
 * reply.h - an incremental SMTP reply reader for the load generator.
 *
 * Reads one reply (RFC 5321 4.2: "ddd-text" continuation lines, then
 * "ddd text" or "ddd") from the bytes a connection has received, consuming
 * only whole lines so the caller keeps any partial line for the next read.
 * Also notes the EHLO keywords the bench cares about. Pure: no I/O, no
 * allocation; the state lives in the caller's struct.
 */
#ifndef RINGMX_BENCH_REPLY_H
#define RINGMX_BENCH_REPLY_H

#include "../common/base.h"

/* RFC 5321 4.5.3.1.5 allows 512 octets per reply line; accept some slack
 * from servers that go past it, and treat more as a broken peer. */
#define BENCH_REPLY_LINE_MAX_BYTES 1024
#define BENCH_REPLY_LINES_MAX 256

enum reply_status {
	REPLY_NEED_MORE, /* no complete reply yet; all complete lines consumed */
	REPLY_DONE,      /* one reply complete: code set */
	REPLY_BAD,       /* not SMTP: bad code, mixed codes, line too long */
};

#define REPLY_KW_PIPELINING 0x1u
#define REPLY_KW_STARTTLS 0x2u

struct reply_reader {
	unsigned code;      /* of the reply in progress / just finished */
	unsigned lines;     /* lines of the reply in progress */
	unsigned keywords;  /* REPLY_KW_* seen in this reply's lines 2.. */
};

/* Readies r for the first reply (also after REPLY_DONE, reply_read resets
 * itself for the next reply). */
void reply_reader_init(struct reply_reader *r);

/* Consumes complete lines of buf[0..len) until one reply ends (REPLY_DONE,
 * with r->code and r->keywords describing it) or the complete lines run out
 * (REPLY_NEED_MORE). *consumed_bytes says how much of buf was used; the
 * caller drops those bytes and keeps the rest. A line without its LF longer
 * than BENCH_REPLY_LINE_MAX_BYTES is REPLY_BAD. */
enum reply_status reply_read(struct reply_reader *r, const uint8_t *buf, size_t len,
			     size_t *consumed_bytes) RMX_MUST_CHECK;

#endif
