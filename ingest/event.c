/*
 * The Segment event model: validation as Segment's HTTP Tracking API
 * defines it, timestamp correction, generated messageIds, identifier
 * extraction, and the encoding of each accepted event as a log row.
 *
 * Order matters for privacy: identifiers are read from the raw event and
 * immediately reduced to keyed hashes and display values; then the whole
 * event is masked; only then are the columns (event name, payload) taken
 * from it. Nothing raw is copied out of this file.
 */
#include "ingest/ingest.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/alloc.h"
#include "lib/digest.h"
#include "lib/err.h"
#include "lib/jsonw.h"
#include "lib/keyset.h"
#include "privacy/privacy.h"

static const char *kind_names[] = {
	"track", "identify", "page", "screen", "group", "alias", "batch",
};

static const char *reason_codes[] = {
	"ok", "invalid_json", "invalid_event", "missing_identity",
	"missing_field", "message_id_too_long", "invalid_timestamp",
	"event_too_large", "batch_too_large",
};

const char *ingest_reason_code(enum ingest_reason r)
{
	return reason_codes[r];
}

int ingest_kind_parse(const char *name, enum ingest_kind *kind)
{
	for (int i = 0; i <= INGEST_BATCH; i++) {
		if (strcmp(name, kind_names[i]) == 0) {
			*kind = (enum ingest_kind)i;
			return 0;
		}
	}
	if (strcmp(name, "import") == 0) {
		*kind = INGEST_BATCH;
		return 0;
	}
	return WEFT_EINVAL;
}

static int fail(struct ingest_error *err, enum ingest_reason reason,
		const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct ingest_error *err, enum ingest_reason reason,
		const char *fmt, ...)
{
	va_list ap;

	err->reason = reason;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return WEFT_EINVAL;
}

/* Says what is wrong in words for the sender, not jansson's. */
static const char *json_problem(const json_error_t *je)
{
	switch (json_error_code(je)) {
	case json_error_premature_end_of_input:
		return "it ends too early (truncated?)";
	case json_error_invalid_utf8:
		return "it is not valid UTF-8";
	case json_error_null_character:
		return "a string contains \\u0000, which cannot be stored";
	case json_error_numeric_overflow:
		return "a number is too large (integers must fit in 64 bits, "
		       "reals in a double)";
	case json_error_stack_overflow:
		return "it is nested deeper than 2048 levels";
	case json_error_end_of_input_expected:
		return "there is more after the JSON value";
	default:
		return "it has a syntax error";
	}
}

int ingest_parse(const char *body, size_t len, json_t **root,
		 struct ingest_error *err)
{
	json_error_t je;
	json_t *j;

	if (len == 0)
		return fail(err, INGEST_INVALID_JSON, "the request body is empty; "
			    "send a JSON object");
	j = json_loadb(body, len, JSON_DECODE_ANY, &je);
	if (!j)
		return fail(err, INGEST_INVALID_JSON,
			    "the body is not valid JSON: %s (line %d, column %d)",
			    json_problem(&je), je.line, je.column);
	if (!json_is_object(j)) {
		json_decref(j);
		return fail(err, INGEST_INVALID_EVENT,
			    "the body must be a JSON object");
	}
	*root = j;
	return 0;
}

const char *ingest_body_write_key(json_t *root)
{
	return json_string_value(json_object_get(root, "writeKey"));
}

void ingest_job_init(struct ingest_job *job)
{
	memset(job, 0, sizeof(*job));
}

void ingest_job_release(struct ingest_job *job)
{
	buf_release(&job->tuples);
	buf_release(&job->strings);
	buf_release(&job->rejected);
	free(job->rows);
	free(job->rejections);
	job->rows = NULL;
	job->rejections = NULL;
	job->nrows = job->nrejected = 0;
}

/*
 * Reads an id field that Segment allows as a string or a number; numbers are
 * replaced by their string form in the event so the stored payload agrees
 * with the identifier. *out is NULL when absent or null.
 */
static int id_field(json_t *ev, const char *name, const char **out,
		    struct ingest_error *err)
{
	json_t *v = json_object_get(ev, name);
	char num[64];

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_string(v)) {
		*out = json_string_value(v);
		return 0;
	}
	if (json_is_integer(v))
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(v));
	else if (json_is_real(v))
		snprintf(num, sizeof(num), "%.15g", json_real_value(v));
	else
		return fail(err, INGEST_INVALID_EVENT,
			    "'%s' must be a string or a number", name);
	json_object_set_new(ev, name, json_string(num));
	*out = json_string_value(json_object_get(ev, name));
	return 0;
}

static int optional_object(json_t *ev, const char *name,
			   struct ingest_error *err)
{
	json_t *v = json_object_get(ev, name);

	if (v && !json_is_object(v) && !json_is_null(v))
		return fail(err, INGEST_INVALID_EVENT,
			    "'%s' must be an object", name);
	return 0;
}

static int time_field(json_t *v, const char *name, bool *present,
		      int64_t *us, struct ingest_error *err)
{
	*present = false;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || ingest_parse_time(json_string_value(v), us))
		return fail(err, INGEST_INVALID_TIMESTAMP,
			    "'%s' is not an ISO-8601 date-time such as "
			    "2026-11-22T10:00:00.000Z", name);
	*present = true;
	return 0;
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/* ---- identifiers ---- */

#define MAX_IDS 64

struct ids {
	struct buf json;	/* [{"type":..,"key":..,"value":..},...] */
	size_t n;
	uint64_t seen[MAX_IDS];	/* hashes of (type, key) already added */
	size_t end[MAX_IDS];	/* offset of each entry's closing '}' in json */
	bool blocked[MAX_IDS];	/* whether each entry carries "blocked":true */
	const struct privacy_hasher *hasher;
	const struct keyset *suppressed;	/* NULL: none */
	bool hit;		/* a key is in suppressed */
};

/* Placeholders that clients send when they have no real id. */
static const char *const blocked_values[] = {
	"null", "undefined", "none", "nan", "anonymous", "guest", "unknown",
	"not_authenticated", "[object Object]", "-1",
	/* "", "0" and the like: see zeros_and_dashes() */
};

/* ASCII white space, the set privacy_normalise() trims. */
static bool is_space(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* ASCII only, whatever the locale, so "NULL" is blocked everywhere alike. */
static bool equal_nocase(const char *a, const char *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (ascii_lower(a[i]) != ascii_lower(b[i]))
			return false;
	return true;
}

/* "0", "0000", "000-0", "-", "---": nothing but zeros and dashes. */
static bool zeros_and_dashes(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != '0' && s[i] != '-')
			return false;
	return true;
}

bool ingest_blocked_value(const char *raw, size_t len)
{
	while (len > 0 && is_space(raw[0])) {
		raw++;
		len--;
	}
	while (len > 0 && is_space(raw[len - 1]))
		len--;
	if (len == 0 || zeros_and_dashes(raw, len))
		return true;
	for (size_t i = 0; i < sizeof(blocked_values) / sizeof(*blocked_values); i++)
		if (strlen(blocked_values[i]) == len &&
		    equal_nocase(raw, blocked_values[i], len))
			return true;
	return false;
}

/*
 * Flags entry i after the fact: a later value with the same key was
 * blocked. Only a phone can do that ("-1" and "1" both normalise to "1"),
 * and blocked wins so the key is never an identifier, whatever the order.
 */
static void ids_mark_blocked(struct ids *ids, size_t i)
{
	static const char flag[] = ",\"blocked\":true";
	size_t n = sizeof(flag) - 1, at = ids->end[i], tail = ids->json.len - at;

	buf_add(&ids->json, flag, n);	/* room; the bytes are placed below */
	memmove(ids->json.data + at + n, ids->json.data + at, tail);
	memcpy(ids->json.data + at, flag, n);
	for (size_t j = i; j < ids->n; j++)
		ids->end[j] += n;
	ids->blocked[i] = true;
}

static void ids_add(struct ids *ids, const char *type, const char *raw,
		    bool previous)
{
	static const char hex[] = "0123456789abcdef";
	size_t len = strlen(raw);
	char stack[256], *norm = len < sizeof(stack) ? stack : xmalloc(len + 1);
	uint8_t key[PRIVACY_KEY_BYTES];
	char keyhex[2 * PRIVACY_KEY_BYTES];
	size_t nlen;

	if (ids->n >= MAX_IDS)
		goto out_free;
	nlen = privacy_normalise(type, raw, len, norm);
	if (nlen == 0)
		goto out_free;	/* a blocked "" or " " included: nothing to flag */
	privacy_identifier_key(ids->hasher, type, norm, nlen, key);
	if (ids->suppressed && keyset_has(ids->suppressed, key))
		ids->hit = true;

	/* Judged on the raw value: a phone's "-1" normalises to "1". */
	bool blocked = ingest_blocked_value(raw, len);
	uint64_t fp;

	memcpy(&fp, key, sizeof(fp));
	fp ^= previous;
	for (size_t i = 0; i < ids->n; i++) {
		if (ids->seen[i] == fp) {
			if (blocked && !ids->blocked[i])
				ids_mark_blocked(ids, i);
			goto out_free;
		}
	}
	for (int i = 0; i < PRIVACY_KEY_BYTES; i++) {
		keyhex[2 * i] = hex[key[i] >> 4];
		keyhex[2 * i + 1] = hex[key[i] & 15];
	}

	char *display = privacy_identifier_display(ids->hasher, type, norm, nlen,
						   privacy_display_default(type));

	buf_addc(&ids->json, ids->json.len ? ',' : '[');
	buf_adds(&ids->json, "{\"type\":");
	buf_add_json_string(&ids->json, type, strlen(type));
	buf_adds(&ids->json, ",\"key\":\"");
	buf_add(&ids->json, keyhex, sizeof(keyhex));
	buf_adds(&ids->json, "\",\"value\":");
	if (display)
		buf_add_json_string(&ids->json, display, strlen(display));
	else
		buf_adds(&ids->json, "null");
	if (previous)
		buf_adds(&ids->json, ",\"previous\":true");
	if (blocked)
		buf_adds(&ids->json, ",\"blocked\":true");
	ids->seen[ids->n] = fp;
	ids->end[ids->n] = ids->json.len;
	ids->blocked[ids->n++] = blocked;
	buf_addc(&ids->json, '}');
	free(display);
out_free:
	if (norm != stack)
		free(norm);
}

static const char *str_of(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* Segment's default identifiers (see docs/api.md, "Identifiers"). */
static void collect_ids(struct ids *ids, enum ingest_kind kind, json_t *ev,
			const char *user_id, const char *anonymous_id)
{
	json_t *ctx = json_object_get(ev, "context");
	json_t *ctraits = json_object_get(ctx, "traits");
	json_t *device = json_object_get(ctx, "device");
	const char *s;

	/* A group call's traits describe the group, not the user. */
	json_t *traits = kind == INGEST_GROUP ? NULL : json_object_get(ev, "traits");

	if (user_id)
		ids_add(ids, "user_id", user_id, false);
	if (anonymous_id)
		ids_add(ids, "anonymous_id", anonymous_id, false);
	if ((s = str_of(traits, "email")))
		ids_add(ids, "email", s, false);
	if ((s = str_of(ctraits, "email")))
		ids_add(ids, "email", s, false);
	if ((s = str_of(traits, "phone")))
		ids_add(ids, "phone", s, false);
	if ((s = str_of(ctraits, "phone")))
		ids_add(ids, "phone", s, false);

	const char *dtype = json_string_value(json_object_get(device, "type"));

	if (dtype && (strcasecmp(dtype, "ios") == 0 ||
		      strcasecmp(dtype, "android") == 0)) {
		bool ios = strcasecmp(dtype, "ios") == 0;

		if ((s = str_of(device, "id")))
			ids_add(ids, ios ? "ios.id" : "android.id", s, false);
		if (json_is_true(json_object_get(device, "adTrackingEnabled")) &&
		    (s = str_of(device, "advertisingId")))
			ids_add(ids, ios ? "ios.idfa" : "android.idfa", s, false);
		if ((s = str_of(device, "token")))
			ids_add(ids, ios ? "ios.push_token" : "android.push_token",
				s, false);
	}

	json_t *ext = json_object_get(ctx, "externalIds");
	size_t i;
	json_t *e;

	json_array_foreach(ext, i, e) {
		const char *id = json_string_value(json_object_get(e, "id"));
		const char *type = json_string_value(json_object_get(e, "type"));
		const char *coll = json_string_value(json_object_get(e, "collection"));
		const char *enc = json_string_value(json_object_get(e, "encoding"));
		char lower[64];
		size_t n;

		if (!id || !type || (coll && strcmp(coll, "users") != 0) ||
		    (enc && strcmp(enc, "none") != 0))
			continue;
		n = strlen(type);
		if (n == 0 || n >= sizeof(lower))
			continue;
		for (size_t k = 0; k <= n; k++)
			lower[k] = (char)tolower((unsigned char)type[k]);
		ids_add(ids, lower, id, false);
	}

	/* Both are strings in a valid event; a refused one may lack them. */
	if (kind == INGEST_ALIAS && (s = str_of(ev, "previousId"))) {
		/* The engine resolves previousId as a user_id, else an anonymous_id. */
		ids_add(ids, "user_id", s, true);
		ids_add(ids, "anonymous_id", s, true);
	}
	if (kind == INGEST_GROUP && (s = str_of(ev, "groupId")))
		ids_add(ids, "group_id", s, false);
	if (ids->json.len == 0)
		buf_addc(&ids->json, '[');
	buf_addc(&ids->json, ']');
}

/* ---- rows ---- */

static void add_row(struct ingest_job *job, int64_t ws, enum ingest_kind kind,
		    const char *mid, size_t offset)
{
	if (job->nrows == job->rows_cap) {
		job->rows_cap = job->rows_cap ? job->rows_cap * 2 : 8;
		job->rows = xrealloc(job->rows, xmul(job->rows_cap,
						     sizeof(*job->rows)));
	}
	struct ingest_row *r = &job->rows[job->nrows++];

	r->offset = offset;
	r->len = job->tuples.len - offset;
	r->message_id = job->strings.len;
	r->workspace_id = ws;
	r->kind = kind;
	r->stored = false;
	r->seq = 0;
	buf_add(&job->strings, mid, strlen(mid) + 1);
}

static void tuple_time(struct buf *b, bool present, int64_t us)
{
	if (present)
		store_tuple_timestamptz(b, us);
	else
		store_tuple_null(b);
}

/* The range PostgreSQL's timestamptz and our parser agree on: years 1-9999. */
#define MIN_TIME_US (-62135596800LL * 1000000)
#define MAX_TIME_US (253402300800LL * 1000000 - 1)

/*
 * The messageId as stored: unchanged, unless a detector finds personal
 * data in it; then a keyed hash of the whole value, so a retry of the same
 * event still deduplicates and two ids never collapse into one. Takes the
 * reference to raw; returns a new one.
 */
static json_t *mask_message_id(const struct ingest_context *ctx, json_t *raw)
{
	const char *s = json_string_value(raw);
	size_t len = json_string_length(raw);
	char *masked = privacy_mask_text(ctx->policy, ctx->hasher, s, len);
	uint8_t key[PRIVACY_KEY_BYTES];
	char text[2 + 2 * PRIVACY_KEY_BYTES + 1] = "h:";

	if (strlen(masked) == len && memcmp(masked, s, len) == 0) {
		free(masked);
		return raw;
	}
	free(masked);
	privacy_identifier_key(ctx->hasher, "message_id", s, len, key);
	hex_encode(key, sizeof(key), text + 2);
	json_decref(raw);
	return json_string(text);
}

/*
 * Validates one event of the given kind and appends its row to job, or
 * only counts it in job->suppressed if it carries a suppressed key. On
 * failure returns WEFT_EINVAL with err set, job untouched, and *masked
 * telling whether ev was already masked. ids (empty, the caller's to
 * release) gets the event's identifiers once they are read, just before
 * masking: on failure it is empty exactly when ev is not masked.
 */
static int build_event(const struct ingest_context *ctx, enum ingest_kind kind,
		       json_t *ev, const int64_t *batch_sent_us, struct ingest_job *job,
		       struct ids *ids, struct ingest_error *err, bool *masked)
{
	const char *user_id, *anonymous_id, *s;
	bool has_sent, has_orig, has_ts;
	int64_t sent_us = 0, orig_us = 0, ts_us = 0;
	char uuid[37];
	int rc;

	*masked = false;
	if ((rc = id_field(ev, "userId", &user_id, err)) ||
	    (rc = id_field(ev, "anonymousId", &anonymous_id, err)))
		return rc;
	if (!user_id && !anonymous_id)
		return fail(err, INGEST_MISSING_IDENTITY,
			    "every event needs a 'userId' or an 'anonymousId'");
	if ((rc = optional_object(ev, "context", err)) ||
	    (rc = optional_object(ev, "properties", err)) ||
	    (rc = optional_object(ev, "traits", err)) ||
	    (rc = optional_object(ev, "integrations", err)))
		return rc;
	switch (kind) {
	case INGEST_TRACK: {
		json_t *name = json_object_get(ev, "event");

		if (!name || json_is_null(name))
			return fail(err, INGEST_MISSING_FIELD,
				    "track events need an 'event' name");
		if (!json_is_string(name) || !json_string_length(name))
			return fail(err, INGEST_INVALID_EVENT,
				    "'event' must be a non-empty string");
		break;
	}
	case INGEST_PAGE:
	case INGEST_SCREEN: {
		json_t *name = json_object_get(ev, "name");

		if (name && !json_is_null(name) && !json_is_string(name))
			return fail(err, INGEST_INVALID_EVENT,
				    "'name' must be a string");
		break;
	}
	case INGEST_GROUP:
		if ((rc = id_field(ev, "groupId", &s, err)))
			return rc;
		if (!s || !*s)
			return fail(err, INGEST_MISSING_FIELD,
				    "group calls need a 'groupId'");
		break;
	case INGEST_ALIAS:
		if ((rc = id_field(ev, "previousId", &s, err)))
			return rc;
		if (!s || !*s || !user_id || !*user_id)
			return fail(err, INGEST_MISSING_FIELD,
				    "alias calls need a 'previousId' and a 'userId'");
		break;
	default:
		break;
	}

	json_t *mid = json_object_get(ev, "messageId");

	if (mid && !json_is_null(mid) && !json_is_string(mid)) {
		if ((rc = id_field(ev, "messageId", &s, err)))
			return rc;
		mid = json_object_get(ev, "messageId");
	}
	bool generated = !mid || json_is_null(mid) || !json_string_length(mid);

	if (generated) {
		ingest_uuid4(uuid);
		json_object_set_new(ev, "messageId", json_string(uuid));
	} else if (utf8_chars(json_string_value(mid)) > INGEST_MAX_MESSAGE_ID) {
		return fail(err, INGEST_MESSAGE_ID_TOO_LONG,
			    "'messageId' is longer than %d characters",
			    INGEST_MAX_MESSAGE_ID);
	}

	/*
	 * Segment's clock-skew correction: the event happened (sentAt -
	 * originalTimestamp) before the client sent it, so it happened that
	 * long before the server received it.
	 */
	if ((rc = time_field(json_object_get(ev, "sentAt"), "sentAt", &has_sent,
			     &sent_us, err)) ||
	    (rc = time_field(json_object_get(ev, "originalTimestamp"),
			     "originalTimestamp", &has_orig, &orig_us, err)) ||
	    (rc = time_field(json_object_get(ev, "timestamp"), "timestamp",
			     &has_ts, &ts_us, err)))
		return rc;
	if (!has_sent && batch_sent_us) {
		has_sent = true;
		sent_us = *batch_sent_us;
	}
	if (!has_orig && has_ts) {
		has_orig = true;
		orig_us = ts_us;
	}
	if (has_orig)
		ts_us = has_sent ? ctx->received_at_us - (sent_us - orig_us)
				 : orig_us;
	else
		ts_us = ctx->received_at_us;
	if (ts_us < MIN_TIME_US || ts_us > MAX_TIME_US)
		return fail(err, INGEST_INVALID_TIMESTAMP,
			    "the corrected timestamp, receivedAt - (sentAt - "
			    "originalTimestamp), falls outside the years 1-9999; "
			    "check the client's clock");

	/*
	 * Identifiers from the raw values, then mask everything but the
	 * messageId, which is the dedupe key and must not change (nor two
	 * become one, as IP truncation would make them).
	 */
	collect_ids(ids, kind, ev, user_id, anonymous_id);
	if (ids->hit) {
		job->suppressed++;	/* an erased person's: acknowledged, dropped */
		return 0;
	}

	json_t *raw_mid = json_incref(json_object_get(ev, "messageId"));

	json_object_del(ev, "messageId");
	privacy_mask_event(ctx->policy, ctx->hasher, ev);
	json_object_set_new(ev, "messageId",
			    generated ? raw_mid : mask_message_id(ctx, raw_mid));
	*masked = true;

	size_t start = job->tuples.len;
	struct buf *t = &job->tuples;
	const char *name = json_string_value(json_object_get(
		ev, kind == INGEST_TRACK ? "event" : "name"));
	const char *msgid = json_string_value(json_object_get(ev, "messageId"));

	store_tuple_begin(t, STORE_EVENT_FIELDS);
	store_tuple_int8(t, ctx->workspace_id);
	store_tuple_int8(t, 0);	/* seq: the committer numbers rows */
	store_tuple_text(t, msgid, strlen(msgid));
	store_tuple_text(t, kind_names[kind], strlen(kind_names[kind]));
	if (name && (kind == INGEST_TRACK || kind == INGEST_PAGE ||
		     kind == INGEST_SCREEN))
		store_tuple_text(t, name, strlen(name));
	else
		store_tuple_null(t);
	store_tuple_timestamptz(t, ctx->received_at_us);
	tuple_time(t, has_sent, sent_us);
	tuple_time(t, has_orig, orig_us);
	store_tuple_timestamptz(t, ts_us);
	if (ctx->key_id)
		store_tuple_int8(t, ctx->key_id);
	else
		store_tuple_null(t);
	store_tuple_jsonb(t, ids->json.data, ids->json.len);

	/*
	 * The payload is written straight into the tuple, reals in their
	 * shortest form (lib/jsonw.h): jansson's dump would store 7.7 as
	 * 7.7000000000000002. The limit applies to what is stored.
	 */
	size_t at = store_tuple_jsonb_begin(t);

	buf_add_json(t, ev);

	size_t plen = store_tuple_jsonb_end(t, at);

	if (plen > INGEST_MAX_EVENT_BYTES) {
		t->len = start;
		return fail(err, INGEST_EVENT_TOO_LARGE,
			    "the event is %zu bytes; the limit is %d bytes",
			    plen, INGEST_MAX_EVENT_BYTES);
	}
	add_row(job, ctx->workspace_id, kind, msgid, start);
	job->events_by_kind[kind]++;
	return 0;
}

/* ids_json: the item's identifiers, or NULL when it has none. */
static void reject(const struct ingest_context *ctx, struct ingest_job *job,
		   size_t index, json_t *item, bool masked,
		   const struct buf *ids_json, const struct ingest_error *err)
{
	struct buf *t = &job->rejected;

	if (job->nrejected == job->rejections_cap) {
		job->rejections_cap = job->rejections_cap ? job->rejections_cap * 2 : 4;
		job->rejections = xrealloc(job->rejections,
			xmul(job->rejections_cap, sizeof(*job->rejections)));
	}
	struct ingest_rejection *r = &job->rejections[job->nrejected++];

	r->index = index;
	r->reason = err->reason;
	snprintf(r->message, sizeof(r->message), "%s", err->message);

	if (json_is_object(item) && !masked)
		privacy_mask_event(ctx->policy, ctx->hasher, item);
	const char *mid = json_string_value(json_object_get(item, "messageId"));

	store_tuple_begin(t, STORE_REJECTED_FIELDS);
	store_tuple_int8(t, ctx->workspace_id);
	store_tuple_timestamptz(t, ctx->received_at_us);
	if (mid && utf8_chars(mid) <= INGEST_MAX_MESSAGE_ID)
		store_tuple_text(t, mid, strlen(mid));
	else
		store_tuple_null(t);
	store_tuple_int4(t, (int32_t)index);
	store_tuple_text(t, ingest_reason_code(err->reason),
			 strlen(ingest_reason_code(err->reason)));
	store_tuple_text(t, err->message, strlen(err->message));

	/* Keep what can be kept: an oversized event is stored without its body. */
	if (json_is_object(item) && err->reason != INGEST_EVENT_TOO_LARGE) {
		size_t at = store_tuple_jsonb_begin(t);

		buf_add_json(t, item);
		store_tuple_jsonb_end(t, at);
	} else {
		store_tuple_null(t);
	}
	if (ids_json)
		store_tuple_jsonb(t, ids_json->data, ids_json->len);
	else
		store_tuple_null(t);
}

/*
 * The identifiers of a batch item refused before build_event() read them,
 * read from its raw values the same way: as its own type if it has a
 * valid one, else as a track; numeric ids by their string form.
 */
static void raw_ids(json_t *item, struct ids *ids)
{
	const char *type = json_string_value(json_object_get(item, "type"));
	enum ingest_kind kind = INGEST_TRACK;
	const char *user_id, *anonymous_id, *s;
	struct ingest_error ignored;

	if (!json_is_object(item))
		return;
	if (type && ingest_kind_parse(type, &kind) == 0 && kind == INGEST_BATCH)
		kind = INGEST_TRACK;
	/* An id of the wrong type (an object, say) is no identifier. */
	id_field(item, "userId", &user_id, &ignored);
	id_field(item, "anonymousId", &anonymous_id, &ignored);
	if (kind == INGEST_ALIAS)
		id_field(item, "previousId", &s, &ignored);
	if (kind == INGEST_GROUP)
		id_field(item, "groupId", &s, &ignored);
	collect_ids(ids, kind, item, user_id, anonymous_id);
}

/*
 * A refused batch item: kept in rejected_events with the identifiers it
 * carries, unless one of them is suppressed; then it is only counted, as
 * a valid event would be.
 */
static void refuse(const struct ingest_context *ctx, struct ingest_job *job,
		   size_t index, json_t *item, bool masked, struct ids *ids,
		   const struct ingest_error *err)
{
	if (ids->json.len == 0)
		raw_ids(item, ids);
	if (ids->hit)
		job->suppressed++;
	else
		reject(ctx, job, index, item, masked, ids->n ? &ids->json : NULL,
		       err);
}

/* Copies batch-level context/integrations keys the item does not set. */
static void merge_defaults(json_t *item, const char *name, json_t *defaults)
{
	json_t *own = json_object_get(item, name);
	const char *k;
	json_t *v;

	if (!json_is_object(defaults))
		return;
	if (!own || json_is_null(own)) {
		json_object_set_new(item, name, json_deep_copy(defaults));
		return;
	}
	if (!json_is_object(own))
		return;	/* validation refuses it */
	json_object_foreach(defaults, k, v) {
		if (!json_object_get(own, k))
			json_object_set_new(own, k, json_deep_copy(v));
	}
}

int ingest_build(const struct ingest_context *ctx, json_t *root,
		 struct ingest_job *job, struct ingest_error *err)
{
	bool masked;
	int rc;

	if (ctx->kind != INGEST_BATCH) {
		struct ids ids = { .hasher = ctx->hasher,
				   .suppressed = ctx->suppressed };

		json_object_set_new(root, "type", json_string(kind_names[ctx->kind]));
		json_object_del(root, "writeKey");
		rc = build_event(ctx, ctx->kind, root, NULL, job, &ids, err, &masked);
		buf_release(&ids.json);
		if (rc)
			ingest_job_release(job);
		return rc;
	}

	json_t *batch = json_object_get(root, "batch");
	json_t *bctx = json_object_get(root, "context");
	json_t *bint = json_object_get(root, "integrations");
	int64_t bsent_us;
	bool has_bsent;
	size_t i;
	json_t *item;

	if (!json_is_array(batch))
		return fail(err, INGEST_INVALID_EVENT,
			    "a batch needs a 'batch' array of events");
	if (json_array_size(batch) > INGEST_MAX_BATCH_EVENTS)
		return fail(err, INGEST_BATCH_TOO_LARGE,
			    "the batch has %zu events; the limit is %d",
			    json_array_size(batch), INGEST_MAX_BATCH_EVENTS);
	if ((bctx && !json_is_object(bctx) && !json_is_null(bctx)) ||
	    (bint && !json_is_object(bint) && !json_is_null(bint)))
		return fail(err, INGEST_INVALID_EVENT,
			    "the batch's 'context' and 'integrations' must be "
			    "objects");
	if (time_field(json_object_get(root, "sentAt"), "sentAt", &has_bsent,
		       &bsent_us, err))
		return WEFT_EINVAL;

	json_array_foreach(batch, i, item) {
		struct ingest_error e;
		struct ids ids = { .hasher = ctx->hasher,
				   .suppressed = ctx->suppressed };
		enum ingest_kind kind;
		const char *type = json_string_value(json_object_get(item, "type"));

		if (!json_is_object(item)) {
			fail(&e, INGEST_INVALID_EVENT,
			     "batch item %zu is not an object", i);
			refuse(ctx, job, i, item, false, &ids, &e);
		} else if (!type || ingest_kind_parse(type, &kind) ||
			   kind == INGEST_BATCH) {
			fail(&e, INGEST_INVALID_EVENT,
			     "batch item %zu needs a 'type': track, identify, "
			     "page, screen, group or alias", i);
			refuse(ctx, job, i, item, false, &ids, &e);
		} else {
			merge_defaults(item, "context", bctx);
			merge_defaults(item, "integrations", bint);
			json_object_del(item, "writeKey");
			if (build_event(ctx, kind, item, has_bsent ? &bsent_us : NULL,
					job, &ids, &e, &masked))
				refuse(ctx, job, i, item, masked, &ids, &e);
		}
		buf_release(&ids.json);
	}
	return 0;
}
