/*
 * test_worker.c - when a configuration snapshot may be freed after reloads
 * (worker_snapshot_unused): never while a worker may hold a pointer to it
 * that it has not published yet. The race: a worker loads snapshot A from
 * cfg_next, two more reloads follow before it publishes its held mask, and
 * the third must not free A.
 */
#include "../core/config.h"
#include "../core/worker.h"
#include "test.h"

static struct config snap[4];

static void worker_publishes(struct worker *w, unsigned mask, const struct config *applied)
{
	atomic_store(&w->cfg_held_mask, mask);
	atomic_store(&w->cfg_applied, applied);
}

static void test_reload_race(void)
{
	for (unsigned k = 0; k < 4; k++)
		snap[k].snapshot = k;
	struct worker w[2];
	memset(w, 0, sizeof(w));
	for (unsigned i = 0; i < 2; i++) {
		w[i].cfg = &snap[0];
		atomic_store(&w[i].cfg_next, NULL);
		worker_publishes(&w[i], 1u << 0, &snap[0]);
	}
	/* Nothing reloaded: only what a mask names is in use. */
	CHECK(!worker_snapshot_unused(w, 2, 0));
	CHECK(worker_snapshot_unused(w, 2, 1));

	/* Reload 1 hands out A; worker 0 switches at once, worker 1 has loaded
	 * the pointer but not published yet. */
	atomic_store(&w[0].cfg_next, &snap[1]);
	atomic_store(&w[1].cfg_next, &snap[1]);
	worker_publishes(&w[0], 1u << 1, &snap[1]);
	/* Reload 2 hands out B before worker 1 publishes. */
	atomic_store(&w[0].cfg_next, &snap[2]);
	atomic_store(&w[1].cfg_next, &snap[2]);
	/* Reload 3 looks for snapshots to free: A is named by no mask, yet
	 * worker 1 reads it. Nothing may be freed while a worker lags. */
	CHECK(!worker_snapshot_unused(w, 2, 1));
	CHECK(!worker_snapshot_unused(w, 2, 0));
	/* Worker 1 publishes A (still behind B): still nothing. */
	worker_publishes(&w[1], 1u << 1, &snap[1]);
	CHECK(!worker_snapshot_unused(w, 2, 1));
	/* Both switch to B; worker 1 keeps a session on S. */
	worker_publishes(&w[0], 1u << 2, &snap[2]);
	worker_publishes(&w[1], (1u << 2) | (1u << 0), &snap[2]);
	CHECK(worker_snapshot_unused(w, 2, 1));
	CHECK(!worker_snapshot_unused(w, 2, 0));
	CHECK(!worker_snapshot_unused(w, 2, 2));
	/* That session ends. */
	worker_publishes(&w[1], 1u << 2, &snap[2]);
	CHECK(worker_snapshot_unused(w, 2, 0));
}

int main(void)
{
	test_reload_race();
	return test_main_end("test_worker");
}
