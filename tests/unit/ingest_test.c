/*
 * Unit tests for ingest/: parsing a request body, validating events against
 * Segment's spec as Weft implements it (docs/api.md), timestamps and their
 * clock-skew correction, generated messageIds, identifier extraction, and
 * the binary COPY rows that ingest_build() produces. The rows are decoded
 * here by a small independent reader of PostgreSQL's binary tuple format,
 * so a field in the wrong place or of the wrong width fails a test rather
 * than a COPY in production.
 *
 * The privacy context is real: a master secret written to a temporary file,
 * the hasher of workspace 1, and the default masking policy.
 */
#define _GNU_SOURCE	/* memmem, timegm */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ingest/ingest.h"
#include "lib/buf.h"
#include "lib/digest.h"
#include "lib/err.h"
#include "lib/keyset.h"
#include "privacy/privacy.h"
#include "store/store.h"

#define WORKSPACE_ID 1
#define KEY_ID 7
/* 2026-11-22T10:00:00Z, the server's clock in every test. */
#define RECEIVED_US (1795341600LL * 1000000)
/* Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch). */
#define PG_EPOCH_US 946684800000000LL

static struct privacy_master *master;
static struct privacy_hasher *hasher;
static struct privacy_policy *policy;
static char key_path[] = "/tmp/weft-ingest-test-XXXXXX";

static int group_setup(void **state)
{
	unsigned char secret[PRIVACY_MASTER_BYTES];
	int fd;

	(void)state;
	for (size_t i = 0; i < sizeof(secret); i++)
		secret[i] = (unsigned char)(i * 37 + 11);
	fd = mkstemp(key_path);
	if (fd < 0)
		return -1;
	if (fchmod(fd, 0600) != 0 ||
	    write(fd, secret, sizeof(secret)) != (ssize_t)sizeof(secret)) {
		close(fd);
		return -1;
	}
	close(fd);
	if (privacy_master_load(key_path, &master) != 0)
		return -1;
	hasher = privacy_hasher_new(master, WORKSPACE_ID);
	policy = privacy_policy_default();
	return hasher && policy ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	privacy_policy_free(policy);
	privacy_hasher_free(hasher);
	privacy_master_free(master);
	unlink(key_path);
	return 0;
}

/* ---- helpers: formatting, parsing, building ---- */

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	assert_true(vasprintf(&s, f, ap) >= 0);
	va_end(ap);
	return s;
}

/* A string of n copies of unit (unit may be several bytes). */
static char *repeat(const char *unit, size_t n)
{
	size_t u = strlen(unit);
	char *s = malloc(u * n + 1);

	assert_non_null(s);
	for (size_t i = 0; i < n; i++)
		memcpy(s + i * u, unit, u);
	s[u * n] = '\0';
	return s;
}

static struct ingest_context context_of(enum ingest_kind kind)
{
	struct ingest_context ctx = {
		.kind = kind,
		.workspace_id = WORKSPACE_ID,
		.key_id = KEY_ID,
		.received_at_us = RECEIVED_US,
		.policy = policy,
		.hasher = hasher,
	};

	return ctx;
}

static int parse(const char *body, size_t len, json_t **root,
		 struct ingest_error *err)
{
	memset(err, 0, sizeof(*err));
	return ingest_parse(body, len, root, err);
}

/* Parses a body that must be a JSON object. */
static json_t *parse_ok(const char *body)
{
	struct ingest_error err;
	json_t *root = NULL;

	assert_int_equal(parse(body, strlen(body), &root, &err), 0);
	assert_non_null(root);
	return root;
}

/* Parses a body that must be refused, and returns why. */
static enum ingest_reason parse_refused(const char *body, size_t len)
{
	static json_t untouched;
	struct ingest_error err;
	json_t *root = &untouched;

	assert_int_equal(parse(body, len, &root, &err), WEFT_EINVAL);
	assert_ptr_equal(root, &untouched);
	assert_true(err.reason != INGEST_OK);
	assert_true(strlen(err.message) > 0);
	return err.reason;
}

static int build_ctx(const struct ingest_context *ctx, const char *body,
		     struct ingest_job *job, struct ingest_error *err)
{
	json_t *root = parse_ok(body);
	int rc;

	ingest_job_init(job);
	memset(err, 0, sizeof(*err));
	rc = ingest_build(ctx, root, job, err);
	json_decref(root);
	return rc;
}

static int build(enum ingest_kind kind, const char *body,
		 struct ingest_job *job, struct ingest_error *err)
{
	struct ingest_context ctx = context_of(kind);

	return build_ctx(&ctx, body, job, err);
}

/* Builds a single event that must be refused; the job must be left empty. */
static enum ingest_reason build_refused(enum ingest_kind kind,
					const char *body)
{
	struct ingest_job job;
	struct ingest_error err;

	assert_int_equal(build(kind, body, &job, &err), WEFT_EINVAL);
	assert_int_equal(job.nrows, 0);
	assert_int_equal(job.nrejected, 0);
	assert_int_equal(job.tuples.len, 0);
	assert_true(strlen(err.message) > 0);
	ingest_job_release(&job);
	return err.reason;
}

/* ---- helpers: a reader of PostgreSQL binary COPY tuples ---- */

struct field {
	int32_t len;			/* -1 for NULL */
	const unsigned char *p;
};

struct tuple {
	int n;
	struct field f[16];
	size_t size;			/* bytes the tuple took */
};

enum {
	F_WORKSPACE, F_SEQ, F_MESSAGE_ID, F_TYPE, F_EVENT, F_RECEIVED_AT,
	F_SENT_AT, F_ORIGINAL_TIMESTAMP, F_TIMESTAMP, F_KEY_ID, F_IDENTIFIERS,
	F_PAYLOAD,
};

enum {
	R_WORKSPACE, R_RECEIVED_AT, R_MESSAGE_ID, R_INDEX, R_CODE, R_MESSAGE,
	R_PAYLOAD, R_IDENTIFIERS,
};

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* Decodes one tuple from data (avail bytes), asserting it is well formed. */
static void decode_tuple(const void *data, size_t avail, struct tuple *t)
{
	const unsigned char *p = data;
	size_t at = 2;

	assert_true(avail >= 2);
	t->n = (int16_t)(p[0] << 8 | p[1]);
	assert_true(t->n > 0 && t->n <= 16);
	for (int i = 0; i < t->n; i++) {
		assert_true(at + 4 <= avail);
		t->f[i].len = (int32_t)be32(p + at);
		at += 4;
		assert_true(t->f[i].len >= -1);
		if (t->f[i].len > 0) {
			assert_true((size_t)t->f[i].len <= avail - at);
			t->f[i].p = p + at;
			at += (size_t)t->f[i].len;
		} else {
			t->f[i].p = NULL;
		}
	}
	t->size = at;
}

static bool f_null(const struct tuple *t, int i)
{
	return t->f[i].len == -1;
}

static int64_t f_int8(const struct tuple *t, int i)
{
	assert_int_equal(t->f[i].len, 8);
	return (int64_t)be64(t->f[i].p);
}

static int32_t f_int4(const struct tuple *t, int i)
{
	assert_int_equal(t->f[i].len, 4);
	return (int32_t)be32(t->f[i].p);
}

/* The timestamptz field as Unix microseconds. */
static int64_t f_time(const struct tuple *t, int i)
{
	return f_int8(t, i) + PG_EPOCH_US;
}

/* The text field as a malloc'd C string; NULL for SQL NULL. */
static char *f_text(const struct tuple *t, int i)
{
	char *s;

	if (f_null(t, i))
		return NULL;
	s = malloc((size_t)t->f[i].len + 1);
	assert_non_null(s);
	if (t->f[i].len)
		memcpy(s, t->f[i].p, (size_t)t->f[i].len);
	s[t->f[i].len] = '\0';
	assert_int_equal(strlen(s), (size_t)t->f[i].len);
	return s;
}

static void assert_text(const struct tuple *t, int i, const char *want)
{
	char *s = f_text(t, i);

	assert_non_null(s);
	assert_string_equal(s, want);
	free(s);
}

/* The jsonb field parsed (a new reference); it must carry version 1. */
static json_t *f_jsonb(const struct tuple *t, int i)
{
	json_error_t je;
	json_t *j;

	assert_true(t->f[i].len >= 2);
	assert_int_equal(t->f[i].p[0], 1);
	j = json_loadb((const char *)t->f[i].p + 1, (size_t)t->f[i].len - 1,
		       0, &je);
	if (!j)
		fail_msg("jsonb field %d does not parse: %s", i, je.text);
	return j;
}

/* Decodes row i of job, checking its bookkeeping against the bytes. */
static void row_tuple(const struct ingest_job *job, size_t i, struct tuple *t)
{
	const struct ingest_row *r = &job->rows[i];

	assert_true(i < job->nrows);
	assert_true(r->offset + r->len <= job->tuples.len);
	decode_tuple(job->tuples.data + r->offset, r->len, t);
	assert_int_equal(t->size, r->len);
	assert_int_equal(t->n, STORE_EVENT_FIELDS);
	assert_int_equal(r->workspace_id, WORKSPACE_ID);
	assert_false(r->stored);
	/* The committer patches seq at this offset; it must be the int8's data. */
	assert_int_equal(be32((const unsigned char *)job->tuples.data + r->offset +
			      STORE_EVENT_SEQ_OFFSET - 4), 8);
	assert_ptr_equal(t->f[F_SEQ].p, (const unsigned char *)job->tuples.data +
			 r->offset + STORE_EVENT_SEQ_OFFSET);
	/* The row's messageId string is the one in the tuple. */
	assert_true(r->message_id < job->strings.len);
	assert_text(t, F_MESSAGE_ID, job->strings.data + r->message_id);
}

/* Decodes the k-th rejected-event tuple of job. */
static void rejected_tuple(const struct ingest_job *job, size_t k,
			   struct tuple *t)
{
	size_t at = 0;

	assert_true(k < job->nrejected);
	for (size_t i = 0; i <= k; i++) {
		decode_tuple(job->rejected.data + at, job->rejected.len - at, t);
		assert_int_equal(t->n, STORE_REJECTED_FIELDS);
		at += t->size;
	}
}

/* All of job's tuple buffers decode exactly, with nothing left over. */
static void assert_job_well_formed(const struct ingest_job *job)
{
	struct tuple t;
	size_t at = 0;

	for (size_t i = 0; i < job->nrows; i++) {
		assert_int_equal(job->rows[i].offset, at);
		row_tuple(job, i, &t);
		at += t.size;
	}
	assert_int_equal(at, job->tuples.len);
	at = 0;
	for (size_t k = 0; k < job->nrejected; k++) {
		decode_tuple(job->rejected.data + at, job->rejected.len - at, &t);
		assert_int_equal(t.n, STORE_REJECTED_FIELDS);
		at += t.size;
	}
	assert_int_equal(at, job->rejected.len);
}

/* One accepted event, decoded. */
struct built {
	struct ingest_job job;
	struct tuple t;
	json_t *payload;
	json_t *ids;
};

static void decode_row(struct built *b, size_t i)
{
	json_decref(b->payload);
	json_decref(b->ids);
	row_tuple(&b->job, i, &b->t);
	b->payload = f_jsonb(&b->t, F_PAYLOAD);
	b->ids = f_jsonb(&b->t, F_IDENTIFIERS);
	assert_true(json_is_object(b->payload));
	assert_true(json_is_array(b->ids));
}

static void build_ok_ctx(struct built *b, const struct ingest_context *ctx,
			 const char *body)
{
	struct ingest_error err;
	int rc;

	memset(b, 0, sizeof(*b));
	rc = build_ctx(ctx, body, &b->job, &err);
	if (rc)
		fail_msg("refused (%s): %s", ingest_reason_code(err.reason),
			 err.message);
	assert_job_well_formed(&b->job);
	if (ctx->kind != INGEST_BATCH) {
		assert_int_equal(b->job.nrows, 1);
		decode_row(b, 0);
	} else if (b->job.nrows) {
		decode_row(b, 0);
	}
}

static void build_ok(struct built *b, enum ingest_kind kind, const char *body)
{
	struct ingest_context ctx = context_of(kind);

	build_ok_ctx(b, &ctx, body);
}

static void built_release(struct built *b)
{
	json_decref(b->payload);
	json_decref(b->ids);
	ingest_job_release(&b->job);
}

static const char *payload_str(const struct built *b, const char *key)
{
	return json_string_value(json_object_get(b->payload, key));
}

/* ---- helpers: identifiers ---- */

static void expected_key(const char *type, const char *raw, char hex[33])
{
	size_t len = strlen(raw);
	char *norm = malloc(len + 1);
	uint8_t key[PRIVACY_KEY_BYTES];
	size_t n;

	assert_non_null(norm);
	n = privacy_normalise(type, raw, len, norm);
	privacy_identifier_key(hasher, type, norm, n, key);
	hex_encode(key, sizeof(key), hex);
	free(norm);
}

static size_t count_ids(json_t *ids, const char *type)
{
	size_t i, n = 0;
	json_t *e;

	json_array_foreach(ids, i, e)
		if (strcmp(json_string_value(json_object_get(e, "type")), type) == 0)
			n++;
	return n;
}

/* The identifier of that type and previous flag; fails if not exactly one. */
static json_t *find_id(json_t *ids, const char *type, bool previous)
{
	json_t *found = NULL, *e;
	size_t i;

	json_array_foreach(ids, i, e) {
		const char *t = json_string_value(json_object_get(e, "type"));

		assert_non_null(t);
		if (strcmp(t, type) != 0 ||
		    json_is_true(json_object_get(e, "previous")) != previous)
			continue;
		if (found)
			fail_msg("two '%s' identifiers", type);
		found = e;
	}
	if (!found)
		fail_msg("no '%s' identifier (previous=%d)", type, previous);
	return found;
}

/* The event carries the identifier (type, raw) with the right keyed hash. */
static void assert_id(json_t *ids, const char *type, const char *raw,
		      bool previous)
{
	json_t *e = find_id(ids, type, previous);
	const char *key = json_string_value(json_object_get(e, "key"));
	char want[33];

	expected_key(type, raw, want);
	assert_non_null(key);
	assert_string_equal(key, want);
	assert_non_null(json_object_get(e, "value"));
}

/* ---- ingest_parse ---- */

static void test_ingest__parse_accepts_an_object(void **state)
{
	json_t *root;

	(void)state;
	root = parse_ok("{\"userId\":\"u1\",\"event\":\"x\"}");
	assert_true(json_is_object(root));
	assert_string_equal(json_string_value(json_object_get(root, "userId")),
			    "u1");
	json_decref(root);
	root = parse_ok(" \n\t{}\r\n ");
	assert_int_equal(json_object_size(root), 0);
	json_decref(root);
}

static void test_ingest__parse_empty_body_is_invalid_json(void **state)
{
	(void)state;
	assert_int_equal(parse_refused("", 0), INGEST_INVALID_JSON);
	assert_int_equal(parse_refused("   ", 3), INGEST_INVALID_JSON);
}

static void test_ingest__parse_truncated_json_is_invalid_json(void **state)
{
	static const char *bodies[] = {
		"{", "{\"userId\"", "{\"userId\":", "{\"userId\":\"u1\"",
		"{\"userId\":\"u1\",", "{\"a\":[1,2", "{\"a\":\"unterminated",
		"{\"a\":tru", "{\"a\":1}x", "{\"a\":1}{\"b\":2}",
	};
	struct ingest_error err;
	json_t *root = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++)
		assert_int_equal(parse_refused(bodies[i], strlen(bodies[i])),
				 INGEST_INVALID_JSON);
	/* The message gives the position of the error. */
	assert_int_equal(parse("{\n\"a\":}", 7, &root, &err), WEFT_EINVAL);
	assert_non_null(strstr(err.message, "line 2"));
	/* len, not a NUL, ends the body. */
	assert_int_equal(parse_refused("{\"a\":1}", 6), INGEST_INVALID_JSON);
}

static void test_ingest__parse_top_level_array_is_invalid_event(void **state)
{
	(void)state;
	assert_int_equal(parse_refused("[]", 2), INGEST_INVALID_EVENT);
	assert_int_equal(parse_refused("[{\"userId\":\"u\"}]", 16),
			 INGEST_INVALID_EVENT);
}

/*
 * docs/api.md: invalid_json is for a body that is not valid JSON, and
 * invalid_event for a body that is not an object. A bare string, number or
 * null is valid JSON (RFC 8259), so it is the wrong shape, not bad JSON.
 */
static void test_ingest__parse_top_level_scalar_is_invalid_event(void **state)
{
	(void)state;
	assert_int_equal(parse_refused("\"track\"", 7), INGEST_INVALID_EVENT);
	assert_int_equal(parse_refused("null", 4), INGEST_INVALID_EVENT);
	assert_int_equal(parse_refused("42", 2), INGEST_INVALID_EVENT);
	assert_int_equal(parse_refused("true", 4), INGEST_INVALID_EVENT);
}

static void test_ingest__parse_out_of_range_numbers_are_invalid_json(void **state)
{
	static const char *bodies[] = {
		"{\"a\":1e400}",
		"{\"a\":-1e400}",
		"{\"a\":123456789012345678901234567890}",
		"{\"a\":-123456789012345678901234567890}",
		"{\"a\":9223372036854775808}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++)
		assert_int_equal(parse_refused(bodies[i], strlen(bodies[i])),
				 INGEST_INVALID_JSON);
	/* The extremes that fit are fine. */
	json_decref(parse_ok("{\"a\":9223372036854775807,\"b\":1e300}"));
}

static void test_ingest__parse_nul_escape_is_invalid_json(void **state)
{
	static const char body[] = "{\"userId\":\"a\\u0000b\"}";
	static const char key[] = "{\"a\\u0000\":1}";
	static const char raw[] = "{\"a\":\"x\0y\"}";

	(void)state;
	assert_int_equal(parse_refused(body, strlen(body)), INGEST_INVALID_JSON);
	assert_int_equal(parse_refused(key, strlen(key)), INGEST_INVALID_JSON);
	/* A raw NUL byte inside the body, too. */
	assert_int_equal(parse_refused(raw, sizeof(raw) - 1), INGEST_INVALID_JSON);
}

static void test_ingest__parse_invalid_utf8_is_invalid_json(void **state)
{
	static const char *bodies[] = {
		"{\"a\":\"\xff\"}",			/* never valid */
		"{\"a\":\"\xc3\"}",			/* truncated sequence */
		"{\"a\":\"\x80\"}",			/* lone continuation */
		"{\"a\":\"\xc0\xaf\"}",			/* overlong '/' */
		"{\"a\":\"\xed\xa0\x80\"}",		/* UTF-16 surrogate */
		"{\"a\":\"\xf4\x90\x80\x80\"}",		/* above U+10FFFF */
		"{\"\xfe\":1}",				/* in a key */
		"{\"a\":\"\\ud800\"}",			/* lone surrogate escape */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++)
		assert_int_equal(parse_refused(bodies[i], strlen(bodies[i])),
				 INGEST_INVALID_JSON);
	json_decref(parse_ok("{\"a\":\"\xc3\xa9\xf0\x9f\x98\x80\\ud83d\\ude00\"}"));
}

static void test_ingest__parse_deep_nesting_is_invalid_json(void **state)
{
	enum { DEPTH = 100000 };
	struct buf b = BUF_INIT;

	(void)state;
	/* Arrays under the object... */
	buf_adds(&b, "{\"a\":");
	for (int i = 0; i < DEPTH; i++)
		buf_addc(&b, '[');
	for (int i = 0; i < DEPTH; i++)
		buf_addc(&b, ']');
	buf_addc(&b, '}');
	assert_int_equal(parse_refused(b.data, b.len), INGEST_INVALID_JSON);
	/* ...objects... */
	buf_reset(&b);
	for (int i = 0; i < DEPTH; i++)
		buf_adds(&b, "{\"a\":");
	buf_adds(&b, "1");
	for (int i = 0; i < DEPTH; i++)
		buf_addc(&b, '}');
	assert_int_equal(parse_refused(b.data, b.len), INGEST_INVALID_JSON);
	/* ...and an unclosed nesting. */
	buf_reset(&b);
	buf_adds(&b, "{\"a\":");
	for (int i = 0; i < DEPTH; i++)
		buf_addc(&b, '[');
	assert_int_equal(parse_refused(b.data, b.len), INGEST_INVALID_JSON);
	buf_release(&b);
}

static void test_ingest__parse_nesting_limit_is_2048(void **state)
{
	struct buf b = BUF_INIT;
	json_t *root;

	(void)state;
	/* The object is level 1; 2047 arrays inside it make 2048 levels. */
	buf_adds(&b, "{\"a\":");
	for (int i = 0; i < 2047; i++)
		buf_addc(&b, '[');
	for (int i = 0; i < 2047; i++)
		buf_addc(&b, ']');
	buf_addc(&b, '}');
	root = parse_ok(b.data);
	json_decref(root);
	buf_reset(&b);
	buf_adds(&b, "{\"a\":");
	for (int i = 0; i < 2048; i++)
		buf_addc(&b, '[');
	for (int i = 0; i < 2048; i++)
		buf_addc(&b, ']');
	buf_addc(&b, '}');
	assert_int_equal(parse_refused(b.data, b.len), INGEST_INVALID_JSON);
	buf_release(&b);
}

static void test_ingest__body_write_key_is_read(void **state)
{
	json_t *root;

	(void)state;
	root = parse_ok("{\"writeKey\":\"wk_1\",\"userId\":\"u\"}");
	assert_string_equal(ingest_body_write_key(root), "wk_1");
	json_decref(root);
	root = parse_ok("{\"writeKey\":5}");
	assert_null(ingest_body_write_key(root));
	json_decref(root);
	root = parse_ok("{}");
	assert_null(ingest_body_write_key(root));
	json_decref(root);
}

/* ---- kinds and reason codes ---- */

static void test_ingest__kind_parse_maps_path_segments(void **state)
{
	static const struct { const char *name; enum ingest_kind kind; } ok[] = {
		{ "track", INGEST_TRACK }, { "identify", INGEST_IDENTIFY },
		{ "page", INGEST_PAGE }, { "screen", INGEST_SCREEN },
		{ "group", INGEST_GROUP }, { "alias", INGEST_ALIAS },
		{ "batch", INGEST_BATCH }, { "import", INGEST_BATCH },
	};
	enum ingest_kind kind;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
		kind = (enum ingest_kind)-1;
		assert_int_equal(ingest_kind_parse(ok[i].name, &kind), 0);
		assert_int_equal(kind, ok[i].kind);
	}
	assert_int_equal(ingest_kind_parse("Track", &kind), WEFT_EINVAL);
	assert_int_equal(ingest_kind_parse("", &kind), WEFT_EINVAL);
	assert_int_equal(ingest_kind_parse("trackx", &kind), WEFT_EINVAL);
}

static void test_ingest__reason_codes_are_stable(void **state)
{
	(void)state;
	assert_string_equal(ingest_reason_code(INGEST_OK), "ok");
	assert_string_equal(ingest_reason_code(INGEST_INVALID_JSON), "invalid_json");
	assert_string_equal(ingest_reason_code(INGEST_INVALID_EVENT), "invalid_event");
	assert_string_equal(ingest_reason_code(INGEST_MISSING_IDENTITY),
			    "missing_identity");
	assert_string_equal(ingest_reason_code(INGEST_MISSING_FIELD), "missing_field");
	assert_string_equal(ingest_reason_code(INGEST_MESSAGE_ID_TOO_LONG),
			    "message_id_too_long");
	assert_string_equal(ingest_reason_code(INGEST_INVALID_TIMESTAMP),
			    "invalid_timestamp");
	assert_string_equal(ingest_reason_code(INGEST_EVENT_TOO_LARGE),
			    "event_too_large");
	assert_string_equal(ingest_reason_code(INGEST_BATCH_TOO_LARGE),
			    "batch_too_large");
}

/* ---- ingest_build: identity ---- */

static void test_ingest__event_requires_user_or_anonymous_id(void **state)
{
	static const enum ingest_kind kinds[] = {
		INGEST_TRACK, INGEST_IDENTIFY, INGEST_PAGE, INGEST_SCREEN,
		INGEST_GROUP,
	};

	(void)state;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(*kinds); i++) {
		assert_int_equal(build_refused(kinds[i],
			"{\"event\":\"e\",\"groupId\":\"g\"}"),
			INGEST_MISSING_IDENTITY);
		assert_int_equal(build_refused(kinds[i],
			"{\"event\":\"e\",\"groupId\":\"g\",\"userId\":null,"
			"\"anonymousId\":null}"),
			INGEST_MISSING_IDENTITY);
	}
	assert_int_equal(build_refused(INGEST_ALIAS, "{\"previousId\":\"p\"}"),
			 INGEST_MISSING_IDENTITY);
}

static void test_ingest__either_identity_is_enough(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_IDENTIFY, "{\"userId\":\"u1\"}");
	assert_id(b.ids, "user_id", "u1", false);
	assert_int_equal(count_ids(b.ids, "anonymous_id"), 0);
	built_release(&b);
	build_ok(&b, INGEST_IDENTIFY, "{\"anonymousId\":\"a1\"}");
	assert_id(b.ids, "anonymous_id", "a1", false);
	assert_int_equal(count_ids(b.ids, "user_id"), 0);
	built_release(&b);
	build_ok(&b, INGEST_IDENTIFY, "{\"anonymousId\":\"a1\",\"userId\":\"u1\"}");
	assert_id(b.ids, "anonymous_id", "a1", false);
	assert_id(b.ids, "user_id", "u1", false);
	built_release(&b);
}

static void test_ingest__numeric_ids_are_stringified(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_IDENTIFY, "{\"userId\":42,\"anonymousId\":-7}");
	assert_true(json_is_string(json_object_get(b.payload, "userId")));
	assert_string_equal(payload_str(&b, "userId"), "42");
	assert_string_equal(payload_str(&b, "anonymousId"), "-7");
	assert_id(b.ids, "user_id", "42", false);
	assert_id(b.ids, "anonymous_id", "-7", false);
	built_release(&b);

	build_ok(&b, INGEST_IDENTIFY, "{\"userId\":42.5}");
	assert_string_equal(payload_str(&b, "userId"), "42.5");
	assert_id(b.ids, "user_id", "42.5", false);
	built_release(&b);

	build_ok(&b, INGEST_IDENTIFY, "{\"userId\":9007199254740993}");
	assert_string_equal(payload_str(&b, "userId"), "9007199254740993");
	built_release(&b);
}

static void test_ingest__non_scalar_ids_are_invalid_event(void **state)
{
	static const char *values[] = { "{}", "{\"id\":1}", "[]", "[\"u\"]",
					"true", "false" };

	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(*values); i++) {
		char *u = fmt("{\"userId\":%s,\"anonymousId\":\"a\"}", values[i]);
		char *a = fmt("{\"userId\":\"u\",\"anonymousId\":%s}", values[i]);

		assert_int_equal(build_refused(INGEST_IDENTIFY, u),
				 INGEST_INVALID_EVENT);
		assert_int_equal(build_refused(INGEST_IDENTIFY, a),
				 INGEST_INVALID_EVENT);
		free(u);
		free(a);
	}
}

static void test_ingest__object_fields_must_be_objects(void **state)
{
	static const char *fields[] = { "context", "properties", "traits",
					"integrations" };
	struct built b;

	(void)state;
	for (size_t i = 0; i < sizeof(fields) / sizeof(*fields); i++) {
		char *s = fmt("{\"userId\":\"u\",\"event\":\"e\",\"%s\":\"x\"}",
			      fields[i]);
		char *a = fmt("{\"userId\":\"u\",\"event\":\"e\",\"%s\":[]}",
			      fields[i]);
		char *n = fmt("{\"userId\":\"u\",\"event\":\"e\",\"%s\":null}",
			      fields[i]);

		assert_int_equal(build_refused(INGEST_TRACK, s),
				 INGEST_INVALID_EVENT);
		assert_int_equal(build_refused(INGEST_TRACK, a),
				 INGEST_INVALID_EVENT);
		build_ok(&b, INGEST_TRACK, n);
		built_release(&b);
		free(s);
		free(a);
		free(n);
	}
}

/* ---- ingest_build: each kind's required fields ---- */

static void test_ingest__track_requires_event(void **state)
{
	struct built b;

	(void)state;
	assert_int_equal(build_refused(INGEST_TRACK, "{\"userId\":\"u\"}"),
			 INGEST_MISSING_FIELD);
	assert_int_equal(build_refused(INGEST_TRACK,
				       "{\"userId\":\"u\",\"event\":null}"),
			 INGEST_MISSING_FIELD);
	assert_int_equal(build_refused(INGEST_TRACK,
				       "{\"userId\":\"u\",\"event\":\"\"}"),
			 INGEST_INVALID_EVENT);
	assert_int_equal(build_refused(INGEST_TRACK,
				       "{\"userId\":\"u\",\"event\":5}"),
			 INGEST_INVALID_EVENT);
	assert_int_equal(build_refused(INGEST_TRACK,
				       "{\"userId\":\"u\",\"event\":{}}"),
			 INGEST_INVALID_EVENT);

	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"Order Completed\"}");
	assert_text(&b.t, F_TYPE, "track");
	assert_text(&b.t, F_EVENT, "Order Completed");
	assert_string_equal(payload_str(&b, "type"), "track");
	assert_int_equal(b.job.events_by_kind[INGEST_TRACK], 1);
	built_release(&b);
}

static void test_ingest__path_sets_the_type_of_a_single_event(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_IDENTIFY,
		 "{\"userId\":\"u\",\"type\":\"track\",\"event\":\"e\"}");
	assert_text(&b.t, F_TYPE, "identify");
	assert_string_equal(payload_str(&b, "type"), "identify");
	/* identify has no event column, whatever the body says. */
	assert_true(f_null(&b.t, F_EVENT));
	assert_int_equal(b.job.events_by_kind[INGEST_IDENTIFY], 1);
	assert_int_equal(b.job.events_by_kind[INGEST_TRACK], 0);
	built_release(&b);
}

static void test_ingest__write_key_is_not_stored(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_TRACK,
		 "{\"writeKey\":\"wk_secret_value\",\"userId\":\"u\",\"event\":\"e\"}");
	assert_null(json_object_get(b.payload, "writeKey"));
	assert_null(memmem(b.job.tuples.data, b.job.tuples.len,
			   "wk_secret_value", 15));
	built_release(&b);
}

/* The payload's JSON text as stored, less the jsonb version byte. */
static char *payload_text(const struct built *b)
{
	char *s = malloc((size_t)b->t.f[F_PAYLOAD].len);

	assert_non_null(s);
	memcpy(s, b->t.f[F_PAYLOAD].p + 1, (size_t)b->t.f[F_PAYLOAD].len - 1);
	s[b->t.f[F_PAYLOAD].len - 1] = '\0';
	return s;
}

static void test_ingest__reals_are_stored_as_sent(void **state)
{
	struct built b;
	char *text;

	(void)state;
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\",\"properties\":{\"price\":7.7,"
		 "\"list\":[0.1,1e300,5e-324,-0.0,1.0,0.30000000000000004],\"n\":7}}");
	text = payload_text(&b);
	/* jansson's own dump would give 7.7000000000000002 and so on. */
	assert_non_null(strstr(text, "\"properties\":{\"price\":7.7,\"list\":[0.1,1e300,"
				     "5e-324,-0.0,1.0,0.30000000000000004],\"n\":7}"));
	assert_true(json_real_value(json_object_get(json_object_get(b.payload, "properties"),
						    "price")) == 7.7);
	free(text);
	built_release(&b);

	/* In a batch, and in a rejected event, the same. */
	build_ok(&b, INGEST_BATCH,
		 "{\"batch\":[{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
		 "\"properties\":{\"price\":7.7}},{\"type\":\"track\",\"userId\":\"u\","
		 "\"properties\":{\"price\":7.7}}]}");
	assert_int_equal(b.job.nrows, 1);
	assert_int_equal(b.job.nrejected, 1);
	text = payload_text(&b);
	assert_non_null(strstr(text, "\"properties\":{\"price\":7.7}"));
	free(text);
	assert_non_null(memmem(b.job.rejected.data, b.job.rejected.len,
			       "\"properties\":{\"price\":7.7}", 26));
	assert_null(memmem(b.job.rejected.data, b.job.rejected.len, "7.70", 4));
	built_release(&b);
}

static void test_ingest__batch_item_write_key_is_not_stored(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_BATCH,
		 "{\"writeKey\":\"wk_root_value\",\"batch\":[{\"type\":\"track\","
		 "\"userId\":\"u\",\"event\":\"e\",\"writeKey\":\"wk_item_value\"}]}");
	assert_int_equal(b.job.nrows, 1);
	assert_null(json_object_get(b.payload, "writeKey"));
	assert_null(memmem(b.job.tuples.data, b.job.tuples.len, "wk_", 3));
	built_release(&b);
}

static void test_ingest__page_and_screen_name_is_optional(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_PAGE, "{\"userId\":\"u\",\"name\":\"Home\"}");
	assert_text(&b.t, F_TYPE, "page");
	assert_text(&b.t, F_EVENT, "Home");
	built_release(&b);
	build_ok(&b, INGEST_SCREEN, "{\"anonymousId\":\"a\",\"name\":\"Cart\"}");
	assert_text(&b.t, F_TYPE, "screen");
	assert_text(&b.t, F_EVENT, "Cart");
	built_release(&b);
	build_ok(&b, INGEST_PAGE, "{\"userId\":\"u\"}");
	assert_true(f_null(&b.t, F_EVENT));
	built_release(&b);
	build_ok(&b, INGEST_SCREEN, "{\"userId\":\"u\",\"name\":null}");
	assert_true(f_null(&b.t, F_EVENT));
	built_release(&b);
	assert_int_equal(build_refused(INGEST_PAGE,
				       "{\"userId\":\"u\",\"name\":7}"),
			 INGEST_INVALID_EVENT);
	assert_int_equal(build_refused(INGEST_SCREEN,
				       "{\"userId\":\"u\",\"name\":[\"x\"]}"),
			 INGEST_INVALID_EVENT);
}

static void test_ingest__group_requires_group_id(void **state)
{
	struct built b;

	(void)state;
	assert_int_equal(build_refused(INGEST_GROUP, "{\"userId\":\"u\"}"),
			 INGEST_MISSING_FIELD);
	assert_int_equal(build_refused(INGEST_GROUP,
				       "{\"userId\":\"u\",\"groupId\":null}"),
			 INGEST_MISSING_FIELD);
	assert_int_equal(build_refused(INGEST_GROUP,
				       "{\"userId\":\"u\",\"groupId\":\"\"}"),
			 INGEST_MISSING_FIELD);
	assert_int_equal(build_refused(INGEST_GROUP,
				       "{\"userId\":\"u\",\"groupId\":{}}"),
			 INGEST_INVALID_EVENT);

	build_ok(&b, INGEST_GROUP, "{\"userId\":\"u\",\"groupId\":\"acme\"}");
	assert_text(&b.t, F_TYPE, "group");
	assert_true(f_null(&b.t, F_EVENT));
	assert_id(b.ids, "group_id", "acme", false);
	assert_id(b.ids, "user_id", "u", false);
	built_release(&b);

	build_ok(&b, INGEST_GROUP, "{\"userId\":\"u\",\"groupId\":12}");
	assert_string_equal(payload_str(&b, "groupId"), "12");
	assert_id(b.ids, "group_id", "12", false);
	built_release(&b);
}

static void test_ingest__alias_requires_previous_id_and_user_id(void **state)
{
	struct built b;

	(void)state;
	assert_int_equal(build_refused(INGEST_ALIAS, "{\"userId\":\"new\"}"),
			 INGEST_MISSING_FIELD);
	assert_int_equal(build_refused(INGEST_ALIAS,
				       "{\"userId\":\"new\",\"previousId\":\"\"}"),
			 INGEST_MISSING_FIELD);
	assert_int_equal(build_refused(INGEST_ALIAS,
				       "{\"anonymousId\":\"a\",\"previousId\":\"old\"}"),
			 INGEST_MISSING_FIELD);
	assert_int_equal(build_refused(INGEST_ALIAS,
				       "{\"userId\":\"new\",\"previousId\":[]}"),
			 INGEST_INVALID_EVENT);

	build_ok(&b, INGEST_ALIAS, "{\"userId\":\"new\",\"previousId\":\"old\"}");
	assert_text(&b.t, F_TYPE, "alias");
	assert_true(f_null(&b.t, F_EVENT));
	assert_id(b.ids, "user_id", "new", false);
	/* previousId may have been either kind of id: both are offered. */
	assert_id(b.ids, "user_id", "old", true);
	assert_id(b.ids, "anonymous_id", "old", true);
	assert_int_equal(json_array_size(b.ids), 3);
	built_release(&b);

	build_ok(&b, INGEST_ALIAS, "{\"userId\":\"new\",\"previousId\":99}");
	assert_string_equal(payload_str(&b, "previousId"), "99");
	assert_id(b.ids, "user_id", "99", true);
	built_release(&b);
}

/* ---- ingest_build: messageId ---- */

static bool is_uuid4(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!((s[i] >= '0' && s[i] <= '9') ||
			     (s[i] >= 'a' && s[i] <= 'f'))) {
			return false;
		}
	}
	return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

static void test_ingest__message_id_of_100_chars_is_kept(void **state)
{
	char *mid = repeat("m", 100);
	char *body = fmt("{\"userId\":\"u\",\"event\":\"e\",\"messageId\":\"%s\"}",
			 mid);
	struct built b;

	(void)state;
	build_ok(&b, INGEST_TRACK, body);
	assert_text(&b.t, F_MESSAGE_ID, mid);
	assert_string_equal(payload_str(&b, "messageId"), mid);
	built_release(&b);
	free(body);
	free(mid);
}

static void test_ingest__message_id_of_101_chars_is_too_long(void **state)
{
	char *mid = repeat("m", 101);
	char *body = fmt("{\"userId\":\"u\",\"event\":\"e\",\"messageId\":\"%s\"}",
			 mid);

	(void)state;
	assert_int_equal(build_refused(INGEST_TRACK, body),
			 INGEST_MESSAGE_ID_TOO_LONG);
	free(body);
	free(mid);
}

static void test_ingest__message_id_length_counts_characters(void **state)
{
	/* e-acute is 2 bytes, the emoji 4: 100 of either is 100 characters. */
	static const char *units[] = { "\xc3\xa9", "\xf0\x9f\x98\x80",
				       "\xe6\x97\xa5" };
	struct built b;

	(void)state;
	for (size_t i = 0; i < sizeof(units) / sizeof(*units); i++) {
		char *ok = repeat(units[i], 100), *over = repeat(units[i], 101);
		char *okb = fmt("{\"userId\":\"u\",\"event\":\"e\",\"messageId\":\"%s\"}",
				ok);
		char *overb = fmt("{\"userId\":\"u\",\"event\":\"e\",\"messageId\":\"%s\"}",
				  over);

		build_ok(&b, INGEST_TRACK, okb);
		assert_text(&b.t, F_MESSAGE_ID, ok);
		built_release(&b);
		assert_int_equal(build_refused(INGEST_TRACK, overb),
				 INGEST_MESSAGE_ID_TOO_LONG);
		free(ok);
		free(over);
		free(okb);
		free(overb);
	}
}

static void test_ingest__absent_message_id_gets_a_uuid4(void **state)
{
	static const char *bodies[] = {
		"{\"userId\":\"u\",\"event\":\"e\"}",
		"{\"userId\":\"u\",\"event\":\"e\",\"messageId\":null}",
		"{\"userId\":\"u\",\"event\":\"e\",\"messageId\":\"\"}",
	};
	char first[37] = "";
	struct built b;

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
		build_ok(&b, INGEST_TRACK, bodies[i]);
		char *mid = f_text(&b.t, F_MESSAGE_ID);

		assert_non_null(mid);
		assert_true(strlen(mid) > 0);
		/* The generated id is stored in the event too. */
		assert_string_equal(payload_str(&b, "messageId"), mid);
		assert_string_equal(b.job.strings.data + b.job.rows[0].message_id,
				    mid);
		if (i == 0)
			memcpy(first, mid, 37);
		else
			assert_string_not_equal(mid, first);
		free(mid);
		built_release(&b);
	}
}

/*
 * A generated messageId is Weft's own random value, not personal data: it
 * must reach the log as generated. (A detector that mistook part of it for
 * a phone number would change about one in a hundred.)
 */
static void test_ingest__generated_message_id_is_a_uuid4(void **state)
{
	struct built b;

	(void)state;
	for (int i = 0; i < 1000; i++) {
		build_ok(&b, INGEST_TRACK, "{\"userId\":\"u\",\"event\":\"e\"}");
		char *mid = f_text(&b.t, F_MESSAGE_ID);

		if (!is_uuid4(mid))
			fail_msg("generated messageId stored as '%s'", mid);
		assert_string_equal(payload_str(&b, "messageId"), mid);
		free(mid);
		built_release(&b);
	}
}

static void test_ingest__numeric_message_id_is_stringified(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\",\"messageId\":123}");
	assert_text(&b.t, F_MESSAGE_ID, "123");
	assert_string_equal(payload_str(&b, "messageId"), "123");
	built_release(&b);
	assert_int_equal(build_refused(INGEST_TRACK,
		"{\"userId\":\"u\",\"event\":\"e\",\"messageId\":{\"a\":1}}"),
		INGEST_INVALID_EVENT);
	assert_int_equal(build_refused(INGEST_TRACK,
		"{\"userId\":\"u\",\"event\":\"e\",\"messageId\":true}"),
		INGEST_INVALID_EVENT);
}

static bool printable_ascii(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

/*
 * The (workspace, messageId) pair is the deduplication key, so whatever
 * masking does to a messageId must keep distinct ids distinct: otherwise a
 * second event is acknowledged as a "duplicate" and never stored.
 */
static void test_ingest__masked_message_ids_stay_distinct(void **state)
{
	struct built b;
	char *first;

	(void)state;
	build_ok(&b, INGEST_BATCH, "{\"batch\":["
		 "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
		 "\"messageId\":\"evt-10.0.0.1\"},"
		 "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
		 "\"messageId\":\"evt-10.0.0.2\"}]}");
	assert_int_equal(b.job.nrows, 2);
	first = f_text(&b.t, F_MESSAGE_ID);
	decode_row(&b, 1);
	char *second = f_text(&b.t, F_MESSAGE_ID);

	assert_string_not_equal(first, second);
	free(first);
	free(second);
	built_release(&b);
}

/*
 * A messageId the policy removes (a Luhn-valid number reads as a card)
 * still needs a well-formed key that is the same on every retry, and the
 * stored event must carry the key its row was deduplicated on.
 */
static void test_ingest__message_id_dropped_by_policy_stays_stable(void **state)
{
	static const char body[] =
		"{\"userId\":\"u\",\"event\":\"e\",\"messageId\":\"4111111111111111\"}";
	struct built b;
	char *first, *second;

	(void)state;
	build_ok(&b, INGEST_TRACK, body);
	first = f_text(&b.t, F_MESSAGE_ID);
	assert_non_null(first);
	assert_true(strlen(first) > 0);
	assert_true(printable_ascii(first));
	assert_null(strstr(first, "4111111111111111"));
	assert_non_null(payload_str(&b, "messageId"));
	assert_string_equal(payload_str(&b, "messageId"), first);
	built_release(&b);

	build_ok(&b, INGEST_TRACK, body);
	second = f_text(&b.t, F_MESSAGE_ID);
	assert_string_equal(first, second);
	built_release(&b);
	free(first);
	free(second);
}

/* ---- ingest_build: the columns of a row ---- */

static void test_ingest__row_columns_are_encoded_in_order(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"Signed Up\",\"messageId\":\"m-1\"}");
	assert_int_equal(f_int8(&b.t, F_WORKSPACE), WORKSPACE_ID);
	assert_int_equal(f_int8(&b.t, F_SEQ), 0);
	assert_text(&b.t, F_MESSAGE_ID, "m-1");
	assert_text(&b.t, F_TYPE, "track");
	assert_text(&b.t, F_EVENT, "Signed Up");
	assert_int_equal(f_time(&b.t, F_RECEIVED_AT), RECEIVED_US);
	assert_true(f_null(&b.t, F_SENT_AT));
	assert_true(f_null(&b.t, F_ORIGINAL_TIMESTAMP));
	assert_int_equal(f_time(&b.t, F_TIMESTAMP), RECEIVED_US);
	assert_int_equal(f_int8(&b.t, F_KEY_ID), KEY_ID);
	assert_string_equal(payload_str(&b, "event"), "Signed Up");
	assert_int_equal(b.job.rows[0].kind, INGEST_TRACK);
	assert_int_equal(b.job.rows[0].offset, 0);
	assert_int_equal(b.job.rows[0].len, b.job.tuples.len);
	built_release(&b);
}

static void test_ingest__no_key_id_is_null(void **state)
{
	struct ingest_context ctx = context_of(INGEST_IDENTIFY);
	struct built b;

	(void)state;
	ctx.key_id = 0;
	build_ok_ctx(&b, &ctx, "{\"userId\":\"u\"}");
	assert_true(f_null(&b.t, F_KEY_ID));
	built_release(&b);
}

static void test_ingest__workspace_comes_from_the_context(void **state)
{
	struct ingest_context ctx = context_of(INGEST_IDENTIFY);
	struct ingest_job job;
	struct ingest_error err;
	struct tuple t;

	(void)state;
	ctx.workspace_id = 0x0102030405060708LL;
	assert_int_equal(build_ctx(&ctx, "{\"userId\":\"u\"}", &job, &err), 0);
	assert_int_equal(job.nrows, 1);
	assert_int_equal(job.rows[0].workspace_id, 0x0102030405060708LL);
	decode_tuple(job.tuples.data, job.tuples.len, &t);
	assert_int_equal(t.size, job.tuples.len);
	assert_int_equal(f_int8(&t, F_WORKSPACE), 0x0102030405060708LL);
	ingest_job_release(&job);
}

/* ---- ingest_build: timestamps ---- */

static void test_ingest__bad_timestamps_are_invalid_timestamp(void **state)
{
	static const char *fields[] = { "timestamp", "originalTimestamp",
					"sentAt" };
	static const char *values[] = { "\"2020-13-45\"", "\"yesterday\"",
					"\"\"", "12345", "{}", "true",
					"\"2020-01-01T25:00:00Z\"" };

	(void)state;
	for (size_t f = 0; f < sizeof(fields) / sizeof(*fields); f++) {
		for (size_t v = 0; v < sizeof(values) / sizeof(*values); v++) {
			char *body = fmt("{\"userId\":\"u\",\"event\":\"e\","
					 "\"%s\":%s}", fields[f], values[v]);

			assert_int_equal(build_refused(INGEST_TRACK, body),
					 INGEST_INVALID_TIMESTAMP);
			free(body);
		}
	}
}

static void test_ingest__clock_skew_is_corrected_to_the_microsecond(void **state)
{
	/* The client's clock is 1 h behind; the event happened 2.376544 s
	 * before it was sent, so 2.376544 s before it was received. */
	static const char *bodies[] = {
		"{\"userId\":\"u\",\"event\":\"e\","
		"\"sentAt\":\"2026-11-22T09:00:00.500000Z\","
		"\"originalTimestamp\":\"2026-11-22T08:59:58.123456Z\"}",
		/* The same instants written with offsets. */
		"{\"userId\":\"u\",\"event\":\"e\","
		"\"sentAt\":\"2026-11-22T10:00:00.5+01:00\","
		"\"originalTimestamp\":\"2026-11-22T03:59:58.123456-05:00\"}",
	};
	const int64_t sent = (1795341600LL - 3600) * 1000000 + 500000;
	const int64_t orig = (1795341600LL - 3602) * 1000000 + 123456;
	struct built b;

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
		build_ok(&b, INGEST_TRACK, bodies[i]);
		assert_int_equal(f_time(&b.t, F_RECEIVED_AT), RECEIVED_US);
		assert_int_equal(f_time(&b.t, F_SENT_AT), sent);
		assert_int_equal(f_time(&b.t, F_ORIGINAL_TIMESTAMP), orig);
		assert_int_equal(f_time(&b.t, F_TIMESTAMP),
				 RECEIVED_US - (sent - orig));
		assert_int_equal(f_time(&b.t, F_TIMESTAMP),
				 RECEIVED_US - 2376544);
		built_release(&b);
	}
}

static void test_ingest__client_timestamp_stands_for_original(void **state)
{
	struct built b;
	const int64_t ts = (1795341600LL - 60) * 1000000 + 250000;

	(void)state;
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\","
		 "\"timestamp\":\"2026-11-22T09:59:00.250Z\","
		 "\"sentAt\":\"2026-11-22T09:59:30Z\"}");
	assert_int_equal(f_time(&b.t, F_ORIGINAL_TIMESTAMP), ts);
	assert_int_equal(f_time(&b.t, F_TIMESTAMP), RECEIVED_US - 29750000);
	built_release(&b);

	/* originalTimestamp wins over timestamp when both are given. */
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\","
		 "\"timestamp\":\"2001-01-01T00:00:00Z\","
		 "\"originalTimestamp\":\"2026-11-22T09:59:00.250Z\"}");
	assert_int_equal(f_time(&b.t, F_ORIGINAL_TIMESTAMP), ts);
	assert_int_equal(f_time(&b.t, F_TIMESTAMP), ts);
	built_release(&b);
}

static void test_ingest__without_sent_at_timestamp_is_original(void **state)
{
	struct built b;
	const int64_t orig = 1700000000LL * 1000000 + 1;

	(void)state;
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\","
		 "\"originalTimestamp\":\"2023-11-14T22:13:20.000001Z\"}");
	assert_true(f_null(&b.t, F_SENT_AT));
	assert_int_equal(f_time(&b.t, F_ORIGINAL_TIMESTAMP), orig);
	assert_int_equal(f_time(&b.t, F_TIMESTAMP), orig);
	built_release(&b);

	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\",\"sentAt\":null,"
		 "\"timestamp\":\"2023-11-14T22:13:20.000001Z\"}");
	assert_true(f_null(&b.t, F_SENT_AT));
	assert_int_equal(f_time(&b.t, F_TIMESTAMP), orig);
	built_release(&b);
}

static void test_ingest__without_either_timestamp_is_received_at(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_TRACK, "{\"userId\":\"u\",\"event\":\"e\"}");
	assert_true(f_null(&b.t, F_ORIGINAL_TIMESTAMP));
	assert_int_equal(f_time(&b.t, F_TIMESTAMP), RECEIVED_US);
	built_release(&b);

	/* sentAt alone changes nothing: there is no event time to correct. */
	build_ok(&b, INGEST_TRACK, "{\"userId\":\"u\",\"event\":\"e\","
		 "\"sentAt\":\"2026-11-22T09:00:00Z\"}");
	assert_int_equal(f_time(&b.t, F_SENT_AT), RECEIVED_US - 3600000000LL);
	assert_true(f_null(&b.t, F_ORIGINAL_TIMESTAMP));
	assert_int_equal(f_time(&b.t, F_TIMESTAMP), RECEIVED_US);
	built_release(&b);
}

/*
 * The correction can move an event far outside the calendar when sentAt
 * and originalTimestamp are millennia apart. PostgreSQL refuses such a
 * timestamptz ("timestamp out of range"), which fails the whole commit: the
 * event must be refused (or its time bounded) here instead.
 */
static void test_ingest__corrected_timestamp_stays_in_range(void **state)
{
	static const char *bodies[] = {
		"{\"userId\":\"u\",\"event\":\"e\","
		"\"sentAt\":\"9999-12-31T23:59:59Z\","
		"\"originalTimestamp\":\"0001-01-01T00:00:00Z\"}",
		"{\"userId\":\"u\",\"event\":\"e\","
		"\"sentAt\":\"0001-01-01T00:00:00Z\","
		"\"originalTimestamp\":\"9999-12-31T23:59:59Z\"}",
	};
	const int64_t lo = -62135596800LL * 1000000;		/* 0001-01-01 */
	const int64_t hi = 253402300800LL * 1000000;		/* 10000-01-01 */

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
		struct ingest_job job;
		struct ingest_error err;
		struct tuple t;

		if (build(INGEST_TRACK, bodies[i], &job, &err) != 0) {
			assert_int_equal(err.reason, INGEST_INVALID_TIMESTAMP);
			ingest_job_release(&job);
			continue;
		}
		row_tuple(&job, 0, &t);
		int64_t ts = f_time(&t, F_TIMESTAMP);

		if (ts < lo || ts >= hi)
			fail_msg("body %zu stored timestamp %lld us, outside "
				 "years 1-9999", i, (long long)ts);
		ingest_job_release(&job);
	}
}

static void test_ingest__batch_sent_at_applies_to_items(void **state)
{
	struct built b;
	const int64_t sent = RECEIVED_US - 3600000000LL;	/* 09:00 */
	const int64_t own = RECEIVED_US - 1800000000LL;		/* 09:30 */
	const int64_t orig = RECEIVED_US - 3610000000LL;	/* 08:59:50 */

	(void)state;
	build_ok(&b, INGEST_BATCH,
		 "{\"sentAt\":\"2026-11-22T09:00:00Z\",\"batch\":["
		 "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
		 "\"originalTimestamp\":\"2026-11-22T08:59:50Z\"},"
		 "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
		 "\"sentAt\":\"2026-11-22T09:30:00Z\","
		 "\"originalTimestamp\":\"2026-11-22T08:59:50Z\"},"
		 "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
		 "\"sentAt\":null,"
		 "\"originalTimestamp\":\"2026-11-22T08:59:50Z\"}]}");
	assert_int_equal(b.job.nrows, 3);
	/* Item 0: the batch's sentAt. */
	assert_int_equal(f_time(&b.t, F_SENT_AT), sent);
	assert_int_equal(f_time(&b.t, F_TIMESTAMP), RECEIVED_US - 10000000);
	/* Item 1: its own sentAt wins. */
	decode_row(&b, 1);
	assert_int_equal(f_time(&b.t, F_SENT_AT), own);
	assert_int_equal(f_time(&b.t, F_TIMESTAMP), RECEIVED_US - (own - orig));
	/* Item 2: a null sentAt is absent, so the batch's applies. */
	decode_row(&b, 2);
	assert_int_equal(f_time(&b.t, F_SENT_AT), sent);
	built_release(&b);
}

/* ---- ingest_build: batches ---- */

static char *batch_of(size_t n)
{
	struct buf b = BUF_INIT;

	buf_adds(&b, "{\"batch\":[");
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s{\"type\":\"track\",\"userId\":\"u%zu\","
			   "\"event\":\"e\",\"messageId\":\"m%zu\"}",
			   i ? "," : "", i, i);
	buf_adds(&b, "]}");
	return buf_detach(&b, NULL);
}

static void test_ingest__batch_of_2500_is_accepted(void **state)
{
	char *body = batch_of(INGEST_MAX_BATCH_EVENTS);
	struct built b;

	(void)state;
	build_ok(&b, INGEST_BATCH, body);
	assert_int_equal(b.job.nrows, INGEST_MAX_BATCH_EVENTS);
	assert_int_equal(b.job.nrejected, 0);
	assert_int_equal(b.job.events_by_kind[INGEST_TRACK],
			 INGEST_MAX_BATCH_EVENTS);
	decode_row(&b, INGEST_MAX_BATCH_EVENTS - 1);
	assert_text(&b.t, F_MESSAGE_ID, "m2499");
	assert_id(b.ids, "user_id", "u2499", false);
	built_release(&b);
	free(body);
}

static void test_ingest__batch_over_2500_is_too_large(void **state)
{
	char *body = batch_of(INGEST_MAX_BATCH_EVENTS + 1);
	struct ingest_job job;
	struct ingest_error err;

	(void)state;
	assert_int_equal(build(INGEST_BATCH, body, &job, &err), WEFT_EINVAL);
	assert_int_equal(err.reason, INGEST_BATCH_TOO_LARGE);
	assert_int_equal(job.nrows, 0);
	assert_int_equal(job.nrejected, 0);
	ingest_job_release(&job);
	free(body);
}

static void test_ingest__batch_must_have_a_batch_array(void **state)
{
	static const char *bodies[] = {
		"{}", "{\"batch\":null}", "{\"batch\":{}}", "{\"batch\":\"x\"}",
		"{\"userId\":\"u\",\"event\":\"e\"}",
	};
	struct ingest_job job;
	struct ingest_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
		assert_int_equal(build(INGEST_BATCH, bodies[i], &job, &err),
				 WEFT_EINVAL);
		assert_int_equal(err.reason, INGEST_INVALID_EVENT);
		assert_int_equal(job.nrows, 0);
		ingest_job_release(&job);
	}
	assert_int_equal(build(INGEST_BATCH,
			       "{\"batch\":[],\"context\":\"x\"}", &job, &err),
			 WEFT_EINVAL);
	assert_int_equal(err.reason, INGEST_INVALID_EVENT);
	ingest_job_release(&job);
	assert_int_equal(build(INGEST_BATCH,
			       "{\"batch\":[],\"integrations\":[]}", &job, &err),
			 WEFT_EINVAL);
	assert_int_equal(err.reason, INGEST_INVALID_EVENT);
	ingest_job_release(&job);
}

static void test_ingest__empty_batch_is_accepted_empty(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_BATCH, "{\"batch\":[]}");
	assert_int_equal(b.job.nrows, 0);
	assert_int_equal(b.job.nrejected, 0);
	built_release(&b);
}

static void test_ingest__batch_rejects_invalid_items_by_index(void **state)
{
	static const struct {
		size_t index;
		enum ingest_reason reason;
	} want[] = {
		{ 1, INGEST_MISSING_IDENTITY },
		{ 2, INGEST_INVALID_EVENT },	/* not an object */
		{ 3, INGEST_INVALID_EVENT },	/* unknown type */
		{ 5, INGEST_INVALID_EVENT },	/* no type */
		{ 6, INGEST_INVALID_EVENT },	/* type batch */
		{ 7, INGEST_MISSING_FIELD },	/* track without event */
		{ 8, INGEST_INVALID_TIMESTAMP },
		{ 10, INGEST_MESSAGE_ID_TOO_LONG },
	};
	char *long_mid = repeat("z", 101);
	char *body = fmt("{\"batch\":["
		"{\"type\":\"track\",\"userId\":\"u0\",\"event\":\"e\",\"messageId\":\"ok-0\"},"
		"{\"type\":\"track\",\"event\":\"e\",\"messageId\":\"bad-1\"},"
		"5,"
		"{\"type\":\"bogus\",\"userId\":\"u3\"},"
		"{\"type\":\"identify\",\"userId\":\"u4\",\"messageId\":\"ok-4\"},"
		"{\"userId\":\"u5\"},"
		"{\"type\":\"batch\",\"userId\":\"u6\"},"
		"{\"type\":\"track\",\"userId\":\"u7\"},"
		"{\"type\":\"page\",\"userId\":\"u8\",\"timestamp\":\"2020-13-45\"},"
		"{\"type\":\"alias\",\"userId\":\"u9\",\"previousId\":\"p9\",\"messageId\":\"ok-9\"},"
		"{\"type\":\"track\",\"userId\":\"u10\",\"event\":\"e\",\"messageId\":\"%s\"}"
		"]}", long_mid);
	struct built b;
	struct tuple t;

	(void)state;
	build_ok(&b, INGEST_BATCH, body);
	assert_int_equal(b.job.nrows, 3);
	assert_text(&b.t, F_MESSAGE_ID, "ok-0");
	assert_text(&b.t, F_TYPE, "track");
	decode_row(&b, 1);
	assert_text(&b.t, F_MESSAGE_ID, "ok-4");
	assert_text(&b.t, F_TYPE, "identify");
	decode_row(&b, 2);
	assert_text(&b.t, F_MESSAGE_ID, "ok-9");
	assert_text(&b.t, F_TYPE, "alias");
	assert_int_equal(b.job.events_by_kind[INGEST_TRACK], 1);
	assert_int_equal(b.job.events_by_kind[INGEST_IDENTIFY], 1);
	assert_int_equal(b.job.events_by_kind[INGEST_ALIAS], 1);

	assert_int_equal(b.job.nrejected, sizeof(want) / sizeof(*want));
	for (size_t k = 0; k < b.job.nrejected; k++) {
		assert_int_equal(b.job.rejections[k].index, want[k].index);
		assert_int_equal(b.job.rejections[k].reason, want[k].reason);
		assert_true(strlen(b.job.rejections[k].message) > 0);

		rejected_tuple(&b.job, k, &t);
		assert_int_equal(f_int8(&t, R_WORKSPACE), WORKSPACE_ID);
		assert_int_equal(f_time(&t, R_RECEIVED_AT), RECEIVED_US);
		assert_int_equal(f_int4(&t, R_INDEX), (int32_t)want[k].index);
		assert_text(&t, R_CODE, ingest_reason_code(want[k].reason));
		assert_text(&t, R_MESSAGE, b.job.rejections[k].message);
	}
	/* The refused items are kept (masked) with what can be kept. */
	rejected_tuple(&b.job, 0, &t);
	assert_text(&t, R_MESSAGE_ID, "bad-1");
	json_t *p = f_jsonb(&t, R_PAYLOAD);

	assert_string_equal(json_string_value(json_object_get(p, "event")), "e");
	json_decref(p);
	rejected_tuple(&b.job, 1, &t);	/* the 5 */
	assert_true(f_null(&t, R_MESSAGE_ID));
	assert_true(f_null(&t, R_PAYLOAD));
	rejected_tuple(&b.job, 7, &t);	/* a messageId too long to keep */
	assert_true(f_null(&t, R_MESSAGE_ID));
	assert_false(f_null(&t, R_PAYLOAD));
	built_release(&b);
	free(body);
	free(long_mid);
}

static void test_ingest__batch_of_only_invalid_items_is_accepted(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_BATCH, "{\"batch\":[{\"type\":\"track\"},7,null]}");
	assert_int_equal(b.job.nrows, 0);
	assert_int_equal(b.job.nrejected, 3);
	assert_int_equal(b.job.rejections[2].index, 2);
	built_release(&b);
}

static void test_ingest__batch_context_is_merged_without_overriding(void **state)
{
	struct built b;
	json_t *ctx, *integ;

	(void)state;
	build_ok(&b, INGEST_BATCH,
		 "{\"context\":{\"locale\":\"en-US\",\"library\":{\"name\":\"lib\"},"
		 "\"app\":{\"version\":\"1\"}},"
		 "\"integrations\":{\"All\":false,\"Mixpanel\":true},"
		 "\"batch\":["
		 "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
		 "\"context\":{\"locale\":\"fr-FR\",\"app\":{\"build\":\"7\"}},"
		 "\"integrations\":{\"All\":true}},"
		 "{\"type\":\"identify\",\"userId\":\"u\"},"
		 "{\"type\":\"identify\",\"userId\":\"u\",\"context\":null}]}");
	assert_int_equal(b.job.nrows, 3);

	/* Item 0: its own keys win, the batch's others are added. */
	ctx = json_object_get(b.payload, "context");
	assert_string_equal(json_string_value(json_object_get(ctx, "locale")),
			    "fr-FR");
	assert_string_equal(json_string_value(json_object_get(
		json_object_get(ctx, "library"), "name")), "lib");
	/* A key the item sets is the item's whole value, not a deep merge. */
	assert_string_equal(json_string_value(json_object_get(
		json_object_get(ctx, "app"), "build")), "7");
	assert_null(json_object_get(json_object_get(ctx, "app"), "version"));
	integ = json_object_get(b.payload, "integrations");
	assert_true(json_is_true(json_object_get(integ, "All")));
	assert_true(json_is_true(json_object_get(integ, "Mixpanel")));

	/* Items 1 and 2: the batch's context and integrations as they are. */
	for (size_t i = 1; i <= 2; i++) {
		decode_row(&b, i);
		ctx = json_object_get(b.payload, "context");
		assert_string_equal(json_string_value(json_object_get(ctx,
			"locale")), "en-US");
		assert_string_equal(json_string_value(json_object_get(
			json_object_get(ctx, "app"), "version")), "1");
		integ = json_object_get(b.payload, "integrations");
		assert_true(json_is_false(json_object_get(integ, "All")));
	}
	built_release(&b);
}

static void test_ingest__batch_context_identifiers_reach_items(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_BATCH,
		 "{\"context\":{\"device\":{\"type\":\"ios\",\"id\":\"DEV-9\"}},"
		 "\"batch\":[{\"type\":\"identify\",\"userId\":\"u\"}]}");
	assert_id(b.ids, "ios.id", "DEV-9", false);
	built_release(&b);
}

/* ---- ingest_build: size limits ---- */

/* A track event whose payload is padded with n 'x's. */
static char *padded_event(size_t n)
{
	char *pad = repeat("x", n);
	char *body = fmt("{\"userId\":\"u\",\"event\":\"e\",\"messageId\":\"m-pad\","
			 "\"properties\":{\"pad\":\"%s\"}}", pad);

	free(pad);
	return body;
}

static void test_ingest__event_of_32_kib_is_accepted(void **state)
{
	struct built b;
	char *body = padded_event(100);
	size_t base_len, pad;

	(void)state;
	build_ok(&b, INGEST_TRACK, body);
	base_len = (size_t)b.t.f[F_PAYLOAD].len - 1;	/* less the version */
	built_release(&b);
	free(body);

	pad = 100 + INGEST_MAX_EVENT_BYTES - base_len;
	body = padded_event(pad);
	build_ok(&b, INGEST_TRACK, body);
	assert_int_equal((size_t)b.t.f[F_PAYLOAD].len - 1, INGEST_MAX_EVENT_BYTES);
	built_release(&b);
	free(body);

	body = padded_event(pad + 1);
	assert_int_equal(build_refused(INGEST_TRACK, body),
			 INGEST_EVENT_TOO_LARGE);
	free(body);
}

static void test_ingest__event_over_32_kib_is_too_large(void **state)
{
	char *body = padded_event(40000);

	(void)state;
	assert_int_equal(build_refused(INGEST_TRACK, body),
			 INGEST_EVENT_TOO_LARGE);
	free(body);
}

static void test_ingest__oversized_batch_item_is_rejected_alone(void **state)
{
	char *pad = repeat("y", 40000);
	char *body = fmt("{\"batch\":["
			 "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"a\"},"
			 "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"big\","
			 "\"messageId\":\"m-big\",\"properties\":{\"p\":\"%s\"}},"
			 "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"c\"}]}",
			 pad);
	struct built b;
	struct tuple t;

	(void)state;
	build_ok(&b, INGEST_BATCH, body);
	assert_int_equal(b.job.nrows, 2);
	assert_text(&b.t, F_EVENT, "a");
	decode_row(&b, 1);
	assert_text(&b.t, F_EVENT, "c");
	assert_int_equal(b.job.nrejected, 1);
	assert_int_equal(b.job.rejections[0].index, 1);
	assert_int_equal(b.job.rejections[0].reason, INGEST_EVENT_TOO_LARGE);
	rejected_tuple(&b.job, 0, &t);
	assert_text(&t, R_CODE, "event_too_large");
	assert_text(&t, R_MESSAGE_ID, "m-big");
	/* An oversized event is kept without its body. */
	assert_true(f_null(&t, R_PAYLOAD));
	assert_null(memmem(b.job.tuples.data, b.job.tuples.len, "yyyyyyyy", 8));
	built_release(&b);
	free(body);
	free(pad);
}

/* ---- ingest_build: identifiers ---- */

static void test_ingest__email_comes_from_traits_and_context_traits(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_IDENTIFY,
		 "{\"userId\":\"u\",\"traits\":{\"email\":\"jane@example.com\"}}");
	assert_id(b.ids, "email", "jane@example.com", false);
	built_release(&b);

	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\","
		 "\"context\":{\"traits\":{\"email\":\"joe@example.com\"}}}");
	assert_id(b.ids, "email", "joe@example.com", false);
	built_release(&b);

	build_ok(&b, INGEST_IDENTIFY,
		 "{\"userId\":\"u\",\"traits\":{\"email\":\"jane@example.com\"},"
		 "\"context\":{\"traits\":{\"email\":\"joe@example.com\"}}}");
	assert_int_equal(count_ids(b.ids, "email"), 2);
	built_release(&b);
}

/*
 * A group call's traits describe the group (Segment's spec), so an email
 * there is the company's, shared by every member: promoting it to a user
 * identifier would merge all of them into one profile. Segment promotes
 * traits.email from track and identify calls only; context.traits is
 * always the user's.
 */
static void test_ingest__group_traits_are_not_user_identifiers(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_GROUP,
		 "{\"userId\":\"u\",\"groupId\":\"acme\",\"traits\":"
		 "{\"email\":\"billing@acme.example\",\"phone\":\"+1 415 555 2671\"}}");
	assert_int_equal(count_ids(b.ids, "email"), 0);
	assert_int_equal(count_ids(b.ids, "phone"), 0);
	assert_id(b.ids, "group_id", "acme", false);
	built_release(&b);

	build_ok(&b, INGEST_GROUP,
		 "{\"userId\":\"u\",\"groupId\":\"acme\",\"context\":{\"traits\":"
		 "{\"email\":\"jane@example.com\"}}}");
	assert_id(b.ids, "email", "jane@example.com", false);
	built_release(&b);
}

static void test_ingest__same_email_twice_is_one_identifier(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_IDENTIFY,
		 "{\"userId\":\"u\",\"traits\":{\"email\":\"Jane@Example.com\"},"
		 "\"context\":{\"traits\":{\"email\":\" jane@example.com \"}}}");
	assert_int_equal(count_ids(b.ids, "email"), 1);
	assert_id(b.ids, "email", "jane@example.com", false);
	built_release(&b);
}

static void test_ingest__email_display_is_partial(void **state)
{
	struct built b;
	json_t *e;

	(void)state;
	build_ok(&b, INGEST_IDENTIFY,
		 "{\"userId\":\"u\",\"traits\":{\"email\":\"jane@example.com\"}}");
	e = find_id(b.ids, "email", false);
	assert_string_not_equal(json_string_value(json_object_get(e, "value")),
				"jane@example.com");
	assert_int_equal(strlen(json_string_value(json_object_get(e, "key"))), 32);
	built_release(&b);
}

static void test_ingest__phone_is_an_identifier(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_IDENTIFY,
		 "{\"userId\":\"u\",\"traits\":{\"phone\":\"+44 20 7946 0958\"}}");
	assert_id(b.ids, "phone", "+442079460958", false);
	built_release(&b);
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\","
		 "\"context\":{\"traits\":{\"phone\":\"+1 415 555 2671\"}}}");
	assert_id(b.ids, "phone", "+14155552671", false);
	built_release(&b);
}

static void test_ingest__device_ids_follow_the_device_type(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\",\"context\":{\"device\":"
		 "{\"type\":\"ios\",\"id\":\"IOS-DEV\",\"token\":\"IOS-PUSH\"}}}");
	assert_id(b.ids, "ios.id", "IOS-DEV", false);
	assert_id(b.ids, "ios.push_token", "IOS-PUSH", false);
	assert_int_equal(count_ids(b.ids, "android.id"), 0);
	built_release(&b);

	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\",\"context\":{\"device\":"
		 "{\"type\":\"android\",\"id\":\"AND-DEV\",\"token\":\"AND-PUSH\"}}}");
	assert_id(b.ids, "android.id", "AND-DEV", false);
	assert_id(b.ids, "android.push_token", "AND-PUSH", false);
	assert_int_equal(count_ids(b.ids, "ios.id"), 0);
	built_release(&b);

	/* The type is matched without regard to case. */
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\",\"context\":{\"device\":"
		 "{\"type\":\"iOS\",\"id\":\"IOS-DEV\"}}}");
	assert_id(b.ids, "ios.id", "IOS-DEV", false);
	built_release(&b);

	/* No type, or another one: no device identifier. */
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\",\"context\":{\"device\":"
		 "{\"id\":\"DEV\",\"token\":\"PUSH\"}}}");
	assert_int_equal(json_array_size(b.ids), 1);
	built_release(&b);
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\",\"context\":{\"device\":"
		 "{\"type\":\"web\",\"id\":\"DEV\"}}}");
	assert_int_equal(json_array_size(b.ids), 1);
	built_release(&b);
}

static void test_ingest__idfa_only_with_ad_tracking_enabled(void **state)
{
	static const char *flags[] = { "", ",\"adTrackingEnabled\":false",
				       ",\"adTrackingEnabled\":\"true\"",
				       ",\"adTrackingEnabled\":1" };
	struct built b;

	(void)state;
	for (size_t i = 0; i < sizeof(flags) / sizeof(*flags); i++) {
		char *body = fmt("{\"userId\":\"u\",\"event\":\"e\",\"context\":"
				 "{\"device\":{\"type\":\"ios\",\"advertisingId\":"
				 "\"IDFA-1\"%s}}}", flags[i]);

		build_ok(&b, INGEST_TRACK, body);
		assert_int_equal(count_ids(b.ids, "ios.idfa"), 0);
		built_release(&b);
		free(body);
	}
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\",\"context\":{\"device\":"
		 "{\"type\":\"ios\",\"advertisingId\":\"IDFA-1\","
		 "\"adTrackingEnabled\":true}}}");
	assert_id(b.ids, "ios.idfa", "IDFA-1", false);
	built_release(&b);
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\",\"context\":{\"device\":"
		 "{\"type\":\"android\",\"advertisingId\":\"AAID-1\","
		 "\"adTrackingEnabled\":true}}}");
	assert_id(b.ids, "android.idfa", "AAID-1", false);
	built_release(&b);
}

static void test_ingest__external_ids_lower_cased_users_and_none_only(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u\",\"event\":\"e\",\"context\":{\"externalIds\":["
		 "{\"id\":\"hs-1\",\"type\":\"HubSpot_ID\",\"collection\":\"users\","
		 "\"encoding\":\"none\"},"
		 "{\"id\":\"acc-1\",\"type\":\"account_id\",\"collection\":\"accounts\","
		 "\"encoding\":\"none\"},"
		 "{\"id\":\"aGk=\",\"type\":\"b64_id\",\"collection\":\"users\","
		 "\"encoding\":\"base64\"},"
		 "{\"id\":7,\"type\":\"numeric_id\",\"collection\":\"users\","
		 "\"encoding\":\"none\"},"
		 "{\"type\":\"no_id\",\"collection\":\"users\",\"encoding\":\"none\"},"
		 "\"not an object\","
		 "{\"id\":\"sf-1\",\"type\":\"SALESFORCE\",\"collection\":\"users\","
		 "\"encoding\":\"none\"}]}}");
	assert_id(b.ids, "hubspot_id", "hs-1", false);
	assert_id(b.ids, "salesforce", "sf-1", false);
	assert_int_equal(count_ids(b.ids, "HubSpot_ID"), 0);
	assert_int_equal(count_ids(b.ids, "account_id"), 0);
	assert_int_equal(count_ids(b.ids, "b64_id"), 0);
	assert_int_equal(count_ids(b.ids, "no_id"), 0);
	built_release(&b);
}

static void test_ingest__identifiers_are_keys_not_raw_values(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_IDENTIFY,
		 "{\"userId\":\"u\",\"traits\":{\"email\":\"secret.person@example.org\","
		 "\"phone\":\"+1 415 555 2671\"}}");
	assert_null(memmem(b.job.tuples.data, b.job.tuples.len,
			   "secret.person", 13));
	assert_null(memmem(b.job.tuples.data, b.job.tuples.len,
			   "4155552671", 10));
	assert_null(memmem(b.job.tuples.data, b.job.tuples.len,
			   "555 2671", 8));
	built_release(&b);
}

/* ---- identifiers: default blocked values ---- */

static void test_ingest__blocked_value_list_ignores_case(void **state)
{
	static const char *blocked[] = {
		"", "null", "NULL", "Null", "undefined", "Undefined", "UNDEFINED",
		"none", "None", "nan", "NaN", "NAN", "anonymous", "Anonymous",
		"guest", "GUEST", "unknown", "Unknown", "not_authenticated",
		"NOT_AUTHENTICATED", "[object Object]", "[Object Object]",
		"[OBJECT OBJECT]", "-1", "0",
	};
	static const char *not_blocked[] = {
		"[object  Object]", "[object Object", "object Object", "nul",
		"nulll", "null1", "1null", "n u l l", "undefined_user", "guests",
		"guest@example.com", "unknown@example.com", "not-authenticated",
		"nan0", "anon", "-1.0", "--1", "1", "01", "-01", "0a", "a0",
		"-10", "10", "1-0", "0.0", "+0", "0 0", " 00 1", "null\x01",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(blocked) / sizeof(*blocked); i++)
		if (!ingest_blocked_value(blocked[i], strlen(blocked[i])))
			fail_msg("'%s' is not blocked", blocked[i]);
	for (size_t i = 0; i < sizeof(not_blocked) / sizeof(*not_blocked); i++)
		if (ingest_blocked_value(not_blocked[i], strlen(not_blocked[i])))
			fail_msg("'%s' is blocked", not_blocked[i]);
}

static void test_ingest__blocked_values_include_zeros_and_dashes(void **state)
{
	static const char *blocked[] = {
		"0", "00", "0000", "000-0", "0-0-0", "-0", "0-", "-", "--", "---",
		"00000000-0000-0000-0000-000000000000",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(blocked) / sizeof(*blocked); i++)
		if (!ingest_blocked_value(blocked[i], strlen(blocked[i])))
			fail_msg("'%s' is not blocked", blocked[i]);
	assert_false(ingest_blocked_value("00000000-0000-0000-0000-000000000001",
					  36));
	assert_false(ingest_blocked_value("0_0", 3));
	assert_false(ingest_blocked_value("0\xe2\x80\x93" "0", 5));	/* en dash */
}

static void test_ingest__blocked_values_are_trimmed_first(void **state)
{
	static const char *blocked[] = {
		" null ", "\tNULL\n", "  ", " \t\r\n\v\f", " 0 ", "\n-1\n",
		" [object Object] ", " 000-0\t",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(blocked) / sizeof(*blocked); i++)
		if (!ingest_blocked_value(blocked[i], strlen(blocked[i])))
			fail_msg("'%s' is not blocked", blocked[i]);
	/* Inner white space is part of the value; non-ASCII space is not trimmed. */
	assert_false(ingest_blocked_value(" 00 1", 5));
	assert_false(ingest_blocked_value("nu ll", 5));
	assert_false(ingest_blocked_value("\xc2\xa0null", 6));
	/* len bounds the value: no NUL needed, and bytes after it do not count. */
	assert_true(ingest_blocked_value("null1", 4));
	assert_false(ingest_blocked_value("null", 3));
	assert_true(ingest_blocked_value("x", 0));
}

/* e carries "blocked":true, or no "blocked" member at all. */
static void assert_blocked(json_t *e, bool blocked)
{
	json_t *b = json_object_get(e, "blocked");

	if (blocked)
		assert_true(json_is_true(b));
	else
		assert_null(b);
}

/* The identifier (type, raw) is present with the right key and the flag. */
static void assert_id_blocked(json_t *ids, const char *type, const char *raw,
			      bool previous, bool blocked)
{
	assert_id(ids, type, raw, previous);
	assert_blocked(find_id(ids, type, previous), blocked);
}

static void test_ingest__blocked_user_id_is_flagged_and_the_event_stored(void **state)
{
	static const char *values[] = {
		"-1", "null", "NULL", "undefined", "0", "0000", "000-0", "--",
		" null ", "[object Object]", "[Object Object]", "Not_Authenticated",
	};
	struct built b;

	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(*values); i++) {
		char *body = fmt("{\"userId\":\"%s\",\"traits\":{\"plan\":\"pro\"}}",
				 values[i]);

		build_ok(&b, INGEST_IDENTIFY, body);
		assert_int_equal(b.job.events_by_kind[INGEST_IDENTIFY], 1);
		assert_int_equal(b.job.nrejected, 0);
		/* The event is stored as sent: blocking is about identity only. */
		assert_string_equal(payload_str(&b, "userId"), values[i]);
		assert_id_blocked(b.ids, "user_id", values[i], false, true);
		assert_int_equal(json_array_size(b.ids), 1);
		built_release(&b);
		free(body);
	}

	/* A numeric userId is judged by its string form. */
	build_ok(&b, INGEST_IDENTIFY, "{\"userId\":-1,\"anonymousId\":0}");
	assert_id_blocked(b.ids, "user_id", "-1", false, true);
	assert_id_blocked(b.ids, "anonymous_id", "0", false, true);
	built_release(&b);
	build_ok(&b, INGEST_IDENTIFY, "{\"userId\":-10,\"anonymousId\":1}");
	assert_id_blocked(b.ids, "user_id", "-10", false, false);
	assert_id_blocked(b.ids, "anonymous_id", "1", false, false);
	built_release(&b);
}

static void test_ingest__blocked_ids_pass_validation(void **state)
{
	struct built b;

	(void)state;
	/* Only JSON null is absent: the strings are real, if useless, values. */
	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"null\",\"anonymousId\":\"undefined\",\"event\":\"e\"}");
	assert_id_blocked(b.ids, "user_id", "null", false, true);
	assert_id_blocked(b.ids, "anonymous_id", "undefined", false, true);
	built_release(&b);
	build_ok(&b, INGEST_GROUP, "{\"userId\":\"-1\",\"groupId\":\"0\"}");
	assert_id_blocked(b.ids, "user_id", "-1", false, true);
	assert_id_blocked(b.ids, "group_id", "0", false, true);
	built_release(&b);

	build_ok(&b, INGEST_BATCH,
		 "{\"batch\":[{\"type\":\"identify\",\"userId\":\"-1\"},"
		 "{\"type\":\"track\",\"anonymousId\":\"null\",\"event\":\"e\"},"
		 "{\"type\":\"page\",\"userId\":\"guest\"}]}");
	assert_int_equal(b.job.nrows, 3);
	assert_int_equal(b.job.nrejected, 0);
	assert_id_blocked(b.ids, "user_id", "-1", false, true);
	decode_row(&b, 1);
	assert_id_blocked(b.ids, "anonymous_id", "null", false, true);
	decode_row(&b, 2);
	assert_id_blocked(b.ids, "user_id", "guest", false, true);
	built_release(&b);
}

static void test_ingest__lookalikes_of_blocked_values_are_not_flagged(void **state)
{
	static const char *values[] = {
		"0a", "1", "-10", "null1", "guest@example.com", " 00 1", "u-0",
		"Anonymous User", "none of these",
	};
	struct built b;

	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(*values); i++) {
		char *body = fmt("{\"userId\":\"%s\",\"anonymousId\":\"%s\"}",
				 values[i], values[i]);

		build_ok(&b, INGEST_IDENTIFY, body);
		assert_id_blocked(b.ids, "user_id", values[i], false, false);
		assert_id_blocked(b.ids, "anonymous_id", values[i], false, false);
		built_release(&b);
		free(body);
	}
}

static void test_ingest__empty_ids_stay_without_an_identifier(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_IDENTIFY,
		 "{\"userId\":\"\",\"anonymousId\":\"  \",\"traits\":"
		 "{\"email\":\"\",\"phone\":\"null\"}}");
	assert_int_equal(json_array_size(b.ids), 0);
	assert_string_equal(payload_str(&b, "userId"), "");
	built_release(&b);
}

static void test_ingest__blocked_flag_on_every_identifier_source(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_IDENTIFY,
		 "{\"userId\":\"u1\",\"anonymousId\":\"Anonymous\","
		 "\"traits\":{\"email\":\"unknown\",\"phone\":\"000-0\"},"
		 "\"context\":{\"device\":{\"type\":\"ios\",\"id\":\"00000000-0000-"
		 "0000-0000-000000000000\",\"advertisingId\":\"0000\","
		 "\"adTrackingEnabled\":true,\"token\":\"none\"},"
		 "\"externalIds\":["
		 "{\"id\":\"undefined\",\"type\":\"hubspot_id\",\"collection\":\"users\","
		 "\"encoding\":\"none\"},"
		 "{\"id\":\"hs-42\",\"type\":\"crm_id\",\"collection\":\"users\","
		 "\"encoding\":\"none\"},"
		 "{\"id\":\" GUEST \",\"type\":\"Shop_ID\",\"collection\":\"users\","
		 "\"encoding\":\"none\"}]}}");
	assert_id_blocked(b.ids, "user_id", "u1", false, false);
	assert_id_blocked(b.ids, "anonymous_id", "Anonymous", false, true);
	assert_id_blocked(b.ids, "email", "unknown", false, true);
	assert_id_blocked(b.ids, "phone", "000-0", false, true);
	assert_id_blocked(b.ids, "ios.id",
			  "00000000-0000-0000-0000-000000000000", false, true);
	assert_id_blocked(b.ids, "ios.idfa", "0000", false, true);
	assert_id_blocked(b.ids, "ios.push_token", "none", false, true);
	assert_id_blocked(b.ids, "hubspot_id", "undefined", false, true);
	assert_id_blocked(b.ids, "crm_id", "hs-42", false, false);
	assert_id_blocked(b.ids, "shop_id", " GUEST ", false, true);
	/* The display value is kept as for any identifier. */
	assert_string_equal(json_string_value(json_object_get(
		find_id(b.ids, "anonymous_id", false), "value")), "Anonymous");
	built_release(&b);

	build_ok(&b, INGEST_TRACK,
		 "{\"userId\":\"u1\",\"event\":\"e\",\"context\":{\"traits\":"
		 "{\"email\":\" NULL \"}}}");
	assert_id_blocked(b.ids, "email", " NULL ", false, true);
	built_release(&b);
}

static void test_ingest__blocked_alias_previous_id_is_flagged(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_ALIAS,
		 "{\"userId\":\"new\",\"previousId\":\"undefined\"}");
	assert_id_blocked(b.ids, "user_id", "new", false, false);
	assert_id_blocked(b.ids, "user_id", "undefined", true, true);
	assert_id_blocked(b.ids, "anonymous_id", "undefined", true, true);
	assert_int_equal(json_array_size(b.ids), 3);
	built_release(&b);

	build_ok(&b, INGEST_ALIAS, "{\"userId\":\"new\",\"previousId\":-1}");
	assert_id_blocked(b.ids, "user_id", "-1", true, true);
	assert_id_blocked(b.ids, "anonymous_id", "-1", true, true);
	built_release(&b);

	/* And the other way round: a blocked userId aliased to a real one. */
	build_ok(&b, INGEST_ALIAS, "{\"userId\":\"0\",\"previousId\":\"old\"}");
	assert_id_blocked(b.ids, "user_id", "0", false, true);
	assert_id_blocked(b.ids, "user_id", "old", true, false);
	built_release(&b);
}

/*
 * A phone's "-1" is blocked but normalises to "1", the key of an unblocked
 * "1": whichever comes first, the one identifier is flagged.
 */
static void test_ingest__blocked_wins_when_two_values_share_a_key(void **state)
{
	static const char *bodies[] = {
		"{\"userId\":\"u\",\"traits\":{\"phone\":\"-1\"},"
		"\"context\":{\"traits\":{\"phone\":\"1\"}}}",
		"{\"userId\":\"u\",\"traits\":{\"phone\":\"1\"},"
		"\"context\":{\"traits\":{\"phone\":\"-1\"}}}",
	};
	struct built b;

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
		build_ok(&b, INGEST_IDENTIFY, bodies[i]);
		assert_int_equal(count_ids(b.ids, "phone"), 1);
		assert_id_blocked(b.ids, "phone", "1", false, true);
		assert_id_blocked(b.ids, "user_id", "u", false, false);
		assert_int_equal(json_array_size(b.ids), 2);
		built_release(&b);
	}

	/* Marking an early entry leaves the ones after it intact. */
	build_ok(&b, INGEST_IDENTIFY,
		 "{\"userId\":\"u\",\"traits\":{\"phone\":\"(1)\",\"email\":"
		 "\"jane@example.com\"},\"context\":{\"traits\":{\"phone\":\"-1\"},"
		 "\"externalIds\":[{\"id\":\"x-1\",\"type\":\"crm_id\","
		 "\"collection\":\"users\",\"encoding\":\"none\"}]}}");
	assert_id_blocked(b.ids, "phone", "1", false, true);
	assert_id_blocked(b.ids, "email", "jane@example.com", false, false);
	assert_id_blocked(b.ids, "crm_id", "x-1", false, false);
	assert_id_blocked(b.ids, "user_id", "u", false, false);
	assert_int_equal(json_array_size(b.ids), 4);
	built_release(&b);
}

/* ---- masking ---- */

static const char *const raw_pii[] = {
	"jane.doe@example.com", "jane.doe", "4111111111111111",
	"4111 1111 1111 1111", "4111-1111-1111-1111", "5555555555554444",
};

static void assert_no_raw_pii(const char *data, size_t len)
{
	for (size_t i = 0; i < sizeof(raw_pii) / sizeof(*raw_pii); i++)
		if (data && memmem(data, len, raw_pii[i], strlen(raw_pii[i])))
			fail_msg("raw '%s' found in the output", raw_pii[i]);
}

static void test_ingest__event_is_masked_before_encoding(void **state)
{
	static const char body[] =
		"{\"userId\":\"u-77\",\"event\":\"Order Completed\","
		"\"traits\":{\"email\":\"jane.doe@example.com\"},"
		"\"context\":{\"traits\":{\"email\":\"jane.doe@example.com\"}},"
		"\"properties\":{\"card\":\"4111 1111 1111 1111\","
		"\"card2\":\"4111111111111111\",\"note\":\"paid with "
		"4111-1111-1111-1111 by jane.doe@example.com\","
		"\"nested\":{\"deep\":[\"5555555555554444\"]}}}";
	struct ingest_context ctx = context_of(INGEST_TRACK);
	struct ingest_job job;
	struct ingest_error err;
	json_t *root = parse_ok(body);
	char *dump;

	(void)state;
	ingest_job_init(&job);
	assert_int_equal(ingest_build(&ctx, root, &job, &err), 0);
	assert_int_equal(job.nrows, 1);
	assert_no_raw_pii(job.tuples.data, job.tuples.len);
	assert_no_raw_pii(job.strings.data, job.strings.len);
	/* root itself was masked in place. */
	dump = json_dumps(root, JSON_COMPACT);
	assert_no_raw_pii(dump, strlen(dump));
	free(dump);
	/* The identifier was still taken from the raw email. */
	struct tuple t;
	json_t *ids;

	row_tuple(&job, 0, &t);
	ids = f_jsonb(&t, F_IDENTIFIERS);
	assert_id(ids, "email", "jane.doe@example.com", false);
	json_decref(ids);
	json_decref(root);
	ingest_job_release(&job);
}

static void test_ingest__rejected_items_are_masked(void **state)
{
	char *pad = repeat("p", 40000);
	char *body = fmt("{\"batch\":["
		"{\"type\":\"track\",\"event\":\"no identity\","
		"\"traits\":{\"email\":\"jane.doe@example.com\"},"
		"\"properties\":{\"card\":\"4111 1111 1111 1111\"}},"
		"{\"type\":\"bogus\",\"userId\":\"jane.doe@example.com\","
		"\"properties\":{\"card\":\"4111111111111111\"}},"
		"{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
		"\"timestamp\":\"bad\",\"properties\":{\"c\":\"5555555555554444\"}},"
		"{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
		"\"properties\":{\"c\":\"4111-1111-1111-1111\",\"pad\":\"%s\"}}]}",
		pad);
	struct built b;

	(void)state;
	build_ok(&b, INGEST_BATCH, body);
	assert_int_equal(b.job.nrows, 0);
	assert_int_equal(b.job.nrejected, 4);
	assert_no_raw_pii(b.job.rejected.data, b.job.rejected.len);
	for (size_t k = 0; k < b.job.nrejected; k++) {
		assert_null(strstr(b.job.rejections[k].message, "jane.doe"));
		assert_null(strstr(b.job.rejections[k].message, "4111"));
	}
	built_release(&b);
	free(body);
	free(pad);
}

static void test_ingest__refused_single_event_root_is_masked(void **state)
{
	struct ingest_context ctx = context_of(INGEST_TRACK);
	struct ingest_job job;
	struct ingest_error err;
	char *pad = repeat("q", 40000);
	char *body = fmt("{\"userId\":\"u\",\"event\":\"e\",\"properties\":"
			 "{\"e\":\"jane.doe@example.com\",\"pad\":\"%s\"}}", pad);
	json_t *root = parse_ok(body);
	char *dump;

	(void)state;
	ingest_job_init(&job);
	assert_int_equal(ingest_build(&ctx, root, &job, &err), WEFT_EINVAL);
	assert_int_equal(err.reason, INGEST_EVENT_TOO_LARGE);
	assert_null(strstr(err.message, "jane"));
	dump = json_dumps(root, JSON_COMPACT);
	assert_no_raw_pii(dump, strlen(dump));
	free(dump);
	json_decref(root);
	ingest_job_release(&job);
	free(body);
	free(pad);
}

/* ---- rejected items keep their identifiers ---- */

static void test_ingest__rejected_items_keep_their_identifiers(void **state)
{
	char *pad = repeat("y", 40000);
	char *body = fmt("{\"batch\":["
		/* 0: track without event */
		"{\"type\":\"track\",\"userId\":\"u-rej\","
		"\"traits\":{\"email\":\"jane.doe@example.com\"}},"
		/* 1: not an object */
		"5,"
		/* 2: unknown type, numeric userId */
		"{\"type\":\"bogus\",\"userId\":42,\"anonymousId\":\"a-2\"},"
		/* 3: neither userId nor anonymousId nor anything else */
		"{\"type\":\"track\",\"event\":\"e\"},"
		/* 4: too large, so masked before it was refused */
		"{\"type\":\"identify\",\"userId\":\"u-big\","
		"\"traits\":{\"email\":\"jane.doe@example.com\",\"p\":\"%s\"}},"
		/* 5: alias without userId; 6: group with an object groupId */
		"{\"type\":\"alias\",\"previousId\":\"p-5\",\"anonymousId\":\"a-5\"},"
		"{\"type\":\"group\",\"userId\":\"u-6\",\"groupId\":{}},"
		/* 7: a userId of the wrong type is no identifier */
		"{\"type\":\"track\",\"userId\":{\"x\":1},\"event\":\"e\"}]}", pad);
	struct built b;
	struct tuple t;
	json_t *ids;

	(void)state;
	build_ok(&b, INGEST_BATCH, body);
	assert_int_equal(b.job.nrows, 0);
	assert_int_equal(b.job.nrejected, 8);
	assert_int_equal(b.job.suppressed, 0);

	rejected_tuple(&b.job, 0, &t);
	ids = f_jsonb(&t, R_IDENTIFIERS);
	assert_true(json_is_array(ids));
	assert_int_equal(json_array_size(ids), 2);
	assert_id(ids, "user_id", "u-rej", false);
	assert_id(ids, "email", "jane.doe@example.com", false);
	json_decref(ids);

	rejected_tuple(&b.job, 1, &t);
	assert_true(f_null(&t, R_IDENTIFIERS));

	rejected_tuple(&b.job, 2, &t);
	ids = f_jsonb(&t, R_IDENTIFIERS);
	assert_id(ids, "user_id", "42", false);
	assert_id(ids, "anonymous_id", "a-2", false);
	json_decref(ids);

	rejected_tuple(&b.job, 3, &t);
	assert_true(f_null(&t, R_IDENTIFIERS));

	/* Read from the raw email, not from the masked one. */
	rejected_tuple(&b.job, 4, &t);
	assert_text(&t, R_CODE, "event_too_large");
	ids = f_jsonb(&t, R_IDENTIFIERS);
	assert_id(ids, "user_id", "u-big", false);
	assert_id(ids, "email", "jane.doe@example.com", false);
	json_decref(ids);

	rejected_tuple(&b.job, 5, &t);
	assert_text(&t, R_CODE, "missing_field");
	ids = f_jsonb(&t, R_IDENTIFIERS);
	assert_id(ids, "anonymous_id", "a-5", false);
	assert_id(ids, "user_id", "p-5", true);
	assert_id(ids, "anonymous_id", "p-5", true);
	json_decref(ids);

	rejected_tuple(&b.job, 6, &t);
	ids = f_jsonb(&t, R_IDENTIFIERS);
	assert_int_equal(json_array_size(ids), 1);
	assert_id(ids, "user_id", "u-6", false);
	json_decref(ids);

	rejected_tuple(&b.job, 7, &t);
	assert_true(f_null(&t, R_IDENTIFIERS));

	/* Keys and display values only: nothing raw. */
	assert_null(memmem(b.job.rejected.data, b.job.rejected.len, "jane.doe", 8));
	built_release(&b);
	free(body);
	free(pad);
}

/* ---- suppressed identifiers ---- */

/* Adds the key Weft computes for (type, raw) to set. */
static void suppress(struct keyset *set, const char *type, const char *raw)
{
	size_t len = strlen(raw);
	char *norm = malloc(len + 1);
	uint8_t key[PRIVACY_KEY_BYTES];
	size_t n;

	assert_non_null(norm);
	n = privacy_normalise(type, raw, len, norm);
	assert_true(n > 0);
	privacy_identifier_key(hasher, type, norm, n, key);
	keyset_add(set, key);
	free(norm);
}

static void test_ingest__suppressed_events_are_dropped_others_kept(void **state)
{
	struct ingest_context ctx = context_of(INGEST_BATCH);
	struct keyset *set = keyset_new(0);
	struct built b;
	struct tuple t;

	(void)state;
	suppress(set, "user_id", "gone");
	ctx.suppressed = set;
	build_ok_ctx(&b, &ctx, "{\"batch\":["
		"{\"type\":\"track\",\"userId\":\"gone\",\"event\":\"e\",\"messageId\":\"m0\"},"
		"{\"type\":\"track\",\"userId\":\"kept\",\"event\":\"e\",\"messageId\":\"m1\"},"
		"{\"type\":\"identify\",\"anonymousId\":\"a2\",\"userId\":\"gone\"},"
		"{\"type\":\"page\",\"anonymousId\":\"a3\",\"messageId\":\"m3\"},"
		/* an alias from the suppressed id, as previousId */
		"{\"type\":\"alias\",\"userId\":\"new\",\"previousId\":\"gone\"},"
		/* invalid items: suppressed, so not kept as rejected either */
		"{\"type\":\"track\",\"userId\":\"gone\"},"
		"{\"type\":\"bogus\",\"userId\":\"gone\"},"
		/* invalid, not suppressed: rejected as usual */
		"{\"type\":\"track\",\"userId\":\"kept\"}]}");
	assert_int_equal(b.job.nrows, 2);
	assert_text(&b.t, F_MESSAGE_ID, "m1");
	decode_row(&b, 1);
	assert_text(&b.t, F_MESSAGE_ID, "m3");
	assert_int_equal(b.job.suppressed, 5);
	assert_int_equal(b.job.events_by_kind[INGEST_TRACK], 1);
	assert_int_equal(b.job.events_by_kind[INGEST_PAGE], 1);
	assert_int_equal(b.job.events_by_kind[INGEST_IDENTIFY], 0);
	assert_int_equal(b.job.events_by_kind[INGEST_ALIAS], 0);
	assert_int_equal(b.job.nrejected, 1);
	assert_int_equal(b.job.rejections[0].index, 7);
	rejected_tuple(&b.job, 0, &t);
	assert_int_equal(t.size, b.job.rejected.len);	/* one tuple, no more */
	built_release(&b);
	keyset_free(set);
}

static void test_ingest__suppression_looks_at_every_identifier(void **state)
{
	static const char *const dropped[] = {
		"{\"userId\":\"u1\",\"traits\":{\"email\":\"Gone@Example.com\"}}",
		"{\"userId\":\"u2\",\"context\":{\"traits\":{\"phone\":\"+1 415 555 2671\"}}}",
		"{\"anonymousId\":\"a3\",\"context\":{\"device\":{\"type\":\"ios\","
		"\"id\":\"DEV-GONE\"}}}",
		"{\"userId\":\"u4\",\"context\":{\"externalIds\":[{\"id\":\"sf-gone\","
		"\"type\":\"Salesforce\",\"collection\":\"users\",\"encoding\":\"none\"}]}}",
	};
	struct ingest_context ctx = context_of(INGEST_IDENTIFY);
	struct keyset *set = keyset_new(0);
	struct ingest_job job;
	struct ingest_error err;

	(void)state;
	suppress(set, "email", "gone@example.com");
	suppress(set, "phone", "+14155552671");
	suppress(set, "ios.id", "DEV-GONE");
	suppress(set, "salesforce", "sf-gone");
	ctx.suppressed = set;
	for (size_t i = 0; i < sizeof(dropped) / sizeof(*dropped); i++) {
		assert_int_equal(build_ctx(&ctx, dropped[i], &job, &err), 0);
		/* A single event: acknowledged with nothing to commit. */
		assert_int_equal(job.suppressed, 1);
		assert_int_equal(job.nrows, 0);
		assert_int_equal(job.nrejected, 0);
		assert_int_equal(job.tuples.len, 0);
		assert_int_equal(job.rejected.len, 0);
		ingest_job_release(&job);
	}
	/* The same key under another type is another identifier. */
	assert_int_equal(build_ctx(&ctx, "{\"userId\":\"gone@example.com\"}", &job,
				   &err), 0);
	assert_int_equal(job.suppressed, 0);
	assert_int_equal(job.nrows, 1);
	ingest_job_release(&job);
	keyset_free(set);
}

static void test_ingest__without_a_suppressed_set_nothing_is_dropped(void **state)
{
	static const char body[] = "{\"batch\":["
		"{\"type\":\"track\",\"userId\":\"gone\",\"event\":\"e\"},"
		"{\"type\":\"track\",\"userId\":\"gone\"}]}";
	struct ingest_context ctx = context_of(INGEST_BATCH);
	struct keyset *empty = keyset_new(0);
	struct built b;

	(void)state;
	assert_null(ctx.suppressed);
	build_ok_ctx(&b, &ctx, body);
	assert_int_equal(b.job.nrows, 1);
	assert_int_equal(b.job.nrejected, 1);
	assert_int_equal(b.job.suppressed, 0);
	built_release(&b);

	ctx.suppressed = empty;
	build_ok_ctx(&b, &ctx, body);
	assert_int_equal(b.job.nrows, 1);
	assert_int_equal(b.job.nrejected, 1);
	assert_int_equal(b.job.suppressed, 0);
	built_release(&b);
	keyset_free(empty);
}

/* ---- the job ---- */

static void test_ingest__job_release_leaves_an_empty_job(void **state)
{
	struct built b;

	(void)state;
	build_ok(&b, INGEST_BATCH,
		 "{\"batch\":[{\"type\":\"identify\",\"userId\":\"u\"},7]}");
	built_release(&b);
	assert_int_equal(b.job.nrows, 0);
	assert_int_equal(b.job.nrejected, 0);
	assert_null(b.job.rows);
	assert_null(b.job.rejections);
	assert_null(b.job.tuples.data);
	assert_null(b.job.rejected.data);
	/* Releasing twice is harmless. */
	ingest_job_release(&b.job);
}

/* ---- ingest_parse_time ---- */

static int64_t parse_time_ok(const char *s)
{
	int64_t us = 0x7eadbeef;

	if (ingest_parse_time(s, &us) != 0)
		fail_msg("'%s' was refused", s);
	return us;
}

static void test_ingest__parse_time_accepts_iso8601_forms(void **state)
{
	static const struct { const char *s; int64_t us; } cases[] = {
		{ "2026-11-22T10:00:00Z", RECEIVED_US },
		{ "2026-11-22T10:00:00z", RECEIVED_US },
		{ "2026-11-22t10:00:00Z", RECEIVED_US },
		{ "2026-11-22 10:00:00Z", RECEIVED_US },
		{ "2026-11-22T10:00:00", RECEIVED_US },		/* no zone: UTC */
		{ "2026-11-22T10:00Z", RECEIVED_US },		/* no seconds */
		{ "2026-11-22T11:00:00+01:00", RECEIVED_US },
		{ "2026-11-22T11:00:00+0100", RECEIVED_US },
		{ "2026-11-22T05:00:00-05", RECEIVED_US },
		{ "2026-11-22T04:30:00-05:30", RECEIVED_US },
		{ "2026-11-22T10:00:00+00:00", RECEIVED_US },
		{ "2026-11-22T10:00:00-00:00", RECEIVED_US },
		{ "2026-11-22T23:59:00+13:59", RECEIVED_US },
		{ "2026-11-22", RECEIVED_US - 10LL * 3600 * 1000000 },
		{ "1970-01-01T00:00:00Z", 0 },
		{ "1970-01-01", 0 },
		{ "2000-01-01T00:00:00Z", PG_EPOCH_US },
		{ "1969-12-31T23:59:59.5Z", -500000 },
		{ "0001-01-01T00:00:00Z", -62135596800LL * 1000000 },
		{ "9999-12-31T23:59:59.999999Z", 253402300799LL * 1000000 + 999999 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		int64_t got = parse_time_ok(cases[i].s);

		if (got != cases[i].us)
			fail_msg("'%s': got %lld, want %lld", cases[i].s,
				 (long long)got, (long long)cases[i].us);
	}
}

static void test_ingest__parse_time_fractions_of_1_to_9_digits(void **state)
{
	static const struct { const char *frac; int64_t us; } cases[] = {
		{ "1", 100000 }, { "12", 120000 }, { "123", 123000 },
		{ "1234", 123400 }, { "12345", 123450 }, { "123456", 123456 },
		{ "1234567", 123456 }, { "12345678", 123456 },
		{ "123456789", 123456 }, { "000001", 1 }, { "999999999", 999999 },
		{ "0", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		char s[64];

		snprintf(s, sizeof(s), "2026-11-22T10:00:00.%sZ", cases[i].frac);
		assert_int_equal(parse_time_ok(s), RECEIVED_US + cases[i].us);
		snprintf(s, sizeof(s), "2026-11-22T11:00:00,%s+01:00",
			 cases[i].frac);
		assert_int_equal(parse_time_ok(s), RECEIVED_US + cases[i].us);
	}
}

static void test_ingest__parse_time_knows_leap_years(void **state)
{
	int64_t us;

	(void)state;
	assert_int_equal(parse_time_ok("2024-02-29"), 1709164800LL * 1000000);
	assert_int_equal(parse_time_ok("2024-02-29T12:00:00Z"),
			 (1709164800LL + 43200) * 1000000);
	assert_int_equal(parse_time_ok("2024-03-01"),
			 (1709164800LL + 86400) * 1000000);
	parse_time_ok("2000-02-29");		/* divisible by 400 */
	assert_int_equal(ingest_parse_time("2023-02-29", &us), WEFT_EINVAL);
	assert_int_equal(ingest_parse_time("2023-02-29T00:00:00Z", &us),
			 WEFT_EINVAL);
	assert_int_equal(ingest_parse_time("1900-02-29", &us), WEFT_EINVAL);
	assert_int_equal(ingest_parse_time("2100-02-29", &us), WEFT_EINVAL);
	assert_int_equal(ingest_parse_time("2024-02-30", &us), WEFT_EINVAL);
	assert_int_equal(ingest_parse_time("2023-04-31", &us), WEFT_EINVAL);
	parse_time_ok("2023-02-28");
	parse_time_ok("2023-12-31");
}

static void test_ingest__parse_time_agrees_with_timegm(void **state)
{
	unsigned seed = 12345;

	(void)state;
	/* Every day of the calendar's range is computed, not tabulated. */
	for (int i = 0; i < 20000; i++) {
		struct tm tm = { 0 };
		char s[40];
		int y, mo, d, h, mi, sec;

		seed = seed * 1103515245u + 12345u;
		y = 1 + (int)(seed >> 8) % 9999;
		seed = seed * 1103515245u + 12345u;
		mo = 1 + (int)(seed >> 8) % 12;
		seed = seed * 1103515245u + 12345u;
		d = 1 + (int)(seed >> 8) % 28;
		seed = seed * 1103515245u + 12345u;
		h = (int)(seed >> 8) % 24;
		mi = (int)(seed >> 12) % 60;
		sec = (int)(seed >> 18) % 60;
		tm.tm_year = y - 1900;
		tm.tm_mon = mo - 1;
		tm.tm_mday = d;
		tm.tm_hour = h;
		tm.tm_min = mi;
		tm.tm_sec = sec;
		snprintf(s, sizeof(s), "%04d-%02d-%02dT%02d:%02d:%02dZ", y, mo, d,
			 h, mi, sec);
		assert_int_equal(parse_time_ok(s), (int64_t)timegm(&tm) * 1000000);
	}
}

static void test_ingest__parse_time_refuses_malformed_forms(void **state)
{
	static const char *bad[] = {
		"", "2020", "2020-01", "2020-13-45", "2020-00-10", "2020-01-00",
		"2020-01-32", "0000-01-01", "20-01-01", "2020/01/01", "2020-1-1",
		"+2020-01-01", " 2020-01-01", "2020-01-01 ", "2020-01-01x",
		"2020-01-01T", "2020-01-01T10", "2020-01-01T10:", "2020-01-01T1:00Z",
		"2020-01-01T24:00:00Z", "2020-01-01T10:60:00Z",
		"2020-01-01T10:00:61Z", "2020-01-01T10:00:0Z",
		"2020-01-01T10:00:00.Z", "2020-01-01T10:00:00.5.5Z",
		"2020-01-01T10:00:00ZZ", "2020-01-01T10:00:00Z ",
		"2020-01-01T10:00:00+24:00", "2020-01-01T10:00:00+01:60",
		"2020-01-01T10:00:00+1", "2020-01-01T10:00:00+01:0",
		"2020-01-01T10:00:00+01:00:00", "2020-01-01T10:00:00 UTC",
		"2020-01-01T10:00:00+01:", "abcd-ef-gh", "2020-01-01T10.5:00Z",
		"yesterday",
	};
	int64_t us;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		us = 42;
		if (ingest_parse_time(bad[i], &us) != WEFT_EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
	}
}

/* ---- ingest_format_time ---- */

static void test_ingest__format_time_writes_millisecond_utc(void **state)
{
	static const struct { int64_t us; const char *s; } cases[] = {
		{ RECEIVED_US, "2026-11-22T10:00:00.000Z" },
		{ RECEIVED_US + 123456, "2026-11-22T10:00:00.123Z" },
		{ RECEIVED_US + 999999, "2026-11-22T10:00:00.999Z" },
		{ 0, "1970-01-01T00:00:00.000Z" },
		{ -1, "1969-12-31T23:59:59.999Z" },
		{ -500000, "1969-12-31T23:59:59.500Z" },
		{ -1000000, "1969-12-31T23:59:59.000Z" },
		{ 1709164800LL * 1000000, "2024-02-29T00:00:00.000Z" },
		{ -62135596800LL * 1000000, "0001-01-01T00:00:00.000Z" },
		{ 253402300799LL * 1000000 + 999000, "9999-12-31T23:59:59.999Z" },
	};
	char out[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		memset(out, 'X', sizeof(out));
		ingest_format_time(cases[i].us, out, sizeof(out));
		assert_string_equal(out, cases[i].s);
	}
}

static void test_ingest__format_time_round_trips_through_parse(void **state)
{
	unsigned seed = 99;
	char out[32];

	(void)state;
	for (int i = 0; i < 10000; i++) {
		int64_t ms, us;

		seed = seed * 1103515245u + 12345u;
		/* Milliseconds from 1900 to 2100, of both signs. */
		ms = ((int64_t)seed * 1601) % (200LL * 365 * 86400 * 1000) -
		     70LL * 365 * 86400 * 1000;
		ingest_format_time(ms * 1000, out, sizeof(out));
		assert_int_equal(ingest_parse_time(out, &us), 0);
		assert_int_equal(us, ms * 1000);
	}
	/* Sub-millisecond digits are cut, never rounded up. */
	ingest_format_time(RECEIVED_US + 1999, out, sizeof(out));
	assert_string_equal(out, "2026-11-22T10:00:00.001Z");
}

/* ---- ingest_uuid4 ---- */

static int cmp_uuid(const void *a, const void *b)
{
	return memcmp(a, b, 37);
}

static void test_ingest__uuid4_has_version_and_variant_bits(void **state)
{
	char u[40];

	(void)state;
	for (int i = 0; i < 1000; i++) {
		memset(u, 'X', sizeof(u));
		ingest_uuid4(u);
		assert_int_equal(strlen(u), 36);
		if (!is_uuid4(u))
			fail_msg("'%s' is not a UUIDv4", u);
		assert_int_equal(u[37], 'X');	/* exactly 37 bytes written */
	}
}

static void test_ingest__uuid4_is_unique_over_10k(void **state)
{
	enum { N = 10000 };
	char (*u)[37] = malloc(N * sizeof(*u));
	int seen_variant[4] = { 0 };

	(void)state;
	assert_non_null(u);
	for (int i = 0; i < N; i++) {
		ingest_uuid4(u[i]);
		seen_variant[strchr("89ab", u[i][19]) - "89ab"]++;
	}
	qsort(u, N, sizeof(*u), cmp_uuid);
	for (int i = 1; i < N; i++)
		assert_string_not_equal(u[i - 1], u[i]);
	/* The two free bits of the variant nibble are random too. */
	for (int v = 0; v < 4; v++)
		assert_true(seen_variant[v] > N / 8);
	free(u);
}

#define T(f) cmocka_unit_test(f)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_ingest__parse_accepts_an_object),
		T(test_ingest__parse_empty_body_is_invalid_json),
		T(test_ingest__parse_truncated_json_is_invalid_json),
		T(test_ingest__parse_top_level_array_is_invalid_event),
		T(test_ingest__parse_top_level_scalar_is_invalid_event),
		T(test_ingest__parse_out_of_range_numbers_are_invalid_json),
		T(test_ingest__parse_nul_escape_is_invalid_json),
		T(test_ingest__parse_invalid_utf8_is_invalid_json),
		T(test_ingest__parse_deep_nesting_is_invalid_json),
		T(test_ingest__parse_nesting_limit_is_2048),
		T(test_ingest__body_write_key_is_read),
		T(test_ingest__kind_parse_maps_path_segments),
		T(test_ingest__reason_codes_are_stable),
		T(test_ingest__event_requires_user_or_anonymous_id),
		T(test_ingest__either_identity_is_enough),
		T(test_ingest__numeric_ids_are_stringified),
		T(test_ingest__non_scalar_ids_are_invalid_event),
		T(test_ingest__object_fields_must_be_objects),
		T(test_ingest__track_requires_event),
		T(test_ingest__path_sets_the_type_of_a_single_event),
		T(test_ingest__write_key_is_not_stored),
		T(test_ingest__batch_item_write_key_is_not_stored),
		T(test_ingest__reals_are_stored_as_sent),
		T(test_ingest__page_and_screen_name_is_optional),
		T(test_ingest__group_requires_group_id),
		T(test_ingest__alias_requires_previous_id_and_user_id),
		T(test_ingest__message_id_of_100_chars_is_kept),
		T(test_ingest__message_id_of_101_chars_is_too_long),
		T(test_ingest__message_id_length_counts_characters),
		T(test_ingest__absent_message_id_gets_a_uuid4),
		T(test_ingest__generated_message_id_is_a_uuid4),
		T(test_ingest__numeric_message_id_is_stringified),
		T(test_ingest__masked_message_ids_stay_distinct),
		T(test_ingest__message_id_dropped_by_policy_stays_stable),
		T(test_ingest__row_columns_are_encoded_in_order),
		T(test_ingest__no_key_id_is_null),
		T(test_ingest__workspace_comes_from_the_context),
		T(test_ingest__bad_timestamps_are_invalid_timestamp),
		T(test_ingest__clock_skew_is_corrected_to_the_microsecond),
		T(test_ingest__client_timestamp_stands_for_original),
		T(test_ingest__without_sent_at_timestamp_is_original),
		T(test_ingest__without_either_timestamp_is_received_at),
		T(test_ingest__corrected_timestamp_stays_in_range),
		T(test_ingest__batch_sent_at_applies_to_items),
		T(test_ingest__batch_of_2500_is_accepted),
		T(test_ingest__batch_over_2500_is_too_large),
		T(test_ingest__batch_must_have_a_batch_array),
		T(test_ingest__empty_batch_is_accepted_empty),
		T(test_ingest__batch_rejects_invalid_items_by_index),
		T(test_ingest__batch_of_only_invalid_items_is_accepted),
		T(test_ingest__batch_context_is_merged_without_overriding),
		T(test_ingest__batch_context_identifiers_reach_items),
		T(test_ingest__event_of_32_kib_is_accepted),
		T(test_ingest__event_over_32_kib_is_too_large),
		T(test_ingest__oversized_batch_item_is_rejected_alone),
		T(test_ingest__email_comes_from_traits_and_context_traits),
		T(test_ingest__group_traits_are_not_user_identifiers),
		T(test_ingest__same_email_twice_is_one_identifier),
		T(test_ingest__email_display_is_partial),
		T(test_ingest__phone_is_an_identifier),
		T(test_ingest__device_ids_follow_the_device_type),
		T(test_ingest__idfa_only_with_ad_tracking_enabled),
		T(test_ingest__external_ids_lower_cased_users_and_none_only),
		T(test_ingest__identifiers_are_keys_not_raw_values),
		T(test_ingest__blocked_value_list_ignores_case),
		T(test_ingest__blocked_values_include_zeros_and_dashes),
		T(test_ingest__blocked_values_are_trimmed_first),
		T(test_ingest__blocked_user_id_is_flagged_and_the_event_stored),
		T(test_ingest__blocked_ids_pass_validation),
		T(test_ingest__lookalikes_of_blocked_values_are_not_flagged),
		T(test_ingest__empty_ids_stay_without_an_identifier),
		T(test_ingest__blocked_flag_on_every_identifier_source),
		T(test_ingest__blocked_alias_previous_id_is_flagged),
		T(test_ingest__blocked_wins_when_two_values_share_a_key),
		T(test_ingest__event_is_masked_before_encoding),
		T(test_ingest__rejected_items_are_masked),
		T(test_ingest__refused_single_event_root_is_masked),
		T(test_ingest__rejected_items_keep_their_identifiers),
		T(test_ingest__suppressed_events_are_dropped_others_kept),
		T(test_ingest__suppression_looks_at_every_identifier),
		T(test_ingest__without_a_suppressed_set_nothing_is_dropped),
		T(test_ingest__job_release_leaves_an_empty_job),
		T(test_ingest__parse_time_accepts_iso8601_forms),
		T(test_ingest__parse_time_fractions_of_1_to_9_digits),
		T(test_ingest__parse_time_knows_leap_years),
		T(test_ingest__parse_time_agrees_with_timegm),
		T(test_ingest__parse_time_refuses_malformed_forms),
		T(test_ingest__format_time_writes_millisecond_utc),
		T(test_ingest__format_time_round_trips_through_parse),
		T(test_ingest__uuid4_has_version_and_variant_bits),
		T(test_ingest__uuid4_is_unique_over_10k),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
