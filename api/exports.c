/*
 * Audience exports over HTTP (docs/audiences.md, "Exports"):
 *   POST /v1/audiences/{key}/exports   admin key: queue a job, 202 with its id
 *   GET  /v1/exports/{id}              read key: status, rows done and total, error
 *   GET  /v1/exports/{id}/file         read key: a finished file job's file
 *
 * The job rows live in the database (the control worker reads and writes
 * them); the export worker (export/worker.c) runs them. A file's name is
 * always exp_<id>.<format> in the data folder's exports/, never anything
 * from the request.
 */
#include "api/api_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audiences/space.h"
#include "engine/engine.h"
#include "export/export.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

void api_set_exports(struct api *a, struct export_worker *w, const char *dir)
{
	a->exports = w;
	free(a->exports_dir);
	a->exports_dir = dir ? xstrdup(dir) : NULL;
}

static void reply_unavailable(struct http_request *req)
{
	http_reply_add_header(req, "Retry-After", "2");
	http_reply_json_error(req, 503, "unavailable", "the database is unreachable");
}

/* ---- POST /v1/audiences/{key}/exports ---- */

struct create_task {
	struct worker_task t;
	struct api *a;
	struct http_request *req;
	struct store_export x;
	int64_t id;
	int rc;
};

static void create_run(struct worker_task *t)
{
	struct create_task *c = (struct create_task *)t;

	c->rc = api_control_conn(c->a);
	if (!c->rc)
		c->rc = store_export_create(c->a->control_store, &c->x, &c->id);
}

static void create_done(struct worker_task *t)
{
	struct create_task *c = (struct create_task *)t;

	if (c->rc) {
		reply_unavailable(c->req);
	} else {
		char id[32], where[64];
		json_t *body;

		snprintf(id, sizeof(id), "exp_%lld", (long long)c->id);
		snprintf(where, sizeof(where), "/v1/exports/%s", id);
		body = json_pack("{ss ss ss ss ss}", "id", id, "status", "queued", "audience",
				 c->x.audience_key, "mode", c->x.mode, "url", where);
		http_reply_add_header(c->req, "Location", where);
		api_reply_json(c->req, 202, body);
		json_decref(body);
		if (c->a->exports)
			export_worker_wake(c->a->exports);
		log_info("export_queued", "workspace=%lld export=%lld audience=%s",
			 (long long)c->x.workspace_id, (long long)c->id, c->x.audience_key);
	}
	store_export_release(&c->x);
	free(c);
}

void api_export_create(struct api *a, struct http_request *req, const struct api_key *k,
		       const char *audience_key)
{
	struct export_spec spec;
	struct create_task *c;
	char err[512];
	json_t *body;
	long i = -1;
	int64_t audience_id = 0;

	if (!a->exports) {
		http_reply_json_error(req, 503, "unavailable", "exports are not running");
		return;
	}
	if (!(body = api_body_object(req)))
		return;
	c = xcalloc(1, sizeof(*c));
	if (export_spec_parse(body, &spec, &c->x.fields_json, &c->x.destination_json,
			      &c->x.destination_key, err, sizeof(err))) {
		json_decref(body);
		store_export_release(&c->x);
		free(c);
		http_reply_json_error(req, 400, "invalid_export", err);
		return;
	}
	snprintf(c->x.format, sizeof(c->x.format), "%s", spec.ndjson ? "ndjson" : "csv");
	snprintf(c->x.mode, sizeof(c->x.mode), "%s", spec.delta ? "delta" : "full");
	export_spec_release(&spec);
	json_decref(body);
	engine_read_begin(a->engine);
	{
		const struct audience_space *as = engine_audiences(a->engine, k->workspace_id);
		struct audience_info info;

		if (as && (i = audience_space_audience_find(as, audience_key)) >= 0) {
			audience_space_audience(as, (size_t)i, &info);
			audience_id = info.id;
		}
	}
	engine_read_end(a->engine);
	if (i < 0) {
		store_export_release(&c->x);
		free(c);
		http_reply_json_error(req, 404, "not_found", "no such audience");
		return;
	}
	c->t.run = create_run;
	c->t.done = create_done;
	c->a = a;
	c->req = req;
	c->x.workspace_id = k->workspace_id;
	c->x.audience_id = audience_id;
	c->x.key_id = k->key_id;
	snprintf(c->x.audience_key, sizeof(c->x.audience_key), "%s", audience_key);
	worker_submit(a->control, &c->t);
}

/* ---- GET /v1/exports/{id}[/file] ---- */

struct get_task {
	struct worker_task t;
	struct api *a;
	struct http_request *req;
	int64_t workspace_id, export_id;
	bool file;
	struct store_export x;
	int rc;
};

static void get_run(struct worker_task *t)
{
	struct get_task *g = (struct get_task *)t;

	g->rc = api_control_conn(g->a);
	if (!g->rc)
		g->rc = store_export_get(g->a->control_store, g->workspace_id, g->export_id, &g->x);
}

/* The destination as shown: a webhook url's user and password are not repeated. */
static json_t *destination_json(const char *stored)
{
	json_t *d = json_loads(stored, 0, NULL);
	const char *url = json_string_value(json_object_get(d, "url"));
	const char *at, *host;

	if (url && (host = strstr(url, "://")) && (at = strchr(host + 3, '@')) &&
	    (!strchr(host + 3, '/') || at < strchr(host + 3, '/'))) {
		char *shown = xmalloc(strlen(url) + 8);

		sprintf(shown, "%.*s***%s", (int)(host + 3 - url), url, at);
		json_object_set_new(d, "url", json_string(shown));
		free(shown);
	}
	return d ? d : json_null();
}

static json_t *export_json(const struct store_export *x)
{
	char id[32], url[64];
	json_t *o;

	snprintf(id, sizeof(id), "exp_%lld", (long long)x->export_id);
	o = json_pack("{ss ss ss ss ss so sI so so so so so so sI}", "id", id, "audience",
		      x->audience_key, "status", x->status, "format", x->format, "mode", x->mode,
		      "fields", json_loads(x->fields_json, 0, NULL),
		      "rows_done", (json_int_t)x->rows_done,
		      "rows_total", x->rows_total >= 0 ? json_integer(x->rows_total) : json_null(),
		      "destination", destination_json(x->destination_json),
		      "error", x->error ? json_string(x->error) : json_null(),
		      "created_at", api_time_json((int64_t)(x->created_at * 1e6)),
		      "started_at", api_time_json((int64_t)(x->started_at * 1e6)),
		      "finished_at", api_time_json((int64_t)(x->finished_at * 1e6)),
		      "attempts", (json_int_t)x->attempts);
	if (strcmp(x->mode, "delta") == 0 && x->from_change >= 0)
		json_object_set_new(o, "changes", json_pack("{sI sI}", "after",
							     (json_int_t)x->from_change, "up_to",
							     (json_int_t)x->to_change));
	if (x->file_name) {
		snprintf(url, sizeof(url), "/v1/exports/%s/file", id);
		json_object_set_new(o, "file", json_pack("{ss sI ss}", "name", x->file_name,
							 "bytes", (json_int_t)x->file_bytes,
							 "url", url));
	}
	return o;
}

static void reply_file(struct api *a, struct http_request *req, const struct store_export *x)
{
	char name[64], *path, disp[128];
	struct stat st;
	size_t len;
	int fd;

	if (!a->exports_dir) {
		http_reply_json_error(req, 503, "unavailable", "exports are not running");
		return;
	}
	if (strcmp(x->status, "done") || !x->file_name) {
		http_reply_json_error(req, 409, strcmp(x->status, "failed") ? "not_ready" : "failed",
				      strcmp(x->status, "failed") ?
				      "the export has no file yet: see its status" :
				      "the export failed and has no file: see its status");
		return;
	}
	export_file_name(x, name, sizeof(name));
	len = strlen(a->exports_dir) + strlen(name) + 2;
	path = xmalloc(len);
	snprintf(path, len, "%s/%s", a->exports_dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		http_reply_json_error(req, 410, "gone", "the export's file is no longer in the "
				      "data folder");
		return;
	}
	snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", name);
	http_reply_add_header(req, "Content-Disposition", disp);
	http_reply_file(req, 200, strcmp(x->format, "csv") ? "application/x-ndjson" :
		   "text/csv; charset=utf-8", fd, (size_t)st.st_size);
}

static void get_done(struct worker_task *t)
{
	struct get_task *g = (struct get_task *)t;

	if (g->rc == WEFT_ENOTFOUND) {
		http_reply_json_error(g->req, 404, "not_found", "no such export");
	} else if (g->rc) {
		reply_unavailable(g->req);
	} else if (g->file) {
		reply_file(g->a, g->req, &g->x);
	} else {
		json_t *body = export_json(&g->x);

		api_reply_json(g->req, 200, body);
		json_decref(body);
	}
	store_export_release(&g->x);
	free(g);
}

void api_exports(struct api *a, struct http_request *req, const char *rest)
{
	const struct api_key *k;
	const char *slash = strchr(rest, '/');
	struct get_task *g;
	char *end;
	long long n;

	if (!api_method_is(req, "GET") ||
	    !(k = api_authenticate(a, req, NULL, STORE_ROLE_READ)))
		return;
	if (strncmp(rest, "exp_", 4) || (n = strtoll(rest + 4, &end, 10)) <= 0 ||
	    end == rest + 4 || (*end && (end != slash || strcmp(slash, "/file")))) {
		http_reply_json_error(req, 404, "not_found", "no such export");
		return;
	}
	g = xcalloc(1, sizeof(*g));
	g->t.run = get_run;
	g->t.done = get_done;
	g->a = a;
	g->req = req;
	g->workspace_id = k->workspace_id;
	g->export_id = n;
	g->file = *end != '\0';
	worker_submit(a->control, &g->t);
}
