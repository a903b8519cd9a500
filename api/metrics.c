/*
 * GET /metrics in Prometheus text format: ingestion counters from the
 * loop, commit batch sizes and latency from the pipeline, connection and
 * in-flight figures from the HTTP server.
 */
#include "api/api_int.h"

#include "engine/engine.h"

#include "lib/buf.h"

static const char *kinds[] = {
	"track", "identify", "page", "screen", "group", "alias",
};

static void counter_by_type(struct buf *b, const char *name, const char *help,
			    const uint64_t *v)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	for (int k = 0; k < INGEST_BATCH; k++)
		buf_printf(b, "%s{type=\"%s\"} %llu\n", name, kinds[k],
			   (unsigned long long)v[k]);
}

static void gauge(struct buf *b, const char *name, const char *help, double v)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help,
		   name, name, v);
}

static void counter(struct buf *b, const char *name, const char *help,
		    uint64_t v)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help,
		   name, name, (unsigned long long)v);
}

static void histogram(struct buf *b, const char *name, const char *help,
		      const char *const *bounds, const uint64_t *counts,
		      double sum)
{
	uint64_t cum = 0;

	buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (int i = 0; i < 8; i++) {
		cum += counts[i];
		buf_printf(b, "%s_bucket{le=\"%s\"} %llu\n", name, bounds[i],
			   (unsigned long long)cum);
	}
	buf_printf(b, "%s_sum %.17g\n%s_count %llu\n", name, sum, name,
		   (unsigned long long)cum);
}

static void engine_metrics(struct buf *b, struct engine *e)
{
	static const char *const lag_le[8] = {
		"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "1", "+Inf" };
	struct engine_stats st;

	engine_stats(e, &st);
	gauge(b, "weft_engine_caught_up",
	      "1 once the engine has loaded its state and applied the log up to the last commit "
	      "it was told of.", st.loaded && st.caught_up ? 1 : 0);
	gauge(b, "weft_engine_applied_seq", "Every event up to this sequence number is applied.",
	      (double)st.applied_seq);
	gauge(b, "weft_engine_checkpoint_seq", "The sequence number of the saved checkpoint.",
	      (double)st.checkpoint_seq);
	counter(b, "weft_engine_events_applied_total", "Events applied to the identity graph.",
		st.events_applied);
	counter(b, "weft_engine_log_reads_total",
		"Events the engine read back from the log rather than its feed.", st.log_reads);
	counter(b, "weft_engine_feed_overflows_total",
		"Commits the feed had no room for (read from the log instead).",
		st.feed_overflows);
	histogram(b, "weft_engine_apply_lag_seconds",
		  "From a commit's end to its events being applied (the apply lag).", lag_le,
		  st.lag_buckets, st.lag_sum);
	counter(b, "weft_engine_checkpoints_total", "Checkpoints saved.", st.checkpoints);
	counter(b, "weft_engine_checkpoint_failures_total", "Checkpoints that failed.",
		st.checkpoint_failures);
	gauge(b, "weft_engine_checkpoint_seconds", "How long the last checkpoint took.",
	      st.checkpoint_seconds);
	gauge(b, "weft_engine_checkpoint_pages", "Pages the last checkpoint wrote.",
	      (double)st.checkpoint_pages);
	gauge(b, "weft_identity_identifiers", "Identifiers in the identity graphs.",
	      (double)st.identifiers);
	gauge(b, "weft_identity_profiles", "Live profiles.", (double)st.profiles);
	gauge(b, "weft_identity_merges", "Profiles absorbed by merges.", (double)st.merges);
	gauge(b, "weft_identity_memory_bytes", "Memory the identity graphs use.",
	      (double)st.identity_bytes);
	gauge(b, "weft_profiles_stored", "Profiles with traits, counters or events kept.",
	      (double)st.profile_records);
	gauge(b, "weft_profiles_memory_bytes", "Memory the profile stores use.",
	      (double)st.profile_bytes);
	gauge(b, "weft_audiences_members", "Memberships over every audience.",
	      (double)st.audience_members);
	gauge(b, "weft_audiences_states", "Per-profile states of computed traits and event "
	      "conditions.", (double)st.audience_states);
	gauge(b, "weft_audiences_memory_bytes", "Memory the audiences and computed traits use.",
	      (double)st.audience_bytes);
}

void api_metrics_reply(struct api *a, struct http_request *req)
{
	static const char *const rows_le[8] = {
		"1", "10", "100", "500", "1000", "2500", "5000", "+Inf",
	};
	static const char *const secs_le[8] = {
		"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "+Inf",
	};
	struct ingest_pipeline_stats ps;
	struct http_stats hs;
	struct buf b = BUF_INIT;
	uint64_t rows_sum = 0;

	ingest_pipeline_stats(a->pipeline, &ps);
	http_server_stats(a->http, &hs);

	counter_by_type(&b, "weft_events_accepted_total",
			"Events committed to the log, by type.",
			a->metrics.accepted);
	counter_by_type(&b, "weft_events_deduplicated_total",
			"Events acknowledged whose messageId was already stored.",
			a->metrics.duplicates);
	counter(&b, "weft_events_suppressed_total",
		"Events acknowledged and dropped because they carry a suppressed "
		"identifier (an erased person's).", a->metrics.suppressed);
	buf_printf(&b, "# HELP weft_events_rejected_total Events refused, by "
		   "error code.\n# TYPE weft_events_rejected_total counter\n");
	for (int r = INGEST_INVALID_JSON; r <= INGEST_BATCH_TOO_LARGE; r++)
		buf_printf(&b, "weft_events_rejected_total{code=\"%s\"} %llu\n",
			   ingest_reason_code((enum ingest_reason)r),
			   (unsigned long long)a->metrics.rejected[r]);
	counter(&b, "weft_requests_unavailable_total",
		"Requests answered 503 because the database was unreachable or "
		"the commit queue full.", a->metrics.unavailable);

	rows_sum = ps.rows_stored + ps.rows_duplicate;
	histogram(&b, "weft_commit_batch_rows",
		  "Events per group-commit transaction.", rows_le,
		  ps.batch_hist, (double)rows_sum);
	histogram(&b, "weft_commit_seconds",
		  "Time to commit one group-commit transaction.", secs_le,
		  ps.commit_hist, ps.commit_seconds_sum);
	counter(&b, "weft_commit_failures_total",
		"Group-commit transactions that failed.", ps.commit_failures);
	gauge(&b, "weft_commit_queue_rows", "Events waiting to be committed.",
	      (double)ps.queued_rows);
	gauge(&b, "weft_log_last_seq", "The last sequence number committed.",
	      (double)ps.last_seq);
	gauge(&b, "weft_database_up",
	      "1 while the committer holds a working connection.",
	      ingest_pipeline_ready(a->pipeline) ? 1 : 0);

	gauge(&b, "weft_http_inflight_requests",
	      "Requests being processed or waiting for their commit.",
	      (double)hs.inflight_requests);
	gauge(&b, "weft_http_inflight_bytes", "Body bytes of in-flight requests.",
	      (double)hs.inflight_bytes);
	gauge(&b, "weft_http_connections_open", "Open client connections.",
	      (double)hs.connections_open);
	buf_printf(&b, "# HELP weft_http_replies_total Replies sent, by status "
		   "class.\n# TYPE weft_http_replies_total counter\n");
	for (int c = 1; c <= 5; c++)
		buf_printf(&b, "weft_http_replies_total{class=\"%dxx\"} %llu\n",
			   c, (unsigned long long)hs.replies[c]);
	counter(&b, "weft_http_parse_errors_total",
		"Malformed HTTP requests answered 400.", hs.parse_errors);
	counter(&b, "weft_http_overloaded_total",
		"Requests turned away by the server's load limits.",
		hs.overloaded);

	if (a->engine)
		engine_metrics(&b, a->engine);
	http_reply(req, 200, "text/plain; version=0.0.4", b.data, b.len);
	buf_release(&b);
}
