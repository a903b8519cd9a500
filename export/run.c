/*
 * Running an export: rows a page at a time, from the audience's members
 * (full) or its recorded entries and exits (delta), their fields read
 * from the engine's state under the read lock and the identifiers' values
 * from the log, then written to a file or posted to a webhook.
 *
 * Crash safety. A file is written under a temporary name and renamed
 * once complete and synced; a job interrupted before that starts the file
 * again. A webhook job records after each delivered batch how far it got
 * (and, in delta mode, the destination's cursor) in one statement, so a
 * crash repeats at most the batch in flight, and that batch carries the
 * same messageIds again: they are derived from what the message says
 * (the change, or the job and profile), not from when it was sent.
 */
#include "export/export_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "audiences/space.h"
#include "engine/engine.h"
#include "identity/identity.h"
#include "ingest/ingest.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/digest.h"
#include "lib/err.h"
#include "lib/log.h"
#include "privacy/privacy.h"
#include "profiles/profiles.h"
#include "store/store.h"

/* Rows per page of a file export (a webhook's page is its batch). */
#define FILE_PAGE 1000

/* The value of one wanted identifier type on one row: its first seen identifier. */
struct slot {
	int64_t seq;		/* the event that first carried it; 0: unknown */
	uint8_t key[16];
	bool have;		/* the profile has one of the type */
	char *value;		/* as the log stores it; NULL: only the key is kept */
};

struct row {
	uint64_t pid;
	int64_t change_id, at_us;	/* delta */
	bool entered;
	char cause[16];
	json_t **values;		/* one per field; NULL: none */
};

struct page {
	const struct export_spec *spec;
	struct row *rows;
	size_t n;
	const char **types;		/* identifier types wanted, and where rows find them */
	size_t ntypes;
	int user_type, anon_type;	/* webhook: index in types, or -1 */
	int *field_type;		/* per field: its identifier type's index, or -1 */
	struct slot *slots;		/* n * ntypes */
};

static int type_index(struct page *p, const char *type)
{
	for (size_t i = 0; i < p->ntypes; i++)
		if (strcmp(p->types[i], type) == 0)
			return (int)i;
	p->types = xrealloc(p->types, xmul(p->ntypes + 1, sizeof(*p->types)));
	p->types[p->ntypes] = type;
	return (int)p->ntypes++;
}

static void page_init(struct page *p, const struct export_spec *spec, size_t cap)
{
	memset(p, 0, sizeof(*p));
	p->spec = spec;
	p->rows = xcalloc(cap, sizeof(*p->rows));
	p->field_type = xcalloc(spec->nfields + 1, sizeof(*p->field_type));
	for (size_t f = 0; f < spec->nfields; f++) {
		const struct export_field *fd = &spec->fields[f];

		p->field_type[f] = fd->kind == EXPORT_FIELD_IDENTIFIER ||
				   fd->kind == EXPORT_FIELD_MATCH_KEY ? type_index(p, fd->name) : -1;
	}
	p->user_type = spec->webhook ? type_index(p, "user_id") : -1;
	p->anon_type = spec->webhook ? type_index(p, "anonymous_id") : -1;
	p->slots = xcalloc(xmul(cap, p->ntypes + 1), sizeof(*p->slots));
	for (size_t i = 0; i < cap; i++)
		p->rows[i].values = xcalloc(spec->nfields + 1, sizeof(json_t *));
}

static void page_clear(struct page *p)
{
	for (size_t i = 0; i < p->n; i++) {
		for (size_t f = 0; f < p->spec->nfields; f++) {
			json_decref(p->rows[i].values[f]);
			p->rows[i].values[f] = NULL;
		}
		for (size_t t = 0; t < p->ntypes; t++) {
			struct slot *s = &p->slots[i * p->ntypes + t];

			free(s->value);
			memset(s, 0, sizeof(*s));
		}
	}
	p->n = 0;
}

static void page_release(struct page *p, size_t cap)
{
	page_clear(p);
	for (size_t i = 0; i < cap; i++)
		free(p->rows[i].values);
	free(p->rows);
	free(p->types);
	free(p->field_type);
	free(p->slots);
}

/* ---- gathering a page's fields ---- */

static const struct profile_trait *find_trait(const struct profile_view *v, const char *name)
{
	size_t lo = 0, hi = v->ntraits;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(v->traits[mid].name, name);

		if (!c)
			return &v->traits[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The profile's first seen identifier of each wanted type into its slots (under the lock). */
static void find_identifiers(struct page *p, const struct identity_graph *g,
			     const struct profile_store *ps, uint64_t pid, struct slot *slots)
{
	struct identity_ids_iter it;
	struct identity_ident_info info;

	identity_ids_iter_init(&it, g, pid);
	while (identity_ids_iter_next(&it, &info)) {
		const char *name = identity_graph_type_name(g, info.type);
		struct profile_ident_seen seen = { 0 };

		if (!name)
			continue;
		for (size_t t = 0; t < p->ntypes; t++) {
			struct slot *s = &slots[t];

			if (strcmp(p->types[t], name))
				continue;
			if (ps)
				profile_store_identifier(ps, info.node, &seen);
			/* Unknown first-seen sorts last; ties go to the smaller key, stably. */
			if (!s->have || (seen.first_seq && (!s->seq || seen.first_seq < s->seq))) {
				s->have = true;
				s->seq = seen.first_seq;
				memcpy(s->key, info.key, 16);
			}
		}
	}
}

/* Reads traits, computed traits and which identifiers to look up, under the read lock. */
static void gather_state(struct export_ctx *c, struct page *p)
{
	const struct export_spec *spec = p->spec;
	const struct identity_graph *g;
	const struct profile_store *ps;
	const struct audience_space *as;
	int64_t now = engine_clock(c->engine);
	bool traits = false;

	for (size_t f = 0; f < spec->nfields; f++)
		traits |= spec->fields[f].kind == EXPORT_FIELD_TRAIT ||
			  spec->fields[f].kind == EXPORT_FIELD_MATCH_KEY;
	engine_read_begin(c->engine);
	g = engine_graph(c->engine, c->workspace_id);
	ps = engine_profiles(c->engine, c->workspace_id);
	as = engine_audiences(c->engine, c->workspace_id);
	for (size_t i = 0; i < p->n; i++) {
		struct row *r = &p->rows[i];
		uint64_t pid = g ? identity_graph_resolve(g, r->pid) : 0;
		struct profile_view v = { 0 };
		bool have_view;

		if (!pid)
			continue;	/* erased since: only its id is known */
		have_view = traits && ps && profile_store_view_traits(ps, pid, &v) == 0;
		for (size_t f = 0; f < spec->nfields; f++) {
			const struct export_field *fd = &spec->fields[f];
			const struct profile_trait *t;
			long k;

			if (fd->kind == EXPORT_FIELD_TRAIT || fd->kind == EXPORT_FIELD_MATCH_KEY) {
				if (have_view && (t = find_trait(&v, fd->name)))
					r->values[f] = json_loadb(t->json, t->json_len,
								  JSON_DECODE_ANY, NULL);
			} else if (fd->kind == EXPORT_FIELD_COMPUTED && as &&
				   (k = audience_space_ct_find(as, fd->name)) >= 0) {
				r->values[f] = audience_space_ct_value(as, (size_t)k, pid, now);
			}
		}
		if (have_view)
			profile_view_release(&v);
		if (p->ntypes)
			find_identifiers(p, g, ps, pid, &p->slots[i * p->ntypes]);
	}
	engine_read_end(c->engine);
}

struct seq_ref {
	int64_t seq;
	struct slot *slot;
	const char *type;
};

static int seq_ref_cmp(const void *a, const void *b)
{
	int64_t x = ((const struct seq_ref *)a)->seq, y = ((const struct seq_ref *)b)->seq;

	return (x > y) - (x < y);
}

struct fill {
	struct seq_ref *refs;
	size_t n;
};

/* Takes the values of the slots first carried by row from its identifiers JSON. */
static int fill_row(void *arg, const struct store_event_row *row)
{
	struct fill *f = arg;
	struct seq_ref key = { .seq = row->seq }, *at;
	json_t *ids;

	at = bsearch(&key, f->refs, f->n, sizeof(*f->refs), seq_ref_cmp);
	if (!at)
		return 0;
	while (at > f->refs && at[-1].seq == row->seq)
		at--;
	ids = json_loads(row->identifiers_json, 0, NULL);
	for (; at < f->refs + f->n && at->seq == row->seq; at++) {
		char hex[33];
		size_t i;
		json_t *it;

		hex_encode(at->slot->key, 16, hex);
		json_array_foreach(ids, i, it) {
			const char *type = json_string_value(json_object_get(it, "type"));
			const char *k = json_string_value(json_object_get(it, "key"));
			const char *value = json_string_value(json_object_get(it, "value"));

			if (type && k && value && strcmp(type, at->type) == 0 && strcmp(k, hex) == 0) {
				at->slot->value = xstrdup(value);
				break;
			}
		}
	}
	json_decref(ids);
	return 0;
}

/* Reads the identifiers' values from the events that first carried them: one query a page. */
static int gather_identifiers(struct export_ctx *c, struct page *p)
{
	struct store_event_query q = { .start_us = INT64_MIN, .end_us = INT64_MAX };
	struct fill f = { xmalloc(xmul(p->n * p->ntypes + 1, sizeof(*f.refs))), 0 };
	int64_t *seqs;
	size_t nseqs = 0;
	int rc = 0;

	for (size_t i = 0; i < p->n * p->ntypes; i++)
		if (p->slots[i].have && p->slots[i].seq)
			f.refs[f.n++] = (struct seq_ref){ p->slots[i].seq, &p->slots[i],
							   p->types[i % p->ntypes] };
	if (!f.n)
		goto out;
	qsort(f.refs, f.n, sizeof(*f.refs), seq_ref_cmp);
	seqs = xmalloc(xmul(f.n, sizeof(*seqs)));
	for (size_t i = 0; i < f.n; i++)
		if (!nseqs || seqs[nseqs - 1] != f.refs[i].seq)
			seqs[nseqs++] = f.refs[i].seq;
	rc = store_events_select(c->store, c->workspace_id, seqs, nseqs, &q, fill_row, &f);
	free(seqs);
out:
	free(f.refs);
	return rc;
}

/*
 * The SHA-256 match key of a stored value of type (email, phone): the
 * value itself when the privacy policy stored it as one, its digest when
 * the policy kept it as sent, NULL when it was masked (hashed under Weft's
 * key, partial, redacted): nothing can be matched from those.
 */
static json_t *match_key(const char *type, const char *v)
{
	size_t len = v ? strlen(v) : 0, n;
	uint8_t d[32];
	char *norm, hex[65];
	bool digits = false;

	if (len == 64 && strspn(v, "0123456789abcdef") == 64)
		return json_string(v);
	if (!len || strncmp(v, "h:", 2) == 0 || strchr(v, '*') || strchr(v, '['))
		return NULL;
	norm = xmalloc(len + 1);
	n = privacy_normalise(type, v, len, norm);
	for (size_t i = 0; i < n; i++)
		digits |= norm[i] >= '0' && norm[i] <= '9';
	if (!n || (strcmp(type, "email") == 0 ? !strchr(norm, '@') : !digits)) {
		free(norm);
		return NULL;
	}
	sha256(norm, n, d);
	free(norm);
	hex_encode(d, 32, hex);
	return json_string(hex);
}

/* An identifier's value as stored, or its key where only that is kept (as lookups show it). */
static json_t *slot_json(const struct slot *s)
{
	char hex[33];

	if (s->value)
		return json_string(s->value);
	hex_encode(s->key, 16, hex);
	return json_string(hex);
}

/*
 * Fills the page's rows (pids set) with every field. A database failure
 * is WEFT_EUNAVAIL, as every store failure of an export is: the job is
 * left to resume, not failed.
 */
static int gather(struct export_ctx *c, struct page *p)
{
	const struct export_spec *spec = p->spec;

	gather_state(c, p);
	if (p->ntypes && gather_identifiers(c, p))
		return WEFT_EUNAVAIL;
	for (size_t i = 0; i < p->n; i++) {
		struct row *r = &p->rows[i];

		for (size_t f = 0; f < spec->nfields; f++) {
			const struct export_field *fd = &spec->fields[f];
			struct slot *s = p->field_type[f] >= 0 ?
					 &p->slots[i * p->ntypes + (size_t)p->field_type[f]] : NULL;

			if (fd->kind == EXPORT_FIELD_IDENTIFIER && s && s->have) {
				r->values[f] = slot_json(s);
			} else if (fd->kind == EXPORT_FIELD_MATCH_KEY) {
				/* The trait if it gives one, else the identifier's stored value. */
				json_t *k = match_key(fd->name, json_string_value(r->values[f]));

				if (!k && s && s->have)
					k = match_key(fd->name, s->value);
				json_decref(r->values[f]);
				r->values[f] = k;
			}
		}
	}
	return 0;
}

/* ---- the rows' sources ---- */

/* The audience's index in the space, under the lock: -1 if it is gone (err says so). */
static long audience_at(const struct audience_space *as, const char *key, int64_t id,
			struct audience_info *info, char *err, size_t errlen)
{
	long i = as ? audience_space_audience_find(as, key) : -1;

	if (i >= 0) {
		audience_space_audience(as, (size_t)i, info);
		if (id && info->id != id)
			i = -1;
	}
	if (i < 0)
		snprintf(err, errlen, "the audience '%s' does not exist (any more)", key);
	return i;
}

/* Up to max members after *after into the page; false if the audience is gone. */
static bool members_page(struct export_ctx *c, const char *key, int64_t id, uint64_t *after,
			 struct page *p, size_t max, int64_t *size, char *err, size_t errlen)
{
	uint64_t *pids = xmalloc(xmul(max, sizeof(*pids)));
	struct audience_info info;
	const struct audience_space *as;
	long i;
	size_t n = 0;

	engine_read_begin(c->engine);
	as = engine_audiences(c->engine, c->workspace_id);
	if ((i = audience_at(as, key, id, &info, err, errlen)) >= 0) {
		n = audience_space_members(as, (size_t)i, *after, pids, max);
		if (size)
			*size = (int64_t)info.size;
	}
	engine_read_end(c->engine);
	for (size_t k = 0; k < n; k++) {
		struct row *r = &p->rows[k];

		r->pid = pids[k];
		r->change_id = r->at_us = 0;
		r->entered = true;
		r->cause[0] = '\0';
	}
	p->n = n;
	if (n)
		*after = pids[n - 1];
	free(pids);
	return i >= 0;
}

/* Up to max changes after *after (up to upto) into the page; *after moves past those read. */
static int changes_page(struct export_ctx *c, int64_t audience_id, int64_t *after, int64_t upto,
			struct page *p, size_t max, bool *end)
{
	struct store_change_row *ch = xmalloc(xmul(max, sizeof(*ch)));
	size_t n = 0;
	int64_t last = *after;
	int rc = store_export_changes(c->store, c->workspace_id, audience_id, *after, upto, max,
				      ch, &n, &last) ? WEFT_EUNAVAIL : 0;

	*end = !rc && last == *after;
	for (size_t k = 0; !rc && k < n; k++) {
		struct row *r = &p->rows[k];

		r->pid = (uint64_t)ch[k].profile_id;
		r->change_id = ch[k].change_id;
		r->at_us = ch[k].at_us;
		r->entered = ch[k].entered;
		memcpy(r->cause, ch[k].cause, sizeof(r->cause));
	}
	if (!rc) {
		p->n = n;
		*after = last;
	}
	free(ch);
	return rc;
}

/* ---- writing rows ---- */

static void csv_cell(struct buf *b, const char *s, size_t len)
{
	bool quote = false;

	for (size_t i = 0; i < len && !quote; i++)
		quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
	if (!quote) {
		buf_add(b, s, len);
		return;
	}
	buf_addc(b, '"');
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"')
			buf_addc(b, '"');
		buf_addc(b, s[i]);
	}
	buf_addc(b, '"');
}

static void csv_value(struct buf *b, const json_t *v)
{
	char *text;

	if (!v || json_is_null(v))
		return;
	if (json_is_string(v)) {
		csv_cell(b, json_string_value(v), json_string_length(v));
		return;
	}
	text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (text)
		csv_cell(b, text, strlen(text));
	free(text);
}

static void time_text(int64_t us, char out[40])
{
	ingest_format_time(us, out, 40);
}

static void write_header(struct buf *b, const struct export_spec *spec)
{
	if (spec->ndjson)
		return;
	buf_adds(b, spec->delta ? "profile_id,change,at,cause" : "profile_id");
	for (size_t f = 0; f < spec->nfields; f++) {
		buf_addc(b, ',');
		csv_cell(b, spec->fields[f].label, strlen(spec->fields[f].label));
	}
	buf_addc(b, '\n');
}

static void write_row(struct buf *b, const struct export_spec *spec, const struct row *r)
{
	char pid[32], at[40];

	snprintf(pid, sizeof(pid), "prf_%llu", (unsigned long long)r->pid);
	if (spec->delta)
		time_text(r->at_us, at);
	if (spec->ndjson) {
		json_t *o = json_pack("{ss}", "profile_id", pid);
		char *text;

		if (spec->delta) {
			json_object_set_new(o, "change", json_string(r->entered ? "entered" :
									       "exited"));
			json_object_set_new(o, "at", json_string(at));
			json_object_set_new(o, "cause", json_string(r->cause));
		}
		for (size_t f = 0; f < spec->nfields; f++)
			json_object_set(o, spec->fields[f].label,
					r->values[f] ? r->values[f] : json_null());
		text = json_dumps(o, JSON_COMPACT);
		buf_adds(b, text);
		buf_addc(b, '\n');
		free(text);
		json_decref(o);
		return;
	}
	buf_adds(b, pid);
	if (spec->delta) {
		buf_adds(b, r->entered ? ",entered," : ",exited,");
		buf_adds(b, at);
		buf_addc(b, ',');
		buf_adds(b, r->cause);
	}
	for (size_t f = 0; f < spec->nfields; f++) {
		buf_addc(b, ',');
		csv_value(b, r->values[f]);
	}
	buf_addc(b, '\n');
}

/* ---- files ---- */

struct file_out {
	int fd;
	char *tmp;
	int64_t bytes;
};

static int file_write(struct file_out *o, struct buf *b, char *err, size_t errlen)
{
	size_t off = 0;

	while (off < b->len) {
		ssize_t n = write(o->fd, b->data + off, b->len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "cannot write the export file: %s", strerror(errno));
			return WEFT_EIO;
		}
		off += (size_t)n;
	}
	o->bytes += (int64_t)b->len;
	buf_reset(b);
	return 0;
}

/* Syncs the folder holding path, so a rename in it survives a crash. */
static void sync_dir(const char *path)
{
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	int fd;

	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(fd);
		close(fd);
	}
	free(dir);
}

static void progress(struct export_ctx *c, int64_t done, int64_t total)
{
	if (c->progress)
		c->progress(c->arg, done, total);
}

static bool stopped(const struct export_ctx *c)
{
	return c->stop && *c->stop;
}

static void page_delay(const struct export_ctx *c)
{
	if (c->page_delay_ms > 0) {
		struct timespec ts = { c->page_delay_ms / 1000, (c->page_delay_ms % 1000) * 1000000L };

		nanosleep(&ts, NULL);
	}
}

/* Writes every row of the export to the open file, a page at a time. */
static int file_rows(struct export_ctx *c, const char *key, const struct export_spec *spec,
		     const struct store_export *job, struct file_out *o, int64_t *rows,
		     char *err, size_t errlen)
{
	struct page p;
	struct buf b = BUF_INIT;
	uint64_t after = 0;
	int64_t cafter = job ? job->from_change : 0, total = -1;
	int rc = 0;

	page_init(&p, spec, FILE_PAGE);
	write_header(&b, spec);
	*rows = 0;
	if (spec->delta)
		total = job->rows_total;
	for (;;) {
		bool end = false;

		if (stopped(c)) {
			rc = WEFT_ESHUTDOWN;
			break;
		}
		if (spec->delta) {
			if ((rc = changes_page(c, job->audience_id, &cafter, job->to_change, &p,
					       FILE_PAGE, &end)))
				break;
		} else if (!members_page(c, key, job ? job->audience_id : 0, &after, &p, FILE_PAGE,
					 total < 0 ? &total : NULL, err, errlen)) {
			rc = WEFT_ENOTFOUND;
			break;
		} else {
			end = p.n == 0;
		}
		if (end)
			break;
		if (p.n && (rc = gather(c, &p)))
			break;
		for (size_t i = 0; i < p.n; i++)
			write_row(&b, spec, &p.rows[i]);
		*rows += (int64_t)p.n;
		page_clear(&p);
		if ((rc = file_write(o, &b, err, errlen)))
			break;
		progress(c, *rows, total > *rows ? total : *rows);
		page_delay(c);
	}
	if (!rc)
		rc = file_write(o, &b, err, errlen);
	page_release(&p, FILE_PAGE);
	buf_release(&b);
	return rc;
}

int export_to_file(struct export_ctx *c, const char *audience_key,
		   const struct export_spec *spec, const struct store_export *job, const char *path,
		   int64_t *rows, int64_t *bytes, char *err, size_t errlen)
{
	size_t len = strlen(path) + 8;
	struct file_out o = { .fd = -1, .tmp = xmalloc(len) };
	int rc;

	*rows = *bytes = 0;
	snprintf(o.tmp, len, "%s.part", path);
	o.fd = open(o.tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (o.fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", o.tmp, strerror(errno));
		free(o.tmp);
		return WEFT_EIO;
	}
	rc = file_rows(c, audience_key, spec, job, &o, rows, err, errlen);
	if (!rc && fsync(o.fd)) {
		snprintf(err, errlen, "cannot sync the export file: %s", strerror(errno));
		rc = WEFT_EIO;
	}
	if (close(o.fd) && !rc) {
		snprintf(err, errlen, "cannot write the export file: %s", strerror(errno));
		rc = WEFT_EIO;
	}
	if (!rc && rename(o.tmp, path)) {
		snprintf(err, errlen, "cannot rename %s: %s", o.tmp, strerror(errno));
		rc = WEFT_EIO;
	}
	if (rc)
		unlink(o.tmp);
	else
		sync_dir(path);
	*bytes = o.bytes;
	free(o.tmp);
	return rc;
}

/* ---- webhooks ---- */

/* A stable messageId: the same message always gets the same one. */
static void message_id(char out[40], const char *what, int64_t a, int64_t b, const char *c,
		       int64_t d)
{
	struct buf k = BUF_INIT;
	XXH128_hash_t h;

	buf_printf(&k, "%s\n%lld\n%lld\n%s\n%lld", what, (long long)a, (long long)b, c,
		   (long long)d);
	h = XXH3_128bits(k.data, k.len);
	snprintf(out, 40, "weft-%016llx%016llx", (unsigned long long)h.high64,
		 (unsigned long long)h.low64);
	buf_release(&k);
}

static json_t *message(const struct export_spec *spec, const struct store_export *job,
		       const struct page *p, size_t i)
{
	const struct row *r = &p->rows[i];
	const struct slot *user = &p->slots[i * p->ntypes + (size_t)p->user_type];
	const struct slot *anon = &p->slots[i * p->ntypes + (size_t)p->anon_type];
	bool entered = spec->delta ? r->entered : true;
	char mid[40], at[40], pid[32], aid[32];
	json_t *m, *vals;

	snprintf(pid, sizeof(pid), "prf_%llu", (unsigned long long)r->pid);
	snprintf(aid, sizeof(aid), "aud_%lld", (long long)job->audience_id);
	if (spec->delta)
		message_id(mid, "change", job->workspace_id, job->audience_id,
			   job->destination_key, r->change_id);
	else
		message_id(mid, "full", job->workspace_id, job->export_id, "", (int64_t)r->pid);
	time_text(spec->delta ? r->at_us : (int64_t)(job->started_at * 1e6), at);
	vals = json_pack("{sb ss}", job->audience_key, entered, "profile_id", pid);
	if (spec->track)
		json_object_set_new(vals, "audience_key", json_string(job->audience_key));
	for (size_t f = 0; f < spec->nfields; f++)
		json_object_set(vals, spec->fields[f].label,
				r->values[f] ? r->values[f] : json_null());
	m = json_pack("{ss ss ss s{s{ss ss ss} s{ss}}}", "type", spec->track ? "track" : "identify",
		      "messageId", mid, "timestamp", at, "context", "personas",
		      "computation_class", "audience", "computation_key", job->audience_key,
		      "computation_id", aid, "library", "name", "weft");
	if (spec->track)
		json_object_set_new(m, "event", json_string(entered ? "Audience Entered" :
								   "Audience Exited"));
	json_object_set_new(m, spec->track ? "properties" : "traits", vals);
	/* As the identifier fields show them; a profile with neither goes by its id. */
	if (user->have)
		json_object_set_new(m, "userId", slot_json(user));
	if (anon->have)
		json_object_set_new(m, "anonymousId", slot_json(anon));
	else if (!user->have)
		json_object_set_new(m, "anonymousId", json_string(pid));
	return m;
}

static int post_page(struct export_ctx *c, struct webhook *w, const struct export_spec *spec,
		     const struct store_export *job, const struct page *p, char *err,
		     size_t errlen)
{
	json_t *batch = json_array(), *body;
	char sent[40], *text;
	int rc, attempts;

	for (size_t i = 0; i < p->n; i++)
		json_array_append_new(batch, message(spec, job, p, i));
	time_text(engine_clock(c->engine), sent);
	body = json_pack("{so ss}", "batch", batch, "sentAt", sent);
	text = json_dumps(body, JSON_COMPACT);
	rc = webhook_post(w, text, strlen(text), c->retry_base_ms, c->max_attempts, &attempts,
			  err, errlen);
	free(text);
	json_decref(body);
	return rc;
}

/* Posts the job's rows from its cursor on, recording each batch delivered. */
static int webhook_rows(struct export_ctx *c, const struct export_spec *spec,
			struct store_export *job, char *err, size_t errlen)
{
	struct webhook *w = webhook_new(spec->url, c->stop);
	struct page p;
	uint64_t after = (uint64_t)job->cursor;
	int64_t cafter = job->cursor, rows = job->rows_done, total = job->rows_total;
	int rc = 0;

	if (!w) {
		snprintf(err, errlen, "libcurl could not start");
		return WEFT_EIO;
	}
	page_init(&p, spec, spec->batch_size);
	for (;;) {
		bool end = false;
		int64_t cursor;

		if (stopped(c)) {
			rc = WEFT_ESHUTDOWN;
			break;
		}
		if (spec->delta) {
			if ((rc = changes_page(c, job->audience_id, &cafter, job->to_change, &p,
					       spec->batch_size, &end)))
				break;
			cursor = cafter;
		} else {
			int64_t size = -1;

			if (!members_page(c, job->audience_key, job->audience_id, &after, &p,
					  spec->batch_size, total < 0 ? &size : NULL, err, errlen)) {
				rc = WEFT_ENOTFOUND;
				break;
			}
			if (total < 0)
				total = rows + size;
			end = p.n == 0;
			cursor = (int64_t)after;
		}
		if (end)
			break;
		if (p.n && (rc = gather(c, &p)))
			break;
		if (p.n && (rc = post_page(c, w, spec, job, &p, err, errlen)))
			break;
		rows += (int64_t)p.n;
		page_clear(&p);
		if (store_export_progress(c->store, job, cursor, rows, total > rows ? total : rows)) {
			rc = WEFT_EUNAVAIL;
			break;
		}
		job->cursor = cursor;
		job->rows_done = rows;
		progress(c, rows, total > rows ? total : rows);
		page_delay(c);
	}
	page_release(&p, spec->batch_size);
	webhook_free(w);
	job->rows_done = rows;
	job->rows_total = total > rows ? total : rows;
	return rc;
}

/* ---- jobs ---- */

void export_file_name(const struct store_export *x, char *out, size_t len)
{
	snprintf(out, len, "exp_%lld.%s", (long long)x->export_id, x->format);
}

int export_job_run(struct export_ctx *c, struct store_export *x, const char *dir)
{
	struct export_spec spec;
	char err[512] = "", name[64], *path = NULL;
	int64_t rows = 0, bytes = -1;
	bool webhook;
	int rc;

	if (export_spec_of(x, &spec, err, sizeof(err)))
		return store_export_finish(c->store, x, false, err, NULL, -1, 0, 0);
	if ((rc = store_export_start(c->store, x))) {
		export_spec_release(&spec);
		return rc;
	}
	log_info("export_started", "workspace=%lld export=%lld audience=%s mode=%s destination=%s "
		 "attempt=%d", (long long)x->workspace_id, (long long)x->export_id, x->audience_key,
		 x->mode, spec.webhook ? "webhook" : "file", x->attempts);
	c->workspace_id = x->workspace_id;
	webhook = spec.webhook;
	if (webhook) {
		rc = webhook_rows(c, &spec, x, err, sizeof(err));
		rows = x->rows_done;
	} else {
		size_t len;

		export_file_name(x, name, sizeof(name));
		len = strlen(dir) + strlen(name) + 2;
		path = xmalloc(len);
		snprintf(path, len, "%s/%s", dir, name);
		rc = export_to_file(c, x->audience_key, &spec, x, path, &rows, &bytes, err,
				    sizeof(err));
	}
	export_spec_release(&spec);
	free(path);
	if (rc == WEFT_ESHUTDOWN || rc == WEFT_EUNAVAIL) {
		log_warn("export_interrupted", "workspace=%lld export=%lld error=%s: it resumes",
			 (long long)x->workspace_id, (long long)x->export_id,
			 rc == WEFT_ESHUTDOWN ? "stopping" : weft_strerror(rc));
		return rc;
	}
	if (rc)
		log_warn("export_failed", "workspace=%lld export=%lld error=\"%s\"",
			 (long long)x->workspace_id, (long long)x->export_id, err);
	else
		log_info("export_done", "workspace=%lld export=%lld rows=%lld bytes=%lld",
			 (long long)x->workspace_id, (long long)x->export_id, (long long)rows,
			 (long long)bytes);
	return store_export_finish(c->store, x, rc == 0, rc ? err : NULL,
				   !rc && !webhook ? name : NULL, rc ? -1 : bytes, rows,
				   rc ? (x->rows_total > rows ? x->rows_total : rows) : rows);
}
