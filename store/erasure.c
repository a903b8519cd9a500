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
#include "lib/err.h"
#include "lib/log.h"

static void int_text(char *out, size_t len, int64_t v)
{
	snprintf(out, len, "%lld", (long long)v);
}

int store_erasure_create(struct store *s, int64_t workspace_id, int64_t key_id, bool suppress,
			 const uint8_t (*keys)[16], size_t n, int64_t upto_seq, int profiles,
			 int64_t *erasure_id)
{
	char ws[24], kid[24], nids[24], upto[24], prof[24];
	const char *params[7] = { ws, key_id ? kid : NULL, suppress ? "t" : "f",
				  (const char *)keys, nids, upto, prof };
	int lengths[7] = { 0, 0, 0, (int)(n * 16), 0, 0, 0 };
	int formats[7] = { 0, 0, 0, 1, 0, 0, 0 };
	PGresult *res;
	int rc;

	int_text(ws, sizeof(ws), workspace_id);
	int_text(kid, sizeof(kid), key_id);
	int_text(nids, sizeof(nids), (int64_t)n);
	int_text(upto, sizeof(upto), upto_seq);
	int_text(prof, sizeof(prof), profiles);
	res = PQexecParams(s->conn,
		"INSERT INTO erasures (workspace_id, key_id, suppress, status, pending_keys,"
		" identifiers, upto_seq, profiles) VALUES ($1, $2, $3, 'running', $4, $5, $6, $7)"
		" RETURNING erasure_id", 7, NULL, params, lengths, formats, 0);
	rc = store_check(s, res, PGRES_TUPLES_OK, "create erasure");
	if (!rc)
		*erasure_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return rc;
}

int store_suppressed_add(struct store *s, int64_t workspace_id, const uint8_t (*keys)[16],
			 const char *const *types, size_t n, int64_t erasure_id)
{
	char ws[24], eid[24];
	int rc = store_exec(s, "BEGIN", "begin suppress");

	int_text(ws, sizeof(ws), workspace_id);
	int_text(eid, sizeof(eid), erasure_id);
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
	if (rc) {
		store_exec(s, "ROLLBACK", "roll back suppress");
		return rc;
	}
	return store_exec(s, "COMMIT", "commit suppress");
}

/* The keys as a text array of 32-character hex strings, as events.identifiers has them. */
static char *hex_array(const uint8_t (*keys)[16], size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char *out = xmalloc(n * 33 + 3), *p = out;

	*p++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*p++ = ',';
		for (int b = 0; b < 16; b++) {
			*p++ = hex[keys[i][b] >> 4];
			*p++ = hex[keys[i][b] & 15];
		}
	}
	*p++ = '}';
	*p = '\0';
	return out;
}

static int delete_count(struct store *s, const char *sql, const char *const *params,
			const char *what, int64_t *count)
{
	PGresult *res = PQexecParams(s->conn, sql, 2, NULL, params, NULL, NULL, 0);
	int rc = store_check(s, res, PGRES_COMMAND_OK, what);

	if (!rc)
		*count = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return rc;
}

int store_erasure_delete_rows(struct store *s, int64_t workspace_id,
			      const uint8_t (*keys)[16], size_t n, int64_t *events,
			      int64_t *rejected)
{
	char ws[24];
	char *arr = hex_array(keys, n);
	const char *params[2] = { ws, arr };
	int rc;

	int_text(ws, sizeof(ws), workspace_id);
	*events = *rejected = 0;
	rc = store_exec(s, "BEGIN", "begin erasure");
	/* Raise the floor first: a deleted last event's seq is never handed out again. */
	if (!rc)
		rc = store_exec(s, "UPDATE log_head SET last_seq = greatest(last_seq,"
				" (SELECT coalesce(max(seq), 0) FROM events)) WHERE id = 1",
				"raise log head");
	if (!rc)
		rc = delete_count(s,
			"DELETE FROM events WHERE workspace_id = $1 AND EXISTS (SELECT 1 FROM"
			" jsonb_array_elements(identifiers) x WHERE x->>'key' = ANY($2::text[]))",
			params, "erase events", events);
	if (!rc)
		rc = delete_count(s,
			"DELETE FROM rejected_events WHERE workspace_id = $1 AND identifiers IS NOT NULL"
			" AND EXISTS (SELECT 1 FROM jsonb_array_elements(identifiers) x"
			" WHERE x->>'key' = ANY($2::text[]))",
			params, "erase rejected events", rejected);
	free(arr);
	if (rc) {
		store_exec(s, "ROLLBACK", "roll back erasure");
		return rc;
	}
	return store_exec(s, "COMMIT", "commit erasure");
}

int store_erasure_finish(struct store *s, int64_t workspace_id, int64_t erasure_id,
			 int64_t events, int64_t rejected, const char *error)
{
	char ws[24], eid[24], ev[24], rj[24];
	const char *params[5] = { ws, eid, ev, rj, error };

	int_text(ws, sizeof(ws), workspace_id);
	int_text(eid, sizeof(eid), erasure_id);
	int_text(ev, sizeof(ev), events);
	int_text(rj, sizeof(rj), rejected);
	return store_exec_params(s,
		"UPDATE erasures SET status = CASE WHEN $5::text IS NULL THEN 'done' ELSE 'failed'"
		" END, finished_at = now(), events_deleted = $3, rejected_deleted = $4,"
		" error = $5, pending_keys = CASE WHEN $5::text IS NULL THEN NULL"
		" ELSE pending_keys END WHERE workspace_id = $1 AND erasure_id = $2",
		5, params, "finish erasure");
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
		" events_deleted, rejected_deleted, coalesce(error, ''), key_id"
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
	}
	PQclear(res);
	return rc;
}

int store_erasures_pending(struct store *s,
			   int (*fn)(void *arg, int64_t workspace_id, int64_t erasure_id,
				     const uint8_t (*keys)[16], size_t n, int64_t upto_seq),
			   void *arg)
{
	PGresult *res = PQexecParams(s->conn,
		"SELECT workspace_id, erasure_id, pending_keys, upto_seq FROM erasures"
		" WHERE status <> 'done' AND pending_keys IS NOT NULL ORDER BY erasure_id",
		0, NULL, NULL, NULL, NULL, 1);
	int rc = store_check(s, res, PGRES_TUPLES_OK, "read pending erasures");

	for (int i = 0; !rc && i < PQntuples(res); i++) {
		int64_t ws, id, upto;

		/* Binary results: big-endian integers, raw bytes. */
		struct store_field f = { PQgetvalue(res, i, 0), 8 };

		ws = store_field_int8(&f);
		f.data = PQgetvalue(res, i, 1);
		id = store_field_int8(&f);
		f.data = PQgetvalue(res, i, 3);
		upto = PQgetisnull(res, i, 3) ? 0 : store_field_int8(&f);
		rc = fn(arg, ws, id, (const uint8_t (*)[16])PQgetvalue(res, i, 2),
			(size_t)PQgetlength(res, i, 2) / 16, upto);
	}
	PQclear(res);
	return rc;
}
