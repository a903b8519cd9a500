/*
 * Erasing a person from the engine's state (docs/profiles.md#erase), and
 * keeping erased and suppressed identifiers from coming back through the
 * log: events carrying a suppressed key are never applied, and events up
 * to an erasure's last seq carrying one of its keys are skipped while the
 * erasure's rows may still be in the log (a restart before it finished).
 */
#include "engine/engine_int.h"

#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

static int i64_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

bool engine_ws_drops(const struct engine_ws *w, int64_t seq, const struct identity_ident *ids,
		     size_t n)
{
	for (size_t f = 0; f < w->nfilters; f++) {
		const struct erased_filter *ef = &w->filters[f];

		if (ef->nseqs && bsearch(&seq, ef->seqs, ef->nseqs, sizeof(seq), i64_cmp))
			return true;
		if (seq <= ef->applied_seq || seq > ef->upto_seq)
			continue;
		for (size_t i = 0; i < n; i++)
			if (keyset_has(ef->keys, ids[i].key))
				return true;
	}
	for (size_t i = 0; w->suppressed && i < n; i++)
		if (keyset_has(w->suppressed, ids[i].key))
			return true;
	return false;
}

static void add_filter(struct engine_ws *w, const struct store_erasure_scope *sc)
{
	struct erased_filter *ef;

	w->filters = xrealloc(w->filters, xmul(w->nfilters + 1, sizeof(*w->filters)));
	ef = &w->filters[w->nfilters++];
	ef->keys = keyset_new(sc->nkeys);
	for (size_t i = 0; i < sc->nkeys; i++)
		keyset_add(ef->keys, sc->keys[i]);
	ef->seqs = xmalloc(xmul(sc->nseqs ? sc->nseqs : 1, sizeof(*ef->seqs)));
	memcpy(ef->seqs, sc->seqs, sc->nseqs * sizeof(*ef->seqs));
	ef->nseqs = sc->nseqs;
	qsort(ef->seqs, ef->nseqs, sizeof(*ef->seqs), i64_cmp);
	ef->applied_seq = sc->applied_seq;
	ef->upto_seq = sc->upto_seq;
}

void engine_ws_suppress(struct engine_ws *w, const uint8_t key[16])
{
	if (!w->suppressed)
		w->suppressed = keyset_new(0);
	keyset_add(w->suppressed, key);
}

struct collected {
	uint8_t (*keys)[16];
	const char **types;
	uint32_t *nodes;
	size_t n, cap;
};

static void collect(struct collected *c, const struct identity_graph *g, uint64_t pid)
{
	struct identity_ids_iter it;
	struct identity_ident_info info;

	identity_ids_iter_init(&it, g, pid);
	while (identity_ids_iter_next(&it, &info)) {
		if (c->n == c->cap) {
			c->cap = c->cap ? 2 * c->cap : 16;
			c->keys = xrealloc(c->keys, xmul(c->cap, sizeof(*c->keys)));
			c->types = xrealloc(c->types, xmul(c->cap, sizeof(*c->types)));
			c->nodes = xrealloc(c->nodes, xmul(c->cap, sizeof(*c->nodes)));
		}
		memcpy(c->keys[c->n], info.key, 16);
		c->types[c->n] = identity_graph_type_name(g, info.type);
		c->nodes[c->n++] = info.node;
	}
}

/*
 * Wipes profile pid from the graph, the profile store and the audiences
 * (write lock held); returns its events.
 */
static int64_t *wipe(struct engine *e, struct engine_ws *w, uint64_t pid,
		     const struct collected *c, size_t *nseqs)
{
	int64_t *seqs = profile_store_forget(w->ps, pid, nseqs);

	audience_space_forget(w->as, pid, true);
	engine_audiences_erased(e, w, pid);
	identity_graph_erase(w->g, pid, NULL, NULL);
	for (size_t i = 0; i < c->n; i++)
		profile_store_forget_identifier(w->ps, c->nodes[i]);
	return seqs;
}

static void collected_release(struct collected *c)
{
	free(c->keys);
	free(c->types);
	free(c->nodes);
}

int engine_erase_profile(struct engine *e, int64_t workspace_id, uint64_t profile_id,
			 bool suppress, int64_t key_id, struct engine_erasure *out)
{
	struct engine_ws *w = engine_ws_find(e, workspace_id, true);
	struct collected c = { 0 };
	struct store_erasure_scope sc = { 0 };
	int64_t *seqs = NULL, head;
	size_t nseqs = 0;
	uint64_t pid;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!e->store)
		return WEFT_EUNAVAIL;
	pthread_mutex_lock(&e->mu);
	head = e->behind_to;	/* the last seq any commit reported */
	pthread_mutex_unlock(&e->mu);
	pthread_rwlock_wrlock(&e->rw);
	pid = identity_graph_resolve(w->g, profile_id);
	if (!pid) {
		pthread_rwlock_unlock(&e->rw);
		return WEFT_ENOTFOUND;
	}
	collect(&c, w->g, pid);
	/* Its events, without forgetting them yet: the row must be durable first. */
	sc.seqs = seqs = profile_store_events_all(w->ps, pid, &nseqs);
	sc.nseqs = nseqs;
	sc.keys = (const uint8_t (*)[16])c.keys;
	sc.nkeys = c.n;
	sc.applied_seq = e->applied;
	sc.upto_seq = head > e->applied ? head : e->applied;
	rc = store_erasure_create(e->store, workspace_id, key_id, suppress, &sc, c.types,
				  &out->erasure_id);
	if (!rc) {
		size_t n;

		free(wipe(e, w, pid, &c, &n));
		add_filter(w, &sc);
		for (size_t i = 0; suppress && i < c.n; i++)
			engine_ws_suppress(w, c.keys[i]);
		if (out->erasure_id > e->erased_max)
			e->erased_max = out->erasure_id;
		e->cp_soon = true;
	}
	pthread_rwlock_unlock(&e->rw);
	free(seqs);
	if (!rc)
		log_info("erasure_started", "workspace=%lld erasure=%lld identifiers=%zu events=%zu "
			 "suppress=%d", (long long)workspace_id, (long long)out->erasure_id, c.n, nseqs,
			 (int)suppress);
	if (!rc) {
		out->keys = c.keys;
		out->nkeys = c.n;
		c.keys = NULL;
	}
	collected_release(&c);
	return rc;
}

/* At start: an erasure not finished yet is wiped again (the state may predate it) and filters the log. */
static int load_pending(void *arg, int64_t workspace_id, int64_t erasure_id,
			const struct store_erasure_scope *sc)
{
	struct engine *e = arg;
	struct engine_ws *w = engine_ws_find(e, workspace_id, true);
	const char *name;

	pthread_rwlock_wrlock(&e->rw);
	add_filter(w, sc);
	if (erasure_id > e->erased_max)
		e->erased_max = erasure_id;
	e->cp_soon = true;	/* a save that reflects it lets the erasure finish */
	for (size_t i = 0; i < sc->nkeys; i++)
		for (uint16_t t = 0; (name = identity_graph_type_name(w->g, t)); t++) {
			uint64_t pid = identity_graph_lookup(w->g, t, sc->keys[i]);
			struct collected c = { 0 };
			size_t n;

			if (!pid)
				continue;
			collect(&c, w->g, pid);
			free(wipe(e, w, pid, &c, &n));
			collected_release(&c);
			e->cp_soon = true;
		}
	pthread_rwlock_unlock(&e->rw);
	log_info("erasure_pending", "workspace=%lld erasure=%lld", (long long)workspace_id,
		 (long long)erasure_id);
	return 0;
}

static int load_suppressed(void *arg, int64_t workspace_id, const uint8_t key[16])
{
	struct engine *e = arg;

	engine_ws_suppress(engine_ws_find(e, workspace_id, true), key);
	return 0;
}

int engine_erasures_load(struct engine *e)
{
	int rc = store_suppressed_keys_load(e->store, load_suppressed, e);

	return rc ? rc : store_erasures_pending(e->store, load_pending, e);
}

void engine_ws_release_filters(struct engine_ws *w)
{
	keyset_free(w->suppressed);
	for (size_t i = 0; i < w->nfilters; i++) {
		keyset_free(w->filters[i].keys);
		free(w->filters[i].seqs);
	}
	free(w->filters);
	w->suppressed = NULL;
	w->filters = NULL;
	w->nfilters = 0;
}
