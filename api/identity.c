/*
 * Identity endpoints (docs/identity.md): the workspace's rules, blocking a
 * value retroactively, and a profile's identity history. Rules and blocks
 * change the engine's state, so they run as engine commands; the history
 * is read under the engine's read lock, then completed with the events'
 * messageIds and displayed values by the control worker.
 */
#include "api/api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "identity/identity.h"
#include "lib/alloc.h"
#include "lib/digest.h"
#include "lib/err.h"
#include "lib/log.h"
#include "privacy/privacy.h"

/* Records one history answer holds: the newest, listed oldest first. */
#define HISTORY_MAX 1000

static void reply_engine_error(struct http_request *req, int rc, const char *what)
{
	char msg[160];

	if (rc == WEFT_EUNAVAIL || rc == WEFT_ESHUTDOWN) {
		snprintf(msg, sizeof(msg), "the database is unreachable; %s, retry shortly", what);
		http_reply_add_header(req, "Retry-After", "2");
		http_reply_json_error(req, 503, "unavailable", msg);
		return;
	}
	snprintf(msg, sizeof(msg), "%s; see the server log", what);
	http_reply_json_error(req, 500, "internal_error", msg);
}

bool api_engine_unready(struct api *a, struct http_request *req)
{
	if (!a->engine) {
		http_reply_json_error(req, 503, "unavailable", "the identity engine is not running");
		return true;
	}
	if (!engine_ready(a->engine)) {
		/* Right after a start the state is still loading: an answer now would show the past. */
		http_reply_add_header(req, "Retry-After", "1");
		http_reply_json_error(req, 503, "loading",
				      "the profile state is loading (replaying the event log); retry "
				      "shortly");
		return true;
	}
	return false;
}

/* The key ingest gives value as an identifier of type; false if it normalises to nothing. */
static bool identifier_key(const struct api_workspace *w, const char *type, const char *value,
			   size_t len, uint8_t key[IDENTITY_KEY_BYTES])
{
	char *norm = xmalloc(len + 1);
	size_t nlen = privacy_normalise(type, value, len, norm);

	if (nlen)
		privacy_identifier_key(w->hasher, type, norm, nlen, key);
	free(norm);
	return nlen > 0;
}

static json_t *profile_id_json(uint64_t pid)
{
	char s[32];

	if (!pid)
		return json_null();
	snprintf(s, sizeof(s), "prf_%llu", (unsigned long long)pid);
	return json_string(s);
}

/* ---- rules ---- */

struct rules_cmd {
	struct engine_cmd c;
	struct http_request *req;
	int64_t workspace_id;
	char *json;			/* as sent (validated) */
	struct identity_rules *rules;
	char *effective;		/* out: the rules now in force */
};

static void rules_run(struct engine *e, struct engine_cmd *c)
{
	struct rules_cmd *r = (struct rules_cmd *)c;
	struct store *s = engine_store(e);
	struct identity_graph *g;

	if (!s) {
		c->result = WEFT_EUNAVAIL;
		return;
	}
	if ((c->result = store_identity_rules_save(s, r->workspace_id, r->json)))
		return;
	g = engine_graph_mut(e, r->workspace_id);
	engine_write_begin(e);
	c->result = identity_graph_set_rules(g, r->rules);
	engine_write_end(e);
	r->effective = engine_rules_format(g);
	engine_checkpoint_soon(e);
}

static void rules_done(struct engine_cmd *c)
{
	struct rules_cmd *r = (struct rules_cmd *)c;

	if (c->result || !r->effective) {
		reply_engine_error(r->req, c->result, "the rules were not saved");
	} else {
		log_info("identity_rules_saved", "workspace=%lld", (long long)r->workspace_id);
		http_reply(r->req, 200, "application/json", r->effective, strlen(r->effective));
	}
	identity_rules_free(r->rules);
	free(r->effective);
	free(r->json);
	free(r);
}

void api_identity_rules(struct api *a, struct http_request *req)
{
	const char *method = http_request_method(req);
	const struct api_key *key;
	char err[512];

	if (strcmp(method, "GET") && strcmp(method, "PUT")) {
		http_reply_add_header(req, "Allow", "GET, PUT");
		http_reply_json_error(req, 405, "method_not_allowed", "use GET or PUT");
		return;
	}
	if (!(key = api_authenticate(a, req, NULL, STORE_ROLE_ADMIN)) || api_engine_unready(a, req))
		return;
	if (strcmp(method, "GET") == 0) {
		char *text;

		engine_read_begin(a->engine);
		const struct identity_graph *g = engine_graph(a->engine, key->workspace_id);

		if (g) {
			text = engine_rules_format(g);
		} else {
			struct identity_rules *r = identity_rules_new();
			struct identity_graph *empty = identity_graph_new(r);

			text = engine_rules_format(empty);
			identity_graph_free(empty);
			identity_rules_free(r);
		}
		engine_read_end(a->engine);
		http_reply(req, 200, "application/json", text, strlen(text));
		free(text);
		return;
	}

	size_t len;
	const char *body = http_request_body(req, &len);
	struct rules_cmd *r = xcalloc(1, sizeof(*r));

	if (engine_rules_parse(body, len, &r->rules, err, sizeof(err))) {
		http_reply_json_error(req, 400, "invalid_rules", err);
		free(r);
		return;
	}
	r->c.run = rules_run;
	r->c.done = rules_done;
	r->req = req;
	r->workspace_id = key->workspace_id;
	r->json = xmalloc(len + 1);
	memcpy(r->json, body, len);
	r->json[len] = '\0';
	engine_submit(a->engine, &r->c, a->base);
}

/* ---- blocking a value ---- */

struct block_cmd {
	struct engine_cmd c;
	struct http_request *req;
	int64_t workspace_id, key_id;
	char type[IDENTITY_TYPE_NAME_MAX + 1];
	uint8_t key[IDENTITY_KEY_BYTES];
	struct identity_split split;
};

static void block_run(struct engine *e, struct engine_cmd *c)
{
	struct block_cmd *b = (struct block_cmd *)c;
	struct store *s = engine_store(e);

	if (!s) {
		c->result = WEFT_EUNAVAIL;
		return;
	}
	c->result = store_identity_blocked_add(s, b->workspace_id, b->type, b->key, b->key_id);
	if (!c->result)
		c->result = engine_block_identifier(e, b->workspace_id, b->type, b->key,
						    &b->split);
	engine_checkpoint_soon(e);
}

static void block_done(struct engine_cmd *c)
{
	struct block_cmd *b = (struct block_cmd *)c;
	char hex[33];

	if (c->result) {
		reply_engine_error(b->req, c->result, "the value was not blocked");
		free(b);
		return;
	}
	hex_encode(b->key, 16, hex);

	json_t *body = json_pack("{ss ss sb s{so sI sI}}", "type", b->type, "key", hex,
				 "blocked", 1, "split",
				 "profile_id", profile_id_json(b->split.profile_id),
				 "parts", (json_int_t)b->split.parts,
				 "new_profiles", (json_int_t)b->split.created);

	api_reply_json(b->req, 200, body);
	json_decref(body);
	free(b);
}

void api_identity_blocked(struct api *a, struct http_request *req)
{
	const struct api_key *key;
	struct api_workspace *w;
	struct block_cmd *b;
	json_error_t jerr;
	const char *body, *type, *value;
	size_t len;
	json_t *doc;

	if (strcmp(http_request_method(req), "POST")) {
		http_reply_add_header(req, "Allow", "POST");
		http_reply_json_error(req, 405, "method_not_allowed", "use POST");
		return;
	}
	if (!(key = api_authenticate(a, req, NULL, STORE_ROLE_ADMIN)) || api_engine_unready(a, req))
		return;
	body = http_request_body(req, &len);
	doc = json_loadb(body, len, 0, &jerr);
	type = json_string_value(json_object_get(doc, "type"));
	value = json_string_value(json_object_get(doc, "value"));
	if (!json_is_object(doc) || !type || !value) {
		http_reply_json_error(req, 400, "invalid_request",
				      "send {\"type\": \"<identifier type>\", \"value\": \"<value>\"}");
		json_decref(doc);
		return;
	}
	if (!identity_type_name_ok(type) || strcmp(type, "group_id") == 0) {
		http_reply_json_error(req, 400, "invalid_type",
				      "type must be an identifier type (1 to 63 characters of a-z, "
				      "0-9, '_', '.', '-'; not group_id)");
		json_decref(doc);
		return;
	}
	w = api_workspace_get(a, key->workspace_id);
	b = xcalloc(1, sizeof(*b));
	if (!identifier_key(w, type, value, json_string_length(json_object_get(doc, "value")),
			    b->key)) {
		http_reply_json_error(req, 400, "invalid_value",
				      "the value is empty once normalised; it is never an identifier");
		json_decref(doc);
		free(b);
		return;
	}
	snprintf(b->type, sizeof(b->type), "%s", type);
	json_decref(doc);
	b->c.run = block_run;
	b->c.done = block_done;
	b->req = req;
	b->workspace_id = key->workspace_id;
	b->key_id = key->key_id;
	engine_submit(a->engine, &b->c, a->base);
}

/* ---- identity history ---- */

static const char *const kind_names[] = {
	[IDENTITY_EXPL_MERGE] = "merge",
	[IDENTITY_EXPL_MERGE_REFUSED] = "merge_refused",
	[IDENTITY_EXPL_DROPPED] = "dropped",
	[IDENTITY_EXPL_BLOCKED] = "blocked",
	[IDENTITY_EXPL_GROUP] = "group",
	[IDENTITY_EXPL_SPLIT] = "split",
};

static const char *const reason_names[] = {
	[IDENTITY_REASON_SHARED_IDENTIFIER] = "shared_identifier",
	[IDENTITY_REASON_ALIAS] = "alias",
	[IDENTITY_REASON_LIMIT] = "limit",
	[IDENTITY_REASON_MERGE_CAP] = "merge_cap",
	[IDENTITY_REASON_IDENTIFIER_CAP] = "identifier_cap",
	[IDENTITY_REASON_BLOCKED_VALUE] = "blocked_value",
	[IDENTITY_REASON_BLOCKED_KEY] = "blocked_key",
	[IDENTITY_REASON_GROUP_CALL] = "group_call",
};

struct hist_item {
	struct identity_explanation x;
	char type[IDENTITY_TYPE_NAME_MAX + 1];
	char limit_type[IDENTITY_TYPE_NAME_MAX + 1];
	char *message_id;	/* from the log, NULL if not found */
	char *value;		/* the identifier as the event displayed it */
	json_t *carried;	/* every identifier the event carried: [{type, value}] */
};

struct hist_task {
	struct worker_task t;
	struct api *a;
	struct http_request *req;
	int64_t workspace_id;
	uint64_t profile_id;
	struct hist_item *items;
	size_t n;
	bool truncated;
	int rc;
};

static int brief_row(void *arg, int64_t seq, const char *message_id, const char *ids_json)
{
	struct hist_task *h = arg;
	json_t *ids = json_loads(ids_json, 0, NULL), *it;
	size_t i;

	for (size_t k = 0; k < h->n; k++) {
		struct hist_item *item = &h->items[k];
		char hex[33];

		if (item->x.seq != seq || item->message_id ||
		    item->x.kind == IDENTITY_EXPL_SPLIT)
			continue;
		item->message_id = xstrdup(message_id);
		item->carried = json_array();
		hex_encode(item->x.key, 16, hex);
		json_array_foreach(ids, i, it) {
			const char *v = json_string_value(json_object_get(it, "value"));
			const char *k = json_string_value(json_object_get(it, "key"));

			if (v && !item->value && k && strcmp(k, hex) == 0)
				item->value = xstrdup(v);
			json_array_append_new(item->carried, json_pack("{sO sO}",
				"type", json_object_get(it, "type") ?: json_null(),
				"value", json_object_get(it, "value") ?: json_null()));
		}
	}
	json_decref(ids);
	return 0;
}

static void hist_run(struct worker_task *t)
{
	struct hist_task *h = (struct hist_task *)t;
	int64_t *seqs = xmalloc(xmul(h->n, sizeof(*seqs)));

	for (size_t i = 0; i < h->n; i++)
		seqs[i] = h->items[i].x.seq;
	h->rc = api_control_conn(h->a);
	if (!h->rc)
		h->rc = store_events_brief(h->a->control_store, h->workspace_id, seqs, h->n,
					   brief_row, h);
	free(seqs);
}

static json_t *item_json(const struct hist_item *item)
{
	const struct identity_explanation *x = &item->x;
	char hex[33];
	json_t *o = json_object(), *id = json_object();

	hex_encode(x->key, 16, hex);
	json_object_set_new(o, "kind", json_string(kind_names[x->kind]));
	json_object_set_new(o, "reason", json_string(reason_names[x->reason]));
	json_object_set_new(o, "profile_id", profile_id_json(x->profile_id));
	if (x->other_id)
		json_object_set_new(o, "other_profile_id", profile_id_json(x->other_id));
	json_object_set_new(id, "type", json_string(item->type));
	json_object_set_new(id, "key", json_string(hex));
	json_object_set_new(id, "value", item->value ? json_string(item->value) : json_null());
	json_object_set_new(o, "identifier", id);
	if (item->limit_type[0] || x->reason == IDENTITY_REASON_MERGE_CAP ||
	    x->reason == IDENTITY_REASON_IDENTIFIER_CAP) {
		json_t *rule = json_object();

		if (item->limit_type[0])
			json_object_set_new(rule, "type", json_string(item->limit_type));
		json_object_set_new(rule, x->reason == IDENTITY_REASON_MERGE_CAP ? "max_merges" :
				    x->reason == IDENTITY_REASON_IDENTIFIER_CAP ?
				    "max_identifiers" : "limit", json_integer(x->limit));
		if (x->window_days)
			json_object_set_new(rule, "window_days", json_integer(x->window_days));
		json_object_set_new(o, "rule", rule);
	}
	json_object_set_new(o, "seq", json_integer(x->seq));
	json_object_set_new(o, "message_id", item->message_id ? json_string(item->message_id) :
			    json_null());
	json_object_set_new(o, "count", json_integer(x->count));
	if (item->carried)
		json_object_set(o, "event_identifiers", item->carried);
	return o;
}

static void hist_done(struct worker_task *t)
{
	struct hist_task *h = (struct hist_task *)t;

	if (h->rc) {
		reply_engine_error(h->req, h->rc, "the history could not be read");
	} else {
		json_t *list = json_array();
		json_t *body;

		for (size_t i = 0; i < h->n; i++)
			json_array_append_new(list, item_json(&h->items[i]));
		body = json_pack("{so so sb}", "profile_id", profile_id_json(h->profile_id),
				 "history", list, "truncated", h->truncated);
		api_reply_json(h->req, 200, body);
		json_decref(body);
	}
	for (size_t i = 0; i < h->n; i++) {
		free(h->items[i].message_id);
		free(h->items[i].value);
		json_decref(h->items[i].carried);
	}
	free(h->items);
	free(h);
}

int api_resolve_profile(struct api *a, const struct api_workspace *w,
			const struct identity_graph *g, const char *ident, size_t len,
			uint64_t *profile_id, const char **error)
{
	char *text = api_pct_decode(ident, len, false), *colon;
	int rc = 0;

	*profile_id = 0;
	(void)a;
	if (!text || !(colon = strchr(text, ':')) || colon == text) {
		*error = "identify the profile as {type}:{value}, e.g. email:jane@example.com or "
			 "profile_id:prf_12";
		free(text);
		return WEFT_EINVAL;
	}
	*colon = '\0';
	if (strcmp(text, "profile_id") == 0) {
		char *end;
		unsigned long long id;

		if (strncmp(colon + 1, "prf_", 4) || !colon[5] ||
		    (id = strtoull(colon + 5, &end, 10), *end)) {
			*error = "a profile id looks like prf_12";
			rc = WEFT_EINVAL;
		} else if (g) {
			*profile_id = identity_graph_resolve(g, id);
		}
	} else if (!identity_type_name_ok(text)) {
		*error = "unknown identifier type";
		rc = WEFT_EINVAL;
	} else if (g) {
		uint8_t key[IDENTITY_KEY_BYTES];
		int t = identity_graph_type_find(g, text);

		if (t >= 0 && identifier_key(w, text, colon + 1, strlen(colon + 1), key))
			*profile_id = identity_graph_lookup(g, (uint16_t)t, key);
	}
	free(text);
	return rc;
}

void api_identity_history(struct api *a, struct http_request *req, const char *ident,
			  size_t len)
{
	const struct api_key *key;
	const struct identity_graph *g;
	struct identity_expl_iter it;
	struct hist_task *h;
	const char *error = NULL;
	uint64_t pid;
	size_t cap = 0;

	if (strcmp(http_request_method(req), "GET")) {
		http_reply_add_header(req, "Allow", "GET");
		http_reply_json_error(req, 405, "method_not_allowed", "use GET");
		return;
	}
	if (!(key = api_authenticate(a, req, NULL, STORE_ROLE_READ)) || api_engine_unready(a, req))
		return;
	h = xcalloc(1, sizeof(*h));
	engine_read_begin(a->engine);
	g = engine_graph(a->engine, key->workspace_id);
	if (api_resolve_profile(a, api_workspace_get(a, key->workspace_id), g, ident, len, &pid,
				&error)) {
		engine_read_end(a->engine);
		http_reply_json_error(req, 400, "invalid_identifier", error);
		free(h);
		return;
	}
	if (!pid) {
		engine_read_end(a->engine);
		http_reply_json_error(req, 404, "not_found", "Profile was not found.");
		free(h);
		return;
	}
	identity_expl_iter_init(&it, g, pid);
	for (struct identity_explanation x; identity_expl_iter_next(&it, &x);) {
		struct hist_item *item;
		const char *name;

		if (h->n == HISTORY_MAX) {
			/* Keep the newest: drop the oldest kept so far. */
			h->truncated = true;
			memmove(h->items, h->items + 1, (h->n - 1) * sizeof(*h->items));
			h->n--;
		}
		if (h->n == cap) {
			cap = cap ? 2 * cap : 16;
			h->items = xrealloc(h->items, xmul(cap, sizeof(*h->items)));
		}
		item = &h->items[h->n++];
		memset(item, 0, sizeof(*item));
		item->x = x;
		if ((name = identity_graph_type_name(g, x.type)))
			snprintf(item->type, sizeof(item->type), "%s", name);
		if (x.limit_type != IDENTITY_TYPE_NONE &&
		    (name = identity_graph_type_name(g, x.limit_type)))
			snprintf(item->limit_type, sizeof(item->limit_type), "%s", name);
	}
	identity_expl_iter_release(&it);
	engine_read_end(a->engine);
	h->a = a;
	h->req = req;
	h->workspace_id = key->workspace_id;
	h->profile_id = pid;
	h->t.run = hist_run;
	h->t.done = hist_done;
	worker_submit(a->control, &h->t);
}
