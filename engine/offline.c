/*
 * The engine without its thread: what commands such as `weft identity
 * rebuild`, `weft audiences recompute` and `weft export` load in their own
 * process. It is the engine thread's start-up (engine.c, start_up) done
 * once: connect, check the schema, load the checkpoint and the state, the
 * rules, definitions, blocks and erasures, then replay the log up to its
 * head. Loading writes nothing; only a caller that saves does, and it
 * holds the engine lock for that, as a server's engine does.
 */
#include "engine/engine_int.h"

#include <stdio.h>

#include "lib/err.h"
#include "lib/log.h"

/* Attempts at a consistent checkpoint and state while a server saves (no lock). */
#define LOAD_TRIES 5

int engine_offline_connect(const char *url, const char *other, struct engine **out, char *err,
			   size_t errlen)
{
	struct engine_config cfg = { .database_url = url };
	struct engine *e = engine_new(&cfg);
	int rc;

	*out = e;
	if ((rc = store_connect(url, &e->store)) || (rc = store_schema_check(e->store))) {
		snprintf(err, errlen, "cannot use the database: %s", weft_strerror(rc));
		return rc;
	}
	if (other && (rc = store_engine_lock(e->store))) {
		if (rc == WEFT_ECONFLICT)
			snprintf(err, errlen, "a server (or %s) holds the engine state of this "
				 "database; stop it first", other);
		else
			snprintf(err, errlen, "cannot lock the engine state: %s",
				 weft_strerror(rc));
		return rc;
	}
	return 0;
}

/*
 * The checkpoint and the pages are read by two statements. Without the
 * lock a server may save in between, and pages newer than the checkpoint
 * would have the events after it applied twice by the catch-up: load again
 * until the checkpoint is the same after the pages as before them (a save
 * with the same checkpoint applied no other events).
 */
static int load_state(struct engine *e)
{
	int64_t seq;
	int32_t format;
	int rc;

	for (int tries = 1;; tries++) {
		if ((rc = engine_state_load(e)) ||
		    (rc = store_engine_checkpoint(e->store, &seq, &format)))
			return rc;
		if (e->clear_all || seq == e->cp_seq)
			return 0;
		if (tries == LOAD_TRIES)
			return WEFT_EUNAVAIL;
		log_info("engine_state_reload", "reason=saved_meanwhile seq=%lld", (long long)seq);
	}
}

int engine_offline_load(struct engine *e, char *err, size_t errlen)
{
	const char *what;
	int64_t head;
	int rc;

	what = "cannot read the saved state";
	if ((rc = load_state(e)))
		goto failed;
	what = "cannot load the rules and definitions";
	if ((rc = engine_config_load(e)))
		goto failed;
	what = "cannot replay the log";
	if ((rc = store_log_head(e->store, &head)) || (rc = engine_catch_up(e, head)))
		goto failed;
	/* A server slides the windows within a second of starting: so does this. */
	engine_audiences_tick(e);
	return 0;
failed:
	snprintf(err, errlen, "%s: %s", what, weft_strerror(rc));
	return rc;
}

int engine_offline_open(const char *database_url, bool lock, struct engine **out, char *err,
			size_t errlen)
{
	struct engine *e;
	int rc = engine_offline_connect(database_url, lock ? "another command" : NULL, &e, err,
					errlen);

	if (!rc)
		rc = engine_offline_load(e, err, errlen);
	if (rc) {
		engine_free(e);
		e = NULL;
	}
	*out = e;
	return rc;
}

void engine_offline_close(struct engine *e)
{
	engine_free(e);
}
