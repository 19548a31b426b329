/*
 * crashsim_io.h - a test-only executor of storage's plans (io_plan.h) that
 * keeps a page-cache model beside the real files, so that the state of the
 * disk after a crash at any step can be built and recovered from.
 *
 * crashsim_step performs the next step of a plan for real, with the
 * blocking executor's semantics (io_plan_run_blocking on a one-step copy;
 * a step after a failed linked step gets -ECANCELED), and feeds it to the
 * model; each plan keeps its own progress (struct crashsim_plan_run), so
 * several plans (group commits in flight at once) can be stepped in any
 * interleaving. crashsim_run steps one plan from start to end. The model:
 *   - a write (or a fallocate that grows the file, or O_TRUNC) is pending on
 *     its file until an fdatasync or fsync of that file completes; then all
 *     of the file's pending operations are durable. An fsync is one step:
 *     it covers every write of the file that completed before it;
 *   - a name created (openat O_CREAT of a new name) or removed (unlinkat)
 *     is pending in the directory until an fsync of the directory
 *     completes; files are inodes, names point at them, so a name removed
 *     and made again points at a new file.
 * A write with RWF_DSYNC (the store's O_DIRECT commit) takes two steps of
 * its plan: its issue, after which it is pending and a crash tears it at
 * sector granularity (each CRASHSIM_SECTOR_BYTES sector of it there or
 * not, in any combination: the device writes sectors in no promised
 * order), and its completion, which makes that write durable and nothing
 * else (another direct write of the same file may still be in flight).
 * The crash point after the issue is counted in direct_in_flight. With one
 * plan at a time and no other pending operation on the file (a synced
 * store's segments), that is the same as making the whole file durable.
 * After each step the caller's hook runs with the count of steps done: the
 * crash point. crashsim_materialize writes the disk as a crash there could
 * leave it into an empty shard directory: durable names and contents, and
 * of the pending operations, per file, none (CRASH_DROP), or all but the
 * last in full and the last torn at a random byte (CRASH_TEAR), and then
 * random bits of that torn tail flipped (CRASH_TEAR_FLIP). With
 * cs->unordered (page-cache writeback and a device's writes keep no order
 * either), CRASH_TEAR and CRASH_TEAR_FLIP instead give each pending write
 * of a file its own fate: dropped, kept whole, or torn (at a random byte,
 * or any subset of sectors for a direct write in flight; bits flipped in
 * what a torn one kept for CRASH_TEAR_FLIP); the file's truncations and
 * extensions stay in order, a random number of the first of them kept. With
 * names_survive, each pending name operation is kept or dropped at random:
 * a journalling file system commits directory changes with other files'
 * syncs. A name kept that way shows its file's durable content only (what
 * ext4 shows of blocks allocated but not yet written: zeros, or nothing).
 * Strictly by the model above a name is never kept before the directory's
 * fsync; kept names go beyond it, and so never get torn or flipped bytes: a
 * spare whose making stopped with its header block torn, under a name kept
 * that way, stops recovery (its header cannot be told from another format's
 * data, which the store refuses to overwrite), losing nothing but needing
 * an operator.
 *
 * The model starts from the directory's files as crashsim_init finds them,
 * taken as durable: start-up (store_open) syncs what it makes. Header-only,
 * like test_util.h; single-threaded; allocation failures stop the test.
 */
#ifndef RINGMX_CRASHSIM_IO_H
#define RINGMX_CRASHSIM_IO_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../storage/io_plan.h"
#include "test.h"
#include "test_util.h"

#define CRASHSIM_FILES_MAX 256
#define CRASHSIM_FDS_MAX 4096
#define CRASHSIM_NAME_MAX_BYTES 64
#define CRASHSIM_SECTOR_BYTES 512 /* what a device writes whole, or not at all */

enum crashsim_op_kind {
	CRASHSIM_OP_WRITE,    /* data[0..len) at offset */
	CRASHSIM_OP_EXTEND,   /* zeros from the size to offset + len */
	CRASHSIM_OP_TRUNCATE, /* size 0 */
};

struct crashsim_op {
	enum crashsim_op_kind kind;
	uint64_t offset;
	uint64_t len;
	uint8_t *data; /* CRASHSIM_OP_WRITE: a copy */
	bool sectors;  /* a direct write in flight: a crash keeps any subset of its sectors */
	uint64_t id;   /* names the operation (a direct write's completion finds it) */
};

/* An inode: what is durable, and what waits for a sync. */
struct crashsim_file {
	struct test_buf durable;
	uint64_t size_now; /* with the pending operations */
	struct crashsim_op *pending;
	size_t pending_count;
	size_t pending_cap;
};

/* A name in the shard directory and the file it points at, durably and now
 * (-1: no such name). */
struct crashsim_name {
	char name[CRASHSIM_NAME_MAX_BYTES];
	int durable_file;
	int now_file;
};

struct crashsim {
	int dir_fd;
	struct crashsim_file file[CRASHSIM_FILES_MAX];
	int file_count;
	struct crashsim_name name[CRASHSIM_FILES_MAX];
	int name_count;
	int fd_file[CRASHSIM_FDS_MAX]; /* the file an fd was opened on; -1 unknown */
	uint64_t steps;                /* steps completed: the crash point */
	uint64_t direct_in_flight;     /* crash points inside an RWF_DSYNC write */
	uint64_t op_ids;               /* operations pended so far */
	bool unordered;                /* a crash keeps pending writes in no order (top) */
	void (*after_step)(void *ctx, uint64_t steps);
	void *ctx;
};

enum crashsim_kind { CRASH_DROP, CRASH_TEAR, CRASH_TEAR_FLIP, CRASH_KINDS };

static inline const char *crashsim_kind_name(enum crashsim_kind k)
{
	return k == CRASH_DROP ? "drop" : k == CRASH_TEAR ? "tear" : "tear+flip";
}

static inline int crashsim_file_new(struct crashsim *cs)
{
	REQUIRE(cs->file_count < CRASHSIM_FILES_MAX);
	int id = cs->file_count++;
	memset(&cs->file[id], 0, sizeof(cs->file[id]));
	return id;
}

static inline struct crashsim_name *crashsim_name_find(struct crashsim *cs, const char *name)
{
	for (int i = 0; i < cs->name_count; i++)
		if (strcmp(cs->name[i].name, name) == 0)
			return &cs->name[i];
	REQUIRE(cs->name_count < CRASHSIM_FILES_MAX);
	REQUIRE(strlen(name) < CRASHSIM_NAME_MAX_BYTES);
	struct crashsim_name *n = &cs->name[cs->name_count++];
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->durable_file = -1;
	n->now_file = -1;
	return n;
}

/* Takes the regular files of the shard directory dir_fd as durable. */
static inline void crashsim_init(struct crashsim *cs, int dir_fd)
{
	memset(cs, 0, sizeof(*cs));
	cs->dir_fd = dir_fd;
	for (int i = 0; i < CRASHSIM_FDS_MAX; i++)
		cs->fd_file[i] = -1;
	int fd = dup(dir_fd);
	REQUIRE(fd >= 0);
	DIR *d = fdopendir(fd);
	REQUIRE(d != NULL);
	rewinddir(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		struct stat sb;
		if (fstatat(dir_fd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
			continue;
		int id = crashsim_file_new(cs);
		struct crashsim_file *f = &cs->file[id];
		int ffd = openat(dir_fd, e->d_name, O_RDONLY | O_CLOEXEC);
		REQUIRE(ffd >= 0);
		uint8_t chunk[65536];
		ssize_t got;
		while ((got = read(ffd, chunk, sizeof chunk)) > 0)
			test_buf_put(&f->durable, chunk, (size_t)got);
		REQUIRE(got == 0);
		close(ffd);
		f->size_now = f->durable.len;
		struct crashsim_name *n = crashsim_name_find(cs, e->d_name);
		n->durable_file = n->now_file = id;
	}
	closedir(d);
}

static inline void crashsim_free(struct crashsim *cs)
{
	for (int i = 0; i < cs->file_count; i++) {
		struct crashsim_file *f = &cs->file[i];
		for (size_t k = 0; k < f->pending_count; k++)
			free(f->pending[k].data);
		free(f->pending);
		test_buf_free(&f->durable);
	}
	cs->file_count = 0;
}

/* The file an fd is open on: from our own openat, else by its name. */
static inline int crashsim_fd_file(struct crashsim *cs, int fd)
{
	REQUIRE(fd >= 0 && fd < CRASHSIM_FDS_MAX);
	if (cs->fd_file[fd] >= 0)
		return cs->fd_file[fd];
	char link[64], target[4096];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof target - 1);
	REQUIRE(n > 0);
	target[n] = '\0';
	const char *base = strrchr(target, '/');
	REQUIRE(base != NULL);
	struct crashsim_name *name = crashsim_name_find(cs, base + 1);
	REQUIRE(name->now_file >= 0);
	cs->fd_file[fd] = name->now_file;
	return name->now_file;
}

/* An fd closed outside a plan (a retired segment, a delivery log). */
static inline void crashsim_forget_fd(struct crashsim *cs, int fd)
{
	if (fd >= 0 && fd < CRASHSIM_FDS_MAX)
		cs->fd_file[fd] = -1;
}

static inline void crashsim_pend(struct crashsim *cs, struct crashsim_file *f,
				 struct crashsim_op op)
{
	op.id = ++cs->op_ids;
	if (f->pending_count == f->pending_cap) {
		f->pending_cap = f->pending_cap ? 2 * f->pending_cap : 8;
		f->pending = realloc(f->pending, f->pending_cap * sizeof(*f->pending));
		REQUIRE(f->pending != NULL);
	}
	f->pending[f->pending_count++] = op;
	if (op.kind == CRASHSIM_OP_TRUNCATE)
		f->size_now = 0;
	else if (op.offset + op.len > f->size_now)
		f->size_now = op.offset + op.len;
}

/* Applies op to content (growing it with zeros as needed); of a write, only
 * its first keep bytes. */
static inline void crashsim_apply(struct test_buf *content, const struct crashsim_op *op,
				  uint64_t keep)
{
	if (op->kind == CRASHSIM_OP_TRUNCATE) {
		content->len = 0;
		return;
	}
	uint64_t end = op->offset + RMX_MIN(keep, op->len);
	if (end > content->len) {
		size_t grow = (size_t)(end - content->len);
		uint8_t *zeros = calloc(1, grow);
		REQUIRE(zeros != NULL);
		test_buf_put(content, zeros, grow);
		free(zeros);
	}
	if (op->kind == CRASHSIM_OP_WRITE && keep > 0)
		memcpy(content->data + op->offset, op->data, (size_t)RMX_MIN(keep, op->len));
}

static inline void crashsim_sync_file(struct crashsim_file *f)
{
	for (size_t k = 0; k < f->pending_count; k++) {
		crashsim_apply(&f->durable, &f->pending[k], f->pending[k].len);
		free(f->pending[k].data);
	}
	f->pending_count = 0;
}

/* A direct write's completion: operation id of file f, and only it, is
 * durable. No earlier pending operation overlaps it (applied first, it
 * would come out on top at a crash); the store never writes so. */
static inline void crashsim_complete_write(struct crashsim_file *f, uint64_t id)
{
	size_t k = 0;
	while (k < f->pending_count && f->pending[k].id != id)
		k++;
	REQUIRE(k < f->pending_count);
	const struct crashsim_op *op = &f->pending[k];
	for (size_t e = 0; e < k; e++)
		REQUIRE(f->pending[e].kind != CRASHSIM_OP_TRUNCATE &&
			(f->pending[e].offset + f->pending[e].len <= op->offset ||
			 op->offset + op->len <= f->pending[e].offset));
	crashsim_apply(&f->durable, op, op->len);
	free(op->data);
	memmove(&f->pending[k], &f->pending[k + 1],
		(f->pending_count - k - 1) * sizeof(f->pending[0]));
	f->pending_count--;
}

static inline void crashsim_sync_dir(struct crashsim *cs)
{
	for (int i = 0; i < cs->name_count; i++)
		cs->name[i].durable_file = cs->name[i].now_file;
}

/* What a completed step s with result r did, in the model. Called before
 * fds are forgotten (close) and after fds are made (openat). */
static inline void crashsim_note(struct crashsim *cs, const struct io_step *s, int r,
				 bool name_existed)
{
	if (r < 0)
		return;
	switch (s->op) {
	case IO_STEP_OPENAT: {
		REQUIRE(s->fd == cs->dir_fd && strchr(s->path, '/') == NULL);
		struct crashsim_name *n = crashsim_name_find(cs, s->path);
		if (!name_existed) {
			REQUIRE(s->flags & O_CREAT);
			n->now_file = crashsim_file_new(cs);
		} else if (s->flags & O_TRUNC) {
			crashsim_pend(cs, &cs->file[n->now_file],
				      (struct crashsim_op){ .kind = CRASHSIM_OP_TRUNCATE });
		}
		REQUIRE(r < CRASHSIM_FDS_MAX);
		cs->fd_file[r] = n->now_file;
		return;
	}
	case IO_STEP_FALLOCATE: {
		struct crashsim_file *f = &cs->file[crashsim_fd_file(cs, s->fd)];
		if (s->flags == 0 && s->offset + s->len > f->size_now)
			crashsim_pend(cs, f,
				      (struct crashsim_op){ .kind = CRASHSIM_OP_EXTEND,
							    .offset = f->size_now,
							    .len = s->offset + s->len - f->size_now });
		return;
	}
	case IO_STEP_WRITE:
	case IO_STEP_WRITEV: {
		struct crashsim_file *f = &cs->file[crashsim_fd_file(cs, s->fd)];
		struct crashsim_op op = { .kind = CRASHSIM_OP_WRITE, .offset = s->offset,
					  .len = (uint64_t)r,
					  .sectors = (s->flags & RWF_DSYNC) != 0 };
		op.data = malloc(r ? (size_t)r : 1);
		REQUIRE(op.data != NULL);
		if (s->op == IO_STEP_WRITE) {
			memcpy(op.data, s->buf, (size_t)r);
		} else {
			size_t at = 0;
			for (int k = 0; k < s->iovcnt && at < (size_t)r; k++) {
				size_t n = RMX_MIN(s->iov[k].iov_len, (size_t)r - at);
				memcpy(op.data + at, s->iov[k].iov_base, n);
				at += n;
			}
		}
		crashsim_pend(cs, f, op);
		return;
	}
	case IO_STEP_FDATASYNC:
	case IO_STEP_FSYNC: {
		struct stat sb;
		REQUIRE(fstat(s->fd, &sb) == 0);
		if (S_ISDIR(sb.st_mode))
			crashsim_sync_dir(cs);
		else
			crashsim_sync_file(&cs->file[crashsim_fd_file(cs, s->fd)]);
		return;
	}
	case IO_STEP_UNLINKAT:
		REQUIRE(s->fd == cs->dir_fd && s->flags == 0);
		crashsim_name_find(cs, s->path)->now_file = -1;
		return;
	case IO_STEP_CLOSE:
		crashsim_forget_fd(cs, s->fd);
		return;
	case IO_STEP_READ:
		return;
	case IO_STEP_MKDIRAT:
		break;
	}
	REQUIRE(!"step the crash model does not know");
}

/* One plan's progress through crashsim_step. */
struct crashsim_plan_run {
	uint32_t next;   /* the step to perform (or to complete, when issued) */
	bool cancelled;  /* a linked step failed: the rest get -ECANCELED */
	bool issued;     /* step next is a direct write in flight */
	int file;        /* of that write: its file and its pending operation */
	uint64_t op_id;
};

static inline void crashsim_plan_start(struct crashsim_plan_run *pr)
{
	memset(pr, 0, sizeof(*pr));
}

/*
 * Performs the next step of p like io_plan_run_blocking, notes it in the
 * model and calls cs->after_step once it has completed (cancelled steps
 * too: they are steps of the plan). A write with RWF_DSYNC is issued by
 * one call (the crash point inside it: cs->steps not advanced) and
 * completed by the next. Returns true while p has more to do; false once
 * its last step completed (p->pending is then 0 and p->result full).
 */
static inline bool crashsim_step(struct crashsim *cs, struct io_plan *p,
				 struct crashsim_plan_run *pr)
{
	REQUIRE(pr->next < p->count);
	uint32_t i = pr->next;
	const struct io_step *s = &p->step[i];
	if (pr->issued) {
		crashsim_complete_write(&cs->file[pr->file], pr->op_id);
		pr->issued = false;
	} else if (pr->cancelled) {
		p->result[i] = -ECANCELED;
	} else {
		bool existed = false;
		if (s->op == IO_STEP_OPENAT) {
			struct crashsim_name *n = crashsim_name_find(cs, s->path);
			existed = n->now_file >= 0;
		}
		struct io_plan one;
		io_plan_clear(&one);
		*io_plan_add(&one, s->op, s->fd) = *s;
		one.step[0].link = false;
		io_plan_run_blocking(&one);
		p->result[i] = one.result[0];
		crashsim_note(cs, s, p->result[i], existed);
		if ((s->op == IO_STEP_WRITE || s->op == IO_STEP_WRITEV) &&
		    (s->flags & RWF_DSYNC) && p->result[i] >= 0) {
			/* Issued: in flight until the next call completes it. */
			struct crashsim_file *f = &cs->file[crashsim_fd_file(cs, s->fd)];
			pr->issued = true;
			pr->file = crashsim_fd_file(cs, s->fd);
			pr->op_id = f->pending[f->pending_count - 1].id;
			cs->direct_in_flight++;
			if (cs->after_step)
				cs->after_step(cs->ctx, cs->steps);
			return true;
		}
	}
	pr->cancelled = s->link && (pr->cancelled || io_step_outcome(s, p->result[i]) != 0);
	pr->next++;
	cs->steps++;
	if (cs->after_step)
		cs->after_step(cs->ctx, cs->steps);
	if (pr->next < p->count)
		return true;
	p->pending = 0;
	return false;
}

/* Performs all of p's steps with crashsim_step, one plan at a time. */
static inline void crashsim_run(struct crashsim *cs, struct io_plan *p)
{
	struct crashsim_plan_run pr;
	crashsim_plan_start(&pr);
	while (pr.next < p->count && crashsim_step(cs, p, &pr))
		;
	p->pending = 0;
}

/* Applies to out what a crash leaves of pending write op when it tears:
 * any subset of its sectors (a direct write in flight) or its first bytes,
 * up to a random one; CRASH_TEAR_FLIP flips bits in what is kept. */
static inline void crashsim_apply_torn(struct test_buf *out, const struct crashsim_op *op,
				       enum crashsim_kind kind, uint64_t *rng)
{
	if (op->sectors) {
		/* Torn by sectors: each one there or not; flips only in those there. */
		for (uint64_t at = 0; at < op->len; at += CRASHSIM_SECTOR_BYTES) {
			if (test_xorshift64star(rng) % 2)
				continue;
			struct crashsim_op sector = *op;
			sector.offset = op->offset + at;
			sector.len = RMX_MIN((uint64_t)CRASHSIM_SECTOR_BYTES, op->len - at);
			sector.data = op->data + at;
			crashsim_apply(out, &sector, sector.len);
			if (kind == CRASH_TEAR_FLIP && test_xorshift64star(rng) % 4 == 0)
				out->data[sector.offset + test_xorshift64star(rng) % sector.len] ^=
					(uint8_t)(1u << (test_xorshift64star(rng) % 8));
		}
		return;
	}
	uint64_t keep = op->len ? test_xorshift64star(rng) % (op->len + 1) : 0;
	crashsim_apply(out, op, keep);
	if (kind == CRASH_TEAR_FLIP && op->kind != CRASHSIM_OP_TRUNCATE && keep > 0) {
		unsigned flips = 1 + (unsigned)(test_xorshift64star(rng) % 8);
		for (unsigned k = 0; k < flips; k++) {
			uint64_t at = op->offset + test_xorshift64star(rng) % keep;
			out->data[at] ^= (uint8_t)(1u << (test_xorshift64star(rng) % 8));
		}
	}
}

/* The unordered crash of file f's pending operations (cs->unordered): the
 * first `sized` of its truncations and extensions, in order; each write
 * dropped, whole or torn. */
static inline void crashsim_apply_unordered(const struct crashsim_file *f, enum crashsim_kind kind,
					    uint64_t *rng, struct test_buf *out)
{
	uint64_t size_ops = 0;
	for (size_t k = 0; k < f->pending_count; k++)
		size_ops += f->pending[k].kind != CRASHSIM_OP_WRITE;
	uint64_t sized = test_xorshift64star(rng) % (size_ops + 1);
	for (size_t k = 0; k < f->pending_count; k++) {
		const struct crashsim_op *op = &f->pending[k];
		if (op->kind != CRASHSIM_OP_WRITE) {
			if (sized > 0) {
				crashsim_apply(out, op, op->len);
				sized--;
			}
			continue;
		}
		switch (test_xorshift64star(rng) % 3) {
		case 0:
			break; /* never reached the disk */
		case 1:
			crashsim_apply(out, op, op->len);
			break;
		default:
			crashsim_apply_torn(out, op, kind, rng);
			break;
		}
	}
}

/* The content a crash leaves of file f (see the top of this file). */
static inline void crashsim_crashed_content(const struct crashsim_file *f, enum crashsim_kind kind,
					    bool unordered, uint64_t *rng, struct test_buf *out)
{
	out->len = 0;
	test_buf_put(out, f->durable.data, f->durable.len);
	if (kind == CRASH_DROP || f->pending_count == 0)
		return;
	if (unordered) {
		crashsim_apply_unordered(f, kind, rng, out);
		return;
	}
	for (size_t k = 0; k + 1 < f->pending_count; k++)
		crashsim_apply(out, &f->pending[k], f->pending[k].len);
	crashsim_apply_torn(out, &f->pending[f->pending_count - 1], kind, rng);
}

/* What one crash left: pending name operations kept, files with pending
 * operations (dropped, or torn), and of those, files with two or more
 * pending writes (what the unordered mode reorders). */
struct crashsim_crash_stats {
	unsigned names_kept;
	unsigned files_pending;
	unsigned files_writes_pending_many;
};

/*
 * Writes into the empty directory out_dir what a crash at this point could
 * leave of the shard directory, drawn with rng.
 */
static inline struct crashsim_crash_stats
crashsim_materialize(const struct crashsim *cs, const char *out_dir, enum crashsim_kind kind,
		     bool names_survive, uint64_t *rng)
{
	struct crashsim_crash_stats stats = { 0, 0, 0 };
	struct test_buf content = { 0 };
	for (int i = 0; i < cs->name_count; i++) {
		const struct crashsim_name *n = &cs->name[i];
		int file = n->durable_file;
		enum crashsim_kind file_kind = kind;
		if (names_survive && n->now_file != n->durable_file && test_xorshift64star(rng) % 2) {
			file = n->now_file;
			file_kind = CRASH_DROP;
			stats.names_kept++;
		}
		if (file < 0)
			continue;
		stats.files_pending += cs->file[file].pending_count > 0;
		unsigned writes = 0;
		for (size_t k = 0; k < cs->file[file].pending_count; k++)
			writes += cs->file[file].pending[k].kind == CRASHSIM_OP_WRITE;
		stats.files_writes_pending_many += writes >= 2;
		crashsim_crashed_content(&cs->file[file], file_kind, cs->unordered, rng, &content);
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", out_dir, n->name);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		REQUIRE(fd >= 0);
		size_t at = 0;
		while (at < content.len) {
			ssize_t w = write(fd, content.data + at, content.len - at);
			REQUIRE(w > 0);
			at += (size_t)w;
		}
		close(fd);
	}
	test_buf_free(&content);
	return stats;
}

#endif
