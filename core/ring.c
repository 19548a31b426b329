/*
 * ring.c - io_uring set-up for one worker, and the provided buffer ring.
 *
 * liburing 2.3 has no io_uring_setup_buf_ring: we map the ring memory
 * ourselves (page aligned, entries * 16 bytes), register it, then add every
 * buffer. The kernel flags wanted (SINGLE_ISSUER + DEFER_TASKRUN) are tried
 * first; an old kernel refusing them costs speed, not correctness.
 */
#include "ring.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

int ring_init(struct io_uring *ring, unsigned entries, struct ring_info *info)
{
	static const unsigned attempts[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int rc = -EINVAL;
	for (size_t i = 0; i < RMX_ARRAY_LEN(attempts); i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = attempts[i];
		rc = io_uring_queue_init_params(entries, ring, &p);
		if (rc == 0) {
			info->flags = attempts[i];
			info->defer_taskrun = (attempts[i] & IORING_SETUP_DEFER_TASKRUN) != 0;
			return 0;
		}
		if (rc != -EINVAL)
			return rc;
	}
	return rc;
}

int buf_ring_setup(struct io_uring *ring, struct buf_ring *b, uint32_t count, uint32_t size_bytes,
		   uint16_t bgid)
{
	RMX_ASSERT(count > 0 && (count & (count - 1)) == 0 && count <= 32768);
	memset(b, 0, sizeof(*b));
	size_t ring_bytes = (size_t)count * sizeof(struct io_uring_buf);
	void *r = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (r == MAP_FAILED)
		return -errno;
	size_t data_bytes = (size_t)count * size_bytes;
	void *d = mmap(NULL, data_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (d == MAP_FAILED) {
		int e = -errno;
		munmap(r, ring_bytes);
		return e;
	}
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)r;
	reg.ring_entries = count;
	reg.bgid = bgid;
	int rc = io_uring_register_buf_ring(ring, &reg, 0);
	if (rc != 0) {
		munmap(d, data_bytes);
		munmap(r, ring_bytes);
		return rc;
	}
	b->br = r;
	b->base = d;
	b->count = count;
	b->size_bytes = size_bytes;
	b->bgid = bgid;
	io_uring_buf_ring_init(b->br);
	for (uint32_t i = 0; i < count; i++)
		buf_ring_return(b, (uint16_t)i);
	buf_ring_publish(b);
	return 0;
}

void buf_ring_free(struct io_uring *ring, struct buf_ring *b)
{
	if (!b->br)
		return;
	(void)io_uring_unregister_buf_ring(ring, b->bgid);
	munmap(b->base, (size_t)b->count * b->size_bytes);
	munmap(b->br, (size_t)b->count * sizeof(struct io_uring_buf));
	memset(b, 0, sizeof(*b));
}

struct io_uring_sqe *ring_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (RMX_LIKELY(sqe != NULL))
		return sqe;
	int rc = io_uring_submit(ring);
	RMX_ASSERT(rc >= 0);
	sqe = io_uring_get_sqe(ring);
	RMX_ASSERT(sqe != NULL);
	return sqe;
}
