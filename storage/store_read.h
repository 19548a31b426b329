/*
 * store_read.h - the reading back of one queued record for forwarding, as a
 * plan-and-advance machine (io_plan.h): one read of the padded record at its
 * place in its segment, then its check with the segment's salt
 * (store_record_check), its id and the length the queue holds for it.
 *
 * The outcome says what the forwarder does with the message: send it
 * (STORE_READ_OK), read it again later (STORE_READ_FAILED: an I/O error or a
 * short read says nothing about the record), or set it aside
 * (STORE_READ_BAD: it read in full and does not check). No I/O here.
 */
#ifndef RINGMX_STORE_READ_H
#define RINGMX_STORE_READ_H

#include "io_plan.h"
#include "record.h"
#include "store.h"

enum store_read_outcome {
	STORE_READ_PENDING,
	STORE_READ_OK,
	STORE_READ_FAILED,
	STORE_READ_BAD,
};

struct store_read {
	const struct store *store;
	uint64_t queue_id;
	int fd;             /* the record's segment, opened by the caller */
	uint8_t *buf;       /* len bytes, the caller's; filled by the read */
	uint64_t len;       /* the padded record, as the queue holds it */
	uint64_t offset;    /* of the record in its segment (from the id) */
	bool planned;
	/* Outcome, once not PENDING: */
	enum store_read_outcome outcome;
	int bytes;          /* what the read returned: a count or -errno */
	int error;          /* FAILED: the -errno, -EIO for a short read */
	enum record_check_result check; /* BAD: the check's verdict (RECORD_OK
					 * when only the id or length differ) */
	struct record_view view;        /* OK: the record, pointing into buf */
};

/* Starts reading record queue_id of st from segment fd into buf[0..len).
 * st, buf stay alive until the outcome is in. */
void store_read_start(struct store_read *r, const struct store *st, uint64_t queue_id, int fd,
		      uint8_t *buf, uint64_t len);

/* io_plan.h protocol: one plan, one read; plan returns false after it. */
bool store_read_plan(struct store_read *r, struct io_plan *p);
void store_read_advance(struct store_read *r, const struct io_plan *p);

#endif
