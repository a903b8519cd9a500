/*
 * Unit tests for privacy/: every detector with matches and near misses,
 * normalisation and identity keys, the master key file, display values,
 * every action, policy parsing and path globs, and whole-event masking.
 * Expected outputs are exact strings, so a changed detector shows up here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/digest.h"
#include "lib/err.h"
#include "privacy/privacy.h"

/* A fixed master key (bytes 0..31) and hashers for workspaces 42 and 43. */
static char tmpdir[] = "/tmp/privacy_test.XXXXXX";
static struct privacy_master *master;
static struct privacy_hasher *ws42, *ws43;

static void path_in_tmp(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static int group_setup(void **state)
{
	unsigned char key[32];
	char path[128];

	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	for (int i = 0; i < 32; i++)
		key[i] = (unsigned char)i;
	path_in_tmp(path, sizeof(path), "fixed.key");
	write_file(path, key, sizeof(key), 0600);
	if (privacy_master_load(path, &master) != 0)
		return -1;
	unlink(path);
	ws42 = privacy_hasher_new(master, 42);
	ws43 = privacy_hasher_new(master, 43);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	privacy_hasher_free(ws42);
	privacy_hasher_free(ws43);
	privacy_master_free(master);
	rmdir(tmpdir);
	return 0;
}

/* "h:" + hex of the key of a normalised value under workspace 42. */
static const char *hashed(char out[35], const char *type, const char *norm)
{
	uint8_t key[PRIVACY_KEY_BYTES];

	privacy_identifier_key(ws42, type, norm, strlen(norm), key);
	out[0] = 'h';
	out[1] = ':';
	hex_encode(key, sizeof(key), out + 2);
	return out;
}

static struct privacy_policy *policy(const char *json)
{
	struct privacy_policy *p = NULL;
	struct buf err = BUF_INIT;

	if (privacy_policy_parse(json, strlen(json), &p, &err) != 0)
		fail_msg("policy refused: %s", err.data);
	buf_release(&err);
	return p;
}

/* Masks text with one rule: detector -> redact. */
static void check_detector(const char *detector, const char *in, const char *want)
{
	char json[128];
	struct privacy_policy *p;
	char *out;

	snprintf(json, sizeof(json), "{\"rules\":[{\"detector\":\"%s\",\"action\":\"redact\"}]}",
		 detector);
	p = policy(json);
	out = privacy_mask_text(p, ws42, in, strlen(in));
	if (strcmp(out, want) != 0)
		fail_msg("%s on '%s': got '%s', want '%s'", detector, in, out, want);
	free(out);
	privacy_policy_free(p);
}

/* Every string in ins passes a detector untouched. */
static void check_untouched(const char *detector, const char *const *ins, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_detector(detector, ins[i], ins[i]);
}

/* Masks an event (JSON text) and returns it as sorted compact JSON. */
static char *mask_json(const struct privacy_policy *p, const struct privacy_hasher *h,
	const char *json, int *changes)
{
	json_error_t jerr;
	json_t *e = json_loads(json, 0, &jerr);
	char *out;
	int n;

	if (!e)
		fail_msg("bad test JSON: %s", jerr.text);
	n = privacy_mask_event(p, h, e);
	if (changes)
		*changes = n;
	out = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(e);
	return out;
}

static void check_event(const char *policy_json, const char *in, const char *want)
{
	struct privacy_policy *p = policy_json ? policy(policy_json) : NULL;
	char *out = mask_json(p, ws42, in, NULL);

	assert_string_equal(out, want);
	free(out);
	privacy_policy_free(p);
}

/* Detectors */

static void test_privacy__email_found_in_text_and_urls(void **state)
{
	(void)state;
	check_detector("email", "write to Jane.Doe@Example.com today",
		       "write to [redacted:email] today");
	check_detector("email", "https://x.io/?email=jane%40example.com&utm=1",
		       "https://x.io/?email=[redacted:email]&utm=1");
	check_detector("email", "q=jane.doe%2Bnews%40example.co.uk",
		       "q=[redacted:email]");
	check_detector("email", "mail jane@example.com.", "mail [redacted:email].");
	check_detector("email", "<a@b.io>,<c@d.io>", "<[redacted:email]>,<[redacted:email]>");
	check_detector("email", "mailto:jane_doe-1@sub.example.org?subject=hi",
		       "mailto:[redacted:email]?subject=hi");
	/* a chain of addresses is masked whole, not left as "[redacted:email]@c.com" */
	check_detector("email", "x a@b.org@c.com y", "x [redacted:email] y");
	/* a local part neither starts nor ends a sentence's dots */
	check_detector("email", "see ..jane@example.com..", "see ..[redacted:email]..");
}

static void test_privacy__email_ignores_handles_and_bare_at(void **state)
{
	static const char *const ins[] = {
		"@handle", "foo@bar", "5@10", "price@ 3", "a@b.c1", "user@localhost",
		"j***@example.com",
	};

	(void)state;
	check_untouched("email", ins, sizeof(ins) / sizeof(ins[0]));
}

static void test_privacy__email_percent_encoded_hashes_like_raw(void **state)
{
	struct privacy_policy *p = policy("{\"rules\":[{\"detector\":\"email\",\"action\":\"hash\"}]}");
	const char *in = "https://x.io/?e=Jane%40Example.com&a=1";
	char h[35], want[128];
	char *out;

	(void)state;
	snprintf(want, sizeof(want), "https://x.io/?e=%s&a=1", hashed(h, "email", "jane@example.com"));
	out = privacy_mask_text(p, ws42, in, strlen(in));
	assert_string_equal(out, want);
	free(out);
	privacy_policy_free(p);
}

static void test_privacy__phone_formats_found(void **state)
{
	static const char *const ins[] = {
		"+1 415 555 0100", "(415) 555-0100", "(415)555-0100", "415-555-0100",
		"415.555.0100", "+44 20 7946 0958", "+44 (0)20 7946 0958", "+33 6 12 34 56 78",
		"06 12 34 56 78", "+14155550100", "1-800-555-0100", "020 7946 0958",
		"030/1234567", "+49 30 1234567",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++)
		check_detector("phone", ins[i], "[redacted:phone]");
	check_detector("phone", "phone=%2B14155550100&x=1", "phone=[redacted:phone]&x=1");
	check_detector("phone", "call 555-0100 now", "call [redacted:phone] now");
	check_detector("phone", "tel:+1-415-555-0100.", "tel:[redacted:phone].");
}

static void test_privacy__phone_ignores_dates_versions_prices(void **state)
{
	static const char *const ins[] = {
		"2024-01-15", "15/01/2024", "01/15/2024", "15.01.2024", "2024.01.15",
		"2024-01-15T10:00:00.000Z", "2024-01-15 10:30:00", "15-01-2024 10:30",
		"10.0.19045", "120.0.6099.129", "Chrome/120.0.6099.129", "1.2.3.4",
		"1234567.89", "1 234 567,89", "12.345.678", "$1,234,567.89",
		"order 1234567", "1705312800", "1705312800123", "94103-1234",
		"123e4567-e89b-12d3-a456-426614174000", "000-12-3456", "v2.14.0-1234567",
		"+01:00", "10:30:00", "5 555 0100",
	};

	(void)state;
	check_untouched("phone", ins, sizeof(ins) / sizeof(ins[0]));
}

/* A random version 4 UUID, from a fixed xorshift sequence so a failure repeats. */
static void random_uuid(uint64_t *state, char out[37])
{
	uint8_t b[16];

	for (int i = 0; i < 16; i++) {
		*state ^= *state << 13;
		*state ^= *state >> 7;
		*state ^= *state << 17;
		b[i] = (uint8_t)*state;
	}
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

static void test_privacy__phone_never_alters_uuids(void **state)
{
	/* each UUID alone and inside longer strings: before and after it */
	static const char *const forms[][2] = {
		{ "", "" }, { "anon-", "" }, { "ajs-", "" }, { "https://x.io/orders/", ".json?x=1" },
		{ "{", "}" }, { "id ", " ok" },
	};
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	char uuid[37], text[128], want[128];

	(void)state;
	for (int k = 0; k < 10000; k++) {
		json_t *e;

		random_uuid(&seed, uuid);
		/* every other one in capitals */
		for (char *c = uuid; k % 2 && *c; c++)
			*c = (char)(*c >= 'a' ? *c - 'a' + 'A' : *c);
		for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
			char *out;

			snprintf(text, sizeof(text), "%s%s%s", forms[f][0], uuid, forms[f][1]);
			out = privacy_mask_text(NULL, ws42, text, strlen(text));
			if (strcmp(out, text) != 0)
				fail_msg("UUID %d altered: '%s' -> '%s'", k, text, out);
			free(out);
		}
		e = json_pack("{ss ss s{s{ss}}}", "anonymousId", uuid, "messageId", text,
			      "context", "page", "url", text);
		assert_int_equal(privacy_mask_event(NULL, ws42, e), 0);
		json_decref(e);
	}
	/* a phone number written beside one is still found */
	snprintf(text, sizeof(text), "%s 415-555-0100", uuid);
	snprintf(want, sizeof(want), "%s [redacted:phone]", uuid);
	check_detector("phone", text, want);
}

static void test_privacy__card_requires_luhn(void **state)
{
	static const char *const cards[] = {
		"4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111",
		"378282246310005", "3782 822463 10005", "5555 5555 5555 4444",
		"6011111111111117", "4222222222222",
	};
	static const char *const not_cards[] = {
		"4111 1111 1111 1112", "4111111111111112", "5555 5555 5555 4445",
		"4111 1111-1111 1111", "1705312800123", "41111111111111111111",
		/* Luhn-valid, but a millisecond timestamp: cards start with 2-6 */
		"1705312800009",
		"4111111111111111x",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cards) / sizeof(cards[0]); i++)
		check_detector("card", cards[i], "[redacted:card]");
	check_untouched("card", not_cards, sizeof(not_cards) / sizeof(not_cards[0]));
	check_detector("card", "paid with 4111 1111 1111 1111, thanks",
		       "paid with [redacted:card], thanks");
	/* a longer run of groups: the card is its Luhn-valid prefix */
	check_detector("card", "4111 1111 1111 1111 2024", "[redacted:card] 2024");
}

static void test_privacy__ssn_refuses_invalid_groups(void **state)
{
	static const char *const bad[] = {
		"000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-6789",
		"123-45-0000", "123-45-67890", "1123-45-6789", "123-45-6789-1", "123456789",
	};

	(void)state;
	check_detector("ssn", "123-45-6789", "[redacted:ssn]");
	check_detector("ssn", "ssn 123 45 6789.", "ssn [redacted:ssn].");
	check_detector("ssn", "899-99-9999", "[redacted:ssn]");
	check_untouched("ssn", bad, sizeof(bad) / sizeof(bad[0]));
	/* and no other detector claims them either */
	check_detector("phone", "000-12-3456", "000-12-3456");
}

static void test_privacy__iban_requires_mod97(void **state)
{
	static const char *const ibans[] = {
		"DE89 3704 0044 0532 0130 00", "DE89370400440532013000",
		"GB82 WEST 1234 5698 7654 32", "FR1420041010050500013M02606",
		"NL91ABNA0417164300", "BE68 5390 0754 7034",
	};
	static const char *const not_ibans[] = {
		"DE89 3704 0044 0532 0130 01", "DE88370400440532013000",
		"XX89370400440532013000", "de89370400440532013000", "DE89370400440532013000X",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ibans) / sizeof(ibans[0]); i++)
		check_detector("iban", ibans[i], "[redacted:iban]");
	check_untouched("iban", not_ibans, sizeof(not_ibans) / sizeof(not_ibans[0]));
	check_detector("iban", "IBAN: DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX",
		       "IBAN: [redacted:iban] BIC COBADEFFXXX");
}

static void test_privacy__ip_v4_and_v6_found(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "from 203.0.113.42 ok", "from 203.0.113.0 ok" },
		{ "203.0.113.42:8080", "203.0.113.0:8080" },
		{ "10.0.0.0/8", "10.0.0.0/8" },
		{ "2001:db8:85a3::8a2e:370:7334", "2001:db8:85a3::" },
		{ "2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::" },
		{ "::1", "::" },
		{ "fe80::1%eth0", "fe80::%eth0" },
		{ "[2001:db8:1:2::1]:443", "[2001:db8:1::]:443" },
		{ "::ffff:192.0.2.1", "::ffff:192.0.2.0" },
		{ "FE80::ABCD", "fe80::" },
		{ "client 2001:db8::1.", "client 2001:db8::." },
	};
	struct privacy_policy *p = policy("{\"rules\":[{\"detector\":\"ip\",\"action\":\"truncate_ip\"}]}");

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = privacy_mask_text(p, ws42, cases[i].in, strlen(cases[i].in));

		if (strcmp(out, cases[i].want) != 0)
			fail_msg("'%s': got '%s', want '%s'", cases[i].in, out, cases[i].want);
		free(out);
	}
	privacy_policy_free(p);
	check_detector("ip", "a 192.168.1.10 b 2001:db8::1 c", "a [redacted:ip] b [redacted:ip] c");
}

static void test_privacy__ip_ignores_times_macs_and_long_dotted(void **state)
{
	static const char *const ins[] = {
		"10:30:00", "00:1a:2b:3c:4d:5e", "999.1.1.1", "1.2.3.4.5", "std::vector",
		"01.02.03.04", "2024-01-15T10:00:00.000Z", "10.0.19045", "a::b::c",
	};

	(void)state;
	check_untouched("ip", ins, sizeof(ins) / sizeof(ins[0]));
}

static void test_privacy__email_with_overlong_local_part_still_masked(void **state)
{
	struct buf in = BUF_INIT, want = BUF_INIT;
	char h[35], json[512], expect[512];

	(void)state;
	/* a messageId of 90 'm', a dash and an address: the whole run goes */
	for (int i = 0; i < 90; i++)
		buf_addc(&in, 'm');
	buf_adds(&in, "-canary+x1@example.org");
	check_detector("email", in.data, "[redacted:email]");
	/* and is hashed as one value, so nothing of it stays readable */
	snprintf(json, sizeof(json), "{\"messageId\":\"%s\"}", in.data);
	snprintf(expect, sizeof(expect), "{\"messageId\":\"%s\"}", hashed(h, "email", in.data));
	check_event(NULL, json, expect);
	/* 70 letters written right before an address */
	check_detector("email", "note: abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij"
		       "abcdefghijjane@example.com thanks", "note: [redacted:email] thanks");
	/* a run longer than a hit may be: the hit is the 256 bytes before the '@' */
	buf_reset(&in);
	for (int i = 0; i < 300; i++)
		buf_addc(&in, 'x');
	buf_adds(&in, "@example.com");
	for (int i = 0; i < 44; i++)
		buf_addc(&want, 'x');
	buf_adds(&want, "[redacted:email]");
	check_detector("email", in.data, want.data);
	buf_release(&in);
	buf_release(&want);
}

static void test_privacy__percent_encoded_separators_decoded(void **state)
{
	static const struct {
		const char *detector, *in, *want;
	} cases[] = {
		/* encodeURIComponent */
		{ "ip", "https://x.io/a?next=%2Fhome&who=2001%3Adb8%3A5657%3A1a2b%3A3c4d%3A5e6f%3A7a8b%3A9c0d",
		  "https://x.io/a?next=%2Fhome&who=[redacted:ip]" },
		{ "ip", "?who=%3A%3Affff%3A192.0.2.1&page=1", "?who=[redacted:ip]&page=1" },
		{ "card", "?next=%2Fhome&who=4111%201111%201111%201111", "?next=%2Fhome&who=[redacted:card]" },
		{ "ssn", "?who=123%2045%206789", "?who=[redacted:ssn]" },
		{ "phone", "?who=%2B1%20415%20555%200100", "?who=[redacted:phone]" },
		{ "iban", "?who=DE89%203704%200044%200532%200130%2000", "?who=[redacted:iban]" },
		/* URLSearchParams: '+' for a space */
		{ "iban", "https://x.io/search?q=GB82+WEST+1234+5698+7654+32&page=1",
		  "https://x.io/search?q=[redacted:iban]&page=1" },
		{ "card", "?q=4111+1111+1111+1111&page=1", "?q=[redacted:card]&page=1" },
		{ "ssn", "?q=123+45+6789&page=1", "?q=[redacted:ssn]&page=1" },
		{ "phone", "?q=%2B1+415+555+0100&page=1", "?q=[redacted:phone]&page=1" },
		{ "ip", "?q=2001%3Adb8%3A%3A1&page=1", "?q=[redacted:ip]&page=1" },
		/* escapes of what matches nothing stay as they were */
		{ "phone", "?d=2024%2D01%2D15&t=10%3A30%3A00&v=10%2E0%2E19045", NULL },
		{ "ip", "?d=2024%2D01%2D15&t=10%3A30%3A00&m=00%3A1a%3A2b%3A3c%3A4d%3A5e", NULL },
		{ "card", "?q=4111+1111+1111+1112", NULL },
		/* before any '=', '+' is not a space */
		{ "card", "4111+1111+1111+1111", NULL },
	};
	struct privacy_policy *p = policy("{\"rules\":[{\"detector\":\"email\",\"action\":\"hash\"},"
					   "{\"detector\":\"phone\",\"action\":\"hash\"}]}");
	char h[35], want[256];
	const char *in;
	char *out;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_detector(cases[i].detector, cases[i].in, cases[i].want ? cases[i].want : cases[i].in);
	/* a decoded phone hashes like the same phone written plainly */
	in = "?q=%2B1+415+555+0100&page=1";
	snprintf(want, sizeof(want), "?q=%s&page=1", hashed(h, "phone", "+14155550100"));
	out = privacy_mask_text(p, ws42, in, strlen(in));
	assert_string_equal(out, want);
	free(out);
	/* reading '+' as a space does not cut a raw match short */
	in = "?e=jane+news@example.com&page=1";
	snprintf(want, sizeof(want), "?e=%s&page=1", hashed(h, "email", "jane+news@example.com"));
	out = privacy_mask_text(p, ws42, in, strlen(in));
	assert_string_equal(out, want);
	free(out);
	in = "?to=%2B1+415+555+0100 or call +1 415 555 0199";
	snprintf(want, sizeof(want), "?to=%s or call ", hashed(h, "phone", "+14155550100"));
	snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s",
		 hashed(h, "phone", "+14155550199"));
	out = privacy_mask_text(p, ws42, in, strlen(in));
	assert_string_equal(out, want);
	free(out);
	privacy_policy_free(p);
	/* in an event, under the default policy */
	check_event(NULL, "{\"context\":{\"page\":{\"url\":\"https://x.io/account?next=%2Fhome&"
		    "who=2001%3Adb8%3A5657%3A1a2b%3A3c4d%3A5e6f%3A7a8b%3A9c0d\","
		    "\"search\":\"?q=GB82+WEST+1234+5698+7654+32&page=1\"}}}",
		    "{\"context\":{\"page\":{\"search\":\"?q=[redacted:iban]&page=1\","
		    "\"url\":\"https://x.io/account?next=%2Fhome&who=2001:db8:5657::\"}}}");
}

/* What comes right before an address is judged without the address. */
static void test_privacy__text_before_an_email_judged_alone(void **state)
{
	static const char *const ins[] = {
		"b::ffff:.0ob@exfamp.co@", "call +44 20 7946 0958jane@example.org",
	};
	char hp[35], he[35], want[256];
	char *out, *again;

	(void)state;
	/* "b::ffff" is an address once the email is hashed, so it is one before */
	out = privacy_mask_text(NULL, ws42, ins[0], strlen(ins[0]));
	snprintf(want, sizeof(want), "b:::.%s@", hashed(he, "email", "0ob@exfamp.co"));
	assert_string_equal(out, want);
	free(out);
	/* a number up to the local part is a number, not left raw */
	out = privacy_mask_text(NULL, ws42, ins[1], strlen(ins[1]));
	snprintf(want, sizeof(want), "call %s %s", hashed(hp, "phone", "+44207946"),
		 hashed(he, "email", "0958jane@example.org"));
	assert_string_equal(out, want);
	free(out);
	/* and a second pass over masked text finds nothing more */
	for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++) {
		out = privacy_mask_text(NULL, ws42, ins[i], strlen(ins[i]));
		again = privacy_mask_text(NULL, ws42, out, strlen(out));
		assert_string_equal(again, out);
		free(again);
		free(out);
	}
}

static void test_privacy__secret_key_names(void **state)
{
	(void)state;
	check_event(NULL,
		    "{\"properties\":{\"password\":\"a\",\"userPassword\":\"b\",\"passwd\":\"c\","
		    "\"api_key\":\"d\",\"apiKey\":\"e\",\"x-api-key\":\"f\",\"APIKey\":\"g\","
		    "\"access_token\":\"h\",\"refreshToken\":\"i\",\"client_secret\":\"j\","
		    "\"SSN\":\"k\",\"userSSN\":\"l\",\"card_number\":\"m\",\"cardNumber\":\"n\","
		    "\"cc_number\":\"o\",\"cvv\":\"p\",\"CVC\":\"q\",\"cvv2\":\"r\","
		    "\"token\":{\"nested\":1},"
		    "\"total_tokens\":5,\"classname\":\"s\",\"tokenizer\":\"t\",\"passage\":\"u\","
		    "\"descending\":\"v\"}}",
		    "{\"properties\":{\"classname\":\"s\",\"descending\":\"v\",\"passage\":\"u\","
		    "\"tokenizer\":\"t\",\"total_tokens\":5}}");
}

/* Normalisation and keys */

static void test_privacy__normalise_email_phone_other(void **state)
{
	static const struct {
		const char *type, *in, *want;
	} cases[] = {
		{ "email", "  Jane.Doe@Example.COM \n", "jane.doe@example.com" },
		{ "phone", " +1 (415) 555-0100 ", "+14155550100" },
		{ "phone", "(415) 555-0100", "4155550100" },
		{ "phone", "+44 (0)20 7946 0958", "+442079460958" },
		{ "phone", "%2B14155550100", "+14155550100" },
		{ "user_id", "  User-ABC ", "User-ABC" },
		{ "anonymous_id", "", "" },
		{ NULL, "\tX\t", "X" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64];
		size_t n = privacy_normalise(cases[i].type, cases[i].in, strlen(cases[i].in), out);

		assert_string_equal(out, cases[i].want);
		assert_int_equal(n, strlen(cases[i].want));
	}
}

static void key_of(const struct privacy_hasher *h, const char *type, const char *raw,
	uint8_t out[PRIVACY_KEY_BYTES])
{
	char norm[128];
	size_t n = privacy_normalise(type, raw, strlen(raw), norm);

	privacy_identifier_key(h, type, norm, n, out);
}

static void test_privacy__email_case_and_spacing_same_key(void **state)
{
	uint8_t a[PRIVACY_KEY_BYTES], b[PRIVACY_KEY_BYTES], c[PRIVACY_KEY_BYTES];

	(void)state;
	key_of(ws42, "email", "Jane.Doe@Example.com", a);
	key_of(ws42, "email", "  jane.doe@EXAMPLE.COM\t", b);
	key_of(ws42, "email", "jane.doe2@example.com", c);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, c, sizeof(a));
}

static void test_privacy__phone_formats_same_key(void **state)
{
	static const char *const forms[] = {
		"+1 (415) 555-0100", "+1-415-555-0100", "+14155550100", " +1 415.555.0100 ",
	};
	uint8_t first[PRIVACY_KEY_BYTES], k[PRIVACY_KEY_BYTES];

	(void)state;
	key_of(ws42, "phone", forms[0], first);
	for (size_t i = 1; i < sizeof(forms) / sizeof(forms[0]); i++) {
		key_of(ws42, "phone", forms[i], k);
		assert_memory_equal(first, k, sizeof(k));
	}
	key_of(ws42, "phone", "+44 (0)20 7946 0958", first);
	key_of(ws42, "phone", "+44 20 7946 0958", k);
	assert_memory_equal(first, k, sizeof(k));
}

static void test_privacy__key_differs_per_workspace_and_type(void **state)
{
	uint8_t a[PRIVACY_KEY_BYTES], b[PRIVACY_KEY_BYTES], c[PRIVACY_KEY_BYTES],
		d[PRIVACY_KEY_BYTES];
	struct privacy_hasher *again = privacy_hasher_new(master, 42);

	(void)state;
	privacy_identifier_key(ws42, "user_id", "u1", 2, a);
	privacy_identifier_key(ws43, "user_id", "u1", 2, b);
	privacy_identifier_key(ws42, "anonymous_id", "u1", 2, c);
	privacy_identifier_key(again, "user_id", "u1", 2, d);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, c, sizeof(a));
	assert_memory_equal(a, d, sizeof(a));
	privacy_hasher_free(again);
}

/* The derivation in privacy.h, recomputed with one-shot HMAC and pinned. */
static void test_privacy__key_matches_reference_hmac(void **state)
{
	static const char label[] = "weft-workspace-subkey\0" "42";
	static const char msg[] = "email\0jane@example.com";
	unsigned char master_bytes[32], subkey[32], full[32];
	unsigned int len = 32;
	uint8_t key[PRIVACY_KEY_BYTES];
	char hex[33];

	(void)state;
	for (int i = 0; i < 32; i++)
		master_bytes[i] = (unsigned char)i;
	assert_non_null(HMAC(EVP_sha256(), master_bytes, 32, (const unsigned char *)label,
			     sizeof(label) - 1, subkey, &len));
	assert_non_null(HMAC(EVP_sha256(), subkey, 32, (const unsigned char *)msg,
			     sizeof(msg) - 1, full, &len));
	privacy_identifier_key(ws42, "email", "jane@example.com", 16, key);
	assert_memory_equal(key, full, PRIVACY_KEY_BYTES);
	hex_encode(key, sizeof(key), hex);
	assert_string_equal(hex, "4ee76a4edc2f2d51fc8dee356a7225d3");
}

struct thread_job {
	uint8_t key[PRIVACY_KEY_BYTES];
	bool same;
};

static void *hash_many(void *arg)
{
	struct thread_job *job = arg;
	uint8_t k[PRIVACY_KEY_BYTES];

	job->same = true;
	for (int i = 0; i < 20000; i++) {
		privacy_identifier_key(ws42, "email", "jane@example.com", 16, k);
		job->same &= memcmp(k, job->key, sizeof(k)) == 0;
	}
	return NULL;
}

static void test_privacy__hasher_shared_by_threads(void **state)
{
	struct thread_job jobs[4];
	pthread_t t[4];

	(void)state;
	for (int i = 0; i < 4; i++) {
		privacy_identifier_key(ws42, "email", "jane@example.com", 16, jobs[i].key);
		assert_int_equal(pthread_create(&t[i], NULL, hash_many, &jobs[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_true(jobs[i].same);
	}
}

/* The master key file */

static void test_privacy__master_create_is_0600_and_loads(void **state)
{
	struct privacy_master *m = NULL;
	struct privacy_hasher *h;
	char path[128];
	struct stat st;
	uint8_t a[PRIVACY_KEY_BYTES], b[PRIVACY_KEY_BYTES];

	(void)state;
	path_in_tmp(path, sizeof(path), "new.key");
	assert_int_equal(privacy_master_create(path), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, 32);
	assert_int_equal(privacy_master_load(path, &m), 0);
	assert_non_null(m);
	/* a fresh random key: not the fixed test key */
	h = privacy_hasher_new(m, 42);
	privacy_identifier_key(h, "user_id", "u1", 2, a);
	privacy_identifier_key(ws42, "user_id", "u1", 2, b);
	assert_memory_not_equal(a, b, sizeof(a));
	privacy_hasher_free(h);
	privacy_master_free(m);
	unlink(path);
}

static void test_privacy__master_create_refuses_existing(void **state)
{
	char path[128];
	struct stat st;

	(void)state;
	path_in_tmp(path, sizeof(path), "exists.key");
	write_file(path, "x", 1, 0600);
	assert_int_equal(privacy_master_create(path), WEFT_ECONFLICT);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 1);
	unlink(path);
}

static void test_privacy__master_load_refuses_0644(void **state)
{
	struct privacy_master *m = (struct privacy_master *)&m;
	unsigned char key[32] = { 1 };
	char path[128];

	(void)state;
	path_in_tmp(path, sizeof(path), "open.key");
	write_file(path, key, sizeof(key), 0644);
	assert_int_equal(privacy_master_load(path, &m), WEFT_EINVAL);
	assert_null(m);
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(privacy_master_load(path, &m), WEFT_EINVAL);
	assert_int_equal(chmod(path, 0604), 0);
	assert_int_equal(privacy_master_load(path, &m), WEFT_EINVAL);
	assert_null(m);
	assert_int_equal(chmod(path, 0400), 0);
	assert_int_equal(privacy_master_load(path, &m), 0);
	privacy_master_free(m);
	unlink(path);
}

static void test_privacy__master_load_refuses_wrong_size(void **state)
{
	struct privacy_master *m = NULL;
	unsigned char key[33] = { 1 };
	char path[128];

	(void)state;
	path_in_tmp(path, sizeof(path), "short.key");
	write_file(path, key, 31, 0600);
	assert_int_equal(privacy_master_load(path, &m), WEFT_EINVAL);
	assert_null(m);
	write_file(path, key, 33, 0600);
	assert_int_equal(privacy_master_load(path, &m), WEFT_EINVAL);
	write_file(path, key, 0, 0600);
	assert_int_equal(privacy_master_load(path, &m), WEFT_EINVAL);
	assert_null(m);
	unlink(path);
}

static void test_privacy__master_load_refuses_missing(void **state)
{
	struct privacy_master *m = NULL;
	char path[128];

	(void)state;
	path_in_tmp(path, sizeof(path), "missing.key");
	assert_int_equal(privacy_master_load(path, &m), WEFT_ENOTFOUND);
	assert_null(m);
	/* a folder is not a key file */
	assert_int_equal(privacy_master_load(tmpdir, &m), WEFT_EINVAL);
}

/* Display values */

static void test_privacy__display_defaults(void **state)
{
	(void)state;
	assert_int_equal(privacy_display_default("email"), PRIVACY_DISPLAY_PARTIAL);
	assert_int_equal(privacy_display_default("phone"), PRIVACY_DISPLAY_PARTIAL);
	assert_int_equal(privacy_display_default("user_id"), PRIVACY_DISPLAY_KEEP);
	assert_int_equal(privacy_display_default("anonymous_id"), PRIVACY_DISPLAY_KEEP);
	assert_int_equal(privacy_display_default("ios.id"), PRIVACY_DISPLAY_KEEP);
	assert_int_equal(privacy_display_default(NULL), PRIVACY_DISPLAY_KEEP);
}

static void check_display(const char *type, const char *norm, enum privacy_display mode,
	const char *want)
{
	char *got = privacy_identifier_display(ws42, type, norm, strlen(norm), mode);

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_privacy__display_partial(void **state)
{
	(void)state;
	check_display("email", "jane@example.com", PRIVACY_DISPLAY_PARTIAL, "j***@example.com");
	check_display("phone", "+14155551234", PRIVACY_DISPLAY_PARTIAL, "+*******1234");
	check_display("phone", "4155551234", PRIVACY_DISPLAY_PARTIAL, "******1234");
	check_display("phone", "123", PRIVACY_DISPLAY_PARTIAL, "***");
	check_display("user_id", "abc123", PRIVACY_DISPLAY_PARTIAL, "a***");
	check_display("user_id", "\xc3\xa9milie", PRIVACY_DISPLAY_PARTIAL, "\xc3\xa9***");
	check_display("email", "not-an-email", PRIVACY_DISPLAY_PARTIAL, "n***");
}

/* Only a value that is one email (or one phone) keeps more than its first character. */
static void test_privacy__display_partial_shows_no_tail(void **state)
{
	(void)state;
	check_display("email", "a@example.org, c_x_55@mail.example.org", PRIVACY_DISPLAY_PARTIAL, "a***");
	check_display("email", "jane@example.org / +15556479847", PRIVACY_DISPLAY_PARTIAL, "j***");
	check_display("email", "jane@example.org;bob@example.net", PRIVACY_DISPLAY_PARTIAL, "j***");
	check_display("email", "a@b.org@c.com", PRIVACY_DISPLAY_PARTIAL, "a***");
	check_display("email", "jane@example.com junk", PRIVACY_DISPLAY_PARTIAL, "j***");
	check_display("email", "<jane@example.com>", PRIVACY_DISPLAY_PARTIAL, "<***");
	check_display("email", "jane%40example.com", PRIVACY_DISPLAY_PARTIAL, "j***");
	check_display("email", "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm"
		      "-jane@example.com", PRIVACY_DISPLAY_PARTIAL, "m***");
	check_display("phone", "+15556479847 jane@example.org", PRIVACY_DISPLAY_PARTIAL, "+***");
	check_display("phone", "4155551234x", PRIVACY_DISPLAY_PARTIAL, "4***");
	check_display("phone", "+4111111111111111", PRIVACY_DISPLAY_PARTIAL, "+***");
	/* one address or number: partial as before */
	check_display("email", "c_x_55@mail.example.org", PRIVACY_DISPLAY_PARTIAL, "c***@mail.example.org");
	check_display("phone", "+15556479847", PRIVACY_DISPLAY_PARTIAL, "+*******9847");
}

static void test_privacy__display_keep_masks_embedded_pii(void **state)
{
	char h1[35], h2[35], want[128];

	(void)state;
	check_display("user_id", "user_8c1f2a", PRIVACY_DISPLAY_KEEP, "user_8c1f2a");
	check_display("user_id", "jane@example.com", PRIVACY_DISPLAY_KEEP,
		      hashed(h1, "email", "jane@example.com"));
	snprintf(want, sizeof(want), "crm:%s:%s", hashed(h1, "email", "jane@example.com"),
		 hashed(h2, "phone", "+14155550100"));
	check_display("user_id", "crm:jane@example.com:+14155550100", PRIVACY_DISPLAY_KEEP, want);
}

static void test_privacy__display_hash_is_null(void **state)
{
	(void)state;
	assert_null(privacy_identifier_display(ws42, "email", "jane@example.com", 16,
					       PRIVACY_DISPLAY_HASH));
	assert_null(privacy_identifier_display(NULL, "user_id", "u1", 2, PRIVACY_DISPLAY_HASH));
}

/* Actions, one policy each */

static void test_privacy__action_keep(void **state)
{
	(void)state;
	check_event("{\"rules\":[{\"detector\":\"email\",\"action\":\"keep\"}]}",
		    "{\"traits\":{\"email\":\"jane@example.com\"}}",
		    "{\"traits\":{\"email\":\"jane@example.com\"}}");
}

static void test_privacy__action_drop_removes_field(void **state)
{
	(void)state;
	check_event("{\"rules\":[{\"detector\":\"card\",\"action\":\"drop\"}]}",
		    "{\"properties\":{\"cc\":\" 4111 1111 1111 1111 \",\"n\":1,"
		    "\"list\":[\"a\",\"4111111111111111\",\"b\"]}}",
		    "{\"properties\":{\"list\":[\"a\",\"b\"],\"n\":1}}");
	check_event("{\"rules\":[{\"path\":\"context.device\",\"action\":\"drop\"}]}",
		    "{\"context\":{\"device\":{\"id\":\"d1\"},\"ip\":\"x\"}}",
		    "{\"context\":{\"ip\":\"x\"}}");
}

static void test_privacy__action_drop_inside_text_redacts(void **state)
{
	(void)state;
	check_event("{\"rules\":[{\"detector\":\"card\",\"action\":\"drop\"}]}",
		    "{\"properties\":{\"note\":\"card 4111 1111 1111 1111 thanks\"}}",
		    "{\"properties\":{\"note\":\"card [redacted:card] thanks\"}}");
}

static void test_privacy__action_redact(void **state)
{
	(void)state;
	/* "ssn" is a secret name too, but the ssn rule comes first and wins */
	check_event("{\"rules\":[{\"detector\":\"ssn\",\"action\":\"redact\"},"
		    "{\"path\":\"traits.name\",\"action\":\"redact\"},"
		    "{\"detector\":\"secret_key\",\"action\":\"redact\"}]}",
		    "{\"traits\":{\"name\":\"Jane Doe\",\"ssn\":\"123-45-6789\",\"apiKey\":\"abc\","
		    "\"note\":\"ssn 123-45-6789\",\"password\":{\"old\":\"x\"}}}",
		    "{\"traits\":{\"apiKey\":\"[redacted:secret_key]\",\"name\":\"[redacted]\","
		    "\"note\":\"ssn [redacted:ssn]\",\"password\":\"[redacted:secret_key]\","
		    "\"ssn\":\"[redacted:ssn]\"}}");
}

static void test_privacy__action_hash_is_stable_keyed(void **state)
{
	struct privacy_policy *p = policy("{\"rules\":[{\"detector\":\"email\",\"action\":\"hash\"},"
					   "{\"path\":\"traits.plan\",\"action\":\"hash\"}]}");
	const char *in = "{\"traits\":{\"email\":\"Jane@Example.com\",\"plan\":\" gold \"},"
			 "\"properties\":{\"text\":\"from jane@example.com\"}}";
	char h1[35], h2[35], want[256];
	char *a, *b;

	(void)state;
	snprintf(want, sizeof(want), "{\"properties\":{\"text\":\"from %s\"},"
		 "\"traits\":{\"email\":\"%s\",\"plan\":\"%s\"}}",
		 hashed(h1, "email", "jane@example.com"), h1, hashed(h2, "value", "gold"));
	a = mask_json(p, ws42, in, NULL);
	assert_string_equal(a, want);
	/* another workspace, another hash */
	b = mask_json(p, ws43, in, NULL);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	privacy_policy_free(p);
}

static void test_privacy__action_partial(void **state)
{
	(void)state;
	check_event("{\"rules\":[{\"detector\":\"email\",\"action\":\"partial\"},"
		    "{\"detector\":\"phone\",\"action\":\"partial\"},"
		    "{\"detector\":\"card\",\"action\":\"partial\"},"
		    "{\"detector\":\"ssn\",\"action\":\"partial\"},"
		    "{\"detector\":\"iban\",\"action\":\"partial\"},"
		    "{\"path\":\"traits.name\",\"action\":\"partial\"}]}",
		    "{\"traits\":{\"email\":\"Jane@Example.com\",\"phone\":\"+1 415 555 1234\","
		    "\"card\":\"4111 1111 1111 1111\",\"ssn\":\"123-45-6789\","
		    "\"iban\":\"DE89 3704 0044 0532 0130 00\",\"name\":\"Jane Doe\","
		    "\"note\":\"mail jane@example.com now\"}}",
		    "{\"traits\":{\"card\":\"************1111\",\"email\":\"j***@example.com\","
		    "\"iban\":\"DE****************3000\",\"name\":\"J***\","
		    "\"note\":\"mail j***@example.com now\",\"phone\":\"+*******1234\","
		    "\"ssn\":\"***-**-6789\"}}");
}

static void test_privacy__action_truncate_ip(void **state)
{
	(void)state;
	check_event("{\"rules\":[{\"path\":\"context.ip\",\"action\":\"truncate_ip\"}]}",
		    "{\"context\":{\"ip\":\"2001:db8:85a3:8d3:1319:8a2e:370:7348\"},"
		    "\"properties\":{\"ip\":\"203.0.113.42\"}}",
		    "{\"context\":{\"ip\":\"2001:db8:85a3::\"},"
		    "\"properties\":{\"ip\":\"203.0.113.42\"}}");
	check_event("{\"rules\":[{\"detector\":\"ip\",\"action\":\"truncate_ip\"}]}",
		    "{\"context\":{\"ip\":\"203.0.113.42\",\"note\":\"via 198.51.100.7\"}}",
		    "{\"context\":{\"ip\":\"203.0.113.0\",\"note\":\"via 198.51.100.0\"}}");
}

static void test_privacy__action_sha256(void **state)
{
	(void)state;
	check_event("{\"rules\":[{\"path\":\"traits.email\",\"action\":\"sha256\"},"
		    "{\"detector\":\"phone\",\"action\":\"sha256\"}]}",
		    "{\"traits\":{\"email\":\" Jane@Example.com\",\"phone\":\"+1 (415) 555-0100\"}}",
		    "{\"traits\":{\"email\":"
		    "\"8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d\","
		    "\"phone\":\"40d3f4e02db27d66cf4cfdda506c2c945f115a7955cc8491dda98ce5beabcda0\"}}");
}

static void test_privacy__hash_without_hasher_redacts(void **state)
{
	struct privacy_policy *p = policy("{\"rules\":[{\"detector\":\"email\",\"action\":\"hash\"}]}");
	char *out = mask_json(p, NULL, "{\"a\":\"x jane@example.com\"}", NULL);

	(void)state;
	assert_string_equal(out, "{\"a\":\"x [redacted:email]\"}");
	free(out);
	privacy_policy_free(p);
}

/* Policies */

static void check_refused(const char *json, const char *want)
{
	struct privacy_policy *p = (struct privacy_policy *)&p;
	struct buf err = BUF_INIT;

	assert_int_equal(privacy_policy_parse(json, strlen(json), &p, &err), WEFT_EINVAL);
	assert_null(p);
	assert_non_null(err.data);
	if (strcmp(err.data, want) != 0)
		fail_msg("'%s': got '%s', want '%s'", json, err.data, want);
	buf_release(&err);
}

static void test_privacy__policy_parse_errors_name_the_rule(void **state)
{
	(void)state;
	check_refused("{\"rules\":[{\"detector\":\"email\",\"action\":\"hash\"},{\"path\":\"a\","
		      "\"action\":\"keep\"},{\"path\":\"b\",\"action\":\"keep\"},{\"path\":\"c\","
		      "\"action\":\"hide\"}]}",
		      "rule 3: unknown action 'hide'");
	check_refused("{\"rules\":[{\"detector\":\"dna\",\"action\":\"drop\"}]}",
		      "rule 0: unknown detector 'dna' (email, phone, card, ssn, iban, ip, secret_key)");
	check_refused("{\"rules\":[{\"action\":\"drop\"}]}",
		      "rule 0: needs a 'path', a 'detector' or both");
	check_refused("{\"rules\":[{\"path\":\"a.b*\",\"action\":\"drop\"}]}",
		      "rule 0: bad glob in path 'a.b*': '*' and '**' must be whole segments");
	check_refused("{\"rules\":[{\"path\":\"a.**.**\",\"action\":\"drop\"}]}",
		      "rule 0: bad glob in path 'a.**.**': '**.**' is one '**' twice");
	check_refused("{\"rules\":[{\"path\":\"a..b\",\"action\":\"drop\"}]}",
		      "rule 0: empty segment in path 'a..b'");
	check_refused("{\"rules\":[{\"path\":\"\",\"action\":\"drop\"}]}",
		      "rule 0: empty segment in path ''");
	check_refused("{\"rules\":[{\"path\":\"x\",\"action\":\"keep\"},"
		      "{\"detector\":\"email\",\"action\":\"truncate_ip\"}]}",
		      "rule 1: action 'truncate_ip' needs detector 'ip', not 'email'");
	check_refused("{\"rules\":[{\"path\":7,\"action\":\"drop\"}]}",
		      "rule 0: 'path' must be a string");
	check_refused("{\"rules\":[{\"detector\":[\"ip\"],\"action\":\"drop\"}]}",
		      "rule 0: 'detector' must be a string");
	check_refused("{\"rules\":[{\"detector\":\"ip\",\"action\":true}]}",
		      "rule 0: 'action' must be a string");
	check_refused("{\"rules\":[{\"detector\":\"ip\"}]}", "rule 0: missing 'action'");
	check_refused("{\"rules\":[{\"detector\":\"ip\",\"action\":\"drop\",\"when\":1}]}",
		      "rule 0: unknown field 'when' (a rule has 'path', 'detector' and 'action')");
	check_refused("{\"rules\":[\"drop\"]}", "rule 0: must be an object");
	check_refused("[]", "a policy must be a JSON object with a 'rules' array");
	check_refused("{\"rules\":{}}", "'rules' must be an array");
	check_refused("{}", "'rules' must be an array");
	check_refused("{\"rules\":[],\"include_default\":\"yes\"}",
		      "'include_default' must be true or false");
	check_refused("{\"rules\":[],\"mode\":1}",
		      "unknown field 'mode' (a policy has 'rules' and 'include_default')");
	check_refused("{\"rules\":[", "invalid JSON at line 1, column 10: ']' expected near end of file");
}

/* A field name cut at the quoting limit must not leave half a character. */
static void test_privacy__policy_errors_are_valid_utf8(void **state)
{
	struct buf err = BUF_INIT, json = BUF_INIT;
	struct privacy_policy *p = NULL;

	(void)state;
	buf_adds(&json, "{\"rules\":[{\"action\":\"keep\",\"path\":\"a\",\"");
	for (int i = 0; i < 30; i++)
		buf_adds(&json, "\xe2\x82\xac");	/* a euro sign, 3 bytes */
	buf_adds(&json, "\":1}]}");
	assert_int_equal(privacy_policy_parse(json.data, json.len, &p, &err), WEFT_EINVAL);
	assert_null(p);
	assert_non_null(strstr(err.data, "rule 0"));
	for (size_t i = 0; i < err.len; i++) {
		unsigned char c = (unsigned char)err.data[i];

		if (c < 0x80)
			continue;
		/* Only whole euro signs may remain. */
		assert_true(i + 2 < err.len);
		assert_memory_equal(err.data + i, "\xe2\x82\xac", 3);
		i += 2;
	}
	buf_release(&err);
	buf_release(&json);
}

static void test_privacy__policy_round_trips_to_json(void **state)
{
	const char *json = "{\"include_default\":true,\"rules\":["
			   "{\"action\":\"keep\",\"path\":\"traits.email\"},"
			   "{\"action\":\"sha256\",\"detector\":\"phone\",\"path\":\"properties.**\"}]}";
	struct privacy_policy *p = policy(json);
	json_t *j = privacy_policy_to_json(p);
	char *out = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

	(void)state;
	assert_string_equal(out, json);
	free(out);
	json_decref(j);
	privacy_policy_free(p);
}

static void test_privacy__default_policy_to_json(void **state)
{
	struct privacy_policy *p = privacy_policy_default();
	json_t *j = privacy_policy_to_json(p);
	char *out = json_dumps(j, JSON_COMPACT);

	(void)state;
	assert_string_equal(out,
		"{\"rules\":[{\"detector\":\"secret_key\",\"action\":\"drop\"},"
		"{\"detector\":\"card\",\"action\":\"drop\"},"
		"{\"detector\":\"ssn\",\"action\":\"drop\"},"
		"{\"detector\":\"iban\",\"action\":\"drop\"},"
		"{\"detector\":\"email\",\"action\":\"hash\"},"
		"{\"detector\":\"phone\",\"action\":\"hash\"},"
		"{\"path\":\"context.ip\",\"action\":\"truncate_ip\"},"
		"{\"detector\":\"ip\",\"action\":\"truncate_ip\"}]}");
	free(out);
	json_decref(j);
	privacy_policy_free(p);
}

static void test_privacy__policy_too_many_rules(void **state)
{
	struct buf json = BUF_INIT;

	(void)state;
	buf_adds(&json, "{\"rules\":[");
	for (int i = 0; i < 65; i++)
		buf_printf(&json, "%s{\"path\":\"p%d\",\"action\":\"keep\"}", i ? "," : "", i);
	buf_adds(&json, "]}");
	check_refused(json.data, "too many rules: 65 (at most 64, counting the default's with "
		      "include_default)");
	buf_release(&json);
}

static void test_privacy__glob_star_is_one_segment(void **state)
{
	(void)state;
	check_event("{\"rules\":[{\"path\":\"properties.*\",\"action\":\"redact\"}]}",
		    "{\"properties\":{\"a\":\"x\",\"b\":{\"c\":\"y\"}},\"traits\":{\"a\":\"z\"}}",
		    "{\"properties\":{\"a\":\"[redacted]\",\"b\":\"[redacted]\"},"
		    "\"traits\":{\"a\":\"z\"}}");
	check_event("{\"rules\":[{\"path\":\"*.a\",\"action\":\"redact\"}]}",
		    "{\"properties\":{\"a\":\"x\",\"b\":{\"a\":\"y\"}},\"traits\":{\"a\":\"z\"},"
		    "\"a\":\"top\"}",
		    "{\"a\":\"top\",\"properties\":{\"a\":\"[redacted]\",\"b\":{\"a\":\"y\"}},"
		    "\"traits\":{\"a\":\"[redacted]\"}}");
}

static void test_privacy__glob_double_star_any_depth(void **state)
{
	(void)state;
	/* "properties.**": everything inside properties, not properties itself */
	check_event("{\"rules\":[{\"path\":\"properties.**\",\"action\":\"partial\"}]}",
		    "{\"properties\":{\"a\":\"xyz\",\"b\":{\"c\":\"uvw\",\"d\":[\"rst\"]}},"
		    "\"traits\":{\"a\":\"keep\"}}",
		    "{\"properties\":{\"a\":\"x***\",\"b\":{\"c\":\"u***\",\"d\":[\"r***\"]}},"
		    "\"traits\":{\"a\":\"keep\"}}");
	check_event("{\"rules\":[{\"path\":\"properties.**\",\"action\":\"drop\"}]}",
		    "{\"properties\":{\"a\":\"x\",\"b\":{\"c\":1}},\"traits\":{\"a\":\"y\"}}",
		    "{\"properties\":{},\"traits\":{\"a\":\"y\"}}");
	/* "**.name": a name at any depth, the top level included */
	check_event("{\"rules\":[{\"path\":\"**.name\",\"action\":\"redact\"}]}",
		    "{\"name\":\"a\",\"x\":{\"name\":\"b\",\"y\":{\"name\":\"c\",\"nom\":\"d\"}}}",
		    "{\"name\":\"[redacted]\",\"x\":{\"name\":\"[redacted]\","
		    "\"y\":{\"name\":\"[redacted]\",\"nom\":\"d\"}}}");
	/* "a.**.z": zero or more segments between */
	check_event("{\"rules\":[{\"path\":\"a.**.z\",\"action\":\"redact\"}]}",
		    "{\"a\":{\"z\":\"1\",\"b\":{\"c\":{\"z\":\"2\"}}},\"z\":\"3\"}",
		    "{\"a\":{\"b\":{\"c\":{\"z\":\"[redacted]\"}},\"z\":\"[redacted]\"},\"z\":\"3\"}");
}

static void test_privacy__glob_array_elements_are_segments(void **state)
{
	(void)state;
	check_event("{\"rules\":[{\"path\":\"properties.products.*.name\",\"action\":\"redact\"},"
		    "{\"path\":\"properties.tags.1\",\"action\":\"drop\"}]}",
		    "{\"properties\":{\"products\":[{\"name\":\"a\",\"sku\":\"s1\"},{\"name\":\"b\"}],"
		    "\"tags\":[\"t0\",\"t1\",\"t2\"]}}",
		    "{\"properties\":{\"products\":[{\"name\":\"[redacted]\",\"sku\":\"s1\"},"
		    "{\"name\":\"[redacted]\"}],\"tags\":[\"t0\",\"t2\"]}}");
}

static void test_privacy__first_match_wins(void **state)
{
	char h[35], want[256];

	(void)state;
	check_event("{\"rules\":[{\"path\":\"traits.email\",\"action\":\"redact\"},"
		    "{\"detector\":\"email\",\"action\":\"hash\"}]}",
		    "{\"traits\":{\"email\":\"jane@example.com\"}}",
		    "{\"traits\":{\"email\":\"[redacted:email]\"}}");
	snprintf(want, sizeof(want), "{\"traits\":{\"email\":\"%s\"}}",
		 hashed(h, "email", "jane@example.com"));
	check_event("{\"rules\":[{\"detector\":\"email\",\"action\":\"hash\"},"
		    "{\"path\":\"traits.email\",\"action\":\"redact\"}]}",
		    "{\"traits\":{\"email\":\"jane@example.com\"}}", want);
	/* a detector rule before a keep still masks inside the kept value */
	snprintf(want, sizeof(want), "{\"traits\":{\"bio\":\"write %s\"}}", h);
	check_event("{\"rules\":[{\"detector\":\"email\",\"action\":\"hash\"},"
		    "{\"path\":\"traits.**\",\"action\":\"keep\"},"
		    "{\"detector\":\"phone\",\"action\":\"redact\"}]}",
		    "{\"traits\":{\"bio\":\"write jane@example.com\"}}", want);
	check_event("{\"rules\":[{\"path\":\"traits.**\",\"action\":\"keep\"},"
		    "{\"detector\":\"email\",\"action\":\"hash\"}]}",
		    "{\"traits\":{\"bio\":\"write jane@example.com\"}}",
		    "{\"traits\":{\"bio\":\"write jane@example.com\"}}");
	/* a field kept as a whole keeps its name; one replaced as a whole does not */
	snprintf(want, sizeof(want), "{\"a\":{\"jane@example.com\":1},\"b\":{\"%s\":\"[redacted]\"}}",
		 h);
	check_event("{\"rules\":[{\"path\":\"a.*\",\"action\":\"keep\"},"
		    "{\"path\":\"b.*\",\"action\":\"redact\"},"
		    "{\"detector\":\"email\",\"action\":\"hash\"}]}",
		    "{\"a\":{\"jane@example.com\":1},\"b\":{\"jane@example.com\":2}}", want);
}

static void test_privacy__keep_rule_lets_one_field_through(void **state)
{
	char h[35], want[256];

	(void)state;
	snprintf(want, sizeof(want), "{\"context\":{\"ip\":\"203.0.113.0\"},"
		 "\"properties\":{\"email\":\"%s\"},\"traits\":{\"email\":\"jane@example.com\"}}",
		 hashed(h, "email", "jane@example.com"));
	check_event("{\"rules\":[{\"path\":\"traits.email\",\"action\":\"keep\"}],"
		    "\"include_default\":true}",
		    "{\"traits\":{\"email\":\"jane@example.com\"},"
		    "\"properties\":{\"email\":\"jane@example.com\"},"
		    "\"context\":{\"ip\":\"203.0.113.9\"}}", want);
}

/* Whole events */

static void test_privacy__default_policy_masks_everywhere(void **state)
{
	char e1[35], e2[35], e3[35], p1[35], p2[35], want[1024];
	const char *in =
		"{\"type\":\"identify\",\"userId\":\"u_1\",\"anonymousId\":\"a-1\","
		"\"messageId\":\"m-1\",\"traits\":{\"email\":\"Jane@Example.com\","
		"\"phone\":\"+1 415 555 0100\",\"password\":\"hunter2\"},"
		"\"context\":{\"ip\":\"203.0.113.42\",\"traits\":{\"email\":\"jane@example.com\"},"
		"\"page\":{\"url\":\"https://x.io/?email=bob%40example.org&utm=1\"},"
		"\"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36\"},"
		"\"properties\":{\"note\":\"call +44 20 7946 0958 or mail al@example.net\","
		"\"card\":\"4111 1111 1111 1111\",\"iban\":\"DE89370400440532013000\","
		"\"ssn\":\"123-45-6789\",\"peer\":\"2001:db8:85a3::1\",\"total\":129.5,"
		"\"when\":\"2024-01-15T10:00:00Z\",\"apiKey\":\"k\"}}";

	(void)state;
	snprintf(want, sizeof(want),
		 "{\"anonymousId\":\"a-1\",\"context\":{\"ip\":\"203.0.113.0\","
		 "\"page\":{\"url\":\"https://x.io/?email=%s&utm=1\"},"
		 "\"traits\":{\"email\":\"%s\"},"
		 "\"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36\"},"
		 "\"messageId\":\"m-1\",\"properties\":{\"note\":\"call %s or mail %s\","
		 "\"peer\":\"2001:db8:85a3::\",\"total\":129.5,\"when\":\"2024-01-15T10:00:00Z\"},"
		 "\"traits\":{\"email\":\"%s\",\"phone\":\"%s\"},\"type\":\"identify\","
		 "\"userId\":\"u_1\"}",
		 hashed(e1, "email", "bob@example.org"), hashed(e2, "email", "jane@example.com"),
		 hashed(p1, "phone", "+442079460958"), hashed(e3, "email", "al@example.net"),
		 e2, hashed(p2, "phone", "+14155550100"));
	check_event(NULL, in, want);
}

static void test_privacy__identity_fields_left_alone_unless_pii(void **state)
{
	char h[35], want[512];
	int changes;
	char *out;

	(void)state;
	out = mask_json(NULL, ws42, "{\"userId\":\"user-12345678\",\"anonymousId\":"
			"\"3f1c9e2a-7b4d-4e8f-9a6b-2c5d8e1f0a3b\",\"previousId\":\"p1\","
			"\"groupId\":\"g-2024-01-15\",\"messageId\":\"ajs-1705312800123-0001\"}",
			&changes);
	assert_int_equal(changes, 0);
	assert_string_equal(out, "{\"anonymousId\":\"3f1c9e2a-7b4d-4e8f-9a6b-2c5d8e1f0a3b\","
			    "\"groupId\":\"g-2024-01-15\",\"messageId\":\"ajs-1705312800123-0001\","
			    "\"previousId\":\"p1\",\"userId\":\"user-12345678\"}");
	free(out);
	snprintf(want, sizeof(want), "{\"userId\":\"%s\"}", hashed(h, "email", "jane@example.com"));
	check_event(NULL, "{\"userId\":\"Jane@Example.com\"}", want);
}

static void test_privacy__object_keys_with_pii_renamed(void **state)
{
	char h[35], want[256];
	int changes;
	char *out;

	(void)state;
	snprintf(want, sizeof(want), "{\"properties\":{\"%s\":{\"visits\":3},\"plain\":1}}",
		 hashed(h, "email", "jane@example.com"));
	out = mask_json(NULL, ws42, "{\"properties\":{\"jane@example.com\":{\"visits\":3},"
			"\"plain\":1}}", &changes);
	assert_string_equal(out, want);
	assert_int_equal(changes, 1);
	free(out);
	/* a key that is a card number goes, value and all */
	check_event(NULL, "{\"properties\":{\"4111111111111111\":\"x\",\"a\":1}}",
		    "{\"properties\":{\"a\":1}}");
	snprintf(want, sizeof(want), "{\"p\":{\"by %s\":1}}", h);
	check_event(NULL, "{\"p\":{\"by jane@example.com\":1}}", want);
}

static void test_privacy__event_without_pii_untouched(void **state)
{
	const char *in = "{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"u_8c1f\","
			 "\"timestamp\":\"2024-01-15T10:00:00.123Z\",\"properties\":{\"order_id\":"
			 "\"ORD-50314\",\"total\":129.99,\"version\":\"10.0.19045\",\"qty\":1234567,"
			 "\"products\":[{\"sku\":\"sku-4411\",\"price\":89.99}]},\"context\":{"
			 "\"locale\":\"en-US\",\"userAgent\":\"Mozilla/5.0 (Macintosh; Intel Mac OS X "
			 "10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
			 "Safari/537.36\",\"library\":{\"name\":\"analytics.js\",\"version\":\"4.1.0\"}}}";
	json_t *e = json_loads(in, 0, NULL), *copy = json_deep_copy(e);

	(void)state;
	assert_int_equal(privacy_mask_event(NULL, ws42, e), 0);
	assert_true(json_equal(e, copy));
	json_decref(e);
	json_decref(copy);
}

static void test_privacy__mask_event_refuses_non_object(void **state)
{
	json_t *a = json_array();

	(void)state;
	assert_int_equal(privacy_mask_event(NULL, ws42, a), WEFT_EINVAL);
	json_decref(a);
}

static void test_privacy__integer_card_number_dropped(void **state)
{
	(void)state;
	check_event(NULL, "{\"properties\":{\"cc\":4111111111111111,\"ts\":1705312800009,"
		    "\"n\":42}}",
		    "{\"properties\":{\"n\":42,\"ts\":1705312800009}}");
}

static void test_privacy__changes_are_counted(void **state)
{
	int changes;
	char *out = mask_json(NULL, ws42, "{\"a\":\"jane@example.com\",\"b\":\"x a@b.io y c@d.io\","
			      "\"password\":\"p\",\"c\":[\"4111111111111111\"],\"ok\":\"fine\"}",
			      &changes);

	(void)state;
	/* a and b rewritten, password and the card element removed */
	assert_int_equal(changes, 4);
	free(out);
}

static void test_privacy__deep_and_long_values(void **state)
{
	struct buf text = BUF_INIT;
	json_t *root = json_object(), *o = root, *leaf;
	char h[35], want[64];
	int depth = 1000;

	(void)state;
	/* an email 1000 objects down, in a 5000-byte string */
	for (int i = 0; i < depth; i++) {
		json_t *child = json_object();

		json_object_set_new(o, "n", child);
		o = child;
	}
	for (int i = 0; i < 500; i++)
		buf_adds(&text, "0123456789");
	buf_adds(&text, " jane@example.com");
	json_object_set_new(o, "s", json_stringn(text.data, text.len));
	assert_int_equal(privacy_mask_event(NULL, ws42, root), 1);
	leaf = root;
	for (int i = 0; i < depth; i++)
		leaf = json_object_get(leaf, "n");
	snprintf(want, sizeof(want), " %s", hashed(h, "email", "jane@example.com"));
	assert_int_equal(json_string_length(json_object_get(leaf, "s")), 5000 + strlen(want));
	assert_string_equal(json_string_value(json_object_get(leaf, "s")) + 5000, want);
	json_decref(root);
	buf_release(&text);
}

static void test_privacy__mask_text_default_policy(void **state)
{
	const char *in = "refused jane@example.com from 203.0.113.42 card 4111111111111111";
	char h[35], want[256];
	char *out = privacy_mask_text(NULL, ws42, in, strlen(in));

	(void)state;
	snprintf(want, sizeof(want), "refused %s from 203.0.113.0 card [redacted:card]",
		 hashed(h, "email", "jane@example.com"));
	assert_string_equal(out, want);
	free(out);
	out = privacy_mask_text(NULL, NULL, "nothing here", 12);
	assert_string_equal(out, "nothing here");
	free(out);
}

static void test_privacy__mask_text_secret_pairs(void **state)
{
	const char *in = "GET /login?user=u1&password=hunter2&api_key=XYZ-123&next=%2F";
	struct privacy_policy *p;
	char h[35], want[256];
	char *out, *again;

	(void)state;
	out = privacy_mask_text(NULL, ws42, in, strlen(in));
	assert_string_equal(out, "GET /login?user=u1&password=[redacted:secret_key]&"
			    "api_key=[redacted:secret_key]&next=%2F");
	free(out);
	check_detector("secret_key", "refused token=abc.def.ghi for u1",
		       "refused token=[redacted:secret_key] for u1");
	check_detector("secret_key", "login failed: password=\"hunter 2\" for u1",
		       "login failed: password=\"[redacted:secret_key]\" for u1");
	check_detector("secret_key", "x?access_token=ya29.a0&total_tokens=5&passage=3&password=",
		       "x?access_token=[redacted:secret_key]&total_tokens=5&passage=3&password=");
	check_detector("secret_key", "user[password]=p1&API_KEY=k2&client_secret=s3",
		       "user[password]=[redacted:secret_key]&API_KEY=[redacted:secret_key]&"
		       "client_secret=[redacted:secret_key]");
	/* a name written percent-encoded */
	check_detector("secret_key", "?api%5Fkey=k1", "?api%5Fkey=[redacted:secret_key]");
	/* hash: the value's key with type secret_key; masking again changes nothing */
	p = policy("{\"rules\":[{\"detector\":\"secret_key\",\"action\":\"hash\"}]}");
	in = "?token=abc123&x=1";
	snprintf(want, sizeof(want), "?token=%s&x=1", hashed(h, "secret_key", "abc123"));
	out = privacy_mask_text(p, ws42, in, strlen(in));
	assert_string_equal(out, want);
	again = privacy_mask_text(p, ws42, out, strlen(out));
	assert_string_equal(again, out);
	free(again);
	free(out);
	privacy_policy_free(p);
	/* events mask them inside strings too, unless a rule keeps the value */
	check_event(NULL, "{\"context\":{\"page\":{\"url\":\"https://x.io/r?token=abc123&step=2\"}}}",
		    "{\"context\":{\"page\":{\"url\":"
		    "\"https://x.io/r?token=[redacted:secret_key]&step=2\"}}}");
	check_event("{\"rules\":[{\"path\":\"context.page.url\",\"action\":\"keep\"}],"
		    "\"include_default\":true}",
		    "{\"context\":{\"page\":{\"url\":\"https://x.io/r?token=abc123&step=2\"}}}",
		    "{\"context\":{\"page\":{\"url\":\"https://x.io/r?token=abc123&step=2\"}}}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_privacy__email_found_in_text_and_urls),
		cmocka_unit_test(test_privacy__email_ignores_handles_and_bare_at),
		cmocka_unit_test(test_privacy__email_percent_encoded_hashes_like_raw),
		cmocka_unit_test(test_privacy__phone_formats_found),
		cmocka_unit_test(test_privacy__phone_ignores_dates_versions_prices),
		cmocka_unit_test(test_privacy__phone_never_alters_uuids),
		cmocka_unit_test(test_privacy__card_requires_luhn),
		cmocka_unit_test(test_privacy__ssn_refuses_invalid_groups),
		cmocka_unit_test(test_privacy__iban_requires_mod97),
		cmocka_unit_test(test_privacy__ip_v4_and_v6_found),
		cmocka_unit_test(test_privacy__ip_ignores_times_macs_and_long_dotted),
		cmocka_unit_test(test_privacy__email_with_overlong_local_part_still_masked),
		cmocka_unit_test(test_privacy__percent_encoded_separators_decoded),
		cmocka_unit_test(test_privacy__text_before_an_email_judged_alone),
		cmocka_unit_test(test_privacy__secret_key_names),
		cmocka_unit_test(test_privacy__normalise_email_phone_other),
		cmocka_unit_test(test_privacy__email_case_and_spacing_same_key),
		cmocka_unit_test(test_privacy__phone_formats_same_key),
		cmocka_unit_test(test_privacy__key_differs_per_workspace_and_type),
		cmocka_unit_test(test_privacy__key_matches_reference_hmac),
		cmocka_unit_test(test_privacy__hasher_shared_by_threads),
		cmocka_unit_test(test_privacy__master_create_is_0600_and_loads),
		cmocka_unit_test(test_privacy__master_create_refuses_existing),
		cmocka_unit_test(test_privacy__master_load_refuses_0644),
		cmocka_unit_test(test_privacy__master_load_refuses_wrong_size),
		cmocka_unit_test(test_privacy__master_load_refuses_missing),
		cmocka_unit_test(test_privacy__display_defaults),
		cmocka_unit_test(test_privacy__display_partial),
		cmocka_unit_test(test_privacy__display_partial_shows_no_tail),
		cmocka_unit_test(test_privacy__display_keep_masks_embedded_pii),
		cmocka_unit_test(test_privacy__display_hash_is_null),
		cmocka_unit_test(test_privacy__action_keep),
		cmocka_unit_test(test_privacy__action_drop_removes_field),
		cmocka_unit_test(test_privacy__action_drop_inside_text_redacts),
		cmocka_unit_test(test_privacy__action_redact),
		cmocka_unit_test(test_privacy__action_hash_is_stable_keyed),
		cmocka_unit_test(test_privacy__action_partial),
		cmocka_unit_test(test_privacy__action_truncate_ip),
		cmocka_unit_test(test_privacy__action_sha256),
		cmocka_unit_test(test_privacy__hash_without_hasher_redacts),
		cmocka_unit_test(test_privacy__policy_parse_errors_name_the_rule),
		cmocka_unit_test(test_privacy__policy_errors_are_valid_utf8),
		cmocka_unit_test(test_privacy__policy_round_trips_to_json),
		cmocka_unit_test(test_privacy__default_policy_to_json),
		cmocka_unit_test(test_privacy__policy_too_many_rules),
		cmocka_unit_test(test_privacy__glob_star_is_one_segment),
		cmocka_unit_test(test_privacy__glob_double_star_any_depth),
		cmocka_unit_test(test_privacy__glob_array_elements_are_segments),
		cmocka_unit_test(test_privacy__first_match_wins),
		cmocka_unit_test(test_privacy__keep_rule_lets_one_field_through),
		cmocka_unit_test(test_privacy__default_policy_masks_everywhere),
		cmocka_unit_test(test_privacy__identity_fields_left_alone_unless_pii),
		cmocka_unit_test(test_privacy__object_keys_with_pii_renamed),
		cmocka_unit_test(test_privacy__event_without_pii_untouched),
		cmocka_unit_test(test_privacy__mask_event_refuses_non_object),
		cmocka_unit_test(test_privacy__integer_card_number_dropped),
		cmocka_unit_test(test_privacy__changes_are_counted),
		cmocka_unit_test(test_privacy__deep_and_long_values),
		cmocka_unit_test(test_privacy__mask_text_default_policy),
		cmocka_unit_test(test_privacy__mask_text_secret_pairs),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
