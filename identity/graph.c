/*
 * The identity graph's storage: nodes and the key table, union-find over
 * them, profiles and their type counts, links, and what reads them (lookup,
 * resolve, digest, stats, iterators). The matching rules that decide what
 * to create and merge live in match.c; the explanation records in
 * explain.c. identity_int.h describes the layout.
 */
#define _GNU_SOURCE	/* qsort_r */
#include "identity/identity_int.h"

#include <assert.h>
#include <stdlib.h>
#include <xxhash.h>

#include "lib/alloc.h"

/*
 * The key and link tables hold most of the graph's hash-table memory. Tags
 * in their slots let a probe skip non-matching slots without touching the
 * records, so they run full (85%) and grow by a quarter at a time: their
 * load stays within 68-85% whatever the graph's size, and memory per
 * identifier does not jump at each growth.
 */
#define IDTAB_MAX_LOAD_PCT 85
#define LINKTAB_MAX_LOAD_PCT 85
#define REBUILD_AHEAD 16	/* entries a table rebuild prefetches ahead */
#define COUNTS_MAX_LOAD_PCT 70
#define LINK_COUNT_MAX 255

/* The capacity for a tagged table of cap slots to hold need entries. */
static size_t tagged_next_cap(size_t cap, size_t need, unsigned max_load_pct)
{
	size_t n = cap + cap / 4, min = need * 100 / max_load_pct + 1;

	return n < min ? min : n < 64 ? 64 : n;
}

/* Grows the array at p (cap elements of elem bytes) to hold need elements. */
static void *reserve(void *p, uint32_t *cap, size_t need, size_t elem, size_t min)
{
	size_t n;

	if (need <= *cap)
		return p;
	n = idmem_next_cap(*cap, need, min);
	if (n > UINT32_MAX)
		n = UINT32_MAX;
	p = idmem_resize(p, *cap * elem, n * elem);
	*cap = (uint32_t)n;
	return p;
}

/* ---- lifecycle ---- */

struct identity_graph *identity_graph_new(const struct identity_rules *r)
{
	struct identity_graph *g = xcalloc(1, sizeof(*g));

	rules_copy(&g->rules, r);
	/* Number 0 is reserved everywhere. */
	g->nnodes = g->nprofiles = g->nexts = g->nhists = g->nlinks = g->nrecs = 1;
	g->nodes = reserve(NULL, &g->nodes_cap, 64, sizeof(*g->nodes), 64);
	g->profiles = reserve(NULL, &g->profiles_cap, 64, sizeof(*g->profiles), 64);
	g->exts = reserve(NULL, &g->exts_cap, 16, sizeof(*g->exts), 16);
	g->hists = reserve(NULL, &g->hists_cap, 16, sizeof(*g->hists), 16);
	return g;
}

void identity_graph_free(struct identity_graph *g)
{
	if (!g)
		return;
	idmem_free(g->nodes, g->nodes_cap * sizeof(*g->nodes));
	idmem_free(g->idtab, g->idtab_cap * sizeof(*g->idtab));
	idmem_free(g->profiles, g->profiles_cap * sizeof(*g->profiles));
	idmem_free(g->exts, g->exts_cap * sizeof(*g->exts));
	idmem_free(g->hists, g->hists_cap * sizeof(*g->hists));
	idmem_free(g->counts, g->counts_cap * sizeof(*g->counts));
	idmem_free(g->links, g->links_cap * sizeof(*g->links));
	if (g->links_cap)
		idmem_free(g->link_base,
			   ((size_t)g->links_cap / LINK_BLOCK + 1) * sizeof(*g->link_base));
	idmem_free(g->linktab, g->linktab_cap * sizeof(*g->linktab));
	free(g->far);
	expl_release(g);
	rules_release(&g->rules);
	free(g);
}

int identity_graph_type(struct identity_graph *g, const char *name)
{
	return rules_intern(&g->rules, name);
}

const char *identity_graph_type_name(const struct identity_graph *g, uint16_t type)
{
	return type < g->rules.ntypes ? g->rules.types[type].name : NULL;
}

/* ---- the key table ---- */

static inline uint32_t key_tag(const uint8_t *key)
{
	return (uint32_t)(load64(key + 8) >> 60) << TAGGED_BITS;
}

static inline uint64_t key_hash(const uint8_t *key)
{
	return mix64(load64(key));
}

uint32_t graph_find_node(const struct identity_graph *g, uint16_t type, const uint8_t *key)
{
	size_t cap = g->idtab_cap;
	uint32_t tag = key_tag(key);

	if (cap == 0)
		return 0;
	for (size_t i = slot_of(key_hash(key), cap);;) {
		uint32_t s = g->idtab[i];

		if (s == 0)
			return 0;
		if ((s & ~TAGGED_MASK) == tag) {
			const struct node *n = &g->nodes[s & TAGGED_MASK];

			if (key_equal(n->key, key) && n->type == type)
				return s & TAGGED_MASK;
		}
		if (++i == cap)
			i = 0;
	}
}

static inline uint64_t link_hash(uint32_t a, uint32_t b);

/* Stage 1: the node of the first slot from slot whose tag matches key's. */
static uint32_t prefetch_candidate(const struct identity_graph *g, uint32_t slot,
				   const uint8_t *key)
{
	uint32_t tag = key_tag(key);

	for (size_t i = slot, n = 0; i < g->idtab_cap && n < 16; i++, n++) {
		uint32_t s = g->idtab[i];

		if (s == 0 || (s & ~TAGGED_MASK) == tag)
			return s & TAGGED_MASK;
	}
	return 0;
}

void graph_prefetch(const struct identity_graph *g, const struct identity_event_ids *ev,
		    int stage, struct prefetch_state *st)
{
	uint32_t center = 0, center_prio = UINT32_MAX;

	if (stage == 0)
		st->n = !g->idtab_cap || !ev->ids ? 0 :
			(uint32_t)(ev->n < PREFETCH_IDS ? ev->n : PREFETCH_IDS);
	for (uint32_t i = 0; i < st->n; i++) {
		const struct identity_ident *id = &ev->ids[i];
		uint32_t x = stage >= 2 ? st->node[i] : 0, up;

		switch (stage) {
		case 0:
			st->node[i] = st->link[i] = 0;
			st->slot[i] = UINT32_MAX;
			if (id->type >= g->rules.ntypes || id->blocked ||
			    g->rules.types[id->type].account)
				break;
			st->slot[i] = (uint32_t)slot_of(key_hash(id->key), g->idtab_cap);
			__builtin_prefetch(&g->idtab[st->slot[i]]);
			break;
		case 1:
			if (st->slot[i] >= g->idtab_cap)
				break;
			if ((x = prefetch_candidate(g, st->slot[i], id->key)) && x < g->nnodes) {
				st->node[i] = x;
				__builtin_prefetch(&g->nodes[x]);
			}
			break;
		case 2:
			if (!x || x >= g->nnodes || !key_equal(g->nodes[x].key, id->key) ||
			    g->nodes[x].type != id->type) {
				st->node[i] = 0;
				break;
			}
			up = g->nodes[x].up;
			if (!(up & ROOT_FLAG))
				__builtin_prefetch(&g->nodes[up]);
			else if ((up & ~ROOT_FLAG) < g->nprofiles)
				__builtin_prefetch(&g->profiles[up & ~ROOT_FLAG]);
			if (g->rules.types[id->type].priority < center_prio) {
				center_prio = g->rules.types[id->type].priority;
				center = x;
			}
			break;
		default:
			if (x && x < g->nnodes) {
				const struct profile *p = &g->profiles[pid_of_root(g, find_root_ro(g, x))];

				if (p->ext)
					__builtin_prefetch(&g->exts[p->ext]);
			}
			if (st->link[i] && st->link[i] - 1 < g->linktab_cap) {
				uint32_t l = g->linktab[st->link[i] - 1] & TAGGED_MASK;

				if (l && l < g->nlinks)
					__builtin_prefetch(&g->links[l]);
			}
			break;
		}
	}
	/* Stage 2: the link slots of the pairs the event will most likely count. */
	if (stage != 2 || !center || !g->linktab_cap)
		return;
	for (uint32_t i = 0; i < st->n; i++) {
		uint32_t x = st->node[i], a, b;
		size_t slot;

		if (!x || x == center)
			continue;
		a = center < x ? center : x;
		b = center < x ? x : center;
		slot = slot_of(link_hash(a, b), g->linktab_cap);
		st->link[i] = (uint32_t)slot + 1;
		__builtin_prefetch(&g->linktab[slot]);
	}
}

static void idtab_put(uint32_t *tab, size_t cap, const struct node *n, uint32_t x)
{
	size_t i = slot_of(key_hash(n->key), cap);

	while (tab[i])
		if (++i == cap)
			i = 0;
	tab[i] = key_tag(n->key) | x;
}

/* Makes room for need identifiers, rebuilding the table from the nodes. */
static void idtab_reserve(struct identity_graph *g, size_t need)
{
	size_t cap;
	uint32_t *tab;

	if (need * 100 <= g->idtab_cap * IDTAB_MAX_LOAD_PCT)
		return;
	cap = tagged_next_cap(g->idtab_cap, need, IDTAB_MAX_LOAD_PCT);
	tab = idmem_resize(NULL, 0, cap * sizeof(*tab));
	/* Nodes are read in order; the slots they go to are prefetched ahead. */
	for (uint32_t x = 1; x < g->nnodes; x++) {
		if (x + REBUILD_AHEAD < g->nnodes)
			__builtin_prefetch(&tab[slot_of(key_hash(g->nodes[x + REBUILD_AHEAD].key),
							cap)], 1);
		idtab_put(tab, cap, &g->nodes[x], x);
	}
	idmem_free(g->idtab, g->idtab_cap * sizeof(*g->idtab));
	g->idtab = tab;
	g->idtab_cap = cap;
}

static uint32_t new_node(struct identity_graph *g, const struct item *it, uint16_t day)
{
	struct node *n;
	uint32_t x;

	g->nodes = reserve(g->nodes, &g->nodes_cap, (size_t)g->nnodes + 1, sizeof(*g->nodes), 64);
	idtab_reserve(g, g->nnodes);
	x = g->nnodes++;
	n = &g->nodes[x];
	memcpy(n->key, it->key, IDENTITY_KEY_BYTES);
	n->type = it->type;
	n->seen = day;
	idtab_put(g->idtab, g->idtab_cap, n, x);
	return x;
}

/* ---- type counts ---- */

/*
 * Most profiles hold a few values of a few types, and the built-in types
 * are numbered below 16: so a profile's counts are 4-bit fields, 8 bytes in
 * all, and only a count of 15 or more, or a type numbered 16 or more, goes
 * to the counts table, keyed by (profile, type).
 */
static inline uint32_t nib_get(uint64_t v, uint16_t t)
{
	return (uint32_t)(v >> (4 * t)) & NIBBLE_MAX;
}

static inline uint64_t nib_set(uint64_t v, uint16_t t, uint32_t n)
{
	return (v & ~((uint64_t)NIBBLE_MAX << (4 * t))) | (uint64_t)n << (4 * t);
}

static uint64_t count_hash(uint32_t pid, uint16_t type)
{
	return mix64((uint64_t)pid << 16 | type);
}

static struct count_slot *count_slot(struct count_slot *tab, size_t cap, uint32_t pid,
				     uint16_t type)
{
	for (size_t i = slot_of(count_hash(pid, type), cap);; i = i + 1 == cap ? 0 : i + 1)
		if (tab[i].pid == 0 || (tab[i].pid == pid && tab[i].type == type))
			return &tab[i];
}

static uint32_t counts_get(const struct identity_graph *g, uint32_t pid, uint16_t type)
{
	return g->counts_cap ? count_slot(g->counts, g->counts_cap, pid, type)->count : 0;
}

static void counts_add(struct identity_graph *g, uint32_t pid, uint16_t type, uint32_t n)
{
	struct count_slot *s;

	if ((g->ncounts + 1) * 100 > g->counts_cap * COUNTS_MAX_LOAD_PCT) {
		size_t cap = idmem_next_cap(g->counts_cap,
					    (g->ncounts + 1) * 100 / COUNTS_MAX_LOAD_PCT + 1, 16);
		struct count_slot *tab = idmem_resize(NULL, 0, cap * sizeof(*tab));

		for (size_t i = 0; i < g->counts_cap; i++)
			if (g->counts[i].pid)
				*count_slot(tab, cap, g->counts[i].pid, g->counts[i].type) =
					g->counts[i];
		idmem_free(g->counts, g->counts_cap * sizeof(*g->counts));
		g->counts = tab;
		g->counts_cap = cap;
	}
	s = count_slot(g->counts, g->counts_cap, pid, type);
	if (!s->pid) {
		s->pid = pid;
		s->type = type;
		s->count = 0;
		g->ncounts++;
	}
	s->count = s->count + n < s->count ? UINT32_MAX : s->count + n;
}

/* Removes (pid, type) from the counts table (backward-shift deletion). */
static void counts_del(struct identity_graph *g, uint32_t pid, uint16_t type)
{
	size_t cap = g->counts_cap, i, j;
	struct count_slot *s;

	if (!cap || !(s = count_slot(g->counts, cap, pid, type))->pid)
		return;
	i = (size_t)(s - g->counts);
	g->ncounts--;
	for (j = i;;) {
		j = j + 1 == cap ? 0 : j + 1;
		if (!g->counts[j].pid)
			break;

		size_t home = slot_of(count_hash(g->counts[j].pid, g->counts[j].type), cap);

		/* Move j back to i unless its home lies cyclically in (i, j]. */
		if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
			g->counts[i] = g->counts[j];
			i = j;
		}
	}
	memset(&g->counts[i], 0, sizeof(g->counts[i]));
}

static inline uint64_t ext_nibbles(const struct pext *e)
{
	return (uint64_t)e->nib_hi << 32 | e->nib_lo;
}

static inline void ext_set_nibbles(struct pext *e, uint64_t v)
{
	e->nib_lo = (uint32_t)v;
	e->nib_hi = (uint32_t)(v >> 32);
}

/* The sum of the sixteen 4-bit fields. */
static inline uint32_t nibble_sum(uint64_t v)
{
	v = (v & 0x0f0f0f0f0f0f0f0full) + (v >> 4 & 0x0f0f0f0f0f0f0f0full);
	return (uint32_t)((v * 0x0101010101010101ull) >> 56);
}

static inline uint32_t hist_of(const struct pext *e)
{
	return e->hist & EXT_HIST_MASK;
}

/* Adds n values of type to profile pid's counts (its extension is ext). */
static void tc_add(struct identity_graph *g, uint32_t pid, uint32_t ext, uint16_t type,
		   uint32_t n)
{
	struct pext *e = &g->exts[ext];
	uint64_t v = ext_nibbles(e);
	uint32_t cur = type < NIBBLE_TYPES ? nib_get(v, type) : NIBBLE_MAX;

	if (cur < NIBBLE_MAX && cur + n < NIBBLE_MAX) {
		ext_set_nibbles(e, nib_set(v, type, cur + n));
		return;
	}
	/* From now on the size is no longer the fields' sum: keep it in counts. */
	if (!(e->hist & EXT_BIG)) {
		e->hist |= EXT_BIG;
		counts_add(g, pid, SIZE_TYPE, nibble_sum(v));
	}
	if (type < NIBBLE_TYPES)
		ext_set_nibbles(e, nib_set(v, type, NIBBLE_MAX));
	counts_add(g, pid, type, cur < NIBBLE_MAX ? cur + n : n);
}

/* Adds n identifiers to the size of profile pid (extension ext), after tc_add(). */
static void size_add(struct identity_graph *g, uint32_t pid, uint32_t ext, uint32_t n)
{
	if (g->exts[ext].hist & EXT_BIG)
		counts_add(g, pid, SIZE_TYPE, n);
}

uint32_t graph_count(const struct identity_graph *g, uint32_t pid, uint16_t type)
{
	uint32_t ext = g->profiles[pid].ext, n;
	const struct pext *e = &g->exts[ext];

	if (!ext)
		return g->nodes[g->profiles[pid].node].type == type;
	if (type >= NIBBLE_TYPES)
		return e->hist & EXT_BIG ? counts_get(g, pid, type) : 0;
	n = nib_get(ext_nibbles(e), type);
	return n < NIBBLE_MAX ? n : counts_get(g, pid, type);
}

void graph_each_count(const struct identity_graph *g, uint32_t pid,
		      void (*fn)(void *arg, uint16_t type, uint32_t count), void *arg)
{
	uint32_t ext = g->profiles[pid].ext;
	const struct pext *e = &g->exts[ext];
	uint64_t v = ext_nibbles(e);

	if (!ext) {
		fn(arg, g->nodes[g->profiles[pid].node].type, 1);
		return;
	}
	for (uint16_t t = 0; t < NIBBLE_TYPES; t++) {
		uint32_t n = nib_get(v, t);

		if (n)
			fn(arg, t, n < NIBBLE_MAX ? n : counts_get(g, pid, t));
	}
	if (e->hist & EXT_BIG)
		for (uint32_t t = NIBBLE_TYPES; t < g->rules.ntypes; t++) {
			uint32_t n = counts_get(g, pid, (uint16_t)t);

			if (n)
				fn(arg, (uint16_t)t, n);
		}
}

/* Empties profile pid's counts (extension ext), giving back its entries in counts. */
static void tc_clear(struct identity_graph *g, uint32_t pid, uint32_t ext)
{
	struct pext *e = &g->exts[ext];

	if (e->hist & EXT_BIG) {
		uint64_t v = ext_nibbles(e);

		for (uint16_t t = 0; t < NIBBLE_TYPES; t++)
			if (nib_get(v, t) == NIBBLE_MAX)
				counts_del(g, pid, t);
		for (uint32_t t = NIBBLE_TYPES; t < g->rules.ntypes; t++)
			counts_del(g, pid, (uint16_t)t);
		counts_del(g, pid, SIZE_TYPE);
		e = &g->exts[ext];
		e->hist &= ~EXT_BIG;
	}
	ext_set_nibbles(e, 0);
}

/* ---- profiles ---- */

static uint32_t new_ext(struct identity_graph *g)
{
	g->exts = reserve(g->exts, &g->exts_cap, (size_t)g->nexts + 1, sizeof(*g->exts), 16);
	memset(&g->exts[g->nexts], 0, sizeof(*g->exts));
	return g->nexts++;
}

/* The extension of profile pid, created from its lone identifier if needed. */
static uint32_t ext_index(struct identity_graph *g, uint32_t pid)
{
	uint32_t x = g->profiles[pid].ext;

	if (x)
		return x;
	x = new_ext(g);
	g->profiles[pid].ext = x;
	tc_add(g, pid, x, g->nodes[g->profiles[pid].node].type, 1);
	size_add(g, pid, x, 1);
	return x;
}

struct hist *graph_hist(struct identity_graph *g, uint32_t pid)
{
	uint32_t x = ext_index(g, pid), h = hist_of(&g->exts[x]);

	if (!h) {
		g->hists = reserve(g->hists, &g->hists_cap, (size_t)g->nhists + 1,
				   sizeof(*g->hists), 16);
		h = g->nhists++;
		assert(h <= EXT_HIST_MASK);
		memset(&g->hists[h], 0, sizeof(g->hists[h]));
		g->hists[h].ring = pid;
		g->exts[x].hist |= h;
	}
	return &g->hists[h];
}

void graph_recount(struct identity_graph *g, uint32_t pid, const uint32_t *nodes, size_t n)
{
	uint32_t ext = g->profiles[pid].ext;

	if (ext)
		tc_clear(g, pid, ext);
	else if (n > 1)
		g->profiles[pid].ext = ext = new_ext(g);
	if (!ext)
		return;
	for (size_t i = 0; i < n; i++) {
		tc_add(g, pid, ext, g->nodes[nodes[i]].type, 1);
		size_add(g, pid, ext, 1);
	}
}

uint32_t graph_size(const struct identity_graph *g, uint32_t pid)
{
	uint32_t x = g->profiles[pid].ext;
	const struct pext *e = &g->exts[x];

	if (!x)
		return 1;
	return e->hist & EXT_BIG ? counts_get(g, pid, SIZE_TYPE) : nibble_sum(ext_nibbles(e));
}

uint32_t graph_merges_of(const struct identity_graph *g, uint32_t pid)
{
	uint32_t x = g->profiles[pid].ext;

	return x && hist_of(&g->exts[x]) ? g->hists[hist_of(&g->exts[x])].merges : 0;
}

uint32_t graph_new_profile(struct identity_graph *g, struct item *items,
			   const uint16_t *which, size_t n, uint16_t day)
{
	uint32_t pid, root, prev;

	assert(n > 0 && g->nprofiles < PROFILES_MAX);
	g->profiles = reserve(g->profiles, &g->profiles_cap, (size_t)g->nprofiles + 1,
			      sizeof(*g->profiles), 64);
	pid = g->nprofiles++;
	g->live++;
	root = prev = new_node(g, &items[which[0]], day);
	items[which[0]].node = root;
	g->nodes[root].up = ROOT_FLAG | pid;
	g->profiles[pid].node = root;
	g->profiles[pid].ext = 0;
	for (size_t j = 1; j < n; j++) {
		uint32_t x = new_node(g, &items[which[j]], day);

		items[which[j]].node = x;
		g->nodes[x].up = root;
		g->nodes[prev].ring = x;
		prev = x;
	}
	g->nodes[prev].ring = root;
	if (n > 1) {
		uint32_t ext = ext_index(g, pid);

		for (size_t j = 1; j < n; j++) {
			tc_add(g, pid, ext, items[which[j]].type, 1);
			size_add(g, pid, ext, 1);
		}
	}
	return pid;
}

void graph_add_nodes(struct identity_graph *g, uint32_t pid, struct item *items,
		     const uint16_t *which, size_t n, uint16_t day)
{
	uint32_t root, ext;

	if (n == 0)
		return;
	root = find_root(g, g->profiles[pid].node);
	ext = ext_index(g, pid);
	for (size_t j = 0; j < n; j++) {
		uint32_t x = new_node(g, &items[which[j]], day);

		items[which[j]].node = x;
		g->nodes[x].up = root;
		g->nodes[x].ring = g->nodes[root].ring;
		g->nodes[root].ring = x;
		tc_add(g, pid, ext, items[which[j]].type, 1);
		size_add(g, pid, ext, 1);
	}
}

static void swap32(uint32_t *a, uint32_t *b)
{
	uint32_t t = *a;

	*a = *b;
	*b = t;
}

struct absorb {
	struct identity_graph *g;
	uint32_t pid, ext;
};

static void absorb_count(void *arg, uint16_t type, uint32_t count)
{
	struct absorb *a = arg;

	tc_add(a->g, a->pid, a->ext, type, count);
	size_add(a->g, a->pid, a->ext, count);
}

/*
 * Merges the k profiles (distinct, live) into the oldest, which it returns.
 * The union-find root is the largest profile's root (union by size); the
 * profile id on it is the oldest one. Node lists and history lists are
 * circular, so each join is one swap.
 */
uint32_t graph_merge(struct identity_graph *g, const uint32_t *pids, size_t k)
{
	uint32_t roots[IDENTITY_EVENT_IDS_MAX];
	uint32_t surv = pids[0], anchor = 0, sh;
	uint64_t merges = k - 1;
	size_t big = 0;
	struct absorb into = { .g = g };

	assert(k >= 2 && k <= IDENTITY_EVENT_IDS_MAX);
	for (size_t i = 0; i < k; i++) {
		roots[i] = find_root(g, g->profiles[pids[i]].node);
		merges += graph_merges_of(g, pids[i]);
		if (graph_size(g, pids[i]) > graph_size(g, pids[big]))
			big = i;
		if (pids[i] < surv)
			surv = pids[i];
	}
	into.pid = surv;
	graph_hist(g, surv);
	into.ext = g->profiles[surv].ext;
	sh = hist_of(&g->exts[into.ext]);
	for (size_t i = 0; i < k; i++) {
		uint32_t q = pids[i], qext = g->profiles[q].ext;

		if (q == surv) {
			anchor = roots[i];
			continue;
		}
		/* Sizes are the sums of the counts: absorbing these moves both. */
		graph_each_count(g, q, absorb_count, &into);
		if (!qext)
			continue;
		tc_clear(g, q, qext);
		/* Only profiles with history join the list: the others have none to show. */
		if (hist_of(&g->exts[qext]))
			swap32(&g->hists[sh].ring, &g->hists[hist_of(&g->exts[qext])].ring);
	}
	for (size_t i = 0; i < k; i++) {
		if (pids[i] != surv)
			swap32(&g->nodes[anchor].ring, &g->nodes[roots[i]].ring);
		if (i != big)
			g->nodes[roots[i]].up = roots[big];
	}
	g->nodes[roots[big]].up = ROOT_FLAG | surv;
	g->hists[sh].merges = merges > UINT32_MAX ? UINT32_MAX : (uint32_t)merges;
	g->live -= k - 1;
	g->merges += k - 1;
	return surv;
}

/* ---- links ---- */

static inline uint64_t link_hash(uint32_t a, uint32_t b)
{
	return mix64((uint64_t)a << 32 | b);
}

static inline uint32_t link_tag(uint64_t h)
{
	return (uint32_t)(h & 15) << TAGGED_BITS;
}

static void linktab_put(uint32_t *tab, size_t cap, const struct link *l, uint32_t x)
{
	uint64_t h = link_hash(l->a & TAGGED_MASK, l->b & TAGGED_MASK);
	size_t i = slot_of(h, cap);

	while (tab[i])
		if (++i == cap)
			i = 0;
	tab[i] = link_tag(h) | x;
}

static void linktab_reserve(struct identity_graph *g, size_t need)
{
	size_t cap;
	uint32_t *tab;

	if (need * 100 <= g->linktab_cap * LINKTAB_MAX_LOAD_PCT)
		return;
	cap = tagged_next_cap(g->linktab_cap, need, LINKTAB_MAX_LOAD_PCT);
	tab = idmem_resize(NULL, 0, cap * sizeof(*tab));
	for (uint32_t x = 1; x < g->nlinks; x++) {
		if (x + REBUILD_AHEAD < g->nlinks) {
			const struct link *l = &g->links[x + REBUILD_AHEAD];

			__builtin_prefetch(&tab[slot_of(link_hash(l->a & TAGGED_MASK,
								  l->b & TAGGED_MASK), cap)], 1);
		}
		linktab_put(tab, cap, &g->links[x], x);
	}
	idmem_free(g->linktab, g->linktab_cap * sizeof(*g->linktab));
	g->linktab = tab;
	g->linktab_cap = cap;
}

static uint32_t link_count(const struct link *l)
{
	return (l->a >> TAGGED_BITS) << 4 | l->b >> TAGGED_BITS;
}

static void new_link(struct identity_graph *g, uint32_t a, uint32_t b, int64_t seq)
{
	uint32_t x, old_cap = g->links_cap;
	int64_t base;

	g->links = reserve(g->links, &g->links_cap, (size_t)g->nlinks + 1, sizeof(*g->links), 64);
	if (g->links_cap != old_cap)
		g->link_base = idmem_resize(g->link_base,
					    old_cap ? ((size_t)old_cap / LINK_BLOCK + 1) *
						      sizeof(*g->link_base) : 0,
					    ((size_t)g->links_cap / LINK_BLOCK + 1) *
					    sizeof(*g->link_base));
	linktab_reserve(g, g->nlinks);
	x = g->nlinks++;
	/* The first link of a block sets its base: seq only grows, so later deltas are small. */
	if (x % LINK_BLOCK == 0 || x == 1)
		g->link_base[x / LINK_BLOCK] = seq;
	base = g->link_base[x / LINK_BLOCK];
	g->links[x].a = a;
	g->links[x].b = b | 1u << TAGGED_BITS;
	if (seq >= base && seq - base < UINT32_MAX) {
		g->links[x].delta = (uint32_t)(seq - base);
	} else {
		g->links[x].delta = UINT32_MAX;
		if (g->nfar == g->far_cap) {
			g->far_cap = g->far_cap ? 2 * g->far_cap : 16;
			g->far = xrealloc(g->far, xmul(g->far_cap, sizeof(*g->far)));
		}
		/* Whole, padding included: snapshots compare bytes. */
		memset(&g->far[g->nfar], 0, sizeof(g->far[g->nfar]));
		g->far[g->nfar].link = x;
		g->far[g->nfar++].seq = seq;
	}
	linktab_put(g->linktab, g->linktab_cap, &g->links[x], x);
}

void graph_link(struct identity_graph *g, uint32_t a, uint32_t b, int64_t seq)
{
	uint64_t h;
	uint32_t tag;

	if (a == b)
		return;
	if (a > b)
		swap32(&a, &b);
	h = link_hash(a, b);
	tag = link_tag(h);
	if (g->linktab_cap)
		for (size_t i = slot_of(h, g->linktab_cap);;) {
			uint32_t s = g->linktab[i];

			if (s == 0)
				break;
			if ((s & ~TAGGED_MASK) == tag) {
				struct link *l = &g->links[s & TAGGED_MASK];

				if ((l->a & TAGGED_MASK) == a && (l->b & TAGGED_MASK) == b) {
					uint32_t c = link_count(l);

					if (c < LINK_COUNT_MAX) {
						c++;
						l->a = a | (c >> 4) << TAGGED_BITS;
						l->b = b | (c & 15) << TAGGED_BITS;
					}
					return;
				}
			}
			if (++i == g->linktab_cap)
				i = 0;
		}
	if (g->nlinks <= LINKS_MAX)
		new_link(g, a, b, seq);
}

static int64_t link_seq(const struct identity_graph *g, uint32_t x)
{
	const struct link *l = &g->links[x];
	size_t lo = 0, hi = g->nfar;

	if (l->delta != UINT32_MAX)
		return g->link_base[x / LINK_BLOCK] + l->delta;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (g->far[mid].link < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	assert(lo < g->nfar && g->far[lo].link == x);
	return g->far[lo].seq;
}

void identity_links_iter_init(struct identity_links_iter *it, const struct identity_graph *g)
{
	it->g = g;
	it->next = 1;
}

bool identity_links_iter_next(struct identity_links_iter *it, struct identity_link *out)
{
	const struct identity_graph *g = it->g;
	const struct link *l;
	const struct node *a, *b;

	if (it->next >= g->nlinks)
		return false;
	l = &g->links[it->next];
	a = &g->nodes[l->a & TAGGED_MASK];
	b = &g->nodes[l->b & TAGGED_MASK];
	out->type_a = a->type;
	out->type_b = b->type;
	memcpy(out->key_a, a->key, IDENTITY_KEY_BYTES);
	memcpy(out->key_b, b->key, IDENTITY_KEY_BYTES);
	out->first_seq = link_seq(g, it->next);
	out->count = link_count(l);
	it->next++;
	return true;
}

/* ---- reading ---- */

uint64_t identity_graph_lookup(const struct identity_graph *g, uint16_t type,
			       const uint8_t key[IDENTITY_KEY_BYTES])
{
	uint32_t x = graph_find_node(g, type, key);

	return x ? pid_of_root(g, find_root_ro(g, x)) : 0;
}

uint32_t identity_graph_node(const struct identity_graph *g, uint16_t type,
			     const uint8_t key[IDENTITY_KEY_BYTES])
{
	return graph_find_node(g, type, key);
}

uint64_t identity_graph_resolve(const struct identity_graph *g, uint64_t profile_id)
{
	if (profile_id == 0 || profile_id >= g->nprofiles)
		return 0;
	return pid_of_root(g, find_root_ro(g, g->profiles[profile_id].node));
}

void identity_ids_iter_init(struct identity_ids_iter *it, const struct identity_graph *g,
			    uint64_t profile_id)
{
	uint64_t pid = identity_graph_resolve(g, profile_id);

	it->g = g;
	it->first = it->next = pid ? find_root_ro(g, g->profiles[pid].node) : 0;
}

bool identity_ids_iter_next(struct identity_ids_iter *it, struct identity_ident_info *out)
{
	const struct node *n;

	if (!it->next)
		return false;
	n = &it->g->nodes[it->next];
	memcpy(out->key, n->key, IDENTITY_KEY_BYTES);
	out->node = it->next;
	out->type = n->type;
	out->last_seen_day = n->seen;
	it->next = n->ring == it->first ? 0 : n->ring;
	return true;
}

static int digest_cmp(const void *pa, const void *pb, void *arg)
{
	const struct identity_graph *g = arg;
	const struct node *a = &g->nodes[*(const uint32_t *)pa];
	const struct node *b = &g->nodes[*(const uint32_t *)pb];
	int c = memcmp(a->key, b->key, IDENTITY_KEY_BYTES);

	if (c)
		return c;
	return strcmp(g->rules.types[a->type].name, g->rules.types[b->type].name);
}

void identity_graph_digest(const struct identity_graph *g, uint8_t out[16])
{
	size_t n = g->nnodes - 1;
	uint32_t *order = xmalloc(xmul(n ? n : 1, sizeof(*order)));
	XXH3_state_t *st = XXH3_createState();
	XXH128_hash_t h;

	if (!st)
		abort();
	/* Identifiers taken out by a split (profile 0) are no longer in the graph. */
	for (size_t i = 0, x = 1; x < g->nnodes; x++)
		if (pid_of_root(g, find_root_ro(g, (uint32_t)x)))
			order[i++] = (uint32_t)x;
		else
			n--;
	qsort_r(order, n, sizeof(*order), digest_cmp, (void *)g);
	XXH3_128bits_reset(st);
	for (size_t i = 0; i < n; i++) {
		const struct node *nd = &g->nodes[order[i]];
		const char *name = g->rules.types[nd->type].name;
		uint8_t rec[IDENTITY_KEY_BYTES + 1 + IDENTITY_TYPE_NAME_MAX + 8];
		size_t len = strlen(name), o = 0;
		uint64_t pid = pid_of_root(g, find_root_ro(g, order[i]));

		memcpy(rec, nd->key, IDENTITY_KEY_BYTES);
		o += IDENTITY_KEY_BYTES;
		rec[o++] = (uint8_t)len;
		memcpy(rec + o, name, len);
		o += len;
		for (int b = 0; b < 8; b++)
			rec[o++] = (uint8_t)(pid >> (8 * b));
		XXH3_128bits_update(st, rec, o);
	}
	h = XXH3_128bits_digest(st);
	XXH128_canonicalFromHash((XXH128_canonical_t *)out, h);
	XXH3_freeState(st);
	free(order);
}

void identity_graph_stats(const struct identity_graph *g, struct identity_stats *out)
{
	size_t blocks = g->nlinks / LINK_BLOCK + 1;
	size_t tables = sizeof(*g) + rules_bytes(&g->rules) +
			g->idtab_cap * sizeof(*g->idtab) +
			g->counts_cap * sizeof(*g->counts) +
			g->linktab_cap * sizeof(*g->linktab) +
			g->far_cap * sizeof(*g->far);

	out->identifiers = g->nnodes - 1 - g->ndead;
	out->profiles = g->live;
	out->profiles_created = g->nprofiles - 1;
	out->merges = g->merges;
	out->links = g->nlinks - 1;
	out->explanations = g->nrecs - 1;
	out->types = g->rules.ntypes;
	out->bytes = tables + expl_bytes(g, false) +
		     g->nnodes * sizeof(*g->nodes) +
		     g->nprofiles * sizeof(*g->profiles) +
		     g->nexts * sizeof(*g->exts) +
		     g->nhists * sizeof(*g->hists) +
		     g->nlinks * sizeof(*g->links) +
		     blocks * sizeof(*g->link_base);
	out->bytes_reserved = tables + expl_bytes(g, true) +
			      g->nodes_cap * sizeof(*g->nodes) +
			      g->profiles_cap * sizeof(*g->profiles) +
			      g->exts_cap * sizeof(*g->exts) +
			      g->hists_cap * sizeof(*g->hists) +
			      g->links_cap * sizeof(*g->links) +
			      ((size_t)g->links_cap / LINK_BLOCK + 1) * sizeof(*g->link_base);
}
