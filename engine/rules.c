/*
 * A workspace's identity rules as JSON, the document GET/PUT
 * /v1/admin/identity-rules exchange and identity_rules stores:
 *
 *   {"types": {"user_id": {"priority": 1, "limit": 1},
 *              "email": {"priority": 2, "limit": 5, "window_days": 365}},
 *    "max_merges": 100, "max_identifiers": 1000}
 *
 * A document replaces the rules: types it leaves out keep Segment's
 * defaults (docs/identity.md). Every error names the member at fault.
 */
#include "engine/engine_int.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/err.h"

#define PRIORITY_MAX 1000000

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return WEFT_EINVAL;
}

/* An integer member in [lo, hi], or the default when absent. */
static int get_uint(json_t *obj, const char *key, const char *where, json_int_t lo,
		    json_int_t hi, uint32_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return fail(err, errlen, "%s%s must be an integer from %lld to %lld", where, key,
			    (long long)lo, (long long)hi);
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

static int parse_type(struct identity_rules *r, const char *name, json_t *spec, char *err,
		      size_t errlen)
{
	char where[IDENTITY_TYPE_NAME_MAX + 16];
	const char *key;
	json_t *v;
	uint32_t priority = 0, limit, window = 0;
	int t;

	snprintf(where, sizeof(where), "types.%s.", name);
	if (!identity_type_name_ok(name))
		return fail(err, errlen, "types.%s: a type name is 1 to %d characters of a-z, 0-9, "
			    "'_', '.' and '-'", name, IDENTITY_TYPE_NAME_MAX);
	if (strcmp(name, "group_id") == 0)
		return fail(err, errlen, "types.group_id: group_id links accounts and is not an "
			    "identifier; it has no rule");
	if (!json_is_object(spec))
		return fail(err, errlen, "types.%s must be an object", name);
	json_object_foreach(spec, key, v) {
		if (strcmp(key, "priority") && strcmp(key, "limit") && strcmp(key, "window_days"))
			return fail(err, errlen, "%s%s is not a rule setting (priority, limit, "
				    "window_days)", where, key);
	}
	if ((t = identity_rules_type(r, name)) < 0)
		return fail(err, errlen, "types.%s: too many types", name);
	limit = t == IDENTITY_TYPE_USER_ID ? 1 : 5;
	if (get_uint(spec, "priority", where, 1, PRIORITY_MAX, &priority, err, errlen) ||
	    get_uint(spec, "limit", where, 0, IDENTITY_LIMIT_MAX, &limit, err, errlen) ||
	    get_uint(spec, "window_days", where, 0, IDENTITY_WINDOW_MAX_DAYS, &window, err, errlen))
		return WEFT_EINVAL;
	if (window && !limit)
		return fail(err, errlen, "%swindow_days needs a limit", where);
	identity_rules_set_limit(r, name, limit, window);
	if (priority)
		identity_rules_set_priority(r, name, priority);
	return 0;
}

static int parse_doc(struct identity_rules *r, json_t *doc, char *err, size_t errlen)
{
	uint32_t merges = 100, ids = 1000;
	const char *key;
	json_t *v, *types;

	if (!json_is_object(doc))
		return fail(err, errlen, "the rules must be a JSON object");
	json_object_foreach(doc, key, v) {
		if (strcmp(key, "types") && strcmp(key, "max_merges") &&
		    strcmp(key, "max_identifiers"))
			return fail(err, errlen, "%s is not a member of the rules (types, "
				    "max_merges, max_identifiers)", key);
	}
	types = json_object_get(doc, "types");
	if (types && !json_is_object(types))
		return fail(err, errlen, "types must be an object of type name to rule");
	json_object_foreach(types, key, v) {
		int rc = parse_type(r, key, v, err, errlen);

		if (rc)
			return rc;
	}
	if (get_uint(doc, "max_merges", "", 1, IDENTITY_NODES_MAX, &merges, err, errlen) ||
	    get_uint(doc, "max_identifiers", "", 1, IDENTITY_NODES_MAX, &ids, err, errlen))
		return WEFT_EINVAL;
	identity_rules_set_caps(r, merges, ids);
	return 0;
}

int engine_rules_parse(const char *json, size_t len, struct identity_rules **out,
		       char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	struct identity_rules *r;
	int rc;

	*out = NULL;
	if (!doc)
		return fail(err, errlen, "not valid JSON: %s (line %d, column %d)", jerr.text,
			    jerr.line, jerr.column);
	r = identity_rules_new();
	rc = parse_doc(r, doc, err, errlen);
	json_decref(doc);
	if (rc) {
		identity_rules_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

char *engine_rules_format(const struct identity_graph *g)
{
	json_t *doc = json_object(), *types = json_object();
	uint32_t merges, ids;
	const char *name;
	char *out;

	for (uint16_t t = 0; (name = identity_graph_type_name(g, t)); t++) {
		uint32_t priority, limit, window;
		json_t *spec;

		if (t == IDENTITY_TYPE_GROUP_ID || identity_graph_rule(g, t, &priority, &limit,
								       &window))
			continue;
		spec = json_object();
		json_object_set_new(spec, "priority", json_integer(priority));
		json_object_set_new(spec, "limit", json_integer(limit));
		json_object_set_new(spec, "window_days", json_integer(window));
		json_object_set_new(types, name, spec);
	}
	identity_graph_caps(g, &merges, &ids);
	json_object_set_new(doc, "types", types);
	json_object_set_new(doc, "max_merges", json_integer(merges));
	json_object_set_new(doc, "max_identifiers", json_integer(ids));
	out = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	return out;
}
