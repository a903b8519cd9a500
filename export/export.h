/*
 * Audience exports (docs/audiences.md, "Exports"): what a job asks for,
 * how its rows are gathered from the engine's state and the log, and the
 * two destinations, a file in the data folder and a webhook taking
 * Segment-format batches. The worker (worker.c) runs queued jobs one at a
 * time on its own thread and connection, so a slow or failing destination
 * never holds up ingestion: it reads the engine's state under the read
 * lock a page at a time, like any other reader.
 *
 * Sits between api/ and engine/: api -> export -> engine -> audiences -> store.
 */
#ifndef EXPORT_EXPORT_H
#define EXPORT_EXPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct engine;
struct store;
struct store_export;

/* Longest url a webhook destination takes, in bytes. */
#define EXPORT_URL_MAX 2048
/* At most this many fields per job. */
#define EXPORT_FIELDS_MAX 64

enum export_field_kind {
	EXPORT_FIELD_IDENTIFIER,	/* identifier:<type>: its value as stored */
	EXPORT_FIELD_TRAIT,		/* trait:<name> */
	EXPORT_FIELD_COMPUTED,		/* computed:<key>: a computed trait's value */
	EXPORT_FIELD_MATCH_KEY,		/* match_key:email|phone: SHA-256 of the normalised value */
};

struct export_field {
	enum export_field_kind kind;
	char *name;		/* after the prefix: the type, trait name or key */
	char *label;		/* its column and member name in what is written */
};

/* A job's request, checked. */
struct export_spec {
	bool ndjson;		/* else csv */
	bool delta;		/* else full */
	struct export_field *fields;
	size_t nfields;
	bool webhook;		/* else a file */
	char *url;		/* webhook */
	bool track;		/* webhook: track "Audience Entered/Exited", else identify */
	size_t batch_size;	/* webhook: messages per request */
};

/*
 * Checks a POST /v1/audiences/{key}/exports body (format, mode, fields,
 * destination) into out, and gives the canonical JSON to store for the
 * fields and the destination and the destination's key for delta
 * cursors (all malloc'd). WEFT_EINVAL with err naming the member at fault.
 */
int export_spec_parse(const json_t *body, struct export_spec *out, char **fields_json,
		      char **destination_json, char **destination_key, char *err, size_t errlen);
/* The spec of a stored job (its format, mode, fields and destination JSON). */
int export_spec_of(const struct store_export *x, struct export_spec *out, char *err,
		   size_t errlen);
void export_spec_release(struct export_spec *s);

/* ---- running one export ---- */

struct export_ctx {
	struct engine *engine;
	struct store *store;		/* reads the log and the changes; records progress */
	int64_t workspace_id;
	/* Called after each page written or batch delivered; NULL: none. */
	void (*progress)(void *arg, int64_t rows_done, int64_t rows_total);
	void *arg;
	const volatile bool *stop;	/* set: give up at the next page (NULL: never) */
	int retry_base_ms;		/* webhook: the first retry's wait (0: 1000) */
	int max_attempts;		/* webhook: tries per batch (0: 8) */
	int page_delay_ms;		/* tests: a pause after each page, to stop a job midway */
};

/*
 * Writes the current members of the audience (full) to path, in spec's
 * format, under a temporary name renamed to path once complete and
 * synced: what `weft export` and file jobs run. *rows gets the rows
 * written, *bytes the file's size. WEFT_ENOTFOUND if the audience does
 * not exist (err says so), WEFT_EIO with err for a write error,
 * WEFT_EUNAVAIL when the database failed under it.
 */
int export_to_file(struct export_ctx *c, const char *audience_key,
		   const struct export_spec *spec, const struct store_export *job, const char *path,
		   int64_t *rows, int64_t *bytes, char *err, size_t errlen);

/*
 * Runs job x to its end: starts it (store_export_start), exports, and
 * records the outcome (store_export_finish), the file going to
 * dir/exp_<id>.<csv|ndjson>. Returns 0 when the job ended (done or
 * failed, as recorded); WEFT_EUNAVAIL when the database failed under it
 * (the job stays running and is resumed later); WEFT_ESHUTDOWN when
 * stopped; or the error recording its start or end.
 */
int export_job_run(struct export_ctx *c, struct store_export *x, const char *dir);

/* The name of a finished job's file in the exports folder (out: 64 bytes). */
void export_file_name(const struct store_export *x, char *out, size_t len);

/* ---- the worker (worker.c) ---- */

struct export_worker;

/*
 * Starts the thread that runs queued jobs against engine e (which must
 * outlive it), writing files to dir (created if missing, mode 0700).
 */
struct export_worker *export_worker_start(const char *database_url, const char *dir,
					  struct engine *e);
/* A job was queued: look now rather than at the next poll. Any thread. */
void export_worker_wake(struct export_worker *w);
/* Stops at the next page (a running job resumes at the next start) and frees. */
void export_worker_stop(struct export_worker *w);

#endif
