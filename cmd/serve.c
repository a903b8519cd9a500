/*
 * weft serve: wires the PII master key, the commit pipeline and the HTTP
 * API onto one event loop, and stops them in order on SIGTERM or SIGINT:
 * stop accepting, let in-flight requests get their commits and replies,
 * then exit 0.
 */
#include "cmd/cmd.h"

#include <event2/event.h>
#include <errno.h>
#include <pthread.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "engine/engine.h"
#include "export/export.h"
#include "ingest/ingest.h"
#include "lib/err.h"
#include "lib/log.h"
#include "privacy/privacy.h"

static const char usage[] =
	"usage: weft serve [options]\n"
	"\n"
	"Serves the collector API (Segment HTTP Tracking API), health and\n"
	"metrics. Needs a migrated database and the PII master key file.\n"
	"Stops cleanly on SIGTERM or SIGINT.\n"
	"\n"
	"options:\n"
	"  --listen HOST:PORT   address (env WEFT_LISTEN, default 127.0.0.1:8080)\n"
	"  --max-connections N  open connections; beyond: 503 (default 4096)\n"
	"  --max-inflight-requests N\n"
	"                       requests being processed or committed (4096)\n"
	"  --max-inflight-bytes N\n"
	"                       their body bytes (67108864)\n"
	"  --max-queued-events N\n"
	"                       events waiting for a commit (50000)\n"
	"  --shutdown-timeout S seconds SIGTERM waits for in-flight commits\n"
	"                       before exiting 1 without them (30)\n"
	"  --checkpoint-interval MS\n"
	"                       at most this long between saves of the derived\n"
	"                       state and its audience changes (10000)\n"
	"Each also reads WEFT_<NAME> from the environment, e.g.\n"
	"WEFT_MAX_QUEUED_EVENTS.\n"
	CMD_COMMON_HELP;

enum {
	OPT_MAX_CONNECTIONS = CMD_OPT_FIRST_OWN,
	OPT_MAX_INFLIGHT_REQUESTS,
	OPT_MAX_INFLIGHT_BYTES,
	OPT_MAX_QUEUED_EVENTS,
	OPT_SHUTDOWN_TIMEOUT,
	OPT_CHECKPOINT_INTERVAL,
};

/* The serve-only numeric settings, by option and environment name. */
static const struct {
	int opt;
	const char *flag;
	const char *env;
} limits[] = {
	{ OPT_MAX_CONNECTIONS, "max-connections", "WEFT_MAX_CONNECTIONS" },
	{ OPT_MAX_INFLIGHT_REQUESTS, "max-inflight-requests",
	  "WEFT_MAX_INFLIGHT_REQUESTS" },
	{ OPT_MAX_INFLIGHT_BYTES, "max-inflight-bytes", "WEFT_MAX_INFLIGHT_BYTES" },
	{ OPT_MAX_QUEUED_EVENTS, "max-queued-events", "WEFT_MAX_QUEUED_EVENTS" },
	{ OPT_SHUTDOWN_TIMEOUT, "shutdown-timeout", "WEFT_SHUTDOWN_TIMEOUT" },
	{ OPT_CHECKPOINT_INTERVAL, "checkpoint-interval", "WEFT_CHECKPOINT_INTERVAL" },
};

struct serve_limits {
	unsigned long long value[6];	/* by limits[] index; 0: default */
};

static int parse_count(const char *name, const char *text,
		       unsigned long long *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || end == text || *end || v == 0 || text[0] == '-') {
		fprintf(stderr, "weft serve: %s wants a positive whole number, "
			"not '%s'\n", name, text);
		return WEFT_EINVAL;
	}
	*out = v;
	return 0;
}

struct serve {
	struct event_base *base;
	struct api *api;
	struct event *deadline;
	int shutdown_timeout_s;
	bool stopping;
};

/* Splits "host:port", "[v6]:port" or ":port" (every address). */
static int parse_listen(const char *s, char *host, size_t cap, int *port)
{
	const char *colon = strrchr(s, ':');
	const char *h = s;
	size_t hlen;
	char *end;
	long p;

	if (!colon)
		return WEFT_EINVAL;
	hlen = (size_t)(colon - s);
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen >= cap)
		return WEFT_EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	p = strtol(colon + 1, &end, 10);
	if (*end || p < 0 || p > 65535 || end == colon + 1)
		return WEFT_EINVAL;
	*port = (int)p;
	return 0;
}

static void on_drained(void *arg)
{
	struct serve *sv = arg;

	log_info("shutdown_drained", "msg=\"in-flight requests answered\"");
	event_base_loopexit(sv->base, NULL);
}

/*
 * The database stopped answering mid-commit: the requests still waiting
 * were never acknowledged, so leaving without them loses nothing; their
 * clients retry. Waiting for ever would keep a stuck process around.
 */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct serve *sv = arg;

	(void)fd;
	(void)what;
	log_error("shutdown_timeout", "seconds=%d msg=\"in-flight commits did "
		  "not finish; exiting without answering them (none was "
		  "acknowledged)\"", sv->shutdown_timeout_s);
	_exit(1);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct serve *sv = arg;
	struct timeval tv = { sv->shutdown_timeout_s, 0 };

	(void)what;
	if (sv->stopping)
		return;
	sv->stopping = true;
	log_info("shutdown", "signal=%d", (int)sig);
	sv->deadline = evtimer_new(sv->base, on_deadline, sv);
	evtimer_add(sv->deadline, &tv);
	api_shutdown(sv->api, on_drained, sv);
}

/* Waits up to ten seconds for the committer's first connection. */
static bool wait_ready(struct ingest_pipeline *p)
{
	struct timespec pause = { 0, 10 * 1000 * 1000 };

	for (int i = 0; i < 1000; i++) {
		if (ingest_pipeline_ready(p))
			return true;
		nanosleep(&pause, NULL);
	}
	return false;
}

int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_COMMON_OPTIONS,
		{ "max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS },
		{ "max-inflight-requests", required_argument, NULL,
		  OPT_MAX_INFLIGHT_REQUESTS },
		{ "max-inflight-bytes", required_argument, NULL,
		  OPT_MAX_INFLIGHT_BYTES },
		{ "max-queued-events", required_argument, NULL,
		  OPT_MAX_QUEUED_EVENTS },
		{ "shutdown-timeout", required_argument, NULL,
		  OPT_SHUTDOWN_TIMEOUT },
		{ "checkpoint-interval", required_argument, NULL,
		  OPT_CHECKPOINT_INTERVAL },
		{ 0 },
	};
	struct serve_limits lim = { { 0 } };
	sigset_t stop_signals, unblocked;
	struct ingest_pipeline_config pcfg = { 0 };
	struct ingest_pipeline *pipeline = NULL;
	struct engine_config ecfg = { 0 };
	struct engine *engine = NULL;
	struct export_worker *exports = NULL;
	char exports_dir[4096];
	struct privacy_master *master = NULL;
	struct event *sigterm = NULL, *sigint = NULL;
	struct serve sv = { 0 };
	struct api_config acfg;
	struct cmd_config cfg;
	char host[256];
	int opt, rc, status = 1;

	cmd_config_defaults(&cfg);
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		const char *v = getenv(limits[i].env);

		if (v && *v && parse_count(limits[i].env, v, &lim.value[i]))
			return 2;
	}
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == CMD_OPT_HELP) {
			fputs(usage, stdout);
			return 0;
		}
		if (opt >= OPT_MAX_CONNECTIONS && opt <= OPT_CHECKPOINT_INTERVAL) {
			size_t i = (size_t)(opt - OPT_MAX_CONNECTIONS);

			if (parse_count(limits[i].flag, optarg, &lim.value[i]))
				return 2;
			continue;
		}
		if (cmd_config_option(&cfg, opt, optarg) != 1) {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (cmd_config_finish(&cfg, true))
		return 2;
	api_config_init(&acfg);
	if (parse_listen(cfg.listen, host, sizeof(host), &acfg.listen_port)) {
		fprintf(stderr, "weft serve: --listen wants HOST:PORT, not '%s'\n",
			cfg.listen);
		return 2;
	}
	acfg.listen_host = host[0] ? host : NULL;
	acfg.database_url = cfg.database_url;
	if (lim.value[0])
		acfg.max_connections = (unsigned)lim.value[0];
	if (lim.value[1])
		acfg.max_inflight_requests = lim.value[1];
	if (lim.value[2])
		acfg.max_inflight_bytes = lim.value[2];
	pcfg.max_queued_rows = lim.value[3];
	sv.shutdown_timeout_s = lim.value[4] ? (int)lim.value[4] : 30;
	if (privacy_master_load(cfg.pii_key_file, &master)) {
		fprintf(stderr, "weft serve: cannot use the PII master key '%s'; "
			"create one with 'weft pii-key create FILE' (make run "
			"does) and keep it at mode 0600\n", cfg.pii_key_file);
		return 1;
	}

	/* Only the loop thread takes SIGINT and SIGTERM; threads inherit this. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_signals, &unblocked);
	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	sv.base = event_base_new();
	pcfg.database_url = cfg.database_url;
	ecfg.database_url = cfg.database_url;
	ecfg.checkpoint_interval_ms = lim.value[5] > 3600000 ? 3600000 : (int)lim.value[5];
	engine = engine_new(&ecfg);
	pipeline = ingest_pipeline_new(sv.base, &pcfg);
	ingest_pipeline_set_sink(pipeline, engine_sink, engine);
	if (ingest_pipeline_start(pipeline) || engine_start(engine))
		goto out_free;
	if (!wait_ready(pipeline))
		log_warn("log_not_ready", "msg=\"serving anyway; events get 503 "
			 "until the database answers\"");
	snprintf(exports_dir, sizeof(exports_dir), "%s/exports", cfg.data_dir);
	exports = export_worker_start(cfg.database_url, exports_dir, engine);
	sv.api = api_new(sv.base, &acfg, pipeline, master);
	api_set_engine(sv.api, engine);
	api_set_exports(sv.api, exports, exports_dir);
	rc = api_start(sv.api);
	if (rc == WEFT_ESCHEMA) {
		fprintf(stderr, "weft serve: the database schema is not the one "
			"this binary knows; run 'weft migrate' (see the log)\n");
		goto out_free;
	}
	if (rc) {
		fprintf(stderr, "weft serve: cannot start: %s\n",
			weft_strerror(rc));
		goto out_free;
	}
	sigterm = evsignal_new(sv.base, SIGTERM, on_signal, &sv);
	sigint = evsignal_new(sv.base, SIGINT, on_signal, &sv);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	log_info("listening", "addr=%s port=%d", host[0] ? host : "*",
		 api_port(sv.api));
	pthread_sigmask(SIG_SETMASK, &unblocked, NULL);
	event_base_dispatch(sv.base);
	/*
	 * Freeing the signal events below restores the default handlers; a
	 * second signal from an impatient supervisor must not kill the clean
	 * exit. The other threads were started with both blocked.
	 */
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	status = 0;

out_free:
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (sv.deadline)
		event_free(sv.deadline);
	ingest_pipeline_stop(pipeline);
	/* A job under way stops at its next page and resumes at the next start. */
	if (sv.api)
		api_set_exports(sv.api, NULL, NULL);
	export_worker_stop(exports);
	/* Every acknowledged event has reached the engine's feed: apply, checkpoint. */
	engine_stop(engine);
	api_free(sv.api);
	ingest_pipeline_free(pipeline);
	engine_free(engine);
	event_base_free(sv.base);
	privacy_master_free(master);
	if (status == 0)
		log_info("stopped", "status=0");
	return status;
}
