/*
 * loop.c - the bench's event loops: SMTP sessions driven through io_uring.
 *
 * One loop per --threads, each with its own ring (SINGLE_ISSUER +
 * DEFER_TASKRUN) and connections; the only shared data is the read-only
 * plan. A connection is a small state machine: connect, banner, EHLO, then
 * transactions, either pipelined (MAIL + RCPT.. + DATA in one write, RFC
 * 2920) or one command per round trip, then QUIT. With --tls the session
 * says STARTTLS after the first EHLO and EHLO again once the handshake is
 * done; with --tls=implicit the handshake comes first. TLS runs in
 * tls_client.c over the connection's ciphertext buffers: sends and receives
 * then move ciphertext, and the reply reader sees the decrypted bytes.
 * Closed loop by default (a connection starts its next message when the
 * last one ends); with --rate, an open-loop schedule starts messages at
 * fixed times and records how late each start was.
 *
 * Invariants: per connection at most one receive and one send are in flight;
 * a socket is closed only when no operation on it is in flight, and a slot is
 * released only by the code that drives it (dispatch, the sweep), never from
 * inside a handler; the bytes a send references (shared templates, the
 * connection's header slots) stay put until its completion; every buffer is
 * sized at start-up.
 */
#include "loop.h"
#include "reply.h"
#include "tls_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define RECV_BUFFER_BYTES_PER_CONN 2048
#define OUT_IOV_MAX 8
#define RING_ENTRIES 1024
#define RING_CQ_ENTRIES_MIN 4096
#define RING_CQ_ENTRIES_MAX 65536      /* the kernel's ceiling */
#define CONNECTS_INFLIGHT_MAX 256      /* per loop: spreads a SYN burst */
#define SWEEP_INTERVAL_NS (100ull * 1000 * 1000)
#define RECONNECT_BACKOFF_NS (100ull * 1000 * 1000)
#define CONN_FAILURES_MAX 5            /* consecutive, then the slot gives up */
#define LATE_THRESHOLD_NS (1000ull * 1000)  /* a schedule slip worth reporting */
#define SOURCE_ADDRESSES 254           /* 127.0.0.1 .. 127.0.0.254 */
#define NS_PER_S 1000000000ull

_Static_assert(RECV_BUFFER_BYTES_PER_CONN > 2 * BENCH_REPLY_LINE_MAX_BYTES - 1,
	       "a connection's receive buffer holds a maximal line plus more");

static const char CMD_QUIT[] = "QUIT\r\n";
static const char CMD_RSET[] = "RSET\r\n";
static const char CMD_NOOP[] = "NOOP\r\n";
static const char CMD_STARTTLS[] = "STARTTLS\r\n";
static const char DATA_END[] = ".\r\n";

/* ------------------------------------------------------------ connections */

enum conn_state {
	C_QUEUED,     /* waiting for a connect slot */
	C_CONNECTING,
	C_BANNER,
	C_EHLO,
	C_STARTTLS,   /* waiting for the 220 to STARTTLS */
	C_HANDSHAKE,  /* TLS handshake in progress */
	C_READY,      /* between messages (rate mode: waiting for the schedule) */
	C_IDLE,       /* an idle connection, holding its session */
	C_NOOP,
	C_PIPE,       /* pipelined MAIL..DATA replies outstanding */
	C_MAIL,
	C_RCPT,
	C_DATA,
	C_BODY,       /* waiting for the reply to the end of data */
	C_RSET,
	C_QUIT,
	C_CLOSING,    /* shut down; waiting for in-flight operations */
	C_BACKOFF,    /* closed after a failure; reconnects at wake_ns */
	C_DONE,
};

enum op { OP_CONNECT = 1, OP_RECV, OP_SEND, OP_CANCEL };
#define OP_BITS 3

struct conn {
	int fd;
	enum conn_state state;
	bool idle_role;          /* one of --idle-conns */
	bool use_pipelining;
	bool in_message;         /* a transaction is counted and not finished */
	bool body_queued;        /* the end of data is still in the send queue */
	bool send_inflight;
	bool send_is_tls;        /* the send in flight carries ciphertext (the
				  * STARTTLS line may still be in flight when
				  * the ClientHello is queued) */
	bool recv_inflight;
	bool failed;             /* closing because of an error */
	bool listed_ready;       /* its index is in the loop's ready list */
	bool tls_on;             /* the handshake is done: replies are decrypted */
	uint8_t header_slot;
	unsigned inflight;       /* operations on fd not yet completed */
	unsigned failures;       /* consecutive connection failures */
	unsigned reply_index;    /* replies seen in the current command group */
	unsigned rcpts_accepted;
	unsigned first_error;    /* first failing reply code of the message */
	unsigned size_class;
	uint64_t deadline_ns;    /* reply expected by then; 0: none */
	uint64_t wake_ns;        /* NOOP (idle) or reconnect (backoff) time */
	uint64_t mail_ns;        /* MAIL submitted */
	uint64_t data_end_ns;    /* last submission holding the end of data */
	uint64_t message_bytes;
	uint64_t handshake_ns;   /* the ClientHello was queued */
	struct tls_link tls;     /* ssl NULL: plain text */
	struct reply_reader reader;
	struct msghdr msg;
	struct iovec iov[OUT_IOV_MAX];
	unsigned iov_head, iov_count;
	char *header[2];         /* two slots: see start_message() */
	size_t rlen;
	uint8_t rbuf[RECV_BUFFER_BYTES_PER_CONN];
};

/* -------------------------------------------------------------- the loops */

struct loop {
	unsigned index;
	const struct plan *plan;
	struct io_uring ring;
	struct conn *conns;
	unsigned conn_total;     /* active first, then idle */
	unsigned active_total;
	unsigned open_active;    /* active connections not yet C_DONE */
	unsigned open_idle;
	unsigned connecting;
	unsigned *connect_queue; /* conn indexes waiting for a connect slot */
	unsigned connect_queue_len;
	unsigned *ready;         /* rate mode: conns in C_READY */
	unsigned ready_len;
	bool counted;            /* --messages (else --duration) */
	uint64_t quota;          /* --messages: this loop's share (may be 0) */
	uint64_t started;
	uint64_t seq;
	double rate_per_s;       /* this loop's share */
	double phase;            /* this loop's offset in the schedule, 0..1 */
	unsigned source_next;
	bool stopping;
	bool told_connect_error;
	bool told_bind_error;
	bool told_socket_error;
	bool told_tls_error;
	bool starved;            /* rate mode: messages were due, none ready */
	uint64_t rng;
	uint64_t next_sweep_ns;
	/* The clock as of the last wake-up: for deadlines and timers. The
	 * latencies read the clock itself (MAIL submitted, end of data
	 * submitted, final reply). */
	uint64_t clock_ns;
	uint64_t timeout_ns;     /* --timeout */
	char *header_slab;
	uint8_t *tls_slab;       /* --tls: every connection's ciphertext buffers */
	struct tls_session *session; /* --tls-resume: the last session seen */
	int error;               /* a setup failure: -errno */
	struct bench_stats st;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	int rc = clock_gettime(CLOCK_MONOTONIC, &ts);
	RMX_ASSERT(rc == 0);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t pack_user_data(unsigned conn_index, enum op op)
{
	return ((uint64_t)conn_index << OP_BITS) | (uint64_t)op;
}

/* An SQE, submitting what is queued when the ring's SQ is full. */
static struct io_uring_sqe *get_sqe(struct loop *lp)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&lp->ring);
	if (sqe == NULL) {
		int rc = io_uring_submit(&lp->ring);
		RMX_ASSERT(rc >= 0);
		sqe = io_uring_get_sqe(&lp->ring);
	}
	RMX_ASSERT(sqe != NULL);
	return sqe;
}

static unsigned conn_index(const struct loop *lp, const struct conn *c)
{
	return (unsigned)(c - lp->conns);
}

/* Does this loop still have messages to start? */
static bool loop_has_work(const struct loop *lp, uint64_t now)
{
	if (lp->stopping)
		return false;
	if (lp->counted)
		return lp->started < lp->quota;
	return now < lp->plan->end_ns;
}

static void conn_fail(struct loop *lp, struct conn *c, unsigned code);
static void conn_ready(struct loop *lp, struct conn *c);
static void conn_close(struct loop *lp, struct conn *c);
static void conn_maybe_release(struct loop *lp, struct conn *c);
static void tls_begin(struct loop *lp, struct conn *c);

/* --------------------------------------------------------------- sending */

static void out_push(struct conn *c, const void *ptr, size_t len)
{
	RMX_ASSERT(len > 0);
	RMX_ASSERT(c->iov_head + c->iov_count < OUT_IOV_MAX);
	struct iovec *v = &c->iov[c->iov_head + c->iov_count];
	v->iov_base = (void *)ptr;
	v->iov_len = len;
	c->iov_count++;
}

/* Drops n bytes from the front of the queued iovecs. */
static void out_consume(struct conn *c, size_t n)
{
	while (n > 0) {
		RMX_ASSERT(c->iov_count > 0);
		struct iovec *v = &c->iov[c->iov_head];
		if (n < v->iov_len) {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= n;
			n = 0;
		} else {
			n -= v->iov_len;
			c->iov_head++;
			c->iov_count--;
		}
	}
	if (c->iov_count == 0) {
		c->iov_head = 0;
		c->body_queued = false;
	}
}

/* TLS: encrypts queued plaintext into the link's output while it has room
 * (the plaintext is taken at once: a TLS record cannot be sent in part
 * later), then sends the ciphertext. Returns false after a TLS error. */
static bool tls_flush(struct loop *lp, struct conn *c)
{
	struct tls_link *t = &c->tls;
	if (c->send_inflight)
		return true;
	if (t->out_sent == t->out_len)
		t->out_sent = t->out_len = 0;
	if (c->tls_on) {
		bool had_end = c->body_queued;
		while (c->iov_count > 0) {
			struct iovec *v = &c->iov[c->iov_head];
			long n = tls_link_write(t, v->iov_base, v->iov_len);
			if (n < 0)
				return false;
			if (n == 0)
				break;
			out_consume(c, (size_t)n);
		}
		if (had_end && !c->body_queued)
			c->data_end_ns = now_ns();
	}
	if (t->out_sent == t->out_len)
		return true;
	struct io_uring_sqe *sqe = get_sqe(lp);
	io_uring_prep_send(sqe, c->fd, t->out + t->out_sent, t->out_len - t->out_sent,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, pack_user_data(conn_index(lp, c), OP_SEND));
	c->send_inflight = true;
	c->send_is_tls = true;
	c->inflight++;
	return true;
}

/* Submits the queued bytes unless a send is already in flight (its
 * completion submits the rest). */
static void out_flush(struct loop *lp, struct conn *c)
{
	if (c->tls.ssl) {
		if (!tls_flush(lp, c)) {
			lp->st.tls_failures++;
			conn_fail(lp, c, 0);
		}
		return;
	}
	if (c->send_inflight || c->iov_count == 0)
		return;
	memset(&c->msg, 0, sizeof(c->msg));
	c->msg.msg_iov = &c->iov[c->iov_head];
	c->msg.msg_iovlen = c->iov_count;
	struct io_uring_sqe *sqe = get_sqe(lp);
	io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, pack_user_data(conn_index(lp, c), OP_SEND));
	c->send_inflight = true;
	c->send_is_tls = false;
	c->inflight++;
	if (c->body_queued)
		c->data_end_ns = now_ns();
}

static void on_send(struct loop *lp, struct conn *c, int res)
{
	c->send_inflight = false;
	if (c->state == C_CLOSING || c->state == C_BACKOFF || c->state == C_DONE)
		return;
	if (res <= 0) { /* 0 for a non-empty send: the socket is gone */
		conn_fail(lp, c, 0);
		return;
	}
	if (c->send_is_tls) {
		c->tls.out_sent += (size_t)res;
		RMX_ASSERT(c->tls.out_sent <= c->tls.out_len);
	} else {
		out_consume(c, (size_t)res);
	}
	out_flush(lp, c);
}

/* Sends what is queued and waits for a reply in state next. */
static void expect_reply(struct loop *lp, struct conn *c, enum conn_state next)
{
	c->state = next;
	c->deadline_ns = lp->clock_ns + lp->timeout_ns;
	out_flush(lp, c);
}

/* Queues a send of bytes that outlive it and expects a reply. */
static void send_command(struct loop *lp, struct conn *c, const void *ptr, size_t len,
			 enum conn_state next)
{
	out_push(c, ptr, len);
	expect_reply(lp, c, next);
}

static void arm_recv(struct loop *lp, struct conn *c)
{
	RMX_ASSERT(!c->recv_inflight && c->rlen < sizeof(c->rbuf));
	struct io_uring_sqe *sqe = get_sqe(lp);
	if (c->tls.ssl) {
		/* every step drains the input (see tls_client.c) */
		RMX_ASSERT(c->tls.in_len < TLS_IN_BYTES);
		io_uring_prep_recv(sqe, c->fd, c->tls.in + c->tls.in_len,
				   TLS_IN_BYTES - c->tls.in_len, 0);
	} else {
		io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
	}
	io_uring_sqe_set_data64(sqe, pack_user_data(conn_index(lp, c), OP_RECV));
	c->recv_inflight = true;
	c->inflight++;
}

/* ----------------------------------------------------------- transactions */

/* Starts one message on a ready connection. The header block goes into the
 * slot not used by the previous message: that one may still be referenced
 * by a send whose completion has not been reaped, but the one before it
 * cannot be (sends on a connection are serialised and this message's MAIL
 * follows the previous message's final reply). */
static void start_message(struct loop *lp, struct conn *c)
{
	const struct plan *pl = lp->plan;
	lp->started++;
	c->in_message = true;
	c->first_error = 0;
	c->reply_index = 0;
	c->rcpts_accepted = 0;
	c->size_class = size_dist_pick(&pl->opt->sizes, bench_random(&lp->rng));
	c->header_slot ^= 1;
	size_t n = message_header_format(c->header[c->header_slot], pl->header_bytes + 1,
					 pl->opt->from, pl->opt->to, lp->index, lp->seq++);
	RMX_ASSERT(n == pl->header_bytes);
	c->message_bytes = n + pl->fill_bytes[c->size_class];
	c->mail_ns = now_ns();
	if (c->use_pipelining)
		send_command(lp, c, pl->commands, pl->commands_len, C_PIPE);
	else
		send_command(lp, c, pl->commands + pl->cmd_off[0], pl->cmd_len[0], C_MAIL);
}

static void send_body(struct loop *lp, struct conn *c)
{
	const struct plan *pl = lp->plan;
	out_push(c, c->header[c->header_slot], pl->header_bytes);
	out_push(c, pl->fill[c->size_class], pl->fill_bytes[c->size_class]);
	out_push(c, DATA_END, sizeof(DATA_END) - 1);
	c->body_queued = true;
	expect_reply(lp, c, C_BODY);
}

/* Counts a finished (or abandoned) message. code: its final reply. */
static void finish_message(struct loop *lp, struct conn *c, unsigned code, uint64_t now)
{
	RMX_ASSERT(c->in_message);
	c->in_message = false;
	struct bench_stats *st = &lp->st;
	st->last_done_ns = now;
	if (code >= 200 && code < 300 && c->first_error == 0) {
		st->ok++;
		st->message_bytes += c->message_bytes;
		hist_record(&st->txn, now - c->mail_ns);
		hist_record(&st->ack, now > c->data_end_ns ? now - c->data_end_ns : 0);
		return;
	}
	unsigned bad = c->first_error ? c->first_error : code;
	st->failed++;
	st->errors_by_code[bad < ERROR_CODES ? bad : 0]++;
}

static void after_message(struct loop *lp, struct conn *c)
{
	if (lp->plan->opt->new_conn_per_message)
		send_command(lp, c, CMD_QUIT, sizeof(CMD_QUIT) - 1, C_QUIT);
	else
		conn_ready(lp, c);
}

static void abort_message(struct loop *lp, struct conn *c, unsigned code, uint64_t now)
{
	finish_message(lp, c, code, now);
	send_command(lp, c, CMD_RSET, sizeof(CMD_RSET) - 1, C_RSET);
}

static bool is_2xx(unsigned code)
{
	return code >= 200 && code < 300;
}

/* One complete reply for connection c, in its current state. */
static void on_reply(struct loop *lp, struct conn *c, unsigned code, unsigned keywords)
{
	const struct plan *pl = lp->plan;
	uint64_t now = lp->clock_ns;
	c->deadline_ns = 0;
	if (code == 421) { /* the server is closing the session */
		conn_fail(lp, c, 421);
		return;
	}
	switch (c->state) {
	case C_BANNER:
		if (code != 220) {
			conn_fail(lp, c, code);
			return;
		}
		lp->st.connects++;
		send_command(lp, c, pl->ehlo, pl->ehlo_len, C_EHLO);
		return;
	case C_EHLO:
		if (code != 250) {
			conn_fail(lp, c, code);
			return;
		}
		if (pl->opt->tls == BENCH_TLS_STARTTLS && !c->tls_on) {
			if (!(keywords & REPLY_KW_STARTTLS)) {
				lp->st.no_starttls++;
				conn_fail(lp, c, 0);
				return;
			}
			send_command(lp, c, CMD_STARTTLS, sizeof(CMD_STARTTLS) - 1, C_STARTTLS);
			return;
		}
		c->failures = 0;
		c->use_pipelining = pl->opt->pipelining && (keywords & REPLY_KW_PIPELINING);
		if (pl->opt->pipelining && !c->use_pipelining)
			lp->st.no_pipelining++;
		if (c->idle_role) {
			c->state = C_IDLE;
			c->wake_ns = pl->opt->idle_noop_s > 0
					     ? now + (uint64_t)(pl->opt->idle_noop_s * (double)NS_PER_S)
					     : 0;
		} else {
			conn_ready(lp, c);
		}
		return;
	case C_STARTTLS:
		if (code != 220) {
			lp->st.tls_failures++;
			conn_fail(lp, c, 0);
			return;
		}
		tls_begin(lp, c);
		return;
	case C_NOOP:
		if (code != 250) {
			conn_fail(lp, c, code);
			return;
		}
		c->state = C_IDLE;
		c->wake_ns = now + (uint64_t)(pl->opt->idle_noop_s * (double)NS_PER_S);
		return;
	case C_PIPE: {
		unsigned index = c->reply_index++;
		if (index + 1 < pl->cmd_count) { /* MAIL or a RCPT */
			if (!is_2xx(code) && c->first_error == 0)
				c->first_error = code;
			c->deadline_ns = now + lp->timeout_ns;
			return;
		}
		if (code == 354)
			send_body(lp, c);
		else
			abort_message(lp, c, code, now);
		return;
	}
	case C_MAIL:
		if (!is_2xx(code)) {
			abort_message(lp, c, code, now);
			return;
		}
		c->reply_index = 1;
		send_command(lp, c, pl->commands + pl->cmd_off[1], pl->cmd_len[1], C_RCPT);
		return;
	case C_RCPT: {
		if (is_2xx(code))
			c->rcpts_accepted++;
		else if (c->first_error == 0)
			c->first_error = code;
		unsigned next = ++c->reply_index;
		if (next + 1 < pl->cmd_count) {
			send_command(lp, c, pl->commands + pl->cmd_off[next], pl->cmd_len[next],
				     C_RCPT);
		} else if (c->rcpts_accepted == 0) {
			abort_message(lp, c, code, now);
		} else {
			send_command(lp, c, pl->commands + pl->cmd_off[next], pl->cmd_len[next],
				     C_DATA);
		}
		return;
	}
	case C_DATA:
		if (code == 354)
			send_body(lp, c);
		else
			abort_message(lp, c, code, now);
		return;
	case C_BODY:
		/* the one reply whose time is measured: read the clock */
		finish_message(lp, c, code, now_ns());
		after_message(lp, c);
		return;
	case C_RSET:
		if (code != 250) {
			conn_fail(lp, c, 0);
			return;
		}
		after_message(lp, c);
		return;
	case C_QUIT:
		conn_close(lp, c);
		return;
	default:
		/* A reply nobody asked for: the peer is not speaking SMTP to us. */
		conn_fail(lp, c, 0);
		return;
	}
}

static bool conn_gone(const struct conn *c)
{
	return c->state == C_CLOSING || c->state == C_BACKOFF || c->state == C_DONE;
}

/* Handles the complete replies in rbuf and keeps a partial line. Returns
 * false when the connection is closing. Once the server has said 220 to
 * STARTTLS, anything that followed in clear is dropped unread: it was sent
 * before the handshake, so it cannot be the server's (RFC 3207, 4.2). */
static bool read_replies(struct loop *lp, struct conn *c)
{
	size_t pos = 0;
	for (;;) {
		size_t used;
		enum reply_status rs = reply_read(&c->reader, c->rbuf + pos, c->rlen - pos, &used);
		pos += used;
		if (rs == REPLY_BAD) {
			conn_fail(lp, c, 0);
			return false;
		}
		if (rs == REPLY_NEED_MORE)
			break;
		on_reply(lp, c, c->reader.code, c->reader.keywords);
		if (conn_gone(c))
			return false;
		if (c->state == C_HANDSHAKE) {
			c->rlen = 0;
			reply_reader_init(&c->reader);
			return true;
		}
	}
	memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
	c->rlen -= pos;
	return true;
}

/* The handshake is complete: count it, then read the banner (implicit TLS)
 * or say EHLO again (STARTTLS: the server has forgotten the session). */
static void tls_handshake_done(struct loop *lp, struct conn *c)
{
	const struct plan *pl = lp->plan;
	struct bench_stats *st = &lp->st;
	hist_record(&st->handshake, now_ns() - c->handshake_ns);
	st->tls_handshakes++;
	if (tls_link_resumed(&c->tls))
		st->tls_resumed++;
	if (!st->tls_version[0])
		tls_link_describe(&c->tls, st->tls_version, st->tls_cipher);
	c->tls_on = true;
	if (pl->opt->tls == BENCH_TLS_IMPLICIT)
		expect_reply(lp, c, C_BANNER);
	else
		send_command(lp, c, pl->ehlo, pl->ehlo_len, C_EHLO);
}

/* Starts the handshake: the ClientHello goes out, the answer is awaited. */
static void tls_begin(struct loop *lp, struct conn *c)
{
	const struct plan *pl = lp->plan;
	c->handshake_ns = now_ns();
	c->state = C_HANDSHAKE;
	c->deadline_ns = lp->clock_ns + lp->timeout_ns;
	if (tls_link_start(&c->tls, pl->tls_ctx, pl->opt->tls_resume ? lp->session : NULL) != 0) {
		lp->st.tls_failures++;
		conn_fail(lp, c, 0);
		return;
	}
	out_flush(lp, c);
}

/* TLS: received ciphertext first moves the handshake on, then decrypts
 * into rbuf for the reply reader, until it holds no whole record. What
 * wolfSSL wrote meanwhile (its flights, alerts) is sent. Returns false when
 * the connection is closing. */
static bool tls_input(struct loop *lp, struct conn *c)
{
	if (c->state == C_HANDSHAKE) {
		enum tls_step step = tls_link_handshake(&c->tls);
		if (step == TLS_STEP_FAILED) {
			if (!lp->told_tls_error) { /* one line per loop is enough */
				char why[128];
				lp->told_tls_error = true;
				tls_link_error(&c->tls, why, sizeof(why));
				fprintf(stderr, "ringmx-bench: TLS handshake: %s\n", why);
			}
			lp->st.tls_failures++;
			conn_fail(lp, c, 0);
			return false;
		}
		if (step == TLS_STEP_MORE) {
			out_flush(lp, c);
			return !conn_gone(c);
		}
		tls_handshake_done(lp, c);
		if (conn_gone(c))
			return false;
	}
	for (;;) {
		long n = tls_link_read(&c->tls, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen);
		if (n < 0) {
			if (c->state == C_QUIT) /* close_notify after 221: fine */
				conn_close(lp, c);
			else
				conn_fail(lp, c, 0);
			return false;
		}
		if (n == 0)
			break;
		c->rlen += (size_t)n;
		if (!read_replies(lp, c))
			return false;
	}
	out_flush(lp, c);
	return !conn_gone(c);
}

static void on_recv(struct loop *lp, struct conn *c, int res)
{
	c->recv_inflight = false;
	if (conn_gone(c))
		return;
	if (res <= 0) {
		if (c->state == C_QUIT) /* the server closed first: fine */
			conn_close(lp, c);
		else
			conn_fail(lp, c, 0);
		return;
	}
	if (c->tls.ssl) {
		c->tls.in_len += (size_t)res;
		RMX_ASSERT(c->tls.in_len <= TLS_IN_BYTES);
		if (!tls_input(lp, c))
			return;
	} else {
		c->rlen += (size_t)res;
		RMX_ASSERT(c->rlen <= sizeof(c->rbuf));
		if (!read_replies(lp, c))
			return;
	}
	arm_recv(lp, c);
}

/* ------------------------------------------------------------ connections */

static void start_connect(struct loop *lp, struct conn *c)
{
	const struct plan *pl = lp->plan;
	int fd = socket(pl->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		if (!lp->told_socket_error) { /* EMFILE would repeat per slot */
			lp->told_socket_error = true;
			fprintf(stderr, "ringmx-bench: socket: %s\n", strerror(errno));
		}
		lp->st.conn_errors++;
		c->fd = -1;
		c->state = C_CLOSING;
		c->failed = true;
		conn_maybe_release(lp, c); /* nothing in flight: backs off */
		return;
	}
	int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		fprintf(stderr, "ringmx-bench: TCP_NODELAY: %s\n", strerror(errno));
	if (pl->spread) {
		/* Each source address has its own port space: 254 of them hold
		 * far more than 64k connections to one server port. */
		struct sockaddr_in src;
		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		unsigned x = lp->source_next++ % SOURCE_ADDRESSES + 1;
		src.sin_addr.s_addr = htonl(0x7f000000u | x);
		if ((setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) != 0 ||
		     bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) &&
		    !lp->told_bind_error) { /* the connect then uses the default source */
			lp->told_bind_error = true;
			fprintf(stderr, "ringmx-bench: bind 127.0.0.%u: %s\n", x, strerror(errno));
		}
	}
	c->fd = fd;
	c->state = C_CONNECTING;
	c->rlen = 0;
	c->iov_head = c->iov_count = 0;
	c->body_queued = false;
	c->failed = false;
	c->tls_on = false;
	reply_reader_init(&c->reader);
	c->deadline_ns = lp->clock_ns + lp->timeout_ns;
	lp->connecting++;
	struct io_uring_sqe *sqe = get_sqe(lp);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&pl->addr, pl->addr_len);
	io_uring_sqe_set_data64(sqe, pack_user_data(conn_index(lp, c), OP_CONNECT));
	c->inflight++;
}

static void connect_next_queued(struct loop *lp)
{
	while (lp->connecting < CONNECTS_INFLIGHT_MAX && lp->connect_queue_len > 0) {
		unsigned idx = lp->connect_queue[--lp->connect_queue_len];
		start_connect(lp, &lp->conns[idx]);
	}
}

static void queue_connect(struct loop *lp, struct conn *c)
{
	c->state = C_QUEUED;
	lp->connect_queue[lp->connect_queue_len++] = conn_index(lp, c);
	RMX_ASSERT(lp->connect_queue_len <= lp->conn_total);
	connect_next_queued(lp);
}

static void on_connect(struct loop *lp, struct conn *c, int res)
{
	RMX_ASSERT(lp->connecting > 0);
	lp->connecting--;
	connect_next_queued(lp);
	if (c->state != C_CONNECTING)
		return; /* timed out and closing */
	if (res < 0) {
		if (!lp->told_connect_error) { /* one line per loop is enough */
			lp->told_connect_error = true;
			fprintf(stderr, "ringmx-bench: connect: %s\n", strerror(-res));
		}
		conn_fail(lp, c, 0);
		return;
	}
	if (lp->plan->opt->tls == BENCH_TLS_IMPLICIT) {
		tls_begin(lp, c);
		if (conn_gone(c))
			return;
	} else {
		c->state = C_BANNER;
	}
	arm_recv(lp, c);
}

/* The slot is free again (its socket closed): reconnect, back off, or end. */
static void conn_settle(struct loop *lp, struct conn *c)
{
	uint64_t now = lp->clock_ns;
	c->fd = -1;
	bool want = c->idle_role ? !lp->stopping : loop_has_work(lp, now);
	if (c->failed)
		c->failures++;
	if (want && c->failures < CONN_FAILURES_MAX) {
		if (c->failed) {
			c->state = C_BACKOFF;
			c->wake_ns = now + RECONNECT_BACKOFF_NS * c->failures;
		} else {
			queue_connect(lp, c);
		}
		return;
	}
	c->state = C_DONE;
	if (c->idle_role) {
		RMX_ASSERT(lp->open_idle > 0);
		lp->open_idle--;
	} else {
		RMX_ASSERT(lp->open_active > 0);
		lp->open_active--;
	}
}

static void conn_maybe_release(struct loop *lp, struct conn *c)
{
	if (c->state != C_CLOSING || c->inflight > 0)
		return;
	if (c->tls.ssl) {
		/* Only a full handshake's session is kept: the copy of a
		 * resumed TLS 1.3 session (wolfSSL 5.5) did not resume again
		 * against OpenSSL 3 ("binder does not verify"). */
		if (lp->plan->opt->tls_resume && c->tls_on && !tls_link_resumed(&c->tls)) {
			struct tls_session *s = tls_link_session(&c->tls);
			if (s) {
				tls_session_free(lp->session);
				lp->session = s;
			}
		}
		tls_link_end(&c->tls);
	}
	c->tls_on = false;
	if (c->fd >= 0 && close(c->fd) != 0)
		fprintf(stderr, "ringmx-bench: close: %s\n", strerror(errno));
	conn_settle(lp, c);
}

/* Begins closing: wakes the in-flight operations (shutdown, then a cancel of
 * whatever still waits on the socket). The slot is released by
 * conn_maybe_release() once the last one completes, called by whoever drives
 * the connection (dispatch, the sweep), never from inside a handler that
 * still looks at the connection afterwards. */
static void conn_close(struct loop *lp, struct conn *c)
{
	if (c->state == C_CLOSING || c->state == C_DONE || c->state == C_BACKOFF)
		return;
	c->state = C_CLOSING;
	c->deadline_ns = 0;
	if (c->fd >= 0 && c->inflight > 0) {
		(void)shutdown(c->fd, SHUT_RDWR); /* ENOTCONN is expected mid-connect */
		struct io_uring_sqe *sqe = get_sqe(lp);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, pack_user_data(conn_index(lp, c), OP_CANCEL));
		c->inflight++;
	}
}

/* A connection-level failure. code: the reply that ended it, 0 for none. */
static void conn_fail(struct loop *lp, struct conn *c, unsigned code)
{
	if (c->in_message)
		finish_message(lp, c, code, now_ns());
	lp->st.conn_errors++;
	c->failed = true;
	conn_close(lp, c);
}

static void conn_quit(struct loop *lp, struct conn *c)
{
	send_command(lp, c, CMD_QUIT, sizeof(CMD_QUIT) - 1, C_QUIT);
}

/* Between messages: start the next one (closed loop), wait for the schedule
 * (rate mode), or end the session. */
static void conn_ready(struct loop *lp, struct conn *c)
{
	uint64_t now = now_ns();
	if (!loop_has_work(lp, now)) {
		conn_quit(lp, c);
		return;
	}
	if (lp->rate_per_s > 0) {
		c->state = C_READY;
		/* A connection that failed while listed is still listed: the
		 * entry stands for it again. */
		if (!c->listed_ready) {
			c->listed_ready = true;
			lp->ready[lp->ready_len++] = conn_index(lp, c);
			RMX_ASSERT(lp->ready_len <= lp->active_total);
		}
		return;
	}
	start_message(lp, c);
}

/* ----------------------------------------------------------- the schedule */

/* Rate mode: the time message k of this loop is due. */
static uint64_t due_ns(const struct loop *lp, uint64_t k)
{
	double offset_s = ((double)k + lp->phase) / lp->rate_per_s;
	return lp->plan->start_ns + (uint64_t)(offset_s * (double)NS_PER_S);
}

/* Starts every due message that has a ready connection; returns the time the
 * next one is due (UINT64_MAX: none). Lateness is measured from the due
 * time, so a starved schedule shows up in the lag histogram. */
static uint64_t run_schedule(struct loop *lp, uint64_t now)
{
	while (loop_has_work(lp, now)) {
		uint64_t due = due_ns(lp, lp->started);
		if (!lp->counted && due >= lp->plan->end_ns) {
			lp->stopping = true; /* every message of the schedule started */
			break;
		}
		if (due > now) {
			lp->starved = false;
			return due;
		}
		if (lp->ready_len == 0) {
			lp->starved = true;
			return UINT64_MAX; /* late: the next ready connection takes it */
		}
		struct conn *c = &lp->conns[lp->ready[--lp->ready_len]];
		c->listed_ready = false;
		if (c->state != C_READY)
			continue; /* failed while it waited */
		uint64_t lag = now - due;
		hist_record(&lp->st.lag, lag);
		if (lag > LATE_THRESHOLD_NS) {
			lp->st.late++;
			if (lp->starved)
				lp->st.late_no_conn++;
		}
		start_message(lp, c);
		now = now_ns();
	}
	return UINT64_MAX;
}

/* Duration mode, at the end: messages that were due before the end but
 * found no connection in time. */
static uint64_t schedule_unstarted(const struct loop *lp)
{
	uint64_t due = lp->started;
	while (due_ns(lp, due) < lp->plan->end_ns)
		due++;
	return due - lp->started;
}

/* No more messages: ready connections say QUIT. */
static void release_ready(struct loop *lp)
{
	while (lp->ready_len > 0) {
		struct conn *c = &lp->conns[lp->ready[--lp->ready_len]];
		c->listed_ready = false;
		if (c->state == C_READY)
			conn_quit(lp, c);
	}
}

/* ----------------------------------------------------------------- sweeps */

/* Timers, checked every SWEEP_INTERVAL_NS: reply deadlines, NOOPs of idle
 * connections, reconnects after back-off, and the end of the idle sessions
 * once the load is done. */
static void sweep(struct loop *lp, uint64_t now)
{
	const struct options *opt = lp->plan->opt;
	bool load_done = lp->open_active == 0;
	for (unsigned i = 0; i < lp->conn_total; i++) {
		struct conn *c = &lp->conns[i];
		if (c->deadline_ns != 0 && now > c->deadline_ns) {
			lp->st.timeouts++;
			conn_fail(lp, c, 0);
			conn_maybe_release(lp, c);
			continue;
		}
		if (c->state == C_BACKOFF && now >= c->wake_ns) {
			bool want = c->idle_role ? !lp->stopping : loop_has_work(lp, now);
			if (want) {
				queue_connect(lp, c);
			} else {
				c->state = C_DONE;
				if (c->idle_role)
					lp->open_idle--;
				else
					lp->open_active--;
			}
			continue;
		}
		if (c->state == C_IDLE && load_done) {
			conn_quit(lp, c);
			continue;
		}
		if (c->state == C_IDLE && opt->idle_noop_s > 0 && now >= c->wake_ns)
			send_command(lp, c, CMD_NOOP, sizeof(CMD_NOOP) - 1, C_NOOP);
	}
}

/* ------------------------------------------------------------- event loop */

/* The loop's ring, with room in the CQ for a completion of every operation
 * that can be in flight (a receive, a send and a cancel per connection) up to
 * the kernel's ceiling; past it the kernel keeps overflowed completions. */
static int loop_setup(struct loop *lp)
{
	uint64_t cq = RMX_MAX((uint64_t)RING_CQ_ENTRIES_MIN, 3ull * lp->conn_total);
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
		  IORING_SETUP_CLAMP;
	p.cq_entries = (unsigned)RMX_MIN(cq, (uint64_t)RING_CQ_ENTRIES_MAX);
	int rc = io_uring_queue_init_params(RING_ENTRIES, &lp->ring, &p);
	if (rc == -EINVAL) { /* an older kernel: plain ring */
		unsigned cq_entries = p.cq_entries;
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
		p.cq_entries = cq_entries;
		rc = io_uring_queue_init_params(RING_ENTRIES, &lp->ring, &p);
	}
	return rc;
}

static void dispatch(struct loop *lp, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	unsigned idx = (unsigned)(ud >> OP_BITS);
	enum op op = (enum op)(ud & ((1u << OP_BITS) - 1));
	RMX_ASSERT(idx < lp->conn_total);
	struct conn *c = &lp->conns[idx];
	RMX_ASSERT(c->inflight > 0);
	c->inflight--;
	switch (op) {
	case OP_CONNECT:
		on_connect(lp, c, cqe->res);
		break;
	case OP_RECV:
		on_recv(lp, c, cqe->res);
		break;
	case OP_SEND:
		on_send(lp, c, cqe->res);
		break;
	case OP_CANCEL:
		break;
	default:
		RMX_ASSERT(0 && "unknown op in user_data");
	}
	conn_maybe_release(lp, c);
}

void *loop_run(void *arg)
{
	struct loop *lp = arg;
	const struct options *opt = lp->plan->opt;
	int rc = loop_setup(lp);
	if (rc < 0) {
		lp->error = rc;
		return NULL;
	}
	/* The clock first: the first connects take their deadlines from it. */
	lp->clock_ns = now_ns();
	for (unsigned i = 0; i < lp->conn_total; i++)
		queue_connect(lp, &lp->conns[i]);
	lp->next_sweep_ns = lp->clock_ns + SWEEP_INTERVAL_NS;
	while (lp->open_active + lp->open_idle > 0) {
		uint64_t now = now_ns();
		lp->clock_ns = now;
		uint64_t wake = lp->next_sweep_ns;
		if (opt->rate_per_s > 0)
			wake = RMX_MIN(wake, run_schedule(lp, now));
		if (!lp->stopping && !loop_has_work(lp, now)) {
			lp->stopping = true;
			if (opt->rate_per_s > 0 && !lp->counted)
				lp->st.never_started = schedule_unstarted(lp);
		}
		if (lp->stopping)
			release_ready(lp);
		if (now >= lp->next_sweep_ns) {
			sweep(lp, now);
			lp->next_sweep_ns = now + SWEEP_INTERVAL_NS;
			wake = RMX_MIN(wake, lp->next_sweep_ns);
		}
		if (lp->open_active + lp->open_idle == 0)
			break;
		uint64_t wait = wake > now ? wake - now : 0;
		struct __kernel_timespec ts = { .tv_sec = (long long)(wait / NS_PER_S),
						.tv_nsec = (long long)(wait % NS_PER_S) };
		struct io_uring_cqe *cqe;
		rc = io_uring_submit_and_wait_timeout(&lp->ring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
			fprintf(stderr, "ringmx-bench: io_uring wait: %s\n", strerror(-rc));
			lp->error = rc;
			break;
		}
		lp->clock_ns = now_ns();
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&lp->ring, head, cqe) {
			dispatch(lp, cqe);
			seen++;
		}
		io_uring_cq_advance(&lp->ring, seen);
	}
	io_uring_queue_exit(&lp->ring);
	return NULL;
}

/* ----------------------------------------------------------------- set-up */

static int resolve(struct plan *pl, const struct options *opt)
{
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_UNSPEC;
	int rc = getaddrinfo(opt->host, opt->port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "ringmx-bench: --server %s:%s: %s\n", opt->host, opt->port,
			gai_strerror(rc));
		return -1;
	}
	RMX_ASSERT(res->ai_addrlen <= sizeof(pl->addr));
	memcpy(&pl->addr, res->ai_addr, res->ai_addrlen);
	pl->addr_len = res->ai_addrlen;
	freeaddrinfo(res);
	bool loopback127 = false;
	if (pl->addr.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&pl->addr;
		loopback127 = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (opt->source_spread == 1 && !loopback127) {
		fprintf(stderr, "ringmx-bench: --source-spread on needs a 127.* IPv4 server\n");
		return -1;
	}
	pl->spread = opt->source_spread == -1 ? loopback127 : opt->source_spread == 1;
	return 0;
}

/* Recipient i (0-based) of every message: --to itself for one recipient,
 * else its local part with i+1 appended (user1@dom, user2@dom, ...). */
static int recipient_address(const struct options *opt, unsigned i, char *buf, size_t cap)
{
	int n;
	const char *at = strrchr(opt->to, '@');
	if (opt->rcpts == 1)
		n = snprintf(buf, cap, "%s", opt->to);
	else if (at == NULL)
		n = snprintf(buf, cap, "%s%u", opt->to, i + 1);
	else
		n = snprintf(buf, cap, "%.*s%u%s", (int)(at - opt->to), opt->to, i + 1, at);
	return (n < 0 || (size_t)n >= cap) ? -1 : n;
}

int plan_build(struct plan *pl, const struct options *opt)
{
	memset(pl, 0, sizeof(*pl));
	pl->opt = opt;
	if (resolve(pl, opt) != 0)
		return -2;
	pl->cmd_count = opt->rcpts + 2;
	size_t cap = 64 + strlen(opt->from) + (size_t)opt->rcpts * (ADDRESS_MAX_BYTES + 32);
	pl->commands = malloc(cap);
	pl->cmd_off = calloc(pl->cmd_count, sizeof(uint32_t));
	pl->cmd_len = calloc(pl->cmd_count, sizeof(uint32_t));
	if (pl->commands == NULL || pl->cmd_off == NULL || pl->cmd_len == NULL)
		return -1;
	size_t len = 0;
	for (unsigned i = 0; i < pl->cmd_count; i++) {
		char addr[ADDRESS_MAX_BYTES + 16];
		int n;
		if (i == 0) {
			n = snprintf(pl->commands + len, cap - len, "MAIL FROM:<%s>\r\n", opt->from);
		} else if (i + 1 < pl->cmd_count) {
			if (recipient_address(opt, i - 1, addr, sizeof(addr)) < 0)
				return -1;
			n = snprintf(pl->commands + len, cap - len, "RCPT TO:<%s>\r\n", addr);
		} else {
			n = snprintf(pl->commands + len, cap - len, "DATA\r\n");
		}
		if (n < 0 || (size_t)n >= cap - len)
			return -1;
		pl->cmd_off[i] = (uint32_t)len;
		pl->cmd_len[i] = (uint32_t)n;
		len += (size_t)n;
	}
	pl->commands_len = len;
	if (opt->tls != BENCH_TLS_OFF && (pl->tls_ctx = tls_client_ctx_new()) == NULL)
		return -1;
	int n = snprintf(pl->ehlo, sizeof(pl->ehlo), "EHLO %s\r\n", opt->helo);
	RMX_ASSERT(n > 0 && (size_t)n < sizeof(pl->ehlo));
	pl->ehlo_len = (size_t)n;
	char header[MESSAGE_HEADER_MAX_BYTES];
	pl->header_bytes = message_header_format(header, sizeof(header), opt->from, opt->to, 0, 0);
	if (pl->header_bytes == 0)
		return -1;
	for (unsigned i = 0; i < opt->sizes.count; i++) {
		pl->fill[i] = body_fill_make(opt->sizes.size_bytes[i], pl->header_bytes,
					     &pl->fill_bytes[i]);
		if (pl->fill[i] == NULL)
			return -1;
	}
	return 0;
}

void plan_free(struct plan *pl)
{
	free(pl->commands);
	free(pl->cmd_off);
	free(pl->cmd_len);
	for (unsigned i = 0; i < SIZE_CLASSES_MAX; i++)
		free(pl->fill[i]);
	tls_client_ctx_free(pl->tls_ctx);
	pl->tls_ctx = NULL;
}

/* Splits n as evenly as possible: loop i of count gets this share. */
static uint64_t share(uint64_t n, unsigned i, unsigned count)
{
	return n / count + (i < n % count ? 1 : 0);
}

/* Sets up lp (zeroed by the caller). Returns 0 or -1 when out of memory. */
static int loop_init(struct loop *lp, const struct plan *pl, unsigned index)
{
	const struct options *opt = pl->opt;
	lp->index = index;
	lp->plan = pl;
	lp->active_total = (unsigned)share(opt->conns, index, opt->threads);
	unsigned idle = (unsigned)share(opt->idle_conns, index, opt->threads);
	lp->conn_total = lp->active_total + idle;
	lp->open_active = lp->active_total;
	lp->open_idle = idle;
	lp->counted = opt->messages != 0;
	lp->quota = lp->counted ? share(opt->messages, index, opt->threads) : 0;
	lp->rate_per_s = opt->rate_per_s / opt->threads;
	lp->timeout_ns = (uint64_t)(opt->timeout_s * (double)NS_PER_S);
	lp->phase = (double)index / opt->threads;
	lp->source_next = index * (SOURCE_ADDRESSES / opt->threads);
	lp->rng = 0x9E3779B97F4A7C15ull * (index + 1);
	stats_init(&lp->st);
	if (lp->conn_total == 0)
		return 0;
	lp->conns = calloc(lp->conn_total, sizeof(*lp->conns));
	lp->connect_queue = calloc(lp->conn_total, sizeof(unsigned));
	lp->ready = calloc(lp->active_total + 1, sizeof(unsigned));
	lp->header_slab = malloc(((size_t)lp->active_total + 1) * 2 * (pl->header_bytes + 1));
	if (!lp->conns || !lp->connect_queue || !lp->ready || !lp->header_slab)
		return -1;
	if (opt->tls != BENCH_TLS_OFF) {
		lp->tls_slab = malloc((size_t)lp->conn_total * (TLS_IN_BYTES + TLS_OUT_BYTES));
		if (lp->tls_slab == NULL)
			return -1;
	}
	for (unsigned i = 0; i < lp->conn_total; i++) {
		struct conn *c = &lp->conns[i];
		c->fd = -1;
		c->idle_role = i >= lp->active_total;
		if (lp->tls_slab) {
			c->tls.in = lp->tls_slab + (size_t)i * (TLS_IN_BYTES + TLS_OUT_BYTES);
			c->tls.out = c->tls.in + TLS_IN_BYTES;
		}
		if (!c->idle_role) {
			c->header[0] = lp->header_slab + (size_t)i * 2 * (pl->header_bytes + 1);
			c->header[1] = c->header[0] + pl->header_bytes + 1;
		}
	}
	return 0;
}

void loop_free(struct loop *lp)
{
	if (lp == NULL)
		return;
	free(lp->conns);
	free(lp->connect_queue);
	free(lp->ready);
	free(lp->header_slab);
	free(lp->tls_slab);
	tls_session_free(lp->session);
	free(lp);
}

struct loop *loop_new(const struct plan *pl, unsigned index)
{
	struct loop *lp = calloc(1, sizeof(*lp));
	if (lp == NULL)
		return NULL;
	if (loop_init(lp, pl, index) != 0) {
		loop_free(lp);
		return NULL;
	}
	return lp;
}

const struct bench_stats *loop_stats(const struct loop *lp)
{
	return &lp->st;
}

int loop_error(const struct loop *lp)
{
	return lp->error;
}
