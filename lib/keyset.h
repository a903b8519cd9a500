/*
 * A set of 16-byte keys: open addressing with linear probing over a
 * power-of-two table kept at most half full. Built for keyed hashes (the
 * identifier keys privacy/ computes), which are uniform, so eight of their
 * bytes serve as the hash; they are mixed anyway, so keys that are not
 * uniform do not cluster. Keys cannot be removed: a set is rebuilt whole.
 *
 * Not thread-safe: one thread adds, or many only read.
 */
#ifndef LIB_KEYSET_H
#define LIB_KEYSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYSET_KEY_BYTES 16

struct keyset;

/*
 * An empty set with room for about hint keys before it first grows (0 when
 * the number is not known); it grows as keys are added either way.
 */
struct keyset *keyset_new(size_t hint);
void keyset_free(struct keyset *s);
/* Adds a copy of key; true if it was not in the set yet. */
bool keyset_add(struct keyset *s, const uint8_t key[KEYSET_KEY_BYTES]);
bool keyset_has(const struct keyset *s, const uint8_t key[KEYSET_KEY_BYTES]);
size_t keyset_count(const struct keyset *s);

#endif
