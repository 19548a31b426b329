/*
 * test_store_read.c - a queued record read back for forwarding: the plan
 * (one read of the padded record at its offset), and the verdict on every
 * kind of result, on a real shard written with the store API and read by
 * the blocking executor: intact (OK, the view in the buffer), an I/O error
 * and a short read (FAILED: read again later), a flipped body byte (BAD:
 * the CRC), a queue length that does not match the record (BAD, though the
 * record itself checks).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "../storage/segment.h"
#include "../storage/store.h"
#include "../storage/store_read.h"
#include "../storage/store_recover.h"
#include "test.h"

static char tmp_root[] = "/tmp/rmx-store-read-XXXXXX";

static void on_durable(void *ctx, uint64_t cookie, int result)
{
	(void)cookie;
	*(int *)ctx = result;
}

/* One record, committed: its id and padded length. */
static void put_record(struct store *st, const char *body, uint64_t *id, uint64_t *padded)
{
	struct bytebuf env = { 0 };
	REQUIRE(record_env_put(&env, RECORD_TAG_REVERSE_PATH, span_make("s@example.net", 13)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_RECIPIENT, span_make("r@example.org", 13)) == 0);
	size_t body_len = strlen(body);
	*padded = record_padded_length(env.len, body_len);
	REQUIRE(store_reserve(st, *padded, id) == 0);
	static const uint8_t zero_pad[8];
	struct record_header h;
	struct iovec b = { (void *)body, body_len };
	record_seal(&h, *id, 1700000000000ll, span_make(env.data, env.len), &b, 1);
	struct iovec parts[4] = {
		{ &h, RECORD_HEADER_BYTES },
		{ env.data, env.len },
		b,
		{ (void *)zero_pad, record_padding(h.length) },
	};
	REQUIRE(store_append(st, *id, parts, 4, 1) == 0);
	struct io_plan p;
	uint32_t records;
	REQUIRE(store_commit_plan(st, &p, &records));
	io_plan_run_blocking(&p);
	int durable = 1;
	REQUIRE(store_commit_advance(st, &p, on_durable, &durable) == 0 && durable == 0);
	bytebuf_free(&env);
}

static void read_blocking(struct store_read *r)
{
	struct io_plan p;
	REQUIRE(store_read_plan(r, &p));
	io_plan_run_blocking(&p);
	store_read_advance(r, &p);
	CHECK(!store_read_plan(r, &p)); /* one read, then nothing */
}

int main(void)
{
	REQUIRE(mkdtemp(tmp_root) != NULL);
	struct store_config cfg = {
		.data_dir = tmp_root,
		.worker = 2,
		.segment_size_bytes = SEGMENT_SIZE_MIN_BYTES,
		.store_max_bytes = 16 * SEGMENT_SIZE_MIN_BYTES,
		.fsync = true,
	};
	struct store *st = NULL;
	struct store_recovery_stats rs;
	char err[256];
	REQUIRE(store_open(&cfg, &st, &rs, err, sizeof(err)) == 0);
	uint64_t id, padded, id2, padded2;
	put_record(st, "Subject: one\r\n\r\nfirst body\r\n", &id, &padded);
	put_record(st, "Subject: two\r\n\r\nsecond body, longer\r\n", &id2, &padded2);
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(id2, &worker, &seq, &offset);
	char path[512];
	snprintf(path, sizeof(path), "%s/w2/%08u.seg", tmp_root, seq);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	REQUIRE(fd >= 0);
	uint8_t *buf = malloc(padded2 + 64);
	REQUIRE(buf != NULL);

	/* The plan: the padded record at its offset, into the caller's buffer. */
	struct store_read r;
	struct io_plan p;
	store_read_start(&r, st, id2, fd, buf, padded2);
	REQUIRE(store_read_plan(&r, &p));
	CHECK(p.count == 1 && p.pending == 1 && p.step[0].op == IO_STEP_READ &&
	      p.step[0].fd == fd && p.step[0].buf == buf && !p.step[0].link);
	CHECK_EQ_U(p.step[0].len, padded2);
	CHECK_EQ_U(p.step[0].offset, offset);
	CHECK(r.outcome == STORE_READ_PENDING);

	/* Intact. */
	store_read_start(&r, st, id2, fd, buf, padded2);
	read_blocking(&r);
	CHECK(r.outcome == STORE_READ_OK && r.error == 0 && r.bytes == (int)padded2);
	CHECK(r.view.header.queue_id == id2 && r.view.padded_length == padded2);
	CHECK_MEM(r.view.body.ptr, r.view.body.len, "Subject: two\r\n\r\nsecond body, longer\r\n",
		  strlen("Subject: two\r\n\r\nsecond body, longer\r\n"));

	/* An I/O error (here: a descriptor that cannot be read). */
	int wfd = open(path, O_WRONLY | O_CLOEXEC);
	REQUIRE(wfd >= 0);
	store_read_start(&r, st, id2, wfd, buf, padded2);
	read_blocking(&r);
	CHECK(r.outcome == STORE_READ_FAILED && r.error == -EBADF && r.bytes == -EBADF);
	close(wfd);

	/* A short read: the segment cut inside the record. */
	int cut = open(path, O_RDWR | O_CLOEXEC);
	REQUIRE(cut >= 0);
	uint8_t *image = malloc(offset + padded2);
	REQUIRE(image && pread(cut, image, offset + padded2, 0) == (ssize_t)(offset + padded2));
	REQUIRE(ftruncate(cut, (off_t)(offset + padded2 - 8)) == 0);
	store_read_start(&r, st, id2, fd, buf, padded2);
	read_blocking(&r);
	CHECK(r.outcome == STORE_READ_FAILED && r.error == -EIO && r.bytes == (int)padded2 - 8);
	REQUIRE(pwrite(cut, image, offset + padded2, 0) == (ssize_t)(offset + padded2));
	close(cut);

	/* A flipped body byte: read in full, the CRC does not check. */
	uint8_t byte;
	uint64_t at = offset + padded2 - 16;
	REQUIRE(pread(fd, &byte, 1, (off_t)at) == 1);
	byte ^= 0x20;
	REQUIRE(pwrite(fd, &byte, 1, (off_t)at) == 1);
	store_read_start(&r, st, id2, fd, buf, padded2);
	read_blocking(&r);
	CHECK(r.outcome == STORE_READ_BAD && r.error == 0 && r.check == RECORD_BAD_CRC);
	byte ^= 0x20;
	REQUIRE(pwrite(fd, &byte, 1, (off_t)at) == 1);

	/* The queue says the record is longer than it is: it checks, but it is
	 * not what the queue holds. */
	store_read_start(&r, st, id, fd, buf, padded + 8);
	read_blocking(&r);
	CHECK(r.outcome == STORE_READ_BAD && r.check == RECORD_OK);
	/* And the right length again. */
	store_read_start(&r, st, id, fd, buf, padded);
	read_blocking(&r);
	CHECK(r.outcome == STORE_READ_OK);

	free(image);
	free(buf);
	close(fd);
	store_close(st);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);
	REQUIRE(system(cmd) == 0);
	return test_main_end("store_read");
}
