/*
 * The control worker: a thread with its own database connection for
 * everything the loop needs from PostgreSQL that is not the event log.
 * Every two seconds it reloads API keys and workspace privacy policies
 * (small tables) and checks the schema, which is what /readyz reports;
 * admin writes (a new privacy policy) run here too.
 */
#include "api/api_int.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/log.h"
#include "privacy/privacy.h"

#define REFRESH_MS 2000

struct refresh_task {
	struct worker_task t;
	struct api *a;
	int rc;
	struct store_key *keys;
	size_t nkeys;
	struct store_policy_row *policies;
	size_t npolicies;
};

struct policy_task {
	struct worker_task t;
	struct api *a;
	int64_t workspace_id;
	char *json;
	struct privacy_policy *parsed;
	struct http_request *req;
	int rc;
};

/* On the worker thread (or before it serves anything). */
int api_control_conn(struct api *a)
{
	if (!a->control_store)
		return store_connect(a->cfg.database_url, &a->control_store);
	if (store_ping(a->control_store) == 0)
		return 0;
	return store_reconnect(a->control_store);
}

struct api_workspace *api_workspace_get(struct api *a, int64_t workspace_id)
{
	for (size_t i = 0; i < a->nworkspaces; i++)
		if (a->workspaces[i].workspace_id == workspace_id)
			return &a->workspaces[i];
	a->workspaces = xrealloc(a->workspaces, xmul(a->nworkspaces + 1,
						     sizeof(*a->workspaces)));

	struct api_workspace *w = &a->workspaces[a->nworkspaces++];

	memset(w, 0, sizeof(*w));
	w->workspace_id = workspace_id;
	w->hasher = privacy_hasher_new(a->master, workspace_id);
	return w;
}

static void set_policy(struct api_workspace *w, const char *json,
		       struct privacy_policy *parsed)
{
	privacy_policy_free(w->policy);
	free(w->policy_json);
	w->policy = parsed;
	w->policy_json = xstrdup(json);
}

static void refresh_run(struct worker_task *t)
{
	struct refresh_task *r = (struct refresh_task *)t;
	struct api *a = r->a;

	r->rc = api_control_conn(a);
	if (!r->rc)
		r->rc = store_schema_check(a->control_store);
	if (!r->rc)
		r->rc = store_keys_load(a->control_store, NULL, false, &r->keys,
					&r->nkeys);
	if (!r->rc)
		r->rc = store_policies_load(a->control_store, &r->policies,
					    &r->npolicies);
}

/* On the loop: swap in what the refresh read. */
static void refresh_apply(struct refresh_task *r)
{
	struct api *a = r->a;

	if (r->rc) {
		if (a->db_ready)
			log_warn("control_refresh_failed", "error=\"%s\"",
				 weft_strerror(r->rc));
		a->db_ready = false;	/* keys stay as last read */
		return;
	}
	a->db_ready = true;
	api_keyring_release(&a->keys);
	api_keyring_build(&a->keys, r->keys, r->nkeys);
	for (size_t i = 0; i < r->nkeys; i++)
		api_workspace_get(a, r->keys[i].workspace_id);
	for (size_t i = 0; i < r->npolicies; i++) {
		struct api_workspace *w = api_workspace_get(a, r->policies[i].workspace_id);
		const char *json = r->policies[i].policy_json;
		struct privacy_policy *p;
		struct buf err = BUF_INIT;

		if (w->policy_json && strcmp(w->policy_json, json) == 0)
			continue;
		if (privacy_policy_parse(json, strlen(json), &p, &err)) {
			log_error("policy_invalid", "workspace=%lld error=\"%s\"",
				  (long long)w->workspace_id, err.data ? err.data : "");
			buf_release(&err);
			continue;
		}
		set_policy(w, json, p);
		buf_release(&err);
	}
}

static void refresh_free(struct refresh_task *r)
{
	free(r->keys);
	if (r->policies)
		store_policy_rows_free(r->policies, r->npolicies);
	free(r);
}

static void refresh_done(struct worker_task *t)
{
	struct refresh_task *r = (struct refresh_task *)t;

	refresh_apply(r);
	r->a->refresh_running = false;
	refresh_free(r);
}

static struct refresh_task *refresh_new(struct api *a)
{
	struct refresh_task *r = xcalloc(1, sizeof(*r));

	r->t.run = refresh_run;
	r->t.done = refresh_done;
	r->a = a;
	return r;
}

int api_control_refresh_now(struct api *a)
{
	struct refresh_task *r = refresh_new(a);
	int rc;

	refresh_run(&r->t);
	refresh_apply(r);
	rc = r->rc;
	refresh_free(r);
	return rc;
}

static void on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
	struct api *a = arg;

	(void)fd;
	(void)what;
	if (a->refresh_running || a->stopping)
		return;
	a->refresh_running = true;
	worker_submit(a->control, &refresh_new(a)->t);
}

void api_control_start(struct api *a)
{
	struct timeval tv = { REFRESH_MS / 1000, (REFRESH_MS % 1000) * 1000 };

	a->control = worker_new(a->base, "control");
	a->refresh_timer = event_new(a->base, -1, EV_PERSIST, on_refresh_timer, a);
	event_add(a->refresh_timer, &tv);
}

static void policy_run(struct worker_task *t)
{
	struct policy_task *p = (struct policy_task *)t;

	p->rc = api_control_conn(p->a);
	if (!p->rc)
		p->rc = store_policy_save(p->a->control_store, p->workspace_id,
					  p->json);
}

static void policy_done(struct worker_task *t)
{
	struct policy_task *p = (struct policy_task *)t;

	if (p->rc) {
		privacy_policy_free(p->parsed);
		http_reply_add_header(p->req, "Retry-After", "2");
		http_reply_json_error(p->req, 503, "unavailable",
			"the database is unreachable; the policy was not saved");
	} else {
		json_t *body = privacy_policy_to_json(p->parsed);

		set_policy(api_workspace_get(p->a, p->workspace_id), p->json,
			   p->parsed);
		log_info("policy_saved", "workspace=%lld",
			 (long long)p->workspace_id);
		api_reply_json(p->req, 200, body);
		json_decref(body);
	}
	free(p->json);
	free(p);
}

void api_control_save_policy(struct api *a, int64_t workspace_id,
			     const char *json, struct privacy_policy *parsed,
			     struct http_request *req)
{
	struct policy_task *p = xcalloc(1, sizeof(*p));

	p->t.run = policy_run;
	p->t.done = policy_done;
	p->a = a;
	p->workspace_id = workspace_id;
	p->json = xstrdup(json);
	p->parsed = parsed;
	p->req = req;
	worker_submit(a->control, &p->t);
}

void api_control_stop(struct api *a)
{
	if (a->refresh_timer) {
		event_free(a->refresh_timer);
		a->refresh_timer = NULL;
	}
	worker_free(a->control);	/* runs and delivers what is queued */
	a->control = NULL;
	store_free(a->control_store);
	a->control_store = NULL;
}
