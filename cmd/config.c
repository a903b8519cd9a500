/*
 * Configuration shared by the subcommands (defaults, environment, flags),
 * and the progress bar of the long ones.
 */
#include "cmd/cmd.h"

#include <stdio.h>
#include <stdlib.h>

#include "lib/err.h"
#include "lib/log.h"
#include "store/store.h"

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v && *v ? v : fallback;
}

void cmd_config_defaults(struct cmd_config *cfg)
{
	cfg->database_url = env_or("WEFT_DATABASE_URL", NULL);
	cfg->listen = env_or("WEFT_LISTEN", "127.0.0.1:8080");
	cfg->data_dir = env_or("WEFT_DATA_DIR", "var");
	cfg->pii_key_file = env_or("WEFT_PII_KEY_FILE", NULL);
	cfg->log_level = env_or("WEFT_LOG_LEVEL", "info");
}

int cmd_config_option(struct cmd_config *cfg, int opt, const char *arg)
{
	switch (opt) {
	case CMD_OPT_DATABASE_URL: cfg->database_url = arg; return 1;
	case CMD_OPT_LISTEN: cfg->listen = arg; return 1;
	case CMD_OPT_DATA_DIR: cfg->data_dir = arg; return 1;
	case CMD_OPT_PII_KEY_FILE: cfg->pii_key_file = arg; return 1;
	case CMD_OPT_LOG_LEVEL: cfg->log_level = arg; return 1;
	}
	return 0;
}

int cmd_config_finish(struct cmd_config *cfg, bool need_database)
{
	if (log_set_level_name(cfg->log_level)) {
		fprintf(stderr, "weft: unknown log level '%s'; use debug, info, "
			"warn or error\n", cfg->log_level);
		return WEFT_EINVAL;
	}
	if (!cfg->pii_key_file) {
		static char path[4096];

		snprintf(path, sizeof(path), "%s/pii.key", cfg->data_dir);
		cfg->pii_key_file = path;
	}
	if (need_database && !cfg->database_url) {
		fprintf(stderr, "weft: no database given; set WEFT_DATABASE_URL "
			"or pass --database-url (make run sets one up)\n");
		return WEFT_EINVAL;
	}
	return 0;
}

int cmd_connect(const struct cmd_config *cfg, struct store **out)
{
	int rc = store_connect(cfg->database_url, out);

	if (rc)
		fprintf(stderr, "weft: cannot connect to the database; check "
			"WEFT_DATABASE_URL and that PostgreSQL is running\n");
	return rc;
}

void cmd_progress_bar(void *arg, int64_t done, int64_t total)
{
	int width = 40, fill;
	double frac = total > 0 ? (double)done / (double)total : 1;

	if (frac > 1)
		frac = 1;
	fill = (int)(frac * width);
	fprintf(stderr, "\r  [%.*s%*s] %3d%%  %lld %s", fill,
		"########################################", width - fill, "",
		(int)(frac * 100), (long long)done, arg ? (const char *)arg : "events");
	fflush(stderr);
}
