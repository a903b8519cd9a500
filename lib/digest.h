/*
 * Plain SHA-256 (libcrypto), for API key hashes and match keys. Keyed
 * hashing of personal data is privacy/'s job, not this.
 */
#ifndef LIB_DIGEST_H
#define LIB_DIGEST_H

#include <stddef.h>
#include <stdint.h>

void sha256(const void *data, size_t len, uint8_t out[32]);
/* Writes 2*n lower-case hex digits and a NUL into out. */
void hex_encode(const uint8_t *in, size_t n, char *out);

#endif
