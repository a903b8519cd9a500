/*
 * identity_mem: how fast the identity graph applies events and how much
 * memory it holds per identifier, on a synthetic workload shaped like real
 * traffic, with the ceiling (a plain union-find over the same events, the
 * structure PERFORMANCE.md measured) in the same run.
 *
 *   make build/bench/identity_mem
 *   build/bench/identity_mem [people (2000000)] [events (10000000)] [seed (1)] [batch|single]
 *
 * The workload is bench/idgen.h's: web and app traffic from a fixed
 * population, with shared devices and blocked junk values as noise.
 * bench/identity_bench measures the same graph on the same events against
 * connected components in SQL (make bench-identity).
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

#include "bench/idgen.h"
#include "bench/span.h"
#include "bench/uf.h"
#include "identity/identity.h"
#include "lib/alloc.h"

#define BATCH 65536

/* The ceiling's view of an event: every identifier joined to the first. */
static void uf_apply(struct uf *u, const struct idgen_event *e)
{
	uint32_t first = 0;

	for (int i = 0; i < e->n; i++) {
		uint32_t x;

		if (e->ids[i].blocked || e->ids[i].type == IDENTITY_TYPE_GROUP_ID)
			continue;
		x = uf_node(u, e->ids[i].key);
		if (!first)
			first = x;
		else
			uf_union(u, first, x);
	}
}

int main(int argc, char **argv)
{
	uint64_t people = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
	uint64_t events = argc > 2 ? strtoull(argv[2], NULL, 10) : 10000000;
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
	bool single = argc > 4 && strcmp(argv[4], "single") == 0;
	struct idgen_event *batch = xcalloc(BATCH, sizeof(*batch));
	struct identity_event_ids *evs = xcalloc(BATCH, sizeof(*evs));
	uint64_t *pids = xcalloc(BATCH, sizeof(*pids));
	struct identity_rules *r = identity_rules_new();
	struct identity_graph *g;
	struct identity_stats st;
	struct idgen gen;
	struct uf u = UF_INIT;
	uint8_t junk_email[16], digest[16];
	uint64_t attached = 0, ids_in = 0;
	struct span t_graph = SPAN_INIT, t_uf = SPAN_INIT;
	size_t rss0, rss1, rss2;

	if (people < 20 || events < 1)
		return 2;
	idgen_init(&gen, people, events, seed);
	idgen_junk_email(&gen, junk_email);
	identity_rules_block(r, "email", junk_email);
	/* The bench's own buffers are resident before the baseline. */
	memset(batch, 0, BATCH * sizeof(*batch));
	memset(evs, 0, BATCH * sizeof(*evs));
	memset(pids, 0, BATCH * sizeof(*pids));
	rss0 = span_rss_bytes();
	g = identity_graph_new(r);
	identity_rules_free(r);

	for (uint64_t done = 0; done < events;) {
		size_t n = events - done < BATCH ? (size_t)(events - done) : BATCH;
		size_t applied;

		for (size_t i = 0; i < n; i++) {
			uint64_t at = idgen_next(&gen, &batch[i]);

			ids_in += batch[i].n;
			evs[i] = idgen_event_ids(&gen, &batch[i], at);
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
	rss1 = span_rss_bytes();
	identity_graph_stats(g, &st);
	identity_graph_digest(g, digest);

	/* The ceiling, on the same events (regenerated from the same seed). */
	idgen_init(&gen, people, events, seed);
	for (uint64_t done = 0; done < events;) {
		size_t n = events - done < BATCH ? (size_t)(events - done) : BATCH;

		for (size_t i = 0; i < n; i++)
			idgen_next(&gen, &batch[i]);
		span_start(&t_uf);
		for (size_t i = 0; i < n; i++)
			uf_apply(&u, &batch[i]);
		span_stop(&t_uf);
		done += n;
	}
	rss2 = span_rss_bytes();

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
	       u.n, (double)uf_bytes(&u) / (double)u.n, (double)(rss2 - rss1) / (double)u.n);
	identity_graph_free(g);
	uf_release(&u);
	free(batch);
	free(evs);
	free(pids);
	return 0;
}
