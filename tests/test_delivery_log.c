/*
 * test_delivery_log.c - delivery log entries: encode/decode round trips,
 * every single-bit flip caught, torn and damaged tails cut at every byte,
 * enhanced status packing, the replay rules (final states stick,
 * message-wide entries, latest next attempt wins), names, and the start-up
 * file helpers on real files.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../storage/crc32c.h"
#include "../storage/delivery_log.h"
#include "test.h"

static struct delivery_log_entry entry(enum delivery_log_type type, uint32_t rcpt, uint64_t id, int64_t t)
{
	struct delivery_log_entry e = {
		.type = type,
		.rcpt = rcpt,
		.queue_id = id,
		.time_unix_ms = t,
		.attempt = 3,
		.reply_code = 451,
		.enhanced = delivery_log_enhanced_pack(4, 7, 1),
	};
	return e;
}

static bool same(const struct delivery_log_entry *a, const struct delivery_log_entry *b)
{
	return a->type == b->type && a->rcpt == b->rcpt && a->queue_id == b->queue_id &&
	       a->time_unix_ms == b->time_unix_ms && a->attempt == b->attempt &&
	       a->reply_code == b->reply_code && a->enhanced == b->enhanced;
}

static void test_round_trip(void)
{
	uint8_t buf[DELIVERY_LOG_ENTRY_BYTES];
	for (unsigned t = DELIVERY_LOG_DELIVERED; t <= DELIVERY_LOG_TYPE_MAX; t++) {
		struct delivery_log_entry e = entry((enum delivery_log_type)t, t * 7, 0x0102030405060708ull + t,
					    -5 + (int64_t)t * 1700000000000ll);
		e.attempt = (uint16_t)(t == 3 ? 0xffff : t);
		e.reply_code = (uint16_t)(t == 4 ? 0 : 550);
		delivery_log_entry_encode(&e, buf);
		struct delivery_log_entry d;
		CHECK(delivery_log_entry_decode(buf, &d) == DELIVERY_LOG_OK);
		CHECK(same(&e, &d));
		CHECK(strcmp(delivery_log_type_name((enum delivery_log_type)t), "unknown") != 0);
	}
	/* Field positions are the documented little-endian layout. */
	struct delivery_log_entry e = entry(DELIVERY_LOG_BOUNCED, DELIVERY_LOG_RCPT_ALL, 0x1122334455667788ull, 42);
	delivery_log_entry_encode(&e, buf);
	CHECK_EQ_U(buf[4], DELIVERY_LOG_BOUNCED);
	CHECK_EQ_U(buf[5], 0);
	CHECK_EQ_U(buf[6] | buf[7] << 8, 451);
	CHECK_EQ_U(buf[8] & buf[9] & buf[10] & buf[11], 0xff);
	CHECK_EQ_U(buf[16], 0x88);
	CHECK_EQ_U(buf[23], 0x11);
	CHECK_EQ_U(buf[24], 42);
	uint32_t crc = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 |
		       (uint32_t)buf[3] << 24;
	CHECK_EQ_U(crc, crc32c(0, buf + 4, DELIVERY_LOG_ENTRY_BYTES - 4));

	CHECK(delivery_log_type_is_final(DELIVERY_LOG_DELIVERED) && delivery_log_type_is_final(DELIVERY_LOG_BOUNCED) &&
	      delivery_log_type_is_final(DELIVERY_LOG_EXPIRED) && delivery_log_type_is_final(DELIVERY_LOG_DELETED) &&
	      delivery_log_type_is_final(DELIVERY_LOG_SET_ASIDE));
	CHECK(!delivery_log_type_is_final(DELIVERY_LOG_DEFERRED) && !delivery_log_type_is_final(DELIVERY_LOG_REQUEUE));
}

static void test_damage(void)
{
	uint8_t buf[DELIVERY_LOG_ENTRY_BYTES];
	struct delivery_log_entry e = entry(DELIVERY_LOG_DEFERRED, 5, 0xabcdefull, 1700000000123ll);
	delivery_log_entry_encode(&e, buf);
	struct delivery_log_entry d;
	/* CRC32C catches every single-bit error. */
	for (unsigned bit = 0; bit < DELIVERY_LOG_ENTRY_BYTES * 8; bit++) {
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		CHECK(delivery_log_entry_decode(buf, &d) != DELIVERY_LOG_OK);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	CHECK(delivery_log_entry_decode(buf, &d) == DELIVERY_LOG_OK);

	/* An all-zero entry (a hole, a pre-zeroed tail) is not an entry. */
	uint8_t zero[DELIVERY_LOG_ENTRY_BYTES] = { 0 };
	CHECK(delivery_log_entry_decode(zero, &d) != DELIVERY_LOG_OK);

	/* A checksummed entry with an impossible type or reserved byte. */
	uint8_t bad[DELIVERY_LOG_ENTRY_BYTES];
	memcpy(bad, buf, sizeof(bad));
	bad[4] = 0;
	uint32_t crc = crc32c(0, bad + 4, DELIVERY_LOG_ENTRY_BYTES - 4);
	memcpy(bad, &crc, 4); /* x86-64 is little-endian, like the format */
	CHECK(delivery_log_entry_decode(bad, &d) == DELIVERY_LOG_BAD_FIELD);
	bad[4] = DELIVERY_LOG_TYPE_MAX + 1;
	crc = crc32c(0, bad + 4, DELIVERY_LOG_ENTRY_BYTES - 4);
	memcpy(bad, &crc, 4);
	CHECK(delivery_log_entry_decode(bad, &d) == DELIVERY_LOG_BAD_FIELD);
	bad[4] = DELIVERY_LOG_DEFERRED;
	bad[5] = 1;
	crc = crc32c(0, bad + 4, DELIVERY_LOG_ENTRY_BYTES - 4);
	memcpy(bad, &crc, 4);
	CHECK(delivery_log_entry_decode(bad, &d) == DELIVERY_LOG_BAD_FIELD);
}

#define LOG_ENTRIES 5

static void test_torn_tail(void)
{
	uint8_t log[LOG_ENTRIES * DELIVERY_LOG_ENTRY_BYTES];
	for (uint32_t i = 0; i < LOG_ENTRIES; i++) {
		struct delivery_log_entry e = entry(DELIVERY_LOG_DELIVERED, i, 77, 1000 + i);
		delivery_log_entry_encode(&e, log + i * DELIVERY_LOG_ENTRY_BYTES);
	}
	CHECK_EQ_U(delivery_log_valid_prefix(log, sizeof(log)), sizeof(log));
	CHECK_EQ_U(delivery_log_valid_prefix(log, 0), 0);
	/* Cut at every byte: only whole entries count. */
	for (size_t len = 0; len <= sizeof(log); len++)
		CHECK_EQ_U(delivery_log_valid_prefix(log, len), len / DELIVERY_LOG_ENTRY_BYTES * DELIVERY_LOG_ENTRY_BYTES);
	/* The last entry torn mid-write (new bytes over zeros) at every byte:
	 * the log ends before it. */
	uint8_t torn[sizeof(log)];
	for (size_t k = 0; k < DELIVERY_LOG_ENTRY_BYTES; k++) {
		memcpy(torn, log, sizeof(log));
		memset(torn + (LOG_ENTRIES - 1) * DELIVERY_LOG_ENTRY_BYTES + k, 0, DELIVERY_LOG_ENTRY_BYTES - k);
		/* Zeroing bytes that were zero already leaves the entry whole. */
		size_t want = memcmp(torn, log, sizeof(log)) == 0 ? sizeof(log)
				: (LOG_ENTRIES - 1) * DELIVERY_LOG_ENTRY_BYTES;
		CHECK_EQ_U(delivery_log_valid_prefix(torn, sizeof(torn)), want);
	}
	/* Damage in the middle ends the log there: what follows is ignored. */
	memcpy(torn, log, sizeof(log));
	torn[2 * DELIVERY_LOG_ENTRY_BYTES + 20] ^= 0x40;
	CHECK_EQ_U(delivery_log_valid_prefix(torn, sizeof(torn)), 2 * DELIVERY_LOG_ENTRY_BYTES);
}

static void test_enhanced(void)
{
	unsigned c, s, d;
	uint16_t p = delivery_log_enhanced_pack(5, 1, 1);
	CHECK(p != 0);
	CHECK(delivery_log_enhanced_unpack(p, &c, &s, &d) && c == 5 && s == 1 && d == 1);
	p = delivery_log_enhanced_pack(4, 15, 511);
	CHECK(delivery_log_enhanced_unpack(p, &c, &s, &d) && c == 4 && s == 15 && d == 511);
	p = delivery_log_enhanced_pack(2, 0, 0);
	CHECK(delivery_log_enhanced_unpack(p, &c, &s, &d) && c == 2 && s == 0 && d == 0);
	CHECK_EQ_U(delivery_log_enhanced_pack(3, 1, 1), 0);
	CHECK_EQ_U(delivery_log_enhanced_pack(5, 16, 1), 0);
	CHECK_EQ_U(delivery_log_enhanced_pack(5, 1, 512), 0);
	CHECK(!delivery_log_enhanced_unpack(0, &c, &s, &d));
	CHECK_EQ_U(delivery_log_enhanced_parse(span_make("5.7.1", 5)), delivery_log_enhanced_pack(5, 7, 1));
	CHECK_EQ_U(delivery_log_enhanced_parse(span_make("4.4.100", 7)), delivery_log_enhanced_pack(4, 4, 100));
	const char *bad[] = { "", "5", "5.1", "5.1.", "5.1.1 ", " 5.1.1", "5..1", "5.1.1000",
			      "6.1.1", "5.1.x", "5.1.1.1", "5.01234.1" };
	for (size_t i = 0; i < RMX_ARRAY_LEN(bad); i++)
		CHECK_EQ_U(delivery_log_enhanced_parse(span_make(bad[i], strlen(bad[i]))), 0);
}

static void replay_init(struct delivery_log_replay_msg *m, uint8_t *states, uint32_t n)
{
	memset(m, 0, sizeof(*m));
	memset(states, DELIVERY_LOG_RCPT_PENDING, n);
	m->rcpt_state = states;
	m->rcpt_count = n;
	m->pending = n;
}

static void test_replay_rules(void)
{
	uint8_t st[4];
	struct delivery_log_replay_msg m;
	replay_init(&m, st, 4);

	struct delivery_log_entry e = entry(DELIVERY_LOG_DELIVERED, 0, 9, 100);
	e.attempt = 1;
	e.reply_code = 250;
	CHECK(delivery_log_apply(&m, &e));
	CHECK_EQ_U(m.pending, 3);
	CHECK_EQ_U(st[0], DELIVERY_LOG_RCPT_DELIVERED);
	CHECK_EQ_U(m.last_reply_code, 250);
	CHECK_EQ_U(m.attempts, 1);

	/* A final recipient stays final: a later entry for it changes nothing. */
	e = entry(DELIVERY_LOG_BOUNCED, 0, 9, 101);
	e.attempt = 1;
	CHECK(delivery_log_apply(&m, &e));
	CHECK_EQ_U(st[0], DELIVERY_LOG_RCPT_DELIVERED);
	CHECK_EQ_U(m.pending, 3);

	/* Deferred for the whole message: the next attempt, no state change. */
	e = entry(DELIVERY_LOG_DEFERRED, DELIVERY_LOG_RCPT_ALL, 9, 5000);
	e.attempt = 2;
	e.reply_code = 451;
	CHECK(delivery_log_apply(&m, &e));
	CHECK_EQ_U(m.pending, 3);
	CHECK_EQ_U(m.next_attempt_unix_ms, 5000);
	CHECK_EQ_U(m.attempts, 2);
	CHECK_EQ_U(m.last_reply_code, 451);
	/* The latest wins, even if earlier. */
	e = entry(DELIVERY_LOG_REQUEUE, DELIVERY_LOG_RCPT_ALL, 9, 4000);
	e.attempt = 0;
	e.reply_code = 0;
	CHECK(delivery_log_apply(&m, &e));
	CHECK_EQ_U(m.next_attempt_unix_ms, 4000);
	CHECK_EQ_U(m.attempts, 2);        /* the highest attempt seen stays */
	CHECK_EQ_U(m.last_reply_code, 451); /* no code: the last one stays */

	e = entry(DELIVERY_LOG_BOUNCED, 2, 9, 6000);
	e.attempt = 2;
	e.reply_code = 550;
	CHECK(delivery_log_apply(&m, &e));
	CHECK_EQ_U(st[2], DELIVERY_LOG_RCPT_BOUNCED);
	CHECK_EQ_U(m.pending, 2);

	/* Out of range: refused, nothing changes. */
	e = entry(DELIVERY_LOG_DELIVERED, 4, 9, 6001);
	CHECK(!delivery_log_apply(&m, &e));
	CHECK_EQ_U(m.pending, 2);

	/* Message-wide final: every pending recipient, the others stay. */
	e = entry(DELIVERY_LOG_EXPIRED, DELIVERY_LOG_RCPT_ALL, 9, 7000);
	CHECK(delivery_log_apply(&m, &e));
	CHECK_EQ_U(m.pending, 0);
	CHECK_EQ_U(st[0], DELIVERY_LOG_RCPT_DELIVERED);
	CHECK_EQ_U(st[1], DELIVERY_LOG_RCPT_EXPIRED);
	CHECK_EQ_U(st[2], DELIVERY_LOG_RCPT_BOUNCED);
	CHECK_EQ_U(st[3], DELIVERY_LOG_RCPT_EXPIRED);
	e = entry(DELIVERY_LOG_DELETED, DELIVERY_LOG_RCPT_ALL, 9, 8000);
	CHECK(delivery_log_apply(&m, &e));
	CHECK_EQ_U(st[1], DELIVERY_LOG_RCPT_EXPIRED);

	replay_init(&m, st, 2);
	e = entry(DELIVERY_LOG_SET_ASIDE, DELIVERY_LOG_RCPT_ALL, 9, 1);
	CHECK(delivery_log_apply(&m, &e));
	CHECK(m.pending == 0 && st[0] == DELIVERY_LOG_RCPT_SET_ASIDE && st[1] == DELIVERY_LOG_RCPT_SET_ASIDE);
	CHECK(strcmp(delivery_log_rcpt_state_name(DELIVERY_LOG_RCPT_SET_ASIDE), "set-aside") == 0);
}

static void test_names(void)
{
	char name[DELIVERY_LOG_NAME_MAX_BYTES];
	delivery_log_name_format(name, 42);
	CHECK(strcmp(name, "00000042.dlog") == 0);
	uint32_t seq = 0;
	CHECK(delivery_log_name_parse(name, &seq) && seq == 42);
	CHECK(delivery_log_name_parse("7.dlog", &seq) && seq == 7);
	CHECK(delivery_log_name_parse("16777215.dlog", &seq) && seq == 16777215);
	CHECK(!delivery_log_name_parse("16777216.dlog", &seq));
	CHECK(!delivery_log_name_parse("0.dlog", &seq));
	CHECK(!delivery_log_name_parse(".dlog", &seq));
	CHECK(!delivery_log_name_parse("00000042.seg", &seq));
	CHECK(!delivery_log_name_parse("00000042.dlog.tmp", &seq));
	CHECK(!delivery_log_name_parse("x1.dlog", &seq));
}

static void test_files(void)
{
	char dir[] = "/tmp/rmx-dlog-XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	REQUIRE(dirfd >= 0);

	uint8_t *image = (uint8_t *)1;
	size_t len = 99;
	CHECK(delivery_log_read(dirfd, 3, &image, &len) == 0); /* missing: no entries */
	CHECK(image == NULL && len == 0);

	int fd = -1;
	CHECK(delivery_log_open_for_append(dirfd, 3, 0, true, &fd) == 0);
	REQUIRE(fd >= 0);
	uint8_t log[3 * DELIVERY_LOG_ENTRY_BYTES];
	for (uint32_t i = 0; i < 3; i++) {
		struct delivery_log_entry e = entry(DELIVERY_LOG_DELIVERED, i, 5, i);
		delivery_log_entry_encode(&e, log + i * DELIVERY_LOG_ENTRY_BYTES);
	}
	/* Two whole entries and a torn third. */
	CHECK(pwrite(fd, log, 2 * DELIVERY_LOG_ENTRY_BYTES + 11, 0) == 2 * DELIVERY_LOG_ENTRY_BYTES + 11);
	close(fd);
	CHECK(delivery_log_read(dirfd, 3, &image, &len) == 0);
	CHECK_EQ_U(len, 2 * DELIVERY_LOG_ENTRY_BYTES + 11);
	size_t valid = image ? delivery_log_valid_prefix(image, len) : 0;
	CHECK_EQ_U(valid, 2 * DELIVERY_LOG_ENTRY_BYTES);
	free(image);
	/* Reopening cuts the torn tail, so the next append is aligned. */
	CHECK(delivery_log_open_for_append(dirfd, 3, valid, false, &fd) == 0);
	struct stat sb;
	CHECK(fstat(fd, &sb) == 0 && sb.st_size == (off_t)valid);
	CHECK(pwrite(fd, log + 2 * DELIVERY_LOG_ENTRY_BYTES, DELIVERY_LOG_ENTRY_BYTES, (off_t)valid) ==
	      DELIVERY_LOG_ENTRY_BYTES);
	CHECK(fstat(fd, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	close(fd);
	CHECK(delivery_log_read(dirfd, 3, &image, &len) == 0);
	CHECK_EQ_U(len, sizeof(log));
	CHECK(image != NULL && delivery_log_valid_prefix(image, len) == sizeof(log));
	CHECK(image != NULL && memcmp(image, log, sizeof(log)) == 0);
	free(image);

	/* An empty file reads as no entries. */
	CHECK(delivery_log_open_for_append(dirfd, 4, 0, false, &fd) == 0);
	close(fd);
	CHECK(delivery_log_read(dirfd, 4, &image, &len) == 0 && image == NULL && len == 0);

	char path[64];
	snprintf(path, sizeof(path), "%s/00000003.dlog", dir);
	CHECK(unlink(path) == 0);
	snprintf(path, sizeof(path), "%s/00000004.dlog", dir);
	CHECK(unlink(path) == 0);
	close(dirfd);
	CHECK(rmdir(dir) == 0);
}

int main(void)
{
	test_round_trip();
	test_damage();
	test_torn_tail();
	test_enhanced();
	test_replay_rules();
	test_names();
	test_files();
	return test_main_end("test_delivery_log");
}
