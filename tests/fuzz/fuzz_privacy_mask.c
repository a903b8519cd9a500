/*
 * Fuzz harness for privacy_mask_event() and privacy_mask_text(): the input
 * is a JSON event, parsed as ingest_parse() parses a body. Each event is
 * masked under three policies (the default with a hasher, the default
 * without one so hash becomes redact, and a policy of path globs and every
 * action), and the input bytes as such go through privacy_mask_text().
 *
 * Invariants: a mask that reports no change left the event equal to what it
 * was (the caller then keeps the original bytes); the masked event dumps to
 * JSON that parses again, without \u0000 (PostgreSQL's jsonb refuses it);
 * masking a masked event again does not crash; under the default policy no
 * key or string left in the event still holds anything a detector finds,
 * which privacy_mask_text() on each of them shows; masked free text of valid
 * UTF-8 is valid UTF-8.
 *
 * Masking twice is not expected to change nothing: a key that held an SSN
 * reads "[redacted:ssn]" afterwards, and the second pass then drops it as a
 * secret-looking field name. That is more masking, not less, so the check
 * is on what detectors still find rather than on a second pass.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "privacy/privacy.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/fuzz_privacy.h"

/* Paths at every depth and every action, to reach the glob and path code. */
static const char paths_policy[] =
	"{\"include_default\":true,\"rules\":["
	"{\"path\":\"context.ip\",\"action\":\"keep\"},"
	"{\"path\":\"traits.email\",\"action\":\"partial\"},"
	"{\"path\":\"traits.phone\",\"detector\":\"phone\",\"action\":\"partial\"},"
	"{\"path\":\"properties.*.card\",\"action\":\"sha256\"},"
	"{\"path\":\"properties.items.*\",\"detector\":\"email\",\"action\":\"redact\"},"
	"{\"path\":\"**.password\",\"action\":\"drop\"},"
	"{\"path\":\"context.**\",\"detector\":\"ip\",\"action\":\"truncate_ip\"},"
	"{\"path\":\"**.nested.**\",\"action\":\"hash\"},"
	"{\"path\":\"a.**.b.*.c\",\"action\":\"redact\"},"
	"{\"path\":\"userId\",\"action\":\"partial\"},"
	"{\"detector\":\"secret_key\",\"action\":\"redact\"},"
	"{\"detector\":\"card\",\"action\":\"partial\"},"
	"{\"detector\":\"iban\",\"action\":\"partial\"},"
	"{\"detector\":\"ssn\",\"action\":\"partial\"}"
	"]}";

static struct privacy_hasher *hasher;
static struct privacy_policy *default_policy;
static struct privacy_policy *paths;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct buf err = BUF_INIT;

	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	hasher = fuzz_hasher_new(42);
	default_policy = privacy_policy_default();
	if (privacy_policy_parse(paths_policy, strlen(paths_policy), &paths, &err))
		fuzz_fail("the harness's own policy does not parse: %s",
			  err.data ? err.data : "?");
	buf_release(&err);
	return 0;
}


/* The event as the log would store it must read back as JSON. */
static void check_dumps(json_t *ev, const char *what)
{
	char *s = json_dumps(ev, JSON_COMPACT);
	json_error_t je;
	json_t *back;

	fuzz_check(s, "%s: json_dumps failed", what);
	back = json_loads(s, 0, &je);
	fuzz_check(back, "%s: the masked event does not parse back (%s): %s", what, je.text, s);
	fuzz_check(json_equal(back, ev), "%s: the masked event reads back different: %s",
		   what, s);
	json_decref(back);
	free(s);
}

/* Fails if a detector still finds something in s (a key or a string value). */
static void check_no_pii(const char *s, size_t len, const char *where, json_t *ev)
{
	char *again = privacy_mask_text(default_policy, hasher, s, len);

	if (strlen(again) != len || memcmp(again, s, len) != 0) {
		char *dump = json_dumps(ev, JSON_COMPACT);

		fuzz_fail("default policy left PII in %s '%.*s' (masks to '%s') of %s",
			  where, (int)len, s, again, dump ? dump : "?");
	}
	free(again);
}

static void check_masked(json_t *v, json_t *ev)
{
	const char *key;
	size_t klen, i;
	json_t *x;

	if (json_is_string(v)) {
		check_no_pii(json_string_value(v), json_string_length(v), "value", ev);
	} else if (json_is_object(v)) {
		json_object_keylen_foreach(v, key, klen, x) {
			check_no_pii(key, klen, "key", ev);
			check_masked(x, ev);
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			check_masked(x, ev);
	}
}

static void mask_with(json_t *orig, const struct privacy_policy *p,
		      const struct privacy_hasher *h, bool leaves_no_pii, const char *what)
{
	json_t *ev = json_deep_copy(orig);
	int n, again;

	n = privacy_mask_event(p, h, ev);
	fuzz_check(n >= 0, "%s: privacy_mask_event refused an object (%d)", what, n);
	if (n == 0)
		fuzz_check(json_equal(ev, orig), "%s: no change reported, yet the event changed",
			   what);
	check_dumps(ev, what);
	if (leaves_no_pii)
		check_masked(ev, ev);
	again = privacy_mask_event(p, h, ev);
	fuzz_check(again >= 0, "%s: the second mask refused the event (%d)", what, again);
	check_dumps(ev, what);
	json_decref(ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *ev;
	char *text;

	/* Free text: what logs and error messages go through. */
	text = privacy_mask_text(default_policy, hasher, (const char *)data, size);
	fuzz_check(text, "privacy_mask_text returned NULL");
	if (!memchr(data, '\0', size) && fuzz_utf8_valid(data, size))
		fuzz_check(fuzz_utf8_valid((const unsigned char *)text, strlen(text)),
			   "privacy_mask_text made UTF-8 text invalid: '%s'", text);
	free(text);

	/* As ingest_parse() reads a body: no NUL in strings, objects only. */
	ev = json_loadb((const char *)data, size, 0, NULL);
	if (!ev)
		return 0;
	if (!json_is_object(ev)) {
		fuzz_check(privacy_mask_event(NULL, hasher, ev) < 0,
			   "privacy_mask_event accepted a non-object");
		json_decref(ev);
		return 0;
	}
	mask_with(ev, default_policy, hasher, true, "default policy");
	mask_with(ev, NULL, NULL, false, "built-in policy, no hasher");
	mask_with(ev, paths, hasher, false, "path policy");
	json_decref(ev);
	return 0;
}
