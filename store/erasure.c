/*
 * Erasures (docs/profiles.md#erase): the job row that is also the audit
 * record, the suppression list, and deleting every stored row that
 * carries one of a person's identifier keys.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/digest.h"
#include "lib/err.h"
#include "lib/log.h"

static void int_text(char *out, size_t len, int64_t v)
{
	snprintf(out, len, "%lld", (long long)v);
}

static int insert_suppressed(struct store *s, const char *ws, const uint8_t (*keys)[16],
			     const char *const *types, size_t n, const char *eid)
{
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i++) {
		const char *params[4] = { ws, (const char *)keys[i], types[i], eid };
		int lengths[4] = { 0, 16, 0, 0 };
		int formats[4] = { 0, 1, 0, 0 };
		PGresult *res = PQexecParams(s->conn,
			"INSERT INTO suppressed_keys (workspace_id, key, type, erasure_id)"
			" VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
			4, NULL, params, lengths, formats, 0);

		rc = store_check(s, res, PGRES_COMMAND_OK, "suppress identifier");
		PQclear(res);
	}
	return rc;
}

int store_erasure_create(struct store *s, int64_t workspace_id, int64_t key_id, bool suppress,
			 const struct store_erasure_scope *scope, const char *const *types,
			 int64_t *erasure_id)
{
	char ws[24], kid[24], nids[24], applied[24], upto[24], eid[24];
	const char *params[8] = { ws, key_id ? kid : NULL, suppress ? "t" : "f",
				  (const char *)scope->keys, (const char *)scope->seqs, nids,
				  applied, upto };
	int lengths[8] = { 0, 0, 0, (int)(scope->nkeys * 16), (int)(scope->nseqs * 8), 0, 0, 0 };
	int formats[8] = { 0, 0, 0, 1, 1, 0, 0, 0 };
	PGresult *res;
	int rc;

	int_text(ws, sizeof(ws), workspace_id);
	int_text(kid, sizeof(kid), key_id);
	int_text(nids, sizeof(nids), (int64_t)scope->nkeys);
	int_text(applied, sizeof(applied), scope->applied_seq);
	int_text(upto, sizeof(upto), scope->upto_seq);
	/* The job row and the suppression list together, or neither. */
	if ((rc = store_exec(s, "BEGIN", "begin erasure")))
		return rc;
	res = PQexecParams(s->conn,
		"INSERT INTO erasures (workspace_id, key_id, suppress, status, pending_keys,"
		" pending_seqs, identifiers, applied_seq, upto_seq, profiles)"
		" VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $8, 1) RETURNING erasure_id",
		8, NULL, params, lengths, formats, 0);
	rc = store_check(s, res, PGRES_TUPLES_OK, "create erasure");
	if (!rc)
		*erasure_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	int_text(eid, sizeof(eid), rc ? 0 : *erasure_id);
	if (!rc && suppress)
		rc = insert_suppressed(s, ws, scope->keys, types, scope->nkeys, eid);
	if (rc) {
		store_exec(s, "ROLLBACK", "roll back erasure");
		return rc;
	}
	return store_exec(s, "COMMIT", "commit erasure");
}

int store_suppressed_add(struct store *s, int64_t workspace_id, const uint8_t (*keys)[16],
			 const char *const *types, size_t n, int64_t erasure_id)
{
	char ws[24], eid[24];
	int rc = store_exec(s, "BEGIN", "begin suppress");

	int_text(ws, sizeof(ws), workspace_id);
	int_text(eid, sizeof(eid), erasure_id);
	if (!rc)
		rc = insert_suppressed(s, ws, keys, types, n, eid);
	if (rc) {
		store_exec(s, "ROLLBACK", "roll back suppress");
		return rc;
	}
	return store_exec(s, "COMMIT", "commit suppress");
}

/* The keys as a text array literal of 32-character hex strings, as events.identifiers has them. */
static char *hex_array(const uint8_t *keys, size_t n)
{
	char *out = xmalloc(n * 33 + 3), *p = out;

	*p++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*p++ = ',';
		hex_encode(keys + 16 * i, 16, p);
		p += 32;
	}
	*p++ = '}';
	*p = '\0';
	return out;
}

/* Native-order 8-byte seqs as a bigint array literal. */
static char *seq_array(const uint8_t *seqs, size_t n)
{
	struct buf b = BUF_INIT;

	buf_addc(&b, '{');
	for (size_t i = 0; i < n; i++) {
		int64_t v;

		memcpy(&v, seqs + 8 * i, 8);
		buf_printf(&b, "%s%lld", i ? "," : "", (long long)v);
	}
	buf_adds(&b, "}");
	buf_addc(&b, '\0');
	return b.data;
}

static int run_count(struct store *s, const char *sql, int n, const char *const *params,
		     const char *what, int64_t *count)
{
	PGresult *res = PQexecParams(s->conn, sql, n, NULL, params, NULL, NULL, 0);
	int rc = store_check(s, res, PGRES_COMMAND_OK, what);

	if (!rc)
		*count = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return rc;
}

/* The rows an erasure carries, read (and locked) inside the caller's transaction. */
static int scope_text(struct store *s, const char *ws, const char *eid, char **keys,
		      char **seqs, char applied[24], char upto[24], char requested[64])
{
	const char *params[2] = { ws, eid };
	PGresult *res = PQexecParams(s->conn,
		"SELECT pending_keys, pending_seqs, applied_seq, upto_seq, requested_at::text"
		" FROM erasures WHERE workspace_id = $1 AND erasure_id = $2"
		" AND pending_keys IS NOT NULL FOR UPDATE", 2, NULL, params, NULL, NULL, 1);
	int rc = store_check(s, res, PGRES_TUPLES_OK, "read erasure scope");

	if (!rc && PQntuples(res) == 0)
		rc = WEFT_ENOTFOUND;
	if (!rc) {
		struct store_field f = { PQgetvalue(res, 0, 2), 8 };

		*keys = hex_array((const uint8_t *)PQgetvalue(res, 0, 0),
				  (size_t)PQgetlength(res, 0, 0) / 16);
		*seqs = seq_array((const uint8_t *)PQgetvalue(res, 0, 1),
				  PQgetisnull(res, 0, 1) ? 0 : (size_t)PQgetlength(res, 0, 1) / 8);
		int_text(applied, 24, store_field_int8(&f));
		f.data = PQgetvalue(res, 0, 3);
		int_text(upto, 24, store_field_int8(&f));
		snprintf(requested, 64, "%s", PQgetvalue(res, 0, 4));
	}
	PQclear(res);
	return rc;
}

#define CARRIES_KEYS \
	" EXISTS (SELECT 1 FROM jsonb_array_elements(identifiers) x" \
	" WHERE x->>'key' = ANY($2::text[]))"

int store_erasure_delete_rows(struct store *s, int64_t workspace_id, int64_t erasure_id,
			      struct store_erasure_counts *out)
{
	char ws[24], eid[24], applied[24], upto[24], requested[64];
	char *keys = NULL, *seqs = NULL;
	int rc;

	int_text(ws, sizeof(ws), workspace_id);
	int_text(eid, sizeof(eid), erasure_id);
	memset(out, 0, sizeof(*out));
	rc = store_exec(s, "BEGIN", "begin erasure");
	/* Raise the floor first: a deleted last event's seq is never handed out again. */
	if (!rc)
		rc = store_exec(s, "UPDATE log_head SET last_seq = greatest(last_seq,"
				" (SELECT coalesce(max(seq), 0) FROM events)) WHERE id = 1",
				"raise log head");
	if (!rc)
		rc = scope_text(s, ws, eid, &keys, &seqs, applied, upto, requested);
	if (!rc) {
		const char *p[5] = { ws, keys, seqs, applied, upto };

		/*
		 * The person's events: those the profile held, and those committed
		 * before the erasure but not yet applied that carry its keys.
		 * Nothing after the erasure began.
		 */
		rc = run_count(s, "DELETE FROM events WHERE workspace_id = $1 AND (seq = ANY($3::bigint[])"
			       " OR (seq > $4 AND seq <= $5 AND" CARRIES_KEYS "))",
			       5, p, "erase events", &out->events_deleted);
		const char *q[3] = { ws, keys, upto };

		/* Other people's events that carried one of its identifiers keep all but it. */
		if (!rc)
			rc = run_count(s, "UPDATE events SET identifiers = (SELECT coalesce(jsonb_agg(x),"
				       " '[]') FROM jsonb_array_elements(identifiers) x WHERE NOT"
				       " (x->>'key' = ANY($2::text[]))) WHERE workspace_id = $1"
				       " AND seq <= $3 AND" CARRIES_KEYS, 3, q, "scrub events",
				       &out->events_scrubbed);
	}
	if (!rc) {
		const char *p[3] = { ws, keys, requested };

		rc = run_count(s, "DELETE FROM rejected_events WHERE workspace_id = $1"
			       " AND received_at <= $3::timestamptz AND identifiers IS NOT NULL AND"
			       CARRIES_KEYS, 3, p, "erase rejected events", &out->rejected_deleted);
	}
	free(keys);
	free(seqs);
	if (rc) {
		store_exec(s, "ROLLBACK", "roll back erasure");
		return rc;
	}
	return store_exec(s, "COMMIT", "commit erasure");
}

int store_erasure_finish(struct store *s, int64_t workspace_id, int64_t erasure_id,
			 const struct store_erasure_counts *c, const char *error)
{
	char ws[24], eid[24], ev[24], rj[24], sc[24];
	const char *params[6] = { ws, eid, ev, rj, sc, error };
	int64_t done = 0;
	int rc;

	int_text(ws, sizeof(ws), workspace_id);
	int_text(eid, sizeof(eid), erasure_id);
	int_text(ev, sizeof(ev), c->events_deleted);
	int_text(rj, sizeof(rj), c->rejected_deleted);
	int_text(sc, sizeof(sc), c->events_scrubbed);
	/*
	 * Done only once the engine has saved its state after the wipe: until
	 * then a restart must wipe again, and needs the keys to.
	 */
	rc = run_count(s,
		"UPDATE erasures SET status = CASE WHEN $6::text IS NULL THEN 'done' ELSE 'failed'"
		" END, finished_at = now(), events_deleted = $3, rejected_deleted = $4,"
		" events_scrubbed = $5, error = $6,"
		" pending_keys = CASE WHEN $6::text IS NULL THEN NULL ELSE pending_keys END,"
		" pending_seqs = CASE WHEN $6::text IS NULL THEN NULL ELSE pending_seqs END"
		" WHERE workspace_id = $1 AND erasure_id = $2 AND ($6::text IS NOT NULL OR"
		" EXISTS (SELECT 1 FROM engine_checkpoint WHERE erasure_id >= erasures.erasure_id))",
		6, params, "finish erasure", &done);
	return rc ? rc : done ? 0 : WEFT_ECONFLICT;
}

int store_erasure_get(struct store *s, int64_t workspace_id, int64_t erasure_id,
		      struct store_erasure *out)
{
	char ws[24], eid[24];
	const char *params[2] = { ws, eid };
	PGresult *res;
	int rc;

	int_text(ws, sizeof(ws), workspace_id);
	int_text(eid, sizeof(eid), erasure_id);
	res = PQexecParams(s->conn,
		"SELECT status, suppress, extract(epoch from requested_at)::float8,"
		" extract(epoch from finished_at)::float8, profiles, identifiers,"
		" events_deleted, rejected_deleted, coalesce(error, ''), key_id, events_scrubbed"
		" FROM erasures WHERE workspace_id = $1 AND erasure_id = $2",
		2, NULL, params, NULL, NULL, 0);
	rc = store_check(s, res, PGRES_TUPLES_OK, "read erasure");
	if (!rc && PQntuples(res) == 0)
		rc = WEFT_ENOTFOUND;
	if (!rc) {
		memset(out, 0, sizeof(*out));
		out->erasure_id = erasure_id;
		snprintf(out->status, sizeof(out->status), "%s", PQgetvalue(res, 0, 0));
		out->suppress = PQgetvalue(res, 0, 1)[0] == 't';
		out->requested_at = strtod(PQgetvalue(res, 0, 2), NULL);
		out->finished_at = PQgetisnull(res, 0, 3) ? 0 : strtod(PQgetvalue(res, 0, 3), NULL);
		out->profiles = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
		out->identifiers = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
		out->events_deleted = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
		out->rejected_deleted = strtoll(PQgetvalue(res, 0, 7), NULL, 10);
		snprintf(out->error, sizeof(out->error), "%s", PQgetvalue(res, 0, 8));
		out->key_id = strtoll(PQgetvalue(res, 0, 9), NULL, 10);
		out->events_scrubbed = strtoll(PQgetvalue(res, 0, 10), NULL, 10);
	}
	PQclear(res);
	return rc;
}

int store_erasures_pending(struct store *s,
			   int (*fn)(void *arg, int64_t workspace_id, int64_t erasure_id,
				     const struct store_erasure_scope *scope),
			   void *arg)
{
	PGresult *res = PQexecParams(s->conn,
		"SELECT workspace_id, erasure_id, pending_keys, pending_seqs, applied_seq, upto_seq"
		" FROM erasures WHERE status <> 'done' AND pending_keys IS NOT NULL"
		" ORDER BY erasure_id", 0, NULL, NULL, NULL, NULL, 1);
	int rc = store_check(s, res, PGRES_TUPLES_OK, "read pending erasures");

	for (int i = 0; !rc && i < PQntuples(res); i++) {
		struct store_erasure_scope sc = { 0 };
		struct store_field f = { PQgetvalue(res, i, 0), 8 };
		int64_t ws, id;

		/* Binary results: big-endian integers, raw bytes. */
		ws = store_field_int8(&f);
		f.data = PQgetvalue(res, i, 1);
		id = store_field_int8(&f);
		sc.keys = (const uint8_t (*)[16])PQgetvalue(res, i, 2);
		sc.nkeys = (size_t)PQgetlength(res, i, 2) / 16;
		sc.seqs = (const int64_t *)PQgetvalue(res, i, 3);
		sc.nseqs = PQgetisnull(res, i, 3) ? 0 : (size_t)PQgetlength(res, i, 3) / 8;
		f.data = PQgetvalue(res, i, 4);
		sc.applied_seq = PQgetisnull(res, i, 4) ? 0 : store_field_int8(&f);
		f.data = PQgetvalue(res, i, 5);
		sc.upto_seq = PQgetisnull(res, i, 5) ? 0 : store_field_int8(&f);
		rc = fn(arg, ws, id, &sc);
	}
	PQclear(res);
	return rc;
}
