/*
 * store_inspect.c - ls, show, stats and verify: the records of a data
 * directory as an operator reads them, from the outside.
 *
 * A record being written at the tail of the active segment looks torn;
 * every command treats it as the end. Only verify reports damage, and only
 * where valid records follow it (corruption, not a write in progress); it
 * rescans a damaged segment once after a pause so that a write racing the
 * first scan is not reported. A segment whose header this version cannot
 * read (format 1, damaged) holds records nobody can check: ls and stats
 * say so on stderr and skip it, verify counts it as damage. show reads the
 * segment's header block for its salt, then the record. Envelope text is
 * the client's: control bytes are shown escaped.
 */
#include "store_inspect.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "../common/le.h"
#include "../storage/queue.h"
#include "../storage/record.h"
#include "../storage/segment.h"
#include "../storage/store.h"
#include "../storage/store_recover.h"
#include "store_tool.h"

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

struct ls_ctx {
	int64_t now_ms;
};

static void ls_record(const struct ls_ctx *c, const struct record_view *v)
{
	char id[RECORD_QUEUE_ID_CHARS + 1];
	queue_id_format(v->header.queue_id, id);
	id[RECORD_QUEUE_ID_CHARS] = '\0';
	char age[32];
	store_tool_format_age(c->now_ms - v->header.arrival_unix_ms, age, sizeof(age));
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
	if (e.tls.len != 0) {
		printf("\nTLS: ");
		put_text(e.tls);
	}
	if (e.auth_user.len != 0) {
		printf("\nAuth: ");
		put_text(e.auth_user);
	}
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
		uint32_t length = get_le32(head + offsetof(struct record_header, length));
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

int store_inspect_show(const char *data_dir, const char *id_text, bool body_only)
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

int store_inspect_ls(const char *data_dir)
{
	struct ls_ctx c = { store_tool_now_unix_ms() };
	struct walk_totals tot;
	uint32_t probe[1];
	int n = store_list_shards(data_dir, probe, 0);
	if (n < 0 && n != -ENOBUFS) {
		fprintf(stderr, TOOL_NAME ": %s: %s\n", data_dir, strerror(-n));
		return 1;
	}
	printf("QUEUE_ID AGE SIZE FROM TO\n");
	return walk_segments(data_dir, ls_segment, &c, &tot);
}

int store_inspect_stats(const char *data_dir)
{
	struct stats_ctx c = { 0, 0 };
	struct walk_totals tot;
	int rc = walk_segments(data_dir, stats_segment, &c, &tot);
	if (rc == 0)
		printf("messages %llu\nbytes %llu\nsegments %llu\nshards %u\n",
		       (unsigned long long)c.messages, (unsigned long long)c.bytes,
		       (unsigned long long)tot.segments, (unsigned)tot.shards);
	return rc;
}

int store_inspect_verify(const char *data_dir)
{
	struct verify_ctx c;
	struct walk_totals tot;
	memset(&c, 0, sizeof(c));
	int rc = walk_segments(data_dir, verify_segment, &c, &tot);
	if (rc == 0 && c.bad == 0)
		printf("ok %llu records\n", (unsigned long long)c.records);
	else if (rc == 0) {
		printf("damaged: %llu bad regions, %llu records ok\n",
		       (unsigned long long)c.bad, (unsigned long long)c.records);
		rc = 1;
	}
	return rc;
}
