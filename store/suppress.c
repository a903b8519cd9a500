/*
 * The suppression list as the loop and the engine read it: every
 * suppressed identifier key (suppressed_keys, filled by erasures), and a
 * cheap per-workspace stamp that tells whether the list changed since it
 * was last read, so a long list is not reloaded every refresh.
 */
#include "store/store_int.h"

#include <stdlib.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

struct suppressed_walk {
	int (*fn)(void *arg, int64_t workspace_id, const uint8_t key[16]);
	void *arg;
};

/* One tuple of the list's COPY: (workspace_id, key). */
static int suppressed_tuple(void *arg, const char *tuple, size_t len)
{
	struct suppressed_walk *w = arg;
	struct store_field f[2];

	if (store_tuple_fields(tuple, len, f, 2) != 2 || f[0].len != 8 ||
	    f[1].len != 16) {
		log_error("store_suppressed_bad", "bytes=%zu msg=\"a suppressed "
			  "key row is malformed\"", len);
		return WEFT_EIO;
	}
	return w->fn(w->arg, store_field_int8(&f[0]), (const uint8_t *)f[1].data);
}

int store_suppressed_keys_load(struct store *s,
			       int (*fn)(void *arg, int64_t workspace_id,
					 const uint8_t key[16]),
			       void *arg)
{
	struct suppressed_walk w = { fn, arg };

	return store_copy_out(s,
		"COPY (SELECT workspace_id, key FROM suppressed_keys"
		" ORDER BY workspace_id, key) TO STDOUT (FORMAT binary)",
		"load suppressed keys", suppressed_tuple, &w);
}

int store_suppressed_keys_stamps(struct store *s,
				 struct store_suppressed_stamp **stamps,
				 size_t *n)
{
	PGresult *res = PQexec(s->conn,
		"SELECT workspace_id, count(*),"
		" (extract(epoch FROM max(created_at)) * 1000000)::int8"
		" FROM suppressed_keys GROUP BY workspace_id ORDER BY workspace_id");
	int rc = store_check(s, res, PGRES_TUPLES_OK, "check suppressed keys");

	if (rc)
		goto out_clear;
	size_t count = (size_t)PQntuples(res);
	struct store_suppressed_stamp *st = xcalloc(count ? count : 1,
						    sizeof(*st));

	for (size_t i = 0; i < count; i++) {
		st[i].workspace_id = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
		st[i].keys = strtoll(PQgetvalue(res, (int)i, 1), NULL, 10);
		st[i].latest_us = strtoll(PQgetvalue(res, (int)i, 2), NULL, 10);
	}
	*stamps = st;
	*n = count;
out_clear:
	PQclear(res);
	return rc;
}
