/*
 * forward_state.h - the layout of one worker's forwarder, shared by the
 * parts of the forward module: forward.c (the public face: the pool of
 * slots, the tick, drain), forward_attempt.c (the message attached to a
 * slot and the end of its attempt), forward_upstream.c (the connection to
 * the relay and driving proto/smtp_client), forward_record.c (the slot's
 * stored record: segment fds, the read, a bad record's quarantine copy)
 * and forward_upkeep.c (delivery-log commits and segment reclamation).
 * Private to core/forward*.c; everyone else sees struct forward as opaque
 * (forward.h). Everything here runs on the worker thread.
 */
#ifndef RINGMX_FORWARD_STATE_H
#define RINGMX_FORWARD_STATE_H

#include "../common/base.h"
#include "../common/bounds.h"
#include "../proto/smtp_client.h"
#include "../proto/smtp_client_bdat.h"
#include "../storage/queue.h"
#include "../storage/record.h"
#include "../storage/segment_quarantine.h"
#include "../storage/segment_remove.h"
#include "../storage/store_read.h"
#include "bounce.h"
#include "forward.h"
#include "forward_msg.h"
#include "log.h"
#include "ring.h"
#include "store_io.h"
#include "tls.h"
#include "transport.h"

enum slot_state { SLOT_IDLE, SLOT_CONNECTING, SLOT_SESSION, SLOT_CLOSING };

struct forward_slot {
	struct forward *owner;
	uint32_t index;
	uint32_t gen;
	struct transport tp;        /* the socket (tp.fd, -1 when none) and its ops */
	enum slot_state state;
	uint32_t upstream;         /* index into cfg->upstream */
	uint32_t tried_mask;       /* upstreams tried by this connection attempt */
	uint64_t connected_ms;
	uint64_t deadline_ms;      /* the upstream must answer by then (0: none) */
	uint64_t idle_since_ms;    /* READY with no message since */
	bool connect_inflight;
	bool recv_inflight;
	bool recv_rearm;           /* the buffer ring ran dry: receive again next tick */
	bool send_inflight;
	bool read_inflight;
	bool quitting;
	bool client_ready;         /* the client said READY and nothing runs */
	uint8_t tls_mode;          /* enum smtp_client_tls of this connection */
	bool tls_start_pending;    /* START_TLS waits for the send in flight */
	bool tls_handshaking;      /* the transport is TLS, the handshake runs */
	bool tls_counted;          /* ringmx_upstream_tls_total has this connection */
	bool tls_clear_retry;      /* the handshake failed: the same relay again, in clear */
	char tls_version[16];      /* negotiated ("TLSv1.3"); "" in clear */
	char tls_cipher[64];
	struct smtp_client client;
	struct smtp_out out;
	uint8_t out_buf[FORWARD_OUT_BUFFER_BYTES];
	uint32_t send_bytes;       /* of out, in the send in flight */
	bool body_sending;         /* the send in flight is body bytes */
	size_t body_sent_bytes;    /* stored body offset of the next byte to send */
	bool body_pending;         /* SEND_BODY: the body goes after out */
	bool body_bdat;            /* it goes unstuffed, run by run (smtp_client_bdat.h) */
	size_t body_run_end;       /* BDAT: the stored offset the run being sent ends at */

	/* The message attached to the slot, and its shard (index into shards). */
	struct queue_msg *msg;
	uint32_t shard;
	uint8_t *rec;                /* the record being forwarded: rec_buf while in use */
	uint64_t rec_bytes;
	uint8_t *rec_buf;            /* kept between messages (FORWARD_REC_KEEP_BYTES) */
	uint64_t rec_buf_bytes;
	struct store_io_job io_job;  /* the record's read, then a bad one's copy, on store_io */
	struct store_read read;
	struct segment_quarantine quarantine;
	bool quarantine_active;      /* the slot takes no message until the copy is made */
	uint8_t *quarantine_rec;     /* the bad record's bytes, held for the copy */
	uint64_t quarantine_bytes;
	struct record_view view;
	bool msg_loaded;           /* the record is read, checked and parsed into fm */
	bool msg_started;          /* the client is forwarding it */
	struct forward_msg fm;
	struct bounce dsn;
};

struct seg_fd {
	uint32_t shard; /* index into shards */
	uint32_t seq;
	int fd;
};

struct forward {
	struct forward_env env;       /* env.cfg: the current configuration snapshot */
	struct forward_slot *slots;
	uint32_t slot_count;
	int64_t now_unix_ms;
	uint64_t now_ms;
	bool draining;
	uint64_t upstream_down_until_ms[UPSTREAMS_MAX];
	uint64_t upstream_clear_until_ms[UPSTREAMS_MAX]; /* opportunistic TLS failed: clear */
	struct tls_ctx *tls_client;   /* upstream TLS; NULL without upstreams */

	uint32_t due_next;         /* shard asked first for a due message */

	struct store_io_job delivery_log_job; /* the queues' commits, on store_io */
	bool delivery_log_wanted;          /* delivery_log_submit is asking */
	uint32_t delivery_log_shard;       /* whose commit is in flight */
	uint32_t delivery_log_next;        /* asked first for the next commit */

	bool reclaim_inflight;
	uint32_t reclaim_shard;
	struct segment_remove reclaim;     /* storage's plans, on store_io */
	struct store_io_job reclaim_job;

	uint64_t rec_held_bytes;      /* record buffers of all slots (max_inflight_data_bytes) */

	struct seg_fd seg_fds[FORWARD_SEGMENT_FDS_MAX];
	uint32_t seg_fd_next;
	uint64_t dsn_counter;

	struct forward_stats stats;
};

static inline uint64_t slot_ud(enum ring_op op, const struct forward_slot *s)
{
	return ring_ud(op, s->gen, s->index);
}

static inline struct queue *shard_queue(const struct forward *f, uint32_t shard)
{
	RMX_ASSERT(shard < f->env.shard_count);
	return f->env.shards[shard].queue;
}

/* The queue of the slot's message. */
static inline struct queue *slot_queue(const struct forward *f, const struct forward_slot *s)
{
	return shard_queue(f, s->shard);
}

/* reply="CODE STATUS TEXT" (the relay's words, quoted by the logger). */
static inline void log_add_reply(struct log_msg *m, unsigned code, const char *status,
				 const char *text)
{
	char reply[FORWARD_DIAG_BYTES];
	int n = snprintf(reply, sizeof(reply), "%u %s%s%s", code, status, text[0] ? " " : "", text);
	log_add(m, "reply", reply, n < 0 ? 0 : RMX_MIN((size_t)n, sizeof(reply) - 1));
}

#endif
