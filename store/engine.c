/*
 * The engine's saved state: pages of derived data per (workspace,
 * section) and the checkpoint saying which events they include.
 *
 * A save can be hundreds of megabytes, so the pages go in with binary
 * COPY, streamed in chunks, into a temporary table, and from there replace
 * the stored ones with one DELETE ... USING and one INSERT: two set
 * operations instead of a statement per page. Loading streams the other
 * way with COPY OUT (store_copy_out()).
 */
#include "store/store_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/err.h"
#include "lib/log.h"

/* Any number, not the log writer's nor the migrators': the engine's lock. */
#define ENGINE_LOCK_KEY 0x77656665

/* How much of a COPY is built before it is handed to libpq. */
#define COPY_CHUNK (1 << 20)

int store_engine_lock(struct store *s)
{
	return store_try_lock(s, ENGINE_LOCK_KEY, "take engine lock");
}

int store_engine_checkpoint(struct store *s, int64_t *seq, int32_t *format)
{
	PGresult *res = PQexec(s->conn,
		"SELECT seq, format FROM engine_checkpoint WHERE id = 1");
	int rc = store_check(s, res, PGRES_TUPLES_OK, "read engine checkpoint");

	if (rc)
		goto out_clear;
	*seq = 0;
	*format = 0;
	if (PQntuples(res) == 1) {
		*seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		*format = (int32_t)strtol(PQgetvalue(res, 0, 1), NULL, 10);
	}
out_clear:
	PQclear(res);
	return rc;
}

struct load_walk {
	int (*fn)(void *arg, const struct store_page *p);
	void *arg;
};

/* One tuple of the pages' COPY: (workspace_id, section, page, data). */
static int load_tuple(void *arg, const char *tuple, size_t len)
{
	struct load_walk *w = arg;
	struct store_field f[4];
	struct store_page p;

	if (store_tuple_fields(tuple, len, f, 4) != 4 || f[0].len != 8 ||
	    f[1].len != 4 || f[2].len != 4 || f[3].len <= 0 ||
	    f[3].len > STORE_PAGE_BYTES) {
		log_error("store_page_bad", "bytes=%zu msg=\"a stored engine "
			  "page is empty, too big or malformed\"", len);
		return WEFT_EIO;
	}
	p.workspace_id = store_field_int8(&f[0]);
	p.section = store_field_int4(&f[1]);
	p.page = store_field_int4(&f[2]);
	p.data = f[3].data;
	p.len = (size_t)f[3].len;
	return w->fn(w->arg, &p);
}

int store_engine_load(struct store *s, int64_t workspace_id,
		      int (*fn)(void *arg, const struct store_page *p),
		      void *arg)
{
	struct load_walk w = { fn, arg };
	char where[64] = "", sql[256];

	/* COPY takes no parameters: the id is an integer printed here. */
	if (workspace_id)
		snprintf(where, sizeof(where), " WHERE workspace_id = %lld",
			 (long long)workspace_id);
	snprintf(sql, sizeof(sql),
		 "COPY (SELECT workspace_id, section, page, data"
		 " FROM engine_pages%s ORDER BY workspace_id, section, page)"
		 " TO STDOUT (FORMAT binary)", where);
	return store_copy_out(s, sql, "load engine pages", load_tuple, &w);
}

/* Appends "{v0,v1,...}", an array literal, to b. */
static void add_int_array(struct buf *b, const int64_t *v, size_t n)
{
	buf_addc(b, '{');
	for (size_t i = 0; i < n; i++)
		buf_printf(b, "%s%lld", i ? "," : "", (long long)v[i]);
	buf_addc(b, '}');
}

static int clear_workspaces(struct store *s, const int64_t *ws, size_t n)
{
	struct buf ids = BUF_INIT;

	add_int_array(&ids, ws, n);
	const char *params[1] = { ids.data };
	int rc = store_exec_params(s,
		"DELETE FROM engine_pages WHERE workspace_id = ANY($1::bigint[])",
		1, params, "clear engine pages");

	buf_release(&ids);
	return rc;
}

/* Hands what b holds to the COPY in progress and empties b. */
static int copy_put(struct store *s, struct buf *b)
{
	if (PQputCopyData(s->conn, b->data, (int)b->len) != 1)
		return store_check(s, NULL, PGRES_COPY_IN, "copy engine pages");
	buf_reset(b);
	return 0;
}

/*
 * Ends the COPY in progress: committed when rc is 0, failed on purpose
 * (the server discards it) otherwise. Returns rc or the COPY's error.
 */
static int copy_finish(struct store *s, int rc)
{
	PGresult *res;

	if (PQputCopyEnd(s->conn, rc ? "weft: save abandoned" : NULL) != 1 &&
	    !rc)
		rc = store_check(s, NULL, PGRES_COMMAND_OK, "copy engine pages");
	res = PQgetResult(s->conn);
	if (!rc)
		rc = store_check(s, res, PGRES_COMMAND_OK, "copy engine pages");
	PQclear(res);
	while ((res = PQgetResult(s->conn)) != NULL)
		PQclear(res);
	return rc;
}

/* Streams the pages into engine_pages_in, COPY_CHUNK bytes at a time. */
/* Ends a binary COPY built in b (its trailer, unless rc already failed) and frees b. */
static int copy_close(struct store *s, struct buf *b, int rc)
{
	if (!rc) {
		buf_add_be16(b, 0xffff);
		rc = copy_put(s, b);
	}
	rc = copy_finish(s, rc);
	buf_release(b);
	return rc;
}

static int copy_pages(struct store *s, const struct store_page *pages,
		      size_t n)
{
	struct buf b = BUF_INIT;
	PGresult *res = PQexec(s->conn,
		"COPY engine_pages_in FROM STDIN (FORMAT binary)");
	int rc = store_check(s, res, PGRES_COPY_IN, "copy engine pages");

	PQclear(res);
	if (rc)
		return rc;
	buf_add(&b, store_copy_header, sizeof(store_copy_header));
	for (size_t i = 0; i < n && !rc; i++) {
		const struct store_page *p = &pages[i];

		assert(p->len > 0 && p->len <= STORE_PAGE_BYTES);
		store_tuple_begin(&b, 4);
		store_tuple_int8(&b, p->workspace_id);
		store_tuple_int4(&b, p->section);
		store_tuple_int4(&b, p->page);
		/* bytea's binary form is its bytes, framed like text's. */
		store_tuple_text(&b, p->data, p->len);
		if (b.len >= COPY_CHUNK)
			rc = copy_put(s, &b);
	}
	return copy_close(s, &b, rc);
}

/*
 * Writes the pages: into the temporary table first, then over the stored
 * ones. The temporary table lives as long as the session and is emptied
 * by each commit; LIKE gives its data column the same EXTERNAL storage,
 * so no page is compressed on the way either.
 */
static int write_pages(struct store *s, const struct store_page *pages,
		       size_t n)
{
	int rc = store_exec(s,
		"CREATE TEMPORARY TABLE IF NOT EXISTS engine_pages_in"
		" (LIKE engine_pages INCLUDING STORAGE) ON COMMIT DELETE ROWS",
		"create engine_pages_in");

	if (!rc)
		rc = copy_pages(s, pages, n);
	if (!rc)
		rc = store_exec(s,
			"DELETE FROM engine_pages p USING engine_pages_in i"
			" WHERE p.workspace_id = i.workspace_id"
			" AND p.section = i.section AND p.page = i.page",
			"delete replaced engine pages");
	if (!rc)
		rc = store_exec(s,
			"INSERT INTO engine_pages (workspace_id, section, page, data)"
			" SELECT workspace_id, section, page, data"
			" FROM engine_pages_in",
			"insert engine pages");
	return rc;
}

/* Deletes each listed section's pages from its new size on. */
static int cut_sections(struct store *s, const struct store_section_size *sz,
			size_t n)
{
	struct buf ws = BUF_INIT, sec = BUF_INIT, pages = BUF_INIT;

	for (size_t i = 0; i < n; i++) {
		buf_printf(&ws, "%s%lld", i ? "," : "{",
			   (long long)sz[i].workspace_id);
		buf_printf(&sec, "%s%d", i ? "," : "{", (int)sz[i].section);
		buf_printf(&pages, "%s%d", i ? "," : "{", (int)sz[i].pages);
	}
	buf_addc(&ws, '}');
	buf_addc(&sec, '}');
	buf_addc(&pages, '}');
	const char *params[3] = { ws.data, sec.data, pages.data };
	int rc = store_exec_params(s,
		"DELETE FROM engine_pages p"
		" USING unnest($1::bigint[], $2::integer[], $3::integer[])"
		"  AS z(workspace_id, section, pages)"
		" WHERE p.workspace_id = z.workspace_id"
		" AND p.section = z.section AND p.page >= z.pages",
		3, params, "cut engine sections");

	buf_release(&ws);
	buf_release(&sec);
	buf_release(&pages);
	return rc;
}

static int set_checkpoint(struct store *s, int64_t seq, int32_t format, int64_t erased)
{
	char seq_s[24], format_s[16], erased_s[24];
	const char *params[3] = { seq_s, format_s, erased_s };

	snprintf(seq_s, sizeof(seq_s), "%lld", (long long)seq);
	snprintf(format_s, sizeof(format_s), "%d", (int)format);
	snprintf(erased_s, sizeof(erased_s), "%lld", (long long)erased);
	return store_exec_params(s,
		"INSERT INTO engine_checkpoint (id, seq, format, saved_at, erasure_id)"
		" VALUES (1, $1, $2, now(), $3) ON CONFLICT (id) DO UPDATE"
		" SET seq = excluded.seq, format = excluded.format,"
		" saved_at = excluded.saved_at, erasure_id ="
		" greatest(engine_checkpoint.erasure_id, excluded.erasure_id)",
		3, params, "set engine checkpoint");
}



static int copy_changes(struct store *s, const struct store_audience_change *ch, size_t n)
{
	struct buf b = BUF_INIT;
	PGresult *res = PQexec(s->conn,
		"COPY audience_changes (workspace_id, audience_id, profile_id, entered, at, cause,"
		" seq) FROM STDIN (FORMAT binary)");
	int rc = store_check(s, res, PGRES_COPY_IN, "copy audience changes");

	PQclear(res);
	if (rc)
		return rc;
	buf_add(&b, store_copy_header, sizeof(store_copy_header));
	for (size_t i = 0; i < n && !rc; i++) {
		char entered = ch[i].entered;

		store_tuple_begin(&b, 7);
		store_tuple_int8(&b, ch[i].workspace_id);
		store_tuple_int8(&b, ch[i].audience_id);
		store_tuple_int8(&b, ch[i].profile_id);
		store_tuple_text(&b, &entered, 1);
		store_tuple_int8(&b, ch[i].at_us - STORE_PG_EPOCH_US);
		store_tuple_text(&b, ch[i].cause, strlen(ch[i].cause));
		if (ch[i].seq)
			store_tuple_int8(&b, ch[i].seq);
		else
			buf_add_be32(&b, 0xffffffffu);	/* NULL */
		if (b.len >= COPY_CHUNK)
			rc = copy_put(s, &b);
	}
	return copy_close(s, &b, rc);
}

static int delete_changes(struct store *s, const struct store_profile_ref *p, size_t n)
{
	struct buf ws = BUF_INIT, pid = BUF_INIT;
	int rc;

	for (size_t i = 0; i < n; i++) {
		buf_printf(&ws, "%s%lld", i ? "," : "{", (long long)p[i].workspace_id);
		buf_printf(&pid, "%s%lld", i ? "," : "{", (long long)p[i].profile_id);
	}
	buf_addc(&ws, '}');
	buf_addc(&pid, '}');
	const char *params[2] = { ws.data, pid.data };
	rc = store_exec_params(s,
		"DELETE FROM audience_changes c USING unnest($1::bigint[], $2::bigint[])"
		" AS z(workspace_id, profile_id)"
		" WHERE c.workspace_id = z.workspace_id AND c.profile_id = z.profile_id",
		2, params, "delete erased audience changes");
	buf_release(&ws);
	buf_release(&pid);
	return rc;
}

int store_engine_save(struct store *s, const int64_t *clear_ws, size_t nclear,
		      const struct store_page *pages, size_t n,
		      const struct store_section_size *sizes, size_t nsizes,
		      int64_t seq, int32_t format, int64_t erased,
		      const struct store_audience_change *ch, size_t nch,
		      const struct store_profile_ref *erased_profiles, size_t nerased)
{
	int rc;

	if (!s->conn)
		return WEFT_EUNAVAIL;
	rc = store_exec(s, "BEGIN", "begin engine save");
	if (rc)
		return rc;
	if (nclear)
		rc = clear_workspaces(s, clear_ws, nclear);
	if (!rc && n)
		rc = write_pages(s, pages, n);
	if (!rc && nsizes)
		rc = cut_sections(s, sizes, nsizes);
	if (!rc && nch)
		rc = copy_changes(s, ch, nch);
	if (!rc && nerased)
		rc = delete_changes(s, erased_profiles, nerased);
	if (!rc && seq >= 0)
		rc = set_checkpoint(s, seq, format, erased);
	if (rc)
		goto out_rollback;
	return store_exec(s, "COMMIT", "commit engine save");

out_rollback:
	if (PQstatus(s->conn) == CONNECTION_OK)
		PQclear(PQexec(s->conn, "ROLLBACK"));
	return rc;
}
