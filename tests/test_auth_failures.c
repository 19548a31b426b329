/*
 * test_auth_failures.c - failed AUTH attempts per client address.
 *
 * Checked: counting per IPv4 address; an IPv6 /64 counted as one client and
 * another /64 apart; an IPv4-mapped IPv6 address counted as its IPv4
 * address; the same through the textual forms; other families not counted; the window (failures less than
 * AUTH_FAIL_WINDOW_S apart add up, an older last failure starts again); a
 * flood of other addresses neither grows the table nor loses a recent entry
 * of another set; concurrent recording from several threads loses nothing;
 * the fail2ban log line (client address, quoted and escaped user name).
 */
#include "../core/auth_failures.h"
#include "../core/log.h"
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/un.h>
#include <unistd.h>

#define WINDOW_MS ((uint64_t)AUTH_FAIL_WINDOW_S * 1000)

static struct sockaddr_storage v4(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	in->sin_family = AF_INET;
	REQUIRE(inet_pton(AF_INET, text, &in->sin_addr) == 1);
	return ss;
}

static struct sockaddr_storage v6(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	in6->sin6_family = AF_INET6;
	REQUIRE(inet_pton(AF_INET6, text, &in6->sin6_addr) == 1);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_ipv4(struct auth_failures *t)
{
	struct sockaddr_storage a = v4("192.0.2.7"), b = v4("192.0.2.8");
	uint64_t now = 5000000;
	CHECK_EQ_U(auth_failures_count(t, SA(a), now), 0);
	for (uint32_t i = 1; i <= 6; i++)
		CHECK_EQ_U(auth_failures_record(t, SA(a), now + i), i);
	CHECK_EQ_U(auth_failures_count(t, SA(a), now + 10), 6);
	CHECK_EQ_U(auth_failures_count(t, SA(b), now + 10), 0);
	CHECK_EQ_U(auth_failures_record(t, SA(b), now + 10), 1);
	CHECK_EQ_U(auth_failures_count(t, SA(a), now + 10), 6);
}

static void test_ipv6(struct auth_failures *t)
{
	uint64_t now = 7000000;
	struct sockaddr_storage a1 = v6("2001:db8:1:2::1"), a2 = v6("2001:db8:1:2:ffff:ffff:ffff:ffff");
	struct sockaddr_storage other = v6("2001:db8:1:3::1");
	CHECK_EQ_U(auth_failures_record(t, SA(a1), now), 1);
	CHECK_EQ_U(auth_failures_record(t, SA(a2), now), 2); /* the same /64 */
	CHECK_EQ_U(auth_failures_count(t, SA(a1), now), 2);
	CHECK_EQ_U(auth_failures_count(t, SA(other), now), 0);

	/* ::ffff:198.51.100.9 is 198.51.100.9. */
	struct sockaddr_storage m = v6("::ffff:198.51.100.9"), p = v4("198.51.100.9");
	CHECK_EQ_U(auth_failures_record(t, SA(m), now), 1);
	CHECK_EQ_U(auth_failures_record(t, SA(p), now), 2);
	CHECK_EQ_U(auth_failures_count(t, SA(m), now), 2);
	/* ...but 198.51.100.0/24's neighbours are other clients. */
	struct sockaddr_storage q = v4("198.51.100.10");
	CHECK_EQ_U(auth_failures_count(t, SA(q), now), 0);

	/* The textual forms the session holds. */
	CHECK_EQ_U(auth_failures_count_ip(t, "2001:db8:1:2::abcd", now), 2);
	CHECK_EQ_U(auth_failures_record_ip(t, "2001:db8:1:2::abcd", now), 3);
	CHECK_EQ_U(auth_failures_count_ip(t, "198.51.100.9", now), 2);
	CHECK_EQ_U(auth_failures_record_ip(t, "::ffff:198.51.100.9", now), 3);
	CHECK_EQ_U(auth_failures_record_ip(t, "not an address", now), 0);
	CHECK_EQ_U(auth_failures_count_ip(t, "[::1]", now), 0);

	struct sockaddr_un un;
	memset(&un, 0, sizeof un);
	un.sun_family = AF_UNIX;
	CHECK_EQ_U(auth_failures_record(t, (const struct sockaddr *)&un, now), 0);
	CHECK_EQ_U(auth_failures_count(t, (const struct sockaddr *)&un, now), 0);
}

static void test_window(struct auth_failures *t)
{
	struct sockaddr_storage a = v4("203.0.113.50");
	uint64_t t0 = 100000000;
	/* Failures 9 minutes apart keep adding up. */
	for (uint32_t i = 0; i < 5; i++)
		CHECK_EQ_U(auth_failures_record(t, SA(a), t0 + i * 540000), i + 1);
	uint64_t last = t0 + 4 * 540000;
	CHECK_EQ_U(auth_failures_count(t, SA(a), last + WINDOW_MS - 1), 5);
	CHECK_EQ_U(auth_failures_count(t, SA(a), last + WINDOW_MS), 0);
	/* After the window the count starts again. */
	CHECK_EQ_U(auth_failures_record(t, SA(a), last + WINDOW_MS), 1);
	CHECK_EQ_U(auth_failures_count(t, SA(a), last + WINDOW_MS + 1), 1);
}

static void test_flood(struct auth_failures *t)
{
	struct sockaddr_storage target = v4("192.0.2.200");
	uint64_t now = 900000000;
	for (uint32_t i = 1; i <= 3; i++)
		CHECK_EQ_U(auth_failures_record(t, SA(target), now), i);
	/* 200 other clients: far fewer than a set's ways land in the target's
	 * set, so its entry stays. */
	for (uint32_t i = 0; i < 200; i++) {
		struct sockaddr_storage o = v4("10.0.0.0");
		((struct sockaddr_in *)&o)->sin_addr.s_addr = htonl(0x0a000000u + i);
		CHECK_EQ_U(auth_failures_record(t, SA(o), now + 1 + i), 1);
	}
	CHECK_EQ_U(auth_failures_count(t, SA(target), now + 500), 3);
	/* Ten times the table's capacity of distinct clients: bounded, every
	 * one of them still counted from 1, the newest still there. */
	uint32_t n = 10 * AUTH_FAIL_SHARDS * AUTH_FAIL_SHARD_ENTRIES;
	struct sockaddr_storage o = v6("2001:db8::");
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&o;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t be = htonl(i);
		memcpy(in6->sin6_addr.s6_addr + 4, &be, 4);
		uint32_t c = auth_failures_record(t, SA(o), now + 1000 + i);
		if (c != 1)
			CHECK_EQ_U(c, 1);
	}
	CHECK_EQ_U(auth_failures_count(t, SA(o), now + 1000 + n), 1);
}

struct hammer {
	struct auth_failures *t;
	unsigned rounds;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	struct sockaddr_storage a = v4("198.18.0.1");
	for (unsigned i = 0; i < h->rounds; i++)
		(void)auth_failures_record(h->t, SA(a), 2000000000);
	return NULL;
}

static void test_threads(struct auth_failures *t)
{
	enum { THREADS = 4, ROUNDS = 5000 };
	pthread_t th[THREADS];
	struct hammer h = { t, ROUNDS };
	for (unsigned i = 0; i < THREADS; i++)
		REQUIRE(pthread_create(&th[i], NULL, hammer_main, &h) == 0);
	for (unsigned i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	struct sockaddr_storage a = v4("198.18.0.1");
	CHECK_EQ_U(auth_failures_count(t, SA(a), 2000000000), THREADS * ROUNDS);
}

static void test_log_line(void)
{
	char path[] = "/tmp/ringmx-test-auth-failures-XXXXXX";
	int fd = mkstemp(path);
	REQUIRE(fd >= 0);
	unlink(path);
	int saved = dup(STDERR_FILENO);
	REQUIRE(saved >= 0 && dup2(fd, STDERR_FILENO) == STDERR_FILENO);
	auth_failures_log("192.0.2.7", "plain", "failure", span_make("al ice\"\n x=1", 12), 3, 5);
	auth_failures_log("2001:db8::1", "login", "malformed", span_make(NULL, 0), 1, 5);
	REQUIRE(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
	close(saved);
	char text[2048];
	ssize_t n = pread(fd, text, sizeof text - 1, 0);
	close(fd);
	REQUIRE(n > 0);
	text[n] = '\0';
	printf("%s", text);
	const char *l1 = strstr(text, "level=warn event=auth_failed client=192.0.2.7 mechanism=plain "
				      "result=failure user=\"al ice\\\"\\n x=1\" failures=3 limit=5\n");
	CHECK(l1 != NULL);
	CHECK(strstr(text, "event=auth_failed client=2001:db8::1 mechanism=login result=malformed") !=
	      NULL);
	/* Two lines, no more: the user's newline did not end one. */
	unsigned lines = 0;
	for (const char *p = text; *p; p++)
		lines += *p == '\n';
	CHECK_EQ_U(lines, 2);
}

int main(void)
{
	struct auth_failures *t = NULL;
	REQUIRE(auth_failures_create(&t) == 0);
	test_ipv4(t);
	test_ipv6(t);
	test_window(t);
	test_flood(t);
	test_threads(t);
	auth_failures_destroy(t);
	test_log_line();
	return test_main_end("test_auth_failures");
}
