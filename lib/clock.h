/*
 * Clocks for timing and timed waits.
 */
#ifndef LIB_CLOCK_H
#define LIB_CLOCK_H

#include <time.h>

/* Monotonic seconds (for measuring intervals, never for dates). */
double clock_mono(void);
/* The CLOCK_REALTIME time s seconds from now: a pthread_cond_timedwait() deadline. */
struct timespec clock_deadline(double s);

#endif
