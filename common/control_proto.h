/*
 * control_proto.h - the operator-request protocol between ringmx-store and a
 * running gateway, shared by both so it is defined once.
 *
 * The tool writes a request file atomically (a temporary name starting with
 * '.', fsync, rename to <16-digit time>-<pid>.req, fsync of the directory)
 * into DATA_DIR/w<N>/CONTROL_DIR_NAME/ of the shard that holds the message,
 * then sends SIGUSR1 to the pid in DATA_DIR/CONTROL_PID_FILE_NAME. Each
 * worker applies the files of its shard in name order, then removes them.
 *
 * A request file holds at most CONTROL_REQUEST_MAX_BYTES of lines:
 *
 *   requeue <QUEUE_ID>      the message is due now
 *   requeue all             every queued message is due now
 *   delete <QUEUE_ID>       DELETED for its pending recipients, no DSN
 *
 * QUEUE_ID is 16 hex digits (storage/record.h checks them); words are
 * separated by blanks; a CR before the LF and empty lines are allowed.
 * Anything else is malformed and skipped. Pure; any thread.
 */
#ifndef RINGMX_CONTROL_PROTO_H
#define RINGMX_CONTROL_PROTO_H

#include "base.h"

#define CONTROL_DIR_NAME "control"          /* inside the shard directory */
#define CONTROL_REQUEST_SUFFIX ".req"
#define CONTROL_PID_FILE_NAME "ringmx.pid"  /* inside DATA_DIR */

enum control_verb { CONTROL_VERB_REQUEUE, CONTROL_VERB_DELETE };

struct control_request {
	enum control_verb verb;
	bool all;            /* "requeue all" */
	struct span id_text; /* the QUEUE_ID word, unchecked; empty when all */
};

enum control_line_result {
	CONTROL_LINE_OK,
	CONTROL_LINE_EMPTY,     /* blanks only: skipped, not an error */
	CONTROL_LINE_MALFORMED,
};

/* Parses one line (without its LF; a trailing CR is allowed). id_text
 * points into line. */
enum control_line_result control_line_parse(struct span line, struct control_request *out);

/* Writes the request line for verb (id_text NULL: "requeue all"), LF
 * included, NUL-terminated, into buf[cap]. Returns its length without the
 * NUL, or 0 when it does not fit (or "delete all", which does not exist). */
size_t control_line_format(char *buf, size_t cap, enum control_verb verb, const char *id_text);

#endif
