/*
 * auth_verify.h - password checks off the workers.
 *
 * crypt_r costs milliseconds (yescrypt), far too long for a worker's loop.
 * A small pool of verifier threads takes requests from workers through a
 * bounded queue and posts each answer back to the requesting worker's
 * io_uring as a completion (IORING_OP_MSG_RING from the verifier's own small
 * ring): cqe->user_data is the request's user_data, cqe->res an enum
 * auth_result (auth_users.h), so the worker handles it like any other
 * completion and never blocks. The pool owns the user table and swaps it
 * whole on reload; checks in flight finish on the table they started with.
 *
 * Threads: auth_verify_submit and auth_verify_forget from any worker;
 * create, reload and destroy from the main thread.
 */
#ifndef RINGMX_AUTH_VERIFY_H
#define RINGMX_AUTH_VERIFY_H

#include "auth_users.h"

struct auth_verify;

/*
 * Starts `threads` verifier threads (1 .. AUTH_VERIFY_THREADS*4; use
 * AUTH_VERIFY_THREADS) checking against users, which the pool then owns.
 * Call with the signals the workers block already blocked (the threads
 * inherit the mask). Returns 0 or -errno; on failure users is freed.
 */
RMX_MUST_CHECK int auth_verify_create(struct auth_verify **out, struct auth_users *users,
				      unsigned threads);

/* Stops and joins the threads, drops (and wipes) queued requests without
 * answering them, frees the table. Every worker must have called
 * auth_verify_forget for its ring first, or be gone with its ring intact. */
void auth_verify_destroy(struct auth_verify *v);

/*
 * Reload (SIGHUP): loads path; on success the new table replaces the old one
 * (freed once no check uses it) and 0 is returned; on failure the old table
 * stays and -1 is returned with "FILE:LINE: ..." in err.
 */
RMX_MUST_CHECK int auth_verify_reload(struct auth_verify *v, const char *path, char *err,
				      size_t errlen);

/* Users in the current table (for the reload log line). */
size_t auth_verify_user_count(struct auth_verify *v);

/*
 * Queues a check of user and password (copied; the copy is wiped after the
 * check) whose answer is posted to the io_uring whose fd is ring_fd with
 * user_data. Returns 0, or -EAGAIN when AUTH_VERIFY_QUEUE_MAX requests
 * already wait (answer 454 4.7.0 at once; nothing will be posted). A user
 * name or password past its bound is checked as an unknown user (same cost,
 * always AUTH_RESULT_FAILED). Never blocks on a check.
 */
RMX_MUST_CHECK int auth_verify_submit(struct auth_verify *v, int ring_fd, uint64_t user_data,
				      struct span user, struct span password);

/*
 * Drops the queued requests for ring_fd and waits until no check for it is
 * in flight: after it returns, nothing more is posted to that ring. A worker
 * calls it before it closes its ring (an fd number can be reused).
 */
void auth_verify_forget(struct auth_verify *v, int ring_fd);

/* Answers that could not be posted (the target ring refused the message
 * after retries): the session then meets its command timeout. */
uint64_t auth_verify_post_failures(struct auth_verify *v);

#endif
