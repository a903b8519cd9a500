/*
 * The libFuzzer entry points every harness in tests/fuzz/ defines. Under
 * `make fuzz` libFuzzer's own main calls them; under `make fuzz-replay`
 * replay.c does, once for each file of the harness's committed corpus.
 */
#ifndef TESTS_FUZZ_FUZZ_H
#define TESTS_FUZZ_FUZZ_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Called once before the first input; optional (replay.c finds it weakly). */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/*
 * Runs one input. Returns 0; a broken invariant aborts through
 * fuzz_fail() so that both drivers count it as a crash.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reports which invariant broke, then aborts. */
#define fuzz_fail(...) fuzz_fail_at(__FILE__, __LINE__, __VA_ARGS__)
#define fuzz_check(cond, ...) \
	do { if (!(cond)) fuzz_fail(__VA_ARGS__); } while (0)

static inline void fuzz_fail_at(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));

static inline void fuzz_fail_at(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: invariant broken: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/*
 * True if s holds well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF). The harnesses' own check, written
 * apart from lib/'s so a bug there cannot hide itself.
 */
static inline bool fuzz_utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t k;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		i += k + 1;
	}
	return true;
}

/* Well-formed UTF-8 text: valid and without NUL bytes. */
static inline bool fuzz_utf8_text(const unsigned char *s, size_t n)
{
	return !memchr(s, '\0', n) && fuzz_utf8_valid(s, n);
}

#endif
