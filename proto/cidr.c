/*
 * cidr.c - address blocks and lists of them (see cidr.h).
 *
 * A block is compared whole bytes first, then the one partial byte under a
 * mask; a list is scanned in order (at most CIDR_LIST_MAX blocks, a few
 * hundred bytes: a scan costs less than a lookup structure would).
 * Invariant: a parsed block has no host bits set, so a compare needs no
 * masking of the block, only of the address; and v4 says whether the block
 * lies in the mapped range, so IPv6 blocks never match IPv4 clients.
 */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t v4_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static bool is_v4_mapped(const uint8_t addr[16])
{
	return memcmp(addr, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0;
}

/* Bits of a prefix length: decimal, 1 to 3 digits, no sign, no leading zero. */
static bool parse_bits(const char *text, unsigned max, unsigned *out)
{
	size_t n = strlen(text);
	if (n == 0 || n > 3 || (n > 1 && text[0] == '0'))
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (text[i] < '0' || text[i] > '9')
			return false;
		v = v * 10 + (unsigned)(text[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* Whether a and b agree on their first bits bits. */
static bool prefix_equal(const uint8_t a[16], const uint8_t b[16], unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;
	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff00u >> rest);
	return ((a[whole] ^ b[whole]) & mask) == 0;
}

static bool host_bits_zero(const uint8_t addr[16], unsigned bits)
{
	static const uint8_t zero[16];
	uint8_t masked[16];
	memcpy(masked, zero, sizeof(masked));
	unsigned whole = bits / 8, rest = bits % 8;
	memcpy(masked, addr, whole);
	if (rest)
		masked[whole] = addr[whole] & (uint8_t)(0xff00u >> rest);
	return memcmp(masked, addr, 16) == 0;
}

bool cidr_parse(const char *text, struct cidr *out, const char **why)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t host_len = slash ? (size_t)(slash - text) : strlen(text);
	memset(out, 0, sizeof(*out));
	*why = "not an IPv4 or IPv6 address";
	if (host_len == 0 || host_len >= sizeof(host))
		return false;
	memcpy(host, text, host_len);
	host[host_len] = '\0';
	unsigned bits_max, offset;
	struct in_addr a4;
	if (inet_pton(AF_INET, host, &a4) == 1) {
		memcpy(out->addr, v4_mapped_prefix, sizeof(v4_mapped_prefix));
		memcpy(out->addr + 12, &a4, 4);
		bits_max = 32;
		offset = 96;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		bits_max = 128;
		offset = 0;
	} else {
		return false;
	}
	unsigned bits = bits_max;
	if (slash && !parse_bits(slash + 1, bits_max, &bits)) {
		*why = bits_max == 32 ? "prefix length is not 0 to 32" : "prefix length is not 0 to 128";
		return false;
	}
	/* An IPv6 block written over the mapped range is the IPv4 block it names. */
	out->prefix_bits = (uint8_t)(bits + offset);
	if (!host_bits_zero(out->addr, out->prefix_bits)) {
		*why = "host bits set (write the network address)";
		return false;
	}
	out->v4 = out->prefix_bits >= 96 && is_v4_mapped(out->addr);
	*why = NULL;
	return true;
}

bool cidr_list_parse(struct cidr_list *l, const char *text, char *err, size_t errlen)
{
	l->count = 0;
	const char *p = text;
	for (;;) {
		p += strspn(p, " \t,");
		if (*p == '\0')
			return true;
		size_t n = strcspn(p, " \t,");
		char block[CIDR_TEXT_MAX_BYTES];
		const char *why = "too long for an address block";
		bool ok = n < sizeof(block);
		if (ok) {
			memcpy(block, p, n);
			block[n] = '\0';
		}
		if (ok && l->count == CIDR_LIST_MAX) {
			why = "too many blocks";
			ok = false;
		}
		if (ok)
			ok = cidr_parse(block, &l->entry[l->count], &why);
		if (!ok) {
			snprintf(err, errlen, "'%.*s': %s", (int)RMX_MIN(n, (size_t)64), p, why);
			l->count = 0;
			return false;
		}
		l->count++;
		p += n;
	}
}

bool cidr_addr_of_sockaddr(const struct sockaddr *sa, uint8_t out[16])
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		memcpy(out, v4_mapped_prefix, sizeof(v4_mapped_prefix));
		memcpy(out + 12, &in->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		memcpy(out, in6->sin6_addr.s6_addr, 16);
		return true;
	}
	return false;
}

bool cidr_contains(const struct cidr *c, const uint8_t addr[16])
{
	/* "::/0" is every IPv6 client, not the IPv4 ones too (as Postfix reads
	 * it): the families match first. */
	if (c->v4 != is_v4_mapped(addr))
		return false;
	return prefix_equal(c->addr, addr, c->prefix_bits);
}

bool cidr_list_contains(const struct cidr_list *l, const uint8_t addr[16])
{
	RMX_ASSERT(l->count <= CIDR_LIST_MAX);
	for (uint32_t i = 0; i < l->count; i++)
		if (cidr_contains(&l->entry[i], addr))
			return true;
	return false;
}

bool cidr_list_contains_sockaddr(const struct cidr_list *l, const struct sockaddr *sa)
{
	uint8_t addr[16];
	return cidr_addr_of_sockaddr(sa, addr) && cidr_list_contains(l, addr);
}

void cidr_format(const struct cidr *c, char out[CIDR_TEXT_MAX_BYTES])
{
	char host[INET6_ADDRSTRLEN];
	unsigned bits = c->prefix_bits, whole_bits = 128;
	const char *ok;
	if (c->v4) {
		ok = inet_ntop(AF_INET, c->addr + 12, host, sizeof(host));
		bits -= 96;
		whole_bits = 32;
	} else {
		ok = inet_ntop(AF_INET6, c->addr, host, sizeof(host));
	}
	RMX_ASSERT(ok != NULL); /* the buffer is INET6_ADDRSTRLEN */
	if (bits == whole_bits)
		snprintf(out, CIDR_TEXT_MAX_BYTES, "%s", host);
	else
		snprintf(out, CIDR_TEXT_MAX_BYTES, "%s/%u", host, bits);
}

bool cidr_list_format(const struct cidr_list *l, char *out, size_t cap)
{
	size_t used = 0;
	if (cap)
		out[0] = '\0';
	for (uint32_t i = 0; i < l->count; i++) {
		char block[CIDR_TEXT_MAX_BYTES];
		cidr_format(&l->entry[i], block);
		int n = snprintf(out + used, cap - used, "%s%s", i ? " " : "", block);
		if (n < 0 || (size_t)n >= cap - used)
			return false;
		used += (size_t)n;
	}
	return true;
}
