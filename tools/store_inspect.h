/*
 * store_inspect.h - the store tool's read-only commands on the records:
 * ls, show, stats and verify. They read every shard DIR/w<N>/ present
 * through the segment scanner recovery uses, with read-only maps, so they
 * are safe while ringmx runs. Each prints its output and returns the
 * tool's exit code (0 success, 1 not found / damage found / I/O error,
 * 2 usage). Tool code: blocking, one thread.
 */
#ifndef RINGMX_STORE_INSPECT_H
#define RINGMX_STORE_INSPECT_H

#include "../common/base.h"

/* ls: one line per message, QUEUE_ID AGE SIZE FROM TO. */
int store_inspect_ls(const char *data_dir);

/* show ID: the envelope, then the message dot-unstuffed; body_only: the
 * message only. */
int store_inspect_show(const char *data_dir, const char *id_text, bool body_only);

/* stats: messages, message bytes, segments, shards. */
int store_inspect_stats(const char *data_dir);

/* verify: checks every record; lists damage and returns 1 if there is any
 * (a torn tail only where a later segment holds data, a damaged region
 * only if it is still there after a pause). */
int store_inspect_verify(const char *data_dir);

#endif
