/*
 * Audience and computed-trait definitions (migration 0006). The engine
 * changes them on its own connection, so a definition and the state it
 * gives agree; audience changes are written by the engine's save
 * (store/engine.c).
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"

static const char *table_of(enum store_def_kind kind)
{
	return kind == STORE_DEF_AUDIENCE ? "audiences" : "computed_traits";
}

int store_defs_load(struct store *s, struct store_def **out, size_t *n)
{
	PGresult *res = PQexec(s->conn,
		"SELECT 0, workspace_id, trait_id, key, '', definition,"
		" extract(epoch from created_at)::float8, extract(epoch from updated_at)::float8"
		" FROM computed_traits"
		" UNION ALL SELECT 1, workspace_id, audience_id, key, name, definition,"
		" extract(epoch from created_at)::float8, extract(epoch from updated_at)::float8"
		" FROM audiences ORDER BY 1, 2, 3");
	int rc = store_check(s, res, PGRES_TUPLES_OK, "load audience definitions");
	size_t count;
	struct store_def *d;

	*out = NULL;
	*n = 0;
	if (rc)
		goto out_clear;
	count = (size_t)PQntuples(res);
	d = xcalloc(count + 1, sizeof(*d));
	for (size_t i = 0; i < count; i++) {
		int r = (int)i;

		d[i].kind = PQgetvalue(res, r, 0)[0] == '1' ? STORE_DEF_AUDIENCE :
							      STORE_DEF_COMPUTED_TRAIT;
		d[i].workspace_id = strtoll(PQgetvalue(res, r, 1), NULL, 10);
		d[i].id = strtoll(PQgetvalue(res, r, 2), NULL, 10);
		d[i].key = xstrdup(PQgetvalue(res, r, 3));
		d[i].name = xstrdup(PQgetvalue(res, r, 4));
		d[i].definition = xstrdup(PQgetvalue(res, r, 5));
		d[i].created_at = strtod(PQgetvalue(res, r, 6), NULL);
		d[i].updated_at = strtod(PQgetvalue(res, r, 7), NULL);
	}
	*out = d;
	*n = count;
out_clear:
	PQclear(res);
	return rc;
}

void store_defs_free(struct store_def *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(d[i].key);
		free(d[i].name);
		free(d[i].definition);
	}
	free(d);
}

int store_def_put(struct store *s, int64_t workspace_id, enum store_def_kind kind,
		  const char *key, const char *name, const char *definition, bool create,
		  int64_t *id)
{
	char ws[24], sql[512];
	const char *params[4] = { ws, key, definition, name ? name : key };
	bool aud = kind == STORE_DEF_AUDIENCE;
	PGresult *res;
	int rc;

	snprintf(ws, sizeof(ws), "%lld", (long long)workspace_id);
	if (create)
		snprintf(sql, sizeof(sql),
			 "INSERT INTO %s (workspace_id, key, definition%s) VALUES ($1, $2, $3%s)"
			 " RETURNING %s", table_of(kind), aud ? ", name" : "", aud ? ", $4" : "",
			 aud ? "audience_id" : "trait_id");
	else
		snprintf(sql, sizeof(sql),
			 "UPDATE %s SET definition = $3%s, updated_at = now()"
			 " WHERE workspace_id = $1 AND key = $2 RETURNING %s", table_of(kind),
			 aud ? ", name = $4" : "", aud ? "audience_id" : "trait_id");
	res = PQexecParams(s->conn, sql, aud ? 4 : 3, NULL, params, NULL, NULL, 0);
	rc = store_check_unique(s, res, PGRES_TUPLES_OK, "save audience definition");
	if (!rc && PQntuples(res) != 1)
		rc = WEFT_ENOTFOUND;
	if (!rc)
		*id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return rc;
}

int store_def_delete(struct store *s, int64_t workspace_id, enum store_def_kind kind,
		     const char *key)
{
	char ws[24], sql[600];
	const char *params[2] = { ws, key };
	PGresult *res;
	int rc;

	snprintf(ws, sizeof(ws), "%lld", (long long)workspace_id);
	if (kind == STORE_DEF_AUDIENCE)
		snprintf(sql, sizeof(sql),
			 "WITH d AS (DELETE FROM audiences WHERE workspace_id = $1 AND key = $2"
			 " RETURNING workspace_id, audience_id),"
			 " c AS (DELETE FROM audience_changes a USING d"
			 " WHERE a.workspace_id = d.workspace_id AND a.audience_id = d.audience_id),"
			 " x AS (DELETE FROM export_cursors a USING d"
			 " WHERE a.workspace_id = d.workspace_id AND a.audience_id = d.audience_id)"
			 " SELECT count(*) FROM d");
	else
		snprintf(sql, sizeof(sql),
			 "WITH d AS (DELETE FROM computed_traits WHERE workspace_id = $1 AND key = $2"
			 " RETURNING 1) SELECT count(*) FROM d");
	res = PQexecParams(s->conn, sql, 2, NULL, params, NULL, NULL, 0);
	rc = store_check(s, res, PGRES_TUPLES_OK, "delete audience definition");
	if (!rc && strcmp(PQgetvalue(res, 0, 0), "0") == 0)
		rc = WEFT_ENOTFOUND;
	PQclear(res);
	return rc;
}

int store_def_times(struct store *s, int64_t workspace_id, enum store_def_kind kind,
		    const char *key, double *created_at, double *updated_at)
{
	char ws[24], sql[300];
	const char *params[2] = { ws, key };
	PGresult *res;
	int rc;

	snprintf(ws, sizeof(ws), "%lld", (long long)workspace_id);
	snprintf(sql, sizeof(sql),
		 "SELECT extract(epoch from created_at)::float8, extract(epoch from updated_at)::float8"
		 " FROM %s WHERE workspace_id = $1 AND key = $2", table_of(kind));
	res = PQexecParams(s->conn, sql, 2, NULL, params, NULL, NULL, 0);
	rc = store_check(s, res, PGRES_TUPLES_OK, "read audience definition");
	if (!rc && PQntuples(res) != 1)
		rc = WEFT_ENOTFOUND;
	if (!rc) {
		*created_at = strtod(PQgetvalue(res, 0, 0), NULL);
		*updated_at = strtod(PQgetvalue(res, 0, 1), NULL);
	}
	PQclear(res);
	return rc;
}
