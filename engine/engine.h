/*
 * The engine: one thread that applies committed events to each
 * workspace's derived state (the identity graph today) in log order, and
 * persists that state with its checkpoint (docs/internals.md, "The
 * engine").
 *
 * It is fed by the commit pipeline's sink (engine_sink): the rows of each
 * commit are copied into a bounded feed and the thread is woken. When the
 * feed is full, or a commit's rows never reached it, the engine reads the
 * missing range from the log instead; at start it loads its checkpoint
 * and replays the log after it the same way. The log is the truth.
 *
 * Other threads read the state under a read lock (engine_read_begin) and
 * change it only through commands run on the engine thread.
 */
#ifndef ENGINE_ENGINE_H
#define ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct event_base;
struct engine;
struct identity_graph;
struct identity_rules;

struct engine_config {
	const char *database_url;
	size_t feed_bytes;		/* the feed's capacity (0: 64 MiB) */
	int checkpoint_interval_ms;	/* at most this long between checkpoints (0: 10 s) */
};

struct engine *engine_new(const struct engine_config *cfg);
/* Starts the thread; it connects, loads and catches up in the background. */
int engine_start(struct engine *e);
/* The pipeline's sink (ingest_sink_fn), with the engine as arg. Never blocks for long. */
void engine_sink(void *arg, const struct store_log_row *rows, size_t n, int64_t last_seq);
/*
 * Applies what the feed holds, saves a final checkpoint and stops the
 * thread. Call after the pipeline has stopped, so nothing acknowledged is
 * left behind.
 */
void engine_stop(struct engine *e);
void engine_free(struct engine *e);

/* ---- reading the state from another thread ---- */

void engine_read_begin(struct engine *e);
void engine_read_end(struct engine *e);
/* The workspace's graph (NULL if it has none yet); only between read_begin and read_end. */
const struct identity_graph *engine_graph(struct engine *e, int64_t workspace_id);
struct profile_store;
/* The workspace's profiles (NULL if none yet); as engine_graph. */
const struct profile_store *engine_profiles(struct engine *e, int64_t workspace_id);

struct engine_stats {
	bool loaded;			/* the checkpoint is loaded */
	bool caught_up;			/* and the log replayed up to what the feed gave */
	bool ready;			/* loaded, and replayed once up to the head found at start */
	int64_t applied_seq;		/* every event up to here is applied */
	int64_t checkpoint_seq;
	uint64_t events_applied;
	uint64_t log_reads;		/* events read back from the log (catch-up) */
	uint64_t feed_overflows;
	uint64_t checkpoints, checkpoint_failures;
	uint64_t checkpoint_pages;	/* pages written by the last checkpoint */
	double checkpoint_seconds;	/* how long the last one took */
	/* Apply lag: from a commit's end to its events being applied. */
	uint64_t lag_buckets[8];	/* per bucket (engine_lag_bounds, then +Inf) */
	uint64_t lag_count;
	double lag_sum;
	/* Over every workspace. */
	uint64_t identifiers, profiles, merges;
	uint64_t profile_records;	/* profiles the profile store holds data of */
	uint64_t identity_bytes, profile_bytes;	/* memory in use */
	uint64_t audience_members, audience_states, audience_bytes;	/* audiences.h: space stats */
};

extern const double engine_lag_bounds[7];

void engine_stats(struct engine *e, struct engine_stats *out);
/* True once the state is loaded and the log replayed up to where it ended at start: before, reads would show the past. */
bool engine_ready(struct engine *e);

/* ---- commands ---- */

/*
 * A command runs on the engine thread (between events, with the engine's
 * own database connection) and is then handed back to base's thread,
 * where done() is called. run() takes the write lock itself around any
 * change (engine_write_begin/end) so readers wait only for that part.
 */
struct engine_cmd {
	void (*run)(struct engine *e, struct engine_cmd *c);
	void (*done)(struct engine_cmd *c);
	int result;		/* WEFT_ESHUTDOWN if the engine stopped before running it */
	struct event_base *base;
	struct engine_cmd *next;	/* the engine's link */
};

/*
 * Queues c; done() is called on base later, once: after run(), or without
 * it (result WEFT_ESHUTDOWN) if the engine stops first.
 */
void engine_submit(struct engine *e, struct engine_cmd *c, struct event_base *base);

/* For run(): the engine's connection (NULL while it has none), and the write lock. */
struct store *engine_store(struct engine *e);
void engine_write_begin(struct engine *e);
void engine_write_end(struct engine *e);
/* For run(): the workspace's graph, created empty if it has none. */
struct identity_graph *engine_graph_mut(struct engine *e, int64_t workspace_id);
struct identity_split;
/*
 * For run(): blocks (type, key) in the workspace's graph and repairs the
 * past (identity_graph_block), moving each event of a split profile, with
 * its traits and counters, to the part that holds it now. Takes the write
 * lock itself. WEFT_EUNAVAIL if the events could not be read back (the
 * block holds; the profiles are rebuilt on the next start or rebuild).
 */
int engine_block_identifier(struct engine *e, int64_t workspace_id, const char *type,
			    const uint8_t key[16], struct identity_split *out);
/* What engine_erase_profile() did. */
struct engine_erasure {
	int64_t erasure_id;
	uint8_t (*keys)[16];	/* the person's identifier keys (malloc'd; caller frees) */
	size_t nkeys;
};

/*
 * For run(): erases the profile profile_id resolves to (docs/profiles.md#erase):
 * records the erasure (and, with suppress, puts its identifier keys on the
 * suppression list) in the database first, then wipes it from the graph
 * and the profile store, and asks for a state save at once. Deleting its
 * rows from the log is the caller's job (store_erasure_delete_rows, then
 * store_erasure_finish, which waits for that save). Returns 0,
 * WEFT_ENOTFOUND, or the database's error (then nothing changed).
 */
int engine_erase_profile(struct engine *e, int64_t workspace_id, uint64_t profile_id,
			 bool suppress, int64_t key_id, struct engine_erasure *out);
/* For run(): every event up to here is applied. */
int64_t engine_applied_seq(struct engine *e);
/* For run(): asks for a checkpoint as soon as the command is done. */
void engine_checkpoint_soon(struct engine *e);

/* ---- audiences and computed traits (audiences.c) ---- */

struct audience_space;
/* The workspace's audiences (NULL if none yet); as engine_graph. */
const struct audience_space *engine_audiences(struct engine *e, int64_t workspace_id);
/* The time audiences are evaluated at, in microseconds since 1970 (any thread). */
int64_t engine_clock(struct engine *e);
/*
 * For run(): moves the engine's clock to now_us (tests of sliding
 * windows: docs/api.md, "Test clock") and slides the windows at once.
 */
void engine_clock_set(struct engine *e, int64_t now_us);
/*
 * For run(): creates (create) or replaces a computed trait or audience:
 * checks it against the workspace's others, saves it, installs it,
 * replays the log into what it needs and evaluates it for every profile.
 * Returns 0 (*id set), WEFT_EINVAL or WEFT_ETOOBIG (err says why),
 * WEFT_ECONFLICT (create: the key exists), WEFT_ENOTFOUND (replace: it
 * does not), or the database's error.
 */
int engine_audience_define(struct engine *e, int64_t workspace_id, enum store_def_kind kind,
			   const char *key, const char *name, const char *definition, bool create,
			   int64_t *id, char *err, size_t errlen);
/* For run(): removes one: 0, WEFT_ENOTFOUND, WEFT_ECONFLICT (err: what uses it). */
int engine_audience_remove(struct engine *e, int64_t workspace_id, enum store_def_kind kind,
			   const char *key, char *err, size_t errlen);
/* For run(): evaluates a definition without saving it: its size and first members. */
int engine_audience_preview(struct engine *e, int64_t workspace_id, const char *src,
			    uint64_t *size, uint64_t *sample, size_t max, size_t *nsample,
			    char *err, size_t errlen);

/* ---- rules as JSON (rules.c) ---- */

/*
 * Parses a workspace's identity rules document (docs/identity.md):
 *   {"types": {"<type>": {"priority": 1, "limit": 1, "window_days": 0}, ...},
 *    "max_merges": 100, "max_identifiers": 1000}
 * into rules on top of the defaults. Returns 0, or WEFT_EINVAL with a
 * message naming the member at fault in err.
 */
int engine_rules_parse(const char *json, size_t len, struct identity_rules **out,
		       char *err, size_t errlen);
/* The graph's rules as that document, every known type listed (malloc'd). */
char *engine_rules_format(const struct identity_graph *g);

/* ---- rebuild (rebuild.c) ---- */

/*
 * Recomputes the state of one workspace (NULL: every workspace) from the
 * log alone, under the current rules, and saves it. Refuses with
 * WEFT_ECONFLICT while a server's engine holds the state. progress, if
 * not NULL, is called now and then with events applied and the total.
 */
int engine_rebuild(const char *database_url, const char *workspace,
		   void (*progress)(void *arg, int64_t done, int64_t total), void *arg,
		   char *err, size_t errlen);

struct identity_stats;
/*
 * Loads the saved state and calls fn for every workspace with its graph's
 * digest and figures; *checkpoint_seq gets the checkpoint.
 */
int engine_saved_digests(const char *database_url,
			 void (*fn)(void *arg, int64_t workspace_id, const uint8_t digest[16],
				    const struct identity_stats *st),
			 void *arg, int64_t *checkpoint_seq, char *err, size_t errlen);

/* ---- offline (offline.c) ---- */

/*
 * Loads the engine's saved state in this process, without its thread and
 * without saving: the checkpoint, the rules and definitions, then the log
 * replayed up to its head, so what it holds is what a server would hold now.
 * With lock it holds the engine lock first (WEFT_ECONFLICT while a server
 * or another command holds it). Read it with engine_read_begin/end and the
 * engine_graph/engine_profiles/engine_audiences readers.
 */
int engine_offline_open(const char *database_url, bool lock, struct engine **out, char *err,
			size_t errlen);
void engine_offline_close(struct engine *e);

/* Profile ids a recompute report shows of each difference, at most. */
#define ENGINE_RECOMPUTE_SAMPLES 5

/* What a recompute found for one audience or computed trait. */
struct engine_recompute_report {
	int64_t workspace_id;
	bool audience;			/* an audience; false: a computed trait */
	const char *key;		/* valid during the call */
	bool differs;
	/* An audience: its members kept incrementally and recomputed. */
	uint64_t size, recomputed_size;
	uint64_t only_recomputed, only_incremental;	/* members of one set only */
	uint64_t sample_recomputed[ENGINE_RECOMPUTE_SAMPLES];	/* the first ones, ascending */
	uint64_t sample_incremental[ENGINE_RECOMPUTE_SAMPLES];
	size_t nsample_recomputed, nsample_incremental;
	/* A computed trait: the profiles compared, and those whose values differ. */
	uint64_t profiles, differ;
	uint64_t sample_differ[ENGINE_RECOMPUTE_SAMPLES];
	size_t nsample_differ;
};

/*
 * A full recompute of the audiences and computed traits of one workspace
 * (NULL: of every workspace), which must give what the incremental path
 * gives (docs/cli.md, "weft audiences recompute"). Holding the engine
 * lock (WEFT_ECONFLICT while a server holds it), it loads the state as
 * engine_offline_open() does, then for each workspace with definitions
 * fills a new space from the whole log, each event on the profile that
 * holds it now, settles it at the time the kept one is compared at, and
 * calls report for each audience and computed trait (by key). Unless
 * check, what differs is replaced by what was recomputed and saved with
 * the checkpoint, each entry and exit this implies recorded with cause
 * recompute; nothing differing, nothing is saved. progress, if not NULL,
 * is called now and then with the events replayed and their total.
 */
int engine_audiences_recompute(const char *database_url, const char *workspace, bool check,
			       void (*progress)(void *arg, int64_t done, int64_t total), void *arg,
			       void (*report)(void *arg, const struct engine_recompute_report *r),
			       void *rarg, char *err, size_t errlen);

#endif
