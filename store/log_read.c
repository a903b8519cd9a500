/*
 * Reading back: the COPY OUT reader every streaming reader of store/
 * shares, the decoders of binary COPY tuples, and the log's readers the
 * engine replays from.
 *
 * A binary COPY stream is a header, tuples, and a trailer (a field count
 * of -1). PostgreSQL sends one tuple per CopyData message with the header
 * glued to the first, but the reader does not count on that: it cuts the
 * stream into pieces wherever the messages end, keeping only a piece cut
 * in two, so a tuple is handed over in place when it arrived whole.
 */
#include "store/store_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

static uint16_t be16(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;

	return (uint16_t)(u[0] << 8 | u[1]);
}

static uint32_t be32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;

	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 |
	       (uint32_t)u[2] << 8 | u[3];
}

static uint64_t be64(const char *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* What walking over bytes that should start with a piece found. */
enum walk {
	WALK_OK,	/* a whole piece, *span bytes */
	WALK_SHORT,	/* a piece that goes on past the bytes given */
	WALK_BAD,	/* not binary COPY */
};

/*
 * Walks the tuple at p[0..len): its field count and byte length, and its
 * fields into out[0..max) unless out is NULL.
 */
static enum walk tuple_walk(const char *p, size_t len, struct store_field *out,
			    int max, int *nfields, size_t *span)
{
	size_t at = 2;

	if (len < 2)
		return WALK_SHORT;
	int count = (int16_t)be16(p);

	if (count < 0 || (out && count > max))
		return WALK_BAD;
	for (int i = 0; i < count; i++) {
		if (len - at < 4)
			return WALK_SHORT;
		int32_t flen = (int32_t)be32(p + at);

		at += 4;
		if (flen < -1)
			return WALK_BAD;
		if (flen > 0 && len - at < (size_t)flen)
			return WALK_SHORT;
		if (out) {
			out[i].data = flen >= 0 ? p + at : NULL;
			out[i].len = flen;
		}
		if (flen > 0)
			at += (size_t)flen;
	}
	*nfields = count;
	*span = at;
	return WALK_OK;
}

/* The stream's header: signature, flags, then an extension to skip. */
static enum walk header_walk(const char *p, size_t len, size_t *span)
{
	size_t sig = len < 11 ? len : 11;

	if (memcmp(p, store_copy_header, sig) != 0)
		return WALK_BAD;
	if (len < 19)
		return WALK_SHORT;
	/* The high half of the flags is for flags a reader must understand. */
	if (be32(p + 11) & 0xffff0000u)
		return WALK_BAD;
	uint32_t ext = be32(p + 15);

	if (ext > len - 19)
		return WALK_SHORT;
	*span = 19 + (size_t)ext;
	return WALK_OK;
}

int store_tuple_fields(const char *tuple, size_t len, struct store_field *out,
		       int max)
{
	int nfields;
	size_t span;

	if (tuple_walk(tuple, len, out, max, &nfields, &span) != WALK_OK ||
	    span != len)
		return WEFT_EINVAL;
	return nfields;
}

int32_t store_field_int4(const struct store_field *f)
{
	assert(f->len == 4);
	return (int32_t)be32(f->data);
}

int64_t store_field_int8(const struct store_field *f)
{
	assert(f->len == 8);
	return (int64_t)be64(f->data);
}

int64_t store_field_timestamptz(const struct store_field *f)
{
	int64_t v = store_field_int8(f);

	/* 'infinity' and '-infinity' are the extremes: keep them there. */
	if (v == INT64_MAX || v == INT64_MIN)
		return v;
	return v + STORE_PG_EPOCH_US;
}

int store_field_jsonb(const struct store_field *f, const char **json,
		      size_t *n)
{
	if (f->len < 1 || f->data[0] != 1)
		return WEFT_EINVAL;
	*json = f->data + 1;
	*n = (size_t)f->len - 1;
	return 0;
}

struct copy_reader {
	int (*fn)(void *arg, const char *tuple, size_t len);
	void *arg;
	struct buf pending;	/* the start of a piece cut by a message's end */
	bool started;		/* the header was read */
	bool ended;		/* the trailer was read */
	bool bad;		/* the stream is not binary COPY */
};

/* The piece starting at p: the header, a tuple or the trailer. */
static enum walk piece_walk(const struct copy_reader *r, const char *p,
			    size_t len, size_t *span)
{
	int nfields;

	if (r->ended)
		return WALK_BAD;	/* nothing may follow the trailer */
	if (!r->started)
		return header_walk(p, len, span);
	if (len >= 2 && be16(p) == 0xffff) {
		*span = 2;
		return WALK_OK;
	}
	return tuple_walk(p, len, NULL, 0, &nfields, span);
}

/*
 * Takes the whole pieces at the start of p[0..len) and says in *used how
 * far it got: 0, fn's nonzero return, or WEFT_EIO for a malformed stream.
 */
static int reader_parse(struct copy_reader *r, const char *p, size_t len,
			size_t *used)
{
	size_t at = 0, span;
	int rc = 0;

	while (at < len && !rc) {
		enum walk w = piece_walk(r, p + at, len - at, &span);

		if (w == WALK_SHORT)
			break;
		if (w == WALK_BAD) {
			r->bad = true;
			rc = WEFT_EIO;
			break;
		}
		if (!r->started)
			r->started = true;
		else if (be16(p + at) == 0xffff)
			r->ended = true;
		else
			rc = r->fn(r->arg, p + at, span);
		at += span;
	}
	*used = at;
	return rc;
}

/* Takes one CopyData message; keeps a piece it ends in the middle of. */
static int reader_feed(struct copy_reader *r, const char *p, size_t len)
{
	struct buf *pend = &r->pending;
	size_t used;
	int rc;

	if (!pend->len) {
		rc = reader_parse(r, p, len, &used);
		if (!rc && used < len)
			buf_add(pend, p + used, len - used);
		return rc;
	}
	buf_add(pend, p, len);
	rc = reader_parse(r, pend->data, pend->len, &used);
	if (used) {
		memmove(pend->data, pend->data + used, pend->len - used);
		pend->len -= used;
		pend->data[pend->len] = '\0';
	}
	return rc;
}

/*
 * Reads the COPY's messages until it ends or the reader stops; *done
 * says whether the server finished sending.
 */
static int copy_read(struct store *s, struct copy_reader *r, bool *done)
{
	char *msg;
	int n, rc = 0;

	*done = false;
	while (!rc && (n = PQgetCopyData(s->conn, &msg, 0)) > 0) {
		rc = reader_feed(r, msg, (size_t)n);
		PQfreemem(msg);
	}
	if (rc)
		return rc;
	*done = true;
	if (n == -2)
		return 0;	/* the result says what went wrong */
	if (!r->ended || r->pending.len) {
		r->bad = true;
		return WEFT_EIO;
	}
	return 0;
}

/*
 * Drops the COPY's messages that already arrived, without waiting; true
 * when the COPY ended with them (or the connection failed: the result
 * will say), so there is nothing left to cancel.
 */
static bool copy_ended_already(struct store *s)
{
	char *msg;
	int n;

	for (int round = 0; round < 2; round++) {
		while ((n = PQgetCopyData(s->conn, &msg, 1)) > 0)
			PQfreemem(msg);
		if (n != 0)
			return true;
		if (!PQconsumeInput(s->conn))
			return true;
	}
	return false;
}

/*
 * Stops a COPY OUT the reader no longer wants. A small one has usually
 * arrived whole by now; otherwise the server is asked to cancel (a new
 * connection, some milliseconds, best effort: without it the rest is
 * only read and dropped) and the stream is read to its end.
 */
static void copy_abandon(struct store *s)
{
	char err[256];
	PGcancel *cancel;
	char *msg;
	int n;

	if (copy_ended_already(s))
		return;
	cancel = PQgetCancel(s->conn);
	if (cancel && !PQcancel(cancel, err, sizeof(err)))
		log_warn("store_cancel_failed", "msg=\"%.*s\"",
			 (int)strcspn(err, "\n"), err);
	PQfreeCancel(cancel);
	while ((n = PQgetCopyData(s->conn, &msg, 0)) > 0)
		PQfreemem(msg);
}

/* True for the error a cancelled statement ends with. */
static bool was_cancelled(PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return state && strcmp(state, "57014") == 0;
}

/* Collects the COPY's result: quietly when it ended as asked to. */
static int copy_result(struct store *s, bool stopped, const char *what)
{
	PGresult *res = PQgetResult(s->conn);
	int rc = 0;

	if (!stopped || !res || !was_cancelled(res))
		rc = store_check(s, res, PGRES_COMMAND_OK, what);
	PQclear(res);
	/* Drain: a COPY leaves exactly one result, then NULL. */
	while ((res = PQgetResult(s->conn)) != NULL)
		PQclear(res);
	return rc;
}

int store_copy_out(struct store *s, const char *sql, const char *what,
		   int (*fn)(void *arg, const char *tuple, size_t len),
		   void *arg)
{
	struct copy_reader r = { .fn = fn, .arg = arg, .pending = BUF_INIT };
	bool done;
	int rc, end_rc;

	if (!s->conn)
		return WEFT_EUNAVAIL;
	PGresult *res = PQexec(s->conn, sql);

	rc = store_check(s, res, PGRES_COPY_OUT, what);
	PQclear(res);
	if (rc)
		return rc;
	rc = copy_read(s, &r, &done);
	if (r.bad)
		log_error("store_copy_malformed",
			  "what=\"%s\" msg=\"not a binary COPY stream\"", what);
	if (!done)
		copy_abandon(s);
	end_rc = copy_result(s, !done, what);
	buf_release(&r.pending);
	return rc ? rc : end_rc;
}

int store_workspace_ids(struct store *s, int64_t **ids, size_t *n)
{
	PGresult *res = PQexec(s->conn,
		"SELECT workspace_id FROM workspaces ORDER BY workspace_id");
	int rc = store_check(s, res, PGRES_TUPLES_OK, "list workspaces");

	if (rc)
		goto out_clear;
	size_t count = (size_t)PQntuples(res);
	int64_t *v = xcalloc(count ? count : 1, sizeof(*v));

	for (size_t i = 0; i < count; i++)
		v[i] = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
	*ids = v;
	*n = count;
out_clear:
	PQclear(res);
	return rc;
}

int store_log_head(struct store *s, int64_t *seq)
{
	/*
	 * One backward step on the primary key (workspace_id, seq) per
	 * workspace: a plain max(seq) would read the whole log.
	 */
	PGresult *res = PQexec(s->conn,
		"SELECT coalesce(max(last.seq), 0) FROM workspaces w"
		" CROSS JOIN LATERAL (SELECT e.seq FROM events e"
		"  WHERE e.workspace_id = w.workspace_id"
		"  ORDER BY e.seq DESC LIMIT 1) AS last");
	int rc = store_check(s, res, PGRES_TUPLES_OK, "find the log's last event");

	if (!rc)
		*seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return rc;
}

int store_log_read(struct store *s, int64_t workspace_id, int64_t after,
		   int64_t upto,
		   int (*fn)(void *arg, const char *tuple, size_t len),
		   void *arg)
{
	char sql[512];

	/*
	 * COPY takes no parameters; the three values are integers printed
	 * here. The columns are the events table's, in its order, which is
	 * the committer's tuple format.
	 */
	snprintf(sql, sizeof(sql),
		 "COPY (SELECT workspace_id, seq, message_id, type, event,"
		 " received_at, sent_at, original_timestamp, \"timestamp\","
		 " key_id, identifiers, payload FROM events"
		 " WHERE workspace_id = %lld AND seq > %lld AND seq <= %lld"
		 " ORDER BY seq) TO STDOUT (FORMAT binary)",
		 (long long)workspace_id, (long long)after, (long long)upto);
	return store_copy_out(s, sql, "read events", fn, arg);
}

int store_log_read_seqs(struct store *s, int64_t workspace_id, const int64_t *seqs, size_t n,
			int (*fn)(void *arg, const char *tuple, size_t len), void *arg)
{
	struct buf sql = BUF_INIT;
	int rc = 0;

	/* COPY takes no parameters: the numbers go into the text, a chunk at a time. */
	for (size_t at = 0; at < n && !rc; at += STORE_READ_SEQS_CHUNK) {
		size_t end = at + STORE_READ_SEQS_CHUNK < n ? at + STORE_READ_SEQS_CHUNK : n;

		buf_reset(&sql);
		buf_printf(&sql, "COPY (SELECT workspace_id, seq, message_id, type, event,"
			   " received_at, sent_at, original_timestamp, \"timestamp\","
			   " key_id, identifiers, payload FROM events"
			   " WHERE workspace_id = %lld AND seq = ANY('{", (long long)workspace_id);
		for (size_t i = at; i < end; i++)
			buf_printf(&sql, "%s%lld", i > at ? "," : "", (long long)seqs[i]);
		buf_adds(&sql, "}'::bigint[]) ORDER BY seq) TO STDOUT (FORMAT binary)");
		buf_addc(&sql, '\0');
		rc = store_copy_out(s, sql.data, "read events by seq", fn, arg);
	}
	buf_release(&sql);
	return rc;
}
