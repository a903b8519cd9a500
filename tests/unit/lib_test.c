/*
 * Unit tests for lib/buf.c (the growable buffer every encoder writes into),
 * lib/digest.c (SHA-256 and hex), lib/jsonw.c (compact JSON of a jansson
 * tree: jansson's bytes, reals in their shortest form) and lib/keyset.c
 * (the set of 16-byte keys). The buffer's contract is checked against an independent model:
 * every byte appended is where it should be and is always followed by a
 * NUL, whatever the growth pattern.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/digest.h"
#include "lib/jsonw.h"
#include "lib/keyset.h"

/* Asserts the buffer holds exactly the n bytes of want, NUL-terminated. */
static void assert_buf_is(const struct buf *b, const void *want, size_t n)
{
	assert_int_equal(b->len, n);
	assert_non_null(b->data);
	assert_true(b->cap > b->len);
	if (n)
		assert_memory_equal(b->data, want, n);
	assert_int_equal(b->data[b->len], '\0');
}

/* ---- buf: growth and the basic appenders ---- */

static void test_buf__init_is_empty_without_memory(void **state)
{
	struct buf b = BUF_INIT, c;

	(void)state;
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	memset(&c, 0x5a, sizeof(c));
	buf_init(&c);
	assert_null(c.data);
	assert_int_equal(c.len, 0);
	assert_int_equal(c.cap, 0);
	buf_release(&b);	/* releasing an empty buffer is harmless */
	assert_null(b.data);
}

static void test_buf__empty_append_gives_empty_c_string(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	buf_add(&b, NULL, 0);
	assert_buf_is(&b, "", 0);
	assert_string_equal(b.data, "");
	buf_adds(&b, "");
	assert_buf_is(&b, "", 0);
	buf_release(&b);
}

static void test_buf__byte_appends_grow_and_keep_every_byte(void **state)
{
	enum { N = 100000 };
	struct buf b = BUF_INIT;
	char *model = malloc(N);
	size_t last_cap = 0, regrowths = 0;

	(void)state;
	assert_non_null(model);
	for (size_t i = 0; i < N; i++) {
		model[i] = (char)('a' + (i * 7) % 26);
		buf_addc(&b, model[i]);
		assert_int_equal(b.len, i + 1);
		assert_true(b.cap > b.len);
		assert_int_equal(b.data[b.len], '\0');
		if (b.cap != last_cap) {
			regrowths++;
			last_cap = b.cap;
		}
	}
	assert_buf_is(&b, model, N);
	/* Geometric growth: a handful of reallocations, not one per append. */
	assert_true(regrowths < 20);
	free(model);
	buf_release(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
}

static void test_buf__large_appends_cross_capacity_boundaries(void **state)
{
	struct buf b = BUF_INIT;
	char chunk[1000];
	char *model = malloc(1000 * 300);
	size_t len = 0;

	(void)state;
	assert_non_null(model);
	/* Sizes 0..299 hit every offset around the powers of two. */
	for (size_t n = 0; n < 300; n++) {
		for (size_t i = 0; i < n; i++)
			chunk[i] = (char)(n + i);
		buf_add(&b, chunk, n);
		memcpy(model + len, chunk, n);
		len += n;
		assert_buf_is(&b, model, len);
	}
	free(model);
	buf_release(&b);
}

static void test_buf__embedded_nul_bytes_are_data(void **state)
{
	struct buf b = BUF_INIT;
	static const char bytes[] = { 'a', '\0', 'b', '\0', '\0', 'c' };

	(void)state;
	buf_add(&b, bytes, sizeof(bytes));
	buf_addc(&b, '\0');
	assert_int_equal(b.len, sizeof(bytes) + 1);
	assert_memory_equal(b.data, bytes, sizeof(bytes));
	assert_int_equal(b.data[sizeof(bytes)], '\0');
	assert_int_equal(b.data[b.len], '\0');
	buf_release(&b);
}

static void test_buf__grow_reserves_without_changing_content(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	buf_adds(&b, "hello");
	buf_grow(&b, 10000);
	assert_true(b.cap >= 5 + 10000 + 1);
	assert_buf_is(&b, "hello", 5);

	/* Once reserved, appends up to that size do not move the data. */
	char *before = b.data;

	for (int i = 0; i < 10000; i++)
		buf_addc(&b, 'x');
	assert_ptr_equal(b.data, before);
	assert_int_equal(b.len, 10005);
	buf_release(&b);
}

static void test_buf__reset_empties_and_keeps_memory(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	buf_reset(&b);	/* on a buffer without memory */
	assert_null(b.data);
	assert_int_equal(b.len, 0);

	buf_adds(&b, "some content that takes room");
	size_t cap = b.cap;
	char *data = b.data;

	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, cap);
	assert_ptr_equal(b.data, data);
	assert_string_equal(b.data, "");
	buf_adds(&b, "again");
	assert_buf_is(&b, "again", 5);
	buf_release(&b);
}

static void test_buf__detach_hands_over_the_data(void **state)
{
	struct buf b = BUF_INIT;
	size_t len = 99;
	char *p;

	(void)state;
	buf_adds(&b, "owned by the caller");
	p = buf_detach(&b, &len);
	assert_string_equal(p, "owned by the caller");
	assert_int_equal(len, strlen("owned by the caller"));
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	free(p);

	/* An empty buffer still gives a string the caller can free. */
	p = buf_detach(&b, &len);
	assert_non_null(p);
	assert_string_equal(p, "");
	assert_int_equal(len, 0);
	free(p);

	buf_adds(&b, "no length wanted");
	p = buf_detach(&b, NULL);
	assert_string_equal(p, "no length wanted");
	free(p);
}

/* ---- buf_printf ---- */

static void test_buf__printf_formats_and_appends(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	buf_printf(&b, "%d-%s-%c", 42, "abc", 'z');
	assert_string_equal(b.data, "42-abc-z");
	assert_int_equal(b.len, 8);
	buf_printf(&b, "|%lld|%zu|%.2f", -9007199254740993LL, (size_t)7, 1.5);
	assert_string_equal(b.data, "42-abc-z|-9007199254740993|7|1.50");
	assert_int_equal(b.len, strlen(b.data));
	buf_printf(&b, "%s", "");
	assert_string_equal(b.data, "42-abc-z|-9007199254740993|7|1.50");
	buf_release(&b);
}

static void test_buf__printf_output_of_every_length_is_exact(void **state)
{
	char src[1200], want[4096];

	(void)state;
	memset(src, 'q', sizeof(src) - 1);
	src[sizeof(src) - 1] = '\0';
	/*
	 * Every output length from 0 to 1100 after prefixes of several lengths,
	 * so the "fits exactly", "one byte short" and "needs a second pass"
	 * cases are all met whatever the buffer's capacity happens to be.
	 */
	for (int prefix = 0; prefix < 70; prefix += 23) {
		for (int n = 0; n <= 1100; n++) {
			struct buf b = BUF_INIT;

			buf_add(&b, src, (size_t)prefix);
			buf_printf(&b, "%.*s<%d>", n, src, n);
			snprintf(want, sizeof(want), "%.*s%.*s<%d>", prefix, src,
				 n, src, n);
			assert_buf_is(&b, want, strlen(want));
			buf_release(&b);
		}
	}
}

static void test_buf__printf_long_output_after_long_content(void **state)
{
	struct buf b = BUF_INIT;
	char big[5000];

	(void)state;
	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	buf_adds(&b, big);
	buf_printf(&b, "[%s]", big);
	assert_int_equal(b.len, 2 * (sizeof(big) - 1) + 2);
	assert_int_equal(b.data[sizeof(big) - 1], '[');
	assert_int_equal(b.data[b.len - 1], ']');
	assert_int_equal(b.data[b.len], '\0');
	assert_int_equal(strlen(b.data), b.len);
	buf_release(&b);
}

/* ---- buf_add_json_string ---- */

static void json_string_is(const char *in, size_t n, const char *want)
{
	struct buf b = BUF_INIT;

	buf_add_json_string(&b, in, n);
	assert_string_equal(b.data, want);
	assert_int_equal(b.len, strlen(want));
	buf_release(&b);
}

static void test_buf__json_string_plain_text_is_quoted(void **state)
{
	(void)state;
	json_string_is("", 0, "\"\"");
	json_string_is("hello world", 11, "\"hello world\"");
	/* n, not the NUL, ends the string. */
	json_string_is("abcdef", 3, "\"abc\"");
}

static void test_buf__json_string_escapes_quotes_and_backslashes(void **state)
{
	(void)state;
	json_string_is("say \"hi\"", 8, "\"say \\\"hi\\\"\"");
	json_string_is("C:\\path\\", 8, "\"C:\\\\path\\\\\"");
	json_string_is("\\\"", 2, "\"\\\\\\\"\"");
	/* The solidus needs no escape. */
	json_string_is("a/b", 3, "\"a/b\"");
}

static void test_buf__json_string_escapes_every_control_char(void **state)
{
	char in[1], want[16];

	(void)state;
	json_string_is("\n", 1, "\"\\n\"");
	json_string_is("\r", 1, "\"\\r\"");
	json_string_is("\t", 1, "\"\\t\"");
	json_string_is("a\nb\tc\rd", 7, "\"a\\nb\\tc\\rd\"");
	for (int c = 0; c < 0x20; c++) {
		if (c == '\n' || c == '\r' || c == '\t')
			continue;
		in[0] = (char)c;
		snprintf(want, sizeof(want), "\"\\u%04x\"", c);
		json_string_is(in, 1, want);
	}
	/* An embedded NUL is data, escaped like any control character. */
	json_string_is("a\0b", 3, "\"a\\u0000b\"");
}

static void test_buf__json_string_keeps_utf8_and_del(void **state)
{
	(void)state;
	json_string_is("\xc3\xa9t\xc3\xa9", 5, "\"\xc3\xa9t\xc3\xa9\"");
	json_string_is("\xf0\x9f\x98\x80", 4, "\"\xf0\x9f\x98\x80\"");
	json_string_is("\x7f", 1, "\"\x7f\"");
	json_string_is(" ~", 2, "\" ~\"");
}

/*
 * Error messages quote input cut at a byte count; the JSON around them must
 * stay valid whatever the bytes, so malformed UTF-8 becomes U+FFFD.
 */
static void test_buf__json_string_replaces_invalid_utf8(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ "a\xe2\x82", "\"a\\ufffd\\ufffd\"" },		/* cut euro sign */
		{ "\xc0\xaf", "\"\\ufffd\\ufffd\"" },		/* overlong '/' */
		{ "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },	/* surrogate */
		{ "\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" },	/* > U+10FFFF */
		{ "\xff", "\"\\ufffd\"" },
		{ "\xe2\x82\xac\xf0\x9f\x98\x80", "\"\xe2\x82\xac\xf0\x9f\x98\x80\"" },
	};
	struct buf b = BUF_INIT;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_reset(&b);
		buf_add_json_string(&b, cases[i].in, strlen(cases[i].in));
		assert_string_equal(b.data, cases[i].out);
	}
	buf_release(&b);
}

static void test_buf__json_string_appends_after_content(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	buf_adds(&b, "{\"k\":");
	buf_add_json_string(&b, "v\"1", 3);
	buf_addc(&b, '}');
	assert_string_equal(b.data, "{\"k\":\"v\\\"1\"}");
	buf_release(&b);
}

static void test_buf__json_string_long_input_with_escapes(void **state)
{
	enum { N = 20000 };
	struct buf b = BUF_INIT;
	char *in = malloc(N);

	(void)state;
	assert_non_null(in);
	for (size_t i = 0; i < N; i++)
		in[i] = (i % 3 == 0) ? '"' : (i % 3 == 1) ? '\x01' : 'x';
	buf_add_json_string(&b, in, N);
	/* Each triple '"', 0x01, 'x' becomes \" \u0001 x: 2 + 6 + 1 bytes. */
	size_t triples = N / 3, rest = N % 3;
	size_t want = 2 + triples * 9 + (rest >= 1 ? 2 : 0) + (rest >= 2 ? 6 : 0);

	assert_int_equal(b.len, want);
	assert_memory_equal(b.data, "\"\\\"\\u0001x\\\"", 12);
	assert_int_equal(b.data[b.len - 1], '"');
	assert_int_equal(b.data[b.len], '\0');
	free(in);
	buf_release(&b);
}

/* ---- buf: big-endian writers ---- */

static void test_buf__be16_writes_high_byte_first(void **state)
{
	struct buf b = BUF_INIT;
	static const unsigned char want[] = { 0x12, 0x34, 0x00, 0x00,
					      0xff, 0xff, 0x80, 0x01 };

	(void)state;
	buf_add_be16(&b, 0x1234);
	buf_add_be16(&b, 0);
	buf_add_be16(&b, 0xffff);
	buf_add_be16(&b, 0x8001);
	assert_buf_is(&b, want, sizeof(want));
	buf_release(&b);
}

static void test_buf__be32_writes_high_byte_first(void **state)
{
	struct buf b = BUF_INIT;
	static const unsigned char want[] = { 0x12, 0x34, 0x56, 0x78,
					      0xff, 0xff, 0xff, 0xff,
					      0x00, 0x00, 0x00, 0x01,
					      0x80, 0x00, 0x00, 0x00 };

	(void)state;
	buf_add_be32(&b, 0x12345678u);
	buf_add_be32(&b, 0xffffffffu);
	buf_add_be32(&b, 1);
	buf_add_be32(&b, 0x80000000u);
	assert_buf_is(&b, want, sizeof(want));
	buf_release(&b);
}

static void test_buf__be64_writes_high_byte_first(void **state)
{
	struct buf b = BUF_INIT;
	static const unsigned char want[] = {
		0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,	/* -2 */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	};

	(void)state;
	buf_add_be64(&b, 0x0123456789abcdefULL);
	buf_add_be64(&b, (uint64_t)(int64_t)-2);
	buf_add_be64(&b, 0);
	buf_add_be64(&b, 0x8000000000000001ULL);
	assert_buf_is(&b, want, sizeof(want));
	buf_release(&b);
}

static void test_buf__be_writers_mix_with_text(void **state)
{
	struct buf b = BUF_INIT;
	static const unsigned char want[] = { 'P', 0x00, 0x02, 'Q',
					      0x00, 0x00, 0x00, 0x03, 'R' };

	(void)state;
	buf_addc(&b, 'P');
	buf_add_be16(&b, 2);
	buf_addc(&b, 'Q');
	buf_add_be32(&b, 3);
	buf_addc(&b, 'R');
	assert_buf_is(&b, want, sizeof(want));
	buf_release(&b);
}

/* ---- digest ---- */

static void sha256_hex_is(const void *data, size_t len, const char *want)
{
	uint8_t md[32];
	char hex[65];

	memset(hex, 'X', sizeof(hex));
	sha256(data, len, md);
	hex_encode(md, sizeof(md), hex);
	assert_string_equal(hex, want);
}

static void test_digest__sha256_abc_known_vector(void **state)
{
	(void)state;
	/* FIPS 180-2, appendix B.1. */
	sha256_hex_is("abc", 3,
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_digest__sha256_empty_and_two_block_vectors(void **state)
{
	static const char two_blocks[] =
		"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

	(void)state;
	sha256_hex_is("", 0,
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	/* FIPS 180-2, appendix B.2 (448 bits, two blocks once padded). */
	sha256_hex_is(two_blocks, strlen(two_blocks),
		"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_digest__sha256_million_a(void **state)
{
	enum { N = 1000000 };
	char *a = malloc(N);

	(void)state;
	assert_non_null(a);
	memset(a, 'a', N);
	/* FIPS 180-2, appendix B.3. */
	sha256_hex_is(a, N,
		"cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(a);
}

static void test_digest__sha256_reads_only_len_bytes(void **state)
{
	(void)state;
	sha256_hex_is("abcdef", 3,
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_digest__hex_encode_is_lower_case_and_terminated(void **state)
{
	static const uint8_t in[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef,
				      0xff, 0x10, 0x9a };
	char out[2 * sizeof(in) + 2];

	(void)state;
	memset(out, 'X', sizeof(out));
	hex_encode(in, sizeof(in), out);
	assert_string_equal(out, "00017f80abcdefff109a");
	/* Exactly 2n digits and a NUL: the byte after is not touched. */
	assert_int_equal(out[2 * sizeof(in) + 1], 'X');

	memset(out, 'X', sizeof(out));
	hex_encode(in, 0, out);
	assert_int_equal(out[0], '\0');
	assert_int_equal(out[1], 'X');
}

static void test_digest__hex_encode_every_byte_value(void **state)
{
	uint8_t in[256];
	char out[513], want[3];

	(void)state;
	for (int i = 0; i < 256; i++)
		in[i] = (uint8_t)i;
	hex_encode(in, sizeof(in), out);
	assert_int_equal(strlen(out), 512);
	for (int i = 0; i < 256; i++) {
		snprintf(want, sizeof(want), "%02x", i);
		assert_memory_equal(out + 2 * i, want, 2);
	}
}

/* ---- jsonw: compact JSON of a jansson tree ---- */

/* xorshift64: the same sequence on every run. */
static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* buf_add_json's text of v; v's reference is taken. */
static char *jsonw_of(json_t *v)
{
	struct buf b = BUF_INIT;

	assert_non_null(v);
	buf_add_json(&b, v);
	json_decref(v);
	assert_int_equal(strlen(b.data), b.len);
	return buf_detach(&b, NULL);
}

static void jsonw_is(json_t *v, const char *want)
{
	char *have = jsonw_of(v);

	assert_string_equal(have, want);
	free(have);
}

static bool same_double(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

/* The fewest digits %.*g needs for d to read back exactly. */
static int min_precision(double d)
{
	char text[48];

	for (int prec = 1; prec < 17; prec++) {
		snprintf(text, sizeof(text), "%.*g", prec, d);
		if (same_double(strtod(text, NULL), d))
			return prec;
	}
	return 17;
}

/* Significant digits in a real's text: "0.0300" and "3e-2" have one. */
static int sig_digits(const char *text)
{
	char digits[48];
	size_t n = 0, from = 0;

	for (const char *c = text; *c && *c != 'e'; c++)
		if (*c >= '0' && *c <= '9')
			digits[n++] = *c;
	while (from < n && digits[from] == '0')
		from++;
	while (n > from && digits[n - 1] == '0')
		n--;
	return n > from ? (int)(n - from) : 1;
}

/*
 * Asserts text is d as buf_add_json_real must write it: JSON's number
 * syntax with a '.' or an 'e' (so jansson reads a real), an exponent
 * without '+' or leading zeros, reading back as exactly d (through strtod
 * and through jansson), in as few digits as %g can.
 */
static void assert_real_text(double d, const char *text)
{
	const char *c = text, *e;
	json_error_t err;
	json_t *j;

	if (*c == '-')
		c++;
	assert_true(*c >= '0' && *c <= '9');
	assert_true(*c != '0' || c[1] == '.' || c[1] == '\0');
	assert_true(strchr(text, '.') || strchr(text, 'e'));
	assert_null(strchr(text, '+'));
	if ((e = strchr(text, 'e'))) {
		e += e[1] == '-' ? 2 : 1;
		assert_true(*e >= '1' && *e <= '9');
	}
	assert_int_equal(strspn(text, "-0123456789.e"), strlen(text));
	assert_true(same_double(strtod(text, NULL), d));
	j = json_loads(text, JSON_DECODE_ANY, &err);
	if (!j)
		fail_msg("'%s' is not JSON: %s", text, err.text);
	assert_true(json_is_real(j));
	assert_true(same_double(json_real_value(j), d));
	json_decref(j);
	assert_int_equal(sig_digits(text), min_precision(d));
}

static void test_jsonw__reals_print_shortest_and_read_back_exactly(void **state)
{
	static const struct {
		double d;
		const char *text;
	} cases[] = {
		{ 7.7, "7.7" },
		{ -7.7, "-7.7" },
		{ 0.1, "0.1" },
		{ 1.5, "1.5" },
		{ 19.99, "19.99" },
		{ 1e300, "1e300" },
		{ 5e-324, "5e-324" },
		{ -0.0, "-0.0" },
		{ 0.0, "0.0" },
		{ 1.0, "1.0" },
		{ 100.0, "100.0" },
		{ 1e15, "1e15" },
		{ 1e-7, "1e-7" },
		{ 0.0001, "0.0001" },
		{ 123456789012345680.0, "1.2345678901234568e17" },
		{ 0.30000000000000004, "0.30000000000000004" },
		{ 1.7976931348623157e308, "1.7976931348623157e308" },
		{ 2.2250738585072014e-308, "2.2250738585072014e-308" },
		{ 2.225073858507201e-308, "2.225073858507201e-308" },	/* a subnormal */
		{ 9007199254740993.0, "9007199254740992.0" },	/* 2^53 + 1 is not a double */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b = BUF_INIT;

		buf_add_json_real(&b, cases[i].d);
		assert_string_equal(b.data, cases[i].text);
		assert_real_text(cases[i].d, b.data);
		buf_release(&b);
		jsonw_is(json_real(cases[i].d), cases[i].text);
	}
}

static void test_jsonw__random_reals_read_back_exactly_in_fewest_digits(void **state)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	(void)state;
	for (int i = 0; i < 200000; i++) {
		struct buf b = BUF_INIT;
		uint64_t bits;
		double d;

		bits = next_rand(&x);
		/* Every other one a short decimal, as people send them. */
		if (i % 2)
			d = (double)(int64_t)(bits % 2000001) / 1000.0 - 1000.0;
		else
			memcpy(&d, &bits, sizeof(d));
		if (!isfinite(d))
			continue;
		buf_add_json_real(&b, d);
		assert_real_text(d, b.data);
		buf_release(&b);
	}
}

static void test_jsonw__non_finite_reals_are_null(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	buf_add_json_real(&b, INFINITY);
	buf_addc(&b, ',');
	buf_add_json_real(&b, -INFINITY);
	buf_addc(&b, ',');
	buf_add_json_real(&b, NAN);
	assert_string_equal(b.data, "null,null,null");
	buf_release(&b);
}

static void test_jsonw__reals_in_trees_are_short_and_the_rest_as_jansson(void **state)
{
	(void)state;
	jsonw_is(json_pack("{sf s[f{sf}] si sb sn ss}", "price", 7.7, "list", 0.1, "x", 1e300,
			   "n", (json_int_t)3, "ok", 1, "none", "s", "t"),
		 "{\"price\":7.7,\"list\":[0.1,{\"x\":1e300}],\"n\":3,\"ok\":true,"
		 "\"none\":null,\"s\":\"t\"}");
	jsonw_is(json_object(), "{}");
	jsonw_is(json_array(), "[]");
	jsonw_is(json_pack("[[],{},[{}]]"), "[[],{},[{}]]");
	jsonw_is(json_integer(0), "0");
	jsonw_is(json_integer(INT64_MIN), "-9223372036854775808");
	jsonw_is(json_integer(INT64_MAX), "9223372036854775807");
	jsonw_is(json_false(), "false");
}

static void test_jsonw__strings_escape_as_jansson_and_invalid_utf8_becomes_fffd(void **state)
{
	json_t *o;

	(void)state;
	jsonw_is(json_stringn("a\"b\\c/d\b\f\n\r\t\x01\x1f\x7f\0e", 17),
		 "\"a\\\"b\\\\c/d\\b\\f\\n\\r\\t\\u0001\\u001F\x7f\\u0000e\"");
	jsonw_is(json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
		 "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
	/* Only *_nocheck makes these; jansson's own dump fails on them. */
	jsonw_is(json_string_nocheck("a\xff" "b\xe2\x82"),
		 "\"a\\ufffdb\\ufffd\\ufffd\"");
	jsonw_is(json_string_nocheck("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");
	o = json_object();
	json_object_set_new_nocheck(o, "k\xc0", json_true());
	json_object_setn_new(o, "n\0ul", 4, json_null());
	jsonw_is(o, "{\"k\\ufffd\":true,\"n\\u0000ul\":null}");
}

/* A random piece of a string: mostly plain ASCII, often something to escape. */
static void random_piece(uint64_t *x, struct buf *s)
{
	static const char *const pieces[] = {
		"\"", "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x01", "\x1f", "\x7f",
		"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xef\xbf\xbf",
	};
	uint64_t r = next_rand(x);

	if (r % 3)
		buf_addc(s, (char)(' ' + (r >> 8) % 95));
	else if (r % 7 == 0)
		buf_addc(s, (char)((r >> 8) % 32));
	else
		buf_adds(s, pieces[(r >> 8) % (sizeof(pieces) / sizeof(pieces[0]))]);
}

static json_t *random_json_string(uint64_t *x, struct buf *s)
{
	size_t n = next_rand(x) % 12;

	buf_reset(s);
	for (size_t i = 0; i < n; i++)
		random_piece(x, s);
	return json_stringn(s->data ? s->data : "", s->len);
}

/* A random tree without reals, at most depth levels deep. */
static json_t *random_tree(uint64_t *x, int depth)
{
	struct buf s = BUF_INIT;
	uint64_t r = next_rand(x);
	json_t *v;

	switch (depth > 0 ? r % 8 : r % 5) {
	case 0:
		v = random_json_string(x, &s);
		break;
	case 1:
		switch (next_rand(x) % 4) {
		case 0:
			v = json_integer((json_int_t)next_rand(x));
			break;
		case 1:
			v = json_integer(INT64_MIN + (json_int_t)(next_rand(x) % 3));
			break;
		default:
			v = json_integer((json_int_t)(next_rand(x) % 2001) - 1000);
			break;
		}
		break;
	case 2:
		v = json_true();
		break;
	case 3:
		v = json_false();
		break;
	case 4:
		v = json_null();
		break;
	case 5:
	case 6:
		v = json_object();
		for (size_t n = next_rand(x) % 6; n; n--) {
			json_t *key = random_json_string(x, &s);

			/* A key seen before is replaced in place, as jansson does. */
			json_object_setn_new(v, json_string_value(key), json_string_length(key),
					     random_tree(x, depth - 1));
			json_decref(key);
		}
		break;
	default:
		v = json_array();
		for (size_t n = next_rand(x) % 6; n; n--)
			json_array_append_new(v, random_tree(x, depth - 1));
		break;
	}
	buf_release(&s);
	assert_non_null(v);
	return v;
}

static void test_jsonw__random_trees_without_reals_match_jansson_byte_for_byte(void **state)
{
	uint64_t x = 0x2545f4914f6cdd1dull;

	(void)state;
	for (int i = 0; i < 20000; i++) {
		json_t *v = random_tree(&x, 1 + i % 5);
		char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		struct buf b = BUF_INIT;

		assert_non_null(want);
		buf_add_json(&b, v);
		assert_string_equal(b.data, want);
		assert_int_equal(b.len, strlen(want));
		free(want);
		buf_release(&b);
		json_decref(v);
	}
}

static void test_jsonw__appends_after_content(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	buf_adds(&b, "x=");
	buf_add_json_jstring(&b, "a\"b", 3);
	buf_addc(&b, ' ');
	buf_add_json_jstring(&b, "abcdef", 2);	/* n, not the NUL, ends it */
	assert_string_equal(b.data, "x=\"a\\\"b\" \"ab\"");
	buf_release(&b);
}

/* ---- keyset ---- */

/* Key number i: the SHA-256 of i, cut to 16 bytes (uniform, as keyed hashes are). */
static void key_of(uint32_t i, uint8_t key[KEYSET_KEY_BYTES])
{
	uint8_t h[32];

	sha256(&i, sizeof(i), h);
	memcpy(key, h, KEYSET_KEY_BYTES);
}

static void test_keyset__empty_set_has_nothing(void **state)
{
	struct keyset *s = keyset_new(0);
	uint8_t key[KEYSET_KEY_BYTES];

	(void)state;
	assert_int_equal(keyset_count(s), 0);
	for (uint32_t i = 0; i < 100; i++) {
		key_of(i, key);
		assert_false(keyset_has(s, key));
	}
	memset(key, 0, sizeof(key));
	assert_false(keyset_has(s, key));
	keyset_free(s);
	keyset_free(NULL);	/* harmless */
}

static void test_keyset__add_is_true_once_then_false(void **state)
{
	struct keyset *s = keyset_new(0);
	uint8_t key[KEYSET_KEY_BYTES], copy[KEYSET_KEY_BYTES];

	(void)state;
	key_of(1, key);
	assert_true(keyset_add(s, key));
	assert_int_equal(keyset_count(s), 1);
	memcpy(copy, key, sizeof(key));
	memset(key, 0xee, sizeof(key));	/* the set keeps its own copy */
	assert_true(keyset_has(s, copy));
	assert_false(keyset_add(s, copy));
	assert_int_equal(keyset_count(s), 1);
	keyset_free(s);
}

static void test_keyset__many_keys_all_found_and_no_others(void **state)
{
	enum { N = 200000 };
	struct keyset *s = keyset_new(0);	/* grows many times */
	uint8_t key[KEYSET_KEY_BYTES];

	(void)state;
	for (uint32_t i = 0; i < N; i++) {
		key_of(2 * i, key);
		assert_true(keyset_add(s, key));
	}
	assert_int_equal(keyset_count(s), N);
	for (uint32_t i = 0; i < N; i++) {
		key_of(2 * i, key);
		assert_true(keyset_has(s, key));
		assert_false(keyset_add(s, key));
		key_of(2 * i + 1, key);
		assert_false(keyset_has(s, key));
	}
	assert_int_equal(keyset_count(s), N);
	keyset_free(s);
}

static void test_keyset__keys_sharing_hashed_bytes_are_distinct(void **state)
{
	/* The first eight bytes are the hash: these all land in one chain. */
	enum { N = 300 };
	struct keyset *s = keyset_new(4);
	uint8_t key[KEYSET_KEY_BYTES];

	(void)state;
	memset(key, 0x42, sizeof(key));
	for (uint32_t i = 0; i < N; i++) {
		memcpy(key + 12, &i, sizeof(i));
		assert_true(keyset_add(s, key));
	}
	assert_int_equal(keyset_count(s), N);
	for (uint32_t i = 0; i < 2 * N; i++) {
		memcpy(key + 12, &i, sizeof(i));
		assert_int_equal(keyset_has(s, key), i < N);
	}
	/* Differing only in the last bit, too. */
	memset(key, 0x42, sizeof(key));
	key[15] = 0xfe;
	assert_true(keyset_add(s, key));
	key[15] = 0xff;
	assert_false(keyset_has(s, key));
	assert_true(keyset_add(s, key));
	key[15] = 0xfe;
	assert_true(keyset_has(s, key));
	assert_int_equal(keyset_count(s), N + 2);
	keyset_free(s);
}

static void test_keyset__zero_key_is_a_key_like_any_other(void **state)
{
	struct keyset *s = keyset_new(0);
	uint8_t zero[KEYSET_KEY_BYTES] = { 0 }, key[KEYSET_KEY_BYTES];

	(void)state;
	key_of(7, key);
	assert_true(keyset_add(s, key));
	assert_false(keyset_has(s, zero));
	assert_true(keyset_add(s, zero));
	assert_false(keyset_add(s, zero));
	assert_true(keyset_has(s, zero));
	assert_true(keyset_has(s, key));
	assert_int_equal(keyset_count(s), 2);
	keyset_free(s);
}

static void test_keyset__hint_sized_set_takes_that_many(void **state)
{
	enum { N = 5000 };
	struct keyset *s = keyset_new(N);
	uint8_t key[KEYSET_KEY_BYTES];

	(void)state;
	for (uint32_t i = 0; i < N; i++) {
		key_of(i, key);
		assert_true(keyset_add(s, key));
	}
	for (uint32_t i = 0; i < N + 100; i++) {
		key_of(i, key);
		assert_int_equal(keyset_has(s, key), i < N);
	}
	assert_int_equal(keyset_count(s), N);
	keyset_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf__init_is_empty_without_memory),
		cmocka_unit_test(test_buf__empty_append_gives_empty_c_string),
		cmocka_unit_test(test_buf__byte_appends_grow_and_keep_every_byte),
		cmocka_unit_test(test_buf__large_appends_cross_capacity_boundaries),
		cmocka_unit_test(test_buf__embedded_nul_bytes_are_data),
		cmocka_unit_test(test_buf__grow_reserves_without_changing_content),
		cmocka_unit_test(test_buf__reset_empties_and_keeps_memory),
		cmocka_unit_test(test_buf__detach_hands_over_the_data),
		cmocka_unit_test(test_buf__printf_formats_and_appends),
		cmocka_unit_test(test_buf__printf_output_of_every_length_is_exact),
		cmocka_unit_test(test_buf__printf_long_output_after_long_content),
		cmocka_unit_test(test_buf__json_string_plain_text_is_quoted),
		cmocka_unit_test(test_buf__json_string_escapes_quotes_and_backslashes),
		cmocka_unit_test(test_buf__json_string_escapes_every_control_char),
		cmocka_unit_test(test_buf__json_string_keeps_utf8_and_del),
		cmocka_unit_test(test_buf__json_string_replaces_invalid_utf8),
		cmocka_unit_test(test_buf__json_string_appends_after_content),
		cmocka_unit_test(test_buf__json_string_long_input_with_escapes),
		cmocka_unit_test(test_buf__be16_writes_high_byte_first),
		cmocka_unit_test(test_buf__be32_writes_high_byte_first),
		cmocka_unit_test(test_buf__be64_writes_high_byte_first),
		cmocka_unit_test(test_buf__be_writers_mix_with_text),
		cmocka_unit_test(test_digest__sha256_abc_known_vector),
		cmocka_unit_test(test_digest__sha256_empty_and_two_block_vectors),
		cmocka_unit_test(test_digest__sha256_million_a),
		cmocka_unit_test(test_digest__sha256_reads_only_len_bytes),
		cmocka_unit_test(test_digest__hex_encode_is_lower_case_and_terminated),
		cmocka_unit_test(test_digest__hex_encode_every_byte_value),
		cmocka_unit_test(test_jsonw__reals_print_shortest_and_read_back_exactly),
		cmocka_unit_test(test_jsonw__random_reals_read_back_exactly_in_fewest_digits),
		cmocka_unit_test(test_jsonw__non_finite_reals_are_null),
		cmocka_unit_test(test_jsonw__reals_in_trees_are_short_and_the_rest_as_jansson),
		cmocka_unit_test(test_jsonw__strings_escape_as_jansson_and_invalid_utf8_becomes_fffd),
		cmocka_unit_test(test_jsonw__random_trees_without_reals_match_jansson_byte_for_byte),
		cmocka_unit_test(test_jsonw__appends_after_content),
		cmocka_unit_test(test_keyset__empty_set_has_nothing),
		cmocka_unit_test(test_keyset__add_is_true_once_then_false),
		cmocka_unit_test(test_keyset__many_keys_all_found_and_no_others),
		cmocka_unit_test(test_keyset__keys_sharing_hashed_bytes_are_distinct),
		cmocka_unit_test(test_keyset__zero_key_is_a_key_like_any_other),
		cmocka_unit_test(test_keyset__hint_sized_set_takes_that_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
