/*
 * Profiles: what Weft knows about each person the identity graph
 * resolved. One store per workspace, owned by the engine thread like the
 * graph, and saved with it (sections, like identity_graph_sections()).
 *
 * Per profile (by the identity graph's profile id):
 *  - traits: from identify traits and context.traits on any call, last
 *    write wins per top-level key by the event's corrected timestamp; null
 *    removes a trait, "" keeps it, an object is replaced whole;
 *  - counters: events by name (a track's event name; "identify", "page",
 *    "screen", "group", "alias" for the other calls), first and last seen;
 *  - accounts: the groups a group call linked it to;
 *  - its events' sequence numbers, for the event history.
 * Per identifier (by the graph's node number): the first event that
 * carried it, when, and when it was last seen. Per account: its traits.
 *
 * Nothing here is a jansson tree or a pointer per profile: names (traits,
 * events) are interned, and each profile's traits, counters and accounts
 * are one compact record in a slab arena, rewritten in place when it fits.
 * Trait values are kept as compact JSON text (lib/jsonw.h: reals in their
 * shortest form), already masked by ingest, so a reader can copy them
 * into a reply as they are.
 *
 * A merge (profile_store_merge) folds the absorbed profile into the
 * survivor: each trait keeps the newest value of either side, counters
 * add up, accounts join, and the survivor's event history includes the
 * absorbed profile's. Reads ask by the survivor's id.
 */
#ifndef PROFILES_PROFILES_H
#define PROFILES_PROFILES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct profile_store;

struct profile_store *profile_store_new(void);
void profile_store_free(struct profile_store *ps);

/* The call an event is (ingest's kinds, without batch). */
enum profile_call {
	PROFILE_TRACK, PROFILE_IDENTIFY, PROFILE_PAGE, PROFILE_SCREEN, PROFILE_GROUP,
	PROFILE_ALIAS,
};

/* One applied event, as the engine gives it after the identity graph matched it. */
struct profile_event {
	int64_t seq;
	int64_t ts_us;			/* corrected timestamp */
	enum profile_call call;
	const char *name;		/* a track's event name (NUL-terminated), else NULL */
	json_t *traits;			/* identify traits and context.traits merged (traits win); NULL: none */
	uint64_t profile_id;		/* the profile it belongs to; 0: none (nothing is kept) */
	/* A group call: the account (its group_id key) and the group's traits. */
	const uint8_t *account_key;	/* 16 bytes, or NULL */
	json_t *account_traits;
};

/*
 * Records the event on its profile. Returns 0, or WEFT_ETOOBIG when a
 * limit (docs/profiles.md: traits per profile, value size) stopped part
 * of it; what fits is kept either way.
 */
int profile_store_apply(struct profile_store *ps, const struct profile_event *ev);

/* Folds profile absorbed into survivor (the identity graph merged them). */
void profile_store_merge(struct profile_store *ps, uint64_t survivor, uint64_t absorbed);

/* Records that identifier node (the identity graph's number) was on event seq at ts_us. */
void profile_store_saw_identifier(struct profile_store *ps, uint32_t node, int64_t seq,
				  int64_t ts_us);

/*
 * Forgets profile_id entirely (its traits, counters, accounts and event
 * history, and those of the profiles merged into it), returning the
 * sequence numbers of its events (malloc'd, *n of them, ascending) so that
 * the caller can re-attribute them (a split) or delete them (an erase).
 */
int64_t *profile_store_forget(struct profile_store *ps, uint64_t profile_id, size_t *n);

/* Forgets identifier node's first and last seen (an erase). */
void profile_store_forget_identifier(struct profile_store *ps, uint32_t node);

/* ---- reading (under the engine's read lock) ---- */

struct profile_trait {
	const char *name;
	const char *json;		/* the value as compact JSON text */
	size_t json_len;
	int64_t ts_us;			/* the event that set it */
};

struct profile_counter {
	const char *name;
	uint64_t count;
};

struct profile_account {
	uint8_t key[16];		/* the group_id's identifier key */
	struct profile_trait *traits;
	size_t ntraits;
};

/* A copy of one profile, safe to use after the lock is released. */
struct profile_view {
	uint64_t profile_id;
	int64_t first_seen_us, last_seen_us;	/* 0 if it has no events yet */
	uint64_t events;
	struct profile_trait *traits;		/* by name */
	size_t ntraits;
	struct profile_counter *counters;	/* by name */
	size_t ncounters;
	struct profile_account *accounts;
	size_t naccounts;
	struct buf strings;			/* owns every string above */
};

/* Fills v with profile_id (a survivor). WEFT_ENOTFOUND if the store has nothing of it. */
int profile_store_view(const struct profile_store *ps, uint64_t profile_id,
		       struct profile_view *v);
/*
 * The same, for what a traits request needs: profile_id, first and last
 * seen, events and the traits (sorted by name); counters and accounts are
 * left empty, sparing their decoding and sorting.
 */
int profile_store_view_traits(const struct profile_store *ps, uint64_t profile_id,
			      struct profile_view *v);
void profile_view_release(struct profile_view *v);

/*
 * The sequence numbers of profile_id's events (those of profiles merged
 * into it included), newest first: at most max of them, all below
 * before_seq (0: no bound) and above after_seq. Returns how many.
 */
size_t profile_store_events(const struct profile_store *ps, uint64_t profile_id,
			    int64_t before_seq, int64_t after_seq, int64_t *out, size_t max);

/* Every event of profile_id's merged set, in no order (malloc'd, *n of them; NULL if none). */
int64_t *profile_store_events_all(const struct profile_store *ps, uint64_t profile_id, size_t *n);

/* True when the store has a record of profile pid. */
bool profile_store_has(const struct profile_store *ps, uint64_t pid);
/* The smallest profile id above after that the store has a record of; 0 if none. */
uint64_t profile_store_next(const struct profile_store *ps, uint64_t after);

struct profile_ident_seen {
	int64_t first_seq;		/* 0: never recorded */
	int64_t first_us, last_us;
};

void profile_store_identifier(const struct profile_store *ps, uint32_t node,
			      struct profile_ident_seen *out);

struct profile_store_stats {
	uint64_t profiles;		/* with a record */
	uint64_t traits, events;
	size_t bytes;			/* memory in use */
};

void profile_store_stats(const struct profile_store *ps, struct profile_store_stats *out);

/* ---- snapshots (as identity_graph_sections) ---- */

#define PROFILE_SECTIONS 9
#define PROFILE_SNAPSHOT_VERSION 1

struct profile_section {
	const void *data;
	size_t bytes;
};

void profile_store_sections(const struct profile_store *ps, struct buf *hdr,
			    struct profile_section out[PROFILE_SECTIONS]);

/*
 * Which pages (of PROFILE_PAGE_BYTES) of section changed since the last
 * profile_store_clean(): a bit per page, *npages of them (pages past that
 * are unchanged, except past the section's length at that clean). NULL
 * for a section not tracked, whose pages must all be compared. The heap
 * and the identifiers' first/last seen are tracked: the sections that are
 * big and change at random.
 */
#define PROFILE_PAGE_BYTES 65536
const uint64_t *profile_store_dirty(const struct profile_store *ps, int section, size_t *npages);
void profile_store_clean(struct profile_store *ps);
int profile_store_restore(const struct profile_section in[PROFILE_SECTIONS],
			  struct profile_store **out);

#endif
