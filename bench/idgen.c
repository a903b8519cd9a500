/*
 * The synthetic identity workload (bench/idgen.h): a population model and
 * an event mix, both driven by a seed, with no allocation. About 0.2
 * microseconds per event, well under what the graph spends on it.
 */
#include <string.h>
#include <xxhash.h>

#include "bench/idgen.h"

/* The first event's timestamp, 2026-01-01 00:00 UTC, in microseconds. */
#define IDGEN_T0_US 1767225600000000LL
#define IDGEN_YEAR_US (365ULL * 86400 * 1000000)

struct person {
	bool identified, mobile, ios, phone;
	unsigned anon, emails, devices;
};

/* What an identifier is to its person: the key hashes (person, kind, index). */
enum kind {
	K_USER, K_ANON, K_EMAIL, K_PHONE, K_DEV, K_PUSH, K_IDFA, K_GROUP, K_JUNK, K_PREV_AS_USER
};

static uint64_t rng(struct idgen *g)
{
	uint64_t x = g->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return g->rng = x;
}

static struct person person_of(const struct idgen *g, uint64_t p)
{
	uint64_t h = XXH3_64bits_withSeed(&p, sizeof(p), g->seed);
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

static void add(const struct idgen *g, struct idgen_event *e, uint16_t type, uint64_t p,
		enum kind k, uint64_t idx, bool previous, bool blocked)
{
	uint64_t in[3] = { p, k, idx };
	XXH128_hash_t h = XXH3_128bits_withSeed(in, sizeof(in), g->seed);
	struct identity_ident *id = &e->ids[e->n++];

	memcpy(id->key, &h.low64, 8);
	memcpy(id->key + 8, &h.high64, 8);
	id->type = type;
	id->previous = previous;
	id->blocked = blocked;
}

static void add_device(const struct idgen *g, struct idgen_event *e, const struct person *pp,
		       uint64_t p, unsigned d)
{
	add(g, e, pp->ios ? IDENTITY_TYPE_IOS_ID : IDENTITY_TYPE_ANDROID_ID, p, K_DEV, d,
	    false, false);
}

void idgen_init(struct idgen *g, uint64_t people, uint64_t events, uint64_t seed)
{
	g->people = people;
	g->events = events;
	g->seed = seed;
	g->rng = 0x9e3779b97f4a7c15ull ^ seed;
	g->next = 0;
}

uint64_t idgen_next(struct idgen *g, struct idgen_event *e)
{
	uint64_t people = g->people;
	uint64_t p = rng(g) % 3 == 0 ? rng(g) % (people / 20 + 1) : rng(g) % people;
	struct person pp = person_of(g, p);
	unsigned sess = (unsigned)(rng(g) % pp.anon);
	unsigned r = (unsigned)(rng(g) % 1000);

	e->n = 0;
	e->alias = false;
	if (r < 620) {
		/* track / page */
		add(g, e, IDENTITY_TYPE_ANONYMOUS_ID, p, K_ANON, sess, false, false);
		if (pp.identified && rng(g) & 1)
			add(g, e, IDENTITY_TYPE_USER_ID, p, K_USER, 0, false, false);
		if (pp.mobile)
			add_device(g, e, &pp, p, sess % pp.devices);
	} else if (r < 800) {
		/* identify */
		add(g, e, IDENTITY_TYPE_ANONYMOUS_ID, p, K_ANON, sess, false, false);
		if (pp.identified)
			add(g, e, IDENTITY_TYPE_USER_ID, p, K_USER, 0, false, false);
		if (pp.emails)
			add(g, e, IDENTITY_TYPE_EMAIL, p, K_EMAIL, rng(g) % pp.emails, false, false);
		if (pp.phone)
			add(g, e, IDENTITY_TYPE_PHONE, p, K_PHONE, 0, false, false);
		if (pp.mobile)
			add_device(g, e, &pp, p, sess % pp.devices);
	} else if (r < 920) {
		/* app open */
		add(g, e, IDENTITY_TYPE_ANONYMOUS_ID, p, K_ANON, sess, false, false);
		if (pp.mobile) {
			unsigned d = sess % pp.devices;

			add_device(g, e, &pp, p, d);
			if (d == 0)
				add(g, e, pp.ios ? IDENTITY_TYPE_IOS_PUSH_TOKEN :
					IDENTITY_TYPE_ANDROID_PUSH_TOKEN, p, K_PUSH, d, false, false);
			if (pp.identified)
				add(g, e, pp.ios ? IDENTITY_TYPE_IOS_IDFA : IDENTITY_TYPE_ANDROID_IDFA,
				    p, K_IDFA, d, false, false);
		}
	} else if (r < 970) {
		/* group */
		if (pp.identified)
			add(g, e, IDENTITY_TYPE_USER_ID, p, K_USER, 0, false, false);
		else
			add(g, e, IDENTITY_TYPE_ANONYMOUS_ID, p, K_ANON, sess, false, false);
		add(g, e, IDENTITY_TYPE_GROUP_ID, p / 40, K_GROUP, 0, false, false);
	} else if (r < 985 && pp.identified) {
		/*
		 * alias: the user, and the browser's anonymous id as previousId,
		 * which arrives hashed both as a user id (a key never seen) and
		 * as an anonymous id (the browser's key).
		 */
		add(g, e, IDENTITY_TYPE_USER_ID, p, K_USER, 0, false, false);
		add(g, e, IDENTITY_TYPE_USER_ID, p, K_PREV_AS_USER, sess, true, false);
		add(g, e, IDENTITY_TYPE_ANONYMOUS_ID, p, K_ANON, sess, true, false);
		e->alias = true;
	} else {
		/* noise */
		uint64_t q = rng(g) % people;
		struct person qq = person_of(g, q);

		add(g, e, IDENTITY_TYPE_ANONYMOUS_ID, p, K_ANON, sess, false, false);
		switch (r % 3) {
		case 0:	/* a shared device */
			if (qq.mobile)
				add_device(g, e, &qq, q, 0);
			break;
		case 1:	/* anonymousId "undefined" beside a user id */
			e->n = 0;
			add(g, e, IDENTITY_TYPE_ANONYMOUS_ID, 0, K_JUNK, 0, false, true);
			if (pp.identified)
				add(g, e, IDENTITY_TYPE_USER_ID, p, K_USER, 0, false, false);
			break;
		default: /* a placeholder email on the workspace's blocked list */
			add(g, e, IDENTITY_TYPE_EMAIL, 0, K_JUNK, 1, false, false);
			break;
		}
	}
	return g->next++;
}

struct identity_event_ids idgen_event_ids(const struct idgen *g, const struct idgen_event *e,
					  uint64_t i)
{
	return (struct identity_event_ids){
		.ids = e->ids, .n = e->n, .seq = (int64_t)(i + 1),
		.ts_us = IDGEN_T0_US + (int64_t)(i * (IDGEN_YEAR_US / g->events)),
		.ref = i, .alias = e->alias,
	};
}

void idgen_junk_email(const struct idgen *g, uint8_t key[IDENTITY_KEY_BYTES])
{
	struct idgen_event e = { .n = 0 };

	add(g, &e, IDENTITY_TYPE_EMAIL, 0, K_JUNK, 1, false, false);
	memcpy(key, e.ids[0].key, IDENTITY_KEY_BYTES);
}
