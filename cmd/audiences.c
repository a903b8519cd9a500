/*
 * weft audiences: maintenance of the audiences' and computed traits' state.
 *   recompute [--workspace W] [--check]  replay the log into a new copy and
 *                                        compare it with the kept state
 */
#include "cmd/cmd.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "lib/err.h"

static const char usage[] =
	"usage: weft audiences recompute [--workspace NAME] [--check] [options]\n"
	"\n"
	"recompute  replays the whole event log into a new copy of every audience\n"
	"           and computed trait (of one workspace with --workspace) and\n"
	"           compares it with the state kept as events arrived: one line per\n"
	"           audience and computed trait, then a summary. Where they differ,\n"
	"           the recomputed members and values replace the kept ones and are\n"
	"           saved, each entry and exit recorded with cause 'recompute'.\n"
	"           Stop 'weft serve' first: it refuses while a server holds the\n"
	"           state. Shows progress on a terminal.\n"
	"\n"
	"exit status: 0 when everything agreed or the recomputed state was saved,\n"
	"3 with --check when something differs, 1 on errors, 2 on usage errors.\n"
	"\n"
	"  --workspace NAME     only this workspace\n"
	"  --check              compare only: never save anything\n" CMD_COMMON_HELP;

enum { OPT_WORKSPACE = CMD_OPT_FIRST_OWN, OPT_CHECK };

/* Exit status of a --check that found a difference (scripts tell it from a failure). */
#define EXIT_DIFFERS 3

struct tally {
	bool bar;			/* a progress bar is on standard error's line */
	int64_t workspace_id;		/* of the last line printed */
	size_t audiences, traits, differ;
};

/* " (prf_1, prf_2, ...)": the samples, and "..." when there are more. */
static void print_samples(const uint64_t *sample, size_t n, uint64_t count)
{
	printf(" (");
	for (size_t i = 0; i < n; i++)
		printf("%sprf_%llu", i ? ", " : "", (unsigned long long)sample[i]);
	printf("%s)", count > n ? ", ..." : "");
}

static void progress(void *arg, int64_t done, int64_t total)
{
	struct tally *t = arg;

	cmd_progress_bar(NULL, done, total);
	t->bar = true;
}

static void print_report(void *arg, const struct engine_recompute_report *r)
{
	struct tally *t = arg;

	if (t->bar) {
		/* Both on a terminal: the line goes where the bar was, the bar comes back below. */
		fputs("\r\033[K", stderr);
		fflush(stderr);
		t->bar = false;
	}
	if (r->workspace_id != t->workspace_id) {
		printf("workspace_id=%lld\n", (long long)r->workspace_id);
		t->workspace_id = r->workspace_id;
	}
	if (r->audience) {
		t->audiences++;
		printf("audience %s: %llu members, recomputed %llu: ", r->key,
		       (unsigned long long)r->size, (unsigned long long)r->recomputed_size);
		if (!r->differs)
			printf("same");
		if (r->only_recomputed) {
			printf("%llu only recomputed", (unsigned long long)r->only_recomputed);
			print_samples(r->sample_recomputed, r->nsample_recomputed,
				      r->only_recomputed);
		}
		if (r->only_incremental) {
			printf("%s%llu only incremental", r->only_recomputed ? ", " : "",
			       (unsigned long long)r->only_incremental);
			print_samples(r->sample_incremental, r->nsample_incremental,
				      r->only_incremental);
		}
		if (r->differs && !r->only_recomputed && !r->only_incremental)
			printf("the same members, a wrong count");
	} else {
		t->traits++;
		printf("computed trait %s: %llu profiles: ", r->key,
		       (unsigned long long)r->profiles);
		if (r->differs) {
			printf("%llu differ", (unsigned long long)r->differ);
			print_samples(r->sample_differ, r->nsample_differ, r->differ);
		} else {
			printf("same");
		}
	}
	putchar('\n');
	fflush(stdout);
	t->differ += r->differs;
}

int cmd_audiences(int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_COMMON_OPTIONS,
		{ "workspace", required_argument, NULL, OPT_WORKSPACE },
		{ "check", no_argument, NULL, OPT_CHECK },
		{ 0 },
	};
	struct cmd_config cfg;
	struct tally t = { 0 };
	const char *workspace = NULL;
	bool check = false, tty;
	char err[512] = "";
	int opt, rc;

	cmd_config_defaults(&cfg);
	if (argc < 2 || argv[1][0] == '-') {
		bool help = argc >= 2 && strcmp(argv[1], "--help") == 0;

		fputs(usage, help ? stdout : stderr);
		return help ? 0 : 2;
	}
	if (strcmp(argv[1], "recompute") != 0) {
		fprintf(stderr, "weft audiences: unknown command '%s'\n\n%s", argv[1], usage);
		return 2;
	}
	argc--;
	argv++;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == CMD_OPT_HELP) {
			fputs(usage, stdout);
			return 0;
		}
		if (opt == OPT_WORKSPACE) {
			workspace = optarg;
			continue;
		}
		if (opt == OPT_CHECK) {
			check = true;
			continue;
		}
		if (cmd_config_option(&cfg, opt, optarg) != 1) {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "weft audiences: unexpected argument '%s'\n\n%s", argv[optind],
			usage);
		return 2;
	}
	if (cmd_config_finish(&cfg, true))
		return 1;
	tty = isatty(STDERR_FILENO);
	t.workspace_id = -1;
	rc = engine_audiences_recompute(cfg.database_url, workspace, check, tty ? progress : NULL,
					&t, print_report, &t, err, sizeof(err));
	if (t.bar)
		fputc('\n', stderr);
	if (rc) {
		fprintf(stderr, "weft audiences: %s\n", err[0] ? err : weft_strerror(rc));
		return 1;
	}
	if (!t.audiences && !t.traits) {
		printf("no audiences or computed traits to recompute\n");
		return 0;
	}
	printf("%zu audiences, %zu computed traits: ", t.audiences, t.traits);
	if (!t.differ)
		printf("all the same, nothing saved\n");
	else if (check)
		printf("%zu differ, nothing saved (--check)\n", t.differ);
	else
		printf("%zu differed, the recomputed state is saved\n", t.differ);
	return t.differ && check ? EXIT_DIFFERS : 0;
}
