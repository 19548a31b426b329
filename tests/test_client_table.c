/*
 * test_client_table.c - the shared per-client table: keys (IPv4, IPv6
 * prefixes, IPv4-mapped), each limit at its edge, the sliding minute across
 * window changes, cached screening verdicts and their expiry, exempt
 * clients, a full table (untracked, counted, never refused) and eviction
 * that never touches a held client; then threads hammering overlapping keys,
 * with the totals exact at the end and the concurrency limit never passed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>

#include "../core/client_table.h"
#include "test.h"

#define W CLIENT_RATE_WINDOW_MS

static struct client_key key(const char *ip, uint32_t prefix)
{
	struct client_key k;
	REQUIRE(client_key_of_ip(ip, prefix, &k));
	return k;
}

static bool same_key(struct client_key a, struct client_key b)
{
	return a.hi == b.hi && a.lo == b.lo;
}

static struct client_table *table(uint32_t slots)
{
	struct client_table *t = NULL;
	REQUIRE(client_table_create(&t, slots) == 0);
	return t;
}

static void test_keys(void)
{
	CHECK(same_key(key("192.0.2.7", 64), key("::ffff:192.0.2.7", 64)));
	CHECK(!same_key(key("192.0.2.7", 64), key("192.0.2.8", 64)));
	/* An IPv4 address is whole whatever the IPv6 prefix. */
	CHECK(!same_key(key("192.0.2.7", 16), key("192.0.2.8", 16)));
	CHECK(same_key(key("2001:db8:1:2::1", 64), key("2001:db8:1:2:ffff::9", 64)));
	CHECK(!same_key(key("2001:db8:1:2::1", 64), key("2001:db8:1:3::1", 64)));
	CHECK(same_key(key("2001:db8:1:2::1", 48), key("2001:db8:1:3::1", 48)));
	CHECK(!same_key(key("2001:db8:1:2::1", 128), key("2001:db8:1:2::2", 128)));
	CHECK(same_key(key("2001:db8:1:2::1", 128), key("2001:db8:1:2::1", 128)));
	CHECK(same_key(key("2001:db8:1:2:8000::1", 65), key("2001:db8:1:2:ffff::", 65)));
	CHECK(!same_key(key("2001:db8:1:2:8000::1", 65), key("2001:db8:1:2:7fff::", 65)));
	/* IPv4 and an IPv6 prefix that holds zeros where IPv4 has its marker. */
	CHECK(!same_key(key("0.0.0.0", 64), key("::", 64)));
	struct client_key k;
	CHECK(!client_key_of_ip("example.org", 64, &k));
	CHECK(!client_key_of_ip("[::1]", 64, &k));
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	REQUIRE(inet_pton(AF_INET6, "::ffff:198.51.100.1", &in6.sin6_addr) == 1);
	CHECK(client_key_of_sockaddr((struct sockaddr *)&in6, 64, &k) &&
	      same_key(k, key("198.51.100.1", 64)));
	struct sockaddr other = { .sa_family = AF_UNIX };
	CHECK(!client_key_of_sockaddr(&other, 64, &k));
}

static void test_connections(void)
{
	struct client_table *t = table(CLIENT_TABLE_SLOTS_MIN);
	struct client_limits lim = { .connections_max = 3 };
	struct client_key a = key("192.0.2.1", 64), b = key("192.0.2.2", 64);
	struct client_admission held[3], x;
	uint64_t now = 100 * W;
	for (int i = 0; i < 3; i++) {
		CHECK(client_table_connect(t, &a, &lim, now, &held[i]) == CLIENT_ADMIT);
		CHECK_EQ_U(held[i].connections, i + 1);
		CHECK(held[i].ref.slot != CLIENT_REF_NONE);
	}
	CHECK(client_table_connect(t, &a, &lim, now, &x) == CLIENT_REFUSE_CONNECTIONS);
	CHECK_EQ_U(x.connections, 3);
	CHECK(x.ref.slot == CLIENT_REF_NONE);
	client_table_disconnect(t, &x.ref); /* nothing held: nothing to do */
	/* Another client is not affected. */
	CHECK(client_table_connect(t, &b, &lim, now, &x) == CLIENT_ADMIT);
	client_table_disconnect(t, &x.ref);
	CHECK(x.ref.slot == CLIENT_REF_NONE);
	client_table_disconnect(t, &held[1].ref);
	struct client_snapshot snap;
	client_table_peek(t, &a, now, &snap);
	CHECK_EQ_U(snap.connections, 2);
	CHECK_EQ_U(snap.connection_rate, 3); /* the refused one did not count */
	CHECK(client_table_connect(t, &a, &lim, now, &held[1]) == CLIENT_ADMIT);
	for (int i = 0; i < 3; i++)
		client_table_disconnect(t, &held[i].ref);
	client_table_peek(t, &a, now, &snap);
	CHECK_EQ_U(snap.connections, 0);
	/* Exempt: never refused, still counted. */
	struct client_admission many[10];
	for (int i = 0; i < 10; i++)
		CHECK(client_table_connect(t, &a, &client_limits_none, now, &many[i]) ==
		      CLIENT_ADMIT);
	client_table_peek(t, &a, now, &snap);
	CHECK_EQ_U(snap.connections, 10);
	for (int i = 0; i < 10; i++)
		client_table_disconnect(t, &many[i].ref);
	client_table_destroy(t);
}

/* The sliding minute: a full previous window counts whole at the change,
 * half at its middle, nothing two windows on. */
static void test_connection_rate(void)
{
	struct client_table *t = table(CLIENT_TABLE_SLOTS_MIN);
	struct client_limits lim = { .connection_rate_max = 5 };
	struct client_key a = key("2001:db8::1", 64), a2 = key("2001:db8::2", 64);
	struct client_admission x;
	uint64_t base = 1000 * W;
	for (int i = 0; i < 5; i++) {
		CHECK(client_table_connect(t, i % 2 ? &a : &a2, &lim, base + 10 * i, &x) ==
		      CLIENT_ADMIT); /* one /64: one client */
		CHECK_EQ_U(x.connection_rate, i + 1);
		client_table_disconnect(t, &x.ref);
	}
	CHECK(client_table_connect(t, &a, &lim, base + W - 1, &x) ==
	      CLIENT_REFUSE_CONNECTION_RATE);
	CHECK_EQ_U(x.connection_rate, 6);
	CHECK(x.ref.slot == CLIENT_REF_NONE);
	struct client_snapshot snap;
	client_table_peek(t, &a, base + W - 1, &snap);
	CHECK_EQ_U(snap.connections, 0); /* the refused one was let go */
	/* Next window, at its start: the last one (6) still whole. */
	CHECK(client_table_connect(t, &a, &lim, base + W, &x) == CLIENT_REFUSE_CONNECTION_RATE);
	CHECK_EQ_U(x.connection_rate, 7);
	/* Half-way: 6 * 1/2 + 1 + 1 = 5, admitted. */
	CHECK(client_table_connect(t, &a, &lim, base + W + W / 2, &x) == CLIENT_ADMIT);
	CHECK_EQ_U(x.connection_rate, 5);
	client_table_disconnect(t, &x.ref);
	/* Two windows on: forgotten. */
	CHECK(client_table_connect(t, &a, &lim, base + 3 * W, &x) == CLIENT_ADMIT);
	CHECK_EQ_U(x.connection_rate, 1);
	client_table_disconnect(t, &x.ref);
	/* A worker whose clock read a moment earlier than another's: counted
	 * in the current window, not taken for a jump of 2^24 minutes. */
	CHECK(client_table_connect(t, &a, &lim, base + 3 * W - 1, &x) == CLIENT_ADMIT);
	CHECK_EQ_U(x.connection_rate, 2);
	client_table_disconnect(t, &x.ref);
	client_table_destroy(t);
}

static void test_message_rate(void)
{
	struct client_table *t = table(CLIENT_TABLE_SLOTS_MIN);
	struct client_limits lim = { .message_rate_max = 2 };
	struct client_key a = key("198.51.100.7", 64);
	struct client_admission x, y;
	uint64_t now = 5 * W;
	uint32_t rate = 0;
	CHECK(client_table_connect(t, &a, &lim, now, &x) == CLIENT_ADMIT);
	CHECK(client_table_connect(t, &a, &lim, now, &y) == CLIENT_ADMIT);
	CHECK(client_table_mail(t, &x.ref, &lim, now, &rate) == CLIENT_MAIL_OK && rate == 1);
	CHECK(client_table_mail(t, &y.ref, &lim, now, &rate) == CLIENT_MAIL_OK && rate == 2);
	CHECK(client_table_mail(t, &x.ref, &lim, now, &rate) == CLIENT_MAIL_REFUSE_RATE);
	CHECK_EQ_U(rate, 3);
	/* Refused ones count, as anvil counts them. */
	CHECK(client_table_mail(t, &y.ref, &lim, now + W / 2, &rate) == CLIENT_MAIL_REFUSE_RATE);
	CHECK_EQ_U(rate, 4);
	CHECK(client_table_mail(t, &y.ref, &lim, now + 3 * W, NULL) == CLIENT_MAIL_OK);
	/* Untracked: never limited. */
	struct client_ref none = { .slot = CLIENT_REF_NONE };
	CHECK(client_table_mail(t, &none, &lim, now, &rate) == CLIENT_MAIL_OK && rate == 0);
	client_table_disconnect(t, &x.ref);
	client_table_disconnect(t, &y.ref);
	client_table_destroy(t);
}

static void test_screen_cache(void)
{
	struct client_table *t = table(CLIENT_TABLE_SLOTS_MIN);
	struct client_key a = key("203.0.113.9", 64), b = key("203.0.113.10", 64);
	struct client_admission x;
	uint64_t now = 7 * W;
	CHECK(client_table_connect(t, &a, &client_limits_none, now, &x) == CLIENT_ADMIT);
	CHECK(x.screen == SCREEN_VERDICT_NONE);
	client_table_screen_set(t, &x.ref, SCREEN_VERDICT_PASS, now + 1000);
	CHECK(client_table_screen_get(t, &x.ref, now + 999) == SCREEN_VERDICT_PASS);
	CHECK(client_table_screen_get(t, &x.ref, now + 1000) == SCREEN_VERDICT_NONE);
	client_table_disconnect(t, &x.ref);
	/* The next connection (any worker) sees it; another client does not. */
	CHECK(client_table_connect(t, &a, &client_limits_none, now + 10, &x) == CLIENT_ADMIT);
	CHECK(x.screen == SCREEN_VERDICT_PASS);
	client_table_screen_set(t, &x.ref, SCREEN_VERDICT_FAIL, now + 5000);
	client_table_disconnect(t, &x.ref);
	CHECK(client_table_connect(t, &b, &client_limits_none, now + 10, &x) == CLIENT_ADMIT);
	CHECK(x.screen == SCREEN_VERDICT_NONE);
	client_table_disconnect(t, &x.ref);
	/* A cached verdict keeps an idle client's entry past its rate windows,
	 * and expires on time. */
	CHECK(client_table_connect(t, &a, &client_limits_none, now + 3 * W, &x) == CLIENT_ADMIT);
	CHECK(x.screen == SCREEN_VERDICT_NONE); /* expired at now + 5000 */
	client_table_screen_set(t, &x.ref, SCREEN_VERDICT_PASS, now + 100 * W);
	client_table_disconnect(t, &x.ref);
	struct client_snapshot snap;
	client_table_peek(t, &a, now + 50 * W, &snap);
	CHECK(snap.screen == SCREEN_VERDICT_PASS);
	client_table_destroy(t);
}

/* 4096 clients held open in a 1024-slot table: those it cannot place are
 * admitted untracked and counted, none refused; once they close, new
 * clients evict idle ones, and a held client is never evicted. */
static void test_full_table(void)
{
	enum { CLIENTS = 4096 };
	struct client_table *t = table(CLIENT_TABLE_SLOTS_MIN);
	CHECK_EQ_U(client_table_bytes(t), 64 * CLIENT_TABLE_SLOTS_MIN + 64 * 2);
	static struct client_admission held[CLIENTS];
	struct client_limits lim = { .connections_max = 1, .connection_rate_max = 1,
				     .message_rate_max = 1 };
	uint64_t now = 9 * W;
	unsigned admitted = 0, untracked = 0;
	struct client_key keep = key("192.0.2.200", 64);
	struct client_admission kept;
	CHECK(client_table_connect(t, &keep, &lim, now, &kept) == CLIENT_ADMIT);
	for (unsigned i = 0; i < CLIENTS; i++) {
		char ip[32];
		snprintf(ip, sizeof(ip), "10.0.%u.%u", i >> 8, i & 255);
		struct client_key k = key(ip, 64);
		enum client_admit v = client_table_connect(t, &k, &lim, now, &held[i]);
		CHECK(v == CLIENT_ADMIT || v == CLIENT_ADMIT_UNTRACKED);
		admitted += v == CLIENT_ADMIT;
		untracked += v == CLIENT_ADMIT_UNTRACKED;
		if (v == CLIENT_ADMIT_UNTRACKED) {
			CHECK(held[i].ref.slot == CLIENT_REF_NONE);
			CHECK(client_table_mail(t, &held[i].ref, &lim, now, NULL) == CLIENT_MAIL_OK);
		}
	}
	struct client_table_stats st;
	client_table_stats(t, &st);
	CHECK(admitted + 1 <= CLIENT_TABLE_SLOTS_MIN && admitted > CLIENT_TABLE_SLOTS_MIN / 2);
	CHECK_EQ_U(st.untracked_full, untracked);
	CHECK_EQ_U(admitted + untracked, CLIENTS);
	CHECK_EQ_U(st.evicted, 0);
	for (unsigned i = 0; i < CLIENTS; i++)
		client_table_disconnect(t, &held[i].ref);

	/* All idle now, with a minute's history each: new clients take their
	 * places and say so. */
	for (unsigned i = 0; i < CLIENTS; i++) {
		char ip[32];
		snprintf(ip, sizeof(ip), "10.1.%u.%u", i >> 8, i & 255);
		struct client_key k = key(ip, 64);
		struct client_admission x;
		CHECK(client_table_connect(t, &k, &lim, now + 1, &x) == CLIENT_ADMIT);
		client_table_disconnect(t, &x.ref);
	}
	client_table_stats(t, &st);
	CHECK_EQ_U(st.untracked_full, untracked); /* no more */
	CHECK(st.evicted >= CLIENTS - CLIENT_TABLE_SLOTS_MIN);
	uint64_t evicted = st.evicted;
	/* Two windows on, histories have aged out: an aged-out entry is taken
	 * before a live history is evicted (the first 128 new clients fill an
	 * eighth of the table: a window of 8 fresh entries is then unlikely
	 * past one in a million). */
	for (unsigned i = 0; i < CLIENTS; i++) {
		char ip[32];
		snprintf(ip, sizeof(ip), "10.2.%u.%u", i >> 8, i & 255);
		struct client_key k = key(ip, 64);
		struct client_admission x;
		CHECK(client_table_connect(t, &k, &lim, now + 2 * W + 1 + i, &x) == CLIENT_ADMIT);
		client_table_disconnect(t, &x.ref);
		if (i == 127) {
			client_table_stats(t, &st);
			CHECK_EQ_U(st.evicted, evicted);
		}
	}
	client_table_stats(t, &st);
	CHECK(st.evicted > evicted); /* past the table's size, fresh ones go */

	/* The held client survived every flood, with its counts. */
	struct client_snapshot snap;
	client_table_peek(t, &keep, now, &snap);
	CHECK_EQ_U(snap.connections, 1);
	struct client_admission again;
	CHECK(client_table_connect(t, &keep, &lim, now, &again) == CLIENT_REFUSE_CONNECTIONS);
	client_table_disconnect(t, &kept.ref);
	client_table_destroy(t);

	struct client_table *bad;
	CHECK(client_table_create(&bad, 1000) == -EINVAL);
	CHECK(client_table_create(&bad, CLIENT_TABLE_SLOTS_MIN / 2) == -EINVAL);
	CHECK(client_table_create(&bad, CLIENT_TABLE_SLOTS_MAX * 2u) == -EINVAL);
	CHECK_EQ_U(client_table_slots_for(10000), 65536);
	CHECK_EQ_U(client_table_slots_for(100000), 524288);
	CHECK_EQ_U(client_table_slots_for(CONNECTIONS_MAX), CLIENT_TABLE_SLOTS_MAX);
}

/* ---- threads ---- */

enum { THREADS = 8, HOT_KEYS = 16, HOT_ROUNDS = 20000, CONNS_MAX = 4, NEW_KEYS = 4096,
       FRESH_ROUNDS = 40 };

struct shared {
	struct client_table *t;
	struct client_key hot[HOT_KEYS];
	struct client_key fresh[NEW_KEYS];
	_Atomic uint32_t live[HOT_KEYS];       /* admitted and not yet closed */
	_Atomic uint32_t live_max[HOT_KEYS];
	_Atomic uint64_t admitted[HOT_KEYS];   /* each admission sends one MAIL */
	_Atomic uint64_t refused[HOT_KEYS];
	_Atomic uint64_t fresh_admitted[NEW_KEYS];
	_Atomic uint64_t fresh_untracked;
	_Atomic uint64_t wrong;                /* what a thread saw amiss (test.h's
						* counters are not for threads) */
	pthread_barrier_t start;
	uint64_t now;
};

static void *hammer_hot(void *arg)
{
	struct shared *sh = arg;
	struct client_limits lim = { .connections_max = CONNS_MAX };
	unsigned seed = (unsigned)(uintptr_t)pthread_self();
	pthread_barrier_wait(&sh->start);
	struct client_admission held[HOT_KEYS];
	unsigned held_key[HOT_KEYS], n_held = 0;
	for (unsigned r = 0; r < HOT_ROUNDS; r++) {
		unsigned i = (unsigned)rand_r(&seed) % HOT_KEYS;
		struct client_admission x;
		enum client_admit v = client_table_connect(sh->t, &sh->hot[i], &lim, sh->now, &x);
		if (v == CLIENT_REFUSE_CONNECTIONS) {
			atomic_fetch_add(&sh->refused[i], 1);
		} else if (v == CLIENT_ADMIT) {
			uint32_t now_live = atomic_fetch_add(&sh->live[i], 1) + 1;
			uint32_t seen = atomic_load(&sh->live_max[i]);
			while (now_live > seen &&
			       !atomic_compare_exchange_weak(&sh->live_max[i], &seen, now_live))
				;
			atomic_fetch_add(&sh->admitted[i], 1);
			if (client_table_mail(sh->t, &x.ref, &lim, sh->now, NULL) != CLIENT_MAIL_OK)
				atomic_fetch_add(&sh->wrong, 1);
			held[n_held] = x;
			held_key[n_held++] = i;
		} else {
			atomic_fetch_add(&sh->wrong, 1); /* the table is large: never untracked */
		}
		/* Close some, in another order than opened. */
		while (n_held > 0 && (n_held == HOT_KEYS || rand_r(&seed) % 2)) {
			unsigned j = (unsigned)rand_r(&seed) % n_held;
			atomic_fetch_sub(&sh->live[held_key[j]], 1);
			client_table_disconnect(sh->t, &held[j].ref);
			held[j] = held[n_held - 1];
			held_key[j] = held_key[--n_held];
		}
	}
	while (n_held > 0) {
		atomic_fetch_sub(&sh->live[held_key[n_held - 1]], 1);
		client_table_disconnect(sh->t, &held[--n_held].ref);
	}
	return NULL;
}

/* Every thread inserts the same new keys in the same order at the same
 * time: the races to create an entry. A twin entry would split the counts. */
static void *hammer_fresh(void *arg)
{
	struct shared *sh = arg;
	pthread_barrier_wait(&sh->start);
	for (unsigned i = 0; i < NEW_KEYS; i++) {
		struct client_admission x;
		enum client_admit v =
			client_table_connect(sh->t, &sh->fresh[i], &client_limits_none, sh->now, &x);
		if (v == CLIENT_ADMIT_UNTRACKED) {
			atomic_fetch_add(&sh->fresh_untracked, 1);
			continue;
		}
		if (v != CLIENT_ADMIT ||
		    client_table_mail(sh->t, &x.ref, &client_limits_none, sh->now, NULL) !=
			    CLIENT_MAIL_OK)
			atomic_fetch_add(&sh->wrong, 1);
		atomic_fetch_add(&sh->fresh_admitted[i], 1);
		client_table_disconnect(sh->t, &x.ref);
	}
	return NULL;
}

static void run_threads(struct shared *sh, void *(*fn)(void *))
{
	pthread_t th[THREADS];
	REQUIRE(pthread_barrier_init(&sh->start, NULL, THREADS) == 0);
	for (int i = 0; i < THREADS; i++)
		REQUIRE(pthread_create(&th[i], NULL, fn, sh) == 0);
	for (int i = 0; i < THREADS; i++)
		REQUIRE(pthread_join(th[i], NULL) == 0);
	pthread_barrier_destroy(&sh->start);
}

static void test_threads(void)
{
	static struct shared sh;
	memset(&sh, 0, sizeof(sh));
	sh.t = table(1u << 16);
	sh.now = 50 * W; /* one window's start: rates are exact counts */
	for (unsigned i = 0; i < HOT_KEYS; i++) {
		char ip[64];
		/* Half IPv4, half IPv6 addresses of one /64 per key. */
		if (i % 2)
			snprintf(ip, sizeof(ip), "192.0.2.%u", i);
		else
			snprintf(ip, sizeof(ip), "2001:db8:%x::%x", i, i + 1);
		sh.hot[i] = key(ip, 64);
	}
	run_threads(&sh, hammer_hot);
	uint64_t refused = 0;
	for (unsigned i = 0; i < HOT_KEYS; i++) {
		struct client_snapshot snap;
		client_table_peek(sh.t, &sh.hot[i], sh.now, &snap);
		CHECK_EQ_U(snap.connections, 0);
		CHECK_EQ_U(atomic_load(&sh.live[i]), 0);
		CHECK(atomic_load(&sh.live_max[i]) <= CONNS_MAX);
		/* Every admission was one arrival and one MAIL; refusals none. */
		CHECK_EQ_U(snap.connection_rate, atomic_load(&sh.admitted[i]));
		CHECK_EQ_U(snap.message_rate, atomic_load(&sh.admitted[i]));
		refused += atomic_load(&sh.refused[i]);
	}
	CHECK(refused > 0); /* the limit was met, so it was tested */
	CHECK_EQ_U(atomic_load(&sh.wrong), 0);
	printf("threads: %u x %u connects on %u keys, %llu refused at %u per key\n", THREADS,
	       HOT_ROUNDS, HOT_KEYS, (unsigned long long)refused, CONNS_MAX);

	/* Rounds of new keys (with two CPUs, a race to insert the same key is
	 * won cleanly most of the time: several rounds make a twin likely if
	 * the table could make one). */
	uint64_t untracked = 0;
	client_table_destroy(sh.t);
	for (unsigned round = 0; round < FRESH_ROUNDS; round++) {
		/* A table of its own each round, mostly empty: no eviction may
		 * hide a twin's split count. */
		sh.t = table(1u << 16);
		for (unsigned i = 0; i < NEW_KEYS; i++) {
			char ip[64];
			if (i % 2)
				snprintf(ip, sizeof(ip), "2001:db8:%x:%x::", 0x100 + round, i);
			else
				snprintf(ip, sizeof(ip), "172.%u.%u.%u", 16 + round, i >> 8, i & 255);
			sh.fresh[i] = key(ip, 64);
			atomic_store(&sh.fresh_admitted[i], 0);
		}
		atomic_store(&sh.fresh_untracked, 0);
		run_threads(&sh, hammer_fresh);
		uint64_t total = 0;
		for (unsigned i = 0; i < NEW_KEYS; i++) {
			struct client_snapshot snap;
			client_table_peek(sh.t, &sh.fresh[i], sh.now, &snap);
			CHECK_EQ_U(snap.connections, 0);
			CHECK_EQ_U(snap.message_rate, atomic_load(&sh.fresh_admitted[i]));
			total += atomic_load(&sh.fresh_admitted[i]);
		}
		CHECK_EQ_U(total + atomic_load(&sh.fresh_untracked), (uint64_t)THREADS * NEW_KEYS);
		untracked += atomic_load(&sh.fresh_untracked);
		struct client_table_stats st;
		client_table_stats(sh.t, &st);
		CHECK_EQ_U(st.evicted, 0);
		CHECK_EQ_U(st.untracked_full, 0);
		CHECK_EQ_U(st.untracked_contended, atomic_load(&sh.fresh_untracked));
		client_table_destroy(sh.t);
	}
	CHECK_EQ_U(atomic_load(&sh.wrong), 0);
	printf("threads: %u x %u new keys raced by %u threads, %llu untracked\n", FRESH_ROUNDS,
	       NEW_KEYS, THREADS, (unsigned long long)untracked);
}

int main(void)
{
	test_keys();
	test_connections();
	test_connection_rate();
	test_message_rate();
	test_screen_cache();
	test_full_table();
	test_threads();
	return test_main_end("client_table");
}
