/*
 * test_auth_users.c - the auth_users file and the password check.
 *
 * Hashes are made at test time with libxcrypt (yescrypt, SHA-512-crypt with
 * and without rounds=). Checked: right and wrong passwords for each scheme,
 * unknown users, passwords with a NUL or past AUTH_PASSWORD_MAX_BYTES, an
 * empty table; each load error with its line number (no colon, empty or
 * spaced name, MD5/bcrypt/DES/plain text, truncated or extended hashes,
 * duplicates naming both lines, a missing file); the crypt scratch wiped; and
 * that an unknown user costs about as much time as a known one (a plain
 * lookup miss would answer a thousand times faster).
 */
#include "../core/auth_users.h"
#include "test.h"

#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/ringmx-test-auth-users-XXXXXX";
static char path[256];
static struct crypt_data cd;

static const char *make_hash(const char *prefix, unsigned long rounds, const char *password,
			     char *out, size_t cap)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	REQUIRE(crypt_gensalt_rn(prefix, rounds, NULL, 0, setting, sizeof setting) != NULL);
	struct crypt_data d;
	memset(&d, 0, sizeof d);
	const char *h = crypt_r(password, setting, &d);
	REQUIRE(h != NULL && h[0] == '$');
	REQUIRE(strlen(h) < cap);
	strcpy(out, h);
	return out;
}

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");
	REQUIRE(f);
	REQUIRE(fputs(text, f) >= 0);
	REQUIRE(fclose(f) == 0);
}

static struct span S(const char *t)
{
	return span_make(t, strlen(t));
}

static char hy[256], h6[256], h6r[256];

static void test_load_and_check(void)
{
	char text[2048];
	snprintf(text, sizeof text,
		 "# users who may submit\n"
		 "\n"
		 "alice:%s\n"
		 "   \t\n"
		 "bob@example.org:%s\r\n"
		 "  # indented comment\n"
		 "carol:%s  \n",
		 hy, h6, h6r);
	write_file(text);
	struct auth_users *u = NULL;
	char err[256] = "";
	REQUIRE(auth_users_load(path, &u, err, sizeof err) == 0);
	CHECK_EQ_U(auth_users_count(u), 3);

	CHECK(auth_users_check(u, S("alice"), S("alice pw"), &cd) == AUTH_RESULT_OK);
	CHECK(auth_users_check(u, S("bob@example.org"), S("bob:pw"), &cd) == AUTH_RESULT_OK);
	CHECK(auth_users_check(u, S("carol"), S("carol\xc3\xa9"), &cd) == AUTH_RESULT_OK);
	CHECK(auth_users_check(u, S("alice"), S("alice pW"), &cd) == AUTH_RESULT_FAILED);
	CHECK(auth_users_check(u, S("alice"), S("alice pw "), &cd) == AUTH_RESULT_FAILED);
	CHECK(auth_users_check(u, S("alice"), S(""), &cd) == AUTH_RESULT_FAILED);
	CHECK(auth_users_check(u, S("bob@example.org"), S("alice pw"), &cd) == AUTH_RESULT_FAILED);
	/* Names are exact: case, prefixes and extensions do not match. */
	CHECK(auth_users_check(u, S("Alice"), S("alice pw"), &cd) == AUTH_RESULT_FAILED);
	CHECK(auth_users_check(u, S("alic"), S("alice pw"), &cd) == AUTH_RESULT_FAILED);
	CHECK(auth_users_check(u, S("alicee"), S("alice pw"), &cd) == AUTH_RESULT_FAILED);
	CHECK(auth_users_check(u, S(""), S("alice pw"), &cd) == AUTH_RESULT_FAILED);
	/* An unknown user with the password of the user whose hash stands in
	 * for unknown ones still fails. */
	CHECK(auth_users_check(u, S("mallory"), S("alice pw"), &cd) == AUTH_RESULT_FAILED);
	CHECK(auth_users_check(u, S("mallory"), S("bob:pw"), &cd) == AUTH_RESULT_FAILED);
	CHECK(auth_users_check(u, S("mallory"), S("carol\xc3\xa9"), &cd) == AUTH_RESULT_FAILED);
	/* A NUL in the password: it would cut the C string crypt_r reads. */
	CHECK(auth_users_check(u, S("alice"), span_make("alice pw\0x", 10), &cd) ==
	      AUTH_RESULT_FAILED);
	/* The scratch is wiped. */
	static const struct crypt_data zero;
	CHECK(memcmp(&cd, &zero, sizeof cd) == 0);
	auth_users_free(u);
}

/* A password of exactly AUTH_PASSWORD_MAX_BYTES works; one byte more fails
 * even when its prefix is right (no silent truncation). */
static void test_password_bounds(void)
{
	static char pw[AUTH_PASSWORD_MAX_BYTES + 2];
	memset(pw, 'k', sizeof pw - 1);
	pw[AUTH_PASSWORD_MAX_BYTES] = '\0';
	char h[256], text[512];
	make_hash("$6$", 0, pw, h, sizeof h);
	snprintf(text, sizeof text, "long:%s\n", h);
	write_file(text);
	struct auth_users *u = NULL;
	char err[256];
	REQUIRE(auth_users_load(path, &u, err, sizeof err) == 0);
	CHECK(auth_users_check(u, S("long"), span_make(pw, AUTH_PASSWORD_MAX_BYTES), &cd) ==
	      AUTH_RESULT_OK);
	pw[AUTH_PASSWORD_MAX_BYTES] = 'k';
	CHECK(auth_users_check(u, S("long"), span_make(pw, AUTH_PASSWORD_MAX_BYTES + 1), &cd) ==
	      AUTH_RESULT_FAILED);
	auth_users_free(u);
}

static void expect_error(const char *text, const char *want)
{
	write_file(text);
	struct auth_users *u = NULL;
	char err[512] = "";
	int r = auth_users_load(path, &u, err, sizeof err);
	CHECK(r == -1);
	CHECK(u == NULL);
	if (strstr(err, want) == NULL)
		fprintf(stderr, "want \"%s\" in \"%s\"\n", want, err);
	CHECK(strstr(err, want) != NULL);
	CHECK(strncmp(err, path, strlen(path)) == 0);
	if (r == 0)
		auth_users_free(u);
}

static void test_load_errors(void)
{
	char text[2048], want[64];
	snprintf(text, sizeof text, "alice:%s\nbob\n", hy);
	expect_error(text, ":2: expected user:hash");
	snprintf(text, sizeof text, ":%s\n", hy);
	expect_error(text, ":1: user name empty");
	snprintf(text, sizeof text, "\n\nal ice:%s\n", hy);
	expect_error(text, ":3: user name holds a space");
	snprintf(text, sizeof text, "al\x01ice:%s\n", hy);
	expect_error(text, ":1: user name holds");
	char longname[AUTH_USER_NAME_MAX_BYTES + 2];
	memset(longname, 'n', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	snprintf(text, sizeof text, "%s:%s\n", longname, hy);
	expect_error(text, ":1: user name empty or longer");
	/* Schemes we refuse: MD5-crypt, bcrypt, DES, plain text, nothing. */
	expect_error("u:$1$abcdefgh$0123456789012345678901\n", ":1: unsupported hash");
	expect_error("u:$2b$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui\n",
		     ":1: unsupported hash");
	expect_error("u:abJnggxhB/yWI\n", ":1: unsupported hash");
	expect_error("u:secret\n", ":1: unsupported hash");
	expect_error("u:\n", ":1: unsupported hash");
	expect_error("u:$y$\n", ":1: hash");
	/* Damaged hashes: truncated, extended, a foreign character, a field
	 * too many, an empty field. */
	size_t hl = strlen(hy);
	snprintf(text, sizeof text, "u:%.*s\n", (int)(hl - 1), hy);
	expect_error(text, ":1: hash is malformed");
	snprintf(text, sizeof text, "u:%sA\n", hy);
	expect_error(text, ":1: hash is malformed");
	snprintf(text, sizeof text, "u:%.*s!\n", (int)(hl - 1), hy);
	expect_error(text, ":1: hash holds a character");
	snprintf(text, sizeof text, "u:%s$x\n", h6);
	expect_error(text, ":1: hash is malformed");
	snprintf(text, sizeof text, "u:$6$$%s\n", h6 + 3);
	expect_error(text, ":1: hash has an empty field");
	snprintf(text, sizeof text, "u:%s:extra\n", h6);
	expect_error(text, ":1: hash holds a character");
	snprintf(text, sizeof text, "u:%s\n", "$y$j9T$UVOYKikPsBCGZGVtOlyAb0$");
	expect_error(text, ":1: hash is incomplete");
	/* Duplicates name both lines, whatever their order in the file. */
	snprintf(text, sizeof text, "zed:%s\nalice:%s\n# x\nzed:%s\n", hy, h6, h6r);
	snprintf(want, sizeof want, ":4: user 'zed' is already defined on line 1");
	expect_error(text, want);
	/* A missing file. */
	struct auth_users *u = NULL;
	char err[512];
	CHECK(auth_users_load("/nonexistent/ringmx-auth-users", &u, err, sizeof err) == -1);
	CHECK(strstr(err, "cannot open") != NULL);
}

static void test_empty_table(void)
{
	write_file("# nobody yet\n\n");
	struct auth_users *u = NULL;
	char err[256];
	REQUIRE(auth_users_load(path, &u, err, sizeof err) == 0);
	CHECK_EQ_U(auth_users_count(u), 0);
	CHECK(auth_users_check(u, S("alice"), S("alice pw"), &cd) == AUTH_RESULT_FAILED);
	auth_users_free(u);
	write_file("");
	REQUIRE(auth_users_load(path, &u, err, sizeof err) == 0);
	CHECK_EQ_U(auth_users_count(u), 0);
	auth_users_free(u);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t median_check_ns(const struct auth_users *u, const char *user)
{
	uint64_t t[7];
	for (size_t i = 0; i < RMX_ARRAY_LEN(t); i++) {
		uint64_t t0 = now_ns();
		CHECK(auth_users_check(u, S(user), S("not it"), &cd) == AUTH_RESULT_FAILED);
		t[i] = now_ns() - t0;
	}
	qsort(t, RMX_ARRAY_LEN(t), sizeof t[0], cmp_u64);
	return t[RMX_ARRAY_LEN(t) / 2];
}

/* No user enumeration by timing: a miss costs a crypt_r too. */
static void test_unknown_user_timing(void)
{
	char text[1024];
	snprintf(text, sizeof text, "alice:%s\n", hy);
	write_file(text);
	struct auth_users *u = NULL;
	char err[256];
	REQUIRE(auth_users_load(path, &u, err, sizeof err) == 0);
	uint64_t known = median_check_ns(u, "alice");
	uint64_t unknown = median_check_ns(u, "mallory");
	printf("yescrypt check: known user %.2f ms, unknown user %.2f ms\n", known / 1e6,
	       unknown / 1e6);
	CHECK(known > 100000); /* yescrypt at its default cost is not cheap */
	CHECK(unknown * 2 > known && known * 2 > unknown);
	auth_users_free(u);
}

int main(void)
{
	REQUIRE(mkdtemp(dir) != NULL);
	snprintf(path, sizeof path, "%s/users", dir);
	make_hash("$y$", 0, "alice pw", hy, sizeof hy);
	make_hash("$6$", 0, "bob:pw", h6, sizeof h6);
	make_hash("$6$", 10000, "carol\xc3\xa9", h6r, sizeof h6r);
	REQUIRE(strncmp(h6r, "$6$rounds=10000$", 16) == 0);

	test_load_and_check();
	test_password_bounds();
	test_load_errors();
	test_empty_table();
	test_unknown_user_timing();

	unlink(path);
	rmdir(dir);
	return test_main_end("test_auth_users");
}
