/*
 * auth_verify.c - the verifier pool: a bounded FIFO of requests under one
 * mutex, a few threads that run auth_users_check, and one small io_uring per
 * thread that carries each answer to the requesting worker's ring as an
 * IORING_OP_MSG_RING completion.
 *
 * Invariants: the queue never holds more than AUTH_VERIFY_QUEUE_MAX
 * requests; a password lives in a queue slot from submit until a thread
 * copies it out (the slot is wiped then) and in the thread's copy until the
 * check returns (wiped then); a thread records the ring it is working for in
 * busy_fd[] from the moment it takes a request until its answer is posted,
 * which is what auth_verify_forget waits on. The user table is read under a
 * writer-preferring rwlock, so a reload waits for the checks in flight and
 * then frees the old table.
 */
#include "auth_verify.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define AUTH_VERIFY_THREADS_MAX (4 * AUTH_VERIFY_THREADS)
/* A refused post (the target's CQ overflowing, say) is retried this often,
 * a millisecond apart. */
#define POST_ATTEMPTS 100

struct auth_request {
	int ring_fd;
	uint64_t user_data;
	bool oversize; /* user or password past its bound: checked as unknown */
	uint16_t user_len;
	uint16_t password_len;
	uint8_t user[AUTH_USER_NAME_MAX_BYTES];
	uint8_t password[AUTH_PASSWORD_MAX_BYTES];
};

struct auth_verify_thread {
	struct auth_verify *pool;
	pthread_t thread;
	bool started;
	struct io_uring ring;    /* posts answers: MSG_RING only */
	struct crypt_data crypt; /* crypt_r's scratch, about 32 KiB */
	struct auth_request req; /* the request being checked */
};

struct auth_verify {
	pthread_mutex_t lock;
	pthread_cond_t work;     /* a request was queued, or stop */
	pthread_cond_t idle;     /* a thread finished a request */
	struct auth_request queue[AUTH_VERIFY_QUEUE_MAX];
	uint32_t head, count;    /* FIFO: queue[(head + i) % MAX] */
	bool stop;
	int busy_fd[AUTH_VERIFY_THREADS_MAX]; /* -1: idle */
	uint64_t post_failures;

	pthread_rwlock_t users_lock;
	struct auth_users *users;

	unsigned thread_count;
	struct auth_verify_thread *threads[AUTH_VERIFY_THREADS_MAX];
};

static void post_answer(struct auth_verify_thread *t, int ring_fd, uint64_t user_data,
			enum auth_result r)
{
	for (unsigned attempt = 0; attempt < POST_ATTEMPTS; attempt++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
		RMX_ASSERT(sqe != NULL); /* one in flight at a time */
		io_uring_prep_msg_ring(sqe, ring_fd, (unsigned)r, user_data, 0);
		io_uring_sqe_set_data64(sqe, 0);
		struct io_uring_cqe *cqe;
		int rc = io_uring_submit_and_wait(&t->ring, 1);
		if (rc >= 0)
			rc = io_uring_peek_cqe(&t->ring, &cqe);
		if (rc == 0) {
			rc = cqe->res;
			io_uring_cqe_seen(&t->ring, cqe);
		}
		if (rc >= 0)
			return;
		/* A full or overflowing target CQ passes; a gone ring does not. */
		if (rc != -EAGAIN && rc != -EOVERFLOW && rc != -EINTR && rc != -EBUSY)
			break;
		struct timespec ms = { 0, 1000000 };
		nanosleep(&ms, NULL);
	}
	pthread_mutex_lock(&t->pool->lock);
	t->pool->post_failures++;
	pthread_mutex_unlock(&t->pool->lock);
}

static enum auth_result check(struct auth_verify_thread *t)
{
	struct auth_verify *v = t->pool;
	struct auth_request *q = &t->req;
	struct span user = span_make(q->user, q->user_len);
	struct span password = span_make(q->password, q->password_len);
	if (q->oversize) {
		user = span_make(q->user, 0); /* never a user: same cost, a failure */
		password = span_make(q->password, 0);
	}
	pthread_rwlock_rdlock(&v->users_lock);
	enum auth_result r = auth_users_check(v->users, user, password, &t->crypt);
	pthread_rwlock_unlock(&v->users_lock);
	return r;
}

static void *verifier_main(void *arg)
{
	struct auth_verify_thread *t = arg;
	struct auth_verify *v = t->pool;
	unsigned index = 0;
	while (v->threads[index] != t)
		index++;
	pthread_mutex_lock(&v->lock);
	for (;;) {
		while (v->count == 0 && !v->stop)
			pthread_cond_wait(&v->work, &v->lock);
		if (v->stop)
			break;
		struct auth_request *slot = &v->queue[v->head];
		t->req = *slot;
		explicit_bzero(slot, sizeof(*slot));
		v->head = (v->head + 1) % AUTH_VERIFY_QUEUE_MAX;
		v->count--;
		v->busy_fd[index] = t->req.ring_fd;
		pthread_mutex_unlock(&v->lock);

		enum auth_result r = check(t);
		int ring_fd = t->req.ring_fd;
		uint64_t user_data = t->req.user_data;
		explicit_bzero(&t->req, sizeof(t->req));
		post_answer(t, ring_fd, user_data, r);

		pthread_mutex_lock(&v->lock);
		v->busy_fd[index] = -1;
		pthread_cond_broadcast(&v->idle);
	}
	pthread_mutex_unlock(&v->lock);
	return NULL;
}

int auth_verify_create(struct auth_verify **out, struct auth_users *users, unsigned threads)
{
	RMX_ASSERT(users != NULL);
	RMX_ASSERT(threads >= 1 && threads <= AUTH_VERIFY_THREADS_MAX);
	struct auth_verify *v = calloc(1, sizeof(*v));
	if (v == NULL) {
		auth_users_free(users);
		return -ENOMEM;
	}
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->work, NULL);
	pthread_cond_init(&v->idle, NULL);
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&v->users_lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	v->users = users;
	for (unsigned i = 0; i < AUTH_VERIFY_THREADS_MAX; i++)
		v->busy_fd[i] = -1;

	int rc = 0;
	for (unsigned i = 0; i < threads; i++) {
		struct auth_verify_thread *t = calloc(1, sizeof(*t));
		if (t == NULL) {
			rc = -ENOMEM;
			break;
		}
		t->pool = v;
		rc = io_uring_queue_init(4, &t->ring, 0);
		if (rc < 0) {
			free(t);
			break;
		}
		v->threads[i] = t;
		v->thread_count = i + 1;
		rc = -pthread_create(&t->thread, NULL, verifier_main, t);
		if (rc < 0)
			break;
		t->started = true;
		char name[16] = "ringmx-auth";
		name[11] = (char)('0' + i % 10);
		pthread_setname_np(t->thread, name);
	}
	if (rc < 0) {
		auth_verify_destroy(v);
		return rc;
	}
	*out = v;
	return 0;
}

void auth_verify_destroy(struct auth_verify *v)
{
	if (v == NULL)
		return;
	pthread_mutex_lock(&v->lock);
	v->stop = true;
	pthread_cond_broadcast(&v->work);
	pthread_mutex_unlock(&v->lock);
	for (unsigned i = 0; i < v->thread_count; i++) {
		struct auth_verify_thread *t = v->threads[i];
		if (t->started)
			pthread_join(t->thread, NULL);
		io_uring_queue_exit(&t->ring);
		explicit_bzero(t, sizeof(*t));
		free(t);
	}
	explicit_bzero(v->queue, sizeof(v->queue));
	auth_users_free(v->users);
	pthread_rwlock_destroy(&v->users_lock);
	pthread_cond_destroy(&v->idle);
	pthread_cond_destroy(&v->work);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

int auth_verify_reload(struct auth_verify *v, const char *path, char *err, size_t errlen)
{
	struct auth_users *next = NULL;
	if (auth_users_load(path, &next, err, errlen) != 0)
		return -1;
	pthread_rwlock_wrlock(&v->users_lock);
	struct auth_users *old = v->users;
	v->users = next;
	pthread_rwlock_unlock(&v->users_lock);
	auth_users_free(old);
	return 0;
}

size_t auth_verify_user_count(struct auth_verify *v)
{
	pthread_rwlock_rdlock(&v->users_lock);
	size_t n = auth_users_count(v->users);
	pthread_rwlock_unlock(&v->users_lock);
	return n;
}

int auth_verify_submit(struct auth_verify *v, int ring_fd, uint64_t user_data, struct span user,
		       struct span password)
{
	RMX_ASSERT(ring_fd >= 0);
	pthread_mutex_lock(&v->lock);
	if (v->count == AUTH_VERIFY_QUEUE_MAX || v->stop) {
		pthread_mutex_unlock(&v->lock);
		return -EAGAIN;
	}
	struct auth_request *q = &v->queue[(v->head + v->count) % AUTH_VERIFY_QUEUE_MAX];
	q->ring_fd = ring_fd;
	q->user_data = user_data;
	q->oversize = user.len > sizeof(q->user) || password.len > sizeof(q->password);
	if (!q->oversize) {
		q->user_len = (uint16_t)user.len;
		q->password_len = (uint16_t)password.len;
		if (user.len)
			memcpy(q->user, user.ptr, user.len);
		if (password.len)
			memcpy(q->password, password.ptr, password.len);
	}
	v->count++;
	pthread_cond_signal(&v->work);
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static bool busy_for(const struct auth_verify *v, int ring_fd)
{
	for (unsigned i = 0; i < v->thread_count; i++)
		if (v->busy_fd[i] == ring_fd)
			return true;
	return false;
}

void auth_verify_forget(struct auth_verify *v, int ring_fd)
{
	pthread_mutex_lock(&v->lock);
	uint32_t kept = 0;
	for (uint32_t i = 0; i < v->count; i++) {
		struct auth_request *q = &v->queue[(v->head + i) % AUTH_VERIFY_QUEUE_MAX];
		if (q->ring_fd == ring_fd)
			continue;
		struct auth_request *to = &v->queue[(v->head + kept) % AUTH_VERIFY_QUEUE_MAX];
		if (to != q)
			*to = *q;
		kept++;
	}
	for (uint32_t i = kept; i < v->count; i++)
		explicit_bzero(&v->queue[(v->head + i) % AUTH_VERIFY_QUEUE_MAX],
			       sizeof(struct auth_request));
	v->count = kept;
	while (busy_for(v, ring_fd))
		pthread_cond_wait(&v->idle, &v->lock);
	pthread_mutex_unlock(&v->lock);
}

uint64_t auth_verify_post_failures(struct auth_verify *v)
{
	pthread_mutex_lock(&v->lock);
	uint64_t n = v->post_failures;
	pthread_mutex_unlock(&v->lock);
	return n;
}
