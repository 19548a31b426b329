/*
 * test_store_crashsim.c - the store's promise under crashes: every message
 * whose 250 was sent (its commit completed) survives a crash at any step,
 * with its exact bytes.
 *
 * The test plays core/: a workload of messages of mixed sizes (some a fifth
 * of a segment, so segments roll over) is reserved and appended, group
 * commits are planned by the store and spares made by storage's
 * segment_make machine, and every plan runs through crashsim_io.h's
 * executor, which keeps unsynced writes and directory changes apart. After
 * every step (the crash point) the disk a crash there could leave is
 * written to a scratch shard (unsynced writes dropped, or torn at a random
 * byte, or torn with bits flipped; pending names kept or not), the store's
 * real recovery (store_open) runs on it, and every message acknowledged
 * before that point is read back by its queue id and compared byte for
 * byte with what was sent. Right after a batch's 250s go out is a crash
 * point of its own.
 *
 * The same again with direct commits (store_io = direct: one O_DIRECT
 * write with RWF_DSYNC per batch, padded to a block), where a file system
 * here takes O_DIRECT: a crash while such a write is in flight keeps any
 * subset of its sectors (crashsim_io.h), so every direct write is a crash
 * point of its own as well.
 *
 * Then with commits_in_flight = 3 (store.h), buffered and direct: each
 * turn every commit the store hands out is planned, and one commit in
 * flight, drawn at random, advances by a step (by none or a few at times),
 * so their steps interleave and their results come back in any order;
 * a direct write's issue and completion are two steps, and only its
 * completion makes it durable. Crashes there keep the pending writes of a
 * file in no order (crashsim_io.h's unordered mode). The runs check that
 * the overlap really happened: crash points with two or more commits in
 * flight, files holding two or more unsynced writes, commits completed
 * before an older one.
 *
 * Control runs must be caught losing mail, which proves the check can
 * fail: fsync = never (buffered and direct, and buffered with three
 * commits in flight), whose 250 goes out with nothing synced; a synced
 * store whose 250 goes out once a batch is written, before its fdatasync
 * completes; and, with three commits in flight, a driver that reports each
 * completion as the oldest commit's (store_commit_done, as if results came
 * back in order), so a batch is acknowledged when a newer one is durable.
 * (A batch acknowledged as soon as its own commit completes, older ones
 * still in flight, loses nothing here: recovery steps over a torn older
 * batch to the records after it, so it is no control.) The workload and
 * the crashes are drawn from one seed (RINGMX_CRASHSIM_SEED to replay one;
 * printed either way).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "../storage/segment.h"
#include "../storage/segment_make.h"
#include "../storage/store.h"
#include "../storage/store_recover.h"
#include "crashsim_io.h"
#include "test.h"
#include "test_util.h"

#define SEG_BYTES SEGMENT_SIZE_MIN_BYTES
#define WORKER 5
#define MESSAGES 300

struct message {
	struct bytebuf env;
	uint8_t *body;
	size_t body_len;
	struct record_header h;
	struct iovec parts[RECORD_SEALED_PARTS];
	uint64_t id;
	bool acked; /* its commit completed: the 250 went out */
};

/* A group commit in flight: its plan, its progress through the crash
 * model, and the messages of its batch (msg[first..first+count)). */
struct flight {
	struct io_plan p;
	struct crashsim_plan_run pr;
	int first;
	uint32_t count;
	struct iovec *copy; /* fifo_ack: the batch's bytes, one iovec and its data */
};

struct run {
	bool fsync;
	enum store_io_mode io_mode;
	bool skipped;        /* direct commits refused by every file system tried */
	uint64_t direct_in_flight; /* crash points inside an O_DIRECT write */
	uint64_t commits;    /* group commits that completed */
	bool early_ack;      /* control: a batch counts as acknowledged once written */
	uint32_t commits_in_flight; /* 0: one plan at a time (commit_one); else the store's */
	bool fifo_ack;       /* control: each completion reported as the oldest commit's */
	uint64_t seed;
	uint64_t workload_rng;
	uint64_t crash_rng;
	char dir[256];       /* the workload's data directory */
	char crash_root[256];
	struct store *st;
	struct crashsim cs;
	struct message msg[MESSAGES];
	unsigned acked_count;
	struct flight flight[STORE_COMMITS_IN_FLIGHT_MAX]; /* oldest first */
	uint32_t flying;
	int next_planned;    /* the first message of the next batch handed out */
	/* Findings, over every crash point. */
	unsigned crash_points;
	unsigned by_kind[CRASH_KINDS];
	unsigned names_kept;          /* pending names a crash kept */
	unsigned points_with_pending; /* crash points with unsynced writes */
	unsigned points_writes_many;  /* crash points with a file holding 2+ unsynced writes */
	unsigned recoveries_failed;
	unsigned messages_lost;  /* acknowledged, then missing or damaged after a crash */
	unsigned points_losing;  /* crash points that lost at least one */
	uint64_t first_losing_point;
	unsigned points_overlapped;        /* crash points with >= 2 commits in flight */
	unsigned completions_out_of_order; /* a commit completed before an older one */
	bool verbose;
};

static char tmp_root[] = "/tmp/rmx-crashsim-XXXXXX";
/* The workload and its crashed shards sync often: in memory when /dev/shm
 * is there, where a sync costs nothing (the model does not depend on the
 * file system; on tmpfs spares are zero-filled without O_DIRECT). */
static char shm_root[] = "/dev/shm/rmx-crashsim-XXXXXX";
static const char *crash_base = tmp_root;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path) == 0 ? 0 : -1;
}

/* rm -rf without a fork (forking a sanitized process is slow, and this runs
 * at every crash point). */
static void rm_rf(const char *path)
{
	struct stat sb;
	if (lstat(path, &sb) != 0 && errno == ENOENT)
		return;
	REQUIRE(nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
}

static struct store_config config(const char *dir, bool fsync, enum store_io_mode io_mode,
				   uint32_t commits_in_flight)
{
	return (struct store_config){
		.commits_in_flight = commits_in_flight,
		.data_dir = dir,
		.worker = WORKER,
		.segment_size_bytes = SEG_BYTES,
		.store_max_bytes = 1024ull * SEG_BYTES,
		.fsync = fsync,
		.io_mode = io_mode,
	};
}

/* Message i: mostly small, some tens of KiB, a few a fifth of a segment. */
static void message_make(struct run *r, int i)
{
	struct message *m = &r->msg[i];
	uint64_t pick = test_xorshift64star(&r->workload_rng) % 100;
	uint64_t n = test_xorshift64star(&r->workload_rng);
	m->body_len = pick < 70 ? 100 + n % 3000 : pick < 95 ? 4000 + n % 40000 : 100000 + n % 110000;
	m->body = malloc(m->body_len);
	REQUIRE(m->body != NULL);
	uint64_t fill = r->seed ^ (uint64_t)i * 0x9E3779B97F4A7C15ull;
	for (size_t k = 0; k < m->body_len; k++)
		m->body[k] = (uint8_t)test_xorshift64(&fill);
	char rcpt[64];
	int len = snprintf(rcpt, sizeof rcpt, "user%d@example.org", i);
	REQUIRE(record_env_put(&m->env, RECORD_TAG_REVERSE_PATH, span_make("s@example.net", 13)) == 0);
	REQUIRE(record_env_put(&m->env, RECORD_TAG_RECIPIENT, span_make(rcpt, (size_t)len)) == 0);
}

/* Reserves and appends message i (cookie i): 0, or store_reserve's -EAGAIN. */
static int message_add(struct run *r, int i)
{
	struct message *m = &r->msg[i];
	uint64_t padded = record_padded_length(m->env.len, m->body_len);
	int rc = store_reserve(r->st, padded, &m->id);
	if (rc != 0)
		return rc;
	record_seal_parts(&m->h, m->id, 1700000000000ll + i, span_make(m->env.data, m->env.len),
			  (struct iovec){ m->body, m->body_len }, m->parts);
	REQUIRE(store_append(r->st, m->id, m->parts, RECORD_SEALED_PARTS, (uint64_t)i) == 0);
	return 0;
}

static void on_done(void *ctx, uint64_t cookie, int result)
{
	struct run *r = ctx;
	REQUIRE(cookie < MESSAGES && result == 0 && !r->msg[cookie].acked);
	r->msg[cookie].acked = true;
	r->acked_count++;
}

/* Segment files of a recovered shard, each mapped once per crash point. */
#define SEGMENT_MAPS_MAX 64
struct segment_maps {
	int dir_fd;
	struct segment_map map[SEGMENT_MAPS_MAX];
	int8_t state[SEGMENT_MAPS_MAX]; /* 0 not tried, 1 mapped, -1 missing */
};

static void segment_maps_init(struct segment_maps *m, const char *shard_dir)
{
	memset(m, 0, sizeof(*m));
	m->dir_fd = open(shard_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	REQUIRE(m->dir_fd >= 0);
}

static void segment_maps_close(struct segment_maps *m)
{
	for (int i = 0; i < SEGMENT_MAPS_MAX; i++)
		if (m->state[i] == 1)
			segment_map_close(&m->map[i], false);
	close(m->dir_fd);
}

static const struct segment_map *segment_mapped(struct segment_maps *m, uint32_t seq)
{
	REQUIRE(seq < SEGMENT_MAPS_MAX);
	if (m->state[seq] == 0)
		m->state[seq] = segment_map_open(m->dir_fd, seq, false, &m->map[seq]) == 0 ? 1 : -1;
	return m->state[seq] == 1 ? &m->map[seq] : NULL;
}

/* Whether message m reads back intact from the recovered shard st: its
 * record at its queue id checks, with its exact bytes. */
static bool message_intact(const struct message *m, struct store *st, struct segment_maps *maps)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(m->id, &worker, &seq, &offset);
	const struct segment_map *sm = segment_mapped(maps, seq);
	if (sm == NULL || sm->image == NULL || offset >= sm->size_bytes)
		return false;
	struct record_view v;
	return store_record_check(st, m->id, sm->image + offset, sm->size_bytes - offset, &v) ==
		       RECORD_OK &&
	       v.header.queue_id == m->id && v.envelope.len == m->env.len &&
	       memcmp(v.envelope.ptr, m->env.data, m->env.len) == 0 &&
	       v.body.len == m->body_len && memcmp(v.body.ptr, m->body, m->body_len) == 0;
}

/*
 * The crash point after `steps` steps: build the crashed shard, recover it
 * with store_open, and check every message acknowledged so far.
 */
static void crash_here(void *ctx, uint64_t steps)
{
	struct run *r = ctx;
	enum crashsim_kind kind = (enum crashsim_kind)(test_xorshift64star(&r->crash_rng) % CRASH_KINDS);
	bool names_survive = test_xorshift64star(&r->crash_rng) % 3 == 0;
	char data_dir[300], shard[320];
	snprintf(data_dir, sizeof data_dir, "%s/crash", r->crash_root);
	snprintf(shard, sizeof shard, "%s/w%u", data_dir, WORKER);
	rm_rf(data_dir);
	REQUIRE(mkdir(data_dir, 0700) == 0 && mkdir(shard, 0700) == 0);
	struct crashsim_crash_stats cst =
		crashsim_materialize(&r->cs, shard, kind, names_survive, &r->crash_rng);
	r->names_kept += cst.names_kept;
	r->points_with_pending += cst.files_pending > 0;
	r->points_writes_many += cst.files_writes_pending_many > 0;
	r->crash_points++;
	r->by_kind[kind]++;
	r->points_overlapped += r->flying >= 2;

	struct store_config cfg = config(data_dir, true, STORE_IO_BUFFERED, 0);
	struct store *st = NULL;
	struct store_recovery_stats rs;
	char err[512] = "";
	int rc = store_open(&cfg, &st, &rs, err, sizeof err);
	unsigned lost = 0;
	if (rc != 0) {
		r->recoveries_failed++;
		lost = r->acked_count;
		if (r->verbose)
			fprintf(stderr, "crash point %llu (%s%s): store_open %d: %s\n",
				(unsigned long long)steps, crashsim_kind_name(kind),
				names_survive ? ", names kept" : "", rc, err);
	} else {
		struct segment_maps maps;
		segment_maps_init(&maps, shard);
		for (int i = 0; i < MESSAGES; i++)
			if (r->msg[i].acked && !message_intact(&r->msg[i], st, &maps))
				lost++;
		segment_maps_close(&maps);
		store_close(st);
	}
	if (lost > 0) {
		if (r->points_losing == 0)
			r->first_losing_point = steps;
		r->points_losing++;
		r->messages_lost += lost;
		if (r->verbose && rc == 0)
			fprintf(stderr, "crash point %llu (%s%s): %u of %u acknowledged messages lost\n",
				(unsigned long long)steps, crashsim_kind_name(kind),
				names_survive ? ", names kept" : "", lost, r->acked_count);
	}
}

/* A spare, as core/ makes it: storage's machine, its plans run through the
 * crash model; its delivery log's fd is closed (no queue here). */
static void make_spare(struct run *r, uint8_t *zero_chunk)
{
	const char *path;
	uint32_t seq;
	if (!store_spare_wanted(r->st, 0, &path, &seq))
		return;
	const uint64_t zeros_bytes = SEGMENT_ZERO_CHUNK_BYTES - SEGMENT_HEADER_BYTES;
	uint64_t salt = test_xorshift64star(&r->workload_rng);
	store_spare_header(r->st, salt, zero_chunk + zeros_bytes);
	struct segment_make_config mc = {
		.dir_fd = store_dir_fd(r->st),
		.size_bytes = SEG_BYTES,
		.header = zero_chunk + zeros_bytes,
		.zeros = zero_chunk,
		.zeros_bytes = zeros_bytes,
		.sync = r->fsync,
		.with_log = true,
		.keep_direct = store_commits_direct(r->st),
	};
	struct segment_make mk;
	segment_make_start(&mk, &mc, seq);
	struct io_plan p;
	while (segment_make_plan(&mk, &p)) {
		crashsim_run(&r->cs, &p);
		segment_make_advance(&mk, &p);
	}
	REQUIRE(mk.error == 0);
	if (mk.log_fd >= 0) {
		crashsim_forget_fd(&r->cs, mk.log_fd);
		close(mk.log_fd);
	}
	if (mk.direct)
		store_spare_ready_direct(r->st, seq, mk.fd);
	else
		store_spare_ready(r->st, seq, mk.fd);
}

/* The early control's acknowledgement: the batch's messages are taken as
 * acknowledged when its write completes (before its fdatasync); the
 * store's own report then finds them acknowledged already. */
static void on_done_early(void *ctx, uint64_t cookie, int result)
{
	struct run *r = ctx;
	REQUIRE(cookie < MESSAGES && result == 0);
	if (!r->msg[cookie].acked) {
		r->msg[cookie].acked = true;
		r->acked_count++;
	}
}

/* Marks acknowledged every unacknowledged message that write w (a batch:
 * one contiguous range of one segment, starting at its first record) put
 * on disk. */
static void ack_written(struct run *r, const struct io_step *w)
{
	uint32_t worker, seq = 0, s;
	uint64_t offset;
	for (int i = 0; i < MESSAGES; i++) {
		queue_id_split(r->msg[i].id, &worker, &s, &offset);
		if (!r->msg[i].acked && r->msg[i].id != 0 && offset == w->offset)
			seq = s;
	}
	REQUIRE(seq != 0);
	for (int i = 0; i < MESSAGES; i++) {
		queue_id_split(r->msg[i].id, &worker, &s, &offset);
		if (!r->msg[i].acked && r->msg[i].id != 0 && s == seq && offset >= w->offset &&
		    offset < w->offset + w->len)
			on_done_early(r, (uint64_t)i, 0);
	}
}

/* One group commit through the crash model. In the early control the
 * write and the sync run as two plans, and the batch counts as
 * acknowledged between them. */
static bool commit_one(struct run *r)
{
	struct io_plan p;
	uint32_t records;
	if (!store_commit_plan(r->st, &p, &records))
		return false;
	if (!r->early_ack) {
		crashsim_run(&r->cs, &p);
		REQUIRE(store_commit_advance(r->st, &p, on_done, r) == 0);
		crash_here(r, r->cs.steps); /* the 250s went out: a crash now */
		return true;
	}
	REQUIRE(p.count == 2 && p.step[0].op == IO_STEP_WRITEV && p.step[1].op == IO_STEP_FDATASYNC);
	for (uint32_t k = 0; k < 2; k++) {
		struct io_plan one;
		io_plan_clear(&one);
		*io_plan_add(&one, p.step[k].op, p.step[k].fd) = p.step[k];
		one.step[0].link = false;
		crashsim_run(&r->cs, &one);
		p.result[k] = one.result[0];
		REQUIRE(io_step_outcome(&p.step[k], p.result[k]) == 0);
		if (k == 0) {
			ack_written(r, &p.step[0]);
			crash_here(r, r->cs.steps); /* the early 250s went out: a crash now */
		}
	}
	p.pending = 0;
	REQUIRE(store_commit_advance(r->st, &p, on_done_early, r) == 0);
	return true;
}

/* A commit in flight whose last step completed: out of the list, its
 * result to the store (or, in the controls, acknowledged its wrong way),
 * and the 250s that went out make a crash point. */
static void flight_done(struct run *r, uint32_t i)
{
	struct flight f = r->flight[i];
	memmove(&r->flight[i], &r->flight[i + 1], (r->flying - i - 1) * sizeof(r->flight[0]));
	r->flying--;
	r->completions_out_of_order += i > 0; /* an older commit is still in flight */
	/* The batch's messages lie in the range its write covered. */
	const struct io_step *w = &f.p.step[0];
	for (uint32_t k = 0; k < f.count; k++) {
		uint32_t worker, seq;
		uint64_t offset;
		queue_id_split(r->msg[f.first + (int)k].id, &worker, &seq, &offset);
		REQUIRE(offset >= w->offset && offset < w->offset + w->len);
	}
	if (r->fifo_ack) {
		int result = io_step_outcome(w, f.p.result[0]);
		if (result == 0 && f.p.count > 1)
			result = io_step_outcome(&f.p.step[1], f.p.result[1]);
		REQUIRE(result == 0);
		store_commit_done(r->st, result, on_done, r);
	} else {
		REQUIRE(store_commit_advance(r->st, &f.p, on_done, r) == 0);
	}
	free(f.copy);
	crash_here(r, r->cs.steps);
}

/* The fifo control answers the wrong batch, whose slot the store then
 * reuses while that batch's own write may not have run: the write gets a
 * copy of the batch taken now, so the control shows the wrong
 * acknowledgement and nothing else. */
static void flight_copy(struct flight *f)
{
	struct io_step *w = &f->p.step[0];
	REQUIRE(w->op == IO_STEP_WRITEV);
	f->copy = malloc(sizeof(struct iovec) + (w->len ? w->len : 1));
	REQUIRE(f->copy != NULL);
	uint8_t *data = (uint8_t *)(f->copy + 1);
	size_t at = 0;
	for (int k = 0; k < w->iovcnt; k++) {
		memcpy(data + at, w->iov[k].iov_base, w->iov[k].iov_len);
		at += w->iov[k].iov_len;
	}
	REQUIRE(at == w->len);
	*f->copy = (struct iovec){ data, at };
	w->iov = f->copy;
	w->iovcnt = 1;
}

/*
 * One turn of commits in flight: every commit the store hands out is
 * planned, then one of those in flight, drawn at random, advances by a
 * step, sometimes by none or a few; its last step hands its result to the
 * store.
 */
static void commits_turn(struct run *r)
{
	struct flight *f;
	uint32_t records;
	while (r->flying < STORE_COMMITS_IN_FLIGHT_MAX &&
	       store_commit_plan(r->st, &(f = &r->flight[r->flying])->p, &records)) {
		crashsim_plan_start(&f->pr);
		f->copy = NULL;
		if (r->fifo_ack)
			flight_copy(f);
		f->first = r->next_planned;
		f->count = records;
		r->next_planned += (int)records;
		r->flying++;
	}
	REQUIRE(r->flying <= r->commits_in_flight);
	if (r->flying == 0)
		return;
	uint32_t i = (uint32_t)(test_xorshift64star(&r->workload_rng) % r->flying);
	/* None at times, so that commits pile up even when a plan is one step. */
	unsigned steps = (unsigned[]){ 0, 1, 1, 3 }[test_xorshift64star(&r->workload_rng) % 4];
	for (unsigned k = 0; k < steps; k++) {
		if (!crashsim_step(&r->cs, &r->flight[i].p, &r->flight[i].pr)) {
			flight_done(r, i);
			return;
		}
	}
}

static void close_retired(struct run *r)
{
	for (int fd; (fd = store_retired_fd(r->st)) >= 0;) {
		crashsim_forget_fd(&r->cs, fd);
		close(fd);
	}
}

/*
 * The workload: bursts of 1-4 messages, then a spare if one is wanted, then
 * one group commit, until every message is acknowledged. Every step of it
 * is a crash point.
 */
static void run_workload(struct run *r, const char *name)
{
	const char *base = crash_base;
again:
	snprintf(r->dir, sizeof r->dir, "%s/%s", base, name);
	snprintf(r->crash_root, sizeof r->crash_root, "%s/%s-crash", crash_base, name);
	rm_rf(r->dir);
	rm_rf(r->crash_root);
	REQUIRE(mkdir(r->crash_root, 0700) == 0);
	r->workload_rng = r->seed;
	r->crash_rng = r->seed ^ 0xC2B2AE3D27D4EB4Full;
	for (int i = 0; i < MESSAGES; i++)
		message_make(r, i);

	struct store_config cfg = config(r->dir, r->fsync, r->io_mode, r->commits_in_flight);
	struct store_recovery_stats rs;
	char err[512] = "";
	int rc = store_open(&cfg, &r->st, &rs, err, sizeof err);
	if (rc == -EINVAL && r->io_mode == STORE_IO_DIRECT) {
		/* tmpfs before Linux 6.6 refuses O_DIRECT: the disk's, then none. */
		for (int i = 0; i < MESSAGES; i++) {
			bytebuf_free(&r->msg[i].env);
			free(r->msg[i].body);
		}
		memset(r->msg, 0, sizeof(r->msg));
		rm_rf(r->dir);
		rm_rf(r->crash_root);
		if (base != tmp_root) {
			base = tmp_root;
			goto again;
		}
		printf("%s: skipped: %s\n", name, err);
		r->skipped = true;
		return;
	}
	if (rc != 0)
		fprintf(stderr, "store_open: %d %s\n", rc, err);
	REQUIRE(rc == 0);
	REQUIRE((rs.io_mode == STORE_IO_DIRECT) == (r->io_mode == STORE_IO_DIRECT));
	crashsim_init(&r->cs, store_dir_fd(r->st));
	r->cs.after_step = crash_here;
	r->cs.ctx = r;
	r->cs.unordered = r->commits_in_flight > 1;
	r->flying = 0;
	r->next_planned = 0;

	uint8_t *zero_chunk = aligned_alloc(4096, SEGMENT_ZERO_CHUNK_BYTES);
	REQUIRE(zero_chunk != NULL);
	memset(zero_chunk, 0, SEGMENT_ZERO_CHUNK_BYTES);
	int next = 0;
	unsigned turns = 0;
	while (next < MESSAGES || store_busy(r->st) || r->flying > 0) {
		REQUIRE(++turns < 100 * MESSAGES);
		unsigned burst = 1 + (unsigned)(test_xorshift64star(&r->workload_rng) % 4);
		for (unsigned k = 0; k < burst && next < MESSAGES; k++) {
			rc = message_add(r, next);
			if (rc == -EAGAIN)
				break; /* a spare or a commit first */
			REQUIRE(rc == 0);
			next++;
		}
		make_spare(r, zero_chunk);
		if (r->commits_in_flight > 1)
			commits_turn(r);
		else
			commit_one(r);
		close_retired(r);
	}
	free(zero_chunk);
	struct store_stats ss;
	store_get_stats(r->st, &ss);
	printf("%s: seed %llu, %d messages in %u segments, %llu commits, %llu steps, %u crash "
	       "points, %llu inside direct writes (drop %u, tear %u, tear+flip %u; %u with "
	       "unsynced writes, %u unsynced names "
	       "kept): %u failed recoveries, %u crash points lost %u acknowledged messages\n",
	       name, (unsigned long long)r->seed, MESSAGES, ss.segments,
	       (unsigned long long)ss.commits, (unsigned long long)r->cs.steps, r->crash_points,
	       (unsigned long long)r->cs.direct_in_flight,
	       r->by_kind[CRASH_DROP], r->by_kind[CRASH_TEAR], r->by_kind[CRASH_TEAR_FLIP],
	       r->points_with_pending, r->names_kept,
	       r->recoveries_failed, r->points_losing, r->messages_lost);
	if (r->commits_in_flight > 1)
		printf("%s: %u commits in flight at most: %u crash points with two or more in flight, "
		       "%u with a file holding two or more unsynced writes (unordered), %u commits "
		       "completed before an older one\n",
		       name, r->commits_in_flight, r->points_overlapped, r->points_writes_many,
		       r->completions_out_of_order);
	store_close(r->st);
	r->direct_in_flight = r->cs.direct_in_flight;
	r->commits = ss.commits;
	crashsim_free(&r->cs);
	for (int i = 0; i < MESSAGES; i++) {
		bytebuf_free(&r->msg[i].env);
		free(r->msg[i].body);
	}
	rm_rf(r->dir);
	rm_rf(r->crash_root);
}

static uint64_t seed_from_env(void)
{
	const char *s = getenv("RINGMX_CRASHSIM_SEED");
	if (s && *s)
		return strtoull(s, NULL, 0);
	return 0x5EED0F12C0FFEEull;
}

static struct run runs[9]; /* large: not on the stack */

int main(void)
{
	REQUIRE(mkdtemp(tmp_root) != NULL);
	if (mkdtemp(shm_root) != NULL)
		crash_base = shm_root;
	uint64_t seed = seed_from_env();

	/* The store as it runs: an acknowledged message survives every crash. */
	struct run *r = &runs[0];
	r->fsync = true;
	r->seed = seed;
	r->verbose = true;
	run_workload(r, "synced");
	CHECK_EQ_U(r->acked_count, MESSAGES);
	CHECK(r->crash_points >= 2 * MESSAGES / 3);
	CHECK(r->by_kind[CRASH_DROP] > 0 && r->by_kind[CRASH_TEAR] > 0 &&
	      r->by_kind[CRASH_TEAR_FLIP] > 0);
	CHECK_EQ_U(r->recoveries_failed, 0);
	CHECK_EQ_U(r->messages_lost, 0);

	/* Control: acknowledged before any sync. The checker must see it lose
	 * mail, or it could not fail at all. */
	struct run *c = &runs[1];
	c->fsync = false;
	c->seed = seed;
	run_workload(c, "control");
	CHECK_EQ_U(c->acked_count, MESSAGES);
	CHECK(c->points_losing > 0);
	CHECK(c->messages_lost > 0);
	if (c->points_losing > 0)
		printf("control: the first loss at crash point %llu\n",
		       (unsigned long long)c->first_losing_point);

	/* Control: synced, but the 250 goes out once the write completes,
	 * before its fdatasync: a crash between the two must be caught. */
	struct run *e = &runs[2];
	e->fsync = true;
	e->early_ack = true;
	e->seed = seed;
	run_workload(e, "early-ack");
	CHECK_EQ_U(e->acked_count, MESSAGES);
	CHECK(e->points_losing > 0);
	CHECK(e->messages_lost > 0);
	CHECK_EQ_U(e->recoveries_failed, 0);

	/* Direct commits: the same promise, with torn sectors inside every
	 * write; and their control, acknowledged with nothing synced. */
	struct run *d = &runs[3];
	d->fsync = true;
	d->io_mode = STORE_IO_DIRECT;
	d->seed = seed;
	d->verbose = true;
	run_workload(d, "direct");
	if (!d->skipped) {
		CHECK_EQ_U(d->acked_count, MESSAGES);
		CHECK(d->direct_in_flight > MESSAGES / 4); /* one per commit */
		CHECK(d->by_kind[CRASH_DROP] > 0 && d->by_kind[CRASH_TEAR] > 0 &&
		      d->by_kind[CRASH_TEAR_FLIP] > 0);
		CHECK_EQ_U(d->recoveries_failed, 0);
		CHECK_EQ_U(d->messages_lost, 0);

		struct run *dc = &runs[4];
		dc->fsync = false;
		dc->io_mode = STORE_IO_DIRECT;
		dc->seed = seed;
		run_workload(dc, "direct-control");
		CHECK_EQ_U(dc->acked_count, MESSAGES);
		CHECK(dc->points_losing > 0);
		CHECK(dc->messages_lost > 0);
	}

	/* Three commits in flight, completing in a random order, crashes
	 * keeping pending writes in no order: the same promise, buffered and
	 * direct, with overlap that really happened. */
	struct run *s3 = &runs[5];
	s3->fsync = true;
	s3->commits_in_flight = 3;
	s3->seed = seed;
	s3->verbose = true;
	run_workload(s3, "synced-3");
	CHECK_EQ_U(s3->acked_count, MESSAGES);
	CHECK(s3->by_kind[CRASH_DROP] > 0 && s3->by_kind[CRASH_TEAR] > 0 &&
	      s3->by_kind[CRASH_TEAR_FLIP] > 0);
	CHECK(s3->points_overlapped > MESSAGES / 4);
	CHECK(s3->points_writes_many > 0);
	CHECK(s3->completions_out_of_order > 0);
	CHECK_EQ_U(s3->recoveries_failed, 0);
	CHECK_EQ_U(s3->messages_lost, 0);

	struct run *d3 = &runs[6];
	d3->fsync = true;
	d3->io_mode = STORE_IO_DIRECT;
	d3->commits_in_flight = 3;
	d3->seed = seed;
	d3->verbose = true;
	run_workload(d3, "direct-3");
	if (!d3->skipped) {
		CHECK_EQ_U(d3->acked_count, MESSAGES);
		CHECK(d3->direct_in_flight >= d3->commits); /* one inside each commit */
		CHECK(d3->points_overlapped > MESSAGES / 4);
		CHECK(d3->points_writes_many > 0);
		CHECK(d3->completions_out_of_order > 0);
		CHECK_EQ_U(d3->recoveries_failed, 0);
		CHECK_EQ_U(d3->messages_lost, 0);
	}

	/* Controls with commits in flight: each completion reported as the
	 * oldest commit's (a driver that takes results to come back in
	 * order), and fsync = never. Both must be caught losing mail. */
	struct run *f3 = &runs[7];
	f3->fsync = true;
	f3->commits_in_flight = 3;
	f3->fifo_ack = true;
	f3->seed = seed;
	run_workload(f3, "fifo-ack-3");
	CHECK_EQ_U(f3->acked_count, MESSAGES);
	CHECK(f3->completions_out_of_order > 0);
	CHECK(f3->points_losing > 0);
	CHECK(f3->messages_lost > 0);

	struct run *n3 = &runs[8];
	n3->fsync = false;
	n3->commits_in_flight = 3;
	n3->seed = seed;
	run_workload(n3, "control-3");
	CHECK_EQ_U(n3->acked_count, MESSAGES);
	CHECK(n3->points_overlapped > MESSAGES / 4);
	CHECK(n3->points_losing > 0);
	CHECK(n3->messages_lost > 0);

	rm_rf(tmp_root);
	if (crash_base == shm_root)
		rm_rf(shm_root);
	return test_main_end("test_store_crashsim");
}
