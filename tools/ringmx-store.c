/*
 * ringmx-store.c - ringmx-store: look into a data directory from the outside.
 *
 *   ringmx-store -d DIR ls [--deferred] | show [--body] ID | stats | verify
 *   ringmx-store -d DIR requeue ID|all | delete ID
 *
 * Reads every shard DIR/w<N>/ present, whatever their number, through the
 * same segment scanner recovery uses, with read-only maps: it is safe while
 * ringmx runs. A record being written at the tail of the active segment
 * looks torn; every command treats it as the end. Only verify reports
 * damage, and only where valid records follow it (corruption, not a write
 * in progress); it rescans a damaged segment once after a pause so that a
 * write racing the first scan is not reported. A segment whose header this
 * version cannot read (format 1, damaged) holds records nobody can check:
 * ls and stats say so on stderr and skip it, verify counts it as damage.
 * show reads the segment's header block for its salt, then the record.
 *
 * ls --deferred lists the forwarding queue from the delivery logs (also
 * safe while ringmx runs). requeue and delete change it: with ringmx
 * stopped (its shard lock free) they append to the delivery logs directly;
 * while it runs they hand the request to it (a file in the shard's
 * control/ directory, written atomically, then SIGUSR1 to the pid in
 * DIR/ringmx.pid; core/control.h has the format) and wait, bounded, until
 * it has been read.
 *
 * Exit codes: 0 success, 1 not found / nothing pending / damage found /
 * I/O error / the running gateway could not be reached, 2 usage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "../common/control_proto.h"
#include "../storage/delivery_log.h"
#include "../storage/queue.h"
#include "../storage/record.h"
#include "../storage/segment.h"
#include "../storage/store.h"
#include "../storage/store_recover.h"
#include "queue_offline.h"

#define TOOL_NAME "ringmx-store"

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

/* Called for every segment of every shard, in order. m->image may be NULL
 * (an empty file). Returning non-zero stops the walk. */
typedef int (*segment_fn)(void *ctx, uint32_t worker, uint32_t seq, const struct segment_map *m,
			  bool last_in_shard);

struct walk_totals {
	uint32_t shards;
	uint64_t segments;
};

static int walk_segments(const char *data_dir, segment_fn fn, void *ctx, struct walk_totals *tot)
{
	uint32_t workers[WORKERS_MAX];
	int n = store_list_shards(data_dir, workers, WORKERS_MAX);
	if (n < 0) {
		fprintf(stderr, TOOL_NAME ": %s: %s\n", data_dir, strerror(-n));
		return 1;
	}
	memset(tot, 0, sizeof(*tot));
	tot->shards = (uint32_t)n;
	for (int i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/w%u", data_dir, (unsigned)workers[i]);
		int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			fprintf(stderr, TOOL_NAME ": %s: %s\n", path, strerror(errno));
			return 1;
		}
		uint32_t *seqs = NULL;
		size_t count = 0;
		int rc = segment_list(dfd, &seqs, &count);
		if (rc != 0) {
			fprintf(stderr, TOOL_NAME ": %s: %s\n", path, strerror(-rc));
			close(dfd);
			return 1;
		}
		tot->segments += count;
		int stop = 0;
		for (size_t k = 0; k < count && stop == 0; k++) {
			struct segment_map m;
			rc = segment_map_open(dfd, seqs[k], false, &m);
			if (rc == -ENOENT)
				continue; /* removed since the listing */
			if (rc != 0) {
				fprintf(stderr, TOOL_NAME ": %s/%08u.seg: %s\n", path,
					(unsigned)seqs[k], strerror(-rc));
				stop = 1;
				break;
			}
			stop = fn(ctx, workers[i], seqs[k], &m, k + 1 == count);
			segment_map_close(&m, false);
		}
		free(seqs);
		close(dfd);
		if (stop != 0)
			return stop;
	}
	return 0;
}

/* Envelope text is client-supplied: control bytes are shown escaped. */
static void put_text(struct span s)
{
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = s.ptr[i];
		if (c < 0x20 || c == 0x7f || c == '\\')
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static int64_t now_unix_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void format_age(int64_t age_ms, char *out, size_t cap)
{
	long long s = age_ms > 0 ? age_ms / 1000 : 0;
	if (s < 60)
		snprintf(out, cap, "%llds", s);
	else if (s < 3600)
		snprintf(out, cap, "%lldm", s / 60);
	else if (s < 86400)
		snprintf(out, cap, "%lldh", s / 3600);
	else
		snprintf(out, cap, "%lldd", s / 86400);
}

struct ls_ctx {
	int64_t now_ms;
};

static void ls_record(const struct ls_ctx *c, const struct record_view *v)
{
	char id[RECORD_QUEUE_ID_CHARS + 1];
	queue_id_format(v->header.queue_id, id);
	id[RECORD_QUEUE_ID_CHARS] = '\0';
	char age[32];
	format_age(c->now_ms - v->header.arrival_unix_ms, age, sizeof(age));
	struct record_envelope e;
	record_envelope_decode(v->envelope, &e);
	printf("%s %s %u <", id, age, (unsigned)v->header.body_bytes);
	put_text(e.reverse_path);
	printf("> ");
	struct record_recipient_cursor rcpts = record_recipient_first(&e);
	struct span rcpt;
	bool first = true;
	while (record_recipient_next(&rcpts, &rcpt)) {
		printf("%s<", first ? "" : ",");
		put_text(rcpt);
		putchar('>');
		first = false;
	}
	if (first)
		printf("-");
	putchar('\n');
}

/* Starts a scan; a segment with data and no header this version reads is
 * named on stderr (its records are skipped). */
static void scan_start(struct segment_scan *s, const struct segment_map *m, uint32_t worker,
		       uint32_t seq)
{
	enum segment_header_status hs = segment_scan_init(s, m->image, m->size_bytes, worker, seq);
	if (hs != SEGMENT_HEADER_OK && !segment_image_unused(m->image, m->size_bytes))
		fprintf(stderr, TOOL_NAME ": w%u/%08u.seg skipped: %s\n", (unsigned)worker,
			(unsigned)seq, segment_header_status_name(hs));
}

static int ls_segment(void *ctx, uint32_t worker, uint32_t seq, const struct segment_map *m,
		      bool last)
{
	(void)last;
	struct segment_scan s;
	struct segment_item it;
	scan_start(&s, m, worker, seq);
	while (segment_scan_next(&s, &it))
		if (it.kind == SEGMENT_ITEM_RECORD)
			ls_record(ctx, &it.record);
	return 0;
}

struct stats_ctx {
	uint64_t messages;
	uint64_t bytes;
};

static int stats_segment(void *ctx, uint32_t worker, uint32_t seq, const struct segment_map *m,
			 bool last)
{
	(void)last;
	struct stats_ctx *c = ctx;
	struct segment_scan s;
	struct segment_item it;
	scan_start(&s, m, worker, seq);
	while (segment_scan_next(&s, &it)) {
		if (it.kind == SEGMENT_ITEM_RECORD) {
			c->messages++;
			c->bytes += it.record.header.body_bytes;
		}
	}
	return 0;
}

/* Writes the body in DATA wire form minus dot-stuffing: at the start of a
 * CRLF-terminated line, ".." becomes "."; a final ".CRLF" terminator, if
 * stored, is left out. Every other byte is written as is. */
static void write_unstuffed(struct span body, FILE *out)
{
	const uint8_t *p = body.ptr, *end = body.ptr + body.len;
	while (p < end) {
		/* p is at the start of a line. */
		if (*p == '.') {
			if (end - p == 3 && p[1] == '\r' && p[2] == '\n')
				return;
			if (end - p >= 2 && p[1] == '.')
				p++;
		}
		const uint8_t *scan = p, *line_end = end;
		while (scan < end) {
			const uint8_t *lf = memchr(scan, '\n', (size_t)(end - scan));
			if (lf == NULL)
				break;
			if (lf > p && lf[-1] == '\r') {
				line_end = lf + 1;
				break;
			}
			scan = lf + 1; /* a bare LF does not end a line */
		}
		fwrite(p, 1, (size_t)(line_end - p), out);
		p = line_end;
	}
}

static const char *body_type_name(enum record_body_type t)
{
	switch (t) {
	case RECORD_BODY_7BIT:
		return "7BIT";
	case RECORD_BODY_8BITMIME:
		return "8BITMIME";
	case RECORD_BODY_BINARYMIME:
		return "BINARYMIME";
	case RECORD_BODY_UNKNOWN:
		break;
	}
	return "UNKNOWN";
}

static void show_envelope(const struct record_view *v)
{
	char id[RECORD_QUEUE_ID_CHARS + 1];
	queue_id_format(v->header.queue_id, id);
	id[RECORD_QUEUE_ID_CHARS] = '\0';
	struct record_envelope e;
	record_envelope_decode(v->envelope, &e);

	time_t secs = (time_t)(v->header.arrival_unix_ms / 1000);
	if (v->header.arrival_unix_ms < 0 && v->header.arrival_unix_ms % 1000 != 0)
		secs--;
	struct tm tm;
	char when[64] = "unknown";
	if (gmtime_r(&secs, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);

	printf("Queue-Id: %s\nArrival: %s\nClient: ", id, when);
	put_text(e.client_addr);
	printf("\nHelo: ");
	put_text(e.helo);
	printf("\nProtocol: ");
	put_text(e.protocol);
	printf("\nBody-Type: %s\nFrom: <", body_type_name(e.body_type));
	put_text(e.reverse_path);
	printf(">\n");
	struct record_recipient_cursor rcpts = record_recipient_first(&e);
	struct span rcpt;
	while (record_recipient_next(&rcpts, &rcpt)) {
		printf("To: <");
		put_text(rcpt);
		printf(">\n");
	}
	if (e.malformed)
		printf("X-Envelope-Damage: malformed item\n");
	printf("\n");
}

/* The salt from the header block of fd (segment w<worker>/<seq>). */
static bool read_salt(int fd, uint32_t worker, uint32_t seq, uint64_t *salt)
{
	uint8_t *block = malloc(SEGMENT_HEADER_BYTES);
	bool ok = block != NULL &&
		  pread(fd, block, SEGMENT_HEADER_BYTES, 0) == (ssize_t)SEGMENT_HEADER_BYTES &&
		  segment_header_check(block, SEGMENT_HEADER_BYTES, worker, seq, salt) ==
			  SEGMENT_HEADER_OK;
	free(block);
	return ok;
}

/*
 * Reads the record named by id straight from its place (worker directory,
 * segment, offset): the segment's salt, the record header, then exactly its
 * length. Returns a malloc'd buffer holding it and fills *v, or NULL when
 * there is no such record.
 */
static uint8_t *read_record(const char *data_dir, uint64_t id, struct record_view *v)
{
	uint32_t worker, seq;
	uint64_t offset;
	queue_id_split(id, &worker, &seq, &offset);
	char path[4096], name[SEGMENT_NAME_MAX_BYTES];
	if (seq == 0)
		return NULL;
	segment_name_format(name, seq);
	snprintf(path, sizeof(path), "%s/w%u/%s", data_dir, (unsigned)worker, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	uint8_t head[RECORD_HEADER_BYTES];
	uint8_t *buf = NULL;
	struct stat sb;
	uint64_t salt = 0;
	if (fstat(fd, &sb) == 0 && offset >= SEGMENT_HEADER_BYTES &&
	    offset < (uint64_t)sb.st_size && read_salt(fd, worker, seq, &salt) &&
	    pread(fd, head, sizeof(head), (off_t)offset) == (ssize_t)sizeof(head)) {
		uint32_t length = (uint32_t)head[12] | (uint32_t)head[13] << 8 |
				  (uint32_t)head[14] << 16 | (uint32_t)head[15] << 24;
		/* record_check() below validates everything; this only bounds
		 * the read to what the file holds. */
		if (length >= RECORD_HEADER_BYTES && length <= (uint64_t)sb.st_size - offset)
			buf = malloc(length);
		if (buf != NULL &&
		    (pread(fd, buf, length, (off_t)offset) != (ssize_t)length ||
		     record_check(buf, length, salt, v) != RECORD_OK || v->header.queue_id != id)) {
			free(buf);
			buf = NULL;
		}
	}
	close(fd);
	return buf;
}

static int cmd_show(const char *data_dir, const char *id_text, bool body_only)
{
	uint64_t id;
	if (!queue_id_parse(span_make(id_text, strlen(id_text)), &id)) {
		fprintf(stderr, TOOL_NAME ": not a queue id: %s\n", id_text);
		return 2;
	}
	struct record_view v;
	uint8_t *rec = read_record(data_dir, id, &v);
	if (rec == NULL) {
		fprintf(stderr, TOOL_NAME ": no message %s\n", id_text);
		return 1;
	}
	if (!body_only)
		show_envelope(&v);
	write_unstuffed(v.body, stdout);
	free(rec);
	return 0;
}

/* verify: damage found in one segment (scan results). */
struct damage {
	uint64_t offset;
	uint64_t length_bytes;
	enum segment_bad_reason reason;
	bool torn_tail;
};

#define DAMAGE_LIST_MAX 64

struct verify_scan {
	uint64_t records;
	bool has_data;              /* any byte past the header: not an unused spare */
	enum segment_header_status header; /* not OK: nothing in it could be read */
	struct damage damage[DAMAGE_LIST_MAX];
	uint32_t damage_count;      /* may exceed DAMAGE_LIST_MAX */
	bool torn;
	struct damage tail;
};

struct verify_ctx {
	uint64_t records;
	uint64_t bad;
	/* A torn tail is damage only if a later segment of the shard holds
	 * data; remembered until that is known. */
	bool pending_tail;
	uint32_t pending_worker, pending_seq;
	struct damage pending;
};

static void verify_scan_segment(const struct segment_map *m, uint32_t worker, uint32_t seq,
				struct verify_scan *vs)
{
	memset(vs, 0, sizeof(*vs));
	struct segment_scan s;
	struct segment_item it;
	vs->header = segment_scan_init(&s, m->image, m->size_bytes, worker, seq);
	if (vs->header != SEGMENT_HEADER_OK && segment_image_unused(m->image, m->size_bytes))
		vs->header = SEGMENT_HEADER_OK; /* a spare being prepared: nothing to read */
	vs->has_data = s.data_end > SEGMENT_HEADER_BYTES;
	while (segment_scan_next(&s, &it)) {
		struct damage d = { it.offset, it.length_bytes, it.reason, false };
		if (it.kind == SEGMENT_ITEM_RECORD) {
			vs->records++;
		} else if (it.kind == SEGMENT_ITEM_CORRUPT) {
			if (vs->damage_count < DAMAGE_LIST_MAX)
				vs->damage[vs->damage_count] = d;
			vs->damage_count++;
		} else if (it.kind == SEGMENT_ITEM_TORN_TAIL) {
			vs->torn = true;
			d.torn_tail = true;
			vs->tail = d;
		}
	}
}

static void report_damage(uint32_t worker, uint32_t seq, const struct damage *d)
{
	printf("w%u/%08u.seg offset %llu length %llu: %s%s\n", (unsigned)worker, (unsigned)seq,
	       (unsigned long long)d->offset, (unsigned long long)d->length_bytes,
	       segment_bad_reason_name(d->reason), d->torn_tail ? " (torn tail of a sealed segment)" : "");
}

static int verify_segment(void *ctx, uint32_t worker, uint32_t seq, const struct segment_map *m,
			  bool last)
{
	struct verify_ctx *c = ctx;
	struct verify_scan vs;
	verify_scan_segment(m, worker, seq, &vs);
	if (vs.damage_count > 0) {
		/* A write in progress can look like damage for an instant. */
		struct timespec pause = { 0, STORE_TOOL_VERIFY_RESCAN_DELAY_MS * 1000000L };
		nanosleep(&pause, NULL);
		verify_scan_segment(m, worker, seq, &vs);
	}
	if (c->pending_tail && vs.has_data) {
		/* A later segment was written: the torn tail is not a write in
		 * progress (only the newest segment with data is written). */
		RMX_ASSERT(c->pending_worker == worker);
		report_damage(c->pending_worker, c->pending_seq, &c->pending);
		c->bad++;
		c->pending_tail = false;
	}
	c->records += vs.records;
	if (vs.header != SEGMENT_HEADER_OK) {
		printf("w%u/%08u.seg: %s\n", (unsigned)worker, (unsigned)seq,
		       segment_header_status_name(vs.header));
		c->bad++;
	}
	for (uint32_t i = 0; i < vs.damage_count && i < DAMAGE_LIST_MAX; i++)
		report_damage(worker, seq, &vs.damage[i]);
	if (vs.damage_count > DAMAGE_LIST_MAX)
		printf("w%u/%08u.seg: %u more damaged regions\n", (unsigned)worker, (unsigned)seq,
		       (unsigned)(vs.damage_count - DAMAGE_LIST_MAX));
	c->bad += vs.damage_count;
	if (vs.torn && !last) {
		c->pending_tail = true;
		c->pending_worker = worker;
		c->pending_seq = seq;
		c->pending = vs.tail;
	}
	if (last)
		c->pending_tail = false;
	return 0;
}

/* ---- the forwarding queue: ls --deferred, requeue, delete ---- */

static void sleep_ms(long ms)
{
	struct timespec pause = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
	}
}

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
	const struct ls_ctx *c = ctx;
	char id[RECORD_QUEUE_ID_CHARS + 1];
	queue_id_format(info->queue_id, id);
	id[RECORD_QUEUE_ID_CHARS] = '\0';
	char age[32], next[40], reply[32];
	format_age(c->now_ms - info->arrival_unix_ms, age, sizeof(age));
	if (info->next_attempt_unix_ms <= c->now_ms) {
		snprintf(next, sizeof(next), "now");
	} else {
		char in[32];
		format_age(info->next_attempt_unix_ms - c->now_ms, in, sizeof(in));
		snprintf(next, sizeof(next), "in %s", in);
	}
	format_reply(info, reply, sizeof(reply));
	printf("%s %s %s %u %s %u/%u\n", id, age, next, (unsigned)info->attempts, reply,
	       (unsigned)info->rcpt_pending, (unsigned)info->rcpt_count);
	return 0;
}

static int cmd_ls_deferred(const char *data_dir)
{
	uint32_t workers[WORKERS_MAX];
	int n = list_shards(data_dir, workers);
	if (n < 0)
		return 1;
	struct ls_ctx c = { now_unix_ms() };
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

/* A request handed to the running gateway: where it was written. */
struct handover {
	char path[PATH_MAX];
	bool written;
};

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

/* Writes all of text to fd; 0 or -errno. */
static int write_all(int fd, const char *text, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, text, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		text += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Writes text as a request file of shard worker, atomically: a temporary
 * name starting with '.' (never read), fsync, rename to <time>-<pid>.req,
 * fsync of the directory. The name sorts by time, so requests apply in the
 * order they were made. Returns 0 or -errno (printed).
 */
static int request_write(const char *data_dir, uint32_t worker, const char *text,
			 struct handover *h)
{
	char dir[PATH_MAX], shard[PATH_MAX], tmp[PATH_MAX];
	h->written = false;
	int n = snprintf(shard, sizeof(shard), "%s/w%u", data_dir, (unsigned)worker);
	int m = snprintf(dir, sizeof(dir), "%s/" CONTROL_DIR_NAME, shard);
	long long stamp = (long long)now_unix_ms();
	int k = snprintf(h->path, sizeof(h->path), "%s/%016lld-%ld" CONTROL_REQUEST_SUFFIX, dir,
			 stamp, (long)getpid());
	int t = snprintf(tmp, sizeof(tmp), "%s/.%016lld-%ld.tmp", dir, stamp, (long)getpid());
	if (n < 0 || m < 0 || k < 0 || t < 0 || (size_t)n >= sizeof(shard) ||
	    (size_t)m >= sizeof(dir) || (size_t)k >= sizeof(h->path) || (size_t)t >= sizeof(tmp)) {
		fprintf(stderr, TOOL_NAME ": %s: path too long\n", data_dir);
		return -ENAMETOOLONG;
	}
	const char *what = "create";
	const char *where = dir;
	int rc = 0;
	bool made_dir = mkdir(dir, 0700) == 0;
	if (!made_dir && errno != EEXIST)
		rc = -errno;
	int fd = -1;
	if (rc == 0) {
		where = tmp;
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			rc = -errno;
	}
	if (rc == 0) {
		what = "write";
		rc = write_all(fd, text, strlen(text));
		if (rc == 0 && fsync(fd) != 0)
			rc = -errno;
	}
	if (fd >= 0 && close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0) {
		what = "rename";
		if (rename(tmp, h->path) != 0)
			rc = -errno;
	}
	if (rc != 0 && fd >= 0)
		(void)unlink(tmp);
	if (rc == 0) {
		what = "sync";
		where = dir;
		rc = fsync_dir(dir);
		if (rc == 0 && made_dir) {
			where = shard;
			rc = fsync_dir(shard);
		}
		if (rc != 0)
			(void)unlink(h->path); /* not known durable: not handed over */
	}
	if (rc != 0) {
		fprintf(stderr, TOOL_NAME ": %s %s: %s\n", what, where, strerror(-rc));
		return rc;
	}
	h->written = true;
	return 0;
}

/* Takes back a request nobody will read. */
static void request_withdraw(struct handover *h)
{
	if (h->written && unlink(h->path) != 0 && errno != ENOENT)
		fprintf(stderr, TOOL_NAME ": remove %s: %s\n", h->path, strerror(errno));
	h->written = false;
}

/* True if signal sig (1-based) is set in the hex mask text of a
 * /proc/PID/status line ("SigCgt:\t0000000000004a02"). */
static bool mask_has(const char *hex, int sig)
{
	while (*hex == ' ' || *hex == '\t')
		hex++;
	size_t len = strspn(hex, "0123456789abcdefABCDEF");
	int bit = sig - 1;
	if ((size_t)(bit / 4) >= len)
		return false;
	char digit = hex[len - 1 - (size_t)(bit / 4)];
	unsigned v = (unsigned)(digit <= '9' ? digit - '0' : (digit | 0x20) - 'a' + 10);
	return (v >> (bit % 4)) & 1u;
}

/* What /proc/PID/task/TID/status says about one thread. */
struct thread_signals {
	bool named_ringmx;
	bool blocks_usr1;
	bool catches_usr1;
};

static bool thread_signals_read(const char *path, struct thread_signals *t)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	char line[256];
	memset(t, 0, sizeof(*t));
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "Name:", 5) == 0) {
			const char *name = line + 5 + strspn(line + 5, " \t");
			t->named_ringmx = strcmp(name, "ringmx\n") == 0;
		} else if (strncmp(line, "SigBlk:", 7) == 0)
			t->blocks_usr1 = mask_has(line + 7, SIGUSR1);
		else if (strncmp(line, "SigCgt:", 7) == 0)
			t->catches_usr1 = mask_has(line + 7, SIGUSR1);
	}
	fclose(f);
	return true;
}

/*
 * Whether process pid is ringmx and takes SIGUSR1 rather than dying of it:
 * it catches it, or every other ringmx thread blocks it (the gateway blocks
 * it before its workers start and its main thread takes it with
 * sigwaitinfo, which shows it unblocked while waiting). Kernel io_uring
 * threads (named iou-*) block everything and prove nothing. An older
 * ringmx does neither. 0, or 1 after printing.
 */
static int check_daemon(long pid, const char *pid_path)
{
	char path[96];
	struct thread_signals main_thread;
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	if (!thread_signals_read(path, &main_thread)) {
		fprintf(stderr, TOOL_NAME ": pid %ld of %s is not running (%s)\n", pid, pid_path,
			strerror(errno));
		return 1;
	}
	if (!main_thread.named_ringmx) {
		fprintf(stderr, TOOL_NAME ": pid %ld of %s is not ringmx\n", pid, pid_path);
		return 1;
	}
	bool takes = main_thread.catches_usr1 || main_thread.blocks_usr1;
	snprintf(path, sizeof(path), "/proc/%ld/task", pid);
	DIR *tasks = takes ? NULL : opendir(path);
	uint32_t blocking = 0, open_to_it = 0;
	for (struct dirent *de; tasks != NULL && (de = readdir(tasks)) != NULL;) {
		char *end;
		long tid = strtol(de->d_name, &end, 10);
		if (*end != '\0' || tid <= 0 || tid == pid)
			continue;
		char tpath[128];
		struct thread_signals t;
		snprintf(tpath, sizeof(tpath), "/proc/%ld/task/%ld/status", pid, tid);
		if (!thread_signals_read(tpath, &t) || !t.named_ringmx)
			continue; /* gone, or an io_uring kernel thread */
		if (t.blocks_usr1)
			blocking++;
		else
			open_to_it++;
	}
	if (tasks != NULL)
		closedir(tasks);
	takes = takes || (blocking > 0 && open_to_it == 0);
	if (!takes) {
		fprintf(stderr, TOOL_NAME ": ringmx (pid %ld) does not take requests while it runs "
				"(SIGUSR1 not handled by this version): stop it, then run this "
				"command again\n", pid);
		return 1;
	}
	return 0;
}

/*
 * The pid of the running gateway from DIR/ringmx.pid, checked (see
 * check_daemon). 0 and *pid, or 1 after printing why not.
 */
static int daemon_pid(const char *data_dir, pid_t *pid)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/" CONTROL_PID_FILE_NAME, data_dir);
	FILE *f = fopen(path, "r");
	long value = 0;
	if (f == NULL) {
		fprintf(stderr, TOOL_NAME ": ringmx holds the shard lock but %s cannot be read "
				"(%s): cannot signal it\n", path, strerror(errno));
		return 1;
	}
	int got = fscanf(f, "%ld", &value);
	fclose(f);
	if (got != 1 || value <= 1 || value > INT32_MAX) {
		fprintf(stderr, TOOL_NAME ": %s does not hold a pid\n", path);
		return 1;
	}
	if (check_daemon(value, path) != 0)
		return 1;
	*pid = (pid_t)value;
	return 0;
}

/* Waits (bounded) until ringmx has read and removed every written
 * request; true if it has. */
static bool wait_picked_up(struct handover *h, uint32_t count)
{
	for (long waited = 0; waited <= STORE_TOOL_HANDOVER_WAIT_MS; waited += STORE_TOOL_POLL_INTERVAL_MS) {
		bool left = false;
		for (uint32_t i = 0; i < count; i++)
			left = left || (h[i].written && access(h[i].path, F_OK) == 0);
		if (!left)
			return true;
		sleep_ms(STORE_TOOL_POLL_INTERVAL_MS);
	}
	return false;
}

/*
 * Hands the written requests to the running gateway: SIGUSR1, then a
 * bounded wait for it to read them. Returns 0 once read; 1 (printed) when
 * it cannot be signalled (the requests are withdrawn: nothing happens) or
 * did not read them in time (they stay: it reads them later).
 */
static int handover(const char *data_dir, const char *label, struct handover *h, uint32_t count)
{
	pid_t pid;
	int rc = daemon_pid(data_dir, &pid);
	if (rc == 0 && kill(pid, SIGUSR1) != 0) {
		fprintf(stderr, TOOL_NAME ": signal ringmx (pid %ld): %s\n", (long)pid,
			strerror(errno));
		rc = 1;
	}
	if (rc != 0) {
		for (uint32_t i = 0; i < count; i++)
			request_withdraw(&h[i]);
		return 1;
	}
	if (!wait_picked_up(h, count)) {
		fprintf(stderr, TOOL_NAME ": ringmx (pid %ld) did not read the request within "
				"%d s; it stays queued and is applied when ringmx reads it\n",
			(long)pid, STORE_TOOL_HANDOVER_WAIT_MS / 1000);
		return 1;
	}
	printf("%s: handed to ringmx (pid %ld), which has applied it\n", label, (long)pid);
	return 0;
}

static int cmd_requeue_all(const char *data_dir)
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
	int64_t now = now_unix_ms();
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
			if (request_write(data_dir, workers[i], line, &live[live_count]) != 0) {
				for (uint32_t k = 0; k < live_count; k++)
					request_withdraw(&live[k]);
				free(live);
				return 1;
			}
			live_count++;
			continue;
		}
		if (rc != 0) {
			fprintf(stderr, TOOL_NAME ": %s\n", err);
			for (uint32_t k = 0; k < live_count; k++)
				request_withdraw(&live[k]);
			free(live);
			return 1;
		}
		printf("w%u: requeued %llu messages\n", (unsigned)workers[i],
		       (unsigned long long)requeued);
	}
	int rc = 0;
	if (live_count > 0) {
		rc = handover(data_dir, "requeue all", live, live_count);
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
		sleep_ms(STORE_TOOL_POLL_INTERVAL_MS);
	}
	return false;
}

static int cmd_mark(const char *data_dir, const char *id_text, enum queue_offline_action action)
{
	const char *verb = action == QUEUE_OFFLINE_DELETE ? "delete" : "requeue";
	uint64_t id;
	if (!queue_id_parse(span_make(id_text, strlen(id_text)), &id)) {
		fprintf(stderr, TOOL_NAME ": not a queue id: %s\n", id_text);
		return 2;
	}
	char err[512];
	int rc = queue_offline_mark(data_dir, id, action, now_unix_ms(), err, sizeof(err));
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
	if (request_write(data_dir, worker, text, &h) != 0)
		return 1;
	char label[96];
	snprintf(label, sizeof(label), "%s %s", verb, canonical);
	rc = handover(data_dir, label, &h, 1);
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
	struct walk_totals tot;
	int rc;

	if (strcmp(cmd, "ls") == 0 && nargs == 0) {
		struct ls_ctx c = { now_unix_ms() };
		uint32_t probe[1];
		int n = store_list_shards(data_dir, probe, 0);
		if (n < 0 && n != -ENOBUFS) {
			fprintf(stderr, TOOL_NAME ": %s: %s\n", data_dir, strerror(-n));
			return 1;
		}
		printf("QUEUE_ID AGE SIZE FROM TO\n");
		rc = walk_segments(data_dir, ls_segment, &c, &tot);
	} else if (strcmp(cmd, "ls") == 0 && nargs == 1 && strcmp(args[0], "--deferred") == 0) {
		rc = cmd_ls_deferred(data_dir);
	} else if (strcmp(cmd, "requeue") == 0 && nargs == 1 && strcmp(args[0], "all") == 0) {
		rc = cmd_requeue_all(data_dir);
	} else if (strcmp(cmd, "requeue") == 0 && nargs == 1) {
		rc = cmd_mark(data_dir, args[0], QUEUE_OFFLINE_REQUEUE);
	} else if (strcmp(cmd, "delete") == 0 && nargs == 1) {
		rc = cmd_mark(data_dir, args[0], QUEUE_OFFLINE_DELETE);
	} else if (strcmp(cmd, "show") == 0 && nargs == 1 && strcmp(args[0], "--body") != 0) {
		rc = cmd_show(data_dir, args[0], false);
	} else if (strcmp(cmd, "show") == 0 && nargs == 2 && strcmp(args[0], "--body") == 0) {
		rc = cmd_show(data_dir, args[1], true);
	} else if (strcmp(cmd, "stats") == 0 && nargs == 0) {
		struct stats_ctx c = { 0, 0 };
		rc = walk_segments(data_dir, stats_segment, &c, &tot);
		if (rc == 0)
			printf("messages %llu\nbytes %llu\nsegments %llu\nshards %u\n",
			       (unsigned long long)c.messages, (unsigned long long)c.bytes,
			       (unsigned long long)tot.segments, (unsigned)tot.shards);
	} else if (strcmp(cmd, "verify") == 0 && nargs == 0) {
		struct verify_ctx c;
		memset(&c, 0, sizeof(c));
		rc = walk_segments(data_dir, verify_segment, &c, &tot);
		if (rc == 0 && c.bad == 0)
			printf("ok %llu records\n", (unsigned long long)c.records);
		else if (rc == 0) {
			printf("damaged: %llu bad regions, %llu records ok\n",
			       (unsigned long long)c.bad, (unsigned long long)c.records);
			rc = 1;
		}
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
