/*
 * Synthetic Segment traffic for the benchmarks. Both the load generator
 * and the COPY ceiling build their events here, so the ceiling writes the
 * same kind of rows that Weft receives.
 *
 * The mix is about 60% track (5-8 properties), 25% identify (traits with
 * an email and a phone) and 15% page (context.page with url and referrer),
 * with an analytics.js-like context (library, userAgent, ip, locale) and
 * users drawn from a fixed pool. Events average about 650 bytes, the size
 * of the Segment events PERFORMANCE.md measures (track ~625, identify ~640,
 * page ~795).
 *
 * Events are built by copying fixed pieces and formatting integers by
 * hand, with no allocation and no printf, so that the generator costs a
 * fraction of a microsecond per event and never becomes the bottleneck.
 */
#ifndef BENCH_GEN_H
#define BENCH_GEN_H

#include <stddef.h>
#include <stdint.h>

/* No event (or identifier list) is longer than this. */
#define GEN_MAX_EVENT 2048

enum gen_kind { GEN_TRACK, GEN_IDENTIFY, GEN_PAGE };

struct gen {
	uint64_t rng;		/* xorshift64* state */
	uint64_t run_id;	/* makes messageIds unique across runs */
	uint64_t counter;	/* events generated so far */
	unsigned users;		/* size of the user pool */
};

/* What was put into one event, for callers that build log rows. */
struct gen_event {
	enum gen_kind kind;
	unsigned user;		/* index in the pool */
	int has_user_id;	/* anonymous visitors have only an anonymousId */
	char message_id[37];	/* a UUID-shaped string, NUL-terminated */
	const char *name;	/* track: the event name; page: the page name */
	int64_t timestamp_ms;	/* Unix milliseconds */
	int64_t sent_at_ms;
};

/*
 * Sets up a generator. Two generators with different run_ids never produce
 * the same messageId; seed picks the sequence of users and event shapes.
 */
void gen_init(struct gen *g, uint64_t seed, uint64_t run_id, unsigned users);

/*
 * Writes one event (a JSON object, not NUL-terminated) at out, which has
 * room for GEN_MAX_EVENT bytes, and returns its length. now_ms (Unix
 * milliseconds) is its sentAt; its timestamp is up to a few seconds older.
 */
size_t gen_event(struct gen *g, char *out, int64_t now_ms,
		 struct gen_event *ev);

/*
 * Writes the identifiers column Weft would store for ev: a JSON array of
 * {"type","key","value"} with 32-hex-digit keys and Weft's default display
 * values (emails and phones partially hidden). Returns its length.
 */
size_t gen_identifiers(const struct gen_event *ev, char *out);

/*
 * Writes the messageId of the run's n-th event (36 characters, no NUL):
 * UUID-shaped, unique for distinct (run_id, n) while n < 2^48, and in
 * random order, so they spread over the unique index as real ones do.
 */
void gen_message_id(uint64_t run_id, uint64_t n, char *out);

/* Writes now as "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 bytes, no NUL). */
char *gen_put_iso(char *p, int64_t unix_ms);

/*
 * Writes user u's userId ("usr_" and 7 digits) or anonymousId (UUID-shaped,
 * 36 characters) at p, no NUL, as gen_event writes them; returns the end.
 * Other generators use them to load profiles that gen_event's traffic with
 * the same pool then lands on (bench/audgen.c).
 */
char *gen_put_user_id(char *p, unsigned u);
char *gen_put_anonymous_id(char *p, unsigned u);

/* Writes v in decimal at p (no NUL); returns the end. */
char *gen_put_u(char *p, uint64_t v);

/* A random 64-bit number from the kernel, for run ids and seeds. */
uint64_t gen_random_seed(void);

#endif
