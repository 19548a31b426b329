/*
 * store_read.c - the read-back machine of store_read.h: [read] and the
 * verdict on what came back.
 */
#include "store_read.h"

#include <errno.h>
#include <string.h>

void store_read_start(struct store_read *r, const struct store *st, uint64_t queue_id, int fd,
		      uint8_t *buf, uint64_t len)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(queue_id, &worker, &seq, &offset);
	RMX_ASSERT(fd >= 0 && buf != NULL && len >= RECORD_HEADER_BYTES && len <= INT32_MAX);
	memset(r, 0, sizeof(*r));
	r->store = st;
	r->queue_id = queue_id;
	r->fd = fd;
	r->buf = buf;
	r->len = len;
	r->offset = offset;
	r->outcome = STORE_READ_PENDING;
}

bool store_read_plan(struct store_read *r, struct io_plan *p)
{
	if (r->planned)
		return false;
	io_plan_clear(p);
	struct io_step *s = io_plan_add(p, IO_STEP_READ, r->fd);
	s->buf = r->buf;
	s->len = r->len;
	s->offset = r->offset;
	p->pending = p->count;
	r->planned = true;
	return true;
}

void store_read_advance(struct store_read *r, const struct io_plan *p)
{
	RMX_ASSERT(r->planned && r->outcome == STORE_READ_PENDING && p->pending == 0 &&
		   p->count == 1);
	r->bytes = p->result[0];
	r->error = io_step_outcome(&p->step[0], p->result[0]);
	if (r->error != 0) {
		r->outcome = STORE_READ_FAILED;
		return;
	}
	r->check = store_record_check(r->store, r->queue_id, r->buf, (size_t)r->len, &r->view);
	bool ok = r->check == RECORD_OK && r->view.header.queue_id == r->queue_id &&
		  r->view.padded_length == r->len;
	r->outcome = ok ? STORE_READ_OK : STORE_READ_BAD;
}
