/*
 * weft keys: create, list and revoke API keys. A key is shown once, on
 * standard output, when it is created; the database keeps its SHA-256.
 */
#include "cmd/cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/digest.h"
#include "lib/err.h"
#include "store/store.h"

static const char usage[] =
	"usage: weft keys create --workspace NAME --role write|read|admin\n"
	"       weft keys list [--workspace NAME] [--all]\n"
	"       weft keys revoke KEY_ID\n"
	"\n"
	"create  makes a key for the workspace (created if it does not exist)\n"
	"        and prints the key alone on standard output. write keys send\n"
	"        events; read keys look profiles up; admin keys change settings.\n"
	"list    shows keys (id, workspace, role, prefix, created, status);\n"
	"        --all includes revoked ones.\n"
	"revoke  stops a key from working; a running weft notices within 2 s.\n"
	"\n"
	"options:\n"
	"  --workspace NAME     the workspace\n"
	"  --role ROLE          write, read or admin\n"
	"  --all                with list: include revoked keys\n"
	CMD_COMMON_HELP;

enum { OPT_WORKSPACE = CMD_OPT_FIRST_OWN, OPT_ROLE, OPT_ALL };

static int keys_create(struct store *s, const char *workspace, const char *role)
{
	static const char *prefixes[] = { "wk_", "rk_", "ak_" };
	enum store_role r;
	uint8_t raw[16], hash[32];
	char key[3 + 32 + 1], prefix[8];
	int64_t ws, key_id;
	bool created;
	int rc;

	if (store_role_parse(role, &r)) {
		fprintf(stderr, "weft keys create: unknown role '%s'; use write, "
			"read or admin\n", role);
		return 2;
	}
	rc = store_workspace_get(s, workspace, true, &ws, &created);
	if (rc) {
		fprintf(stderr, "weft keys create: cannot create workspace '%s' "
			"(names are 1-63 letters, digits, '_', '.', '-')\n",
			workspace);
		return 1;
	}
	if (created)
		fprintf(stderr, "weft keys create: created workspace '%s'\n",
			workspace);
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		fprintf(stderr, "weft keys create: no randomness available\n");
		return 1;
	}
	memcpy(key, prefixes[r], 3);
	hex_encode(raw, sizeof(raw), key + 3);
	sha256(key, strlen(key), hash);
	snprintf(prefix, sizeof(prefix), "%.7s", key);
	rc = store_key_insert(s, ws, r, hash, prefix, &key_id);
	if (rc) {
		fprintf(stderr, "weft keys create: cannot store the key\n");
		return 1;
	}
	fprintf(stderr, "weft keys create: key %lld (%s) for workspace '%s'\n",
		(long long)key_id, role, workspace);
	printf("%s\n", key);
	return 0;
}

static int keys_list(struct store *s, const char *workspace, bool all)
{
	struct store_key *keys;
	size_t n;

	if (store_keys_load(s, workspace, all, &keys, &n)) {
		fprintf(stderr, "weft keys list: cannot read keys\n");
		return 1;
	}
	printf("%-8s %-20s %-6s %-8s %-21s %s\n", "KEY_ID", "WORKSPACE", "ROLE",
	       "PREFIX", "CREATED", "STATUS");
	for (size_t i = 0; i < n; i++)
		printf("%-8lld %-20s %-6s %-8s %-21s %s\n",
		       (long long)keys[i].key_id, keys[i].workspace,
		       store_role_name(keys[i].role), keys[i].prefix,
		       keys[i].created_at, keys[i].revoked ? "revoked" : "active");
	free(keys);
	return 0;
}

static int keys_revoke(struct store *s, const char *id)
{
	char *end;
	long long key_id = strtoll(id, &end, 10);
	int rc;

	if (*end || key_id <= 0) {
		fprintf(stderr, "weft keys revoke: '%s' is not a key id; see "
			"'weft keys list'\n", id);
		return 2;
	}
	rc = store_key_revoke(s, key_id);
	if (rc == WEFT_ENOTFOUND) {
		fprintf(stderr, "weft keys revoke: no active key %lld\n", key_id);
		return 1;
	}
	if (rc) {
		fprintf(stderr, "weft keys revoke: failed\n");
		return 1;
	}
	fprintf(stderr, "weft keys revoke: key %lld revoked\n", key_id);
	return 0;
}

int cmd_keys(int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_COMMON_OPTIONS,
		{ "workspace", required_argument, NULL, OPT_WORKSPACE },
		{ "role", required_argument, NULL, OPT_ROLE },
		{ "all", no_argument, NULL, OPT_ALL },
		{ 0 },
	};
	struct cmd_config cfg;
	const char *workspace = NULL, *role = NULL, *action;
	bool all = false;
	struct store *s;
	int opt, rc;

	cmd_config_defaults(&cfg);
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == CMD_OPT_HELP) {
			fputs(usage, stdout);
			return 0;
		}
		if (opt == OPT_WORKSPACE)
			workspace = optarg;
		else if (opt == OPT_ROLE)
			role = optarg;
		else if (opt == OPT_ALL)
			all = true;
		else if (cmd_config_option(&cfg, opt, optarg) != 1) {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		fputs(usage, stderr);
		return 2;
	}
	action = argv[optind];
	if (strcmp(action, "create") == 0 && (!workspace || !role)) {
		fprintf(stderr, "weft keys create: needs --workspace and --role\n");
		return 2;
	}
	if (strcmp(action, "revoke") == 0 && optind + 1 >= argc) {
		fprintf(stderr, "weft keys revoke: needs a KEY_ID\n");
		return 2;
	}
	if (strcmp(action, "create") && strcmp(action, "list") &&
	    strcmp(action, "revoke")) {
		fprintf(stderr, "weft keys: unknown action '%s'\n", action);
		fputs(usage, stderr);
		return 2;
	}
	if (cmd_config_finish(&cfg, true) || cmd_connect(&cfg, &s))
		return 1;
	if (store_schema_check(s)) {
		store_free(s);
		return 1;
	}
	if (strcmp(action, "create") == 0)
		rc = keys_create(s, workspace, role);
	else if (strcmp(action, "list") == 0)
		rc = keys_list(s, workspace, all);
	else
		rc = keys_revoke(s, argv[optind + 1]);
	store_free(s);
	return rc;
}
