/*
 * test_store.c - the store shard on real files in a temporary directory.
 * The test plays core/: it performs each commit (pwritev + fdatasync) and
 * prepares spares itself, then checks what recovery finds on reopen:
 * round trips, group commit, batch bounds, segment rollover, injected write
 * failures, a full store, a torn tail, a corrupt record, a record forged in
 * a message body, damage in a sealed segment (an alarm), segments without
 * a header or of format 1, shard listing.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "../storage/crc32c.h"
#include "../storage/segment.h"
#include "../storage/store.h"
#include "../storage/store_recover.h"
#include "test.h"
#include "test_util.h"

#define SEG_BYTES SEGMENT_SIZE_MIN_BYTES
#define RECS_MAX 4000

struct rec {
	struct record_header h;
	struct bytebuf env;
	uint8_t *body;
	size_t body_len;
	struct iovec parts[4];
	int nparts;
	uint64_t id;
};

static const uint8_t zero_pad[8];

static struct rec recs[RECS_MAX];
static int done_result[RECS_MAX];
static int done_count[RECS_MAX];

static void on_done(void *ctx, uint64_t cookie, int result)
{
	(void)ctx;
	REQUIRE(cookie < RECS_MAX);
	done_result[cookie] = result;
	done_count[cookie]++;
}

static void reset_done(void)
{
	memset(done_result, 0x7f, sizeof(done_result));
	memset(done_count, 0, sizeof(done_count));
}

static void rec_free(struct rec *r)
{
	bytebuf_free(&r->env);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* Builds record i, reserves, seals, appends with cookie i. Returns the
 * store_reserve result (0 when appended). */
static int rec_add(struct store *st, int i, size_t body_len)
{
	struct rec *r = &recs[i];
	rec_free(r);
	char rcpt[64];
	int n = snprintf(rcpt, sizeof(rcpt), "user%d@example.org", i);
	REQUIRE(record_env_put(&r->env, RECORD_TAG_REVERSE_PATH, span_make("s@example.net", 13)) == 0);
	REQUIRE(record_env_put(&r->env, RECORD_TAG_RECIPIENT, span_make(rcpt, (size_t)n)) == 0);
	r->body = malloc(body_len ? body_len : 1);
	REQUIRE(r->body != NULL);
	for (size_t k = 0; k < body_len; k++)
		r->body[k] = (uint8_t)('A' + (i + k) % 26);
	r->body_len = body_len;
	uint64_t padded = record_padded_length(r->env.len, body_len);
	int rc = store_reserve(st, padded, &r->id);
	if (rc != 0)
		return rc;
	struct iovec body = { r->body, body_len };
	record_seal(&r->h, r->id, 1700000000000ll + i, span_make(r->env.data, r->env.len), &body, 1);
	r->parts[0] = (struct iovec){ &r->h, RECORD_HEADER_BYTES };
	r->parts[1] = (struct iovec){ r->env.data, r->env.len };
	r->parts[2] = body;
	r->parts[3] = (struct iovec){ (void *)zero_pad, record_padding(r->h.length) };
	r->nparts = 4;
	REQUIRE(store_append(st, r->id, r->parts, r->nparts, (uint64_t)i) == 0);
	return 0;
}

/* Performs one commit like core/ would: the plan, run by the blocking
 * executor, its results to store_commit_advance. inject: 0 for the real
 * results, else the errno the write reports instead (the write still
 * happens; the linked sync is then cancelled). */
static bool run_commit(struct store *st, int inject, struct store_commit *seen)
{
	struct io_plan p;
	uint32_t records;
	if (!store_commit_plan(st, &p, &records))
		return false;
	const struct io_step *w = &p.step[0];
	REQUIRE(w->op == IO_STEP_WRITEV && w->iovcnt > 0 && w->iovcnt <= COMMIT_IOV_MAX);
	REQUIRE(records > 0 && records <= COMMIT_BATCH_RECORDS_MAX);
	io_plan_run_blocking(&p);
	REQUIRE(p.result[0] == (int)w->len);
	if (p.count > 1)
		REQUIRE(p.result[1] == 0);
	if (seen)
		*seen = (struct store_commit){ .fd = w->fd, .offset = w->offset, .iov = w->iov,
					       .iovcnt = w->iovcnt, .bytes = w->len,
					       .sync = p.count > 1, .records = records };
	if (inject) {
		p.result[0] = -inject;
		if (p.count > 1)
			p.result[1] = -ECANCELED;
	}
	int rc = store_commit_advance(st, &p, on_done, NULL);
	REQUIRE(rc == -inject);
	return true;
}

/* Like core/: the header block of the spare asked for, with a new salt
 * (core/ draws it from getrandom; distinct values do here), written at
 * offset 0 of fd. */
static void write_spare_header(struct store *st, int fd)
{
	static uint64_t salts_made;
	uint8_t block[SEGMENT_HEADER_BYTES];
	store_spare_header(st, 0x9E3779B97F4A7C15ull * ++salts_made, block);
	REQUIRE(pwrite(fd, block, sizeof(block), 0) == (ssize_t)sizeof(block));
}

/* Like core/: create the spare at the path asked for (at now_ms, on the
 * monotonic clock the backoff reads), zero it, write its header, sync. */
static void provide_spare_at(struct store *st, uint64_t now_ms)
{
	const char *path;
	uint32_t seq;
	REQUIRE(store_spare_wanted(st, now_ms, &path, &seq));
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	REQUIRE(fallocate(fd, 0, 0, SEG_BYTES) == 0);
	uint8_t *zeros = calloc(1, SEG_BYTES);
	REQUIRE(zeros != NULL);
	REQUIRE(pwrite(fd, zeros, SEG_BYTES, 0) == (ssize_t)SEG_BYTES);
	free(zeros);
	write_spare_header(st, fd);
	REQUIRE(fdatasync(fd) == 0);
	REQUIRE(fsync(store_dir_fd(st)) == 0);
	store_spare_ready(st, seq, fd);
}

static void provide_spare(struct store *st)
{
	provide_spare_at(st, 0);
}

static void close_retired(struct store *st)
{
	int fd;
	while ((fd = store_retired_fd(st)) >= 0)
		close(fd);
}

static char tmp_root[] = "/tmp/rmx-store-XXXXXX";

static void rm_rf(const char *path)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	REQUIRE(system(cmd) == 0);
}

static void fresh_dir(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", tmp_root, name);
	rm_rf(out);
}

static struct store_config config(const char *dir, uint64_t max_bytes)
{
	struct store_config cfg = {
		.data_dir = dir,
		.worker = 5,
		.segment_size_bytes = SEG_BYTES,
		.store_max_bytes = max_bytes,
		.fsync = true,
	};
	return cfg;
}

static struct store *open_ok(const struct store_config *cfg, struct store_recovery_stats *rs)
{
	struct store *st = NULL;
	char err[256] = "";
	int rc = store_open(cfg, &st, rs, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "store_open: %d %s\n", rc, err);
	REQUIRE(rc == 0 && st != NULL);
	return st;
}

/* Every valid record in the shard, in segment order: ids into out. */
static size_t find_all(const char *dir, uint32_t worker, uint64_t *out, size_t cap,
		       uint32_t *quarantined_regions)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/w%u", dir, worker);
	int dfd = open(path, O_RDONLY | O_DIRECTORY);
	REQUIRE(dfd >= 0);
	uint32_t *seqs;
	size_t count, n = 0;
	REQUIRE(segment_list(dfd, &seqs, &count) == 0);
	uint32_t bad = 0;
	for (size_t i = 0; i < count; i++) {
		struct segment_map m;
		REQUIRE(segment_map_open(dfd, seqs[i], false, &m) == 0);
		struct segment_scan s;
		struct segment_item it;
		REQUIRE(segment_scan_init(&s, m.image, m.size_bytes, worker, seqs[i]) ==
			SEGMENT_HEADER_OK);
		while (segment_scan_next(&s, &it)) {
			if (it.kind == SEGMENT_ITEM_RECORD && n < cap)
				out[n++] = it.record.header.queue_id;
			if (it.kind == SEGMENT_ITEM_CORRUPT || it.kind == SEGMENT_ITEM_TORN_TAIL)
				bad++;
		}
		segment_map_close(&m, false);
	}
	free(seqs);
	close(dfd);
	if (quarantined_regions)
		*quarantined_regions = bad;
	return n;
}

static bool file_exists(const char *dir, const char *rel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	struct stat sb;
	return stat(path, &sb) == 0;
}

/* Flips one byte of a shard file at offset. */
static void flip_byte(const char *dir, const char *rel, uint64_t offset)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	int fd = open(path, O_RDWR);
	REQUIRE(fd >= 0);
	uint8_t b;
	REQUIRE(pread(fd, &b, 1, (off_t)offset) == 1);
	b ^= 0x04;
	REQUIRE(pwrite(fd, &b, 1, (off_t)offset) == 1);
	REQUIRE(fsync(fd) == 0);
	close(fd);
}

/* The byte of a shard file at offset. */
static uint8_t file_byte(const char *dir, const char *rel, uint64_t offset)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	int fd = open(path, O_RDONLY);
	REQUIRE(fd >= 0);
	uint8_t b = 0;
	REQUIRE(pread(fd, &b, 1, (off_t)offset) == 1);
	close(fd);
	return b;
}

static bool file_byte_is(const char *dir, const char *rel, uint64_t offset, uint8_t want)
{
	return file_byte(dir, rel, offset) == want;
}

/* Whether w5/quarantine/ holds the copy of segment seq's record at offset. */
static bool quarantined(const char *dir, uint32_t seq, uint64_t offset)
{
	char rel[128];
	snprintf(rel, sizeof(rel), "w5/quarantine/%08u-%llu.bad", (unsigned)seq,
		 (unsigned long long)offset);
	return file_exists(dir, rel);
}

static void test_round_trip(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "roundtrip");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.segments, 1);
	CHECK_EQ_U(rs.records, 0);
	CHECK(file_exists(dir, "w5/00000001.seg"));
	CHECK(file_exists(dir, "w5/00000002.seg")); /* the spare */
	CHECK_EQ_U(store_admit(st), 0);
	CHECK(!store_busy(st));
	const char *path;
	uint32_t seq;
	CHECK(!store_spare_wanted(st, 0, &path, &seq)); /* it has one */

	/* A second open of the same shard is refused while this one lives. */
	struct store *twin = NULL;
	struct store_recovery_stats rs2;
	char err[256];
	CHECK_EQ_U(store_open(&cfg, &twin, &rs2, err, sizeof(err)), (unsigned long long)-EBUSY);

	reset_done();
	for (int i = 0; i < 3; i++)
		REQUIRE(rec_add(st, i, 100 + (size_t)i * 7) == 0);
	CHECK(store_busy(st));
	uint32_t w, sq;
	uint64_t off;
	queue_id_split(recs[0].id, &w, &sq, &off);
	CHECK(w == 5 && sq == 1 && off == SEGMENT_HEADER_BYTES);
	queue_id_split(recs[1].id, &w, &sq, &off);
	CHECK_EQ_U(off, SEGMENT_HEADER_BYTES + record_padded_length(recs[0].env.len, 100));

	struct store_commit c;
	REQUIRE(run_commit(st, 0, &c));
	CHECK_EQ_U(c.records, 3);
	CHECK_EQ_U(c.offset, SEGMENT_HEADER_BYTES);
	CHECK(c.sync);
	for (int i = 0; i < 3; i++)
		CHECK(done_count[i] == 1 && done_result[i] == 0);
	CHECK(!store_busy(st));
	CHECK(!run_commit(st, 0, NULL));
	struct store_stats ss;
	store_get_stats(st, &ss);
	CHECK_EQ_U(ss.records_committed, 3);
	CHECK_EQ_U(ss.commits, 1);
	CHECK_EQ_U(ss.segments, 1);
	CHECK_EQ_U(ss.bytes_used, SEG_BYTES);
	store_close(st);

	/* A spare that was only allocated (its preparation cut short, no
	 * header yet) is written with zeros and a header when it is adopted. */
	char spare_path[512];
	snprintf(spare_path, sizeof(spare_path), "%s/w5/00000002.seg", dir);
	REQUIRE(unlink(spare_path) == 0);
	int sfd = open(spare_path, O_RDWR | O_CREAT | O_EXCL, 0600);
	REQUIRE(sfd >= 0);
	REQUIRE(fallocate(sfd, 0, 0, SEG_BYTES) == 0);
	bool fiemap = segment_is_prezeroed(sfd, SEG_BYTES) == 0;
	close(sfd);

	/* Reopen: the three are found, the spare is reused, writing resumes. */
	st = open_ok(&cfg, &rs);
	if (fiemap) {
		sfd = open(spare_path, O_RDONLY);
		REQUIRE(sfd >= 0);
		CHECK_EQ_U(segment_is_prezeroed(sfd, SEG_BYTES), 1);
		close(sfd);
	}
	CHECK_EQ_U(rs.records, 3);
	CHECK_EQ_U(rs.segments, 1);
	CHECK_EQ_U(rs.quarantined, 0);
	CHECK_EQ_U(rs.truncated_bytes, 0);
	CHECK(!file_exists(dir, "w5/00000003.seg"));
	uint64_t ids[8];
	REQUIRE(find_all(dir, 5, ids, 8, NULL) == 3);
	for (int i = 0; i < 3; i++)
		CHECK_EQ_U(ids[i], recs[i].id);
	queue_id_split(recs[2].id, &w, &sq, &off);
	uint64_t end = off + record_padded_length(recs[2].env.len, 114);
	REQUIRE(rec_add(st, 3, 10) == 0);
	queue_id_split(recs[3].id, &w, &sq, &off);
	CHECK(sq == 1 && off == end);
	REQUIRE(run_commit(st, 0, NULL));
	store_close(st);
	REQUIRE(find_all(dir, 5, ids, 8, NULL) == 4);
	for (int i = 0; i < 4; i++)
		rec_free(&recs[i]);
}

/* Records that finish while a commit is in flight form the next one. */
static void test_group_commit(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "group");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	cfg.fsync = false;
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();

	REQUIRE(rec_add(st, 0, 50) == 0);
	struct store_commit first;
	REQUIRE(store_commit_begin(st, &first));
	CHECK(!first.sync); /* fsync = never */
	CHECK_EQ_U(first.records, 1);
	for (int i = 1; i < 6; i++)
		REQUIRE(rec_add(st, i, 50) == 0);
	struct store_commit again;
	CHECK(!store_commit_begin(st, &again)); /* one commit in flight */
	ssize_t n = pwritev(first.fd, first.iov, first.iovcnt, (off_t)first.offset);
	REQUIRE(n == (ssize_t)first.bytes);
	store_commit_done(st, (int)n, on_done, NULL);
	CHECK_EQ_U(done_count[0], 1);
	CHECK_EQ_U(done_count[1], 0);
	struct store_commit second;
	REQUIRE(run_commit(st, 0, &second));
	CHECK_EQ_U(second.records, 5);
	CHECK_EQ_U(second.offset, first.offset + first.bytes);
	for (int i = 0; i < 6; i++)
		CHECK(done_count[i] == 1 && done_result[i] == 0);
	/* A 0 result (the sync step's) also reports success. */
	REQUIRE(rec_add(st, 6, 50) == 0);
	struct store_commit third;
	REQUIRE(store_commit_begin(st, &third));
	REQUIRE(pwritev(third.fd, third.iov, third.iovcnt, (off_t)third.offset) ==
		(ssize_t)third.bytes);
	store_commit_done(st, 0, on_done, NULL);
	CHECK(done_count[6] == 1 && done_result[6] == 0);
	store_close(st);
	uint64_t ids[8];
	CHECK_EQ_U(find_all(dir, 5, ids, 8, NULL), 7);
	for (int i = 0; i < 7; i++)
		rec_free(&recs[i]);
}

/* The group commit as a plan: the batch's writev linked to its fdatasync
 * (alone with fsync = never); the results judged as one: a short write, a
 * failed write whose sync was cancelled, a failed sync after a whole write. */
static void test_commit_plan(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "plan");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();
	struct io_plan p;
	uint32_t records = 0;
	CHECK(!store_commit_plan(st, &p, &records)); /* nothing waits */
	REQUIRE(rec_add(st, 0, 10) == 0);
	REQUIRE(rec_add(st, 1, 20) == 0);
	REQUIRE(store_commit_plan(st, &p, &records));
	CHECK_EQ_U(records, 2);
	REQUIRE(p.count == 2 && p.pending == 2);
	CHECK(p.step[0].op == IO_STEP_WRITEV && p.step[0].link && p.step[0].iovcnt >= 6);
	CHECK_EQ_U(p.step[0].offset, SEGMENT_HEADER_BYTES);
	uint64_t sum = 0;
	for (int i = 0; i < p.step[0].iovcnt; i++)
		sum += p.step[0].iov[i].iov_len;
	CHECK_EQ_U(p.step[0].len, sum);
	CHECK(p.step[1].op == IO_STEP_FDATASYNC && p.step[1].fd == p.step[0].fd &&
	      !p.step[1].link);
	struct io_plan again;
	CHECK(!store_commit_plan(st, &again, &records)); /* one in flight */
	io_plan_run_blocking(&p);
	CHECK(store_commit_advance(st, &p, on_done, NULL) == 0);
	CHECK(done_count[0] == 1 && done_result[0] == 0 && done_count[1] == 1);
	store_close(st);

	/* fsync = never: the write alone. */
	cfg.fsync = false;
	st = open_ok(&cfg, &rs);
	REQUIRE(rec_add(st, 2, 10) == 0);
	REQUIRE(store_commit_plan(st, &p, &records));
	CHECK(p.count == 1 && p.step[0].op == IO_STEP_WRITEV && !p.step[0].link);
	io_plan_run_blocking(&p);
	CHECK(store_commit_advance(st, &p, on_done, NULL) == 0);
	CHECK(done_count[2] == 1 && done_result[2] == 0);
	store_close(st);
	cfg.fsync = true;

	/* A short write fails the batch (the sync ran: a short write breaks
	 * the link, but a 0 there must not mask the write). */
	static const struct { int write_delta, write_error, sync; int want; } cases[] = {
		{ -8, 0, -ECANCELED, -EIO },
		{ -8, 0, 0, -EIO },
		{ 0, -ENOSPC, -ECANCELED, -ENOSPC },
		{ 0, 0, -EIO, -EIO },
	};
	for (size_t k = 0; k < RMX_ARRAY_LEN(cases); k++) {
		st = open_ok(&cfg, &rs);
		reset_done();
		REQUIRE(rec_add(st, 3, 10) == 0);
		REQUIRE(store_commit_plan(st, &p, &records));
		p.result[0] = cases[k].write_error ? cases[k].write_error
						    : (int)p.step[0].len + cases[k].write_delta;
		p.result[1] = cases[k].sync;
		p.pending = 0;
		CHECK_EQ_U(store_commit_advance(st, &p, on_done, NULL),
			   (unsigned long long)cases[k].want);
		CHECK(done_count[3] == 1 && done_result[3] == -EIO);
		CHECK_EQ_U(store_admit(st), (unsigned long long)-EIO); /* the shard is failed */
		CHECK(!store_commit_plan(st, &p, &records));
		store_close(st);
	}
	for (int i = 0; i < 4; i++)
		rec_free(&recs[i]);
}

/* Many records while a commit is stuck in flight: batches close at their
 * bounds, a full ring says -EAGAIN, nothing is lost, every cookie comes back
 * exactly once. */
static void test_batch_bounds(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "bounds");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	cfg.segment_size_bytes = 4 * SEG_BYTES;
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();

	REQUIRE(rec_add(st, 0, 8) == 0);
	struct store_commit stuck;
	REQUIRE(store_commit_begin(st, &stuck));
	int added = 1, rc = 0;
	while (added < RECS_MAX && (rc = rec_add(st, added, 8)) == 0)
		added++;
	CHECK_EQ_U(rc, (unsigned long long)-EAGAIN);
	CHECK(added > 1000); /* several batches' worth queued */
	REQUIRE(pwritev(stuck.fd, stuck.iov, stuck.iovcnt, (off_t)stuck.offset) ==
		(ssize_t)stuck.bytes);
	store_commit_done(st, (int)stuck.bytes, on_done, NULL);
	/* A slot is free again. */
	REQUIRE(rec_add(st, added, 8) == 0);
	added++;

	struct store_commit c;
	uint64_t next_offset = stuck.offset + stuck.bytes;
	int commits = 0;
	bool contiguous = true;
	while (run_commit(st, 0, &c)) {
		commits++;
		contiguous = contiguous && c.offset == next_offset;
		next_offset = c.offset + c.bytes;
	}
	CHECK(contiguous);
	CHECK(commits >= 5);
	CHECK(!store_busy(st));
	int wrong = 0;
	for (int i = 0; i < added; i++)
		if (done_count[i] != 1 || done_result[i] != 0)
			wrong++;
	CHECK_EQ_U(wrong, 0);
	store_close(st);
	static uint64_t ids[RECS_MAX];
	REQUIRE(find_all(dir, 5, ids, RECS_MAX, NULL) == (size_t)added);
	int mismatched = 0;
	for (int i = 0; i < added; i++)
		if (ids[i] != recs[i].id)
			mismatched++;
	CHECK_EQ_U(mismatched, 0);
	for (int i = 0; i < added; i++)
		rec_free(&recs[i]);
}

/* Records that do not fit roll over to the spare; batches never span two
 * segments; the store asks for the next spare, which the test provides. */
static void test_rollover(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "rollover");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();

	const size_t body = 100000; /* ten records per 1 MiB segment */
	int eagain = 0, spares = 0;
	bool within = true;
	int i = 0;
	while (i < 35) {
		int rc = rec_add(st, i, body);
		if (rc == -EAGAIN) {
			eagain++;
			/* Flush what is queued, then hand over a spare. */
			struct store_commit c;
			while (run_commit(st, 0, &c))
				within = within && c.offset + c.bytes <= SEG_BYTES;
			provide_spare(st);
			spares++;
			continue;
		}
		REQUIRE(rc == 0);
		i++;
		if (i % 4 == 0) {
			struct store_commit c;
			while (run_commit(st, 0, &c))
				within = within && c.offset + c.bytes <= SEG_BYTES;
		}
		close_retired(st);
	}
	struct store_commit c;
	while (run_commit(st, 0, &c))
		within = within && c.offset + c.bytes <= SEG_BYTES;
	close_retired(st);
	CHECK(within);
	CHECK(eagain >= 1);
	CHECK_EQ_U(spares, eagain);
	uint32_t w, seq;
	uint64_t off;
	queue_id_split(recs[34].id, &w, &seq, &off);
	CHECK_EQ_U(seq, 4); /* 35 records, 10 per segment */
	queue_id_split(recs[10].id, &w, &seq, &off);
	CHECK(seq == 2 && off == SEGMENT_HEADER_BYTES);
	struct store_stats ss;
	store_get_stats(st, &ss);
	CHECK_EQ_U(ss.segments, 4);
	CHECK_EQ_U(ss.bytes_used, 4 * SEG_BYTES);
	const char *path;
	uint32_t want;
	REQUIRE(store_spare_wanted(st, 0, &path, &want));
	CHECK_EQ_U(want, 5);
	CHECK(!store_spare_wanted(st, 0, &path, &want)); /* one request at a time */
	store_spare_ready(st, want, -ENOSPC);         /* core/ could not make it */
	CHECK_EQ_U(store_admit(st), 0);               /* the active still has room */
	/* A failed spare is asked for again after a backoff that doubles, not
	 * at once (every loop turn, with an error line each time). */
	const uint64_t t0 = 5000;
	CHECK(!store_spare_wanted(st, t0, &path, &want));
	CHECK(!store_spare_wanted(st, t0 + STORE_SPARE_RETRY_MIN_MS - 1, &path, &want));
	REQUIRE(store_spare_wanted(st, t0 + STORE_SPARE_RETRY_MIN_MS, &path, &want));
	CHECK_EQ_U(want, 5);
	store_spare_ready(st, want, -EIO);
	const uint64_t t1 = t0 + 1000;
	CHECK(!store_spare_wanted(st, t1, &path, &want));
	CHECK(!store_spare_wanted(st, t1 + 2 * STORE_SPARE_RETRY_MIN_MS - 1, &path, &want));
	REQUIRE(store_spare_wanted(st, t1 + 2 * STORE_SPARE_RETRY_MIN_MS, &path, &want));
	store_spare_ready(st, want, -EIO);
	for (int k = 0; k < 20; k++) { /* the wait stops growing */
		CHECK(!store_spare_wanted(st, t1 + 1000000ull * (uint64_t)(k + 1), &path, &want));
		REQUIRE(store_spare_wanted(st, t1 + 1000000ull * (uint64_t)(k + 1) +
						       STORE_SPARE_RETRY_MAX_MS, &path, &want));
		store_spare_ready(st, want, -EIO);
	}
	store_close(st);

	uint64_t ids[64];
	REQUIRE(find_all(dir, 5, ids, 64, NULL) == 35);
	int wrong = 0;
	for (int k = 0; k < 35; k++)
		if (ids[k] != recs[k].id || done_count[k] != 1 || done_result[k] != 0)
			wrong++;
	CHECK_EQ_U(wrong, 0);

	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, 35);
	CHECK_EQ_U(rs.segments, 4);
	CHECK(file_exists(dir, "w5/00000005.seg")); /* a fresh spare */
	store_close(st);
	for (int k = 0; k < 35; k++)
		rec_free(&recs[k]);
}

static void test_fault_injection(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "fault");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();

	REQUIRE(rec_add(st, 0, 10) == 0);
	REQUIRE(run_commit(st, 0, NULL));
	REQUIRE(rec_add(st, 1, 10) == 0);
	REQUIRE(rec_add(st, 2, 10) == 0);
	struct store_commit c;
	REQUIRE(store_commit_begin(st, &c));
	REQUIRE(rec_add(st, 3, 10) == 0); /* queued behind the failing commit */
	store_commit_done(st, -EIO, on_done, NULL);
	CHECK(done_count[0] == 1 && done_result[0] == 0);
	for (int i = 1; i < 4; i++)
		CHECK(done_count[i] == 1 && done_result[i] == -EIO);
	CHECK_EQ_U(store_admit(st), (unsigned long long)-EIO);
	uint64_t id;
	CHECK_EQ_U(store_reserve(st, 64, &id), (unsigned long long)-EIO);
	CHECK(!store_commit_begin(st, &c));
	CHECK(!store_busy(st));
	const char *path;
	uint32_t seq;
	CHECK(!store_spare_wanted(st, 0, &path, &seq));
	store_close(st);

	/* A short write is a failure too; so is a failed sync after a
	 * complete write, reported as its negative errno. */
	st = open_ok(&cfg, &rs);
	reset_done();
	REQUIRE(rec_add(st, 4, 10) == 0);
	REQUIRE(store_commit_begin(st, &c));
	store_commit_done(st, (int)c.bytes - 8, on_done, NULL);
	CHECK(done_count[4] == 1 && done_result[4] == -EIO);
	CHECK_EQ_U(store_admit(st), (unsigned long long)-EIO);
	store_close(st);

	st = open_ok(&cfg, &rs);
	reset_done();
	REQUIRE(rec_add(st, 5, 10) == 0);
	REQUIRE(rec_add(st, 6, 10) == 0);
	REQUIRE(run_commit(st, 0, NULL));
	CHECK(done_count[5] == 1 && done_result[5] == 0);
	REQUIRE(rec_add(st, 7, 10) == 0);
	REQUIRE(run_commit(st, ENOSPC, NULL));
	CHECK(done_count[7] == 1 && done_result[7] == -EIO);
	store_close(st);
	for (int i = 0; i < 8; i++)
		rec_free(&recs[i]);
}

static void test_store_full(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "full");
	struct store_config cfg = config(dir, 2 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();
	CHECK_EQ_U(store_admit(st), 0);
	int i = 0;
	/* Fill the first segment until the next record rolls into the spare. */
	while (store_admit(st) == 0) {
		REQUIRE(i < 40);
		REQUIRE(rec_add(st, i, 200000) == 0);
		REQUIRE(run_commit(st, 0, NULL));
		i++;
	}
	CHECK_EQ_U(store_admit(st), (unsigned long long)-ENOSPC);
	CHECK_EQ_U(i, 6); /* five fit in segment 1, the sixth opened segment 2 */
	struct store_stats ss;
	store_get_stats(st, &ss);
	CHECK_EQ_U(ss.bytes_used, 2 * SEG_BYTES);
	/* Segment 1 delivered and removed: the shard admits again. */
	store_segment_removed(st, 1);
	CHECK_EQ_U(store_admit(st), 0);
	store_get_stats(st, &ss);
	CHECK_EQ_U(ss.segments, 1);
	CHECK_EQ_U(ss.bytes_used, SEG_BYTES);
	store_close(st);
	/* Still full after a restart (the file is still there); a larger
	 * limit admits again. */
	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(store_admit(st), (unsigned long long)-ENOSPC);
	store_close(st);
	cfg.store_max_bytes = 3 * SEG_BYTES;
	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(store_admit(st), 0);
	store_close(st);
	for (int k = 0; k < i; k++)
		rec_free(&recs[k]);
}

/*
 * A file system that is full: the active segment has no room for the next
 * record and the spare could not be made. The record is refused (-ENOSPC,
 * which core/ answers at once) instead of waiting for a spare that may not
 * come for a long time, and store_admit refuses new transactions; once a
 * spare is made, both take records again.
 */
static void test_no_spare_refuses_record(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "nospare");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();
	int i = 0, rc;
	/* Segment 1, then the spare made at start-up, until a record finds
	 * neither room nor a spare. */
	while ((rc = rec_add(st, i, 200000)) == 0) {
		REQUIRE(++i < 20);
		REQUIRE(run_commit(st, 0, NULL));
	}
	CHECK_EQ_U(rc, (unsigned long long)-EAGAIN); /* a spare may still come */
	CHECK_EQ_U(i, 10);
	const char *path;
	uint32_t seq;
	REQUIRE(store_spare_wanted(st, 0, &path, &seq));
	CHECK_EQ_U(rec_add(st, i, 200000), (unsigned long long)-EAGAIN); /* it is on its way */
	store_spare_ready(st, seq, -ENOSPC);
	CHECK_EQ_U(rec_add(st, i, 200000), (unsigned long long)-ENOSPC);
	CHECK_EQ_U(store_admit(st), (unsigned long long)-ENOSPC);
	/* A retry while the disk is still full: refused too, not waiting. */
	uint64_t now = 0;
	while (!store_spare_wanted(st, now, &path, &seq))
		now += STORE_SPARE_RETRY_MIN_MS;
	CHECK_EQ_U(rec_add(st, i, 200000), (unsigned long long)-ENOSPC);
	store_spare_ready(st, seq, -ENOSPC);
	/* Room again: the next spare is made and the record goes in. */
	CHECK(!store_spare_wanted(st, now, &path, &seq)); /* the backoff starts */
	provide_spare_at(st, now + STORE_SPARE_RETRY_MAX_MS);
	CHECK_EQ_U(store_admit(st), 0);
	CHECK_EQ_U(rec_add(st, i, 200000), 0);
	REQUIRE(run_commit(st, 0, NULL));
	CHECK(done_count[i] == 1 && done_result[i] == 0);
	i++;
	close_retired(st);
	store_close(st);
	/* Every record acknowledged is there after a restart. */
	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, (unsigned long long)i);
	store_close(st);
	for (int k = 0; k <= i; k++)
		rec_free(&recs[k]);
}

static void test_torn_tail(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "torn");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();
	for (int i = 0; i < 3; i++)
		REQUIRE(rec_add(st, i, 300) == 0);
	REQUIRE(run_commit(st, 0, NULL));
	/* A fourth record written only in part, as a crash would leave it. */
	REQUIRE(rec_add(st, 3, 5000) == 0);
	struct store_commit c;
	REQUIRE(store_commit_begin(st, &c));
	uint64_t torn_at = c.offset;
	uint8_t *image = malloc(c.bytes);
	REQUIRE(image != NULL);
	size_t k = 0;
	for (int v = 0; v < c.iovcnt; v++) {
		memcpy(image + k, c.iov[v].iov_base, c.iov[v].iov_len);
		k += c.iov[v].iov_len;
	}
	char path[512];
	snprintf(path, sizeof(path), "%s/w5/00000001.seg", dir);
	int fd = open(path, O_RDWR);
	REQUIRE(fd >= 0);
	REQUIRE(pwrite(fd, image, 3001, (off_t)torn_at) == 3001);
	REQUIRE(fsync(fd) == 0);
	/* The crash: the shard is dropped without a commit result. */
	store_commit_done(st, -EIO, on_done, NULL);
	store_close(st);

	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, 3);
	CHECK_EQ_U(rs.quarantined, 0);
	CHECK_EQ_U(rs.truncated_bytes, 3008);
	uint8_t back[3008];
	REQUIRE(pread(fd, back, sizeof(back), (off_t)torn_at) == (ssize_t)sizeof(back));
	uint8_t zeros[3008] = { 0 };
	CHECK(memcmp(back, zeros, sizeof(back)) == 0);
	/* Writing resumes exactly where the torn record began. */
	REQUIRE(rec_add(st, 4, 10) == 0);
	uint32_t w, seq;
	uint64_t off;
	queue_id_split(recs[4].id, &w, &seq, &off);
	CHECK(seq == 1 && off == torn_at);
	REQUIRE(run_commit(st, 0, NULL));
	store_close(st);
	close(fd);
	free(image);
	uint64_t ids[8];
	uint32_t bad = 9;
	CHECK_EQ_U(find_all(dir, 5, ids, 8, &bad), 4);
	CHECK_EQ_U(bad, 0);
	for (int i = 0; i < 5; i++)
		rec_free(&recs[i]);
}

static void test_corruption_quarantined(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "corrupt");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();
	for (int i = 0; i < 3; i++)
		REQUIRE(rec_add(st, i, 400) == 0);
	REQUIRE(run_commit(st, 0, NULL));
	store_close(st);

	uint32_t w, seq;
	uint64_t mid;
	queue_id_split(recs[1].id, &w, &seq, &mid);
	flip_byte(dir, "w5/00000001.seg", mid + 200);

	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, 2);
	CHECK_EQ_U(rs.quarantined, 1);
	CHECK_EQ_U(rs.truncated_bytes, 0);
	CHECK(quarantined(dir, 1, mid));
	/* Writing resumes after the last record, not at the damage. */
	REQUIRE(rec_add(st, 3, 10) == 0);
	uint64_t off;
	queue_id_split(recs[3].id, &w, &seq, &off);
	queue_id_split(recs[2].id, &w, &seq, &mid);
	CHECK_EQ_U(off, mid + record_padded_length(recs[2].env.len, 400));
	REQUIRE(run_commit(st, 0, NULL));
	store_close(st);
	for (int i = 0; i < 4; i++)
		rec_free(&recs[i]);
}

/*
 * A client's body carries a complete record, envelope and CRC included,
 * placed where the next record's queue id (predictable from earlier
 * replies) says; the real record's end is then lost in a torn write.
 * Recovery must not take the forged record: the real one is a torn tail.
 */
static void test_forged_record_not_recovered(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "forged");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();
	REQUIRE(rec_add(st, 0, 300) == 0);
	REQUIRE(run_commit(st, 0, NULL));

	/* The real record 1: its place is known before its body is chosen. */
	struct rec *r = &recs[1];
	rec_free(r);
	REQUIRE(record_env_put(&r->env, RECORD_TAG_REVERSE_PATH, span_make("a@client.test", 13)) == 0);
	REQUIRE(record_env_put(&r->env, RECORD_TAG_RECIPIENT, span_make("b@example.org", 13)) == 0);
	const size_t body_len = 2000;
	uint64_t padded = record_padded_length(r->env.len, body_len);
	REQUIRE(store_reserve(st, padded, &r->id) == 0);
	uint32_t w, seq;
	uint64_t off;
	queue_id_split(r->id, &w, &seq, &off);
	uint64_t body_off = off + RECORD_HEADER_BYTES + r->env.len;
	uint64_t forged_off = RMX_ALIGN_UP(body_off + 24, 8);

	struct bytebuf fenv = { 0 };
	REQUIRE(record_env_put(&fenv, RECORD_TAG_REVERSE_PATH, span_make("ceo@example.org", 15)) == 0);
	REQUIRE(record_env_put(&fenv, RECORD_TAG_RECIPIENT, span_make("victim@evil.test", 16)) == 0);
	uint8_t fbody[200];
	memset(fbody, 'F', sizeof(fbody));
	struct iovec fpart = { fbody, sizeof(fbody) };
	struct record_header fh;
	uint64_t forged_id = queue_id_make(5, seq, forged_off);
	record_seal(&fh, forged_id, 1700000000999ll, span_make(fenv.data, fenv.len), &fpart, 1);

	r->body = malloc(body_len);
	REQUIRE(r->body != NULL);
	memset(r->body, 'x', body_len);
	size_t at = (size_t)(forged_off - body_off);
	memcpy(r->body + at, &fh, RECORD_HEADER_BYTES);
	memcpy(r->body + at + RECORD_HEADER_BYTES, fenv.data, fenv.len);
	memcpy(r->body + at + RECORD_HEADER_BYTES + fenv.len, fbody, sizeof(fbody));
	size_t fpad = record_padding(fh.length);
	memset(r->body + at + fh.length, 0, fpad);
	REQUIRE(at + fh.length + fpad + 7 < body_len);
	bytebuf_free(&fenv);
	r->body_len = body_len;
	struct iovec body = { r->body, body_len };
	record_seal(&r->h, r->id, 1700000000001ll, span_make(r->env.data, r->env.len), &body, 1);
	r->parts[0] = (struct iovec){ &r->h, RECORD_HEADER_BYTES };
	r->parts[1] = (struct iovec){ r->env.data, r->env.len };
	r->parts[2] = body;
	r->parts[3] = (struct iovec){ (void *)zero_pad, record_padding(r->h.length) };
	REQUIRE(store_append(st, r->id, r->parts, 4, 1) == 0);
	REQUIRE(run_commit(st, 0, NULL));
	store_close(st);

	/* The torn write: the real record's last 7 bytes are zeros. */
	char path[512];
	snprintf(path, sizeof(path), "%s/w5/%08u.seg", dir, (unsigned)seq);
	int fd = open(path, O_RDWR);
	REQUIRE(fd >= 0);
	uint8_t zeros[7] = { 0 };
	REQUIRE(pwrite(fd, zeros, 7, (off_t)(off + r->h.length - 7)) == 7);
	REQUIRE(fsync(fd) == 0);
	close(fd);

	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, 1);
	CHECK(rs.truncated_bytes > 0);
	store_close(st);
	uint64_t ids[8];
	size_t n = find_all(dir, 5, ids, 8, NULL);
	bool forged_found = false;
	for (size_t i = 0; i < n; i++)
		forged_found = forged_found || ids[i] == forged_id;
	CHECK(!forged_found);
	CHECK_EQ_U(n, 1);
	CHECK(quarantined(dir, seq, off));
	rec_free(&recs[0]);
	rec_free(&recs[1]);
}

/* Adds count records of body bytes, committing and handing over a spare
 * whenever the active segment is full, then commits the rest. */
static void fill_segments(struct store *st, int count, size_t body)
{
	for (int i = 0; i < count;) {
		int rc = rec_add(st, i, body);
		if (rc == -EAGAIN) {
			while (run_commit(st, 0, NULL))
				;
			provide_spare(st);
			continue;
		}
		REQUIRE(rc == 0);
		i++;
	}
	while (run_commit(st, 0, NULL))
		;
}

/*
 * Damage in a sealed segment (a later segment holds records) cannot be a
 * torn write: it is counted as an alarm, set aside, and the segment's bytes
 * stay as they are. The same damage in the newest segment with data is
 * a torn tail (cut, no alarm), and so is damage in a segment followed only
 * by an empty one.
 */
static void test_sealed_damage_alarm(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "sealed");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();
	const size_t body = 100000; /* ten records per 1 MiB segment */
	fill_segments(st, 13, body);
	close_retired(st);
	store_close(st);

	/* The last record of sealed segment 1, and a middle one. */
	uint32_t w, seq;
	uint64_t last_off, mid_off;
	queue_id_split(recs[9].id, &w, &seq, &last_off);
	REQUIRE(seq == 1);
	queue_id_split(recs[4].id, &w, &seq, &mid_off);
	flip_byte(dir, "w5/00000001.seg", last_off + 500);
	flip_byte(dir, "w5/00000001.seg", mid_off + 500);
	uint8_t flipped = file_byte(dir, "w5/00000001.seg", last_off + 500);
	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, 11);
	CHECK_EQ_U(rs.quarantined, 2);
	CHECK_EQ_U(rs.sealed_damaged, 2);
	CHECK_EQ_U(rs.truncated_bytes, 0);
	CHECK(quarantined(dir, 1, last_off));
	CHECK(quarantined(dir, 1, mid_off));
	/* Not cut: the sealed segment still holds the damaged bytes. */
	CHECK(file_byte_is(dir, "w5/00000001.seg", last_off + 500, flipped));
	store_close(st);

	/* The newest segment's last record damaged: a torn tail, no alarm. */
	uint64_t tail_off;
	queue_id_split(recs[12].id, &w, &seq, &tail_off);
	REQUIRE(seq == 2);
	flip_byte(dir, "w5/00000002.seg", tail_off + 500);
	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, 10);
	CHECK_EQ_U(rs.sealed_damaged, 2); /* segment 1's, still there */
	CHECK(rs.truncated_bytes > 0);
	CHECK(file_byte_is(dir, "w5/00000002.seg", tail_off + 500, 0));
	store_close(st);
	for (int i = 0; i < 13; i++)
		rec_free(&recs[i]);

	/* Damage in a full segment followed by an empty one only (a roll
	 * with no commit after it): it may be torn, so no alarm. */
	fresh_dir(dir, sizeof(dir), "sealed2");
	cfg = config(dir, 64 * SEG_BYTES);
	st = open_ok(&cfg, &rs);
	reset_done();
	for (int i = 0; i < 10; i++) {
		REQUIRE(rec_add(st, i, body) == 0);
		REQUIRE(run_commit(st, 0, NULL));
	}
	uint64_t id;
	REQUIRE(store_reserve(st, 200000, &id) == 0); /* rolls into segment 2 */
	queue_id_split(id, &w, &seq, &tail_off);
	REQUIRE(seq == 2);
	close_retired(st);
	store_close(st);
	queue_id_split(recs[9].id, &w, &seq, &last_off);
	flip_byte(dir, "w5/00000001.seg", last_off + 500);
	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.sealed_damaged, 0);
	CHECK_EQ_U(rs.records, 9);
	store_close(st);
	for (int i = 0; i < 10; i++)
		rec_free(&recs[i]);
}

/* Writes a segment of format 1 (no header, an unsalted record at 0). */
static void write_format1_segment(const char *dir, uint32_t worker, uint32_t seq)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/w%u", dir, (unsigned)worker);
	REQUIRE(mkdir(dir, 0700) == 0 || errno == EEXIST);
	REQUIRE(mkdir(path, 0700) == 0 || errno == EEXIST);
	snprintf(path, sizeof(path), "%s/w%u/%08u.seg", dir, (unsigned)worker, (unsigned)seq);
	uint8_t *image = calloc(1, SEG_BYTES);
	REQUIRE(image != NULL);
	struct bytebuf env = { 0 };
	REQUIRE(record_env_put(&env, RECORD_TAG_REVERSE_PATH, span_make("s@example.net", 13)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_RECIPIENT, span_make("r@example.org", 13)) == 0);
	static const char msg[] = "Subject: old\r\n\r\nfrom before\r\n";
	struct iovec body = { (void *)msg, sizeof(msg) - 1 };
	struct record_header h;
	record_seal(&h, queue_id_make(worker, seq, 0), 1600000000000ll,
		    span_make(env.data, env.len), &body, 1);
	memcpy(image, &h, RECORD_HEADER_BYTES);
	memcpy(image + RECORD_HEADER_BYTES, env.data, env.len);
	memcpy(image + RECORD_HEADER_BYTES + env.len, msg, sizeof(msg) - 1);
	image[10] = 1; /* format 1: version 1, CRC without a salt */
	uint32_t crc = crc32c(0, image + 8, h.length - 8);
	memcpy(image + 4, &crc, 4);
	bytebuf_free(&env);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	REQUIRE(fd >= 0);
	REQUIRE(pwrite(fd, image, SEG_BYTES, 0) == (ssize_t)SEG_BYTES);
	REQUIRE(fsync(fd) == 0);
	close(fd);
	free(image);
}

static bool file_same(const char *a, const char *b)
{
	char cmd[1100];
	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
	return system(cmd) == 0;
}

/*
 * Segments of format 1, or with data under a header that does not check,
 * stop the store with a message that says what to do, and are left as they
 * are; segments holding no record get a header whatever their first block
 * held.
 */
static void test_format_refused(void)
{
	char dir[256], copy[300], seg[300];
	fresh_dir(dir, sizeof(dir), "format1");
	write_format1_segment(dir, 5, 1);
	snprintf(seg, sizeof(seg), "%s/w5/00000001.seg", dir);
	snprintf(copy, sizeof(copy), "%s/format1-copy", tmp_root);
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", seg, copy);
	REQUIRE(system(cmd) == 0);

	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = NULL;
	char err[512] = "";
	CHECK_EQ_U(store_open(&cfg, &st, &rs, err, sizeof(err)), (unsigned long long)-EPROTO);
	CHECK(st == NULL);
	CHECK(strstr(err, "w5/00000001.seg") != NULL);
	CHECK(strstr(err, "format 1") != NULL);
	CHECK(strstr(err, "forward") != NULL); /* what to do about it */
	fprintf(stderr, "test_store: refused as expected: %s\n", err);
	CHECK(file_same(seg, copy));
	CHECK(!file_exists(dir, "w5/00000002.seg")); /* no spare was made */
	err[0] = '\0';
	CHECK_EQ_U(store_open_leftover(&cfg, &st, &rs, err, sizeof(err)),
		   (unsigned long long)-EPROTO);
	CHECK(strstr(err, "format 1") != NULL);
	CHECK(file_same(seg, copy));

	/* A damaged header over a segment with records. */
	fresh_dir(dir, sizeof(dir), "badheader");
	cfg = config(dir, 64 * SEG_BYTES);
	st = open_ok(&cfg, &rs);
	reset_done();
	REQUIRE(rec_add(st, 0, 100) == 0);
	REQUIRE(run_commit(st, 0, NULL));
	store_close(st);
	flip_byte(dir, "w5/00000001.seg", 25); /* in the salt */
	CHECK_EQ_U(store_open(&cfg, &st, &rs, err, sizeof(err)), (unsigned long long)-EPROTO);
	CHECK(strstr(err, "damaged segment header") != NULL);
	flip_byte(dir, "w5/00000001.seg", 25);
	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, 1);
	store_close(st);
	rec_free(&recs[0]);

	/* An active segment with no record and a torn header: given a new one. */
	fresh_dir(dir, sizeof(dir), "tornheader");
	cfg = config(dir, 64 * SEG_BYTES);
	st = open_ok(&cfg, &rs);
	store_close(st);
	flip_byte(dir, "w5/00000001.seg", 20);
	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, 0);
	reset_done();
	REQUIRE(rec_add(st, 0, 100) == 0);
	REQUIRE(run_commit(st, 0, NULL));
	store_close(st);
	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, 1);
	store_close(st);
	rec_free(&recs[0]);
	unlink(copy);
}

static void test_list_shards_and_args(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "shards");
	REQUIRE(mkdir(dir, 0700) == 0);
	const char *names[] = { "w0", "w3", "w12", "wx", "w01", "w256", "x1" };
	for (size_t i = 0; i < RMX_ARRAY_LEN(names); i++) {
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		REQUIRE(mkdir(p, 0700) == 0);
	}
	char p[512];
	snprintf(p, sizeof(p), "%s/w7", dir);
	int fd = open(p, O_CREAT | O_WRONLY, 0600); /* a file, not a shard */
	REQUIRE(fd >= 0);
	close(fd);
	uint32_t workers[8];
	int n = store_list_shards(dir, workers, 8);
	REQUIRE(n == 3);
	CHECK(workers[0] == 0 && workers[1] == 3 && workers[2] == 12);
	CHECK_EQ_U(store_list_shards(dir, workers, 2), (unsigned long long)-ENOBUFS);
	snprintf(p, sizeof(p), "%s/none", dir);
	CHECK_EQ_U(store_list_shards(p, workers, 8), (unsigned long long)-ENOENT);

	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = NULL;
	char err[256] = "";
	cfg.segment_size_bytes = SEG_BYTES - 8;
	CHECK_EQ_U(store_open(&cfg, &st, &rs, err, sizeof(err)), (unsigned long long)-EINVAL);
	CHECK(err[0] != '\0');
	cfg = config(dir, 64 * SEG_BYTES);
	cfg.worker = WORKERS_MAX;
	CHECK_EQ_U(store_open(&cfg, &st, &rs, err, sizeof(err)), (unsigned long long)-EINVAL);
	cfg = config(dir, 64 * SEG_BYTES);
	st = open_ok(&cfg, &rs);
	uint64_t id;
	CHECK_EQ_U(store_reserve(st, SEG_BYTES + 8, &id), (unsigned long long)-E2BIG);
	CHECK_EQ_U(store_reserve(st, 44, &id), (unsigned long long)-EINVAL);
	CHECK_EQ_U(store_reserve(st, 32, &id), (unsigned long long)-EINVAL);
	n = store_list_shards(dir, workers, 8);
	CHECK_EQ_U(n, 4); /* w5 now */
	store_close(st);
}


static uint64_t file_size(const char *dir, const char *rel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	struct stat sb;
	return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* segment_size changed between runs: the old empty spare (wrong size) is
 * replaced, the active segment keeps its own size until it is full. */
static void test_segment_size_change(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "resize");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();
	REQUIRE(rec_add(st, 0, 600000) == 0);
	REQUIRE(run_commit(st, 0, NULL));
	store_close(st);
	CHECK_EQ_U(file_size(dir, "w5/00000002.seg"), SEG_BYTES);

	cfg.segment_size_bytes = 2 * SEG_BYTES;
	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, 1);
	CHECK_EQ_U(rs.segments, 1);
	CHECK(!file_exists(dir, "w5/00000002.seg")); /* the old spare, removed */
	CHECK_EQ_U(file_size(dir, "w5/00000003.seg"), 2 * SEG_BYTES);
	/* 600 KB more does not fit the 1 MiB active segment: it goes to 3. */
	REQUIRE(rec_add(st, 1, 600000) == 0);
	uint32_t w, seq;
	uint64_t off;
	queue_id_split(recs[1].id, &w, &seq, &off);
	CHECK(seq == 3 && off == SEGMENT_HEADER_BYTES);
	REQUIRE(rec_add(st, 2, 600000) == 0);
	queue_id_split(recs[2].id, &w, &seq, &off);
	CHECK(seq == 3 && off > 0);
	while (run_commit(st, 0, NULL))
		;
	close_retired(st);
	store_close(st);
	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, 3);
	CHECK_EQ_U(rs.segments, 2);
	store_close(st);
	for (int i = 0; i < 3; i++)
		rec_free(&recs[i]);
}

static uint64_t rng_state = 0x853C49E6748FEA9Bull;

static uint64_t rng_next(void)
{
	return test_xorshift64(&rng_state);
}

/*
 * Random interleavings of what core/ does: appends of random sizes (some a
 * third of a segment), commits started and finished at random moments,
 * spares provided late. Invariants checked throughout: ids never repeat and
 * grow within a segment, commits are contiguous and stay inside their
 * segment, every cookie comes back once; at the end recovery finds every
 * record, in order.
 */
static void test_random_interleavings(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "random");
	struct store_config cfg = config(dir, 1024 * SEG_BYTES);
	cfg.fsync = false;
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();

	enum { TOTAL = 1500 };
	int added = 0, eagain = 0;
	bool ok_ids = true, ok_commits = true;
	uint32_t last_seq = 0;
	uint64_t last_off = 0;
	struct store_commit inflight;
	bool have_inflight = false;
	while (added < TOTAL || have_inflight || store_busy(st)) {
		uint64_t dice = rng_next() % 100;
		if (added < TOTAL && dice < 60) {
			size_t body = (rng_next() % 8 == 0) ? 300000 + rng_next() % 50000
							     : rng_next() % 3000;
			int rc = rec_add(st, added, body);
			if (rc == -EAGAIN) {
				eagain++;
			} else {
				REQUIRE(rc == 0);
				uint32_t w, seq;
				uint64_t off;
				queue_id_split(recs[added].id, &w, &seq, &off);
				if (!(seq > last_seq || (seq == last_seq && off > last_off) ||
				      added == 0))
					ok_ids = false;
				last_seq = seq;
				last_off = off;
				added++;
			}
		} else if (dice < 80 && !have_inflight) {
			have_inflight = store_commit_begin(st, &inflight);
			if (have_inflight) {
				ssize_t n = pwritev(inflight.fd, inflight.iov, inflight.iovcnt,
						    (off_t)inflight.offset);
				REQUIRE(n == (ssize_t)inflight.bytes);
				if (inflight.offset + inflight.bytes > SEG_BYTES)
					ok_commits = false;
			}
		} else if (dice < 95 && have_inflight) {
			store_commit_done(st, (int)inflight.bytes, on_done, NULL);
			have_inflight = false;
		} else {
			const char *path;
			uint32_t seq;
			if (rng_next() % 2 && store_spare_wanted(st, 0, &path, &seq)) {
				/* Provide it through the same steps as provide_spare. */
				int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
				REQUIRE(fd >= 0);
				REQUIRE(fallocate(fd, 0, 0, SEG_BYTES) == 0);
				write_spare_header(st, fd);
				store_spare_ready(st, seq, fd);
			}
			close_retired(st);
		}
	}
	CHECK(ok_ids);
	CHECK(ok_commits);
	CHECK(eagain > 0);
	int wrong = 0;
	for (int i = 0; i < added; i++)
		if (done_count[i] != 1 || done_result[i] != 0)
			wrong++;
	CHECK_EQ_U(wrong, 0);
	struct store_stats ss;
	store_get_stats(st, &ss);
	CHECK_EQ_U(ss.records_committed, added);
	store_close(st);

	static uint64_t ids[TOTAL];
	REQUIRE(find_all(dir, 5, ids, TOTAL, NULL) == (size_t)added);
	int mismatched = 0;
	for (int i = 0; i < added; i++)
		if (ids[i] != recs[i].id)
			mismatched++;
	CHECK_EQ_U(mismatched, 0);
	st = open_ok(&cfg, &rs);
	CHECK_EQ_U(rs.records, added);
	CHECK_EQ_U(rs.quarantined, 0);
	CHECK_EQ_U(rs.truncated_bytes, 0);
	store_close(st);
	for (int i = 0; i < added; i++)
		rec_free(&recs[i]);
	rm_rf(dir);
}

/* A shard left by a run with more workers: recovered (torn tail cut, spare
 * removed), takes no records, and every segment can be removed. */
static void test_leftover_shard(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "leftover");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	reset_done();
	fill_segments(st, 13, 100000); /* ten records per 1 MiB segment */
	provide_spare(st);
	/* A torn record at the end of segment 2, as a crash leaves it. */
	REQUIRE(rec_add(st, 13, 300) == 0);
	struct store_commit c;
	REQUIRE(store_commit_begin(st, &c));
	REQUIRE(pwrite(c.fd, c.iov[0].iov_base, 20, (off_t)c.offset) == 20);
	store_commit_done(st, -EIO, on_done, NULL);
	close_retired(st);
	store_close(st);
	CHECK(file_exists(dir, "w5/00000003.seg")); /* the spare */

	struct store *lo = NULL;
	char err[256] = "";
	REQUIRE(store_open_leftover(&cfg, &lo, &rs, err, sizeof(err)) == 0);
	CHECK_EQ_U(rs.records, 13);
	CHECK_EQ_U(rs.segments, 2);
	CHECK(rs.truncated_bytes > 0);
	CHECK(!file_exists(dir, "w5/00000003.seg")); /* empty spare removed */
	CHECK((store_admit(lo)) == -EROFS);
	uint64_t qid;
	CHECK((store_reserve(lo, 4096, &qid)) == -EROFS);
	const char *path;
	uint32_t seq;
	CHECK(!store_spare_wanted(lo, 0, &path, &seq));
	CHECK_EQ_U(store_first_unsealed_seq(lo), 3);
	/* A second opener is refused while the shard is held. */
	struct store *again = NULL;
	CHECK((store_open_leftover(&cfg, &again, &rs, err, sizeof(err))) == -EBUSY);
	store_segment_removed(lo, 1);
	store_segment_removed(lo, 2);
	struct store_stats ss;
	store_get_stats(lo, &ss);
	CHECK_EQ_U(ss.segments, 0);
	store_close(lo);
	uint64_t ids[16];
	uint32_t bad = 9;
	CHECK_EQ_U(find_all(dir, 5, ids, 16, &bad), 13);
	CHECK_EQ_U(bad, 0);
	for (int i = 0; i < 14; i++)
		rec_free(&recs[i]);
}

/* Pages of shard file rel (under dir) in the page cache (mincore). */
static size_t cached_pages(const char *dir, const char *rel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0);
	struct stat sb;
	REQUIRE(fstat(fd, &sb) == 0 && sb.st_size > 0);
	void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED);
	size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = ((size_t)sb.st_size + page - 1) / page;
	unsigned char *vec = malloc(pages);
	REQUIRE(vec != NULL);
	REQUIRE(mincore(p, (size_t)sb.st_size, vec) == 0);
	size_t n = 0;
	for (size_t i = 0; i < pages; i++)
		n += vec[i] & 1;
	free(vec);
	munmap(p, (size_t)sb.st_size);
	close(fd);
	return n;
}

/* One direct commit like core/: the plan must be a single block-aligned
 * write of the whole padded batch from an aligned buffer, RWF_DSYNC when
 * the store syncs; run blocking, results to store_commit_advance. Returns
 * the write's offset and length. */
static bool run_direct_commit(struct store *st, bool sync, uint64_t *offset, uint64_t *len)
{
	struct io_plan p;
	uint32_t records;
	if (!store_commit_plan(st, &p, &records))
		return false;
	REQUIRE(p.count == 1 && records > 0);
	const struct io_step *w = &p.step[0];
	CHECK(w->op == IO_STEP_WRITE);
	CHECK(w->flags == (sync ? RWF_DSYNC : 0));
	CHECK(w->offset % SEGMENT_BLOCK_BYTES == 0 && w->len % SEGMENT_BLOCK_BYTES == 0);
	CHECK((uintptr_t)w->buf % SEGMENT_BLOCK_BYTES == 0);
	io_plan_run_blocking(&p);
	REQUIRE(p.result[0] == (int)w->len); /* an O_DIRECT fd: EINVAL if unaligned */
	REQUIRE(store_commit_advance(st, &p, on_done, NULL) == 0);
	*offset = w->offset;
	*len = w->len;
	return true;
}

/* A spare with an O_DIRECT fd, as segment_make with keep_direct hands it. */
static void provide_direct_spare(struct store *st)
{
	const char *path;
	uint32_t seq;
	REQUIRE(store_spare_wanted(st, 0, &path, &seq));
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	uint8_t *zeros = calloc(1, SEG_BYTES);
	REQUIRE(zeros != NULL);
	REQUIRE(pwrite(fd, zeros, SEG_BYTES, 0) == (ssize_t)SEG_BYTES);
	free(zeros);
	write_spare_header(st, fd);
	REQUIRE(fdatasync(fd) == 0);
	close(fd);
	fd = open(path, O_RDWR | O_CLOEXEC | O_DIRECT);
	REQUIRE(fd >= 0);
	store_spare_ready_direct(st, seq, fd);
}

/*
 * Direct commits (store_io = direct): each batch starts on a block boundary
 * and goes out as one aligned write padded with zeros to the next one; a
 * batch that opens while another is in flight starts past its padding, and
 * records still join an open batch contiguously. Everything acknowledged is
 * found again by recovery (scanning over the padding), across a rollover.
 * Skipped where the file system refuses O_DIRECT.
 */
static void test_direct_commits(void)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), "direct");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	cfg.io_mode = STORE_IO_DIRECT;
	struct store_recovery_stats rs;
	struct store *st = NULL;
	char err[256] = "";
	int rc = store_open(&cfg, &st, &rs, err, sizeof(err));
	if (rc == -EINVAL) {
		printf("test_direct_commits: skipped: %s\n", err);
		return;
	}
	REQUIRE(rc == 0);
	CHECK(rs.io_mode == STORE_IO_DIRECT && store_commits_direct(st));
	/* Recovery read the segments in; a cached page where a direct commit
	 * lands would make io_uring hand that write to io-wq. */
	CHECK_EQ_U(cached_pages(dir, "w5/00000001.seg"), 0);
	CHECK_EQ_U(cached_pages(dir, "w5/00000002.seg"), 0);
	reset_done();

	REQUIRE(rec_add(st, 0, 100) == 0);
	REQUIRE(rec_add(st, 1, 5000) == 0);
	REQUIRE(rec_add(st, 2, 300) == 0);
	uint64_t off, len;
	REQUIRE(run_direct_commit(st, true, &off, &len));
	CHECK_EQ_U(off, SEGMENT_HEADER_BYTES);
	uint32_t w, seq;
	uint64_t o2;
	queue_id_split(recs[2].id, &w, &seq, &o2);
	uint64_t batch_end = o2 + record_padded_length(recs[2].env.len, 300);
	CHECK(len >= batch_end - off && len < batch_end - off + SEGMENT_BLOCK_BYTES);
	CHECK(done_count[0] == 1 && done_count[1] == 1 && done_count[2] == 1);
	CHECK(done_result[0] == 0 && done_result[2] == 0);

	/* The next batch starts on the boundary after the padding. */
	REQUIRE(rec_add(st, 3, 200) == 0);
	uint64_t o3;
	queue_id_split(recs[3].id, &w, &seq, &o3);
	CHECK_EQ_U(o3, off + len);

	/* In flight: a new record opens the next batch past the padding, and a
	 * second joins it right after the first. */
	struct io_plan flying;
	uint32_t records;
	REQUIRE(store_commit_plan(st, &flying, &records) && records == 1);
	REQUIRE(rec_add(st, 4, 700) == 0);
	REQUIRE(rec_add(st, 5, 40) == 0);
	uint64_t o4, o5;
	queue_id_split(recs[4].id, &w, &seq, &o4);
	queue_id_split(recs[5].id, &w, &seq, &o5);
	CHECK_EQ_U(o4, flying.step[0].offset + flying.step[0].len);
	CHECK_EQ_U(o5, o4 + record_padded_length(recs[4].env.len, 700));
	io_plan_run_blocking(&flying);
	REQUIRE(store_commit_advance(st, &flying, on_done, NULL) == 0);
	REQUIRE(run_direct_commit(st, true, &off, &len));
	CHECK_EQ_U(off, o4);

	/* Through two rollovers: into the spare store_open made (reopened
	 * O_DIRECT), then into one made at run time with keep_direct. */
	uint32_t first_seq = seq;
	int n = 6;
	for (; n < 400; n++) {
		size_t body = 20000 + (size_t)n * 13;
		while ((rc = rec_add(st, n, body)) == -EAGAIN) {
			while (run_direct_commit(st, true, &off, &len))
				close_retired(st);
			provide_direct_spare(st);
		}
		REQUIRE(rc == 0);
		queue_id_split(recs[n].id, &w, &seq, &o2);
		if (n % 3 == 0)
			(void)run_direct_commit(st, true, &off, &len);
		if (seq == first_seq + 2)
			break;
	}
	REQUIRE(seq == first_seq + 2);
	while (run_direct_commit(st, true, &off, &len))
		close_retired(st);
	int acked = n + 1;
	for (int i = 0; i < acked; i++)
		CHECK(done_count[i] == 1 && done_result[i] == 0);
	store_close(st);

	/* Recovery finds every acknowledged record, with no damage. */
	st = open_ok(&cfg, &rs);
	CHECK(rs.io_mode == STORE_IO_DIRECT);
	CHECK_EQ_U(cached_pages(dir, "w5/00000003.seg"), 0); /* the active one now */
	CHECK_EQ_U(rs.records, (uint64_t)acked);
	CHECK_EQ_U(rs.quarantined, 0);
	CHECK_EQ_U(rs.truncated_bytes, 0);
	store_close(st);
	static uint64_t ids[RECS_MAX];
	uint32_t bad = 99;
	size_t found = find_all(dir, 5, ids, RECS_MAX, &bad);
	CHECK_EQ_U(found, (uint64_t)acked);
	CHECK_EQ_U(bad, 0);
	for (int i = 0; i < acked && (size_t)i < found; i++)
		CHECK(ids[i] == recs[i].id);
	for (int i = 0; i < acked; i++)
		rec_free(&recs[i]);
}

/* auto falls back to buffered commits where direct ones cannot work (here
 * an active segment, left by an earlier configuration, whose size is no
 * multiple of the block), and says why; direct refuses to start there. */
static void test_direct_fallback(void)
{
	char dir[256], path[320];
	fresh_dir(dir, sizeof(dir), "fallback");
	REQUIRE(mkdir(dir, 0700) == 0);
	snprintf(path, sizeof(path), "%s/w5", dir);
	REQUIRE(mkdir(path, 0700) == 0);
	snprintf(path, sizeof(path), "%s/w5/00000001.seg", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	uint8_t *image = calloc(1, SEG_BYTES + 8);
	REQUIRE(image != NULL);
	const uint64_t salt = 0x1234567887654321ull;
	segment_header_encode(image, 5, 1, salt);
	/* One record in it, so that recovery keeps it as the active segment. */
	struct bytebuf env = { 0 };
	REQUIRE(record_env_put(&env, RECORD_TAG_REVERSE_PATH, span_make("s@example.net", 13)) == 0);
	REQUIRE(record_env_put(&env, RECORD_TAG_RECIPIENT, span_make("u@example.org", 13)) == 0);
	uint8_t body[100];
	memset(body, 'b', sizeof(body));
	struct iovec part = { body, sizeof(body) };
	struct record_header h;
	record_seal(&h, queue_id_make(5, 1, SEGMENT_HEADER_BYTES), 1700000000000ll,
		    span_make(env.data, env.len), &part, 1);
	h.crc32c = record_crc_salted(h.crc32c, salt);
	memcpy(image + SEGMENT_HEADER_BYTES, &h, RECORD_HEADER_BYTES);
	memcpy(image + SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES, env.data, env.len);
	memcpy(image + SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + env.len, body, sizeof(body));
	bytebuf_free(&env);
	REQUIRE(pwrite(fd, image, SEG_BYTES + 8, 0) == (ssize_t)(SEG_BYTES + 8));
	free(image);
	close(fd);
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	cfg.io_mode = STORE_IO_AUTO;
	struct store_recovery_stats rs;
	struct store *st = open_ok(&cfg, &rs);
	CHECK(rs.io_mode == STORE_IO_BUFFERED && !store_commits_direct(st));
	CHECK(strcmp(rs.io_reason, "segment_size_not_block_multiple") == 0);
	CHECK_EQ_U(rs.records, 1);
	reset_done();
	REQUIRE(rec_add(st, 0, 100) == 0);
	REQUIRE(run_commit(st, 0, NULL)); /* a pwritev and its fdatasync */
	CHECK(done_count[0] == 1 && done_result[0] == 0);
	store_close(st);

	cfg.io_mode = STORE_IO_DIRECT;
	char err[256] = "";
	st = NULL;
	CHECK(store_open(&cfg, &st, &rs, err, sizeof(err)) == -EINVAL && st == NULL);
	CHECK(strstr(err, "store_io = direct") != NULL);
	cfg.io_mode = STORE_IO_BUFFERED;
	st = open_ok(&cfg, &rs);
	CHECK(rs.io_mode == STORE_IO_BUFFERED && strcmp(rs.io_reason, "configured") == 0);
	CHECK_EQ_U(rs.records, 2);
	store_close(st);
	rec_free(&recs[0]);
}

/* The order records are answered in, over the whole test. */
static int done_order[RECS_MAX];
static int done_order_count;

static void on_done_ordered(void *ctx, uint64_t cookie, int result)
{
	on_done(ctx, cookie, result);
	if (result == 0 && done_order_count < RECS_MAX)
		done_order[done_order_count++] = (int)cookie;
}

/* Plans the next commit and runs it at once (its results wait in p). */
static bool plan_and_run(struct store *st, struct io_plan *p)
{
	uint32_t records;
	if (!store_commit_plan(st, p, &records))
		return false;
	io_plan_run_blocking(p);
	return true;
}

/*
 * Several commits in flight (commits_in_flight = 3): each batch its own
 * commit, handed out while older ones are in flight, their results reported
 * in any order, the records answered in batch order only; a fourth waits;
 * a batch in the next segment waits for the earlier segment's commits; a
 * failure answers every queued record, and the results still in flight are
 * then taken without answering anyone twice. Buffered and direct.
 */
static void test_commits_in_flight(enum store_io_mode mode)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir), mode == STORE_IO_DIRECT ? "inflight-direct" : "inflight");
	struct store_config cfg = config(dir, 64 * SEG_BYTES);
	cfg.io_mode = mode;
	cfg.commits_in_flight = 3;
	struct store_recovery_stats rs;
	struct store *st = NULL;
	char err[256] = "";
	int rc = store_open(&cfg, &st, &rs, err, sizeof(err));
	if (rc == -EINVAL && mode == STORE_IO_DIRECT) {
		printf("test_commits_in_flight(direct): skipped: %s\n", err);
		return;
	}
	REQUIRE(rc == 0);
	reset_done();
	done_order_count = 0;

	struct io_plan a, b, c, d;
	REQUIRE(rec_add(st, 0, 100) == 0);
	REQUIRE(plan_and_run(st, &a));
	REQUIRE(rec_add(st, 1, 3000) == 0);
	REQUIRE(rec_add(st, 2, 100) == 0);
	REQUIRE(plan_and_run(st, &b));
	REQUIRE(rec_add(st, 3, 100) == 0);
	REQUIRE(plan_and_run(st, &c));
	REQUIRE(rec_add(st, 4, 100) == 0);
	CHECK(!plan_and_run(st, &d)); /* three in flight: the fourth waits */
	CHECK(a.ticket != b.ticket && b.ticket != c.ticket && a.ticket != c.ticket);
	/* Each batch its own range, one after the other; direct ones on block
	 * boundaries, each from its own buffer. */
	CHECK(a.step[0].offset < b.step[0].offset && b.step[0].offset < c.step[0].offset);
	if (mode == STORE_IO_DIRECT) {
		CHECK(a.step[0].buf != b.step[0].buf && b.step[0].buf != c.step[0].buf &&
		      a.step[0].buf != c.step[0].buf);
		CHECK_EQ_U(b.step[0].offset % SEGMENT_BLOCK_BYTES, 0);
		CHECK(a.step[0].offset + a.step[0].len <= b.step[0].offset);
	} else {
		CHECK_EQ_U(b.step[0].offset, a.step[0].offset + a.step[0].len);
	}

	/* The newest first: nobody is answered, it waits for the older two. */
	CHECK(store_commit_advance(st, &c, on_done_ordered, NULL) == 0);
	CHECK_EQ_U(done_order_count, 0);
	CHECK(plan_and_run(st, &d)); /* its slot is free */
	/* The oldest: its own record only. */
	CHECK(store_commit_advance(st, &a, on_done_ordered, NULL) == 0);
	CHECK_EQ_U(done_order_count, 1);
	/* The middle one releases itself and the newest, in order. */
	CHECK(store_commit_advance(st, &b, on_done_ordered, NULL) == 0);
	CHECK(store_commit_advance(st, &d, on_done_ordered, NULL) == 0);
	CHECK_EQ_U(done_order_count, 5);
	for (int i = 0; i < 5; i++)
		CHECK(done_order[i] == i && done_count[i] == 1 && done_result[i] == 0);
	CHECK(!store_busy(st));

	/* A failure among three in flight: every queued record -EIO at once,
	 * a batch whose own commit had come back included; the others' results
	 * come later and answer nobody again. */
	REQUIRE(rec_add(st, 5, 100) == 0);
	REQUIRE(plan_and_run(st, &a));
	REQUIRE(rec_add(st, 6, 100) == 0);
	REQUIRE(plan_and_run(st, &b));
	REQUIRE(rec_add(st, 7, 100) == 0);
	REQUIRE(plan_and_run(st, &c));
	REQUIRE(rec_add(st, 8, 100) == 0); /* queued, not handed out */
	CHECK(store_commit_advance(st, &c, on_done_ordered, NULL) == 0);
	b.result[0] = -EIO;
	if (b.count > 1)
		b.result[1] = -ECANCELED;
	CHECK_EQ_U(store_commit_advance(st, &b, on_done_ordered, NULL), (unsigned long long)-EIO);
	for (int i = 5; i <= 8; i++)
		CHECK(done_count[i] == 1 && done_result[i] == -EIO);
	CHECK(store_busy(st)); /* a's result is still to come */
	CHECK_EQ_U(store_admit(st), (unsigned long long)-EIO);
	CHECK(store_commit_advance(st, &a, on_done_ordered, NULL) == 0);
	for (int i = 5; i <= 8; i++)
		CHECK_EQ_U(done_count[i], 1);
	CHECK(!store_busy(st));
	store_close(st);

	/* A batch in the next segment waits until the earlier segment's
	 * commits are back (recovery's proof that damage in a sealed segment
	 * is not a torn write). */
	fresh_dir(dir, sizeof(dir), mode == STORE_IO_DIRECT ? "inflight-direct-roll" : "inflight-roll");
	st = open_ok(&cfg, &rs);
	reset_done();
	const size_t body = 300000; /* three per 1 MiB segment */
	REQUIRE(rec_add(st, 0, body) == 0);
	REQUIRE(plan_and_run(st, &a));
	REQUIRE(rec_add(st, 1, body) == 0);
	REQUIRE(rec_add(st, 2, body) == 0);
	REQUIRE(plan_and_run(st, &b));
	CHECK(b.step[0].fd == a.step[0].fd);
	rc = rec_add(st, 3, body);
	if (rc == -EAGAIN) {
		provide_spare(st);
		rc = rec_add(st, 3, body);
	}
	REQUIRE(rc == 0);
	CHECK(!plan_and_run(st, &c)); /* the next segment: waits for a and b */
	CHECK(store_commit_advance(st, &b, on_done_ordered, NULL) == 0);
	CHECK(!plan_and_run(st, &c)); /* a still in flight */
	CHECK(store_commit_advance(st, &a, on_done_ordered, NULL) == 0);
	REQUIRE(plan_and_run(st, &c));
	CHECK(c.step[0].fd != a.step[0].fd);
	CHECK_EQ_U(c.step[0].offset, SEGMENT_HEADER_BYTES);
	CHECK(store_commit_advance(st, &c, on_done_ordered, NULL) == 0);
	for (int k = 0; k < 4; k++)
		CHECK(done_count[k] == 1 && done_result[k] == 0);
	close_retired(st);
	store_close(st);
	uint64_t ids[8];
	CHECK_EQ_U(find_all(dir, 5, ids, 8, NULL), 4);
	for (int k = 0; k < 9; k++)
		rec_free(&recs[k]);

	/* Out of range: refused at start-up. */
	cfg.commits_in_flight = STORE_COMMITS_IN_FLIGHT_MAX + 1;
	CHECK(store_open(&cfg, &st, &rs, err, sizeof(err)) == -EINVAL);
}

int main(void)
{
	REQUIRE(mkdtemp(tmp_root) != NULL);
	test_round_trip();
	test_group_commit();
	test_commit_plan();
	test_batch_bounds();
	test_rollover();
	test_fault_injection();
	test_store_full();
	test_no_spare_refuses_record();
	test_torn_tail();
	test_corruption_quarantined();
	test_forged_record_not_recovered();
	test_sealed_damage_alarm();
	test_format_refused();
	test_list_shards_and_args();
	test_random_interleavings();
	test_segment_size_change();
	test_leftover_shard();
	test_direct_commits();
	test_direct_fallback();
	test_commits_in_flight(STORE_IO_BUFFERED);
	test_commits_in_flight(STORE_IO_DIRECT);
	rm_rf(tmp_root);
	return test_main_end("store");
}
