/*
 * auth_failures.h - failed AUTH attempts per client address, shared by all
 * workers, so that a client that keeps guessing is cut off (421 4.7.0) on
 * whichever worker its connections land.
 *
 * A client address is an IPv4 address or an IPv6 /64 (one subscriber's
 * prefix; an IPv4-mapped IPv6 address counts as its IPv4 address). Failures
 * count while they come less than AUTH_FAIL_WINDOW_S apart; an address whose
 * last failure is older starts again from zero (fail2ban's findtime and
 * bantime, both the window). The table is bounded (AUTH_FAIL_SHARDS x
 * AUTH_FAIL_SHARD_ENTRIES); when a set is full its stalest entry is replaced.
 * Any thread; each call takes one shard's mutex for a few dozen compares
 * (AUTH is not the hot path). No allocation after create, no clock: callers
 * pass a monotonic now_ms.
 *
 * The session's use: before starting an AUTH exchange, a client with
 * auth_failures_count() >= auth_fail_limit gets 421 4.7.0 and is closed;
 * after a failed check (535), auth_failures_record(); when that returns
 * >= auth_fail_limit, 421 4.7.0 and close instead of 535.
 */
#ifndef RINGMX_AUTH_FAILURES_H
#define RINGMX_AUTH_FAILURES_H

#include <sys/socket.h>

#include "../common/base.h"
#include "../common/bounds.h"

struct auth_failures;

/* Allocates an empty table (start-up). 0 or -ENOMEM. */
RMX_MUST_CHECK int auth_failures_create(struct auth_failures **out);
void auth_failures_destroy(struct auth_failures *t);

/*
 * Records one failure of the client at addr (AF_INET or AF_INET6; other
 * families are not counted and 0 is returned). Returns the client's
 * failures within the window, this one included.
 */
uint32_t auth_failures_record(struct auth_failures *t, const struct sockaddr *addr,
			      uint64_t now_ms);

/* The client's failures within the window (0 for an unknown address). */
uint32_t auth_failures_count(struct auth_failures *t, const struct sockaddr *addr,
			     uint64_t now_ms);

/* The same, for a client address as text ("192.0.2.7", "2001:db8::1", no
 * brackets: struct smtp_peer's ip); text that is not an address counts as
 * no client (0). */
uint32_t auth_failures_record_ip(struct auth_failures *t, const char *ip, uint64_t now_ms);
uint32_t auth_failures_count_ip(struct auth_failures *t, const char *ip, uint64_t now_ms);

/*
 * Logs one AUTH outcome that is not a success, fail2ban-friendly, at warn:
 *   event=auth_failed client=IP mechanism=plain|login result=RESULT
 *   user="NAME" failures=N limit=N
 * (result: failure, malformed, cancelled, blocked; user as the client sent
 * it, quoted and escaped by the log module; failures after this one). A
 * fail2ban filter: failregex = event=auth_failed client=<HOST> .
 */
void auth_failures_log(const char *client_ip, const char *mechanism, const char *result,
		       struct span user, uint32_t failures, uint32_t limit);

#endif
