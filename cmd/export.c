/*
 * weft export: an audience's current members to a file, as a full file
 * export job writes them (docs/audiences.md, "Exports"), from the command
 * line. It loads the engine's saved state and the log after it in this
 * process (engine_offline_open, without the lock), so it works beside a
 * running server or without one, and never writes to the database.
 */
#include "cmd/cmd.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "export/export.h"
#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "store/store.h"

static const char usage[] =
	"usage: weft export --workspace NAME --audience KEY --out FILE\n"
	"                   [--format csv|ndjson] [--fields F1,F2,...] [options]\n"
	"\n"
	"Writes the audience's current members to FILE (under FILE.part until it\n"
	"is complete), one row per member: profile_id, then the fields, each\n"
	"identifier:<type>, trait:<name>, computed:<key> or match_key:email|phone\n"
	"(docs/audiences.md, \"Exports\"). Reads the saved state and the log after\n"
	"it, like a server starting would; works with or without a server\n"
	"running and changes nothing in the database. Shows progress on a\n"
	"terminal.\n"
	"\n"
	"  --workspace NAME     the audience's workspace\n"
	"  --audience KEY       the audience\n"
	"  --out FILE           where to write (replaced if it exists)\n"
	"  --format FORMAT      csv (default) or ndjson\n"
	"  --fields LIST        comma-separated fields (default: none)\n" CMD_COMMON_HELP;

enum { OPT_WORKSPACE = CMD_OPT_FIRST_OWN, OPT_AUDIENCE, OPT_OUT, OPT_FORMAT, OPT_FIELDS };

/* The request a file job would get: {"format", "fields"}, checked the same way. */
static int spec_of(const char *format, const char *fields, struct export_spec *spec,
		   char *err, size_t errlen)
{
	json_t *body = json_pack("{ss}", "format", format ? format : "csv");
	json_t *list = json_array();
	char *copy = xstrdup(fields ? fields : ""), *save, *tok, *fj, *dj, *dk;
	int rc;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		json_array_append_new(list, json_string(tok));
	json_object_set_new(body, "fields", list);
	rc = export_spec_parse(body, spec, &fj, &dj, &dk, err, errlen);
	if (!rc) {
		free(fj);
		free(dj);
		free(dk);
	}
	free(copy);
	json_decref(body);
	return rc;
}

int cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_COMMON_OPTIONS,
		{ "workspace", required_argument, NULL, OPT_WORKSPACE },
		{ "audience", required_argument, NULL, OPT_AUDIENCE },
		{ "out", required_argument, NULL, OPT_OUT },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "fields", required_argument, NULL, OPT_FIELDS },
		{ 0 },
	};
	const char *workspace = NULL, *audience = NULL, *out = NULL, *format = NULL;
	const char *fields = NULL;
	struct export_spec spec;
	struct cmd_config cfg;
	struct engine *e = NULL;
	struct store *s = NULL;
	char err[512] = "";
	int64_t ws = 0, rows = 0, bytes = 0;
	bool created, tty = isatty(STDERR_FILENO);
	double t0;
	int opt, rc;

	cmd_config_defaults(&cfg);
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case CMD_OPT_HELP:
			fputs(usage, stdout);
			return 0;
		case OPT_WORKSPACE:
			workspace = optarg;
			break;
		case OPT_AUDIENCE:
			audience = optarg;
			break;
		case OPT_OUT:
			out = optarg;
			break;
		case OPT_FORMAT:
			format = optarg;
			break;
		case OPT_FIELDS:
			fields = optarg;
			break;
		default:
			if (cmd_config_option(&cfg, opt, optarg) != 1) {
				fputs(usage, stderr);
				return 2;
			}
		}
	}
	if (optind < argc || !workspace || !audience || !out) {
		fprintf(stderr, "weft export: %s\n\n%s", optind < argc ? "unexpected argument" :
			"--workspace, --audience and --out are needed", usage);
		return 2;
	}
	if (spec_of(format, fields, &spec, err, sizeof(err))) {
		fprintf(stderr, "weft export: %s\n", err);
		return 2;
	}
	if (cmd_config_finish(&cfg, true) || cmd_connect(&cfg, &s)) {
		export_spec_release(&spec);
		return 1;
	}
	rc = store_workspace_get(s, workspace, false, &ws, &created);
	if (rc) {
		snprintf(err, sizeof(err), rc == WEFT_ENOTFOUND ? "no workspace called %s" :
			 "cannot read workspace %s", workspace);
		goto out;
	}
	t0 = clock_mono();
	if (tty)
		fprintf(stderr, "weft export: loading the state\n");
	if ((rc = engine_offline_open(cfg.database_url, false, &e, err, sizeof(err))))
		goto out;
	{
		struct export_ctx c = {
			.engine = e, .store = s, .workspace_id = ws,
			.progress = tty ? cmd_progress_bar : NULL, .arg = "rows",
		};

		t0 = clock_mono();
		rc = export_to_file(&c, audience, &spec, NULL, out, &rows, &bytes, err,
				    sizeof(err));
		if (tty)
			fputc('\n', stderr);
	}
	if (!rc)
		fprintf(stderr, "weft export: %lld rows, %lld bytes to %s in %.1f s\n",
			(long long)rows, (long long)bytes, out, clock_mono() - t0);
out:
	if (rc)
		fprintf(stderr, "weft export: %s\n", err[0] ? err : weft_strerror(rc));
	export_spec_release(&spec);
	engine_offline_close(e);
	store_free(s);
	return rc ? 1 : 0;
}
