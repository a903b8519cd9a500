/*
 * The commit pipeline: a queue of jobs (one per request) and one committer
 * thread that owns the log's database connection.
 *
 * Group commit comes from the shape, not from a timer: while one
 * transaction is being committed, new jobs queue up, and the next
 * transaction takes all of them (up to max_batch_rows). Under light load a
 * job is committed alone at once; under heavy load transactions grow and
 * the cost of each fsync is shared by thousands of events.
 *
 * Completed jobs go back to the event loop through a libevent event made
 * active from this thread; the loop calls each job's done().
 */
#include "ingest/ingest.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"

struct ingest_pipeline {
	struct event_base *base;
	struct event *done_ev;
	char *url;
	size_t max_batch_rows;
	size_t max_queued_rows;
	ingest_sink_fn sink;
	void *sink_arg;

	pthread_t thread;
	bool started;
	atomic_bool ready;		/* the committer has a working connection */
	atomic_llong commit_started_ms;	/* monotonic; 0 while no commit runs */

	pthread_mutex_t mu;		/* guards everything below */
	pthread_cond_t cv;
	struct ingest_job *head, *tail;	/* waiting to be committed */
	size_t queued_rows;
	struct ingest_job *done_head, *done_tail;
	bool stopping;
	struct ingest_pipeline_stats stats;

	/* Owned by the committer thread. */
	struct store *store;
	int64_t last_seq;
	struct store_log_row *rows;
	size_t rows_cap;
	struct buf rejected;
};

static const double commit_bounds[7] = { .001, .0025, .005, .01, .025, .05, .1 };
static const size_t batch_bounds[7] = { 1, 10, 100, 500, 1000, 2500, 5000 };

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long now_ms(void)
{
	return (long long)(now_seconds() * 1000.0) + 1;	/* never 0 */
}

static void deliver_done(evutil_socket_t fd, short what, void *arg)
{
	struct ingest_pipeline *p = arg;
	struct ingest_job *job;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&p->mu);
	job = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->mu);
	while (job) {
		struct ingest_job *next = job->next;

		job->next = NULL;
		job->done(job, job->done_arg);
		job = next;
	}
}

/* Hands finished jobs (a NULL-terminated list) back to the event loop. */
static void finish(struct ingest_pipeline *p, struct ingest_job *list)
{
	struct ingest_job *last = list;

	if (!list)
		return;
	while (last->next)
		last = last->next;
	pthread_mutex_lock(&p->mu);
	if (p->done_tail)
		p->done_tail->next = list;
	else
		p->done_head = list;
	p->done_tail = last;
	pthread_mutex_unlock(&p->mu);
	event_active(p->done_ev, 0, 0);
}

static void fail_list(struct ingest_job *list, int rc)
{
	for (struct ingest_job *j = list; j; j = j->next) {
		j->result = rc;
		j->stored = j->duplicates = 0;
	}
}

/*
 * Connects (or reconnects), becomes the log's only writer, and learns where
 * the log ends.
 */
static int open_log(struct ingest_pipeline *p, bool *warned)
{
	int64_t before = p->last_seq;
	int rc;

	if (!p->store)
		rc = store_connect(p->url, &p->store);
	else
		rc = store_reconnect(p->store);
	if (rc)
		return rc;
	rc = store_log_lock(p->store);
	if (rc == WEFT_ECONFLICT) {
		if (!*warned)
			log_warn("log_locked", "msg=\"another weft process is "
				 "writing this database's event log; waiting for "
				 "it to stop\"");
		*warned = true;
		return rc;
	}
	if (rc)
		return rc;
	/* After a broken commit its outcome is unknown: always re-read. */
	rc = store_log_last_seq(p->store, &p->last_seq);
	if (rc)
		return rc;
	if (p->sink && p->last_seq > before && before > 0)
		p->sink(p->sink_arg, NULL, 0, p->last_seq);
	atomic_store(&p->ready, true);
	log_info("log_ready", "last_seq=%lld", (long long)p->last_seq);
	return 0;
}

static int commit_list(struct ingest_pipeline *p, struct ingest_job *list)
{
	size_t n = 0, nrej = 0;

	buf_reset(&p->rejected);
	for (struct ingest_job *j = list; j; j = j->next)
		n += j->nrows;
	if (n > p->rows_cap) {
		p->rows_cap = n * 2;
		p->rows = xrealloc(p->rows, xmul(p->rows_cap, sizeof(*p->rows)));
	}
	n = 0;
	for (struct ingest_job *j = list; j; j = j->next) {
		for (size_t i = 0; i < j->nrows; i++) {
			struct store_log_row *r = &p->rows[n++];

			r->tuple = j->tuples.data + j->rows[i].offset;
			r->len = j->rows[i].len;
			r->workspace_id = j->rows[i].workspace_id;
			r->message_id = j->strings.data + j->rows[i].message_id;
		}
		if (j->nrejected) {
			buf_add(&p->rejected, j->rejected.data, j->rejected.len);
			nrej += j->nrejected;
		}
	}

	double t0 = now_seconds();

	atomic_store(&p->commit_started_ms, now_ms());
	int rc = store_log_commit(p->store, p->rows, n, &p->rejected, nrej,
				  &p->last_seq);

	atomic_store(&p->commit_started_ms, 0);
	double dt = now_seconds() - t0;
	size_t stored = 0, dups = 0;

	n = 0;
	for (struct ingest_job *j = list; j; j = j->next) {
		j->result = rc;
		j->stored = j->duplicates = 0;
		for (size_t i = 0; i < j->nrows; i++, n++) {
			j->rows[i].stored = p->rows[n].stored;
			j->rows[i].seq = p->rows[n].seq;
			if (rc)
				continue;
			if (p->rows[n].stored)
				j->stored++;
			else
				j->duplicates++;
		}
		stored += j->stored;
		dups += j->duplicates;
	}

	pthread_mutex_lock(&p->mu);
	if (rc) {
		p->stats.commit_failures++;
	} else {
		int b = 0, c = 0;

		while (b < 7 && n > batch_bounds[b])
			b++;
		while (c < 7 && dt > commit_bounds[c])
			c++;
		p->stats.commits++;
		p->stats.rows_stored += stored;
		p->stats.rows_duplicate += dups;
		p->stats.batch_hist[b]++;
		p->stats.commit_hist[c]++;
		p->stats.commit_seconds_sum += dt;
		p->stats.last_seq = p->last_seq;
	}
	pthread_mutex_unlock(&p->mu);

	if (!rc && p->sink)
		p->sink(p->sink_arg, p->rows, n, p->last_seq);
	return rc;
}

/* Sleeps up to ms unless the pipeline is told to stop. */
static void backoff(struct ingest_pipeline *p, int ms)
{
	struct timespec until = clock_deadline(ms / 1000.0);

	pthread_mutex_lock(&p->mu);
	if (!p->stopping)
		pthread_cond_timedwait(&p->cv, &p->mu, &until);
	pthread_mutex_unlock(&p->mu);
}

/* Fails everything queued (while the database is unreachable). */
static void fail_queued(struct ingest_pipeline *p, int rc)
{
	pthread_mutex_lock(&p->mu);
	struct ingest_job *list = p->head;

	p->head = p->tail = NULL;
	p->queued_rows = 0;
	pthread_mutex_unlock(&p->mu);
	fail_list(list, rc);
	finish(p, list);
}

static void reconnect_until_ready(struct ingest_pipeline *p)
{
	bool warned = false;
	int wait_ms = 100;

	while (open_log(p, &warned)) {
		fail_queued(p, WEFT_EUNAVAIL);
		pthread_mutex_lock(&p->mu);
		bool stop = p->stopping;

		pthread_mutex_unlock(&p->mu);
		if (stop)
			return;
		backoff(p, wait_ms);
		wait_ms = wait_ms < 1600 ? wait_ms * 2 : 2000;
	}
}

static void *committer_main(void *arg)
{
	struct ingest_pipeline *p = arg;

	reconnect_until_ready(p);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mu);
		if (!p->head)
			break;

		/* Take whole jobs until the batch is full. */
		struct ingest_job *list = p->head, *last = p->head;
		size_t rows = last->nrows;

		while (last->next && rows + last->next->nrows <= p->max_batch_rows) {
			last = last->next;
			rows += last->nrows;
		}
		p->head = last->next;
		if (!p->head)
			p->tail = NULL;
		last->next = NULL;
		p->queued_rows -= rows;
		pthread_mutex_unlock(&p->mu);

		int rc = atomic_load(&p->ready) ? commit_list(p, list)
						: WEFT_EUNAVAIL;

		if (rc == WEFT_EIO && list->next) {
			/* A data error poisons one request, not its neighbours. */
			rc = 0;
			for (struct ingest_job *j = list, *next; j; j = next) {
				next = j->next;
				j->next = NULL;
				int one = rc == WEFT_EUNAVAIL ? WEFT_EUNAVAIL
							      : commit_list(p, j);

				if (one) {
					fail_list(j, one);
					if (one == WEFT_EUNAVAIL)
						rc = one;
				}
				finish(p, j);
			}
		} else {
			if (rc)
				fail_list(list, rc);
			finish(p, list);
		}
		if (rc == WEFT_EUNAVAIL) {
			atomic_store(&p->ready, false);
			log_warn("log_unavailable", "msg=\"reconnecting to the "
				 "database\"");
			fail_queued(p, WEFT_EUNAVAIL);
			reconnect_until_ready(p);
		}
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct ingest_pipeline *ingest_pipeline_new(struct event_base *base,
	const struct ingest_pipeline_config *cfg)
{
	struct ingest_pipeline *p = xcalloc(1, sizeof(*p));

	p->base = base;
	p->url = xstrdup(cfg->database_url);
	p->max_batch_rows = cfg->max_batch_rows ? cfg->max_batch_rows : 5000;
	p->max_queued_rows = cfg->max_queued_rows ? cfg->max_queued_rows : 50000;
	p->done_ev = event_new(base, -1, 0, deliver_done, p);
	if (!p->done_ev) {
		log_error("event_new_failed", "what=pipeline");
		abort();
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	buf_init(&p->rejected);
	return p;
}

void ingest_pipeline_set_sink(struct ingest_pipeline *p, ingest_sink_fn fn,
			      void *arg)
{
	p->sink = fn;
	p->sink_arg = arg;
}

int ingest_pipeline_start(struct ingest_pipeline *p)
{
	if (pthread_create(&p->thread, NULL, committer_main, p) != 0) {
		log_error("thread_create_failed", "what=committer");
		return WEFT_EIO;
	}
	p->started = true;
	return 0;
}

static bool stalled(struct ingest_pipeline *p)
{
	long long started = atomic_load(&p->commit_started_ms);

	return started && now_ms() - started > INGEST_COMMIT_STALL_MS;
}

bool ingest_pipeline_ready(struct ingest_pipeline *p)
{
	return atomic_load(&p->ready) && !stalled(p);
}

int ingest_pipeline_submit(struct ingest_pipeline *p, struct ingest_job *job)
{
	int rc = 0;

	job->next = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->stopping)
		rc = WEFT_ESHUTDOWN;
	else if (!ingest_pipeline_ready(p))
		rc = WEFT_EUNAVAIL;
	else if (p->queued_rows + job->nrows > p->max_queued_rows && p->head)
		rc = WEFT_EOVERLOAD;
	if (!rc) {
		if (p->tail)
			p->tail->next = job;
		else
			p->head = job;
		p->tail = job;
		p->queued_rows += job->nrows;
		pthread_cond_signal(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

void ingest_pipeline_stop(struct ingest_pipeline *p)
{
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (p->started) {
		pthread_join(p->thread, NULL);
		p->started = false;
	}
}

void ingest_pipeline_free(struct ingest_pipeline *p)
{
	if (!p)
		return;
	ingest_pipeline_stop(p);
	/* Deliver what finished after the loop's last turn. */
	deliver_done(-1, 0, p);
	event_free(p->done_ev);
	store_free(p->store);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->rows);
	buf_release(&p->rejected);
	free(p->url);
	free(p);
}

void ingest_pipeline_stats(struct ingest_pipeline *p,
			   struct ingest_pipeline_stats *out)
{
	pthread_mutex_lock(&p->mu);
	*out = p->stats;
	out->queued_rows = p->queued_rows;
	pthread_mutex_unlock(&p->mu);
}
