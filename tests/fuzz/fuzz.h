/*
 * The libFuzzer entry points every harness in tests/fuzz/ defines. Under
 * `make fuzz` libFuzzer's own main calls them; under `make fuzz-replay`
 * replay.c does, once for each file of the harness's committed corpus.
 */
#ifndef TESTS_FUZZ_FUZZ_H
#define TESTS_FUZZ_FUZZ_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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

#endif
