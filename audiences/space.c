/*
 * A workspace's audiences and computed traits at run time (space.h).
 *
 * Layout: aggregates, computed traits and audiences are each allocated
 * alone (others point at them) and listed in arrays; audiences are also
 * kept in dependency order (an audience after those it uses), which is
 * the order of every evaluation. Each aggregate keeps its states in an
 * open-addressing table from profile id to a malloc'd blob; each audience
 * its members as a bitmap over profile ids.
 */
#include "audiences/space.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"

#define HOUR_US (3600LL * 1000000LL)
#define DAY_US (24 * HOUR_US)
#define SNAP_MAGIC 0x57464155u	/* "WFAU" */
#define SNAP_VERSION 1u

/* ---- a table of state blobs by profile id ---- */

#define TOMB UINT64_MAX

struct blobtab {
	uint64_t *keys;		/* 0: empty; TOMB: deleted */
	uint8_t **vals;		/* [u32 length][bytes], malloc'd */
	size_t cap, n, used;	/* used: live and deleted */
	size_t blob_bytes;	/* of the live blobs, headers included */
};

static size_t slot_of(uint64_t pid, size_t cap)
{
	return (size_t)((pid * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static uint8_t *blob_new(const void *data, size_t len)
{
	uint8_t *b = xmalloc(4 + len);
	uint32_t l = (uint32_t)len;

	memcpy(b, &l, 4);
	if (len)
		memcpy(b + 4, data, len);
	return b;
}

static uint32_t blob_len(const uint8_t *b)
{
	uint32_t l;

	memcpy(&l, b, 4);
	return l;
}

static long tab_find(const struct blobtab *t, uint64_t pid)
{
	/* 0 and TOMB mark free slots: no profile has them (and 0 is "no profile"). */
	if (!t->cap || !pid || pid == TOMB)
		return -1;
	for (size_t i = slot_of(pid, t->cap);; i = (i + 1) & (t->cap - 1)) {
		if (t->keys[i] == pid)
			return (long)i;
		if (!t->keys[i])
			return -1;
	}
}

static void tab_grow(struct blobtab *t)
{
	struct blobtab nt = { 0 };

	nt.cap = t->cap ? (t->n * 2 >= t->cap ? t->cap * 2 : t->cap) : 64;
	while (t->n * 10 >= nt.cap * 6)
		nt.cap *= 2;
	nt.keys = xcalloc(nt.cap, sizeof(*nt.keys));
	nt.vals = xcalloc(nt.cap, sizeof(*nt.vals));
	for (size_t i = 0; i < t->cap; i++) {
		size_t j;

		if (!t->keys[i] || t->keys[i] == TOMB)
			continue;
		for (j = slot_of(t->keys[i], nt.cap); nt.keys[j]; j = (j + 1) & (nt.cap - 1))
			;
		nt.keys[j] = t->keys[i];
		nt.vals[j] = t->vals[i];
		nt.n++;
	}
	nt.used = nt.n;
	nt.blob_bytes = t->blob_bytes;
	free(t->keys);
	free(t->vals);
	*t = nt;
}

/* Sets pid's blob to len bytes at data (replacing any). */
static void tab_put(struct blobtab *t, uint64_t pid, const void *data, size_t len)
{
	long at = tab_find(t, pid);
	size_t i;

	if (at >= 0) {
		t->blob_bytes += len - blob_len(t->vals[at]);
		free(t->vals[at]);
		t->vals[at] = blob_new(data, len);
		return;
	}
	if ((t->used + 1) * 10 >= t->cap * 7)
		tab_grow(t);
	for (i = slot_of(pid, t->cap); t->keys[i] && t->keys[i] != TOMB; i = (i + 1) & (t->cap - 1))
		;
	if (!t->keys[i])
		t->used++;
	t->keys[i] = pid;
	t->vals[i] = blob_new(data, len);
	t->blob_bytes += 4 + len;
	t->n++;
}

static void tab_del(struct blobtab *t, uint64_t pid)
{
	long at = tab_find(t, pid);

	if (at < 0)
		return;
	t->blob_bytes -= 4 + blob_len(t->vals[at]);
	free(t->vals[at]);
	t->vals[at] = NULL;
	t->keys[at] = TOMB;
	t->n--;
}

static void tab_free(struct blobtab *t)
{
	for (size_t i = 0; i < t->cap; i++)
		if (t->keys[i] && t->keys[i] != TOMB)
			free(t->vals[i]);
	free(t->keys);
	free(t->vals);
	memset(t, 0, sizeof(*t));
}

/* ---- definitions in memory ---- */

struct agg {
	char *sig;			/* what it computes, as text: equal sigs share an aggregate */
	struct audience_computed def;
	char *event, *property;
	struct audience_expr *where;	/* owns def.where_expr */
	uint32_t refs;
	bool pending;
	bool touched;			/* scratch: the current event fed it */
	struct blobtab tab;
};

struct ct {
	int64_t id;
	char *key, *doc;
	struct agg *agg;
};

struct aud {
	int64_t id;			/* 0: a preview's, never recorded or listed */
	char *key, *name, *src;
	struct audience_expr *e;
	void **ref;			/* per node: EVENT an agg, COMPUTED a ct, AUDIENCE an aud */
	struct agg **aggs;		/* every aggregate it reads, directly or through a ct */
	size_t naggs;
	const char **traits;		/* trait names it reads (strings of e) */
	size_t ntraits;
	struct aud **uses;		/* audiences it reads */
	size_t nuses;
	bool hours, days;		/* reads a window in hours, in days */
	bool waiting;			/* to evaluate for every profile at the next settle */
	bool flipped;			/* scratch: its membership changed in this evaluation */
	uint64_t *bits;
	size_t nwords;
	uint64_t size;
	int64_t computed_us;
};

struct audience_space {
	struct agg **aggs;
	size_t naggs;
	struct ct **cts;		/* by key */
	size_t ncts;
	struct aud **auds;		/* by key (a preview's, key "", first) */
	size_t nauds;
	struct aud **order;		/* dependency order */
	struct audience_change *changes;
	size_t nchanges, changes_cap;
	int64_t last_hour, last_day;	/* of the last tick */
	/*
	 * A bit per profile id: every audience was evaluated for it since the
	 * store has had a record of it. A profile's first event evaluates them
	 * all, as an audience may hold a profile with nothing (not
	 * trait('plan') = 'pro'). Not in snapshots: after a restore each
	 * profile's next event does it again.
	 */
	uint64_t *known;
	size_t nknown;			/* words */
};

const char *audience_cause_name(enum audience_cause c)
{
	static const char *const names[] = {
		"event", "merge", "split", "window", "definition", "recompute",
	};

	return (unsigned)c < sizeof(names) / sizeof(names[0]) ? names[c] : "unknown";
}

struct audience_space *audience_space_new(void)
{
	return xcalloc(1, sizeof(struct audience_space));
}

static void agg_unref(struct audience_space *s, struct agg *a)
{
	if (!a || --a->refs)
		return;
	for (size_t i = 0; i < s->naggs; i++)
		if (s->aggs[i] == a) {
			memmove(&s->aggs[i], &s->aggs[i + 1], (s->naggs - i - 1) * sizeof(*s->aggs));
			s->naggs--;
			break;
		}
	tab_free(&a->tab);
	audience_expr_free(a->where);
	free(a->sig);
	free(a->event);
	free(a->property);
	free(a);
}

static void aud_release_refs(struct audience_space *s, struct aud *a)
{
	for (uint32_t i = 0; a->e && i < audience_expr_nodes(a->e); i++)
		if (audience_expr_node(a->e, i)->kind == AUDIENCE_EVENT)
			agg_unref(s, a->ref[i]);
	free(a->ref);
	free(a->aggs);
	free(a->traits);
	free(a->uses);
	audience_expr_free(a->e);
	a->ref = NULL;
	a->aggs = NULL;
	a->traits = NULL;
	a->uses = NULL;
	a->e = NULL;
	a->naggs = a->ntraits = a->nuses = 0;
}

static void aud_free(struct audience_space *s, struct aud *a)
{
	aud_release_refs(s, a);
	free(a->key);
	free(a->name);
	free(a->src);
	free(a->bits);
	free(a);
}

void audience_space_free(struct audience_space *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nauds; i++)
		aud_free(s, s->auds[i]);
	for (size_t i = 0; i < s->ncts; i++) {
		agg_unref(s, s->cts[i]->agg);
		free(s->cts[i]->key);
		free(s->cts[i]->doc);
		free(s->cts[i]);
	}
	free(s->auds);
	free(s->cts);
	free(s->aggs);
	free(s->order);
	free(s->changes);
	free(s->known);
	free(s);
}

bool audience_key_ok(const char *key)
{
	size_t n = key ? strlen(key) : 0;

	if (!n || n > AUDIENCE_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = key[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
			return false;
	}
	return true;
}

/* Appends name as a quoted string of the language. */
static void add_quoted(struct buf *b, const char *s)
{
	buf_addc(b, '\'');
	for (; *s; s++) {
		if (*s == '\'' || *s == '\\')
			buf_addc(b, '\\');
		buf_addc(b, *s);
	}
	buf_addc(b, '\'');
}

/*
 * Parses event(E)[.where(W)][.within(window)].exists(): the form in which
 * an aggregate's where() and a computed trait's window are checked and
 * kept. *prefix gets the characters before W (error columns count
 * characters, and E may hold multi-byte ones), for error positions.
 */
static int parse_event_form(const char *event, const char *where, const char *window,
			    struct audience_expr **out, size_t *prefix, struct audience_error *err)
{
	struct buf b = BUF_INIT;
	int rc;

	buf_adds(&b, "event(");
	add_quoted(&b, event);
	buf_addc(&b, ')');
	*prefix = 7;	/* ".where(" */
	for (size_t i = 0; i < b.len; i++)
		*prefix += ((unsigned char)b.data[i] & 0xC0) != 0x80;
	if (where) {
		buf_adds(&b, ".where(");
		buf_adds(&b, where);
		buf_addc(&b, ')');
	}
	if (window) {
		buf_adds(&b, ".within(");
		buf_adds(&b, window);
		buf_addc(&b, ')');
	}
	buf_adds(&b, ".exists()");
	rc = audience_parse(b.data, b.len, out, err);
	buf_release(&b);
	return rc;
}

/* The event node of a parse_event_form() expression. */
static const struct audience_node *event_node(const struct audience_expr *e)
{
	return audience_expr_node(e, audience_expr_root(e));
}

static struct agg *agg_get(struct audience_space *s, enum audience_computed_kind kind,
			   const char *event, const char *property, const struct audience_expr *src,
			   uint32_t where_node, uint32_t window, enum audience_unit unit,
			   bool between, int64_t from_us, int64_t to_us)
{
	struct buf sig = BUF_INIT, w = BUF_INIT;
	struct audience_expr *we = NULL;
	struct audience_error err;
	struct agg *a;
	size_t prefix;

	if (src && where_node != AUDIENCE_NONE)
		audience_expr_print_node(src, where_node, &w);
	buf_printf(&sig, "%d|%u|%d|%d|%lld|%lld|%zu:%s|%zu:%s|%s", (int)kind, window, (int)unit,
		 (int)between, (long long)from_us, (long long)to_us, strlen(event), event,
		 property ? strlen(property) : 0, property ? property : "", w.len ? w.data : "");
	for (size_t i = 0; i < s->naggs; i++)
		if (strcmp(s->aggs[i]->sig, sig.data) == 0) {
			s->aggs[i]->refs++;
			buf_release(&sig);
			buf_release(&w);
			return s->aggs[i];
		}
	a = xcalloc(1, sizeof(*a));
	a->sig = xstrdup(sig.data);
	a->event = xstrdup(event);
	a->property = property ? xstrdup(property) : NULL;
	if (w.len && parse_event_form(event, w.data, NULL, &we, &prefix, &err) == 0) {
		a->where = we;
		a->def.where_expr = we;
		a->def.where = event_node(we)->kid;
	}
	a->def.kind = kind;
	a->def.event = a->event;
	a->def.property = a->property;
	a->def.window = window;
	a->def.unit = unit;
	a->def.between = between;
	a->def.from_us = from_us;
	a->def.to_us = to_us;
	a->refs = 1;
	a->pending = true;
	s->aggs = xrealloc(s->aggs, xmul(s->naggs + 1, sizeof(*s->aggs)));
	s->aggs[s->naggs++] = a;
	buf_release(&sig);
	buf_release(&w);
	return a;
}

/* ---- computed-trait documents ---- */

static const char *const kind_names[] = {
	[AUDIENCE_COMPUTED_COUNT] = "count", [AUDIENCE_COMPUTED_SUM] = "sum",
	[AUDIENCE_COMPUTED_AVG] = "avg", [AUDIENCE_COMPUTED_MIN] = "min",
	[AUDIENCE_COMPUTED_MAX] = "max", [AUDIENCE_COMPUTED_MOST_FREQUENT] = "most_frequent",
	[AUDIENCE_COMPUTED_FIRST] = "first", [AUDIENCE_COMPUTED_LAST] = "last",
	[AUDIENCE_COMPUTED_UNIQUE_LIST] = "unique_list",
	[AUDIENCE_COMPUTED_UNIQUE_COUNT] = "unique_count",
};

static int kind_of(const char *name)
{
	for (size_t i = 0; name && i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
		if (strcmp(name, kind_names[i]) == 0)
			return (int)i;
	return -1;
}

/* A string member, optional or not: 0, or WEFT_EINVAL with err set. */
static int str_member(const json_t *doc, const char *name, bool required, size_t max,
		      const char **out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(doc, name);

	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required) {
			snprintf(err, errlen, "\"%s\" is required", name);
			return WEFT_EINVAL;
		}
		return 0;
	}
	if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(err, errlen, "\"%s\" must be a non-empty string of at most %zu bytes",
			 name, max);
		return WEFT_EINVAL;
	}
	*out = json_string_value(v);
	return 0;
}

/*
 * Rewrites a parse error of the event form into one about member name,
 * or about the event when it lies in the event's name, before the where.
 */
static void form_error(const struct audience_error *pe, size_t prefix, const char *name,
		       char *err, size_t errlen)
{
	const char *msg = strstr(pe->message, ": ");

	msg = msg ? msg + 2 : pe->message;
	if (pe->line == 1 && pe->column > prefix)
		snprintf(err, errlen, "\"%s\": column %zu: %s", name,
			 (size_t)pe->column - prefix, msg);
	else if (pe->line == 1)
		snprintf(err, errlen, "\"event\": %s", msg);
	else
		snprintf(err, errlen, "\"%s\": %s", name, msg);
}

/*
 * True when e is exactly the form parse_event_form() was asked for: one
 * event ending in exists(), with a where only if one was given and a
 * within() only if a window was, so that nothing else rode in through a
 * member's text (a where such as "property('a') = 1).within(3 days").
 */
static bool form_is(const struct audience_expr *e, bool where, bool window)
{
	const struct audience_node *n = event_node(e);

	return n->kind == AUDIENCE_EVENT && n->agg == AUDIENCE_AGG_NONE &&
	       (n->kid != AUDIENCE_NONE) == where &&
	       n->window == (window ? AUDIENCE_WINDOW_WITHIN : AUDIENCE_WINDOW_ALL);
}

int audience_ct_validate(const json_t *doc, char **canon, char *err, size_t errlen)
{
	const char *key, *name, *kind, *event, *property, *where, *window;
	static const char *const members[] = { "key", "name", "kind", "event", "property",
					       "where", "window", NULL };
	struct audience_expr *e = NULL;
	struct audience_error pe;
	const char *mk;
	json_t *out, *v;
	size_t prefix;
	int k, rc;

	*canon = NULL;
	if (!json_is_object(doc)) {
		snprintf(err, errlen, "the body must be a JSON object");
		return WEFT_EINVAL;
	}
	json_object_foreach((json_t *)doc, mk, v) {
		bool known = false;

		for (size_t i = 0; members[i]; i++)
			known |= strcmp(members[i], mk) == 0;
		if (!known) {
			snprintf(err, errlen, "unknown member \"%.64s\"", mk);
			return WEFT_EINVAL;
		}
	}
	if ((rc = str_member(doc, "key", true, AUDIENCE_KEY_MAX, &key, err, errlen)) ||
	    (rc = str_member(doc, "name", false, AUDIENCE_NAME_MAX, &name, err, errlen)) ||
	    (rc = str_member(doc, "kind", true, 32, &kind, err, errlen)) ||
	    (rc = str_member(doc, "event", true, AUDIENCE_MAX_NAME, &event, err, errlen)) ||
	    (rc = str_member(doc, "property", false, AUDIENCE_MAX_NAME, &property, err, errlen)) ||
	    (rc = str_member(doc, "where", false, AUDIENCE_MAX_SOURCE, &where, err, errlen)) ||
	    (rc = str_member(doc, "window", false, 64, &window, err, errlen)))
		return rc;
	if (!audience_key_ok(key)) {
		snprintf(err, errlen, "\"key\" must be 1 to %d letters, digits, '_', '.' or '-', "
			 "starting with a letter or digit", AUDIENCE_KEY_MAX);
		return WEFT_EINVAL;
	}
	if ((k = kind_of(kind)) < 0) {
		snprintf(err, errlen, "\"kind\" must be one of count, sum, avg, min, max, "
			 "most_frequent, first, last, unique_list, unique_count");
		return WEFT_EINVAL;
	}
	if (k != AUDIENCE_COMPUTED_COUNT && !property) {
		snprintf(err, errlen, "\"property\" is required for kind %s", kind);
		return WEFT_EINVAL;
	}
	if (k == AUDIENCE_COMPUTED_COUNT && property) {
		snprintf(err, errlen, "\"property\" is not used by kind count: leave it out");
		return WEFT_EINVAL;
	}
	rc = parse_event_form(event, where, NULL, &e, &prefix, &pe);
	if (rc) {
		form_error(&pe, prefix, "where", err, errlen);
		return rc;
	}
	if (!form_is(e, where != NULL, false)) {
		snprintf(err, errlen, "\"where\" must be one condition on properties, "
			 "such as \"property('total') > 100\"");
		audience_expr_free(e);
		return WEFT_EINVAL;
	}
	out = json_pack("{ss ss ss ss}", "key", key, "name", name ? name : key, "kind", kind,
			"event", event);
	json_object_set_new(out, "property", property ? json_string(property) : json_null());
	if (event_node(e)->kid != AUDIENCE_NONE) {
		struct buf w = BUF_INIT;

		audience_expr_print_node(e, event_node(e)->kid, &w);
		json_object_set_new(out, "where", json_stringn(w.data, w.len));
		buf_release(&w);
	} else {
		json_object_set_new(out, "where", json_null());
	}
	audience_expr_free(e);
	e = NULL;
	if (window) {
		rc = parse_event_form(event, NULL, window, &e, &prefix, &pe);
		if (!rc && !form_is(e, false, true)) {
			audience_expr_free(e);
			rc = WEFT_EINVAL;
		}
		if (rc) {
			snprintf(err, errlen, "\"window\" must read like \"30 days\" or \"12 hours\" "
				 "(1 to %d days)", AUDIENCE_MAX_WITHIN_DAYS);
			json_decref(out);
			return rc;
		}
		{
			const struct audience_node *n = event_node(e);
			char w[64];

			/* As the language prints a window: "1 day", "2 days". */
			snprintf(w, sizeof(w), "%u %s%s", n->within,
				 n->unit == AUDIENCE_UNIT_DAYS ? "day" : "hour",
				 n->within == 1 ? "" : "s");
			json_object_set_new(out, "window", json_string(w));
		}
		audience_expr_free(e);
	} else {
		json_object_set_new(out, "window", json_null());
	}
	*canon = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(out);
	return 0;
}

/* The aggregate a canonical computed-trait document reads (NULL: not one). */
static struct agg *ct_agg(struct audience_space *s, const json_t *doc)
{
	const char *event = json_string_value(json_object_get(doc, "event"));
	const char *where = json_string_value(json_object_get(doc, "where"));
	const char *window = json_string_value(json_object_get(doc, "window"));
	int k = kind_of(json_string_value(json_object_get(doc, "kind")));
	struct audience_expr *e = NULL;
	struct audience_error pe;
	const struct audience_node *n;
	struct agg *a;
	size_t prefix;

	if (!event || k < 0 || parse_event_form(event, where, window, &e, &prefix, &pe))
		return NULL;
	n = event_node(e);
	a = agg_get(s, (enum audience_computed_kind)k, event,
		    json_string_value(json_object_get(doc, "property")), e, n->kid,
		    n->window == AUDIENCE_WINDOW_WITHIN ? n->within : 0, n->unit, false, 0, 0);
	audience_expr_free(e);
	return a;
}

/* ---- finding things ---- */

static size_t first_listed(const struct audience_space *s);

static long find_ct(const struct audience_space *s, const char *key)
{
	for (size_t i = 0; i < s->ncts; i++)
		if (strcmp(s->cts[i]->key, key) == 0)
			return (long)i;
	return -1;
}

static long find_aud(const struct audience_space *s, const char *key)
{
	for (size_t i = 0; i < s->nauds; i++)
		if (strcmp(s->auds[i]->key, key) == 0)
			return (long)i;
	return -1;
}

long audience_space_audience_find(const struct audience_space *s, const char *key)
{
	long i = key && *key ? find_aud(s, key) : -1;

	return i < 0 ? -1 : i - (long)first_listed(s);
}

long audience_space_ct_find(const struct audience_space *s, const char *key)
{
	return key ? find_ct(s, key) : -1;
}

/* True when audience a reads audience target, directly or not. */
static bool reaches(const struct aud *a, const struct aud *target, int depth)
{
	if (a == target)
		return true;
	if (depth > AUDIENCE_SPACE_MAX_DEFS)
		return true;
	for (size_t i = 0; i < a->nuses; i++)
		if (reaches(a->uses[i], target, depth + 1))
			return true;
	return false;
}

/* Recomputes s->order: each audience after those it uses (definitions never make a cycle). */
static void reorder(struct audience_space *s)
{
	size_t n = 0;
	bool *done = xcalloc(s->nauds + 1, sizeof(*done));

	free(s->order);
	s->order = xcalloc(s->nauds + 1, sizeof(*s->order));
	while (n < s->nauds) {
		size_t before = n;

		for (size_t i = 0; i < s->nauds; i++) {
			bool ready = !done[i];

			for (size_t u = 0; ready && u < s->auds[i]->nuses; u++) {
				long j = find_aud(s, s->auds[i]->uses[u]->key);

				ready = j >= 0 && done[j];
			}
			if (ready) {
				done[i] = true;
				s->order[n++] = s->auds[i];
			}
		}
		if (n == before)
			break;	/* not reached: defining refuses cycles */
	}
	free(done);
}

static void push_unique(void ***arr, size_t *n, void *p)
{
	for (size_t i = 0; i < *n; i++)
		if ((*arr)[i] == p)
			return;
	*arr = xrealloc(*arr, xmul(*n + 1, sizeof(**arr)));
	(*arr)[(*n)++] = p;
}

static enum audience_computed_kind agg_kind(enum audience_agg agg)
{
	switch (agg) {
	case AUDIENCE_AGG_SUM: return AUDIENCE_COMPUTED_SUM;
	case AUDIENCE_AGG_AVG: return AUDIENCE_COMPUTED_AVG;
	case AUDIENCE_AGG_MIN: return AUDIENCE_COMPUTED_MIN;
	case AUDIENCE_AGG_MAX: return AUDIENCE_COMPUTED_MAX;
	default: return AUDIENCE_COMPUTED_COUNT;
	}
}

static void note_window(struct aud *a, const struct agg *g)
{
	if (g->def.window)
		*(g->def.unit == AUDIENCE_UNIT_HOURS ? &a->hours : &a->days) = true;
}

/*
 * Collects a's aggregates and windows again from its nodes, after a
 * computed trait it reads changed aggregate: the old one may still be
 * read by one of a's event conditions.
 */
static void aud_collect_aggs(struct aud *a)
{
	a->naggs = 0;
	a->hours = a->days = false;
	for (uint32_t i = 0; i < audience_expr_nodes(a->e); i++) {
		enum audience_kind kind = audience_expr_node(a->e, i)->kind;
		struct agg *g = kind == AUDIENCE_EVENT ? a->ref[i] :
				kind == AUDIENCE_COMPUTED ? ((struct ct *)a->ref[i])->agg : NULL;

		if (g) {
			push_unique((void ***)&a->aggs, &a->naggs, g);
			note_window(a, g);
		}
	}
}

/*
 * Resolves e's references for audience a (key, for self-reference): fills
 * a->ref and the dependency lists, taking aggregate references. 0, or
 * WEFT_EINVAL with err naming what is missing or circular (nothing kept).
 */
static int resolve(struct audience_space *s, struct aud *a, struct audience_expr *e,
		   const char *key, char *err, size_t errlen)
{
	uint32_t nn = audience_expr_nodes(e);

	a->e = e;
	a->ref = xcalloc(nn, sizeof(*a->ref));
	a->hours = a->days = false;
	for (uint32_t i = 0; i < nn; i++) {
		const struct audience_node *n = audience_expr_node(e, i);
		const char *name = n->name == AUDIENCE_NONE ? "" : audience_expr_str(e, n->name, NULL);
		long j;

		switch (n->kind) {
		case AUDIENCE_TRAIT:
			push_unique((void ***)&a->traits, &a->ntraits, (void *)name);
			break;
		case AUDIENCE_COMPUTED:
			if ((j = find_ct(s, name)) < 0) {
				snprintf(err, errlen, "line %u, column %u: no computed trait '%s' "
					 "exists", n->line, n->column, name);
				goto fail;
			}
			a->ref[i] = s->cts[j];
			push_unique((void ***)&a->aggs, &a->naggs, s->cts[j]->agg);
			note_window(a, s->cts[j]->agg);
			break;
		case AUDIENCE_AUDIENCE:
			if ((j = find_aud(s, name)) < 0 || !*name) {
				snprintf(err, errlen, "line %u, column %u: no audience '%s' exists",
					 n->line, n->column, name);
				goto fail;
			}
			if (strcmp(name, key) == 0 || reaches(s->auds[j], a, 0) ||
			    (*key && find_aud(s, key) >= 0 &&
			     reaches(s->auds[j], s->auds[find_aud(s, key)], 0))) {
				snprintf(err, errlen, "line %u, column %u: audience '%s' uses this "
					 "audience: a definition may not go round in a circle",
					 n->line, n->column, name);
				goto fail;
			}
			a->ref[i] = s->auds[j];
			push_unique((void ***)&a->uses, &a->nuses, s->auds[j]);
			break;
		case AUDIENCE_EVENT: {
			struct agg *g = agg_get(s, agg_kind(n->agg), name,
						n->agg_prop != AUDIENCE_NONE ?
						audience_expr_str(e, n->agg_prop, NULL) : NULL,
						e, n->kid,
						n->window == AUDIENCE_WINDOW_WITHIN ? n->within : 0,
						n->unit, n->window == AUDIENCE_WINDOW_BETWEEN,
						n->from_us, n->to_us);

			a->ref[i] = g;
			push_unique((void ***)&a->aggs, &a->naggs, g);
			note_window(a, g);
			break;
		}
		default:
			break;
		}
	}
	return 0;
fail:
	aud_release_refs(s, a);
	return WEFT_EINVAL;
}

int audience_space_check_audience(struct audience_space *s, const char *key,
				  const char *src, char *err, size_t errlen)
{
	struct audience_expr *e = NULL;
	struct audience_error pe;
	struct aud a = { 0 };
	int rc;

	rc = audience_parse(src, strlen(src), &e, &pe);
	if (rc) {
		snprintf(err, errlen, "%s", pe.message);
		return rc;
	}
	/* resolve() may add aggregates; release them again, leaving s as it was. */
	rc = resolve(s, &a, e, key, err, errlen);
	if (!rc)
		aud_release_refs(s, &a);
	return rc;
}

static void aud_bits_reserve(struct aud *a, uint64_t pid)
{
	size_t need = (size_t)(pid / 64) + 1;

	if (need <= a->nwords)
		return;
	need = need < 2 * a->nwords ? 2 * a->nwords : need;
	a->bits = xrealloc(a->bits, xmul(need, sizeof(*a->bits)));
	memset(a->bits + a->nwords, 0, (need - a->nwords) * sizeof(*a->bits));
	a->nwords = need;
}

static bool bit_get(const struct aud *a, uint64_t pid)
{
	return pid / 64 < a->nwords && (a->bits[pid / 64] >> (pid % 64) & 1);
}

static void bit_set(struct aud *a, uint64_t pid, bool on)
{
	aud_bits_reserve(a, pid);
	if (on)
		a->bits[pid / 64] |= 1ull << (pid % 64);
	else
		a->bits[pid / 64] &= ~(1ull << (pid % 64));
}

int audience_space_define_audience(struct audience_space *s, int64_t id, const char *key,
				   const char *name, const char *src, char *err, size_t errlen)
{
	struct audience_expr *e = NULL;
	struct audience_error pe;
	struct aud *a, fresh = { 0 };
	struct buf canon = BUF_INIT;
	long at = find_aud(s, key);
	int rc;

	if (at < 0 && s->nauds >= AUDIENCE_SPACE_MAX_DEFS) {
		snprintf(err, errlen, "a workspace has at most %d audiences", AUDIENCE_SPACE_MAX_DEFS);
		return WEFT_ETOOBIG;
	}
	rc = audience_parse(src, strlen(src), &e, &pe);
	if (rc) {
		snprintf(err, errlen, "%s", pe.message);
		return rc;
	}
	rc = resolve(s, &fresh, e, key, err, errlen);
	if (rc)
		return rc;
	audience_expr_print(e, &canon);
	if (at >= 0) {
		a = s->auds[at];
		aud_release_refs(s, a);
		free(a->name);
		free(a->src);
	} else {
		size_t i = 0;

		a = xcalloc(1, sizeof(*a));
		a->key = xstrdup(key);
		while (i < s->nauds && strcmp(s->auds[i]->key, key) < 0)
			i++;
		s->auds = xrealloc(s->auds, xmul(s->nauds + 1, sizeof(*s->auds)));
		memmove(&s->auds[i + 1], &s->auds[i], (s->nauds - i) * sizeof(*s->auds));
		s->auds[i] = a;
		s->nauds++;
	}
	a->id = id;
	a->name = xstrdup(name && *name ? name : key);
	a->src = xstrdup(canon.data);
	a->e = fresh.e;
	a->ref = fresh.ref;
	a->aggs = fresh.aggs;
	a->naggs = fresh.naggs;
	a->traits = fresh.traits;
	a->ntraits = fresh.ntraits;
	a->uses = fresh.uses;
	a->nuses = fresh.nuses;
	a->hours = fresh.hours;
	a->days = fresh.days;
	a->waiting = true;
	buf_release(&canon);
	reorder(s);
	return 0;
}

int audience_space_define_ct(struct audience_space *s, int64_t id, const char *doc_text,
			     char *err, size_t errlen)
{
	json_t *doc = json_loads(doc_text, 0, NULL);
	const char *key = json_string_value(json_object_get(doc, "key"));
	struct agg *g;
	struct ct *c;
	long at;

	if (!key || !(g = ct_agg(s, doc))) {
		snprintf(err, errlen, "not a computed trait definition");
		json_decref(doc);
		return WEFT_EINVAL;
	}
	at = find_ct(s, key);
	if (at < 0 && s->ncts >= AUDIENCE_SPACE_MAX_DEFS) {
		agg_unref(s, g);
		json_decref(doc);
		snprintf(err, errlen, "a workspace has at most %d computed traits",
			 AUDIENCE_SPACE_MAX_DEFS);
		return WEFT_ETOOBIG;
	}
	if (at >= 0) {
		struct agg *old;

		c = s->cts[at];
		old = c->agg;
		free(c->doc);
		c->agg = g;
		/* Audiences reading it now read g: collect their lists again. */
		for (size_t i = 0; i < s->nauds; i++) {
			struct aud *a = s->auds[i];
			bool uses = false;

			for (uint32_t n = 0; n < audience_expr_nodes(a->e); n++)
				if (a->ref[n] == c)
					uses = true;
			if (!uses)
				continue;
			aud_collect_aggs(a);
			a->waiting = true;
		}
		agg_unref(s, old);
	} else {
		size_t i = 0;

		c = xcalloc(1, sizeof(*c));
		c->key = xstrdup(key);
		while (i < s->ncts && strcmp(s->cts[i]->key, key) < 0)
			i++;
		s->cts = xrealloc(s->cts, xmul(s->ncts + 1, sizeof(*s->cts)));
		memmove(&s->cts[i + 1], &s->cts[i], (s->ncts - i) * sizeof(*s->cts));
		s->cts[i] = c;
		s->ncts++;
	}
	c->id = id;
	c->doc = xstrdup(doc_text);
	c->agg = g;
	json_decref(doc);
	return 0;
}

int audience_space_remove_ct(struct audience_space *s, const char *key, char *err, size_t errlen)
{
	long at = find_ct(s, key);
	struct ct *c;

	if (at < 0)
		return WEFT_ENOTFOUND;
	c = s->cts[at];
	for (size_t i = 0; i < s->nauds; i++)
		for (uint32_t n = 0; n < audience_expr_nodes(s->auds[i]->e); n++)
			if (s->auds[i]->ref[n] == c) {
				snprintf(err, errlen, "audience '%s' uses computed trait '%s'",
					 s->auds[i]->key, key);
				return WEFT_ECONFLICT;
			}
	agg_unref(s, c->agg);
	free(c->key);
	free(c->doc);
	free(c);
	memmove(&s->cts[at], &s->cts[at + 1], (s->ncts - (size_t)at - 1) * sizeof(*s->cts));
	s->ncts--;
	return 0;
}

int audience_space_remove_audience(struct audience_space *s, const char *key, char *err,
				   size_t errlen)
{
	long at = find_aud(s, key);
	struct aud *a;

	if (at < 0)
		return WEFT_ENOTFOUND;
	a = s->auds[at];
	for (size_t i = 0; i < s->nauds; i++)
		for (size_t u = 0; u < s->auds[i]->nuses; u++)
			if (s->auds[i]->uses[u] == a) {
				snprintf(err, errlen, "audience '%s' uses audience '%s'",
					 s->auds[i]->key, key);
				return WEFT_ECONFLICT;
			}
	memmove(&s->auds[at], &s->auds[at + 1], (s->nauds - (size_t)at - 1) * sizeof(*s->auds));
	s->nauds--;
	aud_free(s, a);
	reorder(s);
	return 0;
}

/* ---- evaluation ---- */

struct ectx {
	const struct audience_space *s;
	const struct profile_store *ps;
	uint64_t pid;
	int64_t now;
	struct profile_view v;
	bool have_view;
};

static json_t *agg_value(const struct agg *g, uint64_t pid, int64_t now)
{
	struct buf st = BUF_INIT;
	long at = tab_find(&g->tab, pid);
	json_t *v = NULL;

	if (at >= 0)
		buf_add(&st, g->tab.vals[at] + 4, blob_len(g->tab.vals[at]));
	if (audience_computed_value(&g->def, &st, now, &v))
		v = json_null();
	buf_release(&st);
	return v;
}

static int trait_name_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct profile_trait *)elem)->name);
}

static json_t *trait_value(struct ectx *c, const char *name)
{
	const struct profile_trait *t;

	if (!c->have_view) {
		c->have_view = true;
		if (profile_store_view_traits(c->ps, c->pid, &c->v))
			memset(&c->v, 0, sizeof(c->v));
	}
	t = bsearch(name, c->v.traits, c->v.ntraits, sizeof(*t), trait_name_cmp);
	return t ? json_loadb(t->json, t->json_len, JSON_DECODE_ANY, NULL) : NULL;
}

static bool eval_node(struct ectx *c, const struct aud *a, uint32_t id)
{
	const struct audience_node *n = audience_expr_node(a->e, id);
	json_t *v;
	bool r;

	switch (n->kind) {
	case AUDIENCE_OR:
		for (uint32_t k = n->kid; k != AUDIENCE_NONE; k = audience_expr_node(a->e, k)->next)
			if (eval_node(c, a, k))
				return true;
		return false;
	case AUDIENCE_AND:
		for (uint32_t k = n->kid; k != AUDIENCE_NONE; k = audience_expr_node(a->e, k)->next)
			if (!eval_node(c, a, k))
				return false;
		return true;
	case AUDIENCE_NOT:
		return !eval_node(c, a, n->kid);
	case AUDIENCE_TRAIT:
		v = trait_value(c, audience_expr_str(a->e, n->name, NULL));
		r = audience_value_test(a->e, id, v);
		json_decref(v);
		return r;
	case AUDIENCE_COMPUTED:
		v = agg_value(((const struct ct *)a->ref[id])->agg, c->pid, c->now);
		r = audience_value_test(a->e, id, v);
		json_decref(v);
		return r;
	case AUDIENCE_EVENT:
		v = agg_value(a->ref[id], c->pid, c->now);
		if (n->agg == AUDIENCE_AGG_NONE)
			r = json_integer_value(v) > 0;
		else
			r = audience_value_test(a->e, id, v);
		json_decref(v);
		return r;
	case AUDIENCE_AUDIENCE:
		return bit_get(a->ref[id], c->pid);
	default:
		return false;
	}
}

static void record(struct audience_space *s, const struct aud *a, uint64_t pid, bool entered,
		   int64_t now, int64_t seq, enum audience_cause cause)
{
	if (!a->id)
		return;
	if (s->nchanges == s->changes_cap) {
		s->changes_cap = s->changes_cap ? 2 * s->changes_cap : 256;
		s->changes = xrealloc(s->changes, xmul(s->changes_cap, sizeof(*s->changes)));
	}
	s->changes[s->nchanges++] = (struct audience_change){
		.audience_id = a->id, .profile_id = pid, .at_us = now, .seq = seq,
		.entered = entered, .cause = cause,
	};
}

enum pick { PICK_ALL, PICK_TOUCHED, PICK_WAITING, PICK_HOURS, PICK_DAYS };

static bool picked(const struct aud *a, enum pick p, const json_t *traits)
{
	for (size_t u = 0; u < a->nuses; u++)
		if (a->uses[u]->flipped)
			return true;
	switch (p) {
	case PICK_ALL:
		return true;
	case PICK_WAITING:
		return a->waiting;
	case PICK_HOURS:
		return a->hours;
	case PICK_DAYS:
		return a->days;
	case PICK_TOUCHED:
		for (size_t k = 0; k < a->naggs; k++)
			if (a->aggs[k]->touched)
				return true;
		for (size_t k = 0; traits && k < a->ntraits; k++)
			if (json_object_get(traits, a->traits[k]))
				return true;
		return false;
	}
	return false;
}

static bool known_get(const struct audience_space *s, uint64_t pid)
{
	return pid / 64 < s->nknown && (s->known[pid / 64] >> (pid % 64) & 1);
}

static void known_set(struct audience_space *s, uint64_t pid, bool on)
{
	size_t need = (size_t)(pid / 64) + 1;

	if (!on && need > s->nknown)
		return;
	if (need > s->nknown) {
		need = need < 2 * s->nknown ? 2 * s->nknown : need;
		s->known = xrealloc(s->known, xmul(need, sizeof(*s->known)));
		memset(s->known + s->nknown, 0, (need - s->nknown) * sizeof(*s->known));
		s->nknown = need;
	}
	if (on)
		s->known[pid / 64] |= 1ull << (pid % 64);
	else
		s->known[pid / 64] &= ~(1ull << (pid % 64));
}

/* Evaluates the picked audiences for pid, in dependency order, recording what changed. */
static void eval_profile(struct audience_space *s, const struct profile_store *ps, uint64_t pid,
			 int64_t now, int64_t seq, enum audience_cause cause, enum pick p,
			 const json_t *traits)
{
	struct ectx c = { .s = s, .ps = ps, .pid = pid, .now = now };
	/* A profile the store has no record of (forgotten, say) is in no audience. */
	bool exists = profile_store_has(ps, pid);

	for (size_t i = 0; i < s->nauds; i++) {
		struct aud *a = s->order[i];
		bool in;

		a->flipped = false;
		if (!picked(a, p, traits) || (a->waiting && p != PICK_WAITING))
			continue;
		in = exists && eval_node(&c, a, audience_expr_root(a->e));
		if (in == bit_get(a, pid))
			continue;
		bit_set(a, pid, in);
		a->size += in ? 1 : (uint64_t)-1;
		a->flipped = true;
		record(s, a, pid, in, now, seq, cause);
	}
	for (size_t i = 0; i < s->nauds; i++)
		s->order[i]->flipped = false;
	if (p == PICK_ALL || !exists)
		known_set(s, pid, exists);
	if (c.have_view)
		profile_view_release(&c.v);
}

bool audience_space_pending(const struct audience_space *s)
{
	for (size_t i = 0; i < s->naggs; i++)
		if (s->aggs[i]->pending)
			return true;
	return false;
}

bool audience_space_wants(const struct audience_space *s, const char *name, bool pending)
{
	for (size_t i = 0; name && i < s->naggs; i++)
		if (s->aggs[i]->pending == pending && strcmp(s->aggs[i]->event, name) == 0)
			return true;
	return false;
}

static void agg_apply(struct agg *g, uint64_t pid, int64_t ts, const char *name,
		      const json_t *props, int64_t now)
{
	struct buf st = BUF_INIT;
	long at = tab_find(&g->tab, pid);

	if (at >= 0)
		buf_add(&st, g->tab.vals[at] + 4, blob_len(g->tab.vals[at]));
	if (audience_computed_apply(&g->def, &st, now, ts, name, props) == 0) {
		if (st.len)
			tab_put(&g->tab, pid, st.data, st.len);
		else
			tab_del(&g->tab, pid);
	}
	buf_release(&st);
}

void audience_space_backfill(struct audience_space *s, uint64_t pid, int64_t ts_us,
			     const char *name, const json_t *properties, int64_t now_us)
{
	for (size_t i = 0; pid && name && i < s->naggs; i++)
		if (s->aggs[i]->pending && strcmp(s->aggs[i]->event, name) == 0)
			agg_apply(s->aggs[i], pid, ts_us, name, properties, now_us);
}

void audience_space_settle(struct audience_space *s, const struct profile_store *ps,
			   int64_t now_us, enum audience_cause cause)
{
	bool any = false;

	for (size_t i = 0; i < s->naggs; i++)
		if (s->aggs[i]->pending) {
			s->aggs[i]->pending = false;
			for (size_t k = 0; k < s->nauds; k++)
				for (size_t j = 0; j < s->auds[k]->naggs; j++)
					if (s->auds[k]->aggs[j] == s->aggs[i])
						s->auds[k]->waiting = true;
		}
	for (size_t i = 0; i < s->nauds; i++)
		any |= s->auds[i]->waiting;
	if (!any)
		return;
	/* A member the store no longer has a record of is evaluated too (and leaves). */
	for (size_t i = 0; i < s->nauds; i++) {
		struct aud *a = s->auds[i];

		if (!a->waiting)
			continue;
		for (size_t w = 0; w < a->nwords; w++)
			for (uint64_t bits = a->bits[w]; bits; bits &= bits - 1) {
				uint64_t pid = w * 64 + (uint64_t)__builtin_ctzll(bits);

				if (!profile_store_has(ps, pid))
					eval_profile(s, ps, pid, now_us, 0, cause, PICK_WAITING, NULL);
			}
	}
	for (uint64_t pid = profile_store_next(ps, 0); pid; pid = profile_store_next(ps, pid))
		eval_profile(s, ps, pid, now_us, 0, cause, PICK_WAITING, NULL);
	for (size_t i = 0; i < s->nauds; i++)
		if (s->auds[i]->waiting) {
			s->auds[i]->waiting = false;
			s->auds[i]->computed_us = now_us;
		}
}

void audience_space_event(struct audience_space *s, const struct profile_store *ps,
			  uint64_t pid, int64_t seq, int64_t ts_us, const char *name,
			  const json_t *properties, const json_t *traits, int64_t now_us,
			  bool evaluate)
{
	bool any = false;

	if (!pid)
		return;
	for (size_t i = 0; name && i < s->naggs; i++) {
		struct agg *g = s->aggs[i];

		if (g->pending || strcmp(g->event, name) != 0)
			continue;
		agg_apply(g, pid, ts_us, name, properties, now_us);
		g->touched = true;
		any = true;
	}
	if (evaluate && !known_get(s, pid))
		eval_profile(s, ps, pid, now_us, seq, AUDIENCE_CAUSE_EVENT, PICK_ALL, NULL);
	else if (evaluate && (any || (traits && json_object_size(traits))))
		eval_profile(s, ps, pid, now_us, seq, AUDIENCE_CAUSE_EVENT, PICK_TOUCHED,
			     json_is_object(traits) ? traits : NULL);
	for (size_t i = 0; any && i < s->naggs; i++)
		s->aggs[i]->touched = false;
}

void audience_space_merge(struct audience_space *s, const struct profile_store *ps,
			  uint64_t survivor, uint64_t absorbed, int64_t seq, int64_t now_us)
{
	if (!survivor || !absorbed || survivor == absorbed)
		return;
	for (size_t i = 0; i < s->naggs; i++) {
		struct agg *g = s->aggs[i];
		long from = tab_find(&g->tab, absorbed), to;
		struct buf st = BUF_INIT;

		if (from < 0)
			continue;
		to = tab_find(&g->tab, survivor);
		if (to >= 0)
			buf_add(&st, g->tab.vals[to] + 4, blob_len(g->tab.vals[to]));
		if (audience_computed_merge(&g->def, &st, g->tab.vals[from] + 4,
					    blob_len(g->tab.vals[from]), now_us) == 0)
			tab_put(&g->tab, survivor, st.data, st.len);
		buf_release(&st);
		tab_del(&g->tab, absorbed);
	}
	for (size_t i = 0; i < s->nauds; i++) {
		struct aud *a = s->order[i];

		if (!bit_get(a, absorbed))
			continue;
		bit_set(a, absorbed, false);
		a->size--;
		record(s, a, absorbed, false, now_us, seq, AUDIENCE_CAUSE_MERGE);
	}
	known_set(s, absorbed, false);
	eval_profile(s, ps, survivor, now_us, seq, AUDIENCE_CAUSE_MERGE, PICK_ALL, NULL);
}

void audience_space_evaluate(struct audience_space *s, const struct profile_store *ps,
			     uint64_t pid, int64_t seq, int64_t now_us, enum audience_cause cause)
{
	if (pid)
		eval_profile(s, ps, pid, now_us, seq, cause, PICK_ALL, NULL);
}

void audience_space_forget(struct audience_space *s, uint64_t pid, bool erase)
{
	size_t out = 0;

	for (size_t i = 0; i < s->naggs; i++)
		tab_del(&s->aggs[i]->tab, pid);
	known_set(s, pid, false);
	if (!erase)
		return;
	for (size_t i = 0; i < s->nauds; i++)
		if (bit_get(s->auds[i], pid)) {
			bit_set(s->auds[i], pid, false);
			s->auds[i]->size--;
		}
	for (size_t i = 0; i < s->nchanges; i++)
		if (s->changes[i].profile_id != pid)
			s->changes[out++] = s->changes[i];
	s->nchanges = out;
}

static int pid_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

size_t audience_space_tick(struct audience_space *s, const struct profile_store *ps,
			   int64_t now_us)
{
	int64_t hour = now_us >= 0 ? now_us / HOUR_US : -((-now_us + HOUR_US - 1) / HOUR_US);
	int64_t day = now_us >= 0 ? now_us / DAY_US : -((-now_us + DAY_US - 1) / DAY_US);
	bool new_hour = hour != s->last_hour, new_day = day != s->last_day;
	uint64_t *pids = NULL;
	size_t n = 0, cap = 0, out = 0;

	s->last_hour = hour;
	s->last_day = day;
	if (!new_hour && !new_day)
		return 0;
	for (size_t i = 0; i < s->naggs; i++) {
		const struct agg *g = s->aggs[i];

		if (g->pending || !g->def.window ||
		    !(g->def.unit == AUDIENCE_UNIT_HOURS ? new_hour : new_day))
			continue;
		for (size_t k = 0; k < g->tab.cap; k++) {
			if (!g->tab.keys[k] || g->tab.keys[k] == TOMB)
				continue;
			if (n == cap) {
				cap = cap ? 2 * cap : 1024;
				pids = xrealloc(pids, xmul(cap, sizeof(*pids)));
			}
			pids[n++] = g->tab.keys[k];
		}
	}
	if (n > 1)
		qsort(pids, n, sizeof(*pids), pid_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i && pids[i] == pids[i - 1])
			continue;
		out++;
		if (new_hour)
			eval_profile(s, ps, pids[i], now_us, 0, AUDIENCE_CAUSE_WINDOW, PICK_HOURS, NULL);
		if (new_day)
			eval_profile(s, ps, pids[i], now_us, 0, AUDIENCE_CAUSE_WINDOW, PICK_DAYS, NULL);
	}
	free(pids);
	return out;
}

/* ---- changes ---- */

struct audience_change *audience_space_take_changes(struct audience_space *s, size_t *n)
{
	struct audience_change *c = s->changes;

	*n = s->nchanges;
	if (!*n)
		return NULL;
	s->changes = NULL;
	s->nchanges = s->changes_cap = 0;
	return c;
}

void audience_space_return_changes(struct audience_space *s, struct audience_change *c, size_t n)
{
	if (!n) {
		free(c);
		return;
	}
	c = xrealloc(c, xmul(n + s->nchanges, sizeof(*c)));
	if (s->nchanges)
		memcpy(c + n, s->changes, s->nchanges * sizeof(*c));
	free(s->changes);
	s->changes = c;
	s->nchanges += n;
	s->changes_cap = s->nchanges;
}

/* ---- a full recompute ---- */

void audience_space_adopt(struct audience_space *s, struct audience_space *from, int64_t now_us)
{
	for (size_t i = 0; i < s->naggs; i++) {
		struct agg *g = s->aggs[i], *f = NULL;
		struct blobtab t;

		for (size_t k = 0; k < from->naggs && !f; k++)
			if (strcmp(from->aggs[k]->sig, g->sig) == 0)
				f = from->aggs[k];
		if (!f || f->pending)
			continue;
		/* Swapped, not copied: from frees the old states with itself. */
		t = g->tab;
		g->tab = f->tab;
		f->tab = t;
		g->pending = false;
	}
	for (size_t i = 0; i < s->nauds; i++) {
		struct aud *a = s->auds[i], *b;
		long at = a->id ? find_aud(from, a->key) : -1;
		uint64_t *bits, size;
		size_t nwords;

		if (at < 0)
			continue;
		b = from->auds[at];
		if (b->waiting || strcmp(a->src, b->src) != 0)
			continue;
		nwords = a->nwords > b->nwords ? a->nwords : b->nwords;
		for (size_t w = 0; w < nwords; w++) {
			uint64_t x = w < a->nwords ? a->bits[w] : 0;
			uint64_t y = w < b->nwords ? b->bits[w] : 0;

			/* The bits that differ are the entries and exits adopting implies. */
			for (uint64_t d = x ^ y; d; d &= d - 1) {
				int bit = __builtin_ctzll(d);

				record(s, a, w * 64 + (uint64_t)bit, y >> bit & 1, now_us, 0,
				       AUDIENCE_CAUSE_RECOMPUTE);
			}
		}
		bits = a->bits;
		nwords = a->nwords;
		a->bits = b->bits;
		a->nwords = b->nwords;
		b->bits = bits;
		b->nwords = nwords;
		size = a->size;
		a->size = b->size;
		b->size = size;
		a->computed_us = b->computed_us;
		a->waiting = false;
	}
}

/* ---- reading ---- */

/* Listed audiences skip a preview's (key ""), which sorts first. */
static size_t first_listed(const struct audience_space *s)
{
	return s->nauds && !*s->auds[0]->key ? 1 : 0;
}

size_t audience_space_audiences(const struct audience_space *s)
{
	return s->nauds - first_listed(s);
}

void audience_space_audience(const struct audience_space *s, size_t i, struct audience_info *out)
{
	const struct aud *a = s->auds[i + first_listed(s)];

	*out = (struct audience_info){
		.id = a->id, .key = a->key, .name = a->name, .definition = a->src, .size = a->size,
		.computed_us = a->computed_us, .pending = a->waiting,
	};
}

static const struct aud *listed(const struct audience_space *s, size_t i)
{
	return s->auds[i + first_listed(s)];
}

bool audience_space_member(const struct audience_space *s, size_t i, uint64_t pid)
{
	return bit_get(listed(s, i), pid);
}

size_t audience_space_members(const struct audience_space *s, size_t i, uint64_t after,
			      uint64_t *out, size_t max)
{
	const struct aud *a = listed(s, i);
	size_t n = 0;
	uint64_t from = after + 1;

	for (size_t w = (size_t)(from / 64); w < a->nwords && n < max; w++) {
		uint64_t bits = a->bits[w];

		if (w == from / 64)
			bits &= ~0ull << (from % 64);
		for (; bits && n < max; bits &= bits - 1)
			out[n++] = w * 64 + (uint64_t)__builtin_ctzll(bits);
	}
	return n;
}

size_t audience_space_cts(const struct audience_space *s)
{
	return s->ncts;
}

void audience_space_ct(const struct audience_space *s, size_t i, struct audience_ct_info *out)
{
	*out = (struct audience_ct_info){
		.id = s->cts[i]->id, .key = s->cts[i]->key, .definition = s->cts[i]->doc,
		.profiles = s->cts[i]->agg->tab.n,
	};
}

json_t *audience_space_ct_value(const struct audience_space *s, size_t i, uint64_t pid,
				int64_t now_us)
{
	return agg_value(s->cts[i]->agg, pid, now_us);
}

void audience_space_profile(const struct audience_space *s, uint64_t pid, int64_t now_us,
			    json_t **computed, json_t **audiences)
{
	*computed = json_object();
	*audiences = json_array();
	for (size_t i = 0; i < s->ncts; i++)
		if (!s->cts[i]->agg->pending)
			json_object_set_new(*computed, s->cts[i]->key,
					    agg_value(s->cts[i]->agg, pid, now_us));
	for (size_t i = first_listed(s); i < s->nauds; i++)
		if (bit_get(s->auds[i], pid))
			json_array_append_new(*audiences, json_string(s->auds[i]->key));
}

void audience_space_stats(const struct audience_space *s, struct audience_space_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->aggregates = s->naggs;
	for (size_t i = 0; i < s->naggs; i++) {
		const struct blobtab *t = &s->aggs[i]->tab;

		out->states += t->n;
		out->bytes += t->cap * (sizeof(*t->keys) + sizeof(*t->vals)) + t->blob_bytes;
	}
	for (size_t i = first_listed(s); i < s->nauds; i++) {
		out->members += s->auds[i]->size;
		out->bytes += s->auds[i]->nwords * sizeof(uint64_t);
	}
	out->bytes += s->nknown * sizeof(uint64_t);
}

/* ---- previews ---- */

#define PREVIEW_KEY ""

int audience_space_preview_begin(struct audience_space *s, const char *src, char *err,
				 size_t errlen)
{
	return audience_space_define_audience(s, 0, PREVIEW_KEY, NULL, src, err, errlen);
}

void audience_space_preview_end(struct audience_space *s, const struct profile_store *ps,
				int64_t now_us, uint64_t *size, uint64_t *sample, size_t max,
				size_t *nsample)
{
	long at = find_aud(s, PREVIEW_KEY);
	struct aud *a;
	char err[8];

	*size = 0;
	*nsample = 0;
	if (at < 0)
		return;
	audience_space_settle(s, ps, now_us, AUDIENCE_CAUSE_DEFINITION);
	a = s->auds[at];
	*size = a->size;
	for (size_t w = 0; w < a->nwords && *nsample < max; w++)
		for (uint64_t bits = a->bits[w]; bits && *nsample < max; bits &= bits - 1)
			sample[(*nsample)++] = w * 64 + (uint64_t)__builtin_ctzll(bits);
	audience_space_remove_audience(s, PREVIEW_KEY, err, sizeof(err));
}

/* ---- snapshots ---- */

static void put64(struct buf *b, uint64_t v)
{
	buf_add(b, &v, 8);
}

static void put32(struct buf *b, uint32_t v)
{
	buf_add(b, &v, 4);
}

void audience_space_snapshot(const struct audience_space *s, struct buf *out)
{
	uint32_t naggs = 0, nauds = 0;

	put32(out, SNAP_MAGIC);
	put32(out, SNAP_VERSION);
	put64(out, (uint64_t)s->last_hour);
	put64(out, (uint64_t)s->last_day);
	for (size_t i = 0; i < s->naggs; i++)
		naggs += !s->aggs[i]->pending;
	put32(out, naggs);
	for (size_t i = 0; i < s->naggs; i++) {
		const struct agg *g = s->aggs[i];

		if (g->pending)
			continue;
		put32(out, (uint32_t)strlen(g->sig));
		buf_adds(out, g->sig);
		put64(out, g->tab.n);
		for (size_t k = 0; k < g->tab.cap; k++) {
			if (!g->tab.keys[k] || g->tab.keys[k] == TOMB)
				continue;
			put64(out, g->tab.keys[k]);
			buf_add(out, g->tab.vals[k], 4 + blob_len(g->tab.vals[k]));
		}
	}
	for (size_t i = 0; i < s->nauds; i++)
		nauds += s->auds[i]->id && !s->auds[i]->waiting;
	put32(out, nauds);
	for (size_t i = 0; i < s->nauds; i++) {
		const struct aud *a = s->auds[i];

		if (!a->id || a->waiting)
			continue;
		put64(out, (uint64_t)a->id);
		put32(out, (uint32_t)strlen(a->src));
		buf_adds(out, a->src);
		put64(out, (uint64_t)a->computed_us);
		put64(out, a->size);
		put64(out, a->nwords);
		buf_add(out, a->bits, a->nwords * sizeof(uint64_t));
	}
}

struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const void *take(struct rd *r, size_t n)
{
	const void *p = r->p;

	if (r->bad || n > r->left) {
		r->bad = true;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

static uint64_t get64(struct rd *r)
{
	const void *p = take(r, 8);
	uint64_t v = 0;

	if (p)
		memcpy(&v, p, 8);
	return v;
}

static uint32_t get32(struct rd *r)
{
	const void *p = take(r, 4);
	uint32_t v = 0;

	if (p)
		memcpy(&v, p, 4);
	return v;
}

/* One pass; with apply false it only checks, so a damaged snapshot changes nothing. */
static int restore_pass(struct audience_space *s, const void *data, size_t len, bool apply)
{
	struct rd r = { data, len, false };
	uint32_t n;

	if (get32(&r) != SNAP_MAGIC || get32(&r) != SNAP_VERSION)
		return WEFT_EINVAL;
	{
		int64_t h = (int64_t)get64(&r), d = (int64_t)get64(&r);

		if (apply) {
			s->last_hour = h;
			s->last_day = d;
		}
	}
	n = get32(&r);
	for (uint32_t i = 0; i < n && !r.bad; i++) {
		uint32_t slen = get32(&r);
		const char *sig = take(&r, slen);
		uint64_t cnt = get64(&r);
		struct agg *g = NULL;

		for (size_t k = 0; apply && sig && k < s->naggs; k++)
			if (s->aggs[k]->pending && strlen(s->aggs[k]->sig) == slen &&
			    memcmp(s->aggs[k]->sig, sig, slen) == 0)
				g = s->aggs[k];
		for (uint64_t k = 0; k < cnt && !r.bad; k++) {
			uint64_t pid = get64(&r);
			uint32_t bl = get32(&r);
			const void *b = take(&r, bl);

			if (!pid || pid == TOMB)
				r.bad = true;
			else if (g && b)
				tab_put(&g->tab, pid, b, bl);
		}
		if (g && !r.bad)
			g->pending = false;
	}
	n = get32(&r);
	for (uint32_t i = 0; i < n && !r.bad; i++) {
		int64_t id = (int64_t)get64(&r);
		uint32_t slen = get32(&r);
		const char *src = take(&r, slen);
		int64_t computed = (int64_t)get64(&r);
		uint64_t size = get64(&r), nwords = get64(&r);
		const void *bits = nwords > len / 8 ? NULL : take(&r, (size_t)nwords * 8);

		if (!bits && nwords) {
			r.bad = true;
			break;
		}
		for (size_t k = 0; apply && src && k < s->nauds; k++) {
			struct aud *a = s->auds[k];

			if (a->id != id || strlen(a->src) != slen || memcmp(a->src, src, slen))
				continue;
			free(a->bits);
			a->bits = xmalloc(nwords ? (size_t)nwords * 8 : 8);
			if (nwords)
				memcpy(a->bits, bits, (size_t)nwords * 8);
			a->nwords = (size_t)nwords;
			a->size = size;
			a->computed_us = computed;
			a->waiting = false;
		}
	}
	if (r.bad || r.left)
		return WEFT_EINVAL;
	return 0;
}

int audience_space_restore(struct audience_space *s, const void *data, size_t len)
{
	int rc = restore_pass(s, data, len, false);

	if (rc)
		return rc;
	restore_pass(s, data, len, true);
	/* An audience reading an aggregate that stayed pending is evaluated again at settle. */
	for (size_t i = 0; i < s->nauds; i++)
		for (size_t k = 0; k < s->auds[i]->naggs; k++)
			if (s->auds[i]->aggs[k]->pending)
				s->auds[i]->waiting = true;
	return 0;
}
