/*
 * record.c - the on-disk message record (see record.h for the layout).
 *
 * Where it sits: core/ builds the envelope with record_env_put() while a
 * transaction runs, seals the record here once the body is complete, and
 * hands header + envelope + body parts to the store; recovery, the forwarder
 * and the ringmx-store tool read records back through record_check().
 *
 * Invariants: the header is little-endian on disk. The in-memory struct is
 * written as is, which is only correct on a little-endian host with the
 * exact layout below; both are checked at build time, and every seal encodes
 * the header byte by byte and asserts that the two agree. record_check()
 * trusts no field before validating it: magic, version, type, then that the
 * lengths add up without overflow, then that they fit the bytes available,
 * then the CRC, salted with the segment's salt. The salt goes in last (the
 * record's own CRC continued over it), so the store can salt a sealed
 * header in constant time, whatever the record's length.
 */
#include "record.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "crc32c.h"
#include "../common/le.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "struct record_header is written as is: little-endian hosts only");
_Static_assert(sizeof(struct record_header) == RECORD_HEADER_BYTES, "header size");
_Static_assert(offsetof(struct record_header, magic) == 0, "layout");
_Static_assert(offsetof(struct record_header, crc32c) == 4, "layout");
_Static_assert(offsetof(struct record_header, type) == 8, "layout");
_Static_assert(offsetof(struct record_header, version) == 10, "layout");
_Static_assert(offsetof(struct record_header, length) == 12, "layout");
_Static_assert(offsetof(struct record_header, queue_id) == 16, "layout");
_Static_assert(offsetof(struct record_header, arrival_unix_ms) == 24, "layout");
_Static_assert(offsetof(struct record_header, envelope_bytes) == 32, "layout");
_Static_assert(offsetof(struct record_header, body_bytes) == 36, "layout");
_Static_assert((RECORD_ALIGN_BYTES & (RECORD_ALIGN_BYTES - 1)) == 0, "alignment is a power of two");

/* The CRC covers everything after the crc field. */
#define RECORD_CRC_START_BYTES 8
/* An envelope item: tag (1 byte), value length (2 bytes LE), value. */
#define RECORD_ITEM_HEAD_BYTES 3

#define QUEUE_ID_WORKER_SHIFT 56
#define QUEUE_ID_SEQ_SHIFT 32
#define QUEUE_ID_SEQ_MASK 0xffffffu
#define QUEUE_ID_OFFSET_MASK 0xffffffffu


static void header_encode(const struct record_header *h, uint8_t out[RECORD_HEADER_BYTES])
{
	put_le32(out + 0, h->magic);
	put_le32(out + 4, h->crc32c);
	put_le16(out + 8, h->type);
	put_le16(out + 10, h->version);
	put_le32(out + 12, h->length);
	put_le64(out + 16, h->queue_id);
	put_le64(out + 24, (uint64_t)h->arrival_unix_ms);
	put_le32(out + 32, h->envelope_bytes);
	put_le32(out + 36, h->body_bytes);
}

static void header_decode(const uint8_t *p, struct record_header *h)
{
	h->magic = get_le32(p + 0);
	h->crc32c = get_le32(p + 4);
	h->type = get_le16(p + 8);
	h->version = get_le16(p + 10);
	h->length = get_le32(p + 12);
	h->queue_id = get_le64(p + 16);
	h->arrival_unix_ms = (int64_t)get_le64(p + 24);
	h->envelope_bytes = get_le32(p + 32);
	h->body_bytes = get_le32(p + 36);
}

/* Makes room for n more bytes: capacity doubles (from 256) until it fits. */
static int bytebuf_reserve(struct bytebuf *b, size_t n)
{
	RMX_ASSERT(b->len <= b->cap);
	if (n <= b->cap - b->len)
		return 0;
	if (n > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	size_t need = b->len + n;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	uint8_t *data = realloc(b->data, cap);
	if (data == NULL)
		return -ENOMEM;
	b->data = data;
	b->cap = cap;
	return 0;
}

int bytebuf_append(struct bytebuf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	int rc = bytebuf_reserve(b, n);
	if (rc != 0)
		return rc;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void bytebuf_reset(struct bytebuf *b)
{
	b->len = 0;
}

void bytebuf_free(struct bytebuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

int record_env_put(struct bytebuf *env, enum record_tag tag, struct span value)
{
	RMX_ASSERT(tag > 0 && tag <= 0xff);
	if (value.len > RECORD_ITEM_VALUE_MAX_BYTES)
		return -EINVAL;
	/* Reserve the whole item first: a failure never leaves half an item. */
	int rc = bytebuf_reserve(env, RECORD_ITEM_HEAD_BYTES + value.len);
	if (rc != 0)
		return rc;
	uint8_t *p = env->data + env->len;
	p[0] = (uint8_t)tag;
	put_le16(p + 1, (uint16_t)value.len);
	if (value.len > 0)
		memcpy(p + RECORD_ITEM_HEAD_BYTES, value.ptr, value.len);
	env->len += RECORD_ITEM_HEAD_BYTES + value.len;
	return 0;
}

bool record_env_next(struct span *cursor, uint8_t *tag, struct span *value, bool *malformed)
{
	*malformed = false;
	if (cursor->len == 0)
		return false;
	if (cursor->len < RECORD_ITEM_HEAD_BYTES || cursor->ptr[0] == 0) {
		*malformed = true;
		return false;
	}
	size_t len = get_le16(cursor->ptr + 1);
	if (len > cursor->len - RECORD_ITEM_HEAD_BYTES) {
		*malformed = true;
		return false;
	}
	*tag = cursor->ptr[0];
	*value = span_make(cursor->ptr + RECORD_ITEM_HEAD_BYTES, len);
	cursor->ptr += RECORD_ITEM_HEAD_BYTES + len;
	cursor->len -= RECORD_ITEM_HEAD_BYTES + len;
	return true;
}

void record_envelope_decode(struct span envelope, struct record_envelope *out)
{
	static const uint8_t empty[1];
	struct span none = span_make(empty, 0);
	*out = (struct record_envelope){
		.reverse_path = none,
		.helo = none,
		.client_addr = none,
		.protocol = none,
		.tls = none,
		.auth_user = none,
		.body_type = RECORD_BODY_7BIT,
		.recipient_items = none,
	};
	struct span cursor = envelope, value;
	const uint8_t *first_recipient = NULL;
	uint8_t tag;
	while (record_env_next(&cursor, &tag, &value, &out->malformed)) {
		switch (tag) {
		case RECORD_TAG_REVERSE_PATH:
			out->reverse_path = value;
			break;
		case RECORD_TAG_RECIPIENT:
			if (first_recipient == NULL)
				first_recipient = value.ptr - RECORD_ITEM_HEAD_BYTES;
			/* Items are at least 3 bytes and an envelope at most
			 * UINT32_MAX bytes: the count cannot wrap. */
			out->recipient_count++;
			break;
		case RECORD_TAG_HELO:
			out->helo = value;
			break;
		case RECORD_TAG_CLIENT_ADDR:
			out->client_addr = value;
			break;
		case RECORD_TAG_PROTOCOL:
			out->protocol = value;
			break;
		case RECORD_TAG_TLS:
			out->tls = value;
			break;
		case RECORD_TAG_AUTH_USER:
			out->auth_user = value;
			break;
		case RECORD_TAG_BODY_TYPE:
			out->body_type = value.len == 1 && value.ptr[0] <= RECORD_BODY_BINARYMIME
						 ? (enum record_body_type)value.ptr[0]
						 : RECORD_BODY_UNKNOWN;
			break;
		case RECORD_TAG_SMTPUTF8:
			out->smtputf8 = true;
			break;
		case RECORD_TAG_SIZE_DECLARED:
			/* Another length is no size we wrote: skipped like an
			 * unknown item. */
			out->size_declared = value.len == 8;
			out->size_declared_bytes = value.len == 8 ? get_le64(value.ptr) : 0;
			break;
		default:
			break;
		}
	}
	/* The well-formed items from the first recipient on: a malformed
	 * tail stays out of reach of record_recipient_next. */
	if (first_recipient != NULL)
		out->recipient_items =
			span_make(first_recipient, (size_t)(cursor.ptr - first_recipient));
}

struct record_recipient_cursor record_recipient_first(const struct record_envelope *e)
{
	return (struct record_recipient_cursor){ e->recipient_items };
}

bool record_recipient_next(struct record_recipient_cursor *c, struct span *address)
{
	uint8_t tag;
	bool malformed;
	while (record_env_next(&c->rest, &tag, address, &malformed))
		if (tag == RECORD_TAG_RECIPIENT)
			return true;
	RMX_ASSERT(!malformed); /* recipient_items holds whole items only */
	return false;
}

uint64_t record_length(size_t envelope_bytes, size_t body_bytes)
{
	return (uint64_t)RECORD_HEADER_BYTES + (uint64_t)envelope_bytes + (uint64_t)body_bytes;
}

uint64_t record_padded_length(size_t envelope_bytes, size_t body_bytes)
{
	uint64_t length = record_length(envelope_bytes, body_bytes);
	return length + record_padding(length);
}

size_t record_padding(uint64_t length)
{
	return (size_t)((RECORD_ALIGN_BYTES - (length & (RECORD_ALIGN_BYTES - 1))) &
			(RECORD_ALIGN_BYTES - 1));
}

/*
 * The CRC is computed over the explicitly encoded header bytes, not the
 * struct, and the struct is then asserted to be byte-identical to that
 * encoding and to decode back to what was asked for: the bytes core/ writes
 * (the struct) are exactly the bytes the CRC was taken over.
 */
void record_seal(struct record_header *h, uint64_t queue_id, int64_t arrival_unix_ms,
		 struct span env, const struct iovec *body, int nbody)
{
	RMX_ASSERT(nbody >= 0);
	RMX_ASSERT(env.len <= UINT32_MAX);
	uint64_t body_bytes = 0;
	for (int i = 0; i < nbody; i++)
		body_bytes += body[i].iov_len;
	RMX_ASSERT(body_bytes <= UINT32_MAX);
	uint64_t length = record_length(env.len, (size_t)body_bytes);
	RMX_ASSERT(length <= UINT32_MAX);

	memset(h, 0, sizeof(*h));
	h->magic = RECORD_MAGIC;
	h->type = RECORD_MESSAGE;
	h->version = RECORD_VERSION;
	h->length = (uint32_t)length;
	h->queue_id = queue_id;
	h->arrival_unix_ms = arrival_unix_ms;
	h->envelope_bytes = (uint32_t)env.len;
	h->body_bytes = (uint32_t)body_bytes;

	uint8_t wire[RECORD_HEADER_BYTES];
	header_encode(h, wire);
	uint32_t crc = crc32c(0, wire + RECORD_CRC_START_BYTES,
			      RECORD_HEADER_BYTES - RECORD_CRC_START_BYTES);
	crc = crc32c(crc, env.ptr, env.len);
	for (int i = 0; i < nbody; i++)
		crc = crc32c(crc, body[i].iov_base, body[i].iov_len);
	h->crc32c = crc;
	put_le32(wire + 4, crc);

	struct record_header back;
	header_decode(wire, &back);
	RMX_ASSERT(memcmp(wire, h, RECORD_HEADER_BYTES) == 0);
	RMX_ASSERT(back.crc32c == crc && back.length == length && back.queue_id == queue_id &&
		   back.arrival_unix_ms == arrival_unix_ms && back.body_bytes == body_bytes &&
		   back.envelope_bytes == env.len);
}

void record_seal_parts(struct record_header *h, uint64_t queue_id, int64_t arrival_unix_ms,
		       struct span env, struct iovec body, struct iovec parts[RECORD_SEALED_PARTS])
{
	static const uint8_t zeros[RECORD_ALIGN_BYTES];
	record_seal(h, queue_id, arrival_unix_ms, env, &body, 1);
	size_t pad = record_padding(h->length);
	RMX_ASSERT(pad < RECORD_ALIGN_BYTES);
	parts[0] = (struct iovec){ h, RECORD_HEADER_BYTES };
	parts[1] = (struct iovec){ (void *)env.ptr, env.len };
	parts[2] = body;
	parts[3] = (struct iovec){ (void *)zeros, pad };
}

uint32_t record_crc_salted(uint32_t crc, uint64_t salt)
{
	uint8_t le[8];
	put_le64(le, salt);
	return crc32c(crc, le, sizeof(le));
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

enum record_check_result record_check(const uint8_t *p, size_t avail, uint64_t salt,
				      struct record_view *out)
{
	size_t head = RMX_MIN(avail, (size_t)RECORD_HEADER_BYTES);
	if (all_zero(p, head))
		return RECORD_EMPTY;
	if (avail < RECORD_HEADER_BYTES)
		return RECORD_SHORT;

	struct record_header h;
	header_decode(p, &h);
	if (h.magic != RECORD_MAGIC || h.version != RECORD_VERSION || h.type != RECORD_MESSAGE)
		return RECORD_BAD_HEADER;
	/* 64-bit sums of 32-bit fields cannot overflow. */
	uint64_t sum = (uint64_t)RECORD_HEADER_BYTES + h.envelope_bytes + h.body_bytes;
	if (h.length < RECORD_HEADER_BYTES || sum != h.length)
		return RECORD_BAD_HEADER;
	if (h.length > avail)
		return RECORD_SHORT;
	uint32_t crc = crc32c(0, p + RECORD_CRC_START_BYTES, h.length - RECORD_CRC_START_BYTES);
	if (record_crc_salted(crc, salt) != h.crc32c)
		return RECORD_BAD_CRC;

	out->header = h;
	out->envelope = span_make(p + RECORD_HEADER_BYTES, h.envelope_bytes);
	out->body = span_make(p + RECORD_HEADER_BYTES + h.envelope_bytes, h.body_bytes);
	out->padded_length = h.length + record_padding(h.length);
	return RECORD_OK;
}

uint64_t queue_id_make(uint32_t worker, uint32_t segment_seq, uint64_t offset_bytes)
{
	RMX_ASSERT(worker <= 0xff);
	RMX_ASSERT(segment_seq <= QUEUE_ID_SEQ_MASK);
	RMX_ASSERT(offset_bytes % RECORD_ALIGN_BYTES == 0);
	RMX_ASSERT(offset_bytes / RECORD_ALIGN_BYTES <= QUEUE_ID_OFFSET_MASK);
	return (uint64_t)worker << QUEUE_ID_WORKER_SHIFT |
	       (uint64_t)segment_seq << QUEUE_ID_SEQ_SHIFT | offset_bytes / RECORD_ALIGN_BYTES;
}

void queue_id_split(uint64_t id, uint32_t *worker, uint32_t *segment_seq, uint64_t *offset_bytes)
{
	*worker = (uint32_t)(id >> QUEUE_ID_WORKER_SHIFT);
	*segment_seq = (uint32_t)(id >> QUEUE_ID_SEQ_SHIFT) & QUEUE_ID_SEQ_MASK;
	*offset_bytes = (id & QUEUE_ID_OFFSET_MASK) * RECORD_ALIGN_BYTES;
}

void queue_id_format(uint64_t id, char out[RECORD_QUEUE_ID_CHARS])
{
	static const char digits[16] = "0123456789ABCDEF";
	for (int i = RECORD_QUEUE_ID_CHARS - 1; i >= 0; i--) {
		out[i] = digits[id & 0xf];
		id >>= 4;
	}
}

bool queue_id_parse(struct span text, uint64_t *id)
{
	if (text.len != RECORD_QUEUE_ID_CHARS)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < text.len; i++) {
		uint8_t c = text.ptr[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else
			return false;
		v = v << 4 | d;
	}
	*id = v;
	return true;
}
