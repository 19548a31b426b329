/*
 * control.h - operator requests to a running gateway: requeue (retry now)
 * or delete messages of a worker's forwarding queue.
 *
 * ringmx-store writes a request file atomically (temporary name, fsync,
 * rename) into DATA_DIR/w<N>/control/ of the shard that holds the message
 * and sends SIGUSR1 to the pid in DATA_DIR/ringmx.pid. Each worker, asked
 * by the main thread, applies the files of its shard with control_apply().
 *
 * The request files and their line grammar: common/control_proto.h.
 */
#ifndef RINGMX_CONTROL_H
#define RINGMX_CONTROL_H

#include "../common/base.h"
#include "../common/bounds.h"
#include "../common/control_proto.h"

struct queue;


struct control_result {
	uint32_t files;      /* request files read and removed */
	uint32_t applied;    /* lines applied (requeue of a due message included) */
	uint64_t made_due;   /* messages moved by "requeue all" */
	uint32_t unknown;    /* ids this queue does not hold (final, another shard's) */
	uint32_t busy;       /* the message was in flight: left as it is */
	uint32_t malformed;  /* lines not understood, or a file refused whole */
	uint32_t errors;     /* files that could not be read or removed */
	int first_error;     /* -errno of the first of those, else 0 */
};

/*
 * Applies every request file in shard_dir/control to q (the queue of that
 * shard) and removes each file once applied; fills *out. Blocking file
 * I/O on the calling worker thread: acceptable because it runs only when
 * an operator asks (SIGUSR1) and at start-up, never per message. Returns
 * 0 (also when there is no control directory), or -errno when the
 * directory cannot be read. Malformed lines never stop the rest.
 */
RMX_MUST_CHECK int control_apply(struct queue *q, const char *shard_dir, int64_t now_unix_ms,
				 struct control_result *out);

/*
 * Applies one request line (no LF) to q; counts the outcome in *out. Pure
 * apart from the queue: the file handling of control_apply is separate.
 */
void control_apply_line(struct queue *q, struct span line, int64_t now_unix_ms,
			struct control_result *out);

#endif
