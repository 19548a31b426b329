/*
 * log.c - log lines: levels, building a line, per-worker buffers, writing
 * to fd 2. The text itself (values, keys, the JSON form) is core/log_format.
 *
 * A line is built as logfmt text (log_begin/log_add/log_end, or log_line's
 * printf), at most LOG_LINE_MAX_BYTES with its newline. In logfmt mode on a
 * thread with a log buffer it is formatted in place at the end of the
 * buffer's filling half; otherwise on the caller's stack. JSON mode converts
 * the finished logfmt text, again straight into the buffer when there is
 * room. A thread without a buffer writes the line with one write(2).
 *
 * Invariants of struct log_buffer: both halves hold only whole lines
 * (fill_len and write_len end on a newline); the writing half is the one
 * that is not filling; write_off <= write_len, and both are zero when the
 * writing half is done; at most one write is in flight, and its bytes are
 * [write_off, write_off + inflight_bytes) of the writing half, never touched
 * until its completion; while stalled, no write is in flight.
 *
 * Why append mode and not one log writer or a lock: the defect to avoid is
 * two workers' io_uring writes at the same file position (io_uring reads and
 * updates f_pos for offset -1 without the f_pos_lock that write(2) takes).
 * O_APPEND is the kernel's own answer for many writers of one file: the
 * position is taken from the file size under the inode lock that the file
 * system holds for the whole write (generic_write_checks; ext4, xfs, btrfs,
 * tmpfs alike), for write(2) and io_uring alike (fcntl F_SETFL refreshes
 * the flags io_uring reads). It costs nothing per write, keeps the workers
 * independent (no shared lock, no thread handing lines over), and also does
 * the right thing when the file is truncated under us (logrotate
 * copytruncate) or shared with other processes. Pipes, terminals and
 * sockets have no position to share.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(LOG_WRITE_MAX_BYTES <= PIPE_BUF, "one log write is atomic on a pipe");
_Static_assert(LOG_BUFFER_HALF_BYTES < UINT32_MAX, "buffer offsets are 32-bit");

/* Set at start-up and on reload by the main thread, read by every thread:
 * relaxed atomics (a line formatted during the switch may use either). */
static atomic_int log_threshold = LOG_INFO;
static atomic_bool log_json_mode;

/* The attached buffer of this thread, if any. */
static _Thread_local struct log_buffer *log_tls_buffer;

/* Lines that threads without a buffer could not write. */
static atomic_uint_fast64_t log_direct_dropped;

static const char *const level_prefix[] = { " level=error", " level=warn", " level=info",
					     " level=debug" };
static const uint8_t level_prefix_len[] = { 12, 11, 11, 12 };

/* " truncated=true", kept free at the end of every line for a cut. */
#define TRUNCATED_PAIR " truncated=true"
#define TRUNCATED_PAIR_BYTES (sizeof(TRUNCATED_PAIR) - 1)

void log_set_level(enum log_level level)
{
	RMX_ASSERT((unsigned)level <= LOG_DEBUG);
	atomic_store_explicit(&log_threshold, (int)level, memory_order_relaxed);
}

void log_set_json(bool json)
{
	atomic_store_explicit(&log_json_mode, json, memory_order_relaxed);
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load_explicit(&log_threshold, memory_order_relaxed);
}

int log_stderr_setup(void)
{
	struct stat st;
	if (fstat(STDERR_FILENO, &st) != 0 || !S_ISREG(st.st_mode))
		return 0; /* closed, or a pipe, terminal, socket: no position */
	int flags = fcntl(STDERR_FILENO, F_GETFL);
	if (flags < 0)
		return -errno;
	if (flags & O_APPEND)
		return 0;
	if (fcntl(STDERR_FILENO, F_SETFL, flags | O_APPEND) != 0)
		return -errno;
	return 0;
}

uint64_t log_direct_dropped_lines(void)
{
	return atomic_load_explicit(&log_direct_dropped, memory_order_relaxed);
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Blocking: waits until fd 2 takes bytes again, at most until deadline_ms.
 * False when the deadline has passed (or poll failed). */
static bool wait_writable(uint64_t deadline_ms)
{
	for (;;) {
		uint64_t now = monotonic_ms();
		if (now >= deadline_ms)
			return false;
		struct pollfd pfd = { .fd = STDERR_FILENO, .events = POLLOUT };
		int rc = poll(&pfd, 1, (int)(deadline_ms - now));
		if (rc > 0)
			return true; /* writable, or an error the next write reports */
		if (rc < 0 && errno != EINTR)
			return false;
	}
}

/*
 * Blocking write(2) of [p, p+n) to fd 2, continuing after short writes,
 * EINTR, and EAGAIN (a non-blocking fd that is full: waits with poll until
 * nothing has gone out for LOG_WRITE_STALL_MAX_MS). Returns the bytes
 * written: n, or less after an error or a stall.
 */
static size_t write_fd2(const char *p, size_t n)
{
	size_t done = 0;
	uint64_t deadline_ms = 0;
	while (done < n) {
		ssize_t w = write(STDERR_FILENO, p + done, n - done);
		if (w > 0) {
			done += (size_t)w;
			deadline_ms = 0;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			break;
		if (deadline_ms == 0)
			deadline_ms = monotonic_ms() + LOG_WRITE_STALL_MAX_MS;
		if (!wait_writable(deadline_ms))
			break;
	}
	return done;
}


/* ---- time stamps -------------------------------------------------------- */

#define TS_BYTES 24 /* 2026-12-01T23:59:59.123Z */

/* Writes the UTC time as RFC 3339 with milliseconds (TS_BYTES, no NUL). The
 * date and time of the current second are kept per thread, so most lines
 * cost one clock read and a few digits. */
static void ts_format(char out[TS_BYTES])
{
	static _Thread_local int64_t cached_sec = -1;
	static _Thread_local char cached[TS_BYTES];
	struct timespec now;
	if (clock_gettime(CLOCK_REALTIME, &now) != 0)
		now = (struct timespec){ 0, 0 };
	if ((int64_t)now.tv_sec != cached_sec) {
		struct tm tm;
		char text[64];
		int n = -1;
		if (gmtime_r(&now.tv_sec, &tm))
			n = snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d",
				     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
				     tm.tm_min, tm.tm_sec);
		if (n != TS_BYTES - 5) /* outside years 0-9999: say so, keep the width */
			memcpy(text, "0000-00-00T00:00:00", TS_BYTES - 5);
		memcpy(cached, text, TS_BYTES - 5);
		cached_sec = (int64_t)now.tv_sec;
	}
	memcpy(out, cached, TS_BYTES - 5);
	unsigned ms = (unsigned)(now.tv_nsec / 1000000);
	out[TS_BYTES - 5] = '.';
	out[TS_BYTES - 4] = (char)('0' + ms / 100);
	out[TS_BYTES - 3] = (char)('0' + ms / 10 % 10);
	out[TS_BYTES - 2] = (char)('0' + ms % 10);
	out[TS_BYTES - 1] = 'Z';
}

/* ---- the buffer, filling side ------------------------------------------- */

void log_buffer_init(struct log_buffer *b, int fd)
{
	b->fill = 0;
	b->fill_len = 0;
	b->write_off = 0;
	b->write_len = 0;
	b->inflight_bytes = 0;
	b->reserved = false;
	b->stalled = false;
	b->stalled_since_ms = 0;
	b->retry_at_ms = 0;
	b->dropped_lines = 0;
	b->waiting_seen = false;
	b->waiting_since_ms = 0;
	b->busy = false;
	b->window_lines = 0;
	b->window_start_ms = 0;
	/* On a pipe or socket, lines of different threads stay whole only in
	 * writes of at most PIPE_BUF. A regular file in append mode (see
	 * log_stderr_setup) appends each write whole, so there a whole half
	 * goes in one write: far fewer writes. */
	struct stat st;
	b->write_max = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? LOG_BUFFER_HALF_BYTES
										: LOG_WRITE_MAX_BYTES;
}

void log_thread_attach(struct log_buffer *b)
{
	RMX_ASSERT(!b || !b->reserved);
	log_tls_buffer = b;
}

uint64_t log_buffer_dropped_lines(const struct log_buffer *b)
{
	return b->dropped_lines;
}

/* Free bytes in the filling half. When it has fewer than want and the
 * writing half is idle and empty, the halves swap first: the full one waits
 * for the loop's next write, the empty one takes new lines. */
static size_t buffer_room(struct log_buffer *b, size_t want)
{
	size_t room = LOG_BUFFER_HALF_BYTES - b->fill_len;
	if (room < want && b->write_len == 0 && b->fill_len > 0) {
		RMX_ASSERT(b->inflight_bytes == 0 && b->write_off == 0);
		b->write_len = b->fill_len;
		b->fill ^= 1;
		b->fill_len = 0;
		room = LOG_BUFFER_HALF_BYTES;
	}
	return room;
}

/* Appends one whole line (newline included), or drops and counts it. */
static void buffer_append(struct log_buffer *b, const char *line, size_t len)
{
	RMX_ASSERT(!b->reserved && len > 0 && line[len - 1] == '\n');
	if (buffer_room(b, len) < len) {
		b->dropped_lines++;
		return;
	}
	memcpy(b->half[b->fill] + b->fill_len, line, len);
	b->fill_len += (uint32_t)len;
	b->window_lines++;
}

/* One line to fd 2 with blocking write(2), for threads without a buffer;
 * a line that does not go out whole is counted. */
static void write_direct(const char *line, size_t len)
{
	if (write_fd2(line, len) < len)
		atomic_fetch_add_explicit(&log_direct_dropped, 1, memory_order_relaxed);
}

/* ---- building a line ---------------------------------------------------- */


/* Starts a line with "ts=... level=...". */
static bool msg_start(struct log_msg *m, enum log_level level)
{
	m->active = false;
	if (!log_enabled(level))
		return false;
	RMX_ASSERT((unsigned)level <= LOG_DEBUG);
	m->buf = m->text;
	m->direct = false;
	m->json = atomic_load_explicit(&log_json_mode, memory_order_relaxed);
	struct log_buffer *b = log_tls_buffer;
	if (b && !m->json && buffer_room(b, LOG_LINE_MAX_BYTES) >= LOG_LINE_MAX_BYTES) {
		RMX_ASSERT(!b->reserved);
		b->reserved = true;
		m->buf = b->half[b->fill] + b->fill_len;
		m->direct = true;
	}
	/* Room for the text; the newline and the NUL of the last value or
	 * vsnprintf take the two bytes after it. */
	m->cap = LOG_LINE_MAX_BYTES - 1 - TRUNCATED_PAIR_BYTES - 1;
	m->cut = false;
	m->active = true;
	memcpy(m->buf, "ts=", 3);
	ts_format(m->buf + 3);
	size_t n = level_prefix_len[level];
	memcpy(m->buf + 3 + TS_BYTES, level_prefix[level], n);
	m->len = 3 + TS_BYTES + n;
	return true;
}

bool log_begin(struct log_msg *m, enum log_level level, const char *event)
{
	if (!msg_start(m, level))
		return false;
	log_add(m, "event", event, strlen(event));
	return true;
}

void log_add(struct log_msg *m, const char *key, const void *bytes, size_t len)
{
	if (!m->active || m->cut)
		return;
	size_t klen = strlen(key);
	RMX_ASSERT(log_key_ok(key, klen));
	RMX_ASSERT(m->len <= m->cap);
	size_t room = m->cap - m->len;
	if (room < klen + 2 + LOG_VALUE_MIN_CAP) {
		m->cut = true;
		return;
	}
	char *at = m->buf + m->len;
	at[0] = ' ';
	memcpy(at + 1, key, klen);
	at[1 + klen] = '=';
	bool cut;
	size_t v = log_value_write(at + 2 + klen, room - (klen + 2) + 1, bytes, len, &cut);
	RMX_ASSERT(v > 0);
	m->len += klen + 2 + v;
	m->cut = cut;
}

const char *log_errno_name(int err)
{
	static _Thread_local char unknown[16];
	int e = err < 0 ? -err : err;
	const char *name = strerrorname_np(e);
	if (name != NULL)
		return name;
	snprintf(unknown, sizeof(unknown), "%d", e);
	return unknown;
}

void log_add_u64(struct log_msg *m, const char *key, uint64_t value)
{
	char digits[24];
	char *at = digits + sizeof(digits);
	do {
		*--at = (char)('0' + value % 10);
		value /= 10;
	} while (value);
	log_add(m, key, at, (size_t)(digits + sizeof(digits) - at));
}

/* A byte that would break a line or its 7-bit promise: control, DEL, 8-bit. */
static bool byte_unsafe(uint8_t c)
{
	return c < 0x20 || c >= 0x7f;
}

/* The length of s[0..n) without its last, cut, pair: the position of the
 * last space outside double quotes (0 if none). */
static size_t drop_partial_pair(const char *s, size_t n)
{
	size_t boundary = 0;
	bool quoted = false;
	for (size_t i = 0; i < n; i++) {
		if (quoted && s[i] == '\\')
			i++;
		else if (s[i] == '"')
			quoted = !quoted;
		else if (!quoted && s[i] == ' ')
			boundary = i;
	}
	return boundary;
}

/* Appends " " + the printf text of a call site. */
static void msg_vappend(struct log_msg *m, const char *fmt, va_list ap)
{
	RMX_ASSERT(m->active && m->len <= m->cap);
	size_t room = m->cap - m->len;
	if (room < 2) {
		m->cut = true;
		return;
	}
	char *at = m->buf + m->len + 1;
	int n = vsnprintf(at, room, fmt, ap); /* room - 1 bytes and a NUL */
	if (n <= 0)
		return;
	size_t got = RMX_MIN((size_t)n, room - 1);
	for (size_t i = 0; i < got; i++)
		if (byte_unsafe((uint8_t)at[i]))
			at[i] = '?';
	if ((size_t)n > got) {
		m->cut = true;
		got = drop_partial_pair(at, got);
		if (got == 0)
			return;
	}
	at[-1] = ' ';
	m->len += 1 + got;
}

void log_line(enum log_level level, const char *fmt, ...)
{
	struct log_msg m;
	if (!msg_start(&m, level))
		return;
	va_list ap;
	va_start(ap, fmt);
	msg_vappend(&m, fmt, ap);
	va_end(ap);
	log_end(&m);
}

void log_end(struct log_msg *m)
{
	if (!m->active)
		return;
	m->active = false;
	RMX_ASSERT(m->len <= m->cap);
	if (m->cut) {
		memcpy(m->buf + m->len, TRUNCATED_PAIR, TRUNCATED_PAIR_BYTES);
		m->len += TRUNCATED_PAIR_BYTES;
	}
	struct log_buffer *b = log_tls_buffer;
	if (m->direct) {
		RMX_ASSERT(b && b->reserved && m->buf == b->half[b->fill] + b->fill_len);
		m->buf[m->len++] = '\n';
		b->fill_len += (uint32_t)m->len;
		b->window_lines++;
		b->reserved = false;
		return;
	}
	if (!m->json) {
		m->buf[m->len++] = '\n';
		if (b)
			buffer_append(b, m->buf, m->len);
		else
			write_direct(m->buf, m->len);
		return;
	}
	if (b && buffer_room(b, LOG_LINE_MAX_BYTES) >= LOG_LINE_MAX_BYTES) {
		size_t n = log_json_from_logfmt(b->half[b->fill] + b->fill_len, LOG_LINE_MAX_BYTES,
						m->buf, m->len);
		b->fill_len += (uint32_t)n;
		b->window_lines++;
		return;
	}
	char json[LOG_LINE_MAX_BYTES];
	size_t n = log_json_from_logfmt(json, sizeof(json), m->buf, m->len);
	if (b)
		buffer_append(b, json, n);
	else
		write_direct(json, n);
}


/* ---- the buffer, writing side ------------------------------------------- */

bool log_buffer_begin_write(struct log_buffer *b, uint64_t now_ms, const void **p, size_t *n)
{
	RMX_ASSERT(!b->reserved);
	if (b->inflight_bytes)
		return false;
	if (b->stalled && now_ms < b->retry_at_ms)
		return false;
	if (b->write_off == b->write_len) {
		RMX_ASSERT(b->write_off == 0);
		if (b->fill_len == 0)
			return false;
		b->write_len = b->fill_len;
		b->fill ^= 1;
		b->fill_len = 0;
	}
	const char *s = b->half[b->fill ^ 1] + b->write_off;
	size_t len = b->write_len - b->write_off;
	if (len > b->write_max) {
		const char *nl = memrchr(s, '\n', b->write_max);
		RMX_ASSERT(nl); /* every line, and every rest of one, is shorter */
		len = (size_t)(nl - s) + 1;
	}
	RMX_ASSERT(s[len - 1] == '\n');
	b->inflight_bytes = (uint32_t)len;
	b->waiting_seen = false; /* what waits from now on starts a new wait */
	*p = s;
	*n = len;
	return true;
}

/* Busy: the last LOG_BUSY_WINDOW_MS (or more) held LOG_BUSY_WINDOW_LINES
 * lines or more. Judged once per window, from the loop's own calls. */
static void busy_update(struct log_buffer *b, uint64_t now_ms)
{
	if (now_ms - b->window_start_ms < LOG_BUSY_WINDOW_MS)
		return;
	b->busy = b->window_lines >= LOG_BUSY_WINDOW_LINES;
	b->window_lines = 0;
	b->window_start_ms = now_ms;
}

uint64_t log_buffer_due_ms(struct log_buffer *b, uint64_t now_ms, bool loop_idle)
{
	busy_update(b, now_ms);
	if (b->inflight_bytes)
		return UINT64_MAX;
	if (b->stalled && now_ms < b->retry_at_ms)
		return b->retry_at_ms - now_ms;
	if (b->write_off < b->write_len)
		return 0; /* the rest of a short write, or a retry: the line it began */
	if (b->fill_len == 0)
		return UINT64_MAX;
	if (!b->busy || loop_idle ||
	    b->fill_len >= RMX_MIN(b->write_max, (uint32_t)LOG_WRITE_BATCH_BYTES))
		return 0;
	if (!b->waiting_seen) {
		b->waiting_seen = true;
		b->waiting_since_ms = now_ms;
	}
	uint64_t waited_ms = now_ms - b->waiting_since_ms;
	if (waited_ms >= LOG_WRITE_DELAY_MS)
		return 0;
	return RMX_MIN((uint64_t)LOG_WRITE_IDLE_MS, LOG_WRITE_DELAY_MS - waited_ms);
}

/* Gives up the bytes of the write in flight: their lines, and the line a
 * short write began, are counted as dropped. */
static void drop_inflight(struct log_buffer *b)
{
	const char *s = b->half[b->fill ^ 1] + b->write_off;
	for (uint32_t i = 0; i < b->inflight_bytes; i++)
		b->dropped_lines += s[i] == '\n';
	b->write_off += b->inflight_bytes;
}

void log_buffer_write_done(struct log_buffer *b, int res, uint64_t now_ms)
{
	RMX_ASSERT(b->inflight_bytes > 0);
	if (res > 0) {
		RMX_ASSERT((uint32_t)res <= b->inflight_bytes);
		b->write_off += (uint32_t)res;
		b->stalled = false;
	} else if ((res == -EAGAIN || res == -EINTR) &&
		   (!b->stalled || now_ms - b->stalled_since_ms < LOG_WRITE_STALL_MAX_MS)) {
		/* Nothing went out: the same bytes again a little later (anything
		 * else first could split the line a short write began). */
		if (!b->stalled) {
			b->stalled = true;
			b->stalled_since_ms = now_ms;
		}
		b->retry_at_ms = now_ms + LOG_WRITE_RETRY_MS;
		b->inflight_bytes = 0;
		return;
	} else {
		drop_inflight(b); /* an error, 0 bytes, or stuck for too long */
		b->stalled = false;
	}
	b->inflight_bytes = 0;
	RMX_ASSERT(b->write_off <= b->write_len);
	if (b->write_off == b->write_len) {
		b->write_off = 0;
		b->write_len = 0;
	}
}

void log_buffer_flush_sync(struct log_buffer *b)
{
	RMX_ASSERT(b->inflight_bytes == 0);
	b->stalled = false; /* write_fd2 waits for a full fd itself */
	const void *p;
	size_t n;
	while (log_buffer_begin_write(b, 0, &p, &n)) {
		size_t w = write_fd2(p, n);
		if (w == n) {
			log_buffer_write_done(b, (int)n, 0);
			continue;
		}
		/* Failed or stalled: this write's rest and everything after it are
		 * dropped and counted, without a wait for each piece. */
		if (w > 0)
			log_buffer_write_done(b, (int)w, 0);
		while (b->inflight_bytes || log_buffer_begin_write(b, 0, &p, &n))
			log_buffer_write_done(b, -EIO, 0);
		return;
	}
}
