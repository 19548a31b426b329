/*
 * delivery_log.c - entries of the per-segment delivery log (see
 * delivery_log.h): encode, check, decode, replay, and the start-up file
 * helpers.
 *
 * Where it sits: the queue (queue_commit.c) turns each recipient outcome into an
 * entry and group-commits entries per segment log; recovery and the
 * ringmx-store tool read a log whole and replay it onto the records of its
 * segment. An entry is trusted only after its CRC and every field check
 * (STYLE.md 10); encode asserts that what it wrote decodes back.
 *
 * Invariants: a log is a whole number of entries up to its first bad one;
 * replay never moves a recipient out of a final state.
 */
#include "delivery_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "../common/bounds.h"
#include "../common/le.h"
#include "segment.h"

#define DELIVERY_LOG_SUFFIX ".dlog"


uint16_t delivery_log_enhanced_pack(unsigned cls, unsigned subject, unsigned detail)
{
	if ((cls != 2 && cls != 4 && cls != 5) || subject > 15 || detail > 511)
		return 0;
	return (uint16_t)(cls << 13 | subject << 9 | detail);
}

bool delivery_log_enhanced_unpack(uint16_t packed, unsigned *cls, unsigned *subject, unsigned *detail)
{
	unsigned c = packed >> 13;
	if (c != 2 && c != 4 && c != 5)
		return false;
	*cls = c;
	*subject = (packed >> 9) & 15u;
	*detail = packed & 511u;
	return true;
}

/* Reads 1 to 3 digits at text[*i]; false when there are none or too many. */
static bool parse_number(struct span text, size_t *i, unsigned *out)
{
	unsigned v = 0;
	size_t start = *i;
	while (*i < text.len && text.ptr[*i] >= '0' && text.ptr[*i] <= '9' && *i - start < 4) {
		v = v * 10 + (unsigned)(text.ptr[*i] - '0');
		(*i)++;
	}
	size_t n = *i - start;
	*out = v;
	return n >= 1 && n <= 3;
}

uint16_t delivery_log_enhanced_parse(struct span text)
{
	unsigned part[3];
	size_t i = 0;
	for (int k = 0; k < 3; k++) {
		if (!parse_number(text, &i, &part[k]))
			return 0;
		if (k < 2) {
			if (i >= text.len || text.ptr[i] != '.')
				return 0;
			i++;
		}
	}
	if (i != text.len)
		return 0;
	return delivery_log_enhanced_pack(part[0], part[1], part[2]);
}

static bool type_valid(unsigned type)
{
	return type >= DELIVERY_LOG_DELIVERED && type <= DELIVERY_LOG_TYPE_MAX;
}

void delivery_log_entry_encode(const struct delivery_log_entry *e, uint8_t out[DELIVERY_LOG_ENTRY_BYTES])
{
	RMX_ASSERT(type_valid(e->type));
	out[4] = (uint8_t)e->type;
	out[5] = 0;
	put_le16(out + 6, e->reply_code);
	put_le32(out + 8, e->rcpt);
	put_le16(out + 12, e->attempt);
	put_le16(out + 14, e->enhanced);
	put_le64(out + 16, e->queue_id);
	put_le64(out + 24, (uint64_t)e->time_unix_ms);
	put_le32(out, crc32c(0, out + 4, DELIVERY_LOG_ENTRY_BYTES - 4));

	struct delivery_log_entry back;
	RMX_ASSERT(delivery_log_entry_decode(out, &back) == DELIVERY_LOG_OK);
	RMX_ASSERT(back.queue_id == e->queue_id && back.rcpt == e->rcpt &&
		   back.time_unix_ms == e->time_unix_ms);
}

enum delivery_log_decode_result delivery_log_entry_decode(const uint8_t in[DELIVERY_LOG_ENTRY_BYTES],
					  struct delivery_log_entry *out)
{
	if (get_le32(in) != crc32c(0, in + 4, DELIVERY_LOG_ENTRY_BYTES - 4))
		return DELIVERY_LOG_BAD_CRC;
	if (!type_valid(in[4]) || in[5] != 0)
		return DELIVERY_LOG_BAD_FIELD;
	out->type = (enum delivery_log_type)in[4];
	out->reply_code = get_le16(in + 6);
	out->rcpt = get_le32(in + 8);
	out->attempt = get_le16(in + 12);
	out->enhanced = get_le16(in + 14);
	out->queue_id = get_le64(in + 16);
	out->time_unix_ms = (int64_t)get_le64(in + 24);
	return DELIVERY_LOG_OK;
}

size_t delivery_log_valid_prefix(const uint8_t *image, size_t len)
{
	size_t off = 0;
	struct delivery_log_entry e;
	while (len - off >= DELIVERY_LOG_ENTRY_BYTES && delivery_log_entry_decode(image + off, &e) == DELIVERY_LOG_OK)
		off += DELIVERY_LOG_ENTRY_BYTES;
	return off;
}

bool delivery_log_type_is_final(enum delivery_log_type type)
{
	switch (type) {
	case DELIVERY_LOG_DELIVERED:
	case DELIVERY_LOG_BOUNCED:
	case DELIVERY_LOG_EXPIRED:
	case DELIVERY_LOG_DELETED:
	case DELIVERY_LOG_SET_ASIDE:
		return true;
	case DELIVERY_LOG_DEFERRED:
	case DELIVERY_LOG_REQUEUE:
		return false;
	}
	return false;
}

const char *delivery_log_type_name(enum delivery_log_type type)
{
	switch (type) {
	case DELIVERY_LOG_DELIVERED: return "delivered";
	case DELIVERY_LOG_DEFERRED: return "deferred";
	case DELIVERY_LOG_BOUNCED: return "bounced";
	case DELIVERY_LOG_EXPIRED: return "expired";
	case DELIVERY_LOG_DELETED: return "deleted";
	case DELIVERY_LOG_SET_ASIDE: return "set-aside";
	case DELIVERY_LOG_REQUEUE: return "requeue";
	}
	return "unknown";
}

const char *delivery_log_rcpt_state_name(enum delivery_log_rcpt_state state)
{
	switch (state) {
	case DELIVERY_LOG_RCPT_PENDING: return "pending";
	case DELIVERY_LOG_RCPT_DELIVERED: return "delivered";
	case DELIVERY_LOG_RCPT_BOUNCED: return "bounced";
	case DELIVERY_LOG_RCPT_EXPIRED: return "expired";
	case DELIVERY_LOG_RCPT_DELETED: return "deleted";
	case DELIVERY_LOG_RCPT_SET_ASIDE: return "set-aside";
	}
	return "unknown";
}

static enum delivery_log_rcpt_state final_state_of(enum delivery_log_type type)
{
	switch (type) {
	case DELIVERY_LOG_DELIVERED: return DELIVERY_LOG_RCPT_DELIVERED;
	case DELIVERY_LOG_BOUNCED: return DELIVERY_LOG_RCPT_BOUNCED;
	case DELIVERY_LOG_EXPIRED: return DELIVERY_LOG_RCPT_EXPIRED;
	case DELIVERY_LOG_DELETED: return DELIVERY_LOG_RCPT_DELETED;
	case DELIVERY_LOG_SET_ASIDE: return DELIVERY_LOG_RCPT_SET_ASIDE;
	case DELIVERY_LOG_DEFERRED:
	case DELIVERY_LOG_REQUEUE:
		break;
	}
	RMX_ASSERT(!"not a final type");
	return DELIVERY_LOG_RCPT_PENDING;
}

/* Moves one recipient to a final state, if it is still pending. */
static void finish_rcpt(struct delivery_log_replay_msg *m, uint32_t rcpt, enum delivery_log_rcpt_state state)
{
	if (m->rcpt_state[rcpt] != DELIVERY_LOG_RCPT_PENDING)
		return;
	RMX_ASSERT(m->pending > 0);
	m->rcpt_state[rcpt] = (uint8_t)state;
	m->pending--;
}

bool delivery_log_apply(struct delivery_log_replay_msg *m, const struct delivery_log_entry *e)
{
	RMX_ASSERT(m->pending <= m->rcpt_count);
	if (e->rcpt != DELIVERY_LOG_RCPT_ALL && e->rcpt >= m->rcpt_count)
		return false;
	if (e->attempt > m->attempts)
		m->attempts = e->attempt;
	if (e->reply_code != 0) {
		m->last_reply_code = e->reply_code;
		m->last_enhanced = e->enhanced;
	}
	if (!delivery_log_type_is_final(e->type)) {
		/* DEFERRED or REQUEUE: the next attempt, for whatever is pending. */
		m->next_attempt_unix_ms = e->time_unix_ms;
		return true;
	}
	enum delivery_log_rcpt_state state = final_state_of(e->type);
	if (e->rcpt != DELIVERY_LOG_RCPT_ALL) {
		finish_rcpt(m, e->rcpt, state);
		return true;
	}
	for (uint32_t i = 0; i < m->rcpt_count && m->pending > 0; i++)
		finish_rcpt(m, i, state);
	return true;
}

void delivery_log_name_format(char out[DELIVERY_LOG_NAME_MAX_BYTES], uint32_t seq)
{
	snprintf(out, DELIVERY_LOG_NAME_MAX_BYTES, "%08u" DELIVERY_LOG_SUFFIX, (unsigned)seq);
}

bool delivery_log_name_parse(const char *name, uint32_t *seq)
{
	uint64_t v = 0;
	size_t i = 0;
	while (name[i] >= '0' && name[i] <= '9') {
		v = v * 10 + (uint64_t)(name[i] - '0');
		if (v > SEGMENT_SEQ_MAX)
			return false;
		i++;
	}
	if (i == 0 || strcmp(name + i, DELIVERY_LOG_SUFFIX) != 0 || v == 0)
		return false;
	*seq = (uint32_t)v;
	return true;
}

int delivery_log_read(int shard_dirfd, uint32_t seq, uint8_t **image, size_t *len)
{
	char name[DELIVERY_LOG_NAME_MAX_BYTES];
	delivery_log_name_format(name, seq);
	*image = NULL;
	*len = 0;
	int fd = openat(shard_dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	if (sb.st_size <= 0 || sb.st_size > (off_t)DELIVERY_LOG_READ_MAX_BYTES) {
		close(fd);
		return sb.st_size == 0 ? 0 : -EFBIG;
	}
	size_t size = (size_t)sb.st_size;
	uint8_t *buf = malloc(size);
	if (buf == NULL) {
		close(fd);
		return -ENOMEM;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t n = pread(fd, buf + got, size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int rc = -errno;
			free(buf);
			close(fd);
			return rc;
		}
		if (n == 0)
			break; /* shrank meanwhile: what was read is the log */
		got += (size_t)n;
	}
	close(fd);
	if (got == 0) {
		free(buf);
		return 0;
	}
	*image = buf;
	*len = got;
	return 0;
}

int delivery_log_open_for_append(int shard_dirfd, uint32_t seq, uint64_t valid_bytes, bool sync, int *fd)
{
	char name[DELIVERY_LOG_NAME_MAX_BYTES];
	delivery_log_name_format(name, seq);
	RMX_ASSERT(valid_bytes % DELIVERY_LOG_ENTRY_BYTES == 0);
	*fd = -1;
	int f = openat(shard_dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (f < 0)
		return -errno;
	struct stat sb;
	int rc = 0;
	if (fstat(f, &sb) != 0)
		rc = -errno;
	else if ((uint64_t)sb.st_size != valid_bytes && ftruncate(f, (off_t)valid_bytes) != 0)
		rc = -errno;
	else if (sync && fdatasync(f) != 0)
		rc = -errno;
	if (rc != 0) {
		close(f);
		return rc;
	}
	*fd = f;
	return 0;
}
