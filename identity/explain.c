/*
 * Explanations: why each profile is what it is. Every merge, refused merge,
 * dropped or blocked identifier and group link is a 52-byte record in one
 * array, chained per profile (newest first) through the record numbers.
 * A record names the rule by type and reason; the limit and window are
 * read from the graph's rules, which never change for a graph.
 * Refusals repeat (an anonymous id shared by two people refuses a merge on
 * every event of the second), so those records are found again through a
 * hash table and counted rather than appended: a noisy identifier costs
 * one record per profile, not one per event.
 */
#include "identity/identity_int.h"

#include <stdlib.h>
#include <xxhash.h>

#include "lib/alloc.h"

#define RTAB_MAX_LOAD_PCT 70

/* The fields that make two records "the same cause". */
struct rec_id {
	uint8_t key[IDENTITY_KEY_BYTES];
	uint32_t profile;
	uint32_t other;
	uint16_t type;
	uint16_t limit_type;
	uint8_t kind;
	uint8_t reason;
	uint16_t zero;
};

static void rec_id_of(const struct xrec *r, struct rec_id *id)
{
	memset(id, 0, sizeof(*id));
	memcpy(id->key, r->key, IDENTITY_KEY_BYTES);
	id->profile = r->profile;
	id->other = r->other;
	id->type = r->type;
	id->limit_type = r->limit_type;
	id->kind = r->kind;
	id->reason = r->reason;
}

static uint64_t rec_hash(const struct xrec *r)
{
	struct rec_id id;

	rec_id_of(r, &id);
	return XXH3_64bits(&id, sizeof(id));
}

static bool rec_same(const struct xrec *a, const struct xrec *b)
{
	struct rec_id x, y;

	rec_id_of(a, &x);
	rec_id_of(b, &y);
	return memcmp(&x, &y, sizeof(x)) == 0;
}

static void rtab_put(uint32_t *tab, size_t cap, const struct xrec *recs, uint32_t r)
{
	for (size_t i = slot_of(rec_hash(&recs[r]), cap);; i = i + 1 == cap ? 0 : i + 1)
		if (!tab[i]) {
			tab[i] = r;
			return;
		}
}

static void rtab_reserve(struct identity_graph *g, size_t need)
{
	size_t cap;
	uint32_t *tab;

	if (need * 100 <= g->rtab_cap * RTAB_MAX_LOAD_PCT)
		return;
	cap = idmem_next_cap(g->rtab_cap, need * 100 / RTAB_MAX_LOAD_PCT + 1, 64);
	tab = idmem_resize(NULL, 0, cap * sizeof(*tab));
	for (size_t i = 0; i < g->rtab_cap; i++)
		if (g->rtab[i])
			rtab_put(tab, cap, g->recs, g->rtab[i]);
	idmem_free(g->rtab, g->rtab_cap * sizeof(*g->rtab));
	g->rtab = tab;
	g->rtab_cap = cap;
}

/* The record identical to rec already in the table, or 0. */
static uint32_t rtab_find(const struct identity_graph *g, const struct xrec *rec)
{
	if (!g->rtab_cap)
		return 0;
	for (size_t i = slot_of(rec_hash(rec), g->rtab_cap);;
	     i = i + 1 == g->rtab_cap ? 0 : i + 1) {
		uint32_t r = g->rtab[i];

		if (!r)
			return 0;
		if (rec_same(&g->recs[r], rec))
			return r;
	}
}

void expl_add(struct identity_graph *g, const struct xrec *rec, bool dedupe)
{
	uint32_t r, *head;

	if (dedupe && (r = rtab_find(g, rec))) {
		if (g->recs[r].count != UINT32_MAX)
			g->recs[r].count++;
		return;
	}
	/* Four billion causes in one graph: later ones are not recorded. */
	if (g->nrecs == UINT32_MAX)
		return;
	if (g->nrecs >= g->recs_cap) {
		size_t cap = idmem_next_cap(g->recs_cap, g->nrecs + 1, 16);

		g->recs = idmem_resize(g->recs, g->recs_cap * sizeof(*g->recs),
				       cap * sizeof(*g->recs));
		g->recs_cap = (uint32_t)cap;
	}
	r = g->nrecs++;
	g->recs[r] = *rec;
	g->recs[r].count = 1;
	head = rec->profile ? &graph_hist(g, rec->profile)->expl : &g->none_expl;
	g->recs[r].next = *head;
	*head = r;
	if (dedupe) {
		rtab_reserve(g, g->nrecs);
		rtab_put(g->rtab, g->rtab_cap, g->recs, r);
	}
}

void expl_release(struct identity_graph *g)
{
	idmem_free(g->recs, g->recs_cap * sizeof(*g->recs));
	idmem_free(g->rtab, g->rtab_cap * sizeof(*g->rtab));
}

size_t expl_bytes(const struct identity_graph *g, bool reserved)
{
	return (reserved ? g->recs_cap : g->nrecs) * sizeof(*g->recs) +
	       g->rtab_cap * sizeof(*g->rtab);
}

/* ---- the iterator ---- */

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static void collect(struct identity_expl_iter *it, size_t *cap, uint32_t r)
{
	const struct identity_graph *g = it->g;

	for (; r; r = g->recs[r].next) {
		if (it->n == *cap) {
			*cap = *cap ? 2 * *cap : 16;
			it->recs = xrealloc(it->recs, xmul(*cap, sizeof(*it->recs)));
		}
		it->recs[it->n++] = r;
	}
}

void identity_expl_iter_init(struct identity_expl_iter *it, const struct identity_graph *g,
			     uint64_t profile_id)
{
	size_t cap = 0;

	it->g = g;
	it->recs = NULL;
	it->n = it->pos = 0;
	if (profile_id == 0) {
		collect(it, &cap, g->none_expl);
	} else {
		uint32_t pid = (uint32_t)identity_graph_resolve(g, profile_id);
		uint32_t p = pid;

		if (!pid || !g->profiles[pid].ext ||
		    !(g->exts[g->profiles[pid].ext].hist & EXT_HIST_MASK))
			return;
		/* The survivor and every profile with history merged into it. */
		do {
			uint32_t h_at = g->exts[g->profiles[p].ext].hist & EXT_HIST_MASK;
			const struct hist *h = &g->hists[h_at];

			collect(it, &cap, h->expl);
			p = h->ring;
		} while (p != pid);
	}
	/* Record numbers grow with time: sorting them puts the history in order. */
	if (it->n > 1)
		qsort(it->recs, it->n, sizeof(*it->recs), u32_cmp);
}

/* The limit a record names, from the rules (which a graph never changes). */
static void rule_of(const struct identity_graph *g, const struct xrec *r,
		    struct identity_explanation *out)
{
	switch (r->reason) {
	case IDENTITY_REASON_MERGE_CAP:
		out->limit = g->rules.max_merges;
		break;
	case IDENTITY_REASON_IDENTIFIER_CAP:
		out->limit = g->rules.max_ids;
		break;
	default:
		if (r->limit_type < g->rules.ntypes) {
			out->limit = g->rules.types[r->limit_type].limit;
			out->window_days = g->rules.types[r->limit_type].window_days;
		}
		break;
	}
}

bool identity_expl_iter_next(struct identity_expl_iter *it, struct identity_explanation *out)
{
	const struct xrec *r;

	if (it->pos >= it->n)
		return false;
	r = &it->g->recs[it->recs[it->pos++]];
	memset(out, 0, sizeof(*out));
	out->kind = (enum identity_expl_kind)r->kind;
	out->reason = (enum identity_expl_reason)r->reason;
	out->profile_id = r->profile;
	out->other_id = r->other;
	out->type = r->type;
	memcpy(out->key, r->key, IDENTITY_KEY_BYTES);
	out->limit_type = r->limit_type;
	rule_of(it->g, r, out);
	out->seq = rec_seq(r);
	out->ref = (uint64_t)r->ref_hi << 32 | r->ref_lo;
	out->count = r->count;
	return true;
}

void identity_expl_iter_release(struct identity_expl_iter *it)
{
	free(it->recs);
	it->recs = NULL;
	it->n = it->pos = 0;
}
