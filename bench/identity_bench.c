/*
 * identity_bench: the identity graph on a synthetic stream shaped like real
 * traffic (bench/idgen.h, by default 10M events from 2M people), against
 * the way warehouse tools stitch identities: connected components by
 * iterative min-label propagation in SQL, in the PostgreSQL bench/identity
 * started, on a slice of the same events.
 *
 *   identity_bench [--url URL] [--people 2000000] [--events 10000000]
 *                  [--slice 1000000] [--slice-runs 5] [--seed 1]
 *                  [--sql-nodes text|bigint] [--sql-modes both|package|tuned]
 *                  [--keep]
 *
 * What it measures, in this order:
 *
 *  1. The engine's rate: every event is generated into memory first, then
 *     applied with identity_graph_apply_batch() in batches of 65,536, with
 *     the default rules and the placeholder email on the workspace's
 *     blocked list, as the engine runs them. Only the apply calls are
 *     timed. Memory per identifier comes from identity_graph_stats() and
 *     from the growth of the resident set while the graph was built.
 *  2. A full rebuild: the graph freed, then a new one built from scratch
 *     from the same events held in memory, timed from identity_graph_new()
 *     to the last batch; its digest must equal the first graph's.
 *  3. The slice (the first K events): Weft with the default rules, timed
 *     like (1), the median of several runs; then, untimed, Weft with rules
 *     that limit nothing (limit 0 for every type, caps at their maximum)
 *     and a plain union-find, which must find the same components.
 *  4. The SQL baseline on the slice, in two modes, one after the other on
 *     one connection. Each event's identifiers become edges as id-stitching
 *     packages build them: every identifier linked to the event's first
 *     one (an event with one identifier gives a self-edge, so the node
 *     exists). Left out, as a package's filters and exclusion list would:
 *     values ingest flags as blocked ("undefined"), the placeholder email,
 *     group ids (accounts, not people), and the user-id form of an alias's
 *     previousId (a package sees one previous_id column, the anonymous id).
 *     Nodes are text, the 32 hex digits of the key, as packages keep the
 *     raw identifier values (--sql-nodes bigint numbers them instead,
 *     which is faster in SQL). In each mode the edges are COPYed into a
 *     table of their own, a CHECKPOINT writes the COPY's pages out, and
 *     the clock then runs until convergence, with the server's settings
 *     (bar one for bigint nodes, see sql_connect()):
 *
 *     a. The package style, the headline baseline: as dbt id-stitching
 *        packages and RudderStack Profiles' id stitcher run it, every step
 *        a model, materialised as a new regular (logged) table by CREATE
 *        TABLE ... AS SELECT, with no index and no ANALYZE (dbt makes
 *        neither):
 *          distinct edges, one label per node (itself), then rounds of
 *            a new label table: each node's smallest label over itself
 *            and its neighbours in the previous round's table (each edge
 *            used in both directions),
 *            the count of nodes whose label changed (the two tables
 *            joined), and the previous table dropped,
 *          until a round changes nothing (sql_package()).
 *     b. The tuned way, for information: UNLOGGED tables (no WAL, the
 *        fastest tables PostgreSQL has), ANALYZE of each table so that
 *        plans do not depend on autovacuum's timing:
 *          distinct edges, both directions of each (the adjacency), one
 *          label per node (itself), then rounds of
 *            UPDATE labels SET label = min over the node's neighbours'
 *            labels WHERE that is smaller
 *          until a round changes nothing (sql_tuned()).
 *
 *     Untimed, Weft's components (the unlimited run of (3)) are COPYed in
 *     once and compared with each mode's labels in SQL: the same nodes,
 *     and as many labels as profiles as (label, profile) pairs. Each
 *     mode's tables are then dropped and a CHECKPOINT taken, so that the
 *     next starts from the same state.
 *
 * Any disagreement (digests, components) fails the run (exit 1). Nothing
 * asserts a time: the machines are shared and noisy.
 *
 * The human report goes to stdout; the last line is machine-readable:
 * "RESULT key=value ...".
 */
#include <getopt.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/idgen.h"
#include "bench/span.h"
#include "bench/uf.h"
#include "identity/identity.h"
#include "lib/alloc.h"
#include "lib/buf.h"

#define BATCH 65536
/* COPY data goes to the server in pieces of about this size. */
#define COPY_CHUNK (1 << 20)

static struct {
	const char *url;
	uint64_t people, events, slice, seed;
	int slice_runs;
	bool bigint_nodes, keep;
	bool sql_modes[2];	/* indexed by enum sql_mode */
} opt = { NULL, 2000000, 10000000, 1000000, 1, 5, false, false, { true, true } };

/* The stream, held in memory: events and, flat, their identifiers. */
static struct identity_event_ids *evs;
static struct identity_ident *idents;
static uint8_t junk_email[IDENTITY_KEY_BYTES];

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "identity_bench: error: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static double median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];

			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the stream ---- */

static uint64_t generate(void)
{
	struct idgen g;
	struct idgen_event e;
	size_t cap = (size_t)opt.events * 2 + 16, len = 0;
	uint64_t *at = xcalloc(opt.events, sizeof(*at));

	evs = xcalloc(opt.events, sizeof(*evs));
	idents = xmalloc(xmul(cap, sizeof(*idents)));
	idgen_init(&g, opt.people, opt.events, opt.seed);
	idgen_junk_email(&g, junk_email);
	for (uint64_t i = 0; i < opt.events; i++) {
		uint64_t k = idgen_next(&g, &e);

		if (len + e.n > cap) {
			cap += cap / 2;
			idents = xrealloc(idents, xmul(cap, sizeof(*idents)));
		}
		memcpy(idents + len, e.ids, e.n * sizeof(*idents));
		evs[i] = idgen_event_ids(&g, &e, k);
		at[i] = len;
		len += e.n;
	}
	/* Pointers only now: the array moved while it grew. */
	for (uint64_t i = 0; i < opt.events; i++)
		evs[i].ids = idents + at[i];
	free(at);
	return len;
}

/* The default rules, with the placeholder email on the workspace's blocked list. */
static struct identity_rules *rules_engine(void)
{
	struct identity_rules *r = identity_rules_new();

	if (identity_rules_block(r, "email", junk_email) != 0)
		die("cannot block the placeholder email");
	return r;
}

/* Rules that never refuse a link: no limits, caps at their maximum. */
static struct identity_rules *rules_unlimited(void)
{
	struct identity_rules *r = rules_engine();
	struct identity_graph *names = identity_graph_new(r);

	for (int t = 0; t < IDENTITY_TYPE_BUILTIN_COUNT; t++)
		if (t != IDENTITY_TYPE_GROUP_ID &&
		    identity_rules_set_limit(r, identity_graph_type_name(names, (uint16_t)t), 0, 0))
			die("cannot lift the limit of type %d", t);
	identity_graph_free(names);
	if (identity_rules_set_caps(r, UINT32_MAX, IDENTITY_NODES_MAX) != 0)
		die("cannot raise the caps");
	return r;
}

/*
 * Applies evs[0..n) to g in batches, as the engine does, timing only the
 * apply calls into *t. Counts the events that attached to a profile.
 */
static uint64_t apply_all(struct identity_graph *g, uint64_t n, uint64_t *pids, struct span *t)
{
	uint64_t attached = 0;

	for (uint64_t done = 0; done < n;) {
		size_t k = n - done < BATCH ? (size_t)(n - done) : BATCH, applied;
		int rc;

		span_start(t);
		rc = identity_graph_apply_batch(g, evs + done, k, pids, &applied);
		span_stop(t);
		if (rc != 0)
			die("identity_graph_apply_batch failed at event %llu (%d)",
			    (unsigned long long)(done + applied), rc);
		for (size_t i = 0; i < k; i++)
			attached += pids[i] != 0;
		done += k;
	}
	return attached;
}

static void print_digest(const char *label, const uint8_t d[16])
{
	printf("%s", label);
	for (int i = 0; i < 16; i++)
		printf("%02x", d[i]);
	printf("\n");
}

/* ---- the slice: edges as id-stitching builds them, and the reference ---- */

struct slice {
	struct uf u;		/* the nodes (numbered in order of first sight) and reference */
	uint16_t *type;		/* type[node] */
	uint32_t (*edge)[2];	/* (first identifier, identifier) per edge, with repeats */
	size_t edges, edges_cap;
	uint64_t *profile;	/* profile[node] in Weft's unlimited graph */
};

/* Whether a package's filters would keep the identifier as a node. */
static bool edge_keeps(const struct identity_ident *id)
{
	if (id->blocked || id->type == IDENTITY_TYPE_GROUP_ID)
		return false;
	if (id->previous && id->type == IDENTITY_TYPE_USER_ID)
		return false;
	return !(id->type == IDENTITY_TYPE_EMAIL &&
		 memcmp(id->key, junk_email, IDENTITY_KEY_BYTES) == 0);
}

static void edge_add(struct slice *s, uint32_t a, uint32_t b)
{
	if (s->edges == s->edges_cap) {
		s->edges_cap = s->edges_cap ? 2 * s->edges_cap : 65536;
		s->edge = xrealloc(s->edge, xmul(s->edges_cap, sizeof(*s->edge)));
	}
	s->edge[s->edges][0] = a;
	s->edge[s->edges][1] = b;
	s->edges++;
}

static void slice_edges(struct slice *s, uint64_t k)
{
	size_t type_cap = 0;

	for (uint64_t i = 0; i < k; i++) {
		uint32_t first = 0;
		bool linked = false;

		for (size_t j = 0; j < evs[i].n; j++) {
			const struct identity_ident *id = &evs[i].ids[j];
			uint32_t x;

			if (!edge_keeps(id))
				continue;
			x = uf_node(&s->u, id->key);
			if (x >= type_cap) {
				type_cap = type_cap ? 2 * type_cap : 65536;
				s->type = xrealloc(s->type, xmul(type_cap, sizeof(*s->type)));
			}
			s->type[x] = id->type;
			if (!first) {
				first = x;
				continue;
			}
			if (x == first)
				continue;
			edge_add(s, first, x);
			uf_union(&s->u, first, x);
			linked = true;
		}
		if (first && !linked)
			edge_add(s, first, first);
	}
}

/*
 * Whether the partitions of the nodes by a[] and by b[] (1..n, values
 * 1..max_a and 1..max_b) are the same: each value of one maps to exactly
 * one value of the other.
 */
static bool same_partition(const uint64_t *a, uint64_t max_a, const uint64_t *b, uint64_t max_b,
			   size_t n, uint64_t *sets)
{
	uint64_t *ab = xcalloc(max_a + 1, sizeof(*ab)), *ba = xcalloc(max_b + 1, sizeof(*ba));
	bool same = true;

	*sets = 0;
	for (size_t x = 1; x <= n && same; x++) {
		if (!a[x] || !b[x] || a[x] > max_a || b[x] > max_b) {
			same = false;
		} else if (!ab[a[x]] && !ba[b[x]]) {
			ab[a[x]] = b[x];
			ba[b[x]] = a[x];
			(*sets)++;
		} else {
			same = ab[a[x]] == b[x] && ba[b[x]] == a[x];
		}
	}
	free(ab);
	free(ba);
	return same;
}

/*
 * Weft with nothing limited, on the slice: its profile per node, which
 * must partition the nodes as the reference union-find does.
 */
static void slice_reference(struct slice *s, uint64_t k, uint64_t *pids, uint64_t *components)
{
	struct identity_rules *r = rules_unlimited();
	struct identity_graph *g = identity_graph_new(r);
	struct identity_stats st;
	struct span t = SPAN_INIT;
	uint64_t *root = xcalloc(s->u.n + 1, sizeof(*root));

	identity_rules_free(r);
	apply_all(g, k, pids, &t);
	identity_graph_stats(g, &st);
	if (st.identifiers != s->u.n)
		die("weft without limits holds %llu identifiers on the slice, the edges %zu nodes",
		    (unsigned long long)st.identifiers, s->u.n);
	s->profile = xcalloc(s->u.n + 1, sizeof(*s->profile));
	for (size_t x = 1; x <= s->u.n; x++) {
		s->profile[x] = identity_graph_lookup(g, s->type[x], s->u.key[x]);
		root[x] = uf_find(&s->u, (uint32_t)x);
	}
	if (!same_partition(s->profile, st.profiles_created, root, s->u.n, s->u.n, components))
		die("weft without limits and the reference union-find disagree on the slice");
	if (*components != st.profiles)
		die("weft without limits has %llu live profiles, the union-find %llu components",
		    (unsigned long long)st.profiles, (unsigned long long)*components);
	free(root);
	identity_graph_free(g);
}

static void slice_release(struct slice *s)
{
	uf_release(&s->u);
	free(s->type);
	free(s->edge);
	free(s->profile);
}

/* ---- the SQL baseline ---- */

static void sql_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		die("SQL failed: %s\n  in: %s", PQerrorMessage(c), sql);
	PQclear(r);
}

/*
 * CHECKPOINT, which needs a superuser or pg_checkpoint: without either (a
 * server given with --url), the run goes on without it, and says so once.
 */
static void sql_checkpoint(PGconn *c)
{
	static bool warned;
	PGresult *r = PQexec(c, "CHECKPOINT");

	if (PQresultStatus(r) != PGRES_COMMAND_OK && !warned) {
		printf("          (no CHECKPOINT between steps: %s)\n", PQerrorMessage(c));
		warned = true;
	}
	PQclear(r);
}

/* Runs a command and returns how many rows it changed. */
static uint64_t sql_count(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	uint64_t n;

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die("SQL failed: %s\n  in: %s", PQerrorMessage(c), sql);
	n = strtoull(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return n;
}

/* A node as the SQL sees it: 32 hex digits of its key, or its number. */
static void add_node(struct buf *b, const struct slice *s, uint32_t x)
{
	static const char hex[] = "0123456789abcdef";

	if (opt.bigint_nodes) {
		buf_printf(b, "%u", x);
		return;
	}
	buf_grow(b, 32);
	for (int i = 0; i < IDENTITY_KEY_BYTES; i++) {
		b->data[b->len++] = hex[s->u.key[x][i] >> 4];
		b->data[b->len++] = hex[s->u.key[x][i] & 15];
	}
	b->data[b->len] = '\0';
}

static void copy_flush(PGconn *c, struct buf *b)
{
	if (b->len && PQputCopyData(c, b->data, (int)b->len) != 1)
		die("COPY: %s", PQerrorMessage(c));
	buf_reset(b);
}

static void copy_begin(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);

	if (PQresultStatus(r) != PGRES_COPY_IN)
		die("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

static void copy_end(PGconn *c)
{
	PGresult *r;

	if (PQputCopyEnd(c, NULL) != 1)
		die("COPY: %s", PQerrorMessage(c));
	r = PQgetResult(c);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die("COPY: %s", PQerrorMessage(c));
	PQclear(r);
	while ((r = PQgetResult(c)) != NULL)
		PQclear(r);
}

/* The two ways the SQL side runs (both, by default, on the same slice). */
enum sql_mode { SQL_PACKAGE, SQL_TUNED, SQL_MODES };

static const char *const sql_mode_name[SQL_MODES] = { "package", "tuned" };

struct sql_result {
	double copy_s, prep_s, rounds_s, seconds;	/* seconds is prep_s + rounds_s */
	double cpu_s;		/* the backend's CPU time over the same span */
	int rounds;
	uint64_t distinct_edges, nodes, components;
	bool agree;
};

/*
 * CPU time (user and system) the backend pid has used, in seconds, from
 * /proc/PID/stat (fields 14 and 15, counted after the command name, which
 * may hold spaces); -1 if it cannot be read or is no local postgres
 * process (a server on another machine).
 */
static double backend_cpu_seconds(int pid)
{
	char path[64], line[1024], *name, *rest;
	unsigned long long utime, stime;
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	ok = fgets(line, sizeof(line), f) != NULL;
	fclose(f);
	name = strchr(line, '(');
	rest = strrchr(line, ')');
	if (!ok || !name || !rest || strncmp(name, "(postgres)", 10) != 0)
		return -1;
	ok = sscanf(rest + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
		    &utime, &stime) == 2;
	return ok ? (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK) : -1;
}

/* Runs one timed step and prints its time, first under a heading. */
static void sql_step(PGconn *c, const char *heading, const char *sql)
{
	double t = span_now();

	sql_ok(c, sql);
	printf("          %-9s %6.2f s  %.60s...\n", heading, span_now() - t, sql);
}

/* Runs a query that returns one number. */
static uint64_t sql_number(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	uint64_t n;

	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) != 1)
		die("SQL failed: %s\n  in: %s", PQerrorMessage(c), sql);
	n = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return n;
}

/*
 * The edges, with repeats, COPYed into table (created here as kind:
 * "UNLOGGED TABLE" or "TABLE"); untimed by the caller's clock, which
 * starts once it returns.
 */
static void sql_copy_edges(PGconn *c, const struct slice *s, const char *kind,
			   const char *table, struct buf *b)
{
	const char *type = opt.bigint_nodes ? "bigint" : "text";
	char sql[256];

	snprintf(sql, sizeof(sql), "CREATE %s %s (a %s NOT NULL, b %s NOT NULL)", kind, table,
		 type, type);
	sql_ok(c, sql);
	snprintf(sql, sizeof(sql), "COPY %s (a, b) FROM STDIN", table);
	copy_begin(c, sql);
	for (size_t i = 0; i < s->edges; i++) {
		add_node(b, s, s->edge[i][0]);
		buf_addc(b, '\t');
		add_node(b, s, s->edge[i][1]);
		buf_addc(b, '\n');
		if (b->len >= COPY_CHUNK)
			copy_flush(c, b);
	}
	copy_flush(c, b);
	copy_end(c);
}

/* Weft's components (the unlimited run), beside the labels; untimed. */
static void sql_copy_weft(PGconn *c, const struct slice *s, struct buf *b)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "CREATE UNLOGGED TABLE id_weft (node %s NOT NULL, profile bigint NOT NULL)",
		 opt.bigint_nodes ? "bigint" : "text");
	sql_ok(c, sql);
	copy_begin(c, "COPY id_weft (node, profile) FROM STDIN");
	for (size_t x = 1; x <= s->u.n; x++) {
		add_node(b, s, (uint32_t)x);
		buf_printf(b, "\t%llu\n", (unsigned long long)s->profile[x]);
		if (b->len >= COPY_CHUNK)
			copy_flush(c, b);
	}
	copy_flush(c, b);
	copy_end(c);
	sql_ok(c, "ANALYZE id_weft");
}

/*
 * Whether the labels (table labels: node, label) partition the nodes as
 * Weft's profiles do: the same nodes, and as many labels as profiles as
 * (label, profile) pairs. Untimed.
 */
static void sql_compare(PGconn *c, const struct slice *s, const char *edges,
			const char *labels, struct sql_result *res)
{
	char sql[1024];
	uint64_t v[7];
	PGresult *r;

	snprintf(sql, sizeof(sql),
		 "SELECT (SELECT count(*) FROM %s),"
		 " (SELECT count(*) FROM %s),"
		 " (SELECT count(*) FROM id_weft),"
		 " (SELECT count(*) FROM %s JOIN id_weft USING (node)),"
		 " (SELECT count(DISTINCT label) FROM %s),"
		 " (SELECT count(DISTINCT profile) FROM id_weft),"
		 " (SELECT count(*) FROM (SELECT DISTINCT label, profile"
		 "  FROM %s JOIN id_weft USING (node)) AS p)",
		 edges, labels, labels, labels, labels);
	r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		die("comparing components: %s", PQerrorMessage(c));
	for (int i = 0; i < 7; i++)
		v[i] = strtoull(PQgetvalue(r, 0, i), NULL, 10);
	PQclear(r);
	res->distinct_edges = v[0];
	res->nodes = v[1];
	res->components = v[4];
	res->agree = v[1] == s->u.n && v[2] == v[1] && v[3] == v[1] && v[5] == v[4] &&
		     v[6] == v[4];
	if (!res->agree)
		printf("          SQL: %llu nodes, %llu labels; weft: %llu nodes, %llu "
		       "profiles; %llu in both, %llu (label, profile) pairs\n",
		       (unsigned long long)v[1], (unsigned long long)v[4],
		       (unsigned long long)v[2], (unsigned long long)v[5],
		       (unsigned long long)v[3], (unsigned long long)v[6]);
}

/*
 * The package style: as dbt id-stitching packages and RudderStack
 * Profiles' id stitcher run it. Every step is a model: a new regular
 * (logged) table made by CREATE TABLE ... AS SELECT, with no index and no
 * ANALYZE (dbt's table materialisation makes neither; autovacuum may
 * analyse a table on its own time, as in a warehouse). The distinct edges
 * first, then a label table with every node its own label; then, each
 * round, a new label table in which every node takes the smallest label
 * among its own and its neighbours' in the previous round's table (each
 * edge used in both directions), the number of nodes whose label changed
 * counted by joining the two rounds' tables, and the previous round's
 * table dropped; until a round changes nothing. Returns the final label
 * table's number.
 */
static const char sql_pkg_edges[] =
	"CREATE TABLE idp_edges AS SELECT DISTINCT a, b FROM idp_edges_raw";

static const char sql_pkg_labels0[] =
	"CREATE TABLE idp_labels_0 AS"
	" SELECT node, node AS label FROM (SELECT a FROM idp_edges UNION SELECT b FROM idp_edges)"
	" AS n (node)";

/* %1$d is the new round, %2$d the previous. */
static const char sql_pkg_round[] =
	"CREATE TABLE idp_labels_%1$d AS"
	" SELECT node, min(label) AS label FROM ("
	" SELECT node, label FROM idp_labels_%2$d"
	" UNION ALL SELECT e.a, p.label FROM idp_edges e JOIN idp_labels_%2$d p ON p.node = e.b"
	" UNION ALL SELECT e.b, p.label FROM idp_edges e JOIN idp_labels_%2$d p ON p.node = e.a"
	") AS c GROUP BY node";

static const char sql_pkg_changed[] =
	"SELECT count(*) FROM idp_labels_%1$d l JOIN idp_labels_%2$d p USING (node)"
	" WHERE l.label <> p.label";

static int sql_package(PGconn *c, struct sql_result *res)
{
	char sql[1024];
	double t0 = span_now(), t1;
	int round = 0;

	sql_step(c, "prepare:", sql_pkg_edges);
	sql_step(c, "", sql_pkg_labels0);
	t1 = span_now();
	res->prep_s = t1 - t0;
	for (;;) {
		double tr = span_now(), tc;
		uint64_t changed;

		round++;
		snprintf(sql, sizeof(sql), sql_pkg_round, round, round - 1);
		sql_ok(c, sql);
		tc = span_now();
		snprintf(sql, sizeof(sql), sql_pkg_changed, round, round - 1);
		changed = sql_number(c, sql);
		snprintf(sql, sizeof(sql), "DROP TABLE idp_labels_%d", round - 1);
		sql_ok(c, sql);
		printf("          round %2d: %9llu labels changed, %6.2f s (table %.2f s, count "
		       "and drop %.2f s)\n", round, (unsigned long long)changed,
		       span_now() - tr, tc - tr, span_now() - tc);
		fflush(stdout);
		if (!changed)
			break;
	}
	res->rounds = round;
	res->rounds_s = span_now() - t1;
	return round;
}

/*
 * The tuned way: UNLOGGED tables (no WAL), statistics gathered before
 * each step that reads a new table, and labels updated in place.
 * id_adj holds both directions of every distinct edge; every node starts
 * as its own label, and each round gives a node the smallest label among
 * its neighbours when that is smaller than its own, until a round changes
 * nothing (the number of rounds follows the longest shortest path from a
 * component's smallest node).
 */
static const char *const sql_tuned_prep[] = {
	"ANALYZE id_edges_raw",
	"CREATE UNLOGGED TABLE id_edges AS SELECT DISTINCT a, b FROM id_edges_raw",
	"ANALYZE id_edges",
	"CREATE UNLOGGED TABLE id_adj AS"
	" SELECT a AS node, b AS nbr FROM id_edges WHERE a <> b"
	" UNION ALL SELECT b, a FROM id_edges WHERE a <> b",
	"CREATE UNLOGGED TABLE id_labels AS"
	" SELECT node, node AS label FROM (SELECT a FROM id_edges UNION SELECT b FROM id_edges)"
	" AS n (node)",
	"ANALYZE id_adj",
	"ANALYZE id_labels",
};

static const char sql_tuned_round[] =
	"UPDATE id_labels l SET label = m.label"
	" FROM (SELECT a.node, min(n.label) AS label"
	" FROM id_adj a JOIN id_labels n ON n.node = a.nbr GROUP BY a.node) AS m"
	" WHERE l.node = m.node AND m.label < l.label";

static void sql_tuned(PGconn *c, struct sql_result *res)
{
	double t0 = span_now(), t1;

	for (size_t i = 0; i < sizeof(sql_tuned_prep) / sizeof(*sql_tuned_prep); i++)
		sql_step(c, i ? "" : "prepare:", sql_tuned_prep[i]);
	t1 = span_now();
	res->prep_s = t1 - t0;
	res->rounds = 0;
	for (;;) {
		double tr = span_now();
		uint64_t changed = sql_count(c, sql_tuned_round);

		res->rounds++;
		printf("          round %2d: %9llu labels changed, %6.2f s\n", res->rounds,
		       (unsigned long long)changed, span_now() - tr);
		fflush(stdout);
		if (!changed)
			break;
	}
	res->rounds_s = span_now() - t1;
}

/* Drops what an earlier run with --keep may have left in the database. */
static void sql_drop_all(PGconn *c)
{
	sql_ok(c, "DO $$ DECLARE t text; BEGIN"
		  " FOR t IN SELECT quote_ident(tablename) FROM pg_tables"
		  " WHERE schemaname = current_schema() AND (tablename ~ '^idp_labels_[0-9]+$'"
		  " OR tablename IN ('idp_edges_raw', 'idp_edges', 'id_edges_raw', 'id_edges',"
		  " 'id_adj', 'id_labels', 'id_weft'))"
		  " LOOP EXECUTE 'DROP TABLE ' || t; END LOOP; END $$");
}

static PGconn *sql_connect(void)
{
	const char *keys[] = { "dbname", "application_name", NULL };
	const char *vals[] = { opt.url, "identity_bench", NULL };
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(c) != CONNECTION_OK)
		die("cannot connect to PostgreSQL: %s", PQerrorMessage(c));
	sql_ok(c, "SET client_min_messages = warning");
	/*
	 * PostgreSQL 15 plans SELECT DISTINCT over bigint pairs as partial hash
	 * aggregates in parallel workers under a final hash aggregate, which
	 * then takes minutes instead of a second (the final table is filled
	 * in the partial tables' hash order). Text nodes keep the defaults.
	 */
	if (opt.bigint_nodes)
		sql_ok(c, "SET max_parallel_workers_per_gather = 0");
	return c;
}

/*
 * One mode on the slice: its edges COPYed in, a CHECKPOINT (untimed: the
 * edges are there before the stitching starts, and the COPY's dirty pages
 * are written out before the clock runs rather than during), then the
 * clock from there to convergence; then, untimed, the check against
 * Weft's components and, unless --keep, its tables dropped and another
 * CHECKPOINT, so that the next mode starts from the same state.
 */
static void sql_run(PGconn *c, const struct slice *s, enum sql_mode mode, struct buf *b,
		    struct sql_result *res)
{
	bool pkg = mode == SQL_PACKAGE;
	char labels[64];
	double t0;

	memset(res, 0, sizeof(*res));
	t0 = span_now();
	sql_copy_edges(c, s, pkg ? "TABLE" : "UNLOGGED TABLE", pkg ? "idp_edges_raw" : "id_edges_raw",
		       b);
	res->copy_s = span_now() - t0;
	sql_checkpoint(c);

	/* The clock: from the COPY (and its checkpoint) to convergence. */
	t0 = span_now();
	res->cpu_s = backend_cpu_seconds(PQbackendPID(c));
	if (pkg)
		snprintf(labels, sizeof(labels), "idp_labels_%d", sql_package(c, res));
	else {
		sql_tuned(c, res);
		snprintf(labels, sizeof(labels), "id_labels");
	}
	res->seconds = span_now() - t0;
	if (res->cpu_s >= 0)
		res->cpu_s = backend_cpu_seconds(PQbackendPID(c)) - res->cpu_s;

	sql_compare(c, s, pkg ? "idp_edges" : "id_edges", labels, res);
	if (!opt.keep) {
		char sql[256];

		snprintf(sql, sizeof(sql), "DROP TABLE %s, %s, %s%s", labels,
			 pkg ? "idp_edges" : "id_edges", pkg ? "idp_edges_raw" : "id_edges_raw",
			 pkg ? "" : ", id_adj");
		sql_ok(c, sql);
		sql_checkpoint(c);
	}
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fputs("usage: identity_bench [--url URL] [--people N] [--events N] [--slice K]\n"
	      "                      [--slice-runs N] [--seed S] [--sql-nodes text|bigint]\n"
	      "                      [--sql-modes both|package|tuned] [--keep]\n"
	      "Without --url (or WEFT_DATABASE_URL) the SQL baseline is skipped;\n"
	      "--slice 0 skips the slice altogether; --keep keeps the SQL tables.\n", f);
}

static uint64_t number(const char *s, const char *name)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (!*s || *end)
		die("%s wants a number, not '%s'", name, s);
	return v;
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "people", required_argument, NULL, 'p' },
		{ "events", required_argument, NULL, 'e' },
		{ "slice", required_argument, NULL, 'k' },
		{ "slice-runs", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 's' },
		{ "sql-nodes", required_argument, NULL, 'n' },
		{ "sql-modes", required_argument, NULL, 'm' },
		{ "keep", no_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int o;

	while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (o) {
		case 'p': opt.people = number(optarg, "--people"); break;
		case 'e': opt.events = number(optarg, "--events"); break;
		case 'k': opt.slice = number(optarg, "--slice"); break;
		case 'r': opt.slice_runs = (int)number(optarg, "--slice-runs"); break;
		case 's': opt.seed = number(optarg, "--seed"); break;
		case 'n':
			if (strcmp(optarg, "text") && strcmp(optarg, "bigint"))
				die("--sql-nodes is text or bigint, not '%s'", optarg);
			opt.bigint_nodes = strcmp(optarg, "bigint") == 0;
			break;
		case 'm':
			opt.sql_modes[SQL_PACKAGE] = !strcmp(optarg, "both") || !strcmp(optarg, "package");
			opt.sql_modes[SQL_TUNED] = !strcmp(optarg, "both") || !strcmp(optarg, "tuned");
			if (!opt.sql_modes[SQL_PACKAGE] && !opt.sql_modes[SQL_TUNED])
				die("--sql-modes is both, package or tuned, not '%s'", optarg);
			break;
		case 'K': opt.keep = true; break;
		case 'u': opt.url = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
	if (!opt.url)
		opt.url = getenv("WEFT_DATABASE_URL");
	if (opt.people < 20 || opt.events < 1 || opt.events >= IDENTITY_SEQ_LIMIT)
		die("--people must be at least 20 and --events at least 1");
	if (opt.slice > opt.events)
		opt.slice = opt.events;
	if (opt.slice_runs < 1 || opt.slice_runs > 99)
		die("--slice-runs wants 1 to 99");
}

/* What the run found, for the RESULT line; negative where not measured. */
static struct {
	double events_s, events_s_cpu, bytes_per_id, bytes_per_id_rss, rebuild_s;
	double slice_events_s, slice_events_s_cpu;
	struct {
		double s, events_s, cpu_s, ratio, ratio_cpu;
		int rounds;
		const char *agree;
	} sql[SQL_MODES];	/* indexed by enum sql_mode */
	const char *agree;	/* every mode run agrees */
} res = {
	-1, -1, -1, -1, -1, -1, -1,
	{ { -1, -1, -1, -1, -1, -1, "skipped" }, { -1, -1, -1, -1, -1, -1, "skipped" } },
	"skipped",
};

/* 1 and 2: the engine's rate and memory on the whole stream, then a rebuild. */
static void run_whole(const struct identity_rules *rules, uint64_t *pids)
{
	double events = (double)opt.events, t0;
	struct span t_apply = SPAN_INIT, t_rebuild = SPAN_INIT;
	struct identity_stats st;
	struct identity_graph *g;
	uint8_t digest[16], digest2[16];
	uint64_t attached;
	size_t rss0, rss1;

	memset(pids, 0, BATCH * sizeof(*pids));
	rss0 = span_rss_bytes();
	g = identity_graph_new(rules);
	attached = apply_all(g, opt.events, pids, &t_apply);
	rss1 = span_rss_bytes();
	identity_graph_stats(g, &st);
	identity_graph_digest(g, digest);
	identity_graph_free(g);
	res.events_s = events / t_apply.wall;
	res.events_s_cpu = events / t_apply.cpu;
	res.bytes_per_id = (double)st.bytes / (double)st.identifiers;
	res.bytes_per_id_rss = (double)(rss1 - rss0) / (double)st.identifiers;
	printf("graph:    %.2f M events/s by wall time (%.2f s), %.2f M/s by CPU time (%.2f s; "
	       "%.0f ns/event);\n          identity_graph_apply_batch, batches of %d, default rules\n",
	       res.events_s / 1e6, t_apply.wall, res.events_s_cpu / 1e6, t_apply.cpu,
	       t_apply.cpu / events * 1e9, BATCH);
	printf("          %llu identifiers, %llu profiles live, %llu merges, %llu links, "
	       "%llu explanations;\n          %.1f%% of events attached\n",
	       (unsigned long long)st.identifiers, (unsigned long long)st.profiles,
	       (unsigned long long)st.merges, (unsigned long long)st.links,
	       (unsigned long long)st.explanations, 100.0 * (double)attached / events);
	printf("memory:   %.1f bytes per identifier by the graph's accounting (%.0f MiB; "
	       "%.1f reserved),\n          %.1f by the growth of RSS (%.0f MiB)\n",
	       res.bytes_per_id, (double)st.bytes / 1048576.0,
	       (double)st.bytes_reserved / (double)st.identifiers, res.bytes_per_id_rss,
	       (double)(rss1 - rss0) / 1048576.0);

	/* From nothing: a new graph, every event applied, as at a restart. */
	t0 = span_now();
	g = identity_graph_new(rules);
	apply_all(g, opt.events, pids, &t_rebuild);
	res.rebuild_s = span_now() - t0;
	identity_graph_digest(g, digest2);
	identity_graph_free(g);
	printf("rebuild (in memory, from %llu events): %.2f s (%.2f M events/s; %.2f s CPU in "
	       "apply)\n", (unsigned long long)opt.events, res.rebuild_s,
	       events / res.rebuild_s / 1e6, t_rebuild.cpu);
	print_digest("          digest ", digest);
	if (memcmp(digest, digest2, sizeof(digest)) != 0) {
		print_digest("          rebuilt ", digest2);
		die("the rebuilt graph differs from the first");
	}
	printf("          the rebuilt graph is the same (digest)\n");
}

/* 3 and 4: Weft and SQL on the slice. */
static void run_slice(const struct identity_rules *rules, uint64_t *pids)
{
	uint64_t k = opt.slice, components;
	double wall[99], cpu[99], slice_wall, slice_cpu;
	struct slice s = { .u = UF_INIT };
	struct identity_stats st;
	struct sql_result sr[SQL_MODES];
	struct buf b = BUF_INIT;
	PGconn *c;

	for (int i = 0; i < opt.slice_runs; i++) {
		struct identity_graph *g = identity_graph_new(rules);
		struct span t = SPAN_INIT;

		apply_all(g, k, pids, &t);
		if (i == 0)
			identity_graph_stats(g, &st);
		identity_graph_free(g);
		wall[i] = t.wall;
		cpu[i] = t.cpu;
	}
	slice_wall = median(wall, opt.slice_runs);
	slice_cpu = median(cpu, opt.slice_runs);
	res.slice_events_s = (double)k / slice_wall;
	res.slice_events_s_cpu = (double)k / slice_cpu;
	slice_edges(&s, k);
	slice_reference(&s, k, pids, &components);
	printf("slice:    the first %llu events: %llu identifiers, %llu profiles with the default "
	       "rules;\n          %llu components without limits (the plain union-find agrees); "
	       "%zu edges with repeats\n",
	       (unsigned long long)k, (unsigned long long)st.identifiers,
	       (unsigned long long)st.profiles, (unsigned long long)components, s.edges);
	printf("weft:     %.2f M events/s on the slice by wall time (%.3f s), %.2f M/s by CPU time;\n"
	       "          default rules, median of %d runs, each a new graph\n",
	       res.slice_events_s / 1e6, slice_wall, res.slice_events_s_cpu / 1e6,
	       opt.slice_runs);
	if (!opt.url) {
		printf("sql:      skipped (no --url)\n");
		slice_release(&s);
		return;
	}

	c = sql_connect();
	sql_drop_all(c);
	sql_copy_weft(c, &s, &b);
	for (int m = 0; m < SQL_MODES; m++) {
		struct sql_result *r = &sr[m];

		if (!opt.sql_modes[m])
			continue;
		if (m == SQL_PACKAGE)
			printf("sql:      the package style (the headline baseline): min-label propagation "
			       "as dbt\n          id-stitching packages run it, a new logged table per "
			       "round, %s nodes;\n          rounds:\n",
			       opt.bigint_nodes ? "bigint" : "text");
		else
			printf("sql:      the tuned way (for information): min-label propagation in "
			       "UNLOGGED tables,\n          ANALYZE, labels updated in place, %s "
			       "nodes; rounds:\n", opt.bigint_nodes ? "bigint" : "text");
		sql_run(c, &s, (enum sql_mode)m, &b, r);
		res.sql[m].s = r->seconds;
		res.sql[m].events_s = (double)k / r->seconds;
		res.sql[m].cpu_s = r->cpu_s;
		res.sql[m].ratio = res.slice_events_s / res.sql[m].events_s;
		res.sql[m].ratio_cpu =
			r->cpu_s > 0 ? res.slice_events_s_cpu * r->cpu_s / (double)k : -1;
		res.sql[m].rounds = r->rounds;
		res.sql[m].agree = r->agree ? "yes" : "no";
		if (!r->agree)
			res.agree = "no";
		else if (strcmp(res.agree, "no") != 0)
			res.agree = "yes";
		printf("          %llu distinct edges, %llu nodes, %llu components after %d rounds\n"
		       "          COPY %.1f s (untimed); timed from the COPY's end to convergence: "
		       "%.1f s\n          (edges and labels %.1f s; rounds %.1f s)\n",
		       (unsigned long long)r->distinct_edges, (unsigned long long)r->nodes,
		       (unsigned long long)r->components, r->rounds, r->copy_s, r->seconds,
		       r->prep_s, r->rounds_s);
		printf("          %.0f events/s (%llu events / %.1f s); the backend's CPU time over "
		       "that span %.1f s\n          (not counting parallel workers')\n",
		       res.sql[m].events_s, (unsigned long long)k, r->seconds, r->cpu_s);
		printf("          speedup of weft: %.1f by wall time (weft on the slice / SQL), "
		       "%.1f by CPU time\n", res.sql[m].ratio, res.sql[m].ratio_cpu);
		printf("          components agree: %s\n", res.sql[m].agree);
	}
	if (!opt.keep)
		sql_ok(c, "DROP TABLE id_weft");
	buf_release(&b);
	PQfinish(c);
	if (opt.sql_modes[SQL_PACKAGE] && opt.sql_modes[SQL_TUNED])
		printf("speedup:  over the package style %.1f (wall), %.1f (CPU); over the tuned way "
		       "%.1f (wall),\n          %.1f (CPU); the tuned SQL is %.1f times faster than "
		       "the package style\n",
		       res.sql[SQL_PACKAGE].ratio, res.sql[SQL_PACKAGE].ratio_cpu,
		       res.sql[SQL_TUNED].ratio, res.sql[SQL_TUNED].ratio_cpu,
		       res.sql[SQL_PACKAGE].s / res.sql[SQL_TUNED].s);
	printf("components agree: %s\n", res.agree);
	slice_release(&s);
}

int main(int argc, char **argv)
{
	struct identity_rules *rules;
	struct span t_gen = SPAN_INIT;
	uint64_t ids_in, *pids;

	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	pids = xcalloc(BATCH, sizeof(*pids));

	span_start(&t_gen);
	ids_in = generate();
	span_stop(&t_gen);
	printf("workload: %llu people, %llu events (%.2f identifiers each), seed %llu; "
	       "generated into memory in %.1f s (%.0f MiB)\n",
	       (unsigned long long)opt.people, (unsigned long long)opt.events,
	       (double)ids_in / (double)opt.events, (unsigned long long)opt.seed, t_gen.wall,
	       (double)(opt.events * sizeof(*evs) + ids_in * sizeof(*idents)) / 1048576.0);

	rules = rules_engine();
	run_whole(rules, pids);
	if (opt.slice)
		run_slice(rules, pids);
	identity_rules_free(rules);
	free(pids);
	free(evs);
	free(idents);

	printf("RESULT events_s=%.0f events_s_cpu=%.0f bytes_per_id=%.1f bytes_per_id_rss=%.1f "
	       "rebuild_s=%.2f slice=%llu slice_events_s=%.0f slice_events_s_cpu=%.0f",
	       res.events_s, res.events_s_cpu, res.bytes_per_id, res.bytes_per_id_rss,
	       res.rebuild_s, (unsigned long long)opt.slice, res.slice_events_s,
	       res.slice_events_s_cpu);
	for (int m = 0; m < SQL_MODES; m++)
		printf(" %s_s=%.2f %s_events_s=%.0f %s_ratio=%.1f %s_cpu_s=%.2f %s_ratio_cpu=%.1f "
		       "%s_rounds=%d %s_agree=%s",
		       sql_mode_name[m], res.sql[m].s, sql_mode_name[m], res.sql[m].events_s,
		       sql_mode_name[m], res.sql[m].ratio, sql_mode_name[m], res.sql[m].cpu_s,
		       sql_mode_name[m], res.sql[m].ratio_cpu, sql_mode_name[m], res.sql[m].rounds,
		       sql_mode_name[m], res.sql[m].agree);
	printf(" agree=%s\n", res.agree);
	return strcmp(res.agree, "no") == 0;
}
