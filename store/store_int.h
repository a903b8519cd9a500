/*
 * Internals shared by the files of store/; no other folder includes this.
 */
#ifndef STORE_STORE_INT_H
#define STORE_STORE_INT_H

#include <libpq-fe.h>

#include "store/store.h"

struct store {
	PGconn *conn;
	char *url;
	/*
	 * Commits left that look duplicates up before the COPY. Normally 0:
	 * the COPY goes straight in and the unique index finds duplicates.
	 * After one is found, retries tend to come in bursts, so the next
	 * commits probe first.
	 */
	int probe_first;
};

struct store_migration {
	int version;
	const char *name;
	const char *sql;
};

/* Generated from store/migrations/ by scripts/embed-migrations. */
extern const struct store_migration store_migrations[];
extern const int store_migration_count;

/*
 * Checks a result; on failure logs what (a short description of the
 * statement) failed and returns WEFT_EUNAVAIL if the connection is gone,
 * WEFT_EIO otherwise. Does not clear the result.
 */
int store_check(struct store *s, PGresult *res, ExecStatusType want,
		const char *what);
/* The same, but a unique violation (23505) is not logged: it returns
 * WEFT_ECONFLICT for the caller to handle. */
int store_check_unique(struct store *s, PGresult *res, ExecStatusType want,
		       const char *what);

#endif
