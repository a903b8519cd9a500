/*
 * Identity internals shared by the files of identity/ and nothing else:
 * the layout of the rules and of the graph.
 *
 * The graph is flat arrays indexed by number, no pointers between records
 * (bytes per identifier measured by bench/identity_mem.c):
 *
 *   nodes[]     one per identifier, 28 bytes: key, union-find parent, the
 *               next node of the same profile (a circular list, so a
 *               profile's identifiers can be walked and two profiles joined
 *               by swapping two numbers), type, last day seen
 *   idtab[]     open addressing (linear probing) from key to node: 4-byte
 *               slots holding the node number and 4 bits of the key as a tag
 *   profiles[]  by profile id: its first node, from which find() reaches the
 *               root, and its extension, or 0
 *   exts[]      12 bytes for a profile with more than one identifier or with
 *               history: per-type counts as 4-bit fields (their sum is the
 *               size), its history
 *   hists[]     merges and explanations of a profile that has any
 *   counts      (profile, type) -> count for what the 4-bit fields cannot
 *               hold: counts of 15 and more, types numbered 16 and up, and
 *               then the profile's size
 *   links[]     12 bytes per pair of identifiers seen together, in order of
 *               creation, found again through linktab[] (tagged like idtab)
 *   recs[]      explanation records (52 bytes), chained per profile, and a
 *               table finding a refusal's record again to count it
 *
 * Number 0 is reserved in every array, so 0 means "none" everywhere. A
 * root's parent slot holds ROOT_FLAG | its profile id. Node 0 is never an
 * identifier and profile 0 is "no profile".
 */
#ifndef IDENTITY_IDENTITY_INT_H
#define IDENTITY_IDENTITY_INT_H

#include "identity/identity.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- rules ---- */

struct type_rule {
	char name[IDENTITY_TYPE_NAME_MAX + 1];
	uint32_t priority;	/* 1 is the highest */
	uint32_t limit;		/* 0: no limit */
	uint32_t window_days;	/* 0: the limit counts every value */
	bool account;		/* group_id: recorded, never matched */
};

struct blocked_slot {
	uint8_t key[IDENTITY_KEY_BYTES];
	uint16_t type;
	bool used;
};

struct identity_rules {
	struct type_rule *types;
	uint32_t ntypes, types_cap;
	uint16_t *names;	/* open addressing, type id + 1 */
	uint32_t names_cap;	/* a power of two */
	struct blocked_slot *blocked;
	size_t nblocked, blocked_cap;	/* capacity a power of two, or 0 */
	uint32_t max_merges;
	uint32_t max_ids;
};

void rules_init_defaults(struct identity_rules *r);
void rules_copy(struct identity_rules *dst, const struct identity_rules *src);
void rules_release(struct identity_rules *r);
/* Same contract as identity_rules_type(). */
int rules_intern(struct identity_rules *r, const char *name);
bool rules_is_blocked(const struct identity_rules *r, uint16_t type, const uint8_t *key);
size_t rules_bytes(const struct identity_rules *r);

/* ---- memory for big arrays ---- */

/*
 * Resizes the array at p from old_bytes to new_bytes (either may be 0),
 * keeping its contents; new bytes are zero. Arrays of 2 MiB or more are
 * mapped directly and advised to use huge pages, and grow with mremap,
 * which moves no data and leaves the unused tail untouched (so not
 * resident); sanitizer builds use the allocator throughout. Aborts when
 * out of memory, like xmalloc.
 */
void *idmem_resize(void *p, size_t old_bytes, size_t new_bytes);
void idmem_free(void *p, size_t bytes);

/* The capacity to grow cap to so that it holds need: at least 1.5 times. */
static inline size_t idmem_next_cap(size_t cap, size_t need, size_t min)
{
	size_t n = cap + cap / 2;

	if (n < need)
		n = need;
	return n < min ? min : n;
}

/* ---- the graph ---- */

#define ROOT_FLAG 0x80000000u
#define PROFILES_MAX 0x7fffffffu
#define TAGGED_BITS 28				/* idtab and linktab slots */
#define TAGGED_MASK ((1u << TAGGED_BITS) - 1)
#define LINKS_MAX TAGGED_MASK
#define LINK_BLOCK 256				/* links sharing one base seq */

struct node {
	uint8_t key[IDENTITY_KEY_BYTES];
	uint32_t up;		/* parent node; ROOT_FLAG | profile id at a root */
	uint32_t ring;		/* next node of the same profile (circular) */
	uint16_t type;
	uint16_t seen;		/* latest event day it was on (days since 1970, UTC) */
};

struct profile {
	uint32_t node;		/* its first node: find() from it gives the root while live */
	uint32_t ext;		/* extension, 0 while a lone identifier without history */
};

/*
 * Type counts: 4 bits for each of types 0..15, NIBBLE_MAX meaning "see
 * counts". While no count is there (EXT_BIG clear), the profile's size is
 * the sum of the fields; after, counts holds it too, as type SIZE_TYPE.
 */
#define NIBBLE_TYPES 16
#define NIBBLE_MAX 15
#define SIZE_TYPE 0xffff
#define EXT_BIG 0x80000000u		/* in hist: counts holds some of this profile's */
#define EXT_HIST_MASK 0x7fffffffu

struct pext {
	uint32_t hist;		/* history record (0 none) | EXT_BIG */
	uint32_t nib_lo;	/* types 0..7 */
	uint32_t nib_hi;	/* types 8..15 */
};

struct hist {
	uint32_t merges;	/* profiles merged into it, transitively */
	uint32_t expl;		/* newest record filed under it, 0 none */
	uint32_t ring;		/* next profile with history of those merged together (circular) */
};

struct count_slot {
	uint32_t pid;		/* 0: free */
	uint16_t type;
	uint32_t count;
};

/* Nodes a < b (28 bits each); count (saturating) in the top nibbles; seq as a delta. */
struct link {
	uint32_t a;		/* node | count high nibble << 28 */
	uint32_t b;		/* node | count low nibble << 28 */
	uint32_t delta;		/* first seq - link_base[link / LINK_BLOCK]; UINT32_MAX: see far */
};

struct xrec {
	uint32_t seq_lo;	/* the (first) event: seq is below 2^48, so */
	uint16_t seq_hi;	/* 16 more bits hold the rest */
	uint8_t kind;
	uint8_t reason;
	uint32_t ref_lo, ref_hi;
	uint8_t key[IDENTITY_KEY_BYTES];
	uint32_t profile;	/* filed under */
	uint32_t other;
	uint32_t next;		/* the previous record filed under the same profile */
	uint32_t count;
	uint16_t type;
	uint16_t limit_type;
};

/* One identifier of the event being applied. */
struct item {
	const uint8_t *key;
	uint32_t node;		/* 0 while not in the graph */
	uint32_t pid;		/* its profile, 0 if none */
	uint32_t root;
	uint32_t prio;
	uint16_t type;
	uint16_t pos;		/* position on the event */
	bool previous;
	bool out;		/* no longer part of the match */
};

/* A record decided while matching, filed once the event's profile is known. */
struct pending {
	const uint8_t *key;	/* the identifier it concerns */
	uint32_t node;		/* its node, 0 if none */
	uint32_t other;
	uint16_t type;
	uint16_t limit_type;
	uint8_t kind;
	uint8_t reason;
};

struct identity_graph {
	struct identity_rules rules;

	struct node *nodes;
	uint32_t nnodes;	/* including node 0 */
	uint32_t nodes_cap;

	uint32_t *idtab;
	size_t idtab_cap;

	struct profile *profiles;
	uint32_t nprofiles;	/* including profile 0 */
	uint32_t profiles_cap;
	uint64_t live;

	struct pext *exts;
	uint32_t nexts, exts_cap;
	struct hist *hists;
	uint32_t nhists, hists_cap;
	struct count_slot *counts;
	size_t ncounts, counts_cap;

	struct link *links;
	uint32_t nlinks, links_cap;
	int64_t *link_base;	/* per LINK_BLOCK links */
	uint32_t *linktab;
	size_t linktab_cap;
	struct link_far *far;	/* the rare first seq a delta cannot hold */
	size_t nfar, far_cap;

	struct xrec *recs;
	uint32_t nrecs, recs_cap;
	uint32_t none_expl;	/* newest record of events with no profile */
	uint32_t *rtab;		/* open addressing over deduplicated records: record number */
	size_t rtab_cap;

	uint64_t merges;
	uint32_t ndead;		/* nodes a split or an erasure took out (profile 0) */

	/* Scratch for one event; sized for IDENTITY_EVENT_IDS_MAX. */
	struct item items[IDENTITY_EVENT_IDS_MAX];
	struct pending pend[2 * IDENTITY_EVENT_IDS_MAX];
	uint32_t mprof[IDENTITY_EVENT_IDS_MAX];		/* matched profiles */
	uint16_t mfirst[IDENTITY_EVENT_IDS_MAX];	/* their first item */
	uint32_t absorbed[IDENTITY_EVENT_IDS_MAX];	/* merged into the last event's profile */
	size_t nabsorbed;
	/* Per type, for limit checks: acc[t] is valid while epoch[t] == check. */
	uint32_t acc[IDENTITY_TYPES_MAX];
	uint32_t epoch[IDENTITY_TYPES_MAX];
	uint16_t touched[IDENTITY_TYPES_MAX];
	size_t acc_n;				/* types in touched */
	uint32_t check;
};

struct link_far {
	uint32_t link;
	int64_t seq;
};

/* The sizes the layout above and the memory figures rely on. */
_Static_assert(sizeof(struct node) == 28, "node is 28 bytes");
_Static_assert(sizeof(struct profile) == 8, "profile is 8 bytes");
_Static_assert(sizeof(struct pext) == 12, "profile extension is 12 bytes");
_Static_assert(sizeof(struct link) == 12, "link is 12 bytes");
_Static_assert(sizeof(struct xrec) == 52, "explanation record is 52 bytes");
_Static_assert(IDENTITY_NODES_MAX <= TAGGED_MASK, "node numbers fit a tagged slot");

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline bool key_equal(const uint8_t *a, const uint8_t *b)
{
	return ((load64(a) ^ load64(b)) | (load64(a + 8) ^ load64(b + 8))) == 0;
}

/* A 64-bit finaliser (from splitmix64): keys are uniform already, but this
 * keeps the tables sound when they are not (sequential test keys, say). */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return x;
}

/* The slot of hash h in a table of cap slots (Lemire's multiply-shift). */
static inline size_t slot_of(uint64_t h, size_t cap)
{
	return (size_t)(((unsigned __int128)h * cap) >> 64);
}

static inline uint32_t pid_of_root(const struct identity_graph *g, uint32_t root)
{
	return g->nodes[root].up & ~ROOT_FLAG;
}

/* The root of node x, halving the path on the way. */
static inline uint32_t find_root(struct identity_graph *g, uint32_t x)
{
	struct node *n = g->nodes;

	for (;;) {
		uint32_t p = n[x].up;

		if (p & ROOT_FLAG)
			return x;
		uint32_t gp = n[p].up;

		if (gp & ROOT_FLAG)
			return p;
		n[x].up = gp;
		x = gp;
	}
}

/* The same without writing, for readers of a const graph. */
static inline uint32_t find_root_ro(const struct identity_graph *g, uint32_t x)
{
	while (!(g->nodes[x].up & ROOT_FLAG))
		x = g->nodes[x].up;
	return x;
}

static inline int64_t rec_seq(const struct xrec *r)
{
	return (int64_t)((uint64_t)r->seq_hi << 32 | r->seq_lo);
}

/* graph.c */
uint32_t graph_find_node(const struct identity_graph *g, uint16_t type, const uint8_t *key);
/*
 * Prefetches what applying ev will read, one step further at each stage,
 * each stage reading what the previous one brought in and leaving what it
 * found in st (0: key table slots; 1: nodes; 2: roots and profiles, link
 * table slots; 3: extensions, links). Only a hint: it changes nothing in
 * the graph, and stale state (a table grown in between) only wastes a
 * prefetch.
 */
#define PREFETCH_STAGES 4
#define PREFETCH_IDS 8		/* identifiers of an event that are prefetched */

struct prefetch_state {
	uint32_t n;
	uint32_t slot[PREFETCH_IDS];	/* key table slot; UINT32_MAX: not an identifier */
	uint32_t node[PREFETCH_IDS];	/* candidate, then verified node; 0: none */
	uint32_t link[PREFETCH_IDS];	/* link table slot + 1; 0: none */
};

void graph_prefetch(const struct identity_graph *g, const struct identity_event_ids *ev,
		    int stage, struct prefetch_state *st);
/*
 * A new profile holding items[which[0..n)] (all new to the graph), or those
 * items added to profile pid; either sets each item's node.
 */
uint32_t graph_new_profile(struct identity_graph *g, struct item *items,
			   const uint16_t *which, size_t n, uint16_t day);
void graph_add_nodes(struct identity_graph *g, uint32_t pid, struct item *items,
		     const uint16_t *which, size_t n, uint16_t day);
uint32_t graph_merge(struct identity_graph *g, const uint32_t *pids, size_t k);
uint32_t graph_count(const struct identity_graph *g, uint32_t pid, uint16_t type);
uint32_t graph_size(const struct identity_graph *g, uint32_t pid);
uint32_t graph_merges_of(const struct identity_graph *g, uint32_t pid);
/* Calls fn for every (type, count) of profile pid. */
void graph_each_count(const struct identity_graph *g, uint32_t pid,
		      void (*fn)(void *arg, uint16_t type, uint32_t count), void *arg);
/*
 * Sets profile pid's counts to those of nodes[0..n) (its identifiers after
 * a split), giving it an extension if it needs one.
 */
void graph_recount(struct identity_graph *g, uint32_t pid, const uint32_t *nodes, size_t n);
/* The history of profile pid, created if needed. */
struct hist *graph_hist(struct identity_graph *g, uint32_t pid);
void graph_link(struct identity_graph *g, uint32_t a, uint32_t b, int64_t seq);

/* explain.c */
/*
 * Files a record under profile rec->profile (0: no profile). With dedupe,
 * an identical earlier record of that profile is counted instead.
 */
void expl_add(struct identity_graph *g, const struct xrec *rec, bool dedupe);
void expl_release(struct identity_graph *g);
size_t expl_bytes(const struct identity_graph *g, bool reserved);

#endif
