/*
 * The export worker: one thread with its own database connection that
 * runs queued jobs one at a time, oldest first, and resumes the job a
 * stop or a crash interrupted. It waits for the engine to be ready, so an
 * export never reads a state that is still catching up.
 *
 * Knobs (environment): WEFT_EXPORT_RETRY_BASE_MS, the first wait before
 * a webhook batch is tried again (default 1000, doubling to a minute, 8
 * tries); WEFT_TEST_EXPORT_DELAY_MS, a pause after each page, for tests
 * that stop a job midway.
 */
#include "export/export_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/engine.h"
#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"
#include "store/store.h"

#define IDLE_POLL_MS 1000
#define RETRY_MS 2000
/* A file job records its progress at most this often. */
#define PROGRESS_EVERY_S 1.0

struct export_worker {
	char *url, *dir;
	struct engine *e;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool woken;
	volatile bool stop;
	struct store *store;
	int retry_base_ms, page_delay_ms;
	/* The job under way, for progress. */
	struct store_export *job;
	double last_progress;
};

/* Waits ms or until woken or stopped. */
static void idle(struct export_worker *w, int ms)
{
	struct timespec ts = clock_deadline(ms / 1000.0);

	pthread_mutex_lock(&w->mu);
	while (!w->woken && !w->stop)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
			break;
	w->woken = false;
	pthread_mutex_unlock(&w->mu);
}

/* A file job's rows so far, for GET /v1/exports/{id} (a webhook job records each batch itself). */
static void file_progress(void *arg, int64_t done, int64_t total)
{
	struct export_worker *w = arg;
	double t = clock_mono();

	if (t - w->last_progress < PROGRESS_EVERY_S)
		return;
	w->last_progress = t;
	if (store_export_progress(w->store, w->job, 0, done, total))
		log_warn("export_progress_unsaved", "export=%lld", (long long)w->job->export_id);
}

static void run_one(struct export_worker *w, struct store_export *x)
{
	struct export_ctx c = {
		.engine = w->e, .store = w->store, .stop = &w->stop,
		.retry_base_ms = w->retry_base_ms, .page_delay_ms = w->page_delay_ms,
		.arg = w,
	};
	int rc;

	/* A webhook job records each batch itself. */
	if (strcmp(x->destination_key, "file") == 0)
		c.progress = file_progress;
	w->job = x;
	w->last_progress = clock_mono();
	rc = export_job_run(&c, x, w->dir);
	w->job = NULL;
	if (rc && rc != WEFT_ESHUTDOWN) {
		/* The database failed under the job: it stays running and resumes. */
		store_free(w->store);
		w->store = NULL;
		idle(w, RETRY_MS);
	}
}

static void *worker_main(void *arg)
{
	struct export_worker *w = arg;
	bool warned = false;

	while (!w->stop) {
		struct store_export x;
		int rc;

		if (!engine_ready(w->e)) {
			idle(w, 200);
			continue;
		}
		if (!w->store && (rc = store_connect(w->url, &w->store))) {
			if (!warned)
				log_warn("export_worker_unconnected", "error=%s: retrying",
					 weft_strerror(rc));
			warned = true;
			w->store = NULL;
			idle(w, RETRY_MS);
			continue;
		}
		warned = false;
		rc = store_export_next(w->store, &x);
		if (rc == WEFT_ENOTFOUND) {
			idle(w, IDLE_POLL_MS);
			continue;
		}
		if (rc) {
			store_free(w->store);
			w->store = NULL;
			idle(w, RETRY_MS);
			continue;
		}
		run_one(w, &x);
		store_export_release(&x);
	}
	store_free(w->store);
	w->store = NULL;
	return NULL;
}

static int env_ms(const char *name, int def)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (!v || !*v)
		return def;
	n = strtol(v, &end, 10);
	return *end || n < 0 || n > 3600000 ? def : (int)n;
}

struct export_worker *export_worker_start(const char *database_url, const char *dir,
					  struct engine *e)
{
	struct export_worker *w = xcalloc(1, sizeof(*w));

	w->url = xstrdup(database_url);
	w->dir = xstrdup(dir);
	w->e = e;
	w->retry_base_ms = env_ms("WEFT_EXPORT_RETRY_BASE_MS", 1000);
	w->page_delay_ms = env_ms("WEFT_TEST_EXPORT_DELAY_MS", 0);
	if (mkdir(dir, 0700) && errno != EEXIST)
		log_warn("export_dir_unusable", "dir=%s error=\"%s\"", dir, strerror(errno));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (pthread_create(&w->thread, NULL, worker_main, w)) {
		log_error("export_worker_unstarted", "msg=\"exports will not run\"");
		w->thread = 0;
	}
	return w;
}

void export_worker_wake(struct export_worker *w)
{
	pthread_mutex_lock(&w->mu);
	w->woken = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void export_worker_stop(struct export_worker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (w->thread)
		pthread_join(w->thread, NULL);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w->url);
	free(w->dir);
	free(w);
}
