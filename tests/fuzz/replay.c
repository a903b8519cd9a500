/*
 * The replay driver of `make fuzz-replay` (SQLite's fuzzcheck): a main for
 * one harness, built with the ordinary compiler, that runs every file of a
 * corpus through LLVMFuzzerTestOneInput once. This is how `make test` keeps
 * each input a fuzzer ever found interesting passing, without clang.
 *
 *   replay/NAME [DIR|FILE]...
 *
 * With no argument it replays tests/fuzz/corpus/NAME (run from the
 * repository root, as scripts/test-all does). Files are run in name order,
 * each from a buffer of exactly its size so that a sanitizer sees any read
 * past the end. It ends with "fuzz-NAME: N passed, M failed" and exits 0
 * only when nothing failed; a crash names the input before the process
 * dies, and still prints that line with the failure counted.
 *
 * FUZZ_NAME (the harness's name) comes from the Makefile.
 */
#define _GNU_SOURCE	/* asprintf */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"

#ifndef FUZZ_NAME
#error "build with -DFUZZ_NAME='\"name\"'"
#endif

/* Optional in a harness; NULL when it does not define one. */
extern int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));
/* Present only in sanitizer runtimes: lets us speak before ASan exits. */
extern void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

static const char *current;	/* the input being run, for a crash report */
static unsigned long passed;
static unsigned long failed;

/* Async-signal-safe output: the process may be dying when this runs. */
static void say(const char *s)
{
	size_t n = strlen(s);

	while (n > 0) {
		ssize_t w = write(STDOUT_FILENO, s, n);

		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static void say_ulong(unsigned long v)
{
	char tmp[24];
	size_t i = sizeof(tmp) - 1;

	tmp[i] = '\0';
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	say(tmp + i);
}

static void say_summary(void)
{
	say("fuzz-" FUZZ_NAME ": ");
	say_ulong(passed);
	say(" passed, ");
	say_ulong(failed);
	say(" failed\n");
}

static void on_death(void)
{
	if (!current)
		return;
	say("fuzz-" FUZZ_NAME ": crashed on '");
	say(current);
	say("'\n");
	current = NULL;
	failed++;
	say_summary();
}

static void on_signal(int sig)
{
	on_death();
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * A sanitizer reports its own errors (and a handler of ours would hide its
 * SEGV report), so under one only abort() (assert, fuzz_fail) is ours.
 */
static void install_crash_reports(void)
{
	static const int plain[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL };

	fflush(stdout);
	signal(SIGABRT, on_signal);
	if (__sanitizer_set_death_callback) {
		__sanitizer_set_death_callback(on_death);
		return;
	}
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		signal(plain[i], on_signal);
}

static bool read_file(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	uint8_t *data;

	if (!f)
		return false;
	if (fstat(fileno(f), &st) < 0) {
		fclose(f);
		return false;
	}
	/* Exactly the file's size, so ASan catches a read one past the end. */
	data = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!data) {
		fclose(f);
		return false;
	}
	if (fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		free(data);
		fclose(f);
		return false;
	}
	fclose(f);
	*out = data;
	*len = (size_t)st.st_size;
	return true;
}

static void run_file(const char *path)
{
	uint8_t *data;
	size_t len;

	if (!read_file(path, &data, &len)) {
		printf("fuzz-%s: cannot read '%s': %s\n", FUZZ_NAME, path, strerror(errno));
		failed++;
		return;
	}
	current = path;
	fflush(stdout);
	LLVMFuzzerTestOneInput(data, len);
	current = NULL;
	free(data);
	passed++;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (!d) {
		printf("fuzz-%s: cannot open corpus '%s': %s\n", FUZZ_NAME, dir, strerror(errno));
		failed++;
		return;
	}
	while ((de = readdir(d))) {
		char *path;
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&path, "%s/%s", dir, de->d_name) < 0)
			abort();
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
			free(path);
			continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				abort();
		}
		names[n++] = path;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		run_file(names[i]);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	static char *deflt[] = { "tests/fuzz/corpus/" FUZZ_NAME, NULL };
	char **args;
	int nargs;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	install_crash_reports();
	args = argc > 1 ? argv + 1 : deflt;
	nargs = argc > 1 ? argc - 1 : 1;
	for (int i = 0; i < nargs; i++) {
		struct stat st;

		if (stat(args[i], &st) == 0 && S_ISREG(st.st_mode))
			run_file(args[i]);
		else
			run_dir(args[i]);
	}
	fflush(stdout);
	say_summary();
	return failed ? 1 : 0;
}
