/*
 * The engine's side of audiences and computed traits: loading the
 * definitions with the state, replaying the log into new aggregates
 * (backfill), sliding windows as time passes, and the commands the API
 * runs to change definitions (docs/audiences.md).
 *
 * A backfill attributes each past event to the profile the profile store
 * recorded it on (its event history), not by matching it again, so that
 * a definition added later reads exactly what one defined from the start
 * would have read.
 */
#include "engine/engine_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

int64_t engine_clock(struct engine *e)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec +
	       __atomic_load_n(&e->clock_offset_us, __ATOMIC_RELAXED);
}

const struct audience_space *engine_audiences(struct engine *e, int64_t workspace_id)
{
	struct engine_ws *w = engine_ws_find(e, workspace_id, false);

	return w ? w->as : NULL;
}

void engine_audiences_erased(struct engine *e, struct engine_ws *w, uint64_t pid)
{
	e->erased_pids = xrealloc(e->erased_pids, xmul(e->nerased_pids + 1,
						       sizeof(*e->erased_pids)));
	e->erased_pids[e->nerased_pids++] = (struct store_profile_ref){ w->id, (int64_t)pid };
}

/* ---- backfill ---- */

struct attribution {
	int64_t seq;
	uint64_t pid;
};

struct backfill {
	struct audience_space *as;
	struct attribution *at;
	size_t n, next;
	int64_t now_us;
	uint64_t events;		/* applied to an aggregate */
	int64_t done;			/* attributed events read */
	void (*progress)(void *arg, int64_t done);
	void *arg;
};

static int attribution_cmp(const void *a, const void *b)
{
	int64_t x = ((const struct attribution *)a)->seq, y = ((const struct attribution *)b)->seq;

	return (x > y) - (x < y);
}

static int backfill_row(void *arg, const char *tuple, size_t len)
{
	struct backfill *bf = arg;
	int64_t ws, seq, ts;
	char name[256];
	const char *payload;
	size_t plen;
	json_t *root;

	if (engine_row_brief(tuple, len, &ws, &seq, &ts, name, &payload, &plen))
		return 0;
	while (bf->next < bf->n && bf->at[bf->next].seq < seq)
		bf->next++;
	if (bf->next == bf->n || bf->at[bf->next].seq != seq)
		return 0;
	if (++bf->done % 4096 == 0 && bf->progress)
		bf->progress(bf->arg, bf->done);
	if (!audience_space_wants(bf->as, name, true))
		return 0;
	root = json_loadb(payload, plen, 0, NULL);
	audience_space_backfill(bf->as, bf->at[bf->next].pid, ts, name,
				json_object_get(root, "properties"), bf->now_us);
	json_decref(root);
	bf->events++;
	return 0;
}

int engine_audiences_replay(struct engine *e, struct engine_ws *w, struct audience_space *as,
			    int64_t now_us, void (*progress)(void *arg, int64_t done), void *arg,
			    uint64_t *events)
{
	struct backfill bf = {
		.as = as, .now_us = now_us, .progress = progress, .arg = arg,
	};
	int64_t upto = w->applied > e->applied ? w->applied : e->applied;
	size_t cap = 0;
	int rc = 0;

	if (events)
		*events = 0;
	if (!audience_space_pending(as))
		return 0;
	for (uint64_t pid = profile_store_next(w->ps, 0); pid;
	     pid = profile_store_next(w->ps, pid)) {
		size_t k;
		int64_t *seqs = profile_store_events_all(w->ps, pid, &k);

		if (bf.n + k > cap) {
			cap = (bf.n + k) * 2;
			bf.at = xrealloc(bf.at, xmul(cap, sizeof(*bf.at)));
		}
		for (size_t i = 0; i < k; i++)
			bf.at[bf.n++] = (struct attribution){ seqs[i], pid };
		free(seqs);
	}
	if (bf.n > 1)
		qsort(bf.at, bf.n, sizeof(*bf.at), attribution_cmp);
	/* The pending aggregates are read by no one: only the lists need the lock. */
	if (bf.n)
		rc = e->store ? store_log_read(e->store, w->id, 0, upto, backfill_row, &bf) :
				WEFT_EUNAVAIL;
	free(bf.at);
	if (events)
		*events = bf.events;
	return rc;
}

int engine_audiences_backfill(struct engine *e, struct engine_ws *w, enum audience_cause cause)
{
	double t0 = engine_now();
	uint64_t events;
	int rc = engine_audiences_replay(e, w, w->as, engine_clock(e), NULL, NULL, &events);

	if (rc)
		return rc;
	pthread_rwlock_wrlock(&e->rw);
	audience_space_settle(w->as, w->ps, engine_clock(e), cause);
	pthread_rwlock_unlock(&e->rw);
	if (events)
		log_info("audiences_backfilled", "workspace=%lld events=%llu seconds=%.3f",
			 (long long)w->id, (unsigned long long)events, engine_now() - t0);
	return 0;
}

/* ---- loading ---- */

static int define(struct audience_space *as, const struct store_def *d, char *err, size_t errlen)
{
	if (d->kind == STORE_DEF_COMPUTED_TRAIT)
		return audience_space_define_ct(as, d->id, d->definition, err, errlen);
	return audience_space_define_audience(as, d->id, d->key, d->name, d->definition, err,
					      errlen);
}

/*
 * Installs d[0..n): each into its workspace's space or, with as, only
 * workspace ws's into as. Audiences may use audiences defined after them:
 * install in rounds until nothing more resolves (each round installs at
 * least one). Installing into the workspaces' spaces takes the write lock
 * (the caller's: readers see them); into as, a space no one reads yet,
 * needs none.
 */
static void install(struct engine *e, const struct store_def *d, size_t n, int64_t ws,
		    struct audience_space *as)
{
	bool *done = xcalloc(n + 1, sizeof(*done));
	size_t left = 0;

	for (size_t i = 0; i < n; i++) {
		done[i] = as && d[i].workspace_id != ws;
		left += !done[i];
	}
	for (bool progress = true; left && progress;) {
		progress = false;
		for (size_t i = 0; i < n; i++) {
			struct audience_space *into;
			char err[512];

			if (done[i])
				continue;
			into = as ? as : engine_ws_find(e, d[i].workspace_id, false)->as;
			if (define(into, &d[i], err, sizeof(err)))
				continue;
			done[i] = true;
			left--;
			progress = true;
		}
	}
	/* A recompute reads the definitions again: the engine's load has said this already. */
	for (size_t i = 0; !as && i < n; i++)
		if (!done[i])
			log_error("audience_definition_skipped", "workspace=%lld key=%s",
				  (long long)d[i].workspace_id, d[i].key);
	free(done);
}

struct audience_space *engine_audiences_space_new(struct engine *e, const struct engine_ws *w,
						  const struct store_def *d, size_t n)
{
	struct audience_space *as = audience_space_new();

	install(e, d, n, w->id, as);
	return as;
}

int engine_audiences_load(struct engine *e)
{
	struct store_def *d;
	size_t n;
	int rc = store_defs_load(e->store, &d, &n);

	if (rc)
		return rc;
	/* Created before the lock is taken: creating one takes it too. */
	for (size_t i = 0; i < n; i++)
		engine_ws_find(e, d[i].workspace_id, true);
	pthread_rwlock_wrlock(&e->rw);
	install(e, d, n, 0, NULL);
	for (size_t i = 0; i < e->nws; i++) {
		struct engine_ws *w = &e->ws[i];

		if (w->as_snap.len && audience_space_restore(w->as, w->as_snap.data, w->as_snap.len))
			log_warn("audiences_state_unreadable", "workspace=%lld", (long long)w->id);
		buf_release(&w->as_snap);
	}
	pthread_rwlock_unlock(&e->rw);
	store_defs_free(d, n);
	for (size_t i = 0; !rc && i < e->nws; i++)
		rc = engine_audiences_backfill(e, &e->ws[i], AUDIENCE_CAUSE_DEFINITION);
	return rc;
}

/* ---- time ---- */

static void tick(struct engine *e)
{
	int64_t now = engine_clock(e);

	for (size_t i = 0; i < e->nws; i++) {
		struct engine_ws *w = &e->ws[i];
		size_t n;

		if (!audience_space_audiences(w->as))
			continue;
		pthread_rwlock_wrlock(&e->rw);
		n = audience_space_tick(w->as, w->ps, now);
		pthread_rwlock_unlock(&e->rw);
		if (n) {
			log_info("audiences_windows_slid", "workspace=%lld profiles=%zu",
				 (long long)w->id, n);
			/* No event may follow for a while: save the changes now. */
			e->cp_soon = true;
		}
	}
}

void engine_audiences_tick(struct engine *e)
{
	double now = engine_now();

	if (now - e->last_tick < 1.0)
		return;
	e->last_tick = now;
	tick(e);
}

void engine_clock_set(struct engine *e, int64_t now_us)
{
	int64_t off = now_us - (engine_clock(e) - __atomic_load_n(&e->clock_offset_us,
								      __ATOMIC_RELAXED));

	__atomic_store_n(&e->clock_offset_us, off, __ATOMIC_RELAXED);
	tick(e);
	e->last_tick = engine_now();
}

/* ---- commands ---- */

int engine_audience_define(struct engine *e, int64_t workspace_id, enum store_def_kind kind,
			   const char *key, const char *name, const char *definition, bool create,
			   int64_t *id, char *err, size_t errlen)
{
	struct engine_ws *w = engine_ws_find(e, workspace_id, true);
	struct store_def d = {
		.workspace_id = workspace_id, .kind = kind, .key = (char *)key,
		.name = (char *)(name ? name : key), .definition = (char *)definition,
	};
	bool exists = kind == STORE_DEF_AUDIENCE ? audience_space_audience_find(w->as, key) >= 0 :
						   audience_space_ct_find(w->as, key) >= 0;
	int rc;

	*err = '\0';
	if (!e->store)
		return WEFT_EUNAVAIL;
	if (create && exists)
		return WEFT_ECONFLICT;
	if (!create && !exists)
		return WEFT_ENOTFOUND;
	/* The check resolves into the space (and lets go again): readers wait. */
	if (kind == STORE_DEF_AUDIENCE) {
		pthread_rwlock_wrlock(&e->rw);
		rc = audience_space_check_audience(w->as, key, definition, err, errlen);
		pthread_rwlock_unlock(&e->rw);
		if (rc)
			return rc;
	}
	if ((rc = store_def_put(e->store, workspace_id, kind, key, name, definition, create, id)))
		return rc;
	d.id = *id;
	pthread_rwlock_wrlock(&e->rw);
	rc = define(w->as, &d, err, errlen);
	pthread_rwlock_unlock(&e->rw);
	if (rc) {
		/* Checked above, so not expected: keep the database as the memory is. */
		log_error("audience_define_failed", "workspace=%lld key=%s error=\"%s\"",
			  (long long)workspace_id, key, err);
		if (create)
			store_def_delete(e->store, workspace_id, kind, key);
		return rc;
	}
	rc = engine_audiences_backfill(e, w, AUDIENCE_CAUSE_DEFINITION);
	e->cp_soon = true;
	log_info("audience_defined", "workspace=%lld kind=%s key=%s id=%lld", (long long)workspace_id,
		 kind == STORE_DEF_AUDIENCE ? "audience" : "computed_trait", key, (long long)*id);
	return rc;
}

int engine_audience_remove(struct engine *e, int64_t workspace_id, enum store_def_kind kind,
			   const char *key, char *err, size_t errlen)
{
	struct engine_ws *w = engine_ws_find(e, workspace_id, true);
	long at = kind == STORE_DEF_AUDIENCE ? audience_space_audience_find(w->as, key) :
					       audience_space_ct_find(w->as, key);
	int rc;

	*err = '\0';
	if (!e->store)
		return WEFT_EUNAVAIL;
	if (at < 0)
		return WEFT_ENOTFOUND;
	/* The checks first (what uses it), then the database, then memory. */
	pthread_rwlock_wrlock(&e->rw);
	rc = kind == STORE_DEF_AUDIENCE ? audience_space_remove_audience(w->as, key, err, errlen) :
					  audience_space_remove_ct(w->as, key, err, errlen);
	pthread_rwlock_unlock(&e->rw);
	if (rc)
		return rc;
	rc = store_def_delete(e->store, workspace_id, kind, key);
	if (rc && rc != WEFT_ENOTFOUND)
		log_error("audience_remove_unsaved", "workspace=%lld key=%s error=%s: it returns "
			  "at the next start", (long long)workspace_id, key, weft_strerror(rc));
	e->cp_soon = true;
	return rc == WEFT_ENOTFOUND ? 0 : rc;
}

int engine_audience_preview(struct engine *e, int64_t workspace_id, const char *src,
			    uint64_t *size, uint64_t *sample, size_t max, size_t *nsample,
			    char *err, size_t errlen)
{
	struct engine_ws *w = engine_ws_find(e, workspace_id, true);
	int rc;

	*size = 0;
	*nsample = 0;
	pthread_rwlock_wrlock(&e->rw);
	rc = audience_space_preview_begin(w->as, src, err, errlen);
	pthread_rwlock_unlock(&e->rw);
	if (rc)
		return rc;
	if (audience_space_pending(w->as)) {
		/* Only the preview's aggregates are pending: replay the log into them. */
		rc = engine_audiences_backfill(e, w, AUDIENCE_CAUSE_DEFINITION);
	}
	pthread_rwlock_wrlock(&e->rw);
	audience_space_preview_end(w->as, w->ps, engine_clock(e), size, sample, max, nsample);
	pthread_rwlock_unlock(&e->rw);
	return rc;
}
