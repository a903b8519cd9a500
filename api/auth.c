/*
 * API keys on the request path. A presented key is hashed with SHA-256 and
 * looked up in a table rebuilt from the database every refresh, so the hot
 * path never touches PostgreSQL and a revoked key stops working within one
 * refresh period.
 */
#include "api/api_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/alloc.h"
#include "lib/digest.h"

static size_t slot_of(const uint8_t hash[32], size_t mask)
{
	uint64_t h;

	memcpy(&h, hash, sizeof(h));	/* a SHA-256 is already uniform */
	return (size_t)h & mask;
}

void api_keyring_build(struct api_keyring *ring, const struct store_key *keys,
		       size_t n)
{
	size_t cap = 16;

	while (cap < n * 2)
		cap *= 2;
	ring->slots = xcalloc(cap, sizeof(*ring->slots));
	ring->mask = cap - 1;
	for (size_t i = 0; i < n; i++) {
		size_t h = slot_of(keys[i].hash, ring->mask);

		while (ring->slots[h].key_id)
			h = (h + 1) & ring->mask;
		memcpy(ring->slots[h].hash, keys[i].hash, 32);
		ring->slots[h].key_id = keys[i].key_id;
		ring->slots[h].workspace_id = keys[i].workspace_id;
		ring->slots[h].role = keys[i].role;
	}
}

void api_keyring_release(struct api_keyring *ring)
{
	free(ring->slots);
	ring->slots = NULL;
	ring->mask = 0;
}

static const struct api_key *keyring_find(const struct api_keyring *ring,
					  const char *key, size_t len)
{
	uint8_t hash[32];

	if (!ring->slots)
		return NULL;
	sha256(key, len, hash);
	for (size_t h = slot_of(hash, ring->mask); ring->slots[h].key_id;
	     h = (h + 1) & ring->mask)
		if (memcmp(ring->slots[h].hash, hash, 32) == 0)
			return &ring->slots[h];
	return NULL;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Decodes base64 (standard or URL alphabet, padding optional). */
static int b64_decode(const char *in, char *out, size_t cap, size_t *len)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0;

	for (; *in && *in != '='; in++) {
		int v = b64_value((unsigned char)*in);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n + 1 >= cap)
				return -1;
			out[n++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[n] = '\0';
	*len = n;
	return 0;
}

bool api_has_credentials(struct http_request *req)
{
	return http_request_header(req, "Authorization") != NULL;
}

const struct api_key *api_authenticate(struct api *a, struct http_request *req,
				       json_t *body, enum store_role need)
{
	const char *auth = http_request_header(req, "Authorization");
	const struct api_key *k = NULL;
	char decoded[256];
	size_t len;

	if (auth) {
		while (*auth == ' ')
			auth++;
		if (strncasecmp(auth, "Basic ", 6) != 0 ||
		    b64_decode(auth + 6, decoded, sizeof(decoded), &len)) {
			http_reply_json_error(req, 401, "unauthorized",
				"the Authorization header must be HTTP Basic with "
				"the key as user name and an empty password");
			return NULL;
		}
		char *colon = memchr(decoded, ':', len);

		k = keyring_find(&a->keys, decoded, colon ? (size_t)(colon - decoded)
							  : len);
	} else if (body) {
		const char *wk = ingest_body_write_key(body);

		if (wk)
			k = keyring_find(&a->keys, wk, strlen(wk));
		else {
			http_reply_json_error(req, 401, "unauthorized",
				"no key: send it as the HTTP Basic user name, or "
				"as 'writeKey' in the body");
			return NULL;
		}
	} else {
		http_reply_json_error(req, 401, "unauthorized",
			"no key: send it as the HTTP Basic user name with an "
			"empty password");
		return NULL;
	}
	if (!k) {
		http_reply_json_error(req, 401, "unauthorized",
			"the key is not known or was revoked");
		return NULL;
	}
	bool ok = k->role == need ||
		  (need == STORE_ROLE_READ && k->role == STORE_ROLE_ADMIN);

	if (!ok) {
		static const char *why[] = {
			"this path needs a write key",
			"this path needs a read key",
			"this path needs an admin key",
		};

		http_reply_json_error(req, 403, "forbidden", why[need]);
		return NULL;
	}
	return k;
}
