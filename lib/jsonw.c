/*
 * Compact JSON text of a jansson tree; see jsonw.h. It follows jansson's
 * dump.c and jsonp_dtostr() (strconv.c) token by token, so that whatever
 * jansson wrote before (stored events, trait values) and what this writes
 * now differ only where jansson printed a real with more digits than the
 * real needs.
 */
#include "lib/jsonw.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_add_json_jstring(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *u = (const unsigned char *)s;
	size_t copied = 0, i = 0;

	buf_grow(b, n + 2);
	buf_addc(b, '"');
	while (i < n) {
		unsigned char c = u[i];
		size_t len;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			i++;
			continue;
		}
		if (c >= 0x80 && (len = buf_utf8_seq(u + i, n - i))) {
			i += len;
			continue;
		}
		/* c needs escaping: copy the plain run before it in one go. */
		buf_add(b, u + copied, i - copied);
		switch (c) {
		case '"':
			buf_add(b, "\\\"", 2);
			break;
		case '\\':
			buf_add(b, "\\\\", 2);
			break;
		case '\b':
			buf_add(b, "\\b", 2);
			break;
		case '\f':
			buf_add(b, "\\f", 2);
			break;
		case '\n':
			buf_add(b, "\\n", 2);
			break;
		case '\r':
			buf_add(b, "\\r", 2);
			break;
		case '\t':
			buf_add(b, "\\t", 2);
			break;
		default:
			if (c < 0x20) {
				char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

				buf_add(b, esc, 6);
			} else {
				/* Never emit invalid UTF-8: U+FFFD per bad byte. */
				buf_add(b, "\\ufffd", 6);
			}
			break;
		}
		copied = ++i;
	}
	buf_add(b, u + copied, n - copied);
	buf_addc(b, '"');
}

/* True if text reads back as exactly d, bit for bit (so -0.0 is not 0.0). */
static bool reads_back(const char *text, double d)
{
	double back = strtod(text, NULL);

	return memcmp(&back, &d, sizeof(d)) == 0;
}

void buf_add_json_real(struct buf *b, double d)
{
	char text[48];
	int prec, n;
	char *e;

	if (!isfinite(d)) {
		buf_add(b, "null", 4);
		return;
	}
	/*
	 * A normal double's shortest form, when it has at most DBL_DIG (15)
	 * digits, is what %.15g prints; a subnormal has fewer significant
	 * digits (5e-324 has one), so it tries every precision. %.17g always
	 * reads back.
	 */
	prec = d != 0 && fabs(d) < DBL_MIN ? 1 : DBL_DIG;
	for (;; prec++) {
		n = snprintf(text, sizeof(text), "%.*g", prec, d);
		if (prec >= 17 || reads_back(text, d))
			break;
	}
	/* As jansson writes a real: never as an integer, a bare exponent. */
	if (!strchr(text, '.') && !strchr(text, 'e')) {
		memcpy(text + n, ".0", 3);
		n += 2;
	}
	if ((e = strchr(text, 'e'))) {
		char *from = e + 1, *to = e + 1;

		if (*from == '-')
			*to++ = *from++;
		else if (*from == '+')
			from++;
		while (*from == '0' && from[1])
			from++;
		memmove(to, from, strlen(from) + 1);
		n = (int)strlen(text);
	}
	buf_add(b, text, (size_t)n);
}

static void add_integer(struct buf *b, json_int_t v)
{
	char text[24], *p = text + sizeof(text);
	unsigned long long u = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	buf_add(b, p, (size_t)(text + sizeof(text) - p));
}

void buf_add_json(struct buf *b, const json_t *v)
{
	/* jansson's iterators take a json_t *; nothing here changes the tree. */
	json_t *o = (json_t *)v;
	bool first = true;
	void *it;
	size_t n;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		buf_addc(b, '{');
		for (it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
			if (!first)
				buf_addc(b, ',');
			first = false;
			buf_add_json_jstring(b, json_object_iter_key(it),
					     json_object_iter_key_len(it));
			buf_addc(b, ':');
			buf_add_json(b, json_object_iter_value(it));
		}
		buf_addc(b, '}');
		break;
	case JSON_ARRAY:
		n = json_array_size(v);
		buf_addc(b, '[');
		for (size_t i = 0; i < n; i++) {
			if (i)
				buf_addc(b, ',');
			buf_add_json(b, json_array_get(v, i));
		}
		buf_addc(b, ']');
		break;
	case JSON_STRING:
		buf_add_json_jstring(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		add_integer(b, json_integer_value(v));
		break;
	case JSON_REAL:
		buf_add_json_real(b, json_real_value(v));
		break;
	case JSON_TRUE:
		buf_add(b, "true", 4);
		break;
	case JSON_FALSE:
		buf_add(b, "false", 5);
		break;
	case JSON_NULL:
		buf_add(b, "null", 4);
		break;
	}
}
