/*
 * Growable byte buffer; see buf.h.
 */
#include "lib/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_release(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void buf_grow(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = xmul(cap, 2);
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void buf_addc(struct buf *b, char c)
{
	buf_add(b, &c, 1);
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	buf_grow(b, 64);
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= b->cap - b->len) {
		buf_grow(b, (size_t)n);
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void buf_add_be16(struct buf *b, uint16_t v)
{
	unsigned char c[2] = { (unsigned char)(v >> 8), (unsigned char)v };

	buf_add(b, c, 2);
}

void buf_add_be32(struct buf *b, uint32_t v)
{
	unsigned char c[4];

	for (int i = 0; i < 4; i++)
		c[i] = (unsigned char)(v >> (24 - 8 * i));
	buf_add(b, c, 4);
}

void buf_add_be64(struct buf *b, uint64_t v)
{
	unsigned char c[8];

	for (int i = 0; i < 8; i++)
		c[i] = (unsigned char)(v >> (56 - 8 * i));
	buf_add(b, c, 8);
}

/*
 * Length of the well-formed UTF-8 sequence at s (n bytes left), or 0 if
 * it is not one: overlong forms, surrogates and values past U+10FFFF count
 * as malformed (RFC 3629).
 */
size_t buf_utf8_seq(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned lo = 0x80, hi = 0xbf;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

void buf_add_json_string(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;

	buf_grow(b, n + 2);
	buf_addc(b, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = u[i];

		if (c == '"' || c == '\\') {
			buf_addc(b, '\\');
			buf_addc(b, (char)c);
		} else if (c == '\n') {
			buf_adds(b, "\\n");
		} else if (c == '\r') {
			buf_adds(b, "\\r");
		} else if (c == '\t') {
			buf_adds(b, "\\t");
		} else if (c < 0x20) {
			char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

			buf_add(b, esc, 6);
		} else if (c < 0x80) {
			buf_addc(b, (char)c);
		} else {
			size_t len = buf_utf8_seq(u + i, n - i);

			if (len) {
				buf_add(b, u + i, len);
				i += len - 1;
			} else {
				/* Never emit invalid UTF-8: U+FFFD per bad byte. */
				buf_adds(b, "\\ufffd");
			}
		}
	}
	buf_addc(b, '"');
}

void buf_scrub_utf8(struct buf *b, size_t from)
{
	unsigned char *u = (unsigned char *)b->data;

	for (size_t i = from; i < b->len; i++) {
		if (u[i] < 0x80)
			continue;
		size_t len = buf_utf8_seq(u + i, b->len - i);

		if (len)
			i += len - 1;
		else
			u[i] = '?';
	}
}

char *buf_detach(struct buf *b, size_t *len)
{
	char *p = b->data ? b->data : xstrdup("");

	if (len)
		*len = b->len;
	buf_init(b);
	return p;
}
