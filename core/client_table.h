/*
 * client_table.h - what the gateway knows about each client address, shared
 * by all workers without a lock: connections open now, connection arrivals
 * and MAIL commands per minute, and the pre-greeting screening verdict with
 * its expiry. It serves max_connections_per_ip, max_connection_rate_per_ip,
 * max_message_rate_per_ip and the screening cache (screen_cache_ttl).
 *
 * A client is an IPv4 address, or an IPv6 address cut to ipv6_prefix bits
 * (one subscriber's /64 by default); an IPv4-mapped IPv6 address counts as
 * its IPv4 address. Any thread may call any function at any time; no call
 * blocks, takes a lock, allocates (after create) or reads a clock: callers
 * pass a monotonic now_ms (the same clock in every worker).
 *
 * How a connection uses it:
 *   at accept   client_table_connect(): ADMIT (a ref to keep), UNTRACKED
 *               (let in, not limited: the table could not place it, which a
 *               counter says), or REFUSE_* (421 4.7.0 and close without
 *               reading; nothing to release). The admission also carries the
 *               cached screening verdict (pass: no greeting pause).
 *   at MAIL     client_table_mail(): REFUSE_RATE is 451 4.7.1.
 *   screening   client_table_screen_set() with the verdict and its expiry.
 *   at close    client_table_disconnect(), exactly once per ADMIT.
 * An address in limits_exempt is still tracked (its screening verdict is
 * cached) but is connected with client_limits_none, so it is never refused.
 * AUTH failures stay in core/auth_failures (their own window and table).
 */
#ifndef RINGMX_CLIENT_TABLE_H
#define RINGMX_CLIENT_TABLE_H

#include <sys/socket.h>

#include "../common/base.h"
#include "../common/bounds.h"

struct client_table;

/* A client address as limits count it: the 16-byte IPv6 form, cut to the
 * prefix (IPv4 as ::ffff:a.b.c.d, whole). */
struct client_key {
	uint64_t hi, lo;
};

/* The client of an AF_INET or AF_INET6 address, IPv6 cut to
 * ipv6_prefix_bits (CLIENT_IPV6_PREFIX_MIN..128); false for other families.
 * The _ip form takes the address as text ("192.0.2.7", "2001:db8::1"). */
bool client_key_of_sockaddr(const struct sockaddr *sa, uint32_t ipv6_prefix_bits,
			    struct client_key *out);
bool client_key_of_ip(const char *ip, uint32_t ipv6_prefix_bits, struct client_key *out);

/* The configured limits (0: that limit is off). Rates are per minute. */
struct client_limits {
	uint32_t connections_max;     /* max_connections_per_ip */
	uint32_t connection_rate_max; /* max_connection_rate_per_ip */
	uint32_t message_rate_max;    /* max_message_rate_per_ip */
};
extern const struct client_limits client_limits_none; /* limits_exempt */

/* A connection's hold on its client's entry: the entry cannot be reused
 * while any connection holds it. slot CLIENT_REF_NONE: nothing held. */
#define CLIENT_REF_NONE UINT32_MAX
struct client_ref {
	uint32_t slot;
	uint32_t generation; /* checked on release: a stale ref is a bug */
};

enum client_admit {
	CLIENT_ADMIT,                  /* tracked; ref held until disconnect */
	CLIENT_ADMIT_UNTRACKED,        /* no entry could be had: let in, unlimited */
	CLIENT_REFUSE_CONNECTIONS,     /* over max_connections_per_ip: 421 4.7.0 */
	CLIENT_REFUSE_CONNECTION_RATE, /* over max_connection_rate_per_ip: 421 4.7.0 */
};

/* What screening concluded about a client, cached until its expiry. */
enum screen_verdict {
	SCREEN_VERDICT_NONE, /* unknown or expired: screen this connection */
	SCREEN_VERDICT_PASS, /* passed (greeted after the pause): do not pause */
	SCREEN_VERDICT_FAIL, /* failed (pre-greeting, HTTP, bare LF) */
	SCREEN_VERDICT_COUNT
};

struct client_admission {
	enum client_admit verdict;
	struct client_ref ref;       /* CLIENT_ADMIT only; else CLIENT_REF_NONE */
	enum screen_verdict screen;  /* cached verdict (NONE when untracked) */
	uint32_t connections;        /* open now, this one included when admitted;
				      * for a refusal, those open */
	uint32_t connection_rate;    /* arrivals in the last minute, this one
				      * included (not counted when refused for
				      * connections: it costs nothing) */
};

enum client_mail {
	CLIENT_MAIL_OK,
	CLIENT_MAIL_REFUSE_RATE, /* over max_message_rate_per_ip: 451 4.7.1 */
};

struct client_table_stats {
	uint64_t slots;              /* the table's size */
	uint64_t untracked_full;     /* every slot where the client may live held an
				      * open connection: admitted untracked */
	uint64_t untracked_contended; /* lost CLIENT_TABLE_ATTEMPTS_MAX races: the same */
	uint64_t evicted;            /* an idle client's history dropped for a new
				      * one before it had aged out */
};

/*
 * The number of slots for a gateway of max_connections (all workers): four
 * per connection, at least 65536 (one day's cached verdicts of a busy MX),
 * a power of two within CLIENT_TABLE_SLOTS_MIN..MAX.
 */
uint32_t client_table_slots_for(uint32_t max_connections);

/* Allocates a table of slots (a power of two, CLIENT_TABLE_SLOTS_MIN..MAX;
 * 64 bytes each) at start-up. 0, -EINVAL or -ENOMEM. Destroy only when no
 * thread uses it. */
RMX_MUST_CHECK int client_table_create(struct client_table **out, uint32_t slots);
void client_table_destroy(struct client_table *t);
/* The bytes the table holds (its slots and its header). */
size_t client_table_bytes(const struct client_table *t);

/*
 * A connection from client k arrives: counted against lim, and on ADMIT the
 * entry is held in out->ref. Concurrency is exact across threads: with
 * connections_max N, never more than N are admitted at once. A connection
 * over the rate is refused and counted as an arrival (as anvil does), so a
 * client that keeps hammering stays refused until it slows down.
 */
enum client_admit client_table_connect(struct client_table *t, const struct client_key *k,
				       const struct client_limits *lim, uint64_t now_ms,
				       struct client_admission *out);

/* The connection of ref closes: its hold is released and *ref set to
 * CLIENT_REF_NONE. A ref of CLIENT_REF_NONE is nothing to do; releasing one
 * twice is caught by the assertions (never an underflow). */
void client_table_disconnect(struct client_table *t, struct client_ref *ref);

/* A MAIL command of ref's client: counted (refused ones too), and REFUSE_RATE
 * when the last minute's count passes lim->message_rate_max. *rate_out (may
 * be NULL) gets that count. Untracked (CLIENT_REF_NONE): always OK. */
enum client_mail client_table_mail(struct client_table *t, const struct client_ref *ref,
				   const struct client_limits *lim, uint64_t now_ms,
				   uint32_t *rate_out);

/* Screening's verdict for ref's client, valid until expires_ms; cached for
 * every worker's next connection from it. Untracked: nothing. */
void client_table_screen_set(struct client_table *t, const struct client_ref *ref,
			     enum screen_verdict v, uint64_t expires_ms);
enum screen_verdict client_table_screen_get(struct client_table *t,
					    const struct client_ref *ref, uint64_t now_ms);

/* For diagnostics and tests: what the table holds for k now (0s when it
 * holds nothing), read without a hold, so a moving target may be off by
 * the calls in flight. */
struct client_snapshot {
	uint32_t connections;
	uint32_t connection_rate;
	uint32_t message_rate;
	enum screen_verdict screen;
};
void client_table_peek(struct client_table *t, const struct client_key *k, uint64_t now_ms,
		       struct client_snapshot *out);

void client_table_stats(struct client_table *t, struct client_table_stats *out);

#endif
