/*
 * Applying one stored event: decoding its log tuple, matching its
 * identifiers in the workspace's identity graph, and recording it on the
 * profile the match gives (traits, counters, accounts, event history).
 * Rows fed by the sink and rows read back from the log are the same bytes
 * and take this one path.
 */
#define _GNU_SOURCE	/* memmem */
#include "engine/engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

/* A stored event, decoded; pointers into the tuple. */
struct row {
	int64_t ws, seq, ts_us;
	enum profile_call call;
	char name[256];		/* a track's event name, cut to 255 bytes */
	bool has_name;
	const char *ids_json, *payload;
	size_t ids_len, payload_len;
};

static const char *const call_names[] = { "track", "identify", "page", "screen", "group",
					  "alias" };

static int decode(const char *tuple, size_t len, struct row *r)
{
	struct store_field f[STORE_EVENT_FIELDS];

	memset(r, 0, sizeof(*r));
	if (store_tuple_fields(tuple, len, f, STORE_EVENT_FIELDS) != STORE_EVENT_FIELDS ||
	    f[0].len != 8 || f[1].len != 8 || f[8].len != 8 || f[3].len <= 0 ||
	    store_field_jsonb(&f[10], &r->ids_json, &r->ids_len) ||
	    store_field_jsonb(&f[11], &r->payload, &r->payload_len))
		return WEFT_EINVAL;
	r->ws = store_field_int8(&f[0]);
	r->seq = store_field_int8(&f[1]);
	r->ts_us = store_field_timestamptz(&f[8]);
	r->call = PROFILE_TRACK;
	for (int c = 0; c <= PROFILE_ALIAS; c++)
		if ((size_t)f[3].len == strlen(call_names[c]) &&
		    memcmp(f[3].data, call_names[c], (size_t)f[3].len) == 0)
			r->call = (enum profile_call)c;
	if (f[4].len > 0) {
		size_t n = (size_t)f[4].len < sizeof(r->name) ? (size_t)f[4].len :
								sizeof(r->name) - 1;

		memcpy(r->name, f[4].data, n);
		r->name[n] = '\0';
		r->has_name = true;
	}
	return 0;
}

const char *engine_call_name(int call)
{
	return call >= 0 && call <= PROFILE_ALIAS ? call_names[call] : "track";
}

int engine_row_brief(const char *tuple, size_t len, int64_t *ws, int64_t *seq, int64_t *ts_us,
		     char name[256], const char **payload, size_t *payload_len)
{
	struct row r;

	if (decode(tuple, len, &r))
		return WEFT_EINVAL;
	*ws = r.ws;
	*seq = r.seq;
	*ts_us = r.ts_us;
	snprintf(name, 256, "%s", r.has_name ? r.name : call_names[r.call]);
	*payload = r.payload;
	*payload_len = r.payload_len;
	return 0;
}

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool parse_key(const char *hex, uint8_t out[IDENTITY_KEY_BYTES])
{
	if (!hex || strlen(hex) != 2 * IDENTITY_KEY_BYTES)
		return false;
	for (int i = 0; i < IDENTITY_KEY_BYTES; i++) {
		int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

/* The event's identifiers (interning their types in g); -1 if malformed. */
static int parse_ids(struct identity_graph *g, const struct row *r, struct identity_ident *ids)
{
	json_error_t jerr;
	json_t *arr = json_loadb(r->ids_json, r->ids_len, 0, &jerr), *it;
	size_t i;
	int n = 0;

	if (!json_is_array(arr)) {
		json_decref(arr);
		return -1;
	}
	json_array_foreach(arr, i, it) {
		const char *type = json_string_value(json_object_get(it, "type"));
		int t;

		if (n == IDENTITY_EVENT_IDS_MAX)
			break;
		if (!type || !parse_key(json_string_value(json_object_get(it, "key")),
					ids[n].key)) {
			n = -1;
			break;
		}
		if ((t = identity_graph_type(g, type)) < 0)
			continue;	/* past the type limit: not an identifier */
		ids[n].type = (uint16_t)t;
		ids[n].previous = json_is_true(json_object_get(it, "previous"));
		ids[n].blocked = json_is_true(json_object_get(it, "blocked"));
		n++;
	}
	json_decref(arr);
	return n;
}

/*
 * What the profile store needs from the payload: the user's traits
 * (context.traits, then an identify's traits over them) and a group call's
 * account traits; and what the audiences need: the properties, if an
 * aggregate reads events of this name (want_props). The payload is only
 * parsed when it can hold any of that.
 */
struct traits {
	json_t *root, *user, *account;
	const json_t *props;
};

static const char *row_name(const struct row *r)
{
	return r->has_name ? r->name : call_names[r->call];
}

static void read_traits(const struct row *r, struct traits *t, bool want_props)
{
	json_t *ctx_traits, *traits;

	memset(t, 0, sizeof(*t));
	if (!want_props && !memmem(r->payload, r->payload_len, "\"traits\"", 8))
		return;
	t->root = json_loadb(r->payload, r->payload_len, 0, NULL);
	if (want_props)
		t->props = json_object_get(t->root, "properties");
	ctx_traits = json_object_get(json_object_get(t->root, "context"), "traits");
	traits = json_object_get(t->root, "traits");
	if (r->call == PROFILE_GROUP) {
		t->account = json_is_object(traits) ? traits : NULL;
		traits = NULL;
	} else if (r->call != PROFILE_IDENTIFY) {
		traits = NULL;	/* only identify's top-level traits describe the user */
	}
	if (json_is_object(ctx_traits) && json_is_object(traits)) {
		t->user = json_deep_copy(ctx_traits);
		json_object_update(t->user, traits);
	} else if (json_is_object(ctx_traits)) {
		t->user = json_incref(ctx_traits);
	} else if (json_is_object(traits)) {
		t->user = json_incref(traits);
	}
}

static void release_traits(struct traits *t)
{
	json_decref(t->user);
	json_decref(t->root);
}

/*
 * Records the event on profile pid (0: nothing to record), and on its
 * audiences' aggregates, evaluating them if evaluate.
 */
static void record(struct engine_ws *w, const struct row *r, const struct identity_ident *ids,
		   size_t n, uint64_t pid, const struct traits *t, int64_t now_us, bool evaluate)
{
	struct profile_event pe = {
		.seq = r->seq, .ts_us = r->ts_us, .call = r->call,
		.name = r->has_name ? r->name : NULL, .traits = t->user, .profile_id = pid,
	};

	if (r->call == PROFILE_GROUP)
		for (size_t i = 0; i < n; i++)
			if (ids[i].type == IDENTITY_TYPE_GROUP_ID && !ids[i].blocked) {
				pe.account_key = ids[i].key;
				pe.account_traits = t->account;
				break;
			}
	if (pid && profile_store_apply(w->ps, &pe) == WEFT_ETOOBIG)
		log_warn("profile_limit", "workspace=%lld seq=%lld msg=\"a trait or the profile "
			 "was too big; the rest of the event was kept\"", (long long)r->ws,
			 (long long)r->seq);
	if (pid)
		audience_space_event(w->as, w->ps, pid, r->seq, r->ts_us, row_name(r), t->props,
				     t->user, now_us, evaluate);
}

void engine_apply_tuple(struct engine *e, const char *tuple, size_t len)
{
	struct identity_ident ids[IDENTITY_EVENT_IDS_MAX];
	struct identity_event_ids ev = { .ids = ids };
	struct engine_ws *w;
	struct traits t;
	struct row r;
	const uint32_t *absorbed;
	size_t nabsorbed;
	uint64_t pid = 0;
	int64_t now_us;
	int n, rc;

	if (decode(tuple, len, &r)) {
		log_error("engine_bad_row", "len=%zu", len);
		return;
	}
	w = engine_ws_find(e, r.ws, true);
	if (r.seq <= e->applied || r.seq <= w->applied)
		return;
	ev.seq = r.seq;
	ev.ts_us = r.ts_us;
	ev.ref = (uint64_t)r.seq;
	ev.alias = r.call == PROFILE_ALIAS;
	/* Before the lock: only this thread changes the definitions wants() reads. */
	read_traits(&r, &t, audience_space_wants(w->as, row_name(&r), false));
	now_us = engine_clock(e);
	pthread_rwlock_wrlock(&e->rw);
	n = parse_ids(w->g, &r, ids);
	if (n < 0) {
		log_error("engine_bad_identifiers", "workspace=%lld seq=%lld", (long long)r.ws,
			  (long long)r.seq);
		n = 0;
	}
	ev.n = (size_t)n;
	if ((w->suppressed || w->nfilters) && engine_ws_drops(w, r.seq, ids, ev.n)) {
		/* A suppressed or erased person's event: it never reaches the state. */
		pthread_rwlock_unlock(&e->rw);
		release_traits(&t);
		w->applied = r.seq;
		return;
	}
	rc = identity_graph_apply(w->g, &ev, &pid);
	if (rc) {
		log_error("engine_apply_failed", "workspace=%lld seq=%lld error=%s",
			  (long long)r.ws, (long long)r.seq, weft_strerror(rc));
		pid = 0;
	}
	nabsorbed = identity_graph_last_absorbed(w->g, &absorbed);
	for (size_t i = 0; !rc && i < nabsorbed; i++) {
		profile_store_merge(w->ps, pid, absorbed[i]);
		audience_space_merge(w->as, w->ps, pid, absorbed[i], r.seq, now_us);
	}
	for (size_t i = 0; i < ev.n; i++) {
		uint32_t node = ids[i].blocked ? 0 : identity_graph_node(w->g, ids[i].type,
									  ids[i].key);

		if (node)
			profile_store_saw_identifier(w->ps, node, r.seq, r.ts_us);
	}
	record(w, &r, ids, ev.n, pid, &t, now_us, true);
	pthread_rwlock_unlock(&e->rw);
	release_traits(&t);
	w->applied = r.seq;
	pthread_mutex_lock(&e->mu);
	e->stats.events_applied++;
	pthread_mutex_unlock(&e->mu);
}

/*
 * The profile an already applied event belongs to now: the one holding its
 * highest-priority identifier that is still in the graph.
 */
static uint64_t attribute(const struct identity_graph *g, const struct identity_ident *ids,
			  size_t n)
{
	uint32_t best_prio = UINT32_MAX, prio, limit, window;
	uint64_t best = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t pid;

		if (ids[i].blocked || identity_graph_rule(g, ids[i].type, &prio, &limit, &window) ||
		    ids[i].type == IDENTITY_TYPE_GROUP_ID)
			continue;
		pid = identity_graph_lookup(g, ids[i].type, ids[i].key);
		if (pid && prio < best_prio) {
			best = pid;
			best_prio = prio;
		}
	}
	return best;
}

struct reattribute {
	struct engine *e;
	struct engine_ws *w;
	int64_t now_us;
	uint64_t *pids;		/* the profiles events went to, for evaluation */
	size_t npids, cap;
};

static int reattribute_row(void *arg, const char *tuple, size_t len)
{
	struct reattribute *ra = arg;
	struct identity_ident ids[IDENTITY_EVENT_IDS_MAX];
	struct traits t;
	struct row r;
	int n;

	if (decode(tuple, len, &r))
		return 0;
	read_traits(&r, &t, audience_space_wants(ra->w->as, row_name(&r), false));
	n = parse_ids(ra->w->g, &r, ids);
	if (n > 0) {
		uint64_t pid = attribute(ra->w->g, ids, (size_t)n);

		record(ra->w, &r, ids, (size_t)n, pid, &t, ra->now_us, false);
		if (pid && (!ra->npids || ra->pids[ra->npids - 1] != pid)) {
			if (ra->npids == ra->cap) {
				ra->cap = ra->cap ? 2 * ra->cap : 16;
				ra->pids = xrealloc(ra->pids, xmul(ra->cap, sizeof(*ra->pids)));
			}
			ra->pids[ra->npids++] = pid;
		}
	}
	release_traits(&t);
	return 0;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

int engine_split_profiles(struct engine *e, struct engine_ws *w, uint64_t old_profile)
{
	struct reattribute ra = { e, w, engine_clock(e), NULL, 0, 0 };
	size_t n;
	int64_t *seqs = profile_store_forget(w->ps, old_profile, &n);
	int rc = 0;

	audience_space_forget(w->as, old_profile, false);
	/* Each event goes back to the part that now holds it, in log order. */
	if (n)
		rc = e->store ? store_log_read_seqs(e->store, w->id, seqs, n, reattribute_row, &ra) :
				WEFT_EUNAVAIL;
	free(seqs);
	/* Then each part, and what is left of the old profile, is evaluated once. */
	if (ra.npids > 1)
		qsort(ra.pids, ra.npids, sizeof(*ra.pids), u64_cmp);
	audience_space_evaluate(w->as, w->ps, old_profile, 0, ra.now_us, AUDIENCE_CAUSE_SPLIT);
	for (size_t i = 0; i < ra.npids; i++)
		if (ra.pids[i] != old_profile && (!i || ra.pids[i] != ra.pids[i - 1]))
			audience_space_evaluate(w->as, w->ps, ra.pids[i], 0, ra.now_us,
						AUDIENCE_CAUSE_SPLIT);
	free(ra.pids);
	return rc;
}

int engine_block_identifier(struct engine *e, int64_t workspace_id, const char *type,
			    const uint8_t key[IDENTITY_KEY_BYTES], struct identity_split *out)
{
	struct engine_ws *w = engine_ws_find(e, workspace_id, true);
	int t, rc;

	memset(out, 0, sizeof(*out));
	pthread_rwlock_wrlock(&e->rw);
	t = identity_graph_type(w->g, type);
	rc = t < 0 ? t : identity_graph_block(w->g, (uint16_t)t, key, e->applied, out);
	if (!rc && out->profile_id)
		rc = engine_split_profiles(e, w, out->profile_id);
	pthread_rwlock_unlock(&e->rw);
	if (out->profile_id) {
		log_info("identity_split", "workspace=%lld profile=%llu parts=%u",
			 (long long)workspace_id, (unsigned long long)out->profile_id, out->parts);
		e->cp_soon = true;
	}
	return rc;
}
