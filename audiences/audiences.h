/*
 * The audience condition language: a small text language, close to
 * Segment's audience query language, in which an audience says who belongs
 * to it (docs/audiences.md has the grammar, the type rules and the limits):
 *
 *   trait('plan') = 'pro' and
 *   event('Order Completed').where(property('total') > 100).within(30 days).count() >= 3
 *
 * This file is the front end: audience_parse() reads and type-checks a
 * definition into an expression, which later stages walk (the evaluator
 * against a profile, the dependency analysis of incremental evaluation)
 * and which prints back to one canonical text. Evaluation is not here.
 *
 * An expression is one allocation: its nodes are a flat array indexed by
 * number, every kid has a smaller number than its parent (so the root is
 * the last node and a loop over ids in order visits kids first), and its
 * strings are interned in it, so two nodes naming the same trait have the
 * same string id. Nothing in it points outside it; it is immutable once
 * parsed and may be read from any thread.
 */
#ifndef AUDIENCES_AUDIENCES_H
#define AUDIENCES_AUDIENCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Limits (docs/audiences.md, "Limits"). Going past one is WEFT_ETOOBIG. */
#define AUDIENCE_MAX_SOURCE 65536		/* bytes of definition text */
#define AUDIENCE_MAX_DEPTH 64		/* parentheses, not and where() inside each other */
#define AUDIENCE_MAX_LIST 1000		/* values in one in (...) list */
#define AUDIENCE_MAX_NAME 255		/* bytes of a trait, event, property, computed trait or audience name */
#define AUDIENCE_MAX_STRING 4096		/* bytes of a string value, after unescaping */
#define AUDIENCE_MAX_NUMBER 40		/* characters of a number, sign and point included */
/* How far back within() reaches; past it is WEFT_EINVAL like any bad value. */
#define AUDIENCE_MAX_WITHIN_DAYS 3650
#define AUDIENCE_MAX_WITHIN_HOURS (AUDIENCE_MAX_WITHIN_DAYS * 24)

/* No node, no literal, no string. */
#define AUDIENCE_NONE UINT32_MAX

enum audience_kind {
	AUDIENCE_OR,		/* nkids >= 2 kids; true when any is */
	AUDIENCE_AND,	/* nkids >= 2 kids; true when all are */
	AUDIENCE_NOT,	/* one kid */
	AUDIENCE_TRAIT,	/* op on the profile's trait `name` */
	AUDIENCE_COMPUTED,	/* op on the computed trait `name` */
	AUDIENCE_PROPERTY,	/* op on the event property `name`; only inside an AUDIENCE_EVENT's where */
	AUDIENCE_EVENT,	/* the profile's events called `name`: where, window, aggregation, op */
	AUDIENCE_AUDIENCE,	/* membership of the audience whose key is `name` */
};

enum audience_op {
	AUDIENCE_EQ, AUDIENCE_NE, AUDIENCE_LT, AUDIENCE_LE, AUDIENCE_GT, AUDIENCE_GE,	/* with one literal */
	AUDIENCE_IN,		/* equal to one of nlit literals, all of one type */
	AUDIENCE_EXISTS,	/* present and not null; an event: happened at least once */
	AUDIENCE_CONTAINS,	/* a string holding the literal, or an array with it as an element */
};

enum audience_agg {
	AUDIENCE_AGG_NONE,	/* the event's op is AUDIENCE_EXISTS */
	AUDIENCE_AGG_COUNT,
	AUDIENCE_AGG_SUM,	/* of the number property agg_prop */
	AUDIENCE_AGG_AVG,
	AUDIENCE_AGG_MIN,
	AUDIENCE_AGG_MAX,
};

enum audience_window {
	AUDIENCE_WINDOW_ALL,		/* every event */
	AUDIENCE_WINDOW_WITHIN,	/* the last `within` days or hours before evaluation */
	AUDIENCE_WINDOW_BETWEEN,	/* from_us <= timestamp < to_us */
};

enum audience_unit { AUDIENCE_UNIT_DAYS, AUDIENCE_UNIT_HOURS };

/* The type of a literal, which is the type of the comparison it is in. */
enum audience_type { AUDIENCE_TYPE_STRING, AUDIENCE_TYPE_NUMBER, AUDIENCE_TYPE_BOOL };

struct audience_lit {
	enum audience_type type;
	bool boolean;		/* AUDIENCE_TYPE_BOOL */
	double number;		/* AUDIENCE_TYPE_NUMBER */
	uint32_t str;		/* string id: a string's value, a number's canonical text */
};

/*
 * One node. Fields not listed for a kind are 0 or AUDIENCE_NONE. Tests on
 * values (TRAIT, COMPUTED, PROPERTY) use op and the literals; EVENT uses
 * op and at most one number literal after its aggregation (op AUDIENCE_EXISTS
 * and no literal when agg is AUDIENCE_AGG_NONE).
 */
struct audience_node {
	enum audience_kind kind;
	enum audience_op op;		/* TRAIT, COMPUTED, PROPERTY, EVENT */
	uint32_t name;		/* string id: trait, computed trait, property, event or audience */
	uint32_t kid;		/* OR, AND, NOT: the first kid; EVENT: its where() or AUDIENCE_NONE */
	uint32_t next;		/* the next kid of the same parent, or AUDIENCE_NONE */
	uint32_t nkids;
	uint32_t lit;		/* the first literal (audience_expr_lit), or AUDIENCE_NONE */
	uint32_t nlit;
	/* AUDIENCE_EVENT only */
	enum audience_agg agg;
	uint32_t agg_prop;	/* SUM, AVG, MIN, MAX: the property's string id */
	enum audience_window window;
	enum audience_unit unit;	/* WITHIN */
	uint32_t within;	/* WITHIN: how many units, 1 to the unit's maximum */
	int64_t span_us;	/* WITHIN: the window's length in microseconds */
	int64_t from_us;	/* BETWEEN: microseconds since 1970-01-01T00:00:00Z */
	int64_t to_us;
	uint32_t from_str;	/* BETWEEN: the dates as written, string ids */
	uint32_t to_str;
	/* Where the node starts in the source, for later stages' messages. */
	uint32_t line, column;
};

/*
 * A parse or type error. line and column are 1-based; the column counts
 * characters (UTF-8 code points, a tab is one), not bytes. message is the
 * whole text to show a user, position included:
 *   "line 2, column 14: expected ')' after the property name, found 'and'"
 * It is valid UTF-8 and at most AUDIENCE_ERROR_MAX - 1 bytes.
 */
#define AUDIENCE_ERROR_MAX 400

struct audience_error {
	uint32_t line, column;
	size_t offset;		/* the same place as a byte offset into the source */
	char message[AUDIENCE_ERROR_MAX];
};

struct audience_expr;

/*
 * Parses and type-checks the len bytes at src (not NUL-terminated). On
 * success returns 0 and *out, which the caller frees with audience_expr_free().
 * Otherwise returns WEFT_EINVAL (a syntax or type error) or WEFT_ETOOBIG
 * (a limit above), fills *err and leaves *out NULL. Never reads past len.
 */
int audience_parse(const char *src, size_t len, struct audience_expr **out, struct audience_error *err);

void audience_expr_free(struct audience_expr *e);

/* ---- walking an expression ---- */

/* The root node's id; it is also the last one (audience_expr_nodes() - 1). */
uint32_t audience_expr_root(const struct audience_expr *e);
uint32_t audience_expr_nodes(const struct audience_expr *e);
/* Node id, which must be below audience_expr_nodes(). Owned by e. */
const struct audience_node *audience_expr_node(const struct audience_expr *e, uint32_t id);
const struct audience_lit *audience_expr_lit(const struct audience_expr *e, uint32_t i);
/*
 * String id's bytes, NUL-terminated (no string of the language holds a
 * NUL), their length in *len if len is not NULL. Owned by e.
 */
const char *audience_expr_str(const struct audience_expr *e, uint32_t id, size_t *len);
/* Bytes e takes in memory, all of it one allocation. */
size_t audience_expr_bytes(const struct audience_expr *e);

/* ---- what an expression depends on ---- */

enum audience_dep_kind {
	AUDIENCE_DEP_TRAIT,		/* a trait the profile has or not */
	AUDIENCE_DEP_COMPUTED,	/* a computed trait */
	AUDIENCE_DEP_EVENT,		/* events of one name, in one window */
	AUDIENCE_DEP_AUDIENCE,	/* another audience's membership */
};

/*
 * One thing whose change can change the expression's value. An event
 * appears once per distinct window it is read in; properties are not
 * listed apart, being only ever read on the event's own events.
 */
struct audience_dep {
	enum audience_dep_kind kind;
	uint32_t name;		/* string id */
	const char *name_str;	/* its bytes, NUL-terminated, owned by the expression */
	/* AUDIENCE_DEP_EVENT: the window, as in struct audience_node */
	enum audience_window window;
	int64_t span_us;	/* WITHIN */
	int64_t from_us, to_us;	/* BETWEEN */
};

/*
 * The expression's dependencies, each once, sorted by kind, then name
 * (bytewise), then window. Owned by e; *n of them.
 */
const struct audience_dep *audience_expr_deps(const struct audience_expr *e, size_t *n);

/* ---- canonical text ---- */

/*
 * Appends the canonical text of e to out: one line, one space around
 * operators, parentheses only where needed, literals normalised (numbers
 * without leading or trailing zeros, strings in single quotes). Parsing
 * it gives an expression audience_expr_equal() to e, which prints the same.
 */
void audience_expr_print(const struct audience_expr *e, struct buf *out);
/* The same for the subtree rooted at node id (a condition or where()). */
void audience_expr_print_node(const struct audience_expr *e, uint32_t id, struct buf *out);

/* True when a and b have the same tree, whatever their source positions. */
bool audience_expr_equal(const struct audience_expr *a, const struct audience_expr *b);

/* ---- computed traits ---- */

/*
 * The per-profile state of Segment-style computed traits (audiences/computed.c):
 * a value kept up to date event by event, such as the number of orders of
 * the last 30 days or the most frequent product category. A definition
 * names an event, optionally a property, a where-condition and a window;
 * a profile's state is a byte blob (below) the caller keeps, so that the
 * profile store can hold it like any other record. Pure: no engine, no
 * clock of its own; every call is told what time it is.
 *
 * Windows are kept in time buckets: one per UTC hour for a window in hours,
 * one per UTC day for one in days. A window of N units read at now holds
 * the events whose bucket is now's bucket or one of the N - 1 before it:
 * `within(7 days)` is today (UTC) and the six days before. Events stamped
 * after now are kept and count once now reaches their bucket. A bucket
 * that has left the window is dropped whenever the state is updated or
 * read, so a state never holds more than the window's buckets (and any
 * future ones). Without a window every event counts, whatever its time.
 */
#include <jansson.h>

enum audience_computed_kind {
	AUDIENCE_COMPUTED_COUNT,	/* matching events: an integer, 0 if none */
	AUDIENCE_COMPUTED_SUM,		/* of a numeric property: a real, 0 if none */
	AUDIENCE_COMPUTED_AVG,		/* of a numeric property: a real, null if none */
	AUDIENCE_COMPUTED_MIN,		/* the same */
	AUDIENCE_COMPUTED_MAX,
	AUDIENCE_COMPUTED_MOST_FREQUENT,	/* string property: the most common string, ties to the
					   bytewise smallest; null if none */
	AUDIENCE_COMPUTED_FIRST,	/* the property's value on the earliest event, any JSON but null */
	AUDIENCE_COMPUTED_LAST,		/* on the latest one; both null if none */
	AUDIENCE_COMPUTED_UNIQUE_LIST,	/* string property: its distinct values, sorted bytewise, capped */
	AUDIENCE_COMPUTED_UNIQUE_COUNT,	/* how many distinct strings, saturating at the same cap */
};

/*
 * Values the kinds above ignore, so that a state stays bounded: a string
 * (or, for first and last, a value's compact JSON text) longer than
 * AUDIENCE_COMPUTED_MAX_VALUE bytes; for most frequent, a new string in a
 * bucket that already counts AUDIENCE_COMPUTED_MAX_DISTINCT others. A unique
 * list keeps the AUDIENCE_COMPUTED_MAX_UNIQUE bytewise smallest strings, so
 * a unique count above it reads as AUDIENCE_COMPUTED_MAX_UNIQUE.
 */
#define AUDIENCE_COMPUTED_MAX_VALUE 1024
#define AUDIENCE_COMPUTED_MAX_DISTINCT 1000
#define AUDIENCE_COMPUTED_MAX_UNIQUE 100

/*
 * A definition. Nothing in it is copied: the strings and the expression
 * must outlive every call that is given it.
 */
struct audience_computed {
	enum audience_computed_kind kind;
	const char *event;		/* the event's name, matched exactly */
	const char *property;		/* every kind but COUNT: the top-level property read */
	const struct audience_expr *where_expr;	/* NULL: every event of that name counts */
	uint32_t where;			/* a condition on properties in where_expr, such as the kid
					   of an AUDIENCE_EVENT node with a where() */
	uint32_t window;		/* 0: all time; else how many units, as within() */
	enum audience_unit unit;
	/* between(): only events with from_us <= timestamp < to_us count (window must be 0). */
	bool between;
	int64_t from_us, to_us;
};

/*
 * True when properties (a JSON object, or NULL: none) satisfy the where
 * condition at node id of e, by the rules of docs/audiences.md ("Type
 * rules"). id must be a property condition (PROPERTY, AND, OR, NOT).
 */
bool audience_where_match(const struct audience_expr *e, uint32_t id, const json_t *properties);

/*
 * True when the value v (NULL: absent) passes the test of node id of e (a
 * TRAIT, COMPUTED or PROPERTY node, or an EVENT node's comparison of its
 * aggregate) by the same type rules.
 */
bool audience_value_test(const struct audience_expr *e, uint32_t id, const json_t *v);

/*
 * A state is a byte blob; no bytes at all is a profile with no matching
 * event. Its format (integers as unsigned LEB128 varints, signed ones
 * zigzagged first, doubles as 8 bytes of IEEE 754, little-endian):
 *   version (1), kind, bucket count, then per bucket, in ascending order,
 *   its number minus the previous one's (the first from 0; all time is the
 *   single bucket 0) and then by kind:
 *     COUNT            events
 *     SUM, AVG         numeric values, their sum (if any)
 *     MIN, MAX         numeric values, the min or max (if any)
 *     MOST_FREQUENT    distinct strings, each length, bytes, count, sorted
 *     UNIQUE_*         distinct strings, each length, bytes, sorted
 *     FIRST, LAST      timestamp (zigzag), length, the value's compact JSON
 * The same events in the same order give the same bytes; for every kind but
 * SUM and AVG (whose floating point sums depend on the order of addition)
 * the bytes depend only on which events were applied, not on their order
 * or on how they were split between merged states. Ties in time between
 * first or last values go to the bytewise smaller or larger text.
 */

/*
 * Records one event on the state, at now_us: an event called event_name
 * that the where condition accepts, and that has a usable property value
 * for the kind, joins its bucket unless that bucket is already out of the
 * window at now_us. Expired buckets are dropped either way. Returns 0, or
 * WEFT_EINVAL (the state is not one of def's; it is left as it was).
 */
int audience_computed_apply(const struct audience_computed *def, struct buf *state, int64_t now_us,
			    int64_t ts_us, const char *event_name, const json_t *properties);

/*
 * The value at now_us in *out (a new reference: an integer, a real, a
 * string, an array or null, as the kind says). Drops the state's expired
 * buckets. Returns 0, or WEFT_EINVAL (a state that is not def's; *out NULL).
 */
int audience_computed_value(const struct audience_computed *def, struct buf *state, int64_t now_us,
			    json_t **out);

/*
 * Folds the state at from (from_len bytes, another profile's) into state,
 * the survivor's, dropping what is expired at now_us: the result reads as
 * if every event of both had been applied to one. Returns 0, or
 * WEFT_EINVAL (either state is not def's; state is left as it was).
 */
int audience_computed_merge(const struct audience_computed *def, struct buf *state,
			    const void *from, size_t from_len, int64_t now_us);

#endif
