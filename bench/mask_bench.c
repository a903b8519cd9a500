/*
 * Masking benchmark: the cost of privacy_mask_event() with the default
 * policy on a realistic Segment track event (~670 bytes: 16 strings and 24
 * keys to scan, one email to hash, one IP to truncate), and next to it the
 * ceilings measured in the same run: a jansson parse and a deep copy of the
 * same event, and one identifier key. Times are thread CPU time, so other
 * processes on the machine disturb them less; the copies masking needs are
 * made outside the timed loop.
 *
 *   cc -O2 -I. bench/mask_bench.c build/libweft.a $(pkg-config --libs jansson libcrypto)
 *   ./a.out [iterations]
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "privacy/privacy.h"

static const char event_json[] =
	"{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"user_8c1f2a77\","
	"\"anonymousId\":\"3f1c9e2a-7b4d-4e8f-9a6b-2c5d8e1f0a3b\","
	"\"messageId\":\"ajs-4f8c2b1e-9d3a-4c7e-b6f5-1a2b3c4d\","
	"\"timestamp\":\"2024-01-15T10:00:00.123Z\","
	"\"properties\":{\"order_id\":\"ORD-50314\",\"total\":129.99,"
	"\"products\":[{\"product_id\":\"sku-4411\",\"name\":\"Trail Shoe\","
	"\"price\":89.99}]},"
	"\"context\":{\"ip\":\"203.0.113.42\",\"locale\":\"de-DE\","
	"\"userAgent\":\"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
	"(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\","
	"\"page\":{\"url\":\"https://shop.example.com/checkout\"},"
	"\"library\":{\"name\":\"analytics.js\",\"version\":\"next-1.62.0\"},"
	"\"traits\":{\"email\":\"jane.doe@example.com\"}}}";

/* Thread CPU time: what the masking costs, less what other processes take. */
static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

#define BATCH 16

int main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 200000;
	char dir[] = "/tmp/mask_bench.XXXXXX", path[64];
	struct privacy_master *m;
	struct privacy_hasher *h;
	uint8_t key[PRIVACY_KEY_BYTES];
	static json_t *copies[BATCH];
	json_t *event;
	double t0, mask_total = 0, copy_total = 0, parse_us, hash_us, mask_us;
	long changed = 0, done = 0;

	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/master.key", dir);
	if (privacy_master_create(path) != 0 || privacy_master_load(path, &m) != 0)
		return 1;
	unlink(path);
	rmdir(dir);
	h = privacy_hasher_new(m, 42);
	event = json_loads(event_json, 0, NULL);
	if (!event)
		return 1;

	/* masking changes the event, so each call gets a fresh copy, made untimed */
	while (done < iters) {
		long n = iters - done < BATCH ? iters - done : BATCH;

		t0 = now_us();
		for (long i = 0; i < n; i++)
			copies[i] = json_deep_copy(event);
		copy_total += now_us() - t0;
		t0 = now_us();
		for (long i = 0; i < n; i++)
			changed += privacy_mask_event(NULL, h, copies[i]);
		mask_total += now_us() - t0;
		for (long i = 0; i < n; i++)
			json_decref(copies[i]);
		done += n;
	}
	mask_us = mask_total / iters;

	t0 = now_us();
	for (long i = 0; i < iters; i++)
		json_decref(json_loads(event_json, 0, NULL));
	parse_us = (now_us() - t0) / iters;

	t0 = now_us();
	for (long i = 0; i < iters; i++)
		privacy_identifier_key(h, "email", "jane.doe@example.com", 20, key);
	hash_us = (now_us() - t0) / iters;

	printf("event: %zu bytes, %ld values changed per event, %ld events\n", strlen(event_json),
	       changed / iters, iters);
	printf("mask_event (default policy): %.2f us/event (thread CPU time)\n", mask_us);
	printf("ceilings in this run: json_loads %.2f us, json_deep_copy %.2f us, "
	       "one identifier key %.3f us\n", parse_us, copy_total / iters, hash_us);
	printf("masking costs %.0f%% of a jansson parse of the same event\n",
	       100 * mask_us / parse_us);

	json_decref(event);
	privacy_hasher_free(h);
	privacy_master_free(m);
	return 0;
}
