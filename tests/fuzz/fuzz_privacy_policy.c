/*
 * Fuzz harness for privacy_policy_parse(): the input is the body of
 * PUT /v1/admin/privacy-policy. api/ stores the canonical form that
 * privacy_policy_to_json() gives and parses it again at every start, so a
 * policy that parses once must parse from its canonical form, to the same
 * canonical form. A refusal must say why in text that can go into a JSON
 * error reply. Each policy that parses then masks a few realistic events
 * and a line of free text, with and without a hasher.
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

static const char *const sample_events[] = {
	("{\"type\":\"identify\",\"userId\":\"u-123\",\"anonymousId\":\"a-9\","
	"\"traits\":{\"email\":\"Jane.Doe@Example.com\",\"phone\":\"+44 (0)20 7946 0958\","
	"\"name\":\"Jane\",\"password\":\"hunter2\",\"address\":{\"city\":\"Leeds\"}},"
	"\"context\":{\"ip\":\"203.0.113.77\",\"userAgent\":\"Mozilla/5.0\","
	"\"traits\":{\"email\":\"jane@example.com\"}},\"messageId\":\"m-1\"}"),

	("{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":42,"
	"\"properties\":{\"total\":42.5,\"card\":\"4111 1111 1111 1111\",\"cardNumber\":4111111111111111,"
	"\"ssn\":\"078-05-1120\",\"iban\":\"GB82 WEST 1234 5698 7654 32\","
	"\"items\":[{\"sku\":\"a\",\"buyer\":\"bob@example.org\"},\"call +1 415 555 0100\",[1,[2,[3]]]],"
	"\"nested\":{\"a\":{\"b\":[\"2001:db8::1\",true,null]}},"
	"\"api_key\":\"sk_live_abcdef\",\"jane@example.com\":\"key is an email\"}}"),

	("{\"a\":{\"x\":{\"b\":{\"0\":{\"c\":\"deep\"}}},\"b\":[{\"c\":1}]},\"context\":"
	"{\"ip\":\"::ffff:10.1.2.3\",\"device\":{\"id\":\"dev-1\",\"token\":\"t0k3n\"}}}"),
};

static const char sample_text[] =
	"cannot load profile 'jane@example.com' from 203.0.113.77: card 4111-1111-1111-1111";

static struct privacy_hasher *hasher;
static json_t *events[sizeof(sample_events) / sizeof(sample_events[0])];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	hasher = fuzz_hasher_new(7);
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		events[i] = json_loads(sample_events[i], 0, NULL);
		fuzz_check(json_is_object(events[i]), "sample event %zu does not parse", i);
	}
	return 0;
}


static void mask_samples(const struct privacy_policy *p)
{
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		for (int with_hasher = 0; with_hasher < 2; with_hasher++) {
			json_t *ev = json_deep_copy(events[i]);
			char *s;
			json_t *back;

			fuzz_check(privacy_mask_event(p, with_hasher ? hasher : NULL, ev) >= 0,
				   "sample %zu refused", i);
			s = json_dumps(ev, JSON_COMPACT);
			back = s ? json_loads(s, 0, NULL) : NULL;
			fuzz_check(back, "sample %zu masked does not parse back: %s", i,
				   s ? s : "?");
			json_decref(back);
			free(s);
			json_decref(ev);
		}
	}
	free(privacy_mask_text(p, hasher, sample_text, sizeof(sample_text) - 1));
	free(privacy_mask_text(p, NULL, sample_text, sizeof(sample_text) - 1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char not_null;
	struct privacy_policy *p, *p2 = NULL;
	struct buf err = BUF_INIT;
	json_t *canon, *canon2;
	char *text;

	p = (struct privacy_policy *)(void *)&not_null;	/* a refusal must clear it */
	if (privacy_policy_parse((const char *)data, size, &p, &err)) {
		fuzz_check(!p, "a refused policy was still returned");
		fuzz_check(err.len > 0, "a policy was refused without a message");
		fuzz_check(fuzz_utf8_valid((const unsigned char *)err.data, err.len),
			   "the refusal is not UTF-8, so not fit for a JSON reply: %s", err.data);
		buf_release(&err);
		return 0;
	}
	fuzz_check(p, "privacy_policy_parse succeeded without a policy");
	canon = privacy_policy_to_json(p);
	text = json_dumps(canon, JSON_COMPACT);
	fuzz_check(text, "the canonical policy does not dump");
	if (privacy_policy_parse(text, strlen(text), &p2, &err))
		fuzz_fail("the canonical form of a valid policy is refused (%s): %s",
			  err.data, text);
	canon2 = privacy_policy_to_json(p2);
	fuzz_check(json_equal(canon, canon2), "the canonical form is not a fixed point: %s",
		   text);
	json_decref(canon2);
	json_decref(canon);
	free(text);
	privacy_policy_free(p2);

	mask_samples(p);
	privacy_policy_free(p);
	buf_release(&err);
	return 0;
}
