/*
 * queue_commands.h - the store tool's commands on the forwarding queue:
 * ls --deferred (read from the delivery logs, safe while ringmx runs),
 * requeue ID|all and delete ID. A change goes into the delivery logs
 * directly while the gateway is stopped (tools/queue_offline.h) and is
 * handed to it while it runs (tools/handover.h). Each returns the tool's
 * exit code (0 success, 1 not found / nothing pending / failure, 2 usage)
 * after printing. Tool code: blocking, one thread.
 */
#ifndef RINGMX_QUEUE_COMMANDS_H
#define RINGMX_QUEUE_COMMANDS_H

#include "queue_offline.h"

/* ls --deferred: one line per message waiting to be forwarded. */
int queue_commands_ls_deferred(const char *data_dir);

/* requeue all: every pending message of every shard is due now. */
int queue_commands_requeue_all(const char *data_dir);

/* requeue ID (due now) or delete ID (never forwarded, no bounce); a
 * delete handed to the gateway is confirmed from its delivery log. */
int queue_commands_mark(const char *data_dir, const char *id_text,
			enum queue_offline_action action);

#endif
