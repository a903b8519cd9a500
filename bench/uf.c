/*
 * Plain union-find for the identity benchmarks (bench/uf.h). Keys are
 * uniform hashes, so their first 8 bytes index the table directly.
 */
#include <stdlib.h>
#include <string.h>

#include "bench/uf.h"
#include "lib/alloc.h"

void uf_release(struct uf *u)
{
	free(u->key);
	free(u->parent);
	free(u->size);
	free(u->tab);
	*u = (struct uf)UF_INIT;
}

static size_t slot_of(const struct uf *u, const uint8_t *key)
{
	uint64_t h;
	size_t i;

	memcpy(&h, key, 8);
	for (i = h & (u->tab_cap - 1); u->tab[i]; i = (i + 1) & (u->tab_cap - 1))
		if (memcmp(u->key[u->tab[i]], key, 16) == 0)
			break;
	return i;
}

/* Doubles the table, keeping it at most 70% full with one more node. */
static void tab_grow(struct uf *u)
{
	size_t cap = u->tab_cap ? 2 * u->tab_cap : 1024;

	free(u->tab);
	u->tab = xcalloc(cap, sizeof(*u->tab));
	u->tab_cap = cap;
	for (size_t x = 1; x <= u->n; x++)
		u->tab[slot_of(u, u->key[x])] = (uint32_t)x;
}

uint32_t uf_node(struct uf *u, const uint8_t key[16])
{
	size_t i;

	if ((u->n + 1) * 10 > u->tab_cap * 7)
		tab_grow(u);
	i = slot_of(u, key);
	if (u->tab[i])
		return u->tab[i];
	if (u->n + 2 > u->cap) {
		u->cap = u->cap ? 2 * u->cap : 1024;
		u->key = xrealloc(u->key, xmul(u->cap, 16));
		u->parent = xrealloc(u->parent, xmul(u->cap, 4));
		u->size = xrealloc(u->size, xmul(u->cap, 4));
	}
	u->n++;
	memcpy(u->key[u->n], key, 16);
	u->parent[u->n] = (uint32_t)u->n;
	u->size[u->n] = 1;
	u->tab[i] = (uint32_t)u->n;
	return (uint32_t)u->n;
}

uint32_t uf_lookup(const struct uf *u, const uint8_t key[16])
{
	return u->tab_cap ? u->tab[slot_of(u, key)] : 0;
}

uint32_t uf_find(struct uf *u, uint32_t x)
{
	while (u->parent[x] != x) {
		u->parent[x] = u->parent[u->parent[x]];
		x = u->parent[x];
	}
	return x;
}

void uf_union(struct uf *u, uint32_t a, uint32_t b)
{
	a = uf_find(u, a);
	b = uf_find(u, b);
	if (a == b)
		return;
	if (u->size[a] < u->size[b]) {
		uint32_t t = a;

		a = b;
		b = t;
	}
	u->parent[b] = a;
	u->size[a] += u->size[b];
}

size_t uf_bytes(const struct uf *u)
{
	return u->cap * (16 + 4 + 4) + u->tab_cap * 4;
}
