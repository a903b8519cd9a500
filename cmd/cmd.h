/*
 * cmd: the subcommands of the weft binary (git's builtin/ layout). Each
 * reads its configuration, wires modules together and holds no domain
 * logic of its own.
 */
#ifndef CMD_CMD_H
#define CMD_CMD_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Settings every subcommand shares. Defaults, then the environment
 * (WEFT_DATABASE_URL, WEFT_LISTEN, WEFT_DATA_DIR, WEFT_PII_KEY_FILE,
 * WEFT_LOG_LEVEL), then flags: flags win. Strings point into the
 * environment, argv or static storage; nothing is freed.
 */
struct cmd_config {
	const char *database_url;
	const char *listen;
	const char *data_dir;
	const char *pii_key_file;	/* default: <data_dir>/pii.key */
	const char *log_level;
};

/* getopt_long codes for the shared flags, above any short option. */
enum {
	CMD_OPT_DATABASE_URL = 1000,
	CMD_OPT_LISTEN,
	CMD_OPT_DATA_DIR,
	CMD_OPT_PII_KEY_FILE,
	CMD_OPT_LOG_LEVEL,
	CMD_OPT_HELP,
	CMD_OPT_FIRST_OWN,	/* commands number their own options from here */
};

#define CMD_COMMON_OPTIONS \
	{ "database-url", required_argument, NULL, CMD_OPT_DATABASE_URL }, \
	{ "listen", required_argument, NULL, CMD_OPT_LISTEN }, \
	{ "data-dir", required_argument, NULL, CMD_OPT_DATA_DIR }, \
	{ "pii-key-file", required_argument, NULL, CMD_OPT_PII_KEY_FILE }, \
	{ "log-level", required_argument, NULL, CMD_OPT_LOG_LEVEL }, \
	{ "help", no_argument, NULL, CMD_OPT_HELP }

#define CMD_COMMON_HELP \
	"  --database-url URL   PostgreSQL (env WEFT_DATABASE_URL)\n" \
	"  --data-dir DIR       data folder (env WEFT_DATA_DIR, default var)\n" \
	"  --pii-key-file FILE  PII master key (env WEFT_PII_KEY_FILE,\n" \
	"                       default DATA_DIR/pii.key)\n" \
	"  --log-level LEVEL    debug, info, warn or error (env WEFT_LOG_LEVEL)\n" \
	"  --help               this text\n"

void cmd_config_defaults(struct cmd_config *cfg);
/*
 * Applies one shared flag. Returns 1 if handled, 0 if the option is not a
 * shared one.
 */
int cmd_config_option(struct cmd_config *cfg, int opt, const char *arg);
/* Checks and finishes the configuration (log level, derived paths). */
int cmd_config_finish(struct cmd_config *cfg, bool need_database);

struct store;
/* Connects to the configured database, printing a clear error if it fails. */
int cmd_connect(const struct cmd_config *cfg, struct store **out);
/*
 * Draws "[####    ]  42%  N events" on standard error, over itself: the
 * progress callback of long commands (arg: what is counted, a string;
 * NULL: "events"). Call it only when standard error is a terminal, and
 * end the line when done.
 */
void cmd_progress_bar(void *arg, int64_t done, int64_t total);

int cmd_serve(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_pii_key(int argc, char **argv);
int cmd_identity(int argc, char **argv);
int cmd_audiences(int argc, char **argv);
int cmd_export(int argc, char **argv);

#endif
