/*
 * store: Weft's only door to PostgreSQL. Every other module reaches the
 * database through these functions; none includes libpq-fe.h.
 *
 * A struct store is one connection owned by one thread at a time. It does
 * not reconnect behind the caller's back: an action that finds the
 * connection broken returns WEFT_EUNAVAIL, and the owner decides when to
 * call store_reconnect() (the committer backs off; a CLI command fails).
 *
 * The event log is written with binary COPY. Callers build tuples with the
 * store_tuple_* encoders (cheap, no database needed, any thread), and the
 * committer hands whole batches to store_log_commit(). The engine reads
 * the log back the same way (store_log_read(), store_field_* decoders)
 * and saves its state as pages beside a checkpoint.
 */
#ifndef STORE_STORE_H
#define STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct store;

/*
 * Connects to url (a libpq connection string or URI). On failure returns
 * WEFT_EUNAVAIL and logs why, with the password removed.
 */
int store_connect(const char *url, struct store **out);
void store_free(struct store *s);
/* Drops and re-opens the connection; 0 or WEFT_EUNAVAIL. */
int store_reconnect(struct store *s);
/* A cheap round trip (SELECT 1); 0 or WEFT_EUNAVAIL. */
int store_ping(struct store *s);

/* ---- schema ---- */

/* The highest migration version this binary carries. */
int store_schema_known_version(void);
/* The version recorded in the database, 0 for an empty database. */
int store_schema_version(struct store *s, int *version);
/*
 * Applies every migration newer than the database's, each in its own
 * transaction, under an advisory lock so two migrators never race.
 * Refuses (WEFT_ESCHEMA) a database newer than this binary.
 */
int store_migrate(struct store *s);
/*
 * 0 when the database is at exactly the version this binary knows;
 * WEFT_ESCHEMA (logged with what to do) when it is older or newer.
 */
int store_schema_check(struct store *s);

/* ---- workspaces and API keys ---- */

enum store_role { STORE_ROLE_WRITE, STORE_ROLE_READ, STORE_ROLE_ADMIN };

const char *store_role_name(enum store_role role);
int store_role_parse(const char *name, enum store_role *role);

/* Finds the workspace called name, creating it when create is true. */
int store_workspace_get(struct store *s, const char *name, bool create,
			int64_t *workspace_id, bool *created);

/* Stores a key's SHA-256 (never the key) and a display prefix. */
int store_key_insert(struct store *s, int64_t workspace_id,
		     enum store_role role, const uint8_t hash[32],
		     const char *prefix, int64_t *key_id);
/* Marks a key revoked; WEFT_ENOTFOUND if there is no such active key. */
int store_key_revoke(struct store *s, int64_t key_id);

struct store_key {
	int64_t key_id;
	int64_t workspace_id;
	enum store_role role;
	uint8_t hash[32];
	char prefix[16];
	char workspace[64];	/* the workspace's name */
	char created_at[40];	/* ISO-8601, for listings */
	bool revoked;
};

/*
 * Loads keys (only active ones unless all), optionally of one workspace
 * (NULL for every workspace). *keys is a malloc'd array the caller frees.
 */
int store_keys_load(struct store *s, const char *workspace, bool all,
		    struct store_key **keys, size_t *n);

/* Loads every workspace's privacy policy JSON; see store_policy_row. */
struct store_policy_row {
	int64_t workspace_id;
	char *policy_json;	/* malloc'd */
};
int store_policies_load(struct store *s, struct store_policy_row **rows,
			size_t *n);
void store_policy_rows_free(struct store_policy_row *rows, size_t n);
/* Saves a workspace's policy (replacing the previous one). */
int store_policy_save(struct store *s, int64_t workspace_id,
		      const char *policy_json);

/* ---- binary COPY tuples ---- */

/*
 * Encoders for PostgreSQL's binary COPY format. A tuple is
 * store_tuple_begin() followed by exactly that many field encoders.
 * Timestamps are microseconds since the Unix epoch (UTC).
 */
void store_tuple_begin(struct buf *b, int nfields);
void store_tuple_null(struct buf *b);
void store_tuple_int4(struct buf *b, int32_t v);
void store_tuple_int8(struct buf *b, int64_t v);
void store_tuple_text(struct buf *b, const char *s, size_t n);
void store_tuple_jsonb(struct buf *b, const char *json, size_t n);
void store_tuple_timestamptz(struct buf *b, int64_t unix_us);
/*
 * A jsonb field whose text is appended to b by the caller between the two
 * calls (a JSON writer streaming into the buffer): begin returns where the
 * field starts, end writes its length there and returns the JSON's length.
 */
size_t store_tuple_jsonb_begin(struct buf *b);
size_t store_tuple_jsonb_end(struct buf *b, size_t at);
/* Writes an int8 into a tuple already built, at a byte offset. */
void store_tuple_patch_int8(struct buf *b, size_t offset, int64_t v);

/* ---- the event log ---- */

/*
 * The column order of an event tuple (STORE_EVENT_FIELDS fields):
 * workspace_id, seq, message_id, type, event, received_at, sent_at,
 * original_timestamp, timestamp, key_id, identifiers, payload.
 * The seq field's value is written by the committer; STORE_EVENT_SEQ_OFFSET
 * is where its 8 bytes start, counted from the tuple's first byte.
 */
#define STORE_EVENT_FIELDS 12
#define STORE_EVENT_SEQ_OFFSET (2 + 4 + 8 + 4)

/*
 * The column order of a rejected-event tuple (STORE_REJECTED_FIELDS):
 * workspace_id, received_at, message_id, batch_index, code, message,
 * payload, identifiers (jsonb as in an event tuple, or NULL).
 */
#define STORE_REJECTED_FIELDS 8

/* One event in a commit batch: its tuple inside a caller's buffer. */
struct store_log_row {
	const char *tuple;	/* not copied */
	size_t len;
	int64_t workspace_id;
	const char *message_id;	/* NUL-terminated; not copied */
	bool stored;		/* out: true if new, false if a duplicate */
	int64_t seq;		/* out: the sequence number it was given */
};

/*
 * Makes this connection the log's only writer (a session advisory lock):
 * 0, or WEFT_ECONFLICT while another process holds it. Sequence numbers
 * are only in commit order if one committer hands them out.
 */
int store_log_lock(struct store *s);

/* The highest sequence number ever handed out (log_head). */
int store_log_last_seq(struct store *s, int64_t *seq);

/*
 * Commits a batch in one transaction: the events whose (workspace,
 * messageId) are not stored yet (duplicates inside the batch count once),
 * numbered from *last_seq + 1 in batch order, and the rejected-event
 * tuples. On success *last_seq is advanced and each row's stored and seq
 * are set. Nothing is written on failure (WEFT_EUNAVAIL when the
 * connection broke, whose outcome is unknown; WEFT_EIO otherwise).
 */
int store_log_commit(struct store *s, struct store_log_row *rows, size_t n,
		     const struct buf *rejected, size_t nrejected,
		     int64_t *last_seq);

/*
 * Reading the log back (the engine's replay). The readers below stream
 * with COPY and cancel it when stopped early; call them outside a
 * transaction.
 */

/* Every workspace id, ascending (*ids malloc'd, caller frees). */
int store_workspace_ids(struct store *s, int64_t **ids, size_t *n);
/*
 * The highest seq of any stored event, or 0. Found per workspace through
 * the primary key, never by scanning the log. Unlike store_log_last_seq()
 * it ignores log_head: this is what can be read, not what was handed out.
 */
int store_log_head(struct store *s, int64_t *seq);
/*
 * Streams the events of workspace_id with after < seq <= upto, in seq
 * order, as binary COPY tuples in exactly the committer's format (the
 * STORE_EVENT_FIELDS columns in the order above, same types; jsonb comes
 * back as PostgreSQL prints it, not byte for byte as written). fn gets
 * each tuple from its 16-bit field count on, without the stream's header
 * or trailer, valid during the call only. A nonzero return from fn stops
 * the read, leaves the connection usable, and is returned.
 */
int store_log_read(struct store *s, int64_t workspace_id, int64_t after,
		   int64_t upto,
		   int (*fn)(void *arg, const char *tuple, size_t len),
		   void *arg);

/* One field of a binary tuple: it points into the tuple, not copied. */
/* Seqs per query of store_log_read_seqs. */
#define STORE_READ_SEQS_CHUNK 10000

/*
 * Streams the events of workspace_id whose seq is in seqs[0..n), in seq
 * order within each chunk of STORE_READ_SEQS_CHUNK (ascending overall if
 * seqs is), as store_log_read() does. Missing seqs are skipped.
 */
int store_log_read_seqs(struct store *s, int64_t workspace_id, const int64_t *seqs, size_t n,
			int (*fn)(void *arg, const char *tuple, size_t len), void *arg);

struct store_field {
	const char *data;
	int32_t len;		/* -1: NULL (data is NULL) */
};

/*
 * Splits the binary tuple tuple[0..len) into out[0..max); returns the
 * field count, or WEFT_EINVAL for a malformed tuple (a length running
 * past len, bytes left over after the last field, more than max fields).
 */
int store_tuple_fields(const char *tuple, size_t len, struct store_field *out,
		       int max);
/*
 * Decoders of one field; the caller checks first that the field is not
 * NULL and has the type's width (4 or 8 bytes), which they assert.
 */
int32_t store_field_int4(const struct store_field *f);
int64_t store_field_int8(const struct store_field *f);
/* A timestamptz as microseconds since the Unix epoch (UTC). */
int64_t store_field_timestamptz(const struct store_field *f);
/*
 * jsonb in binary COPY is a version byte 1 then the JSON text: sets *json
 * and *n to the text (inside the tuple, not NUL-terminated); WEFT_EINVAL
 * for a NULL field or another version.
 */
int store_field_jsonb(const struct store_field *f, const char **json,
		      size_t *n);

/* ---- the engine's state ---- */

/*
 * The engine saves what it derived from the log as pages: opaque byte
 * strings numbered 0, 1, 2... in sections the engine numbers, per
 * workspace. A save writes only the pages that changed, in the same
 * transaction as the checkpoint (the last seq they include), so a restart
 * loads pages and checkpoint that agree and replays the log after it.
 */
#define STORE_PAGE_BYTES 65536

struct store_page {
	int64_t workspace_id;
	int32_t section;
	int32_t page;
	const void *data;	/* len bytes, 0 < len <= STORE_PAGE_BYTES */
	size_t len;
};

struct store_section_size {
	int64_t workspace_id;
	int32_t section;
	int32_t pages;		/* pages at or past this number are deleted */
};

/*
 * Makes this connection the engine's only writer (a session advisory
 * lock, another key than store_log_lock's): 0, or WEFT_ECONFLICT while
 * another session holds it.
 */
int store_engine_lock(struct store *s);
/* The checkpoint: *seq and *format, both 0 when none was ever saved. */
int store_engine_checkpoint(struct store *s, int64_t *seq, int32_t *format);
/*
 * Calls fn for every page of workspace_id (0: of every workspace), in
 * (workspace, section, page) order; p->data is valid during the call
 * only. Streams: never holds more than one page. A nonzero return from fn
 * stops the walk, leaves the connection usable, and is returned. A stored
 * page of a bad size is WEFT_EIO.
 */
int store_engine_load(struct store *s, int64_t workspace_id,
		      int (*fn)(void *arg, const struct store_page *p),
		      void *arg);
/*
 * In one transaction: deletes every page of the workspaces in
 * clear_ws[0..nclear), writes pages[0..n) (replacing a stored page with
 * the same (workspace, section, page); pages must not repeat one),
 * deletes the pages at or past sizes[i].pages of each (workspace,
 * section) listed, and, if seq >= 0, sets the checkpoint to (seq, format,
 * now()). The pages are not copied and may go once the call returns.
 * Nothing is written on failure: WEFT_EIO, or WEFT_EUNAVAIL when the
 * connection broke (if it broke during COMMIT the outcome is unknown;
 * store_engine_checkpoint() tells after reconnecting).
 */
/* An audience entry or exit (audience_changes), written with a save. */
struct store_audience_change {
	int64_t workspace_id, audience_id, profile_id;
	int64_t at_us;			/* microseconds since 1970 */
	int64_t seq;			/* 0: none */
	bool entered;
	const char *cause;
};

/* A profile whose audience changes a save deletes (it was erased). */
struct store_profile_ref {
	int64_t workspace_id, profile_id;
};

/*
 * The save also inserts changes (nch of them) into audience_changes and
 * deletes those of the erased profiles (after the insert), in the same
 * transaction as the pages and the checkpoint.
 */
int store_engine_save(struct store *s, const int64_t *clear_ws, size_t nclear,
		      const struct store_page *pages, size_t n,
		      const struct store_section_size *sizes, size_t nsizes,
		      int64_t seq, int32_t format, int64_t erased,
		      const struct store_audience_change *ch, size_t nch,
		      const struct store_profile_ref *erased_profiles, size_t nerased);

/* ---- audiences and computed traits (store/audiences.c) ---- */

enum store_def_kind { STORE_DEF_COMPUTED_TRAIT, STORE_DEF_AUDIENCE };

struct store_def {
	int64_t workspace_id, id;
	enum store_def_kind kind;
	char *key, *name, *definition;	/* name: audiences only ("" otherwise) */
	double created_at, updated_at;	/* seconds since 1970 */
};

/* Every workspace's definitions, computed traits first, each by id (malloc'd, *n). */
int store_defs_load(struct store *s, struct store_def **out, size_t *n);
void store_defs_free(struct store_def *d, size_t n);
/*
 * Creates (create) or replaces a definition by key. *id gets its id.
 * WEFT_ECONFLICT: create, and the key exists; WEFT_ENOTFOUND: replace,
 * and it does not.
 */
int store_def_put(struct store *s, int64_t workspace_id, enum store_def_kind kind,
		  const char *key, const char *name, const char *definition, bool create,
		  int64_t *id);
/* Deletes one by key: 0 or WEFT_ENOTFOUND. An audience's changes go with it. */
int store_def_delete(struct store *s, int64_t workspace_id, enum store_def_kind kind,
		     const char *key);
/* When the definition was created and last changed (seconds since 1970). */
int store_def_times(struct store *s, int64_t workspace_id, enum store_def_kind kind,
		    const char *key, double *created_at, double *updated_at);

/* ---- audience exports (store/exports.c) ---- */

/* An export job (the exports table); strings malloc'd (store_export_release). */
struct store_export {
	int64_t workspace_id, export_id, audience_id, key_id;
	char audience_key[72];
	char format[8];			/* csv, ndjson */
	char mode[8];			/* full, delta */
	char status[8];			/* queued, running, done, failed */
	char *fields_json;		/* a JSON array of field names */
	char *destination_json;		/* the destination object as stored */
	char *destination_key;		/* "file" or "webhook <url>": what a delta cursor follows */
	int64_t rows_done;
	int64_t rows_total;		/* -1: not known yet */
	int64_t from_change, to_change;	/* delta: the range (from, to] (-1 before the start) */
	int64_t cursor;			/* delivered up to here (profile id or change id) */
	int attempts;			/* starts, counting resumes */
	char *error;			/* NULL: none */
	char *file_name;		/* the finished file's name in the exports folder; NULL: none */
	int64_t file_bytes;		/* -1: no file */
	double created_at, started_at, finished_at;	/* seconds since 1970; 0: not yet */
};

void store_export_release(struct store_export *x);
/* Queues a job from x's workspace, audience, format, mode, fields, destination and key: *id. */
int store_export_create(struct store *s, const struct store_export *x, int64_t *id);
/* One job: 0 or WEFT_ENOTFOUND. */
int store_export_get(struct store *s, int64_t workspace_id, int64_t export_id,
		     struct store_export *out);
/* The oldest job queued or running (a restart interrupted it): 0 or WEFT_ENOTFOUND. */
int store_export_next(struct store *s, struct store_export *out);
/*
 * Marks x running and counts the attempt. A delta job starting for the
 * first time fixes its range: from the destination's cursor (0 when it has
 * none) to the audience's newest change, and its total (the changes in it
 * less the exits of merged profiles, which are not sent). x is updated.
 */
int store_export_start(struct store *s, struct store_export *x);
/*
 * Records that everything up to cursor was delivered (rows_done rows in
 * all, of rows_total; -1: unknown); for a delta job to a webhook, the destination's cursor moves with
 * it, in the same statement.
 */
int store_export_progress(struct store *s, const struct store_export *x, int64_t cursor,
			  int64_t rows_done, int64_t rows_total);
/*
 * Ends x: done (a delta job's destination cursor moves to its to_change,
 * in the same statement) or failed with error. file_name, file_bytes
 * (-1: none) and rows_total as they ended.
 */
int store_export_finish(struct store *s, const struct store_export *x, bool done,
			const char *error, const char *file_name, int64_t file_bytes,
			int64_t rows_done, int64_t rows_total);

/* An audience change as a delta export reads it. */
struct store_change_row {
	int64_t change_id, profile_id, at_us;
	bool entered;
	char cause[16];
};

/*
 * Up to limit changes of the audience with after < change_id <= upto, in
 * order, into out (which has room for limit): *n. The exits of merged
 * profiles are left out (the survivor's own rows say where it stands),
 * but *last is the last change_id looked at, so a cursor passes them.
 */
int store_export_changes(struct store *s, int64_t workspace_id, int64_t audience_id,
			 int64_t after, int64_t upto, size_t limit, struct store_change_row *out,
			 size_t *n, int64_t *last);

/* ---- identity configuration ---- */

/* A workspace's identity rules, the JSON as PostgreSQL prints jsonb. */
struct store_rules_row {
	int64_t workspace_id;
	char *json;		/* malloc'd */
};

/* Loads every workspace's rules; free with store_rules_rows_free(). */
int store_identity_rules_load(struct store *s, struct store_rules_row **rows,
			      size_t *n);
void store_rules_rows_free(struct store_rules_row *rows, size_t n);
/* Saves a workspace's rules (replacing the previous ones). */
int store_identity_rules_save(struct store *s, int64_t workspace_id,
			      const char *json);
/*
 * Adds (type, key) to the workspace's blocked identifiers (no error if it
 * is there already); key_id is the API key that asked, 0 for none.
 */
int store_identity_blocked_add(struct store *s, int64_t workspace_id,
			       const char *type, const uint8_t key[16],
			       int64_t key_id);
/*
 * Calls fn for every blocked identifier of every workspace; type and key
 * are valid during the call only. A nonzero return from fn stops the walk
 * and is returned.
 */
int store_identity_blocked_load(struct store *s,
				int (*fn)(void *arg, int64_t workspace_id,
					  const char *type,
					  const uint8_t key[16]),
				void *arg);
/*
 * For explanations: calls fn once for each of the events seqs[0..n) of
 * workspace_id that exists (in any order) with its messageId and its
 * identifiers JSON text, both valid during the call only. A nonzero
 * return from fn stops and is returned.
 */
int store_events_brief(struct store *s, int64_t workspace_id,
		       const int64_t *seqs, size_t n,
		       int (*fn)(void *arg, int64_t seq, const char *message_id,
				 const char *identifiers_json),
		       void *arg);

/* ---- the suppression list (store/suppress.c) ---- */

/*
 * Calls fn for every suppressed identifier key of every workspace, in
 * (workspace, key) order; key is valid during the call only. A nonzero
 * return from fn stops the walk and is returned.
 */
int store_suppressed_keys_load(struct store *s,
			       int (*fn)(void *arg, int64_t workspace_id,
					 const uint8_t key[16]),
			       void *arg);

/* What a workspace's list looks like, to notice a change without reading it. */
struct store_suppressed_stamp {
	int64_t workspace_id;
	int64_t keys;		/* how many */
	int64_t latest_us;	/* the newest created_at, Unix microseconds */
};

/*
 * The stamp of every workspace that has suppressed keys, by workspace id
 * (*stamps malloc'd, caller frees). One aggregate over the list's rows.
 */
int store_suppressed_keys_stamps(struct store *s,
				 struct store_suppressed_stamp **stamps,
				 size_t *n);

/* ---- erasures (docs/profiles.md#erase) ---- */

/* What an erasure covers. */
struct store_erasure_scope {
	const uint8_t (*keys)[16];	/* the person's identifier keys */
	size_t nkeys;
	const int64_t *seqs;		/* the events its profile held (native byte order) */
	size_t nseqs;
	int64_t applied_seq;		/* the engine had applied every event up to here */
	int64_t upto_seq;		/* and every event up to here was committed */
};

/*
 * Starts an erasure's row (status running) with its scope, kept until it is
 * done so that a restart can finish it, and with suppress puts the keys
 * (their types in types[]) on the suppression list, in one transaction.
 * Sets *erasure_id.
 */
int store_erasure_create(struct store *s, int64_t workspace_id, int64_t key_id, bool suppress,
			 const struct store_erasure_scope *scope, const char *const *types,
			 int64_t *erasure_id);
/* Puts keys (with their types) on the suppression list, in one transaction. */
int store_suppressed_add(struct store *s, int64_t workspace_id, const uint8_t (*keys)[16],
			 const char *const *types, size_t n, int64_t erasure_id);

struct store_erasure_counts {
	int64_t events_deleted, events_scrubbed, rejected_deleted;
};

/*
 * In one transaction: raises log_head to the last seq; deletes the
 * person's events (those its profile held, and those committed before the
 * erasure but not yet applied that carry its keys); takes its keys out of
 * other people's events up to the erasure; deletes the rejected events
 * received before it that carry its keys. WEFT_ENOTFOUND if the erasure
 * has no scope left (done).
 */
int store_erasure_delete_rows(struct store *s, int64_t workspace_id, int64_t erasure_id,
			      struct store_erasure_counts *out);
/*
 * Marks the erasure done (error NULL; its scope is dropped) or failed with
 * error. Done waits for the engine's state saved after the erasure began:
 * until then WEFT_ECONFLICT, and the erasure stays running.
 */
int store_erasure_finish(struct store *s, int64_t workspace_id, int64_t erasure_id,
			 const struct store_erasure_counts *c, const char *error);

struct store_erasure {
	int64_t erasure_id, key_id;
	char status[16];
	bool suppress;
	double requested_at, finished_at;	/* Unix seconds; finished 0 while running */
	int64_t profiles, identifiers, events_deleted, events_scrubbed, rejected_deleted;
	char error[256];
};

/* WEFT_ENOTFOUND if the workspace has no such erasure. */
int store_erasure_get(struct store *s, int64_t workspace_id, int64_t erasure_id,
		      struct store_erasure *out);
/* Calls fn for every erasure not done yet, with its scope (valid during the call). */
int store_erasures_pending(struct store *s,
			   int (*fn)(void *arg, int64_t workspace_id, int64_t erasure_id,
				     const struct store_erasure_scope *scope),
			   void *arg);

/* ---- a profile's events (store/profile_read.c, docs/profiles.md) ---- */

/* One event as the profile endpoints read it; the strings are valid during the call only. */
struct store_event_row {
	int64_t seq;
	int64_t key_id;			/* the write key that sent it; 0 if unknown */
	int64_t ts_us;			/* the corrected timestamp */
	const char *message_id;
	const char *type;		/* "track", "identify", ... */
	const char *event;		/* a track's event, a page's or screen's name; NULL if none */
	const char *identifiers_json;
	const char *payload_json;	/* NULL unless the query asked for it */
};

/* Which events store_events_select() returns. */
struct store_event_query {
	bool descending;		/* seqs are given newest first, and rows come so */
	bool payload;			/* read payload_json too */
	const char *type;		/* only this type ("group"); NULL: any */
	int64_t start_us, end_us;	/* start_us <= timestamp < end_us; INT64_MIN, INT64_MAX: none */
	const char *const *include;	/* only events with one of these names; NULL: any */
	size_t ninclude;
	const char *const *exclude;	/* no event with one of these names; NULL: none */
	size_t nexclude;
	size_t limit;			/* at most this many rows; 0: no limit */
};

/*
 * Calls fn for each event of workspace_id among seqs[0..n) (sorted as
 * q->descending says) that q selects, in that order, up to q->limit. An
 * event's name is a track's event, else its type ("identify", "page",
 * ...). Reads STORE_READ_SEQS_CHUNK seqs per query and stops once the
 * limit is reached. Missing seqs are skipped. A nonzero return from fn
 * stops and is returned.
 */
int store_events_select(struct store *s, int64_t workspace_id, const int64_t *seqs, size_t n,
			const struct store_event_query *q,
			int (*fn)(void *arg, const struct store_event_row *row), void *arg);


#endif
