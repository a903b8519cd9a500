/* Wall and CPU time, resident memory (bench/span.h). */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "bench/span.h"

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double span_now(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

void span_start(struct span *t)
{
	t->wall -= clock_s(CLOCK_MONOTONIC);
	t->cpu -= clock_s(CLOCK_THREAD_CPUTIME_ID);
}

void span_stop(struct span *t)
{
	t->wall += clock_s(CLOCK_MONOTONIC);
	t->cpu += clock_s(CLOCK_THREAD_CPUTIME_ID);
}

size_t span_rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size, rss = 0;

	if (f) {
		if (fscanf(f, "%lu %lu", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (size_t)sysconf(_SC_PAGESIZE);
}
