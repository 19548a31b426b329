/*
 * main.c - start-up and shutdown of the gateway.
 *
 * Start-up is the one place that blocks: read and validate the config, create
 * the data directory, recover every store shard, bind one SO_REUSEPORT
 * listener per worker per address, then start the pinned workers. A problem
 * here exits with status 2 (configuration) or 1 (environment) and a message
 * saying what to fix. Afterwards the main thread only waits for signals:
 * SIGTERM/SIGINT start a drain (a second one hurries it).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../storage/queue.h"
#include "../storage/queue_recover.h"
#include "../storage/store.h"
#include "../storage/store_recover.h"
#include "control.h"
#include "config.h"
#include "../common/bounds.h"
#include "front.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "version.h"
#include "worker.h"

#ifndef RINGMX_VERSION
#define RINGMX_VERSION "dev"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ringmx [-c FILE] [--check-config]\n"
		"  -c FILE   configuration file (key = value lines); without it,\n"
		"            the embedded defaults: listen 127.0.0.1:2525, accept mail\n"
		"            for localhost, data in ./ringmx-data\n"
		"  --check-config\n"
		"            validate the configuration, print the effective one, exit\n"
		"  -V, --version\n"
		"            print the version, the libraries and the io_uring\n"
		"            features this kernel grants\n");
}

/* The CPUs we may run on, in order; workers are pinned round-robin. */
static int cpu_for_worker(uint32_t i)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return -1;
	int count = CPU_COUNT(&set);
	if (count <= 0)
		return -1;
	int want = (int)(i % (uint32_t)count);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (CPU_ISSET(cpu, &set) && want-- == 0)
			return cpu;
	}
	return -1;
}

/* ---- reload (SIGHUP) --------------------------------------------------------- */

/* The configuration snapshots alive: [0] is the one loaded at start-up
 * (main's own, whose restart-only keys main keeps reading), the others
 * were loaded by reloads. A snapshot is freed once it is not the current
 * one and no worker reads it or can be about to (worker_snapshot_unused). */
struct reload_state {
	struct config *snapshot[CONFIG_SNAPSHOTS_MAX];
	uint32_t current;
	uint32_t reloads;
};

static void snapshot_drop(struct reload_state *rs, uint32_t k)
{
	config_free(rs->snapshot[k]);
	if (k != 0) /* [0] is main's static one */
		free(rs->snapshot[k]);
	rs->snapshot[k] = NULL;
}

/* Frees every snapshot (at exit, after the workers are joined). */
static void snapshots_free(struct reload_state *rs)
{
	for (uint32_t k = 0; k < CONFIG_SNAPSHOTS_MAX; k++)
		if (rs->snapshot[k])
			snapshot_drop(rs, k);
}

/* Logs a multi-line error text one line per problem, quoted. */
static void log_error_lines(const char *event, char *text)
{
	for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		struct log_msg m;
		if (log_begin(&m, LOG_ERROR, event)) {
			log_add_str(&m, "error", line);
			log_end(&m);
		}
	}
}

/*
 * SIGHUP: reads the file again. Invalid: the running configuration stays
 * and every problem is logged. Valid: keys that cannot change while running
 * keep their running values (and are named as needing a restart); the rest
 * goes to every worker as one new snapshot.
 */
static void reload(struct reload_state *rs, const char *path, struct worker *workers,
		   uint32_t count)
{
	for (uint32_t k = 0; k < CONFIG_SNAPSHOTS_MAX; k++)
		if (rs->snapshot[k] && k != rs->current && worker_snapshot_unused(workers, count, k))
			snapshot_drop(rs, k);
	uint32_t slot = 1;
	while (slot < CONFIG_SNAPSHOTS_MAX && rs->snapshot[slot])
		slot++;
	if (slot == CONFIG_SNAPSHOTS_MAX) {
		log_error("event=reload_refused reason=snapshots_in_use snapshots=%d note=\"sessions "
			  "opened before earlier reloads are still open; try again later\"",
			  CONFIG_SNAPSHOTS_MAX);
		return;
	}
	struct config *next = calloc(1, sizeof(*next));
	char err[4096];
	if (!next) {
		log_error("event=reload_failed error=out_of_memory");
		return;
	}
	const struct config *running = rs->snapshot[rs->current];
	/* A certificate whose renewal does not load keeps the running one. */
	if (config_load_keeping_tls(next, path, running, err, sizeof(err)) != 0) {
		log_error_lines("reload_failed", err);
		log_error("event=reload_refused reason=invalid_file note=\"the running "
			  "configuration stays\"");
		free(next);
		return;
	}
	struct log_msg lm;
	if (next->tls_kept_count && log_begin(&lm, LOG_WARN, "tls_cert_kept")) {
		log_add_u64(&lm, "certificates", next->tls_kept_count);
		log_add_str(&lm, "reason", next->tls_kept_text); /* the last one */
		log_end(&lm);
	}
	char keys[512];
	if (config_restart_keys(next, running, keys, sizeof(keys)))
		log_warn("event=reload_restart_needed keys=%s note=\"these keep their running "
			 "values until a restart\"", keys);
	next->snapshot = slot;
	rs->snapshot[slot] = next;
	rs->current = slot;
	rs->reloads++;
	log_set_level((enum log_level)next->log_level);
	log_set_json(next->log_json);
	for (uint32_t i = 0; i < count; i++)
		worker_request_reload(&workers[i], next);
	log_info("event=reload snapshot=%u reloads=%u accept_domains=%u", slot, rs->reloads,
		 next->accept_domain_count);
}

/* The account of `user`, looked up once at start-up. */
struct run_as {
	bool set;     /* `user` is configured */
	uid_t uid;
	gid_t gid;
};

static int run_as_lookup(const struct config *cfg, struct run_as *out)
{
	memset(out, 0, sizeof(*out));
	if (!cfg->user[0])
		return 0;
	struct passwd *pw = getpwnam(cfg->user);
	if (!pw) {
		fprintf(stderr, "ringmx: user %s: no such user\n", cfg->user);
		return -1;
	}
	out->set = true;
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	return 0;
}

/*
 * Creates data_dir (0700) when missing. With `user`, a data_dir created now
 * is given to that user; an existing one must already be that user's (we
 * never chown a tree we did not make: say what to run instead). Returns 0,
 * or -1 after saying why on stderr.
 */
static int prepare_data_dir(const struct config *cfg, const struct run_as *as)
{
	bool created = mkdir(cfg->data_dir, 0700) == 0;
	if (!created && errno != EEXIST) {
		fprintf(stderr, "ringmx: cannot create data_dir %s: %s\n", cfg->data_dir,
			strerror(errno));
		return -1;
	}
	struct stat st;
	if (stat(cfg->data_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "ringmx: data_dir %s is not a directory\n", cfg->data_dir);
		return -1;
	}
	if (!as->set)
		return 0;
	if (created && chown(cfg->data_dir, as->uid, as->gid) != 0) {
		fprintf(stderr, "ringmx: cannot give data_dir %s to %s: %s\n", cfg->data_dir,
			cfg->user, strerror(errno));
		return -1;
	}
	if (!created && st.st_uid != as->uid) {
		fprintf(stderr, "ringmx: data_dir %s belongs to uid %u, not to user %s; run "
			"chown -R %s: %s\n", cfg->data_dir, (unsigned)st.st_uid, cfg->user,
			cfg->user, cfg->data_dir);
		return -1;
	}
	return 0;
}

/*
 * Runs the process as `user` from here on (all threads: none has started
 * yet): supplementary groups, group, then user, and checks that root cannot
 * be regained. Without `user` nothing changes. Then makes data_dir 0700 as
 * its owner. Returns 0, or -1 after saying why on stderr.
 */
static int drop_privileges(const struct config *cfg, const struct run_as *as)
{
	if (as->set) {
		if (geteuid() != 0 && geteuid() != as->uid) {
			fprintf(stderr, "ringmx: user = %s needs ringmx started as root (or as %s)\n",
				cfg->user, cfg->user);
			return -1;
		}
		if (geteuid() == 0 && (initgroups(cfg->user, as->gid) != 0 || setgid(as->gid) != 0 ||
				       setuid(as->uid) != 0)) {
			fprintf(stderr, "ringmx: cannot switch to user %s: %s\n", cfg->user,
				strerror(errno));
			return -1;
		}
		if (as->uid != 0 && (setuid(0) == 0 || geteuid() != as->uid)) {
			fprintf(stderr, "ringmx: still able to regain root after switching to %s\n",
				cfg->user);
			return -1;
		}
		char user_q[3 * USER_NAME_MAX_BYTES + 8];
		log_value(user_q, sizeof(user_q), cfg->user, strlen(cfg->user));
		log_info("event=privileges_dropped user=%s uid=%u gid=%u", user_q,
			 (unsigned)as->uid, (unsigned)as->gid);
	}
	/* The store holds other people's mail: owner only. */
	struct stat st;
	if (stat(cfg->data_dir, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 077) &&
	    chmod(cfg->data_dir, 0700) != 0) {
		fprintf(stderr, "ringmx: cannot make data_dir %s mode 0700: %s\n", cfg->data_dir,
			strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Opens store shard DATA_DIR/w<id> and its forwarding queue (blocking
 * recovery). leftover: a shard left by a run with more workers, which takes
 * no new records (store_open_leftover). Returns 0, or -1 after saying why
 * on stderr.
 */
static int open_shard(const struct config *cfg, uint32_t id, bool leftover,
		      struct forward_shard *out)
{
	char err[512];
	struct store_config sc = {
		.data_dir = cfg->data_dir,
		.worker = id,
		.segment_size_bytes = cfg->segment_size_bytes,
		.store_max_bytes = cfg->store_max_bytes / cfg->workers,
		.fsync = cfg->fsync,
		.io_mode = (enum store_io_mode)cfg->store_io,
		.commits_in_flight = cfg->commits_in_flight,
	};
	struct store_recovery_stats rs;
	memset(&rs, 0, sizeof(rs));
	memset(out, 0, sizeof(*out));
	out->id = id;
	int rc = leftover ? store_open_leftover(&sc, &out->store, &rs, err, sizeof(err))
			  : store_open(&sc, &out->store, &rs, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "ringmx: store shard w%u: %s\n", id, err);
		return -1;
	}
	log_info("event=store_recovered shard=w%u leftover=%s segments=%u records=%llu bytes=%llu "
		 "quarantined=%u sealed_damaged=%u truncated_bytes=%llu",
		 id, leftover ? "yes" : "no", rs.segments, (unsigned long long)rs.records,
		 (unsigned long long)rs.bytes, rs.quarantined, rs.sealed_damaged,
		 (unsigned long long)rs.truncated_bytes);
	if (!leftover)
		log_info("event=store_io shard=w%u mode=%s configured=%s reason=%s", id,
			 store_io_mode_name(rs.io_mode),
			 store_io_mode_name((enum store_io_mode)cfg->store_io), rs.io_reason);
	out->sealed_damaged = rs.sealed_damaged;
	if (rs.sealed_damaged)
		log_error("event=store_corruption shard=w%u regions=%u note=\"damage in sealed "
			  "segments: not a torn write; set aside in quarantine/, check the disk\"",
			  id, rs.sealed_damaged);
	if (rs.quarantined) {
		char dir[PATH_MAX + 32], q[PATH_MAX + 96];
		snprintf(dir, sizeof(dir), "%s/w%u/quarantine", cfg->data_dir, id);
		log_value(q, sizeof(q), dir, strlen(dir));
		log_warn("event=store_quarantine shard=w%u records=%u dir=%s note=\"bad records "
			 "set aside\"", id, rs.quarantined, q);
	}
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct queue_config qc = {
		.data_dir = cfg->data_dir,
		.worker = id,
		.retry_min_ms = (int64_t)cfg->retry_min_s * 1000,
		.retry_max_ms = (int64_t)cfg->retry_max_s * 1000,
		.max_lifetime_ms = (int64_t)cfg->max_queue_lifetime_s * 1000,
		.fsync = cfg->fsync,
		.jitter_seed = (uint64_t)now.tv_nsec * 2654435761u + id + 1,
		.now_unix_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
	};
	struct queue_recovery_stats qs;
	memset(&qs, 0, sizeof(qs));
	rc = queue_open(&qc, &out->queue, &qs, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "ringmx: forwarding queue of shard w%u: %s\n", id, err);
		store_close(out->store);
		out->store = NULL;
		return -1;
	}
	if (leftover) /* every segment of it is sealed: all may be reclaimed */
		queue_set_active_segment(out->queue, store_first_unsealed_seq(out->store));
	log_info("event=queue_recovered shard=w%u messages=%llu recipients=%llu "
		 "records_final=%llu log_entries=%llu log_bad_bytes=%llu",
		 id, (unsigned long long)qs.messages_pending,
		 (unsigned long long)qs.recipients_pending, (unsigned long long)qs.records_final,
		 (unsigned long long)qs.log_entries, (unsigned long long)qs.log_bad_bytes);
	return 0;
}

static void shards_close(struct worker *w)
{
	for (uint32_t k = 0; k < w->shard_count; k++) {
		queue_close(w->shards[k].queue);
		store_close(w->shards[k].store);
	}
	w->shard_count = 0;
}

/* Removes an empty leftover shard directory (and its empty control/);
 * anything still in it (a quarantine/) keeps it, which is fine. */
static void remove_empty_shard(const struct config *cfg, uint32_t id)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/w%u/%s", cfg->data_dir, id, CONTROL_DIR_NAME);
	(void)rmdir(path);
	snprintf(path, sizeof(path), "%s/w%u", cfg->data_dir, id);
	if (rmdir(path) == 0)
		log_info("event=shard_removed shard=w%u reason=empty_leftover", id);
}

/*
 * Shards w<k> with k >= workers, left by a run with more workers: worker
 * k mod workers forwards their mail and reclaims their segments, so that
 * changing `workers` never strands mail (DESIGN.md "Storage"). They take
 * no new records. Returns 0, or -1 after saying why on stderr.
 */
static int adopt_leftover_shards(const struct config *cfg, struct worker *workers)
{
	uint32_t ids[WORKERS_MAX];
	int n = store_list_shards(cfg->data_dir, ids, WORKERS_MAX);
	if (n < 0) {
		fprintf(stderr, "ringmx: cannot list shards in %s: %s\n", cfg->data_dir,
			strerror(-n));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (ids[i] < cfg->workers)
			continue;
		struct worker *w = &workers[ids[i] % cfg->workers];
		RMX_ASSERT(w->shard_count < FORWARD_SHARDS_MAX);
		struct forward_shard *sh = &w->shards[w->shard_count];
		if (open_shard(cfg, ids[i], true, sh) != 0)
			return -1;
		struct store_stats ss;
		store_get_stats(sh->store, &ss);
		if (ss.segments == 0) {
			queue_close(sh->queue);
			store_close(sh->store);
			remove_empty_shard(cfg, ids[i]);
			continue;
		}
		w->shard_count++;
		log_info("event=shard_adopted shard=w%u worker=%u segments=%u", ids[i], w->id,
			 ss.segments);
	}
	return 0;
}

/*
 * Undoes a start-up that failed part way: stops the workers already running,
 * then closes what the others were given. Every resource is released so that
 * a refused start leaves nothing behind (and leak checkers see nothing).
 */
static void startup_abort(struct worker *workers, uint32_t prepared, uint32_t started)
{
	for (uint32_t i = 0; i < started; i++) {
		worker_request_stop(&workers[i]);
		worker_request_exit(&workers[i]); /* no need to wait for the others */
	}
	for (uint32_t i = 0; i < started; i++)
		(void)worker_join(&workers[i]);
	for (uint32_t i = 0; i < prepared; i++) {
		struct worker *w = &workers[i];
		for (uint32_t j = 0; j < LISTENERS_MAX; j++)
			if (w->listen_fds[j] >= 0)
				close(w->listen_fds[j]);
		if (w->wake_fd >= 0)
			close(w->wake_fd);
		if (w->metrics_fd >= 0)
			close(w->metrics_fd);
		shards_close(w);
	}
	free(workers);
}

static int run(int argc, char **argv)
{
	const char *config_path = NULL;
	bool check_only = false;
	static const struct option long_options[] = {
		{ "check-config", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "c:hV", long_options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'C':
			check_only = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			return version_print(stdout) == 0 ? 0 : 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	static struct config cfg;
	char err[1024];
	if (config_load(&cfg, config_path, err, sizeof(err)) != 0) {
		/* One line per problem found in the file. */
		for (char *save = NULL, *line = strtok_r(err, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save))
			fprintf(stderr, "ringmx: %s\n", line);
		return 2;
	}
	if (check_only) {
		/* Valid: print what would run, in a form -c reads back. */
		printf("# ringmx %s: %s is valid; the effective configuration:\n", RINGMX_VERSION,
		       config_path ? config_path : "(embedded defaults)");
		config_print(&cfg, stdout);
		config_free(&cfg);
		return 0;
	}
	/* Before any worker writes: a regular-file stderr goes to append mode,
	 * or the workers' writes would overwrite each other (core/log.h). */
	int stderr_rc = log_stderr_setup();
	if (stderr_rc != 0) {
		fprintf(stderr, "ringmx: cannot put stderr, a regular file, in append mode: %s; "
			"redirect it with 2>> instead\n", strerror(-stderr_rc));
		config_free(&cfg);
		return 1;
	}
	log_set_level((enum log_level)cfg.log_level);
	log_set_json(cfg.log_json);
	struct reload_state rs = { .snapshot = { &cfg }, .current = 0 };
	cfg.snapshot = 0;

	/* Signals go to the main thread only: block them before threads start. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!cfg.fsync)
		log_warn("event=fsync_disabled note=\"fsync = never: acknowledged mail can be "
			 "lost on a crash; for benchmarks only\"");

	static atomic_uint connections;
	static struct front front; /* made once the process runs as `user` */
	struct worker *workers = calloc(cfg.workers, sizeof(*workers));
	if (!workers) {
		fprintf(stderr, "ringmx: out of memory\n");
		config_free(&cfg);
		return 1;
	}
	for (uint32_t i = 0; i < cfg.workers; i++) {
		for (uint32_t j = 0; j < LISTENERS_MAX; j++)
			workers[i].listen_fds[j] = -1;
		workers[i].wake_fd = -1;
	}
	/* Metrics: one aligned block of counters per worker, the static facts,
	 * and the list every worker's scrape sums. */
	static struct metrics_static metrics_facts;
	const char *upstream_labels[UPSTREAMS_MAX];
	for (uint32_t j = 0; j < cfg.upstream_count; j++)
		upstream_labels[j] = cfg.upstream[j].text;
	if (metrics_static_init(&metrics_facts, RINGMX_VERSION, !cfg.fsync, upstream_labels,
				cfg.upstream_count) != 0) {
		fprintf(stderr, "ringmx: metrics: bad upstream labels\n");
		free(workers);
		config_free(&cfg);
		return 1;
	}
	const char *cert_labels[TLS_CERT_PAIRS_MAX];
	for (uint32_t j = 0; j < cfg.tls_cert_count; j++)
		cert_labels[j] = cfg.tls_cert[j];
	metrics_static_set_certs(&metrics_facts, cert_labels, cfg.tls_cert_count);
	struct metrics_worker *metrics_blocks =
		aligned_alloc(64, RMX_ALIGN_UP(sizeof(struct metrics_worker) * cfg.workers, 64));
	const struct metrics_worker **metrics_all = calloc(cfg.workers, sizeof(*metrics_all));
	if (!metrics_blocks || !metrics_all) {
		fprintf(stderr, "ringmx: out of memory\n");
		free(metrics_blocks);
		free(metrics_all);
		free(workers);
		config_free(&cfg);
		return 1;
	}
	for (uint32_t i = 0; i < cfg.workers; i++) {
		metrics_worker_init(&metrics_blocks[i]);
		metrics_all[i] = &metrics_blocks[i];
		workers[i].metrics_fd = -1;
	}
	uint32_t prepared = 0;
	for (uint32_t i = 0; i < cfg.workers; i++) {
		struct worker *w = &workers[i];
		prepared = i + 1;
		w->id = i;
		w->metrics = &metrics_blocks[i];
		w->all_metrics = metrics_all;
		w->worker_count = cfg.workers;
		w->metrics_static = &metrics_facts;
		w->cpu = cpu_for_worker(i);
		w->cfg = &cfg;
		w->connections = &connections;
		for (uint32_t j = 0; j < cfg.listen_count; j++) {
			int fd = listener_open(&cfg.listen[j], err, sizeof(err));
			if (fd < 0) {
				fprintf(stderr, "ringmx: %s\n", err);
				goto fail;
			}
			w->listen_fds[j] = fd;
		}
		w->listen_count = cfg.listen_count;
		if (cfg.metrics_enabled) {
			w->metrics_fd = listener_open(&cfg.metrics_listen, err, sizeof(err));
			if (w->metrics_fd < 0) {
				fprintf(stderr, "ringmx: metrics_listen: %s\n", err);
				goto fail;
			}
		}
		w->wake_fd = eventfd(0, EFD_CLOEXEC);
		if (w->wake_fd < 0) {
			fprintf(stderr, "ringmx: eventfd: %s\n", strerror(errno));
			goto fail;
		}
	}
	/* Listeners are bound: the rest runs as `user`, so the store is its
	 * (and auth_users must be readable by it, as on every reload). */
	struct run_as as;
	if (run_as_lookup(&cfg, &as) != 0 || prepare_data_dir(&cfg, &as) != 0 ||
	    drop_privileges(&cfg, &as) != 0)
		goto fail;
	if (front_create(&front, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "ringmx: %s\n", err);
		goto fail;
	}
	for (uint32_t i = 0; i < cfg.workers; i++)
		workers[i].front = &front;
	for (uint32_t i = 0; i < cfg.workers; i++) {
		if (open_shard(&cfg, i, false, &workers[i].shards[0]) != 0)
			goto fail;
		workers[i].shard_count = 1;
	}
	if (adopt_leftover_shards(&cfg, workers) != 0)
		goto fail;
	for (uint32_t i = 0; i < cfg.workers; i++) {
		int rc = worker_start(&workers[i]);
		if (rc != 0) {
			fprintf(stderr, "ringmx: worker %u failed to start: %s\n", i, strerror(-rc));
			startup_abort(workers, cfg.workers, i);
			front_destroy(&front);
			free(metrics_all);
			free(metrics_blocks);
			config_free(&cfg);
			return 1;
		}
	}
	/* The pid file tells ringmx-store whom to signal for live queue requests. */
	char pid_path[PATH_MAX + 16];
	snprintf(pid_path, sizeof(pid_path), "%s/" CONTROL_PID_FILE_NAME, cfg.data_dir);
	FILE *pf = fopen(pid_path, "w");
	bool pid_written = pf && fprintf(pf, "%ld\n", (long)getpid()) >= 0;
	int pid_errno = errno;
	if (pf && fclose(pf) != 0 && pid_written) {
		pid_written = false;
		pid_errno = errno;
	}
	if (!pid_written) {
		char q[PATH_MAX + 64];
		log_value(q, sizeof(q), pid_path, strlen(pid_path));
		log_warn("event=pid_file_failed path=%s errno=%s", q, log_errno_name(pid_errno));
	}
	if (cfg.metrics_enabled)
		log_info("event=metrics_listening address=%s paths=/metrics,/healthz,/readyz",
			 cfg.metrics_listen.text);
	char data_dir_q[PATH_MAX + 64];
	log_value(data_dir_q, sizeof(data_dir_q), cfg.data_dir, strlen(cfg.data_dir));
	for (uint32_t j = 0; j < cfg.listen_count; j++)
		log_info("event=listening address=%s workers=%u hostname=%s data_dir=%s fsync=%s",
			 cfg.listen[j].text, cfg.workers, cfg.hostname, data_dir_q,
			 cfg.fsync ? "always" : "never");

	/* Wait for a signal; after the first stop, keep listening (a second one
	 * hurries the drain) until every worker has finished. */
	unsigned stops = 0;
	for (;;) {
		if (stops) {
			bool running = false, draining = false;
			for (uint32_t i = 0; i < cfg.workers; i++) {
				running |= !atomic_load(&workers[i].finished);
				draining |= !atomic_load(&workers[i].drained) &&
					    !atomic_load(&workers[i].finished);
			}
			if (!running)
				break;
			if (!draining)
				for (uint32_t i = 0; i < cfg.workers; i++)
					worker_request_exit(&workers[i]);
		}
		struct timespec tick = { 0, 100 * 1000000L };
		int sig = stops ? sigtimedwait(&sigs, NULL, &tick) : sigwaitinfo(&sigs, NULL);
		if (sig < 0)
			continue;
		if (sig == SIGUSR1) {
			/* ringmx-store left request files: each worker applies its own. */
			for (uint32_t i = 0; i < cfg.workers; i++)
				worker_request_control(&workers[i]);
			continue;
		}
		if (sig == SIGHUP) {
			if (stops == 0) {
				uint32_t before = rs.reloads;
				reload(&rs, config_path, workers, cfg.workers);
				if (rs.reloads != before)
					front_reload(&front, rs.snapshot[rs.current]);
			}
			continue;
		}
		stops++;
		log_info("event=%s signal=%d", stops == 1 ? "shutdown" : "shutdown_hurry", sig);
		for (uint32_t i = 0; i < cfg.workers; i++)
			worker_request_stop(&workers[i]);
	}
	int status = 0;
	for (uint32_t i = 0; i < cfg.workers; i++) {
		if (worker_join(&workers[i]) != 0)
			status = 1;
		shards_close(&workers[i]);
		close(workers[i].wake_fd);
	}
	free(workers);
	free(metrics_all);
	free(metrics_blocks);
	(void)unlink(pid_path);
	snapshots_free(&rs);
	front_destroy(&front);
	log_info("event=stopped status=%d", status);
	return status;

fail:
	startup_abort(workers, prepared, 0);
	front_destroy(&front);
	free(metrics_all);
	free(metrics_blocks);
	config_free(&cfg);
	return 1;
}

/* The TLS library is set up once, before the configuration builds its
 * contexts and before any worker starts, and cleaned up after run has
 * joined every worker and freed every context. */
int main(int argc, char **argv)
{
	if (tls_global_init() != 0) {
		fprintf(stderr, "ringmx: the TLS library (wolfSSL) failed to initialise\n");
		return 1;
	}
	int status = run(argc, argv);
	tls_global_cleanup();
	return status;
}
