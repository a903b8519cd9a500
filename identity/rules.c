/*
 * Identity rules: the interned identifier types of one workspace with their
 * priority, limit and window; the blocked keys; the caps. A graph holds its
 * own copy, and interns types first seen on events into it.
 */
#include "identity/identity_int.h"

#include <assert.h>
#include <stdlib.h>
#include <xxhash.h>

#include "lib/alloc.h"
#include "lib/err.h"

#define DEFAULT_LIMIT 5
#define DEFAULT_MAX_MERGES 100
#define DEFAULT_MAX_IDS 1000

/* In enum identity_type_builtin order; see identity.h for why this order. */
static const struct {
	const char *name;
	uint32_t limit;
} builtin[IDENTITY_TYPE_BUILTIN_COUNT] = {
	{ "user_id", 1 },
	{ "email", DEFAULT_LIMIT },
	{ "phone", DEFAULT_LIMIT },
	{ "ios.id", DEFAULT_LIMIT },
	{ "android.id", DEFAULT_LIMIT },
	{ "ios.idfa", DEFAULT_LIMIT },
	{ "android.idfa", DEFAULT_LIMIT },
	{ "ios.push_token", DEFAULT_LIMIT },
	{ "android.push_token", DEFAULT_LIMIT },
	{ "anonymous_id", DEFAULT_LIMIT },
	{ "group_id", 0 },
};

static uint64_t name_hash(const char *name, size_t len)
{
	return XXH3_64bits(name, len);
}

/* The id of name, or -1. */
static int find_type(const struct identity_rules *r, const char *name, size_t len)
{
	uint32_t mask = r->names_cap - 1;

	for (uint32_t i = (uint32_t)name_hash(name, len) & mask;; i = (i + 1) & mask) {
		uint16_t t = r->names[i];

		if (t == 0)
			return -1;
		if (strcmp(r->types[t - 1].name, name) == 0)
			return t - 1;
	}
}

static void names_insert(struct identity_rules *r, uint16_t id)
{
	const char *name = r->types[id].name;
	uint32_t mask = r->names_cap - 1;
	uint32_t i = (uint32_t)name_hash(name, strlen(name)) & mask;

	while (r->names[i])
		i = (i + 1) & mask;
	r->names[i] = (uint16_t)(id + 1);
}

static uint32_t last_priority(const struct identity_rules *r)
{
	uint32_t p = 0;

	for (uint32_t i = 0; i < r->ntypes; i++)
		if (!r->types[i].account && r->types[i].priority > p)
			p = r->types[i].priority;
	return p;
}

int rules_intern(struct identity_rules *r, const char *name)
{
	size_t len = name ? strnlen(name, IDENTITY_TYPE_NAME_MAX + 1) : 0;
	int found;

	if (len == 0 || len > IDENTITY_TYPE_NAME_MAX)
		return WEFT_EINVAL;
	if ((found = find_type(r, name, len)) >= 0)
		return found;
	if (r->ntypes >= IDENTITY_TYPES_MAX)
		return WEFT_ETOOBIG;
	if (r->ntypes == r->types_cap) {
		r->types_cap = r->types_cap ? 2 * r->types_cap : 16;
		r->types = xrealloc(r->types, xmul(r->types_cap, sizeof(*r->types)));
	}
	if (2 * (r->ntypes + 1) > r->names_cap) {
		free(r->names);
		r->names_cap *= 2;
		r->names = xcalloc(r->names_cap, sizeof(*r->names));
		for (uint32_t i = 0; i < r->ntypes; i++)
			names_insert(r, (uint16_t)i);
	}

	struct type_rule *t = &r->types[r->ntypes];

	memset(t, 0, sizeof(*t));
	memcpy(t->name, name, len);
	t->priority = last_priority(r) + 1;
	t->limit = DEFAULT_LIMIT;
	names_insert(r, (uint16_t)r->ntypes);
	return (int)r->ntypes++;
}

void rules_init_defaults(struct identity_rules *r)
{
	memset(r, 0, sizeof(*r));
	r->names_cap = 32;
	r->names = xcalloc(r->names_cap, sizeof(*r->names));
	r->max_merges = DEFAULT_MAX_MERGES;
	r->max_ids = DEFAULT_MAX_IDS;
	for (int i = 0; i < IDENTITY_TYPE_BUILTIN_COUNT; i++) {
		int id = rules_intern(r, builtin[i].name);

		assert(id == i);
		r->types[id].limit = builtin[i].limit;
	}
	r->types[IDENTITY_TYPE_GROUP_ID].account = true;
	r->types[IDENTITY_TYPE_GROUP_ID].priority = 0;
}

void rules_copy(struct identity_rules *dst, const struct identity_rules *src)
{
	*dst = *src;
	dst->types_cap = src->ntypes > 16 ? src->ntypes : 16;
	dst->types = xmalloc(xmul(dst->types_cap, sizeof(*dst->types)));
	memcpy(dst->types, src->types, src->ntypes * sizeof(*src->types));
	dst->names = xmalloc(xmul(src->names_cap, sizeof(*src->names)));
	memcpy(dst->names, src->names, src->names_cap * sizeof(*src->names));
	if (src->blocked_cap) {
		dst->blocked = xmalloc(xmul(src->blocked_cap, sizeof(*src->blocked)));
		memcpy(dst->blocked, src->blocked, src->blocked_cap * sizeof(*src->blocked));
	}
}

void rules_release(struct identity_rules *r)
{
	free(r->types);
	free(r->names);
	free(r->blocked);
	memset(r, 0, sizeof(*r));
}

size_t rules_bytes(const struct identity_rules *r)
{
	return r->types_cap * sizeof(*r->types) + r->names_cap * sizeof(*r->names) +
	       r->blocked_cap * sizeof(*r->blocked);
}

static uint64_t blocked_hash(uint16_t type, const uint8_t *key)
{
	return mix64(load64(key) ^ type);
}

static void blocked_put(struct blocked_slot *tab, size_t cap, uint16_t type,
			const uint8_t *key)
{
	size_t mask = cap - 1;

	for (size_t i = blocked_hash(type, key) & mask;; i = (i + 1) & mask) {
		struct blocked_slot *s = &tab[i];

		if (!s->used) {
			memcpy(s->key, key, IDENTITY_KEY_BYTES);
			s->type = type;
			s->used = true;
			return;
		}
		if (s->type == type && memcmp(s->key, key, IDENTITY_KEY_BYTES) == 0)
			return;
	}
}

bool rules_is_blocked(const struct identity_rules *r, uint16_t type, const uint8_t *key)
{
	size_t mask = r->blocked_cap - 1;

	if (r->nblocked == 0)
		return false;
	for (size_t i = blocked_hash(type, key) & mask;; i = (i + 1) & mask) {
		const struct blocked_slot *s = &r->blocked[i];

		if (!s->used)
			return false;
		if (s->type == type && memcmp(s->key, key, IDENTITY_KEY_BYTES) == 0)
			return true;
	}
}

/* ---- public ---- */

struct identity_rules *identity_rules_new(void)
{
	struct identity_rules *r = xmalloc(sizeof(*r));

	rules_init_defaults(r);
	return r;
}

void identity_rules_free(struct identity_rules *r)
{
	if (!r)
		return;
	rules_release(r);
	free(r);
}

int identity_rules_type(struct identity_rules *r, const char *name)
{
	return rules_intern(r, name);
}

int identity_rules_set_limit(struct identity_rules *r, const char *type,
			     uint32_t limit, uint32_t window_days)
{
	int t;

	if (limit > IDENTITY_LIMIT_MAX || window_days > IDENTITY_WINDOW_MAX_DAYS)
		return WEFT_EINVAL;
	if ((t = rules_intern(r, type)) < 0)
		return t;
	if (r->types[t].account)
		return WEFT_EINVAL;
	r->types[t].limit = limit;
	r->types[t].window_days = window_days;
	return 0;
}

int identity_rules_set_priority(struct identity_rules *r, const char *type,
				uint32_t priority)
{
	int t;

	if (priority == 0)
		return WEFT_EINVAL;
	if ((t = rules_intern(r, type)) < 0)
		return t;
	if (r->types[t].account)
		return WEFT_EINVAL;
	r->types[t].priority = priority;
	return 0;
}

int identity_rules_set_caps(struct identity_rules *r, uint32_t max_merges,
			    uint32_t max_identifiers)
{
	if (max_identifiers == 0 || max_identifiers > IDENTITY_NODES_MAX)
		return WEFT_EINVAL;
	r->max_merges = max_merges;
	r->max_ids = max_identifiers;
	return 0;
}

int identity_rules_block(struct identity_rules *r, const char *type,
			 const uint8_t key[IDENTITY_KEY_BYTES])
{
	int t = rules_intern(r, type);

	if (t < 0)
		return t;
	if (rules_is_blocked(r, (uint16_t)t, key))
		return 0;
	if (2 * (r->nblocked + 1) > r->blocked_cap) {
		size_t cap = r->blocked_cap ? 2 * r->blocked_cap : 16;
		struct blocked_slot *tab = xcalloc(cap, sizeof(*tab));

		for (size_t i = 0; i < r->blocked_cap; i++)
			if (r->blocked[i].used)
				blocked_put(tab, cap, r->blocked[i].type, r->blocked[i].key);
		free(r->blocked);
		r->blocked = tab;
		r->blocked_cap = cap;
	}
	blocked_put(r->blocked, r->blocked_cap, (uint16_t)t, key);
	r->nblocked++;
	return 0;
}

int identity_graph_set_rules(struct identity_graph *g, const struct identity_rules *r)
{
	struct identity_rules *dst = &g->rules;
	uint32_t fresh = 0;

	/* Types new to the graph are counted first, so that too many changes nothing. */
	for (uint32_t i = 0; i < r->ntypes; i++)
		fresh += find_type(dst, r->types[i].name, strlen(r->types[i].name)) < 0;
	if (dst->ntypes + fresh > IDENTITY_TYPES_MAX)
		return WEFT_ETOOBIG;
	for (uint32_t i = 0; i < r->ntypes; i++) {
		const struct type_rule *t = &r->types[i];
		int id = rules_intern(dst, t->name);

		if (id < 0)
			return id;
		if (dst->types[id].account)
			continue;
		dst->types[id].priority = t->priority;
		dst->types[id].limit = t->limit;
		dst->types[id].window_days = t->window_days;
	}
	dst->max_merges = r->max_merges;
	dst->max_ids = r->max_ids;
	for (size_t i = 0; i < r->blocked_cap; i++)
		if (r->blocked[i].used) {
			int rc = identity_rules_block(dst, r->types[r->blocked[i].type].name,
						      r->blocked[i].key);

			if (rc)
				return rc;
		}
	return 0;
}

int identity_graph_rule(const struct identity_graph *g, uint16_t type, uint32_t *priority,
			uint32_t *limit, uint32_t *window_days)
{
	const struct type_rule *t;

	if (type >= g->rules.ntypes)
		return WEFT_EINVAL;
	t = &g->rules.types[type];
	*priority = t->priority;
	*limit = t->limit;
	*window_days = t->window_days;
	return 0;
}

void identity_graph_caps(const struct identity_graph *g, uint32_t *max_merges,
			 uint32_t *max_identifiers)
{
	*max_merges = g->rules.max_merges;
	*max_identifiers = g->rules.max_ids;
}

int identity_graph_type_find(const struct identity_graph *g, const char *name)
{
	size_t len = name ? strnlen(name, IDENTITY_TYPE_NAME_MAX + 1) : 0;

	if (len == 0 || len > IDENTITY_TYPE_NAME_MAX)
		return WEFT_EINVAL;
	return find_type(&g->rules, name, len) >= 0 ? find_type(&g->rules, name, len) :
						       WEFT_ENOTFOUND;
}

bool identity_type_name_ok(const char *name)
{
	size_t n = strnlen(name, IDENTITY_TYPE_NAME_MAX + 1);

	if (n == 0 || n > IDENTITY_TYPE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return false;
	}
	return true;
}
