/*
 * Growable byte buffer. Used to build COPY streams, JSON replies and
 * anything else assembled piece by piece. The data is always followed by a
 * NUL byte (not counted in len) so it can be used as a C string.
 */
#ifndef LIB_BUF_H
#define LIB_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct buf {
	char *data;	/* NULL until the first append */
	size_t len;
	size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

void buf_init(struct buf *b);
void buf_release(struct buf *b);
/* Empties the buffer, keeping its memory. */
void buf_reset(struct buf *b);
void buf_grow(struct buf *b, size_t extra);
/* Inline: the JSON writer calls it once per token. */
static inline void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n >= b->cap)
		buf_grow(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}
void buf_adds(struct buf *b, const char *s);
void buf_addc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Big-endian integers, as PostgreSQL's binary COPY wants them. */
void buf_add_be16(struct buf *b, uint16_t v);
void buf_add_be32(struct buf *b, uint32_t v);
void buf_add_be64(struct buf *b, uint64_t v);
/*
 * Appends s as a JSON string literal, quotes included. Bytes that are not
 * well-formed UTF-8 become \ufffd, so the result is always valid JSON.
 */
/*
 * Length of the well-formed UTF-8 sequence at s (n bytes left, n >= 1),
 * or 0 if it is not one: overlong forms, surrogates and values past
 * U+10FFFF count as malformed (RFC 3629), as jansson's decoder has it.
 */
size_t buf_utf8_seq(const unsigned char *s, size_t n);

void buf_add_json_string(struct buf *b, const char *s, size_t n);
/*
 * Replaces every byte from offset from on that is not part of well-formed
 * UTF-8 with '?': for messages that quote input cut at a byte count.
 */
void buf_scrub_utf8(struct buf *b, size_t from);
/* Takes the data out; the buffer is left empty. Caller frees. */
char *buf_detach(struct buf *b, size_t *len);

#endif
