/*
 * Unit tests for the audience condition language (audiences/audiences.h,
 * docs/audiences.md): every construct parses to the tree it should, the
 * precedence of and, or, not and parentheses, every type error and syntax
 * error with its message and position (lines and columns in characters,
 * non-ASCII text included), every limit on both sides, the dependency
 * listing, and the canonical print: random expressions, written with
 * noise (spacing, line breaks, redundant parentheses, leading zeros,
 * modifiers in either order), must print as a model printer in this file
 * says, and parse back to an equal expression that prints the same.
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

/* ---- helpers ---- */

static struct audience_expr *parse_ok(const char *src)
{
	struct audience_expr *e = NULL;
	struct audience_error err;
	int rc = audience_parse(src, strlen(src), &e, &err);

	if (rc != 0)
		fail_msg("'%s' does not parse: %s", src, err.message);
	assert_non_null(e);
	return e;
}

/* The canonical print of src, which must parse; caller frees. */
static char *print_of(const char *src)
{
	struct audience_expr *e = parse_ok(src);
	struct buf b = BUF_INIT;

	audience_expr_print(e, &b);
	audience_expr_free(e);
	return buf_detach(&b, NULL);
}

static void assert_prints(const char *src, const char *want)
{
	char *got = print_of(src);

	if (strcmp(got, want) != 0)
		fail_msg("'%s' prints as '%s', not '%s'", src, got, want);
	free(got);
}

/* src must fail with rc and exactly this message (position included). */
static void assert_error_n(const char *src, size_t len, int rc, const char *message)
{
	struct audience_expr *e = (struct audience_expr *)1;
	struct audience_error err;
	int got = audience_parse(src, len, &e, &err);

	if (got == 0)
		fail_msg("'%s' parses; expected: %s", src, message);
	assert_null(e);
	if (strcmp(err.message, message) != 0)
		fail_msg("'%s' fails with\n  '%s', not\n  '%s'", src, err.message, message);
	assert_int_equal(got, rc);
	/* The fields say what the message says. */
	char head[64];

	snprintf(head, sizeof(head), "line %u, column %u: ", err.line, err.column);
	assert_memory_equal(err.message, head, strlen(head));
	assert_true(err.offset <= len);
}

static void assert_error(const char *src, int rc, const char *message)
{
	assert_error_n(src, strlen(src), rc, message);
}

static const struct audience_node *root(const struct audience_expr *e)
{
	return audience_expr_node(e, audience_expr_root(e));
}

static const struct audience_node *kid(const struct audience_expr *e, const struct audience_node *n, int i)
{
	uint32_t k = n->kid;

	while (i-- > 0) {
		assert_int_not_equal(k, AUDIENCE_NONE);
		k = audience_expr_node(e, k)->next;
	}
	assert_int_not_equal(k, AUDIENCE_NONE);
	return audience_expr_node(e, k);
}

static void assert_str(const struct audience_expr *e, uint32_t id, const char *want)
{
	size_t len;
	const char *s;

	assert_int_not_equal(id, AUDIENCE_NONE);
	s = audience_expr_str(e, id, &len);
	assert_int_equal(len, strlen(want));
	assert_string_equal(s, want);
}

static void assert_lit_string(const struct audience_expr *e, uint32_t i, const char *want)
{
	const struct audience_lit *l = audience_expr_lit(e, i);

	assert_int_equal(l->type, AUDIENCE_TYPE_STRING);
	assert_str(e, l->str, want);
}

static void assert_lit_number(const struct audience_expr *e, uint32_t i, double want,
			      const char *text)
{
	const struct audience_lit *l = audience_expr_lit(e, i);

	assert_int_equal(l->type, AUDIENCE_TYPE_NUMBER);
	assert_true(l->number == want);
	assert_str(e, l->str, text);
}

/* A value test: kind, name, op, and the literal count. */
static void assert_test(const struct audience_expr *e, const struct audience_node *n, enum audience_kind kind,
			const char *name, enum audience_op op, uint32_t nlit)
{
	assert_int_equal(n->kind, kind);
	assert_str(e, n->name, name);
	assert_int_equal(n->op, op);
	assert_int_equal(n->nlit, nlit);
	if (nlit == 0)
		assert_int_equal(n->lit, AUDIENCE_NONE);
	assert_int_equal(n->nkids, 0);
	assert_int_equal(n->kid, AUDIENCE_NONE);
}

static char *repeat(const char *s, size_t times)
{
	size_t n = strlen(s);
	char *out = malloc(n * times + 1);

	assert_non_null(out);
	for (size_t i = 0; i < times; i++)
		memcpy(out + i * n, s, n);
	out[n * times] = '\0';
	return out;
}

/* ---- constructs ---- */

static void test_audiences__trait_comparisons_are_typed_by_their_literal(void **state)
{
	static const struct {
		const char *src;
		enum audience_op op;
		enum audience_type type;
	} cases[] = {
		{ "trait('plan') = 'pro'", AUDIENCE_EQ, AUDIENCE_TYPE_STRING },
		{ "trait('plan') != 'pro'", AUDIENCE_NE, AUDIENCE_TYPE_STRING },
		{ "trait('age') < 18", AUDIENCE_LT, AUDIENCE_TYPE_NUMBER },
		{ "trait('age') <= 18", AUDIENCE_LE, AUDIENCE_TYPE_NUMBER },
		{ "trait('age') > 18", AUDIENCE_GT, AUDIENCE_TYPE_NUMBER },
		{ "trait('age') >= 18", AUDIENCE_GE, AUDIENCE_TYPE_NUMBER },
		{ "trait('signup') >= '2026-01-01'", AUDIENCE_GE, AUDIENCE_TYPE_STRING },
		{ "trait('newsletter') = true", AUDIENCE_EQ, AUDIENCE_TYPE_BOOL },
		{ "trait('newsletter') != false", AUDIENCE_NE, AUDIENCE_TYPE_BOOL },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct audience_expr *e = parse_ok(cases[i].src);
		const struct audience_node *n = root(e);
		const struct audience_lit *l;

		assert_int_equal(audience_expr_nodes(e), 1);
		assert_int_equal(n->kind, AUDIENCE_TRAIT);
		assert_int_equal(n->op, cases[i].op);
		assert_int_equal(n->nlit, 1);
		l = audience_expr_lit(e, n->lit);
		assert_int_equal(l->type, cases[i].type);
		assert_int_equal(n->line, 1);
		assert_int_equal(n->column, 1);
		audience_expr_free(e);
	}

	struct audience_expr *e = parse_ok("trait('plan') = 'pro'");

	assert_test(e, root(e), AUDIENCE_TRAIT, "plan", AUDIENCE_EQ, 1);
	assert_lit_string(e, root(e)->lit, "pro");
	audience_expr_free(e);
	e = parse_ok("trait('age') >= 18");
	assert_lit_number(e, root(e)->lit, 18, "18");
	audience_expr_free(e);
	e = parse_ok("trait('newsletter') = true");
	assert_true(audience_expr_lit(e, root(e)->lit)->boolean);
	audience_expr_free(e);
	e = parse_ok("trait('balance') < -12.5");
	assert_lit_number(e, root(e)->lit, -12.5, "-12.5");
	audience_expr_free(e);
}

static void test_audiences__trait_in_exists_and_contains(void **state)
{
	struct audience_expr *e;
	const struct audience_node *n;
	(void)state;

	e = parse_ok("trait('country') in ('DE', 'FR', 'IT')");
	n = root(e);
	assert_test(e, n, AUDIENCE_TRAIT, "country", AUDIENCE_IN, 3);
	assert_lit_string(e, n->lit, "DE");
	assert_lit_string(e, n->lit + 1, "FR");
	assert_lit_string(e, n->lit + 2, "IT");
	audience_expr_free(e);

	e = parse_ok("trait('tier') in (1, 2.5, -3)");
	n = root(e);
	assert_test(e, n, AUDIENCE_TRAIT, "tier", AUDIENCE_IN, 3);
	assert_lit_number(e, n->lit, 1, "1");
	assert_lit_number(e, n->lit + 1, 2.5, "2.5");
	assert_lit_number(e, n->lit + 2, -3, "-3");
	audience_expr_free(e);

	e = parse_ok("trait('country') in ('DE')");
	assert_test(e, root(e), AUDIENCE_TRAIT, "country", AUDIENCE_IN, 1);
	audience_expr_free(e);

	e = parse_ok("trait('email').exists()");
	assert_test(e, root(e), AUDIENCE_TRAIT, "email", AUDIENCE_EXISTS, 0);
	audience_expr_free(e);

	e = parse_ok("trait('tags').contains('beta')");
	n = root(e);
	assert_test(e, n, AUDIENCE_TRAIT, "tags", AUDIENCE_CONTAINS, 1);
	assert_lit_string(e, n->lit, "beta");
	audience_expr_free(e);
}

static void test_audiences__event_count_with_where_and_within(void **state)
{
	struct audience_expr *e = parse_ok(
		"event('Order Completed').where(property('total') > 100).within(30 days).count() >= 3");
	const struct audience_node *n = root(e), *w;
	(void)state;

	assert_int_equal(audience_expr_nodes(e), 2);
	assert_int_equal(n->kind, AUDIENCE_EVENT);
	assert_str(e, n->name, "Order Completed");
	assert_int_equal(n->agg, AUDIENCE_AGG_COUNT);
	assert_int_equal(n->agg_prop, AUDIENCE_NONE);
	assert_int_equal(n->op, AUDIENCE_GE);
	assert_int_equal(n->nlit, 1);
	assert_lit_number(e, n->lit, 3, "3");
	assert_int_equal(n->window, AUDIENCE_WINDOW_WITHIN);
	assert_int_equal(n->unit, AUDIENCE_UNIT_DAYS);
	assert_int_equal(n->within, 30);
	assert_int_equal(n->span_us, INT64_C(30) * 86400 * 1000000);
	assert_int_equal(n->nkids, 1);
	w = kid(e, n, 0);
	assert_test(e, w, AUDIENCE_PROPERTY, "total", AUDIENCE_GT, 1);
	assert_lit_number(e, w->lit, 100, "100");
	assert_int_equal(w->next, AUDIENCE_NONE);
	assert_int_equal(w->column, 32);
	audience_expr_free(e);

	e = parse_ok("event('Page Viewed').within(12 hours).count() = 0");
	n = root(e);
	assert_int_equal(n->window, AUDIENCE_WINDOW_WITHIN);
	assert_int_equal(n->unit, AUDIENCE_UNIT_HOURS);
	assert_int_equal(n->within, 12);
	assert_int_equal(n->span_us, INT64_C(12) * 3600 * 1000000);
	assert_int_equal(n->kid, AUDIENCE_NONE);
	assert_int_equal(n->op, AUDIENCE_EQ);
	audience_expr_free(e);

	/* where() and the window in either order; one day or hour, singular or not. */
	assert_prints("event('X').within(1 days).where(property('a') = 1).count() > 1",
		      "event('X').where(property('a') = 1).within(1 day).count() > 1");
	assert_prints("event('X').within(2 hour).exists()", "event('X').within(2 hours).exists()");
	assert_prints("event('X').within(1 hours).exists()", "event('X').within(1 hour).exists()");
	/* where() takes and, or, not, parentheses and every test. */
	assert_prints("event('X').where(not (property('a') = 1 or property('b').exists()) and "
		      "property('c') in ('x', 'y') and property('d').contains('z')).exists()",
		      "event('X').where(not (property('a') = 1 or property('b').exists()) and "
		      "property('c') in ('x', 'y') and property('d').contains('z')).exists()");
}

static void test_audiences__event_aggregations_take_a_property(void **state)
{
	static const struct {
		const char *fn;
		enum audience_agg agg;
	} aggs[] = {
		{ "sum", AUDIENCE_AGG_SUM }, { "avg", AUDIENCE_AGG_AVG }, { "min", AUDIENCE_AGG_MIN },
		{ "max", AUDIENCE_AGG_MAX },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(aggs) / sizeof(aggs[0]); i++) {
		char src[128];
		struct audience_expr *e;
		const struct audience_node *n;

		snprintf(src, sizeof(src), "event('Order Completed').%s(property('total')) > 99.9",
			 aggs[i].fn);
		e = parse_ok(src);
		n = root(e);
		assert_int_equal(n->kind, AUDIENCE_EVENT);
		assert_int_equal(n->agg, aggs[i].agg);
		assert_str(e, n->agg_prop, "total");
		assert_int_equal(n->op, AUDIENCE_GT);
		assert_lit_number(e, n->lit, 99.9, "99.9");
		assert_int_equal(n->window, AUDIENCE_WINDOW_ALL);
		assert_int_equal(n->kid, AUDIENCE_NONE);
		assert_prints(src, src);
		audience_expr_free(e);
	}
}

static void test_audiences__event_exists_is_a_condition_without_comparison(void **state)
{
	struct audience_expr *e = parse_ok("event('Signed Up').exists()");
	const struct audience_node *n = root(e);
	(void)state;

	assert_int_equal(n->kind, AUDIENCE_EVENT);
	assert_int_equal(n->agg, AUDIENCE_AGG_NONE);
	assert_int_equal(n->op, AUDIENCE_EXISTS);
	assert_int_equal(n->nlit, 0);
	assert_int_equal(n->lit, AUDIENCE_NONE);
	audience_expr_free(e);
	assert_prints("not event('Signed Up').within(7 days).exists()",
		      "not event('Signed Up').within(7 days).exists()");
}

static void test_audiences__between_reads_dates_and_rfc3339_times(void **state)
{
	static const struct {
		const char *from, *to;
		int64_t from_us, to_us;
	} cases[] = {
		{ "2026-01-01", "2026-02-01", INT64_C(1767225600000000), INT64_C(1769904000000000) },
		{ "1970-01-01T00:00:00Z", "1970-01-01T00:00:01.5z", 0, 1500000 },
		{ "2024-02-29T12:00:00+02:00", "2024-02-29T12:00:00-01:30",
		  INT64_C(1709200800000000), INT64_C(1709213400000000) },
		{ "2000-03-01t00:00:00.123456789Z", "9999-12-31", INT64_C(951868800123456),
		  INT64_C(253402214400000000) },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char src[160];
		struct audience_expr *e;
		const struct audience_node *n;

		snprintf(src, sizeof(src), "event('X').between('%s', '%s').count() >= 1",
			 cases[i].from, cases[i].to);
		e = parse_ok(src);
		n = root(e);
		assert_int_equal(n->window, AUDIENCE_WINDOW_BETWEEN);
		assert_int_equal(n->from_us, cases[i].from_us);
		assert_int_equal(n->to_us, cases[i].to_us);
		assert_str(e, n->from_str, cases[i].from);
		assert_str(e, n->to_str, cases[i].to);
		/* The dates print as they were written. */
		assert_prints(src, src);
		audience_expr_free(e);
	}
}

static void test_audiences__computed_traits_and_audiences(void **state)
{
	struct audience_expr *e = parse_ok("computed('orders_90d') >= 2");
	const struct audience_node *n = root(e);
	(void)state;

	assert_test(e, n, AUDIENCE_COMPUTED, "orders_90d", AUDIENCE_GE, 1);
	assert_lit_number(e, n->lit, 2, "2");
	audience_expr_free(e);
	e = parse_ok("computed('favourite_colour') in ('red', 'blue')");
	assert_test(e, root(e), AUDIENCE_COMPUTED, "favourite_colour", AUDIENCE_IN, 2);
	audience_expr_free(e);
	e = parse_ok("audience('vip')");
	n = root(e);
	assert_int_equal(n->kind, AUDIENCE_AUDIENCE);
	assert_str(e, n->name, "vip");
	assert_int_equal(n->nlit, 0);
	audience_expr_free(e);
}

/* ---- structure and precedence ---- */

static void test_audiences__and_binds_tighter_than_or(void **state)
{
	struct audience_expr *e = parse_ok("audience('a') or audience('b') and audience('c') or "
				      "audience('d')");
	const struct audience_node *n = root(e), *and;
	(void)state;

	assert_int_equal(n->kind, AUDIENCE_OR);
	assert_int_equal(n->nkids, 3);
	assert_str(e, kid(e, n, 0)->name, "a");
	and = kid(e, n, 1);
	assert_int_equal(and->kind, AUDIENCE_AND);
	assert_int_equal(and->nkids, 2);
	assert_str(e, kid(e, and, 0)->name, "b");
	assert_str(e, kid(e, and, 1)->name, "c");
	assert_str(e, kid(e, n, 2)->name, "d");
	assert_int_equal(kid(e, n, 2)->next, AUDIENCE_NONE);
	audience_expr_free(e);
}

static void test_audiences__parentheses_group_and_chains_are_one_node(void **state)
{
	struct audience_expr *e = parse_ok("(audience('a') or audience('b')) and audience('c')");
	const struct audience_node *n = root(e);
	(void)state;

	assert_int_equal(n->kind, AUDIENCE_AND);
	assert_int_equal(kid(e, n, 0)->kind, AUDIENCE_OR);
	assert_int_equal(kid(e, n, 0)->nkids, 2);
	audience_expr_free(e);

	/* A chain of and is one node with every operand... */
	e = parse_ok("audience('a') and audience('b') and audience('c') and audience('d')");
	assert_int_equal(root(e)->kind, AUDIENCE_AND);
	assert_int_equal(root(e)->nkids, 4);
	assert_int_equal(audience_expr_nodes(e), 5);
	audience_expr_free(e);
	/* ...but a parenthesised one stays apart, and prints so. */
	e = parse_ok("audience('a') and (audience('b') and audience('c'))");
	assert_int_equal(root(e)->nkids, 2);
	assert_int_equal(kid(e, root(e), 1)->kind, AUDIENCE_AND);
	audience_expr_free(e);
	assert_prints("audience('a') and (audience('b') and audience('c'))",
		      "audience('a') and (audience('b') and audience('c'))");
	assert_prints("(audience('a') or audience('b')) or audience('c')",
		      "(audience('a') or audience('b')) or audience('c')");
	/* Redundant parentheses go. */
	assert_prints("((audience('a'))) or ((audience('b') and audience('c')))",
		      "audience('a') or audience('b') and audience('c')");
}

static void test_audiences__not_applies_to_one_condition(void **state)
{
	struct audience_expr *e = parse_ok("not trait('plan') = 'pro' and audience('x')");
	const struct audience_node *n = root(e), *not;
	(void)state;

	assert_int_equal(n->kind, AUDIENCE_AND);
	not = kid(e, n, 0);
	assert_int_equal(not->kind, AUDIENCE_NOT);
	assert_int_equal(not->nkids, 1);
	assert_test(e, kid(e, not, 0), AUDIENCE_TRAIT, "plan", AUDIENCE_EQ, 1);
	assert_int_equal(kid(e, n, 1)->kind, AUDIENCE_AUDIENCE);
	audience_expr_free(e);

	e = parse_ok("not (audience('a') or audience('b'))");
	assert_int_equal(root(e)->kind, AUDIENCE_NOT);
	assert_int_equal(kid(e, root(e), 0)->kind, AUDIENCE_OR);
	audience_expr_free(e);
	e = parse_ok("not not audience('a')");
	assert_int_equal(root(e)->kind, AUDIENCE_NOT);
	assert_int_equal(kid(e, root(e), 0)->kind, AUDIENCE_NOT);
	audience_expr_free(e);
	assert_prints("not(audience('a'))", "not audience('a')");
	assert_prints("not (audience('a') and audience('b'))",
		      "not (audience('a') and audience('b'))");
}

static void test_audiences__kids_come_before_their_parent_and_the_root_is_last(void **state)
{
	struct audience_expr *e = parse_ok(
		"trait('a') = 1 and (event('X').where(property('p') = 1 or not property('q') "
		"= 2).count() > 1 or not audience('v')) and computed('c').exists()");
	uint32_t n = audience_expr_nodes(e);
	(void)state;

	assert_int_equal(audience_expr_root(e), n - 1);
	for (uint32_t i = 0; i < n; i++) {
		const struct audience_node *node = audience_expr_node(e, i);
		uint32_t count = 0;

		for (uint32_t k = node->kid; k != AUDIENCE_NONE; k = audience_expr_node(e, k)->next) {
			assert_true(k < i);
			count++;
		}
		assert_int_equal(count, node->nkids);
	}
	audience_expr_free(e);
}

static void test_audiences__names_are_interned(void **state)
{
	struct audience_expr *e = parse_ok("trait('plan') = 'plan' or trait('plan').exists() or "
				      "event('plan').exists()");
	const struct audience_node *n = root(e);
	uint32_t id = kid(e, n, 0)->name;
	(void)state;

	assert_int_equal(kid(e, n, 1)->name, id);
	assert_int_equal(kid(e, n, 2)->name, id);
	assert_int_equal(audience_expr_lit(e, kid(e, n, 0)->lit)->str, id);
	assert_true(audience_expr_bytes(e) > 0);
	audience_expr_free(e);
}

static void test_audiences__literals_are_normalised(void **state)
{
	(void)state;

	assert_prints("trait('a') = 007", "trait('a') = 7");
	assert_prints("trait('a') = -0", "trait('a') = 0");
	assert_prints("trait('a') = -0.000", "trait('a') = 0");
	assert_prints("trait('a') = 10.500", "trait('a') = 10.5");
	assert_prints("trait('a') = 00.05", "trait('a') = 0.05");
	assert_prints("trait('a') = -000120.0", "trait('a') = -120");
	assert_prints("trait('it\\'s') = 'back\\\\slash'", "trait('it\\'s') = 'back\\\\slash'");
	assert_prints("trait('naïve') = '日本語'", "trait('naïve') = '日本語'");
	assert_prints("trait('a') = ''", "trait('a') = ''");
	assert_prints("\n\ttrait ( 'a' )\r\n>=\t1  ", "trait('a') >= 1");
	assert_prints("event('X').within(030 days).exists()", "event('X').within(30 days).exists()");

	struct audience_expr *e = parse_ok("trait('it\\'s') = 'a\\\\b'");

	assert_str(e, root(e)->name, "it's");
	assert_lit_string(e, root(e)->lit, "a\\b");
	audience_expr_free(e);
}

static void test_audiences__keywords_are_lower_case(void **state)
{
	(void)state;

	assert_error("audience('a') AND audience('b')", WEFT_EINVAL,
		     "line 1, column 15: expected 'and', 'or' or the end of the input, found 'AND' "
		     "(words are lower case: 'and')");
	assert_error("Trait('a') = 1", WEFT_EINVAL,
		     "line 1, column 1: expected a condition (trait(), event(), computed(), "
		     "audience(), not or '('), found 'Trait' (words are lower case: 'trait')");
	assert_error("trait('a') = TRUE", WEFT_EINVAL,
		     "line 1, column 14: expected a value ('text', a number, true or false), "
		     "found 'TRUE' (words are lower case: 'true')");
}

/* ---- errors ---- */

static void test_audiences__type_errors_are_reported_at_definition(void **state)
{
	static const struct {
		const char *src, *message;
	} cases[] = {
		{ "event('X').count()",
		  "line 1, column 19: type error: count() is a number, not a condition; expected a "
		  "comparison with a number after it (such as >= 1), found the end of the input" },
		{ "event('X').count() = 'three'",
		  "line 1, column 22: type error: count() is a number and cannot be compared with a "
		  "string" },
		{ "event('X').sum(property('t')) > true",
		  "line 1, column 33: type error: sum() is a number and cannot be compared with true" },
		{ "event('X').avg(property('t')) = null",
		  "line 1, column 33: type error: avg() is a number and cannot be compared with null" },
		{ "event('X').max(property('t')) in (1, 2)",
		  "line 1, column 31: type error: max() is compared with =, !=, <, <=, > or >=, not "
		  "with in" },
		{ "event('X').min(property('t')) and audience('a')",
		  "line 1, column 31: type error: min() is a number, not a condition; expected a "
		  "comparison with a number after it (such as >= 1), found 'and'" },
		{ "event('X')",
		  "line 1, column 11: type error: event('X') is not a condition by itself; expected "
		  ".exists() or an aggregation compared with a number (such as .count() >= 1), found "
		  "the end of the input" },
		{ "event('X').within(3 days) or audience('a')",
		  "line 1, column 27: type error: event('X') is not a condition by itself; expected "
		  ".exists() or an aggregation compared with a number (such as .count() >= 1), found "
		  "'or'" },
		{ "trait('plan')",
		  "line 1, column 14: type error: trait('plan') is a value, not a condition; expected "
		  "a comparison, in (...), .exists() or .contains() after it, found the end of the "
		  "input" },
		{ "computed('c') and audience('a')",
		  "line 1, column 15: type error: computed('c') is a value, not a condition; expected "
		  "a comparison, in (...), .exists() or .contains() after it, found 'and'" },
		{ "trait('a') = null",
		  "line 1, column 14: type error: nothing compares with null; test presence with "
		  "trait('a').exists() or not trait('a').exists()" },
		{ "trait('a') < true",
		  "line 1, column 14: type error: true can only be compared with = or !=" },
		{ "computed('a') >= false",
		  "line 1, column 18: type error: false can only be compared with = or !=" },
		{ "trait('a') in ('x', 1)",
		  "line 1, column 21: type error: in (...) mixes strings and numbers; a list holds "
		  "values of one type" },
		{ "trait('a') in (1, 'x')",
		  "line 1, column 19: type error: in (...) mixes strings and numbers; a list holds "
		  "values of one type" },
		{ "trait('a') in (true)",
		  "line 1, column 16: type error: in (...) takes strings or numbers, found true" },
		{ "trait('a') in ('x', null)",
		  "line 1, column 21: type error: in (...) takes strings or numbers, found null" },
		{ "trait('tags').contains(3)",
		  "line 1, column 24: type error: contains() takes a string, found a number" },
		{ "trait('tags').contains(true)",
		  "line 1, column 24: type error: contains() takes a string, found true" },
		{ "audience('vip') = true",
		  "line 1, column 17: type error: the condition before '=' is already true or false "
		  "and cannot be compared (negate it with not)" },
		{ "trait('a').exists() = false",
		  "line 1, column 21: type error: the condition before '=' is already true or false "
		  "and cannot be compared (negate it with not)" },
		{ "event('X').exists() >= 1",
		  "line 1, column 21: type error: the condition before '>=' is already true or false "
		  "and cannot be compared (negate it with not)" },
		{ "(trait('a') = 1) in (1)",
		  "line 1, column 18: type error: the condition before 'in' is already true or false "
		  "and cannot be compared (negate it with not)" },
		{ "trait('a') = 1 = 2",
		  "line 1, column 16: type error: the condition before '=' is already true or false "
		  "and cannot be compared (negate it with not)" },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_error(cases[i].src, WEFT_EINVAL, cases[i].message);
}

static void test_audiences__syntax_errors_say_what_was_expected_and_found(void **state)
{
	static const struct {
		const char *src, *message;
	} cases[] = {
		{ "", "line 1, column 1: expected a condition (trait(), event(), computed(), "
		      "audience(), not or '('), found the end of the input" },
		{ "  \n ", "line 2, column 2: expected a condition (trait(), event(), computed(), "
			   "audience(), not or '('), found the end of the input" },
		{ "event('Order Completed').where(property('total' and",
		  "line 1, column 49: expected ')' after the property name, found 'and'" },
		{ "trait 'a' = 1", "line 1, column 7: expected '(' after trait, found the string 'a'" },
		{ "trait(plan) = 1",
		  "line 1, column 7: expected the trait name as a 'string' in trait(), found 'plan'" },
		{ "trait('') = 1", "line 1, column 7: the trait name is empty" },
		{ "audience('vip'", "line 1, column 15: expected ')' after the audience name, found "
				    "the end of the input" },
		{ "trait('a') = ", "line 1, column 14: expected a value ('text', a number, true or "
			       "false), found the end of the input" },
		{ "trait('a') = pro", "line 1, column 14: expected a value ('text', a number, true or "
				  "false), found 'pro'" },
		{ "trait('a') == 1", "line 1, column 12: '==' is not an operator: use '='" },
		{ "trait('a') <> 1", "line 1, column 12: '<>' is not an operator: use '!='" },
		{ "!audience('a')",
		  "line 1, column 1: '!' is not an operator: use not, or != to compare" },
		{ "audience('a') && audience('b')",
		  "line 1, column 15: unexpected character '&': use and" },
		{ "audience('a') || audience('b')",
		  "line 1, column 15: unexpected character '|': use or" },
		{ "trait(\"a\") = 1", "line 1, column 7: unexpected character '\"': strings are "
				  "written in single quotes, 'like this'" },
		{ "trait(\xe2\x80\x98" "a\xe2\x80\x99) = 1",
		  "line 1, column 7: unexpected character '\xe2\x80\x98': strings are written in "
		  "straight single quotes, 'like this'" },
		{ "audience('a') # note", "line 1, column 15: unexpected character '#'" },
		{ "audience('a')\xc2\xa0or audience('b')",
		  "line 1, column 14: unexpected character U+00A0" },
		{ "trait('a') = 'x", "line 1, column 14: this string is not closed: expected ' before "
				 "the end of the input" },
		{ "trait('a') = 'x\ny'", "line 1, column 14: this string is not closed: expected ' "
				     "before the end of the line" },
		{ "trait('a') = 'x\ty'",
		  "line 1, column 16: a string cannot hold control character U+0009" },
		{ "trait('a') = 'x\\ny'", "line 1, column 16: unknown escape '\\n' in a string: only "
				      "\\' and \\\\ are allowed" },
		{ "trait('a') = 'x\\ y'", "line 1, column 16: a backslash in a string must be "
					"followed by ' or \\" },
		{ "trait('a') = 'x\\", "line 1, column 14: this string is not closed: expected ' "
				   "before the end of the input" },
		{ "trait('a') = - 1", "line 1, column 14: expected a digit after '-' (a negative "
				  "number is written -5)" },
		{ "trait('a') = 1.", "line 1, column 16: expected a digit after the decimal point" },
		{ "trait('a') = .5", "line 1, column 14: expected a value ('text', a number, true or "
				 "false), found '.'" },
		{ "trait('a') = 1e5", "line 1, column 15: expected 'and', 'or' or the end of the "
				  "input, found 'e5'" },
		{ "trait('a').count()", "line 1, column 12: expected exists() or contains() after "
				    "trait('a')., found 'count'" },
		{ "trait('a').exists(1)", "line 1, column 19: expected ')' after exists( (it takes no "
				      "arguments), found the number 1" },
		{ "trait('a') in 'x'", "line 1, column 15: expected '(' after in, found the string "
				   "'x'" },
		{ "trait('a') in ('x' 'y')", "line 1, column 20: expected ',' or ')' in the in (...) "
					 "list, found the string 'y'" },
		{ "trait('a') in ()", "line 1, column 16: expected a value ('text', a number, true or "
				  "false), found ')'" },
		{ "event('X').foo()", "line 1, column 12: expected where(), within(), between(), "
				  "exists(), count(), sum(), avg(), min() or max() after "
				  "event('X')., found 'foo'" },
		{ "event('X').count(property('a')) > 1",
		  "line 1, column 18: count() takes no arguments, found 'property'" },
		{ "event('X').sum('total') > 1", "line 1, column 16: expected property('name') in "
					     "sum(), found the string 'total'" },
		{ "event('X').sum(property('total') > 1", "line 1, column 34: expected ')' to close "
						      "sum(, found '>'" },
		{ "event('X').where(property('a') = 1).where(property('b') = 1).exists()",
		  "line 1, column 37: event('X') already has a where(); join its conditions with and "
		  "in one" },
		{ "event('X').within(1 day).between('2026-01-01', '2026-02-01').exists()",
		  "line 1, column 26: event('X') already has a time window; use one within() or "
		  "between()" },
		{ "event('X').where(property('a') = 1 audience('b')).exists()",
		  "line 1, column 36: expected 'and', 'or' or ')' to close the where( at line 1, "
		  "column 12, found 'audience'" },
		{ "event('X').where().exists()", "line 1, column 18: expected a condition on an event "
					     "property (property('name') ..., not or '('), found ')'" },
		{ "event('X').where(trait('a') = 1).exists()",
		  "line 1, column 18: where() takes conditions on property('name'), found 'trait'" },
		{ "event('X').where(event('Y').exists()).exists()",
		  "line 1, column 18: where() takes conditions on property('name'), found 'event'" },
		{ "property('total') > 1", "line 1, column 1: property() can only be used inside an "
				       "event's where(), or in sum(), avg(), min() and max()" },
		{ "event('X').count().within(3 days) >= 1",
		  "line 1, column 19: nothing can follow count(): where(), within() and between() "
		  "come before it" },
		{ "event('X').exists().within(3 days)",
		  "line 1, column 20: nothing can follow exists(): where(), within() and between() "
		  "come before it" },
		{ "event('X').within(days).exists()", "line 1, column 19: expected a number of days "
						  "or hours in within(), found 'days'" },
		{ "event('X').within(0 days).exists()", "line 1, column 19: within() takes a whole "
						    "number of days or hours above zero, found the "
						    "number 0" },
		{ "event('X').within(-3 days).exists()", "line 1, column 19: within() takes a whole "
						     "number of days or hours above zero, found "
						     "the number -3" },
		{ "event('X').within(1.5 days).exists()", "line 1, column 19: within() takes a whole "
						      "number of days or hours above zero, found "
						      "the number 1.5" },
		{ "event('X').within(3 weeks).exists()", "line 1, column 21: expected days or hours "
						     "after the number in within(), found 'weeks'" },
		{ "event('X').within(3 days.exists()", "line 1, column 25: expected ')' to close "
						   "within(, found '.'" },
		{ "event('X').between('2026-01-01').exists()", "line 1, column 32: expected ',' after "
							   "the first date in between(, found ')'" },
		{ "event('X').between('2026-01-01', '2026-02-01', '2026-03-01').exists()",
		  "line 1, column 46: expected ')' after the second date in between(, found ','" },
		{ "trait('tags').contains('a', 'b')", "line 1, column 27: expected ')' after the "
						      "string in contains(, found ','" },
		{ "event('X').between(2026, '2027-01-01').exists()",
		  "line 1, column 20: expected a date as a 'string' in between(), found the number "
		  "2026" },
		{ "event('X').between('2026-02-30', '2027-01-01').exists()",
		  "line 1, column 20: '2026-02-30' is not a date; expected 'YYYY-MM-DD' or an RFC 3339 "
		  "time such as '2026-01-01T00:00:00Z'" },
		{ "event('X').between('2026-01-01', '2026-01-01T10:00:00').exists()",
		  "line 1, column 34: '2026-01-01T10:00:00' is not a date; expected 'YYYY-MM-DD' or an "
		  "RFC 3339 time such as '2026-01-01T00:00:00Z'" },
		{ "event('X').between('2026-02-01', '2026-01-01').exists()",
		  "line 1, column 34: between() needs its first date before its second" },
		{ "event('X').between('2026-01-01T01:00:00+01:00', '2026-01-01').exists()",
		  "line 1, column 49: between() needs its first date before its second" },
		{ "audience('a') audience('b')", "line 1, column 15: expected 'and', 'or' or the end "
					     "of the input, found 'audience'" },
		{ "(audience('a')", "line 1, column 15: expected 'and', 'or' or ')' to close the '(' "
				"at line 1, column 1, found the end of the input" },
		{ "audience('a'))", "line 1, column 14: expected 'and', 'or' or the end of the input, "
				"found ')'" },
		{ "not", "line 1, column 4: expected a condition (trait(), event(), computed(), "
			 "audience(), not or '('), found the end of the input" },
		{ "audience('a') and", "line 1, column 18: expected a condition (trait(), event(), "
				   "computed(), audience(), not or '('), found the end of the input" },
		{ "18 <= trait('age')", "line 1, column 1: expected a condition (trait(), event(), "
				    "computed(), audience(), not or '('), found the number 18" },
		{ "trait('a') = 'a very long string that goes on and on and on'x",
		  "line 1, column 61: expected 'and', 'or' or the end of the input, found 'x'" },
		{ "trait('a') = 1 'a very long string that goes on and on and on'",
		  "line 1, column 16: expected 'and', 'or' or the end of the input, found the string "
		  "'a very long string that goes on ...'" },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_error(cases[i].src, WEFT_EINVAL, cases[i].message);
}

static void test_audiences__error_positions_count_characters_across_lines(void **state)
{
	(void)state;

	/* Two-, three- and four-byte characters before the error each count as one column. */
	assert_error("trait('plan') = 'pro' and\n"
		     "  trait('städte') = 'Zürich' or\n"
		     "  trait('日本') = '東京' and 🎉",
		     WEFT_EINVAL,
		     "line 3, column 26: unexpected character '🎉'");
	assert_error("trait('plan') = 'pro' and\n"
		     "  event('Bestellung abgeschlossen').where(property('Gesamtsumme' and\n",
		     WEFT_EINVAL,
		     "line 2, column 66: expected ')' after the property name, found 'and'");
	/* A tab is one column; CRLF ends a line as LF does. */
	assert_error("audience('a')\r\n\tand trait('ü') = 'x' or", WEFT_EINVAL,
		     "line 2, column 25: expected a condition (trait(), event(), computed(), "
		     "audience(), not or '('), found the end of the input");
	assert_error("audience('ä')\n\n\n     and trait('é') = null", WEFT_EINVAL,
		     "line 4, column 23: type error: nothing compares with null; test presence with "
		     "trait('é').exists() or not trait('é').exists()");

	/* The byte offset is given too. */
	struct audience_expr *e;
	struct audience_error err;
	const char *src = "trait('ü') = 1 or\n  x";

	assert_int_equal(audience_parse(src, strlen(src), &e, &err), WEFT_EINVAL);
	assert_int_equal(err.line, 2);
	assert_int_equal(err.column, 3);
	assert_int_equal(err.offset, strlen("trait('ü') = 1 or\n  "));
	/* Nodes keep their positions for later stages. */
	e = parse_ok("audience('ü') or\n  trait('é') = 1");
	assert_int_equal(kid(e, root(e), 1)->line, 2);
	assert_int_equal(kid(e, root(e), 1)->column, 3);
	audience_expr_free(e);
}

static void test_audiences__invalid_utf8_and_nul_are_reported_where_they_are(void **state)
{
	static const char bad[] = "trait('é') = 'a\xff'";
	static const char overlong[] = "audience('\xc0\xaf')";
	static const char nul[] = "audience('a')\0 or audience('b')";
	static const char nul_in_string[] = "audience('a\0')";
	(void)state;

	assert_error_n(bad, sizeof(bad) - 1, WEFT_EINVAL,
		       "line 1, column 16: the text is not valid UTF-8 (byte 0xff)");
	assert_error_n(overlong, sizeof(overlong) - 1, WEFT_EINVAL,
		       "line 1, column 11: the text is not valid UTF-8 (byte 0xc0)");
	assert_error_n(nul, sizeof(nul) - 1, WEFT_EINVAL,
		       "line 1, column 14: unexpected character U+0000");
	assert_error_n(nul_in_string, sizeof(nul_in_string) - 1, WEFT_EINVAL,
		       "line 1, column 12: a string cannot hold control character U+0000");
	/* Only len bytes are read: what follows does not count. */
	struct audience_expr *e;
	struct audience_error err;

	assert_int_equal(audience_parse("audience('a') garbage", 13, &e, &err), 0);
	audience_expr_free(e);
	assert_int_equal(audience_parse(NULL, 0, &e, &err), WEFT_EINVAL);
	assert_null(e);
	/* The error argument may be NULL. */
	assert_int_equal(audience_parse("x", 1, &e, NULL), WEFT_EINVAL);
}

/* ---- limits ---- */

static void test_audiences__source_length_is_limited(void **state)
{
	struct buf b = BUF_INIT;
	struct audience_expr *e;
	struct audience_error err;
	(void)state;

	/* Exactly the limit parses (padded with spaces); one byte more does not. */
	buf_adds(&b, "audience('a')");
	while (b.len < AUDIENCE_MAX_SOURCE)
		buf_addc(&b, ' ');
	assert_int_equal(audience_parse(b.data, b.len, &e, &err), 0);
	audience_expr_free(e);
	buf_addc(&b, ' ');
	assert_error_n(b.data, b.len, WEFT_ETOOBIG,
		       "line 1, column 1: the definition is 65537 bytes; at most 65536 are allowed");
	buf_release(&b);
}

static void test_audiences__nesting_depth_is_limited(void **state)
{
	struct buf b = BUF_INIT;
	char *open, *close, *nots;
	(void)state;

	/* 64 levels of parentheses parse; 65 do not. */
	open = repeat("(", 64);
	close = repeat(")", 64);
	buf_printf(&b, "%saudience('a')%s", open, close);
	assert_prints(b.data, "audience('a')");
	buf_reset(&b);
	buf_printf(&b, "(%saudience('a')%s)", open, close);
	assert_error(b.data, WEFT_ETOOBIG,
		     "line 1, column 65: conditions are nested more than 64 deep (parentheses, not "
		     "and where())");
	free(open);
	free(close);

	/* not counts, and so does where(). */
	nots = repeat("not ", 64);
	buf_reset(&b);
	buf_printf(&b, "%saudience('a')", nots);
	free(print_of(b.data));
	buf_reset(&b);
	buf_printf(&b, "not %saudience('a')", nots);
	assert_error(b.data, WEFT_ETOOBIG,
		     "line 1, column 257: conditions are nested more than 64 deep (parentheses, not "
		     "and where())");
	free(nots);
	nots = repeat("not ", 63);
	buf_reset(&b);
	buf_printf(&b, "event('X').where(%sproperty('a') = 1).exists()", nots);
	free(print_of(b.data));
	buf_reset(&b);
	buf_printf(&b, "not event('X').where(%sproperty('a') = 1).exists()", nots);
	assert_error(b.data, WEFT_ETOOBIG,
		     "line 1, column 270: conditions are nested more than 64 deep (parentheses, not "
		     "and where())");
	free(nots);

	/* Far past the limit is the same error, not a stack overflow. */
	open = repeat("(", 200000);
	assert_int_equal(strlen(open), 200000);
	struct audience_expr *e;
	struct audience_error err;

	assert_int_equal(audience_parse(open, AUDIENCE_MAX_SOURCE, &e, &err), WEFT_ETOOBIG);
	assert_int_equal(err.column, 65);
	free(open);
	nots = repeat("not ", AUDIENCE_MAX_SOURCE / 4);
	assert_int_equal(audience_parse(nots, AUDIENCE_MAX_SOURCE, &e, &err), WEFT_ETOOBIG);
	free(nots);
	buf_release(&b);
}

static void test_audiences__list_length_is_limited(void **state)
{
	struct buf b = BUF_INIT;
	struct audience_expr *e;
	(void)state;

	buf_adds(&b, "trait('n') in (0");
	for (int i = 1; i < AUDIENCE_MAX_LIST; i++)
		buf_printf(&b, ", %d", i);
	buf_addc(&b, ')');
	e = parse_ok(b.data);
	assert_int_equal(root(e)->nlit, AUDIENCE_MAX_LIST);
	assert_lit_number(e, root(e)->lit + 999, 999, "999");
	audience_expr_free(e);
	b.len--;
	buf_adds(&b, ", 1000)");
	assert_error(b.data, WEFT_ETOOBIG,
		     "line 1, column 4906: in (...) has more than 1000 values");
	buf_release(&b);
}

static void test_audiences__names_strings_and_numbers_are_limited(void **state)
{
	struct buf b = BUF_INIT;
	char *name = repeat("n", AUDIENCE_MAX_NAME), *str = repeat("s", AUDIENCE_MAX_STRING);
	char *multi = repeat("é", AUDIENCE_MAX_NAME / 2);
	(void)state;

	buf_printf(&b, "trait('%s') = '%s'", name, str);
	free(print_of(b.data));
	buf_reset(&b);
	buf_printf(&b, "trait('%sn') = 1", name);
	assert_error(b.data, WEFT_ETOOBIG,
		     "line 1, column 7: the trait name is 256 bytes; at most 255 are allowed");
	/* Names are counted in bytes: 127 two-byte characters fit, 128 do not. */
	buf_reset(&b);
	buf_printf(&b, "event('%s').exists()", multi);
	free(print_of(b.data));
	buf_reset(&b);
	buf_printf(&b, "event('%sé').exists()", multi);
	assert_error(b.data, WEFT_ETOOBIG,
		     "line 1, column 7: the event name is 256 bytes; at most 255 are allowed");
	buf_reset(&b);
	buf_printf(&b, "event('X').where(property('%sn') = 1).exists()", name);
	assert_error(b.data, WEFT_ETOOBIG,
		     "line 1, column 27: the property name is 256 bytes; at most 255 are allowed");
	buf_reset(&b);
	buf_printf(&b, "computed('%sn') = 1", name);
	assert_error(b.data, WEFT_ETOOBIG,
		     "line 1, column 10: the computed name is 256 bytes; at most 255 are allowed");
	buf_reset(&b);
	buf_printf(&b, "audience('%sn')", name);
	assert_error(b.data, WEFT_ETOOBIG,
		     "line 1, column 10: the audience name is 256 bytes; at most 255 are allowed");
	buf_reset(&b);
	buf_printf(&b, "trait('a') = '%ss'", str);
	assert_error(b.data, WEFT_ETOOBIG,
		     "line 1, column 14: a string is longer than 4096 bytes");
	/* An escape counts as the one byte it stands for. */
	buf_reset(&b);
	buf_printf(&b, "trait('a') = '%s'", str);
	b.data[14] = '\\';
	b.data[15] = '\'';
	b.len = 14;
	buf_printf(&b, "\\'%s'", str + 2);
	free(print_of(b.data));

	assert_prints("trait('a') = -1234567890123456789012345678901234567.8",
		      "trait('a') = -1234567890123456789012345678901234567.8");
	assert_error("trait('a') = -1234567890123456789012345678901234567.89", WEFT_ETOOBIG,
		     "line 1, column 14: a number is longer than 40 characters");

	/* within() reaches back ten years, in days or hours. */
	assert_prints("event('X').within(3650 days).exists()",
		      "event('X').within(3650 days).exists()");
	assert_prints("event('X').within(87600 hours).exists()",
		      "event('X').within(87600 hours).exists()");
	assert_error("event('X').within(3651 days).exists()", WEFT_EINVAL,
		     "line 1, column 19: within() reaches back at most 3650 days (87600 hours), "
		     "found 3651 days");
	assert_error("event('X').within(87601 hours).exists()", WEFT_EINVAL,
		     "line 1, column 19: within() reaches back at most 3650 days (87600 hours), "
		     "found 87601 hours");
	assert_error("event('X').within(99999999999999999999999999 days).exists()", WEFT_EINVAL,
		     "line 1, column 19: within() reaches back at most 3650 days (87600 hours), "
		     "found 99999999999999999999999999 days");
	free(name);
	free(str);
	free(multi);
	buf_release(&b);
}

/* ---- dependencies ---- */

static void test_audiences__deps_list_each_dependency_once_in_order(void **state)
{
	struct audience_expr *e = parse_ok(
		"audience('vip') or trait('plan') = 'pro' and computed('orders_90d') >= 2 and "
		"event('Order Completed').where(property('total') > 100).within(30 days).count() >= 3 "
		"or event('Order Completed').within(30 days).exists() "
		"or event('Order Completed').exists() "
		"or event('Order Completed').between('2026-01-01', '2026-02-01').exists() "
		"or event('Added to Cart').within(2 hours).count() > 1 "
		"or not trait('email').exists() or trait('plan') in ('a', 'b') or audience('vip') "
		"or trait('age') >= 18");
	size_t n;
	const struct audience_dep *d = audience_expr_deps(e, &n);
	(void)state;

	assert_int_equal(n, 9);
	assert_int_equal(d[0].kind, AUDIENCE_DEP_TRAIT);
	assert_string_equal(d[0].name_str, "age");
	assert_string_equal(d[1].name_str, "email");
	assert_string_equal(d[2].name_str, "plan");
	assert_str(e, d[2].name, "plan");
	assert_int_equal(d[3].kind, AUDIENCE_DEP_COMPUTED);
	assert_string_equal(d[3].name_str, "orders_90d");
	assert_int_equal(d[4].kind, AUDIENCE_DEP_EVENT);
	assert_string_equal(d[4].name_str, "Added to Cart");
	assert_int_equal(d[4].window, AUDIENCE_WINDOW_WITHIN);
	assert_int_equal(d[4].span_us, INT64_C(2) * 3600 * 1000000);
	assert_string_equal(d[5].name_str, "Order Completed");
	assert_int_equal(d[5].window, AUDIENCE_WINDOW_ALL);
	assert_string_equal(d[6].name_str, "Order Completed");
	assert_int_equal(d[6].window, AUDIENCE_WINDOW_WITHIN);
	assert_int_equal(d[6].span_us, INT64_C(30) * 86400 * 1000000);
	assert_string_equal(d[7].name_str, "Order Completed");
	assert_int_equal(d[7].window, AUDIENCE_WINDOW_BETWEEN);
	assert_int_equal(d[7].from_us, INT64_C(1767225600000000));
	assert_int_equal(d[7].to_us, INT64_C(1769904000000000));
	assert_int_equal(d[8].kind, AUDIENCE_DEP_AUDIENCE);
	assert_string_equal(d[8].name_str, "vip");
	/* Property names are no dependency of their own. */
	for (size_t i = 0; i < n; i++)
		assert_string_not_equal(d[i].name_str, "total");
	audience_expr_free(e);
}

static void test_audiences__deps_of_a_single_condition(void **state)
{
	struct audience_expr *e = parse_ok("event('X').sum(property('v')) > 1");
	size_t n;
	const struct audience_dep *d = audience_expr_deps(e, &n);
	(void)state;

	assert_int_equal(n, 1);
	assert_int_equal(d[0].kind, AUDIENCE_DEP_EVENT);
	assert_string_equal(d[0].name_str, "X");
	assert_int_equal(d[0].window, AUDIENCE_WINDOW_ALL);
	audience_expr_free(e);
}

static void test_audiences__equal_ignores_positions_and_sees_every_difference(void **state)
{
	static const char *const variants[] = {
		"trait('a') = 1",
		"trait('a') = 1.5",
		"trait('a') = '1'",
		"trait('a') != 1",
		"trait('b') = 1",
		"computed('a') = 1",
		"trait('a') in (1)",
		"trait('a') in (1, 2)",
		"trait('a') = true",
		"trait('a') = false",
		"not trait('a') = 1",
		"event('a').exists()",
		"event('a').count() >= 1",
		"event('a').count() > 1",
		"event('a').sum(property('x')) > 1",
		"event('a').sum(property('y')) > 1",
		"event('a').avg(property('x')) > 1",
		"event('a').within(1 day).exists()",
		"event('a').within(24 hours).exists()",
		"event('a').within(2 days).exists()",
		"event('a').between('2026-01-01', '2026-01-02').exists()",
		"event('a').between('2026-01-01T00:00:00Z', '2026-01-02').exists()",
		"event('a').where(property('x') = 1).exists()",
		"audience('a')",
		"audience('a') or audience('b')",
		"audience('a') and audience('b')",
		"audience('b') and audience('a')",
		"audience('a') and audience('b') and audience('c')",
		"(audience('a') and audience('b')) and audience('c')",
	};
	size_t n = sizeof(variants) / sizeof(variants[0]);
	(void)state;

	for (size_t i = 0; i < n; i++) {
		struct audience_expr *a = parse_ok(variants[i]);

		for (size_t j = 0; j < n; j++) {
			struct audience_expr *b = parse_ok(variants[j]);

			if (audience_expr_equal(a, b) != (i == j))
				fail_msg("'%s' and '%s' compare wrongly", variants[i], variants[j]);
			audience_expr_free(b);
		}
		audience_expr_free(a);
	}

	struct audience_expr *a = parse_ok("trait('a') = 1 or audience('b')");
	struct audience_expr *b = parse_ok("\n\n   trait ('a')=01.0\n or\taudience( 'b' )");

	assert_true(audience_expr_equal(a, b));
	audience_expr_free(a);
	audience_expr_free(b);
}

/* ---- random round trips ---- */

struct rng {
	uint64_t s;
};

static uint32_t rnd(struct rng *r, uint32_t n)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return (uint32_t)((r->s >> 11) % n);
}

/*
 * Writes one random expression twice: src with noise (spacing, line
 * breaks, redundant parentheses, leading and trailing zeros, modifiers in
 * any order, singular units) and want, the canonical form this file's
 * model of the printer expects.
 */
struct gen {
	struct rng r;
	struct buf src, want;
};

static void both(struct gen *g, const char *s)
{
	buf_adds(&g->src, s);
	buf_adds(&g->want, s);
}

/* Optional whitespace in src only. */
static void ws(struct gen *g)
{
	static const char *const spaces[] = { "", "", "", " ", "  ", "\n", "\t", "\r\n  " };

	buf_adds(&g->src, spaces[rnd(&g->r, 8)]);
}

/* Required whitespace: at least one in src, exactly one space in want. */
static void sp(struct gen *g)
{
	static const char *const spaces[] = { " ", " ", "  ", "\n", "\t ", "\r\n" };

	buf_adds(&g->src, spaces[rnd(&g->r, 6)]);
	buf_addc(&g->want, ' ');
}

/* Around an operator: optional whitespace in src, one space in want. */
static void op_sp(struct gen *g)
{
	ws(g);
	buf_addc(&g->want, ' ');
}

static void gen_string(struct gen *g)
{
	static const char *const pool[] = {
		"plan", "pro", "Order Completed", "it\\'s", "back\\\\slash", "naïve", "日本",
		"🎉 party", "", "a b c", "x", "DE", "FR", "2026-01-01", "\\'\\'", "Zürich",
	};

	both(g, "'");
	both(g, pool[rnd(&g->r, sizeof(pool) / sizeof(pool[0]))]);
	both(g, "'");
}

static void gen_name(struct gen *g)
{
	static const char *const pool[] = {
		"plan", "age", "email", "tags", "country", "Order Completed", "total",
		"it\\'s", "städte", "日本", "vip", "orders_90d", "a.b", "x",
	};

	both(g, "'");
	both(g, pool[rnd(&g->r, sizeof(pool) / sizeof(pool[0]))]);
	both(g, "'");
}

static void gen_call(struct gen *g, const char *fn)
{
	both(g, fn);
	ws(g);
	both(g, "(");
	ws(g);
	gen_name(g);
	ws(g);
	both(g, ")");
}

static void gen_number(struct gen *g, bool integer_only)
{
	char ipart[16], fpart[16];
	bool neg = rnd(&g->r, 3) == 0;
	bool zero;

	snprintf(ipart, sizeof(ipart), "%u", rnd(&g->r, 4) == 0 ? 0 : rnd(&g->r, 100000));
	fpart[0] = '\0';
	if (!integer_only && rnd(&g->r, 2)) {
		snprintf(fpart, sizeof(fpart), "%03u", rnd(&g->r, 1000));
		for (size_t n = strlen(fpart); n > 0 && fpart[n - 1] == '0'; n--)
			fpart[n - 1] = '\0';
	}
	zero = !strcmp(ipart, "0") && !fpart[0];
	if (neg)
		buf_addc(&g->src, '-');
	if (neg && !zero)
		buf_addc(&g->want, '-');
	for (uint32_t z = rnd(&g->r, 4) == 0 ? rnd(&g->r, 3) + 1 : 0; z > 0; z--)
		buf_addc(&g->src, '0');
	both(g, ipart);
	if (fpart[0]) {
		both(g, ".");
		both(g, fpart);
	}
	if (!integer_only && rnd(&g->r, 4) == 0) {
		if (!fpart[0])
			buf_addc(&g->src, '.');
		buf_adds(&g->src, "00");
	}
}

static void gen_value_test(struct gen *g)
{
	static const char *const ops[] = { "=", "!=", "<", "<=", ">", ">=" };

	switch (rnd(&g->r, 6)) {
	case 0:
	case 1: {
		uint32_t op = rnd(&g->r, 6);
		uint32_t type = rnd(&g->r, 3);

		if (type == 2)
			op = rnd(&g->r, 2);
		op_sp(g);
		both(g, ops[op]);
		op_sp(g);
		if (type == 0)
			gen_string(g);
		else if (type == 1)
			gen_number(g, false);
		else
			both(g, rnd(&g->r, 2) ? "true" : "false");
		break;
	}
	case 2: {
		bool strings = rnd(&g->r, 2);
		uint32_t n = rnd(&g->r, 4) + 1;

		sp(g);
		both(g, "in");
		op_sp(g);
		both(g, "(");
		for (uint32_t i = 0; i < n; i++) {
			if (i) {
				ws(g);
				both(g, ",");
				op_sp(g);
			}
			ws(g);
			if (strings)
				gen_string(g);
			else
				gen_number(g, false);
			ws(g);
		}
		both(g, ")");
		break;
	}
	case 3:
		ws(g);
		both(g, ".");
		ws(g);
		both(g, "exists");
		ws(g);
		both(g, "(");
		ws(g);
		both(g, ")");
		break;
	default:
		ws(g);
		both(g, ".");
		ws(g);
		both(g, "contains");
		ws(g);
		both(g, "(");
		ws(g);
		gen_string(g);
		ws(g);
		both(g, ")");
		break;
	}
}

enum gkind { G_OR, G_AND, G_NOT, G_LEAF };

static enum gkind gen_cond(struct gen *g, int depth, bool in_where);

/* A modifier of an event, written into src and want (want in canonical order). */
static void gen_window(struct gen *g, struct buf *src, struct buf *want)
{
	static const char *const dates[][2] = {
		{ "2026-01-01", "2026-02-01" },
		{ "2025-12-31T23:59:59Z", "2026-01-01" },
		{ "2024-02-29T00:00:00.5+01:00", "2024-03-01T00:00:00.25-01:00" },
		{ "1999-01-01", "2038-01-19T03:14:08z" },
	};
	struct buf s = g->src, w = g->want;

	g->src = *src;
	g->want = *want;
	ws(g);
	both(g, ".");
	ws(g);
	if (rnd(&g->r, 2)) {
		bool days = rnd(&g->r, 2);
		uint32_t n = rnd(&g->r, 3) == 0 ? 1 : rnd(&g->r, days ? 3650 : 87600) + 1;
		char num[32];

		both(g, "within");
		ws(g);
		both(g, "(");
		ws(g);
		if (rnd(&g->r, 5) == 0)
			buf_adds(&g->src, "00");
		snprintf(num, sizeof(num), "%u", n);
		both(g, num);
		sp(g);
		buf_adds(&g->src, days ? "day" : "hour");
		if (rnd(&g->r, 2))
			buf_addc(&g->src, 's');
		buf_adds(&g->want, days ? "day" : "hour");
		if (n != 1)
			buf_addc(&g->want, 's');
		ws(g);
		both(g, ")");
	} else {
		uint32_t d = rnd(&g->r, 4);

		both(g, "between");
		ws(g);
		both(g, "(");
		ws(g);
		both(g, "'");
		both(g, dates[d][0]);
		both(g, "'");
		ws(g);
		both(g, ",");
		op_sp(g);
		both(g, "'");
		both(g, dates[d][1]);
		both(g, "')");
	}
	*src = g->src;
	*want = g->want;
	g->src = s;
	g->want = w;
}

static void gen_where(struct gen *g, int depth, struct buf *src, struct buf *want)
{
	struct buf s = g->src, w = g->want;

	g->src = *src;
	g->want = *want;
	ws(g);
	both(g, ".");
	ws(g);
	both(g, "where");
	ws(g);
	both(g, "(");
	ws(g);
	gen_cond(g, depth, true);
	ws(g);
	both(g, ")");
	*src = g->src;
	*want = g->want;
	g->src = s;
	g->want = w;
}

static void gen_event(struct gen *g, int depth)
{
	static const char *const ops[] = { "=", "!=", "<", "<=", ">", ">=" };
	static const char *const aggs[] = { "sum", "avg", "min", "max" };
	struct buf wsrc = BUF_INIT, wwant = BUF_INIT, msrc = BUF_INIT, mwant = BUF_INIT;
	bool where = depth > 0 && rnd(&g->r, 2), window = rnd(&g->r, 2);

	gen_call(g, "event");
	if (where)
		gen_where(g, depth - 1, &wsrc, &wwant);
	if (window)
		gen_window(g, &msrc, &mwant);
	/* Either order in src; where() first in want. */
	if (rnd(&g->r, 2)) {
		if (where)
			buf_add(&g->src, wsrc.data, wsrc.len);
		if (window)
			buf_add(&g->src, msrc.data, msrc.len);
	} else {
		if (window)
			buf_add(&g->src, msrc.data, msrc.len);
		if (where)
			buf_add(&g->src, wsrc.data, wsrc.len);
	}
	if (where)
		buf_add(&g->want, wwant.data, wwant.len);
	if (window)
		buf_add(&g->want, mwant.data, mwant.len);
	buf_release(&wsrc);
	buf_release(&wwant);
	buf_release(&msrc);
	buf_release(&mwant);

	ws(g);
	both(g, ".");
	ws(g);
	switch (rnd(&g->r, 3)) {
	case 0:
		both(g, "exists");
		ws(g);
		both(g, "(");
		ws(g);
		both(g, ")");
		return;
	case 1:
		both(g, "count");
		ws(g);
		both(g, "(");
		ws(g);
		both(g, ")");
		break;
	default:
		both(g, aggs[rnd(&g->r, 4)]);
		ws(g);
		both(g, "(");
		ws(g);
		gen_call(g, "property");
		ws(g);
		both(g, ")");
		break;
	}
	op_sp(g);
	both(g, ops[rnd(&g->r, 6)]);
	op_sp(g);
	gen_number(g, false);
}

static enum gkind gen_leaf(struct gen *g, int depth, bool in_where)
{
	if (in_where) {
		gen_call(g, "property");
		gen_value_test(g);
		return G_LEAF;
	}
	switch (rnd(&g->r, 5)) {
	case 0:
		gen_call(g, "trait");
		gen_value_test(g);
		break;
	case 1:
		gen_call(g, "computed");
		gen_value_test(g);
		break;
	case 2:
		gen_call(g, "audience");
		break;
	default:
		gen_event(g, depth);
		break;
	}
	return G_LEAF;
}

/*
 * An operand of a chain of kind parent (G_OR, G_AND) or of not (G_NOT):
 * parentheses in want where the model printer puts them, in src then too,
 * and sometimes where they are redundant.
 */
static void gen_operand(struct gen *g, int depth, bool in_where, enum gkind parent)
{
	struct buf s = g->src, w = g->want;
	struct buf ksrc = BUF_INIT, kwant = BUF_INIT;
	enum gkind k;
	bool need, extra;

	g->src = ksrc;
	g->want = kwant;
	k = gen_cond(g, depth, in_where);
	ksrc = g->src;
	kwant = g->want;
	g->src = s;
	g->want = w;
	need = k == G_OR || (parent != G_OR && k == G_AND);
	extra = !need && rnd(&g->r, 5) == 0;
	if (need || extra) {
		buf_addc(&g->src, '(');
		ws(g);
	}
	if (need)
		buf_addc(&g->want, '(');
	buf_add(&g->src, ksrc.data, ksrc.len);
	buf_add(&g->want, kwant.data, kwant.len);
	if (need || extra) {
		ws(g);
		buf_addc(&g->src, ')');
	}
	if (need)
		buf_addc(&g->want, ')');
	buf_release(&ksrc);
	buf_release(&kwant);
}

static enum gkind gen_cond(struct gen *g, int depth, bool in_where)
{
	uint32_t pick = depth > 0 ? rnd(&g->r, 7) : 6;

	if (pick <= 1) {
		enum gkind kind = pick == 0 ? G_OR : G_AND;
		uint32_t n = rnd(&g->r, 3) + 2;

		for (uint32_t i = 0; i < n; i++) {
			if (i) {
				sp(g);
				both(g, kind == G_OR ? "or" : "and");
				sp(g);
			}
			gen_operand(g, depth - 1, in_where, kind);
		}
		return kind;
	}
	if (pick == 2) {
		both(g, "not");
		sp(g);
		gen_operand(g, depth - 1, in_where, G_NOT);
		return G_NOT;
	}
	return gen_leaf(g, depth, in_where);
}

static void test_audiences__print_parse_round_trip_on_random_expressions(void **state)
{
	struct gen g = { .r = { UINT64_C(0x9e3779b97f4a7c15) } };
	unsigned with_noise = 0;
	(void)state;

	for (int i = 0; i < 600; i++) {
		struct audience_expr *e, *e2;
		struct audience_error err;
		struct buf out = BUF_INIT, out2 = BUF_INIT;

		buf_init(&g.src);
		buf_init(&g.want);
		gen_cond(&g, (int)rnd(&g.r, 6), false);
		if (audience_parse(g.src.data, g.src.len, &e, &err) != 0)
			fail_msg("generated '%s' does not parse: %s", g.src.data, err.message);
		audience_expr_print(e, &out);
		if (strcmp(out.data, g.want.data) != 0)
			fail_msg("'%s'\n  prints as '%s'\n  not as    '%s'", g.src.data, out.data,
				 g.want.data);
		if (strcmp(g.src.data, g.want.data) != 0)
			with_noise++;
		if (audience_parse(out.data, out.len, &e2, &err) != 0)
			fail_msg("printed '%s' does not parse: %s", out.data, err.message);
		assert_true(audience_expr_equal(e, e2));
		assert_true(audience_expr_equal(e2, e));
		audience_expr_print(e2, &out2);
		assert_string_equal(out.data, out2.data);

		/* Both have the same dependencies, and kids come before parents. */
		size_t n1, n2;
		const struct audience_dep *d1 = audience_expr_deps(e, &n1), *d2 = audience_expr_deps(e2, &n2);

		assert_int_equal(n1, n2);
		for (size_t j = 0; j < n1; j++) {
			assert_int_equal(d1[j].kind, d2[j].kind);
			assert_string_equal(d1[j].name_str, d2[j].name_str);
			assert_int_equal(d1[j].window, d2[j].window);
			assert_int_equal(d1[j].span_us, d2[j].span_us);
			assert_int_equal(d1[j].from_us, d2[j].from_us);
			assert_int_equal(d1[j].to_us, d2[j].to_us);
		}
		assert_int_equal(audience_expr_root(e), audience_expr_nodes(e) - 1);
		for (uint32_t id = 0; id < audience_expr_nodes(e); id++)
			for (uint32_t k = audience_expr_node(e, id)->kid; k != AUDIENCE_NONE;
			     k = audience_expr_node(e, k)->next)
				assert_true(k < id);

		audience_expr_free(e);
		audience_expr_free(e2);
		buf_release(&out);
		buf_release(&out2);
		buf_release(&g.src);
		buf_release(&g.want);
	}
	assert_true(with_noise > 300);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_audiences__trait_comparisons_are_typed_by_their_literal),
		cmocka_unit_test(test_audiences__trait_in_exists_and_contains),
		cmocka_unit_test(test_audiences__event_count_with_where_and_within),
		cmocka_unit_test(test_audiences__event_aggregations_take_a_property),
		cmocka_unit_test(test_audiences__event_exists_is_a_condition_without_comparison),
		cmocka_unit_test(test_audiences__between_reads_dates_and_rfc3339_times),
		cmocka_unit_test(test_audiences__computed_traits_and_audiences),
		cmocka_unit_test(test_audiences__and_binds_tighter_than_or),
		cmocka_unit_test(test_audiences__parentheses_group_and_chains_are_one_node),
		cmocka_unit_test(test_audiences__not_applies_to_one_condition),
		cmocka_unit_test(test_audiences__kids_come_before_their_parent_and_the_root_is_last),
		cmocka_unit_test(test_audiences__names_are_interned),
		cmocka_unit_test(test_audiences__literals_are_normalised),
		cmocka_unit_test(test_audiences__keywords_are_lower_case),
		cmocka_unit_test(test_audiences__type_errors_are_reported_at_definition),
		cmocka_unit_test(test_audiences__syntax_errors_say_what_was_expected_and_found),
		cmocka_unit_test(test_audiences__error_positions_count_characters_across_lines),
		cmocka_unit_test(test_audiences__invalid_utf8_and_nul_are_reported_where_they_are),
		cmocka_unit_test(test_audiences__source_length_is_limited),
		cmocka_unit_test(test_audiences__nesting_depth_is_limited),
		cmocka_unit_test(test_audiences__list_length_is_limited),
		cmocka_unit_test(test_audiences__names_strings_and_numbers_are_limited),
		cmocka_unit_test(test_audiences__deps_list_each_dependency_once_in_order),
		cmocka_unit_test(test_audiences__deps_of_a_single_condition),
		cmocka_unit_test(test_audiences__equal_ignores_positions_and_sees_every_difference),
		cmocka_unit_test(test_audiences__print_parse_round_trip_on_random_expressions),
	};

	return cmocka_run_group_tests_name("audiences", tests, NULL, NULL);
}
