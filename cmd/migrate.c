/*
 * weft migrate: applies the schema migrations the binary carries.
 */
#include "cmd/cmd.h"

#include <stdio.h>

#include "store/store.h"

static const char usage[] =
	"usage: weft migrate [options]\n"
	"\n"
	"Applies every schema migration this binary knows that the database\n"
	"has not seen, in order. Safe to run again; refuses a database that a\n"
	"newer weft migrated.\n"
	"\n" CMD_COMMON_HELP;

int cmd_migrate(int argc, char **argv)
{
	static const struct option opts[] = { CMD_COMMON_OPTIONS, { 0 } };
	struct cmd_config cfg;
	struct store *s;
	int opt, rc, version = 0;

	cmd_config_defaults(&cfg);
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == CMD_OPT_HELP) {
			fputs(usage, stdout);
			return 0;
		}
		if (cmd_config_option(&cfg, opt, optarg) != 1) {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "weft migrate: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	if (cmd_config_finish(&cfg, true) || cmd_connect(&cfg, &s))
		return 1;
	rc = store_migrate(s);
	if (!rc)
		rc = store_schema_version(s, &version);
	store_free(s);
	if (rc) {
		fprintf(stderr, "weft migrate: failed; see the log above\n");
		return 1;
	}
	fprintf(stderr, "weft migrate: schema at version %d\n", version);
	return 0;
}
