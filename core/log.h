/*
 * log.h - one line per event on stderr: logfmt, or JSON objects.
 *
 * Every line is
 *     ts=2026-12-01T23:59:59.123Z level=info event=NAME key=value ...
 * (RFC 3339 UTC with milliseconds), or with log_set_json(true) the same
 * facts as one JSON object per line:
 *     {"ts":"2026-12-01T23:59:59.123Z","level":"info","event":"NAME","key":"value",...}
 * A line is at most LOG_LINE_MAX_BYTES, newline included, and always 7-bit
 * clean: a longer one is cut at a whole key=value and ends with
 * truncated=true.
 *
 * Call sites write logfmt: `key=value` pairs separated by one space, keys of
 * [A-Za-z0-9_.-], values either bare (no space, '=', '"', backslash, control
 * or 8-bit byte) or double-quoted with the escapes log_value() produces.
 * Anything a client or a peer controls (HELO, paths, replies, file names)
 * goes through log_value() or the log_msg builder, never a raw %s: that is
 * what keeps a hostile value from ending a line or forging a key. As a last
 * line of defence, a control or 8-bit byte that a printf-style call site lets
 * through is replaced by '?'.
 *
 * JSON mode converts the finished logfmt text (see log_format.h for the
 * mapping).
 *
 * Where lines go: a thread with an attached struct log_buffer (a worker)
 * appends whole lines to it and never blocks; its loop writes them to fd 2
 * in batches (log_buffer_begin_write / log_buffer_write_done). Any other
 * thread (main, start-up, tools) writes each line with write(2).
 *
 * The guarantee: every line reaches fd 2 whole, or is counted as dropped
 * (ringmx_log_lines_dropped_total), whatever fd 2 is. Every write ringmx
 * makes to it, direct or batched, starts at a line boundary and holds only
 * whole lines; what makes concurrent writes of several threads safe depends
 * on the kind of fd:
 *   - a regular file: log_stderr_setup() puts it in append mode at start-up
 *     (as 2>> would). Each write then lands whole at the end of the file:
 *     the file system takes the inode lock for the whole write and sets the
 *     position to the file size under it. Without O_APPEND, io_uring writes
 *     at the file position (offset -1) read and update that position without
 *     the lock that write(2) takes, so two workers' batches would be written
 *     at the same offset, one over the other.
 *   - a pipe or FIFO (a log shipper): a write of at most PIPE_BUF is atomic,
 *     and buffered writes are at most LOG_WRITE_MAX_BYTES (= PIPE_BUF).
 *   - a terminal: the tty layer holds its write lock for a whole write.
 *   - a Unix stream socket (journald): a write of at most
 *     LOG_WRITE_MAX_BYTES goes into the peer's queue as one piece, so it is
 *     not split either (Linux behaviour, not a POSIX promise).
 * A short write is the only way a line could be split between two threads'
 * writes: its rest goes out in the thread's next write. The kernel writes a
 * part of such a buffer only when the rest cannot be written at all (a full
 * disk, a file size limit, a signal during a terminal write, a non-blocking
 * terminal that is full), and then the rest usually fails too and is counted.
 * EAGAIN (a non-blocking fd that is full) and EINTR are retried, every
 * LOG_WRITE_RETRY_MS, until a write has made no progress for
 * LOG_WRITE_STALL_MAX_MS; then its lines are dropped and counted. Any other
 * error drops the lines of that write, counted.
 *
 * log_set_level and log_set_json: the main thread, at start-up and on
 * reload; a line being formatted meanwhile uses the old or the new setting.
 * Everything else: any thread.
 */
#ifndef RINGMX_LOG_H
#define RINGMX_LOG_H

#include <string.h>

#include "../common/base.h"
#include "../common/bounds.h"
#include "log_format.h"

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
/* true: JSON objects (log_format = json); false: logfmt (the default). */
void log_set_json(bool json);

/* True if lines of this level are written: skip building costly values. */
bool log_enabled(enum log_level level);

/*
 * Start-up, main thread, before any other thread logs: when fd 2 is a
 * regular file opened without O_APPEND, sets O_APPEND on it (the open file
 * description, shared with whoever else holds it: they append too). Returns
 * 0 (also when fd 2 is something else, or closed), or -errno when the flag
 * could not be set; then the caller must not start workers (their writes
 * would overwrite each other).
 */
RMX_MUST_CHECK int log_stderr_setup(void);

/* Lines that threads without a log buffer could not write (see above). */
uint64_t log_direct_dropped_lines(void);

/* Formats "ts=... level=... " + fmt (logfmt, see above) and emits one line. */
void log_line(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_line(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_line(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_line(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_line(LOG_DEBUG, __VA_ARGS__)

/* ---- building a line without printf ----------------------------------- */

/*
 * A line assembled pair by pair, quoting each value as log_value() does:
 *
 *     struct log_msg m;
 *     if (log_begin(&m, LOG_INFO, "message_accepted")) {
 *             log_add_span(&m, "from", reverse_path);
 *             log_add_u64(&m, "rcpts", n);
 *             log_end(&m);
 *     }
 *
 * On a worker in logfmt mode the text is formatted straight into the
 * thread's log buffer (no copy, no allocation). Between log_begin and
 * log_end the thread must not log anything else. A pair that does not fit
 * the line is cut (and the line ends with truncated=true). Lives on the
 * caller's stack; private fields.
 */
struct log_msg {
	char *buf;      /* the logfmt text: in the thread's log buffer, or text */
	size_t len;
	size_t cap;     /* text bytes allowed, room for " truncated=true" kept */
	bool active;    /* between a true log_begin and log_end */
	bool direct;    /* buf is inside the thread's log buffer */
	bool json;      /* the format when the line began */
	bool cut;
	char text[LOG_LINE_MAX_BYTES];
};

/* Starts a line with ts, level and event (an identifier the caller owns).
 * Returns false, and the rest are no-ops, when level is filtered out. */
bool log_begin(struct log_msg *m, enum log_level level, const char *event);
/* Adds " key=value"; key is a constant of [A-Za-z0-9_.-] (asserted). */
void log_add(struct log_msg *m, const char *key, const void *bytes, size_t len);
void log_add_u64(struct log_msg *m, const char *key, uint64_t value);

/* The symbolic name of an errno value, either sign ("ENOSPC" for 28 or
 * -28), for error=NAME in log lines; an unknown value as its number. The
 * result lives until the calling thread's next call. */
const char *log_errno_name(int err);
/* Emits the line (appends it to the thread's buffer, or writes it). */
void log_end(struct log_msg *m);

static inline void log_add_span(struct log_msg *m, const char *key, struct span value)
{
	log_add(m, key, value.ptr, value.len);
}

static inline void log_add_str(struct log_msg *m, const char *key, const char *value)
{
	log_add(m, key, value, strlen(value));
}

/* ---- per-worker buffering --------------------------------------------- */


/*
 * Two halves: the loop writes one while lines fill the other. A line that
 * does not fit the filling half is dropped and counted: appending never
 * blocks and the buffer never grows. Owned and used by one thread.
 */
struct log_buffer {
	uint32_t fill;            /* index of the half taking new lines */
	uint32_t fill_len;        /* bytes of whole lines in it */
	uint32_t write_off;       /* next byte of the other half to write */
	uint32_t write_len;       /* bytes of lines in the other half */
	uint32_t inflight_bytes;  /* handed to the write in flight; 0: none */
	bool reserved;            /* a log_msg is being formatted into it */
	bool stalled;             /* the last write met EAGAIN/EINTR */
	uint64_t stalled_since_ms; /* when: the last progress, or the first EAGAIN */
	uint64_t retry_at_ms;     /* while stalled: no write before this */
	uint64_t dropped_lines;
	uint32_t write_max;       /* bytes per write: PIPE_BUF, or a half for a file */
	bool waiting_seen;        /* log_buffer_due_ms has seen lines waiting ... */
	uint64_t waiting_since_ms; /* ... first at this time */
	bool busy;                /* many lines lately: batch the writes */
	uint32_t window_lines;    /* lines added since window_start_ms */
	uint64_t window_start_ms;
	char half[2][LOG_BUFFER_HALF_BYTES];
};

/* Empty buffer for lines that will be written to fd: a regular file takes
 * a whole half per write, anything else (a pipe, a socket, a terminal, or
 * fd < 0) at most LOG_WRITE_MAX_BYTES. */
void log_buffer_init(struct log_buffer *b, int fd);

/* Lines this thread logs from now on go to b (NULL: written directly).
 * Thread-local. */
void log_thread_attach(struct log_buffer *b);

/*
 * If lines are waiting, no write is in flight and no retry is pending before
 * now_ms (CLOCK_MONOTONIC milliseconds): marks a write in flight and returns
 * true with the bytes to write (whole lines, or the rest of a short write;
 * at most write_max, ending with a newline). The bytes stay valid and
 * unchanged until log_buffer_write_done. The caller submits one write of
 * them to fd 2.
 */
bool log_buffer_begin_write(struct log_buffer *b, uint64_t now_ms, const void **p, size_t *n);

/*
 * Whether the loop should write now, at now_ms: 0 when a write is due;
 * otherwise the longest the loop may wait before asking again; UINT64_MAX
 * when nothing waits or a write is in flight (its completion wakes the
 * loop). Call it every loop turn: it also judges, once per
 * LOG_BUSY_WINDOW_MS, whether the buffer is busy (LOG_BUSY_WINDOW_LINES or
 * more in the last window). Waiting lines are due at once unless the buffer
 * is busy; then they are due once a batch of LOG_WRITE_BATCH_BYTES (or
 * write_max, whichever is smaller) waits, or loop_idle says that the loop's
 * last wait ended with nothing to do, or they have waited LOG_WRITE_DELAY_MS
 * since the first call that saw them; meanwhile the loop waits at most
 * LOG_WRITE_IDLE_MS at a time. The rest of a short write is due at once, a
 * retry after EAGAIN at its time. So a busy loop writes one batch where it
 * wrote once per turn, and a quiet one writes every line at once.
 */
uint64_t log_buffer_due_ms(struct log_buffer *b, uint64_t now_ms, bool loop_idle);

/* The completion of that write at now_ms: res bytes written (a short write
 * keeps the rest for the next begin_write); -EAGAIN or -EINTR keep the
 * bytes for a retry after LOG_WRITE_RETRY_MS, unless nothing has gone out
 * for LOG_WRITE_STALL_MAX_MS; any other negative errno, or 0, drops the
 * bytes (their lines are counted as dropped). */
void log_buffer_write_done(struct log_buffer *b, int res, uint64_t now_ms);

/* At thread exit, with no write in flight (asserted): writes everything
 * left with blocking write(2), in the same whole-line pieces, waiting for a
 * full non-blocking fd 2 until nothing has gone out for
 * LOG_WRITE_STALL_MAX_MS (then the rest is dropped, counted). */
void log_buffer_flush_sync(struct log_buffer *b);

/* Lines lost so far: the filling half was full, or their write failed. */
uint64_t log_buffer_dropped_lines(const struct log_buffer *b);

#endif
