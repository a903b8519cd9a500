/*
 * The control worker: a thread with its own database connection for
 * everything the loop needs from PostgreSQL that is not the event log.
 * Every two seconds it reloads API keys and workspace privacy policies
 * (small tables), and each workspace's suppressed identifier keys when
 * that list changed, and checks the schema, which is what /readyz
 * reports; admin writes (a new privacy policy) run here too.
 */
#include "api/api_int.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/keyset.h"
#include "lib/log.h"
#include "privacy/privacy.h"

#define REFRESH_MS 2000

/*
 * One workspace's suppression list in a refresh: its stamp as the loop
 * had it when the refresh began (seen) and, for a list that changed, the
 * new stamp and the set read on the worker.
 */
struct suppress_list {
	int64_t workspace_id;
	int64_t keys, latest_us;	/* the stamp */
	uint64_t calls;			/* the workspace's suppress_calls then */
	struct keyset *set;		/* NULL: no keys */
};

struct refresh_task {
	struct worker_task t;
	struct api *a;
	int rc;
	struct store_key *keys;
	size_t nkeys;
	struct store_policy_row *policies;
	size_t npolicies;
	struct suppress_list *seen;	/* every workspace, taken on the loop */
	size_t nseen;
	struct suppress_list *changed;	/* lists to swap in */
	size_t nchanged;
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

static struct suppress_list *list_find(struct suppress_list *l, size_t n,
				       int64_t workspace_id)
{
	for (size_t i = 0; i < n; i++)
		if (l[i].workspace_id == workspace_id)
			return &l[i];
	return NULL;
}

static struct suppress_list *changed_add(struct refresh_task *r,
					 int64_t workspace_id, int64_t keys,
					 int64_t latest_us)
{
	struct suppress_list *was = list_find(r->seen, r->nseen, workspace_id);
	struct suppress_list *l;

	r->changed = xrealloc(r->changed, xmul(r->nchanged + 1, sizeof(*l)));
	l = &r->changed[r->nchanged++];
	l->workspace_id = workspace_id;
	l->keys = keys;
	l->latest_us = latest_us;
	l->calls = was ? was->calls : 0;
	l->set = keys ? keyset_new((size_t)keys) : NULL;
	return l;
}

static int suppressed_key(void *arg, int64_t workspace_id, const uint8_t key[16])
{
	struct refresh_task *r = arg;
	struct suppress_list *l = list_find(r->changed, r->nchanged, workspace_id);

	/* Rows added since the stamps were read show up in the next ones. */
	if (l && l->set)
		keyset_add(l->set, key);
	return 0;
}

/*
 * On the worker: compares each workspace's stamp with what the loop had
 * and reads the whole list only if one changed (then every changed
 * workspace's set is rebuilt from it), so a long list is not read every
 * refresh.
 */
static int suppressed_refresh(struct refresh_task *r)
{
	struct store_suppressed_stamp *st;
	size_t n;
	bool read = false;
	int rc = store_suppressed_keys_stamps(r->a->control_store, &st, &n);

	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct suppress_list *was = list_find(r->seen, r->nseen,
						      st[i].workspace_id);

		if (was && was->keys == st[i].keys &&
		    was->latest_us == st[i].latest_us)
			continue;
		changed_add(r, st[i].workspace_id, st[i].keys, st[i].latest_us);
		read = true;
	}
	/* A list emptied (keys deleted) has no stamp any more. */
	for (size_t i = 0; i < r->nseen; i++) {
		bool listed = false;

		for (size_t k = 0; k < n && !listed; k++)
			listed = st[k].workspace_id == r->seen[i].workspace_id;
		if (!listed && r->seen[i].keys != 0)
			changed_add(r, r->seen[i].workspace_id, 0, 0);
	}
	free(st);
	if (read)
		rc = store_suppressed_keys_load(r->a->control_store,
						suppressed_key, r);
	return rc;
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
	if (!r->rc)
		r->rc = suppressed_refresh(r);
}

/*
 * On the loop: swaps in the suppression lists that changed, unless
 * api_suppress_now() added keys to one since the refresh began; those
 * keys may be missing from what was read, so the set in use (which has
 * them) stays, and the next refresh reads the list again.
 */
static void suppressed_apply(struct refresh_task *r)
{
	for (size_t i = 0; i < r->nchanged; i++) {
		struct suppress_list *l = &r->changed[i];
		struct api_workspace *w = api_workspace_get(r->a, l->workspace_id);

		if (w->suppress_calls != l->calls) {
			w->suppressed_keys = -1;
			continue;
		}
		keyset_free(w->suppressed);
		w->suppressed = l->set;
		l->set = NULL;
		w->suppressed_keys = l->keys;
		w->suppressed_latest_us = l->latest_us;
		log_info("suppressed_keys_loaded", "workspace=%lld keys=%zu",
			 (long long)w->workspace_id,
			 w->suppressed ? keyset_count(w->suppressed) : 0);
	}
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
	for (size_t i = 0; i < r->nkeys; i++) {
		struct api_workspace *w = api_workspace_get(a, r->keys[i].workspace_id);

		snprintf(w->name, sizeof(w->name), "%s", r->keys[i].workspace);
	}
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
	suppressed_apply(r);
}

static void refresh_free(struct refresh_task *r)
{
	free(r->keys);
	if (r->policies)
		store_policy_rows_free(r->policies, r->npolicies);
	for (size_t i = 0; i < r->nchanged; i++)
		keyset_free(r->changed[i].set);
	free(r->changed);
	free(r->seen);
	free(r);
}

static void refresh_done(struct worker_task *t)
{
	struct refresh_task *r = (struct refresh_task *)t;

	refresh_apply(r);
	r->a->refresh_running = false;
	refresh_free(r);
}

/* On the loop: what the refresh compares the suppression lists with. */
static struct refresh_task *refresh_new(struct api *a)
{
	struct refresh_task *r = xcalloc(1, sizeof(*r));

	r->t.run = refresh_run;
	r->t.done = refresh_done;
	r->a = a;
	r->seen = xcalloc(a->nworkspaces, sizeof(*r->seen));
	r->nseen = a->nworkspaces;
	for (size_t i = 0; i < a->nworkspaces; i++) {
		const struct api_workspace *w = &a->workspaces[i];

		r->seen[i].workspace_id = w->workspace_id;
		r->seen[i].keys = w->suppressed_keys;
		r->seen[i].latest_us = w->suppressed_latest_us;
		r->seen[i].calls = w->suppress_calls;
	}
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

void api_suppress_now(struct api *a, int64_t workspace_id,
		      const uint8_t (*keys)[16], size_t n)
{
	struct api_workspace *w = api_workspace_get(a, workspace_id);

	if (!w->suppressed)
		w->suppressed = keyset_new(n);
	for (size_t i = 0; i < n; i++)
		keyset_add(w->suppressed, keys[i]);
	w->suppress_calls++;
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
	/* The suppression lists are the refreshes': they go with them. */
	for (size_t i = 0; i < a->nworkspaces; i++) {
		keyset_free(a->workspaces[i].suppressed);
		a->workspaces[i].suppressed = NULL;
	}
}
