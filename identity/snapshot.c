/*
 * Snapshots: the graph as a fixed list of byte sections, and back. The
 * engine persists the sections as pages and rewrites only the pages whose
 * bytes changed (engine/), so the layout here is the graph's own arrays,
 * copied as they are: restoring gives back the same graph bit for bit,
 * hash tables included, and nothing is re-derived.
 *
 * Section 0 is a header (counts and capacities, the caps) followed by the
 * rules: every type rule in interning order, then the blocked keys.
 * Sections 1.. are the arrays, each up to its length (hash tables whole).
 * The header's version changes whenever the layout does; a snapshot of
 * another version is refused, and the engine then rebuilds from the log.
 */
#include "identity/identity_int.h"

#include <stdlib.h>

#include "lib/alloc.h"
#include "lib/err.h"

#define SNAPSHOT_MAGIC 0x57464947u	/* "WFIG" */

struct snap_header {
	uint32_t magic, version;
	uint32_t nnodes, nodes_cap;
	uint32_t nprofiles, profiles_cap;
	uint32_t nexts, exts_cap;
	uint32_t nhists, hists_cap;
	uint32_t nlinks, links_cap;
	uint32_t nrecs, recs_cap;
	uint32_t none_expl, ntypes;
	uint32_t max_merges, max_ids;
	uint64_t idtab_cap, counts_cap, ncounts, linktab_cap;
	uint64_t nfar, far_cap, rtab_cap;
	uint64_t live, merges;
	uint64_t nblocked, blocked_cap;
	uint64_t types_cap;	/* the rules' type array, which memory figures count whole */
	uint32_t ndead, pad;	/* version 3: identifiers taken out by splits and erasures */
};

static size_t link_blocks(uint32_t links_cap)
{
	return links_cap ? (size_t)links_cap / LINK_BLOCK + 1 : 0;
}

void identity_graph_sections(const struct identity_graph *g, struct buf *hdr,
			     struct identity_section out[IDENTITY_SECTIONS])
{
	const struct identity_rules *r = &g->rules;
	struct snap_header h = {
		.magic = SNAPSHOT_MAGIC, .version = IDENTITY_SNAPSHOT_VERSION,
		.nnodes = g->nnodes, .nodes_cap = g->nodes_cap,
		.nprofiles = g->nprofiles, .profiles_cap = g->profiles_cap,
		.nexts = g->nexts, .exts_cap = g->exts_cap,
		.nhists = g->nhists, .hists_cap = g->hists_cap,
		.nlinks = g->nlinks, .links_cap = g->links_cap,
		.nrecs = g->nrecs, .recs_cap = g->recs_cap,
		.none_expl = g->none_expl, .ntypes = r->ntypes,
		.max_merges = r->max_merges, .max_ids = r->max_ids, .ndead = g->ndead,
		.idtab_cap = g->idtab_cap, .counts_cap = g->counts_cap,
		.ncounts = g->ncounts, .linktab_cap = g->linktab_cap,
		.nfar = g->nfar, .far_cap = g->far_cap, .rtab_cap = g->rtab_cap,
		.live = g->live, .merges = g->merges,
		.nblocked = r->nblocked, .blocked_cap = r->blocked_cap,
		.types_cap = r->types_cap,
	};
	size_t i = 0;

	buf_reset(hdr);
	buf_add(hdr, &h, sizeof(h));
	buf_add(hdr, r->types, r->ntypes * sizeof(*r->types));
	if (r->blocked_cap)
		buf_add(hdr, r->blocked, r->blocked_cap * sizeof(*r->blocked));
	out[i++] = (struct identity_section){ hdr->data, hdr->len };
	out[i++] = (struct identity_section){ g->nodes, g->nnodes * sizeof(*g->nodes) };
	out[i++] = (struct identity_section){ g->idtab, g->idtab_cap * sizeof(*g->idtab) };
	out[i++] = (struct identity_section){ g->profiles, g->nprofiles * sizeof(*g->profiles) };
	out[i++] = (struct identity_section){ g->exts, g->nexts * sizeof(*g->exts) };
	out[i++] = (struct identity_section){ g->hists, g->nhists * sizeof(*g->hists) };
	out[i++] = (struct identity_section){ g->counts, g->counts_cap * sizeof(*g->counts) };
	out[i++] = (struct identity_section){
		g->links, g->links_cap ? g->nlinks * sizeof(*g->links) : 0 };
	out[i++] = (struct identity_section){
		g->link_base, g->links_cap ? ((size_t)g->nlinks / LINK_BLOCK + 1) *
					     sizeof(*g->link_base) : 0 };
	out[i++] = (struct identity_section){ g->linktab, g->linktab_cap * sizeof(*g->linktab) };
	out[i++] = (struct identity_section){ g->far, g->nfar * sizeof(*g->far) };
	out[i++] = (struct identity_section){
		g->recs, g->recs_cap ? g->nrecs * sizeof(*g->recs) : 0 };
	out[i++] = (struct identity_section){ g->rtab, g->rtab_cap * sizeof(*g->rtab) };
	_Static_assert(IDENTITY_SECTIONS == 13, "one entry per section");
}

/*
 * Allocates an array of cap elements of elem bytes and fills it from the
 * section, which must hold exactly n elements (n <= cap). Returns NULL
 * (and sets *bad) on a size mismatch; NULL without bad for cap 0.
 */
static void *load_array(const struct identity_section *s, size_t n, size_t cap, size_t elem,
			bool mapped, bool *bad)
{
	void *p;

	if (n > cap || cap > SIZE_MAX / elem || s->bytes != n * elem) {
		*bad = true;
		return NULL;
	}
	if (cap == 0)
		return NULL;
	p = mapped ? idmem_resize(NULL, 0, cap * elem) : xcalloc(cap, elem);
	if (s->bytes)
		memcpy(p, s->data, s->bytes);
	return p;
}

static int restore_rules(struct identity_rules *r, const struct snap_header *h,
			 const struct identity_section *s)
{
	const uint8_t *p = s->data;
	size_t need;

	/* Bounded first, so that need cannot wrap around. */
	if (h->ntypes < IDENTITY_TYPE_BUILTIN_COUNT || h->ntypes > IDENTITY_TYPES_MAX ||
	    h->types_cap < h->ntypes || h->types_cap > 2 * IDENTITY_TYPES_MAX ||
	    h->nblocked > h->blocked_cap || h->blocked_cap > SIZE_MAX / 2 / sizeof(*r->blocked) ||
	    (h->blocked_cap & (h->blocked_cap - 1)))
		return WEFT_EINVAL;
	need = sizeof(*h) + (size_t)h->ntypes * sizeof(*r->types) +
	       h->blocked_cap * sizeof(*r->blocked);
	if (s->bytes != need)
		return WEFT_EINVAL;
	rules_init_defaults(r);
	p += sizeof(*h);
	for (uint32_t i = 0; i < h->ntypes; i++) {
		struct type_rule t;

		memcpy(&t, p + i * sizeof(t), sizeof(t));
		t.name[IDENTITY_TYPE_NAME_MAX] = '\0';
		if (rules_intern(r, t.name) != (int)i)
			return WEFT_EINVAL;
		r->types[i] = t;
	}
	/* The capacity the graph had (interning grows it its own way). */
	r->types_cap = (uint32_t)h->types_cap;
	r->types = xrealloc(r->types, xmul(r->types_cap, sizeof(*r->types)));
	if (h->blocked_cap) {
		r->blocked = xmalloc(xmul(h->blocked_cap, sizeof(*r->blocked)));
		memcpy(r->blocked, p + h->ntypes * sizeof(struct type_rule),
		       h->blocked_cap * sizeof(*r->blocked));
	}
	r->nblocked = h->nblocked;
	r->blocked_cap = h->blocked_cap;
	r->max_merges = h->max_merges;
	r->max_ids = h->max_ids;
	return 0;
}

int identity_graph_restore(const struct identity_section in[IDENTITY_SECTIONS],
			   struct identity_graph **out)
{
	struct snap_header h;
	struct identity_graph *g;
	bool bad = false;
	size_t i = 1;

	*out = NULL;
	if (in[0].bytes < sizeof(h))
		return WEFT_EINVAL;
	memcpy(&h, in[0].data, sizeof(h));
	if (h.magic != SNAPSHOT_MAGIC || h.version != IDENTITY_SNAPSHOT_VERSION ||
	    h.nnodes == 0 || h.nprofiles == 0 || h.nexts == 0 || h.nhists == 0 ||
	    h.nlinks == 0 || h.nrecs == 0 || h.nnodes > IDENTITY_NODES_MAX + 1 ||
	    h.ncounts > h.counts_cap || h.nfar > h.far_cap)
		return WEFT_EINVAL;
	g = xcalloc(1, sizeof(*g));
	if (restore_rules(&g->rules, &h, &in[0])) {
		rules_release(&g->rules);
		free(g);
		return WEFT_EINVAL;
	}
	g->nnodes = h.nnodes;
	g->nodes_cap = h.nodes_cap;
	g->nodes = load_array(&in[i++], h.nnodes, h.nodes_cap, sizeof(*g->nodes), true, &bad);
	g->idtab_cap = h.idtab_cap;
	g->idtab = load_array(&in[i++], h.idtab_cap, h.idtab_cap, sizeof(*g->idtab), true, &bad);
	g->nprofiles = h.nprofiles;
	g->profiles_cap = h.profiles_cap;
	g->profiles = load_array(&in[i++], h.nprofiles, h.profiles_cap, sizeof(*g->profiles),
				 true, &bad);
	g->live = h.live;
	g->nexts = h.nexts;
	g->exts_cap = h.exts_cap;
	g->exts = load_array(&in[i++], h.nexts, h.exts_cap, sizeof(*g->exts), true, &bad);
	g->nhists = h.nhists;
	g->hists_cap = h.hists_cap;
	g->hists = load_array(&in[i++], h.nhists, h.hists_cap, sizeof(*g->hists), true, &bad);
	g->ncounts = h.ncounts;
	g->counts_cap = h.counts_cap;
	g->counts = load_array(&in[i++], h.counts_cap, h.counts_cap, sizeof(*g->counts), true,
			       &bad);
	g->nlinks = h.nlinks;
	g->links_cap = h.links_cap;
	g->links = load_array(&in[i++], h.links_cap ? h.nlinks : 0, h.links_cap,
			      sizeof(*g->links), true, &bad);
	g->link_base = load_array(&in[i++], h.links_cap ? (size_t)h.nlinks / LINK_BLOCK + 1 : 0,
				  link_blocks(h.links_cap), sizeof(*g->link_base), true, &bad);
	g->linktab_cap = h.linktab_cap;
	g->linktab = load_array(&in[i++], h.linktab_cap, h.linktab_cap, sizeof(*g->linktab),
				true, &bad);
	g->nfar = h.nfar;
	g->far_cap = h.far_cap;
	g->far = load_array(&in[i++], h.nfar, h.far_cap, sizeof(*g->far), false, &bad);
	g->nrecs = h.nrecs;
	g->recs_cap = h.recs_cap;
	g->recs = load_array(&in[i++], h.recs_cap ? h.nrecs : 0, h.recs_cap, sizeof(*g->recs),
			     true, &bad);
	g->rtab_cap = h.rtab_cap;
	g->rtab = load_array(&in[i++], h.rtab_cap, h.rtab_cap, sizeof(*g->rtab), true, &bad);
	g->none_expl = h.none_expl;
	g->merges = h.merges;
	g->ndead = h.ndead;
	if (bad || !g->nodes || !g->profiles || !g->exts || !g->hists) {
		identity_graph_free(g);
		return WEFT_EINVAL;
	}
	*out = g;
	return 0;
}
