/*
 * identity_mem: how fast the identity graph applies events and how much
 * memory it holds per identifier, on a synthetic workload shaped like real
 * traffic, with the ceiling (a plain union-find over the same events, the
 * structure PERFORMANCE.md measured) in the same run.
 *
 *   cc -O2 -I. bench/identity_mem.c build/libweft.a \
 *      $(pkg-config --libs libxxhash jemalloc) -o /tmp/idb
 *   /tmp/idb [people (2000000)] [events (10000000)] [seed (1)] [batch|single]
 *
 * The workload: people with 1-4 browsers (anonymous ids); 60% have a user
 * id and an email (20% two emails, 30% a phone); 35% use a phone app
 * (device id, push token, advertising id). Events: tracks and pages from a
 * browser, logged in or not; identifies; app opens; group calls; a few
 * aliases; and noise: devices shared between people, a blocked junk
 * anonymous id ("undefined", flagged as ingest does) and a blocked
 * placeholder email (on the workspace's list). A third of the events come
 * from the heaviest 5% of people. Timestamps span a year in log order.
 *
 * Only apply calls are timed: events are generated in batches of 65,536
 * beforehand and applied with identity_graph_apply_batch() (or one
 * identity_graph_apply() each, with "single").
 * Memory per identifier is given twice: the graph's own accounting
 * (identity_graph_stats, everything it holds) and the growth of the
 * process's resident set while the graph was built.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "identity/identity.h"

#define BATCH 65536
#define MAX_IDS 6

struct bev {
	struct identity_ident ids[MAX_IDS];
	uint8_t n;
	bool alias;
};

struct person {
	bool identified, mobile, ios, phone;
	unsigned anon, emails, devices;
};

static uint64_t seed;

static uint64_t rng(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static struct person person_of(uint64_t p)
{
	uint64_t h = XXH3_64bits_withSeed(&p, sizeof(p), seed);
	struct person r;

	r.identified = h % 100 < 60;
	r.anon = 1 + (unsigned)(h >> 8 & 0xffff) % 4;
	r.emails = r.identified ? 1 + ((h >> 24 & 0xff) % 10 < 2) :
				  ((h >> 24 & 0xff) % 10 < 3);
	r.mobile = (h >> 32 & 0xff) % 100 < 35;
	r.ios = h >> 40 & 1;
	r.devices = r.mobile ? 1 + ((h >> 41 & 0xff) % 10 < 2) : 0;
	r.phone = r.identified && (h >> 50 & 0xff) % 10 < 3;
	return r;
}

enum kind {
	K_USER, K_ANON, K_EMAIL, K_PHONE, K_DEV, K_PUSH, K_IDFA, K_GROUP, K_JUNK, K_PREV_AS_USER
};

static void add(struct bev *e, uint16_t type, uint64_t p, enum kind k, uint64_t idx,
		bool previous, bool blocked)
{
	uint64_t in[3] = { p, k, idx };
	XXH128_hash_t h = XXH3_128bits_withSeed(in, sizeof(in), seed);
	struct identity_ident *id = &e->ids[e->n++];

	memcpy(id->key, &h.low64, 8);
	memcpy(id->key + 8, &h.high64, 8);
	id->type = type;
	id->previous = previous;
	id->blocked = blocked;
}

static void add_device(struct bev *e, const struct person *pp, uint64_t p, unsigned d)
{
	add(e, pp->ios ? IDENTITY_TYPE_IOS_ID : IDENTITY_TYPE_ANDROID_ID, p, K_DEV, d, false, false);
}

static void gen(struct bev *e, uint64_t *s, uint64_t people)
{
	uint64_t p = rng(s) % 3 == 0 ? rng(s) % (people / 20 + 1) : rng(s) % people;
	struct person pp = person_of(p);
	unsigned sess = (unsigned)(rng(s) % pp.anon);
	unsigned r = (unsigned)(rng(s) % 1000);

	e->n = 0;
	e->alias = false;
	if (r < 620) {
		/* track / page */
		add(e, IDENTITY_TYPE_ANONYMOUS_ID, p, K_ANON, sess, false, false);
		if (pp.identified && rng(s) & 1)
			add(e, IDENTITY_TYPE_USER_ID, p, K_USER, 0, false, false);
		if (pp.mobile)
			add_device(e, &pp, p, sess % pp.devices);
	} else if (r < 800) {
		/* identify */
		add(e, IDENTITY_TYPE_ANONYMOUS_ID, p, K_ANON, sess, false, false);
		if (pp.identified)
			add(e, IDENTITY_TYPE_USER_ID, p, K_USER, 0, false, false);
		if (pp.emails)
			add(e, IDENTITY_TYPE_EMAIL, p, K_EMAIL, rng(s) % pp.emails, false, false);
		if (pp.phone)
			add(e, IDENTITY_TYPE_PHONE, p, K_PHONE, 0, false, false);
		if (pp.mobile)
			add_device(e, &pp, p, sess % pp.devices);
	} else if (r < 920) {
		/* app open */
		add(e, IDENTITY_TYPE_ANONYMOUS_ID, p, K_ANON, sess, false, false);
		if (pp.mobile) {
			unsigned d = sess % pp.devices;

			add_device(e, &pp, p, d);
			if (d == 0)
				add(e, pp.ios ? IDENTITY_TYPE_IOS_PUSH_TOKEN :
					IDENTITY_TYPE_ANDROID_PUSH_TOKEN, p, K_PUSH, d, false, false);
			if (pp.identified)
				add(e, pp.ios ? IDENTITY_TYPE_IOS_IDFA : IDENTITY_TYPE_ANDROID_IDFA,
				    p, K_IDFA, d, false, false);
		}
	} else if (r < 970) {
		/* group */
		if (pp.identified)
			add(e, IDENTITY_TYPE_USER_ID, p, K_USER, 0, false, false);
		else
			add(e, IDENTITY_TYPE_ANONYMOUS_ID, p, K_ANON, sess, false, false);
		add(e, IDENTITY_TYPE_GROUP_ID, p / 40, K_GROUP, 0, false, false);
	} else if (r < 985 && pp.identified) {
		/*
		 * alias: the user, and the browser's anonymous id as previousId,
		 * which arrives hashed both as a user id (a key never seen) and
		 * as an anonymous id (the browser's key).
		 */
		add(e, IDENTITY_TYPE_USER_ID, p, K_USER, 0, false, false);
		add(e, IDENTITY_TYPE_USER_ID, p, K_PREV_AS_USER, sess, true, false);
		add(e, IDENTITY_TYPE_ANONYMOUS_ID, p, K_ANON, sess, true, false);
		e->alias = true;
	} else {
		/* noise */
		uint64_t q = rng(s) % people;
		struct person qq = person_of(q);

		add(e, IDENTITY_TYPE_ANONYMOUS_ID, p, K_ANON, sess, false, false);
		switch (r % 3) {
		case 0:	/* a shared device */
			if (qq.mobile)
				add_device(e, &qq, q, 0);
			break;
		case 1:	/* anonymousId "undefined" beside a user id */
			e->n = 0;
			add(e, IDENTITY_TYPE_ANONYMOUS_ID, 0, K_JUNK, 0, false, true);
			if (pp.identified)
				add(e, IDENTITY_TYPE_USER_ID, p, K_USER, 0, false, false);
			break;
		default: /* a placeholder email on the workspace's blocked list */
			add(e, IDENTITY_TYPE_EMAIL, 0, K_JUNK, 1, false, false);
			break;
		}
	}
}

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Wall time and this thread's CPU time. The machines are shared: when other
 * work takes the cores, wall time grows and CPU time does not, so both are
 * printed, and the comparison with the ceiling uses the same clock.
 */
struct span {
	double wall, cpu;
};

static void span_start(struct span *t)
{
	t->wall -= clock_s(CLOCK_MONOTONIC);
	t->cpu -= clock_s(CLOCK_THREAD_CPUTIME_ID);
}

static void span_stop(struct span *t)
{
	t->wall += clock_s(CLOCK_MONOTONIC);
	t->cpu += clock_s(CLOCK_THREAD_CPUTIME_ID);
}

static size_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size, rss = 0;

	if (f) {
		if (fscanf(f, "%lu %lu", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * 4096;
}

/* ---- the ceiling: plain union-find (open addressing, union by size, path halving) ---- */

struct uf {
	uint8_t (*key)[16];
	uint32_t *parent, *size, *tab;
	size_t n, cap, tab_cap;
};

static uint32_t uf_node(struct uf *u, const uint8_t *key)
{
	uint64_t h;
	size_t i;

	memcpy(&h, key, 8);
	if ((u->n + 1) * 10 > u->tab_cap * 7) {
		size_t cap = u->tab_cap ? 2 * u->tab_cap : 1024;
		uint32_t *tab = calloc(cap, sizeof(*tab));

		for (size_t x = 1; x <= u->n; x++) {
			uint64_t hx;

			memcpy(&hx, u->key[x], 8);
			for (i = hx & (cap - 1); tab[i]; i = (i + 1) & (cap - 1))
				;
			tab[i] = (uint32_t)x;
		}
		free(u->tab);
		u->tab = tab;
		u->tab_cap = cap;
	}
	for (i = h & (u->tab_cap - 1); u->tab[i]; i = (i + 1) & (u->tab_cap - 1))
		if (memcmp(u->key[u->tab[i]], key, 16) == 0)
			return u->tab[i];
	if (u->n + 2 > u->cap) {
		u->cap = u->cap ? 2 * u->cap : 1024;
		u->key = realloc(u->key, u->cap * 16);
		u->parent = realloc(u->parent, u->cap * 4);
		u->size = realloc(u->size, u->cap * 4);
		if (!u->key || !u->parent || !u->size)
			abort();
	}
	u->n++;
	memcpy(u->key[u->n], key, 16);
	u->parent[u->n] = (uint32_t)u->n;
	u->size[u->n] = 1;
	u->tab[i] = (uint32_t)u->n;
	return (uint32_t)u->n;
}

static uint32_t uf_find(struct uf *u, uint32_t x)
{
	while (u->parent[x] != x) {
		u->parent[x] = u->parent[u->parent[x]];
		x = u->parent[x];
	}
	return x;
}

static void uf_apply(struct uf *u, const struct bev *e)
{
	uint32_t first = 0;

	for (int i = 0; i < e->n; i++) {
		uint32_t x, a, b;

		if (e->ids[i].blocked || e->ids[i].type == IDENTITY_TYPE_GROUP_ID)
			continue;
		x = uf_node(u, e->ids[i].key);
		if (!first) {
			first = x;
			continue;
		}
		a = uf_find(u, first);
		b = uf_find(u, x);
		if (a == b)
			continue;
		if (u->size[a] < u->size[b]) {
			uint32_t t = a;

			a = b;
			b = t;
		}
		u->parent[b] = a;
		u->size[a] += u->size[b];
	}
}

int main(int argc, char **argv)
{
	uint64_t people = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
	uint64_t events = argc > 2 ? strtoull(argv[2], NULL, 10) : 10000000;
	struct bev *batch = malloc(BATCH * sizeof(*batch));
	struct identity_event_ids *evs = malloc(BATCH * sizeof(*evs));
	uint64_t *pids = malloc(BATCH * sizeof(*pids));
	bool single = argc > 4 && strcmp(argv[4], "single") == 0;
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;
	struct identity_stats st;
	struct uf u = { 0 };
	uint8_t junk_email[16], digest[16];
	uint64_t s = 0x9e3779b97f4a7c15ull, attached = 0, ids_in = 0;
	struct span t_graph = { 0, 0 }, t_uf = { 0, 0 };
	size_t rss0, rss1, rss2;

	seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
	s ^= seed;
	if (!batch || !evs || !pids || people < 20)
		return 2;

	/* The placeholder email, as the workspace's blocked list holds it. */
	{
		struct bev e = { .n = 0 };

		add(&e, IDENTITY_TYPE_EMAIL, 0, K_JUNK, 1, false, false);
		memcpy(junk_email, e.ids[0].key, 16);
	}
	identity_rules_block(r, "email", junk_email);
	/* The bench's own buffers are resident before the baseline. */
	memset(batch, 0, BATCH * sizeof(*batch));
	memset(evs, 0, BATCH * sizeof(*evs));
	memset(pids, 0, BATCH * sizeof(*pids));
	rss0 = rss_bytes();
	g = identity_graph_new(r);
	identity_rules_free(r);

	for (uint64_t done = 0; done < events;) {
		size_t n = events - done < BATCH ? (size_t)(events - done) : BATCH;

		size_t applied;

		for (size_t i = 0; i < n; i++) {
			gen(&batch[i], &s, people);
			ids_in += batch[i].n;
			evs[i] = (struct identity_event_ids){
				.ids = batch[i].ids, .n = batch[i].n,
				.seq = (int64_t)(done + i + 1),
				/* a year, in log order, from 2026-01-01 */
				.ts_us = 1767225600000000LL +
					 (int64_t)((done + i) * (365ULL * 86400 * 1000000 / events)),
				.ref = done + i, .alias = batch[i].alias,
			};
		}
		span_start(&t_graph);
		if (single) {
			for (size_t i = 0; i < n; i++)
				if (identity_graph_apply(g, &evs[i], &pids[i]) != 0)
					abort();
		} else if (identity_graph_apply_batch(g, evs, n, pids, &applied) != 0) {
			abort();
		}
		span_stop(&t_graph);
		for (size_t i = 0; i < n; i++)
			attached += pids[i] != 0;
		done += n;
	}
	rss1 = rss_bytes();
	identity_graph_stats(g, &st);
	identity_graph_digest(g, digest);

	/* The ceiling, on the same events (regenerated from the same seed). */
	s = 0x9e3779b97f4a7c15ull ^ seed;
	for (uint64_t done = 0; done < events;) {
		size_t n = events - done < BATCH ? (size_t)(events - done) : BATCH;

		for (size_t i = 0; i < n; i++)
			gen(&batch[i], &s, people);
		span_start(&t_uf);
		for (size_t i = 0; i < n; i++)
			uf_apply(&u, &batch[i]);
		span_stop(&t_uf);
		done += n;
	}
	rss2 = rss_bytes();

	size_t uf_bytes = u.cap * (16 + 4 + 4) + u.tab_cap * 4;

	printf("workload: %llu people, %llu events (%.2f identifiers each), seed %llu\n",
	       (unsigned long long)people, (unsigned long long)events,
	       (double)ids_in / (double)events, (unsigned long long)seed);
	printf("graph:    %.2f M events/s applied by CPU time (%.2f s; %.0f ns/event), "
	       "%.2f M/s by wall time (%.2f s); %s\n",
	       (double)events / t_graph.cpu / 1e6, t_graph.cpu,
	       t_graph.cpu / (double)events * 1e9,
	       (double)events / t_graph.wall / 1e6, t_graph.wall,
	       single ? "one apply per event" : "apply_batch");
	printf("          %llu identifiers, %llu profiles live, %llu created, %llu merges,\n"
	       "          %llu links, %llu explanations; %.1f%% of events attached\n",
	       (unsigned long long)st.identifiers, (unsigned long long)st.profiles,
	       (unsigned long long)st.profiles_created, (unsigned long long)st.merges,
	       (unsigned long long)st.links, (unsigned long long)st.explanations,
	       100.0 * (double)attached / (double)events);
	printf("          memory per identifier: %.1f bytes in use by the graph's accounting "
	       "(%.0f MiB; %.1f reserved),\n          %.1f by the growth of RSS (%.0f MiB)\n",
	       (double)st.bytes / (double)st.identifiers, (double)st.bytes / 1048576.0,
	       (double)st.bytes_reserved / (double)st.identifiers,
	       (double)(rss1 - rss0) / (double)st.identifiers,
	       (double)(rss1 - rss0) / 1048576.0);
	printf("          digest ");
	for (int i = 0; i < 16; i++)
		printf("%02x", digest[i]);
	printf("\n");
	printf("ceiling:  plain union-find, same events: %.2f M events/s by CPU time (%.2f s), "
	       "%.2f M/s by wall time;\n          %zu identifiers, %.1f bytes/identifier "
	       "(%.1f by RSS growth)\n",
	       (double)events / t_uf.cpu / 1e6, t_uf.cpu, (double)events / t_uf.wall / 1e6,
	       u.n, (double)uf_bytes / (double)u.n, (double)(rss2 - rss1) / (double)u.n);
	identity_graph_free(g);
	free(batch);
	free(evs);
	free(pids);
	return 0;
}
