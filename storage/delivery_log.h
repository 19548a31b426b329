/*
 * delivery_log.h - the per-segment delivery log: what became of each
 * recipient of each record of one segment file.
 *
 * Layout: DIR/w<N>/<seq>.dlog next to <seq>.seg, an append-only array of
 * fixed DELIVERY_LOG_ENTRY_BYTES entries from offset 0, little-endian:
 *
 *   [0,4)   crc32c of bytes [4,32)
 *   [4]     type (enum delivery_log_type)        [5]  0 (reserved)
 *   [6,8)   reply code (250, 451, 550 ...; 0 = none)
 *   [8,12)  recipient index in RCPT order, or DELIVERY_LOG_RCPT_ALL (whole message)
 *   [12,14) attempt number (1 = the first delivery attempt; 0 = none yet)
 *   [14,16) enhanced status packed by delivery_log_enhanced_pack() (0 = none)
 *   [16,24) queue id of the record
 *   [24,32) time, unix ms: when it happened, or the next attempt (DEFERRED,
 *           REQUEUE)
 *
 * Replay (delivery_log_apply): entries are read in order; the first entry that does
 * not check (CRC, fields, torn) ends the log and the rest is ignored (a
 * crash mid-append). Final states (DELIVERED, BOUNCED, EXPIRED, DELETED,
 * SET_ASIDE) stick: no later entry changes a final recipient. A message-wide
 * entry (DELIVERY_LOG_RCPT_ALL) applies to every recipient still pending at that
 * point. The latest DEFERRED/REQUEUE sets the next attempt time.
 *
 * Encoding, decoding and replay are pure (any thread). The file helpers at
 * the end block: start-up and tools only.
 */
#ifndef RINGMX_DELIVERY_LOG_H
#define RINGMX_DELIVERY_LOG_H

#include "../common/base.h"

#define DELIVERY_LOG_ENTRY_BYTES 32
#define DELIVERY_LOG_RCPT_ALL 0xffffffffu
#define DELIVERY_LOG_NAME_MAX_BYTES 32 /* "00000001.dlog" */

enum delivery_log_type {
	DELIVERY_LOG_DELIVERED = 1, /* the upstream took the recipient (2xx) */
	DELIVERY_LOG_DEFERRED = 2,  /* still pending; time = next attempt */
	DELIVERY_LOG_BOUNCED = 3,   /* refused for good (5xx); its DSN is durable (or none due) */
	DELIVERY_LOG_EXPIRED = 4,   /* max queue lifetime passed; its DSN is durable (or none due) */
	DELIVERY_LOG_DELETED = 5,   /* removed by the operator: never sent, no DSN */
	DELIVERY_LOG_SET_ASIDE = 6, /* the record does not read back (CRC): never sent */
	DELIVERY_LOG_REQUEUE = 7,   /* operator: attempt again at time (pending recipients only) */
};
#define DELIVERY_LOG_TYPE_MAX 7

/* What replay knows about one recipient. Values 0..5 only. */
enum delivery_log_rcpt_state {
	DELIVERY_LOG_RCPT_PENDING = 0,
	DELIVERY_LOG_RCPT_DELIVERED = 1,
	DELIVERY_LOG_RCPT_BOUNCED = 2,
	DELIVERY_LOG_RCPT_EXPIRED = 3,
	DELIVERY_LOG_RCPT_DELETED = 4,
	DELIVERY_LOG_RCPT_SET_ASIDE = 5,
};

/* One decoded entry. */
struct delivery_log_entry {
	enum delivery_log_type type;
	uint32_t rcpt;          /* index, or DELIVERY_LOG_RCPT_ALL */
	uint64_t queue_id;
	int64_t time_unix_ms;
	uint16_t attempt;
	uint16_t reply_code;
	uint16_t enhanced;      /* delivery_log_enhanced_pack(), 0 = none */
};

enum delivery_log_decode_result {
	DELIVERY_LOG_OK = 0,
	DELIVERY_LOG_BAD_CRC,
	DELIVERY_LOG_BAD_FIELD, /* checks, but type or reserved byte impossible */
};

/* Enhanced status class.subject.detail (RFC 3463) in 16 bits: class 2, 4
 * or 5; subject 0..15; detail 0..511. Anything else packs as 0 (none). */
uint16_t delivery_log_enhanced_pack(unsigned cls, unsigned subject, unsigned detail);
/* Parses "5.1.1" (exactly that text, no spaces) and packs it; 0 if malformed. */
uint16_t delivery_log_enhanced_parse(struct span text);
/* Returns false for 0 (none). */
bool delivery_log_enhanced_unpack(uint16_t packed, unsigned *cls, unsigned *subject, unsigned *detail);

/* Writes e as DELIVERY_LOG_ENTRY_BYTES bytes and asserts it decodes back. e->type
 * must be a valid type. */
void delivery_log_entry_encode(const struct delivery_log_entry *e, uint8_t out[DELIVERY_LOG_ENTRY_BYTES]);

/* Checks and decodes one entry; *out is set only for DELIVERY_LOG_OK. */
enum delivery_log_decode_result delivery_log_entry_decode(const uint8_t in[DELIVERY_LOG_ENTRY_BYTES],
					  struct delivery_log_entry *out);

/* Length of the valid prefix of a log image: whole entries that decode,
 * up to the first one that does not (or a partial trailing one). */
size_t delivery_log_valid_prefix(const uint8_t *image, size_t len);

bool delivery_log_type_is_final(enum delivery_log_type type);
const char *delivery_log_type_name(enum delivery_log_type type);
const char *delivery_log_rcpt_state_name(enum delivery_log_rcpt_state state);

/* Replay state of one record: the caller owns rcpt_state[rcpt_count]
 * (initialised to DELIVERY_LOG_RCPT_PENDING) and sets pending = rcpt_count,
 * everything else 0. */
struct delivery_log_replay_msg {
	uint8_t *rcpt_state;
	uint32_t rcpt_count;
	uint32_t pending;            /* recipients still DELIVERY_LOG_RCPT_PENDING */
	uint16_t attempts;           /* highest attempt number seen */
	uint16_t last_reply_code;    /* of the latest entry carrying one */
	uint16_t last_enhanced;
	int64_t next_attempt_unix_ms;/* latest DEFERRED/REQUEUE time, 0 = none */
};

/*
 * Applies one entry of this record (e->queue_id is not checked here) by the
 * replay rules above. Returns false, changing nothing, when the recipient
 * index is out of range (the entry belongs to no recipient).
 */
bool delivery_log_apply(struct delivery_log_replay_msg *m, const struct delivery_log_entry *e);

/* "<seq, 8 digits>.dlog". */
void delivery_log_name_format(char out[DELIVERY_LOG_NAME_MAX_BYTES], uint32_t seq);
/* Parses "<decimal>.dlog" with 1 <= seq <= SEGMENT_SEQ_MAX. */
bool delivery_log_name_parse(const char *name, uint32_t *seq);

/* The rest blocks (start-up and tools only). Return 0 or -errno. */

/*
 * Reads <seq>.dlog of the shard directory whole into a malloc'd buffer the
 * caller frees (*image NULL and *len 0 when the file is missing or empty:
 * a missing log means no entries).
 */
RMX_MUST_CHECK int delivery_log_read(int shard_dirfd, uint32_t seq, uint8_t **image, size_t *len);

/*
 * Opens <seq>.dlog read-write (creating it 0600 if missing), cuts it to
 * valid_bytes (dropping a torn or bad tail so appends land on entry
 * boundaries), and fdatasyncs it when sync. *fd is the caller's.
 */
RMX_MUST_CHECK int delivery_log_open_for_append(int shard_dirfd, uint32_t seq, uint64_t valid_bytes,
					bool sync, int *fd);

#endif
