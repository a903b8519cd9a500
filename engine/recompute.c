/*
 * A full recompute of audiences and computed traits: what `weft audiences
 * recompute` runs (docs/cli.md). The engine's state is loaded as a server
 * would hold it now (offline.c); then, for each workspace with
 * definitions, a new space gets them, is filled from the whole log (each
 * event on the profile the profile store recorded it on, as a backfill
 * does) and settled, and is compared with the space the incremental path
 * kept, audience by audience and computed trait by computed trait.
 *
 * The two must agree: a difference is a bug of the incremental path, or a
 * log changed behind the engine's back. Unless only checking, the kept
 * space then takes the recomputed states and memberships
 * (audience_space_adopt, which records each entry and exit that implies
 * with cause recompute, and none of the new space's "everyone entered")
 * and the state is saved with the checkpoint. When everything agrees
 * nothing is saved: the next server replays what this process replayed.
 */
#include "engine/engine_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "lib/log.h"

/* Members read from a space at a time. */
#define MEMBERS_CHUNK 1024

struct recompute {
	void (*progress)(void *arg, int64_t done, int64_t total);
	void *arg;
	int64_t base;		/* events of the workspaces replayed before this one */
	int64_t total;		/* of every workspace to replay */
	double last;
};

/* Called by the replay every few thousand events: at most five times a second. */
static void replay_progress(void *arg, int64_t done)
{
	struct recompute *rp = arg;
	double now = engine_now();

	if (now - rp->last < 0.2)
		return;
	rp->last = now;
	rp->progress(rp->arg, rp->base + done, rp->total);
}

/* The members of one listed audience, ascending, read a chunk at a time. */
struct members {
	const struct audience_space *s;
	size_t i;
	uint64_t buf[MEMBERS_CHUNK];
	size_t n, at;
	bool end;
};

/* The next member, 0 after the last. */
static uint64_t members_next(struct members *m)
{
	if (m->at == m->n && !m->end) {
		uint64_t after = m->n ? m->buf[m->n - 1] : 0;

		m->n = audience_space_members(m->s, m->i, after, m->buf, MEMBERS_CHUNK);
		m->at = 0;
		m->end = m->n == 0;
	}
	return m->end ? 0 : m->buf[m->at++];
}

static void add_sample(uint64_t *sample, size_t *n, uint64_t pid)
{
	if (*n < ENGINE_RECOMPUTE_SAMPLES)
		sample[(*n)++] = pid;
}

/* Audience i of kept against audience j of fresh: both member lists walked together. */
static void compare_audience(const struct audience_space *kept, size_t i,
			     const struct audience_space *fresh, size_t j,
			     struct engine_recompute_report *r)
{
	struct members a = { .s = kept, .i = i }, b = { .s = fresh, .i = j };
	struct audience_info ia, ib;
	uint64_t x, y;

	audience_space_audience(kept, i, &ia);
	audience_space_audience(fresh, j, &ib);
	r->size = ia.size;
	r->recomputed_size = ib.size;
	x = members_next(&a);
	y = members_next(&b);
	while (x || y) {
		if (x && (!y || x < y)) {
			r->only_incremental++;
			add_sample(r->sample_incremental, &r->nsample_incremental, x);
			x = members_next(&a);
		} else if (y && (!x || y < x)) {
			r->only_recomputed++;
			add_sample(r->sample_recomputed, &r->nsample_recomputed, y);
			y = members_next(&b);
		} else {
			x = members_next(&a);
			y = members_next(&b);
		}
	}
	/* A wrong count with the right members is a difference too. */
	r->differs = r->only_incremental || r->only_recomputed || r->size != r->recomputed_size;
}

/*
 * Equal values. A sum or an average is folded in another order when
 * profiles merged than when their events come one after another: the
 * last bits of a real may differ without anything being wrong.
 */
static bool same_value(const json_t *a, const json_t *b)
{
	if (json_is_real(a) && json_is_real(b))
		return fabs(json_real_value(a) - json_real_value(b)) <=
		       1e-9 * (1 + fabs(json_real_value(a)));
	return json_equal(a, b);
}

/* Computed trait i of kept against j of fresh, for every profile of ps, at now. */
static void compare_ct(const struct audience_space *kept, size_t i,
		       const struct audience_space *fresh, size_t j,
		       const struct profile_store *ps, int64_t now,
		       struct engine_recompute_report *r)
{
	for (uint64_t pid = profile_store_next(ps, 0); pid; pid = profile_store_next(ps, pid)) {
		json_t *va = audience_space_ct_value(kept, i, pid, now);
		json_t *vb = audience_space_ct_value(fresh, j, pid, now);

		r->profiles++;
		if (!same_value(va, vb)) {
			r->differ++;
			add_sample(r->sample_differ, &r->nsample_differ, pid);
		}
		json_decref(va);
		json_decref(vb);
	}
	r->differs = r->differ != 0;
}

/* Compares w's kept space with fresh and reports each definition; returns how many differ. */
static size_t compare(struct engine_ws *w, const struct audience_space *fresh, int64_t now,
		      void (*report)(void *arg, const struct engine_recompute_report *r),
		      void *rarg)
{
	size_t differ = 0;

	for (size_t i = 0; i < audience_space_audiences(w->as); i++) {
		struct engine_recompute_report r = { .workspace_id = w->id, .audience = true };
		struct audience_info info;
		long j;

		audience_space_audience(w->as, i, &info);
		r.key = info.key;
		/* Both spaces hold the same definitions, installed the same way. */
		if ((j = audience_space_audience_find(fresh, info.key)) < 0) {
			log_warn("audience_recompute_missing", "workspace=%lld key=%s",
				 (long long)w->id, info.key);
			continue;
		}
		compare_audience(w->as, i, fresh, (size_t)j, &r);
		differ += r.differs;
		if (report)
			report(rarg, &r);
	}
	for (size_t i = 0; i < audience_space_cts(w->as); i++) {
		struct engine_recompute_report r = { .workspace_id = w->id };
		struct audience_ct_info info;
		long j;

		audience_space_ct(w->as, i, &info);
		r.key = info.key;
		if ((j = audience_space_ct_find(fresh, info.key)) < 0) {
			log_warn("computed_trait_recompute_missing", "workspace=%lld key=%s",
				 (long long)w->id, info.key);
			continue;
		}
		compare_ct(w->as, i, fresh, (size_t)j, w->ps, now, &r);
		differ += r.differs;
		if (report)
			report(rarg, &r);
	}
	return differ;
}

/* A workspace to recompute: the one asked for (or any), with definitions. */
static bool wanted(const struct engine_ws *w, int64_t only)
{
	return (!only || w->id == only) &&
	       (audience_space_audiences(w->as) || audience_space_cts(w->as));
}

static int64_t ws_events(const struct engine_ws *w)
{
	struct profile_store_stats st;

	profile_store_stats(w->ps, &st);
	return (int64_t)st.events;
}

int engine_audiences_recompute(const char *database_url, const char *workspace, bool check,
			       void (*progress)(void *arg, int64_t done, int64_t total), void *arg,
			       void (*report)(void *arg, const struct engine_recompute_report *r),
			       void *rarg, char *err, size_t errlen)
{
	struct recompute rp = { .progress = progress, .arg = arg };
	struct store_def *defs = NULL;
	size_t ndefs = 0, nws = 0, differ = 0;
	struct engine *e;
	int64_t only = 0, now;
	double t0 = engine_now();
	int rc;

	if ((rc = engine_offline_connect(database_url, "another command", &e, err, errlen)))
		goto out;
	if (workspace) {
		bool created;

		if ((rc = store_workspace_get(e->store, workspace, false, &only, &created))) {
			snprintf(err, errlen, rc == WEFT_ENOTFOUND ? "no workspace called %s" :
				 "cannot read workspace %s", workspace);
			goto out;
		}
	}
	if ((rc = engine_offline_load(e, err, errlen)))
		goto out;
	if ((rc = store_defs_load(e->store, &defs, &ndefs))) {
		snprintf(err, errlen, "cannot read the definitions: %s", weft_strerror(rc));
		goto out;
	}
	/* One time for the replay, the settle and both sides of every comparison. */
	now = engine_clock(e);
	for (size_t i = 0; i < e->nws; i++)
		if (wanted(&e->ws[i], only))
			rp.total += ws_events(&e->ws[i]);
	if (progress)
		progress(arg, 0, rp.total);
	/* No other thread reads this engine: the spaces change without the write lock. */
	for (size_t i = 0; i < e->nws; i++) {
		struct engine_ws *w = &e->ws[i];
		struct audience_space *fresh;
		uint64_t events;
		size_t n;

		if (!wanted(w, only))
			continue;
		nws++;
		fresh = engine_audiences_space_new(e, w, defs, ndefs);
		rc = engine_audiences_replay(e, w, fresh, now, progress ? replay_progress : NULL,
					     &rp, &events);
		if (rc) {
			audience_space_free(fresh);
			snprintf(err, errlen, "cannot replay the log of workspace %lld: %s",
				 (long long)w->id, weft_strerror(rc));
			goto out;
		}
		rp.base += ws_events(w);
		audience_space_settle(fresh, w->ps, now, AUDIENCE_CAUSE_RECOMPUTE);
		/* The kept windows slid up to the same time (as a server's would by then). */
		audience_space_tick(w->as, w->ps, now);
		n = compare(w, fresh, now, report, rarg);
		if (n && !check)
			audience_space_adopt(w->as, fresh, now);
		audience_space_free(fresh);
		log_info("audiences_recomputed", "workspace=%lld events=%llu differ=%zu",
			 (long long)w->id, (unsigned long long)events, n);
		differ += n;
	}
	if (progress)
		progress(arg, rp.total, rp.total);
	if (differ && !check && (rc = engine_state_save(e))) {
		snprintf(err, errlen, "cannot save the recomputed state: %s", weft_strerror(rc));
		goto out;
	}
	log_info("audiences_recompute_done", "workspaces=%zu differ=%zu saved=%d seconds=%.3f",
		 nws, differ, (int)(differ && !check), engine_now() - t0);
out:
	store_defs_free(defs, ndefs);
	engine_free(e);
	return rc;
}
