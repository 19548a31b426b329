/*
 * auth_failures.c - the shared table of failed AUTH attempts per client.
 *
 * Shards by a keyed hash of the client key (a random key drawn at create,
 * so a client cannot aim its addresses at one set); each shard is a mutex
 * and a set-associative array: a key lives in one set of AUTH_FAIL_WAYS
 * entries, so a lookup compares at most that many. An entry whose last
 * failure is AUTH_FAIL_WINDOW_S old or more is free; when a set has no free
 * entry the one with the oldest last failure is replaced. Invariant: a live
 * entry has count >= 1 and a key that hashes to its set.
 */
#include "auth_failures.h"

#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#define AUTH_FAIL_WAYS 8
#define AUTH_FAIL_SETS (AUTH_FAIL_SHARD_ENTRIES / AUTH_FAIL_WAYS)
#define AUTH_FAIL_WINDOW_MS ((uint64_t)AUTH_FAIL_WINDOW_S * 1000)

_Static_assert(AUTH_FAIL_SHARD_ENTRIES % AUTH_FAIL_WAYS == 0, "whole sets");

/* An IPv4 address (family 4, 4 bytes) or an IPv6 /64 (family 6, 8 bytes). */
struct fail_key {
	uint8_t family;
	uint8_t bytes[8];
};

struct fail_entry {
	struct fail_key key;
	uint32_t count;       /* 0: free */
	uint64_t last_ms;     /* the latest failure */
};

struct fail_shard {
	pthread_mutex_t lock;
	struct fail_entry entry[AUTH_FAIL_SETS][AUTH_FAIL_WAYS];
};

struct auth_failures {
	uint64_t seed[2];
	struct fail_shard shard[AUTH_FAIL_SHARDS];
};

int auth_failures_create(struct auth_failures **out)
{
	struct auth_failures *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	if (getrandom(t->seed, sizeof(t->seed), 0) != (ssize_t)sizeof(t->seed)) {
		/* No entropy this early is unusual; the table works without. */
		t->seed[0] = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)t;
		t->seed[1] = 0xc2b2ae3d27d4eb4full;
	}
	for (unsigned i = 0; i < AUTH_FAIL_SHARDS; i++)
		pthread_mutex_init(&t->shard[i].lock, NULL);
	*out = t;
	return 0;
}

void auth_failures_destroy(struct auth_failures *t)
{
	if (t == NULL)
		return;
	for (unsigned i = 0; i < AUTH_FAIL_SHARDS; i++)
		pthread_mutex_destroy(&t->shard[i].lock);
	free(t);
}

static bool key_of(const struct sockaddr *sa, struct fail_key *k)
{
	memset(k, 0, sizeof(*k));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		k->family = 4;
		memcpy(k->bytes, &in->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			k->family = 4;
			memcpy(k->bytes, in6->sin6_addr.s6_addr + 12, 4);
		} else {
			k->family = 6;
			memcpy(k->bytes, in6->sin6_addr.s6_addr, 8); /* the /64 */
		}
		return true;
	}
	return false;
}

/* A keyed mix of the key (splitmix64 finaliser over seed-xored words). */
static uint64_t key_hash(const struct auth_failures *t, const struct fail_key *k)
{
	uint64_t w;
	memcpy(&w, k->bytes, 8);
	uint64_t x = (w ^ t->seed[0]) + ((uint64_t)k->family << 56) + t->seed[1];
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static bool live(const struct fail_entry *e, uint64_t now_ms)
{
	return e->count > 0 && now_ms - e->last_ms < AUTH_FAIL_WINDOW_MS;
}

static bool same_key(const struct fail_key *a, const struct fail_key *b)
{
	return a->family == b->family && memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

/* The set of k, locked: the caller unlocks shard. */
static struct fail_entry *set_of(struct auth_failures *t, const struct fail_key *k,
				 struct fail_shard **shard)
{
	uint64_t h = key_hash(t, k);
	*shard = &t->shard[h & (AUTH_FAIL_SHARDS - 1)];
	pthread_mutex_lock(&(*shard)->lock);
	return (*shard)->entry[(h >> 8) % AUTH_FAIL_SETS];
}

/* A free or expired entry is taken first; else the oldest live one. */
static bool better_victim(const struct fail_entry *e, const struct fail_entry *v,
			  uint64_t now_ms)
{
	bool e_live = live(e, now_ms), v_live = live(v, now_ms);
	if (e_live != v_live)
		return !e_live;
	return e_live && e->last_ms < v->last_ms;
}

uint32_t auth_failures_record(struct auth_failures *t, const struct sockaddr *addr,
			      uint64_t now_ms)
{
	struct fail_key k;
	if (!key_of(addr, &k))
		return 0;
	struct fail_shard *shard;
	struct fail_entry *set = set_of(t, &k, &shard);
	struct fail_entry *victim = &set[0];
	uint32_t count = 0;
	for (unsigned i = 0; i < AUTH_FAIL_WAYS; i++) {
		struct fail_entry *e = &set[i];
		if (e->count > 0 && same_key(&e->key, &k)) {
			e->count = live(e, now_ms) ? e->count + (e->count < UINT32_MAX) : 1;
			e->last_ms = now_ms;
			count = e->count;
			break;
		}
		if (better_victim(e, victim, now_ms))
			victim = e;
	}
	if (count == 0) {
		victim->key = k;
		victim->count = 1;
		victim->last_ms = now_ms;
		count = 1;
	}
	pthread_mutex_unlock(&shard->lock);
	return count;
}

uint32_t auth_failures_count(struct auth_failures *t, const struct sockaddr *addr,
			     uint64_t now_ms)
{
	struct fail_key k;
	if (!key_of(addr, &k))
		return 0;
	struct fail_shard *shard;
	struct fail_entry *set = set_of(t, &k, &shard);
	uint32_t count = 0;
	for (unsigned i = 0; i < AUTH_FAIL_WAYS; i++) {
		if (set[i].count > 0 && same_key(&set[i].key, &k)) {
			count = live(&set[i], now_ms) ? set[i].count : 0;
			break;
		}
	}
	pthread_mutex_unlock(&shard->lock);
	return count;
}

static bool parse_ip(const char *ip, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

uint32_t auth_failures_record_ip(struct auth_failures *t, const char *ip, uint64_t now_ms)
{
	struct sockaddr_storage ss;
	if (!parse_ip(ip, &ss))
		return 0;
	return auth_failures_record(t, (const struct sockaddr *)&ss, now_ms);
}

uint32_t auth_failures_count_ip(struct auth_failures *t, const char *ip, uint64_t now_ms)
{
	struct sockaddr_storage ss;
	if (!parse_ip(ip, &ss))
		return 0;
	return auth_failures_count(t, (const struct sockaddr *)&ss, now_ms);
}

void auth_failures_log(const char *client_ip, const char *mechanism, const char *result,
		       struct span user, uint32_t failures, uint32_t limit)
{
	struct log_msg m;
	if (!log_begin(&m, LOG_WARN, "auth_failed"))
		return;
	log_add(&m, "client", client_ip, strlen(client_ip));
	log_add(&m, "mechanism", mechanism, strlen(mechanism));
	log_add(&m, "result", result, strlen(result));
	log_add(&m, "user", user.ptr, user.len);
	log_add_u64(&m, "failures", failures);
	log_add_u64(&m, "limit", limit);
	log_end(&m);
}
