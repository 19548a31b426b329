/*
 * queue_commands.c - ls --deferred, requeue and delete: the store tool's
 * side of the forwarding queue.
 *
 * Reading goes through queue_offline (segments and delivery logs, safe
 * while ringmx runs). A change is first tried offline, which takes the
 * shard lock; -EBUSY says the gateway serves the shard, and the request is
 * then handed to it (handover.h): for one message only after its logs say
 * it is pending, for requeue all one request per busy shard, all withdrawn
 * if one cannot be written.
 */
#include "queue_commands.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/bounds.h"
#include "../common/control_proto.h"
#include "../storage/delivery_log.h"
#include "../storage/queue.h"
#include "../storage/record.h"
#include "../storage/store.h"
#include "../storage/store_recover.h"
#include "handover.h"
#include "store_tool.h"

struct deferred_ctx {
	int64_t now_ms;
};

/* Every shard present, or -1 after printing why not. */
static int list_shards(const char *data_dir, uint32_t workers[WORKERS_MAX])
{
	int n = store_list_shards(data_dir, workers, WORKERS_MAX);
	if (n < 0)
		fprintf(stderr, TOOL_NAME ": %s: %s\n", data_dir, strerror(-n));
	return n < 0 ? -1 : n;
}

static void format_reply(const struct queue_deferred_info *info, char *out, size_t cap)
{
	unsigned cls, subject, detail;
	if (info->last_reply_code == 0)
		snprintf(out, cap, "-");
	else if (delivery_log_enhanced_unpack(info->last_enhanced, &cls, &subject, &detail))
		snprintf(out, cap, "%u %u.%u.%u", (unsigned)info->last_reply_code, cls, subject,
			 detail);
	else
		snprintf(out, cap, "%u", (unsigned)info->last_reply_code);
}

static int deferred_line(void *ctx, const struct queue_deferred_info *info)
{
	const struct deferred_ctx *c = ctx;
	char id[RECORD_QUEUE_ID_CHARS + 1];
	queue_id_format(info->queue_id, id);
	id[RECORD_QUEUE_ID_CHARS] = '\0';
	char age[32], next[40], reply[32];
	store_tool_format_age(c->now_ms - info->arrival_unix_ms, age, sizeof(age));
	if (info->next_attempt_unix_ms <= c->now_ms) {
		snprintf(next, sizeof(next), "now");
	} else {
		char in[32];
		store_tool_format_age(info->next_attempt_unix_ms - c->now_ms, in, sizeof(in));
		snprintf(next, sizeof(next), "in %s", in);
	}
	format_reply(info, reply, sizeof(reply));
	printf("%s %s %s %u %s %u/%u\n", id, age, next, (unsigned)info->attempts, reply,
	       (unsigned)info->rcpt_pending, (unsigned)info->rcpt_count);
	return 0;
}

int queue_commands_ls_deferred(const char *data_dir)
{
	uint32_t workers[WORKERS_MAX];
	int n = list_shards(data_dir, workers);
	if (n < 0)
		return 1;
	struct deferred_ctx c = { store_tool_now_unix_ms() };
	printf("QUEUE_ID AGE NEXT ATTEMPTS LAST_REPLY PENDING/TOTAL\n");
	for (int i = 0; i < n; i++) {
		char err[512];
		int rc = queue_offline_list(data_dir, workers[i], deferred_line, &c, err,
					    sizeof(err));
		if (rc != 0) {
			fprintf(stderr, TOOL_NAME ": %s\n", err);
			return 1;
		}
	}
	return 0;
}

/* 1: id has pending recipients in the logs now; 0: it has none; -1: the
 * shard could not be read (printed). Reads only the id's segment. */
static int is_pending(const char *data_dir, uint64_t id)
{
	struct queue_deferred_info info;
	char err[512];
	int rc = queue_offline_find(data_dir, id, &info, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, TOOL_NAME ": %s\n", err);
	return rc < 0 ? -1 : rc;
}

int queue_commands_requeue_all(const char *data_dir)
{
	uint32_t workers[WORKERS_MAX];
	int n = list_shards(data_dir, workers);
	if (n < 0)
		return 1;
	struct handover *live = calloc(WORKERS_MAX, sizeof(*live));
	if (live == NULL) {
		fprintf(stderr, TOOL_NAME ": out of memory\n");
		return 1;
	}
	uint32_t live_count = 0;
	int64_t now = store_tool_now_unix_ms();
	for (int i = 0; i < n; i++) {
		char err[512];
		uint64_t requeued = 0;
		int rc = queue_offline_requeue_all(data_dir, workers[i], now, &requeued, err,
						   sizeof(err));
		if (rc == -EBUSY) {
			/* ringmx serves this shard: it applies the request. */
			char line[32];
			size_t len = control_line_format(line, sizeof(line), CONTROL_VERB_REQUEUE,
							 NULL);
			RMX_ASSERT(len > 0);
			if (handover_request_write(data_dir, workers[i], line,
						   &live[live_count]) != 0) {
				for (uint32_t k = 0; k < live_count; k++)
					handover_request_withdraw(&live[k]);
				free(live);
				return 1;
			}
			live_count++;
			continue;
		}
		if (rc != 0) {
			fprintf(stderr, TOOL_NAME ": %s\n", err);
			for (uint32_t k = 0; k < live_count; k++)
				handover_request_withdraw(&live[k]);
			free(live);
			return 1;
		}
		printf("w%u: requeued %llu messages\n", (unsigned)workers[i],
		       (unsigned long long)requeued);
	}
	int rc = 0;
	if (live_count > 0) {
		rc = handover_signal_and_wait(data_dir, "requeue all", live, live_count);
	}
	free(live);
	return rc;
}

/* After a delete handed to the daemon: waits (bounded) for its DELETED
 * entry to make the message final in the log. */
static bool confirm_gone(const char *data_dir, uint64_t id)
{
	for (long waited = 0; waited <= STORE_TOOL_DELETE_CONFIRM_WAIT_MS; waited += STORE_TOOL_POLL_INTERVAL_MS) {
		int pending = is_pending(data_dir, id);
		if (pending <= 0)
			return pending == 0;
		store_tool_sleep_ms(STORE_TOOL_POLL_INTERVAL_MS);
	}
	return false;
}

int queue_commands_mark(const char *data_dir, const char *id_text,
			enum queue_offline_action action)
{
	const char *verb = action == QUEUE_OFFLINE_DELETE ? "delete" : "requeue";
	uint64_t id;
	if (!queue_id_parse(span_make(id_text, strlen(id_text)), &id)) {
		fprintf(stderr, TOOL_NAME ": not a queue id: %s\n", id_text);
		return 2;
	}
	char err[512];
	int rc = queue_offline_mark(data_dir, id, action, store_tool_now_unix_ms(), err,
				    sizeof(err));
	if (rc == 0) {
		printf("%s: %s\n", id_text,
		       action == QUEUE_OFFLINE_DELETE ? "deleted" : "requeued");
		return 0;
	}
	if (rc == -ENOENT || rc == -EINVAL) {
		fprintf(stderr, TOOL_NAME ": no pending message %s\n", id_text);
		return 1;
	}
	if (rc != -EBUSY) {
		fprintf(stderr, TOOL_NAME ": %s\n", err);
		return 1;
	}
	/* ringmx runs: check what its logs say, then hand the request over. */
	int pending = is_pending(data_dir, id);
	if (pending < 0)
		return 1;
	if (pending == 0) {
		fprintf(stderr, TOOL_NAME ": no pending message %s\n", id_text);
		return 1;
	}
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(id, &worker, &seq, &offset);
	char text[64];
	char canonical[RECORD_QUEUE_ID_CHARS + 1];
	queue_id_format(id, canonical);
	canonical[RECORD_QUEUE_ID_CHARS] = '\0';
	size_t len = control_line_format(text, sizeof(text),
					 action == QUEUE_OFFLINE_DELETE ? CONTROL_VERB_DELETE
									: CONTROL_VERB_REQUEUE,
					 canonical);
	RMX_ASSERT(len > 0);
	struct handover h;
	if (handover_request_write(data_dir, worker, text, &h) != 0)
		return 1;
	char label[96];
	snprintf(label, sizeof(label), "%s %s", verb, canonical);
	rc = handover_signal_and_wait(data_dir, label, &h, 1);
	if (rc != 0 || action != QUEUE_OFFLINE_DELETE)
		return rc;
	if (!confirm_gone(data_dir, id)) {
		fprintf(stderr, TOOL_NAME ": %s still has pending recipients (being forwarded "
				"right now?); run the command again\n", id_text);
		return 1;
	}
	printf("%s: deleted\n", id_text);
	return 0;
}
