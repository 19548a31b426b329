/*
 * control.c - applies operator request files (control.h) to a worker's
 * forwarding queue.
 *
 * Where it sits: ringmx-store drops DATA_DIR/w<N>/control/<name>.req and
 * signals the daemon; the worker that owns shard N calls control_apply(),
 * which turns each line into queue_make_due / queue_make_all_due /
 * queue_delete. The queue logs REQUEUE and DELETED entries through its
 * normal group commit, so the effect survives a restart.
 *
 * Invariants: a file is removed only after every line of it was applied
 * (a crash in between applies it again: requeue is idempotent, a repeated
 * delete counts as unknown); nothing read from a file is trusted: sizes
 * are bounded, FIFOs and symlinks are never opened as requests. This is the
 * one place in core/ that does blocking file I/O on a worker after
 * start-up, and only when an operator asks.
 */
#include "control.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../storage/queue.h"
#include "../storage/segment.h"
#include "../storage/record.h"

#define SUFFIX_LEN (sizeof(CONTROL_REQUEST_SUFFIX) - 1)

struct name_batch {
	char name[CONTROL_FILES_PER_BATCH][CONTROL_NAME_MAX_BYTES];
	uint32_t count;
	bool full;           /* more request files were left in the directory */
};

static void note_error(struct control_result *out, int rc)
{
	out->errors++;
	if (out->first_error == 0)
		out->first_error = rc;
}

/* Counts the result of one queue call on a single message. */
static void count_single(struct control_result *out, int rc)
{
	if (rc == 0)
		out->applied++;
	else if (rc == -EBUSY)
		out->busy++;
	else
		out->unknown++; /* -ENOENT: not held by this queue */
}

void control_apply_line(struct queue *q, struct span line, int64_t now_unix_ms,
			struct control_result *out)
{
	struct control_request r;
	switch (control_line_parse(line, &r)) {
	case CONTROL_LINE_EMPTY:
		return;
	case CONTROL_LINE_MALFORMED:
		out->malformed++;
		return;
	case CONTROL_LINE_OK:
		break;
	}
	if (r.all) {
		out->made_due += queue_make_all_due(q, now_unix_ms);
		out->applied++;
		return;
	}
	uint64_t id;
	if (!queue_id_parse(r.id_text, &id)) {
		out->malformed++;
		return;
	}
	if (r.verb == CONTROL_VERB_REQUEUE)
		count_single(out, queue_make_due(q, id, now_unix_ms));
	else
		count_single(out, queue_delete(q, id, now_unix_ms));
}

/* Applies every line of a file's bytes; the last line may lack its LF. */
static void apply_text(struct queue *q, const uint8_t *text, size_t len, int64_t now_unix_ms,
		       struct control_result *out)
{
	size_t pos = 0;
	while (pos < len) {
		const uint8_t *lf = memchr(text + pos, '\n', len - pos);
		size_t end = lf != NULL ? (size_t)(lf - text) : len;
		control_apply_line(q, span_make(text + pos, end - pos), now_unix_ms, out);
		pos = end + 1;
	}
}

/*
 * Reads request file `name` of the control directory into a malloc'd buffer.
 * 0 with *text and *len set; -EINVAL when it is not a regular file or is larger than
 * CONTROL_REQUEST_MAX_BYTES (a malformed request); other -errno: I/O.
 */
static int read_request(int dirfd, const char *name, uint8_t **text, size_t *len)
{
	*text = NULL;
	*len = 0;
	/* O_NONBLOCK: a FIFO planted under a request name must not hang the
	 * worker; O_NOFOLLOW: a symlink is not a request. */
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP ? -EINVAL : -errno;
	struct stat sb;
	int rc = 0;
	if (fstat(fd, &sb) != 0)
		rc = -errno;
	else if (!S_ISREG(sb.st_mode) || sb.st_size > CONTROL_REQUEST_MAX_BYTES)
		rc = -EINVAL;
	uint8_t *buf = NULL;
	size_t used = 0;
	if (rc == 0) {
		/* One byte more than allowed: a file that grew is caught. */
		buf = malloc(CONTROL_REQUEST_MAX_BYTES + 1);
		if (buf == NULL)
			rc = -ENOMEM;
	}
	while (rc == 0 && used <= CONTROL_REQUEST_MAX_BYTES) {
		ssize_t n = read(fd, buf + used, CONTROL_REQUEST_MAX_BYTES + 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = -errno;
		else if (n == 0)
			break;
		else
			used += (size_t)n;
	}
	if (rc == 0 && used > CONTROL_REQUEST_MAX_BYTES)
		rc = -EINVAL;
	close(fd);
	if (rc != 0) {
		free(buf);
		return rc;
	}
	*text = buf;
	*len = used;
	return 0;
}

static bool is_request_name(const char *name)
{
	size_t n = strlen(name);
	return name[0] != '.' && n > SUFFIX_LEN && n < CONTROL_NAME_MAX_BYTES &&
	       memcmp(name + n - SUFFIX_LEN, CONTROL_REQUEST_SUFFIX, SUFFIX_LEN) == 0;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Reads up to CONTROL_FILES_PER_BATCH request names, sorted. 0 or -errno. */
static int list_batch(int dirfd, struct name_batch *batch)
{
	batch->count = 0;
	batch->full = false;
	DIR *dir = NULL;
	int orc = segment_opendir(dirfd, &dir);
	if (orc != 0)
		return orc;
	int rc = 0;
	struct dirent *de;
	while ((errno = 0, de = readdir(dir)) != NULL) {
		if (!is_request_name(de->d_name))
			continue;
		if (batch->count == CONTROL_FILES_PER_BATCH) {
			batch->full = true;
			break;
		}
		size_t n = strlen(de->d_name);
		RMX_ASSERT(n < CONTROL_NAME_MAX_BYTES);
		memcpy(batch->name[batch->count], de->d_name, n + 1);
		batch->count++;
	}
	if (de == NULL && errno != 0)
		rc = -errno;
	closedir(dir);
	qsort(batch->name, batch->count, sizeof(batch->name[0]), compare_names);
	return rc;
}

/* Applies and removes one request file; false if it could not be removed
 * (so listing again would find it again). */
static bool apply_file(struct queue *q, int dirfd, const char *name, int64_t now_unix_ms,
		       struct control_result *out)
{
	uint8_t *text;
	size_t len;
	int rc = read_request(dirfd, name, &text, &len);
	if (rc == -ENOENT)
		return true; /* gone since the listing */
	if (rc == -EINVAL) {
		out->malformed++;
	} else if (rc != 0) {
		note_error(out, rc);
		return false; /* left for the next request: nothing was applied */
	} else {
		apply_text(q, text, len, now_unix_ms, out);
		free(text);
	}
	if (unlinkat(dirfd, name, 0) != 0 && errno != ENOENT) {
		note_error(out, -errno);
		return false;
	}
	out->files++;
	return true;
}

int control_apply(struct queue *q, const char *shard_dir, int64_t now_unix_ms,
		  struct control_result *out)
{
	memset(out, 0, sizeof(*out));
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/%s", shard_dir, CONTROL_DIR_NAME);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct name_batch *batch = malloc(sizeof(*batch));
	if (batch == NULL) {
		close(dirfd);
		return -ENOMEM;
	}
	int rc = 0;
	/* Another batch only when this one was full and fully removed: a file
	 * that cannot be removed is never read twice in one call. */
	bool again = true;
	while (again && rc == 0) {
		rc = list_batch(dirfd, batch);
		again = rc == 0 && batch->full;
		for (uint32_t i = 0; rc == 0 && i < batch->count; i++)
			again = apply_file(q, dirfd, batch->name[i], now_unix_ms, out) && again;
	}
	free(batch);
	close(dirfd);
	return rc;
}
