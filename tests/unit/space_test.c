/*
 * Unit tests for a workspace's audiences and computed traits at run time
 * (audiences/space.h): computed-trait documents and their canonical form,
 * definitions with their references, cycles and conflicts, the live path
 * against a real profile store (membership, computed values, the changes
 * recorded and their causes), every test of the language against traits
 * and every event condition, windows sliding as the test's clock moves,
 * merges, forgetting, backfills of new definitions, previews and snapshots.
 *
 * The key property: a space fed event by event (with merges and ticks in
 * between) ends with the same members and computed values as a space
 * defined afterwards and backfilled from the whole log, on random traffic,
 * and the changes it recorded replay to the members it holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audiences/space.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "profiles/profiles.h"

#define MINUTE (60LL * 1000000LL)
#define HOUR (60 * MINUTE)
#define DAY (24 * HOUR)
/* A Monday, midnight UTC: 2026-01-05. */
#define T0 (1767571200LL * 1000000LL)

/* ---- helpers ---- */

static json_t *parse(const char *text)
{
	json_error_t err;
	json_t *j;

	if (!text)
		return NULL;
	j = json_loads(text, JSON_DECODE_ANY, &err);
	if (!j)
		fail_msg("bad test json '%s': %s", text, err.text);
	return j;
}

/* A profile store and a space fed together, at the test's clock. */
struct world {
	struct profile_store *ps;
	struct audience_space *s;
	int64_t seq;			/* of the last event */
	int64_t now;
};

static void world_init(struct world *w)
{
	w->ps = profile_store_new();
	w->s = audience_space_new();
	w->seq = 0;
	w->now = T0;
}

static void world_release(struct world *w)
{
	audience_space_free(w->s);
	profile_store_free(w->ps);
}

/*
 * One event of profile pid stamped ts, as the engine gives it: recorded in
 * the store, then in the space, at w->now. name NULL is an identify call;
 * props and traits are JSON text or NULL. Returns the event's seq.
 */
static int64_t send(struct world *w, uint64_t pid, int64_t ts, const char *name,
		    const char *props, const char *traits)
{
	json_t *p = parse(props), *t = parse(traits);
	struct profile_event e = {
		.seq = ++w->seq, .ts_us = ts, .call = name ? PROFILE_TRACK : PROFILE_IDENTIFY,
		.name = name, .traits = t, .profile_id = pid,
	};

	assert_int_equal(profile_store_apply(w->ps, &e), 0);
	audience_space_event(w->s, w->ps, pid, e.seq, ts, name, p, t, w->now, true);
	json_decref(p);
	json_decref(t);
	return e.seq;
}

/* Validates doc (JSON text) and installs it; fails the test if either refuses. */
static void ct(struct audience_space *s, int64_t id, const char *doc)
{
	json_t *j = parse(doc);
	char err[512], *canon = NULL;

	if (audience_ct_validate(j, &canon, err, sizeof(err)) != 0)
		fail_msg("'%s' does not validate: %s", doc, err);
	if (audience_space_define_ct(s, id, canon, err, sizeof(err)) != 0)
		fail_msg("'%s' is refused: %s", canon, err);
	free(canon);
	json_decref(j);
}

static void aud(struct audience_space *s, int64_t id, const char *key, const char *src)
{
	char err[512];

	if (audience_space_define_audience(s, id, key, NULL, src, err, sizeof(err)) != 0)
		fail_msg("audience '%s' (%s) is refused: %s", key, src, err);
}

static size_t aud_index(const struct audience_space *s, const char *key)
{
	long i = audience_space_audience_find(s, key);

	if (i < 0)
		fail_msg("no audience '%s'", key);
	return (size_t)i;
}

static bool member(const struct audience_space *s, const char *key, uint64_t pid)
{
	return audience_space_member(s, aud_index(s, key), pid);
}

static uint64_t aud_size(const struct audience_space *s, const char *key)
{
	struct audience_info info;

	audience_space_audience(s, aud_index(s, key), &info);
	return info.size;
}

static int64_t aud_id(const struct audience_space *s, const char *key)
{
	struct audience_info info;

	audience_space_audience(s, aud_index(s, key), &info);
	return info.id;
}

/* Computed trait key's value for pid at now, as compact JSON text; caller frees. */
static char *ct_text(const struct audience_space *s, const char *key, uint64_t pid, int64_t now)
{
	long i = audience_space_ct_find(s, key);
	json_t *v;
	char *text;

	if (i < 0)
		fail_msg("no computed trait '%s'", key);
	v = audience_space_ct_value(s, (size_t)i, pid, now);
	assert_non_null(v);
	text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(v);
	return text;
}

static void assert_ct(const struct audience_space *s, const char *key, uint64_t pid, int64_t now,
		      const char *want)
{
	char *got = ct_text(s, key, pid, now);

	if (strcmp(got, want) != 0)
		fail_msg("computed trait '%s' of profile %llu is %s, not %s", key,
			 (unsigned long long)pid, got, want);
	free(got);
}

/* The changes recorded since the last call (caller frees). */
static struct audience_change *take(struct audience_space *s, size_t *n)
{
	struct audience_change *c = audience_space_take_changes(s, n);

	assert_true((*n == 0) == (c == NULL));
	return c;
}

static void assert_no_changes(struct audience_space *s)
{
	size_t n;
	struct audience_change *c = take(s, &n);

	if (n)
		fail_msg("%zu unexpected changes, the first: audience %lld profile %llu %s (%s)", n,
			 (long long)c[0].audience_id, (unsigned long long)c[0].profile_id,
			 c[0].entered ? "entered" : "left", audience_cause_name(c[0].cause));
}

static void assert_change(const struct audience_change *c, int64_t audience_id, uint64_t pid,
			  bool entered, enum audience_cause cause, int64_t seq, int64_t at)
{
	if (c->audience_id != audience_id || c->profile_id != pid || c->entered != entered ||
	    c->cause != cause || c->seq != seq || c->at_us != at)
		fail_msg("change is audience %lld profile %llu %s cause %s seq %lld at %lld; "
			 "expected audience %lld profile %llu %s cause %s seq %lld at %lld",
			 (long long)c->audience_id, (unsigned long long)c->profile_id,
			 c->entered ? "entered" : "left", audience_cause_name(c->cause),
			 (long long)c->seq, (long long)c->at_us, (long long)audience_id,
			 (unsigned long long)pid, entered ? "entered" : "left",
			 audience_cause_name(cause), (long long)seq, (long long)at);
}

/* c (n of them) holds this change, wherever. */
static void assert_has_change(const struct audience_change *c, size_t n, int64_t audience_id,
			      uint64_t pid, bool entered, enum audience_cause cause, int64_t seq,
			      int64_t at)
{
	for (size_t i = 0; i < n; i++)
		if (c[i].audience_id == audience_id && c[i].profile_id == pid) {
			assert_change(&c[i], audience_id, pid, entered, cause, seq, at);
			return;
		}
	fail_msg("no change of audience %lld for profile %llu among %zu", (long long)audience_id,
		 (unsigned long long)pid, n);
}

/* Exactly one change was recorded since the last call, this one. */
static void assert_one_change(struct audience_space *s, int64_t audience_id, uint64_t pid,
			      bool entered, enum audience_cause cause, int64_t seq, int64_t at)
{
	size_t n;
	struct audience_change *c = take(s, &n);

	if (n != 1)
		fail_msg("%zu changes recorded, not 1", n);
	assert_change(&c[0], audience_id, pid, entered, cause, seq, at);
	free(c);
}

/* ---- computed-trait documents ---- */

static int validate(const char *doc, char **canon, char *err, size_t errlen)
{
	json_t *j = parse(doc);
	int rc = audience_ct_validate(j, canon, err, errlen);

	json_decref(j);
	return rc;
}

static void assert_canon(const char *doc, const char *want)
{
	char err[512], *canon = NULL, *again = NULL;

	if (validate(doc, &canon, err, sizeof(err)) != 0)
		fail_msg("'%s' does not validate: %s", doc, err);
	if (strcmp(canon, want) != 0)
		fail_msg("'%s' canonicalises to\n  %s\nnot\n  %s", doc, canon, want);
	/* The canonical form is a fixed point. */
	assert_int_equal(validate(canon, &again, err, sizeof(err)), 0);
	assert_string_equal(again, canon);
	free(again);
	free(canon);
}

/* doc is refused with WEFT_EINVAL and a message starting with want. */
static void assert_refused(const char *doc, const char *want)
{
	char err[512] = "", *canon = (char *)"untouched";
	int rc = validate(doc, &canon, err, sizeof(err));

	if (rc != WEFT_EINVAL)
		fail_msg("'%s' gives %d, not WEFT_EINVAL (canon %s)", doc, rc,
			 rc ? "-" : canon);
	assert_null(canon);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("'%s' is refused with\n  %s\nnot\n  %s...", doc, err, want);
}

static void test_space__ct_validate_canonicalises_members_where_and_window(void **unused)
{
	(void)unused;
	assert_canon("{\"window\": \"090 days\", \"where\": \"property( 'total' )>100.0\", "
		     "\"property\": \"total\", \"event\": \"Order Completed\", \"kind\": \"sum\", "
		     "\"name\": \"Spend, 90 days\", \"key\": \"spend_90d\"}",
		     "{\"key\":\"spend_90d\",\"name\":\"Spend, 90 days\",\"kind\":\"sum\","
		     "\"event\":\"Order Completed\",\"property\":\"total\","
		     "\"where\":\"property('total') > 100\",\"window\":\"90 days\"}");
	/* The name defaults to the key; absent members are null. */
	assert_canon("{\"key\": \"orders\", \"kind\": \"count\", \"event\": \"Order\"}",
		     "{\"key\":\"orders\",\"name\":\"orders\",\"kind\":\"count\",\"event\":\"Order\","
		     "\"property\":null,\"where\":null,\"window\":null}");
	assert_canon("{\"key\": \"o\", \"kind\": \"count\", \"event\": \"Order\", \"property\": null, "
		     "\"where\": null, \"window\": \"12 hour\"}",
		     "{\"key\":\"o\",\"name\":\"o\",\"kind\":\"count\",\"event\":\"Order\","
		     "\"property\":null,\"where\":null,\"window\":\"12 hours\"}");
	/* One unit is singular, as the language prints it. */
	assert_canon("{\"key\": \"o\", \"kind\": \"count\", \"event\": \"E\", \"window\": \"1 days\"}",
		     "{\"key\":\"o\",\"name\":\"o\",\"kind\":\"count\",\"event\":\"E\","
		     "\"property\":null,\"where\":null,\"window\":\"1 day\"}");
	assert_canon("{\"key\": \"o\", \"kind\": \"count\", \"event\": \"E\", \"window\": \"1 hours\"}",
		     "{\"key\":\"o\",\"name\":\"o\",\"kind\":\"count\",\"event\":\"E\","
		     "\"property\":null,\"where\":null,\"window\":\"1 hour\"}");
	/* Every kind but count takes a property; quotes in names survive. */
	assert_canon("{\"key\": \"k.1-x_y\", \"kind\": \"unique_list\", \"event\": \"Bob's \\\\ Event\", "
		     "\"property\": \"it's\", \"where\": \"not (property('a') in ('x','y') "
		     "or property('b').exists()) and property('t').contains('z')\"}",
		     "{\"key\":\"k.1-x_y\",\"name\":\"k.1-x_y\",\"kind\":\"unique_list\","
		     "\"event\":\"Bob's \\\\ Event\",\"property\":\"it's\","
		     "\"where\":\"not (property('a') in ('x', 'y') or property('b').exists()) and "
		     "property('t').contains('z')\",\"window\":null}");
	{
		static const char *const kinds[] = { "sum", "avg", "min", "max", "most_frequent",
						     "first", "last", "unique_list",
						     "unique_count" };
		char doc[256], want[256];

		for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
			snprintf(doc, sizeof(doc), "{\"key\": \"k\", \"kind\": \"%s\", "
				 "\"event\": \"E\", \"property\": \"p\"}", kinds[i]);
			snprintf(want, sizeof(want), "{\"key\":\"k\",\"name\":\"k\",\"kind\":\"%s\","
				 "\"event\":\"E\",\"property\":\"p\",\"where\":null,\"window\":null}",
				 kinds[i]);
			assert_canon(doc, want);
		}
	}
	/* The longest key passes. */
	{
		char doc[256], key[AUDIENCE_KEY_MAX + 1];

		memset(key, 'k', AUDIENCE_KEY_MAX);
		key[AUDIENCE_KEY_MAX] = '\0';
		snprintf(doc, sizeof(doc), "{\"key\": \"%s\", \"kind\": \"count\", \"event\": \"E\"}",
			 key);
		{
			char err[256], *canon = NULL;

			assert_int_equal(validate(doc, &canon, err, sizeof(err)), 0);
			free(canon);
		}
	}
}

static void test_space__ct_validate_names_the_member_at_fault(void **unused)
{
	char doc[512], key[AUDIENCE_KEY_MAX + 2];

	(void)unused;
	assert_refused("[1]", "the body must be a JSON object");
	assert_refused("{\"kind\": \"count\", \"event\": \"E\"}", "\"key\" is required");
	assert_refused("{\"key\": \"k\", \"event\": \"E\"}", "\"kind\" is required");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\"}", "\"event\" is required");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"\"}",
		       "\"event\" must be a non-empty string");
	assert_refused("{\"key\": 7, \"kind\": \"count\", \"event\": \"E\"}",
		       "\"key\" must be a non-empty string");
	assert_refused("{\"key\": \"_k\", \"kind\": \"count\", \"event\": \"E\"}", "\"key\" must be");
	assert_refused("{\"key\": \"a b\", \"kind\": \"count\", \"event\": \"E\"}", "\"key\" must be");
	assert_refused("{\"key\": \"caf\\u00e9\", \"kind\": \"count\", \"event\": \"E\"}",
		       "\"key\" must be");
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	snprintf(doc, sizeof(doc), "{\"key\": \"%s\", \"kind\": \"count\", \"event\": \"E\"}", key);
	assert_refused(doc, "\"key\" must be");
	assert_refused("{\"key\": \"k\", \"kind\": \"median\", \"event\": \"E\", \"property\": \"p\"}",
		       "\"kind\" must be one of count, sum");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", \"filter\": 1}",
		       "unknown member \"filter\"");
	assert_refused("{\"key\": \"k\", \"kind\": \"sum\", \"event\": \"E\"}",
		       "\"property\" is required for kind sum");
	assert_refused("{\"key\": \"k\", \"kind\": \"last\", \"event\": \"E\", \"property\": null}",
		       "\"property\" is required for kind last");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", \"property\": \"p\"}",
		       "\"property\" is not used by kind count");
	/* A where is named and its column counted from the where's own start. */
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", "
		       "\"where\": \"property('total') = = 1\"}", "\"where\": column 21: ");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"Caf\\u00e9 \\u6771\", "
		       "\"where\": \"property('total') = = 1\"}", "\"where\": column 21: ");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", "
		       "\"where\": \"trait('a') = 1\"}", "\"where\": column 1: where() takes");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", \"where\": \"\"}",
		       "\"where\" must be a non-empty string");
	/* Nothing rides in through a where or a window: they are one condition, one window. */
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", "
		       "\"where\": \"property('a') = 1).within(3 days\"}", "\"where\"");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", "
		       "\"where\": \"property('a') = 1).exists() or event('F').where(property('a') = 1\"}",
		       "\"where\"");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", "
		       "\"window\": \"3 days).where(property('a') = 1\"}", "\"window\" must read like");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", "
		       "\"window\": \"1 day).exists() or event('F').within(1 day\"}",
		       "\"window\" must read like");
	/* A name the language cannot quote is the event's fault, not the where's. */
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"a\\nb\"}", "\"event\"");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", \"window\": \"3 weeks\"}",
		       "\"window\" must read like \"30 days\"");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", \"window\": \"0 days\"}",
		       "\"window\" must read like");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", \"window\": \"3651 days\"}",
		       "\"window\" must read like");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", \"window\": \"days\"}",
		       "\"window\" must read like");
	assert_refused("{\"key\": \"k\", \"kind\": \"count\", \"event\": \"E\", \"window\": 30}",
		       "\"window\" must be a non-empty string");
	assert_true(audience_key_ok("a"));
	assert_true(audience_key_ok("9.a-b_c"));
	assert_false(audience_key_ok(""));
	assert_false(audience_key_ok(NULL));
	assert_false(audience_key_ok("-a"));
	assert_false(audience_key_ok("a/b"));
}

/* ---- definitions ---- */

static void test_space__definitions_are_listed_by_key_with_their_canonical_text(void **unused)
{
	struct world w;
	struct audience_info info;
	struct audience_ct_info ci;
	char err[512];

	(void)unused;
	world_init(&w);
	ct(w.s, 11, "{\"key\": \"b_ct\", \"kind\": \"count\", \"event\": \"B\"}");
	ct(w.s, 10, "{\"key\": \"a_ct\", \"kind\": \"sum\", \"event\": \"A\", \"property\": \"v\"}");
	aud(w.s, 3, "zeta", "trait('a')=1");
	aud(w.s, 1, "alpha", "computed('a_ct')>2");
	assert_int_equal(audience_space_define_audience(w.s, 2, "mid", "The middle one",
							"audience( 'alpha' ) or computed('b_ct') >= 1",
							err, sizeof(err)), 0);
	assert_int_equal(audience_space_audiences(w.s), 3);
	audience_space_audience(w.s, 0, &info);
	assert_string_equal(info.key, "alpha");
	assert_string_equal(info.name, "alpha");
	assert_string_equal(info.definition, "computed('a_ct') > 2");
	assert_int_equal(info.id, 1);
	assert_true(info.pending);
	audience_space_audience(w.s, 1, &info);
	assert_string_equal(info.key, "mid");
	assert_string_equal(info.name, "The middle one");
	assert_string_equal(info.definition, "audience('alpha') or computed('b_ct') >= 1");
	audience_space_audience(w.s, 2, &info);
	assert_string_equal(info.key, "zeta");
	assert_string_equal(info.definition, "trait('a') = 1");
	assert_int_equal(audience_space_audience_find(w.s, "zeta"), 2);
	assert_int_equal(audience_space_audience_find(w.s, "nope"), -1);
	assert_int_equal(audience_space_audience_find(w.s, ""), -1);
	assert_int_equal(audience_space_cts(w.s), 2);
	audience_space_ct(w.s, 0, &ci);
	assert_string_equal(ci.key, "a_ct");
	assert_int_equal(ci.id, 10);
	assert_non_null(strstr(ci.definition, "\"kind\":\"sum\""));
	assert_int_equal(audience_space_ct_find(w.s, "b_ct"), 1);
	assert_int_equal(audience_space_ct_find(w.s, "c_ct"), -1);
	/* Both computed traits are new: pending until a backfill and a settle. */
	assert_true(audience_space_pending(w.s));
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	assert_false(audience_space_pending(w.s));
	audience_space_audience(w.s, 0, &info);
	assert_false(info.pending);
	assert_int_equal(info.computed_us, w.now);
	/* Redefining keeps the place and takes the new text and id. */
	aud(w.s, 4, "zeta", "trait('a') = 2");
	assert_int_equal(audience_space_audiences(w.s), 3);
	audience_space_audience(w.s, 2, &info);
	assert_string_equal(info.definition, "trait('a') = 2");
	assert_int_equal(info.id, 4);
	assert_true(info.pending);
	/* A definition that is not a computed-trait document is refused. */
	assert_int_equal(audience_space_define_ct(w.s, 12, "{\"key\": \"x\"}", err, sizeof(err)),
			 WEFT_EINVAL);
	assert_int_equal(audience_space_define_ct(w.s, 12, "nonsense", err, sizeof(err)),
			 WEFT_EINVAL);
	assert_int_equal(audience_space_cts(w.s), 2);
	world_release(&w);
}

static void test_space__references_must_exist(void **unused)
{
	struct world w;
	struct audience_space_stats st;
	char err[512];

	(void)unused;
	world_init(&w);
	ct(w.s, 1, "{\"key\": \"orders\", \"kind\": \"count\", \"event\": \"Order\"}");
	aud(w.s, 1, "buyers", "computed('orders') >= 1");
	audience_space_stats(w.s, &st);
	assert_int_equal(st.aggregates, 1);
	assert_int_equal(audience_space_define_audience(w.s, 2, "x", NULL,
							"event('View').exists() and "
							"computed('nope') > 1", err, sizeof(err)),
			 WEFT_EINVAL);
	assert_non_null(strstr(err, "no computed trait 'nope' exists"));
	assert_non_null(strstr(err, "column 28"));
	assert_int_equal(audience_space_define_audience(w.s, 2, "x", NULL,
							"audience('ghost') or audience('buyers')",
							err, sizeof(err)), WEFT_EINVAL);
	assert_non_null(strstr(err, "no audience 'ghost' exists"));
	assert_int_equal(audience_space_define_audience(w.s, 2, "x", NULL, "trait('a') ==  1",
							err, sizeof(err)), WEFT_EINVAL);
	assert_non_null(strstr(err, "line 1, column 12"));
	/* Nothing was added, not even the aggregate of the refused event('View'). */
	assert_int_equal(audience_space_audiences(w.s), 1);
	audience_space_stats(w.s, &st);
	assert_int_equal(st.aggregates, 1);
	assert_false(audience_space_wants(w.s, "View", true));
	/* The check alone says the same and changes nothing. */
	assert_int_equal(audience_space_check_audience(w.s, "x", "computed('nope') > 1",
						       err, sizeof(err)), WEFT_EINVAL);
	assert_non_null(strstr(err, "no computed trait 'nope' exists"));
	assert_int_equal(audience_space_check_audience(w.s, "x",
						       "event('View').within(3 days).exists() "
						       "and audience('buyers')", err, sizeof(err)), 0);
	audience_space_stats(w.s, &st);
	assert_int_equal(st.aggregates, 1);
	assert_int_equal(audience_space_audiences(w.s), 1);
	world_release(&w);
}

static void test_space__a_definition_may_not_go_round_in_a_circle(void **unused)
{
	struct world w;
	struct audience_info info;
	char err[512];

	(void)unused;
	world_init(&w);
	aud(w.s, 1, "a", "trait('x') = 1");
	aud(w.s, 2, "b", "audience('a') and trait('y') = 1");
	aud(w.s, 3, "c", "audience('b') or trait('z') = 1");
	/* a uses b would close a circle: refused, a stays what it was. */
	assert_int_equal(audience_space_define_audience(w.s, 1, "a", NULL, "audience('b')",
							err, sizeof(err)), WEFT_EINVAL);
	assert_non_null(strstr(err, "circle"));
	assert_non_null(strstr(err, "'b'"));
	assert_int_equal(audience_space_define_audience(w.s, 1, "a", NULL,
							"trait('q') = 1 or audience('c')",
							err, sizeof(err)), WEFT_EINVAL);
	assert_non_null(strstr(err, "circle"));
	assert_int_equal(audience_space_check_audience(w.s, "a", "audience('c')", err, sizeof(err)),
			 WEFT_EINVAL);
	assert_int_equal(audience_space_define_audience(w.s, 2, "b", NULL, "audience('b')",
							err, sizeof(err)), WEFT_EINVAL);
	audience_space_audience(w.s, aud_index(w.s, "a"), &info);
	assert_string_equal(info.definition, "trait('x') = 1");
	audience_space_audience(w.s, aud_index(w.s, "b"), &info);
	assert_string_equal(info.definition, "audience('a') and trait('y') = 1");
	/* A new audience naming itself does not exist yet. */
	assert_int_equal(audience_space_define_audience(w.s, 4, "d", NULL, "audience('d')",
							err, sizeof(err)), WEFT_EINVAL);
	assert_non_null(strstr(err, "no audience 'd' exists"));
	/* Turning a chain round the other way is fine once nothing points back. */
	aud(w.s, 3, "c", "trait('z') = 1");
	aud(w.s, 1, "a", "audience('c')");
	/* And evaluation follows the new order: c, then a, then b. */
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	send(&w, 1, w.now, NULL, NULL, "{\"z\": 1, \"y\": 1}");
	assert_true(member(w.s, "c", 1));
	assert_true(member(w.s, "a", 1));
	assert_true(member(w.s, "b", 1));
	world_release(&w);
}

static void test_space__removing_what_another_uses_is_a_conflict(void **unused)
{
	struct world w;
	struct audience_space_stats st;
	char err[512];

	(void)unused;
	world_init(&w);
	ct(w.s, 1, "{\"key\": \"orders\", \"kind\": \"count\", \"event\": \"Order\"}");
	ct(w.s, 2, "{\"key\": \"unused\", \"kind\": \"max\", \"event\": \"Order\", \"property\": \"v\"}");
	aud(w.s, 1, "buyers", "computed('orders') >= 1");
	aud(w.s, 2, "loyal", "audience('buyers') and event('Order').within(7 days).count() >= 3");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	send(&w, 1, w.now, "Order", NULL, NULL);
	assert_true(member(w.s, "buyers", 1));
	free(audience_space_take_changes(w.s, &(size_t){ 0 }));

	assert_int_equal(audience_space_remove_ct(w.s, "orders", err, sizeof(err)), WEFT_ECONFLICT);
	assert_non_null(strstr(err, "'buyers'"));
	assert_int_equal(audience_space_remove_audience(w.s, "buyers", err, sizeof(err)),
			 WEFT_ECONFLICT);
	assert_non_null(strstr(err, "'loyal'"));
	assert_int_equal(audience_space_remove_ct(w.s, "nope", err, sizeof(err)), WEFT_ENOTFOUND);
	assert_int_equal(audience_space_remove_audience(w.s, "nope", err, sizeof(err)),
			 WEFT_ENOTFOUND);
	assert_int_equal(audience_space_audiences(w.s), 2);
	assert_int_equal(audience_space_cts(w.s), 2);

	/* Unused ones go; an audience goes without recording exits. */
	assert_int_equal(audience_space_remove_ct(w.s, "unused", err, sizeof(err)), 0);
	assert_int_equal(audience_space_remove_audience(w.s, "loyal", err, sizeof(err)), 0);
	assert_int_equal(audience_space_remove_audience(w.s, "buyers", err, sizeof(err)), 0);
	assert_no_changes(w.s);
	assert_int_equal(audience_space_remove_ct(w.s, "orders", err, sizeof(err)), 0);
	assert_int_equal(audience_space_audiences(w.s), 0);
	assert_int_equal(audience_space_cts(w.s), 0);
	/* Their aggregates are gone with them. */
	audience_space_stats(w.s, &st);
	assert_int_equal(st.aggregates, 0);
	assert_int_equal(st.members, 0);
	assert_false(audience_space_wants(w.s, "Order", false));
	/* And a removed key may be defined again, fresh. */
	aud(w.s, 5, "buyers", "event('Order').exists()");
	assert_true(audience_space_pending(w.s));
	assert_false(member(w.s, "buyers", 1));
	world_release(&w);
}

/* ---- the live path ---- */

static void test_space__events_update_members_values_and_record_changes(void **unused)
{
	struct world w;
	struct audience_change *c;
	json_t *computed, *auds;
	int64_t seq;
	size_t n;

	(void)unused;
	world_init(&w);
	ct(w.s, 1, "{\"key\": \"spend\", \"kind\": \"sum\", \"event\": \"Order\", \"property\": \"total\"}");
	ct(w.s, 2, "{\"key\": \"orders\", \"kind\": \"count\", \"event\": \"Order\"}");
	aud(w.s, 10, "pro", "trait('plan') = 'pro'");
	aud(w.s, 11, "big", "computed('spend') >= 100");
	aud(w.s, 12, "pro_big", "audience('pro') and audience('big')");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	assert_no_changes(w.s);

	assert_int_equal(aud_id(w.s, "pro"), 10);
	assert_int_equal(aud_id(w.s, "pro_big"), 12);
	assert_true(audience_space_wants(w.s, "Order", false));
	assert_false(audience_space_wants(w.s, "Order", true));
	assert_false(audience_space_wants(w.s, "View", false));

	seq = send(&w, 7, w.now, NULL, NULL, "{\"plan\": \"pro\"}");
	assert_true(member(w.s, "pro", 7));
	assert_one_change(w.s, 10, 7, true, AUDIENCE_CAUSE_EVENT, seq, w.now);

	w.now += MINUTE;
	send(&w, 7, w.now, "Order", "{\"total\": 60}", NULL);
	assert_ct(w.s, "spend", 7, w.now, "60.0");
	assert_ct(w.s, "orders", 7, w.now, "1");
	assert_false(member(w.s, "big", 7));
	assert_no_changes(w.s);

	w.now += MINUTE;
	seq = send(&w, 7, w.now, "Order", "{\"total\": 40.5}", NULL);
	assert_ct(w.s, "spend", 7, w.now, "100.5");
	/* big, then pro_big that uses it, in that order, for that event. */
	c = take(w.s, &n);
	assert_int_equal(n, 2);
	assert_change(&c[0], 11, 7, true, AUDIENCE_CAUSE_EVENT, seq, w.now);
	assert_change(&c[1], 12, 7, true, AUDIENCE_CAUSE_EVENT, seq, w.now);
	free(c);
	assert_int_equal(aud_size(w.s, "pro_big"), 1);

	audience_space_profile(w.s, 7, w.now, &computed, &auds);
	{
		json_t *want_c = parse("{\"orders\": 2, \"spend\": 100.5}");
		json_t *want_a = parse("[\"big\", \"pro\", \"pro_big\"]");

		assert_true(json_equal(computed, want_c));
		assert_true(json_equal(auds, want_a));
		json_decref(want_c);
		json_decref(want_a);
	}
	json_decref(computed);
	json_decref(auds);

	/* A trait removed (null) leaves pro, and pro_big through it. */
	w.now += MINUTE;
	seq = send(&w, 7, w.now, NULL, NULL, "{\"plan\": null}");
	c = take(w.s, &n);
	assert_int_equal(n, 2);
	assert_change(&c[0], 10, 7, false, AUDIENCE_CAUSE_EVENT, seq, w.now);
	assert_change(&c[1], 12, 7, false, AUDIENCE_CAUSE_EVENT, seq, w.now);
	free(c);
	assert_int_equal(aud_size(w.s, "pro"), 0);
	assert_int_equal(aud_size(w.s, "pro_big"), 0);
	assert_int_equal(aud_size(w.s, "big"), 1);
	/* A trait set with an older timestamp than the store's loses, and changes nothing. */
	w.now += MINUTE;
	seq = send(&w, 7, w.now, NULL, NULL, "{\"plan\": \"pro\"}");
	c = take(w.s, &n);
	assert_int_equal(n, 2);
	assert_change(&c[0], 10, 7, true, AUDIENCE_CAUSE_EVENT, seq, w.now);
	assert_change(&c[1], 12, 7, true, AUDIENCE_CAUSE_EVENT, seq, w.now);
	free(c);
	send(&w, 7, w.now - HOUR, NULL, NULL, "{\"plan\": \"free\"}");
	assert_true(member(w.s, "pro", 7));
	assert_no_changes(w.s);

	/* Another profile's events are its own. */
	send(&w, 8, w.now, "Order", "{\"total\": 1000}", NULL);
	assert_true(member(w.s, "big", 8));
	assert_false(member(w.s, "pro", 8));
	assert_ct(w.s, "spend", 7, w.now, "100.5");
	assert_ct(w.s, "spend", 8, w.now, "1000.0");
	/* A profile without state reads the kind's empty value. */
	assert_ct(w.s, "spend", 99, w.now, "0.0");
	assert_ct(w.s, "orders", 99, w.now, "0");
	{
		uint64_t out[4];

		assert_int_equal(audience_space_members(w.s, aud_index(w.s, "big"), 0, out, 4), 2);
		assert_int_equal(out[0], 7);
		assert_int_equal(out[1], 8);
		assert_int_equal(audience_space_members(w.s, aud_index(w.s, "big"), 7, out, 4), 1);
		assert_int_equal(out[0], 8);
		assert_int_equal(audience_space_members(w.s, aud_index(w.s, "big"), 0, out, 1), 1);
		assert_int_equal(out[0], 7);
	}
	/* Changes given back come before newer ones. */
	c = take(w.s, &n);
	assert_int_equal(n, 1);
	send(&w, 9, w.now, NULL, NULL, "{\"plan\": \"pro\"}");
	audience_space_return_changes(w.s, c, n);
	c = take(w.s, &n);
	assert_int_equal(n, 2);
	assert_int_equal(c[0].profile_id, 8);
	assert_int_equal(c[1].profile_id, 9);
	free(c);
	audience_space_return_changes(w.s, NULL, 0);
	assert_no_changes(w.s);
	assert_string_equal(audience_cause_name(AUDIENCE_CAUSE_EVENT), "event");
	assert_string_equal(audience_cause_name(AUDIENCE_CAUSE_MERGE), "merge");
	assert_string_equal(audience_cause_name(AUDIENCE_CAUSE_WINDOW), "window");
	assert_string_equal(audience_cause_name(AUDIENCE_CAUSE_DEFINITION), "definition");
	world_release(&w);
}

static void test_space__only_audiences_reading_what_changed_are_evaluated(void **unused)
{
	struct world w;
	struct profile_event e = { .call = PROFILE_IDENTIFY, .profile_id = 1 };

	(void)unused;
	world_init(&w);
	aud(w.s, 1, "pro", "trait('plan') = 'pro'");
	aud(w.s, 2, "viewer", "event('View').exists()");
	aud(w.s, 3, "buyer", "event('Order').exists()");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	send(&w, 1, w.now, "View", NULL, NULL);
	assert_one_change(w.s, 2, 1, true, AUDIENCE_CAUSE_EVENT, w.seq, w.now);

	/*
	 * The store learns plan = pro behind the space's back: only an event
	 * naming the trait, or a full evaluation, brings pro up to date.
	 */
	e.seq = ++w.seq;
	e.ts_us = w.now;
	e.traits = parse("{\"plan\": \"pro\"}");
	assert_int_equal(profile_store_apply(w.ps, &e), 0);
	json_decref(e.traits);
	send(&w, 1, w.now, "View", NULL, NULL);
	send(&w, 1, w.now, "Other", NULL, "{\"age\": 3}");
	assert_false(member(w.s, "pro", 1));
	assert_no_changes(w.s);
	/* The event with evaluate false updates state and evaluates nothing. */
	audience_space_event(w.s, w.ps, 1, ++w.seq, w.now, "Order", NULL, NULL, w.now, false);
	assert_false(member(w.s, "buyer", 1));
	assert_no_changes(w.s);
	audience_space_evaluate(w.s, w.ps, 1, 77, w.now, AUDIENCE_CAUSE_RECOMPUTE);
	assert_true(member(w.s, "pro", 1));
	assert_true(member(w.s, "buyer", 1));
	{
		size_t n;
		struct audience_change *c = take(w.s, &n);

		assert_int_equal(n, 2);
		assert_has_change(c, n, 3, 1, true, AUDIENCE_CAUSE_RECOMPUTE, 77, w.now);
		assert_has_change(c, n, 1, 1, true, AUDIENCE_CAUSE_RECOMPUTE, 77, w.now);
		free(c);
	}
	/* Nothing changed: evaluating again records nothing. */
	audience_space_evaluate(w.s, w.ps, 1, 78, w.now, AUDIENCE_CAUSE_RECOMPUTE);
	assert_no_changes(w.s);
	/* Profile 0 is no profile. */
	audience_space_event(w.s, w.ps, 0, ++w.seq, w.now, "Order", NULL, NULL, w.now, true);
	audience_space_evaluate(w.s, w.ps, 0, 1, w.now, AUDIENCE_CAUSE_RECOMPUTE);
	assert_no_changes(w.s);
	world_release(&w);
}

static void test_space__a_new_profile_joins_audiences_true_of_an_empty_profile(void **unused)
{
	struct world w;

	(void)unused;
	world_init(&w);
	aud(w.s, 1, "not_pro", "not trait('plan') = 'pro'");
	aud(w.s, 2, "never_bought", "event('Order').count() = 0");
	aud(w.s, 3, "no_spend", "event('Order').sum(property('total')) <= 0");
	aud(w.s, 4, "viewer", "event('View').exists()");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	/* A profile whose first event reads nothing these audiences read. */
	send(&w, 5, w.now, "View", NULL, NULL);
	assert_true(member(w.s, "not_pro", 5));
	assert_true(member(w.s, "never_bought", 5));
	assert_true(member(w.s, "no_spend", 5));
	assert_true(member(w.s, "viewer", 5));
	{
		size_t n;
		struct audience_change *c = take(w.s, &n);

		assert_int_equal(n, 4);
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(c[i].profile_id, 5);
			assert_true(c[i].entered);
			assert_int_equal(c[i].cause, AUDIENCE_CAUSE_EVENT);
			assert_int_equal(c[i].seq, w.seq);
		}
		free(c);
	}
	send(&w, 5, w.now, "Order", "{\"total\": 3}", NULL);
	assert_false(member(w.s, "never_bought", 5));
	assert_false(member(w.s, "no_spend", 5));
	send(&w, 6, w.now, NULL, NULL, "{\"plan\": \"pro\"}");
	assert_false(member(w.s, "not_pro", 6));
	assert_true(member(w.s, "never_bought", 6));
	world_release(&w);
}

static void test_space__a_profile_the_store_does_not_have_is_in_no_audience(void **unused)
{
	struct world w;
	int64_t *seqs;
	size_t n;

	(void)unused;
	world_init(&w);
	aud(w.s, 1, "not_pro", "not trait('plan') = 'pro'");
	aud(w.s, 2, "viewer", "event('View').exists()");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	send(&w, 1, w.now, "View", NULL, NULL);
	assert_true(member(w.s, "not_pro", 1));
	free(audience_space_take_changes(w.s, &n));

	/* Evaluating, or merging into, a profile without a record joins nothing. */
	audience_space_evaluate(w.s, w.ps, 5, 1, w.now, AUDIENCE_CAUSE_RECOMPUTE);
	profile_store_merge(w.ps, 6, 7);
	audience_space_merge(w.s, w.ps, 6, 7, 2, w.now);
	assert_false(member(w.s, "not_pro", 5));
	assert_false(member(w.s, "not_pro", 6));
	assert_no_changes(w.s);

	/* Its record gone (a split that re-applied nothing), it leaves at the next settle. */
	seqs = profile_store_forget(w.ps, 1, &n);
	free(seqs);
	audience_space_forget(w.s, 1, false);
	aud(w.s, 1, "not_pro", "not trait('plan') = 'pro' or trait('plan') = 'pro'");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	assert_false(member(w.s, "not_pro", 1));
	assert_int_equal(aud_size(w.s, "not_pro"), 0);
	assert_one_change(w.s, 1, 1, false, AUDIENCE_CAUSE_DEFINITION, 0, w.now);
	/* And its next event joins it again. */
	send(&w, 1, w.now, "View", NULL, NULL);
	assert_true(member(w.s, "not_pro", 1));
	assert_true(member(w.s, "viewer", 1));
	world_release(&w);
}

/* ---- the language against traits ---- */

static void test_space__trait_tests_follow_the_type_rules(void **unused)
{
	static const struct {
		const char *src, *traits;
		bool in;
	} cases[] = {
		{ "trait('plan') = 'pro'", "{\"plan\": \"pro\"}", true },
		{ "trait('plan') = 'pro'", "{\"plan\": \"Pro\"}", false },
		{ "trait('plan') = 'pro'", "{\"plan\": 1}", false },
		{ "trait('plan') = 'pro'", "{\"other\": \"pro\"}", false },
		{ "trait('plan') != 'pro'", "{\"plan\": \"free\"}", true },
		{ "trait('plan') != 'pro'", "{\"plan\": \"pro\"}", false },
		{ "trait('plan') != 'pro'", "{\"other\": 1}", false },
		{ "trait('plan') != 'pro'", "{\"plan\": 3}", false },
		{ "not trait('plan') = 'pro'", "{\"other\": 1}", true },
		{ "not trait('plan') = 'pro'", "{\"plan\": \"pro\"}", false },
		{ "trait('age') < 18", "{\"age\": 17.5}", true },
		{ "trait('age') < 18", "{\"age\": 18}", false },
		{ "trait('age') < 18", "{\"age\": \"10\"}", false },
		{ "trait('age') <= 18", "{\"age\": 18.0}", true },
		{ "trait('age') <= 18", "{\"age\": 18.01}", false },
		{ "trait('age') > 18", "{\"age\": 19}", true },
		{ "trait('age') > 18", "{\"age\": 18}", false },
		{ "trait('age') >= 18", "{\"age\": 18}", true },
		{ "trait('age') >= 18", "{\"age\": -18}", false },
		{ "trait('age') >= 18", "{\"age\": true}", false },
		{ "trait('d') >= '2026-01-01'", "{\"d\": \"2026-02-01\"}", true },
		{ "trait('d') >= '2026-01-01'", "{\"d\": \"2025-12-31\"}", false },
		{ "trait('d') < 'ab'", "{\"d\": \"a\"}", true },
		{ "trait('ok') = true", "{\"ok\": true}", true },
		{ "trait('ok') = true", "{\"ok\": 1}", false },
		{ "trait('ok') = true", "{\"ok\": \"true\"}", false },
		{ "trait('ok') != true", "{\"ok\": false}", true },
		{ "trait('country') in ('DE', 'FR')", "{\"country\": \"FR\"}", true },
		{ "trait('country') in ('DE', 'FR')", "{\"country\": \"ES\"}", false },
		{ "trait('country') in ('DE', 'FR')", "{\"country\": [\"DE\"]}", false },
		{ "trait('n') in (1, 2.5)", "{\"n\": 2.5}", true },
		{ "trait('n') in (1, 2.5)", "{\"n\": 2}", false },
		{ "trait('email').exists()", "{\"email\": \"\"}", true },
		{ "trait('email').exists()", "{\"email\": {}}", true },
		{ "trait('email').exists()", "{\"mail\": \"x\"}", false },
		{ "trait('email').exists()", "{\"email\": null}", false },
		{ "not trait('email').exists()", "{\"mail\": \"x\"}", true },
		{ "trait('tags').contains('beta')", "{\"tags\": [\"alpha\", \"beta\"]}", true },
		{ "trait('tags').contains('beta')", "{\"tags\": \"betamax\"}", true },
		{ "trait('tags').contains('beta')", "{\"tags\": [\"betamax\", 1]}", false },
		{ "trait('tags').contains('beta')", "{\"tags\": 5}", false },
		{ "trait('address.city') = 'Paris'", "{\"address.city\": \"Paris\"}", true },
		{ "trait('address.city') = 'Paris'", "{\"address\": {\"city\": \"Paris\"}}", false },
		{ "trait('a') = 1 or trait('b') = 1 and trait('c') = 1", "{\"a\": 1}", true },
		{ "trait('a') = 1 or trait('b') = 1 and trait('c') = 1", "{\"b\": 1}", false },
		{ "trait('a') = 1 or trait('b') = 1 and trait('c') = 1", "{\"b\": 1, \"c\": 1}", true },
		{ "not trait('a') = 1 and trait('b') = 1", "{\"b\": 1}", true },
		{ "not trait('a') = 1 and trait('b') = 1", "{\"a\": 1, \"b\": 1}", false },
		{ "not trait('a') = 1 and trait('b') = 1", "{\"c\": 1}", false },
		{ "not (trait('a') = 1 or trait('b') = 1)", "{\"c\": 1}", true },
		{ "not (trait('a') = 1 or trait('b') = 1)", "{\"b\": 1}", false },
		{ "not not trait('a') = 1", "{\"a\": 1}", true },
	};

	(void)unused;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct world w;

		world_init(&w);
		aud(w.s, 1, "t", cases[i].src);
		audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
		/* Through the live path, and through a full evaluation of another profile. */
		send(&w, 1, w.now, "Nothing", NULL, NULL);
		send(&w, 1, w.now, NULL, NULL, cases[i].traits);
		send(&w, 2, w.now, "Nothing", NULL, NULL);
		{
			struct profile_event e = { .seq = ++w.seq, .ts_us = w.now,
						   .call = PROFILE_IDENTIFY, .profile_id = 2,
						   .traits = parse(cases[i].traits) };

			assert_int_equal(profile_store_apply(w.ps, &e), 0);
			json_decref(e.traits);
		}
		audience_space_evaluate(w.s, w.ps, 2, w.seq, w.now, AUDIENCE_CAUSE_RECOMPUTE);
		if (member(w.s, "t", 1) != cases[i].in || member(w.s, "t", 2) != cases[i].in)
			fail_msg("%s with traits %s: %s and %s, expected %s", cases[i].src,
				 cases[i].traits, member(w.s, "t", 1) ? "in" : "out",
				 member(w.s, "t", 2) ? "in" : "out", cases[i].in ? "in" : "out");
		world_release(&w);
	}
}

/* ---- event conditions ---- */

static void assert_members(const struct audience_space *s, uint64_t pid, const char *const *keys,
			   const char *want, const char *step)
{
	for (size_t i = 0; keys[i]; i++)
		if (member(s, keys[i], pid) != (want[i] == '1'))
			fail_msg("%s: profile %llu is %s audience '%s'", step,
				 (unsigned long long)pid,
				 want[i] == '1' ? "not in" : "in", keys[i]);
}

static void test_space__event_conditions_aggregate_filter_and_window(void **unused)
{
	static const char *const keys[] = {
		"c2", "c0", "ex", "sum", "avg", "min", "max", "wh", "d1", "h3", "btw", "ctref",
		"audref", "notex", NULL,
	};
	struct world w;

	(void)unused;
	world_init(&w);
	ct(w.s, 1, "{\"key\": \"orders\", \"kind\": \"count\", \"event\": \"Order\"}");
	aud(w.s, 1, "c2", "event('Order').count() >= 2");
	aud(w.s, 2, "c0", "event('Order').count() = 0");
	aud(w.s, 3, "ex", "event('Order').exists()");
	aud(w.s, 4, "sum", "event('Order').sum(property('total')) > 100");
	aud(w.s, 5, "avg", "event('Order').avg(property('total')) >= 50");
	aud(w.s, 6, "min", "event('Order').min(property('total')) < 10");
	aud(w.s, 7, "max", "event('Order').max(property('total')) >= 90");
	aud(w.s, 8, "wh", "event('Order').where(property('currency') = 'EUR' and "
		 "property('total') > 20).count() >= 1");
	aud(w.s, 9, "d1", "event('Order').within(1 day).exists()");
	aud(w.s, 10, "h3", "event('Order').within(3 hours).count() >= 2");
	aud(w.s, 11, "btw", "event('Order').between('2026-01-05', '2026-01-06').exists()");
	aud(w.s, 12, "ctref", "computed('orders') >= 3");
	aud(w.s, 13, "audref", "audience('ex') and not audience('sum')");
	aud(w.s, 14, "notex", "not event('Order').exists()");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	w.now = T0 + 12 * HOUR;

	send(&w, 1, w.now, "Visit", NULL, NULL);
	/*                                  c2 c0 ex su av mi ma wh d1 h3 bt ct ar nx */
	assert_members(w.s, 1, keys, "01000000000001", "no order");
	send(&w, 1, w.now, "Order", "{\"total\": 5, \"currency\": \"EUR\"}", NULL);
	assert_members(w.s, 1, keys, "00100100101010", "5 EUR");
	/* A total that is no number counts as an event, not as a value. */
	send(&w, 1, w.now - HOUR, "Order", "{\"total\": \"abc\", \"currency\": \"USD\"}", NULL);
	assert_members(w.s, 1, keys, "10100100111010", "abc USD");
	/* Two days late: outside the day, the hours and between, inside all time. */
	send(&w, 1, T0 - 2 * DAY, "Order", "{\"total\": 95, \"currency\": \"EUR\"}", NULL);
	assert_members(w.s, 1, keys, "10101111111110", "95 EUR, late");
	send(&w, 1, w.now, "Order", "{\"total\": 0.25}", NULL);
	assert_members(w.s, 1, keys, "10110111111100", "0.25");
	/* Other event names feed none of them. */
	send(&w, 1, w.now, "order", "{\"total\": 1000, \"currency\": \"EUR\"}", NULL);
	assert_members(w.s, 1, keys, "10110111111100", "order");
	assert_ct(w.s, "orders", 1, w.now, "4");

	/* min, max and avg are false without a numeric value; sum is then 0. */
	aud(w.s, 20, "neg", "event('Order').sum(property('total')) > -1");
	aud(w.s, 21, "avg0", "event('Order').avg(property('total')) < 1000");
	aud(w.s, 22, "max0", "event('Order').max(property('total')) < 1000");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	send(&w, 2, w.now, "Order", "{\"total\": \"none\"}", NULL);
	assert_true(member(w.s, "neg", 2));
	assert_false(member(w.s, "avg0", 2));
	assert_false(member(w.s, "max0", 2));
	world_release(&w);
}

/* ---- windows and the clock ---- */

static void test_space__day_window_slides_with_the_clock(void **unused)
{
	struct world w;
	struct audience_ct_info ci;
	int64_t seq;

	(void)unused;
	world_init(&w);
	ct(w.s, 1, "{\"key\": \"orders_2d\", \"kind\": \"count\", \"event\": \"Order\", "
	   "\"window\": \"2 days\"}");
	aud(w.s, 1, "recent", "event('Order').within(2 days).count() >= 1");
	aud(w.s, 2, "lapsed", "event('Order').exists() and not event('Order').within(2 days).exists()");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	assert_int_equal(audience_space_tick(w.s, w.ps, w.now), 0);

	w.now = T0 + 10 * HOUR;
	seq = send(&w, 3, w.now, "Order", NULL, NULL);
	assert_true(member(w.s, "recent", 3));
	assert_false(member(w.s, "lapsed", 3));
	assert_one_change(w.s, 1, 3, true, AUDIENCE_CAUSE_EVENT, seq, w.now);
	assert_ct(w.s, "orders_2d", 3, w.now, "1");

	/* The next day the event is still in: nothing changes. */
	assert_int_equal(audience_space_tick(w.s, w.ps, T0 + DAY + 5 * HOUR), 1);
	assert_true(member(w.s, "recent", 3));
	assert_no_changes(w.s);
	assert_ct(w.s, "orders_2d", 3, T0 + 2 * DAY - 1, "1");
	/* The same day again: nothing to do. */
	assert_int_equal(audience_space_tick(w.s, w.ps, T0 + DAY + 6 * HOUR), 0);
	/* Two days on, it left the window: recent left, lapsed came. */
	assert_int_equal(audience_space_tick(w.s, w.ps, T0 + 2 * DAY), 1);
	assert_false(member(w.s, "recent", 3));
	assert_true(member(w.s, "lapsed", 3));
	{
		size_t n;
		struct audience_change *c = take(w.s, &n);

		assert_int_equal(n, 2);
		assert_has_change(c, n, 1, 3, false, AUDIENCE_CAUSE_WINDOW, 0, T0 + 2 * DAY);
		assert_has_change(c, n, 2, 3, true, AUDIENCE_CAUSE_WINDOW, 0, T0 + 2 * DAY);
		free(c);
	}
	assert_int_equal(aud_size(w.s, "recent"), 0);
	assert_ct(w.s, "orders_2d", 3, T0 + 2 * DAY, "0");
	audience_space_ct(w.s, 0, &ci);
	assert_string_equal(ci.key, "orders_2d");
	/* A new order brings it back, at the time the space is told. */
	w.now = T0 + 3 * DAY;
	seq = send(&w, 3, w.now - 5 * HOUR, "Order", NULL, NULL);
	assert_true(member(w.s, "recent", 3));
	assert_false(member(w.s, "lapsed", 3));
	/* An event already out of the window when it arrives counts for nothing. */
	free(audience_space_take_changes(w.s, &(size_t){ 0 }));
	send(&w, 4, w.now - 2 * DAY, "Order", NULL, NULL);
	assert_false(member(w.s, "recent", 4));
	assert_true(member(w.s, "lapsed", 4));
	assert_ct(w.s, "orders_2d", 4, w.now, "0");
	world_release(&w);
}

static void test_space__hour_window_slides_with_the_clock(void **unused)
{
	struct world w;

	(void)unused;
	world_init(&w);
	aud(w.s, 1, "pinged", "event('Ping').within(2 hours).exists()");
	aud(w.s, 2, "busy", "event('Ping').within(2 hours).count() >= 2");
	aud(w.s, 3, "day", "event('Ping').within(1 day).exists()");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	audience_space_tick(w.s, w.ps, w.now);

	w.now = T0 + 10 * HOUR + 30 * MINUTE;
	send(&w, 1, w.now, "Ping", NULL, NULL);
	send(&w, 1, w.now - HOUR, "Ping", NULL, NULL);	/* hour 9 */
	assert_true(member(w.s, "busy", 1));
	free(audience_space_take_changes(w.s, &(size_t){ 0 }));
	/* At hour 11 the event of hour 9 has left: busy goes, pinged stays. */
	assert_int_equal(audience_space_tick(w.s, w.ps, T0 + 11 * HOUR), 1);
	assert_true(member(w.s, "pinged", 1));
	assert_one_change(w.s, 2, 1, false, AUDIENCE_CAUSE_WINDOW, 0, T0 + 11 * HOUR);
	assert_int_equal(audience_space_tick(w.s, w.ps, T0 + 11 * HOUR + 59 * MINUTE), 0);
	assert_true(member(w.s, "pinged", 1));
	assert_no_changes(w.s);
	assert_int_equal(audience_space_tick(w.s, w.ps, T0 + 12 * HOUR), 1);
	assert_false(member(w.s, "pinged", 1));
	assert_true(member(w.s, "day", 1));
	assert_one_change(w.s, 1, 1, false, AUDIENCE_CAUSE_WINDOW, 0, T0 + 12 * HOUR);
	/* A new day evaluates the day windows too. */
	assert_int_equal(audience_space_tick(w.s, w.ps, T0 + DAY), 1);
	assert_false(member(w.s, "day", 1));
	assert_one_change(w.s, 3, 1, false, AUDIENCE_CAUSE_WINDOW, 0, T0 + DAY);
	world_release(&w);
}

static void test_space__a_future_event_counts_once_its_bucket_comes(void **unused)
{
	struct world w;

	(void)unused;
	world_init(&w);
	aud(w.s, 1, "recent", "event('Order').within(2 days).count() >= 1");
	aud(w.s, 2, "hourly", "event('Ping').within(1 hour).exists()");
	ct(w.s, 1, "{\"key\": \"orders_2d\", \"kind\": \"count\", \"event\": \"Order\", "
	   "\"window\": \"2 days\"}");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	w.now = T0 + 5 * DAY + 20 * HOUR;
	audience_space_tick(w.s, w.ps, w.now);
	/* Stamped tomorrow (a client clock ahead). */
	send(&w, 1, T0 + 6 * DAY + HOUR, "Order", NULL, NULL);
	send(&w, 1, w.now + 3 * HOUR + 10 * MINUTE, "Ping", NULL, NULL);
	assert_false(member(w.s, "recent", 1));
	assert_false(member(w.s, "hourly", 1));
	assert_ct(w.s, "orders_2d", 1, w.now, "0");
	assert_no_changes(w.s);
	audience_space_tick(w.s, w.ps, T0 + 5 * DAY + 22 * HOUR);
	assert_no_changes(w.s);
	audience_space_tick(w.s, w.ps, T0 + 5 * DAY + 23 * HOUR);
	assert_one_change(w.s, 2, 1, true, AUDIENCE_CAUSE_WINDOW, 0, T0 + 5 * DAY + 23 * HOUR);
	audience_space_tick(w.s, w.ps, T0 + 6 * DAY);
	assert_true(member(w.s, "recent", 1));
	assert_false(member(w.s, "hourly", 1));
	{
		size_t n;
		struct audience_change *c = take(w.s, &n);

		assert_int_equal(n, 2);
		assert_has_change(c, n, 2, 1, false, AUDIENCE_CAUSE_WINDOW, 0, T0 + 6 * DAY);
		assert_has_change(c, n, 1, 1, true, AUDIENCE_CAUSE_WINDOW, 0, T0 + 6 * DAY);
		free(c);
	}
	assert_ct(w.s, "orders_2d", 1, T0 + 6 * DAY, "1");
	audience_space_tick(w.s, w.ps, T0 + 7 * DAY + 23 * HOUR);
	assert_true(member(w.s, "recent", 1));
	audience_space_tick(w.s, w.ps, T0 + 8 * DAY);
	assert_false(member(w.s, "recent", 1));
	assert_one_change(w.s, 1, 1, false, AUDIENCE_CAUSE_WINDOW, 0, T0 + 8 * DAY);
	world_release(&w);
}

/* ---- merges and forgetting ---- */

static void test_space__merge_folds_states_and_the_absorbed_profile_leaves(void **unused)
{
	struct world w;
	struct audience_change *c;
	size_t n;

	(void)unused;
	world_init(&w);
	ct(w.s, 1, "{\"key\": \"orders\", \"kind\": \"count\", \"event\": \"Order\"}");
	ct(w.s, 2, "{\"key\": \"pages\", \"kind\": \"unique_list\", \"event\": \"View\", "
	   "\"property\": \"page\", \"window\": \"3 days\"}");
	aud(w.s, 1, "buyer", "event('Order').exists()");
	aud(w.s, 2, "two_pro", "computed('orders') >= 2 and trait('plan') = 'pro'");
	aud(w.s, 3, "browser", "event('View').within(3 days).count() >= 2");
	aud(w.s, 4, "lonely", "not event('View').exists()");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	send(&w, 1, w.now, "Order", NULL, NULL);
	send(&w, 1, w.now, "View", "{\"page\": \"home\"}", NULL);
	send(&w, 2, w.now, "Order", NULL, "{\"plan\": \"pro\"}");
	send(&w, 2, w.now - DAY, "View", "{\"page\": \"docs\"}", NULL);
	send(&w, 3, w.now, "Other", NULL, NULL);
	assert_true(member(w.s, "buyer", 1));
	assert_true(member(w.s, "buyer", 2));
	assert_false(member(w.s, "two_pro", 2));
	assert_false(member(w.s, "browser", 1));
	assert_true(member(w.s, "lonely", 3));
	free(audience_space_take_changes(w.s, &n));

	w.now += HOUR;
	profile_store_merge(w.ps, 1, 2);
	audience_space_merge(w.s, w.ps, 1, 2, 500, w.now);
	assert_true(member(w.s, "two_pro", 1));
	assert_true(member(w.s, "browser", 1));
	assert_false(member(w.s, "buyer", 2));
	assert_ct(w.s, "orders", 1, w.now, "2");
	assert_ct(w.s, "orders", 2, w.now, "0");
	assert_ct(w.s, "pages", 1, w.now, "[\"docs\",\"home\"]");
	assert_ct(w.s, "pages", 2, w.now, "[]");
	assert_int_equal(aud_size(w.s, "buyer"), 1);
	c = take(w.s, &n);
	assert_int_equal(n, 3);
	/* The absorbed one leaves first, then the survivor's new memberships. */
	assert_change(&c[0], 1, 2, false, AUDIENCE_CAUSE_MERGE, 500, w.now);
	assert_has_change(c + 1, 2, 2, 1, true, AUDIENCE_CAUSE_MERGE, 500, w.now);
	assert_has_change(c + 1, 2, 3, 1, true, AUDIENCE_CAUSE_MERGE, 500, w.now);
	free(c);
	/* The merged window slides as one: the docs view leaves after its day. */
	audience_space_tick(w.s, w.ps, T0 + 2 * DAY);
	assert_ct(w.s, "pages", 1, T0 + 2 * DAY, "[\"home\"]");
	assert_false(member(w.s, "browser", 1));
	/* A merge into a profile without events makes it lose lonely. */
	profile_store_merge(w.ps, 3, 1);
	audience_space_merge(w.s, w.ps, 3, 1, 501, T0 + 2 * DAY);
	assert_false(member(w.s, "lonely", 3));
	assert_true(member(w.s, "two_pro", 3));
	assert_false(member(w.s, "two_pro", 1));
	assert_int_equal(aud_size(w.s, "two_pro"), 1);
	assert_ct(w.s, "orders", 3, w.now, "2");
	/* Merging a profile with itself, or with none, does nothing. */
	free(audience_space_take_changes(w.s, &n));
	audience_space_merge(w.s, w.ps, 3, 3, 502, w.now);
	audience_space_merge(w.s, w.ps, 3, 0, 502, w.now);
	audience_space_merge(w.s, w.ps, 0, 3, 502, w.now);
	assert_no_changes(w.s);
	assert_ct(w.s, "orders", 3, w.now, "2");
	world_release(&w);
}

static void test_space__forget_with_erase_drops_memberships_and_pending_changes(void **unused)
{
	struct world w;
	struct audience_change *c;
	struct audience_space_stats st;
	size_t n;

	(void)unused;
	world_init(&w);
	ct(w.s, 1, "{\"key\": \"orders\", \"kind\": \"count\", \"event\": \"Order\"}");
	aud(w.s, 1, "buyer", "event('Order').exists()");
	aud(w.s, 2, "pro", "trait('plan') = 'pro'");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	send(&w, 1, w.now, "Order", NULL, "{\"plan\": \"pro\"}");
	send(&w, 2, w.now, "Order", NULL, "{\"plan\": \"pro\"}");
	assert_int_equal(aud_size(w.s, "buyer"), 2);

	audience_space_forget(w.s, 1, true);
	assert_false(member(w.s, "buyer", 1));
	assert_false(member(w.s, "pro", 1));
	assert_int_equal(aud_size(w.s, "buyer"), 1);
	assert_int_equal(aud_size(w.s, "pro"), 1);
	assert_ct(w.s, "orders", 1, w.now, "0");
	assert_ct(w.s, "orders", 2, w.now, "1");
	c = take(w.s, &n);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(c[i].profile_id, 2);
	free(c);
	audience_space_stats(w.s, &st);
	assert_int_equal(st.members, 2);
	assert_int_equal(st.states, 1);	/* profile 2's, in the aggregate orders and buyer share */
	assert_int_equal(st.aggregates, 1);
	/* Forgetting a profile the space never saw is harmless. */
	audience_space_forget(w.s, 42, true);
	assert_no_changes(w.s);
	world_release(&w);
}

static void test_space__forget_without_erase_drops_only_state(void **unused)
{
	struct world w;
	struct audience_change *c;
	int64_t *seqs;
	size_t n;

	(void)unused;
	world_init(&w);
	ct(w.s, 1, "{\"key\": \"orders\", \"kind\": \"count\", \"event\": \"Order\"}");
	aud(w.s, 1, "two", "computed('orders') >= 2");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	send(&w, 1, w.now, "Order", NULL, NULL);
	send(&w, 1, w.now, "Order", NULL, NULL);
	assert_true(member(w.s, "two", 1));

	/* A split: state goes, memberships and recorded changes stay. */
	audience_space_forget(w.s, 1, false);
	assert_true(member(w.s, "two", 1));
	assert_ct(w.s, "orders", 1, w.now, "0");
	c = take(w.s, &n);
	assert_int_equal(n, 1);
	free(c);
	/* The caller rebuilds the profile, re-applies one event, evaluates: it leaves. */
	seqs = profile_store_forget(w.ps, 1, &n);
	assert_int_equal(n, 2);
	free(seqs);
	{
		struct profile_event e = { .seq = 1, .ts_us = w.now, .call = PROFILE_TRACK,
					   .name = "Order", .profile_id = 1 };

		assert_int_equal(profile_store_apply(w.ps, &e), 0);
		audience_space_event(w.s, w.ps, 1, 1, w.now, "Order", NULL, NULL, w.now, false);
	}
	assert_no_changes(w.s);
	audience_space_evaluate(w.s, w.ps, 1, 9, w.now, AUDIENCE_CAUSE_SPLIT);
	assert_false(member(w.s, "two", 1));
	assert_one_change(w.s, 1, 1, false, AUDIENCE_CAUSE_SPLIT, 9, w.now);
	assert_ct(w.s, "orders", 1, w.now, "1");
	world_release(&w);
}

/* ---- backfills ---- */

static void test_space__backfill_fills_new_definitions_then_settle_evaluates(void **unused)
{
	struct world w;
	struct audience_info info;
	struct audience_change *c;
	json_t *big = parse("{\"total\": 30}"), *small = parse("{\"total\": 3}");
	size_t n;

	(void)unused;
	world_init(&w);
	aud(w.s, 1, "pro", "trait('plan') = 'pro'");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	/* Events the space has no use for yet. */
	send(&w, 1, T0 - 3 * DAY, "Order", "{\"total\": 30}", NULL);
	send(&w, 1, T0 - 2 * DAY, "Order", "{\"total\": 30}", NULL);
	send(&w, 2, T0 - 2 * DAY, "Order", "{\"total\": 3}", "{\"plan\": \"pro\"}");
	send(&w, 2, T0 - DAY, "Order", "{\"total\": 30}", NULL);
	send(&w, 3, T0 - DAY, "View", NULL, NULL);
	free(audience_space_take_changes(w.s, &n));
	assert_false(audience_space_pending(w.s));
	assert_false(audience_space_wants(w.s, "Order", false));

	ct(w.s, 1, "{\"key\": \"spend\", \"kind\": \"sum\", \"event\": \"Order\", \"property\": \"total\"}");
	aud(w.s, 2, "big", "event('Order').where(property('total') >= 10).count() >= 2");
	aud(w.s, 3, "big_pro", "audience('big') or audience('pro') and computed('spend') > 30");
	assert_true(audience_space_pending(w.s));
	assert_true(audience_space_wants(w.s, "Order", true));
	assert_false(audience_space_wants(w.s, "Order", false));
	assert_false(audience_space_wants(w.s, "View", true));
	audience_space_audience(w.s, aud_index(w.s, "big"), &info);
	assert_true(info.pending);
	/* A live event now feeds no pending aggregate and evaluates no waiting audience. */
	send(&w, 4, T0, "Order", "{\"total\": 30}", NULL);
	send(&w, 4, T0, "Order", "{\"total\": 30}", NULL);
	assert_false(member(w.s, "big", 4));
	assert_no_changes(w.s);
	/* The past, from the log (the caller replays every event, profile 4's included). */
	audience_space_backfill(w.s, 1, T0 - 3 * DAY, "Order", big, w.now);
	audience_space_backfill(w.s, 1, T0 - 2 * DAY, "Order", big, w.now);
	audience_space_backfill(w.s, 2, T0 - 2 * DAY, "Order", small, w.now);
	audience_space_backfill(w.s, 2, T0 - DAY, "Order", big, w.now);
	audience_space_backfill(w.s, 4, T0, "Order", big, w.now);
	audience_space_backfill(w.s, 4, T0, "Order", big, w.now);
	audience_space_backfill(w.s, 3, T0 - DAY, "View", NULL, w.now);
	audience_space_backfill(w.s, 0, T0, "Order", big, w.now);	/* no profile: ignored */
	w.now += MINUTE;
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	assert_false(audience_space_pending(w.s));
	assert_true(audience_space_wants(w.s, "Order", false));
	assert_true(member(w.s, "big", 1));
	assert_false(member(w.s, "big", 2));
	assert_true(member(w.s, "big", 4));
	assert_true(member(w.s, "big_pro", 1));
	assert_true(member(w.s, "big_pro", 2));	/* pro, and spent 33 */
	assert_false(member(w.s, "big_pro", 3));
	assert_ct(w.s, "spend", 2, w.now, "33.0");
	audience_space_audience(w.s, aud_index(w.s, "big_pro"), &info);
	assert_false(info.pending);
	assert_int_equal(info.computed_us, w.now);
	assert_int_equal(info.size, 3);
	c = take(w.s, &n);
	assert_int_equal(n, 5);
	for (size_t i = 0; i < n; i++) {
		assert_true(c[i].entered);
		assert_int_equal(c[i].cause, AUDIENCE_CAUSE_DEFINITION);
		assert_int_equal(c[i].seq, 0);
		assert_int_equal(c[i].at_us, w.now);
		assert_true(c[i].audience_id == 2 || c[i].audience_id == 3);
	}
	free(c);
	/* pro was not waiting: settling did not record it again. */
	assert_true(member(w.s, "pro", 2));

	/* An audience sharing a live aggregate needs no backfill, only a settle. */
	aud(w.s, 4, "big_too", "event('Order').where(property('total') >= 10).count() >= 2 and "
		 "trait('plan') = 'pro'");
	assert_false(audience_space_pending(w.s));
	audience_space_audience(w.s, aud_index(w.s, "big_too"), &info);
	assert_true(info.pending);
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	assert_false(member(w.s, "big_too", 1));
	assert_no_changes(w.s);
	send(&w, 1, w.now, NULL, NULL, "{\"plan\": \"pro\"}");
	assert_true(member(w.s, "big_too", 1));
	/* Settling with nothing waiting does nothing. */
	free(audience_space_take_changes(w.s, &n));
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	assert_no_changes(w.s);
	json_decref(big);
	json_decref(small);
	world_release(&w);
}

static void test_space__redefining_a_computed_trait_re_evaluates_its_users(void **unused)
{
	struct world w;
	struct audience_info info;

	(void)unused;
	world_init(&w);
	ct(w.s, 1, "{\"key\": \"c\", \"kind\": \"count\", \"event\": \"X\"}");
	/* The event condition reads the aggregate c reads now. */
	aud(w.s, 1, "a", "computed('c') >= 5 or event('X').count() >= 1");
	aud(w.s, 2, "b", "computed('c') >= 1");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	send(&w, 1, w.now, "Y", NULL, NULL);
	assert_false(member(w.s, "a", 1));
	assert_false(member(w.s, "b", 1));

	/* c counts Y from now on: b waits for a settle, after a backfill of Y. */
	ct(w.s, 1, "{\"key\": \"c\", \"kind\": \"count\", \"event\": \"Y\"}");
	assert_true(audience_space_pending(w.s));
	audience_space_audience(w.s, aud_index(w.s, "b"), &info);
	assert_true(info.pending);
	audience_space_backfill(w.s, 1, w.now, "Y", NULL, w.now);
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	assert_true(member(w.s, "b", 1));
	assert_one_change(w.s, 2, 1, true, AUDIENCE_CAUSE_DEFINITION, 0, w.now);
	/* b reads Y events live now, X ones no more. */
	send(&w, 2, w.now, "X", NULL, NULL);
	assert_false(member(w.s, "b", 2));
	send(&w, 2, w.now, "Y", NULL, NULL);
	assert_true(member(w.s, "b", 2));
	free(audience_space_take_changes(w.s, &(size_t){ 0 }));
	/* a's own event('X') still reads X events. */
	send(&w, 1, w.now, "X", NULL, NULL);
	assert_true(member(w.s, "a", 1));
	assert_one_change(w.s, 1, 1, true, AUDIENCE_CAUSE_EVENT, w.seq, w.now);
	assert_ct(w.s, "c", 1, w.now, "1");
	world_release(&w);
}

/* ---- snapshots ---- */

/* The definitions of the snapshot tests, in a fresh space each time. */
static void snap_define(struct audience_space *s)
{
	ct(s, 1, "{\"key\": \"orders\", \"kind\": \"count\", \"event\": \"Order\"}");
	ct(s, 2, "{\"key\": \"pages\", \"kind\": \"unique_list\", \"event\": \"View\", "
	   "\"property\": \"page\", \"window\": \"2 days\"}");
	ct(s, 3, "{\"key\": \"last\", \"kind\": \"last\", \"event\": \"View\", \"property\": \"page\"}");
	aud(s, 1, "buyer", "event('Order').exists()");
	aud(s, 2, "recent", "event('View').within(6 hours).count() >= 2");
	aud(s, 3, "pro", "trait('plan') = 'pro' and computed('orders') >= 2");
}

static void snap_feed(struct world *w)
{
	static const char *const pages[] = { "{\"page\": \"home\"}", "{\"page\": \"docs\"}",
					      "{\"page\": \"blog\"}" };

	for (uint64_t pid = 1; pid <= 40; pid++) {
		for (uint64_t k = 0; k < pid % 4; k++)
			send(w, pid, w->now - (int64_t)k * HOUR, "Order", NULL,
			     k == 0 && pid % 3 == 0 ? "{\"plan\": \"pro\"}" : NULL);
		for (uint64_t k = 0; k < pid % 5; k++)
			send(w, pid, w->now - (int64_t)(k * 2) * HOUR, "View", pages[(pid + k) % 3],
			     NULL);
	}
}

static void assert_same_space(const struct audience_space *a, const struct audience_space *b,
			      int64_t now)
{
	struct audience_info ia, ib;

	assert_int_equal(audience_space_audiences(a), audience_space_audiences(b));
	for (size_t i = 0; i < audience_space_audiences(a); i++) {
		audience_space_audience(a, i, &ia);
		audience_space_audience(b, i, &ib);
		assert_string_equal(ia.key, ib.key);
		assert_int_equal(ia.size, ib.size);
		assert_int_equal(ia.computed_us, ib.computed_us);
		assert_int_equal(ia.pending, ib.pending);
		for (uint64_t pid = 0; pid <= 64; pid++)
			if (audience_space_member(a, i, pid) != audience_space_member(b, i, pid))
				fail_msg("audience '%s', profile %llu differs", ia.key,
					 (unsigned long long)pid);
	}
	assert_int_equal(audience_space_cts(a), audience_space_cts(b));
	for (size_t i = 0; i < audience_space_cts(a); i++)
		for (uint64_t pid = 0; pid <= 64; pid++) {
			json_t *va = audience_space_ct_value(a, i, pid, now);
			json_t *vb = audience_space_ct_value(b, i, pid, now);

			if (!json_equal(va, vb))
				fail_msg("computed trait %zu of profile %llu differs", i,
					 (unsigned long long)pid);
			json_decref(va);
			json_decref(vb);
		}
}

static void test_space__snapshot_restores_members_and_values(void **unused)
{
	struct world w;
	struct audience_space *r;
	struct audience_space_stats sa, sb;
	struct buf snap = BUF_INIT;
	size_t n;

	(void)unused;
	world_init(&w);
	snap_define(w.s);
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	w.now = T0 + 12 * HOUR;
	audience_space_tick(w.s, w.ps, w.now);
	snap_feed(&w);
	free(audience_space_take_changes(w.s, &n));
	assert_true(n > 10);
	assert_true(aud_size(w.s, "pro") > 0);
	assert_true(aud_size(w.s, "recent") > 0);
	audience_space_snapshot(w.s, &snap);

	r = audience_space_new();
	snap_define(r);
	assert_true(audience_space_pending(r));
	assert_int_equal(audience_space_restore(r, snap.data, snap.len), 0);
	assert_false(audience_space_pending(r));
	assert_same_space(w.s, r, w.now);
	audience_space_stats(w.s, &sa);
	audience_space_stats(r, &sb);
	assert_int_equal(sa.aggregates, sb.aggregates);
	assert_int_equal(sa.states, sb.states);
	assert_int_equal(sa.members, sb.members);
	/* Nothing is waiting: a settle records nothing. */
	audience_space_settle(r, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	assert_no_changes(r);
	/* The last tick came along: the same hour has nothing to do. */
	assert_int_equal(audience_space_tick(r, w.ps, w.now + MINUTE), 0);

	/* Both evolve the same: the same events, the same ticks, the same changes. */
	{
		struct audience_space *live = w.s;
		struct audience_change *ca, *cb;
		size_t na, nb;

		for (int round = 0; round < 2; round++) {
			struct audience_space *sp = round ? r : live;
			struct world v = w;

			v.s = sp;
			v.seq = 1000;
			send(&v, 5, v.now, "View", "{\"page\": \"home\"}", NULL);
			send(&v, 5, v.now, "View", "{\"page\": \"home\"}", NULL);
			send(&v, 3, v.now, "Order", NULL, NULL);
			/* The store saw each event twice; the traits are the same. */
			audience_space_tick(sp, w.ps, T0 + 18 * HOUR);
			audience_space_tick(sp, w.ps, T0 + 3 * DAY);
		}
		ca = take(live, &na);
		cb = take(r, &nb);
		assert_int_equal(na, nb);
		assert_true(na > 0);
		for (size_t i = 0; i < na; i++)
			assert_change(&cb[i], ca[i].audience_id, ca[i].profile_id, ca[i].entered,
				      ca[i].cause, ca[i].seq, ca[i].at_us);
		free(ca);
		free(cb);
		assert_same_space(live, r, T0 + 3 * DAY);
	}
	audience_space_free(r);

	/*
	 * Restore keeps only what still matches: an audience defined since, or
	 * defined differently, waits for the settle; a new aggregate stays
	 * pending.
	 */
	r = audience_space_new();
	snap_define(r);
	aud(r, 3, "pro", "trait('plan') = 'pro' and computed('orders') >= 3");
	aud(r, 4, "viewer", "event('View').exists()");
	assert_int_equal(audience_space_restore(r, snap.data, snap.len), 0);
	assert_true(audience_space_pending(r));	/* event('View'), all time, is new */
	{
		struct audience_info info;

		audience_space_audience(r, aud_index(r, "buyer"), &info);
		assert_false(info.pending);
		assert_int_equal(info.size, aud_size(w.s, "buyer"));
		audience_space_audience(r, aud_index(r, "pro"), &info);
		assert_true(info.pending);
		assert_int_equal(info.size, 0);
		audience_space_audience(r, aud_index(r, "viewer"), &info);
		assert_true(info.pending);
	}
	audience_space_free(r);

	/* A computed trait defined differently since: what reads it waits for a backfill. */
	r = audience_space_new();
	snap_define(r);
	ct(r, 1, "{\"key\": \"orders\", \"kind\": \"count\", \"event\": \"Order\", "
	   "\"window\": \"30 days\"}");
	assert_int_equal(audience_space_restore(r, snap.data, snap.len), 0);
	assert_true(audience_space_pending(r));
	{
		struct audience_info info;

		audience_space_audience(r, aud_index(r, "pro"), &info);
		assert_true(info.pending);
		audience_space_audience(r, aud_index(r, "buyer"), &info);
		assert_false(info.pending);
	}
	audience_space_free(r);
	buf_release(&snap);

	/* An empty space round-trips too. */
	{
		struct audience_space *e = audience_space_new(), *f = audience_space_new();

		audience_space_snapshot(e, &snap);
		assert_int_equal(audience_space_restore(f, snap.data, snap.len), 0);
		audience_space_free(e);
		audience_space_free(f);
		buf_release(&snap);
	}
	world_release(&w);
}

static void test_space__a_damaged_snapshot_restores_nothing(void **unused)
{
	struct world w;
	struct audience_space *r;
	struct buf snap = BUF_INIT;
	char *bad;
	size_t n;

	(void)unused;
	world_init(&w);
	snap_define(w.s);
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	w.now = T0 + 12 * HOUR;
	snap_feed(&w);
	free(audience_space_take_changes(w.s, &n));
	audience_space_snapshot(w.s, &snap);
	bad = malloc(snap.len + 1);

	r = audience_space_new();
	snap_define(r);
	/* Every truncation. */
	for (size_t len = 0; len < snap.len; len++) {
		memcpy(bad, snap.data, len);
		if (audience_space_restore(r, bad, len) != WEFT_EINVAL)
			fail_msg("a snapshot cut to %zu of %zu bytes restores", len, snap.len);
	}
	/* A byte more, another magic or version, a count or length out of bounds. */
	memcpy(bad, snap.data, snap.len);
	bad[snap.len] = 0;
	assert_int_equal(audience_space_restore(r, bad, snap.len + 1), WEFT_EINVAL);
	for (size_t at = 0; at < 8; at++) {
		memcpy(bad, snap.data, snap.len);
		bad[at] ^= 0x20;
		assert_int_equal(audience_space_restore(r, bad, snap.len), WEFT_EINVAL);
	}
	for (size_t at = 24; at < 32; at++) {	/* the aggregates' count, the first sig's length */
		memcpy(bad, snap.data, snap.len);
		bad[at] ^= 0x40;
		assert_int_equal(audience_space_restore(r, bad, snap.len), WEFT_EINVAL);
	}
	{
		/* The first state's profile id made 0. */
		uint32_t slen;
		size_t at;

		memcpy(bad, snap.data, snap.len);
		memcpy(&slen, bad + 28, 4);
		at = 32 + slen + 8;
		memset(bad + at, 0, 8);
		assert_int_equal(audience_space_restore(r, bad, snap.len), WEFT_EINVAL);
	}
	/* Nothing was restored by any of them. */
	assert_true(audience_space_pending(r));
	for (size_t i = 0; i < audience_space_audiences(r); i++) {
		struct audience_info info;

		audience_space_audience(r, i, &info);
		assert_true(info.pending);
		assert_int_equal(info.size, 0);
		for (uint64_t pid = 1; pid <= 40; pid++)
			assert_false(audience_space_member(r, i, pid));
	}
	for (size_t i = 0; i < audience_space_cts(r); i++) {
		struct audience_ct_info ci;

		audience_space_ct(r, i, &ci);
		assert_int_equal(ci.profiles, 0);
	}
	/* And the whole one still restores afterwards. */
	assert_int_equal(audience_space_restore(r, snap.data, snap.len), 0);
	assert_same_space(w.s, r, w.now);
	free(bad);
	buf_release(&snap);
	audience_space_free(r);
	world_release(&w);
}

/* ---- previews ---- */

static void test_space__preview_answers_size_and_sample_and_leaves_nothing(void **unused)
{
	struct world w;
	struct audience_space_stats before, after;
	uint64_t size, sample[4];
	size_t nsample, n;
	char err[512];

	(void)unused;
	world_init(&w);
	aud(w.s, 1, "pro", "trait('plan') = 'pro'");
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	for (uint64_t pid = 1; pid <= 10; pid++)
		send(&w, pid, w.now, "Order", NULL, pid % 2 ? "{\"plan\": \"pro\"}" : NULL);
	free(audience_space_take_changes(w.s, &n));
	audience_space_stats(w.s, &before);

	assert_int_equal(audience_space_preview_begin(w.s, "event('Order').count() >= 1 and "
						      "audience('pro')", err, sizeof(err)), 0);
	assert_int_equal(audience_space_audiences(w.s), 1);
	assert_int_equal(audience_space_audience_find(w.s, ""), -1);
	assert_int_equal(aud_index(w.s, "pro"), 0);
	assert_true(audience_space_pending(w.s));
	for (uint64_t pid = 1; pid <= 10; pid++)
		audience_space_backfill(w.s, pid, w.now, "Order", NULL, w.now);
	audience_space_preview_end(w.s, w.ps, w.now, &size, sample, 3, &nsample);
	assert_int_equal(size, 5);
	assert_int_equal(nsample, 3);
	assert_int_equal(sample[0], 1);
	assert_int_equal(sample[1], 3);
	assert_int_equal(sample[2], 5);
	assert_int_equal(audience_space_audiences(w.s), 1);
	assert_false(audience_space_pending(w.s));
	assert_no_changes(w.s);
	audience_space_stats(w.s, &after);
	assert_int_equal(after.aggregates, before.aggregates);
	assert_int_equal(after.members, before.members);
	assert_false(audience_space_wants(w.s, "Order", false));

	/* A preview reading nothing new needs no backfill. */
	assert_int_equal(audience_space_preview_begin(w.s, "not audience('pro')", err, sizeof(err)),
			 0);
	assert_false(audience_space_pending(w.s));
	audience_space_preview_end(w.s, w.ps, w.now, &size, sample, 4, &nsample);
	assert_int_equal(size, 5);
	assert_int_equal(nsample, 4);
	assert_int_equal(sample[3], 8);
	assert_no_changes(w.s);
	/* A bad one is refused with a message and leaves nothing behind. */
	assert_int_equal(audience_space_preview_begin(w.s, "audience('nope')", err, sizeof(err)),
			 WEFT_EINVAL);
	assert_non_null(strstr(err, "no audience 'nope'"));
	audience_space_preview_end(w.s, w.ps, w.now, &size, sample, 4, &nsample);
	assert_int_equal(size, 0);
	assert_int_equal(nsample, 0);
	assert_int_equal(audience_space_audiences(w.s), 1);
	/* Live events during a preview change no listed membership through it. */
	send(&w, 11, w.now, NULL, NULL, "{\"plan\": \"pro\"}");
	assert_one_change(w.s, 1, 11, true, AUDIENCE_CAUSE_EVENT, w.seq, w.now);
	world_release(&w);
}

/* ---- a full recompute: adopting a recomputed space ---- */

static void adopt_define(struct audience_space *s)
{
	ct(s, 1, "{\"key\": \"spend\", \"kind\": \"sum\", \"event\": \"Order\", "
	   "\"property\": \"total\"}");
	aud(s, 1, "big", "event('Order').where(property('total') >= 10).count() >= 2");
	aud(s, 2, "pro", "trait('plan') = 'pro'");
	aud(s, 3, "big_or_pro", "audience('big') or audience('pro')");
	aud(s, 4, "spender", "computed('spend') > 25");
}

/* A space with adopt_define's definitions, filled with (pid, total) orders and settled. */
static struct audience_space *adopt_fresh(struct world *w, const uint64_t *pids,
					  const int *totals, size_t n)
{
	struct audience_space *fresh = audience_space_new();
	size_t nch;

	adopt_define(fresh);
	for (size_t i = 0; i < n; i++) {
		json_t *p = json_pack("{si}", "total", totals[i]);

		audience_space_backfill(fresh, pids[i], T0 - DAY, "Order", p, w->now);
		json_decref(p);
	}
	audience_space_settle(fresh, w->ps, w->now, AUDIENCE_CAUSE_RECOMPUTE);
	/* Its own changes are everyone entering: adopting must not take them. */
	assert_true(audience_space_cts(fresh) == 1 && audience_space_audiences(fresh) == 4);
	nch = 0;
	for (size_t i = 0; i < audience_space_audiences(fresh); i++) {
		struct audience_info info;

		audience_space_audience(fresh, i, &info);
		nch += info.size;
	}
	assert_true(nch > 0);
	return fresh;
}

static void test_space__adopt_takes_recomputed_members_and_records_the_differences(void **unused)
{
	static const uint64_t pids[] = { 1, 2, 3, 3, 3 };
	static const int totals[] = { 20, 20, 5, 30, 30 };
	struct world w;
	struct audience_space *fresh;
	struct audience_change *c;
	int64_t seq;
	size_t n;

	(void)unused;
	world_init(&w);
	adopt_define(w.s);
	audience_space_settle(w.s, w.ps, w.now, AUDIENCE_CAUSE_DEFINITION);
	/* The log as the incremental path saw it. */
	send(&w, 1, T0 - DAY, "Order", "{\"total\": 20}", NULL);
	send(&w, 1, T0 - DAY, "Order", "{\"total\": 20}", NULL);
	send(&w, 2, T0 - DAY, "Order", "{\"total\": 20}", "{\"plan\": \"pro\"}");
	send(&w, 3, T0 - DAY, "Order", "{\"total\": 5}", NULL);
	free(take(w.s, &n));
	assert_true(member(w.s, "big", 1));
	assert_true(member(w.s, "spender", 1));
	assert_false(member(w.s, "big", 3));
	/* Changes not yet taken when the recompute comes stay, ahead of its own. */
	seq = send(&w, 4, T0, NULL, NULL, "{\"plan\": \"pro\"}");

	/* The log as a recompute reads it: profile 1's second order is gone, 3 has two more. */
	w.now += MINUTE;
	fresh = adopt_fresh(&w, pids, totals, sizeof(pids) / sizeof(pids[0]));
	audience_space_adopt(w.s, fresh, w.now);
	audience_space_free(fresh);
	c = take(w.s, &n);
	assert_int_equal(n, 2 + 6);
	assert_has_change(c, 2, aud_id(w.s, "pro"), 4, true, AUDIENCE_CAUSE_EVENT, seq, T0);
	assert_has_change(c, 2, aud_id(w.s, "big_or_pro"), 4, true, AUDIENCE_CAUSE_EVENT, seq, T0);
	for (size_t i = 2; i < n; i++)
		assert_true(c[i].audience_id != aud_id(w.s, "pro"));
	assert_has_change(c + 2, 6, aud_id(w.s, "big"), 1, false, AUDIENCE_CAUSE_RECOMPUTE, 0,
			  w.now);
	assert_has_change(c + 2, 6, aud_id(w.s, "big"), 3, true, AUDIENCE_CAUSE_RECOMPUTE, 0,
			  w.now);
	for (size_t i = 2; i < n; i++)
		if (c[i].audience_id == aud_id(w.s, "big_or_pro") ||
		    c[i].audience_id == aud_id(w.s, "spender"))
			assert_change(&c[i], c[i].audience_id, c[i].profile_id == 1 ? 1 : 3,
				      c[i].profile_id != 1, AUDIENCE_CAUSE_RECOMPUTE, 0, w.now);
	free(c);
	/* The recomputed members, sizes and values are the space's now. */
	assert_false(member(w.s, "big", 1));
	assert_true(member(w.s, "big", 3));
	assert_int_equal(aud_size(w.s, "big"), 1);
	assert_int_equal(aud_size(w.s, "pro"), 2);
	assert_int_equal(aud_size(w.s, "big_or_pro"), 3);
	assert_int_equal(aud_size(w.s, "spender"), 1);
	assert_true(member(w.s, "spender", 3));
	assert_ct(w.s, "spend", 1, w.now, "20.0");
	assert_ct(w.s, "spend", 3, w.now, "65.0");

	/* The adopted states live on: profile 1's next order brings it back. */
	seq = send(&w, 1, w.now, "Order", "{\"total\": 20}", NULL);
	assert_true(member(w.s, "big", 1));
	assert_true(member(w.s, "big_or_pro", 1));
	assert_true(member(w.s, "spender", 1));
	assert_ct(w.s, "spend", 1, w.now, "40.0");
	c = take(w.s, &n);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		assert_change(&c[i], c[i].audience_id, 1, true, AUDIENCE_CAUSE_EVENT, seq, w.now);
	free(c);

	/* A recomputed space that agrees changes nothing and records nothing. */
	{
		static const uint64_t pids2[] = { 1, 1, 2, 3, 3, 3 };
		static const int totals2[] = { 20, 20, 20, 5, 30, 30 };

		fresh = adopt_fresh(&w, pids2, totals2, sizeof(pids2) / sizeof(pids2[0]));
		audience_space_adopt(w.s, fresh, w.now);
		audience_space_free(fresh);
		assert_no_changes(w.s);
		assert_int_equal(aud_size(w.s, "big"), 2);
		assert_int_equal(aud_size(w.s, "big_or_pro"), 4);
		assert_ct(w.s, "spend", 3, w.now, "65.0");
	}
	world_release(&w);
}

/* ---- the property: incremental equals recomputed ---- */

#define NPROF 200
#define NEV 2500

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

static const char *const prop_cts[] = {
	"{\"key\": \"orders_7d\", \"kind\": \"count\", \"event\": \"Order\", \"window\": \"7 days\"}",
	"{\"key\": \"spend\", \"kind\": \"sum\", \"event\": \"Order\", \"property\": \"total\"}",
	"{\"key\": \"avg_eur\", \"kind\": \"avg\", \"event\": \"Order\", \"property\": \"total\", "
	"\"where\": \"property('currency') = 'EUR'\"}",
	"{\"key\": \"max_3d\", \"kind\": \"max\", \"event\": \"Order\", \"property\": \"total\", "
	"\"window\": \"3 days\"}",
	"{\"key\": \"min_all\", \"kind\": \"min\", \"event\": \"Order\", \"property\": \"total\"}",
	"{\"key\": \"views_6h\", \"kind\": \"count\", \"event\": \"View\", \"window\": \"6 hours\"}",
	"{\"key\": \"last_page\", \"kind\": \"last\", \"event\": \"View\", \"property\": \"page\"}",
	"{\"key\": \"first_page\", \"kind\": \"first\", \"event\": \"View\", \"property\": \"page\"}",
	"{\"key\": \"top_page\", \"kind\": \"most_frequent\", \"event\": \"View\", "
	"\"property\": \"page\", \"window\": \"2 days\"}",
	"{\"key\": \"pages\", \"kind\": \"unique_list\", \"event\": \"View\", \"property\": \"page\"}",
	/* Defined halfway through, so backfilled in the incremental run too. */
	"{\"key\": \"mid_ct\", \"kind\": \"unique_count\", \"event\": \"View\", "
	"\"property\": \"page\", \"window\": \"30 hours\"}",
};
#define PROP_MID_CTS 1

static const struct {
	const char *key, *src;
} prop_auds[] = {
	{ "pro", "trait('plan') = 'pro'" },
	{ "not_pro", "not trait('plan') = 'pro'" },
	{ "big_recent", "event('Order').where(property('total') > 50).within(2 days).count() >= 2" },
	{ "spender", "computed('spend') >= 200" },
	{ "active", "event('View').within(5 hours).exists()" },
	{ "vip", "audience('pro') and audience('spender')" },
	{ "lapsed", "event('Order').exists() and not event('Order').within(3 days).exists()" },
	{ "eur", "event('Order').where(property('currency') in ('EUR', 'GBP'))"
		 ".sum(property('total')) > 100" },
	{ "age", "trait('age') >= 30 and trait('age') < 50 or trait('tags').contains('beta')" },
	{ "jan", "event('Signup').between('2026-01-06', '2026-01-09').exists()" },
	{ "viewer", "computed('views_6h') >= 3 or audience('vip')" },
	{ "never_signed", "event('Signup').count() = 0" },
	{ "pricey", "event('Order').within(30 hours).avg(property('total')) > 60 and "
		    "computed('max_3d') >= 90" },
	{ "cheap", "event('Order').min(property('total')) <= 5 and not audience('eur')" },
	{ "docs", "computed('last_page') = 'docs' or computed('pages').contains('pricing') and "
		  "computed('top_page') in ('home', 'blog')" },
	/* Defined halfway through. */
	{ "mid", "event('View').where(property('page') = 'home').within(36 hours).count() >= 1 "
		 "and not trait('plan') = 'free'" },
	{ "mid_ref", "computed('mid_ct') >= 2 or audience('viewer') and not audience('lapsed')" },
};
#define PROP_MID_AUDS 2
#define PROP_NCTS (sizeof(prop_cts) / sizeof(prop_cts[0]))
#define PROP_NAUDS (sizeof(prop_auds) / sizeof(prop_auds[0]))

/* Defines the computed traits and audiences [from, to) of the lists above (ids: index + 1). */
static void prop_define(struct audience_space *s, size_t ct_from, size_t ct_to, size_t aud_from,
			size_t aud_to)
{
	for (size_t i = ct_from; i < ct_to; i++)
		ct(s, (int64_t)i + 1, prop_cts[i]);
	for (size_t i = aud_from; i < aud_to; i++)
		aud(s, (int64_t)i + 1, prop_auds[i].key, prop_auds[i].src);
}

struct pev {
	uint64_t pid;		/* the profile it went to then */
	int64_t ts;
	const char *name;
	json_t *props;
};

static uint64_t root_of(const uint64_t *parent, uint64_t p)
{
	while (parent[p] != p)
		p = parent[p];
	return p;
}

static json_t *prop_props(const char *name)
{
	static const char *const pages[] = { "home", "pricing", "docs", "blog", "about" };
	static const char *const currencies[] = { "EUR", "USD", "GBP" };
	json_t *p = json_object();

	if (strcmp(name, "Order") == 0) {
		/* Quarters: sums are exact whatever the order of addition. */
		if (rnd(10))
			json_object_set_new(p, "total", json_real((double)rnd(480) / 4));
		else
			json_object_set_new(p, "total", json_string("n/a"));
		if (rnd(4))
			json_object_set_new(p, "currency", json_string(currencies[rnd(3)]));
	} else if (strcmp(name, "View") == 0) {
		if (rnd(8))
			json_object_set_new(p, "page", json_string(pages[rnd(5)]));
	}
	return p;
}

static json_t *prop_traits(void)
{
	json_t *t = json_object();

	switch (rnd(6)) {
	case 0: json_object_set_new(t, "plan", json_string("pro")); break;
	case 1: json_object_set_new(t, "plan", json_string("free")); break;
	case 2: json_object_set_new(t, "plan", json_null()); break;
	case 3: json_object_set_new(t, "age", json_integer(10 + rnd(60))); break;
	case 4: json_object_set_new(t, "age", json_string("40")); break;
	default:
		json_object_set_new(t, "tags", rnd(2) ? json_pack("[ss]", "alpha", "beta")
						      : json_string(rnd(2) ? "beta-tester" : "x"));
		break;
	}
	return t;
}

/* Checks changes against the replayed log and the cause expected, then applies them. */
static void prop_replay(struct audience_space *s, bool log[][NPROF + 1],
			enum audience_cause cause, int64_t seq, int seed)
{
	size_t n;
	struct audience_change *c = take(s, &n);

	for (size_t i = 0; i < n; i++) {
		int64_t a = c[i].audience_id;

		if (a < 1 || a > (int64_t)PROP_NAUDS || !c[i].profile_id ||
		    c[i].profile_id > NPROF)
			fail_msg("seed %d: change for audience %lld profile %llu", seed, (long long)a,
				 (unsigned long long)c[i].profile_id);
		if (c[i].cause != cause || c[i].seq != seq)
			fail_msg("seed %d: change of '%s' cause %s seq %lld, expected %s seq %lld",
				 seed, prop_auds[a - 1].key, audience_cause_name(c[i].cause),
				 (long long)c[i].seq, audience_cause_name(cause), (long long)seq);
		if (log[a - 1][c[i].profile_id] == c[i].entered)
			fail_msg("seed %d: profile %llu %s '%s' twice", seed,
				 (unsigned long long)c[i].profile_id,
				 c[i].entered ? "entered" : "left", prop_auds[a - 1].key);
		log[a - 1][c[i].profile_id] = c[i].entered;
	}
	free(c);
}

static bool close_values(const json_t *a, const json_t *b)
{
	if (json_is_real(a) && json_is_real(b))
		return fabs(json_real_value(a) - json_real_value(b)) <=
		       1e-9 * (1 + fabs(json_real_value(a)));
	return json_equal(a, b);
}

/* One random run: the log so far, who absorbed whom, the replayed changes. */
struct prop {
	int seed;
	struct world w;
	struct pev *evs;
	size_t nev;
	uint64_t parent[NPROF + 1];
	bool log[PROP_NAUDS][NPROF + 1];
	bool mid;			/* the halfway definitions are in */
	uint64_t seen_in[PROP_NAUDS];	/* members met at the checkpoints, per audience */
};

/*
 * Compares the incremental space, ticked at now, with one defined now and
 * filled from the whole log by final profile: every membership, every
 * computed value, the changes' replay, and a few values counted from the
 * log here.
 */
static void prop_compare(struct prop *pr, int64_t now)
{
	struct audience_space *s = pr->w.s, *ref = audience_space_new();
	size_t ncts = pr->mid ? PROP_NCTS : PROP_NCTS - PROP_MID_CTS;
	size_t nauds = pr->mid ? PROP_NAUDS : PROP_NAUDS - PROP_MID_AUDS;
	int seed = pr->seed;

	prop_define(ref, 0, ncts, 0, nauds);
	assert_true(audience_space_pending(ref));
	for (size_t i = 0; i < pr->nev; i++)
		audience_space_backfill(ref, root_of(pr->parent, pr->evs[i].pid), pr->evs[i].ts,
					pr->evs[i].name, pr->evs[i].props, now);
	audience_space_settle(ref, pr->w.ps, now, AUDIENCE_CAUSE_DEFINITION);
	assert_false(audience_space_pending(ref));

	assert_int_equal(audience_space_audiences(s), nauds);
	assert_int_equal(audience_space_audiences(ref), nauds);
	for (size_t i = 0; i < nauds; i++) {
		struct audience_info ia, ib;
		uint64_t members[NPROF + 1];
		size_t nm;

		audience_space_audience(s, i, &ia);
		audience_space_audience(ref, i, &ib);
		assert_string_equal(ia.key, ib.key);
		assert_false(ia.pending);
		nm = audience_space_members(s, i, 0, members, NPROF + 1);
		assert_int_equal(nm, ia.size);
		for (size_t k = 0; k < nm; k++)
			assert_true(audience_space_member(s, i, members[k]));
		for (uint64_t pid = 1; pid <= NPROF; pid++) {
			bool in = audience_space_member(s, i, pid);

			if (in != audience_space_member(ref, i, pid))
				fail_msg("seed %d: profile %llu is %s '%s' (%s) incrementally, %s "
					 "recomputed", seed, (unsigned long long)pid,
					 in ? "in" : "not in", ia.key, ia.definition,
					 in ? "not" : "but in");
			if (in != pr->log[ia.id - 1][pid])
				fail_msg("seed %d: the changes of '%s' replay to %s for profile %llu",
					 seed, ia.key, in ? "out" : "in", (unsigned long long)pid);
			if (in && root_of(pr->parent, pid) != pid)
				fail_msg("seed %d: absorbed profile %llu is in '%s'", seed,
					 (unsigned long long)pid, ia.key);
		}
		assert_int_equal(ia.size, ib.size);
		pr->seen_in[ia.id - 1] += ia.size;
	}
	assert_int_equal(audience_space_cts(s), ncts);
	for (size_t i = 0; i < ncts; i++)
		for (uint64_t pid = 1; pid <= NPROF; pid++) {
			json_t *va = audience_space_ct_value(s, i, pid, now);
			json_t *vb = audience_space_ct_value(ref, i, pid, now);

			if (!close_values(va, vb)) {
				char *ta = json_dumps(va, JSON_ENCODE_ANY);
				char *tb = json_dumps(vb, JSON_ENCODE_ANY);
				struct audience_ct_info ci;

				audience_space_ct(s, i, &ci);
				fail_msg("seed %d: computed trait '%s' of profile %llu is %s "
					 "incrementally, %s recomputed", seed, ci.key,
					 (unsigned long long)pid, ta, tb);
			}
			json_decref(va);
			json_decref(vb);
		}

	/* A few values against the log, counted here. */
	for (uint64_t pid = 1; pid <= NPROF; pid++) {
		int64_t day = now / DAY, orders = 0;
		double spend = 0;
		char want[64], *got;
		struct profile_view v;
		bool pro = false;

		for (size_t i = 0; i < pr->nev; i++) {
			const struct pev *e = &pr->evs[i];
			const json_t *total = json_object_get(e->props, "total");

			if (root_of(pr->parent, e->pid) != pid || strcmp(e->name, "Order") != 0)
				continue;
			orders += e->ts / DAY > day - 7 && e->ts / DAY <= day;
			if (json_is_number(total))
				spend += json_number_value(total);
		}
		snprintf(want, sizeof(want), "%lld", (long long)orders);
		assert_ct(s, "orders_7d", pid, now, want);
		got = ct_text(s, "spend", pid, now);
		if (fabs(strtod(got, NULL) - spend) > 1e-6)
			fail_msg("seed %d: spend of %llu is %s, the log says %g", seed,
				 (unsigned long long)pid, got, spend);
		free(got);
		if (profile_store_view_traits(pr->w.ps, pid, &v) == 0)
			for (size_t k = 0; k < v.ntraits; k++)
				pro |= strcmp(v.traits[k].name, "plan") == 0 &&
				       strcmp(v.traits[k].json, "\"pro\"") == 0;
		profile_view_release(&v);
		assert_int_equal(member(s, "pro", pid), pro);
	}
	audience_space_free(ref);
}

/* One event of a random profile, into the store and the space. */
static void prop_event(struct prop *pr)
{
	static const char *const names[] = { "Order", "View", "View", "Signup" };
	struct world *w = &pr->w;
	struct pev *e = &pr->evs[pr->nev++];
	json_t *traits = rnd(4) == 0 ? prop_traits() : NULL;
	struct profile_event pe;
	uint32_t when = rnd(20);

	e->pid = root_of(pr->parent, 1 + rnd(NPROF));
	e->name = names[rnd(4)];
	e->props = prop_props(e->name);
	if (when < 2)		/* a few hours ahead (a client's clock) */
		e->ts = w->now + (int64_t)rnd(4 * 60) * MINUTE;
	else if (when < 3)	/* very late */
		e->ts = w->now - 20 * DAY + (int64_t)rnd(60) * MINUTE;
	else if (when < 10)	/* up to three days late */
		e->ts = w->now - (int64_t)rnd(3 * 24 * 60) * MINUTE;
	else			/* fresh */
		e->ts = w->now - (int64_t)rnd(3 * 60) * MINUTE;
	pe = (struct profile_event){
		.seq = ++w->seq, .ts_us = e->ts, .call = PROFILE_TRACK, .name = e->name,
		.traits = traits, .profile_id = e->pid,
	};
	assert_int_equal(profile_store_apply(w->ps, &pe), 0);
	audience_space_event(w->s, w->ps, e->pid, pe.seq, e->ts, e->name, e->props, traits, w->now,
			     true);
	json_decref(traits);
	prop_replay(w->s, pr->log, AUDIENCE_CAUSE_EVENT, pe.seq, pr->seed);
}

static void prop_run(int seed)
{
	struct prop *pr = calloc(1, sizeof(*pr));
	struct world *w = &pr->w;
	size_t nmerges = 0, steps = NEV + NEV / 25;

	pr->seed = seed;
	pr->evs = calloc(NEV, sizeof(*pr->evs));
	for (uint64_t p = 0; p <= NPROF; p++)
		pr->parent[p] = p;
	rng_state = (uint64_t)seed * 0x9E3779B97F4A7C15ULL + 1;
	world_init(w);
	w->now = T0 - DAY + (int64_t)rnd(24 * 60) * MINUTE;
	prop_define(w->s, 0, PROP_NCTS - PROP_MID_CTS, 0, PROP_NAUDS - PROP_MID_AUDS);
	audience_space_settle(w->s, w->ps, w->now, AUDIENCE_CAUSE_DEFINITION);
	audience_space_tick(w->s, w->ps, w->now);
	assert_no_changes(w->s);

	for (size_t step = 0; step < steps; step++) {
		/* About ten days in all, a few minutes a step. */
		w->now += (int64_t)rnd(11) * MINUTE + (int64_t)rnd(60) * 1000000LL;
		audience_space_tick(w->s, w->ps, w->now);
		prop_replay(w->s, pr->log, AUDIENCE_CAUSE_WINDOW, 0, seed);
		if (step == steps / 2) {
			/* New definitions, backfilled from the log as it is now. */
			prop_define(w->s, PROP_NCTS - PROP_MID_CTS, PROP_NCTS,
				    PROP_NAUDS - PROP_MID_AUDS, PROP_NAUDS);
			pr->mid = true;
			assert_true(audience_space_pending(w->s));
			assert_true(audience_space_wants(w->s, "View", true));
			assert_false(audience_space_wants(w->s, "Order", true));
			for (size_t i = 0; i < pr->nev; i++)
				audience_space_backfill(w->s, root_of(pr->parent, pr->evs[i].pid),
							pr->evs[i].ts, pr->evs[i].name,
							pr->evs[i].props, w->now);
			audience_space_settle(w->s, w->ps, w->now, AUDIENCE_CAUSE_DEFINITION);
			prop_replay(w->s, pr->log, AUDIENCE_CAUSE_DEFINITION, 0, seed);
		}
		if (rnd(25) == 0) {
			uint64_t a = root_of(pr->parent, 1 + rnd(NPROF));
			uint64_t b = root_of(pr->parent, 1 + rnd(NPROF));
			int64_t seq = ++w->seq;

			if (a != b) {
				profile_store_merge(w->ps, a, b);
				audience_space_merge(w->s, w->ps, a, b, seq, w->now);
				pr->parent[b] = a;
				nmerges++;
				prop_replay(w->s, pr->log, AUDIENCE_CAUSE_MERGE, seq, seed);
			}
		} else if (pr->nev < NEV) {
			prop_event(pr);
		}
		if (step % 300 == 299)
			prop_compare(pr, w->now);
	}
	assert_true(nmerges > 40);
	/* Soon after the last event, then a day and a half later. */
	for (int k = 0; k < 2; k++) {
		w->now += k ? 36 * HOUR + (int64_t)rnd(60) * MINUTE : (int64_t)rnd(90) * MINUTE;
		audience_space_tick(w->s, w->ps, w->now);
		prop_replay(w->s, pr->log, AUDIENCE_CAUSE_WINDOW, 0, seed);
		prop_compare(pr, w->now);
	}
	/* Every audience had members at some checkpoint: none is trivially empty. */
	for (size_t i = 0; i < PROP_NAUDS; i++)
		if (!pr->seen_in[i])
			fail_msg("seed %d: audience '%s' never had a member", seed, prop_auds[i].key);

	for (size_t i = 0; i < pr->nev; i++)
		json_decref(pr->evs[i].props);
	free(pr->evs);
	world_release(w);
	free(pr);
}

static void test_space__incremental_equals_recomputed_on_random_traffic(void **unused)
{
	(void)unused;
	for (int seed = 1; seed <= 6; seed++)
		prop_run(seed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_space__ct_validate_canonicalises_members_where_and_window),
		cmocka_unit_test(test_space__ct_validate_names_the_member_at_fault),
		cmocka_unit_test(test_space__definitions_are_listed_by_key_with_their_canonical_text),
		cmocka_unit_test(test_space__references_must_exist),
		cmocka_unit_test(test_space__a_definition_may_not_go_round_in_a_circle),
		cmocka_unit_test(test_space__removing_what_another_uses_is_a_conflict),
		cmocka_unit_test(test_space__events_update_members_values_and_record_changes),
		cmocka_unit_test(test_space__only_audiences_reading_what_changed_are_evaluated),
		cmocka_unit_test(test_space__a_new_profile_joins_audiences_true_of_an_empty_profile),
		cmocka_unit_test(test_space__a_profile_the_store_does_not_have_is_in_no_audience),
		cmocka_unit_test(test_space__trait_tests_follow_the_type_rules),
		cmocka_unit_test(test_space__event_conditions_aggregate_filter_and_window),
		cmocka_unit_test(test_space__day_window_slides_with_the_clock),
		cmocka_unit_test(test_space__hour_window_slides_with_the_clock),
		cmocka_unit_test(test_space__a_future_event_counts_once_its_bucket_comes),
		cmocka_unit_test(test_space__merge_folds_states_and_the_absorbed_profile_leaves),
		cmocka_unit_test(test_space__forget_with_erase_drops_memberships_and_pending_changes),
		cmocka_unit_test(test_space__forget_without_erase_drops_only_state),
		cmocka_unit_test(test_space__backfill_fills_new_definitions_then_settle_evaluates),
		cmocka_unit_test(test_space__redefining_a_computed_trait_re_evaluates_its_users),
		cmocka_unit_test(test_space__snapshot_restores_members_and_values),
		cmocka_unit_test(test_space__a_damaged_snapshot_restores_nothing),
		cmocka_unit_test(test_space__preview_answers_size_and_sample_and_leaves_nothing),
		cmocka_unit_test(test_space__adopt_takes_recomputed_members_and_records_the_differences),
		cmocka_unit_test(test_space__incremental_equals_recomputed_on_random_traffic),
	};

	return cmocka_run_group_tests_name("space", tests, NULL, NULL);
}
