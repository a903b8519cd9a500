/*
 * Synthetic identity traffic for the identity benchmarks (identity_mem,
 * identity_bench): the identifiers of a stream of events from a fixed
 * population, shaped like web and app traffic, in log order. Both programs
 * generate their events here, so they measure the same workload.
 *
 * The people: 1-4 browsers each (anonymous ids); 60% have a user id and an
 * email (20% of them two emails, 30% a phone); 35% use a phone app (device
 * id, push token, advertising id). The events: tracks and pages from a
 * browser, logged in or not; identifies; app opens; group calls; a few
 * aliases; and noise: devices shared between people, a blocked junk
 * anonymous id ("undefined", flagged as ingest does) and a placeholder
 * email that the workspace's blocked list holds (idgen_junk_email()). A
 * third of the events come from the heaviest 5% of people. Timestamps span
 * a year in log order.
 *
 * Keys are XXH3-128 of (person, kind, index) under the seed, so they are
 * uniform like the keyed hashes privacy/ computes, and each key belongs to
 * one identifier type only. The same (people, events, seed) always gives
 * the same stream.
 */
#ifndef BENCH_IDGEN_H
#define BENCH_IDGEN_H

#include <stdbool.h>
#include <stdint.h>

#include "identity/identity.h"

/* No event carries more identifiers than this. */
#define IDGEN_MAX_IDS 6

struct idgen {
	uint64_t people;	/* the population, at least 20 */
	uint64_t events;	/* the stream's length: timestamps spread over it */
	uint64_t seed;
	uint64_t rng;		/* xorshift64 state */
	uint64_t next;		/* index of the next event */
};

/* One event's identifiers; idgen_event_ids() turns it into the graph's input. */
struct idgen_event {
	struct identity_ident ids[IDGEN_MAX_IDS];
	uint8_t n;
	bool alias;		/* an alias call: user id, then the previousId in both forms */
};

void idgen_init(struct idgen *g, uint64_t people, uint64_t events, uint64_t seed);

/* Generates the next event of the stream into *e; returns its index (0, 1, 2...). */
uint64_t idgen_next(struct idgen *g, struct idgen_event *e);

/*
 * The graph's view of event number i, e, as the engine gives it: seq i + 1,
 * a timestamp spread over a year from 2026-01-01 in log order, ref i. The
 * result points at e->ids: e must outlive it.
 */
struct identity_event_ids idgen_event_ids(const struct idgen *g, const struct idgen_event *e,
					  uint64_t i);

/* The placeholder email's key (type email), as the workspace's blocked list holds it. */
void idgen_junk_email(const struct idgen *g, uint8_t key[IDENTITY_KEY_BYTES]);

#endif
