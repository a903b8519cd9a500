/*
 * Routing and handlers. Each handler ends in exactly one reply, and this
 * file is where error codes become HTTP statuses (docs/api.md lists them).
 */
#include "api/api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/jsonw.h"
#include "lib/log.h"
#include "privacy/privacy.h"

/* One ingest request waiting for its commit. */
struct ingest_request {
	struct ingest_job job;
	struct http_request *req;
	struct api *a;
};

void api_config_init(struct api_config *cfg)
{
	struct http_limits lim;

	http_limits_init(&lim);
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen_host = "127.0.0.1";
	cfg->listen_port = 8080;
	cfg->max_body_bytes = 512000;
	cfg->max_header_bytes = lim.max_header_bytes;
	cfg->max_connections = lim.max_connections;
	cfg->max_inflight_requests = lim.max_inflight_requests;
	cfg->max_inflight_bytes = lim.max_inflight_bytes;
}

void api_reply_json(struct http_request *req, int status, json_t *body)
{
	struct buf text = BUF_INIT;

	buf_add_json(&text, body);
	http_reply(req, status, "application/json", text.data, text.len);
	buf_release(&text);
}

static void reply_unavailable(struct api *a, struct http_request *req, int rc)
{
	a->metrics.unavailable++;
	if (rc == WEFT_EOVERLOAD) {
		http_reply_add_header(req, "Retry-After", "1");
		http_reply_json_error(req, 503, "overloaded",
			"too many events are waiting to be committed; retry "
			"shortly");
	} else if (rc == WEFT_ESHUTDOWN) {
		http_reply_add_header(req, "Retry-After", "2");
		http_reply_json_error(req, 503, "shutting_down",
			"the server is stopping; retry shortly");
	} else if (rc == WEFT_EUNAVAIL) {
		http_reply_add_header(req, "Retry-After", "2");
		http_reply_json_error(req, 503, "unavailable",
			"the database is unreachable; nothing was stored, retry "
			"shortly");
	} else {
		http_reply_json_error(req, 500, "internal_error",
			"the events could not be stored; nothing was stored, "
			"see the server log");
	}
}

static int reason_status(enum ingest_reason r)
{
	return r == INGEST_EVENT_TOO_LARGE ? 413 : 400;
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void ingest_done(struct ingest_job *job, void *arg)
{
	struct ingest_request *ir = arg;
	struct api *a = ir->a;

	(void)job;
	if (ir->job.result) {
		reply_unavailable(a, ir->req, ir->job.result);
		goto out_free;
	}
	for (size_t i = 0; i < ir->job.nrows; i++) {
		if (ir->job.rows[i].stored)
			a->metrics.accepted[ir->job.rows[i].kind]++;
		else
			a->metrics.duplicates[ir->job.rows[i].kind]++;
	}
	for (size_t i = 0; i < ir->job.nrejected; i++)
		a->metrics.rejected[ir->job.rejections[i].reason]++;
	a->metrics.suppressed += ir->job.suppressed;

	json_t *body = json_pack("{sb}", "success", 1);

	if (ir->job.nrejected) {
		json_t *list = json_array();

		for (size_t i = 0; i < ir->job.nrejected; i++) {
			struct ingest_rejection *r = &ir->job.rejections[i];

			json_array_append_new(list, json_pack("{sI ss ss}",
				"index", (json_int_t)r->index,
				"code", ingest_reason_code(r->reason),
				"message", r->message));
		}
		json_object_set_new(body, "rejected", list);
	}
	api_reply_json(ir->req, 200, body);
	json_decref(body);
out_free:
	ingest_job_release(&ir->job);
	free(ir);
}

static void handle_ingest(struct api *a, struct http_request *req,
			  enum ingest_kind kind)
{
	const struct api_key *key = NULL;
	struct ingest_context ctx;
	struct ingest_error err;
	struct ingest_request *ir;
	json_t *root;
	size_t len;
	const char *body;
	int rc;

	/* With a header, refuse a bad key before parsing anything. */
	if (api_has_credentials(req) &&
	    !(key = api_authenticate(a, req, NULL, STORE_ROLE_WRITE)))
		return;
	body = http_request_body(req, &len);
	if (ingest_parse(body, len, &root, &err)) {
		a->metrics.rejected[err.reason]++;
		http_reply_json_error(req, 400, ingest_reason_code(err.reason),
				      err.message);
		return;
	}
	if (!key && !(key = api_authenticate(a, req, root, STORE_ROLE_WRITE))) {
		json_decref(root);
		return;
	}

	struct api_workspace *w = api_workspace_get(a, key->workspace_id);

	ctx.kind = kind;
	ctx.workspace_id = key->workspace_id;
	ctx.key_id = key->key_id;
	ctx.received_at_us = now_us();
	ctx.policy = w->policy ? w->policy : a->default_policy;
	ctx.hasher = w->hasher;
	ctx.suppressed = w->suppressed;

	ir = xcalloc(1, sizeof(*ir));
	ingest_job_init(&ir->job);
	ir->req = req;
	ir->a = a;
	rc = ingest_build(&ctx, root, &ir->job, &err);
	json_decref(root);
	if (rc) {
		a->metrics.rejected[err.reason]++;
		http_reply_json_error(req, reason_status(err.reason),
				      ingest_reason_code(err.reason), err.message);
		ingest_job_release(&ir->job);
		free(ir);
		return;
	}
	ir->job.done = ingest_done;
	ir->job.done_arg = ir;
	if (ir->job.nrows == 0 && ir->job.nrejected == 0) {
		ingest_done(&ir->job, ir);	/* empty, or every event suppressed */
		return;
	}
	rc = ingest_pipeline_submit(a->pipeline, &ir->job);
	if (rc) {
		reply_unavailable(a, req, rc);
		ingest_job_release(&ir->job);
		free(ir);
	}
}

static void handle_privacy_policy(struct api *a, struct http_request *req)
{
	const char *method = http_request_method(req);
	const struct api_key *key;
	struct api_workspace *w;

	if (strcmp(method, "GET") && strcmp(method, "PUT")) {
		http_reply_add_header(req, "Allow", "GET, PUT");
		http_reply_json_error(req, 405, "method_not_allowed",
				      "use GET or PUT");
		return;
	}
	if (!(key = api_authenticate(a, req, NULL, STORE_ROLE_ADMIN)))
		return;
	w = api_workspace_get(a, key->workspace_id);
	if (strcmp(method, "GET") == 0) {
		json_t *body = privacy_policy_to_json(w->policy ? w->policy
							    : a->default_policy);

		api_reply_json(req, 200, body);
		json_decref(body);
		return;
	}

	size_t len;
	const char *body = http_request_body(req, &len);
	struct privacy_policy *p;
	struct buf err = BUF_INIT;

	if (privacy_policy_parse(body, len, &p, &err)) {
		http_reply_json_error(req, 400, "invalid_policy",
				      err.data ? err.data : "invalid policy");
		buf_release(&err);
		return;
	}
	buf_release(&err);

	/* Store the canonical form, so what GET shows is what was saved. */
	json_t *canon = privacy_policy_to_json(p);
	char *text = json_dumps(canon, JSON_COMPACT);

	json_decref(canon);
	api_control_save_policy(a, key->workspace_id, text, p, req);
	free(text);
}

static void reply_text_json(struct http_request *req, int status,
			    const char *json)
{
	http_reply(req, status, "application/json", json, strlen(json));
}

static void handle_readyz(struct api *a, struct http_request *req)
{
	if (a->db_ready && ingest_pipeline_ready(a->pipeline)) {
		reply_text_json(req, 200, "{\"status\":\"ready\"}");
		return;
	}
	http_reply_add_header(req, "Retry-After", "2");
	http_reply_json_error(req, 503, "not_ready",
		a->db_ready ? "the event log has no database connection yet"
			    : "the database is unreachable or its schema is not "
			      "current");
}

static void handle(struct http_request *req, void *arg)
{
	struct api *a = arg;
	const char *path = http_request_path(req);
	const char *method = http_request_method(req);
	enum ingest_kind kind;

	if (strncmp(path, "/v1/", 4) == 0 && !strchr(path + 4, '/') &&
	    ingest_kind_parse(path + 4, &kind) == 0) {
		if (strcmp(method, "POST") != 0) {
			http_reply_add_header(req, "Allow", "POST");
			http_reply_json_error(req, 405, "method_not_allowed",
					      "send events with POST");
			return;
		}
		handle_ingest(a, req, kind);
		return;
	}
	if (strcmp(path, "/v1/admin/privacy-policy") == 0) {
		handle_privacy_policy(a, req);
		return;
	}
	if (strcmp(path, "/v1/admin/identity-rules") == 0) {
		api_identity_rules(a, req);
		return;
	}
	if (strcmp(path, "/v1/admin/identity/blocked") == 0) {
		api_identity_blocked(a, req);
		return;
	}
	if (strncmp(path, "/v1/admin/erasures/", 19) == 0 && !strchr(path + 19, '/')) {
		api_erasure_status(a, req, path + 19);
		return;
	}
	if (strncmp(path, "/v1/profiles/", 13) == 0 && strcmp(method, "DELETE") == 0 &&
	    path[13] && !strchr(path + 13, '/')) {
		api_erase_profile(a, req, path + 13, strlen(path + 13));
		return;
	}
	if (strncmp(path, "/v1/profiles/", 13) == 0) {
		const char *ident = path + 13, *slash = strchr(ident, '/');

		if (slash && slash > ident && strcmp(slash, "/identity-history") == 0) {
			api_identity_history(a, req, ident, (size_t)(slash - ident));
			return;
		}
		if (!slash && *ident) {
			api_profile_get(a, req, ident, strlen(ident));
			return;
		}
	}
	if (strncmp(path, "/v1/audiences", 13) == 0 && (!path[13] || path[13] == '/')) {
		api_definitions(a, req, STORE_DEF_AUDIENCE, path + 13);
		return;
	}
	if (strncmp(path, "/v1/computed-traits", 19) == 0 && (!path[19] || path[19] == '/')) {
		api_definitions(a, req, STORE_DEF_COMPUTED_TRAIT, path + 19);
		return;
	}
	if (strncmp(path, "/v1/exports/", 12) == 0) {
		api_exports(a, req, path + 12);
		return;
	}
	if (strcmp(path, "/v1/admin/clock") == 0) {
		api_clock(a, req);
		return;
	}
	if (strncmp(path, "/v1/spaces/", 11) == 0) {
		api_profiles_segment(a, req);
		return;
	}
	if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
	    strcmp(path, "/metrics") == 0) {
		if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
			http_reply_add_header(req, "Allow", "GET");
			http_reply_json_error(req, 405, "method_not_allowed",
					      "use GET");
		} else if (strcmp(path, "/healthz") == 0) {
			reply_text_json(req, 200, "{\"status\":\"ok\"}");
		} else if (strcmp(path, "/metrics") == 0) {
			api_metrics_reply(a, req);
		} else {
			handle_readyz(a, req);
		}
		return;
	}
	http_reply_json_error(req, 404, "not_found",
			      "no such endpoint; see docs/api.md");
}

struct api *api_new(struct event_base *base, const struct api_config *cfg,
		    struct ingest_pipeline *pipeline,
		    const struct privacy_master *master)
{
	struct api *a = xcalloc(1, sizeof(*a));
	struct http_limits lim;

	a->base = base;
	a->cfg = *cfg;
	a->pipeline = pipeline;
	a->master = master;
	a->default_policy = privacy_policy_default();
	http_limits_init(&lim);
	lim.max_body_bytes = cfg->max_body_bytes;
	lim.max_header_bytes = cfg->max_header_bytes;
	lim.max_connections = cfg->max_connections;
	lim.max_inflight_requests = cfg->max_inflight_requests;
	lim.max_inflight_bytes = cfg->max_inflight_bytes;
	a->http = http_server_new(base, &lim, handle, a);
	return a;
}

int api_start(struct api *a)
{
	int rc = api_control_refresh_now(a);

	if (rc)
		return rc;
	api_control_start(a);
	api_erase_start(a);
	return http_server_listen(a->http, a->cfg.listen_host,
				  a->cfg.listen_port);
}

void api_set_engine(struct api *a, struct engine *engine)
{
	a->engine = engine;
}

int api_port(const struct api *a)
{
	return http_server_port(a->http);
}

void api_shutdown(struct api *a, void (*done)(void *), void *arg)
{
	a->stopping = true;
	http_server_shutdown(a->http, done, arg);
}

void api_free(struct api *a)
{
	if (!a)
		return;
	api_control_stop(a);
	api_erase_stop(a);
	http_server_free(a->http);
	api_keyring_release(&a->keys);
	for (size_t i = 0; i < a->nworkspaces; i++) {
		privacy_hasher_free(a->workspaces[i].hasher);
		privacy_policy_free(a->workspaces[i].policy);
		free(a->workspaces[i].policy_json);
	}
	free(a->workspaces);
	privacy_policy_free(a->default_policy);
	free(a->exports_dir);
	free(a);
}
