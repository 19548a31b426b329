/*
 * test_policy.c - served domains and the recipient table.
 *
 * Domain case and trailing dots, exact local parts, catch-alls, routing
 * tricks listed and not, address literals, fail-closed handling of entries
 * in unserved domains, bad entries, and enough entries to force several
 * rehashes. Lookups run on spans copied into exact-size heap blocks, and
 * from two threads at once; ASan checks that policy_free releases it all.
 */
#include "../common/bounds.h"
#include "../proto/policy.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>

static struct span heap_span(const char *s)
{
	size_t n = strlen(s);
	uint8_t *p = malloc(n ? n : 1);
	REQUIRE(p != NULL);
	memcpy(p, s, n);
	return span_make(p, n);
}

static void free_span(struct span s)
{
	free((void *)s.ptr);
}

static enum policy_verdict check_full(const struct smtp_policy *p, const char *local,
				      const char *domain, bool route_chars, bool literal)
{
	struct span l = heap_span(local), d = heap_span(domain);
	enum policy_verdict v = policy_check_rcpt(p, l, d, route_chars, literal);
	free_span(l);
	free_span(d);
	return v;
}

static enum policy_verdict check(const struct smtp_policy *p, const char *local, const char *domain)
{
	return check_full(p, local, domain, false, false);
}

static int add_domain(struct smtp_policy *p, const char *domain)
{
	struct span d = heap_span(domain);
	int rc = policy_add_domain(p, d);
	free_span(d);
	return rc;
}

static int add_recipient(struct smtp_policy *p, const char *entry)
{
	struct span e = heap_span(entry);
	int rc = policy_add_recipient(p, e);
	free_span(e);
	return rc;
}

#define ACCEPT POLICY_ACCEPT
#define DENIED POLICY_RELAY_DENIED
#define UNKNOWN POLICY_UNKNOWN_USER

static void test_empty_policy(void)
{
	struct smtp_policy *p = policy_new();
	REQUIRE(p != NULL);
	CHECK(!policy_has_recipients(p));
	CHECK_EQ_U(check(p, "user", "example.com"), DENIED);
	CHECK_EQ_U(check(p, "postmaster", ""), ACCEPT);
	CHECK_EQ_U(check(p, "PostMaster", ""), ACCEPT);
	CHECK_EQ_U(check(p, "user", ""), DENIED);
	policy_free(p);
	policy_free(NULL);
}

static void test_domains(void)
{
	struct smtp_policy *p = policy_new();
	REQUIRE(p != NULL);
	CHECK_EQ_U(add_domain(p, "Example.COM."), 0);
	CHECK_EQ_U(add_domain(p, "example.com"), 0); /* duplicate */
	CHECK_EQ_U(add_domain(p, "b\xc3\xbc" "cher.example"), 0);
	CHECK(!policy_has_recipients(p));

	CHECK_EQ_U(check(p, "user", "example.com"), ACCEPT);
	CHECK_EQ_U(check(p, "user", "EXAMPLE.com"), ACCEPT);
	CHECK_EQ_U(check(p, "user", "example.com."), ACCEPT);
	CHECK_EQ_U(check(p, "User.Name+tag", "eXaMpLe.CoM."), ACCEPT);
	CHECK_EQ_U(check(p, "user", "example.com.."), DENIED);
	CHECK_EQ_U(check(p, "user", "sub.example.com"), DENIED);
	CHECK_EQ_U(check(p, "user", "example.co"), DENIED);
	CHECK_EQ_U(check(p, "user", "example.comm"), DENIED);
	CHECK_EQ_U(check(p, "user", "xexample.com"), DENIED);
	CHECK_EQ_U(check(p, "user", "."), DENIED);
	CHECK_EQ_U(check(p, "user", "b\xc3\xbc" "cher.example"), ACCEPT);
	CHECK_EQ_U(check(p, "user", "B\xc3\xbc" "CHER.example"), ACCEPT);
	CHECK_EQ_U(check(p, "user", "b\xc3\x9c" "cher.example"), DENIED); /* no Unicode folding */
	CHECK_EQ_U(check(p, "postmaster", ""), ACCEPT);

	/* routing tricks in a served domain without a recipient table */
	CHECK_EQ_U(check_full(p, "a%b", "example.com", true, false), DENIED);
	CHECK_EQ_U(check_full(p, "a!b", "example.com", true, false), DENIED);
	CHECK_EQ_U(check_full(p, "\"a@b\"", "example.com", true, false), DENIED);
	/* address literals never, even one spelled like a served name */
	CHECK_EQ_U(check_full(p, "user", "[192.0.2.1]", false, true), DENIED);
	CHECK_EQ_U(check_full(p, "user", "example.com", false, true), DENIED);

	/* malformed domains */
	CHECK_EQ_U(add_domain(p, ""), -EINVAL);
	CHECK_EQ_U(add_domain(p, "."), -EINVAL);
	CHECK_EQ_U(add_domain(p, "a b.example"), -EINVAL);
	CHECK_EQ_U(add_domain(p, "a@b.example"), -EINVAL);
	CHECK_EQ_U(add_domain(p, "[192.0.2.1]"), -EINVAL);
	CHECK_EQ_U(add_domain(p, "a\x01.example"), -EINVAL);
	CHECK_EQ_U(policy_add_domain(p, span_make(NULL, 0)), -EINVAL);

	/* 255 bytes (plus an optional trailing dot) and 256 */
	char name[300];
	memset(name, 'x', sizeof(name));
	name[255] = '\0';
	CHECK_EQ_U(add_domain(p, name), 0);
	CHECK_EQ_U(check(p, "u", name), ACCEPT);
	name[255] = '.';
	name[256] = '\0';
	CHECK_EQ_U(add_domain(p, name), 0);
	CHECK_EQ_U(check(p, "u", name), ACCEPT);
	name[255] = 'x';
	CHECK_EQ_U(add_domain(p, name), -EINVAL);
	CHECK_EQ_U(check(p, "u", name), DENIED);
	policy_free(p);
}

static void test_recipients(void)
{
	struct smtp_policy *p = policy_new();
	REQUIRE(p != NULL);
	CHECK_EQ_U(add_domain(p, "example.com"), 0);
	CHECK_EQ_U(add_domain(p, "catchall.example"), 0);
	CHECK_EQ_U(add_recipient(p, "alice@example.com"), 0);
	CHECK_EQ_U(add_recipient(p, "Bob@EXAMPLE.com."), 0);
	CHECK_EQ_U(add_recipient(p, "@catchall.example"), 0);
	CHECK_EQ_U(add_recipient(p, "a%b@example.com"), 0);
	CHECK_EQ_U(add_recipient(p, "\"a@b\"@example.com"), 0);
	CHECK_EQ_U(add_recipient(p, "\"john doe\"@example.com"), 0);
	CHECK_EQ_U(add_recipient(p, "x@notserved.example"), 0);
	CHECK_EQ_U(add_recipient(p, "@alsonotserved.example"), 0);
	CHECK_EQ_U(add_recipient(p, "alice@example.com"), 0); /* duplicate */
	CHECK(policy_has_recipients(p));

	/* exact local part, folded domain */
	CHECK_EQ_U(check(p, "alice", "example.com"), ACCEPT);
	CHECK_EQ_U(check(p, "alice", "Example.Com."), ACCEPT);
	CHECK_EQ_U(check(p, "Alice", "example.com"), UNKNOWN);
	CHECK_EQ_U(check(p, "alice.", "example.com"), UNKNOWN);
	CHECK_EQ_U(check(p, "alic", "example.com"), UNKNOWN);
	CHECK_EQ_U(check(p, "Bob", "example.com"), ACCEPT);
	CHECK_EQ_U(check(p, "bob", "example.com"), UNKNOWN);
	CHECK_EQ_U(check(p, "carol", "example.com"), UNKNOWN);
	CHECK_EQ_U(check(p, "\"alice\"", "example.com"), UNKNOWN);
	CHECK_EQ_U(check(p, "\"john doe\"", "example.com"), ACCEPT);
	CHECK_EQ_U(check(p, "postmaster", "example.com"), UNKNOWN);
	CHECK_EQ_U(check(p, "postmaster", ""), ACCEPT);
	/* catch-all */
	CHECK_EQ_U(check(p, "anyone", "catchall.example"), ACCEPT);
	CHECK_EQ_U(check(p, "Anyone.Else", "CATCHALL.example."), ACCEPT);
	CHECK_EQ_U(check(p, "anyone", "sub.catchall.example"), DENIED);
	/* routing tricks: listed exactly, or refused as relaying */
	CHECK_EQ_U(check_full(p, "a%b", "example.com", true, false), ACCEPT);
	CHECK_EQ_U(check_full(p, "a%b", "EXAMPLE.COM.", true, false), ACCEPT);
	CHECK_EQ_U(check_full(p, "a!b", "example.com", true, false), DENIED);
	CHECK_EQ_U(check_full(p, "\"a@b\"", "example.com", true, false), ACCEPT);
	CHECK_EQ_U(check_full(p, "\"c@d\"", "example.com", true, false), DENIED);
	CHECK_EQ_U(check_full(p, "a%b", "catchall.example", true, false), DENIED);
	CHECK_EQ_U(check_full(p, "x!y", "catchall.example", true, false), DENIED);
	/* literals */
	CHECK_EQ_U(check_full(p, "alice", "[192.0.2.1]", false, true), DENIED);
	/* fail closed: a recipient entry does not make its domain served */
	CHECK_EQ_U(check(p, "x", "notserved.example"), DENIED);
	CHECK_EQ_U(check(p, "y", "alsonotserved.example"), DENIED);

	/* malformed entries */
	CHECK_EQ_U(add_recipient(p, "alice"), -EINVAL);
	CHECK_EQ_U(add_recipient(p, "alice@"), -EINVAL);
	CHECK_EQ_U(add_recipient(p, "alice@."), -EINVAL);
	CHECK_EQ_U(add_recipient(p, "@"), -EINVAL);
	CHECK_EQ_U(add_recipient(p, ""), -EINVAL);
	CHECK_EQ_U(add_recipient(p, "a b@example.com"), -EINVAL);
	CHECK_EQ_U(add_recipient(p, "alice@exa mple.com"), -EINVAL);
	CHECK_EQ_U(add_recipient(p, "al\x01ice@example.com"), -EINVAL);
	CHECK_EQ_U(add_recipient(p, "alice@[192.0.2.1]"), -EINVAL);

	/* local part: 64 then 65 */
	char entry[100];
	memset(entry, 'l', 64);
	memcpy(entry + 64, "@example.com", 13);
	CHECK_EQ_U(add_recipient(p, entry), 0);
	entry[64] = '\0';
	CHECK_EQ_U(check(p, entry, "example.com"), ACCEPT);
	memset(entry, 'm', 65);
	memcpy(entry + 65, "@example.com", 13);
	CHECK_EQ_U(add_recipient(p, entry), -EINVAL);
	policy_free(p);
}

/* A table with recipients but no domains accepts nothing. */
static void test_recipients_without_domains(void)
{
	struct smtp_policy *p = policy_new();
	REQUIRE(p != NULL);
	CHECK_EQ_U(add_recipient(p, "alice@example.com"), 0);
	CHECK_EQ_U(add_recipient(p, "@example.com"), 0);
	CHECK_EQ_U(check(p, "alice", "example.com"), DENIED);
	CHECK_EQ_U(check_full(p, "alice", "example.com", true, false), DENIED);
	policy_free(p);
}

#define MANY_DOMAINS 3000
#define MANY_USERS_PER_DOMAIN 7

static void test_many_entries(void)
{
	struct smtp_policy *p = policy_new();
	REQUIRE(p != NULL);
	char text[128];
	for (int d = 0; d < MANY_DOMAINS; d++) {
		snprintf(text, sizeof(text), "D%d.Example", d);
		REQUIRE(add_domain(p, text) == 0);
		for (int u = 0; u < MANY_USERS_PER_DOMAIN; u++) {
			snprintf(text, sizeof(text), "user%d@d%d.example", u, d);
			REQUIRE(add_recipient(p, text) == 0);
		}
	}
	unsigned long accepted = 0, unknown = 0, denied = 0;
	char local[32], domain[64];
	for (int d = 0; d < MANY_DOMAINS + 100; d++) {
		snprintf(domain, sizeof(domain), "d%d.EXAMPLE.", d);
		for (int u = 0; u <= MANY_USERS_PER_DOMAIN; u++) {
			snprintf(local, sizeof(local), "user%d", u);
			switch (check(p, local, domain)) {
			case POLICY_ACCEPT: accepted++; break;
			case POLICY_UNKNOWN_USER: unknown++; break;
			case POLICY_RELAY_DENIED: denied++; break;
			}
		}
	}
	CHECK_EQ_U(accepted, MANY_DOMAINS * MANY_USERS_PER_DOMAIN);
	CHECK_EQ_U(unknown, MANY_DOMAINS);
	CHECK_EQ_U(denied, 100 * (MANY_USERS_PER_DOMAIN + 1));
	policy_free(p);
}

struct reader_arg {
	const struct smtp_policy *policy;
	unsigned long mismatches;
};

static void *reader(void *opaque)
{
	struct reader_arg *arg = opaque;
	char domain[64];
	for (int round = 0; round < 20; round++) {
		for (int d = 0; d < 200; d++) {
			snprintf(domain, sizeof(domain), "r%d.example", d);
			enum policy_verdict want = d < 100 ? ACCEPT : DENIED;
			if (policy_check_rcpt(arg->policy, span_make("u", 1),
					      span_make(domain, strlen(domain)), false,
					      false) != want)
				arg->mismatches++;
		}
	}
	return NULL;
}

/* Concurrent readers see the same answers (the policy is read-only). */
static void test_concurrent_readers(void)
{
	struct smtp_policy *p = policy_new();
	REQUIRE(p != NULL);
	char text[64];
	for (int d = 0; d < 100; d++) {
		snprintf(text, sizeof(text), "r%d.example", d);
		REQUIRE(add_domain(p, text) == 0);
	}
	struct reader_arg args[2] = { { p, 0 }, { p, 0 } };
	pthread_t threads[2];
	for (int i = 0; i < 2; i++)
		REQUIRE(pthread_create(&threads[i], NULL, reader, &args[i]) == 0);
	for (int i = 0; i < 2; i++)
		REQUIRE(pthread_join(threads[i], NULL) == 0);
	CHECK_EQ_U(args[0].mismatches, 0);
	CHECK_EQ_U(args[1].mismatches, 0);
	policy_free(p);
}

int main(void)
{
	test_empty_policy();
	test_domains();
	test_recipients();
	test_recipients_without_domains();
	test_many_entries();
	test_concurrent_readers();
	return test_main_end("policy");
}
