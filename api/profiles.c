/*
 * Profile endpoints (docs/profiles.md): Segment's Profile API for user
 * profiles (traits, external ids, events, metadata, links), on the same
 * paths and in the same shapes so its clients carry over, and Weft's own
 * GET /v1/profiles/{type}:{value}, which answers everything at once.
 *
 * A request resolves its profile and copies what it needs from the
 * identity graph and the profile store under the engine's read lock, then
 * goes to the control worker, which checks the workspace name of a
 * Segment path and adds what only the event log holds (displayed values,
 * messageIds, write keys, payloads), builds the reply there and hands it
 * back to the loop.
 */
#include "api/api_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audiences/space.h"
#include "engine/engine.h"
#include "identity/identity.h"
#include "lib/alloc.h"
#include "lib/digest.h"
#include "lib/err.h"
#include "lib/jsonw.h"
#include "lib/log.h"
#include "profiles/profiles.h"

/* Page sizes: Segment's documented defaults and maxima (docs/profiles.md). */
#define TRAITS_LIMIT_DEFAULT 10
#define TRAITS_LIMIT_MAX 200
#define IDS_LIMIT_DEFAULT 25
#define IDS_LIMIT_MAX 100
#define EVENTS_LIMIT_DEFAULT 10
#define EVENTS_LIMIT_MAX 100
#define LINKS_LIMIT_DEFAULT 20
#define LINKS_LIMIT_MAX 20
/* Names one include or exclude parameter may list. */
#define NAMES_MAX 100

#define NOT_FOUND "Profile was not found."

enum kind { K_TRAITS, K_EXTERNAL_IDS, K_EVENTS, K_METADATA, K_LINKS, K_PROFILE };

/* The Segment path's last segment for each kind (K_PROFILE has none). */
static const char *const kind_names[] = {
	[K_TRAITS] = "traits", [K_EXTERNAL_IDS] = "external_ids", [K_EVENTS] = "events",
	[K_METADATA] = "metadata", [K_LINKS] = "links",
};

/* The query parameters, decoded. */
struct params {
	size_t limit;
	bool verbose;
	bool klass;		/* class=computed_trait or audience */
	bool klass_audience;	/* class=audience */
	bool ascending;		/* sort=asc */
	int64_t start_us, end_us;	/* INT64_MIN, INT64_MAX: no bound */
	char **include, **exclude;	/* NULL: no filter */
	size_t ninclude, nexclude;
	char *next;		/* the cursor, NULL on a first page */
};

/* An identifier of the profile, or an account it is linked to. */
struct item {
	char type[IDENTITY_TYPE_NAME_MAX + 1];
	uint8_t key[IDENTITY_KEY_BYTES];
	uint32_t node;		/* identifiers: the graph's node number */
	int64_t seq;		/* the first event that carried it; 0: not known */
	int64_t first_us, last_us;	/* identifiers: first and last seen */
	const struct profile_account *account;	/* accounts: in the task's view */
	/* From that event, read from the log. */
	bool read;
	char *value;		/* as the event displays it; NULL if only the hash is kept */
	char *message_id;
	int64_t key_id;
	int64_t ts_us;
};

struct ptask {
	struct worker_task t;
	struct api *a;
	struct http_request *req;
	enum kind kind;
	int64_t workspace_id;
	char *space;		/* Segment paths: the workspace name, to check */
	char *url;		/* the list's path, for cursors */
	uint64_t pid;
	struct params p;
	struct profile_view view;	/* empty if the store has nothing of the profile */
	json_t *computed;	/* {key: value} of the computed traits (K_PROFILE, class=) */
	json_t *audiences;	/* [keys] of its audiences */
	struct item *ids, *accts;
	size_t nids, naccts;
	bool more;		/* external_ids, links: the list goes on after the page */
	char *next;		/* and its cursor */
	uint64_t *absorbed;
	size_t nabsorbed;
	/*
	 * events: the candidates, in the order asked; links and the native
	 * profile: every event of the profile, ascending, when an account's
	 * group call is not in its history; metadata: the first and last.
	 */
	int64_t *seqs;
	size_t nseqs;
	/* Out, from the worker. */
	int rc;
	bool not_found;
	bool space_checked;	/* the workspace name matched the one in memory */
	char *body;
	json_t *events;		/* events: the page being built */
	size_t nevents;
	int64_t last_seq;
};

/* ---- small helpers ---- */

json_t *api_pid_json(uint64_t pid)
{
	char s[32];

	snprintf(s, sizeof(s), "prf_%llu", (unsigned long long)pid);
	return json_string(s);
}

json_t *api_time_json(int64_t us)
{
	char s[40];

	if (!us)
		return json_null();
	ingest_format_time(us, s, sizeof(s));
	return json_string(s);
}

/* A write key as Segment's source_id: its id as a string; null if not known. */
static json_t *source_json(int64_t key_id)
{
	char s[24];

	if (key_id <= 0)
		return json_null();
	snprintf(s, sizeof(s), "%lld", (long long)key_id);
	return json_string(s);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool api_query_param(const char *q, const char *name, char *out, size_t len)
{
	size_t n = strlen(name);

	for (const char *p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (strncmp(p, name, n) == 0 && (p[n] == '=' || p[n] == '&' || p[n] == '\0')) {
			const char *v = p[n] == '=' ? p + n + 1 : p + n;
			size_t vl = strcspn(v, "&");
			char *dec = api_pct_decode(v, vl, true);

			snprintf(out, len, "%.*s", dec ? (int)strlen(dec) : (int)vl, dec ? dec : v);
			free(dec);
			return true;
		}
	}
	return false;
}

char *api_pct_decode(const char *in, size_t len, bool plus)
{
	char *out = xmalloc(len + 1);
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '+' && plus) {
			out[o++] = ' ';
		} else if (in[i] != '%') {
			out[o++] = in[i];
		} else if (i + 2 < len && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0 &&
			   (hexval(in[i + 1]) | hexval(in[i + 2]))) {
			out[o++] = (char)(hexval(in[i + 1]) << 4 | hexval(in[i + 2]));
			i += 2;
		} else {
			free(out);
			return NULL;
		}
	}
	out[o] = '\0';
	return out;
}

/* True if s is well-formed UTF-8 (jansson makes no string of anything else). */
static bool utf8_ok(const char *s)
{
	json_t *j = json_string(s);
	bool ok = j != NULL;

	json_decref(j);
	return ok;
}

/* ---- cursors: opaque, base64url of a short text ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *cursor_encode(const char *text)
{
	size_t n = strlen(text);
	char *out = xmalloc(n / 3 * 4 + 5), *o = out;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)text[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)(unsigned char)text[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)text[i + 2];
		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		if (i + 1 < n)
			*o++ = b64[v >> 6 & 63];
		if (i + 2 < n)
			*o++ = b64[v & 63];
	}
	*o = '\0';
	return out;
}

/* Decodes a cursor into out (size bytes); false if it is not base64url of text. */
static bool cursor_decode(const char *in, char *out, size_t size)
{
	uint32_t v = 0;
	size_t o = 0;
	int bits = 0;

	for (const char *p = in; *p; p++) {
		const char *at = strchr(b64, *p);

		if (!at || !*p)
			return false;
		v = v << 6 | (uint32_t)(at - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o + 1 >= size)
				return false;
			out[o] = (char)(v >> bits & 0xff);
			if (!out[o])
				return false;
			o++;
		}
	}
	out[o] = '\0';
	return o > 0;
}

/* ---- query parameters ---- */

static void params_release(struct params *p)
{
	for (size_t i = 0; i < p->ninclude; i++)
		free(p->include[i]);
	for (size_t i = 0; i < p->nexclude; i++)
		free(p->exclude[i]);
	free(p->include);
	free(p->exclude);
	free(p->next);
}

/* Appends the comma-separated names of v to *list; false past NAMES_MAX. */
static bool add_names(char ***list, size_t *n, const char *v)
{
	if (!*list)
		*list = xcalloc(NAMES_MAX, sizeof(**list));
	for (const char *s = v; *s;) {
		size_t len = strcspn(s, ",");

		if (len) {
			if (*n == NAMES_MAX)
				return false;
			(*list)[(*n)++] = xstrndup(s, len);
		}
		s += len + (s[len] == ',');
	}
	return true;
}

/*
 * Parses the query string for kind into p. Returns NULL, or a message
 * saying what is wrong (a parameter of another endpoint is ignored, as are
 * unknown ones).
 */
static const char *params_parse(enum kind kind, const char *query, struct params *p,
				char *msg, size_t msglen)
{
	static const size_t defaults[] = {
		[K_TRAITS] = TRAITS_LIMIT_DEFAULT, [K_EXTERNAL_IDS] = IDS_LIMIT_DEFAULT,
		[K_EVENTS] = EVENTS_LIMIT_DEFAULT, [K_LINKS] = LINKS_LIMIT_DEFAULT,
	};
	static const size_t maxima[] = {
		[K_TRAITS] = TRAITS_LIMIT_MAX, [K_EXTERNAL_IDS] = IDS_LIMIT_MAX,
		[K_EVENTS] = EVENTS_LIMIT_MAX, [K_LINKS] = LINKS_LIMIT_MAX,
	};
	bool paged = kind == K_TRAITS || kind == K_EXTERNAL_IDS || kind == K_EVENTS ||
		     kind == K_LINKS;
	const char *err = NULL;

	memset(p, 0, sizeof(*p));
	p->limit = paged ? defaults[kind] : 0;
	p->start_us = INT64_MIN;
	p->end_us = INT64_MAX;
	for (const char *s = query; *s && !err;) {
		size_t len = strcspn(s, "&"), klen = strcspn(s, "=");
		char *k, *v;

		if (klen > len)
			klen = len;
		k = api_pct_decode(s, klen, true);
		v = api_pct_decode(s + klen + (klen < len), len - klen - (klen < len), true);
		s += len + (s[len] == '&');
		if (!k || !v || !utf8_ok(k) || !utf8_ok(v)) {
			err = "the query string has a bad percent-escape or is not UTF-8";
		} else if (paged && strcmp(k, "limit") == 0) {
			char *end;
			unsigned long long n = strtoull(v, &end, 10);

			if (!isdigit((unsigned char)v[0]) || *end || n < 1 || n > maxima[kind]) {
				snprintf(msg, msglen, "limit must be an integer from 1 to %zu",
					 maxima[kind]);
				err = msg;
			} else {
				p->limit = (size_t)n;
			}
		} else if (strcmp(k, "verbose") == 0 && kind != K_PROFILE) {
			if (strcmp(v, "true") && strcmp(v, "false"))
				err = "verbose must be true or false";
			p->verbose = strcmp(v, "true") == 0;
		} else if (strcmp(k, "class") == 0 && kind == K_TRAITS) {
			if (strcmp(v, "computed_trait") && strcmp(v, "audience"))
				err = "class must be computed_trait or audience";
			p->klass = true;
			p->klass_audience = strcmp(v, "audience") == 0;
		} else if (strcmp(k, "include") == 0 &&
			   (kind == K_TRAITS || kind == K_EXTERNAL_IDS || kind == K_EVENTS)) {
			if (!add_names(&p->include, &p->ninclude, v)) {
				snprintf(msg, msglen, "include lists at most %d names", NAMES_MAX);
				err = msg;
			}
		} else if (strcmp(k, "exclude") == 0 && kind == K_EVENTS) {
			if (!add_names(&p->exclude, &p->nexclude, v)) {
				snprintf(msg, msglen, "exclude lists at most %d names", NAMES_MAX);
				err = msg;
			}
		} else if (strcmp(k, "sort") == 0 && kind == K_EVENTS) {
			if (strcmp(v, "asc") && strcmp(v, "desc"))
				err = "sort must be asc or desc";
			p->ascending = strcmp(v, "asc") == 0;
		} else if ((strcmp(k, "start") == 0 || strcmp(k, "end") == 0) && kind == K_EVENTS) {
			int64_t *at = k[0] == 's' ? &p->start_us : &p->end_us;

			if (ingest_parse_time(v, at)) {
				snprintf(msg, msglen, "%s must be an ISO-8601 date or date-time, e.g. "
					 "2026-01-31 or 2026-01-31T10:00:00Z", k);
				err = msg;
			}
		} else if (strcmp(k, "next") == 0 && paged) {
			free(p->next);
			p->next = v[0] ? xstrdup(v) : NULL;
		}
		free(k);
		free(v);
	}
	/* An include that names nothing filters nothing. */
	if (!err && p->include && !p->ninclude) {
		free(p->include);
		p->include = NULL;
	}
	if (!err && p->exclude && !p->nexclude) {
		free(p->exclude);
		p->exclude = NULL;
	}
	return err;
}

static bool listed(char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

/* ---- the task ---- */

static void items_free(struct item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(items[i].value);
		free(items[i].message_id);
	}
	free(items);
}

static void ptask_free(struct ptask *p)
{
	free(p->space);
	free(p->url);
	params_release(&p->p);
	profile_view_release(&p->view);
	items_free(p->ids, p->nids);
	items_free(p->accts, p->naccts);
	free(p->next);
	free(p->absorbed);
	free(p->seqs);
	free(p->body);
	json_decref(p->events);
	json_decref(p->computed);
	json_decref(p->audiences);
	free(p);
}

/* The order of identifiers: first seen (in log order), unknown last, then node. */
static int64_t seq_order(int64_t seq)
{
	return seq ? seq : INT64_MAX;
}

static int id_cmp(const void *pa, const void *pb)
{
	const struct item *a = pa, *b = pb;
	int64_t x = seq_order(a->seq), y = seq_order(b->seq);

	if (x != y)
		return x < y ? -1 : 1;
	return (a->node > b->node) - (a->node < b->node);
}

static int acct_cmp(const void *pa, const void *pb)
{
	return memcmp(((const struct item *)pa)->key, ((const struct item *)pb)->key,
		      IDENTITY_KEY_BYTES);
}

static int i64_cmp(const void *pa, const void *pb)
{
	int64_t x = *(const int64_t *)pa, y = *(const int64_t *)pb;

	return (x > y) - (x < y);
}

/*
 * Every event of profile pid below before (0: no bound) and above after,
 * newest first (malloc'd; *n of them). hint is how many there may be.
 */
static int64_t *all_seqs(const struct profile_store *ps, uint64_t pid, int64_t before,
			 int64_t after, size_t hint, size_t *n)
{
	size_t cap = hint + 16;

	for (;;) {
		int64_t *out = xmalloc(xmul(cap, sizeof(*out)));

		*n = ps ? profile_store_events(ps, pid, before, after, out, cap) : 0;
		if (*n < cap)
			return out;
		free(out);
		cap = xmul(cap, 4);
	}
}

/* The profile's identifiers with what the profile store saw of them (under the lock). */
static void collect_ids(struct ptask *p, const struct identity_graph *g,
			const struct profile_store *ps)
{
	struct identity_ids_iter it;
	struct identity_ident_info info;
	size_t cap = 0;

	identity_ids_iter_init(&it, g, p->pid);
	while (identity_ids_iter_next(&it, &info)) {
		const char *name = identity_graph_type_name(g, info.type);
		struct profile_ident_seen seen = { 0 };
		struct item *x;

		if (!name || (p->p.include && !listed(p->p.include, p->p.ninclude, name)))
			continue;
		if (p->nids == cap) {
			cap = cap ? 2 * cap : 16;
			p->ids = xrealloc(p->ids, xmul(cap, sizeof(*p->ids)));
		}
		x = &p->ids[p->nids++];
		memset(x, 0, sizeof(*x));
		snprintf(x->type, sizeof(x->type), "%s", name);
		memcpy(x->key, info.key, IDENTITY_KEY_BYTES);
		x->node = info.node;
		if (ps)
			profile_store_identifier(ps, info.node, &seen);
		x->seq = seen.first_seq;
		x->first_us = seen.first_us;
		x->last_us = seen.last_us;
	}
	if (p->nids > 1)
		qsort(p->ids, p->nids, sizeof(*p->ids), id_cmp);
}

/*
 * The profile's accounts, and for each the first group call of its history
 * that linked it (an IDENTITY_EXPL_GROUP record). An account whose record
 * is elsewhere (a split refiles profiles, not their records) is found in
 * the profile's events on the worker: *need_events says so.
 */
static void collect_accounts(struct ptask *p, const struct identity_graph *g,
			     bool *need_events)
{
	struct identity_expl_iter it;

	*need_events = false;
	p->accts = xcalloc(p->view.naccounts + 1, sizeof(*p->accts));
	p->naccts = p->view.naccounts;
	for (size_t i = 0; i < p->naccts; i++) {
		snprintf(p->accts[i].type, sizeof(p->accts[i].type), "group_id");
		memcpy(p->accts[i].key, p->view.accounts[i].key, IDENTITY_KEY_BYTES);
		p->accts[i].account = &p->view.accounts[i];
	}
	if (p->naccts > 1)
		qsort(p->accts, p->naccts, sizeof(*p->accts), acct_cmp);
	if (!p->naccts)
		return;
	identity_expl_iter_init(&it, g, p->pid);
	for (struct identity_explanation x; identity_expl_iter_next(&it, &x);) {
		struct item key = { .seq = 0 }, *a;

		if (x.kind != IDENTITY_EXPL_GROUP)
			continue;
		memcpy(key.key, x.key, IDENTITY_KEY_BYTES);
		a = bsearch(&key, p->accts, p->naccts, sizeof(*p->accts), acct_cmp);
		if (a && (!a->seq || x.seq < a->seq))
			a->seq = x.seq;
	}
	identity_expl_iter_release(&it);
	for (size_t i = 0; i < p->naccts; i++)
		if (!p->accts[i].seq)
			*need_events = true;
}

static int u64_cmp(const void *pa, const void *pb)
{
	uint64_t x = *(const uint64_t *)pa, y = *(const uint64_t *)pb;

	return (x > y) - (x < y);
}

/*
 * The profile ids that resolve to pid, pid aside: exactly those
 * identity_graph_resolve() maps to it. Without a split in the profile's
 * history, every one was absorbed by a merge recorded in that history
 * (merge records are filed under the survivor, and a merge joins the
 * histories), so the ids its records name are the candidates. A split
 * refiles absorbed profiles under its parts without a record naming them,
 * so a profile with a split in its history is checked against every
 * profile id of the workspace instead (docs/profiles.md).
 */
static void collect_absorbed(struct ptask *p, const struct identity_graph *g)
{
	struct identity_expl_iter it;
	uint64_t *cand = NULL;
	size_t n = 0, cap = 0, out = 0;
	bool split = false;

	identity_expl_iter_init(&it, g, p->pid);
	for (struct identity_explanation x; identity_expl_iter_next(&it, &x);) {
		if (x.kind == IDENTITY_EXPL_SPLIT)
			split = true;
		if (n + 2 > cap) {
			cap = cap ? 2 * cap : 32;
			cand = xrealloc(cand, xmul(cap, sizeof(*cand)));
		}
		cand[n++] = x.profile_id;
		cand[n++] = x.other_id;
	}
	identity_expl_iter_release(&it);
	if (split) {
		struct identity_stats st;

		identity_graph_stats(g, &st);
		free(cand);
		cand = NULL;
		n = cap = 0;
		for (uint64_t q = 1; q <= st.profiles_created; q++) {
			if (q == p->pid || identity_graph_resolve(g, q) != p->pid)
				continue;
			if (n == cap) {
				cap = cap ? 2 * cap : 32;
				cand = xrealloc(cand, xmul(cap, sizeof(*cand)));
			}
			cand[n++] = q;
		}
		p->absorbed = cand;
		p->nabsorbed = n;
		return;
	}
	if (n > 1)
		qsort(cand, n, sizeof(*cand), u64_cmp);
	for (size_t i = 0; i < n; i++)
		if (cand[i] && cand[i] != p->pid && (!out || cand[out - 1] != cand[i]) &&
		    identity_graph_resolve(g, cand[i]) == p->pid)
			cand[out++] = cand[i];
	p->absorbed = cand;
	p->nabsorbed = out;
}

/*
 * Keeps the page of p->ids (sorted) that the cursor and limit select; sets
 * p->more and p->next. The cursor names the first identifier of the page
 * as "x:<first seq>:<node>". Returns false for a cursor this endpoint did
 * not give.
 */
static bool page_ids(struct ptask *p)
{
	size_t from = 0, to;

	if (p->p.next) {
		char text[64];
		long long seq;
		unsigned node;
		int used = 0;
		struct item key;

		if (!cursor_decode(p->p.next, text, sizeof(text)) ||
		    sscanf(text, "x:%lld:%u%n", &seq, &node, &used) != 2 || text[used])
			return false;
		memset(&key, 0, sizeof(key));
		key.seq = seq == INT64_MAX ? 0 : (int64_t)seq;
		key.node = node;
		while (from < p->nids && id_cmp(&p->ids[from], &key) < 0)
			from++;
	}
	to = from + p->p.limit < p->nids ? from + p->p.limit : p->nids;
	if (to < p->nids) {
		char text[64];

		snprintf(text, sizeof(text), "x:%lld:%u", (long long)seq_order(p->ids[to].seq),
			 p->ids[to].node);
		p->more = true;
		p->next = cursor_encode(text);
	}
	/* Drop what is outside the page. */
	memmove(p->ids, p->ids + from, (to - from) * sizeof(*p->ids));
	p->nids = to - from;
	return true;
}

/* The same for accounts, ordered by key; the cursor is "l:<key hex>". */
static bool page_accounts(struct ptask *p)
{
	size_t from = 0, to;

	if (p->p.next) {
		char text[64];
		struct item key;

		if (!cursor_decode(p->p.next, text, sizeof(text)) || strncmp(text, "l:", 2) ||
		    strlen(text) != 34)
			return false;
		memset(&key, 0, sizeof(key));
		for (int i = 0; i < 16; i++) {
			int hi = hexval(text[2 + 2 * i]), lo = hexval(text[3 + 2 * i]);

			if (hi < 0 || lo < 0)
				return false;
			key.key[i] = (uint8_t)(hi << 4 | lo);
		}
		while (from < p->naccts && acct_cmp(&p->accts[from], &key) < 0)
			from++;
	}
	to = from + p->p.limit < p->naccts ? from + p->p.limit : p->naccts;
	if (to < p->naccts) {
		char text[40], hex[33];

		hex_encode(p->accts[to].key, 16, hex);
		snprintf(text, sizeof(text), "l:%s", hex);
		p->more = true;
		p->next = cursor_encode(text);
	}
	memmove(p->accts, p->accts + from, (to - from) * sizeof(*p->accts));
	p->naccts = to - from;
	return true;
}

/* An events cursor: "e:<a|d>:<seq>", the last event given, in the order given. */
static bool events_cursor(const struct params *pp, int64_t *seq)
{
	char text[64];
	long long v;
	char dir;
	int used = 0;

	*seq = 0;
	if (!pp->next)
		return true;
	if (!cursor_decode(pp->next, text, sizeof(text)) ||
	    sscanf(text, "e:%c:%lld%n", &dir, &v, &used) != 2 || text[used] || v < 1 ||
	    dir != (pp->ascending ? 'a' : 'd'))
		return false;
	*seq = v;
	return true;
}

/*
 * The events a page may come from, in the order asked. Newest first
 * without filters, only the page and one more are needed; otherwise every
 * event past the cursor is a candidate and the log says which match.
 */
static void collect_events(struct ptask *p, const struct profile_store *ps, int64_t cursor)
{
	const struct params *pp = &p->p;
	bool filtered = pp->include || pp->exclude || pp->start_us != INT64_MIN ||
			pp->end_us != INT64_MAX;

	if (!pp->ascending && !filtered) {
		p->seqs = xmalloc((pp->limit + 1) * sizeof(*p->seqs));
		p->nseqs = ps ? profile_store_events(ps, p->pid, cursor, 0, p->seqs, pp->limit + 1)
			      : 0;
		return;
	}
	p->seqs = all_seqs(ps, p->pid, pp->ascending ? 0 : cursor, pp->ascending ? cursor : 0,
			   p->view.events, &p->nseqs);
	if (pp->ascending)
		for (size_t i = 0; i < p->nseqs / 2; i++) {
			int64_t t = p->seqs[i];

			p->seqs[i] = p->seqs[p->nseqs - 1 - i];
			p->seqs[p->nseqs - 1 - i] = t;
		}
}

/* ---- on the worker: what the log adds ---- */

/* Fills the items first carried by row (identifiers JSON [{type, key, value}]). */
static void fill_items(struct item *items, size_t n, const struct store_event_row *row,
		       json_t *ids)
{
	for (size_t k = 0; k < n; k++) {
		struct item *x = &items[k];
		char hex[33];
		json_t *it;
		size_t i;

		if (x->read || x->seq != row->seq)
			continue;
		hex_encode(x->key, 16, hex);
		json_array_foreach(ids, i, it) {
			const char *type = json_string_value(json_object_get(it, "type"));
			const char *key = json_string_value(json_object_get(it, "key"));
			const char *value = json_string_value(json_object_get(it, "value"));

			if (!type || !key || strcmp(key, hex) || strcmp(type, x->type))
				continue;
			x->read = true;
			x->value = value ? xstrdup(value) : NULL;
			x->message_id = xstrdup(row->message_id);
			x->key_id = row->key_id;
			x->ts_us = row->ts_us;
			break;
		}
	}
}

struct fill {
	struct ptask *p;
	bool by_seq;		/* false: take any group event carrying an account */
};

static int fill_row(void *arg, const struct store_event_row *row)
{
	struct fill *f = arg;
	struct ptask *p = f->p;
	json_t *ids = json_loads(row->identifiers_json, 0, NULL);
	bool all = true;

	if (!f->by_seq) {
		/* The account's first group call in the profile's events: that row. */
		for (size_t k = 0; k < p->naccts; k++)
			if (!p->accts[k].read)
				p->accts[k].seq = row->seq;
		fill_items(p->accts, p->naccts, row, ids);
		for (size_t k = 0; k < p->naccts; k++)
			if (!p->accts[k].read) {
				p->accts[k].seq = 0;
				all = false;
			}
		json_decref(ids);
		return all ? 1 : 0;	/* 1: every account is found, stop */
	}
	fill_items(p->ids, p->nids, row, ids);
	fill_items(p->accts, p->naccts, row, ids);
	json_decref(ids);
	return 0;
}

/* Reads the first events of the identifiers and accounts, then looks for accounts left. */
static int read_items(struct ptask *p)
{
	struct store_event_query q = { .start_us = INT64_MIN, .end_us = INT64_MAX };
	struct fill f = { p, true };
	size_t n = 0;
	int64_t *seqs = xmalloc(xmul(p->nids + p->naccts + 1, sizeof(*seqs)));
	int rc;

	for (size_t i = 0; i < p->nids; i++)
		if (p->ids[i].seq)
			seqs[n++] = p->ids[i].seq;
	for (size_t i = 0; i < p->naccts; i++)
		if (p->accts[i].seq)
			seqs[n++] = p->accts[i].seq;
	qsort(seqs, n, sizeof(*seqs), i64_cmp);
	rc = store_events_select(p->a->control_store, p->workspace_id, seqs, n, &q, fill_row, &f);
	free(seqs);
	if (rc || !p->nseqs)
		return rc;
	/* Accounts whose group call is not in the history: the profile's group events say. */
	for (size_t i = 0; i < p->naccts; i++)
		if (!p->accts[i].read)
			p->accts[i].seq = 0;
	f.by_seq = false;
	q.type = "group";
	rc = store_events_select(p->a->control_store, p->workspace_id, p->seqs, p->nseqs, &q,
				 fill_row, &f);
	return rc == 1 ? 0 : rc;
}

/* The value an identifier shows: its displayed value, or its key when only that is kept. */
static json_t *shown_value(const struct item *x)
{
	char hex[33];

	if (x->value)
		return json_string(x->value);
	hex_encode(x->key, 16, hex);
	return json_string(hex);
}

static json_t *cursor_json(const struct ptask *p, bool more, const char *next)
{
	return json_pack("{ss sb ss sI}", "url", p->url, "has_more", more, "next",
			 more && next ? next : "", "limit", (json_int_t)p->p.limit);
}

/* A trait's stored JSON text as a value. */
static json_t *trait_value(const struct profile_trait *t)
{
	json_t *v = json_loadb(t->json, t->json_len, JSON_DECODE_ANY, NULL);

	return v ? v : json_null();
}

/* A time as JSON text: a string as api_time_json() gives it, or null. */
static void time_text(struct buf *b, int64_t us)
{
	char s[40];

	if (!us) {
		buf_adds(b, "null");
		return;
	}
	ingest_format_time(us, s, sizeof(s));
	buf_add_json_jstring(b, s, strlen(s));
}

/*
 * The traits page, written as text: the stored values are compact JSON
 * already, so they are copied as they are rather than parsed into a tree
 * and dumped again. The same bytes json_dumps(..., JSON_COMPACT) gave for
 * {"traits": {name: value or {"value", "source_id", "updated_at"}, ...},
 * "cursor": cursor_json()}. Returns the body (malloc'd).
 */
static char *traits_body(struct ptask *p)
{
	const struct profile_view *v = &p->view;
	struct buf b = BUF_INIT;
	size_t shown = 0, i = 0;
	bool more = false;
	const char *next = NULL;

	buf_adds(&b, "{\"traits\":{");
	/* Names are sorted; the cursor is the first name of the next page. */
	if (p->p.next)
		while (i < v->ntraits && strcmp(v->traits[i].name, p->p.next) < 0)
			i++;
	if (p->p.klass) {
		/* Computed traits (their values) or audiences (true), by key. */
		const char *k;
		json_t *val, *shown_obj = json_object();
		size_t idx;

		if (p->p.klass_audience) {
			json_array_foreach(p->audiences, idx, val)
				json_object_set_new(shown_obj, json_string_value(val), json_true());
		} else {
			json_object_update(shown_obj, p->computed);
		}
		json_object_foreach(shown_obj, k, val) {
			if (p->p.include && !listed(p->p.include, p->p.ninclude, k))
				continue;
			if (shown++)
				buf_addc(&b, ',');
			buf_add_json_jstring(&b, k, strlen(k));
			buf_addc(&b, ':');
			buf_add_json(&b, val);
		}
		json_decref(shown_obj);
	}
	for (; !p->p.klass && i < v->ntraits; i++) {
		const struct profile_trait *t = &v->traits[i];

		if (p->p.include && !listed(p->p.include, p->p.ninclude, t->name))
			continue;
		if (shown == p->p.limit) {
			more = true;
			next = t->name;
			break;
		}
		if (shown)
			buf_addc(&b, ',');
		buf_add_json_jstring(&b, t->name, strlen(t->name));
		buf_adds(&b, p->p.verbose ? ":{\"value\":" : ":");
		buf_add(&b, t->json, t->json_len);
		if (p->p.verbose) {
			buf_adds(&b, ",\"source_id\":null,\"updated_at\":");
			time_text(&b, t->ts_us);
			buf_addc(&b, '}');
		}
		shown++;
	}
	buf_adds(&b, "},\"cursor\":{\"url\":");
	buf_add_json_jstring(&b, p->url, strlen(p->url));
	buf_adds(&b, more ? ",\"has_more\":true,\"next\":" : ",\"has_more\":false,\"next\":");
	next = more && next ? next : "";
	buf_add_json_jstring(&b, next, strlen(next));
	buf_printf(&b, ",\"limit\":%zu}}", p->p.limit);
	return buf_detach(&b, NULL);
}

static json_t *external_ids_body(struct ptask *p)
{
	json_t *data = json_array();

	for (size_t i = 0; i < p->nids; i++) {
		const struct item *x = &p->ids[i];

		json_array_append_new(data, json_pack("{so ss so ss so ss so}",
			"id", shown_value(x), "type", x->type, "source_id", source_json(x->key_id),
			"collection", "users", "created_at", api_time_json(x->first_us),
			"encoding", "none", "first_message_id",
			x->message_id ? json_string(x->message_id) : json_null()));
	}
	return json_pack("{so so}", "data", data, "cursor", cursor_json(p, p->more, p->next));
}

static json_t *links_body(struct ptask *p)
{
	json_t *data = json_array();

	for (size_t i = 0; i < p->naccts; i++) {
		const struct item *x = &p->accts[i];

		json_array_append_new(data, json_pack("{ss s[{so ss so ss so ss}]}",
			"to_collection", "accounts", "external_ids",
			"id", shown_value(x), "type", "group_id", "source_id", source_json(x->key_id),
			"collection", "accounts", "created_at", api_time_json(x->ts_us),
			"encoding", "none"));
	}
	return json_pack("{so so}", "data", data, "cursor", cursor_json(p, p->more, p->next));
}

/* ---- events ---- */

/* The payload's member name if it is an object, else an empty object. */
static json_t *object_or_empty(json_t *payload, const char *name)
{
	json_t *v = json_object_get(payload, name);

	return json_is_object(v) ? json_incref(v) : json_object();
}

/* One stored event in Segment's Profile API shape. */
static json_t *event_json(const struct ptask *p, const struct store_event_row *row)
{
	json_t *payload = row->payload_json ? json_loads(row->payload_json, 0, NULL) : NULL;
	json_t *ids = json_loads(row->identifiers_json, 0, NULL), *it, *v;
	json_t *ext = json_array(), *o;
	char ts[40];
	size_t i;

	json_array_foreach(ids, i, it) {
		const char *type = json_string_value(json_object_get(it, "type"));
		const char *key = json_string_value(json_object_get(it, "key"));
		const char *value = json_string_value(json_object_get(it, "value"));

		if (!type || !key || json_is_true(json_object_get(it, "blocked")))
			continue;
		json_array_append_new(ext, json_pack("{ss ss ss ss}", "collection",
			strcmp(type, "group_id") ? "users" : "accounts", "type", type,
			"id", value ? value : key, "encoding", "none"));
	}
	json_decref(ids);
	ingest_format_time(row->ts_us, ts, sizeof(ts));
	o = json_pack("{so so ss ss so ss so}", "external_ids", ext,
		      "context", object_or_empty(payload, "context"), "type", row->type,
		      "message_id", row->message_id, "source_id", source_json(row->key_id),
		      "timestamp", ts, "properties", object_or_empty(payload, "properties"));
	if (strcmp(row->type, "track") == 0 && row->event)
		json_object_set_new(o, "event", json_string(row->event));
	if ((strcmp(row->type, "page") == 0 || strcmp(row->type, "screen") == 0) && row->event)
		json_object_set_new(o, "name", json_string(row->event));
	if ((strcmp(row->type, "identify") == 0 || strcmp(row->type, "group") == 0) &&
	    json_is_object(v = json_object_get(payload, "traits")))
		json_object_set(o, "traits", v);
	if (strcmp(row->type, "group") == 0 && (v = json_object_get(payload, "groupId")))
		json_object_set(o, "group_id", v);
	if (strcmp(row->type, "alias") == 0 && (v = json_object_get(payload, "previousId")))
		json_object_set(o, "previous_id", v);
	json_object_set_new(o, "related", json_pack("{so}", "users", api_pid_json(p->pid)));
	json_decref(payload);
	return o;
}

static int event_row(void *arg, const struct store_event_row *row)
{
	struct ptask *p = arg;

	/* The query asks for one more than the page: its presence says there is more. */
	if (p->nevents == p->p.limit) {
		p->more = true;
		return 1;
	}
	json_array_append_new(p->events, event_json(p, row));
	p->nevents++;
	p->last_seq = row->seq;
	return 0;
}

static int read_events(struct ptask *p)
{
	const struct params *pp = &p->p;
	struct store_event_query q = {
		.descending = !pp->ascending, .payload = true,
		.start_us = pp->start_us, .end_us = pp->end_us,
		.include = (const char *const *)pp->include, .ninclude = pp->ninclude,
		.exclude = (const char *const *)pp->exclude, .nexclude = pp->nexclude,
		.limit = pp->limit + 1,
	};
	int rc;

	p->events = json_array();
	rc = store_events_select(p->a->control_store, p->workspace_id, p->seqs, p->nseqs, &q,
				 event_row, p);
	if (rc == 1)
		rc = 0;
	if (!rc && p->more) {
		char text[48];

		snprintf(text, sizeof(text), "e:%c:%lld", pp->ascending ? 'a' : 'd',
			 (long long)p->last_seq);
		p->next = cursor_encode(text);
	}
	return rc;
}

static json_t *events_body(struct ptask *p)
{
	json_t *body = json_pack("{sO so}", "data", p->events, "cursor",
				 cursor_json(p, p->more, p->next));

	return body;
}

/* ---- metadata ---- */

struct meta {
	int64_t seq;
	char *message_id;
	int64_t key_id;
};

static int meta_row(void *arg, const struct store_event_row *row)
{
	struct meta *m = arg;

	for (int i = 0; i < 2; i++)
		if (m[i].seq == row->seq && !m[i].message_id) {
			m[i].message_id = xstrdup(row->message_id);
			m[i].key_id = row->key_id;
		}
	return 0;
}

static int metadata_body(struct ptask *p, json_t **out)
{
	struct store_event_query q = { .start_us = INT64_MIN, .end_us = INT64_MAX };
	struct meta m[2] = { { .seq = p->nseqs ? p->seqs[0] : 0 },
			     { .seq = p->nseqs ? p->seqs[1] : 0 } };
	int rc = p->nseqs ? store_events_select(p->a->control_store, p->workspace_id, p->seqs,
						p->seqs[0] == p->seqs[1] ? 1 : 2, &q, meta_row, m)
			  : 0;

	if (!rc)
		*out = json_pack("{s{so so so so so so so}}", "metadata",
			"created_at", api_time_json(p->view.first_seen_us),
			"updated_at", api_time_json(p->view.last_seen_us),
			"expires_at", json_null(),
			"first_message_id", m[0].message_id ? json_string(m[0].message_id) :
							      json_null(),
			"first_source_id", source_json(m[0].key_id),
			"last_message_id", m[1].message_id ? json_string(m[1].message_id) :
							     json_null(),
			"last_source_id", source_json(m[1].key_id));
	free(m[0].message_id);
	free(m[1].message_id);
	return rc;
}

/* ---- the native profile ---- */

static json_t *traits_object(const struct profile_trait *t, size_t n)
{
	json_t *o = json_object();

	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, t[i].name, trait_value(&t[i]));
	return o;
}

static json_t *profile_body(struct ptask *p)
{
	const struct profile_view *v = &p->view;
	json_t *absorbed = json_array(), *ids = json_array(), *by_event = json_object();
	json_t *accounts = json_array();
	char hex[33];

	for (size_t i = 0; i < p->nabsorbed; i++)
		json_array_append_new(absorbed, api_pid_json(p->absorbed[i]));
	for (size_t i = 0; i < p->nids; i++) {
		const struct item *x = &p->ids[i];

		hex_encode(x->key, 16, hex);
		json_array_append_new(ids, json_pack("{ss so ss so so so so}",
			"type", x->type, "value", x->value ? json_string(x->value) : json_null(),
			"key", hex, "first_seen", api_time_json(x->first_us),
			"last_seen", api_time_json(x->last_us), "source_id", source_json(x->key_id),
			"first_message_id", x->message_id ? json_string(x->message_id) :
							    json_null()));
	}
	for (size_t i = 0; i < v->ncounters; i++)
		json_object_set_new(by_event, v->counters[i].name,
				    json_integer((json_int_t)v->counters[i].count));
	for (size_t i = 0; i < p->naccts; i++) {
		const struct item *x = &p->accts[i];

		hex_encode(x->key, 16, hex);
		json_array_append_new(accounts, json_pack("{so ss so}",
			"group_id", x->value ? json_string(x->value) : json_null(), "key", hex,
			"traits", traits_object(x->account->traits, x->account->ntraits)));
	}
	return json_pack("{so so so so s{sI so so so} so so so}",
		"profile_id", api_pid_json(p->pid), "absorbed_ids", absorbed,
		"traits", traits_object(v->traits, v->ntraits), "identifiers", ids,
		"counters", "events", (json_int_t)v->events,
		"first_seen", api_time_json(v->first_seen_us), "last_seen", api_time_json(v->last_seen_us),
		"by_event", by_event,
		"accounts", accounts, "computed_traits", json_incref(p->computed),
		"audiences", json_incref(p->audiences));
}

/* ---- running and replying ---- */

static void ptask_run(struct worker_task *t)
{
	struct ptask *p = (struct ptask *)t;
	json_t *body = NULL;
	int64_t ws;

	if ((p->rc = api_control_conn(p->a)))
		return;
	if (p->space && !p->space_checked) {
		/* Another workspace's name is answered like an unknown one. */
		p->rc = store_workspace_get(p->a->control_store, p->space, false, &ws, NULL);
		if (p->rc == WEFT_ENOTFOUND || (!p->rc && ws != p->workspace_id)) {
			p->rc = 0;
			p->not_found = true;
			return;
		}
		if (p->rc)
			return;
	}
	switch (p->kind) {
	case K_TRAITS:
		p->body = traits_body(p);
		break;
	case K_EXTERNAL_IDS:
		if (!(p->rc = read_items(p)))
			body = external_ids_body(p);
		break;
	case K_EVENTS:
		if (!(p->rc = read_events(p)))
			body = events_body(p);
		break;
	case K_METADATA:
		p->rc = metadata_body(p, &body);
		break;
	case K_LINKS:
		if (!(p->rc = read_items(p)))
			body = links_body(p);
		break;
	case K_PROFILE:
		if (!(p->rc = read_items(p)))
			body = profile_body(p);
		break;
	}
	if (body) {
		struct buf text = BUF_INIT;

		/* Reals as they were sent (7.7, not jansson's 7.7000000000000002). */
		buf_add_json(&text, body);
		buf_addc(&text, '\0');
		p->body = text.data;
		json_decref(body);
	}
}

static void ptask_done(struct worker_task *t)
{
	struct ptask *p = (struct ptask *)t;

	if (p->rc == WEFT_EUNAVAIL || p->rc == WEFT_ESHUTDOWN) {
		http_reply_add_header(p->req, "Retry-After", "2");
		http_reply_json_error(p->req, 503, "unavailable",
				      "the database is unreachable; retry shortly");
	} else if (p->rc || (!p->not_found && !p->body)) {
		log_error("profile_read_failed", "workspace=%lld profile=%llu error=%s",
			  (long long)p->workspace_id, (unsigned long long)p->pid,
			  weft_strerror(p->rc));
		http_reply_json_error(p->req, 500, "internal_error",
				      "the profile could not be read; see the server log");
	} else if (p->not_found) {
		http_reply_json_error(p->req, 404, "not_found", NOT_FOUND);
	} else {
		http_reply(p->req, 200, "application/json", p->body, strlen(p->body));
	}
	ptask_free(p);
}

/* A workspace name as the database allows it: [A-Za-z0-9][A-Za-z0-9_.-]{0,62}. */
static bool space_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
			return false;
	return true;
}

/*
 * Serves one profile request: kind, the workspace name of a Segment path
 * (NULL for the native endpoint) and the undecoded {type}:{value}.
 */
static void profile_request(struct api *a, struct http_request *req, enum kind kind,
			    const char *space, size_t space_len, const char *ident,
			    size_t ident_len)
{
	const char *bad_code = space ? "invalid_request_error" : "invalid_request";
	const struct api_key *key;
	const struct identity_graph *g;
	const struct profile_store *ps;
	const char *error = NULL;
	struct ptask *p;
	char msg[160];
	int64_t cursor = 0;
	bool need_events = false;

	if (strcmp(http_request_method(req), "GET")) {
		/* DELETE /v1/profiles/{type}:{value} is an erasure (api/erase.c). */
		http_reply_add_header(req, "Allow", kind == K_PROFILE ? "GET, DELETE" : "GET");
		http_reply_json_error(req, 405, "method_not_allowed", "use GET");
		return;
	}
	if (!(key = api_authenticate(a, req, NULL, STORE_ROLE_READ)) || api_engine_unready(a, req))
		return;
	p = xcalloc(1, sizeof(*p));
	p->a = a;
	p->req = req;
	p->kind = kind;
	p->workspace_id = key->workspace_id;
	p->url = xstrdup(http_request_path(req));
	if ((error = params_parse(kind, http_request_query(req), &p->p, msg, sizeof(msg))) ||
	    (kind == K_EVENTS && !events_cursor(&p->p, &cursor))) {
		http_reply_json_error(req, 400, bad_code, error ? error :
				      "next must be a cursor this endpoint gave, with the same sort");
		ptask_free(p);
		return;
	}
	if (space) {
		p->space = api_pct_decode(space, space_len, false);
		if (!p->space || !space_name_ok(p->space)) {
			http_reply_json_error(req, 404, "not_found", NOT_FOUND);
			ptask_free(p);
			return;
		}
		/* The keys' refresh knows the key's workspace name: no database read. */
		const char *known = api_workspace_get(a, key->workspace_id)->name;

		if (known[0] && strcmp(known, p->space)) {
			http_reply_json_error(req, 404, "not_found", NOT_FOUND);
			ptask_free(p);
			return;
		}
		p->space_checked = known[0] != '\0';
	}

	engine_read_begin(a->engine);
	g = engine_graph(a->engine, key->workspace_id);
	ps = engine_profiles(a->engine, key->workspace_id);
	if (api_resolve_profile(a, api_workspace_get(a, key->workspace_id), g, ident, ident_len,
				&p->pid, &error)) {
		engine_read_end(a->engine);
		http_reply_json_error(req, 400, space ? "validation_error" : "invalid_identifier",
				      error);
		ptask_free(p);
		return;
	}
	if (!p->pid) {
		engine_read_end(a->engine);
		http_reply_json_error(req, 404, "not_found", NOT_FOUND);
		ptask_free(p);
		return;
	}
	if (kind == K_PROFILE || (kind == K_TRAITS && p->p.klass)) {
		const struct audience_space *as = engine_audiences(a->engine, key->workspace_id);

		if (as) {
			audience_space_profile(as, p->pid, engine_clock(a->engine), &p->computed,
					       &p->audiences);
		} else {
			p->computed = json_object();
			p->audiences = json_array();
		}
	}
	/* A profile the store holds nothing of yet reads as empty. */
	if (ps && kind == K_TRAITS)
		profile_store_view_traits(ps, p->pid, &p->view);
	else if (ps)
		profile_store_view(ps, p->pid, &p->view);
	switch (kind) {
	case K_TRAITS:
		break;
	case K_EXTERNAL_IDS:
		collect_ids(p, g, ps);
		break;
	case K_EVENTS:
		collect_events(p, ps, cursor);
		break;
	case K_METADATA:
		p->seqs = all_seqs(ps, p->pid, 0, 0, p->view.events, &p->nseqs);
		if (p->nseqs) {
			/* They come newest first: keep the first event and the last, in order. */
			int64_t newest = p->seqs[0], oldest = p->seqs[p->nseqs - 1];

			p->seqs[0] = oldest;
			p->seqs[1] = newest;
			p->nseqs = 2;
		}
		break;
	case K_LINKS:
	case K_PROFILE:
		if (kind == K_PROFILE) {
			collect_ids(p, g, ps);
			collect_absorbed(p, g);
		}
		collect_accounts(p, g, &need_events);
		break;
	}
	if (need_events) {
		p->seqs = all_seqs(ps, p->pid, 0, 0, p->view.events, &p->nseqs);
		qsort(p->seqs, p->nseqs, sizeof(*p->seqs), i64_cmp);
	}
	engine_read_end(a->engine);

	if ((kind == K_EXTERNAL_IDS && !page_ids(p)) || (kind == K_LINKS && !page_accounts(p))) {
		http_reply_json_error(req, 400, bad_code, "next must be a cursor this endpoint gave");
		ptask_free(p);
		return;
	}
	p->t.run = ptask_run;
	p->t.done = ptask_done;
	if (kind == K_TRAITS && (!p->space || p->space_checked)) {
		/* Traits are all in memory: answer on the loop, no worker round trip. */
		p->body = traits_body(p);
		ptask_done(&p->t);
		return;
	}
	worker_submit(a->control, &p->t);
}

void api_profiles_segment(struct api *a, struct http_request *req)
{
	static const char users[] = "/collections/users/profiles/";
	const char *path = http_request_path(req), *space = path + strlen("/v1/spaces/");
	const char *rest = strchr(space, '/'), *ident, *slash;

	if (!rest || rest == space || strncmp(rest, users, strlen(users)))
		goto out_no_endpoint;
	ident = rest + strlen(users);
	slash = strchr(ident, '/');
	if (!slash || slash == ident)
		goto out_no_endpoint;
	for (enum kind k = K_TRAITS; k <= K_LINKS; k++)
		if (strcmp(slash + 1, kind_names[k]) == 0) {
			profile_request(a, req, k, space, (size_t)(rest - space), ident,
					(size_t)(slash - ident));
			return;
		}
out_no_endpoint:
	http_reply_json_error(req, 404, "not_found", "no such endpoint; see docs/profiles.md");
}

void api_profile_get(struct api *a, struct http_request *req, const char *ident, size_t len)
{
	profile_request(a, req, K_PROFILE, NULL, 0, ident, len);
}
