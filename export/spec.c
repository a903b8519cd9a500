/*
 * An export job's request: format, mode, fields and destination, checked
 * once when the job is created and read back the same way when it runs.
 */
#include "export/export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audiences/space.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "store/store.h"

#define BATCH_DEFAULT 100
#define BATCH_MAX 1000

static const struct {
	const char *prefix;
	enum export_field_kind kind;
} prefixes[] = {
	{ "identifier:", EXPORT_FIELD_IDENTIFIER },
	{ "trait:", EXPORT_FIELD_TRAIT },
	{ "computed:", EXPORT_FIELD_COMPUTED },
	{ "match_key:", EXPORT_FIELD_MATCH_KEY },
};

/* Names every row carries already (delta rows: change, at, cause). */
static const char *const reserved[] = { "profile_id", "change", "at", "cause" };

void export_spec_release(struct export_spec *s)
{
	for (size_t i = 0; i < s->nfields; i++) {
		free(s->fields[i].name);
		free(s->fields[i].label);
	}
	free(s->fields);
	free(s->url);
	memset(s, 0, sizeof(*s));
}

static bool type_name_ok(const char *s)
{
	if (!*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		      *s == '.' || *s == '-'))
			return false;
	return true;
}

static int parse_field(const char *f, struct export_field *out, char *err, size_t errlen)
{
	for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++) {
		size_t n = strlen(prefixes[p].prefix);
		const char *name = f + n;
		bool ok;

		if (strncmp(f, prefixes[p].prefix, n))
			continue;
		switch (prefixes[p].kind) {
		case EXPORT_FIELD_IDENTIFIER:
			ok = type_name_ok(name);
			break;
		case EXPORT_FIELD_TRAIT:
			ok = *name && strlen(name) <= 200;
			break;
		case EXPORT_FIELD_COMPUTED:
			ok = audience_key_ok(name);
			break;
		default:
			ok = strcmp(name, "email") == 0 || strcmp(name, "phone") == 0;
			if (!ok) {
				snprintf(err, errlen, "field '%s': match keys exist for email and "
					 "phone", f);
				return WEFT_EINVAL;
			}
			break;
		}
		if (!ok) {
			snprintf(err, errlen, "field '%s': '%s' is not a valid name", f, name);
			return WEFT_EINVAL;
		}
		out->kind = prefixes[p].kind;
		out->name = xstrdup(name);
		if (out->kind == EXPORT_FIELD_MATCH_KEY) {
			size_t len = strlen(name) + 8;

			out->label = xmalloc(len);
			snprintf(out->label, len, "%s_sha256", name);
		} else {
			out->label = xstrdup(name);
		}
		return 0;
	}
	snprintf(err, errlen, "field '%s': a field is identifier:<type>, trait:<name>, "
		 "computed:<key> or match_key:email|phone", f);
	return WEFT_EINVAL;
}

static int parse_fields(const json_t *fields, struct export_spec *out, char *err, size_t errlen)
{
	size_t i;
	json_t *v;

	if (!fields)
		return 0;
	if (!json_is_array(fields)) {
		snprintf(err, errlen, "'fields' must be an array of strings");
		return WEFT_EINVAL;
	}
	if (json_array_size(fields) > EXPORT_FIELDS_MAX) {
		snprintf(err, errlen, "'fields' has more than %d members", EXPORT_FIELDS_MAX);
		return WEFT_EINVAL;
	}
	out->fields = xcalloc(json_array_size(fields) + 1, sizeof(*out->fields));
	json_array_foreach(fields, i, v) {
		struct export_field *f = &out->fields[out->nfields];

		if (!json_is_string(v)) {
			snprintf(err, errlen, "fields[%zu] must be a string", i);
			return WEFT_EINVAL;
		}
		if (parse_field(json_string_value(v), f, err, errlen))
			return WEFT_EINVAL;
		out->nfields++;
		for (size_t r = 0; r < sizeof(reserved) / sizeof(reserved[0]); r++)
			if (strcmp(f->label, reserved[r]) == 0) {
				snprintf(err, errlen, "field '%s': every row has '%s' already",
					 json_string_value(v), reserved[r]);
				return WEFT_EINVAL;
			}
		for (size_t k = 0; k + 1 < out->nfields; k++)
			if (strcmp(out->fields[k].label, f->label) == 0) {
				snprintf(err, errlen, "fields[%zu]: two fields would be written as '%s'",
					 i, f->label);
				return WEFT_EINVAL;
			}
	}
	return 0;
}

static bool url_ok(const char *u)
{
	const char *host;

	if (strncmp(u, "http://", 7) == 0)
		host = u + 7;
	else if (strncmp(u, "https://", 8) == 0)
		host = u + 8;
	else
		return false;
	if (!*host || *host == '/' || strlen(u) > EXPORT_URL_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)u; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

/* Checks that obj has only the listed members: 0, or WEFT_EINVAL naming the first other. */
static int only_members(const json_t *obj, const char *what, const char *const *names, size_t n,
			char *err, size_t errlen)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)obj, k, v) {
		size_t i = 0;

		while (i < n && strcmp(k, names[i]))
			i++;
		if (i == n) {
			snprintf(err, errlen, "%s: unknown member '%s'", what, k);
			return WEFT_EINVAL;
		}
	}
	return 0;
}

static int parse_destination(const json_t *d, struct export_spec *out, char *err, size_t errlen)
{
	static const char *const names[] = { "type", "url", "event", "batch_size" };
	const char *type, *event;
	json_t *batch;

	if (!d)
		return 0;
	if (!json_is_object(d) || !(type = json_string_value(json_object_get(d, "type")))) {
		snprintf(err, errlen, "'destination' must be an object with a 'type' (file or "
			 "webhook)");
		return WEFT_EINVAL;
	}
	if (strcmp(type, "file") == 0) {
		if (json_object_size(d) != 1) {
			snprintf(err, errlen, "a file destination takes no other member than "
				 "'type': the file is named by Weft");
			return WEFT_EINVAL;
		}
		return 0;
	}
	if (strcmp(type, "webhook")) {
		snprintf(err, errlen, "destination type '%s' is unknown (file or webhook)", type);
		return WEFT_EINVAL;
	}
	if (only_members(d, "destination", names, 4, err, errlen))
		return WEFT_EINVAL;
	out->webhook = true;
	out->url = xstrdup(json_string_value(json_object_get(d, "url")) ?
			   json_string_value(json_object_get(d, "url")) : "");
	if (!url_ok(out->url)) {
		snprintf(err, errlen, "a webhook destination needs a 'url': http:// or https://, "
			 "at most %d bytes, no spaces", EXPORT_URL_MAX);
		return WEFT_EINVAL;
	}
	event = json_string_value(json_object_get(d, "event"));
	if (json_object_get(d, "event") && (!event || (strcmp(event, "identify") &&
						     strcmp(event, "track")))) {
		snprintf(err, errlen, "destination 'event' is identify or track");
		return WEFT_EINVAL;
	}
	out->track = event && strcmp(event, "track") == 0;
	out->batch_size = BATCH_DEFAULT;
	if ((batch = json_object_get(d, "batch_size"))) {
		if (!json_is_integer(batch) || json_integer_value(batch) < 1 ||
		    json_integer_value(batch) > BATCH_MAX) {
			snprintf(err, errlen, "destination 'batch_size' is a whole number from 1 "
				 "to %d", BATCH_MAX);
			return WEFT_EINVAL;
		}
		out->batch_size = (size_t)json_integer_value(batch);
	}
	return 0;
}

static int parse(const char *format, const char *mode, const json_t *fields,
		 const json_t *destination, struct export_spec *out, char *err, size_t errlen)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (format && strcmp(format, "csv") && strcmp(format, "ndjson")) {
		snprintf(err, errlen, "'format' is csv or ndjson");
		return WEFT_EINVAL;
	}
	out->ndjson = format && strcmp(format, "ndjson") == 0;
	if (mode && strcmp(mode, "full") && strcmp(mode, "delta")) {
		snprintf(err, errlen, "'mode' is full or delta");
		return WEFT_EINVAL;
	}
	out->delta = mode && strcmp(mode, "delta") == 0;
	if ((rc = parse_fields(fields, out, err, errlen)) ||
	    (rc = parse_destination(destination, out, err, errlen)))
		export_spec_release(out);
	return rc;
}

int export_spec_parse(const json_t *body, struct export_spec *out, char **fields_json,
		      char **destination_json, char **destination_key, char *err, size_t errlen)
{
	static const char *const names[] = { "format", "mode", "fields", "destination" };
	json_t *format = json_object_get(body, "format"), *mode = json_object_get(body, "mode");
	json_t *fields, *dest;
	int rc;

	*fields_json = *destination_json = *destination_key = NULL;
	memset(out, 0, sizeof(*out));
	if (!json_is_object(body)) {
		snprintf(err, errlen, "the body must be a JSON object");
		return WEFT_EINVAL;
	}
	if (only_members(body, "the body", names, 4, err, errlen))
		return WEFT_EINVAL;
	if ((format && !json_is_string(format)) || (mode && !json_is_string(mode))) {
		snprintf(err, errlen, "'format' and 'mode' are strings");
		return WEFT_EINVAL;
	}
	if ((rc = parse(json_string_value(format), json_string_value(mode),
			json_object_get(body, "fields"), json_object_get(body, "destination"), out,
			err, errlen)))
		return rc;
	fields = json_array();
	for (size_t i = 0; i < out->nfields; i++) {
		const char *prefix = prefixes[0].prefix;

		for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++)
			if (prefixes[p].kind == out->fields[i].kind)
				prefix = prefixes[p].prefix;
		json_array_append_new(fields, json_sprintf("%s%s", prefix, out->fields[i].name));
	}
	if (out->webhook)
		dest = json_pack("{ss ss ss sI}", "type", "webhook", "url", out->url, "event",
				 out->track ? "track" : "identify", "batch_size",
				 (json_int_t)out->batch_size);
	else
		dest = json_pack("{ss}", "type", "file");
	*fields_json = json_dumps(fields, JSON_COMPACT);
	*destination_json = json_dumps(dest, JSON_COMPACT | JSON_SORT_KEYS);
	if (out->webhook) {
		size_t len = strlen(out->url) + 9;

		*destination_key = xmalloc(len);
		snprintf(*destination_key, len, "webhook %s", out->url);
	} else {
		*destination_key = xstrdup("file");
	}
	json_decref(fields);
	json_decref(dest);
	return 0;
}

int export_spec_of(const struct store_export *x, struct export_spec *out, char *err,
		   size_t errlen)
{
	json_t *fields = json_loads(x->fields_json, 0, NULL);
	json_t *dest = json_loads(x->destination_json, 0, NULL);
	int rc = parse(x->format, x->mode, fields, dest, out, err, errlen);

	json_decref(fields);
	json_decref(dest);
	return rc;
}
