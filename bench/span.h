/*
 * Timing and memory figures for the identity benchmarks: a span adds up
 * wall time and this thread's CPU time over the stretches it is started
 * and stopped around. The machines are shared: when other work takes the
 * cores, wall time grows and CPU time does not, so the benchmarks print
 * both.
 */
#ifndef BENCH_SPAN_H
#define BENCH_SPAN_H

#include <stddef.h>

struct span {
	double wall, cpu;	/* seconds */
};

#define SPAN_INIT { 0, 0 }

void span_start(struct span *t);
void span_stop(struct span *t);

/* Monotonic wall-clock time in seconds. */
double span_now(void);

/* The process's resident set, in bytes (0 if /proc cannot tell). */
size_t span_rss_bytes(void);

#endif
