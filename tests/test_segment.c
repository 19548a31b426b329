/*
 * test_segment.c - the segment header and the scanner on images built in
 * memory: every header status, clean segments, a torn last record cut at
 * every byte (rest zero, or rest garbage), every single-bit flip in the
 * middle record of three, holes, misplaced records, records forged inside a
 * message body; then the blocking file helpers in a temporary directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../storage/segment.h"
#include "../storage/segment_quarantine.h"
#include "test.h"
#include "test_util.h"

#define BASE SEGMENT_HEADER_BYTES          /* the first record's offset */
#define IMAGE_BYTES (BASE + 3 * SEGMENT_BLOCK_BYTES)
#define TEST_WORKER 7
#define TEST_SEQ 42
#define TEST_SALT 0x0123456789ABCDEFull

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static uint64_t rng_next(void)
{
	return test_xorshift64(&rng_state);
}

/* A segment image: the header block of TEST_WORKER/TEST_SEQ, then zeros. */
static void image_init(uint8_t *image, uint64_t size)
{
	REQUIRE(size >= BASE);
	memset(image, 0, size);
	segment_header_encode(image, TEST_WORKER, TEST_SEQ, TEST_SALT);
}

/* Writes a sealed record at offset whose id names (worker, seq, id_offset),
 * with its CRC salted with salt as the store writes it; returns its
 * unpadded length. body_len bytes of 'a'+n. */
static uint64_t put_record_salted(uint8_t *image, uint64_t offset, uint32_t seq,
				  uint64_t id_offset, size_t body_len, int n, uint64_t salt)
{
	struct bytebuf env = { 0 };
	REQUIRE(record_env_put(&env, RECORD_TAG_REVERSE_PATH, span_make("from@x.example", 14)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_RECIPIENT, span_make("to@y.example", 12)) == 0);
	uint8_t body[1024];
	REQUIRE(body_len <= sizeof(body));
	memset(body, 'a' + n, body_len);
	struct iovec part = { body, body_len };
	struct record_header h;
	record_seal(&h, queue_id_make(TEST_WORKER, seq, id_offset), 1000 + n,
		    span_make(env.data, env.len), &part, 1);
	h.crc32c = record_crc_salted(h.crc32c, salt);
	uint64_t padded = record_padded_length(env.len, body_len);
	REQUIRE(offset + padded <= IMAGE_BYTES);
	memcpy(image + offset, &h, RECORD_HEADER_BYTES);
	memcpy(image + offset + RECORD_HEADER_BYTES, env.data, env.len);
	memcpy(image + offset + RECORD_HEADER_BYTES + env.len, body, body_len);
	memset(image + offset + h.length, 0, padded - h.length);
	bytebuf_free(&env);
	return h.length;
}

static uint64_t put_record(uint8_t *image, uint64_t offset, uint32_t seq, uint64_t id_offset,
			   size_t body_len, int n)
{
	return put_record_salted(image, offset, seq, id_offset, body_len, n, TEST_SALT);
}

struct three {
	uint8_t image[IMAGE_BYTES];
	uint64_t off[3];
	uint64_t len[3];
};

static void make_three(struct three *t)
{
	image_init(t->image, sizeof(t->image));
	static const size_t bodies[3] = { 101, 333, 250 };
	uint64_t off = BASE;
	for (int i = 0; i < 3; i++) {
		t->off[i] = off;
		t->len[i] = put_record(t->image, off, TEST_SEQ, off, bodies[i], i);
		off += t->len[i] + record_padding(t->len[i]);
	}
}

/* Scans image (its header must be sound) and returns the number of items,
 * copying up to cap. */
static size_t scan_all(const uint8_t *image, uint64_t size, struct segment_item *items, size_t cap)
{
	struct segment_scan s;
	REQUIRE(segment_scan_init(&s, image, size, TEST_WORKER, TEST_SEQ) == SEGMENT_HEADER_OK);
	size_t n = 0;
	struct segment_item it;
	while (segment_scan_next(&s, &it)) {
		if (n < cap)
			items[n] = it;
		n++;
		REQUIRE(n < 10000);
	}
	CHECK(!segment_scan_next(&s, &it));
	return n;
}

static void test_clean(void)
{
	struct segment_item items[8];
	static uint8_t empty[IMAGE_BYTES];
	image_init(empty, sizeof(empty));
	size_t n = scan_all(empty, sizeof(empty), items, 8);
	CHECK_EQ_U(n, 1);
	CHECK(items[0].kind == SEGMENT_ITEM_END && items[0].offset == BASE);
	CHECK_EQ_U(items[0].length_bytes, IMAGE_BYTES - BASE);
	CHECK_EQ_U(scan_all(empty, BASE, items, 8), 1); /* a header and no room */
	CHECK(items[0].kind == SEGMENT_ITEM_END && items[0].length_bytes == 0);

	/* Without a sound header nothing is yielded at all. */
	struct segment_scan s;
	struct segment_item it;
	uint8_t zero[64] = { 0 };
	CHECK(segment_scan_init(&s, zero, sizeof(zero), TEST_WORKER, TEST_SEQ) ==
	      SEGMENT_HEADER_NONE);
	CHECK(!segment_scan_next(&s, &it));
	CHECK(segment_scan_init(&s, NULL, 0, TEST_WORKER, TEST_SEQ) == SEGMENT_HEADER_NONE);
	CHECK(!segment_scan_next(&s, &it));

	struct three t;
	make_three(&t);
	n = scan_all(t.image, IMAGE_BYTES, items, 8);
	REQUIRE(n == 4);
	for (int i = 0; i < 3; i++) {
		CHECK(items[i].kind == SEGMENT_ITEM_RECORD);
		CHECK_EQ_U(items[i].offset, t.off[i]);
		CHECK_EQ_U(items[i].record.header.length, t.len[i]);
		CHECK(items[i].record.header.arrival_unix_ms == 1000 + i);
		CHECK_EQ_U(items[i].record.body.ptr[0], 'a' + i);
	}
	CHECK(items[3].kind == SEGMENT_ITEM_END);
	uint64_t end = t.off[2] + t.len[2] + record_padding(t.len[2]);
	CHECK_EQ_U(items[3].offset, end);
	CHECK_EQ_U(items[3].length_bytes, IMAGE_BYTES - end);

	/* A segment filled exactly to its last byte, and one of odd size. */
	CHECK_EQ_U(scan_all(t.image, end, items, 8), 4);
	CHECK(items[3].kind == SEGMENT_ITEM_END && items[3].length_bytes == 0);
	CHECK_EQ_U(scan_all(t.image, end + 3, items, 8), 4);
	CHECK(items[3].kind == SEGMENT_ITEM_END);
}

static void test_data_end(void)
{
	uint8_t buf[40] = { 0 };
	CHECK_EQ_U(segment_data_end(buf, 40), 0);
	buf[0] = 1;
	CHECK_EQ_U(segment_data_end(buf, 40), 8);
	buf[7] = 1;
	CHECK_EQ_U(segment_data_end(buf, 40), 8);
	buf[8] = 1;
	CHECK_EQ_U(segment_data_end(buf, 40), 16);
	buf[39] = 1;
	CHECK_EQ_U(segment_data_end(buf, 40), 40);
	CHECK_EQ_U(segment_data_end(buf, 37), 16);
	buf[36] = 1;
	CHECK_EQ_U(segment_data_end(buf, 37), 37); /* clamped to the size */
}

/* The last record cut at every byte: the rest zero (a truncated write) or
 * garbage (a write torn over stale data). */
static void test_torn_tail_every_byte(void)
{
	struct three t;
	make_three(&t);
	uint64_t last = t.off[2];
	unsigned bad_zero = 0, bad_garbage = 0;
	static uint8_t img[IMAGE_BYTES];
	struct segment_item items[8];

	for (uint64_t cut = 0; cut < t.len[2]; cut++) {
		memcpy(img, t.image, IMAGE_BYTES);
		memset(img + last + cut, 0, IMAGE_BYTES - (last + cut));
		size_t n = scan_all(img, IMAGE_BYTES, items, 8);
		bool ok = n == 3 && items[0].kind == SEGMENT_ITEM_RECORD &&
			  items[1].kind == SEGMENT_ITEM_RECORD && items[0].offset == t.off[0] &&
			  items[1].offset == t.off[1] && items[2].offset == last;
		if (cut == 0)
			ok = ok && items[2].kind == SEGMENT_ITEM_END;
		else
			ok = ok && items[2].kind == SEGMENT_ITEM_TORN_TAIL &&
			     items[2].length_bytes == RMX_ALIGN_UP(cut, 8);
		if (!ok) {
			bad_zero++;
			fprintf(stderr, "torn (zero) at cut %llu: %zu items\n",
				(unsigned long long)cut, n);
		}

		memcpy(img, t.image, IMAGE_BYTES);
		for (uint64_t i = last + cut; i < IMAGE_BYTES; i++)
			img[i] = (uint8_t)(rng_next() | 1);
		n = scan_all(img, IMAGE_BYTES, items, 8);
		ok = n == 3 && items[0].kind == SEGMENT_ITEM_RECORD &&
		     items[1].kind == SEGMENT_ITEM_RECORD && items[1].offset == t.off[1] &&
		     items[2].kind == SEGMENT_ITEM_TORN_TAIL && items[2].offset == last &&
		     items[2].length_bytes == IMAGE_BYTES - last;
		if (!ok) {
			bad_garbage++;
			fprintf(stderr, "torn (garbage) at cut %llu: %zu items\n",
				(unsigned long long)cut, n);
		}
	}
	CHECK_EQ_U(bad_zero, 0);
	CHECK_EQ_U(bad_garbage, 0);
}

/* Every single-bit flip in the middle record: it alone is set aside. */
static void test_middle_bit_flips(void)
{
	struct three t;
	make_three(&t);
	static uint8_t img[IMAGE_BYTES];
	struct segment_item items[8];
	unsigned bad = 0;
	for (uint64_t byte = t.off[1]; byte < t.off[1] + t.len[1]; byte++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(img, t.image, IMAGE_BYTES);
			img[byte] ^= (uint8_t)(1u << bit);
			size_t n = scan_all(img, IMAGE_BYTES, items, 8);
			bool ok = n == 4 && items[0].kind == SEGMENT_ITEM_RECORD &&
				  items[0].offset == t.off[0] &&
				  items[1].kind == SEGMENT_ITEM_CORRUPT &&
				  items[1].offset == t.off[1] &&
				  items[1].length_bytes == t.off[2] - t.off[1] &&
				  items[1].reason != SEGMENT_BAD_NONE &&
				  items[2].kind == SEGMENT_ITEM_RECORD &&
				  items[2].offset == t.off[2] && items[3].kind == SEGMENT_ITEM_END;
			if (!ok) {
				bad++;
				fprintf(stderr, "flip at %llu bit %d: %zu items\n",
					(unsigned long long)byte, bit, n);
			}
		}
	}
	CHECK_EQ_U(bad, 0);

	/* Reasons are reported: a CRC flip in the body, a header flip. */
	memcpy(img, t.image, IMAGE_BYTES);
	img[t.off[1] + t.len[1] - 1] ^= 0x40;
	CHECK_EQ_U(scan_all(img, IMAGE_BYTES, items, 8), 4);
	CHECK(items[1].reason == SEGMENT_BAD_CRC);
	memcpy(img, t.image, IMAGE_BYTES);
	img[t.off[1] + 1] ^= 0x01;
	CHECK_EQ_U(scan_all(img, IMAGE_BYTES, items, 8), 4);
	CHECK(items[1].reason == SEGMENT_BAD_HEADER);
}

static void test_holes_and_strays(void)
{
	struct three t;
	make_three(&t);
	static uint8_t img[IMAGE_BYTES];
	struct segment_item items[8];

	/* The middle record zeroed: a hole, then the third record. */
	memcpy(img, t.image, IMAGE_BYTES);
	memset(img + t.off[1], 0, t.off[2] - t.off[1]);
	REQUIRE(scan_all(img, IMAGE_BYTES, items, 8) == 4);
	CHECK(items[1].kind == SEGMENT_ITEM_CORRUPT);
	CHECK(items[1].reason == SEGMENT_BAD_ZERO_HEADER);
	CHECK(items[2].kind == SEGMENT_ITEM_RECORD && items[2].offset == t.off[2]);

	/* A well-formed record whose id names another offset or segment. */
	image_init(img, IMAGE_BYTES);
	put_record(img, BASE, TEST_SEQ, BASE + 64, 10, 0);
	REQUIRE(scan_all(img, IMAGE_BYTES, items, 8) == 1);
	CHECK(items[0].kind == SEGMENT_ITEM_TORN_TAIL);
	CHECK(items[0].reason == SEGMENT_BAD_MISPLACED);
	image_init(img, IMAGE_BYTES);
	put_record(img, BASE, TEST_SEQ + 1, BASE, 10, 0);
	REQUIRE(scan_all(img, IMAGE_BYTES, items, 8) == 1);
	CHECK(items[0].reason == SEGMENT_BAD_MISPLACED);

	/* Garbage at the start, a valid record later: resync finds it. */
	image_init(img, IMAGE_BYTES);
	uint64_t l = put_record(img, BASE + 800, TEST_SEQ, BASE + 800, 20, 1);
	for (int i = 0; i < 800; i++)
		img[BASE + i] = (uint8_t)rng_next();
	REQUIRE(scan_all(img, IMAGE_BYTES, items, 8) == 3);
	CHECK(items[0].kind == SEGMENT_ITEM_CORRUPT && items[0].length_bytes == 800);
	CHECK(items[1].kind == SEGMENT_ITEM_RECORD && items[1].record.header.length == l);
	CHECK(items[2].kind == SEGMENT_ITEM_END);
}

/*
 * Random damage over random segments: whatever the bytes, items tile the
 * image from 0 to its end, the scan ends with END or TORN_TAIL, and every
 * record it yields checks and sits where its id says. Sizes are odd on
 * purpose; the sanitizer build catches any read past the image.
 */
static void test_random_damage(void)
{
	unsigned broken = 0;
	for (int round = 0; round < 400; round++) {
		uint64_t size = BASE + 512 + rng_next() % (IMAGE_BYTES - BASE - 512);
		uint8_t *img = malloc(size); /* exact size: ASan sees overruns */
		REQUIRE(img != NULL);
		image_init(img, size);
		static uint8_t tmp[IMAGE_BYTES];
		uint64_t off = BASE;
		while (rng_next() % 5 != 0) {
			size_t body = rng_next() % 300;
			memset(tmp, 0, sizeof(tmp));
			if (off + 128 + body > size)
				break;
			uint64_t len = put_record(tmp, off, TEST_SEQ, off, body, round % 20);
			memcpy(img + off, tmp + off, len);
			off += len + record_padding(len);
		}
		int damage = (int)(rng_next() % 4);
		for (int d = 0; d < damage; d++) {
			uint64_t at = BASE + rng_next() % (size - BASE);
			uint64_t want = 1 + rng_next() % 64; /* RMX_MIN evaluates twice */
			uint64_t n = RMX_MIN(size - at, want);
			for (uint64_t i = 0; i < n; i++)
				img[at + i] = (d & 1) ? 0 : (uint8_t)rng_next();
		}
		struct segment_scan sc;
		struct segment_item it;
		REQUIRE(segment_scan_init(&sc, img, size, TEST_WORKER, TEST_SEQ) ==
			SEGMENT_HEADER_OK);
		uint64_t expect = BASE;
		bool ok = true, ended = false;
		int items = 0;
		while (segment_scan_next(&sc, &it)) {
			items++;
			ok = ok && !ended && it.offset == expect;
			if (it.kind == SEGMENT_ITEM_RECORD) {
				struct record_view v;
				ok = ok &&
				     record_check(img + it.offset, size - it.offset, TEST_SALT, &v) ==
					     RECORD_OK &&
				     v.header.queue_id == queue_id_make(TEST_WORKER, TEST_SEQ, it.offset);
			}
			if (it.kind == SEGMENT_ITEM_END || it.kind == SEGMENT_ITEM_TORN_TAIL)
				ended = true;
			expect = RMX_MIN(it.offset + it.length_bytes, size);
			if (it.kind == SEGMENT_ITEM_END)
				expect = size;
			REQUIRE(items < 10000);
		}
		ok = ok && ended;
		if (!ok)
			broken++;
		free(img);
	}
	CHECK_EQ_U(broken, 0);
}


static void put_le32_at(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The header block: a round trip, every status, every single-bit flip. */
static void test_header(void)
{
	static uint8_t img[IMAGE_BYTES];
	uint64_t salt = 0;
	image_init(img, IMAGE_BYTES);
	CHECK(segment_header_check(img, IMAGE_BYTES, TEST_WORKER, TEST_SEQ, &salt) ==
	      SEGMENT_HEADER_OK);
	CHECK_EQ_U(salt, TEST_SALT);
	CHECK_MEM(img, 4, "RMXS", 4);
	CHECK_EQ_U(img[8], SEGMENT_FORMAT_VERSION);
	CHECK_EQ_U(img[24], TEST_SALT & 0xff); /* little-endian salt at 24 */
	CHECK(segment_header_check(img, IMAGE_BYTES, TEST_WORKER + 1, TEST_SEQ, &salt) ==
	      SEGMENT_HEADER_MISPLACED);
	CHECK(segment_header_check(img, IMAGE_BYTES, TEST_WORKER, TEST_SEQ + 1, &salt) ==
	      SEGMENT_HEADER_MISPLACED);
	CHECK(segment_header_check(img, BASE - 1, TEST_WORKER, TEST_SEQ, &salt) ==
	      SEGMENT_HEADER_DAMAGED);
	CHECK(segment_header_check(img, 0, TEST_WORKER, TEST_SEQ, &salt) == SEGMENT_HEADER_NONE);

	unsigned missed = 0;
	for (int byte = 0; byte < 32; byte++) {
		for (int bit = 0; bit < 8; bit++) {
			image_init(img, IMAGE_BYTES);
			img[byte] ^= (uint8_t)(1u << bit);
			if (segment_header_check(img, IMAGE_BYTES, TEST_WORKER, TEST_SEQ, &salt) ==
			    SEGMENT_HEADER_OK)
				missed++;
		}
	}
	CHECK_EQ_U(missed, 0);
	image_init(img, IMAGE_BYTES);
	img[BASE - 1] = 1; /* the rest of the block must be zero */
	CHECK(segment_header_check(img, IMAGE_BYTES, TEST_WORKER, TEST_SEQ, &salt) ==
	      SEGMENT_HEADER_DAMAGED);
	image_init(img, IMAGE_BYTES);
	put_le32_at(img + 8, SEGMENT_FORMAT_VERSION + 1);
	CHECK(segment_header_check(img, IMAGE_BYTES, TEST_WORKER, TEST_SEQ, &salt) ==
	      SEGMENT_HEADER_VERSION);

	/* Format 1: records from offset 0, no header. */
	memset(img, 0, IMAGE_BYTES);
	struct record_header h;
	record_seal(&h, queue_id_make(TEST_WORKER, TEST_SEQ, 0), 1, span_make(NULL, 0), NULL, 0);
	h.version = 1;
	memcpy(img, &h, RECORD_HEADER_BYTES);
	CHECK(segment_header_check(img, IMAGE_BYTES, TEST_WORKER, TEST_SEQ, &salt) ==
	      SEGMENT_HEADER_FORMAT_1);
	CHECK(!segment_image_unused(img, IMAGE_BYTES)); /* its record is in the first block */
	memset(img, 0x5a, 64);
	CHECK(segment_header_check(img, IMAGE_BYTES, TEST_WORKER, TEST_SEQ, &salt) ==
	      SEGMENT_HEADER_UNKNOWN);
	CHECK(!segment_image_unused(img, IMAGE_BYTES));

	/* Unused: zeros, a header alone (sound or torn); not with a record. */
	memset(img, 0, IMAGE_BYTES);
	CHECK(segment_image_unused(img, IMAGE_BYTES));
	CHECK(segment_image_unused(NULL, 0));
	image_init(img, IMAGE_BYTES);
	CHECK(segment_image_unused(img, IMAGE_BYTES));
	memset(img + 12, 0xee, 4);
	CHECK(segment_image_unused(img, IMAGE_BYTES));
	image_init(img, IMAGE_BYTES);
	img[BASE] = 1;
	CHECK(!segment_image_unused(img, IMAGE_BYTES));
	for (int st = SEGMENT_HEADER_OK; st <= SEGMENT_HEADER_UNKNOWN; st++)
		CHECK(strcmp(segment_header_status_name((enum segment_header_status)st), "unknown") != 0);
}

/* Seals a record with this envelope and body at offset; salted when salted
 * (as the store writes it), else with the CRC as record_seal leaves it,
 * which is all a client can compute. Returns its unpadded length. */
static uint64_t put_record_bytes(uint8_t *image, uint64_t image_bytes, uint64_t offset,
				 uint64_t id, const char *from, const char *to,
				 const uint8_t *body, size_t body_len, bool salted)
{
	struct bytebuf env = { 0 };
	REQUIRE(record_env_put(&env, RECORD_TAG_REVERSE_PATH, span_make(from, strlen(from))) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_RECIPIENT, span_make(to, strlen(to))) == 0);
	struct iovec part = { (void *)body, body_len };
	struct record_header h;
	record_seal(&h, id, 1000, span_make(env.data, env.len), &part, 1);
	if (salted)
		h.crc32c = record_crc_salted(h.crc32c, TEST_SALT);
	REQUIRE(offset + record_padded_length(env.len, body_len) <= image_bytes);
	memcpy(image + offset, &h, RECORD_HEADER_BYTES);
	memcpy(image + offset + RECORD_HEADER_BYTES, env.data, env.len);
	memcpy(image + offset + RECORD_HEADER_BYTES + env.len, body, body_len);
	bytebuf_free(&env);
	return h.length;
}

/*
 * The audit's case: a message body carries a complete record (envelope
 * ceo@example.org -> victim@evil.test, the queue id of its place, a CRC as
 * a client can compute it) at an 8-byte boundary; the real record's last 7
 * bytes are lost (a torn write). The forged record is never yielded: the
 * real one is the torn tail. Also with a record after the real one
 * (damage in the middle), and with the real header itself damaged, so that
 * the scan has to resync through the body.
 */
static void test_forged_record_in_body(void)
{
	static uint8_t img[IMAGE_BYTES];
	image_init(img, IMAGE_BYTES);
	uint64_t first_len = put_record(img, BASE, TEST_SEQ, BASE, 20, 0); /* a good record first */
	const uint64_t real_off = BASE + first_len + record_padding(first_len);
	const char *from = "ceo@example.org", *to = "user@example.net";
	uint64_t env_len = 3 + strlen(from) + 3 + strlen(to);
	uint64_t body_start = real_off + RECORD_HEADER_BYTES + env_len;
	uint64_t forged_off = RMX_ALIGN_UP(body_start + 16, 8);
	uint8_t forged[1024];
	memset(forged, 0, sizeof(forged));
	uint8_t evil_body[64];
	memset(evil_body, 'E', sizeof(evil_body));
	uint64_t flen = put_record_bytes(forged, sizeof(forged), 0,
					 queue_id_make(TEST_WORKER, TEST_SEQ, forged_off),
					 "ceo@example.org", "victim@evil.test", evil_body,
					 sizeof(evil_body), false);
	uint8_t body[1024];
	memset(body, 'b', sizeof(body));
	uint64_t in_body = forged_off - body_start;
	memcpy(body + in_body, forged, flen);
	size_t body_len = (size_t)(in_body + flen + 100);

	for (int variant = 0; variant < 3; variant++) {
		image_init(img, IMAGE_BYTES);
		put_record(img, BASE, TEST_SEQ, BASE, 20, 0);
		uint64_t rlen = put_record_bytes(img, IMAGE_BYTES, real_off,
						 queue_id_make(TEST_WORKER, TEST_SEQ, real_off),
						 from, to, body, body_len, true);
		uint64_t after = real_off + rlen + record_padding(rlen);
		if (variant >= 1) /* a record after it: the damage is in the middle */
			put_record(img, after, TEST_SEQ, after, 30, 2);
		if (variant == 2)
			img[real_off] ^= 0x01; /* the real header's magic: resync */
		else
			memset(img + real_off + rlen - 7, 0, 7); /* the torn write */

		struct segment_item items[8];
		size_t n = scan_all(img, IMAGE_BYTES, items, 8);
		bool forged_taken = false;
		for (size_t i = 0; i < n && i < 8; i++)
			forged_taken = forged_taken || (items[i].kind == SEGMENT_ITEM_RECORD &&
							items[i].offset != BASE &&
							items[i].offset != after);
		CHECK(!forged_taken);
		REQUIRE(n >= 2);
		CHECK(items[0].kind == SEGMENT_ITEM_RECORD && items[0].offset == BASE);
		if (variant == 0) {
			CHECK_EQ_U(n, 2);
			CHECK(items[1].kind == SEGMENT_ITEM_TORN_TAIL && items[1].offset == real_off);
			CHECK(items[1].reason == SEGMENT_BAD_CRC);
		} else if (variant == 1) {
			/* Skipped by its claimed length, not searched inside. */
			CHECK_EQ_U(n, 4);
			CHECK(items[1].kind == SEGMENT_ITEM_CORRUPT && items[1].offset == real_off &&
			      items[1].length_bytes == after - real_off);
			CHECK(items[2].kind == SEGMENT_ITEM_RECORD && items[2].offset == after);
		} else {
			/* The forged header is plausible, so the resync stops there,
			 * but its record does not check: it is set aside too. */
			CHECK(items[n - 2].kind == SEGMENT_ITEM_RECORD && items[n - 2].offset == after);
			for (size_t i = 1; i + 2 < n; i++)
				CHECK(items[i].kind == SEGMENT_ITEM_CORRUPT);
		}
	}
}

static void test_names(void)
{
	char name[SEGMENT_NAME_MAX_BYTES];
	segment_name_format(name, 1);
	CHECK(strcmp(name, "00000001.seg") == 0);
	segment_name_format(name, SEGMENT_SEQ_MAX);
	CHECK(strcmp(name, "16777215.seg") == 0);
	uint32_t seq = 0;
	CHECK(segment_name_parse("00000001.seg", &seq) && seq == 1);
	CHECK(segment_name_parse("12.seg", &seq) && seq == 12);
	CHECK(segment_name_parse("16777215.seg", &seq) && seq == SEGMENT_SEQ_MAX);
	CHECK(!segment_name_parse("16777216.seg", &seq));
	CHECK(!segment_name_parse("0.seg", &seq));
	CHECK(!segment_name_parse(".seg", &seq));
	CHECK(!segment_name_parse("1.seg.tmp", &seq));
	CHECK(!segment_name_parse("1.se", &seq));
	CHECK(!segment_name_parse("x1.seg", &seq));
	CHECK(!segment_name_parse("99999999999999999999.seg", &seq));
}

static void test_files(void)
{
	char dir[] = "/tmp/rmx-segment-XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	REQUIRE(dfd >= 0);

	int fd3 = -1, fd1 = -1;
	uint64_t salt3 = 0, salt1 = 0, salt = 0;
	REQUIRE(segment_create_zeroed(dfd, TEST_WORKER, 3, 65536, &fd3, &salt3) == 0);
	REQUIRE(segment_create_zeroed(dfd, TEST_WORKER, 1, 8192, &fd1, &salt1) == 0);
	CHECK_EQ_U(segment_create_zeroed(dfd, TEST_WORKER, 1, 8192, &fd1, &salt),
		   (unsigned long long)-EEXIST);
	CHECK(salt1 != salt3); /* fresh random salts (equal once in 2^64) */
	struct stat sb;
	REQUIRE(fstat(fd3, &sb) == 0);
	CHECK_EQ_U(sb.st_size, 65536);
	CHECK(sb.st_blocks * 512 >= 65536); /* allocated, not sparse */
	/* Written zeros versus merely allocated or sparse blocks. */
	int pz = segment_is_prezeroed(fd3, 65536);
	if (pz == -EOPNOTSUPP) {
		fprintf(stderr, "test_segment: no FIEMAP here; pre-zeroed checks skipped\n");
	} else {
		CHECK_EQ_U(pz, 1);
		int fa = openat(dfd, "allocated", O_RDWR | O_CREAT, 0600);
		REQUIRE(fa >= 0);
		REQUIRE(fallocate(fa, 0, 0, 65536) == 0);
		CHECK_EQ_U(segment_is_prezeroed(fa, 65536), 0);
		REQUIRE(segment_zero_range(fa, 0, 32768) == 0);
		CHECK_EQ_U(segment_is_prezeroed(fa, 65536), 0); /* half of it */
		REQUIRE(segment_zero_range(fa, 32768, 32768) == 0);
		CHECK_EQ_U(segment_is_prezeroed(fa, 65536), 1);
		REQUIRE(ftruncate(fa, 131072) == 0);              /* a hole at the end */
		CHECK_EQ_U(segment_is_prezeroed(fa, 131072), 0);
		close(fa);
		unlinkat(dfd, "allocated", 0);
	}

	uint32_t *seqs = NULL;
	size_t count = 0;
	int fdx = openat(dfd, "notes.txt", O_CREAT | O_WRONLY, 0600);
	REQUIRE(fdx >= 0);
	close(fdx);
	REQUIRE(segment_list(dfd, &seqs, &count) == 0);
	REQUIRE(count == 2);
	CHECK(seqs[0] == 1 && seqs[1] == 3);
	free(seqs);

	/* Write a record, map, scan, zero it again. */
	static uint8_t rec[IMAGE_BYTES];
	memset(rec, 0, sizeof(rec));
	uint64_t l = put_record_salted(rec, BASE, 3, BASE, 50, 0, salt3);
	REQUIRE(segment_write_all_at(fd3, rec + BASE, (size_t)l, BASE) == 0);
	struct segment_map m;
	REQUIRE(segment_map_open(dfd, 3, false, &m) == 0);
	CHECK_EQ_U(m.size_bytes, 65536);
	CHECK(segment_header_check(m.image, m.size_bytes, TEST_WORKER, 3, &salt) ==
	      SEGMENT_HEADER_OK);
	CHECK_EQ_U(salt, salt3);
	CHECK(!segment_image_unused(m.image, m.size_bytes));
	struct segment_scan s;
	struct segment_item it;
	REQUIRE(segment_scan_init(&s, m.image, m.size_bytes, TEST_WORKER, 3) == SEGMENT_HEADER_OK);
	REQUIRE(segment_scan_next(&s, &it));
	CHECK(it.kind == SEGMENT_ITEM_RECORD && it.offset == BASE);
	REQUIRE(segment_scan_next(&s, &it));
	CHECK(it.kind == SEGMENT_ITEM_END);
	REQUIRE(segment_zero_range(fd3, BASE, l) == 0);
	CHECK(segment_image_unused(m.image, m.size_bytes)); /* MAP_SHARED sees it */
	/* A new header: a new salt, and the records region untouched. */
	REQUIRE(segment_write_header(fd3, TEST_WORKER, 3, &salt) == 0);
	CHECK(salt != salt3);
	uint64_t salt_back = 0;
	CHECK(segment_header_check(m.image, m.size_bytes, TEST_WORKER, 3, &salt_back) ==
	      SEGMENT_HEADER_OK);
	CHECK_EQ_U(salt_back, salt);
	CHECK(segment_image_unused(m.image, m.size_bytes));
	segment_map_close(&m, false);
	CHECK_EQ_U(segment_map_open(dfd, 9, false, &m), (unsigned long long)-ENOENT);

	REQUIRE(segment_quarantine(dfd, 3, 4096, rec, 100) == 0);
	REQUIRE(segment_quarantine(dfd, 3, 8192, rec, 0) == 0);
	char path[256];
	snprintf(path, sizeof(path), "%s/quarantine/00000003-4096.bad", dir);
	REQUIRE(stat(path, &sb) == 0);
	CHECK_EQ_U(sb.st_size, 100);
	CHECK_EQ_U(sb.st_mode & 0777, 0600);
	FILE *f = fopen(path, "rb");
	REQUIRE(f != NULL);
	uint8_t back[100];
	CHECK_EQ_U(fread(back, 1, sizeof(back), f), 100);
	fclose(f);
	CHECK_MEM(back, 100, rec, 100);

	close(fd1);
	close(fd3);
	/* Clean up. */
	unlink(path);
	snprintf(path, sizeof(path), "%s/quarantine/00000003-8192.bad", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/quarantine", dir);
	rmdir(path);
	unlinkat(dfd, "00000001.seg", 0);
	unlinkat(dfd, "00000003.seg", 0);
	unlinkat(dfd, "notes.txt", 0);
	close(dfd);
	CHECK_EQ_U(rmdir(dir), 0);
}

/*
 * O_DIRECT batches (store.c): a batch is written up to the next block
 * boundary with zeros and the next batch starts there; the batch's last
 * record's item covers that padding. Zeros that stop short of a boundary, or cover a whole
 * block, are damage as before.
 */
static void test_batch_padding(void)
{
	static uint8_t img[IMAGE_BYTES];
	struct segment_item items[8];

	image_init(img, IMAGE_BYTES);
	uint64_t a = BASE, b = BASE + SEGMENT_BLOCK_BYTES;
	uint64_t la = put_record(img, a, TEST_SEQ, a, 101, 0);
	uint64_t lb = put_record(img, b, TEST_SEQ, b, 333, 1);
	REQUIRE(scan_all(img, IMAGE_BYTES, items, 8) == 3);
	CHECK(items[0].kind == SEGMENT_ITEM_RECORD && items[0].offset == a);
	CHECK(items[0].record.padded_length == la + record_padding(la));
	CHECK_EQ_U(items[0].length_bytes, b - a); /* the padding goes with it */
	CHECK(items[1].kind == SEGMENT_ITEM_RECORD && items[1].offset == b);
	CHECK(items[2].kind == SEGMENT_ITEM_END && items[2].offset == b + lb + record_padding(lb));

	/* A whole zero block between two batches is a hole. */
	image_init(img, IMAGE_BYTES);
	put_record(img, a, TEST_SEQ, a, 101, 0);
	uint64_t c = BASE + 2 * SEGMENT_BLOCK_BYTES;
	put_record(img, c, TEST_SEQ, c, 250, 2);
	REQUIRE(scan_all(img, IMAGE_BYTES, items, 8) == 4);
	CHECK(items[0].kind == SEGMENT_ITEM_RECORD && items[1].kind == SEGMENT_ITEM_CORRUPT);
	CHECK(items[1].reason == SEGMENT_BAD_ZERO_HEADER && items[1].offset == b);
	CHECK(items[2].kind == SEGMENT_ITEM_RECORD && items[2].offset == c);

	/* Zeros that end before the boundary are not padding. */
	image_init(img, IMAGE_BYTES);
	put_record(img, a, TEST_SEQ, a, 101, 0);
	uint64_t d = a + la + record_padding(la) + 64;
	put_record(img, d, TEST_SEQ, d, 250, 3);
	REQUIRE(scan_all(img, IMAGE_BYTES, items, 8) == 4);
	CHECK(items[1].kind == SEGMENT_ITEM_CORRUPT && items[1].reason == SEGMENT_BAD_ZERO_HEADER);
	CHECK(items[2].kind == SEGMENT_ITEM_RECORD && items[2].offset == d);

	/* Padding with nothing after it is the clean end. */
	image_init(img, IMAGE_BYTES);
	put_record(img, a, TEST_SEQ, a, 101, 0);
	REQUIRE(scan_all(img, IMAGE_BYTES, items, 8) == 2);
	CHECK(items[1].kind == SEGMENT_ITEM_END && items[1].offset == a + la + record_padding(la));
}

int main(void)
{
	test_header();
	test_clean();
	test_data_end();
	test_torn_tail_every_byte();
	test_middle_bit_flips();
	test_holes_and_strays();
	test_batch_padding();
	test_random_damage();
	test_forged_record_in_body();
	test_names();
	test_files();
	return test_main_end("segment");
}
