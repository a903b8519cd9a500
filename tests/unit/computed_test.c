/*
 * Unit tests for computed traits' per-profile state (audiences/audiences.h,
 * "computed traits"): every kind with and without a window, windows
 * sliding as the test's clock moves, the where-condition evaluator, ties,
 * ignored values and caps, the blob's round trip and its rejection of
 * malformed input, and the key property: random event streams split
 * between two profiles and merged read the same value, and hold the same
 * bytes, as one profile that got every event, and as a naive
 * recomputation from the raw events in this file.
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

#include "audiences/audiences.h"
#include "lib/buf.h"
#include "lib/err.h"

#define HOUR (3600LL * 1000000LL)
#define DAY (24 * HOUR)
/* A Monday, midnight UTC: 2026-01-05. */
#define T0 (1767571200LL * 1000000LL)

/* ---- helpers ---- */

/* Parses event('E').where(cond).exists() and points def at its where. */
static struct audience_expr *set_where(struct audience_computed *def, const char *cond)
{
	char src[512];
	struct audience_expr *e = NULL;
	struct audience_error err;

	snprintf(src, sizeof(src), "event('E').where(%s).exists()", cond);
	if (audience_parse(src, strlen(src), &e, &err) != 0)
		fail_msg("'%s' does not parse: %s", src, err.message);
	def->where_expr = e;
	def->where = audience_expr_node(e, audience_expr_root(e))->kid;
	return e;
}

static void apply(const struct audience_computed *def, struct buf *st, int64_t now, int64_t ts,
		  const char *name, const char *props)
{
	json_t *p = props ? json_loads(props, 0, NULL) : NULL;

	if (props && !p)
		fail_msg("bad test JSON '%s'", props);
	assert_int_equal(audience_computed_apply(def, st, now, ts, name, p), 0);
	json_decref(p);
}

/* The value at now as compact JSON text; caller frees. */
static char *value(const struct audience_computed *def, struct buf *st, int64_t now)
{
	json_t *v = NULL;
	char *s;

	assert_int_equal(audience_computed_value(def, st, now, &v), 0);
	assert_non_null(v);
	s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(v);
	return s;
}

static void assert_value(const struct audience_computed *def, struct buf *st, int64_t now,
			 const char *want)
{
	char *got = value(def, st, now);

	if (strcmp(got, want) != 0)
		fail_msg("value is %s, not %s", got, want);
	free(got);
}

static bool where(const char *cond, const char *props)
{
	struct audience_computed def = { 0 };
	struct audience_expr *e = set_where(&def, cond);
	json_t *p = json_loads(props, 0, NULL);
	bool r;

	assert_non_null(p);
	r = audience_where_match(e, def.where, p);
	json_decref(p);
	audience_expr_free(e);
	return r;
}

/* ---- the where evaluator ---- */

static void test_computed__where_follows_the_type_rules(void **unused)
{
	(void)unused;
	assert_true(where("property('n') > 1", "{\"n\": 2}"));
	assert_true(where("property('n') > 1", "{\"n\": 1.5}"));
	assert_false(where("property('n') > 1", "{\"n\": \"2\"}"));
	assert_false(where("property('n') != 1", "{}"));
	assert_false(where("property('n') != 1", "{\"n\": null}"));
	assert_true(where("not property('n') = 1", "{}"));
	assert_true(where("property('s') = 'pro'", "{\"s\": \"pro\"}"));
	assert_false(where("property('s') = 'pro'", "{\"s\": \"Pro\"}"));
	assert_true(where("property('s') >= '2026-01-01'", "{\"s\": \"2026-02-01\"}"));
	assert_false(where("property('s') < 'ab'", "{\"s\": \"ab\"}"));
	assert_true(where("property('s') < 'ab'", "{\"s\": \"a\"}"));
	assert_true(where("property('b') = true", "{\"b\": true}"));
	assert_true(where("property('b') != true", "{\"b\": false}"));
	assert_false(where("property('b') = true", "{\"b\": 1}"));
	assert_true(where("property('s') in ('x', 'y')", "{\"s\": \"y\"}"));
	assert_false(where("property('s') in ('x', 'y')", "{\"s\": \"z\"}"));
	assert_true(where("property('n') in (1, 2)", "{\"n\": 2.0}"));
	assert_true(where("property('s').exists()", "{\"s\": \"\"}"));
	assert_false(where("property('s').exists()", "{\"s\": null}"));
	assert_true(where("property('s').contains('ell')", "{\"s\": \"hello\"}"));
	assert_true(where("property('t').contains('b')", "{\"t\": [\"a\", \"b\"]}"));
	assert_false(where("property('t').contains('b')", "{\"t\": [\"ab\", 2]}"));
	assert_true(where("property('a') = 1 and (property('b') = 2 or not property('c').exists())",
			  "{\"a\": 1, \"b\": 3}"));
	assert_false(where("property('a') = 1 and (property('b') = 2 or not property('c').exists())",
			   "{\"a\": 1, \"b\": 3, \"c\": 0}"));
}

/* ---- each kind ---- */

static void test_computed__count_counts_matching_events_of_the_name(void **unused)
{
	struct audience_computed def = { .kind = AUDIENCE_COMPUTED_COUNT, .event = "E" };
	struct audience_expr *e = set_where(&def, "property('plan') = 'pro'");
	struct buf st = BUF_INIT;

	(void)unused;
	assert_value(&def, &st, T0, "0");
	assert_int_equal(st.len, 0);
	apply(&def, &st, T0, T0, "E", "{\"plan\": \"pro\"}");
	apply(&def, &st, T0, T0, "E", "{\"plan\": \"free\"}");
	apply(&def, &st, T0, T0, "F", "{\"plan\": \"pro\"}");
	apply(&def, &st, T0, T0 - 400 * DAY, "E", "{\"plan\": \"pro\"}");
	apply(&def, &st, T0, T0, "E", NULL);
	assert_value(&def, &st, T0, "2");
	assert_value(&def, &st, T0 + 1000 * DAY, "2");	/* all time never expires */
	audience_expr_free(e);
	buf_release(&st);
}

static void test_computed__hour_window_slides_with_now(void **unused)
{
	struct audience_computed def = { .kind = AUDIENCE_COMPUTED_COUNT, .event = "E",
					 .window = 3, .unit = AUDIENCE_UNIT_HOURS };
	struct buf st = BUF_INIT;

	(void)unused;
	apply(&def, &st, T0 + 10 * HOUR, T0 + 8 * HOUR + 59 * 60000000LL, "E", NULL);
	apply(&def, &st, T0 + 10 * HOUR, T0 + 9 * HOUR, "E", NULL);
	apply(&def, &st, T0 + 10 * HOUR, T0 + 10 * HOUR, "E", NULL);
	apply(&def, &st, T0 + 10 * HOUR, T0 + 7 * HOUR + 59 * 60000000LL, "E", NULL);	/* expired */
	apply(&def, &st, T0 + 10 * HOUR, T0 + 12 * HOUR, "E", NULL);	/* in the future */
	assert_value(&def, &st, T0 + 10 * HOUR + 30 * 60000000LL, "3");
	assert_value(&def, &st, T0 + 11 * HOUR, "2");	/* hour 8 left */
	assert_value(&def, &st, T0 + 12 * HOUR, "2");	/* hour 9 left, hour 12 came */
	assert_value(&def, &st, T0 + 13 * HOUR - 1, "2");
	assert_value(&def, &st, T0 + 13 * HOUR, "1");
	assert_value(&def, &st, T0 + 15 * HOUR, "0");
	assert_int_equal(st.len, 0);	/* every bucket dropped */
	buf_release(&st);
}

static void test_computed__day_window_is_today_and_the_days_before(void **unused)
{
	struct audience_computed def = { .kind = AUDIENCE_COMPUTED_SUM, .event = "E",
					 .property = "v", .window = 2, .unit = AUDIENCE_UNIT_DAYS };
	struct buf st = BUF_INIT;

	(void)unused;
	apply(&def, &st, T0 + DAY, T0 + 1, "E", "{\"v\": 1}");
	apply(&def, &st, T0 + DAY, T0 + DAY - 1, "E", "{\"v\": 2}");
	apply(&def, &st, T0 + DAY, T0 + DAY, "E", "{\"v\": 4}");
	apply(&def, &st, T0 + DAY, T0 - 1, "E", "{\"v\": 8}");	/* two days ago: out */
	assert_value(&def, &st, T0 + DAY, "7.0");
	assert_value(&def, &st, T0 + 2 * DAY - 1, "7.0");
	assert_value(&def, &st, T0 + 2 * DAY, "4.0");
	assert_value(&def, &st, T0 + 3 * DAY, "0.0");
	buf_release(&st);
}

static void test_computed__aggregations_ignore_non_numbers_and_are_null_without_events(void **unused)
{
	static const enum audience_computed_kind kinds[] = {
		AUDIENCE_COMPUTED_SUM, AUDIENCE_COMPUTED_AVG, AUDIENCE_COMPUTED_MIN,
		AUDIENCE_COMPUTED_MAX,
	};
	static const char *const empty[] = { "0.0", "null", "null", "null" };
	static const char *const full[] = { "6.0", "2.0", "-1.5", "4.5" };
	static const char *const windowed[] = { "4.5", "4.5", "4.5", "4.5" };

	(void)unused;
	for (int w = 0; w < 2; w++)
		for (size_t k = 0; k < 4; k++) {
			struct audience_computed def = {
				.kind = kinds[k], .event = "E", .property = "v",
				.window = w ? 1 : 0, .unit = AUDIENCE_UNIT_HOURS,
			};
			struct buf st = BUF_INIT;

			assert_value(&def, &st, T0, empty[k]);
			apply(&def, &st, T0, T0, "E", "{\"v\": \"12\"}");
			apply(&def, &st, T0, T0, "E", "{\"v\": null}");
			apply(&def, &st, T0, T0, "E", "{\"v\": true}");
			apply(&def, &st, T0, T0, "E", "{\"v\": [1]}");
			apply(&def, &st, T0, T0, "E", "{\"w\": 1}");
			apply(&def, &st, T0, T0, "E", "[1]");
			assert_value(&def, &st, T0, empty[k]);
			assert_int_equal(st.len, 0);
			apply(&def, &st, T0, T0 - HOUR, "E", "{\"v\": 3}");
			apply(&def, &st, T0, T0, "E", "{\"v\": -1.5}");
			apply(&def, &st, T0, T0 + HOUR, "E", "{\"v\": 4.5}");
			assert_value(&def, &st, T0 + HOUR, w ? windowed[k] : full[k]);
			buf_release(&st);
		}
}

static void test_computed__most_frequent_ties_to_the_first_alphabetically(void **unused)
{
	(void)unused;
	for (int w = 0; w < 2; w++) {
		struct audience_computed def = {
			.kind = AUDIENCE_COMPUTED_MOST_FREQUENT, .event = "E", .property = "c",
			.window = w ? 1 : 0, .unit = AUDIENCE_UNIT_DAYS,
		};
		struct buf st = BUF_INIT;

		assert_value(&def, &st, T0, "null");
		apply(&def, &st, T0, T0 - DAY, "E", "{\"c\": \"zed\"}");
		apply(&def, &st, T0, T0 - DAY, "E", "{\"c\": \"zed\"}");
		apply(&def, &st, T0, T0 - DAY, "E", "{\"c\": \"zed\"}");
		apply(&def, &st, T0, T0, "E", "{\"c\": \"pear\"}");
		apply(&def, &st, T0, T0, "E", "{\"c\": 1}");
		apply(&def, &st, T0, T0, "E", "{\"c\": 1}");
		apply(&def, &st, T0, T0, "E", "{\"c\": \"apple\"}");
		apply(&def, &st, T0, T0, "E", "{\"c\": \"pear\"}");
		apply(&def, &st, T0, T0, "E", "{\"c\": \"apple\"}");
		apply(&def, &st, T0, T0, "E", "{\"c\": \"Zebra\"}");
		assert_value(&def, &st, T0, w ? "\"apple\"" : "\"zed\"");
		apply(&def, &st, T0, T0, "E", "{\"c\": \"Zebra\"}");
		assert_value(&def, &st, T0, w ? "\"Zebra\"" : "\"zed\"");	/* 'Z' < 'a' */
		buf_release(&st);
	}
}

static void test_computed__first_and_last_by_time_with_ties_by_text(void **unused)
{
	(void)unused;
	for (int w = 0; w < 2; w++)
		for (int last = 0; last < 2; last++) {
			struct audience_computed def = {
				.kind = last ? AUDIENCE_COMPUTED_LAST : AUDIENCE_COMPUTED_FIRST,
				.event = "E", .property = "p",
				.window = w ? 2 : 0, .unit = AUDIENCE_UNIT_HOURS,
			};
			struct buf st = BUF_INIT;

			assert_value(&def, &st, T0, "null");
			apply(&def, &st, T0, T0, "E", "{\"p\": {\"k\": [1, \"x\"]}}");
			apply(&def, &st, T0, T0 - 2 * HOUR, "E", "{\"p\": \"old\"}");
			apply(&def, &st, T0, T0 - HOUR, "E", "{\"p\": 7}");
			apply(&def, &st, T0, T0 - HOUR, "E", "{\"p\": null}");
			apply(&def, &st, T0, T0 + HOUR, "E", "{\"p\": \"b\"}");
			apply(&def, &st, T0, T0 + HOUR, "E", "{\"p\": \"a\"}");
			/* All time reads every event, the one stamped ahead of now too. */
			if (!last)
				assert_value(&def, &st, T0, w ? "7" : "\"old\"");
			else
				assert_value(&def, &st, T0, w ? "{\"k\":[1,\"x\"]}" : "\"b\"");
			assert_value(&def, &st, T0 + HOUR, last ? "\"b\"" : w ? "{\"k\":[1,\"x\"]}"
								  : "\"old\"");
			/* "a" and "b" share a time: first takes "a", last "b". */
			assert_value(&def, &st, T0 + 2 * HOUR, last ? "\"b\"" : w ? "\"a\"" : "\"old\"");
			buf_release(&st);
		}
}

static void test_computed__unique_list_is_sorted_and_capped(void **unused)
{
	(void)unused;
	for (int w = 0; w < 2; w++) {
		struct audience_computed def = {
			.kind = AUDIENCE_COMPUTED_UNIQUE_LIST, .event = "E", .property = "s",
			.window = w ? 1 : 0, .unit = AUDIENCE_UNIT_DAYS,
		};
		struct audience_computed cnt = def;
		struct buf st = BUF_INIT, cst = BUF_INIT;
		char props[64];
		char *v;
		json_t *arr;

		cnt.kind = AUDIENCE_COMPUTED_UNIQUE_COUNT;
		assert_value(&def, &st, T0, "[]");
		assert_value(&cnt, &cst, T0, "0");
		apply(&def, &st, T0, T0, "E", "{\"s\": \"b\"}");
		apply(&def, &st, T0, T0, "E", "{\"s\": \"a\"}");
		apply(&def, &st, T0, T0, "E", "{\"s\": \"b\"}");
		apply(&def, &st, T0, T0, "E", "{\"s\": 3}");
		apply(&def, &st, T0, T0 - DAY, "E", "{\"s\": \"0\"}");
		assert_value(&def, &st, T0, w ? "[\"a\",\"b\"]" : "[\"0\",\"a\",\"b\"]");
		/* 150 distinct values, largest first: the list keeps the 100 smallest. */
		buf_reset(&st);
		for (int i = 149; i >= 0; i--) {
			snprintf(props, sizeof(props), "{\"s\": \"v%03d\"}", i);
			apply(&def, &st, T0, T0, "E", props);
			apply(&cnt, &cst, T0, T0, "E", props);
			if (i == 120)
				assert_value(&cnt, &cst, T0, "30");
		}
		v = value(&def, &st, T0);
		arr = json_loads(v, 0, NULL);
		assert_int_equal(json_array_size(arr), AUDIENCE_COMPUTED_MAX_UNIQUE);
		assert_string_equal(json_string_value(json_array_get(arr, 0)), "v000");
		assert_string_equal(json_string_value(json_array_get(arr, 99)), "v099");
		json_decref(arr);
		free(v);
		assert_value(&cnt, &cst, T0, "100");
		buf_release(&st);
		buf_release(&cst);
	}
}

static void test_computed__long_strings_are_ignored(void **unused)
{
	struct audience_computed def = { .kind = AUDIENCE_COMPUTED_UNIQUE_LIST, .event = "E",
					 .property = "s" };
	struct buf st = BUF_INIT;
	char *props = malloc(AUDIENCE_COMPUTED_MAX_VALUE + 32);

	(void)unused;
	for (int extra = 0; extra < 2; extra++) {
		size_t n = AUDIENCE_COMPUTED_MAX_VALUE + (size_t)extra;

		/* {"s": "xxx...x"} with a string of n bytes */
		memcpy(props, "{\"s\": \"", 7);
		memset(props + 7, 'x', n);
		memcpy(props + 7 + n, "\"}", 3);
		apply(&def, &st, T0, T0, "E", props);
	}
	free(props);
	props = value(&def, &st, T0);
	assert_int_equal(strlen(props), AUDIENCE_COMPUTED_MAX_VALUE + 4);	/* ["..."] */
	free(props);
	buf_release(&st);
}

/* ---- the blob ---- */

static void test_computed__blob_is_deterministic_and_rejects_malformed_input(void **unused)
{
	struct audience_computed def = { .kind = AUDIENCE_COMPUTED_MOST_FREQUENT, .event = "E",
					 .property = "c", .window = 5, .unit = AUDIENCE_UNIT_HOURS };
	struct audience_computed other = def;
	struct buf a = BUF_INIT, b = BUF_INIT, c = BUF_INIT;
	json_t *v;

	(void)unused;
	for (int i = 0; i < 20; i++) {
		char props[32];

		snprintf(props, sizeof(props), "{\"c\": \"k%d\"}", i % 7);
		apply(&def, &a, T0, T0 - (i % 4) * HOUR, "E", props);
		apply(&def, &b, T0, T0 - (i % 4) * HOUR, "E", props);
	}
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	/* Reading without expiry, and merging into nothing, keep the bytes. */
	v = NULL;
	assert_int_equal(audience_computed_value(&def, &b, T0, &v), 0);
	json_decref(v);
	assert_memory_equal(a.data, b.data, a.len);
	assert_int_equal(audience_computed_merge(&def, &c, a.data, a.len, T0), 0);
	assert_int_equal(c.len, a.len);
	assert_memory_equal(a.data, c.data, a.len);

	/* Every strict prefix, and one byte more, are malformed. */
	for (size_t n = 1; n <= a.len; n++) {
		struct buf t = BUF_INIT;

		buf_add(&t, a.data, n);
		if (n == a.len)
			buf_addc(&t, 0);
		v = (json_t *)1;
		assert_int_equal(audience_computed_value(&def, &t, T0, &v), WEFT_EINVAL);
		assert_null(v);
		assert_int_equal(audience_computed_apply(&def, &t, T0, T0, "E", NULL), WEFT_EINVAL);
		assert_int_equal(t.len, n + (n == a.len));	/* left as it was */
		assert_int_equal(audience_computed_merge(&def, &c, t.data, t.len, T0), WEFT_EINVAL);
		assert_int_equal(c.len, a.len);
		buf_release(&t);
	}
	/* Another kind's state is not this one's. */
	other.kind = AUDIENCE_COMPUTED_UNIQUE_LIST;
	assert_int_equal(audience_computed_merge(&other, &c, a.data, a.len, T0), WEFT_EINVAL);
	/* Out of order values. */
	buf_reset(&c);
	buf_add(&c, "\x01\x05\x01\x00\x02\x01" "b" "\x01\x01" "a" "\x01", 11);
	c.data[1] = AUDIENCE_COMPUTED_MOST_FREQUENT;
	assert_int_equal(audience_computed_merge(&def, &b, c.data, c.len, T0), WEFT_EINVAL);
	c.data[6] = 'a';
	c.data[9] = 'b';
	assert_int_equal(audience_computed_merge(&def, &b, c.data, c.len, T0), 0);
	buf_release(&a);
	buf_release(&b);
	buf_release(&c);
}

/* ---- merge equivalence against a naive recomputation ---- */

struct ev {
	int64_t ts;
	const char *name;
	json_t *props;
};

static int64_t naive_bucket(const struct audience_computed *def, int64_t ts)
{
	int64_t u = def->unit == AUDIENCE_UNIT_HOURS ? HOUR : DAY;

	if (def->window == 0)
		return 0;
	return ts >= 0 ? ts / u : -((-ts + u - 1) / u);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The value at now of the events in evs, straight from the definition. */
static json_t *naive(const struct audience_computed *def, bool pro_only, const struct ev *evs,
		     size_t n, int64_t now)
{
	int64_t nb = naive_bucket(def, now);
	const char **strs = malloc((n + 1) * sizeof(*strs));
	size_t ns = 0, nnum = 0, count = 0;
	double sum = 0, mn = 0, mx = 0;
	const struct ev *best = NULL;
	char *best_text = NULL;
	json_t *r = NULL;

	for (size_t i = 0; i < n; i++) {
		const struct ev *e = &evs[i];
		json_t *v = json_object_get(e->props, def->property ? def->property : "");
		int64_t b = naive_bucket(def, e->ts);

		if (strcmp(e->name, def->event) != 0)
			continue;
		if (pro_only && (!json_is_string(json_object_get(e->props, "plan")) ||
				 strcmp(json_string_value(json_object_get(e->props, "plan")), "pro")))
			continue;
		if (def->window && (b > nb || b <= nb - (int64_t)def->window))
			continue;
		count++;
		if (json_is_number(v)) {
			double d = json_number_value(v);

			sum += d;
			mn = nnum == 0 || d < mn ? d : mn;
			mx = nnum == 0 || d > mx ? d : mx;
			nnum++;
		}
		if (json_is_string(v))
			strs[ns++] = json_string_value(v);
		if (v && !json_is_null(v)) {
			char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
			bool first = def->kind == AUDIENCE_COMPUTED_FIRST;
			int c = !best ? 0 : e->ts != best->ts ? (e->ts < best->ts ? -1 : 1)
							      : strcmp(t, best_text);

			if (!best || (first ? c < 0 : c > 0)) {
				best = e;
				free(best_text);
				best_text = t;
			} else {
				free(t);
			}
		}
	}
	qsort(strs, ns, sizeof(*strs), cmp_str);
	switch (def->kind) {
	case AUDIENCE_COMPUTED_COUNT: r = json_integer((json_int_t)count); break;
	case AUDIENCE_COMPUTED_SUM: r = json_real(sum); break;
	case AUDIENCE_COMPUTED_AVG: r = nnum ? json_real(sum / (double)nnum) : json_null(); break;
	case AUDIENCE_COMPUTED_MIN: r = nnum ? json_real(mn) : json_null(); break;
	case AUDIENCE_COMPUTED_MAX: r = nnum ? json_real(mx) : json_null(); break;
	case AUDIENCE_COMPUTED_FIRST:
	case AUDIENCE_COMPUTED_LAST:
		r = best ? json_loads(best_text, JSON_DECODE_ANY, NULL) : json_null();
		break;
	case AUDIENCE_COMPUTED_MOST_FREQUENT: {
		size_t best_n = 0;
		const char *top = NULL;

		for (size_t i = 0; i < ns;) {
			size_t j = i;

			while (j < ns && strcmp(strs[j], strs[i]) == 0)
				j++;
			if (j - i > best_n) {
				best_n = j - i;
				top = strs[i];
			}
			i = j;
		}
		r = top ? json_string(top) : json_null();
		break;
	}
	case AUDIENCE_COMPUTED_UNIQUE_LIST:
	case AUDIENCE_COMPUTED_UNIQUE_COUNT: {
		size_t distinct = 0;

		r = json_array();
		for (size_t i = 0; i < ns; i++) {
			if (i > 0 && strcmp(strs[i], strs[i - 1]) == 0)
				continue;
			distinct++;
			if (json_array_size(r) < AUDIENCE_COMPUTED_MAX_UNIQUE)
				json_array_append_new(r, json_string(strs[i]));
		}
		if (def->kind == AUDIENCE_COMPUTED_UNIQUE_COUNT) {
			json_decref(r);
			r = json_integer((json_int_t)(distinct < AUDIENCE_COMPUTED_MAX_UNIQUE
						      ? distinct : AUDIENCE_COMPUTED_MAX_UNIQUE));
		}
		break;
	}
	}
	free(best_text);
	free(strs);
	return r;
}

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

static json_t *random_props(void)
{
	json_t *p = json_object();
	char s[16];

	switch (rnd(8)) {
	case 0: break;	/* no v */
	case 1: json_object_set_new(p, "v", json_null()); break;
	case 2: json_object_set_new(p, "v", json_boolean(rnd(2))); break;
	case 3: json_object_set_new(p, "v", json_integer((json_int_t)rnd(41) - 20)); break;
	/* Quarters: sums stay exact whatever the order of addition. */
	case 4: json_object_set_new(p, "v", json_real((double)rnd(400) / 4 - 50)); break;
	case 5:	/* many distinct strings, past the unique list's cap */
		snprintf(s, sizeof(s), "u%03u", rnd(160));
		json_object_set_new(p, "v", json_string(s));
		break;
	default:	/* few, for ties and repeats */
		snprintf(s, sizeof(s), "%c", 'a' + rnd(5));
		json_object_set_new(p, "v", json_string(s));
		break;
	}
	if (rnd(3))
		json_object_set_new(p, "plan", json_string(rnd(2) ? "pro" : "free"));
	return p;
}

static void check(const struct audience_computed *def, bool pro_only, struct buf *st,
		  const struct ev *evs, size_t n, int64_t now, const char *what, int seed)
{
	json_t *want = naive(def, pro_only, evs, n, now), *got = NULL;

	assert_int_equal(audience_computed_value(def, st, now, &got), 0);
	if (!json_equal(want, got)) {
		char *w = json_dumps(want, JSON_ENCODE_ANY), *g = json_dumps(got, JSON_ENCODE_ANY);

		fail_msg("kind %d window %u seed %d: %s reads %s, naive %s", def->kind, def->window,
			 seed, what, g, w);
	}
	json_decref(want);
	json_decref(got);
}

static void test_computed__merge_equals_one_profile_and_naive_on_random_streams(void **unused)
{
	static const struct { uint32_t window; enum audience_unit unit; } windows[] = {
		{ 0, AUDIENCE_UNIT_DAYS }, { 3, AUDIENCE_UNIT_HOURS }, { 2, AUDIENCE_UNIT_DAYS },
	};
	enum { NEV = 300 };
	struct ev *evs = calloc(NEV, sizeof(*evs));

	(void)unused;
	for (int kind = AUDIENCE_COMPUTED_COUNT; kind <= AUDIENCE_COMPUTED_UNIQUE_COUNT; kind++)
		for (size_t w = 0; w < 3; w++)
			for (int seed = 1; seed <= 12; seed++) {
				struct audience_computed def = {
					.kind = kind, .event = "E",
					.property = kind == AUDIENCE_COMPUTED_COUNT ? NULL : "v",
					.window = windows[w].window, .unit = windows[w].unit,
				};
				struct audience_expr *e = NULL;
				bool pro_only = seed % 2 == 0;
				struct buf a = BUF_INIT, b = BUF_INIT, one = BUF_INIT;
				int64_t clock;
				size_t merge_at;

				rng_state = (uint64_t)seed * 0x9E3779B97F4A7C15ULL + (uint64_t)kind * 7 + w;
				clock = T0 - 3 * DAY + (int64_t)rnd(DAY / 1000000) * 1000000LL;
				merge_at = 50 + rnd(200);
				if (pro_only)
					e = set_where(&def, "property('plan') = 'pro'");
				for (size_t i = 0; i < NEV; i++) {
					struct ev *ev = &evs[i];
					struct buf *to = i < merge_at && rnd(2) ? &b : &a;

					clock += (int64_t)rnd(40) * 60 * 1000000LL;	/* up to 40 minutes */
					/* Mostly late (up to 3 days), sometimes 2 hours ahead. */
					ev->ts = clock - (int64_t)rnd(3 * 24 * 60) * 60000000LL;
					if (rnd(10) == 0)
						ev->ts = clock + (int64_t)rnd(120) * 60000000LL;
					ev->name = rnd(5) ? "E" : "F";
					ev->props = random_props();
					/* Before merge_at the events go to a or b, then to a, merged. */
					assert_int_equal(audience_computed_apply(&def, to, clock, ev->ts,
										 ev->name, ev->props), 0);
					assert_int_equal(audience_computed_apply(&def, &one, clock, ev->ts,
										 ev->name, ev->props), 0);
					if (i + 1 == merge_at) {
						assert_int_equal(audience_computed_merge(&def, &a, b.data,
											 b.len, clock), 0);
						check(&def, pro_only, &a, evs, i + 1, clock, "merged", seed);
						check(&def, pro_only, &one, evs, i + 1, clock, "one", seed);
						assert_int_equal(a.len, one.len);
						assert_memory_equal(a.data, one.data, a.len);
					}
				}
				for (int64_t later = 0; later <= 4 * DAY; later += 7 * HOUR) {
					check(&def, pro_only, &a, evs, NEV, clock + later, "merged", seed);
					check(&def, pro_only, &one, evs, NEV, clock + later, "one", seed);
					assert_int_equal(a.len, one.len);
					assert_memory_equal(a.data, one.data, a.len);
				}
				buf_release(&a);
				buf_release(&b);
				buf_release(&one);
				for (size_t i = 0; i < NEV; i++)
					json_decref(evs[i].props);
				audience_expr_free(e);
			}
	free(evs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_computed__where_follows_the_type_rules),
		cmocka_unit_test(test_computed__count_counts_matching_events_of_the_name),
		cmocka_unit_test(test_computed__hour_window_slides_with_now),
		cmocka_unit_test(test_computed__day_window_is_today_and_the_days_before),
		cmocka_unit_test(test_computed__aggregations_ignore_non_numbers_and_are_null_without_events),
		cmocka_unit_test(test_computed__most_frequent_ties_to_the_first_alphabetically),
		cmocka_unit_test(test_computed__first_and_last_by_time_with_ties_by_text),
		cmocka_unit_test(test_computed__unique_list_is_sorted_and_capped),
		cmocka_unit_test(test_computed__long_strings_are_ignored),
		cmocka_unit_test(test_computed__blob_is_deterministic_and_rejects_malformed_input),
		cmocka_unit_test(test_computed__merge_equals_one_profile_and_naive_on_random_streams),
	};

	return cmocka_run_group_tests_name("computed", tests, NULL, NULL);
}
