/*
 * test_auth_verify.c - the verifier pool against real io_urings.
 *
 * The "worker" ring is made with ring_init, as a worker makes its own
 * (SINGLE_ISSUER + DEFER_TASKRUN where the kernel has them), and answers are
 * read as completions from it. Checked: right and wrong passwords, an unknown
 * user, over-long user names and passwords, each answer on the ring it was
 * asked for with its own user_data (a second ring beside the first); that a
 * submit returns at once while checks take milliseconds; reload (a new table
 * is used, a broken file keeps the old one); a full queue answers -EAGAIN;
 * auth_verify_forget drops the queued requests and nothing reaches the ring
 * after it returns.
 */
#include "../core/auth_verify.h"
#include "../core/ring.h"
#include "test.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/ringmx-test-auth-verify-XXXXXX";
static char path[256];

static void make_hash(const char *prefix, const char *password, char *out, size_t cap)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	REQUIRE(crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof setting) != NULL);
	struct crypt_data d;
	memset(&d, 0, sizeof d);
	const char *h = crypt_r(password, setting, &d);
	REQUIRE(h != NULL && h[0] == '$' && strlen(h) < cap);
	strcpy(out, h);
}

static void write_users(const char *alice_pw, const char *bob_pw)
{
	char ha[256], hb[256];
	make_hash("$y$", alice_pw, ha, sizeof ha);
	make_hash("$6$", bob_pw, hb, sizeof hb);
	FILE *f = fopen(path, "w");
	REQUIRE(f);
	fprintf(f, "alice:%s\nbob:%s\n", ha, hb);
	REQUIRE(fclose(f) == 0);
}

static struct span S(const char *t)
{
	return span_make(t, strlen(t));
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Waits up to timeout_ms for up to want completions; records res by
 * user_data (1..max) in res[]; returns how many arrived. */
static unsigned collect(struct io_uring *ring, unsigned want, int *res, size_t max,
			unsigned timeout_ms)
{
	unsigned got = 0;
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;
	while (got < want) {
		uint64_t now = now_ns();
		uint64_t left = now < end ? end - now : 0; /* 0: look once */
		struct __kernel_timespec ts = { (long long)(left / 1000000000u),
						(long long)(left % 1000000000u) };
		struct io_uring_cqe *cqe;
		int rc = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
		if (rc == -ETIME || (rc == -EINTR && left == 0))
			break;
		if (rc == -EINTR)
			continue;
		REQUIRE(rc == 0);
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		REQUIRE(ud >= 1 && ud <= max);
		CHECK(res[ud - 1] == -1); /* one answer per request */
		res[ud - 1] = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		got++;
	}
	return got;
}

static void reset(int *res, size_t n)
{
	for (size_t i = 0; i < n; i++)
		res[i] = -1;
}

static void test_answers(struct auth_verify *v, struct io_uring *ring, struct io_uring *ring2)
{
	static char long_pw[AUTH_PASSWORD_MAX_BYTES + 2];
	memset(long_pw, 'r', sizeof long_pw - 1);
	static char long_user[AUTH_USER_NAME_MAX_BYTES + 2];
	memset(long_user, 'a', sizeof long_user - 1);

	int res[8];
	reset(res, 8);
	uint64_t t0 = now_ns();
	CHECK(auth_verify_submit(v, ring->ring_fd, 1, S("alice"), S("right")) == 0);
	CHECK(auth_verify_submit(v, ring->ring_fd, 2, S("alice"), S("wrong")) == 0);
	CHECK(auth_verify_submit(v, ring->ring_fd, 3, S("mallory"), S("right")) == 0);
	CHECK(auth_verify_submit(v, ring->ring_fd, 4, S("bob"), S("bob pw")) == 0);
	CHECK(auth_verify_submit(v, ring->ring_fd, 5, S("alice"), S(long_pw)) == 0);
	CHECK(auth_verify_submit(v, ring->ring_fd, 6, S(long_user), S("right")) == 0);
	CHECK(auth_verify_submit(v, ring->ring_fd, 7, span_make("alice", 5),
				 span_make("right\0", 6)) == 0);
	uint64_t submit_ns = now_ns() - t0;
	/* The answer for ring2 goes to ring2 only. */
	CHECK(auth_verify_submit(v, ring2->ring_fd, 8, S("alice"), S("right")) == 0);

	CHECK_EQ_U(collect(ring, 7, res, 8, 30000), 7);
	CHECK_EQ_U(res[0], AUTH_RESULT_OK);
	CHECK_EQ_U(res[1], AUTH_RESULT_FAILED);
	CHECK_EQ_U(res[2], AUTH_RESULT_FAILED);
	CHECK_EQ_U(res[3], AUTH_RESULT_OK);
	CHECK_EQ_U(res[4], AUTH_RESULT_FAILED);
	CHECK_EQ_U(res[5], AUTH_RESULT_FAILED);
	CHECK_EQ_U(res[6], AUTH_RESULT_FAILED);
	CHECK(res[7] == -1);
	CHECK_EQ_U(collect(ring2, 1, res, 8, 30000), 1);
	CHECK_EQ_U(res[7], AUTH_RESULT_OK);
	uint64_t all_ns = now_ns() - t0;
	printf("7 submits took %.1f us; their answers %.1f ms\n", submit_ns / 1e3, all_ns / 1e6);
	/* Submitting does not wait for a check (each costs milliseconds). */
	CHECK(submit_ns * 20 < all_ns);
	CHECK_EQ_U(auth_verify_post_failures(v), 0);
}

static void test_reload(struct auth_verify *v, struct io_uring *ring)
{
	write_users("new", "bob new");
	char err[256] = "";
	REQUIRE(auth_verify_reload(v, path, err, sizeof err) == 0);
	CHECK_EQ_U(auth_verify_user_count(v), 2);
	int res[3];
	reset(res, 3);
	CHECK(auth_verify_submit(v, ring->ring_fd, 1, S("alice"), S("new")) == 0);
	CHECK(auth_verify_submit(v, ring->ring_fd, 2, S("alice"), S("right")) == 0);
	CHECK_EQ_U(collect(ring, 2, res, 3, 30000), 2);
	CHECK_EQ_U(res[0], AUTH_RESULT_OK);
	CHECK_EQ_U(res[1], AUTH_RESULT_FAILED);

	/* A broken file: refused, the table stays. */
	FILE *f = fopen(path, "w");
	REQUIRE(f);
	fputs("alice:$1$md5$notours\n", f);
	REQUIRE(fclose(f) == 0);
	CHECK(auth_verify_reload(v, path, err, sizeof err) == -1);
	CHECK(strstr(err, ":1: unsupported hash") != NULL);
	CHECK_EQ_U(auth_verify_user_count(v), 2);
	reset(res, 3);
	CHECK(auth_verify_submit(v, ring->ring_fd, 3, S("alice"), S("new")) == 0);
	CHECK_EQ_U(collect(ring, 1, res, 3, 30000), 1);
	CHECK_EQ_U(res[2], AUTH_RESULT_OK);
}

/* Fill the queue: the next submit is refused at once; forget drops what
 * waits, and nothing more arrives once it has returned. */
static void test_full_and_forget(struct auth_verify *v, struct io_uring *ring)
{
	enum { TRIES = AUTH_VERIFY_QUEUE_MAX + AUTH_VERIFY_THREADS + 16 };
	static int res[TRIES];
	reset(res, TRIES);
	unsigned accepted = 0, refused = 0;
	for (unsigned i = 0; i < TRIES; i++) {
		int rc = auth_verify_submit(v, ring->ring_fd, i + 1, S("alice"), S("new"));
		CHECK(rc == 0 || rc == -EAGAIN);
		if (rc == 0)
			accepted++;
		else
			refused++;
	}
	printf("queue: %u accepted, %u refused\n", accepted, refused);
	CHECK(accepted >= AUTH_VERIFY_QUEUE_MAX);
	CHECK(accepted <= AUTH_VERIFY_QUEUE_MAX + AUTH_VERIFY_THREADS + 8);
	CHECK(refused >= 8);

	auth_verify_forget(v, ring->ring_fd);
	unsigned before = collect(ring, TRIES, res, TRIES, 0);
	unsigned after = collect(ring, TRIES, res, TRIES, 500);
	printf("after forget: %u answers had arrived, %u more came\n", before, after);
	CHECK(before < accepted / 2); /* most were dropped, not answered */
	CHECK_EQ_U(after, 0);
	for (unsigned i = 0; i < TRIES; i++)
		CHECK(res[i] == -1 || res[i] == AUTH_RESULT_OK);

	/* The pool still works afterwards. */
	reset(res, TRIES);
	CHECK(auth_verify_submit(v, ring->ring_fd, 1, S("alice"), S("new")) == 0);
	CHECK_EQ_U(collect(ring, 1, res, TRIES, 30000), 1);
	CHECK_EQ_U(res[0], AUTH_RESULT_OK);
}

int main(void)
{
	REQUIRE(mkdtemp(dir) != NULL);
	snprintf(path, sizeof path, "%s/users", dir);
	write_users("right", "bob pw");

	struct io_uring ring, ring2;
	struct ring_info info;
	int rc = ring_init(&ring, 64, &info);
	if (rc == -ENOSYS || rc == -EPERM) {
		printf("test_auth_verify: SKIP: no io_uring (%d)\n", rc);
		return 77;
	}
	REQUIRE(rc == 0);
	REQUIRE(io_uring_queue_init(8, &ring2, 0) == 0);

	struct auth_users *users = NULL;
	char err[256];
	REQUIRE(auth_users_load(path, &users, err, sizeof err) == 0);
	struct auth_verify *v = NULL;
	REQUIRE(auth_verify_create(&v, users, AUTH_VERIFY_THREADS) == 0);

	test_answers(v, &ring, &ring2);
	test_reload(v, &ring);
	test_full_and_forget(v, &ring);

	auth_verify_forget(v, ring2.ring_fd);
	auth_verify_destroy(v);
	io_uring_queue_exit(&ring2);
	ring_exit(&ring);
	unlink(path);
	rmdir(dir);
	return test_main_end("test_auth_verify");
}
