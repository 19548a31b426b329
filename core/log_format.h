/*
 * log_format.h - the text of a log line (the format that core/log
 * describes): logfmt values and keys, and the JSON form of a logfmt line.
 * Pure, no state: any thread. core/log builds its lines with these; tools
 * and tests may call them directly.
 *
 * The JSON form of a logfmt line: quoted values are unescaped and
 * re-escaped as JSON strings (control bytes as \u00XX, bytes >= 0x80 as
 * \u0080..\u00FF: each byte maps to the code point of the same number, so
 * the original bytes come back by encoding the string as Latin-1); bare
 * decimal integers of up to 15 digits without leading zeros become numbers;
 * everything else is a string. A key that repeats gets a suffix: the second
 * `worker` is "worker_2", the third "worker_3". Text that does not parse as
 * logfmt (a call-site bug) goes, from the first bad pair on, into "msg".
 */
#ifndef RINGMX_LOG_FORMAT_H
#define RINGMX_LOG_FORMAT_H

#include "../common/base.h"

/* Room that any value of len bytes needs uncut: every byte as \xHH, two
 * quotes, the NUL. */
#define LOG_VALUE_CAP(len) (4 * (size_t)(len) + 3)
/* The least cap at which a value that does not fit is still written, cut:
 * "...", quotes and NUL. */
#define LOG_VALUE_MIN_CAP 6

/*
 * Writes bytes[0..len) as a logfmt value into out, NUL-terminated, never
 * more than cap bytes in all. Bare when every byte is a letter, a digit or
 * one of -._@:/+[]<>,;~!*%#&?' ; otherwise double-quoted, with \" \\ \n \r
 * \t, and \xHH (lowercase hex) for every other control byte, DEL and byte
 * >= 0x80; the empty value is "". When the whole form does not fit, the
 * value is quoted, cut after a whole character of the escaped form and ends
 * with ... inside the quotes ("abc..."); below LOG_VALUE_MIN_CAP such a value
 * is written as nothing (out = ""). Returns strlen(out). Pure; any thread.
 */
size_t log_value(char *out, size_t cap, const void *bytes, size_t len);

static inline size_t log_span(char *out, size_t cap, struct span value)
{
	return log_value(out, cap, value.ptr, value.len);
}

/* log_value, also saying (*cut) whether the value was cut to fit cap. */
size_t log_value_write(char *out, size_t cap, const uint8_t *p, size_t n, bool *cut);

/* A byte a logfmt key may hold: [A-Za-z0-9_.-]. */
bool log_key_byte(uint8_t c);
/* A key of len (1 or more) such bytes. */
bool log_key_ok(const char *key, size_t len);

/*
 * The JSON form of one logfmt text (no newline), as described above, with
 * a newline, NUL-terminated, at most cap bytes in all (a value that does
 * not fit is cut with "..." and "truncated":true ends the object; cap must
 * be at least LOG_JSON_MIN_CAP). Returns the length written. Pure; exposed
 * for tests.
 */
#define LOG_JSON_MIN_CAP 64
size_t log_json_from_logfmt(char *out, size_t cap, const char *text, size_t len);

#endif
