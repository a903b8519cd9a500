/*
 * The profile store (profiles.h). Layout, all flat arrays saved as
 * snapshot sections:
 *
 *   profs[]    by profile id: its record in the heap, the newest entry of
 *              its own event chain, and the next profile of its merged set
 *              (a circular list, so a survivor finds every chain to read)
 *   heap       a slab arena of records: slots of 2^k bytes (32 B to 64 KB),
 *              one free list per size; a record is rewritten in place when
 *              it still fits its slot
 *   ev_seq[], ev_prev[]  event entries: the event and the previous entry
 *              of the same profile (12 bytes per event)
 *   seen[]     by identifier node: first event, first and last seen
 *   names      interned trait and event names (offsets into a string array)
 *   accounts[] group accounts: key and traits record
 *
 * A record: first_us, last_us, events, then the traits (name, timestamp,
 * value as compact JSON; length 0 is a removed trait kept for its
 * timestamp), the counters (name, count) and the accounts, each sorted by
 * name or id.
 */
#include "profiles/profiles.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/jsonw.h"

#define SLOT_MIN_SHIFT 5
#define SLOT_MAX_SHIFT 16
#define NCLASSES (SLOT_MAX_SHIFT - SLOT_MIN_SHIFT + 1)
#define RECORD_MAX (1u << SLOT_MAX_SHIFT)
/* A trait value longer than this is not kept (docs/profiles.md). */
#define TRAIT_VALUE_MAX 8192
#define NAME_MAX_BYTES 255
#define SNAP_MAGIC 0x57465052u	/* "WFPR" */

struct prof {
	uint32_t rec;		/* heap offset + 1 of its record, 0 none */
	uint32_t ev_head;	/* newest entry of its own chain, 0 none */
	uint32_t ring;		/* next profile of its merged set; 0 when alone */
	uint32_t slot_shift;	/* its record's slot size */
};

struct account {
	uint8_t key[16];
	uint32_t rec;		/* heap offset + 1 of its traits record, 0 none */
	uint32_t slot_shift;
};

struct header {
	uint32_t magic, version;
	uint64_t nprofs, heap_len, nev, nseen, nnames, names_len, naccounts;
	uint64_t free_head[NCLASSES];	/* heap offset + 1 of a free slot per size */
	uint64_t ntraits, nprofiles;
};

/* Which pages of a section changed since profile_store_clean(): a bit per page. */
struct dirty {
	uint64_t *bits;
	size_t words;
};

struct profile_store {
	struct dirty heap_dirty, seen_dirty;
	struct prof *profs;
	size_t nprofs, profs_cap;
	uint8_t *heap;
	size_t heap_len, heap_cap;
	uint64_t free_head[NCLASSES];
	int64_t *ev_seq;
	uint32_t *ev_prev;
	size_t nev, ev_cap;		/* entry 0 is reserved */
	struct profile_ident_seen *seen;
	size_t nseen;
	uint32_t *name_off;		/* into name_str, id = index */
	size_t nnames, names_cap;
	char *name_str;
	size_t names_len, name_str_cap;
	uint32_t *name_tab;		/* open addressing: name id + 1 */
	size_t name_tab_cap;
	struct account *accounts;
	size_t naccounts, accounts_cap;
	uint32_t *acct_tab;		/* open addressing: account index + 1 */
	size_t acct_tab_cap;
	uint64_t ntraits, nprofiles;	/* live traits, profiles with a record */
	size_t nev_forgotten;		/* entries of forgotten events (seq 0) */
};

/* ---- growth ---- */

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
	size_t n;

	if (need <= *cap)
		return p;
	n = *cap + *cap / 2;
	if (n < need)
		n = need;
	if (n < 16)
		n = 16;
	p = xrealloc(p, xmul(n, elem));
	memset((char *)p + *cap * elem, 0, (n - *cap) * elem);
	*cap = n;
	return p;
}

static void mark_dirty(struct dirty *d, size_t off, size_t len)
{
	size_t first = off / PROFILE_PAGE_BYTES, last = (off + (len ? len : 1) - 1) / PROFILE_PAGE_BYTES;

	if (last / 64 >= d->words) {
		size_t words = last / 64 + 1 + d->words / 2;

		d->bits = xrealloc(d->bits, xmul(words, sizeof(*d->bits)));
		memset(d->bits + d->words, 0, (words - d->words) * sizeof(*d->bits));
		d->words = words;
	}
	for (size_t p = first; p <= last; p++)
		d->bits[p / 64] |= 1ull << (p % 64);
}

const uint64_t *profile_store_dirty(const struct profile_store *ps, int section, size_t *npages)
{
	const struct dirty *d = section == 2 ? &ps->heap_dirty : section == 5 ? &ps->seen_dirty :
				NULL;

	*npages = d ? d->words * 64 : 0;
	return d ? d->bits : NULL;
}

void profile_store_clean(struct profile_store *ps)
{
	if (ps->heap_dirty.bits)
		memset(ps->heap_dirty.bits, 0, ps->heap_dirty.words * sizeof(uint64_t));
	if (ps->seen_dirty.bits)
		memset(ps->seen_dirty.bits, 0, ps->seen_dirty.words * sizeof(uint64_t));
}

struct profile_store *profile_store_new(void)
{
	struct profile_store *ps = xcalloc(1, sizeof(*ps));

	ps->profs = grow(NULL, &ps->profs_cap, 64, sizeof(*ps->profs));
	ps->nprofs = 1;
	ps->ev_seq = xcalloc(16, sizeof(*ps->ev_seq));
	ps->ev_prev = xcalloc(16, sizeof(*ps->ev_prev));
	ps->ev_cap = 16;
	ps->nev = 1;
	return ps;
}

void profile_store_free(struct profile_store *ps)
{
	if (!ps)
		return;
	free(ps->heap_dirty.bits);
	free(ps->seen_dirty.bits);
	free(ps->profs);
	free(ps->heap);
	free(ps->ev_seq);
	free(ps->ev_prev);
	free(ps->seen);
	free(ps->name_off);
	free(ps->name_str);
	free(ps->name_tab);
	free(ps->accounts);
	free(ps->acct_tab);
	free(ps);
}

/* ---- names ---- */

static uint64_t name_hash(const char *s, size_t n)
{
	return XXH3_64bits(s, n);
}

static const char *name_of(const struct profile_store *ps, uint32_t id)
{
	return ps->name_str + ps->name_off[id];
}

static void name_tab_put(uint32_t *tab, size_t cap, const char *s, uint32_t id)
{
	size_t i = name_hash(s, strlen(s)) & (cap - 1);

	while (tab[i])
		i = (i + 1) & (cap - 1);
	tab[i] = id + 1;
}

static void name_tab_build(struct profile_store *ps, size_t cap)
{
	free(ps->name_tab);
	ps->name_tab = xcalloc(cap, sizeof(*ps->name_tab));
	ps->name_tab_cap = cap;
	for (size_t i = 0; i < ps->nnames; i++)
		name_tab_put(ps->name_tab, cap, name_of(ps, (uint32_t)i), (uint32_t)i);
}

/* The id of name (n bytes), interned if new. */
static uint32_t intern(struct profile_store *ps, const char *s, size_t n)
{
	size_t i;
	uint32_t id;

	if (ps->name_tab_cap) {
		for (i = name_hash(s, n) & (ps->name_tab_cap - 1); ps->name_tab[i];
		     i = (i + 1) & (ps->name_tab_cap - 1)) {
			const char *have = name_of(ps, ps->name_tab[i] - 1);

			if (strncmp(have, s, n) == 0 && have[n] == '\0')
				return ps->name_tab[i] - 1;
		}
	}
	id = (uint32_t)ps->nnames;
	ps->name_off = grow(ps->name_off, &ps->names_cap, ps->nnames + 1, sizeof(*ps->name_off));
	ps->name_str = grow(ps->name_str, &ps->name_str_cap, ps->names_len + n + 1, 1);
	ps->name_off[id] = (uint32_t)ps->names_len;
	memcpy(ps->name_str + ps->names_len, s, n);
	ps->name_str[ps->names_len + n] = '\0';
	ps->names_len += n + 1;
	ps->nnames++;
	if (2 * ps->nnames > ps->name_tab_cap)
		name_tab_build(ps, ps->name_tab_cap ? 2 * ps->name_tab_cap : 64);
	else
		name_tab_put(ps->name_tab, ps->name_tab_cap, name_of(ps, id), id);
	return id;
}

/* ---- the heap ---- */

static unsigned shift_for(size_t len)
{
	unsigned k = SLOT_MIN_SHIFT;

	while (((size_t)1 << k) < len)
		k++;
	return k;
}

static uint64_t heap_get64(const struct profile_store *ps, size_t off)
{
	uint64_t v;

	memcpy(&v, ps->heap + off, sizeof(v));
	return v;
}

/* A slot of 2^k bytes; returns its offset + 1. */
static uint32_t slot_alloc(struct profile_store *ps, unsigned k)
{
	uint64_t at = ps->free_head[k - SLOT_MIN_SHIFT];
	size_t size = (size_t)1 << k;

	if (at) {
		ps->free_head[k - SLOT_MIN_SHIFT] = heap_get64(ps, at - 1);
		memset(ps->heap + at - 1, 0, size);
		mark_dirty(&ps->heap_dirty, at - 1, size);
		return (uint32_t)at;
	}
	if (ps->heap_len + size > UINT32_MAX - 1)
		abort();	/* 4 GB of records in one workspace */
	ps->heap = grow(ps->heap, &ps->heap_cap, ps->heap_len + size, 1);
	at = ps->heap_len + 1;
	ps->heap_len += size;
	return (uint32_t)at;
}

static void slot_free(struct profile_store *ps, uint32_t at, unsigned k)
{
	uint64_t next = ps->free_head[k - SLOT_MIN_SHIFT];

	memset(ps->heap + at - 1, 0, (size_t)1 << k);
	memcpy(ps->heap + at - 1, &next, sizeof(next));
	mark_dirty(&ps->heap_dirty, at - 1, (size_t)1 << k);
	ps->free_head[k - SLOT_MIN_SHIFT] = at;
}

/* ---- records ---- */

struct trait {
	uint32_t name;
	int64_t ts;
	uint32_t len;		/* 0: removed */
	bool own;		/* the value is at off in the record's own text, else at val */
	const char *val;	/* borrowed from the heap (valid until the heap changes) */
	size_t off;
};

struct counter {
	uint32_t name;
	uint32_t count;
};

/* A decoded record; its arrays are grown as needed and freed by rec_release. */
struct rec {
	int64_t first_us, last_us;
	uint64_t events;
	struct trait *traits;
	size_t ntraits, traits_cap;
	struct counter *counters;
	size_t ncounters, counters_cap;
	uint32_t *accounts;
	size_t naccounts, accounts_cap;
	struct buf owned;	/* value text the record owns (copies) */
};

static void rec_release(struct rec *r)
{
	free(r->traits);
	free(r->counters);
	free(r->accounts);
	buf_release(&r->owned);
}

struct reader {
	const uint8_t *p, *end;
};

static uint64_t rd(struct reader *r, size_t n)
{
	uint64_t v = 0;

	memcpy(&v, r->p, n);
	r->p += n;
	return v;
}

/*
 * Decodes the record at heap offset at + 1 (0: an empty record), or only
 * its header and traits if traits_only (no counters, no accounts). Values
 * point into the heap.
 */
static void rec_decode_part(const struct profile_store *ps, uint32_t at, struct rec *r,
			    bool traits_only)
{
	struct reader rd_ = { 0 };
	uint32_t len;

	memset(r, 0, sizeof(*r));
	if (!at)
		return;
	memcpy(&len, ps->heap + at - 1, 4);
	rd_.p = ps->heap + at - 1 + 4;
	rd_.end = rd_.p + len;
	r->first_us = (int64_t)rd(&rd_, 8);
	r->last_us = (int64_t)rd(&rd_, 8);
	r->events = rd(&rd_, 8);
	r->ntraits = r->traits_cap = rd(&rd_, 2);
	r->ncounters = r->counters_cap = rd(&rd_, 2);
	r->naccounts = r->accounts_cap = rd(&rd_, 2);
	rd(&rd_, 2);
	r->traits = xcalloc(r->traits_cap + 1, sizeof(*r->traits));
	for (size_t i = 0; i < r->ntraits; i++) {
		r->traits[i].name = (uint32_t)rd(&rd_, 4);
		r->traits[i].ts = (int64_t)rd(&rd_, 8);
		r->traits[i].len = (uint32_t)rd(&rd_, 4);
		r->traits[i].val = (const char *)rd_.p;
		rd_.p += r->traits[i].len;
	}
	if (traits_only) {
		r->ncounters = r->counters_cap = 0;
		r->naccounts = r->accounts_cap = 0;
		return;
	}
	r->counters = xcalloc(r->counters_cap + 1, sizeof(*r->counters));
	for (size_t i = 0; i < r->ncounters; i++) {
		r->counters[i].name = (uint32_t)rd(&rd_, 4);
		r->counters[i].count = (uint32_t)rd(&rd_, 4);
	}
	r->accounts = xcalloc(r->accounts_cap + 1, sizeof(*r->accounts));
	for (size_t i = 0; i < r->naccounts; i++)
		r->accounts[i] = (uint32_t)rd(&rd_, 4);
}

static void rec_decode(const struct profile_store *ps, uint32_t at, struct rec *r)
{
	rec_decode_part(ps, at, r, false);
}

/* The traits r holds a value for (a removed one is kept only for its timestamp). */
static uint64_t live_traits(const struct rec *r)
{
	uint64_t n = 0;

	for (size_t i = 0; i < r->ntraits; i++)
		n += r->traits[i].len != 0;
	return n;
}

static size_t rec_size(const struct rec *r)
{
	size_t n = 4 + 8 + 8 + 8 + 8;

	for (size_t i = 0; i < r->ntraits; i++)
		n += 16 + r->traits[i].len;
	return n + 8 * r->ncounters + 4 * r->naccounts;
}

static void wr(struct buf *b, uint64_t v, size_t n)
{
	buf_add(b, &v, n);
}

static void rec_encode(const struct rec *r, struct buf *b)
{
	buf_reset(b);
	wr(b, (uint32_t)(rec_size(r) - 4), 4);
	wr(b, (uint64_t)r->first_us, 8);
	wr(b, (uint64_t)r->last_us, 8);
	wr(b, r->events, 8);
	wr(b, r->ntraits, 2);
	wr(b, r->ncounters, 2);
	wr(b, r->naccounts, 2);
	wr(b, 0, 2);
	for (size_t i = 0; i < r->ntraits; i++) {
		wr(b, r->traits[i].name, 4);
		wr(b, (uint64_t)r->traits[i].ts, 8);
		wr(b, r->traits[i].len, 4);
		buf_add(b, r->traits[i].own ? r->owned.data + r->traits[i].off : r->traits[i].val,
			r->traits[i].len);
	}
	for (size_t i = 0; i < r->ncounters; i++) {
		wr(b, r->counters[i].name, 4);
		wr(b, r->counters[i].count, 4);
	}
	for (size_t i = 0; i < r->naccounts; i++)
		wr(b, r->accounts[i], 4);
}

/*
 * Stores r in the slot at *at (of 2^*shift bytes), moving it to a bigger or
 * smaller slot if needed. WEFT_ETOOBIG if it cannot fit a record.
 */
static int rec_store(struct profile_store *ps, const struct rec *r, uint32_t *at,
		     uint32_t *shift)
{
	struct buf b = BUF_INIT;
	unsigned k;

	rec_encode(r, &b);
	if (b.len > RECORD_MAX) {
		buf_release(&b);
		return WEFT_ETOOBIG;
	}
	k = shift_for(b.len);
	/* Keep the slot while it fits and is not more than four times too big. */
	if (!*at || k > *shift || k + 2 < *shift) {
		uint32_t old = *at, old_shift = *shift;

		*at = slot_alloc(ps, k);
		*shift = k;
		if (old)
			slot_free(ps, old, old_shift);
	}
	memcpy(ps->heap + *at - 1, b.data, b.len);
	mark_dirty(&ps->heap_dirty, *at - 1, b.len);
	buf_release(&b);
	return 0;
}

static void rec_free(struct profile_store *ps, uint32_t *at, uint32_t *shift)
{
	if (*at)
		slot_free(ps, *at, *shift);
	*at = 0;
	*shift = 0;
}

/* ---- editing a record ---- */

static struct trait *find_trait(struct rec *r, uint32_t name, size_t *pos)
{
	size_t lo = 0, hi = r->ntraits;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (r->traits[mid].name < name)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return lo < r->ntraits && r->traits[lo].name == name ? &r->traits[lo] : NULL;
}

/*
 * Sets trait name from an event at ts, unless a newer event set it: len 0
 * removes it (keeping ts), else the value is len bytes at off in r->owned
 * (own) or at val.
 */
static void set_trait(struct rec *r, uint32_t name, int64_t ts, bool own, const char *val,
		      size_t off, uint32_t len)
{
	size_t pos;
	struct trait *t = find_trait(r, name, &pos);

	if (t) {
		if (t->ts > ts)
			return;
	} else {
		r->traits = grow(r->traits, &r->traits_cap, r->ntraits + 1, sizeof(*r->traits));
		memmove(&r->traits[pos + 1], &r->traits[pos],
			(r->ntraits - pos) * sizeof(*r->traits));
		r->ntraits++;
		t = &r->traits[pos];
		t->name = name;
	}
	t->ts = ts;
	t->len = len;
	t->own = own;
	t->val = val;
	t->off = off;
}

static void add_counter(struct rec *r, uint32_t name, uint32_t n)
{
	size_t lo = 0, hi = r->ncounters;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (r->counters[mid].name < name)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == r->ncounters || r->counters[lo].name != name) {
		r->counters = grow(r->counters, &r->counters_cap, r->ncounters + 1,
				   sizeof(*r->counters));
		memmove(&r->counters[lo + 1], &r->counters[lo],
			(r->ncounters - lo) * sizeof(*r->counters));
		r->ncounters++;
		r->counters[lo].name = name;
		r->counters[lo].count = 0;
	}
	r->counters[lo].count = r->counters[lo].count + n < r->counters[lo].count ?
				UINT32_MAX : r->counters[lo].count + n;
}

static void add_account(struct rec *r, uint32_t id)
{
	size_t lo = 0, hi = r->naccounts;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (r->accounts[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < r->naccounts && r->accounts[lo] == id)
		return;
	r->accounts = grow(r->accounts, &r->accounts_cap, r->naccounts + 1, sizeof(*r->accounts));
	memmove(&r->accounts[lo + 1], &r->accounts[lo], (r->naccounts - lo) * sizeof(*r->accounts));
	r->naccounts++;
	r->accounts[lo] = id;
}

/* Applies an object of traits at ts; WEFT_ETOOBIG if a name or value was too long to keep. */
static int set_traits(struct profile_store *ps, struct rec *r, json_t *traits, int64_t ts)
{
	const char *key;
	json_t *v;
	int rc = 0;

	json_object_foreach(traits, key, v) {
		size_t klen = strlen(key), at = r->owned.len, len;
		uint32_t name;

		if (klen == 0 || klen > NAME_MAX_BYTES) {
			rc = WEFT_ETOOBIG;
			continue;
		}
		name = intern(ps, key, klen);
		if (json_is_null(v)) {
			set_trait(r, name, ts, false, NULL, 0, 0);
			continue;
		}
		/* Written in place; reals in their shortest form (lib/jsonw.h). */
		buf_add_json(&r->owned, v);
		len = r->owned.len - at;
		if (len > TRAIT_VALUE_MAX) {
			r->owned.len = at;	/* drop it, keeping the NUL after the data */
			r->owned.data[at] = '\0';
			rc = WEFT_ETOOBIG;
			continue;
		}
		set_trait(r, name, ts, true, NULL, at, (uint32_t)len);
	}
	return rc;
}

/* ---- profiles ---- */

static struct prof *prof_at(struct profile_store *ps, uint64_t pid)
{
	if (pid >= ps->nprofs) {
		ps->profs = grow(ps->profs, &ps->profs_cap, (size_t)pid + 1, sizeof(*ps->profs));
		ps->nprofs = (size_t)pid + 1;
	}
	return &ps->profs[pid];
}

static void ev_push(struct profile_store *ps, struct prof *p, int64_t seq)
{
	if (ps->nev + 1 > ps->ev_cap) {
		size_t cap = ps->ev_cap;

		/* Both grow the same way from the same capacity. */
		ps->ev_seq = grow(ps->ev_seq, &cap, ps->nev + 1, sizeof(*ps->ev_seq));
		ps->ev_prev = grow(ps->ev_prev, &ps->ev_cap, ps->nev + 1, sizeof(*ps->ev_prev));
	}
	ps->ev_seq[ps->nev] = seq;
	ps->ev_prev[ps->nev] = p->ev_head;
	p->ev_head = (uint32_t)ps->nev++;
}

static int apply_account(struct profile_store *ps, const struct profile_event *ev,
			 uint32_t *id);

int profile_store_apply(struct profile_store *ps, const struct profile_event *ev)
{
	static const char *const calls[] = { "track", "identify", "page", "screen", "group",
					     "alias" };
	struct prof *p;
	struct rec r;
	const char *name;
	uint32_t acct = 0;
	uint64_t live;
	bool had;
	int rc = 0, rc2;

	if (!ev->profile_id)
		return 0;
	/*
	 * The account first: it may grow the heap the record's values are
	 * read from. It exists even if part of its traits did not fit.
	 */
	if (ev->account_key)
		rc = apply_account(ps, ev, &acct);
	p = prof_at(ps, ev->profile_id);
	had = p->rec != 0;
	rec_decode(ps, p->rec, &r);
	live = live_traits(&r);
	if (!r.first_us || ev->ts_us < r.first_us)
		r.first_us = ev->ts_us;
	if (ev->ts_us > r.last_us)
		r.last_us = ev->ts_us;
	r.events++;
	name = ev->call == PROFILE_TRACK && ev->name ? ev->name : calls[ev->call];
	add_counter(&r, intern(ps, name, strnlen(name, NAME_MAX_BYTES)), 1);
	if (json_is_object(ev->traits) && (rc2 = set_traits(ps, &r, ev->traits, ev->ts_us)))
		rc = rc2;
	if (ev->account_key)
		add_account(&r, acct);
	if ((rc2 = rec_store(ps, &r, &p->rec, &p->slot_shift)))
		rc = rc2;	/* too big: the record stays as it was */
	else
		ps->ntraits += live_traits(&r) - live;
	if (!had && p->rec)
		ps->nprofiles++;
	rec_release(&r);
	ev_push(ps, p, ev->seq);
	return rc;
}

/* ---- accounts ---- */

static void acct_tab_put(uint32_t *tab, size_t cap, const uint8_t *key, uint32_t idx)
{
	size_t i = XXH3_64bits(key, 16) & (cap - 1);

	while (tab[i])
		i = (i + 1) & (cap - 1);
	tab[i] = idx + 1;
}

static void acct_tab_build(struct profile_store *ps, size_t cap)
{
	free(ps->acct_tab);
	ps->acct_tab = xcalloc(cap, sizeof(*ps->acct_tab));
	ps->acct_tab_cap = cap;
	for (size_t i = 0; i < ps->naccounts; i++)
		acct_tab_put(ps->acct_tab, cap, ps->accounts[i].key, (uint32_t)i);
}

static uint32_t account_id(struct profile_store *ps, const uint8_t *key)
{
	uint32_t id;

	if (ps->acct_tab_cap)
		for (size_t i = XXH3_64bits(key, 16) & (ps->acct_tab_cap - 1); ps->acct_tab[i];
		     i = (i + 1) & (ps->acct_tab_cap - 1))
			if (memcmp(ps->accounts[ps->acct_tab[i] - 1].key, key, 16) == 0)
				return ps->acct_tab[i] - 1;
	id = (uint32_t)ps->naccounts;
	ps->accounts = grow(ps->accounts, &ps->accounts_cap, ps->naccounts + 1,
			    sizeof(*ps->accounts));
	memset(&ps->accounts[id], 0, sizeof(ps->accounts[id]));
	memcpy(ps->accounts[id].key, key, 16);
	ps->naccounts++;
	if (2 * ps->naccounts > ps->acct_tab_cap)
		acct_tab_build(ps, ps->acct_tab_cap ? 2 * ps->acct_tab_cap : 64);
	else
		acct_tab_put(ps->acct_tab, ps->acct_tab_cap, key, id);
	return id;
}

static int apply_account(struct profile_store *ps, const struct profile_event *ev, uint32_t *id)
{
	struct account *a;
	struct rec r;
	int rc = 0, rc2;

	*id = account_id(ps, ev->account_key);
	a = &ps->accounts[*id];
	rec_decode(ps, a->rec, &r);
	if (!r.first_us || ev->ts_us < r.first_us)
		r.first_us = ev->ts_us;
	if (ev->ts_us > r.last_us)
		r.last_us = ev->ts_us;
	r.events++;
	if (json_is_object(ev->account_traits))
		rc = set_traits(ps, &r, ev->account_traits, ev->ts_us);
	if ((rc2 = rec_store(ps, &r, &a->rec, &a->slot_shift)))
		rc = rc2;
	rec_release(&r);
	return rc;
}

/* ---- merges, identifiers, forgetting ---- */

void profile_store_merge(struct profile_store *ps, uint64_t survivor, uint64_t absorbed)
{
	struct prof *s, *a;
	struct rec rs, ra;
	uint64_t live;
	uint32_t ring;

	if (survivor == absorbed || !survivor || !absorbed)
		return;
	prof_at(ps, survivor > absorbed ? survivor : absorbed);
	s = &ps->profs[survivor];
	a = &ps->profs[absorbed];
	if (a->rec) {
		rec_decode(ps, s->rec, &rs);
		rec_decode(ps, a->rec, &ra);
		live = live_traits(&rs);
		ps->ntraits -= live_traits(&ra);
		if (!s->rec) {
			ps->nprofiles++;
			rs.first_us = ra.first_us;
		} else if (ra.first_us && ra.first_us < rs.first_us) {
			rs.first_us = ra.first_us;
		}
		if (ra.last_us > rs.last_us)
			rs.last_us = ra.last_us;
		rs.events += ra.events;
		for (size_t i = 0; i < ra.ntraits; i++)
			set_trait(&rs, ra.traits[i].name, ra.traits[i].ts, false, ra.traits[i].val, 0,
				  ra.traits[i].len);
		for (size_t i = 0; i < ra.ncounters; i++)
			add_counter(&rs, ra.counters[i].name, ra.counters[i].count);
		for (size_t i = 0; i < ra.naccounts; i++)
			add_account(&rs, ra.accounts[i]);
		/* Too big for one record: the survivor keeps what it had. */
		if (rec_store(ps, &rs, &s->rec, &s->slot_shift) == 0)
			ps->ntraits += live_traits(&rs) - live;
		rec_release(&rs);
		rec_release(&ra);
		rec_free(ps, &a->rec, &a->slot_shift);
		ps->nprofiles--;
	}
	/* Join the merged sets: their event chains are read together from now on. */
	if (!s->ring)
		s->ring = (uint32_t)survivor;
	if (!a->ring)
		a->ring = (uint32_t)absorbed;
	ring = s->ring;
	s->ring = a->ring;
	a->ring = ring;
}

void profile_store_saw_identifier(struct profile_store *ps, uint32_t node, int64_t seq,
				  int64_t ts_us)
{
	struct profile_ident_seen *s;

	if (node >= ps->nseen) {
		size_t cap = ps->nseen;

		ps->seen = grow(ps->seen, &cap, (size_t)node + 1 + node / 2, sizeof(*ps->seen));
		ps->nseen = cap;
	}
	s = &ps->seen[node];
	mark_dirty(&ps->seen_dirty, (size_t)node * sizeof(*s), sizeof(*s));
	if (!s->first_seq) {
		s->first_seq = seq;
		s->first_us = ts_us;
	}
	if (ts_us > s->last_us)
		s->last_us = ts_us;
}

void profile_store_forget_identifier(struct profile_store *ps, uint32_t node)
{
	if (node < ps->nseen) {
		memset(&ps->seen[node], 0, sizeof(ps->seen[node]));
		mark_dirty(&ps->seen_dirty, (size_t)node * sizeof(ps->seen[node]),
			   sizeof(ps->seen[node]));
	}
}

static int i64_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

int64_t *profile_store_forget(struct profile_store *ps, uint64_t profile_id, size_t *n)
{
	int64_t *out = NULL;
	size_t cap = 0;
	uint64_t q;

	*n = 0;
	if (!profile_id || profile_id >= ps->nprofs)
		return NULL;
	q = profile_id;
	do {
		struct prof *p = &ps->profs[q];
		uint64_t next = p->ring ? p->ring : q;

		for (uint32_t e = p->ev_head; e; e = ps->ev_prev[e]) {
			if (*n == cap) {
				cap = cap ? 2 * cap : 64;
				out = xrealloc(out, xmul(cap, sizeof(*out)));
			}
			out[(*n)++] = ps->ev_seq[e];
			ps->ev_seq[e] = 0;	/* the entry stays, unused */
			ps->nev_forgotten++;
		}
		if (p->rec) {
			struct rec r;

			rec_decode(ps, p->rec, &r);
			ps->ntraits -= live_traits(&r);
			rec_release(&r);
			rec_free(ps, &p->rec, &p->slot_shift);
			ps->nprofiles--;
		}
		p->ev_head = 0;
		p->ring = 0;
		q = next;
	} while (q != profile_id);
	if (*n > 1)
		qsort(out, *n, sizeof(*out), i64_cmp);
	return out;
}

/* ---- reading ---- */

void profile_store_identifier(const struct profile_store *ps, uint32_t node,
			      struct profile_ident_seen *out)
{
	if (node < ps->nseen)
		*out = ps->seen[node];
	else
		memset(out, 0, sizeof(*out));
}

size_t profile_store_events(const struct profile_store *ps, uint64_t profile_id,
			    int64_t before_seq, int64_t after_seq, int64_t *out, size_t max)
{
	uint32_t few[256], *heads = few;
	size_t k = 0, n = 0, cap = sizeof(few) / sizeof(few[0]);
	uint64_t q;

	if (!profile_id || profile_id >= ps->nprofs)
		return 0;
	/*
	 * One cursor per chain of the merged set: few under the default merge
	 * cap, but a workspace may raise the cap.
	 */
	q = profile_id;
	do {
		const struct prof *p = &ps->profs[q];

		if (p->ev_head) {
			if (k == cap) {
				uint32_t *more = xmalloc(xmul(2 * cap, sizeof(*heads)));

				memcpy(more, heads, k * sizeof(*heads));
				if (heads != few)
					free(heads);
				heads = more;
				cap *= 2;
			}
			heads[k++] = p->ev_head;
		}
		q = p->ring ? p->ring : q;
	} while (q != profile_id);
	while (n < max) {
		size_t best = k;

		for (size_t i = 0; i < k; i++) {
			/* Skip what is at or past before_seq, and forgotten entries. */
			while (heads[i] && (ps->ev_seq[heads[i]] == 0 ||
					    (before_seq && ps->ev_seq[heads[i]] >= before_seq)))
				heads[i] = ps->ev_prev[heads[i]];
			if (heads[i] && (best == k || ps->ev_seq[heads[i]] > ps->ev_seq[heads[best]]))
				best = i;
		}
		if (best == k || ps->ev_seq[heads[best]] <= after_seq)
			break;
		out[n++] = ps->ev_seq[heads[best]];
		heads[best] = ps->ev_prev[heads[best]];
	}
	if (heads != few)
		free(heads);
	return n;
}

/* Copies a decoded record's live traits into out, strings into b as offsets (fixed later). */
static void view_traits(const struct profile_store *ps, const struct rec *r, struct buf *b,
			struct profile_trait **out, size_t *n)
{
	size_t bytes = 0;

	*out = xcalloc(r->ntraits + 1, sizeof(**out));
	*n = 0;
	/* One allocation for the strings rather than a doubling series. */
	for (size_t i = 0; i < r->ntraits; i++)
		if (r->traits[i].len)
			bytes += strlen(name_of(ps, r->traits[i].name)) + 2 + r->traits[i].len;
	buf_grow(b, bytes);
	for (size_t i = 0; i < r->ntraits; i++) {
		struct profile_trait *t = &(*out)[*n];
		const char *name = name_of(ps, r->traits[i].name);

		if (!r->traits[i].len)
			continue;
		t->name = (const char *)(uintptr_t)b->len;
		buf_add(b, name, strlen(name) + 1);
		t->json = (const char *)(uintptr_t)b->len;
		buf_add(b, r->traits[i].val, r->traits[i].len);
		buf_addc(b, '\0');
		t->json_len = r->traits[i].len;
		t->ts_us = r->traits[i].ts;
		(*n)++;
	}
}

static void fix_traits(struct profile_trait *t, size_t n, const struct buf *b)
{
	for (size_t i = 0; i < n; i++) {
		t[i].name = b->data + (uintptr_t)t[i].name;
		t[i].json = b->data + (uintptr_t)t[i].json;
	}
}

static int trait_cmp(const void *a, const void *b)
{
	return strcmp(((const struct profile_trait *)a)->name,
		      ((const struct profile_trait *)b)->name);
}

static int counter_cmp(const void *a, const void *b)
{
	return strcmp(((const struct profile_counter *)a)->name,
		      ((const struct profile_counter *)b)->name);
}

/* Names sort alphabetically in a view (the record keeps them by interning order). */
static void qsort_names(struct profile_view *v)
{
	qsort(v->traits, v->ntraits, sizeof(*v->traits), trait_cmp);
	qsort(v->counters, v->ncounters, sizeof(*v->counters), counter_cmp);
	for (size_t i = 0; i < v->naccounts; i++)
		qsort(v->accounts[i].traits, v->accounts[i].ntraits, sizeof(struct profile_trait),
		      trait_cmp);
}

int profile_store_view(const struct profile_store *ps, uint64_t profile_id,
		       struct profile_view *v)
{
	const struct prof *p;
	struct rec r;

	memset(v, 0, sizeof(*v));
	if (!profile_id || profile_id >= ps->nprofs || !ps->profs[profile_id].rec)
		return WEFT_ENOTFOUND;
	p = &ps->profs[profile_id];
	rec_decode(ps, p->rec, &r);
	v->profile_id = profile_id;
	v->first_seen_us = r.first_us;
	v->last_seen_us = r.last_us;
	v->events = r.events;
	view_traits(ps, &r, &v->strings, &v->traits, &v->ntraits);
	v->counters = xcalloc(r.ncounters + 1, sizeof(*v->counters));
	for (size_t i = 0; i < r.ncounters; i++) {
		const char *name = name_of(ps, r.counters[i].name);

		v->counters[i].name = (const char *)(uintptr_t)v->strings.len;
		buf_add(&v->strings, name, strlen(name) + 1);
		v->counters[i].count = r.counters[i].count;
	}
	v->ncounters = r.ncounters;
	v->accounts = xcalloc(r.naccounts + 1, sizeof(*v->accounts));
	for (size_t i = 0; i < r.naccounts; i++) {
		const struct account *a = &ps->accounts[r.accounts[i]];
		struct rec ar;

		memcpy(v->accounts[i].key, a->key, 16);
		rec_decode(ps, a->rec, &ar);
		view_traits(ps, &ar, &v->strings, &v->accounts[i].traits, &v->accounts[i].ntraits);
		rec_release(&ar);
	}
	v->naccounts = r.naccounts;
	rec_release(&r);
	/* The strings are in place: turn offsets into pointers. */
	fix_traits(v->traits, v->ntraits, &v->strings);
	for (size_t i = 0; i < v->ncounters; i++)
		v->counters[i].name = v->strings.data + (uintptr_t)v->counters[i].name;
	for (size_t i = 0; i < v->naccounts; i++)
		fix_traits(v->accounts[i].traits, v->accounts[i].ntraits, &v->strings);
	qsort_names(v);
	return 0;
}

int profile_store_view_traits(const struct profile_store *ps, uint64_t profile_id,
			      struct profile_view *v)
{
	const struct prof *p;
	struct rec r;

	memset(v, 0, sizeof(*v));
	if (!profile_id || profile_id >= ps->nprofs || !ps->profs[profile_id].rec)
		return WEFT_ENOTFOUND;
	p = &ps->profs[profile_id];
	rec_decode_part(ps, p->rec, &r, true);
	v->profile_id = profile_id;
	v->first_seen_us = r.first_us;
	v->last_seen_us = r.last_us;
	v->events = r.events;
	view_traits(ps, &r, &v->strings, &v->traits, &v->ntraits);
	rec_release(&r);
	fix_traits(v->traits, v->ntraits, &v->strings);
	qsort(v->traits, v->ntraits, sizeof(*v->traits), trait_cmp);
	return 0;
}

void profile_view_release(struct profile_view *v)
{
	free(v->traits);
	free(v->counters);
	for (size_t i = 0; i < v->naccounts; i++)
		free(v->accounts[i].traits);
	free(v->accounts);
	buf_release(&v->strings);
	memset(v, 0, sizeof(*v));
}

void profile_store_stats(const struct profile_store *ps, struct profile_store_stats *out)
{
	out->profiles = ps->nprofiles;
	out->traits = ps->ntraits;
	out->events = ps->nev - 1 - ps->nev_forgotten;
	out->bytes = sizeof(*ps) + ps->profs_cap * sizeof(*ps->profs) + ps->heap_cap +
		     ps->ev_cap * (sizeof(*ps->ev_seq) + sizeof(*ps->ev_prev)) +
		     ps->nseen * sizeof(*ps->seen) + ps->names_cap * sizeof(*ps->name_off) +
		     ps->name_str_cap + ps->name_tab_cap * sizeof(*ps->name_tab) +
		     ps->accounts_cap * sizeof(*ps->accounts) +
		     ps->acct_tab_cap * sizeof(*ps->acct_tab);
}

/* ---- snapshots ---- */

void profile_store_sections(const struct profile_store *ps, struct buf *hdr,
			    struct profile_section out[PROFILE_SECTIONS])
{
	struct header h = {
		.magic = SNAP_MAGIC, .version = PROFILE_SNAPSHOT_VERSION,
		.nprofs = ps->nprofs, .heap_len = ps->heap_len, .nev = ps->nev,
		.nseen = ps->nseen, .nnames = ps->nnames, .names_len = ps->names_len,
		.naccounts = ps->naccounts, .ntraits = ps->ntraits, .nprofiles = ps->nprofiles,
	};
	size_t i = 0;

	memcpy(h.free_head, ps->free_head, sizeof(h.free_head));
	buf_reset(hdr);
	buf_add(hdr, &h, sizeof(h));
	out[i++] = (struct profile_section){ hdr->data, hdr->len };
	out[i++] = (struct profile_section){ ps->profs, ps->nprofs * sizeof(*ps->profs) };
	out[i++] = (struct profile_section){ ps->heap, ps->heap_len };
	out[i++] = (struct profile_section){ ps->ev_seq, ps->nev * sizeof(*ps->ev_seq) };
	out[i++] = (struct profile_section){ ps->ev_prev, ps->nev * sizeof(*ps->ev_prev) };
	out[i++] = (struct profile_section){ ps->seen, ps->nseen * sizeof(*ps->seen) };
	out[i++] = (struct profile_section){ ps->name_off, ps->nnames * sizeof(*ps->name_off) };
	out[i++] = (struct profile_section){ ps->name_str, ps->names_len };
	out[i++] = (struct profile_section){ ps->accounts, ps->naccounts * sizeof(*ps->accounts) };
	_Static_assert(PROFILE_SECTIONS == 9, "one entry per section");
}

/* A copy of section s, which must be n elements of elem bytes; *cap set to n. */
static void *load(const struct profile_section *s, uint64_t n, size_t elem, size_t *cap,
		  bool *bad)
{
	void *p;

	if (n > SIZE_MAX / elem / 2 || s->bytes != n * elem) {
		*bad = true;
		return NULL;
	}
	p = xcalloc(n ? n : 1, elem);
	if (s->bytes)
		memcpy(p, s->data, s->bytes);
	if (cap)
		*cap = n ? n : 1;
	return p;
}

/* Whether the slot of 2^shift bytes at heap offset at + 1 (0: none) lies inside the heap. */
static bool slot_ok(const struct profile_store *ps, uint64_t at, unsigned shift)
{
	return !at || (shift >= SLOT_MIN_SHIFT && shift <= SLOT_MAX_SHIFT &&
		       at - 1 + ((uint64_t)1 << shift) <= ps->heap_len);
}

/* The table size for n entries: a power of two above n, at least 64. */
static size_t pow2_above(size_t n)
{
	size_t c = 64;

	while (c <= n)
		c *= 2;
	return c;
}

int profile_store_restore(const struct profile_section in[PROFILE_SECTIONS],
			  struct profile_store **out)
{
	struct profile_store *ps;
	struct header h;
	bool bad = false;
	size_t ev_cap2;

	*out = NULL;
	if (in[0].bytes != sizeof(h))
		return WEFT_EINVAL;
	memcpy(&h, in[0].data, sizeof(h));
	if (h.magic != SNAP_MAGIC || h.version != PROFILE_SNAPSHOT_VERSION || h.nprofs == 0 ||
	    h.nev == 0 || h.heap_len > UINT32_MAX)
		return WEFT_EINVAL;
	ps = xcalloc(1, sizeof(*ps));
	ps->profs = load(&in[1], h.nprofs, sizeof(*ps->profs), &ps->profs_cap, &bad);
	ps->nprofs = h.nprofs;
	ps->heap = load(&in[2], h.heap_len, 1, &ps->heap_cap, &bad);
	ps->heap_len = h.heap_len;
	ps->ev_seq = load(&in[3], h.nev, sizeof(*ps->ev_seq), &ps->ev_cap, &bad);
	ps->ev_prev = load(&in[4], h.nev, sizeof(*ps->ev_prev), &ev_cap2, &bad);
	ps->nev = h.nev;
	ps->seen = load(&in[5], h.nseen, sizeof(*ps->seen), NULL, &bad);
	ps->nseen = h.nseen;
	ps->name_off = load(&in[6], h.nnames, sizeof(*ps->name_off), &ps->names_cap, &bad);
	ps->nnames = h.nnames;
	ps->name_str = load(&in[7], h.names_len, 1, &ps->name_str_cap, &bad);
	ps->names_len = h.names_len;
	ps->accounts = load(&in[8], h.naccounts, sizeof(*ps->accounts), &ps->accounts_cap, &bad);
	ps->naccounts = h.naccounts;
	ps->ntraits = h.ntraits;
	ps->nprofiles = h.nprofiles;
	memcpy(ps->free_head, h.free_head, sizeof(ps->free_head));
	/*
	 * Names must be NUL-terminated strings inside name_str; slots (records
	 * and free lists) inside the heap; each event entry must point to an
	 * older one, so that every chain ends.
	 */
	for (size_t i = 0; !bad && i < ps->nnames; i++)
		bad = ps->name_off[i] >= ps->names_len ||
		      !memchr(ps->name_str + ps->name_off[i], '\0', ps->names_len - ps->name_off[i]);
	for (size_t i = 0; !bad && i < ps->nprofs; i++)
		bad = !slot_ok(ps, ps->profs[i].rec, ps->profs[i].slot_shift) ||
		      ps->profs[i].ev_head >= ps->nev || ps->profs[i].ring >= ps->nprofs;
	for (size_t i = 0; !bad && i < ps->naccounts; i++)
		bad = !slot_ok(ps, ps->accounts[i].rec, ps->accounts[i].slot_shift);
	for (unsigned k = 0; !bad && k < NCLASSES; k++)
		bad = !slot_ok(ps, ps->free_head[k], k + SLOT_MIN_SHIFT);
	for (size_t i = 0; !bad && i < ps->nev; i++) {
		bad = ps->ev_prev[i] >= (i ? i : 1);
		ps->nev_forgotten += i && !ps->ev_seq[i];
	}
	if (bad) {
		profile_store_free(ps);
		return WEFT_EINVAL;
	}
	if (ps->nnames)
		name_tab_build(ps, pow2_above(2 * ps->nnames));
	if (ps->naccounts)
		acct_tab_build(ps, pow2_above(2 * ps->naccounts));
	*out = ps;
	return 0;
}

bool profile_store_has(const struct profile_store *ps, uint64_t pid)
{
	return pid && pid < ps->nprofs && ps->profs[pid].rec;
}

uint64_t profile_store_next(const struct profile_store *ps, uint64_t after)
{
	for (uint64_t pid = after + 1; pid < ps->nprofs; pid++)
		if (ps->profs[pid].rec)
			return pid;
	return 0;
}

int64_t *profile_store_events_all(const struct profile_store *ps, uint64_t profile_id, size_t *n)
{
	int64_t *out = NULL;
	size_t cap = 0;
	uint64_t q;

	*n = 0;
	if (!profile_id || profile_id >= ps->nprofs)
		return NULL;
	q = profile_id;
	do {
		const struct prof *p = &ps->profs[q];

		for (uint32_t e = p->ev_head; e; e = ps->ev_prev[e]) {
			if (!ps->ev_seq[e])
				continue;
			if (*n == cap) {
				cap = cap ? 2 * cap : 64;
				out = xrealloc(out, xmul(cap, sizeof(*out)));
			}
			out[(*n)++] = ps->ev_seq[e];
		}
		q = p->ring ? p->ring : q;
	} while (q != profile_id);
	return out;
}
