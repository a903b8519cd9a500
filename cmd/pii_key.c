/*
 * weft pii-key create FILE: makes the master secret that identity keys and
 * masking hashes derive from. It lives outside the database; losing it
 * means lookups by email or phone no longer match what was stored.
 */
#include "cmd/cmd.h"

#include <stdio.h>
#include <string.h>

#include "privacy/privacy.h"

static const char usage[] =
	"usage: weft pii-key create FILE\n"
	"\n"
	"Writes 32 random bytes to FILE with mode 0600. Refuses to overwrite an\n"
	"existing file: a new key would make every stored identifier key and\n"
	"masking hash unmatchable. Keep a copy somewhere safe, outside the\n"
	"database and its backups.\n";

int cmd_pii_key(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--help") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc != 3 || strcmp(argv[1], "create") != 0) {
		fputs(usage, stderr);
		return 2;
	}
	if (privacy_master_create(argv[2])) {
		fprintf(stderr, "weft pii-key create: cannot create '%s' (does it "
			"exist already?)\n", argv[2]);
		return 1;
	}
	fprintf(stderr, "weft pii-key create: wrote '%s'\n", argv[2]);
	return 0;
}
