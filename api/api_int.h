/*
 * Internals shared by the files of api/; no other folder includes this.
 */
#ifndef API_API_INT_H
#define API_API_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/api.h"
#include "api/http.h"
#include "ingest/ingest.h"
#include "lib/worker.h"
#include "store/store.h"

/* A key as the loop knows it: looked up by the SHA-256 of what was sent. */
struct api_key {
	uint8_t hash[32];
	int64_t key_id;		/* 0 marks an empty slot */
	int64_t workspace_id;
	enum store_role role;
};

/* Open addressing over api_key, rebuilt whole on each refresh. */
struct api_keyring {
	struct api_key *slots;
	size_t mask;
};

/* What the loop keeps per workspace. */
struct api_workspace {
	int64_t workspace_id;
	char name[64];			/* as the keys' refresh read it */
	struct privacy_hasher *hasher;
	struct privacy_policy *policy;	/* NULL: the default policy */
	char *policy_json;		/* as stored, to notice changes */
	struct keyset *suppressed;	/* keys whose events are dropped; NULL: none */
	int64_t suppressed_keys;	/* the list's stamp when loaded (-1: reload) */
	int64_t suppressed_latest_us;
	uint64_t suppress_calls;	/* api_suppress_now() calls, to spot one during a refresh */
};

/* Counters the loop updates; /metrics reads them with the others. */
struct api_metrics {
	uint64_t accepted[INGEST_BATCH];	/* events committed, by type */
	uint64_t duplicates[INGEST_BATCH];	/* acknowledged, already stored */
	uint64_t rejected[INGEST_BATCH_TOO_LARGE + 1];	/* by reason */
	uint64_t suppressed;			/* acknowledged, dropped: a suppressed key */
	uint64_t unavailable;			/* requests answered 503 */
};

struct api {
	struct event_base *base;
	struct api_config cfg;
	struct http_server *http;
	struct ingest_pipeline *pipeline;
	struct engine *engine;		/* NULL: no derived state (tests of ingest alone) */
	const struct privacy_master *master;
	struct privacy_policy *default_policy;

	struct worker *control;
	struct worker *jobs;		/* erasure jobs (api/erase.c) */
	struct store *jobs_store;	/* touched only by jobs tasks */
	struct store *control_store;	/* touched only by control tasks */
	struct event *refresh_timer;
	bool refresh_running;
	bool db_ready;			/* last refresh reached a current schema */
	bool stopping;

	struct api_keyring keys;
	struct api_workspace *workspaces;
	size_t nworkspaces;
	struct api_metrics metrics;
	struct export_worker *exports;	/* runs export jobs; NULL: none (tests of ingest alone) */
	char *exports_dir;		/* where their files are */
};

/* auth.c */
void api_keyring_build(struct api_keyring *ring, const struct store_key *keys,
		       size_t n);
void api_keyring_release(struct api_keyring *ring);
/*
 * Finds the key a request presents (HTTP Basic user name, else the body's
 * writeKey if body is not NULL) and checks its role against need (an admin
 * key may also read). Returns it, or NULL after replying 401 or 403.
 */
const struct api_key *api_authenticate(struct api *a, struct http_request *req,
				       json_t *body, enum store_role need);
/* True if the request carries an Authorization header. */
bool api_has_credentials(struct http_request *req);

/* control.c */
void api_control_start(struct api *a);
/* Runs one refresh synchronously (before the loop serves anything). */
int api_control_refresh_now(struct api *a);
struct api_workspace *api_workspace_get(struct api *a, int64_t workspace_id);
/* On the control worker: makes sure control_store is connected (0, or the error). */
int api_control_conn(struct api *a);
/* Saves a workspace policy, then replies through done on the loop. */
void api_control_save_policy(struct api *a, int64_t workspace_id,
			     const char *json, struct privacy_policy *parsed,
			     struct http_request *req);
/*
 * On the loop: events of the workspace carrying one of keys[0..n) are
 * dropped from now on, without waiting for the next refresh to read them
 * from suppressed_keys. Call it once the keys are committed there. A
 * refresh running meanwhile may have read the list without them, so what
 * it read for the workspace is set aside and the list read again by the
 * next refresh.
 */
void api_suppress_now(struct api *a, int64_t workspace_id,
		      const uint8_t (*keys)[16], size_t n);
void api_control_stop(struct api *a);

/* identity.c */
/* Replies 503 (and returns true) while the engine is absent or still loading its state. */
bool api_engine_unready(struct api *a, struct http_request *req);
void api_identity_rules(struct api *a, struct http_request *req);
void api_identity_blocked(struct api *a, struct http_request *req);
/* GET /v1/profiles/{type}:{value}/identity-history; ident is the undecoded {type}:{value}. */
void api_identity_history(struct api *a, struct http_request *req, const char *ident,
			  size_t len);

/*
 * The profile {type}:{value} (undecoded, len bytes) names in graph g (which
 * may be NULL): any identifier type, or profile_id:prf_N; an absorbed
 * profile resolves to its survivor. Sets *profile_id (0: none); returns 0,
 * or WEFT_EINVAL with *error saying what is wrong with ident.
 */
struct identity_graph;
int api_resolve_profile(struct api *a, const struct api_workspace *w,
			const struct identity_graph *g, const char *ident, size_t len,
			uint64_t *profile_id, const char **error);

/* erase.c */
void api_erase_start(struct api *a);
void api_erase_stop(struct api *a);
/* DELETE /v1/profiles/{type}:{value}; ident undecoded. */
void api_erase_profile(struct api *a, struct http_request *req, const char *ident, size_t len);
/* GET /v1/admin/erasures/{id}. */
void api_erasure_status(struct api *a, struct http_request *req, const char *id);

/* profiles.c (docs/profiles.md) */
/*
 * GET /v1/spaces/{workspace}/collections/users/profiles/{type}:{value}/
 * {traits,external_ids,events,metadata,links}: Segment's Profile API.
 */
void api_profiles_segment(struct api *a, struct http_request *req);
/* GET /v1/profiles/{type}:{value}: the whole profile; ident undecoded. */
void api_profile_get(struct api *a, struct http_request *req, const char *ident, size_t len);

/* profiles.c */
/*
 * Percent-decodes in[0..len) into a new string; '+' is a space when plus
 * is true (a query string). NULL on a bad escape or a NUL byte.
 */
char *api_pct_decode(const char *in, size_t len, bool plus);
/*
 * The value of query parameter name in q ("a=1&b=2"), percent-decoded and
 * copied into out (cut to len - 1 bytes); false if absent ("a" alone is "").
 */
bool api_query_param(const char *q, const char *name, char *out, size_t len);
/* A profile id as the API shows it: "prf_<n>". */
json_t *api_pid_json(uint64_t pid);
/* Unix microseconds as an ISO-8601 JSON string (ingest_format_time); null for 0. */
json_t *api_time_json(int64_t us);

/* metrics.c */
void api_metrics_reply(struct api *a, struct http_request *req);

/* api/audiences.c: rest is the path after /v1/audiences or /v1/computed-traits. */
void api_definitions(struct api *a, struct http_request *req, enum store_def_kind kind,
		     const char *rest);
void api_clock(struct api *a, struct http_request *req);
/* The body as a JSON object, or NULL after replying 400. */
json_t *api_body_object(struct http_request *req);
/* True if the method is one of allow ("GET, POST"); else replies 405 with Allow. */
bool api_method_is(struct http_request *req, const char *allow);

/* api/exports.c (docs/audiences.md, "Exports") */
/* POST /v1/audiences/{key}/exports: k has been checked for the admin role. */
void api_export_create(struct api *a, struct http_request *req, const struct api_key *k,
		       const char *audience_key);
/* GET /v1/exports/{id} and /v1/exports/{id}/file; rest is what follows /v1/exports/. */
void api_exports(struct api *a, struct http_request *req, const char *rest);

/* api.c */
void api_reply_json(struct http_request *req, int status, json_t *body);

#endif
