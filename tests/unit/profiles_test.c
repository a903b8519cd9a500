/*
 * Unit tests for profiles/: traits (last write wins per key by the event's
 * timestamp, removals included), counters, first and last seen, accounts,
 * merges and their event history, paging, forgetting and the reuse of the
 * freed slots, identifiers, the size limits and records that move between
 * slot sizes, and snapshots, which must give back the same store, byte for
 * byte, that goes on evolving the same. Then random traffic (events,
 * merges, forgets) checked against a simple model kept in this file.
 *
 * Account keys are XXH3-128 of "group_id NUL value", standing in for
 * privacy/'s keyed hashes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "profiles/profiles.h"

/* ---- helpers ---- */

static void acct_key(int i, uint8_t out[16])
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "group_id%cacct%d", '\0', i);

	XXH128_canonicalFromHash((XXH128_canonical_t *)out, XXH3_128bits(buf, (size_t)n));
}

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

/* Applies one event; traits is JSON text or NULL. Returns what apply returned. */
static int ev(struct profile_store *ps, uint64_t pid, int64_t seq, int64_t ts,
	      enum profile_call call, const char *name, const char *traits)
{
	struct profile_event e = {
		.seq = seq, .ts_us = ts, .call = call, .name = name, .traits = parse(traits),
		.profile_id = pid,
	};
	int rc = profile_store_apply(ps, &e);

	json_decref(e.traits);
	return rc;
}

#define IDENTIFY(ps, pid, seq, ts, traits) ev(ps, pid, seq, ts, PROFILE_IDENTIFY, NULL, traits)
#define TRACK(ps, pid, seq, ts, name) ev(ps, pid, seq, ts, PROFILE_TRACK, name, NULL)

/* A group call of profile pid into account acct (acct_key), with the group's traits. */
static int group(struct profile_store *ps, uint64_t pid, int64_t seq, int64_t ts, int acct,
		 const char *acct_traits)
{
	uint8_t key[16];
	struct profile_event e = {
		.seq = seq, .ts_us = ts, .call = PROFILE_GROUP, .profile_id = pid,
		.account_key = key, .account_traits = parse(acct_traits),
	};
	int rc;

	acct_key(acct, key);
	rc = profile_store_apply(ps, &e);
	json_decref(e.account_traits);
	return rc;
}

static void view(const struct profile_store *ps, uint64_t pid, struct profile_view *v)
{
	assert_int_equal(profile_store_view(ps, pid, v), 0);
	assert_int_equal(v->profile_id, pid);
}

static void assert_no_record(const struct profile_store *ps, uint64_t pid)
{
	struct profile_view v;

	assert_int_equal(profile_store_view(ps, pid, &v), WEFT_ENOTFOUND);
	assert_int_equal(profile_store_view_traits(ps, pid, &v), WEFT_ENOTFOUND);
	assert_int_equal(v.ntraits, 0);
	profile_view_release(&v);
}

/* The traits-only view of pid: full's header and traits, no counters or accounts. */
static void assert_traits_view_matches(const struct profile_store *ps, uint64_t pid,
				       const struct profile_view *full)
{
	struct profile_view v;

	assert_int_equal(profile_store_view_traits(ps, pid, &v), 0);
	assert_int_equal(v.profile_id, full->profile_id);
	assert_int_equal(v.first_seen_us, full->first_seen_us);
	assert_int_equal(v.last_seen_us, full->last_seen_us);
	assert_int_equal(v.events, full->events);
	assert_int_equal(v.ntraits, full->ntraits);
	for (size_t i = 0; i < v.ntraits; i++) {
		assert_string_equal(v.traits[i].name, full->traits[i].name);
		assert_int_equal(v.traits[i].json_len, full->traits[i].json_len);
		assert_memory_equal(v.traits[i].json, full->traits[i].json, v.traits[i].json_len);
		assert_int_equal(v.traits[i].json[v.traits[i].json_len], '\0');
		assert_int_equal(v.traits[i].ts_us, full->traits[i].ts_us);
	}
	assert_int_equal(v.ncounters, 0);
	assert_int_equal(v.naccounts, 0);
	profile_view_release(&v);
}

static const struct profile_trait *trait(const struct profile_trait *t, size_t n,
					 const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].name, name) == 0)
			return &t[i];
	return NULL;
}

static void assert_trait_in(const struct profile_trait *t, size_t n, const char *name,
			    const char *json, int64_t ts)
{
	const struct profile_trait *have = trait(t, n, name);

	if (!have)
		fail_msg("trait '%s' is missing", name);
	assert_string_equal(have->json, json);
	assert_int_equal(have->json_len, strlen(json));
	assert_int_equal(have->ts_us, ts);
}

#define ASSERT_TRAIT(v, name, json, ts) assert_trait_in((v)->traits, (v)->ntraits, name, json, ts)

/* Traits, counters and each account's traits are sorted by name. */
static void assert_sorted(const struct profile_view *v)
{
	for (size_t i = 1; i < v->ntraits; i++)
		assert_true(strcmp(v->traits[i - 1].name, v->traits[i].name) < 0);
	for (size_t i = 1; i < v->ncounters; i++)
		assert_true(strcmp(v->counters[i - 1].name, v->counters[i].name) < 0);
	for (size_t a = 0; a < v->naccounts; a++)
		for (size_t i = 1; i < v->accounts[a].ntraits; i++)
			assert_true(strcmp(v->accounts[a].traits[i - 1].name,
					   v->accounts[a].traits[i].name) < 0);
}

static uint64_t counter(const struct profile_view *v, const char *name)
{
	for (size_t i = 0; i < v->ncounters; i++)
		if (strcmp(v->counters[i].name, name) == 0)
			return v->counters[i].count;
	return 0;
}

static const struct profile_account *account(const struct profile_view *v, int acct)
{
	uint8_t key[16];

	acct_key(acct, key);
	for (size_t i = 0; i < v->naccounts; i++)
		if (memcmp(v->accounts[i].key, key, 16) == 0)
			return &v->accounts[i];
	return NULL;
}

/* All of pid's events (at most 4096), newest first; returns how many. */
static size_t events(const struct profile_store *ps, uint64_t pid, int64_t *out)
{
	return profile_store_events(ps, pid, 0, 0, out, 4096);
}

static void assert_events(const struct profile_store *ps, uint64_t pid, const int64_t *want,
			  size_t n)
{
	int64_t got[4096];

	assert_int_equal(events(ps, pid, got), n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(got[i], want[i]);
}

#define SEQS(...) (const int64_t[]){ __VA_ARGS__ }, \
	sizeof((const int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)

static struct profile_store_stats stats(const struct profile_store *ps)
{
	struct profile_store_stats st;

	memset(&st, 0xa5, sizeof(st));
	profile_store_stats(ps, &st);
	return st;
}

/* The heap section's size: the slab arena's length. */
static size_t heap_bytes(const struct profile_store *ps)
{
	struct profile_section s[PROFILE_SECTIONS];
	struct buf hdr = BUF_INIT;

	profile_store_sections(ps, &hdr, s);
	buf_release(&hdr);
	return s[2].bytes;
}

/* A JSON string literal of n 'x's (n + 2 bytes of JSON); caller frees. */
static char *long_string(size_t n)
{
	char *s = malloc(n + 3);

	assert_non_null(s);
	s[0] = '"';
	memset(s + 1, 'x', n);
	s[n + 1] = '"';
	s[n + 2] = '\0';
	return s;
}

/* {"name": <a string of n 'x's>} as a JSON object; caller decrefs. */
static json_t *one_trait(const char *name, size_t n)
{
	json_t *o = json_object();
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, 'x', n);
	s[n] = '\0';
	json_object_set_new(o, name, json_string(s));
	free(s);
	return o;
}

static int ev_json(struct profile_store *ps, uint64_t pid, int64_t seq, int64_t ts, json_t *traits)
{
	struct profile_event e = {
		.seq = seq, .ts_us = ts, .call = PROFILE_IDENTIFY, .traits = traits,
		.profile_id = pid,
	};
	int rc = profile_store_apply(ps, &e);

	json_decref(traits);
	return rc;
}

static void assert_same_view(const struct profile_view *a, const struct profile_view *b)
{
	assert_int_equal(a->profile_id, b->profile_id);
	assert_int_equal(a->first_seen_us, b->first_seen_us);
	assert_int_equal(a->last_seen_us, b->last_seen_us);
	assert_int_equal(a->events, b->events);
	assert_int_equal(a->ntraits, b->ntraits);
	for (size_t i = 0; i < a->ntraits; i++) {
		assert_string_equal(a->traits[i].name, b->traits[i].name);
		assert_int_equal(a->traits[i].json_len, b->traits[i].json_len);
		assert_memory_equal(a->traits[i].json, b->traits[i].json, a->traits[i].json_len);
		assert_int_equal(a->traits[i].ts_us, b->traits[i].ts_us);
	}
	assert_int_equal(a->ncounters, b->ncounters);
	for (size_t i = 0; i < a->ncounters; i++) {
		assert_string_equal(a->counters[i].name, b->counters[i].name);
		assert_int_equal(a->counters[i].count, b->counters[i].count);
	}
	assert_int_equal(a->naccounts, b->naccounts);
	for (size_t i = 0; i < a->naccounts; i++) {
		assert_memory_equal(a->accounts[i].key, b->accounts[i].key, 16);
		assert_int_equal(a->accounts[i].ntraits, b->accounts[i].ntraits);
		for (size_t j = 0; j < a->accounts[i].ntraits; j++) {
			assert_string_equal(a->accounts[i].traits[j].name,
					    b->accounts[i].traits[j].name);
			assert_string_equal(a->accounts[i].traits[j].json,
					    b->accounts[i].traits[j].json);
			assert_int_equal(a->accounts[i].traits[j].ts_us,
					 b->accounts[i].traits[j].ts_us);
		}
	}
}

/* ---- traits ---- */

static void test_profiles__identify_traits_keep_values_as_compact_json_sorted_by_name(void **state)
{
	struct profile_store *ps = profile_store_new();
	struct profile_view v;

	(void)state;
	assert_int_equal(IDENTIFY(ps, 1, 1, 100, "{\"name\": \"Ann\", \"plan\": \"free\", "
				  "\"age\": 30, \"vip\": true, \"gone\": false, "
				  "\"tags\": [\"a\", 2, null], \"address\": {\"city\": \"X\", "
				  "\"zip\": \"1\"}, \"score\": 1.5, \"nick\": \"\", \"none\": null}"), 0);
	view(ps, 1, &v);
	assert_sorted(&v);
	assert_int_equal(v.ntraits, 9);
	assert_string_equal(v.traits[0].name, "address");
	assert_string_equal(v.traits[8].name, "vip");
	ASSERT_TRAIT(&v, "address", "{\"city\":\"X\",\"zip\":\"1\"}", 100);
	ASSERT_TRAIT(&v, "age", "30", 100);
	ASSERT_TRAIT(&v, "gone", "false", 100);
	ASSERT_TRAIT(&v, "name", "\"Ann\"", 100);
	/* "" is a value: it is kept. */
	ASSERT_TRAIT(&v, "nick", "\"\"", 100);
	ASSERT_TRAIT(&v, "plan", "\"free\"", 100);
	ASSERT_TRAIT(&v, "score", "1.5", 100);
	ASSERT_TRAIT(&v, "tags", "[\"a\",2,null]", 100);
	ASSERT_TRAIT(&v, "vip", "true", 100);
	/* null removes: a trait never set stays away. */
	assert_null(trait(v.traits, v.ntraits, "none"));
	profile_view_release(&v);
	assert_int_equal(stats(ps).traits, 9);

	/* A newer object replaces the old one whole; other keys are untouched. */
	assert_int_equal(IDENTIFY(ps, 1, 2, 200, "{\"plan\": \"pro\", \"address\": {\"city\": "
				  "\"Y\"}}"), 0);
	view(ps, 1, &v);
	ASSERT_TRAIT(&v, "address", "{\"city\":\"Y\"}", 200);
	ASSERT_TRAIT(&v, "plan", "\"pro\"", 200);
	ASSERT_TRAIT(&v, "name", "\"Ann\"", 100);
	profile_view_release(&v);

	/* Applied later but older: it sets only what nothing newer set. */
	assert_int_equal(IDENTIFY(ps, 1, 3, 150, "{\"plan\": \"old\", \"name\": \"Bob\", "
				  "\"address\": null}"), 0);
	view(ps, 1, &v);
	ASSERT_TRAIT(&v, "plan", "\"pro\"", 200);
	ASSERT_TRAIT(&v, "name", "\"Bob\"", 150);
	ASSERT_TRAIT(&v, "address", "{\"city\":\"Y\"}", 200);
	profile_view_release(&v);

	/* A removal is a write too: an older value does not bring the trait back. */
	assert_int_equal(IDENTIFY(ps, 1, 4, 300, "{\"nick\": null, \"age\": null}"), 0);
	assert_int_equal(IDENTIFY(ps, 1, 5, 250, "{\"nick\": \"late\", \"age\": 31}"), 0);
	view(ps, 1, &v);
	assert_null(trait(v.traits, v.ntraits, "nick"));
	assert_null(trait(v.traits, v.ntraits, "age"));
	assert_int_equal(v.ntraits, 7);
	profile_view_release(&v);
	assert_int_equal(stats(ps).traits, 7);
	/* A newer value does. */
	assert_int_equal(IDENTIFY(ps, 1, 6, 400, "{\"nick\": \"Annie\"}"), 0);

	/* context.traits on any call set traits the same way. */
	assert_int_equal(ev(ps, 1, 7, 500, PROFILE_TRACK, "Clicked", "{\"plan\": \"team\"}"), 0);
	assert_int_equal(ev(ps, 1, 8, 600, PROFILE_PAGE, NULL, "{\"score\": 2}"), 0);
	view(ps, 1, &v);
	assert_sorted(&v);
	ASSERT_TRAIT(&v, "nick", "\"Annie\"", 400);
	ASSERT_TRAIT(&v, "plan", "\"team\"", 500);
	ASSERT_TRAIT(&v, "score", "2", 600);
	assert_int_equal(v.ntraits, 8);
	assert_int_equal(v.events, 8);
	profile_view_release(&v);
	assert_int_equal(stats(ps).traits, 8);

	/* Traits that are not an object are ignored; profile 0 keeps nothing. */
	assert_int_equal(IDENTIFY(ps, 1, 9, 700, "[1, 2]"), 0);
	assert_int_equal(IDENTIFY(ps, 0, 10, 800, "{\"plan\": \"none\"}"), 0);
	view(ps, 1, &v);
	ASSERT_TRAIT(&v, "plan", "\"team\"", 500);
	assert_int_equal(v.events, 9);
	profile_view_release(&v);
	assert_int_equal(stats(ps).profiles, 1);
	assert_int_equal(stats(ps).events, 9);
	assert_int_equal(profile_store_events(ps, 0, 0, 0, (int64_t[4]){ 0 }, 4), 0);
	assert_no_record(ps, 0);
	assert_no_record(ps, 2);
	assert_no_record(ps, 1000);
	profile_store_free(ps);
}

/* ---- counters ---- */

static void test_profiles__real_traits_keep_the_shortest_form_that_reads_back(void **state)
{
	struct profile_store *ps = profile_store_new();
	struct profile_view v;

	(void)state;
	/* jansson's dump would keep 7.7 as 7.7000000000000002. */
	assert_int_equal(IDENTIFY(ps, 1, 1, 100, "{\"price\": 7.7, \"whole\": 1.0, "
				  "\"list\": [0.1, 1e300, 5e-324, {\"z\": -0.0}], "
				  "\"sum\": 0.30000000000000004, \"big\": 123456789012345680.0}"), 0);
	assert_int_equal(group(ps, 1, 2, 200, 0, "{\"mrr\": 19.99}"), 0);
	view(ps, 1, &v);
	ASSERT_TRAIT(&v, "price", "7.7", 100);
	ASSERT_TRAIT(&v, "whole", "1.0", 100);
	ASSERT_TRAIT(&v, "list", "[0.1,1e300,5e-324,{\"z\":-0.0}]", 100);
	ASSERT_TRAIT(&v, "sum", "0.30000000000000004", 100);
	ASSERT_TRAIT(&v, "big", "1.2345678901234568e17", 100);
	assert_int_equal(v.naccounts, 1);
	assert_trait_in(v.accounts[0].traits, v.accounts[0].ntraits, "mrr", "19.99", 200);
	assert_traits_view_matches(ps, 1, &v);
	profile_view_release(&v);
	profile_store_free(ps);
}

static void test_profiles__traits_view_has_the_traits_without_counters_or_accounts(void **state)
{
	struct profile_store *ps = profile_store_new();
	struct profile_view v;

	(void)state;
	assert_int_equal(IDENTIFY(ps, 1, 1, 100, "{\"name\": \"Ann\", \"plan\": \"free\", "
				  "\"zip\": \"1\", \"age\": 30}"), 0);
	assert_int_equal(TRACK(ps, 1, 2, 150, "Clicked"), 0);
	assert_int_equal(group(ps, 1, 3, 200, 0, "{\"plan\": \"team\"}"), 0);
	assert_int_equal(IDENTIFY(ps, 2, 4, 300, "{\"age\": 31, \"b\": true}"), 0);
	assert_int_equal(IDENTIFY(ps, 1, 5, 400, "{\"plan\": null}"), 0);
	profile_store_merge(ps, 1, 2);

	view(ps, 1, &v);
	assert_true(v.ncounters > 0);
	assert_int_equal(v.naccounts, 1);
	assert_int_equal(v.ntraits, 4);		/* age, b, name, zip: plan was removed */
	assert_traits_view_matches(ps, 1, &v);
	profile_view_release(&v);

	/* Nothing for the absorbed profile, profile 0 or one never seen. */
	assert_no_record(ps, 2);
	assert_no_record(ps, 0);
	assert_no_record(ps, 99);
	profile_store_free(ps);
}

static void test_profiles__counters_count_calls_by_name_with_first_and_last_seen(void **state)
{
	struct profile_store *ps = profile_store_new();
	struct profile_view v;
	int64_t seq = 1;

	(void)state;
	assert_int_equal(TRACK(ps, 1, seq++, 500, "Order Completed"), 0);
	assert_int_equal(TRACK(ps, 1, seq++, 100, "Order Completed"), 0);
	assert_int_equal(TRACK(ps, 1, seq++, 900, "Order Completed"), 0);
	assert_int_equal(TRACK(ps, 1, seq++, 300, "Signed Up"), 0);
	assert_int_equal(TRACK(ps, 1, seq++, 300, NULL), 0);
	assert_int_equal(IDENTIFY(ps, 1, seq++, 400, NULL), 0);
	assert_int_equal(IDENTIFY(ps, 1, seq++, 400, "{\"a\": 1}"), 0);
	assert_int_equal(ev(ps, 1, seq++, 200, PROFILE_PAGE, NULL, NULL), 0);
	assert_int_equal(ev(ps, 1, seq++, 200, PROFILE_SCREEN, NULL, NULL), 0);
	assert_int_equal(ev(ps, 1, seq++, 200, PROFILE_ALIAS, NULL, NULL), 0);
	assert_int_equal(group(ps, 1, seq++, 600, 1, NULL), 0);
	/* A track named like another call shares its counter. */
	assert_int_equal(TRACK(ps, 1, seq++, 700, "page"), 0);
	view(ps, 1, &v);
	assert_sorted(&v);
	assert_int_equal(v.first_seen_us, 100);
	assert_int_equal(v.last_seen_us, 900);
	assert_int_equal(v.events, 12);
	assert_int_equal(v.ncounters, 8);
	/* By name, bytewise: capitals first. */
	assert_string_equal(v.counters[0].name, "Order Completed");
	assert_string_equal(v.counters[1].name, "Signed Up");
	assert_string_equal(v.counters[2].name, "alias");
	assert_string_equal(v.counters[7].name, "track");
	assert_int_equal(counter(&v, "Order Completed"), 3);
	assert_int_equal(counter(&v, "Signed Up"), 1);
	assert_int_equal(counter(&v, "track"), 1);
	assert_int_equal(counter(&v, "identify"), 2);
	assert_int_equal(counter(&v, "page"), 2);
	assert_int_equal(counter(&v, "screen"), 1);
	assert_int_equal(counter(&v, "alias"), 1);
	assert_int_equal(counter(&v, "group"), 1);
	assert_int_equal(v.naccounts, 1);
	assert_int_equal(v.ntraits, 1);
	profile_view_release(&v);
	assert_events(ps, 1, SEQS(12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1));
	assert_int_equal(stats(ps).events, 12);
	profile_store_free(ps);
}

/* ---- accounts ---- */

static void test_profiles__group_calls_link_accounts_that_share_their_traits(void **state)
{
	struct profile_store *ps = profile_store_new();
	struct profile_view v, w;
	const struct profile_account *a;
	char *big = long_string(9000);
	char json[9100];

	(void)state;
	assert_int_equal(group(ps, 1, 1, 100, 1, "{\"name\": \"Acme\", \"plan\": \"free\"}"), 0);
	assert_int_equal(group(ps, 2, 2, 200, 1, "{\"plan\": \"pro\"}"), 0);
	/* Older: adds size, does not touch plan. The account is listed once. */
	assert_int_equal(group(ps, 1, 3, 50, 1, "{\"plan\": \"older\", \"size\": 10}"), 0);
	assert_int_equal(group(ps, 1, 4, 300, 2, "{\"name\": \"Beta\"}"), 0);
	view(ps, 1, &v);
	view(ps, 2, &w);
	assert_sorted(&v);
	assert_int_equal(v.naccounts, 2);
	assert_int_equal(w.naccounts, 1);
	/* Account traits are the account's, not the profile's. */
	assert_int_equal(v.ntraits, 0);
	assert_int_equal(counter(&v, "group"), 3);
	for (int i = 0; i < 2; i++) {
		a = account(i ? &w : &v, 1);
		assert_non_null(a);
		assert_int_equal(a->ntraits, 3);
		assert_trait_in(a->traits, a->ntraits, "name", "\"Acme\"", 100);
		assert_trait_in(a->traits, a->ntraits, "plan", "\"pro\"", 200);
		assert_trait_in(a->traits, a->ntraits, "size", "10", 50);
	}
	a = account(&v, 2);
	assert_non_null(a);
	assert_int_equal(a->ntraits, 1);
	assert_trait_in(a->traits, a->ntraits, "name", "\"Beta\"", 300);
	assert_null(account(&w, 2));
	profile_view_release(&v);
	profile_view_release(&w);

	/* A removal by one profile's group call shows in the other's view. */
	assert_int_equal(group(ps, 2, 5, 400, 1, "{\"size\": null}"), 0);
	view(ps, 1, &v);
	a = account(&v, 1);
	assert_int_equal(a->ntraits, 2);
	assert_null(trait(a->traits, a->ntraits, "size"));
	assert_int_equal(v.naccounts, 2);
	profile_view_release(&v);
	/* Account traits do not count as profile traits. */
	assert_int_equal(stats(ps).traits, 0);

	/* A value too long for the account: refused, but the link and the rest are kept. */
	snprintf(json, sizeof(json), "{\"big\": %s, \"ok\": 1}", big);
	assert_int_equal(group(ps, 3, 6, 500, 3, json), WEFT_ETOOBIG);
	view(ps, 3, &v);
	a = account(&v, 3);
	assert_non_null(a);
	assert_int_equal(a->ntraits, 1);
	assert_trait_in(a->traits, a->ntraits, "ok", "1", 500);
	assert_int_equal(v.events, 1);
	profile_view_release(&v);
	free(big);
	profile_store_free(ps);
}

/* ---- merges ---- */

static void test_profiles__merge_keeps_the_newest_of_each_trait_and_sums_the_rest(void **state)
{
	struct profile_store *ps = profile_store_new();
	struct profile_view v;
	int64_t out[16];

	(void)state;
	/* The survivor, 1. */
	assert_int_equal(IDENTIFY(ps, 1, 1, 100, "{\"x\": \"s-old\", \"z\": \"s\", \"q\": 1}"), 0);
	assert_int_equal(IDENTIFY(ps, 1, 3, 300, "{\"y\": \"s-new\"}"), 0);
	assert_int_equal(group(ps, 1, 5, 250, 1, "{\"n\": 1}"), 0);
	/* The absorbed, 2. */
	assert_int_equal(IDENTIFY(ps, 2, 2, 200, "{\"x\": \"a-new\"}"), 0);
	assert_int_equal(IDENTIFY(ps, 2, 4, 50, "{\"y\": \"a-old\", \"q\": null}"), 0);
	assert_int_equal(IDENTIFY(ps, 2, 6, 400, "{\"z\": null}"), 0);
	assert_int_equal(TRACK(ps, 2, 7, 150, "Buy"), 0);
	assert_int_equal(TRACK(ps, 2, 8, 160, "Buy"), 0);
	assert_int_equal(ev(ps, 2, 9, 170, PROFILE_TRACK, "Buy", "{\"w\": [1]}"), 0);
	assert_int_equal(group(ps, 2, 10, 180, 1, NULL), 0);
	assert_int_equal(group(ps, 2, 11, 190, 2, NULL), 0);
	assert_int_equal(stats(ps).profiles, 2);
	assert_int_equal(stats(ps).traits, 4 + 3);

	profile_store_merge(ps, 1, 2);
	assert_no_record(ps, 2);
	assert_int_equal(stats(ps).profiles, 1);
	view(ps, 1, &v);
	assert_sorted(&v);
	ASSERT_TRAIT(&v, "x", "\"a-new\"", 200);
	ASSERT_TRAIT(&v, "y", "\"s-new\"", 300);
	/* The absorbed side's removal is newer than the survivor's value; not so for q. */
	assert_null(trait(v.traits, v.ntraits, "z"));
	ASSERT_TRAIT(&v, "q", "1", 100);
	ASSERT_TRAIT(&v, "w", "[1]", 170);
	assert_int_equal(v.ntraits, 4);
	assert_int_equal(counter(&v, "identify"), 5);
	assert_int_equal(counter(&v, "Buy"), 3);
	assert_int_equal(counter(&v, "group"), 3);
	assert_int_equal(v.ncounters, 3);
	assert_int_equal(v.naccounts, 2);
	assert_non_null(account(&v, 1));
	assert_non_null(account(&v, 2));
	assert_int_equal(v.first_seen_us, 50);
	assert_int_equal(v.last_seen_us, 400);
	assert_int_equal(v.events, 11);
	profile_view_release(&v);
	assert_int_equal(stats(ps).traits, 4);
	assert_int_equal(stats(ps).events, 11);

	/* The history is both, newest first, and pages either way. */
	assert_events(ps, 1, SEQS(11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1));
	assert_int_equal(profile_store_events(ps, 1, 9, 0, out, 3), 3);
	assert_int_equal(out[0], 8);
	assert_int_equal(out[2], 6);
	assert_int_equal(profile_store_events(ps, 1, 0, 8, out, 16), 3);
	assert_int_equal(out[0], 11);
	assert_int_equal(out[2], 9);
	assert_int_equal(profile_store_events(ps, 1, 7, 3, out, 16), 3);
	assert_int_equal(out[0], 6);
	assert_int_equal(out[2], 4);
	assert_int_equal(profile_store_events(ps, 1, 2, 0, out, 16), 1);
	assert_int_equal(profile_store_events(ps, 1, 0, 11, out, 16), 0);
	assert_int_equal(profile_store_events(ps, 1, 0, 0, out, 0), 0);
	/* Later events go to the survivor. */
	assert_int_equal(TRACK(ps, 1, 12, 500, "Buy"), 0);
	assert_events(ps, 1, SEQS(12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1));
	view(ps, 1, &v);
	assert_int_equal(counter(&v, "Buy"), 4);
	assert_int_equal(v.last_seen_us, 500);
	profile_view_release(&v);

	/* Merging nothing into it, or it into itself, changes nothing. */
	profile_store_merge(ps, 1, 1);
	profile_store_merge(ps, 1, 0);
	profile_store_merge(ps, 0, 1);
	assert_events(ps, 1, SEQS(12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1));
	assert_int_equal(stats(ps).profiles, 1);
	profile_store_free(ps);
}

static void test_profiles__merges_chain_across_three_profiles(void **state)
{
	struct profile_store *ps = profile_store_new();
	struct profile_view v;

	(void)state;
	assert_int_equal(IDENTIFY(ps, 10, 1, 10, "{\"a\": 1, \"c\": 1}"), 0);
	assert_int_equal(IDENTIFY(ps, 11, 2, 20, "{\"b\": 2, \"c\": 2}"), 0);
	assert_int_equal(IDENTIFY(ps, 12, 3, 5, "{\"c\": 3}"), 0);
	assert_int_equal(TRACK(ps, 10, 4, 40, "Buy"), 0);
	assert_int_equal(TRACK(ps, 12, 5, 50, "Buy"), 0);
	profile_store_merge(ps, 11, 10);
	assert_events(ps, 11, SEQS(4, 2, 1));
	assert_int_equal(TRACK(ps, 11, 6, 60, "Buy"), 0);
	profile_store_merge(ps, 12, 11);
	assert_no_record(ps, 10);
	assert_no_record(ps, 11);
	view(ps, 12, &v);
	ASSERT_TRAIT(&v, "a", "1", 10);
	ASSERT_TRAIT(&v, "b", "2", 20);
	ASSERT_TRAIT(&v, "c", "2", 20);
	assert_int_equal(v.ntraits, 3);
	assert_int_equal(counter(&v, "Buy"), 3);
	assert_int_equal(counter(&v, "identify"), 3);
	assert_int_equal(v.events, 6);
	assert_int_equal(v.first_seen_us, 5);
	assert_int_equal(v.last_seen_us, 60);
	profile_view_release(&v);
	assert_events(ps, 12, SEQS(6, 5, 4, 3, 2, 1));
	assert_int_equal(TRACK(ps, 12, 7, 70, "Buy"), 0);
	assert_events(ps, 12, SEQS(7, 6, 5, 4, 3, 2, 1));

	/* A survivor with no record of its own takes the absorbed one's. */
	assert_int_equal(IDENTIFY(ps, 20, 8, 80, "{\"d\": 4}"), 0);
	profile_store_merge(ps, 21, 20);
	assert_no_record(ps, 20);
	view(ps, 21, &v);
	ASSERT_TRAIT(&v, "d", "4", 80);
	assert_int_equal(v.first_seen_us, 80);
	assert_int_equal(v.last_seen_us, 80);
	assert_int_equal(v.events, 1);
	profile_view_release(&v);
	/* And one with nothing to give changes only the history (none). */
	profile_store_merge(ps, 21, 22);
	assert_events(ps, 21, SEQS(8));
	/* The whole chain, once more, into 21. */
	profile_store_merge(ps, 21, 12);
	assert_events(ps, 21, SEQS(8, 7, 6, 5, 4, 3, 2, 1));
	view(ps, 21, &v);
	assert_int_equal(v.ntraits, 4);
	assert_int_equal(v.events, 8);
	profile_view_release(&v);
	assert_int_equal(stats(ps).profiles, 1);
	assert_int_equal(stats(ps).traits, 4);
	profile_store_free(ps);
}

/* ---- event history ---- */

#define PAGE_EVENTS 1000

static void test_profiles__events_page_newest_first_across_merged_profiles(void **state)
{
	struct profile_store *ps = profile_store_new();
	uint64_t owner[6] = { 0, 1, 2, 3, 4, 5 };
	bool seen[PAGE_EVENTS + 1] = { false };
	int64_t page[64], before = 0, last = PAGE_EVENTS + 1;
	size_t total = 0, n;

	(void)state;
	for (int64_t s = 1; s <= PAGE_EVENTS; s++) {
		uint64_t p = owner[(s * 7) % 5 + 1];

		assert_int_equal(TRACK(ps, p, s, s * 10, "e"), 0);
		/* Merges along the way: the absorbed profiles' events go to their survivor. */
		if (s == 300) {
			profile_store_merge(ps, 1, 2);
			owner[2] = 1;
		} else if (s == 600) {
			profile_store_merge(ps, 4, 3);
			owner[3] = 4;
		} else if (s == 700) {
			profile_store_merge(ps, 1, 4);
			owner[3] = owner[4] = 1;
		} else if (s == 800) {
			profile_store_merge(ps, 1, 5);
			owner[5] = 1;
		}
	}
	do {
		n = profile_store_events(ps, 1, before, 0, page, 37);
		assert_true(n <= 37);
		for (size_t i = 0; i < n; i++) {
			assert_true(page[i] < last);
			assert_true(page[i] >= 1 && page[i] <= PAGE_EVENTS);
			assert_false(seen[page[i]]);
			seen[page[i]] = true;
			last = page[i];
		}
		total += n;
		if (n)
			before = page[n - 1];
	} while (n == 37);
	assert_int_equal(total, PAGE_EVENTS);
	for (int s = 1; s <= PAGE_EVENTS; s++)
		assert_true(seen[s]);

	/* after_seq bounds from below; with before_seq, a window. */
	assert_int_equal(profile_store_events(ps, 1, 0, PAGE_EVENTS - 40, page, 64), 40);
	assert_int_equal(page[0], PAGE_EVENTS);
	assert_int_equal(page[39], PAGE_EVENTS - 39);
	assert_int_equal(profile_store_events(ps, 1, 501, 490, page, 64), 10);
	assert_int_equal(page[0], 500);
	assert_int_equal(page[9], 491);
	/* An absorbed id reads its whole merged set too. */
	assert_int_equal(profile_store_events(ps, 3, 0, 0, page, 1), 1);
	assert_int_equal(page[0], PAGE_EVENTS);
	assert_int_equal(profile_store_events(ps, 6, 0, 0, page, 64), 0);
	assert_int_equal(stats(ps).events, PAGE_EVENTS);
	profile_store_free(ps);
}

/* More merged profiles than the events reader keeps cursors for on its stack. */
static void test_profiles__events_of_a_set_of_many_merged_profiles(void **state)
{
	struct profile_store *ps = profile_store_new();
	int64_t *out = malloc(1000 * sizeof(*out));
	size_t n;

	(void)state;
	assert_non_null(out);
	for (int64_t s = 1; s <= 600; s++)
		assert_int_equal(TRACK(ps, (uint64_t)s, s, s, "e"), 0);
	for (uint64_t p = 2; p <= 600; p++)
		profile_store_merge(ps, 1, p);
	n = profile_store_events(ps, 1, 0, 0, out, 1000);
	assert_int_equal(n, 600);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(out[i], 600 - (int64_t)i);
	free(out);
	profile_store_free(ps);
}

/* ---- forget ---- */

/* Profiles base+1..base+n, some with traits, merged in pairs; returns the next seq. */
static int64_t build_similar(struct profile_store *ps, uint64_t base, int n, int64_t seq)
{
	char json[128];

	for (int i = 1; i <= n; i++) {
		for (int j = 0; j < 6; j++) {
			snprintf(json, sizeof(json), "{\"k%d\": \"value %d\", \"n\": %d}", j, j * i,
				 i);
			assert_int_equal(IDENTIFY(ps, base + (uint64_t)i, seq, seq, json), 0);
			seq++;
		}
		assert_int_equal(group(ps, base + (uint64_t)i, seq, seq, i % 3, "{\"a\": 1}"), 0);
		seq++;
	}
	for (int i = 2; i <= n; i += 2)
		profile_store_merge(ps, base + (uint64_t)i - 1, base + (uint64_t)i);
	return seq;
}

static void test_profiles__forget_returns_the_merged_set_and_frees_its_slots(void **state)
{
	struct profile_store *ps = profile_store_new();
	struct profile_view v;
	int64_t *seqs, seq = 1;
	size_t n, heap;

	(void)state;
	assert_int_equal(IDENTIFY(ps, 1, seq++, 10, "{\"a\": 1}"), 0);
	assert_int_equal(TRACK(ps, 2, seq++, 20, "Buy"), 0);
	assert_int_equal(IDENTIFY(ps, 3, seq++, 30, "{\"b\": 2}"), 0);
	assert_int_equal(TRACK(ps, 1, seq++, 40, "Buy"), 0);
	assert_int_equal(TRACK(ps, 4, seq++, 50, "Buy"), 0);	/* not in the set */
	profile_store_merge(ps, 2, 3);
	assert_int_equal(TRACK(ps, 2, seq++, 60, "Buy"), 0);
	profile_store_merge(ps, 1, 2);
	assert_int_equal(TRACK(ps, 1, seq++, 70, "Buy"), 0);
	profile_store_saw_identifier(ps, 7, 1, 10);

	seqs = profile_store_forget(ps, 1, &n);
	assert_int_equal(n, 6);
	assert_memory_equal(seqs, ((int64_t[]){ 1, 2, 3, 4, 6, 7 }), 6 * sizeof(*seqs));
	free(seqs);
	for (uint64_t p = 1; p <= 3; p++) {
		assert_no_record(ps, p);
		assert_int_equal(events(ps, p, (int64_t[4096]){ 0 }), 0);
	}
	/* The rest stays: another profile, the identifiers. */
	assert_events(ps, 4, SEQS(5));
	assert_int_equal(stats(ps).profiles, 1);
	assert_int_equal(stats(ps).traits, 0);
	assert_int_equal(stats(ps).events, 1);
	{
		struct profile_ident_seen s;

		profile_store_identifier(ps, 7, &s);
		assert_int_equal(s.first_seq, 1);
	}
	/* Forgotten twice, or never known: nothing. */
	assert_null(profile_store_forget(ps, 1, &n));
	assert_int_equal(n, 0);
	assert_null(profile_store_forget(ps, 0, &n));
	assert_int_equal(n, 0);
	assert_null(profile_store_forget(ps, 99, &n));
	assert_int_equal(n, 0);
	/* An id of the forgotten set starts again from nothing (a split reuses ids). */
	assert_int_equal(IDENTIFY(ps, 3, seq++, 80, "{\"c\": 3}"), 0);
	view(ps, 3, &v);
	assert_int_equal(v.ntraits, 1);
	ASSERT_TRAIT(&v, "c", "3", 80);
	assert_int_equal(v.events, 1);
	assert_int_equal(v.first_seen_us, 80);
	profile_view_release(&v);
	assert_events(ps, 3, SEQS(8));
	assert_no_record(ps, 1);
	assert_int_equal(events(ps, 1, (int64_t[4096]){ 0 }), 0);
	seqs = profile_store_forget(ps, 3, &n);
	assert_int_equal(n, 1);
	free(seqs);

	/* Slots are reused: building the same again does not grow the heap. */
	seq = build_similar(ps, 100, 40, seq);
	heap = heap_bytes(ps);
	for (int round = 1; round <= 3; round++) {
		size_t total = 0;

		for (int i = 1; i <= 40; i += 2) {
			seqs = profile_store_forget(ps, 100 * (uint64_t)round + (uint64_t)i, &n);
			assert_int_equal(n, 14);
			for (size_t j = 1; j < n; j++)
				assert_true(seqs[j - 1] < seqs[j]);
			total += n;
			free(seqs);
		}
		assert_int_equal(total, 40 * 7);
		assert_int_equal(stats(ps).profiles, 1);
		assert_int_equal(stats(ps).traits, 0);
		seq = build_similar(ps, 100 * (uint64_t)round + 100, 40, seq);
		assert_int_equal(heap_bytes(ps), heap);
		assert_int_equal(stats(ps).profiles, 21);
		assert_int_equal(stats(ps).traits, 20 * 7);
	}
	profile_store_free(ps);
}

/* ---- identifiers ---- */

static void test_profiles__identifiers_keep_the_first_and_the_latest_sighting(void **state)
{
	struct profile_store *ps = profile_store_new();
	struct profile_ident_seen s;

	(void)state;
	profile_store_identifier(ps, 5, &s);
	assert_int_equal(s.first_seq, 0);
	assert_int_equal(s.first_us, 0);
	assert_int_equal(s.last_us, 0);
	profile_store_saw_identifier(ps, 5, 10, 1000);
	profile_store_saw_identifier(ps, 5, 20, 500);	/* older ts, later seq */
	profile_store_identifier(ps, 5, &s);
	assert_int_equal(s.first_seq, 10);
	assert_int_equal(s.first_us, 1000);
	assert_int_equal(s.last_us, 1000);
	profile_store_saw_identifier(ps, 5, 30, 3000);
	profile_store_saw_identifier(ps, 5, 40, 2000);
	profile_store_identifier(ps, 5, &s);
	assert_int_equal(s.first_seq, 10);
	assert_int_equal(s.first_us, 1000);
	assert_int_equal(s.last_us, 3000);
	/* Far nodes grow the table; the nodes between read as zeros. */
	profile_store_saw_identifier(ps, 100000, 50, 4000);
	profile_store_identifier(ps, 100000, &s);
	assert_int_equal(s.first_seq, 50);
	assert_int_equal(s.last_us, 4000);
	profile_store_identifier(ps, 99999, &s);
	assert_int_equal(s.first_seq, 0);
	assert_int_equal(s.last_us, 0);
	profile_store_identifier(ps, 6, &s);
	assert_int_equal(s.first_seq, 0);
	profile_store_identifier(ps, UINT32_MAX, &s);
	assert_int_equal(s.first_seq, 0);
	assert_int_equal(s.first_us, 0);
	assert_int_equal(s.last_us, 0);

	profile_store_forget_identifier(ps, 5);
	profile_store_forget_identifier(ps, UINT32_MAX);
	profile_store_identifier(ps, 5, &s);
	assert_int_equal(s.first_seq, 0);
	assert_int_equal(s.first_us, 0);
	assert_int_equal(s.last_us, 0);
	/* Seen again after an erase: a new first sighting. */
	profile_store_saw_identifier(ps, 5, 60, 6000);
	profile_store_identifier(ps, 5, &s);
	assert_int_equal(s.first_seq, 60);
	assert_int_equal(s.first_us, 6000);
	assert_int_equal(s.last_us, 6000);
	profile_store_identifier(ps, 100000, &s);
	assert_int_equal(s.first_seq, 50);
	profile_store_free(ps);
}

/* ---- sizes ---- */

#define GROW_TRAITS 250
#define GROW_VALUE 200

static void assert_grown(const struct profile_store *ps, uint64_t pid, int lo, int hi)
{
	struct profile_view v;
	char name[16];

	view(ps, pid, &v);
	assert_sorted(&v);
	assert_int_equal(v.ntraits, (size_t)(hi - lo));
	for (int i = lo; i < hi; i++) {
		const struct profile_trait *t;

		snprintf(name, sizeof(name), "t%03d", i);
		t = trait(v.traits, v.ntraits, name);
		assert_non_null(t);
		assert_int_equal(t->json_len, GROW_VALUE + 2);
		assert_int_equal(t->ts_us, 1000 + i);
	}
	profile_view_release(&v);
}

static void test_profiles__records_grow_and_shrink_through_slot_sizes(void **state)
{
	struct profile_store *ps = profile_store_new();
	struct profile_view before, after;
	size_t heap;
	char name[16];
	int64_t seq = 1;

	(void)state;
	/* Neighbours that must not be disturbed. */
	assert_int_equal(IDENTIFY(ps, 2, seq++, 1, "{\"keep\": \"me\"}"), 0);
	assert_int_equal(IDENTIFY(ps, 3, seq++, 1, "{\"keep\": \"me too\"}"), 0);
	view(ps, 2, &before);
	for (int i = 0; i < GROW_TRAITS; i++) {
		snprintf(name, sizeof(name), "t%03d", i);
		assert_int_equal(ev_json(ps, 1, seq++, 1000 + i, one_trait(name, GROW_VALUE)), 0);
		if (i % 25 == 24)
			assert_grown(ps, 1, 0, i + 1);
		if (i % 50 == 0)
			assert_int_equal(TRACK(ps, 3, seq++, 2, "tick"), 0);
	}
	/* Near 64 KB now. */
	assert_true(heap_bytes(ps) > 65536);
	assert_int_equal(stats(ps).traits, GROW_TRAITS + 2);
	/* Removing shrinks it (removed traits keep only a timestamp), in steps. */
	for (int i = 0; i < GROW_TRAITS; i++) {
		snprintf(name, sizeof(name), "t%03d", i);
		{
			json_t *o = json_object();

			json_object_set_new(o, name, json_null());
			assert_int_equal(ev_json(ps, 1, seq++, 5000, o), 0);
		}
		if (i % 25 == 24)
			assert_grown(ps, 1, i + 1, GROW_TRAITS);
	}
	assert_int_equal(stats(ps).traits, 2);
	/*
	 * The 64 KB slot it left is free: another profile growing as big
	 * takes it, so the heap grows by less than one.
	 */
	heap = heap_bytes(ps);
	for (int i = 0; i < GROW_TRAITS; i++) {
		snprintf(name, sizeof(name), "t%03d", i);
		assert_int_equal(ev_json(ps, 4, seq++, 1000 + i, one_trait(name, GROW_VALUE)), 0);
	}
	assert_grown(ps, 4, 0, GROW_TRAITS);
	assert_true(heap_bytes(ps) < heap + 65536);
	/* Older values do not undo the removals; newer ones grow it again. */
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "t%03d", i);
		assert_int_equal(ev_json(ps, 1, seq++, i < 20 ? 1000 + i : 6000 + i,
					 one_trait(name, GROW_VALUE)), 0);
	}
	{
		struct profile_view v;

		view(ps, 1, &v);
		assert_int_equal(v.ntraits, 20);
		assert_int_equal(v.traits[0].ts_us, 6020);
		assert_int_equal(v.events, 2 * GROW_TRAITS + 40);
		profile_view_release(&v);
	}
	view(ps, 2, &after);
	assert_same_view(&before, &after);
	profile_view_release(&before);
	profile_view_release(&after);
	view(ps, 3, &after);
	ASSERT_TRAIT(&after, "keep", "\"me too\"", 1);
	assert_int_equal(counter(&after, "tick"), 5);
	profile_view_release(&after);
	profile_store_free(ps);
}

static void test_profiles__values_over_8192_bytes_are_refused_and_the_rest_kept(void **state)
{
	struct profile_store *ps = profile_store_new();
	struct profile_view v;
	char *over = long_string(8191), *at = long_string(8190);
	char *json = malloc(20000), longname[300];

	(void)state;
	assert_non_null(json);
	snprintf(json, 20000, "{\"big\": %s, \"ok\": 1, \"edge\": %s}", over, at);
	assert_int_equal(IDENTIFY(ps, 1, 1, 100, json), WEFT_ETOOBIG);
	view(ps, 1, &v);
	assert_null(trait(v.traits, v.ntraits, "big"));
	ASSERT_TRAIT(&v, "ok", "1", 100);
	ASSERT_TRAIT(&v, "edge", at, 100);
	assert_int_equal(trait(v.traits, v.ntraits, "edge")->json_len, 8192);
	assert_int_equal(v.events, 1);
	assert_int_equal(counter(&v, "identify"), 1);
	profile_view_release(&v);
	/* A value refused does not remove the one before. */
	snprintf(json, 20000, "{\"ok\": %s}", over);
	assert_int_equal(IDENTIFY(ps, 1, 2, 200, json), WEFT_ETOOBIG);
	view(ps, 1, &v);
	ASSERT_TRAIT(&v, "ok", "1", 100);
	assert_int_equal(v.events, 2);
	profile_view_release(&v);
	/* Names: 255 bytes are kept, 256 are not. */
	memset(longname, 'n', 256);
	longname[256] = '\0';
	snprintf(json, 20000, "{\"%s\": 1, \"also\": 2}", longname);
	assert_int_equal(IDENTIFY(ps, 1, 3, 300, json), WEFT_ETOOBIG);
	longname[255] = '\0';
	snprintf(json, 20000, "{\"%s\": 1}", longname);
	assert_int_equal(IDENTIFY(ps, 1, 4, 400, json), 0);
	view(ps, 1, &v);
	ASSERT_TRAIT(&v, "also", "2", 300);
	ASSERT_TRAIT(&v, longname, "1", 400);
	assert_int_equal(v.ntraits, 4);
	profile_view_release(&v);
	assert_int_equal(stats(ps).traits, 4);
	free(over);
	free(at);
	free(json);
	profile_store_free(ps);
}

/* Seven traits of 8192 bytes of JSON each fit a 64 KB record; an eighth does not. */
static void add_big(struct profile_store *ps, uint64_t pid, const char *prefix, int n,
		    int64_t *seq)
{
	char name[16];

	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s%d", prefix, i);
		assert_int_equal(ev_json(ps, pid, *seq, *seq, one_trait(name, 8190)), 0);
		(*seq)++;
	}
}

static void test_profiles__records_over_64_kb_are_refused_and_the_old_one_kept(void **state)
{
	struct profile_store *ps = profile_store_new();
	struct profile_view before, after;
	struct profile_store_stats st;
	int64_t seq = 1, out[16];

	(void)state;
	add_big(ps, 1, "b", 7, &seq);
	view(ps, 1, &before);
	assert_int_equal(before.ntraits, 7);
	st = stats(ps);
	assert_int_equal(ev_json(ps, 1, seq, 1000, one_trait("b7", 8190)), WEFT_ETOOBIG);
	seq++;
	view(ps, 1, &after);
	assert_same_view(&before, &after);
	profile_view_release(&after);
	assert_int_equal(stats(ps).traits, st.traits);
	assert_int_equal(stats(ps).profiles, st.profiles);
	/* The event itself is still in the history. */
	assert_int_equal(profile_store_events(ps, 1, 0, 0, out, 16), 8);
	assert_int_equal(out[0], 8);
	/* Small events still fit. */
	assert_int_equal(IDENTIFY(ps, 1, seq++, 2000, "{\"small\": 1}"), 0);
	view(ps, 1, &after);
	assert_int_equal(after.ntraits, 8);
	assert_int_equal(after.events, 8);
	ASSERT_TRAIT(&after, "b0", before.traits[0].json, 1);
	profile_view_release(&after);
	/* Room made by a removal lets the eighth in. */
	assert_int_equal(IDENTIFY(ps, 1, seq++, 3000, "{\"b0\": null}"), 0);
	assert_int_equal(ev_json(ps, 1, seq, seq, one_trait("b7", 8190)), 0);
	seq++;
	view(ps, 1, &after);
	assert_int_equal(after.ntraits, 8);
	assert_null(trait(after.traits, after.ntraits, "b0"));
	assert_non_null(trait(after.traits, after.ntraits, "b7"));
	profile_view_release(&after);
	profile_view_release(&before);
	assert_int_equal(stats(ps).traits, 8);

	/* A merge that would not fit: the survivor keeps what it had. */
	add_big(ps, 2, "c", 7, &seq);
	add_big(ps, 3, "d", 1, &seq);
	view(ps, 2, &before);
	profile_store_merge(ps, 2, 3);
	view(ps, 2, &after);
	assert_same_view(&before, &after);
	profile_view_release(&before);
	profile_view_release(&after);
	assert_no_record(ps, 3);
	assert_int_equal(stats(ps).profiles, 2);
	assert_int_equal(stats(ps).traits, 8 + 7);
	assert_int_equal(profile_store_events(ps, 2, 0, 0, out, 16), 8);
	profile_store_free(ps);
}

/* ---- snapshots ---- */

struct snap_copy {
	struct profile_section in[PROFILE_SECTIONS];
	void *data[PROFILE_SECTIONS];
};

/* Copies ps's sections into buffers of their own, as a page store would give them back. */
static void snap_take(const struct profile_store *ps, struct snap_copy *c)
{
	struct profile_section out[PROFILE_SECTIONS];
	struct buf hdr = BUF_INIT;

	profile_store_sections(ps, &hdr, out);
	for (int i = 0; i < PROFILE_SECTIONS; i++) {
		c->data[i] = malloc(out[i].bytes ? out[i].bytes : 1);
		assert_non_null(c->data[i]);
		if (out[i].bytes)
			memcpy(c->data[i], out[i].data, out[i].bytes);
		c->in[i] = (struct profile_section){ c->data[i], out[i].bytes };
	}
	buf_release(&hdr);
}

static void snap_release(struct snap_copy *c)
{
	for (int i = 0; i < PROFILE_SECTIONS; i++)
		free(c->data[i]);
}

static void assert_same_sections(const struct profile_store *a, const struct profile_store *b)
{
	struct profile_section sa[PROFILE_SECTIONS], sb[PROFILE_SECTIONS];
	struct buf ha = BUF_INIT, hb = BUF_INIT;

	profile_store_sections(a, &ha, sa);
	profile_store_sections(b, &hb, sb);
	for (int i = 0; i < PROFILE_SECTIONS; i++) {
		assert_int_equal(sa[i].bytes, sb[i].bytes);
		if (sa[i].bytes)
			assert_true(memcmp(sa[i].data, sb[i].data, sa[i].bytes) == 0);
	}
	buf_release(&ha);
	buf_release(&hb);
}

/* Same views, histories and identifiers for profiles 0..np and nodes 0..nn. */
static void assert_same_store(const struct profile_store *a, const struct profile_store *b,
			      uint64_t np, uint32_t nn)
{
	struct profile_store_stats sa = stats(a), sb = stats(b);
	int64_t ea[4096], eb[4096];

	assert_int_equal(sa.profiles, sb.profiles);
	assert_int_equal(sa.traits, sb.traits);
	assert_int_equal(sa.events, sb.events);
	for (uint64_t p = 0; p <= np; p++) {
		struct profile_view va, vb;
		int ra = profile_store_view(a, p, &va), rb = profile_store_view(b, p, &vb);
		size_t n;

		assert_int_equal(ra, rb);
		if (ra == 0) {
			assert_same_view(&va, &vb);
			profile_view_release(&va);
			profile_view_release(&vb);
		}
		n = events(a, p, ea);
		assert_int_equal(events(b, p, eb), n);
		if (n)
			assert_memory_equal(ea, eb, n * sizeof(*ea));
	}
	for (uint32_t i = 0; i <= nn; i++) {
		struct profile_ident_seen ia, ib;

		profile_store_identifier(a, i, &ia);
		profile_store_identifier(b, i, &ib);
		assert_memory_equal(&ia, &ib, sizeof(ia));
	}
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

#define SNAP_PROFILES 60
#define SNAP_NODES 200

static const char *const snap_values[] = {
	"\"a\"", "\"\"", "1", "2.5", "true", "[1,\"b\"]", "{\"k\":{\"l\":1}}", "null",
};

/* n steps of traffic from rng state *r, the same on every store given the same state. */
static void snap_traffic(struct profile_store *ps, uint64_t *r, int n, int64_t *seq)
{
	char json[256];

	for (int i = 0; i < n; i++) {
		uint64_t x = rng_next(r);
		uint64_t pid = 1 + x % SNAP_PROFILES;
		int64_t ts = (int64_t)(x >> 40) % 1000 + 1;
		size_t vals = sizeof(snap_values) / sizeof(snap_values[0]);

		switch ((x >> 8) % 16) {
		case 0:
			/* Now and then a merge, or a forget (any ids: the layout is what counts). */
			if ((x >> 12) % 8 == 0)
				profile_store_merge(ps, pid, 1 + (x >> 20) % SNAP_PROFILES);
			else if ((x >> 12) % 8 == 1)
				free(profile_store_forget(ps, pid, &(size_t){ 0 }));
			else
				profile_store_forget_identifier(ps, (uint32_t)((x >> 20) % SNAP_NODES));
			break;
		case 1:
		case 2:
		case 3:
			snprintf(json, sizeof(json), "{\"k%d\": %s}", (int)((x >> 24) % 7),
				 snap_values[(x >> 28) % vals]);
			assert_int_equal(group(ps, pid, *seq, ts, (int)((x >> 16) % 5), json), 0);
			break;
		case 4:
		case 5:
		case 6:
			assert_int_equal(TRACK(ps, pid, *seq, ts, (x >> 16) % 2 ? "Buy" : "View"), 0);
			break;
		default:
			snprintf(json, sizeof(json), "{\"t%d\": %s, \"u%d\": %s}",
				 (int)((x >> 24) % 9), snap_values[(x >> 28) % vals],
				 (int)((x >> 32) % 9), snap_values[(x >> 36) % vals]);
			assert_int_equal(IDENTIFY(ps, pid, *seq, ts, json), 0);
			break;
		}
		profile_store_saw_identifier(ps, (uint32_t)((x >> 44) % SNAP_NODES), *seq, ts);
		(*seq)++;
	}
}

static void test_profiles__snapshot_restores_the_same_store_which_evolves_the_same(void **state)
{
	struct profile_store *ps = profile_store_new(), *h = NULL;
	struct profile_store_stats st;
	struct snap_copy c;
	uint64_t r = 88172645463325252ull, r2;
	int64_t seq = 1, seq2;

	(void)state;
	snap_traffic(ps, &r, 4000, &seq);
	st = stats(ps);
	assert_true(st.profiles > 10);
	assert_true(st.traits > 100);
	assert_true(st.events > 1000);

	snap_take(ps, &c);
	assert_int_equal(profile_store_restore(c.in, &h), 0);
	assert_non_null(h);
	/* The restored store owns its memory: the copies can go. */
	snap_release(&c);
	assert_same_store(ps, h, SNAP_PROFILES + 1, SNAP_NODES + 1);
	assert_same_sections(ps, h);
	/* Memory is counted by capacity: a restored store holds no more. */
	assert_true(stats(h).bytes <= st.bytes);

	/* The same further traffic, to both: still the same, byte for byte. */
	r2 = r;
	seq2 = seq;
	snap_traffic(ps, &r, 4000, &seq);
	snap_traffic(h, &r2, 4000, &seq2);
	assert_same_store(ps, h, SNAP_PROFILES + 1, SNAP_NODES + 1);
	assert_same_sections(ps, h);
	profile_store_free(ps);
	profile_store_free(h);
}

/* Header fields, as 64-bit words after magic and version (profiles/store.c's struct header). */
enum {
	HDR_NPROFS = 1, HDR_HEAP_LEN, HDR_NEV, HDR_NSEEN, HDR_NNAMES, HDR_NAMES_LEN,
	HDR_NACCOUNTS, HDR_FREE_HEAD,
};

/* The words of struct prof and the account's rec and slot_shift. */
enum { PROF_REC, PROF_EV_HEAD, PROF_RING, PROF_SHIFT, PROF_WORDS };

static void expect_einval(const struct profile_section *in)
{
	struct profile_store *h = (void *)1;

	assert_int_equal(profile_store_restore(in, &h), WEFT_EINVAL);
	assert_null(h);
}

static void expect_ok(const struct profile_section *in)
{
	struct profile_store *h = NULL;

	assert_int_equal(profile_store_restore(in, &h), 0);
	assert_non_null(h);
	profile_store_free(h);
}

static void test_profiles__snapshot_of_an_empty_store_and_corrupt_snapshots(void **state)
{
	struct profile_store *ps = profile_store_new(), *h = NULL;
	struct profile_section in[PROFILE_SECTIONS];
	struct snap_copy c;
	uint32_t *word, *prof, *acct, saved;
	uint64_t *hw, v;
	size_t bytes0;
	void *bigger;
	char *names;

	(void)state;
	snap_take(ps, &c);
	assert_int_equal(profile_store_restore(c.in, &h), 0);
	assert_same_sections(ps, h);
	assert_same_store(ps, h, 3, 3);
	/* The restored empty store works. */
	assert_int_equal(IDENTIFY(h, 1, 1, 10, "{\"a\": 1}"), 0);
	assert_int_equal(group(h, 1, 2, 20, 1, "{\"b\": 2}"), 0);
	profile_store_saw_identifier(h, 3, 1, 10);
	assert_events(h, 1, SEQS(2, 1));
	profile_store_free(h);
	snap_release(&c);

	/* A store with something in every section, and a slot on a free list. */
	assert_int_equal(IDENTIFY(ps, 1, 1, 10, "{\"a\": 1}"), 0);
	assert_int_equal(IDENTIFY(ps, 2, 2, 20, "{\"b\": \"a long enough value to move\"}"),
			 0);
	assert_int_equal(group(ps, 2, 3, 30, 1, "{\"c\": 3}"), 0);
	profile_store_merge(ps, 1, 2);
	profile_store_saw_identifier(ps, 2, 1, 10);
	snap_take(ps, &c);
	memcpy(in, c.in, sizeof(in));
	expect_ok(in);
	word = c.data[0];
	hw = (uint64_t *)c.data[0];
	prof = c.data[1];
	acct = c.data[8];
	names = c.data[7];

	word[0] ^= 1;		/* the magic */
	expect_einval(in);
	word[0] ^= 1;
	word[1]++;		/* the version */
	expect_einval(in);
	word[1]--;
	expect_ok(in);
	/* A header of the wrong size. */
	bytes0 = in[0].bytes;
	in[0].bytes = bytes0 - 1;
	expect_einval(in);
	in[0].bytes = 16;
	expect_einval(in);
	in[0].bytes = bytes0;
	/* Each section a byte short, half, or twice what the header says. */
	for (int i = 1; i < PROFILE_SECTIONS; i++) {
		assert_true(c.in[i].bytes > 1);
		in[i].bytes = c.in[i].bytes - 1;
		expect_einval(in);
		in[i].bytes = c.in[i].bytes / 2;
		expect_einval(in);
		bigger = calloc(1, 2 * c.in[i].bytes);
		assert_non_null(bigger);
		memcpy(bigger, c.in[i].data, c.in[i].bytes);
		in[i] = (struct profile_section){ bigger, 2 * c.in[i].bytes };
		expect_einval(in);
		free(bigger);
		in[i] = c.in[i];
	}
	expect_ok(in);
	/* Counts in the header that their sections do not hold, or that cannot be. */
	for (int f = HDR_NPROFS; f <= HDR_NACCOUNTS; f++) {
		hw[f]++;
		expect_einval(in);
		hw[f] += 1ull << 62;
		expect_einval(in);
		hw[f] -= (1ull << 62) + 1;
	}
	v = hw[HDR_NPROFS];
	hw[HDR_NPROFS] = 0;
	in[1].bytes = 0;
	expect_einval(in);
	hw[HDR_NPROFS] = v;
	in[1] = c.in[1];
	v = hw[HDR_NEV];
	hw[HDR_NEV] = 0;
	in[3].bytes = in[4].bytes = 0;
	expect_einval(in);
	hw[HDR_NEV] = v;
	in[3] = c.in[3];
	in[4] = c.in[4];
	v = hw[HDR_HEAP_LEN];
	hw[HDR_HEAP_LEN] = 1ull << 32;
	expect_einval(in);
	hw[HDR_HEAP_LEN] = v;
	/* A free slot outside the heap. */
	for (int k = 0; k < 12; k++) {
		v = hw[HDR_FREE_HEAD + k];
		hw[HDR_FREE_HEAD + k] = hw[HDR_HEAP_LEN];
		expect_einval(in);
		hw[HDR_FREE_HEAD + k] = v;
	}
	expect_ok(in);

	/* Profile 1's record, history and merged set pointing outside their arrays. */
	prof += PROF_WORDS;
	assert_true(prof[PROF_REC] != 0);
	saved = prof[PROF_REC];
	prof[PROF_REC] = (uint32_t)hw[HDR_HEAP_LEN];
	expect_einval(in);
	prof[PROF_REC] = saved;
	saved = prof[PROF_SHIFT];
	prof[PROF_SHIFT] = 3;
	expect_einval(in);
	prof[PROF_SHIFT] = 17;
	expect_einval(in);
	prof[PROF_SHIFT] = saved;
	saved = prof[PROF_EV_HEAD];
	prof[PROF_EV_HEAD] = (uint32_t)hw[HDR_NEV];
	expect_einval(in);
	prof[PROF_EV_HEAD] = saved;
	saved = prof[PROF_RING];
	prof[PROF_RING] = (uint32_t)hw[HDR_NPROFS];
	expect_einval(in);
	prof[PROF_RING] = saved;
	/* An account's record outside the heap. */
	saved = acct[4];
	acct[4] = (uint32_t)hw[HDR_HEAP_LEN];
	expect_einval(in);
	acct[4] = saved;
	/* An event entry that does not point to an older one (a chain that never ends). */
	{
		uint32_t *prev = c.data[4];

		saved = prev[1];
		prev[1] = 1;
		expect_einval(in);
		prev[1] = saved;
	}
	/* A name outside the strings, or not NUL-terminated. */
	{
		uint32_t *off = c.data[6];

		saved = off[0];
		off[0] = (uint32_t)hw[HDR_NAMES_LEN];
		expect_einval(in);
		off[0] = saved;
		assert_int_equal(names[c.in[7].bytes - 1], '\0');
		names[c.in[7].bytes - 1] = 'x';
		expect_einval(in);
		names[c.in[7].bytes - 1] = '\0';
	}
	/* Undamaged again, it restores to the same store. */
	assert_int_equal(profile_store_restore(in, &h), 0);
	assert_same_store(ps, h, 3, 3);
	assert_same_sections(ps, h);
	profile_store_free(h);
	snap_release(&c);
	profile_store_free(ps);
}

/* ---- against a model ---- */

#define M_IDS 24
#define M_KEYS 6
#define M_ACCTS 3
#define M_NAMES 7
#define M_SEQS 8192
#define M_STEPS 4000
#define M_BATCH 40

static const char *const m_values[] = {
	"\"a\"", "\"b\"", "\"\"", "0", "-7", "2.5", "true", "false", "[]", "[1,\"x\"]",
	"{\"k\":1}", "{}", "null",
};
#define M_NVALUES (sizeof(m_values) / sizeof(m_values[0]))
#define M_NULL (M_NVALUES - 1)

/* Counter names in view order (bytewise), and the keys. */
static const char *const m_names[M_NAMES] = {
	"Buy", "View", "alias", "group", "identify", "page", "screen",
};

struct m_trait {
	bool set;		/* a value or a removal was written */
	int64_t ts;
	unsigned val;		/* into m_values; M_NULL: removed */
};

struct m_prof {
	uint64_t owner;		/* the survivor it was merged into, 0 if none */
	bool rec;
	struct m_trait traits[M_KEYS];
	uint64_t counters[M_NAMES];
	int64_t first, last;
	uint64_t events;
	bool accounts[M_ACCTS];
	int64_t seqs[M_SEQS];	/* of its merged set, ascending */
	size_t nseqs;
};

struct model {
	struct m_prof p[M_IDS + 1];
	struct m_trait acct[M_ACCTS][M_KEYS];
};

static void m_set(struct m_trait *t, int64_t ts, unsigned val)
{
	/* An equal timestamp: the later write wins. */
	if (!t->set || ts >= t->ts)
		*t = (struct m_trait){ true, ts, val };
}

static void m_assert_traits(const struct m_trait *want, const struct profile_trait *t, size_t n)
{
	size_t live = 0;
	char name[16];

	for (int k = 0; k < M_KEYS; k++) {
		snprintf(name, sizeof(name), "k%d", k);
		if (!want[k].set || want[k].val == M_NULL) {
			assert_null(trait(t, n, name));
			continue;
		}
		assert_trait_in(t, n, name, m_values[want[k].val], want[k].ts);
		live++;
	}
	assert_int_equal(n, live);
}

static void m_check(const struct model *m, const struct profile_store *ps)
{
	static int64_t got[M_SEQS];
	uint64_t profiles = 0, traits = 0, nev = 0;

	for (uint64_t id = 1; id <= M_IDS; id++) {
		const struct m_prof *p = &m->p[id];
		struct profile_view v;
		size_t n, live = 0;

		if (p->owner) {
			assert_no_record(ps, id);
			continue;
		}
		n = profile_store_events(ps, id, 0, 0, got, M_SEQS);
		assert_int_equal(n, p->nseqs);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(got[i], p->seqs[n - 1 - i]);
		nev += n;
		if (!p->rec) {
			assert_no_record(ps, id);
			continue;
		}
		profiles++;
		view(ps, id, &v);
		assert_sorted(&v);
		assert_traits_view_matches(ps, id, &v);
		assert_int_equal(v.first_seen_us, p->first);
		assert_int_equal(v.last_seen_us, p->last);
		assert_int_equal(v.events, p->events);
		m_assert_traits(p->traits, v.traits, v.ntraits);
		traits += v.ntraits;
		for (int c = 0; c < M_NAMES; c++) {
			assert_int_equal(counter(&v, m_names[c]), p->counters[c]);
			live += p->counters[c] != 0;
		}
		assert_int_equal(v.ncounters, live);
		live = 0;
		for (int a = 0; a < M_ACCTS; a++) {
			const struct profile_account *pa = account(&v, a);

			assert_int_equal(pa != NULL, p->accounts[a]);
			if (pa)
				m_assert_traits(m->acct[a], pa->traits, pa->ntraits);
			live += p->accounts[a];
		}
		assert_int_equal(v.naccounts, live);
		profile_view_release(&v);
	}
	assert_int_equal(stats(ps).profiles, profiles);
	assert_int_equal(stats(ps).traits, traits);
	assert_int_equal(stats(ps).events, nev);
}

/* Builds the event's traits ({"kN": value, ...}) from x, into the model's t too. */
static json_t *m_traits(uint64_t x, struct m_trait *t, int64_t ts)
{
	json_t *o = json_object();
	int n = (int)(x % 4);

	for (int i = 0; i < n; i++) {
		unsigned k = (unsigned)((x >> (4 + 8 * i)) % M_KEYS);
		unsigned val = (unsigned)((x >> (8 + 8 * i)) % M_NVALUES);
		char name[16];

		snprintf(name, sizeof(name), "k%u", k);
		if (json_object_get(o, name))
			continue;	/* one write per key and event */
		json_object_set_new(o, name, parse(m_values[val]));
		m_set(&t[k], ts, val);
	}
	return o;
}

static void m_apply(struct model *m, struct profile_store *ps, uint64_t *r, uint64_t id,
		    int64_t seq)
{
	static const enum profile_call calls[] = {
		PROFILE_TRACK, PROFILE_TRACK, PROFILE_IDENTIFY, PROFILE_IDENTIFY, PROFILE_PAGE,
		PROFILE_SCREEN, PROFILE_GROUP, PROFILE_ALIAS,
	};
	static const int counter_of[] = { 0, 0, 4, 4, 5, 6, 3, 2 };
	struct m_prof *p = &m->p[id];
	uint64_t x = rng_next(r), y = rng_next(r);
	int c = (int)(x % 8), name = counter_of[c];
	int64_t ts = (int64_t)((x >> 8) % 60) + 1;
	uint8_t key[16];
	struct profile_event e = {
		.seq = seq, .ts_us = ts, .call = calls[c], .profile_id = id,
	};

	if (c < 2) {
		name = (int)((x >> 16) % 2);
		e.name = m_names[name];
	}
	/* Identify traits most of the time, context traits on some other calls. */
	if (calls[c] == PROFILE_IDENTIFY || (x >> 20) % 4 == 0)
		e.traits = m_traits(y, p->traits, ts);
	if (calls[c] == PROFILE_GROUP) {
		int a = (int)((x >> 24) % M_ACCTS);

		acct_key(a, key);
		e.account_key = key;
		if ((x >> 28) % 2)
			e.account_traits = m_traits(y >> 32, m->acct[a], ts);
		p->accounts[a] = true;
	}
	assert_int_equal(profile_store_apply(ps, &e), 0);
	json_decref(e.traits);
	json_decref(e.account_traits);
	if (!p->rec || ts < p->first)
		p->first = ts;
	if (!p->rec || ts > p->last)
		p->last = ts;
	p->rec = true;
	p->events++;
	p->counters[name]++;
	assert_true(p->nseqs < M_SEQS);
	p->seqs[p->nseqs++] = seq;
}

static int i64_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static void m_merge(struct model *m, struct profile_store *ps, uint64_t s, uint64_t a)
{
	struct m_prof *ps_ = &m->p[s], *pa = &m->p[a];

	profile_store_merge(ps, s, a);
	if (pa->rec) {
		if (!ps_->rec || pa->first < ps_->first)
			ps_->first = pa->first;
		if (!ps_->rec || pa->last > ps_->last)
			ps_->last = pa->last;
		ps_->rec = true;
		ps_->events += pa->events;
		/* Ties go to the absorbed side, as if its writes came later. */
		for (int k = 0; k < M_KEYS; k++)
			if (pa->traits[k].set)
				m_set(&ps_->traits[k], pa->traits[k].ts, pa->traits[k].val);
		for (int c = 0; c < M_NAMES; c++)
			ps_->counters[c] += pa->counters[c];
		for (int i = 0; i < M_ACCTS; i++)
			ps_->accounts[i] |= pa->accounts[i];
	}
	assert_true(ps_->nseqs + pa->nseqs <= M_SEQS);
	memcpy(ps_->seqs + ps_->nseqs, pa->seqs, pa->nseqs * sizeof(*pa->seqs));
	ps_->nseqs += pa->nseqs;
	qsort(ps_->seqs, ps_->nseqs, sizeof(*ps_->seqs), i64_cmp);
	memset(pa, 0, sizeof(*pa));
	pa->owner = s;
	for (uint64_t id = 1; id <= M_IDS; id++)
		if (m->p[id].owner == a)
			m->p[id].owner = s;
}

static void m_forget(struct model *m, struct profile_store *ps, uint64_t s)
{
	size_t n;
	int64_t *got = profile_store_forget(ps, s, &n);

	assert_int_equal(n, m->p[s].nseqs);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(got[i], m->p[s].seqs[i]);
	free(got);
	/* Every id of the set is free again (a split may reuse them). */
	for (uint64_t id = 1; id <= M_IDS; id++)
		if (m->p[id].owner == s)
			memset(&m->p[id], 0, sizeof(m->p[id]));
	memset(&m->p[s], 0, sizeof(m->p[s]));
}

/* A random id that is not merged into another. */
static uint64_t m_pick(const struct model *m, uint64_t *r)
{
	uint64_t id;

	do
		id = 1 + rng_next(r) % M_IDS;
	while (m->p[id].owner);
	return id;
}

static void test_profiles__random_traffic_matches_a_simple_model(void **state)
{
	struct model *m = calloc(1, sizeof(*m));
	struct profile_store *ps = profile_store_new();
	uint64_t r = 0x9e3779b97f4a7c15ull;
	int64_t seq = 1;
	int merges = 0, forgets = 0;

	(void)state;
	assert_non_null(m);
	for (int step = 1; step <= M_STEPS; step++) {
		uint64_t op = rng_next(&r) % 100, s = m_pick(m, &r), a;

		if (op < 4) {
			a = m_pick(m, &r);
			if (a != s) {
				m_merge(m, ps, s, a);
				merges++;
			}
		} else if (op < 5) {
			m_forget(m, ps, s);
			forgets++;
		} else {
			m_apply(m, ps, &r, s, seq++);
		}
		if (step % M_BATCH == 0)
			m_check(m, ps);
		/* Halfway, go on with a restored copy. */
		if (step == M_STEPS / 2) {
			struct snap_copy c;
			struct profile_store *h = NULL;

			snap_take(ps, &c);
			assert_int_equal(profile_store_restore(c.in, &h), 0);
			snap_release(&c);
			profile_store_free(ps);
			ps = h;
			m_check(m, ps);
		}
	}
	m_check(m, ps);
	assert_true(merges > 50);
	assert_true(forgets > 10);
	profile_store_free(ps);
	free(m);
}

/*
 * Every page of the heap and of the identifiers' first/last seen whose
 * bytes changed since profile_store_clean() is marked dirty: the engine
 * saves only marked pages of those sections, so a missed mark would be a
 * change never saved. Checked against copies over random traffic.
 */
static void assert_changes_marked(const struct profile_store *ps, const struct snap_copy *before)
{
	struct profile_section now[PROFILE_SECTIONS];
	struct buf hdr = BUF_INIT;
	const int tracked[2] = { 2, 5 };

	profile_store_sections(ps, &hdr, now);
	for (int t = 0; t < 2; t++) {
		int k = tracked[t];
		size_t ndirty, old_full = before->in[k].bytes / PROFILE_PAGE_BYTES;
		const uint64_t *dirty = profile_store_dirty(ps, k, &ndirty);

		assert_non_null(dirty);
		/* Pages that were whole at the clean: a changed one must be marked. */
		for (size_t p = 0; p < old_full; p++) {
			const char *a = (const char *)before->in[k].data + p * PROFILE_PAGE_BYTES;
			const char *b = (const char *)now[k].data + p * PROFILE_PAGE_BYTES;

			if (memcmp(a, b, PROFILE_PAGE_BYTES) == 0)
				continue;
			assert_true(p < ndirty);
			assert_true(dirty[p / 64] >> (p % 64) & 1);
		}
	}
	buf_release(&hdr);
}

static void test_profiles__every_changed_page_is_marked_dirty(void **state)
{
	struct model *m = calloc(1, sizeof(*m));
	struct profile_store *ps = profile_store_new();
	uint64_t r = 0x2545f4914f6cdd1dull;
	int64_t seq = 1;
	struct snap_copy c;

	(void)state;
	assert_non_null(m);
	/* Profiles the model does not touch, so the heap spans many pages; some change in place. */
	for (uint64_t pid = 100000; pid < 104000; pid++)
		IDENTIFY(ps, pid, seq++, 1000, "{\"plan\":\"free\",\"n\":1,\"city\":\"Oslo\"}");
	profile_store_clean(ps);
	snap_take(ps, &c);
	for (int step = 1; step <= M_STEPS; step++) {
		uint64_t op = rng_next(&r) % 100, s = m_pick(m, &r), a;

		if (op < 4) {
			a = m_pick(m, &r);
			if (a != s)
				m_merge(m, ps, s, a);
		} else if (op < 5) {
			m_forget(m, ps, s);
		} else {
			m_apply(m, ps, &r, s, seq++);
		}
		if (step % 37 == 0)
			profile_store_saw_identifier(ps, (uint32_t)(rng_next(&r) % 50000), seq, seq * 1000);
		/* Same-size rewrites stay in their slot: only the rewrite itself marks the page. */
		if (step % 3 == 0)
			IDENTIFY(ps, 100000 + rng_next(&r) % 4000, seq++, 2000 + step,
				 step % 2 ? "{\"plan\":\"paid\"}" : "{\"plan\":\"free\"}");
		if (step % 211 == 0)
			profile_store_forget_identifier(ps, (uint32_t)(rng_next(&r) % 50000));
		if (step % M_BATCH == 0) {
			assert_changes_marked(ps, &c);
			snap_release(&c);
			profile_store_clean(ps);
			snap_take(ps, &c);
		}
	}
	snap_release(&c);
	profile_store_free(ps);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_profiles__identify_traits_keep_values_as_compact_json_sorted_by_name),
		cmocka_unit_test(test_profiles__real_traits_keep_the_shortest_form_that_reads_back),
		cmocka_unit_test(test_profiles__traits_view_has_the_traits_without_counters_or_accounts),
		cmocka_unit_test(test_profiles__counters_count_calls_by_name_with_first_and_last_seen),
		cmocka_unit_test(test_profiles__group_calls_link_accounts_that_share_their_traits),
		cmocka_unit_test(test_profiles__merge_keeps_the_newest_of_each_trait_and_sums_the_rest),
		cmocka_unit_test(test_profiles__merges_chain_across_three_profiles),
		cmocka_unit_test(test_profiles__events_page_newest_first_across_merged_profiles),
		cmocka_unit_test(test_profiles__events_of_a_set_of_many_merged_profiles),
		cmocka_unit_test(test_profiles__forget_returns_the_merged_set_and_frees_its_slots),
		cmocka_unit_test(test_profiles__identifiers_keep_the_first_and_the_latest_sighting),
		cmocka_unit_test(test_profiles__records_grow_and_shrink_through_slot_sizes),
		cmocka_unit_test(test_profiles__values_over_8192_bytes_are_refused_and_the_rest_kept),
		cmocka_unit_test(test_profiles__records_over_64_kb_are_refused_and_the_old_one_kept),
		cmocka_unit_test(test_profiles__snapshot_restores_the_same_store_which_evolves_the_same),
		cmocka_unit_test(test_profiles__snapshot_of_an_empty_store_and_corrupt_snapshots),
		cmocka_unit_test(test_profiles__random_traffic_matches_a_simple_model),
		cmocka_unit_test(test_profiles__every_changed_page_is_marked_dirty),
	};

	return cmocka_run_group_tests_name("profiles", tests, NULL, NULL);
}
