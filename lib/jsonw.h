/*
 * Compact JSON text of a jansson tree, written into a buffer. The output is
 * what json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes, byte for byte
 * (object members in jansson's iteration order, which is insertion order;
 * strings escaped as jansson escapes them), with one difference: reals.
 * jansson prints every real with 17 significant digits, so 7.7 becomes
 * 7.7000000000000002; here a real gets the shortest text that reads back
 * as the same double. Events and trait values are stored with it, so that
 * a number comes back the way the client sent it.
 */
#ifndef LIB_JSONW_H
#define LIB_JSONW_H

#include <jansson.h>
#include <stddef.h>

#include "lib/buf.h"

/*
 * Appends v as compact JSON. Never fails: a string that is not valid UTF-8
 * (only jansson's *_nocheck calls make one; jansson's own dump refuses it)
 * gets \ufffd for each bad byte, and a real that is not finite (jansson
 * never makes one) is written as null.
 */
void buf_add_json(struct buf *b, const json_t *v);

/*
 * Appends the n bytes at s as a JSON string literal, quotes included,
 * escaped exactly as jansson escapes it: \" \\ \b \f \n \r \t, other
 * control characters as \u00XX (upper-case hex), everything else as it is.
 * Bytes that are not well-formed UTF-8 become \ufffd. (buf_add_json_string
 * spells a few control characters differently; the JSON is the same.)
 */
void buf_add_json_jstring(struct buf *b, const char *s, size_t n);

/*
 * Appends d as the shortest of its %.15g, %.16g and %.17g forms that
 * reads back as the same double (any precision from 1 for a subnormal),
 * written as jansson writes a real: with ".0" when it has neither '.' nor
 * 'e', and an exponent without '+' or leading zeros (7.7, 1.0, -0.0, 1e300,
 * 5e-324). A non-finite d is written as null.
 */
void buf_add_json_real(struct buf *b, double d);

#endif
