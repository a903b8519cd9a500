/*
 * Retroactive unmerge. Blocking an identifier that a profile holds takes it
 * out of the graph and splits the profile it held together:
 *
 *  1. the profile's identifiers and the links between the ones that remain
 *     are collected (links are the evidence: every identifier of a profile
 *     is linked to the highest-priority identifier of the event that first
 *     carried it);
 *  2. links sharing a first event are replayed as that event, in log order,
 *     into a scratch graph under the current rules, so limits and caps
 *     apply as they would have;
 *  3. each profile of the scratch graph becomes a part. A part keeps the id
 *     of the oldest original profile whose first identifier it holds, and
 *     the other original profiles there stay absorbed into it; a part
 *     holding none gets a new id. The part holding the oldest profile thus
 *     keeps that id, and the people a shared value glued together get
 *     their own profiles back under the ids they had.
 *
 * Windowed limits see each replayed link at its identifiers' last day seen:
 * links keep the event's sequence number, not its timestamp.
 */
#include "identity/identity_int.h"

#include <assert.h>
#include <stdlib.h>

#include "lib/alloc.h"
#include "lib/err.h"

struct comp {
	uint32_t *nodes;	/* the component's nodes, ascending */
	size_t n;
	uint8_t *dead;		/* per nodes[i]: blocked */
	uint32_t *part;		/* per nodes[i]: part number, UINT32_MAX for dead nodes */
	uint64_t *bits;		/* membership bitmap over node numbers */
};

struct plink {
	int64_t seq;
	uint32_t a, b;
};

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static int plink_cmp(const void *pa, const void *pb)
{
	const struct plink *a = pa, *b = pb;

	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return u32_cmp(&a->a, &b->a) ? u32_cmp(&a->a, &b->a) : u32_cmp(&a->b, &b->b);
}

static bool comp_has(const struct comp *c, uint32_t x)
{
	return c->bits[x / 64] >> (x % 64) & 1;
}

/* The index of node x in c->nodes (x must be a member). */
static size_t comp_index(const struct comp *c, uint32_t x)
{
	const uint32_t *p = bsearch(&x, c->nodes, c->n, sizeof(x), u32_cmp);

	return (size_t)(p - c->nodes);
}

static void comp_collect(struct identity_graph *g, uint32_t root, struct comp *c)
{
	size_t cap = 16;

	c->nodes = xmalloc(cap * sizeof(*c->nodes));
	c->n = 0;
	for (uint32_t x = root;;) {
		if (c->n == cap) {
			cap *= 2;
			c->nodes = xrealloc(c->nodes, xmul(cap, sizeof(*c->nodes)));
		}
		c->nodes[c->n++] = x;
		x = g->nodes[x].ring;
		if (x == root)
			break;
	}
	qsort(c->nodes, c->n, sizeof(*c->nodes), u32_cmp);
	c->bits = xcalloc(g->nnodes / 64 + 1, sizeof(*c->bits));
	c->dead = xcalloc(c->n, 1);
	c->part = xmalloc(xmul(c->n, sizeof(*c->part)));
	for (size_t i = 0; i < c->n; i++) {
		const struct node *nd = &g->nodes[c->nodes[i]];

		c->bits[c->nodes[i] / 64] |= 1ull << (c->nodes[i] % 64);
		c->dead[i] = rules_is_blocked(&g->rules, nd->type, nd->key);
		c->part[i] = UINT32_MAX;
	}
}

static void comp_release(struct comp *c)
{
	free(c->nodes);
	free(c->dead);
	free(c->part);
	free(c->bits);
}

static bool node_live(const struct comp *c, uint32_t x)
{
	return comp_has(c, x) && !c->dead[comp_index(c, x)];
}

/* Blocked: now, in this split, or by an earlier one (which left it in no profile). */
static bool node_dead(const struct identity_graph *g, const struct comp *c, uint32_t x)
{
	return comp_has(c, x) ? c->dead[comp_index(c, x)] : g->nodes[x].up == ROOT_FLAG;
}

/* The links of the component's remaining identifiers (to each other or to a blocked one), in log order. */
static struct plink *comp_links(struct identity_graph *g, const struct comp *c, size_t *n)
{
	struct identity_links_iter it;
	struct identity_link l;
	struct plink *out = NULL;
	size_t cap = 0;
	uint32_t x = 1;

	*n = 0;
	identity_links_iter_init(&it, g);
	for (; identity_links_iter_next(&it, &l); x++) {
		uint32_t a = g->links[x].a & TAGGED_MASK, b = g->links[x].b & TAGGED_MASK;

		/*
		 * A link to the blocked identifier still says which others were on
		 * the same event (they share its first seq): keep it, and let the
		 * replay leave the blocked end out.
		 */
		if (!(node_live(c, a) && (node_live(c, b) || node_dead(g, c, b))) &&
		    !(node_live(c, b) && node_dead(g, c, a)))
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 64;
			out = xrealloc(out, xmul(cap, sizeof(*out)));
		}
		out[(*n)++] = (struct plink){ l.first_seq, a, b };
	}
	if (*n > 1)	/* out is NULL when no link remains, which qsort may not get */
		qsort(out, *n, sizeof(*out), plink_cmp);
	return out;
}

static void add_ident(const struct identity_graph *g, struct identity_ident *ids, size_t *n,
		      uint32_t x)
{
	for (size_t i = 0; i < *n; i++)
		if (memcmp(ids[i].key, g->nodes[x].key, IDENTITY_KEY_BYTES) == 0 &&
		    ids[i].type == g->nodes[x].type)
			return;
	memset(&ids[*n], 0, sizeof(ids[*n]));
	memcpy(ids[*n].key, g->nodes[x].key, IDENTITY_KEY_BYTES);
	ids[*n].type = g->nodes[x].type;
	(*n)++;
}

/* Replays the links as events into a scratch graph; returns it. */
static struct identity_graph *replay(struct identity_graph *g, const struct comp *c,
				     const struct plink *links, size_t nlinks)
{
	struct identity_graph *t = identity_graph_new(&g->rules);
	struct identity_ident ids[IDENTITY_EVENT_IDS_MAX];

	for (size_t i = 0; i < nlinks;) {
		struct identity_event_ids ev = { .ids = ids, .seq = links[i].seq };
		uint16_t day = 0;
		size_t n = 0;
		uint64_t pid;

		for (; i < nlinks && links[i].seq == ev.seq && n + 2 <= IDENTITY_EVENT_IDS_MAX; i++) {
			uint32_t ends[2] = { links[i].a, links[i].b };

			for (int k = 0; k < 2; k++) {
				if (!node_live(c, ends[k]))
					continue;
				add_ident(g, ids, &n, ends[k]);
				if (g->nodes[ends[k]].seen > day)
					day = g->nodes[ends[k]].seen;
			}
		}
		ev.n = n;
		ev.ts_us = (int64_t)day * 86400 * 1000000;
		identity_graph_apply(t, &ev, &pid);
	}
	return t;
}

/*
 * Numbers the parts: one per profile of the scratch graph, in its order of
 * creation, then one per remaining identifier the replay left out (a lone
 * identifier, or one a limit dropped). Returns how many.
 */
static uint32_t number_parts(const struct identity_graph *g, const struct identity_graph *t,
			     struct comp *c)
{
	uint32_t *of = xcalloc((size_t)t->nprofiles, sizeof(*of));	/* scratch pid -> part + 1 */
	uint32_t nparts = 0;

	for (size_t i = 0; i < c->n; i++) {
		const struct node *nd = &g->nodes[c->nodes[i]];
		uint64_t tp;

		if (c->dead[i])
			continue;
		tp = identity_graph_lookup(t, nd->type, nd->key);
		if (!tp) {
			c->part[i] = nparts++;
			continue;
		}
		if (!of[tp])
			of[tp] = ++nparts;
		c->part[i] = of[tp] - 1;
	}
	free(of);
	return nparts;
}

static uint32_t new_profile_id(struct identity_graph *g, uint32_t node)
{
	uint32_t pid;

	assert(g->nprofiles < PROFILES_MAX);
	if (g->nprofiles + 1 > g->profiles_cap) {
		size_t cap = idmem_next_cap(g->profiles_cap, g->nprofiles + 1, 64);

		g->profiles = idmem_resize(g->profiles, g->profiles_cap * sizeof(*g->profiles),
					   cap * sizeof(*g->profiles));
		g->profiles_cap = (uint32_t)cap;
	}
	pid = g->nprofiles++;
	g->profiles[pid].node = node;
	g->profiles[pid].ext = 0;
	return pid;
}

static uint32_t hist_index(const struct identity_graph *g, uint32_t pid)
{
	uint32_t ext = g->profiles[pid].ext;

	return ext ? g->exts[ext].hist & EXT_HIST_MASK : 0;
}

static void swap32(uint32_t *a, uint32_t *b)
{
	uint32_t t = *a;

	*a = *b;
	*b = t;
}

/* Joins profile q's history list to pid's (q's list is a single entry). */
static void join_hist(struct identity_graph *g, uint32_t pid, uint32_t q)
{
	uint32_t hq = hist_index(g, q), hp;

	if (!hq)
		return;
	graph_hist(g, pid);
	hp = hist_index(g, pid);
	swap32(&g->hists[hp].ring, &g->hists[hq].ring);
}

struct split_state {
	struct comp c;
	uint32_t *orig;		/* original profiles, ascending */
	size_t norig;
	uint32_t nparts;
	uint32_t *part_id;	/* per part: its profile id */
	uint32_t *part_root;	/* per part: its root node */
	uint32_t *part_size;
	uint32_t created;	/* parts given a new id */
};

/* The original profiles: those whose first node is in the component. */
static void collect_profiles(const struct identity_graph *g, struct split_state *s)
{
	size_t cap = 0;

	for (uint32_t q = 1; q < g->nprofiles; q++) {
		if (!comp_has(&s->c, g->profiles[q].node))
			continue;
		if (s->norig == cap) {
			cap = cap ? 2 * cap : 16;
			s->orig = xrealloc(s->orig, xmul(cap, sizeof(*s->orig)));
		}
		s->orig[s->norig++] = q;
	}
}

/* The newest record filed under profile q, 0 if none. */
static uint32_t newest_record(const struct identity_graph *g, uint32_t q)
{
	uint32_t h = hist_index(g, q);

	return h ? g->hists[h].expl : 0;
}

/*
 * Gives each part its id: the oldest original profile whose first node it
 * holds, else new. A profile an earlier split refiled (its first
 * identifier was blocked) points at the first node of the part it went
 * to, which it shares with the profile that part is named after, and it
 * must not take the part's id even if it is older. Of the profiles sharing
 * a node, the part's own is the one with the newest record: that split
 * filed one under it, and a refiled profile never gets another.
 */
static void assign_ids(struct identity_graph *g, struct split_state *s)
{
	struct comp *c = &s->c;
	uint32_t *owner = xcalloc(c->n, sizeof(*owner));	/* per node: whose first it is */

	s->part_id = xcalloc(s->nparts + 1, sizeof(*s->part_id));
	s->part_root = xcalloc(s->nparts + 1, sizeof(*s->part_root));
	s->part_size = xcalloc(s->nparts + 1, sizeof(*s->part_size));
	for (size_t i = 0; i < s->norig; i++) {
		uint32_t q = s->orig[i];
		size_t at = comp_index(c, g->profiles[q].node);

		if (!owner[at] || newest_record(g, q) > newest_record(g, owner[at]))
			owner[at] = q;
	}
	for (size_t i = 0; i < s->norig; i++) {
		uint32_t q = s->orig[i], x = g->profiles[q].node;
		size_t at = comp_index(c, x);

		if (c->dead[at] || owner[at] != q || s->part_id[c->part[at]])
			continue;
		s->part_id[c->part[at]] = q;
		s->part_root[c->part[at]] = x;
	}
	free(owner);
	for (size_t i = 0; i < c->n; i++) {
		uint32_t p = c->part[i];

		if (p == UINT32_MAX)
			continue;
		s->part_size[p]++;
		if (!s->part_root[p])
			s->part_root[p] = c->nodes[i];	/* its oldest node */
	}
	for (uint32_t p = 0; p < s->nparts; p++)
		if (!s->part_id[p]) {
			s->part_id[p] = new_profile_id(g, s->part_root[p]);
			s->created++;
		}
}

/* Rewrites the union-find, node lists, counts and histories of the parts. */
static void rewrite(struct identity_graph *g, struct split_state *s)
{
	struct comp *c = &s->c;
	uint32_t *members = xmalloc(xmul(c->n, sizeof(*members)));
	uint32_t *prev = xcalloc(s->nparts + 1, sizeof(*prev));

	for (size_t i = 0; i < s->norig; i++) {
		uint32_t h = hist_index(g, s->orig[i]);

		if (h) {
			g->hists[h].ring = s->orig[i];
			g->hists[h].merges = 0;
		}
		graph_recount(g, s->orig[i], NULL, 0);
	}
	/* Nodes: flat trees under each part's root, rings in node order. */
	for (size_t i = 0; i < c->n; i++) {
		uint32_t x = c->nodes[i], p = c->part[i];

		if (p == UINT32_MAX) {
			g->nodes[x].up = ROOT_FLAG;	/* profile 0: no longer an identifier */
			g->nodes[x].ring = x;
			g->ndead++;
			continue;
		}
		g->nodes[x].up = x == s->part_root[p] ? ROOT_FLAG | s->part_id[p] : s->part_root[p];
		if (prev[p])
			g->nodes[prev[p]].ring = x;
		else
			g->nodes[x].ring = x;
		prev[p] = x;
	}
	for (uint32_t p = 0; p < s->nparts; p++) {
		size_t n = 0;
		uint32_t first = 0;

		for (size_t i = 0; i < c->n; i++)
			if (c->part[i] == p) {
				if (!first)
					first = c->nodes[i];
				members[n++] = c->nodes[i];
			}
		g->nodes[prev[p]].ring = first;
		graph_recount(g, s->part_id[p], members, n);
	}
	free(prev);
	free(members);
}

/* Files the absorbed profiles under their parts; a profile whose first identifier was blocked goes to the oldest part. */
static void refile_profiles(struct identity_graph *g, struct split_state *s, uint32_t oldest)
{
	struct comp *c = &s->c;

	for (size_t i = 0; i < s->norig; i++) {
		uint32_t q = s->orig[i], x = g->profiles[q].node;
		size_t at = comp_index(c, x);
		uint32_t p = c->dead[at] ? oldest : c->part[at];

		if (p == UINT32_MAX)	/* nothing remains: q resolves to no profile */
			continue;
		if (q == s->part_id[p])
			continue;
		if (c->dead[at])
			g->profiles[q].node = s->part_root[p];
		struct hist *h = graph_hist(g, s->part_id[p]);

		if (h->merges < UINT32_MAX)
			h->merges++;
		join_hist(g, s->part_id[p], q);
	}
}

static void record_split(struct identity_graph *g, const struct split_state *s, uint32_t was,
			 uint16_t type, const uint8_t *key, int64_t seq)
{
	for (uint32_t p = 0; p < s->nparts; p++) {
		struct xrec rec;

		memset(&rec, 0, sizeof(rec));
		rec.seq_lo = (uint32_t)seq;
		rec.seq_hi = (uint16_t)((uint64_t)seq >> 32);
		rec.kind = IDENTITY_EXPL_SPLIT;
		rec.reason = IDENTITY_REASON_BLOCKED_KEY;
		memcpy(rec.key, key, IDENTITY_KEY_BYTES);
		rec.profile = s->part_id[p];
		rec.other = was;
		rec.type = type;
		rec.limit_type = IDENTITY_TYPE_NONE;
		expl_add(g, &rec, false);
	}
}

static void split(struct identity_graph *g, uint32_t pid, uint16_t type, const uint8_t *key,
		  int64_t seq, struct identity_split *out)
{
	struct split_state s = { 0 };
	struct identity_graph *t;
	struct plink *links;
	size_t nlinks;
	uint32_t oldest = UINT32_MAX;

	comp_collect(g, find_root(g, g->profiles[pid].node), &s.c);
	collect_profiles(g, &s);
	links = comp_links(g, &s.c, &nlinks);
	t = replay(g, &s.c, links, nlinks);
	s.nparts = number_parts(g, t, &s.c);
	identity_graph_free(t);
	free(links);
	assign_ids(g, &s);
	rewrite(g, &s);
	for (uint32_t p = 0; p < s.nparts; p++)
		if (oldest == UINT32_MAX || s.part_id[p] < s.part_id[oldest])
			oldest = p;
	refile_profiles(g, &s, oldest);
	record_split(g, &s, pid, type, key, seq);
	/*
	 * The original profiles were one live profile and norig - 1 absorbed;
	 * now the parts are live and every other profile of them (new ids
	 * included) is absorbed, or, with no part left, none is anything.
	 * Profiles an earlier split emptied are neither live nor merged, so
	 * merges is not simply created - live.
	 */
	g->live = g->live - 1 + s.nparts;
	g->merges -= s.norig - 1;
	if (s.nparts)
		g->merges += s.norig + s.created - s.nparts;
	out->profile_id = pid;
	out->parts = s.nparts;
	out->created = s.created;
	comp_release(&s.c);
	free(s.orig);
	free(s.part_id);
	free(s.part_root);
	free(s.part_size);
}

int identity_graph_block(struct identity_graph *g, uint16_t type,
			 const uint8_t key[IDENTITY_KEY_BYTES], int64_t seq,
			 struct identity_split *out)
{
	const char *name = identity_graph_type_name(g, type);
	uint32_t x;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!name || seq < 0 || seq >= IDENTITY_SEQ_LIMIT)
		return WEFT_EINVAL;
	if ((rc = identity_rules_block(&g->rules, name, key)))
		return rc;
	x = graph_find_node(g, type, key);
	if (!x || g->rules.types[type].account)
		return 0;
	uint32_t root = find_root(g, x), pid = pid_of_root(g, root);

	if (pid)
		split(g, pid, type, key, seq, out);
	return 0;
}
