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

/* Runs a statement that returns no rows; errors as store_check(). */
int store_exec(struct store *s, const char *sql, const char *what);
/* The same with text parameters $1..$n (NULL for SQL NULL). */
int store_exec_params(struct store *s, const char *sql, int n,
		      const char *const *params, const char *what);
/*
 * Takes the session advisory lock key without waiting: 0, or
 * WEFT_ECONFLICT while another session holds it.
 */
int store_try_lock(struct store *s, int key, const char *what);

/* Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01. */
#define STORE_PG_EPOCH_US 946684800000000LL

/* The 19 bytes a binary COPY stream starts with (no flags, no extension). */
extern const char store_copy_header[19];

/*
 * Runs sql, a COPY ... TO STDOUT (FORMAT binary), and calls fn with each
 * tuple (from its field count on, without the stream's header or trailer;
 * valid during the call only). Streams: never more than one tuple is
 * held. A nonzero return from fn stops the walk and is returned; the COPY
 * is then cancelled and drained, so the connection stays usable. A
 * stream that is not well-formed binary COPY is WEFT_EIO. Only outside a
 * transaction block: the cancel would abort it.
 */
int store_copy_out(struct store *s, const char *sql, const char *what,
		   int (*fn)(void *arg, const char *tuple, size_t len),
		   void *arg);

#endif
