/*
 * A plain union-find over 128-bit keys, for the identity benchmarks: the
 * structure PERFORMANCE.md measured (one open-addressing table of node
 * numbers, keys and parents in flat arrays, union by size, path halving).
 * identity_mem times it as the ceiling of the graph; identity_bench uses it
 * to number the identifiers it gives PostgreSQL and as a reference for
 * connected components.
 *
 * Nodes are numbered 1, 2, 3... in order of first sight; 0 is "none". A key
 * is a node whatever its type: the workloads of bench/idgen.h give each key
 * one type only.
 */
#ifndef BENCH_UF_H
#define BENCH_UF_H

#include <stddef.h>
#include <stdint.h>

struct uf {
	uint8_t (*key)[16];	/* key[node] */
	uint32_t *parent, *size;
	uint32_t *tab;		/* open addressing: node numbers, 0 empty */
	size_t n, cap, tab_cap;	/* nodes, array capacity, table slots */
};

#define UF_INIT { NULL, NULL, NULL, NULL, 0, 0, 0 }

void uf_release(struct uf *u);

/* The node of key, made (as its own set) if it is new. */
uint32_t uf_node(struct uf *u, const uint8_t key[16]);

/* The node of key, or 0 if it was never made. */
uint32_t uf_lookup(const struct uf *u, const uint8_t key[16]);

/* The root of x's set (halving the path on the way). */
uint32_t uf_find(struct uf *u, uint32_t x);

/* Joins the sets of a and b. */
void uf_union(struct uf *u, uint32_t a, uint32_t b);

/* Bytes the arrays and the table take at their full capacity. */
size_t uf_bytes(const struct uf *u);

#endif
