/*
 * handover.c - an operator's request for the running gateway, from the
 * store tool's side: the request file (a temporary name starting with '.',
 * fsync, rename, directory fsync: the gateway never reads half a request),
 * the checks that the pid in DIR/ringmx.pid is a ringmx that takes SIGUSR1
 * rather than dying of it, the signal, and the bounded wait until the
 * gateway has removed every request it was handed. The gateway's side is
 * core/control.c.
 */
#include "handover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/bounds.h"
#include "../common/control_proto.h"
#include "store_tool.h"

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
int handover_request_write(const char *data_dir, uint32_t worker, const char *text,
			   struct handover *h)
{
	char dir[PATH_MAX], shard[PATH_MAX], tmp[PATH_MAX];
	h->written = false;
	int n = snprintf(shard, sizeof(shard), "%s/w%u", data_dir, (unsigned)worker);
	int m = snprintf(dir, sizeof(dir), "%s/" CONTROL_DIR_NAME, shard);
	long long stamp = (long long)store_tool_now_unix_ms();
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
void handover_request_withdraw(struct handover *h)
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
		store_tool_sleep_ms(STORE_TOOL_POLL_INTERVAL_MS);
	}
	return false;
}

/*
 * Hands the written requests to the running gateway: SIGUSR1, then a
 * bounded wait for it to read them. Returns 0 once read; 1 (printed) when
 * it cannot be signalled (the requests are withdrawn: nothing happens) or
 * did not read them in time (they stay: it reads them later).
 */
int handover_signal_and_wait(const char *data_dir, const char *label, struct handover *h,
			     uint32_t count)
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
			handover_request_withdraw(&h[i]);
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
