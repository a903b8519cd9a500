/*
 * The engine's state in PostgreSQL: each workspace's snapshot sections cut
 * into pages (store/engine.c), saved with the checkpoint in one
 * transaction. A page is written only when its bytes changed since the
 * last save (an XXH3 hash per page is kept), so a checkpoint costs what
 * changed, and nothing has to track writes. Loading reassembles the
 * sections and restores each graph bit for bit.
 */
#include "engine/engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

/* ---- saving ---- */

/* A save captured on the engine thread, written by any thread (engine_int.h). */
struct engine_save {
	struct buf data;		/* the changed pages' bytes */
	struct store_page *pages;
	size_t npages, pages_cap;
	struct store_section_size *sizes;
	size_t nsizes, sizes_cap;
	/* The hashes to keep if the save succeeds, per workspace (ws_ids) and section. */
	struct page_hashes *next;
	int64_t *ws_ids;
	size_t nws;
	int64_t *clear;
	size_t nclear;
	size_t bytes;			/* of the changed pages */
	void **headers;			/* copies of the section headers */
	size_t nheaders;
	int64_t seq;
	int64_t erased;			/* the newest erasure the captured pages reflect */
	/* Audience changes taken from each workspace's space (given back if the write fails). */
	struct audience_change **changes;
	size_t *nchanges;
	struct store_audience_change *rows;
	size_t nrows;
	struct store_profile_ref *erased_pids;
	size_t nerased_pids;
	bool clear_all;
	int rc;
	double capture_seconds;		/* on the engine thread */
	double seconds;			/* capture and write */
};

static uint64_t page_hash(const void *p, size_t len)
{
	return XXH3_64bits(p, len) ^ len;
}

static void add_page(struct engine_save *s, int64_t ws, int32_t section, int32_t page,
		     const void *p, size_t len)
{
	if (s->npages == s->pages_cap) {
		s->pages_cap = s->pages_cap ? 2 * s->pages_cap : 256;
		s->pages = xrealloc(s->pages, xmul(s->pages_cap, sizeof(*s->pages)));
	}
	/* data points at the live bytes until the copy (engine_state_capture). */
	s->pages[s->npages++] = (struct store_page){
		.workspace_id = ws, .section = section, .page = page, .data = p, .len = len,
	};
	s->bytes += len;
}

static void add_size(struct engine_save *s, int64_t ws, int32_t section, int32_t pages)
{
	if (s->nsizes == s->sizes_cap) {
		s->sizes_cap = s->sizes_cap ? 2 * s->sizes_cap : 64;
		s->sizes = xrealloc(s->sizes, xmul(s->sizes_cap, sizeof(*s->sizes)));
	}
	s->sizes[s->nsizes++] = (struct store_section_size){ ws, section, pages };
}

/*
 * Collects a section's changed pages; *next gets its new hashes. With a
 * dirty bitmap (a bit per page), a page not marked is known unchanged and
 * keeps its old hash without being read.
 */
static void diff_section(struct engine_save *s, int64_t ws, int32_t section,
			 const struct identity_section *sec, const struct page_hashes *old,
			 struct page_hashes *next, const uint64_t *dirty, size_t ndirty)
{
	size_t npages = (sec->bytes + STORE_PAGE_BYTES - 1) / STORE_PAGE_BYTES;

	next->n = next->cap = (uint32_t)npages;
	next->hash = npages ? xmalloc(xmul(npages, sizeof(*next->hash))) : NULL;
	for (size_t p = 0; p < npages; p++) {
		const char *at = (const char *)sec->data + p * STORE_PAGE_BYTES;
		size_t len = sec->bytes - p * STORE_PAGE_BYTES;

		if (len > STORE_PAGE_BYTES)
			len = STORE_PAGE_BYTES;
		if (dirty && p + 1 < old->n && (p >= ndirty || !(dirty[p / 64] >> (p % 64) & 1))) {
			next->hash[p] = old->hash[p];	/* untouched since the last save */
			continue;
		}
		next->hash[p] = page_hash(at, len);
		if (p >= old->n || old->hash[p] != next->hash[p])
			add_page(s, ws, section, (int32_t)p, at, len);
	}
	if (npages != old->n)
		add_size(s, ws, section, (int32_t)npages);
}

void engine_save_free(struct engine_save *s)
{
	if (!s)
		return;
	buf_release(&s->data);
	free(s->pages);
	free(s->sizes);
	for (size_t i = 0; i < s->nws * ENGINE_SECTIONS; i++)
		free(s->next[i].hash);
	free(s->next);
	free(s->ws_ids);
	free(s->clear);
	for (size_t i = 0; i < s->nheaders; i++)
		free(s->headers[i]);
	free(s->headers);
	for (size_t i = 0; s->changes && i < s->nws; i++)
		free(s->changes[i]);
	free(s->changes);
	free(s->nchanges);
	free(s->rows);
	free(s->erased_pids);
	free(s);
}

/*
 * A workspace's sections: the graph's, the profile store's (headers in e's
 * scratch), then the audiences' (written out into w->as_buf).
 */
static void ws_sections(struct engine *e, struct engine_ws *w,
			struct identity_section out[ENGINE_SECTIONS])
{
	struct profile_section ps[PROFILE_SECTIONS];

	identity_graph_sections(w->g, &e->hdr, out);
	profile_store_sections(w->ps, &e->hdr2, ps);
	for (int k = 0; k < PROFILE_SECTIONS; k++)
		out[IDENTITY_SECTIONS + k] = (struct identity_section){ ps[k].data, ps[k].bytes };
	buf_reset(&w->as_buf);
	audience_space_snapshot(w->as, &w->as_buf);
	out[ENGINE_AUDIENCE_SECTION] = (struct identity_section){ w->as_buf.data, w->as_buf.len };
}

/* Takes each workspace's audience changes and the erased profiles into the save. */
static void take_changes(struct engine *e, struct engine_save *s)
{
	size_t total = 0, k = 0;

	s->changes = xcalloc(e->nws + 1, sizeof(*s->changes));
	s->nchanges = xcalloc(e->nws + 1, sizeof(*s->nchanges));
	for (size_t i = 0; i < e->nws; i++) {
		s->changes[i] = audience_space_take_changes(e->ws[i].as, &s->nchanges[i]);
		total += s->nchanges[i];
	}
	s->rows = xcalloc(total + 1, sizeof(*s->rows));
	for (size_t i = 0; i < e->nws; i++)
		for (size_t j = 0; j < s->nchanges[i]; j++) {
			const struct audience_change *c = &s->changes[i][j];

			s->rows[k++] = (struct store_audience_change){
				.workspace_id = e->ws[i].id, .audience_id = c->audience_id,
				.profile_id = (int64_t)c->profile_id, .at_us = c->at_us,
				.seq = c->seq, .entered = c->entered,
				.cause = audience_cause_name(c->cause),
			};
		}
	s->nrows = total;
	s->erased_pids = e->erased_pids;
	s->nerased_pids = e->nerased_pids;
	e->erased_pids = NULL;
	e->nerased_pids = 0;
}

struct engine_save *engine_state_capture(struct engine *e, int *rc)
{
	struct engine_save *s = xcalloc(1, sizeof(*s));
	double t0 = engine_now();

	s->nws = e->nws;
	s->next = xcalloc(e->nws * ENGINE_SECTIONS + 1, sizeof(*s->next));
	s->ws_ids = xcalloc(e->nws + 1, sizeof(*s->ws_ids));
	s->seq = e->applied;
	s->erased = e->erased_max;
	s->clear_all = e->clear_all;
	if (e->clear_all && (*rc = store_workspace_ids(e->store, &s->clear, &s->nclear))) {
		engine_save_free(s);
		return NULL;
	}
	for (size_t i = 0; i < e->nws; i++) {
		struct engine_ws *w = &e->ws[i];
		struct identity_section secs[ENGINE_SECTIONS];
		struct page_hashes none = { 0 };

		s->ws_ids[i] = w->id;
		ws_sections(e, w, secs);
		/* The headers live in scratch buffers the next workspace reuses: keep copies. */
		for (int k = 0; k < ENGINE_SECTIONS; k += IDENTITY_SECTIONS) {
			void *copy = xmalloc(secs[k].bytes ? secs[k].bytes : 1);

			memcpy(copy, secs[k].data, secs[k].bytes);
			secs[k].data = copy;
			s->headers = xrealloc(s->headers, xmul(s->nheaders + 1, sizeof(*s->headers)));
			s->headers[s->nheaders++] = copy;
		}
		for (int k = 0; k < ENGINE_SECTIONS; k++) {
			const uint64_t *dirty = NULL;
			size_t ndirty = 0;

			/* After a failed save the bitmaps no longer cover what is unsaved. */
			if (k >= IDENTITY_SECTIONS && !e->full_diff)
				dirty = profile_store_dirty(w->ps, k - IDENTITY_SECTIONS, &ndirty);
			diff_section(s, w->id, k, &secs[k], e->clear_all ? &none : &w->saved[k],
				     &s->next[i * ENGINE_SECTIONS + k], dirty, ndirty);
		}
		profile_store_clean(w->ps);
	}
	take_changes(e, s);
	/*
	 * Copy the changed pages in one pass into a buffer allocated once at
	 * their size: growing it page by page copied it again at each doubling
	 * while the engine waited. It is freed once written (kept, it would
	 * add the size of a save to the process for good).
	 */
	s->data = (struct buf)BUF_INIT;
	buf_grow(&s->data, s->bytes);
	for (size_t i = 0; i < s->npages; i++) {
		const void *from = s->pages[i].data;

		s->pages[i].data = s->data.data + s->data.len;
		buf_add(&s->data, from, s->pages[i].len);
	}
	s->capture_seconds = s->seconds = engine_now() - t0;
	*rc = 0;
	return s;
}

int engine_state_write(struct store *st, struct engine_save *s)
{
	double t0 = engine_now();

	s->rc = st ? store_engine_save(st, s->clear, s->nclear, s->pages, s->npages, s->sizes,
				       s->nsizes, s->seq, ENGINE_FORMAT, s->erased, s->rows,
				       s->nrows, s->erased_pids, s->nerased_pids) : WEFT_EUNAVAIL;
	s->seconds += engine_now() - t0;
	return s->rc;
}

int engine_save_result(const struct engine_save *s)
{
	return s->rc;
}

double engine_save_seconds(const struct engine_save *s)
{
	return s->seconds;
}

void engine_state_commit(struct engine *e, struct engine_save *s)
{
	if (s->rc) {
		e->full_diff = true;	/* the next save compares every page */
		/* The changes and erased profiles go with the next save. */
		for (size_t i = 0; i < s->nws; i++) {
			struct engine_ws *w = engine_ws_find(e, s->ws_ids[i], false);

			if (w)
				audience_space_return_changes(w->as, s->changes[i], s->nchanges[i]);
			else
				free(s->changes[i]);
			s->changes[i] = NULL;
		}
		if (s->nerased_pids) {
			e->erased_pids = xrealloc(e->erased_pids, xmul(e->nerased_pids +
						  s->nerased_pids, sizeof(*e->erased_pids)));
			memcpy(e->erased_pids + e->nerased_pids, s->erased_pids,
			       s->nerased_pids * sizeof(*s->erased_pids));
			e->nerased_pids += s->nerased_pids;
		}
		return;
	}
	e->full_diff = false;
	for (size_t i = 0; i < s->nws; i++) {
		struct engine_ws *w = engine_ws_find(e, s->ws_ids[i], false);

		for (int k = 0; w && k < ENGINE_SECTIONS; k++) {
			struct page_hashes *h = &w->saved[k];

			free(h->hash);
			*h = s->next[i * ENGINE_SECTIONS + k];
			s->next[i * ENGINE_SECTIONS + k].hash = NULL;
		}
	}
	log_info("engine_checkpoint", "seq=%lld pages=%zu bytes=%zu capture_s=%.3f seconds=%.3f",
		 (long long)s->seq, s->npages, s->data.len, s->capture_seconds, s->seconds);
	e->cp_seq = s->seq;
	if (s->clear_all)
		e->clear_all = false;
	pthread_mutex_lock(&e->mu);
	e->stats.checkpoint_pages = s->npages;
	pthread_mutex_unlock(&e->mu);
}

int engine_state_save(struct engine *e)
{
	int rc;
	struct engine_save *s = engine_state_capture(e, &rc);

	if (!s)
		return rc;
	rc = engine_state_write(e->store, s);
	engine_state_commit(e, s);
	engine_save_free(s);
	return rc;
}

/* ---- loading ---- */

struct load {
	struct engine *e;
	int64_t ws;			/* the workspace being assembled, 0 none */
	struct buf secs[ENGINE_SECTIONS];
	struct page_hashes hashes[ENGINE_SECTIONS];
	bool bad;
};

static void load_reset(struct load *l)
{
	for (int k = 0; k < ENGINE_SECTIONS; k++) {
		buf_reset(&l->secs[k]);
		free(l->hashes[k].hash);
		memset(&l->hashes[k], 0, sizeof(l->hashes[k]));
	}
	l->bad = false;
}

/* Restores the assembled workspace. */
static int load_finish(struct load *l)
{
	struct identity_section in[IDENTITY_SECTIONS];
	struct profile_section pin[PROFILE_SECTIONS];
	struct identity_graph *g = NULL;
	struct profile_store *ps = NULL;
	struct engine_ws *w;

	if (!l->ws)
		return 0;
	for (int k = 0; k < IDENTITY_SECTIONS; k++)
		in[k] = (struct identity_section){ l->secs[k].data, l->secs[k].len };
	for (int k = 0; k < PROFILE_SECTIONS; k++)
		pin[k] = (struct profile_section){ l->secs[IDENTITY_SECTIONS + k].data,
						   l->secs[IDENTITY_SECTIONS + k].len };
	if (l->bad || identity_graph_restore(in, &g) || profile_store_restore(pin, &ps)) {
		log_error("engine_state_unreadable", "workspace=%lld", (long long)l->ws);
		identity_graph_free(g);
		load_reset(l);
		return WEFT_EINVAL;
	}
	w = engine_ws_find(l->e, l->ws, true);
	identity_graph_free(w->g);
	profile_store_free(w->ps);
	w->g = g;
	w->ps = ps;
	/* Restored once the definitions are loaded (engine_audiences_load). */
	buf_reset(&w->as_snap);
	buf_add(&w->as_snap, l->secs[ENGINE_AUDIENCE_SECTION].data,
		l->secs[ENGINE_AUDIENCE_SECTION].len);
	for (int k = 0; k < ENGINE_SECTIONS; k++) {
		w->saved[k] = l->hashes[k];
		memset(&l->hashes[k], 0, sizeof(l->hashes[k]));
	}
	load_reset(l);
	l->ws = 0;
	return 0;
}

static int load_page(void *arg, const struct store_page *p)
{
	struct load *l = arg;
	struct page_hashes *h;
	int rc;

	if (p->workspace_id != l->ws && (rc = load_finish(l)))
		return rc;
	l->ws = p->workspace_id;
	if (p->section < 0 || p->section >= ENGINE_SECTIONS) {
		l->bad = true;
		return 0;
	}
	h = &l->hashes[p->section];
	/* Pages arrive in order; a gap, or a short page before the last, is damage. */
	if ((uint32_t)p->page != h->n ||
	    l->secs[p->section].len != (size_t)p->page * STORE_PAGE_BYTES) {
		l->bad = true;
		return 0;
	}
	buf_add(&l->secs[p->section], p->data, p->len);
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 16;
		h->hash = xrealloc(h->hash, xmul(h->cap, sizeof(*h->hash)));
	}
	h->hash[h->n++] = page_hash(p->data, p->len);
	return 0;
}

int engine_state_load(struct engine *e)
{
	struct load l = { .e = e };
	int64_t seq;
	int32_t format;
	int rc;

	for (int k = 0; k < ENGINE_SECTIONS; k++)
		l.secs[k] = (struct buf)BUF_INIT;
	if ((rc = store_engine_checkpoint(e->store, &seq, &format)))
		return rc;
	for (size_t i = 0; i < e->nws; i++)
		engine_ws_release(&e->ws[i]);
	e->nws = 0;
	e->applied = e->cp_seq = 0;
	if (seq > 0 && format != ENGINE_FORMAT) {
		log_warn("engine_state_rebuild", "reason=format saved=%d current=%d",
			 (int)format, ENGINE_FORMAT);
		e->clear_all = true;
		return 0;
	}
	rc = store_engine_load(e->store, 0, load_page, &l);
	if (!rc)
		rc = load_finish(&l);
	load_reset(&l);
	for (int k = 0; k < ENGINE_SECTIONS; k++)
		buf_release(&l.secs[k]);
	if (rc == WEFT_EINVAL) {
		/* Damaged state: start from nothing and replay the whole log. */
		for (size_t i = 0; i < e->nws; i++)
			engine_ws_release(&e->ws[i]);
		e->nws = 0;
		e->clear_all = true;
		return 0;
	}
	if (rc)
		return rc;
	e->applied = e->cp_seq = seq;
	log_info("engine_state_loaded", "seq=%lld workspaces=%zu", (long long)seq, e->nws);
	return 0;
}

/* ---- rules and blocked identifiers ---- */

struct blocked_row {
	int64_t ws;
	char type[IDENTITY_TYPE_NAME_MAX + 1];
	uint8_t key[16];
};

struct blocked_rows {
	struct blocked_row *rows;
	size_t n, cap;
};

/* Only collects: applying may read the log, which cannot share the connection with this COPY. */
static int load_blocked(void *arg, int64_t ws, const char *type, const uint8_t key[16])
{
	struct blocked_rows *b = arg;

	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 16;
		b->rows = xrealloc(b->rows, xmul(b->cap, sizeof(*b->rows)));
	}
	b->rows[b->n].ws = ws;
	snprintf(b->rows[b->n].type, sizeof(b->rows[b->n].type), "%s", type);
	memcpy(b->rows[b->n++].key, key, 16);
	return 0;
}

/* Blocks what the workspaces' lists hold (splitting what a restart left unsplit). */
static int apply_blocked(struct engine *e)
{
	struct blocked_rows b = { 0 };
	int rc = store_identity_blocked_load(e->store, load_blocked, &b);

	for (size_t i = 0; !rc && i < b.n; i++) {
		struct identity_split split;
		int r = engine_block_identifier(e, b.rows[i].ws, b.rows[i].type, b.rows[i].key,
						&split);

		/* One bad entry (a type past the limit) must not keep the engine from starting. */
		if (r == WEFT_EUNAVAIL)
			rc = r;
		else if (r)
			log_error("engine_block_skipped", "workspace=%lld type=%s error=%s",
				  (long long)b.rows[i].ws, b.rows[i].type, weft_strerror(r));
	}
	free(b.rows);
	return rc;
}

int engine_config_load(struct engine *e)
{
	struct store_rules_row *rows;
	size_t n;
	int rc;

	if ((rc = store_identity_rules_load(e->store, &rows, &n)))
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct identity_rules *r;
		char err[256];

		if (engine_rules_parse(rows[i].json, strlen(rows[i].json), &r, err, sizeof(err))) {
			log_error("engine_rules_invalid", "workspace=%lld error=\"%s\"",
				  (long long)rows[i].workspace_id, err);
			continue;
		}
		struct identity_graph *g = engine_ws_find(e, rows[i].workspace_id, true)->g;

		pthread_rwlock_wrlock(&e->rw);
		identity_graph_set_rules(g, r);
		pthread_rwlock_unlock(&e->rw);
		identity_rules_free(r);
	}
	store_rules_rows_free(rows, n);
	/* Before blocks: a split re-records events on the audiences' aggregates too. */
	if ((rc = engine_audiences_load(e)))
		return rc;
	if ((rc = apply_blocked(e)))
		return rc;
	return engine_erasures_load(e);
}
