/*
 * Unit tests for identity/: the matching rules on Segment's own worked
 * examples, aliases, group calls, blocked values, caps and windowed limits,
 * the explanation records, and two properties checked against independent
 * models: with no limits the graph's profiles are exactly the connected
 * components a naive union-find in this file computes, and the same events
 * in the same order give the same graph (digest), while reordering
 * independent events gives the same components. Then retroactive unmerge
 * (identity_graph_block), checked the same way: the parts of a split are
 * the components of the links that remain, and profile ids follow their
 * first identifiers; new rules on a live graph; and snapshots, which must
 * give back the same graph, byte for byte, that goes on evolving the same.
 *
 * Keys are XXH3-128 of "type NUL value", standing in for privacy/'s keyed
 * hashes (uniform 128-bit values either way).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "identity/identity.h"
#include "lib/buf.h"
#include "lib/err.h"

/* ---- helpers ---- */

#define PREV 1u
#define BLOCKED 2u
#define DAY (86400LL)

struct tid {
	const char *type;
	const char *value;
	unsigned flags;
};

#define IDS(...) (const struct tid[]){ __VA_ARGS__ }, \
	sizeof((const struct tid[]){ __VA_ARGS__ }) / sizeof(struct tid)

static void key_of(const char *type, const char *value, uint8_t out[IDENTITY_KEY_BYTES])
{
	char buf[256];
	size_t t = strlen(type), v = strlen(value);
	XXH128_hash_t h;

	assert_true(t + 1 + v <= sizeof(buf));
	memcpy(buf, type, t);
	buf[t] = '\0';
	memcpy(buf + t + 1, value, v);
	h = XXH3_128bits(buf, t + 1 + v);
	XXH128_canonicalFromHash((XXH128_canonical_t *)out, h);
}

static uint16_t type_of(struct identity_graph *g, const char *name)
{
	int t = identity_graph_type(g, name);

	assert_true(t >= 0);
	return (uint16_t)t;
}

/* Applies one event at ts_s seconds; ref is seq * 10. Returns its profile. */
static uint64_t apply_at(struct identity_graph *g, int64_t seq, int64_t ts_s, bool alias,
			 const struct tid *ids, size_t n)
{
	struct identity_ident v[64];
	struct identity_event_ids ev = {
		.ids = v, .n = n, .seq = seq, .ts_us = ts_s * 1000000,
		.ref = (uint64_t)seq * 10, .alias = alias,
	};
	uint64_t pid = 12345;

	assert_true(n <= 64);
	for (size_t i = 0; i < n; i++) {
		key_of(ids[i].type, ids[i].value, v[i].key);
		v[i].type = type_of(g, ids[i].type);
		v[i].previous = ids[i].flags & PREV;
		v[i].blocked = ids[i].flags & BLOCKED;
	}
	assert_int_equal(identity_graph_apply(g, &ev, &pid), 0);
	return pid;
}

#define EV(g, seq, ...) apply_at(g, seq, 0, false, IDS(__VA_ARGS__))
#define EV_AT(g, seq, day, ...) apply_at(g, seq, (day) * DAY, false, IDS(__VA_ARGS__))
#define ALIAS(g, seq, user, prev) apply_at(g, seq, 0, true, IDS({ "user_id", user, 0 }, \
	{ "user_id", prev, PREV }, { "anonymous_id", prev, PREV }))

static uint64_t look(struct identity_graph *g, const char *type, const char *value)
{
	uint8_t key[IDENTITY_KEY_BYTES];

	key_of(type, value, key);
	return identity_graph_lookup(g, type_of(g, type), key);
}

static size_t count_ids(struct identity_graph *g, uint64_t pid)
{
	struct identity_ids_iter it;
	struct identity_ident_info info;
	size_t n = 0;

	identity_ids_iter_init(&it, g, pid);
	while (identity_ids_iter_next(&it, &info))
		n++;
	return n;
}

static bool has_id(struct identity_graph *g, uint64_t pid, const char *type,
		   const char *value)
{
	struct identity_ids_iter it;
	struct identity_ident_info info;
	uint8_t key[IDENTITY_KEY_BYTES];
	uint16_t t = type_of(g, type);

	key_of(type, value, key);
	identity_ids_iter_init(&it, g, pid);
	while (identity_ids_iter_next(&it, &info))
		if (info.type == t && memcmp(info.key, key, IDENTITY_KEY_BYTES) == 0)
			return true;
	return false;
}

/* The explanations of pid, oldest first, into out (at most cap); returns how many. */
static size_t explain(struct identity_graph *g, uint64_t pid,
		      struct identity_explanation *out, size_t cap)
{
	struct identity_expl_iter it;
	size_t n = 0;

	identity_expl_iter_init(&it, g, pid);
	while (n < cap && identity_expl_iter_next(&it, &out[n]))
		n++;
	identity_expl_iter_release(&it);
	return n;
}

static void assert_key(const uint8_t *key, const char *type, const char *value)
{
	uint8_t want[IDENTITY_KEY_BYTES];

	key_of(type, value, want);
	assert_memory_equal(key, want, IDENTITY_KEY_BYTES);
}

static struct identity_graph *graph_default(void)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g = identity_graph_new(r);

	identity_rules_free(r);
	return g;
}

/* Rules with no limit on any built-in type and no caps in the way. */
static struct identity_rules *rules_unlimited(void)
{
	static const char *const names[] = {
		"user_id", "email", "phone", "ios.id", "android.id", "ios.idfa",
		"android.idfa", "ios.push_token", "android.push_token", "anonymous_id",
		"crm_id",
	};
	struct identity_rules *r = identity_rules_new();

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_int_equal(identity_rules_set_limit(r, names[i], 0, 0), 0);
	assert_int_equal(identity_rules_set_caps(r, UINT32_MAX, IDENTITY_NODES_MAX), 0);
	return r;
}

/* ---- rules ---- */

static void test_identity__builtin_types_have_documented_ids_priorities_and_limits(void **state)
{
	struct identity_graph *g = graph_default();

	(void)state;
	assert_int_equal(identity_graph_type(g, "user_id"), IDENTITY_TYPE_USER_ID);
	assert_int_equal(identity_graph_type(g, "email"), IDENTITY_TYPE_EMAIL);
	assert_int_equal(identity_graph_type(g, "anonymous_id"), IDENTITY_TYPE_ANONYMOUS_ID);
	assert_int_equal(identity_graph_type(g, "android.push_token"),
			 IDENTITY_TYPE_ANDROID_PUSH_TOKEN);
	assert_int_equal(identity_graph_type(g, "group_id"), IDENTITY_TYPE_GROUP_ID);
	assert_string_equal(identity_graph_type_name(g, IDENTITY_TYPE_IOS_IDFA), "ios.idfa");
	assert_null(identity_graph_type_name(g, 999));
	/* A custom type is new, after all the built-in ones. */
	assert_int_equal(identity_graph_type(g, "crm_id"), IDENTITY_TYPE_BUILTIN_COUNT);
	assert_int_equal(identity_graph_type(g, "crm_id"), IDENTITY_TYPE_BUILTIN_COUNT);
	identity_graph_free(g);
}

static void test_identity__rules_reject_bad_settings(void **state)
{
	struct identity_rules *r = identity_rules_new();
	char long_name[IDENTITY_TYPE_NAME_MAX + 2];

	(void)state;
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_int_equal(identity_rules_set_limit(r, "email", IDENTITY_LIMIT_MAX + 1, 0),
			 WEFT_EINVAL);
	assert_int_equal(identity_rules_set_limit(r, "email", 5, IDENTITY_WINDOW_MAX_DAYS + 1),
			 WEFT_EINVAL);
	assert_int_equal(identity_rules_set_limit(r, "group_id", 1, 0), WEFT_EINVAL);
	assert_int_equal(identity_rules_set_priority(r, "email", 0), WEFT_EINVAL);
	assert_int_equal(identity_rules_set_caps(r, 100, 0), WEFT_EINVAL);
	assert_int_equal(identity_rules_set_caps(r, 100, IDENTITY_NODES_MAX + 1), WEFT_EINVAL);
	assert_int_equal(identity_rules_type(r, ""), WEFT_EINVAL);
	assert_int_equal(identity_rules_type(r, long_name), WEFT_EINVAL);
	long_name[IDENTITY_TYPE_NAME_MAX] = '\0';
	assert_true(identity_rules_type(r, long_name) >= 0);
	assert_int_equal(identity_rules_set_limit(r, "email", IDENTITY_LIMIT_MAX, 365), 0);
	identity_rules_free(r);
}

static void test_identity__rules_are_copied_into_the_graph(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;

	(void)state;
	assert_int_equal(identity_rules_set_limit(r, "email", 1, 0), 0);
	g = identity_graph_new(r);
	/* Loosening the rules afterwards does not reach the graph. */
	assert_int_equal(identity_rules_set_limit(r, "email", 5, 0), 0);
	identity_rules_free(r);
	assert_int_equal(EV(g, 1, { "user_id", "u1", 0 }, { "email", "a@x", 0 }), 1);
	assert_int_equal(EV(g, 2, { "user_id", "u1", 0 }, { "email", "b@x", 0 }), 1);
	assert_int_equal(look(g, "email", "b@x"), 0);
	identity_graph_free(g);
}

/* ---- matching: Segment's worked examples ---- */

static void test_identity__new_profiles_get_ids_in_order(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_stats st;

	(void)state;
	assert_int_equal(EV(g, 1, { "anonymous_id", "a1", 0 }), 1);
	assert_int_equal(EV(g, 2, { "anonymous_id", "a2", 0 }), 2);
	assert_int_equal(EV(g, 3, { "user_id", "u3", 0 }, { "email", "e3@x", 0 }), 3);
	assert_int_equal(EV(g, 4, { "anonymous_id", "a1", 0 }), 1);
	assert_int_equal(look(g, "email", "e3@x"), 3);
	assert_int_equal(look(g, "email", "nobody@x"), 0);
	assert_int_equal(count_ids(g, 3), 2);
	identity_graph_stats(g, &st);
	assert_int_equal(st.identifiers, 4);
	assert_int_equal(st.profiles, 3);
	assert_int_equal(st.profiles_created, 3);
	assert_int_equal(st.merges, 0);
	assert_true(st.bytes > 0);
	identity_graph_free(g);
}

static void test_identity__limit_drops_lowest_priority_identifier(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_explanation ex[4];

	(void)state;
	/* Segment's example: user_id limit 1 priority 1, email limit 5 priority 2. */
	assert_int_equal(EV(g, 1, { "user_id", "abc123", 0 }, { "email", "jane@example1.com", 0 }), 1);
	assert_int_equal(EV(g, 2, { "user_id", "abc456", 0 }, { "email", "jane@example1.com", 0 }), 2);
	/* P1 unchanged; the new profile holds abc456 without the email. */
	assert_int_equal(count_ids(g, 1), 2);
	assert_true(has_id(g, 1, "user_id", "abc123"));
	assert_true(has_id(g, 1, "email", "jane@example1.com"));
	assert_int_equal(count_ids(g, 2), 1);
	assert_true(has_id(g, 2, "user_id", "abc456"));
	assert_int_equal(look(g, "email", "jane@example1.com"), 1);
	/* Why: the email would have merged P1, and user_id's limit stopped it. */
	assert_int_equal(explain(g, 2, ex, 4), 1);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_MERGE_REFUSED);
	assert_int_equal(ex[0].reason, IDENTITY_REASON_LIMIT);
	assert_int_equal(ex[0].type, IDENTITY_TYPE_EMAIL);
	assert_key(ex[0].key, "email", "jane@example1.com");
	assert_int_equal(ex[0].profile_id, 2);
	assert_int_equal(ex[0].other_id, 1);
	assert_int_equal(ex[0].limit_type, IDENTITY_TYPE_USER_ID);
	assert_int_equal(ex[0].limit, 1);
	assert_int_equal(ex[0].window_days, 0);
	assert_int_equal(ex[0].seq, 2);
	assert_int_equal(ex[0].ref, 20);
	assert_int_equal(ex[0].count, 1);
	assert_int_equal(explain(g, 1, ex, 4), 0);
	identity_graph_free(g);
}

static void test_identity__shared_anonymous_id_never_joins_two_users(void **state)
{
	struct identity_graph *g = graph_default();

	(void)state;
	assert_int_equal(EV(g, 1, { "user_id", "u1", 0 }, { "anonymous_id", "shared", 0 }), 1);
	assert_int_equal(EV(g, 2, { "user_id", "u2", 0 }, { "anonymous_id", "shared", 0 }), 2);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(EV(g, 3 + 2 * i, { "user_id", "u1", 0 },
				    { "anonymous_id", "shared", 0 }), 1);
		assert_int_equal(EV(g, 4 + 2 * i, { "user_id", "u2", 0 },
				    { "anonymous_id", "shared", 0 }), 2);
	}
	assert_int_equal(look(g, "user_id", "u1"), 1);
	assert_int_equal(look(g, "user_id", "u2"), 2);
	/* The anonymous id stays with the first user, and alone it goes there. */
	assert_int_equal(look(g, "anonymous_id", "shared"), 1);
	assert_int_equal(EV(g, 20, { "anonymous_id", "shared", 0 }), 1);
	assert_int_equal(count_ids(g, 2), 1);
	identity_graph_free(g);
}

static void test_identity__two_sessions_identified_by_one_email_become_one_profile(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_stats st;

	(void)state;
	assert_int_equal(EV(g, 1, { "anonymous_id", "s1", 0 }), 1);
	assert_int_equal(EV(g, 2, { "anonymous_id", "s2", 0 }), 2);
	assert_int_equal(EV(g, 3, { "anonymous_id", "s1", 0 }, { "email", "jo@x", 0 }), 1);
	assert_int_equal(EV(g, 4, { "anonymous_id", "s2", 0 }, { "email", "jo@x", 0 }), 1);
	assert_int_equal(count_ids(g, 1), 3);
	assert_true(has_id(g, 1, "anonymous_id", "s1"));
	assert_true(has_id(g, 1, "anonymous_id", "s2"));
	assert_true(has_id(g, 1, "email", "jo@x"));
	assert_int_equal(look(g, "anonymous_id", "s2"), 1);
	identity_graph_stats(g, &st);
	assert_int_equal(st.profiles, 1);
	assert_int_equal(st.merges, 1);
	identity_graph_free(g);
}

static void test_identity__one_event_with_two_new_user_ids_keeps_the_first(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_explanation ex[2];

	(void)state;
	/* Even a brand-new profile obeys the limits. */
	assert_int_equal(EV(g, 1, { "user_id", "first", 0 }, { "user_id", "second", 0 }), 1);
	assert_int_equal(look(g, "user_id", "first"), 1);
	assert_int_equal(look(g, "user_id", "second"), 0);
	assert_int_equal(explain(g, 1, ex, 2), 1);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_DROPPED);
	assert_key(ex[0].key, "user_id", "second");
	assert_int_equal(ex[0].limit_type, IDENTITY_TYPE_USER_ID);
	identity_graph_free(g);
}

static void test_identity__adding_past_a_limit_drops_lowest_priority_first(void **state)
{
	struct identity_graph *g = graph_default();
	char v[16];

	(void)state;
	/* Five emails fill the limit. */
	for (int i = 0; i < 5; i++) {
		snprintf(v, sizeof(v), "e%d@x", i);
		assert_int_equal(EV(g, 1 + i, { "user_id", "u", 0 }, { "email", v, 0 }), 1);
	}
	/*
	 * A sixth email with a new anonymous id: the anonymous id is the
	 * lowest priority, so it goes first; the email still breaks the
	 * limit and goes next; user_id alone matches the profile.
	 */
	assert_int_equal(EV(g, 10, { "user_id", "u", 0 }, { "email", "e5@x", 0 },
			    { "anonymous_id", "a", 0 }), 1);
	assert_int_equal(look(g, "email", "e5@x"), 0);
	assert_int_equal(look(g, "anonymous_id", "a"), 0);
	/* A custom type ranks below every built-in: with one crm_id too many,
	 * the crm_id goes and the anonymous id is kept. */
	for (int i = 0; i < 5; i++) {
		snprintf(v, sizeof(v), "c%d", i);
		assert_int_equal(EV(g, 20 + i, { "user_id", "u", 0 }, { "crm_id", v, 0 }), 1);
	}
	assert_int_equal(EV(g, 30, { "user_id", "u", 0 }, { "crm_id", "c5", 0 },
			    { "anonymous_id", "a", 0 }), 1);
	assert_int_equal(look(g, "crm_id", "c5"), 0);
	assert_int_equal(look(g, "anonymous_id", "a"), 1);
	identity_graph_free(g);
}

static void test_identity__merge_that_would_break_a_limit_is_refused(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_explanation ex[4];

	(void)state;
	/* Two known users, each with an anonymous id; an event carrying both anonymous ids. */
	assert_int_equal(EV(g, 1, { "user_id", "u1", 0 }, { "anonymous_id", "a1", 0 }), 1);
	assert_int_equal(EV(g, 2, { "user_id", "u2", 0 }, { "anonymous_id", "a2", 0 }), 2);
	assert_int_equal(EV(g, 3, { "anonymous_id", "a1", 0 }, { "anonymous_id", "a2", 0 }), 1);
	assert_int_equal(look(g, "anonymous_id", "a2"), 2);
	assert_int_equal(explain(g, 1, ex, 4), 1);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_MERGE_REFUSED);
	assert_int_equal(ex[0].other_id, 2);
	assert_key(ex[0].key, "anonymous_id", "a2");
	/* The limit broken is user_id's, although no user_id was on the event. */
	assert_int_equal(ex[0].limit_type, IDENTITY_TYPE_USER_ID);
	assert_int_equal(ex[0].limit, 1);
	identity_graph_free(g);
}

static void test_identity__duplicate_identifiers_on_an_event_count_once(void **state)
{
	struct identity_graph *g = graph_default();

	(void)state;
	assert_int_equal(EV(g, 1, { "user_id", "u", 0 }, { "user_id", "u", 0 },
			    { "email", "e@x", 0 }, { "email", "e@x", 0 }), 1);
	assert_int_equal(count_ids(g, 1), 2);
	identity_graph_free(g);
}

static void test_identity__event_without_identifiers_belongs_to_no_profile(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_event_ids ev = { .ids = NULL, .n = 0, .seq = 1 };
	uint64_t pid = 99;

	(void)state;
	assert_int_equal(identity_graph_apply(g, &ev, &pid), 0);
	assert_int_equal(pid, 0);
	identity_graph_free(g);
}

static void test_identity__apply_rejects_bad_events_and_changes_nothing(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_ident ids[IDENTITY_EVENT_IDS_MAX + 1];
	struct identity_event_ids ev = { .ids = ids, .n = 1, .seq = 1 };
	struct identity_stats st;
	uint8_t before[16], after[16];
	uint64_t pid = 99;

	(void)state;
	memset(ids, 0, sizeof(ids));
	EV(g, 1, { "user_id", "u", 0 });
	identity_graph_digest(g, before);
	ids[0].type = 4000;
	assert_int_equal(identity_graph_apply(g, &ev, &pid), WEFT_EINVAL);
	assert_int_equal(pid, 0);
	ids[0].type = IDENTITY_TYPE_EMAIL;
	ev.seq = -1;
	assert_int_equal(identity_graph_apply(g, &ev, &pid), WEFT_EINVAL);
	ev.seq = IDENTITY_SEQ_LIMIT;
	assert_int_equal(identity_graph_apply(g, &ev, &pid), WEFT_EINVAL);
	ev.seq = 2;
	ev.n = IDENTITY_EVENT_IDS_MAX + 1;
	assert_int_equal(identity_graph_apply(g, &ev, &pid), WEFT_EINVAL);
	ev.ids = NULL;
	ev.n = 1;
	assert_int_equal(identity_graph_apply(g, &ev, &pid), WEFT_EINVAL);
	identity_graph_digest(g, after);
	assert_memory_equal(before, after, 16);
	identity_graph_stats(g, &st);
	assert_int_equal(st.identifiers, 1);
	identity_graph_free(g);
}

/* ---- blocked values ---- */

static void test_identity__blocked_identifiers_attach_to_no_profile(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;
	struct identity_explanation ex[4];
	struct identity_stats st;
	uint8_t key[IDENTITY_KEY_BYTES];

	(void)state;
	key_of("email", "test@test.com", key);
	assert_int_equal(identity_rules_block(r, "email", key), 0);
	assert_int_equal(identity_rules_block(r, "email", key), 0);
	g = identity_graph_new(r);
	identity_rules_free(r);
	/* Flagged by ingest, and on the workspace's list. */
	assert_int_equal(EV(g, 1, { "anonymous_id", "undefined", BLOCKED }), 0);
	assert_int_equal(EV(g, 2, { "email", "test@test.com", 0 }), 0);
	assert_int_equal(EV(g, 3, { "anonymous_id", "undefined", BLOCKED },
			    { "email", "test@test.com", 0 }, { "email", "test@test.com", 0 }), 0);
	identity_graph_stats(g, &st);
	assert_int_equal(st.identifiers, 0);
	assert_int_equal(st.profiles, 0);
	assert_int_equal(look(g, "anonymous_id", "undefined"), 0);
	/* Recorded under "no profile", once per value, counted. */
	assert_int_equal(explain(g, 0, ex, 4), 2);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_BLOCKED);
	assert_int_equal(ex[0].reason, IDENTITY_REASON_BLOCKED_VALUE);
	assert_key(ex[0].key, "anonymous_id", "undefined");
	assert_int_equal(ex[0].count, 2);
	assert_int_equal(ex[0].seq, 1);
	assert_int_equal(ex[1].reason, IDENTITY_REASON_BLOCKED_KEY);
	assert_key(ex[1].key, "email", "test@test.com");
	assert_int_equal(ex[1].count, 2);
	/* Beside a real identifier, the blocked one is ignored and recorded there. */
	assert_int_equal(EV(g, 4, { "user_id", "u", 0 }, { "email", "test@test.com", 0 }), 1);
	assert_int_equal(EV(g, 5, { "user_id", "v", 0 }, { "email", "test@test.com", 0 }), 2);
	assert_int_equal(count_ids(g, 1), 1);
	assert_int_equal(explain(g, 1, ex, 4), 1);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_BLOCKED);
	assert_int_equal(ex[0].profile_id, 1);
	identity_graph_free(g);
}

/* ---- alias and group ---- */

static void test_identity__alias_merges_previous_anonymous_profile(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_explanation ex[4];

	(void)state;
	assert_int_equal(EV(g, 1, { "anonymous_id", "anon-1", 0 }), 1);
	assert_int_equal(EV(g, 2, { "user_id", "u1", 0 }), 2);
	assert_int_equal(ALIAS(g, 3, "u1", "anon-1"), 1);
	assert_int_equal(look(g, "user_id", "u1"), 1);
	assert_int_equal(identity_graph_resolve(g, 2), 1);
	/* The previousId was an anonymous id: no user_id "anon-1" appears. */
	assert_int_equal(look(g, "user_id", "anon-1"), 0);
	assert_int_equal(count_ids(g, 1), 2);
	assert_int_equal(explain(g, 1, ex, 4), 1);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_MERGE);
	assert_int_equal(ex[0].reason, IDENTITY_REASON_ALIAS);
	assert_int_equal(ex[0].other_id, 2);
	assert_key(ex[0].key, "user_id", "u1");
	assert_int_equal(ex[0].seq, 3);
	identity_graph_free(g);
}

static void test_identity__alias_prefers_previous_user_id_and_obeys_limits(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g = identity_graph_new(r);
	struct identity_explanation ex[4];

	(void)state;
	/* "x" is known both as a user id (P1) and as an anonymous id (P2). */
	assert_int_equal(EV(g, 1, { "user_id", "x", 0 }), 1);
	assert_int_equal(EV(g, 2, { "anonymous_id", "x", 0 }), 2);
	assert_int_equal(EV(g, 3, { "user_id", "y", 0 }), 3);
	/* Aliasing two users would give one profile two user ids: refused. */
	assert_int_equal(ALIAS(g, 4, "y", "x"), 3);
	assert_int_equal(look(g, "user_id", "x"), 1);
	assert_int_equal(look(g, "anonymous_id", "x"), 2);
	assert_int_equal(explain(g, 3, ex, 4), 1);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_MERGE_REFUSED);
	assert_int_equal(ex[0].other_id, 1);
	assert_int_equal(ex[0].limit_type, IDENTITY_TYPE_USER_ID);
	identity_graph_free(g);

	/* With room for two user ids, the alias merges the user_id profile only. */
	assert_int_equal(identity_rules_set_limit(r, "user_id", 2, 0), 0);
	g = identity_graph_new(r);
	identity_rules_free(r);
	EV(g, 1, { "user_id", "x", 0 });
	EV(g, 2, { "anonymous_id", "x", 0 });
	EV(g, 3, { "user_id", "y", 0 });
	assert_int_equal(ALIAS(g, 4, "y", "x"), 1);
	assert_int_equal(look(g, "user_id", "y"), 1);
	assert_int_equal(look(g, "anonymous_id", "x"), 2);
	identity_graph_free(g);
}

static void test_identity__alias_with_unknown_previous_id_adds_it_as_anonymous_id(void **state)
{
	struct identity_graph *g = graph_default();

	(void)state;
	assert_int_equal(ALIAS(g, 1, "u1", "p"), 1);
	assert_int_equal(look(g, "anonymous_id", "p"), 1);
	assert_int_equal(look(g, "user_id", "p"), 0);
	/* previousId equal to userId: just the user. */
	assert_int_equal(ALIAS(g, 2, "u2", "u2"), 2);
	assert_int_equal(count_ids(g, 2), 1);
	identity_graph_free(g);
}

static void test_identity__group_call_records_the_account_without_merging(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_explanation ex[4];

	(void)state;
	assert_int_equal(EV(g, 1, { "user_id", "u1", 0 }, { "group_id", "acme", 0 }), 1);
	assert_int_equal(EV(g, 2, { "user_id", "u2", 0 }, { "group_id", "acme", 0 }), 2);
	/* Repeated on one event, it still counts one event. */
	assert_int_equal(EV(g, 3, { "user_id", "u1", 0 }, { "group_id", "acme", 0 },
			    { "group_id", "acme", 0 }), 1);
	assert_int_equal(look(g, "group_id", "acme"), 0);
	assert_int_equal(count_ids(g, 1), 1);
	assert_int_equal(explain(g, 1, ex, 4), 1);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_GROUP);
	assert_int_equal(ex[0].type, IDENTITY_TYPE_GROUP_ID);
	assert_key(ex[0].key, "group_id", "acme");
	assert_int_equal(ex[0].seq, 1);
	assert_int_equal(ex[0].count, 2);
	assert_int_equal(explain(g, 2, ex, 4), 1);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_GROUP);
	/* A group call with nothing else belongs to nobody. */
	assert_int_equal(EV(g, 4, { "group_id", "acme", 0 }), 0);
	identity_graph_free(g);
}

/* ---- merges, ids and caps ---- */

static void test_identity__oldest_profile_survives_and_absorbed_ids_resolve(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_ids_iter it;
	struct identity_ident_info info;
	char v[16];

	(void)state;
	assert_int_equal(EV(g, 1, { "anonymous_id", "old", 0 }), 1);
	assert_int_equal(EV(g, 2, { "anonymous_id", "middle", 0 }), 2);
	/* Profile 3 is the largest, so its root wins union by size; its id does not. */
	for (int i = 0; i < 4; i++) {
		snprintf(v, sizeof(v), "ph%d", i);
		assert_int_equal(EV(g, 3 + i, { "user_id", "big", 0 }, { "phone", v, 0 }), 3);
	}
	assert_int_equal(EV(g, 10, { "user_id", "big", 0 }, { "anonymous_id", "middle", 0 }), 2);
	assert_int_equal(EV(g, 11, { "anonymous_id", "old", 0 }, { "phone", "ph0", 0 }), 1);
	for (uint64_t p = 1; p <= 3; p++)
		assert_int_equal(identity_graph_resolve(g, p), 1);
	assert_int_equal(identity_graph_resolve(g, 0), 0);
	assert_int_equal(identity_graph_resolve(g, 4), 0);
	assert_int_equal(look(g, "user_id", "big"), 1);
	assert_int_equal(look(g, "phone", "ph3"), 1);
	/* Iterating by an absorbed id walks the survivor. */
	assert_int_equal(count_ids(g, 3), 7);
	identity_ids_iter_init(&it, g, 2);
	assert_true(identity_ids_iter_next(&it, &info));
	/* New events for any of them land on the survivor. */
	assert_int_equal(EV(g, 12, { "phone", "ph2", 0 }), 1);
	identity_graph_free(g);
}

static void test_identity__merge_cap_stops_merges_but_events_attach(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;
	struct identity_explanation ex[128];
	struct identity_stats st;
	char v[16];
	size_t n;

	(void)state;
	assert_int_equal(identity_rules_set_limit(r, "anonymous_id", 0, 0), 0);
	g = identity_graph_new(r);
	identity_rules_free(r);
	for (int i = 0; i <= 101; i++) {
		snprintf(v, sizeof(v), "a%d", i);
		assert_int_equal(EV(g, 1 + i, { "anonymous_id", v, 0 }), 1 + i);
	}
	/* The default cap: 100 profiles merged into one. */
	for (int i = 1; i <= 100; i++) {
		snprintf(v, sizeof(v), "a%d", i);
		assert_int_equal(EV(g, 200 + i, { "anonymous_id", "a0", 0 },
				    { "anonymous_id", v, 0 }), 1);
	}
	/* The 101st is refused; the event still attaches, and maps nothing new. */
	assert_int_equal(EV(g, 400, { "anonymous_id", "a0", 0 }, { "anonymous_id", "a101", 0 },
			    { "email", "new@x", 0 }), 1);
	assert_int_equal(look(g, "anonymous_id", "a101"), 102);
	assert_int_equal(look(g, "email", "new@x"), 0);
	/* To the highest-priority known identifier's profile. */
	assert_int_equal(EV(g, 401, { "anonymous_id", "a101", 0 }, { "anonymous_id", "a0", 0 }), 102);
	identity_graph_stats(g, &st);
	assert_int_equal(st.merges, 100);
	assert_int_equal(st.profiles, 2);
	n = explain(g, 1, ex, 128);
	assert_int_equal(n, 102);
	for (size_t i = 0; i < 100; i++) {
		assert_int_equal(ex[i].kind, IDENTITY_EXPL_MERGE);
		assert_int_equal(ex[i].other_id, 2 + i);
		assert_int_equal(ex[i].seq, 201 + (int64_t)i);
	}
	assert_int_equal(ex[100].kind, IDENTITY_EXPL_MERGE_REFUSED);
	assert_int_equal(ex[100].reason, IDENTITY_REASON_MERGE_CAP);
	assert_int_equal(ex[100].other_id, 102);
	assert_int_equal(ex[100].limit, 100);
	assert_int_equal(ex[100].seq, 400);
	assert_int_equal(ex[101].kind, IDENTITY_EXPL_DROPPED);
	assert_int_equal(ex[101].reason, IDENTITY_REASON_MERGE_CAP);
	assert_key(ex[101].key, "email", "new@x");
	assert_int_equal(explain(g, 102, ex, 128), 1);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_MERGE_REFUSED);
	assert_int_equal(ex[0].other_id, 1);
	identity_graph_free(g);
}

static void test_identity__merge_cap_counts_merges_transitively(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;

	(void)state;
	assert_int_equal(identity_rules_set_limit(r, "anonymous_id", 0, 0), 0);
	assert_int_equal(identity_rules_set_caps(r, 2, 1000), 0);
	g = identity_graph_new(r);
	identity_rules_free(r);
	EV(g, 1, { "anonymous_id", "a", 0 });
	EV(g, 2, { "anonymous_id", "b", 0 });
	EV(g, 3, { "anonymous_id", "c", 0 });
	EV(g, 4, { "anonymous_id", "d", 0 });
	assert_int_equal(EV(g, 5, { "anonymous_id", "c", 0 }, { "anonymous_id", "d", 0 }), 3);
	assert_int_equal(EV(g, 6, { "anonymous_id", "a", 0 }, { "anonymous_id", "b", 0 }), 1);
	/* 1 + 1 + 1 for joining them makes 3 > 2. */
	assert_int_equal(EV(g, 7, { "anonymous_id", "d", 0 }, { "anonymous_id", "a", 0 }), 3);
	assert_int_equal(look(g, "anonymous_id", "a"), 1);
	identity_graph_free(g);
}

static void test_identity__identifier_cap_stops_mapping_but_events_attach(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;
	struct identity_explanation ex[4];
	char v[16];

	(void)state;
	assert_int_equal(identity_rules_set_limit(r, "anonymous_id", 0, 0), 0);
	g = identity_graph_new(r);
	identity_rules_free(r);
	for (int i = 1; i < 1000; i++) {
		snprintf(v, sizeof(v), "a%d", i);
		assert_int_equal(EV(g, i, { "anonymous_id", "a0", 0 }, { "anonymous_id", v, 0 }), 1);
	}
	assert_int_equal(count_ids(g, 1), 1000);
	/* The 1001st identifier is not mapped; the event attaches. */
	assert_int_equal(EV(g, 1000, { "anonymous_id", "a0", 0 },
			    { "anonymous_id", "a1000", 0 }), 1);
	assert_int_equal(look(g, "anonymous_id", "a1000"), 0);
	assert_int_equal(explain(g, 1, ex, 4), 1);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_DROPPED);
	assert_int_equal(ex[0].reason, IDENTITY_REASON_IDENTIFIER_CAP);
	assert_int_equal(ex[0].limit, 1000);
	/* Nor is a merge past the cap: the event goes to its first known identifier. */
	assert_int_equal(EV(g, 1001, { "anonymous_id", "lone", 0 }), 2);
	assert_int_equal(EV(g, 1002, { "anonymous_id", "lone", 0 }, { "anonymous_id", "a0", 0 }), 2);
	assert_int_equal(EV(g, 1003, { "anonymous_id", "a0", 0 }, { "anonymous_id", "lone", 0 }), 1);
	assert_int_equal(look(g, "anonymous_id", "lone"), 2);
	assert_int_equal(explain(g, 2, ex, 4), 1);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_MERGE_REFUSED);
	assert_int_equal(ex[0].reason, IDENTITY_REASON_IDENTIFIER_CAP);
	assert_int_equal(ex[0].other_id, 1);
	identity_graph_free(g);
}

static void test_identity__identifier_cap_applies_to_a_new_profile(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;

	(void)state;
	assert_int_equal(identity_rules_set_caps(r, 100, 2), 0);
	g = identity_graph_new(r);
	identity_rules_free(r);
	assert_int_equal(EV(g, 1, { "anonymous_id", "a", 0 }, { "user_id", "u", 0 },
			    { "email", "e@x", 0 }), 1);
	/* The two of highest priority. */
	assert_true(has_id(g, 1, "user_id", "u"));
	assert_true(has_id(g, 1, "email", "e@x"));
	assert_int_equal(look(g, "anonymous_id", "a"), 0);
	identity_graph_free(g);
}

/* Counts of 15 and more, and types numbered 16 and up, live outside the 4-bit fields. */
static void test_identity__large_counts_and_late_types_are_exact_through_merges(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;
	struct identity_explanation ex[4];
	char v[16], t[16];

	(void)state;
	assert_int_equal(identity_rules_set_limit(r, "anonymous_id", 20, 0), 0);
	for (int i = 0; i < 6; i++) {
		snprintf(t, sizeof(t), "c%d", i);
		assert_int_equal(identity_rules_type(r, t), IDENTITY_TYPE_BUILTIN_COUNT + i);
	}
	assert_int_equal(identity_rules_set_limit(r, "c5", 3, 0), 0);	/* type 16 */
	g = identity_graph_new(r);
	identity_rules_free(r);

	/* Twenty anonymous ids fill the limit; the 21st is dropped. */
	for (int i = 0; i < 20; i++) {
		snprintf(v, sizeof(v), "a%d", i);
		assert_int_equal(EV(g, 1 + i, { "user_id", "u", 0 }, { "anonymous_id", v, 0 }), 1);
	}
	assert_int_equal(EV(g, 30, { "user_id", "u", 0 }, { "anonymous_id", "a20", 0 }), 1);
	assert_int_equal(look(g, "anonymous_id", "a20"), 0);

	/* 15 + 2 anonymous ids merge into 17, and then 3 more fit, not 4. */
	for (int i = 0; i < 15; i++) {
		snprintf(v, sizeof(v), "k%d", i);
		assert_int_equal(EV(g, 40 + i, { "email", "k@x", 0 }, { "anonymous_id", v, 0 }), 2);
	}
	assert_int_equal(EV(g, 60, { "phone", "+1", 0 }, { "anonymous_id", "k15", 0 },
			    { "anonymous_id", "k16", 0 }), 3);
	assert_int_equal(EV(g, 61, { "anonymous_id", "k0", 0 }, { "anonymous_id", "k15", 0 }), 2);
	assert_int_equal(count_ids(g, 2), 19);
	for (int i = 17; i < 21; i++) {
		snprintf(v, sizeof(v), "k%d", i);
		assert_int_equal(EV(g, 70 + i, { "email", "k@x", 0 }, { "anonymous_id", v, 0 }), 2);
	}
	assert_int_equal(look(g, "anonymous_id", "k19"), 2);
	assert_int_equal(look(g, "anonymous_id", "k20"), 0);
	/* Merging the two 20s would make 40. */
	assert_int_equal(EV(g, 100, { "anonymous_id", "a0", 0 }, { "anonymous_id", "k0", 0 }), 1);
	assert_int_equal(look(g, "anonymous_id", "k0"), 2);

	/* Type 16 with limit 3, on one profile and across a merge. */
	for (int i = 0; i < 4; i++) {
		snprintf(v, sizeof(v), "x%d", i);
		EV(g, 110 + i, { "user_id", "u", 0 }, { "c5", v, 0 });
	}
	assert_int_equal(look(g, "c5", "x2"), 1);
	assert_int_equal(look(g, "c5", "x3"), 0);
	assert_int_equal(EV(g, 120, { "email", "y@x", 0 }, { "c5", "y0", 0 }), 4);
	assert_int_equal(EV(g, 121, { "phone", "+2", 0 }, { "c5", "y1", 0 }), 5);
	assert_int_equal(EV(g, 122, { "email", "y@x", 0 }, { "phone", "+2", 0 }), 4);
	assert_int_equal(EV(g, 123, { "email", "y@x", 0 }, { "c5", "y2", 0 }), 4);
	assert_int_equal(EV(g, 124, { "email", "y@x", 0 }, { "c5", "y3", 0 }), 4);
	assert_int_equal(look(g, "c5", "y2"), 4);
	assert_int_equal(look(g, "c5", "y3"), 0);
	/* 3 + 3 of type 16: refused, and the record names type 16's limit. */
	assert_int_equal(EV(g, 130, { "user_id", "u", 0 }, { "email", "y@x", 0 }), 1);
	assert_int_equal(look(g, "email", "y@x"), 4);
	assert_int_equal(explain(g, 1, ex, 4), 4);
	assert_int_equal(ex[3].kind, IDENTITY_EXPL_MERGE_REFUSED);
	assert_int_equal(ex[3].other_id, 4);
	assert_int_equal(ex[3].limit_type, IDENTITY_TYPE_BUILTIN_COUNT + 5);
	assert_int_equal(ex[3].limit, 3);
	identity_graph_free(g);
}

/* ---- windowed limits ---- */

static void test_identity__windowed_limit_counts_only_values_within_the_window(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;
	struct identity_explanation ex[8];
	size_t n;

	(void)state;
	assert_int_equal(identity_rules_set_limit(r, "email", 2, 30), 0);
	g = identity_graph_new(r);
	identity_rules_free(r);
	assert_int_equal(EV_AT(g, 1, 0, { "user_id", "u", 0 }, { "email", "e1@x", 0 }), 1);
	assert_int_equal(EV_AT(g, 2, 1, { "user_id", "u", 0 }, { "email", "e2@x", 0 }), 1);
	/* Day 2: two emails within 30 days already. */
	assert_int_equal(EV_AT(g, 3, 2, { "user_id", "u", 0 }, { "email", "e3@x", 0 }), 1);
	assert_int_equal(look(g, "email", "e3@x"), 0);
	/* Day 40: e1 and e2 were last seen over 30 days ago; they no longer count. */
	assert_int_equal(EV_AT(g, 4, 40, { "user_id", "u", 0 }, { "email", "e3@x", 0 }), 1);
	assert_int_equal(look(g, "email", "e3@x"), 1);
	/* Day 41: e1 is seen again (refreshing it); e3 and e1 now fill the window. */
	assert_int_equal(EV_AT(g, 5, 41, { "email", "e1@x", 0 }), 1);
	assert_int_equal(EV_AT(g, 6, 42, { "user_id", "u", 0 }, { "email", "e4@x", 0 }), 1);
	assert_int_equal(look(g, "email", "e4@x"), 0);
	/* Day 80: e1 and e3 expired too. */
	assert_int_equal(EV_AT(g, 7, 80, { "user_id", "u", 0 }, { "email", "e4@x", 0 }), 1);
	assert_int_equal(look(g, "email", "e4@x"), 1);
	assert_int_equal(count_ids(g, 1), 5);
	/* An old value on the event itself counts: it is being seen now. */
	assert_int_equal(EV_AT(g, 8, 200, { "user_id", "u", 0 }, { "email", "e1@x", 0 },
			       { "email", "e2@x", 0 }, { "email", "e5@x", 0 }), 1);
	assert_int_equal(look(g, "email", "e5@x"), 0);
	n = explain(g, 1, ex, 8);
	assert_int_equal(n, 3);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_DROPPED);
	assert_key(ex[0].key, "email", "e3@x");
	assert_int_equal(ex[0].limit_type, IDENTITY_TYPE_EMAIL);
	assert_int_equal(ex[0].limit, 2);
	assert_int_equal(ex[0].window_days, 30);
	assert_int_equal(ex[0].seq, 3);
	assert_key(ex[1].key, "email", "e4@x");
	assert_key(ex[2].key, "email", "e5@x");
	identity_graph_free(g);
}

static void test_identity__windowed_limit_applies_to_merges(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;

	(void)state;
	assert_int_equal(identity_rules_set_limit(r, "email", 2, 30), 0);
	g = identity_graph_new(r);
	identity_rules_free(r);
	EV_AT(g, 1, 0, { "anonymous_id", "a", 0 }, { "email", "e1@x", 0 }, { "email", "e2@x", 0 });
	EV_AT(g, 2, 0, { "anonymous_id", "b", 0 }, { "email", "e3@x", 0 });
	/* Three emails within the window: refused. */
	assert_int_equal(EV_AT(g, 3, 1, { "anonymous_id", "a", 0 }, { "anonymous_id", "b", 0 }), 1);
	assert_int_equal(look(g, "anonymous_id", "b"), 2);
	/* 99 days later no email was seen within 30 days: the merge is allowed. */
	assert_int_equal(EV_AT(g, 4, 100, { "anonymous_id", "a", 0 }, { "anonymous_id", "b", 0 }), 1);
	assert_int_equal(look(g, "email", "e3@x"), 1);
	identity_graph_free(g);
}

/* ---- explanations and links ---- */

static void test_identity__explanations_include_absorbed_history_in_order(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_explanation ex[8];

	(void)state;
	/* P2 refuses a merge with P1 three times, then P2 is merged into P3... */
	assert_int_equal(EV(g, 1, { "user_id", "u1", 0 }, { "email", "shared@x", 0 }), 1);
	assert_int_equal(EV(g, 2, { "user_id", "u2", 0 }, { "email", "shared@x", 0 }), 2);
	assert_int_equal(EV(g, 3, { "user_id", "u2", 0 }, { "email", "shared@x", 0 }), 2);
	assert_int_equal(EV(g, 4, { "user_id", "u2", 0 }, { "email", "shared@x", 0 }), 2);
	assert_int_equal(EV(g, 5, { "anonymous_id", "a", 0 }), 3);
	assert_int_equal(EV(g, 6, { "anonymous_id", "a", 0 }, { "user_id", "u2", 0 }), 2);
	/* ...which survives (older), and its history reads from either id. */
	assert_int_equal(explain(g, 3, ex, 8), 2);
	assert_int_equal(ex[0].kind, IDENTITY_EXPL_MERGE_REFUSED);
	assert_int_equal(ex[0].seq, 2);
	assert_int_equal(ex[0].count, 3);
	assert_int_equal(ex[1].kind, IDENTITY_EXPL_MERGE);
	assert_int_equal(ex[1].reason, IDENTITY_REASON_SHARED_IDENTIFIER);
	assert_int_equal(ex[1].profile_id, 2);
	assert_int_equal(ex[1].other_id, 3);
	assert_key(ex[1].key, "anonymous_id", "a");
	assert_int_equal(ex[1].limit_type, IDENTITY_TYPE_ANONYMOUS_ID);
	assert_int_equal(ex[1].limit, 5);
	assert_int_equal(ex[1].seq, 6);
	assert_int_equal(ex[1].ref, 60);
	/* Later merges into the survivor keep the absorbed profile's history. */
	assert_int_equal(EV(g, 7, { "anonymous_id", "b", 0 }, { "email", "b@x", 0 }), 4);
	assert_int_equal(EV(g, 8, { "anonymous_id", "b", 0 }, { "anonymous_id", "a", 0 }), 2);
	assert_int_equal(explain(g, 4, ex, 8), 3);
	assert_int_equal(ex[2].kind, IDENTITY_EXPL_MERGE);
	assert_int_equal(ex[2].other_id, 4);
	assert_int_equal(ex[2].seq, 8);
	identity_graph_free(g);
}

static void test_identity__links_record_identifiers_seen_together(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_links_iter it;
	struct identity_link l;
	struct identity_stats st;
	int with_a = 0, with_e = 0;

	(void)state;
	EV(g, 1, { "anonymous_id", "a", 0 }, { "user_id", "u", 0 }, { "email", "e@x", 0 });
	EV(g, 2, { "user_id", "u", 0 }, { "anonymous_id", "a", 0 });
	EV(g, 3, { "user_id", "u", 0 });
	identity_graph_stats(g, &st);
	/* From the event's highest-priority identifier (user_id) to each other one. */
	assert_int_equal(st.links, 2);
	identity_links_iter_init(&it, g);
	while (identity_links_iter_next(&it, &l)) {
		uint16_t other = l.type_a == IDENTITY_TYPE_USER_ID ? l.type_b : l.type_a;

		assert_true(l.type_a == IDENTITY_TYPE_USER_ID || l.type_b == IDENTITY_TYPE_USER_ID);
		assert_int_equal(l.first_seq, 1);
		if (other == IDENTITY_TYPE_ANONYMOUS_ID) {
			with_a++;
			assert_int_equal(l.count, 2);
		} else {
			assert_int_equal(other, IDENTITY_TYPE_EMAIL);
			with_e++;
			assert_int_equal(l.count, 1);
		}
	}
	assert_int_equal(with_a, 1);
	assert_int_equal(with_e, 1);
	identity_graph_free(g);

	/* First seqs are exact whatever their order or distance. */
	g = graph_default();
	EV(g, 1000000, { "user_id", "u1", 0 }, { "email", "e1@x", 0 });
	EV(g, 5, { "user_id", "u2", 0 }, { "email", "e2@x", 0 });
	EV(g, IDENTITY_SEQ_LIMIT - 1, { "user_id", "u3", 0 }, { "email", "e3@x", 0 });
	EV(g, 7, { "user_id", "u3", 0 }, { "email", "e3@x", 0 });
	identity_links_iter_init(&it, g);
	assert_true(identity_links_iter_next(&it, &l));
	assert_int_equal(l.first_seq, 1000000);
	assert_true(identity_links_iter_next(&it, &l));
	assert_int_equal(l.first_seq, 5);
	assert_true(identity_links_iter_next(&it, &l));
	assert_int_equal(l.first_seq, IDENTITY_SEQ_LIMIT - 1);
	assert_int_equal(l.count, 2);
	assert_false(identity_links_iter_next(&it, &l));
	/* Counts stop at 255. */
	for (int i = 0; i < 300; i++)
		EV(g, 10 + i, { "user_id", "u1", 0 }, { "email", "e1@x", 0 });
	identity_links_iter_init(&it, g);
	assert_true(identity_links_iter_next(&it, &l));
	assert_int_equal(l.count, 255);
	identity_graph_free(g);
}

/* ---- properties ---- */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

#define P_IDS 5000
#define P_EVENTS 20000
#define P_TYPES 4

static const char *const p_type_names[P_TYPES] = {
	"user_id", "email", "anonymous_id", "crm_id",
};

/*
 * A random event stream over P_IDS identifiers, shaped so that the
 * components are many and varied: identifier i belongs to "person" i / 4
 * (one of each of the four types), an event carries 1 to 3 identifiers of
 * one person, and 1 in 200 of them is instead any identifier at all, which
 * joins two people (about 150 such links over 1,250 people: well below a
 * giant component).
 */
struct pevent {
	uint16_t id[4];
	uint8_t n;
	uint8_t blocked;	/* bit i: id[i] is flagged blocked */
	bool group;
};

static void gen_events(struct pevent *evs, size_t n, uint64_t seed, uint32_t lo, uint32_t span)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t e = 0; e < n; e++) {
		struct pevent *p = &evs[e];
		uint32_t person = (uint32_t)(rng_next(&s) % (span / P_TYPES));

		p->n = (uint8_t)(1 + rng_next(&s) % 3);
		p->blocked = 0;
		p->group = rng_next(&s) % 50 == 0;
		for (int i = 0; i < p->n; i++) {
			uint32_t x = rng_next(&s) % 200 == 0 ? (uint32_t)(rng_next(&s) % span) :
				     person * P_TYPES + (uint32_t)(rng_next(&s) % P_TYPES);

			p->id[i] = (uint16_t)(lo + x);
			if (rng_next(&s) % 100 == 0)
				p->blocked |= (uint8_t)(1u << i);
		}
	}
}

struct pkeys {
	uint8_t key[P_IDS][IDENTITY_KEY_BYTES];
	uint8_t group[IDENTITY_KEY_BYTES];
};

static void pkeys_init(struct pkeys *k)
{
	char v[32];

	for (int i = 0; i < P_IDS; i++) {
		snprintf(v, sizeof(v), "v%d", i);
		key_of(p_type_names[i % P_TYPES], v, k->key[i]);
	}
	key_of("group_id", "g", k->group);
}

static uint64_t papply(struct identity_graph *g, const struct pkeys *k,
		       const struct pevent *p, int64_t seq)
{
	struct identity_ident v[5];
	struct identity_event_ids ev = { .ids = v, .seq = seq, .ts_us = seq * 1000000 };
	uint64_t pid;

	memset(v, 0, sizeof(v));
	for (int i = 0; i < p->n; i++) {
		memcpy(v[i].key, k->key[p->id[i]], IDENTITY_KEY_BYTES);
		v[i].type = type_of(g, p_type_names[p->id[i] % P_TYPES]);
		v[i].blocked = p->blocked >> i & 1;
	}
	ev.n = p->n;
	if (p->group) {
		memcpy(v[ev.n].key, k->group, IDENTITY_KEY_BYTES);
		v[ev.n++].type = IDENTITY_TYPE_GROUP_ID;
	}
	assert_int_equal(identity_graph_apply(g, &ev, &pid), 0);
	return pid;
}

static uint32_t uf_find(uint32_t *parent, uint32_t x)
{
	while (parent[x] != x)
		x = parent[x];
	return x;
}

/* The graph's profile of identifier i, 0 if absent. */
static uint64_t pprofile(struct identity_graph *g, const struct pkeys *k, int i)
{
	return identity_graph_lookup(g, type_of(g, p_type_names[i % P_TYPES]), k->key[i]);
}

/*
 * Asserts that two labellings of the identifiers are the same partition:
 * a[i] == 0 iff b[i] == 0, and a[i] == a[j] iff b[i] == b[j].
 */
static void assert_same_partition(const uint64_t *a, const uint64_t *b, size_t n,
				  size_t *classes)
{
	uint64_t *a_to_b = calloc(n + 2, sizeof(*a_to_b));
	uint64_t *b_seen_as = calloc(n + 2, sizeof(*b_seen_as));
	uint64_t *a_ids = calloc(n, sizeof(*a_ids)), *b_ids = calloc(n, sizeof(*b_ids));
	size_t na = 0, nb = 0;

	assert_non_null(a_to_b);
	assert_non_null(b_seen_as);
	assert_non_null(a_ids);
	assert_non_null(b_ids);
	/* Relabel both densely (first appearance) so labels index arrays. */
	for (size_t i = 0; i < n; i++) {
		size_t j;

		assert_int_equal(a[i] == 0, b[i] == 0);
		if (!a[i])
			continue;
		for (j = 0; j < na && a_ids[j] != a[i]; j++)
			;
		if (j == na)
			a_ids[na++] = a[i];
		size_t la = j + 1;

		for (j = 0; j < nb && b_ids[j] != b[i]; j++)
			;
		if (j == nb)
			b_ids[nb++] = b[i];
		size_t lb = j + 1;

		if (!a_to_b[la])
			a_to_b[la] = lb;
		assert_int_equal(a_to_b[la], lb);
		if (!b_seen_as[lb])
			b_seen_as[lb] = la;
		assert_int_equal(b_seen_as[lb], la);
	}
	assert_int_equal(na, nb);
	if (classes)
		*classes = na;
	free(a_to_b);
	free(b_seen_as);
	free(a_ids);
	free(b_ids);
}

static void test_identity__without_limits_profiles_are_connected_components(void **state)
{
	struct pkeys *k = malloc(sizeof(*k));
	struct pevent *evs = malloc(P_EVENTS * sizeof(*evs));
	uint32_t *parent = malloc(P_IDS * sizeof(*parent));
	uint64_t *want = malloc(P_IDS * sizeof(*want)), *got = malloc(P_IDS * sizeof(*got));

	(void)state;
	assert_non_null(k);
	assert_non_null(evs);
	assert_non_null(parent);
	assert_non_null(want);
	assert_non_null(got);
	pkeys_init(k);
	for (uint64_t seed = 1; seed <= 5; seed++) {
		struct identity_rules *r = rules_unlimited();
		struct identity_graph *g = identity_graph_new(r);
		struct identity_stats st;
		bool *seen = calloc(P_IDS, sizeof(*seen));
		size_t classes;

		identity_rules_free(r);
		assert_non_null(seen);
		gen_events(evs, P_EVENTS, seed, 0, P_IDS);
		for (uint32_t i = 0; i < P_IDS; i++)
			parent[i] = i;
		for (size_t e = 0; e < P_EVENTS; e++) {
			const struct pevent *p = &evs[e];
			uint64_t pid = papply(g, k, p, (int64_t)e + 1);
			int first = -1;

			/* The reference: plain union-find over the unblocked ids. */
			for (int i = 0; i < p->n; i++) {
				if (p->blocked >> i & 1)
					continue;
				seen[p->id[i]] = true;
				if (first < 0)
					first = p->id[i];
				else
					parent[uf_find(parent, p->id[i])] = uf_find(parent, (uint32_t)first);
			}
			assert_int_equal(pid == 0, first < 0);
			if (first >= 0)
				assert_int_equal(pid, pprofile(g, k, first));
		}
		for (int i = 0; i < P_IDS; i++) {
			want[i] = seen[i] ? uf_find(parent, (uint32_t)i) + 1 : 0;
			got[i] = pprofile(g, k, i);
		}
		assert_same_partition(want, got, P_IDS, &classes);
		identity_graph_stats(g, &st);
		assert_int_equal(st.profiles, classes);
		assert_int_equal(st.profiles_created - st.merges, classes);
		/* Every profile id resolves to a live profile of the same identifiers. */
		for (int i = 0; i < P_IDS; i++)
			if (got[i])
				assert_int_equal(identity_graph_resolve(g, got[i]), got[i]);
		identity_graph_free(g);
		free(seen);
	}
	free(k);
	free(evs);
	free(parent);
	free(want);
	free(got);
}

static void test_identity__same_events_same_order_give_the_same_digest(void **state)
{
	struct pkeys *k = malloc(sizeof(*k));
	struct pevent *evs = malloc(P_EVENTS * sizeof(*evs));
	uint8_t d1[16], d2[16], d3[16];

	(void)state;
	assert_non_null(k);
	assert_non_null(evs);
	pkeys_init(k);
	gen_events(evs, P_EVENTS, 42, 0, P_IDS);
	for (int pass = 0; pass < 2; pass++) {
		/* With Segment's default limits (order matters there), then without. */
		struct identity_rules *r = pass ? rules_unlimited() : identity_rules_new();
		struct identity_graph *g1 = identity_graph_new(r);
		struct identity_graph *g2 = identity_graph_new(r);
		struct identity_stats s1, s2;

		identity_rules_free(r);
		/* The second graph interns another type first: type ids differ, the digest must not. */
		type_of(g2, "zzz");
		for (size_t e = 0; e < P_EVENTS; e++)
			assert_int_equal(papply(g1, k, &evs[e], (int64_t)e + 1),
					 papply(g2, k, &evs[e], (int64_t)e + 1));
		if (!pass)
			assert_int_not_equal(type_of(g1, "crm_id"), type_of(g2, "crm_id"));
		identity_graph_digest(g1, d1);
		identity_graph_digest(g2, d2);
		assert_memory_equal(d1, d2, 16);
		identity_graph_stats(g1, &s1);
		identity_graph_stats(g2, &s2);
		assert_int_equal(s1.profiles, s2.profiles);
		assert_int_equal(s1.merges, s2.merges);
		assert_int_equal(s1.links, s2.links);
		assert_int_equal(s1.explanations, s2.explanations);
		if (!pass)
			assert_true(s1.explanations > 0);
		/* One more event that merges two profiles changes the digest. */
		for (int i = 0; i < P_IDS; i += 7) {
			uint64_t a = pprofile(g1, k, i), b = pprofile(g1, k, i + 1);
			struct pevent p = { .id = { (uint16_t)i, (uint16_t)(i + 1) }, .n = 2 };

			if (!a || !b || a == b)
				continue;
			if (papply(g1, k, &p, P_EVENTS + 1) == 0 ||
			    pprofile(g1, k, i) != pprofile(g1, k, i + 1))
				continue;
			break;
		}
		identity_graph_digest(g1, d3);
		assert_memory_not_equal(d1, d3, 16);
		identity_graph_free(g1);
		identity_graph_free(g2);
	}
	free(k);
	free(evs);
}

static void test_identity__reordering_independent_events_gives_the_same_components(void **state)
{
	struct pkeys *k = malloc(sizeof(*k));
	struct pevent *a = malloc(P_EVENTS / 2 * sizeof(*a));
	struct pevent *b = malloc(P_EVENTS / 2 * sizeof(*b));
	uint64_t *l1 = malloc(P_IDS * sizeof(*l1)), *l2 = malloc(P_IDS * sizeof(*l2));

	(void)state;
	assert_non_null(k);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(l1);
	assert_non_null(l2);
	pkeys_init(k);
	/* Two streams over disjoint identifiers: no event of one touches the other. */
	gen_events(a, P_EVENTS / 2, 7, 0, P_IDS / 2);
	gen_events(b, P_EVENTS / 2, 8, P_IDS / 2, P_IDS / 2);
	for (int pass = 0; pass < 2; pass++) {
		struct identity_rules *r = pass ? rules_unlimited() : identity_rules_new();
		struct identity_graph *g1 = identity_graph_new(r);
		struct identity_graph *g2 = identity_graph_new(r);
		uint64_t s = 99;
		size_t ia = 0, ib = 0;
		int64_t seq = 1;

		identity_rules_free(r);
		/* g1: all of a, then all of b. g2: randomly interleaved, each in its order. */
		for (size_t e = 0; e < P_EVENTS / 2; e++)
			papply(g1, k, &a[e], seq++);
		for (size_t e = 0; e < P_EVENTS / 2; e++)
			papply(g1, k, &b[e], seq++);
		seq = 1;
		while (ia < P_EVENTS / 2 || ib < P_EVENTS / 2) {
			bool take_a = ib == P_EVENTS / 2 || (ia < P_EVENTS / 2 && rng_next(&s) & 1);

			if (take_a)
				papply(g2, k, &a[ia++], seq++);
			else
				papply(g2, k, &b[ib++], seq++);
		}
		for (int i = 0; i < P_IDS; i++) {
			l1[i] = pprofile(g1, k, i);
			l2[i] = pprofile(g2, k, i);
		}
		assert_same_partition(l1, l2, P_IDS, NULL);
		identity_graph_free(g1);
		identity_graph_free(g2);
	}
	free(k);
	free(a);
	free(b);
	free(l1);
	free(l2);
}

static void test_identity__limits_hold_on_random_traffic(void **state)
{
	struct pkeys *k = malloc(sizeof(*k));
	struct pevent *evs = malloc(P_EVENTS * sizeof(*evs));
	struct identity_graph *g = graph_default();
	struct identity_stats st;
	uint64_t merges = 0;

	(void)state;
	assert_non_null(k);
	assert_non_null(evs);
	pkeys_init(k);
	gen_events(evs, P_EVENTS, 3, 0, P_IDS);
	for (size_t e = 0; e < P_EVENTS; e++)
		papply(g, k, &evs[e], (int64_t)e + 1);
	/* Every live profile: at most 1 user id and 5 of anything else. */
	identity_graph_stats(g, &st);
	for (uint64_t p = 1; p <= st.profiles_created; p++) {
		struct identity_ids_iter it;
		struct identity_ident_info info;
		struct identity_expl_iter xi;
		struct identity_explanation ex;
		unsigned per_type[IDENTITY_TYPE_BUILTIN_COUNT + 2] = { 0 };

		if (identity_graph_resolve(g, p) != p)
			continue;
		identity_ids_iter_init(&it, g, p);
		while (identity_ids_iter_next(&it, &info)) {
			assert_true(info.type < IDENTITY_TYPE_BUILTIN_COUNT + 2);
			per_type[info.type]++;
		}
		assert_true(per_type[IDENTITY_TYPE_USER_ID] <= 1);
		for (int t = 0; t < IDENTITY_TYPE_BUILTIN_COUNT + 2; t++)
			assert_true(per_type[t] <= 5);
		/* And its merges are all explained. */
		identity_expl_iter_init(&xi, g, p);
		while (identity_expl_iter_next(&xi, &ex)) {
			merges += ex.kind == IDENTITY_EXPL_MERGE;
			assert_int_equal(identity_graph_resolve(g, ex.profile_id), p);
		}
		identity_expl_iter_release(&xi);
	}
	assert_int_equal(merges, st.merges);
	identity_graph_free(g);
	free(k);
	free(evs);
}

static void test_identity__apply_batch_gives_exactly_what_single_applies_give(void **state)
{
	struct pkeys *k = malloc(sizeof(*k));
	struct pevent *pe = malloc(P_EVENTS * sizeof(*pe));
	struct identity_ident (*ids)[5] = malloc(P_EVENTS * sizeof(*ids));
	struct identity_event_ids *evs = malloc(P_EVENTS * sizeof(*evs));
	uint64_t *p1 = malloc(P_EVENTS * sizeof(*p1)), *p2 = malloc(P_EVENTS * sizeof(*p2));
	struct identity_graph *g1 = graph_default(), *g2 = graph_default();
	struct identity_stats s1, s2;
	uint8_t d1[16], d2[16];
	size_t applied = 0;

	(void)state;
	assert_non_null(k);
	assert_non_null(pe);
	assert_non_null(ids);
	assert_non_null(evs);
	assert_non_null(p1);
	assert_non_null(p2);
	pkeys_init(k);
	gen_events(pe, P_EVENTS, 11, 0, P_IDS);
	type_of(g1, "crm_id");
	type_of(g2, "crm_id");
	memset(ids, 0, P_EVENTS * sizeof(*ids));
	for (size_t e = 0; e < P_EVENTS; e++) {
		const struct pevent *p = &pe[e];

		evs[e] = (struct identity_event_ids){
			.ids = ids[e], .n = p->n, .seq = (int64_t)e + 1,
			.ts_us = (int64_t)e * 1000000, .ref = e,
		};
		for (int i = 0; i < p->n; i++) {
			memcpy(ids[e][i].key, k->key[p->id[i]], IDENTITY_KEY_BYTES);
			ids[e][i].type = type_of(g1, p_type_names[p->id[i] % P_TYPES]);
			ids[e][i].blocked = p->blocked >> i & 1;
		}
		if (p->group) {
			memcpy(ids[e][evs[e].n].key, k->group, IDENTITY_KEY_BYTES);
			ids[e][evs[e].n++].type = IDENTITY_TYPE_GROUP_ID;
		}
	}
	for (size_t e = 0; e < P_EVENTS; e++)
		assert_int_equal(identity_graph_apply(g1, &evs[e], &p1[e]), 0);
	/* In uneven batches, as the engine would drain its ring. */
	for (size_t e = 0, n; e < P_EVENTS; e += n) {
		n = e % 7 == 0 ? 1 : 997;
		if (n > P_EVENTS - e)
			n = P_EVENTS - e;
		assert_int_equal(identity_graph_apply_batch(g2, &evs[e], n, &p2[e], &applied), 0);
		assert_int_equal(applied, n);
	}
	assert_memory_equal(p1, p2, P_EVENTS * sizeof(*p1));
	identity_graph_digest(g1, d1);
	identity_graph_digest(g2, d2);
	assert_memory_equal(d1, d2, 16);
	identity_graph_stats(g1, &s1);
	identity_graph_stats(g2, &s2);
	assert_int_equal(s1.links, s2.links);
	assert_int_equal(s1.explanations, s2.explanations);
	assert_true(s1.bytes > 0 && s1.bytes <= s1.bytes_reserved);

	/* A bad event stops the batch there; those before it are applied. */
	ids[P_EVENTS / 2][0].type = 4000;
	identity_graph_free(g2);
	g2 = graph_default();
	type_of(g2, "crm_id");
	assert_int_equal(identity_graph_apply_batch(g2, evs, P_EVENTS, p2, &applied), WEFT_EINVAL);
	assert_int_equal(applied, P_EVENTS / 2);
	identity_graph_free(g1);
	g1 = graph_default();
	type_of(g1, "crm_id");
	for (size_t e = 0; e < P_EVENTS / 2; e++)
		assert_int_equal(identity_graph_apply(g1, &evs[e], &p1[e]), 0);
	identity_graph_digest(g1, d1);
	identity_graph_digest(g2, d2);
	assert_memory_equal(d1, d2, 16);
	identity_graph_free(g1);
	identity_graph_free(g2);
	free(k);
	free(pe);
	free(ids);
	free(evs);
	free(p1);
	free(p2);
}

static void test_identity__identifiers_are_typed_and_remember_their_last_day(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_ids_iter it;
	struct identity_ident_info info;
	uint8_t key[IDENTITY_KEY_BYTES];

	(void)state;
	assert_int_equal(EV_AT(g, 1, 100, { "user_id", "same", 0 }), 1);
	/* The same key under another type is another identifier. */
	key_of("user_id", "same", key);
	assert_int_equal(identity_graph_lookup(g, IDENTITY_TYPE_EMAIL, key), 0);
	assert_int_equal(identity_graph_lookup(g, IDENTITY_TYPE_USER_ID, key), 1);
	/* Events out of time order keep the latest day. */
	EV_AT(g, 2, 300, { "user_id", "same", 0 });
	EV_AT(g, 3, 200, { "user_id", "same", 0 });
	identity_ids_iter_init(&it, g, 1);
	assert_true(identity_ids_iter_next(&it, &info));
	assert_int_equal(info.type, IDENTITY_TYPE_USER_ID);
	assert_memory_equal(info.key, key, IDENTITY_KEY_BYTES);
	assert_int_equal(info.last_seen_day, 300);
	assert_false(identity_ids_iter_next(&it, &info));
	/* Before 1970 counts as day 0. */
	EV_AT(g, 4, -5, { "email", "old@x", 0 });
	identity_ids_iter_init(&it, g, 2);
	assert_true(identity_ids_iter_next(&it, &info));
	assert_int_equal(info.last_seen_day, 0);
	identity_ids_iter_init(&it, g, 99);
	assert_false(identity_ids_iter_next(&it, &info));
	identity_graph_free(g);
}

/* ---- retroactive unmerge ---- */

static int block(struct identity_graph *g, const char *type, const char *value, int64_t seq,
		 struct identity_split *out)
{
	uint8_t key[IDENTITY_KEY_BYTES];

	key_of(type, value, key);
	return identity_graph_block(g, type_of(g, type), key, seq, out);
}

/* How many of pid's explanations are of kind; the first of them into out (if any). */
static size_t find_expl(struct identity_graph *g, uint64_t pid, enum identity_expl_kind kind,
			struct identity_explanation *out)
{
	struct identity_expl_iter it;
	struct identity_explanation ex;
	size_t n = 0;

	identity_expl_iter_init(&it, g, pid);
	while (identity_expl_iter_next(&it, &ex))
		if (ex.kind == kind && n++ == 0)
			*out = ex;
	identity_expl_iter_release(&it);
	return n;
}

/* How many identifiers of type the profile pid resolves to holds. */
static size_t count_type(struct identity_graph *g, uint64_t pid, const char *type)
{
	struct identity_ids_iter it;
	struct identity_ident_info info;
	uint16_t t = type_of(g, type);
	size_t n = 0;

	identity_ids_iter_init(&it, g, pid);
	while (identity_ids_iter_next(&it, &info))
		n += info.type == t;
	return n;
}

#define VISITORS 1000

/*
 * The issue: a thousand visitors, each with their own anonymous id, all
 * type one email (a shared inbox, a test account, "a@a.com") and become one
 * profile. Blocking the email must give each visitor its profile back.
 */
static void test_identity__blocking_a_shared_email_splits_visitors_back_apart(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;
	struct identity_split sp;
	struct identity_stats st;
	struct identity_explanation ex;
	int64_t seq = 1;
	char v[32];

	(void)state;
	assert_int_equal(identity_rules_set_limit(r, "anonymous_id", 0, 0), 0);
	assert_int_equal(identity_rules_set_caps(r, 10 * VISITORS, 10 * VISITORS), 0);
	g = identity_graph_new(r);
	identity_rules_free(r);
	/* Each visitor browses anonymously first: profiles 1..1000, in order. */
	for (int i = 0; i < VISITORS; i++) {
		snprintf(v, sizeof(v), "visitor-%d", i);
		assert_int_equal(EV_AT(g, seq++, i / 10, { "anonymous_id", v, 0 }), i + 1);
		assert_int_equal(EV_AT(g, seq++, i / 10, { "anonymous_id", v, 0 }), i + 1);
	}
	/* Then each identifies with the same email, and browses on. */
	for (int i = 0; i < VISITORS; i++) {
		snprintf(v, sizeof(v), "visitor-%d", i);
		assert_int_equal(EV_AT(g, seq++, 100 + i / 10, { "anonymous_id", v, 0 },
				       { "email", "shared@x", 0 }), 1);
		assert_int_equal(EV_AT(g, seq++, 100 + i / 10, { "anonymous_id", v, 0 }), 1);
	}
	identity_graph_stats(g, &st);
	assert_int_equal(st.profiles, 1);
	assert_int_equal(st.merges, VISITORS - 1);
	assert_int_equal(count_ids(g, 1), VISITORS + 1);
	assert_int_equal(find_expl(g, 1, IDENTITY_EXPL_MERGE, &ex), VISITORS - 1);

	assert_int_equal(block(g, "email", "shared@x", seq, &sp), 0);
	assert_int_equal(sp.profile_id, 1);
	assert_int_equal(sp.parts, VISITORS);
	assert_int_equal(sp.created, 0);
	assert_int_equal(look(g, "email", "shared@x"), 0);
	identity_graph_stats(g, &st);
	assert_int_equal(st.profiles, VISITORS);
	assert_int_equal(st.profiles_created, VISITORS);
	assert_int_equal(st.merges, 0);
	for (int i = 0; i < VISITORS; i++) {
		uint64_t p = (uint64_t)i + 1;

		snprintf(v, sizeof(v), "visitor-%d", i);
		/* Its own profile again, under the id it had before the merges. */
		assert_int_equal(look(g, "anonymous_id", v), p);
		assert_int_equal(identity_graph_resolve(g, p), p);
		assert_int_equal(count_ids(g, p), 1);
		assert_true(has_id(g, p, "anonymous_id", v));
		/* And why: the email was blocked and the old profile 1 split. */
		assert_int_equal(find_expl(g, p, IDENTITY_EXPL_SPLIT, &ex), 1);
		assert_int_equal(ex.reason, IDENTITY_REASON_BLOCKED_KEY);
		assert_int_equal(ex.profile_id, p);
		assert_int_equal(ex.other_id, 1);
		assert_int_equal(ex.type, IDENTITY_TYPE_EMAIL);
		assert_key(ex.key, "email", "shared@x");
		assert_int_equal(ex.seq, seq);
	}
	/* The old survivor keeps its merge history (the other parts do not). */
	assert_int_equal(find_expl(g, 1, IDENTITY_EXPL_MERGE, &ex), VISITORS - 1);
	assert_int_equal(find_expl(g, 2, IDENTITY_EXPL_MERGE, &ex), 0);
	/* The email on later events is ignored: nothing merges again. */
	seq++;
	assert_int_equal(EV(g, seq++, { "anonymous_id", "visitor-7", 0 },
			    { "email", "shared@x", 0 }), 8);
	assert_int_equal(EV(g, seq++, { "anonymous_id", "visitor-9", 0 },
			    { "email", "shared@x", 0 }), 10);
	identity_graph_stats(g, &st);
	assert_int_equal(st.profiles, VISITORS);
	assert_int_equal(st.merges, 0);
	identity_graph_free(g);
}

/*
 * Person A {user a, anon a1, anon a2}, person B {user b, anon b1}, joined
 * by one email; c1 was only ever seen with the email, so it never had a
 * profile of its own.
 */
static struct identity_graph *two_people_one_email(uint32_t anon_limit)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;

	/* Two user ids in one profile: otherwise the email could not join them. */
	assert_int_equal(identity_rules_set_limit(r, "user_id", 0, 0), 0);
	assert_int_equal(identity_rules_set_limit(r, "anonymous_id", anon_limit, 0), 0);
	g = identity_graph_new(r);
	identity_rules_free(r);
	assert_int_equal(EV(g, 1, { "user_id", "a", 0 }, { "anonymous_id", "a1", 0 }), 1);
	assert_int_equal(EV(g, 2, { "anonymous_id", "a2", 0 }), 2);
	assert_int_equal(EV(g, 3, { "user_id", "a", 0 }, { "anonymous_id", "a2", 0 }), 1);
	assert_int_equal(EV(g, 4, { "anonymous_id", "b1", 0 }), 3);
	assert_int_equal(EV(g, 5, { "anonymous_id", "b1", 0 }, { "user_id", "b", 0 }), 3);
	assert_int_equal(EV(g, 6, { "user_id", "a", 0 }, { "email", "shared@x", 0 }), 1);
	assert_int_equal(EV(g, 7, { "email", "shared@x", 0 }, { "user_id", "b", 0 }), 1);
	assert_int_equal(EV(g, 8, { "email", "shared@x", 0 }, { "anonymous_id", "c1", 0 }), 1);
	/* With a limit on anonymous ids, c1 was one too many. */
	assert_int_equal(count_ids(g, 3), anon_limit ? 6 : 7);
	return g;
}

static void test_identity__split_keeps_identifiers_linked_without_the_blocked_one(void **state)
{
	struct identity_graph *g = two_people_one_email(0);
	struct identity_rules *r;
	struct identity_split sp;
	struct identity_stats st;

	(void)state;
	assert_int_equal(block(g, "email", "shared@x", 9, &sp), 0);
	assert_int_equal(sp.profile_id, 1);
	assert_int_equal(sp.parts, 3);
	assert_int_equal(sp.created, 1);
	/* A keeps 1 (the oldest), B keeps 3, the anonymous id 2 merged into stays in A. */
	assert_int_equal(look(g, "user_id", "a"), 1);
	assert_int_equal(look(g, "anonymous_id", "a1"), 1);
	assert_int_equal(look(g, "anonymous_id", "a2"), 1);
	assert_int_equal(identity_graph_resolve(g, 2), 1);
	assert_int_equal(look(g, "user_id", "b"), 3);
	assert_int_equal(look(g, "anonymous_id", "b1"), 3);
	assert_int_equal(identity_graph_resolve(g, 3), 3);
	/* c1 gets a new profile. */
	assert_int_equal(look(g, "anonymous_id", "c1"), 4);
	assert_int_equal(count_ids(g, 1), 3);
	assert_int_equal(count_ids(g, 3), 2);
	assert_int_equal(count_ids(g, 4), 1);
	assert_int_equal(count_type(g, 1, "user_id"), 1);
	assert_int_equal(count_type(g, 1, "anonymous_id"), 2);
	assert_int_equal(count_type(g, 3, "user_id"), 1);
	assert_int_equal(count_type(g, 3, "anonymous_id"), 1);
	identity_graph_stats(g, &st);
	assert_int_equal(st.profiles, 3);
	assert_int_equal(st.profiles_created, 4);
	assert_int_equal(st.merges, 1);

	/*
	 * The per-type counts behind the limits were rebuilt too: with one
	 * user id per profile, a second user id is dropped and A and B can
	 * no longer merge, while the new profile takes its first.
	 */
	r = identity_rules_new();
	assert_int_equal(identity_rules_set_limit(r, "anonymous_id", 0, 0), 0);
	assert_int_equal(identity_graph_set_rules(g, r), 0);
	identity_rules_free(r);
	assert_int_equal(EV(g, 10, { "user_id", "a", 0 }, { "user_id", "z", 0 }), 1);
	assert_int_equal(look(g, "user_id", "z"), 0);
	assert_int_equal(EV(g, 11, { "anonymous_id", "a1", 0 }, { "anonymous_id", "b1", 0 }), 1);
	assert_int_equal(look(g, "anonymous_id", "b1"), 3);
	assert_int_equal(EV(g, 12, { "anonymous_id", "c1", 0 }, { "user_id", "c", 0 }), 4);
	assert_int_equal(look(g, "user_id", "c"), 4);
	assert_int_equal(EV(g, 13, { "anonymous_id", "c1", 0 }, { "anonymous_id", "a2", 0 }), 4);
	assert_int_equal(look(g, "anonymous_id", "a2"), 1);
	identity_graph_free(g);
}

static void test_identity__events_after_a_split_respect_the_block_and_the_limits(void **state)
{
	struct identity_graph *g = two_people_one_email(3);
	struct identity_explanation ex;
	struct identity_split sp;
	struct identity_stats before, after;

	(void)state;
	/* Three anonymous ids were allowed in the merged profile (a1, a2, b1: c1 was dropped). */
	assert_int_equal(look(g, "anonymous_id", "c1"), 0);
	assert_int_equal(block(g, "email", "shared@x", 9, &sp), 0);
	assert_int_equal(sp.parts, 2);
	assert_int_equal(sp.created, 0);
	identity_graph_stats(g, &before);

	/* The blocked email beside A's anonymous id: A only, recorded, nothing merged. */
	assert_int_equal(EV(g, 10, { "email", "shared@x", 0 }, { "anonymous_id", "a1", 0 }), 1);
	assert_int_equal(EV(g, 11, { "email", "shared@x", 0 }, { "anonymous_id", "b1", 0 }), 3);
	assert_int_equal(look(g, "email", "shared@x"), 0);
	assert_int_equal(find_expl(g, 1, IDENTITY_EXPL_BLOCKED, &ex), 1);
	assert_int_equal(ex.reason, IDENTITY_REASON_BLOCKED_KEY);
	assert_int_equal(ex.profile_id, 1);
	assert_int_equal(ex.seq, 10);
	assert_key(ex.key, "email", "shared@x");
	assert_int_equal(find_expl(g, 3, IDENTITY_EXPL_BLOCKED, &ex), 1);
	identity_graph_stats(g, &after);
	assert_int_equal(after.profiles, before.profiles);
	assert_int_equal(after.merges, before.merges);
	assert_int_equal(after.identifiers, before.identifiers);

	/* A holds two anonymous ids of three: one more fits, the next does not. */
	assert_int_equal(EV(g, 12, { "user_id", "a", 0 }, { "anonymous_id", "a3", 0 }), 1);
	assert_int_equal(look(g, "anonymous_id", "a3"), 1);
	assert_int_equal(EV(g, 13, { "user_id", "a", 0 }, { "anonymous_id", "a4", 0 }), 1);
	assert_int_equal(look(g, "anonymous_id", "a4"), 0);
	/* B holds one: two more fit, the third does not. */
	assert_int_equal(EV(g, 14, { "user_id", "b", 0 }, { "anonymous_id", "b2", 0 }), 3);
	assert_int_equal(EV(g, 15, { "user_id", "b", 0 }, { "anonymous_id", "b3", 0 }), 3);
	assert_int_equal(EV(g, 16, { "user_id", "b", 0 }, { "anonymous_id", "b4", 0 }), 3);
	assert_int_equal(look(g, "anonymous_id", "b3"), 3);
	assert_int_equal(look(g, "anonymous_id", "b4"), 0);
	/* A new email shared by both: 3 + 3 anonymous ids would break the limit. */
	assert_int_equal(EV(g, 17, { "user_id", "a", 0 }, { "email", "new@x", 0 }), 1);
	assert_int_equal(EV(g, 18, { "user_id", "b", 0 }, { "email", "new@x", 0 }), 3);
	assert_int_equal(look(g, "email", "new@x"), 1);
	assert_int_equal(find_expl(g, 3, IDENTITY_EXPL_MERGE_REFUSED, &ex), 1);
	assert_int_equal(ex.other_id, 1);
	assert_int_equal(ex.limit_type, IDENTITY_TYPE_ANONYMOUS_ID);
	identity_graph_free(g);
}

/* Blocking an event's highest-priority identifier keeps the others of that event together. */
static void test_identity__split_keeps_the_rest_of_an_event_together(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;
	struct identity_split sp;
	uint64_t p;

	(void)state;
	g = identity_graph_new(r);
	p = EV(g, 1, { "user_id", "shared-login", 0 }, { "anonymous_id", "a1", 0 },
	       { "email", "one@example.com", 0 });
	assert_int_equal(EV(g, 2, { "user_id", "shared-login", 0 }, { "anonymous_id", "a2", 0 }), p);
	assert_int_equal(block(g, "user_id", "shared-login", 3, &sp), 0);
	assert_int_equal(sp.parts, 2);
	/* a1 and the email came on one event: still one person. a2 is another. */
	assert_int_equal(look(g, "anonymous_id", "a1"), look(g, "email", "one@example.com"));
	assert_true(look(g, "anonymous_id", "a1") != 0);
	assert_true(look(g, "anonymous_id", "a2") != 0);
	assert_true(look(g, "anonymous_id", "a1") != look(g, "anonymous_id", "a2"));
	assert_int_equal(look(g, "user_id", "shared-login"), 0);
	identity_graph_free(g);
	identity_rules_free(r);
}

/* Identifiers a split or an erasure took out no longer count as identifiers. */
static void test_identity__removed_identifiers_leave_the_count(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;
	struct identity_split sp;
	struct identity_stats st;
	uint64_t p;

	(void)state;
	g = identity_graph_new(r);
	p = EV(g, 1, { "user_id", "u1", 0 }, { "email", "a@x", 0 }, { "anonymous_id", "a1", 0 });
	EV(g, 2, { "user_id", "u2", 0 });
	identity_graph_stats(g, &st);
	assert_int_equal(st.identifiers, 4);
	assert_int_equal(block(g, "email", "a@x", 3, &sp), 0);
	identity_graph_stats(g, &st);
	assert_int_equal(st.identifiers, 3);
	assert_int_equal(identity_graph_erase(g, p, NULL, NULL), 2);
	identity_graph_stats(g, &st);
	assert_int_equal(st.identifiers, 1);
	assert_int_equal(st.profiles, 1);
	identity_graph_free(g);
	identity_rules_free(r);
}

static void test_identity__block_without_a_profile_and_of_a_lone_identifier(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_explanation ex;
	struct identity_split sp;
	struct identity_stats st;
	uint8_t key[IDENTITY_KEY_BYTES];

	(void)state;
	assert_int_equal(EV(g, 1, { "user_id", "u", 0 }, { "anonymous_id", "a", 0 }), 1);
	assert_int_equal(EV(g, 2, { "anonymous_id", "lone", 0 }), 2);
	assert_int_equal(EV(g, 3, { "anonymous_id", "x", 0 }), 3);
	assert_int_equal(EV(g, 4, { "anonymous_id", "x", 0 }, { "user_id", "u", 0 }), 1);

	/* Nobody holds it: nothing to split, but it is blocked from now on. */
	memset(&sp, 0xff, sizeof(sp));
	assert_int_equal(block(g, "email", "nobody@x", 5, &sp), 0);
	assert_int_equal(sp.profile_id, 0);
	assert_int_equal(sp.parts, 0);
	assert_int_equal(sp.created, 0);
	assert_int_equal(EV(g, 6, { "email", "nobody@x", 0 }), 0);
	assert_int_equal(EV(g, 7, { "email", "nobody@x", 0 }, { "user_id", "u", 0 }), 1);
	assert_int_equal(look(g, "email", "nobody@x"), 0);
	assert_int_equal(find_expl(g, 0, IDENTITY_EXPL_BLOCKED, &ex), 1);
	assert_int_equal(ex.reason, IDENTITY_REASON_BLOCKED_KEY);
	assert_int_equal(find_expl(g, 1, IDENTITY_EXPL_BLOCKED, &ex), 1);
	/* Blocking it again changes nothing. */
	assert_int_equal(block(g, "email", "nobody@x", 8, &sp), 0);
	assert_int_equal(sp.profile_id, 0);

	/* The only identifier of a profile: the profile is gone. */
	assert_int_equal(block(g, "anonymous_id", "lone", 9, &sp), 0);
	assert_int_equal(sp.profile_id, 2);
	assert_int_equal(sp.parts, 0);
	assert_int_equal(sp.created, 0);
	assert_int_equal(look(g, "anonymous_id", "lone"), 0);
	assert_int_equal(identity_graph_resolve(g, 2), 0);
	assert_int_equal(count_ids(g, 2), 0);
	identity_graph_stats(g, &st);
	assert_int_equal(st.profiles, 1);
	assert_int_equal(st.profiles_created, 3);
	/* It was not merged into anything: the one merge is still 3 into 1. */
	assert_int_equal(st.merges, 1);
	assert_int_equal(EV(g, 10, { "anonymous_id", "lone", 0 }), 0);
	/* Blocking it again does not split anything again. */
	assert_int_equal(block(g, "anonymous_id", "lone", 11, &sp), 0);
	assert_int_equal(sp.profile_id, 0);
	identity_graph_stats(g, &st);
	assert_int_equal(st.profiles, 1);
	/*
	 * The first identifier of a merged profile: x's part keeps 3; a held
	 * no profile's first identifier, so it gets a new id; profile 1 lost
	 * its own and goes to the oldest part.
	 */
	assert_int_equal(block(g, "user_id", "u", 12, &sp), 0);
	assert_int_equal(sp.profile_id, 1);
	assert_int_equal(sp.parts, 2);
	assert_int_equal(sp.created, 1);
	assert_int_equal(look(g, "anonymous_id", "x"), 3);
	assert_int_equal(look(g, "anonymous_id", "a"), 4);
	assert_int_equal(identity_graph_resolve(g, 3), 3);
	assert_int_equal(identity_graph_resolve(g, 1), 3);
	identity_graph_stats(g, &st);
	assert_int_equal(st.profiles, 2);
	assert_int_equal(st.profiles_created, 4);
	assert_int_equal(st.merges, 1);

	/* Bad input changes nothing. */
	key_of("email", "bad@x", key);
	assert_int_equal(identity_graph_block(g, 4000, key, 13, &sp), WEFT_EINVAL);
	assert_int_equal(identity_graph_block(g, IDENTITY_TYPE_EMAIL, key, -1, &sp), WEFT_EINVAL);
	assert_int_equal(identity_graph_block(g, IDENTITY_TYPE_EMAIL, key, IDENTITY_SEQ_LIMIT, &sp),
			 WEFT_EINVAL);
	assert_int_equal(EV(g, 14, { "email", "bad@x", 0 }), 5);
	/* Blocking an account (group_id) only blocks it: it never held a profile. */
	assert_int_equal(EV(g, 15, { "anonymous_id", "a", 0 }, { "group_id", "acme", 0 }), 4);
	assert_int_equal(block(g, "group_id", "acme", 16, &sp), 0);
	assert_int_equal(sp.profile_id, 0);
	identity_graph_free(g);
}

static void test_identity__split_replays_the_links_under_the_current_rules(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;
	struct identity_split sp;

	(void)state;
	assert_int_equal(identity_rules_set_limit(r, "user_id", 0, 0), 0);
	g = identity_graph_new(r);
	/* A and B share an email and a device. */
	assert_int_equal(EV(g, 1, { "user_id", "a", 0 }, { "anonymous_id", "a1", 0 }), 1);
	assert_int_equal(EV(g, 2, { "user_id", "b", 0 }, { "anonymous_id", "b1", 0 }), 2);
	assert_int_equal(EV(g, 3, { "user_id", "a", 0 }, { "ios.id", "d", 0 }), 1);
	assert_int_equal(EV(g, 4, { "user_id", "b", 0 }, { "ios.id", "d", 0 }), 1);
	assert_int_equal(EV(g, 5, { "user_id", "b", 0 }, { "email", "shared@x", 0 }), 1);
	assert_int_equal(EV(g, 6, { "user_id", "a", 0 }, { "email", "shared@x", 0 }), 1);
	/* Under the same rules the device still joins them. */
	assert_int_equal(block(g, "email", "shared@x", 7, &sp), 0);
	assert_int_equal(sp.parts, 1);
	assert_int_equal(look(g, "user_id", "b"), 1);
	/* Under one user id per profile, the device stays with A, who had it first. */
	assert_int_equal(identity_rules_set_limit(r, "user_id", 1, 0), 0);
	assert_int_equal(identity_graph_set_rules(g, r), 0);
	identity_rules_free(r);
	assert_int_equal(EV(g, 8, { "user_id", "b", 0 }, { "phone", "+1", 0 }), 1);
	assert_int_equal(block(g, "phone", "+1", 9, &sp), 0);
	assert_int_equal(sp.parts, 2);
	assert_int_equal(sp.created, 0);
	assert_int_equal(look(g, "user_id", "a"), 1);
	assert_int_equal(look(g, "anonymous_id", "a1"), 1);
	assert_int_equal(look(g, "ios.id", "d"), 1);
	assert_int_equal(look(g, "user_id", "b"), 2);
	assert_int_equal(look(g, "anonymous_id", "b1"), 2);
	assert_int_equal(count_ids(g, 2), 2);
	identity_graph_free(g);
}

/*
 * A profile whose first identifier was blocked goes to the oldest part;
 * a later split of that part must not hand the part its id.
 */
static void test_identity__second_split_keeps_the_ids_the_first_gave(void **state)
{
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;
	struct identity_split sp;
	struct identity_stats st;

	(void)state;
	assert_int_equal(identity_rules_set_limit(r, "anonymous_id", 0, 0), 0);
	g = identity_graph_new(r);
	identity_rules_free(r);
	/* The email first, alone (a newsletter sign-up): profile 1. */
	assert_int_equal(EV(g, 1, { "email", "shared@x", 0 }), 1);
	assert_int_equal(EV(g, 2, { "anonymous_id", "a2", 0 }), 2);
	assert_int_equal(EV(g, 3, { "anonymous_id", "a3", 0 }), 3);
	assert_int_equal(EV(g, 4, { "anonymous_id", "a2", 0 }, { "email", "shared@x", 0 }), 1);
	assert_int_equal(EV(g, 5, { "anonymous_id", "a3", 0 }, { "email", "shared@x", 0 }), 1);
	assert_int_equal(block(g, "email", "shared@x", 6, &sp), 0);
	assert_int_equal(sp.parts, 2);
	assert_int_equal(look(g, "anonymous_id", "a2"), 2);
	assert_int_equal(look(g, "anonymous_id", "a3"), 3);
	/* Profile 1 held nothing else: it now resolves to the oldest part. */
	assert_int_equal(identity_graph_resolve(g, 1), 2);
	identity_graph_stats(g, &st);
	assert_int_equal(st.profiles, 2);
	assert_int_equal(st.merges, 1);

	/* A second block splits profile 2 again: a2 keeps 2. */
	assert_int_equal(EV(g, 7, { "anonymous_id", "a2", 0 }, { "email", "other@x", 0 }), 2);
	assert_int_equal(EV(g, 8, { "anonymous_id", "a4", 0 }, { "email", "other@x", 0 }), 2);
	assert_int_equal(block(g, "email", "other@x", 9, &sp), 0);
	assert_int_equal(sp.profile_id, 2);
	assert_int_equal(sp.parts, 2);
	assert_int_equal(look(g, "anonymous_id", "a2"), 2);
	assert_int_equal(look(g, "anonymous_id", "a4"), 4);
	assert_int_equal(identity_graph_resolve(g, 1), 2);
	assert_int_equal(identity_graph_resolve(g, 2), 2);
	identity_graph_stats(g, &st);
	assert_int_equal(st.profiles, 3);
	assert_int_equal(st.merges, 1);
	identity_graph_free(g);

	/* The same when the part's profile was merged into an older one in between. */
	r = identity_rules_new();
	assert_int_equal(identity_rules_set_limit(r, "anonymous_id", 0, 0), 0);
	g = identity_graph_new(r);
	identity_rules_free(r);
	assert_int_equal(EV(g, 1, { "anonymous_id", "a1", 0 }), 1);
	assert_int_equal(EV(g, 2, { "email", "shared@x", 0 }), 2);
	assert_int_equal(EV(g, 3, { "anonymous_id", "a3", 0 }), 3);
	assert_int_equal(EV(g, 4, { "anonymous_id", "a3", 0 }, { "email", "shared@x", 0 }), 2);
	assert_int_equal(block(g, "email", "shared@x", 5, &sp), 0);
	assert_int_equal(look(g, "anonymous_id", "a3"), 3);
	assert_int_equal(identity_graph_resolve(g, 2), 3);
	assert_int_equal(EV(g, 6, { "anonymous_id", "a1", 0 }, { "email", "other@x", 0 }), 1);
	assert_int_equal(EV(g, 7, { "anonymous_id", "a3", 0 }, { "email", "other@x", 0 }), 1);
	assert_int_equal(identity_graph_resolve(g, 3), 1);
	assert_int_equal(block(g, "email", "other@x", 8, &sp), 0);
	assert_int_equal(sp.parts, 2);
	assert_int_equal(sp.created, 0);
	assert_int_equal(look(g, "anonymous_id", "a1"), 1);
	assert_int_equal(look(g, "anonymous_id", "a3"), 3);
	assert_int_equal(identity_graph_resolve(g, 2), 3);
	identity_graph_stats(g, &st);
	assert_int_equal(st.profiles, 2);
	assert_int_equal(st.merges, 1);
	identity_graph_free(g);
}

/* ---- changing the rules ---- */

static void test_identity__set_rules_applies_from_now_on(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_rules *r = identity_rules_new();
	struct identity_explanation ex;
	uint8_t key[IDENTITY_KEY_BYTES];
	uint32_t prio, limit, window;
	char v[16];
	int loyalty;

	(void)state;
	type_of(g, "crm_id");
	for (int i = 0; i < 3; i++) {
		snprintf(v, sizeof(v), "e%d@x", i);
		assert_int_equal(EV(g, 1 + i, { "user_id", "u", 0 }, { "email", v, 0 }), 1);
	}
	assert_int_equal(EV(g, 4, { "user_id", "v", 0 }, { "email", "v0@x", 0 }), 2);
	assert_int_equal(EV(g, 5, { "user_id", "w", 0 }, { "email", "w0@x", 0 }), 3);

	/* New rules, their types interned in another order than the graph's. */
	loyalty = identity_rules_type(r, "loyalty_id");
	assert_int_equal(loyalty, IDENTITY_TYPE_BUILTIN_COUNT);
	assert_int_equal(identity_rules_set_limit(r, "loyalty_id", 1, 0), 0);
	assert_int_equal(identity_rules_set_priority(r, "loyalty_id", 3), 0);
	assert_int_equal(identity_rules_set_limit(r, "email", 2, 30), 0);
	assert_int_equal(identity_rules_set_caps(r, 1, 3), 0);
	key_of("loyalty_id", "blocked", key);
	assert_int_equal(identity_rules_block(r, "loyalty_id", key), 0);
	key_of("email", "spam@x", key);
	assert_int_equal(identity_rules_block(r, "email", key), 0);
	assert_int_equal(identity_graph_set_rules(g, r), 0);
	identity_rules_free(r);

	/* The new type is the graph's next, with the rule it was given. */
	assert_int_equal(type_of(g, "loyalty_id"), IDENTITY_TYPE_BUILTIN_COUNT + 1);
	assert_int_equal(identity_graph_rule(g, type_of(g, "loyalty_id"), &prio, &limit, &window),
			 0);
	assert_int_equal(prio, 3);
	assert_int_equal(limit, 1);
	assert_int_equal(window, 0);
	assert_int_equal(identity_graph_rule(g, IDENTITY_TYPE_EMAIL, &prio, &limit, &window), 0);
	assert_int_equal(prio, 2);
	assert_int_equal(limit, 2);
	assert_int_equal(window, 30);
	/* Types only the graph knows keep theirs. */
	assert_int_equal(identity_graph_rule(g, type_of(g, "crm_id"), &prio, &limit, &window), 0);
	assert_int_equal(limit, 5);
	/* group_id stays an account: no rule of its own, never an identifier. */
	assert_int_equal(identity_graph_rule(g, IDENTITY_TYPE_GROUP_ID, &prio, &limit, &window), 0);
	assert_int_equal(prio, 0);
	assert_int_equal(limit, 0);
	assert_int_equal(identity_graph_rule(g, 4000, &prio, &limit, &window), WEFT_EINVAL);

	/* The tighter email limit leaves u's three emails alone, but u takes no fourth. */
	assert_int_equal(count_type(g, 1, "email"), 3);
	assert_int_equal(EV(g, 10, { "user_id", "u", 0 }, { "email", "e3@x", 0 }), 1);
	assert_int_equal(look(g, "email", "e3@x"), 0);
	/* v takes one more (two in all), not a third. */
	assert_int_equal(EV(g, 11, { "user_id", "v", 0 }, { "email", "v1@x", 0 }), 2);
	assert_int_equal(EV(g, 12, { "user_id", "v", 0 }, { "email", "v2@x", 0 }), 2);
	assert_int_equal(look(g, "email", "v1@x"), 2);
	assert_int_equal(look(g, "email", "v2@x"), 0);
	/* An old record reads the limit in force now. */
	assert_int_equal(find_expl(g, 1, IDENTITY_EXPL_DROPPED, &ex), 1);
	assert_int_equal(ex.limit_type, IDENTITY_TYPE_EMAIL);
	assert_int_equal(ex.limit, 2);
	assert_int_equal(ex.window_days, 30);

	/* The new type's limit: one loyalty id per profile. */
	assert_int_equal(EV(g, 13, { "user_id", "w", 0 }, { "loyalty_id", "L1", 0 }), 3);
	assert_int_equal(EV(g, 14, { "user_id", "w", 0 }, { "loyalty_id", "L2", 0 }), 3);
	assert_int_equal(look(g, "loyalty_id", "L1"), 3);
	assert_int_equal(look(g, "loyalty_id", "L2"), 0);
	/* The blocked keys, found by type name whatever the type's number. */
	assert_int_equal(EV(g, 15, { "loyalty_id", "blocked", 0 }), 0);
	assert_int_equal(EV(g, 16, { "email", "spam@x", 0 }, { "user_id", "x", 0 }), 4);
	assert_int_equal(look(g, "email", "spam@x"), 0);
	assert_int_equal(find_expl(g, 4, IDENTITY_EXPL_BLOCKED, &ex), 1);
	assert_int_equal(ex.reason, IDENTITY_REASON_BLOCKED_KEY);
	/* The caps: three identifiers per profile... */
	assert_int_equal(EV(g, 17, { "user_id", "x", 0 }, { "anonymous_id", "xa", 0 }), 4);
	assert_int_equal(EV(g, 18, { "user_id", "x", 0 }, { "anonymous_id", "xb", 0 }), 4);
	assert_int_equal(EV(g, 19, { "user_id", "x", 0 }, { "anonymous_id", "xc", 0 }), 4);
	assert_int_equal(look(g, "anonymous_id", "xb"), 4);
	assert_int_equal(look(g, "anonymous_id", "xc"), 0);
	assert_int_equal(find_expl(g, 4, IDENTITY_EXPL_DROPPED, &ex), 1);
	assert_int_equal(ex.reason, IDENTITY_REASON_IDENTIFIER_CAP);
	assert_int_equal(ex.limit, 3);
	/* ...and one merge per profile: a second one is refused. */
	assert_int_equal(EV(g, 20, { "anonymous_id", "m1", 0 }), 5);
	assert_int_equal(EV(g, 21, { "anonymous_id", "m2", 0 }), 6);
	assert_int_equal(EV(g, 22, { "anonymous_id", "m3", 0 }), 7);
	assert_int_equal(EV(g, 23, { "anonymous_id", "m1", 0 }, { "anonymous_id", "m2", 0 }), 5);
	assert_int_equal(EV(g, 24, { "anonymous_id", "m1", 0 }, { "anonymous_id", "m3", 0 }), 5);
	assert_int_equal(look(g, "anonymous_id", "m3"), 7);
	assert_int_equal(find_expl(g, 5, IDENTITY_EXPL_MERGE_REFUSED, &ex), 1);
	assert_int_equal(ex.reason, IDENTITY_REASON_MERGE_CAP);
	assert_int_equal(ex.limit, 1);
	/* A group call still only records the account. */
	assert_int_equal(EV(g, 25, { "user_id", "x", 0 }, { "group_id", "acme", 0 }), 4);
	assert_int_equal(look(g, "group_id", "acme"), 0);
	assert_int_equal(find_expl(g, 4, IDENTITY_EXPL_GROUP, &ex), 1);
	identity_graph_free(g);
}

static void test_identity__set_rules_with_too_many_types_changes_nothing(void **state)
{
	struct identity_graph *g = graph_default();
	struct identity_rules *r = identity_rules_new();
	struct identity_stats before, after;
	uint32_t prio, limit, window;
	char t[16];

	(void)state;
	/* The graph knows one type r does not; r fills every other slot. */
	type_of(g, "crm_id");
	assert_int_equal(identity_rules_set_limit(r, "email", 1, 0), 0);
	assert_int_equal(identity_rules_set_caps(r, 1, 2), 0);
	for (int i = IDENTITY_TYPE_BUILTIN_COUNT; i < IDENTITY_TYPES_MAX; i++) {
		snprintf(t, sizeof(t), "r%d", i);
		assert_int_equal(identity_rules_type(r, t), i);
	}
	identity_graph_stats(g, &before);
	assert_int_equal(identity_graph_set_rules(g, r), WEFT_ETOOBIG);
	identity_graph_stats(g, &after);
	assert_int_equal(after.types, before.types);
	assert_null(identity_graph_type_name(g, IDENTITY_TYPE_BUILTIN_COUNT + 1));
	assert_int_equal(identity_graph_rule(g, IDENTITY_TYPE_EMAIL, &prio, &limit, &window), 0);
	assert_int_equal(limit, 5);
	/* Nor did the caps change: three identifiers still fit. */
	assert_int_equal(EV(g, 1, { "user_id", "u", 0 }, { "email", "a@x", 0 },
			    { "email", "b@x", 0 }), 1);
	assert_int_equal(count_ids(g, 1), 3);
	identity_rules_free(r);
	identity_graph_free(g);
}

/* ---- snapshots and splits on random traffic ---- */

struct snap_copy {
	struct identity_section in[IDENTITY_SECTIONS];
	void *data[IDENTITY_SECTIONS];
};

/* Copies g's sections into buffers of their own, as a page store would give them back. */
static void snap_take(const struct identity_graph *g, struct snap_copy *c)
{
	struct identity_section out[IDENTITY_SECTIONS];
	struct buf hdr = BUF_INIT;

	identity_graph_sections(g, &hdr, out);
	for (int i = 0; i < IDENTITY_SECTIONS; i++) {
		c->data[i] = malloc(out[i].bytes ? out[i].bytes : 1);
		assert_non_null(c->data[i]);
		if (out[i].bytes)
			memcpy(c->data[i], out[i].data, out[i].bytes);
		c->in[i] = (struct identity_section){ c->data[i], out[i].bytes };
	}
	buf_release(&hdr);
}

static void snap_release(struct snap_copy *c)
{
	for (int i = 0; i < IDENTITY_SECTIONS; i++)
		free(c->data[i]);
}

static void assert_same_sections(const struct identity_graph *a, const struct identity_graph *b)
{
	struct identity_section sa[IDENTITY_SECTIONS], sb[IDENTITY_SECTIONS];
	struct buf ha = BUF_INIT, hb = BUF_INIT;

	identity_graph_sections(a, &ha, sa);
	identity_graph_sections(b, &hb, sb);
	for (int i = 0; i < IDENTITY_SECTIONS; i++) {
		assert_int_equal(sa[i].bytes, sb[i].bytes);
		if (sa[i].bytes)
			assert_true(memcmp(sa[i].data, sb[i].data, sa[i].bytes) == 0);
	}
	buf_release(&ha);
	buf_release(&hb);
}

/* With same_types, the graphs also number their types alike (so use the same memory). */
static void assert_same_graph(struct identity_graph *a, struct identity_graph *b,
			      const struct pkeys *k, bool same_types)
{
	struct identity_stats sa, sb;
	uint8_t da[16], db[16];

	identity_graph_digest(a, da);
	identity_graph_digest(b, db);
	assert_memory_equal(da, db, 16);
	identity_graph_stats(a, &sa);
	identity_graph_stats(b, &sb);
	assert_int_equal(sa.identifiers, sb.identifiers);
	assert_int_equal(sa.profiles, sb.profiles);
	assert_int_equal(sa.profiles_created, sb.profiles_created);
	assert_int_equal(sa.merges, sb.merges);
	assert_int_equal(sa.links, sb.links);
	assert_int_equal(sa.explanations, sb.explanations);
	if (same_types) {
		assert_int_equal(sa.types, sb.types);
		assert_int_equal(sa.bytes, sb.bytes);
		assert_int_equal(sa.bytes_reserved, sb.bytes_reserved);
	}
	for (int i = 0; i < P_IDS; i++)
		assert_int_equal(pprofile(a, k, i), pprofile(b, k, i));
	/* Every profile id, absorbed or not, and the records of no profile (0). */
	for (uint64_t p = 0; p <= sa.profiles_created; p++) {
		struct identity_expl_iter ia, ib;
		struct identity_explanation ea, eb;

		assert_int_equal(identity_graph_resolve(a, p), identity_graph_resolve(b, p));
		assert_int_equal(count_ids(a, p), count_ids(b, p));
		identity_expl_iter_init(&ia, a, p);
		identity_expl_iter_init(&ib, b, p);
		assert_int_equal(ia.n, ib.n);
		while (identity_expl_iter_next(&ia, &ea)) {
			assert_true(identity_expl_iter_next(&ib, &eb));
			assert_int_equal(ea.kind, eb.kind);
			assert_int_equal(ea.reason, eb.reason);
			assert_int_equal(ea.profile_id, eb.profile_id);
			assert_int_equal(ea.other_id, eb.other_id);
			assert_int_equal(ea.type, eb.type);
			assert_memory_equal(ea.key, eb.key, IDENTITY_KEY_BYTES);
			assert_int_equal(ea.limit_type, eb.limit_type);
			assert_int_equal(ea.limit, eb.limit);
			assert_int_equal(ea.window_days, eb.window_days);
			assert_int_equal(ea.seq, eb.seq);
			assert_int_equal(ea.ref, eb.ref);
			assert_int_equal(ea.count, eb.count);
		}
		identity_expl_iter_release(&ia);
		identity_expl_iter_release(&ib);
	}
}

#define MORE_EVENTS 10000

/*
 * Random traffic plus everything the layout keeps apart: counts of 15 and
 * more and types numbered 16 and up (the counts table), links far from
 * their block's base seq, a blocked key, and two splits. Returns the next
 * seq.
 */
static int64_t build_traffic(struct identity_graph *g, const struct pkeys *k,
			     const struct pevent *evs, size_t n)
{
	struct identity_split sp;
	char v[16];
	int64_t seq = 1;
	bool split_done = false;

	for (size_t e = 0; e < n; e++)
		papply(g, k, &evs[e], seq++);
	for (int i = 0; i < 20; i++) {
		snprintf(v, sizeof(v), "p%d", i);
		EV(g, seq++, { "user_id", "big", 0 }, { "phone", v, 0 });
		snprintf(v, sizeof(v), "x%d", i);
		EV(g, seq++, { "user_id", "big", 0 }, { "t16", v, 0 });
		snprintf(v, sizeof(v), "y%d", i);
		EV(g, seq++, { "user_id", "big2", 0 }, { "t16", v, 0 }, { "phone", v, 0 });
	}
	assert_int_equal(count_type(g, look(g, "user_id", "big"), "phone"), 20);
	assert_int_equal(count_type(g, look(g, "user_id", "big"), "t16"), 20);
	/* Out of order: below the current block's base seq. */
	EV(g, 7, { "user_id", "far", 0 }, { "email", "far@x", 0 });
	EV(g, 8, { "user_id", "far", 0 }, { "anonymous_id", "far", 0 });
	/* Split the first profile with four identifiers or more at one of its emails. */
	for (int i = 1; i < P_IDS && !split_done; i += P_TYPES) {
		uint64_t p = pprofile(g, k, i);

		if (!p || count_ids(g, p) < 4)
			continue;
		assert_int_equal(identity_graph_block(g, IDENTITY_TYPE_EMAIL, k->key[i], seq++, &sp),
				 0);
		assert_int_equal(sp.profile_id, p);
		assert_true(sp.parts >= 1);
		split_done = true;
	}
	assert_true(split_done);
	/*
	 * And the big profile at its user id, its first identifier: every
	 * phone and t16 value on its own, under a new id.
	 */
	assert_int_equal(block(g, "user_id", "big", seq++, &sp), 0);
	assert_int_equal(sp.parts, 40);
	assert_int_equal(sp.created, 40);
	return seq;
}

static struct identity_rules *rules_for_traffic(void)
{
	struct identity_rules *r = identity_rules_new();
	uint8_t key[IDENTITY_KEY_BYTES];
	char t[16];

	assert_int_equal(identity_rules_type(r, "crm_id"), IDENTITY_TYPE_BUILTIN_COUNT);
	for (int i = 12; i <= 16; i++) {
		snprintf(t, sizeof(t), "t%d", i);
		assert_int_equal(identity_rules_type(r, t), i);
	}
	assert_int_equal(identity_rules_set_limit(r, "t16", 0, 0), 0);
	assert_int_equal(identity_rules_set_limit(r, "phone", 0, 0), 0);
	/* One of the random stream's emails ("v1"): a blocked key it keeps hitting. */
	key_of("email", "v1", key);
	assert_int_equal(identity_rules_block(r, "email", key), 0);
	return r;
}

static void test_identity__snapshot_restores_the_same_graph_which_evolves_the_same(void **state)
{
	struct pkeys *k = malloc(sizeof(*k));
	struct pevent *evs = malloc(P_EVENTS * sizeof(*evs));
	struct pevent *more = malloc(MORE_EVENTS * sizeof(*more));
	struct identity_rules *r = rules_for_traffic();
	struct identity_graph *g = identity_graph_new(r), *h = NULL;
	struct identity_explanation ex;
	struct identity_stats st;
	struct snap_copy c;
	int64_t seq;

	(void)state;
	identity_rules_free(r);
	assert_non_null(k);
	assert_non_null(evs);
	assert_non_null(more);
	pkeys_init(k);
	gen_events(evs, P_EVENTS, 21, 0, P_IDS);
	gen_events(more, MORE_EVENTS, 22, 0, P_IDS);
	seq = build_traffic(g, k, evs, P_EVENTS);
	identity_graph_stats(g, &st);
	assert_true(st.merges > 0);
	assert_true(st.links > 4 * 256);
	assert_true(st.explanations > 0);
	assert_true(find_expl(g, 0, IDENTITY_EXPL_BLOCKED, &ex) > 0);

	snap_take(g, &c);
	assert_int_equal(identity_graph_restore(c.in, &h), 0);
	assert_non_null(h);
	/* The restored graph owns its memory: the copies can go. */
	snap_release(&c);
	assert_same_graph(g, h, k, true);
	assert_same_sections(g, h);
	assert_int_equal(look(h, "user_id", "big"), 0);
	assert_int_equal(look(h, "email", "far@x"), look(g, "email", "far@x"));

	/* The same further events, to both: still the same, byte for byte. */
	for (size_t e = 0; e < MORE_EVENTS; e++)
		assert_int_equal(papply(g, k, &more[e], seq + (int64_t)e),
				 papply(h, k, &more[e], seq + (int64_t)e));
	assert_same_graph(g, h, k, true);
	assert_same_sections(g, h);
	identity_graph_free(g);
	identity_graph_free(h);
	free(k);
	free(evs);
	free(more);
}

static void test_identity__snapshot_of_an_empty_graph_and_corrupt_snapshots(void **state)
{
	struct identity_graph *g = graph_default(), *h = NULL;
	struct identity_section in[IDENTITY_SECTIONS];
	struct snap_copy c;
	uint8_t d1[16], d2[16];
	uint32_t *word;
	uint64_t cap;
	void *bigger;

	(void)state;
	snap_take(g, &c);
	assert_int_equal(identity_graph_restore(c.in, &h), 0);
	identity_graph_digest(g, d1);
	identity_graph_digest(h, d2);
	assert_memory_equal(d1, d2, 16);
	assert_same_sections(g, h);
	/* The restored empty graph works. */
	assert_int_equal(EV(h, 1, { "user_id", "u", 0 }, { "email", "e@x", 0 }), 1);
	assert_int_equal(look(h, "email", "e@x"), 1);
	identity_graph_free(h);
	snap_release(&c);

	/* A graph with something in every section, then each kind of damage. */
	EV(g, 1, { "user_id", "u", 0 }, { "email", "e@x", 0 });
	EV(g, 2, { "user_id", "v", 0 }, { "email", "e@x", 0 });
	snap_take(g, &c);
	word = c.data[0];
	memcpy(in, c.in, sizeof(in));
	word[0] ^= 1;		/* the magic */
	h = (void *)1;
	assert_int_equal(identity_graph_restore(in, &h), WEFT_EINVAL);
	assert_null(h);
	word[0] ^= 1;
	word[1]++;		/* the version */
	assert_int_equal(identity_graph_restore(in, &h), WEFT_EINVAL);
	word[1]--;
	assert_int_equal(identity_graph_restore(in, &h), 0);
	identity_graph_free(h);
	/* Truncated: the header, the rules after it, and each array section. */
	in[0].bytes = 16;
	assert_int_equal(identity_graph_restore(in, &h), WEFT_EINVAL);
	in[0].bytes = c.in[0].bytes - 1;
	assert_int_equal(identity_graph_restore(in, &h), WEFT_EINVAL);
	in[0].bytes = c.in[0].bytes;
	for (int i = 1; i < IDENTITY_SECTIONS; i++) {
		if (!c.in[i].bytes)
			continue;
		in[i].bytes = c.in[i].bytes - 1;
		assert_int_equal(identity_graph_restore(in, &h), WEFT_EINVAL);
		assert_null(h);
		/* A whole element short or long: the size no longer matches the count. */
		in[i].bytes = c.in[i].bytes / 2;
		assert_int_equal(identity_graph_restore(in, &h), WEFT_EINVAL);
		bigger = calloc(1, 2 * c.in[i].bytes);
		assert_non_null(bigger);
		memcpy(bigger, c.in[i].data, c.in[i].bytes);
		in[i] = (struct identity_section){ bigger, 2 * c.in[i].bytes };
		assert_int_equal(identity_graph_restore(in, &h), WEFT_EINVAL);
		free(bigger);
		in[i] = c.in[i];
	}
	/* A count in the header that its section does not hold (nnodes is the third word). */
	word[2]++;
	assert_int_equal(identity_graph_restore(in, &h), WEFT_EINVAL);
	word[2]--;
	/*
	 * A capacity whose size in bytes wraps around to the section's
	 * (idtab_cap, the first 64-bit field, after eighteen words).
	 */
	memcpy(&cap, &word[18], sizeof(cap));
	assert_int_equal(cap * sizeof(uint32_t), c.in[2].bytes);
	cap += 1ull << 62;
	memcpy(&word[18], &cap, sizeof(cap));
	assert_int_equal(identity_graph_restore(in, &h), WEFT_EINVAL);
	cap -= 1ull << 62;
	memcpy(&word[18], &cap, sizeof(cap));
	assert_int_equal(identity_graph_restore(in, &h), 0);
	identity_graph_free(h);
	snap_release(&c);
	identity_graph_free(g);
}

static void test_identity__same_events_and_block_give_the_same_split(void **state)
{
	struct pkeys *k = malloc(sizeof(*k));
	struct pevent *evs = malloc(P_EVENTS * sizeof(*evs));
	struct identity_rules *r = rules_for_traffic();
	struct identity_graph *g1 = identity_graph_new(r), *g2 = identity_graph_new(r);
	struct identity_split s1, s2;

	(void)state;
	identity_rules_free(r);
	assert_non_null(k);
	assert_non_null(evs);
	pkeys_init(k);
	gen_events(evs, P_EVENTS, 23, 0, P_IDS);
	/* The second graph numbers the types differently; the digest must not care. */
	type_of(g2, "zzz");
	build_traffic(g1, k, evs, P_EVENTS);
	build_traffic(g2, k, evs, P_EVENTS);
	assert_same_graph(g1, g2, k, false);
	/* One more block of the most connected profile's user id, on both. */
	for (int i = 0; i < P_IDS; i += P_TYPES) {
		uint64_t p = pprofile(g1, k, i);

		if (!p || count_ids(g1, p) < 6)
			continue;
		assert_int_equal(identity_graph_block(g1, IDENTITY_TYPE_USER_ID, k->key[i], 99999,
						      &s1), 0);
		assert_int_equal(identity_graph_block(g2, IDENTITY_TYPE_USER_ID, k->key[i], 99999,
						      &s2), 0);
		assert_int_equal(s1.profile_id, s2.profile_id);
		assert_int_equal(s1.parts, s2.parts);
		assert_int_equal(s1.created, s2.created);
		break;
	}
	assert_same_graph(g1, g2, k, false);
	identity_graph_free(g1);
	identity_graph_free(g2);
	free(k);
	free(evs);
}

struct keyidx {
	uint8_t key[IDENTITY_KEY_BYTES];
	uint32_t i;
};

static int keyidx_cmp(const void *a, const void *b)
{
	return memcmp(a, b, IDENTITY_KEY_BYTES);
}

/* The identifier of the random stream with this key (keys are distinct across types here). */
static uint32_t key_index(const struct keyidx *idx, const uint8_t *key)
{
	const struct keyidx *f = bsearch(key, idx, P_IDS, sizeof(*idx), keyidx_cmp);

	assert_non_null(f);
	return f->i;
}

/*
 * What must hold of any graph, split or not: the merges count what was
 * absorbed, each live profile's explanations are its own (and all of
 * them are someone's), and with limits each profile keeps within them.
 */
static void assert_graph_consistent(struct identity_graph *g, bool limits)
{
	struct identity_stats st;
	uint64_t live = 0, vanished = 0, records = 0;

	identity_graph_stats(g, &st);
	for (uint64_t p = 0; p <= st.profiles_created; p++) {
		struct identity_expl_iter it;
		struct identity_explanation ex;
		struct identity_ids_iter ii;
		struct identity_ident_info info;
		unsigned per_type[IDENTITY_TYPE_BUILTIN_COUNT + 2] = { 0 };
		uint64_t to = identity_graph_resolve(g, p);

		if (p && !to)
			vanished++;
		if (p && to != p)
			continue;
		live += p != 0;
		identity_expl_iter_init(&it, g, p);
		while (identity_expl_iter_next(&it, &ex)) {
			assert_int_equal(identity_graph_resolve(g, ex.profile_id), p);
			records++;
		}
		identity_expl_iter_release(&it);
		if (!p || !limits)
			continue;
		identity_ids_iter_init(&ii, g, p);
		while (identity_ids_iter_next(&ii, &info)) {
			assert_int_equal(identity_graph_lookup(g, info.type, info.key), p);
			per_type[info.type]++;
		}
		assert_true(per_type[IDENTITY_TYPE_USER_ID] <= 1);
		for (int t = 0; t < IDENTITY_TYPE_BUILTIN_COUNT + 2; t++)
			assert_true(per_type[t] <= 5);
	}
	assert_int_equal(live, st.profiles);
	assert_int_equal(st.merges, st.profiles_created - live - vanished);
	/* Records of emptied profiles are nobody's; there are none here. */
	assert_int_equal(vanished, 0);
	assert_int_equal(records, st.explanations);
}

/* Notes the first identifier of the profiles created since *created (the root they start from). */
static void note_first(struct identity_graph *g, const struct keyidx *idx, uint32_t *first,
		       uint64_t *created)
{
	struct identity_stats st;

	identity_graph_stats(g, &st);
	for (; *created < st.profiles_created; ++*created) {
		struct identity_ids_iter it;
		struct identity_ident_info info;

		identity_ids_iter_init(&it, g, *created + 1);
		assert_true(identity_ids_iter_next(&it, &info));
		first[*created + 1] = key_index(idx, info.key);
	}
}

/*
 * Profile ids, split or not: a live profile holds its own first
 * identifier, and a profile whose first identifier remains resolves to the
 * profile holding it, which is as old or older.
 */
static void assert_ids_follow_first_identifiers(struct identity_graph *g, const struct pkeys *k,
						const uint32_t *first, uint64_t created)
{
	for (uint64_t q = 1; q <= created; q++) {
		uint64_t holder = pprofile(g, k, (int)first[q]), to = identity_graph_resolve(g, q);

		if (to == q)
			assert_int_equal(holder, q);
		if (holder) {
			assert_int_equal(to, holder);
			assert_true(holder <= q);
		}
	}
}

/* Per first seq of a link, the first unblocked identifier seen with it (for the reference). */
#define SEQ_GROUPS (2 * P_EVENTS)
static uint32_t group_of_seq[SEQ_GROUPS];

static void test_identity__split_parts_are_the_components_of_the_remaining_links(void **state)
{
	struct pkeys *k = malloc(sizeof(*k));
	struct pevent *evs = malloc(P_EVENTS * sizeof(*evs));
	struct keyidx *idx = malloc(P_IDS * sizeof(*idx));
	uint32_t *parent = malloc(P_IDS * sizeof(*parent));
	uint64_t *want = malloc(P_IDS * sizeof(*want)), *got = malloc(P_IDS * sizeof(*got));
	bool *exists = calloc(P_IDS, sizeof(*exists)), *blocked = calloc(P_IDS, sizeof(*blocked));
	/* A profile's first identifier: each creates one, an event or a split one per part. */
	uint32_t *first = calloc(2 * P_IDS + 1, sizeof(*first));

	(void)state;
	assert_non_null(first);
	assert_non_null(k);
	assert_non_null(evs);
	assert_non_null(idx);
	assert_non_null(parent);
	assert_non_null(want);
	assert_non_null(got);
	assert_non_null(exists);
	assert_non_null(blocked);
	pkeys_init(k);
	for (uint32_t i = 0; i < P_IDS; i++) {
		memcpy(idx[i].key, k->key[i], IDENTITY_KEY_BYTES);
		idx[i].i = i;
	}
	qsort(idx, P_IDS, sizeof(*idx), keyidx_cmp);
	gen_events(evs, P_EVENTS, 31, 0, P_IDS);
	for (int pass = 0; pass < 2; pass++) {
		/* Without limits, then with Segment's defaults. */
		struct identity_rules *r = pass ? identity_rules_new() : rules_unlimited();
		struct identity_graph *g = identity_graph_new(r);
		uint64_t s = 77, created = 0;
		int64_t seq = 1;
		int blocks = 0;

		identity_rules_free(r);
		memset(blocked, 0, P_IDS * sizeof(*blocked));
		memset(exists, 0, P_IDS * sizeof(*exists));
		for (size_t e = 0; e < P_EVENTS; e++) {
			papply(g, k, &evs[e], seq++);
			note_first(g, idx, first, &created);
			for (int i = 0; i < evs[e].n; i++)
				exists[evs[e].id[i]] |= !(evs[e].blocked >> i & 1);
		}
		assert_graph_consistent(g, pass == 1);
		assert_ids_follow_first_identifiers(g, k, first, created);
		/*
		 * Block identifiers of profiles with three or more, one at a time;
		 * every other one a user id, the usual centre of a profile's
		 * links (so that splits have several parts) and often its first
		 * identifier (so that later splits meet profiles refiled by
		 * earlier ones). Ids are checked after each, the rest every tenth.
		 */
		while (blocks < 200) {
			uint32_t i = (uint32_t)(rng_next(&s) % P_IDS);
			struct identity_split sp;
			struct identity_links_iter it;
			struct identity_link l;
			size_t classes;
			uint64_t p;

			if (blocks % 2)
				i -= i % P_TYPES;
			p = pprofile(g, k, (int)i);
			if (!p || count_ids(g, p) < 3)
				continue;
			assert_int_equal(identity_graph_block(g, type_of(g, p_type_names[i % P_TYPES]),
							      k->key[i], seq++, &sp),
					 0);
			assert_int_equal(sp.profile_id, p);
			assert_true(sp.parts >= 1);
			blocked[i] = true;
			blocks++;
			note_first(g, idx, first, &created);
			assert_ids_follow_first_identifiers(g, k, first, created);
			if (blocks % 10)
				continue;
			if (pass == 1) {
				assert_graph_consistent(g, true);
				continue;
			}
			/*
			 * Without limits the parts are the components of the remaining
			 * links, where the identifiers a blocked one linked on the same
			 * event (links of one first seq) stay linked to each other.
			 */
			for (uint32_t j = 0; j < P_IDS; j++)
				parent[j] = j;
			memset(group_of_seq, 0xff, sizeof(group_of_seq));
			identity_links_iter_init(&it, g);
			while (identity_links_iter_next(&it, &l)) {
				uint32_t ends[2] = { key_index(idx, l.key_a), key_index(idx, l.key_b) };

				assert_true(l.first_seq < (int64_t)SEQ_GROUPS);
				for (int e = 0; e < 2; e++) {
					uint32_t *head = &group_of_seq[l.first_seq];

					if (blocked[ends[e]])
						continue;
					if (*head == UINT32_MAX)
						*head = ends[e];
					parent[uf_find(parent, ends[e])] = uf_find(parent, *head);
				}
			}
			for (uint32_t j = 0; j < P_IDS; j++) {
				want[j] = exists[j] && !blocked[j] ? uf_find(parent, j) + 1 : 0;
				got[j] = pprofile(g, k, (int)j);
			}
			assert_same_partition(want, got, P_IDS, &classes);
			assert_graph_consistent(g, false);
		}
		/* New events after the splits: merges, refusals and the blocks at work. */
		for (size_t e = 0; e < P_EVENTS / 4; e++) {
			papply(g, k, &evs[e], seq++);
			note_first(g, idx, first, &created);
		}
		assert_graph_consistent(g, pass == 1);
		assert_ids_follow_first_identifiers(g, k, first, created);
		for (uint32_t i = 0; i < P_IDS; i++)
			if (blocked[i])
				assert_int_equal(pprofile(g, k, (int)i), 0);
		identity_graph_free(g);
	}
	free(k);
	free(evs);
	free(idx);
	free(parent);
	free(want);
	free(got);
	free(exists);
	free(blocked);
	free(first);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity__builtin_types_have_documented_ids_priorities_and_limits),
		cmocka_unit_test(test_identity__rules_reject_bad_settings),
		cmocka_unit_test(test_identity__rules_are_copied_into_the_graph),
		cmocka_unit_test(test_identity__new_profiles_get_ids_in_order),
		cmocka_unit_test(test_identity__limit_drops_lowest_priority_identifier),
		cmocka_unit_test(test_identity__shared_anonymous_id_never_joins_two_users),
		cmocka_unit_test(test_identity__two_sessions_identified_by_one_email_become_one_profile),
		cmocka_unit_test(test_identity__one_event_with_two_new_user_ids_keeps_the_first),
		cmocka_unit_test(test_identity__adding_past_a_limit_drops_lowest_priority_first),
		cmocka_unit_test(test_identity__merge_that_would_break_a_limit_is_refused),
		cmocka_unit_test(test_identity__duplicate_identifiers_on_an_event_count_once),
		cmocka_unit_test(test_identity__event_without_identifiers_belongs_to_no_profile),
		cmocka_unit_test(test_identity__apply_rejects_bad_events_and_changes_nothing),
		cmocka_unit_test(test_identity__blocked_identifiers_attach_to_no_profile),
		cmocka_unit_test(test_identity__alias_merges_previous_anonymous_profile),
		cmocka_unit_test(test_identity__alias_prefers_previous_user_id_and_obeys_limits),
		cmocka_unit_test(test_identity__alias_with_unknown_previous_id_adds_it_as_anonymous_id),
		cmocka_unit_test(test_identity__group_call_records_the_account_without_merging),
		cmocka_unit_test(test_identity__oldest_profile_survives_and_absorbed_ids_resolve),
		cmocka_unit_test(test_identity__merge_cap_stops_merges_but_events_attach),
		cmocka_unit_test(test_identity__merge_cap_counts_merges_transitively),
		cmocka_unit_test(test_identity__identifier_cap_stops_mapping_but_events_attach),
		cmocka_unit_test(test_identity__identifier_cap_applies_to_a_new_profile),
		cmocka_unit_test(test_identity__large_counts_and_late_types_are_exact_through_merges),
		cmocka_unit_test(test_identity__windowed_limit_counts_only_values_within_the_window),
		cmocka_unit_test(test_identity__windowed_limit_applies_to_merges),
		cmocka_unit_test(test_identity__explanations_include_absorbed_history_in_order),
		cmocka_unit_test(test_identity__links_record_identifiers_seen_together),
		cmocka_unit_test(test_identity__without_limits_profiles_are_connected_components),
		cmocka_unit_test(test_identity__same_events_same_order_give_the_same_digest),
		cmocka_unit_test(test_identity__reordering_independent_events_gives_the_same_components),
		cmocka_unit_test(test_identity__limits_hold_on_random_traffic),
		cmocka_unit_test(test_identity__apply_batch_gives_exactly_what_single_applies_give),
		cmocka_unit_test(test_identity__identifiers_are_typed_and_remember_their_last_day),
		cmocka_unit_test(test_identity__blocking_a_shared_email_splits_visitors_back_apart),
		cmocka_unit_test(test_identity__split_keeps_identifiers_linked_without_the_blocked_one),
		cmocka_unit_test(test_identity__events_after_a_split_respect_the_block_and_the_limits),
		cmocka_unit_test(test_identity__block_without_a_profile_and_of_a_lone_identifier),
		cmocka_unit_test(test_identity__split_keeps_the_rest_of_an_event_together),
		cmocka_unit_test(test_identity__removed_identifiers_leave_the_count),
		cmocka_unit_test(test_identity__split_replays_the_links_under_the_current_rules),
		cmocka_unit_test(test_identity__second_split_keeps_the_ids_the_first_gave),
		cmocka_unit_test(test_identity__set_rules_applies_from_now_on),
		cmocka_unit_test(test_identity__set_rules_with_too_many_types_changes_nothing),
		cmocka_unit_test(test_identity__snapshot_restores_the_same_graph_which_evolves_the_same),
		cmocka_unit_test(test_identity__snapshot_of_an_empty_graph_and_corrupt_snapshots),
		cmocka_unit_test(test_identity__same_events_and_block_give_the_same_split),
		cmocka_unit_test(test_identity__split_parts_are_the_components_of_the_remaining_links),
	};

	return cmocka_run_group_tests_name("identity", tests, NULL, NULL);
}
