/*
 * The identity engine's configuration, per workspace: its matching rules
 * and its blocked identifiers. Also the short look-up of events that
 * explanations quote (messageId and identifiers, never the payload).
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

int store_identity_rules_load(struct store *s, struct store_rules_row **rows,
			      size_t *n)
{
	PGresult *res = PQexec(s->conn,
		"SELECT workspace_id, rules::text FROM identity_rules"
		" ORDER BY workspace_id");
	int rc = store_check(s, res, PGRES_TUPLES_OK, "load identity rules");

	if (rc)
		goto out_clear;
	size_t count = (size_t)PQntuples(res);
	struct store_rules_row *r = xcalloc(count ? count : 1, sizeof(*r));

	for (size_t i = 0; i < count; i++) {
		r[i].workspace_id = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
		r[i].json = xstrdup(PQgetvalue(res, (int)i, 1));
	}
	*rows = r;
	*n = count;
out_clear:
	PQclear(res);
	return rc;
}

void store_rules_rows_free(struct store_rules_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(rows[i].json);
	free(rows);
}

int store_identity_rules_save(struct store *s, int64_t workspace_id,
			      const char *json)
{
	char ws[24];
	const char *params[2] = { ws, json };

	snprintf(ws, sizeof(ws), "%lld", (long long)workspace_id);
	return store_exec_params(s,
		"INSERT INTO identity_rules (workspace_id, rules)"
		" VALUES ($1, $2) ON CONFLICT (workspace_id) DO UPDATE"
		" SET rules = excluded.rules, updated_at = now()",
		2, params, "save identity rules");
}

int store_identity_blocked_add(struct store *s, int64_t workspace_id,
			       const char *type, const uint8_t key[16],
			       int64_t key_id)
{
	char ws[24], kid[24];
	const char *params[4] = { ws, type, (const char *)key,
				  key_id ? kid : NULL };
	int lengths[4] = { 0, 0, 16, 0 };
	int formats[4] = { 0, 0, 1, 0 };

	snprintf(ws, sizeof(ws), "%lld", (long long)workspace_id);
	snprintf(kid, sizeof(kid), "%lld", (long long)key_id);
	PGresult *res = PQexecParams(s->conn,
		"INSERT INTO identity_blocked (workspace_id, type, key, key_id)"
		" VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
		4, NULL, params, lengths, formats, 0);
	int rc = store_check(s, res, PGRES_COMMAND_OK, "block identifier");

	PQclear(res);
	return rc;
}

struct blocked_walk {
	int (*fn)(void *arg, int64_t workspace_id, const char *type,
		  const uint8_t key[16]);
	void *arg;
	struct buf type;	/* the row's type, NUL-terminated */
};

/* One tuple of the blocked list's COPY: (workspace_id, type, key). */
static int blocked_tuple(void *arg, const char *tuple, size_t len)
{
	struct blocked_walk *w = arg;
	struct store_field f[3];

	if (store_tuple_fields(tuple, len, f, 3) != 3 || f[0].len != 8 ||
	    f[1].len < 0 || f[2].len != 16) {
		log_error("store_blocked_bad", "bytes=%zu msg=\"a blocked "
			  "identifier row is malformed\"", len);
		return WEFT_EIO;
	}
	buf_reset(&w->type);
	buf_add(&w->type, f[1].data, (size_t)f[1].len);
	return w->fn(w->arg, store_field_int8(&f[0]), w->type.data,
		     (const uint8_t *)f[2].data);
}

int store_identity_blocked_load(struct store *s,
				int (*fn)(void *arg, int64_t workspace_id,
					  const char *type,
					  const uint8_t key[16]),
				void *arg)
{
	struct blocked_walk w = { fn, arg, BUF_INIT };
	int rc = store_copy_out(s,
		"COPY (SELECT workspace_id, type, key FROM identity_blocked"
		" ORDER BY workspace_id, type, key) TO STDOUT (FORMAT binary)",
		"load blocked identifiers", blocked_tuple, &w);

	buf_release(&w.type);
	return rc;
}

int store_events_brief(struct store *s, int64_t workspace_id,
		       const int64_t *seqs, size_t n,
		       int (*fn)(void *arg, int64_t seq, const char *message_id,
				 const char *identifiers_json),
		       void *arg)
{
	struct buf list = BUF_INIT;
	char ws[24];
	int rc;

	if (!n)
		return 0;
	snprintf(ws, sizeof(ws), "%lld", (long long)workspace_id);
	for (size_t i = 0; i < n; i++)
		buf_printf(&list, "%s%lld", i ? "," : "{", (long long)seqs[i]);
	buf_addc(&list, '}');

	const char *params[2] = { ws, list.data };
	PGresult *res = PQexecParams(s->conn,
		"SELECT seq, message_id, identifiers::text FROM events"
		" WHERE workspace_id = $1 AND seq = ANY($2::bigint[])",
		2, NULL, params, NULL, NULL, 0);

	rc = store_check(s, res, PGRES_TUPLES_OK, "read events for explanation");
	for (int r = 0; !rc && r < PQntuples(res); r++)
		rc = fn(arg, strtoll(PQgetvalue(res, r, 0), NULL, 10),
			PQgetvalue(res, r, 1), PQgetvalue(res, r, 2));
	PQclear(res);
	buf_release(&list);
	return rc;
}
