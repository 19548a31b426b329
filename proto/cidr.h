/*
 * cidr.h - address blocks ("192.0.2.0/24", "2001:db8::/32", a bare
 * address) and short lists of them, for limits_exempt and proxy_trusted.
 *
 * Every block is held in IPv6 form: an IPv4 block is its IPv4-mapped form
 * (::ffff:a.b.c.d, prefix + 96), so an IPv4 client that reaches an IPv6
 * socket (::ffff:192.0.2.7) matches "192.0.2.0/24" as it should, and one
 * compare serves both families; a block matches clients of its own family
 * only ("::/0" is not the IPv4 clients). Pure: no I/O, no allocation; a list is
 * built at start-up (config load) and then read by any thread.
 */
#ifndef RINGMX_CIDR_H
#define RINGMX_CIDR_H

#include "../common/base.h"
#include "../common/bounds.h"

#include <sys/socket.h>

struct cidr {
	uint8_t addr[16]; /* the network, host bits zero; IPv4 as ::ffff:a.b.c.d */
	uint8_t prefix_bits; /* 0..128 over the IPv6 form */
	bool v4;             /* an IPv4 block: matches IPv4 clients only, and
			      * an IPv6 block IPv6 clients only */
};

struct cidr_list {
	uint32_t count;
	struct cidr entry[CIDR_LIST_MAX];
};

/*
 * Parses one block: ADDRESS or ADDRESS/BITS, IPv4 (bits 0..32) or IPv6
 * (0..128, no brackets, no zone). A block with host bits set
 * ("192.0.2.1/24") is refused: it says two things. On failure returns false
 * and *why names the problem (a static string).
 */
RMX_MUST_CHECK bool cidr_parse(const char *text, struct cidr *out, const char **why);

/*
 * Parses a list of blocks separated by spaces, tabs or commas into l
 * (replacing what it held). "" gives an empty list. On failure returns false
 * with err[errlen] naming the block and the problem; l is then empty.
 */
RMX_MUST_CHECK bool cidr_list_parse(struct cidr_list *l, const char *text, char *err,
				    size_t errlen);

/* The 16-byte IPv6 form of an AF_INET or AF_INET6 address (IPv4 mapped);
 * false for any other family. */
bool cidr_addr_of_sockaddr(const struct sockaddr *sa, uint8_t out[16]);

/* Whether addr (the IPv6 form) lies in block c, or in any block of l. */
bool cidr_contains(const struct cidr *c, const uint8_t addr[16]);
bool cidr_list_contains(const struct cidr_list *l, const uint8_t addr[16]);
/* The same for a socket address; false for a family without addresses. */
bool cidr_list_contains_sockaddr(const struct cidr_list *l, const struct sockaddr *sa);

/* Writes c as cidr_parse reads it ("192.0.2.0/24", "2001:db8::/32";
 * a whole address without "/32" or "/128"). out holds CIDR_TEXT_MAX_BYTES. */
void cidr_format(const struct cidr *c, char out[CIDR_TEXT_MAX_BYTES]);

/* Writes l as a space-separated list into out[cap] (cut short if cap is
 * too small: the return is then false). */
bool cidr_list_format(const struct cidr_list *l, char *out, size_t cap);

#endif
