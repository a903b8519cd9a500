/*
 * Fuzz harness for ingest/: a request body through ingest_parse() and
 * ingest_build(), as api/ hands it over, then checks of everything the job
 * would send to PostgreSQL. COPY refuses a whole group commit for one bad
 * tuple, so the checks are those of the binary COPY format and of the
 * column types: the field counts, lengths that add up, text that is UTF-8
 * without NUL bytes, jsonb that parses (and holds no \u0000, which
 * PostgreSQL's jsonb refuses).
 *
 * The first byte picks the endpoint, the rest is the body:
 *
 *   t i p s g a b   track identify page screen group alias batch, with the
 *                   built-in default policy
 *   T I P S G A B   the same with a workspace policy that drops, hashes and
 *                   redacts the fields ingest reads (messageId, userId,
 *                   ...) to check it copes with what masking leaves
 *   anything else   kind = byte % 7, default policy
 *
 * so a corpus file reads "t{"userId":"u1","event":"Signed Up"}".
 */
#include <stdbool.h>
#include <string.h>

#include <jansson.h>

#include "ingest/ingest.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "privacy/privacy.h"
#include "store/store.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/fuzz_privacy.h"

#define WORKSPACE_ID 42
#define KEY_ID 7
#define RECEIVED_AT_US 1795000000123456LL	/* 2026-11-18T..., a fixed clock */
#define PG_EPOCH_OFFSET_US 946684800000000LL

static const char kinds[] = "tipsgab";

/* A workspace policy that takes away what ingest_build() relies on. */
static const char hostile_policy[] =
	"{\"include_default\":true,\"rules\":["
	"{\"path\":\"messageId\",\"action\":\"drop\"},"
	"{\"path\":\"event\",\"action\":\"hash\"},"
	"{\"path\":\"name\",\"action\":\"redact\"},"
	"{\"path\":\"userId\",\"action\":\"partial\"},"
	"{\"path\":\"type\",\"action\":\"drop\"},"
	"{\"path\":\"context.**\",\"action\":\"sha256\"},"
	"{\"path\":\"properties.*\",\"detector\":\"ip\",\"action\":\"truncate_ip\"}"
	"]}";

static struct privacy_hasher *hasher;
static struct privacy_policy *default_policy;
static struct privacy_policy *hostile;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct buf err = BUF_INIT;

	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	hasher = fuzz_hasher_new(WORKSPACE_ID);
	default_policy = privacy_policy_default();
	if (privacy_policy_parse(hostile_policy, strlen(hostile_policy), &hostile, &err))
		fuzz_fail("the harness's own policy does not parse: %s",
			  err.data ? err.data : "?");
	buf_release(&err);
	return 0;
}

/* ---- reading back what ingest_build() wrote ---- */

struct field {
	const unsigned char *p;	/* NULL for SQL NULL */
	size_t len;
};

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/*
 * Splits the binary COPY tuple at p (at most avail bytes) into nfields
 * fields; returns its length. Anything that does not add up aborts.
 */
static size_t split_tuple(const unsigned char *p, size_t avail, int nfields,
			  struct field *f, const char *what)
{
	size_t off = 2;

	fuzz_check(avail >= 2, "%s: tuple shorter than its field count", what);
	fuzz_check((p[0] << 8 | p[1]) == nfields, "%s: tuple has %d fields, want %d",
		   what, p[0] << 8 | p[1], nfields);
	for (int i = 0; i < nfields; i++) {
		uint32_t n;

		fuzz_check(avail - off >= 4, "%s: field %d has no length", what, i);
		n = be32(p + off);
		off += 4;
		if (n == 0xffffffffu) {
			f[i].p = NULL;
			f[i].len = 0;
			continue;
		}
		fuzz_check(n <= avail - off, "%s: field %d length %u runs past the tuple",
			   what, i, n);
		f[i].p = p + off;
		f[i].len = n;
		off += n;
	}
	return off;
}


static size_t utf8_chars(const unsigned char *s, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += (s[i] & 0xc0) != 0x80;
	return c;
}

/* An error message goes into a JSON reply (and rejected_events): UTF-8 text. */
static void check_message(const char *msg, size_t size)
{
	const char *end = memchr(msg, '\0', size);

	fuzz_check(end, "error message is not terminated");
	fuzz_check(fuzz_utf8_text((const unsigned char *)msg, (size_t)(end - msg)),
		   "error message is not UTF-8: '%s'", msg);
}

static void check_text(const struct field *f, bool nullable, const char *what)
{
	if (!f->p) {
		fuzz_check(nullable, "%s is NULL", what);
		return;
	}
	fuzz_check(fuzz_utf8_text(f->p, f->len), "%s is not UTF-8 text without NUL: '%.*s'",
		   what, (int)f->len, (const char *)f->p);
}

static void check_int(const struct field *f, size_t width, bool nullable, const char *what)
{
	if (!f->p) {
		fuzz_check(nullable, "%s is NULL", what);
		return;
	}
	fuzz_check(f->len == width, "%s is %zu bytes, want %zu", what, f->len, width);
}

/* A jsonb field: version byte 1, then JSON PostgreSQL accepts. Returns it. */
static json_t *check_jsonb(const struct field *f, const char *what)
{
	json_error_t je;
	json_t *j;

	fuzz_check(f->p && f->len >= 1 && f->p[0] == 1, "%s is not jsonb version 1", what);
	fuzz_check(fuzz_utf8_text(f->p + 1, f->len - 1), "%s is not UTF-8 without NUL", what);
	/* Without JSON_ALLOW_NUL: "\u0000" is refused here as by jsonb. */
	j = json_loadb((const char *)f->p + 1, f->len - 1, 0, &je);
	fuzz_check(j, "%s does not parse (%s): %.*s", what, je.text,
		   (int)(f->len - 1), (const char *)f->p + 1);
	return j;
}

static void check_identifiers(json_t *ids)
{
	size_t i;
	json_t *id;

	fuzz_check(json_is_array(ids), "identifiers is not an array");
	json_array_foreach(ids, i, id) {
		json_t *key = json_object_get(id, "key");
		json_t *value = json_object_get(id, "value");

		fuzz_check(json_is_string(json_object_get(id, "type")),
			   "identifier %zu has no type", i);
		fuzz_check(json_is_string(key) && json_string_length(key) == 2 * PRIVACY_KEY_BYTES,
			   "identifier %zu has no 32-digit key", i);
		fuzz_check(json_is_string(value) || json_is_null(value),
			   "identifier %zu has a value that is neither string nor null", i);
	}
}

static void check_row(const struct ingest_job *job, size_t i)
{
	static const char *const names[] = {
		"track", "identify", "page", "screen", "group", "alias",
	};
	const struct ingest_row *r = &job->rows[i];
	const unsigned char *t = (const unsigned char *)job->tuples.data;
	struct field f[STORE_EVENT_FIELDS];
	size_t used;
	json_t *j;

	fuzz_check(r->kind < INGEST_BATCH, "row %zu has kind %d", i, (int)r->kind);
	fuzz_check(r->offset <= job->tuples.len && r->len <= job->tuples.len - r->offset,
		   "row %zu lies outside the tuple buffer", i);
	fuzz_check(r->workspace_id == WORKSPACE_ID, "row %zu has the wrong workspace", i);
	used = split_tuple(t + r->offset, r->len, STORE_EVENT_FIELDS, f, "event tuple");
	fuzz_check(used == r->len, "row %zu: its fields take %zu of its %zu bytes",
		   i, used, r->len);

	check_int(&f[0], 8, false, "workspace_id");
	fuzz_check(be64(f[0].p) == WORKSPACE_ID, "workspace_id field is wrong");
	check_int(&f[1], 8, false, "seq");
	check_text(&f[2], false, "message_id");
	fuzz_check(f[2].len > 0, "message_id is empty");
	fuzz_check(utf8_chars(f[2].p, f[2].len) <= INGEST_MAX_MESSAGE_ID,
		   "message_id has more than %d characters", INGEST_MAX_MESSAGE_ID);
	fuzz_check(r->message_id < job->strings.len &&
		   strlen(job->strings.data + r->message_id) == f[2].len &&
		   memcmp(job->strings.data + r->message_id, f[2].p, f[2].len) == 0,
		   "row %zu: its messageId string differs from its tuple's", i);
	check_text(&f[3], false, "type");
	fuzz_check(f[3].len == strlen(names[r->kind]) &&
		   memcmp(f[3].p, names[r->kind], f[3].len) == 0,
		   "row %zu: type field '%.*s' is not its kind %s", i,
		   (int)f[3].len, (const char *)f[3].p, names[r->kind]);
	check_text(&f[4], true, "event");
	check_int(&f[5], 8, false, "received_at");
	fuzz_check(be64(f[5].p) == RECEIVED_AT_US - PG_EPOCH_OFFSET_US,
		   "received_at is not the server's clock");
	check_int(&f[6], 8, true, "sent_at");
	check_int(&f[7], 8, true, "original_timestamp");
	check_int(&f[8], 8, false, "timestamp");
	check_int(&f[9], 8, false, "key_id");
	fuzz_check(be64(f[9].p) == KEY_ID, "key_id field is wrong");

	j = check_jsonb(&f[10], "identifiers");
	check_identifiers(j);
	json_decref(j);

	fuzz_check(f[11].len - 1 <= INGEST_MAX_EVENT_BYTES,
		   "payload of %zu bytes is over the limit", f[11].len - 1);
	j = check_jsonb(&f[11], "payload");
	fuzz_check(json_is_object(j), "payload is not an object");
	json_decref(j);
}

static void check_rejection(const struct ingest_job *job, size_t i, size_t *off,
			    size_t batch_size)
{
	const struct ingest_rejection *r = &job->rejections[i];
	const unsigned char *t = (const unsigned char *)job->rejected.data;
	struct field f[STORE_REJECTED_FIELDS];
	const char *code;
	json_t *j;

	fuzz_check(r->index < batch_size, "rejection %zu has index %zu of %zu",
		   i, r->index, batch_size);
	fuzz_check(i == 0 || r->index > job->rejections[i - 1].index,
		   "rejections are not in batch order");
	fuzz_check(r->reason > INGEST_INVALID_JSON && r->reason <= INGEST_BATCH_TOO_LARGE,
		   "rejection %zu has reason %d", i, (int)r->reason);
	check_message(r->message, sizeof(r->message));
	*off += split_tuple(t + *off, job->rejected.len - *off, STORE_REJECTED_FIELDS, f,
			    "rejected tuple");

	check_int(&f[0], 8, false, "rejected workspace_id");
	check_int(&f[1], 8, false, "rejected received_at");
	check_text(&f[2], true, "rejected message_id");
	if (f[2].p)
		fuzz_check(utf8_chars(f[2].p, f[2].len) <= INGEST_MAX_MESSAGE_ID,
			   "rejected message_id is too long");
	check_int(&f[3], 4, false, "batch_index");
	fuzz_check(be32(f[3].p) == r->index, "batch_index differs from the rejection's");
	check_text(&f[4], false, "code");
	code = ingest_reason_code(r->reason);
	fuzz_check(f[4].len == strlen(code) && memcmp(f[4].p, code, f[4].len) == 0,
		   "code field differs from the rejection's reason");
	check_text(&f[5], false, "rejected message");
	if (f[6].p) {
		j = check_jsonb(&f[6], "rejected payload");
		fuzz_check(json_is_object(j), "rejected payload is not an object");
		json_decref(j);
	}
}

static void check_job(const struct ingest_job *job, enum ingest_kind kind, size_t batch_size)
{
	size_t end = 0, counted = 0, off = 0;

	if (kind == INGEST_BATCH)
		fuzz_check(job->nrows + job->nrejected == batch_size,
			   "batch of %zu gave %zu rows and %zu rejections",
			   batch_size, job->nrows, job->nrejected);
	else
		fuzz_check(job->nrows == 1 && job->nrejected == 0,
			   "one event gave %zu rows and %zu rejections",
			   job->nrows, job->nrejected);
	for (size_t i = 0; i < job->nrows; i++) {
		fuzz_check(job->rows[i].offset == end, "row %zu does not follow row %zu",
			   i, i - 1);
		check_row(job, i);
		end += job->rows[i].len;
	}
	fuzz_check(end == job->tuples.len, "tuples hold %zu bytes past the last row",
		   job->tuples.len - end);
	for (int k = 0; k < INGEST_BATCH; k++)
		counted += job->events_by_kind[k];
	fuzz_check(counted == job->nrows, "events_by_kind adds up to %zu, not %zu",
		   counted, job->nrows);
	for (size_t i = 0; i < job->nrejected; i++)
		check_rejection(job, i, &off, batch_size);
	fuzz_check(off == job->rejected.len, "rejected tuples hold %zu extra bytes",
		   job->rejected.len - off);
}

/*
 * Fills the stack below us with 0xff before each build, so that a local
 * read before it is written (MemorySanitizer's job, which would need every
 * library rebuilt) shows up the same way every run: as bytes that are not
 * UTF-8, and, for a string, as no NUL at all, which ASan reports as a read
 * past the array.
 */
__attribute__((noinline)) static void paint_stack(void)
{
	unsigned char junk[16384];

	memset(junk, 0xff, sizeof(junk));
	__asm__ volatile("" : : "r"(junk) : "memory");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ingest_context ctx = {
		.workspace_id = WORKSPACE_ID,
		.key_id = KEY_ID,
		.received_at_us = RECEIVED_AT_US,
		.hasher = hasher,
	};
	struct ingest_error err;
	struct ingest_job job;
	const char *k;
	json_t *root = NULL;
	size_t batch_size = 0;
	int rc;

	if (size < 1)
		return 0;
	if (data[0] && (k = strchr(kinds, data[0]))) {
		ctx.kind = (enum ingest_kind)(k - kinds);
		ctx.policy = default_policy;
	} else if (data[0] >= 'A' && data[0] <= 'Z' && (k = strchr(kinds, data[0] + 32))) {
		ctx.kind = (enum ingest_kind)(k - kinds);
		ctx.policy = hostile;
	} else {
		ctx.kind = (enum ingest_kind)(data[0] % 7);
		ctx.policy = default_policy;
	}

	memset(&err, 0xaa, sizeof(err));
	rc = ingest_parse((const char *)data + 1, size - 1, &root, &err);
	if (rc) {
		fuzz_check(!root, "ingest_parse failed yet set root");
		fuzz_check(err.reason == INGEST_INVALID_JSON || err.reason == INGEST_INVALID_EVENT,
			   "ingest_parse failed with reason %d", (int)err.reason);
		check_message(err.message, sizeof(err.message));
		return 0;
	}
	fuzz_check(json_is_object(root), "ingest_parse accepted a non-object");
	(void)ingest_body_write_key(root);
	if (ctx.kind == INGEST_BATCH)
		batch_size = json_array_size(json_object_get(root, "batch"));

	ingest_job_init(&job);
	memset(&err, 0xaa, sizeof(err));
	paint_stack();
	rc = ingest_build(&ctx, root, &job, &err);
	if (rc) {
		fuzz_check(err.reason != INGEST_OK && err.reason <= INGEST_BATCH_TOO_LARGE,
			   "ingest_build failed with reason %d", (int)err.reason);
		check_message(err.message, sizeof(err.message));
		fuzz_check(job.nrows == 0 && job.nrejected == 0 && job.tuples.len == 0 &&
			   job.rejected.len == 0,
			   "a refused request left %zu rows and %zu rejections in the job",
			   job.nrows, job.nrejected);
	} else {
		check_job(&job, ctx.kind, batch_size);
	}
	ingest_job_release(&job);
	json_decref(root);
	return 0;
}
