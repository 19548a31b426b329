/*
 * policy.c - the recipient policy: which domains we serve and, optionally,
 * which addresses in them exist. Consulted by the session for every RCPT,
 * after smtp_parse_path() has split the forward path.
 *
 * Two open-addressing hash sets with linear probing: served domains, keyed
 * by the normalized domain (ASCII lower-case, one trailing dot removed), and
 * recipients, keyed by "local@domain" with the local part kept byte for byte
 * and the domain normalized ("@domain" is a catch-all). Keys are copied in
 * at build time; the tables grow by rehashing and stay at most half full.
 *
 * Invariants: after the build the policy is never written, so any number
 * of workers may query it at once; a lookup allocates nothing and hashes
 * and compares the caller's spans in place, folding case on the fly.
 * Fail closed: a recipient entry never makes its domain served.
 */
#include "policy.h"

#include "../common/bounds.h"
#include "smtp_cmd.h"

#include <errno.h>
#include <string.h>

#define POLICY_SET_INITIAL_SLOTS 16

struct policy_slot {
	uint64_t hash;
	char *key;          /* owned; NULL marks an empty slot */
	uint32_t key_len;
	uint32_t local_len; /* recipients: bytes before the '@'; domains: 0 */
};

struct policy_set {
	struct policy_slot *slots;
	size_t slot_count; /* a power of two, or 0 before the first insert */
	size_t used;
};

struct smtp_policy {
	struct policy_set domains;
	struct policy_set recipients;
	bool has_recipients;
};

static inline uint8_t ascii_lower(uint8_t c)
{
	return (uint8_t)(c - 'A') < 26 ? (uint8_t)(c | 0x20) : c;
}

/* FNV-1a over the key bytes, then a multiply-xorshift finalizer so that the
 * low bits used for the slot index depend on every input byte. */
#define HASH_SEED 0xcbf29ce484222325ull
#define HASH_PRIME 0x100000001b3ull

static inline uint64_t hash_byte(uint64_t h, uint8_t c)
{
	return (h ^ c) * HASH_PRIME;
}

static uint64_t hash_bytes(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = hash_byte(h, p[i]);
	return h;
}

static uint64_t hash_bytes_lower(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = hash_byte(h, ascii_lower(p[i]));
	return h;
}

static uint64_t hash_finish(uint64_t h)
{
	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93ull;
	h ^= h >> 32;
	return h;
}

/* The domain as compared: one trailing dot dropped (case is folded by the
 * hash and compare functions). */
static struct span domain_trim(struct span d)
{
	if (d.len > 0 && d.ptr[d.len - 1] == '.')
		d.len--;
	return d;
}

/* Do the n bytes at key equal d with its ASCII letters folded? (Keys are
 * stored folded.) */
static bool key_eq_folded(const char *key, struct span d)
{
	for (size_t i = 0; i < d.len; i++) {
		if ((uint8_t)key[i] != ascii_lower(d.ptr[i]))
			return false;
	}
	return true;
}

static uint64_t domain_hash(struct span d)
{
	return hash_finish(hash_bytes_lower(HASH_SEED, d.ptr, d.len));
}

static uint64_t recipient_hash(struct span local, struct span d)
{
	uint64_t h = hash_bytes(HASH_SEED, local.ptr, local.len);
	h = hash_byte(h, '@');
	return hash_finish(hash_bytes_lower(h, d.ptr, d.len));
}

static bool slot_matches(const struct policy_slot *s, uint64_t hash, struct span local,
			 struct span d, bool is_recipient)
{
	if (s->hash != hash)
		return false;
	if (!is_recipient)
		return s->key_len == d.len && key_eq_folded(s->key, d);
	if (s->local_len != local.len || s->key_len != local.len + 1 + d.len)
		return false;
	return (local.len == 0 || memcmp(s->key, local.ptr, local.len) == 0) &&
	       s->key[local.len] == '@' &&
	       key_eq_folded(s->key + local.len + 1, d);
}

/*
 * Finds the slot holding (local, d) or the empty slot where it would go.
 * The set must have slots. local is ignored for the domain set. Never
 * allocates; loops at most slot_count times (the set is never full).
 */
static struct policy_slot *set_probe(const struct policy_set *set, uint64_t hash,
				     struct span local, struct span d, bool is_recipient)
{
	RMX_ASSERT(set->slot_count > 0 && set->used < set->slot_count);
	size_t mask = set->slot_count - 1;
	for (size_t i = hash & mask, probes = 0; probes < set->slot_count;
	     i = (i + 1) & mask, probes++) {
		struct policy_slot *s = &set->slots[i];
		if (s->key == NULL || slot_matches(s, hash, local, d, is_recipient))
			return s;
	}
	RMX_ASSERT(!"policy set has no empty slot");
	return NULL;
}

static bool set_contains(const struct policy_set *set, struct span local, struct span d,
			 bool is_recipient)
{
	if (set->slot_count == 0)
		return false;
	uint64_t hash = is_recipient ? recipient_hash(local, d) : domain_hash(d);
	return set_probe(set, hash, local, d, is_recipient)->key != NULL;
}

/* Doubles the slot array (or creates it) and reinserts every key. */
static int set_grow(struct policy_set *set)
{
	size_t new_count = set->slot_count ? set->slot_count * 2 : POLICY_SET_INITIAL_SLOTS;
	if (new_count < set->slot_count || new_count > SIZE_MAX / sizeof(struct policy_slot))
		return -ENOMEM;
	RMX_ASSERT((new_count & (new_count - 1)) == 0);
	struct policy_slot *fresh = calloc(new_count, sizeof(*fresh));
	if (fresh == NULL)
		return -ENOMEM;
	size_t mask = new_count - 1;
	for (size_t i = 0; i < set->slot_count; i++) {
		struct policy_slot *old = &set->slots[i];
		if (old->key == NULL)
			continue;
		size_t j = old->hash & mask;
		while (fresh[j].key != NULL)
			j = (j + 1) & mask;
		fresh[j] = *old;
	}
	free(set->slots);
	set->slots = fresh;
	set->slot_count = new_count;
	return 0;
}

/*
 * Inserts (local, d) unless present. The key stored is local '@' folded(d)
 * for recipients, folded(d) for domains. Returns 0 (also for a duplicate)
 * or -ENOMEM, leaving the set unchanged on failure.
 */
static int set_insert(struct policy_set *set, struct span local, struct span d,
		      bool is_recipient)
{
	if ((set->used + 1) * 2 > set->slot_count) {
		int rc = set_grow(set);
		if (rc != 0)
			return rc;
	}
	uint64_t hash = is_recipient ? recipient_hash(local, d) : domain_hash(d);
	struct policy_slot *s = set_probe(set, hash, local, d, is_recipient);
	if (s->key != NULL)
		return 0;

	size_t local_part = is_recipient ? local.len + 1 : 0;
	size_t key_len = local_part + d.len;
	char *key = malloc(key_len + 1);
	if (key == NULL)
		return -ENOMEM;
	if (is_recipient) {
		if (local.len > 0)
			memcpy(key, local.ptr, local.len);
		key[local.len] = '@';
	}
	for (size_t i = 0; i < d.len; i++)
		key[local_part + i] = (char)ascii_lower(d.ptr[i]);
	key[key_len] = '\0';

	s->hash = hash;
	s->key = key;
	s->key_len = (uint32_t)key_len;
	s->local_len = is_recipient ? (uint32_t)local.len : 0;
	set->used++;
	RMX_ASSERT(set->used * 2 <= set->slot_count);
	return 0;
}

static void set_free(struct policy_set *set)
{
	for (size_t i = 0; i < set->slot_count; i++)
		free(set->slots[i].key);
	free(set->slots);
	set->slots = NULL;
	set->slot_count = 0;
	set->used = 0;
}

/* A domain as configured, trailing dot already trimmed: 1..255 bytes, no
 * SP, controls, '@' or brackets. Non-ASCII (U-labels) is kept as given. */
static bool domain_entry_ok(struct span d)
{
	if (d.len == 0 || d.len > SMTP_DOMAIN_MAX_BYTES)
		return false;
	for (size_t i = 0; i < d.len; i++) {
		uint8_t c = d.ptr[i];
		if (c <= ' ' || c == 0x7f || c == '@' || c == '[' || c == ']')
			return false;
	}
	return true;
}

/* A local part as configured: at most 64 bytes, no controls; SP only when
 * it is a quoted string. Empty means catch-all. */
static bool local_entry_ok(struct span local)
{
	if (local.len > SMTP_LOCAL_PART_MAX_BYTES)
		return false;
	bool quoted = local.len >= 2 && local.ptr[0] == '"' && local.ptr[local.len - 1] == '"';
	for (size_t i = 0; i < local.len; i++) {
		uint8_t c = local.ptr[i];
		if (c < ' ' || c == 0x7f || (c == ' ' && !quoted))
			return false;
	}
	return true;
}

struct smtp_policy *policy_new(void)
{
	return calloc(1, sizeof(struct smtp_policy));
}

void policy_free(struct smtp_policy *p)
{
	if (p == NULL)
		return;
	set_free(&p->domains);
	set_free(&p->recipients);
	free(p);
}

int policy_add_domain(struct smtp_policy *p, struct span domain)
{
	RMX_ASSERT(p != NULL);
	RMX_ASSERT(domain.ptr != NULL || domain.len == 0);
	struct span d = domain_trim(domain);
	if (!domain_entry_ok(d))
		return -EINVAL;
	return set_insert(&p->domains, span_make(NULL, 0), d, false);
}

int policy_add_recipient(struct smtp_policy *p, struct span entry)
{
	RMX_ASSERT(p != NULL);
	RMX_ASSERT(entry.ptr != NULL || entry.len == 0);
	/* The last '@' separates: a quoted local part may hold one too. */
	size_t at = entry.len;
	while (at > 0 && entry.ptr[at - 1] != '@')
		at--;
	if (at == 0)
		return -EINVAL;
	struct span local = span_make(entry.ptr, at - 1);
	struct span d = domain_trim(span_make(entry.ptr + at, entry.len - at));
	if (!local_entry_ok(local) || !domain_entry_ok(d))
		return -EINVAL;
	int rc = set_insert(&p->recipients, local, d, true);
	if (rc == 0)
		p->has_recipients = true;
	return rc;
}

bool policy_has_recipients(const struct smtp_policy *p)
{
	RMX_ASSERT(p != NULL);
	return p->has_recipients;
}

enum policy_verdict policy_check_rcpt(const struct smtp_policy *p, struct span local,
				      struct span domain, bool route_chars, bool address_literal)
{
	RMX_ASSERT(p != NULL);
	if (address_literal)
		return POLICY_RELAY_DENIED;
	if (domain.len == 0) {
		/* RFC 5321 4.5.1: the bare <postmaster> is always ours. */
		return span_eq_nocase(local, "postmaster") ? POLICY_ACCEPT : POLICY_RELAY_DENIED;
	}
	struct span d = domain_trim(domain);
	if (d.len == 0 || !set_contains(&p->domains, span_make(NULL, 0), d, false))
		return POLICY_RELAY_DENIED;

	bool listed = local.len > 0 && set_contains(&p->recipients, local, d, true);
	if (route_chars) {
		/* "a%b@served", "a!b@served", "\"a@b\"@served": routed onward by
		 * some MTAs; only an address listed exactly is ours. */
		return listed ? POLICY_ACCEPT : POLICY_RELAY_DENIED;
	}
	if (!p->has_recipients)
		return POLICY_ACCEPT;
	if (listed || set_contains(&p->recipients, span_make(NULL, 0), d, true))
		return POLICY_ACCEPT;
	return POLICY_UNKNOWN_USER;
}
