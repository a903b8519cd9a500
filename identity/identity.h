/*
 * Identity: the in-memory identity graph. It decides which identifiers
 * (user ids, anonymous ids, emails, device ids, custom ids) belong to the
 * same person, following Segment Unify's matching rules, and keeps one
 * profile per person. The engine thread owns a graph and applies committed
 * events to it in log order (docs/internals.md); nothing here locks, so a
 * graph must only be used from one thread at a time.
 *
 * An identifier is a (type, 128-bit key) pair. Keys are the keyed hashes
 * privacy/ computes, so they are uniform and never raw values. Types are
 * small strings interned to integers per graph.
 *
 * Matching (identity_graph_apply), exactly as Unify does it:
 *  - find the profiles that hold any of the event's identifiers;
 *  - none: a new profile with them; one: add the new ones to it; several:
 *    merge them into one;
 *  - whenever that would break a limit (a type's number of distinct values
 *    per profile, optionally counting only values seen within a window of
 *    days before the event's timestamp), drop the event's lowest-priority
 *    identifier and match again;
 *  - the event belongs to the profile the final match gives, or to none if
 *    every identifier was dropped or blocked.
 * Caps stop runaway profiles: a merge that would take a profile past the
 * merge cap or the identifier cap does not happen, nor is any of the
 * event's new identifiers added then; an identifier that would take a
 * profile past the identifier cap is not added. The event still attaches,
 * to the profile its highest-priority known identifier points at.
 *
 * Profile ids are 1, 2, 3... in order of creation and stable: a merge keeps
 * the oldest (smallest) id, and an absorbed id resolves to the survivor from
 * then on. Applying the same events in the same order gives the same graph,
 * bit for bit (identity_graph_digest()).
 *
 * Everything is explained: every merge, refused merge, dropped or blocked
 * identifier and group link is recorded with the event that caused it (see
 * struct identity_explanation). The graph also keeps, per pair of
 * identifiers seen on the same event, a link (first event, count): the
 * evidence a later split needs.
 *
 * Cost (bench/identity_mem.c, 2-20 million identifiers of web and app
 * traffic): about 58 bytes per identifier, everything above included, and
 * 1.3-1.6 million events per second on one core with
 * identity_graph_apply_batch().
 */
#ifndef IDENTITY_IDENTITY_H
#define IDENTITY_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDENTITY_KEY_BYTES 16

/* Longest type name, in bytes (ingest lower-cases and bounds custom types to this). */
#define IDENTITY_TYPE_NAME_MAX 63
/* Most types one set of rules (one workspace) can hold. */
#define IDENTITY_TYPES_MAX 4096
/* Most identifiers one event may carry (ingest keeps at most 64). */
#define IDENTITY_EVENT_IDS_MAX 256
/* Largest enforceable limit; 0 means no limit. */
#define IDENTITY_LIMIT_MAX 65534
/* Longest limit window, in days (100 years). */
#define IDENTITY_WINDOW_MAX_DAYS 36600
/* Most identifiers one graph holds (one workspace), and the largest identifier cap. */
#define IDENTITY_NODES_MAX ((1u << 28) - 1)
/* Event sequence numbers must be below this (links keep 48 bits of them). */
#define IDENTITY_SEQ_LIMIT (1LL << 48)

/*
 * The built-in types, interned in this order by identity_rules_new(), so
 * their ids are these constants in every set of rules and every graph.
 * Default priority (1 is the highest) and limit:
 *
 *   1 user_id 1       5 android.id 5       9 android.push_token 5
 *   2 email 5         6 ios.idfa 5        10 anonymous_id 5
 *   3 phone 5         7 android.idfa 5
 *   4 ios.id 5        8 ios.push_token 5
 *
 * Stable, person-level identifiers come first, then device identifiers,
 * then the anonymous id, which is the one browsers and shared devices most
 * often carry across people, so the first dropped when a limit is hit.
 * A type first seen later (a custom type from context.externalIds) gets the
 * next priority after every type known then, in order of first appearance,
 * and limit 5. group_id is not an identifier: it records which accounts a
 * profile belongs to and never matches or merges.
 */
enum identity_type_builtin {
	IDENTITY_TYPE_USER_ID,
	IDENTITY_TYPE_EMAIL,
	IDENTITY_TYPE_PHONE,
	IDENTITY_TYPE_IOS_ID,
	IDENTITY_TYPE_ANDROID_ID,
	IDENTITY_TYPE_IOS_IDFA,
	IDENTITY_TYPE_ANDROID_IDFA,
	IDENTITY_TYPE_IOS_PUSH_TOKEN,
	IDENTITY_TYPE_ANDROID_PUSH_TOKEN,
	IDENTITY_TYPE_ANONYMOUS_ID,
	IDENTITY_TYPE_GROUP_ID,
	IDENTITY_TYPE_BUILTIN_COUNT
};

/* "No type", where a record has no limit type. */
#define IDENTITY_TYPE_NONE 0xffff

/* ---- rules ---- */

/*
 * A workspace's rules: per type a priority, a limit and an optional window;
 * the blocked keys; the caps. A graph copies the rules it is created with,
 * so the caller may change or free them afterwards without affecting it.
 */
struct identity_rules;

/* Segment's defaults (above), caps 100 merges and 1,000 identifiers. */
struct identity_rules *identity_rules_new(void);
void identity_rules_free(struct identity_rules *r);

/*
 * The id of type name (NUL-terminated, 1..IDENTITY_TYPE_NAME_MAX bytes),
 * interning it with the default rule if it is new. Returns the id (>= 0),
 * WEFT_EINVAL for a bad name or WEFT_ETOOBIG past IDENTITY_TYPES_MAX types.
 */
int identity_rules_type(struct identity_rules *r, const char *name);

/*
 * Sets type's limit: at most limit distinct values per profile (0: no
 * limit). With window_days > 0, only values last seen within that many
 * days before the event count ("5 within 365 days"): a value counts if the
 * (UTC) day of its latest event is at least the event's day minus
 * window_days, and the values on the event itself always count. Interns
 * type if new. Returns 0, or WEFT_EINVAL for a limit above
 * IDENTITY_LIMIT_MAX, a window above IDENTITY_WINDOW_MAX_DAYS, group_id, or
 * a bad name.
 */
int identity_rules_set_limit(struct identity_rules *r, const char *type,
			     uint32_t limit, uint32_t window_days);

/*
 * Sets type's priority (1 is the highest; types of equal priority rank in
 * the order they were interned). Interns type if new. Returns 0 or
 * WEFT_EINVAL (priority 0, a bad name).
 */
int identity_rules_set_priority(struct identity_rules *r, const char *type,
				uint32_t priority);

/*
 * Sets the caps: the most profiles that may be merged into one (counting
 * those merged into it earlier, transitively) and the most identifiers one
 * profile may hold (1..IDENTITY_NODES_MAX). Returns 0 or WEFT_EINVAL.
 */
int identity_rules_set_caps(struct identity_rules *r, uint32_t max_merges,
			    uint32_t max_identifiers);

/*
 * Blocks the identifier (type, key): it never becomes an identifier and is
 * ignored for matching. This is the workspace's list; ingest flags the
 * default blocked values on each event itself (identity_ident.blocked).
 * Interns type if new. Returns 0 or WEFT_EINVAL (bad name).
 */
int identity_rules_block(struct identity_rules *r, const char *type,
			 const uint8_t key[IDENTITY_KEY_BYTES]);

/* ---- the graph ---- */

struct identity_graph;

/* A graph with a copy of rules (see struct identity_rules). */
struct identity_graph *identity_graph_new(const struct identity_rules *r);
void identity_graph_free(struct identity_graph *g);

/*
 * The id of type name in this graph, interning it (with the default rule:
 * next priority, limit 5) if it is new. Same returns as identity_rules_type().
 * The engine interns types in log order, so ids are deterministic too.
 */
int identity_graph_type(struct identity_graph *g, const char *name);
/*
 * True if name may name a type in rules and requests: 1 to
 * IDENTITY_TYPE_NAME_MAX characters of a-z, 0-9, '_', '.', '-' (the form
 * ingest gives identifier types).
 */
bool identity_type_name_ok(const char *name);

/* The id of type name without interning it: WEFT_ENOTFOUND if the graph never saw it. */
int identity_graph_type_find(const struct identity_graph *g, const char *name);
/* The name of type id, or NULL if there is no such type. */
const char *identity_graph_type_name(const struct identity_graph *g, uint16_t type);

/* One identifier on an event. */
struct identity_ident {
	uint8_t key[IDENTITY_KEY_BYTES];
	uint16_t type;		/* from identity_graph_type() */
	bool previous;		/* an alias's previousId (as user_id and as anonymous_id) */
	bool blocked;		/* a blocked value (ingest's default list): never an identifier */
};

/* One event, as the engine gives it to the graph. Nothing is kept of it but copies. */
struct identity_event_ids {
	const struct identity_ident *ids;	/* n of them, in the event's order */
	size_t n;
	int64_t seq;		/* log sequence number, 0..IDENTITY_SEQ_LIMIT-1 */
	int64_t ts_us;		/* event timestamp (corrected), microseconds since 1970 */
	uint64_t ref;		/* caller's opaque reference to the event, kept in explanations */
	bool alias;		/* an alias call: merges allowed by it say so */
};

/*
 * Applies one event: matches its identifiers, creating, extending or
 * merging profiles, and sets *profile_id to the profile the event belongs
 * to (0 if none). Identifiers repeated on the event count once. For an
 * alias, the previousId resolves to the user_id if that is known (or on the
 * event as userId), else to the anonymous_id; the other form is ignored
 * (an unknown previousId becomes an anonymous_id). Returns 0, WEFT_EINVAL
 * (more than IDENTITY_EVENT_IDS_MAX identifiers, an unknown type, seq out of
 * range) or WEFT_ETOOBIG (the graph is full); on error nothing changed.
 */
int identity_graph_apply(struct identity_graph *g, const struct identity_event_ids *ev,
			 uint64_t *profile_id);

/*
 * Applies evs[0..n) in order, exactly as n calls of identity_graph_apply()
 * would, setting profile_ids[i] for each. It is faster: while applying one
 * event it prefetches what the next few will touch, so the cache misses of
 * a large graph overlap instead of following one another. Stops at the
 * first event that fails, returning its error; *applied says how many were
 * applied (all n on success).
 */
int identity_graph_apply_batch(struct identity_graph *g, const struct identity_event_ids *evs,
			       size_t n, uint64_t *profile_ids, size_t *applied);

/*
 * The profiles the last identity_graph_apply() merged into the event's
 * profile (absorbed ids, oldest first is not promised), valid until the
 * graph next changes. Returns how many.
 */
size_t identity_graph_last_absorbed(const struct identity_graph *g, const uint32_t **pids);

/* The node number of identifier (type, key), 0 if the graph has none: per-identifier data kept elsewhere is indexed by it. */
uint32_t identity_graph_node(const struct identity_graph *g, uint16_t type,
			     const uint8_t key[IDENTITY_KEY_BYTES]);

/* The profile holding (type, key), as it is now; 0 if none does. */
uint64_t identity_graph_lookup(const struct identity_graph *g, uint16_t type,
			       const uint8_t key[IDENTITY_KEY_BYTES]);

/*
 * The profile profile_id is now: itself, or the survivor of the merges that
 * absorbed it. 0 if no such profile was ever created.
 */
uint64_t identity_graph_resolve(const struct identity_graph *g, uint64_t profile_id);

/*
 * XXH3-128 of a canonical serialisation of the graph: for every identifier,
 * sorted by key then type name, its key, type name and profile id. Equal
 * graphs (the same events applied in the same order) give equal digests;
 * type ids and memory layout do not enter it.
 */
void identity_graph_digest(const struct identity_graph *g, uint8_t out[16]);

struct identity_stats {
	uint64_t identifiers;		/* in the graph: not counting those a split or an erasure took out */
	uint64_t profiles;		/* live: not absorbed */
	uint64_t profiles_created;	/* the last profile id */
	uint64_t merges;		/* profiles absorbed */
	uint64_t links;			/* distinct pairs of identifiers seen together */
	uint64_t explanations;		/* records */
	uint64_t types;
	/*
	 * Memory in use: every array up to its length, every hash table whole.
	 * Arrays grow by half at a time, and the big ones are mapped so that
	 * the unused tail is never touched, so this is what the graph makes
	 * resident (give or take the last huge page of each array);
	 * bytes_reserved counts every array's full capacity.
	 */
	size_t bytes;
	size_t bytes_reserved;
};

void identity_graph_stats(const struct identity_graph *g, struct identity_stats *out);

/* ---- a profile's identifiers ---- */

struct identity_ident_info {
	uint8_t key[IDENTITY_KEY_BYTES];
	uint32_t node;		/* its node number (identity_graph_node) */
	uint16_t type;
	uint16_t last_seen_day;	/* (UTC) day of the latest event it was on, days since 1970 */
};

/*
 * Walks the identifiers of the profile profile_id resolves to. The iterator
 * borrows the graph: it is valid until the graph is next changed, and needs
 * no release. The order is the graph's own (deterministic, not sorted).
 */
struct identity_ids_iter {
	const struct identity_graph *g;
	uint32_t first, next;	/* nodes; next 0 when done */
};

void identity_ids_iter_init(struct identity_ids_iter *it, const struct identity_graph *g,
			    uint64_t profile_id);
bool identity_ids_iter_next(struct identity_ids_iter *it, struct identity_ident_info *out);

/* ---- explanations ---- */

enum identity_expl_kind {
	IDENTITY_EXPL_MERGE = 1,	/* other_id was merged into profile_id */
	IDENTITY_EXPL_MERGE_REFUSED,	/* the event linked other_id, but reason stopped the merge */
	IDENTITY_EXPL_DROPPED,		/* the identifier was dropped from the event, not mapped */
	IDENTITY_EXPL_BLOCKED,		/* the identifier is a blocked value, ignored */
	IDENTITY_EXPL_GROUP,		/* a group call linked the profile to the account (key) */
	IDENTITY_EXPL_SPLIT,		/* other_id was split after the identifier was blocked;
					   profile_id is one of the parts */
};

enum identity_expl_reason {
	IDENTITY_REASON_SHARED_IDENTIFIER = 1,	/* merge: the event carried identifiers of both */
	IDENTITY_REASON_ALIAS,			/* merge: an alias call linked them */
	IDENTITY_REASON_LIMIT,			/* limit_type's limit (limit, window_days) would break */
	IDENTITY_REASON_MERGE_CAP,		/* the merge cap (limit) would be passed */
	IDENTITY_REASON_IDENTIFIER_CAP,		/* the identifier cap (limit) would be passed */
	IDENTITY_REASON_BLOCKED_VALUE,		/* flagged blocked on the event (ingest's list) */
	IDENTITY_REASON_BLOCKED_KEY,		/* on the workspace's blocked list */
	IDENTITY_REASON_GROUP_CALL,		/* group: the event was a group call */
};

/*
 * One explanation. Merges are recorded once each. Refusals, drops, blocks
 * and group links are recorded once per profile and identical cause, with
 * the first event and a count of the events since, so a noisy identifier
 * costs one record, not one per event.
 */
struct identity_explanation {
	enum identity_expl_kind kind;
	enum identity_expl_reason reason;
	uint64_t profile_id;	/* the profile it is filed under, as it was then */
	uint64_t other_id;	/* merges and refused merges: the other profile; else 0 */
	uint16_t type;		/* the identifier: linking (merge), dropped, blocked, or the group */
	uint8_t key[IDENTITY_KEY_BYTES];
	uint16_t limit_type;	/* LIMIT: the type whose limit stopped it; merges: the
				   linking type, whose rule allowed it; else IDENTITY_TYPE_NONE */
	uint32_t limit;		/* that limit (0: none) or, for caps, the cap */
	uint32_t window_days;	/* that limit's window, 0 if none */
	int64_t seq;		/* the (first) event */
	uint64_t ref;
	uint32_t count;		/* events it happened on */
};

/*
 * Walks the explanations of the profile profile_id resolves to, including
 * the history of every profile merged into it, oldest first. profile_id 0
 * walks the records of events that belonged to no profile. The iterator
 * borrows the graph (valid until it next changes) and holds memory: release
 * it with identity_expl_iter_release().
 */
struct identity_expl_iter {
	const struct identity_graph *g;
	uint32_t *recs;		/* record numbers, oldest first */
	size_t n, pos;
};

void identity_expl_iter_init(struct identity_expl_iter *it, const struct identity_graph *g,
			     uint64_t profile_id);
bool identity_expl_iter_next(struct identity_expl_iter *it, struct identity_explanation *out);
void identity_expl_iter_release(struct identity_expl_iter *it);

/* ---- links: the evidence a split will use ---- */

/*
 * The link between two identifiers of a profile: the first event that
 * carried both (as the event's highest-priority kept identifier and
 * another one) and how many did (saturating at 255: "many"). The two are
 * given as (type, key) of each; the order is canonical, not meaningful.
 * Every identifier of a profile is linked to it this way, so a profile's
 * links span it (up to 2^28 - 1 links per graph; past that, links already
 * recorded are still counted but new ones are not kept).
 */
struct identity_link {
	uint16_t type_a, type_b;
	uint8_t key_a[IDENTITY_KEY_BYTES], key_b[IDENTITY_KEY_BYTES];
	int64_t first_seq;
	uint32_t count;
};

/*
 * Walks every link of the graph in order of creation (not per profile: a
 * split reads those of the profile it splits). Borrows the graph; no
 * release needed.
 */
struct identity_links_iter {
	const struct identity_graph *g;
	uint32_t next;
};

void identity_links_iter_init(struct identity_links_iter *it, const struct identity_graph *g);
bool identity_links_iter_next(struct identity_links_iter *it, struct identity_link *out);

/* ---- retroactive unmerge ---- */

struct identity_split {
	uint64_t profile_id;	/* the profile that held the identifier; 0 if none did */
	uint32_t parts;		/* the profiles it became (0: it held nothing else) */
	uint32_t created;	/* of those, how many got a new id */
};

/*
 * Blocks (type, key) in this graph from now on, as identity_rules_block()
 * does, and repairs the past: if a profile holds the identifier, it is
 * taken out and the profile is split into the parts its remaining links
 * make, replayed in log order under the current rules (split.c says how).
 * Each part keeps the id of the oldest profile whose first identifier it
 * holds (so the part holding the oldest profile keeps that id) or gets a
 * new one. A split record (IDENTITY_EXPL_SPLIT, sequence seq) is filed
 * under every part. Returns 0 (out says what happened) or WEFT_EINVAL (an
 * unknown type, seq out of range).
 */
int identity_graph_block(struct identity_graph *g, uint16_t type,
			 const uint8_t key[IDENTITY_KEY_BYTES], int64_t seq,
			 struct identity_split *out);

/*
 * Applies new rules from now on: every type of r (interned in the graph if
 * new) takes r's priority, limit and window; r's caps replace the graph's;
 * r's blocked keys are added. Types only the graph knows keep theirs.
 * Profiles already built are not changed (a rebuild applies rules to the
 * past). Explanations name a limit by its type and read its value from
 * the rules in force when they are read.
 * Returns 0 or WEFT_ETOOBIG (too many types).
 */
int identity_graph_set_rules(struct identity_graph *g, const struct identity_rules *r);

/* Reads type's rule into the out parameters; WEFT_EINVAL for no such type. */
int identity_graph_rule(const struct identity_graph *g, uint16_t type, uint32_t *priority,
			uint32_t *limit, uint32_t *window_days);

/* The graph's caps (identity_rules_set_caps). */
void identity_graph_caps(const struct identity_graph *g, uint32_t *max_merges,
			 uint32_t *max_identifiers);

/* ---- erasure ---- */

/*
 * Erases the profile profile_id resolves to (a person asked to be
 * forgotten): every identifier it holds leaves the graph, its key wiped
 * from the node and from every explanation that names it; the profile and
 * those merged into it resolve to no profile from then on. The same
 * values seen again later make a new profile, unless the caller
 * suppresses them. fn (may be NULL) is called first with each identifier
 * (type, key, node). Returns how many identifiers went, or WEFT_ENOTFOUND.
 */
int identity_graph_erase(struct identity_graph *g, uint64_t profile_id,
			 void (*fn)(void *arg, uint16_t type, const uint8_t *key, uint32_t node),
			 void *arg);

/* ---- snapshots ---- */

#include "lib/buf.h"

#define IDENTITY_SECTIONS 13
#define IDENTITY_SNAPSHOT_VERSION 3

struct identity_section {
	const void *data;
	size_t bytes;
};

/*
 * The graph as IDENTITY_SECTIONS byte ranges that identity_graph_restore()
 * turns back into the same graph. Section 0 is written into hdr; the
 * others point into the graph and are valid until it next changes.
 */
void identity_graph_sections(const struct identity_graph *g, struct buf *hdr,
			     struct identity_section out[IDENTITY_SECTIONS]);

/* A new graph from sections; WEFT_EINVAL if they are not a snapshot of this version. */
int identity_graph_restore(const struct identity_section in[IDENTITY_SECTIONS],
			   struct identity_graph **out);

#endif
