/*
 * test_forward_fixture.h - real record bytes and a real queue for the
 * tests of the forwarder's pure parts (test_forward_msg.c, test_bounce.c).
 *
 * A record is built as the gateway builds one: envelope items with
 * record_env_put, sealed with record_seal, its CRC salted for a segment,
 * then verified by record_check into the view the forwarder reads. Its
 * queue message comes from an in-memory queue (queue_new: no files), popped
 * as core/forward pops one, so recipient states are the queue's own.
 */
#ifndef RINGMX_TEST_FORWARD_FIXTURE_H
#define RINGMX_TEST_FORWARD_FIXTURE_H

#include <stdlib.h>
#include <string.h>

#include "../proto/smtp_client.h"
#include "../storage/queue.h"
#include "../storage/record.h"
#include "test.h"

#define FIX_SALT 0x0123456789ABCDEFull
#define FIX_WORKER 2
#define FIX_SEQ 5
#define FIX_OFFSET_BYTES 4096
#define FIX_ARRIVAL_MS 1764345600000ll /* 2025-11-28 16:00:00 UTC */
#define FIX_RETRY_MIN_MS 60000ll
#define FIX_RETRY_MAX_MS 600000ll

struct fix_record {
	struct bytebuf env;
	uint8_t *image;
	size_t image_len;
	struct record_view view;
};

static void fix_put_bytes(struct fix_record *r, enum record_tag tag, const void *p, size_t n)
{
	REQUIRE(record_env_put(&r->env, tag, span_make(p, n)) == 0);
}

static void fix_put(struct fix_record *r, enum record_tag tag, const char *value)
{
	fix_put_bytes(r, tag, value, strlen(value));
}

static uint64_t fix_queue_id(void)
{
	return queue_id_make(FIX_WORKER, FIX_SEQ, FIX_OFFSET_BYTES);
}

/* Seals r's envelope with body as it would lie in a segment salted
 * FIX_SALT, and checks it back into r->view. */
static void fix_seal(struct fix_record *r, const char *body)
{
	size_t body_len = strlen(body);
	struct iovec part = { (void *)body, body_len };
	struct record_header h;
	record_seal(&h, fix_queue_id(), FIX_ARRIVAL_MS, span_make(r->env.data, r->env.len), &part, 1);
	r->image_len = record_padded_length(r->env.len, body_len);
	r->image = calloc(1, r->image_len);
	REQUIRE(r->image != NULL);
	struct record_header salted = h;
	salted.crc32c = record_crc_salted(h.crc32c, FIX_SALT);
	memcpy(r->image, &salted, RECORD_HEADER_BYTES);
	if (r->env.len)
		memcpy(r->image + RECORD_HEADER_BYTES, r->env.data, r->env.len);
	memcpy(r->image + RECORD_HEADER_BYTES + r->env.len, body, body_len);
	REQUIRE(record_check(r->image, r->image_len, FIX_SALT, &r->view) == RECORD_OK);
}

static void fix_record_free(struct fix_record *r)
{
	bytebuf_free(&r->env);
	free(r->image);
	memset(r, 0, sizeof(*r));
}

static struct queue *fix_queue(int64_t max_lifetime_ms)
{
	struct queue_config c = {
		.worker = FIX_WORKER,
		.retry_min_ms = FIX_RETRY_MIN_MS,
		.retry_max_ms = FIX_RETRY_MAX_MS,
		.max_lifetime_ms = max_lifetime_ms,
		.fsync = true,
		.jitter_seed = 77,
	};
	struct queue *q = NULL;
	REQUIRE(queue_new(&c, &q) == 0);
	return q;
}

/* Queues r's record with rcpt_count recipients (arrived FIX_ARRIVAL_MS)
 * and pops it, due at now. */
static struct queue_msg *fix_pop_new(struct queue *q, const struct fix_record *r,
				     uint32_t rcpt_count, int64_t now_unix_ms)
{
	REQUIRE(queue_add(q, fix_queue_id(), r->image_len, rcpt_count, FIX_ARRIVAL_MS,
			  FIX_ARRIVAL_MS) == 0);
	struct queue_msg *m = queue_next_due(q, now_unix_ms);
	REQUIRE(m != NULL);
	return m;
}

/* Sets a client result as smtp_client leaves one. */
static void fix_result(struct smtp_client_result *r, uint16_t code, const char *status,
		       const char *text)
{
	memset(r, 0, sizeof(*r));
	r->code = code;
	REQUIRE(strlen(status) < sizeof(r->status) && strlen(text) < sizeof(r->text));
	memcpy(r->status, status, strlen(status));
	memcpy(r->text, text, strlen(text));
}

#endif
