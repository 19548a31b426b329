/*
 * conn.c - the connection slab and the per-connection carry buffer.
 *
 * The slab is one calloc'd array: untouched slots cost no resident memory.
 * Generations increase on every release, so (slot, gen) names one owner.
 */
#include "conn.h"

#include <errno.h>
#include <string.h>

#include "../common/bounds.h"

int conn_slab_init(struct conn_slab *s, uint32_t cap)
{
	memset(s, 0, sizeof(*s));
	s->conns = calloc(cap, sizeof(*s->conns));
	if (!s->conns)
		return -ENOMEM;
	s->cap = cap;
	s->free_head = CONN_NONE;
	return 0;
}

void conn_slab_free(struct conn_slab *s)
{
	free(s->conns);
	memset(s, 0, sizeof(*s));
}

struct conn *conn_alloc(struct conn_slab *s)
{
	struct conn *c;
	if (s->free_head != CONN_NONE) {
		c = &s->conns[s->free_head];
		s->free_head = c->next;
	} else if (s->high_water < s->cap) {
		c = &s->conns[s->high_water++];
	} else {
		return NULL;
	}
	RMX_ASSERT(!(c->flags & CONN_USED));
	uint32_t gen = c->gen;
	memset(c, 0, sizeof(*c));
	c->gen = (gen + 1) & 0xffffffu;
	c->flags = CONN_USED;
	c->fd = -1;
	c->next = CONN_NONE;
	c->rearm_next = CONN_NONE;
	c->cfg_snapshot = -1;
	s->used++;
	return c;
}

void conn_release(struct conn_slab *s, struct conn *c)
{
	RMX_ASSERT((c->flags & CONN_USED) && s->used > 0);
	RMX_ASSERT(!(c->flags & (CONN_RECV_ARMED | CONN_SEND_INFLIGHT | CONN_WAIT_COMMIT)));
	free(c->carry);
	free(c->out.buf);
	free(c->http);
	c->carry = NULL;
	c->out.buf = NULL;
	c->http = NULL;
	c->flags = 0;
	c->next = s->free_head;
	s->free_head = conn_index(s, c);
	s->used--;
}

int conn_carry_append(struct conn *c, const uint8_t *p, size_t n)
{
	if (n == 0)
		return 0;
	if ((size_t)c->carry_len + n > CARRY_HARD_MAX_BYTES)
		return -ENOBUFS;
	if (c->carry_len + n > c->carry_cap) {
		size_t cap = c->carry_cap ? c->carry_cap : 4096;
		while (cap < c->carry_len + n)
			cap *= 2;
		void *q = realloc(c->carry, cap);
		if (!q)
			return -ENOMEM;
		c->carry = q;
		c->carry_cap = (uint32_t)cap;
	}
	memcpy(c->carry + c->carry_len, p, n);
	c->carry_len += (uint32_t)n;
	return 0;
}

void conn_carry_consume(struct conn *c, size_t n)
{
	RMX_ASSERT(n <= c->carry_len);
	if (n == c->carry_len) {
		free(c->carry);
		c->carry = NULL;
		c->carry_len = c->carry_cap = 0;
		return;
	}
	memmove(c->carry, c->carry + n, c->carry_len - n);
	c->carry_len -= (uint32_t)n;
}
