/*
 * client_table.c - the shared per-client table (see client_table.h).
 *
 * Why this shape: every worker consults it at every accept and every MAIL,
 * so it takes no lock. It is one fixed array of 64-byte slots (one cache
 * line each, so two clients never share a line), open addressing: a client
 * may live in any of CLIENT_TABLE_PROBE_SLOTS consecutive slots after the
 * keyed hash of its key (a random key drawn at create, so a sender cannot
 * aim its addresses at one neighbourhood). Each slot is a handful of C11
 * atomics; every change is one atomic operation or a compare-and-swap loop
 * on one word.
 *
 * The slot's meta word packs generation (32 bits), state (2) and the
 * connections open (30). Because the count and the state share a word, a
 * hold (count + 1, only while LIVE and under the limit) and a reuse of the
 * slot (only while LIVE with count 0, generation + 1) exclude each other in
 * one compare-and-swap: a slot that any connection holds is never reused, so
 * a connection's ref stays valid until it lets go, and every field is
 * written only by a holder or by the thread that claimed the slot.
 *
 * Inserting a new client without a lock: claim a free slot (EMPTY ->
 * CLAIMING), write the key, publish it as PENDING, then look at the other
 * slots of the probe window again (sequentially consistent loads after a
 * sequentially consistent store: of two threads inserting the same key at
 * once, at least the later one sees the other). A PENDING or LIVE twin
 * earlier in the window, or a LIVE twin anywhere, wins: ours is abandoned and
 * the lookup starts over. A PENDING twin later in the window is waited for
 * (a few instructions; at most CLIENT_TABLE_WAIT_SPINS_MAX polls), so waits
 * only point forward and cannot form a cycle. Then PENDING -> LIVE with the
 * first hold. So a key has at most one LIVE slot.
 *
 * When the window is full: an EMPTY slot is taken first, then an idle one
 * (no connection) whose history has aged out (two rate windows and its
 * screening verdict expired), then the idle one least recently active, its
 * history dropped (counted: evicted). When all of them hold open
 * connections, or the thread loses CLIENT_TABLE_ATTEMPTS_MAX races, the
 * client is admitted untracked: never refused for the table's sake, never
 * blocked, and counted (untracked_full, untracked_contended), so an operator
 * sees it and grows max_connections' share. Since the hash is keyed, a
 * sender cannot fill one window on purpose.
 *
 * Rates are two one-minute buckets packed in one word (the window's index,
 * the previous and the current count); the estimate weighs the previous
 * bucket by the part of it still inside the sliding minute.
 */
#include "client_table.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>

enum slot_state {
	SLOT_EMPTY = 0,    /* never used, or abandoned */
	SLOT_CLAIMING = 1, /* a thread is writing a key into it */
	SLOT_PENDING = 2,  /* key readable; its inserter checks for twins */
	SLOT_LIVE = 3,
};

#define META_CONNS_BITS 30
#define META_CONNS_MASK ((1ull << META_CONNS_BITS) - 1)

static inline uint64_t meta_make(uint32_t gen, enum slot_state st, uint64_t conns)
{
	return (uint64_t)gen << 32 | (uint64_t)st << META_CONNS_BITS | conns;
}
static inline uint32_t meta_gen(uint64_t m) { return (uint32_t)(m >> 32); }
static inline enum slot_state meta_state(uint64_t m)
{
	return (enum slot_state)((m >> META_CONNS_BITS) & 3);
}
static inline uint32_t meta_conns(uint64_t m) { return (uint32_t)(m & META_CONNS_MASK); }

struct slot {
	alignas(64) _Atomic uint64_t meta;
	_Atomic uint64_t key_hi, key_lo;
	_Atomic uint64_t conn_window;    /* arrivals: window index, previous, current */
	_Atomic uint64_t mail_window;    /* MAIL commands, the same */
	_Atomic uint64_t screen;         /* expires_ms << 8 | enum screen_verdict */
	_Atomic uint64_t last_active_ms; /* latest arrival or MAIL */
};
_Static_assert(sizeof(struct slot) == 64, "a slot is one cache line");
_Static_assert(CONNECTIONS_MAX < META_CONNS_MASK, "every connection fits the count");

struct client_table {
	uint64_t seed[2];
	uint32_t mask;                /* slots - 1 */
	struct slot *slot;
	alignas(64) _Atomic uint64_t untracked_full;
	_Atomic uint64_t untracked_contended;
	_Atomic uint64_t evicted;
};

const struct client_limits client_limits_none = { 0, 0, 0 };

/* ---- keys ---- */

static void key_from_addr16(const uint8_t a[16], uint32_t prefix_bits, struct client_key *k)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	uint8_t cut[16];
	memcpy(cut, a, 16);
	if (memcmp(a, mapped, sizeof(mapped)) != 0) { /* IPv6: keep the prefix */
		RMX_ASSERT(prefix_bits >= CLIENT_IPV6_PREFIX_MIN && prefix_bits <= 128);
		for (unsigned i = 0; i < 16; i++) {
			unsigned keep = prefix_bits > i * 8 ? RMX_MIN(prefix_bits - i * 8, 8u) : 0;
			cut[i] &= (uint8_t)(0xff00u >> keep);
		}
	}
	memcpy(&k->hi, cut, 8);
	memcpy(&k->lo, cut + 8, 8);
}

bool client_key_of_sockaddr(const struct sockaddr *sa, uint32_t ipv6_prefix_bits,
			    struct client_key *out)
{
	uint8_t a[16] = { [10] = 0xff, [11] = 0xff };
	if (sa->sa_family == AF_INET)
		memcpy(a + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	else if (sa->sa_family == AF_INET6)
		memcpy(a, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, 16);
	else
		return false;
	key_from_addr16(a, ipv6_prefix_bits, out);
	return true;
}

bool client_key_of_ip(const char *ip, uint32_t ipv6_prefix_bits, struct client_key *out)
{
	uint8_t a[16] = { [10] = 0xff, [11] = 0xff };
	if (inet_pton(AF_INET, ip, a + 12) != 1 && inet_pton(AF_INET6, ip, a) != 1)
		return false;
	key_from_addr16(a, ipv6_prefix_bits, out);
	return true;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static uint64_t key_hash(const struct client_table *t, const struct client_key *k)
{
	return mix64(mix64(k->hi ^ t->seed[0]) + k->lo + t->seed[1]);
}

/* Slot s's key, for a reader that has loaded its meta with acquire (or
 * stronger) and found PENDING or LIVE. */
static bool slot_has_key(struct slot *s, const struct client_key *k)
{
	return atomic_load_explicit(&s->key_hi, memory_order_relaxed) == k->hi &&
	       atomic_load_explicit(&s->key_lo, memory_order_relaxed) == k->lo;
}

/* ---- rate windows: index (24 bits) | previous (20) | current (20) ---- */

#define WIN_COUNT_BITS 20
#define WIN_COUNT_MASK ((1ull << WIN_COUNT_BITS) - 1)
#define WIN_INDEX_MASK ((1ull << 24) - 1)
_Static_assert(CLIENT_RATE_COUNT_MAX == WIN_COUNT_MASK, "the bound is the field");

static inline uint64_t win_index(uint64_t w) { return w >> (2 * WIN_COUNT_BITS); }
static inline uint64_t win_prev(uint64_t w) { return (w >> WIN_COUNT_BITS) & WIN_COUNT_MASK; }
static inline uint64_t win_cur(uint64_t w) { return w & WIN_COUNT_MASK; }

/* The events in the minute up to now_ms. A window whose index is ahead of
 * now's (another worker's clock read a moment later) counts as current. */
static uint32_t win_estimate(uint64_t w, uint64_t now_ms)
{
	uint64_t idx = (now_ms / CLIENT_RATE_WINDOW_MS) & WIN_INDEX_MASK;
	uint64_t behind = (idx - win_index(w)) & WIN_INDEX_MASK;
	uint64_t left_ms = CLIENT_RATE_WINDOW_MS - now_ms % CLIENT_RATE_WINDOW_MS;
	uint64_t cur, prev;
	if (behind == 0 || behind > WIN_INDEX_MASK / 2) {
		cur = win_cur(w);
		prev = win_prev(w);
	} else if (behind == 1) {
		cur = 0;
		prev = win_cur(w);
	} else {
		return 0;
	}
	return (uint32_t)(cur + prev * left_ms / CLIENT_RATE_WINDOW_MS);
}

/* Counts one event at now_ms; returns the estimate with it. */
static uint32_t win_record(_Atomic uint64_t *word, uint64_t now_ms)
{
	uint64_t idx = (now_ms / CLIENT_RATE_WINDOW_MS) & WIN_INDEX_MASK;
	uint64_t old = atomic_load_explicit(word, memory_order_relaxed), next;
	do {
		uint64_t behind = (idx - win_index(old)) & WIN_INDEX_MASK;
		uint64_t n_idx = idx, prev, cur;
		if (behind == 0 || behind > WIN_INDEX_MASK / 2) {
			n_idx = win_index(old);
			prev = win_prev(old);
			cur = RMX_MIN(win_cur(old) + 1, WIN_COUNT_MASK);
		} else {
			prev = behind == 1 ? win_cur(old) : 0;
			cur = 1;
		}
		next = n_idx << (2 * WIN_COUNT_BITS) | prev << WIN_COUNT_BITS | cur;
	} while (!atomic_compare_exchange_weak_explicit(word, &old, next, memory_order_relaxed,
							memory_order_relaxed));
	return win_estimate(next, now_ms);
}

/* ---- the table ---- */

uint32_t client_table_slots_for(uint32_t max_connections)
{
	uint64_t want = RMX_MAX((uint64_t)max_connections * 4, (uint64_t)65536);
	uint64_t slots = CLIENT_TABLE_SLOTS_MIN;
	while (slots < want && slots < CLIENT_TABLE_SLOTS_MAX)
		slots *= 2;
	return (uint32_t)slots;
}

int client_table_create(struct client_table **out, uint32_t slots)
{
	if (slots < CLIENT_TABLE_SLOTS_MIN || slots > CLIENT_TABLE_SLOTS_MAX ||
	    (slots & (slots - 1)) != 0)
		return -EINVAL;
	struct client_table *t = aligned_alloc(64, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	memset(t, 0, sizeof(*t));
	t->slot = aligned_alloc(64, (size_t)slots * sizeof(struct slot));
	if (t->slot == NULL) {
		free(t);
		return -ENOMEM;
	}
	/* All-zero bits are EMPTY slots of generation 0 and empty windows. */
	memset(t->slot, 0, (size_t)slots * sizeof(struct slot));
	t->mask = slots - 1;
	if (getrandom(t->seed, sizeof(t->seed), GRND_NONBLOCK) != (ssize_t)sizeof(t->seed)) {
		/* Without entropy this early the table still works, only the
		 * neighbourhoods are predictable. */
		t->seed[0] = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)t;
		t->seed[1] = 0xc2b2ae3d27d4eb4full ^ (uint64_t)(uintptr_t)t->slot;
	}
	atomic_init(&t->untracked_full, 0);
	atomic_init(&t->untracked_contended, 0);
	atomic_init(&t->evicted, 0);
	*out = t;
	return 0;
}

void client_table_destroy(struct client_table *t)
{
	if (t == NULL)
		return;
	free(t->slot);
	free(t);
}

size_t client_table_bytes(const struct client_table *t)
{
	return sizeof(*t) + ((size_t)t->mask + 1) * sizeof(struct slot);
}

/* Whether an idle slot's history has aged out (nothing lost by reusing it). */
static bool slot_stale(struct slot *s, uint64_t now_ms)
{
	uint64_t active = atomic_load_explicit(&s->last_active_ms, memory_order_relaxed);
	uint64_t screen = atomic_load_explicit(&s->screen, memory_order_relaxed);
	return now_ms >= active + 2ull * CLIENT_RATE_WINDOW_MS && (screen >> 8) <= now_ms;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* Waits (bounded) for slot s to leave meta m; false when it did not. */
static bool wait_change(struct slot *s, uint64_t m)
{
	for (unsigned i = 0; i < CLIENT_TABLE_WAIT_SPINS_MAX; i++) {
		if (atomic_load(&s->meta) != m)
			return true;
		cpu_relax();
	}
	return false;
}

enum find_result {
	FIND_HELD,     /* the key's slot, held (or refused for connections) */
	FIND_RETRY,    /* lost a race: look again */
	FIND_FULL,     /* no slot could be had */
	FIND_CONTENDED /* another thread's insert did not finish in time */
};

/*
 * Takes a hold on the LIVE slot at s whose meta was m, unless it holds
 * conns_max (non-zero) already. RETRY when the slot changed hands.
 */
static enum find_result hold_live(struct slot *s, uint64_t m, uint32_t conns_max,
				  bool *refused, uint32_t *conns)
{
	for (;;) {
		if (meta_state(m) != SLOT_LIVE)
			return FIND_RETRY;
		*conns = meta_conns(m);
		if (conns_max && *conns >= conns_max) {
			*refused = true;
			return FIND_HELD;
		}
		RMX_ASSERT(*conns < META_CONNS_MASK);
		uint64_t gen = meta_gen(m);
		if (atomic_compare_exchange_weak(&s->meta, &m, m + 1)) {
			*conns += 1;
			return FIND_HELD;
		}
		if (meta_gen(m) != gen)
			return FIND_RETRY;
	}
}

/*
 * Rank of slot s (meta m) as a place for a new key: 0 EMPTY, 1 idle and aged
 * out, 2 idle (by last activity), -1 not usable.
 */
static int candidate_rank(struct slot *s, uint64_t m, uint64_t now_ms)
{
	if (meta_state(m) == SLOT_EMPTY)
		return 0;
	if (meta_state(m) == SLOT_LIVE && meta_conns(m) == 0)
		return slot_stale(s, now_ms) ? 1 : 2;
	return -1;
}

/*
 * After publishing k as PENDING at probe position mine: RETRY when a twin
 * wins (ours must be abandoned), HELD when ours stands, CONTENDED when a
 * twin later in the window did not settle in time.
 */
static enum find_result check_twins(struct client_table *t, uint64_t base, unsigned mine,
				    const struct client_key *k)
{
	for (unsigned i = 0; i < CLIENT_TABLE_PROBE_SLOTS; i++) {
		if (i == mine)
			continue;
		struct slot *s = &t->slot[(base + i) & t->mask];
		for (;;) {
			uint64_t m = atomic_load(&s->meta);
			enum slot_state st = meta_state(m);
			if ((st != SLOT_PENDING && st != SLOT_LIVE) || !slot_has_key(s, k))
				break;
			if (st == SLOT_LIVE || i < mine)
				return FIND_RETRY;
			if (!wait_change(s, m))
				return FIND_CONTENDED;
		}
	}
	return FIND_HELD;
}

/*
 * Finds k's slot, or makes one, and holds it (conns_max: see hold_live).
 * On HELD, *slot_out names it, *conns is its count (this hold included)
 * and *refused says whether the hold was refused for connections (then
 * nothing is held and *conns is the count that refused it).
 */
static enum find_result find_and_hold(struct client_table *t, const struct client_key *k,
				      uint32_t conns_max, uint64_t now_ms, uint32_t *slot_out,
				      bool *refused, uint32_t *conns)
{
	uint64_t base = key_hash(t, k);
	int best_rank = 3;
	unsigned best = 0;
	uint64_t best_meta = 0, best_active = UINT64_MAX;
	for (unsigned i = 0; i < CLIENT_TABLE_PROBE_SLOTS; i++) {
		uint32_t idx = (uint32_t)((base + i) & t->mask);
		struct slot *s = &t->slot[idx];
		uint64_t m = atomic_load_explicit(&s->meta, memory_order_acquire);
		enum slot_state st = meta_state(m);
		if ((st == SLOT_LIVE || st == SLOT_PENDING) && slot_has_key(s, k)) {
			if (st == SLOT_PENDING)
				return wait_change(s, m) ? FIND_RETRY : FIND_CONTENDED;
			*slot_out = idx;
			return hold_live(s, m, conns_max, refused, conns);
		}
		int rank = candidate_rank(s, m, now_ms);
		if (rank < 0 || rank > best_rank)
			continue;
		uint64_t active = atomic_load_explicit(&s->last_active_ms, memory_order_relaxed);
		if (rank < best_rank || (rank == 2 && active < best_active)) {
			best_rank = rank;
			best = i;
			best_meta = m;
			best_active = active;
		}
	}
	if (best_rank == 3)
		return FIND_FULL;

	/* Claim the best place, write the key, publish it PENDING. */
	struct slot *s = &t->slot[(base + best) & t->mask];
	uint32_t gen = meta_gen(best_meta) + 1;
	if (!atomic_compare_exchange_strong(&s->meta, &best_meta,
					    meta_make(gen, SLOT_CLAIMING, 0)))
		return FIND_RETRY;
	if (best_rank == 2)
		atomic_fetch_add_explicit(&t->evicted, 1, memory_order_relaxed);
	atomic_store_explicit(&s->key_hi, k->hi, memory_order_relaxed);
	atomic_store_explicit(&s->key_lo, k->lo, memory_order_relaxed);
	atomic_store_explicit(&s->conn_window, 0, memory_order_relaxed);
	atomic_store_explicit(&s->mail_window, 0, memory_order_relaxed);
	atomic_store_explicit(&s->screen, 0, memory_order_relaxed);
	atomic_store_explicit(&s->last_active_ms, now_ms, memory_order_relaxed);
	atomic_store(&s->meta, meta_make(gen, SLOT_PENDING, 0));

	enum find_result r = check_twins(t, base, best, k);
	if (r != FIND_HELD) {
		atomic_store(&s->meta, meta_make(gen, SLOT_EMPTY, 0));
		return r;
	}
	/* Only its inserter moves a slot out of PENDING: a plain store. */
	atomic_store(&s->meta, meta_make(gen, SLOT_LIVE, 1));
	*slot_out = (uint32_t)((base + best) & t->mask);
	*conns = 1;
	return FIND_HELD;
}

static enum screen_verdict screen_of(uint64_t word, uint64_t now_ms)
{
	if ((word >> 8) <= now_ms)
		return SCREEN_VERDICT_NONE;
	enum screen_verdict v = (enum screen_verdict)(word & 0xff);
	RMX_ASSERT(v < SCREEN_VERDICT_COUNT);
	return v;
}

enum client_admit client_table_connect(struct client_table *t, const struct client_key *k,
				       const struct client_limits *lim, uint64_t now_ms,
				       struct client_admission *out)
{
	memset(out, 0, sizeof(*out));
	out->ref.slot = CLIENT_REF_NONE;
	enum find_result r = FIND_CONTENDED;
	uint32_t idx = 0, conns = 0;
	bool refused = false;
	for (unsigned attempt = 0; attempt < CLIENT_TABLE_ATTEMPTS_MAX; attempt++) {
		r = find_and_hold(t, k, lim->connections_max, now_ms, &idx, &refused, &conns);
		if (r != FIND_RETRY)
			break;
	}
	if (r != FIND_HELD) {
		atomic_fetch_add_explicit(r == FIND_FULL ? &t->untracked_full
							 : &t->untracked_contended,
					  1, memory_order_relaxed);
		out->verdict = CLIENT_ADMIT_UNTRACKED;
		return out->verdict;
	}
	out->connections = conns;
	if (refused) {
		out->verdict = CLIENT_REFUSE_CONNECTIONS;
		return out->verdict;
	}
	struct slot *s = &t->slot[idx];
	uint64_t m = atomic_load_explicit(&s->meta, memory_order_relaxed);
	RMX_ASSERT(meta_state(m) == SLOT_LIVE && meta_conns(m) >= 1);
	out->ref.slot = idx;
	out->ref.generation = meta_gen(m);
	atomic_store_explicit(&s->last_active_ms, now_ms, memory_order_relaxed);
	out->connection_rate = win_record(&s->conn_window, now_ms);
	out->screen = screen_of(atomic_load_explicit(&s->screen, memory_order_relaxed), now_ms);
	if (lim->connection_rate_max && out->connection_rate > lim->connection_rate_max) {
		client_table_disconnect(t, &out->ref);
		out->screen = SCREEN_VERDICT_NONE;
		out->verdict = CLIENT_REFUSE_CONNECTION_RATE;
		return out->verdict;
	}
	out->verdict = CLIENT_ADMIT;
	return out->verdict;
}

/* The slot that ref holds; asserts that it does hold it. */
static struct slot *held_slot(struct client_table *t, const struct client_ref *ref)
{
	RMX_ASSERT(ref->slot <= t->mask);
	struct slot *s = &t->slot[ref->slot];
	uint64_t m = atomic_load_explicit(&s->meta, memory_order_relaxed);
	RMX_ASSERT(meta_state(m) == SLOT_LIVE && meta_gen(m) == ref->generation &&
		   meta_conns(m) >= 1);
	return s;
}

void client_table_disconnect(struct client_table *t, struct client_ref *ref)
{
	if (ref->slot == CLIENT_REF_NONE)
		return;
	struct slot *s = held_slot(t, ref);
	/* Held: neither state nor generation can move, only the count. */
	uint64_t old = atomic_fetch_sub(&s->meta, 1);
	RMX_ASSERT(meta_state(old) == SLOT_LIVE && meta_gen(old) == ref->generation &&
		   meta_conns(old) >= 1);
	ref->slot = CLIENT_REF_NONE;
}

enum client_mail client_table_mail(struct client_table *t, const struct client_ref *ref,
				   const struct client_limits *lim, uint64_t now_ms,
				   uint32_t *rate_out)
{
	uint32_t rate = 0;
	enum client_mail v = CLIENT_MAIL_OK;
	if (ref->slot != CLIENT_REF_NONE) {
		struct slot *s = held_slot(t, ref);
		atomic_store_explicit(&s->last_active_ms, now_ms, memory_order_relaxed);
		rate = win_record(&s->mail_window, now_ms);
		if (lim->message_rate_max && rate > lim->message_rate_max)
			v = CLIENT_MAIL_REFUSE_RATE;
	}
	if (rate_out)
		*rate_out = rate;
	return v;
}

void client_table_screen_set(struct client_table *t, const struct client_ref *ref,
			     enum screen_verdict v, uint64_t expires_ms)
{
	RMX_ASSERT(v < SCREEN_VERDICT_COUNT);
	if (ref->slot == CLIENT_REF_NONE)
		return;
	struct slot *s = held_slot(t, ref);
	uint64_t expires = RMX_MIN(expires_ms, UINT64_MAX >> 8);
	atomic_store_explicit(&s->screen, expires << 8 | (uint64_t)v, memory_order_relaxed);
}

enum screen_verdict client_table_screen_get(struct client_table *t,
					    const struct client_ref *ref, uint64_t now_ms)
{
	if (ref->slot == CLIENT_REF_NONE)
		return SCREEN_VERDICT_NONE;
	struct slot *s = held_slot(t, ref);
	return screen_of(atomic_load_explicit(&s->screen, memory_order_relaxed), now_ms);
}

void client_table_peek(struct client_table *t, const struct client_key *k, uint64_t now_ms,
		       struct client_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	uint64_t base = key_hash(t, k);
	for (unsigned i = 0; i < CLIENT_TABLE_PROBE_SLOTS; i++) {
		struct slot *s = &t->slot[(base + i) & t->mask];
		uint64_t m = atomic_load_explicit(&s->meta, memory_order_acquire);
		if (meta_state(m) != SLOT_LIVE || !slot_has_key(s, k))
			continue;
		out->connections = meta_conns(m);
		out->connection_rate = win_estimate(
			atomic_load_explicit(&s->conn_window, memory_order_relaxed), now_ms);
		out->message_rate = win_estimate(
			atomic_load_explicit(&s->mail_window, memory_order_relaxed), now_ms);
		out->screen = screen_of(atomic_load_explicit(&s->screen, memory_order_relaxed),
					now_ms);
		return;
	}
}

void client_table_stats(struct client_table *t, struct client_table_stats *out)
{
	out->slots = (uint64_t)t->mask + 1;
	out->untracked_full = atomic_load_explicit(&t->untracked_full, memory_order_relaxed);
	out->untracked_contended =
		atomic_load_explicit(&t->untracked_contended, memory_order_relaxed);
	out->evicted = atomic_load_explicit(&t->evicted, memory_order_relaxed);
}
