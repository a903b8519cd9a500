/*
 * Engine internals shared by the files of engine/ and nothing else.
 */
#ifndef ENGINE_ENGINE_INT_H
#define ENGINE_ENGINE_INT_H

#include <pthread.h>

#include "audiences/space.h"
#include "engine/engine.h"
#include "identity/identity.h"
#include "lib/buf.h"
#include "lib/keyset.h"
#include "profiles/profiles.h"

/*
 * The format of the persisted state: the identity snapshot's version and
 * the way the engine lays sections out. A checkpoint of another format is
 * not loaded; the engine rebuilds from the log instead.
 */
#define ENGINE_FORMAT (10000 * IDENTITY_SNAPSHOT_VERSION + 100 * PROFILE_SNAPSHOT_VERSION + 3)
/* A workspace's sections: the graph's, the profile store's, then the audiences'. */
#define ENGINE_AUDIENCE_SECTION (IDENTITY_SECTIONS + PROFILE_SECTIONS)
#define ENGINE_SECTIONS (ENGINE_AUDIENCE_SECTION + 1)

/* What was last saved of one section: a hash per page, to write only the changed ones. */
struct page_hashes {
	uint64_t *hash;
	uint32_t n, cap;
};

/*
 * An erasure's scope, while its rows may still be in the log: the events
 * its profile held, and those after applied_seq up to upto_seq carrying
 * one of its keys, are skipped.
 */
struct erased_filter {
	struct keyset *keys;
	int64_t *seqs;		/* ascending */
	size_t nseqs;
	int64_t applied_seq, upto_seq;
};

struct engine_ws {
	int64_t id;
	struct identity_graph *g;
	struct profile_store *ps;
	int64_t applied;	/* the last event applied to it (catch-up skips up to here) */
	struct page_hashes saved[ENGINE_SECTIONS];
	struct keyset *suppressed;	/* events carrying one are never applied; NULL: none */
	struct erased_filter *filters;
	size_t nfilters;
	struct audience_space *as;	/* audiences and computed traits */
	struct buf as_buf;		/* the audience section of the save being captured */
	struct buf as_snap;		/* the loaded audience section, until definitions load */
};

/* One commit's rows as the sink copied them: [u32 length][tuple] each. */
struct feed_batch {
	struct feed_batch *next;
	double committed;	/* monotonic seconds */
	int64_t last_seq;
	size_t n, bytes;
	char data[];
};

struct engine {
	char *url;
	size_t feed_cap;
	double cp_interval;

	pthread_t thread;
	bool started;
	pthread_rwlock_t rw;		/* readers of the state; the engine writes under it */

	pthread_mutex_t mu;		/* guards the feed, commands, stats and flags below */
	pthread_cond_t cv;
	struct feed_batch *fhead, *ftail;
	size_t fbytes;
	bool behind;			/* the feed dropped rows */
	int64_t behind_to;		/* the log head the sink last saw */
	bool stopping;
	struct engine_cmd *chead, *ctail;
	struct engine_stats stats;
	/* The saver thread: one save in flight at a time. */
	pthread_t saver;
	bool saver_started, saver_stop;
	pthread_cond_t saver_cv;
	struct engine_save *save_req, *save_done;

	/* Owned by the engine thread (ws[] changes under the write lock too). */
	struct store *store;
	int64_t applied;		/* every event up to here is applied */
	int64_t cp_seq;			/* the saved checkpoint */
	bool cp_soon;			/* a command changed the state */
	bool cp_retry;			/* the last save failed: retry at the next interval */
	bool saving;			/* a save is with the saver thread */
	bool clear_all;			/* the saved state is of another format: replace it */
	bool full_diff;			/* a save failed: compare every page, not just dirty ones */
	int64_t erased_max;		/* the newest erasure wiped from memory */
	double last_cp, cp_cost;
	struct engine_ws *ws;		/* sorted by id */
	size_t nws, ws_cap;
	struct buf hdr, hdr2;		/* scratch for snapshot headers */
	/* Erased profiles whose saved audience changes the next save deletes. */
	struct store_profile_ref *erased_pids;
	size_t nerased_pids;
	double last_tick;		/* audience windows were last checked (monotonic s) */
	int64_t clock_offset_us;	/* the test clock (engine_set_clock); atomic */
};

double engine_now(void);
/* The workspace, created (with an empty graph) if create; NULL otherwise when absent. */
struct engine_ws *engine_ws_find(struct engine *e, int64_t id, bool create);

/* Applies one stored event (a binary COPY tuple of the log). Never fails the caller: a
 * malformed row is logged and skipped. */
void engine_apply_tuple(struct engine *e, const char *tuple, size_t len);
/*
 * After the graph split old_profile: forgets its profile data and records
 * each of its events again on the part that now holds it (reading them
 * back from the log). Call with the write lock held.
 */
int engine_split_profiles(struct engine *e, struct engine_ws *w, uint64_t old_profile);
/* Reads and applies the log's events after e->applied up to target, for every workspace. */
int engine_catch_up(struct engine *e, int64_t target);

/* The event name audiences match: a track's name, else the call's ("page", ...). */
const char *engine_call_name(int call);
/*
 * Decodes a log tuple for a backfill: its workspace, seq, timestamp, the
 * name audiences match (name, 256 bytes) and its payload (pointing into
 * the tuple). WEFT_EINVAL for a malformed row.
 */
int engine_row_brief(const char *tuple, size_t len, int64_t *ws, int64_t *seq, int64_t *ts_us,
		     char name[256], const char **payload, size_t *payload_len);

/* audiences.c */
/* Loads the definitions into the spaces, restores their saved state, backfills what lacks one. */
int engine_audiences_load(struct engine *e);
/* Replays the log into w's pending aggregates (up to w->applied) and settles. */
int engine_audiences_backfill(struct engine *e, struct engine_ws *w, enum audience_cause cause);
/*
 * The replay of a backfill, without the settle: the log of w up to what
 * is applied goes into the pending aggregates of as (w->as, or a space
 * of a recompute), each event on the profile w's store recorded it on,
 * as at now_us. progress, if not NULL, is called every 4096 events with
 * how many of w's were read; *events (if not NULL) gets how many fed an
 * aggregate.
 */
int engine_audiences_replay(struct engine *e, struct engine_ws *w, struct audience_space *as,
			    int64_t now_us, void (*progress)(void *arg, int64_t done), void *arg,
			    uint64_t *events);
/*
 * A new space holding w's definitions among d[0..n) (store_defs_load),
 * installed as engine_audiences_load() installs them, every aggregate
 * pending: what a recompute fills from the log.
 */
struct audience_space *engine_audiences_space_new(struct engine *e, const struct engine_ws *w,
						  const struct store_def *d, size_t n);
/* Slides windows when the hour or day changed (at most once a second). */
void engine_audiences_tick(struct engine *e);
/* Records that profile pid of w was erased: its saved changes go at the next save. */
void engine_audiences_erased(struct engine *e, struct engine_ws *w, uint64_t pid);

/* offline.c */
/*
 * An engine without its thread, for a command (engine_free it, even on
 * failure: *out is always set): connected to url with the schema checked
 * and, unless other is NULL, holding the engine lock. While someone else
 * holds it, err says "a server (or <other>) holds the engine state ...".
 */
int engine_offline_connect(const char *url, const char *other, struct engine **out, char *err,
			   size_t errlen);
/*
 * Loads into a connected engine what its thread loads at start (the
 * checkpoint and state, rules, definitions, blocks, erasures), catches up
 * to the log's head and slides the audiences' windows to now. Writes
 * nothing. 0, or the error with err saying what failed.
 */
int engine_offline_load(struct engine *e, char *err, size_t errlen);

/* erase.c */
/* True if the event (seq, its identifiers) must not be applied: suppressed or erased. */
bool engine_ws_drops(const struct engine_ws *w, int64_t seq, const struct identity_ident *ids,
		     size_t n);
void engine_ws_suppress(struct engine_ws *w, const uint8_t key[16]);
/* Loads the suppression lists and the unfinished erasures (wiping them again). */
int engine_erasures_load(struct engine *e);
void engine_ws_release_filters(struct engine_ws *w);

/* state.c */
/* Loads the checkpoint and the saved state into e (empty when there is none). */
int engine_state_load(struct engine *e);
/* Saves every workspace's changed pages with the checkpoint e->applied, now. */
int engine_state_save(struct engine *e);
/*
 * The same in three steps, so that the writing runs on the saver thread
 * while the engine goes on: capture (engine thread: the changed pages are
 * copied, nothing is written), write (any thread, its own connection),
 * commit (engine thread: what was saved becomes the base of the next diff,
 * if the write succeeded).
 */
struct engine_save;
struct engine_save *engine_state_capture(struct engine *e, int *rc);
int engine_state_write(struct store *s, struct engine_save *sv);
void engine_state_commit(struct engine *e, struct engine_save *sv);
void engine_save_free(struct engine_save *sv);
int engine_save_result(const struct engine_save *sv);
double engine_save_seconds(const struct engine_save *sv);
/* Loads the workspaces' rules and blocked lists and applies them (splitting if needed). */
int engine_config_load(struct engine *e);
void engine_ws_release(struct engine_ws *w);

#endif
