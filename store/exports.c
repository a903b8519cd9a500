/*
 * Audience export jobs and their delta cursors (migration 0007). The
 * export worker is the only writer of a running job; the API creates jobs
 * and reads them. A delta job's delivery and its destination's cursor
 * move in one statement, so a crash repeats at most the batch in flight.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"

#define I64(buf, v) snprintf((buf), sizeof(buf), "%lld", (long long)(v))

void store_export_release(struct store_export *x)
{
	free(x->fields_json);
	free(x->destination_json);
	free(x->destination_key);
	free(x->error);
	free(x->file_name);
	memset(x, 0, sizeof(*x));
}

int store_export_create(struct store *s, const struct store_export *x, int64_t *id)
{
	char ws[24], aid[24], kid[24];
	const char *params[9] = {
		ws, aid, x->audience_key, x->format, x->mode, x->fields_json,
		x->destination_json, x->destination_key, x->key_id ? kid : NULL,
	};
	PGresult *res;
	int rc;

	I64(ws, x->workspace_id);
	I64(aid, x->audience_id);
	I64(kid, x->key_id);
	res = PQexecParams(s->conn,
		"INSERT INTO exports (workspace_id, audience_id, audience_key, format, mode, fields,"
		" destination, destination_key, key_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
		" RETURNING export_id", 9, NULL, params, NULL, NULL, 0);
	rc = store_check(s, res, PGRES_TUPLES_OK, "create export");
	if (!rc)
		*id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return rc;
}

/* The columns read_row() reads, of the table (or alias) p: "" or "e.". */
#define EXPORT_COLUMNS_OF(p) \
	p "workspace_id, " p "export_id, " p "audience_id, " p "audience_key, " p "format, " \
	p "mode, " p "fields::text, " p "destination::text, " p "destination_key, " \
	p "status, " p "rows_done, coalesce(" p "rows_total, -1), coalesce(" p "from_change, -1)," \
	" coalesce(" p "to_change, -1), " p "cursor, " p "attempts, " p "error, " p "file_name," \
	" coalesce(" p "file_bytes, -1), coalesce(" p "key_id, 0)," \
	" extract(epoch from " p "created_at)::float8," \
	" coalesce(extract(epoch from " p "started_at)::float8, 0)," \
	" coalesce(extract(epoch from " p "finished_at)::float8, 0)"
#define EXPORT_COLUMNS EXPORT_COLUMNS_OF("")

static char *opt_str(const PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? NULL : xstrdup(PQgetvalue(res, 0, col));
}

static void read_row(const PGresult *res, struct store_export *x)
{
	long long v[4];

	memset(x, 0, sizeof(*x));
	for (int c = 0; c < 3; c++)
		v[c] = strtoll(PQgetvalue(res, 0, c), NULL, 10);
	x->workspace_id = v[0];
	x->export_id = v[1];
	x->audience_id = v[2];
	snprintf(x->audience_key, sizeof(x->audience_key), "%s", PQgetvalue(res, 0, 3));
	snprintf(x->format, sizeof(x->format), "%s", PQgetvalue(res, 0, 4));
	snprintf(x->mode, sizeof(x->mode), "%s", PQgetvalue(res, 0, 5));
	x->fields_json = xstrdup(PQgetvalue(res, 0, 6));
	x->destination_json = xstrdup(PQgetvalue(res, 0, 7));
	x->destination_key = xstrdup(PQgetvalue(res, 0, 8));
	snprintf(x->status, sizeof(x->status), "%s", PQgetvalue(res, 0, 9));
	x->rows_done = strtoll(PQgetvalue(res, 0, 10), NULL, 10);
	x->rows_total = strtoll(PQgetvalue(res, 0, 11), NULL, 10);
	x->from_change = strtoll(PQgetvalue(res, 0, 12), NULL, 10);
	x->to_change = strtoll(PQgetvalue(res, 0, 13), NULL, 10);
	x->cursor = strtoll(PQgetvalue(res, 0, 14), NULL, 10);
	x->attempts = (int)strtol(PQgetvalue(res, 0, 15), NULL, 10);
	x->error = opt_str(res, 16);
	x->file_name = opt_str(res, 17);
	x->file_bytes = strtoll(PQgetvalue(res, 0, 18), NULL, 10);
	x->key_id = strtoll(PQgetvalue(res, 0, 19), NULL, 10);
	x->created_at = strtod(PQgetvalue(res, 0, 20), NULL);
	x->started_at = strtod(PQgetvalue(res, 0, 21), NULL);
	x->finished_at = strtod(PQgetvalue(res, 0, 22), NULL);
}

/* Runs a query answering at most one export row into out: 0, WEFT_ENOTFOUND or the error. */
static int one_row(struct store *s, const char *sql, int n, const char *const *params,
		   const char *what, struct store_export *out)
{
	PGresult *res = PQexecParams(s->conn, sql, n, NULL, params, NULL, NULL, 0);
	int rc = store_check(s, res, PGRES_TUPLES_OK, what);

	if (!rc && PQntuples(res) == 0)
		rc = WEFT_ENOTFOUND;
	if (!rc)
		read_row(res, out);
	PQclear(res);
	return rc;
}

int store_export_get(struct store *s, int64_t workspace_id, int64_t export_id,
		     struct store_export *out)
{
	char ws[24], id[24];
	const char *params[2] = { ws, id };

	I64(ws, workspace_id);
	I64(id, export_id);
	return one_row(s, "SELECT " EXPORT_COLUMNS " FROM exports"
		       " WHERE workspace_id = $1 AND export_id = $2", 2, params, "read export", out);
}

int store_export_next(struct store *s, struct store_export *out)
{
	return one_row(s, "SELECT " EXPORT_COLUMNS " FROM exports"
		       " WHERE status IN ('queued', 'running') ORDER BY export_id LIMIT 1",
		       0, NULL, "find the next export", out);
}

int store_export_start(struct store *s, struct store_export *x)
{
	char ws[24], id[24];
	const char *params[2] = { ws, id };
	struct store_export now;
	int rc;

	I64(ws, x->workspace_id);
	I64(id, x->export_id);
	/*
	 * The range is fixed once, at the first start: a resumed job sends
	 * the rows it would have sent. The cursor it starts from is the
	 * destination's, read in the same statement.
	 */
	rc = one_row(s,
		"WITH j AS (SELECT * FROM exports WHERE workspace_id = $1 AND export_id = $2"
		" FOR UPDATE),"
		" r AS (SELECT coalesce(j.from_change, (SELECT c.change_id FROM export_cursors c"
		"   WHERE c.workspace_id = j.workspace_id AND c.audience_id = j.audience_id"
		"   AND c.destination_key = j.destination_key), 0) AS f,"
		"  coalesce(j.to_change, (SELECT max(a.change_id) FROM audience_changes a"
		"   WHERE a.workspace_id = j.workspace_id AND a.audience_id = j.audience_id), 0) AS t"
		"  FROM j WHERE j.mode = 'delta')"
		" UPDATE exports e SET status = 'running', attempts = e.attempts + 1,"
		"  started_at = coalesce(e.started_at, now()),"
		"  from_change = r.f, to_change = r.t, cursor = greatest(e.cursor, r.f),"
		"  rows_total = CASE WHEN e.mode = 'delta' THEN coalesce(e.rows_total,"
		"   (SELECT count(*) FROM audience_changes a"
		"   WHERE a.workspace_id = e.workspace_id AND a.audience_id = e.audience_id"
		"   AND a.change_id > r.f AND a.change_id <= r.t AND (a.entered OR a.cause <> 'merge')))"
		"   ELSE e.rows_total END"
		" FROM j LEFT JOIN r ON true"
		" WHERE e.workspace_id = j.workspace_id AND e.export_id = j.export_id"
		" RETURNING " EXPORT_COLUMNS_OF("e."), 2, params, "start export", &now);
	if (!rc) {
		store_export_release(x);
		*x = now;
	}
	return rc;
}

int store_export_progress(struct store *s, const struct store_export *x, int64_t cursor,
			  int64_t rows_done, int64_t rows_total)
{
	char ws[24], id[24], cur[24], done[24], total[24];
	const char *params[5] = { ws, id, cur, done, rows_total >= 0 ? total : NULL };

	I64(ws, x->workspace_id);
	I64(id, x->export_id);
	I64(cur, cursor);
	I64(done, rows_done);
	I64(total, rows_total);
	return store_exec_params(s,
		"WITH e AS (UPDATE exports SET cursor = $3, rows_done = $4,"
		"  rows_total = coalesce($5, rows_total)"
		"  WHERE workspace_id = $1 AND export_id = $2"
		"  RETURNING workspace_id, audience_id, destination_key, mode, destination)"
		" INSERT INTO export_cursors (workspace_id, audience_id, destination_key, change_id)"
		" SELECT workspace_id, audience_id, destination_key, $3 FROM e"
		"  WHERE mode = 'delta' AND destination->>'type' = 'webhook'"
		" ON CONFLICT (workspace_id, audience_id, destination_key)"
		" DO UPDATE SET change_id = excluded.change_id, updated_at = now()",
		5, params, "record export progress");
}

int store_export_finish(struct store *s, const struct store_export *x, bool done,
			const char *error, const char *file_name, int64_t file_bytes,
			int64_t rows_done, int64_t rows_total)
{
	char ws[24], id[24], bytes[24], rd[24], rt[24];
	const char *params[8] = {
		ws, id, done ? "done" : "failed", error, file_name, file_bytes >= 0 ? bytes : NULL,
		rd, rt,
	};

	I64(ws, x->workspace_id);
	I64(id, x->export_id);
	I64(bytes, file_bytes);
	I64(rd, rows_done);
	I64(rt, rows_total);
	return store_exec_params(s,
		"WITH e AS (UPDATE exports SET status = $3, error = $4, file_name = $5,"
		"  file_bytes = $6, rows_done = $7, rows_total = $8, finished_at = now(),"
		"  cursor = CASE WHEN $3 = 'done' AND mode = 'delta' THEN to_change ELSE cursor END"
		"  WHERE workspace_id = $1 AND export_id = $2"
		"  RETURNING workspace_id, audience_id, destination_key, mode, to_change)"
		" INSERT INTO export_cursors (workspace_id, audience_id, destination_key, change_id)"
		" SELECT workspace_id, audience_id, destination_key, to_change FROM e"
		"  WHERE $3 = 'done' AND mode = 'delta'"
		" ON CONFLICT (workspace_id, audience_id, destination_key)"
		" DO UPDATE SET change_id = greatest(export_cursors.change_id, excluded.change_id),"
		"  updated_at = now()",
		8, params, "finish export");
}

int store_export_changes(struct store *s, int64_t workspace_id, int64_t audience_id,
			 int64_t after, int64_t upto, size_t limit, struct store_change_row *out,
			 size_t *n, int64_t *last)
{
	char ws[24], aid[24], a[24], u[24], lim[24];
	const char *params[5] = { ws, aid, a, u, lim };
	PGresult *res;
	int rc;

	I64(ws, workspace_id);
	I64(aid, audience_id);
	I64(a, after);
	I64(u, upto);
	I64(lim, limit);
	*n = 0;
	*last = after;
	res = PQexecParams(s->conn,
		"SELECT change_id, profile_id, entered,"
		" (extract(epoch from at) * 1000000)::bigint, cause FROM audience_changes"
		" WHERE workspace_id = $1 AND audience_id = $2 AND change_id > $3 AND change_id <= $4"
		" ORDER BY change_id LIMIT $5", 5, NULL, params, NULL, NULL, 0);
	rc = store_check(s, res, PGRES_TUPLES_OK, "read audience changes");
	for (int r = 0; !rc && r < PQntuples(res); r++) {
		struct store_change_row *c = &out[*n];
		bool entered = PQgetvalue(res, r, 2)[0] == 't';
		const char *cause = PQgetvalue(res, r, 4);

		*last = strtoll(PQgetvalue(res, r, 0), NULL, 10);
		if (!entered && strcmp(cause, "merge") == 0)
			continue;
		c->change_id = *last;
		c->profile_id = strtoll(PQgetvalue(res, r, 1), NULL, 10);
		c->entered = entered;
		c->at_us = strtoll(PQgetvalue(res, r, 3), NULL, 10);
		snprintf(c->cause, sizeof(c->cause), "%s", cause);
		(*n)++;
	}
	PQclear(res);
	return rc;
}
