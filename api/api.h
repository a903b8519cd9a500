/*
 * api: Weft's HTTP API. Routes requests, authenticates keys, turns error
 * codes into HTTP statuses and JSON errors, and hands events to ingest/.
 * The only module that knows about HTTP statuses.
 *
 * Everything here runs on one event loop thread, except the control
 * worker: a thread with its own database connection that refreshes API
 * keys and workspace settings every two seconds and performs admin writes,
 * so the loop never waits on the database.
 */
#ifndef API_API_H
#define API_API_H

#include <stddef.h>

struct event_base;
struct ingest_pipeline;
struct privacy_master;
struct engine;
struct api;

struct api_config {
	const char *listen_host;
	int listen_port;
	const char *database_url;
	size_t max_body_bytes;
	size_t max_header_bytes;
	unsigned max_connections;
	size_t max_inflight_requests;
	size_t max_inflight_bytes;
};

/* Fills in the defaults (docs/api.md). */
void api_config_init(struct api_config *cfg);

/* master and pipeline are borrowed and must outlive the api. */
struct api *api_new(struct event_base *base, const struct api_config *cfg,
		    struct ingest_pipeline *pipeline,
		    const struct privacy_master *master);
/* The engine whose state the identity and profile endpoints read (borrowed). */
void api_set_engine(struct api *a, struct engine *engine);
struct export_worker;
/* The worker that runs export jobs and the folder their files go to (borrowed; dir copied). */
void api_set_exports(struct api *a, struct export_worker *w, const char *dir);
/*
 * Loads keys and settings (synchronously, once) and starts listening.
 * WEFT_EUNAVAIL if the database cannot be read, WEFT_ESCHEMA if its schema
 * is not current, WEFT_EIO if the address cannot be bound.
 */
int api_start(struct api *a);
/* The port listened on (useful with port 0). */
int api_port(const struct api *a);
/*
 * Stops accepting and lets in-flight requests finish; then done(arg) is
 * called from the loop.
 */
void api_shutdown(struct api *a, void (*done)(void *), void *arg);
void api_free(struct api *a);

#endif
