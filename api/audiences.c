/*
 * The audience and computed-trait endpoints (docs/api.md, "Audiences"):
 *
 *   GET, POST              /v1/computed-traits
 *   GET, PUT, DELETE       /v1/computed-traits/{key}
 *   GET, POST              /v1/audiences
 *   GET, PUT, DELETE       /v1/audiences/{key}
 *   GET                    /v1/audiences/{key}/members
 *   POST                   /v1/audiences/preview
 *   PUT                    /v1/admin/clock      (only with WEFT_TEST_CLOCK=1)
 *
 * Reads answer from the engine's memory under its read lock; changes are
 * engine commands (the engine saves the definition, replays the log into
 * what it needs and evaluates it), answered once done.
 */
#include "api/api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audiences/space.h"
#include "engine/engine.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

#define MEMBERS_LIMIT_DEFAULT 100
#define MEMBERS_LIMIT_MAX 1000
#define PREVIEW_SAMPLE 10

static json_t *audience_json(const struct audience_info *in)
{
	return json_pack("{sI ss ss ss sI ss so}", "id", (json_int_t)in->id, "key", in->key,
			 "name", in->name, "definition", in->definition, "size", (json_int_t)in->size,
			 "status", in->pending ? "computing" : "live",
			 "computed_at", in->computed_us ? api_time_json(in->computed_us) : json_null());
}

static json_t *ct_json(const struct audience_ct_info *in)
{
	json_t *o = json_loads(in->definition, 0, NULL);

	if (!o)
		o = json_object();
	json_object_set_new(o, "id", json_integer((json_int_t)in->id));
	json_object_set_new(o, "profiles", json_integer((json_int_t)in->profiles));
	return o;
}

/* The object for key, or NULL (under the read lock). */
static json_t *def_json(const struct audience_space *s, enum store_def_kind kind, const char *key)
{
	long i;

	if (!s)
		return NULL;
	if (kind == STORE_DEF_AUDIENCE) {
		struct audience_info in;

		if ((i = audience_space_audience_find(s, key)) < 0)
			return NULL;
		audience_space_audience(s, (size_t)i, &in);
		return audience_json(&in);
	} else {
		struct audience_ct_info in;

		if ((i = audience_space_ct_find(s, key)) < 0)
			return NULL;
		audience_space_ct(s, (size_t)i, &in);
		return ct_json(&in);
	}
}

static void reply_list(struct api *a, struct http_request *req, int64_t ws,
		       enum store_def_kind kind)
{
	json_t *list = json_array(), *body;
	const struct audience_space *s;

	engine_read_begin(a->engine);
	s = engine_audiences(a->engine, ws);
	if (kind == STORE_DEF_AUDIENCE)
		for (size_t i = 0; s && i < audience_space_audiences(s); i++) {
			struct audience_info in;

			audience_space_audience(s, i, &in);
			json_array_append_new(list, audience_json(&in));
		}
	else
		for (size_t i = 0; s && i < audience_space_cts(s); i++) {
			struct audience_ct_info in;

			audience_space_ct(s, i, &in);
			json_array_append_new(list, ct_json(&in));
		}
	engine_read_end(a->engine);
	body = json_pack("{so}", kind == STORE_DEF_AUDIENCE ? "audiences" : "computed_traits", list);
	api_reply_json(req, 200, body);
	json_decref(body);
}

static void reply_one(struct api *a, struct http_request *req, int64_t ws,
		      enum store_def_kind kind, const char *key, int status)
{
	json_t *o;

	engine_read_begin(a->engine);
	o = def_json(engine_audiences(a->engine, ws), kind, key);
	engine_read_end(a->engine);
	if (!o) {
		http_reply_json_error(req, 404, "not_found", kind == STORE_DEF_AUDIENCE ?
				      "no audience with that key" : "no computed trait with that key");
		return;
	}
	api_reply_json(req, status, o);
	json_decref(o);
}

/* ---- changes: engine commands ---- */

enum def_op { OP_CREATE, OP_REPLACE, OP_REMOVE, OP_PREVIEW };

struct def_cmd {
	struct engine_cmd c;
	struct api *a;
	struct http_request *req;
	int64_t ws;
	enum def_op op;
	enum store_def_kind kind;
	char *key, *name, *definition;
	int64_t id;
	uint64_t size, sample[PREVIEW_SAMPLE];
	size_t nsample;
	char err[512];
};

static void def_run(struct engine *e, struct engine_cmd *c)
{
	struct def_cmd *d = (struct def_cmd *)c;

	switch (d->op) {
	case OP_CREATE:
	case OP_REPLACE:
		c->result = engine_audience_define(e, d->ws, d->kind, d->key, d->name, d->definition,
						   d->op == OP_CREATE, &d->id, d->err, sizeof(d->err));
		break;
	case OP_REMOVE:
		c->result = engine_audience_remove(e, d->ws, d->kind, d->key, d->err,
						   sizeof(d->err));
		break;
	case OP_PREVIEW:
		c->result = engine_audience_preview(e, d->ws, d->definition, &d->size, d->sample,
						    PREVIEW_SAMPLE, &d->nsample, d->err,
						    sizeof(d->err));
		break;
	}
}

static void def_done(struct engine_cmd *c)
{
	struct def_cmd *d = (struct def_cmd *)c;
	const char *what = d->kind == STORE_DEF_AUDIENCE ? "audience" : "computed trait";
	char msg[600];

	switch (c->result) {
	case 0:
		if (d->op == OP_REMOVE) {
			http_reply(d->req, 204, NULL, NULL, 0);
		} else if (d->op == OP_PREVIEW) {
			json_t *sample = json_array(), *body;

			for (size_t i = 0; i < d->nsample; i++)
				json_array_append_new(sample, api_pid_json(d->sample[i]));
			body = json_pack("{sI so}", "size", (json_int_t)d->size, "sample", sample);
			api_reply_json(d->req, 200, body);
			json_decref(body);
		} else {
			reply_one(d->a, d->req, d->ws, d->kind, d->key, d->op == OP_CREATE ? 201 : 200);
		}
		break;
	case WEFT_EINVAL:
		http_reply_json_error(d->req, 400, "invalid_definition", d->err);
		break;
	case WEFT_ETOOBIG:
		http_reply_json_error(d->req, 400, "too_many_definitions", d->err);
		break;
	case WEFT_ECONFLICT:
		if (*d->err) {
			http_reply_json_error(d->req, 409, "in_use", d->err);
		} else {
			snprintf(msg, sizeof(msg), "%s %s with key '%s' exists: change it with PUT",
				 d->kind == STORE_DEF_AUDIENCE ? "an" : "a", what, d->key);
			http_reply_json_error(d->req, 409, "exists", msg);
		}
		break;
	case WEFT_ENOTFOUND:
		snprintf(msg, sizeof(msg), "no %s with key '%s'", what, d->key);
		http_reply_json_error(d->req, 404, "not_found", msg);
		break;
	case WEFT_EUNAVAIL:
	case WEFT_ESHUTDOWN:
		http_reply_add_header(d->req, "Retry-After", "2");
		http_reply_json_error(d->req, 503, "unavailable",
				      "the database is unreachable; retry shortly");
		break;
	default:
		http_reply_json_error(d->req, 500, "internal_error",
				      "the definition was not saved; see the server log");
		break;
	}
	free(d->key);
	free(d->name);
	free(d->definition);
	free(d);
}

static void submit(struct api *a, struct http_request *req, int64_t ws, enum def_op op,
		   enum store_def_kind kind, const char *key, const char *name,
		   const char *definition)
{
	struct def_cmd *d = xcalloc(1, sizeof(*d));

	d->c.run = def_run;
	d->c.done = def_done;
	d->a = a;
	d->req = req;
	d->ws = ws;
	d->op = op;
	d->kind = kind;
	d->key = key ? xstrdup(key) : NULL;
	d->name = name ? xstrdup(name) : NULL;
	d->definition = definition ? xstrdup(definition) : NULL;
	engine_submit(a->engine, &d->c, a->base);
}

/* The body as a JSON object, or NULL after replying 400. */
json_t *api_body_object(struct http_request *req)
{
	size_t len;
	const char *text = http_request_body(req, &len);
	json_error_t jerr;
	json_t *o = json_loadb(text ? text : "", len, 0, &jerr);

	if (!json_is_object(o)) {
		char msg[300];

		snprintf(msg, sizeof(msg), o ? "the body must be a JSON object" :
			 "the body is not valid JSON: %s", jerr.text);
		http_reply_json_error(req, 400, "invalid_json", msg);
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Audience bodies: {"key", "name", "definition"}; key from the path on PUT. */
static void audience_write(struct api *a, struct http_request *req, int64_t ws,
			   const char *path_key)
{
	json_t *o = api_body_object(req);
	const char *key, *name, *def, *k;
	json_t *v;

	if (!o)
		return;
	json_object_foreach(o, k, v) {
		if (strcmp(k, "key") && strcmp(k, "name") && strcmp(k, "definition")) {
			char msg[200];

			snprintf(msg, sizeof(msg), "unknown member \"%.64s\": an audience has key, "
				 "name and definition", k);
			http_reply_json_error(req, 400, "invalid_definition", msg);
			json_decref(o);
			return;
		}
	}
	key = json_string_value(json_object_get(o, "key"));
	name = json_string_value(json_object_get(o, "name"));
	def = json_string_value(json_object_get(o, "definition"));
	if (path_key && key && strcmp(key, path_key)) {
		http_reply_json_error(req, 400, "invalid_definition",
				      "\"key\" differs from the key in the path; a key cannot change");
	} else if (!(key = key ? key : path_key) || !audience_key_ok(key)) {
		http_reply_json_error(req, 400, "invalid_definition",
				      "\"key\" must be 1 to 64 letters, digits, '_', '.' or '-', "
				      "starting with a letter or digit");
	} else if (!def || !*def || strlen(def) > AUDIENCE_MAX_SOURCE) {
		http_reply_json_error(req, 400, "invalid_definition",
				      "\"definition\" must be a non-empty string (the condition, "
				      "docs/audiences.md) of at most 65536 bytes");
	} else if (json_object_get(o, "name") && (!name || strlen(name) > AUDIENCE_NAME_MAX)) {
		http_reply_json_error(req, 400, "invalid_definition",
				      "\"name\" must be a string of at most 200 bytes");
	} else {
		submit(a, req, ws, path_key ? OP_REPLACE : OP_CREATE, STORE_DEF_AUDIENCE, key, name,
		       def);
	}
	json_decref(o);
}

static void ct_write(struct api *a, struct http_request *req, int64_t ws, const char *path_key)
{
	json_t *o = api_body_object(req);
	char err[512], *canon = NULL;
	const char *key;

	if (!o)
		return;
	if (path_key && !json_object_get(o, "key"))
		json_object_set_new(o, "key", json_string(path_key));
	key = json_string_value(json_object_get(o, "key"));
	if (path_key && key && strcmp(key, path_key)) {
		http_reply_json_error(req, 400, "invalid_definition",
				      "\"key\" differs from the key in the path; a key cannot change");
	} else if (audience_ct_validate(o, &canon, err, sizeof(err))) {
		http_reply_json_error(req, 400, "invalid_definition", err);
	} else {
		submit(a, req, ws, path_key ? OP_REPLACE : OP_CREATE, STORE_DEF_COMPUTED_TRAIT, key,
		       NULL, canon);
	}
	free(canon);
	json_decref(o);
}

/* ---- members ---- */

static void members(struct api *a, struct http_request *req, int64_t ws, const char *key)
{
	const char *query = http_request_query(req);
	char text[64];
	long limit = MEMBERS_LIMIT_DEFAULT;
	unsigned long long after = 0;
	const struct audience_space *s;
	uint64_t *pids;
	size_t n = 0;
	long i;
	json_t *list, *body;
	bool more = false;

	if (api_query_param(query, "limit", text, sizeof(text))) {
		char *end;

		limit = strtol(text, &end, 10);
		if (*end || limit < 1 || limit > MEMBERS_LIMIT_MAX) {
			http_reply_json_error(req, 400, "invalid_parameter",
					      "limit must be a whole number from 1 to 1000");
			return;
		}
	}
	if (api_query_param(query, "cursor", text, sizeof(text))) {
		int used = 0;

		if (sscanf(text, "prf_%llu%n", &after, &used) != 1 || text[used]) {
			http_reply_json_error(req, 400, "invalid_parameter",
					      "cursor must be the next value of a previous page");
			return;
		}
	}
	pids = xmalloc(xmul((size_t)limit + 1, sizeof(*pids)));
	list = json_array();
	engine_read_begin(a->engine);
	s = engine_audiences(a->engine, ws);
	i = s ? audience_space_audience_find(s, key) : -1;
	if (i >= 0) {
		const struct profile_store *ps = engine_profiles(a->engine, ws);

		n = audience_space_members(s, (size_t)i, after, pids, (size_t)limit + 1);
		more = n > (size_t)limit;
		if (more)
			n = (size_t)limit;
		for (size_t k = 0; k < n; k++) {
			struct profile_view v;
			json_t *traits = json_object();

			if (ps && profile_store_view_traits(ps, pids[k], &v) == 0) {
				for (size_t t = 0; t < v.ntraits; t++)
					json_object_set_new(traits, v.traits[t].name,
							    json_loadb(v.traits[t].json,
								       v.traits[t].json_len,
								       JSON_DECODE_ANY, NULL));
				profile_view_release(&v);
			}
			json_array_append_new(list, json_pack("{so so}", "profile_id",
							      api_pid_json(pids[k]), "traits", traits));
		}
	}
	engine_read_end(a->engine);
	if (i < 0) {
		json_decref(list);
		free(pids);
		http_reply_json_error(req, 404, "not_found", "no audience with that key");
		return;
	}
	body = json_pack("{so so}", "members", list, "next",
			 more ? api_pid_json(pids[n - 1]) : json_null());
	free(pids);
	api_reply_json(req, 200, body);
	json_decref(body);
}

/* ---- routing ---- */

bool api_method_is(struct http_request *req, const char *allow)
{
	const char *m = http_request_method(req);
	char list[64], *tok, *save;

	snprintf(list, sizeof(list), "%s", allow);
	for (tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
		if (strcmp(m, tok) == 0)
			return true;
	http_reply_add_header(req, "Allow", allow);
	http_reply_json_error(req, 405, "method_not_allowed", "see docs/api.md for the methods");
	return false;
}

void api_definitions(struct api *a, struct http_request *req, enum store_def_kind kind,
		     const char *rest)
{
	const char *method = http_request_method(req);
	bool write = strcmp(method, "GET") && strcmp(method, "HEAD");
	const struct api_key *k;
	char key[AUDIENCE_KEY_MAX + 1];
	const char *slash;
	size_t klen;

	/* rest: "", "/preview", "/{key}" or "/{key}/members" */
	if (!*rest) {
		if (!api_method_is(req, "GET, POST"))
			return;
	} else if (kind == STORE_DEF_AUDIENCE && strcmp(rest, "/preview") == 0) {
		if (!api_method_is(req, "POST"))
			return;
		write = false;	/* a read key may preview */
	}
	if (!(k = api_authenticate(a, req, NULL, write ? STORE_ROLE_ADMIN : STORE_ROLE_READ)) ||
	    api_engine_unready(a, req))
		return;
	if (!*rest) {
		if (strcmp(method, "POST"))
			reply_list(a, req, k->workspace_id, kind);
		else if (kind == STORE_DEF_AUDIENCE)
			audience_write(a, req, k->workspace_id, NULL);
		else
			ct_write(a, req, k->workspace_id, NULL);
		return;
	}
	if (kind == STORE_DEF_AUDIENCE && strcmp(rest, "/preview") == 0) {
		json_t *o = api_body_object(req);
		const char *def = o ? json_string_value(json_object_get(o, "definition")) : NULL;

		if (o && (!def || !*def || strlen(def) > AUDIENCE_MAX_SOURCE))
			http_reply_json_error(req, 400, "invalid_definition",
					      "\"definition\" must be a non-empty string");
		else if (o)
			submit(a, req, k->workspace_id, OP_PREVIEW, kind, NULL, NULL, def);
		json_decref(o);
		return;
	}
	rest++;
	slash = strchr(rest, '/');
	klen = slash ? (size_t)(slash - rest) : strlen(rest);
	if (klen == 0 || klen > AUDIENCE_KEY_MAX) {
		http_reply_json_error(req, 404, "not_found", "no such key");
		return;
	}
	memcpy(key, rest, klen);
	key[klen] = '\0';
	if (slash) {
		if (kind == STORE_DEF_AUDIENCE && strcmp(slash, "/exports") == 0) {
			if (api_method_is(req, "POST"))
				api_export_create(a, req, k, key);
			return;
		}
		if (kind != STORE_DEF_AUDIENCE || strcmp(slash, "/members")) {
			http_reply_json_error(req, 404, "not_found", "no such endpoint; see docs/api.md");
			return;
		}
		if (api_method_is(req, "GET"))
			members(a, req, k->workspace_id, key);
		return;
	}
	if (!api_method_is(req, "GET, PUT, DELETE"))
		return;
	if (strcmp(method, "GET") == 0)
		reply_one(a, req, k->workspace_id, kind, key, 200);
	else if (strcmp(method, "DELETE") == 0)
		submit(a, req, k->workspace_id, OP_REMOVE, kind, key, NULL, NULL);
	else if (kind == STORE_DEF_AUDIENCE)
		audience_write(a, req, k->workspace_id, key);
	else
		ct_write(a, req, k->workspace_id, key);
}

/* ---- the test clock ---- */

struct clock_cmd {
	struct engine_cmd c;
	struct http_request *req;
	int64_t now_us;
};

static void clock_run(struct engine *e, struct engine_cmd *c)
{
	struct clock_cmd *k = (struct clock_cmd *)c;

	engine_clock_set(e, k->now_us);
}

static void clock_done(struct engine_cmd *c)
{
	struct clock_cmd *k = (struct clock_cmd *)c;
	json_t *body = json_pack("{so}", "now", api_time_json(k->now_us));

	if (c->result)
		http_reply_json_error(k->req, 503, "unavailable", "the engine is stopping");
	else
		api_reply_json(k->req, 200, body);
	json_decref(body);
	free(k);
}

void api_clock(struct api *a, struct http_request *req)
{
	const char *env = getenv("WEFT_TEST_CLOCK");
	struct clock_cmd *k;
	json_t *o;
	double secs;

	if (!env || strcmp(env, "1")) {
		http_reply_json_error(req, 404, "not_found",
				      "no such endpoint (the test clock needs WEFT_TEST_CLOCK=1)");
		return;
	}
	if (!api_method_is(req, "PUT") || !api_authenticate(a, req, NULL, STORE_ROLE_ADMIN) ||
	    api_engine_unready(a, req) || !(o = api_body_object(req)))
		return;
	if (!json_is_number(json_object_get(o, "now"))) {
		http_reply_json_error(req, 400, "invalid_parameter",
				      "\"now\" must be seconds since 1970 (a number)");
		json_decref(o);
		return;
	}
	secs = json_number_value(json_object_get(o, "now"));
	json_decref(o);
	k = xcalloc(1, sizeof(*k));
	k->c.run = clock_run;
	k->c.done = clock_done;
	k->req = req;
	k->now_us = (int64_t)(secs * 1e6);
	engine_submit(a->engine, &k->c, a->base);
}
