/*
 * ingest: the Segment event model and the commit pipeline.
 *
 * A request body goes through ingest_parse() (JSON, once), then
 * ingest_build() validates each event against Segment's spec, fixes its
 * timestamps and messageId, extracts and pseudonymises its identifiers,
 * masks it (privacy/) and encodes it as a log row. Nothing raw leaves
 * ingest_build(): the job it fills holds only masked data.
 *
 * The job is then submitted to the pipeline, whose committer thread groups
 * the jobs of many concurrent requests into one transaction (group commit),
 * and hands each job back on the event loop once its events are durable.
 */
#ifndef INGEST_INGEST_H
#define INGEST_INGEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "store/store.h"

struct event_base;
struct keyset;
struct privacy_policy;
struct privacy_hasher;

/* What the request asked for: the endpoint's event type, or a batch. */
enum ingest_kind {
	INGEST_TRACK,
	INGEST_IDENTIFY,
	INGEST_PAGE,
	INGEST_SCREEN,
	INGEST_GROUP,
	INGEST_ALIAS,
	INGEST_BATCH,
};

/* Why an event or a request was refused; each has a stable code. */
enum ingest_reason {
	INGEST_OK,
	INGEST_INVALID_JSON,		/* "invalid_json" */
	INGEST_INVALID_EVENT,		/* "invalid_event": wrong shape or type */
	INGEST_MISSING_IDENTITY,	/* "missing_identity" */
	INGEST_MISSING_FIELD,		/* "missing_field": event, groupId, ... */
	INGEST_MESSAGE_ID_TOO_LONG,	/* "message_id_too_long" */
	INGEST_INVALID_TIMESTAMP,	/* "invalid_timestamp" */
	INGEST_EVENT_TOO_LARGE,		/* "event_too_large" */
	INGEST_BATCH_TOO_LARGE,		/* "batch_too_large" */
};

const char *ingest_reason_code(enum ingest_reason r);

#define INGEST_MAX_EVENT_BYTES (32 * 1024)
#define INGEST_MAX_BATCH_EVENTS 2500
#define INGEST_MAX_MESSAGE_ID 100

struct ingest_error {
	enum ingest_reason reason;
	char message[256];
};

/* Maps a path's last segment ("track", "batch", "import", ...). */
int ingest_kind_parse(const char *name, enum ingest_kind *kind);

/*
 * Parses a body. On failure returns WEFT_EINVAL with err filled (the
 * position of a JSON error included) and *root untouched. The caller owns
 * the returned reference.
 */
int ingest_parse(const char *body, size_t len, json_t **root,
		 struct ingest_error *err);

/* The body's "writeKey", for clients that do not use HTTP Basic. */
const char *ingest_body_write_key(json_t *root);

/* A batch item refused while the rest of the batch was accepted. */
struct ingest_rejection {
	size_t index;
	enum ingest_reason reason;
	char message[256];
};

/*
 * One request's worth of log rows, built on the event loop and committed by
 * the pipeline. Tuples live in one buffer; rows[] point into it by offset.
 */
struct ingest_row {
	size_t offset;		/* into tuples */
	size_t len;
	size_t message_id;	/* offset into strings */
	int64_t workspace_id;
	enum ingest_kind kind;
	bool stored;		/* set by the pipeline: false for a duplicate */
	int64_t seq;		/* set by the pipeline */
};

struct ingest_job {
	struct buf tuples;	/* binary COPY tuples, one per row */
	struct buf strings;	/* NUL-terminated messageIds */
	struct ingest_row *rows;
	size_t nrows, rows_cap;
	struct buf rejected;	/* rejected_events tuples */
	struct ingest_rejection *rejections;
	size_t nrejected, rejections_cap;
	size_t events_by_kind[INGEST_BATCH];	/* accepted events by type */
	size_t suppressed;	/* dropped: they carried a suppressed key */

	/* Set by the pipeline before done() is called. */
	int result;		/* 0, or WEFT_EUNAVAIL/WEFT_EIO/... */
	size_t stored;		/* new events committed */
	size_t duplicates;	/* events already in the log */

	/* Called on the event loop once the job's outcome is known. */
	void (*done)(struct ingest_job *job, void *arg);
	void *done_arg;

	struct ingest_job *next;	/* the pipeline's queue link */
};

void ingest_job_init(struct ingest_job *job);
void ingest_job_release(struct ingest_job *job);

/* What ingest_build() needs to know about the request. */
struct ingest_context {
	enum ingest_kind kind;
	int64_t workspace_id;
	int64_t key_id;
	int64_t received_at_us;		/* the server's clock, Unix microseconds */
	const struct privacy_policy *policy;
	const struct privacy_hasher *hasher;
	/*
	 * Identifier keys whose events are dropped (an erased person's; NULL:
	 * none). Such an event is counted in job->suppressed and leaves
	 * nothing in the job, neither a row nor a rejection, even when it is
	 * an invalid batch item.
	 */
	const struct keyset *suppressed;
};

/*
 * Validates, masks and encodes the events of a parsed body into job.
 * root is modified (masked in place) and still owned by the caller.
 * Returns WEFT_EINVAL with err set when the request as a whole is refused
 * (a single event that is invalid, a batch of the wrong shape or size);
 * then job holds nothing. Invalid items of a valid batch are recorded in
 * job->rejections instead, with the identifiers that could be read from
 * them. An event carrying a suppressed key (ctx->suppressed) is only
 * counted in job->suppressed: a valid single one gives an empty job and 0
 * (an invalid one is refused as usual; nothing of it is kept either way).
 */
int ingest_build(const struct ingest_context *ctx, json_t *root,
		 struct ingest_job *job, struct ingest_error *err);

/*
 * Whether raw (len bytes, as the event sent it) is a default blocked value:
 * a placeholder that SDKs and forms send when there is no real id, which
 * would merge everyone who sent it into one profile. ingest_build() still
 * extracts such an identifier but marks it "blocked":true, so the identity
 * engine ignores it while the event is stored as usual; validation does
 * not look at it (userId "null" is a valid userId).
 *
 * After trimming ASCII white space at both ends, blocked are: the empty
 * value; "null", "undefined", "none", "nan", "anonymous", "guest",
 * "unknown", "not_authenticated", "[object Object]" and "-1", compared
 * ignoring ASCII case; and any value made only of '0' and '-' characters
 * ("0", "0000", "000-0", "-", "---"). Nothing else: "0a", "-10", "null1",
 * "guest@example.com" are not.
 */
bool ingest_blocked_value(const char *raw, size_t len);

/* ---- timestamps ---- */

/*
 * Parses an ISO-8601 date-time ("2026-11-22T10:00:00.123Z",
 * "2026-11-22T11:00:00+01:00", "2026-11-22") into Unix microseconds.
 * Refuses out-of-range fields ("2020-13-45") with WEFT_EINVAL.
 */
int ingest_parse_time(const char *s, int64_t *unix_us);
/* Formats Unix microseconds as "YYYY-MM-DDTHH:MM:SS.mmmZ" (out >= 32 bytes). */
void ingest_format_time(int64_t unix_us, char *out, size_t len);
/* Writes a random UUIDv4 in its 36-character form (out >= 37 bytes). */
void ingest_uuid4(char *out);

/* ---- the commit pipeline ---- */

struct ingest_pipeline;

struct ingest_pipeline_config {
	const char *database_url;
	size_t max_batch_rows;		/* rows in one transaction */
	size_t max_queued_rows;		/* beyond this, submit refuses */
};

/*
 * Called on the committer thread after each commit with the batch's rows
 * in sequence order (duplicates have stored == false and seq 0), and with
 * the log's head after it. The engine's feed: it must copy what it keeps,
 * and must not block for long.
 *
 * Stored rows are numbered densely, so the engine notices events that did
 * not pass through the sink (a commit whose reply was lost, then found
 * committed after reconnecting) as a gap: a row's seq, or last_seq, beyond
 * what it applied plus one. It then reads that range from the log. After
 * such a reconnect the sink is called with n == 0 and the new head.
 */
typedef void (*ingest_sink_fn)(void *arg, const struct store_log_row *rows,
			       size_t n, int64_t last_seq);

/*
 * Creates the pipeline; its committer connects to the database in the
 * background. done callbacks are delivered on base, which must have been
 * created after evthread_use_pthreads().
 */
struct ingest_pipeline *ingest_pipeline_new(struct event_base *base,
	const struct ingest_pipeline_config *cfg);
void ingest_pipeline_set_sink(struct ingest_pipeline *p, ingest_sink_fn fn,
			      void *arg);
int ingest_pipeline_start(struct ingest_pipeline *p);
/*
 * Queues a job. Returns 0 (done() will be called later, once), or without
 * queueing: WEFT_EUNAVAIL while the database is unreachable,
 * or while a commit is stalled, WEFT_EOVERLOAD when the queue is full,
 * WEFT_ESHUTDOWN when stopping.
 */
int ingest_pipeline_submit(struct ingest_pipeline *p, struct ingest_job *job);

/* A commit running longer than this makes the pipeline not ready. */
#define INGEST_COMMIT_STALL_MS 10000
/*
 * True while the committer holds a working connection and no commit has
 * been stuck for more than INGEST_COMMIT_STALL_MS.
 */
bool ingest_pipeline_ready(struct ingest_pipeline *p);
/* Commits what is queued, then stops the committer thread. */
void ingest_pipeline_stop(struct ingest_pipeline *p);
void ingest_pipeline_free(struct ingest_pipeline *p);

struct ingest_pipeline_stats {
	uint64_t commits;		/* transactions committed */
	uint64_t commit_failures;
	uint64_t rows_stored;
	uint64_t rows_duplicate;
	uint64_t queued_rows;		/* now */
	uint64_t batch_hist[8];		/* rows per commit: <=1,10,100,500,1k,2.5k,5k,+Inf */
	double commit_seconds_sum;
	uint64_t commit_hist[8];	/* seconds: <=.001,.0025,.005,.01,.025,.05,.1,+Inf */
	int64_t last_seq;
};
void ingest_pipeline_stats(struct ingest_pipeline *p,
			   struct ingest_pipeline_stats *out);

#endif
