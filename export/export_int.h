/*
 * Internals shared by the files of export/; no other folder includes this.
 */
#ifndef EXPORT_EXPORT_INT_H
#define EXPORT_EXPORT_INT_H

#include "export/export.h"

/* webhook.c: one destination's connection. */
struct webhook;

/* NULL if libcurl cannot start. stop, if set, interrupts a request or a wait. */
struct webhook *webhook_new(const char *url, const volatile bool *stop);
void webhook_free(struct webhook *w);
/*
 * Posts body (JSON) until the destination takes it (2xx): 0. WEFT_EIO with
 * err when it refuses it (a 4xx other than 408 and 429) or max_attempts
 * tries failed; WEFT_ESHUTDOWN when stopped. *attempts: the tries made.
 */
int webhook_post(struct webhook *w, const char *body, size_t len, int retry_base_ms,
		 int max_attempts, int *attempts, char *err, size_t errlen);

#endif
