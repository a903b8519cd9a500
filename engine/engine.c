/*
 * The engine thread: the feed the pipeline's sink fills, the loop that
 * applies it (reading the log for whatever the feed missed), commands,
 * and checkpoints. docs/internals.md describes the whole path.
 */
#include "engine/engine_int.h"

#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"

#define DEFAULT_FEED_BYTES (64u << 20)
#define DEFAULT_CP_INTERVAL_MS 10000
/* A checkpoint waits at least this many times as long as the last one took. */
#define CP_COST_FACTOR 10
#define RETRY_MAX_S 5.0

const double engine_lag_bounds[7] = { .005, .01, .025, .05, .1, .25, 1 };

double engine_now(void)
{
	return clock_mono();
}

struct engine *engine_new(const struct engine_config *cfg)
{
	struct engine *e = xcalloc(1, sizeof(*e));
	pthread_rwlockattr_t ra;

	e->url = xstrdup(cfg->database_url);
	e->feed_cap = cfg->feed_bytes ? cfg->feed_bytes : DEFAULT_FEED_BYTES;
	e->cp_interval = (cfg->checkpoint_interval_ms > 0 ? cfg->checkpoint_interval_ms :
			  DEFAULT_CP_INTERVAL_MS) / 1000.0;
	pthread_rwlockattr_init(&ra);
	/* Writers apply events in short holds; readers must not starve them. */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&e->rw, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	pthread_cond_init(&e->saver_cv, NULL);
	return e;
}

/* ---- workspaces ---- */

struct engine_ws *engine_ws_find(struct engine *e, int64_t id, bool create)
{
	size_t lo = 0, hi = e->nws;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (e->ws[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < e->nws && e->ws[lo].id == id)
		return &e->ws[lo];
	if (!create)
		return NULL;

	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g = identity_graph_new(r);

	identity_rules_free(r);
	pthread_rwlock_wrlock(&e->rw);
	if (e->nws == e->ws_cap) {
		e->ws_cap = e->ws_cap ? 2 * e->ws_cap : 8;
		e->ws = xrealloc(e->ws, xmul(e->ws_cap, sizeof(*e->ws)));
	}
	memmove(&e->ws[lo + 1], &e->ws[lo], (e->nws - lo) * sizeof(*e->ws));
	memset(&e->ws[lo], 0, sizeof(e->ws[lo]));
	e->ws[lo].id = id;
	e->ws[lo].g = g;
	e->ws[lo].ps = profile_store_new();
	e->ws[lo].as = audience_space_new();
	e->nws++;
	pthread_rwlock_unlock(&e->rw);
	return &e->ws[lo];
}

void engine_ws_release(struct engine_ws *w)
{
	identity_graph_free(w->g);
	profile_store_free(w->ps);
	audience_space_free(w->as);
	buf_release(&w->as_buf);
	buf_release(&w->as_snap);
	engine_ws_release_filters(w);
	for (int s = 0; s < ENGINE_SECTIONS; s++)
		free(w->saved[s].hash);
	memset(w, 0, sizeof(*w));
}

static int catch_up_row(void *arg, const char *tuple, size_t len)
{
	struct engine *e = arg;

	engine_apply_tuple(e, tuple, len);
	pthread_mutex_lock(&e->mu);
	e->stats.log_reads++;
	pthread_mutex_unlock(&e->mu);
	return 0;
}

int engine_catch_up(struct engine *e, int64_t target)
{
	int64_t *ids;
	size_t n;
	int rc;

	if (target <= e->applied)
		return 0;
	if (!e->store)
		return WEFT_EUNAVAIL;
	if ((rc = store_workspace_ids(e->store, &ids, &n)))
		return rc;
	for (size_t i = 0; i < n && !rc; i++) {
		struct engine_ws *w = engine_ws_find(e, ids[i], false);

		if (w && w->applied >= target)
			continue;
		rc = store_log_read(e->store, ids[i], e->applied, target, catch_up_row, e);
	}
	free(ids);
	if (!rc) {
		log_info("engine_caught_up", "from=%lld to=%lld", (long long)e->applied,
			 (long long)target);
		e->applied = target;
	}
	return rc;
}

/* ---- the feed ---- */

void engine_sink(void *arg, const struct store_log_row *rows, size_t n, int64_t last_seq)
{
	struct engine *e = arg;
	size_t bytes = 0, stored = 0;
	struct feed_batch *b;

	for (size_t i = 0; i < n; i++)
		if (rows[i].stored) {
			bytes += 4 + rows[i].len;
			stored++;
		}
	pthread_mutex_lock(&e->mu);
	if (last_seq > e->behind_to)
		e->behind_to = last_seq;
	if (stored == 0 || e->fbytes + bytes > e->feed_cap) {
		/* Nothing to copy, or no room: the engine reads the log up to behind_to. */
		if (stored)
			e->stats.feed_overflows++;
		e->behind = true;
		pthread_cond_signal(&e->cv);
		pthread_mutex_unlock(&e->mu);
		return;
	}
	pthread_mutex_unlock(&e->mu);

	b = xmalloc(sizeof(*b) + bytes);
	b->next = NULL;
	b->committed = engine_now();
	b->last_seq = last_seq;
	b->n = stored;
	b->bytes = bytes;
	for (size_t i = 0, o = 0; i < n; i++) {
		uint32_t len = (uint32_t)rows[i].len;

		if (!rows[i].stored)
			continue;
		memcpy(b->data + o, &len, 4);
		memcpy(b->data + o + 4, rows[i].tuple, len);
		/* The committer numbers rows in its COPY buffer, not in the caller's tuple. */
		if (len >= STORE_EVENT_SEQ_OFFSET + 8)
			for (int k = 0; k < 8; k++)
				b->data[o + 4 + STORE_EVENT_SEQ_OFFSET + k] =
					(char)((uint64_t)rows[i].seq >> (56 - 8 * k));
		o += 4 + len;
	}
	pthread_mutex_lock(&e->mu);
	if (e->ftail)
		e->ftail->next = b;
	else
		e->fhead = b;
	e->ftail = b;
	e->fbytes += bytes;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

static void record_lag(struct engine *e, double lag)
{
	int i = 0;

	pthread_mutex_lock(&e->mu);

	while (i < 7 && lag > engine_lag_bounds[i])
		i++;
	e->stats.lag_buckets[i]++;
	e->stats.lag_count++;
	e->stats.lag_sum += lag;
	pthread_mutex_unlock(&e->mu);
}

/* The first stored seq of a batch. */
static int64_t batch_first_seq(const struct feed_batch *b)
{
	struct store_field f[STORE_EVENT_FIELDS];
	uint32_t len;

	memcpy(&len, b->data, 4);
	if (store_tuple_fields(b->data + 4, len, f, STORE_EVENT_FIELDS) < 2 || f[1].len != 8)
		return 0;
	return store_field_int8(&f[1]);
}

/* Applies one batch, reading first what the log holds before it that was never fed. */
static int apply_batch(struct engine *e, const struct feed_batch *b)
{
	int64_t first = batch_first_seq(b);
	int rc;

	if (first > e->applied + 1 && (rc = engine_catch_up(e, first - 1)))
		return rc;
	for (size_t i = 0, o = 0; i < b->n; i++) {
		uint32_t len;

		memcpy(&len, b->data + o, 4);
		engine_apply_tuple(e, b->data + o + 4, len);
		o += 4 + len;
	}
	if (b->last_seq > e->applied)
		e->applied = b->last_seq;
	record_lag(e, engine_now() - b->committed);
	return 0;
}

/* ---- commands ---- */

void engine_submit(struct engine *e, struct engine_cmd *c, struct event_base *base)
{
	c->base = base;
	c->next = NULL;
	c->result = 0;
	pthread_mutex_lock(&e->mu);
	if (e->ctail)
		e->ctail->next = c;
	else
		e->chead = c;
	e->ctail = c;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

static void cmd_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct engine_cmd *c = arg;

	(void)fd;
	(void)what;
	c->done(c);
}

static void cmd_finish(struct engine_cmd *c)
{
	if (event_base_once(c->base, -1, EV_TIMEOUT, cmd_deliver, c, NULL))
		log_error("engine_cmd_lost", "could not hand a command back");
}

struct store *engine_store(struct engine *e)
{
	return e->store;
}

void engine_write_begin(struct engine *e)
{
	pthread_rwlock_wrlock(&e->rw);
}

void engine_write_end(struct engine *e)
{
	pthread_rwlock_unlock(&e->rw);
}

struct identity_graph *engine_graph_mut(struct engine *e, int64_t workspace_id)
{
	return engine_ws_find(e, workspace_id, true)->g;
}

int64_t engine_applied_seq(struct engine *e)
{
	return e->applied;
}

void engine_checkpoint_soon(struct engine *e)
{
	e->cp_soon = true;
}

/* ---- reading ---- */

void engine_read_begin(struct engine *e)
{
	pthread_rwlock_rdlock(&e->rw);
}

void engine_read_end(struct engine *e)
{
	pthread_rwlock_unlock(&e->rw);
}

const struct identity_graph *engine_graph(struct engine *e, int64_t workspace_id)
{
	struct engine_ws *w = engine_ws_find(e, workspace_id, false);

	return w ? w->g : NULL;
}

const struct profile_store *engine_profiles(struct engine *e, int64_t workspace_id)
{
	struct engine_ws *w = engine_ws_find(e, workspace_id, false);

	return w ? w->ps : NULL;
}

bool engine_ready(struct engine *e)
{
	bool ready;

	pthread_mutex_lock(&e->mu);
	ready = e->stats.ready;
	pthread_mutex_unlock(&e->mu);
	return ready;
}

void engine_stats(struct engine *e, struct engine_stats *out)
{
	pthread_mutex_lock(&e->mu);
	*out = e->stats;
	pthread_mutex_unlock(&e->mu);
}

/* Identity figures over every workspace; called on the engine thread. */
static void refresh_stats(struct engine *e)
{
	uint64_t ids = 0, profiles = 0, merges = 0, records = 0, gbytes = 0, pbytes = 0;
	struct audience_space_stats aud = { 0 };

	for (size_t i = 0; i < e->nws; i++) {
		struct identity_stats st;
		struct profile_store_stats ps;
		struct audience_space_stats as;

		identity_graph_stats(e->ws[i].g, &st);
		audience_space_stats(e->ws[i].as, &as);
		aud.members += as.members;
		aud.states += as.states;
		aud.bytes += as.bytes;
		profile_store_stats(e->ws[i].ps, &ps);
		ids += st.identifiers;
		profiles += st.profiles;
		merges += st.merges;
		gbytes += st.bytes;
		records += ps.profiles;
		pbytes += ps.bytes;
	}
	pthread_mutex_lock(&e->mu);
	e->stats.applied_seq = e->applied;
	e->stats.checkpoint_seq = e->cp_seq;
	e->stats.identifiers = ids;
	e->stats.profiles = profiles;
	e->stats.merges = merges;
	e->stats.profile_records = records;
	e->stats.identity_bytes = gbytes;
	e->stats.profile_bytes = pbytes;
	e->stats.audience_members = aud.members;
	e->stats.audience_states = aud.states;
	e->stats.audience_bytes = aud.bytes;
	pthread_mutex_unlock(&e->mu);
}

/* ---- the thread ---- */

/* Sleeps up to s seconds, or until stop is asked. */
static void nap(struct engine *e, double s)
{
	struct timespec ts = clock_deadline(s);

	pthread_mutex_lock(&e->mu);
	if (!e->stopping)
		pthread_cond_timedwait(&e->cv, &e->mu, &ts);
	pthread_mutex_unlock(&e->mu);
}

static bool stopping(struct engine *e)
{
	bool s;

	pthread_mutex_lock(&e->mu);
	s = e->stopping;
	pthread_mutex_unlock(&e->mu);
	return s;
}

/* Connects, takes the engine lock and loads the state; retries until it works or stop. */
static int start_up(struct engine *e)
{
	double wait = 0.1;
	int rc;

	for (;;) {
		rc = store_connect(e->url, &e->store);
		if (!rc && (rc = store_schema_check(e->store)) == 0 &&
		    (rc = store_engine_lock(e->store)) == 0 &&
		    (rc = engine_state_load(e)) == 0 && (rc = engine_config_load(e)) == 0)
			return 0;
		log_warn("engine_start_retry", "error=%s retry_s=%.1f", weft_strerror(rc), wait);
		store_free(e->store);
		e->store = NULL;
		if (stopping(e))
			return rc;
		nap(e, wait);
		wait = wait * 2 > RETRY_MAX_S ? RETRY_MAX_S : wait * 2;
	}
}

/* After a failure: a new connection (the engine lock comes with it). */
static int reconnect(struct engine *e)
{
	int rc;

	if (e->store && store_ping(e->store) == 0)
		return 0;
	store_free(e->store);
	e->store = NULL;
	if ((rc = store_connect(e->url, &e->store)) || (rc = store_engine_lock(e->store))) {
		store_free(e->store);
		e->store = NULL;
	}
	return rc;
}

/* ---- the saver thread: writes captured saves on its own connection ---- */

static void *saver_main(void *arg)
{
	struct engine *e = arg;
	struct store *st = NULL;

	for (;;) {
		struct engine_save *sv;
		int rc;

		pthread_mutex_lock(&e->mu);
		while (!e->save_req && !e->saver_stop)
			pthread_cond_wait(&e->saver_cv, &e->mu);
		sv = e->save_req;
		e->save_req = NULL;
		pthread_mutex_unlock(&e->mu);
		if (!sv)
			break;
		if (!st && store_connect(e->url, &st)) {
			store_free(st);
			st = NULL;
		}
		rc = engine_state_write(st, sv);
		if (rc == WEFT_EUNAVAIL) {
			store_free(st);	/* a new connection next time */
			st = NULL;
		}
		pthread_mutex_lock(&e->mu);
		e->save_done = sv;
		pthread_cond_broadcast(&e->cv);
		pthread_mutex_unlock(&e->mu);
	}
	store_free(st);
	return NULL;
}

/* Takes in a save the saver finished: its pages become the base of the next diff. */
static void collect_save(struct engine *e, struct engine_save *sv)
{
	double seconds = engine_save_seconds(sv);
	int rc = engine_save_result(sv);

	engine_state_commit(e, sv);
	engine_save_free(sv);
	e->saving = false;
	pthread_mutex_lock(&e->mu);
	if (rc) {
		e->stats.checkpoint_failures++;
	} else {
		e->stats.checkpoints++;
		e->stats.checkpoint_seconds = seconds;
	}
	pthread_mutex_unlock(&e->mu);
	if (rc) {
		log_warn("engine_checkpoint_failed", "error=%s", weft_strerror(rc));
		/* Again once the interval has passed (last_cp is when this one began), not at once. */
		e->cp_retry = true;
	} else {
		e->cp_cost = seconds;
	}
}

/* The save in flight, if it finished (wait: until it does). */
static void poll_save(struct engine *e, bool wait)
{
	struct engine_save *sv;

	pthread_mutex_lock(&e->mu);
	while (wait && e->saving && !e->save_done)
		pthread_cond_wait(&e->cv, &e->mu);
	sv = e->save_done;
	e->save_done = NULL;
	pthread_mutex_unlock(&e->mu);
	if (sv)
		collect_save(e, sv);
}

/*
 * Saves the state when it is due: the engine only captures the changed
 * pages (a copy) and goes on applying while the saver thread writes them.
 * The final save (force, at stop) is written here, after the one in
 * flight, so that nothing applied is left unsaved.
 */
static void checkpoint(struct engine *e, bool force)
{
	struct engine_save *sv;
	double now = engine_now();
	double gap = e->cp_interval;
	int rc;

	poll_save(e, force);
	if (e->saving)
		return;
	if (CP_COST_FACTOR * e->cp_cost > gap)
		gap = CP_COST_FACTOR * e->cp_cost;
	/* A command's change (a block, new rules) is saved at once, not at the next interval. */
	if (!force && !e->cp_soon && now - e->last_cp < gap)
		return;
	if (e->applied == e->cp_seq && !e->cp_soon && !e->clear_all && !e->cp_retry)
		return;
	e->cp_retry = false;
	e->last_cp = now;
	sv = e->store ? engine_state_capture(e, &rc) : NULL;
	if (!sv) {
		log_warn("engine_checkpoint_failed", "error=%s",
			 weft_strerror(e->store ? rc : WEFT_EUNAVAIL));
		return;
	}
	e->cp_soon = false;
	e->saving = true;
	if (force) {
		engine_state_write(e->store, sv);
		collect_save(e, sv);
		return;
	}
	pthread_mutex_lock(&e->mu);
	e->save_req = sv;
	pthread_cond_signal(&e->saver_cv);
	pthread_mutex_unlock(&e->mu);
}

/* Takes what arrived: the feed's batches (appended to *pending), commands, the head to reach. */
static struct engine_cmd *take_work(struct engine *e, struct feed_batch **pending,
				    struct feed_batch **pending_tail, int64_t *target,
				    bool *stop, double wait_s)
{
	struct engine_cmd *cmds;

	pthread_mutex_lock(&e->mu);
	if (!e->fhead && !e->chead && !e->behind && !e->stopping && wait_s > 0) {
		struct timespec ts = clock_deadline(wait_s);

		pthread_cond_timedwait(&e->cv, &e->mu, &ts);
	}
	if (e->fhead) {
		if (*pending_tail)
			(*pending_tail)->next = e->fhead;
		else
			*pending = e->fhead;
		*pending_tail = e->ftail;
		e->fhead = e->ftail = NULL;
		e->fbytes = 0;
	}
	if (e->behind && e->behind_to > *target)
		*target = e->behind_to;
	e->behind = false;
	cmds = e->chead;
	e->chead = e->ctail = NULL;
	*stop = e->stopping;
	pthread_mutex_unlock(&e->mu);
	return cmds;
}

static void *engine_main(void *arg)
{
	struct engine *e = arg;
	struct feed_batch *pending = NULL, *pending_tail = NULL;
	struct engine_cmd *cmds = NULL;
	int64_t target = 0, head = 0;
	double wait = 0.1;
	bool stop = false, failed = false, first = true, head_known = false;

	if (start_up(e) == 0) {
		int rc = store_log_head(e->store, &head);

		/* Without the head, reads wait (not ready) until a retry reads it. */
		if (rc)
			log_warn("engine_log_head", "error=%s", weft_strerror(rc));
		else
			head_known = true;
		target = head;
	}
	pthread_mutex_lock(&e->mu);
	e->stats.loaded = e->store != NULL;
	pthread_mutex_unlock(&e->mu);
	/* Until stopped: a lost connection is retried (reconnect), never the end of the engine. */
	for (;;) {
		/* Wait for work only when there is none: a start-up catch-up begins at once. */
		double idle = failed ? wait : first || target > e->applied ? 0 : e->cp_interval / 4;
		struct engine_cmd *more = take_work(e, &pending, &pending_tail, &target, &stop,
						    idle);

		first = false;
		int rc = 0;

		for (struct engine_cmd **p = &cmds; more; more = NULL) {
			while (*p)
				p = &(*p)->next;
			*p = more;
		}
		if (failed && (rc = reconnect(e)) == 0)
			failed = false;
		if (!rc && !head_known && e->store && store_log_head(e->store, &head) == 0) {
			head_known = true;
			if (head > target)
				target = head;
		}
		while (!rc && pending) {
			struct feed_batch *b = pending;

			if ((rc = apply_batch(e, b)))
				break;
			pending = b->next;
			if (!pending)
				pending_tail = NULL;
			free(b);
		}
		if (!rc)
			rc = engine_catch_up(e, target);
		while (!rc && cmds) {
			struct engine_cmd *c = cmds;

			cmds = c->next;
			c->run(e, c);
			cmd_finish(c);
		}
		pthread_mutex_lock(&e->mu);
		e->stats.caught_up = !rc && !pending && head_known;
		if (e->stats.caught_up)
			e->stats.ready = true;
		pthread_mutex_unlock(&e->mu);
		if (rc) {
			log_warn("engine_behind", "error=%s applied=%lld retry_s=%.1f",
				 weft_strerror(rc), (long long)e->applied, wait);
			failed = true;
			wait = wait * 2 > RETRY_MAX_S ? RETRY_MAX_S : wait * 2;
			if (stop)
				break;
			continue;
		}
		wait = 0.1;
		engine_audiences_tick(e);
		checkpoint(e, stop);
		refresh_stats(e);
		if (stop)
			break;
	}
	while (pending) {
		struct feed_batch *b = pending;

		pending = b->next;
		free(b);
	}
	for (struct engine_cmd *c; (c = cmds); cmds = c->next) {
		c->result = WEFT_ESHUTDOWN;
		cmd_finish(c);
	}
	return NULL;
}

int engine_start(struct engine *e)
{
	int rc = pthread_create(&e->saver, NULL, saver_main, e);

	if (!rc) {
		e->saver_started = true;
		rc = pthread_create(&e->thread, NULL, engine_main, e);
	}
	if (rc) {
		log_error("engine_thread", "error=%s", strerror(rc));
		return WEFT_EIO;
	}
	e->started = true;
	return 0;
}

void engine_stop(struct engine *e)
{
	if (!e || !e->started)
		return;
	pthread_mutex_lock(&e->mu);
	e->stopping = true;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	pthread_join(e->thread, NULL);
	e->started = false;
}

static void saver_stop(struct engine *e)
{
	if (!e->saver_started)
		return;
	pthread_mutex_lock(&e->mu);
	e->saver_stop = true;
	pthread_cond_signal(&e->saver_cv);
	pthread_mutex_unlock(&e->mu);
	pthread_join(e->saver, NULL);
	e->saver_started = false;
	engine_save_free(e->save_req);
	engine_save_free(e->save_done);
	e->save_req = e->save_done = NULL;
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	engine_stop(e);
	saver_stop(e);
	for (struct feed_batch *b = e->fhead, *next; b; b = next) {
		next = b->next;
		free(b);
	}
	for (struct engine_cmd *c = e->chead, *next; c; c = next) {
		next = c->next;
		c->result = WEFT_ESHUTDOWN;
		cmd_finish(c);
	}
	for (size_t i = 0; i < e->nws; i++)
		engine_ws_release(&e->ws[i]);
	free(e->ws);
	buf_release(&e->hdr);
	buf_release(&e->hdr2);
	free(e->erased_pids);
	store_free(e->store);
	pthread_rwlock_destroy(&e->rw);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	pthread_cond_destroy(&e->saver_cv);
	free(e->url);
	free(e);
}
