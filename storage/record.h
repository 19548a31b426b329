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
	RECORD_TAG_TLS = 9,          /* "TLSv1.3 TLS_AES_256_GCM_SHA384": absent in clear text */
	RECORD_TAG_AUTH_USER = 10,   /* the AUTH identity (RFC 4954): absent if none */
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

/* The parts of a sealed record in the order store_append() takes them. */
#define RECORD_SEALED_PARTS 4

/* record_seal() for a one-piece body, laying out the record for
 * store_append(): parts[0] h, [1] env, [2] body, [3] the zero padding (a
 * static block). h and the bytes stay the caller's and must outlive the
 * append. */
void record_seal_parts(struct record_header *h, uint64_t queue_id, int64_t arrival_unix_ms,
		       struct span env, struct iovec body, struct iovec parts[RECORD_SEALED_PARTS]);

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

/* The body type item's values (RFC 6152 8BITMIME, RFC 3030 BINARYMIME). */
enum record_body_type {
	RECORD_BODY_7BIT = 0,       /* also what an envelope without the item means */
	RECORD_BODY_8BITMIME = 1,
	RECORD_BODY_BINARYMIME = 2,
	RECORD_BODY_UNKNOWN = 255,  /* an item of another value or length */
};

/*
 * Every fact of an envelope, decoded in one pass by record_envelope_decode.
 * Spans point into the envelope bytes (the caller's buffer; nothing is
 * copied or allocated) and are never NULL: an absent item reads as empty.
 * A single-valued item that appears twice keeps its last value, as the
 * readers before this decoder did. Decoding stops at the first malformed
 * item (malformed set): the facts and recipients are those of the items
 * before it. Unknown tags are skipped (forward compatible).
 */
struct record_envelope {
	struct span reverse_path;     /* empty for <> and when absent */
	struct span helo;
	struct span client_addr;      /* textual IP */
	struct span protocol;
	struct span tls;              /* TLS version and cipher; empty in clear text */
	struct span auth_user;        /* empty when not authenticated */
	enum record_body_type body_type;
	bool smtputf8;
	bool size_declared;           /* a SIZE= value was recorded */
	uint64_t size_declared_bytes; /* 0 unless size_declared */
	uint32_t recipient_count;     /* recipient items, in RCPT order */
	struct span recipient_items;  /* for record_recipient_first only */
	bool malformed;
};

/* Walks a decoded envelope's recipients in RCPT order. */
struct record_recipient_cursor {
	struct span rest;
};

/* Decodes envelope (the bytes of a checked record, or one being built) into
 * *out. Bounded by envelope.len; pure. */
void record_envelope_decode(struct span envelope, struct record_envelope *out);

/* A cursor at e's first recipient; record_recipient_next then yields each
 * recipient address (e->recipient_count of them) and false after the last.
 * The envelope bytes e was decoded from must still be there. */
struct record_recipient_cursor record_recipient_first(const struct record_envelope *e);
bool record_recipient_next(struct record_recipient_cursor *c, struct span *address);

/* Queue id <-> (worker, segment sequence, byte offset / 8). */
uint64_t queue_id_make(uint32_t worker, uint32_t segment_seq, uint64_t offset_bytes);
void queue_id_split(uint64_t id, uint32_t *worker, uint32_t *segment_seq, uint64_t *offset_bytes);
/* Writes RECORD_QUEUE_ID_CHARS uppercase hex digits (no NUL). */
void queue_id_format(uint64_t id, char out[RECORD_QUEUE_ID_CHARS]);
/* Parses exactly RECORD_QUEUE_ID_CHARS hex digits (either case). */
bool queue_id_parse(struct span text, uint64_t *id);

#endif
