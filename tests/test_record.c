/*
 * test_record.c - record encode/seal/check round trips, every field, the
 * segment salt in the CRC, each way record_check() refuses a record,
 * envelope iteration (including malformed items), the envelope decoder
 * (every tag, duplicates, every truncation, unknown tags), the byte buffer, and
 * queue id packing and text.
 */
#include <errno.h>

#include "../storage/crc32c.h"
#include "../storage/record.h"
#include "test.h"

#define TEST_SALT 0x5EED0123456789ABull

/* Serializes a sealed record the way the store writes it into a segment
 * whose salt is TEST_SALT. */
static size_t write_record(uint8_t *out, size_t cap, const struct record_header *h,
			   struct span env, const struct iovec *body, int nbody)
{
	size_t n = 0;
	REQUIRE(cap >= record_padded_length(env.len, h->body_bytes));
	struct record_header salted = *h;
	salted.crc32c = record_crc_salted(h->crc32c, TEST_SALT);
	memcpy(out, &salted, RECORD_HEADER_BYTES);
	n += RECORD_HEADER_BYTES;
	if (env.len > 0)
		memcpy(out + n, env.ptr, env.len);
	n += env.len;
	for (int i = 0; i < nbody; i++) {
		if (body[i].iov_len > 0)
			memcpy(out + n, body[i].iov_base, body[i].iov_len);
		n += body[i].iov_len;
	}
	size_t pad = record_padding(n);
	memset(out + n, 0, pad);
	return n + pad;
}

static void test_bytebuf(void)
{
	struct bytebuf b = { 0 };
	uint8_t chunk[100];
	for (int i = 0; i < 100; i++)
		chunk[i] = (uint8_t)i;
	size_t caps_seen = 0, last_cap = 0;
	for (int round = 0; round < 500; round++) {
		REQUIRE(bytebuf_append(&b, chunk, sizeof(chunk)) == 0);
		if (b.cap != last_cap) {
			CHECK(last_cap == 0 || b.cap >= 2 * last_cap);
			last_cap = b.cap;
			caps_seen++;
		}
	}
	CHECK_EQ_U(b.len, 50000);
	CHECK(caps_seen < 12); /* geometric growth: few reallocations */
	bool same = true;
	for (size_t i = 0; i < b.len; i++)
		same = same && b.data[i] == (uint8_t)(i % 100);
	CHECK(same);
	CHECK_EQ_U(bytebuf_append(&b, NULL, 0), 0);
	CHECK_EQ_U(b.len, 50000);
	size_t cap = b.cap;
	bytebuf_reset(&b);
	CHECK_EQ_U(b.len, 0);
	CHECK_EQ_U(b.cap, cap);
	bytebuf_free(&b);
	CHECK(b.data == NULL && b.cap == 0 && b.len == 0);
}

static void test_envelope(void)
{
	struct bytebuf env = { 0 };
	REQUIRE(record_env_put(&env, RECORD_TAG_REVERSE_PATH, span_make("", 0)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_RECIPIENT, span_make("a@b.example", 11)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_RECIPIENT, span_make("c@d.example", 11)) == 0);
	REQUIRE(record_env_put(&env, 200, span_make("future", 6)) == 0);
	CHECK_EQ_U(env.len, 3 + 14 + 14 + 9);
	/* Item layout: tag, length LE16, value. */
	CHECK_EQ_U(env.data[3], RECORD_TAG_RECIPIENT);
	CHECK_EQ_U(env.data[4], 11);
	CHECK_EQ_U(env.data[5], 0);

	uint8_t *big = calloc(1, RECORD_ITEM_VALUE_MAX_BYTES + 1);
	REQUIRE(big != NULL);
	size_t before = env.len;
	CHECK_EQ_U(record_env_put(&env, RECORD_TAG_HELO, span_make(big, RECORD_ITEM_VALUE_MAX_BYTES + 1)),
		   (unsigned long long)-EINVAL);
	CHECK_EQ_U(env.len, before);
	REQUIRE(record_env_put(&env, RECORD_TAG_HELO, span_make(big, RECORD_ITEM_VALUE_MAX_BYTES)) == 0);
	free(big);

	struct span cur = span_make(env.data, env.len);
	uint8_t tag;
	struct span value;
	bool malformed = true;
	REQUIRE(record_env_next(&cur, &tag, &value, &malformed));
	CHECK_EQ_U(tag, RECORD_TAG_REVERSE_PATH);
	CHECK_EQ_U(value.len, 0);
	REQUIRE(record_env_next(&cur, &tag, &value, &malformed));
	CHECK_EQ_U(tag, RECORD_TAG_RECIPIENT);
	CHECK_MEM(value.ptr, value.len, "a@b.example", 11);
	REQUIRE(record_env_next(&cur, &tag, &value, &malformed));
	CHECK_MEM(value.ptr, value.len, "c@d.example", 11);
	REQUIRE(record_env_next(&cur, &tag, &value, &malformed));
	CHECK_EQ_U(tag, 200);
	CHECK_MEM(value.ptr, value.len, "future", 6);
	REQUIRE(record_env_next(&cur, &tag, &value, &malformed));
	CHECK_EQ_U(tag, RECORD_TAG_HELO);
	CHECK_EQ_U(value.len, RECORD_ITEM_VALUE_MAX_BYTES);
	CHECK(!record_env_next(&cur, &tag, &value, &malformed));
	CHECK(!malformed);

	/* Malformed: every truncation of an item that is not at an item end. */
	struct bytebuf one = { 0 };
	REQUIRE(record_env_put(&one, RECORD_TAG_HELO, span_make("mx.example", 10)) == 0);
	for (size_t cut = 1; cut < one.len; cut++) {
		cur = span_make(one.data, cut);
		malformed = false;
		CHECK(!record_env_next(&cur, &tag, &value, &malformed));
		CHECK(malformed);
	}
	/* A zero tag is not an item. */
	one.data[0] = 0;
	cur = span_make(one.data, one.len);
	CHECK(!record_env_next(&cur, &tag, &value, &malformed));
	CHECK(malformed);
	/* A length that runs past the end. */
	one.data[0] = RECORD_TAG_HELO;
	one.data[1] = 11;
	cur = span_make(one.data, one.len);
	CHECK(!record_env_next(&cur, &tag, &value, &malformed));
	CHECK(malformed);
	bytebuf_free(&one);
	bytebuf_free(&env);
}

static void test_lengths(void)
{
	CHECK_EQ_U(record_length(0, 0), RECORD_HEADER_BYTES);
	CHECK_EQ_U(record_padded_length(0, 0), 40);
	CHECK_EQ_U(record_length(3, 2), 45);
	CHECK_EQ_U(record_padded_length(3, 2), 48);
	CHECK_EQ_U(record_padded_length(3, 5), 48);
	CHECK_EQ_U(record_padded_length(3, 6), 56);
	for (uint64_t n = 40; n < 80; n++) {
		CHECK_EQ_U((n + record_padding(n)) % 8, 0);
		CHECK(record_padding(n) < 8);
	}
}

struct sample {
	struct bytebuf env;
	struct iovec body[3];
	struct record_header h;
	uint8_t image[512];
	size_t image_len;
};

static void sample_make(struct sample *s)
{
	memset(s, 0, sizeof(*s));
	REQUIRE(record_env_put(&s->env, RECORD_TAG_REVERSE_PATH, span_make("s@x.example", 11)) == 0);
	REQUIRE(record_env_put(&s->env, RECORD_TAG_RECIPIENT, span_make("r@y.example", 11)) == 0);
	REQUIRE(record_env_put(&s->env, RECORD_TAG_CLIENT_ADDR, span_make("192.0.2.1", 9)) == 0);
	static const char received[] = "Received: from a by b; now\r\n";
	static const char msg[] = "Subject: hi\r\n\r\n..dot\r\n";
	s->body[0] = (struct iovec){ (void *)received, sizeof(received) - 1 };
	s->body[1] = (struct iovec){ NULL, 0 };
	s->body[2] = (struct iovec){ (void *)msg, sizeof(msg) - 1 };
	uint64_t id = queue_id_make(3, 17, 4096);
	record_seal(&s->h, id, 1764345600123ll, span_make(s->env.data, s->env.len), s->body, 3);
	s->image_len = write_record(s->image, sizeof(s->image), &s->h,
				    span_make(s->env.data, s->env.len), s->body, 3);
}

static void test_seal_check_round_trip(void)
{
	struct sample s;
	sample_make(&s);
	size_t body_len = s.body[0].iov_len + s.body[2].iov_len;
	uint64_t length = RECORD_HEADER_BYTES + s.env.len + body_len;

	CHECK_EQ_U(s.h.magic, RECORD_MAGIC);
	CHECK_EQ_U(s.h.type, RECORD_MESSAGE);
	CHECK_EQ_U(s.h.version, RECORD_VERSION);
	CHECK_EQ_U(s.h.length, length);
	CHECK_EQ_U(s.h.envelope_bytes, s.env.len);
	CHECK_EQ_U(s.h.body_bytes, body_len);
	CHECK_EQ_U(s.image_len, record_padded_length(s.env.len, body_len));
	CHECK_EQ_U(s.image_len % 8, 0);
	/* Little-endian on disk, independent of the struct. */
	CHECK_MEM(s.image, 4, "RGMX", 4);
	CHECK_EQ_U(s.image[12] | s.image[13] << 8, length);
	CHECK_EQ_U(s.image[16], 4096 / 8 & 0xff);
	CHECK_EQ_U(s.image[23], 3);
	/* Sealing leaves the CRC of bytes [8, length); on disk it goes on over
	 * the segment's salt, 8 bytes little-endian. */
	uint32_t own = crc32c(0, s.image + 8, length - 8);
	CHECK_EQ_U(s.h.crc32c, own);
	static const uint8_t salt_le[8] = { 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01, 0xED, 0x5E };
	uint32_t crc = crc32c(own, salt_le, sizeof(salt_le));
	CHECK_EQ_U(record_crc_salted(own, TEST_SALT), crc);
	CHECK_EQ_U((uint32_t)s.image[4] | (uint32_t)s.image[5] << 8 | (uint32_t)s.image[6] << 16 |
			   (uint32_t)s.image[7] << 24,
		   crc);

	struct record_view v;
	REQUIRE(record_check(s.image, s.image_len, TEST_SALT, &v) == RECORD_OK);
	CHECK_EQ_U(v.header.queue_id, queue_id_make(3, 17, 4096));
	CHECK(v.header.arrival_unix_ms == 1764345600123ll);
	CHECK_EQ_U(v.header.length, length);
	CHECK_EQ_U(v.header.crc32c, crc);
	CHECK_EQ_U(v.padded_length, s.image_len);
	CHECK_MEM(v.envelope.ptr, v.envelope.len, s.env.data, s.env.len);
	CHECK_MEM(v.body.ptr, v.body.len,
		  "Received: from a by b; now\r\nSubject: hi\r\n\r\n..dot\r\n", body_len);
	/* Exactly `length` bytes are enough: padding is not required. */
	CHECK(record_check(s.image, length, TEST_SALT, &v) == RECORD_OK);
	CHECK(record_check(s.image, length - 1, TEST_SALT, &v) == RECORD_SHORT);

	/* A record with an empty envelope and body. */
	struct record_header h0;
	uint8_t tiny[64];
	record_seal(&h0, 1, -5, span_make(NULL, 0), NULL, 0);
	size_t n = write_record(tiny, sizeof(tiny), &h0, span_make(NULL, 0), NULL, 0);
	CHECK_EQ_U(n, 40);
	REQUIRE(record_check(tiny, n, TEST_SALT, &v) == RECORD_OK);
	CHECK(v.header.arrival_unix_ms == -5);
	CHECK_EQ_U(v.envelope.len, 0);
	CHECK_EQ_U(v.body.len, 0);
	bytebuf_free(&s.env);
}

/* The salt is part of the CRC: the same bytes under another salt, or as
 * record_seal left them (what a client could compute), do not check. */
static void test_salt(void)
{
	struct sample s;
	sample_make(&s);
	struct record_view v;
	CHECK(record_check(s.image, s.image_len, TEST_SALT, &v) == RECORD_OK);
	CHECK(record_check(s.image, s.image_len, TEST_SALT ^ 1, &v) == RECORD_BAD_CRC);
	CHECK(record_check(s.image, s.image_len, TEST_SALT ^ (1ull << 63), &v) == RECORD_BAD_CRC);
	CHECK(record_check(s.image, s.image_len, 0, &v) == RECORD_BAD_CRC);
	uint8_t img[512];
	memcpy(img, s.image, s.image_len);
	memcpy(img + 4, &s.h.crc32c, 4); /* the unsalted CRC */
	for (uint64_t salt = 0; salt < 4096; salt++)
		CHECK(record_check(img, s.image_len, TEST_SALT + salt, &v) == RECORD_BAD_CRC);
	CHECK(record_check(img, s.image_len, 0, &v) == RECORD_BAD_CRC);
	bytebuf_free(&s.env);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void refresh_crc(uint8_t *image)
{
	uint32_t length = image[12] | image[13] << 8 | image[14] << 16 | (uint32_t)image[15] << 24;
	put32(image + 4, record_crc_salted(crc32c(0, image + 8, length - 8), TEST_SALT));
}

static void test_check_failures(void)
{
	struct sample s;
	sample_make(&s);
	struct record_view v;
	uint8_t img[512];

	uint8_t zero[64] = { 0 };
	CHECK(record_check(zero, sizeof(zero), TEST_SALT, &v) == RECORD_EMPTY);
	CHECK(record_check(zero, 10, TEST_SALT, &v) == RECORD_EMPTY);
	CHECK(record_check(zero, 0, TEST_SALT, &v) == RECORD_EMPTY);

	/* Every prefix shorter than the record is SHORT (or EMPTY if zero). */
	for (size_t avail = 1; avail < s.h.length; avail++)
		CHECK(record_check(s.image, avail, TEST_SALT, &v) == RECORD_SHORT);

	/* Magic, version, type: each refused even with a CRC that matches. */
	memcpy(img, s.image, s.image_len);
	img[0] ^= 1;
	CHECK(record_check(img, s.image_len, TEST_SALT, &v) == RECORD_BAD_HEADER);
	memcpy(img, s.image, s.image_len);
	img[10] = 3;
	refresh_crc(img);
	CHECK(record_check(img, s.image_len, TEST_SALT, &v) == RECORD_BAD_HEADER);
	/* Format 1 (an unsalted CRC) is not read as this format. */
	memcpy(img, s.image, s.image_len);
	img[10] = 1;
	put32(img + 4, crc32c(0, img + 8, s.h.length - 8));
	CHECK(record_check(img, s.image_len, TEST_SALT, &v) == RECORD_BAD_HEADER);
	memcpy(img, s.image, s.image_len);
	img[8] = 9;
	refresh_crc(img);
	CHECK(record_check(img, s.image_len, TEST_SALT, &v) == RECORD_BAD_HEADER);
	/* Zero magic with a non-zero header is damage, not the empty tail. */
	memcpy(img, s.image, s.image_len);
	memset(img, 0, 4);
	CHECK(record_check(img, s.image_len, TEST_SALT, &v) == RECORD_BAD_HEADER);

	/* Lengths: below the header, parts not adding up, huge values. */
	memcpy(img, s.image, s.image_len);
	put32(img + 12, 39);
	CHECK(record_check(img, s.image_len, TEST_SALT, &v) == RECORD_BAD_HEADER);
	memcpy(img, s.image, s.image_len);
	put32(img + 32, s.h.envelope_bytes + 1);
	CHECK(record_check(img, s.image_len, TEST_SALT, &v) == RECORD_BAD_HEADER);
	memcpy(img, s.image, s.image_len);
	put32(img + 36, s.h.body_bytes - 1);
	CHECK(record_check(img, s.image_len, TEST_SALT, &v) == RECORD_BAD_HEADER);
	memcpy(img, s.image, s.image_len);
	put32(img + 32, 0xffffffffu);
	put32(img + 36, 0xffffffffu);
	put32(img + 12, 0xffffffffu);
	CHECK(record_check(img, s.image_len, TEST_SALT, &v) == RECORD_BAD_HEADER);
	/* Consistent but larger than what is there. */
	memcpy(img, s.image, s.image_len);
	put32(img + 36, 0x7fffffffu);
	put32(img + 12, 40 + s.h.envelope_bytes + 0x7fffffffu);
	CHECK(record_check(img, s.image_len, TEST_SALT, &v) == RECORD_SHORT);

	/* CRC: a flipped bit anywhere in [4, length) is caught. */
	unsigned missed = 0;
	for (size_t byte = 4; byte < s.h.length; byte++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(img, s.image, s.image_len);
			img[byte] ^= (uint8_t)(1u << bit);
			enum record_check_result r = record_check(img, s.image_len, TEST_SALT, &v);
			if (r == RECORD_OK)
				missed++;
			if (byte >= RECORD_HEADER_BYTES || byte == 5 || byte == 24)
				CHECK(r == RECORD_BAD_CRC);
		}
	}
	CHECK_EQ_U(missed, 0);
	bytebuf_free(&s.env);
}

static void test_queue_id(void)
{
	uint64_t id = queue_id_make(0xAB, 0x123456, 0x89ABCDEFull * 8);
	CHECK_EQ_U(id, 0xAB12345689ABCDEFull);
	uint32_t w, seq;
	uint64_t off;
	queue_id_split(id, &w, &seq, &off);
	CHECK_EQ_U(w, 0xAB);
	CHECK_EQ_U(seq, 0x123456);
	CHECK_EQ_U(off, 0x89ABCDEFull * 8);

	char text[RECORD_QUEUE_ID_CHARS];
	queue_id_format(id, text);
	CHECK_MEM(text, sizeof(text), "AB12345689ABCDEF", 16);
	queue_id_format(queue_id_make(0, 1, 0), text);
	CHECK_MEM(text, sizeof(text), "0000000100000000", 16);

	uint64_t back = 0;
	CHECK(queue_id_parse(span_make("AB12345689ABCDEF", 16), &back));
	CHECK_EQ_U(back, id);
	CHECK(queue_id_parse(span_make("ab12345689abcdef", 16), &back));
	CHECK_EQ_U(back, id);
	CHECK(!queue_id_parse(span_make("AB12345689ABCDE", 15), &back));
	CHECK(!queue_id_parse(span_make("AB12345689ABCDEF0", 17), &back));
	CHECK(!queue_id_parse(span_make("AB12345689ABCDEG", 16), &back));
	CHECK(!queue_id_parse(span_make("AB12345689ABCD F", 16), &back));

	/* Round trips over the whole range of each part. */
	unsigned bad = 0;
	for (uint32_t i = 0; i < 1000; i++) {
		uint32_t wk = i % 256, sq = (i * 2654435761u) & 0xffffff;
		uint64_t of = (uint64_t)((i * 40503u) ^ (i << 20)) * 8;
		uint64_t q = queue_id_make(wk, sq, of);
		queue_id_format(q, text);
		uint64_t p = 0;
		queue_id_split(q, &w, &seq, &off);
		if (!queue_id_parse(span_make(text, 16), &p) || p != q || w != wk || seq != sq ||
		    off != of)
			bad++;
	}
	CHECK_EQ_U(bad, 0);
}

/* Recipients yielded by the cursor, joined with ',' into out. */
static size_t recipients_joined(const struct record_envelope *e, char *out, size_t cap)
{
	struct record_recipient_cursor c = record_recipient_first(e);
	struct span a;
	size_t n = 0, count = 0;
	while (record_recipient_next(&c, &a)) {
		REQUIRE(n + a.len + 1 < cap);
		if (count++ > 0)
			out[n++] = ',';
		memcpy(out + n, a.ptr, a.len);
		n += a.len;
	}
	CHECK_EQ_U(count, e->recipient_count);
	out[n] = '\0';
	return n;
}

/* An envelope with every tag we write, an unknown tag between them and
 * recipients interleaved with the other items. */
static void build_full_envelope(struct bytebuf *env)
{
	uint8_t le[8] = { 0x00, 0x10, 0, 0, 1, 0, 0, 0 }; /* 0x100001000 */
	uint8_t body = RECORD_BODY_8BITMIME;
	REQUIRE(record_env_put(env, RECORD_TAG_REVERSE_PATH, span_make("s@x.example", 11)) == 0);
	REQUIRE(record_env_put(env, RECORD_TAG_BODY_TYPE, span_make(&body, 1)) == 0);
	REQUIRE(record_env_put(env, RECORD_TAG_SMTPUTF8, span_make("", 0)) == 0);
	REQUIRE(record_env_put(env, RECORD_TAG_SIZE_DECLARED, span_make(le, 8)) == 0);
	REQUIRE(record_env_put(env, RECORD_TAG_RECIPIENT, span_make("a@y.example", 11)) == 0);
	REQUIRE(record_env_put(env, 200, span_make("future", 6)) == 0);
	REQUIRE(record_env_put(env, RECORD_TAG_RECIPIENT, span_make("b@y.example", 11)) == 0);
	REQUIRE(record_env_put(env, RECORD_TAG_CLIENT_ADDR, span_make("2001:db8::1", 11)) == 0);
	REQUIRE(record_env_put(env, RECORD_TAG_HELO, span_make("mx.z.example", 12)) == 0);
	REQUIRE(record_env_put(env, RECORD_TAG_PROTOCOL, span_make("ESMTPSA", 7)) == 0);
	REQUIRE(record_env_put(env, RECORD_TAG_TLS, span_make("TLSv1.3 X", 9)) == 0);
	REQUIRE(record_env_put(env, RECORD_TAG_AUTH_USER, span_make("alice", 5)) == 0);
	REQUIRE(record_env_put(env, RECORD_TAG_RECIPIENT, span_make("c@y.example", 11)) == 0);
	REQUIRE(record_env_put(env, 0xff, span_make("", 0)) == 0);
}

static void test_envelope_decode_every_tag(void)
{
	struct bytebuf env = { 0 };
	build_full_envelope(&env);
	/* A heap copy of exactly its length: ASan sees any read past it. */
	uint8_t *exact = malloc(env.len);
	REQUIRE(exact != NULL);
	memcpy(exact, env.data, env.len);
	struct record_envelope e;
	record_envelope_decode(span_make(exact, env.len), &e);
	CHECK(!e.malformed);
	CHECK_MEM(e.reverse_path.ptr, e.reverse_path.len, "s@x.example", 11);
	CHECK_MEM(e.helo.ptr, e.helo.len, "mx.z.example", 12);
	CHECK_MEM(e.client_addr.ptr, e.client_addr.len, "2001:db8::1", 11);
	CHECK_MEM(e.protocol.ptr, e.protocol.len, "ESMTPSA", 7);
	CHECK_MEM(e.tls.ptr, e.tls.len, "TLSv1.3 X", 9);
	CHECK_MEM(e.auth_user.ptr, e.auth_user.len, "alice", 5);
	CHECK_EQ_U(e.body_type, RECORD_BODY_8BITMIME);
	CHECK(e.smtputf8);
	CHECK(e.size_declared);
	CHECK_EQ_U(e.size_declared_bytes, 0x100001000ull);
	CHECK_EQ_U(e.recipient_count, 3);
	char joined[128];
	size_t n = recipients_joined(&e, joined, sizeof(joined));
	CHECK_MEM(joined, n, "a@y.example,b@y.example,c@y.example", 35);
	free(exact);

	/* The empty envelope: every span empty and not NULL, 7BIT, no
	 * recipients, not malformed. */
	record_envelope_decode(span_make(NULL, 0), &e);
	CHECK(!e.malformed);
	CHECK(e.reverse_path.ptr != NULL && e.reverse_path.len == 0);
	CHECK(e.helo.ptr != NULL && e.helo.len == 0);
	CHECK(e.client_addr.ptr != NULL && e.client_addr.len == 0);
	CHECK(e.protocol.ptr != NULL && e.protocol.len == 0);
	CHECK(e.tls.ptr != NULL && e.tls.len == 0);
	CHECK(e.auth_user.ptr != NULL && e.auth_user.len == 0);
	CHECK_EQ_U(e.body_type, RECORD_BODY_7BIT);
	CHECK(!e.smtputf8 && !e.size_declared && e.size_declared_bytes == 0);
	CHECK_EQ_U(e.recipient_count, 0);
	CHECK_EQ_U(recipients_joined(&e, joined, sizeof(joined)), 0);
	bytebuf_free(&env);
}

static void test_envelope_decode_values(void)
{
	/* Body type: each legal value, then other values and lengths. */
	static const struct {
		uint8_t value[2];
		size_t len;
		enum record_body_type want;
	} body_cases[] = {
		{ { 0 }, 1, RECORD_BODY_7BIT },    { { 1 }, 1, RECORD_BODY_8BITMIME },
		{ { 2 }, 1, RECORD_BODY_BINARYMIME }, { { 3 }, 1, RECORD_BODY_UNKNOWN },
		{ { 255 }, 1, RECORD_BODY_UNKNOWN }, { { 0 }, 0, RECORD_BODY_UNKNOWN },
		{ { 1, 0 }, 2, RECORD_BODY_UNKNOWN },
	};
	struct record_envelope e;
	for (size_t i = 0; i < RMX_ARRAY_LEN(body_cases); i++) {
		struct bytebuf env = { 0 };
		REQUIRE(record_env_put(&env, RECORD_TAG_BODY_TYPE,
				       span_make(body_cases[i].value, body_cases[i].len)) == 0);
		record_envelope_decode(span_make(env.data, env.len), &e);
		CHECK(!e.malformed);
		CHECK_EQ_U(e.body_type, body_cases[i].want);
		bytebuf_free(&env);
	}
	/* A declared size of any length but 8 is not a size. */
	uint8_t le[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	for (size_t len = 0; len <= sizeof(le); len++) {
		struct bytebuf env = { 0 };
		REQUIRE(record_env_put(&env, RECORD_TAG_SIZE_DECLARED, span_make(le, len)) == 0);
		record_envelope_decode(span_make(env.data, env.len), &e);
		CHECK(!e.malformed);
		CHECK(e.size_declared == (len == 8));
		CHECK_EQ_U(e.size_declared_bytes, len == 8 ? 0x0807060504030201ull : 0);
		bytebuf_free(&env);
	}
	/* The SMTPUTF8 item means yes whatever its value. */
	struct bytebuf env = { 0 };
	REQUIRE(record_env_put(&env, RECORD_TAG_SMTPUTF8, span_make("x", 1)) == 0);
	record_envelope_decode(span_make(env.data, env.len), &e);
	CHECK(e.smtputf8 && !e.malformed);
	bytebuf_free(&env);
}

static void test_envelope_decode_duplicates(void)
{
	uint8_t le_a[8] = { 7 }, le_b[8] = { 9 };
	uint8_t bin = RECORD_BODY_BINARYMIME, eight = RECORD_BODY_8BITMIME;
	struct bytebuf env = { 0 };
	REQUIRE(record_env_put(&env, RECORD_TAG_REVERSE_PATH, span_make("first@x", 7)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_HELO, span_make("h1", 2)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_CLIENT_ADDR, span_make("192.0.2.1", 9)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_PROTOCOL, span_make("SMTP", 4)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_BODY_TYPE, span_make(&bin, 1)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_SIZE_DECLARED, span_make(le_a, 8)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_RECIPIENT, span_make("r@y", 3)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_RECIPIENT, span_make("r@y", 3)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_REVERSE_PATH, span_make("", 0)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_HELO, span_make("h2", 2)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_CLIENT_ADDR, span_make("192.0.2.2", 9)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_PROTOCOL, span_make("ESMTPS", 6)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_BODY_TYPE, span_make(&eight, 1)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_SIZE_DECLARED, span_make(le_b, 8)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_SMTPUTF8, span_make("", 0)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_SMTPUTF8, span_make("", 0)) == 0);
	struct record_envelope e;
	record_envelope_decode(span_make(env.data, env.len), &e);
	CHECK(!e.malformed);
	/* The last of each single-valued item wins... */
	CHECK_EQ_U(e.reverse_path.len, 0);
	CHECK_MEM(e.helo.ptr, e.helo.len, "h2", 2);
	CHECK_MEM(e.client_addr.ptr, e.client_addr.len, "192.0.2.2", 9);
	CHECK_MEM(e.protocol.ptr, e.protocol.len, "ESMTPS", 6);
	CHECK_EQ_U(e.body_type, RECORD_BODY_8BITMIME);
	CHECK_EQ_U(e.size_declared_bytes, 9);
	CHECK(e.smtputf8);
	/* ...and a repeated recipient is two recipients, as RCPT gave them. */
	CHECK_EQ_U(e.recipient_count, 2);
	char joined[64];
	size_t n = recipients_joined(&e, joined, sizeof(joined));
	CHECK_MEM(joined, n, "r@y,r@y", 7);
	bytebuf_free(&env);
}

/*
 * Every cut of the full envelope: at an item boundary it decodes as the
 * items before the cut, not malformed; inside an item it is malformed with
 * exactly the facts and recipients of the whole items before that one. The
 * cut copy lives in a heap block of its exact length (ASan bounds).
 */
static void test_envelope_decode_truncated(void)
{
	struct bytebuf env = { 0 };
	build_full_envelope(&env);
	size_t boundaries[32], nb = 0;
	for (struct span cur = span_make(env.data, env.len);;) {
		boundaries[nb++] = env.len - cur.len;
		uint8_t tag;
		struct span v;
		bool malformed;
		if (!record_env_next(&cur, &tag, &v, &malformed))
			break;
		REQUIRE(nb < RMX_ARRAY_LEN(boundaries));
	}
	CHECK_EQ_U(boundaries[nb - 1], env.len);
	unsigned bad = 0;
	for (size_t cut = 0; cut <= env.len; cut++) {
		size_t whole = 0; /* the last boundary at or before cut */
		bool at_boundary = false;
		for (size_t b = 0; b < nb; b++) {
			if (boundaries[b] <= cut)
				whole = boundaries[b];
			at_boundary = at_boundary || boundaries[b] == cut;
		}
		uint8_t *part = malloc(cut ? cut : 1);
		REQUIRE(part != NULL);
		memcpy(part, env.data, cut);
		struct record_envelope got, want;
		record_envelope_decode(span_make(part, cut), &got);
		record_envelope_decode(span_make(env.data, whole), &want);
		char got_r[128], want_r[128];
		size_t got_n = recipients_joined(&got, got_r, sizeof(got_r));
		size_t want_n = recipients_joined(&want, want_r, sizeof(want_r));
		bool same = got.malformed == !at_boundary && !want.malformed &&
			    got.reverse_path.len == want.reverse_path.len &&
			    got.helo.len == want.helo.len &&
			    got.client_addr.len == want.client_addr.len &&
			    got.protocol.len == want.protocol.len &&
			    got.body_type == want.body_type && got.smtputf8 == want.smtputf8 &&
			    got.size_declared == want.size_declared &&
			    got.size_declared_bytes == want.size_declared_bytes &&
			    got.recipient_count == want.recipient_count && got_n == want_n &&
			    memcmp(got_r, want_r, got_n) == 0;
		if (!same) {
			fprintf(stderr, "envelope cut at %zu decodes wrong\n", cut);
			bad++;
		}
		free(part);
	}
	CHECK_EQ_U(bad, 0);

	/* A zero tag and a length past the end stop the decode likewise;
	 * the recipient before them is still there. */
	for (int kind = 0; kind < 2; kind++) {
		struct bytebuf b = { 0 };
		REQUIRE(record_env_put(&b, RECORD_TAG_RECIPIENT, span_make("a@y", 3)) == 0);
		REQUIRE(record_env_put(&b, RECORD_TAG_HELO, span_make("mx", 2)) == 0);
		REQUIRE(record_env_put(&b, RECORD_TAG_RECIPIENT, span_make("b@y", 3)) == 0);
		if (kind == 0)
			b.data[6] = 0;  /* the HELO item's tag */
		else
			b.data[7] = 10; /* the HELO item's length */
		struct record_envelope e;
		record_envelope_decode(span_make(b.data, b.len), &e);
		CHECK(e.malformed);
		CHECK_EQ_U(e.helo.len, 0);
		CHECK_EQ_U(e.recipient_count, 1);
		char joined[32];
		size_t n = recipients_joined(&e, joined, sizeof(joined));
		CHECK_MEM(joined, n, "a@y", 3);
		bytebuf_free(&b);
	}
	bytebuf_free(&env);
}

int main(void)
{
	test_bytebuf();
	test_envelope();
	test_envelope_decode_every_tag();
	test_envelope_decode_values();
	test_envelope_decode_duplicates();
	test_envelope_decode_truncated();
	test_lengths();
	test_seal_check_round_trip();
	test_salt();
	test_check_failures();
	test_queue_id();
	return test_main_end("record");
}
