/*
 * Allocation wrappers. Out of memory is not an error Weft can recover from
 * in the middle of a request, so these abort with a message instead of
 * returning NULL (redis's zmalloc, git's xmalloc): callers never check.
 */
#ifndef LIB_ALLOC_H
#define LIB_ALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Multiplies for an array size, aborting on overflow. */
size_t xmul(size_t a, size_t b);

#endif
