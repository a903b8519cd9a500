/*
 * Erase and suppress (docs/profiles.md#erase): DELETE
 * /v1/profiles/{type}:{value}[?suppress=true] and GET
 * /v1/admin/erasures/{id}, both with an admin key.
 *
 * The engine records the erasure (and the suppression list) in the
 * database, then wipes the person from memory; the reply is 202 with the
 * job's id. The jobs worker, a thread with its own connection, then
 * deletes every event and rejected event carrying one of the person's
 * identifier keys and marks the erasure done: the row that remains is the
 * audit record (who asked, when, how many rows went; no personal data).
 * Erasures a restart interrupted are finished when the server starts.
 */
#include "api/api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

/* ---- the jobs worker: deleting the rows ---- */

/* How long a job waits for the engine's save after the wipe before leaving it to the next start. */
#define SAVE_WAIT_MS 60000
#define SAVE_POLL_MS 100

struct erase_job {
	struct worker_task t;
	struct api *a;
	int64_t workspace_id, erasure_id;
};

static int jobs_conn(struct api *a)
{
	if (a->jobs_store && store_ping(a->jobs_store) == 0)
		return 0;
	store_free(a->jobs_store);
	a->jobs_store = NULL;
	return store_connect(a->cfg.database_url, &a->jobs_store);
}

/* Deletes an erasure's rows, then marks it done once the engine saved its state after the wipe. */
static void erase_rows(struct api *a, int64_t ws, int64_t id)
{
	struct store_erasure_counts c;
	int rc = jobs_conn(a), waited = 0;

	if (!rc)
		rc = store_erasure_delete_rows(a->jobs_store, ws, id, &c);
	if (rc == WEFT_ENOTFOUND)
		return;	/* already done (its own job, queued in this run, finished it) */
	while (!rc || rc == WEFT_ECONFLICT) {
		rc = store_erasure_finish(a->jobs_store, ws, id, &c, NULL);
		if (rc != WEFT_ECONFLICT || waited >= SAVE_WAIT_MS)
			break;
		struct timespec ts = { 0, SAVE_POLL_MS * 1000000L };

		nanosleep(&ts, NULL);
		waited += SAVE_POLL_MS;
	}
	if (rc) {
		/* Left running: the next start finishes it. */
		log_error("erasure_unfinished", "workspace=%lld erasure=%lld error=%s",
			  (long long)ws, (long long)id,
			  rc == WEFT_ECONFLICT ? "the engine did not save its state" :
			  weft_strerror(rc));
		return;
	}
	log_info("erasure_done", "workspace=%lld erasure=%lld events=%lld scrubbed=%lld "
		 "rejected=%lld", (long long)ws, (long long)id, (long long)c.events_deleted,
		 (long long)c.events_scrubbed, (long long)c.rejected_deleted);
}

static void job_run(struct worker_task *t)
{
	struct erase_job *j = (struct erase_job *)t;

	erase_rows(j->a, j->workspace_id, j->erasure_id);
}

static void job_done(struct worker_task *t)
{
	free(t);
}

static void start_job(struct api *a, int64_t ws, int64_t id)
{
	struct erase_job *j = xcalloc(1, sizeof(*j));

	j->t.run = job_run;
	j->t.done = job_done;
	j->a = a;
	j->workspace_id = ws;
	j->erasure_id = id;
	worker_submit(a->jobs, &j->t);
}

/* At start: the erasures a stop interrupted. */
struct resume {
	struct worker_task t;
	struct api *a;
	int64_t (*ids)[2];
	size_t n;
};

static int note_pending(void *arg, int64_t ws, int64_t id, const struct store_erasure_scope *sc)
{
	struct resume *r = arg;

	(void)sc;
	r->ids = xrealloc(r->ids, xmul(r->n + 1, sizeof(*r->ids)));
	r->ids[r->n][0] = ws;
	r->ids[r->n++][1] = id;
	return 0;
}

static void resume_run(struct worker_task *t)
{
	struct resume *r = (struct resume *)t;
	int rc = jobs_conn(r->a);

	if (!rc)
		rc = store_erasures_pending(r->a->jobs_store, note_pending, r);
	if (rc)
		log_warn("erasure_resume_failed", "error=%s", weft_strerror(rc));
	for (size_t i = 0; i < r->n; i++) {
		log_info("erasure_resumed", "workspace=%lld erasure=%lld", (long long)r->ids[i][0],
			 (long long)r->ids[i][1]);
		erase_rows(r->a, r->ids[i][0], r->ids[i][1]);
	}
}

static void resume_done(struct worker_task *t)
{
	struct resume *r = (struct resume *)t;

	free(r->ids);
	free(r);
}

void api_erase_start(struct api *a)
{
	struct resume *r = xcalloc(1, sizeof(*r));

	a->jobs = worker_new(a->base, "jobs");
	r->t.run = resume_run;
	r->t.done = resume_done;
	r->a = a;
	worker_submit(a->jobs, &r->t);
}

void api_erase_stop(struct api *a)
{
	worker_free(a->jobs);	/* finishes the job under way; the rest resume next start */
	a->jobs = NULL;
	store_free(a->jobs_store);
	a->jobs_store = NULL;
}

/* ---- DELETE /v1/profiles/{type}:{value} ---- */

struct erase_cmd {
	struct engine_cmd c;
	struct api *a;
	struct http_request *req;
	int64_t workspace_id, key_id;
	uint64_t profile_id;
	bool suppress;
	struct engine_erasure out;
};

static void erase_run(struct engine *e, struct engine_cmd *c)
{
	struct erase_cmd *x = (struct erase_cmd *)c;

	c->result = engine_erase_profile(e, x->workspace_id, x->profile_id, x->suppress,
					 x->key_id, &x->out);
}

static void erase_done(struct engine_cmd *c)
{
	struct erase_cmd *x = (struct erase_cmd *)c;
	char id[32];

	if (c->result == WEFT_ENOTFOUND) {
		http_reply_json_error(x->req, 404, "not_found", "Profile was not found.");
	} else if (c->result) {
		http_reply_add_header(x->req, "Retry-After", "2");
		http_reply_json_error(x->req, 503, "unavailable",
				      "the database is unreachable; nothing was erased, retry shortly");
	} else {
		json_t *body;

		/* Suppression holds from this reply on, not from the next refresh. */
		if (x->suppress)
			api_suppress_now(x->a, x->workspace_id, (const uint8_t (*)[16])x->out.keys,
					 x->out.nkeys);
		char where[64];

		snprintf(id, sizeof(id), "ers_%lld", (long long)x->out.erasure_id);
		snprintf(where, sizeof(where), "/v1/admin/erasures/%s", id);
		body = json_pack("{ss ss sI sb}", "erasure_id", id, "status", "running",
				 "identifiers", (json_int_t)x->out.nkeys, "suppress", x->suppress);
		http_reply_add_header(x->req, "Location", where);
		api_reply_json(x->req, 202, body);
		json_decref(body);
		start_job(x->a, x->workspace_id, x->out.erasure_id);
	}
	free(x->out.keys);
	free(x);
}

void api_erase_profile(struct api *a, struct http_request *req, const char *ident, size_t len)
{
	const struct api_key *key;
	const char *error = NULL;
	char value[16];
	struct erase_cmd *x;
	uint64_t pid = 0;
	bool suppress = false;

	if (!(key = api_authenticate(a, req, NULL, STORE_ROLE_ADMIN)) || api_engine_unready(a, req))
		return;
	if (api_query_param(http_request_query(req), "suppress", value, sizeof(value))) {
		if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0) {
			suppress = true;
		} else if (strcmp(value, "false") && strcmp(value, "0")) {
			http_reply_json_error(req, 400, "invalid_parameter",
					      "suppress is true or false");
			return;
		}
	}
	engine_read_begin(a->engine);
	if (api_resolve_profile(a, api_workspace_get(a, key->workspace_id),
				engine_graph(a->engine, key->workspace_id), ident, len, &pid,
				&error)) {
		engine_read_end(a->engine);
		http_reply_json_error(req, 400, "invalid_identifier", error);
		return;
	}
	engine_read_end(a->engine);
	if (!pid) {
		http_reply_json_error(req, 404, "not_found", "Profile was not found.");
		return;
	}
	x = xcalloc(1, sizeof(*x));
	x->c.run = erase_run;
	x->c.done = erase_done;
	x->a = a;
	x->req = req;
	x->workspace_id = key->workspace_id;
	x->key_id = key->key_id;
	x->profile_id = pid;
	x->suppress = suppress;
	engine_submit(a->engine, &x->c, a->base);
}

/* ---- GET /v1/admin/erasures/{id} ---- */

struct status_task {
	struct worker_task t;
	struct api *a;
	struct http_request *req;
	int64_t workspace_id, erasure_id;
	struct store_erasure e;
	int rc;
};

static void status_run(struct worker_task *t)
{
	struct status_task *s = (struct status_task *)t;

	s->rc = api_control_conn(s->a);
	if (!s->rc)
		s->rc = store_erasure_get(s->a->control_store, s->workspace_id, s->erasure_id,
					  &s->e);
}

static void status_done(struct worker_task *t)
{
	struct status_task *s = (struct status_task *)t;
	char id[32];

	if (s->rc == WEFT_ENOTFOUND) {
		http_reply_json_error(s->req, 404, "not_found", "no such erasure");
	} else if (s->rc) {
		http_reply_add_header(s->req, "Retry-After", "2");
		http_reply_json_error(s->req, 503, "unavailable", "the database is unreachable");
	} else {
		json_t *body;

		snprintf(id, sizeof(id), "ers_%lld", (long long)s->erasure_id);
		body = json_pack("{ss ss sb so so sI sI sI sI sI so}", "erasure_id", id,
				 "status", s->e.status, "suppress", s->e.suppress,
				 "requested_at", api_time_json((int64_t)(s->e.requested_at * 1e6)),
				 "finished_at", api_time_json((int64_t)(s->e.finished_at * 1e6)),
				 "profiles", (json_int_t)s->e.profiles,
				 "identifiers", (json_int_t)s->e.identifiers,
				 "events_deleted", (json_int_t)s->e.events_deleted,
				 "events_scrubbed", (json_int_t)s->e.events_scrubbed,
				 "rejected_deleted", (json_int_t)s->e.rejected_deleted,
				 "error", s->e.error[0] ? json_string(s->e.error) : json_null());
		if (s->e.key_id)
			json_object_set_new(body, "requested_by_key_id", json_integer(s->e.key_id));
		api_reply_json(s->req, 200, body);
		json_decref(body);
	}
	free(s);
}

void api_erasure_status(struct api *a, struct http_request *req, const char *id)
{
	const struct api_key *key;
	struct status_task *s;
	char *end;
	long long n;

	if (strcmp(http_request_method(req), "GET")) {
		http_reply_add_header(req, "Allow", "GET");
		http_reply_json_error(req, 405, "method_not_allowed", "use GET");
		return;
	}
	if (!(key = api_authenticate(a, req, NULL, STORE_ROLE_ADMIN)))
		return;
	if (strncmp(id, "ers_", 4) || !id[4] || (n = strtoll(id + 4, &end, 10), *end) || n <= 0) {
		http_reply_json_error(req, 404, "not_found", "no such erasure");
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->t.run = status_run;
	s->t.done = status_done;
	s->a = a;
	s->req = req;
	s->workspace_id = key->workspace_id;
	s->erasure_id = n;
	worker_submit(a->control, &s->t);
}
