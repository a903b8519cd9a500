/*
 * Erasing a person: every identifier of a profile leaves the graph for
 * good. Its key is wiped from the node and from every explanation record
 * that names it, so no trace of it survives in memory or in the next
 * snapshot; the profile, and every profile merged into it, resolve to no
 * profile from then on. Links stay (they hold node numbers, not keys) but
 * lead nowhere: a wiped node is in no profile.
 */
#include "identity/identity_int.h"

#include <stdlib.h>

#include "lib/alloc.h"
#include "lib/err.h"

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, IDENTITY_KEY_BYTES);
}

int identity_graph_erase(struct identity_graph *g, uint64_t profile_id,
			 void (*fn)(void *arg, uint16_t type, const uint8_t *key, uint32_t node),
			 void *arg)
{
	uint32_t pid = (uint32_t)identity_graph_resolve(g, profile_id), root, x;
	uint8_t (*keys)[IDENTITY_KEY_BYTES] = NULL;
	size_t n = 0, cap = 0;

	if (!pid)
		return WEFT_ENOTFOUND;
	root = find_root(g, g->profiles[pid].node);
	x = root;
	do {
		struct node *nd = &g->nodes[x];
		uint32_t next = nd->ring;

		if (fn)
			fn(arg, nd->type, nd->key, x);
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			keys = xrealloc(keys, xmul(cap, sizeof(*keys)));
		}
		memcpy(keys[n++], nd->key, IDENTITY_KEY_BYTES);
		x = next;
	} while (x != root);
	/* The counts go first: they are found through the profile. */
	graph_recount(g, pid, NULL, 0);
	x = root;
	do {
		struct node *nd = &g->nodes[x];
		uint32_t next = nd->ring;

		memset(nd->key, 0, IDENTITY_KEY_BYTES);
		nd->up = ROOT_FLAG;	/* profile 0: no longer an identifier */
		nd->ring = x;
		x = next;
	} while (x != root);
	qsort(keys, n, sizeof(*keys), key_cmp);
	for (uint32_t r = 1; r < g->nrecs; r++)
		if (bsearch(g->recs[r].key, keys, n, sizeof(*keys), key_cmp))
			memset(g->recs[r].key, 0, IDENTITY_KEY_BYTES);
	g->live--;
	g->ndead += (uint32_t)n;
	free(keys);
	return (int)n;
}
