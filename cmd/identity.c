/*
 * weft identity: maintenance of the identity graph's saved state.
 *   rebuild [--workspace W]  recompute it from the log under the current rules
 *   digest                   print each workspace's graph digest (determinism checks)
 */
#include "cmd/cmd.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "identity/identity.h"
#include "lib/err.h"

static const char usage[] =
	"usage: weft identity rebuild [--workspace NAME] [options]\n"
	"       weft identity digest [options]\n"
	"\n"
	"rebuild  recomputes the identity graph of one workspace (default: every\n"
	"         workspace) from the event log alone, under the rules and blocked\n"
	"         values in force now, and saves it. Stop 'weft serve' first: the\n"
	"         rebuild refuses while a server holds the state. Shows progress\n"
	"         on a terminal.\n"
	"digest   prints, per workspace, the saved graph's digest and size. The\n"
	"         same log under the same rules always gives the same digest.\n"
	"\n"
	"  --workspace NAME     rebuild only this workspace\n" CMD_COMMON_HELP;

enum { OPT_WORKSPACE = CMD_OPT_FIRST_OWN };

static void print_digest(void *arg, int64_t ws, const uint8_t digest[16],
			 const struct identity_stats *st)
{
	(void)arg;
	printf("workspace_id=%lld digest=", (long long)ws);
	for (int i = 0; i < 16; i++)
		printf("%02x", digest[i]);
	printf(" identifiers=%llu profiles=%llu merges=%llu\n",
	       (unsigned long long)st->identifiers, (unsigned long long)st->profiles,
	       (unsigned long long)st->merges);
}

int cmd_identity(int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_COMMON_OPTIONS,
		{ "workspace", required_argument, NULL, OPT_WORKSPACE },
		{ 0 },
	};
	struct cmd_config cfg;
	const char *workspace = NULL, *sub;
	char err[512] = "";
	int opt, rc;

	cmd_config_defaults(&cfg);
	if (argc < 2 || argv[1][0] == '-') {
		bool help = argc >= 2 && strcmp(argv[1], "--help") == 0;

		fputs(usage, help ? stdout : stderr);
		return help ? 0 : 2;
	}
	sub = argv[1];
	argc--;
	argv++;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == CMD_OPT_HELP) {
			fputs(usage, stdout);
			return 0;
		}
		if (opt == OPT_WORKSPACE && strcmp(sub, "rebuild") == 0) {
			workspace = optarg;
			continue;
		}
		if (cmd_config_option(&cfg, opt, optarg) != 1) {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind < argc || (strcmp(sub, "rebuild") && strcmp(sub, "digest"))) {
		fprintf(stderr, "weft identity: unexpected argument '%s'\n\n%s",
			optind < argc ? argv[optind] : sub, usage);
		return 2;
	}
	if (cmd_config_finish(&cfg, true))
		return 1;
	if (strcmp(sub, "digest") == 0) {
		int64_t seq = 0;

		rc = engine_saved_digests(cfg.database_url, print_digest, NULL, &seq, err,
					  sizeof(err));
		if (!rc)
			printf("checkpoint_seq=%lld\n", (long long)seq);
	} else {
		bool tty = isatty(STDERR_FILENO);

		rc = engine_rebuild(cfg.database_url, workspace, tty ? cmd_progress_bar : NULL,
				    NULL, err, sizeof(err));
		if (tty)
			fputc('\n', stderr);
		if (!rc) {
			int64_t seq = 0;

			fprintf(stderr, "weft identity: rebuilt %s\n",
				workspace ? workspace : "every workspace");
			rc = engine_saved_digests(cfg.database_url, print_digest, NULL, &seq, err,
						  sizeof(err));
		}
	}
	if (rc) {
		fprintf(stderr, "weft identity: %s\n", err[0] ? err : weft_strerror(rc));
		return 1;
	}
	return 0;
}
