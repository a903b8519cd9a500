/*
 * A workspace's audiences and computed traits at run time (audiences/space.c):
 * the definitions, each profile's computed-trait state, each audience's
 * members, and the record of every entry and exit not yet written to the
 * database. Owned by the engine thread like the profile store, and read by
 * other threads under the engine's read lock. Pure: no database, no clock
 * (every call is told what time it is), no threads.
 *
 * Aggregates. Every computed trait, and every event(...) condition of an
 * audience, is an aggregate: a computed-trait definition (audiences.h) kept
 * per profile. Two conditions that read the same events the same way (same
 * event, where(), window and aggregation) share one; an aggregate lives as
 * long as something uses it. A new aggregate starts pending: it has no
 * state until the caller replays the past into it (audience_space_backfill,
 * fed from the log) and calls audience_space_settle(), which evaluates
 * every audience that was waiting on it.
 *
 * Incremental evaluation. An event (audience_space_event) updates the
 * aggregates of its name and evaluates, for its profile only, the
 * audiences that depend on what changed: those aggregates, the traits the
 * event set, the audiences whose membership changed in turn (in dependency
 * order). A merge folds the absorbed profile's state into the survivor's
 * and evaluates the survivor; audience_space_tick() re-evaluates the
 * profiles whose windowed state a new hour or day may have changed.
 */
#ifndef AUDIENCES_SPACE_H
#define AUDIENCES_SPACE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audiences/audiences.h"
#include "lib/buf.h"
#include "profiles/profiles.h"

#define AUDIENCE_KEY_MAX 64		/* bytes of a key: [A-Za-z0-9_.-], a letter or digit first */
#define AUDIENCE_NAME_MAX 200		/* bytes of a display name */
#define AUDIENCE_SPACE_MAX_DEFS 500	/* computed traits and audiences, each, per workspace */

/* Why a membership changed (the cause column of audience_changes). */
enum audience_cause {
	AUDIENCE_CAUSE_EVENT,		/* an event of the profile */
	AUDIENCE_CAUSE_MERGE,		/* profiles merged (the absorbed one leaves) */
	AUDIENCE_CAUSE_SPLIT,		/* an identifier was blocked and the profile split */
	AUDIENCE_CAUSE_WINDOW,		/* time passed: a window slid */
	AUDIENCE_CAUSE_DEFINITION,	/* the audience, or something it uses, was defined or changed */
	AUDIENCE_CAUSE_RECOMPUTE,	/* a full recompute found it different */
};

const char *audience_cause_name(enum audience_cause c);

/* One entry or exit, kept until the engine saves it with a checkpoint. */
struct audience_change {
	int64_t audience_id;
	uint64_t profile_id;
	int64_t at_us;
	int64_t seq;			/* the event that caused it; 0 if none did */
	bool entered;
	enum audience_cause cause;
};

struct audience_space;

struct audience_space *audience_space_new(void);
void audience_space_free(struct audience_space *s);

/* ---- definitions ---- */

/*
 * A computed trait's definition document (docs/audiences.md, "Computed
 * traits"), validated:
 *   {"key": "orders_90d", "name": "Orders, 90 days", "kind": "count",
 *    "event": "Order Completed", "property": "total",
 *    "where": "property('total') > 100", "window": "90 days"}
 * kind is one of count, sum, avg, min, max, most_frequent, first, last,
 * unique_list, unique_count; property is required by every kind but count;
 * where and window are optional. Returns 0 and, in *canon, the document
 * in canonical form (malloc'd: members in that order, the where in
 * canonical text), or WEFT_EINVAL / WEFT_ETOOBIG with a message naming
 * the member at fault in err.
 */
int audience_ct_validate(const json_t *doc, char **canon, char *err, size_t errlen);

/* True when key is a valid key (for computed traits and audiences alike). */
bool audience_key_ok(const char *key);

/*
 * Installs (or replaces, by key) a computed trait or an audience. id is
 * the database's; doc a canonical computed-trait document, src an
 * audience definition. A reference to a computed trait or audience that
 * does not exist, or one that would make a cycle, is WEFT_EINVAL with a
 * message in err; WEFT_ETOOBIG past AUDIENCE_SPACE_MAX_DEFS. On success
 * any new aggregate is pending (see above), and the audience (or those
 * using the computed trait) will be evaluated by audience_space_settle().
 */
int audience_space_define_ct(struct audience_space *s, int64_t id, const char *doc,
			     char *err, size_t errlen);
int audience_space_define_audience(struct audience_space *s, int64_t id, const char *key,
				   const char *name, const char *src, char *err, size_t errlen);
/*
 * Removes one by key: WEFT_ENOTFOUND, or WEFT_ECONFLICT when an audience
 * still uses it (err names it). Removing an audience forgets its members
 * without recording exits.
 */
int audience_space_remove_ct(struct audience_space *s, const char *key, char *err, size_t errlen);
int audience_space_remove_audience(struct audience_space *s, const char *key, char *err,
				   size_t errlen);
/* The same checks as audience_space_define_audience(), leaving s as it was. */
int audience_space_check_audience(struct audience_space *s, const char *key,
				  const char *src, char *err, size_t errlen);

/* ---- filling new aggregates from the past ---- */

/* True when an aggregate is pending. */
bool audience_space_pending(const struct audience_space *s);
/* True when an event called name feeds a pending aggregate (backfill) or a live one (event). */
bool audience_space_wants(const struct audience_space *s, const char *name, bool pending);
/* Applies one past event of profile pid to the pending aggregates only. */
void audience_space_backfill(struct audience_space *s, uint64_t pid, int64_t ts_us,
			     const char *name, const json_t *properties, int64_t now_us);
/*
 * Ends the backfill: pending aggregates go live and every audience that
 * was waiting for one (or was defined since) is evaluated for every
 * profile of ps, recording changes with cause.
 */
void audience_space_settle(struct audience_space *s, const struct profile_store *ps,
			   int64_t now_us, enum audience_cause cause);

/* ---- the live path ---- */

/*
 * An event of profile pid (already recorded in ps): updates the live
 * aggregates of name and, if evaluate, evaluates the audiences that depend
 * on them or on the traits named in traits (an object, or NULL).
 */
void audience_space_event(struct audience_space *s, const struct profile_store *ps,
			  uint64_t pid, int64_t seq, int64_t ts_us, const char *name,
			  const json_t *properties, const json_t *traits, int64_t now_us,
			  bool evaluate);
/* absorbed joined survivor (after profile_store_merge): states fold, absorbed leaves. */
void audience_space_merge(struct audience_space *s, const struct profile_store *ps,
			  uint64_t survivor, uint64_t absorbed, int64_t seq, int64_t now_us);
/* Evaluates every audience for pid (after a split rebuilt it, say). */
void audience_space_evaluate(struct audience_space *s, const struct profile_store *ps,
			     uint64_t pid, int64_t seq, int64_t now_us, enum audience_cause cause);
/*
 * Drops pid's aggregate state (a split re-applies its events next). With
 * erase, also its memberships and its changes not yet taken, without
 * recording anything: the person is gone.
 */
void audience_space_forget(struct audience_space *s, uint64_t pid, bool erase);
/*
 * Time passed: when now_us is in another hour (or day) than the last call,
 * re-evaluates the audiences that read a window in hours (days) for every
 * profile with state in one (cause WINDOW). Returns how many profiles it
 * evaluated.
 */
size_t audience_space_tick(struct audience_space *s, const struct profile_store *ps,
			   int64_t now_us);

/* ---- changes ---- */

/* Moves the changes recorded so far to the caller (malloc'd, *n; NULL if none). */
struct audience_change *audience_space_take_changes(struct audience_space *s, size_t *n);
/* Gives back changes taken but not saved, ahead of newer ones (ownership returns). */
void audience_space_return_changes(struct audience_space *s, struct audience_change *c, size_t n);

/* ---- a full recompute ---- */

/*
 * s takes the aggregate states and memberships of from: a space holding
 * the same definitions, filled from the whole log (audience_space_backfill)
 * and settled, which a recompute compares s with. Each membership that
 * differs is recorded in s as an entry or exit with cause RECOMPUTE at
 * now_us (seq 0); from's own changes, everyone entering, are not taken,
 * and the changes s recorded before and not yet taken stay ahead of these.
 * What s has and from lacks (by what an aggregate computes, by an
 * audience's key and definition) keeps its state. from keeps s's old
 * states: free it afterwards.
 */
void audience_space_adopt(struct audience_space *s, struct audience_space *from, int64_t now_us);

/* ---- reading (under the engine's read lock, or on its thread) ---- */

struct audience_info {
	int64_t id;
	const char *key, *name, *definition;	/* owned by the space */
	uint64_t size;
	int64_t computed_us;		/* when it was last evaluated for every profile */
	bool pending;			/* waiting for a backfill */
};

size_t audience_space_audiences(const struct audience_space *s);
/* Audience i (0 <= i < audience_space_audiences()), sorted by key. */
void audience_space_audience(const struct audience_space *s, size_t i, struct audience_info *out);
/* The index of key, or -1. */
long audience_space_audience_find(const struct audience_space *s, const char *key);
bool audience_space_member(const struct audience_space *s, size_t i, uint64_t pid);
/* Members of audience i above after (0: from the start), ascending: at most max into out. */
size_t audience_space_members(const struct audience_space *s, size_t i, uint64_t after,
			      uint64_t *out, size_t max);

struct audience_ct_info {
	int64_t id;
	const char *key, *definition;	/* the canonical document */
	uint64_t profiles;		/* with state */
};

size_t audience_space_cts(const struct audience_space *s);
void audience_space_ct(const struct audience_space *s, size_t i, struct audience_ct_info *out);
long audience_space_ct_find(const struct audience_space *s, const char *key);
/* Computed trait i's value for pid at now_us (a new reference; its empty value if no state). */
json_t *audience_space_ct_value(const struct audience_space *s, size_t i, uint64_t pid,
				int64_t now_us);

/* pid's computed traits ({key: value}) and audiences ([keys]) as new references. */
void audience_space_profile(const struct audience_space *s, uint64_t pid, int64_t now_us,
			    json_t **computed, json_t **audiences);

/*
 * A preview evaluates a definition without saving it: begin installs it
 * as a hidden audience (never listed, never recorded; WEFT_EINVAL with err
 * for a bad one), the caller backfills what is pending, and end evaluates
 * it for every profile of ps, answers its size and its first max members
 * by profile id, and removes it. Both on the engine thread.
 */
int audience_space_preview_begin(struct audience_space *s, const char *src, char *err,
				 size_t errlen);
void audience_space_preview_end(struct audience_space *s, const struct profile_store *ps,
				int64_t now_us, uint64_t *size, uint64_t *sample, size_t max,
				size_t *nsample);

struct audience_space_stats {
	uint64_t aggregates, states, members;
	size_t bytes;
};

void audience_space_stats(const struct audience_space *s, struct audience_space_stats *out);

/* ---- snapshots ---- */

/* The aggregates' states and the memberships, as one section (appended to out). */
void audience_space_snapshot(const struct audience_space *s, struct buf *out);
/*
 * Restores what a snapshot holds for the definitions now installed:
 * aggregates by what they compute, audiences by id and definition. What
 * it lacks stays pending (aggregates) or is evaluated at the next settle
 * (audiences). WEFT_EINVAL for a damaged snapshot (nothing restored).
 */
int audience_space_restore(struct audience_space *s, const void *data, size_t len);

#endif
