/*
 * test_cidr.c - address blocks: parsing (and what is refused), matching of
 * IPv4, IPv6 and IPv4-mapped clients at every prefix length, families kept
 * apart, lists and their bound, and format read back by parse.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "../proto/cidr.h"
#include "test.h"

static void addr_of(const char *text, uint8_t out[16])
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &in->sin_addr) == 1)
		in->sin_family = AF_INET;
	else {
		REQUIRE(inet_pton(AF_INET6, text, &in6->sin6_addr) == 1);
		in6->sin6_family = AF_INET6;
	}
	REQUIRE(cidr_addr_of_sockaddr((struct sockaddr *)&ss, out));
}

static bool block_contains(const char *block, const char *addr)
{
	struct cidr c;
	const char *why;
	REQUIRE(cidr_parse(block, &c, &why));
	uint8_t a[16];
	addr_of(addr, a);
	return cidr_contains(&c, a);
}

static void refused(const char *text, const char *want_why)
{
	struct cidr c;
	const char *why = NULL;
	CHECK(!cidr_parse(text, &c, &why));
	CHECK(why != NULL && strstr(why, want_why) != NULL);
	if (why == NULL || strstr(why, want_why) == NULL)
		fprintf(stderr, "  %s: %s (wanted %s)\n", text, why ? why : "(null)", want_why);
}

static void test_parse(void)
{
	struct cidr c;
	const char *why;
	CHECK(cidr_parse("192.0.2.0/24", &c, &why) && c.prefix_bits == 120 && c.v4);
	CHECK(cidr_parse("192.0.2.7", &c, &why) && c.prefix_bits == 128 && c.v4);
	CHECK(cidr_parse("0.0.0.0/0", &c, &why) && c.prefix_bits == 96 && c.v4);
	CHECK(cidr_parse("2001:db8::/32", &c, &why) && c.prefix_bits == 32 && !c.v4);
	CHECK(cidr_parse("::/0", &c, &why) && c.prefix_bits == 0 && !c.v4);
	CHECK(cidr_parse("::1", &c, &why) && c.prefix_bits == 128);
	/* Written over the mapped range, it is the IPv4 block it names. */
	CHECK(cidr_parse("::ffff:192.0.2.0/120", &c, &why) && c.v4);
	refused("192.0.2.1/24", "host bits");
	refused("2001:db8::1/64", "host bits");
	refused("192.0.2.0/33", "0 to 32");
	refused("2001:db8::/129", "0 to 128");
	refused("192.0.2.0/", "prefix length");
	refused("192.0.2.0/024", "prefix length");
	refused("192.0.2.0/-1", "prefix length");
	refused("192.0.2.0/2x", "prefix length");
	refused("192.0.2/24", "not an IPv4 or IPv6");
	refused("[::1]", "not an IPv4 or IPv6");
	refused("fe80::1%eth0", "not an IPv4 or IPv6");
	refused("example.org", "not an IPv4 or IPv6");
	refused("", "not an IPv4 or IPv6");
	refused("/24", "not an IPv4 or IPv6");
	refused("1111:2222:3333:4444:5555:6666:7777:8888:9999/64", "not an IPv4 or IPv6");
}

static void test_match(void)
{
	CHECK(block_contains("192.0.2.0/24", "192.0.2.0"));
	CHECK(block_contains("192.0.2.0/24", "192.0.2.255"));
	CHECK(!block_contains("192.0.2.0/24", "192.0.3.0"));
	CHECK(!block_contains("192.0.2.0/24", "192.0.1.255"));
	CHECK(block_contains("192.0.2.7", "192.0.2.7"));
	CHECK(!block_contains("192.0.2.7", "192.0.2.6"));
	/* An IPv4 client on an IPv6 socket is its IPv4 address. */
	CHECK(block_contains("192.0.2.0/24", "::ffff:192.0.2.9"));
	CHECK(block_contains("127.0.0.0/8", "::ffff:127.1.2.3"));
	/* Families apart: "::/0" is IPv6 only, "0.0.0.0/0" IPv4 only. */
	CHECK(block_contains("::/0", "2001:db8::1"));
	CHECK(!block_contains("::/0", "192.0.2.1"));
	CHECK(block_contains("0.0.0.0/0", "203.0.113.5"));
	CHECK(!block_contains("0.0.0.0/0", "2001:db8::1"));
	CHECK(!block_contains("::/0", "::ffff:192.0.2.1"));
	/* IPv6 prefixes: /64, /48, and an odd length inside a byte. */
	CHECK(block_contains("2001:db8:1:2::/64", "2001:db8:1:2:ffff:ffff:ffff:ffff"));
	CHECK(!block_contains("2001:db8:1:2::/64", "2001:db8:1:3::"));
	CHECK(block_contains("2001:db8:1::/48", "2001:db8:1:ffff::1"));
	CHECK(!block_contains("2001:db8:1::/48", "2001:db8:2::1"));
	CHECK(block_contains("2001:db8:8000::/33", "2001:db8:ffff::1"));
	CHECK(!block_contains("2001:db8:8000::/33", "2001:db8:7fff::1"));
	CHECK(block_contains("::1", "::1"));
	CHECK(!block_contains("::1", "::2"));

	/* Every prefix length of an IPv4 block: the address at the block's
	 * last host is inside, the next one outside. */
	for (unsigned bits = 1; bits <= 32; bits++) {
		uint32_t net = 0xc0000200u & (uint32_t)(0xffffffffull << (32 - bits));
		uint32_t last = net | (uint32_t)((1ull << (32 - bits)) - 1);
		char block[64], inside[32], outside[32];
		struct in_addr a;
		a.s_addr = htonl(net);
		snprintf(block, sizeof(block), "%s/%u", inet_ntoa(a), bits);
		a.s_addr = htonl(last);
		snprintf(inside, sizeof(inside), "%s", inet_ntoa(a));
		a.s_addr = htonl(last + 1);
		snprintf(outside, sizeof(outside), "%s", inet_ntoa(a));
		CHECK(block_contains(block, inside));
		if (last != 0xffffffffu)
			CHECK(!block_contains(block, outside));
	}
}

static void test_list(void)
{
	struct cidr_list l;
	char err[256], text[4096];
	CHECK(cidr_list_parse(&l, "", err, sizeof(err)) && l.count == 0);
	CHECK(cidr_list_parse(&l, "127.0.0.0/8 ::1, 10.0.0.0/8\t2001:db8::/32", err,
			      sizeof(err)));
	CHECK_EQ_U(l.count, 4);
	uint8_t a[16];
	addr_of("10.1.2.3", a);
	CHECK(cidr_list_contains(&l, a));
	addr_of("2001:db8:5::1", a);
	CHECK(cidr_list_contains(&l, a));
	addr_of("192.0.2.1", a);
	CHECK(!cidr_list_contains(&l, a));
	addr_of("::2", a);
	CHECK(!cidr_list_contains(&l, a));
	struct sockaddr_in in = { .sin_family = AF_INET };
	REQUIRE(inet_pton(AF_INET, "127.0.0.1", &in.sin_addr) == 1);
	CHECK(cidr_list_contains_sockaddr(&l, (struct sockaddr *)&in));
	struct sockaddr unix_family = { .sa_family = AF_UNIX };
	CHECK(!cidr_list_contains_sockaddr(&l, &unix_family));

	/* Format reads back to the same list. */
	CHECK(cidr_list_format(&l, text, sizeof(text)));
	CHECK(strcmp(text, "127.0.0.0/8 ::1 10.0.0.0/8 2001:db8::/32") == 0);
	struct cidr_list again;
	CHECK(cidr_list_parse(&again, text, err, sizeof(err)));
	CHECK(again.count == l.count && memcmp(again.entry, l.entry, sizeof(l.entry[0]) * l.count) == 0);
	char tiny[8];
	CHECK(!cidr_list_format(&l, tiny, sizeof(tiny)));
	CHECK(strlen(tiny) < sizeof(tiny));
	struct cidr widest;
	const char *why;
	REQUIRE(cidr_parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127", &widest, &why));
	char one[CIDR_TEXT_MAX_BYTES];
	cidr_format(&widest, one);
	CHECK(strcmp(one, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127") == 0);

	/* A bad block names itself; the list is then empty. */
	CHECK(!cidr_list_parse(&l, "10.0.0.0/8 192.0.2.1/24", err, sizeof(err)));
	CHECK(strstr(err, "'192.0.2.1/24': host bits") != NULL);
	CHECK_EQ_U(l.count, 0);
	CHECK(!cidr_list_parse(&l, "10.0.0.0/8 0123456789012345678901234567890123456789"
				   "0123456789012345678901234567890123456789",
			       err, sizeof(err)));
	CHECK(strstr(err, "too long") != NULL);

	/* The bound: CIDR_LIST_MAX blocks fit, one more is refused. */
	size_t used = 0;
	for (unsigned i = 0; i < CIDR_LIST_MAX; i++)
		used += (size_t)snprintf(text + used, sizeof(text) - used, "10.%u.0.0/16 ", i);
	CHECK(cidr_list_parse(&l, text, err, sizeof(err)) && l.count == CIDR_LIST_MAX);
	snprintf(text + used, sizeof(text) - used, "192.0.2.0/24");
	CHECK(!cidr_list_parse(&l, text, err, sizeof(err)));
	CHECK(strstr(err, "too many") != NULL);
}

int main(void)
{
	test_parse();
	test_match();
	test_list();
	return test_main_end("cidr");
}
