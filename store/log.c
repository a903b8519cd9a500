/*
 * The event log: binary COPY encoders and the group-commit transaction.
 *
 * One committer thread owns the log's writing connection, so sequence
 * numbers are handed out in commit order and the engine can apply the log
 * in seq order without gaps appearing behind it. Duplicates are found
 * before the COPY (one indexed probe for the batch's messageIds), which
 * keeps the fast path a plain COPY into the table instead of an
 * INSERT ... ON CONFLICT from a staging table.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

const char store_copy_header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

void store_tuple_begin(struct buf *b, int nfields)
{
	buf_add_be16(b, (uint16_t)nfields);
}

void store_tuple_null(struct buf *b)
{
	buf_add_be32(b, 0xffffffffu);
}

void store_tuple_int4(struct buf *b, int32_t v)
{
	buf_add_be32(b, 4);
	buf_add_be32(b, (uint32_t)v);
}

void store_tuple_int8(struct buf *b, int64_t v)
{
	buf_add_be32(b, 8);
	buf_add_be64(b, (uint64_t)v);
}

void store_tuple_text(struct buf *b, const char *s, size_t n)
{
	buf_add_be32(b, (uint32_t)n);
	buf_add(b, s, n);
}

void store_tuple_jsonb(struct buf *b, const char *json, size_t n)
{
	buf_add_be32(b, (uint32_t)(n + 1));
	buf_addc(b, 1);	/* jsonb binary format version */
	buf_add(b, json, n);
}

size_t store_tuple_jsonb_begin(struct buf *b)
{
	size_t at = b->len;

	buf_add_be32(b, 0);	/* the length, written by _end */
	buf_addc(b, 1);		/* jsonb binary format version */
	return at;
}

size_t store_tuple_jsonb_end(struct buf *b, size_t at)
{
	size_t field = b->len - at - 4;
	unsigned char *p = (unsigned char *)b->data + at;

	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)((uint32_t)field >> (24 - 8 * i));
	return field - 1;
}

void store_tuple_timestamptz(struct buf *b, int64_t unix_us)
{
	store_tuple_int8(b, unix_us - STORE_PG_EPOCH_US);
}

void store_tuple_patch_int8(struct buf *b, size_t offset, int64_t v)
{
	unsigned char *p = (unsigned char *)b->data + offset;

	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)((uint64_t)v >> (56 - 8 * i));
}

/* Any number: the key of the log writer's advisory lock. */
#define LOG_WRITER_LOCK_KEY 0x7765666c

int store_try_lock(struct store *s, int key, const char *what)
{
	char sql[64];

	snprintf(sql, sizeof(sql), "SELECT pg_try_advisory_lock(%d)", key);
	PGresult *res = PQexec(s->conn, sql);
	int rc = store_check(s, res, PGRES_TUPLES_OK, what);

	if (!rc && PQgetvalue(res, 0, 0)[0] != 't')
		rc = WEFT_ECONFLICT;
	PQclear(res);
	return rc;
}

int store_log_lock(struct store *s)
{
	return store_try_lock(s, LOG_WRITER_LOCK_KEY, "take log writer lock");
}

int store_log_last_seq(struct store *s, int64_t *seq)
{
	PGresult *res = PQexec(s->conn,
		"SELECT greatest((SELECT last_seq FROM log_head WHERE id = 1),"
		" (SELECT coalesce(max(seq), 0) FROM events))");
	int rc = store_check(s, res, PGRES_TUPLES_OK, "read log head");

	if (!rc)
		*seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return rc;
}

/*
 * A set of (workspace, messageId) over the batch's rows, open addressing,
 * storing row indexes. Used to drop in-batch duplicates and to match the
 * probe's answers back to rows.
 */
struct idset {
	uint32_t *slots;	/* row index + 1; 0 is empty */
	size_t mask;
};

static uint64_t row_hash(int64_t ws, const char *mid)
{
	return XXH3_64bits_withSeed(mid, strlen(mid), (uint64_t)ws);
}

static void idset_init(struct idset *set, size_t n)
{
	size_t cap = 16;

	while (cap < n * 2)
		cap *= 2;
	set->slots = xcalloc(cap, sizeof(*set->slots));
	set->mask = cap - 1;
}

/* Returns the index of the row already holding the pair, or -1 after adding. */
static long idset_add(struct idset *set, struct store_log_row *rows, size_t i)
{
	size_t h = row_hash(rows[i].workspace_id, rows[i].message_id) & set->mask;

	for (;; h = (h + 1) & set->mask) {
		uint32_t v = set->slots[h];

		if (!v) {
			set->slots[h] = (uint32_t)i + 1;
			return -1;
		}
		struct store_log_row *r = &rows[v - 1];

		if (r->workspace_id == rows[i].workspace_id &&
		    strcmp(r->message_id, rows[i].message_id) == 0)
			return (long)v - 1;
	}
}

static long idset_find(struct idset *set, struct store_log_row *rows,
		       int64_t ws, const char *mid)
{
	size_t h = row_hash(ws, mid) & set->mask;

	for (;; h = (h + 1) & set->mask) {
		uint32_t v = set->slots[h];

		if (!v)
			return -1;
		if (rows[v - 1].workspace_id == ws &&
		    strcmp(rows[v - 1].message_id, mid) == 0)
			return (long)v - 1;
	}
}

/* Appends s to a PostgreSQL array literal element, quoted and escaped. */
static void add_array_elem(struct buf *b, const char *s)
{
	buf_addc(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_addc(b, '\\');
		buf_addc(b, *s);
	}
	buf_addc(b, '"');
}

/* Marks the rows whose messageId is already stored. */
static int probe_existing(struct store *s, struct store_log_row *rows,
			  size_t n, struct idset *set)
{
	struct buf ws = BUF_INIT, mids = BUF_INIT;
	size_t candidates = 0;
	int rc;

	buf_addc(&ws, '{');
	buf_addc(&mids, '{');
	for (size_t i = 0; i < n; i++) {
		if (!rows[i].stored)
			continue;
		if (candidates++) {
			buf_addc(&ws, ',');
			buf_addc(&mids, ',');
		}
		buf_printf(&ws, "%lld", (long long)rows[i].workspace_id);
		add_array_elem(&mids, rows[i].message_id);
	}
	buf_addc(&ws, '}');
	buf_addc(&mids, '}');

	const char *params[2] = { ws.data, mids.data };
	PGresult *res = PQexecParams(s->conn,
		"SELECT e.workspace_id, e.message_id FROM events e"
		" JOIN unnest($1::bigint[], $2::text[]) AS b(w, m)"
		" ON e.workspace_id = b.w AND e.message_id = b.m",
		2, NULL, params, NULL, NULL, 0);

	rc = store_check(s, res, PGRES_TUPLES_OK, "probe message ids");
	if (rc)
		goto out_clear;
	for (int r = 0; r < PQntuples(res); r++) {
		int64_t w = strtoll(PQgetvalue(res, r, 0), NULL, 10);
		long i = idset_find(set, rows, w, PQgetvalue(res, r, 1));

		if (i >= 0)
			rows[i].stored = false;
	}
out_clear:
	PQclear(res);
	buf_release(&ws);
	buf_release(&mids);
	return rc;
}

static int copy_in(struct store *s, const char *sql, const char *data,
		   size_t len, const char *what)
{
	PGresult *res = PQexec(s->conn, sql);
	int rc = store_check(s, res, PGRES_COPY_IN, what);

	PQclear(res);
	if (rc)
		return rc;
	if (PQputCopyData(s->conn, data, (int)len) != 1 ||
	    PQputCopyEnd(s->conn, NULL) != 1)
		return store_check(s, NULL, PGRES_COMMAND_OK, what);
	res = PQgetResult(s->conn);
	rc = store_check_unique(s, res, PGRES_COMMAND_OK, what);
	PQclear(res);
	/* Drain: a COPY leaves exactly one result, then NULL. */
	while ((res = PQgetResult(s->conn)) != NULL)
		PQclear(res);
	return rc;
}

int store_exec(struct store *s, const char *sql, const char *what)
{
	PGresult *res = PQexec(s->conn, sql);
	int rc = store_check(s, res, PGRES_COMMAND_OK, what);

	PQclear(res);
	return rc;
}

int store_exec_params(struct store *s, const char *sql, int n,
		      const char *const *params, const char *what)
{
	PGresult *res = PQexecParams(s->conn, sql, n, NULL, params, NULL, NULL,
				     0);
	int rc = store_check(s, res, PGRES_COMMAND_OK, what);

	PQclear(res);
	return rc;
}

/*
 * Builds the COPY stream of the rows still marked stored, numbering them
 * from seq + 1; returns how many.
 */
static size_t build_copy(struct buf *copy, struct store_log_row *rows,
			 size_t n, int64_t seq)
{
	size_t nstored = 0;

	buf_reset(copy);
	buf_add(copy, store_copy_header, sizeof(store_copy_header));
	for (size_t i = 0; i < n; i++) {
		if (!rows[i].stored) {
			rows[i].seq = 0;
			continue;
		}
		size_t at = copy->len;

		rows[i].seq = ++seq;
		buf_add(copy, rows[i].tuple, rows[i].len);
		store_tuple_patch_int8(copy, at + STORE_EVENT_SEQ_OFFSET,
				       rows[i].seq);
		nstored++;
	}
	buf_add_be16(copy, 0xffff);
	return nstored;
}

/* How many commits probe first after a duplicate was found by the index. */
#define PROBE_AFTER_CONFLICT 64

static const char copy_events_sql[] = "COPY events FROM STDIN (FORMAT binary)";

/* Looks the batch's messageIds up, then copies only the new rows. */
static int probe_then_copy(struct store *s, struct store_log_row *rows,
			   size_t n, struct idset *set, int64_t seq,
			   struct buf *copy)
{
	int rc = probe_existing(s, rows, n, set);

	if (rc)
		return rc;
	if (!build_copy(copy, rows, n, seq))
		return 0;
	return copy_in(s, copy_events_sql, copy->data, copy->len, "copy events");
}

static int copy_events(struct store *s, struct store_log_row *rows, size_t n,
		       struct idset *set, int64_t seq, struct buf *copy)
{
	int rc;

	if (s->probe_first > 0) {
		s->probe_first--;
		return probe_then_copy(s, rows, n, set, seq, copy);
	}
	/* Optimistic: the unique index is the duplicate check. */
	if (!build_copy(copy, rows, n, seq))
		return 0;
	rc = store_exec(s, "SAVEPOINT weft_copy", "savepoint before copy");
	if (rc)
		return rc;
	rc = copy_in(s, copy_events_sql, copy->data, copy->len, "copy events");
	if (rc != WEFT_ECONFLICT)
		return rc;
	s->probe_first = PROBE_AFTER_CONFLICT;
	rc = store_exec(s, "ROLLBACK TO SAVEPOINT weft_copy",
			"rollback to savepoint");
	if (rc)
		return rc;
	return probe_then_copy(s, rows, n, set, seq, copy);
}

int store_log_commit(struct store *s, struct store_log_row *rows, size_t n,
		     const struct buf *rejected, size_t nrejected,
		     int64_t *last_seq)
{
	struct idset set;
	struct buf copy = BUF_INIT;
	int rc;

	if (!s->conn)
		return WEFT_EUNAVAIL;
	idset_init(&set, n);
	for (size_t i = 0; i < n; i++) {
		long first = idset_add(&set, rows, i);

		rows[i].stored = first < 0;	/* in-batch duplicates count once */
		rows[i].seq = 0;
	}
	rc = store_exec(s, "BEGIN", "begin commit");
	if (rc)
		goto out_free;
	if (n) {
		rc = copy_events(s, rows, n, &set, *last_seq, &copy);
		if (rc == WEFT_ECONFLICT)	/* a concurrent writer; retry later */
			rc = WEFT_EIO;
		if (rc)
			goto out_rollback;
	}
	if (nrejected) {
		buf_reset(&copy);
		buf_add(&copy, store_copy_header, sizeof(store_copy_header));
		buf_add(&copy, rejected->data, rejected->len);
		buf_add_be16(&copy, 0xffff);
		rc = copy_in(s, "COPY rejected_events (workspace_id, received_at,"
			     " message_id, batch_index, code, message, payload,"
			     " identifiers)"
			     " FROM STDIN (FORMAT binary)",
			     copy.data, copy.len, "copy rejected events");
		if (rc)
			goto out_rollback;
	}
	rc = store_exec(s, "COMMIT", "commit events");
	if (rc)
		goto out_free;
	for (size_t i = 0; i < n; i++)
		if (rows[i].stored && rows[i].seq > *last_seq)
			*last_seq = rows[i].seq;
	goto out_free;

out_rollback:
	if (PQstatus(s->conn) == CONNECTION_OK)
		PQclear(PQexec(s->conn, "ROLLBACK"));
out_free:
	/* On failure the outcome is unknown or rolled back: report nothing stored. */
	if (rc) {
		for (size_t i = 0; i < n; i++) {
			rows[i].stored = false;
			rows[i].seq = 0;
		}
	}
	free(set.slots);
	buf_release(&copy);
	return rc;
}
