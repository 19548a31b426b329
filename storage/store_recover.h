/*
 * store_recover.h - start-up of one worker's shard of the segment store:
 * the shard directory created and locked, every segment recovered (torn
 * tail cut, bad records copied to quarantine/), the active segment and a
 * spare opened. What follows is the run-time store of store.h.
 *
 * Every function here blocks (open, scan, fdatasync) and logs nothing
 * itself: errors come back as -errno with a message for the operator.
 * Start-up and tools only.
 */
#ifndef RINGMX_STORE_RECOVER_H
#define RINGMX_STORE_RECOVER_H

#include "../common/base.h"
#include "store.h"

struct store_config {
	const char *data_dir;        /* DIR; the shard is DIR/w<worker> */
	uint32_t worker;
	uint64_t segment_size_bytes;
	uint64_t store_max_bytes;    /* this shard's share of store_max_bytes */
	bool fsync;                  /* false: fsync = never (benchmarks only) */
	enum store_io_mode io_mode;  /* BUFFERED (0) unless asked; AUTO: probe */
	uint32_t commits_in_flight;  /* group commits at once, 1..STORE_COMMITS_IN_FLIGHT_MAX
				      * (0: 1) */
};

struct store_recovery_stats {
	uint32_t segments;
	uint64_t records;
	uint64_t bytes;
	uint32_t quarantined;        /* bad records set aside */
	uint32_t sealed_damaged;     /* of those, the ones in sealed segments: corruption,
					never a torn write (an alarm) */
	uint64_t truncated_bytes;    /* torn tail zeroed in the active segment (a copy
					is kept in quarantine/) */
	enum store_io_mode io_mode;  /* what commits use: BUFFERED or DIRECT */
	const char *io_reason;       /* why, a static word: "configured",
					"o_direct_refused", ... */
};

/*
 * Start-up (blocking): creates DIR/w<N> (0700) if needed, recovers every
 * segment there, opens the newest as active (or creates segment 1) and
 * prepares one spare; on a full file system (ENOSPC, EDQUOT) it starts
 * without one, as after a failed run-time spare (store_spare_wanted asks
 * again after the backoff). A segment that holds no record but lacks a sound
 * header gets one. Returns 0 and *out, or -errno with a message in
 * err[errlen]: -EPROTO when a segment with data has no header this version
 * reads (format 1, a newer format, a damaged or foreign header), with what
 * the operator should do. Logs nothing itself.
 *
 * cfg->io_mode chooses the commit path (stats->io_mode, io_reason say which
 * and why): DIRECT and AUTO reopen the active segment and the spare with
 * O_DIRECT when the file system takes it (not tmpfs: EINVAL), reports a
 * DIO alignment that divides SEGMENT_BLOCK_BYTES, has blocks no larger,
 * and the segment size is a multiple of it; else AUTO falls back to
 * buffered commits and DIRECT stops start-up (-EINVAL, saying why). AUTO
 * also keeps buffered commits on a block device with a volatile write
 * cache and no FUA ("device_cache_needs_flush"): there every synchronous
 * direct write ends with a cache flush from a kernel worker thread.
 */
RMX_MUST_CHECK int store_open(const struct store_config *cfg, struct store **out,
			      struct store_recovery_stats *stats, char *err, size_t errlen);

/*
 * Start-up (blocking), for a leftover shard: DIR/w<N> with N >= workers, left
 * by a run with more workers. Locks and recovers it like store_open (torn
 * tail of its newest segment cut, bad records quarantined) and removes its
 * empty segments at the end (spares), but opens no active segment and makes
 * no spare: the shard takes no new records (store_admit and store_reserve
 * say -EROFS). Its segments are forwarded and reclaimed like any other, and
 * once the last is gone the shard holds none.
 */
RMX_MUST_CHECK int store_open_leftover(const struct store_config *cfg, struct store **out,
				       struct store_recovery_stats *stats, char *err,
				       size_t errlen);

/* Lists the worker directories w<N> under data_dir (recovery reads every one
 * present, whatever today's worker count). Returns count, or -errno. */
int store_list_shards(const char *data_dir, uint32_t *workers, uint32_t cap);

#endif
