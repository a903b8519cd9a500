/*
 * copy_ceiling: how many event rows per second PostgreSQL takes through
 * binary COPY on this machine, right now, in the shape Weft writes them.
 * bench/ingest divides Weft's durable events/s by this figure.
 *
 * The rows are Weft's own tuples (the store_tuple_* encoders of
 * store/log.c, the 12 columns of the events table), with the payload and
 * identifiers JSON of the same synthetic traffic the load generator sends
 * (bench/gen.c). They go into a table created LIKE events INCLUDING ALL,
 * so with the same primary key and UNIQUE (workspace_id, message_id), in
 * batches of Weft's mean group-commit size, one transaction per batch
 * (BEGIN, COPY, COMMIT), with synchronous_commit on.
 *
 * The tuples are built before the clock starts; a batch only copies them
 * and patches seq and messageId, so the figure is PostgreSQL's, not this
 * program's. For information, --savepoint wraps each COPY in a savepoint
 * as Weft's committer does (store/log.c), and --probe runs before it the
 * duplicate probe Weft runs for a while after it met a duplicate.
 *
 * This is a measuring tool, not a Weft module: it talks to PostgreSQL with
 * libpq directly because store/ exposes no COPY into another table.
 *
 *   copy_ceiling --url URL --batch ROWS [--seconds 15] [--connections 1]
 *                [--savepoint] [--probe] [--table events_ceiling] [--keep]
 *
 * The last line is machine-readable: "RESULT key=value ...".
 */
#define _GNU_SOURCE	/* memmem */

#include <getopt.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/gen.h"
#include "lib/buf.h"
#include "store/store.h"

#define MSGID_LEN 36
/* Where a tuple's message_id text starts: after workspace_id and seq. */
#define MSGID_OFFSET (STORE_EVENT_SEQ_OFFSET + 8 + 4)

static const char copy_header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

/* The pre-built rows every connection copies from. */
struct pool {
	struct buf tuples;
	size_t *offset;		/* where each tuple starts */
	size_t *len;
	size_t *payload_msgid;	/* the messageId inside the payload, from the tuple's start */
	size_t n;
	uint64_t payload_bytes, identifier_bytes;
};

struct worker {
	pthread_t thread;
	int index;
	PGconn *conn;
	uint64_t run_id;
	uint64_t rows, batches;
	double commit_seconds;
	double end;		/* when its last commit finished */
};

static struct {
	const char *url;
	const char *table;
	size_t batch;
	double seconds;
	int connections;
	bool probe;
	bool savepoint;
	bool keep;
} opt = { .table = "events_ceiling", .seconds = 15, .connections = 1 };

static struct pool pool;
static double t_start, t_deadline;
static pthread_barrier_t start_barrier;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("copy_ceiling: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static PGconn *connect_db(void)
{
	/* The url may be a URI or key=value pairs; expand_dbname takes both. */
	const char *keys[] = { "dbname", "application_name", NULL };
	const char *vals[] = { opt.url, "copy_ceiling", NULL };
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(c) != CONNECTION_OK)
		die("cannot connect to the database: %s", PQerrorMessage(c));
	PGresult *r = PQexec(c, "SET synchronous_commit = on; "
			     "SET client_min_messages = warning");

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die("session settings: %s", PQerrorMessage(c));
	PQclear(r);
	return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType s = PQresultStatus(r);

	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
		die("'%s' failed: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

/* Builds the rows: the same encoders, columns and JSON as Weft's. */
static void pool_build(size_t n)
{
	struct gen g;
	struct gen_event ev;
	char *payload = malloc(GEN_MAX_EVENT), *ids = malloc(GEN_MAX_EVENT);
	int64_t now_ms = (int64_t)time(NULL) * 1000;

	if (!payload || !ids)
		die("out of memory");
	gen_init(&g, 42, gen_random_seed(), 100000);
	pool.n = n;
	pool.offset = calloc(n, sizeof(size_t));
	pool.len = calloc(n, sizeof(size_t));
	pool.payload_msgid = calloc(n, sizeof(size_t));
	if (!pool.offset || !pool.len || !pool.payload_msgid)
		die("out of memory");
	for (size_t i = 0; i < n; i++) {
		size_t plen = gen_event(&g, payload, now_ms, &ev);
		size_t ilen = gen_identifiers(&ev, ids);
		const char *type = ev.kind == GEN_TRACK ? "track" :
				   ev.kind == GEN_IDENTIFY ? "identify" : "page";
		struct buf *t = &pool.tuples;
		size_t at = t->len;

		store_tuple_begin(t, STORE_EVENT_FIELDS);
		store_tuple_int8(t, 1);			/* workspace_id */
		store_tuple_int8(t, 0);			/* seq, patched per batch */
		store_tuple_text(t, ev.message_id, MSGID_LEN);
		store_tuple_text(t, type, strlen(type));
		if (ev.name)
			store_tuple_text(t, ev.name, strlen(ev.name));
		else
			store_tuple_null(t);
		store_tuple_timestamptz(t, now_ms * 1000);	/* received_at */
		store_tuple_timestamptz(t, ev.sent_at_ms * 1000);
		store_tuple_timestamptz(t, ev.timestamp_ms * 1000);
		store_tuple_timestamptz(t, ev.timestamp_ms * 1000);
		store_tuple_int8(t, 1);			/* key_id */
		store_tuple_jsonb(t, ids, ilen);
		size_t pat = t->len;

		store_tuple_jsonb(t, payload, plen);
		pool.offset[i] = at;
		pool.len[i] = t->len - at;
		pool.payload_bytes += plen;
		pool.identifier_bytes += ilen;

		/* The payload repeats the messageId; it is patched too. */
		char *m = memmem(t->data + pat, t->len - pat, ev.message_id, MSGID_LEN);

		if (!m)
			die("the payload lacks its messageId");
		pool.payload_msgid[i] = (size_t)(m - (t->data + at));
		if (memcmp(t->data + at + MSGID_OFFSET, ev.message_id, MSGID_LEN))
			die("the message_id column is not where it was expected");
	}
	free(payload);
	free(ids);
}

/* Appends s to a PostgreSQL array literal (the ids here need no escapes). */
static void add_elem(struct buf *b, const char *s, size_t n, bool first)
{
	if (!first)
		buf_addc(b, ',');
	buf_addc(b, '"');
	buf_add(b, s, n);
	buf_addc(b, '"');
}

/* Weft's duplicate probe (store/log.c), on the batch about to be copied. */
static void probe(struct worker *w, const struct buf *copy, size_t first_row,
		  size_t nrows, struct buf *ws, struct buf *mids)
{
	char sql[256];

	buf_reset(ws);
	buf_reset(mids);
	buf_addc(ws, '{');
	buf_addc(mids, '{');
	for (size_t i = 0; i < nrows; i++) {
		if (i)
			buf_addc(ws, ',');
		buf_addc(ws, '1');
	}
	/* The message ids sit at known offsets of the rows just built. */
	size_t at = sizeof(copy_header);

	for (size_t i = 0; i < nrows; i++) {
		size_t k = (first_row + i) % pool.n;

		add_elem(mids, copy->data + at + MSGID_OFFSET, MSGID_LEN, i == 0);
		at += pool.len[k];
	}
	buf_addc(ws, '}');
	buf_addc(mids, '}');
	snprintf(sql, sizeof(sql),
		 "SELECT e.workspace_id, e.message_id FROM %s e"
		 " JOIN unnest($1::bigint[], $2::text[]) AS b(w, m)"
		 " ON e.workspace_id = b.w AND e.message_id = b.m", opt.table);

	const char *params[2] = { ws->data, mids->data };
	PGresult *r = PQexecParams(w->conn, sql, 2, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		die("probe: %s", PQerrorMessage(w->conn));
	if (PQntuples(r))
		die("probe: %d message ids already stored", PQntuples(r));
	PQclear(r);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct buf copy = BUF_INIT, ws = BUF_INIT, mids = BUF_INIT;
	char sql[128];
	/* Each connection numbers its rows in its own range, as one committer would. */
	int64_t seq = (int64_t)w->index * 1000000000000LL;
	uint64_t n = 0;
	size_t next_row = (size_t)w->index * 7919 % pool.n;

	snprintf(sql, sizeof(sql), "COPY %s FROM STDIN (FORMAT binary)", opt.table);
	pthread_barrier_wait(&start_barrier);
	while (now_seconds() < t_deadline) {
		size_t first = next_row;

		/* Assemble the batch: copy pre-built tuples, patch seq and ids. */
		buf_reset(&copy);
		buf_add(&copy, copy_header, sizeof(copy_header));
		for (size_t i = 0; i < opt.batch; i++) {
			size_t k = next_row;
			size_t at = copy.len;
			char id[MSGID_LEN];

			next_row = (next_row + 1) % pool.n;
			buf_add(&copy, pool.tuples.data + pool.offset[k], pool.len[k]);
			store_tuple_patch_int8(&copy, at + STORE_EVENT_SEQ_OFFSET, ++seq);
			gen_message_id(w->run_id, n++, id);
			memcpy(copy.data + at + MSGID_OFFSET, id, MSGID_LEN);
			memcpy(copy.data + at + pool.payload_msgid[k], id, MSGID_LEN);
		}
		buf_add_be16(&copy, 0xffff);

		double t0 = now_seconds();

		exec_ok(w->conn, "BEGIN");
		if (opt.savepoint)
			exec_ok(w->conn, "SAVEPOINT weft_copy");
		if (opt.probe)
			probe(w, &copy, first, opt.batch, &ws, &mids);
		PGresult *r = PQexec(w->conn, sql);

		if (PQresultStatus(r) != PGRES_COPY_IN)
			die("COPY: %s", PQerrorMessage(w->conn));
		PQclear(r);
		if (PQputCopyData(w->conn, copy.data, (int)copy.len) != 1 ||
		    PQputCopyEnd(w->conn, NULL) != 1)
			die("COPY: %s", PQerrorMessage(w->conn));
		r = PQgetResult(w->conn);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			die("COPY: %s", PQerrorMessage(w->conn));
		PQclear(r);
		while ((r = PQgetResult(w->conn)) != NULL)
			PQclear(r);
		exec_ok(w->conn, "COMMIT");
		w->end = now_seconds();
		w->commit_seconds += w->end - t0;
		w->rows += opt.batch;
		w->batches++;
	}
	buf_release(&copy);
	buf_release(&ws);
	buf_release(&mids);
	return NULL;
}

static void usage(FILE *f)
{
	fputs("usage: copy_ceiling --url URL --batch ROWS [--seconds S] "
	      "[--connections N]\n"
	      "                    [--probe] [--savepoint] [--table NAME] [--keep]\n", f);
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "batch", required_argument, NULL, 'b' },
		{ "seconds", required_argument, NULL, 's' },
		{ "connections", required_argument, NULL, 'c' },
		{ "table", required_argument, NULL, 't' },
		{ "probe", no_argument, NULL, 'p' },
		{ "savepoint", no_argument, NULL, 'S' },
		{ "keep", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int o;

	while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (o) {
		case 'u': opt.url = optarg; break;
		case 'b': opt.batch = strtoul(optarg, NULL, 10); break;
		case 's': opt.seconds = strtod(optarg, NULL); break;
		case 'c': opt.connections = atoi(optarg); break;
		case 't': opt.table = optarg; break;
		case 'p': opt.probe = true; break;
		case 'S': opt.savepoint = true; break;
		case 'k': opt.keep = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (!opt.url)
		opt.url = getenv("WEFT_DATABASE_URL");
	if (!opt.url || optind != argc) {
		usage(stderr);
		exit(2);
	}
	if (opt.batch < 1 || opt.batch > 100000)
		die("--batch wants 1 to 100000 rows, not %zu", opt.batch);
	if (!(opt.seconds > 0) || opt.connections < 1 || opt.connections > 64)
		die("--seconds must be positive and --connections 1 to 64");
	for (const char *p = opt.table; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || *p == '_' || (*p >= '0' && *p <= '9')))
			die("--table: lower-case letters, digits and '_' only");
}

int main(int argc, char **argv)
{
	struct worker *workers;
	PGconn *admin;
	char sql[256];

	parse_args(argc, argv);
	admin = connect_db();
	snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", opt.table);
	exec_ok(admin, sql);
	snprintf(sql, sizeof(sql), "CREATE TABLE %s (LIKE events INCLUDING ALL)",
		 opt.table);
	exec_ok(admin, sql);

	/* Enough distinct rows that batches do not repeat a short cycle. */
	pool_build(opt.batch * 4 > 20000 ? opt.batch * 4 : 20000);
	fprintf(stderr, "copy_ceiling: %s (LIKE events INCLUDING ALL), %zu rows "
		"per transaction, %d connection%s, %.0f s%s%s\n", opt.table,
		opt.batch, opt.connections, opt.connections > 1 ? "s" : "",
		opt.seconds, opt.savepoint ? ", COPY inside a savepoint" : "",
		opt.probe ? ", with Weft's duplicate probe" : "");
	fprintf(stderr, "copy_ceiling: mean row %.0f bytes in COPY (payload %.0f, "
		"identifiers %.0f)\n", (double)pool.tuples.len / pool.n,
		(double)pool.payload_bytes / pool.n,
		(double)pool.identifier_bytes / pool.n);

	workers = calloc((size_t)opt.connections, sizeof(*workers));
	if (!workers)
		die("out of memory");
	pthread_barrier_init(&start_barrier, NULL, (unsigned)opt.connections + 1);
	for (int i = 0; i < opt.connections; i++) {
		workers[i].index = i;
		workers[i].conn = connect_db();
		workers[i].run_id = gen_random_seed();
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]))
			die("cannot start a thread");
	}
	t_start = now_seconds();
	t_deadline = t_start + opt.seconds;
	pthread_barrier_wait(&start_barrier);

	uint64_t rows = 0, batches = 0;
	double end = t_start, commit = 0;

	for (int i = 0; i < opt.connections; i++) {
		pthread_join(workers[i].thread, NULL);
		rows += workers[i].rows;
		batches += workers[i].batches;
		commit += workers[i].commit_seconds;
		if (workers[i].end > end)
			end = workers[i].end;
		PQfinish(workers[i].conn);
	}
	double elapsed = end - t_start;
	double rows_s = elapsed > 0 ? (double)rows / elapsed : 0;
	double commit_ms = batches ? commit * 1000 / (double)batches : 0;

	if (!opt.keep) {
		snprintf(sql, sizeof(sql), "DROP TABLE %s", opt.table);
		exec_ok(admin, sql);
	}
	PQfinish(admin);
	fprintf(stderr, "copy_ceiling: %.0f rows/s (%llu rows in %llu "
		"transactions over %.1f s, %.1f ms each)\n", rows_s,
		(unsigned long long)rows, (unsigned long long)batches, elapsed,
		commit_ms);
	printf("RESULT rows_s=%.0f rows=%llu batches=%llu seconds=%.2f "
	       "commit_ms=%.2f connections=%d batch=%zu\n", rows_s,
	       (unsigned long long)rows, (unsigned long long)batches, elapsed,
	       commit_ms, opt.connections, opt.batch);
	return 0;
}
