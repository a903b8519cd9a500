/*
 * Fuzz harness for ingest_parse_time(), which reads the sentAt, timestamp
 * and originalTimestamp strings of every event. The input is the string
 * (cut at a NUL, as jansson hands it over). Whatever parses must format
 * with ingest_format_time() and parse back to the same instant, to the
 * millisecond the format keeps, as long as the year stays 0001-9999
 * (an offset can move the first and last day out of it).
 */
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"
#include "tests/fuzz/fuzz.h"

static int64_t floor_ms(int64_t us)
{
	int64_t r = us % 1000;

	return us - (r < 0 ? r + 1000 : r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	char text[40];
	int64_t us, back;

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	if (ingest_parse_time(s, &us) == 0) {
		ingest_format_time(us, text, sizeof(text));
		fuzz_check(strlen(text) >= 24, "'%s' formats as '%s'", s, text);
		if (text[4] == '-' && strncmp(text, "0000", 4) != 0) {
			fuzz_check(ingest_parse_time(text, &back) == 0,
				   "'%s' formats as '%s', which does not parse", s, text);
			fuzz_check(back == floor_ms(us),
				   "'%s' is %lld us, formats as '%s', which is %lld us", s,
				   (long long)us, text, (long long)back);
		}
	}
	free(s);
	return 0;
}
