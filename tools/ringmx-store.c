/*
 * ringmx-store.c - ringmx-store: look into a data directory from the outside.
 *
 *   ringmx-store -d DIR ls [--deferred] | show [--body] ID | stats | verify
 *   ringmx-store -d DIR requeue ID|all | delete ID
 *
 * Reads every shard DIR/w<N>/ present, whatever their number. ls, show,
 * stats and verify read the records (store_inspect.c) with read-only maps:
 * they are safe while ringmx runs. ls --deferred lists the forwarding queue
 * from the delivery logs (also safe while ringmx runs). requeue and delete
 * change it (queue_commands.c): with ringmx stopped (its shard lock free)
 * they append to the delivery logs directly; while it runs they hand the
 * request to it (handover.c: a file in the shard's control/ directory,
 * written atomically, then SIGUSR1 to the pid in DIR/ringmx.pid;
 * core/control.h has the format) and wait, bounded, until it has been
 * read. This file parses the command line and picks the command.
 *
 * Exit codes: 0 success, 1 not found / nothing pending / damage found /
 * I/O error / the running gateway could not be reached, 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "queue_commands.h"
#include "store_inspect.h"
#include "store_tool.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: " TOOL_NAME " -d DIR COMMAND\n"
		"commands:\n"
		"  ls               one line per message: QUEUE_ID AGE SIZE FROM TO\n"
		"  ls --deferred    messages waiting to be forwarded: QUEUE_ID AGE NEXT\n"
		"                   ATTEMPTS LAST_REPLY PENDING/TOTAL recipients\n"
		"  requeue ID|all   attempt the message (every message) again now\n"
		"  delete ID        give up on the message: never forwarded, no bounce\n"
		"  show [--body] ID the envelope and the message (dot-unstuffed);\n"
		"                   --body: the message only\n"
		"  stats            messages, bytes (message bytes), segments, shards\n"
		"  verify           check every record; list damage and exit 1\n");
}

int main(int argc, char **argv)
{
	const char *data_dir = NULL;
	int opt;
	while ((opt = getopt(argc, argv, "+d:h")) != -1) {
		switch (opt) {
		case 'd':
			data_dir = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (data_dir == NULL || optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind];
	int nargs = argc - optind - 1;
	char **args = argv + optind + 1;
	int rc;

	if (strcmp(cmd, "ls") == 0 && nargs == 0) {
		rc = store_inspect_ls(data_dir);
	} else if (strcmp(cmd, "ls") == 0 && nargs == 1 && strcmp(args[0], "--deferred") == 0) {
		rc = queue_commands_ls_deferred(data_dir);
	} else if (strcmp(cmd, "requeue") == 0 && nargs == 1 && strcmp(args[0], "all") == 0) {
		rc = queue_commands_requeue_all(data_dir);
	} else if (strcmp(cmd, "requeue") == 0 && nargs == 1) {
		rc = queue_commands_mark(data_dir, args[0], QUEUE_OFFLINE_REQUEUE);
	} else if (strcmp(cmd, "delete") == 0 && nargs == 1) {
		rc = queue_commands_mark(data_dir, args[0], QUEUE_OFFLINE_DELETE);
	} else if (strcmp(cmd, "show") == 0 && nargs == 1 && strcmp(args[0], "--body") != 0) {
		rc = store_inspect_show(data_dir, args[0], false);
	} else if (strcmp(cmd, "show") == 0 && nargs == 2 && strcmp(args[0], "--body") == 0) {
		rc = store_inspect_show(data_dir, args[1], true);
	} else if (strcmp(cmd, "stats") == 0 && nargs == 0) {
		rc = store_inspect_stats(data_dir);
	} else if (strcmp(cmd, "verify") == 0 && nargs == 0) {
		rc = store_inspect_verify(data_dir);
	} else {
		usage(stderr);
		return 2;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, TOOL_NAME ": writing output: %s\n", strerror(errno));
		return 1;
	}
	return rc;
}
