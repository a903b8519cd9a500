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

#endif
