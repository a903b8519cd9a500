/*
 * Reading events for the profile endpoints (docs/profiles.md). The engine
 * knows which events belong to a profile (their sequence numbers); what
 * they say is only in the log. A page of a profile's history, or the
 * events that first carried its identifiers, are read here by sequence
 * number, a chunk of numbers per query, with the filters (time, event
 * name, type) applied by PostgreSQL and LIMIT stopping each query as soon
 * as the page is full, so a long history costs no more than the page.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"

/* A text[] literal of names: every element quoted, '"' and '\' escaped. */
static void text_array(struct buf *b, const char *const *names, size_t n)
{
	buf_reset(b);
	buf_addc(b, '{');
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_addc(b, ',');
		buf_addc(b, '"');
		for (const char *p = names[i]; *p; p++) {
			if (*p == '"' || *p == '\\')
				buf_addc(b, '\\');
			buf_addc(b, *p);
		}
		buf_addc(b, '"');
	}
	buf_addc(b, '}');
}

int store_events_select(struct store *s, int64_t workspace_id, const int64_t *seqs, size_t n,
			const struct store_event_query *q,
			int (*fn)(void *arg, const struct store_event_row *row), void *arg)
{
	/*
	 * An event's name is a track's event, else its type: the names the
	 * profile store counts events by. NULL parameters mean "no filter".
	 */
	static const char *const sql_desc =
		"SELECT seq, coalesce(key_id, 0), (extract(epoch FROM \"timestamp\") * 1000000)::bigint,"
		" message_id, type, event, identifiers::text, CASE WHEN $9 THEN payload::text END"
		" FROM events WHERE workspace_id = $1 AND seq = ANY($2::bigint[])"
		" AND ($3::text IS NULL OR type = $3)"
		" AND ($4::bigint IS NULL OR \"timestamp\" >="
		"      'epoch'::timestamptz + $4::bigint * interval '1 microsecond')"
		" AND ($5::bigint IS NULL OR \"timestamp\" <"
		"      'epoch'::timestamptz + $5::bigint * interval '1 microsecond')"
		" AND ($6::text[] IS NULL OR (CASE WHEN type = 'track' THEN event ELSE type END) = ANY($6))"
		" AND ($7::text[] IS NULL OR NOT (CASE WHEN type = 'track' THEN event ELSE type END) = ANY($7))"
		" ORDER BY seq DESC LIMIT $8";
	static const char *const sql_asc_suffix = " ORDER BY seq ASC LIMIT $8";
	struct buf ids = BUF_INIT, inc = BUF_INIT, exc = BUF_INIT, sql_asc = BUF_INIT;
	char ws[24], start[24], end[24], limit[24];
	size_t left = q->limit, chunk_end;
	int rc = 0;

	snprintf(ws, sizeof(ws), "%lld", (long long)workspace_id);
	snprintf(start, sizeof(start), "%lld", (long long)q->start_us);
	snprintf(end, sizeof(end), "%lld", (long long)q->end_us);
	if (q->include)
		text_array(&inc, q->include, q->ninclude);
	if (q->exclude)
		text_array(&exc, q->exclude, q->nexclude);
	/* The same statement in ascending order: only its ORDER BY differs. */
	buf_add(&sql_asc, sql_desc, strlen(sql_desc) - strlen(" ORDER BY seq DESC LIMIT $8"));
	buf_adds(&sql_asc, sql_asc_suffix);

	for (size_t at = 0; at < n && !rc && (!q->limit || left); at = chunk_end) {
		chunk_end = at + STORE_READ_SEQS_CHUNK < n ? at + STORE_READ_SEQS_CHUNK : n;
		buf_reset(&ids);
		for (size_t i = at; i < chunk_end; i++)
			buf_printf(&ids, "%s%lld", i > at ? "," : "{", (long long)seqs[i]);
		buf_addc(&ids, '}');
		snprintf(limit, sizeof(limit), "%zu", left);

		const char *params[9] = {
			ws, ids.data, q->type,
			q->start_us != INT64_MIN ? start : NULL,
			q->end_us != INT64_MAX ? end : NULL,
			q->include ? inc.data : NULL,
			q->exclude ? exc.data : NULL,
			q->limit ? limit : NULL,
			q->payload ? "true" : "false",
		};
		PGresult *res = PQexecParams(s->conn, q->descending ? sql_desc : sql_asc.data, 9,
					     NULL, params, NULL, NULL, 0);

		rc = store_check(s, res, PGRES_TUPLES_OK, "read a profile's events");
		for (int r = 0; !rc && r < PQntuples(res); r++) {
			struct store_event_row row = {
				.seq = strtoll(PQgetvalue(res, r, 0), NULL, 10),
				.key_id = strtoll(PQgetvalue(res, r, 1), NULL, 10),
				.ts_us = strtoll(PQgetvalue(res, r, 2), NULL, 10),
				.message_id = PQgetvalue(res, r, 3),
				.type = PQgetvalue(res, r, 4),
				.event = PQgetisnull(res, r, 5) ? NULL : PQgetvalue(res, r, 5),
				.identifiers_json = PQgetvalue(res, r, 6),
				.payload_json = PQgetisnull(res, r, 7) ? NULL : PQgetvalue(res, r, 7),
			};

			if (q->limit)
				left--;
			rc = fn(arg, &row);
		}
		PQclear(res);
	}
	buf_release(&ids);
	buf_release(&inc);
	buf_release(&exc);
	buf_release(&sql_asc);
	return rc;
}
