/*
 * Worker thread with an ordered task queue; see worker.h. Finished tasks
 * are collected under the mutex and delivered by one libevent event made
 * active from the worker thread.
 */
#include "lib/worker.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "lib/alloc.h"
#include "lib/log.h"

struct worker {
	struct event *done_ev;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct worker_task *head, *tail;	/* to run */
	struct worker_task *done_head, *done_tail;
	bool stopping;
};

static void push(struct worker_task **head, struct worker_task **tail,
		 struct worker_task *t)
{
	t->next = NULL;
	if (*tail)
		(*tail)->next = t;
	else
		*head = t;
	*tail = t;
}

static void deliver(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct worker_task *t;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&w->mu);
	t = w->done_head;
	w->done_head = w->done_tail = NULL;
	pthread_mutex_unlock(&w->mu);
	while (t) {
		struct worker_task *next = t->next;

		t->done(t);
		t = next;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->head && !w->stopping)
			pthread_cond_wait(&w->cv, &w->mu);
		struct worker_task *t = w->head;

		if (!t)
			break;
		w->head = t->next;
		if (!w->head)
			w->tail = NULL;
		pthread_mutex_unlock(&w->mu);
		t->run(t);
		pthread_mutex_lock(&w->mu);
		push(&w->done_head, &w->done_tail, t);
		event_active(w->done_ev, 0, 0);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

struct worker *worker_new(struct event_base *base, const char *name)
{
	struct worker *w = xcalloc(1, sizeof(*w));

	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->done_ev = event_new(base, -1, 0, deliver, w);
	if (!w->done_ev || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		log_error("thread_create_failed", "what=%s", name);
		abort();
	}
	return w;
}

void worker_submit(struct worker *w, struct worker_task *t)
{
	pthread_mutex_lock(&w->mu);
	push(&w->head, &w->tail, t);
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	deliver(-1, 0, w);
	event_free(w->done_ev);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}
