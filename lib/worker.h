/*
 * A worker thread that runs tasks in order, off the event loop, and hands
 * each finished task back to the loop. For blocking work (a database round
 * trip) that an event-loop thread must not wait for.
 */
#ifndef LIB_WORKER_H
#define LIB_WORKER_H

struct event_base;
struct worker;

/* run() is called on the worker thread, then done() on base's thread. */
struct worker_task {
	void (*run)(struct worker_task *t);
	void (*done)(struct worker_task *t);
	struct worker_task *next;	/* the worker's link */
};

/* base must have been created after evthread_use_pthreads(). */
struct worker *worker_new(struct event_base *base, const char *name);
/* Queues t; the caller keeps t alive until its done() is called. */
void worker_submit(struct worker *w, struct worker_task *t);
/* Runs what is queued, stops the thread, then calls every pending done(). */
void worker_free(struct worker *w);

#endif
