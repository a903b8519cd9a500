/*
 * Connections and schema migrations. The migrations are the SQL files in
 * store/migrations/, compiled into the binary, applied in version order and
 * recorded in schema_migrations.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

/* Any number: the key of the advisory lock migrators take. */
#define MIGRATE_LOCK_KEY 0x77656674

int store_check_unique(struct store *s, PGresult *res, ExecStatusType want,
		       const char *what)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (res && PQresultStatus(res) != want && state &&
	    strcmp(state, "23505") == 0)
		return WEFT_ECONFLICT;
	return store_check(s, res, want, what);
}

int store_check(struct store *s, PGresult *res, ExecStatusType want,
		const char *what)
{
	if (res && PQresultStatus(res) == want)
		return 0;
	const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn);
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	size_t n = strcspn(msg, "\n");
	bool gone = PQstatus(s->conn) != CONNECTION_OK ||
		    (state && strncmp(state, "08", 2) == 0) ||
		    (state && strcmp(state, "57P01") == 0);

	log_error("store_error", "what=\"%s\" sqlstate=%s msg=\"%.*s\"", what,
		  state ? state : "-", (int)n, msg);
	return gone ? WEFT_EUNAVAIL : WEFT_EIO;
}

static int open_conn(struct store *s)
{
	/*
	 * Defaults first: settings in the user's URL (dbname, expanded) win.
	 * Keepalives and a TCP user timeout notice a database that vanished
	 * from the network instead of waiting on it for ever.
	 */
	const char *keys[] = { "application_name", "connect_timeout",
			       "keepalives_idle", "keepalives_interval",
			       "keepalives_count", "tcp_user_timeout", "dbname",
			       NULL };
	const char *vals[] = { "weft", "5", "10", "5", "3", "30000", s->url,
			       NULL };

	s->conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(s->conn) != CONNECTION_OK) {
		const char *msg = PQerrorMessage(s->conn);

		log_error("store_connect_failed", "msg=\"%.*s\"",
			  (int)strcspn(msg, "\n"), msg);
		PQfinish(s->conn);
		s->conn = NULL;
		return WEFT_EUNAVAIL;
	}
	/* Durability is the contract: never let a server default weaken it. */
	PGresult *res = PQexec(s->conn, "SET synchronous_commit = on; "
				       "SET client_min_messages = warning");
	int rc = store_check(s, res, PGRES_COMMAND_OK, "session settings");

	PQclear(res);
	return rc;
}

int store_connect(const char *url, struct store **out)
{
	struct store *s = xcalloc(1, sizeof(*s));
	int rc;

	s->url = xstrdup(url);
	rc = open_conn(s);
	if (rc) {
		store_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	if (s->conn)
		PQfinish(s->conn);
	free(s->url);
	free(s);
}

int store_reconnect(struct store *s)
{
	if (s->conn)
		PQfinish(s->conn);
	s->conn = NULL;
	return open_conn(s);
}

int store_ping(struct store *s)
{
	if (!s->conn)
		return WEFT_EUNAVAIL;
	PGresult *res = PQexec(s->conn, "SELECT 1");
	int rc = store_check(s, res, PGRES_TUPLES_OK, "ping");

	PQclear(res);
	return rc ? WEFT_EUNAVAIL : 0;
}

int store_schema_known_version(void)
{
	return store_migrations[store_migration_count - 1].version;
}

int store_schema_version(struct store *s, int *version)
{
	PGresult *res = PQexec(s->conn,
		"SELECT CASE WHEN to_regclass('schema_migrations') IS NULL "
		"THEN -1 ELSE 0 END");
	int rc = store_check(s, res, PGRES_TUPLES_OK, "find schema_migrations");

	if (rc)
		goto out_clear;
	bool missing = strcmp(PQgetvalue(res, 0, 0), "-1") == 0;

	PQclear(res);
	res = NULL;
	if (missing) {
		*version = 0;
		return 0;
	}
	res = PQexec(s->conn,
		     "SELECT coalesce(max(version), 0) FROM schema_migrations");
	rc = store_check(s, res, PGRES_TUPLES_OK, "read schema version");
	if (!rc)
		*version = atoi(PQgetvalue(res, 0, 0));
out_clear:
	PQclear(res);
	return rc;
}

static int exec_simple(struct store *s, const char *sql, const char *what)
{
	PGresult *res = PQexec(s->conn, sql);
	int rc = store_check(s, res, PGRES_COMMAND_OK, what);

	PQclear(res);
	return rc;
}

static int apply_migration(struct store *s, const struct store_migration *m)
{
	char ver[16];
	const char *params[2] = { ver, m->name };
	PGresult *res;
	int rc;

	rc = exec_simple(s, "BEGIN", "begin migration");
	if (rc)
		return rc;
	rc = exec_simple(s, m->sql, m->name);
	if (rc)
		goto out_rollback;
	snprintf(ver, sizeof(ver), "%d", m->version);
	res = PQexecParams(s->conn,
			   "INSERT INTO schema_migrations (version, name) "
			   "VALUES ($1, $2)", 2, NULL, params, NULL, NULL, 0);
	rc = store_check(s, res, PGRES_COMMAND_OK, "record migration");
	PQclear(res);
	if (rc)
		goto out_rollback;
	rc = exec_simple(s, "COMMIT", "commit migration");
	if (!rc)
		log_info("migration_applied", "version=%d name=%s", m->version,
			 m->name);
	return rc;

out_rollback:
	exec_simple(s, "ROLLBACK", "rollback migration");
	return rc;
}

int store_migrate(struct store *s)
{
	char sql[128];
	int version, rc;

	snprintf(sql, sizeof(sql), "SELECT pg_advisory_lock(%d)",
		 MIGRATE_LOCK_KEY);
	PGresult *res = PQexec(s->conn, sql);

	rc = store_check(s, res, PGRES_TUPLES_OK, "take migration lock");
	PQclear(res);
	if (rc)
		return rc;
	rc = exec_simple(s,
		"CREATE TABLE IF NOT EXISTS schema_migrations ("
		" version integer PRIMARY KEY, name text NOT NULL,"
		" applied_at timestamptz NOT NULL DEFAULT now())",
		"create schema_migrations");
	if (rc)
		goto out_unlock;
	rc = store_schema_version(s, &version);
	if (rc)
		goto out_unlock;
	if (version > store_schema_known_version()) {
		log_error("schema_too_new",
			  "database=%d known=%d msg=\"the database was migrated "
			  "by a newer weft; upgrade this binary\"",
			  version, store_schema_known_version());
		rc = WEFT_ESCHEMA;
		goto out_unlock;
	}
	for (int i = 0; i < store_migration_count; i++) {
		if (store_migrations[i].version <= version)
			continue;
		rc = apply_migration(s, &store_migrations[i]);
		if (rc)
			goto out_unlock;
	}
out_unlock:
	snprintf(sql, sizeof(sql), "SELECT pg_advisory_unlock(%d)",
		 MIGRATE_LOCK_KEY);
	PQclear(PQexec(s->conn, sql));
	return rc;
}

int store_schema_check(struct store *s)
{
	int version, rc = store_schema_version(s, &version);
	int known = store_schema_known_version();

	if (rc)
		return rc;
	if (version > known) {
		log_error("schema_too_new",
			  "database=%d known=%d msg=\"the database was migrated "
			  "by a newer weft; upgrade this binary\"",
			  version, known);
		return WEFT_ESCHEMA;
	}
	if (version < known) {
		log_error("schema_too_old",
			  "database=%d known=%d msg=\"run 'weft migrate' first\"",
			  version, known);
		return WEFT_ESCHEMA;
	}
	return 0;
}
