/*
 * forward_msg.h - the message a forwarder slot sends, made from its checked
 * record, and the queue outcomes its attempt reports (DESIGN.md
 * "Forwarding").
 *
 * Between core/forward (the ring, the sockets) and the pure parts below it:
 * the record's envelope (storage/record.h) becomes what proto/smtp_client
 * takes, and the client's per-recipient results become storage/queue
 * outcomes. Nothing here touches a ring, a socket or the clock; loading a
 * message allocates its per-recipient arrays once. One thread.
 */
#ifndef RINGMX_FORWARD_MSG_H
#define RINGMX_FORWARD_MSG_H

#include "../common/base.h"
#include "../proto/smtp_client.h"
#include "../storage/queue.h"
#include "../storage/record.h"

/* XFORWARD ADDR text: "IPV6:" and an IPv6 address (a longer one goes bare). */
#define FORWARD_XFORWARD_ADDR_BYTES 64

/*
 * One stored message as the client sends it. The spans point into the
 * record buffer the view was checked in, which must outlive the message;
 * cm points at xf and the arrays here, so a loaded message is not moved.
 */
struct forward_msg {
	struct record_envelope env;          /* the record's envelope, decoded */
	struct span body;                    /* DATA wire form, sent verbatim */
	uint32_t rcpt_total;                 /* recipients in the record */
	uint32_t rcpt_count;                 /* of those, still pending: the ones sent */
	struct span *rcpts;                  /* [rcpt_count] their addresses, RCPT order */
	uint32_t *rcpt_index;                /* [rcpt_count] their index in the record */
	struct smtp_client_result *results;  /* [rcpt_count] filled by the client */
	uint32_t rcpt_cap;                   /* room in the three arrays, kept between
					      * messages up to FORWARD_MSG_RCPT_KEEP */
	struct smtp_client_message cm;       /* for smtp_client_start_message */
	struct smtp_client_xforward xf;
	char xf_addr[FORWARD_XFORWARD_ADDR_BYTES];
};

enum forward_msg_load_result {
	FORWARD_MSG_LOADED = 0,
	FORWARD_MSG_NO_MEMORY,
	FORWARD_MSG_MALFORMED,      /* an envelope item does not parse */
	FORWARD_MSG_RCPT_MISMATCH,  /* the record's recipients are not the queue's count */
};

/*
 * Makes fm (zeroed, or let go of with forward_msg_release or _free) the
 * message to send for
 * the checked record view of queue message qm: the recipients qm still has
 * pending, in RCPT order; the reverse path; SIZE= from the stored body
 * (what goes on the wire); the body type and SMTPUTF8 as received; XFORWARD
 * facts when the client address is known (an IPv6 one as "IPV6:..."). The
 * recipient arrays are reused when they have room (no allocation for a
 * usual message). On anything but LOADED, fm holds no message.
 */
RMX_MUST_CHECK enum forward_msg_load_result forward_msg_load(struct forward_msg *fm,
							     const struct record_view *view,
							     const struct queue_msg *qm);

/* Frees fm's arrays and zeroes it; a zeroed fm is a no-op. */
void forward_msg_free(struct forward_msg *fm);

/* Lets go of fm's message: zeroes it but keeps the recipient arrays for
 * the next forward_msg_load, unless they hold room for more than
 * FORWARD_MSG_RCPT_KEEP (then frees them). */
void forward_msg_release(struct forward_msg *fm);

/* What one recipient's attempt becomes in the queue. */
struct forward_outcome {
	enum queue_outcome outcome;
	uint16_t code;       /* the reply's code, 451 when there was no reply */
	uint16_t enhanced;   /* its enhanced status, packed (0: none) */
	const struct smtp_client_result *reply; /* the reply it was read from */
};

/*
 * The outcome of a recipient whose client result is rcpt; one without a
 * result of its own (code 0) takes the message's, mr. 2xx: DELIVERED; 5xx:
 * PERMFAIL (a DSN is due); anything else (4xx, no reply, a code out of the
 * classes): TEMPFAIL, retried with backoff by the queue.
 */
struct forward_outcome forward_outcome_of(const struct smtp_client_result *rcpt,
					  const struct smtp_client_result *mr);

/* Reports pending recipient i of fm (i < rcpt_count) to the queue with the
 * outcome of fm->results[i] (mr: the message's result); returns it. */
struct forward_outcome forward_msg_report(const struct forward_msg *fm, uint32_t i,
					  const struct smtp_client_result *mr, struct queue *q,
					  struct queue_msg *qm, int64_t now_unix_ms);

/* Every pending recipient of fm failed the same way (no relay reachable, a
 * session that ended before the message began): code and status, the
 * enhanced code as text ("4.4.1"), go to the queue for each. */
void forward_msg_fail_all(const struct forward_msg *fm, struct queue *q, struct queue_msg *qm,
			  enum queue_outcome outcome, uint16_t code, const char *status,
			  int64_t now_unix_ms);

#endif
