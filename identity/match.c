/*
 * Matching: what one event does to the graph (Segment Unify's rules; see
 * identity.h). The event's identifiers become items sorted by priority;
 * the loop finds the profiles they match and drops the lowest-priority item
 * while the match would break a limit; then the caps decide whether the
 * final match creates, extends or merges profiles, or only attaches.
 * Records of what was refused wait in g->pend until the event's profile is
 * known, since that is the profile they are filed under.
 */
#include "identity/identity_int.h"

#include "lib/err.h"

struct match {
	const struct identity_event_ids *ev;
	size_t n;		/* items */
	size_t k;		/* matched profiles (g->mprof) */
	size_t nnew;		/* items not in the graph */
	size_t npend;
	int64_t day;		/* the event's (UTC) day, days since 1970 */
	uint16_t seen;		/* the same, as nodes keep it */
};

#define US_PER_DAY (86400LL * 1000000)

static int64_t day_of(int64_t us)
{
	return us / US_PER_DAY - (us % US_PER_DAY < 0);
}

static void pend(struct identity_graph *g, struct match *m, const uint8_t *key,
		 uint16_t type, uint32_t node, uint8_t kind, uint8_t reason,
		 uint16_t limit_type, uint32_t other)
{
	struct pending *p = &g->pend[m->npend++];

	p->key = key;
	p->type = type;
	p->node = node;
	p->kind = kind;
	p->reason = reason;
	p->limit_type = limit_type;
	p->other = other;
}

static void pend_item(struct identity_graph *g, struct match *m, const struct item *it,
		      uint8_t kind, uint8_t reason, uint16_t limit_type, uint32_t other)
{
	pend(g, m, it->key, it->type, it->node, kind, reason, limit_type, other);
}

/* A record of the event being applied. */
static void rec_init(struct xrec *rec, const struct identity_event_ids *ev)
{
	memset(rec, 0, sizeof(*rec));
	rec->seq_lo = (uint32_t)ev->seq;
	rec->seq_hi = (uint16_t)((uint64_t)ev->seq >> 32);
	rec->ref_lo = (uint32_t)ev->ref;
	rec->ref_hi = (uint32_t)(ev->ref >> 32);
}

/* ---- building the items ---- */

static int find_item(const struct identity_graph *g, size_t n, uint16_t type,
		     const uint8_t *key)
{
	for (size_t j = 0; j < n; j++)
		if (g->items[j].type == type && key_equal(g->items[j].key, key))
			return (int)j;
	return -1;
}

/* Whether ev->ids[i] repeats an earlier identifier of the event (for records counted once). */
static bool repeated(const struct identity_event_ids *ev, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (ev->ids[j].type == ev->ids[i].type && key_equal(ev->ids[j].key, ev->ids[i].key))
			return true;
	return false;
}

/* Collects the event's identifiers; returns how many group ids were put in groups. */
static size_t collect_items(struct identity_graph *g, struct match *m, uint16_t *groups)
{
	const struct identity_event_ids *ev = m->ev;
	size_t ngroups = 0;

	for (size_t i = 0; i < ev->n; i++) {
		const struct identity_ident *id = &ev->ids[i];
		const struct type_rule *rule = &g->rules.types[id->type];
		int dup;

		if (rule->account && !id->blocked) {
			if (!repeated(ev, i))
				groups[ngroups++] = (uint16_t)i;
			continue;
		}
		if (id->blocked || rules_is_blocked(&g->rules, id->type, id->key)) {
			if (!repeated(ev, i))
				pend(g, m, id->key, id->type, 0, IDENTITY_EXPL_BLOCKED,
				     id->blocked ? IDENTITY_REASON_BLOCKED_VALUE :
						   IDENTITY_REASON_BLOCKED_KEY,
				     IDENTITY_TYPE_NONE, 0);
			continue;
		}
		if ((dup = find_item(g, m->n, id->type, id->key)) >= 0) {
			if (!id->previous)
				g->items[dup].previous = false;
			continue;
		}

		struct item *it = &g->items[m->n++];

		memset(it, 0, sizeof(*it));
		it->key = id->key;
		it->type = id->type;
		it->prio = rule->priority;
		it->pos = (uint16_t)i;
		it->previous = id->previous;
	}
	return ngroups;
}

static int find_previous(const struct identity_graph *g, const struct match *m,
			 uint16_t type)
{
	for (size_t i = 0; i < m->ev->n; i++) {
		const struct identity_ident *id = &m->ev->ids[i];

		if (id->previous && id->type == type && !id->blocked)
			return find_item(g, m->n, type, id->key);
	}
	return -1;
}

/*
 * An alias's previousId arrives as a user_id and as an anonymous_id; it is
 * one of them. The user_id if the graph knows it (or the event carries it
 * as its userId), else the anonymous_id. The form not chosen is not an
 * identifier at all, so it is removed without a record.
 */
static void resolve_previous(struct identity_graph *g, struct match *m)
{
	int u = find_previous(g, m, IDENTITY_TYPE_USER_ID);
	int a = find_previous(g, m, IDENTITY_TYPE_ANONYMOUS_ID);
	int drop;
	size_t o = 0;

	if (u < 0 || a < 0)
		return;
	if (g->items[u].node || !g->items[u].previous)
		drop = g->items[a].previous ? a : -1;
	else
		drop = g->items[u].previous ? u : -1;
	if (drop < 0)
		return;
	for (size_t j = 0; j < m->n; j++)
		if ((int)j != drop)
			g->items[o++] = g->items[j];
	m->n = o;
}

static bool item_before(const struct item *a, const struct item *b)
{
	if (a->prio != b->prio)
		return a->prio < b->prio;
	if (a->type != b->type)
		return a->type < b->type;
	return a->pos < b->pos;
}

static void sort_items(struct item *items, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct item t = items[i];
		size_t j = i;

		for (; j > 0 && item_before(&t, &items[j - 1]); j--)
			items[j] = items[j - 1];
		items[j] = t;
	}
}

/* ---- limits ---- */

/* The profiles the items still in the match point at, and how many items are new. */
static void match_profiles(struct identity_graph *g, struct match *m)
{
	m->k = m->nnew = 0;
	for (size_t j = 0; j < m->n; j++) {
		const struct item *it = &g->items[j];
		size_t p;

		if (it->out)
			continue;
		if (!it->node) {
			m->nnew++;
			continue;
		}
		for (p = 0; p < m->k && g->mprof[p] != it->pid; p++)
			;
		if (p == m->k) {
			g->mprof[m->k] = it->pid;
			g->mfirst[m->k++] = (uint16_t)j;
		}
	}
}

static void acc_add(void *arg, uint16_t type, uint32_t count)
{
	struct identity_graph *g = arg;

	if (g->epoch[type] != g->check) {
		g->epoch[type] = g->check;
		g->acc[type] = 0;
		g->touched[g->acc_n++] = type;
	}
	g->acc[type] += count;
}

static bool in_event(const struct identity_graph *g, const struct match *m, uint32_t x)
{
	for (size_t j = 0; j < m->n; j++)
		if (g->items[j].node == x && !g->items[j].out)
			return true;
	return false;
}

/*
 * Values of type on the profile rooted at root that count toward a limit
 * windowed at window_days: seen within the window before the event, or on
 * the event itself. Walks the profile; only needed when the all-time count
 * is already over the limit.
 */
static uint32_t windowed_count(const struct identity_graph *g, const struct match *m,
			       uint32_t root, uint16_t type, uint32_t window_days)
{
	int64_t cutoff = m->day - window_days;
	uint32_t n = 0, x = root;

	do {
		const struct node *nd = &g->nodes[x];

		if (nd->type == type && ((int64_t)nd->seen >= cutoff || in_event(g, m, x)))
			n++;
		x = nd->ring;
	} while (x != root);
	return n;
}

/*
 * The type whose limit the current match would break (the highest-priority
 * one if several), or -1. One profile: only the types of new identifiers
 * can break. Several: every type of every profile, since a merge adds up
 * values that are all already there.
 */
static int broken_limit(struct identity_graph *g, struct match *m)
{
	const struct type_rule *types = g->rules.types;
	int worst = -1;

	/* A new epoch makes every acc[] stale at once; at wrap-around, really clear them. */
	if (++g->check == 0) {
		memset(g->epoch, 0, sizeof(g->epoch));
		g->check = 1;
	}
	g->acc_n = 0;
	if (m->k >= 2)
		for (size_t p = 0; p < m->k; p++)
			graph_each_count(g, g->mprof[p], acc_add, g);
	for (size_t j = 0; j < m->n; j++) {
		const struct item *it = &g->items[j];

		if (it->out || it->node)
			continue;
		if (m->k == 1 && g->epoch[it->type] != g->check)
			acc_add(g, it->type, graph_count(g, g->mprof[0], it->type));
		acc_add(g, it->type, 1);
	}
	for (size_t i = 0; i < g->acc_n; i++) {
		uint16_t t = g->touched[i];
		const struct type_rule *r = &types[t];

		if (!r->limit || g->acc[t] <= r->limit)
			continue;
		if (r->window_days) {
			uint32_t n = 0;

			for (size_t p = 0; p < m->k; p++)
				n += windowed_count(g, m, g->items[g->mfirst[p]].root, t,
						    r->window_days);
			for (size_t j = 0; j < m->n; j++)
				n += !g->items[j].out && !g->items[j].node && g->items[j].type == t;
			if (n <= r->limit)
				continue;
		}
		if (worst < 0 || r->priority < types[worst].priority ||
		    (r->priority == types[worst].priority && t < worst))
			worst = t;
	}
	return worst;
}

/* ---- the final action ---- */

static uint32_t first_known(const struct identity_graph *g, const struct match *m)
{
	for (size_t j = 0; j < m->n; j++)
		if (!g->items[j].out && g->items[j].node)
			return g->items[j].pid;
	return 0;
}

/* Gathers the new items still in the match, refusing those past room at cap. */
static size_t new_items(struct identity_graph *g, struct match *m, uint16_t *which,
			uint64_t room)
{
	size_t n = 0;

	for (size_t j = 0; j < m->n; j++) {
		struct item *it = &g->items[j];

		if (it->out || it->node)
			continue;
		if (n < room) {
			which[n++] = (uint16_t)j;
			continue;
		}
		it->out = true;
		pend_item(g, m, it, IDENTITY_EXPL_DROPPED, IDENTITY_REASON_IDENTIFIER_CAP,
			  IDENTITY_TYPE_NONE, 0);
	}
	return n;
}

/* Several profiles matched but a cap forbids the merge: attach, change nothing. */
static uint32_t refuse_merge(struct identity_graph *g, struct match *m, uint8_t reason)
{
	uint32_t final = first_known(g, m);

	for (size_t p = 0; p < m->k; p++) {
		uint32_t q = g->mprof[p];

		if (q == final)
			continue;
		pend_item(g, m, &g->items[g->mfirst[p]], IDENTITY_EXPL_MERGE_REFUSED, reason,
			  IDENTITY_TYPE_NONE, q);
		for (size_t j = 0; j < m->n; j++)
			if (g->items[j].pid == q)
				g->items[j].out = true;
	}
	for (size_t j = 0; j < m->n; j++) {
		struct item *it = &g->items[j];

		if (it->out || it->node)
			continue;
		it->out = true;
		pend_item(g, m, it, IDENTITY_EXPL_DROPPED, reason, IDENTITY_TYPE_NONE, 0);
	}
	return final;
}

static uint32_t merge(struct identity_graph *g, struct match *m)
{
	uint32_t final = graph_merge(g, g->mprof, m->k);
	uint16_t which[IDENTITY_EVENT_IDS_MAX];
	size_t n;

	for (size_t p = 0; p < m->k; p++) {
		const struct item *it = &g->items[g->mfirst[p]];
		struct xrec rec;

		if (g->mprof[p] == final)
			continue;
		g->absorbed[g->nabsorbed++] = g->mprof[p];
		rec_init(&rec, m->ev);
		memcpy(rec.key, it->key, IDENTITY_KEY_BYTES);
		rec.type = it->type;
		rec.profile = final;
		rec.other = g->mprof[p];
		rec.kind = IDENTITY_EXPL_MERGE;
		rec.reason = m->ev->alias ? IDENTITY_REASON_ALIAS : IDENTITY_REASON_SHARED_IDENTIFIER;
		rec.limit_type = it->type;
		expl_add(g, &rec, false);
	}
	n = new_items(g, m, which, UINT64_MAX);
	graph_add_nodes(g, final, g->items, which, n, m->seen);
	return final;
}

/* Creates, extends or merges as the final match says; returns the event's profile. */
static uint32_t act(struct identity_graph *g, struct match *m)
{
	uint16_t which[IDENTITY_EVENT_IDS_MAX];
	uint32_t max_ids = g->rules.max_ids;
	size_t n;

	if (m->k == 0) {
		n = new_items(g, m, which, max_ids);
		return n ? graph_new_profile(g, g->items, which, n, m->seen) : 0;
	}
	if (m->k == 1) {
		uint32_t size = graph_size(g, g->mprof[0]);

		n = new_items(g, m, which, size < max_ids ? max_ids - size : 0);
		graph_add_nodes(g, g->mprof[0], g->items, which, n, m->seen);
		return g->mprof[0];
	}

	uint64_t merges = m->k - 1, size = m->nnew;

	for (size_t p = 0; p < m->k; p++) {
		merges += graph_merges_of(g, g->mprof[p]);
		size += graph_size(g, g->mprof[p]);
	}
	if (merges > g->rules.max_merges)
		return refuse_merge(g, m, IDENTITY_REASON_MERGE_CAP);
	if (size > max_ids)
		return refuse_merge(g, m, IDENTITY_REASON_IDENTIFIER_CAP);
	return merge(g, m);
}

/* ---- after: links, last seen, groups, records ---- */

static void finish(struct identity_graph *g, struct match *m, uint32_t final,
		   const uint16_t *groups, size_t ngroups)
{
	const struct identity_event_ids *ev = m->ev;
	uint32_t center = 0;

	if (final) {
		for (size_t j = 0; j < m->n; j++) {
			const struct item *it = &g->items[j];
			struct node *nd;

			if (it->out)
				continue;
			nd = &g->nodes[it->node];
			if (nd->seen < m->seen)
				nd->seen = m->seen;
			if (!center)
				center = it->node;
			else
				graph_link(g, center, it->node, ev->seq);
		}
		for (size_t i = 0; i < ngroups; i++) {
			const struct identity_ident *id = &ev->ids[groups[i]];

			pend(g, m, id->key, id->type, 0, IDENTITY_EXPL_GROUP,
			     IDENTITY_REASON_GROUP_CALL, IDENTITY_TYPE_NONE, 0);
		}
	}
	for (size_t i = 0; i < m->npend; i++) {
		const struct pending *p = &g->pend[i];
		struct xrec rec;

		rec_init(&rec, ev);
		memcpy(rec.key, p->key, IDENTITY_KEY_BYTES);
		rec.type = p->type;
		rec.profile = final;
		rec.other = p->other;
		rec.kind = p->kind;
		rec.reason = p->reason;
		rec.limit_type = p->limit_type;
		/*
		 * An identifier dropped for a limit that belongs to another
		 * profile is a refused merge with that profile.
		 */
		if (p->kind == IDENTITY_EXPL_DROPPED && p->node) {
			uint32_t q = pid_of_root(g, find_root(g, p->node));

			if (q != final) {
				rec.kind = IDENTITY_EXPL_MERGE_REFUSED;
				rec.other = q;
			}
		}
		expl_add(g, &rec, true);
	}
}

int identity_graph_apply(struct identity_graph *g, const struct identity_event_ids *ev,
			 uint64_t *profile_id)
{
	struct match m = { .ev = ev };
	uint16_t groups[IDENTITY_EVENT_IDS_MAX];
	size_t ngroups;
	uint32_t final = 0;

	*profile_id = 0;
	g->nabsorbed = 0;
	if (ev->n > IDENTITY_EVENT_IDS_MAX || (ev->n && !ev->ids) ||
	    ev->seq < 0 || ev->seq >= IDENTITY_SEQ_LIMIT)
		return WEFT_EINVAL;
	for (size_t i = 0; i < ev->n; i++)
		if (ev->ids[i].type >= g->rules.ntypes)
			return WEFT_EINVAL;
	if ((size_t)g->nnodes - 1 + ev->n > IDENTITY_NODES_MAX ||
	    g->nprofiles >= PROFILES_MAX)
		return WEFT_ETOOBIG;

	m.day = day_of(ev->ts_us);
	m.seen = (uint16_t)(m.day < 0 ? 0 : m.day > UINT16_MAX ? UINT16_MAX : m.day);
	ngroups = collect_items(g, &m, groups);
	for (size_t j = 0; j < m.n; j++) {
		struct item *it = &g->items[j];

		if ((it->node = graph_find_node(g, it->type, it->key))) {
			it->root = find_root(g, it->node);
			it->pid = pid_of_root(g, it->root);
		}
	}
	resolve_previous(g, &m);
	sort_items(g->items, m.n);

	for (;;) {
		int t;

		match_profiles(g, &m);
		if (m.nnew == 0 && m.k <= 1)
			break;
		if ((t = broken_limit(g, &m)) < 0)
			break;

		/* Drop the lowest-priority identifier still in, and match again. */
		size_t last = m.n;

		while (g->items[--last].out)
			;
		g->items[last].out = true;
		pend_item(g, &m, &g->items[last], IDENTITY_EXPL_DROPPED, IDENTITY_REASON_LIMIT,
			  (uint16_t)t, 0);
	}
	if (m.k + m.nnew > 0)
		final = act(g, &m);
	finish(g, &m, final, groups, ngroups);
	*profile_id = final;
	return 0;
}

/* How many events ahead each prefetch stage works (see graph_prefetch()). */
static const size_t stage_ahead[PREFETCH_STAGES] = { 8, 6, 4, 2 };
#define PREFETCH_RING 16	/* more than the farthest stage */

int identity_graph_apply_batch(struct identity_graph *g, const struct identity_event_ids *evs,
			       size_t n, uint64_t *profile_ids, size_t *applied)
{
	struct prefetch_state st[PREFETCH_RING];

	/* Start the pipeline: the first events get every stage at once... */
	for (size_t j = 0; j < stage_ahead[0] && j < n; j++)
		for (int s = 0; s < PREFETCH_STAGES; s++)
			graph_prefetch(g, &evs[j], s, &st[j % PREFETCH_RING]);
	for (size_t i = 0; i < n; i++) {
		int err;

		/* ...the others each stage in turn, stage_ahead[s] events before theirs. */
		for (int s = 0; s < PREFETCH_STAGES; s++) {
			size_t j = i + stage_ahead[s];

			if (j < n && j >= stage_ahead[0])
				graph_prefetch(g, &evs[j], s, &st[j % PREFETCH_RING]);
		}
		if ((err = identity_graph_apply(g, &evs[i], &profile_ids[i])) != 0) {
			*applied = i;
			return err;
		}
	}
	*applied = n;
	return 0;
}

size_t identity_graph_last_absorbed(const struct identity_graph *g, const uint32_t **pids)
{
	*pids = g->absorbed;
	return g->nabsorbed;
}
