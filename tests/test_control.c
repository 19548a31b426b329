/*
 * test_control.c - operator requests: the queue's requeue and delete
 * operations (queue_make_due, queue_make_all_due, queue_delete and the id
 * index behind them) and core/control applying request files to a queue
 * built with queue_new + queue_add (no daemon, no store).
 *
 * The queue side is checked against a model of due times under random
 * operations (adds, requeues, deletes, pops, attempts), including the log
 * entries it hands out. The file side covers request files with good,
 * unknown, busy and malformed lines, files that are too large, symlinks,
 * FIFOs, temporary and foreign names, more files than one batch, and a
 * shard without a control directory. On a real shard (store + delivery
 * logs): a requeue and a delete survive a restart, and the offline
 * requeue of a whole shard needs the shard lock and moves exactly the
 * messages not yet due; one message is found in its segment alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../core/control.h"
#include "../common/bounds.h"
#include "../storage/queue.h"
#include "../storage/queue_recover.h"
#include "../storage/record.h"
#include "../storage/store.h"
#include "../storage/store_recover.h"
#include "../tools/queue_offline.h"
#include "test.h"

#define W 1
#define FAKE_FD_BASE 1000 /* log fds handed to the queue, never written */
#define SEQS 4
#define PADDED 4096
#define LOG_ENTRIES_MAX 200000

static struct queue_config cfg_make(void)
{
	struct queue_config c = {
		.data_dir = NULL,
		.worker = W,
		.retry_min_ms = 1000,
		.retry_max_ms = 8000,
		.max_lifetime_ms = 1000000000,
		.fsync = true,
		.jitter_seed = 777,
		.now_unix_ms = 0,
	};
	return c;
}

static struct queue *new_queue(void)
{
	struct queue_config c = cfg_make();
	struct queue *q = NULL;
	REQUIRE(queue_new(&c, &q) == 0);
	for (uint32_t seq = 1; seq <= SEQS; seq++)
		REQUIRE(queue_dlog_ready(q, seq, FAKE_FD_BASE + (int)seq) == 0);
	return q;
}

static uint64_t qid(uint32_t seq, uint64_t n)
{
	return queue_id_make(W, seq, n * PADDED);
}

/* Every log entry the queue handed out, in commit order, all segments. */
static struct delivery_log_entry logged[LOG_ENTRIES_MAX];
static size_t logged_count;

static void flush(struct queue *q)
{
	struct queue_commit c;
	while (queue_commit_begin(q, &c)) {
		for (uint32_t k = 0; k < c.count; k++) {
			const uint8_t *p = c.write[k].iov.iov_base;
			for (uint32_t i = 0; i < c.write[k].entries; i++) {
				REQUIRE(logged_count < LOG_ENTRIES_MAX);
				REQUIRE(delivery_log_entry_decode(p + (size_t)i * DELIVERY_LOG_ENTRY_BYTES,
							  &logged[logged_count]) == DELIVERY_LOG_OK);
				logged_count++;
			}
		}
		queue_commit_done(q, 0);
	}
}

/* Entries of type for queue_id logged from index from on. */
static uint32_t count_logged(size_t from, enum delivery_log_type type, uint64_t queue_id)
{
	uint32_t n = 0;
	for (size_t i = from; i < logged_count; i++)
		n += logged[i].type == type && logged[i].queue_id == queue_id;
	return n;
}

static void test_make_due_and_delete(void)
{
	struct queue *q = new_queue();
	logged_count = 0;
	/* Three messages due at 10, 5000 and 9000; one with 3 recipients. */
	REQUIRE(queue_add(q, qid(1, 0), PADDED, 1, 0, 10) == 0);
	REQUIRE(queue_add(q, qid(1, 1), PADDED, 3, 0, 5000) == 0);
	REQUIRE(queue_add(q, qid(2, 0), PADDED, 1, 0, 9000) == 0);
	CHECK(queue_add(q, qid(2, 0), PADDED, 1, 0, 9000) == -EINVAL); /* added twice */

	CHECK(queue_make_due(q, qid(3, 0), 100) == -ENOENT);
	CHECK(queue_make_due(q, queue_id_make(W + 1, 1, 0), 100) == -ENOENT);
	CHECK(queue_delete(q, qid(3, 0), 100) == -ENOENT);

	/* In flight: busy for both. */
	struct queue_msg *m = queue_next_due(q, 100);
	REQUIRE(m != NULL && queue_msg_id(m) == qid(1, 0));
	CHECK(queue_make_due(q, qid(1, 0), 100) == -EBUSY);
	CHECK(queue_delete(q, qid(1, 0), 100) == -EBUSY);

	/* A deferred message becomes due now; a REQUEUE entry is logged. */
	CHECK(queue_make_due(q, qid(2, 0), 200) == 0);
	CHECK(queue_next_due_time(q) == 200);
	/* Due already: nothing more logged. */
	CHECK(queue_make_due(q, qid(2, 0), 300) == 0);
	flush(q);
	CHECK_EQ_U(count_logged(0, DELIVERY_LOG_REQUEUE, qid(2, 0)), 1);
	CHECK(logged[0].rcpt == DELIVERY_LOG_RCPT_ALL && logged[0].time_unix_ms == 200);
	struct queue_msg *m2 = queue_next_due(q, 250);
	REQUIRE(m2 != NULL);
	CHECK(queue_msg_id(m2) == qid(2, 0));
	CHECK(queue_next_due(q, 250) == NULL); /* qid(1,1) still waits for 5000 */

	/* The first attempt on qid(1,0) ends with a 4xx: deferred, then
	 * deleted by the operator. */
	queue_outcome(q, m, 0, QUEUE_OUTCOME_TEMPFAIL, 451, delivery_log_enhanced_pack(4, 4, 1), 300);
	REQUIRE(queue_attempt_done(q, m, 300) == QUEUE_ATTEMPT_RETRY);
	struct queue_stats st;
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.messages, 3);
	CHECK_EQ_U(st.recipients_pending, 5);
	size_t mark = logged_count;
	CHECK(queue_delete(q, qid(1, 0), 400) == 0);
	CHECK(queue_delete(q, qid(1, 0), 400) == -ENOENT);
	CHECK(queue_make_due(q, qid(1, 0), 400) == -ENOENT);
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.messages, 2);
	CHECK_EQ_U(st.recipients_pending, 4);
	flush(q);
	CHECK_EQ_U(count_logged(mark, DELIVERY_LOG_DELETED, qid(1, 0)), 1);
	CHECK_EQ_U(count_logged(mark, DELIVERY_LOG_DEFERRED, qid(1, 0)), 1);
	for (size_t i = mark; i < logged_count; i++)
		if (logged[i].type == DELIVERY_LOG_DELETED)
			CHECK(logged[i].attempt == 1 && logged[i].rcpt == DELIVERY_LOG_RCPT_ALL);

	/* Delete of a partly delivered message: only pending ones change. */
	CHECK(queue_make_due(q, qid(1, 1), 500) == 0);
	struct queue_msg *m3 = queue_next_due(q, 500);
	REQUIRE(m3 != NULL && queue_msg_id(m3) == qid(1, 1));
	queue_outcome(q, m3, 1, QUEUE_OUTCOME_DELIVERED, 250, 0, 510);
	REQUIRE(queue_attempt_done(q, m3, 520) == QUEUE_ATTEMPT_RETRY);
	CHECK(queue_delete(q, qid(1, 1), 600) == 0);
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.recipients_pending, 1); /* qid(2,0), in flight */
	CHECK_EQ_U(st.delivered, 1);

	/* qid(2,0) delivered: segment 1 (sealed by segment 2) is reclaimable
	 * once the DELETED entries are durable. */
	queue_outcome(q, m2, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, 700);
	REQUIRE(queue_attempt_done(q, m2, 700) == QUEUE_ATTEMPT_DONE);
	uint32_t seq = 0;
	CHECK(!queue_reclaimable(q, &seq)); /* entries not yet committed */
	flush(q);
	CHECK(queue_reclaimable(q, &seq) && seq == 1);
	CHECK(queue_reclaimed(q, seq) == FAKE_FD_BASE + 1);
	queue_close(q);
}

static void test_make_all_due(void)
{
	struct queue *q = new_queue();
	logged_count = 0;
	for (uint64_t i = 0; i < 100; i++)
		REQUIRE(queue_add(q, qid(1, i), PADDED, 1, 0, (int64_t)(i % 10) * 1000) == 0);
	/* Due at 0 (ten of them) stay; the ninety later ones move to 500. */
	CHECK_EQ_U(queue_make_all_due(q, 500), 90);
	CHECK_EQ_U(queue_make_all_due(q, 500), 0);
	CHECK(queue_next_due_time(q) == 0);
	uint32_t popped = 0;
	int64_t last = -1;
	uint64_t last_id = 0;
	struct queue_msg *m;
	while ((m = queue_next_due(q, 500)) != NULL) {
		/* Order: the ten due at 0 by id, then the rest by id. */
		uint32_t worker, seq;
		uint64_t offset;
		queue_id_split(queue_msg_id(m), &worker, &seq, &offset);
		int64_t due = (offset / PADDED) % 10 == 0 ? 0 : 500;
		CHECK(due > last || (due == last && queue_msg_id(m) > last_id));
		last = due;
		last_id = queue_msg_id(m);
		popped++;
	}
	CHECK_EQ_U(popped, 100);
	flush(q);
	uint32_t requeues = 0;
	for (size_t i = 0; i < logged_count; i++)
		requeues += logged[i].type == DELIVERY_LOG_REQUEUE && logged[i].time_unix_ms == 500;
	CHECK_EQ_U(requeues, 90);
	queue_close(q);
}

/* xorshift64 for the random runs. */
static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

#define MODEL_MAX 6000
enum model_state { M_ABSENT, M_QUEUED, M_FLIGHT };

struct model {
	uint32_t flight[MODEL_MAX]; /* indexes of the messages in flight */
	uint32_t flight_count;
	uint8_t state[MODEL_MAX];
	int64_t due[MODEL_MAX];
	struct queue_msg *msg[MODEL_MAX];
};
static struct model model;

static uint64_t model_id(uint32_t i)
{
	/* Spread over the segments; ids collide in the index's low bits. */
	return qid(1 + i % SEQS, i / SEQS);
}

/* The message the model says is due first at now (by due time, then id). */
static int model_first_due(int64_t now)
{
	int best = -1;
	for (uint32_t i = 0; i < MODEL_MAX; i++) {
		if (model.state[i] != M_QUEUED || model.due[i] > now)
			continue;
		if (best < 0 || model.due[i] < model.due[best] ||
		    (model.due[i] == model.due[best] && model_id(i) < model_id((uint32_t)best)))
			best = (int)i;
	}
	return best;
}

static void test_random_against_model(void)
{
	struct queue *q = new_queue();
	memset(&model, 0, sizeof(model));
	int64_t now = 1000000;
	uint32_t held = 0, failures = 0;
	for (uint32_t step = 0; step < 60000; step++) {
		uint32_t i = (uint32_t)(rnd() % MODEL_MAX);
		uint64_t id = model_id(i);
		unsigned op = (unsigned)(rnd() % 100);
		now += (int64_t)(rnd() % 3);
		if (op < 35) {
			int64_t due = now + (int64_t)(rnd() % 100000) - 20000;
			int rc = queue_add(q, id, PADDED, 2, 0, due);
			if (model.state[i] == M_ABSENT) {
				failures += rc != 0;
				model.state[i] = M_QUEUED;
				model.due[i] = due;
				held++;
			} else {
				failures += rc != -EINVAL;
			}
		} else if (op < 50) {
			int rc = queue_make_due(q, id, now);
			int want = model.state[i] == M_ABSENT ? -ENOENT
				   : model.state[i] == M_FLIGHT ? -EBUSY : 0;
			failures += rc != want;
			if (want == 0 && model.due[i] > now)
				model.due[i] = now;
		} else if (op < 62) {
			int rc = queue_delete(q, id, now);
			int want = model.state[i] == M_ABSENT ? -ENOENT
				   : model.state[i] == M_FLIGHT ? -EBUSY : 0;
			failures += rc != want;
			if (want == 0) {
				model.state[i] = M_ABSENT;
				held--;
			}
		} else if (op < 80) {
			struct queue_msg *m = queue_next_due(q, now);
			int best = model_first_due(now);
			if (best < 0) {
				failures += m != NULL;
			} else if (m == NULL || queue_msg_id(m) != model_id((uint32_t)best)) {
				failures++;
			} else {
				model.state[best] = M_FLIGHT;
				model.msg[best] = m;
				model.flight[model.flight_count++] = (uint32_t)best;
			}
		} else if (op < 99) {
			/* End an attempt: delivered (freed) or deferred. */
			if (model.flight_count == 0)
				continue;
			uint32_t k = (uint32_t)(rnd() % model.flight_count);
			i = model.flight[k];
			model.flight[k] = model.flight[--model.flight_count];
			REQUIRE(model.state[i] == M_FLIGHT);
			struct queue_msg *m = model.msg[i];
			if (rnd() % 2) {
				queue_outcome(q, m, 0, QUEUE_OUTCOME_DELIVERED, 250, 0, now);
				queue_outcome(q, m, 1, QUEUE_OUTCOME_DELIVERED, 250, 0, now);
				failures += queue_attempt_done(q, m, now) != QUEUE_ATTEMPT_DONE;
				model.state[i] = M_ABSENT;
				held--;
			} else {
				int64_t due = now + 50;
				failures += queue_requeue(q, m, due) != QUEUE_ATTEMPT_RETRY;
				model.state[i] = M_QUEUED;
				model.due[i] = due;
			}
		} else {
			uint64_t moved = queue_make_all_due(q, now);
			uint64_t want = 0;
			for (uint32_t k = 0; k < MODEL_MAX; k++) {
				if (model.state[k] == M_QUEUED && model.due[k] > now) {
					model.due[k] = now;
					want++;
				}
			}
			failures += moved != want;
		}
		logged_count = 0;
		flush(q);
		struct queue_stats st;
		queue_get_stats(q, &st);
		failures += st.messages != held;
		if (failures > 0) {
			fprintf(stderr, "random run diverged at step %u (op %u)\n", step, op);
			break;
		}
	}
	CHECK_EQ_U(failures, 0);
	/* Everything left is found again by id. */
	uint32_t found = 0, expect = 0;
	for (uint32_t i = 0; i < MODEL_MAX; i++) {
		if (model.state[i] != M_QUEUED)
			continue;
		expect++;
		found += queue_make_due(q, model_id(i), now) == 0;
	}
	CHECK_EQ_U(found, expect);
	CHECK(expect > 100);
	logged_count = 0;
	flush(q);
	queue_close(q);
}

/* ---- request files ---- */

static char shard[PATH_MAX / 2];
static char control_dir[PATH_MAX];

static void write_request(const char *name, const char *text, size_t len)
{
	char path[PATH_MAX * 2];
	snprintf(path, sizeof(path), "%s/%s", control_dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	REQUIRE(write(fd, text, len) == (ssize_t)len);
	REQUIRE(close(fd) == 0);
}

static void write_text(const char *name, const char *text)
{
	write_request(name, text, strlen(text));
}

static bool exists(const char *name)
{
	char path[PATH_MAX * 2];
	snprintf(path, sizeof(path), "%s/%s", control_dir, name);
	struct stat sb;
	return lstat(path, &sb) == 0;
}

static void id_text(uint64_t id, char out[RECORD_QUEUE_ID_CHARS + 1])
{
	queue_id_format(id, out);
	out[RECORD_QUEUE_ID_CHARS] = '\0';
}

static void setup_shard(void)
{
	char tmpl[] = "/tmp/ringmx-test-control-XXXXXX";
	REQUIRE(mkdtemp(tmpl) != NULL);
	snprintf(shard, sizeof(shard), "%s/w%u", tmpl, (unsigned)W);
	REQUIRE(mkdir(shard, 0700) == 0);
	snprintf(control_dir, sizeof(control_dir), "%s/%s", shard, CONTROL_DIR_NAME);
}

static void test_no_control_dir(void)
{
	struct queue *q = new_queue();
	struct control_result r;
	memset(&r, 0xff, sizeof(r));
	CHECK(control_apply(q, shard, 0, &r) == 0);
	CHECK(r.files == 0 && r.applied == 0 && r.malformed == 0 && r.errors == 0);
	char missing[PATH_MAX + 16];
	snprintf(missing, sizeof(missing), "%s/nowhere", shard);
	CHECK(control_apply(q, missing, 0, &r) == 0);
	queue_close(q);
}

static void test_request_files(void)
{
	REQUIRE(mkdir(control_dir, 0700) == 0);
	struct queue *q = new_queue();
	logged_count = 0;
	/* a: due late; b: due late; c: in flight; d: due late, deleted. */
	uint64_t a = qid(1, 1), b = qid(1, 2), c = qid(2, 1), d = qid(3, 1);
	REQUIRE(queue_add(q, c, PADDED, 1, 0, 0) == 0);
	REQUIRE(queue_add(q, a, PADDED, 1, 0, 100000) == 0);
	REQUIRE(queue_add(q, b, PADDED, 1, 0, 200000) == 0);
	REQUIRE(queue_add(q, d, PADDED, 2, 0, 300000) == 0);
	struct queue_msg *inflight = queue_next_due(q, 0);
	REQUIRE(inflight != NULL && queue_msg_id(inflight) == c);

	char ta[17], tc[17], td[17], tu[17];
	id_text(a, ta);
	id_text(c, tc);
	id_text(d, td);
	id_text(qid(4, 9), tu); /* unknown */
	char text[1024];
	/* File 1: good lines, blanks, CRLF, a last line without LF. */
	snprintf(text, sizeof(text), "requeue %s\r\n\n  delete\t%s  \nrequeue %s\ndelete %s", ta,
		 td, tu, tc);
	write_text("0001-a.req", text);
	/* File 2: malformed lines between good ones; lower-case ids parse. */
	char lower[17];
	for (int i = 0; i < 16; i++)
		lower[i] = (char)(ta[i] >= 'A' && ta[i] <= 'F' ? ta[i] - 'A' + 'a' : ta[i]);
	lower[16] = '\0';
	snprintf(text, sizeof(text),
		 "frobnicate %s\nrequeue\nrequeue 123\ndelete all\nrequeue %s extra\n"
		 "REQUEUE %s\nrequeue %s\n#comment\nrequeue %sX\n",
		 ta, ta, ta, lower, ta);
	write_text("0002-b.req", text);
	/* File 3: binary garbage with NULs. */
	static const char garbage[] = "\x00\x01\xff requeue\x00" "all\n\x7f\x80\n";
	write_request("0003-c.req", garbage, sizeof(garbage) - 1);
	/* Files the worker must leave alone: temporary and foreign names. */
	write_text(".tmp-0004.req", "requeue all\n");
	write_text("0005.req.tmp", "requeue all\n");
	write_text("README", "requeue all\n");

	struct control_result r;
	CHECK(control_apply(q, shard, 1000, &r) == 0);
	CHECK_EQ_U(r.files, 3);
	CHECK_EQ_U(r.applied, 3);   /* requeue a, delete d, requeue a (lower case) */
	CHECK_EQ_U(r.unknown, 1);
	CHECK_EQ_U(r.busy, 1);
	CHECK_EQ_U(r.malformed, 10); /* 8 in file 2, 2 lines of garbage */
	CHECK_EQ_U(r.errors, 0);
	CHECK(r.first_error == 0);
	CHECK(!exists("0001-a.req") && !exists("0002-b.req") && !exists("0003-c.req"));
	CHECK(exists(".tmp-0004.req") && exists("0005.req.tmp") && exists("README"));
	CHECK(queue_next_due_time(q) == 1000); /* a */
	struct queue_stats st;
	queue_get_stats(q, &st);
	CHECK_EQ_U(st.messages, 3); /* d deleted */
	CHECK_EQ_U(st.recipients_pending, 3);
	flush(q);
	CHECK_EQ_U(count_logged(0, DELIVERY_LOG_REQUEUE, a), 1);
	CHECK_EQ_U(count_logged(0, DELIVERY_LOG_DELETED, d), 1);
	CHECK_EQ_U(count_logged(0, DELIVERY_LOG_REQUEUE, c), 0);

	/* requeue all: b moves (a is due already, c in flight). */
	write_text("0006.req", "requeue all\n");
	CHECK(control_apply(q, shard, 2000, &r) == 0);
	CHECK(r.files == 1 && r.applied == 1 && r.made_due == 1 && r.malformed == 0);
	CHECK(queue_next_due_time(q) == 1000);

	/* Refused whole: too large, a symlink, a FIFO, an empty file is fine. */
	size_t big_len = CONTROL_REQUEST_MAX_BYTES + 1;
	char *big = malloc(big_len);
	REQUIRE(big != NULL);
	memset(big, '\n', big_len);
	memcpy(big, "requeue all\n", 12);
	write_request("0007-big.req", big, big_len);
	free(big);
	char target[PATH_MAX * 2], link_path[PATH_MAX * 2], fifo_path[PATH_MAX * 2];
	snprintf(target, sizeof(target), "%s/README", control_dir);
	snprintf(link_path, sizeof(link_path), "%s/0008-link.req", control_dir);
	snprintf(fifo_path, sizeof(fifo_path), "%s/0009-fifo.req", control_dir);
	REQUIRE(symlink(target, link_path) == 0);
	REQUIRE(mkfifo(fifo_path, 0600) == 0);
	write_text("0010-empty.req", "");
	uint64_t before = queue_next_due_time(q);
	CHECK(control_apply(q, shard, 3000, &r) == 0);
	CHECK_EQ_U(r.files, 4);
	CHECK_EQ_U(r.malformed, 3);
	CHECK_EQ_U(r.applied, 0);
	CHECK(!exists("0007-big.req") && !exists("0008-link.req") && !exists("0009-fifo.req"));
	CHECK(exists("README")); /* the symlink's target is untouched */
	CHECK((uint64_t)queue_next_due_time(q) == before);

	/* More files than one batch: all applied, in name order. */
	for (uint32_t i = 0; i < 3 * CONTROL_FILES_PER_BATCH + 5; i++) {
		char name[64];
		snprintf(name, sizeof(name), "batch-%04u.req", (unsigned)i);
		write_text(name, i % 2 ? "requeue all\n" : "nonsense\n");
	}
	CHECK(control_apply(q, shard, 4000, &r) == 0);
	CHECK_EQ_U(r.files, 3 * CONTROL_FILES_PER_BATCH + 5);
	CHECK_EQ_U(r.applied + r.malformed, r.files);
	char last[64];
	snprintf(last, sizeof(last), "batch-%04u.req", (unsigned)(3 * CONTROL_FILES_PER_BATCH + 4));
	CHECK(!exists(last));

	/* A request file that cannot be removed is reported and left; the
	 * rest still apply. */
	REQUIRE(mkdir(fifo_path, 0700) == 0); /* a directory named like a request */
	write_text("0011.req", "requeue all\n");
	CHECK(control_apply(q, shard, 5000, &r) == 0);
	CHECK_EQ_U(r.files, 1);
	CHECK_EQ_U(r.applied, 1);
	CHECK_EQ_U(r.malformed, 1);
	CHECK_EQ_U(r.errors, 1);
	CHECK(r.first_error < 0);
	CHECK(exists("0009-fifo.req") && !exists("0011.req"));
	REQUIRE(rmdir(fifo_path) == 0);

	CHECK(queue_requeue(q, inflight, 0) == QUEUE_ATTEMPT_RETRY);
	queue_close(q);
}

/* A control path that is not a directory is an error, not "no requests". */
static void test_control_not_a_directory(void)
{
	char other[PATH_MAX + 16];
	snprintf(other, sizeof(other), "%s-other", shard);
	REQUIRE(mkdir(other, 0700) == 0);
	char path[PATH_MAX * 2];
	snprintf(path, sizeof(path), "%s/%s", other, CONTROL_DIR_NAME);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0 && close(fd) == 0);
	struct queue *q = new_queue();
	struct control_result r;
	CHECK(control_apply(q, other, 0, &r) == -ENOTDIR);
	CHECK(r.files == 0 && r.applied == 0);
	queue_close(q);
}

/* ---- a real shard: the store's records, the queue's delivery logs ---- */

#define SHARD_RECS 6
#define SHARD_BODY_BYTES 100

struct shard_rec {
	struct record_header h;
	struct bytebuf env;
	uint8_t body[SHARD_BODY_BYTES];
	struct iovec parts[4];
	uint64_t id;
};
static struct shard_rec recs[SHARD_RECS];
static const uint8_t zero_pad[8];

static void on_durable(void *ctx, uint64_t cookie, int result)
{
	(void)ctx;
	REQUIRE(cookie < SHARD_RECS && result == 0);
}

/* Stores record i (two recipients), makes it durable, queues it due at 5000. */
static void shard_add(struct store *st, struct queue *q, int i)
{
	struct shard_rec *r = &recs[i];
	bytebuf_free(&r->env);
	REQUIRE(record_env_put(&r->env, RECORD_TAG_REVERSE_PATH, span_make("s@ex.net", 8)) == 0);
	REQUIRE(record_env_put(&r->env, RECORD_TAG_RECIPIENT, span_make("a@ex.org", 8)) == 0);
	REQUIRE(record_env_put(&r->env, RECORD_TAG_RECIPIENT, span_make("b@ex.org", 8)) == 0);
	memset(r->body, 'a' + i, sizeof(r->body));
	uint64_t padded = record_padded_length(r->env.len, sizeof(r->body));
	REQUIRE(store_reserve(st, padded, &r->id) == 0);
	struct iovec body = { r->body, sizeof(r->body) };
	record_seal(&r->h, r->id, 1000 + i, span_make(r->env.data, r->env.len), &body, 1);
	r->parts[0] = (struct iovec){ &r->h, RECORD_HEADER_BYTES };
	r->parts[1] = (struct iovec){ r->env.data, r->env.len };
	r->parts[2] = body;
	r->parts[3] = (struct iovec){ (void *)zero_pad, record_padding(r->h.length) };
	REQUIRE(store_append(st, r->id, r->parts, 4, (uint64_t)i) == 0);
	struct store_commit c;
	REQUIRE(store_commit_begin(st, &c));
	ssize_t n = pwritev(c.fd, c.iov, c.iovcnt, (off_t)c.offset);
	REQUIRE(n == (ssize_t)c.bytes && fdatasync(c.fd) == 0);
	store_commit_done(st, (int)n, on_durable, NULL);
	REQUIRE(queue_add(q, r->id, padded, 2, 1000 + i, 5000) == 0);
}

/* Performs the queue's log commits on the real files. */
static void shard_flush(struct queue *q)
{
	struct queue_commit c;
	while (queue_commit_begin(q, &c)) {
		for (uint32_t k = 0; k < c.count; k++) {
			const struct queue_commit_write *w = &c.write[k];
			ssize_t n = pwritev(w->fd, &w->iov, 1, (off_t)w->offset);
			REQUIRE(n == (ssize_t)w->iov.iov_len);
			REQUIRE(!c.sync || fdatasync(w->fd) == 0);
		}
		queue_commit_done(q, 0);
	}
}

static void shard_open(const char *dir, int64_t now, struct store **st, struct queue **q)
{
	struct store_config scfg = {
		.data_dir = dir,
		.worker = W,
		.segment_size_bytes = SEGMENT_SIZE_MIN_BYTES,
		.store_max_bytes = 16 * SEGMENT_SIZE_MIN_BYTES,
		.fsync = true,
	};
	struct queue_config qcfg = cfg_make();
	qcfg.data_dir = dir;
	qcfg.now_unix_ms = now;
	char err[256];
	struct store_recovery_stats srs;
	struct queue_recovery_stats qrs;
	REQUIRE(store_open(&scfg, st, &srs, err, sizeof(err)) == 0);
	REQUIRE(queue_open(&qcfg, q, &qrs, err, sizeof(err)) == 0);
}

struct listed {
	uint32_t count;
	int64_t latest_next;
	bool saw_deleted;
};

static int on_listed(void *ctx, const struct queue_deferred_info *info)
{
	struct listed *l = ctx;
	l->count++;
	if (info->next_attempt_unix_ms > l->latest_next)
		l->latest_next = info->next_attempt_unix_ms;
	l->saw_deleted = l->saw_deleted || info->queue_id == recs[1].id;
	CHECK_EQ_U(info->rcpt_pending, 2);
	CHECK_EQ_U(info->attempts, 1);
	CHECK_EQ_U(info->last_reply_code, 451);
	return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void test_real_shard(void)
{
	char dir[] = "/tmp/ringmx-test-control-shard-XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	struct store *st;
	struct queue *q;
	shard_open(dir, 5000, &st, &q);
	for (int i = 0; i < SHARD_RECS; i++)
		shard_add(st, q, i);
	/* First attempt: 451 for everyone; next attempts about 1 s later. */
	struct queue_msg *m;
	while ((m = queue_next_due(q, 5000)) != NULL) {
		for (uint32_t k = 0; k < 2; k++)
			queue_outcome(q, m, k, QUEUE_OUTCOME_TEMPFAIL, 451,
				      delivery_log_enhanced_pack(4, 4, 1), 5000);
		REQUIRE(queue_attempt_done(q, m, 5000) == QUEUE_ATTEMPT_RETRY);
	}
	CHECK(queue_next_due_time(q) >= 5800);
	CHECK(queue_make_due(q, recs[0].id, 5100) == 0);
	CHECK(queue_delete(q, recs[1].id, 5100) == 0);
	shard_flush(q);
	queue_close(q);
	store_close(st);

	/* Restart before the backoff ends: the requeued one is due at once,
	 * the deleted one is gone, the others keep their backoff. */
	shard_open(dir, 5200, &st, &q);
	CHECK(queue_next_due_time(q) == 5200);
	m = queue_next_due(q, 5200);
	CHECK(m != NULL && queue_msg_id(m) == recs[0].id);
	CHECK(queue_next_due(q, 5200) == NULL);
	CHECK(queue_make_due(q, recs[1].id, 5200) == -ENOENT);
	struct queue_stats qs;
	queue_get_stats(q, &qs);
	CHECK_EQ_U(qs.messages, SHARD_RECS - 1);

	/* The daemon holds the shard: offline requeue refuses. */
	char err[256];
	uint64_t moved = 99;
	CHECK(queue_offline_requeue_all(dir, W, 5300, &moved, err, sizeof(err)) == -EBUSY);
	CHECK_EQ_U(moved, 0);
	queue_close(q); /* drops recs[0] in flight: it stays due per its log */
	store_close(st);

	/* Stopped: the four messages still backing off are requeued. */
	CHECK(queue_offline_requeue_all(dir, W, 5300, &moved, err, sizeof(err)) == 0);
	CHECK_EQ_U(moved, SHARD_RECS - 2);
	CHECK(queue_offline_requeue_all(dir, W, 5300, &moved, err, sizeof(err)) == 0);
	CHECK_EQ_U(moved, 0);
	CHECK(queue_offline_requeue_all(dir, W + 1, 5300, &moved, err, sizeof(err)) == -ENOENT);
	/* One message looked up in its own segment. */
	struct queue_deferred_info info;
	CHECK(queue_offline_find(dir, recs[2].id, &info, err, sizeof(err)) == 1);
	CHECK(info.queue_id == recs[2].id && info.rcpt_pending == 2 && info.rcpt_count == 2);
	CHECK(info.attempts == 1 && info.last_reply_code == 451);
	CHECK(info.next_attempt_unix_ms == 5300);
	CHECK(info.arrival_unix_ms == 1002);
	CHECK(queue_offline_find(dir, recs[1].id, &info, err, sizeof(err)) == 0); /* deleted */
	CHECK(queue_offline_find(dir, recs[2].id + 1, &info, err, sizeof(err)) == 0);
	CHECK(queue_offline_find(dir, queue_id_make(W, 9, 0), &info, err, sizeof(err)) == 0);
	CHECK(queue_offline_find(dir, queue_id_make(W + 1, 1, 0), &info, err, sizeof(err)) == 0);
	struct listed l = { 0, 0, false };
	CHECK(queue_offline_list(dir, W, on_listed, &l, err, sizeof(err)) == 0);
	CHECK_EQ_U(l.count, SHARD_RECS - 1);
	CHECK(l.latest_next <= 5300);
	CHECK(!l.saw_deleted);

	/* And the next start has every one of them due at once. */
	shard_open(dir, 5400, &st, &q);
	uint32_t due = 0;
	while ((m = queue_next_due(q, 5400)) != NULL)
		due++;
	CHECK_EQ_U(due, SHARD_RECS - 1);
	queue_close(q);
	store_close(st);
	for (int i = 0; i < SHARD_RECS; i++)
		bytebuf_free(&recs[i].env);
	CHECK(nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
}

/* Removes what the tests left: three ignored files, the directories. */
static void cleanup(void)
{
	static const char *const left[] = { ".tmp-0004.req", "0005.req.tmp", "README" };
	char path[PATH_MAX * 2];
	for (size_t i = 0; i < RMX_ARRAY_LEN(left); i++) {
		snprintf(path, sizeof(path), "%s/%s", control_dir, left[i]);
		CHECK(unlink(path) == 0);
	}
	CHECK(rmdir(control_dir) == 0);
	snprintf(path, sizeof(path), "%s-other/%s", shard, CONTROL_DIR_NAME);
	CHECK(unlink(path) == 0);
	snprintf(path, sizeof(path), "%s-other", shard);
	CHECK(rmdir(path) == 0);
	CHECK(rmdir(shard) == 0);
	char *slash = strrchr(shard, '/');
	REQUIRE(slash != NULL);
	*slash = '\0';
	CHECK(rmdir(shard) == 0);
}

int main(void)
{
	test_make_due_and_delete();
	test_make_all_due();
	test_random_against_model();
	setup_shard();
	test_no_control_dir();
	test_request_files();
	test_control_not_a_directory();
	cleanup();
	test_real_shard();
	return test_main_end("control");
}
