/*
 * weft: the customer data platform core. This file only picks the
 * subcommand; each lives in cmd/.
 */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"

static const char usage[] =
	"usage: weft <command> [options]\n"
	"\n"
	"commands:\n"
	"  serve      run the HTTP API (collector, profiles, admin)\n"
	"  migrate    apply database schema migrations\n"
	"  keys       create, list and revoke API keys\n"
	"  pii-key    create the PII master key file\n"
	"  audiences  recompute audiences and computed traits from the log\n"
	"  export     write an audience's members to a CSV or NDJSON file\n"
	"\n"
	"'weft <command> --help' describes each command.\n";

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int argc, char **argv);
	} commands[] = {
		{ "serve", cmd_serve },
		{ "migrate", cmd_migrate },
		{ "keys", cmd_keys },
		{ "pii-key", cmd_pii_key },
		{ "identity", cmd_identity },
		{ "audiences", cmd_audiences },
		{ "export", cmd_export },
	};

	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "weft: unknown command '%s'\n\n%s", argv[1], usage);
	return 2;
}
