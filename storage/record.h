/*
 * record.h - the on-disk message record: encode, seal, verify, decode.
 *
 * A record is a fixed little-endian header, an envelope (tag-length-value
 * items), then the body (Received: header + message in DATA wire form),
 * padded with zeros to 8 bytes. The CRC32C covers every byte after the crc
 * field up to `length` (padding excluded), then the 8-byte salt of the
 * segment the record lives in (segment.h): bytes a client chose cannot carry
 * a CRC that checks, because the client never learns the salt. Sealing
 * computes the record's own CRC over the caller's parts and asserts it back;
 * the store mixes the salt in when it takes the record (record_crc_salted);
 * checking verifies the salted CRC before any field is trusted (STYLE.md 10).
 * Pure; any thread.
 */
#ifndef RINGMX_RECORD_H
#define RINGMX_RECORD_H

#include <sys/uio.h>

#include "../common/base.h"

#define RECORD_MAGIC 0x584d4752u /* "RGMX" read little-endian */
/* 2: the CRC is salted per segment and records start after the segment
 * header block (format 1: unsalted, records from offset 0). */
#define RECORD_VERSION 2
#define RECORD_ALIGN_BYTES 8
#define RECORD_HEADER_BYTES 40
#define RECORD_QUEUE_ID_CHARS 16 /* hex text of a queue id, fixed width */

enum record_type { RECORD_MESSAGE = 1 };

/* On-disk layout, little-endian (asserted at build time in record.c). */
struct record_header {
	uint32_t magic;
	uint32_t crc32c;          /* of bytes [8, length) */
	uint16_t type;
	uint16_t version;
	uint32_t length;          /* header + envelope + body, unpadded */
	uint64_t queue_id;
	int64_t arrival_unix_ms;
	uint32_t envelope_bytes;
	uint32_t body_bytes;
};

/* Envelope items. Unknown tags are skipped by readers (forward compatible). */
enum record_tag {
	RECORD_TAG_REVERSE_PATH = 1, /* empty for <> */
	RECORD_TAG_RECIPIENT = 2,    /* repeatable, in RCPT order */
	RECORD_TAG_HELO = 3,
	RECORD_TAG_CLIENT_ADDR = 4,  /* textual IP */
	RECORD_TAG_BODY_TYPE = 5,    /* one byte: 0 7BIT, 1 8BITMIME, 2 BINARYMIME */
	RECORD_TAG_SMTPUTF8 = 6,     /* empty value: present means yes */
	RECORD_TAG_PROTOCOL = 7,     /* "SMTP", "ESMTP", "UTF8SMTP" ... */
	RECORD_TAG_SIZE_DECLARED = 8,/* 8 bytes LE */
};

#define RECORD_ITEM_VALUE_MAX_BYTES 65535u

/* A growable byte buffer (jemalloc underneath). */
struct bytebuf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

RMX_MUST_CHECK int bytebuf_append(struct bytebuf *b, const void *p, size_t n); /* 0, -ENOMEM */
void bytebuf_reset(struct bytebuf *b);  /* len = 0, keeps memory */
void bytebuf_free(struct bytebuf *b);

/* Appends one envelope item. -EINVAL if value is over
 * RECORD_ITEM_VALUE_MAX_BYTES, -ENOMEM. */
RMX_MUST_CHECK int record_env_put(struct bytebuf *env, enum record_tag tag, struct span value);

/* Total unpadded and padded length of a record with these parts. */
uint64_t record_length(size_t envelope_bytes, size_t body_bytes);
uint64_t record_padded_length(size_t envelope_bytes, size_t body_bytes);

/*
 * Fills h for a record whose envelope is env and whose body is the
 * concatenation of body[0..nbody) and computes the CRC over all of it: the
 * record's own CRC, without the salt. The caller hands h (RECORD_HEADER_BYTES),
 * env, the body parts and record_padding(length) zero bytes, in that order,
 * to store_append(), which writes its own copy of h with the CRC salted
 * (h itself is not changed): callers never see a salt.
 */
void record_seal(struct record_header *h, uint64_t queue_id, int64_t arrival_unix_ms,
		 struct span env, const struct iovec *body, int nbody);

/* The CRC a record carries on disk in a segment whose salt is salt: its own
 * CRC (record_seal) continued over the salt's 8 little-endian bytes. */
uint32_t record_crc_salted(uint32_t crc, uint64_t salt);

/* Zero bytes to append after a record of this unpadded length. */
size_t record_padding(uint64_t length);

/* A verified record, as spans into the checked buffer. */
struct record_view {
	struct record_header header;
	struct span envelope;
	struct span body;
	uint64_t padded_length;
};

enum record_check_result {
	RECORD_OK = 0,
	RECORD_EMPTY,     /* an all-zero header: the unwritten tail of a segment
			   * (a zero magic in a non-zero header is BAD_HEADER) */
	RECORD_SHORT,     /* fewer bytes available than the header says */
	RECORD_BAD_HEADER,/* wrong magic/version/type or impossible lengths */
	RECORD_BAD_CRC,   /* a sane header whose record fits avail; the CRC,
			   * salted with salt, does not check */
};

/* Verifies the record at p (avail bytes readable) of a segment whose salt
 * is salt. out is filled only for RECORD_OK. */
enum record_check_result record_check(const uint8_t *p, size_t avail, uint64_t salt,
				      struct record_view *out);

/* Iterates envelope items: returns true and advances *cursor while items remain;
 * false at the end or on a malformed item (*malformed set). */
bool record_env_next(struct span *cursor, uint8_t *tag, struct span *value, bool *malformed);

/* Queue id <-> (worker, segment sequence, byte offset / 8). */
uint64_t queue_id_make(uint32_t worker, uint32_t segment_seq, uint64_t offset_bytes);
void queue_id_split(uint64_t id, uint32_t *worker, uint32_t *segment_seq, uint64_t *offset_bytes);
/* Writes RECORD_QUEUE_ID_CHARS uppercase hex digits (no NUL). */
void queue_id_format(uint64_t id, char out[RECORD_QUEUE_ID_CHARS]);
/* Parses exactly RECORD_QUEUE_ID_CHARS hex digits (either case). */
bool queue_id_parse(struct span text, uint64_t *id);

#endif
