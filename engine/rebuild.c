/*
 * Rebuilding the engine's state from the log alone, and reading the saved
 * state's digests: what `weft identity rebuild` and `weft identity digest`
 * run (docs/cli.md). A rebuild holds the engine lock, so it never races a
 * server's engine; it applies the current rules and blocked values to the
 * whole log, so the same log and rules always give the same graph.
 */
#include "engine/engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "lib/log.h"

struct rebuild {
	struct engine *e;
	void (*progress)(void *arg, int64_t done, int64_t total);
	void *arg;
	int64_t done, total;
	double last;
};

static int rebuild_row(void *arg, const char *tuple, size_t len)
{
	struct rebuild *r = arg;
	double now;

	engine_apply_tuple(r->e, tuple, len);
	if ((++r->done & 4095) == 0 && r->progress && (now = engine_now()) - r->last > 0.2) {
		r->last = now;
		r->progress(r->arg, r->done, r->total);
	}
	return 0;
}

/* Replays workspace ws (after its graph was emptied) from the start of the log up to upto. */
static int replay(struct rebuild *r, int64_t ws, int64_t upto)
{
	struct engine *e = r->e;
	struct engine_ws *w = engine_ws_find(e, ws, true);
	int64_t keep = e->applied;
	int rc;

	e->applied = 0;
	w->applied = 0;
	rc = store_log_read(e->store, ws, 0, upto, rebuild_row, r);
	e->applied = keep;
	return rc;
}

/* Empties workspace w's graph, keeping nothing saved of it, so every page is written again. */
static void reset_ws(struct engine_ws *w)
{
	struct identity_rules *rules = identity_rules_new();

	identity_graph_free(w->g);
	w->g = identity_graph_new(rules);
	identity_rules_free(rules);
	profile_store_free(w->ps);
	w->ps = profile_store_new();
	audience_space_free(w->as);
	w->as = audience_space_new();
	buf_reset(&w->as_snap);
	for (int k = 0; k < ENGINE_SECTIONS; k++) {
		free(w->saved[k].hash);
		memset(&w->saved[k], 0, sizeof(w->saved[k]));
	}
}

int engine_rebuild(const char *database_url, const char *workspace,
		   void (*progress)(void *arg, int64_t done, int64_t total), void *arg,
		   char *err, size_t errlen)
{
	struct rebuild r = { .progress = progress, .arg = arg };
	struct engine *e;
	int64_t *ids = NULL, ws = 0, head = 0;
	size_t n = 0;
	int rc;

	if ((rc = engine_offline_connect(database_url, "another rebuild", &e, err, errlen)))
		goto out;
	r.e = e;
	if (workspace) {
		bool created;

		if ((rc = store_workspace_get(e->store, workspace, false, &ws, &created))) {
			snprintf(err, errlen, rc == WEFT_ENOTFOUND ? "no workspace called %s" :
				 "cannot read workspace %s", workspace);
			goto out;
		}
		/* The other workspaces stay as saved; this one is replayed up to the checkpoint. */
		if ((rc = engine_state_load(e)))
			goto failed;
		if (e->clear_all) {
			snprintf(err, errlen, "the saved state is of another version; rebuild every "
				 "workspace (no --workspace)");
			rc = WEFT_ECONFLICT;
			goto out;
		}
		reset_ws(engine_ws_find(e, ws, true));
		head = e->applied;
		ids = malloc(sizeof(*ids));
		ids[n++] = ws;
	} else {
		e->clear_all = true;
		if ((rc = store_log_head(e->store, &head)) ||
		    (rc = store_workspace_ids(e->store, &ids, &n)))
			goto failed;
	}
	r.total = head;
	if ((rc = engine_config_load(e)))
		goto failed;
	for (size_t i = 0; i < n && !rc; i++)
		rc = replay(&r, ids[i], head);
	if (rc)
		goto failed;
	e->applied = head;
	if (progress)
		progress(arg, r.done, r.done > r.total ? r.done : r.total);
	if ((rc = engine_state_save(e)))
		goto failed;
	log_info("engine_rebuilt", "workspaces=%zu events=%lld seq=%lld", n, (long long)r.done,
		 (long long)head);
	goto out;
failed:
	snprintf(err, errlen, "the rebuild failed: %s", weft_strerror(rc));
out:
	free(ids);
	engine_free(e);
	return rc;
}

int engine_saved_digests(const char *database_url,
			 void (*fn)(void *arg, int64_t workspace_id, const uint8_t digest[16],
				    const struct identity_stats *st),
			 void *arg, int64_t *checkpoint_seq, char *err, size_t errlen)
{
	struct engine *e;
	int rc;

	if ((rc = engine_offline_connect(database_url, NULL, &e, err, errlen)))
		goto out;
	if ((rc = engine_state_load(e))) {
		snprintf(err, errlen, "cannot read the saved state: %s", weft_strerror(rc));
		goto out;
	}
	*checkpoint_seq = e->applied;
	for (size_t i = 0; i < e->nws; i++) {
		uint8_t digest[16];
		struct identity_stats st;

		identity_graph_digest(e->ws[i].g, digest);
		identity_graph_stats(e->ws[i].g, &st);
		fn(arg, e->ws[i].id, digest, &st);
	}
out:
	engine_free(e);
	return rc;
}
