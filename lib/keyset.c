/*
 * The set of 16-byte keys; see keyset.h. An all-zero slot is empty, so
 * the all-zero key, which cannot live in a slot, is kept in a flag of its
 * own.
 */
#include "lib/keyset.h"

#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"

#define MIN_SLOTS 16

struct keyset {
	uint8_t (*slots)[KEYSET_KEY_BYTES];
	size_t mask;		/* slots - 1 */
	size_t count;		/* keys in slots, the zero key not included */
	bool has_zero;
};

static const uint8_t zero_key[KEYSET_KEY_BYTES];

/* MurmurHash3's 64-bit finaliser over the key's first eight bytes. */
static size_t slot_of(const struct keyset *s, const uint8_t *key)
{
	uint64_t h;

	memcpy(&h, key, sizeof(h));
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return (size_t)h & s->mask;
}

static bool is_zero(const uint8_t *key)
{
	return memcmp(key, zero_key, KEYSET_KEY_BYTES) == 0;
}

/* Puts key, known to be absent and non-zero, in its slot. */
static void place(struct keyset *s, const uint8_t *key)
{
	size_t i = slot_of(s, key);

	while (!is_zero(s->slots[i]))
		i = (i + 1) & s->mask;
	memcpy(s->slots[i], key, KEYSET_KEY_BYTES);
}

static void resize(struct keyset *s, size_t nslots)
{
	uint8_t (*old)[KEYSET_KEY_BYTES] = s->slots;
	size_t oldn = s->slots ? s->mask + 1 : 0;

	s->slots = xcalloc(nslots, KEYSET_KEY_BYTES);
	s->mask = nslots - 1;
	for (size_t i = 0; i < oldn; i++)
		if (!is_zero(old[i]))
			place(s, old[i]);
	free(old);
}

struct keyset *keyset_new(size_t hint)
{
	struct keyset *s = xcalloc(1, sizeof(*s));
	size_t n = MIN_SLOTS;

	while (n / 2 < hint)
		n = xmul(n, 2);
	resize(s, n);
	return s;
}

void keyset_free(struct keyset *s)
{
	if (!s)
		return;
	free(s->slots);
	free(s);
}

bool keyset_add(struct keyset *s, const uint8_t key[KEYSET_KEY_BYTES])
{
	size_t i;

	if (is_zero(key)) {
		bool added = !s->has_zero;

		s->has_zero = true;
		return added;
	}
	for (i = slot_of(s, key); !is_zero(s->slots[i]); i = (i + 1) & s->mask)
		if (memcmp(s->slots[i], key, KEYSET_KEY_BYTES) == 0)
			return false;
	memcpy(s->slots[i], key, KEYSET_KEY_BYTES);
	/* At most half full: probes stay short. */
	if (++s->count > (s->mask + 1) / 2)
		resize(s, xmul(s->mask + 1, 2));
	return true;
}

bool keyset_has(const struct keyset *s, const uint8_t key[KEYSET_KEY_BYTES])
{
	if (is_zero(key))
		return s->has_zero;
	for (size_t i = slot_of(s, key); !is_zero(s->slots[i]);
	     i = (i + 1) & s->mask)
		if (memcmp(s->slots[i], key, KEYSET_KEY_BYTES) == 0)
			return true;
	return false;
}

size_t keyset_count(const struct keyset *s)
{
	return s->count + s->has_zero;
}
