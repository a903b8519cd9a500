/*
 * SHA-256 and hex; see digest.h.
 */
#include "lib/digest.h"

#include <openssl/evp.h>
#include <stdlib.h>

#include "lib/log.h"

void sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 32;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1) {
		log_error("digest_failed", "alg=sha256");
		abort();
	}
}

void hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * n] = '\0';
}
