/*
 * Posting a batch to a webhook destination, with retries. libcurl does the
 * HTTP: keep-alive between batches, HTTPS with the system's CA
 * certificates verified, proxies from the environment, and timeouts; none
 * of which Weft should write again. It runs on the export worker's thread
 * only, so a destination that is slow or down delays exports, never
 * ingestion.
 *
 * A batch is delivered when the destination answers 2xx. 408, 429, 5xx
 * and failures to connect or to get an answer are retried after a wait
 * that doubles from retry_base_ms up to a minute; any other status is the
 * destination refusing the batch, and retrying would not change its mind.
 */
#include "export/export_int.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

#define CONNECT_TIMEOUT_S 10L
#define REQUEST_TIMEOUT_S 30L
#define MAX_WAIT_MS 60000
/* Bytes of a refusing destination's answer kept for the job's error. */
#define ANSWER_KEPT 200

struct webhook {
	CURL *curl;
	struct curl_slist *headers;
	char answer[ANSWER_KEPT + 1];
	size_t answer_len;
	const volatile bool *stop;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t keep_answer(char *data, size_t size, size_t n, void *arg)
{
	struct webhook *w = arg;
	size_t len = size * n, room = ANSWER_KEPT - w->answer_len;

	if (room) {
		size_t take = len < room ? len : room;

		memcpy(w->answer + w->answer_len, data, take);
		w->answer_len += take;
		w->answer[w->answer_len] = '\0';
	}
	return len;
}

/* Lets a stop interrupt a request under way. */
static int check_stop(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct webhook *w = arg;

	(void)a, (void)b, (void)c, (void)d;
	return w->stop && *w->stop;
}

struct webhook *webhook_new(const char *url, const volatile bool *stop)
{
	struct webhook *w = xcalloc(1, sizeof(*w));

	pthread_once(&curl_once, curl_init);
	w->stop = stop;
	w->curl = curl_easy_init();
	if (!w->curl) {
		free(w);
		return NULL;
	}
	w->headers = curl_slist_append(NULL, "Content-Type: application/json");
	w->headers = curl_slist_append(w->headers, "User-Agent: weft-export/1");
	curl_easy_setopt(w->curl, CURLOPT_URL, url);
	curl_easy_setopt(w->curl, CURLOPT_HTTPHEADER, w->headers);
	curl_easy_setopt(w->curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	curl_easy_setopt(w->curl, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
	curl_easy_setopt(w->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(w->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(w->curl, CURLOPT_WRITEFUNCTION, keep_answer);
	curl_easy_setopt(w->curl, CURLOPT_WRITEDATA, w);
	curl_easy_setopt(w->curl, CURLOPT_XFERINFOFUNCTION, check_stop);
	curl_easy_setopt(w->curl, CURLOPT_XFERINFODATA, w);
	curl_easy_setopt(w->curl, CURLOPT_NOPROGRESS, 0L);
	return w;
}

void webhook_free(struct webhook *w)
{
	if (!w)
		return;
	curl_slist_free_all(w->headers);
	curl_easy_cleanup(w->curl);
	free(w);
}

/* Sleeps ms, a tenth of a second at a time so a stop is seen: false if stopped. */
static bool wait_ms(const volatile bool *stop, int ms)
{
	while (ms > 0) {
		int step = ms < 100 ? ms : 100;
		struct timespec ts = { 0, step * 1000000L };

		if (stop && *stop)
			return false;
		nanosleep(&ts, NULL);
		ms -= step;
	}
	return !(stop && *stop);
}

int webhook_post(struct webhook *w, const char *body, size_t len, int retry_base_ms,
		 int max_attempts, int *attempts, char *err, size_t errlen)
{
	int wait = retry_base_ms > 0 ? retry_base_ms : 1000;

	*attempts = 0;
	for (;;) {
		long status = 0;
		CURLcode cc;

		w->answer_len = 0;
		w->answer[0] = '\0';
		curl_easy_setopt(w->curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(w->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		cc = curl_easy_perform(w->curl);
		(*attempts)++;
		if (w->stop && *w->stop)
			return WEFT_ESHUTDOWN;
		if (cc == CURLE_OK) {
			curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &status);
			if (status >= 200 && status < 300)
				return 0;
			snprintf(err, errlen, "the webhook answered %ld: %s", status, w->answer);
			if (status != 408 && status != 429 && status < 500)
				return WEFT_EIO;
		} else {
			snprintf(err, errlen, "the webhook could not be reached: %s",
				 curl_easy_strerror(cc));
		}
		if (*attempts >= (max_attempts > 0 ? max_attempts : 8))
			return WEFT_EIO;
		log_warn("export_webhook_retry", "attempt=%d wait_ms=%d error=\"%s\"", *attempts,
			 wait, err);
		if (!wait_ms(w->stop, wait))
			return WEFT_ESHUTDOWN;
		wait = wait * 2 > MAX_WAIT_MS ? MAX_WAIT_MS : wait * 2;
	}
}
