/*
 * loop.h - one ringmx-bench event loop: an io_uring and its SMTP sessions.
 *
 * The plan is what every loop reads and none writes while they run: the
 * server address, the command bytes, the body templates, the start time.
 * A loop owns its connections, counters and histograms; loop_run() is a
 * thread's whole life, and the main thread reads the loop's stats only after
 * joining it.
 */
#ifndef RINGMX_BENCH_LOOP_H
#define RINGMX_BENCH_LOOP_H

#include "options.h"
#include "report.h"
#include "tls_client.h"

#include <sys/socket.h>

/* Everything the event loops read and nobody writes once they run. */
struct plan {
	const struct options *opt;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	bool spread;
	/* MAIL FROM, RCPT TO x rcpts, DATA: one buffer, each command at
	 * cmd_off[i] (cmd_len[i] bytes); the whole is the pipelined group. */
	char *commands;
	size_t commands_len;
	uint32_t *cmd_off;
	uint32_t *cmd_len;
	unsigned cmd_count;
	char ehlo[160];
	size_t ehlo_len;
	size_t header_bytes;
	uint8_t *fill[SIZE_CLASSES_MAX];
	size_t fill_bytes[SIZE_CLASSES_MAX];
	struct tls_client_ctx *tls_ctx; /* --tls: the client context */
	uint64_t start_ns;
	uint64_t end_ns;         /* duration mode: no message starts after this */
};

/* Resolves the server and builds the commands and body templates for opt
 * (which must outlive the plan). Returns 0, -2 when --server does not
 * resolve or does not fit the options (said on stderr), -1 when out of
 * memory. plan_free() is safe after either. */
int plan_build(struct plan *pl, const struct options *opt) RMX_MUST_CHECK;
void plan_free(struct plan *pl);

struct loop;

/* Loop index (0..threads-1) of the plan, with its share of the connections,
 * messages and rate. NULL when out of memory. */
struct loop *loop_new(const struct plan *pl, unsigned index);

/* Runs the loop until all of its sessions have ended (a pthread start
 * routine; arg is the loop). */
void *loop_run(void *arg);

/* After loop_run returned: what it counted, and a setup or ring failure
 * (-errno, 0 for none). */
const struct bench_stats *loop_stats(const struct loop *lp);
int loop_error(const struct loop *lp);

void loop_free(struct loop *lp);

#endif
