/*
 * Workspaces, API keys and per-workspace settings (the privacy policy).
 * Keys are stored as their SHA-256 only; the plain key exists once, on the
 * standard output of `weft keys create`.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

static const char *role_names[] = { "write", "read", "admin" };

const char *store_role_name(enum store_role role)
{
	return role_names[role];
}

int store_role_parse(const char *name, enum store_role *role)
{
	for (int i = 0; i < 3; i++) {
		if (strcmp(name, role_names[i]) == 0) {
			*role = (enum store_role)i;
			return 0;
		}
	}
	return WEFT_EINVAL;
}

int store_workspace_get(struct store *s, const char *name, bool create,
			int64_t *workspace_id, bool *created)
{
	const char *params[1] = { name };
	PGresult *res;
	int rc;

	if (created)
		*created = false;
	if (create) {
		res = PQexecParams(s->conn,
			"INSERT INTO workspaces (name) VALUES ($1) "
			"ON CONFLICT (name) DO NOTHING RETURNING workspace_id",
			1, NULL, params, NULL, NULL, 0);
		rc = store_check(s, res, PGRES_TUPLES_OK, "create workspace");
		if (rc) {
			PQclear(res);
			return rc;
		}
		if (PQntuples(res) == 1) {
			*workspace_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			if (created)
				*created = true;
			PQclear(res);
			return 0;
		}
		PQclear(res);
	}
	res = PQexecParams(s->conn,
			   "SELECT workspace_id FROM workspaces WHERE name = $1",
			   1, NULL, params, NULL, NULL, 0);
	rc = store_check(s, res, PGRES_TUPLES_OK, "find workspace");
	if (!rc && PQntuples(res) == 0)
		rc = WEFT_ENOTFOUND;
	if (!rc)
		*workspace_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return rc;
}

int store_key_insert(struct store *s, int64_t workspace_id,
		     enum store_role role, const uint8_t hash[32],
		     const char *prefix, int64_t *key_id)
{
	char ws[24];
	const char *params[4] = { ws, role_names[role], (const char *)hash,
				  prefix };
	int lengths[4] = { 0, 0, 32, 0 };
	int formats[4] = { 0, 0, 1, 0 };

	snprintf(ws, sizeof(ws), "%lld", (long long)workspace_id);
	PGresult *res = PQexecParams(s->conn,
		"INSERT INTO api_keys (workspace_id, role, key_hash, key_prefix) "
		"VALUES ($1, $2, $3, $4) RETURNING key_id",
		4, NULL, params, lengths, formats, 0);
	int rc = store_check(s, res, PGRES_TUPLES_OK, "insert api key");

	if (!rc)
		*key_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return rc;
}

int store_key_revoke(struct store *s, int64_t key_id)
{
	char id[24];
	const char *params[1] = { id };

	snprintf(id, sizeof(id), "%lld", (long long)key_id);
	PGresult *res = PQexecParams(s->conn,
		"UPDATE api_keys SET revoked_at = now() "
		"WHERE key_id = $1 AND revoked_at IS NULL",
		1, NULL, params, NULL, NULL, 0);
	int rc = store_check(s, res, PGRES_COMMAND_OK, "revoke api key");

	if (!rc && strcmp(PQcmdTuples(res), "0") == 0)
		rc = WEFT_ENOTFOUND;
	PQclear(res);
	return rc;
}

static int hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
	/* bytea in text form: \x followed by two hex digits a byte */
	if (strncmp(hex, "\\x", 2) != 0 || strlen(hex) != 2 + 2 * n)
		return WEFT_EIO;
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(hex + 2 + 2 * i, "%2x", &v) != 1)
			return WEFT_EIO;
		out[i] = (uint8_t)v;
	}
	return 0;
}

int store_keys_load(struct store *s, const char *workspace, bool all,
		    struct store_key **keys, size_t *n)
{
	const char *params[2] = { workspace, all ? "t" : "f" };
	PGresult *res = PQexecParams(s->conn,
		"SELECT k.key_id, k.workspace_id, k.role, k.key_hash,"
		" k.key_prefix, w.name,"
		" to_char(k.created_at AT TIME ZONE 'UTC',"
		"         'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
		" k.revoked_at IS NOT NULL"
		" FROM api_keys k JOIN workspaces w USING (workspace_id)"
		" WHERE ($1::text IS NULL OR w.name = $1)"
		"   AND ($2::boolean OR k.revoked_at IS NULL)"
		" ORDER BY k.key_id",
		2, NULL, params, NULL, NULL, 0);
	int rc = store_check(s, res, PGRES_TUPLES_OK, "load api keys");

	if (rc)
		goto out_clear;
	size_t count = (size_t)PQntuples(res);
	struct store_key *k = xcalloc(count ? count : 1, sizeof(*k));

	for (size_t i = 0; i < count; i++) {
		int row = (int)i;

		k[i].key_id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
		k[i].workspace_id = strtoll(PQgetvalue(res, row, 1), NULL, 10);
		store_role_parse(PQgetvalue(res, row, 2), &k[i].role);
		if (hex_to_bytes(PQgetvalue(res, row, 3), k[i].hash, 32)) {
			free(k);
			rc = WEFT_EIO;
			goto out_clear;
		}
		snprintf(k[i].prefix, sizeof(k[i].prefix), "%s",
			 PQgetvalue(res, row, 4));
		snprintf(k[i].workspace, sizeof(k[i].workspace), "%s",
			 PQgetvalue(res, row, 5));
		snprintf(k[i].created_at, sizeof(k[i].created_at), "%s",
			 PQgetvalue(res, row, 6));
		k[i].revoked = PQgetvalue(res, row, 7)[0] == 't';
	}
	*keys = k;
	*n = count;
out_clear:
	PQclear(res);
	return rc;
}

int store_policies_load(struct store *s, struct store_policy_row **rows,
			size_t *n)
{
	PGresult *res = PQexec(s->conn,
		"SELECT workspace_id, policy::text FROM privacy_policies");
	int rc = store_check(s, res, PGRES_TUPLES_OK, "load privacy policies");

	if (rc)
		goto out_clear;
	size_t count = (size_t)PQntuples(res);
	struct store_policy_row *r = xcalloc(count ? count : 1, sizeof(*r));

	for (size_t i = 0; i < count; i++) {
		r[i].workspace_id = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
		r[i].policy_json = xstrdup(PQgetvalue(res, (int)i, 1));
	}
	*rows = r;
	*n = count;
out_clear:
	PQclear(res);
	return rc;
}

void store_policy_rows_free(struct store_policy_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(rows[i].policy_json);
	free(rows);
}

int store_policy_save(struct store *s, int64_t workspace_id,
		      const char *policy_json)
{
	char ws[24];
	const char *params[2] = { ws, policy_json };

	snprintf(ws, sizeof(ws), "%lld", (long long)workspace_id);
	PGresult *res = PQexecParams(s->conn,
		"INSERT INTO privacy_policies (workspace_id, policy) "
		"VALUES ($1, $2) ON CONFLICT (workspace_id) DO UPDATE "
		"SET policy = excluded.policy, updated_at = now()",
		2, NULL, params, NULL, NULL, 0);
	int rc = store_check(s, res, PGRES_COMMAND_OK, "save privacy policy");

	PQclear(res);
	return rc;
}
