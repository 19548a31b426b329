/*
 * auth_users.c - the auth_users file: load, validate, look up, check.
 *
 * The file is read whole (at most AUTH_USERS_FILE_MAX_BYTES) into one block
 * that the table keeps: names and hashes are NUL-terminated in place and the
 * entries, sorted by name, point into it, so a table is two allocations. A
 * loaded table is never written again, which is what lets the verifier
 * threads read it without locks and a reload swap it whole.
 *
 * Timing: the lookup is a binary search (microseconds); the check is one
 * crypt_r (milliseconds), run for unknown users too, against the hash of the
 * first user in name order (same scheme and cost as real users), or against
 * a built-in yescrypt hash when the table is empty; the answer for an unknown
 * user is then always a failure.
 */
#include "auth_users.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

/* One line of the file, after the load. */
struct auth_user_entry {
	const char *name; /* NUL-terminated, in text */
	const char *hash; /* NUL-terminated, in text */
	uint32_t name_len;
	uint32_t hash_len;
	uint32_t line;
};

struct auth_users {
	char *text;                      /* the file, names and hashes cut out of it */
	struct auth_user_entry *entries; /* sorted by name (bytes, then length) */
	size_t count;
};

/* A yescrypt hash of a string no one types, with the default cost: what an
 * unknown user is checked against when the table is empty. */
static const char dummy_hash[] =
	"$y$j9T$UVOYKikPsBCGZGVtOlyAb0$F9UvK8mKjtkXArP8x0lRO6ao14ropoeWtnJ7pCgXCm8";

_Static_assert(AUTH_PASSWORD_MAX_BYTES < CRYPT_MAX_PASSPHRASE_SIZE,
	       "a password and its NUL fit crypt_r's passphrase limit");

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen,
							   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* The crypt(3) alphabet ("./0-9A-Za-z") plus what settings use between
 * fields ('$' separators, "rounds=N" of SHA-512-crypt). */
static bool hash_char_ok(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       c == '.' || c == '/' || c == '$' || c == '=';
}

/*
 * A hash we accept: "$y$PARAMS$SALT$HASH" (HASH 43 characters) or
 * "$6$[rounds=N$]SALT$HASH" (HASH 86), in the crypt alphabet, with a setting
 * libxcrypt calls sound. Returns NULL or what is wrong.
 */
static const char *hash_problem(const char *h, size_t len)
{
	if (len > AUTH_HASH_MAX_BYTES)
		return "hash too long";
	size_t want_fields, last_len;
	if (len >= 3 && memcmp(h, "$y$", 3) == 0) {
		want_fields = 3; /* params, salt, hash */
		last_len = 43;
	} else if (len >= 3 && memcmp(h, "$6$", 3) == 0) {
		want_fields = memcmp(h + 3, "rounds=", RMX_MIN(len - 3, (size_t)7)) == 0 ? 3 : 2;
		last_len = 86;
	} else {
		return "unsupported hash (use yescrypt $y$ or SHA-512-crypt $6$, e.g. mkpasswd -m yescrypt)";
	}
	size_t fields = 0, field_len = 0;
	for (size_t i = 3; i < len; i++) {
		if (!hash_char_ok((unsigned char)h[i]))
			return "hash holds a character crypt(3) never writes";
		if (h[i] == '$') {
			if (field_len == 0)
				return "hash has an empty field";
			fields++;
			field_len = 0;
		} else {
			field_len++;
		}
	}
	if (field_len == 0)
		return "hash is incomplete";
	fields++;
	if (fields != want_fields || field_len != last_len)
		return "hash is malformed (wrong number or length of fields)";
	if (crypt_checksalt(h) != CRYPT_SALT_OK)
		return "hash settings refused by crypt(3)";
	return NULL;
}

static int entry_cmp_name(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, RMX_MIN(alen, blen));
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int entry_cmp(const void *pa, const void *pb)
{
	const struct auth_user_entry *a = pa, *b = pb;
	int c = entry_cmp_name(a->name, a->name_len, b->name, b->name_len);
	if (c != 0)
		return c;
	return a->line < b->line ? -1 : a->line > b->line;
}

/* Reads path whole into a NUL-terminated block. 0 or -1 with err. */
static int read_file(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	char *buf = malloc(AUTH_USERS_FILE_MAX_BYTES + 1);
	if (buf == NULL) {
		fclose(f);
		set_err(err, errlen, "%s: out of memory", path);
		return -1;
	}
	size_t n = fread(buf, 1, AUTH_USERS_FILE_MAX_BYTES + 1, f);
	bool bad = ferror(f) != 0;
	fclose(f);
	if (bad) {
		free(buf);
		set_err(err, errlen, "%s: read error", path);
		return -1;
	}
	if (n > AUTH_USERS_FILE_MAX_BYTES) {
		free(buf);
		set_err(err, errlen, "%s: larger than %u bytes", path, AUTH_USERS_FILE_MAX_BYTES);
		return -1;
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Parses one line text[0..len) (no LF) into e. 0, 1 (nothing on it) or -1. */
static int parse_line(char *text, size_t len, uint32_t line, struct auth_user_entry *e,
		      const char *path, char *err, size_t errlen)
{
	size_t b = 0;
	while (b < len && is_blank(text[b]))
		b++;
	while (len > b && is_blank(text[len - 1]))
		len--;
	if (b == len || text[b] == '#')
		return 1;
	char *name = text + b;
	char *colon = memchr(name, ':', len - b);
	if (colon == NULL) {
		set_err(err, errlen, "%s:%u: expected user:hash", path, line);
		return -1;
	}
	size_t name_len = (size_t)(colon - name);
	if (name_len == 0 || name_len > AUTH_USER_NAME_MAX_BYTES) {
		set_err(err, errlen, "%s:%u: user name empty or longer than %d bytes", path, line,
			AUTH_USER_NAME_MAX_BYTES);
		return -1;
	}
	for (size_t i = 0; i < name_len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= ' ' || c == 0x7f) {
			set_err(err, errlen, "%s:%u: user name holds a space or control character",
				path, line);
			return -1;
		}
	}
	char *hash = colon + 1;
	size_t hash_len = (size_t)(text + len - hash);
	if (memchr(hash, '\0', hash_len) != NULL) {
		set_err(err, errlen, "%s:%u: NUL byte", path, line);
		return -1;
	}
	hash[hash_len] = '\0'; /* drops trailing blanks; crypt_checksalt reads to a NUL */
	const char *problem = hash_problem(hash, hash_len);
	if (problem != NULL) {
		set_err(err, errlen, "%s:%u: %s", path, line, problem);
		return -1;
	}
	*colon = '\0';
	e->name = name;
	e->name_len = (uint32_t)name_len;
	e->hash = hash;
	e->hash_len = (uint32_t)hash_len;
	e->line = line;
	return 0;
}

int auth_users_load(const char *path, struct auth_users **out, char *err, size_t errlen)
{
	char *text;
	size_t len;
	if (read_file(path, &text, &len, err, errlen) != 0)
		return -1;
	struct auth_users *u = calloc(1, sizeof(*u));
	if (u == NULL) {
		free(text);
		set_err(err, errlen, "%s: out of memory", path);
		return -1;
	}
	u->text = text;
	size_t cap = 0;
	uint32_t line = 0;
	for (size_t pos = 0; pos < len;) {
		line++;
		char *eol = memchr(text + pos, '\n', len - pos);
		size_t end = eol ? (size_t)(eol - text) : len;
		/* Cut the line so that crypt_checksalt sees only its hash. */
		text[end] = '\0';
		struct auth_user_entry e;
		int r = parse_line(text + pos, end - pos, line, &e, path, err, errlen);
		if (r < 0)
			goto fail;
		if (r == 0) {
			if (u->count == AUTH_USERS_MAX) {
				set_err(err, errlen, "%s:%u: more than %d users", path, line,
					AUTH_USERS_MAX);
				goto fail;
			}
			if (u->count == cap) {
				size_t ncap = cap ? 2 * cap : 64;
				struct auth_user_entry *ne =
					realloc(u->entries, ncap * sizeof(*ne));
				if (ne == NULL) {
					set_err(err, errlen, "%s: out of memory", path);
					goto fail;
				}
				u->entries = ne;
				cap = ncap;
			}
			u->entries[u->count++] = e;
		}
		pos = end + 1;
	}
	if (u->count > 0)
		qsort(u->entries, u->count, sizeof(u->entries[0]), entry_cmp);
	for (size_t i = 1; i < u->count; i++) {
		const struct auth_user_entry *a = &u->entries[i - 1], *b = &u->entries[i];
		if (entry_cmp_name(a->name, a->name_len, b->name, b->name_len) == 0) {
			set_err(err, errlen, "%s:%u: user '%s' is already defined on line %u", path,
				b->line, b->name, a->line);
			goto fail;
		}
	}
	*out = u;
	return 0;
fail:
	auth_users_free(u);
	return -1;
}

void auth_users_free(struct auth_users *u)
{
	if (u == NULL)
		return;
	free(u->entries);
	free(u->text);
	free(u);
}

size_t auth_users_count(const struct auth_users *u)
{
	return u->count;
}

static const struct auth_user_entry *lookup(const struct auth_users *u, struct span user)
{
	size_t lo = 0, hi = u->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct auth_user_entry *e = &u->entries[mid];
		int c = entry_cmp_name((const char *)user.ptr, user.len, e->name, e->name_len);
		if (c == 0)
			return e;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* a[0..n) == b[0..n) without an early exit. */
static bool equal_constant_time(const char *a, const char *b, size_t n)
{
	volatile unsigned char diff = 0;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

enum auth_result auth_users_check(const struct auth_users *u, struct span user,
				  struct span password, struct crypt_data *cd)
{
	const struct auth_user_entry *e = NULL;
	if (user.len > 0 && user.len <= AUTH_USER_NAME_MAX_BYTES)
		e = lookup(u, user);
	bool usable = password.len <= AUTH_PASSWORD_MAX_BYTES &&
		      memchr(password.ptr, '\0', password.len) == NULL;
	const char *hash = e ? e->hash : u->count ? u->entries[0].hash : dummy_hash;
	size_t hash_len = strlen(hash);

	char pw[AUTH_PASSWORD_MAX_BYTES + 1];
	size_t pw_len = usable ? password.len : 0;
	if (pw_len)
		memcpy(pw, password.ptr, pw_len);
	pw[pw_len] = '\0';

	memset(cd, 0, sizeof(*cd));
	const char *got = crypt_r(pw, hash, cd);
	enum auth_result r = AUTH_RESULT_FAILED;
	if (got == NULL || got[0] == '*') {
		r = AUTH_RESULT_TEMPFAIL;
	} else {
		size_t got_len = strnlen(got, sizeof(cd->output));
		bool same = got_len == hash_len &&
			    equal_constant_time(got, hash, RMX_MIN(got_len, hash_len));
		if (same && e != NULL && usable)
			r = AUTH_RESULT_OK;
	}
	explicit_bzero(pw, sizeof pw);
	explicit_bzero(cd, sizeof(*cd));
	return r;
}
